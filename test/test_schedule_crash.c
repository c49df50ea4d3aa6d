/*
 * test_schedule_crash.c - kill -9 schedules in the middle of their
 * ticks, round after round, and count: each tick is enqueued exactly
 * once across the crashes, and the ticks missed while the process was
 * down follow each schedule's `missed` policy.
 *
 * A forked child (so the kill is real) opens the store (MLY_TEST_STORE,
 * store_param.h; pg-schedule-crash on PostgreSQL) in a state
 * directory with three schedules, every two minutes on a test clock, one
 * per policy (all, one, skip), each adding a task that runs `tick`
 * (which logs its run).  Round r's child sees the clock fixed at now(r):
 * most rounds one period after the last, every fourth round four periods
 * and a minute (ticks missed while "down"; see now_of).  It is killed a
 * random 0-8 ms (PostgreSQL: 0-60 ms) after it
 * says it started, which lands before, inside or after the step that
 * enqueues the due ticks.  A last child at one more minute runs until
 * every schedule has caught up and every task ended, then writes what it
 * finds: per schedule its counters and which ticks have a task (by the
 * tick's task name, NAME@SECONDS, which the queue keeps after the task
 * ended).  The checks, for the grid of ticks from the first to the last
 * one due:
 *   - every tick is counted once: enqueued + skipped == the grid, and
 *     the ticks with a task are exactly `enqueued` of them;
 *   - all: every tick of the grid has its task, none skipped;
 *   - one: a tick has a task only if it was the newest due tick of some
 *     run, and the last run's newest has one, whatever its age;
 *   - skip: a tick has a task only if it was the newest due tick of some
 *     run within the grace (MLY_SCHEDULE_GRACE_MS), and the last run's
 *     newest has one exactly when it is within the grace;
 *   - every tick that has a task ran (the log), and no run of it came
 *     after the run whose success committed (a later child's log of it
 *     after it was found done).
 */
#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 24
#define PERIOD_MS 120000LL /* longer than the grace (60 s) */
#define T0_MS 1800000000000LL /* a whole minute */
#define MAXTICKS 256

static char dir[256], logpath[300];
static int logfd;
static int64_t vnow_ms;
static const char *const names[3] = {"all", "one", "skip"};
static const mly_missed policies[3] = {MLY_MISSED_ALL, MLY_MISSED_ONE,
                                       MLY_MISSED_SKIP};

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...) {
  char b[160];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b, sizeof b, fmt, ap);
  va_end(ap);
  if (write(logfd, b, (size_t)n) != n) _exit(3);
}

static int64_t vclock(void *arg) {
  (void)arg;
  return vnow_ms;
}

static void tick_fn(mly_task *t, void *arg) {
  (void)arg;
  logf_("run %s\n", mly_task_name(t) ? mly_task_name(t) : "?");
  mly_task_done(t, MLY_TASK_OK, NULL);
}

static int count_live(const mly_task_info *ti, void *arg) {
  (void)ti;
  (*(int *)arg)++;
  return 0;
}

/* The clock of round r (r == ROUNDS: the last run): one period after
 * the round before, or, every fourth round, four periods and a minute
 * (three ticks missed while down, and the phase moves by a minute:
 * 20 s past a tick, within the grace, or 80 s, past it). */
static int64_t now_of(int r) {
  int64_t ms = T0_MS + 20000;
  for (int i = 1; i <= r; i++) ms += i % 4 == 0 ? 4 * PERIOD_MS + 60000
                                                : PERIOD_MS;
  return ms;
}

static void child(int r, bool last) {
  logfd = open(logpath, O_WRONLY | O_APPEND | O_CREAT, 0600);
  if (logfd < 0) _exit(2);
  vnow_ms = now_of(r);
  mly_runtime *rt = NULL;
  if (mly_runtime_new(&rt, NULL, NULL) < 0 || mly_queues_open(rt) < 0 ||
      mly_defer_register(rt, "tick", tick_fn, NULL, 0) < 0)
    _exit(4);
  mly_schedule_set_clock(rt, vclock, NULL);
  char err[256];
  mly_journal_options jo = {.dir = dir, .sync = MLY_SYNC_ALWAYS};
  if (h_durable_open(rt, &jo, err, sizeof err) < 0) _exit(5);
  /* the tasks found done now: their success committed before */
  for (int s = 0; s < 3; s++)
    for (int64_t t = T0_MS; t <= vnow_ms; t += PERIOD_MS) {
      char tn[64];
      mly_name_info ni;
      snprintf(tn, sizeof tn, "%s@%lld", names[s], (long long)(t / 1000));
      if (mly_task_lookup(rt, MLY_QUEUE_DEFAULT, tn, &ni) == 0 &&
          ni.state == MLY_NAME_ENDED)
        logf_("done %s\n", tn);
    }
  for (int s = 0; s < 3; s++) {
    mly_schedule_def sd = {.name = names[s], .every_ms = PERIOD_MS,
                           .missed = policies[s],
                           .what = {MLY_TASK_FUNCTION, "tick"}};
    if (mly_schedule_declare(rt, &sd, err, sizeof err) < 0) _exit(6);
  }
  logf_("start %d\n", r);
  uv_loop_t *loop = mly_runtime_loop(rt);
  if (!last && r > 0)
    for (;;) uv_run(loop, UV_RUN_ONCE); /* until killed */
  /* round 0 places the schedules (their first tick: T0 + a period) and
     closes; the last run catches up and says what it finds */
  for (int turns = 0; turns < 100000; turns++) {
    bool caught_up = true;
    for (int s = 0; s < 3; s++) {
      mly_schedule_info si;
      if (mly_schedule_info_get(rt, names[s], &si) < 0 ||
          si.next_ms <= vnow_ms)
        caught_up = false;
    }
    int live = 0;
    mly_task_foreach(rt, NULL, MLY_TASKS_ALL, count_live, &live);
    if (caught_up && (live == 0 || r == 0)) break;
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(200);
  }
  for (int s = 0; s < 3 && last; s++) {
    mly_schedule_info si;
    if (mly_schedule_info_get(rt, names[s], &si) < 0) _exit(7);
    logf_("sched %s %llu %llu %lld\n", names[s],
          (unsigned long long)si.enqueued, (unsigned long long)si.skipped,
          (long long)si.next_ms);
    for (int64_t t = T0_MS; t <= vnow_ms; t += PERIOD_MS) {
      char tn[64];
      mly_name_info ni;
      snprintf(tn, sizeof tn, "%s@%lld", names[s], (long long)(t / 1000));
      if (mly_task_lookup(rt, MLY_QUEUE_DEFAULT, tn, &ni) == 0)
        logf_("have %s %d\n", tn, ni.state == MLY_NAME_ENDED);
    }
  }
  mly_runtime_close(rt);
  _exit(0);
}

static int count_starts(void) {
  FILE *f = fopen(logpath, "r");
  if (f == NULL) return 0;
  char line[160];
  int n = 0;
  while (fgets(line, sizeof line, f)) n += strncmp(line, "start ", 6) == 0;
  fclose(f);
  return n;
}

static pid_t start_child(int r, bool last) {
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) child(r, last);
  return pid;
}

/* Index of tick t (UTC seconds) in the grid, or -1. */
static int grid_idx(long long t) {
  long long p = PERIOD_MS / 1000, first = T0_MS / 1000 + p;
  if (t < first || (t - first) % p != 0) return -1;
  long long i = (t - first) / p;
  return i < MAXTICKS ? (int)i : -1;
}

START_TEST(kill9_in_ticks_each_once) {
  h_tmpdir(dir, sizeof dir, "mealy-schedcrash");
  snprintf(logpath, sizeof logpath, "%s.log", dir);
  unlink(logpath);
  unsigned seed = (unsigned)time(NULL);
  /* the kill lands 0-8 ms after the start on the journal; a commit on
   * PostgreSQL takes longer (a round trip, the server's WAL flush on a
   * shared machine), so there the window is 0-60 ms: else the kills all
   * land before the first tick commits and the policies never differ */
  unsigned kill_window_us = h_on_journal() ? 8000 : 60000;
  if (getenv("SCHED_CRASH_SEED")) seed = (unsigned)atoi(getenv("SCHED_CRASH_SEED"));
  pid_t pid = start_child(0, false);
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round 0: %d", st);
  for (int r = 1; r < ROUNDS; r++) {
    pid = start_child(r, false);
    for (int w = 0; w < 30000 && count_starts() < r + 1; w++) usleep(1000);
    usleep((useconds_t)(rand_r(&seed) % kill_window_us));
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFSIGNALED(st), "round %d: the child failed (%d, seed %u)",
                  r, st, seed);
  }
  pid = start_child(ROUNDS, true);
  st = 0;
  for (int i = 0; i < 1200 && waitpid(pid, &st, WNOHANG) == 0; i++)
    usleep(100000);
  if (waitpid(pid, &st, WNOHANG) == 0 && kill(pid, SIGKILL) == 0) {
    waitpid(pid, &st, 0);
    ck_abort_msg("the last run did not finish (seed %u)", seed);
  }
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "last run: %d", st);

  /* the grid: every tick from the first (T0 + 1 min) to the last due */
  long long last_now = now_of(ROUNDS) / 1000, p = PERIOD_MS / 1000;
  int ngrid = grid_idx(last_now - (last_now - T0_MS / 1000) % p) + 1;
  ck_assert_int_gt(ngrid, ROUNDS);
  /* each round's newest due tick, and whether it was within the grace */
  static bool cand[MAXTICKS], cand_fresh[MAXTICKS];
  memset(cand, 0, sizeof cand), memset(cand_fresh, 0, sizeof cand_fresh);
  for (int r = 0; r <= ROUNDS; r++) {
    long long now = now_of(r) / 1000, age = (now - T0_MS / 1000) % p;
    int i = grid_idx(now - age);
    if (i < 0) continue; /* before the first tick */
    cand[i] = true;
    if (age * 1000 <= MLY_SCHEDULE_GRACE_MS) cand_fresh[i] = true;
  }
  long long final_age = (last_now - T0_MS / 1000) % p;
  static bool have[3][MAXTICKS], done[3][MAXTICKS], ran[3][MAXTICKS];
  memset(have, 0, sizeof have), memset(done, 0, sizeof done);
  memset(ran, 0, sizeof ran);
  unsigned long long enq[3] = {0}, skipped[3] = {0};
  int rerun = 0, nsched = 0;
  FILE *f = fopen(logpath, "r");
  ck_assert_ptr_nonnull(f);
  char line[160], nm[16];
  long long t;
  int ended;
  int rounds_ran = 0, round = 0; /* killed rounds where a tick ran first */
  bool counted = false;
  while (fgets(line, sizeof line, f)) {
    int s = -1;
    if (strncmp(line, "start ", 6) == 0) round = atoi(line + 6), counted = false;
    if (strncmp(line, "run ", 4) == 0 && round > 0 && round < ROUNDS &&
        !counted)
      rounds_ran++, counted = true;
    for (int k = 0; k < 3; k++)
      if (strncmp(strchr(line, ' ') ? strchr(line, ' ') + 1 : "", names[k],
                  strlen(names[k])) == 0)
        s = k;
    unsigned long long e, k;
    long long next;
    if (sscanf(line, "sched %15s %llu %llu %lld", nm, &e, &k, &next) == 4) {
      ck_assert_int_ge(s, 0);
      enq[s] = e, skipped[s] = k, nsched++;
      ck_assert_int_gt(next, last_now * 1000); /* caught up */
    } else if (sscanf(line, "have %15[a-z]@%lld %d", nm, &t, &ended) == 3) {
      int i = grid_idx(t);
      ck_assert_msg(i >= 0 && i < ngrid, "a task for tick %lld, off the "
                    "grid", t);
      ck_assert_msg(ended, "%s@%lld never ended", nm, t);
      have[s][i] = true;
    } else if (sscanf(line, "done %15[a-z]@%lld", nm, &t) == 2) {
      if (grid_idx(t) >= 0) done[s][grid_idx(t)] = true;
    } else if (sscanf(line, "run %15[a-z]@%lld", nm, &t) == 2) {
      int i = grid_idx(t);
      ck_assert(s >= 0 && i >= 0);
      if (done[s][i]) {
        rerun++;
        fprintf(stderr, "%s@%lld ran after its success committed\n", nm, t);
      }
      ran[s][i] = true;
    }
  }
  fclose(f);
  fprintf(stderr, "%d of %d killed rounds ran a tick before the kill\n",
          rounds_ran, ROUNDS - 1);
  ck_assert_int_eq(nsched, 3);
  ck_assert_int_eq(rerun, 0);
  for (int s = 0; s < 3; s++) {
    unsigned long long n = 0;
    for (int i = 0; i < ngrid; i++) {
      n += have[s][i];
      if (have[s][i])
        ck_assert_msg(ran[s][i], "%s: tick %d enqueued, never ran", names[s],
                      i);
    }
    fprintf(stderr, "%s: %d ticks, %llu enqueued, %llu skipped\n", names[s],
            ngrid, enq[s], skipped[s]);
    ck_assert_msg(enq[s] + skipped[s] == (unsigned long long)ngrid,
                  "%s: %llu enqueued + %llu skipped, %d ticks (seed %u)",
                  names[s], enq[s], skipped[s], ngrid, seed);
    ck_assert_msg(n == enq[s], "%s: %llu ticks have a task, %llu counted "
                  "enqueued (seed %u)", names[s], n, enq[s], seed);
    for (int i = 0; i < ngrid; i++) {
      /* all: every tick; one: only a run's newest due tick; skip: only
         one within the grace at that run */
      if (s == 0) ck_assert_msg(have[s][i], "all: tick %d missing", i);
      if (s == 1 && have[s][i])
        ck_assert_msg(cand[i], "one: tick %d enqueued, the newest of no "
                      "run (seed %u)", i, seed);
      if (s == 2 && have[s][i])
        ck_assert_msg(cand_fresh[i], "skip: tick %d enqueued, missed at "
                      "every run (seed %u)", i, seed);
    }
  }
  ck_assert_int_eq(skipped[0], 0);
  /* the last run's newest tick: one enqueues it whatever its age, skip
     only within the grace */
  ck_assert(have[1][ngrid - 1]);
  ck_assert_int_eq(have[2][ngrid - 1],
                   final_age * 1000 <= MLY_SCHEDULE_GRACE_MS);
  /* the policies did differ: some ticks were missed */
  ck_assert_uint_gt(skipped[1], 0);
  ck_assert_uint_gt(skipped[2], skipped[1]);
  h_rmtree(dir);
  unlink(logpath);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("schedule_crash");
  TCase *tc = tcase_create("crash");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, kill9_in_ticks_each_once);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(suite)
