/*
 * test_qyaml.c - `queues:` and `schedules:` in the files the fsm loader
 * reads: a good file declares what it says; a file with a mistake in
 * every key reports each one, at its line and column, in one load.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mealy.h"

static char msgs[64][320];
static int nmsgs;

static void on_error(const mly_conf_msg *m, void *arg) {
  (void)arg;
  if (nmsgs < 64) mly_conf_format(m, msgs[nmsgs++], sizeof msgs[0]);
}

static int load(const char *text, mly_queue_conf *qc) {
  mly_conf_section sec[2];
  mly_queue_conf_sections(qc, sec);
  mly_fsm_load_options o = {.on_error = on_error, .sections = sec,
                            .nsections = 2};
  mly_fsm_set *set = NULL;
  nmsgs = 0;
  int rc = mly_fsm_load_text("q.yaml", text, strlen(text), &o, &set);
  mly_fsm_set_free(set);
  return rc;
}

static const char good[] =
    "queues:\n"
    "- name: mail\n"
    "  max_concurrent: 4\n"
    "  rate: 10.5\n"
    "  bucket_size: 20\n"
    "  priority: 3\n"
    "  task_retry_limit: 5\n"
    "  min_backoff: 1s\n"
    "  max_backoff: 1h\n"
    "  max_doublings: 4\n"
    "  task_age_limit: 48h\n"
    "  jitter: 0.25\n"
    "  timeout: 30s\n"
    "  concurrency_key: customer\n"
    "  concurrency_limit: 2\n"
    "schedules:\n"
    "- name: nightly\n"
    "  cron: 0 3 * * MON-FRI\n"
    "  timezone: Europe/Berlin\n"
    "  missed: one\n"
    "  queue: mail\n"
    "  function: report\n"
    "  payload: {kind: daily, n: 3, to: [a, b]}\n"
    "- name: often\n"
    "  every: 10m\n"
    "  function: report\n";

static void report_fn(mly_task *t, void *arg) {
  (void)arg;
  mly_task_done(t, MLY_TASK_OK, NULL);
}

START_TEST(good_file) {
  mly_queue_conf *qc = mly_queue_conf_new();
  int lrc = load(good, qc);
  ck_assert_int_eq(lrc, 0);
  ck_assert_int_eq(nmsgs, 0);
  ck_assert_uint_eq(mly_queue_conf_count(qc, false), 1);
  ck_assert_uint_eq(mly_queue_conf_count(qc, true), 2);
  mly_runtime *rt = NULL;
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, NULL), 0);
  ck_assert_int_eq(mly_queues_open(rt), 0);
  ck_assert_int_eq(mly_defer_register(rt, "report", report_fn, NULL, 0), 0);
  char err[256];
  ck_assert_int_eq(mly_queue_conf_apply(rt, qc, MLY_QCONF_QUEUES |
                                        MLY_QCONF_SCHEDULES, err, sizeof err),
                   0);
  mly_queue_conf_free(qc);
  mly_queue_info qi;
  ck_assert_int_eq(mly_queue_info_get(rt, "mail", &qi), 0);
  ck_assert_uint_eq(qi.def.max_concurrent, 4);
  ck_assert(qi.def.rate == 10.5);
  ck_assert_uint_eq(qi.def.bucket_size, 20);
  ck_assert_uint_eq(qi.def.priority_levels, 3);
  ck_assert_int_eq(qi.def.retry.task_retry_limit, 5);
  ck_assert_int_eq(qi.def.retry.min_backoff_ms, 1000);
  ck_assert_int_eq(qi.def.retry.max_backoff_ms, 3600000);
  ck_assert_int_eq(qi.def.retry.max_doublings, 4);
  ck_assert_int_eq(qi.def.retry.task_age_limit_ms, 2 * 86400000LL);
  ck_assert(qi.def.retry.jitter == 0.25);
  ck_assert_int_eq(qi.def.timeout_ms, 30000);
  ck_assert_str_eq(qi.def.concurrency_key, "customer");
  ck_assert_uint_eq(qi.def.concurrency_key_max, 2);
  mly_schedule_info si;
  ck_assert_int_eq(mly_schedule_info_get(rt, "nightly", &si), 0);
  ck_assert_int_eq(mly_schedule_info_get(rt, "often", &si), 0);
  mly_runtime_close(rt);
}
END_TEST

static const char bad[] =
    "queues:\n"
    "- name: mail\n"                 /* 2 */
    "  max_concurrent: 0\n"          /* 3 */
    "  rate: -1\n"                   /* 4 */
    "  jitter: 2\n"                  /* 5 */
    "  timeout: soon\n"              /* 6 */
    "  colour: red\n"                /* 7 */
    "- max_concurrent: 2\n"          /* 8 */
    "- name: mail\n"                 /* 9 */
    "schedules:\n"                   /* 10 */
    "- name: a/b\n"                  /* 11 */
    "  cron: 0 3 * 13 *\n"           /* 12 */
    "  timezone: Mars/Olympus\n"     /* 13 */
    "  missed: sometimes\n"          /* 14 */
    "  function: f\n"                /* 15 */
    "- name: x\n"                    /* 16 */
    "  every: 1500ms\n"              /* 17 */
    "  function: f\n"                /* 18 */
    "- name: y\n"                    /* 19 */
    "  function: f\n"                /* 20 */
    "- name: z\n"                    /* 21 */
    "  cron: '* * * * *'\n"          /* 22 */
    "  timezone: ../../etc/shadow\n" /* 23 */
    "- 7\n";                         /* 24 */

START_TEST(every_mistake_placed) {
  static const char *const want[] = {
      "q.yaml:3:19: ", "q.yaml:4:9: ", "q.yaml:5:11: ", "q.yaml:6:12: ",
      "q.yaml:7:3: ", "q.yaml:8:3: ", "q.yaml:9:3: ", "q.yaml:11:9: ",
      "q.yaml:12:15: ", "q.yaml:13:13: ", "q.yaml:14:11: ",
      "q.yaml:17:10: ", "q.yaml:19:3: ", "q.yaml:23:13: ", "q.yaml:24:3: "};
  mly_queue_conf *qc = mly_queue_conf_new();
  ck_assert_int_eq(load(bad, qc), MLY_EINVAL);
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    bool seen = false;
    for (int k = 0; k < nmsgs && !seen; k++)
      seen = strncmp(msgs[k], want[i], strlen(want[i])) == 0;
    ck_assert_msg(seen, "no message at %s", want[i]);
  }
  ck_assert_int_eq(nmsgs, (int)(sizeof want / sizeof *want));
  mly_queue_conf_free(qc);
}
END_TEST

/* Finding: a refused schedule name (NULL after its error) was compared
 * with strcmp by the duplicate check: SIGSEGV.  Each refusal is one
 * message at the name, whatever comes before it. */
START_TEST(refused_name_no_crash) {
  static const char *const names[] = {"\"a@b\"", "f/x", "\"\""};
  for (size_t i = 0; i < 3; i++) {
    char y[256];
    snprintf(y, sizeof y, "schedules:\n- {name: h, every: 5s, function: f}\n"
             "- {name: %s, every: 5s, function: f}\n", names[i]);
    mly_queue_conf *qc = mly_queue_conf_new();
    ck_assert_int_eq(load(y, qc), MLY_EINVAL);
    ck_assert_int_eq(nmsgs, 1);
    ck_assert_msg(strncmp(msgs[0], "q.yaml:3:10: ", 13) == 0, "%s", msgs[0]);
    mly_queue_conf_free(qc);
  }
  /* the same for a queue: one message, at the name, saying the rule */
  mly_queue_conf *qc = mly_queue_conf_new();
  ck_assert_int_eq(load("queues:\n- {name: ok}\n- {name: \"a@b\"}\n", qc),
                   MLY_EINVAL);
  ck_assert_int_eq(nmsgs, 1);
  ck_assert_msg(strncmp(msgs[0], "q.yaml:3:10: queue name 'a@b': 1 to 63",
                        37) == 0, "%s", msgs[0]);
  mly_queue_conf_free(qc);
}
END_TEST

static void bad_fn(mly_task *t, void *arg) {
  (void)arg;
  mly_task_done(t, MLY_TASK_OK, NULL);
}

/* Finding: what a schedule names (queue, machine, priority, function)
 * was checked only at each tick.  Now every one is a load error at its
 * position, all of them in one load. */
START_TEST(schedule_refs_checked_at_load) {
  static const char y[] =
      "state_machines:\n"
      "- name: m\n"
      "  states:\n"
      "  - {name: a, initial: true, action: x, transitions: [{event: e, to: "
      "b}]}\n"
      "  - {name: b, final: true}\n"
      "queues:\n"
      "- {name: q3, priority: 3}\n"                           /* 7 */
      "schedules:\n"
      "- {name: s1, every: 5s, function: known, queue: nosuch}\n" /* 9 */
      "- {name: s2, every: 5s, machine: nosuch}\n"           /* 10 */
      "- {name: s3, every: 5s, function: known, queue: q3, priority: 3}\n"
      "- {name: s4, every: 5s, function: nope}\n"            /* 12 */
      "- {name: s5, every: 5s, machine: m, priority: 10}\n"  /* 13 */
      "- {name: s6, every: 5s, machine: m, queue: q3, priority: 2}\n";
  static const char *const want[] = {
      "q.yaml:9:49: schedule 's1': queue 'nosuch' is not declared",
      "q.yaml:10:34: schedule 's2': machine 'nosuch' is not defined",
      "q.yaml:11:63: schedule 's3': priority 3 is outside queue 'q3' (0 to 2)",
      "q.yaml:12:35: schedule 's4': function 'nope' is not registered",
      "q.yaml:13:47: schedule 's5': priority 10 is outside queue 'default'"};
  mly_runtime *rt = NULL;
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, NULL), 0);
  ck_assert_int_eq(mly_queues_open(rt), 0);
  ck_assert_int_eq(mly_defer_register(rt, "known", bad_fn, NULL, 0), 0);
  mly_queue_conf *qc = mly_queue_conf_new();
  mly_queue_conf_bind(qc, rt, true);
  ck_assert_int_eq(load(y, qc), MLY_EINVAL);
  ck_assert_int_eq(nmsgs, 5);
  for (size_t i = 0; i < 5; i++) {
    bool seen = false;
    for (int k = 0; k < nmsgs && !seen; k++)
      seen = strncmp(msgs[k], want[i], strlen(want[i])) == 0;
    ck_assert_msg(seen, "no message %s", want[i]);
  }
  mly_queue_conf_free(qc);
  /* unbound (validate without a library): functions are not checked,
   * the rest is */
  qc = mly_queue_conf_new();
  ck_assert_int_eq(load(y, qc), MLY_EINVAL);
  ck_assert_int_eq(nmsgs, 4);
  mly_queue_conf_free(qc);
  mly_runtime_close(rt);
}
END_TEST

/* What mly_queue_conf_apply would refuse (without a position) is a load
 * error at its place instead: a file that loads declares. */
START_TEST(apply_refusals_caught_at_load) {
  char longkey[80], y[512];
  memset(longkey, 'k', 70);
  longkey[70] = '\0';
  const char *const cases[][2] = {
      {"queues:\n- {name: q, concurrency_key: %s}\n", "q.yaml:2:30: "},
      {"schedules:\n- {name: s, every: 5s, function: %s}\n", "q.yaml:2:34: "},
      {"schedules:\n- {name: s, every: 5s, function: \"a/b\"}\n",
       "q.yaml:2:34: "},
      {"schedules:\n- {name: \"a\\tb\", every: 5s, function: f}\n",
       "q.yaml:2:10: "},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    snprintf(y, sizeof y, cases[i][0], longkey);
    mly_queue_conf *qc = mly_queue_conf_new();
    ck_assert_int_eq(load(y, qc), MLY_EINVAL);
    ck_assert_int_eq(nmsgs, 1);
    ck_assert_msg(strncmp(msgs[0], cases[i][1], strlen(cases[i][1])) == 0,
                  "case %zu: %s", i, msgs[0]);
    mly_queue_conf_free(qc);
  }
}
END_TEST

/* The invariant behind the findings above: a file that loads (every
 * name checked as far as the runtime knows them) is declared whole by
 * mly_queue_conf_apply, and a file that does not says why at a
 * FILE:LINE:COL.  Random files from pools of good and bad values. */
static uint64_t rnd_state = 0x2545f4914f6cdd1dULL;
static uint64_t next_rnd(void) {
  rnd_state ^= rnd_state << 13, rnd_state ^= rnd_state >> 7,
      rnd_state ^= rnd_state << 17;
  return rnd_state;
}
static const char *pick(const char *const *v, size_t n) {
  return v[next_rnd() % n];
}
#define PICK(v) pick(v, sizeof v / sizeof *v)

/* good (index 0) 15 times in 16, else one of the others */
static const char *mostly(const char *const *v, size_t n) {
  uint64_t r = next_rnd();
  return r % 16 ? v[0] : v[1 + r / 16 % (n - 1)];
}
#define MOSTLY(v) mostly((const char *const *)v, sizeof v / sizeof *v)

START_TEST(loads_means_applies) {
  static const char *const qn0[] = {"q3", "\"a@b\"", "mail", ""};
  static const char *const qn1[] = {"mail", "\"a b\"", "q3"};
  static const char *const qextra[] = {"", ", priority: 3",
                                       ", concurrency_key: c",
                                       ", concurrency_limit: 2",
                                       ", rate: 5", ", max_concurrent: 0"};
  const char *sbad[] = {"", "\"a@b\"", "f/x", "\"\"",
                                     "\"a\\tb\"", "s0"};
  static const char *const when[] = {"every: 5s", "every: 1500ms",
                                     "cron: '0 3 * 13 *'",
                                     "every: 5s, cron: '* * * * *'",
                                     "missed: one"};
  static const char *const what[] = {
      "function: known", "function: nope", "machine: nosuch",
      "function: \"a/b\"", "missed: all", "function: known, machine: m"};
  static const char *const where[] = {"", ", queue: nosuch", ", queue: \"\""};
  static const char *const good_where[] = {"", ", queue: default",
                                           ", queue: mail", ", queue: q3"};
  static const char *const prio[] = {"", ", priority: 10",
                                     ", priority: -1"};
  static const char *const good_prio[] = {"", ", priority: 0",
                                          ", priority: 2"};
  int loaded = 0, refused = 0;
  for (int iter = 0; iter < 400; iter++) {
    char y[2048];
    int n = snprintf(y, sizeof y,
                     "state_machines:\n- name: m\n  states:\n"
                     "  - {name: a, initial: true, wait: {events: [go]}, "
                     "transitions: [{event: go, to: b}]}\n"
                     "  - {name: b, final: true}\nqueues:\n");
    n += snprintf(y + n, sizeof y - (size_t)n, "- {name: %s%s}\n",
                  MOSTLY(qn0), PICK(qextra));
    n += snprintf(y + n, sizeof y - (size_t)n, "- {name: %s}\n", MOSTLY(qn1));
    n += snprintf(y + n, sizeof y - (size_t)n, "schedules:\n");
    const char *tw[3], *tq[3], *tp[3]; /* each schedule's what, where, prio */
    for (int k = 0; k < 3; k++) {
      char sname[16];
      snprintf(sname, sizeof sname, "s%d", k);
      sbad[0] = sname;
      const char *w = MOSTLY(where), *pr = MOSTLY(prio);
      tw[k] = MOSTLY(what);
      tq[k] = w[0] ? w : PICK(good_where);
      tp[k] = pr[0] ? pr : PICK(good_prio);
      n += snprintf(y + n, sizeof y - (size_t)n, "- {name: %s, %s, %s%s%s}\n",
                    MOSTLY(sbad), MOSTLY(when), tw[k], tq[k], tp[k]);
    }
    ck_assert_int_lt(n, (int)sizeof y);
    mly_runtime *rt = NULL;
    ck_assert_int_eq(mly_runtime_new(&rt, NULL, NULL), 0);
    ck_assert_int_eq(mly_queues_open(rt), 0);
    ck_assert_int_eq(mly_defer_register(rt, "known", bad_fn, NULL, 0), 0);
    ck_assert_int_eq(mly_task_set_starter(rt, bad_fn, NULL, 0), 0);
    mly_queue_conf *qc = mly_queue_conf_new();
    mly_queue_conf_bind(qc, rt, true);
    int rc = load(y, qc);
    if (rc == 0) {
      char err[256] = "";
      ck_assert_msg(mly_queue_conf_apply(rt, qc, MLY_QCONF_QUEUES |
                                         MLY_QCONF_SCHEDULES, err,
                                         sizeof err) == 0,
                    "loaded but not applied: %s\n%s", err, y);
      /* and each tick would be taken: its target known, its queue
       * there, its priority within the queue's levels */
      for (int k = 0; k < 3; k++) {
        char qn[32] = "default";
        int prio_v = 0;
        sscanf(tq[k], ", queue: %31s", qn);
        sscanf(tp[k], ", priority: %d", &prio_v);
        bool fn = strncmp(tw[k], "function: ", 10) == 0;
        mly_task_target tt = {fn ? MLY_TASK_FUNCTION : MLY_TASK_MACHINE,
                              tw[k] + (fn ? 10 : 9)};
        ck_assert_msg(fn || strcmp(tt.name, "m") == 0,
                      "machine %s loaded\n%s", tt.name, y);
        mly_task_opts to = {.queue = qn, .priority = prio_v};
        ck_assert_msg(mly_task_add(rt, &tt, NULL, &to) == 0,
                      "a tick of schedule %d would be refused\n%s", k, y);
      }
      loaded++;
    } else {
      ck_assert_int_eq(rc, MLY_EINVAL);
      ck_assert_int_gt(nmsgs, 0);
      for (int k = 0; k < nmsgs; k++) {
        unsigned line = 0, col = 0;
        ck_assert_msg(sscanf(msgs[k], "q.yaml:%u:%u: ", &line, &col) == 2 &&
                      line > 0 && col > 0, "no position: %s", msgs[k]);
      }
      refused++;
    }
    mly_queue_conf_free(qc);
    mly_runtime_close(rt);
  }
  fprintf(stderr, "loads_means_applies: %d loaded, %d refused\n", loaded,
          refused);
  /* both sides were exercised */
  ck_assert_int_gt(loaded, 0);
  ck_assert_int_gt(refused, 0);
}
END_TEST

static Suite *qyaml_suite(void) {
  Suite *s = suite_create("qyaml");
  TCase *tc = tcase_create("qyaml");
  tcase_add_test(tc, good_file);
  tcase_add_test(tc, every_mistake_placed);
  tcase_add_test(tc, refused_name_no_crash);
  tcase_add_test(tc, schedule_refs_checked_at_load);
  tcase_add_test(tc, apply_refusals_caught_at_load);
  tcase_add_test(tc, loads_means_applies);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(qyaml_suite)
