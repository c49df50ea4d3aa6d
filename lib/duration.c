/*
 * duration.c - "250ms", "10s", "2m": durations as people write them in
 * configuration files and on the command line.
 */
#include "mealy.h"

#include <string.h>

int mly_duration_parse(const char *s, int64_t *ms) {
  if (s == NULL || *s < '0' || *s > '9') return MLY_EINVAL;
  int64_t n = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (n > (INT64_MAX - (*s - '0')) / 10) return MLY_ERANGE;
    n = n * 10 + (*s - '0');
  }
  static const struct { const char *unit; int64_t mul; } units[] = {
      {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (strcmp(s, units[i].unit) != 0) continue;
    if (n > INT64_MAX / units[i].mul) return MLY_ERANGE;
    *ms = n * units[i].mul;
    return 0;
  }
  return MLY_EINVAL;
}
