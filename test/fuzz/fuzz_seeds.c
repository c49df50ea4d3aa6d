/*
 * fuzz_seeds.c - the seed corpus of the journal fuzzer, made fresh at
 * startup from a real journal: the workload (workload.c) runs in a
 * scratch directory, is closed, reopened, compacted and closed again,
 * and the segment files of each stage become inputs in the target's
 * layout (fuzz_journal.h), with some flag variants.  Generating them
 * keeps the seeds in step with the record format as it changes.
 *
 * Segments are small (2 KiB) so a stage has several; an input holds at
 * most three, so earlier ones are joined (records are self-delimiting
 * and seq runs on, so a joined file reads the same), keeping the joined
 * part under the 64 KiB a length field can say.  Seeds hold a segment's
 * records without its batch framing (the target frames them again, see
 * fuzz_journal.h), so the aware mutations work on records; the first
 * stage's first segments also go in as they are, for the batch layer.
 */
#include "fuzz_driver.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_journal.h"
#include "journal.h"
#include "workload.h"

#define SEG_BYTES 2048
#define MAX_STAGE_SEGS 64

/* ---- a stage: the segment files of the directory at one moment ---- */

typedef struct stage {
  fz_buf seg[MAX_STAGE_SEGS]; /* records only */
  fz_buf raw[MAX_STAGE_SEGS]; /* the files */
  size_t n;
} stage;

static void stage_free(stage *s) {
  for (size_t i = 0; i < s->n; i++) {
    free(s->seg[i].p);
    free(s->raw[i].p);
  }
  s->n = 0;
}

/* The records of a format 2 segment: its batches' payloads, joined. */
static int unframe(const fz_buf *in, fz_buf *out) {
  out->p = malloc(in->n ? in->n : 1);
  out->n = 0;
  if (out->p == NULL) return MLY_ENOMEM;
  for (size_t o = JR_SEG_HDR; o + JR_FRAME_HDR <= in->n;) {
    const uint8_t *h = in->p + o;
    size_t len = jr_le32(h);
    if (len > in->n - o - JR_FRAME_HDR) break;
    memcpy(out->p + out->n, h + JR_FRAME_HDR, len);
    out->n += len;
    o += JR_FRAME_HDR + len;
  }
  return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name); /* zero-padded: numeric */
}

static int is_segment(const struct dirent *e) {
  return strncmp(e->d_name, "seg-", 4) == 0;
}

static int take_stage(const char *dir, stage *s) {
  struct dirent **names;
  int n = scandir(dir, &names, is_segment, by_name);
  if (n < 0) return -errno;
  int rc = 0;
  s->n = 0;
  for (int i = 0; i < n; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
    if (rc == 0 && s->n == MAX_STAGE_SEGS) rc = MLY_ERANGE;
    if (rc == 0 && (rc = fz_read_file(path, &s->raw[s->n])) == 0) {
      if ((rc = unframe(&s->raw[s->n], &s->seg[s->n])) == 0) s->n++;
      else free(s->raw[s->n].p);
    }
    free(names[i]);
  }
  free(names);
  return rc;
}

/* ---- inputs in the target's layout ---- */

typedef struct part {
  const uint8_t *p;
  size_t n;
} part;

/* One input: flags, then up to three files. */
static int add_input(fz_corpus *c, uint8_t flags, const part *files,
                     size_t nfiles) {
  if (nfiles == 0 || nfiles > FJ_MAX_SEGS) return MLY_EINVAL;
  size_t size = 1 + 2 * (nfiles - 1);
  for (size_t i = 0; i < nfiles; i++) size += files[i].n;
  uint8_t *buf = malloc(size);
  if (buf == NULL) return MLY_ENOMEM;
  size_t n = 0;
  buf[n++] = (uint8_t)((flags & ~FJ_NSEG_MASK) | (nfiles - 1));
  for (size_t i = 0; i + 1 < nfiles; i++) {
    if (files[i].n > 65535) {
      free(buf);
      return MLY_ERANGE;
    }
    buf[n++] = (uint8_t)files[i].n;
    buf[n++] = (uint8_t)(files[i].n >> 8);
  }
  for (size_t i = 0; i < nfiles; i++) {
    memcpy(buf + n, files[i].p, files[i].n);
    n += files[i].n;
  }
  int rc = fz_corpus_add(c, buf, n);
  free(buf);
  return rc;
}

/* The stage's last two segments as they are, the ones before joined (the
 * join keeps its newest whole segments within 64 KiB).  `joined` holds
 * the bytes of the join.  Returns the number of files (0 when empty). */
static size_t as_files(const stage *s, fz_buf *joined, part files[3]) {
  size_t nf = 0;
  joined->n = 0;
  if (s->n > 2) {
    size_t from = s->n - 2, total = 0;
    while (from > 0 && total + s->seg[from - 1].n <= 65535)
      total += s->seg[--from].n;
    for (size_t i = from; i < s->n - 2; i++) {
      memcpy(joined->p + joined->n, s->seg[i].p, s->seg[i].n);
      joined->n += s->seg[i].n;
    }
    files[nf++] = (part){joined->p, joined->n};
  }
  for (size_t i = s->n > 2 ? s->n - 2 : 0; i < s->n; i++)
    files[nf++] = (part){s->seg[i].p, s->seg[i].n};
  return nf;
}

static int add_stage(fz_corpus *c, const stage *s, const uint8_t *flags,
                     size_t nflags) {
  uint8_t joined_bytes[65535];
  fz_buf joined = {joined_bytes, 0};
  part files[3];
  size_t nf = as_files(s, &joined, files);
  int rc = 0;
  for (size_t i = 0; i < nflags && rc == 0 && nf > 0; i++)
    rc = add_input(c, flags[i], files, nf);
  /* a torn tail: the last file cut inside its last record */
  if (rc == 0 && nf > 0 && files[nf - 1].n > 5) {
    files[nf - 1].n -= 5;
    rc = add_input(c, FJ_TYPES, files, nf);
  }
  /* the first files as they are (numbered 1, 2, 3 like the target's
   * first naming), for the batch layer; and with a torn last batch */
  size_t nraw = s->n < FJ_MAX_SEGS ? s->n : FJ_MAX_SEGS;
  for (size_t i = 0; i < nraw; i++) files[i] = (part){s->raw[i].p, s->raw[i].n};
  if (rc == 0 && nraw > 0) rc = add_input(c, FJ_TYPES, files, nraw);
  if (rc == 0 && nraw > 0 && files[nraw - 1].n > JR_SEG_HDR + 5) {
    files[nraw - 1].n -= 5;
    rc = add_input(c, FJ_TYPES | FJ_TURN, files, nraw);
  }
  return rc;
}

/* ---- the workload ---- */

typedef struct run {
  mly_runtime *rt;
  wl_types t;
  mly_id dropper, waiter;
} run;

static int open_run(run *r, const char *dir, char *err, size_t errlen) {
  int rc = mly_runtime_new(&r->rt, NULL, NULL);
  if (rc < 0) return rc;
  if ((rc = wl_register(r->rt, &r->t)) < 0) {
    mly_runtime_close(r->rt);
    return rc;
  }
  mly_journal_options o = {.dir = dir, .sync = MLY_SYNC_NEVER,
                           .segment_bytes = SEG_BYTES};
  rc = mly_journal_open(r->rt, &o, err, errlen);
  if (rc < 0) mly_runtime_close(r->rt);
  return rc;
}

static void turns(run *r, int n) {
  for (int i = 0; i < n; i++) uv_run(mly_runtime_loop(r->rt), UV_RUN_ONCE);
}

static int spawn(run *r, mly_type *t, const void *arg, size_t len,
                 mly_id *id) {
  mly_id scratch;
  return mly_spawn(r->rt, t, arg, len, id ? id : &scratch);
}

/* A counter with a name (and with a context if ctx): contexts, names
 * and tombstones in the seeds. */
static int spawn_named(run *r, const wl_counter *c, const char *name,
                       bool ctx) {
  mly_spawn_options o = {.arg = c, .arg_len = sizeof *c, .name = name,
                         .generate_name = name == NULL};
  if (ctx && (o.context = mly_value_map()) != NULL)
    mly_map_set_str(o.context, "note", "a context");
  return mly_spawn_opts(r->rt, r->t.counter, &o, NULL);
}

static int spawn_all(run *r) {
  wl_counter c1 = {0, 3, 1}, c2 = {0, 6, 2}, live = {0, 1000000, 1};
  wl_parent p = {.nkids = 2};
  wl_pp pong = {0, 0, 0}, ping = {0, 3, 0};
  wl_waiter w = {0};
  int zero = 0;
  int rc = spawn_named(r, &c1, "c1", true);
  if (rc == 0) rc = spawn_named(r, &c2, "c2", false);
  if (rc == 0) rc = spawn_named(r, &live, NULL, true);
  if (rc == 0) rc = spawn(r, r->t.parent, &p, sizeof p, NULL);
  if (rc == 0) rc = spawn(r, r->t.ponger, &pong, sizeof pong, &ping.peer);
  if (rc == 0) rc = spawn(r, r->t.pinger, &ping, sizeof ping, NULL);
  if (rc == 0) rc = spawn(r, r->t.waiter, &w, sizeof w, &r->waiter);
  if (rc == 0) rc = spawn(r, r->t.dropper, &zero, sizeof zero, &r->dropper);
  return rc;
}

/* Events from the host: junk that the dropper drops, a named one for
 * the waiter (its id is journaled as the string). */
static int send_events(run *r) {
  uint32_t hello;
  mly_value *v = mly_value_map();
  if (v == NULL) return MLY_ENOMEM;
  mly_map_set_str(v, "greeting", "hi");
  mly_map_set_int(v, "n", -12345);
  int rc = mly_event_id(r->rt, WL_EV_NAME, &hello);
  if (rc < 0) {
    mly_value_free(v);
    return rc;
  }
  rc = mly_runtime_send(r->rt, r->waiter, hello, v);
  if (rc == 0)
    rc = mly_runtime_send(r->rt, r->dropper, WL_EV_JUNK, mly_value_str("junk"));
  if (rc == 0)
    rc = mly_runtime_send(r->rt, r->dropper, WL_EV_JUNK,
                          mly_value_bin("\0\1\2", 3));
  return rc;
}

/* Three stages: A after a first run, B reopened and compacted with
 * records after the snapshot, C compacted again and closed at once. */
static int run_workload(const char *dir, stage st[3], char *err,
                        size_t errlen) {
  run r = {0};
  int rc = open_run(&r, dir, err, errlen);
  if (rc < 0) return rc;
  if ((rc = spawn_all(&r)) == 0) {
    turns(&r, 5);
    rc = send_events(&r);
    turns(&r, 25);
  }
  mly_runtime_close(r.rt);
  if (rc == 0) rc = take_stage(dir, &st[0]);
  if (rc < 0 || (rc = open_run(&r, dir, err, errlen)) < 0) return rc;
  turns(&r, 3);
  rc = mly_journal_compact(r.rt);
  turns(&r, 3);
  if (rc == 0)
    rc = mly_runtime_send(r.rt, r.waiter, WL_EV_JUNK, mly_value_uint(1));
  turns(&r, 5);
  mly_runtime_close(r.rt);
  if (rc == 0) rc = take_stage(dir, &st[1]);
  if (rc < 0 || (rc = open_run(&r, dir, err, errlen)) < 0) return rc;
  rc = mly_journal_compact(r.rt);
  mly_runtime_close(r.rt);
  if (rc == 0) rc = take_stage(dir, &st[2]);
  return rc;
}

/* ---- the corpus from the stages ---- */

static int add_compactions(fz_corpus *c, const stage st[3]) {
  if (st[0].n == 0 || st[2].n == 0) return 0;
  const fz_buf *old = &st[0].seg[st[0].n - 1], *snap = &st[2].seg[0];
  /* compaction crashed after its snapshot was safe: the old one stays */
  part stale[2] = {{old->p, old->n}, {snap->p, snap->n}};
  int rc = add_input(c, FJ_TYPES, stale, 2);
  /* ... and before: the snapshot is cut short */
  part torn[2] = {{old->p, old->n}, {snap->p, snap->n / 2}};
  if (rc == 0) rc = add_input(c, 0, torn, 2);
  if (rc == 0) rc = add_input(c, FJ_SALVAGE, torn, 2);
  return rc;
}

static void rm_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

int fz_make_seeds(fz_corpus *out, char *err, size_t errlen) {
  const char *tmp = getenv("TMPDIR");
  char dir[512];
  snprintf(dir, sizeof dir, "%s/mealy-fuzz-seeds.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(dir) == NULL) {
    snprintf(err, errlen, "%s: cannot make: %s", dir, strerror(errno));
    return -errno;
  }
  stage st[3] = {{.n = 0}, {.n = 0}, {.n = 0}};
  err[0] = '\0';
  int rc = run_workload(dir, st, err, errlen);
  static const uint8_t a_flags[] = {0, FJ_TYPES, FJ_TYPES | FJ_TURN,
                                    FJ_NO_RECOVERY | FJ_SALVAGE};
  static const uint8_t b_flags[] = {0, FJ_TYPES | FJ_TURN, FJ_SALVAGE | FJ_TYPES};
  static const uint8_t c_flags[] = {FJ_TYPES | FJ_TURN, 2u << FJ_NAMES_SHIFT};
  if (rc == 0) rc = add_stage(out, &st[0], a_flags, sizeof a_flags);
  if (rc == 0) rc = add_stage(out, &st[1], b_flags, sizeof b_flags);
  if (rc == 0) rc = add_stage(out, &st[2], c_flags, sizeof c_flags);
  if (rc == 0) rc = add_compactions(out, st);
  static const uint8_t tiny[][9] = {{0}, {FJ_NO_RECOVERY, 1, 0, 0, 0, 0, 0, 0, 0}};
  for (size_t i = 0; i < 2 && rc == 0; i++) rc = fz_corpus_add(out, tiny[i], 9);
  if (rc < 0 && err[0] == '\0')
    snprintf(err, errlen, "the seed workload: %s", mly_strerror(rc));
  for (int i = 0; i < 3; i++) stage_free(&st[i]);
  rm_dir(dir);
  return rc;
}

/* The journal target, as the standalone driver sees it. */

static bool journal_keep(void) {
  return fj_last.read_rc == 0 && fj_last.records > 0;
}

static void journal_count(uint64_t c[FZ_NCOUNTS]) {
  c[0] += fj_last.read_rc == 0;
  c[1] += fj_last.open_rc == 0;
  c[2] += fj_last.recovered;
  c[3] += fj_last.parked;
}

const fz_target fz_this_target = {
    "fuzz_journal", fz_make_seeds, journal_keep, journal_count,
    {"read ok", "opened", "instances recovered", "parked"}};
