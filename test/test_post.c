/*
 * test_post.c - events from other threads through mly_post.
 *
 * mly_post is the one thread-safe entry.  These tests post from real
 * threads (uv_thread_create) to machines on a real loop and check what
 * arrived: every event exactly once, in the order each thread posted it,
 * and the stats that count posts, including posts to ended instances.
 * A watchdog on the loop ends the receiver if events stop coming, so a
 * lost event fails the test with counts instead of hanging it.
 */
#include "harness.h"

#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#define NTHREADS 4
#define PER_THREAD 100000
#define TOTAL (NTHREADS * PER_THREAD)

/* ---- what the receiver saw ---- */

typedef struct tally {
  int64_t next[NTHREADS + 1]; /* next expected sequence number per thread */
  uint64_t total;             /* events taken */
  uint64_t bad_id;            /* id outside 1..NTHREADS */
  uint64_t bad_from;          /* from != 0 */
  uint64_t bad_payload;       /* missing or not an int */
  uint64_t out_of_order;      /* seq != next (missing, duplicate, reordered) */
  int64_t first_bad_thread, first_bad_seq, first_bad_expected;
  uint64_t max_steps_seen;    /* mly_step_number at the last event */
} tally;

typedef struct receiver {
  tally *t;
  uint64_t want; /* exit after this many events */
} receiver;

static void tally_event(tally *t, const mly_event *e) {
  t->total++;
  if (e->from != 0) t->bad_from++;
  if (e->id < 1 || e->id > NTHREADS) {
    t->bad_id++;
    return;
  }
  int64_t seq = -1;
  if (e->payload == NULL || mly_value_get_int(e->payload, &seq) != 0) {
    t->bad_payload++;
    return;
  }
  if (seq != t->next[e->id]) {
    if (t->out_of_order++ == 0) {
      t->first_bad_thread = e->id;
      t->first_bad_seq = seq;
      t->first_bad_expected = t->next[e->id];
    }
    /* resynchronise so one gap is counted once, not for every later event */
    if (seq >= t->next[e->id]) t->next[e->id] = seq + 1;
    return;
  }
  t->next[e->id]++;
}

static int receiver_run(mly_machine *m, void *data) {
  receiver *r = data;
  MLY_BEGIN(m);
  while (r->t->total < r->want) {
    MLY_AWAIT(m, MLY_EV_ANY, -1);
    if (mly_current_event(m) == NULL) MLY_EXIT(m, 1); /* no wait may end so */
    tally_event(r->t, mly_current_event(m));
    r->t->max_steps_seen = mly_step_number(m);
  }
  MLY_END(m);
}

static mly_type *receiver_type(mly_runtime *rt) {
  return h_type(rt, &(mly_type_def){.name = "receiver", .run = receiver_run,
                                    .data_size = sizeof(receiver)});
}

/* ---- the posting threads ---- */

typedef struct poster {
  mly_runtime *rt;
  mly_id to;
  uint32_t ev;      /* this thread's event id: 1..NTHREADS */
  int n;
  int base;         /* first sequence number posted */
  uv_barrier_t *start;
  int failures;     /* mly_post calls that did not return 0 (or EAGAIN) */
  uint64_t full;    /* MLY_EAGAIN answers, each posted again */
  int first_rc;
} poster;

static void poster_main(void *arg) {
  poster *p = arg;
  if (p->start) uv_barrier_wait(p->start);
  for (int i = 0; i < p->n; i++) {
    int rc;
    /* the queue is bounded: a full one says MLY_EAGAIN, post again */
    while ((rc = mly_post(p->rt, p->to, p->ev, mly_value_int(p->base + i))) ==
           MLY_EAGAIN) {
      p->full++;
      sched_yield();
    }
    if (rc != 0 && p->failures++ == 0) p->first_rc = rc;
  }
}

/* ---- watchdog: ends the receiver if no progress is made ---- */

typedef struct watchdog {
  uv_timer_t h;
  mly_runtime *rt;
  mly_id target;
  tally *t;
  uint64_t last_total;
  int idle_ticks;
  bool fired;
} watchdog;

static void watchdog_tick(uv_timer_t *h) {
  watchdog *w = h->data;
  if (w->t->total != w->last_total) {
    w->last_total = w->t->total;
    w->idle_ticks = 0;
    return;
  }
  if (++w->idle_ticks < 20) return; /* 20 s without a single event */
  w->fired = true;
  mly_kill(w->rt, w->target); /* the loop then has nothing left: run returns */
  uv_timer_stop(h);
}

static void watchdog_start(watchdog *w, mly_runtime *rt, mly_id target,
                           tally *t) {
  *w = (watchdog){.rt = rt, .target = target, .t = t};
  uv_timer_init(mly_runtime_loop(rt), &w->h);
  w->h.data = w;
  uv_timer_start(&w->h, watchdog_tick, 1000, 1000);
  uv_unref((uv_handle_t *)&w->h); /* never keeps the loop alive itself */
}

/* ---- 4 threads x 100,000 events to one receiver ---- */

START_TEST(post_many_threads_in_order_exactly_once) {
  mly_runtime *rt = h_runtime();
  tally t = {0};
  mly_id rid = h_spawn(rt, receiver_type(rt),
                       &(receiver){&t, TOTAL}, sizeof(receiver));

  uv_barrier_t start;
  ck_assert_int_eq(uv_barrier_init(&start, NTHREADS), 0);
  poster p[NTHREADS];
  uv_thread_t th[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) {
    p[i] = (poster){.rt = rt, .to = rid, .ev = (uint32_t)(i + 1),
                    .n = PER_THREAD, .start = &start};
    ck_assert_int_eq(uv_thread_create(&th[i], poster_main, &p[i]), 0);
  }

  watchdog w;
  watchdog_start(&w, rt, rid, &t);
  h_run(rt); /* the receiver keeps the loop alive until it has all */
  for (int i = 0; i < NTHREADS; i++) ck_assert_int_eq(uv_thread_join(&th[i]), 0);
  uv_barrier_destroy(&start);
  uv_close((uv_handle_t *)&w.h, NULL);

  ck_assert_msg(!w.fired, "events stopped arriving after %llu of %d",
                (unsigned long long)t.total, TOTAL);
  for (int i = 0; i < NTHREADS; i++) {
    ck_assert_int_eq(p[i].failures, 0);
  }
  ck_assert_msg(t.out_of_order == 0,
                "%llu out of order; first: thread %lld seq %lld, expected %lld",
                (unsigned long long)t.out_of_order, (long long)t.first_bad_thread,
                (long long)t.first_bad_seq, (long long)t.first_bad_expected);
  ck_assert_uint_eq(t.bad_id, 0);
  ck_assert_uint_eq(t.bad_from, 0);
  ck_assert_uint_eq(t.bad_payload, 0);
  ck_assert_uint_eq(t.total, TOTAL);
  for (int i = 1; i <= NTHREADS; i++) ck_assert_int_eq(t.next[i], PER_THREAD);

  mly_stats st;
  mly_runtime_stats(rt, &st);
  fprintf(stderr, "post: %d events from %d threads in %" PRIu64 " receiver steps; "
          "stats.bytes afterwards %" PRIu64 "\n",
          TOTAL, NTHREADS, st.steps, st.bytes);
  ck_assert_uint_eq(st.posted, TOTAL);
  ck_assert_uint_eq(st.delivered, TOTAL);
  ck_assert_uint_eq(st.undeliverable, 0);
  ck_assert_uint_eq(st.dropped, 0);
  ck_assert_uint_eq(st.live, 0);
  ck_assert_uint_eq(st.spawned, 1);
  /* every step but the first took at least one event */
  ck_assert_uint_ge(st.steps, 1);
  ck_assert_uint_le(st.steps, (uint64_t)TOTAL + 1);
  mly_runtime_close(rt);
}
END_TEST

/* ---- posts to ended instances are dropped and counted ---- */

static int quitter_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_END(m);
}

typedef struct post_plan {
  mly_runtime *rt;
  mly_id dead, live;
  int rc[4];
} post_plan;

static void post_plan_main(void *arg) {
  post_plan *pp = arg;
  pp->rc[0] = mly_post(pp->rt, pp->dead, 1, mly_value_int(100));
  pp->rc[1] = mly_post(pp->rt, pp->dead, 2, NULL);
  /* an id that no instance ever had (slot far beyond the table) */
  pp->rc[2] = mly_post(pp->rt, (mly_id)7 << 32 | 123456, 3, mly_value_str("x"));
  /* posted last: when it arrives, the ones before it have been handled */
  pp->rc[3] = mly_post(pp->rt, pp->live, 4, mly_value_int(0));
}

START_TEST(post_to_ended_instance_is_undeliverable) {
  mly_runtime *rt = h_runtime();
  mly_type *qt = h_type(rt, &(mly_type_def){.name = "quitter", .run = quitter_run});
  mly_id dead = h_spawn(rt, qt, NULL, 0);
  h_run(rt);
  ck_assert_uint_eq(h_stat_live(rt), 0);
  ck_assert_int_eq(mly_info_get(rt, dead, &(mly_info){0}), MLY_ESRCH);

  tally t = {0};
  mly_id live = h_spawn(rt, receiver_type(rt), &(receiver){&t, 1},
                        sizeof(receiver));
  /* the new instance must not have inherited the ended one's id */
  ck_assert_uint_ne(live, dead);

  post_plan pp = {.rt = rt, .dead = dead, .live = live};
  uv_thread_t th;
  ck_assert_int_eq(uv_thread_create(&th, post_plan_main, &pp), 0);
  ck_assert_int_eq(uv_thread_join(&th), 0);
  for (int i = 0; i < 4; i++) ck_assert_int_eq(pp.rc[i], 0); /* fire and forget */

  watchdog w;
  watchdog_start(&w, rt, live, &t);
  h_run(rt);
  uv_close((uv_handle_t *)&w.h, NULL);
  ck_assert(!w.fired);

  /* the receiver got only its own event, and it got it once */
  ck_assert_uint_eq(t.total, 1);
  ck_assert_uint_eq(t.bad_id, 0);
  ck_assert_int_eq(t.next[4], 1);
  ck_assert_int_eq(t.next[1] + t.next[2] + t.next[3], 0);
  ck_assert_uint_eq(t.out_of_order, 0);
  ck_assert_uint_eq(t.bad_payload, 0);

  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.posted, 4);
  ck_assert_uint_eq(st.undeliverable, 3);
  ck_assert_uint_eq(st.delivered, 1);
  ck_assert_uint_eq(st.dropped, 0);
  mly_runtime_close(rt);
}
END_TEST

/* A post that arrives after its receiver has ended, while the loop still
 * runs for someone else, is undeliverable too, and wakes nobody. */

typedef struct late_host {
  mly_runtime *rt;
  mly_id gone;
  int rc;
} late_host;

static void late_post_main(void *arg) {
  late_host *h = arg;
  h->rc = mly_post(h->rt, h->gone, 9, mly_value_int(9));
}

typedef struct late_stage {
  mly_type *qt;
  late_host *host;
  uv_thread_t th;
  int phase;
  uint64_t undeliverable_seen;
} late_stage;

typedef struct late_stage_arg {
  late_stage *s;
} late_stage_arg;

static int late_stage_run(mly_machine *m, void *data) {
  late_stage *s = ((late_stage_arg *)data)->s;
  MLY_BEGIN(m);
  ck_assert_int_eq(mly_spawn_child(m, s->qt, NULL, 0, &s->host->gone), 0);
  MLY_AWAIT(m, MLY_EV_CHILD_EXIT, -1);
  ck_assert_uint_eq(mly_current_event(m)->from, s->host->gone);
  /* the child has ended: post to it from another thread */
  ck_assert_int_eq(uv_thread_create(&s->th, late_post_main, s->host), 0);
  ck_assert_int_eq(uv_thread_join(&s->th), 0);
  /* wait (bounded) until the loop has taken the post */
  for (s->phase = 0; s->phase < 5000; s->phase++) {
    mly_stats st;
    mly_runtime_stats(mly_machine_runtime(m), &st);
    s->undeliverable_seen = st.undeliverable;
    if (st.posted > 0) break;
    MLY_SLEEP(m, 1);
  }
  MLY_END(m);
}

START_TEST(post_after_receiver_ended_while_loop_runs) {
  mly_runtime *rt = h_runtime();
  late_host host = {.rt = rt};
  late_stage stage = {.host = &host};
  stage.qt = h_type(rt, &(mly_type_def){.name = "quitter", .run = quitter_run});
  h_spawn(rt, h_type(rt, &(mly_type_def){.name = "stage", .run = late_stage_run,
                                         .data_size = sizeof(late_stage_arg)}),
          &(late_stage_arg){&stage}, sizeof(late_stage_arg));
  h_run(rt);
  ck_assert_int_eq(host.rc, 0);
  ck_assert_uint_eq(stage.undeliverable_seen, 1);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.posted, 1);
  ck_assert_uint_eq(st.undeliverable, 1);
  ck_assert_uint_eq(st.delivered, 1); /* only the CHILD_EXIT */
  ck_assert_uint_eq(st.live, 0);
  mly_runtime_close(rt);
}
END_TEST

/* ---- memory: steady traffic must not grow the runtime ----
 *
 * Rounds of the same size, each consumed before the next is posted: once
 * the first rounds have warmed up whatever pools the runtime keeps, later
 * rounds must not make stats.bytes ("memory held by the runtime itself")
 * keep growing with the number of events ever posted. */

#define ROUNDS 10
#define PER_ROUND 10000

START_TEST(post_memory_does_not_grow_with_traffic) {
  mly_runtime *rt = h_runtime();
  tally t = {0};
  mly_id rid = h_spawn(rt, receiver_type(rt),
                       &(receiver){&t, ROUNDS * PER_ROUND}, sizeof(receiver));
  uint64_t bytes[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    poster p = {.rt = rt, .to = rid, .ev = 1, .n = PER_ROUND,
                .base = r * PER_ROUND};
    uv_thread_t th;
    ck_assert_int_eq(uv_thread_create(&th, poster_main, &p), 0);
    ck_assert_int_eq(uv_thread_join(&th), 0);
    ck_assert_int_eq(p.failures, 0);
    for (int i = 0; i < 1000 && t.total < (uint64_t)(r + 1) * PER_ROUND; i++)
      h_turn(rt);
    ck_assert_uint_eq(t.total, (uint64_t)(r + 1) * PER_ROUND);
    mly_stats st;
    mly_runtime_stats(rt, &st);
    bytes[r] = st.bytes;
  }
  ck_assert_uint_eq(t.out_of_order, 0);
  ck_assert_int_eq(t.next[1], ROUNDS * PER_ROUND);
  h_run(rt);
  ck_assert_uint_eq(h_stat_live(rt), 0);
  fprintf(stderr, "post: stats.bytes after rounds 1, 2, %d of %d events: "
          "%" PRIu64 ", %" PRIu64 ", %" PRIu64 "\n", ROUNDS, PER_ROUND,
          bytes[0], bytes[1], bytes[ROUNDS - 1]);
  /* growth over 8 more identical rounds: less than one event per post of
   * a single round */
  ck_assert_msg(bytes[ROUNDS - 1] - bytes[1] < PER_ROUND * sizeof(mly_event),
                "stats.bytes grew by %" PRIu64 " bytes over %d rounds of %d "
                "consumed posts (%.1f bytes per post)",
                bytes[ROUNDS - 1] - bytes[1], ROUNDS - 2, PER_ROUND,
                (double)(bytes[ROUNDS - 1] - bytes[1]) /
                    ((ROUNDS - 2) * PER_ROUND));
  mly_runtime_close(rt);
}
END_TEST

/* ---- misuse ---- */

static void post_any_main(void *arg) {
  post_plan *pp = arg;
  /* the payload is the runtime's even on error: ASan would see a leak */
  pp->rc[0] = mly_post(pp->rt, pp->live, MLY_EV_ANY, mly_value_int(1));
  pp->rc[1] = mly_post(pp->rt, pp->live, MLY_EV_ANY, NULL);
}

/* ---- the queue is bounded, refused once stopping, drained in slices ---- */

typedef struct counter_rx {
  uint64_t got, want;
  uint64_t *turns;          /* the host's loop-turn counter */
  uint64_t *seen;           /* the host's: turns of the first, last event */
} counter_rx;

static int counter_rx_run(mly_machine *m, void *data) {
  counter_rx *c = data;
  MLY_BEGIN(m);
  while (c->got < c->want) {
    MLY_AWAIT(m, MLY_EV_ANY, -1);
    if (mly_current_event(m) == NULL) MLY_EXIT(m, 1);
    if (c->got++ == 0 && c->seen) c->seen[0] = *c->turns;
    if (c->seen) c->seen[1] = *c->turns;
  }
  MLY_END(m);
}

static void count_turn(uv_check_t *h) { (*(uint64_t *)h->data)++; }

static mly_runtime *bounded_runtime(uint32_t max, uint32_t budget) {
  mly_runtime *rt = NULL;
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, &(mly_runtime_options){
                       .post_queue_max = max, .step_budget = budget}), 0);
  return rt;
}

START_TEST(post_queue_is_bounded) {
  mly_runtime *rt = bounded_runtime(10, 0);
  uint64_t turns = 0;
  mly_type *t = h_type(rt, &(mly_type_def){.name = "rx", .run = counter_rx_run,
                                           .data_size = sizeof(counter_rx)});
  mly_id id = h_spawn(rt, t, &(counter_rx){.want = 11, .turns = &turns},
                      sizeof(counter_rx));
  for (int i = 0; i < 10; i++)
    ck_assert_int_eq(mly_post(rt, id, 1, mly_value_int(i)), 0);
  /* full: refused, the payload freed (the sanitizer build checks) */
  ck_assert_int_eq(mly_post(rt, id, 1, mly_value_int(10)), MLY_EAGAIN);
  ck_assert_int_eq(mly_post_durable(rt, id, 1, NULL, NULL, NULL), MLY_EAGAIN);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.posted, 0); /* the loop has taken nothing yet */
  h_turn(rt);
  h_turn(rt);
  ck_assert_int_eq(mly_post(rt, id, 1, mly_value_int(10)), 0); /* room again */
  h_run(rt);
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.posted, 11);
  ck_assert_uint_eq(st.delivered, 11);
  mly_runtime_close(rt);
}
END_TEST

START_TEST(post_refused_once_stopping) {
  mly_runtime *rt = h_runtime();
  uint64_t turns = 0;
  mly_type *t = h_type(rt, &(mly_type_def){.name = "rx", .run = counter_rx_run,
                                           .data_size = sizeof(counter_rx)});
  mly_id id = h_spawn(rt, t, &(counter_rx){.want = 1000, .turns = &turns},
                      sizeof(counter_rx));
  h_turn(rt);
  ck_assert_int_eq(mly_post(rt, id, 1, NULL), 0);
  ck_assert_int_eq(mly_runtime_shutdown(rt, 0), 0);
  ck_assert_int_eq(mly_post(rt, id, 1, mly_value_int(1)), MLY_ESHUTDOWN);
  ck_assert_int_eq(mly_post_durable(rt, id, 1, NULL, NULL, NULL), MLY_ESHUTDOWN);
  h_run(rt); /* on_stop: after it, still refused, nothing buffered */
  ck_assert_int_eq(mly_post(rt, id, 1, NULL), MLY_ESHUTDOWN);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.posted, 1);
  mly_runtime_close(rt);
}
END_TEST

START_TEST(posts_are_drained_in_slices) {
  enum { N = 1000, SLICE = 10 };
  mly_runtime *rt = bounded_runtime(N, SLICE);
  uint64_t turns = 0;
  uv_check_t chk;
  uv_check_init(mly_runtime_loop(rt), &chk);
  chk.data = &turns;
  uv_check_start(&chk, count_turn);
  uv_unref((uv_handle_t *)&chk);
  mly_type *t = h_type(rt, &(mly_type_def){.name = "rx", .run = counter_rx_run,
                                           .data_size = sizeof(counter_rx)});
  uint64_t seen[2] = {0, 0};
  mly_id id = h_spawn(rt, t, &(counter_rx){.want = N, .turns = &turns,
                                           .seen = seen}, sizeof(counter_rx));
  for (int i = 0; i < N; i++) ck_assert_int_eq(mly_post(rt, id, 1, NULL), 0);
  h_run(rt);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.posted, N);
  ck_assert_uint_eq(st.delivered, N);
  /* at most SLICE posts a turn: the events came over at least N/SLICE
   * loop turns, the host's handles running in between (one wakeup took
   * them all before, and one step consumed them) */
  ck_assert_uint_ge(seen[1] - seen[0], N / SLICE - 1);
  uv_close((uv_handle_t *)&chk, NULL);
  mly_runtime_close(rt);
}
END_TEST

START_TEST(post_any_is_einval) {
  mly_runtime *rt = h_runtime();
  tally t = {0};
  mly_id live = h_spawn(rt, receiver_type(rt), &(receiver){&t, 1},
                        sizeof(receiver));
  post_plan pp = {.rt = rt, .live = live};
  /* from another thread and from the loop thread alike */
  uv_thread_t th;
  ck_assert_int_eq(uv_thread_create(&th, post_any_main, &pp), 0);
  ck_assert_int_eq(uv_thread_join(&th), 0);
  ck_assert_int_eq(pp.rc[0], MLY_EINVAL);
  ck_assert_int_eq(pp.rc[1], MLY_EINVAL);
  ck_assert_int_eq(mly_post(rt, live, MLY_EV_ANY, mly_value_str("s")), MLY_EINVAL);
  /* nothing was queued: a few turns deliver nothing */
  for (int i = 0; i < 5; i++) h_turn(rt);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.posted, 0);
  ck_assert_uint_eq(st.delivered, 0);
  ck_assert_uint_eq(t.total, 0);
  ck_assert_uint_eq(st.live, 1);
  /* a valid post from the loop thread itself is still accepted */
  ck_assert_int_eq(mly_post(rt, live, 1, mly_value_int(0)), 0);
  h_run(rt);
  ck_assert_uint_eq(t.total, 1);
  ck_assert_int_eq(t.next[1], 1);
  ck_assert_uint_eq(t.out_of_order, 0);
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.posted, 1);
  mly_runtime_close(rt);
}
END_TEST

/* ---- every accepted post is taken, also across a shutdown ---- */

typedef struct flooder {
  mly_runtime *rt;
  mly_id to;
  uint64_t max;      /* posts to make at most */
  uint64_t accepted; /* answered 0 */
  int other_rc;      /* an answer that is neither 0, EAGAIN nor ESHUTDOWN */
} flooder;

static void flooder_main(void *arg) {
  flooder *f = arg;
  while (f->accepted < f->max) {
    int rc = mly_post(f->rt, f->to, 1, mly_value_int((int64_t)f->accepted));
    if (rc == 0) f->accepted++;
    else if (rc == MLY_EAGAIN) sched_yield();
    else if (rc == MLY_ESHUTDOWN) break;
    else {
      f->other_rc = rc;
      break;
    }
  }
}

typedef struct stopper_rx {
  uint64_t *got;
  uint64_t stop_at; /* shuts the runtime down on this event */
} stopper_rx;

static int stopper_rx_run(mly_machine *m, void *data) {
  stopper_rx *c = data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_AWAIT(m, MLY_EV_ANY, -1);
    if (mly_current_event(m) == NULL) break; /* the shutdown */
    if (++*c->got == c->stop_at)
      ck_assert_int_eq(mly_runtime_shutdown(mly_machine_runtime(m), -1), 0);
  }
  MLY_END(m);
}

static int on_stop_count;
static mly_stats on_stop_stats;

static void drain_stopped(mly_runtime *rt, void *arg) {
  (void)arg;
  on_stop_count++;
  mly_runtime_stats(rt, &on_stop_stats);
}

/* _i == 0: the posts are all made before the loop runs (most are still
 * queued at the shutdown); 1: the threads flood while it runs. */
START_TEST(posts_accepted_before_shutdown_are_all_taken) {
  enum { MAXQ = 100000, STOP_AT = 5000 };
  mly_runtime *rt = NULL;
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, &(mly_runtime_options){
                       .post_queue_max = MAXQ, .on_stop = drain_stopped}), 0);
  on_stop_count = 0;
  mly_type *t = h_type(rt, &(mly_type_def){.name = "rx", .run = stopper_rx_run,
                                           .data_size = sizeof(stopper_rx)});
  uint64_t got = 0;
  mly_id id = h_spawn(rt, t, &(stopper_rx){&got, STOP_AT}, sizeof(stopper_rx));
  flooder f[NTHREADS];
  uv_thread_t th[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) {
    f[i] = (flooder){.rt = rt, .to = id,
                     .max = _i == 0 ? MAXQ / NTHREADS : UINT64_MAX};
    ck_assert_int_eq(uv_thread_create(&th[i], flooder_main, &f[i]), 0);
    if (_i == 0) ck_assert_int_eq(uv_thread_join(&th[i]), 0);
  }
  h_run(rt);
  if (_i == 1) /* the shutdown made them stop */
    for (int i = 0; i < NTHREADS; i++)
      ck_assert_int_eq(uv_thread_join(&th[i]), 0);
  uint64_t accepted = 0;
  for (int i = 0; i < NTHREADS; i++) {
    ck_assert_int_eq(f[i].other_rc, 0);
    accepted += f[i].accepted;
  }
  if (_i == 0) ck_assert_uint_eq(accepted, MAXQ);
  ck_assert_uint_ge(accepted, STOP_AT);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  /* taken by the loop, every one: delivered (to the machine, or to its
   * inbox and dropped when it ended) or undeliverable once it had ended */
  ck_assert_uint_eq(st.posted, accepted);
  ck_assert_uint_eq(st.posted, st.delivered + st.undeliverable);
  ck_assert_uint_eq(st.delivered, got + st.dropped);
  ck_assert_uint_eq(got, STOP_AT);
  /* on_stop saw the final figures */
  ck_assert_int_eq(on_stop_count, 1);
  ck_assert_uint_eq(on_stop_stats.posted, st.posted);
  mly_runtime_close(rt);
}
END_TEST

static Suite *post_suite(void) {
  Suite *s = suite_create("post");
  TCase *tc = tcase_create("threads");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, post_many_threads_in_order_exactly_once);
  tcase_add_test(tc, post_to_ended_instance_is_undeliverable);
  tcase_add_test(tc, post_after_receiver_ended_while_loop_runs);
  tcase_add_test(tc, post_any_is_einval);
  tcase_add_test(tc, post_queue_is_bounded);
  tcase_add_test(tc, post_refused_once_stopping);
  tcase_add_test(tc, posts_are_drained_in_slices);
  tcase_add_loop_test(tc, posts_accepted_before_shutdown_are_all_taken, 0, 2);
  suite_add_tcase(s, tc);
  TCase *mem = tcase_create("memory");
  tcase_set_timeout(mem, 60);
  tcase_add_test(mem, post_memory_does_not_grow_with_traffic);
  suite_add_tcase(s, mem);
  return s;
}

H_MAIN(post_suite)
