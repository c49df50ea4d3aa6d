/*
 * embed.c - the smallest host: run the embedding demo with its defaults.
 * Build it against an installed libmealy with
 *   cc embed.c demo.c masterd.c $(pkg-config --cflags --libs mealy)
 */
#include "demo.h"

#include "mealy.h"

int main(void) {
  demo_options o;
  demo_default_options(&o);
  o.port = 0;
  o.config_after_ms = 1000;
  o.run_for_ms = 4000;
  int rc = demo_run(&o);
  if (rc < 0) fprintf(stderr, "embed: %s\n", mly_strerror(rc));
  return rc < 0 ? 1 : 0;
}
