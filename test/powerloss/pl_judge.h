/*
 * pl_judge.h - what the power-loss workload acknowledged by a crash
 * point, and whether a recovered image keeps it (pl_check.c's verdict).
 *
 * Acknowledged, from the workload's report lines (pl_workload.c): a
 * machine's highest state, that a machine may be gone ("done"), the keys
 * posted and those whose durable post was acknowledged.  An image passes
 * when `WORKLOAD IMG/STATE recover` opens it, every machine acknowledged
 * at n comes back at n or n + 1 (the next record may have been written,
 * not acknowledged) with an intact hash chain, every acknowledged post
 * reaches the sink exactly once, no key that was never posted appears,
 * nothing is parked and everything runs to its end; `mealy journal
 * check` finds no damage (it may call the tail an open cuts suspect).
 */
#ifndef PL_JUDGE_H
#define PL_JUDGE_H

#include "pl_model.h"
#include "pl_workload.h"

#include <stdbool.h>
#include <stdint.h>

#define PLJ_NMACH (PL_COUNTERS + 2 * PL_PAIRS) /* counters, pingers, pongers */
#define PLJ_KEYBYTES (PL_NKEYS / 8)

typedef struct pl_acks {
  int64_t n[PLJ_NMACH];  /* highest acknowledged state, -1: none */
  bool done[PLJ_NMACH];  /* it reached its end: it may be gone */
  bool sink_done;
  uint8_t sink_bits[PLJ_KEYBYTES]; /* the keys the sink ended with */
  uint8_t posted[PLJ_KEYBYTES], acked[PLJ_KEYBYTES];
} pl_acks;

/* Everything acknowledged by the first k operations of m. */
void plj_acks_at(const pl_model *m, size_t k, pl_acks *a);

/* The recorded run did all it was given: every machine ended, the sink
 * ended holding every acknowledged key and only posted ones. */
bool plj_complete(const pl_acks *a);

enum { PLJ_OK = 0, PLJ_REFUSED, PLJ_LOST_DIR, PLJ_LOST, PLJ_INVENTED,
       PLJ_UNFINISHED, PLJ_CHECK, PLJ_BAD, PLJ_NCAT };
extern const char *const plj_cat_name[PLJ_NCAT];

typedef struct pl_verdict {
  int cat;         /* PLJ_*: the first reason found */
  char why[1024];
} pl_verdict;

/* Recovers img (an image of the root, the state directory at img/state,
 * state being relative) with `workload IMG/STATE recover` and judges it
 * against a.  With mealy (the mealy binary; NULL: not), `mealy journal
 * check IMG/STATE` runs
 * first and must find no damage (exit 0, or 3 for a suspect tail;
 * PLJ_CHECK when only it refuses). */
void plj_check(const char *workload, const char *mealy, const char *img,
               const char *state, const pl_acks *a, pl_verdict *v);

#endif /* PL_JUDGE_H */
