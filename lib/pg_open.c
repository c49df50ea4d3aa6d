/*
 * pg_open.c - mly_store_postgres (mealy.h): the durable layer of a
 * runtime on the PostgreSQL store (lib/store/pg_store.c), as
 * mly_journal_open is the durable layer on the journal.
 */
#include <inttypes.h>

#include "durable.h"
#include "store/pg_store.h"

/* The store's own figures (pg_store_fencing) as mealy_pg_store_*: a
 * metrics source on the runtime, writing while its durable layer is the
 * PostgreSQL store. */
static int counter(mly_metrics *mx, const char *name, const char *help,
                   const char *const *labels, const uint64_t *v, size_t n) {
  int rc = mly_metrics_family(mx, name, MLY_METRIC_COUNTER, help);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = mly_metrics_sample_u64(mx, name, labels ? labels + 3 * i : NULL,
                                v[i]);
  return rc;
}

static int pg_metrics(mly_metrics *mx, void *arg) {
  mly_runtime *rt = arg;
  const mly_store *s = rt->dur ? rt->dur->s : NULL;
  if (s == NULL || !pg_store_is(s)) return 0;
  const pg_store_fencing *f = pg_store_fencing_get(s);
  static const char *const why[] = {
      "reason", "timeout", NULL,      "reason", "aborted", NULL,
      "reason", "out_of_order", NULL};
  const uint64_t retries[] = {f->timeouts, f->aborted, f->out_of_order};
  int rc = mly_metrics_family(mx, "mealy_pg_store_connected",
                              MLY_METRIC_GAUGE,
                              "1: the store's connection to the server is up");
  if (rc == 0)
    rc = mly_metrics_sample_u64(mx, "mealy_pg_store_connected", NULL,
                                pg_store_connected(s));
  if (rc == 0)
    rc = counter(mx, "mealy_pg_store_batches_retried_total",
                 "batches the server cancelled (lock or statement timeout), "
                 "aborted (deadlock, serialization) or refused as out of "
                 "order, each sent again", why, retries, 3);
  if (rc == 0)
    rc = counter(mx, "mealy_pg_store_fenced_batches_total",
                 "batches the fence refused: their steps dropped", NULL,
                 &f->fenced_batches, 1);
  if (rc == 0)
    rc = counter(mx, "mealy_pg_store_evicted_total",
                 "instances that left this process (lease lost, fenced)",
                 NULL, &f->evicted, 1);
  if (rc == 0)
    rc = counter(mx, "mealy_pg_store_adopted_total",
                 "instances of dead processes taken over while running",
                 NULL, &f->adopted, 1);
  if (rc == 0)
    rc = counter(mx, "mealy_pg_store_resyncs_total",
                 "lost connections with batches in flight", NULL,
                 &f->resyncs, 1);
  return rc;
}

int mly_store_postgres(mly_runtime *rt, const mly_store_pg_options *o,
                       char *err, size_t errlen) {
  char scratch[512];
  if (err == NULL || errlen == 0) {
    err = scratch;
    errlen = sizeof scratch;
  }
  err[0] = '\0';
  if (rt == NULL)
    return jr_errf(err, errlen, MLY_EINVAL, "postgresql store: no runtime");
  if (o == NULL || o->conninfo == NULL || o->conninfo[0] == '\0')
    return jr_errf(err, errlen, MLY_EINVAL, "postgresql store: no conninfo");
  /* a lease shorter than a round trip fences every commit; a poll
   * interval of hours is no fallback (mealy.h gives the ranges) */
  if (o->lease_ms && (o->lease_ms < MLY_PG_LEASE_MIN_MS ||
                      o->lease_ms > MLY_PG_LEASE_MAX_MS))
    return jr_errf(err, errlen, MLY_EINVAL, "postgresql store: lease_ms %"
                   PRIu32 " is not from %u to %u (0: 10,000)", o->lease_ms,
                   MLY_PG_LEASE_MIN_MS, MLY_PG_LEASE_MAX_MS);
  if (o->poll_ms && (o->poll_ms < MLY_PG_POLL_MIN_MS ||
                     o->poll_ms > MLY_PG_POLL_MAX_MS))
    return jr_errf(err, errlen, MLY_EINVAL, "postgresql store: poll_ms %"
                   PRIu32 " is not from %u to %u (0: 1,000)", o->poll_ms,
                   MLY_PG_POLL_MIN_MS, MLY_PG_POLL_MAX_MS);
  int rc = durable_open_check(rt, o->durable, err, errlen);
  if (rc < 0) return rc;
  pg_store_options po = {.conninfo = o->conninfo, .lease_ms = o->lease_ms,
                         .poll_ms = o->poll_ms, .give_up_ms = o->give_up_ms,
                         .lock_timeout_ms = o->lock_timeout_ms,
                         .statement_timeout_ms = o->statement_timeout_ms,
                         .local_tasks = o->local_tasks};
  mly_store *s = NULL;
  rc = pg_store_open(mly_runtime_loop(rt), &po, &s, err, errlen);
  if (rc < 0) return rc;
  /* before the store is the runtime's: nothing to undo after it */
  if ((rc = mly_metrics_source_add(rt, pg_metrics, rt)) < 0 &&
      rc != MLY_EEXIST) {
    store_close(s);
    return jr_errf(err, errlen, rc, "postgresql store: %s", mly_strerror(rc));
  }
  rc = durable_open(rt, s, o->durable, err, errlen);
  if (rc < 0) mly_metrics_source_remove(rt, pg_metrics, rt);
  return rc;
}
