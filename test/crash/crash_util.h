/*
 * crash_util.h - what the crash harnesses and their workloads share:
 * the counters' hash chain (the workload computes it, the harness
 * checks it: one definition, so they agree) and the harnesses'
 * xorshift generator over a seed they print.
 */
#ifndef MLY_TEST_CRASH_UTIL_H
#define MLY_TEST_CRASH_UTIL_H

#include <stdint.h>

/* The next hash of a counter's chain, after step n. */
static inline uint64_t crash_chain(uint64_t h, uint64_t n) {
  h ^= n + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

/* xorshift64: the next number from *seed (never 0 unless seeded 0). */
static inline uint64_t crash_rng(unsigned long long *seed) {
  *seed ^= *seed << 13;
  *seed ^= *seed >> 7;
  *seed ^= *seed << 17;
  return *seed;
}

#endif
