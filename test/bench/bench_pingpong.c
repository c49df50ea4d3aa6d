/*
 * bench_pingpong.c - two machines pass one event back and forth.
 *
 * Measures the cost of the whole path: send, deliver, wake, resume, take
 * from the inbox, on one core.  Prints BENCH lines.
 */
#include <stdio.h>
#include <stdlib.h>

#include "mealy.h"

typedef struct player {
  mly_id peer;
  uint64_t left;
  bool serve;
} player;

static int player_run(mly_machine *m, void *data) {
  player *p = data;
  MLY_BEGIN(m);
  if (p->serve) mly_send(m, p->peer, 1, NULL);
  while (p->left > 0) {
    MLY_AWAIT(m, 1, -1);
    p->peer = mly_current_event(m)->from;
    if (--p->left > 0 || !p->serve) mly_send(m, p->peer, 1, NULL);
  }
  MLY_END(m);
}

int main(int argc, char **argv) {
  uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000000;
  mly_runtime *rt;
  mly_type *t;
  if (mly_runtime_new(&rt, NULL, NULL) < 0 ||
      mly_type_register(rt, &(mly_type_def){.name = "player", .run = player_run,
                        .data_size = sizeof(player)}, &t) < 0)
    return 1;
  mly_id a, b;
  mly_spawn(rt, t, &(player){0, n, false}, sizeof(player), &a);
  mly_spawn(rt, t, &(player){a, n, true}, sizeof(player), &b);
  uint64_t t0 = uv_hrtime();
  mly_runtime_run(rt);
  uint64_t ns = uv_hrtime() - t0;
  mly_stats st;
  mly_runtime_stats(rt, &st);
  double events = (double)st.delivered;
  if (st.delivered != 2 * n) {
    fprintf(stderr, "pingpong: %llu events delivered, expected %llu\n",
            (unsigned long long)st.delivered, (unsigned long long)(2 * n));
    return 1;
  }
  printf("BENCH pingpong_rate %.2f Mevents/s\n", events / ((double)ns / 1e9) / 1e6);
  printf("BENCH pingpong_ns_per_event %.1f ns\n", (double)ns / events);
  mly_runtime_close(rt);
  return 0;
}
