/*
 * test_bound.c - what goes into a durable record past the record bound
 * (64 MiB encoded, journal.h JR_VALUE_MAX) is refused by the call that
 * hands it over, on every store (store_param.h: MLY_TEST_STORE), never
 * taken and dropped with its step (issue 13 brk #8: a durable mly_send of
 * 70,000,000 bytes answered 0 and was lost on both stores).  A payload
 * of mly_send from a durable step and of mly_runtime_send to a durable
 * instance, of mly_reply, of mly_post_durable; a context at spawn; a
 * task's payload: MLY_ERANGE (MLY_EINVAL when it does not encode), the
 * sender goes on and a payload under the bound arrives; the store has
 * no error; after a reopen nothing big is there.
 */
#include "harness.h"

#include <string.h>

static char dir[256];

#define EV 11
#define BIG (65u << 20)

static mly_value *big(void) {
  void *p = calloc(1, BIG);
  ck_assert_ptr_nonnull(p);
  mly_value *v = mly_value_bin(p, BIG);
  free(p);
  ck_assert_ptr_nonnull(v);
  return v;
}

static mly_value *deep(int n) {
  mly_value *v = mly_value_int(1);
  for (int i = 0; i < n; i++) {
    mly_value *a = mly_value_array();
    mly_array_push(a, v);
    v = a;
  }
  return v;
}

/* ---- a durable sink, and a durable sender ---- */

static uint32_t got, got_len;
static int send_big_rc = 1, send_deep_rc = 1, send_small_rc = 1,
           remote_rc = 1, sender_done;
static mly_id remote_to;

typedef struct sink {
  uint32_t n;
} sink;
#define SINK_POINTS(X) X(sink, wait)
MLY_POINTS(sink, SINK_POINTS);
static int sink_run(mly_machine *m, void *data) {
  sink *s = data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_AWAIT_AT(m, sink_wait, EV, -1);
    const void *p = NULL;
    size_t len = 0;
    const mly_event *e = mly_current_event(m);
    if (e && e->payload) mly_value_get_bin(e->payload, &p, &len);
    got++;
    got_len = (uint32_t)len;
    s->n++;
  }
  MLY_END(m);
}

typedef struct sender {
  mly_id peer;
} sender;
#define SENDER_POINTS(X) X(sender, rest)
MLY_POINTS(sender, SENDER_POINTS);
static int sender_run(mly_machine *m, void *data) {
  sender *s = data;
  MLY_BEGIN(m);
  send_big_rc = mly_send(m, s->peer, EV, big());
  send_deep_rc = mly_send(m, s->peer, EV, deep(MLY_VALUE_MAX_DEPTH + 2));
  if (remote_to) remote_rc = mly_send(m, remote_to, EV, big());
  send_small_rc = mly_send(m, s->peer, EV, mly_value_bin("abc", 3));
  MLY_SLEEP_AT(m, sender_rest, 1);
  sender_done = 1;
  MLY_END(m);
}

static void noop_fn(mly_task *t, void *arg) {
  (void)arg;
  mly_task_done(t, MLY_TASK_OK, NULL);
}

static mly_type *tsink, *tsender;

static mly_runtime *open_rt(void) {
  mly_runtime *rt = h_runtime();
  ck_assert_int_eq(mly_queues_open(rt), 0);
  ck_assert_int_eq(mly_defer_register(rt, "noop", noop_fn, NULL, 0), 0);
  mly_type_def ds = {.name = "sink", .run = sink_run, MLY_TYPE_POINTS(sink),
                     .data_size = sizeof(sink), .version = 1,
                     .flags = MLY_TYPE_DURABLE};
  mly_type_def dt = {.name = "sender", .run = sender_run,
                     MLY_TYPE_POINTS(sender), .data_size = sizeof(sender),
                     .version = 1, .flags = MLY_TYPE_DURABLE};
  tsink = h_type(rt, &ds);
  tsender = h_type(rt, &dt);
  mly_journal_options jo = {.dir = dir};
  /* a 65 MiB payload made on the loop thread may hold it past the
   * suites' 1 s lease on a busy machine (clean closes give it up) */
  setenv("MLY_TEST_PG_LEASE_MS", "30000", 0);
  h_journal_open(rt, &jo);
  return rt;
}

static int post_cb_rc = 1;
static void post_cb(mly_runtime *rt, int rc, void *arg) {
  (void)rt;
  (void)arg;
  post_cb_rc = rc;
}

static int sync_rc = 1;
static void on_sync(mly_runtime *rt, int status, void *arg) {
  (void)rt;
  (void)arg;
  sync_rc = status;
}

START_TEST(t_past_the_bound_is_refused) {
  h_tmpdir(dir, sizeof dir, "mealy-bound");
  mly_runtime *rt = open_rt();
  bool pg = strcmp(h_store_name(), "postgresql") == 0;
  mly_id sk = h_spawn(rt, tsink, NULL, 0);
  /* the barrier (what `fsm start` answers behind): later, once the
   * create committed */
  ck_assert_int_eq(mly_durable_sync(rt, NULL, NULL), MLY_EINVAL);
  ck_assert_int_eq(mly_durable_sync(rt, on_sync, NULL), 0);
  ck_assert_int_eq(sync_rc, 1);
  RUN_UNTIL(rt, sync_rc == 0, 100000);
  /* on a shared store, an id no process here holds is another's */
  remote_to = pg ? ((mly_id)7 << 32 | (63u << 18) | 5) : 0;
  sender s = {.peer = sk};
  h_spawn(rt, tsender, &s, sizeof s);
  RUN_UNTIL(rt, sender_done && got == 1, 100000);
  ck_assert_int_eq(send_big_rc, MLY_ERANGE);
  ck_assert_int_eq(send_deep_rc, MLY_EINVAL);
  ck_assert_int_eq(send_small_rc, 0);
  if (pg) ck_assert_int_eq(remote_rc, MLY_ERANGE);
  ck_assert_uint_eq(got_len, 3);

  /* the host's calls */
  ck_assert_int_eq(mly_runtime_send(rt, sk, EV, big()), MLY_ERANGE);
  ck_assert_int_eq(mly_post_durable(rt, sk, EV, big(), post_cb, NULL),
                   MLY_ERANGE);
  ck_assert_int_eq(mly_post_durable(rt, sk, EV,
                                    deep(MLY_VALUE_MAX_DEPTH + 2), post_cb,
                                    NULL),
                   MLY_EINVAL);
  ck_assert_int_eq(post_cb_rc, 1); /* refused calls call back no one */
  mly_spawn_options so = {.context = big()};
  mly_id id = 0;
  ck_assert_int_eq(mly_spawn_opts(rt, tsink, &so, &id), MLY_ERANGE);
  ck_assert_uint_eq(id, 0);
  ck_assert_int_eq(mly_defer(rt, "noop", big(), NULL), MLY_ERANGE);
  /* under the bound they go through */
  ck_assert_int_eq(mly_post_durable(rt, sk, EV, mly_value_bin("abcd", 4),
                                    post_cb, NULL),
                   0);
  for (int i = 0; i < 2000 && !(got == 2 && post_cb_rc == 0); i++)
    uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  ck_assert_msg(got == 2 && post_cb_rc == 0, "got %u, post %d", got,
                post_cb_rc);
  ck_assert_uint_eq(got_len, 4);
  ck_assert_int_eq(mly_runtime_send(rt, sk, EV, mly_value_bin("abcde", 5)),
                   0);
  RUN_UNTIL(rt, got == 3, 100000);
  ck_assert_uint_eq(got_len, 5);
  ck_assert_int_eq(mly_journal_error(rt), 0);
  /* both stores answer it as mealy.h says (brk #15: the doc said
   * MLY_ENOSYS for PostgreSQL, which answered 0) */
  ck_assert_int_eq(mly_journal_compact(rt), 0);
  mly_runtime_close(rt);

  /* nothing big was kept, nothing is pending: the sink waits as it was */
  got = 0;
  rt = open_rt();
  ck_assert_uint_eq(h_stat_live(rt), 1);
  const sink *d = mly_instance_data(rt, sk);
  ck_assert_ptr_nonnull(d);
  ck_assert_uint_eq(d->n, 3);
  h_turns(rt, 50);
  ck_assert_uint_eq(got, 0);
  ck_assert_int_eq(mly_journal_error(rt), 0);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

/* A process on a PostgreSQL store makes its instances in its slot
 * range (262,144 slots): the next spawn is MLY_ENOSPC, the limit it hit
 * (brk #15: it said "out of memory"); one that ends frees its slot.  On
 * the journal there is no range: the same count goes through. */
typedef struct idle {
  uint32_t x;
} idle;
#define IDLE_POINTS(X) X(idle, wait)
MLY_POINTS(idle, IDLE_POINTS);
static int idle_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT_AT(m, idle_wait, EV, -1);
  MLY_END(m);
}

START_TEST(t_slot_range_full) {
  h_tmpdir(dir, sizeof dir, "mealy-slots");
  mly_runtime *rt = open_rt();
  bool pg = strcmp(h_store_name(), "postgresql") == 0;
  mly_type_def di = {.name = "idle", .run = idle_run, MLY_TYPE_POINTS(idle),
                     .data_size = sizeof(idle), .version = 1};
  mly_type *t = h_type(rt, &di);
  enum { RANGE = 1 << 18 };
  mly_id first = 0, id = 0;
  int rc = 0;
  uint32_t n = 0;
  while (n < RANGE + 1 && (rc = mly_spawn(rt, t, NULL, 0, &id)) == 0) {
    if (n++ == 0) first = id;
  }
  if (pg) {
    ck_assert_msg(rc == MLY_ENOSPC && n == RANGE, "spawn %u: %s", n + 1,
                  mly_strerror(rc));
    /* one ends: its slot is free again */
    ck_assert_int_eq(mly_runtime_send(rt, first, EV, NULL), 0);
    RUN_UNTIL(rt, mly_instance_data(rt, first) == NULL, 1000);
    ck_assert_int_eq(mly_spawn(rt, t, NULL, 0, &id), 0);
  } else {
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(n, RANGE + 1);
  }
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("bound");
  TCase *c = tcase_create("bound");
  tcase_set_timeout(c, 300);
  tcase_add_test(c, t_past_the_bound_is_refused);
  tcase_add_test(c, t_slot_range_full);
  suite_add_tcase(s, c);
  return s;
}

H_MAIN(suite)
