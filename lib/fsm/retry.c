/*
 * retry.c - retry policies of the YAML machines: which one applies, and
 * how long to wait before an attempt.
 *
 * A field is taken from the transition being dispatched, else from the
 * machine, else from the queue it runs through (`queue:`, as declared:
 * the queue's own defaults fill what it leaves), else from the built-in
 * default (App Engine's task queue:
 * no retry limit, min_backoff 100 ms, max_backoff 1 h, max_doublings
 * 16, no task_age_limit; jitter 0).  The delay before the n'th retry is
 * App Engine's: min_backoff doubled for each retry up to max_doublings,
 * then growing linearly by the last doubling's step, never above
 * max_backoff; jitter j then draws it uniformly from [d*(1-j), d].
 */
#include "fsmrt.h"

#define DEF_LIMIT (-1)
#define DEF_MIN_MS 100
#define DEF_MAX_MS (3600LL * 1000)
#define DEF_DOUBLINGS 16
#define DEF_AGE (-1)

static int64_t pick(int64_t t, int64_t m, int64_t d) {
  return t >= 0 ? t : m >= 0 ? m : d;
}

static void resolve(const fsm_machine *m, const fsm_transition *t,
                    const fsm_retry *d, fsm_retry *out) {
  static const fsm_retry none = {-1, -1, -1, -1, -1, -1.0};
  const fsm_retry *tr = t ? &t->retry : &none, *mr = m ? &m->retry : &none;
  out->task_retry_limit =
      pick(tr->task_retry_limit, mr->task_retry_limit, d->task_retry_limit);
  out->min_backoff_ms =
      pick(tr->min_backoff_ms, mr->min_backoff_ms, d->min_backoff_ms);
  out->max_backoff_ms =
      pick(tr->max_backoff_ms, mr->max_backoff_ms, d->max_backoff_ms);
  out->max_doublings =
      pick(tr->max_doublings, mr->max_doublings, d->max_doublings);
  out->task_age_limit_ms =
      pick(tr->task_age_limit_ms, mr->task_age_limit_ms, d->task_age_limit_ms);
  out->jitter = tr->jitter >= 0 ? tr->jitter : mr->jitter >= 0 ? mr->jitter
                                                               : d->jitter;
  if (out->jitter > 1) out->jitter = 1;
  if (out->max_backoff_ms < out->min_backoff_ms)
    out->max_backoff_ms = out->min_backoff_ms;
}

void fsm_retry_resolve(const fsm_machine *m, const fsm_transition *t,
                       fsm_retry *out) {
  static const fsm_retry builtin = {DEF_LIMIT, DEF_MIN_MS, DEF_MAX_MS,
                                    DEF_DOUBLINGS, DEF_AGE, 0};
  resolve(m, t, &builtin, out);
}

void fsm_retry_resolve_q(const fsm_machine *m, const fsm_transition *t,
                         const mly_retry *q, fsm_retry *out) {
  fsm_retry d = {q->task_retry_limit, q->min_backoff_ms, q->max_backoff_ms,
                 q->max_doublings,
                 q->task_age_limit_ms > 0 ? q->task_age_limit_ms : -1,
                 q->jitter >= 0 ? q->jitter : 0};
  resolve(m, t, &d, out);
}

int64_t fsm_backoff_ms(const fsm_retry *p, uint32_t attempt) {
  int64_t min = p->min_backoff_ms, max = p->max_backoff_ms;
  if (attempt == 0 || min <= 0) return min > 0 ? min : 0;
  uint64_t k = attempt - 1, dbl = (uint64_t)(p->max_doublings > 0 ? p->max_doublings : 0);
  uint64_t steps = k <= dbl ? k : dbl;
  int64_t d = min;
  for (uint64_t i = 0; i < steps; i++) {
    if (d > max / 2) return max;
    d *= 2;
  }
  if (k > dbl) { /* linear past the doublings */
    uint64_t more = k - dbl;
    if ((uint64_t)d > (uint64_t)max / (more + 1)) return max;
    d *= (int64_t)(more + 1);
  }
  return d < max ? d : max;
}

/* The delay to commit for the attempt'th retry, jitter drawn here. */
int64_t fsm_backoff_pick(fsm_rt *f, const fsm_retry *p, uint32_t attempt) {
  int64_t d = fsm_backoff_ms(p, attempt);
  if (p->jitter > 0 && d > 0) {
    double u = (double)(fsm_rand(f) >> 11) / (double)(1ULL << 53);
    d -= (int64_t)((double)d * p->jitter * u);
  }
  return d;
}

/* A countdown: fixed (min == max), or drawn from [min, max]. */
int64_t fsm_countdown_pick(fsm_rt *f, const fsm_countdown *c) {
  if (c->min_ms < 0 && c->max_ms < 0) return -1;
  int64_t lo = c->min_ms < 0 ? c->max_ms : c->min_ms;
  int64_t hi = c->max_ms < lo ? lo : c->max_ms;
  if (hi == lo) return lo;
  return lo + (int64_t)(fsm_rand(f) % (uint64_t)(hi - lo + 1));
}
