/*
 * test_events.c - Mealy outputs: sending, ordering, dropping, request and
 * reply with correlation ids, and signals as events.
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* ---- order per (sender, receiver) ---- */

#define N_ORDER 1000

typedef struct sink {
  int64_t next[3]; /* next expected sequence number per sender slot */
  mly_id senders[3];
  int bad;
  int total;
} sink;

typedef struct source {
  mly_id to;
  int64_t i;
} source;

static int source_run(mly_machine *m, void *data) {
  source *s = data;
  MLY_BEGIN(m);
  for (s->i = 0; s->i < N_ORDER; s->i++) {
    ck_assert_int_eq(mly_send(m, s->to, 9, mly_value_int(s->i)), 0);
    if (s->i % 7 == 0) MLY_YIELD(m); /* interleave the two senders */
  }
  MLY_END(m);
}

typedef struct order_parent {
  mly_type *sink_t, *src_t;
  mly_id sink;
  int status;
  int *out;
} order_parent;

static int order_parent_run(mly_machine *m, void *data) {
  order_parent *p = data;
  mly_id a, b;
  MLY_BEGIN(m);
  ck_assert_int_eq(mly_spawn_child(m, p->sink_t, NULL, 0, &p->sink), 0);
  ck_assert_int_eq(mly_spawn_child(m, p->src_t, &(source){p->sink, 0}, sizeof(source), &a), 0);
  ck_assert_int_eq(mly_spawn_child(m, p->src_t, &(source){p->sink, 0}, sizeof(source), &b), 0);
  /* two events the sink never awaits: they must stay queued */
  ck_assert_int_eq(mly_send(m, p->sink, 8, NULL), 0);
  ck_assert_int_eq(mly_send(m, p->sink, 7, NULL), 0);
  {
    mly_value *ids = mly_value_array();
    mly_array_push(ids, mly_value_uint(a));
    mly_array_push(ids, mly_value_uint(b));
    ck_assert_int_eq(mly_send(m, p->sink, 6, ids), 0);
  }
  MLY_AWAIT_CHILD(m, p->sink, &p->status);
  p->out[0] = p->status;
  MLY_END(m);
}

static int sink2_run(mly_machine *m, void *data) {
  sink *s = data;
  MLY_BEGIN(m);
  MLY_AWAIT(m, 6, -1);
  {
    uint64_t a = 0, b = 0;
    const mly_value *ids = mly_current_event(m)->payload;
    mly_value_get_uint(mly_array_at(ids, 0), &a);
    mly_value_get_uint(mly_array_at(ids, 1), &b);
    s->senders[0] = a;
    s->senders[1] = b;
  }
  while (s->total < 2 * N_ORDER) {
    MLY_AWAIT(m, 9, -1);
    {
      const mly_event *e = mly_current_event(m);
      int slot = e->from == s->senders[0] ? 0 : e->from == s->senders[1] ? 1 : 2;
      int64_t v = -1;
      mly_value_get_int(e->payload, &v);
      if (slot == 2 || v != s->next[slot]) s->bad++;
      s->next[slot] = v + 1;
      s->total++;
    }
  }
  /* 7 and 8 are still queued: postponed, never lost */
  MLY_EXIT(m, s->bad * 100 + (int)mly_inbox_len(m));
  MLY_END(m);
}

START_TEST(order_per_sender_and_postponed_events) {
  mly_runtime *rt = h_runtime();
  int out[3] = {-1, 0, 0};
  mly_type *st = h_type(rt, &(mly_type_def){.name = "sink", .run = sink2_run,
                                            .data_size = sizeof(sink)});
  mly_type *so = h_type(rt, &(mly_type_def){.name = "src", .run = source_run,
                                            .data_size = sizeof(source)});
  mly_type *pt = h_type(rt, &(mly_type_def){.name = "op", .run = order_parent_run,
                                            .data_size = sizeof(order_parent)});
  h_spawn(rt, pt, &(order_parent){st, so, 0, -1, out}, sizeof(order_parent));
  h_run(rt);
  ck_assert_int_eq(out[0], 2); /* no order errors, events 7 and 8 queued */
  mly_stats s;
  mly_runtime_stats(rt, &s);
  /* 7 and 8 when the sink ended, and the two sources' exit notices,
   * which the parent never awaited, when it ended */
  ck_assert_uint_eq(s.dropped, 4);
  mly_runtime_close(rt);
}
END_TEST

/* A parent that spawns one child and keeps its exit status and how. */
typedef struct wrap {
  mly_type *t;
  mly_id child;
  int64_t *out;
} wrap;

static int wrap_run(mly_machine *m, void *data) {
  wrap *w = data;
  MLY_BEGIN(m);
  ck_assert_int_eq(mly_spawn_child(m, w->t, NULL, 0, &w->child), 0);
  MLY_AWAIT(m, MLY_EV_CHILD_EXIT, -1);
  w->out[0] = mly_current_event(m)->status;
  w->out[1] = mly_current_event(m)->aux;
  MLY_END(m);
}

typedef struct find_child {
  mly_id parent, child;
} find_child;

static int find_child_cb(const mly_info *i, void *arg) {
  find_child *f = arg;
  if (i->parent == f->parent) f->child = i->id;
  return 0;
}

/* ---- DROP_UNHANDLED ---- */

static int dropper_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT(m, 1, -1);
  MLY_AWAIT(m, 2, -1);
  MLY_END(m);
}

START_TEST(drop_unhandled_drops_and_counts) {
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){.name = "d", .run = dropper_run,
                                           .flags = MLY_TYPE_DROP_UNHANDLED});
  mly_id id = h_spawn(rt, t, NULL, 0);
  h_turn(rt);
  ck_assert_int_eq(mly_runtime_send(rt, id, 2, NULL), 0); /* not awaited */
  ck_assert_int_eq(mly_runtime_send(rt, id, 3, NULL), 0);
  mly_info info;
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_uint_eq(info.inbox, 0);
  ck_assert_int_eq(mly_runtime_send(rt, id, 1, NULL), 0);
  h_turn(rt);
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_str_eq(info.waiting, "event 2");
  mly_stats s;
  mly_runtime_stats(rt, &s);
  ck_assert_uint_eq(s.dropped, 2);
  ck_assert_int_eq(mly_runtime_send(rt, id, 2, NULL), 0);
  h_run(rt);
  ck_assert_int_eq(mly_runtime_send(rt, id, 2, NULL), MLY_ESRCH); /* ended */
  mly_runtime_close(rt);
}
END_TEST

static int purger_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT(m, 1, -1);
  MLY_EXIT(m, (int)(mly_inbox_drop(m, 5) * 10 + mly_inbox_len(m)));
  MLY_END(m);
}

START_TEST(inbox_drop_by_id) {
  mly_runtime *rt = h_runtime();
  int64_t out[2] = {-1, -1};
  mly_type *t = h_type(rt, &(mly_type_def){.name = "purger", .run = purger_run});
  mly_type *pt = h_type(rt, &(mly_type_def){.name = "wrap", .run = wrap_run,
                                            .data_size = sizeof(wrap)});
  mly_id p = h_spawn(rt, pt, &(wrap){t, 0, out}, sizeof(wrap));
  h_turn(rt);
  h_turn(rt);
  mly_info info;
  ck_assert_int_eq(mly_info_get(rt, p, &info), 0);
  find_child fc = {p, 0};
  ck_assert_int_eq(mly_foreach(rt, find_child_cb, &fc), 0);
  mly_id child = fc.child;
  ck_assert_uint_ne(child, 0);
  for (int i = 0; i < 5; i++) ck_assert_int_eq(mly_runtime_send(rt, child, 5, NULL), 0);
  ck_assert_int_eq(mly_runtime_send(rt, child, 6, NULL), 0);
  ck_assert_int_eq(mly_runtime_send(rt, child, 1, NULL), 0);
  h_run(rt);
  ck_assert_int_eq(out[0], 51); /* five dropped, the 6 left */
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.dropped, 6); /* five by hand, the 6 at the end */
  mly_runtime_close(rt);
}
END_TEST

/* ---- request / reply ---- */

typedef struct server {
  int delay_ms; /* how long it takes to answer */
  int served;
} server;

static int server_run(mly_machine *m, void *data) {
  server *s = data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_AWAIT(m, 40, -1);
    if (mly_current_event(m) == NULL) break; /* shutdown */
    {
      /* keep the request: the sleep below ends the event's validity */
      const mly_event *e = mly_current_event(m);
      mly_value *p = mly_value_map();
      mly_map_set_uint(p, "corr", e->corr);
      mly_map_set_uint(p, "from", e->from);
      int64_t v = 0;
      mly_value_get_int(e->payload, &v);
      mly_map_set_int(p, "x", v);
      if (s->delay_ms == 0) {
        ck_assert_int_eq(mly_reply(m, e, 41, mly_value_int(v * 2)), 0);
        mly_value_free(p);
        s->served++;
        continue;
      }
      ck_assert_int_eq(mly_send(m, mly_self(m), 42, p), 0);
    }
    MLY_SLEEP(m, (uint64_t)s->delay_ms);
    MLY_AWAIT(m, 42, 0);
    {
      const mly_value *p = mly_current_event(m)->payload;
      uint64_t corr = 0, from = 0;
      int64_t x = 0;
      mly_map_get_uint(p, "corr", &corr);
      mly_map_get_uint(p, "from", &from);
      mly_map_get_int(p, "x", &x);
      mly_event fake = {.id = 40, .flags = MLY_EVF_REQUEST, .from = from, .corr = corr};
      ck_assert_int_eq(mly_reply(m, &fake, 41, mly_value_int(x * 2)), 0);
      s->served++;
    }
  }
  MLY_END(m);
}

typedef struct client {
  mly_id server;
  int64_t timeout;
  int64_t *out; /* [0] reply value or -1, [1] timed out, [2] error, [3] second */
} client;

static int client_run(mly_machine *m, void *data) {
  client *c = data;
  MLY_BEGIN(m);
  MLY_REQUEST(m, c->server, 40, mly_value_int(21), c->timeout);
  c->out[1] = mly_timed_out(m);
  c->out[2] = mly_wait_error(m);
  if (mly_current_event(m)) {
    ck_assert(mly_current_event(m)->flags & MLY_EVF_REPLY);
    mly_value_get_int(mly_current_event(m)->payload, &c->out[0]);
  }
  /* a second, unrelated wait must not see the first one's late reply */
  MLY_AWAIT(m, MLY_EV_ANY, 100);
  c->out[3] = mly_current_event(m) ? 1 : 0;
  mly_shutdown(mly_machine_runtime(m), c->server);
  MLY_END(m);
}

static void run_request(int delay, int64_t timeout, int64_t *out,
                        uint64_t *late) {
  mly_runtime *rt = h_runtime();
  mly_type *sv = h_type(rt, &(mly_type_def){.name = "srv", .run = server_run,
                                            .data_size = sizeof(server)});
  mly_type *cl = h_type(rt, &(mly_type_def){.name = "cli", .run = client_run,
                                            .data_size = sizeof(client)});
  mly_id s = h_spawn(rt, sv, &(server){delay, 0}, sizeof(server));
  h_spawn(rt, cl, &(client){s, timeout, out}, sizeof(client));
  h_run(rt); /* the client shuts the server down when it is done */
  mly_stats st;
  mly_runtime_stats(rt, &st);
  *late = st.late_replies;
  mly_runtime_close(rt);
}

START_TEST(request_gets_reply) {
  int64_t out[4] = {-1, -1, -1, -1};
  uint64_t late;
  run_request(0, 1000, out, &late);
  ck_assert_int_eq(out[0], 42);
  ck_assert_int_eq(out[1], 0);
  ck_assert_int_eq(out[2], 0);
  ck_assert_int_eq(out[3], 0);
  ck_assert_uint_eq(late, 0);
}
END_TEST

START_TEST(request_times_out_late_reply_dropped) {
  int64_t out[4] = {-1, -1, -1, -1};
  uint64_t late;
  run_request(30, 5, out, &late);
  ck_assert_int_eq(out[0], -1); /* no reply value */
  ck_assert_int_eq(out[1], 1);  /* timed out */
  ck_assert_int_eq(out[3], 0);  /* the late reply never reached a wait */
  ck_assert_uint_eq(late, 1);
}
END_TEST

START_TEST(request_to_nobody_is_an_error) {
  mly_runtime *rt = h_runtime();
  int64_t out[4] = {-1, -1, -1, -1};
  mly_type *cl = h_type(rt, &(mly_type_def){.name = "cli", .run = client_run,
                                            .data_size = sizeof(client)});
  h_spawn(rt, cl, &(client){77, 1000, out}, sizeof(client));
  h_run(rt);
  ck_assert_int_eq(out[2], MLY_ESRCH);
  ck_assert_int_eq(out[1], 0);
  mly_runtime_close(rt);
}
END_TEST

/* ---- signals ---- */

typedef struct sig_holder {
  int *out;
} sig_holder;

static int sig_holder_run(mly_machine *m, void *data) {
  sig_holder *h = data;
  MLY_BEGIN(m);
  ck_assert_int_eq(mly_signal_watch(m, SIGUSR1), 0);
  kill(getpid(), SIGUSR1);
  MLY_AWAIT(m, MLY_EV_SIGNAL(SIGUSR1), -1);
  h->out[0] = (int)mly_current_event(m)->status;
  MLY_END(m);
}

START_TEST(signal_arrives_as_event) {
  mly_runtime *rt = h_runtime();
  int out[1] = {0};
  mly_type *t = h_type(rt, &(mly_type_def){.name = "sig", .run = sig_holder_run,
                                           .data_size = sizeof(sig_holder)});
  h_spawn(rt, t, &(sig_holder){out}, sizeof(sig_holder));
  h_spawn(rt, t, &(sig_holder){out}, sizeof(sig_holder));
  h_run(rt);
  ck_assert_int_eq(out[0], SIGUSR1);
  mly_runtime_close(rt);
}
END_TEST

/* A reply delivered to a requester that is killed before it takes it is
 * freed with the inbox (replies too), not leaked: LeakSanitizer checks
 * this in the sanitizer run; here the counts say where it went. */
typedef struct rq {
  mly_id peer, self;
} rq;
#define RQ_POINTS(X) X(rq, asked)
MLY_POINTS(rq, RQ_POINTS);
static mly_id rq_victim;
static int rq_asker(mly_machine *m, void *data) {
  rq *r = data;
  MLY_BEGIN(m);
  MLY_REQUEST_AT(m, rq_asked, r->peer, 7, mly_value_str("ping"), -1);
  MLY_END(m);
}
static int rq_answerer(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT(m, 7, -1);
  mly_reply(m, mly_current_event(m), 8, mly_value_str("pong"));
  mly_kill(mly_machine_runtime(m), rq_victim); /* before it takes it */
  MLY_END(m);
}

START_TEST(t_reply_to_killed_requester_is_freed) {
  mly_runtime *rt = h_runtime();
  mly_type *ta = h_type(rt, &(mly_type_def){.name = "asker", .run = rq_asker,
                        MLY_TYPE_POINTS(rq), .data_size = sizeof(rq)});
  mly_type *tb = h_type(rt, &(mly_type_def){.name = "answerer",
                        .run = rq_answerer, .data_size = 8});
  rq r = {0};
  r.peer = h_spawn(rt, tb, NULL, 0);
  rq_victim = h_spawn(rt, ta, &r, sizeof r);
  h_run(rt);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.live, 0);
  ck_assert_uint_eq(st.dropped, 1); /* the reply, dropped with the inbox */
  mly_runtime_close(rt);
}
END_TEST

/* ---- taking from the inbox inside a step, against a model ---- */

#define TK_N 400
#define TK_GO 50
#define TK_STOP 51

typedef struct taker {
  uint32_t ids[TK_N]; /* the model: ids of what is queued, in order */
  int64_t seqs[TK_N];
  uint32_t n;
  uint32_t rounds, taken;
  uint64_t rng;
} taker;

static uint32_t tk_rand(taker *t, uint32_t n) {
  t->rng ^= t->rng << 13;
  t->rng ^= t->rng >> 7;
  t->rng ^= t->rng << 17;
  return (uint32_t)(t->rng % n);
}

/* Each round asks for a random id (1..4, or any): mly_inbox_count must
 * say what the model holds, mly_inbox_take must hand over the oldest
 * match (or nothing), and the inbox shrinks by exactly that one. */
static int taker_run(mly_machine *m, void *data) {
  taker *t = data;
  MLY_BEGIN(m);
  MLY_AWAIT(m, TK_GO, -1);
  while (t->n > 0 && t->rounds < 4 * TK_N) {
    t->rounds++;
    uint32_t r = tk_rand(t, 5), id = r == 4 ? MLY_EV_ANY : r + 1;
    uint32_t want = 0, at = t->n;
    for (uint32_t i = 0; i < t->n; i++)
      if (id == MLY_EV_ANY || t->ids[i] == id) {
        if (want++ == 0) at = i;
      }
    ck_assert_uint_eq(mly_inbox_count(m, id), want);
    ck_assert_uint_eq(mly_inbox_len(m), t->n);
    mly_event *e = mly_inbox_take(m, id);
    if (want == 0) {
      ck_assert_ptr_null(e);
      continue;
    }
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(e->id, t->ids[at]);
    int64_t seq = -1;
    ck_assert_int_eq(mly_value_get_int(e->payload, &seq), 0);
    ck_assert_int_eq(seq, t->seqs[at]);
    mly_event_free(mly_machine_runtime(m), e);
    memmove(t->ids + at, t->ids + at + 1, (t->n - at - 1) * sizeof *t->ids);
    memmove(t->seqs + at, t->seqs + at + 1, (t->n - at - 1) * sizeof *t->seqs);
    t->n--;
    t->taken++;
    if (t->rounds % 16 == 0) MLY_YIELD(m); /* the inbox survives a yield */
  }
  ck_assert_uint_eq(mly_inbox_len(m), 0);
  MLY_END(m);
}

static int other_thread_says;
static void *ask_from_thread(void *arg) {
  other_thread_says = mly_runtime_on_loop_thread(arg) ? 1 : 0;
  return NULL;
}

START_TEST(inbox_take_and_count_match_a_model) {
  for (uint64_t seed = 1; seed <= 20; seed++) {
    mly_runtime *rt = h_runtime();
    ck_assert(mly_runtime_on_loop_thread(rt));
    pthread_t th;
    other_thread_says = -1;
    ck_assert_int_eq(pthread_create(&th, NULL, ask_from_thread, rt), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(other_thread_says, 0);
    ck_assert(!mly_runtime_durable(rt)); /* no journal opened */
    mly_type *tt = h_type(rt, &(mly_type_def){.name = "taker",
                                   .run = taker_run,
                                   .data_size = sizeof(taker)});
    taker *init = calloc(1, sizeof *init);
    ck_assert_ptr_nonnull(init);
    init->rng = seed * 0x9e3779b97f4a7c15ull;
    uint32_t n = TK_N / 2 + tk_rand(init, TK_N / 2);
    for (uint32_t i = 0; i < n; i++) {
      init->ids[i] = 1 + tk_rand(init, 4);
      init->seqs[i] = i;
    }
    init->n = n;
    mly_id id = h_spawn(rt, tt, init, sizeof *init);
    ck_assert_ptr_eq(mly_instance_type(rt, id), tt);
    ck_assert_ptr_null(mly_instance_type(rt, id + 1)); /* none there */
    h_turn(rt); /* it waits for TK_GO: what comes first stays queued */
    for (uint32_t i = 0; i < n; i++)
      ck_assert_int_eq(mly_runtime_send(rt, id, init->ids[i],
                                        mly_value_int(init->seqs[i])), 0);
    ck_assert_int_eq(mly_runtime_send(rt, id, TK_GO, NULL), 0);
    RUN_UNTIL(rt, mly_instance_type(rt, id) == NULL, 100000);
    mly_stats st;
    mly_runtime_stats(rt, &st);
    ck_assert_uint_eq(st.live, 0);
    free(init);
    mly_runtime_close(rt);
  }
}
END_TEST

static Suite *events_suite(void) {
  Suite *s = suite_create("events");
  TCase *tc = tcase_create("events");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, order_per_sender_and_postponed_events);
  tcase_add_test(tc, drop_unhandled_drops_and_counts);
  tcase_add_test(tc, inbox_drop_by_id);
  tcase_add_test(tc, request_gets_reply);
  tcase_add_test(tc, request_times_out_late_reply_dropped);
  tcase_add_test(tc, request_to_nobody_is_an_error);
  tcase_add_test(tc, signal_arrives_as_event);
  tcase_add_test(tc, t_reply_to_killed_requester_is_freed);
  tcase_add_test(tc, inbox_take_and_count_match_a_model);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(events_suite)
