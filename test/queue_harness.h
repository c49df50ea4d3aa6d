/*
 * queue_harness.h - what the queue suites share: a loop run until a
 * condition holds (bounded, never timed), a recording task function whose
 * outcomes a test scripts, payloads, counts of tasks by state.
 */
#ifndef MLY_TEST_QUEUE_HARNESS_H
#define MLY_TEST_QUEUE_HARNESS_H

#include "harness.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

static mly_runtime *rt;

/* Q_UNTIL: RUN_UNTIL (harness.h) with the recording function's "later"
 * reports made at each tick (q_tick, set as h_tick_hook). */
#define Q_UNTIL(rt, cond, max)                                             \
  do {                                                                     \
    h_tick_hook = q_tick;                                                  \
    RUN_UNTIL(rt, cond, max);                                              \
  } while (0)

/* ---- a recording function: runs, and reports what it is told ---- */

#define MAXREC 4096
typedef struct rec {
  int runs;
  int order[MAXREC];   /* payload "n" of each run, in run order */
  int running, max_running;
  mly_task *pending[MAXREC];
  int npending;
  bool async;          /* report at the next tick, not at once */
  mly_task_outcome script[16]; /* outcome of run i (then OK) */
  int nscript;
  /* concurrency key: running per value ("k" in the payload, 0..7) */
  int krun[8], kmax[8];
  uint64_t start_us[MAXREC];
  bool blocking_thread_seen;
  pthread_t loop_thread;
} rec;

static rec R;

static void q_tick(void) {
  if (!R.async) return;
  int n = R.npending;
  R.npending = 0;
  for (int i = 0; i < n; i++) {
    mly_task *tk = R.pending[i];
    int64_t k = -1;
    mly_map_get_int(mly_task_payload(tk), "k", &k);
    if (k >= 0) R.krun[k]--;
    R.running--;
    mly_task_done(tk, MLY_TASK_OK, NULL);
  }
}

static mly_task_outcome next_outcome(void) {
  int i = R.runs - 1;
  return i < R.nscript ? R.script[i] : MLY_TASK_OK;
}

static void rec_fn(mly_task *t, void *arg) {
  (void)arg;
  int64_t n = -1, k = -1;
  mly_map_get_int(mly_task_payload(t), "n", &n);
  mly_map_get_int(mly_task_payload(t), "k", &k);
  if (R.runs < MAXREC) {
    R.order[R.runs] = (int)n;
    R.start_us[R.runs] = uv_hrtime() / 1000;
  }
  R.runs++;
  if (R.async) {
    R.running++;
    if (R.running > R.max_running) R.max_running = R.running;
    if (k >= 0) {
      R.krun[k]++;
      if (R.krun[k] > R.kmax[k]) R.kmax[k] = R.krun[k];
    }
    R.pending[R.npending++] = t;
    return;
  }
  mly_task_done(t, next_outcome(), "scripted");
}

static inline mly_value *pl(int n, int k) {
  mly_value *v = mly_value_map();
  mly_map_set_int(v, "n", n);
  if (k >= 0) mly_map_set_int(v, "k", k);
  return v;
}

static inline int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count_cb(const mly_task_info *t, void *a) {
  (void)t;
  (*(int *)a)++;
  return 0;
}

static inline int count_tasks(unsigned states) {
  int n = 0;
  ck_assert_int_eq(mly_task_foreach(rt, NULL, states, count_cb, &n), 0);
  return n;
}

#endif
