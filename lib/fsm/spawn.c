/*
 * spawn.c - mly_action_spawn: an action starts instances of another
 * machine (Fantasm's spawn), one per context, after an optional
 * countdown.
 *
 * As with fork, the action records the request and fsm_spawn_apply
 * starts them in the step that commits the dispatch.  Instance j (0, 1,
 * ... over every context of every spawn of the dispatch) is named
 * "NAME.SEQ.s<j>" from the dispatch's key: the same dispatch run twice
 * starts each once (MLY_EEXIST is taken as "started before").  With a
 * countdown the new instance starts asleep (durable, FSM_WHY_COUNTDOWN)
 * and runs its initial dispatch when it ends.
 */
#include "fan.h"

#include <string.h>

int mly_action_spawn(mly_action_call *call, const char *machine,
                     mly_value *contexts, int64_t countdown_ms) {
  int rc = MLY_EINVAL;
  mly_value *req = NULL;
  if (call == NULL || machine == NULL || *machine == '\0' ||
      countdown_ms < 0 ||
      (contexts && mly_value_type(contexts) != MLY_V_ARRAY))
    goto fail;
  for (size_t i = 0; i < mly_value_len(contexts); i++)
    if (mly_value_type(mly_array_at(contexts, i)) != MLY_V_MAP) goto fail;
  rc = MLY_ENOMEM;
  if (contexts == NULL && (contexts = mly_value_array()) == NULL) goto fail;
  if (call->spawns == NULL && (call->spawns = mly_value_array()) == NULL)
    goto fail;
  if ((req = mly_value_map()) == NULL ||
      mly_map_set_str(req, "machine", machine) < 0 ||
      mly_map_set_int(req, "countdown", countdown_ms) < 0)
    goto fail;
  rc = mly_map_set(req, "contexts", contexts);
  contexts = NULL;
  if (rc < 0) goto fail;
  return mly_array_push(call->spawns, req);
fail:
  mly_value_free(req);
  mly_value_free(contexts);
  return rc;
}

int fsm_spawn_apply(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                    fsm_run *r) {
  (void)m;
  (void)in;
  const mly_value *spawns = r->call.spawns;
  uint64_t j = 0;
  for (size_t i = 0; i < mly_value_len(spawns); i++) {
    const mly_value *req = mly_array_at(spawns, i);
    const char *machine;
    int64_t cd = 0;
    if (mly_map_get_str(req, "machine", &machine) < 0) return MLY_EINVAL;
    (void)mly_map_get_int(req, "countdown", &cd);
    const fsm_machine *def = fsm_machine_current(f, machine);
    if (def == NULL) {
      fsm_log(f, "%s: spawn of machine %s, which is not loaded",
              r->call.key, machine);
      return MLY_ENOENT;
    }
    const mly_value *ctxs = mly_map_get(req, "contexts");
    for (size_t k = 0; k < mly_value_len(ctxs); k++, j++) {
      char name[MLY_INSTANCE_NAME_MAX + 1];
      int rc = fsm_fan_child_name(r->call.key, ".s", j, name, sizeof name);
      if (rc < 0) return rc;
      mly_value *ctx = mly_value_copy(mly_array_at(ctxs, k));
      if (ctx == NULL) return MLY_ENOMEM;
      fsm_inst p, *pp = NULL;
      if (cd > 0) {
        memset(&p, 0, sizeof p);
        memcpy(p.hash, def->hash, FSM_HASH_LEN);
        p.state = def->initial; /* the initial dispatch, after it */
        p.trans = FSM_NO_STATE;
        p.flags = FSM_IF_ENTER;
        p.phase = FSM_PH_SLEEP;
        p.why = FSM_WHY_COUNTDOWN;
        p.countdown_ms = cd;
        p.due_ms = fsm_now_ms() + cd;
        p.first_try_ms = p.due_ms;
        pp = &p;
      }
      if ((rc = fsm_fan_start(f, def, pp, ctx, name, NULL)) < 0) return rc;
    }
  }
  return 0;
}
