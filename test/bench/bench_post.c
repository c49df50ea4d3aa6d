/*
 * bench_post.c - events posted from other threads (mly_post) to one
 * machine on the loop thread.  Prints events/s for 1 and for 4 posters.
 */
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>

#include "mealy.h"

typedef struct sink {
  uint64_t want, got;
} sink;

static int sink_run(mly_machine *m, void *data) {
  sink *s = data;
  MLY_BEGIN(m);
  while (s->got < s->want) {
    MLY_AWAIT(m, MLY_EV_ANY, -1);
    s->got++;
  }
  MLY_END(m);
}

typedef struct poster {
  mly_runtime *rt;
  mly_id to;
  uint64_t n;
  uint32_t id;
} poster;

static void poster_main(void *arg) {
  poster *p = arg;
  for (uint64_t i = 0; i < p->n; i++) {
    int rc;
    while ((rc = mly_post(p->rt, p->to, p->id, NULL)) == MLY_EAGAIN)
      sched_yield(); /* the queue is bounded: the loop catches up */
    if (rc < 0) abort();
  }
}

static double run(int threads, uint64_t per_thread) {
  mly_runtime *rt;
  mly_type *t;
  if (mly_runtime_new(&rt, NULL, NULL) < 0 ||
      mly_type_register(rt, &(mly_type_def){.name = "sink", .run = sink_run,
                        .data_size = sizeof(sink)}, &t) < 0)
    exit(1);
  mly_id to;
  mly_spawn(rt, t, &(sink){per_thread * (uint64_t)threads, 0}, sizeof(sink), &to);
  uv_thread_t th[16];
  poster p[16];
  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < threads; i++) {
    p[i] = (poster){rt, to, per_thread, (uint32_t)i + 1};
    uv_thread_create(&th[i], poster_main, &p[i]);
  }
  mly_runtime_run(rt);
  uint64_t ns = uv_hrtime() - t0;
  for (int i = 0; i < threads; i++) uv_thread_join(&th[i]);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  mly_runtime_close(rt);
  if (st.posted != per_thread * (uint64_t)threads) exit(1);
  return (double)st.posted / ((double)ns / 1e9);
}

int main(int argc, char **argv) {
  uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
  printf("BENCH post_1_thread %.2f Mevents/s\n", run(1, n) / 1e6);
  printf("BENCH post_4_threads %.2f Mevents/s\n", run(4, n / 4) / 1e6);
  return 0;
}
