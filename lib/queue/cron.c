/*
 * cron.c - 5-field cron expressions and their next tick in a time zone.
 *
 * The search walks local calendar days (at most 9 years of them) and,
 * in a matching day, the allowed hours and minutes in order; each local
 * minute is turned into a UTC instant by the zone (tz.c).  That mapping
 * never goes back: a local minute skipped by a spring-forward maps to
 * the transition itself, and a local minute that occurs twice in a
 * fall-back maps to its first occurrence, so the first local minute
 * whose instant lies after `after` is the answer.
 */
#include "cron.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "mealy.h"

static const char *const mon_names[] = {"JAN", "FEB", "MAR", "APR",
                                        "MAY", "JUN", "JUL", "AUG",
                                        "SEP", "OCT", "NOV", "DEC"};
static const char *const dow_names[] = {"SUN", "MON", "TUE", "WED",
                                        "THU", "FRI", "SAT"};

typedef struct field {
  const char *what;
  unsigned lo, hi;           /* accepted values                 */
  const char *const *names;  /* NULL or names of lo.. (3 letters) */
  unsigned nnames, name_base;
} field;

static const field fields[5] = {
    {"minute", 0, 59, NULL, 0, 0},
    {"hour", 0, 23, NULL, 0, 0},
    {"day of month", 1, 31, NULL, 0, 0},
    {"month", 1, 12, mon_names, 12, 1},
    {"day of week", 0, 7, dow_names, 7, 0},
};

typedef struct cur {
  const char *s, *p;
  char *err;
  size_t errlen, *col;
} cur;

static int bad(cur *c, const char *at, const char *fmt, const char *what) {
  if (c->col) *c->col = (size_t)(at - c->s);
  if (c->errlen) snprintf(c->err, c->errlen, fmt, what);
  return MLY_EINVAL;
}

/* One value: a number or a name. */
static int value(cur *c, const field *f, unsigned *v) {
  const char *at = c->p;
  if (isdigit((unsigned char)*c->p)) {
    unsigned x = 0;
    while (isdigit((unsigned char)*c->p)) {
      x = x * 10 + (unsigned)(*c->p++ - '0');
      if (x > 1000) break;
    }
    if (x < f->lo || x > f->hi) {
      c->p = at;
      return bad(c, at, "%s out of range", f->what);
    }
    *v = x;
    return 0;
  }
  if (f->names && isalpha((unsigned char)c->p[0]) &&
      isalpha((unsigned char)c->p[1]) && isalpha((unsigned char)c->p[2]) &&
      !isalpha((unsigned char)c->p[3])) {
    for (unsigned i = 0; i < f->nnames; i++)
      if (strncasecmp(c->p, f->names[i], 3) == 0) {
        c->p += 3;
        *v = i + f->name_base;
        return 0;
      }
  }
  return bad(c, at,
             "%s: expected a number or a name", f->what);
}

static int parse_field(cur *c, const field *f, uint64_t *bits, bool *star) {
  *bits = 0;
  *star = *c->p == '*';
  for (;;) {
    unsigned a, b, step = 1;
    const char *item = c->p;
    bool range = false;
    int rc;
    if (*c->p == '*') {
      c->p++;
      a = f->lo;
      b = f->hi == 7 ? 6 : f->hi;
    } else {
      if ((rc = value(c, f, &a)) < 0) return rc;
      b = a;
      if (*c->p == '-') {
        c->p++;
        range = true;
        if ((rc = value(c, f, &b)) < 0) return rc;
        if (b < a) return bad(c, item, "%s: a range must not go down", f->what);
      }
    }
    if (*c->p == '/') {
      c->p++;
      const char *at = c->p;
      if (!isdigit((unsigned char)*c->p))
        return bad(c, at, "%s: a step is a number", f->what);
      step = 0;
      while (isdigit((unsigned char)*c->p) && step <= 1000)
        step = step * 10 + (unsigned)(*c->p++ - '0');
      if (step == 0 || step > f->hi)
        return bad(c, at, "%s: step out of range", f->what);
      if (!range && item[0] != '*') b = f->hi == 7 ? 6 : f->hi; /* N/S */
    }
    for (unsigned x = a; x <= b; x += step) *bits |= 1ull << (x == 7 && f->hi == 7 ? 0 : x);
    if (*c->p != ',') break;
    c->p++;
  }
  if (*c->p != '\0' && *c->p != ' ' && *c->p != '\t')
    return bad(c, c->p, "%s: unexpected character", f->what);
  return 0;
}

int tq_cron_parse(const char *expr, tq_cron *out, char *err, size_t errlen,
                  size_t *col) {
  cur c = {expr, expr, err, errlen, col};
  uint64_t bits[5];
  bool star[5];
  memset(out, 0, sizeof *out);
  for (int i = 0; i < 5; i++) {
    while (*c.p == ' ' || *c.p == '\t') c.p++;
    if (*c.p == '\0')
      return bad(&c, c.p, "missing the %s field (5 fields: minute hour "
                 "day-of-month month day-of-week)", fields[i].what);
    int rc = parse_field(&c, &fields[i], &bits[i], &star[i]);
    if (rc < 0) return rc;
  }
  while (*c.p == ' ' || *c.p == '\t') c.p++;
  if (*c.p != '\0')
    return bad(&c, c.p, "%s: more than 5 fields", "cron");
  out->min = bits[0];
  out->hour = (uint32_t)bits[1];
  out->dom = (uint32_t)bits[2];
  out->mon = (uint16_t)bits[3];
  out->dow = (uint8_t)bits[4];
  out->dom_star = star[2];
  out->dow_star = star[4];
  return 0;
}

int64_t tq_days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

void tq_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b) {
  return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* The instant of local second ls (see the file's opening). */
static int64_t to_utc(const tq_tz *tz, int64_t ls) {
  if (tz == NULL) return ls;
  int32_t oa = tq_tz_offset(tz, ls - 2 * 86400);
  int32_t ob = tq_tz_offset(tz, ls + 2 * 86400);
  int64_t ua = ls - oa, ub = ls - ob;
  bool va = tq_tz_offset(tz, ua) == oa, vb = tq_tz_offset(tz, ub) == ob;
  if (va && vb) return ua < ub ? ua : ub;
  if (va) return ua;
  if (vb) return ub;
  /* a gap: the change lies in (ls - ob, ls - oa]: its first second with
   * another offset (from the table, or past it from the footer's rule) */
  int64_t lo = ls - ob, hi = ls - oa;
  int32_t before = tq_tz_offset(tz, lo);
  if (hi <= lo || tq_tz_offset(tz, hi) == before) return ua;
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    if (tq_tz_offset(tz, mid) == before) lo = mid;
    else hi = mid;
  }
  return hi;
}

static bool day_matches(const tq_cron *c, int64_t day) {
  int64_t y;
  unsigned m, d;
  tq_civil_from_days(day, &y, &m, &d);
  if (!(c->mon >> m & 1)) return false;
  unsigned wd = (unsigned)(((day % 7) + 7 + 4) % 7); /* 1970-01-01: Thu */
  bool dm = c->dom >> d & 1, wm = c->dow >> wd & 1;
  if (!c->dom_star && !c->dow_star) return dm || wm;
  return dm && wm;
}

int tq_cron_next(const tq_cron *c, const tq_tz *tz, int64_t after,
                 int64_t *out) {
  int64_t lafter = after + (tz ? tq_tz_offset(tz, after) : 0);
  /* start a day early: a local minute before lafter may map after it
   * only through a gap, which starts after lafter; cheap either way */
  int64_t day = floor_div(lafter, 86400) - 1;
  for (int64_t i = 0; i < 366 * 9 + 2; i++, day++) {
    if (!day_matches(c, day)) continue;
    for (unsigned h = 0; h < 24; h++) {
      if (!(c->hour >> h & 1)) continue;
      for (unsigned mi = 0; mi < 60; mi++) {
        if (!(c->min >> mi & 1)) continue;
        int64_t u = to_utc(tz, day * 86400 + h * 3600 + mi * 60);
        if (u > after) {
          *out = u;
          return 0;
        }
      }
    }
  }
  return MLY_ENOENT;
}
