/*
 * fsm_fan_util.h - what the fan-out/fan-in tests, the crash workload and
 * the benchmark share: load YAML text into a runtime, run the loop until
 * a condition holds, read numbers out of contexts.
 */
#ifndef FSM_FAN_UTIL_H
#define FSM_FAN_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mealy.h"

static void fan_util_err(const mly_conf_msg *msg, void *arg) {
  (void)arg;
  fprintf(stderr, "%s:%u:%u: %s\n", msg->file, msg->line, msg->col,
          msg->text);
}

/* Load `text` (named `path` in messages) and make its machines startable
 * on rt; exits on any error (a test's machine text is fixed). */
static inline void fan_util_load(mly_runtime *rt, const char *path,
                                 const char *text) {
  mly_fsm_load_options o = {.on_error = fan_util_err};
  mly_fsm_set *set = NULL;
  int rc = mly_fsm_load_text(path, text, strlen(text), &o, &set);
  if (rc == 0) rc = mly_fsm_add(rt, set);
  mly_fsm_set_free(set);
  if (rc < 0) {
    fprintf(stderr, "%s: cannot load: %s\n", path, mly_strerror(rc));
    exit(2);
  }
}

static void fan_util_tick(uv_timer_t *t) { (void)t; }

/* Turn the loop until done(arg) or `turns` turns went by; a 1 ms tick
 * keeps a turn from blocking for good when nothing else is due.
 * Returns done(arg). */
static inline int fan_util_run(mly_runtime *rt, int (*done)(void *),
                               void *arg, long turns) {
  uv_loop_t *loop = mly_runtime_loop(rt);
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, fan_util_tick, 1, 1);
  for (long i = 0; i < turns && !done(arg); i++) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return done(arg);
}

static int fan_util_count_live(const mly_info *i, void *arg) {
  if (strcmp(i->type, "fsm") == 0 || strcmp(i->type, "fsm-fanin") == 0)
    (*(int *)arg)++;
  return 0;
}

/* done() for fan_util_run: no YAML instance and no collector is left
 * (arg: the runtime). */
static inline int fan_util_all_ended(void *arg) {
  int n = 0;
  mly_foreach(arg, fan_util_count_live, &n);
  return n == 0;
}

static inline int64_t fan_util_int(const mly_value *map, const char *key) {
  int64_t v = -1;
  if (mly_map_get_int(map, key, &v) < 0) return -1;
  return v;
}

#endif
