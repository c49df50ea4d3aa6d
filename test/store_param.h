/*
 * store_param.h - which store the durable-machine suites, the crash
 * harness and the benchmarks run on: a test parameter, not a copy of
 * the tests (issue 13, DESIGN.md D11).
 *
 * Every such test opens its durable runtime through h_durable_open, the
 * same call as mly_journal_open.  MLY_TEST_STORE names the store:
 *
 *   journal      (the default, also when unset or empty) mly_journal_open
 *                on o->dir
 *   postgresql   mly_store_postgres on the private cluster of
 *                test/pg/with_cluster.sh (MLY_TEST_PG; without it the
 *                test fails saying so).  o->dir names the test's own
 *                database (one per state directory, made with the schema
 *                the first time), so reopening a directory recovers what
 *                the runtime before left there.  The lease is
 *                MLY_TEST_PG_LEASE_MS (default 1000 ms); an open first
 *                waits (at most three leases) until no other process
 *                holds a lease there: these suites run one process at a
 *                time, and a reopen means the one before is gone (killed
 *                or closed), as the journal's lock says.
 *
 * A name
 * this test build does not know is a failure, loud, never a skip: the
 * process says so on stderr and aborts, so the suite, the crash harness
 * or the benchmark fails.  Suites that test the journal itself (its
 * files, its reader, power loss, its fuzzers) call mly_journal_open.
 */
#ifndef MLY_TEST_STORE_PARAM_H
#define MLY_TEST_STORE_PARAM_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <unistd.h>

#include "mealy.h"

/* The stores this test build can run on. */
#define H_STORES "journal, postgresql"

/* The store the tests run on: MLY_TEST_STORE, or "journal". */
static inline const char *h_store_name(void) {
  const char *s = getenv("MLY_TEST_STORE");
  return s == NULL || *s == '\0' ? "journal" : s;
}

/* How many other processes hold a lease in the database (-1: error). */
static inline long h_pg_leases(PGconn *c) {
  PGresult *r = PQexec(c, "SELECT count(*) FROM mealy.nodes WHERE taken_by"
                          " IS NULL AND lease_until > clock_timestamp()");
  long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atol(PQgetvalue(r, 0, 0))
                                                : -1;
  PQclear(r);
  return n;
}

static inline int h_pg_open(mly_runtime *rt, const mly_journal_options *o,
                            char *err, size_t errlen) {
  const char *ci = getenv("MLY_TEST_PG");
  if (ci == NULL || *ci == '\0') {
    fprintf(stderr, "MLY_TEST_STORE=postgresql needs MLY_TEST_PG: run the "
            "suite through test/pg/with_cluster.sh; the test fails rather "
            "than skip\n");
    fflush(stderr);
    abort();
  }
  const char *dir = o && o->dir ? o->dir : "mealy-state";
  uint64_t h = 1469598103934665603ull; /* FNV-1a of the directory */
  for (const char *p = dir; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  char name[32], dbci[1200], sql[64];
  snprintf(name, sizeof name, "mly_%016llx", (unsigned long long)h);
  snprintf(dbci, sizeof dbci, "%s dbname=%s", ci, name);
  PGconn *c = PQconnectdb(ci);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
  PQclear(PQexec(c, sql)); /* made already: fine */
  PQfinish(c);
  int rc = mly_store_pg_init(dbci, NULL, err, errlen);
  if (rc < 0) return rc;
  const char *l = getenv("MLY_TEST_PG_LEASE_MS");
  uint32_t lease = l && *l ? (uint32_t)atol(l) : 1000;
  c = PQconnectdb(dbci);
  for (int i = 0; i < (int)(3 * lease / 20) && h_pg_leases(c) > 0; i++)
    usleep(20000);
  PQfinish(c);
  mly_store_pg_options po = {.conninfo = dbci, .lease_ms = lease,
                             .durable = o};
  /* MLY_TEST_PG_TASKS=local: tasks stay in their process (no pool) */
  const char *tk = getenv("MLY_TEST_PG_TASKS");
  po.local_tasks = tk != NULL && strcmp(tk, "local") == 0;
  return mly_store_postgres(rt, &po, err, errlen);
}

static inline int h_durable_open(mly_runtime *rt, const mly_journal_options *o,
                                 char *err, size_t errlen) {
  const char *s = h_store_name();
  if (strcmp(s, "journal") == 0) return mly_journal_open(rt, o, err, errlen);
  if (strcmp(s, "postgresql") == 0) return h_pg_open(rt, o, err, errlen);
  fprintf(stderr, "MLY_TEST_STORE=%s: this test build knows no such store "
          "(it knows: " H_STORES "); the test fails rather than skip\n", s);
  fflush(stderr);
  abort();
}

/* Journal only (a minimal form of the mark the `suites` branch adds;
 * same names): a test whose subject is the journal's own files or
 * figures is not run on another store, and stdout says so, one line
 * each: "journal only: NAME" (never a quiet skip). */
static inline bool h_on_journal(void) {
  return strcmp(h_store_name(), "journal") == 0;
}

static inline void h_journal_only_note(const char *test, const char *what) {
  printf("journal only: %s%s%s (not %s on %s)\n", test, what ? ": " : "",
         what ? what : "", what ? "checked" : "run", h_store_name());
  fflush(stdout);
}

#endif /* MLY_TEST_STORE_PARAM_H */
