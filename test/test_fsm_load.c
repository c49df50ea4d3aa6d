/*
 * test_fsm_load.c - the YAML machine loader (lib/fsm/load.c, parse.c,
 * validate.c, def.c, dot.c), after Fantasm's test_config.
 *
 * Valid files are checked key by key, defaults included.  Each kind of
 * mistake is checked for the exact FILE:LINE:COL its message points at
 * and the words that say what to do; files with many mistakes must
 * report every one.  Imports are read from real files in a temporary
 * directory.  The graph checks (unreachable states, states that cannot
 * end) are compared with a model on random machines.  The canonical
 * encoding must decode to what encodes to the same bytes, and its hash
 * must not depend on the file's layout.  DOT output is parsed back.
 */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsm/def.h"
#include "mealy.h"

/* ---- loading, with every message kept ---- */

#define MAXMSG 64
static char msgs[MAXMSG][1024];
static size_t nmsgs, nnotes;
static char notes[MAXMSG][1024];

static void on_error(const mly_conf_msg *m, void *arg) {
  (void)arg;
  if (nmsgs < MAXMSG) mly_conf_format(m, msgs[nmsgs], sizeof msgs[0]);
  nmsgs++;
}

static void on_note(const mly_conf_msg *m, void *arg) {
  (void)arg;
  if (nnotes < MAXMSG) mly_conf_format(m, notes[nnotes], sizeof notes[0]);
  nnotes++;
}

static mly_fsm_load_options opts = {.on_error = on_error, .on_note = on_note};

/* Loads yaml as "m.yaml" with options o, the messages forgotten first. */
static int load_with(const mly_fsm_load_options *o, const char *yaml,
                     mly_fsm_set **out) {
  nmsgs = nnotes = 0;
  return mly_fsm_load_text("m.yaml", yaml, strlen(yaml), o, out);
}

static int load(const char *yaml, fsm_set **out) {
  mly_fsm_set *s = NULL;
  int rc = load_with(&opts, yaml, &s);
  *out = (fsm_set *)s;
  return rc;
}

static fsm_set *load_ok(const char *yaml) {
  fsm_set *s;
  int rc = load(yaml, &s);
  ck_assert_msg(rc == 0, "unexpected error %d (%zu messages), first: %s", rc,
                nmsgs, nmsgs ? msgs[0] : "");
  ck_assert_ptr_nonnull(s);
  return s;
}

static void dump_msgs(void) {
  for (size_t i = 0; i < nmsgs && i < MAXMSG; i++)
    fprintf(stderr, "  [%zu] %s\n", i, msgs[i]);
}

/* Some message starts with prefix and holds every word (NULL ends). */
static bool has_msg(const char *prefix, va_list ap0) {
  for (size_t i = 0; i < nmsgs && i < MAXMSG; i++) {
    if (strncmp(msgs[i], prefix, strlen(prefix)) != 0) continue;
    va_list ap;
    va_copy(ap, ap0);
    bool all = true;
    for (const char *w; (w = va_arg(ap, const char *)) != NULL;)
      all = all && strstr(msgs[i], w) != NULL;
    va_end(ap);
    if (all) return true;
  }
  return false;
}

/* Loads yaml: it must fail with MLY_EINVAL, with n messages (0: any
 * number), one of which starts with prefix and holds the words. */
static void expect_err(const char *yaml, size_t n, const char *prefix, ...) {
  fsm_set *s = (fsm_set *)1;
  int rc = load(yaml, &s);
  if (rc != MLY_EINVAL || s != NULL || (n && nmsgs != n)) dump_msgs();
  ck_assert_msg(rc == MLY_EINVAL, "code %d for:\n%s", rc, yaml);
  ck_assert_ptr_null(s);
  ck_assert_msg(n == 0 || nmsgs == n, "%zu messages, wanted %zu for:\n%s",
                nmsgs, n, yaml);
  va_list ap;
  va_start(ap, prefix);
  bool ok = has_msg(prefix, ap);
  va_end(ap);
  if (!ok) dump_msgs();
  ck_assert_msg(ok, "no message '%s...' with the words, for:\n%s", prefix,
                yaml);
}
#define EXPECT_ERR(yaml, n, prefix, ...) \
  expect_err((yaml), (n), (prefix), __VA_ARGS__, (const char *)NULL)

/* One machine, its states follow (indented 6). */
#define HEAD "state_machines:\n  - name: m\n    states:\n"
/* A two-state machine's states, lines 4-9 */
#define TWO                                                         \
  "      - name: a\n"                      /* 4 */                  \
  "        initial: True\n"                /* 5 */                  \
  "        action: A\n"                    /* 6 */                  \
  "        transitions: [{event: ok, to: b}]\n" /* 7 */             \
  "      - name: b\n"                      /* 8 */                  \
  "        final: True\n"                  /* 9 */

/* ---- valid files ---- */

static const char *full_yaml =
    "state_machines:\n"                                             /* 1 */
    "  - name: order\n"                                             /* 2 */
    "    namespace: shop\n"                                         /* 3 */
    "    version: 3\n"                                              /* 4 */
    "    queue: orders\n"                                           /* 5 */
    "    task_retry_limit: 7\n"                                     /* 6 */
    "    min_backoff_seconds: 0.5\n"                                /* 7 */
    "    max_backoff_seconds: 60\n"                                 /* 8 */
    "    task_age_limit: 2h\n"                                      /* 9 */
    "    max_doublings: 4\n"                                        /* 10 */
    "    jitter: 0.25\n"                                            /* 11 */
    "    countdown: 5\n"                                            /* 12 */
    "    on_failure: failed\n"                                      /* 13 */
    "    context_types: {n: int, u: uint, f: float, b: bool, s: str,\n" /* 14 */
    "      bin: binary, at: datetime, m: dict, any: json, l: [int],\n" /* 15 */
    "      l2: list of string, big: long}\n"                        /* 16 */
    "    states:\n"                                                 /* 17 */
    "      - name: start\n"                                         /* 18 */
    "        initial: True\n"                                       /* 19 */
    "        entry: Enter\n"                                        /* 20 */
    "        action: other.Start\n"                                 /* 21 */
    "        exit: {exec: [/bin/echo, bye], timeout: 30s}\n"        /* 22 */
    "        on_failure: start\n"                                   /* 23 */
    "        transitions:\n"                                        /* 24 */
    "          - event: go\n"                                       /* 25 */
    "            to: waiting\n"                                     /* 26 */
    "            action: Go\n"                                      /* 27 */
    "            countdown: {minimum: 10s, maximum: 1m}\n"          /* 28 */
    "            task_retry_limit: 2\n"                             /* 29 */
    "            min_backoff: 250ms\n"                              /* 30 */
    "            max_backoff: 2m\n"                                 /* 31 */
    "            queue: fast\n"                                     /* 32 */
    "          - {event: hold, to: lines}\n"                        /* 33 */
    "      - name: lines\n"                                         /* 34 */
    "        continuation: True\n"                                  /* 35 */
    "        continuation_countdown: 2s\n"                          /* 36 */
    "        action: Lines\n"                                       /* 37 */
    "        transitions: [{event: counted, to: join}]\n"           /* 38 */
    "      - name: join\n"                                          /* 39 */
    "        fan_in: {count: 4, tolerate: 1}\n"                     /* 40 */
    "        fan_in_group: batch\n"                                 /* 41 */
    "        action: Join\n"                                        /* 42 */
    "        transitions: [{event: merged, to: window}]\n"          /* 43 */
    "      - name: window\n"                                        /* 44 */
    "        fan_in: 5\n"                                           /* 45 */
    "        action: Sum\n"                                         /* 46 */
    "        transitions: [{event: done, to: done}]\n"              /* 47 */
    "      - name: waiting\n"                                       /* 48 */
    "        wait:\n"                                               /* 49 */
    "          events: [paid, cancelled]\n"                         /* 50 */
    "          timeout: 3d\n"                                       /* 51 */
    "          timeout_event: expired\n"                            /* 52 */
    "        transitions:\n"                                        /* 53 */
    "          - {event: paid, to: done}\n"                         /* 54 */
    "          - {event: cancelled, to: failed}\n"                  /* 55 */
    "          - {event: expired, to: failed}\n"                    /* 56 */
    "      - name: done\n"                                          /* 57 */
    "        final: True\n"                                         /* 58 */
    "      - name: failed\n"                                        /* 59 */
    "        final: true\n";                                        /* 60 */

START_TEST(full_file) {
  fsm_set *s = load_ok(full_yaml);
  ck_assert_uint_eq(s->nmachines, 1);
  ck_assert_uint_eq(nnotes, 0);
  const fsm_machine *m = fsm_set_find(s, "order");
  ck_assert_ptr_nonnull(m);
  ck_assert_str_eq(m->namespace_, "shop");
  ck_assert_uint_eq(m->version, 3);
  ck_assert_str_eq(m->queue, "orders");
  ck_assert_int_eq(m->retry.task_retry_limit, 7);
  ck_assert_int_eq(m->retry.min_backoff_ms, 500);
  ck_assert_int_eq(m->retry.max_backoff_ms, 60000);
  ck_assert_int_eq(m->retry.task_age_limit_ms, 2 * 3600 * 1000);
  ck_assert_int_eq(m->retry.max_doublings, 4);
  ck_assert(m->retry.jitter == 0.25);
  ck_assert_int_eq(m->countdown.min_ms, 5000);
  ck_assert_int_eq(m->countdown.max_ms, 5000);
  ck_assert_uint_eq(m->on_failure, fsm_state_find(m, "failed"));
  ck_assert_int_eq(m->pos.line, 2);
  ck_assert_int_eq(m->pos.col, 5);
  ck_assert_str_eq(m->pos.file, "m.yaml");
  /* context types, ours and Python's */
  static const struct { const char *k; fsm_ctype t; bool list; } ct[] = {
      {"n", FSM_T_INT, false},     {"u", FSM_T_UINT, false},
      {"f", FSM_T_FLOAT, false},   {"b", FSM_T_BOOL, false},
      {"s", FSM_T_STRING, false},  {"bin", FSM_T_BINARY, false},
      {"at", FSM_T_DATETIME, false}, {"m", FSM_T_MAP, false},
      {"any", FSM_T_ANY, false},   {"l", FSM_T_INT, true},
      {"l2", FSM_T_STRING, true},  {"big", FSM_T_INT, false}};
  ck_assert_uint_eq(m->nctypes, sizeof ct / sizeof ct[0]);
  for (size_t i = 0; i < m->nctypes; i++) {
    ck_assert_str_eq(m->ctypes[i].key, ct[i].k);
    ck_assert_int_eq(m->ctypes[i].type, ct[i].t);
    ck_assert_int_eq(m->ctypes[i].list, ct[i].list);
  }
  ck_assert_uint_eq(m->nstates, 7);
  ck_assert_uint_eq(m->initial, 0);
  const fsm_state *st = &m->states[0];
  ck_assert_str_eq(st->name, "start");
  ck_assert(st->initial && !st->final);
  ck_assert_int_eq(st->entry.kind, FSM_ACT_C);
  ck_assert_str_eq(st->entry.name, "shop.Enter");     /* namespace applied */
  ck_assert_str_eq(st->action.name, "other.Start");   /* a dotted name: kept */
  ck_assert_int_eq(st->exit.kind, FSM_ACT_EXEC);
  ck_assert_uint_eq(st->exit.argc, 2);
  ck_assert_str_eq(st->exit.argv[0], "/bin/echo");
  ck_assert_str_eq(st->exit.argv[1], "bye");
  ck_assert_ptr_null(st->exit.argv[2]);
  ck_assert_int_eq(st->exit.timeout_ms, 30000);
  ck_assert_int_eq(st->exit.pos.line, 22);
  ck_assert_int_eq(st->exit.pos.col, 15);
  ck_assert_uint_eq(st->on_failure, 0);
  ck_assert_uint_eq(st->ntrans, 2);
  const fsm_transition *t = &st->trans[0];
  ck_assert_str_eq(t->event, "go");
  ck_assert_uint_eq(t->to, fsm_state_find(m, "waiting"));
  ck_assert_str_eq(t->action.name, "shop.Go");
  ck_assert_int_eq(t->countdown.min_ms, 10000);
  ck_assert_int_eq(t->countdown.max_ms, 60000);
  ck_assert_int_eq(t->retry.task_retry_limit, 2);
  ck_assert_int_eq(t->retry.min_backoff_ms, 250);
  ck_assert_int_eq(t->retry.max_backoff_ms, 120000);
  ck_assert_int_eq(t->retry.max_doublings, -1);    /* not set: the machine's */
  ck_assert(t->retry.jitter < 0);
  ck_assert_str_eq(t->queue, "fast");
  ck_assert_int_eq(t->pos.line, 25);
  ck_assert_int_eq(t->pos.col, 13);
  ck_assert_int_eq(st->trans[1].countdown.min_ms, -1); /* the machine's */
  ck_assert_ptr_null(st->trans[1].queue);
  st = &m->states[1];
  ck_assert(st->continuation);
  ck_assert_int_eq(st->continuation_countdown_ms, 2000);
  st = &m->states[2];
  ck_assert_int_eq(st->fan_in, FSM_FAN_COUNT);
  ck_assert_uint_eq(st->fan_in_count, 4);
  ck_assert_uint_eq(st->fan_in_tolerate, 1);
  ck_assert_str_eq(st->fan_in_group, "batch");
  st = &m->states[3];
  ck_assert_int_eq(st->fan_in, FSM_FAN_WINDOW);
  ck_assert_int_eq(st->fan_in_window_ms, 5000);
  st = &m->states[4];
  ck_assert(st->wait);
  ck_assert_uint_eq(st->nwait_events, 2);
  ck_assert_str_eq(st->wait_events[0], "paid");
  ck_assert_str_eq(st->wait_events[1], "cancelled");
  ck_assert_int_eq(st->wait_timeout_ms, 3LL * 24 * 3600 * 1000);
  ck_assert_str_eq(st->wait_timeout_event, "expired");
  ck_assert_int_eq(st->action.kind, FSM_ACT_NONE);
  ck_assert(m->states[5].final && m->states[6].final);
  fsm_set_free(s);
}
END_TEST

START_TEST(defaults) {
  fsm_set *s = load_ok(HEAD TWO);
  const fsm_machine *m = &s->machines[0];
  ck_assert_str_eq(m->name, "m");
  ck_assert_ptr_null(m->namespace_);
  ck_assert_uint_eq(m->version, 1);
  ck_assert_ptr_null(m->queue);
  ck_assert_int_eq(m->retry.task_retry_limit, -1);
  ck_assert_int_eq(m->retry.min_backoff_ms, -1);
  ck_assert_int_eq(m->retry.max_backoff_ms, -1);
  ck_assert_int_eq(m->retry.task_age_limit_ms, -1);
  ck_assert_int_eq(m->retry.max_doublings, -1);
  ck_assert(m->retry.jitter < 0);
  ck_assert_int_eq(m->countdown.min_ms, -1);
  ck_assert_uint_eq(m->on_failure, FSM_NO_STATE);
  ck_assert_uint_eq(m->nctypes, 0);
  const fsm_state *a = &m->states[0], *b = &m->states[1];
  ck_assert_str_eq(a->action.name, "A"); /* no namespace: as written */
  ck_assert_int_eq(a->entry.kind, FSM_ACT_NONE);
  ck_assert_int_eq(a->exit.kind, FSM_ACT_NONE);
  ck_assert(!a->continuation && !a->wait && a->fan_in == FSM_FAN_NONE);
  ck_assert_int_eq(a->continuation_countdown_ms, -1);
  ck_assert_int_eq(a->wait_timeout_ms, -1);
  ck_assert_ptr_null(a->fan_in_group);
  ck_assert_uint_eq(a->on_failure, FSM_NO_STATE);
  ck_assert_int_eq(a->trans[0].countdown.min_ms, -1);
  ck_assert_int_eq(a->trans[0].countdown.max_ms, -1);
  ck_assert_int_eq(a->trans[0].retry.task_retry_limit, -1);
  ck_assert(!b->initial && b->final);
  ck_assert_uint_eq(b->ntrans, 0);
  ck_assert_uint_eq(nnotes, 0);
  fsm_set_free(s);
}
END_TEST

/* Fantasm's App Engine keys load with a note each. */
START_TEST(ignored_keys_note) {
  fsm_set *s = load_ok("root_url: /fsm/\n"
                       "state_machines:\n"
                       "  - name: m\n"
                       "    target: backend\n"
                       "    logging: persistent\n"
                       "    use_run_once_semaphore: True\n"
                       "    max_retries: 4\n"
                       "    states:\n" TWO);
  ck_assert_int_eq(s->machines[0].retry.task_retry_limit, 4);
  ck_assert_uint_eq(nnotes, 5);
  ck_assert_msg(strncmp(notes[0], "m.yaml:1:11: ", 13) == 0, "%s", notes[0]);
  ck_assert_ptr_nonnull(strstr(notes[1], "m.yaml:4:13: 'target'"));
  ck_assert_ptr_nonnull(strstr(notes[2], "m.yaml:5:14: 'logging'"));
  ck_assert_ptr_nonnull(strstr(notes[3], "m.yaml:6:29:"));
  ck_assert_ptr_nonnull(strstr(notes[4], "m.yaml:7:18: max_retries is "
                                         "deprecated; write task_retry_limit"));
  fsm_set_free(s);
  /* a transition's target too */
  s = load_ok(HEAD "      - name: a\n        initial: True\n        action: A\n"
              "        transitions: [{event: ok, to: b, target: x}]\n"
              "      - name: b\n        final: True\n");
  ck_assert_uint_eq(nnotes, 1);
  fsm_set_free(s);
}
END_TEST

/* ---- errors: every key, its line and column ---- */

/* Without on_error the errors still reach someone: stderr. */
START_TEST(errors_without_handler) {
  char path[] = "/tmp/fsm-load-stderr-XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  fflush(stderr);
  int saved = dup(2);
  ck_assert_int_eq(dup2(fd, 2), 2);
  mly_fsm_set *set = NULL;
  int rc = mly_fsm_load_text("quiet.yaml", "", 0, NULL, &set);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  ck_assert_int_eq(rc, MLY_EINVAL);
  ck_assert_ptr_null(set);
  char buf[512] = "";
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  unlink(path);
  ck_assert_int_gt(n, 0);
  ck_assert_ptr_nonnull(strstr(buf, "quiet.yaml:1:1: the file is empty"));
}
END_TEST

START_TEST(errors_top) {
  EXPECT_ERR("", 1, "m.yaml:1:1: ", "empty", "state_machines", NULL);
  EXPECT_ERR("[1]\n", 1, "m.yaml:1:1: ", "top level is a list", NULL);
  EXPECT_ERR("state_machine: []\n", 1, "m.yaml:1:1: ", "unknown key",
             "known: import, state_machines, queues, schedules, root_url");
  EXPECT_ERR("state_machines: {a: 1}\n", 1, "m.yaml:1:17: ",
             "state_machines must be a list", NULL);
  EXPECT_ERR("state_machines: [1]\n", 1, "m.yaml:1:18: ",
             "a machine must be a map", NULL);
  EXPECT_ERR("state_machines: [{name: m}]\n", 1, "m.yaml:1:18: ",
             "machine 'm' has no states", NULL);
  EXPECT_ERR("state_machines: [{name: m, states: 3}]\n", 1, "m.yaml:1:36: ",
             "states must be a list", NULL);
  EXPECT_ERR("state_machines: [{states: [{name: a, final: True}]}]\n", 0,
             "m.yaml:1:18: ", "no name", NULL);
  EXPECT_ERR("queues: {q: {rate: 5/s}}\n" HEAD TWO, 1, "m.yaml:1:9: ",
             "'queues' is not supported by this build", NULL);
  EXPECT_ERR("schedules: []\n" HEAD TWO, 1, "m.yaml:1:12: ",
             "'schedules' is not supported by this build", NULL);
  EXPECT_ERR(HEAD TWO "---\nx: 1\n", 1, "m.yaml:11:1: ",
             "another YAML document", NULL);
  EXPECT_ERR("state_machines: [\n", 1, "m.yaml:", "YAML", NULL);
  EXPECT_ERR("state_machines: !!python/object []\n", 1, "m.yaml:1:17: ",
             "tag", NULL);
}
END_TEST

START_TEST(errors_machine_keys) {
  EXPECT_ERR("state_machines:\n  - name: m\n    colour: red\n    states:\n" TWO,
             1, "m.yaml:3:5: ", "unknown key 'colour' in machine 'm'",
             "known: name, namespace, version", "task_retry_limit", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    name: n\n    states:\n" TWO,
             1, "m.yaml:3:5: ", "'name' is set twice", "first at 2:5", NULL);
  EXPECT_ERR("state_machines:\n  - name: m_1\n    states:\n" TWO, 0,
             "m.yaml:2:11: ", "machine name 'm_1' is not allowed", "50",
             NULL);
  EXPECT_ERR("state_machines:\n  - name: "
             "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijx\n"
             "    states:\n" TWO, 0, "m.yaml:2:11: ", "not allowed", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    version: 0\n    states:\n" TWO,
             1, "m.yaml:3:14: ", "version must be at least 1", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    task_retry_limit: x\n"
             "    states:\n" TWO, 1, "m.yaml:3:23: ",
             "task_retry_limit must be a whole number", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    task_retry_limit: 1\n"
             "    max_retries: 2\n    states:\n" TWO, 1, "m.yaml:4:18: ",
             "max_retries and task_retry_limit are one setting", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    jitter: 2\n    states:\n" TWO,
             1, "m.yaml:3:13: ", "jitter must be between 0 and 1", NULL);
  /* a maximum backoff below the minimum, in one place: refused */
  EXPECT_ERR("state_machines:\n  - name: m\n    min_backoff_seconds: 10\n"
             "    max_backoff_seconds: 5\n    states:\n" TWO, 1,
             "m.yaml:4:26: ", "max_backoff is less than min_backoff",
             "swap them", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    min_backoff_seconds: -1\n"
             "    states:\n" TWO, 1, "m.yaml:3:26: ", "cannot be negative",
             NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    max_backoff: soon\n"
             "    states:\n" TWO, 1, "m.yaml:3:18: ", "'soon' is not a "
             "duration", "30 (seconds), 250ms, 10s, 2m, 1h or 3d", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    max_backoff: 0x10\n"
             "    states:\n" TWO, 1, "m.yaml:3:18: ", "'0x10' is not a "
             "duration", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    max_backoff: 1.5.2\n"
             "    states:\n" TWO, 1, "m.yaml:3:18: ", "is not a duration",
             NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    task_age_limit: 400d\n"
             "    states:\n" TWO, 1, "m.yaml:3:21: ", "longer than a year",
             NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    max_doublings: 65\n"
             "    states:\n" TWO, 1, "m.yaml:3:20: ", "at most 64", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    queue: ''\n    states:\n" TWO,
             1, "m.yaml:3:12: ", "queue is empty", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    namespace: [a]\n"
             "    states:\n" TWO, 1, "m.yaml:3:16: ", "namespace must be a "
             "string, not a list", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    use_run_once_semaphore: maybe\n"
             "    states:\n" TWO, 1, "m.yaml:3:29: ", "true or false", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    countdown: {minimum: 5s}\n"
             "    states:\n" TWO, 1, "m.yaml:3:16: ", "both minimum and "
             "maximum", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    countdown: {minimum: 5s, "
             "maximum: 1s}\n    states:\n" TWO, 1, "m.yaml:3:16: ",
             "minimum is more than its maximum", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    countdown: {min: 5s}\n"
             "    states:\n" TWO, 1, "m.yaml:3:17: ", "unknown key 'min' in "
             "countdown", "known: minimum, maximum", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    on_failure: nowhere\n"
             "    states:\n" TWO, 1, "m.yaml:3:17: ", "'nowhere' is not a "
             "state of machine 'm'", "states: a, b", NULL);
}
END_TEST

START_TEST(errors_context_types) {
#define CT(v) "state_machines:\n  - name: m\n    context_types: " v "\n" \
              "    states:\n" TWO
  EXPECT_ERR(CT("[int]"), 1, "m.yaml:3:20: ", "context_types must be a map",
             NULL);
  EXPECT_ERR(CT("{a: pickle}"), 1, "m.yaml:3:24: ", "'pickle' is a "
             "Python-only type", "int, uint, float", NULL);
  EXPECT_ERR(CT("{a: google.appengine.ext.db.Key}"), 1, "m.yaml:3:24: ",
             "is a Python class", "string", NULL);
  EXPECT_ERR(CT("{a: number}"), 1, "m.yaml:3:24: ", "unknown context type "
             "'number'", NULL);
  EXPECT_ERR(CT("{a: [int, str]}"), 1, "m.yaml:3:24: ", "one item type",
             NULL);
  EXPECT_ERR(CT("{a: [[int]]}"), 1, "m.yaml:3:25: ", "lists of lists", NULL);
  EXPECT_ERR(CT("{a: int, a: str}"), 1, "m.yaml:3:29: ", "context key 'a' is "
             "typed twice", "first at 3:21", NULL);
#undef CT
}
END_TEST

START_TEST(errors_state_keys) {
  EXPECT_ERR(HEAD TWO "        colour: red\n", 1, "m.yaml:10:9: ",
             "unknown key 'colour' in state 'b' of machine 'm'",
             "known: name, initial, final, entry, action, exit, "
             "continuation, continuation_countdown, fan_in, fan_in_group, "
             "transitions, wait, on_failure", NULL);
  EXPECT_ERR(HEAD TWO "        final: True\n", 1, "m.yaml:10:9: ",
             "'final' is set twice", "first at 9:9", NULL);
  EXPECT_ERR(HEAD TWO "      - 3\n", 1, "m.yaml:10:9: ", "a state must be a "
             "map", NULL);
  EXPECT_ERR(HEAD TWO "      - final: True\n", 0, "m.yaml:10:9: ", "this "
             "state has no name", NULL);
  EXPECT_ERR(HEAD TWO "      - {name: c_d, final: True}\n", 0,
             "m.yaml:10:16: ", "state name 'c_d' is not allowed", NULL);
  EXPECT_ERR(HEAD TWO "        initial: sure\n", 1, "m.yaml:10:18: ",
             "initial must be true or false, not 'sure'", NULL);
  EXPECT_ERR(HEAD TWO "        continuation: 1\n", 0, "m.yaml:10:23: ",
             "continuation must be true or false", NULL);
  EXPECT_ERR(HEAD TWO "        entry: [x]\n", 1, "m.yaml:10:16: ",
             "entry must be an action name or {exec: [program, args...], "
             "timeout: 30s}, not a list", NULL);
  EXPECT_ERR(HEAD TWO "        exit: 'a b'\n", 1, "m.yaml:10:15: ",
             "action name 'a b' is not allowed", NULL);
  EXPECT_ERR(HEAD TWO "        entry: {exec: []}\n", 1, "m.yaml:10:23: ",
             "exec is an empty list: there is no program to run", NULL);
  EXPECT_ERR(HEAD TWO "        entry: {exec: [''], timeout: 1s}\n", 1,
             "m.yaml:10:24: ", "first item of exec", NULL);
  EXPECT_ERR(HEAD TWO "        entry: {timeout: 1s}\n", 1, "m.yaml:10:16: ",
             "entry needs exec:", NULL);
  EXPECT_ERR(HEAD TWO "        entry: {exec: [x], timeout: 0s}\n", 1,
             "m.yaml:10:37: ", "exec timeout must be more than 0", NULL);
  EXPECT_ERR(HEAD TWO "        entry: {exec: [x], user: root}\n", 1,
             "m.yaml:10:28: ", "unknown key 'user' in entry",
             "known: exec, timeout", NULL);
  EXPECT_ERR(HEAD TWO "        fan_in: {count: 2, tolerate: 2}\n", 0,
             "m.yaml:10:17: ", "nothing would be left to merge", NULL);
  EXPECT_ERR(HEAD TWO "        fan_in: {size: 2}\n", 0, "m.yaml:10:18: ",
             "unknown key 'size' in fan_in", "known: count, tolerate", NULL);
  EXPECT_ERR(HEAD TWO "        fan_in: 0s\n", 0, "m.yaml:10:17: ",
             "fan_in must be more than 0", NULL);
  EXPECT_ERR(HEAD TWO "        transitions: {event: x}\n", 1, "m.yaml:10:22: ",
             "transitions must be a list", NULL);
  EXPECT_ERR(HEAD TWO "        on_failure: [a]\n", 1, "m.yaml:10:21: ",
             "on_failure must be a string", NULL);
  EXPECT_ERR(HEAD TWO "        wait: yes\n", 0, "m.yaml:10:15: ",
             "wait must be a map", NULL);
  EXPECT_ERR(HEAD TWO "        wait: {timeout: 1s}\n", 0, "m.yaml:10:15: ",
             "wait needs events", NULL);
  EXPECT_ERR(HEAD TWO "        wait: {events: x}\n", 0, "m.yaml:10:24: ",
             "wait events must be a list", NULL);
  EXPECT_ERR(HEAD TWO "        continuation_countdown: -1s\n", 1,
             "m.yaml:10:33: ", "continuation_countdown cannot be negative",
             NULL);
  EXPECT_ERR(HEAD TWO "        fan_in_group: ''\n", 1, "m.yaml:10:23: ",
             "fan_in_group is empty", NULL);
  EXPECT_ERR(HEAD TWO "        wait: {events: [x], timeout_event: y}\n", 0,
             "m.yaml:10:15: ", "timeout_event but no timeout", NULL);
  EXPECT_ERR(HEAD TWO "        wait: {events: [x], timeout: 0s, "
             "timeout_event: y}\n", 0, "m.yaml:10:38: ",
             "wait timeout must be more than 0", NULL);
  EXPECT_ERR(HEAD TWO "        wait: {events: [x, 'a b']}\n", 0,
             "m.yaml:10:28: ", "event name 'a b' is not allowed", NULL);
  EXPECT_ERR(HEAD TWO "        wait: {events: [x], until: 1s}\n", 0,
             "m.yaml:10:29: ", "unknown key 'until' in wait",
             "known: events, timeout, timeout_event", NULL);
}
END_TEST

/* Newcomer findings (issue 11, M1 M3 M4 M8): each message at its place,
 * saying what is wrong and what is accepted. */
START_TEST(errors_newcomer) {
  /* M1: an empty argv, wherever an action may be a command */
  static const char *const where[] = {"entry", "action", "exit"};
  for (size_t i = 0; i < 3; i++) {
    char y[512];
    snprintf(y, sizeof y, HEAD "      - name: a\n        initial: True\n"
             "        %s: {exec: []}\n%s"
             "        transitions: [{event: ok, to: b}]\n"
             "      - {name: b, final: True}\n", where[i],
             i == 1 ? "" : "        action: A\n");
    char pre[32];
    snprintf(pre, sizeof pre, "m.yaml:6:%zu: ", strlen(where[i]) + 18);
    EXPECT_ERR(y, 1, pre, "exec is an empty list", "no program to run",
               "[/usr/bin/notify, --to, ops]", NULL);
  }
  EXPECT_ERR(HEAD "      - name: a\n        initial: True\n        action: A\n"
             "        transitions:\n          - {event: ok, to: b, action: "
             "{exec: []}}\n      - {name: b, final: True}\n", 1,
             "m.yaml:8:47: ", "exec is an empty list", NULL);
  EXPECT_ERR(HEAD TWO "        entry: {exec: x}\n", 1, "m.yaml:10:23: ",
             "exec must be a list", "it is a string", NULL);

  /* M3: every duration or range field, given the wrong shape, names
     every form it accepts */
  static const struct {
    const char *line; /* line 10, a key of state b */
    unsigned col;
    const char *words;
  } shape[] = {
      {"        fan_in: [1]\n", 17, "fan_in must be a duration: 30 "
       "(seconds), 250ms, 10s, 2m, 1h or 3d, or {count: N, tolerate: K}; "
       "it is a list"},
      {"        continuation_countdown: {a: 1}\n", 33,
       "continuation_countdown must be a duration: 30 (seconds), 250ms, "
       "10s, 2m, 1h or 3d; it is a map"},
      {"        entry: {exec: [x], timeout: [1]}\n", 37,
       "exec timeout must be a duration: 30 (seconds), 250ms, 10s, 2m, "
       "1h or 3d; it is a list"},
  };
  for (size_t i = 0; i < sizeof shape / sizeof shape[0]; i++) {
    char y[1024], pre[32];
    snprintf(y, sizeof y, HEAD TWO "%s", shape[i].line);
    snprintf(pre, sizeof pre, "m.yaml:10:%u: ", shape[i].col);
    EXPECT_ERR(y, 0, pre, shape[i].words, NULL);
  }
  /* a value out of range names the other form too */
  EXPECT_ERR(HEAD TWO "        fan_in: 0\n", 0, "m.yaml:10:17: ",
             "fan_in must be more than 0; write a duration such as 10s, or "
             "{count: N, tolerate: K}", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    countdown: -3s\n"
             "    states:\n" TWO, 1, "m.yaml:3:16: ", "countdown cannot be "
             "negative; write a duration such as 10s, or {minimum: 10s, "
             "maximum: 60s}", NULL);
  /* the example, on a transition and on a machine */
  EXPECT_ERR(HEAD "      - name: a\n        initial: True\n        action: A\n"
             "        transitions: [{event: ok, to: b, countdown: [1]}]\n"
             "      - {name: b, final: True}\n", 1, "m.yaml:7:53: ",
             "countdown must be a duration: 30 (seconds), 250ms, 10s, 2m, "
             "1h or 3d, or {minimum: 10s, maximum: 60s}", "it is a list",
             NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    countdown: [1]\n"
             "    states:\n" TWO, 1, "m.yaml:3:16: ", "countdown must be a "
             "duration", "or {minimum: 10s, maximum: 60s}", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    countdown: true\n"
             "    states:\n" TWO, 1, "m.yaml:3:16: ", "countdown 'true' is "
             "not a duration; write 30 (seconds), 250ms, 10s, 2m, 1h or 3d, "
             "or {minimum: 10s, maximum: 60s}", NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    countdown: {minimum: 1s}\n"
             "    states:\n" TWO, 1, "m.yaml:3:16: ", "needs both minimum "
             "and maximum", "30 (seconds)", "{minimum: 10s, maximum: 60s}",
             NULL);
  EXPECT_ERR("state_machines:\n  - name: m\n    countdown: {minimum: [1], "
             "maximum: 2s}\n    states:\n" TWO, 0, "m.yaml:3:26: ",
             "countdown minimum must be a duration", "it is a list", NULL);
  static const char *const policy[] = {"min_backoff", "max_backoff",
                                       "task_age_limit",
                                       "min_backoff_seconds"};
  for (size_t i = 0; i < 4; i++) {
    char y[512], pre[32], w[64];
    snprintf(y, sizeof y, "state_machines:\n  - name: m\n    %s: {x: 1}\n"
             "    states:\n" TWO, policy[i]);
    snprintf(pre, sizeof pre, "m.yaml:3:%zu: ", 5 + strlen(policy[i]) + 2);
    snprintf(w, sizeof w, "must be a duration: 30 (seconds)");
    EXPECT_ERR(y, 1, pre, w, "it is a map", NULL);
  }
  EXPECT_ERR(HEAD TWO "      - name: w\n        wait: {events: [go], "
             "timeout: [3d], timeout_event: go}\n"
             "        transitions: [{event: go, to: b}]\n", 0,
             "m.yaml:11:39: ", "wait timeout must be a duration", NULL);

  /* M4: an event listed twice in a wait state, as two transitions */
  EXPECT_ERR(HEAD "      - name: a\n        initial: True\n        action: A\n"
             "        transitions: [{event: ok, to: w}]\n"
             "      - name: w\n        wait: {events: [paid, late, paid]}\n"
             "        transitions: [{event: paid, to: b}, "
             "{event: late, to: b}]\n      - {name: b, final: True}\n", 1,
             "m.yaml:9:37: ", "event 'paid' is listed twice in wait events "
             "(first at 9:25); keep one", NULL);

  /* M8: nothing to run */
  EXPECT_ERR("state_machines: []\n", 1, "m.yaml:1:17: ",
             "state_machines is an empty list", "nothing to run", NULL);
  EXPECT_ERR("{}\n", 1, "m.yaml:1:1: ", "defines no machine", NULL);
  EXPECT_ERR("root_url: /x\n", 1, "m.yaml:1:1: ", "defines no machine",
             NULL);
}
END_TEST

START_TEST(errors_transition_keys) {
#define ONE_T(t) HEAD "      - name: a\n        initial: True\n        action: A\n" \
                 "        transitions:\n          - " t "\n"                     \
                 "      - name: b\n        final: True\n"
  /* the transition is on line 8, its map at column 13 */
  EXPECT_ERR(ONE_T("{event: ok, to: b, when: now}"), 1, "m.yaml:8:32: ",
             "unknown key 'when' in a transition in state 'a' of machine 'm'",
             "known: event, to, action, task_retry_limit", "countdown, queue, "
             "target)", NULL);
  EXPECT_ERR(ONE_T("{to: b}"), 1, "m.yaml:8:13: ", "this transition has no "
             "event", NULL);
  EXPECT_ERR(ONE_T("{event: ok}"), 0, "m.yaml:8:13: ", "this transition has "
             "no target; add to: STATE", NULL);
  EXPECT_ERR(ONE_T("{event: ok, to: c}"), 0, "m.yaml:8:29: ", "'c' is not a "
             "state of machine 'm'", "states: a, b", NULL);
  EXPECT_ERR(ONE_T("{event: 'o k', to: b}"), 1, "m.yaml:8:21: ",
             "event name 'o k' is not allowed", NULL);
  EXPECT_ERR(ONE_T("{event: ok, to: [b]}"), 0, "m.yaml:8:29: ",
             "to must be a string", NULL);
  EXPECT_ERR(ONE_T("{event: ok, to: b, countdown: x}"), 1, "m.yaml:8:43: ",
             "'x' is not a duration", NULL);
  EXPECT_ERR(ONE_T("{event: ok, to: b, countdown: {minimum: 2, maximum: 1}}"),
             1, "m.yaml:8:43: ", "minimum is more than its maximum", NULL);
  EXPECT_ERR(ONE_T("{event: ok, to: b, max_retries: 1, task_retry_limit: 1}"),
             1, "m.yaml:8:45: ", "one setting", NULL);
  EXPECT_ERR(ONE_T("{event: ok, to: b, queue: ''}"), 1, "m.yaml:8:39: ",
             "queue is empty", NULL);
  EXPECT_ERR(ONE_T("x"), 0, "m.yaml:8:13: ", "a transition must be a map",
             NULL);
#undef ONE_T
}
END_TEST

/* ---- errors across a machine ---- */

START_TEST(errors_structure) {
  EXPECT_ERR(HEAD "      - {name: a, action: A, transitions: [{event: x, to: "
             "b}]}\n      - {name: b, final: True}\n", 1, "m.yaml:2:5: ",
             "machine 'm' has no initial state", "initial: True", NULL);
  EXPECT_ERR(HEAD TWO "      - {name: c, initial: True, final: True}\n", 0,
             "m.yaml:10:9: ", "second initial state 'c'", "first is 'a' at "
             "4:9", NULL);
  EXPECT_ERR(HEAD "      - {name: a, initial: True, action: A, transitions: "
             "[{event: x, to: a}]}\n", 0, "m.yaml:2:5: ",
             "machine 'm' has no final state", NULL);
  EXPECT_ERR(HEAD TWO "      - {name: b, final: True}\n", 0, "m.yaml:10:9: ",
             "state 'b' is defined twice", "first at 8:9", NULL);
  EXPECT_ERR(HEAD "      - name: a\n        initial: True\n        action: A\n"
             "        transitions: [{event: ok, to: b}, {event: ok, to: a}]\n"
             "      - {name: b, final: True}\n", 1, "m.yaml:7:43: ",
             "event 'ok' has two transitions from state 'a'", "first at 7:23",
             NULL);
  EXPECT_ERR(HEAD TWO "      - {name: c, action: C, transitions: [{event: x, "
             "to: b}]}\n", 1, "m.yaml:10:9: ", "state 'c' is unreachable",
             NULL);
  EXPECT_ERR(HEAD "      - name: a\n        initial: True\n        action: A\n"
             "        transitions: [{event: ok, to: b}, {event: no, to: c}]\n"
             "      - {name: b, final: True}\n      - {name: c, action: C}\n",
             1, "m.yaml:9:9: ", "state 'c' is not final and has no "
             "transitions", NULL);
  /* a loop with no exit: reachable, has transitions, never ends */
  EXPECT_ERR(HEAD "      - name: a\n        initial: True\n        action: A\n"
             "        transitions: [{event: ok, to: b}, {event: no, to: c}]\n"
             "      - {name: b, final: True}\n"
             "      - {name: c, action: C, transitions: [{event: x, to: d}]}\n"
             "      - {name: d, action: D, transitions: [{event: x, to: c}]}\n",
             2, "m.yaml:9:9: ", "no final state can be reached from state "
             "'c'", NULL);
  EXPECT_ERR(HEAD TWO "      - {name: c}\n", 0, "m.yaml:10:9: ", "state 'c' "
             "has no action", NULL);
}
END_TEST

START_TEST(errors_fantasm_combinations) {
  const char *pre = HEAD "      - name: a\n        initial: True\n"
                         "        action: A\n";
  char y[2048];
  snprintf(y, sizeof y, "%s        continuation: True\n        fan_in: 1s\n"
           "        transitions: [{event: ok, to: b}]\n"
           "      - {name: b, final: True}\n", pre);
  EXPECT_ERR(y, 1, "m.yaml:4:9: ", "both a continuation and a fan-in", NULL);
  snprintf(y, sizeof y, "%s        continuation: True\n        exit: X\n"
           "        transitions: [{event: ok, to: b}]\n"
           "      - {name: b, final: True}\n", pre);
  EXPECT_ERR(y, 1, "m.yaml:8:15: ", "continuation state and may not have an "
             "exit action", NULL);
  snprintf(y, sizeof y, "%s        fan_in: {count: 3}\n        exit: X\n"
           "        transitions: [{event: ok, to: b}]\n"
           "      - {name: b, final: True}\n", pre);
  EXPECT_ERR(y, 1, "m.yaml:8:15: ", "fan-in state and may not have an exit",
             NULL);
  snprintf(y, sizeof y, "%s        fan_in: 2s\n"
           "        transitions: [{event: ok, to: b, action: T}]\n"
           "      - {name: b, final: True}\n", pre);
  EXPECT_ERR(y, 1, "m.yaml:8:50: ", "a transition out of fan-in state 'a' "
             "may not have an action", NULL);
  snprintf(y, sizeof y, "%s        transitions: [{event: ok, to: b, action: "
           "T}]\n      - {name: b, action: B, continuation: True, "
           "transitions: [{event: x, to: c}]}\n"
           "      - {name: c, final: True}\n", pre);
  EXPECT_ERR(y, 1, "m.yaml:7:50: ", "a transition into continuation state "
             "'b' may not have an action", NULL);
  snprintf(y, sizeof y, "%s        continuation_countdown: 1s\n"
           "        transitions: [{event: ok, to: b}]\n"
           "      - {name: b, final: True}\n", pre);
  EXPECT_ERR(y, 1, "m.yaml:4:9: ", "continuation_countdown but is not a "
             "continuation", NULL);
  snprintf(y, sizeof y, "%s        fan_in_group: k\n"
           "        transitions: [{event: ok, to: b}]\n"
           "      - {name: b, final: True}\n", pre);
  EXPECT_ERR(y, 1, "m.yaml:4:9: ", "fan_in_group but no fan_in", NULL);
  /* wait states */
  EXPECT_ERR(HEAD TWO "        wait: {events: [x]}\n", 0, "m.yaml:8:9: ",
             "final and waits", NULL);
  EXPECT_ERR(HEAD "      - name: a\n        initial: True\n"
             "        wait: {events: [paid], timeout: 1d, timeout_event: late}\n"
             "        transitions: [{event: paid, to: b}]\n"
             "      - {name: b, final: True}\n", 1, "m.yaml:4:9: ",
             "waits for 'late' but has no transition", NULL);
  EXPECT_ERR(HEAD "      - name: a\n        initial: True\n        action: A\n"
             "        wait: {events: [paid]}\n"
             "        transitions: [{event: paid, to: b}]\n"
             "      - {name: b, final: True}\n", 1, "m.yaml:4:9: ",
             "wait state 'a' may not have an action", NULL);
  EXPECT_ERR(HEAD "      - name: a\n        initial: True\n"
             "        wait: {events: [paid], timeout: 1d}\n"
             "        transitions: [{event: paid, to: b}]\n"
             "      - {name: b, final: True}\n", 1, "m.yaml:6:15: ",
             "timeout but no timeout_event", NULL);
}
END_TEST

/* Several mistakes in one file: every one is reported. */
START_TEST(errors_all_reported) {
  fsm_set *s;
  const char *y = "state_machines:\n"
                  "  - name: m\n"
                  "    bogus: 1\n"                                  /* 3 */
                  "    jitter: 3\n"                                 /* 4 */
                  "    states:\n"
                  "      - name: a\n"
                  "        initial: True\n"
                  "        action: A\n"
                  "        weird: 2\n"                              /* 9 */
                  "        transitions: [{event: ok, to: zz}]\n"    /* 10 */
                  "      - {name: b, final: True}\n"                /* 11 */
                  "  - name: n\n"
                  "    states: [{name: x, initial: True, final: 7}]\n"; /* 13 */
  ck_assert_int_eq(load(y, &s), MLY_EINVAL);
  ck_assert_ptr_null(s);
  const char *want[] = {"m.yaml:3:5: ", "m.yaml:4:13: ", "m.yaml:9:9: ",
                        "m.yaml:10:39: ", "m.yaml:11:9: ", "m.yaml:13:46: "};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    bool found = false;
    for (size_t j = 0; j < nmsgs; j++)
      found = found || strncmp(msgs[j], want[i], strlen(want[i])) == 0;
    if (!found) dump_msgs();
    ck_assert_msg(found, "no message at %s", want[i]);
  }
}
END_TEST

/* Many names: repeats are found by sorting; each is reported once, at
 * its own line, pointing at the first, and a name that is repeated
 * refers to its first state. */
START_TEST(many_names) {
  enum { N = 600 };
  size_t cap = 128 * N, at = 0;
  char *y = malloc(cap);
  at += (size_t)snprintf(y + at, cap - at, "state_machines:\n  - name: m\n"
                         "    states:\n");                 /* lines 1-3 */
  /* a chain s0 -> s1 -> ... -> s(N-1), final; after s300 and s500 one
     more state named s7 (line 305), and s8 (line 506) */
  for (int i = 0; i < N; i++) {
    if (i == N - 1)
      at += (size_t)snprintf(y + at, cap - at, "      - {name: s%d, final: "
                             "True}\n", i);
    else
      at += (size_t)snprintf(y + at, cap - at, "      - {name: s%d,%s action: "
                             "A, transitions: [{event: e, to: s%d}%s]}\n",
                             i, i == 0 ? " initial: True," : "", i + 1,
                             i == 2 ? ", {event: f, to: s3}, {event: e, to: "
                                      "s4}, {event: f, to: s5}"
                                    : "");
    if (i == 300 || i == 500)
      at += (size_t)snprintf(y + at, cap - at, "      - {name: s%d, final: "
                             "True}\n", i == 300 ? 7 : 8);
  }
  fsm_set *s;
  ck_assert_int_eq(load(y, &s), MLY_EINVAL);
  free(y);
  if (nmsgs != 6) dump_msgs();
  ck_assert_uint_eq(nmsgs, 6);
  const char *want[] = {
      "m.yaml:305:9: state 's7' is defined twice in machine 'm' (first at "
      "11:9)",
      "m.yaml:506:9: state 's8' is defined twice in machine 'm' (first at "
      "12:9)",
      "m.yaml:6:85: event 'e' has two transitions from state 's2' (first at "
      "6:45)",
      "m.yaml:6:105: event 'f' has two transitions from state 's2' (first at "
      "6:65)",
      "m.yaml:305:9: state 's7' is unreachable",
      "m.yaml:506:9: state 's8' is unreachable"};
  for (size_t i = 0; i < 6; i++)
    ck_assert_msg(strncmp(msgs[i], want[i], strlen(want[i])) == 0,
                  "[%zu] %s", i, msgs[i]);
}
END_TEST

/* ---- action registration ---- */

static bool known_action(const char *name, void *arg) {
  const char *const *names = arg;
  for (; *names; names++)
    if (strcmp(*names, name) == 0) return true;
  return false;
}

START_TEST(actions_checked) {
  const char *names[] = {"shop.A", "shop.Ok", NULL};
  mly_fsm_load_options o = opts;
  o.action_known = known_action;
  o.action_arg = names;
  const char *y = "state_machines:\n  - name: m\n    namespace: shop\n"
                  "    states:\n"
                  "      - name: a\n        initial: True\n        action: A\n"
                  "        entry: Missing\n"                        /* 8 */
                  "        exit: {exec: [/bin/true]}\n"
                  "        transitions: [{event: ok, to: b, action: Ok}]\n"
                  "      - name: b\n        final: True\n"
                  "        entry: other.Gone\n";                    /* 13 */
  mly_fsm_set *s = NULL;
  ck_assert_int_eq(load_with(&o, y, &s), MLY_EINVAL);
  ck_assert_uint_eq(nmsgs, 2);
  ck_assert_msg(strncmp(msgs[0], "m.yaml:8:16: action 'shop.Missing' is not "
                        "registered", 51) == 0, "%s", msgs[0]);
  ck_assert_msg(strncmp(msgs[1], "m.yaml:13:16: action 'other.Gone'", 33) == 0,
                "%s", msgs[1]);
  /* without a registry the same file loads: structure only */
  fsm_set *ok = load_ok(y);
  fsm_set_free(ok);
}
END_TEST

/* ---- sections of other layers ---- */

typedef struct seen_section {
  int calls;
  uint32_t line;
  size_t len;
} seen_section;

static int read_queues(mly_conf *c, mly_conf_node *v, void *arg) {
  seen_section *s = arg;
  s->calls++;
  s->line = mly_conf_line(v);
  s->len = mly_conf_len(v);
  mly_conf_node *k, *val;
  if (mly_conf_pair(c, v, 0, &k, &val) == 0 &&
      strcmp(mly_conf_scalar(k), "bad") == 0)
    return mly_conf_bad(c, k, "queue 'bad' is bad");
  return 0;
}

START_TEST(sections_handed_over) {
  seen_section q = {0};
  mly_conf_section sec[] = {{"queues", read_queues, &q, NULL}};
  mly_fsm_load_options o = opts;
  o.sections = sec;
  o.nsections = 1;
  const char *y = HEAD TWO "queues:\n  fast: {rate: 10/s}\n  slow: {}\n";
  mly_fsm_set *s = NULL;
  ck_assert_int_eq(load_with(&o, y, &s), 0);
  ck_assert_int_eq(q.calls, 1);
  ck_assert_uint_eq(q.line, 11);
  ck_assert_uint_eq(q.len, 2);
  mly_fsm_set_free(s);
  /* the reader's errors are the loader's */
  y = HEAD TWO "queues: {bad: 1}\n";
  ck_assert_int_eq(load_with(&o, y, &s), MLY_EINVAL);
  ck_assert_uint_eq(nmsgs, 1);
  ck_assert_str_eq(msgs[0], "m.yaml:10:10: queue 'bad' is bad");
  /* schedules has no reader here */
  y = HEAD TWO "schedules: {}\n";
  ck_assert_int_eq(load_with(&o, y, &s), MLY_EINVAL);
  ck_assert_ptr_nonnull(strstr(msgs[0], "not supported by this build"));
}
END_TEST

/* ---- imports ---- */

static char tmpdir[64];

static void put_file(const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  ck_assert_int_eq(fclose(f), 0);
}

static int load_file(const char *name, fsm_set **out) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  const char *files[] = {path};
  nmsgs = nnotes = 0;
  mly_fsm_set *s = NULL;
  int rc = mly_fsm_load(files, 1, &opts, &s);
  *out = (fsm_set *)s;
  return rc;
}

static void make_tmp(void) {
  h_tmpdir(tmpdir, sizeof tmpdir, "fsm-load");
  char sub[128];
  snprintf(sub, sizeof sub, "%s/lib", tmpdir);
  ck_assert_int_eq(mkdir(sub, 0700), 0);
}

static void rm_tmp(void) { h_rmtree(tmpdir); }

#define MACHINE(n) "  - name: " n "\n    states:\n" TWO

START_TEST(imports) {
  make_tmp();
  /* relative to the importing file: lib/b.yaml imports c.yaml beside it;
     d.yaml is imported twice (diamond) and read once */
  put_file("a.yaml", "import: [lib/b.yaml, d.yaml]\nstate_machines:\n"
           MACHINE("ma"));
  put_file("lib/b.yaml", "import: [c.yaml, ../d.yaml]\nstate_machines:\n"
           MACHINE("mb"));
  put_file("lib/c.yaml", "state_machines:\n" MACHINE("mc"));
  put_file("d.yaml", "state_machines:\n" MACHINE("md"));
  fsm_set *s;
  int rc = load_file("a.yaml", &s);
  if (rc) dump_msgs();
  ck_assert_int_eq(rc, 0);
  ck_assert_uint_eq(s->nmachines, 4);
  /* imports first, in the order met */
  ck_assert_str_eq(s->machines[0].name, "mc");
  ck_assert_str_eq(s->machines[1].name, "md");
  ck_assert_str_eq(s->machines[2].name, "mb");
  ck_assert_str_eq(s->machines[3].name, "ma");
  ck_assert_uint_eq(s->nfiles, 4);
  ck_assert_ptr_nonnull(strstr(s->machines[0].pos.file, "lib/c.yaml"));
  fsm_set_free(s);

  /* a cycle is named */
  put_file("x.yaml", "import: y.yaml\nstate_machines:\n" MACHINE("mx"));
  put_file("y.yaml", "import: [lib/z.yaml]\nstate_machines: []\n");
  put_file("lib/z.yaml", "import: [../x.yaml]\nstate_machines: []\n");
  ck_assert_int_eq(load_file("x.yaml", &s), MLY_EINVAL);
  ck_assert_uint_eq(nmsgs, 1);
  ck_assert_msg(strstr(msgs[0], "lib/z.yaml:1:10: circular import: ") &&
                    strstr(msgs[0], "x.yaml -> ") &&
                    strstr(msgs[0], "y.yaml -> ") &&
                    strstr(msgs[0], "z.yaml -> "),
                "%s", msgs[0]);
  /* a file importing itself */
  put_file("self.yaml", "import: [self.yaml]\nstate_machines: []\n");
  ck_assert_int_eq(load_file("self.yaml", &s), MLY_EINVAL);
  ck_assert_ptr_nonnull(strstr(msgs[0], "self.yaml:1:10: circular import"));

  /* names clash across files */
  put_file("p.yaml", "import: [q.yaml]\nstate_machines:\n" MACHINE("same"));
  put_file("q.yaml", "state_machines:\n" MACHINE("same"));
  ck_assert_int_eq(load_file("p.yaml", &s), MLY_EINVAL);
  ck_assert_uint_eq(nmsgs, 1);
  ck_assert_msg(strstr(msgs[0], "p.yaml:3:5: machine 'same' is defined "
                                "twice (first at ") &&
                    strstr(msgs[0], "q.yaml:2:5)"),
                "%s", msgs[0]);

  /* a missing import, and an error inside an imported file */
  put_file("m.yaml", "import: [nothere.yaml, bad.yaml]\nstate_machines:\n"
           MACHINE("mm"));
  put_file("bad.yaml", "state_machines:\n  - name: mbad\n    oops: 1\n"
           "    states:\n" TWO);
  ck_assert_int_eq(load_file("m.yaml", &s), MLY_EINVAL);
  ck_assert_uint_eq(nmsgs, 2);
  ck_assert_msg(strstr(msgs[0], "m.yaml:1:10: cannot import") &&
                    strstr(msgs[0], "nothere.yaml"),
                "%s", msgs[0]);
  ck_assert_msg(strstr(msgs[1], "bad.yaml:3:5: unknown key 'oops'"), "%s",
                msgs[1]);
  ck_assert_int_eq(load_file("none.yaml", &s), -ENOENT);
  ck_assert_ptr_nonnull(strstr(msgs[0], "none.yaml: cannot read"));

  /* trusted_files: a file others may write, or one in a directory they
     may change, is refused, with the import's position too */
  mly_fsm_load_options strict = opts;
  strict.trusted_files = true;
  put_file("t.yaml", "import: [lib/u.yaml]\nstate_machines:\n" MACHINE("mt"));
  put_file("lib/u.yaml", "state_machines:\n" MACHINE("mu"));
  char pt[256], pu[256], plib[256];
  snprintf(pt, sizeof pt, "%s/t.yaml", tmpdir);
  snprintf(pu, sizeof pu, "%s/lib/u.yaml", tmpdir);
  snprintf(plib, sizeof plib, "%s/lib", tmpdir);
  const char *roots[] = {pt};
  mly_fsm_set *ms = NULL;
  ck_assert_int_eq(chmod(pt, 0644), 0);
  ck_assert_int_eq(chmod(pu, 0644), 0);
  nmsgs = 0;
  ck_assert_int_eq(mly_fsm_load(roots, 1, &strict, &ms), 0);
  mly_fsm_set_free(ms);
  ck_assert_int_eq(chmod(pu, 0664), 0);
  nmsgs = 0;
  ck_assert_int_eq(mly_fsm_load(roots, 1, &strict, &ms), MLY_EPERM);
  ck_assert_uint_eq(nmsgs, 2);
  ck_assert_msg(strstr(msgs[0], "lib/u.yaml: not trusted: owned by uid") &&
                    strstr(msgs[0], "mode 0664"), "%s", msgs[0]);
  ck_assert_msg(strstr(msgs[1], "t.yaml:1:10: this import cannot be read"),
                "%s", msgs[1]);
  ck_assert_int_eq(chmod(pu, 0644), 0);
  ck_assert_int_eq(chmod(plib, 0777), 0); /* a directory anyone may change */
  nmsgs = 0;
  ck_assert_int_eq(mly_fsm_load(roots, 1, &strict, &ms), MLY_EPERM);
  ck_assert_msg(strstr(msgs[0], "lib/u.yaml: not trusted: "), "%s", msgs[0]);
  ck_assert_int_eq(chmod(plib, 0700), 0);
  ck_assert_int_eq(chmod(pt, 0646), 0);   /* the root file itself */
  nmsgs = 0;
  ck_assert_int_eq(mly_fsm_load(roots, 1, &strict, &ms), MLY_EPERM);
  ck_assert_uint_eq(nmsgs, 1);
  ck_assert_msg(strstr(msgs[0], "t.yaml: not trusted"), "%s", msgs[0]);
  /* without the option the same files load */
  nmsgs = 0;
  ck_assert_int_eq(mly_fsm_load(roots, 1, &opts, &ms), 0);
  mly_fsm_set_free(ms);
  rm_tmp();
}
END_TEST

/* Two files on the command line share one set of names. */
START_TEST(several_roots) {
  make_tmp();
  put_file("a.yaml", "state_machines:\n" MACHINE("a1"));
  put_file("b.yaml", "import: [a.yaml]\nstate_machines:\n" MACHINE("b1"));
  char pa[256], pb[256];
  snprintf(pa, sizeof pa, "%s/a.yaml", tmpdir);
  snprintf(pb, sizeof pb, "%s/b.yaml", tmpdir);
  const char *files[] = {pa, pb};
  mly_fsm_set *s = NULL;
  nmsgs = 0;
  ck_assert_int_eq(mly_fsm_load(files, 2, &opts, &s), 0);
  ck_assert_uint_eq(mly_fsm_count(s), 2); /* a.yaml once */
  ck_assert_ptr_nonnull(mly_fsm_find(s, "a1"));
  ck_assert_ptr_nonnull(mly_fsm_find(s, "b1"));
  ck_assert_ptr_null(mly_fsm_find(s, "c1"));
  ck_assert_str_eq(mly_fsm_name(mly_fsm_at(s, 1)), "b1");
  ck_assert_ptr_null(mly_fsm_at(s, 2));
  ck_assert_uint_eq(mly_fsm_nstates(mly_fsm_at(s, 0)), 2);
  mly_fsm_set_free(s);

  /* nothing to run (issue 11, M8): a root whose only import gives
     nothing is refused; one whose import was read before (by an earlier
     root) gives what that import gave, and passes */
  put_file("e.yaml", "state_machines: []\n");     /* imported: may be empty */
  put_file("c.yaml", "import: [e.yaml]\n");
  put_file("d.yaml", "import: [a.yaml]\n");
  char pc[256], pd[256];
  snprintf(pc, sizeof pc, "%s/c.yaml", tmpdir);
  snprintf(pd, sizeof pd, "%s/d.yaml", tmpdir);
  const char *empty[] = {pc};
  nmsgs = 0;
  ck_assert_int_eq(mly_fsm_load(empty, 1, &opts, &s), MLY_EINVAL);
  ck_assert_uint_eq(nmsgs, 1);
  ck_assert_msg(strstr(msgs[0], "c.yaml:1:1: this file defines no machine: "
                                "nothing to run") != NULL, "%s", msgs[0]);
  const char *again[] = {pa, pd};
  nmsgs = 0;
  ck_assert_int_eq(mly_fsm_load(again, 2, &opts, &s), 0);
  ck_assert_uint_eq(mly_fsm_count(s), 1);
  mly_fsm_set_free(s);
  rm_tmp();
}
END_TEST

/* ---- the graph checks against a model, on random machines ---- */

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(uint32_t n) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)(rng % n);
}

#define RN 9
typedef struct rmach {
  int n;
  bool final[RN];
  int nt[RN], to[RN][3];
  int fail;  /* machine on_failure, -1 none */
} rmach;

START_TEST(graph_model) {
  char y[8192];
  for (int round = 0; round < 400; round++) {
    rmach r = {.n = 2 + (int)rnd(RN - 1), .fail = -1};
    for (int i = 0; i < r.n; i++) {
      r.final[i] = rnd(4) == 0;
      r.nt[i] = r.final[i] ? (int)rnd(2) : (int)rnd(4);
      for (int t = 0; t < r.nt[i]; t++) r.to[i][t] = (int)rnd((uint32_t)r.n);
    }
    if (rnd(3) == 0) r.fail = (int)rnd((uint32_t)r.n);
    bool any_final = false;
    for (int i = 0; i < r.n; i++) any_final = any_final || r.final[i];
    size_t at = (size_t)snprintf(y, sizeof y, "state_machines:\n  - name: r\n");
    if (r.fail >= 0)
      at += (size_t)snprintf(y + at, sizeof y - at, "    on_failure: s%d\n",
                             r.fail);
    at += (size_t)snprintf(y + at, sizeof y - at, "    states:\n");
    for (int i = 0; i < r.n; i++) {
      at += (size_t)snprintf(y + at, sizeof y - at,
                             "      - name: s%d\n        action: A\n%s%s", i,
                             i == 0 ? "        initial: True\n" : "",
                             r.final[i] ? "        final: True\n" : "");
      if (r.nt[i])
        at += (size_t)snprintf(y + at, sizeof y - at, "        transitions:\n");
      for (int t = 0; t < r.nt[i]; t++)
        at += (size_t)snprintf(y + at, sizeof y - at,
                               "          - {event: e%d, to: s%d}\n", t,
                               r.to[i][t]);
    }
    /* the model: forward from s0, backward from the finals, by fixed
       point (a different method from the loader's) */
    bool fwd[RN] = {true}, end[RN] = {false};
    for (int i = 0; i < r.n; i++) end[i] = r.final[i];
    for (bool more = true; more;) {
      more = false;
      for (int i = 0; i < r.n; i++) {
        int edges[4], ne = 0;
        for (int t = 0; t < r.nt[i]; t++) edges[ne++] = r.to[i][t];
        if (!r.final[i] && r.fail >= 0) edges[ne++] = r.fail;
        for (int k = 0; k < ne; k++) {
          if (fwd[i] && !fwd[edges[k]]) fwd[edges[k]] = more = true;
          if (end[edges[k]] && !end[i]) end[i] = more = true;
        }
      }
    }
    size_t want_unreach = 0, want_stuck = 0, want_noend = 0;
    for (int i = 0; i < r.n; i++) {
      if (!fwd[i]) want_unreach++;
      else if (!r.final[i] && r.nt[i] == 0) want_stuck++;
      else if (!end[i] && any_final) want_noend++;
    }
    size_t want = want_unreach + want_stuck + want_noend + !any_final;
    fsm_set *s;
    int rc = load(y, &s);
    size_t unreach = 0, stuck = 0, noend = 0, nofinal = 0;
    for (size_t i = 0; i < nmsgs && i < MAXMSG; i++) {
      unreach += strstr(msgs[i], "is unreachable") != NULL;
      stuck += strstr(msgs[i], "has no transitions") != NULL;
      noend += strstr(msgs[i], "no final state can be reached") != NULL;
      nofinal += strstr(msgs[i], "has no final state") != NULL;
    }
    if (nmsgs != want) {
      dump_msgs();
      fprintf(stderr, "%s", y);
    }
    ck_assert_uint_eq(nmsgs, want);
    ck_assert_uint_eq(unreach, want_unreach);
    ck_assert_uint_eq(stuck, want_stuck);
    ck_assert_uint_eq(noend, want_noend);
    ck_assert_uint_eq(nofinal, !any_final);
    ck_assert_int_eq(rc, want ? MLY_EINVAL : 0);
    fsm_set_free(s);
  }
}
END_TEST

/* ---- encoding and hash ---- */

START_TEST(encode_roundtrip) {
  fsm_set *s = load_ok(full_yaml);
  fsm_machine *m = &s->machines[0];
  char *a, *b;
  size_t la, lb;
  ck_assert_int_eq(fsm_def_encode(m, &a, &la), 0);
  fsm_machine *d;
  ck_assert_int_eq(fsm_def_decode(a, la, &d), 0);
  ck_assert_int_eq(fsm_def_encode(d, &b, &lb), 0);
  ck_assert_uint_eq(la, lb);
  ck_assert_int_eq(memcmp(a, b, la), 0);
  ck_assert_int_eq(memcmp(d->hash, m->hash, 32), 0); /* hash of the bytes */
  ck_assert_str_eq(d->states[4].wait_events[1], "cancelled");
  ck_assert_str_eq(d->states[0].exit.argv[1], "bye");
  ck_assert_ptr_null(d->states[0].exit.argv[2]);
  ck_assert_uint_eq(d->states[0].trans[0].to, m->states[0].trans[0].to);
  ck_assert_int_eq(d->pos.line, 0); /* no positions */
  /* every truncation and every flipped byte: refused or decoded, never
     a crash (run under ASan too) */
  for (size_t cut = 0; cut < la; cut++) {
    fsm_machine *x = NULL;
    int rc = fsm_def_decode(a, cut, &x);
    ck_assert_int_ne(rc, 0);
    ck_assert_ptr_null(x);
  }
  for (size_t i = 0; i < la; i++) {
    a[i] ^= 0x5a;
    fsm_machine *x = NULL;
    int rc = fsm_def_decode(a, la, &x);
    ck_assert(rc == 0 || rc == MLY_EBADMSG);
    if (rc == 0) { /* what decodes has its indexes in range */
      ck_assert_uint_lt(x->initial, x->nstates);
      for (size_t k = 0; k < x->nstates; k++)
        for (size_t t = 0; t < x->states[k].ntrans; t++)
          ck_assert_uint_lt(x->states[k].trans[t].to, x->nstates);
    }
    fsm_machine_free(x);
    a[i] ^= 0x5a;
  }
  free(a);
  free(b);
  fsm_machine_free(d);
  fsm_set_free(s);
}
END_TEST

START_TEST(hash_of_content) {
  /* the same machine in flow style, comments, other quoting */
  const char *flow =
      "# the same\nstate_machines: [{name: m, states: [\n"
      "  {name: a, initial: true, action: \"A\", transitions: [{event: ok, "
      "to: 'b'}]},\n  {name: b, final: TRUE}]}]\n";
  fsm_set *x = load_ok(HEAD TWO), *y = load_ok(flow);
  ck_assert_int_eq(memcmp(x->machines[0].hash, y->machines[0].hash, 32), 0);
  fsm_set *z = load_ok(HEAD TWO "        entry: E\n");
  ck_assert_int_ne(memcmp(x->machines[0].hash, z->machines[0].hash, 32), 0);
  /* SHA-256 of the encoding, by the public accessor too */
  char *buf;
  size_t len;
  ck_assert_int_eq(fsm_def_encode(&x->machines[0], &buf, &len), 0);
  ck_assert_ptr_eq(mly_fsm_hash((const mly_fsm_machine *)&x->machines[0]),
                   x->machines[0].hash);
  free(buf);
  fsm_set_free(x);
  fsm_set_free(y);
  fsm_set_free(z);
}
END_TEST

/* ---- DOT, parsed back ---- */

typedef struct dot_edge {
  char from[64], to[64], label[128];
  bool dashed;
} dot_edge;

START_TEST(dot_structure) {
  fsm_set *s = load_ok(full_yaml);
  const fsm_machine *m = &s->machines[0];
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  ck_assert_int_eq(mly_fsm_dot((const mly_fsm_machine *)m, f), 0);
  fclose(f);
  /* nodes: "name" [shape=S...label="..."]; edges: "a" -> "b" [...] */
  dot_edge edges[64];
  size_t nedges = 0, nnodes = 0;
  char shape[RN * 4][32] = {{0}}, label[RN * 4][128] = {{0}};
  bool bold[RN * 4] = {false};
  char start_to[64] = "";
  ck_assert_msg(strncmp(text, "digraph \"order\" {\n", 18) == 0, "%s", text);
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    char a[64], b[64], rest[256];
    if (sscanf(line, " \"%63[^\"]\" -> \"%63[^\"]\"%255[^\n]", a, b, rest) >= 2) {
      if (strcmp(a, "__start") == 0) {
        snprintf(start_to, sizeof start_to, "%s", b);
        continue;
      }
      dot_edge *e = &edges[nedges++];
      snprintf(e->from, sizeof e->from, "%s", a);
      snprintf(e->to, sizeof e->to, "%s", b);
      char *l = strstr(rest, "label=\"");
      ck_assert_ptr_nonnull(l);
      sscanf(l + 7, "%127[^\"]", e->label);
      e->dashed = strstr(rest, "dashed") != NULL;
    } else if (sscanf(line, " \"%63[^\"]\" [%255[^\n]", a, rest) == 2 &&
               strcmp(a, "__start") != 0) {
      uint32_t i = fsm_state_find(m, a);
      ck_assert_uint_ne(i, FSM_NO_STATE);
      sscanf(strstr(rest, "shape=") + 6, "%31[a-z]", shape[i]);
      bold[i] = strstr(rest, "style=bold") != NULL;
      sscanf(strstr(rest, "label=\"") + 7, "%127[^\"]", label[i]);
      nnodes++;
    }
  }
  ck_assert_uint_eq(nnodes, m->nstates);
  ck_assert_str_eq(start_to, m->states[m->initial].name);
  for (size_t i = 0; i < m->nstates; i++) {
    const fsm_state *st = &m->states[i];
    ck_assert_str_eq(shape[i], st->final ? "doublecircle"
                               : st->wait ? "hexagon" : "ellipse");
    ck_assert_int_eq(bold[i], i == m->initial);
    ck_assert_int_eq(strstr(label[i], "(continuation)") != NULL,
                     st->continuation);
    ck_assert_int_eq(strstr(label[i], "(fan-in") != NULL,
                     st->fan_in != FSM_FAN_NONE);
  }
  ck_assert_ptr_nonnull(strstr(label[2], "(fan-in 3 of 4)"));
  ck_assert_ptr_nonnull(strstr(label[3], "(fan-in 5s)"));
  ck_assert_ptr_nonnull(strstr(label[4], "(wait 3d)"));
  /* every transition once, labelled with its event first; failure edges
     from every state that is not final */
  size_t ntrans = 0, nfail = 0;
  for (size_t i = 0; i < m->nstates; i++) {
    const fsm_state *st = &m->states[i];
    ntrans += st->ntrans;
    uint32_t fl = st->on_failure != FSM_NO_STATE ? st->on_failure
                                                 : m->on_failure;
    nfail += !st->final && fl != FSM_NO_STATE && fl != i;
    for (size_t t = 0; t < st->ntrans; t++) {
      size_t hits = 0;
      for (size_t e = 0; e < nedges; e++)
        if (!edges[e].dashed && !strcmp(edges[e].from, st->name) &&
            !strcmp(edges[e].to, m->states[st->trans[t].to].name) &&
            !strncmp(edges[e].label, st->trans[t].event,
                     strlen(st->trans[t].event)))
          hits++;
      ck_assert_uint_eq(hits, 1);
    }
  }
  size_t dashed = 0;
  for (size_t e = 0; e < nedges; e++) dashed += edges[e].dashed;
  ck_assert_uint_eq(nedges, ntrans + nfail);
  ck_assert_uint_eq(dashed, nfail);
  /* the first transition: event, countdown, action */
  ck_assert_str_eq(edges[0].label, "go\\nafter 10s..1m\\n/ shop.Go");
  free(text);
  fsm_set_free(s);
}
END_TEST

/* ---- damaged input: a code and messages, never a crash ---- */

START_TEST(damaged_input) {
  const char *base = full_yaml;
  size_t n = strlen(base);
  char *y = malloc(n + 1);
  for (size_t cut = 0; cut < n; cut += 7) {
    memcpy(y, base, cut);
    y[cut] = '\0';
    fsm_set *s;
    int rc = load(y, &s);
    ck_assert(rc == 0 || rc == MLY_EINVAL);
    ck_assert_int_eq(rc == 0, s != NULL);
    ck_assert(rc == 0 || nmsgs > 0);
    fsm_set_free(s);
  }
  for (size_t i = 0; i < n; i += 3) {
    memcpy(y, base, n + 1);
    y[i] = "x:-[{ \n'"[i % 8];
    fsm_set *s;
    int rc = load(y, &s);
    ck_assert(rc == 0 || rc == MLY_EINVAL);
    ck_assert(rc == 0 || nmsgs > 0);
    fsm_set_free(s);
  }
  free(y);
  /* an alias bomb is bounded, and said once */
  const char *bomb =
      "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
      "state_machines: [{name: m, context_types: {k: *b}, states: [*b, *b]}]\n";
  fsm_set *s;
  ck_assert_int_eq(load(bomb, &s), MLY_EINVAL);
}
END_TEST

static Suite *fsm_load_suite(void) {
  Suite *s = suite_create("fsm_load");
  TCase *tc = tcase_create("load");
  tcase_add_test(tc, full_file);
  tcase_add_test(tc, defaults);
  tcase_add_test(tc, ignored_keys_note);
  tcase_add_test(tc, errors_without_handler);
  tcase_add_test(tc, errors_top);
  tcase_add_test(tc, errors_machine_keys);
  tcase_add_test(tc, errors_context_types);
  tcase_add_test(tc, errors_state_keys);
  tcase_add_test(tc, errors_newcomer);
  tcase_add_test(tc, errors_transition_keys);
  tcase_add_test(tc, errors_structure);
  tcase_add_test(tc, errors_fantasm_combinations);
  tcase_add_test(tc, errors_all_reported);
  tcase_add_test(tc, many_names);
  tcase_add_test(tc, actions_checked);
  tcase_add_test(tc, sections_handed_over);
  tcase_add_test(tc, imports);
  tcase_add_test(tc, several_roots);
  tcase_add_test(tc, graph_model);
  tcase_add_test(tc, encode_roundtrip);
  tcase_add_test(tc, hash_of_content);
  tcase_add_test(tc, dot_structure);
  tcase_add_test(tc, damaged_input);
  tcase_set_timeout(tc, 120);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(fsm_load_suite)
