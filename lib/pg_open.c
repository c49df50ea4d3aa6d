/*
 * pg_open.c - mly_store_postgres (mealy.h): the durable layer of a
 * runtime on the PostgreSQL store (lib/store/pg_store.c), as
 * mly_journal_open is the durable layer on the journal.
 */
#include "durable.h"
#include "store/pg_store.h"

int mly_store_postgres(mly_runtime *rt, const mly_store_pg_options *o,
                       char *err, size_t errlen) {
  char scratch[512];
  if (err == NULL || errlen == 0) {
    err = scratch;
    errlen = sizeof scratch;
  }
  err[0] = '\0';
  if (o == NULL || o->conninfo == NULL || o->conninfo[0] == '\0')
    return jr_errf(err, errlen, MLY_EINVAL, "postgresql store: no conninfo");
  int rc = durable_open_check(rt, o->durable, err, errlen);
  if (rc < 0) return rc;
  pg_store_options po = {.conninfo = o->conninfo, .lease_ms = o->lease_ms,
                         .poll_ms = o->poll_ms, .give_up_ms = o->give_up_ms,
                         .lock_timeout_ms = o->lock_timeout_ms,
                         .statement_timeout_ms = o->statement_timeout_ms};
  mly_store *s = NULL;
  rc = pg_store_open(mly_runtime_loop(rt), &po, &s, err, errlen);
  if (rc < 0) return rc;
  return durable_open(rt, s, o->durable, err, errlen);
}
