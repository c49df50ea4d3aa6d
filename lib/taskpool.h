/*
 * taskpool.h - the hook the durable layer offers the queue layer when
 * its store is shared (lib/ only; queue/ includes it, it includes only
 * mealy.h).  Over a shared store (PostgreSQL) a due task is not tied to
 * the process that made it: the task's step that reaches `waiting` puts
 * it in the store's pool (it leaves this process once that step
 * committed), and any process that serves its queue claims it with a
 * slot of the queue's global limits, in one transaction (pg_tasks.c).
 *
 * The durable layer attaches a `taskpool` to the runtime under
 * TASKPOOL_ATTACH (mly_runtime_attach) when it opens such a store; the
 * journal has none, and the queue layer then works as before (limits in
 * memory).  Loop thread only.
 */
#ifndef MLY_TASKPOOL_H
#define MLY_TASKPOOL_H

#include "mealy.h"

#define TASKPOOL_ATTACH "mly.taskpool"

/* A queue as this process serves it: its limits (every process that
 * serves it gives them; the database keeps the last). */
typedef struct taskpool_queue {
  const char *name;
  uint32_t max_concurrent; /* slots held across all processes */
  double rate;             /* grants per second, 0: none */
  uint32_t bucket;         /* tokens the bucket holds */
  uint32_t key_max;        /* slots per key value, 0: no key limit */
  bool claim;              /* false: paused or held here, claim nothing */
} taskpool_queue;

typedef struct taskpool {
  void *arg;
  /* The step running now (of instance id) puts the instance in the pool
   * of `queue` when it commits, due at eta_ms (wall clock ms), with its
   * priority and key value (NULL: none); the instance then leaves this
   * process.  0 or MLY_ENOMEM. */
  int (*put)(void *arg, mly_id id, const char *queue, int32_t priority,
             int64_t eta_ms, const char *key);
  /* The global slot id holds goes with this turn's commit (its attempt,
   * or its step, is over).  0 or MLY_ENOMEM. */
  int (*drop)(void *arg, mly_id id);
  /* id came from the pool with a slot granted and not yet used: true
   * once (the mark is taken). */
  bool (*granted)(void *arg, mly_id id);
  /* Serve (claim tasks of) q with its limits; again when they change. */
  int (*serve)(void *arg, const taskpool_queue *q);
  /* A slot of `queue` for the step of instance id (not a task): 1 held
   * (granted before, not dropped), 0 asked for (id is woken when it is
   * granted), < 0 error. */
  int (*ask)(void *arg, const char *queue, const char *key, mly_id id);
} taskpool;

/* The queue layer, when it opened first, attaches this under
 * TASKPOOL_USER_ATTACH: the durable layer calls ready once it attached
 * its pool (the queues declared so far are served then). */
#define TASKPOOL_USER_ATTACH "mly.taskpool.user"
typedef struct taskpool_user {
  void *arg;
  void (*ready)(void *arg);
} taskpool_user;

#endif
