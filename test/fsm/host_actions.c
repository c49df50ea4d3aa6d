/*
 * host_actions.c - the actions library of the `mealy fsm` CLI tests, loaded
 * by `mealy fsm run --actions` (test_fsm_host.sh).
 *
 * Count: adds 1 to the context's "n"; in the state "start" it names the
 * next event, "ok".
 */
#include <string.h>

#include <mealy.h>

static int count(mly_action_call *call, void *arg) {
  (void)arg;
  mly_value *ctx = mly_action_context(call);
  int64_t n = 0;
  mly_map_get_int(ctx, "n", &n);
  mly_map_set_int(ctx, "n", n + 1);
  if (strcmp(mly_action_state(call), "start") == 0)
    return mly_action_event(call, "ok");
  return 0;
}

int mly_actions_init(mly_runtime *rt);
int mly_actions_init(mly_runtime *rt) {
  return mly_action_register(rt, "Count", count, NULL, 0);
}
