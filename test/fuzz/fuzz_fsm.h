/*
 * fuzz_fsm.h - the YAML loader's fuzz target (fuzz_fsm.c), as its
 * standalone driver (fuzz_fsm_seeds.c) sees it: an input is a machine
 * file's text; what the last one reached.
 */
#ifndef MLY_FUZZ_FSM_H
#define MLY_FUZZ_FSM_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct ff_result {
  int rc;          /* mly_fsm_load_text's */
  size_t machines; /* loaded */
  size_t errors;   /* reported */
} ff_result;
extern ff_result ff_last;

#endif
