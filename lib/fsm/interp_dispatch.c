/*
 * interp_dispatch.c - one dispatch of a YAML machine instance, in
 * Fantasm's order, and what follows it: commit, or retry, on_failure,
 * failure.
 *
 * With the pending event taking transition T from state S into D:
 *     exit(S), [fan-in merge: done before, by fan_in.c], T.action,
 *     entry(D), continuation(D), action(D) -> the next event
 * (a dispatch that enters D itself, FSM_IF_ENTER: entry, continuation,
 * action).  The actions work on a copy of the context (value_share: it
 * shares the committed nodes until an action changes them; a private
 * deep copy before a blocking action) and a fresh scratch map.  A C action runs inline; a blocking one on the
 * threadpool; a command as a child process: the walk then returns and
 * goes on where it stopped when that is over.  On success the copy
 * becomes the context, the instance moves to D and routes the next
 * event (a countdown to sleep, a fan-in to enter, a wait state to wait
 * in, a final state to end in); all of it commits in this step.  On
 * failure the copy is thrown away and the policy decides: a backoff
 * (committed, then the same dispatch again, same key), or on_failure
 * with "error" and "cause" in the context, or the end of the instance.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsmrt.h"

/* The three states of a dispatch: S (FSM_NO_STATE when it enters D
 * itself), T (NULL then) and D. */
typedef struct hop {
  uint32_t s, d;
  const fsm_transition *t;
} hop;

static int hop_of(const fsm_machine *def, const fsm_inst *in, hop *h) {
  if (in->state >= def->nstates) return MLY_EBADMSG;
  if (in->flags & FSM_IF_ENTER) {
    h->s = FSM_NO_STATE;
    h->t = NULL;
    h->d = in->state;
    return 0;
  }
  const fsm_state *st = &def->states[in->state];
  if (in->trans >= st->ntrans || st->trans[in->trans].to >= def->nstates)
    return MLY_EBADMSG;
  h->s = in->state;
  h->t = &st->trans[in->trans];
  h->d = h->t->to;
  return 0;
}

static uint16_t hist_idx(uint32_t i) {
  return i < FSM_HIST_NONE ? (uint16_t)i : (uint16_t)FSM_HIST_NONE;
}

static void hist_push(fsm_inst *in, const hop *h, int result) {
  struct fsm_hist *e = &in->hist[in->nhist++ % FSM_HISTORY_MAX];
  e->at_ms = fsm_now_ms();
  e->from = hist_idx(h->s);
  e->to = hist_idx(h->d);
  e->trans = h->s != FSM_NO_STATE ? hist_idx(in->trans) : FSM_HIST_NONE;
  e->result = (int16_t)result;
}

/* ---- actions ---- */

static void job_work(uv_work_t *w) {
  fsm_run *r = w->data;
  int rc = r->job->fn(&r->call, r->job->arg);
  fsm_call_returned(&r->call, rc);
}

static void job_done(uv_work_t *w, int status);

static int job_start(fsm_rt *f, fsm_run *r) {
  int rc = uv_queue_work(mly_runtime_loop(f->rt), &r->work, job_work,
                         job_done);
  if (rc == 0) f->jobs_running++;
  return rc;
}

/* Start the job now, or queue it behind the others. */
int fsm_job_submit(fsm_rt *f, fsm_run *r) {
  r->work.data = r;
  if (f->jobs_running < f->jobs_max) return job_start(f, r);
  r->job_queued = true;
  r->jobq_next = NULL;
  if (f->jobq_tail) f->jobq_tail->jobq_next = r;
  else f->jobq_head = r;
  f->jobq_tail = r;
  return 0;
}

static void job_done(uv_work_t *w, int status) {
  fsm_run *r = w->data;
  fsm_rt *f = r->f;
  bool orphan = r->orphan;
  if (orphan) { /* its instance ended meanwhile */
    if (f != NULL) { /* the runtime lives on: out of its orphans list */
      fsm_run **pp = &f->orphans;
      while (*pp != r) pp = &(*pp)->jobq_next;
      *pp = r->jobq_next;
    }
    fsm_call_clear(&r->call);
    free(r);
    if (f == NULL) return;
  }
  f->jobs_running--;
  while (f->jobq_head != NULL && f->jobs_running < f->jobs_max) {
    fsm_run *q = f->jobq_head;
    f->jobq_head = q->jobq_next;
    if (f->jobq_head == NULL) f->jobq_tail = NULL;
    q->job_queued = false;
    int rc = job_start(f, q);
    if (rc < 0) { /* fails the call: retried */
      mly_action_fail(&q->call, false, "threadpool: %s", uv_strerror(rc));
      q->job_done = true;
      mly_wake(f->rt, q->id);
    }
  }
  if (orphan) return; /* freed above */
  if (status < 0 && r->call.fail == 0) {
    r->call.fail = MLY_ACTION_RETRY;
    snprintf(r->call.error, sizeof r->call.error, "%s", mly_strerror(status));
  }
  r->job_done = true;
  mly_wake(r->f->rt, r->id);
}

/* Run action a at r->pos: 0 (done: see r->call.fail), or FSM_WALK_*
 * when it goes on elsewhere. */
static int run_action(fsm_rt *f, mly_machine *m, fsm_inst *in, fsm_run *r,
                      const fsm_action *a) {
  if (a->kind == FSM_ACT_EXEC) {
    int rc = fsm_exec_start(f, m, r, a, in);
    if (rc < 0) {
      if (r->call.fail == 0)
        mly_action_fail(&r->call, false, "cannot run %s: %s",
                        a->argv && a->argv[0] ? a->argv[0] : "(none)",
                        mly_strerror(rc));
      return 0;
    }
    r->async = FSM_ASYNC_EXEC;
    r->job_done = false;
    return FSM_WALK_EXEC;
  }
  const fsm_action_ent *e = fsm_action_resolve(f, a);
  if (e == NULL) return fsm_action_await(f, m, r, a);
  if (e->flags & MLY_ACTION_BLOCKING) {
    /* another thread: nothing of its working copy may be shared with
       the committed context (the counts are not atomic) */
    mly_value *own = mly_value_copy(r->call.context);
    if (own == NULL) {
      mly_action_fail(&r->call, false, "out of memory");
      return 0;
    }
    mly_value_free(r->call.context);
    r->call.context = own;
    r->job = e;
    r->async = FSM_ASYNC_BLOCKING;
    r->job_done = false;
    int rc = fsm_job_submit(f, r);
    if (rc < 0) {
      r->async = FSM_ASYNC_NONE;
      mly_action_fail(&r->call, false, "threadpool: %s", uv_strerror(rc));
      return 0;
    }
    return FSM_WALK_BLOCKING;
  }
  int rc = e->fn(&r->call, e->arg);
  fsm_call_returned(&r->call, rc);
  return 0;
}

static const fsm_action *action_at(const fsm_machine *def, const hop *h,
                                   fsm_where w, const char **state) {
  const fsm_state *S = h->s != FSM_NO_STATE ? &def->states[h->s] : NULL;
  const fsm_state *D = &def->states[h->d];
  *state = D->name;
  switch (w) {
  case FSM_AT_EXIT:
    if (S) *state = S->name;
    return S ? &S->exit : NULL;
  case FSM_AT_TRANSITION:
    if (S) *state = S->name;
    return h->t ? &h->t->action : NULL;
  case FSM_AT_ENTRY: return &D->entry;
  case FSM_AT_ACTION: return &D->action;
  default: return NULL;
  }
}

static int walk_begin(fsm_rt *f, mly_machine *m, fsm_inst *in, fsm_run *r) {
  mly_value *ctx = mly_context(m);
  /* shares the committed context's nodes until an action changes them */
  r->call.context = ctx ? value_share(ctx) : mly_value_map();
  r->call.scratch = NULL; /* mly_action_scratch makes it */
  if (r->call.context == NULL) {
    fsm_call_clear(&r->call);
    return MLY_ENOMEM;
  }
  fsm_key_fast(m, in, r);
  r->call.key = r->key;
  r->call.machine = r->def->name;
  r->call.event = in->event;
  r->call.attempt = in->attempt;
  r->call.fail = 0;
  r->call.next[0] = r->call.error[0] = '\0';
  if (in->attempt == 0) in->first_try_ms = fsm_now_ms();
  if (in->exec_pid != 0) fsm_exec_reap_stale(f, in);
  r->pos = FSM_AT_EXIT;
  r->in_dispatch = true;
  return 0;
}

/* Walk the positions from r->pos; FSM_WALK_OK, _FAILED, or where it
 * goes on. */
static int walk(fsm_rt *f, mly_machine *m, fsm_inst *in, fsm_run *r,
                const hop *h) {
  if (!r->in_dispatch) {
    int rc = walk_begin(f, m, in, r);
    if (rc < 0) {
      r->call.fail = MLY_ACTION_RETRY;
      snprintf(r->call.error, sizeof r->call.error, "%s", mly_strerror(rc));
      return FSM_WALK_FAILED;
    }
  } else if (r->async != FSM_ASYNC_NONE) { /* a job or process is over */
    if (r->async == FSM_ASYNC_EXEC) in->exec_pid = 0, in->exec_start = 0;
    /* an action registered at last runs now, at this position */
    bool again = r->async == FSM_ASYNC_ACTION;
    r->async = FSM_ASYNC_NONE;
    r->job_done = false;
    if (r->call.fail) return FSM_WALK_FAILED;
    if (!again) r->pos++;
  }
  for (; r->pos < FSM_AT_DONE; r->pos++) {
    const fsm_state *D = &r->def->states[h->d];
    r->call.where = r->pos;
    if (r->pos == FSM_AT_ACTION) r->call.next[0] = '\0';
    if (r->pos == FSM_AT_CONTINUATION) {
      if (!D->continuation) continue;
      r->call.state = D->name;
      if (D->action.kind == FSM_ACT_C &&
          fsm_action_resolve(f, &D->action) == NULL)
        return fsm_action_await(f, m, r, &D->action);
      int rc = fsm_continuation_run(f, m, in, r, D);
      if (rc < 0 && r->call.fail == 0)
        mly_action_fail(&r->call, rc == MLY_ENOSYS,
                        rc == MLY_ENOSYS
                            ? "state %s is a continuation: this build has "
                              "no continuation support"
                            : "continuation of %s: %s",
                        D->name, mly_strerror(rc));
      if (r->call.fail) return FSM_WALK_FAILED;
      continue;
    }
    const fsm_action *a = action_at(r->def, h, r->pos, &r->call.state);
    if (a == NULL || a->kind == FSM_ACT_NONE) continue;
    int go = run_action(f, m, in, r, a);
    if (go) return go;
    if (r->call.fail) return FSM_WALK_FAILED;
  }
  return FSM_WALK_OK;
}

/* ---- after the walk ---- */

static const fsm_transition *find_trans(const fsm_state *st, const char *ev,
                                        uint32_t *idx) {
  for (size_t i = 0; i < st->ntrans; i++)
    if (strcmp(st->trans[i].event, ev) == 0) {
      *idx = (uint32_t)i;
      return &st->trans[i];
    }
  return NULL;
}

/* in->trans/event are set: sleep its countdown (chosen now, committed),
 * or go on. */
static void route(fsm_rt *f, mly_machine *m, fsm_inst *in,
                  const fsm_machine *def) {
  const fsm_transition *t = &def->states[in->state].trans[in->trans];
  const fsm_countdown *c = &t->countdown;
  if (c->min_ms < 0 && c->max_ms < 0) c = &def->countdown; /* Fantasm's */
  int64_t cd = fsm_countdown_pick(f, c);
  if (cd >= 0) {
    in->phase = FSM_PH_SLEEP;
    in->why = FSM_WHY_COUNTDOWN;
    in->countdown_ms = cd;
    in->due_ms = fsm_now_ms() + cd;
    if (f->hooks.delay_chosen)
      f->hooks.delay_chosen(f->hooks.arg, mly_self(m), FSM_WHY_COUNTDOWN, 0, cd);
    return;
  }
  fsm_route_after_countdown(f, m, in);
}

void fsm_route_after_countdown(fsm_rt *f, mly_machine *m, fsm_inst *in) {
  in->phase = FSM_PH_DISPATCH;
  fsm_run *r = fsm_run_for(f, m, in);
  if (r == NULL) return;
  const fsm_state *st = &r->def->states[in->state];
  if (in->trans >= st->ntrans) return;
  const fsm_state *to = &r->def->states[st->trans[in->trans].to];
  if (to->fan_in == FSM_FAN_NONE) return;
  in->phase = FSM_PH_FAN_IN;
  int rc = fsm_fan_in_enter(f, m, in, to);
  if (rc < 0) {
    fsm_log(f, "instance %s: cannot enter fan-in state %s: %s%s",
            mly_self_name(m), to->name, mly_strerror(rc),
            rc == MLY_ENOSYS ? " (this build has no fan-in support)" : "");
    fsm_end(in, rc);
  }
}

static void set_error(mly_machine *m, const fsm_machine *def, const hop *h,
                      fsm_where where, const fsm_inst *in, uint32_t attempts,
                      bool permanent, const char *error) {
  mly_value *ctx = mly_context(m);
  if (ctx == NULL) {
    mly_context_set(m, mly_value_map());
    ctx = mly_context(m);
    if (ctx == NULL) return;
  }
  mly_map_set_str(ctx, FSM_KEY_ERROR, error);
  mly_value *c = mly_value_map();
  if (c == NULL) return;
  uint32_t at = where <= FSM_AT_TRANSITION && h->s != FSM_NO_STATE ? h->s : h->d;
  mly_map_set_str(c, "state", def->states[at].name);
  mly_map_set_str(c, "event", in->event);
  mly_map_set_str(c, "where", fsm_where_name(where));
  mly_map_set_uint(c, "attempts", attempts);
  mly_map_set_bool(c, "permanent", permanent);
  mly_map_set(ctx, FSM_KEY_CAUSE, c);
}

/* The dispatch failed (r->call says how): retry, on_failure, or end. */
static void failed(fsm_rt *f, mly_machine *m, fsm_inst *in, fsm_run *r,
                   const hop *h) {
  const fsm_machine *def = r->def;
  fsm_where where = r->call.where;
  bool permanent = r->call.fail == MLY_ACTION_PERMANENT;
  char error[sizeof r->call.error];
  memcpy(error, r->call.error, sizeof error);
  if (error[0] == '\0') snprintf(error, sizeof error, "failed");
  fsm_text_clean(error);
  fsm_call_clear(&r->call);
  r->in_dispatch = false;
  r->async = FSM_ASYNC_NONE;
  uint32_t attempts = in->attempt + 1;
  fsm_strlcpy(in->error, error, sizeof in->error);
  fsm_text_clean(in->error);
  uint32_t at = where <= FSM_AT_TRANSITION && h->s != FSM_NO_STATE ? h->s : h->d;
  const char *sname = def->states[at].name;

  fsm_retry p;
  const char *qn = h->t && h->t->queue ? h->t->queue : def->queue;
  mly_queue_def qd;
  if (qn && mly_queue_def_get(f->rt, qn, &qd) == 0)
    fsm_retry_resolve_q(def, h->t, &qd.retry, &p); /* the queue's policy */
  else
    fsm_retry_resolve(def, h->t, &p);
  int64_t age = fsm_now_ms() - in->first_try_ms;
  bool retry = !permanent &&
               (p.task_retry_limit < 0 ||
                (int64_t)attempts <= p.task_retry_limit) &&
               (p.task_age_limit_ms < 0 || age < p.task_age_limit_ms);
  hist_push(in, h, retry ? MLY_EAGAIN : MLY_ECANCELED);
  if (retry) {
    int64_t d = fsm_backoff_pick(f, &p, attempts);
    in->attempt = attempts;
    in->phase = FSM_PH_SLEEP;
    in->why = FSM_WHY_BACKOFF;
    in->countdown_ms = d;
    in->due_ms = fsm_now_ms() + d;
    if (f->hooks.delay_chosen)
      f->hooks.delay_chosen(f->hooks.arg, mly_self(m), FSM_WHY_BACKOFF,
                            attempts, d);
    fsm_log(f, "instance %s (%s): %s of state %s failed (attempt %u), "
               "retried in %lld ms: %s",
            mly_self_name(m), def->name, fsm_where_name(where), sname,
            attempts, (long long)d, error);
    return;
  }
  uint32_t of = def->states[at].on_failure;
  if (of == FSM_NO_STATE) of = def->on_failure;
  bool looping = (in->flags & FSM_IF_ENTER) && in->state == of &&
                 h->d == of;
  /* on_failure states that fail in turn (s -> t -> s ...): past one move
     per state without a committed dispatch, it is a cycle */
  bool cycle = of != FSM_NO_STATE && in->fail_moves >= def->nstates;
  if (of != FSM_NO_STATE && of < def->nstates && !looping && !cycle) {
    set_error(m, def, h, where, in, attempts, permanent, error);
    fsm_fan_failed_to(f, m, in, mly_context(m), error, of);
    fsm_log(f, "instance %s (%s): %s of state %s failed%s after %u "
               "attempt%s: %s; moves to %s",
            mly_self_name(m), def->name, fsm_where_name(where), sname,
            permanent ? " for good" : "", attempts, attempts == 1 ? "" : "s",
            error, def->states[of].name);
    in->state = of;
    in->trans = FSM_NO_STATE;
    in->flags |= FSM_IF_ENTER;
    in->fail_moves++;
    in->event[0] = '\0';
    in->seq++;
    in->attempt = 0;
    in->first_try_ms = 0;
    in->phase = FSM_PH_DISPATCH;
    return;
  }
  set_error(m, def, h, where, in, attempts, permanent, error);
  fsm_fan_failed(f, m, in, mly_context(m), error);
  fsm_log(f, "instance %s (%s): %s of state %s failed%s after %u attempt%s: "
             "%s; %s: the instance ends, failed",
          mly_self_name(m), def->name, fsm_where_name(where), sname,
          permanent ? " for good" : "", attempts, attempts == 1 ? "" : "s",
          error,
          cycle ? "its on_failure states fail in a cycle"
                : "no on_failure state");
  fsm_end(in, MLY_EIO);
}

/* What a committed dispatch does to the instance record. */
enum { NX_EVENT = 0, NX_FINAL, NX_WAIT };
static void move(fsm_inst *x, const hop *h, const fsm_state *D, int kind,
                 uint32_t ti, const char *next) {
  x->state = h->d;
  x->flags &= ~FSM_IF_ENTER;
  x->fail_moves = 0;
  x->attempt = 0;
  x->first_try_ms = 0;
  x->seq++;
  if (kind == NX_EVENT) {
    x->trans = ti;
    size_t n = strlen(next); /* <= MLY_NAME_MAX: mly_action_event */
    memcpy(x->event, next, n + 1);
    x->phase = FSM_PH_DISPATCH;
    return;
  }
  x->trans = FSM_NO_STATE;
  x->event[0] = '\0';
  if (kind == NX_FINAL) {
    x->phase = FSM_PH_DONE;
    x->status = 0;
  } else {
    x->phase = FSM_PH_WAIT;
    x->due_ms = D->wait_timeout_ms >= 0 ? fsm_now_ms() + D->wait_timeout_ms
                                        : -1;
  }
}

/* A context the step could not commit (nested past MLY_VALUE_MAX_DEPTH,
 * or past the journal's record bound) would end the instance at the end
 * of the step, skipping on_failure: it fails the dispatch instead, for
 * good.  Its encoded length is counted exactly, without encoding it. */
#define CTX_RECORD_MAX ((64u << 20) - (256u << 10)) /* data, events: room */
int fsm_ctx_fits(const mly_value *ctx, char *err, size_t errlen) {
  size_t len = 0;
  int rc = value_encoded_size(ctx, &len);
  if (rc < 0) {
    snprintf(err, errlen, "the context cannot be saved: %s (nested more "
             "than %d deep?)", mly_strerror(rc), MLY_VALUE_MAX_DEPTH);
    return rc;
  }
  if (len > CTX_RECORD_MAX) {
    snprintf(err, errlen, "the context cannot be saved: %zu bytes encoded, "
             "more than a journal record holds (%u)", len, CTX_RECORD_MAX);
    return MLY_ERANGE;
  }
  return 0;
}

/* The walk succeeded: move to D and route the next event, or fail. */
static int commit(fsm_rt *f, mly_machine *m, fsm_inst *in, fsm_run *r,
                  const hop *h) {
  const fsm_machine *def = r->def;
  const fsm_state *D = &def->states[h->d];
  const char *next = r->call.next;
  uint32_t ti = FSM_NO_STATE;
  int kind;
  if (def->nctypes > 0 &&
      fsm_ctx_check(def, r->call.context, r->call.error,
                    sizeof r->call.error) < 0) {
    r->call.fail = MLY_ACTION_PERMANENT;
    return FSM_WALK_FAILED;
  }
  if (fsm_ctx_fits(r->call.context, r->call.error, sizeof r->call.error) < 0) {
    r->call.fail = MLY_ACTION_PERMANENT;
    return FSM_WALK_FAILED;
  }
  if (next[0] != '\0') {
    if (find_trans(D, next, &ti) == NULL) {
      mly_action_fail(&r->call, true,
                      "state %s has no transition for event %s", D->name,
                      next);
      return FSM_WALK_FAILED;
    }
    kind = NX_EVENT;
  } else if (D->final) {
    kind = NX_FINAL;
  } else if (D->wait) {
    kind = NX_WAIT;
  } else {
    r->call.where = FSM_AT_ACTION;
    mly_action_fail(&r->call, true,
                    "state %s is not final and its action named no event",
                    D->name);
    return FSM_WALK_FAILED;
  }
  if (r->call.forks || r->call.spawns) { /* they see the record to be */
    fsm_inst nx = *in;
    move(&nx, h, D, kind, ti, next);
    int rc = 0;
    if (r->call.forks) rc = fsm_fork_apply(f, m, &nx, r);
    if (rc == 0 && r->call.spawns) rc = fsm_spawn_apply(f, m, &nx, r);
    if (rc < 0) {
      mly_action_fail(&r->call, rc == MLY_ENOSYS,
                      rc == MLY_ENOSYS ? "fork/spawn: this build has no "
                                         "fork or spawn support"
                                       : "fork/spawn: %s",
                      mly_strerror(rc));
      return FSM_WALK_FAILED;
    }
  }
  hist_push(in, h, 0);
  move(in, h, D, kind, ti, next);
  mly_context_set(m, r->call.context);
  r->call.context = NULL;
  fsm_call_clear(&r->call);
  r->in_dispatch = false;
  if (in->phase == FSM_PH_DISPATCH) route(f, m, in, def);
  return FSM_WALK_OK;
}

/* ---- queue: a slot of the queue for the whole dispatch ---- */

/* A dispatch of a machine or transition with `queue:` runs with a slot
 * of that queue (mly_queue_slot_take), taken before its first action and
 * given back when it committed or failed: the queue's limits count the
 * dispatch as a task's attempt.  The slot is memory: after a crash the
 * dispatch (not committed) runs again and asks again. */
static int slot_take(fsm_rt *f, mly_machine *m, fsm_run *r) {
  int rc = mly_queue_slot_take(f->rt, r->qname, mly_self(m), mly_context(m));
  if (rc > 0) r->qslot = FSM_QSLOT_HELD;
  else if (rc == 0) r->qslot = FSM_QSLOT_WAIT;
  return rc;
}

bool fsm_slot_ready(fsm_rt *f, mly_machine *m) {
  fsm_run *r = fsm_run_get(f, mly_self(m));
  if (r == NULL || r->qslot != FSM_QSLOT_WAIT || mly_shutdown_requested(m))
    return true;
  return slot_take(f, m, r) != 0; /* an error: the dispatch says it */
}

/* 0: go on with the slot (or no queue); FSM_WALK_QUEUE: wait for it. */
static int slot_before(fsm_rt *f, mly_machine *m, fsm_run *r, const hop *h) {
  const char *q = h->t && h->t->queue ? h->t->queue : r->def->queue;
  if (q == NULL || r->qslot == FSM_QSLOT_HELD) return 0;
  r->qname = q;
  int rc = slot_take(f, m, r);
  if (rc == 0) return FSM_WALK_QUEUE;
  if (rc < 0) {
    r->call.where = FSM_AT_EXIT;
    mly_action_fail(&r->call, rc == MLY_ENOENT || rc == MLY_EINVAL,
                    rc == MLY_ENOENT ? "queue %s: this runtime has no task "
                    "queues (mly_queues_open)" : "queue %s: %s", q,
                    mly_strerror(rc));
    return FSM_WALK_FAILED;
  }
  return 0;
}

void fsm_slot_give_back(fsm_rt *f, fsm_run *r) {
  if (r->qslot == FSM_QSLOT_NONE) return;
  mly_queue_slot_release(f->rt, r->id);
  r->qslot = FSM_QSLOT_NONE;
}

int fsm_dispatch(fsm_rt *f, mly_machine *m, fsm_inst *in, fsm_run *r) {
  hop h;
  if (hop_of(r->def, in, &h) < 0) {
    fsm_log(f, "instance %s: state %u / transition %u not in machine %s",
            mly_self_name(m), in->state, in->trans, r->def->name);
    fsm_end(in, MLY_EBADMSG);
    return FSM_WALK_FAILED;
  }
  /* a dispatch going on holds its slot, unless it gave it back while it
   * could not run (fsm_action_await): then it takes one again here */
  int w = r->in_dispatch && r->qslot == FSM_QSLOT_HELD
              ? 0 : slot_before(f, m, r, &h);
  if (w == FSM_WALK_QUEUE) return w;
  if (w == 0) w = walk(f, m, in, r, &h);
  if (w == FSM_WALK_BLOCKING || w == FSM_WALK_EXEC) return w;
  if (w == FSM_WALK_OK) w = commit(f, m, in, r, &h);
  if (w == FSM_WALK_FAILED) failed(f, m, in, r, &h);
  fsm_slot_give_back(f, r);
  return w;
}

void fsm_take_event(fsm_rt *f, mly_machine *m, fsm_inst *in,
                    const fsm_machine *def, const char *event) {
  uint32_t ti;
  const fsm_state *st = &def->states[in->state];
  if (find_trans(st, event, &ti) == NULL) {
    fsm_log(f, "instance %s: state %s took event %s but has no transition "
               "for it: the instance ends, failed",
            mly_self_name(m), st->name, event);
    fsm_strlcpy(in->error, "no transition for the event taken",
                sizeof in->error);
    fsm_end(in, MLY_EIO);
    return;
  }
  in->trans = ti;
  in->flags &= ~FSM_IF_ENTER;
  snprintf(in->event, sizeof in->event, "%s", event);
  route(f, m, in, def);
}
