/*
 * test_coro.c - the body macros and every kind of wait.
 *
 * Each test drives real machines on a real loop and checks what they did:
 * the order they ran in, what their waits returned, what introspection
 * reports.  No test asserts a duration; timers are checked for order and
 * for never firing early.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>

typedef struct trace {
  char log[256];
  size_t n;
  int turn;        /* loop turns seen by a uv_check handle */
  int turns[16];
  int nturns;
  uint64_t fired_at[8];
} trace;

static void trace_add(trace *t, char c) {
  if (t->n + 1 < sizeof t->log) t->log[t->n++] = c;
}

/* ---- yield: one step per loop turn ---- */

typedef struct yielder {
  trace *t;
  char name;
  int i;
} yielder;

static int yielder_run(mly_machine *m, void *data) {
  yielder *y = data;
  MLY_BEGIN(m);
  for (y->i = 0; y->i < 3; y->i++) {
    trace_add(y->t, y->name);
    if (y->name == 'A' && y->t->nturns < 16) y->t->turns[y->t->nturns++] = y->t->turn;
    MLY_YIELD(m);
  }
  MLY_END(m);
}

static void count_turn(uv_check_t *h) { ((trace *)h->data)->turn++; }

START_TEST(yield_runs_once_per_turn) {
  mly_runtime *rt = h_runtime();
  trace t = {0};
  uv_check_t chk;
  uv_check_init(mly_runtime_loop(rt), &chk);
  chk.data = &t;
  uv_check_start(&chk, count_turn);
  uv_unref((uv_handle_t *)&chk);
  mly_type *ty = h_type(rt, &(mly_type_def){.name = "y", .run = yielder_run,
                                            .data_size = sizeof(yielder)});
  h_spawn(rt, ty, &(yielder){&t, 'A', 0}, sizeof(yielder));
  h_spawn(rt, ty, &(yielder){&t, 'B', 0}, sizeof(yielder));
  h_run(rt);
  t.log[t.n] = 0;
  ck_assert_str_eq(t.log, "ABABAB");
  ck_assert_int_eq(t.nturns, 3);
  ck_assert_int_lt(t.turns[0], t.turns[1]);
  ck_assert_int_lt(t.turns[1], t.turns[2]);
  uv_close((uv_handle_t *)&chk, NULL);
  mly_runtime_close(rt);
}
END_TEST

/* ---- sleep: order by deadline, FIFO on ties, never early ---- */

typedef struct sleeper {
  trace *t;
  char name;
  uint64_t ms, start;
} sleeper;

#define SLEEPER_POINTS(X) X(sleeper, napping)
MLY_POINTS(sleeper, SLEEPER_POINTS);

static int sleeper_run(mly_machine *m, void *data) {
  sleeper *s = data;
  MLY_BEGIN(m);
  s->start = uv_hrtime();
  MLY_SLEEP_AT(m, sleeper_napping, s->ms);
  ck_assert_uint_ge(uv_hrtime(), s->start + s->ms * 1000000u); /* never early */
  trace_add(s->t, s->name);
  MLY_END(m);
}

START_TEST(sleep_fires_in_deadline_order) {
  mly_runtime *rt = h_runtime();
  trace t = {0};
  mly_type *ty = h_type(rt, &(mly_type_def){.name = "s", .run = sleeper_run,
                                            MLY_TYPE_POINTS(sleeper),
                                            .data_size = sizeof(sleeper)});
  const uint64_t ms[] = {50, 10, 30, 10, 20};
  for (int i = 0; i < 5; i++)
    h_spawn(rt, ty, &(sleeper){&t, (char)('0' + i), ms[i], 0}, sizeof(sleeper));
  h_run(rt);
  t.log[t.n] = 0;
  ck_assert_str_eq(t.log, "13420");
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.timers_fired, 5);
  mly_runtime_close(rt);
}
END_TEST

/* ---- wait until: re-tested on wake, events and mly_wake ---- */

typedef struct waiter {
  int *flag;
  int tests;
  bool done;
} waiter;

static int waiter_cond(waiter *w) {
  w->tests++;
  return *w->flag;
}

static int waiter_run(mly_machine *m, void *data) {
  waiter *w = data;
  MLY_BEGIN(m);
  MLY_WAIT_UNTIL(m, waiter_cond(w));
  w->done = true;
  MLY_SLEEP(m, 1000000); /* stay alive for inspection */
  MLY_END(m);
}

START_TEST(wait_until_retests_on_wake) {
  mly_runtime *rt = h_runtime();
  int flag = 0;
  mly_type *ty = h_type(rt, &(mly_type_def){.name = "w", .run = waiter_run,
                                            .data_size = sizeof(waiter)});
  mly_id id = h_spawn(rt, ty, &(waiter){&flag, 0, false}, sizeof(waiter));
  h_turn(rt);
  mly_info info;
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_str_eq(info.waiting, "condition");
  ck_assert_int_eq(info.lifecycle, MLY_LC_READY);
  ck_assert_int_eq(mly_wake(rt, id), 0); /* still false */
  h_turn(rt);
  ck_assert_int_eq(mly_runtime_send(rt, id, 7, NULL), 0); /* also a wake */
  h_turn(rt);
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_str_eq(info.waiting, "condition");
  flag = 1;
  ck_assert_int_eq(mly_wake(rt, id), 0);
  h_turn(rt);
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_str_eq(info.waiting, "timer");
  ck_assert_uint_eq(info.inbox, 1); /* the event 7 was not consumed */
  mly_runtime_close(rt);
}
END_TEST

/* ---- await: event, timeout, and a timer that lost the race ---- */

typedef struct awaiter {
  uint32_t want;
  int64_t timeout;
  int resumes;
  bool timed_out[4];
  int64_t got[4];
  int n;
} awaiter;

#define AWAITER_POINTS(X) X(awaiter, first) X(awaiter, second)
MLY_POINTS(awaiter, AWAITER_POINTS);

static void awaiter_note(mly_machine *m, awaiter *a) {
  const mly_event *e = mly_current_event(m);
  a->timed_out[a->n] = mly_timed_out(m);
  int64_t v = -1;
  if (e && e->payload) ck_assert_int_eq(mly_value_get_int(e->payload, &v), 0);
  a->got[a->n++] = e ? v : -2;
}

static int awaiter_run(mly_machine *m, void *data) {
  awaiter *a = data;
  a->resumes++;
  MLY_BEGIN(m);
  MLY_AWAIT_AT(m, awaiter_first, a->want, a->timeout);
  awaiter_note(m, a);
  MLY_AWAIT_AT(m, awaiter_second, 2, -1);
  awaiter_note(m, a);
  MLY_END(m);
}

static mly_id g_target;

static void send_two(uv_timer_t *h) {
  ck_assert_int_eq(mly_runtime_send(h->data, g_target, 2, mly_value_int(22)), 0);
}

START_TEST(await_event_beats_timeout) {
  mly_runtime *rt = h_runtime();
  mly_type *ty = h_type(rt, &(mly_type_def){.name = "a", .run = awaiter_run,
                                            MLY_TYPE_POINTS(awaiter),
                                            .data_size = sizeof(awaiter)});
  mly_id id = h_spawn(rt, ty, &(awaiter){.want = 1, .timeout = 30},
                      sizeof(awaiter));
  h_turn(rt); /* it waits at `first` with a 30 ms timer */
  mly_info info;
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_str_eq(info.point, "first");
  ck_assert_int_ge(info.timer_left_ms, 0);
  ck_assert_int_le(info.timer_left_ms, 30);
  ck_assert_int_eq(mly_runtime_send(rt, id, 1, mly_value_int(11)), 0);
  h_turn(rt);
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_str_eq(info.point, "second");
  ck_assert_int_eq(info.timer_left_ms, -1); /* the timer is gone */
  /* let the old deadline pass well before the second event comes */
  uv_timer_t tm;
  uv_timer_init(mly_runtime_loop(rt), &tm);
  tm.data = rt;
  g_target = id;
  uv_timer_start(&tm, send_two, 80, 0);
  h_run(rt);
  uv_close((uv_handle_t *)&tm, NULL);
  /* spawn-step, event 1, event 2: the old timer woke nobody */
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.timers_fired, 0);
  ck_assert_uint_eq(st.steps, 3);
  mly_runtime_close(rt);
}
END_TEST

static int timeout_only_run(mly_machine *m, void *data) {
  awaiter *a = data;
  MLY_BEGIN(m);
  MLY_AWAIT(m, a->want, a->timeout);
  awaiter_note(m, a);
  MLY_EXIT(m, a->timed_out[0] ? 0 : 1);
  MLY_END(m);
}

typedef struct parent_of_one {
  mly_type *child_type;
  const void *arg;
  size_t len;
  mly_id child;
  int64_t *out; /* status, aux */
} parent_of_one;

static int parent_run(mly_machine *m, void *data) {
  parent_of_one *p = data;
  MLY_BEGIN(m);
  ck_assert_int_eq(mly_spawn_child(m, p->child_type, p->arg, p->len, &p->child), 0);
  MLY_AWAIT(m, MLY_EV_CHILD_EXIT, -1);
  p->out[0] = mly_current_event(m)->status;
  p->out[1] = mly_current_event(m)->aux;
  ck_assert_uint_eq(mly_current_event(m)->from, p->child);
  MLY_END(m);
}

static mly_type *parent_type(mly_runtime *rt) {
  return h_type(rt, &(mly_type_def){.name = "parent", .run = parent_run,
                                    .data_size = sizeof(parent_of_one)});
}

START_TEST(await_times_out) {
  mly_runtime *rt = h_runtime();
  mly_type *ty = h_type(rt, &(mly_type_def){.name = "t", .run = timeout_only_run,
                                            .data_size = sizeof(awaiter)});
  awaiter arg = {.want = 5, .timeout = 10};
  int64_t out[2] = {-1, -1};
  parent_of_one p = {ty, &arg, sizeof arg, 0, out};
  mly_id pid = h_spawn(rt, parent_type(rt), &p, sizeof p);
  h_turn(rt);
  mly_info info;
  ck_assert_int_eq(mly_info_get(rt, pid, &info), 0);
  ck_assert_uint_eq(info.children, 1);
  h_run(rt);
  ck_assert_int_eq(out[0], 0); /* the child saw its timeout */
  ck_assert_int_eq(out[1], MLY_LC_TERMINATED);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.timers_fired, 1);
  ck_assert_uint_eq(st.live, 0);
  mly_runtime_close(rt);
}
END_TEST

/* ---- events queued before a wait are taken selectively, in order ---- */

typedef struct picker {
  int64_t got[4];
  size_t inbox_at_start;
} picker;

static int64_t payload_int(mly_machine *m) {
  int64_t v = -1;
  ck_assert_int_eq(mly_value_get_int(mly_current_event(m)->payload, &v), 0);
  return v;
}

static int picker_run(mly_machine *m, void *data) {
  picker *p = data;
  MLY_BEGIN(m);
  MLY_SLEEP(m, 5);
  p->inbox_at_start = mly_inbox_len(m);
  MLY_AWAIT(m, 3, 0); /* already there: no yield, no timeout */
  ck_assert(!mly_timed_out(m));
  p->got[0] = payload_int(m);
  MLY_AWAIT(m, 1, -1);
  p->got[1] = payload_int(m);
  MLY_AWAIT(m, 1, -1);
  p->got[2] = payload_int(m);
  MLY_AWAIT(m, MLY_EV_ANY, -1);
  p->got[3] = payload_int(m);
  if (p->got[0] != 30 || p->got[1] != 10 || p->got[2] != 11 || p->got[3] != 20)
    MLY_EXIT(m, 1);
  MLY_EXIT(m, p->inbox_at_start == 4 ? 0 : 2);
  MLY_END(m);
}

typedef struct find_other {
  mly_id known, other;
} find_other;

static int find_other_cb(const mly_info *i, void *arg) {
  find_other *f = arg;
  if (i->id != f->known) f->other = i->id;
  return 0;
}

START_TEST(events_queued_before_wait) {
  mly_runtime *rt = h_runtime();
  mly_type *ty = h_type(rt, &(mly_type_def){.name = "p", .run = picker_run,
                                            .data_size = sizeof(picker)});
  int64_t out[2] = {-1, -1};
  parent_of_one p = {ty, NULL, 0, 0, out};
  mly_type *pt = parent_type(rt);
  mly_id parent = h_spawn(rt, pt, &p, sizeof p);
  h_turn(rt); /* parent spawned the child */
  h_turn(rt); /* child sleeps */
  mly_info info;
  ck_assert_int_eq(mly_info_get(rt, parent, &info), 0);
  ck_assert_uint_eq(info.children, 1);
  /* find the child: the only other instance */
  find_other f = {parent, 0};
  ck_assert_int_eq(mly_foreach(rt, find_other_cb, &f), 0);
  ck_assert_uint_ne(f.other, 0);
  ck_assert_int_eq(mly_runtime_send(rt, f.other, 1, mly_value_int(10)), 0);
  ck_assert_int_eq(mly_runtime_send(rt, f.other, 2, mly_value_int(20)), 0);
  ck_assert_int_eq(mly_runtime_send(rt, f.other, 1, mly_value_int(11)), 0);
  ck_assert_int_eq(mly_runtime_send(rt, f.other, 3, mly_value_int(30)), 0);
  h_run(rt);
  ck_assert_int_eq(out[0], 0); /* picked in the order asked, all 4 queued */
  mly_runtime_close(rt);
}
END_TEST

/* ---- child status and lifecycle of the end ---- */

typedef struct exiter {
  int status;
} exiter;

static int exiter_run(mly_machine *m, void *data) {
  exiter *e = data;
  MLY_BEGIN(m);
  MLY_SLEEP(m, 1);
  MLY_EXIT(m, e->status);
  MLY_END(m);
}

typedef struct child_waiter {
  mly_type *ct;
  mly_id child;
  int status, bogus_status;
  int *out;
} child_waiter;

static int child_waiter_run(mly_machine *m, void *data) {
  child_waiter *w = data;
  MLY_BEGIN(m);
  ck_assert_int_eq(mly_spawn_child(m, w->ct, &(exiter){7}, sizeof(exiter), &w->child), 0);
  MLY_AWAIT_CHILD(m, w->child, &w->status);
  MLY_AWAIT_CHILD(m, 12345, &w->bogus_status);
  w->out[0] = w->status;
  w->out[1] = w->bogus_status;
  MLY_END(m);
}

START_TEST(await_child_gets_status) {
  mly_runtime *rt = h_runtime();
  int out[2] = {0, 0};
  mly_type *ct = h_type(rt, &(mly_type_def){.name = "exiter", .run = exiter_run,
                                            .data_size = sizeof(exiter)});
  mly_type *wt = h_type(rt, &(mly_type_def){.name = "cw", .run = child_waiter_run,
                                            .data_size = sizeof(child_waiter)});
  h_spawn(rt, wt, &(child_waiter){ct, 0, -1, -1, out}, sizeof(child_waiter));
  h_run(rt);
  ck_assert_int_eq(out[0], 7);
  ck_assert_int_eq(out[1], MLY_ESRCH);
  mly_runtime_close(rt);
}
END_TEST

/* ---- a point the code does not have is an error, not a jump ---- */

static int corrupt_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  m->pc = 4242; /* as if restored from an older version of the code */
  return MLY_YIELDED;
  MLY_END(m);
}

typedef struct status_box {
  mly_type *ct;
  int status;
  int *out;
} status_box;

static int boxer_run(mly_machine *m, void *data) {
  status_box *b = data;
  mly_id c;
  MLY_BEGIN(m);
  ck_assert_int_eq(mly_spawn_child(m, b->ct, NULL, 0, &c), 0);
  MLY_AWAIT(m, MLY_EV_CHILD_EXIT, -1);
  b->out[0] = (int)mly_current_event(m)->status;
  b->out[1] = (int)mly_current_event(m)->aux;
  MLY_END(m);
}

START_TEST(unknown_point_fails_instance) {
  mly_runtime *rt = h_runtime();
  int out[2] = {0, 0};
  mly_type *ct = h_type(rt, &(mly_type_def){.name = "corrupt", .run = corrupt_run});
  mly_type *bt = h_type(rt, &(mly_type_def){.name = "box", .run = boxer_run,
                                            .data_size = sizeof(status_box)});
  h_spawn(rt, bt, &(status_box){ct, 0, out}, sizeof(status_box));
  h_run(rt);
  ck_assert_int_eq(out[0], MLY_ENOENT);
  ck_assert_int_eq(out[1], MLY_LC_FAILED);
  mly_runtime_close(rt);
}
END_TEST

/* ---- named events ---- */

static int named_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT_NAME(m, "config", -1);
  MLY_EXIT(m, mly_current_event(m) ? 0 : 1);
  MLY_END(m);
}

START_TEST(await_by_name) {
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){.name = "named", .run = named_run});
  mly_id id = h_spawn(rt, t, NULL, 0);
  h_turn(rt);
  mly_info info;
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_str_eq(info.waiting, "event config");
  ck_assert_ptr_nonnull(strstr(info.point, "line "));
  uint32_t ev = 0, ev2 = 0;
  ck_assert_int_eq(mly_event_id(rt, "config", &ev), 0);
  ck_assert_int_eq(mly_event_id(rt, "config", &ev2), 0);
  ck_assert_uint_eq(ev, ev2);
  ck_assert_uint_gt(ev, MLY_EV_USER_MAX);
  ck_assert_str_eq(mly_event_name(rt, ev), "config");
  ck_assert_int_eq(mly_runtime_send(rt, id, ev, NULL), 0);
  h_run(rt);
  ck_assert_uint_eq(h_stat_live(rt), 0);
  mly_runtime_close(rt);
}
END_TEST

static int long_name_run(mly_machine *m, void *data) {
  const char *name = *(const char **)data;
  MLY_BEGIN(m);
  MLY_AWAIT_NAME(m, name, -1);
  MLY_END(m);
}

/* ---- API misuse is an error value ---- */

START_TEST(misuse_returns_errors) {
  mly_runtime *rt = h_runtime();
  mly_type *t = NULL;
  char longname[MLY_NAME_MAX + 2];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  ck_assert_int_eq(mly_type_register(rt, &(mly_type_def){.name = longname, .run = named_run}, &t), MLY_ENAMETOOLONG);
  ck_assert_int_eq(mly_type_register(rt, &(mly_type_def){.name = "ok", .run = NULL}, &t), MLY_EINVAL);
  ck_assert_int_eq(mly_type_register(rt, &(mly_type_def){.name = "bad name", .run = named_run}, &t), MLY_EINVAL);
  ck_assert_int_eq(mly_type_register(rt, &(mly_type_def){.name = "ok", .run = named_run}, &t), 0);
  ck_assert_int_eq(mly_type_register(rt, &(mly_type_def){.name = "ok", .run = named_run}, NULL), MLY_EEXIST);
  ck_assert_ptr_eq(mly_type_find(rt, "ok"), t);
  ck_assert_ptr_null(mly_type_find(rt, "nope"));
  mly_id id;
  ck_assert_int_eq(mly_spawn(rt, NULL, NULL, 0, &id), MLY_EINVAL);
  ck_assert_int_eq(mly_spawn(rt, t, "x", 1, &id), MLY_EINVAL); /* no data */
  ck_assert_int_eq(mly_runtime_send(rt, 99, 1, NULL), MLY_ESRCH);
  ck_assert_int_eq(mly_runtime_send(rt, 99, MLY_EV_ANY, NULL), MLY_EINVAL);
  ck_assert_int_eq(mly_shutdown(rt, 1234), MLY_ESRCH);
  ck_assert_int_eq(mly_kill(rt, 1234), MLY_ESRCH);
  uint32_t ev;
  ck_assert_int_eq(mly_event_id(rt, "", &ev), MLY_EINVAL);
  ck_assert_int_eq(mly_event_id(rt, longname, &ev), MLY_ENAMETOOLONG);
  /* an out pointer that is NULL: an error, not a crash */
  ck_assert_int_eq(mly_event_id(rt, "fine", NULL), MLY_EINVAL);
  ck_assert_int_eq(mly_spawn(rt, t, NULL, 0, NULL), 0); /* id not wanted */
  mly_id live = 0;
  ck_assert_int_eq(mly_spawn(rt, t, NULL, 0, &live), 0);
  ck_assert_int_eq(mly_info_get(rt, live, NULL), MLY_EINVAL);
  mly_runtime_stats(rt, NULL);
  ck_assert_str_eq(mly_strerror(MLY_ESRCH), "no such instance, or it has ended");
  ck_assert_str_eq(mly_strerror(-99999), "unknown error");
  mly_runtime_close(rt);
}
END_TEST

/* ---- registration refuses what it can know; the rest fails early ---- */

START_TEST(registration_checks_points) {
  mly_runtime *rt = h_runtime();
  char longpt[MLY_POINT_MAX + 2], maxpt[MLY_POINT_MAX + 1];
  memset(longpt, 'p', sizeof longpt - 1);
  longpt[sizeof longpt - 1] = 0;
  memset(maxpt, 'q', sizeof maxpt - 1);
  maxpt[sizeof maxpt - 1] = 0;
  const char *const too_long[] = {"begin", longpt, NULL};
  const char *const just_fits[] = {"begin", maxpt, NULL};
  const char *const empty[] = {"begin", "", NULL};
  const char *const twice[] = {"begin", "a", "b", "a", NULL};
  const char *const anon[] = {"begin", "line 12", NULL};
  const char *const ctrl[] = {"begin", "a\nb", NULL};
  const char *const del[] = {"begin", "a\x7f", NULL};
  const char *const nobegin[] = {"start", "a", NULL};
  const char *const late_begin[] = {"a", "begin", NULL};
  mly_type_def d = {.name = "p", .run = named_run};
  d.points = too_long, d.npoints = 2;
  ck_assert_int_eq(mly_type_register(rt, &d, NULL), MLY_ENAMETOOLONG);
  d.points = empty, d.npoints = 2;
  ck_assert_int_eq(mly_type_register(rt, &d, NULL), MLY_EINVAL);
  d.points = twice, d.npoints = 4;
  ck_assert_int_eq(mly_type_register(rt, &d, NULL), MLY_EEXIST);
  d.points = anon, d.npoints = 2;
  ck_assert_int_eq(mly_type_register(rt, &d, NULL), MLY_EINVAL);
  d.points = ctrl, d.npoints = 2;
  ck_assert_int_eq(mly_type_register(rt, &d, NULL), MLY_EINVAL);
  d.points = del, d.npoints = 2;
  ck_assert_int_eq(mly_type_register(rt, &d, NULL), MLY_EINVAL);
  d.points = nobegin, d.npoints = 2;
  ck_assert_int_eq(mly_type_register(rt, &d, NULL), MLY_EINVAL);
  d.points = late_begin, d.npoints = 2;
  ck_assert_int_eq(mly_type_register(rt, &d, NULL), MLY_EINVAL);
  /* flags this version does not know */
  ck_assert_int_eq(mly_type_register(rt, &(mly_type_def){.name = "f",
      .run = named_run, .flags = 0x4}, NULL), MLY_EINVAL);
  ck_assert_int_eq(mly_type_register(rt, &(mly_type_def){.name = "f",
      .run = named_run, .flags = 0x80000000u | MLY_TYPE_DROP_UNHANDLED},
      NULL), MLY_EINVAL);
  ck_assert_int_eq(mly_type_register(rt, &(mly_type_def){.name = "f",
      .run = named_run, .flags = MLY_TYPE_FLAGS_ALL, .points = just_fits,
      .npoints = 2},
      NULL), 0);
  uint32_t ev;
  ck_assert_int_eq(mly_event_id(rt, "a\nb", &ev), MLY_EINVAL);
  ck_assert_int_eq(mly_event_id(rt, "tab\there", &ev), MLY_EINVAL);
  /* a durable type must name its points: without a list every wait
   * would be anonymous, and could not be resumed after a restart */
  ck_assert_int_eq(mly_type_register(rt, &(mly_type_def){.name = "d",
      .run = named_run, .flags = MLY_TYPE_DURABLE}, NULL), MLY_EINVAL);
  d.points = just_fits, d.npoints = 2;
  ck_assert_int_eq(mly_type_register(rt, &d, NULL), 0);
  mly_runtime_close(rt);
}
END_TEST

#define MIXED_POINTS(X) X(mixed, named)
MLY_POINTS(mixed, MIXED_POINTS);

static int mixed_run(mly_machine *m, void *data) {
  int *steps = data;
  MLY_BEGIN(m);
  (*steps)++;
  MLY_SLEEP_AT(m, mixed_named, 1);
  (*steps)++;
  MLY_SLEEP(m, 1); /* anonymous: refused in a durable machine */
  (*steps)++;
  MLY_END(m);
}

START_TEST(durable_anonymous_wait_fails_at_once) {
  mly_runtime *rt = h_runtime();
  int out[2] = {0, 0};
  mly_type *ct = h_type(rt, &(mly_type_def){.name = "mixed", .run = mixed_run,
      MLY_TYPE_POINTS(mixed), .data_size = sizeof(int), .flags = MLY_TYPE_DURABLE});
  mly_type *bt = h_type(rt, &(mly_type_def){.name = "box", .run = boxer_run,
                                            .data_size = sizeof(status_box)});
  char dir[] = "/tmp/mly-anon-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  ck_assert_int_eq(h_durable_open(rt, &(mly_journal_options){
                       .dir = dir, .sync = MLY_SYNC_NEVER}, NULL, 0), 0);
  h_spawn(rt, bt, &(status_box){ct, 0, out}, sizeof(status_box));
  h_run(rt);
  ck_assert_int_eq(out[0], MLY_EINVAL); /* its child ended so, at once */
  ck_assert_int_eq(out[1], MLY_LC_FAILED);
  mly_journal_stats js;
  ck_assert_int_eq(mly_journal_stats_get(rt, &js), 0);
  mly_runtime_close(rt);
  /* nothing of it is left for the next open to park */
  rt = h_runtime();
  h_type(rt, &(mly_type_def){.name = "mixed", .run = mixed_run,
      MLY_TYPE_POINTS(mixed), .data_size = sizeof(int), .flags = MLY_TYPE_DURABLE});
  ck_assert_int_eq(h_durable_open(rt, &(mly_journal_options){.dir = dir},
                                    NULL, 0), 0);
  ck_assert_int_eq(mly_journal_stats_get(rt, &js), 0);
  ck_assert_uint_eq(js.recovered, 0);
  ck_assert_uint_eq(js.parked, 0);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

/* ---- a durable type refuses every anonymous wait, suspending or not ---- */

#define INSTANT_POINTS(X) X(instant, first)
MLY_POINTS(instant, INSTANT_POINTS);

typedef struct instant {
  int which;   /* which anonymous wait it reaches */
  mly_id peer; /* a live instance a refused request must not reach */
} instant;

enum { AN_UNTIL, AN_CHILD, AN_REQ_NONE, AN_REQ_PEER, AN_NAME, AN_SLEEP0,
       AN_YIELD, AN_AWAIT, AN_NKINDS };

static int instant_run(mly_machine *m, void *data) {
  instant *d = data;
  int st = 0;
  MLY_BEGIN(m);
  /* where they are allowed, the first six end at once, without a yield */
  if (d->which == AN_UNTIL) MLY_WAIT_UNTIL(m, 1);
  else if (d->which == AN_CHILD) MLY_AWAIT_CHILD(m, 12345, &st);
  else if (d->which == AN_REQ_NONE) MLY_REQUEST(m, 0, 7, NULL, 5);
  else if (d->which == AN_REQ_PEER)
    MLY_REQUEST(m, d->peer, 7, mly_value_str("never sent"), 5);
  else if (d->which == AN_NAME) MLY_AWAIT_NAME(m, "", 5); /* a bad name */
  else if (d->which == AN_SLEEP0) MLY_SLEEP(m, 0);
  else if (d->which == AN_YIELD) MLY_YIELD(m);
  else MLY_AWAIT(m, 3, 0);
  (void)st;
  MLY_END(m);
}

typedef struct sink {
  int *got;
} sink;

static int sink_run(mly_machine *m, void *data) {
  sink *c = data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_AWAIT(m, MLY_EV_ANY, -1);
    if (mly_current_event(m) == NULL) break;
    (*c->got)++;
  }
  MLY_END(m);
}

typedef struct instant_parent {
  mly_type *ct;
  mly_id peer;
  int which;
  int *out; /* the child's status and lifecycle */
} instant_parent;

static int instant_parent_run(mly_machine *m, void *data) {
  instant_parent *p = data;
  MLY_BEGIN(m);
  ck_assert_int_eq(mly_spawn_child(m, p->ct, &(instant){p->which, p->peer},
                                   sizeof(instant), NULL), 0);
  MLY_AWAIT(m, MLY_EV_CHILD_EXIT, -1);
  p->out[0] = (int)mly_current_event(m)->status;
  p->out[1] = (int)mly_current_event(m)->aux;
  MLY_END(m);
}

/* _i == 0: no journal (the type's flag decides); 1: with one. */
START_TEST(durable_instant_anonymous_waits_fail) {
  for (int which = 0; which < AN_NKINDS; which++) {
    char dir[] = "/tmp/mly-instant-XXXXXX";
    mly_runtime *rt = h_runtime();
    mly_type *ct = h_type(rt, &(mly_type_def){.name = "instant",
        .run = instant_run, MLY_TYPE_POINTS(instant),
        .data_size = sizeof(instant), .flags = MLY_TYPE_DURABLE});
    mly_type *pt = h_type(rt, &(mly_type_def){.name = "iparent",
        .run = instant_parent_run, .data_size = sizeof(instant_parent)});
    mly_type *st = h_type(rt, &(mly_type_def){.name = "sink",
        .run = sink_run, .data_size = sizeof(sink)});
    if (_i == 1) {
      ck_assert_ptr_nonnull(mkdtemp(dir));
      ck_assert_int_eq(h_durable_open(rt, &(mly_journal_options){
                           .dir = dir, .sync = MLY_SYNC_NEVER}, NULL, 0), 0);
    }
    int got = 0, out[2] = {99, -1};
    mly_id snk = h_spawn(rt, st, &(sink){&got}, sizeof(sink));
    h_spawn(rt, pt, &(instant_parent){ct, snk, which, out},
            sizeof(instant_parent));
    for (int i = 0; i < 10000 && out[0] == 99; i++)
      uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
    ck_assert_msg(out[0] == MLY_EINVAL, "wait %d: child ended with %d",
                  which, out[0]);
    ck_assert_int_eq(out[1], MLY_LC_FAILED);
    ck_assert_int_eq(got, 0); /* a refused request sent nothing */
    mly_runtime_close(rt);
    if (_i == 1) h_rmtree(dir);
  }
}
END_TEST

/* ---- MLY_AWAIT_CHILD with no status wanted ---- */

static int careless_run(mly_machine *m, void *data) {
  child_waiter *w = data;
  MLY_BEGIN(m);
  ck_assert_int_eq(mly_spawn_child(m, w->ct, &(exiter){7}, sizeof(exiter),
                                   &w->child), 0);
  MLY_AWAIT_CHILD(m, w->child, NULL);
  w->out[0] = 1;
  MLY_AWAIT_CHILD(m, 12345, NULL); /* no such child: at once */
  w->out[1] = mly_wait_error(m);
  MLY_END(m);
}

START_TEST(await_child_status_not_wanted) {
  mly_runtime *rt = h_runtime();
  int out[2] = {0, 0};
  mly_type *ct = h_type(rt, &(mly_type_def){.name = "exiter", .run = exiter_run,
                                            .data_size = sizeof(exiter)});
  mly_type *wt = h_type(rt, &(mly_type_def){.name = "careless",
      .run = careless_run, .data_size = sizeof(child_waiter)});
  h_spawn(rt, wt, &(child_waiter){ct, 0, -1, -1, out}, sizeof(child_waiter));
  h_run(rt);
  ck_assert_int_eq(out[0], 1);
  ck_assert_int_eq(out[1], MLY_ESRCH);
  ck_assert_uint_eq(h_stat_live(rt), 0);
  mly_runtime_close(rt);
}
END_TEST

/* ---- renaming a yield point the way mealy.h says ---- */

typedef struct order {
  uint32_t paid, resumed_old;
} order;

#define ORDER1_POINTS(X) X(order1, paying)
MLY_POINTS(order1, ORDER1_POINTS);

static int order1_run(mly_machine *m, void *data) {
  order *o = data;
  MLY_BEGIN(m);
  MLY_AWAIT_AT(m, order1_paying, 5, -1);
  o->paid = 1;
  MLY_END(m);
}

/* version 2: `paying` is now `charging`; the old wait stays, resumed only */
#define ORDER2_POINTS(X) X(order2, paying) X(order2, charging)
MLY_POINTS(order2, ORDER2_POINTS);

static int order2_run(mly_machine *m, void *data) {
  order *o = data;
  MLY_BEGIN(m);
  if (0) MLY_AWAIT_AT(m, order2_paying, 5, -1);
  else MLY_AWAIT_AT(m, order2_charging, 5, -1);
  if (mly_recovered(m)) o->resumed_old++;
  if (mly_current_event(m) == NULL) MLY_EXIT(m, 1);
  MLY_EXIT(m, 7);
  MLY_END(m);
}

START_TEST(renamed_point_resumes_persisted_instances) {
  char dir[] = "/tmp/mly-rename-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  mly_journal_options jo = {.dir = dir};
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){.name = "order", .run = order1_run,
      MLY_TYPE_POINTS(order1), .data_size = sizeof(order), .version = 1,
      .flags = MLY_TYPE_DURABLE});
  ck_assert_int_eq(h_durable_open(rt, &jo, NULL, 0), 0);
  mly_id id = h_spawn(rt, t, NULL, 0);
  mly_info info = {0};
  for (int i = 0; i < 5000; i++) { /* until committed, resting at paying */
    ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
    if (strcmp(info.point, "paying") == 0) break;
    uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  }
  ck_assert_str_eq(info.point, "paying");
  ck_assert_int_eq(mly_runtime_shutdown(rt, -1), 0); /* suspended */
  h_run(rt);
  mly_runtime_close(rt);

  rt = h_runtime();
  h_type(rt, &(mly_type_def){.name = "order", .run = order2_run,
      MLY_TYPE_POINTS(order2), .data_size = sizeof(order), .version = 2,
      .min_version = 1, .flags = MLY_TYPE_DURABLE});
  ck_assert_int_eq(h_durable_open(rt, &jo, NULL, 0), 0);
  mly_journal_stats js;
  ck_assert_int_eq(mly_journal_stats_get(rt, &js), 0);
  ck_assert_uint_eq(js.recovered, 1);
  ck_assert_uint_eq(js.parked, 0);
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_str_eq(info.point, "paying");
  order *o = mly_instance_data(rt, id);
  ck_assert_ptr_nonnull(o);
  ck_assert_int_eq(mly_runtime_send(rt, id, 5, NULL), 0);
  uint64_t before = 0;
  mly_stats st;
  mly_runtime_stats(rt, &st);
  before = st.steps;
  h_run(rt);
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.steps, before + 1); /* one step: the old wait ended */
  ck_assert_uint_eq(st.live, 0);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

/* ---- what mly_info says it waits for is never cut ---- */

START_TEST(waiting_text_holds_the_longest_name) {
  mly_runtime *rt = h_runtime();
  char name[MLY_NAME_MAX + 1], want[sizeof "event " + MLY_NAME_MAX];
  memset(name, 'n', MLY_NAME_MAX);
  name[MLY_NAME_MAX] = 0;
  snprintf(want, sizeof want, "event %s", name);
  mly_type *t = h_type(rt, &(mly_type_def){.name = "w", .run = long_name_run,
                                           .data_size = sizeof(char *)});
  const char *np = name;
  mly_id id = h_spawn(rt, t, &np, sizeof np);
  h_turn(rt);
  mly_info info;
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_str_eq(info.waiting, want);
  mly_runtime_close(rt);
}
END_TEST

static Suite *coro_suite(void) {
  Suite *s = suite_create("coro");
  TCase *tc = tcase_create("waits");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, yield_runs_once_per_turn);
  tcase_add_test(tc, sleep_fires_in_deadline_order);
  tcase_add_test(tc, wait_until_retests_on_wake);
  tcase_add_test(tc, await_event_beats_timeout);
  tcase_add_test(tc, await_times_out);
  tcase_add_test(tc, events_queued_before_wait);
  tcase_add_test(tc, await_child_gets_status);
  tcase_add_test(tc, unknown_point_fails_instance);
  tcase_add_test(tc, await_by_name);
  tcase_add_test(tc, misuse_returns_errors);
  tcase_add_test(tc, registration_checks_points);
  tcase_add_test(tc, durable_anonymous_wait_fails_at_once);
  tcase_add_loop_test(tc, durable_instant_anonymous_waits_fail, 0, 2);
  tcase_add_test(tc, await_child_status_not_wanted);
  tcase_add_test(tc, waiting_text_holds_the_longest_name);
  tcase_add_test(tc, renamed_point_resumes_persisted_instances);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(coro_suite)
