/*
 * workload.h - the durable machine types of the journal fuzzer.
 *
 * The same types serve twice: the standalone driver (fuzz_main.c) runs
 * them to write a real journal, whose segments become the seed corpus,
 * and the target (fuzz_journal.c) may register them before it recovers
 * a fuzzed directory, so instances come back to life instead of only
 * parking.  Their bodies must therefore survive any data a fuzzed state
 * record holds: every count is bounded, every id may be stale.
 */
#ifndef MLY_FUZZ_WORKLOAD_H
#define MLY_FUZZ_WORKLOAD_H

#include "mealy.h"

/* Events the workload sends (application ids). */
#define WL_EV_PING 7
#define WL_EV_PONG 8
#define WL_EV_STOP 9
#define WL_EV_JUNK 5
#define WL_EV_NAME "hello" /* an interned name: journaled as a string */

typedef struct wl_counter {
  uint32_t n, target, sleep_ms;
} wl_counter;

typedef struct wl_parent {
  uint32_t nkids, i;
  mly_id kid[4];
  int status;
} wl_parent;

typedef struct wl_pp {
  uint32_t n, target;
  mly_id peer;
} wl_pp;

typedef struct wl_waiter {
  uint32_t got;
} wl_waiter;

typedef struct wl_types {
  mly_type *counter, *parent, *pinger, *ponger, *waiter, *dropper;
} wl_types;

/* Register every workload type on rt (before mly_journal_open). */
int wl_register(mly_runtime *rt, wl_types *out);

#endif
