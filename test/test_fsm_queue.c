/*
 * test_fsm_queue.c - YAML machines and transitions with `queue:`: each
 * dispatch takes a slot of that queue, so the queue's max_concurrent,
 * rate and concurrency_key limits hold for the machines' steps, a paused
 * queue holds them, and an undeclared queue is an error at its
 * FILE:LINE:COL when the machines are loaded.
 *
 * Limits are counted over a run, never timed.  The concurrency tests run
 * blocking actions that wait at a gate: the gate opens (all waiting
 * actions return) only once as many actions run as the limits allow, so
 * the highest number seen running is exactly the limit when it holds and
 * more when it does not.  The rate test checks each start against the
 * tokens that could exist by then (bucket + rate x elapsed), an upper
 * bound a slow machine only makes easier to meet.
 *
 * The crash test kills -9 a durable workload at random moments (one
 * queue, max_concurrent 1, machines stepping through it), restarts it
 * and runs it to the end: every instance ends with each step applied
 * once (no slot leaked across a kill: with one slot, a leaked one would
 * stop everything; no step run again after its commit: a step's key,
 * NAME/SEQ, never shows up again once the next one has).
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

#include "fsm_helpers.h"

/* ---- the gate: blocking actions wait until the loop opens it ---- */

#define NKEYS 3
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int running, max_running, krun[NKEYS], kmax[NKEYS];
static int left[NKEYS]; /* actions still to run, per key */
static uint64_t gen;

static int act_work(mly_action_call *c, void *arg) {
  (void)arg;
  int64_t k = 0;
  mly_map_get_int(mly_action_context(c), "k", &k);
  pthread_mutex_lock(&mu);
  running++;
  if (running > max_running) max_running = running;
  if (++krun[k] > kmax[k]) kmax[k] = krun[k];
  uint64_t my = gen;
  while (gen == my) pthread_cond_wait(&cv, &mu);
  running--;
  krun[k]--;
  left[k]--;
  pthread_mutex_unlock(&mu);
  return mly_action_event(c, "done");
}

/* The fsm runs blocking actions on all but one of libuv's threads: 4
 * threads, 3 at once, whatever the environment says (before libuv
 * starts its pool). */
__attribute__((constructor)) static void pool_size(void) {
  setenv("UV_THREADPOOL_SIZE", "4", 1);
}

/* On the loop thread, each turn: open the gate once as many actions run
 * as the limits allow (`cap` at once, `per_key` per key). */
static int cap, per_key;
static void gate(void) {
  pthread_mutex_lock(&mu);
  int want = 0;
  for (int k = 0; k < NKEYS; k++)
    want += left[k] < per_key ? left[k] : per_key;
  if (want > cap) want = cap;
  if (want > 0 && running >= want) {
    gen++;
    pthread_cond_broadcast(&cv);
  }
  pthread_mutex_unlock(&mu);
}

static int nstarted;
static bool all_ended(mly_runtime *rt, void *arg) {
  (void)arg;
  gate();
  for (int i = 0; i < nstarted; i++) {
    char name[32];
    snprintf(name, sizeof name, "i%d", i);
    if (!fh_ended(rt, name)) return false;
  }
  return true;
}

/* Two actions are in (without opening the gate). */
static bool two_running(mly_runtime *rt, void *arg) {
  (void)rt, (void)arg;
  pthread_mutex_lock(&mu);
  bool two = running == 2;
  pthread_mutex_unlock(&mu);
  return two;
}

static void start(mly_runtime *rt, const char *machine, int n, int keys) {
  for (int i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "i%d", i);
    mly_value *c = mly_value_map();
    int k = keys ? i * keys / n : 0; /* in blocks: 0 0 .. 1 1 .. 2 2 */
    mly_map_set_int(c, "k", k);
    mly_map_set_int(c, "i", i);
    ck_assert_int_eq(mly_fsm_start(rt, machine, name, c, NULL, 0, NULL), 0);
    left[k]++;
  }
  nstarted = n;
}

static mly_runtime *queue_rt(const mly_queue_def *d) {
  mly_runtime *rt = h_runtime();
  ck_assert_int_eq(mly_fsm_attach(rt), 0);
  ck_assert_int_eq(mly_queues_open(rt), 0);
  char err[256] = "";
  ck_assert_msg(mly_queue_declare(rt, d, err, sizeof err) == 0, "%s", err);
  mly_action_register(rt, "Work", act_work, NULL, MLY_ACTION_BLOCKING);
  return rt;
}

static void reset(void) {
  running = max_running = 0;
  memset(krun, 0, sizeof krun);
  memset(kmax, 0, sizeof kmax);
  memset(left, 0, sizeof left);
}

/* The machine's queue: every dispatch of it (entering work, then done). */
static const char *machine_queue_yaml =
    "state_machines:\n"
    "- name: mq\n"
    "  queue: lim\n"
    "  states:\n"
    "  - {name: work, initial: true, action: Work,\n"
    "     transitions: [{event: done, to: end}]}\n"
    "  - {name: end, final: true}\n";

START_TEST(max_concurrent_holds_for_steps) {
  reset();
  /* 2: below the fsm's own threadpool bound (3 with 4 threads) */
  mly_queue_def d = {.name = "lim", .max_concurrent = 2,
                     .retry = MLY_RETRY_UNSET};
  mly_runtime *rt = queue_rt(&d);
  fh_add(rt, machine_queue_yaml);
  cap = 2, per_key = 1000;
  start(rt, "mq", 30, 0);
  fh_until(rt, two_running, rt, 200000); /* the gate still shut */
  mly_queue_info qi;
  ck_assert_int_eq(mly_queue_info_get(rt, "lim", &qi), 0);
  ck_assert_uint_eq(qi.steps_running, 2);
  ck_assert_uint_eq(qi.steps_waiting, 28);
  /* show says what the 28 wait for (it said phase dispatch, nothing) */
  int says = 0;
  for (int i = 0; i < 30; i++) {
    char name[32];
    mly_fsm_info fi;
    snprintf(name, sizeof name, "i%d", i);
    ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, name), &fi), 0);
    says += strcmp(fi.awaits_queue, "lim") == 0;
  }
  ck_assert_int_eq(says, 28);
  fh_until(rt, all_ended, NULL, 200000);
  ck_assert_int_eq(max_running, 2);
  for (int i = 0; i < 30; i++) {
    char name[32];
    snprintf(name, sizeof name, "i%d", i);
    ck_assert_int_eq(fh_end_status(rt, name), 0);
  }
  mly_runtime_close(rt);
}
END_TEST

START_TEST(concurrency_key_holds_for_steps) {
  reset();
  mly_queue_def d = {.name = "lim", .max_concurrent = 100,
                     .concurrency_key = "k", .concurrency_key_max = 1,
                     .retry = MLY_RETRY_UNSET};
  mly_runtime *rt = queue_rt(&d);
  fh_add(rt, machine_queue_yaml);
  cap = 3, per_key = 1; /* one per key, three keys: the pool's 3 */
  start(rt, "mq", 30, NKEYS);
  fh_until(rt, all_ended, NULL, 200000);
  for (int k = 0; k < NKEYS; k++) ck_assert_int_eq(kmax[k], 1);
  ck_assert_int_eq(max_running, NKEYS);
  mly_runtime_close(rt);
}
END_TEST

/* Without queue: the same machines run as the pool allows: the gate
 * test above can tell a limit from none. */
START_TEST(no_queue_no_limit) {
  reset();
  mly_queue_def d = {.name = "lim", .max_concurrent = 1,
                     .retry = MLY_RETRY_UNSET};
  mly_runtime *rt = queue_rt(&d);
  fh_add(rt, "state_machines:\n"
             "- name: free\n"
             "  states:\n"
             "  - {name: work, initial: true, action: Work,\n"
             "     transitions: [{event: done, to: end}]}\n"
             "  - {name: end, final: true}\n");
  cap = 3, per_key = 1000;
  start(rt, "free", 12, 0);
  fh_until(rt, all_ended, NULL, 200000);
  ck_assert_int_eq(max_running, 3);
  mly_runtime_close(rt);
}
END_TEST

/* ---- rate: a transition's queue (one slot per instance) ---- */

static uint64_t t0_us, starts_us[64];
static int nstarts;
static int act_go(mly_action_call *c, void *arg) {
  (void)arg;
  return mly_action_event(c, "go");
}
static int act_tick(mly_action_call *c, void *arg) {
  (void)arg;
  if (nstarts < 64) starts_us[nstarts] = uv_hrtime() / 1000;
  nstarts++;
  return mly_action_event(c, "done");
}

/* Only the transition into b runs through queue r: one slot each. */
static const char *trans_queue_yaml =
    "state_machines:\n"
    "- name: rq\n"
    "  states:\n"
    "  - {name: a, initial: true, action: Go,\n"
    "     transitions: [{event: go, to: b, queue: r}]}\n"
    "  - {name: b, action: Tick, transitions: [{event: done, to: end}]}\n"
    "  - {name: end, final: true}\n";

START_TEST(rate_holds_for_a_transition) {
  mly_queue_def d = {.name = "r", .rate = 200, .bucket_size = 5,
                     .retry = MLY_RETRY_UNSET};
  mly_runtime *rt = queue_rt(&d);
  mly_action_register(rt, "Go", act_go, NULL, 0);
  mly_action_register(rt, "Tick", act_tick, NULL, 0);
  fh_add(rt, trans_queue_yaml);
  nstarts = 0;
  t0_us = uv_hrtime() / 1000;
  start(rt, "rq", 40, 0);
  fh_until(rt, all_ended, NULL, 200000);
  ck_assert_int_eq(nstarts, 40);
  for (int i = 0; i < 40; i++) {
    double elapsed = (double)(starts_us[i] - t0_us) / 1e6;
    ck_assert_msg(i + 1 <= 5 + 200 * elapsed + 1e-6,
                  "start %d at %.6f s: more than the bucket allows", i,
                  elapsed);
  }
  mly_queue_info qi;
  ck_assert_int_eq(mly_queue_info_get(rt, "r", &qi), 0);
  ck_assert(qi.tokens <= 5.0);
  mly_runtime_close(rt);
}
END_TEST

/* ---- pause ---- */

START_TEST(paused_queue_holds_steps) {
  mly_queue_def d = {.name = "r", .paused = true, .retry = MLY_RETRY_UNSET};
  mly_runtime *rt = queue_rt(&d);
  mly_action_register(rt, "Go", act_go, NULL, 0);
  mly_action_register(rt, "Tick", act_tick, NULL, 0);
  fh_add(rt, trans_queue_yaml);
  nstarts = 0;
  start(rt, "rq", 5, 0);
  h_turns(rt, 200);
  ck_assert_int_eq(nstarts, 0); /* each went as far as the queue */
  mly_queue_info qi;
  ck_assert_int_eq(mly_queue_info_get(rt, "r", &qi), 0);
  ck_assert_uint_eq(qi.steps_waiting, 5);
  ck_assert_uint_eq(qi.steps_running, 0);
  for (int i = 0; i < 5; i++) {
    char name[32];
    snprintf(name, sizeof name, "i%d", i);
    mly_fsm_info fi;
    ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, name), &fi), 0);
    ck_assert_str_eq(fi.state, "a");
  }
  ck_assert_int_eq(mly_queue_resume(rt, "r"), 0);
  fh_until(rt, all_ended, NULL, 200000);
  ck_assert_int_eq(nstarts, 5);
  /* closed while steps wait in a paused queue: their places go with
     them (the sanitizer build checks nothing is left or used after) */
  ck_assert_int_eq(mly_queue_pause(rt, "r"), 0);
  for (int i = 0; i < 3; i++) {
    char name[32];
    snprintf(name, sizeof name, "w%d", i);
    ck_assert_int_eq(mly_fsm_start(rt, "rq", name, NULL, NULL, 0, NULL), 0);
  }
  h_turns(rt, 200);
  ck_assert_int_eq(nstarts, 5);
  mly_runtime_close(rt);
}
END_TEST

/* The queue's retry policy fills what the machine leaves: 2 retries
 * (the fsm's own default: no limit), then the instance fails. */
static int fails;
static int act_fail(mly_action_call *c, void *arg) {
  (void)arg;
  fails++;
  return mly_action_fail(c, false, "not yet");
}

START_TEST(queue_retry_policy_applies) {
  mly_queue_def d = {.name = "r", .retry = {.task_retry_limit = 2,
                                            .min_backoff_ms = 1,
                                            .max_backoff_ms = 2,
                                            .max_doublings = -1,
                                            .task_age_limit_ms = -1,
                                            .jitter = -1}};
  mly_runtime *rt = queue_rt(&d);
  mly_action_register(rt, "Fail", act_fail, NULL, 0);
  fh_add(rt, "state_machines:\n"
             "- name: f\n"
             "  queue: r\n"
             "  states:\n"
             "  - {name: a, initial: true, action: Fail,\n"
             "     transitions: [{event: x, to: end}]}\n"
             "  - {name: end, final: true}\n"
             "- name: g\n"
             "  queue: r\n"
             "  task_retry_limit: 4\n"
             "  states:\n"
             "  - {name: a, initial: true, action: Fail,\n"
             "     transitions: [{event: x, to: end}]}\n"
             "  - {name: end, final: true}\n");
  fails = 0;
  start(rt, "f", 1, 0);
  fh_until(rt, all_ended, NULL, 100000);
  ck_assert_int_lt(fh_end_status(rt, "i0"), 0);
  ck_assert_int_eq(fails, 3); /* the first try and the queue's 2 retries */
  /* the machine's own limit wins over the queue's */
  ck_assert_int_eq(mly_fsm_start(rt, "g", "g0", NULL, NULL, 0, NULL), 0);
  fails = 0;
  fh_until(rt, fh_ended, "g0", 100000);
  ck_assert_int_eq(fails, 5);
  mly_runtime_close(rt);
}
END_TEST

/* A queue the runtime has no layer for fails the dispatch for good. */
START_TEST(no_queue_layer_fails_dispatch) {
  mly_runtime *rt = h_runtime();
  ck_assert_int_eq(mly_fsm_attach(rt), 0);
  mly_action_register(rt, "Go", act_go, NULL, 0);
  mly_action_register(rt, "Tick", act_tick, NULL, 0);
  fh_add(rt, trans_queue_yaml);
  nstarts = 0;
  start(rt, "rq", 1, 0);
  fh_until(rt, all_ended, NULL, 100000);
  ck_assert_int_lt(fh_end_status(rt, "i0"), 0);
  ck_assert_int_eq(nstarts, 0);
  mly_runtime_close(rt);
}
END_TEST

/* ---- load-time check ---- */

static char load_err[512];
static void keep_err(const mly_conf_msg *m, void *arg) {
  (void)arg;
  if (load_err[0] == '\0')
    snprintf(load_err, sizeof load_err, "%s:%u:%u: %s", m->file, m->line,
             m->col, m->text);
}

static bool conf_or_default(const char *name, void *arg) {
  return mly_queue_conf_has(arg, name) || strcmp(name, "default") == 0;
}

static int load_with_conf(const char *yaml) {
  mly_queue_conf *qc = mly_queue_conf_new();
  ck_assert_ptr_nonnull(qc);
  mly_conf_section sec[2];
  mly_queue_conf_sections(qc, sec);
  mly_fsm_load_options o = {.on_error = keep_err, .sections = sec,
                            .nsections = 2,
                            .queue_known = conf_or_default,
                            .queue_arg = qc};
  mly_fsm_set *set = NULL;
  load_err[0] = '\0';
  int rc = mly_fsm_load_text("q.yaml", yaml, strlen(yaml), &o, &set);
  mly_fsm_set_free(set);
  mly_queue_conf_free(qc);
  return rc;
}

START_TEST(unknown_queue_at_load) {
  /* a machine's and a transition's queue: each said where it is */
  ck_assert_int_eq(load_with_conf("state_machines:\n"
                                  "- name: m\n"
                                  "  queue: nosuch\n"
                                  "  states:\n"
                                  "  - {name: a, initial: true, final: true}\n"),
                   MLY_EINVAL);
  ck_assert_msg(strstr(load_err, "q.yaml:3:10: queue 'nosuch' is not "
                       "declared") == load_err, "%s", load_err);
  ck_assert_int_eq(load_with_conf("state_machines:\n"
                                  "- name: m\n"
                                  "  states:\n"
                                  "  - name: a\n"
                                  "    initial: true\n"
                                  "    action: Go\n"
                                  "    transitions:\n"
                                  "    - {event: e, to: b, queue: other}\n"
                                  "  - {name: b, final: true}\n"
                                  "queues:\n"
                                  "- {name: others}\n"),
                   MLY_EINVAL);
  ck_assert_msg(strstr(load_err, "q.yaml:8:32: queue 'other' is not "
                       "declared") == load_err, "%s", load_err);
  /* declared below the machines (and the default queue): fine */
  ck_assert_int_eq(load_with_conf("state_machines:\n"
                                  "- name: m\n"
                                  "  queue: later\n"
                                  "  states:\n"
                                  "  - name: a\n"
                                  "    initial: true\n"
                                  "    action: Go\n"
                                  "    transitions:\n"
                                  "    - {event: e, to: b, queue: default}\n"
                                  "  - {name: b, final: true}\n"
                                  "queues:\n"
                                  "- {name: later, max_concurrent: 2}\n"),
                   0);
}
END_TEST

/* ---- kill -9 ---- */

#define CN 16
#define CSTEPS 40
static char dir[64];
static int report_fd = -1;
static int inside; /* child: Step calls running now (threads) */

static int act_step(mly_action_call *c, void *arg) {
  (void)arg;
  if (__atomic_add_fetch(&inside, 1, __ATOMIC_SEQ_CST) > 1)
    fh_append(dir, "steps.log", "OVER\n");
  mly_value *ctx = mly_action_context(c);
  int64_t n = 0;
  mly_map_get_int(ctx, "n", &n);
  fh_append(dir, "steps.log", "%s %lld\n", mly_action_key(c), (long long)n);
  usleep(300); /* widens the moments a kill finds it running */
  mly_map_set_int(ctx, "n", n + 1);
  __atomic_sub_fetch(&inside, 1, __ATOMIC_SEQ_CST);
  return mly_action_event(c, n + 1 < CSTEPS ? "again" : "fin");
}

static const char *crash_yaml =
    "state_machines:\n"
    "- name: cq\n"
    "  queue: one\n"
    "  states:\n"
    "  - {name: s, initial: true, action: Step,\n"
    "     transitions: [{event: again, to: s}, {event: fin, to: end}]}\n"
    "  - {name: end, final: true}\n";

static void tick(uv_timer_t *t) { (void)t; }

static int ended_count(mly_runtime *rt) {
  int n = 0;
  for (int i = 0; i < CN; i++) {
    char name[32];
    snprintf(name, sizeof name, "c%d", i);
    if (fh_ended(rt, name)) n++;
  }
  return n;
}

static void child(void) {
  mly_runtime *rt = NULL;
  if (mly_runtime_new(&rt, NULL, NULL) < 0 || mly_fsm_attach(rt) < 0 ||
      mly_queues_open(rt) < 0)
    _exit(92);
  mly_queue_def d = {.name = "one", .max_concurrent = 1,
                     .retry = MLY_RETRY_UNSET};
  if (mly_queue_declare(rt, &d, NULL, 0) < 0) _exit(92);
  mly_action_register(rt, "Step", act_step, NULL, MLY_ACTION_BLOCKING);
  mly_journal_options jo = {.dir = dir, .sync = MLY_SYNC_ALWAYS};
  char err[256];
  if (h_durable_open(rt, &jo, err, sizeof err) < 0) _exit(93);
  if (write(report_fd, "open\n", 5) != 5) _exit(91);
  mly_fsm_load_options o = {.action_known = mly_action_known, .action_arg = rt};
  mly_fsm_set *set = NULL;
  if (mly_fsm_load_text("crash.yaml", crash_yaml, strlen(crash_yaml), &o,
                        &set) < 0 ||
      mly_fsm_add(rt, set) < 0)
    _exit(94);
  mly_fsm_set_free(set);
  for (int i = 0; i < CN; i++) {
    char name[32];
    snprintf(name, sizeof name, "c%d", i);
    mly_value *c = mly_value_map();
    mly_map_set_int(c, "i", i);
    int rc = mly_fsm_start(rt, "cq", name, c, NULL, 0, NULL);
    if (rc < 0 && rc != MLY_EEXIST) _exit(96);
  }
  uv_timer_t t;
  uv_timer_init(mly_runtime_loop(rt), &t);
  uv_timer_start(&t, tick, 5, 5);
  for (int turns = 0; turns < 200000; turns++) {
    if (ended_count(rt) == CN) {
      if (write(report_fd, "done\n", 5) != 5) _exit(91);
      for (;;) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE); /* until killed */
    }
    uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  }
  _exit(95);
}

static pid_t start_child(int *rfd) {
  int p[2];
  ck_assert_int_eq(pipe(p), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(p[0]);
    report_fd = p[1];
    child();
    _exit(0);
  }
  close(p[1]);
  *rfd = p[0];
  return pid;
}

/* Waits at most ms for the child's report `what` (5 bytes: "open\n",
 * "done\n"; an "open\n" before a "done\n" is passed over): 1 when it
 * came.  An open on PostgreSQL waits for a killed one's lease. */
static int child_says(int fd, const char *what, int ms) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, el >= ms ? 0 : (int)(ms - el)) != 1) return 0;
    char buf[8] = "";
    ck_assert_int_eq(read(fd, buf, 5), 5);
    if (strncmp(buf, what, 5) == 0) return 1;
    ck_assert_msg(strncmp(buf, "open\n", 5) == 0, "the child said %.5s", buf);
  }
}

static void kill_child(pid_t pid) {
  ck_assert_int_eq(kill(pid, SIGKILL), 0);
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert_msg(WIFSIGNALED(st), "the child exited by itself (%d)",
                WEXITSTATUS(st));
}

START_TEST(kill9_no_slot_leaked_no_step_twice) {
  h_tmpdir(dir, sizeof dir, "mealy-fsmq");
  uint64_t seed = 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
  int kills = 0;
  for (int r = 0; r < 14; r++) {
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    int fd;
    pid_t pid = start_child(&fd);
    /* killed 10-100 ms into its work: after its store is open (on
     * PostgreSQL an open takes a lease's time), or, one round in four,
     * counted from its start (a kill inside the open) */
    if (seed % 4) ck_assert_msg(child_says(fd, "open\n", 300000), "no open");
    int got = child_says(fd, "done\n", 10 + (int)((seed >> 8) % 90));
    kill_child(pid);
    close(fd);
    if (got == 1) break;
    kills++;
  }
  fprintf(stderr, "kill9_no_slot_leaked_no_step_twice: %d kills\n", kills);
  int fd;
  pid_t pid = start_child(&fd);
  ck_assert_msg(child_says(fd, "open\n", 300000), "no open");
  ck_assert_msg(child_says(fd, "done\n", 300000), "the last run never ended "
                "(a slot held for good?)");
  kill_child(pid);
  close(fd);
  /* the log, in order: per instance, the step numbers never go back */
  char path[128];
  snprintf(path, sizeof path, "%s/steps.log", dir);
  FILE *f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  long long last_seq[CN], calls = 0;
  for (int i = 0; i < CN; i++) last_seq[i] = -1;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    ck_assert_msg(strcmp(line, "OVER\n") != 0, "two steps ran at once "
                  "through a queue of one slot");
    int i;
    long long seq, n;
    ck_assert_msg(sscanf(line, "c%d/%lld %lld", &i, &seq, &n) == 3, "%s",
                  line);
    ck_assert(i >= 0 && i < CN);
    /* the context's n is the committed steps: the key's seq */
    ck_assert_int_eq(seq, n);
    ck_assert_msg(seq >= last_seq[i], "c%d: step %lld ran again after step "
                  "%lld had run (so after its commit)", i, seq, last_seq[i]);
    last_seq[i] = seq;
    calls++;
  }
  fclose(f);
  for (int i = 0; i < CN; i++) ck_assert_int_eq(last_seq[i], CSTEPS - 1);
  ck_assert_int_ge(calls, CN * CSTEPS);
  h_rmtree(dir);
}
END_TEST

/* ---- a dispatch that cannot run gives its slot back ---- */

static int later_calls;
static int act_later(mly_action_call *c, void *arg) {
  (void)arg;
  later_calls++;
  return mly_action_event(c, "done");
}
static int act_quick(mly_action_call *c, void *arg) {
  (void)arg;
  return mly_action_event(c, "done");
}
static void reg_one(mly_runtime *rt) {
  ck_assert_int_eq(mly_queues_open(rt), 0);
  mly_queue_def d = {.name = "one", .max_concurrent = 1,
                     .retry = MLY_RETRY_UNSET};
  char err[256] = "";
  ck_assert_msg(mly_queue_declare(rt, &d, err, sizeof err) == 0, "%s", err);
  ck_assert_int_eq(mly_action_register(rt, "Quick", act_quick, NULL, 0), 0);
}
static void reg_one_later(mly_runtime *rt) {
  reg_one(rt);
  ck_assert_int_eq(mly_action_register(rt, "Later", act_later, NULL, 0), 0);
}
static bool awaits_later(mly_runtime *rt, void *name) {
  mly_fsm_info fi;
  mly_name_info ni;
  return mly_name_lookup(rt, name, &ni) == 0 && ni.state == MLY_NAME_LIVE &&
         mly_fsm_info_get(rt, ni.id, &fi) == 0 &&
         strcmp(fi.awaits_action, "Later") == 0;
}

/* Finding: a dispatch waiting for an action no one registered (a host
 * restarted without the library) kept its queue's slot, so a
 * max_concurrent: 1 queue stopped for every other instance.  It gives
 * the slot back while it waits, and takes one again when it can run. */
START_TEST(awaiting_action_gives_slot_back) {
  h_tmpdir(dir, sizeof dir, "mealy-fsmq");
  mly_runtime *rt = fh_durable(dir, reg_one_later);
  fh_add(rt, "state_machines:\n"
             "- name: lw\n"
             "  queue: one\n"
             "  states:\n"
             "  - {name: a, initial: true, wait: {events: [on]},\n"
             "     transitions: [{event: on, to: b}]}\n"
             "  - {name: b, action: Later, transitions: [{event: done, to: "
             "c}]}\n"
             "  - {name: c, final: true}\n");
  ck_assert_int_eq(mly_fsm_start(rt, "lw", "lw-1", NULL, NULL, 0, NULL), 0);
  fh_at at = {"lw-1", "wait", "a"};
  fh_until(rt, fh_is_at, &at, 10000);
  mly_runtime_close(rt);

  rt = fh_durable(dir, reg_one); /* without Later */
  fh_add(rt, "state_machines:\n"
             "- name: qk\n"
             "  queue: one\n"
             "  states:\n"
             "  - {name: a, initial: true, action: Quick,\n"
             "     transitions: [{event: done, to: b}]}\n"
             "  - {name: b, final: true}\n");
  ck_assert_int_eq(mly_fsm_send(rt, "lw-1", "on", NULL, NULL, NULL), 0);
  fh_until(rt, awaits_later, "lw-1", 10000);
  mly_queue_info qi;
  ck_assert_int_eq(mly_queue_info_get(rt, "one", &qi), 0);
  ck_assert_uint_eq(qi.steps_running, 0);
  /* the queue's one slot serves the others meanwhile */
  for (int i = 0; i < 3; i++) {
    char name[16];
    snprintf(name, sizeof name, "q%d", i);
    ck_assert_int_eq(mly_fsm_start(rt, "qk", name, NULL, NULL, 0, NULL), 0);
    fh_until(rt, fh_ended, name, 10000);
    ck_assert_int_eq(fh_end_status(rt, name), 0);
  }
  ck_assert(awaits_later(rt, "lw-1"));
  /* registered: it takes a slot again (one held by no one else) and
   * ends */
  ck_assert_int_eq(mly_action_register(rt, "Later", act_later, NULL, 0), 0);
  fh_until(rt, fh_ended, "lw-1", 10000);
  ck_assert_int_eq(fh_end_status(rt, "lw-1"), 0);
  ck_assert_int_eq(later_calls, 1);
  ck_assert_int_eq(mly_queue_info_get(rt, "one", &qi), 0);
  ck_assert_uint_eq(qi.steps_running, 0);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("fsm_queue");
  TCase *tc = tcase_create("limits");
  tcase_add_test(tc, max_concurrent_holds_for_steps);
  tcase_add_test(tc, concurrency_key_holds_for_steps);
  tcase_add_test(tc, no_queue_no_limit);
  tcase_add_test(tc, rate_holds_for_a_transition);
  tcase_add_test(tc, paused_queue_holds_steps);
  tcase_add_test(tc, no_queue_layer_fails_dispatch);
  tcase_add_test(tc, queue_retry_policy_applies);
  tcase_add_test(tc, unknown_queue_at_load);
  tcase_add_test(tc, awaiting_action_gives_slot_back);
  suite_add_tcase(s, tc);
  TCase *tk = tcase_create("crash");
  tcase_set_timeout(tk, 600);
  tcase_add_test(tk, kill9_no_slot_leaked_no_step_twice);
  suite_add_tcase(s, tk);
  return s;
}

H_MAIN(suite)
