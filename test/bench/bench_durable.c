/*
 * bench_durable.c - what durability costs.
 *
 *   bench_durable [DIR]      (default: ./bench-state, on a real disk:
 *                             a tmpfs would make fdatasync free)
 *
 *  1. group commit: 10,000 durable machines stepping at once under the
 *     `always` policy; durable steps per second, fdatasyncs, steps per
 *     sync, journal bytes per step;
 *  2. one machine stepping alone, each step waiting for its own commit,
 *     beside the raw write+fdatasync rate of the same disk, measured in
 *     the same run: the runtime's share of a commit;
 *  2b. contexts: the same with a context per machine, changed by every
 *     step (100 bytes: 10,000 machines; 64 KiB: 200 machines), and a
 *     64 KiB one that every step looks at but leaves as it was: steps
 *     per second and journal bytes per step;
 *  3. recovery: 1,000,000 live instances (BENCH_RECOVERY_N) written,
 *     the runtime closed, and the time to open the journal again until
 *     every instance is back and ready; how long compacting them takes
 *     (the loop pauses); then the reopening again, from the compacted
 *     journal.
 * Lines: BENCH <name> <value> <unit>.
 *
 * The store is a parameter, as for the tests (MLY_TEST_STORE,
 * store_param.h): `MLY_TEST_STORE=postgresql bash
 * test/pg/with_cluster.sh build/test/bench/bench_durable` runs the same
 * parts on PostgreSQL (names ending in _postgresql; the raw fdatasync
 * yardstick and the journal's files and compaction are journal only).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mealy.h"
#include "../store_param.h"

static double now_s(void) { return (double)uv_hrtime() / 1e9; }

static char dir[4096];
/* the store (MLY_TEST_STORE, store_param.h): on PostgreSQL every name
 * ends in _postgresql, "journal bytes" are the records' bytes handed to
 * the store, and what measures the journal's disk and files is left out
 * (said as "journal only: ...") */
static bool on_pg;
static const char *sfx = "", *bytes_name = "journal_bytes";

static void wipe(void) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0 || h_store_wipe(dir) < 0) {
    fprintf(stderr, "cannot remove %s\n", dir);
    exit(1);
  }
}

typedef struct stepper {
  uint32_t n, target;
} stepper;
#define STEPPER_POINTS(X) X(stepper, next)
MLY_POINTS(stepper, STEPPER_POINTS);

static int stepper_run(mly_machine *m, void *data) {
  stepper *s = data;
  MLY_BEGIN(m);
  while (s->n < s->target) {
    s->n++;
    MLY_YIELD_AT(m, stepper_next);
  }
  MLY_END(m);
}

#define SLEEPER_POINTS(X) X(sleeper, zz)
MLY_POINTS(sleeper, SLEEPER_POINTS);
static int sleeper_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_SLEEP_AT(m, sleeper_zz, 3600 * 1000);
  MLY_END(m);
}

/* A stepper with a context {"n", "pad"}: "n" changes every step unless
 * `same` (then the step only looks at it). */
typedef struct ctxstep {
  uint32_t n, target, same;
} ctxstep;
#define CTXSTEP_POINTS(X) X(ctxstep, go) X(ctxstep, next)
MLY_POINTS(ctxstep, CTXSTEP_POINTS);

static int ctxstep_run(mly_machine *m, void *data) {
  ctxstep *s = data;
  MLY_BEGIN(m);
  MLY_AWAIT_AT(m, ctxstep_go, 1, -1); /* the creates are durable first */
  while (s->n < s->target) {
    s->n++;
    mly_value *c = mly_context(m);
    if (!s->same) mly_map_set_int(c, "n", s->n);
    MLY_YIELD_AT(m, ctxstep_next);
  }
  MLY_END(m);
}

static mly_type *ctx_type;

static mly_runtime *open_rt(mly_type **st, mly_type **sl, mly_sync sync) {
  mly_runtime *rt;
  if (mly_runtime_new(&rt, NULL, NULL) < 0) exit(1);
  mly_type_def a = {.name = "stepper", .run = stepper_run,
                    MLY_TYPE_POINTS(stepper), .data_size = sizeof(stepper),
                    .version = 1, .flags = MLY_TYPE_DURABLE};
  mly_type_def b = {.name = "sleeper", .run = sleeper_run,
                    MLY_TYPE_POINTS(sleeper), .data_size = 8, .version = 1,
                    .flags = MLY_TYPE_DURABLE};
  mly_type_def c = {.name = "ctxstep", .run = ctxstep_run,
                    MLY_TYPE_POINTS(ctxstep), .data_size = sizeof(ctxstep),
                    .version = 1, .flags = MLY_TYPE_DURABLE};
  if (mly_type_register(rt, &a, st) < 0 || mly_type_register(rt, &b, sl) < 0 ||
      mly_type_register(rt, &c, &ctx_type) < 0)
    exit(1);
  mly_journal_options o = {.dir = dir, .sync = sync,
                           .compact_min_bytes = UINT64_MAX / 2};
  char err[512];
  if (h_durable_open(rt, &o, err, sizeof err) < 0) {
    fprintf(stderr, "bench_durable: %s\n", err);
    exit(1);
  }
  return rt;
}

static void group_commit(void) {
  const uint32_t machines = 10000, steps = 100;
  wipe();
  mly_type *st, *sl;
  mly_runtime *rt = open_rt(&st, &sl, MLY_SYNC_ALWAYS);
  for (uint32_t i = 0; i < machines; i++) {
    stepper s = {0, steps};
    mly_spawn(rt, st, &s, sizeof s, NULL);
  }
  double t0 = now_s();
  mly_runtime_run(rt);
  double dt = now_s() - t0;
  mly_journal_stats js;
  mly_journal_stats_get(rt, &js);
  double total = (double)machines * steps;
  printf("BENCH durable_steps_always_10k%s %.0f steps/s\n", sfx, total / dt);
  printf("BENCH durable_syncs_10k%s %llu %s\n", sfx,
         (unsigned long long)js.syncs, on_pg ? "commits" : "fdatasyncs");
  printf("BENCH durable_steps_per_sync_10k%s %.0f steps\n", sfx,
         total / (double)(js.syncs ? js.syncs : 1));
  printf("BENCH %s_per_step%s %.1f bytes\n", bytes_name, sfx,
         (double)js.bytes / (total + 2.0 * machines));
  mly_runtime_close(rt);
}

static void context_steps(const char *name, uint32_t machines,
                          uint32_t steps, size_t size, bool same) {
  wipe();
  mly_type *st, *sl;
  mly_runtime *rt = open_rt(&st, &sl, MLY_SYNC_ALWAYS);
  char *pad = calloc(1, size);
  mly_id *ids = calloc(machines, sizeof *ids);
  if (pad == NULL || ids == NULL) exit(1);
  for (uint32_t i = 0; i < machines; i++) {
    ctxstep s = {0, steps, same};
    mly_value *c = mly_value_map();
    mly_map_set_int(c, "n", 0);
    mly_map_set(c, "pad", mly_value_bin(pad, size > 16 ? size - 16 : 0));
    mly_spawn_options o = {.arg = &s, .arg_len = sizeof s, .context = c};
    if (mly_spawn_opts(rt, ctx_type, &o, &ids[i]) < 0) exit(1);
  }
  free(pad);
  /* the create records and first steps, written and synced: not counted */
  mly_journal_stats js0 = {0};
  for (int still = 0; still < 20;) {
    uint64_t before = js0.bytes;
    uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
    usleep(2000);
    mly_journal_stats_get(rt, &js0);
    still = js0.bytes == before && js0.bytes > 0 ? still + 1 : 0;
  }
  double t0 = now_s();
  for (uint32_t i = 0; i < machines; i++) /* an EVENT record each: counted */
    mly_runtime_send(rt, ids[i], 1, NULL);
  mly_runtime_run(rt);
  double dt = now_s() - t0;
  free(ids);
  mly_journal_stats js;
  mly_journal_stats_get(rt, &js);
  double total = (double)machines * steps;
  printf("BENCH durable_steps_%s%s %.0f steps/s\n", name, sfx, total / dt);
  printf("BENCH %s_per_step_%s%s %.1f bytes\n", bytes_name, name, sfx,
         (double)(js.bytes - js0.bytes) / total);
  mly_runtime_close(rt);
}

static double raw_fdatasync_rate(int n) {
  char path[4200];
  snprintf(path, sizeof path, "%s/raw-sync-test", dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (fd < 0) exit(1);
  char rec[64] = {0};
  double t0 = now_s();
  for (int i = 0; i < n; i++)
    if (write(fd, rec, sizeof rec) != sizeof rec || fdatasync(fd) < 0) exit(1);
  double dt = now_s() - t0;
  close(fd);
  unlink(path);
  return n / dt;
}

static void sequential(void) {
  const uint32_t steps = 3000;
  wipe();
  mly_type *st, *sl;
  mly_runtime *rt = open_rt(&st, &sl, MLY_SYNC_ALWAYS);
  /* the disk's own rate is the journal's yardstick (in its directory) */
  double raw_before = on_pg ? 0 : raw_fdatasync_rate((int)steps);
  stepper s = {0, steps};
  mly_spawn(rt, st, &s, sizeof s, NULL);
  double t0 = now_s();
  mly_runtime_run(rt);
  double dt = now_s() - t0;
  double rate = steps / dt;
  printf("BENCH durable_sequential%s %.0f steps/s\n", sfx, rate);
  if (on_pg) {
    printf("journal only: raw_fdatasync, durable_sequential_vs_raw (not "
           "measured on postgresql)\n");
    mly_runtime_close(rt);
    return;
  }
  double raw_after = raw_fdatasync_rate((int)steps);
  double raw = (raw_before + raw_after) / 2;
  printf("BENCH raw_fdatasync %.0f syncs/s\n", raw);
  printf("BENCH durable_sequential_vs_raw %.1f %%\n", 100.0 * rate / raw);
  mly_runtime_close(rt);
}

static void recovery(void) {
  const char *e = getenv("BENCH_RECOVERY_N");
  const uint32_t n = e && *e ? (uint32_t)strtoul(e, NULL, 10) : 1000000;
  char nname[32]; /* 1m, or the count asked for */
  if (n == 1000000) snprintf(nname, sizeof nname, "1m");
  else snprintf(nname, sizeof nname, "%u", n);
  wipe();
  mly_type *st, *sl;
  mly_runtime *rt = open_rt(&st, &sl, MLY_SYNC_NEVER);
  for (uint32_t i = 0; i < n; i++) mly_spawn(rt, sl, NULL, 0, NULL);
  /* every instance takes its first step and goes to sleep */
  for (int i = 0; i < 2000; i++) {
    uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
    mly_stats s;
    mly_runtime_stats(rt, &s);
    if (s.steps >= n) break;
  }
  mly_runtime_close(rt);
  mly_journal_info info = {0};
  char err[512];
  if (!on_pg) mly_journal_info_get(dir, &info, err, sizeof err);
  double t0 = now_s();
  rt = open_rt(&st, &sl, MLY_SYNC_ALWAYS);
  double dt = now_s() - t0;
  mly_stats s;
  mly_runtime_stats(rt, &s);
  if (s.live != n) {
    fprintf(stderr, "bench_durable: %llu of %u came back\n",
            (unsigned long long)s.live, n);
    exit(1);
  }
  printf("BENCH recovery_%s_instances%s %.2f s\n", nname, sfx, dt);
  if (on_pg) { /* the journal's files and their compaction */
    printf("journal only: recovery_journal_bytes, compaction_%s_instances, "
           "recovery_%s_compacted (not measured on postgresql)\n", nname,
           nname);
    mly_runtime_close(rt);
    return;
  }
  printf("BENCH recovery_journal_bytes %.1f MiB\n", (double)info.bytes / 1048576.0);
  t0 = now_s();
  mly_journal_compact(rt); /* nothing in flight: it runs here and now */
  printf("BENCH compaction_%s_instances %.2f s\n", nname, now_s() - t0);
  mly_runtime_close(rt);
  t0 = now_s();
  rt = open_rt(&st, &sl, MLY_SYNC_ALWAYS);
  dt = now_s() - t0;
  printf("BENCH recovery_%s_compacted %.2f s\n", nname, dt);
  mly_runtime_close(rt);
}

int main(int argc, char **argv) {
  snprintf(dir, sizeof dir, "%s", argc > 1 ? argv[1] : "bench-state");
  on_pg = !h_on_journal();
  if (on_pg) sfx = "_postgresql", bytes_name = "record_bytes";
  /* the store's default lease (the tests' 1 s is shorter than a COMMIT
   * of 10,000 creates on a busy machine: it would evict) */
  setenv("MLY_TEST_PG_LEASE_MS", "10000", 0);
  group_commit();
  context_steps("ctx100_10k", 10000, 100, 100, false);
  context_steps("ctx64k_200", 200, 10, 64 << 10, false);
  context_steps("ctx64k_unchanged_200", 200, 100, 64 << 10, true);
  sequential();
  recovery();
  wipe();
  return 0;
}
