/*
 * qmetrics.c - the queue layer's figures in its runtime's metrics
 * (mly_metrics_write): per declared queue, its tasks by state and
 * whether it is paused (gauges), and since the layer opened, attempts
 * started, attempts by outcome, tasks dead-lettered and attempts timed
 * out (counters).  Every figure is read through mly_queue_foreach, the
 * same numbers `mealy queue ls` shows; the source is added when the
 * queues are opened and removed when the layer goes.
 */
#include "queue.h"

typedef struct qm {
  mly_metrics *mx;
  int pass; /* which family is being written */
} qm;

enum { QM_TASKS, QM_PAUSED, QM_STARTED, QM_ATTEMPTS, QM_DEAD, QM_TIMEOUT, QM_N };

static const struct {
  const char *name;
  mly_metric_type type;
  const char *help;
} fam[QM_N] = {
    {"mealy_queue_tasks", MLY_METRIC_GAUGE,
     "Tasks in the queue now, by state (scheduled, waiting, running, dead)."},
    {"mealy_queue_paused", MLY_METRIC_GAUGE, "1 when the queue is paused."},
    {"mealy_queue_attempts_started_total", MLY_METRIC_COUNTER,
     "Attempts started since the queues were opened."},
    {"mealy_queue_attempts_total", MLY_METRIC_COUNTER,
     "Attempts ended since the queues were opened, by outcome (succeeded, "
     "failed: counted and retried within the policy, singular: retried "
     "uncounted, permanent)."},
    {"mealy_queue_dead_lettered_total", MLY_METRIC_COUNTER,
     "Tasks that became dead letters since the queues were opened."},
    {"mealy_queue_timeouts_total", MLY_METRIC_COUNTER,
     "Attempts that passed the queue's timeout since the queues were "
     "opened (counted as failed too)."},
};

static int one(const mly_queue_info *qi, void *arg) {
  qm *s = arg;
  const char *n = fam[s->pass].name, *q = qi->def.name;
  int rc = 0;
  switch (s->pass) {
  case QM_TASKS: {
    static const char *st[] = {"scheduled", "waiting", "running", "dead"};
    const uint64_t v[] = {qi->scheduled, qi->waiting, qi->running, qi->dead};
    for (int i = 0; i < 4 && rc == 0; i++) {
      const char *l[] = {"queue", q, "state", st[i], NULL};
      rc = mly_metrics_sample_u64(s->mx, n, l, v[i]);
    }
    return rc;
  }
  case QM_ATTEMPTS: {
    static const char *oc[] = {"succeeded", "failed", "singular", "permanent"};
    const uint64_t v[] = {qi->succeeded, qi->failed, qi->singular,
                          qi->permanent};
    for (int i = 0; i < 4 && rc == 0; i++) {
      const char *l[] = {"queue", q, "outcome", oc[i], NULL};
      rc = mly_metrics_sample_u64(s->mx, n, l, v[i]);
    }
    return rc;
  }
  default: {
    const char *l[] = {"queue", q, NULL};
    uint64_t v = s->pass == QM_PAUSED    ? (uint64_t)qi->paused
                 : s->pass == QM_STARTED ? qi->started
                 : s->pass == QM_DEAD    ? qi->dead_lettered
                                         : qi->timed_out;
    return mly_metrics_sample_u64(s->mx, n, l, v);
  }
  }
}

int tq_metrics_source(mly_metrics *mx, void *arg) {
  tq_layer *L = arg;
  qm s = {mx, 0};
  for (s.pass = 0; s.pass < QM_N; s.pass++) {
    int rc = mly_metrics_family(mx, fam[s.pass].name, fam[s.pass].type,
                                fam[s.pass].help);
    if (rc < 0 || (rc = mly_queue_foreach(L->rt, one, &s)) < 0) return rc;
  }
  return 0;
}
