/*
 * jread.c - reading and verifying a state directory.
 *
 * A segment is read in two passes.  The first checks frames (batches)
 * through a bounded window: the header, then each frame's chained
 * checksum; where a frame does not verify, it searches on for the next
 * one that does, so a damaged stretch has a start, an end, and the
 * largest `synced` of any frame after it: the proof.  Then the rules:
 *
 *   - damage with proof past its start lies in bytes that were durable
 *     (fdatasync done) before a later batch was written: something
 *     acknowledged is damaged.  So is damage in any segment but the
 *     newest (a segment is synced whole before the next one begins), in
 *     a snapshot (compaction syncs it before anything depends on it), a
 *     segment header that does not read, a segment number that is
 *     missing, or a segment that does not chain to the one before.  The
 *     directory is refused, naming file, offset and reason, unless
 *     salvage is asked for, which skips the stretch and keeps what
 *     verifies;
 *   - the first damage in the newest segment without such proof is the
 *     unacknowledged tail, whatever its shape (a write cut short, or
 *     blocks persisted out of order: zeroes, then later bytes).  It is
 *     cut, with everything after it, salvage or not: nothing written
 *     after an unacknowledged batch is kept behind a gap;
 *   - the newest segment with a complete snapshot (SNAP ... SNAPEND) is
 *     the base: older segments are leftovers of a compaction that crashed
 *     after its snapshot was safe, and are removed; a newest segment with
 *     an incomplete snapshot while its older segments are still there is
 *     the compaction that crashed before, and is removed instead.
 *
 * The second pass maps (or reads) the bytes that verified and walks the
 * records inside each frame that counts: their CRC, shape and sequence.
 *
 * The work is linear in the file's size whatever its bytes: the window
 * reads each byte about once, holes of a sparse file are skipped, and the
 * checksums of candidate frames that fail are bounded (2 x the file
 * size); past that bound the stretch is refused as damage, never cut.
 * Memory holds the bytes that verified, never a file's length.
 */
#include "../journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int jr_errf(char *err, size_t len, int rc, const char *fmt, ...) {
  if (err && len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
  }
  return rc;
}

bool jr_seg_no(const char *name, uint64_t *no) {
  if (strlen(name) != JR_SEG_NAME_LEN || strncmp(name, "seg-", 4) != 0 ||
      strcmp(name + 24, ".mj") != 0)
    return false;
  uint64_t v = 0;
  for (int i = 4; i < 24; i++) {
    if (name[i] < '0' || name[i] > '9') return false;
    unsigned d = (unsigned)(name[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false; /* past 2^64 - 1 */
    v = v * 10 + d;
  }
  *no = v;
  return true;
}

static uint64_t le64(const unsigned char *p) {
  return (uint64_t)jr_le32(p) | (uint64_t)jr_le32(p + 4) << 32;
}

/* ---- one record (second pass) ---- */

typedef struct check {
  uint64_t seq;
  unsigned kind;
  uint32_t len;
  char why[160];
} check;

/* Whether the record at data[off] verifies (its CRC too, if crc); fills
 * c. */
static bool verify_at(const unsigned char *data, size_t size, size_t off,
                      check *c, bool crc) {
  size_t left = size - off;
  if (left < JR_HDR) {
    snprintf(c->why, sizeof c->why, "a record header needs 8 bytes, %zu "
             "left in its batch", left);
    return false;
  }
  uint32_t len = jr_le32(data + off), stored = jr_le32(data + off + 4);
  if (len > JR_MAX_BODY || len > left - JR_HDR) {
    snprintf(c->why, sizeof c->why, "record length %" PRIu32 " runs past "
             "its batch (%zu bytes left)", len, left - JR_HDR);
    return false;
  }
  jcur cur = {data + off + JR_HDR, data + off + JR_HDR + len, false};
  uint32_t n;
  uint64_t seq, kind;
  bool shape = jc_array(&cur, &n) && n >= 2 && jc_uint(&cur, &seq) &&
               jc_uint(&cur, &kind) && kind >= 1 && kind <= JR_KIND_MAX;
  uint32_t sum = crc ? jr_crc32c(data + off + JR_HDR, len) : stored;
  if (sum != stored) {
    snprintf(c->why, sizeof c->why, "record checksum mismatch (stored %08"
             PRIx32 ", computed %08" PRIx32 ")", stored, sum);
    return false;
  }
  if (!shape) {
    snprintf(c->why, sizeof c->why, "the body is not a record (an array "
             "[seq, kind, ...] of a known kind)");
    return false;
  }
  c->seq = seq;
  c->kind = (unsigned)kind;
  c->len = len;
  return true;
}

/* ---- a segment file through a bounded window (first pass) ---- */

#define WINDOW (1u << 20)

typedef struct src {
  int fd;
  uint64_t size;
  unsigned char *win, *body; /* WINDOW bytes each */
  uint64_t at;               /* file offset of win[0] */
  size_t n;                  /* bytes in win */
  uint64_t data_end;         /* the end of the data region at hand */
  uint64_t failed_sums;      /* bytes checksummed for frames that failed */
  uint32_t salt;
  int err;                   /* a read error */
  uint64_t *examined;
} src;

static size_t pread_all(src *s, unsigned char *buf, size_t n, uint64_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(s->fd, buf + got, n - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) s->err = -errno;
    if (r <= 0) break;
    got += (size_t)r;
  }
  *s->examined += got;
  return got;
}

/* n (<= WINDOW) bytes at off, or NULL if they cannot be read. */
static const unsigned char *get(src *s, uint64_t off, size_t n) {
  if (off >= s->at && off + n <= s->at + s->n) return s->win + (off - s->at);
  size_t want = s->size - off < WINDOW ? (size_t)(s->size - off) : WINDOW;
  s->at = off;
  s->n = pread_all(s, s->win, want, off);
  if (s->n < n) {
    if (s->err == 0) s->err = MLY_EIO; /* it shrank under us */
    return NULL;
  }
  return s->win;
}

/* Continues crc over n bytes at off, read into the body buffer (the
 * window stays where the search is). */
static bool crc_range(src *s, uint64_t off, uint64_t n, uint32_t *crc) {
  while (n > 0) {
    size_t k = n < WINDOW ? (size_t)n : WINDOW;
    if (pread_all(s, s->body, k, off) != k) {
      if (s->err == 0) s->err = MLY_EIO;
      return false;
    }
    *crc = jr_crc32c_more(*crc, s->body, k);
    *s->examined += k;
    off += k;
    n -= k;
  }
  return true;
}

typedef struct fcheck {
  uint32_t len, prev, sum;
  uint64_t synced;
  bool hdr_ok; /* the header verified (the payload may not) */
} fcheck;

/* Does the frame at off verify?  why (may be NULL) gets the reason.  The
 * cheap tests come first, the payload's checksum last. */
static bool frame_at(src *s, uint64_t off, fcheck *f, char *why, size_t wlen) {
  uint64_t left = s->size - off;
  f->hdr_ok = false;
  if (left < JR_FRAME_HDR) {
    if (why)
      snprintf(why, wlen, "a batch header needs %u bytes, %" PRIu64 " left",
               JR_FRAME_HDR, left);
    return false;
  }
  const unsigned char *h = get(s, off, JR_FRAME_HDR);
  if (h == NULL) return false;
  f->len = jr_le32(h);
  f->prev = jr_le32(h + 4);
  f->synced = le64(h + 8);
  f->sum = jr_le32(h + 16);
  if (f->len < JR_MIN_FRAME || f->len > JR_MAX_FRAME) {
    if (why)
      snprintf(why, wlen, "batch length %" PRIu32 " is not between %u and "
               "%u", f->len, JR_MIN_FRAME, JR_MAX_FRAME);
    return false;
  }
  if (f->len > left - JR_FRAME_HDR) {
    if (why)
      snprintf(why, wlen, "batch length %" PRIu32 " runs past the end of "
               "the file (%" PRIu64 " bytes left)", f->len,
               left - JR_FRAME_HDR);
    return false;
  }
  if (f->synced < JR_SEG_HDR || f->synced > off) {
    if (why)
      snprintf(why, wlen, "the batch says %" PRIu64 " bytes were durable "
               "before it, at offset %" PRIu64, f->synced, off);
    return false;
  }
  unsigned char salt[4] = {(unsigned char)s->salt,
                           (unsigned char)(s->salt >> 8),
                           (unsigned char)(s->salt >> 16),
                           (unsigned char)(s->salt >> 24)};
  uint32_t c = jr_crc32c(salt, 4);
  *s->examined += JR_FRAME_HDR;
  if (jr_crc32c_more(c, h, 20) != jr_le32(h + 20)) {
    if (why)
      snprintf(why, wlen, "batch header checksum mismatch");
    return false;
  }
  f->hdr_ok = true;
  c = jr_crc32c_more(c, h, 16);
  if (!crc_range(s, off + JR_FRAME_HDR, f->len, &c)) return false;
  if (c != f->sum) {
    s->failed_sums += f->len;
    if (why)
      snprintf(why, wlen, "batch checksum mismatch (stored %08" PRIx32
               ", computed %08" PRIx32 ")", f->sum, c);
    return false;
  }
  return true;
}

/* The next offset past `from` where a frame verifies; s->size if none.
 * *unresolved: the search ran out of its work bound first. */
static uint64_t search(src *s, uint64_t from, bool *unresolved) {
  uint64_t bound = 2 * s->size + WINDOW;
  for (uint64_t o = from; o + JR_FRAME_HDR <= s->size && s->err == 0; o++) {
    if (o >= s->data_end) { /* a hole holds no frame: skip it */
      off_t d = lseek(s->fd, (off_t)o, SEEK_DATA);
      if (d < 0 && errno == ENXIO) return s->size;
      if (d < 0) {
        s->data_end = s->size; /* no hole support: look at every byte */
      } else {
        if ((uint64_t)d > o + JR_FRAME_HDR - 1) o = (uint64_t)d - (JR_FRAME_HDR - 1);
        off_t e = lseek(s->fd, d, SEEK_HOLE);
        s->data_end = e < 0 ? s->size : (uint64_t)e;
        if (o + JR_FRAME_HDR > s->size) return s->size;
      }
    }
    const unsigned char *h = get(s, o, JR_FRAME_HDR);
    if (h == NULL) return s->size;
    uint32_t len = jr_le32(h);
    uint64_t synced = le64(h + 8);
    if (len < JR_MIN_FRAME || len > JR_MAX_FRAME ||
        len > s->size - o - JR_FRAME_HDR || synced < JR_SEG_HDR || synced > o)
      continue;
    if (s->failed_sums + len > bound) {
      *unresolved = true;
      return s->size;
    }
    fcheck f;
    if (frame_at(s, o, &f, NULL, 0)) return o;
  }
  return s->size;
}

/* ---- the first pass ---- */

static const char *file_type(mode_t m) {
  return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" :
         S_ISLNK(m) ? "a symbolic link" : S_ISSOCK(m) ? "a socket" :
         S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" :
         "not a regular file";
}

static void read_header(src *s, jseg *g) {
  size_t n = s->size < JR_SEG_HDR ? (size_t)s->size : JR_SEG_HDR;
  const unsigned char *h = n ? get(s, 0, n) : NULL;
  if (n && h == NULL) return;
  /* the creation of a segment cut short: the start of the magic, or
   * zeroes (blocks persisted out of order) */
  bool zero = true;
  for (size_t i = 0; i < n; i++) zero &= h[i] == 0;
  g->hdr_torn = zero || memcmp(h, JR_MAGIC, n < 4 ? n : 4) == 0;
  if (s->size < JR_SEG_HDR) {
    snprintf(g->hdr_why, sizeof g->hdr_why, "the file is shorter than a "
             "segment header (%" PRIu64 " of %u bytes)", s->size, JR_SEG_HDR);
    if (g->hdr_torn || n < 12) return;
  }
  if (memcmp(h, JR_MAGIC, 4) != 0) {
    /* format 1 began with a record: [len][crc] then a msgpack array */
    bool v1 = jr_le32(h) <= JR_MAX_BODY && (h[8] & 0xf0) == 0x90;
    snprintf(g->hdr_why, sizeof g->hdr_why, "%s", v1
             ? "journal format 1 (an older mealy wrote it): this mealy reads "
               "format 2 only; finish with the older mealy, or start a "
               "fresh state directory"
             : "not a journal segment (it does not begin with \"MLYJ\")");
    return;
  }
  if (jr_le32(h + 4) != JR_VERSION) {
    snprintf(g->hdr_why, sizeof g->hdr_why, "journal format %" PRIu32 ": "
             "this mealy reads format %u only (a newer mealy wrote it?)",
             jr_le32(h + 4), JR_VERSION);
    return;
  }
  if (jr_crc32c(h, 28) != jr_le32(h + 28)) {
    snprintf(g->hdr_why, sizeof g->hdr_why, "segment header checksum "
             "mismatch");
    return;
  }
  if (le64(h + 16) != g->no) {
    snprintf(g->hdr_why, sizeof g->hdr_why, "its header names segment %"
             PRIu64 " (a file renamed or copied?)", le64(h + 16));
    return;
  }
  g->salt = jr_le32(h + 8);
  g->prev = jr_le32(h + 12);
  g->flags = jr_le32(h + 24);
  g->hdr_sum = jr_le32(h + 28);
  g->hdr_ok = true;
}

static int push_damage(jseg *g, uint64_t off, uint32_t chain) {
  if ((g->ndmg & (g->ndmg - 1)) == 0) { /* 0, 1, 2, 4...: grow */
    jdamage *v = realloc(g->dmg, (g->ndmg ? g->ndmg * 2 : 1) * sizeof *v);
    if (v == NULL) return MLY_ENOMEM;
    g->dmg = v;
  }
  g->dmg[g->ndmg++] = (jdamage){.off = off, .end = off, .chain = chain};
  return 0;
}

static int walk_frames(src *s, jseg *g) {
  uint64_t o = JR_SEG_HDR;
  uint32_t chain = g->hdr_sum;
  bool gap = false; /* after damage the chain starts again */
  g->frames_end = JR_SEG_HDR;
  while (o < s->size) {
    fcheck f;
    char *why = g->ndmg == 0 ? g->why : NULL;
    bool ok = frame_at(s, o, &f, why, sizeof g->why);
    if (s->err) return s->err;
    if (ok && !gap && f.prev != chain) {
      ok = false;
      if (why)
        snprintf(why, sizeof g->why, "the batch does not follow the one "
                 "before (it names %08" PRIx32 ", the chain is at %08"
                 PRIx32 ")", f.prev, chain);
    }
    if (ok) {
      g->frames++;
      chain = f.sum;
      o += JR_FRAME_HDR + f.len;
      g->frames_end = o;
      if (g->ndmg && f.synced > g->dmg[g->ndmg - 1].proof)
        g->dmg[g->ndmg - 1].proof = f.synced;
      gap = false;
      continue;
    }
    int rc = push_damage(g, o, chain);
    if (rc < 0) return rc;
    jdamage *d = &g->dmg[g->ndmg - 1];
    d->cut_short = s->size - o < JR_FRAME_HDR ||
                   (f.hdr_ok && s->size - o <= JR_FRAME_HDR + (uint64_t)f.len);
    d->end = search(s, o + 1, &d->unresolved);
    if (s->err) return s->err;
    o = d->end;
    gap = true;
  }
  g->end_sum = chain;
  for (size_t k = g->ndmg; k-- > 1;) /* proof: any frame past the start */
    if (g->dmg[k].proof > g->dmg[k - 1].proof)
      g->dmg[k - 1].proof = g->dmg[k].proof;
  return 0;
}

/* Opens and checks one segment: never opens what is not a regular file,
 * never blocks (O_NONBLOCK), never follows a link. */
static int scan_segment(jread *r, int dirfd, const char *dir, jseg *g,
                        src *s, char *err, size_t errlen) {
  struct stat st;
  if (fstatat(dirfd, g->name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return jr_errf(err, errlen, -errno, "%s/%s: %s", dir, g->name,
                   mly_strerror(-errno));
  if (!S_ISREG(st.st_mode))
    return jr_errf(err, errlen, MLY_EBADMSG, "%s/%s: %s, not a segment file; "
                   "move it out of the state directory", dir, g->name,
                   file_type(st.st_mode));
  int fd = openat(dirfd, g->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
                  O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    int e = fd < 0 || !S_ISREG(st.st_mode) ? (fd < 0 ? -errno : MLY_EBADMSG)
                                           : -errno;
    if (fd >= 0) close(fd);
    return jr_errf(err, errlen, e, "%s/%s: cannot open: %s", dir, g->name,
                   e == MLY_EBADMSG ? "it changed into something that is "
                   "not a regular file" : mly_strerror(e));
  }
  *s = (src){.fd = fd, .win = s->win, .body = s->body,
             .size = (uint64_t)st.st_size, .examined = &r->examined};
  g->file_len = (size_t)st.st_size;
  r->total_bytes += g->file_len;
  read_header(s, g);
  int rc = s->err;
  if (rc == 0 && g->hdr_ok) {
    s->salt = g->salt;
    rc = walk_frames(s, g);
  }
  close(fd);
  if (rc < 0)
    return jr_errf(err, errlen, rc, "%s/%s: cannot read: %s", dir, g->name,
                   mly_strerror(rc));
  return 0;
}

/* ---- loading what verified (second pass) ---- */

static int load(int dirfd, jseg *g, int how) {
  size_t n = g->frames_end;
  if (!g->hdr_ok || g->frames == 0) return 0;
  int fd = openat(dirfd, g->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
                  O_CLOEXEC);
  if (fd < 0) return -errno;
  if (how == JR_STREAM) { /* records are read one by one, when walked */
    g->fd = fd;
    return 0;
  }
  if (how == JR_MAP) {
    void *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p != MAP_FAILED) {
      close(fd);
      g->data = p;
      g->map_len = n;
      g->mapped = true;
      return 0;
    }
  }
  /* a reader without the lock reads a copy: a mapping would fault if
   * the owner cut a torn tail under it */
  unsigned char *b = malloc(n);
  if (b == NULL) {
    close(fd);
    return MLY_ENOMEM;
  }
  size_t got = 0;
  int rc = 0;
  while (got < n) {
    ssize_t k = pread(fd, b + got, n - got, (off_t)got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      rc = k < 0 ? -errno : MLY_EIO; /* shorter than it was a moment ago */
      break;
    }
    got += (size_t)k;
  }
  close(fd);
  if (rc < 0) {
    free(b);
    return rc;
  }
  g->data = b;
  g->map_len = n;
  return 0;
}

/* n bytes of g at off (which verified): in memory, or read into buf
 * (JR_STREAM), valid until the next call; NULL on a read error (*rc). */
static const unsigned char *at(jread *r, jseg *g, uint64_t off, size_t n,
                               int *rc) {
  if (g->data) return g->data + off;
  if (n > r->cap) {
    unsigned char *b = realloc(r->buf, n);
    if (b == NULL) {
      *rc = MLY_ENOMEM;
      return NULL;
    }
    r->buf = b;
    r->cap = n;
  }
  size_t got = 0;
  while (got < n) {
    ssize_t k = pread(g->fd, r->buf + got, n - got, (off_t)(off + got));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      *rc = k < 0 ? -errno : MLY_EIO; /* shorter than a moment ago */
      return NULL;
    }
    got += (size_t)k;
  }
  return r->buf;
}

/* The next frame of g that verified at or after *off, below end: true
 * and its payload's length; false when there is none, or on a read
 * error (*rc). */
static bool next_frame(jread *r, jseg *g, uint64_t *off, uint64_t end,
                       size_t *k, uint32_t *len, int *rc) {
  while (*k < g->ndmg && g->dmg[*k].end <= *off) (*k)++;
  if (*k < g->ndmg && g->dmg[*k].off <= *off) *off = g->dmg[(*k)++].end;
  if (*off + JR_FRAME_HDR > end || *off >= g->frames_end) return false;
  const unsigned char *h = at(r, g, *off, JR_FRAME_HDR, rc);
  if (h == NULL) return false;
  *len = jr_le32(h);
  return true;
}

/* The record at payload offset o of the frame at foff (flen bytes): its
 * bytes (header and body) in *p and their count, as many as the frame
 * holds; the caller verifies them. */
static size_t record_at(jread *r, jseg *g, uint64_t foff, uint32_t flen,
                        uint32_t o, const unsigned char **p, int *rc) {
  uint64_t base = foff + JR_FRAME_HDR + o;
  size_t left = flen - o, n = left < JR_HDR ? left : JR_HDR;
  *p = at(r, g, base, n, rc);
  if (*p == NULL || n < JR_HDR) return n;
  uint64_t len = JR_HDR + (uint64_t)jr_le32(*p);
  n = len < left ? (size_t)len : left;
  *p = at(r, g, base, n, rc);
  return n;
}

/* SNAP first and SNAPEND in the frames before any damage: 2; begun: 1;
 * not a snapshot segment: 0; a read error: < 0.  Records are only
 * looked at here (the frames verified; the walk checks their CRCs). */
static int snapshot_state(jread *r, jseg *g) {
  if (!g->hdr_ok || !(g->flags & JR_SEG_SNAPSHOT)) return 0;
  if (g->snap) return g->snap;
  uint64_t end = g->ndmg ? g->dmg[0].off : g->frames_end, off = JR_SEG_HDR;
  bool first = true;
  uint32_t len;
  size_t k = g->ndmg; /* no damage below end */
  int rc = 0;
  while (next_frame(r, g, &off, end, &k, &len, &rc)) {
    check c;
    const unsigned char *p;
    for (uint32_t o = 0; o < len; o += JR_HDR + c.len) {
      size_t n = record_at(r, g, off, len, o, &p, &rc);
      if (p == NULL || !verify_at(p, n, 0, &c, false)) break;
      if (first && c.kind != JR_SNAP) return g->snap = 1;
      first = false;
      if (c.kind == JR_SNAPEND) return g->snap = 2;
    }
    if (rc < 0) return rc;
    off += JR_FRAME_HDR + len;
  }
  return rc < 0 ? rc : (g->snap = 1);
}

/* ---- the walk over records ---- */

typedef struct walk {
  jread *r;
  const char *dir;
  bool salvage;
  int (*cb)(const jrec *, void *);
  void *arg;
  char *err;
  size_t errlen;
  bool have_seq;
  uint64_t expect;
  uint64_t refused_at; /* the offset of the damage judge() refused */
} walk;

static int walk_records(walk *w, jseg *g, uint64_t foff, uint32_t len) {
  jread *r = w->r;
  for (uint32_t o = 0; o < len;) {
    check c;
    uint64_t at = foff + JR_FRAME_HDR + o;
    const unsigned char *p;
    int rc = 0;
    size_t n = record_at(r, g, foff, len, o, &p, &rc);
    if (p == NULL)
      return jr_errf(w->err, w->errlen, rc, "%s/%s: cannot read: %s", w->dir,
                     g->name, mly_strerror(rc));
    if (!verify_at(p, n, 0, &c, true)) {
      if (!w->salvage)
        return jr_errf(w->err, w->errlen, MLY_EBADMSG, "%s/%s: offset %" PRIu64
                       ": %s, inside a batch that verifies (--salvage keeps "
                       "what verifies)", w->dir, g->name, at, c.why);
      r->salvaged++;
      r->stray_bytes += len - o;
      return 0; /* the rest of this batch */
    }
    bool first = !w->have_seq;
    if (!first && c.seq != w->expect) {
      if (!w->salvage)
        return jr_errf(w->err, w->errlen, MLY_EBADMSG, "%s/%s: offset %"
                       PRIu64 ": sequence gap: expected record %" PRIu64
                       ", found %" PRIu64, w->dir, g->name, at, w->expect,
                       c.seq);
      r->salvaged++; /* records are missing: count it, so it compacts */
    }
    if (first && !r->base_is_snapshot && c.seq != 1) {
      if (!w->salvage)
        return jr_errf(w->err, w->errlen, MLY_EBADMSG, "%s/%s: offset %"
                       PRIu64 ": the journal begins at record %" PRIu64
                       ", not 1: its first segments are missing (--salvage "
                       "keeps what is here)", w->dir, g->name, at, c.seq);
      r->salvaged++;
    }
    w->have_seq = true;
    w->expect = c.seq + 1;
    if (w->cb) {
      jrec rec = {c.seq, c.kind, p + JR_HDR, c.len, g->name, at};
      int rc = w->cb(&rec, w->arg);
      if (rc) return rc;
    }
    o += JR_HDR + c.len;
  }
  return 0;
}

/* ---- the directory ---- */

static int seg_cmp(const void *a, const void *b) {
  const jseg *x = a, *y = b;
  return x->no < y->no ? -1 : x->no > y->no;
}

static int list_segments(int dirfd, jread *r) {
  int fd = dup(dirfd);
  if (fd < 0) return -errno;
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return -errno;
  }
  rewinddir(d);
  size_t cap = 0;
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d)) != NULL) {
    uint64_t no;
    if (!jr_seg_no(e->d_name, &no)) continue;
    if (r->nsegs == cap) {
      cap = cap ? cap * 2 : 8;
      jseg *v = realloc(r->segs, cap * sizeof *v);
      if (v == NULL) {
        rc = MLY_ENOMEM;
        break;
      }
      r->segs = v;
    }
    jseg *s = &r->segs[r->nsegs++];
    *s = (jseg){.no = no, .fd = -1};
    memcpy(s->name, e->d_name, JR_SEG_NAME_LEN + 1); /* checked above */
  }
  closedir(d);
  if (rc == 0 && r->nsegs > 1) qsort(r->segs, r->nsegs, sizeof *r->segs, seg_cmp);
  return rc;
}

void jr_read_free(jread *r) {
  for (size_t i = 0; i < r->nsegs; i++) {
    if (r->segs[i].mapped) munmap(r->segs[i].data, r->segs[i].map_len);
    else free(r->segs[i].data);
    if (r->segs[i].fd >= 0) close(r->segs[i].fd);
    free(r->segs[i].dmg);
  }
  free(r->segs);
  free(r->buf);
  *r = (jread){0};
}

/* Damage that is refused, or passed by salvage (then 0). */
static int damaged(walk *w, jseg *g, uint64_t off, uint64_t end,
                   const char *why, const char *what) {
  if (!w->salvage) {
    w->refused_at = off;
    return jr_errf(w->err, w->errlen, MLY_EBADMSG, "%s/%s: offset %" PRIu64
                   ": %s%s (--salvage keeps what verifies%s)", w->dir,
                   g->name, off, why, what, g->hdr_ok ? "" : ", and drops "
                   "this segment");
  }
  w->r->salvaged++;
  w->r->stray_bytes += end - off;
  return 0;
}

/* The rules of the header comment, for segment i of n (base..n-1). */
static int judge(walk *w, size_t i, size_t n) {
  jread *r = w->r;
  jseg *g = &r->segs[i], *p = i > r->base ? &r->segs[i - 1] : NULL;
  int rc;
  if (!g->hdr_ok) {
    if ((rc = damaged(w, g, 0, g->file_len, g->hdr_why, "")) < 0) return rc;
    g->removed = true; /* salvage: nothing in it verifies */
    g->len = 0;
    return 0;
  }
  char why[400] = "";
  if (p && g->no != p->no + 1)
    snprintf(why, sizeof why, "segments are missing: the one before is %s; ",
             p->name);
  else if (p && !p->removed && g->prev != p->end_sum)
    snprintf(why, sizeof why, "this segment does not follow %s (its header "
             "names %08" PRIx32 ", that one ends at %08" PRIx32 "): a "
             "segment was replaced or cut; ", p->name, g->prev, p->end_sum);
  else if (!p && !(g->flags & JR_SEG_SNAPSHOT) && g->prev != 0)
    snprintf(why, sizeof why, "this segment follows one that is gone: the "
             "journal's first segments are missing; ");
  if (why[0] && (rc = damaged(w, g, 0, 0, why, "refused")) < 0) return rc;
  bool last = i + 1 == n, snap = (g->flags & JR_SEG_SNAPSHOT) != 0;
  int snap_state = snap ? snapshot_state(r, g) : 0;
  if (snap_state < 0)
    return jr_errf(w->err, w->errlen, snap_state, "%s/%s: cannot read: %s",
                   w->dir, g->name, mly_strerror(snap_state));
  g->len = g->frames_end;
  for (size_t k = 0; k < g->ndmg; k++) {
    jdamage *d = &g->dmg[k];
    bool acked = !last || d->proof > d->off || d->unresolved ||
                 (snap && snap_state != 2);
    if (!acked) { /* the unacknowledged tail: cut, with all after it */
      g->len = d->off;
      g->end_sum = d->chain;
      r->torn_bytes += g->file_len - d->off;
      r->stray_bytes += g->file_len - d->off;
      r->tail_suspect = !d->cut_short;
      return 0;
    }
    snprintf(why, sizeof why, "%s; ", k == 0 ? g->why : "a batch does not "
             "verify");
    const char *what =
        d->unresolved ? "the search for the next batch ran out of its work "
                        "bound: refused, not cut" :
        !last ? "an older segment is synced whole before the next begins, "
                "so this is damage, not a torn write" :
        d->proof > d->off ? "a later batch was written after this one was "
                            "durable, so this is damage, not a torn write" :
        "a snapshot is synced before anything depends on it, so this is "
        "damage, not a torn write";
    if ((rc = damaged(w, g, d->off, d->end, why, what)) < 0) return rc;
  }
  return 0;
}

int jr_read(int dirfd, const char *dir, bool salvage, int how, jread *r,
            int (*cb)(const jrec *, void *), void *arg, char *err,
            size_t errlen) {
  *r = (jread){.map = how == JR_MAP};
  int rc = list_segments(dirfd, r);
  if (rc < 0)
    return jr_errf(err, errlen, rc, "%s: cannot list: %s", dir, mly_strerror(rc));
  src s = {.win = malloc(WINDOW), .body = malloc(WINDOW)};
  if (s.win == NULL || s.body == NULL) rc = MLY_ENOMEM;
  for (size_t i = 0; i < r->nsegs && rc == 0; i++)
    rc = scan_segment(r, dirfd, dir, &r->segs[i], &s, err, errlen);
  free(s.win);
  free(s.body);
  for (size_t i = 0; i < r->nsegs && rc == 0; i++)
    if ((rc = load(dirfd, &r->segs[i], how)) < 0)
      jr_errf(err, errlen, rc, "%s/%s: cannot read: %s", dir, r->segs[i].name,
              mly_strerror(rc));
  if (rc < 0) return rc;
  size_t n = r->nsegs;
  /* a segment whose creation was cut short: removed */
  if (n > 0 && !r->segs[n - 1].hdr_ok && r->segs[n - 1].hdr_torn &&
      r->segs[n - 1].file_len <= JR_SEG_HDR) {
    r->segs[--n].removed = true;
    r->torn_bytes += r->segs[n].file_len;
    r->stray_bytes += r->segs[n].file_len;
  }
  /* a compaction cut short, its older segments still there: removed */
  if (n > 1 && snapshot_state(r, &r->segs[n - 1]) == 1 &&
      r->segs[n - 2].no + 1 == r->segs[n - 1].no) {
    jseg *g = &r->segs[--n];
    bool proven = false;
    for (size_t k = 0; k < g->ndmg; k++) proven |= g->dmg[k].proof > g->dmg[k].off;
    if (proven) {
      n++;
    } else {
      g->removed = true;
      r->torn_bytes += g->file_len;
      r->stray_bytes += g->file_len;
    }
  }
  /* the base: the newest complete snapshot */
  for (size_t i = n; i-- > 0;)
    if (snapshot_state(r, &r->segs[i]) == 2) {
      r->base = i;
      r->base_is_snapshot = true;
      break;
    }
  walk w = {r, dir, salvage, cb, arg, err, errlen, false, 0, 0};
  for (size_t i = r->base; i < n && rc == 0; i++) {
    /* the records before a refused stretch are still seen (dump) */
    jseg *g = &r->segs[i];
    int refused = judge(&w, i, n);
    uint64_t off = JR_SEG_HDR, end = refused < 0 ? w.refused_at : g->len;
    size_t k = 0;
    uint32_t len;
    while (rc == 0 && !g->removed &&
           next_frame(r, g, &off, end, &k, &len, &rc)) {
      r->frames++;
      rc = walk_records(&w, g, off, len);
      off += JR_FRAME_HDR + len;
    }
    if (rc < 0 && err && errlen && err[0] == '\0')
      jr_errf(err, errlen, rc, "%s/%s: cannot read: %s", dir, g->name,
              mly_strerror(rc));
    if (rc == 0) rc = refused;
  }
  r->next_seq = w.have_seq ? w.expect : 1;
  return rc;
}

/* Everything that counts is made durable first (a process killed
 * between a write and its sync leaves bytes that read back but would not
 * survive a power loss: a compaction's snapshot, say, whose older
 * segments are about to go), torn tails cut; only then are segments
 * removed, and the directory synced. */
int jr_repair(int dirfd, const jread *r) {
  for (size_t i = r->base; i < r->nsegs; i++) {
    const jseg *s = &r->segs[i];
    if (s->removed) continue;
    int fd = openat(dirfd, s->name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = s->len < s->file_len && ftruncate(fd, (off_t)s->len) < 0 ? -errno : 0;
    if (rc == 0 && fdatasync(fd) < 0) rc = -errno;
    close(fd);
    if (rc < 0) return rc;
  }
  for (size_t i = 0; i < r->nsegs; i++) {
    const jseg *s = &r->segs[i];
    if (i >= r->base && !s->removed) continue;
    if (unlinkat(dirfd, s->name, 0) < 0 && errno != ENOENT) return -errno;
  }
  if (r->nsegs > 0 && fsync(dirfd) < 0) return -errno;
  return 0;
}
