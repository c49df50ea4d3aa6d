/*
 * pool.c - the queue layer over a shared store's task pool (taskpool.h).
 *
 * With a pool, the limits of a queue are global: a task that is due goes
 * to the pool with the step that reaches `waiting` (task.c), and comes
 * back, in this process or another, with a slot that the store granted
 * under the queue's max_concurrent, rate and key limits counted over all
 * processes; the dispatcher in memory (dispatch.c) is not used for it.
 * A queue is served (its limits given to the store, tasks claimed for
 * it) while it is declared here, not paused here and the layer is not
 * held (mly_queues_hold).  Without a pool (the journal) nothing here
 * does anything.
 */
#include "queue.h"

/* Known at mly_queues_open (the store opened first) or told by the
 * durable layer when it comes (pool_ready): no lookup per task. */
taskpool *tq_pool(tq_layer *L) { return L->pool; }

void tq_serve(tq_queue *q) {
  taskpool *P = tq_pool(q->L);
  if (P == NULL || !q->declared) return;
  taskpool_queue tq = {.name = q->name,
                       .max_concurrent = q->def.max_concurrent,
                       .rate = q->def.rate,
                       .bucket = q->def.bucket_size,
                       .key_max = q->def.concurrency_key_max,
                       .claim = !q->paused && !q->L->held};
  P->serve(P->arg, &tq); /* no memory: served at the next declaration */
}

void tq_serve_all(tq_layer *L) {
  if (tq_pool(L) == NULL) return;
  for (tq_queue *q = L->qhead; q; q = q->next) tq_serve(q);
}

static void pool_ready(void *arg) {
  tq_layer *L = arg;
  L->pool = mly_runtime_attached(L->rt, TASKPOOL_ATTACH);
  tq_serve_all(L);
}

int tq_pool_user(tq_layer *L) {
  L->pool = mly_runtime_attached(L->rt, TASKPOOL_ATTACH);
  L->pool_user = (taskpool_user){.arg = L, .ready = pool_ready};
  return mly_runtime_attach(L->rt, TASKPOOL_USER_ATTACH, &L->pool_user, NULL);
}
