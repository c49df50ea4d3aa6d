/*
 * mlog.c - timestamped log lines for machines that narrate what they do.
 */
#include "mlog.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

int mlog_vformat(char *buf, size_t len, const char *who, const char *fmt,
                 va_list ap) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  localtime_r(&ts.tv_sec, &tm);
  int n = snprintf(buf, len, "%02d:%02d:%02d.%03ld %-8s ", tm.tm_hour,
                   tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, who);
  if (n < 0) return n;
  int m = vsnprintf((size_t)n < len ? buf + n : NULL,
                    (size_t)n < len ? len - (size_t)n : 0, fmt, ap);
  if (m < 0) return m;
  n += m;
  if ((size_t)n + 1 < len) {
    buf[n] = '\n';
    buf[n + 1] = '\0';
  }
  return n + 1;
}

int mlog_format(char *buf, size_t len, const char *who, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = mlog_vformat(buf, len, who, fmt, ap);
  va_end(ap);
  return n;
}

void mlogv(FILE *out, const char *who, const char *fmt, va_list ap) {
  if (out == NULL) return;
  char line[4096];
  int n = mlog_vformat(line, sizeof line, who, fmt, ap);
  if (n <= 0) return;
  if ((size_t)n >= sizeof line) { /* cut: still one line */
    n = sizeof line - 1;
    line[n - 1] = '\n';
  }
  fwrite(line, 1, (size_t)n, out);
  fflush(out);
}

void mlog(FILE *out, const char *who, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  mlogv(out, who, fmt, ap);
  va_end(ap);
}
