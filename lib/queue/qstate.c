/*
 * qstate.c - what a queue keeps across restarts besides its tasks: for
 * now whether it is paused.  D10: that too is a durable machine,
 * "mly.queue", named "queue:NAME", whose data holds the flag; it waits
 * at its one point `idle` and commits a step whenever the flag in memory
 * differs from the one it holds.  It exists once a queue was paused with
 * a journal open.
 *
 * The state an instance holds wins over a declaration's `paused` (that
 * is only where a queue without one starts), and a pause or resume made
 * before the instance was found wins over the instance.
 *
 * Loading: the paused flags are read from those instances once recovery
 * has brought them back and before any task is dispatched: at the first
 * step of any task or queue instance (every dispatch after a restart
 * happens inside such a step), and at each declaration made with the
 * journal open.  A pause made before the journal was open is written
 * then.
 */
#include "queue.h"

#include <stdio.h>
#include <string.h>

#define QS_PREFIX "queue:"

#define QS_POINTS(X) X(qs, idle)
MLY_POINTS(qs, QS_POINTS);

bool tq_journaled(tq_layer *L) {
  mly_journal_stats st;
  return mly_journal_stats_get(L->rt, &st) == 0;
}

static void spawn_state(tq_layer *L, tq_queue *q) {
  char name[MLY_NAME_MAX + sizeof QS_PREFIX];
  snprintf(name, sizeof name, QS_PREFIX "%s", q->name);
  qs_data d;
  memset(&d, 0, sizeof d);
  snprintf(d.queue, sizeof d.queue, "%s", q->name);
  d.paused = q->paused;
  mly_spawn_options so = {.arg = &d, .arg_len = sizeof d, .name = name};
  mly_id id = 0;
  if (mly_spawn_opts(L->rt, L->qs_type, &so, &id) == 0) {
    q->state_id = id;
    q->state_dirty = false;
  }
}

/* Find the queue's state instance and take its flag (once). */
static void load(tq_layer *L, tq_queue *q) {
  if (q->state_id != 0) return;
  char name[MLY_NAME_MAX + sizeof QS_PREFIX];
  mly_name_info ni;
  snprintf(name, sizeof name, QS_PREFIX "%s", q->name);
  if (mly_name_lookup(L->rt, name, &ni) == 0 && ni.state == MLY_NAME_LIVE) {
    const qs_data *d = mly_instance_data(L->rt, ni.id);
    if (d == NULL) return;
    q->state_id = ni.id;
    if (!q->state_dirty) q->paused = d->paused;
    else mly_wake(L->rt, ni.id); /* a pause or resume since: write it */
    q->state_dirty = false;
    return;
  }
  if (q->state_dirty && tq_journaled(L)) spawn_state(L, q);
}

void tq_states_sync(tq_layer *L) {
  if (L->states_synced) return;
  L->states_synced = true;
  for (tq_queue *q = L->qhead; q; q = q->next) load(L, q);
}

void tq_state_declared(tq_queue *q) {
  if (tq_journaled(q->L)) load(q->L, q);
}

void tq_state_changed(tq_queue *q) {
  tq_layer *L = q->L;
  if (q->state_id != 0) {
    mly_wake(L->rt, q->state_id);
    return;
  }
  q->state_dirty = true;
  if (!tq_journaled(L)) return;
  /* a pause with the journal open but before any task or queue instance
   * stepped (an idle host): the states are looked up now (recovery is
   * over once mly_journal_open returned), so this one is written */
  tq_states_sync(L);
  if (q->state_id == 0) spawn_state(L, q);
}

static bool differs(mly_machine *m, qs_data *d) {
  tq_layer *L = tq_get(mly_machine_runtime(m));
  tq_states_sync(L);
  tq_queue *q = tq_queue_get(L, d->queue);
  if (q == NULL) return false;
  if (q->state_id == 0) q->state_id = mly_self(m);
  return q->paused != (bool)d->paused;
}

static int qs_run(mly_machine *m, void *data) {
  qs_data *d = data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_WAIT_UNTIL_AT(m, qs_idle, differs(m, d));
    d->paused = !d->paused; /* committed when it waits again */
  }
  MLY_END(m);
}

static void qs_fini(mly_machine *m, void *data) {
  qs_data *d = data;
  tq_layer *L = tq_get(mly_machine_runtime(m));
  if (L == NULL) return;
  tq_queue *q = NULL;
  HASH_FIND_STR(L->queues, d->queue, q);
  if (q && q->state_id == mly_self(m)) q->state_id = 0;
}

int tq_qstate_register(tq_layer *L) {
  mly_type_def def = {.name = TQ_QSTATE_TYPE,
                      .run = qs_run,
                      MLY_TYPE_POINTS(qs),
                      .data_size = sizeof(qs_data),
                      .version = 1,
                      .flags = MLY_TYPE_DURABLE,
                      .fini = qs_fini};
  return mly_type_register(L->rt, &def, &L->qs_type);
}
