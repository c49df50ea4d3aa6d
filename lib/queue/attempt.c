/*
 * attempt.c - one run of a task: where it runs, how it reports, when it
 * is given up.
 *
 * An attempt (mly_task) is started by the task's step once its queue
 * granted a slot.  A loop function is called right there, inside the
 * step; it may report at once (then the step goes on without waiting) or
 * later, from the loop thread.  A blocking function is handed to the
 * libuv threadpool; its report is kept in the attempt and read by the
 * after-work callback on the loop thread.  Thread rule: the fields a
 * threadpool thread touches (outcome, msg, reported) are written only by
 * it, before the after-work callback, which reads them; `blocking` is set
 * before the work is queued and not changed while it runs.
 *
 * An attempt ends once (tq_finish): its outcome goes to the task's record,
 * its slot is released, the task is woken.  A timeout (the queue's clock
 * looks at the running list, kept in start order: with one timeout per
 * queue, also deadline order) and the task's end abandon it: the record
 * forgets it (att->rec = NULL), and the attempt frees itself when it
 * reports (loop) or comes back from the pool (blocking).
 */
#include "../value.h"
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run_unlink(tq_queue *q, mly_task *t) {
  if (t->rprev) t->rprev->rnext = t->rnext;
  else if (q->run_head == t) q->run_head = t->rnext;
  if (t->rnext) t->rnext->rprev = t->rprev;
  else if (q->run_tail == t) q->run_tail = t->rprev;
  t->rnext = t->rprev = NULL;
}

static void run_link(tq_queue *q, mly_task *t) {
  t->rprev = q->run_tail;
  t->rnext = NULL;
  if (q->run_tail) q->run_tail->rnext = t;
  else q->run_head = t;
  q->run_tail = t;
}

/* The record lets go of its attempt; the slot goes back. */
static void detach(tq_rec *r) {
  mly_task *t = r->att;
  if (t == NULL) return;
  run_unlink(r->q, t);
  t->rec = NULL;
  r->att = NULL;
  tq_release_slot(r);
}

void tq_finish(tq_rec *r, mly_task_outcome o, int err, const char *msg) {
  r->finished = true;
  r->outcome = o;
  r->err = err;
  str_copy(r->msg, msg ? msg : "", sizeof r->msg);
  detach(r);
  mly_wake(r->q->L->rt, r->id);
}

void tq_abandon(tq_rec *r) { detach(r); }

static void work_cb(uv_work_t *w) {
  mly_task *t = w->data;
  t->fn(t, t->fn_arg);
}

static void after_work_cb(uv_work_t *w, int status) {
  mly_task *t = w->data;
  tq_rec *r = t->rec;
  t->in_pool = false;
  if (r) r->pool_inflight--;
  else {
    /* abandoned: its task may wait for it to end (task.c `finishing`) */
    tq_rec *owner = tq_rec_find(t->L, t->id);
    if (owner) {
      owner->pool_inflight--;
      mly_wake(t->rt, t->id);
    }
  }
  if (r && r->att == t) {
    if (status < 0) tq_finish(r, MLY_TASK_RETRY, status, "cancelled");
    else if (!t->reported)
      tq_finish(r, MLY_TASK_RETRY, MLY_EINVAL,
                "the function returned without mly_task_done");
    else tq_finish(r, t->outcome, t->outcome == MLY_TASK_OK ? 0 : MLY_EIO,
                   t->msg);
  }
  free(t);
}

void tq_attempt_start(tq_layer *L, tq_rec *r, tq_data *d) {
  tq_queue *q = r->q;
  tq_fn *f = d->kind == MLY_TASK_MACHINE
                 ? (L->has_starter ? &L->starter : NULL)
                 : tq_fn_find(L, tq_d_target(d));
  r->granted = false;
  r->finished = false;
  mly_task *t = freelist_get(&L->att_pool, sizeof *t);
  if (t == NULL) {
    tq_finish(r, MLY_TASK_RETRY_SINGULAR, MLY_ENOMEM, "out of memory");
    return;
  }
  t->L = L;
  t->rec = r;
  t->rt = L->rt;
  t->id = r->id;
  /* read only: mly_context would mark it for re-encoding at the commit */
  t->payload = mly_instance_context(L->rt, r->id);
  t->name = mly_instance_name(L->rt, r->id);
  if (t->name) t->name += strlen(TQ_NAME_PREFIX) + strlen(tq_d_queue(d)) + 1;
  str_copy(t->queue, tq_d_queue(d), sizeof t->queue);
  str_copy(t->target_name, tq_d_target(d), sizeof t->target_name);
  t->target.kind = d->kind;
  t->target.name = t->target_name;
  t->attempt = d->attempts;
  r->att = t;
  run_link(q, t);
  q->started++;
  if (f == NULL) {
    char msg[MLY_TASK_MSG_MAX + 1];
    snprintf(msg, sizeof msg, "%s '%s' is not registered",
             d->kind == MLY_TASK_MACHINE ? "no starter for machine"
                                         : "function",
             tq_d_target(d));
    t->reported = true;
    tq_finish(r, MLY_TASK_PERMANENT, MLY_ENOENT, msg);
    freelist_put(&L->att_pool, t);
    return;
  }
  t->fn = f->fn;
  t->fn_arg = f->arg;
  if (q->def.timeout_ms > 0) {
    t->deadline_us = tq_now_us() + (uint64_t)q->def.timeout_ms * 1000u;
    tq_clock_need(L, t->deadline_us);
  }
  if (f->flags & MLY_DEFER_BLOCKING) {
    t->blocking = true;
    t->in_pool = true;
    t->work.data = t;
    r->pool_inflight++;
    int rc = uv_queue_work(mly_runtime_loop(L->rt), &t->work, work_cb,
                           after_work_cb);
    if (rc < 0) {
      t->in_pool = false;
      r->pool_inflight--;
      t->reported = true;
      tq_finish(r, MLY_TASK_RETRY, rc, "the threadpool refused the work");
      free(t);
    }
    return;
  }
  t->fn(t, t->fn_arg);
}

void mly_task_done(mly_task *t, mly_task_outcome o, const char *msg) {
  if (t == NULL) return;
  if (t->blocking) { /* its threadpool thread: after_work_cb reads these */
    t->outcome = o;
    str_copy(t->msg, msg ? msg : "", sizeof t->msg);
    t->reported = true;
    return;
  }
  if (t->reported) return; /* a second report is a caller's bug: ignored */
  t->reported = true;
  tq_rec *r = t->rec;
  if (r == NULL) { /* abandoned (timed out, task ended): ignored */
    free(t);
    return;
  }
  tq_layer *L = t->L; /* alive: the record is */
  tq_finish(r, o, o == MLY_TASK_OK ? 0 : MLY_EIO, msg);
  freelist_put(&L->att_pool, t);
}

void tq_timeouts(tq_queue *q, uint64_t now_us) {
  while (q->run_head && q->run_head->deadline_us &&
         q->run_head->deadline_us <= now_us) {
    mly_task *t = q->run_head;
    tq_rec *r = t->rec;
    char msg[MLY_TASK_MSG_MAX + 1];
    snprintf(msg, sizeof msg, "attempt %u timed out after %lld ms",
             t->attempt, (long long)q->def.timeout_ms);
    q->timed_out++;
    tq_finish(r, MLY_TASK_RETRY, MLY_ETIMEDOUT, msg);
    /* a loop attempt frees itself when it reports; a blocking one when
     * it comes back from the pool */
  }
}

const mly_value *mly_task_payload(const mly_task *t) { return t->payload; }
mly_id mly_task_id(const mly_task *t) { return t->id; }
const char *mly_task_name(const mly_task *t) { return t->name; }
const char *mly_task_queue(const mly_task *t) { return t->queue; }
mly_task_target mly_task_target_of(const mly_task *t) { return t->target; }
uint32_t mly_task_attempt(const mly_task *t) { return t->attempt; }
mly_runtime *mly_task_runtime(const mly_task *t) { return t->rt; }
