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

#include "harness.h"
#include "mealy.h"

/* Pieces of the YAML text the fan tests' machines repeat: a machine's
 * head; a first state "start" calling `action`, on "go" to `to`; a
 * continuation state "work" calling `action` (`more`: further keys),
 * on "done" to "join". */
#define FAN_Y_MACHINE(name) "  - name: " name "\n    states:\n"
#define FAN_Y_START(action, to)             \
  "      - name: start\n"                   \
  "        initial: True\n"                 \
  "        action: " action "\n"             \
  "        transitions:\n"                  \
  "          - {event: go, to: " to "}\n"
#define FAN_Y_WORK(action, more)            \
  "      - name: work\n"                    \
  "        continuation: True\n"            \
  "        action: " action "\n"             \
  more                                      \
  "        transitions:\n"                  \
  "          - {event: done, to: join}\n"

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

/* Turn the loop until done(arg) or `turns` turns went by (H_UNTIL with
 * a 1 ms tick).  Returns done(arg). */
static inline int fan_util_run(mly_runtime *rt, int (*done)(void *),
                               void *arg, long turns) {
  return H_UNTIL(rt, done(arg), turns, 1);
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
