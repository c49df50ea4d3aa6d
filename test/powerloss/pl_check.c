/*
 * pl_check.c - the power-loss simulation: record the durable workload
 * under the interposer, build crash images from its log, recover each
 * one with the real library and check it against what was acknowledged.
 *
 *   pl_check [--existing | --deep] WORKLOAD INTERPOSER
 *   pl_check replay WORKLOAD LOG K CLASS SEED
 *   pl_check dump LOG            the log's operations, numbered (k counts
 *                                them: a crash after k runs 0..k-1)
 *
 * The recorded run is PL_PHASES runs of `WORKLOAD STATE run PHASE` on
 * one state directory, the earlier ones SIGKILLed by the interposer right
 * after a write, before its sync (a random write; in the second run the
 * one that fills a segment; in the third, which compacts as it starts,
 * the snapshot's records), so the log also holds recoveries that find an
 * unsynced tail or snapshot; the last one runs to its end.  The state
 * directory is ROOT/state, and the interposer logs everything under ROOT:
 * the journal's mkdir of its state directory is part of the log, and only
 * an fsync of ROOT makes it durable.  With --existing the state directory
 * exists (durably) before the first run; with --deep it is
 * ROOT/deep/er/state, and the journal makes all three.
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
 * the log, and a line to replay it is printed.  With POWERLOSS_MEALY
 * (the mealy binary), `mealy journal check` must pass each image too,
 * before the open.  POWERLOSS_KEEP keeps the log of a run that passed.
 * POWERLOSS_SEED fixes the seed (the recorded run
 * itself depends on thread timing: replay a kept log to repeat a failure
 * exactly).
 */
#include "pl_judge.h"
#include "pl_log.h"
#include "pl_model.h"
#include "pl_proc.h"

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

#define KEEP_MAX 20 /* failing images kept */
#define SHOW_MAX 12 /* failing images printed */

static const char *workload, *self, *mealy;

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
static bool record(const char *work, const char *interposer, bool existing,
                   const char *state_rel) {
  char root[PATH_MAX], state[2 * PATH_MAX], log[PATH_MAX + 8], errp[PATH_MAX + 16];
  snprintf(root, sizeof root, "%s/root", work);
  snprintf(state, sizeof state, "%s/%s", root, state_rel);
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
    /* the early runs die right after a write, before its sync: a random
     * one; the one that fills a segment; the first records of the
     * snapshot a compaction writes (the run compacts as it starts) */
    const char *how = "POWERLOSS_KILL_WRITE";
    snprintf(kw, sizeof kw, "%u", last ? 0 : 20 + (unsigned)(rng() % 60));
    if (p == 1) {
      how = "POWERLOSS_KILL_CROSS";
      snprintf(kw, sizeof kw, "%d", PL_SEGMENT);
    } else if (p == PL_COMPACT_PHASE) {
      how = "POWERLOSS_KILL_CREATED";
      snprintf(kw, sizeof kw, "%d", 64); /* past a segment's header */
    }
    const char *env[] = {"LD_PRELOAD", interposer, "POWERLOSS_DIR", root,
                         "POWERLOSS_LOG", log, "POWERLOSS_ACKFD", "3",
                         how, kw, NULL};
    pl_out o;
    log_own(log, PL_MARK, state_rel);
    plp_run(workload, args, env, errp, 600, &o); /* thousands of syncs */
    bool ok = WIFEXITED(o.status) ? WEXITSTATUS(o.status) == 0
                                  : !last && WTERMSIG(o.status) == SIGKILL;
    char *bad = o.text ? strstr(o.text, "BAD") : NULL;
    if (!ok || bad || (o.text && strstr(o.text, "HANG"))) {
      fprintf(stderr, "FAIL: recorded run %d (status %d): %s%.200s\n", p,
              o.status, plp_first_line(errp), bad ? bad : "");
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
  unsigned by[PLM_NCLASSES][PLJ_NCAT];
  unsigned shown, kept;
} tally;

/* Builds and checks one image; false if it failed. */
static bool one_image(const char *work, const pl_model *m, size_t k,
                      plm_class cls, uint64_t s, tally *t, bool verbose) {
  char img[PATH_MAX], err[1024], desc[2048];
  snprintf(img, sizeof img, "%s/img", work);
  plp_rm_rf(img);
  if (mkdir(img, 0755) < 0) {
    perror(img);
    exit(1);
  }
  if (plm_build(m, k, cls, s, img, desc, sizeof desc, err, sizeof err) < 0) {
    fprintf(stderr, "FAIL: building an image: %s\n", err);
    exit(1);
  }
  pl_acks a;
  plj_acks_at(m, k, &a);
  pl_verdict v;
  plj_check(workload, mealy, img, plm_state(m), &a, &v);
  if (t) {
    t->images[cls]++;
    t->by[cls][v.cat]++;
  }
  if (verbose) printf("%s\n", desc);
  if (v.cat == PLJ_OK) {
    if (verbose) printf("ok: the image recovers everything acknowledged\n");
    return true;
  }
  bool show = !t || t->shown++ < SHOW_MAX;
  char kept[PATH_MAX + 32] = "";
  if (!t || t->kept < KEEP_MAX) {
    if (t) {
      snprintf(kept, sizeof kept, "%s/fail-%u", work, t->kept++);
      plp_rm_rf(kept);
      rename(img, kept);
    } else {
      snprintf(kept, sizeof kept, "%s", img);
    }
  }
  if (show) {
    printf("FAIL (%s): %s\n", plj_cat_name[v.cat], v.why);
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
  char err[1024], work[1024];
  if (plm_load(log, &m, err, sizeof err) < 0) {
    fprintf(stderr, "pl_check: %s\n", err);
    return 1;
  }
  plp_mkdtemp("mealy-powerloss-replay", work, sizeof work);
  bool ok = one_image(work, m, k, cls, s, NULL, true);
  printf("image kept in %s/img\n", work);
  plm_free(m);
  return ok ? 0 : 1;
}

static bool is_sync(const pl_model *m, size_t i) {
  return plm_kind(m, i) == PLM_SYNC || plm_kind(m, i) == PLM_SYNC_ALL;
}

int main(int argc, char **argv) {
  mealy = getenv("POWERLOSS_MEALY");
  if (mealy && !*mealy) mealy = NULL;
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
  bool deep = argc > 1 && strcmp(argv[1], "--deep") == 0;
  const char *state_rel = deep ? "deep/er/state" : "state";
  if (argc != 3 + (existing || deep)) {
    fprintf(stderr, "usage: pl_check [--existing | --deep] WORKLOAD INTERPOSER\n"
                    "       pl_check replay WORKLOAD LOG K CLASS SEED\n"
                    "       pl_check dump LOG\n");
    return 2;
  }
  static char wl[PATH_MAX], ip[PATH_MAX];
  int a0 = 1 + (existing || deep);
  if (!realpath(argv[a0], wl) || !realpath(argv[a0 + 1], ip)) {
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
    char work[1024];
    plp_mkdtemp("mealy-powerloss", work, sizeof work);
    recorded_ok = record(work, ip, existing, state_rel);
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
      pl_acks a;
      plj_acks_at(m, plm_nops(m), &a);
      recorded_ok = plj_complete(&a);
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
    else if (getenv("POWERLOSS_KEEP")) printf("log kept in %s\n", work);
    else plp_rm_rf(work);
  }
  unsigned failed = 0;
  for (int c = 0; c < PLM_NCLASSES; c++) {
    unsigned bad = t.images[c] - t.by[c][PLJ_OK];
    failed += bad;
    printf("  %-8s %5u images, %5u failed", plm_class_name((plm_class)c),
           t.images[c], bad);
    for (int f = 1; f < PLJ_NCAT; f++)
      if (t.by[c][f]) printf(", %s %u", plj_cat_name[f], t.by[c][f]);
    printf("\n");
  }
  printf("powerloss%s: %ld images at recoveries, %ld at random points (seed "
         "%llu): %s\n", existing ? " (existing state directory)"
                         : deep ? " (state directory three levels down)" : "",
         systematic, done, (unsigned long long)seed0,
         recorded_ok && failed == 0 ? "ok" : "FAILED");
  return recorded_ok && failed == 0 ? 0 : 1;
}
