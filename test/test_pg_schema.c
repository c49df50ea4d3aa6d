/*
 * test_pg_schema.c - the schema engine (lib/store/pg_schema.c) against a
 * private cluster (MLY_TEST_PG): with a test chain of migrations, init
 * makes version 1; a migration to a version 2 that fails half-way changes
 * nothing (one transaction); init refuses an older schema; migrate moves
 * 1 to 2.  The real chain: migrate takes a version 1 database to
 * MLY_STORE_PG_VERSION, and a schema newer than the code is refused by
 * init, migrate and stat.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mealy.h"
#include "pg_helpers.h"
#include "store/pg_schema.h"
#include <libpq-fe.h>

static char db[1024];


/* One value from a query (blocking libpq: this is the test's side). */
static void sql1(const char *q, char *out, size_t n) {
  PGconn *c = PQconnectdb(db);
  ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
  PGresult *r = PQexec(c, q);
  ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", q,
                PQresultErrorMessage(r));
  snprintf(out, n, "%s", PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
  PQclear(r);
  PQfinish(c);
}

#define COLUMN_X                                                         \
  "SELECT count(*) FROM information_schema.columns WHERE table_schema = "  \
  "'mealy' AND table_name = 'instances' AND column_name = 'x'"

static void sql_exec(const char *q) {
  PGconn *c = PQconnectdb(db);
  ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
  PGresult *r = PQexec(c, q);
  ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", q,
                PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(c);
}

static void expect_sql(const char *q, const char *want) {
  char v[64];
  sql1(q, v, sizeof v);
  ck_assert_msg(strcmp(v, want) == 0, "%s: %s, not %s", q, v, want);
}

static const char *const v1_test[] = {
    "CREATE SCHEMA mealy",
    "CREATE TABLE mealy.schema_version (one boolean PRIMARY KEY DEFAULT true"
    " CHECK (one), version integer NOT NULL, migrated_at timestamptz NOT NULL"
    " DEFAULT now())",
    "CREATE TABLE mealy.instances (id bigint)", NULL};
static const char *const v2_fails[] = {
    "ALTER TABLE mealy.instances ADD COLUMN x int",
    "CREATE TABLE mealy.half_done (y int)", "SELECT 1 / 0", NULL};
static const char *const v2_ok[] = {
    "ALTER TABLE mealy.instances ADD COLUMN x int",
    "CREATE TABLE mealy.half_done (y int)", NULL};
/* v1_test: a small version 1, so that the engine is tested on its own */
static const char *const *const chain_fails[] = {v1_test, v2_fails};
static const char *const *const chain_ok[] = {v1_test, v2_ok};

START_TEST(versions) {
  char msg[512];
  int from = -1;
  ck_assert_int_eq(mly_pg_schema_apply(db, chain_ok, 1, true, &from, msg,
                                       sizeof msg),
                   0);
  ck_assert_int_eq(from, 0);
  expect_sql("SELECT version FROM mealy.schema_version", "1");

  ck_assert_int_eq(mly_pg_schema_apply(db, chain_fails, 2, false, &from, msg,
                                       sizeof msg),
                   MLY_EIO);
  ck_assert_msg(strstr(msg, "division by zero"), "%s", msg);
  expect_sql("SELECT version FROM mealy.schema_version", "1");
  expect_sql(COLUMN_X, "0"); /* nothing of the failed migration stayed */
  expect_sql("SELECT to_regclass('mealy.half_done') IS NULL", "t");

  ck_assert_int_eq(mly_pg_schema_apply(db, chain_ok, 2, true, &from, msg,
                                       sizeof msg),
                   MLY_EEXIST);
  ck_assert_msg(strstr(msg, "mealy store migrate"), "%s", msg);

  ck_assert_int_eq(mly_pg_schema_apply(db, chain_ok, 2, false, &from, msg,
                                       sizeof msg),
                   0);
  ck_assert_int_eq(from, 1);
  expect_sql("SELECT version FROM mealy.schema_version", "2");
  expect_sql(COLUMN_X, "1");
  ck_assert_int_eq(mly_pg_schema_apply(db, chain_ok, 2, false, &from, msg,
                                       sizeof msg),
                   0);
  ck_assert_int_eq(from, 2); /* nothing to do */

  /* a schema newer than this code's is refused, changing nothing */
  char v[32];
  snprintf(v, sizeof v, "%d", MLY_STORE_PG_VERSION + 1);
  char q[128];
  snprintf(q, sizeof q, "UPDATE mealy.schema_version SET version = %s", v);
  sql_exec(q);
  char want[128];
  snprintf(want, sizeof want, "version %s, newer than this mealy's version %d",
           v, MLY_STORE_PG_VERSION);
  ck_assert_int_eq(mly_store_pg_init(db, &from, msg, sizeof msg), MLY_ERANGE);
  ck_assert_msg(strstr(msg, want), "%s", msg);
  ck_assert_int_eq(mly_store_pg_migrate(db, &from, msg, sizeof msg),
                   MLY_ERANGE);
  ck_assert_msg(strstr(msg, want), "%s", msg);
  mly_store_pg_counts st;
  ck_assert_int_eq(mly_store_pg_stat(db, &st, msg, sizeof msg), MLY_ERANGE);
  ck_assert_int_eq(st.version, MLY_STORE_PG_VERSION + 1);
  ck_assert_int_eq(st.code_version, MLY_STORE_PG_VERSION);
}
END_TEST

/* The real chain: a database at version 1 (as main's mealy made it)
 * migrates to MLY_STORE_PG_VERSION; stat then answers. */
START_TEST(real_chain) {
  char msg[512];
  int from = -1;
  sql_exec("DROP SCHEMA IF EXISTS mealy CASCADE");
  ck_assert_int_eq(mly_pg_schema_apply(db, mly_pg_migrations, 1, true, &from,
                                       msg, sizeof msg),
                   0);
  ck_assert_int_eq(from, 0);
  ck_assert_int_eq(mly_store_pg_migrate(db, &from, msg, sizeof msg), 0);
  ck_assert_int_eq(from, 1);
  char v[32];
  snprintf(v, sizeof v, "%d", MLY_STORE_PG_VERSION);
  expect_sql("SELECT version FROM mealy.schema_version", v);
  expect_sql("SELECT to_regclass('mealy.nodes') IS NOT NULL", "t");
  mly_store_pg_counts st;
  ck_assert_int_eq(mly_store_pg_stat(db, &st, msg, sizeof msg), 0);
  ck_assert_int_eq(st.version, MLY_STORE_PG_VERSION);
  ck_assert_int_eq(st.instances + st.ended + st.events + st.nodes, 0);
}
END_TEST

/* The fence's SQLSTATE for serial, prev on node 1 (its epoch 1): "" ok
 * (the serial written), else the error's code. */
static void fence_is(int serial, int prev, const char *want) {
  PGconn *c = PQconnectdb(db);
  ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
  char q[160];
  snprintf(q, sizeof q, "SELECT mealy.fence(1, e, %d, %d) FROM"
           " (SELECT epoch e FROM mealy.nodes WHERE id = 1) x", serial, prev);
  PGresult *r = PQexec(c, q);
  const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  ck_assert_msg(strcmp(code ? code : "", want) == 0, "%s: %s, wanted '%s'",
                q, code ? code : "ok", want);
  PQclear(r);
  PQfinish(c);
}

/* Version 4's fence: a serial committed already is MLYF2; one whose
 * predecessor (p_prev) the row does not hold yet is MLYF3 (out of
 * order), checked after the lease (MLYF1); in order it commits. */
START_TEST(fence_order) {
  char msg[512];
  sql_exec("DROP SCHEMA IF EXISTS mealy CASCADE");
  ck_assert_int_eq(mly_store_pg_init(db, NULL, msg, sizeof msg), 0);
  sql_exec("INSERT INTO mealy.nodes (host, pid, lease_until) VALUES ('h', 1,"
           " clock_timestamp() + interval '1 hour')");
  fence_is(1, 0, "");
  expect_sql("SELECT batch_serial FROM mealy.nodes WHERE id = 1", "1");
  fence_is(3, 2, "MLYF3"); /* batch 2 did not commit */
  expect_sql("SELECT batch_serial FROM mealy.nodes WHERE id = 1", "1");
  fence_is(2, 1, "");
  fence_is(3, 2, "");      /* sent again after it: in order now */
  fence_is(3, 2, "MLYF2"); /* committed already */
  fence_is(2, 1, "MLYF2");
  fence_is(5, 3, "");      /* batch 4 was fenced: the node says so */
  sql_exec("UPDATE mealy.nodes SET lease_until = clock_timestamp()");
  fence_is(7, 6, "MLYF1"); /* the lease before the order */
  fence_is(5, 3, "MLYF2"); /* what committed stays committed */
}
END_TEST

/* init twice at once: the advisory lock makes one create, one find it */
START_TEST(concurrent_init) {
  char msg[512];
  int from[2] = {-1, -1}, rc[2];
  /* a fresh database */
  PGconn *c = PQconnectdb(conninfo());
  ck_assert(PQstatus(c) == CONNECTION_OK);
  PQclear(PQexec(c, "DROP DATABASE IF EXISTS mly_conc"));
  PGresult *r = PQexec(c, "CREATE DATABASE mly_conc");
  ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  PQfinish(c);
  char conc[1100];
  snprintf(conc, sizeof conc, "%s dbname=mly_conc", conninfo());
  pid_t p = fork();
  ck_assert_int_ge(p, 0);
  if (p == 0) _exit(mly_store_pg_init(conc, NULL, msg, sizeof msg) == 0 ? 0 : 1);
  rc[0] = mly_store_pg_init(conc, &from[0], msg, sizeof msg);
  int st;
  ck_assert_int_eq(waitpid(p, &st, 0), p);
  rc[1] = WIFEXITED(st) ? WEXITSTATUS(st) : 99;
  ck_assert_msg(rc[0] == 0, "%s", msg);
  ck_assert_int_eq(rc[1], 0);
  ck_assert(from[0] == 0 || from[0] == MLY_STORE_PG_VERSION);
}
END_TEST

int main(void) {
  snprintf(db, sizeof db, "%s dbname=mly_schema", conninfo());
  PGconn *c = PQconnectdb(conninfo());
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "FAIL: cannot reach the test cluster: %s", PQerrorMessage(c));
    return 1;
  }
  PQclear(PQexec(c, "DROP DATABASE IF EXISTS mly_schema"));
  PGresult *r = PQexec(c, "CREATE DATABASE mly_schema");
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    fprintf(stderr, "FAIL: CREATE DATABASE: %s", PQresultErrorMessage(r));
    return 1;
  }
  PQclear(r);
  PQfinish(c);
  Suite *s = suite_create("pg_schema");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, versions);
  tcase_add_test(tc, concurrent_init);
  tcase_add_test(tc, real_chain);
  tcase_add_test(tc, fence_order);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
