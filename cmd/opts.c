/*
 * opts.c - option values shared by the subcommands.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cmd.h"
#include "mealy.h"

int opt_duration(const char *cmd, const char *opt, const char *val,
                 int64_t *out) {
  if (val == NULL) {
    fprintf(stderr, "mealy %s: %s needs a duration (250ms, 10s, 2m)\n", cmd, opt);
    return -1;
  }
  if (mly_duration_parse(val, out) < 0) {
    fprintf(stderr, "mealy %s: %s: '%s' is not a duration "
            "(write 250ms, 10s, 2m)\n", cmd, opt, val);
    return -1;
  }
  return 0;
}

const char *opt_store(const char *given) {
  if (given) return given;
  const char *e = getenv("MEALY_STORE");
  return e && *e ? e : NULL;
}

int opt_port(const char *cmd, const char *opt, const char *val, int *out) {
  char *end = NULL;
  long p = val ? strtol(val, &end, 10) : -1;
  if (val == NULL || *val == '\0' || *end != '\0' || p < 0 || p > 65535) {
    fprintf(stderr, "mealy %s: %s: '%s' is not a port number (0-65535)\n",
            cmd, opt, val ? val : "");
    return -1;
  }
  *out = (int)p;
  return 0;
}
