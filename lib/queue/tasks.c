/*
 * tasks.c - looking at tasks and acting on them from outside: listings
 * for tools (`mealy queue`), dead letters retried or deleted, purges.
 *
 * Listings read the task instances themselves (their data and context),
 * not the dispatcher's memory: a task asleep since a restart is listed
 * as well as one waiting for a slot.  O(instances) per listing.
 */
#include "queue.h"

#include <stdlib.h>
#include <string.h>

const char *mly_task_state_name(mly_task_state s) {
  switch (s) {
  case MLY_TASK_SCHEDULED: return "scheduled";
  case MLY_TASK_WAITING: return "waiting";
  case MLY_TASK_RUNNING: return "running";
  case MLY_TASK_DEAD: return "dead";
  }
  return "unknown";
}

void tq_task_info(const tq_data *d, mly_id id, const char *n,
                  const mly_value *payload, const tq_queue *q,
                  mly_task_info *out) {
  memset(out, 0, sizeof *out);
  out->id = id;
  out->queue = tq_d_queue(d);
  size_t pre = strlen(TQ_NAME_PREFIX) + strlen(out->queue) + 1;
  out->name = n && strlen(n) > pre ? n + pre : NULL;
  out->target.kind = d->kind;
  out->target.name = tq_d_target(d);
  out->state = d->state;
  out->priority = d->priority;
  out->eta_ms = d->eta_ms;
  out->created_ms = d->created_ms;
  out->first_run_ms = d->first_run_ms;
  out->attempts = d->attempts;
  out->failures = d->failures;
  out->last_error = d->last_error;
  out->last_msg = tq_d_msg(d);
  out->payload = payload;
  tq_resolve(q, &d->retry, &out->retry);
}

static int fill(tq_layer *L, mly_id id, mly_task_info *out) {
  tq_data *d = mly_instance_data(L->rt, id);
  if (d == NULL) return MLY_ESRCH;
  /* restored from version 1, its body has not run yet: converted here
   * (the same task, the same meaning), as its body would */
  if (d->layout != TQ_LAYOUT) tq_d_upgrade(d);
  tq_queue *q = NULL;
  HASH_FIND_STR(L->queues, tq_d_queue(d), q);
  tq_task_info(d, id, mly_instance_name(L->rt, id),
               mly_instance_context(L->rt, id), q, out);
  return 0;
}

typedef struct walk {
  tq_layer *L;
  const char *queue;
  unsigned states;
  int (*cb)(const mly_task_info *, void *);
  void *arg;
} walk;

static int walk_one(const mly_info *i, void *p) {
  walk *w = p;
  if (strcmp(i->type, TQ_TYPE) != 0) return 0;
  mly_task_info t;
  if (fill(w->L, i->id, &t) < 0) return 0;
  if (!(t.state & w->states)) return 0;
  if (w->queue && strcmp(w->queue, t.queue) != 0) return 0;
  return w->cb(&t, w->arg);
}

int mly_task_foreach(mly_runtime *rt, const char *queue, unsigned states,
                     int (*cb)(const mly_task_info *, void *), void *arg) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return MLY_ENOENT;
  if (cb == NULL) return MLY_EINVAL;
  walk w = {L, queue, states, cb, arg};
  return mly_foreach(rt, walk_one, &w);
}

static bool is_task(tq_layer *L, mly_id id) {
  mly_info i;
  return mly_info_get(L->rt, id, &i) == 0 && strcmp(i.type, TQ_TYPE) == 0;
}

int mly_task_info_get(mly_runtime *rt, mly_id id, mly_task_info *out) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return MLY_ENOENT;
  if (out == NULL) return MLY_EINVAL;
  if (!is_task(L, id)) return MLY_ESRCH;
  return fill(L, id, out);
}

int mly_task_retry(mly_runtime *rt, mly_id id, const mly_retry *fresh) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return MLY_ENOENT;
  if (!is_task(L, id)) return MLY_ESRCH;
  tq_data *d = mly_instance_data(rt, id);
  if (d->layout != TQ_LAYOUT) tq_d_upgrade(d); /* as fill() */
  if (d->state != MLY_TASK_DEAD) return MLY_EINVAL;
  if (fresh && tq_check_retry(fresh, tq_d_queue(d), NULL, 0) < 0)
    return MLY_EINVAL;
  mly_retry unset = MLY_RETRY_UNSET;
  const mly_retry *r = fresh ? fresh : &unset;
  /* journaled with the event: a map by name, not the C struct's bytes */
  mly_value *p = mly_value_map();
  if (p == NULL || mly_map_set_int(p, "task_retry_limit", r->task_retry_limit) ||
      mly_map_set_int(p, "min_backoff_ms", r->min_backoff_ms) ||
      mly_map_set_int(p, "max_backoff_ms", r->max_backoff_ms) ||
      mly_map_set_int(p, "max_doublings", r->max_doublings) ||
      mly_map_set_int(p, "task_age_limit_ms", r->task_age_limit_ms) ||
      mly_map_set_double(p, "jitter", r->jitter)) {
    mly_value_free(p);
    return MLY_ENOMEM;
  }
  return mly_runtime_send(rt, id, L->ev_retry, p);
}

int mly_task_delete(mly_runtime *rt, mly_id id) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return MLY_ENOENT;
  if (!is_task(L, id)) return MLY_ESRCH;
  tq_rec *r = tq_rec_find(L, id);
  if (r && r->pool_inflight > 0) return MLY_EBUSY;
  return mly_kill(rt, id);
}

typedef struct ids {
  mly_id *v;
  size_t n, cap;
} ids;

static int collect(const mly_task_info *t, void *p) {
  ids *s = p;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    mly_id *v = realloc(s->v, cap * sizeof *v);
    if (v == NULL) return MLY_ENOMEM;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = t->id;
  return 0;
}

int mly_queue_purge(mly_runtime *rt, const char *queue, size_t *n) {
  if (n) *n = 0;
  if (queue == NULL) return MLY_EINVAL;
  ids s = {0};
  int rc = mly_task_foreach(rt, queue, MLY_TASKS_ALL, collect, &s);
  for (size_t i = 0; rc == 0 && i < s.n; i++)
    if (mly_task_delete(rt, s.v[i]) == 0 && n) (*n)++;
  free(s.v);
  return rc;
}

int mly_task_lookup(mly_runtime *rt, const char *queue, const char *name,
                    mly_name_info *out) {
  char iname[MLY_INSTANCE_NAME_MAX + 2];
  if (queue == NULL) queue = MLY_QUEUE_DEFAULT;
  if (name == NULL || out == NULL) return MLY_EINVAL;
  if (snprintf(iname, sizeof iname, TQ_NAME_PREFIX "%s:%s", queue, name) >
      MLY_INSTANCE_NAME_MAX)
    return MLY_EINVAL;
  return mly_name_lookup(rt, iname, out);
}

/* ---- queues ---- */

typedef struct counts {
  mly_queue_info *qi;
} counts;

static int count_one(const mly_task_info *t, void *p) {
  mly_queue_info *qi = ((counts *)p)->qi;
  switch (t->state) {
  case MLY_TASK_SCHEDULED: qi->scheduled++; break;
  case MLY_TASK_WAITING: qi->waiting++; break;
  case MLY_TASK_RUNNING: qi->running++; break;
  case MLY_TASK_DEAD: qi->dead++; break;
  }
  return 0;
}

static int qinfo(tq_queue *q, mly_queue_info *out) {
  memset(out, 0, sizeof *out);
  if (tq_journaled(q->L)) tq_states_sync(q->L); /* the saved pause */
  out->def = q->def;
  out->paused = q->paused;
  const qs_data *sd = q->state_id ? mly_instance_data(q->L->rt, q->state_id)
                                  : NULL;
  out->paused_saved = sd != NULL && sd->paused;
  for (const tq_step *st = q->L->steps; st; st = st->hh.next)
    if (st->rec.q == q) {
      if (st->rec.holds_slot) out->steps_running++;
      else out->steps_waiting++;
    }
  out->started = q->started;
  out->succeeded = q->succeeded;
  out->failed = q->failed;
  out->dead_lettered = q->dead_lettered;
  out->singular = q->singular;
  out->permanent = q->permanent;
  out->timed_out = q->timed_out;
  out->tokens = q->tokens;
  counts c = {out};
  return mly_task_foreach(q->L->rt, q->name, MLY_TASKS_ALL, count_one, &c);
}

int mly_queue_def_get(mly_runtime *rt, const char *queue,
                      mly_queue_def *out) {
  tq_layer *L = tq_get(rt);
  if (L == NULL || queue == NULL) return MLY_ENOENT;
  tq_queue *q = tq_queue_find(L, queue);
  if (q == NULL) return MLY_ENOENT;
  *out = q->def;
  return 0;
}

int mly_queue_info_get(mly_runtime *rt, const char *queue,
                       mly_queue_info *out) {
  tq_layer *L = tq_get(rt);
  if (L == NULL || queue == NULL) return MLY_ENOENT;
  if (out == NULL) return MLY_EINVAL;
  tq_queue *q = tq_queue_find(L, queue);
  if (q == NULL) return MLY_ENOENT;
  return qinfo(q, out);
}

int mly_queue_foreach(mly_runtime *rt,
                      int (*cb)(const mly_queue_info *, void *), void *arg) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return MLY_ENOENT;
  if (cb == NULL) return MLY_EINVAL;
  for (tq_queue *q = L->qhead; q; q = q->next) {
    if (!q->declared) continue;
    mly_queue_info qi;
    int rc = qinfo(q, &qi);
    if (rc == 0) rc = cb(&qi, arg);
    if (rc != 0) return rc;
  }
  return 0;
}
