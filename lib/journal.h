/*
 * journal.h - the durable layer's internals (lib/ only; see mealy.h for
 * what users see).
 *
 * A state directory holds segment files seg-<N>.mj and a LOCK file.  On
 * disk (format 2, all integers little-endian):
 *
 *   segment  = header, then frames
 *   header   = "MLYJ" u32:version=2 u32:salt u32:prev u64:N u32:flags u32:crc
 *              (32 bytes; crc of the 28 before it; salt random per file,
 *              prev the checksum that ends segment N-1, 0 for the first;
 *              flags 1: the segment begins with a snapshot)
 *   frame    = u32:len u32:prev u64:synced u32:sum u32:hcrc, len bytes
 *              (a batch: what one write put down; prev is the sum of the
 *              frame before, the header's crc for the first, so frames
 *              chain; synced is how many bytes of this file were durable
 *              (fdatasync done) when the frame was written; sum is the
 *              CRC-32C of salt, the first 16 header bytes and the payload,
 *              hcrc that of salt and the first 20 header bytes)
 *   payload  = records: [u32 length][u32 crc32c of the body][body]
 *
 * The salt makes bytes from an earlier life of a file name never verify;
 * `synced` is what tells an acknowledged batch from one that was not
 * (jread.c).  Every body is one msgpack array that starts [seq, kind, ...]
 * and seq grows by one from record to record across segments.  Kinds and
 * their bodies (S is an instance state, E an event; see jcodec.c):
 *
 *     CREATE  [seq, 1, S]               an instance was born
 *     STEP    [seq, 2, S, took, out, spawned]
 *                                        a step committed: its new state,
 *                                        the event ids it consumed, the
 *                                        events it sent to durable
 *                                        machines, the children it made
 *                                        (a step that exits with none of
 *                                        these and ends at once writes
 *                                        none: its END says it all)
 *     EVENT   [seq, 3, E]               an event for a durable machine
 *     END     [seq, 4, id, status, lifecycle, notice_eid (, ended_ms,
 *              name)]                   (a named instance: its tombstone)
 *     SNAP    [seq, 5, next_eid, next_corr]   a compacted segment begins
 *     SNAPEND [seq, 6, ninstances, nevents (, ntombs)] ... and is complete
 *     INST    [seq, 7, S]               an instance, in a snapshot
 *     DROP    [seq, 8, [eid...]]        events dropped, never consumed
 *     TOMB    [seq, 9, name, id, status, ended_ms]
 *                                        a tombstone, in a snapshot
 *
 *     S = [id, type, parent, step, point, version, data, flags,
 *          [wait, ev, arg, due_wall_ms, peer], status (, context, name)]
 *     (data: the instance's data without its trailing zero bytes (older
 *     records: whole); a reader zero-fills it to the type's data_size.
 *     peer: a request's target, for a reply wait; older records have
 *     no peer.  context and name only for an instance that has either:
 *     context a bin of its msgpack (empty: cleared) or nil (as the record
 *     before left it); name a str in its first record and in INST, else
 *     nil.  See context.h and names.c)
 *     E = [eid, to, ev, from, flags, corr, status, aux, payload]
 *
 * An event id (`ev`) is a uint, or a string for an interned name (ids
 * of names differ from run to run).  A payload is nil or a bin holding
 * the msgpack of the value.
 *
 * Compaction writes a new segment that begins with SNAP and holds the
 * live set up to SNAPEND, fsyncs it and the directory, and only then
 * deletes the older segments.  On open, the newest segment with a
 * complete snapshot is the base; an incomplete one while the older
 * segments are still there is the torn remains of a compaction and is
 * removed.
 */
#ifndef MLY_JOURNAL_H
#define MLY_JOURNAL_H

#include "mealy.h"

#include <stdint.h>
#include <uv.h>

uint32_t jr_crc32c(const void *buf, size_t n);
uint32_t jr_crc32c_soft(const void *buf, size_t n);
/* Continues a CRC-32C: jr_crc32c_more(jr_crc32c(a), b) is the CRC of a
 * then b; jr_crc32c_more(0, b) is jr_crc32c(b). */
uint32_t jr_crc32c_more(uint32_t crc, const void *buf, size_t n);

enum {
  JR_CREATE = 1,
  JR_STEP,
  JR_EVENT,
  JR_END,
  JR_SNAP,
  JR_SNAPEND,
  JR_INST,
  JR_DROP,
  JR_TOMB,
  JR_KIND_MAX = JR_TOMB
};

#define JR_HDR 8u
#define JR_MAX_BODY (64u << 20) /* a record larger than this is damage */
/* One value a record carries (an event's payload, a context) may take
 * this much of it; past it the call that hands it over is refused with
 * MLY_ERANGE (value_fits), never a record that cannot be read back. */
#define JR_VALUE_MAX (JR_MAX_BODY - 4096)

#define JR_VERSION 2u
#define JR_MAGIC "MLYJ"
#define JR_SEG_HDR 32u
#define JR_FRAME_HDR 24u
#define JR_MIN_FRAME (JR_HDR + 3u)   /* one record: [seq, kind] at least */
#define JR_MAX_FRAME (128u << 20)    /* the writer splits past this */

#define JR_SEG_SNAPSHOT 1u /* header flag: it begins with a snapshot */

/* The header of segment seg_no (its crc is the first frame's prev). */
void jr_seg_header(unsigned char out[JR_SEG_HDR], uint32_t salt,
                   uint32_t prev, uint64_t seg_no, uint32_t flags);
/* A frame header for a payload; returns its sum (the next frame's prev). */
uint32_t jr_frame_header(unsigned char out[JR_FRAME_HDR], uint32_t salt,
                         uint32_t prev, uint64_t synced, const void *payload,
                         uint32_t len);

const char *jr_kind_name(unsigned kind);

/* The little-endian integers of the format. */
static inline uint32_t jr_le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

/* Segment files are named seg-<20 digits>.mj; the number orders them. */
#define JR_SEG_NAME_LEN 27
bool jr_seg_no(const char *name, uint64_t *no);

/* Writes a message into err (if any) and returns rc. */
int jr_errf(char *err, size_t len, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- a growable byte buffer and a msgpack writer into it ---- */

typedef struct jbuf {
  unsigned char *p;
  size_t n, cap;
  bool oom; /* an append failed: the buffer is incomplete */
} jbuf;

void jb_free(jbuf *b);
void jb_raw(jbuf *b, const void *p, size_t n);
/* n bytes appended for the caller to fill; NULL: out of memory (oom set) */
unsigned char *jb_take(jbuf *b, size_t n);
void jb_uint_any(jbuf *b, uint64_t u);
/* A record's fields are mostly small numbers: those are one byte,
 * stored here in the caller (no call when the buffer has room). */
static inline void jb_uint(jbuf *b, uint64_t u) {
  if (u < 128 && b->n < b->cap && !b->oom) b->p[b->n++] = (unsigned char)u;
  else jb_uint_any(b, u);
}
void jb_int(jbuf *b, int64_t i);
void jb_nil(jbuf *b);
void jb_array(jbuf *b, uint32_t n);
void jb_str(jbuf *b, const char *s, size_t n);
void jb_bin(jbuf *b, const void *p, size_t n);
/* A bin written in place: open, append its bytes, close (the length
 * goes into the header then).  Bytes appended since open: b->n - at. */
void jb_bin_head(jbuf *b, size_t n); /* then n bytes of it (jb_take) */
size_t jb_bin_open(jbuf *b);
void jb_bin_close(jbuf *b, size_t at);
int jb_write(void *data, const char *buf, size_t len);
/* Open a record: reserves the header; jb_end fills it in. */
size_t jb_begin(jbuf *b, uint64_t seq, unsigned kind, uint32_t nfields);
void jb_end(jbuf *b, size_t start);

/* ---- a msgpack reader over one body ---- */

typedef struct jcur {
  const unsigned char *p, *end;
  bool bad;
} jcur;

bool jc_array(jcur *c, uint32_t *n);
bool jc_uint(jcur *c, uint64_t *u);
bool jc_int(jcur *c, int64_t *i);
bool jc_nil(jcur *c);           /* consumes a nil if there is one */
bool jc_str(jcur *c, const char **s, size_t *n);
bool jc_bin(jcur *c, const void **p, size_t *n);
bool jc_skip(jcur *c);          /* any one value */
/* An event id: a uint or a string (name). */
bool jc_evid(jcur *c, uint64_t *id, const char **name, size_t *nlen);

/* ---- reading a state directory ---- */

/* One verified record. */
typedef struct jrec {
  uint64_t seq;
  unsigned kind;
  const unsigned char *body;
  uint32_t len;
  const char *file;  /* the segment's name */
  uint64_t offset;   /* of the header in that file */
} jrec;

/* A stretch of a segment that does not verify. */
typedef struct jdamage {
  uint64_t off, end;   /* end: where frames verify again (or the file end) */
  uint64_t proof;      /* the largest `synced` of a frame past off */
  uint32_t chain;      /* the chain where it begins */
  bool unresolved;     /* the search past it ran out of its work bound */
  bool cut_short;      /* its shape is a write cut short (a tail) */
} jdamage;

typedef struct jseg {
  char name[32];
  uint64_t no;
  unsigned char *data; /* bytes [0, map_len) of the file */
  size_t len;          /* bytes that count (a torn tail is cut off) */
  size_t file_len, map_len;
  bool removed;        /* an unfinished snapshot or segment: jr_repair
                          deletes it */
  bool mapped;         /* data is a mapping (else malloc'd) */
  int fd;              /* JR_STREAM: the file, read record by record */
  bool hdr_ok;
  bool hdr_torn;       /* no more than a header that was cut short */
  char hdr_why[160];   /* why the header does not read */
  uint32_t salt, prev, hdr_sum, end_sum; /* end_sum: the chain at len */
  uint32_t flags;      /* JR_SEG_SNAPSHOT */
  int snap;            /* its snapshot: 0 not known yet, 1 begun, 2 whole */
  uint64_t frames;     /* that verify */
  uint64_t frames_end; /* the end of the last one that verifies */
  jdamage *dmg;
  size_t ndmg;
  char why[160];       /* why the first damaged stretch does not verify */
} jseg;

typedef struct jread {
  jseg *segs;
  size_t nsegs;
  size_t base;            /* first segment replayed */
  uint64_t next_seq;
  uint64_t torn_bytes;    /* cut from the tail */
  uint64_t salvaged;      /* damaged stretches and gaps --salvage passed */
  uint64_t stray_bytes;   /* bytes that are not records of a frame that
                             counts: torn tails, salvaged damage */
  uint64_t total_bytes;
  uint64_t frames;        /* batches that count */
  uint64_t examined;      /* bytes the verifier looked at (its work) */
  bool tail_suspect;      /* the cut tail is not a write cut short */
  bool base_is_snapshot;  /* the base segment opens with SNAP..SNAPEND */
  bool map;               /* the segments are mapped, not read */
  unsigned char *buf;     /* JR_STREAM: the record at hand */
  size_t cap;
} jread;

/* How jr_read holds what verified: read into memory (records stay valid
 * until jr_read_free), mapped (the same, only for the lock holder:
 * nobody cuts a file under it), or streamed (a record's bytes are valid
 * during its callback only; memory is one record). */
enum { JR_READ = 0, JR_MAP = 1, JR_STREAM = 2 };

/* Reads and verifies every segment of dir, holding it as `how` says.  The
 * work is linear in the files' sizes whatever their bytes, and memory
 * holds what verifies, never a file's length.  On damage in anything
 * acknowledged (or a segment that is missing, or not a regular file) it
 * fails with MLY_EBADMSG and a message naming file, offset and reason
 * (unless salvage).  cb (may be NULL) sees every record from the base on;
 * a non-zero return stops the walk and is returned. */
int jr_read(int dirfd, const char *dir, bool salvage, int how, jread *out,
            int (*cb)(const jrec *, void *), void *arg, char *err,
            size_t errlen);
void jr_read_free(jread *r);
/* Make the repairs jr_read decided: sync every segment that counts
 * (cutting its torn tail), then remove segments older than the base and
 * unfinished ones, and sync the directory. */
int jr_repair(int dirfd, const jread *r);

/* ---- the live journal of a runtime (journal/journal.c) ---- */

typedef struct mly_journal mly_journal;
typedef struct mly_inst mly_inst;

/* What to do once a batch is durable: a completion the durable layer
 * queues (store.h on_commit) and a store hands back, unread, through
 * hooks.done. */
typedef struct jdone {
  uint8_t kind; /* JD_RELEASE, JD_DELIVER, JD_POSTED */
  mly_id id;    /* the instance to release, or the event's target;
                   JD_POSTED: where its record ends in the batch */
  mly_event *ev;
  mly_post_cb cb;
  void *arg;
} jdone;
enum { JD_RELEASE = 1, JD_DELIVER, JD_POSTED };

/* The journal is the embedded store (store.h, D11): journal_store_open
 * makes one over the state directory o->dir (created, checked, locked;
 * err says what is wrong), with no record read yet; the durable layer
 * opens on it (durable_open) and recovers through its operations.  The
 * journal calls nothing above it by name: completions, the end of a
 * batch, fail-stop and its last handle's close go through the hooks the
 * durable layer sets. */
struct mly_store;
int journal_store_open(uv_loop_t *loop, const mly_journal_options *o,
                       struct mly_store **out, char *err, size_t errlen);
/* Offline, on a directory nobody appends to: mly_journal_scan and
 * mly_journal_info_get (journal/jinfo.c), mly_journal_live
 * (journal/jlive.c).  jr_open_dir opens dir to read it (a descriptor,
 * or a negative error with err, which may be NULL, filled in). */
int jr_open_dir(const char *dir, char *err, size_t errlen);

/* Figures for metrics (metrics.c), kept for every batch that completes:
 * its bytes, its records and how long its fdatasync took.  A histogram
 * counts each value in the first bucket whose bound holds it (n[i]: not
 * cumulative; n[nle]: past the last bound).  `written` counts every byte
 * written since open and never goes back (mly_journal_stats.bytes
 * restarts at each compaction). */
#define JH_MAX 16
typedef struct jhist {
  uint64_t n[JH_MAX + 1];
  uint64_t count, sum;
} jhist;
typedef struct jbounds {
  const uint64_t *le;
  size_t nle;
} jbounds;
extern const jbounds jh_batch_bytes, jh_batch_records, jh_sync_ns;
typedef struct journal_figures {
  jhist batch_bytes, batch_records, sync_ns;
  uint64_t written;
} journal_figures;

#endif /* MLY_JOURNAL_H */
