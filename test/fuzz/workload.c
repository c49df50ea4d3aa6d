/*
 * workload.c - the durable machine types of the journal fuzzer: together
 * they make every kind of record a journal holds.
 *
 *   counter  sleeps and counts, then ends          CREATE, STEP, END
 *            (named ones: a name, and a TOMB       (a context and a name
 *            once compacted; one with a context     in S, a tombstone in
 *            counts in it too)                      END)
 *   parent   spawns counters, awaits each one       STEP spawned, END
 *                                                   with a CHILD_EXIT notice
 *   pinger   requests with a payload, awaits reply  STEP out events, REPLY
 *   ponger   answers any request                    waits with corr ids
 *   waiter   awaits a named event, then a timed one EVENT with a string id,
 *                                                   a wall-clock deadline
 *   dropper  naps while events queue, drops them    DROP
 *
 * Bodies run on state that may come from a fuzzed record, so every index
 * is bounded, every id may name nobody (sends then fail, harmlessly), and
 * no loop goes round without a wait that yields (a request to nobody
 * fails at once: the pinger stops instead of asking again).
 */
#include "workload.h"

#include <stddef.h>

#define COUNTER_POINTS(X) X(counter, tick)
MLY_POINTS(counter, COUNTER_POINTS);
#define PARENT_POINTS(X) X(parent, kids)
MLY_POINTS(parent, PARENT_POINTS);
#define PINGER_POINTS(X) X(pinger, asked)
MLY_POINTS(pinger, PINGER_POINTS);
#define PONGER_POINTS(X) X(ponger, listen)
MLY_POINTS(ponger, PONGER_POINTS);
#define WAITER_POINTS(X) X(waiter, hello) X(waiter, later)
MLY_POINTS(waiter, WAITER_POINTS);
#define DROPPER_POINTS(X) X(dropper, nap) X(dropper, stop)
MLY_POINTS(dropper, DROPPER_POINTS);

static int counter_run(mly_machine *m, void *data) {
  wl_counter *c = data;
  MLY_BEGIN(m);
  while (c->n < c->target) {
    c->n++;
    if (mly_context(m) != NULL && c->n % 2) /* every other step: changed */
      mly_map_set_uint(mly_context(m), "n", c->n);
    MLY_SLEEP_AT(m, counter_tick, c->sleep_ms % 1000);
  }
  MLY_END(m);
}

static int parent_run(mly_machine *m, void *data) {
  wl_parent *p = data;
  MLY_BEGIN(m);
  mly_type *t = mly_type_find(mly_machine_runtime(m), "counter");
  for (p->i = 0; t && p->i < p->nkids && p->i < 4; p->i++) {
    wl_counter c = {.target = 2 + p->i, .sleep_ms = 1};
    if (mly_spawn_child(m, t, &c, sizeof c, &p->kid[p->i]) < 0) break;
  }
  for (p->i = 0; p->i < p->nkids && p->i < 4; p->i++)
    MLY_AWAIT_CHILD_AT(m, parent_kids, p->kid[p->i], &p->status);
  MLY_END(m);
}

static int pinger_run(mly_machine *m, void *data) {
  wl_pp *p = data;
  MLY_BEGIN(m);
  while (p->n < p->target) {
    MLY_REQUEST_AT(m, pinger_asked, p->peer, WL_EV_PING, mly_value_uint(p->n),
                   5000);
    if (mly_current_event(m) == NULL) break; /* no peer: it fails at once */
    p->n++;
  }
  mly_send(m, p->peer, WL_EV_STOP, NULL);
  MLY_END(m);
}

static mly_value *pong_payload(uint32_t n) {
  mly_value *v = mly_value_map();
  if (v == NULL) return NULL;
  mly_map_set_uint(v, "n", n);
  mly_map_set_str(v, "who", "ponger");
  return v;
}

static int ponger_run(mly_machine *m, void *data) {
  wl_pp *p = data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_AWAIT_AT(m, ponger_listen, MLY_EV_ANY, -1);
    const mly_event *e = mly_current_event(m);
    if (e == NULL || e->id == WL_EV_STOP) break;
    if (e->flags & MLY_EVF_REQUEST)
      mly_reply(m, e, WL_EV_PONG, pong_payload(p->n));
    p->n++;
  }
  MLY_END(m);
}

static int waiter_run(mly_machine *m, void *data) {
  wl_waiter *w = data;
  MLY_BEGIN(m);
  MLY_AWAIT_NAME_AT(m, waiter_hello, WL_EV_NAME, -1);
  w->got++;
  MLY_AWAIT_AT(m, waiter_later, WL_EV_JUNK, 60 * 1000);
  w->got++;
  MLY_END(m);
}

static int dropper_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_SLEEP_AT(m, dropper_nap, 20);
  mly_inbox_drop(m, MLY_EV_ANY);
  MLY_AWAIT_AT(m, dropper_stop, WL_EV_STOP, -1);
  MLY_END(m);
}

static int reg(mly_runtime *rt, const char *name, mly_fn run,
               const char *const *points, uint32_t npoints, size_t size,
               mly_type **out) {
  mly_type_def def = {.name = name, .run = run, .points = points,
                      .npoints = npoints, .data_size = size, .version = 1,
                      .flags = MLY_TYPE_DURABLE};
  return mly_type_register(rt, &def, out);
}

int wl_register(mly_runtime *rt, wl_types *t) {
  int rc = reg(rt, "counter", counter_run, counter_points, counter__npoints,
               sizeof(wl_counter), &t->counter);
  if (rc == 0)
    rc = reg(rt, "parent", parent_run, parent_points, parent__npoints,
             sizeof(wl_parent), &t->parent);
  if (rc == 0)
    rc = reg(rt, "pinger", pinger_run, pinger_points, pinger__npoints,
             sizeof(wl_pp), &t->pinger);
  if (rc == 0)
    rc = reg(rt, "ponger", ponger_run, ponger_points, ponger__npoints,
             sizeof(wl_pp), &t->ponger);
  if (rc == 0)
    rc = reg(rt, "waiter", waiter_run, waiter_points, waiter__npoints,
             sizeof(wl_waiter), &t->waiter);
  if (rc == 0)
    rc = reg(rt, "dropper", dropper_run, dropper_points, dropper__npoints,
             sizeof(int), &t->dropper);
  return rc;
}
