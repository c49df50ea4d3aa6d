/*
 * fanstub.c - the fork, spawn, continuation and fan-in hooks of the
 * interpreter (interp.h), until their real code lands (fork.c, spawn.c,
 * continuation.c, fan_in.c replace this file): each answers MLY_ENOSYS,
 * and the interpreter fails the dispatch for good with a sentence
 * saying what this build lacks.
 */
#include "fsmrt.h"

int fsm_fork_apply(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                   fsm_run *r) {
  (void)f, (void)m, (void)in, (void)r;
  return MLY_ENOSYS;
}

int fsm_spawn_apply(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                    fsm_run *r) {
  (void)f, (void)m, (void)in, (void)r;
  return MLY_ENOSYS;
}

int fsm_continuation_run(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                         fsm_run *r, const fsm_state *st) {
  (void)f, (void)m, (void)in, (void)r, (void)st;
  return MLY_ENOSYS;
}

int fsm_fan_in_enter(fsm_rt *f, mly_machine *m, fsm_inst *in,
                     const fsm_state *to) {
  (void)f, (void)m, (void)in, (void)to;
  return MLY_ENOSYS;
}

bool fsm_fan_in_ready(fsm_rt *f, mly_machine *m, fsm_inst *in) {
  (void)f, (void)m, (void)in;
  return true;
}

int fsm_fan_attach(fsm_rt *f) {
  (void)f;
  return 0;
}

int fsm_fan_failed(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                   const mly_value *ctx, const char *error) {
  (void)f, (void)m, (void)in, (void)ctx, (void)error;
  return 0;
}
