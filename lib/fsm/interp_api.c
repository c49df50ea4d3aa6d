/*
 * interp_api.c - starting YAML machine instances, sending them events by
 * name, and looking at one (mly_fsm_start, mly_fsm_send,
 * mly_fsm_info_get).
 *
 * Every instance has a unique name (given, or MACHINE-YYYYmmddHHMMSS-
 * xxxxxx): it is the first half of the idempotency key, and what events
 * are sent to.  Names and their tombstones are the durable layer's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsmrt.h"

static void gen_name(fsm_rt *f, const char *machine, char *buf, size_t len) {
  static const char abc[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  time_t t = (time_t)(fsm_now_ms() / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
  char rnd[7];
  for (int i = 0; i < 6; i++) rnd[i] = abc[fsm_rand(f) % 36];
  rnd[6] = '\0';
  snprintf(buf, len, "%s-%s-%s", machine, stamp, rnd);
}

/* The names the layer derives for what it starts (fork.c, spawn.c,
 * continuation.c, fanin.c): "KEY.SEQ.fN", ".sN", ".cN" (or "h<16 hex>"
 * for a long key), "fanin:...", and "fsm-def-<hash>".  A user instance
 * holding one would take its place: the copy or replica would never
 * start, and a counted fan-in would wait for it forever. */
static bool name_is_derived(const char *n) {
  if (strncmp(n, "fanin:", 6) == 0 || strncmp(n, "fsm-def-", 8) == 0)
    return true;
  size_t len = strlen(n), i = len;
  while (i > 0 && n[i - 1] >= '0' && n[i - 1] <= '9') i--;
  if (i == len || i < 2 || n[i - 2] != '.' || strchr("fsc", n[i - 1]) == NULL ||
      n[i - 1] == '\0')
    return false;
  size_t dot = i - 2;
  if (dot == 17 && n[0] == 'h') {
    bool hex = true;
    for (size_t k = 1; k < 17; k++)
      hex = hex && strchr("0123456789abcdef", n[k]) != NULL;
    if (hex) return true;
  }
  size_t j = dot;
  while (j > 0 && n[j - 1] >= '0' && n[j - 1] <= '9') j--;
  return j < dot && j > 0 && n[j - 1] == '.';
}

int fsm_instance_start(fsm_rt *f, mly_machine *parent,
                       const fsm_machine *def, const fsm_inst *proto,
                       mly_value *context, const char *name,
                       char *name_out, size_t name_out_len, mly_id *out) {
  if (context == NULL) context = mly_value_map();
  if (context == NULL) return MLY_ENOMEM;
  if (mly_value_type(context) != MLY_V_MAP) {
    mly_value_free(context);
    return MLY_EINVAL;
  }
  fsm_inst in;
  if (proto != NULL) {
    in = *proto;
  } else {
    memset(&in, 0, sizeof in);
    in.state = def->initial;
    in.trans = FSM_NO_STATE;
    in.flags = FSM_IF_ENTER;
    in.phase = FSM_PH_DISPATCH;
    in.due_ms = -1;
  }
  memcpy(in.hash, def->hash, FSM_HASH_LEN);
  char gen[MLY_INSTANCE_NAME_MAX + 1];
  int rc = MLY_EEXIST;
  mly_id id = 0;
  for (int tries = 0; rc == MLY_EEXIST && tries < (name ? 1 : 16); tries++) {
    const char *nm = name;
    if (nm == NULL) {
      gen_name(f, def->name, gen, sizeof gen);
      nm = gen;
    }
    if (name_out != NULL && strlen(nm) >= name_out_len) {
      mly_value_free(context);
      return MLY_ERANGE;
    }
    mly_value *ctx = tries + 1 < (name ? 1 : 16) ? mly_value_copy(context)
                                                 : context;
    if (ctx == context) context = NULL;
    if (ctx == NULL) {
      rc = MLY_ENOMEM;
      break;
    }
    mly_spawn_options o = {.arg = &in, .arg_len = sizeof in, .context = ctx,
                           .name = nm};
    rc = parent ? mly_spawn_child_opts(parent, f->type, &o, &id)
                : mly_spawn_opts(f->rt, f->type, &o, &id);
    if (rc == 0 && name_out != NULL) snprintf(name_out, name_out_len, "%s", nm);
  }
  mly_value_free(context);
  if (rc == 0 && out != NULL) *out = id;
  return rc;
}

int mly_fsm_start(mly_runtime *rt, const char *machine, const char *name,
                  mly_value *context, char *name_out, size_t name_out_len,
                  mly_id *id_out) {
  fsm_rt *f = fsm_rt_get(rt);
  const fsm_machine *def = fsm_machine_current(f, machine);
  if (def == NULL) {
    mly_value_free(context);
    return f == NULL || machine == NULL ? MLY_EINVAL : MLY_ENOENT;
  }
  if (!mly_runtime_on_loop_thread(rt)) {
    mly_value_free(context);
    return MLY_EPERM;
  }
  if (name != NULL && name_is_derived(name)) {
    fsm_log(f, "start %s: the name %s has the shape of the names the fsm "
               "layer gives its copies, replicas and collectors; choose "
               "another", machine, name);
    mly_value_free(context);
    return MLY_EINVAL;
  }
  char err[256];
  if (context != NULL && fsm_ctx_check(def, context, err, sizeof err) < 0) {
    fsm_log(f, "start %s: %s", machine, err);
    mly_value_free(context);
    return MLY_EINVAL;
  }
  return fsm_instance_start(f, NULL, def, NULL, context, name, name_out,
                            name_out_len, id_out);
}

int mly_fsm_send(mly_runtime *rt, const char *instance, const char *event,
                 mly_value *payload, mly_post_cb cb, void *arg) {
  int rc = 0;
  mly_name_info ni;
  uint32_t eid;
  if (rt == NULL || instance == NULL || event == NULL ||
      (payload != NULL && mly_value_type(payload) != MLY_V_MAP))
    rc = MLY_EINVAL;
  else if (!mly_runtime_on_loop_thread(rt))
    rc = MLY_EPERM;
  else if (mly_runtime_stopping(rt))
    rc = MLY_ESHUTDOWN; /* suspended, not gone: back at the next open */
  else if ((rc = mly_name_lookup(rt, instance, &ni)) == 0 &&
           ni.state != MLY_NAME_LIVE)
    rc = MLY_ESRCH;
  if (rc == 0) {
    /* only to an instance of a YAML machine (not a fan-in collector nor
       a definition holder), and a payload that keeps the context of the
       types its machine declares (as mly_fsm_start's context) */
    fsm_rt *f = fsm_rt_get(rt);
    mly_type *t = mly_instance_type(rt, ni.id);
    if (t == NULL)
      rc = MLY_ESRCH; /* parked */
    else if (f == NULL || t != f->type)
      rc = MLY_EINVAL;
    else if (payload != NULL) {
      const fsm_inst *in = mly_instance_data(rt, ni.id);
      const fsm_machine *d = fsm_def_get(f, in->hash);
      char err[256];
      if (d != NULL && fsm_ctx_check(d, payload, err, sizeof err) < 0) {
        fsm_log(f, "send %s to %s: %s", event, instance, err);
        rc = MLY_EINVAL;
      } else if ((rc = fsm_ctx_fits(payload, err, sizeof err)) < 0) {
        fsm_log(f, "send %s to %s: the payload: %s", event, instance, err);
      }
    }
  }
  if (rc == 0) rc = mly_event_id(rt, event, &eid);
  if (rc < 0) {
    mly_value_free(payload);
    return rc;
  }
  if (mly_runtime_durable(rt))
    return mly_post_durable(rt, ni.id, eid, payload, cb, arg);
  rc = mly_runtime_send(rt, ni.id, eid, payload);
  if (cb != NULL) cb(rt, rc, arg);
  return rc;
}

static const char *state_name(const fsm_machine *d, uint32_t s) {
  return d && s < d->nstates ? d->states[s].name : "";
}

int mly_fsm_info_get(mly_runtime *rt, mly_id id, mly_fsm_info *out) {
  fsm_rt *f = fsm_rt_get(rt);
  if (f == NULL || out == NULL) return MLY_EINVAL;
  if (!mly_runtime_on_loop_thread(rt)) return MLY_EPERM; /* it reads loop memory */
  mly_info mi;
  if (mly_instance_type(rt, id) != f->type || mly_info_get(rt, id, &mi) < 0)
    return MLY_ESRCH;
  const fsm_inst *in = mly_instance_data(rt, id);
  const fsm_machine *d = fsm_def_get(f, in->hash);
  static const char *const phases[] = {"dispatch", "sleep", "wait", "fan-in",
                                       "done"};
  static const char *const whys[] = {"", "countdown", "backoff",
                                     "continuation"};
  memset(out, 0, sizeof *out);
  out->id = id;
  out->name = mly_instance_name(rt, id);
  out->machine = d ? d->name : "";
  out->version = d ? d->version : 0;
  fsm_hash_hex(in->hash, out->hash);
  out->state = state_name(d, in->state);
  out->entering = (in->flags & FSM_IF_ENTER) != 0;
  out->event = in->event;
  out->phase = in->phase < 5 ? phases[in->phase] : "?";
  out->sleep_why = in->phase == FSM_PH_SLEEP && in->why < 4 ? whys[in->why] : "";
  out->due_ms = in->phase == FSM_PH_SLEEP || in->phase == FSM_PH_WAIT
                    ? in->due_ms
                    : -1;
  out->attempt = in->attempt;
  out->seq = in->seq;
  if (in->phase == FSM_PH_WAIT && d && in->state < d->nstates) {
    out->waits = (const char *const *)d->states[in->state].wait_events;
    out->nwaits = d->states[in->state].nwait_events;
  }
  out->context = mly_instance_context(rt, id);
  out->last_error = in->error;
  out->lifecycle = mi.lifecycle;
  uint32_t n = in->nhist < FSM_HISTORY_MAX ? in->nhist : FSM_HISTORY_MAX;
  uint64_t seq = in->seq; /* counted back: see fsm_inst.hist */
  for (uint32_t k = n; k-- > 0;) {
    const struct fsm_hist *h = &in->hist[(in->nhist - n + k) % FSM_HISTORY_MAX];
    struct mly_fsm_step *s = &out->history[k];
    if (h->result == 0 || h->result == MLY_ECANCELED) seq--;
    s->seq = seq;
    s->at_ms = h->at_ms;
    s->from = state_name(d, h->from == FSM_HIST_NONE ? FSM_NO_STATE : h->from);
    s->to = state_name(d, h->to == FSM_HIST_NONE ? FSM_NO_STATE : h->to);
    s->event = d && h->from < d->nstates && h->trans < d->states[h->from].ntrans
                   ? d->states[h->from].trans[h->trans].event
                   : "";
    s->result = h->result;
  }
  out->nhistory = n;
  fsm_run *r = fsm_run_get(f, id);
  out->awaits_action = r && r->async == FSM_ASYNC_ACTION && !r->job_done
                           ? r->missing
                           : "";
  out->awaits_queue = r && r->qslot == FSM_QSLOT_WAIT && r->qname ? r->qname
                                                                   : "";
  return 0;
}
