/*
 * pl_check.c - the power-loss simulation: record the durable workload
 * under the interposer, build crash images from its log, recover each
 * one with the real library and check it against what was acknowledged.
 *
 *   pl_check [--existing] WORKLOAD INTERPOSER
 *   pl_check replay WORKLOAD LOG K CLASS SEED
 *   pl_check dump LOG            the log's operations, numbered (k counts
 *                                them: a crash after k runs 0..k-1)
 *
 * The recorded run is PL_PHASES runs of `WORKLOAD STATE run PHASE` on
 * one state directory, the earlier ones SIGKILLed by the interposer right
 * after a random write, before its sync (so the log also holds recoveries
 * that find an unsynced tail), the last one run to its end.  The state
 * directory is ROOT/state, and the interposer logs everything under ROOT:
 * the journal's mkdir of its state directory is part of the log, and only
 * an fsync of ROOT makes it durable.  With --existing the state directory
 * exists (durably) before the first run.
 *
 * Images, one recorded run per 1000 random ones:
 *  - a synced image at every crash point of each recovery, from the start
 *    of a later run to its first sync of a file (a reopened journal must
 *    not acknowledge what is not durable);
 *  - POWERLOSS_IMAGES (default 60; thousands for a long run) at random
 *    crash points (three in four just before a sync, where the most is
 *    unsynced, and for reorder images where a write over several sectors
 *    is unsynced), the classes synced, prefix and reorder in turn (see
 *    pl_model.h).
 * For each, `WORKLOAD IMG/state recover` must open the journal (the
 * simulator makes no damage in anything acknowledged, so a refusal is a
 * failure), bring back every machine whose state was acknowledged at k at
 * that state or the one after it (which may have been written, not
 * acknowledged) and nothing past, with its hash chain intact, keep every
 * acknowledged durable post exactly once and no key that was never
 * posted, and run everything to its end.  A failing image is kept with
 * the log, and a line to replay it is printed.  POWERLOSS_SEED fixes the
 * seed (the recorded run itself depends on thread timing: replay a kept
 * log to repeat a failure exactly).
 */
#include "pl_model.h"
#include "pl_log.h"
#include "pl_workload.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NMACH (PL_COUNTERS + 2 * PL_PAIRS) /* c 0.., then p, then q */
#define KEYBYTES (PL_NKEYS / 8)
#define KEEP_MAX 20
#define SHOW_MAX 12

static uint64_t hashes[PL_TARGET + 1];
static const char *workload, *self;

static int mach(char kind, unsigned idx) {
  if (kind == 'c' && idx < PL_COUNTERS) return (int)idx;
  if (kind == 'p' && idx < PL_PAIRS) return PL_COUNTERS + (int)idx;
  if (kind == 'q' && idx < PL_PAIRS) return PL_COUNTERS + PL_PAIRS + (int)idx;
  return -1;
}

static void mach_name(int i, char *out) {
  if (i < PL_COUNTERS) sprintf(out, "counter %d", i);
  else if (i < PL_COUNTERS + PL_PAIRS) sprintf(out, "pinger %d", i - PL_COUNTERS);
  else sprintf(out, "ponger %d", i - PL_COUNTERS - PL_PAIRS);
}

static bool hex_bits(const char *s, uint8_t *out) {
  if (strlen(s) != 2 * KEYBYTES) return false;
  for (int i = 0; i < KEYBYTES; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) return false;
    out[i] = (uint8_t)v;
  }
  return true;
}

static bool bit(const uint8_t *b, unsigned k) { return b[k / 8] & (1u << (k % 8)); }

/* ---- what was acknowledged ---- */

typedef struct acks {
  int64_t n[NMACH];     /* highest acknowledged state, -1: none */
  bool done[NMACH];
  bool sink_done;
  uint8_t sink_bits[KEYBYTES]; /* what it ended with */
  uint8_t posted[KEYBYTES], acked[KEYBYTES];
  char bad[256];        /* a BAD line the workload wrote */
} acks;

static void acks_init(acks *a) {
  memset(a, 0, sizeof *a);
  for (int i = 0; i < NMACH; i++) a->n[i] = -1;
}

static void ack_line(acks *a, const char *l) {
  char kind, hx[2 * KEYBYTES + 2];
  unsigned idx, n;
  unsigned long long h;
  if (strncmp(l, "BAD", 3) == 0) {
    if (!a->bad[0]) snprintf(a->bad, sizeof a->bad, "%.200s", l);
    return;
  }
  bool done = strncmp(l, "done ", 5) == 0;
  const char *p = done ? l + 5 : l;
  if (sscanf(p, "s %u %64s", &n, hx) == 2) {
    a->sink_done = done && hex_bits(hx, a->sink_bits);
    return;
  }
  if (sscanf(l, "P %u", &n) == 1 && n < PL_NKEYS) {
    a->posted[n / 8] |= (uint8_t)(1u << (n % 8));
    return;
  }
  if (sscanf(l, "e %u", &n) == 1 && n < PL_NKEYS) {
    a->acked[n / 8] |= (uint8_t)(1u << (n % 8));
    return;
  }
  if (sscanf(p, "%c %u %u %llu", &kind, &idx, &n, &h) >= 3) {
    int m = mach(kind, idx);
    if (m < 0) return;
    /* "done" comes from the last step, before its END record is written:
     * the machine may be gone, but its last state is not acknowledged */
    if (done) a->done[m] = true;
    else if ((int64_t)n > a->n[m]) a->n[m] = n;
  }
}

/* Every acknowledgement among the first k operations. */
static void acks_at(const pl_model *m, size_t k, acks *a) {
  acks_init(a);
  for (size_t i = 0; i < k; i++) {
    const char *s = plm_ack(m, i);
    if (s == NULL) continue;
    char line[512];
    while (*s) { /* an ack record holds whole lines */
      size_t n = strcspn(s, "\n");
      snprintf(line, sizeof line, "%.*s", (int)n, s);
      ack_line(a, line);
      s += n + (s[n] == '\n');
    }
  }
}

/* ---- running the workload ---- */

typedef struct run_out {
  char *text;          /* every line it wrote on fd 3 */
  size_t len, cap;
  int status;
  unsigned lines;
} run_out;

static void out_add(run_out *o, const char *p, size_t n) {
  if (o->len + n + 1 > o->cap) {
    o->cap = (o->len + n + 1) * 2;
    o->text = realloc(o->text, o->cap);
    if (o->text == NULL) abort();
  }
  memcpy(o->text + o->len, p, n);
  o->len += n;
  o->text[o->len] = '\0';
  for (size_t i = 0; i < n; i++) o->lines += p[i] == '\n';
}

/* Runs WORKLOAD with args; its fd 3 is read into o, its stderr goes to
 * errpath.  preload: the interposer's environment (NULL: none).  Killed
 * after kill_after lines (0: never) or, as a hang, after 300 s. */
static void run(const char *const *args, const char *const *preload,
                const char *errpath, unsigned kill_after, run_out *o) {
  int fds[2];
  if (pipe(fds) < 0) {
    perror("pipe");
    exit(1);
  }
  memset(o, 0, sizeof *o);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    exit(1);
  }
  if (pid == 0) {
    close(fds[0]);
    if (fds[1] != 3) {
      dup2(fds[1], 3);
      close(fds[1]);
    }
    int e = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (e >= 0) dup2(e, 2);
    for (int i = 0; preload && preload[i]; i += 2) setenv(preload[i], preload[i + 1], 1);
    if (preload) { /* ASan wants to come first; the interposer must */
      const char *a = getenv("ASAN_OPTIONS");
      char buf[1024];
      snprintf(buf, sizeof buf, "%s%sverify_asan_link_order=0", a ? a : "",
               a && *a ? ":" : "");
      setenv("ASAN_OPTIONS", buf, 1);
    }
    execv(workload, (char *const *)args);
    _exit(127);
  }
  close(fds[1]);
  bool killed = false;
  time_t t0 = time(NULL);
  char buf[65536];
  for (;;) {
    struct pollfd pf = {fds[0], POLLIN, 0};
    int pr = poll(&pf, 1, 1000);
    if (pr < 0 && errno == EINTR) continue;
    if (pr == 0) {
      if (!killed && time(NULL) - t0 > 300) { /* a hang, not a timing test */
        kill(pid, SIGKILL);
        killed = true;
        out_add(o, "HANG\n", 5);
      }
      continue;
    }
    ssize_t r = read(fds[0], buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    out_add(o, buf, (size_t)r);
    if (kill_after && !killed && o->lines >= kill_after) {
      kill(pid, SIGKILL);
      killed = true;
    }
  }
  close(fds[0]);
  while (waitpid(pid, &o->status, 0) < 0 && errno == EINTR) {
  }
}

/* ---- files ---- */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
  (void)st;
  (void)flag;
  (void)f;
  return remove(p);
}

static void rm_rf(const char *p) {
  struct stat st;
  if (lstat(p, &st) == 0) nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  static char buf[2048];
  buf[0] = '\0';
  if (f) {
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
  }
  buf[strcspn(buf, "\n")] = '\0';
  return buf;
}

/* ---- checking one image ---- */

enum { F_OK_ = 0, F_REFUSED, F_LOST_DIR, F_LOST, F_INVENTED, F_UNFINISHED,
       F_BAD, F_NCAT };
static const char *const cat_name[F_NCAT] = {
    "ok", "refused", "lost (no state dir)", "lost", "invented", "unfinished",
    "bad"};

typedef struct verdict {
  int cat;
  char why[1024];
} verdict;

static void fail(verdict *v, int cat, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(verdict *v, int cat, const char *fmt, ...) {
  if (v->cat) return; /* the first reason is the one shown */
  v->cat = cat;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->why, sizeof v->why, fmt, ap);
  va_end(ap);
}

/* Recovers img (a built image of the root) and judges it against a. */
static void check_image(const char *img, const acks *a, verdict *v) {
  char state[PATH_MAX + 16], errpath[PATH_MAX + 16];
  snprintf(state, sizeof state, "%s/state", img);
  snprintf(errpath, sizeof errpath, "%s.err", img);
  struct stat st;
  bool had_dir = stat(state, &st) == 0;
  const char *args[] = {workload, state, "recover", NULL};
  run_out o;
  run(args, NULL, errpath, 0, &o);
  memset(v, 0, sizeof *v);
  bool present[NMACH] = {0}, fin[NMACH] = {0}, sink = false, sink_fin = false;
  int64_t rn[NMACH], last[NMACH];
  uint8_t sink_bits[KEYBYTES] = {0}, final_bits[KEYBYTES] = {0};
  bool opened = false;
  unsigned long long nrec = 0, parked = 0, torn = 0;
  char *save = NULL;
  for (char *l = strtok_r(o.text ? o.text : (char[]){0}, "\n", &save); l;
       l = strtok_r(NULL, "\n", &save)) {
    char kind, hx[2 * KEYBYTES + 2];
    unsigned idx, n;
    unsigned long long h = 0;
    if (sscanf(l, "open %llu %llu %llu", &nrec, &parked, &torn) == 3) {
      opened = true;
    } else if (strncmp(l, "BAD", 3) == 0 || strcmp(l, "HANG") == 0) {
      fail(v, F_BAD, "the recovered workload says: %s", l);
    } else if (sscanf(l, "R s %u %64s", &n, hx) == 2) {
      sink = true;
      if (!hex_bits(hx, sink_bits)) fail(v, F_BAD, "a sink line: %s", l);
      unsigned cnt = 0;
      for (unsigned k = 0; k < PL_NKEYS; k++) {
        cnt += bit(sink_bits, k);
        if (bit(sink_bits, k) && !bit(a->posted, k))
          fail(v, F_INVENTED, "the sink came back holding key %u, which was "
               "never posted", k);
      }
      if (cnt != n) fail(v, F_INVENTED, "the sink came back with count %u "
                         "but %u keys", n, cnt);
    } else if (sscanf(l, "done s %u %64s", &n, hx) == 2) {
      sink_fin = hex_bits(hx, final_bits);
    } else if (sscanf(l, "R %c %u %u %llu", &kind, &idx, &n, &h) >= 3) {
      int m = mach(kind, idx);
      char nm[32];
      if (m < 0 || present[m]) {
        fail(v, F_BAD, "a recovered line that makes no sense: %s", l);
        continue;
      }
      mach_name(m, nm);
      present[m] = true;
      rn[m] = n;
      last[m] = -1;
      int64_t acked = a->n[m] > 0 ? a->n[m] : 0;
      if ((int64_t)n < a->n[m])
        fail(v, F_LOST, "%s came back at %u, but %lld was acknowledged", nm,
             n, (long long)a->n[m]);
      else if ((int64_t)n > acked + 1)
        fail(v, F_INVENTED, "%s came back at %u, past the acknowledged %lld "
             "and the one after it", nm, n, (long long)a->n[m]);
      if (m < PL_COUNTERS && (n > PL_TARGET || h != hashes[n]))
        fail(v, F_INVENTED, "%s came back at %u with a hash its steps never "
             "made", nm, n);
    } else if (sscanf(strncmp(l, "done ", 5) == 0 ? l + 5 : l, "%c %u %u %llu",
                      &kind, &idx, &n, &h) >= 3 && mach(kind, idx) >= 0) {
      int m = mach(kind, idx);
      char nm[32];
      mach_name(m, nm);
      if (!present[m]) {
        fail(v, F_BAD, "%s ran but was not recovered: %s", nm, l);
        continue;
      }
      if (strncmp(l, "done ", 5) == 0) {
        fin[m] = true;
        if (n != PL_TARGET) fail(v, F_BAD, "%s ended at %u", nm, n);
      } else if (last[m] >= 0 ? (int64_t)n != last[m] + 1
                              : (int64_t)n != rn[m] && (int64_t)n != rn[m] + 1) {
        fail(v, F_BAD, "%s went from %lld to %u", nm,
             (long long)(last[m] >= 0 ? last[m] : rn[m]), n);
      } else {
        last[m] = n;
      }
      if (m < PL_COUNTERS && (n > PL_TARGET || h != hashes[n]))
        fail(v, F_BAD, "%s at %u has a hash its steps never made", nm, n);
    }
  }
  if (!opened) {
    char *e = slurp(errpath);
    if (WIFEXITED(o.status) && WEXITSTATUS(o.status) == 4)
      fail(v, F_REFUSED, "the open refused the image: %s", e);
    else
      fail(v, F_BAD, "the recovery did not open (status %d): %s", o.status, e);
  }
  if (parked) fail(v, F_BAD, "%llu instances parked", parked);
  /* what was acknowledged and is gone */
  for (int m = 0; m < NMACH; m++) {
    char nm[32];
    mach_name(m, nm);
    if (!present[m] && a->n[m] >= 0 && !a->done[m])
      fail(v, had_dir ? F_LOST : F_LOST_DIR, "%s was acknowledged at %lld and "
           "did not come back%s", nm, (long long)a->n[m],
           had_dir ? "" : " (the image has no state directory: its entry in "
                          "the root was never synced)");
    if (present[m] && !fin[m])
      fail(v, F_UNFINISHED, "%s came back but did not finish", nm);
  }
  for (unsigned k = 0; k < PL_NKEYS; k++) {
    if (!bit(a->acked, k)) continue;
    if (!sink && !a->sink_done)
      fail(v, had_dir ? F_LOST : F_LOST_DIR, "durable post %u was acknowledged "
           "but the sink did not come back%s", k,
           had_dir ? "" : " (the image has no state directory)");
    else if (sink && sink_fin && !bit(final_bits, k))
      fail(v, F_LOST, "durable post %u was acknowledged but the sink never "
           "got it", k);
  }
  if (sink && !sink_fin) fail(v, F_UNFINISHED, "the sink did not finish");
  for (unsigned k = 0; sink_fin && k < PL_NKEYS; k++)
    if (bit(final_bits, k) && !bit(a->posted, k))
      fail(v, F_INVENTED, "the sink got key %u, which was never posted", k);
  if (!(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0) && opened)
    fail(v, F_BAD, "the recovered workload ended with status %d: %s", o.status,
         slurp(errpath));
  free(o.text);
}

/* ---- the recorded run ---- */

static uint64_t seed;

static uint64_t rng(void) {
  seed ^= seed << 13;
  seed ^= seed >> 7;
  seed ^= seed << 17;
  return seed;
}

/* A record of the checker's own: PL_PRE or PL_MARK. */
static void log_own(const char *log, uint32_t op, const char *rel) {
  FILE *f = fopen(log, "ab");
  pl_rec r = {PL_MAGIC, op, -1, -1, 0, (uint32_t)strlen(rel), 0, 0, 0, 0};
  if (f == NULL || fwrite(&r, sizeof r, 1, f) != 1 ||
      fwrite(rel, 1, r.plen, f) != r.plen || fclose(f) != 0) {
    perror(log);
    exit(1);
  }
}

/* Records the workload into work/log; returns false if it misbehaved. */
static bool record(const char *work, const char *interposer, bool existing) {
  char root[PATH_MAX], state[PATH_MAX + 8], log[PATH_MAX + 8], errp[PATH_MAX + 16];
  snprintf(root, sizeof root, "%s/root", work);
  snprintf(state, sizeof state, "%s/state", root);
  snprintf(log, sizeof log, "%s/log", work);
  snprintf(errp, sizeof errp, "%s/record.err", work);
  if (mkdir(root, 0755) < 0) {
    perror(root);
    exit(1);
  }
  close(open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  if (existing) {
    if (mkdir(state, 0755) < 0) {
      perror(state);
      exit(1);
    }
    log_own(log, PL_PRE, "state");
  }
  for (int p = 0; p < PL_PHASES; p++) {
    char ph[16], kw[16];
    snprintf(ph, sizeof ph, "%d", p);
    const char *args[] = {workload, state, "run", ph, NULL};
    bool last = p == PL_PHASES - 1;
    /* the early runs die right after a write, before its sync */
    snprintf(kw, sizeof kw, "%u", last ? 0 : 20 + (unsigned)(rng() % 60));
    const char *env[] = {"LD_PRELOAD", interposer, "POWERLOSS_DIR", root,
                         "POWERLOSS_LOG", log, "POWERLOSS_ACKFD", "3",
                         "POWERLOSS_KILL_WRITE", kw, NULL};
    run_out o;
    log_own(log, PL_MARK, "");
    run(args, env, errp, 0, &o);
    bool ok = WIFEXITED(o.status) ? WEXITSTATUS(o.status) == 0
                                  : !last && WTERMSIG(o.status) == SIGKILL;
    char *bad = o.text ? strstr(o.text, "BAD") : NULL;
    if (!ok || bad || (o.text && strstr(o.text, "HANG"))) {
      fprintf(stderr, "FAIL: recorded run %d (status %d): %s%.200s\n", p,
              o.status, slurp(errp), bad ? bad : "");
      free(o.text);
      return false;
    }
    printf("recorded run %d: %u report lines%s\n", p, o.lines,
           WIFSIGNALED(o.status) ? ", killed" : ", to its end");
    free(o.text);
  }
  return true;
}

/* ---- images ---- */

typedef struct tally {
  unsigned images[PLM_NCLASSES];
  unsigned by[PLM_NCLASSES][F_NCAT];
  unsigned shown, kept;
} tally;

/* Builds and checks one image; false if it failed. */
static bool one_image(const char *work, const pl_model *m, size_t k,
                      plm_class cls, uint64_t s, tally *t, bool verbose) {
  char img[PATH_MAX], err[1024], desc[2048];
  snprintf(img, sizeof img, "%s/img", work);
  rm_rf(img);
  if (mkdir(img, 0755) < 0) {
    perror(img);
    exit(1);
  }
  if (plm_build(m, k, cls, s, img, desc, sizeof desc, err, sizeof err) < 0) {
    fprintf(stderr, "FAIL: building an image: %s\n", err);
    exit(1);
  }
  acks a;
  acks_at(m, k, &a);
  verdict v;
  check_image(img, &a, &v);
  if (t) {
    t->images[cls]++;
    t->by[cls][v.cat]++;
  }
  if (verbose) printf("%s\n", desc);
  if (v.cat == F_OK_) {
    if (verbose) printf("ok: the image recovers everything acknowledged\n");
    return true;
  }
  bool show = !t || t->shown++ < SHOW_MAX;
  char kept[PATH_MAX + 32] = "";
  if (!t || t->kept < KEEP_MAX) {
    if (t) {
      snprintf(kept, sizeof kept, "%s/fail-%u", work, t->kept++);
      rm_rf(kept);
      rename(img, kept);
    } else {
      snprintf(kept, sizeof kept, "%s", img);
    }
  }
  if (show) {
    printf("FAIL (%s): %s\n", cat_name[v.cat], v.why);
    if (!verbose) printf("  %s\n", desc);
    if (t)
      printf("  replay: %s replay %s %s/log %zu %s %llu%s%s\n", self,
             workload, work, k, plm_class_name(cls), (unsigned long long)s,
             kept[0] ? "   image: " : "", kept);
  }
  return false;
}

static int replay_main(char **argv) {
  workload = argv[2];
  const char *log = argv[3];
  size_t k = strtoull(argv[4], NULL, 10);
  plm_class cls;
  if (plm_class_parse(argv[5], &cls) < 0) {
    fprintf(stderr, "pl_check: CLASS is synced, prefix or reorder\n");
    return 2;
  }
  uint64_t s = strtoull(argv[6], NULL, 10);
  pl_model *m;
  char err[1024], work[] = "/tmp/mealy-powerloss-replay.XXXXXX";
  if (plm_load(log, &m, err, sizeof err) < 0) {
    fprintf(stderr, "pl_check: %s\n", err);
    return 1;
  }
  if (mkdtemp(work) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  bool ok = one_image(work, m, k, cls, s, NULL, true);
  printf("image kept in %s/img\n", work);
  plm_free(m);
  return ok ? 0 : 1;
}

static bool is_sync(const pl_model *m, size_t i) {
  return plm_kind(m, i) == PLM_SYNC || plm_kind(m, i) == PLM_SYNC_ALL;
}

int main(int argc, char **argv) {
  for (int i = 0; i < PL_TARGET; i++) hashes[i + 1] = pl_chain(hashes[i], (uint64_t)i);
  if (argc == 7 && strcmp(argv[1], "replay") == 0) return replay_main(argv);
  if (argc == 3 && strcmp(argv[1], "dump") == 0) { /* the model's ops */
    pl_model *m;
    char err[1024], line[512];
    if (plm_load(argv[2], &m, err, sizeof err) < 0) {
      fprintf(stderr, "pl_check: %s\n", err);
      return 1;
    }
    for (size_t i = 0; i < plm_nops(m); i++) {
      plm_describe(m, i, line, sizeof line);
      printf("%zu %s\n", i, line + (line[0] == ' '));
    }
    plm_free(m);
    return 0;
  }
  bool existing = argc > 1 && strcmp(argv[1], "--existing") == 0;
  if (argc != 3 + existing) {
    fprintf(stderr, "usage: pl_check [--existing] WORKLOAD INTERPOSER\n"
                    "       pl_check replay WORKLOAD LOG K CLASS SEED\n"
                    "       pl_check dump LOG\n");
    return 2;
  }
  static char wl[PATH_MAX], ip[PATH_MAX];
  if (!realpath(argv[1 + existing], wl) || !realpath(argv[2 + existing], ip)) {
    perror("pl_check: the workload or the interposer");
    return 2;
  }
  workload = wl;
  static char me[PATH_MAX];
  self = realpath(argv[0], me) ? me : argv[0];
  const char *env = getenv("POWERLOSS_IMAGES"), *senv = getenv("POWERLOSS_SEED");
  long images = env ? strtol(env, NULL, 10) : 60;
  if (images < 1) images = 1;
  seed = senv ? strtoull(senv, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20;
  if (seed == 0) seed = 1;
  uint64_t seed0 = seed;
  tally t = {0};
  bool recorded_ok = true;
  long done = 0, systematic = 0;
  for (int r = 0; done < images && recorded_ok; r++) {
    char work[] = "/tmp/mealy-powerloss.XXXXXX";
    if (mkdtemp(work) == NULL) {
      perror("mkdtemp");
      return 1;
    }
    recorded_ok = record(work, ip, existing);
    pl_model *m = NULL;
    char err[1024], root[PATH_MAX + 8];
    snprintf(root, sizeof root, "%s/root", work);
    if (recorded_ok && plm_load(strcat(strcpy(err, work), "/log"), &m, err,
                                sizeof err) < 0) {
      fprintf(stderr, "FAIL: the log: %s\n", err);
      recorded_ok = false;
    }
    if (recorded_ok && plm_compare(m, root, err, sizeof err) < 0) {
      fprintf(stderr, "FAIL: the log does not explain the directory: %s\n", err);
      recorded_ok = false;
    }
    if (recorded_ok) { /* the workload itself did everything */
      acks a;
      acks_at(m, plm_nops(m), &a);
      for (int i = 0; i < NMACH; i++) recorded_ok &= a.done[i];
      /* a key posted just before a kill may be gone: it was never acked */
      for (int k = 0; k < KEYBYTES; k++)
        recorded_ok &= (a.acked[k] & ~a.sink_bits[k]) == 0 &&
                       (a.sink_bits[k] & ~a.posted[k]) == 0;
      recorded_ok &= a.sink_done;
      if (!recorded_ok) fprintf(stderr, "FAIL: the recorded workload did not "
                                "finish everything it was given\n");
    }
    if (!recorded_ok) {
      printf("the recorded run is kept in %s\n", work);
      plm_free(m);
      break;
    }
    /* crash points: just before a sync (where the most is unsynced), and
     * among those the ones a reorder can tell from a prefix */
    size_t nops = plm_nops(m), nsync = 0, nre = 0;
    size_t *syncs = calloc(nops + 1, sizeof *syncs);
    size_t *reord = calloc(nops + 1, sizeof *reord);
    if (syncs == NULL || reord == NULL) abort();
    for (size_t i = 0; i < nops; i++)
      if (is_sync(m, i)) {
        syncs[nsync++] = i;
        if (plm_reorderable(m, i)) reord[nre++] = i;
      }
    printf("log: %zu operations, %zu syncs, %zu of them after a write over "
           "several sectors\n", nops, nsync, nre);
    /* every crash point of each recovery, from the run's start to its
     * first sync: what a reopened journal acknowledges must be durable */
    unsigned fails_before = t.shown;
    size_t nrec = 0;
    for (size_t i = 0, mark = 0; i < nops; i++) {
      if (plm_kind(m, i) == PLM_MARK) mark = ++nrec > 1 ? i + 1 : 0;
      if (mark == 0 || i < mark) continue;
      one_image(work, m, i + 1, PLM_SYNCED, 0, &t, false);
      systematic++;
      if (plm_file_sync(m, i)) mark = 0;
    }
    long batch = images - done < 1000 ? images - done : 1000;
    for (long i = 0; i < batch; i++, done++) {
      plm_class cls = (plm_class)(i % PLM_NCLASSES);
      size_t k, pick = rng() % 4;
      if (pick > 0 && cls == PLM_REORDER && nre) k = reord[rng() % nre];
      else if (pick > 0 && nsync) k = syncs[rng() % nsync];
      else k = 1 + rng() % nops;
      one_image(work, m, k, cls, rng(), &t, false);
    }
    free(syncs);
    free(reord);
    plm_free(m);
    if (t.shown > fails_before) printf("log and failing images kept in %s\n", work);
    else rm_rf(work);
  }
  unsigned failed = 0;
  for (int c = 0; c < PLM_NCLASSES; c++) {
    unsigned bad = t.images[c] - t.by[c][F_OK_];
    failed += bad;
    printf("  %-8s %5u images, %5u failed", plm_class_name((plm_class)c),
           t.images[c], bad);
    for (int f = 1; f < F_NCAT; f++)
      if (t.by[c][f]) printf(", %s %u", cat_name[f], t.by[c][f]);
    printf("\n");
  }
  printf("powerloss%s: %ld images at recoveries, %ld at random points (seed "
         "%llu): %s\n", existing ? " (existing state directory)" : "",
         systematic, done, (unsigned long long)seed0,
         recorded_ok && failed == 0 ? "ok" : "FAILED");
  return recorded_ok && failed == 0 ? 0 : 1;
}
