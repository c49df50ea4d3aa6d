/*
 * journal_fill.c - writes a small real journal for test_journal_cli.sh.
 *
 *   journal_fill DIR N [hold]
 *
 * Opens DIR as the state directory of a runtime with one durable type,
 * "counter" (recovering whatever DIR already holds), spawns N counters
 * that never finish, one that finishes after two ticks (an END record),
 * and posts one event with a payload to the first counter, which never
 * waits for it (a pending EVENT record).  The first counter is named
 * "first" and carries a 1000-byte context (given at spawn), the one
 * that finishes is named "done" (its END holds a tombstone).  It runs some loop turns so the
 * counters step, then closes the runtime: the live counters stay in the
 * journal.  It prints "recovered R" and "parked P" first.
 *
 * With "hold" it does not close: it prints "holding PID" and sleeps with
 * DIR locked, for at most a minute, until it is killed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mealy.h"

typedef struct counter {
  uint32_t n, target;
} counter;

#define COUNTER_POINTS(X) X(counter, tick)
MLY_POINTS(counter, COUNTER_POINTS);

static int counter_run(mly_machine *m, void *data) {
  counter *c = data;
  MLY_BEGIN(m);
  while (c->target == 0 || c->n < c->target) {
    c->n++;
    MLY_SLEEP_AT(m, counter_tick, 1);
  }
  MLY_END(m);
}

static int fail(const char *what, int rc, const char *err) {
  fprintf(stderr, "journal_fill: %s: %s\n", what,
          err && *err ? err : mly_strerror(rc));
  return 1;
}

/* An event with a payload whose strings need JSON escaping. */
static int poke(mly_runtime *rt, mly_id to) {
  uint32_t ev;
  int rc = mly_event_id(rt, "poke", &ev);
  if (rc < 0) return rc;
  mly_value *p = mly_value_map();
  if (p == NULL) return MLY_ENOMEM;
  static const char odd[] = "tab\tquote\"back\\slash\x01 caf\xc3\xa9 bad\xff";
  if ((rc = mly_map_set_int(p, "n", 42)) < 0 ||
      (rc = mly_map_set(p, "text", mly_value_strn(odd, sizeof odd - 1))) < 0) {
    mly_value_free(p);
    return rc;
  }
  return mly_runtime_send(rt, to, ev, p);
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "hold") != 0)) {
    fprintf(stderr, "usage: journal_fill DIR N [hold]\n");
    return 2;
  }
  const char *dir = argv[1];
  int n = atoi(argv[2]);
  bool hold = argc == 4;
  mly_runtime *rt = NULL;
  mly_type *t = NULL;
  char err[512] = "";
  int rc = mly_runtime_new(&rt, NULL, NULL);
  if (rc < 0) return fail("runtime", rc, NULL);
  mly_type_def def = {.name = "counter", .run = counter_run,
                      MLY_TYPE_POINTS(counter), .data_size = sizeof(counter),
                      .version = 1, .flags = MLY_TYPE_DURABLE};
  if ((rc = mly_type_register(rt, &def, &t)) < 0) return fail("type", rc, NULL);
  mly_journal_options o = {.dir = dir};
  if ((rc = mly_journal_open(rt, &o, err, sizeof err)) < 0)
    return fail("open", rc, err);
  mly_journal_stats st;
  mly_journal_stats_get(rt, &st);
  printf("recovered %llu\nparked %llu\n", (unsigned long long)st.recovered,
         (unsigned long long)st.parked);
  mly_id first = 0;
  for (int i = 0; i < n + (n > 0); i++) {
    counter c = {.target = i == n ? 2 : 0}; /* the last one finishes */
    mly_id id;
    mly_spawn_options so = {.arg = &c, .arg_len = sizeof c};
    if (i == 0) {
      so.name = "first";
      so.context = mly_value_map();
      static char filler[1000];
      if (so.context)
        mly_map_set(so.context, "filler", mly_value_bin(filler, sizeof filler));
    }
    if (i == n) so.name = "done";
    if ((rc = mly_spawn_opts(rt, t, &so, &id)) < 0)
      return fail("spawn", rc, NULL);
    if (first == 0) first = id;
  }
  if (first && (rc = poke(rt, first)) < 0) return fail("send", rc, NULL);
  for (int i = 0; i < 30; i++) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  if ((rc = mly_journal_error(rt)) < 0) return fail("journal", rc, NULL);
  if (hold) {
    printf("holding %d\n", (int)getpid());
    fflush(stdout);
    sleep(60);
  }
  mly_runtime_close(rt);
  return 0;
}
