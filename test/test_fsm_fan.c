/*
 * test_fsm_fan.c - fork, spawn, continuation and fan-in of YAML machines
 * (suite fsm_fan).
 *
 * Fantasm's test_continuation_fan_in is the floor: a continuation feeds a
 * fan-in that merges every replica, for batch sizes 1, 3, 10 and 11, and
 * the merged counts are exact.  Beyond it: fan_in_group separation (by
 * count and by time window), a counted fan-in with `tolerate`, two
 * fan-in states in one machine with a fan-out between them, fork counts,
 * and spawns that a failed (then retried) dispatch does not start twice.
 * Each runs on a runtime with a journal (a fresh temporary directory),
 * so the durable paths are the ones tested.
 */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsm/fsmrt.h"
#include "fsm_fan_util.h"
#include "harness.h"
#include "mealy.h"
#include "store_param.h"

#define MAXREC 64

/* What the actions saw, per test. */
typedef struct seen {
  int work, join, finish, kids, spawns_asked;
  int64_t merged[MAXREC];   /* per join call: how many contexts          */
  int64_t sum[MAXREC];      /* per join call: sum of the parts            */
  int64_t group[MAXREC];    /* per join call: the group value, or -2 mixed */
  bool had_error[MAXREC];
  int64_t items;            /* sum of "k" over every merge                */
  uint64_t vmask;           /* values "v" seen at joins                   */
  int forks_seen[16];       /* Count: how often each "fork" value came    */
  int j1, j2;
  int64_t j1_n, j2_n;
  int fail_items[4];        /* Work fails for good on these items         */
  int nfail;
  int lines_attempts;       /* Lines: continuation calls                  */
  char error[512];          /* Dropped: the context's "error"             */
  int dropped;
  bool permanent;           /* Dropped: cause.permanent                   */
} seen;

static mly_runtime *rt;
static seen S;
static char dir[64];

/* ---- actions ---- */

static int a_start(mly_action_call *c, void *arg) {
  (void)arg;
  mly_value *ctx = mly_action_context(c);
  int64_t n = fan_util_int(ctx, "n");
  mly_value *items = mly_value_array();
  for (int64_t i = 0; i < n; i++) mly_array_push(items, mly_value_int(i));
  mly_map_set(ctx, "items", items);
  return mly_action_event(c, "go");
}

static int a_work(mly_action_call *c, void *arg) {
  seen *s = arg;
  mly_value *ctx = mly_action_context(c);
  if (mly_action_continuing(c))
    return mly_continue_list(c, "items", (uint32_t)fan_util_int(ctx, "bs"),
                             "batch");
  s->work++;
  const mly_value *b = mly_map_get(ctx, "batch");
  int64_t sum = 0;
  for (size_t i = 0; i < mly_value_len(b); i++) {
    int64_t v = 0;
    mly_value_get_int(mly_array_at(b, i), &v);
    for (int k = 0; k < s->nfail; k++)
      if (v == s->fail_items[k])
        return mly_action_fail(c, true, "item %" PRId64 " fails", v);
    sum += v;
  }
  mly_map_set_int(ctx, "part", sum);
  mly_map_set_int(ctx, "k", (int64_t)mly_value_len(b));
  return mly_action_event(c, "done");
}

/* The fan-in action: called once per merge, with "merged". */
static int a_join(mly_action_call *c, void *arg) {
  seen *s = arg;
  mly_value *ctx = mly_action_context(c);
  const mly_value *mg = mly_map_get(ctx, "merged");
  ck_assert_ptr_nonnull(mg);
  int i = s->join++;
  ck_assert_int_lt(i, MAXREC);
  s->merged[i] = (int64_t)mly_value_len(mg);
  s->had_error[i] = mly_map_get(ctx, "error") != NULL;
  s->group[i] = -1;
  for (size_t j = 0; j < mly_value_len(mg); j++) {
    const mly_value *m = mly_array_at(mg, j);
    ck_assert_ptr_null(mly_map_get(m, "_fan"));
    ck_assert_ptr_null(mly_map_get(m, "merged"));
    int64_t part = fan_util_int(m, "part"), k = fan_util_int(m, "k");
    if (part > 0) s->sum[i] += part;
    if (k > 0) s->items += k;
    int64_t g = fan_util_int(m, "g");
    if (j == 0) s->group[i] = g;
    else if (s->group[i] != g) s->group[i] = -2;
    int64_t v = fan_util_int(m, "v");
    if (v >= 0 && v < 64) s->vmask |= 1ull << v;
  }
  return mly_action_event(c, "ok");
}

static int a_finish(mly_action_call *c, void *arg) {
  (void)c;
  ((seen *)arg)->finish++;
  return 0;
}

/* Fork 11 copies with g = i % 3 and v = i; itself g = 0, v = 0. */
static int a_fork_groups(mly_action_call *c, void *arg) {
  (void)arg;
  mly_value *ctx = mly_action_context(c);
  int64_t n = fan_util_int(ctx, "n"), mod = fan_util_int(ctx, "mod");
  mly_map_set_int(ctx, "g", 0);
  mly_map_set_int(ctx, "v", 0);
  for (int64_t i = 1; i < n; i++) {
    mly_value *d = mly_value_map();
    mly_map_set_int(d, "g", i % mod);
    mly_map_set_int(d, "v", i);
    ck_assert_int_eq(mly_action_fork(c, d), 0);
  }
  return mly_action_event(c, "go");
}

/* Fork one copy per element of "gs" after the first, each with g from
 * it and v its index; itself takes gs[0]. */
static int a_fork_list(mly_action_call *c, void *arg) {
  (void)arg;
  mly_value *ctx = mly_action_context(c);
  const mly_value *gs = mly_map_get(ctx, "gs");
  int64_t g0 = 0;
  mly_value_get_int(mly_array_at(gs, 0), &g0);
  mly_map_set_int(ctx, "g", g0);
  mly_map_set_int(ctx, "v", 0);
  for (size_t i = 1; i < mly_value_len(gs); i++) {
    int64_t g = 0;
    mly_value_get_int(mly_array_at(gs, i), &g);
    mly_value *d = mly_value_map();
    mly_map_set_int(d, "g", g);
    mly_map_set_int(d, "v", (int64_t)i);
    ck_assert_int_eq(mly_action_fork(c, d), 0);
  }
  mly_map_del(ctx, "gs");
  return mly_action_event(c, "go");
}

/* Fork K copies (K from "forks") and go. */
static int a_fork_k(mly_action_call *c, void *arg) {
  (void)arg;
  int64_t k = fan_util_int(mly_action_context(c), "forks");
  for (int64_t i = 0; i < k; i++)
    ck_assert_int_eq(mly_action_fork(c, NULL), 0);
  return mly_action_event(c, "go");
}

static int a_count(mly_action_call *c, void *arg) {
  seen *s = arg;
  int64_t f = fan_util_int(mly_action_context(c), "fork");
  ck_assert_int_lt(f, 15);
  s->forks_seen[f < 0 ? 0 : f]++;
  s->finish++;
  return 0;
}

static int a_j1(mly_action_call *c, void *arg) {
  seen *s = arg;
  s->j1++;
  s->j1_n = (int64_t)mly_value_len(mly_map_get(mly_action_context(c), "merged"));
  for (int i = 0; i < 3; i++) ck_assert_int_eq(mly_action_fork(c, NULL), 0);
  return mly_action_event(c, "go");
}

static int a_j2(mly_action_call *c, void *arg) {
  seen *s = arg;
  s->j2++;
  s->j2_n = (int64_t)mly_value_len(mly_map_get(mly_action_context(c), "merged"));
  return mly_action_event(c, "ok");
}

/* Asks for 3 kids, fails (retryably) on its first attempt. */
static int a_spawner(mly_action_call *c, void *arg) {
  seen *s = arg;
  mly_value *ctxs = mly_value_array();
  for (int i = 0; i < 3; i++) {
    mly_value *k = mly_value_map();
    mly_map_set_int(k, "i", i);
    mly_array_push(ctxs, k);
  }
  s->spawns_asked++;
  ck_assert_int_eq(mly_action_spawn(c, "kid", ctxs, 0), 0);
  if (mly_action_attempt(c) == 0)
    return mly_action_fail(c, false, "first attempt fails");
  return 0;
}

/* One kid, after a countdown. */
static int a_spawn_later(mly_action_call *c, void *arg) {
  (void)arg;
  mly_value *ctxs = mly_value_array();
  mly_array_push(ctxs, mly_value_map());
  return mly_action_spawn(c, "kid", ctxs, 3600 * 1000);
}

static int a_kid(mly_action_call *c, void *arg) {
  (void)c;
  ((seen *)arg)->kids++;
  return 0;
}

/* A continuation over the lines of the file under "path", "bs" a
 * batch; each batch's line count is its "part". */
static int a_lines(mly_action_call *c, void *arg) {
  seen *s = arg;
  mly_value *ctx = mly_action_context(c);
  if (mly_action_continuing(c)) {
    const char *path = NULL;
    size_t len;
    s->lines_attempts++;
    mly_value_get_str(mly_map_get(ctx, "path"), &path, &len);
    return mly_continue_lines(c, path, (uint32_t)fan_util_int(ctx, "bs"),
                              "batch");
  }
  s->work++;
  mly_map_set_int(ctx, "part", (int64_t)mly_value_len(mly_map_get(ctx, "batch")));
  mly_map_set_int(ctx, "k", (int64_t)mly_value_len(mly_map_get(ctx, "batch")));
  return mly_action_event(c, "done");
}

/* on_failure's state: what the failure said. */
static int a_dropped(mly_action_call *c, void *arg) {
  seen *s = arg;
  const mly_value *ctx = mly_action_context(c);
  const char *e = "";
  size_t len = 0;
  mly_value_get_str(mly_map_get(ctx, "error"), &e, &len);
  snprintf(s->error, sizeof s->error, "%.*s", (int)len, e);
  const mly_value *cause = mly_map_get(ctx, "cause");
  mly_value_get_bool(mly_map_get(cause, "permanent"), &s->permanent);
  s->dropped++;
  s->finish++;
  return 0;
}

/* The machines' repeated parts (fsm_fan_util.h has FAN_Y_MACHINE,
 * FAN_Y_START and FAN_Y_WORK): a join whose action is Join, on "ok" to
 * end, and end, final, calling Finish. */
#define Y_JOIN_END(fan_in, more)        \
  "      - name: join\n"                \
  "        fan_in: " fan_in "\n"         \
  more                                  \
  "        action: Join\n"              \
  "        transitions:\n"              \
  "          - {event: ok, to: end}\n"  \
  "      - name: end\n"                 \
  "        final: True\n"               \
  "        action: Finish\n"
#define Y_GROUP_G "        fan_in_group: g\n"
#define Y_DROPPED "        on_failure: dropped\n"

static const char *yaml =
    "state_machines:\n"
    FAN_Y_MACHINE("cont")
    FAN_Y_START("Start", "work") FAN_Y_WORK("Work", "")
    Y_JOIN_END("{count: 0, tolerate: 2}", "")
    FAN_Y_MACHINE("contof")
    FAN_Y_START("Start", "work") FAN_Y_WORK("Work", Y_DROPPED)
    Y_JOIN_END("{count: 0, tolerate: 2}", "")
    "      - name: dropped\n"
    "        final: True\n"
    FAN_Y_MACHINE("strict")
    FAN_Y_START("Start", "work") FAN_Y_WORK("Work", "")
    Y_JOIN_END("{count: 0, tolerate: 1}", "")
    FAN_Y_MACHINE("grp")
    FAN_Y_START("ForkGroups", "join") Y_JOIN_END("{count: 4}", Y_GROUP_G)
    FAN_Y_MACHINE("pairs")
    FAN_Y_START("ForkGroups", "join") Y_JOIN_END("{count: 2}", "")
    FAN_Y_MACHINE("win")
    FAN_Y_START("ForkGroups", "join") Y_JOIN_END("100ms", Y_GROUP_G)
    FAN_Y_MACHINE("two")
    FAN_Y_START("ForkK", "join1")
    "      - name: join1\n"
    "        fan_in: {count: 3}\n"
    "        action: J1\n"
    "        transitions:\n"
    "          - {event: go, to: join2}\n"
    "      - name: join2\n"
    "        fan_in: {count: 4}\n"
    "        action: J2\n"
    "        transitions:\n"
    "          - {event: ok, to: end}\n"
    "      - name: end\n"
    "        final: True\n"
    "        action: Finish\n"
    FAN_Y_MACHINE("forks")
    FAN_Y_START("ForkK", "end")
    "      - name: end\n"
    "        final: True\n"
    "        action: Count\n"
    "  - name: parent\n"
    "    task_retry_limit: 3\n"
    "    min_backoff: 1ms\n"
    "    max_backoff: 1ms\n"
    "    states:\n"
    "      - name: start\n"
    "        initial: True\n"
    "        final: True\n"
    "        action: Spawner\n"
    FAN_Y_MACHINE("rgrp")
    FAN_Y_START("ForkList", "join") Y_JOIN_END("{count: 3}", Y_GROUP_G)
    FAN_Y_MACHINE("later")
    "      - name: start\n"
    "        initial: True\n"
    "        final: True\n"
    "        action: SpawnLater\n"
    "  - name: lines\n"
    "    task_retry_limit: 2\n"
    "    min_backoff: 1ms\n"
    "    max_backoff: 1ms\n"
    "    on_failure: dropped\n"
    "    states:\n"
    "      - name: work\n"
    "        initial: True\n"
    "        continuation: True\n"
    "        action: Lines\n"
    "        transitions:\n"
    "          - {event: done, to: join}\n"
    Y_JOIN_END("{count: 0}", "")
    "      - name: dropped\n"
    "        final: True\n"
    "        action: Dropped\n"
    FAN_Y_MACHINE("kid")
    "      - name: start\n"
    "        initial: True\n"
    "        final: True\n"
    "        action: Kid\n";

static void setup(void) {
  memset(&S, 0, sizeof S);
  h_tmpdir(dir, sizeof dir, "mealy-fsmfan");
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, NULL), 0);
  struct { const char *n; mly_action_fn fn; } acts[] = {
      {"Start", a_start},   {"Work", a_work},     {"Join", a_join},
      {"Finish", a_finish}, {"ForkGroups", a_fork_groups},
      {"ForkK", a_fork_k},  {"Count", a_count},   {"J1", a_j1},
      {"J2", a_j2},         {"Spawner", a_spawner}, {"Kid", a_kid},
      {"SpawnLater", a_spawn_later}, {"ForkList", a_fork_list},
      {"Lines", a_lines},   {"Dropped", a_dropped}};
  for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
    ck_assert_int_eq(mly_action_register(rt, acts[i].n, acts[i].fn, &S, 0),
                     0);
  mly_journal_options jo = {.dir = dir, .sync = MLY_SYNC_NEVER};
  h_journal_open(rt, &jo);
  fan_util_load(rt, "fan.yaml", yaml);
}

static void teardown(void) {
  mly_runtime_close(rt);
  h_rmtree(dir);
}

static int want_finish;
static int finished(void *arg) {
  (void)arg;
  return S.finish >= want_finish;
}

/* Start `machine` with the given ints in its context; run until `fin`
 * instances reached their final action. */
static void run(const char *machine, int fin, const char *k1, int64_t v1,
                const char *k2, int64_t v2) {
  mly_value *ctx = mly_value_map();
  if (k1) mly_map_set_int(ctx, k1, v1);
  if (k2) mly_map_set_int(ctx, k2, v2);
  ck_assert_int_eq(mly_fsm_start(rt, machine, NULL, ctx, NULL, 0, NULL), 0);
  want_finish = fin;
  ck_assert_msg(fan_util_run(rt, finished, NULL, 60000),
                "%s: %d of %d reached the end", machine, S.finish, fin);
}

/* Let everything still running end: no instance or collector is left
 * (so nothing more can happen). */
static void settle(void) {
  ck_assert_msg(fan_util_run(rt, fan_util_all_ended, rt, 60000),
                "instances left running");
}

/* ---- Fantasm's floor: a continuation feeding a fan-in ---- */

static const int batch_sizes[] = {1, 3, 10, 11};

static void continuation_case(int64_t n, int64_t bs) {
  run("cont", 1, "n", n, "bs", bs);
  settle();
  int64_t batches = (n + bs - 1) / bs;
  ck_assert_int_eq(S.work, batches); /* one replica per batch, no extra */
  ck_assert_int_eq(S.join, 1);
  ck_assert_int_eq(S.merged[0], batches);
  ck_assert_int_eq(S.sum[0], n * (n - 1) / 2);
  ck_assert_int_eq(S.items, n);
  ck_assert_int_eq(S.finish, 1);
}

/* ---- mly_continue_lines: batches of a file; a path it cannot read
   fails the step with a text naming it (issue 11, M2) ---- */

static void run_lines(const char *path, int64_t bs) {
  mly_value *ctx = mly_value_map();
  mly_map_set(ctx, "path", mly_value_str(path));
  mly_map_set_int(ctx, "bs", bs);
  ck_assert_int_eq(mly_fsm_start(rt, "lines", NULL, ctx, NULL, 0, NULL), 0);
  want_finish = 1;
  ck_assert_msg(fan_util_run(rt, finished, NULL, 60000), "lines: no end");
  settle();
}

START_TEST(lines_batches) {
  char path[128];
  snprintf(path, sizeof path, "%s/in.txt", dir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  for (int i = 0; i < 7; i++) fprintf(f, "line %d\n", i);
  ck_assert_int_eq(fclose(f), 0);
  run_lines(path, 3);
  ck_assert_int_eq(S.work, 3); /* 3 + 3 + 1, no empty last batch */
  ck_assert_int_eq(S.join, 1);
  ck_assert_int_eq(S.merged[0], 3);
  ck_assert_int_eq(S.items, 7);
  ck_assert_int_eq(S.dropped, 0);
}
END_TEST

START_TEST(lines_of_a_directory) {
  run_lines(dir, 3);
  ck_assert_int_eq(S.dropped, 1);
  ck_assert_int_eq(S.work, 0);
  char want[256];
  snprintf(want, sizeof want, "continuation over the lines of %s: it is a "
           "directory, not a file; give the path of a file", dir);
  ck_assert_msg(strstr(S.error, want) != NULL, "error: %s", S.error);
  ck_assert(S.permanent);           /* no retry makes it a file */
  ck_assert_int_eq(S.lines_attempts, 1);
}
END_TEST

/* Finding: /dev/zero was read without end (GBs, the host stuck, again
 * at each restart) and a FIFO failed with a retried "Illegal seek".
 * What is not a regular file is refused for good, the sentence naming
 * the path and what it is. */
START_TEST(lines_of_not_a_file) {
  char fifo[128];
  snprintf(fifo, sizeof fifo, "%s/fifo", dir);
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  const char *paths[] = {"/dev/zero", fifo};
  const char *kinds[] = {"a character device", "a FIFO (named pipe)"};
  for (int i = 0; i < 2; i++) {
    memset(&S, 0, sizeof S);
    run_lines(paths[i], 3);
    ck_assert_int_eq(S.dropped, 1);
    ck_assert_int_eq(S.work, 0);
    char want[256];
    snprintf(want, sizeof want, "continuation over the lines of %s: it is "
             "%s, not a file", paths[i], kinds[i]);
    ck_assert_msg(strstr(S.error, want) != NULL, "error: %s", S.error);
    ck_assert(S.permanent);
    ck_assert_int_eq(S.lines_attempts, 1);
  }
}
END_TEST

/* A line over 1 MiB is refused after reading 1 MiB of it, not held
 * whole (the file here: 3 MiB, no newline). */
START_TEST(lines_too_long) {
  char path[128];
  snprintf(path, sizeof path, "%s/long.txt", dir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  for (int i = 0; i < 3 * 1024; i++)
    for (int k = 0; k < 1024; k++) fputc('x', f);
  ck_assert_int_eq(fclose(f), 0);
  run_lines(path, 3);
  ck_assert_int_eq(S.dropped, 1);
  ck_assert_msg(strstr(S.error, "a line is longer than 1 MiB") != NULL,
                "error: %s", S.error);
}
END_TEST

START_TEST(lines_of_a_missing_file) {
  char path[128];
  snprintf(path, sizeof path, "%s/missing.txt", dir);
  run_lines(path, 3);
  ck_assert_int_eq(S.dropped, 1);
  char want[256];
  snprintf(want, sizeof want, "continuation over the lines of %s: %s", path,
           mly_strerror(MLY_ENOENT));
  ck_assert_msg(strstr(S.error, want) != NULL, "error: %s", S.error);
  ck_assert(!S.permanent);          /* it may appear: retried */
  ck_assert_int_eq(S.lines_attempts, 3); /* task_retry_limit: 2 */
}
END_TEST

START_TEST(continuation_fan_in_10) {
  continuation_case(10, batch_sizes[_i]);
}
END_TEST

START_TEST(continuation_fan_in_25) {
  continuation_case(25, batch_sizes[_i]);
}
END_TEST

/* ---- fan_in_group ---- */

START_TEST(group_count) {
  run("grp", 3, "n", 12, "mod", 3);
  settle();
  ck_assert_int_eq(S.join, 3);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(S.merged[i], 4);
    ck_assert_int_ge(S.group[i], 0); /* one group value per merge */
  }
  ck_assert_int_ne(S.group[0], S.group[1]);
  ck_assert_int_ne(S.group[1], S.group[2]);
  ck_assert_int_ne(S.group[0], S.group[2]);
  ck_assert_uint_eq(S.vmask, 0xfffu); /* each of the 12 merged once */
}
END_TEST

/* 6 arrive in one step at a fan-in of 2: the first collector takes 2 and
 * hands the 4 it got too many on, generation after generation */
START_TEST(count_overflow) {
  run("pairs", 3, "n", 6, "mod", 1);
  settle();
  ck_assert_int_eq(S.join, 3);
  for (int i = 0; i < 3; i++) ck_assert_int_eq(S.merged[i], 2);
  ck_assert_uint_eq(S.vmask, 0x3fu);
}
END_TEST

START_TEST(group_window) {
  /* a window splits arrivals by time, never mixes groups, loses none */
  run("win", 2, "n", 8, "mod", 2);
  want_finish = 2;
  int64_t total = 0;
  for (int turns = 0; turns < 100 && total < 8; turns++) {
    settle();
    total = 0;
    for (int i = 0; i < S.join; i++) total += S.merged[i];
  }
  ck_assert_int_eq(total, 8);
  for (int i = 0; i < S.join; i++) ck_assert_int_ge(S.group[i], 0);
  ck_assert_uint_eq(S.vmask, 0xffu);
  ck_assert_int_eq(S.finish, S.join);
}
END_TEST

/* ---- counted fan-in with tolerate ---- */

/* Items 3 and 7 of 10 fail for good; `machine` runs to its one join,
 * which merges the 8 others. */
static void tolerate_case(const char *machine) {
  S.fail_items[0] = 3;
  S.fail_items[1] = 7;
  S.nfail = 2;
  run(machine, 1, "n", 10, "bs", 1);
  settle();
  ck_assert_int_eq(S.join, 1);
  ck_assert_int_eq(S.merged[0], 8);
}

START_TEST(tolerate_within) {
  tolerate_case("cont");
  ck_assert_int_eq(S.sum[0], 45 - 3 - 7);
  ck_assert(!S.had_error[0]);
}
END_TEST

/* the same failures, moved to an on_failure state that never reaches
 * the fan-in: they are told there as failures all the same */
START_TEST(tolerate_on_failure) {
  tolerate_case("contof");
  ck_assert_int_eq(S.sum[0], 45 - 3 - 7);
  ck_assert(!S.had_error[0]);
}
END_TEST

START_TEST(tolerate_exceeded) {
  tolerate_case("strict");
  ck_assert(S.had_error[0]); /* 2 failed, 1 tolerated: said so */
}
END_TEST

/* ---- two fan-in states, fan-out after fan-in ---- */

START_TEST(two_fan_ins) {
  run("two", 1, "forks", 2, NULL, 0);
  settle();
  ck_assert_int_eq(S.j1, 1);
  ck_assert_int_eq(S.j1_n, 3);
  ck_assert_int_eq(S.j2, 1);
  ck_assert_int_eq(S.j2_n, 4);
  ck_assert_int_eq(S.finish, 1);
}
END_TEST

/* ---- fork counts ---- */

START_TEST(fork_counts) {
  run("forks", 6, "forks", 5, NULL, 0);
  settle();
  ck_assert_int_eq(S.finish, 6);
  ck_assert_int_eq(S.forks_seen[0], 1); /* the original */
  for (int i = 1; i <= 5; i++) ck_assert_int_eq(S.forks_seen[i], 1);
}
END_TEST

/* The name a fork's copy gets is held already (as after a run of the
 * same dispatch that started it): that copy counts as started, and the
 * others start.  (Only the layer itself may start an instance of such a
 * name, so the test starts it as the layer does; mly_fsm_start refuses
 * it.) */
static int forks_and_kid(void *arg) {
  (void)arg;
  return S.finish >= 2 && S.kids >= 1;
}

START_TEST(fork_name_taken) {
  ck_assert_int_eq(mly_fsm_start(rt, "kid", "f9.0.f1", NULL, NULL, 0, NULL),
                   MLY_EINVAL);
  fsm_rt *f = fsm_rt_get(rt);
  ck_assert_int_eq(fsm_instance_start(f, NULL, fsm_machine_current(f, "kid"),
                                      NULL, NULL, "f9.0.f1", NULL, 0, NULL),
                   0);
  mly_value *ctx = mly_value_map();
  mly_map_set_int(ctx, "forks", 2);
  ck_assert_int_eq(mly_fsm_start(rt, "forks", "f9", ctx, NULL, 0, NULL), 0);
  ck_assert(fan_util_run(rt, forks_and_kid, NULL, 60000));
  settle();
  ck_assert_int_eq(S.kids, 1);
  ck_assert_int_eq(S.forks_seen[0], 1);
  ck_assert_int_eq(S.forks_seen[1], 0); /* its name was taken */
  ck_assert_int_eq(S.forks_seen[2], 1);
}
END_TEST

/* ---- spawn: a dispatch that runs twice starts its kids once ---- */

static int kids_done(void *arg) {
  (void)arg;
  return S.kids >= 3 && S.spawns_asked >= 2;
}

START_TEST(spawn_once) {
  char name[MLY_INSTANCE_NAME_MAX + 1];
  ck_assert_int_eq(mly_fsm_start(rt, "parent", "p1", NULL, name, sizeof name,
                                 NULL), 0);
  ck_assert(fan_util_run(rt, kids_done, NULL, 60000));
  settle();
  ck_assert_int_eq(S.spawns_asked, 2); /* the dispatch ran twice */
  ck_assert_int_eq(S.kids, 3);         /* its kids started once */
  /* named from the dispatch's key: p1/0 -> p1.0.s0 .. p1.0.s2 */
  mly_name_info ni;
  for (int i = 0; i < 3; i++) {
    snprintf(name, sizeof name, "p1.0.s%d", i);
    ck_assert_int_eq(mly_name_lookup(rt, name, &ni), 0);
  }
  ck_assert_int_eq(mly_name_lookup(rt, "p1.0.s3", &ni), MLY_ENOENT);
}
END_TEST

/* spawn with a countdown: the kid starts asleep, durably, for the hour
 * asked (it is not waited for: the runtime closes with it asleep) */
static int kid_named(void *arg) {
  mly_name_info ni;
  return mly_name_lookup(rt, arg, &ni) == 0;
}

START_TEST(spawn_countdown) {
  ck_assert_int_eq(mly_fsm_start(rt, "later", "p2", NULL, NULL, 0, NULL), 0);
  ck_assert(fan_util_run(rt, kid_named, "p2.0.s0", 60000));
  mly_name_info ni;
  ck_assert_int_eq(mly_name_lookup(rt, "p2.0.s0", &ni), 0);
  ck_assert_int_eq(ni.state, MLY_NAME_LIVE);
  mly_fsm_info fi;
  ck_assert_int_eq(mly_fsm_info_get(rt, ni.id, &fi), 0);
  ck_assert_str_eq(fi.phase, "sleep");
  ck_assert_str_eq(fi.sleep_why, "countdown");
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  ck_assert_int_gt(fi.due_ms - now, 3500 * 1000); /* most of the hour */
  ck_assert_int_eq(S.kids, 0);
}
END_TEST

/* ---- randomized, against a model ---- */

static uint64_t rnd_state;
static uint32_t rnd(uint32_t n) {
  rnd_state ^= rnd_state << 13;
  rnd_state ^= rnd_state >> 7;
  rnd_state ^= rnd_state << 17;
  return (uint32_t)(rnd_state % n);
}

/* Random group sizes (multiples of the count, 3), shuffled, into one
 * fan-in grouped by g: the model says how many merges of which group. */
START_TEST(random_groups) {
  rnd_state = 0x9e3779b97f4a7c15ull * (uint64_t)(_i + 1);
  int per[4], n = 0, gs[48];
  for (int g = 0; g < 4; g++) {
    per[g] = (int)rnd(5); /* merges of this group */
    for (int k = 0; k < per[g] * 3; k++) gs[n++] = g;
  }
  if (n == 0) gs[n++] = 0, gs[n++] = 0, gs[n++] = 0, per[0] = 1;
  for (int i = n - 1; i > 0; i--) { /* shuffle */
    int j = (int)rnd((uint32_t)i + 1), t = gs[i];
    gs[i] = gs[j];
    gs[j] = t;
  }
  mly_value *ctx = mly_value_map(), *l = mly_value_array();
  for (int i = 0; i < n; i++) mly_array_push(l, mly_value_int(gs[i]));
  mly_map_set(ctx, "gs", l);
  ck_assert_int_eq(mly_fsm_start(rt, "rgrp", NULL, ctx, NULL, 0, NULL), 0);
  settle();
  int merges = 0, seen_per[4] = {0};
  for (int g = 0; g < 4; g++) merges += per[g];
  ck_assert_int_eq(S.join, merges);
  for (int i = 0; i < S.join; i++) {
    ck_assert_int_eq(S.merged[i], 3);
    ck_assert_int_ge(S.group[i], 0);
    seen_per[S.group[i]]++;
  }
  for (int g = 0; g < 4; g++) ck_assert_int_eq(seen_per[g], per[g]);
  ck_assert_uint_eq(S.vmask, n == 64 ? ~0ull : (1ull << n) - 1);
}
END_TEST

/* A continuation over a random list in random batches, up to two items
 * failing for good, into a fan-in of every replica that tolerates 2
 * (cont) or 1 (strict): merged replicas, sums and the error, as the
 * model says. */
START_TEST(random_continuation) {
  rnd_state = 0xd1b54a32d192ed03ull * (uint64_t)(_i + 1);
  int64_t n = 1 + rnd(30), bs = 1 + rnd(12);
  bool strict = rnd(2);
  S.nfail = (int)rnd(3);
  for (int k = 0; k < S.nfail; k++) S.fail_items[k] = (int)rnd((uint32_t)n);
  int64_t batches = (n + bs - 1) / bs, failed = 0, sum = 0;
  for (int64_t b = 0; b < batches; b++) {
    bool bad = false;
    for (int k = 0; k < S.nfail; k++)
      bad |= S.fail_items[k] / bs == b;
    if (bad) {
      failed++;
      continue;
    }
    for (int64_t v = b * bs; v < n && v < (b + 1) * bs; v++) sum += v;
  }
  mly_value *ctx = mly_value_map();
  mly_map_set_int(ctx, "n", n);
  mly_map_set_int(ctx, "bs", bs);
  ck_assert_int_eq(mly_fsm_start(rt, strict ? "strict" : "cont", NULL, ctx,
                                 NULL, 0, NULL), 0);
  settle();
  if (failed == batches) { /* nothing to merge: no fan-in action */
    ck_assert_int_eq(S.join, 0);
    return;
  }
  ck_assert_int_eq(S.join, 1);
  ck_assert_int_eq(S.merged[0], batches - failed);
  ck_assert_int_eq(S.sum[0], sum);
  ck_assert(S.had_error[0] == (failed > (strict ? 1 : 2)));
  ck_assert_int_eq(S.finish, 1);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("fsm_fan");
  TCase *t = tcase_create("fan");
  tcase_add_checked_fixture(t, setup, teardown);
  tcase_set_timeout(t, 120);
  tcase_add_loop_test(t, continuation_fan_in_10, 0, 4);
  tcase_add_loop_test(t, continuation_fan_in_25, 0, 4);
  tcase_add_test(t, lines_batches);
  tcase_add_test(t, lines_of_a_directory);
  tcase_add_test(t, lines_of_a_missing_file);
  tcase_add_test(t, lines_of_not_a_file);
  tcase_add_test(t, lines_too_long);
  tcase_add_test(t, group_count);
  tcase_add_test(t, count_overflow);
  tcase_add_test(t, group_window);
  tcase_add_test(t, tolerate_within);
  tcase_add_test(t, tolerate_on_failure);
  tcase_add_test(t, tolerate_exceeded);
  tcase_add_test(t, two_fan_ins);
  tcase_add_test(t, fork_counts);
  tcase_add_test(t, fork_name_taken);
  tcase_add_test(t, spawn_once);
  tcase_add_test(t, spawn_countdown);
  tcase_add_loop_test(t, random_groups, 0, 20);
  tcase_add_loop_test(t, random_continuation, 0, 40);
  suite_add_tcase(s, t);
  return s;
}

H_MAIN(suite)
