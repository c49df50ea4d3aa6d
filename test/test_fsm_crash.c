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
 * the kill.  A migration (mly_fsm_migrate_durable) is killed between its
 * request and its commit, and after its answer: every instance comes
 * back on one definition whole, and an answered one is never lost.
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

static int act_go(mly_action_call *c, void *arg) {
  (void)arg;
  return mly_action_event(c, "go");
}

static int act_final(mly_action_call *c, void *arg) {
  (void)arg;
  int64_t i = -1;
  mly_map_get_int(mly_action_context(c), "i", &i);
  fh_append(dir, "final.log", "%s %s %lld\n", mly_action_key(c),
            mly_action_state(c), (long long)i);
  return 0;
}

static int act_flaky(mly_action_call *c, void *arg) {
  (void)arg;
  fh_append(dir, "flaky.log", "%s %u\n", mly_action_key(c),
            mly_action_attempt(c));
  if (mly_action_attempt(c) < 2) return mly_action_fail(c, false, "not yet");
  return mly_action_event(c, "go");
}

static int act_slow(mly_action_call *c, void *arg) {
  (void)arg;
  fh_append(dir, "slow.log", "%s\n", mly_action_key(c));
  while (slow_blocks) pause(); /* until the kill */
  return mly_action_event(c, "go");
}

#define MX_STEPS 60
/* mx: MX_STEPS dispatches that each add one to n; a dispatch fails once on
 * its first attempt when its key hashes so (the same after a crash). */
static int act_step(mly_action_call *c, void *arg) {
  (void)arg;
  uint32_t h = 2166136261u;
  for (const char *p = mly_action_key(c); *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
  if (h % 3 == 0 && mly_action_attempt(c) == 0)
    return mly_action_fail(c, false, "first try of %s", mly_action_key(c));
  mly_value *ctx = mly_action_context(c);
  int64_t n = 0;
  mly_map_get_int(ctx, "n", &n);
  mly_map_set_int(ctx, "n", ++n);
  return mly_action_event(c, n >= MX_STEPS ? "done" : "next");
}

static int act_final_n(mly_action_call *c, void *arg) {
  (void)arg;
  int64_t i = -1, n = -1;
  mly_map_get_int(mly_action_context(c), "i", &i);
  mly_map_get_int(mly_action_context(c), "n", &n);
  fh_append(dir, "final.log", "%s %lld %lld\n", mly_action_key(c),
            (long long)i, (long long)n);
  return 0;
}

static void reg(mly_runtime *rt) {
  mly_action_register(rt, "Step", act_step, NULL, 0);
  mly_action_register(rt, "FinalN", act_final_n, NULL, 0);
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
    "- name: es\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Go, transitions: [{event: go, to: w}]}\n"
    "  - {name: w, wait: {events: [ship]}, transitions: [{event: ship, to: z}]}\n"
    "  - {name: z, final: True, entry: Final}\n"
    "- name: bm\n"
    "  min_backoff: 1s\n"
    "  max_backoff: 1s\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Flaky, transitions: [{event: go, to: z}]}\n"
    "  - {name: z, final: True, entry: Final}\n"
    "- name: mx\n"
    "  min_backoff: 5ms\n"
    "  max_backoff: 5ms\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Step,\n"
    "     transitions: [{event: next, to: b, countdown: {minimum: 1ms, maximum: 9ms}},\n"
    "                   {event: done, to: z}]}\n"
    "  - {name: b, action: Step,\n"
    "     transitions: [{event: next, to: a}, {event: done, to: z}]}\n"
    "  - {name: z, final: True, entry: FinalN}\n"
    "- name: xm\n"
    "  states:\n"
    "  - name: a\n"
    "    initial: True\n"
    "    action: {exec: [/bin/sh, -c, 'echo $$ >> \"$FSM_CRASH_DIR/exec.log\";\n"
    "      if [ -e \"$FSM_CRASH_DIR/fast\" ]; then echo \"{\\\"event\\\": \\\"go\\\"}\";\n"
    "      else exec sleep 1000; fi'], timeout: 1h}\n"
    "    transitions: [{event: go, to: z}]\n"
    "  - {name: z, final: True, entry: Final}\n"
    "- name: mg\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Go, transitions: [{event: go, to: w}]}\n"
    "  - {name: w, wait: {events: [on]}, transitions: [{event: on, to: v1}]}\n"
    "  - {name: v1, final: True, entry: Final}\n"
    "- name: km\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Slow, transitions: [{event: go, to: z}]}\n"
    "  - {name: z, final: True, entry: Final}\n";

/* mg's next definition: its states in another order (w is index 2, not
 * 1), so an instance switched by half (hash without indexes, or the
 * reverse) is seen at once; "on" leads to v2. */
static const char *mg_v2 =
    "state_machines:\n"
    "- name: mg\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Go, transitions: [{event: go, to: w}]}\n"
    "  - {name: v2, final: True, entry: Final}\n"
    "  - {name: w, wait: {events: [on]}, transitions: [{event: on, to: v2}]}\n";

/* ---- the child ---- */

static void say(const char *s) {
  if (write(report_fd, s, strlen(s)) < 0) _exit(91);
}

static void journal_stopped(mly_runtime *rt, int err, const char *msg,
                            void *arg) {
  (void)rt, (void)arg;
  fprintf(stderr, "child: the journal stopped (%s): %s\n", mly_strerror(err),
          msg);
}

static mly_runtime *child_rt(void) {
  setenv("FSM_CRASH_DIR", dir, 1);
  /* every blocking Slow call runs at once (the fsm keeps one pool
     thread free for the journal) */
  setenv("UV_THREADPOOL_SIZE", "16", 1);
  mly_runtime *rt = NULL;
  if (mly_runtime_new(&rt, NULL, NULL) < 0 || mly_fsm_attach(rt) < 0) _exit(92);
  reg(rt);
  mly_journal_options jo = {.dir = dir, .sync = MLY_SYNC_ALWAYS,
                            .on_error = journal_stopped};
  char err[256];
  if (h_durable_open(rt, &jo, err, sizeof err) < 0) {
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

/* The child's 5 ms ticker (started once): no turn of its loop blocks
 * for long. */
static void child_ticker(mly_runtime *rt) {
  static uv_timer_t t;
  static bool started;
  if (started) return;
  started = true;
  uv_timer_init(mly_runtime_loop(rt), &t);
  uv_timer_start(&t, h_tick_cb, 5, 5);
}

/* Turns of the child's loop until cond holds, at most 12000 (60 s):
 * whether it does. */
static bool child_until(mly_runtime *rt,
                        int (*cond)(mly_runtime *, const char *),
                        const char *arg) {
  child_ticker(rt);
  for (int turns = 0; turns < 12000; turns++) {
    if (cond(rt, arg)) return true;
    uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  }
  return false;
}

/* Turns until the journal syncs once more (at most `turns`): what the
 * child did so far is durable, or nothing was left to write. */
static void child_synced(mly_runtime *rt, int turns) {
  mly_journal_stats js;
  mly_journal_stats_get(rt, &js);
  uint64_t s0 = js.syncs;
  for (int k = 0; k < turns && js.syncs < s0 + 1; k++) {
    uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
    mly_journal_stats_get(rt, &js);
  }
}

/* Run until cond says done (then report `msg`), for at most 60 s. */
static void child_loop(mly_runtime *rt, int (*cond)(mly_runtime *, const char *),
                       const char *arg, const char *msg) {
  if (child_until(rt, cond, arg)) {
    say(msg);
    for (;;) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE); /* until killed */
  }
  for (int i = 0; i < N; i++) { /* what did not get there */
    char name[32];
    mly_name_info ni;
    mly_fsm_info fi;
    snprintf(name, sizeof name, "%s-%d", arg, i);
    if (mly_name_lookup(rt, name, &ni) == 0 && ni.state == MLY_NAME_LIVE &&
        mly_fsm_info_get(rt, ni.id, &fi) == 0)
      fprintf(stderr, "child: %s: state %s, phase %s, hash %.12s\n", name,
              fi.state, fi.phase, fi.hash);
  }
  say("timeout\n");
  _exit(95);
}

static int acked; /* es: durable posts answered 0 */
static void on_sent(mly_runtime *rt, int status, void *arg) {
  (void)rt, (void)arg;
  if (status == 0) acked++;
}
static int all_acked(mly_runtime *rt, const char *prefix) {
  (void)rt, (void)prefix;
  return acked == N;
}

static const char *phase_of; /* for all_at */
static int all_at(mly_runtime *rt, const char *prefix) {
  return count_phase(rt, prefix, phase_of) == N;
}
static int all_ended(mly_runtime *rt, const char *prefix) {
  return count_ended(rt, prefix) == N;
}

/* Start WHAT-0 .. WHAT-(N-1), context {i}; again: some may have been
 * started already (by an earlier round), and that is fine. */
static void start_all(mly_runtime *rt, const char *what, bool again) {
  for (int i = 0; i < N; i++) {
    char name[32];
    snprintf(name, sizeof name, "%s-%d", what, i);
    mly_value *c = mly_value_map();
    mly_map_set_int(c, "i", i);
    int rc = mly_fsm_start(rt, what, name, c, NULL, 0, NULL);
    if (rc < 0 && !(again && rc == MLY_EEXIST)) _exit(96);
  }
}

/* ---- migrate: kill -9 between the request and its commit ---- */

static mly_fsm_set *mg_set(mly_runtime *rt) {
  mly_fsm_load_options o = {.action_known = mly_action_known, .action_arg = rt};
  mly_fsm_set *set = NULL;
  if (mly_fsm_load_text("mg2.yaml", mg_v2, strlen(mg_v2), &o, &set) < 0)
    _exit(98);
  return set;
}

static bool mg_answered;
static int mg_status = 1;
static void mg_done(mly_runtime *rt, int status, void *arg) {
  (void)rt, (void)arg;
  mg_status = status;
  mg_answered = true;
}
static int mg_was_answered(mly_runtime *rt, const char *arg) {
  (void)rt, (void)arg;
  return mg_answered;
}

/* mode "ask-pause": migrate, say "asked", never return to the loop (so
 * nothing of it reaches the journal).  "ask-run": migrate, say "asked",
 * run; once answered say "answered" and run on.  "ask-answer": as
 * ask-run, then stop at once (the kill comes right after the answer). */
static void mg_ask(mly_runtime *rt, const char *mode) {
  mly_fsm_set *set = mg_set(rt);
  int rc = mly_fsm_migrate_durable(rt, set, 0, NULL, NULL, mg_done, NULL);
  mly_fsm_set_free(set);
  if (rc != N || mg_answered) _exit(99); /* never answered before return */
  say("asked\n");
  if (strcmp(mode, "ask-pause") == 0)
    for (;;) pause();
  child_until(rt, mg_was_answered, NULL);
  if (mg_status != 0) _exit(100);
  say("answered\n");
  if (strcmp(mode, "ask-answer") == 0)
    for (;;) pause();
  for (;;) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
}

/* After the restart: each instance, as recovered, on one definition or
 * the other whole (in state w, waiting, its hash one of the two): a line
 * "I old|new" each in mg.log; then "on" to all, to the end. */
static void mg_end(mly_runtime *rt) {
  mly_fsm_set *set = mg_set(rt);
  const unsigned char *h2 = mly_fsm_hash(mly_fsm_at(set, 0));
  char hex2[65];
  for (int i = 0; i < 32; i++) snprintf(hex2 + 2 * i, 3, "%02x", h2[i]);
  mly_fsm_set_free(set);
  mly_fsm_load_options o = {.action_known = mly_action_known, .action_arg = rt};
  if (mly_fsm_load_text("crash.yaml", yaml, strlen(yaml), &o, &set) < 0)
    _exit(94);
  const unsigned char *h1 = mly_fsm_hash(mly_fsm_find(set, "mg"));
  char hex1[65];
  for (int i = 0; i < 32; i++) snprintf(hex1 + 2 * i, 3, "%02x", h1[i]);
  mly_fsm_set_free(set);
  for (int i = 0; i < N; i++) {
    char name[32];
    mly_name_info ni;
    mly_fsm_info fi;
    snprintf(name, sizeof name, "mg-%d", i);
    if (mly_name_lookup(rt, name, &ni) < 0 || ni.state != MLY_NAME_LIVE ||
        mly_fsm_info_get(rt, ni.id, &fi) < 0)
      _exit(101); /* lost */
    bool old = strcmp(fi.hash, hex1) == 0, nw = strcmp(fi.hash, hex2) == 0;
    if (!(old || nw) || strcmp(fi.state, "w") != 0 ||
        strcmp(fi.phase, "wait") != 0) {
      fh_append(dir, "mg.log", "%d half %s %s %s\n", i, fi.hash, fi.state,
                fi.phase);
    } else {
      fh_append(dir, "mg.log", "%d %s\n", i, old ? "old" : "new");
    }
    if (mly_fsm_send(rt, name, "on", NULL, NULL, NULL) < 0) _exit(97);
  }
  child_loop(rt, all_ended, "mg", "done\n");
}

/* Child for round `round` of scenario `what`. */
static void child(const char *what, int round) {
  mly_runtime *rt = child_rt();
  if (strncmp(what, "mg-", 3) == 0) {
    if (strcmp(what, "mg-start") == 0) { /* all wait, and that is durable */
      start_all(rt, "mg", false);
      phase_of = "wait";
      child_until(rt, all_at, "mg");
      child_synced(rt, 1000);
      child_loop(rt, all_at, "mg", "at\n");
    }
    if (strcmp(what, "mg-end") == 0) mg_end(rt);
    mg_ask(rt, what + 3);
  }
  if (strcmp(what, "mx") == 0) { /* started by name: once, whatever the
                                    round that first got that far */
    start_all(rt, what, true);
    child_loop(rt, all_ended, what, "done\n");
  }
  if (round == 0) {
    start_all(rt, what, false);
    phase_of = strcmp(what, "bm") == 0   ? "sleep"
               : strcmp(what, "km") == 0 ? "dispatch"
                                          : "wait";
    if (strcmp(what, "km") == 0 || strcmp(what, "xm") == 0) {
      /* every Slow call, every command, has begun */
      child_ticker(rt);
      char path[128];
      snprintf(path, sizeof path, "%s/%s", dir,
               strcmp(what, "km") == 0 ? "slow.log" : "exec.log");
      for (int turns = 0; turns < 12000; turns++) {
        uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
        FILE *f = fopen(path, "r");
        int lines = 0, ch;
        while (f && (ch = fgetc(f)) != EOF) lines += ch == '\n';
        if (f) fclose(f);
        if (lines == N) {
          /* and the records that name the commands are durable (a
             command started in a step whose record a crash lost is not
             known to the next run: mealy.h): one more fdatasync, or a
             quiet half second (nothing was left to write) */
          child_synced(rt, 100);
          say("at\n");
          for (;;) pause();
        }
      }
      say("timeout\n");
      _exit(95);
    }
    if (strcmp(what, "es") == 0) { /* sent, acknowledged, then killed */
      child_until(rt, all_at, what);
      for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "es-%d", i);
        if (mly_fsm_send(rt, name, "ship", NULL, on_sent, NULL) < 0) _exit(97);
      }
      child_loop(rt, all_acked, what, "at\n");
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
  h_tmpdir(dir, sizeof dir, "mealy-fsmcrash");
  int fd;
  pid_t pid = start_child(what, 0, &fd);
  expect_line(fd, "at\n");
  kill_child(pid);
  close(fd);
  if (strcmp(what, "xm") == 0) { /* the commands run again, quickly */
    char path[128];
    snprintf(path, sizeof path, "%s/fast", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
  }
  pid = start_child(what, 1, &fd);
  expect_line(fd, "done\n");
  finish_child(pid);
  close(fd);
  /* every instance reached its final state: once, or twice with one key
     (killed after its final action, before that dispatch committed) */
  static char lines[8 * N][128];
  static char keys[N][96];
  int n = read_lines("final.log", lines, 8 * N);
  ck_assert_int_ge(n, N);
  bool seen[N] = {0};
  for (int k = 0; k < n; k++) {
    char key[96], st[16];
    long long i;
    ck_assert_int_eq(sscanf(lines[k], "%95s %15s %lld", key, st, &i), 3);
    ck_assert(i >= 0 && i < N);
    if (seen[i]) ck_assert_str_eq(key, keys[i]);
    seen[i] = true;
    snprintf(keys[i], sizeof keys[i], "%s", key);
    char want[32];
    snprintf(want, sizeof want, "%s-%lld/", what, i);
    ck_assert_int_eq(strncmp(key, want, strlen(want)), 0);
    if (strcmp(what, "wm") == 0) ck_assert_str_eq(st, "t"); /* timed out */
    else ck_assert_str_eq(st, "z");
  }
  for (int i = 0; i < N; i++) ck_assert(seen[i]);
}

START_TEST(kill_in_wait_then_event) { crash_round("ev"); h_rmtree(dir); }
END_TEST

/* Events acknowledged (durable posts answered 0) just before the kill
 * are delivered after the restart: none lost. */
START_TEST(kill_after_events_acknowledged) { crash_round("es"); h_rmtree(dir); }
END_TEST

START_TEST(kill_in_wait_then_timeout) { crash_round("wm"); h_rmtree(dir); }
END_TEST

/* Attempts 0 (before the kill), 1 and 2 (after), one key.  An attempt
 * that ran but whose failure was not committed before the kill runs
 * again (the same number, the same key): numbers never skip nor go
 * back. */
START_TEST(kill_in_backoff) {
  crash_round("bm");
  static char lines[8 * N][128];
  int n = read_lines("flaky.log", lines, 8 * N);
  ck_assert_int_ge(n, 3 * N);
  for (int i = 0; i < N; i++) {
    char key[32];
    snprintf(key, sizeof key, "bm-%d/0", i);
    int last = -1;
    for (int k = 0; k < n; k++) {
      char kk[96];
      int a;
      ck_assert_int_eq(sscanf(lines[k], "%95s %d", kk, &a), 2);
      ck_assert_int_eq(strncmp(kk, "bm-", 3), 0);
      ck_assert_str_eq(strchr(kk, '/'), "/0"); /* one key per dispatch */
      if (strcmp(kk, key) != 0) continue;
      ck_assert_msg(a == last || a == last + 1, "%s: attempt %d after %d", key,
                    a, last);
      last = a;
    }
    ck_assert_int_eq(last, 2);
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

/* kill -9 at random moments, round after round, while instances step,
 * retry and sleep countdowns; then run to the end: each instance ends
 * once, with n == MX_STEPS (no dispatch lost, none applied twice). */
START_TEST(kill_at_random) {
  h_tmpdir(dir, sizeof dir, "mealy-fsmcrash");
  uint64_t seed = 0x2545f4914f6cdd1dULL ^ (uint64_t)getpid();
  const char *rounds_env = getenv("FSM_CRASH_ROUNDS");
  int rounds = rounds_env ? atoi(rounds_env) : 12, kills = 0;
  for (int r = 0; r < rounds; r++) {
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    int fd;
    pid_t pid = start_child("mx", r, &fd);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int got = poll(&pfd, 1, 10 + (int)(seed % 150));
    kill_child(pid);
    close(fd);
    if (got == 1) break; /* it finished: nothing left to kill */
    kills++;
  }
  fprintf(stderr, "kill_at_random: %d kills before the end\n", kills);
  int fd;
  pid_t pid = start_child("mx", 1000, &fd);
  expect_line(fd, "done\n");
  finish_child(pid);
  close(fd);
  /* the final dispatch may have run twice (killed after its action,
     before its commit): then with the same key, and the same n */
  static char lines[8 * N][128];
  static char keys[N][96];
  int n = read_lines("final.log", lines, 8 * N);
  ck_assert_int_ge(n, N);
  bool seen[N] = {0};
  for (int k = 0; k < n; k++) {
    char key[96];
    long long i, v;
    ck_assert_int_eq(sscanf(lines[k], "%95s %lld %lld", key, &i, &v), 3);
    ck_assert(i >= 0 && i < N);
    if (seen[i]) ck_assert_str_eq(key, keys[i]);
    seen[i] = true;
    snprintf(keys[i], sizeof keys[i], "%s", key);
    ck_assert_msg(v == MX_STEPS, "instance %lld ended with n = %lld", i, v);
  }
  for (int i = 0; i < N; i++) ck_assert(seen[i]);
  h_rmtree(dir);
}
END_TEST

/* Alive and not a zombie (an orphan's reaper may be slow, or none). */
static bool running(int pid) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')');
  return p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* kill -9 while commands run: they outlive the runtime; after the
 * restart each is killed (its group) and its dispatch runs again. */
START_TEST(kill_while_command_runs) {
  crash_round("xm");
  static char lines[8 * N][128];
  int n = read_lines("exec.log", lines, 8 * N);
  ck_assert_int_eq(n, 2 * N);
  for (int k = 0; k < N; k++) { /* the first run's: gone (poll: reaping
                                   by init takes a moment) */
    int pid = atoi(lines[k]);
    ck_assert_int_gt(pid, 1);
    int tries = 0;
    while (running(pid) && tries++ < 6000) usleep(10000);
    ck_assert_msg(!running(pid), "command %d still runs", pid);
  }
  h_rmtree(dir);
}
END_TEST

/* One migration killed: `mode` for the child that asks (see mg_ask),
 * killed after `delay_ms` (-1: at once) once it said "asked"; then a
 * run to the end.  Every instance is recovered on one definition whole
 * and ends once: after "answered" every one on the new, and with
 * nothing journaled (ask-pause) every one on the old. */
static void migrate_round(const char *mode, int delay_ms) {
  snprintf(dir, sizeof dir, "/tmp/mealy-fsmcrash.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  int fd;
  pid_t pid = start_child("mg-start", 0, &fd);
  expect_line(fd, "at\n");
  kill_child(pid);
  close(fd);
  char child_mode[32];
  snprintf(child_mode, sizeof child_mode, "mg-%s", mode);
  pid = start_child(child_mode, 1, &fd);
  expect_line(fd, "asked\n");
  bool answered = false;
  if (strcmp(mode, "ask-answer") == 0) {
    expect_line(fd, "answered\n");
    answered = true;
  } else if (delay_ms >= 0) { /* the kill comes delay_ms after "asked" */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, delay_ms) == 1) {
      expect_line(fd, "answered\n");
      answered = true;
      clock_gettime(CLOCK_MONOTONIC, &t1);
      long spent = (t1.tv_sec - t0.tv_sec) * 1000 +
                   (t1.tv_nsec - t0.tv_nsec) / 1000000;
      if (spent < delay_ms) usleep((useconds_t)(delay_ms - spent) * 1000);
    }
  }
  kill_child(pid);
  char rest[16]; /* an answer written just before the kill counts too */
  ssize_t got = answered ? 0 : read(fd, rest, sizeof rest - 1);
  if (got > 0) {
    rest[got] = '\0';
    ck_assert_str_eq(rest, "answered\n");
    answered = true;
  }
  close(fd);
  pid = start_child("mg-end", 2, &fd);
  expect_line(fd, "done\n");
  finish_child(pid);
  close(fd);
  static char lines[8 * N][128];
  int n = read_lines("mg.log", lines, 8 * N);
  ck_assert_int_eq(n, N);
  bool was_new[N] = {0};
  int news = 0;
  for (int k = 0; k < n; k++) {
    int i;
    char tag[8];
    ck_assert_msg(sscanf(lines[k], "%d %7s", &i, tag) == 2 && i >= 0 && i < N,
                  "%s", lines[k]);
    ck_assert_msg(strcmp(tag, "old") == 0 || strcmp(tag, "new") == 0,
                  "instance switched by half: %s", lines[k]);
    was_new[i] = strcmp(tag, "new") == 0;
    news += was_new[i];
  }
  /* (answered: the events are journaled, each instance takes its own in
     a step of its own: it may still be on the old one here) */
  if (strcmp(mode, "ask-pause") == 0) ck_assert_int_eq(news, 0);
  /* each ends once (or twice, one key: killed in its final dispatch) on
     one definition: v2 if it was on the new one (an old one may still
     take its migration event, then v2 too) */
  n = read_lines("final.log", lines, 8 * N);
  ck_assert_int_ge(n, N);
  bool seen[N] = {0};
  int v2 = 0;
  for (int k = 0; k < n; k++) {
    char key[96], st[16];
    long long i;
    ck_assert_int_eq(sscanf(lines[k], "%95s %15s %lld", key, st, &i), 3);
    ck_assert(i >= 0 && i < N);
    ck_assert_msg(strcmp(st, "v1") == 0 || strcmp(st, "v2") == 0, "%s", st);
    if (was_new[i]) ck_assert_str_eq(st, "v2");
    if (!seen[i]) v2 += strcmp(st, "v2") == 0;
    seen[i] = true;
  }
  for (int i = 0; i < N; i++) ck_assert(seen[i]);
  if (answered) ck_assert_int_eq(v2, N); /* an answer is never lost */
  if (strcmp(mode, "ask-pause") == 0) ck_assert_int_eq(v2, 0);
  fprintf(stderr, "migrate %s: answered %d, on the new one at the restart "
          "%d, ended on it %d of %d\n", mode, answered, news, v2, N);
  h_rmtree(dir);
}

/* The request made, nothing journaled (the process stops before the
 * loop turns): every instance stays on the old definition. */
START_TEST(kill_in_migrate_before_commit) { migrate_round("ask-pause", -1); }
END_TEST

/* Killed right after the answer: every instance is on the new one. */
START_TEST(kill_after_migrate_answered) { migrate_round("ask-answer", -1); }
END_TEST

/* Killed at random moments of the window between the request and its
 * commit (and some after): never half, and never lost once answered. */
START_TEST(kill_in_migrate_at_random) {
  uint64_t seed = 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
  const char *env = getenv("FSM_MIGRATE_ROUNDS");
  int rounds = env ? atoi(env) : 10;
  for (int r = 0; r < rounds; r++) { /* half of them inside the fsync */
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    migrate_round("ask-run", (int)(seed % (r % 2 ? 150 : 4)));
  }
}
END_TEST

static Suite *crash_suite(void) {
  Suite *s = suite_create("fsm-crash");
  TCase *tc = tcase_create("kill9");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, kill_in_wait_then_event);
  tcase_add_test(tc, kill_in_wait_then_timeout);
  tcase_add_test(tc, kill_after_events_acknowledged);
  tcase_add_test(tc, kill_in_backoff);
  tcase_add_test(tc, kill_in_blocking_action);
  tcase_add_test(tc, kill_at_random);
  tcase_add_test(tc, kill_while_command_runs);
  tcase_add_test(tc, kill_in_migrate_before_commit);
  tcase_add_test(tc, kill_after_migrate_answered);
  tcase_add_test(tc, kill_in_migrate_at_random);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(crash_suite)
