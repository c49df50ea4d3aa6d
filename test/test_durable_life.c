/*
 * test_durable_life.c - a durable instance or event continues, is parked
 * with a reason, or ends with a reason: never silently dropped or stuck.
 *
 * Each case is a regression test for one way it went wrong: a parked
 * instance losing its slot to a new spawn, a clean shutdown dropping the
 * inbox of a suspended machine (and ending a durable child on the way),
 * a durable post answering "error" for an event that was delivered after
 * a restart, a recovered wait on something that did not come back
 * hanging forever, a yield point without code failing silently on its
 * first step.  A randomized run then checks the invariant itself against
 * a model: every event the runtime accepted for a durable machine (sent,
 * posted, posted durably and answered 0) is delivered exactly once,
 * across clean stops, closes and runs whose code parks the machines;
 * every instance continues or is parked; no spawn takes a parked slot;
 * a named one holds its name throughout (lookups find it, events reach
 * it by name, a spawn of the name is refused), and a tombstone once it
 * ended; one with a context counts in it exactly what its data counts.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a scratch state directory per test, and runtimes on it ---- */

static char dir[256];

static void fresh_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/mealy-dl.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void run_turns(mly_runtime *rt, int n) {
  for (int i = 0; i < n; i++) uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
}


static uint64_t steps_of(mly_runtime *rt) {
  mly_stats st;
  mly_runtime_stats(rt, &st);
  return st.steps;
}

/* A runtime with these types, its journal opened on dir. */
static mly_runtime *open_with(const mly_type_def *defs, size_t n,
                              const mly_journal_options *o) {
  mly_runtime *rt = h_runtime();
  for (size_t i = 0; i < n; i++) h_type(rt, &defs[i]);
  mly_journal_options dflt = {.dir = dir};
  char err[512];
  ck_assert(!mly_runtime_durable(rt));
  int rc = h_durable_open(rt, o ? o : &dflt, err, sizeof err);
  ck_assert_msg(rc == 0, "open: %s", err);
  ck_assert(mly_runtime_durable(rt));
  return rt;
}

static mly_journal_stats jstats(mly_runtime *rt) {
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  return st;
}

static int collect_parked(const mly_parked *p, void *arg) {
  char *out = arg;
  size_t n = strlen(out);
  snprintf(out + n, 1024 - n, "%llu|%s|%s|%s\n", (unsigned long long)p->id,
           p->type, p->point, p->reason);
  return 0;
}

static void parked_text(mly_runtime *rt, char out[1024]) {
  out[0] = '\0';
  ck_assert_int_eq(mly_journal_parked(rt, collect_parked, out), 0);
}

static void run_until_empty(mly_runtime *rt, int max_turns) {
  RUN_UNTIL(rt, h_stat_live(rt) == 0, max_turns);
}

/* ---- a sink: counts what it takes, by payload, until STOP ---- */

enum { EV_GO = 1, EV_STOP = 2, EV_START = 3, EV_ASK = 4, EV_ANSWER = 5 };

/* The sink takes everything in its inbox (EV_START), then ends (EV_STOP). */
static void drain_sink(mly_runtime *rt, mly_id id) {
  ck_assert_int_eq(mly_runtime_send(rt, id, EV_START, NULL), 0);
  ck_assert_int_eq(mly_runtime_send(rt, id, EV_STOP, NULL), 0);
  run_until_empty(rt, 100);
}

#define NSEQ 4096
static uint32_t seen[NSEQ]; /* deliveries of event seq, over every run */
static uint32_t stops;

typedef struct sink {
  uint32_t wait_start; /* hold events until START comes */
  uint32_t taken;
} sink;

#define SINK_POINTS(X) X(sink, start) X(sink, take) X(sink, pause)
MLY_POINTS(sink, SINK_POINTS);

static int sink_run(mly_machine *m, void *data) {
  sink *s = data;
  MLY_BEGIN(m);
  if (s->wait_start) MLY_AWAIT_AT(m, sink_start, EV_START, -1);
  for (;;) {
    MLY_AWAIT_AT(m, sink_take, MLY_EV_ANY, -1);
    const mly_event *e = mly_current_event(m);
    if (e->id == EV_STOP) break;
    uint64_t seq = 0;
    if (e->id == EV_GO && mly_value_get_uint(e->payload, &seq) == 0 &&
        seq < NSEQ)
      seen[seq]++;
    s->taken++;
    if (mly_context(m)) /* counted twice: both must come back as one */
      mly_map_set_uint(mly_context(m), "taken", s->taken);
    MLY_YIELD_AT(m, sink_pause); /* one a turn: inboxes stay full */
  }
  stops++;
  MLY_END(m);
}

static mly_type_def sink_def(uint32_t version, uint32_t min_version) {
  return (mly_type_def){.name = "sink", .run = sink_run,
                        MLY_TYPE_POINTS(sink), .data_size = sizeof(sink),
                        .version = version, .min_version = min_version,
                        .flags = MLY_TYPE_DURABLE};
}

static void send_go(mly_runtime *rt, mly_id to, uint64_t seq) {
  ck_assert_int_eq(mly_runtime_send(rt, to, EV_GO, mly_value_uint(seq)), 0);
}

static void reset(void) {
  memset(seen, 0, sizeof seen);
  stops = 0;
}

/* ---- a parked instance keeps its slot ---- */

START_TEST(t_parked_keeps_its_slot) {
  fresh_dir();
  reset();
  mly_type_def v1 = sink_def(1, 0);
  mly_runtime *rt = open_with(&v1, 1, NULL);
  sink arg = {.wait_start = 1};
  mly_id old = h_spawn(rt, mly_type_find(rt, "sink"), &arg, sizeof arg);
  send_go(rt, old, 7); /* waits in its inbox */
  run_turns(rt, 4);
  mly_runtime_close(rt);

  /* code that does not accept version 1: parked, and a new spawn gets an
   * id (and a slot) of its own */
  mly_type_def v2 = sink_def(2, 2);
  rt = open_with(&v2, 1, NULL);
  char parked[1024];
  parked_text(rt, parked);
  ck_assert_msg(strstr(parked, "version 1 of 'sink' is not accepted"), "%s",
                parked);
  ck_assert_uint_eq(jstats(rt).parked, 1);
  ck_assert_int_eq(mly_runtime_send(rt, old, EV_GO, NULL), MLY_ESRCH);
  mly_id fresh[3];
  for (int i = 0; i < 3; i++) {
    fresh[i] = h_spawn(rt, mly_type_find(rt, "sink"), &arg, sizeof arg);
    ck_assert_uint_ne((uint32_t)fresh[i], (uint32_t)old);
  }
  run_turns(rt, 4);
  mly_runtime_close(rt);

  /* the old code finds it as it was, its event with it, beside the new */
  rt = open_with(&v1, 1, NULL);
  parked_text(rt, parked);
  ck_assert_msg(strstr(parked, "|sink|") &&
                strstr(parked, "version 2 of 'sink' is not accepted"), "%s",
                parked); /* the new ones */
  ck_assert_uint_eq(jstats(rt).recovered, 1);
  ck_assert_ptr_nonnull(mly_instance_data(rt, old));
  ck_assert_int_eq(mly_runtime_send(rt, old, EV_START, NULL), 0);
  ck_assert_int_eq(mly_runtime_send(rt, old, EV_STOP, NULL), 0);
  run_until_empty(rt, 100);
  ck_assert_uint_eq(seen[7], 1);
  ck_assert_uint_eq(stops, 1);
  mly_runtime_close(rt);

  /* and the new ones are still there for the new code */
  rt = open_with(&v2, 1, NULL);
  ck_assert_uint_eq(jstats(rt).recovered, 3);
  ck_assert_uint_eq(jstats(rt).parked, 0);
  mly_runtime_close(rt);
}
END_TEST

/* ---- a clean stop keeps what a crash keeps ---- */

static int on_stop_calls;
static void on_stop(mly_runtime *rt, void *arg) {
  (void)rt;
  (void)arg;
  on_stop_calls++;
}

/* Nothing more is written by a few more turns of the loop. */
static bool stop_flushed(mly_runtime *rt) {
  uint64_t before = jstats(rt).records;
  run_turns(rt, 3);
  return jstats(rt).records == before;
}

/* Shut down cleanly; the machines are suspended, so on_stop comes at
 * once, whatever they were waiting for. */
static void clean_stop(mly_runtime *rt) {
  on_stop_calls = 0;
  ck_assert_int_eq(mly_runtime_shutdown(rt, -1), 0);
  for (int i = 0; i < 100 && on_stop_calls == 0; i++) run_turns(rt, 1);
  ck_assert_int_eq(on_stop_calls, 1);
  /* the host's loop goes on (mly_runtime_run returns, or its own loop
   * turns): whatever the stop left to write is written */
  RUN_UNTIL(rt, stop_flushed(rt), 1000);
  mly_runtime_close(rt);
}

static mly_runtime *open_stoppable(const mly_type_def *defs, size_t n) {
  mly_runtime *rt = NULL;
  mly_runtime_options ro = {.on_stop = on_stop};
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, &ro), 0);
  for (size_t i = 0; i < n; i++) h_type(rt, &defs[i]);
  mly_journal_options o = {.dir = dir};
  char err[512];
  ck_assert_msg(h_durable_open(rt, &o, err, sizeof err) == 0, "%s", err);
  return rt;
}

START_TEST(t_clean_stop_keeps_the_inbox) {
  fresh_dir();
  reset();
  mly_type_def v1 = sink_def(1, 0);
  mly_runtime *rt = open_stoppable(&v1, 1);
  sink arg = {.wait_start = 1};
  mly_id id = h_spawn(rt, mly_type_find(rt, "sink"), &arg, sizeof arg);
  run_turns(rt, 4);
  send_go(rt, id, 1);
  send_go(rt, id, 2);
  run_turns(rt, 4);
  clean_stop(rt);

  for (int round = 0; round < 2; round++) { /* and again: nothing wears off */
    rt = open_stoppable(&v1, 1);
    ck_assert_uint_eq(jstats(rt).recovered, 1);
    run_turns(rt, 4);
    clean_stop(rt);
  }
  rt = open_with(&v1, 1, NULL);
  drain_sink(rt, id);
  ck_assert_uint_eq(seen[1], 1);
  ck_assert_uint_eq(seen[2], 1);
  ck_assert_uint_eq(stops, 1);
  mly_runtime_close(rt);
}
END_TEST

/* Events that were never journaled (a plain mly_post) are kept by a
 * clean stop (or close) too: they get their records then. */
START_TEST(t_clean_stop_keeps_plain_posts) {
  fresh_dir();
  reset();
  mly_type_def v1 = sink_def(1, 0);
  mly_runtime *rt = open_stoppable(&v1, 1);
  sink arg = {.wait_start = 1};
  mly_id id = h_spawn(rt, mly_type_find(rt, "sink"), &arg, sizeof arg);
  send_go(rt, id, 1); /* journaled */
  ck_assert_int_eq(mly_post(rt, id, EV_GO, mly_value_uint(2)), 0);
  send_go(rt, id, 3);
  mly_stats st;
  RUN_UNTIL(rt, (mly_runtime_stats(rt, &st), st.posted == 1), 1000);
  clean_stop(rt);
  rt = open_with(&v1, 1, NULL);
  drain_sink(rt, id);
  for (int q = 1; q <= 3; q++) ck_assert_uint_eq(seen[q], 1);
  mly_runtime_close(rt);
}
END_TEST

/* A compaction after the stop (the host's, or one the thresholds want
 * after any batch) would write a live set without the machines the stop
 * suspended: there is none. */
START_TEST(t_no_compaction_after_a_stop) {
  fresh_dir();
  reset();
  mly_type_def v1 = sink_def(1, 0);
  mly_runtime *rt = NULL;
  mly_runtime_options ro = {.on_stop = on_stop};
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, &ro), 0);
  h_type(rt, &v1);
  /* every batch wants a compaction */
  mly_journal_options o = {.dir = dir, .compact_min_bytes = 1,
                           .compact_dead_pct = 1};
  char err[512];
  ck_assert_msg(h_durable_open(rt, &o, err, sizeof err) == 0, "%s", err);
  sink arg = {.wait_start = 1};
  mly_id id = h_spawn(rt, mly_type_find(rt, "sink"), &arg, sizeof arg);
  RUN_UNTIL(rt, steps_of(rt) >= 1, 1000);
  send_go(rt, id, 1);
  ck_assert_int_eq(mly_post(rt, id, EV_GO, mly_value_uint(2)), 0);
  mly_stats st;
  RUN_UNTIL(rt, (mly_runtime_stats(rt, &st), st.posted == 1), 1000);
  uint64_t before = jstats(rt).compactions;
  ck_assert_uint_gt(before, 0); /* they do run */
  on_stop_calls = 0;
  ck_assert_int_eq(mly_runtime_shutdown(rt, -1), 0);
  RUN_UNTIL(rt, stop_flushed(rt), 1000);
  /* asked for by the host, or wanted by the thresholds: refused */
  ck_assert_int_eq(mly_journal_compact(rt), MLY_ESHUTDOWN);
  RUN_UNTIL(rt, stop_flushed(rt), 1000);
  ck_assert_uint_eq(jstats(rt).compactions, before);
  mly_runtime_close(rt);
  rt = open_with(&v1, 1, NULL);
  ck_assert_uint_eq(jstats(rt).recovered, 1);
  drain_sink(rt, id);
  ck_assert_uint_eq(seen[1], 1);
  ck_assert_uint_eq(seen[2], 1);
  mly_runtime_close(rt);
}
END_TEST

/* A durable parent and its durable child, the child in a lower slot (a
 * slot freed before): a clean stop suspends both, it ends neither. */
typedef struct family {
  uint32_t role; /* 0 filler, 1 parent */
  mly_id child;
  int32_t status;
} family;
static int32_t family_status = 1;

#define FAM_POINTS(X) X(fam, spawned) X(fam, child)
MLY_POINTS(fam, FAM_POINTS);

static int fam_run(mly_machine *m, void *data) {
  family *f = data;
  MLY_BEGIN(m);
  if (f->role == 0) MLY_EXIT(m, 0); /* a filler: frees its slot */
  if (f->role == 2) { /* the child: until STOP */
    MLY_AWAIT_AT(m, fam_spawned, EV_STOP, -1);
    MLY_EXIT(m, 5);
  }
  {
    family c = {.role = 2};
    if (mly_spawn_child(m, mly_type_find(mly_machine_runtime(m), "fam"), &c,
                        sizeof c, &f->child) < 0)
      MLY_EXIT(m, 99);
  }
  MLY_AWAIT_CHILD_AT(m, fam_child, f->child, &f->status);
  family_status = f->status;
  MLY_END(m);
}

/* The same type, whose code lost the parent's point. */
static int fam_run_nochild(mly_machine *m, void *data) {
  family *f = data;
  MLY_BEGIN(m);
  if (f->role == 2) {
    MLY_AWAIT_AT(m, fam_spawned, EV_STOP, -1);
    MLY_EXIT(m, 5);
  }
  MLY_END(m);
}

static const mly_type_def fam_def = {
    .name = "fam", .run = fam_run, MLY_TYPE_POINTS(fam),
    .data_size = sizeof(family), .version = 1, .flags = MLY_TYPE_DURABLE};

START_TEST(t_clean_stop_keeps_durable_children) {
  fresh_dir();
  family_status = 1;
  mly_runtime *rt = open_stoppable(&fam_def, 1);
  mly_type *t = mly_type_find(rt, "fam");
  family filler = {.role = 0}, parent = {.role = 1};
  h_spawn(rt, t, &filler, sizeof filler); /* ends first, freeing slot 0 */
  mly_id p = h_spawn(rt, t, &parent, sizeof parent);
  family *pd = mly_instance_data(rt, p);
  ck_assert_ptr_nonnull(pd);
  RUN_UNTIL(rt, pd->child != 0, 1000);
  mly_id child = pd->child;
  ck_assert_uint_lt((uint32_t)child, (uint32_t)p); /* the lower slot */
  clean_stop(rt);

  rt = open_with(&fam_def, 1, NULL);
  ck_assert_uint_eq(jstats(rt).recovered, 2);
  ck_assert_int_eq(mly_runtime_send(rt, child, EV_STOP, NULL), 0);
  run_until_empty(rt, 100);
  ck_assert_int_eq(family_status, 5); /* the child's own status */
  mly_runtime_close(rt);
}
END_TEST

/* ---- a durable post answers honestly ---- */

typedef struct post_fault {
  bool armed;
  int op;   /* MLY_JOP_WRITE or MLY_JOP_SYNC */
  int err;  /* < 0: fail with it; 1: a short write, the last byte lost */
  int fired;
} post_fault;

static int post_fault_hook(void *arg, int op, size_t len) {
  post_fault *f = arg;
  if (!f->armed || op != f->op) return 0;
  f->armed = false;
  f->fired++;
  if (f->err == 1) return (int)len - 1;
  return f->err;
}

#define NPOST 2
static int post_status[NPOST];
static int post_answers;
static void post_cb(mly_runtime *rt, int status, void *arg) {
  (void)rt;
  post_status[(intptr_t)arg] = status;
  post_answers++;
}

/* Two durable posts in one batch, whose write or sync fails as planned;
 * then reopen and count what the sink gets. */
static void post_case(int op, int err, int want0, int want1, uint32_t seen0,
                      uint32_t seen1) {
  fresh_dir();
  reset();
  post_answers = 0;
  post_fault f = {.op = op, .err = err};
  mly_journal_options o = {.dir = dir, .fault = post_fault_hook,
                           .fault_arg = &f};
  mly_type_def v1 = sink_def(1, 0);
  mly_runtime *rt = open_with(&v1, 1, &o);
  sink arg = {.wait_start = 1};
  mly_id id = h_spawn(rt, mly_type_find(rt, "sink"), &arg, sizeof arg);
  /* its CREATE and its first STEP are durable: nothing else in flight */
  RUN_UNTIL(rt, steps_of(rt) >= 1 && jstats(rt).syncs >= 2, 1000);
  ck_assert_int_eq(mly_journal_error(rt), 0);
  f.armed = true;
  for (intptr_t i = 0; i < NPOST; i++)
    ck_assert_int_eq(mly_post_durable(rt, id, EV_GO, mly_value_uint((uint64_t)i),
                                      post_cb, (void *)i), 0);
  RUN_UNTIL(rt, post_answers == NPOST, 1000);
  ck_assert_int_eq(f.fired, 1);
  ck_assert_int_ne(mly_journal_error(rt), 0); /* fail-stop */
  ck_assert_msg(post_status[0] == want0 && post_status[1] == want1,
                "answers %d %d, want %d %d", post_status[0], post_status[1],
                want0, want1);
  mly_runtime_close(rt);

  /* the answers hold after a restart: an error was never delivered;
   * MLY_EUNKNOWN here (the process did not die: the page cache kept the
   * write) is delivered once */
  rt = open_with(&v1, 1, NULL);
  ck_assert_uint_eq(jstats(rt).recovered, 1);
  drain_sink(rt, id);
  ck_assert_uint_eq(seen[0], seen0);
  ck_assert_uint_eq(seen[1], seen1);
  mly_runtime_close(rt);
}

START_TEST(t_post_sync_fails_unknown) {
  post_case(MLY_JOP_SYNC, -EIO, MLY_EUNKNOWN, MLY_EUNKNOWN, 1, 1);
}
END_TEST

START_TEST(t_post_write_fails_not_accepted) {
  post_case(MLY_JOP_WRITE, -EIO, -EIO, -EIO, 0, 0);
}
END_TEST

START_TEST(t_post_short_write_splits) {
  /* both records are in one frame (a batch), which lost its last byte: a
   * frame cut short never verifies, so neither can come back */
  post_case(MLY_JOP_WRITE, 1, MLY_ENOSPC, MLY_ENOSPC, 0, 0);
}
END_TEST

/* A durable post to a machine the stop suspended: not "no such
 * instance", but "shutting down" (it is back after the next open). */
START_TEST(t_post_while_stopping) {
  fresh_dir();
  reset();
  post_answers = 0;
  post_status[0] = 1;
  mly_type_def v1 = sink_def(1, 0);
  mly_runtime *rt = open_stoppable(&v1, 1);
  sink arg = {.wait_start = 1};
  mly_id id = h_spawn(rt, mly_type_find(rt, "sink"), &arg, sizeof arg);
  RUN_UNTIL(rt, steps_of(rt) >= 1, 1000);
  /* posted before the stop, taken by the loop after it */
  ck_assert_int_eq(mly_post_durable(rt, id, EV_GO, mly_value_uint(0), post_cb,
                                    (void *)0), 0);
  ck_assert_int_eq(mly_runtime_shutdown(rt, -1), 0);
  ck_assert_int_eq(post_answers, 0);
  RUN_UNTIL(rt, post_answers == 1, 1000);
  ck_assert_int_eq(post_status[0], MLY_ESHUTDOWN);
  mly_runtime_close(rt);
  rt = open_with(&v1, 1, NULL);
  ck_assert_uint_eq(jstats(rt).recovered, 1); /* and it is back */
  mly_runtime_close(rt);
}
END_TEST

/* ---- recovered waits whose cause is gone end with MLY_ELOST ---- */

typedef struct waiter {
  uint32_t kind;   /* see waiter_run */
  uint32_t ev;     /* kind 3: the event it waits for */
  mly_id other;    /* its child, or the target of its request */
  int32_t status;  /* as the wait ended */
} waiter;

#define NWAITERS 8
static int32_t waiter_end[NWAITERS];
static int waiters_ended;

#define WAITER_POINTS(X) X(waiter, child) X(waiter, anychild) \
  X(waiter, reply) X(waiter, event)
MLY_POINTS(waiter, WAITER_POINTS);

static int waiter_run(mly_machine *m, void *data) {
  waiter *w = data;
  mly_runtime *rt = mly_machine_runtime(m);
  MLY_BEGIN(m);
  switch (w->kind) {
  case 0: /* a child, then MLY_AWAIT_CHILD_AT */
  case 1: /* a child, then any child's exit */
    if (mly_spawn_child(m, mly_type_find(rt, "plain"), NULL, 0, &w->other) < 0)
      MLY_EXIT(m, 99);
    break;
  default: break;
  }
  if (w->kind == 0) {
    MLY_AWAIT_CHILD_AT(m, waiter_child, w->other, &w->status);
  } else if (w->kind == 1) {
    MLY_AWAIT_AT(m, waiter_anychild, MLY_EV_CHILD_EXIT, -1);
    w->status = mly_wait_error(m);
  } else if (w->kind == 2) {
    MLY_REQUEST_AT(m, waiter_reply, w->other, EV_ASK, NULL, -1);
    w->status = mly_current_event(m) ? (int32_t)mly_current_event(m)->id
                                     : mly_wait_error(m);
  } else {
    MLY_AWAIT_AT(m, waiter_event, w->ev, -1);
    w->status = mly_wait_error(m);
  }
  waiter_end[mly_self(m) & 7] = w->status; /* slots 0..7 in these tests */
  waiters_ended++;
  MLY_END(m);
}

/* Not durable: waits for ever. */
static int plain_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT(m, EV_STOP, -1);
  MLY_END(m);
}

/* Durable: answers one request once STARTed. */
#define PEER_POINTS(X) X(peer, start) X(peer, ask)
MLY_POINTS(peer, PEER_POINTS);
static int peer_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT_AT(m, peer_start, EV_START, -1);
  MLY_AWAIT_AT(m, peer_ask, EV_ASK, -1);
  mly_reply(m, mly_current_event(m), EV_ANSWER, NULL);
  MLY_END(m);
}

static const mly_type_def wait_defs[] = {
    {.name = "waiter", .run = waiter_run, MLY_TYPE_POINTS(waiter),
     .data_size = sizeof(waiter), .version = 1, .flags = MLY_TYPE_DURABLE},
    {.name = "plain", .run = plain_run, .version = 1},
    {.name = "peer", .run = peer_run, MLY_TYPE_POINTS(peer), .version = 1,
     .flags = MLY_TYPE_DURABLE},
};

START_TEST(t_lost_waits_end_with_elost) {
  fresh_dir();
  memset(waiter_end, 0, sizeof waiter_end);
  waiters_ended = 0;
  mly_runtime *rt = open_with(wait_defs, 3, NULL);
  mly_type *wt = mly_type_find(rt, "waiter");
  mly_type *plain = mly_type_find(rt, "plain");
  mly_type *peer = mly_type_find(rt, "peer");
  mly_id target = h_spawn(rt, plain, NULL, 0);      /* not durable */
  mly_id live_peer = h_spawn(rt, peer, NULL, 0);    /* durable */
  waiter ws[] = {
      {.kind = 0},                                   /* its child        */
      {.kind = 1},                                   /* any child        */
      {.kind = 2, .other = target},                  /* request: plain   */
      {.kind = 2, .other = live_peer},               /* request: durable */
      {.kind = 3, .ev = MLY_EV_PROCESS_EXIT},        /* a child process  */
      {.kind = 3, .ev = MLY_EV_SIGNAL(SIGUSR2)},     /* a signal         */
  };
  size_t nw = sizeof ws / sizeof ws[0];
  mly_id ids[8];
  for (size_t i = 0; i < nw; i++) ids[i] = h_spawn(rt, wt, &ws[i], sizeof ws[i]);
  /* every one at its wait: the waiters, the two plain children, the
   * plain target and the peer */
  RUN_UNTIL(rt, steps_of(rt) >= nw + 4, 1000);
  ck_assert_int_eq(waiters_ended, 0); /* all of them wait */
  mly_runtime_close(rt);

  rt = open_with(wait_defs, 3, NULL);
  ck_assert_uint_eq(jstats(rt).recovered, nw + 1);
  ck_assert_int_eq(mly_runtime_send(rt, live_peer, EV_START, NULL), 0);
  run_until_empty(rt, 200); /* none of them hangs */
  ck_assert_int_eq(waiters_ended, (int)nw);
  for (size_t i = 0; i < nw; i++) {
    int32_t want = i == 3 ? EV_ANSWER : MLY_ELOST;
    ck_assert_msg(waiter_end[ids[i] & 7] == want, "waiter %zu: %d, want %d",
                  i, waiter_end[ids[i] & 7], want);
  }
  mly_runtime_close(rt);
}
END_TEST

/* What does come back satisfies the wait as before: a durable child. */
START_TEST(t_durable_child_wait_stands) {
  fresh_dir();
  family_status = 1;
  mly_runtime *rt = open_with(&fam_def, 1, NULL);
  family parent = {.role = 1};
  mly_id p = h_spawn(rt, mly_type_find(rt, "fam"), &parent, sizeof parent);
  family *pd = mly_instance_data(rt, p);
  RUN_UNTIL(rt, pd->child != 0, 1000);
  mly_id child = pd->child;
  mly_runtime_close(rt);
  rt = open_with(&fam_def, 1, NULL);
  run_turns(rt, 10); /* a lost wait would wake and end it */
  ck_assert_uint_eq(h_stat_live(rt), 2); /* still waiting, not lost */
  ck_assert_int_eq(mly_runtime_send(rt, child, EV_STOP, NULL), 0);
  run_until_empty(rt, 100);
  ck_assert_int_eq(family_status, 5);
  mly_runtime_close(rt);
}
END_TEST

/* ---- a point without code is parked at open ---- */

/* Version 1 waits at `second`; version 2 keeps the name in its list, but
 * no wait uses it any more (an attempted rename). */
#define TWO_POINTS(X) X(two, first) X(two, second) X(two, tidy) X(two, renamed)
MLY_POINTS(two, TWO_POINTS);
static int two_v1(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT_AT(m, two_first, EV_START, -1);
  MLY_AWAIT_AT(m, two_second, EV_STOP, -1);
  MLY_END(m);
}
static int two_v2(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT_AT(m, two_first, EV_START, -1);
  MLY_AWAIT_AT(m, two_renamed, EV_STOP, -1); /* was `second` */
  MLY_END(m);
}
/* The shutdown routine has its own points. */
static int two_shutdown(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT_AT(m, two_tidy, EV_STOP, -1);
  MLY_END(m);
}

static mly_type_def two_def(mly_fn run) {
  return (mly_type_def){.name = "two", .run = run, .shutdown = two_shutdown,
                        MLY_TYPE_POINTS(two), .version = 1,
                        .flags = MLY_TYPE_DURABLE};
}

START_TEST(t_point_without_code_is_parked) {
  fresh_dir();
  mly_type_def v1 = two_def(two_v1), v2 = two_def(two_v2);
  mly_runtime *rt = open_with(&v1, 1, NULL);
  mly_type *t = mly_type_find(rt, "two");
  mly_id at_second = h_spawn(rt, t, NULL, 0);
  mly_id at_first = h_spawn(rt, t, NULL, 0);
  mly_id in_tidy = h_spawn(rt, t, NULL, 0);
  RUN_UNTIL(rt, steps_of(rt) >= 3, 1000);
  ck_assert_int_eq(mly_runtime_send(rt, at_second, EV_START, NULL), 0);
  ck_assert_int_eq(mly_shutdown(rt, in_tidy), 0); /* into its routine */
  RUN_UNTIL(rt, steps_of(rt) >= 5, 1000);
  mly_runtime_close(rt);

  rt = open_with(&v2, 1, NULL);
  char parked[1024];
  parked_text(rt, parked);
  ck_assert_msg(strstr(parked, "|two|second|yield point 'second' of type "
                               "'two' has no code in this version"),
                "%s", parked);
  ck_assert_uint_eq(jstats(rt).parked, 1);
  ck_assert_uint_eq(jstats(rt).recovered, 2); /* `first`, and `tidy` */
  ck_assert_ptr_null(mly_instance_data(rt, at_second));
  ck_assert_ptr_nonnull(mly_instance_data(rt, at_first));
  ck_assert_ptr_nonnull(mly_instance_data(rt, in_tidy));
  /* no step fails silently: the two that came back run on */
  ck_assert_int_eq(mly_runtime_send(rt, at_second, EV_STOP, NULL), MLY_ESRCH);
  ck_assert_int_eq(mly_runtime_send(rt, at_first, EV_START, NULL), 0);
  RUN_UNTIL(rt, steps_of(rt) >= 1, 1000);
  ck_assert_uint_eq(h_stat_live(rt), 2);
  mly_runtime_close(rt);

  /* the code that has it resumes it; the one v2 moved on to `renamed`
   * is parked in its turn */
  rt = open_with(&v1, 1, NULL);
  parked_text(rt, parked);
  ck_assert_msg(strstr(parked, "|two|renamed|yield point 'renamed' of type "
                               "'two' has no code"), "%s", parked);
  ck_assert_uint_eq(jstats(rt).parked, 1);
  ck_assert_int_eq(mly_runtime_send(rt, at_second, EV_STOP, NULL), 0);
  ck_assert_int_eq(mly_runtime_send(rt, in_tidy, EV_STOP, NULL), 0);
  RUN_UNTIL(rt, h_stat_live(rt) == 0, 1000);
  ck_assert_ptr_null(mly_instance_data(rt, at_second)); /* ended */
  ck_assert_ptr_null(mly_instance_data(rt, in_tidy));
  mly_runtime_close(rt);
}
END_TEST

/* A parked parent parks its durable children with it. */
START_TEST(t_parked_parent_parks_children) {
  fresh_dir();
  mly_runtime *rt = open_with(&fam_def, 1, NULL);
  family parent = {.role = 1};
  mly_id p = h_spawn(rt, mly_type_find(rt, "fam"), &parent, sizeof parent);
  family *pd = mly_instance_data(rt, p);
  RUN_UNTIL(rt, pd->child != 0, 1000);
  mly_id child = pd->child;
  mly_runtime_close(rt);

  /* code without the parent's point: the parent is parked, and the
   * child with it (else it could end unseen by its parent) */
  mly_type_def v2 = fam_def;
  v2.run = fam_run_nochild;
  rt = open_with(&v2, 1, NULL);
  char parked[1024];
  parked_text(rt, parked);
  char want[128];
  snprintf(want, sizeof want, "%llu|fam|", (unsigned long long)child);
  ck_assert_msg(strstr(parked, want), "%s", parked);
  snprintf(want, sizeof want, "|its parent %llu is parked",
           (unsigned long long)p);
  ck_assert_msg(strstr(parked, want), "%s", parked);
  ck_assert_msg(strstr(parked, "|fam|child|yield point 'child' of type 'fam' "
                               "has no code"), "%s", parked);
  ck_assert_uint_eq(jstats(rt).parked, 2);
  ck_assert_uint_eq(h_stat_live(rt), 0);
  mly_runtime_close(rt);

  family_status = 1;
  rt = open_with(&fam_def, 1, NULL);
  ck_assert_uint_eq(jstats(rt).recovered, 2);
  ck_assert_int_eq(mly_runtime_send(rt, child, EV_STOP, NULL), 0);
  run_until_empty(rt, 100);
  ck_assert_int_eq(family_status, 5);
  mly_runtime_close(rt);
}
END_TEST

/* ---- the invariant, against a model ---- */

/* A small deterministic generator (no global state in the library; this
 * is the test's own). */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng % n);
}

typedef struct model_answers {
  uint64_t n, bad;
} model_answers;
static void model_cb(mly_runtime *rt, int status, void *arg) {
  (void)rt;
  model_answers *a = arg;
  a->n++;
  a->bad += status != 0;
}

/* Every named sink holds its name (running or parked): lookups find it,
 * a spawn of it is refused. */
static void check_names(mly_runtime *rt, mly_type *t, const mly_id *ids,
                        char (*names)[MLY_INSTANCE_NAME_MAX + 1], size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (names[i][0] == '\0') continue;
    mly_name_info ni;
    ck_assert_int_eq(mly_name_lookup(rt, names[i], &ni), 0);
    ck_assert_int_eq(ni.state, MLY_NAME_LIVE);
    ck_assert_uint_eq(ni.id, ids[i]);
    mly_spawn_options o = {.name = names[i]};
    ck_assert_int_eq(mly_spawn_opts(rt, t, &o, NULL), MLY_EEXIST);
  }
}

START_TEST(t_random_runs_lose_nothing) {
  fresh_dir();
  reset();
  rng = 0x9e3779b97f4a7c15ull * (uint64_t)(_i + 1);
  /* the model: every sink, the version of the code that made it (code of
   * one version parks the sinks of the other), every event sent */
  enum { MAXS = 48 };
  mly_id sinks[MAXS];
  uint32_t sver[MAXS];
  char names[MAXS][MLY_INSTANCE_NAME_MAX + 1]; /* "" unnamed */
  size_t nsinks = 0;
  uint64_t nseq = 0, nposted = 0, nasked = 0;
  model_answers answers = {0};
  for (int run = 0; run < 12; run++) {
    uint32_t cv = 1 + rnd(2);
    mly_type_def def = sink_def(cv, cv);
    mly_runtime *rt = open_stoppable(&def, 1);
    size_t mine = 0;
    for (size_t i = 0; i < nsinks; i++) mine += sver[i] == cv;
    mly_journal_stats st = jstats(rt);
    ck_assert_uint_eq(st.recovered, mine);         /* each continues */
    ck_assert_uint_eq(st.parked, nsinks - mine);   /* or is parked */
    mly_type *t = mly_type_find(rt, "sink");
    check_names(rt, t, sinks, names, nsinks); /* running or parked: held */
    for (int op = 0; op < 40; op++) {
      uint32_t what = rnd(10), pick = nsinks ? rnd((uint32_t)nsinks) : 0;
      if ((what == 0 || mine == 0) && nsinks < MAXS) {
        sink arg = {.wait_start = 0};
        /* a given name, a generated one or none; a context or none */
        mly_spawn_options o = {.arg = &arg, .arg_len = sizeof arg,
                               .name_out = names[nsinks],
                               .name_out_len = sizeof names[nsinks]};
        char given[32];
        snprintf(given, sizeof given, "sink-%zu", nsinks);
        uint32_t naming = rnd(3);
        if (naming == 0) o.name = given;
        o.generate_name = naming == 1;
        if (rnd(2)) o.context = mly_value_map();
        mly_id id = 0;
        ck_assert_int_eq(mly_spawn_opts(rt, t, &o, &id), 0);
        for (size_t i = 0; i < nsinks; i++) /* no slot is taken twice */
          ck_assert_uint_ne((uint32_t)id, (uint32_t)sinks[i]);
        sver[nsinks] = cv;
        sinks[nsinks++] = id;
        mine++;
      } else if (what < 8 && nseq < NSEQ && mine > 0) {
        while (sver[pick] != cv) pick = (pick + 1) % (uint32_t)nsinks;
        if (what < 2 && names[pick][0]) { /* by name, journaled at once */
          mly_name_info ni;
          ck_assert_int_eq(mly_name_lookup(rt, names[pick], &ni), 0);
          ck_assert_int_eq(ni.state, MLY_NAME_LIVE);
          send_go(rt, ni.id, nseq++);
        } else if (what < 4) { /* journaled at once */
          send_go(rt, sinks[pick], nseq++);
        } else if (what < 6) { /* journaled, and answered */
          ck_assert_int_eq(mly_post_durable(rt, sinks[pick], EV_GO,
                                            mly_value_uint(nseq++), model_cb,
                                            &answers), 0);
          nposted++;
          nasked++;
        } else { /* journaled when the stop or close comes */
          ck_assert_int_eq(mly_post(rt, sinks[pick], EV_GO,
                                    mly_value_uint(nseq++)), 0);
          nposted++;
        }
      } else {
        run_turns(rt, (int)rnd(3));
      }
    }
    mly_stats rs;
    RUN_UNTIL(rt, (mly_runtime_stats(rt, &rs), rs.posted == nposted) &&
                      answers.n == nasked, 1000);
    ck_assert_int_eq(answers.bad, 0); /* every durable post accepted */
    nposted = nasked = 0;
    answers = (model_answers){0};
    if (rnd(2)) mly_runtime_close(rt); /* how this run ends */
    else clean_stop(rt);
  }
  /* code that takes both versions: every sink back, every event once */
  mly_type_def v = sink_def(2, 1);
  mly_runtime *rt = open_with(&v, 1, NULL);
  ck_assert_uint_eq(jstats(rt).parked, 0);
  ck_assert_uint_eq(jstats(rt).recovered, nsinks);
  check_names(rt, mly_type_find(rt, "sink"), sinks, names, nsinks);
  for (size_t i = 0; i < nsinks; i++) {
    const mly_value *c = mly_instance_context(rt, sinks[i]);
    const sink *d = mly_instance_data(rt, sinks[i]);
    uint64_t taken = 0;
    if (c && mly_value_len(c)) /* the context counts what the data counts */
      ck_assert(mly_map_get_uint(c, "taken", &taken) == 0 &&
                taken == d->taken);
    ck_assert_int_eq(mly_runtime_send(rt, sinks[i], EV_STOP, NULL), 0);
  }
  run_until_empty(rt, 100000);
  ck_assert_uint_eq(stops, nsinks);
  for (size_t i = 0; i < nsinks; i++) { /* ended: tombstones */
    mly_name_info ni;
    if (names[i][0] == '\0') continue;
    ck_assert_int_eq(mly_name_lookup(rt, names[i], &ni), 0);
    ck_assert_int_eq(ni.state, MLY_NAME_ENDED);
    ck_assert_uint_eq(ni.id, sinks[i]);
  }
  for (uint64_t q = 0; q < nseq; q++)
    ck_assert_msg(seen[q] == 1, "event %llu delivered %u times",
                  (unsigned long long)q, seen[q]);
  mly_runtime_close(rt);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("durable_life");
  TCase *c = tcase_create("core");
  tcase_add_test(c, t_parked_keeps_its_slot);
  tcase_add_test(c, t_clean_stop_keeps_the_inbox);
  tcase_add_test(c, t_clean_stop_keeps_plain_posts);
  tcase_add_test(c, t_clean_stop_keeps_durable_children);
  h_tcase_add_journal_only(c, t_no_compaction_after_a_stop);
  tcase_add_test(c, t_post_while_stopping);
  h_tcase_add_journal_only(c, t_post_sync_fails_unknown);
  h_tcase_add_journal_only(c, t_post_write_fails_not_accepted);
  h_tcase_add_journal_only(c, t_post_short_write_splits);
  tcase_add_test(c, t_lost_waits_end_with_elost);
  tcase_add_test(c, t_durable_child_wait_stands);
  tcase_add_test(c, t_point_without_code_is_parked);
  tcase_add_test(c, t_parked_parent_parks_children);
  tcase_add_loop_test(c, t_random_runs_lose_nothing, 0, 8);
  suite_add_tcase(s, c);
  return s;
}

H_MAIN(suite)
