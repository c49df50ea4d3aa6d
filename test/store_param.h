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
 *
 * The PostgreSQL store is added here as one more name when it lands
 * (o->dir then names the test's own namespace in the database).  A name
 * this test build does not know is a failure, loud, never a skip: the
 * process says so on stderr and aborts, so the suite, the crash harness
 * or the benchmark fails.  Suites that test the journal itself (its
 * files, its reader, power loss, its fuzzers) call mly_journal_open.
 */
#ifndef MLY_TEST_STORE_PARAM_H
#define MLY_TEST_STORE_PARAM_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mealy.h"

/* The stores this test build can run on. */
#define H_STORES "journal"

/* The store the tests run on: MLY_TEST_STORE, or "journal". */
static inline const char *h_store_name(void) {
  const char *s = getenv("MLY_TEST_STORE");
  return s == NULL || *s == '\0' ? "journal" : s;
}

static inline int h_durable_open(mly_runtime *rt, const mly_journal_options *o,
                                 char *err, size_t errlen) {
  const char *s = h_store_name();
  if (strcmp(s, "journal") == 0) return mly_journal_open(rt, o, err, errlen);
  fprintf(stderr, "MLY_TEST_STORE=%s: this test build knows no such store "
          "(it knows: " H_STORES "); the test fails rather than skip\n", s);
  fflush(stderr);
  abort();
}

#endif /* MLY_TEST_STORE_PARAM_H */
