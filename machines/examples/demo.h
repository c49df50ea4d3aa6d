/*
 * demo.h - the embedding demo: a host program with a libuv loop of its own
 * (a line-based TCP server on 127.0.0.1 and a periodic timer) that embeds
 * a mealy runtime beside them, running MasterD.
 */
#ifndef MLY_EXAMPLES_DEMO_H
#define MLY_EXAMPLES_DEMO_H

#include <stdint.h>
#include <stdio.h>

typedef struct demo_options {
  int port;                 /* TCP port on 127.0.0.1; 0 = any free one   */
  int64_t config_after_ms;  /* a thread posts the config after this; <0 never */
  const char *config;       /* the config name it posts                   */
  int64_t run_for_ms;       /* shut down this long after start; <0 never  */
  int64_t status_every_ms;  /* print the instance table; <=0 never        */
  int64_t recheck_ms;       /* MasterD's config re-check period           */
  FILE *out;                /* log and tables                             */
} demo_options;

void demo_default_options(demo_options *o);

/* Run the demo to its end.  Returns 0 when everything stopped cleanly. */
int demo_run(const demo_options *o);

#endif
