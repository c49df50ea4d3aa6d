/*
 * harness.h - what the check suites share: a runtime on its own loop,
 * run until nothing is left to do or until a condition holds (H_UNTIL,
 * which the benchmarks and crash workloads use too: it asserts
 * nothing), a state directory of its own with a journal on it, and a
 * main() that runs one suite.
 */
#ifndef MLY_TEST_HARNESS_H
#define MLY_TEST_HARNESS_H

#include <check.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "mealy.h"
#include "store_param.h"

static inline mly_runtime *h_runtime(void) {
  mly_runtime *rt = NULL;
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, NULL), 0);
  return rt;
}

static inline mly_type *h_type(mly_runtime *rt, const mly_type_def *def) {
  mly_type *t = NULL;
  ck_assert_int_eq(mly_type_register(rt, def, &t), 0);
  return t;
}

static inline mly_id h_spawn(mly_runtime *rt, mly_type *t, const void *arg,
                             size_t len) {
  mly_id id = 0;
  ck_assert_int_eq(mly_spawn(rt, t, arg, len, &id), 0);
  ck_assert_uint_ne(id, 0);
  return id;
}

/* Run the loop until no handle keeps it alive (all instances ended). */
static inline void h_run(mly_runtime *rt) {
  ck_assert_int_eq(mly_runtime_run(rt), 0);
}

/* Run one non-blocking turn of the loop. */
static inline void h_turn(mly_runtime *rt) {
  uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
}

/* Run n non-blocking turns of the loop (what is due now, and what that
 * made due: a count, never a time). */
static inline void h_turns(mly_runtime *rt, int n) {
  for (int i = 0; i < n; i++) uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
}

static inline uint64_t h_stat_live(mly_runtime *rt) {
  mly_stats st;
  mly_runtime_stats(rt, &st);
  return st.live;
}

/* a suite may set it: called at every tick of H_UNTIL (e.g. to finish
 * work that reports "later") */
static void (*h_tick_hook)(void) __attribute__((unused));
static inline void h_tick_cb(uv_timer_t *t) {
  (void)t;
  if (h_tick_hook) h_tick_hook();
}

/* H_UNTIL(rt, cond, max, tick_ms): turns of rt's loop until cond holds,
 * at most max of them; its value is whether cond holds.  Each turn waits
 * for something to happen (a commit on the threadpool, a post), at most
 * tick_ms of a timer that also keeps the loop polling: a machine that is
 * stuck fails the caller instead of hanging it.  It asserts nothing, so
 * the benchmarks and crash workloads use it too (GNU statement
 * expression: cond is an expression, evaluated before every turn). */
#define H_UNTIL(rt, cond, max, tick_ms)                                  \
  ({                                                                     \
    uv_loop_t *l_ = mly_runtime_loop(rt);                                \
    uv_timer_t t_;                                                       \
    uv_timer_init(l_, &t_);                                              \
    uv_timer_start(&t_, h_tick_cb, (tick_ms), (tick_ms));                \
    for (long long i_ = 0; i_ < (max) && !(cond); i_++)                  \
      uv_run(l_, UV_RUN_ONCE);                                           \
    uv_close((uv_handle_t *)&t_, NULL);                                  \
    uv_run(l_, UV_RUN_NOWAIT);                                           \
    (bool)(cond);                                                        \
  })

/* H_UNTIL with a 2 ms tick that fails the test if cond is not reached. */
#define RUN_UNTIL(rt, cond, max) \
  ck_assert_msg(H_UNTIL(rt, cond, max, 2), "not reached: %s", #cond)

/* A state directory of its own, and its removal afterwards. */
static inline int h_rm_one(const char *p, const struct stat *st, int flag,
                           struct FTW *f) {
  (void)st;
  (void)flag;
  (void)f;
  return remove(p);
}
static inline void h_rmtree(const char *dir) {
  nftw(dir, h_rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* Make a fresh directory /tmp/PREFIX.XXXXXX; its path in buf (n bytes). */
static inline void h_tmpdir(char *buf, size_t n, const char *prefix) {
  ck_assert_int_lt(snprintf(buf, n, "/tmp/%s.XXXXXX", prefix), (int)n);
  ck_assert_msg(mkdtemp(buf) != NULL, "mkdtemp %s", buf);
}

/* Open rt's durable store (its actions, queues, types registered
 * before) on the store MLY_TEST_STORE names (store_param.h); a refusal
 * fails the test with the store's reason. */
static inline void h_journal_open(mly_runtime *rt,
                                  const mly_journal_options *jo) {
  char err[256] = "";
  int rc = h_durable_open(rt, jo, err, sizeof err);
  ck_assert_msg(rc == 0, "journal open %s: %s", jo->dir, err);
}

/* A test of the journal's own figures or files (store_param.h, "Journal
 * only"): added on the journal; on another store listed as "journal
 * only: NAME" and counted, not run.  For loop tests, [s, e). */
static inline void h_journal_only_add(TCase *tc, const TTest *t, int s,
                                      int e) {
  if (h_on_journal()) {
    _tcase_add_test(tc, t, 0, 0, s, e);
    return;
  }
  h_journal_only_n++;
  h_journal_only_note(t->name, NULL);
}
#define h_tcase_add_journal_only(tc, t) h_journal_only_add(tc, t, 0, 1)
#define h_tcase_add_loop_journal_only(tc, t, s, e) h_journal_only_add(tc, t, s, e)

#define H_MAIN(suite_fn)                                                \
  int main(void) {                                                      \
    SRunner *sr = srunner_create(suite_fn());                           \
    srunner_run_all(sr, CK_NORMAL);                                     \
    int failed = srunner_ntests_failed(sr);                             \
    srunner_free(sr);                                                   \
    failed += h_journal_only_summary();                                 \
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;                   \
  }

#endif
