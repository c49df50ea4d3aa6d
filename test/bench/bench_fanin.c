/*
 * bench_fanin.c - fan-in of 100,000 contexts.
 *
 *   bench_fanin [DIR [N]]    (default ./bench-fanin-state, 100000; a
 *                             real disk: a tmpfs makes fdatasync free)
 *
 * N YAML instances are started at once; each one's first action stamps
 * the time and names the event that takes it into a counted fan-in
 * (count N), so each arrives there in its next step: its context goes to
 * the collector (a durable send, in the arrival's own record) and the
 * instance ends.  The fan-in action stamps the time it starts.  Printed:
 * the time from the last arrival's action to the fan-in action's start
 * (it includes that arrival's commit, the collector's merge step and the
 * merge instance's first step), and the whole run, under the `always`
 * sync policy (group commit).  Lines: BENCH <name> <value> <unit>.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fsm_fan_util.h"
#include "mealy.h"
#include "../store_param.h"

typedef struct bench {
  uint64_t last_arrival_ns, fan_in_ns;
  uint64_t merged;
  int done;
} bench;

static int a_arrive(mly_action_call *c, void *arg) {
  bench *b = arg;
  b->last_arrival_ns = uv_hrtime();
  return mly_action_event(c, "in");
}

static int a_join(mly_action_call *c, void *arg) {
  bench *b = arg;
  b->fan_in_ns = uv_hrtime();
  b->merged = mly_value_len(mly_map_get(mly_action_context(c), "merged"));
  b->done = 1;
  return mly_action_event(c, "ok");
}

static int done(void *arg) { return ((bench *)arg)->done; }

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "bench-fanin-state";
  long n = argc > 2 ? atol(argv[2]) : 100000;
  char cmd[4200], yaml[1024];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) return 1;
  snprintf(yaml, sizeof yaml,
           "state_machines:\n"
           "  - name: many\n"
           "    states:\n"
           "      - name: start\n"
           "        initial: True\n"
           "        action: Arrive\n"
           "        transitions:\n"
           "          - {event: in, to: join}\n"
           "      - name: join\n"
           "        fan_in: {count: %ld}\n"
           "        action: Join\n"
           "        transitions:\n"
           "          - {event: ok, to: end}\n"
           "      - name: end\n"
           "        final: True\n",
           n);
  bench b;
  memset(&b, 0, sizeof b);
  mly_runtime *rt;
  if (mly_runtime_new(&rt, NULL, NULL) < 0) return 1;
  mly_action_register(rt, "Arrive", a_arrive, &b, 0);
  mly_action_register(rt, "Join", a_join, &b, 0);
  mly_journal_options jo = {.dir = dir, .sync = MLY_SYNC_ALWAYS};
  char err[512];
  if (h_durable_open(rt, &jo, err, sizeof err) < 0) {
    fprintf(stderr, "bench_fanin: %s\n", err);
    return 1;
  }
  fan_util_load(rt, "bench.yaml", yaml);
  uint64_t t0 = uv_hrtime();
  for (long i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "m%ld", i);
    int rc = mly_fsm_start(rt, "many", name, NULL, NULL, 0, NULL);
    if (rc < 0) {
      fprintf(stderr, "bench_fanin: start: %s\n", mly_strerror(rc));
      return 1;
    }
  }
  if (!fan_util_run(rt, done, &b, 100000000) || b.merged != (uint64_t)n) {
    fprintf(stderr, "bench_fanin: merged %llu of %ld\n",
            (unsigned long long)b.merged, n);
    return 1;
  }
  uint64_t t1 = uv_hrtime();
  mly_journal_stats js;
  mly_journal_stats_get(rt, &js);
  printf("BENCH fanin_%ld_last_arrival_to_action %.1f ms\n", n,
         (double)(b.fan_in_ns - b.last_arrival_ns) / 1e6);
  printf("BENCH fanin_%ld_total %.2f s\n", n, (double)(t1 - t0) / 1e9);
  printf("BENCH fanin_%ld_journal_bytes_per_context %.0f B\n", n,
         (double)js.bytes / (double)n);
  mly_runtime_close(rt);
  if (system(cmd) != 0) return 1;
  return 0;
}
