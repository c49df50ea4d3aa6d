/*
 * svlog.c - the supervisor's own log lines.
 *
 * "HH:MM:SS.mmm who  text" on its stdout, through an outq (never a
 * blocking write, see outq.h).  A message may quote input (a path from the
 * configuration, a name from a client): control characters in it are
 * always escaped, so neither a log file nor a terminal receives them raw.
 *
 * Lines an outsider can cause (a refused client, a connection closed for
 * being idle) go through a rate limit: at most SV_RL_BURST per
 * SV_RL_WINDOW_MS for each kind; the next line allowed after a
 * suppression says how many similar lines were left out.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "esc.h"
#include "mlog.h"
#include "outq.h"
#include "sv.h"

static void vlog(sv *s, const char *who, const char *fmt, va_list ap) {
  if (s->out == NULL) return;
  char msg[1024], shown[ESC_MAX(sizeof msg) + 1], line[sizeof shown + 64];
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  if (n < 0) return;
  size_t len = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
  esc_str(msg, len, shown, sizeof shown);
  n = mlog_format(line, sizeof line, who, "%s", shown);
  if (n <= 0) return;
  if ((size_t)n >= sizeof line) { /* cut, still one line */
    n = (int)sizeof line - 1;
    line[n - 1] = '\n';
  }
  outq_write(s->out, line, (size_t)n);
}

void sv_logf(sv *s, const char *who, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(s, who, fmt, ap);
  va_end(ap);
}

static void say_suppressed(sv *s, sv_ratelimit *rl, const char *who) {
  if (rl->suppressed == 0) return;
  sv_logf(s, who, "%llu similar messages suppressed (at most %u every %u ms)",
          (unsigned long long)rl->suppressed, SV_RL_BURST, SV_RL_WINDOW_MS);
  rl->suppressed = 0;
}

void sv_logf_rl(sv *s, sv_ratelimit *rl, const char *who, const char *fmt,
                ...) {
  uint64_t now = uv_hrtime() / 1000000u;
  if (rl->start == 0 || now - rl->start >= SV_RL_WINDOW_MS) {
    say_suppressed(s, rl, who);
    rl->start = now;
    rl->n = 0;
  }
  if (rl->n >= SV_RL_BURST) {
    rl->suppressed++;
    return;
  }
  rl->n++;
  va_list ap;
  va_start(ap, fmt);
  vlog(s, who, fmt, ap);
  va_end(ap);
}

void sv_rl_flush(sv *s, sv_ratelimit *rl, const char *who) {
  say_suppressed(s, rl, who);
}
