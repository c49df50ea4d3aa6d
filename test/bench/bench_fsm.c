/*
 * bench_fsm.c - dispatches per second of YAML machines.
 *
 *   bench_fsm [DIR [memory|durable|64k]]   (DIR default ./bench-fsm-state,
 *                                           on a real disk)
 *
 *  1. a 3-state machine (a -> b -> c -> a ...) with a 100-byte context,
 *     10,000 instances at once, in memory (no journal); and 100 instances
 *     (all in cache);
 *  2. the same, durable, `always` (group commit);
 *  3. the same durable run with a 64 KiB context: dispatches per second
 *     and journal bytes per dispatch.
 * Each also gives the CPU time (user + system) per dispatch: on a busy
 * host, the figure that does not depend on the neighbours.
 * Lines: BENCH <name> <value> <unit>.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "mealy.h"
#include "../fsm_tri.h"
#include "../store_param.h"

static double now_s(void) { return (double)uv_hrtime() / 1e9; }

/* CPU time of this process (user + system): on a shared, loaded host
 * the wall-clock rate says more about the neighbours than about mealy */
static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static char dir[4096];
static tri_count tri;

static void wipe(void) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) exit(1);
}

static void tick(uv_timer_t *t) { (void)t; }

static int run(bool durable, uint32_t n, int64_t per, size_t ctx_bytes,
               const char *name) {
  mly_runtime *rt = NULL;
  if (mly_runtime_new(&rt, NULL, NULL) < 0) return 1;
  tri = (tri_count){.target = per};
  if (tri_register(rt, &tri) < 0) return 1;
  if (durable) {
    wipe();
    /* no compaction during the run: it would reset the byte count */
    mly_journal_options jo = {.dir = dir, .sync = MLY_SYNC_ALWAYS,
                              .compact_min_bytes = 1ULL << 50};
    char err[256];
    if (h_durable_open(rt, &jo, err, sizeof err) < 0) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
  }
  mly_fsm_load_options o = {.action_known = mly_action_known, .action_arg = rt};
  mly_fsm_set *set = NULL;
  if (mly_fsm_load_text("bench.yaml", tri_yaml, strlen(tri_yaml), &o, &set) < 0 ||
      mly_fsm_add(rt, set) < 0)
    return 1;
  mly_fsm_set_free(set);
  /* "n" and the keys: about 10 bytes of the context */
  if (tri_start(rt, "b", n, ctx_bytes > 10 ? ctx_bytes - 10 : 0) < 0) return 1;
  mly_journal_stats js0 = {0}, js1 = {0};
  if (durable) mly_journal_stats_get(rt, &js0);
  uv_timer_t t;
  uv_timer_init(mly_runtime_loop(rt), &t);
  uv_timer_start(&t, tick, 50, 50);
  double t0 = now_s(), c0 = cpu_s();
  while (tri.done < n) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  double dt = now_s() - t0, cpu = cpu_s() - c0;
  if (durable) mly_journal_stats_get(rt, &js1);
  uv_close((uv_handle_t *)&t, NULL);
  uint64_t dispatches = tri.steps + n; /* each instance: per actions + final */
  printf("BENCH %s %.0f dispatches/s\n", name, (double)dispatches / dt);
  printf("BENCH %s_cpu_per_dispatch %.3f us\n", name,
         cpu * 1e6 / (double)dispatches);
  if (durable) {
    printf("BENCH %s_bytes_per_dispatch %.0f bytes\n", name,
           (double)(js1.bytes - js0.bytes) / (double)dispatches);
    printf("BENCH %s_dispatches_per_sync %.1f dispatches\n", name,
           (double)dispatches / (double)(js1.syncs - js0.syncs + 1));
  }
  fflush(stdout);
  mly_runtime_close(rt);
  return 0;
}

int main(int argc, char **argv) {
  snprintf(dir, sizeof dir, "%s", argc > 1 ? argv[1] : "bench-fsm-state");
  const char *only = argc > 2 ? argv[2] : ""; /* memory, durable, 64k */
  int rc = 0;
  if (!*only || !strcmp(only, "memory"))
    rc |= run(false, 10000, 200, 100, "fsm_steps_memory");
  if (!*only || !strcmp(only, "memory100"))
    rc |= run(false, 100, 20000, 100, "fsm_steps_memory_100");
  if (!*only || !strcmp(only, "durable"))
    rc |= run(true, 10000, 30, 100, "fsm_steps_durable_always");
  if (!*only || !strcmp(only, "64k"))
    rc |= run(true, 1000, 10, 64 * 1024, "fsm_steps_durable_64k");
  if (rc == 0) wipe();
  return rc;
}
