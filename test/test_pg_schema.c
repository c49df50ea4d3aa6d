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


/* Every way mealy.schema_version can be damaged (issue 13 brk #6: a
 * version of -1 crashed init and migrate, stat printed it and answered
 * 0): init, migrate, stat, opening a runtime on it and the live walk
 * each answer MLY_EBADMSG saying what is wrong, and change nothing. */
static int no_live(const mly_live *l, void *a) {
  (void)l;
  (void)a;
  return 0;
}

static void damaged_is_refused(const char *what) {
  char msg[512];
  int from = 77;
  ck_assert_int_eq(mly_store_pg_init(db, &from, msg, sizeof msg),
                   MLY_EBADMSG);
  ck_assert_msg(strstr(msg, "mealy.schema_version") &&
                    strstr(msg, what) && strstr(msg, "damaged"),
                "%s: %s", what, msg);
  ck_assert_int_eq(mly_store_pg_migrate(db, &from, msg, sizeof msg),
                   MLY_EBADMSG);
  ck_assert_msg(strstr(msg, what), "%s: %s", what, msg);
  mly_store_pg_counts st;
  ck_assert_int_eq(mly_store_pg_stat(db, &st, msg, sizeof msg), MLY_EBADMSG);
  ck_assert_msg(strstr(msg, what), "%s: %s", what, msg);
  char err[512];
  ck_assert_int_eq(mly_store_pg_live(db, no_live, NULL, err, sizeof err),
                   MLY_EBADMSG);
  ck_assert_msg(strstr(err, what), "%s: %s", what, err);
  mly_runtime *rt = NULL;
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, NULL), 0);
  mly_store_pg_options o = {.conninfo = db};
  ck_assert_int_eq(mly_store_postgres(rt, &o, err, sizeof err), MLY_EBADMSG);
  ck_assert_msg(strstr(err, what) && strstr(err, "damaged"), "%s: %s", what,
                err);
  mly_runtime_close(rt);
}

START_TEST(damaged_version) {
  char msg[512];
  sql_exec("DROP SCHEMA IF EXISTS mealy CASCADE");
  ck_assert_int_eq(mly_store_pg_init(db, NULL, msg, sizeof msg), 0);
  sql_exec("UPDATE mealy.schema_version SET version = -1");
  damaged_is_refused("holds '-1'");
  sql_exec("UPDATE mealy.schema_version SET version = 0");
  damaged_is_refused("holds '0'");
  sql_exec("ALTER TABLE mealy.schema_version ALTER version DROP NOT NULL");
  sql_exec("UPDATE mealy.schema_version SET version = NULL");
  damaged_is_refused("holds NULL");
  sql_exec("ALTER TABLE mealy.schema_version ALTER version TYPE text");
  sql_exec("UPDATE mealy.schema_version SET version = E'4x\\x1b[31m'");
  damaged_is_refused("holds '4x\\x1b[31m'"); /* escaped, never raw */
  sql_exec("UPDATE mealy.schema_version SET version = '99999999999'");
  damaged_is_refused("holds '99999999999'");
  sql_exec("DELETE FROM mealy.schema_version");
  damaged_is_refused("is empty");
  sql_exec("ALTER TABLE mealy.schema_version DROP CONSTRAINT"
           " schema_version_pkey");
  sql_exec("ALTER TABLE mealy.schema_version DROP CONSTRAINT"
           " schema_version_one_check");
  sql_exec("INSERT INTO mealy.schema_version (one, version) VALUES"
           " (true, '4'), (false, '4')");
  damaged_is_refused("has 2 rows");
  /* schema mealy without its version table: damaged, not "run init" */
  sql_exec("DROP SCHEMA mealy CASCADE");
  ck_assert_int_eq(mly_store_pg_init(db, NULL, msg, sizeof msg), 0);
  sql_exec("DROP TABLE mealy.schema_version");
  damaged_is_refused("without mealy.schema_version");
  /* no schema at all: init makes it; opening says to run init */
  sql_exec("DROP SCHEMA mealy CASCADE");
  {
    char err[512];
    mly_runtime *rt = NULL;
    ck_assert_int_eq(mly_runtime_new(&rt, NULL, NULL), 0);
    mly_store_pg_options o = {.conninfo = db};
    ck_assert_int_eq(mly_store_postgres(rt, &o, err, sizeof err), MLY_EIO);
    ck_assert_msg(strstr(err, "mealy store init"), "%s", err);
    mly_runtime_close(rt);
  }
  ck_assert_int_eq(mly_store_pg_init(db, NULL, msg, sizeof msg), 0);
  /* the advice works: write the version back, and it opens */
  sql_exec("DELETE FROM mealy.schema_version");
  sql_exec("DROP SCHEMA mealy CASCADE");
  ck_assert_int_eq(mly_store_pg_init(db, NULL, msg, sizeof msg), 0);
  sql_exec("DELETE FROM mealy.schema_version");
  damaged_is_refused("is empty");
  char q[128];
  snprintf(q, sizeof q, "INSERT INTO mealy.schema_version (version) VALUES"
           " (%d)", MLY_STORE_PG_VERSION);
  sql_exec(q);
  ck_assert_int_eq(mly_store_pg_migrate(db, NULL, msg, sizeof msg), 0);
}
END_TEST

/* Issue 13 brk #15: a role that may not use schema mealy is told what
 * the server said (permission denied), by every entry point, never "no
 * mealy schema" nor "damaged". */
START_TEST(permission_denied) {
  char msg[512];
  sql_exec("DROP SCHEMA IF EXISTS mealy CASCADE");
  ck_assert_int_eq(mly_store_pg_init(db, NULL, msg, sizeof msg), 0);
  PGconn *c = PQconnectdb(db);
  PQclear(PQexec(c, "DROP ROLE IF EXISTS mly_nousage"));
  PQclear(PQexec(c, "CREATE ROLE mly_nousage LOGIN"));
  PQfinish(c);
  char ci[1200];
  snprintf(ci, sizeof ci, "%s user=mly_nousage", db);
  int from;
  mly_store_pg_counts st;
  ck_assert_int_lt(mly_store_pg_stat(ci, &st, msg, sizeof msg), 0);
  ck_assert_msg(strstr(msg, "permission denied"), "stat: %s", msg);
  ck_assert_int_lt(mly_store_pg_migrate(ci, &from, msg, sizeof msg), 0);
  ck_assert_msg(strstr(msg, "permission denied"), "migrate: %s", msg);
  ck_assert_int_lt(mly_store_pg_live(ci, no_live, NULL, msg, sizeof msg), 0);
  ck_assert_msg(strstr(msg, "permission denied"), "live: %s", msg);
  mly_runtime *rt = NULL;
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, NULL), 0);
  mly_store_pg_options o = {.conninfo = ci};
  ck_assert_int_eq(mly_store_postgres(rt, &o, msg, sizeof msg), MLY_EIO);
  ck_assert_msg(strstr(msg, "permission denied") &&
                    !strstr(msg, "no mealy schema"),
                "open: %s", msg);
  mly_runtime_close(rt);
}
END_TEST

/* Issue 13 brk #14: the tools and the open check their pointers as the
 * rest of mealy.h does (MLY_EINVAL, msg says which), never a crash. */
START_TEST(null_args) {
  char msg[256];
  int from;
  mly_store_pg_counts st;
  ck_assert_int_eq(mly_store_pg_init(NULL, &from, msg, sizeof msg),
                   MLY_EINVAL);
  ck_assert_str_eq(msg, "no conninfo");
  ck_assert_int_eq(mly_store_pg_init(NULL, NULL, NULL, 0), MLY_EINVAL);
  ck_assert_int_eq(mly_store_pg_migrate(NULL, &from, msg, sizeof msg),
                   MLY_EINVAL);
  ck_assert_int_eq(mly_store_pg_stat(NULL, &st, msg, sizeof msg), MLY_EINVAL);
  ck_assert_int_eq(mly_store_pg_stat(db, NULL, msg, sizeof msg), MLY_EINVAL);
  ck_assert_int_eq(mly_store_pg_stat(db, NULL, NULL, 0), MLY_EINVAL);
  ck_assert_int_eq(mly_store_pg_live(NULL, no_live, NULL, msg, sizeof msg),
                   MLY_EINVAL);
  ck_assert_int_eq(mly_store_pg_live(db, NULL, NULL, msg, sizeof msg),
                   MLY_EINVAL);
  ck_assert_int_eq(mly_task_scan_pg(db, NULL, 0, NULL, NULL, msg, sizeof msg),
                   MLY_EINVAL);
  ck_assert_int_eq(mly_queue_scan_pg(NULL, NULL, NULL, msg, sizeof msg),
                   MLY_EINVAL);
  mly_store_pg_options o = {.conninfo = db};
  ck_assert_int_eq(mly_store_postgres(NULL, &o, msg, sizeof msg), MLY_EINVAL);
  mly_runtime *rt = NULL;
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, NULL), 0);
  ck_assert_int_eq(mly_store_postgres(rt, NULL, msg, sizeof msg), MLY_EINVAL);
  mly_runtime_close(rt);
  ck_assert_ptr_null(mly_store_pg_conninfo_show(db, NULL, 10));
  ck_assert(!mly_store_conf_get(NULL, &o));
  mly_store_conf *sc = mly_store_conf_new();
  ck_assert_ptr_nonnull(sc);
  ck_assert(!mly_store_conf_get(sc, NULL));
  ck_assert_ptr_null(mly_store_conf_where(NULL, NULL));
  mly_store_conf_free(sc);
  mly_store_conf_free(NULL);
}
END_TEST

/* Issue 13 brk #13 and #15: a password in a URI libpq cannot parse is
 * masked (libpq quotes the whole URI), and the server's or libpq's words
 * reach err/msg with their control characters escaped, by every entry. */
static void clean(const char *m, const char *secret) {
  ck_assert_msg(!secret || !strstr(m, secret), "password shown: %s", m);
  for (const char *p = m; *p; p++)
    ck_assert_msg((unsigned char)*p >= 0x20 || *p == '\t' || *p == '\n',
                  "a raw control character in: %s", m);
}

static void all_entries(const char *ci, const char *secret,
                        const char *must) {
  char msg[512];
  int from;
  mly_store_pg_counts st;
  ck_assert_int_lt(mly_store_pg_init(ci, &from, msg, sizeof msg), 0);
  clean(msg, secret);
  ck_assert_msg(strstr(msg, must), "%s", msg);
  ck_assert_int_lt(mly_store_pg_migrate(ci, &from, msg, sizeof msg), 0);
  clean(msg, secret);
  ck_assert_int_lt(mly_store_pg_stat(ci, &st, msg, sizeof msg), 0);
  clean(msg, secret);
  ck_assert_msg(strstr(msg, must), "%s", msg);
  ck_assert_int_lt(mly_store_pg_live(ci, no_live, NULL, msg, sizeof msg), 0);
  clean(msg, secret);
  ck_assert_msg(strstr(msg, must), "%s", msg);
  mly_runtime *rt = NULL;
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, NULL), 0);
  mly_store_pg_options o = {.conninfo = ci};
  ck_assert_int_lt(mly_store_postgres(rt, &o, msg, sizeof msg), 0);
  clean(msg, secret);
  ck_assert_msg(strstr(msg, must), "%s", msg);
  mly_runtime_close(rt);
}

START_TEST(words_shown_safely) {
  all_entries("postgresql://pwuser:Sekr3tPw@[::1/m3", "Sekr3tPw", "IPv6");
  all_entries("postgresql://pwuser:Sekr3tPw@[::1/m3?connect_timeout=x",
              "Sekr3tPw", "IPv6");
  all_entries("host=/nonexistent password='Se cr\\'et' port=x", "cr\\'et",
              "port");
  char ci[1200];
  snprintf(ci, sizeof ci, "%s dbname=mly_schema user=\x1b[31mX\x07",
           conninfo());
  all_entries(ci, NULL, "\\x1b[31mX\\x07"); /* the server's words, escaped */
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
  tcase_add_test(tc, damaged_version);
  tcase_add_test(tc, null_args);
  tcase_add_test(tc, permission_denied);
  tcase_add_test(tc, words_shown_safely);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
