/*
 * masterd.h - the seed's MasterD and its subsystems as mealy machines.
 *
 * Built only on mealy.h.  masterd_register() adds both types to a runtime;
 * the host then spawns one "masterd" and sends it a "config" event (a
 * string payload) when a configuration is chosen.
 */
#ifndef MLY_EXAMPLES_MASTERD_H
#define MLY_EXAMPLES_MASTERD_H

#include <stdio.h>

#include "mealy.h"

typedef struct masterd_types {
  mly_type *masterd;
  mly_type *subsystem;
} masterd_types;

/* Where the machines write their log lines (one per transition). */
typedef struct masterd_log {
  FILE *out;
} masterd_log;

typedef struct masterd_arg {
  masterd_log *log;
  masterd_types *types;
  int64_t recheck_ms;    /* the seed re-checks for a config every 2 s */
  int64_t stop_grace_ms; /* given to mly_runtime_shutdown at the end */
} masterd_arg;

int masterd_register(mly_runtime *rt, masterd_types *out);
void masterd_logf(masterd_log *log, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
