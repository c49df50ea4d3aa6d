/*
 * fork.c - mly_action_fork: an action asks for copies of its instance,
 * each with its own data and the same next event (Fantasm's fork).
 *
 * The action only records the request in its call (thread-safe: a
 * blocking action may fork).  After the whole dispatch succeeded, in the
 * step that commits it, fsm_fork_apply starts copy i (1..K) with the
 * committed context, the fork's data merged over it and "fork": i,
 * named "NAME.SEQ.f<i>" from the dispatch's key: a dispatch that runs
 * again starts no copy twice (MLY_EEXIST), and a step lost to a crash
 * loses its copies with it (they are in its record).  A copy whose next
 * event enters a fan-in state (with no countdown) does not need to
 * exist: it arrives there at once, from the forking step (fanin.c); a
 * copy whose next transition has a countdown starts asleep for its own
 * pick of it.  The forking instance goes
 * on too: K forks make K + 1 instances.  Copies leave any continuation
 * lineage behind (a fork is not a replica of a continuation).
 */
#include "fan.h"

#include <string.h>

int mly_action_fork(mly_action_call *call, mly_value *data) {
  if (call == NULL || (data && mly_value_type(data) != MLY_V_MAP)) {
    mly_value_free(data);
    return MLY_EINVAL;
  }
  if (data == NULL && (data = mly_value_map()) == NULL) return MLY_ENOMEM;
  if (call->forks == NULL && (call->forks = mly_value_array()) == NULL) {
    mly_value_free(data);
    return MLY_ENOMEM;
  }
  return mly_array_push(call->forks, data);
}

/* ctx (a copy) with the map data merged over it. */
static int merge_over(mly_value *ctx, const mly_value *data) {
  for (size_t i = 0; i < mly_value_len(data); i++) {
    const char *k;
    mly_value *v;
    if (mly_map_at(data, i, &k, &v) < 0) return MLY_EINVAL;
    mly_value *c = mly_value_copy(v);
    if (c == NULL || mly_map_set(ctx, k, c) < 0) return MLY_ENOMEM;
  }
  return 0;
}

int fsm_fork_apply(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                   fsm_run *r) {
  const mly_value *forks = r->call.forks;
  const fsm_machine *def = r->def;
  const fsm_state *fan = fsm_fan_next_fan_in(def, in);
  const fsm_transition *t = NULL;
  if (in->phase == FSM_PH_DISPATCH && in->state < def->nstates &&
      in->trans < def->states[in->state].ntrans)
    t = &def->states[in->state].trans[in->trans];
  int rc = 0;
  for (size_t i = 0; i < mly_value_len(forks) && rc == 0; i++) {
    /* the context this dispatch commits (not yet the instance's) */
    mly_value *ctx = r->call.context ? mly_value_copy(r->call.context)
                                     : mly_value_map();
    if (ctx == NULL) return MLY_ENOMEM;
    mly_map_del(ctx, FSM_KEY_FAN);
    mly_map_del(ctx, FSM_KEY_TOKEN);
    if ((rc = merge_over(ctx, mly_array_at(forks, i))) == 0)
      rc = mly_map_set_uint(ctx, FSM_KEY_FORK, i + 1);
    /* each copy picks its own countdown, as a transition would */
    int64_t cd = t ? fsm_countdown_pick(f, &t->countdown) : -1;
    if (rc == 0 && fan && cd < 0) {
      rc = fsm_fan_arrive(f, m, in, fan, ctx);
      mly_value_free(ctx);
      continue;
    }
    if (rc < 0) {
      mly_value_free(ctx);
      break;
    }
    fsm_inst p = *in;
    p.flags |= FSM_IF_REPLICA;
    p.replica = (uint32_t)(i + 1);
    p.origin = mly_self(m);
    p.attempt = 0;
    p.first_try_ms = fsm_now_ms();
    if (cd >= 0) { /* fsm_route_after_countdown runs when it ends */
      p.phase = FSM_PH_SLEEP;
      p.why = FSM_WHY_COUNTDOWN;
      p.countdown_ms = cd;
      p.due_ms = fsm_now_ms() + cd;
    }
    char name[MLY_INSTANCE_NAME_MAX + 1];
    rc = fsm_fan_child_name(r->call.key, ".f", i + 1, name, sizeof name);
    if (rc < 0) {
      mly_value_free(ctx);
      break;
    }
    rc = fsm_fan_start(f, def, &p, ctx, name, NULL);
  }
  return rc;
}
