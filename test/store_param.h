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
 *
 * Journal only.  A test (or one check in a test) whose subject is the
 * journal's own figures or files (bytes on disk, fdatasyncs, segments,
 * file damage, compaction, its fault hook) and that no figure of the
 * other store can stand for says so: h_tcase_add_journal_only (harness.h)
 * instead of tcase_add_test, or `if (H_JOURNAL_FIGURE("what"))` around
 * the check.  On another store the test (or the check) does not run and
 * stdout says so, one line each, "journal only: NAME" (never a quiet
 * skip); the suite ends with a count of the tests not run.  With
 * MLY_TEST_JOURNAL_ONLY=N (test/meson.build sets it for every pg- entry:
 * what the README's table claims) the suite fails unless exactly N of its
 * tests are marked: a mark added or removed updates the claim too.  A
 * test that can check the same behaviour on another store by another
 * figure does that instead (e.g. h_pg_count: rows in the test's
 * database).
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

/* The cluster's conninfo (MLY_TEST_PG), the database that stands for
 * the state directory dir (name: n bytes) and its conninfo (dbci: m). */
static inline const char *h_pg_db(const char *dir, char *name, size_t n,
                                  char *dbci, size_t m) {
  const char *ci = getenv("MLY_TEST_PG");
  if (ci == NULL || *ci == '\0') {
    fprintf(stderr, "MLY_TEST_STORE=postgresql needs MLY_TEST_PG: run the "
            "suite through test/pg/with_cluster.sh; the test fails rather "
            "than skip\n");
    fflush(stderr);
    abort();
  }
  if (dir == NULL) dir = "mealy-state";
  uint64_t h = 1469598103934665603ull; /* FNV-1a of the directory */
  for (const char *p = dir; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  snprintf(name, n, "mly_%016llx", (unsigned long long)h);
  snprintf(dbci, m, "%s dbname=%s", ci, name);
  return ci;
}

/* Rows (or any one integer) from the test's own database on PostgreSQL
 * (the one h_durable_open opened for dir): what a test checks there
 * instead of a journal figure.  -1 when the query fails (printed). */
static inline long long h_pg_count(const char *dir, const char *sql) {
  char name[32], dbci[1200];
  h_pg_db(dir, name, sizeof name, dbci, sizeof dbci);
  PGconn *c = PQconnectdb(dbci);
  PGresult *r = PQexec(c, sql);
  long long n = -1;
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
    n = atoll(PQgetvalue(r, 0, 0));
  else
    printf("h_pg_count %s: %s: %s\n", name, sql, PQerrorMessage(c));
  PQclear(r);
  PQfinish(c);
  return n;
}

static inline int h_pg_open(mly_runtime *rt, const mly_journal_options *o,
                            char *err, size_t errlen) {
  char name[32], dbci[1200], sql[64];
  const char *ci = h_pg_db(o ? o->dir : NULL, name, sizeof name, dbci,
                           sizeof dbci);
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
  return mly_store_postgres(rt, &po, err, errlen);
}

/* Forgets what the store holds for the state directory dir (the caller
 * removes the directory itself): on PostgreSQL its database is dropped
 * (made again at the next open).  No runtime may have it open.  0, or -1
 * (printed). */
static inline int h_store_wipe(const char *dir) {
  if (strcmp(h_store_name(), "postgresql") != 0) return 0;
  char name[32], dbci[1200], sql[96];
  const char *ci = h_pg_db(dir, name, sizeof name, dbci, sizeof dbci);
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
  PGconn *c = PQconnectdb(ci);
  PQclear(PQexec(c, "SET client_min_messages = warning"));
  PGresult *r = PQexec(c, sql);
  int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
  if (rc < 0) printf("h_store_wipe %s: %s", name, PQerrorMessage(c));
  PQclear(r);
  PQfinish(c);
  return rc;
}

/* The tests run on the journal (the default). */
static inline bool h_on_journal(void) {
  return strcmp(h_store_name(), "journal") == 0;
}

/* Tests marked journal only, not run on this store (counted at
 * registration, in the suite's main process). */
static int h_journal_only_n __attribute__((unused));

/* Says that `test` (and, with `what`, only that check of it) is journal
 * only and is not run on this store. */
static inline void h_journal_only_note(const char *test, const char *what) {
  size_t n = strlen(test);
  if (n > 3 && strcmp(test + n - 3, "_fn") == 0) n -= 3; /* check's name */
  printf("journal only: %.*s%s%s (not %s on %s)\n", (int)n, test,
         what ? ": " : "", what ? what : "", what ? "checked" : "run",
         h_store_name());
  fflush(stdout);
}

/* In a test: true on the journal; elsewhere false, and the output names
 * the check not made ("journal only: TEST: WHAT"). */
static inline bool h_journal_figure(const char *test, const char *what) {
  if (h_on_journal()) return true;
  h_journal_only_note(test, what);
  return false;
}
#define H_JOURNAL_FIGURE(what) h_journal_figure(__func__, (what))

/* At the end of a suite: how many of its tests did not run on this
 * store; 1 when MLY_TEST_JOURNAL_ONLY is set and says another count. */
static inline int h_journal_only_summary(void) {
  if (h_journal_only_n > 0)
    printf("%s: %d test%s journal only, not run here (listed above)\n",
           h_store_name(), h_journal_only_n, h_journal_only_n == 1 ? "" : "s");
  const char *want = getenv("MLY_TEST_JOURNAL_ONLY");
  if (h_on_journal() || want == NULL || *want == '\0') return 0;
  if (atoi(want) == h_journal_only_n) return 0;
  printf("FAIL: %d tests are marked journal only, MLY_TEST_JOURNAL_ONLY "
         "(test/meson.build, the README's table) says %s: update the "
         "claim with the mark\n", h_journal_only_n, want);
  return 1;
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

#endif /* MLY_TEST_STORE_PARAM_H */
