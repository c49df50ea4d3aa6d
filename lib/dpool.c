/*
 * dpool.c - the durable layer's side of a shared store's task pool: the
 * hook it offers the queue layer (taskpool.h, attached to the runtime),
 * and what the store reports about pooled instances (store_hooks.pooled,
 * unlend, wake).
 *
 * An instance put in the pool leaves memory silently once its step
 * committed (as an evicted one: no END, its children with it), and its
 * slot is lent: the instance lives on in the database and may come back
 * to this process or run in another, so its id must not be made again
 * here until it ended (the store says when: unlend).  Under a task pool
 * a slot outside this process's range is never reused here either
 * (machine.c, slots_own_only): such ids move between processes too.
 */
#include "durable.h"
#include "taskpool.h"

#include <stdlib.h>

static mly_store *store_of(void *arg) {
  mly_runtime *rt = arg;
  return rt->dur && !rt->stopping ? rt->dur->s : NULL;
}

static int tp_put(void *arg, mly_id id, const char *queue, int32_t priority,
                  int64_t eta_ms, const char *key) {
  mly_store *s = store_of(arg);
  return s ? s->ops->tasks->put(s, id, queue, priority, eta_ms, key)
           : MLY_ESHUTDOWN;
}

static int tp_drop(void *arg, mly_id id) {
  mly_store *s = store_of(arg);
  return s ? s->ops->tasks->drop(s, id) : MLY_ESHUTDOWN;
}

static bool tp_granted(void *arg, mly_id id) {
  mly_store *s = store_of(arg);
  return s && s->ops->tasks->granted(s, id);
}

static int tp_serve(void *arg, const taskpool_queue *q) {
  mly_store *s = store_of(arg);
  return s ? s->ops->tasks->serve(s, q->name, q->max_concurrent, q->rate,
                                  q->bucket, q->key_max, q->claim)
           : MLY_ESHUTDOWN;
}

static int tp_ask(void *arg, const char *queue, const char *key, mly_id id) {
  mly_store *s = store_of(arg);
  return s ? s->ops->tasks->ask(s, queue, key, id) : MLY_ESHUTDOWN;
}

int dpool_attach(mly_runtime *rt) {
  if (rt->dur == NULL || rt->dur->s->ops->tasks == NULL) return 0;
  taskpool *p = calloc(1, sizeof *p);
  if (p == NULL) return MLY_ENOMEM;
  *p = (taskpool){.arg = rt, .put = tp_put, .drop = tp_drop,
                  .granted = tp_granted, .serve = tp_serve, .ask = tp_ask};
  int rc = mly_runtime_attach(rt, TASKPOOL_ATTACH, p, free);
  if (rc < 0) {
    free(p);
    return rc;
  }
  rt->slots_own_only = true;
  taskpool_user *u = mly_runtime_attached(rt, TASKPOOL_USER_ATTACH);
  if (u != NULL) u->ready(u->arg);
  return 0;
}

void dpool_pooled(void *arg, const mly_id *ids, size_t n) {
  mly_runtime *rt = arg;
  durable_leave(rt, ids, n);
  for (size_t i = 0; i < n; i++) slot_lend(rt, (uint32_t)ids[i]);
}

void dpool_unlend(void *arg, const mly_id *ids, size_t n) {
  mly_runtime *rt = arg;
  for (size_t i = 0; i < n; i++) slot_unlend(rt, (uint32_t)ids[i]);
}

void dpool_wake(void *arg, mly_id id) { mly_wake(arg, id); }
