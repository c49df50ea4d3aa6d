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
 * The record is a tq_rec as a task's, kept in the layer's own table of
 * steps (by the machine's id), apart from the tasks' records: nothing
 * that walks tasks meets it.
 */
#include "queue.h"

#include <stdlib.h>
#include <string.h>

static tq_step *step_find(tq_layer *L, mly_id id) {
  tq_step *st = NULL;
  HASH_FIND(hh, L->steps, &id, sizeof id, st);
  return st;
}

static void step_free(tq_layer *L, tq_step *st) {
  HASH_DEL(L->steps, st);
  tq_forget(&st->rec); /* out of the heap or its key's list, slot back */
  free(st->rec.keyval);
  free(st);
}

int mly_queue_slot_take(mly_runtime *rt, const char *queue, mly_id id,
                        const mly_value *payload) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return MLY_ENOENT;
  if (queue == NULL || *queue == '\0' || strlen(queue) > MLY_NAME_MAX)
    return MLY_EINVAL;
  mly_info mi;
  if (mly_info_get(rt, id, &mi) == 0 && strcmp(mi.type, TQ_TYPE) == 0)
    return MLY_EBUSY; /* a task waits for its slots itself */
  taskpool *P = tq_pool(L);
  if (P != NULL) { /* a shared store: the store's slot (pool.c) */
    tq_queue *q = tq_queue_find(L, queue);
    char *key = q ? tq_key_value(q, payload) : NULL;
    int rc = P->ask(P->arg, queue, key, id);
    free(key);
    return rc;
  }
  tq_step *st = step_find(L, id);
  if (st != NULL && strcmp(st->rec.q->name, queue) != 0) {
    step_free(L, st); /* it asks another queue now */
    st = NULL;
  }
  tq_states_sync(L); /* paused flags are known before anything starts */
  if (st == NULL) {
    tq_queue *q = tq_queue_get(L, queue);
    if (q == NULL || (st = calloc(1, sizeof *st)) == NULL) return MLY_ENOMEM;
    tq_rec *r = &st->rec;
    r->id = id;
    r->heap_idx = TQ_NO_HEAP;
    r->q = q;
    r->keyval = tq_key_value(q, payload);
    int64_t now = tq_wall_ms();
    uint64_t seq = (uint64_t)now * 1000u; /* as a task's insertion order */
    r->seq = L->last_seq = seq > L->last_seq ? seq : L->last_seq + 1;
    r->eta_ms = now;
    HASH_ADD(hh, L->steps, rec.id, sizeof r->id, st);
    tq_enqueue(q, r);
  } else if (st->rec.heap_idx == TQ_NO_HEAP && !st->rec.blocked &&
             !st->rec.holds_slot) {
    tq_enqueue(st->rec.q, &st->rec); /* the heap had no memory before */
  }
  return st->rec.granted ? 1 : 0;
}

void mly_queue_slot_release(mly_runtime *rt, mly_id id) {
  tq_layer *L = tq_get(rt);
  taskpool *P = L ? tq_pool(L) : NULL;
  if (P != NULL) {
    P->drop(P->arg, id); /* with the commit of this turn */
    return;
  }
  tq_step *st = L ? step_find(L, id) : NULL;
  if (st != NULL) step_free(L, st);
}

void tq_steps_free(tq_layer *L) {
  tq_step *st, *tmp;
  HASH_ITER(hh, L->steps, st, tmp) { /* slots nobody gave back */
    HASH_DEL(L->steps, st);
    free(st->rec.keyval);
    free(st);
  }
}
