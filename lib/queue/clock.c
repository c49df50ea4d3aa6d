/*
 * clock.c - the queue layer's one timer: attempt timeouts and token
 * refills.
 *
 * It is a plain (not durable) machine, spawned when some queue needs to
 * be looked at again later and gone when none does, so an idle queue
 * layer holds no timer and does not keep the loop alive.  It sleeps
 * until the earliest time any queue asked for (tq_clock_need); an
 * earlier need wakes it with an event so it sleeps again, shorter.
 * Everything it does is memory: nothing to recover.
 */
#include "queue.h"

#include <limits.h>

#define TQ_EV_REARM 1u

static uint64_t next_due(tq_layer *L) {
  uint64_t due = 0;
  for (tq_queue *q = L->qhead; q; q = q->next) {
    uint64_t d = tq_queue_due(q);
    if (d && (due == 0 || d < due)) due = d;
  }
  if (L->sc_due_us && (due == 0 || L->sc_due_us < due)) due = L->sc_due_us;
  return due;
}

void tq_tick(tq_layer *L) {
  uint64_t now = tq_now_us();
  for (tq_queue *q = L->qhead; q; q = q->next) {
    tq_timeouts(q, now);
    tq_dispatch(q);
  }
  tq_sched_tick(L);
}

static int clock_run(mly_machine *m, void *data) {
  tq_layer *L = *(tq_layer **)data;
  MLY_BEGIN(m);
  for (;;) {
    L->clock_due = next_due(L);
    if (L->clock_due == 0) break;
    MLY_AWAIT(m, TQ_EV_REARM,
              (int64_t)(L->clock_due > tq_now_us()
                            ? (L->clock_due - tq_now_us() + 999) / 1000
                            : 0));
    if (mly_shutdown_requested(m)) break;
    tq_tick(L);
  }
  MLY_END(m);
}

static void clock_fini(mly_machine *m, void *data) {
  tq_layer *L = *(tq_layer **)data;
  if (L->clock == mly_self(m)) {
    L->clock = 0;
    L->clock_due = 0;
  }
}

int tq_clock_register(tq_layer *L) {
  mly_type_def def = {.name = TQ_CLOCK_TYPE,
                      .run = clock_run,
                      .data_size = sizeof(tq_layer *),
                      .fini = clock_fini};
  return mly_type_register(L->rt, &def, &L->clock_type);
}

void tq_clock_need(tq_layer *L, uint64_t due_us) {
  if (due_us == 0) return;
  if (L->clock == 0) {
    if (mly_runtime_stopping(L->rt)) return;
    mly_id id;
    if (mly_spawn(L->rt, L->clock_type, &L, sizeof L, &id) == 0) {
      L->clock = id;
      L->clock_due = due_us; /* its first step computes the real one */
    }
    return;
  }
  if (L->clock_due != 0 && due_us >= L->clock_due) return;
  L->clock_due = due_us;
  mly_runtime_send(L->rt, L->clock, TQ_EV_REARM, NULL);
}
