/*
 * test_model.c - the scheduler's invariants under random sequences.
 *
 * A host driver on the loop performs one random operation per loop turn
 * against a population of machines that sleep, yield, wait for events
 * with and without timeouts, ping each other with 1 ms timeouts, send
 * requests that others answer (now and then asking the asker to shut
 * down in the same step), wait for conditions, own children and now and
 * then a child process, and on a shutdown request stop at once or go on
 * for a while: spawn, send, post, wake, kill, shut down one, and at the
 * end shut the runtime down (grace 0, short, none, or a second call that
 * forces it).  After every operation, and after every loop turn,
 * rt_check (lib/invariant.c) verifies the whole state: one place per
 * instance (ready queue, timer heap, waiting), the heap and its
 * back-pointers, the uv timer armed for the earliest deadline, an empty
 * runtime not holding the loop, no process of an ended owner holding it,
 * no reply left where no wait can take it.  At the end every accepted
 * post was taken.  Then the loop must end by itself: with a timer left
 * armed for an ended sleeper, or an instance both queued and timed, it
 * would not (the CK timeout fails the test).
 * Every round runs with plain machines and with durable ones on a
 * journal.  The test command runs a few dozen rounds; MODEL_ROUNDS=N runs
 * N (long mode).
 *
 * The same file holds the regression tests of the examples behind it:
 * durable machines pinging each other with 1 ms timeouts, sleepers that
 * must not run extra steps, a killed or suspended sleeper that must not
 * hold uv_run.
 */
#include "harness.h"
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define EV_PING 1u
#define EV_ASK 2u

/* ---- a small deterministic generator (xorshift) ---- */

static uint32_t rnd(uint32_t *s) {
  uint32_t x = *s ? *s : 1;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

static uint32_t cur_seed; /* the round being run, for failure messages */

static void check_ok(const mly_runtime *rt, const char *when) {
  char err[256] = "";
  int rc = rt_check(rt, err, sizeof err);
  ck_assert_msg(rc == 0, "seed %u: %s: %s", cur_seed, when, err);
}

/* ---- the population ---- */

typedef struct bot {
  uint32_t seed;
  mly_id peer;
  uint32_t rounds;
  uint32_t flag; /* a condition the host toggles */
  uint32_t kids;
  uint32_t stubborn; /* rounds it goes on after a shutdown request */
} bot;

#define BOT_POINTS(X)                                                       \
  X(bot, napping) X(bot, turning) X(bot, listening) X(bot, pinging)        \
  X(bot, pondering) X(bot, parenting) X(bot, closing) X(bot, asking)
MLY_POINTS(bot, BOT_POINTS);

static int64_t some_timeout(bot *b) {
  uint32_t r = rnd(&b->seed) % 5;
  return r == 4 ? -1 : (int64_t)r; /* 0..3 ms, or none */
}

/* One body plays every role: the seed picks a wait per round. */
static int bot_run(mly_machine *m, void *data) {
  bot *b = data;
  MLY_BEGIN(m);
  while (b->rounds++ < 400) {
    if (rnd(&b->seed) % 80 == 0) { /* now and then, a child process */
      static const char *const sleeper[] = {"sleep", "0.05", NULL};
      mly_process_spawn(m, &(mly_process_options){.argv = sleeper,
          .new_group = true, .end_grace_ms = 5}, NULL);
    }
    switch (rnd(&b->seed) % 7) {
    case 0: goto nap;
    case 1: goto turn;
    case 2: goto listen;
    case 3: goto ping;
    case 4: goto ponder;
    case 5: goto ask;
    default: goto parent;
    }
  nap:
    MLY_SLEEP_AT(m, bot_napping, rnd(&b->seed) % 3);
    goto next;
  turn:
    MLY_YIELD_AT(m, bot_turning);
    goto next;
  listen: /* pings, and requests: answered, the asker now and then
           * asked to shut down in the same step (before or after) */
    MLY_AWAIT_AT(m, bot_listening, MLY_EV_ANY, some_timeout(b));
    if (mly_current_event(m) && mly_current_event(m)->id == EV_ASK) {
      const mly_event *e = mly_current_event(m);
      mly_runtime *rt = mly_machine_runtime(m);
      uint32_t r = rnd(&b->seed) % 8;
      if (r == 0) mly_shutdown(rt, e->from);
      mly_reply(m, e, EV_ASK, NULL);
      if (r == 1) mly_shutdown(rt, e->from);
    }
    goto next;
  ask:
    MLY_REQUEST_AT(m, bot_asking, b->peer, EV_ASK, NULL, some_timeout(b));
    goto next;
  ping:
    if (b->peer) mly_send(m, b->peer, EV_PING, NULL);
    MLY_AWAIT_AT(m, bot_pinging, EV_PING, 1);
    goto next;
  ponder:
    if (b->seed % 5 == 0) mly_context_set(m, mly_value_uint(b->seed));
    else if (b->seed % 5 == 1) mly_context_set(m, NULL);
    MLY_WAIT_UNTIL_AT(m, bot_pondering, b->flag != 0);
    b->flag = 0;
    goto next;
  parent:
    if (b->kids < 2 && !mly_shutdown_requested(m)) {
      mly_runtime *rt = mly_machine_runtime(m);
      mly_info self;
      bot k = {.seed = rnd(&b->seed), .peer = mly_self(m), .rounds = 300};
      if (mly_info_get(rt, mly_self(m), &self) == 0 &&
          mly_spawn_child(m, mly_type_find(rt, self.type), &k, sizeof k,
                          NULL) == 0)
        b->kids++;
    }
    MLY_AWAIT_AT(m, bot_parenting, MLY_EV_CHILD_EXIT, some_timeout(b));
    goto next;
  next:
    if (mly_shutdown_requested(m) && b->stubborn-- == 0) break;
  }
  MLY_END(m);
}

static int bot_shutdown(mly_machine *m, void *data) {
  bot *b = data;
  MLY_BEGIN(m);
  MLY_SLEEP_AT(m, bot_closing, rnd(&b->seed) % 2);
  MLY_END(m);
}

/* ---- the driver: one random operation per loop turn ---- */

#define MAX_IDS 4096

typedef struct driver {
  mly_runtime *rt;
  mly_type *type;
  uint32_t seed;
  mly_id ids[MAX_IDS];
  uint32_t nids;
  uint32_t ops, max_ops;
  uint64_t posted;     /* posts accepted */
  uint32_t after_stop; /* loop turns since the shutdown */
  int grace;           /* for mly_runtime_shutdown */
  bool twice;          /* ... and a second call that forces the end */
  bool stopped_called;
  uv_idle_t idle;
  uv_check_t check;
} driver;

static mly_id any_id(driver *d) {
  return d->nids ? d->ids[rnd(&d->seed) % d->nids] : 0;
}

static void spawn_one(driver *d) {
  if (h_stat_live(d->rt) >= 150 || d->nids == MAX_IDS) return;
  bot b = {.seed = rnd(&d->seed), .peer = any_id(d),
           /* with a grace: a wait with no end would hold it for good */
           .stubborn = d->grace >= 0 && rnd(&d->seed) % 3 == 0 ? 20 : 0};
  mly_id id = 0;
  /* some with a name, some with a context: held and let go with them */
  mly_spawn_options o = {.arg = &b, .arg_len = sizeof b,
                         .generate_name = rnd(&d->seed) % 3 == 0};
  if (rnd(&d->seed) % 2) o.context = mly_value_int(d->ops);
  if (mly_spawn_opts(d->rt, d->type, &o, &id) == 0) d->ids[d->nids++] = id;
}

static void one_op(driver *d) {
  mly_id id = any_id(d);
  switch (rnd(&d->seed) % 12) {
  case 0:
  case 1: spawn_one(d); break;
  case 2: mly_runtime_send(d->rt, id, EV_PING, NULL); break;
  case 3: d->posted += mly_post(d->rt, id, EV_PING, NULL) == 0; break;
  case 4: {
    bot *b = mly_instance_data(d->rt, id);
    if (b != NULL) b->flag = 1;
    mly_wake(d->rt, id);
    break;
  }
  case 5: mly_kill(d->rt, id); break;
  case 6: mly_shutdown(d->rt, id); break;
  default: break; /* a turn with nothing from the host */
  }
}

static void drive(uv_idle_t *h) {
  driver *d = h->data;
  check_ok(d->rt, "before an operation");
  if (rnd(&d->seed) % 4 == 0) usleep(250); /* let deadlines come due */
  if (d->ops++ < d->max_ops) {
    one_op(d);
    check_ok(d->rt, "after an operation");
    return;
  }
  uv_idle_stop(h);
  mly_runtime_shutdown(d->rt, d->grace);
  check_ok(d->rt, "after the shutdown");
  if (d->twice) {
    mly_runtime_shutdown(d->rt, d->grace);
    check_ok(d->rt, "after the second shutdown");
  }
}

static void every_turn(uv_check_t *h) {
  driver *d = h->data;
  check_ok(d->rt, "after a loop turn");
  if (mly_runtime_stopping(d->rt)) d->after_stop++;
}

static void on_stop(mly_runtime *rt, void *arg) {
  (void)rt;
  ((driver *)arg)->stopped_called = true;
}

static void run_round(uint32_t seed, bool durable) {
  driver *d = calloc(1, sizeof *d);
  ck_assert_ptr_nonnull(d);
  cur_seed = seed;
  d->seed = seed;
  d->max_ops = 600 + seed % 400;
  int g = (int)(seed % 4);
  d->grace = g == 0 ? 0 : g == 1 ? 2 : g == 2 ? 30 : -1;
  d->twice = seed % 5 == 0;
  ck_assert_int_eq(mly_runtime_new(&d->rt, NULL, &(mly_runtime_options){
      .on_stop = on_stop, .arg = d, .step_budget = 1 + seed % 64}), 0);
  d->type = h_type(d->rt, &(mly_type_def){
      .name = durable ? "dbot" : "bot", .run = bot_run,
      .shutdown = seed % 3 == 0 ? bot_shutdown : NULL, MLY_TYPE_POINTS(bot),
      .data_size = sizeof(bot), .flags = durable ? MLY_TYPE_DURABLE : 0});
  char dir[] = "/tmp/mly-model-XXXXXX";
  if (durable) {
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char err[256] = "";
    ck_assert_msg(h_durable_open(d->rt, &(mly_journal_options){
                      .dir = dir, .sync = MLY_SYNC_NEVER}, err, sizeof err) == 0,
                  "%s", err);
  }
  for (int i = 0; i < 20; i++) spawn_one(d);
  uv_loop_t *loop = mly_runtime_loop(d->rt);
  uv_idle_init(loop, &d->idle);
  d->idle.data = d;
  uv_idle_start(&d->idle, drive);
  uv_check_init(loop, &d->check);
  d->check.data = d;
  uv_check_start(&d->check, every_turn);
  uv_unref((uv_handle_t *)&d->check);
  h_run(d->rt); /* must return: nothing ended holds the loop */
  if (getenv("MODEL_VERBOSE")) {
    mly_stats st;
    mly_runtime_stats(d->rt, &st);
    fprintf(stderr, "seed %u%s: %u ops, %" PRIu64 " spawned, %" PRIu64
            " steps, %" PRIu64 " timers, %" PRIu64 " delivered, %u turns "
            "after the shutdown\n", seed, durable ? " durable" : "", d->ops,
            st.spawned, st.steps, st.timers_fired, st.delivered, d->after_stop);
  }
  ck_assert_msg(d->stopped_called, "seed %u: the loop ended before on_stop", seed);
  ck_assert_uint_eq(h_stat_live(d->rt), 0);
  check_ok(d->rt, "at the end");
  mly_stats st;
  mly_runtime_stats(d->rt, &st);
  ck_assert_msg(st.posted == d->posted, "seed %u: %" PRIu64 " posts accepted, "
                "%" PRIu64 " taken", seed, d->posted, st.posted);
  uv_close((uv_handle_t *)&d->idle, NULL);
  uv_close((uv_handle_t *)&d->check, NULL);
  mly_runtime_close(d->rt);
  if (durable) h_rmtree(dir);
  free(d);
}

/* Rounds: a few dozen in the test command; MODEL_ROUNDS=N for a long run
 * (each round prints nothing unless it fails, naming its seed). */
static uint32_t rounds(uint32_t dflt) {
  const char *e = getenv("MODEL_ROUNDS");
  long n = e ? strtol(e, NULL, 10) : 0;
  return n > 0 ? (uint32_t)n : dflt;
}

START_TEST(random_mixes_keep_the_invariants) {
  uint32_t n = rounds(24);
  for (uint32_t seed = 1; seed <= n; seed++) run_round(seed * 2654435761u, false);
}
END_TEST

START_TEST(random_mixes_keep_the_invariants_durable) {
  uint32_t n = rounds(24) / 2;
  for (uint32_t seed = 1; seed <= n; seed++) run_round(seed * 40503u + 7, true);
}
END_TEST

/* ---- durable machines pinging each other with 1 ms timeouts ---- */

typedef struct pp {
  mly_id peer;
  uint32_t got, timeouts, rounds;
} pp;

#define PP_POINTS(X) X(pp, pinging) X(pp, napping)
MLY_POINTS(pp, PP_POINTS);

static int pp_run(mly_machine *m, void *data) {
  pp *p = data;
  MLY_BEGIN(m);
  MLY_SLEEP_AT(m, pp_napping, 1); /* let the host tell it its peer */
  for (p->rounds = 0; p->rounds < 2000; p->rounds++) {
    mly_send(m, p->peer, EV_PING, NULL);
    MLY_AWAIT_AT(m, pp_pinging, EV_PING, 1);
    if (mly_timed_out(m)) p->timeouts++;
    else p->got++;
  }
  MLY_END(m);
}

static void pingpong_round(bool durable) {
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){
      .name = "pp", .run = pp_run, MLY_TYPE_POINTS(pp), .data_size = sizeof(pp),
      .flags = durable ? MLY_TYPE_DURABLE : 0});
  char dir[] = "/tmp/mly-pp-XXXXXX";
  if (durable) { /* `always`: the commit takes long enough for the race */
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(h_durable_open(rt, &(mly_journal_options){
                         .dir = dir, .sync = MLY_SYNC_ALWAYS}, NULL, 0), 0);
  }
  mly_id a = h_spawn(rt, t, NULL, 0), b = h_spawn(rt, t, NULL, 0);
  ((pp *)mly_instance_data(rt, a))->peer = b;
  ((pp *)mly_instance_data(rt, b))->peer = a;
  h_run(rt); /* hung at 95 % CPU in the timer callback before */
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.live, 0);
  /* each machine: its first step, a nap, 2,000 waits (fewer steps when
   * a ping is already there as it waits); never more */
  ck_assert_uint_le(st.steps, 2 * (1 + 1 + 2000));
  pp *pa = NULL; (void)pa;
  check_ok(rt, "after the ping-pong");
  mly_runtime_close(rt);
  if (durable) h_rmtree(dir);
}

START_TEST(durable_pingpong_with_1ms_timeouts_ends) { pingpong_round(true); }
END_TEST

START_TEST(plain_pingpong_with_1ms_timeouts_ends) { pingpong_round(false); }
END_TEST

/* ---- sleepers run exactly one step per sleep ---- */

typedef struct napper {
  uint32_t n;
} napper;

#define NAP_POINTS(X) X(nap, dozing)
MLY_POINTS(nap, NAP_POINTS);

static int nap_run(mly_machine *m, void *data) {
  napper *n = data;
  MLY_BEGIN(m);
  for (n->n = 0; n->n < 100; n->n++) MLY_SLEEP_AT(m, nap_dozing, 1);
  MLY_END(m);
}

START_TEST(durable_sleepers_run_no_extra_steps) {
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){
      .name = "nap", .run = nap_run, MLY_TYPE_POINTS(nap),
      .data_size = sizeof(napper), .flags = MLY_TYPE_DURABLE});
  char dir[] = "/tmp/mly-nap-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  ck_assert_int_eq(h_durable_open(rt, &(mly_journal_options){
                       .dir = dir, .sync = MLY_SYNC_ALWAYS}, NULL, 0), 0);
  for (int i = 0; i < 50; i++) h_spawn(rt, t, NULL, 0);
  h_run(rt);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.steps, 50 * 101);
  ck_assert_uint_eq(st.timers_fired, 50 * 100);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

/* ---- an ended or suspended sleeper never holds the loop ---- */

#define LONG_POINTS(X) X(long, asleep)
MLY_POINTS(long, LONG_POINTS);

static int long_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_SLEEP_AT(m, long_asleep, 3600 * 1000); /* an hour */
  MLY_END(m);
}

/* A host timer that fails the test if the loop is still running after
 * the runtime let it go: it would only fire if something held the loop
 * (it is unreferenced itself). */
static void too_late(uv_timer_t *h) {
  *(bool *)h->data = true;
  uv_stop(h->loop);
}

static void run_expecting_prompt_end(mly_runtime *rt) {
  bool late = false;
  uv_timer_t guard;
  uv_timer_init(mly_runtime_loop(rt), &guard);
  guard.data = &late;
  uv_timer_start(&guard, too_late, 60 * 1000, 0);
  uv_unref((uv_handle_t *)&guard);
  h_run(rt);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
  ck_assert_msg(!late, "the loop was held after the runtime let it go");
}

static void kill_on_turn(uv_idle_t *h) {
  mly_runtime *rt = ((void **)h->data)[0];
  mly_id id = *(mly_id *)((void **)h->data)[1];
  mly_kill(rt, id);
  check_ok(rt, "after the kill");
  uv_idle_stop(h);
}

START_TEST(killed_sleeper_does_not_hold_the_loop) {
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){.name = "long", .run = long_run,
                                           MLY_TYPE_POINTS(long)});
  mly_id id = h_spawn(rt, t, NULL, 0);
  h_turn(rt); /* asleep for an hour */
  uv_idle_t k;
  void *arg[2] = {rt, &id};
  uv_idle_init(mly_runtime_loop(rt), &k);
  k.data = arg;
  uv_idle_start(&k, kill_on_turn);
  run_expecting_prompt_end(rt);
  uv_close((uv_handle_t *)&k, NULL);
  ck_assert_uint_eq(h_stat_live(rt), 0);
  mly_runtime_close(rt);
}
END_TEST

static void shutdown_on_turn(uv_idle_t *h) {
  mly_runtime *rt = h->data;
  mly_runtime_shutdown(rt, -1);
  check_ok(rt, "after the shutdown");
  uv_idle_stop(h);
}

START_TEST(suspended_sleeper_does_not_hold_the_loop) {
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){.name = "long", .run = long_run,
      MLY_TYPE_POINTS(long), .flags = MLY_TYPE_DURABLE});
  char dir[] = "/tmp/mly-long-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  ck_assert_int_eq(h_durable_open(rt, &(mly_journal_options){
                       .dir = dir, .sync = MLY_SYNC_NEVER}, NULL, 0), 0);
  h_spawn(rt, t, NULL, 0);
  for (int i = 0; i < 5; i++) h_turn(rt); /* recorded, asleep for an hour */
  uv_idle_t k;
  uv_idle_init(mly_runtime_loop(rt), &k);
  k.data = rt;
  uv_idle_start(&k, shutdown_on_turn);
  run_expecting_prompt_end(rt);
  uv_close((uv_handle_t *)&k, NULL);
  ck_assert_uint_eq(h_stat_live(rt), 0);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

/* ---- a yield ended early by a shutdown leaves the queue ---- */

typedef struct selfstop {
  int early, slept;
} selfstop;

static int selfstop_run(mly_machine *m, void *data) {
  selfstop *s = data;
  MLY_BEGIN(m);
  ck_assert_int_eq(mly_shutdown(mly_machine_runtime(m), mly_self(m)), 0);
  MLY_YIELD(m); /* queued for its turn, then ended at once by the request */
  s->early = mly_shutdown_requested(m);
  MLY_SLEEP(m, 1); /* on the timer heap: only there */
  s->slept = 1;
  MLY_END(m);
}

START_TEST(yield_ended_early_leaves_the_queue) {
  mly_runtime *rt = h_runtime();
  cur_seed = 0;
  mly_type *t = h_type(rt, &(mly_type_def){.name = "selfstop",
      .run = selfstop_run, .data_size = sizeof(selfstop)});
  mly_id id = h_spawn(rt, t, NULL, 0);
  selfstop *s = mly_instance_data(rt, id);
  h_turn(rt);
  check_ok(rt, "after the step");
  ck_assert_int_eq(s->early, 1);
  ck_assert_int_eq(s->slept, 0);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.steps, 1);
  h_run(rt);
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.steps, 2); /* its turn did not run it again */
  mly_runtime_close(rt);
}
END_TEST

static Suite *model_suite(void) {
  Suite *s = suite_create("model");
  TCase *tc = tcase_create("model");
  tcase_set_timeout(tc, 240);
  tcase_add_test(tc, random_mixes_keep_the_invariants);
  tcase_add_test(tc, random_mixes_keep_the_invariants_durable);
  tcase_add_test(tc, durable_pingpong_with_1ms_timeouts_ends);
  tcase_add_test(tc, plain_pingpong_with_1ms_timeouts_ends);
  tcase_add_test(tc, durable_sleepers_run_no_extra_steps);
  tcase_add_test(tc, killed_sleeper_does_not_hold_the_loop);
  tcase_add_test(tc, suspended_sleeper_does_not_hold_the_loop);
  tcase_add_test(tc, yield_ended_early_leaves_the_queue);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(model_suite)
