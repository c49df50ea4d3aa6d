/*
 * test_fsm.c - the YAML machine interpreter: Fantasm's test_fsm and
 * test_integration floor (dispatch order, failure injected at every
 * entry/action/exit/transition position, retries counted, permanent
 * failure, on_failure with error and cause, the same key for a dispatch
 * run twice), wait states, countdowns, pinned definitions, blocking
 * actions off the loop thread, command actions; in memory and durable.
 */
#include <pthread.h>
#include <stdarg.h>

#include "fsm/interp.h"
#include "fsm_helpers.h"
#include "fsm_tri.h"

/* ---- what the actions did ---- */

#define LOG_MAX 256
static char logv[LOG_MAX][96];   /* "where:state" */
static char keyv[LOG_MAX][128];  /* the key of each call */
static int nlog;
static mly_value *final_ctx;     /* the context the final state's entry saw */
static char lines[16][512];      /* the interpreter's log lines */
static int nlines;

/* failure injection: the call "where:state" fails `times` times */
static struct {
  char at[64];
  int times;
  bool permanent;
} inj;

/* the randomized model: failures left at each position of `order` */
static int plan_fails[9];
static bool plan_perm[9];
static int pos_of(const char *at);

static void reset(void) {
  memset(plan_fails, 0, sizeof plan_fails);
  memset(plan_perm, 0, sizeof plan_perm);
  nlog = 0;
  nlines = 0;
  mly_value_free(final_ctx);
  final_ctx = NULL;
  memset(&inj, 0, sizeof inj);
}

static void log_line(void *arg, const char *line) {
  (void)arg;
  if (nlines < 16) snprintf(lines[nlines++], sizeof lines[0], "%s", line);
}

static bool logged(const char *needle) {
  for (int i = 0; i < nlines; i++)
    if (strstr(lines[i], needle)) return true;
  return false;
}

/* One function for every recording action; arg is its label. */
static int rec(mly_action_call *c, void *arg) {
  const char *label = arg;
  char at[96];
  snprintf(at, sizeof at, "%s:%s", label, mly_action_state(c));
  if (nlog < LOG_MAX) {
    snprintf(logv[nlog], sizeof logv[0], "%s", at);
    snprintf(keyv[nlog], sizeof keyv[0], "%s", mly_action_key(c));
    nlog++;
  }
  mly_value *ctx = mly_action_context(c);
  char counter[128];
  snprintf(counter, sizeof counter, "n_%s", at);
  int64_t n = 0;
  mly_map_get_int(ctx, counter, &n);
  mly_map_set_int(ctx, counter, n + 1);
  /* the scratch map lives through one dispatch */
  int64_t s = 0;
  mly_map_get_int(mly_action_scratch(c), "calls", &s);
  mly_map_set_int(mly_action_scratch(c), "calls", s + 1);
  mly_map_set_int(ctx, "scratch_seen", s + 1);
  if (strcmp(at, inj.at) == 0 && inj.times > 0) {
    inj.times--;
    return mly_action_fail(c, inj.permanent, "injected at %s", at);
  }
  int p = pos_of(at);
  if (p >= 0 && plan_fails[p] > 0) {
    plan_fails[p]--;
    return mly_action_fail(c, plan_perm[p], "planned at %s", at);
  }
  if (strcmp(label, "action") == 0) {
    const char *ev;
    mly_value *next = mly_map_get(ctx, "next");
    if (mly_map_get_str(next, mly_action_state(c), &ev) == 0)
      mly_action_event(c, ev);
  }
  if (strcmp(label, "final") == 0 || strcmp(label, "failed") == 0) {
    mly_value_free(final_ctx);
    final_ctx = mly_value_copy(ctx);
  }
  return 0;
}

static void reg(mly_runtime *rt) {
  ck_assert_int_eq(mly_action_register(rt, "Entry", rec, "entry", 0), 0);
  ck_assert_int_eq(mly_action_register(rt, "Action", rec, "action", 0), 0);
  ck_assert_int_eq(mly_action_register(rt, "Exit", rec, "exit", 0), 0);
  ck_assert_int_eq(mly_action_register(rt, "Trans", rec, "trans", 0), 0);
  ck_assert_int_eq(mly_action_register(rt, "Final", rec, "final", 0), 0);
  ck_assert_int_eq(mly_action_register(rt, "Failed", rec, "failed", 0), 0);
  mly_fsm_set_log(rt, log_line, NULL);
}

static const char *abc_yaml =
    "state_machines:\n"
    "- name: abc\n"
    "  task_retry_limit: 3\n"
    "  min_backoff: 1ms\n"
    "  max_backoff: 2ms\n"
    "  on_failure: oops\n"
    "  states:\n"
    "  - name: a\n"
    "    initial: True\n"
    "    entry: Entry\n"
    "    action: Action\n"
    "    exit: Exit\n"
    "    transitions:\n"
    "    - {event: go, to: b, action: Trans}\n"
    "  - name: b\n"
    "    entry: Entry\n"
    "    action: Action\n"
    "    exit: Exit\n"
    "    transitions:\n"
    "    - {event: go, to: c, action: Trans}\n"
    "  - name: c\n"
    "    final: True\n"
    "    entry: Final\n"
    "  - name: oops\n"
    "    final: True\n"
    "    entry: Failed\n";

/* The calls of a run with no failure, dispatch by dispatch. */
static const char *const order[] = {
    "entry:a", "action:a",                             /* dispatch 0 */
    "exit:a",  "trans:a",  "entry:b", "action:b",      /* dispatch 1 */
    "exit:b",  "trans:b",  "final:c"};                 /* dispatch 2 */
static const int disp_of[] = {0, 0, 1, 1, 1, 1, 2, 2, 2};
#define NPOS 9

static int pos_of(const char *at) {
  for (int i = 0; i < NPOS; i++)
    if (strcmp(order[i], at) == 0) return i;
  return -1;
}

static mly_value *abc_ctx(void) {
  mly_value *c = mly_value_map(), *next = mly_value_map();
  mly_map_set_str(next, "a", "go");
  mly_map_set_str(next, "b", "go");
  mly_map_set(c, "next", next);
  return c;
}

static mly_runtime *mem_rt(void) {
  mly_runtime *rt = h_runtime();
  reg(rt);
  return rt;
}

static void start(mly_runtime *rt, const char *machine, const char *name,
                  mly_value *ctx) {
  char out[MLY_INSTANCE_NAME_MAX + 1];
  mly_id id = 0;
  ck_assert_int_eq(mly_fsm_start(rt, machine, name, ctx, out, sizeof out, &id),
                   0);
  ck_assert_str_eq(out, name);
  ck_assert_uint_ne(id, 0);
}

static void expect_key(int i, const char *name, int seq) {
  char want[160];
  snprintf(want, sizeof want, "%s/%d", name, seq);
  ck_assert_msg(strcmp(keyv[i], want) == 0, "call %d (%s): key %s, want %s", i,
                logv[i], keyv[i], want);
}

static void check_order(const char *name) {
  ck_assert_int_eq(nlog, NPOS);
  for (int i = 0; i < NPOS; i++) {
    ck_assert_str_eq(logv[i], order[i]);
    expect_key(i, name, disp_of[i]);
  }
}

static void run_abc(mly_runtime *rt) {
  fh_add(rt, abc_yaml);
  start(rt, "abc", "abc-1", abc_ctx());
  fh_until(rt, fh_ended, "abc-1", 10000);
}

START_TEST(dispatch_order_memory) {
  reset();
  mly_runtime *rt = mem_rt();
  run_abc(rt);
  ck_assert_int_eq(fh_end_status(rt, "abc-1"), 0);
  check_order("abc-1");
  /* each call counted once in the committed context; the scratch map is
     per dispatch (the final dispatch's third call saw 3) */
  for (int i = 0; i < NPOS - 1; i++) {
    char k[128];
    int64_t n = 0;
    snprintf(k, sizeof k, "n_%s", order[i]);
    ck_assert_int_eq(mly_map_get_int(final_ctx, k, &n), 0);
    ck_assert_int_eq(n, 1);
  }
  int64_t s = 0;
  ck_assert_int_eq(mly_map_get_int(final_ctx, "scratch_seen", &s), 0);
  ck_assert_int_eq(s, 3);
  mly_runtime_close(rt);
}
END_TEST

static char tmpdir[64];
static void mkdir_tmp(void) {
  h_tmpdir(tmpdir, sizeof tmpdir, "mealy-fsm");
}

START_TEST(dispatch_order_durable) {
  reset();
  mkdir_tmp();
  mly_runtime *rt = fh_durable(tmpdir, reg);
  run_abc(rt);
  ck_assert_int_eq(fh_end_status(rt, "abc-1"), 0);
  check_order("abc-1");
  mly_journal_stats js;
  ck_assert_int_eq(mly_journal_stats_get(rt, &js), 0);
  ck_assert_uint_ge(js.records, 3); /* one record per dispatch at least */
  mly_runtime_close(rt);
  h_rmtree(tmpdir);
}
END_TEST

/* What a durable dispatch costs the journal, counted (bench_fsm measures
 * the time): one STEP record holding the instance record (its data
 * without trailing zero bytes), the context once (a bin of its msgpack),
 * framing.  A 3-state machine whose action changes a ~100-byte context
 * every dispatch: under 560 bytes a dispatch, all included (instances'
 * creations, the definition holder, the last dispatches and the ENDs). */
static tri_count tri;
static bool tri_all_ended(mly_runtime *rt, void *arg) {
  (void)rt;
  return tri.done == (uint64_t)*(int *)arg;
}

START_TEST(journal_bytes_per_dispatch) {
  int n = 20;
  reset();
  mkdir_tmp();
  mly_runtime *rt = fh_durable(tmpdir, reg);
  tri = (tri_count){.target = 30};
  ck_assert_int_eq(tri_register(rt, &tri), 0);
  fh_add(rt, tri_yaml);
  ck_assert_int_eq(tri_start(rt, "tri", (uint32_t)n, 90), 0);
  fh_until(rt, tri_all_ended, &n, 100000);
  ck_assert_uint_eq(tri.steps, 30 * (uint64_t)n);
  mly_runtime_close(rt);
  mly_journal_info ji;
  char err[256];
  ck_assert_int_eq(mly_journal_info_get(tmpdir, &ji, err, sizeof err), 0);
  uint64_t dispatches = tri.steps + (uint64_t)n; /* + final */
  ck_assert_msg(ji.bytes <= 560 * dispatches, "%llu bytes for %llu dispatches",
                (unsigned long long)ji.bytes, (unsigned long long)dispatches);
  h_rmtree(tmpdir);
}
END_TEST

/* A retryable failure at every position: the whole dispatch runs again,
 * with the same key, and what the failed attempt did to the context is
 * gone. */
START_TEST(failure_at_every_position) {
  for (int p = 0; p < NPOS; p++) {
    reset();
    snprintf(inj.at, sizeof inj.at, "%s", order[p]);
    inj.times = 1;
    mly_runtime *rt = mem_rt();
    run_abc(rt);
    ck_assert_int_eq(fh_end_status(rt, "abc-1"), 0);
    /* the model: the normal order, with the failed dispatch's calls up
       to the failure repeated before it */
    const char *want[2 * NPOS];
    int wantd[2 * NPOS], n = 0;
    for (int i = 0; i < NPOS; i++) {
      if (disp_of[i] == disp_of[p] && (i == 0 || disp_of[i - 1] != disp_of[p]))
        for (int j = i; j <= p; j++) {
          want[n] = order[j];
          wantd[n++] = disp_of[j];
        }
      want[n] = order[i];
      wantd[n++] = disp_of[i];
    }
    ck_assert_int_eq(nlog, n);
    for (int i = 0; i < n; i++) {
      ck_assert_str_eq(logv[i], want[i]);
      expect_key(i, "abc-1", wantd[i]);
    }
    for (int i = 0; i < NPOS - 1; i++) {
      char k[128];
      int64_t c = 0;
      snprintf(k, sizeof k, "n_%s", order[i]);
      ck_assert_int_eq(mly_map_get_int(final_ctx, k, &c), 0);
      ck_assert_msg(c == 1, "failure at %s: %s counted %lld times", order[p],
                    order[i], (long long)c);
    }
    ck_assert(logged("retried in"));
    mly_runtime_close(rt);
  }
}
END_TEST

/* A permanent failure at every position: no retry, on to the machine's
 * on_failure state with error and cause; the failed dispatch's changes
 * are not in the context. */
START_TEST(permanent_at_every_position) {
  static const char *const wheres[] = {"entry",  "action", "exit",
                                       "transition", "entry", "action",
                                       "exit", "transition", "entry"};
  static const char *const states[] = {"a", "a", "a", "a", "b",
                                       "b", "b", "b", "c"};
  for (int p = 0; p < NPOS; p++) {
    reset();
    snprintf(inj.at, sizeof inj.at, "%s", order[p]);
    inj.times = 1000;
    inj.permanent = true;
    mly_runtime *rt = mem_rt();
    run_abc(rt);
    ck_assert_int_eq(fh_end_status(rt, "abc-1"), 0); /* oops is final */
    ck_assert_str_eq(logv[nlog - 1], "failed:oops");
    ck_assert_int_eq(nlog, p + 2); /* no retry */
    const char *err, *w, *st;
    ck_assert_int_eq(mly_map_get_str(final_ctx, "error", &err), 0);
    char want[96];
    snprintf(want, sizeof want, "injected at %s", order[p]);
    ck_assert_str_eq(err, want);
    mly_value *cause = mly_map_get(final_ctx, "cause");
    ck_assert_int_eq(mly_map_get_str(cause, "where", &w), 0);
    ck_assert_str_eq(w, wheres[p]);
    ck_assert_int_eq(mly_map_get_str(cause, "state", &st), 0);
    ck_assert_str_eq(st, states[p]);
    bool perm = false;
    ck_assert_int_eq(mly_map_get_bool(cause, "permanent", &perm), 0);
    ck_assert(perm);
    char k[128];
    int64_t c = 0;
    snprintf(k, sizeof k, "n_%s", order[p]);
    ck_assert_int_eq(mly_map_get_int(final_ctx, k, &c), MLY_ENOENT);
    ck_assert(logged("moves to oops"));
    mly_runtime_close(rt);
  }
}
END_TEST

/* ---- retries: delays chosen, counted, not timed ---- */

static int64_t delays[32];
static int ndelays;
static void on_delay(void *arg, mly_id id, int why, uint32_t attempt,
                     int64_t ms) {
  (void)arg, (void)id;
  if (why == FSM_WHY_BACKOFF && ndelays < 32) {
    ck_assert_uint_eq(attempt, (uint32_t)ndelays + 1);
    delays[ndelays++] = ms;
  }
}

static int always_fail(mly_action_call *c, void *arg) {
  (void)arg;
  if (nlog < LOG_MAX) {
    snprintf(keyv[nlog], sizeof keyv[0], "%s", mly_action_key(c));
    snprintf(logv[nlog++], sizeof logv[0], "attempt %u", mly_action_attempt(c));
  }
  return MLY_EIO; /* a plain error: retryable */
}

/* A runtime in memory (reset) whose action Flaky always fails; the
 * backoff delays chosen go to delays[] (jitter_seed 0: random, as by
 * default). */
static mly_runtime *flaky_rt(uint32_t jitter_seed) {
  reset();
  ndelays = 0;
  mly_runtime *rt = mem_rt();
  ck_assert_int_eq(mly_action_register(rt, "Flaky", always_fail, NULL, 0), 0);
  fsm_test_hooks h = {.delay_chosen = on_delay, .jitter_seed = jitter_seed};
  fsm_set_test_hooks(rt, &h);
  return rt;
}

START_TEST(retry_delays) {
  mly_runtime *rt = flaky_rt(0);
  fh_add(rt, "state_machines:\n"
             "- name: flaky\n"
             "  task_retry_limit: 4\n"
             "  min_backoff: 10ms\n"
             "  max_backoff: 50ms\n"
             "  max_doublings: 2\n"
             "  states:\n"
             "  - {name: a, initial: True, action: Flaky,\n"
             "     transitions: [{event: go, to: z}]}\n"
             "  - {name: z, final: True}\n");
  start(rt, "flaky", "fl-1", NULL);
  fh_until(rt, fh_ended, "fl-1", 10000);
  ck_assert_int_eq(fh_end_status(rt, "fl-1"), MLY_EIO);
  static const int64_t want[] = {10, 20, 40, 50};
  ck_assert_int_eq(ndelays, 4);
  for (int i = 0; i < 4; i++) ck_assert_int_eq(delays[i], want[i]);
  ck_assert_int_eq(nlog, 5);
  for (int i = 0; i < 5; i++) {
    char a[32];
    snprintf(a, sizeof a, "attempt %d", i);
    ck_assert_str_eq(logv[i], a);
    ck_assert_str_eq(keyv[i], "fl-1/0"); /* the same key every time */
  }
  ck_assert(logged("no on_failure state: the instance ends, failed"));
  mly_runtime_close(rt);
}
END_TEST

/* A transition's policy overrides the machine's; jitter stays within
 * [d * (1 - j), d]. */
START_TEST(retry_policy_resolution) {
  mly_runtime *rt = flaky_rt(12345);
  fh_add(rt, "state_machines:\n"
             "- name: pol\n"
             "  task_retry_limit: 9\n"
             "  min_backoff: 1s\n"
             "  states:\n"
             "  - {name: a, initial: True, action: Action,\n"
             "     transitions: [{event: go, to: b, task_retry_limit: 3,\n"
             "                    min_backoff: 8ms, max_backoff: 8ms,\n"
             "                    jitter: 0.5}]}\n"
             "  - {name: b, action: Flaky, transitions: [{event: go, to: z}]}\n"
             "  - {name: z, final: True}\n");
  mly_value *c = mly_value_map(), *next = mly_value_map();
  mly_map_set_str(next, "a", "go");
  mly_map_set(c, "next", next);
  start(rt, "pol", "pol-1", c);
  fh_until(rt, fh_ended, "pol-1", 10000);
  ck_assert_int_eq(ndelays, 3);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_ge(delays[i], 4);
    ck_assert_int_le(delays[i], 8);
  }
  mly_runtime_close(rt);
}
END_TEST

START_TEST(backoff_table) {
  /* App Engine's example: 10 s, 300 s, 3 doublings */
  fsm_retry p = {.min_backoff_ms = 10000, .max_backoff_ms = 300000,
                 .max_doublings = 3};
  static const int64_t want[] = {10000, 20000,  40000,  80000,
                                 160000, 240000, 300000, 300000};
  for (uint32_t a = 1; a <= 8; a++)
    ck_assert_int_eq(fsm_backoff_ms(&p, a), want[a - 1]);
  fsm_retry big = {.min_backoff_ms = 100, .max_backoff_ms = INT64_MAX,
                   .max_doublings = 16};
  ck_assert_int_eq(fsm_backoff_ms(&big, 17), 100LL << 16);
  ck_assert_int_eq(fsm_backoff_ms(&big, 4000000000u) > 0, 1); /* no overflow */
  fsm_retry d;
  fsm_retry_resolve(NULL, NULL, &d); /* the built-in defaults */
  ck_assert_int_eq(d.task_retry_limit, -1);
  ck_assert_int_eq(d.min_backoff_ms, 100);
  ck_assert_int_eq(d.max_backoff_ms, 3600000);
  ck_assert_int_eq(d.max_doublings, 16);
  ck_assert_int_eq(d.task_age_limit_ms, -1);
}
END_TEST

/* A non-final state whose action names no event, and an event with no
 * transition: on_failure, or the instance fails with a log line. */
START_TEST(no_event_and_unknown_event) {
  reset();
  mly_runtime *rt = mem_rt();
  fh_add(rt, abc_yaml);
  mly_value *c = abc_ctx();
  mly_map_del(mly_map_get(c, "next"), "b"); /* b names no event */
  start(rt, "abc", "abc-n", c);
  fh_until(rt, fh_ended, "abc-n", 10000);
  ck_assert_str_eq(logv[nlog - 1], "failed:oops");
  ck_assert(logged("state b is not final and its action named no event"));
  c = abc_ctx();
  mly_map_set_str(mly_map_get(c, "next"), "b", "nope");
  start(rt, "abc", "abc-u", c);
  fh_until(rt, fh_ended, "abc-u", 10000);
  ck_assert(logged("state b has no transition for event nope"));
  /* without on_failure: the instance fails */
  fh_add(rt, "state_machines:\n"
             "- name: plain\n"
             "  states:\n"
             "  - {name: a, initial: True, action: Action,\n"
             "     transitions: [{event: go, to: z}]}\n"
             "  - {name: z, final: True}\n");
  start(rt, "plain", "plain-1", NULL);
  fh_until(rt, fh_ended, "plain-1", 10000);
  ck_assert_int_eq(fh_end_status(rt, "plain-1"), MLY_EIO);
  ck_assert(logged("state a is not final and its action named no event"));
  mly_runtime_close(rt);
}
END_TEST

/* ---- wait states ---- */

static const char *wait_yaml =
    "state_machines:\n"
    "- name: order\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Action,\n"
    "     transitions: [{event: go, to: pay}]}\n"
    "  - name: pay\n"
    "    entry: Entry\n"
    "    wait: {events: [paid, cancelled], timeout: 150ms,\n"
    "           timeout_event: expired}\n"
    "    transitions:\n"
    "    - {event: paid, to: done}\n"
    "    - {event: cancelled, to: gone}\n"
    "    - {event: expired, to: late}\n"
    "  - {name: done, final: True, entry: Final}\n"
    "  - {name: gone, final: True, entry: Final}\n"
    "  - {name: late, final: True, entry: Final}\n";

static mly_value *go_ctx(void) {
  mly_value *c = mly_value_map(), *next = mly_value_map();
  mly_map_set_str(next, "a", "go");
  mly_map_set(c, "next", next);
  return c;
}

static int send_rc;
static void sent(mly_runtime *rt, int status, void *arg) {
  (void)rt, (void)arg;
  send_rc = status;
}

static void wait_case(mly_runtime *rt) {
  fh_add(rt, wait_yaml);
  /* an event: its payload merged into the context */
  start(rt, "order", "o-1", go_ctx());
  fh_at at = {"o-1", "wait", "pay"};
  fh_until(rt, fh_is_at, &at, 10000);
  mly_fsm_info fi;
  ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, "o-1"), &fi), 0);
  ck_assert_uint_eq(fi.nwaits, 2);
  ck_assert_str_eq(fi.waits[0], "paid");
  ck_assert_int_ge(fi.due_ms, 0);
  /* an event the state does not wait for is ignored */
  ck_assert_int_eq(mly_fsm_send(rt, "o-1", "bogus", NULL, NULL, NULL), 0);
  mly_value *p = mly_value_map();
  mly_map_set_int(p, "amount", 42);
  send_rc = 1;
  ck_assert_int_eq(mly_fsm_send(rt, "o-1", "paid", p, sent, NULL), 0);
  fh_until(rt, fh_ended, "o-1", 10000);
  ck_assert_int_eq(send_rc, 0);
  ck_assert_str_eq(logv[nlog - 1], "final:done");
  int64_t amount = 0;
  ck_assert_int_eq(mly_map_get_int(final_ctx, "amount", &amount), 0);
  ck_assert_int_eq(amount, 42);
  ck_assert(logged("event bogus ignored"));
  /* the timeout: its event */
  start(rt, "order", "o-2", go_ctx());
  fh_until(rt, fh_ended, "o-2", 100000);
  ck_assert_str_eq(logv[nlog - 1], "final:late");
  /* an event sent before the wait begins waits in the inbox */
  start(rt, "order", "o-3", go_ctx());
  ck_assert_int_eq(mly_fsm_send(rt, "o-3", "cancelled", NULL, NULL, NULL), 0);
  fh_until(rt, fh_ended, "o-3", 10000);
  ck_assert_str_eq(logv[nlog - 1], "final:gone");
  /* sending to an ended or unknown instance */
  ck_assert_int_eq(mly_fsm_send(rt, "o-3", "paid", NULL, NULL, NULL), MLY_ESRCH);
  ck_assert_int_eq(mly_fsm_send(rt, "nobody", "paid", NULL, NULL, NULL),
                   MLY_ENOENT);
}

START_TEST(wait_states_memory) {
  reset();
  mly_runtime *rt = mem_rt();
  wait_case(rt);
  mly_runtime_close(rt);
}
END_TEST

/* mly_fsm_send refuses what it cannot deliver as asked: a payload of a
 * type the machine's context_types forbids (it would fail every
 * dispatch after it, on_failure's too), a target that is not an
 * instance of a YAML machine, and anything once the runtime is
 * stopping (the instance is suspended, not gone). */
START_TEST(send_refused) {
  reset();
  mkdir_tmp();
  mly_runtime *rt = fh_durable(tmpdir, reg);
  fh_add(rt, "state_machines:\n"
             "- name: snd\n"
             "  context_types: {n: int}\n"
             "  states:\n"
             "  - {name: a, initial: True, action: Action,\n"
             "     transitions: [{event: go, to: w}]}\n"
             "  - {name: w, wait: {events: [x]}, transitions: [{event: x, to: z}]}\n"
             "  - {name: z, final: True}\n");
  start(rt, "snd", "s-1", go_ctx());
  fh_at at = {"s-1", "wait", "w"};
  fh_until(rt, fh_is_at, &at, 10000);
  mly_value *p = mly_value_map();
  mly_map_set_str(p, "n", "not an int");
  ck_assert_int_eq(mly_fsm_send(rt, "s-1", "x", p, NULL, NULL), MLY_EINVAL);
  ck_assert(logged("send x to s-1: context key n"));
  mly_fsm_info fi;
  ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, "s-1"), &fi), 0);
  char holder[128];
  snprintf(holder, sizeof holder, "fsm-def-%s", fi.hash);
  mly_name_info ni;
  /* on a shared store each process holds its own copy, unnamed */
  bool shared = mly_store_shared(rt);
  ck_assert_int_eq(mly_name_lookup(rt, holder, &ni), shared ? MLY_ENOENT : 0);
  ck_assert_int_eq(mly_fsm_send(rt, holder, "x", NULL, NULL, NULL),
                   shared ? MLY_ENOENT : MLY_EINVAL);
  ck_assert_int_eq(mly_runtime_shutdown(rt, 1000), 0);
  ck_assert_int_eq(mly_fsm_send(rt, "s-1", "x", NULL, NULL, NULL),
                   MLY_ESHUTDOWN);
  mly_runtime_close(rt);
  h_rmtree(tmpdir);
}
END_TEST

/* mly_fsm_set_log before anything attached the layer (the first
 * mly_action_register does) still takes effect; mly_fsm_info_get off
 * the loop thread is MLY_EPERM, as the other calls. */
static int perm_fail(mly_action_call *c, void *arg);
static mly_runtime *info_rt;
static mly_id info_id;
static int info_rc;
static void *info_thread(void *arg) {
  (void)arg;
  mly_fsm_info fi;
  info_rc = mly_fsm_info_get(info_rt, info_id, &fi);
  return NULL;
}

START_TEST(log_set_first) {
  reset();
  mly_runtime *rt = h_runtime();
  mly_fsm_set_log(rt, log_line, NULL); /* before the layer exists */
  ck_assert_int_eq(mly_action_register(rt, "Perm", perm_fail, NULL, 0), 0);
  ck_assert_int_eq(mly_action_register(rt, "Action", rec, "action", 0), 0);
  fh_add(rt, "state_machines:\n"
             "- name: lg\n"
             "  states:\n"
             "  - {name: a, initial: True, action: Action,\n"
             "     transitions: [{event: go, to: w}]}\n"
             "  - {name: w, wait: {events: [x]}, transitions: [{event: x, to: b}]}\n"
             "  - {name: b, action: Perm, transitions: [{event: go, to: z}]}\n"
             "  - {name: z, final: True}\n");
  start(rt, "lg", "lg-1", go_ctx());
  fh_at at = {"lg-1", "wait", "w"};
  fh_until(rt, fh_is_at, &at, 10000);
  info_rt = rt;
  info_id = fh_id(rt, "lg-1");
  info_rc = 1;
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, info_thread, NULL), 0);
  pthread_join(t, NULL);
  ck_assert_int_eq(info_rc, MLY_EPERM);
  ck_assert_int_eq(mly_fsm_send(rt, "lg-1", "x", NULL, NULL, NULL), 0);
  fh_until(rt, fh_ended, "lg-1", 10000);
  ck_assert(logged("instance lg-1 (lg): action of state b failed for good"));
  mly_runtime_close(rt);
}
END_TEST

/* A dispatch that leaves a context the journal cannot hold (nested
 * past MLY_VALUE_MAX_DEPTH) fails for good, to on_failure with a log
 * line, instead of the instance ending silently at the step's commit;
 * a payload that could not be saved is refused at the send. */
static int too_deep(mly_action_call *c, void *arg) {
  (void)arg;
  mly_value *d = mly_value_map(), *cur = d;
  for (int i = 0; i < 2 * MLY_VALUE_MAX_DEPTH; i++) {
    mly_value *n = mly_value_map();
    mly_map_set(cur, "k", n);
    cur = n;
  }
  mly_map_set(mly_action_context(c), "deep", d);
  return mly_action_event(c, "go");
}

START_TEST(context_unsaveable_fails_dispatch) {
  reset();
  mkdir_tmp();
  mly_runtime *rt = fh_durable(tmpdir, reg);
  ck_assert_int_eq(mly_action_register(rt, "Deep", too_deep, NULL, 0), 0);
  fh_add(rt, "state_machines:\n"
             "- name: dp\n"
             "  on_failure: f\n"
             "  states:\n"
             "  - {name: a, initial: True, action: Action,\n"
             "     transitions: [{event: go, to: w}]}\n"
             "  - {name: w, wait: {events: [x]}, transitions: [{event: x, to: b}]}\n"
             "  - {name: b, action: Deep, transitions: [{event: go, to: z}]}\n"
             "  - {name: z, final: True}\n"
             "  - {name: f, final: True, entry: Failed}\n");
  start(rt, "dp", "dp-1", go_ctx());
  fh_at at = {"dp-1", "wait", "w"};
  fh_until(rt, fh_is_at, &at, 10000);
  mly_value *p = mly_value_map(), *cur = p;
  for (int i = 0; i < 2 * MLY_VALUE_MAX_DEPTH; i++) {
    mly_value *n = mly_value_map();
    mly_map_set(cur, "k", n);
    cur = n;
  }
  ck_assert_int_lt(mly_fsm_send(rt, "dp-1", "x", p, NULL, NULL), 0);
  ck_assert_int_eq(mly_fsm_send(rt, "dp-1", "x", NULL, NULL, NULL), 0);
  fh_until(rt, fh_ended, "dp-1", 10000);
  ck_assert_int_eq(fh_end_status(rt, "dp-1"), 0); /* f, a final state */
  ck_assert_str_eq(logv[nlog - 1], "failed:f");
  ck_assert(logged("the context cannot be saved"));
  mly_runtime_close(rt);
  h_rmtree(tmpdir);
}
END_TEST

/* A user name in the shape of the names the layer derives (a fork's
 * "k1.0.f1", a continuation replica's "f1.1.c1", a spawn's "x.3.s0", a
 * collector's "fanin:...", a definition holder's "fsm-def-...") is
 * refused: holding one kept that copy from ever starting, silently, and
 * a counted fan-in waited for it forever. */
START_TEST(derived_names_refused) {
  reset();
  mly_runtime *rt = mem_rt();
  fh_add(rt, "state_machines:\n"
             "- name: dn\n"
             "  states:\n"
             "  - {name: a, initial: True, action: Action,\n"
             "     transitions: [{event: go, to: z}]}\n"
             "  - {name: z, final: True}\n");
  static const char *const bad[] = {
      "k1.0.f1", "f1.1.c1", "x.3.s0", "fanin:dn:z:-:-:0",
      "fsm-def-00", "h0123456789abcdef.f2"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    ck_assert_msg(mly_fsm_start(rt, "dn", bad[i], NULL, NULL, 0, NULL) ==
                      MLY_EINVAL, "%s was taken", bad[i]);
  ck_assert(logged("has the shape of the names the fsm layer gives"));
  static const char *const good[] = {"k1.f1", "v1.2", "a.b.c", "x.1.g2",
                                     "order-7.m"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    ck_assert_msg(mly_fsm_start(rt, "dn", good[i], go_ctx(), NULL, 0, NULL) ==
                      0, "%s was refused", good[i]);
  mly_runtime_close(rt);
}
END_TEST

START_TEST(wait_states_durable) {
  reset();
  mkdir_tmp();
  mly_runtime *rt = fh_durable(tmpdir, reg);
  wait_case(rt);
  mly_runtime_close(rt);
  h_rmtree(tmpdir);
}
END_TEST

/* ---- countdowns: chosen once, committed ---- */

static int64_t cds[8];
static int ncds;
static void on_cd(void *arg, mly_id id, int why, uint32_t attempt, int64_t ms) {
  (void)arg, (void)id, (void)attempt;
  if (why == FSM_WHY_COUNTDOWN && ncds < 8) cds[ncds++] = ms;
}

static const char *cd_yaml =
    "state_machines:\n"
    "- name: cd\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Action,\n"
    "     transitions: [{event: go, to: b,\n"
    "                    countdown: {minimum: 300ms, maximum: 600ms}}]}\n"
    "  - {name: b, final: True, entry: Final}\n";

START_TEST(countdown_committed) {
  reset();
  ncds = 0;
  mkdir_tmp();
  mly_runtime *rt = fh_durable(tmpdir, reg);
  fsm_test_hooks h = {.delay_chosen = on_cd};
  fsm_set_test_hooks(rt, &h);
  fh_add(rt, cd_yaml);
  start(rt, "cd", "cd-1", go_ctx());
  fh_at at = {"cd-1", "sleep", "a"};
  fh_until(rt, fh_is_at, &at, 10000);
  ck_assert_int_eq(ncds, 1);
  ck_assert_int_ge(cds[0], 300);
  ck_assert_int_le(cds[0], 600);
  mly_fsm_info fi;
  ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, "cd-1"), &fi), 0);
  ck_assert_str_eq(fi.sleep_why, "countdown");
  int64_t due = fi.due_ms;
  mly_runtime_close(rt); /* a clean stop: it continues on the next open */
  rt = fh_durable(tmpdir, reg);
  fsm_set_test_hooks(rt, &h);
  ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, "cd-1"), &fi), 0);
  ck_assert_str_eq(fi.phase, "sleep");
  ck_assert_int_eq(fi.due_ms, due); /* the same deadline, not drawn again */
  int64_t calls = 0; /* what the committed dispatch did to the context */
  ck_assert_int_eq(mly_map_get_int(fi.context, "n_action:a", &calls), 0);
  ck_assert_int_eq(calls, 1);
  ck_assert_uint_eq(fi.seq, 1);
  ck_assert_uint_eq(fi.nhistory, 1);
  ck_assert_uint_eq(fi.history[0].seq, 0);
  ck_assert_str_eq(fi.history[0].to, "a");
  ck_assert_int_eq(fi.history[0].result, 0);
  fh_until(rt, fh_ended, "cd-1", 100000);
  ck_assert_int_eq(ncds, 1);
  ck_assert_str_eq(logv[nlog - 1], "final:b");
  mly_runtime_close(rt);
  h_rmtree(tmpdir);
}
END_TEST

/* ---- definitions are pinned ---- */

static const char *pin_v1 =
    "state_machines:\n"
    "- name: pin\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Action,\n"
    "     transitions: [{event: go, to: w}]}\n"
    "  - {name: w, wait: {events: [on]}, transitions: [{event: on, to: v1}]}\n"
    "  - {name: v1, final: True, entry: Final}\n";
static const char *pin_v2 =
    "state_machines:\n"
    "- name: pin\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Action,\n"
    "     transitions: [{event: go, to: w}]}\n"
    "  - {name: w, wait: {events: [on]}, transitions: [{event: on, to: v2}]}\n"
    "  - {name: v2, final: True, entry: Final}\n";

START_TEST(pinned_definitions) {
  reset();
  mkdir_tmp();
  mly_runtime *rt = fh_durable(tmpdir, reg);
  fh_add(rt, pin_v1);
  start(rt, "pin", "old", go_ctx());
  fh_at at = {"old", "wait", "w"};
  fh_until(rt, fh_is_at, &at, 10000);
  mly_fsm_info fi;
  ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, "old"), &fi), 0);
  char h1[65];
  memcpy(h1, fi.hash, sizeof h1);
  fh_add(rt, pin_v2); /* the file changed */
  start(rt, "pin", "new", go_ctx());
  at.name = "new";
  fh_until(rt, fh_is_at, &at, 10000);
  ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, "new"), &fi), 0);
  ck_assert_str_ne(fi.hash, h1);
  /* a restart with only the new file: the old instance decodes its own */
  mly_runtime_close(rt);
  rt = fh_durable(tmpdir, reg);
  fh_add(rt, pin_v2);
  nlog = 0;
  ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, "old"), &fi), 0);
  ck_assert_str_eq(fi.hash, h1);
  ck_assert_int_eq(mly_fsm_send(rt, "old", "on", NULL, NULL, NULL), 0);
  ck_assert_int_eq(mly_fsm_send(rt, "new", "on", NULL, NULL, NULL), 0);
  fh_until(rt, fh_ended, "old", 10000);
  fh_until(rt, fh_ended, "new", 10000);
  ck_assert_int_eq(nlog, 2);
  bool v1 = strcmp(logv[0], "final:v1") == 0 || strcmp(logv[1], "final:v1") == 0;
  bool v2 = strcmp(logv[0], "final:v2") == 0 || strcmp(logv[1], "final:v2") == 0;
  ck_assert(v1 && v2);
  mly_runtime_close(rt);
  h_rmtree(tmpdir);
}
END_TEST

/* ---- an action no longer registered after a restart (issue 11, M5):
   the dispatch waits, nothing lost, and goes on once it is registered;
   a restart meanwhile loses nothing either ---- */

static char later_key[128];
static int later_calls;
static int later(mly_action_call *c, void *arg) {
  (void)arg;
  later_calls++;
  snprintf(later_key, sizeof later_key, "%s", mly_action_key(c));
  return mly_action_event(c, "done");
}

static void reg_later(mly_runtime *rt) {
  reg(rt);
  ck_assert_int_eq(mly_action_register(rt, "Later", later, NULL, 0), 0);
}

static const char *later_yaml =
    "state_machines:\n"
    "- name: lt\n"
    "  on_failure: oops\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Action,\n"
    "     transitions: [{event: go, to: w}]}\n"
    "  - {name: w, wait: {events: [on]}, transitions: [{event: on, to: b}]}\n"
    "  - {name: b, action: Later, transitions: [{event: done, to: c}]}\n"
    "  - {name: c, final: True, entry: Final}\n"
    "  - {name: oops, final: True, entry: Failed}\n";

static bool awaits_later(mly_runtime *rt, void *name) {
  mly_name_info ni;
  mly_fsm_info fi;
  return mly_name_lookup(rt, name, &ni) == 0 && ni.state == MLY_NAME_LIVE &&
         mly_fsm_info_get(rt, ni.id, &fi) == 0 &&
         strncmp(fi.awaits_action, "Later", 5) == 0;
}

/* the same at the continuation position, in memory */
static int later_cont(mly_action_call *c, void *arg) {
  (void)arg;
  later_calls++;
  if (mly_action_continuing(c)) return 0; /* no token: one replica */
  return mly_action_event(c, "done");
}

START_TEST(unregistered_continuation_waits) {
  reset();
  later_calls = 0;
  mkdir_tmp();
  mly_runtime *rt = fh_durable(tmpdir, reg);
  ck_assert_int_eq(mly_action_register(rt, "LaterC", later_cont, NULL, 0), 0);
  fh_add(rt, "state_machines:\n"
             "- name: ltc\n"
             "  states:\n"
             "  - {name: a, initial: True, action: Action,\n"
             "     transitions: [{event: go, to: w}]}\n"
             "  - {name: w, wait: {events: [on]}, transitions: [{event: on, to: b}]}\n"
             "  - {name: b, continuation: True, action: LaterC,\n"
             "     transitions: [{event: done, to: c}]}\n"
             "  - {name: c, final: True, entry: Final}\n");
  start(rt, "ltc", "ltc-1", go_ctx());
  fh_at at = {"ltc-1", "wait", "w"};
  fh_until(rt, fh_is_at, &at, 10000);
  mly_runtime_close(rt);
  rt = fh_durable(tmpdir, reg); /* without LaterC */
  ck_assert_int_eq(mly_fsm_send(rt, "ltc-1", "on", NULL, NULL, NULL), 0);
  fh_until(rt, awaits_later, "ltc-1", 10000);
  ck_assert(logged("state b: action LaterC is not registered"));
  ck_assert_int_eq(later_calls, 0);
  ck_assert_int_eq(mly_action_register(rt, "LaterC", later_cont, NULL, 0), 0);
  fh_until(rt, fh_ended, "ltc-1", 10000);
  ck_assert_int_eq(fh_end_status(rt, "ltc-1"), 0);
  ck_assert_int_eq(later_calls, 2); /* continuing, then the action */
  ck_assert_str_eq(logv[nlog - 1], "final:c");
  mly_runtime_close(rt);
  h_rmtree(tmpdir);
}
END_TEST

START_TEST(unregistered_action_waits) {
  reset();
  later_calls = 0;
  mkdir_tmp();
  mly_runtime *rt = fh_durable(tmpdir, reg_later);
  fh_add(rt, later_yaml);
  start(rt, "lt", "lt-1", go_ctx());
  fh_at at = {"lt-1", "wait", "w"};
  fh_until(rt, fh_is_at, &at, 10000);
  mly_runtime_close(rt);

  /* the host comes back without Later: the event's dispatch waits */
  rt = fh_durable(tmpdir, reg);
  ck_assert_int_eq(mly_fsm_send(rt, "lt-1", "on", NULL, NULL, NULL), 0);
  fh_until(rt, awaits_later, "lt-1", 10000);
  ck_assert(logged("instance lt-1 (machine lt), state b: action Later is "
                   "not registered; its dispatch waits"));
  mly_fsm_info fi;
  ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, "lt-1"), &fi), 0);
  ck_assert_str_eq(fi.phase, "dispatch");
  ck_assert_str_eq(fi.state, "w");
  ck_assert_uint_eq(fi.attempt, 0);       /* not a failure */
  ck_assert_str_eq(fi.last_error, "");
  uint64_t seq = fi.seq;
  for (int i = 0; i < 50; i++) uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
  ck_assert(awaits_later(rt, "lt-1"));     /* still waiting, not failed */
  mly_runtime_close(rt);

  /* again without it, then it is registered while the host runs */
  nlines = 0;
  rt = fh_durable(tmpdir, reg);
  fh_until(rt, awaits_later, "lt-1", 10000);
  ck_assert_int_eq(later_calls, 0);
  ck_assert_int_eq(mly_action_register(rt, "Later", later, NULL, 0), 0);
  ck_assert(logged("action Later is registered: instance"));
  fh_until(rt, fh_ended, "lt-1", 10000);
  ck_assert_int_eq(fh_end_status(rt, "lt-1"), 0);
  ck_assert_int_eq(later_calls, 1);
  char want[64];
  snprintf(want, sizeof want, "lt-1/%llu", (unsigned long long)seq);
  ck_assert_str_eq(later_key, want);      /* the dispatch it waited in */
  ck_assert_str_eq(logv[nlog - 1], "final:c"); /* not on_failure */
  mly_runtime_close(rt);
  h_rmtree(tmpdir);
}
END_TEST

/* ---- a blocking action runs on the threadpool ---- */

static pthread_t loop_thread;
static _Atomic int blocking_calls, off_loop, running, most;
static int block(mly_action_call *c, void *arg) {
  (void)arg;
  blocking_calls++;
  if (!pthread_equal(pthread_self(), loop_thread)) off_loop++;
  int now = ++running;
  for (int m = most; now > m && !__atomic_compare_exchange_n(
                                    (int *)&most, &m, now, false,
                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);)
    ;
  usleep(20000);
  running--;
  mly_map_set_str(mly_action_context(c), "blocked", mly_action_key(c));
  return mly_action_event(c, "go");
}

START_TEST(blocking_off_loop) {
  reset();
  blocking_calls = off_loop = running = most = 0;
  loop_thread = pthread_self();
  unsetenv("UV_THREADPOOL_SIZE"); /* libuv's 4: at most 3 jobs at once */
  mly_runtime *rt = mem_rt();
  ck_assert_int_eq(mly_action_register(rt, "Block", block, NULL,
                                       MLY_ACTION_BLOCKING), 0);
  fh_add(rt, "state_machines:\n"
             "- name: blk\n"
             "  states:\n"
             "  - {name: a, initial: True, entry: Entry, action: Block,\n"
             "     transitions: [{event: go, to: z}]}\n"
             "  - {name: z, final: True, entry: Final}\n");
  for (int i = 0; i < 8; i++) {
    char n[16];
    snprintf(n, sizeof n, "blk-%d", i);
    start(rt, "blk", n, NULL);
  }
  for (int i = 0; i < 8; i++) {
    char n[16];
    snprintf(n, sizeof n, "blk-%d", i);
    fh_until(rt, fh_ended, n, 10000);
    ck_assert_int_eq(fh_end_status(rt, n), 0);
  }
  ck_assert_int_eq(blocking_calls, 8);
  ck_assert_int_eq(off_loop, 8);
  /* one pool thread stays free for the journal's fdatasync */
  ck_assert_int_le(most, 3);
  ck_assert_int_ge(most, 2);
  const char *k;
  ck_assert_int_eq(mly_map_get_str(final_ctx, "blocked", &k), 0);
  ck_assert_ptr_nonnull(strstr(k, "/0"));
  ck_assert_int_eq(mly_action_register(rt, "Block", block, NULL, 0), MLY_EEXIST);
  ck_assert_int_eq(mly_action_register(rt, "", block, NULL, 0), MLY_EINVAL);
  ck_assert_int_eq(mly_action_register(rt, "X", block, NULL, 0x80), MLY_EINVAL);
  mly_runtime_close(rt);
}
END_TEST

/* ---- command actions ---- */

static const char *exec_script =
    "input=$(cat)\n"
    "case \"$input\" in\n"
    "  *'\"mode\":\"ok\"'*) printf '{\"event\": \"go\", \"key\": \"%s\", \"seen\": %s}\\n' \"$MLY_FSM_KEY\" \"$input\";;\n"
    "  *'\"mode\":\"perm\"'*) echo declined >&2; exit 100;;\n"
    "  *'\"mode\":\"flaky\"'*) echo try again >&2; exit 3;;\n"
    "  *'\"mode\":\"slow\"'*) exec sleep 30;;\n"
    "  *) echo not json;;\n"
    "esac\n";

static const char *exec_yaml_fmt =
    "state_machines:\n"
    "- name: ex\n"
    "  task_retry_limit: 2\n"
    "  min_backoff: 1ms\n"
    "  max_backoff: 1ms\n"
    "  on_failure: bad\n"
    "  states:\n"
    "  - name: a\n"
    "    initial: True\n"
    "    action: {exec: [/bin/sh, '%s'], timeout: 300ms}\n"
    "    transitions: [{event: go, to: z}]\n"
    "  - {name: z, final: True, entry: Final}\n"
    "  - {name: bad, final: True, entry: Failed}\n";

static void exec_case(mly_runtime *rt, const char *mode, const char *name,
                      const char *want_final, const char *want_err) {
  reset();
  mly_value *c = mly_value_map();
  mly_map_set_str(c, "mode", mode);
  start(rt, "ex", name, c);
  fh_until(rt, fh_ended, (void *)name, 200000);
  ck_assert_str_eq(logv[nlog - 1], want_final);
  if (want_err) {
    const char *e;
    ck_assert_int_eq(mly_map_get_str(final_ctx, "error", &e), 0);
    ck_assert_msg(strstr(e, want_err) != NULL, "error '%s' lacks '%s'", e,
                  want_err);
  }
}

START_TEST(exec_actions) {
  mkdir_tmp();
  char script[128], yaml[1024];
  snprintf(script, sizeof script, "%s/act.sh", tmpdir);
  FILE *fp = fopen(script, "w");
  ck_assert_ptr_nonnull(fp);
  fputs(exec_script, fp);
  fclose(fp);
  snprintf(yaml, sizeof yaml, exec_yaml_fmt, script);
  mly_runtime *rt = mem_rt();
  fh_add(rt, yaml);
  exec_case(rt, "ok", "ex-ok", "final:z", NULL);
  mly_value *seen = mly_map_get(final_ctx, "seen");
  const char *mode;
  ck_assert_int_eq(mly_map_get_str(seen, "mode", &mode), 0); /* stdin JSON */
  ck_assert_str_eq(mode, "ok");
  const char *key;
  ck_assert_int_eq(mly_map_get_str(final_ctx, "key", &key), 0);
  ck_assert_str_eq(key, "ex-ok/0"); /* MLY_FSM_KEY in its environment */
  exec_case(rt, "perm", "ex-perm", "failed:bad", "declined");
  bool perm = false;
  mly_map_get_bool(mly_map_get(final_ctx, "cause"), "permanent", &perm);
  ck_assert(perm);
  exec_case(rt, "flaky", "ex-flaky", "failed:bad", "exited 3: try again");
  uint64_t attempts = 0;
  mly_map_get_uint(mly_map_get(final_ctx, "cause"), "attempts", &attempts);
  ck_assert_uint_eq(attempts, 3); /* the first try and two retries */
  exec_case(rt, "slow", "ex-slow", "failed:bad", "timeout");
  exec_case(rt, "junk", "ex-junk", "failed:bad", "not JSON");
  mly_runtime_close(rt);
  h_rmtree(tmpdir);
}
END_TEST

START_TEST(start_errors_and_names) {
  reset();
  mly_runtime *rt = mem_rt();
  fh_add(rt, wait_yaml);
  ck_assert_int_eq(mly_fsm_start(rt, "nope", NULL, NULL, NULL, 0, NULL),
                   MLY_ENOENT);
  char name[MLY_INSTANCE_NAME_MAX + 1];
  ck_assert_int_eq(mly_fsm_start(rt, "order", NULL, go_ctx(), name, sizeof name,
                                 NULL), 0);
  ck_assert_int_eq(strncmp(name, "order-", 6), 0);
  ck_assert_uint_eq(strlen(name), strlen("order-YYYYmmddHHMMSS-xxxxxx"));
  ck_assert_int_eq(mly_fsm_start(rt, "order", name, NULL, NULL, 0, NULL),
                   MLY_EEXIST);
  mly_value *bad = mly_value_int(3);
  ck_assert_int_eq(mly_fsm_start(rt, "order", "x", bad, NULL, 0, NULL),
                   MLY_EINVAL);
  char tiny[4];
  ck_assert_int_eq(mly_fsm_start(rt, "order", "longer", NULL, tiny, sizeof tiny,
                                 NULL), MLY_ERANGE);
  mly_runtime_close(rt);
}
END_TEST

/* Random failure plans against a model of the interpreter: each
 * position fails 0-2 times (sometimes for good); a dispatch runs again
 * from its start after each retryable failure, until the retry limit
 * (3) or a permanent failure sends it to on_failure.  The calls made,
 * their order and their keys must be exactly the model's. */
START_TEST(random_failures_vs_model) {
  uint64_t seed = 0x9e3779b97f4a7c15ULL;
  for (int round = 0; round < 60; round++) {
    reset();
    int left[NPOS];
    bool perm[NPOS];
    for (int p = 0; p < NPOS; p++) {
      seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
      int r = (int)(seed % 16);
      left[p] = r < 10 ? 0 : r < 13 ? 1 : 2;
      perm[p] = r == 15;
      plan_fails[p] = left[p];
      plan_perm[p] = perm[p];
    }
    /* the model */
    char want[128][96], wkey[128][32];
    int nw = 0, seq = 0;
    bool failed = false;
    for (int d = 0; d < 3 && !failed; d++) {
      int attempts = 0;
      for (;;) {
        int fail_at = -1;
        for (int p = 0; p < NPOS; p++) {
          if (disp_of[p] != d) continue;
          snprintf(want[nw], sizeof want[0], "%s", order[p]);
          snprintf(wkey[nw++], sizeof wkey[0], "r/%d", seq);
          if (left[p] > 0) {
            left[p]--;
            fail_at = p;
            break;
          }
        }
        if (fail_at < 0) break;
        attempts++;
        if (perm[fail_at] || attempts > 3) {
          failed = true;
          break;
        }
      }
      seq++;
    }
    if (failed) {
      snprintf(want[nw], sizeof want[0], "failed:oops");
      snprintf(wkey[nw++], sizeof wkey[0], "r/%d", seq);
    }
    mly_runtime *rt = mem_rt();
    fh_add(rt, abc_yaml);
    start(rt, "abc", "r", abc_ctx());
    fh_until(rt, fh_ended, "r", 100000);
    ck_assert_msg(nlog == nw, "round %d: %d calls, model %d", round, nlog, nw);
    for (int i = 0; i < nw; i++) {
      ck_assert_msg(strcmp(logv[i], want[i]) == 0, "round %d call %d: %s, model %s",
                    round, i, logv[i], want[i]);
      ck_assert_str_eq(keyv[i], wkey[i]);
    }
    mly_runtime_close(rt);
  }
}
END_TEST

/* task_age_limit ends the retries even below task_retry_limit. */
START_TEST(task_age_limit) {
  mly_runtime *rt = flaky_rt(0);
  fh_add(rt, "state_machines:\n"
             "- name: aged\n"
             "  task_retry_limit: 50\n"
             "  task_age_limit: 30ms\n"
             "  min_backoff: 60ms\n"
             "  max_backoff: 60ms\n"
             "  states:\n"
             "  - {name: a, initial: True, action: Flaky,\n"
             "     transitions: [{event: go, to: z}]}\n"
             "  - {name: z, final: True}\n");
  start(rt, "aged", "aged-1", NULL);
  fh_until(rt, fh_ended, "aged-1", 10000);
  ck_assert_int_eq(fh_end_status(rt, "aged-1"), MLY_EIO);
  ck_assert_int_eq(ndelays, 1); /* the second attempt was past the age */
  ck_assert_int_eq(nlog, 2);
  mly_runtime_close(rt);
}
END_TEST

/* context_types: refused at start, and a dispatch that breaks them
 * fails for good. */
static int set_str_n(mly_action_call *c, void *arg) {
  (void)arg;
  mly_map_set_str(mly_action_context(c), "n", "seven");
  return mly_action_event(c, "go");
}

START_TEST(context_types_enforced) {
  reset();
  mly_runtime *rt = mem_rt();
  ck_assert_int_eq(mly_action_register(rt, "Bad", set_str_n, NULL, 0), 0);
  fh_add(rt, "state_machines:\n"
             "- name: typed\n"
             "  on_failure: oops\n"
             "  context_types: {n: int, tags: [string], l: list}\n"
             "  states:\n"
             "  - {name: a, initial: True, action: Bad,\n"
             "     transitions: [{event: go, to: z}]}\n"
             "  - {name: z, final: True, entry: Final}\n"
             "  - {name: oops, final: True, entry: Failed}\n");
  mly_value *c = mly_value_map();
  mly_map_set_str(c, "n", "x");
  ck_assert_int_eq(mly_fsm_start(rt, "typed", "t-0", c, NULL, 0, NULL),
                   MLY_EINVAL);
  ck_assert(logged("context key n is string but machine typed declares it int"));
  c = mly_value_map();
  mly_value *tags = mly_value_array();
  mly_array_push(tags, mly_value_str("a"));
  mly_array_push(tags, mly_value_int(1));
  mly_map_set(c, "tags", tags);
  ck_assert_int_eq(mly_fsm_start(rt, "typed", "t-1", c, NULL, 0, NULL),
                   MLY_EINVAL);
  ck_assert(logged("context key tags[1] is int but machine typed declares "
                   "it a list of string"));
  /* `list` (Python's: a list of anything) still wants a list */
  c = mly_value_map();
  mly_map_set(c, "l", mly_value_map());
  ck_assert_int_eq(mly_fsm_start(rt, "typed", "t-1", c, NULL, 0, NULL),
                   MLY_EINVAL);
  ck_assert(logged("context key l is map but machine typed declares it a "
                   "list of any"));
  c = mly_value_map();
  mly_map_set_int(c, "n", 3);
  start(rt, "typed", "t-2", c);
  fh_until(rt, fh_ended, "t-2", 10000);
  ck_assert_str_eq(logv[nlog - 1], "failed:oops");
  const char *e;
  ck_assert_int_eq(mly_map_get_str(final_ctx, "error", &e), 0);
  ck_assert_ptr_nonnull(strstr(e, "context key n is string"));
  int64_t n = 0;
  ck_assert_int_eq(mly_map_get_int(final_ctx, "n", &n), 0); /* not committed */
  ck_assert_int_eq(n, 3);
  mly_runtime_close(rt);
}
END_TEST

/* A state's on_failure wins over the machine's; task_retry_limit 0: no
 * retry at all. */
START_TEST(state_on_failure) {
  mly_runtime *rt = flaky_rt(0);
  fh_add(rt, "state_machines:\n"
             "- name: sof\n"
             "  task_retry_limit: 0\n"
             "  on_failure: m\n"
             "  states:\n"
             "  - {name: a, initial: True, action: Flaky, on_failure: s,\n"
             "     transitions: [{event: go, to: b}]}\n"
             "  - {name: b, action: Action, transitions: [{event: go, to: z}]}\n"
             "  - {name: z, final: True}\n"
             "  - {name: s, final: True, entry: Failed}\n"
             "  - {name: m, final: True, entry: Final}\n");
  start(rt, "sof", "sof-1", NULL);
  fh_until(rt, fh_ended, "sof-1", 10000);
  ck_assert_int_eq(ndelays, 0);
  ck_assert_str_eq(logv[nlog - 1], "failed:s");
  uint64_t att = 0;
  ck_assert_int_eq(mly_map_get_uint(mly_map_get(final_ctx, "cause"), "attempts",
                                    &att), 0);
  ck_assert_uint_eq(att, 1);
  mly_runtime_close(rt);
}
END_TEST

/* on_failure states that fail in turn (s -> t -> s) end the instance
 * with a log line: no endless, hot cycle of failures. */
static int perm_fail(mly_action_call *c, void *arg) {
  (void)arg;
  return mly_action_fail(c, true, "no");
}

START_TEST(on_failure_cycle_ends) {
  reset();
  mly_runtime *rt = mem_rt();
  ck_assert_int_eq(mly_action_register(rt, "Perm", perm_fail, NULL, 0), 0);
  fh_add(rt, "state_machines:\n"
             "- name: cyc\n"
             "  states:\n"
             "  - {name: s, initial: True, action: Perm, on_failure: t,\n"
             "     transitions: [{event: go, to: z}]}\n"
             "  - {name: t, action: Perm, on_failure: s,\n"
             "     transitions: [{event: go, to: z}]}\n"
             "  - {name: z, final: True}\n");
  start(rt, "cyc", "cyc-1", NULL);
  fh_until(rt, fh_ended, "cyc-1", 2000);
  ck_assert_int_eq(fh_end_status(rt, "cyc-1"), MLY_EIO);
  ck_assert(logged("its on_failure states fail in a cycle"));
  mly_runtime_close(rt);
}
END_TEST

/* A failure's text is cut between characters and made valid UTF-8 (a
 * command's stderr may hold any bytes): "error" in the context stays a
 * string an exec action can pass on as JSON. */
static int utf8_fail(mly_action_call *c, void *arg) {
  (void)arg;
  char m[300];
  memset(m, 'a', 254);
  strcpy(m + 254, "\xc3\xa9\xc3\xa9 \xff\xfe");
  return mly_action_fail(c, true, "%s", m);
}

START_TEST(failure_text_is_utf8) {
  reset();
  mly_runtime *rt = mem_rt();
  ck_assert_int_eq(mly_action_register(rt, "Utf", utf8_fail, NULL, 0), 0);
  fh_add(rt, "state_machines:\n"
             "- name: utf\n"
             "  on_failure: f\n"
             "  states:\n"
             "  - {name: s, initial: True, action: Utf,\n"
             "     transitions: [{event: go, to: z}]}\n"
             "  - {name: f, final: True, entry: Failed}\n"
             "  - {name: z, final: True}\n");
  start(rt, "utf", "utf-1", NULL);
  fh_until(rt, fh_ended, "utf-1", 2000);
  ck_assert_ptr_nonnull(final_ctx);
  const char *e = NULL;
  ck_assert_int_eq(mly_map_get_str(final_ctx, "error", &e), 0);
  size_t n = strlen(e);
  ck_assert_uint_gt(n, 200);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t k = mly_utf8_at((const unsigned char *)e + i, n - i, &cp);
    ck_assert_msg(k > 0, "error text is not UTF-8 at byte %zu", i);
    i += k;
  }
  mly_runtime_close(rt);
}
END_TEST

/* The history mly_fsm_info_get shows: failures and commits, numbered. */
static int twice(mly_action_call *c, void *arg) {
  (void)arg;
  if (mly_action_attempt(c) < 2) return mly_action_fail(c, false, "not yet");
  return mly_action_event(c, "go");
}

START_TEST(history_shown) {
  reset();
  mly_runtime *rt = mem_rt();
  ck_assert_int_eq(mly_action_register(rt, "Twice", twice, NULL, 0), 0);
  fh_add(rt, "state_machines:\n"
             "- name: hist\n"
             "  min_backoff: 1ms\n"
             "  max_backoff: 1ms\n"
             "  states:\n"
             "  - {name: a, initial: True, action: Action,\n"
             "     transitions: [{event: go, to: b}]}\n"
             "  - {name: b, action: Twice, transitions: [{event: go, to: w}]}\n"
             "  - {name: w, wait: {events: [on]}, transitions: [{event: on, to: z}]}\n"
             "  - {name: z, final: True}\n");
  start(rt, "hist", "h-1", go_ctx());
  fh_at at = {"h-1", "wait", "w"};
  fh_until(rt, fh_is_at, &at, 10000);
  mly_fsm_info fi;
  ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, "h-1"), &fi), 0);
  ck_assert_uint_eq(fi.seq, 3);
  ck_assert_str_eq(fi.last_error, "not yet");
  static const struct {
    uint64_t seq;
    const char *from, *event, *to;
    int result;
  } want[] = {{0, "", "", "a", 0},
              {1, "a", "go", "b", MLY_EAGAIN},
              {1, "a", "go", "b", MLY_EAGAIN},
              {1, "a", "go", "b", 0},
              {2, "b", "go", "w", 0}};
  ck_assert_uint_eq(fi.nhistory, 5);
  for (int i = 0; i < 5; i++) {
    ck_assert_uint_eq(fi.history[i].seq, want[i].seq);
    ck_assert_str_eq(fi.history[i].from, want[i].from);
    ck_assert_str_eq(fi.history[i].event, want[i].event);
    ck_assert_str_eq(fi.history[i].to, want[i].to);
    ck_assert_int_eq(fi.history[i].result, want[i].result);
    ck_assert_int_gt(fi.history[i].at_ms, 0);
    if (i) ck_assert_int_ge(fi.history[i].at_ms, fi.history[i - 1].at_ms);
  }
  mly_runtime_close(rt);
}
END_TEST

/* mly_shutdown of one instance ends it (cancelled) wherever it waits. */
START_TEST(shutdown_ends_instance) {
  reset();
  mly_runtime *rt = mem_rt();
  fh_add(rt, wait_yaml);
  start(rt, "order", "o-s", go_ctx());
  fh_at at = {"o-s", "wait", "pay"};
  fh_until(rt, fh_is_at, &at, 10000);
  ck_assert_int_eq(mly_shutdown(rt, fh_id(rt, "o-s")), 0);
  fh_until(rt, fh_ended, "o-s", 10000);
  ck_assert_int_eq(fh_end_status(rt, "o-s"), MLY_ECANCELED);
  ck_assert(logged("stopped by request"));
  mly_runtime_close(rt);
}
END_TEST

static Suite *fsm_suite(void) {
  Suite *s = suite_create("fsm");
  TCase *tc = tcase_create("interp");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, dispatch_order_memory);
  tcase_add_test(tc, dispatch_order_durable);
  h_tcase_add_journal_only(tc, journal_bytes_per_dispatch);
  tcase_add_test(tc, failure_at_every_position);
  tcase_add_test(tc, permanent_at_every_position);
  tcase_add_test(tc, retry_delays);
  tcase_add_test(tc, retry_policy_resolution);
  tcase_add_test(tc, backoff_table);
  tcase_add_test(tc, no_event_and_unknown_event);
  tcase_add_test(tc, wait_states_memory);
  tcase_add_test(tc, wait_states_durable);
  tcase_add_test(tc, countdown_committed);
  tcase_add_test(tc, pinned_definitions);
  tcase_add_test(tc, unregistered_action_waits);
  tcase_add_test(tc, unregistered_continuation_waits);
  tcase_add_test(tc, blocking_off_loop);
  tcase_add_test(tc, exec_actions);
  tcase_add_test(tc, start_errors_and_names);
  tcase_add_test(tc, random_failures_vs_model);
  tcase_add_test(tc, task_age_limit);
  tcase_add_test(tc, context_types_enforced);
  tcase_add_test(tc, shutdown_ends_instance);
  tcase_add_test(tc, state_on_failure);
  tcase_add_test(tc, send_refused);
  tcase_add_test(tc, log_set_first);
  tcase_add_test(tc, derived_names_refused);
  tcase_add_test(tc, context_unsaveable_fails_dispatch);
  tcase_add_test(tc, on_failure_cycle_ends);
  tcase_add_test(tc, failure_text_is_utf8);
  tcase_add_test(tc, history_shown);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(fsm_suite)
