/*
 * test_store_conf.c - `store:` in the files the fsm loader reads
 * (lib/store/pg_yaml.c), without a database: the two shapes read into
 * mly_store_pg_options; every mistake reported at its FILE:LINE:COL in
 * one load; store: twice across files refused; no message, and no
 * conninfo shown, carries the password.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mealy.h"

static char msgs[32][400];
static int nmsgs;

static void on_error(const mly_conf_msg *m, void *arg) {
  (void)arg;
  if (nmsgs < 32) mly_conf_format(m, msgs[nmsgs++], sizeof msgs[0]);
}

static int load(const char *path, const char *text, mly_store_conf *sc) {
  mly_conf_section sec = mly_store_conf_section(sc);
  mly_fsm_load_options o = {.on_error = on_error, .sections = &sec,
                            .nsections = 1};
  mly_fsm_set *set = NULL;
  nmsgs = 0;
  int rc = mly_fsm_load_text(path, text, strlen(text), &o, &set);
  mly_fsm_set_free(set);
  return rc;
}

static bool said(const char *what) {
  for (int i = 0; i < nmsgs; i++)
    if (strstr(msgs[i], what)) return true;
  return false;
}

static void no_secret(const char *secret) {
  for (int i = 0; i < nmsgs; i++)
    ck_assert_msg(strstr(msgs[i], secret) == NULL, "%s", msgs[i]);
}

START_TEST(map_shape) {
  mly_store_conf *sc = mly_store_conf_new();
  ck_assert_int_eq(load("s.yaml",
                        "store:\n"
                        "  postgresql: host=/run/pg dbname=mealy\n"
                        "  lease: 2s\n"
                        "  poll: 250ms\n"
                        "  give_up: 1m\n"
                        "  lock_timeout: 3000\n"
                        "  statement_timeout: 0\n",
                        sc),
                   0);
  ck_assert_int_eq(nmsgs, 0);
  mly_store_pg_options o = {0};
  ck_assert(mly_store_conf_get(sc, &o));
  ck_assert_str_eq(o.conninfo, "host=/run/pg dbname=mealy");
  ck_assert_uint_eq(o.lease_ms, 2000);
  ck_assert_uint_eq(o.poll_ms, 250);
  ck_assert_uint_eq(o.give_up_ms, 60000);
  ck_assert_uint_eq(o.lock_timeout_ms, 3000);
  ck_assert_uint_eq(o.statement_timeout_ms, 0);
  uint32_t line = 0;
  ck_assert_str_eq(mly_store_conf_where(sc, &line), "s.yaml");
  ck_assert_uint_eq(line, 2);
  mly_store_conf_free(sc);
}
END_TEST

START_TEST(scalar_shape_and_absent) {
  mly_store_conf *sc = mly_store_conf_new();
  mly_store_pg_options o = {0};
  ck_assert(!mly_store_conf_get(sc, &o)); /* nothing read yet */
  ck_assert_ptr_null(mly_store_conf_where(sc, NULL));
  ck_assert_int_eq(load("a.yaml", "store: postgresql:///mealy?host=/x\n", sc),
                   0);
  ck_assert(mly_store_conf_get(sc, &o));
  ck_assert_str_eq(o.conninfo, "postgresql:///mealy?host=/x");
  ck_assert_uint_eq(o.lease_ms, 0); /* the default */
  ck_assert_uint_eq(o.give_up_ms, 0);
  /* a second file with store: is refused, naming the first */
  ck_assert_int_ne(load("b.yaml", "\n\nstore: host=/y\n", sc), 0);
  ck_assert_int_eq(nmsgs, 1);
  ck_assert_msg(said("b.yaml:3:8: store: is given twice (first at a.yaml:1)"),
                "%s", msgs[0]);
  ck_assert(mly_store_conf_get(sc, &o));
  ck_assert_str_eq(o.conninfo, "postgresql:///mealy?host=/x");
  mly_store_conf_free(sc);
}
END_TEST

/* One mistake per key, each at its line and column, all in one load;
 * the password of a conninfo libpq cannot read is never quoted. */
START_TEST(every_mistake_at_its_place) {
  mly_store_conf *sc = mly_store_conf_new();
  ck_assert_int_ne(load("bad.yaml",
                        "store:\n"
                        "  postgresql: password=s3cr3tpw s3cr3tpw\n"
                        "  lease: 50ms\n"
                        "  poll: fast\n"
                        "  give_up: 0\n"
                        "  lock_timeout: 2h\n"
                        "  statement_timeout: -1\n"
                        "  leases: 2s\n",
                        sc),
                   0);
  ck_assert_msg(said("bad.yaml:2:15: postgresql: not a libpq connection "
                     "string"), "%s", msgs[0]);
  ck_assert(said("bad.yaml:3:10: lease: from 100ms"));
  ck_assert(said("bad.yaml:4:9: "));
  ck_assert(said("bad.yaml:5:12: give_up: from 100ms"));
  ck_assert(said("bad.yaml:6:17: lock_timeout: from 1ms to 3600s"));
  ck_assert(said("bad.yaml:7:22: "));
  ck_assert(said("bad.yaml:8:3: "));
  ck_assert(said("leases"));
  ck_assert_int_eq(nmsgs, 7);
  no_secret("s3cr3tpw");
  mly_store_pg_options o = {0};
  ck_assert(!mly_store_conf_get(sc, &o));
  mly_store_conf_free(sc);
  /* a map without postgresql:, a list, an empty conninfo */
  sc = mly_store_conf_new();
  ck_assert_int_ne(load("c.yaml", "store:\n  lease: 2s\n", sc), 0);
  ck_assert(said("c.yaml:2:3: store: needs postgresql: CONNINFO"));
  mly_store_conf_free(sc);
  sc = mly_store_conf_new();
  ck_assert_int_ne(load("d.yaml", "store: [a, b]\n", sc), 0);
  ck_assert(said("d.yaml:1:8: store: is a conninfo"));
  mly_store_conf_free(sc);
  sc = mly_store_conf_new();
  ck_assert_int_ne(load("e.yaml", "store: {postgresql: ''}\n", sc), 0);
  ck_assert(said("e.yaml:1:21: postgresql: an empty conninfo"));
  mly_store_conf_free(sc);
  sc = mly_store_conf_new();
  ck_assert_int_ne(
      load("f.yaml", "store: 'postgresql://u:pw%zzsecret@/db'\n", sc), 0);
  ck_assert_int_eq(nmsgs, 1);
  no_secret("secret");
  mly_store_conf_free(sc);
}
END_TEST

START_TEST(conninfo_shown_without_password) {
  char out[256];
  mly_store_pg_conninfo_show("host=/run/pg dbname=m password=hunter2 user=u",
                             out, sizeof out);
  ck_assert_ptr_null(strstr(out, "hunter2"));
  ck_assert_ptr_nonnull(strstr(out, "password=***"));
  ck_assert_ptr_nonnull(strstr(out, "host=/run/pg"));
  ck_assert_ptr_nonnull(strstr(out, "dbname=m"));
  mly_store_pg_conninfo_show("postgresql://me:hunter2@/db?host=/s", out,
                             sizeof out);
  ck_assert_ptr_null(strstr(out, "hunter2"));
  ck_assert_ptr_nonnull(strstr(out, "user=me"));
  ck_assert_ptr_nonnull(strstr(out, "password=***"));
  mly_store_pg_conninfo_show("host='/a b' application_name=x\\'y", out,
                             sizeof out);
  ck_assert_ptr_nonnull(strstr(out, "host='/a b'"));
  mly_store_pg_conninfo_show("password hunter2", out, sizeof out);
  ck_assert_str_eq(out, "(a conninfo libpq cannot read)");
  /* cut to fit, NUL-terminated */
  char small[12];
  mly_store_pg_conninfo_show("host=/run/postgresql dbname=x", small,
                             sizeof small);
  ck_assert_uint_eq(strlen(small), sizeof small - 1);
}
END_TEST

/* Opening the store on a server that is not there: the error names the
 * place but not the password. */
START_TEST(open_error_without_password) {
  mly_runtime *rt = h_runtime();
  char err[512];
  mly_store_pg_options o = {
      .conninfo = "host=/nonexistent/mealy-test dbname=x password=hunter2pw"};
  ck_assert_int_lt(mly_store_postgres(rt, &o, err, sizeof err), 0);
  ck_assert_ptr_null(strstr(err, "hunter2pw"));
  ck_assert_ptr_nonnull(strstr(err, "cannot connect"));
  char msg[512];
  ck_assert_int_lt(mly_store_pg_init(o.conninfo, NULL, msg, sizeof msg), 0);
  ck_assert_ptr_null(strstr(msg, "hunter2pw"));
  mly_runtime_close(rt);
}
END_TEST

static Suite *store_conf_suite(void) {
  Suite *s = suite_create("store_conf");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, map_shape);
  tcase_add_test(tc, scalar_shape_and_absent);
  tcase_add_test(tc, every_mistake_at_its_place);
  tcase_add_test(tc, conninfo_shown_without_password);
  tcase_add_test(tc, open_error_without_password);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(store_conf_suite)
