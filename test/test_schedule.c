/*
 * test_schedule.c - schedules over a journal, on a test clock: ticks
 * are counted (never timed) across restarts, each `missed` policy with
 * the process down, the cap of `all`, and declarations refused.
 */
#include "queue_harness.h"

#include <unistd.h>

static char dir[256];
static int64_t vnow_ms;
static mly_missed policy;
static const char *cron_expr;
static int64_t period_ms = 60000;
static const char *zone = "Europe/Berlin";
static int64_t start_ms = 1700000020000; /* 20 s before a minute */

static int64_t vclock(void *arg) {
  (void)arg;
  return vnow_ms;
}

static void open_rt(void) {
  rt = h_runtime();
  ck_assert_int_eq(mly_queues_open(rt), 0);
  ck_assert_int_eq(mly_defer_register(rt, "rec", rec_fn, NULL, 0), 0);
  mly_schedule_set_clock(rt, vclock, NULL);
  char err[256];
  mly_journal_options jo = {.dir = dir, .sync = MLY_SYNC_ALWAYS};
  h_journal_open(rt, &jo);
  mly_schedule_def sd = {.name = "every-minute",
                         .cron = cron_expr,
                         .every_ms = cron_expr ? 0 : period_ms,
                         .tz = zone,
                         .missed = policy,
                         .what = {MLY_TASK_FUNCTION, "rec"}};
  ck_assert_msg(mly_schedule_declare(rt, &sd, err, sizeof err) == 0, "%s",
                err);
}

static mly_schedule_info info(void) {
  mly_schedule_info si;
  ck_assert_int_eq(mly_schedule_info_get(rt, "every-minute", &si), 0);
  return si;
}

/* Let the loop run a while and check the count stays where it is. */
static void settle(int runs) {
  Q_UNTIL(rt, R.runs == runs, 5000);
  h_turns(rt, 50);
  ck_assert_int_eq(R.runs, runs);
}

static void start(mly_missed p, const char *expr, int64_t period) {
  period_ms = period;
  memset(&R, 0, sizeof R);
  R.loop_thread = pthread_self();
  h_tmpdir(dir, sizeof dir, "mealy-sched");
  policy = p;
  cron_expr = expr;
  vnow_ms = start_ms;
  open_rt();
  Q_UNTIL(rt, info().next_ms != 0, 5000);
  if (expr == NULL)
    ck_assert_int_eq(info().next_ms, (vnow_ms / period + 1) * period);
}

static void stop(void) {
  mly_runtime_close(rt);
  rt = NULL;
  h_rmtree(dir);
}

static void advance(int64_t ms) {
  vnow_ms += ms;
  mly_schedules_poke(rt);
}

static void ticks_across_restarts(mly_missed p, const char *expr) {
  start(p, expr, 60000);
  settle(0);
  for (int i = 1; i <= 10; i++) {
    advance(60000);
    settle(i);
  }
  for (int round = 0; round < 3; round++) {
    mly_runtime_close(rt);
    open_rt(); /* same time: nothing due again */
    mly_schedules_poke(rt);
    settle(10 + 5 * round);
    ck_assert_uint_eq(info().enqueued, (uint64_t)(10 + 5 * round));
    for (int i = 1; i <= 5; i++) {
      advance(60000);
      settle(10 + 5 * round + i);
    }
  }
  ck_assert_uint_eq(info().enqueued, 25);
  ck_assert_uint_eq(info().skipped, 0);
  /* each tick's task, by its name: done */
  for (int i = 0; i < 25; i++) {
    mly_name_info ni;
    char name[64];
    snprintf(name, sizeof name, "every-minute@%lld",
             1700000040LL + 60LL * i);
    ck_assert_int_eq(mly_task_lookup(rt, MLY_QUEUE_DEFAULT, name, &ni), 0);
    ck_assert_int_eq(ni.state, MLY_NAME_ENDED);
  }
  stop();
}

START_TEST(restart_every) { ticks_across_restarts(MLY_MISSED_SKIP, NULL); }
END_TEST
START_TEST(restart_cron) {
  ticks_across_restarts(MLY_MISSED_ALL, "* * * * *");
}
END_TEST

/* Every 10 minutes; down while `down` ticks come due, the newest 90 s
 * before the restart (late: past the grace). */
static void down_for(mly_missed p, int down, int want_runs,
                     uint64_t want_skipped) {
  const int64_t P = 600000;
  start(p, NULL, P);
  int64_t first = info().next_ms;
  advance(first + 1000 - vnow_ms);
  settle(1);
  mly_runtime_close(rt);
  vnow_ms = first + (int64_t)down * P + 90000;
  open_rt();
  mly_schedules_poke(rt);
  settle(1 + want_runs);
  ck_assert_uint_eq(info().skipped, want_skipped);
  ck_assert_uint_eq(info().enqueued, 1 + (uint64_t)want_runs);
  /* then on time again: the next tick, once */
  ck_assert_int_eq(info().next_ms, first + (down + 1) * P);
  advance(info().next_ms - vnow_ms);
  settle(2 + want_runs);
  advance(1000);
  settle(2 + want_runs);
  stop();
}

START_TEST(missed_skip) { down_for(MLY_MISSED_SKIP, 10, 0, 10); }
END_TEST
START_TEST(missed_one) { down_for(MLY_MISSED_ONE, 10, 1, 9); }
END_TEST
START_TEST(missed_all) { down_for(MLY_MISSED_ALL, 10, 10, 0); }
END_TEST
START_TEST(missed_all_capped) {
  down_for(MLY_MISSED_ALL, 150, MLY_MISSED_ALL_MAX, 150 - MLY_MISSED_ALL_MAX);
}
END_TEST

/* A tick within the grace is not missed: skip still enqueues it. */
START_TEST(on_time_within_grace) {
  start(MLY_MISSED_SKIP, NULL, 600000);
  advance(info().next_ms - vnow_ms + MLY_SCHEDULE_GRACE_MS - 1000);
  settle(1);
  ck_assert_uint_eq(info().skipped, 0);
  stop();
}
END_TEST

/* Daily at a local time a DST change skips or repeats, in New York,
 * the clock moving 5 minutes at a time over 3 days (restarting once a
 * day): one tick a day, whatever the change. */
static void three_days(const char *expr, int64_t from_ms) {
  zone = "America/New_York";
  start_ms = from_ms;
  start(MLY_MISSED_ALL, expr, 60000);
  for (int i = 0; i < 3 * 24 * 12; i++) {
    advance(300000);
    if (i % (24 * 12) == 100) {
      mly_runtime_close(rt);
      open_rt();
      mly_schedules_poke(rt);
    }
    Q_UNTIL(rt, info().next_ms > vnow_ms &&
                    (uint64_t)R.runs == info().enqueued, 5000);
  }
  settle(3);
  ck_assert_uint_eq(info().enqueued, 3);
  ck_assert_uint_eq(info().skipped, 0);
  stop();
  zone = "Europe/Berlin";
  start_ms = 1700000020000;
}

/* 2024-03-10: 02:00 EST becomes 03:00 EDT: 02:30 ticks at 03:00 */
START_TEST(dst_spring_forward) { three_days("30 2 * * *", 1709960400000); }
END_TEST
/* 2024-11-03: 01:00-02:00 happens twice: 01:30 ticks once */
START_TEST(dst_fall_back) { three_days("30 1 * * *", 1730520000000); }
END_TEST

START_TEST(declarations_refused) {
  start(MLY_MISSED_SKIP, NULL, 60000);
  char err[256];
  static const struct {
    mly_schedule_def d;
    int rc;
    const char *says;
  } bad[] = {
      {{.name = "a/b", .every_ms = 1000, .what = {0, "rec"}}, MLY_EINVAL,
       "schedule name"},
      {{.name = "x", .what = {0, "rec"}}, MLY_EINVAL, "either cron or every"},
      {{.name = "x", .cron = "* * * * *", .every_ms = 1000,
        .what = {0, "rec"}}, MLY_EINVAL, "either cron or every"},
      {{.name = "x", .every_ms = 1500, .what = {0, "rec"}}, MLY_EINVAL,
       "whole seconds"},
      {{.name = "x", .cron = "* * * 13 *", .what = {0, "rec"}}, MLY_EINVAL,
       "column 7: month out of range"},
      {{.name = "x", .cron = "* * * * *", .tz = "../../etc/shadow",
        .what = {0, "rec"}}, MLY_EINVAL, "not a zone name"},
      {{.name = "x", .cron = "* * * * *", .tz = "Mars/Olympus",
        .what = {0, "rec"}}, MLY_ENOENT, "no such zone"},
      {{.name = "x", .every_ms = 1000, .missed = 7, .what = {0, "rec"}},
       MLY_EINVAL, "skip, one or all"},
      {{.name = "x", .every_ms = 1000, .what = {0, "nosuch"}}, MLY_ENOENT,
       "function 'nosuch' is not registered"},
      {{.name = "x", .every_ms = 1000, .what = {MLY_TASK_MACHINE, "m"}},
       MLY_ENOENT, "no starter"},
      {{.name = "every-minute", .every_ms = 1000, .what = {0, "rec"}},
       MLY_EEXIST, ""},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    err[0] = '\0';
    ck_assert_int_eq(mly_schedule_declare(rt, &bad[i].d, err, sizeof err),
                     bad[i].rc);
    ck_assert_msg(strstr(err, bad[i].says), "%zu: \"%s\"", i, err);
  }
  stop();
}
END_TEST

static Suite *schedule_suite(void) {
  Suite *s = suite_create("schedule");
  TCase *tc = tcase_create("schedule");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, restart_every);
  tcase_add_test(tc, restart_cron);
  tcase_add_test(tc, missed_skip);
  tcase_add_test(tc, missed_one);
  tcase_add_test(tc, missed_all);
  tcase_add_test(tc, missed_all_capped);
  tcase_add_test(tc, on_time_within_grace);
  tcase_add_test(tc, declarations_refused);
  tcase_add_test(tc, dst_spring_forward);
  tcase_add_test(tc, dst_fall_back);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(schedule_suite)
