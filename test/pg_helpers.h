/*
 * pg_helpers.h - what the PostgreSQL suites share: the private cluster's
 * conninfo (MLY_TEST_PG, set by test/pg/with_cluster.sh; without it the
 * suite fails saying it did not run), a connection of the test's own and
 * a one-integer query on it, and running a check suite.
 */
#ifndef MLY_TEST_PG_HELPERS_H
#define MLY_TEST_PG_HELPERS_H

#include <check.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline const char *conninfo(void) {
  const char *c = getenv("MLY_TEST_PG");
  if (!c || !*c) {
    fprintf(stderr, "!!! FAIL: MLY_TEST_PG is not set: this PostgreSQL suite "
                    "DID NOT RUN (run it through test/pg/with_cluster.sh)\n");
    exit(1);
  }
  return c;
}

/* A connection of the test's own to db; the check fails without one. */
static inline PGconn *pg_test_connect(const char *db) {
  PGconn *c = PQconnectdb(db);
  ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
  return c;
}

/* The integer a one-row, one-column query q answers, on a connection of
 * its own. */
static inline int64_t pg_test_int(const char *db, const char *q) {
  PGconn *c = pg_test_connect(db);
  PGresult *r = PQexec(c, q);
  ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", q,
                PQresultErrorMessage(r));
  ck_assert_int_eq(PQntuples(r), 1);
  int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  PQfinish(c);
  return v;
}

static inline int run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}

#endif
