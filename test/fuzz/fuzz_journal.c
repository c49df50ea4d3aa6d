/*
 * fuzz_journal.c - a libFuzzer target over the journal reader: any byte
 * string, laid out as a state directory (see fuzz_journal.h), must read
 * without a crash, a hang or a leak, and every answer must make sense.
 *
 * One run: empty the scratch directory (made once per process), write
 * the input's segment files into it, then
 *
 *   1. jr_read with rp_record (salvage as the input says), the reader
 *      and replay that recovery and `mealy journal` use; check what it
 *      reports (verified lengths within the files, counts that add up, a
 *      message with every MLY_EBADMSG);
 *   2. mly_journal_scan, checking that seq grows by one without salvage;
 *   3. mly_journal_info_get;
 *   4. unless the input says not to, recovery: a runtime on its own loop,
 *      mly_journal_open on the directory (no types registered, so every
 *      instance parks, or the workload's types, so they come back), maybe
 *      one loop turn, mly_runtime_close.  A directory that opened must
 *      read again afterwards, without salvage: recovery cuts torn tails,
 *      a salvaged open compacts the damage away, and what it appends is
 *      never damage.
 *
 * A broken check prints what broke and aborts, so every engine (libFuzzer,
 * the standalone driver, a sanitizer) reports it as a crash with the
 * input that caused it.  MLY_ENOMEM is one: an input is small, and both
 * engines make an allocation past their limit a crash of its own, so an
 * allocation never fails here and "out of memory" is a wrong answer.
 *
 * Recovery adds well under a millisecond to a run (one or two with the
 * workload's types and a loop turn), so it runs for every input whose
 * flags allow it, with one exception: when the journal names an instance
 * slot past 2^16 (unless FUZZ_BIG_SLOTS is set).  The runtime's slot
 * table is dense by design, 16 bytes a slot up to RP_MAX_SLOT (2^24:
 * 256 MiB), past the drivers' allocation limit; replay's own index is
 * sparse and is fuzzed whatever the ids (b3 in test/fuzz/crashes/README).
 */
#include "fuzz_journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "jreplay.h"
#include "workload.h"

#define SLOT_LIMIT (1u << 16) /* no recovery past this slot: see above */

fj_result fj_last;

static char g_dir[512];
static int g_dirfd = -1;

static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                        noreturn));
static void fatal(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("fuzz_journal: ", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    if (!(cond)) fatal("check failed: " #cond ": " __VA_ARGS__);           \
  } while (0)

/* ---- the scratch directory ---- */

static void clear_dir(void) {
  int fd = dup(g_dirfd);
  DIR *d = fd < 0 ? NULL : fdopendir(fd);
  if (d == NULL) fatal("%s: cannot list: %s", g_dir, strerror(errno));
  rewinddir(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (unlinkat(g_dirfd, e->d_name, 0) < 0 && errno != ENOENT)
      fatal("%s/%s: cannot remove: %s", g_dir, e->d_name, strerror(errno));
  }
  closedir(d);
}

static void remove_dir(void) {
  if (g_dirfd < 0) return;
  clear_dir();
  close(g_dirfd);
  g_dirfd = -1;
  rmdir(g_dir);
}

/* FUZZ_TMPDIR, else /dev/shm (no disk), else TMPDIR, else /tmp. */
static const char *scratch_base(void) {
  const char *b = getenv("FUZZ_TMPDIR");
  if (b && *b) return b;
  struct stat st;
  if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
      access("/dev/shm", W_OK | X_OK) == 0)
    return "/dev/shm";
  b = getenv("TMPDIR");
  return b && *b ? b : "/tmp";
}

static void setup_once(void) {
  if (g_dirfd >= 0) return;
  snprintf(g_dir, sizeof g_dir, "%s/mealy-fuzz-journal.XXXXXX", scratch_base());
  if (mkdtemp(g_dir) == NULL)
    fatal("%s: cannot make a scratch directory: %s", g_dir, strerror(errno));
  g_dirfd = open(g_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (g_dirfd < 0) fatal("%s: cannot open: %s", g_dir, strerror(errno));
  atexit(remove_dir);
}

/* ---- the input as segment files ---- */

static const uint64_t seg_numbers[4][FJ_MAX_SEGS] = {
    {1, 2, 3},
    {1, 7, 1000},
    {UINT64_MAX - 2, UINT64_MAX - 1, UINT64_MAX},
    {0, 1, 2},
};

static void write_file(const char *name, const uint8_t *p, size_t n) {
  int fd = openat(g_dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fatal("%s/%s: cannot create: %s", g_dir, name, strerror(errno));
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fatal("%s/%s: cannot write: %s", g_dir, name, strerror(errno));
    p += w;
    n -= (size_t)w;
  }
  close(fd);
}

/* A run of records as the writer frames it (lib/journal.h): a header,
 * then one batch per record, each saying the bytes before it were
 * durable (the `always` policy); bytes past the last whole record follow
 * as they are (a torn tail, or damage).  *chain: the previous segment's
 * last sum, then this one's. */
static size_t frame_records(const uint8_t *p, size_t n, uint64_t no,
                            uint32_t *chain, uint8_t *out) {
  uint32_t salt = 0x5eed0000u ^ (uint32_t)no, flags = 0;
  size_t o = 0, w = JR_SEG_HDR;
  if (n >= JR_HDR) { /* a snapshot segment if it begins with SNAP */
    uint32_t len = jr_le32(p);
    jcur c = {p + JR_HDR, p + JR_HDR + (len < n - JR_HDR ? len : n - JR_HDR),
              false};
    uint32_t na;
    uint64_t seq, kind;
    if (jc_array(&c, &na) && jc_uint(&c, &seq) && jc_uint(&c, &kind) &&
        kind == JR_SNAP)
      flags = JR_SEG_SNAPSHOT;
  }
  jr_seg_header(out, salt, *chain, no, flags);
  *chain = jr_le32(out + 28);
  while (o + JR_HDR <= n) {
    size_t len = jr_le32(p + o);
    if (len > n - o - JR_HDR || JR_HDR + len < JR_MIN_FRAME) break;
    *chain = jr_frame_header(out + w, salt, *chain, w, p + o,
                             (uint32_t)(JR_HDR + len));
    memcpy(out + w + JR_FRAME_HDR, p + o, JR_HDR + len);
    w += JR_FRAME_HDR + JR_HDR + len;
    o += JR_HDR + len;
  }
  memcpy(out + w, p + o, n - o);
  return w + n - o;
}

/* Writes the segments; returns the flags byte. */
static uint8_t write_segments(const uint8_t *data, size_t size) {
  uint8_t flags = size > 0 ? data[0] : 0;
  size_t off = size > 0 ? 1 : 0;
  unsigned nseg = fj_nsegs(flags);
  size_t len[FJ_MAX_SEGS] = {0};
  for (unsigned i = 0; i + 1 < nseg; i++) {
    len[i] = off + 2 <= size ? (size_t)data[off] | (size_t)data[off + 1] << 8 : 0;
    off = off + 2 <= size ? off + 2 : size;
  }
  const uint64_t *no = seg_numbers[(flags & FJ_NAMES_MASK) >> FJ_NAMES_SHIFT];
  uint32_t chain = 0;
  for (unsigned i = 0; i < nseg; i++) {
    size_t left = size - off;
    size_t n = i + 1 == nseg || len[i] > left ? left : len[i];
    char name[32];
    snprintf(name, sizeof name, "seg-%020" PRIu64 ".mj", no[i]);
    if (n >= 4 && memcmp(data + off, JR_MAGIC, 4) == 0) {
      write_file(name, data + off, n); /* format 2 as it is */
    } else {
      uint8_t *framed = malloc(JR_SEG_HDR + n + JR_FRAME_HDR * (n / JR_MIN_FRAME + 1));
      if (framed == NULL) fatal("out of memory framing an input");
      write_file(name, framed, frame_records(data + off, n, no[i], &chain, framed));
      free(framed);
    }
    off += n;
  }
  return flags;
}

/* ---- 1. the reader and replay ---- */

typedef struct read_result {
  int rc;
  uint32_t max_slot; /* of the instances replayed */
} read_result;

static void check_read(const jread *jr, const replay *r) {
  CHECK(jr->nsegs <= FJ_MAX_SEGS, "%zu segments", jr->nsegs);
  CHECK(jr->nsegs == 0 || jr->base < jr->nsegs, "base %zu of %zu", jr->base,
        jr->nsegs);
  uint64_t total = 0;
  for (size_t i = 0; i < jr->nsegs; i++) {
    CHECK(jr->segs[i].len <= jr->segs[i].file_len, "%s: %zu of %zu bytes",
          jr->segs[i].name, jr->segs[i].len, jr->segs[i].file_len);
    total += jr->segs[i].file_len;
  }
  CHECK(total == jr->total_bytes, "%" PRIu64 " != %" PRIu64, total,
        jr->total_bytes);
  CHECK(jr->torn_bytes <= jr->total_bytes, "torn %" PRIu64, jr->torn_bytes);
  CHECK(r->live <= r->ninsts, "%" PRIu64 " live of %zu", r->live, r->ninsts);
  CHECK(r->pending <= r->nevs, "%" PRIu64 " pending of %zu", r->pending,
        r->nevs);
}

static read_result read_and_replay(bool salvage) {
  char err[512] = "";
  replay r = {.err = err, .errlen = sizeof err};
  jread jr;
  read_result out = {0, 0};
  out.rc = jr_read(g_dirfd, g_dir, salvage, false, &jr, rp_record, &r, err, sizeof err);
  CHECK(out.rc <= 0, "rc %d", out.rc);
  CHECK(out.rc != MLY_ENOMEM, "out of memory: %s", err);
  CHECK(out.rc != MLY_EBADMSG || err[0] != '\0', "EBADMSG without a message");
  CHECK(strlen(err) < sizeof err, "unterminated message");
  if (out.rc == 0) check_read(&jr, &r);
  fj_last.records = r.records;
  for (size_t i = 0; i < r.ninsts; i++)
    if ((uint32_t)r.insts[i].id > out.max_slot)
      out.max_slot = (uint32_t)r.insts[i].id;
  jr_read_free(&jr);
  rp_free(&r);
  return out;
}

/* ---- 2. and 3. the offline entry points ---- */

typedef struct scan_state {
  bool salvage, have;
  uint64_t last;
} scan_state;

static int scan_cb(const mly_record *rec, void *arg) {
  scan_state *s = arg;
  CHECK(rec->kind != NULL && rec->file != NULL && rec->body != NULL, "record");
  CHECK(!s->have || s->salvage || rec->seq == s->last + 1,
        "seq %" PRIu64 " after %" PRIu64, rec->seq, s->last);
  s->have = true;
  s->last = rec->seq;
  return 0;
}

static void offline(bool salvage) {
  char err[512] = "";
  scan_state s = {salvage, false, 0};
  int rc = mly_journal_scan(g_dir, salvage, scan_cb, &s, err, sizeof err);
  CHECK(rc <= 0 && rc != MLY_ENOMEM, "scan rc %d: %s", rc, err);
  mly_journal_info info;
  rc = mly_journal_info_get(g_dir, &info, err, sizeof err);
  CHECK(rc <= 0 && rc != MLY_ENOMEM, "info rc %d: %s", rc, err);
  if (rc == 0) {
    CHECK(info.segments <= FJ_MAX_SEGS, "%" PRIu64 " segments", info.segments);
    CHECK(info.dead_ratio >= 0.0 && info.dead_ratio <= 1.0, "ratio %f",
          info.dead_ratio);
    CHECK(info.live_records >= info.live_instances + info.pending_events,
          "live records");
  }
}

/* ---- 4. recovery ---- */

static int count_parked(const mly_parked *p, void *arg) {
  CHECK(p->type != NULL && p->point != NULL && p->reason != NULL, "parked");
  (*(size_t *)arg)++;
  return 0;
}

static void recover(uint8_t flags) {
  mly_runtime *rt = NULL;
  int rc = mly_runtime_new(&rt, NULL, NULL);
  if (rc < 0) fatal("mly_runtime_new: %s", mly_strerror(rc));
  wl_types t;
  if ((flags & FJ_TYPES) && (rc = wl_register(rt, &t)) < 0)
    fatal("wl_register: %s", mly_strerror(rc));
  mly_journal_options o = {.dir = g_dir, .sync = MLY_SYNC_NEVER,
                           .salvage = (flags & FJ_SALVAGE) != 0};
  char err[512] = "";
  int open_rc = mly_journal_open(rt, &o, err, sizeof err);
  CHECK(open_rc <= 0, "open rc %d", open_rc);
  CHECK(open_rc != MLY_ENOMEM, "out of memory: %s", err);
  CHECK(open_rc == 0 || err[0] != '\0', "open failed without a message");
  if (open_rc == 0) {
    size_t n = 0;
    mly_journal_stats st;
    CHECK(mly_journal_parked(rt, count_parked, &n) == 0, "parked");
    CHECK(mly_journal_stats_get(rt, &st) == 0, "stats");
    CHECK(st.parked == n, "%" PRIu64 " parked, %zu listed", st.parked, n);
    fj_last.recovered = st.recovered;
    fj_last.parked = st.parked;
    if (flags & FJ_TURN) uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
  }
  mly_runtime_close(rt);
  fj_last.open_rc = open_rc;
  if (open_rc == 0) { /* what opened reads again, without salvage */
    replay r = {.err = err, .errlen = sizeof err};
    jread jr;
    rc = jr_read(g_dirfd, g_dir, false, false, &jr, rp_record, &r, err,
                 sizeof err);
    jr_read_free(&jr);
    rp_free(&r);
    CHECK(rc == 0, "the directory opened, then does not read: %s", err);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup_once();
  clear_dir();
  fj_last = (fj_result){.open_rc = 1};
  uint8_t flags = write_segments(data, size);
  bool salvage = (flags & FJ_SALVAGE) != 0;
  read_result rd = read_and_replay(salvage);
  fj_last.read_rc = rd.rc;
  offline(salvage);
  bool big = rd.rc == 0 && rd.max_slot >= SLOT_LIMIT &&
             getenv("FUZZ_BIG_SLOTS") == NULL;
  if (!(flags & FJ_NO_RECOVERY) && !big) recover(flags);
  return 0;
}
