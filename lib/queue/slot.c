/*
 * slot.c - a slot of a queue for one step of another durable machine
 * (the YAML machines' `queue:`): the step waits in the queue's
 * dispatcher beside its tasks and runs only with a slot, so the queue's
 * max_concurrent, rate and concurrency_key limits count it as they count
 * a task's attempt.
 *
 * A slot is memory only, like a task's (dispatch.c): it is held from the
 * grant until mly_queue_slot_release, and a crash takes it with the
 * process.  The step it guarded had not committed (a step commits
 * atomically at its end, D2), so after the restart the machine runs that
 * step again and asks for a slot again: nothing leaks across a kill -9
 * and nothing is counted twice.  A step that committed never asks again.
 *
 * The record is a tq_rec keyed by the machine's id in the layer's table
 * (task ids and other machines' ids never meet: one id space per
 * runtime), marked `step` so nothing that walks tasks mistakes it.
 */
#include "queue.h"

#include <stdlib.h>
#include <string.h>

int mly_queue_slot_take(mly_runtime *rt, const char *queue, mly_id id,
                        const mly_value *payload) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return MLY_ENOENT;
  if (queue == NULL || *queue == '\0' || strlen(queue) > MLY_NAME_MAX)
    return MLY_EINVAL;
  tq_rec *r = NULL;
  HASH_FIND(hh, L->recs, &id, sizeof id, r);
  if (r != NULL && !r->step) return MLY_EBUSY; /* a task's own record */
  if (r != NULL && strcmp(r->q->name, queue) != 0) {
    mly_queue_slot_release(rt, id); /* it asks another queue now */
    r = NULL;
  }
  tq_states_sync(L); /* paused flags are known before anything starts */
  if (r == NULL) {
    tq_queue *q = tq_queue_get(L, queue);
    if (q == NULL || (r = calloc(1, sizeof *r)) == NULL) return MLY_ENOMEM;
    r->id = id;
    r->step = true;
    r->heap_idx = TQ_NO_HEAP;
    r->q = q;
    r->keyval = tq_key_value(q, payload);
    int64_t now = tq_wall_ms();
    uint64_t seq = (uint64_t)now * 1000u;
    r->seq = L->last_seq = seq > L->last_seq ? seq : L->last_seq + 1;
    r->eta_ms = now;
    HASH_ADD(hh, L->recs, id, sizeof r->id, r);
    tq_enqueue(q, r);
  } else if (r->heap_idx == TQ_NO_HEAP && !r->blocked && !r->holds_slot) {
    tq_enqueue(r->q, r); /* the heap had no memory the last time */
  }
  return r->granted ? 1 : 0;
}

void mly_queue_slot_release(mly_runtime *rt, mly_id id) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return;
  tq_rec *r = NULL;
  HASH_FIND(hh, L->recs, &id, sizeof id, r);
  if (r == NULL || !r->step) return;
  HASH_DEL(L->recs, r);
  tq_forget(r); /* out of the heap or its key's list, its slot given back */
  free(r->keyval);
  free(r);
}

