/*
 * test_fsm_crash.c - kill -9 in the middle of YAML machine instances:
 * in a wait state (an event sent after the restart, and a timeout that
 * runs out across it), in a retry's backoff, and inside a blocking
 * action.  A child process runs the machines on a state directory and
 * says on a pipe when they are where the test wants them; the test
 * SIGKILLs it and starts another on the same directory, which must bring
 * every instance to its final state: nothing lost, no attempt counted
 * twice, the same idempotency key before and after the crash.  The
 * actions append what they did to files in the directory, which outlive
 * the kill.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>

#include "fsm_helpers.h"

#define N 12

static char dir[64];
static int report_fd = -1; /* child: where to say things */
static bool slow_blocks;   /* child: the blocking action blocks for good */

static void append(const char *file, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void append(const char *file, const char *fmt, ...) {
  char path[128], line[256];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, line, (size_t)n) != n) _exit(90);
  close(fd);
}

static int act_go(mly_action_call *c, void *arg) {
  (void)arg;
  return mly_action_event(c, "go");
}

static int act_final(mly_action_call *c, void *arg) {
  (void)arg;
  int64_t i = -1;
  mly_map_get_int(mly_action_context(c), "i", &i);
  append("final.log", "%s %s %lld\n", mly_action_key(c), mly_action_state(c),
         (long long)i);
  return 0;
}

static int act_flaky(mly_action_call *c, void *arg) {
  (void)arg;
  append("flaky.log", "%s %u\n", mly_action_key(c), mly_action_attempt(c));
  if (mly_action_attempt(c) < 2) return mly_action_fail(c, false, "not yet");
  return mly_action_event(c, "go");
}

static int act_slow(mly_action_call *c, void *arg) {
  (void)arg;
  append("slow.log", "%s\n", mly_action_key(c));
  while (slow_blocks) pause(); /* until the kill */
  return mly_action_event(c, "go");
}

static void reg(mly_runtime *rt) {
  mly_action_register(rt, "Go", act_go, NULL, 0);
  mly_action_register(rt, "Final", act_final, NULL, 0);
  mly_action_register(rt, "Flaky", act_flaky, NULL, 0);
  mly_action_register(rt, "Slow", act_slow, NULL, MLY_ACTION_BLOCKING);
}

static const char *yaml =
    "state_machines:\n"
    "- name: wm\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Go, transitions: [{event: go, to: w}]}\n"
    "  - name: w\n"
    "    wait: {events: [ship], timeout: 400ms, timeout_event: late}\n"
    "    transitions: [{event: ship, to: z}, {event: late, to: t}]\n"
    "  - {name: z, final: True, entry: Final}\n"
    "  - {name: t, final: True, entry: Final}\n"
    "- name: ev\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Go, transitions: [{event: go, to: w}]}\n"
    "  - {name: w, wait: {events: [ship]}, transitions: [{event: ship, to: z}]}\n"
    "  - {name: z, final: True, entry: Final}\n"
    "- name: bm\n"
    "  min_backoff: 300ms\n"
    "  max_backoff: 300ms\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Flaky, transitions: [{event: go, to: z}]}\n"
    "  - {name: z, final: True, entry: Final}\n"
    "- name: km\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Slow, transitions: [{event: go, to: z}]}\n"
    "  - {name: z, final: True, entry: Final}\n";

/* ---- the child ---- */

static void say(const char *s) {
  if (write(report_fd, s, strlen(s)) < 0) _exit(91);
}

static mly_runtime *child_rt(void) {
  /* every blocking Slow call runs at once (the fsm keeps one pool
     thread free for the journal) */
  setenv("UV_THREADPOOL_SIZE", "16", 1);
  mly_runtime *rt = NULL;
  if (mly_runtime_new(&rt, NULL, NULL) < 0 || mly_fsm_attach(rt) < 0) _exit(92);
  reg(rt);
  mly_journal_options jo = {.dir = dir, .sync = MLY_SYNC_ALWAYS};
  char err[256];
  if (mly_journal_open(rt, &jo, err, sizeof err) < 0) {
    fprintf(stderr, "child: %s\n", err);
    _exit(93);
  }
  mly_fsm_load_options o = {.action_known = mly_action_known, .action_arg = rt};
  mly_fsm_set *set = NULL;
  if (mly_fsm_load_text("crash.yaml", yaml, strlen(yaml), &o, &set) < 0 ||
      mly_fsm_add(rt, set) < 0)
    _exit(94);
  mly_fsm_set_free(set);
  return rt;
}

static int count_phase(mly_runtime *rt, const char *prefix, const char *phase) {
  int n = 0;
  for (int i = 0; i < N; i++) {
    char name[32];
    mly_name_info ni;
    mly_fsm_info fi;
    snprintf(name, sizeof name, "%s-%d", prefix, i);
    if (mly_name_lookup(rt, name, &ni) == 0 && ni.state == MLY_NAME_LIVE &&
        mly_fsm_info_get(rt, ni.id, &fi) == 0 && strcmp(fi.phase, phase) == 0 &&
        (strcmp(phase, "sleep") != 0 || fi.attempt >= 1))
      n++;
  }
  return n;
}

static int count_ended(mly_runtime *rt, const char *prefix) {
  int n = 0;
  for (int i = 0; i < N; i++) {
    char name[32];
    snprintf(name, sizeof name, "%s-%d", prefix, i);
    if (fh_ended(rt, name)) n++;
  }
  return n;
}

static void tick(uv_timer_t *t) { (void)t; }

/* Run until cond says done (then report `msg`), for at most 60 s. */
static void child_loop(mly_runtime *rt, int (*cond)(mly_runtime *, const char *),
                       const char *arg, const char *msg) {
  uv_timer_t t;
  uv_timer_init(mly_runtime_loop(rt), &t);
  uv_timer_start(&t, tick, 5, 5);
  for (int turns = 0; turns < 12000; turns++) {
    if (cond(rt, arg)) {
      say(msg);
      for (;;) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE); /* until killed */
    }
    uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  }
  say("timeout\n");
  _exit(95);
}

static const char *phase_of; /* for all_at */
static int all_at(mly_runtime *rt, const char *prefix) {
  return count_phase(rt, prefix, phase_of) == N;
}
static int all_ended(mly_runtime *rt, const char *prefix) {
  return count_ended(rt, prefix) == N;
}

/* Child for round `round` of scenario `what`. */
static void child(const char *what, int round) {
  mly_runtime *rt = child_rt();
  if (round == 0) {
    for (int i = 0; i < N; i++) {
      char name[32];
      snprintf(name, sizeof name, "%s-%d", what, i);
      mly_value *c = mly_value_map();
      mly_map_set_int(c, "i", i);
      if (mly_fsm_start(rt, what, name, c, NULL, 0, NULL) < 0) _exit(96);
    }
    phase_of = strcmp(what, "bm") == 0   ? "sleep"
               : strcmp(what, "km") == 0 ? "dispatch"
                                          : "wait";
    if (strcmp(what, "km") == 0) { /* every Slow call has begun */
      uv_timer_t t;
      uv_timer_init(mly_runtime_loop(rt), &t);
      uv_timer_start(&t, tick, 5, 5);
      char path[128];
      snprintf(path, sizeof path, "%s/slow.log", dir);
      for (int turns = 0; turns < 12000; turns++) {
        uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
        FILE *f = fopen(path, "r");
        int lines = 0, ch;
        while (f && (ch = fgetc(f)) != EOF) lines += ch == '\n';
        if (f) fclose(f);
        if (lines == N) {
          say("at\n");
          for (;;) pause();
        }
      }
      say("timeout\n");
      _exit(95);
    }
    child_loop(rt, all_at, what, "at\n");
  }
  if (strcmp(what, "ev") == 0)
    for (int i = 0; i < N; i++) {
      char name[32];
      snprintf(name, sizeof name, "ev-%d", i);
      if (mly_fsm_send(rt, name, "ship", NULL, NULL, NULL) < 0) _exit(97);
    }
  child_loop(rt, all_ended, what, "done\n");
}

/* ---- the parent ---- */

static pid_t start_child(const char *what, int round, int *rfd) {
  int p[2];
  ck_assert_int_eq(pipe(p), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(p[0]);
    report_fd = p[1];
    slow_blocks = round == 0;
    child(what, round);
    _exit(0);
  }
  close(p[1]);
  *rfd = p[0];
  return pid;
}

static void expect_line(int fd, const char *want) {
  char buf[64];
  size_t n = 0;
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  while (n < sizeof buf - 1) {
    ck_assert_msg(poll(&pfd, 1, 120000) == 1, "child silent (want %s)", want);
    ssize_t r = read(fd, buf + n, 1);
    ck_assert_msg(r == 1, "child gone (want %s)", want);
    if (buf[n++] == '\n') break;
  }
  buf[n] = '\0';
  ck_assert_str_eq(buf, want);
}

static void kill_child(pid_t pid) {
  ck_assert_int_eq(kill(pid, SIGKILL), 0);
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert(WIFSIGNALED(st));
}

static void finish_child(pid_t pid) {
  kill_child(pid); /* it waits for the kill once done */
}

/* Lines of dir/file in order. */
static int read_lines(const char *file, char lines[][128], int max) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  int n = 0;
  while (n < max && fgets(lines[n], 128, f)) {
    lines[n][strcspn(lines[n], "\n")] = '\0';
    n++;
  }
  fclose(f);
  return n;
}

static void crash_round(const char *what) {
  snprintf(dir, sizeof dir, "/tmp/mealy-fsmcrash.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  int fd;
  pid_t pid = start_child(what, 0, &fd);
  expect_line(fd, "at\n");
  kill_child(pid);
  close(fd);
  pid = start_child(what, 1, &fd);
  expect_line(fd, "done\n");
  finish_child(pid);
  close(fd);
  /* every instance reached its final state once */
  static char lines[8 * N][128];
  int n = read_lines("final.log", lines, 8 * N);
  ck_assert_int_eq(n, N);
  bool seen[N] = {0};
  for (int k = 0; k < n; k++) {
    char key[96], st[16];
    long long i;
    ck_assert_int_eq(sscanf(lines[k], "%95s %15s %lld", key, st, &i), 3);
    ck_assert(i >= 0 && i < N && !seen[i]);
    seen[i] = true;
    char want[32];
    snprintf(want, sizeof want, "%s-%lld/", what, i);
    ck_assert_int_eq(strncmp(key, want, strlen(want)), 0);
    if (strcmp(what, "wm") == 0) ck_assert_str_eq(st, "t"); /* timed out */
    else ck_assert_str_eq(st, "z");
  }
}

START_TEST(kill_in_wait_then_event) { crash_round("ev"); h_rmtree(dir); }
END_TEST

START_TEST(kill_in_wait_then_timeout) { crash_round("wm"); h_rmtree(dir); }
END_TEST

/* Attempts 0 (before the kill), 1 and 2 (after), one each, one key. */
START_TEST(kill_in_backoff) {
  crash_round("bm");
  static char lines[8 * N][128];
  int n = read_lines("flaky.log", lines, 8 * N);
  ck_assert_int_eq(n, 3 * N);
  for (int i = 0; i < N; i++) {
    char key[32];
    snprintf(key, sizeof key, "bm-%d/0", i);
    unsigned next = 0;
    for (int k = 0; k < n; k++) {
      char kk[96];
      unsigned a;
      ck_assert_int_eq(sscanf(lines[k], "%95s %u", kk, &a), 2);
      if (strcmp(kk, key) != 0) continue;
      ck_assert_uint_eq(a, next);
      next++;
    }
    ck_assert_uint_eq(next, 3);
  }
  h_rmtree(dir);
}
END_TEST

/* The blocking action runs again after the crash, with the same key. */
START_TEST(kill_in_blocking_action) {
  crash_round("km");
  static char lines[8 * N][128];
  int n = read_lines("slow.log", lines, 8 * N);
  ck_assert_int_eq(n, 2 * N);
  for (int i = 0; i < N; i++) {
    char key[32];
    snprintf(key, sizeof key, "km-%d/0", i);
    int times = 0;
    for (int k = 0; k < n; k++) times += strcmp(lines[k], key) == 0;
    ck_assert_int_eq(times, 2);
  }
  h_rmtree(dir);
}
END_TEST

static Suite *crash_suite(void) {
  Suite *s = suite_create("fsm-crash");
  TCase *tc = tcase_create("kill9");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, kill_in_wait_then_event);
  tcase_add_test(tc, kill_in_wait_then_timeout);
  tcase_add_test(tc, kill_in_backoff);
  tcase_add_test(tc, kill_in_blocking_action);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(crash_suite)
