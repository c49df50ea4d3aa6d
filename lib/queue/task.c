/*
 * task.c - a task is a durable machine (D10): "mly.task".
 *
 *   begin      its creation is durable: on_added is told
 *   scheduled  sleeps until its eta (a durable timer: a task due while
 *              the process was down runs at once after the restart)
 *   waiting    due: registered with its queue's dispatcher, waits for a
 *              slot (after a restart every task here registers again:
 *              that rebuilds the dispatcher)
 *   running    an attempt runs (a task found here after a restart was
 *              interrupted by the crash: it runs again, not counted)
 *   finishing  it succeeded but an abandoned blocking attempt still
 *              reads its payload: it ends when that one comes back
 *   dead       failed for good; waits for mly_task_retry or a delete
 *
 * Its fixed data (tq_data) says where it stands; its payload is its
 * context, written with its creation and never again (no step changes
 * it).  Success is the END record of the instance: the commit that says
 * "done" is the one that ends it, so a success that committed is never
 * run again, and one that did not is run again.
 */
#include "queue.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASK_POINTS(X)                                                  \
  X(task, scheduled) X(task, waiting) X(task, running) X(task, finishing) \
  X(task, dead)
MLY_POINTS(task, TASK_POINTS);

static tq_layer *layer_of(mly_machine *m) {
  return tq_get(mly_machine_runtime(m));
}

tq_rec *tq_rec_find(const tq_layer *L, mly_id id) {
  uint32_t s = (uint32_t)id;
  tq_rec *r = s < L->nrecs ? L->recs[s] : NULL;
  return r != NULL && r->id == id ? r : NULL;
}

/* At its slot; a slot holds one live task at a time. */
static int rec_put(tq_layer *L, tq_rec *r) {
  uint32_t s = (uint32_t)r->id;
  if (s >= L->nrecs) {
    uint32_t n = L->nrecs ? L->nrecs : 256;
    while (n <= s) n *= 2;
    tq_rec **v = realloc(L->recs, (size_t)n * sizeof *v);
    if (v == NULL) return MLY_ENOMEM;
    memset(v + L->nrecs, 0, (size_t)(n - L->nrecs) * sizeof *v);
    L->recs = v;
    L->nrecs = n;
  }
  L->recs[s] = r;
  return 0;
}

/* The concurrency key's value in the payload, as text: a string, or an
 * integer printed; anything else (or none) has no key. */
static char *key_value(const tq_queue *q, const mly_value *payload) {
  if (q->key[0] == '\0' || mly_value_type(payload) != MLY_V_MAP) return NULL;
  mly_value *v = mly_map_get(payload, q->key);
  const char *s;
  int64_t i;
  uint64_t u;
  char buf[32];
  if (mly_value_get_str(v, &s, NULL) == 0) return strdup(s);
  if (mly_value_get_int(v, &i) == 0) {
    snprintf(buf, sizeof buf, "%" PRId64, i);
    return strdup(buf);
  }
  if (mly_value_get_uint(v, &u) == 0) {
    snprintf(buf, sizeof buf, "%" PRIu64, u);
    return strdup(buf);
  }
  return NULL;
}

/* Registers the task with its queue the first time (again after a
 * restart); true once a slot is granted. */
static bool slot(tq_layer *L, mly_machine *m, tq_data *d) {
  mly_id id = mly_self(m);
  tq_rec *r = tq_rec_find(L, id);
  tq_states_sync(L); /* paused flags are known before anything starts */
  if (r == NULL) {
    tq_queue *q = tq_queue_get(L, tq_d_queue(d));
    if (q == NULL || (r = freelist_get(&L->rec_pool, sizeof *r)) == NULL)
      return false;
    r->id = id;
    r->heap_idx = TQ_NO_HEAP;
    r->q = q;
    if (rec_put(L, r) < 0) {
      freelist_put(&L->rec_pool, r);
      return false;
    }
    r->keyval = key_value(q, mly_instance_context(L->rt, id));
    if (d->seq > L->last_seq) L->last_seq = d->seq;
  }
  if (r->granted) return true;
  taskpool *P = tq_pool(L);
  if (P != NULL) { /* a shared store: the slot is the store's (pool.c) */
    if (P->granted(P->arg, id)) {
      r->granted = r->holds_slot = true;
      r->q->running++;
      return true;
    }
    /* to the pool with this step; it leaves once that committed (no
     * memory: it stays here, waiting, until its next wake) */
    P->put(P->arg, id, r->q->name, d->priority, d->eta_ms, r->keyval);
    return false;
  }
  if (r->heap_idx == TQ_NO_HEAP && !r->blocked && !r->holds_slot) {
    r->priority = d->priority;
    r->eta_ms = d->eta_ms;
    r->seq = d->seq;
    tq_enqueue(r->q, r);
  }
  return r->granted;
}

static bool reported(tq_layer *L, mly_machine *m) {
  tq_rec *r = tq_rec_find(L, mly_self(m));
  if (r && r->finished) return true;
  if (mly_recovered(m) && (r == NULL || r->att == NULL)) {
    /* the crash interrupted it: run it again, not counted */
    if (r == NULL) return true;
    r->finished = true;
    r->outcome = MLY_TASK_RETRY_SINGULAR;
    r->err = MLY_ELOST;
    snprintf(r->msg, sizeof r->msg, "interrupted by a restart");
    return true;
  }
  return false;
}

static void set_msg(tq_data *d, int err, const char *msg) {
  d->last_error = err;
  tq_d_set_msg(d, msg);
}

/* What the attempt's outcome means for the task: true when it ends. */
static bool settle(tq_layer *L, mly_machine *m, tq_data *d) {
  tq_rec *r = tq_rec_find(L, mly_self(m));
  mly_task_outcome o = MLY_TASK_RETRY_SINGULAR;
  if (r && r->finished) {
    o = r->outcome;
    r->finished = false;
  } else if (r == NULL) {
    set_msg(d, MLY_ELOST, "interrupted by a restart");
  }
  if (r && o != MLY_TASK_OK) set_msg(d, r->err, r->msg);
  /* the record resolved its queue once */
  tq_queue *q = r ? r->q : tq_queue_get(L, tq_d_queue(d));
  if (o == MLY_TASK_OK) {
    if (q) q->succeeded++;
    return true;
  }
  int64_t now = tq_wall_ms(); /* read only when it did not succeed */
  mly_retry p;
  tq_resolve(q, &d->retry, &p);
  bool dead = o == MLY_TASK_PERMANENT;
  if (q && o == MLY_TASK_PERMANENT) q->permanent++;
  if (q && o == MLY_TASK_RETRY_SINGULAR) q->singular++;
  if (o == MLY_TASK_RETRY) {
    d->failures++;
    if (q) q->failed++;
    if ((int64_t)d->failures > p.task_retry_limit) dead = true;
    if (p.task_age_limit_ms > 0 && d->first_run_ms > 0 &&
        now - d->first_run_ms >= p.task_age_limit_ms)
      dead = true;
  }
  if (dead) {
    d->state = MLY_TASK_DEAD;
    if (q) q->dead_lettered++;
    return false;
  }
  int64_t delay = 0;
  if (r && r->err != MLY_ELOST) { /* a crash's rerun goes at once */
    delay = mly_retry_backoff(&p, d->failures ? d->failures : 1);
    if (p.jitter > 0 && delay > 0)
      delay -= (int64_t)((double)delay * p.jitter *
                         ((double)(tq_rand(L) >> 11) / 9007199254740992.0));
  }
  d->eta_ms = now + delay;
  d->state = MLY_TASK_SCHEDULED;
  return false;
}

/* mly_task_retry's event: a fresh policy (or the queue's). */
static void revive(mly_machine *m, tq_data *d) {
  const mly_event *e = mly_current_event(m);
  mly_retry fresh = MLY_RETRY_UNSET;
  const mly_value *p = e ? e->payload : NULL;
  /* a field missing or malformed stays unset: the queue's */
  mly_map_get_int(p, "task_retry_limit", &fresh.task_retry_limit);
  mly_map_get_int(p, "min_backoff_ms", &fresh.min_backoff_ms);
  mly_map_get_int(p, "max_backoff_ms", &fresh.max_backoff_ms);
  mly_map_get_int(p, "max_doublings", &fresh.max_doublings);
  mly_map_get_int(p, "task_age_limit_ms", &fresh.task_age_limit_ms);
  mly_map_get_double(p, "jitter", &fresh.jitter);
  d->retry = fresh;
  d->failures = 0;
  d->first_run_ms = 0;
  d->eta_ms = tq_wall_ms();
  d->state = MLY_TASK_SCHEDULED;
}

static void added(tq_layer *L, mly_machine *m, int status) {
  if (L->added == NULL) return;
  mly_id id = mly_self(m);
  tq_added *a = NULL;
  HASH_FIND(hh, L->added, &id, sizeof id, a);
  if (a == NULL) return;
  HASH_DEL(L->added, a);
  a->cb(L->rt, status, id, a->arg);
  free(a);
}

static int64_t until(int64_t eta_ms) {
  int64_t d = eta_ms - tq_wall_ms();
  return d > 0 ? d : 0;
}

static bool drained(tq_layer *L, mly_machine *m) {
  tq_rec *r = tq_rec_find(L, mly_self(m));
  return r == NULL || r->pool_inflight == 0;
}

static int task_run(mly_machine *m, void *data) {
  tq_data *d = data;
  tq_layer *L = layer_of(m); /* once per step: a lookup by key */
  if (d->layout != TQ_LAYOUT) tq_d_upgrade(d); /* restored from version 1 */
  MLY_BEGIN(m);
  added(L, m, 0);
  for (;;) {
    if (d->state == MLY_TASK_DEAD) {
      MLY_AWAIT_AT(m, task_dead, L->ev_retry, -1);
      if (mly_current_event(m) == NULL) MLY_EXIT(m, MLY_ECANCELED);
      revive(m, d);
    }
    d->state = MLY_TASK_SCHEDULED;
    /* in a task pool it waits there for its eta (the claim looks) */
    if (tq_pool(L) == NULL && until(d->eta_ms) > 0)
      MLY_SLEEP_AT(m, task_scheduled, until(d->eta_ms));
    if (mly_shutdown_requested(m)) MLY_EXIT(m, MLY_ECANCELED);
    d->state = MLY_TASK_WAITING;
    MLY_WAIT_UNTIL_AT(m, task_waiting,
                      slot(L, m, d) || mly_shutdown_requested(m));
    if (mly_shutdown_requested(m)) MLY_EXIT(m, MLY_ECANCELED);
    d->state = MLY_TASK_RUNNING;
    d->attempts++;
    if (d->first_run_ms == 0) d->first_run_ms = tq_wall_ms();
    tq_attempt_start(L, tq_rec_find(L, mly_self(m)), d);
    MLY_WAIT_UNTIL_AT(m, task_running, reported(L, m));
    if (tq_pool(L)) tq_pool(L)->drop(tq_pool(L)->arg, mly_self(m)); /* with
      this step's commit: the attempt is over */
    if (settle(L, m, d)) {
      MLY_WAIT_UNTIL_AT(m, task_finishing, drained(L, m));
      MLY_EXIT(m, 0);
    }
  }
  MLY_END(m);
}

static void task_fini(mly_machine *m, void *data) {
  (void)data;
  tq_layer *L = layer_of(m);
  if (L == NULL) return;
  mly_id id = mly_self(m);
  tq_rec *r = tq_rec_find(L, id);
  if (r) {
    tq_abandon(r);
    tq_forget(r);
    L->recs[(uint32_t)id] = NULL;
    free(r->keyval);
    freelist_put(&L->rec_pool, r);
  }
  tq_added *a = NULL;
  if (L->added) HASH_FIND(hh, L->added, &id, sizeof id, a);
  if (a) { /* it went before its first step: not known durable */
    int err = mly_journal_error(L->rt);
    HASH_DEL(L->added, a);
    a->cb(L->rt, err ? err : MLY_ESHUTDOWN, id, a->arg);
    free(a);
  }
}

int tq_task_register(tq_layer *L) {
  mly_type_def def = {.name = TQ_TYPE,
                      .run = task_run,
                      MLY_TYPE_POINTS(task),
                      .data_size = sizeof(tq_data),
                      .version = 2, /* tq_data's packed layout */
                      .min_version = 1,
                      .flags = MLY_TYPE_DURABLE,
                      .fini = task_fini};
  return mly_type_register(L->rt, &def, &L->type);
}

/* ---- adding ---- */

static bool valid_tname(const char *s) {
  if (*s == '\0') return false;
  for (; *s; s++)
    if ((unsigned char)*s < 0x21 || *s == 0x7f || *s == '/') return false;
  return true;
}

int mly_task_add(mly_runtime *rt, const mly_task_target *what,
                 mly_value *payload, const mly_task_opts *o) {
  static const mly_task_opts none = {0};
  tq_layer *L = tq_get(rt);
  int rc = 0;
  if (o == NULL) o = &none;
  if (o->id_out) *o->id_out = 0;
  if (L == NULL) rc = MLY_ENOENT;
  else if (what == NULL || what->name == NULL || *what->name == '\0' ||
           strlen(what->name) > MLY_NAME_MAX ||
           (what->kind != MLY_TASK_FUNCTION && what->kind != MLY_TASK_MACHINE))
    rc = MLY_EINVAL;
  else if (what->kind == MLY_TASK_FUNCTION ? tq_fn_find(L, what->name) == NULL
                                           : !L->has_starter)
    rc = MLY_ENOENT;
  if (rc < 0) {
    mly_value_free(payload);
    return rc;
  }
  const char *qn = o->queue ? o->queue : MLY_QUEUE_DEFAULT;
  tq_queue *q = tq_queue_find(L, qn);
  char iname[MLY_INSTANCE_NAME_MAX + 2];
  if (q == NULL) rc = MLY_ENOENT;
  else if (o->priority < 0 || (uint32_t)o->priority >= q->def.priority_levels)
    rc = MLY_EINVAL;
  else if (o->retry && tq_check_retry(o->retry, qn, NULL, 0) < 0)
    rc = MLY_EINVAL;
  else if (o->name &&
           (!valid_tname(o->name) ||
            snprintf(iname, sizeof iname, TQ_NAME_PREFIX "%s:%s", qn,
                     o->name) > MLY_INSTANCE_NAME_MAX))
    rc = MLY_EINVAL;
  if (rc < 0) {
    mly_value_free(payload);
    return rc;
  }
  tq_data d;
  memset(&d, 0, sizeof d);
  d.layout = TQ_LAYOUT;
  tq_d_set_text(&d, qn, what->name, NULL);
  d.kind = (uint8_t)what->kind;
  d.state = MLY_TASK_SCHEDULED;
  d.priority = o->priority;
  d.created_ms = tq_wall_ms();
  d.eta_ms = o->eta_ms ? o->eta_ms
                       : d.created_ms + (o->countdown_ms > 0 ? o->countdown_ms : 0);
  /* insertion order that survives restarts: wall-clock microseconds,
   * made strictly increasing */
  uint64_t seq = (uint64_t)d.created_ms * 1000u;
  d.seq = L->last_seq = seq > L->last_seq ? seq : L->last_seq + 1;
  mly_retry unset = MLY_RETRY_UNSET;
  d.retry = o->retry ? *o->retry : unset;
  tq_added *a = NULL;
  if (o->on_added && (a = calloc(1, sizeof *a)) == NULL) {
    mly_value_free(payload);
    return MLY_ENOMEM;
  }
  mly_spawn_options so = {.arg = &d, .arg_len = sizeof d, .context = payload,
                          .name = o->name ? iname : NULL};
  mly_id id = 0;
  rc = mly_spawn_opts(rt, L->type, &so, &id);
  if (rc == MLY_EEXIST && o->exists) {
    if (mly_name_lookup(rt, iname, o->exists) < 0)
      memset(o->exists, 0, sizeof *o->exists);
  }
  if (rc < 0) {
    free(a);
    return rc;
  }
  if (a) {
    a->id = id;
    a->cb = o->on_added;
    a->arg = o->arg;
    HASH_ADD(hh, L->added, id, sizeof a->id, a);
  }
  if (o->id_out) *o->id_out = id;
  return 0;
}

int mly_defer(mly_runtime *rt, const char *function, mly_value *payload,
              const mly_task_opts *opts) {
  mly_task_target t = {MLY_TASK_FUNCTION, function};
  return mly_task_add(rt, &t, payload, opts);
}

/* slot.c reads a step's key as a task's is read. */
char *tq_key_value(const tq_queue *q, const mly_value *payload) {
  return key_value(q, payload);
}
