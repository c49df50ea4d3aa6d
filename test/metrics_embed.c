/*
 * metrics_embed.c - a host embedding the runtime, for
 * test_metrics_scrape.py: it opens a journal, spawns K durable sleepers
 * and a pair of machines that trade N events, lets them run, compacts
 * once, then writes mly_metrics_write's text to TEXT and prints, one
 * per line as "name value", what mly_runtime_stats and
 * mly_journal_stats_get say, for the test to compare with what a
 * Prometheus parser reads from TEXT.
 *
 * usage: metrics_embed DIR K N TEXT
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mealy.h"

#define SLEEPER_POINTS(X) X(sleeper, nap)
MLY_POINTS(sleeper, SLEEPER_POINTS);

typedef struct sleeper { int unused; } sleeper;

static int sleeper_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_SLEEP_AT(m, sleeper_nap, 3600 * 1000);
  MLY_END(m);
}

/* ping sends N events to pong, each answered; both then end. */
typedef struct pinger {
  mly_id peer;
  int left;
  int *done;
} pinger;

static int ping_run(mly_machine *m, void *data) {
  pinger *d = data;
  MLY_BEGIN(m);
  while (d->left > 0) {
    d->left--;
    mly_send(m, d->peer, 1, NULL);
    MLY_AWAIT(m, 2, -1);
  }
  mly_send(m, d->peer, 3, NULL);
  (*d->done)++;
  MLY_END(m);
}

static int pong_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_AWAIT(m, MLY_EV_ANY, -1);
    if (mly_current_event(m)->id == 3) break;
    mly_send(m, mly_current_event(m)->from, 2, NULL);
  }
  MLY_END(m);
}

static int count_ready(const mly_info *i, void *arg) {
  if (i->lifecycle == MLY_LC_READY && strcmp(i->type, "sleeper") == 0)
    (*(int *)arg)++;
  return 0;
}

static int fail(const char *what, int rc) {
  fprintf(stderr, "metrics_embed: %s: %s\n", what, mly_strerror(rc));
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: metrics_embed DIR K N TEXT\n");
    return 2;
  }
  int k = atoi(argv[2]), n = atoi(argv[3]);
  mly_runtime *rt;
  int rc = mly_runtime_new(&rt, NULL, NULL);
  if (rc < 0) return fail("runtime", rc);
  mly_type *st, *pt, *qt;
  if ((rc = mly_type_register(rt, &(mly_type_def){.name = "sleeper",
          .run = sleeper_run, .flags = MLY_TYPE_DURABLE,
          MLY_TYPE_POINTS(sleeper), .data_size = sizeof(sleeper)}, &st)) < 0 ||
      (rc = mly_type_register(rt, &(mly_type_def){.name = "ping",
          .run = ping_run, .data_size = sizeof(pinger)}, &pt)) < 0 ||
      (rc = mly_type_register(rt, &(mly_type_def){.name = "pong",
          .run = pong_run}, &qt)) < 0)
    return fail("register", rc);
  char err[512];
  if ((rc = mly_journal_open(rt, &(mly_journal_options){.dir = argv[1]}, err,
                             sizeof err)) < 0) {
    fprintf(stderr, "metrics_embed: %s\n", err);
    return 1;
  }
  for (int i = 0; i < k; i++)
    if ((rc = mly_spawn(rt, st, &(sleeper){0}, sizeof(sleeper), NULL)) < 0)
      return fail("spawn", rc);
  int done = 0;
  mly_id pong;
  if ((rc = mly_spawn(rt, qt, NULL, 0, &pong)) < 0 ||
      (rc = mly_spawn(rt, pt, &(pinger){pong, n, &done}, sizeof(pinger),
                      NULL)) < 0)
    return fail("spawn", rc);
  /* until the pair has ended and every sleeper sleeps (its spawn
   * durable): the sleepers keep the loop alive, so turn by turn */
  uv_loop_t *loop = mly_runtime_loop(rt);
  mly_stats s;
  mly_journal_stats js;
  int ready = 0;
  for (int turns = 0; turns < 1000000 && !(done && ready == k); turns++) {
    uv_run(loop, UV_RUN_ONCE);
    ready = 0;
    mly_foreach(rt, count_ready, &ready);
  }
  if ((rc = mly_journal_compact(rt)) < 0) return fail("compact", rc);
  for (int turns = 0; turns < 1000000; turns++) {
    if ((rc = mly_journal_stats_get(rt, &js)) < 0) return fail("stats", rc);
    if (js.compactions == 1) break;
    uv_run(loop, UV_RUN_ONCE);
  }
  FILE *f = fopen(argv[4], "w");
  if (f == NULL) return fail(argv[4], MLY_EIO);
  if ((rc = mly_metrics_fprint(rt, f)) < 0) return fail("metrics", rc);
  fclose(f);
  mly_runtime_stats(rt, &s);
  if ((rc = mly_journal_stats_get(rt, &js)) < 0) return fail("stats", rc);
  printf("live %" PRIu64 "\nspawned %" PRIu64 "\nsteps %" PRIu64
         "\ndelivered %" PRIu64 "\ndropped %" PRIu64 "\ntimers_fired %" PRIu64
         "\nrecords %" PRIu64 "\nbatches %" PRIu64 "\nsyncs %" PRIu64
         "\ncompactions %" PRIu64 "\nsegments %" PRIu64
         "\ntotal_bytes %" PRIu64 "\nmemory %" PRIu64 "\n",
         s.live, s.spawned, s.steps, s.delivered, s.dropped, s.timers_fired,
         js.records, js.batches, js.syncs, js.compactions, js.segments,
         js.total_bytes, s.bytes);
  mly_runtime_close(rt);
  return 0;
}
