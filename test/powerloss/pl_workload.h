/*
 * pl_workload.h - the shape of the power-loss workload, shared by the
 * workload (pl_workload.c) and the checker (pl_check.c), which must agree
 * on it to judge what came back.
 */
#ifndef PL_WORKLOAD_H
#define PL_WORKLOAD_H

#include <stdint.h>

#define PL_COUNTERS 6
#define PL_PAIRS 2
#define PL_TARGET 100          /* steps of a counter, pings of a pair */
#define PL_PHASES 4            /* runs of the recorded workload */
#define PL_COMPACT_PHASE 2     /* ... this one compacts as it starts */
#define PL_KEYS_PER_PHASE 64   /* durable posts per run */
#define PL_NKEYS (PL_PHASES * PL_KEYS_PER_PHASE)
#define PL_END_KEY PL_NKEYS    /* ends the sink */
#define PL_EV_PING 1
#define PL_EV_KEY 2
#define PL_SEGMENT 8192        /* segment size of the recorded runs */

static inline uint64_t pl_chain(uint64_t h, uint64_t n) {
  h ^= n + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

#endif /* PL_WORKLOAD_H */
