/*
 * bench_sleepers.c - a million machines, each sleeping a random 1-5 s.
 *
 * Prints how fast machines are created (spawned and asleep on the timer
 * heap), what the runtime holds per sleeping machine beyond its user
 * data, and how late timers fire: the time a machine resumes minus the
 * time it asked for, both read from the monotonic clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mealy.h"

#define HIST_US 10000 /* lateness histogram: 1 us buckets up to 10 ms */

typedef struct lateness {
  uint64_t hist[HIST_US + 1];
  uint64_t n;
  int64_t min_us, max_us;
} lateness;

typedef struct sleeper {
  lateness *lat;
  uint64_t due_ns;
  uint32_t ms;
} sleeper;

static int sleeper_run(mly_machine *m, void *data) {
  sleeper *s = data;
  MLY_BEGIN(m);
  s->due_ns = uv_hrtime() + (uint64_t)s->ms * 1000000u;
  MLY_SLEEP(m, s->ms);
  {
    int64_t us = ((int64_t)uv_hrtime() - (int64_t)s->due_ns) / 1000;
    lateness *l = s->lat;
    if (l->n == 0 || us < l->min_us) l->min_us = us;
    if (l->n == 0 || us > l->max_us) l->max_us = us;
    l->hist[us < 0 ? 0 : us > HIST_US ? HIST_US : us]++;
    l->n++;
  }
  MLY_END(m);
}

static double pct(const lateness *l, double p) {
  uint64_t want = (uint64_t)((double)l->n * p), seen = 0;
  for (int i = 0; i <= HIST_US; i++) {
    seen += l->hist[i];
    if (seen > want) return i / 1000.0;
  }
  return HIST_US / 1000.0;
}

static long rss_kb(void) {
  long pages = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f && fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
  if (f) fclose(f);
  return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(int argc, char **argv) {
  uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
  mly_runtime *rt;
  mly_type *t;
  lateness *lat = calloc(1, sizeof *lat);
  if (lat == NULL || mly_runtime_new(&rt, NULL, NULL) < 0 ||
      mly_type_register(rt, &(mly_type_def){.name = "sleeper", .run = sleeper_run,
                        .data_size = sizeof(sleeper)}, &t) < 0)
    return 1;
  srand(42);
  mly_stats before, after;
  mly_runtime_stats(rt, &before);
  long rss0 = rss_kb();
  uint64_t t0 = uv_hrtime();
  for (uint64_t i = 0; i < n; i++) {
    sleeper s = {lat, 0, 1000 + (uint32_t)(rand() % 4001)};
    if (mly_spawn(rt, t, &s, sizeof s, NULL) < 0) return 1;
  }
  uint64_t t_spawned = uv_hrtime();
  /* run turns until every machine has taken its first step (asleep) */
  for (mly_stats st = {0}; st.steps < n; mly_runtime_stats(rt, &st))
    uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
  uint64_t t_asleep = uv_hrtime();
  mly_runtime_stats(rt, &after);
  long rss1 = rss_kb();
  double per = (double)(after.bytes - before.bytes) / (double)n;
  mly_runtime_run(rt);
  if (lat->n != n) {
    fprintf(stderr, "sleepers: %llu woke, expected %llu\n",
            (unsigned long long)lat->n, (unsigned long long)n);
    return 1;
  }
  printf("BENCH sleepers_machines %llu machines\n", (unsigned long long)n);
  printf("BENCH sleepers_spawn_rate %.2f Mmachines/s\n",
         (double)n / ((double)(t_spawned - t0) / 1e9) / 1e6);
  printf("BENCH sleepers_created_asleep_rate %.2f Mmachines/s\n",
         (double)n / ((double)(t_asleep - t0) / 1e9) / 1e6);
  printf("BENCH sleepers_runtime_bytes_per_machine %.1f bytes\n",
         per - (double)sizeof(sleeper));
  printf("BENCH sleepers_rss_per_machine %.1f bytes\n",
         (double)(rss1 - rss0) * 1024.0 / (double)n);
  printf("BENCH sleepers_lateness_p50 %.3f ms\n", pct(lat, 0.50));
  printf("BENCH sleepers_lateness_p99 %.3f ms\n", pct(lat, 0.99));
  printf("BENCH sleepers_lateness_max %.3f ms\n", lat->max_us / 1000.0);
  printf("BENCH sleepers_early_min %.3f ms\n", lat->min_us / 1000.0);
  mly_runtime_close(rt);
  free(lat);
  return 0;
}
