/*
 * interp.c - the "fsm" type: one durable machine body that runs every
 * YAML machine, one dispatch per step.
 *
 * The body is a loop over what the instance does next (fsm_inst.phase):
 * dispatch the pending event, sleep (a countdown, a retry's backoff),
 * wait for an external event (a wait state), wait for the fan-in code,
 * or end.  Every wait is a named yield point, so the durable layer saves
 * the fsm_inst and the context at each one.  A dispatch (interp_dispatch.c)
 * runs its actions on a working copy of the context; it commits in the
 * step where it ends, or is thrown away and counted as a failed attempt.
 * A dispatch of a machine or transition with `queue:` first waits (point
 * `queue`) for a slot of that queue (interp_dispatch.c).
 * A dispatch that waits for a blocking action or a command yields in the
 * middle with nothing of it saved: after a crash it runs again from its
 * beginning, with the same key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsmrt.h"

#define FSM_POINTS(X)                                                    \
  X(fsmp, step) X(fsmp, sleep) X(fsmp, wait) X(fsmp, blocking) X(fsmp, exec)  \
  X(fsmp, fan_in) X(fsmp, queue)
MLY_POINTS(fsmp, FSM_POINTS);

enum { GO_EXIT = 0, GO_STEP, GO_SLEEP, GO_WAIT, GO_BLOCKING, GO_EXEC,
       GO_FAN_IN, GO_QUEUE };

static int64_t left_ms(int64_t due) {
  if (due < 0) return -1;
  int64_t d = due - fsm_now_ms();
  return d > 0 ? d : 0;
}

/* End the instance: status 0 (a final state) or < 0 (failed). */
void fsm_end(fsm_inst *in, int status) {
  in->phase = FSM_PH_DONE;
  in->status = status;
}

/* The instance's run record, with its definition resolved (after a
 * restart the first step may resume at any wait: each makes it). */
fsm_run *fsm_run_for(fsm_rt *f, mly_machine *m, fsm_inst *in) {
  fsm_run *r = fsm_run_make(f, mly_self(m));
  if (r == NULL) {
    fsm_log(f, "instance %s: out of memory", mly_self_name(m));
    fsm_end(in, MLY_ENOMEM);
    return NULL;
  }
  if (r->def == NULL && in->phase != FSM_PH_DONE) {
    r->def = fsm_def_get(f, in->hash);
    if (r->def == NULL) {
      char hex[2 * FSM_HASH_LEN + 1];
      fsm_hash_hex(in->hash, hex);
      fsm_log(f, "instance %s: its definition %s is not stored (was "
                 "%s%s removed?): it ends, failed",
              mly_self_name(m), hex, FSM_DEF_PREFIX, hex);
      fsm_end(in, MLY_ENOENT);
    } else if (in->state >= r->def->nstates) {
      fsm_log(f, "instance %s: state index %u is not in machine %s",
              mly_self_name(m), in->state, r->def->name);
      r->def = NULL;
      fsm_end(in, MLY_EBADMSG);
    }
  }
  return r->def ? r : NULL;
}

static int advance(fsm_rt *f, mly_machine *m, fsm_inst *in) {
  fsm_run *r = fsm_run_for(f, m, in);
  if (r == NULL) return GO_EXIT;
  if (mly_shutdown_requested(m) && in->phase != FSM_PH_DONE) {
    fsm_log(f, "instance %s: stopped by request", mly_self_name(m));
    fsm_end(in, MLY_ECANCELED);
  }
  for (;;) {
    /* a long sleep or wait keeps no memory of its own: the record is
       made again when it ends */
    bool idle = !r->in_dispatch && r->async == FSM_ASYNC_NONE && r->fan == NULL;
    switch (in->phase) {
    case FSM_PH_DONE: return GO_EXIT;
    case FSM_PH_SLEEP:
      if (idle) fsm_run_drop(f, r);
      return GO_SLEEP;
    case FSM_PH_WAIT:
      if (idle) fsm_run_drop(f, r);
      return GO_WAIT;
    case FSM_PH_FAN_IN: return GO_FAN_IN;
    case FSM_PH_DISPATCH: break;
    default:
      fsm_log(f, "instance %s: phase %u unknown", mly_self_name(m), in->phase);
      fsm_end(in, MLY_EBADMSG);
      return GO_EXIT;
    }
    if ((r->async == FSM_ASYNC_BLOCKING || r->async == FSM_ASYNC_ACTION) &&
        !r->job_done)
      return GO_BLOCKING;
    if (r->async == FSM_ASYNC_EXEC && !r->job_done) return GO_EXEC;
    switch (fsm_dispatch(f, m, in, r)) {
    case FSM_WALK_BLOCKING: return GO_BLOCKING;
    case FSM_WALK_EXEC: return GO_EXEC;
    case FSM_WALK_QUEUE: return GO_QUEUE;
    default: break; /* committed or failed: phase changed */
    }
    /* the next dispatch gets its own step (its own record) */
    if (in->phase == FSM_PH_DISPATCH) return GO_STEP;
  }
}

/* A sleep ended: a retry, or the transition after its countdown. */
static void slept(fsm_rt *f, mly_machine *m, fsm_inst *in) {
  if (in->phase != FSM_PH_SLEEP) return;
  uint32_t why = in->why;
  in->phase = FSM_PH_DISPATCH;
  in->why = FSM_WHY_NONE;
  if (why == FSM_WHY_COUNTDOWN) fsm_route_after_countdown(f, m, in);
}

/* A wait state's wait ended: an event, its timeout, or a shutdown. */
static void waited(fsm_rt *f, mly_machine *m, fsm_inst *in) {
  if (in->phase != FSM_PH_WAIT) return;
  fsm_run *r = fsm_run_for(f, m, in);
  if (r == NULL) return;
  const fsm_state *st = &r->def->states[in->state];
  const mly_event *ev = mly_current_event(m);
  const char *name;
  if (ev == NULL) {
    if (!mly_timed_out(m)) return; /* a shutdown: advance() ends it */
    name = st->wait_timeout_event ? st->wait_timeout_event : "timeout";
  } else {
    name = mly_event_name(f->rt, ev->id);
    if (name != NULL && strcmp(name, FSM_EV_MIGRATE) == 0) {
      fsm_migrate_take(f, m, in);
      return; /* and waits again, for what is left of the timeout */
    }
    bool listed = false;
    for (size_t i = 0; name && i < st->nwait_events; i++)
      if (strcmp(st->wait_events[i], name) == 0) listed = true;
    if (!listed) {
      fsm_log(f, "instance %s: event %s ignored: state %s waits for other "
                 "events",
              mly_self_name(m), name ? name : "(unnamed)", st->name);
      return; /* waits again, for what is left of the timeout */
    }
    mly_value *p = mly_event_take_payload(m);
    if (mly_value_type(p) == MLY_V_MAP) {
      mly_value *ctx = mly_context(m);
      if (ctx == NULL) {
        mly_context_set(m, mly_value_map());
        ctx = mly_context(m);
      }
      for (size_t i = 0; ctx && i < mly_value_len(p); i++) {
        const char *k;
        mly_value *v;
        mly_map_at(p, i, &k, &v);
        mly_map_set(ctx, k, mly_value_copy(v));
      }
    }
    mly_value_free(p);
  }
  fsm_take_event(f, m, in, r->def, name);
}

/* The blocking job is over, the missing action is registered, or
 * (after a crash) there is none: go on. */
static bool job_ready(fsm_rt *f, mly_machine *m) {
  fsm_run *r = fsm_run_get(f, mly_self(m));
  return r == NULL ||
         (r->async != FSM_ASYNC_BLOCKING && r->async != FSM_ASYNC_ACTION) ||
         r->job_done;
}

static int64_t exec_left(fsm_rt *f, mly_machine *m) {
  fsm_run *r = fsm_run_get(f, mly_self(m));
  return r ? fsm_exec_left(r) : 0;
}

static void exec_woke(fsm_rt *f, mly_machine *m) {
  fsm_run *r = fsm_run_get(f, mly_self(m));
  if (r == NULL || r->async != FSM_ASYNC_EXEC) return; /* recovered: rerun */
  if (fsm_exec_event(f, m, r, mly_current_event(m)))
    r->job_done = true;
}

static int fsm_run_body(mly_machine *m, void *data) {
  fsm_inst *in = data;
  fsm_rt *f = fsm_rt_get(mly_machine_runtime(m));
  int go;
  MLY_BEGIN(m);
  for (;;) {
    go = advance(f, m, in);
    if (go == GO_EXIT) MLY_EXIT(m, in->status);
    if (go == GO_STEP) {
      MLY_YIELD_AT(m, fsmp_step);
    } else if (go == GO_SLEEP) {
      /* a migration (migrate.c) may come meanwhile; other events stay
         queued */
      MLY_AWAIT_NAME_AT(m, fsmp_sleep, FSM_EV_MIGRATE, left_ms(in->due_ms));
      if (mly_current_event(m) != NULL) fsm_migrate_take(f, m, in);
      else if (mly_timed_out(m)) slept(f, m, in);
    } else if (go == GO_WAIT) {
      MLY_AWAIT_AT(m, fsmp_wait, MLY_EV_ANY, left_ms(in->due_ms));
      waited(f, m, in);
    } else if (go == GO_BLOCKING) {
      MLY_WAIT_UNTIL_AT(m, fsmp_blocking, job_ready(f, m));
    } else if (go == GO_QUEUE) {
      MLY_WAIT_UNTIL_AT(m, fsmp_queue, fsm_slot_ready(f, m));
    } else if (go == GO_EXEC) {
      MLY_AWAIT_AT(m, fsmp_exec, MLY_EV_PROCESS_EXIT, exec_left(f, m));
      exec_woke(f, m);
    } else {
      MLY_WAIT_UNTIL_AT(m, fsmp_fan_in,
                        in->phase != FSM_PH_FAN_IN ||
                            fsm_fan_in_ready(f, m, in));
    }
  }
  MLY_END(m);
}

static void fsm_fini(mly_machine *m, void *data) {
  (void)data;
  fsm_rt *f = fsm_rt_get(mly_machine_runtime(m));
  fsm_run *r = f ? fsm_run_get(f, mly_self(m)) : NULL;
  if (r != NULL) fsm_run_drop(f, r);
}

const mly_type_def fsm_type_def = {
    .name = FSM_TYPE_NAME,
    .run = fsm_run_body,
    MLY_TYPE_POINTS(fsmp),
    .data_size = sizeof(fsm_inst),
    .version = 1,
    .flags = MLY_TYPE_DURABLE,
    .fini = fsm_fini,
};

/* The key into r->key, without printf: the name is copied once per
 * instance (it never changes), the number on each dispatch. */
void fsm_key_fast(const mly_machine *m, const fsm_inst *in, fsm_run *r) {
  if (r->key_name_len == 0) {
    const char *name = mly_self_name(m);
    if (name == NULL || strlen(name) > MLY_INSTANCE_NAME_MAX) {
      fsm_key(m, in, r->key, sizeof r->key);
      return;
    }
    r->key_name_len = strlen(name) + 1;
    memcpy(r->key, name, r->key_name_len - 1);
    r->key[r->key_name_len - 1] = '/';
  }
  char digits[24];
  int n = 0;
  uint64_t v = in->seq;
  do {
    digits[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  char *p = r->key + r->key_name_len;
  while (n > 0) *p++ = digits[--n];
  *p = '\0';
}

void fsm_key(const mly_machine *m, const fsm_inst *in, char *buf,
             size_t len) {
  const char *name = mly_self_name(m);
  if (name != NULL)
    snprintf(buf, len, "%s/%llu", name, (unsigned long long)in->seq);
  else
    snprintf(buf, len, "%llu/%llu", (unsigned long long)mly_self(m),
             (unsigned long long)in->seq);
}
