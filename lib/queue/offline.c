/*
 * offline.c - the task queues of a state directory, read with no
 * runtime (`mealy queue ls|show --state-dir DIR`): the tasks and queue
 * states among the live instances mly_journal_live reads.
 *
 * Nothing is locked or changed: a host may have the directory open, and
 * what is read is a moment of it.  What lives only in a host's memory
 * is not there: a queue's declaration (its limits), and the counters
 * since its start.  A queue is known here by its tasks and its state
 * instance (qstate.c: one exists once it was paused), and "default".
 */
#include "queue.h"

#include <stdlib.h>
#include <string.h>

/* l's data as a `type`'s (size bytes) into out, zero-filled past what
 * the record kept (no trailing zero bytes are written); false: another
 * type, or longer than this code's. */
static bool live_data(const mly_live *l, const char *type, void *out,
                      size_t size) {
  if (strcmp(l->type, type) != 0 || l->data_len > size) return false;
  memset(out, 0, size);
  if (l->data_len) memcpy(out, l->data, l->data_len);
  return true;
}

/* either layout, made current and NUL-safe */
static bool task_data(const mly_live *l, tq_data *d) {
  if (!live_data(l, TQ_TYPE, d, sizeof *d)) return false;
  tq_d_upgrade(d);
  return true;
}

typedef struct tscan {
  const char *queue;
  unsigned states;
  int (*cb)(const mly_task_info *, void *);
  void *arg;
} tscan;

static int task_one(const mly_live *l, void *p) {
  tscan *s = p;
  tq_data d; /* aligned, NUL-safe */
  if (!task_data(l, &d)) return 0;
  if (!(d.state & s->states)) return 0;
  if (s->queue && strcmp(s->queue, tq_d_queue(&d)) != 0) return 0;
  mly_task_info t;
  tq_task_info(&d, l->id, l->name, l->context, NULL, &t);
  return s->cb(&t, s->arg);
}

/* Where the live instances come from: a state directory's journal, or
 * a PostgreSQL store (its conninfo). */
typedef int (*live_fn)(const char *src, int (*cb)(const mly_live *, void *),
                       void *arg, char *err, size_t errlen);

static int task_scan(live_fn live, const char *src, const char *queue,
                     unsigned states, int (*cb)(const mly_task_info *, void *),
                     void *arg, char *err, size_t errlen) {
  if (src == NULL || cb == NULL) return MLY_EINVAL;
  tscan s = {queue, states, cb, arg};
  return live(src, task_one, &s, err, errlen);
}

int mly_task_scan(const char *dir, const char *queue, unsigned states,
                  int (*cb)(const mly_task_info *, void *), void *arg,
                  char *err, size_t errlen) {
  return task_scan(mly_journal_live, dir, queue, states, cb, arg, err,
                   errlen);
}

int mly_task_scan_pg(const char *conninfo, const char *queue,
                     unsigned states,
                     int (*cb)(const mly_task_info *, void *), void *arg,
                     char *err, size_t errlen) {
  return task_scan(mly_store_pg_live, conninfo, queue, states, cb, arg, err,
                   errlen);
}

typedef struct qrows {
  mly_queue_info *v;
  size_t n, cap;
  int rc;
} qrows;

static mly_queue_info *row(qrows *r, const char *name) {
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->v[i].def.name, name) == 0) return &r->v[i];
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 16;
    mly_queue_info *v = realloc(r->v, cap * sizeof *v);
    if (v == NULL) return NULL;
    r->v = v;
    r->cap = cap;
  }
  mly_queue_info *q = &r->v[r->n++];
  memset(q, 0, sizeof *q);
  char *copy = strdup(name);
  if (copy == NULL) {
    r->n--;
    return NULL;
  }
  q->def.name = copy;
  q->def.retry = (mly_retry)MLY_RETRY_UNSET;
  return q;
}

static int queue_one(const mly_live *l, void *p) {
  qrows *r = p;
  mly_queue_info *q;
  tq_data d;
  qs_data qd;
  if (task_data(l, &d)) {
    if ((q = row(r, tq_d_queue(&d))) == NULL) return MLY_ENOMEM;
    switch (d.state) {
    case MLY_TASK_SCHEDULED: q->scheduled++; break;
    case MLY_TASK_WAITING: q->waiting++; break;
    case MLY_TASK_RUNNING: q->running++; break;
    case MLY_TASK_DEAD: q->dead++; break;
    }
  } else if (live_data(l, TQ_QSTATE_TYPE, &qd, sizeof qd)) {
    qd.queue[MLY_NAME_MAX] = '\0';
    if ((q = row(r, qd.queue)) == NULL) return MLY_ENOMEM;
    q->paused = qd.paused != 0;
  }
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const mly_queue_info *)a)->def.name,
                ((const mly_queue_info *)b)->def.name);
}

static int queue_scan(live_fn live, const char *src,
                      int (*cb)(const mly_queue_info *, void *), void *arg,
                      char *err, size_t errlen) {
  if (src == NULL || cb == NULL) return MLY_EINVAL;
  qrows r = {0};
  int rc = row(&r, MLY_QUEUE_DEFAULT) ? 0 : MLY_ENOMEM;
  if (rc == 0) rc = live(src, queue_one, &r, err, errlen);
  if (rc == 0 && r.n > 1)
    qsort(r.v + 1, r.n - 1, sizeof *r.v, by_name); /* default first */
  for (size_t i = 0; rc == 0 && i < r.n; i++) rc = cb(&r.v[i], arg);
  for (size_t i = 0; i < r.n; i++) free((char *)r.v[i].def.name);
  free(r.v);
  return rc;
}

int mly_queue_scan(const char *dir, int (*cb)(const mly_queue_info *, void *),
                   void *arg, char *err, size_t errlen) {
  return queue_scan(mly_journal_live, dir, cb, arg, err, errlen);
}

int mly_queue_scan_pg(const char *conninfo,
                      int (*cb)(const mly_queue_info *, void *), void *arg,
                      char *err, size_t errlen) {
  return queue_scan(mly_store_pg_live, conninfo, cb, arg, err, errlen);
}
