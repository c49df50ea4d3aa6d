/*
 * layer.c - the queue layer of one runtime: its queues as declared, the
 * functions tasks may name, the starter of machine tasks, retry policy
 * arithmetic.  It lives attached to the runtime (mly_runtime_attach) and
 * goes with it, after every task instance has gone.
 *
 * Policy resolution is in one place (tq_resolve): a task's field, else
 * its queue's, else the built-in default; everything else reads the
 * resolved policy.
 */
#include "queue.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int64_t tq_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t tq_now_us(void) { return uv_hrtime() / 1000u; }

uint64_t tq_rand(tq_layer *L) { /* xorshift64 */
  uint64_t x = L->rand;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return L->rand = x;
}

tq_layer *tq_get(mly_runtime *rt) { return mly_runtime_attached(rt, TQ_ATTACH); }

static void layer_release(void *p) {
  tq_layer *L = p;
  tq_queue *q, *qt;
  HASH_ITER(hh, L->queues, q, qt) {
    HASH_DEL(L->queues, q);
    tq_queue_free(q);
  }
  tq_fn *f, *ft;
  HASH_ITER(hh, L->fns, f, ft) {
    HASH_DEL(L->fns, f);
    free(f);
  }
  tq_added *a, *at;
  HASH_ITER(hh, L->added, a, at) {
    HASH_DEL(L->added, a);
    free(a);
  }
  tq_steps_free(L);
  tq_sched_free_all(L);
  mly_metrics_source_remove(L->rt, tq_metrics_source, L); /* ENOENT: fine */
  /* the task fini hooks took every record out before this runs */
  freelist_drain(&L->rec_pool);
  freelist_drain(&L->att_pool);
  free(L->recs);
  free(L);
}

static const mly_queue_def default_queue = {.name = MLY_QUEUE_DEFAULT,
                                            .retry = MLY_RETRY_UNSET};

int mly_queues_open(mly_runtime *rt) {
  if (tq_get(rt) != NULL) return MLY_EEXIST;
  tq_layer *L = calloc(1, sizeof *L);
  if (L == NULL) return MLY_ENOMEM;
  L->rt = rt;
  if (getrandom(&L->rand, sizeof L->rand, GRND_NONBLOCK) != sizeof L->rand)
    L->rand = uv_hrtime();
  L->rand |= 1;
  int rc = mly_runtime_attach(rt, TQ_ATTACH, L, layer_release);
  if (rc < 0) {
    free(L);
    return rc;
  }
  if ((rc = mly_event_id(rt, TQ_EV_RETRY, &L->ev_retry)) < 0 ||
      (rc = tq_task_register(L)) < 0 || (rc = tq_clock_register(L)) < 0 ||
      (rc = tq_qstate_register(L)) < 0 || (rc = tq_sched_register(L)) < 0 ||
      (rc = mly_queue_declare(rt, &default_queue, NULL, 0)) < 0 ||
      (rc = mly_metrics_source_add(rt, tq_metrics_source, L)) < 0 ||
      (rc = tq_pool_user(L)) < 0)
    return rc; /* attached: released with the runtime */
  return 0;
}

/* ---- queues ---- */

tq_queue *tq_queue_find(tq_layer *L, const char *name) {
  tq_queue *q = NULL;
  HASH_FIND_STR(L->queues, name, q);
  return q && q->declared ? q : NULL;
}

tq_queue *tq_queue_get(tq_layer *L, const char *name) {
  tq_queue *q = NULL;
  HASH_FIND_STR(L->queues, name, q);
  if (q) return q;
  q = calloc(1, sizeof *q);
  if (q == NULL) return NULL;
  q->L = L;
  snprintf(q->name, sizeof q->name, "%s", name);
  q->def.name = q->name;
  q->def.retry = (mly_retry)MLY_RETRY_UNSET; /* the built-ins until declared */
  HASH_ADD_STR(L->queues, name, q);
  if (L->qtail) L->qtail->next = q;
  else L->qhead = q;
  L->qtail = q;
  return q;
}

bool tq_valid_qname(const char *s) {
  if (s == NULL || *s == '\0' || strlen(s) > MLY_NAME_MAX) return false;
  for (; *s; s++)
    if (!(*s == '_' || *s == '-' || *s == '.' || (*s >= '0' && *s <= '9') ||
          (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
      return false;
  return true;
}

static int bad(char *err, size_t len, int rc, const char *fmt, const char *q) {
  if (err && len) snprintf(err, len, fmt, q);
  return rc;
}

static void fill_retry(mly_retry *r, const mly_retry *d) {
  if (r->task_retry_limit < 0) r->task_retry_limit = d->task_retry_limit;
  if (r->min_backoff_ms < 0) r->min_backoff_ms = d->min_backoff_ms;
  if (r->max_backoff_ms < 0) r->max_backoff_ms = d->max_backoff_ms;
  if (r->max_doublings < 0) r->max_doublings = d->max_doublings;
  if (r->task_age_limit_ms < 0) r->task_age_limit_ms = d->task_age_limit_ms;
  if (r->jitter < 0) r->jitter = d->jitter;
}

static const mly_retry builtin = {
    MLY_DEFAULT_TASK_RETRY_LIMIT, MLY_DEFAULT_MIN_BACKOFF_MS,
    MLY_DEFAULT_MAX_BACKOFF_MS,   MLY_DEFAULT_MAX_DOUBLINGS, 0, 0.0};

int tq_check_retry(const mly_retry *r, const char *q, char *err,
                   size_t len) {
  if (!(r->jitter <= 1.0) && !(r->jitter < 0))
    return bad(err, len, MLY_EINVAL,
               "queue %s: jitter is a fraction of the delay: 0 to 1", q);
  if (r->min_backoff_ms >= 0 && r->max_backoff_ms >= 0 &&
      r->min_backoff_ms > r->max_backoff_ms)
    return bad(err, len, MLY_EINVAL,
               "queue %s: min_backoff is longer than max_backoff; lower it", q);
  return 0;
}

int mly_queue_declare(mly_runtime *rt, const mly_queue_def *def, char *err,
                      size_t errlen) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return MLY_ENOENT;
  if (def == NULL || !tq_valid_qname(def->name))
    return bad(err, errlen, MLY_EINVAL,
               "queue name '%s': 1 to 63 of [A-Za-z0-9_.-]",
               def && def->name ? def->name : "");
  const char *n = def->name;
  if (!(def->rate >= 0) || isinf(def->rate))
    return bad(err, errlen, MLY_EINVAL,
               "queue %s: rate is tasks per second, 0 (no limit) or more", n);
  if (def->priority_levels > TQ_MAX_LEVELS)
    return bad(err, errlen, MLY_EINVAL,
               "queue %s: at most 1000 priority levels", n);
  if (def->concurrency_key &&
      (*def->concurrency_key == '\0' ||
       strlen(def->concurrency_key) > MLY_NAME_MAX))
    return bad(err, errlen, MLY_EINVAL,
               "queue %s: concurrency_key is a payload key of 1 to 63 bytes",
               n);
  int rc = tq_check_retry(&def->retry, n, err, errlen);
  if (rc < 0) return rc;
  tq_queue *q = tq_queue_get(L, n);
  if (q == NULL) return MLY_ENOMEM;
  bool was = q->declared;
  q->def = *def;
  q->def.name = q->name;
  if (def->concurrency_key) {
    snprintf(q->key, sizeof q->key, "%s", def->concurrency_key);
    q->def.concurrency_key = q->key;
    if (q->def.concurrency_key_max == 0) q->def.concurrency_key_max = 1;
  } else {
    q->key[0] = '\0';
    q->def.concurrency_key_max = 0;
  }
  if (q->def.max_concurrent == 0) q->def.max_concurrent = TQ_DEFAULT_CONCURRENT;
  if (q->def.priority_levels == 0) q->def.priority_levels = TQ_DEFAULT_LEVELS;
  if (q->def.bucket_size == 0)
    q->def.bucket_size = def->rate >= 1 ? (uint32_t)ceil(def->rate) : 1;
  if (q->def.timeout_ms < 0) q->def.timeout_ms = 0;
  fill_retry(&q->def.retry, &builtin);
  if (!was) {
    q->tokens = q->def.bucket_size;
    q->refill_us = tq_now_us();
    q->paused = def->paused;
  }
  if (q->tokens > q->def.bucket_size) q->tokens = q->def.bucket_size;
  q->declared = true;
  tq_state_declared(q);
  tq_serve(q); /* a shared store: its limits, and claims */
  tq_dispatch(q);
  return 0;
}

static int set_paused(mly_runtime *rt, const char *queue, bool paused) {
  tq_layer *L = tq_get(rt);
  if (L == NULL || queue == NULL) return MLY_ENOENT;
  tq_queue *q = tq_queue_find(L, queue);
  if (q == NULL) return MLY_ENOENT;
  if (tq_journaled(L)) tq_states_sync(L); /* compared with what is saved */
  if (q->paused != paused) {
    q->paused = paused;
    tq_state_changed(q);
    tq_serve(q);
  }
  tq_dispatch(q);
  return 0;
}

int mly_queue_pause(mly_runtime *rt, const char *queue) {
  return set_paused(rt, queue, true);
}
int mly_queue_resume(mly_runtime *rt, const char *queue) {
  return set_paused(rt, queue, false);
}

int mly_queues_hold(mly_runtime *rt, bool hold) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return MLY_ENOENT;
  L->held = hold;
  tq_serve_all(L);
  if (!hold)
    for (tq_queue *q = L->qhead; q; q = q->next) tq_dispatch(q);
  return 0;
}

/* ---- functions ---- */

tq_fn *tq_fn_find(tq_layer *L, const char *name) {
  tq_fn *f = L->fn_last;
  if (f && strcmp(f->name, name) == 0) return f;
  f = NULL;
  HASH_FIND_STR(L->fns, name, f);
  if (f) L->fn_last = f;
  return f;
}

static bool valid_fname(const char *s) {
  if (s == NULL || *s == '\0' || strlen(s) > MLY_NAME_MAX) return false;
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) return false;
  return true;
}

bool mly_defer_known(mly_runtime *rt, const char *name) {
  tq_layer *L = tq_get(rt);
  return L && name && tq_fn_find(L, name) != NULL;
}

int mly_defer_register(mly_runtime *rt, const char *name, mly_task_fn fn,
                       void *arg, unsigned flags) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return MLY_ENOENT;
  if (!valid_fname(name) || fn == NULL || (flags & ~MLY_DEFER_BLOCKING))
    return MLY_EINVAL;
  if (tq_fn_find(L, name)) return MLY_EEXIST;
  tq_fn *f = calloc(1, sizeof *f);
  if (f == NULL) return MLY_ENOMEM;
  snprintf(f->name, sizeof f->name, "%s", name);
  f->fn = fn;
  f->arg = arg;
  f->flags = flags;
  HASH_ADD_STR(L->fns, name, f);
  return 0;
}

int mly_task_set_starter(mly_runtime *rt, mly_task_fn start, void *arg,
                         unsigned flags) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return MLY_ENOENT;
  if (flags & ~MLY_DEFER_BLOCKING) return MLY_EINVAL;
  L->starter.fn = start;
  L->starter.arg = arg;
  L->starter.flags = flags;
  L->has_starter = start != NULL;
  return 0;
}

/* ---- retry policy ---- */

void tq_resolve(const tq_queue *q, const mly_retry *given, mly_retry *out) {
  *out = *given;
  fill_retry(out, q ? &q->def.retry : &builtin);
  fill_retry(out, &builtin);
}

int64_t mly_retry_backoff(const mly_retry *r, uint64_t failures) {
  if (r == NULL || failures == 0) return 0;
  double min = r->min_backoff_ms > 0 ? (double)r->min_backoff_ms : 0;
  double max = r->max_backoff_ms >= 0 ? (double)r->max_backoff_ms : INT64_MAX;
  uint64_t n = failures - 1, dbl = r->max_doublings > 0 ? r->max_doublings : 0;
  double d;
  if (n <= dbl) d = ldexp(min, (int)(n > 1000 ? 1000 : n));
  else d = ldexp(min, (int)(dbl > 1000 ? 1000 : dbl)) * (double)(n - dbl + 1);
  if (d > max) d = max;
  if (d > 9e15) d = 9e15;
  return (int64_t)d;
}
