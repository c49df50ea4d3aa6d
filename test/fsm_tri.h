/*
 * fsm_tri.h - the 3-state machine that the fsm suite counts and
 * bench_fsm times: "tri" goes a -> b -> c -> a ..., its action Step adds
 * one to the context's "n" each dispatch and says "done" at the target,
 * then the final state z runs Fin.  One copy, so the byte count the
 * suite asserts and the figures the benchmark prints are of the same
 * machine.
 */
#ifndef MLY_TEST_FSM_TRI_H
#define MLY_TEST_FSM_TRI_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mealy.h"

static const char tri_yaml[] =
    "state_machines:\n"
    "- name: tri\n"
    "  states:\n"
    "  - {name: a, initial: True, action: Step,\n"
    "     transitions: [{event: next, to: b}, {event: done, to: z}]}\n"
    "  - {name: b, action: Step,\n"
    "     transitions: [{event: next, to: c}, {event: done, to: z}]}\n"
    "  - {name: c, action: Step,\n"
    "     transitions: [{event: next, to: a}, {event: done, to: z}]}\n"
    "  - {name: z, final: True, entry: Fin}\n";

/* What the actions count (their arg): Step calls, and instances that
 * reached z. */
typedef struct tri_count {
  int64_t target; /* Step dispatches per instance */
  uint64_t steps, done;
} tri_count;

static inline int tri_step(mly_action_call *c, void *arg) {
  tri_count *tc = arg;
  mly_value *ctx = mly_action_context(c);
  int64_t n = 0;
  mly_map_get_int(ctx, "n", &n);
  mly_map_set_int(ctx, "n", ++n);
  tc->steps++;
  return mly_action_event(c, n >= tc->target ? "done" : "next");
}

static inline int tri_fin(mly_action_call *c, void *arg) {
  (void)c;
  ((tri_count *)arg)->done++;
  return 0;
}

/* Register Step and Fin on rt, counting into tc. */
static inline int tri_register(mly_runtime *rt, tri_count *tc) {
  int rc = mly_action_register(rt, "Step", tri_step, tc, 0);
  if (rc == 0) rc = mly_action_register(rt, "Fin", tri_fin, tc, 0);
  return rc;
}

/* Start n instances "PREFIX-i" of tri (loaded before), each with "n" = 0
 * and a string "pad" of pad_len bytes in its context. */
static inline int tri_start(mly_runtime *rt, const char *prefix, uint32_t n,
                            size_t pad_len) {
  char *pad = malloc(pad_len + 1);
  if (pad == NULL) return MLY_ENOMEM;
  memset(pad, 'x', pad_len);
  pad[pad_len] = '\0';
  int rc = 0;
  for (uint32_t i = 0; i < n && rc == 0; i++) {
    mly_value *c = mly_value_map();
    mly_map_set_int(c, "n", 0);
    mly_map_set_str(c, "pad", pad);
    char nm[64];
    snprintf(nm, sizeof nm, "%s-%u", prefix, i);
    rc = mly_fsm_start(rt, "tri", nm, c, NULL, 0, NULL);
  }
  free(pad);
  return rc < 0 ? rc : 0;
}

#endif
