/*
 * mlog.c - timestamped log lines for machines that narrate what they do.
 */
#include "mlog.h"

#include <stdarg.h>
#include <time.h>

void mlogv(FILE *out, const char *who, const char *fmt, va_list ap) {
  if (out == NULL) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  localtime_r(&ts.tv_sec, &tm);
  fprintf(out, "%02d:%02d:%02d.%03ld %-8s ", tm.tm_hour, tm.tm_min,
          tm.tm_sec, ts.tv_nsec / 1000000, who);
  vfprintf(out, fmt, ap);
  fputc('\n', out);
  fflush(out);
}

void mlog(FILE *out, const char *who, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mlogv(out, who, fmt, ap);
  va_end(ap);
}
