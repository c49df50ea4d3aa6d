/*
 * bench_metrics.c - what a scrape costs: mly_metrics_write over a
 * runtime with a million sleeping instances of 8 types (one walk of the
 * slot table), and the bytes it writes, to a sink that only counts.
 *
 * usage: bench_metrics [INSTANCES]
 */
#include <stdio.h>
#include <stdlib.h>

#include "mealy.h"

static int sleeper_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_SLEEP(m, 3600 * 1000);
  MLY_END(m);
}

static int count(void *arg, const char *p, size_t n) {
  (void)p;
  *(size_t *)arg += n;
  return 0;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  mly_runtime *rt;
  if (mly_runtime_new(&rt, NULL, NULL) < 0) return 1;
  mly_type *types[8];
  for (int t = 0; t < 8; t++) {
    char name[16];
    snprintf(name, sizeof name, "type%d", t);
    if (mly_type_register(rt, &(mly_type_def){.name = name,
            .run = sleeper_run}, &types[t]) < 0)
      return 1;
  }
  for (long i = 0; i < n; i++)
    if (mly_spawn(rt, types[i % 8], NULL, 0, NULL) < 0) return 1;
  uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT); /* each asleep */
  size_t bytes = 0;
  int rounds = 20;
  uint64_t t0 = uv_hrtime();
  for (int r = 0; r < rounds; r++)
    if (mly_metrics_write(rt, count, &bytes) < 0) return 1;
  double ms = (double)(uv_hrtime() - t0) / 1e6 / rounds;
  printf("BENCH metrics_write_%ld_instances %.2f ms\n", n, ms);
  printf("BENCH metrics_write_bytes %zu bytes\n", bytes / (size_t)rounds);
  mly_runtime_close(rt);
  return 0;
}
