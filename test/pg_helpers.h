/*
 * pg_helpers.h - what the PostgreSQL suites share: the private cluster's
 * conninfo (MLY_TEST_PG, set by test/pg/with_cluster.sh; without it the
 * suite fails saying it did not run) and running a check suite.
 */
#ifndef MLY_TEST_PG_HELPERS_H
#define MLY_TEST_PG_HELPERS_H

#include <check.h>
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

static inline int run_suite(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}

#endif
