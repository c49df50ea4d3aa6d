/*
 * test_queue.c - task queues and deferred calls, in memory (no journal):
 * ordering, the limits a dispatcher keeps (concurrency, rate, keys),
 * idempotent names, every outcome an attempt reports, retry policy,
 * timeouts, dead letters, pause/resume, large payloads, blocking
 * functions, declarations refused, listings.
 *
 * Limits are checked by counting over a run, never by timing it: the
 * highest number of attempts seen running at once, the tokens each start
 * could have had (bucket + rate x elapsed, an upper bound that a slow
 * machine only makes easier to meet).  A randomized run checks the
 * dispatcher against a model of its rules.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue_harness.h"

static void setup(void) {
  memset(&R, 0, sizeof R);
  R.loop_thread = pthread_self();
  rt = h_runtime();
  ck_assert_int_eq(mly_queues_open(rt), 0);
  ck_assert_int_eq(mly_defer_register(rt, "rec", rec_fn, NULL, 0), 0);
}

static void teardown(void) {
  mly_runtime_close(rt);
  rt = NULL;
}

static void declare(const mly_queue_def *d) {
  char err[200] = "";
  ck_assert_msg(mly_queue_declare(rt, d, err, sizeof err) == 0, "%s", err);
}

static mly_id add(const char *q, int n, int prio, int64_t eta) {
  mly_id id = 0;
  mly_task_opts o = {.queue = q, .priority = prio, .eta_ms = eta,
                     .id_out = &id};
  ck_assert_int_eq(mly_defer(rt, "rec", pl(n, -1), &o), 0);
  ck_assert_uint_ne(id, 0);
  return id;
}

/* ---- ordering ---- */

START_TEST(order_priority_eta_insertion) {
  mly_queue_def d = {.name = "ord", .max_concurrent = 1, .paused = true,
                     .retry = MLY_RETRY_UNSET};
  declare(&d);
  int64_t t0 = now_ms() - 10000;
  /* n: expected position.  priority 5 first; among equal priority the
   * earlier eta; among equal eta, insertion order */
  add("ord", 6, 0, t0 + 2);
  add("ord", 4, 0, t0 + 1);
  add("ord", 1, 5, t0 + 9);
  add("ord", 5, 0, t0 + 1);
  add("ord", 0, 5, t0 + 3);
  add("ord", 2, 3, t0 + 50);
  add("ord", 3, 1, t0 + 1);
  add("ord", 7, 0, t0 + 2);
  ck_assert_int_eq(count_tasks(MLY_TASKS_ALL), 8);
  Q_UNTIL(rt, count_tasks(MLY_TASK_WAITING) == 8, 1000);
  ck_assert_int_eq(R.runs, 0); /* paused: accepted, not run */
  ck_assert_int_eq(mly_queue_resume(rt, "ord"), 0);
  Q_UNTIL(rt, R.runs == 8 && count_tasks(MLY_TASKS_ALL) == 0, 100000);
  for (int i = 0; i < 8; i++) ck_assert_int_eq(R.order[i], i);
}
END_TEST

START_TEST(eta_is_never_early) {
  int64_t eta = now_ms() + 40;
  add(NULL, 1, 0, eta);
  mly_task_opts o = {.countdown_ms = 20};
  ck_assert_int_eq(mly_defer(rt, "rec", pl(0, -1), &o), 0);
  int64_t start = now_ms();
  Q_UNTIL(rt, R.runs == 2, 100000);
  ck_assert_int_eq(R.order[0], 0); /* countdown 20 before eta +40 */
  ck_assert_int_eq(R.order[1], 1);
  ck_assert_int_ge(now_ms(), eta);
  ck_assert_int_ge(now_ms() - start, 20);
}
END_TEST

/* ---- limits ---- */

START_TEST(max_concurrent_held) {
  mly_queue_def d = {.name = "c3", .max_concurrent = 3,
                     .retry = MLY_RETRY_UNSET};
  declare(&d);
  R.async = true;
  for (int i = 0; i < 40; i++) add("c3", i, 0, 0);
  Q_UNTIL(rt, R.runs == 40 && count_tasks(MLY_TASKS_ALL) == 0, 100000);
  ck_assert_int_eq(R.max_running, 3);
}
END_TEST

START_TEST(concurrency_key_held) {
  mly_queue_def d = {.name = "keys", .max_concurrent = 100,
                     .concurrency_key = "k", .concurrency_key_max = 2,
                     .retry = MLY_RETRY_UNSET};
  declare(&d);
  R.async = true;
  /* 30 tasks of customer 0 first, then 10 of 1 and 2: the blocked 0s
   * must not hold back 1 and 2 */
  for (int i = 0; i < 30; i++)
    ck_assert_int_eq(mly_defer(rt, "rec", pl(i, 0),
                               &(mly_task_opts){.queue = "keys"}), 0);
  for (int i = 0; i < 20; i++)
    ck_assert_int_eq(mly_defer(rt, "rec", pl(100 + i, 1 + i % 2),
                               &(mly_task_opts){.queue = "keys"}), 0);
  Q_UNTIL(rt, R.runs == 50 && count_tasks(MLY_TASKS_ALL) == 0, 100000);
  for (int k = 0; k < 3; k++) ck_assert_int_eq(R.kmax[k], 2);
  ck_assert_int_eq(R.max_running, 6); /* 2 per key, 3 keys at once */
}
END_TEST

START_TEST(rate_limit_held) {
  /* 200/s, bucket 5: start i (0-based) may come only once i+1 tokens
   * existed: i + 1 <= 5 + 200 x elapsed.  Counted, not timed. */
  mly_queue_def d = {.name = "r", .rate = 200, .bucket_size = 5,
                     .retry = MLY_RETRY_UNSET};
  declare(&d);
  int n = 60;
  uint64_t t0 = uv_hrtime() / 1000;
  for (int i = 0; i < n; i++) add("r", i, 0, 0);
  Q_UNTIL(rt, R.runs == n, 100000);
  for (int i = 0; i < n; i++) {
    double elapsed = (double)(R.start_us[i] - t0) / 1e6;
    ck_assert_msg(i + 1 <= 5 + 200 * elapsed + 1e-6,
                  "start %d at %.6f s: more than the bucket allows", i,
                  elapsed);
  }
  mly_queue_info qi;
  ck_assert_int_eq(mly_queue_info_get(rt, "r", &qi), 0);
  ck_assert_uint_eq(qi.started, (uint64_t)n);
  ck_assert(qi.tokens <= 5.0);
}
END_TEST

/* ---- names ---- */

START_TEST(named_task_both_answers) {
  mly_queue_def d = {.name = "nq", .paused = true, .retry = MLY_RETRY_UNSET};
  declare(&d);
  mly_name_info ni;
  mly_id id = 0;
  mly_task_opts o = {.queue = "nq", .name = "order-17", .id_out = &id,
                     .exists = &ni};
  ck_assert_int_eq(mly_defer(rt, "rec", pl(1, -1), &o), 0);
  mly_id first = id;
  ck_assert_int_eq(mly_defer(rt, "rec", pl(2, -1), &o), MLY_EEXIST);
  ck_assert_int_eq(ni.state, MLY_NAME_LIVE); /* already queued */
  ck_assert_uint_eq(ni.id, first);
  /* the same name in another queue is another task */
  mly_task_opts o2 = {.name = "order-17"};
  ck_assert_int_eq(mly_defer(rt, "rec", pl(3, -1), &o2), 0);
  mly_queue_resume(rt, "nq");
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 100000);
  ck_assert_int_eq(R.runs, 2);
  ck_assert_int_eq(mly_defer(rt, "rec", pl(4, -1), &o), MLY_EEXIST);
  ck_assert_int_eq(ni.state, MLY_NAME_ENDED); /* already done */
  ck_assert_int_eq(ni.status, 0);
  ck_assert_int_eq(mly_task_lookup(rt, "nq", "order-17", &ni), 0);
  ck_assert_int_eq(mly_task_lookup(rt, "nq", "order-18", &ni), MLY_ENOENT);
  mly_task_opts bad = {.name = "a/b"};
  ck_assert_int_eq(mly_defer(rt, "rec", NULL, &bad), MLY_EINVAL);
}
END_TEST

/* ---- outcomes ---- */

static mly_task_info info_of(mly_id id) {
  mly_task_info ti;
  ck_assert_int_eq(mly_task_info_get(rt, id, &ti), 0);
  return ti;
}

static const mly_retry fast = {2, 1, 4, 2, 0, 0.0};

static mly_id add_retry(const mly_retry *r) {
  mly_id id = 0;
  mly_task_opts o = {.retry = r, .id_out = &id};
  ck_assert_int_eq(mly_defer(rt, "rec", pl(0, -1), &o), 0);
  return id;
}

START_TEST(retryable_until_dead) {
  for (int i = 0; i < 16; i++) R.script[i] = MLY_TASK_RETRY;
  R.nscript = 16;
  mly_id id = add_retry(&fast);
  Q_UNTIL(rt, count_tasks(MLY_TASK_DEAD) == 1, 100000);
  mly_task_info ti = info_of(id);
  ck_assert_int_eq(R.runs, 3); /* the first run and 2 retries */
  ck_assert_uint_eq(ti.attempts, 3);
  ck_assert_uint_eq(ti.failures, 3);
  ck_assert_str_eq(ti.last_msg, "scripted");
  ck_assert_int_eq(ti.state, MLY_TASK_DEAD);
  /* retried with a fresh policy: no retry at all this time */
  mly_retry once = {0, 1, 1, 0, 0, 0.0};
  ck_assert_int_eq(mly_task_retry(rt, id, &once), 0);
  Q_UNTIL(rt, R.runs == 4 && count_tasks(MLY_TASK_DEAD) == 1, 100000);
  ti = info_of(id);
  ck_assert_uint_eq(ti.failures, 1);
  ck_assert_uint_eq(ti.attempts, 4);
  ck_assert_int_eq(ti.retry.task_retry_limit, 0);
  ck_assert_int_eq(ti.retry.min_backoff_ms, 1);
}
END_TEST

START_TEST(singular_not_counted) {
  R.script[0] = R.script[1] = R.script[2] = MLY_TASK_RETRY_SINGULAR;
  R.script[3] = MLY_TASK_RETRY;
  R.nscript = 4;
  mly_id id = add_retry(&fast);
  (void)id;
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 100000);
  /* 3 singular + 1 counted + success: the limit (2) was never passed */
  ck_assert_int_eq(R.runs, 5);
  mly_queue_info qi;
  mly_queue_info_get(rt, MLY_QUEUE_DEFAULT, &qi);
  ck_assert_uint_eq(qi.failed, 1);
  ck_assert_uint_eq(qi.succeeded, 1);
}
END_TEST

START_TEST(permanent_is_dead_at_once) {
  R.script[0] = MLY_TASK_PERMANENT;
  R.nscript = 1;
  mly_id id = add_retry(&fast);
  Q_UNTIL(rt, count_tasks(MLY_TASK_DEAD) == 1, 100000);
  ck_assert_int_eq(R.runs, 1);
  ck_assert_uint_eq(info_of(id).failures, 0);
  mly_queue_info qi;
  mly_queue_info_get(rt, MLY_QUEUE_DEFAULT, &qi);
  ck_assert_uint_eq(qi.dead, 1);
  ck_assert_uint_eq(qi.dead_lettered, 1);
}
END_TEST

START_TEST(unknown_function_fails_at_call) {
  mly_value *p = mly_value_map();
  ck_assert_int_eq(mly_defer(rt, "nope", p, NULL), MLY_ENOENT);
  mly_task_opts o = {.queue = "no-such-queue"};
  ck_assert_int_eq(mly_defer(rt, "rec", NULL, &o), MLY_ENOENT);
  mly_task_opts pr = {.priority = 10}; /* levels 0..9 */
  ck_assert_int_eq(mly_defer(rt, "rec", NULL, &pr), MLY_EINVAL);
  mly_task_target m = {MLY_TASK_MACHINE, "order"};
  ck_assert_int_eq(mly_task_add(rt, &m, NULL, NULL), MLY_ENOENT);
  ck_assert_int_eq(count_tasks(MLY_TASKS_ALL), 0);
}
END_TEST

START_TEST(age_limit_ends_retries) {
  for (int i = 0; i < 16; i++) R.script[i] = MLY_TASK_RETRY;
  R.nscript = 16;
  mly_retry r = {1000, 5, 5, 0, 12, 0.0};
  mly_id id = add_retry(&r);
  Q_UNTIL(rt, count_tasks(MLY_TASK_DEAD) == 1, 100000);
  mly_task_info ti = info_of(id);
  ck_assert_uint_lt(ti.failures, 1000);   /* the age ended it, not the count */
  ck_assert_uint_ge(ti.failures, 2);      /* 5 ms apart, 12 ms allowed */
  ck_assert_int_ge(ti.retry.task_age_limit_ms, 12);
}
END_TEST

START_TEST(backoff_arithmetic) {
  mly_retry r = {5, 100, 10000, 3, 0, 0.0};
  ck_assert_int_eq(mly_retry_backoff(&r, 1), 100);
  ck_assert_int_eq(mly_retry_backoff(&r, 2), 200);
  ck_assert_int_eq(mly_retry_backoff(&r, 4), 800);
  ck_assert_int_eq(mly_retry_backoff(&r, 5), 1600); /* then linear: +800 */
  ck_assert_int_eq(mly_retry_backoff(&r, 6), 2400);
  ck_assert_int_eq(mly_retry_backoff(&r, 100), 10000);
  ck_assert_int_eq(mly_retry_backoff(&r, 0), 0);
  r.max_doublings = 1000;
  ck_assert_int_eq(mly_retry_backoff(&r, UINT64_MAX), 10000);
}
END_TEST

/* ---- timeouts ---- */

static mly_task *hung;
static void hang_fn(mly_task *t, void *arg) {
  (void)arg;
  R.runs++;
  hung = t; /* never reports in time */
}

START_TEST(timeout_of_hung_loop_attempt) {
  mly_queue_def d = {.name = "to", .timeout_ms = 20,
                     .retry = {1, 1, 1, 0, 0, 0}};
  declare(&d);
  ck_assert_int_eq(mly_defer_register(rt, "hang", hang_fn, NULL, 0), 0);
  mly_id id = 0;
  mly_task *first = NULL;
  ck_assert_int_eq(mly_defer(rt, "hang", NULL,
                             &(mly_task_opts){.queue = "to", .id_out = &id}),
                   0);
  Q_UNTIL(rt, R.runs == 1, 100000);
  first = hung;
  Q_UNTIL(rt, R.runs == 2, 100000); /* timed out: retried */
  mly_task_done(first, MLY_TASK_OK, NULL); /* late: ignored */
  Q_UNTIL(rt, count_tasks(MLY_TASK_DEAD) == 1, 100000);
  mly_task_info ti = info_of(id);
  ck_assert_int_eq(ti.last_error, MLY_ETIMEDOUT);
  ck_assert_uint_eq(ti.failures, 2);
  mly_task_done(hung, MLY_TASK_OK, NULL); /* late too */
  mly_queue_info qi;
  mly_queue_info_get(rt, "to", &qi);
  ck_assert_uint_eq(qi.running, 0);
}
END_TEST

static void sleepy_fn(mly_task *t, void *arg) {
  (void)arg;
  if (!pthread_equal(pthread_self(), R.loop_thread))
    __atomic_store_n(&R.blocking_thread_seen, true, __ATOMIC_SEQ_CST);
  const mly_value *p = mly_task_payload(t);
  int64_t ms = 0;
  mly_map_get_int(p, "sleep", &ms);
  usleep((useconds_t)ms * 1000);
  mly_task_done(t, MLY_TASK_OK, NULL);
}

START_TEST(timeout_abandons_blocking_attempt) {
  mly_queue_def d = {.name = "tb", .timeout_ms = 20,
                     .retry = {0, 1, 1, 0, 0, 0}};
  declare(&d);
  ck_assert_int_eq(
      mly_defer_register(rt, "sleepy", sleepy_fn, NULL, MLY_DEFER_BLOCKING), 0);
  mly_value *p = mly_value_map();
  mly_map_set_int(p, "sleep", 300);
  mly_id id = 0;
  ck_assert_int_eq(mly_defer(rt, "sleepy", p,
                             &(mly_task_opts){.queue = "tb", .id_out = &id}),
                   0);
  Q_UNTIL(rt, count_tasks(MLY_TASK_DEAD) == 1, 100000);
  ck_assert_int_eq(info_of(id).last_error, MLY_ETIMEDOUT);
  /* the abandoned work still reads the payload: no delete until back */
  ck_assert_int_eq(mly_task_delete(rt, id), MLY_EBUSY);
  /* (the condition has a side effect: Q_UNTIL tests it twice) */
  int drc = MLY_EBUSY;
  for (int i = 0; i < 100000 && drc == MLY_EBUSY; i++) {
    uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
    usleep(100);
    drc = mly_task_delete(rt, id);
  }
  ck_assert_int_eq(drc, 0);
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 100000);
  ck_assert(R.blocking_thread_seen);
}
END_TEST

static int slow_first_done;
static void slow_first_fn(mly_task *t, void *arg) {
  (void)arg;
  if (mly_task_attempt(t) == 1) {
    usleep(200 * 1000); /* timed out long before: abandoned */
    __atomic_store_n(&slow_first_done, 1, __ATOMIC_SEQ_CST);
  }
  mly_task_done(t, MLY_TASK_OK, NULL);
}

START_TEST(success_waits_for_abandoned_attempt) {
  /* the second attempt succeeds while the first, abandoned, still reads
   * the payload on its thread: the task (and its payload) stays until
   * that one is back */
  mly_queue_def d = {.name = "tf", .timeout_ms = 20,
                     .retry = {3, 1, 1, 0, 0, 0}};
  declare(&d);
  slow_first_done = 0;
  ck_assert_int_eq(mly_defer_register(rt, "slowfirst", slow_first_fn, NULL,
                                      MLY_DEFER_BLOCKING), 0);
  mly_id id = 0;
  ck_assert_int_eq(mly_defer(rt, "slowfirst", mly_value_map(),
                             &(mly_task_opts){.queue = "tf", .id_out = &id}),
                   0);
  int i = 0;
  for (; i < 100000 && count_tasks(MLY_TASKS_ALL) > 0; i++) {
    uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
    /* it ended: its first attempt must have been back (it sets the flag
     * before it returns; the second ends ~180 ms before that) */
    if (count_tasks(MLY_TASKS_ALL) == 0)
      ck_assert_msg(__atomic_load_n(&slow_first_done, __ATOMIC_SEQ_CST),
                    "ended while its first attempt still ran");
    usleep(200);
  }
  ck_assert_int_eq(count_tasks(MLY_TASKS_ALL), 0);
  mly_queue_info qi;
  mly_queue_info_get(rt, "tf", &qi);
  ck_assert_uint_eq(qi.succeeded, 1);
  ck_assert_uint_eq(qi.failed, 1); /* the timeout */
}
END_TEST

START_TEST(blocking_runs_on_threadpool) {
  ck_assert_int_eq(
      mly_defer_register(rt, "sleepy", sleepy_fn, NULL, MLY_DEFER_BLOCKING), 0);
  for (int i = 0; i < 8; i++) {
    mly_value *p = mly_value_map();
    mly_map_set_int(p, "sleep", 1);
    ck_assert_int_eq(mly_defer(rt, "sleepy", p, NULL), 0);
  }
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 100000);
  ck_assert(R.blocking_thread_seen);
  mly_queue_info qi;
  mly_queue_info_get(rt, MLY_QUEUE_DEFAULT, &qi);
  ck_assert_uint_eq(qi.succeeded, 8);
}
END_TEST

/* ---- dead letters ---- */

START_TEST(dead_letters_retry_and_delete) {
  R.script[0] = MLY_TASK_PERMANENT;
  R.script[1] = MLY_TASK_PERMANENT;
  R.nscript = 2;
  mly_id a = 0, b = 0;
  mly_task_opts oa = {.name = "a", .id_out = &a}, ob = {.name = "b", .id_out = &b};
  ck_assert_int_eq(mly_defer(rt, "rec", pl(1, -1), &oa), 0);
  ck_assert_int_eq(mly_defer(rt, "rec", pl(2, -1), &ob), 0);
  Q_UNTIL(rt, count_tasks(MLY_TASK_DEAD) == 2, 100000);
  mly_retry badr = {1, 10, 5, 0, 0, 0};
  ck_assert_int_eq(mly_task_retry(rt, a, &badr), MLY_EINVAL);
  ck_assert_int_eq(mly_defer(rt, "rec", NULL, &(mly_task_opts){.retry = &badr}),
                   MLY_EINVAL);
  ck_assert_int_eq(mly_task_retry(rt, a, &fast), 0);
  ck_assert_int_eq(mly_task_delete(rt, b), 0);
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 100000);
  ck_assert_int_eq(R.runs, 3);
  mly_name_info ni;
  ck_assert_int_eq(mly_task_lookup(rt, NULL, "a", &ni), 0);
  ck_assert_int_eq(ni.status, 0);
  ck_assert_int_eq(mly_task_lookup(rt, NULL, "b", &ni), 0);
  ck_assert_int_eq(ni.status, MLY_ECANCELED);
  ck_assert_int_eq(mly_task_retry(rt, a, NULL), MLY_ESRCH);
}
END_TEST

START_TEST(retry_refused_unless_dead) {
  mly_queue_def d = {.name = "p", .paused = true, .retry = MLY_RETRY_UNSET};
  declare(&d);
  mly_id id = add("p", 1, 0, 0);
  ck_assert_int_eq(mly_task_retry(rt, id, NULL), MLY_EINVAL);
  size_t n = 0;
  ck_assert_int_eq(mly_queue_purge(rt, "p", &n), 0);
  ck_assert_uint_eq(n, 1);
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 1000);
  ck_assert_int_eq(R.runs, 0);
}
END_TEST

/* ---- pause / resume ---- */

START_TEST(pause_accepts_and_holds) {
  R.async = true;
  ck_assert_int_eq(mly_queue_pause(rt, MLY_QUEUE_DEFAULT), 0);
  for (int i = 0; i < 10; i++) add(NULL, i, 0, 0);
  Q_UNTIL(rt, count_tasks(MLY_TASK_WAITING) == 10, 1000);
  ck_assert_int_eq(R.runs, 0);
  ck_assert_int_eq(mly_queue_resume(rt, MLY_QUEUE_DEFAULT), 0);
  Q_UNTIL(rt, R.runs >= 3, 100000);
  ck_assert_int_eq(mly_queue_pause(rt, MLY_QUEUE_DEFAULT), 0);
  int at_pause = R.runs;
  /* what runs finishes; nothing new starts */
  Q_UNTIL(rt, R.running == 0 && R.npending == 0, 100000);
  h_turns(rt, 50);
  ck_assert_int_eq(R.runs, at_pause);
  ck_assert_int_eq(mly_queue_resume(rt, MLY_QUEUE_DEFAULT), 0);
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 100000);
  ck_assert_int_eq(R.runs, 10);
  ck_assert_int_eq(mly_queue_pause(rt, "nope"), MLY_ENOENT);
}
END_TEST

/* ---- metrics ---- */

/* The value of the one sample whose line starts with `key ` (-1: none,
 * -2: more than one). */
static double sample(const char *text, const char *key) {
  size_t kn = strlen(key);
  double v = -1;
  int seen = 0;
  for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
    if (strncmp(l, key, kn) == 0 && l[kn] == ' ') {
      v = strtod(l + kn + 1, NULL);
      seen++;
    }
  return seen > 1 ? -2 : v;
}

static void expect(const char *text, const char *name, const char *q,
                   const char *lk, const char *lv, double want) {
  char key[200];
  if (lk) snprintf(key, sizeof key, "%s{queue=\"%s\",%s=\"%s\"}", name, q, lk, lv);
  else snprintf(key, sizeof key, "%s{queue=\"%s\"}", name, q);
  if (sample(text, key) != want) fputs(text, stderr); /* all of it */
  ck_assert_msg(sample(text, key) == want, "%s: %g, want %g", key,
                sample(text, key), want);
}

START_TEST(metrics_exported_exactly) {
  /* default: a task ending singular, failed, succeeded; one permanent;
   * one scheduled far ahead */
  R.script[0] = MLY_TASK_RETRY_SINGULAR;
  R.script[1] = MLY_TASK_RETRY;
  R.script[2] = MLY_TASK_OK;
  R.script[3] = MLY_TASK_PERMANENT;
  R.nscript = 4;
  add_retry(&fast);
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 100000);
  add_retry(&fast);
  Q_UNTIL(rt, count_tasks(MLY_TASK_DEAD) == 1, 100000);
  add(NULL, 9, 0, now_ms() + 3600 * 1000);
  /* "to": one attempt times out, no retry: a dead letter; then paused,
   * with one task waiting */
  mly_queue_def d = {.name = "to", .timeout_ms = 20,
                     .retry = {0, 1, 1, 0, 0, 0}};
  declare(&d);
  ck_assert_int_eq(mly_defer_register(rt, "hang", hang_fn, NULL, 0), 0);
  mly_task_opts o = {.queue = "to"};
  ck_assert_int_eq(mly_defer(rt, "hang", NULL, &o), 0);
  Q_UNTIL(rt, count_tasks(MLY_TASK_DEAD) == 2, 100000);
  mly_task_done(hung, MLY_TASK_OK, NULL); /* late: ignored */
  ck_assert_int_eq(mly_queue_pause(rt, "to"), 0);
  ck_assert_int_eq(mly_defer(rt, "hang", NULL, &o), 0);
  Q_UNTIL(rt, count_tasks(MLY_TASK_WAITING) == 1, 1000);

  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(mly_metrics_fprint(rt, f), 0);
  fclose(f);
  static const struct {
    const char *q, *name, *lk, *lv;
    double want;
  } want[] = {
#define T "mealy_queue_tasks", "state"
#define A "mealy_queue_attempts_total", "outcome"
      {"default", T, "scheduled", 1}, {"default", T, "waiting", 0},
      {"default", T, "running", 0},   {"default", T, "dead", 1},
      {"default", A, "succeeded", 1}, {"default", A, "failed", 1},
      {"default", A, "singular", 1},  {"default", A, "permanent", 1},
      {"to", T, "scheduled", 0},      {"to", T, "waiting", 1},
      {"to", T, "running", 0},        {"to", T, "dead", 1},
      {"to", A, "succeeded", 0},      {"to", A, "failed", 1},
      {"to", A, "singular", 0},       {"to", A, "permanent", 0},
#undef T
#undef A
      {"default", "mealy_queue_paused", NULL, NULL, 0},
      {"default", "mealy_queue_attempts_started_total", NULL, NULL, 4},
      {"default", "mealy_queue_dead_lettered_total", NULL, NULL, 1},
      {"default", "mealy_queue_timeouts_total", NULL, NULL, 0},
      {"to", "mealy_queue_paused", NULL, NULL, 1},
      {"to", "mealy_queue_attempts_started_total", NULL, NULL, 1},
      {"to", "mealy_queue_dead_lettered_total", NULL, NULL, 1},
      {"to", "mealy_queue_timeouts_total", NULL, NULL, 1},
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    expect(text, want[i].name, want[i].q, want[i].lk, want[i].lv,
           want[i].want);
  /* each family once, typed */
  ck_assert_ptr_nonnull(strstr(text, "# TYPE mealy_queue_tasks gauge\n"));
  ck_assert_ptr_nonnull(
      strstr(text, "# TYPE mealy_queue_attempts_total counter\n"));
  ck_assert_ptr_null(strstr(strstr(text, "# TYPE mealy_queue_tasks ") + 1,
                            "# TYPE mealy_queue_tasks "));
  free(text);
}
END_TEST

/* ---- payloads ---- */

static size_t big_seen;
static void big_fn(mly_task *t, void *arg) {
  (void)arg;
  const void *p;
  size_t len = 0;
  if (mly_value_get_bin(mly_map_get(mly_task_payload(t), "blob"), &p, &len) ==
          0 &&
      len > 0 && ((const unsigned char *)p)[len - 1] == 0xab)
    big_seen = len;
  mly_task_done(t, MLY_TASK_OK, NULL);
}

START_TEST(payload_16_mib) {
  size_t len = 16u << 20;
  unsigned char *b = malloc(len);
  ck_assert_ptr_nonnull(b);
  memset(b, 0xab, len);
  mly_value *p = mly_value_map();
  mly_map_set(p, "blob", mly_value_bin(b, len));
  free(b);
  big_seen = 0;
  ck_assert_int_eq(mly_defer_register(rt, "big", big_fn, NULL, 0), 0);
  ck_assert_int_eq(mly_defer(rt, "big", p, NULL), 0);
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 100000);
  ck_assert_uint_eq(big_seen, len);
}
END_TEST

/* ---- declarations ---- */

START_TEST(declarations_refused) {
  char err[200];
  mly_queue_def d = {.name = "bad name", .retry = MLY_RETRY_UNSET};
  ck_assert_int_eq(mly_queue_declare(rt, &d, err, sizeof err), MLY_EINVAL);
  ck_assert_ptr_nonnull(strstr(err, "bad name"));
  d.name = "q";
  d.rate = -1;
  ck_assert_int_eq(mly_queue_declare(rt, &d, err, sizeof err), MLY_EINVAL);
  ck_assert_ptr_nonnull(strstr(err, "rate"));
  d.rate = 0;
  d.retry.jitter = 2;
  ck_assert_int_eq(mly_queue_declare(rt, &d, err, sizeof err), MLY_EINVAL);
  d.retry.jitter = 0.5;
  d.retry.min_backoff_ms = 10;
  d.retry.max_backoff_ms = 5;
  ck_assert_int_eq(mly_queue_declare(rt, &d, err, sizeof err), MLY_EINVAL);
  ck_assert_ptr_nonnull(strstr(err, "min_backoff"));
  ck_assert_int_eq(mly_queues_open(rt), MLY_EEXIST);
  ck_assert_int_eq(mly_defer_register(rt, "rec", rec_fn, NULL, 0), MLY_EEXIST);
  /* listing: default first, in declaration order */
  d.retry = (mly_retry)MLY_RETRY_UNSET;
  d.rate = 3.5;
  declare(&d);
  mly_queue_info qi;
  ck_assert_int_eq(mly_queue_info_get(rt, "q", &qi), 0);
  ck_assert_uint_eq(qi.def.bucket_size, 4);
  ck_assert_uint_eq(qi.def.max_concurrent, 1000);
  ck_assert_int_eq(qi.def.retry.task_retry_limit, MLY_DEFAULT_TASK_RETRY_LIMIT);
}
END_TEST

/* ---- machines through the starter, layers ---- */

static char started[64];
static void starter(mly_task *t, void *arg) {
  (void)arg;
  mly_task_target w = mly_task_target_of(t);
  if (w.kind == MLY_TASK_MACHINE) snprintf(started, sizeof started, "%s", w.name);
  mly_task_done(t, MLY_TASK_OK, NULL);
}

START_TEST(machine_task_through_starter) {
  started[0] = '\0';
  ck_assert_int_eq(mly_task_set_starter(rt, starter, NULL, 0), 0);
  mly_task_target w = {MLY_TASK_MACHINE, "order"};
  ck_assert_int_eq(mly_task_add(rt, &w, mly_value_map(), NULL), 0);
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 100000);
  ck_assert_str_eq(started, "order");
  mly_task_target bad = {(mly_task_kind)7, "x"};
  ck_assert_int_eq(mly_task_add(rt, &bad, NULL, NULL), MLY_EINVAL);
}
END_TEST

static int released;
static void release_cb(void *p) { released += *(int *)p; }

START_TEST(runtime_attach) {
  static int one = 1;
  ck_assert_ptr_nonnull(mly_runtime_attached(rt, "queue"));
  ck_assert_int_eq(mly_runtime_attach(rt, "queue", &one, NULL), MLY_EEXIST);
  ck_assert_ptr_null(mly_runtime_attached(rt, "nope"));
  char keys[MLY_ATTACH_MAX][8];
  int n = 0;
  for (int i = 0; i < MLY_ATTACH_MAX; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    int rc = mly_runtime_attach(rt, keys[i], &one, release_cb);
    if (rc == MLY_ENOSPC) break;
    ck_assert_int_eq(rc, 0);
    n++;
  }
  ck_assert_int_lt(n, MLY_ATTACH_MAX); /* "queue" took one */
  ck_assert_ptr_eq(mly_runtime_attached(rt, "k0"), &one);
  released = 0;
  mly_runtime_close(rt);
  rt = h_runtime(); /* for teardown */
  ck_assert_int_eq(released, n);
}
END_TEST

/* ---- randomized: the dispatcher against a model of its rules ---- */

START_TEST(random_against_model) {
  /* random queues (limits, keys, priorities, pauses) and tasks with
   * random outcomes; the model: every task that was added ends exactly
   * once (success or dead), no limit is ever passed, and a task never
   * runs after its success. */
  unsigned seed = 12345u + (unsigned)_i;
  mly_queue_def d = {.name = "m", .max_concurrent = 1 + rand_r(&seed) % 5,
                     .concurrency_key = "k",
                     .concurrency_key_max = 1 + rand_r(&seed) % 3,
                     .retry = {3, 1, 2, 1, 0, 0.5}};
  declare(&d);
  R.async = true;
  int n = 200;
  for (int i = 0; i < n; i++) {
    mly_task_opts o = {.queue = "m", .priority = rand_r(&seed) % 3};
    ck_assert_int_eq(mly_defer(rt, "rec", pl(i, rand_r(&seed) % 8), &o), 0);
    if (rand_r(&seed) % 17 == 0) mly_queue_pause(rt, "m");
    if (rand_r(&seed) % 5 == 0) mly_queue_resume(rt, "m");
    if (rand_r(&seed) % 4 == 0) uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
  }
  mly_queue_resume(rt, "m");
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 1000000);
  ck_assert_int_eq(R.runs, n);
  ck_assert_int_le(R.max_running, (int)d.max_concurrent);
  for (int k = 0; k < 8; k++)
    ck_assert_int_le(R.kmax[k], (int)d.concurrency_key_max);
  int seen[200] = {0};
  for (int i = 0; i < n; i++) seen[R.order[i]]++;
  for (int i = 0; i < n; i++) ck_assert_int_eq(seen[i], 1);
}
END_TEST

static Suite *queue_suite(void) {
  Suite *s = suite_create("queue");
  TCase *tc = tcase_create("queue");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, order_priority_eta_insertion);
  tcase_add_test(tc, eta_is_never_early);
  tcase_add_test(tc, max_concurrent_held);
  tcase_add_test(tc, concurrency_key_held);
  tcase_add_test(tc, rate_limit_held);
  tcase_add_test(tc, named_task_both_answers);
  tcase_add_test(tc, retryable_until_dead);
  tcase_add_test(tc, singular_not_counted);
  tcase_add_test(tc, permanent_is_dead_at_once);
  tcase_add_test(tc, unknown_function_fails_at_call);
  tcase_add_test(tc, age_limit_ends_retries);
  tcase_add_test(tc, backoff_arithmetic);
  tcase_add_test(tc, timeout_of_hung_loop_attempt);
  tcase_add_test(tc, timeout_abandons_blocking_attempt);
  tcase_add_test(tc, blocking_runs_on_threadpool);
  tcase_add_test(tc, success_waits_for_abandoned_attempt);
  tcase_add_test(tc, dead_letters_retry_and_delete);
  tcase_add_test(tc, retry_refused_unless_dead);
  tcase_add_test(tc, pause_accepts_and_holds);
  tcase_add_test(tc, metrics_exported_exactly);
  tcase_add_test(tc, payload_16_mib);
  tcase_add_test(tc, declarations_refused);
  tcase_add_test(tc, machine_task_through_starter);
  tcase_add_test(tc, runtime_attach);
  tcase_add_loop_test(tc, random_against_model, 0, 8);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(queue_suite)
