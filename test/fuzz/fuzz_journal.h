/*
 * fuzz_journal.h - the input format of the journal fuzz target, shared by
 * the target (fuzz_journal.c) and the standalone driver (fuzz_main.c),
 * which builds seed inputs from real segments and mutates them.
 *
 * An input is a state directory of one to three segment files:
 *
 *     [flags: 1 byte][len of segment 1: u16 LE][len of segment 2: u16 LE]
 *     [the segments' bytes, one after the other]
 *
 * The lengths are present only for segments that have a next one (so a
 * one-segment input has none), and each is cut to what is left; the last
 * segment takes the rest.  A segment that begins with "MLYJ" is written
 * as it is (journal format 2: the batch layer is fuzzed); any other is a
 * run of records that the target frames as the writer would, one batch
 * a record, bytes past the last whole record after them as they are (so
 * mutations of records reach the record reader and replay).  Flags:
 *
 *     bits 0-1  segments: 1 + (value % 3)
 *     bit  2    salvage (the reader skips damage instead of refusing)
 *     bits 3-4  file numbers: 1,2,3 / 1,7,1000 / 2^64-3.. / 0,1,2
 *     bit  5    recovery registers the workload types (else all park)
 *     bit  6    recovery runs one loop turn before closing
 *     bit  7    no recovery: only the offline reader runs
 */
#ifndef MLY_FUZZ_JOURNAL_H
#define MLY_FUZZ_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#define FJ_NSEG_MASK 0x03u
#define FJ_SALVAGE 0x04u
#define FJ_NAMES_SHIFT 3
#define FJ_NAMES_MASK 0x18u
#define FJ_TYPES 0x20u
#define FJ_TURN 0x40u
#define FJ_NO_RECOVERY 0x80u

#define FJ_MAX_SEGS 3

static inline unsigned fj_nsegs(uint8_t flags) {
  return 1 + (flags & FJ_NSEG_MASK) % 3;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the last run saw, for the standalone driver's figures and its
 * pool of inputs that got past the reader (libFuzzer ignores it). */
typedef struct fj_result {
  int read_rc;      /* jr_read + rp_record */
  uint64_t records; /* replayed */
  int open_rc;      /* mly_journal_open; 1 if recovery did not run */
  uint64_t recovered, parked;
} fj_result;
extern fj_result fj_last;

#endif
