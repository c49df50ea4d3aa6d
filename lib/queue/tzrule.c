/*
 * tzrule.c - the POSIX TZ rule of a TZif footer (RFC 8536 section 3.3,
 * POSIX.1 "TZ"): what holds past the last transition a file lists.
 *
 *   std offset [dst [offset] [,start[/time],end[/time]]]
 *
 * A name is letters ("CET") or anything between < and > ("<-03>"); an
 * offset is [+-]hh[:mm[:ss]], positive WEST of Greenwich (the opposite
 * of the offsets kept here); dst's offset defaults to one hour ahead of
 * std.  A date is Jn (1..365, February 29 never counted), n (0..365,
 * counted) or Mm.w.d (day d, 0 Sunday, of week w, 5 the last, of month
 * m); its time (default 02:00) is local time, -167..167 hours (RFC 8536
 * version 3).  Start is read in standard time, end in daylight time.
 * A rule with dst but no dates takes the US rule, as glibc does
 * (M3.2.0,M11.1.0): tzdata never writes one.
 */
#include "cron.h"

#include <string.h>

#include "mealy.h"

typedef struct rd {
  const char *p, *end;
} rd;

static bool more(const rd *r) { return r->p < r->end; }
static char peek(const rd *r) { return more(r) ? *r->p : '\0'; }

static bool name(rd *r) {
  if (peek(r) == '<') {
    const char *q = memchr(r->p, '>', (size_t)(r->end - r->p));
    if (q == NULL || q - r->p < 4) return false;
    r->p = q + 1;
    return true;
  }
  const char *s = r->p;
  while (more(r) && ((*r->p >= 'a' && *r->p <= 'z') ||
                     (*r->p >= 'A' && *r->p <= 'Z')))
    r->p++;
  return r->p - s >= 3;
}

static bool num(rd *r, long lo, long hi, long *out) {
  long v = 0;
  const char *s = r->p;
  while (more(r) && *r->p >= '0' && *r->p <= '9' && r->p - s < 4)
    v = v * 10 + (*r->p++ - '0');
  if (r->p == s || v < lo || v > hi) return false;
  *out = v;
  return true;
}

/* [+-]hh[:mm[:ss]] in seconds; hours up to max_h. */
static bool hms(rd *r, long max_h, long *out) {
  long sign = 1, h, m = 0, s = 0;
  if (peek(r) == '+' || peek(r) == '-') sign = *r->p++ == '-' ? -1 : 1;
  if (!num(r, 0, max_h, &h)) return false;
  if (peek(r) == ':') {
    r->p++;
    if (!num(r, 0, 59, &m)) return false;
    if (peek(r) == ':') {
      r->p++;
      if (!num(r, 0, 59, &s)) return false;
    }
  }
  *out = sign * (h * 3600 + m * 60 + s);
  return true;
}

static bool date(rd *r, tq_tz_date *d) {
  long a, b, c;
  memset(d, 0, sizeof *d);
  if (peek(r) == 'M') {
    r->p++;
    if (!num(r, 1, 12, &a) || peek(r) != '.') return false;
    r->p++;
    if (!num(r, 1, 5, &b) || peek(r) != '.') return false;
    r->p++;
    if (!num(r, 0, 6, &c)) return false;
    d->kind = 'M', d->m = (uint8_t)a, d->w = (uint8_t)b, d->d = (uint8_t)c;
  } else if (peek(r) == 'J') {
    r->p++;
    if (!num(r, 1, 365, &a)) return false;
    d->kind = 'J', d->day = (uint16_t)a;
  } else {
    if (!num(r, 0, 365, &a)) return false;
    d->kind = 'n', d->day = (uint16_t)a;
  }
  long t = 7200;
  if (peek(r) == '/') {
    r->p++;
    if (!hms(r, 167, &t)) return false;
  }
  d->time = (int32_t)t;
  return true;
}

int tq_tz_rule_parse(const char *s, size_t len, tq_tz *tz) {
  rd r = {s, s + len};
  tz->rule = tz->dst = false;
  if (len == 0) return 0;
  long std, dst;
  if (!name(&r) || !hms(&r, 24, &std)) return MLY_EINVAL;
  tz->std_off = tz->dst_off = (int32_t)-std;
  if (!more(&r)) {
    tz->rule = true;
    return 0;
  }
  if (!name(&r)) return MLY_EINVAL;
  dst = std - 3600;
  if (more(&r) && peek(&r) != ',' && !hms(&r, 24, &dst)) return MLY_EINVAL;
  tz->dst_off = (int32_t)-dst;
  if (!more(&r)) { /* glibc's default: the US rule */
    tz->start = (tq_tz_date){'M', 3, 2, 0, 0, 7200};
    tz->end = (tq_tz_date){'M', 11, 1, 0, 0, 7200};
  } else if (peek(&r) != ',' || (r.p++, !date(&r, &tz->start)) ||
             peek(&r) != ',' || (r.p++, !date(&r, &tz->end)) || more(&r)) {
    return MLY_EINVAL;
  }
  tz->rule = tz->dst = true;
  return 0;
}

static bool leap(int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Local midnight of the date in year y, in days since 1970-01-01. */
static int64_t day_of(const tq_tz_date *d, int64_t y) {
  int64_t jan1 = tq_days_from_civil(y, 1, 1);
  if (d->kind == 'J') return jan1 + d->day - 1 + (leap(y) && d->day >= 60);
  if (d->kind == 'n') return jan1 + d->day;
  static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
                                   30, 31};
  unsigned len = mdays[d->m - 1] + (d->m == 2 && leap(y));
  int64_t first = tq_days_from_civil(y, d->m, 1);
  int wday = (int)(((first + 4) % 7 + 7) % 7); /* 1970-01-01: Thursday */
  unsigned day = 1 + (unsigned)((d->d - wday + 7) % 7) + (d->w - 1u) * 7;
  while (day > len) day -= 7;
  return first + day - 1;
}

int32_t tq_tz_rule_offset(const tq_tz *tz, int64_t t) {
  if (!tz->dst) return tz->std_off;
  int64_t y;
  unsigned m, d;
  int64_t local = t + tz->std_off;
  int64_t days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
  tq_civil_from_days(days, &y, &m, &d);
  int64_t start = day_of(&tz->start, y) * 86400 + tz->start.time - tz->std_off,
          end = day_of(&tz->end, y) * 86400 + tz->end.time - tz->dst_off;
  bool in = start < end ? t >= start && t < end : t < end || t >= start;
  return in ? tz->dst_off : tz->std_off;
}
