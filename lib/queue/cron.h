/*
 * cron.h - schedules' times: 5-field cron expressions, `every`
 * periods, and the time zones they are read in (TZif files).  Internal
 * to the queue layer (schedule.c) and its tests.
 */
#ifndef MLY_QUEUE_CRON_H
#define MLY_QUEUE_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A parsed expression: one bit per allowed value. */
typedef struct tq_cron {
  uint64_t min;  /* bits 0..59                                         */
  uint32_t hour; /* bits 0..23                                         */
  uint32_t dom;  /* bits 1..31                                         */
  uint16_t mon;  /* bits 1..12                                         */
  uint8_t dow;   /* bits 0..6, Sunday 0 (7 is read as Sunday)           */
  /* the day field's text started with '*': cron's rule is that when
   * neither day field does, a day matches when EITHER matches */
  bool dom_star, dow_star;
} tq_cron;

/* Parse "MIN HOUR DOM MON DOW": each field a list of `*`, `N`, `A-B`,
 * each optionally `/STEP`; names JAN..DEC and SUN..SAT (any case) in
 * their fields.  0 or MLY_EINVAL with a sentence in err and the 0-based
 * column of the mistake in *col. */
int tq_cron_parse(const char *expr, tq_cron *out, char *err, size_t errlen,
                  size_t *col);

/* A date rule of a POSIX TZ string: Jn, n or Mm.w.d, at `time`
 * seconds of local time (-167h..167h). */
typedef struct tq_tz_date {
  uint8_t kind;      /* 'J' (1..365, no Feb 29), 'n' (0..365), 'M'   */
  uint8_t m, w, d;   /* M: month 1..12, week 1..5 (5: last), day 0..6 */
  uint16_t day;      /* J, n                                          */
  int32_t time;
} tq_tz_date;

/* A time zone: the transitions of one TZif file, then (version 2+) its
 * footer's POSIX TZ rule for times past the last transition. */
typedef struct tq_tz {
  size_t n;          /* transitions                              */
  int64_t *at;       /* n UTC seconds, ascending                 */
  int32_t *off;      /* n offsets (seconds east) in effect after */
  int32_t off0;      /* before the first (and UTC: n == 0)        */
  bool rule;         /* the footer had a rule: it holds past at[n-1] */
  bool dst;          /* ... with daylight saving time                */
  int32_t std_off, dst_off;   /* seconds east                         */
  tq_tz_date start, end;      /* DST from start (std local time) to end
                                 (DST local time)                      */
} tq_tz;

/* Parse a POSIX TZ string ("CET-1CEST,M3.5.0,M10.5.0/3", "<-03>3") into
 * tz's rule fields: 0 or MLY_EINVAL.  An empty string sets no rule. */
int tq_tz_rule_parse(const char *s, size_t len, tq_tz *tz);
/* The offset (seconds east) the rule gives at UTC second t. */
int32_t tq_tz_rule_offset(const tq_tz *tz, int64_t t);

/* Load zone `name` ("UTC", "Europe/Berlin") from dir (NULL:
 * /usr/share/zoneinfo).  The name is letters, digits, '_', '-', '+',
 * '/' components, none starting with '.'; the file must be a regular
 * file of at most 1 MiB owned by root or us and not writable by group
 * or others.  Times past the file's last transition follow its footer's
 * rule (a version 1 file, or one without a rule: its last offset holds).
 * MLY_EINVAL (bad
 * name or file, err says), MLY_ENOENT, MLY_EPERM, MLY_ENOMEM. */
int tq_tz_load(const char *dir, const char *name, tq_tz *out, char *err,
               size_t errlen);
void tq_tz_free(tq_tz *tz);
int32_t tq_tz_offset(const tq_tz *tz, int64_t utc_s);

/* The first tick strictly after `after` (UTC seconds) of c in tz (NULL:
 * UTC).  A tick whose local time falls in a skipped hour (spring
 * forward) is at the transition; a local time that occurs twice (fall
 * back) ticks at its first occurrence only.  MLY_ENOENT: none within 9
 * years (an impossible date such as 31 FEB). */
int tq_cron_next(const tq_cron *c, const tq_tz *tz, int64_t after,
                 int64_t *out);

/* Civil calendar helpers (proleptic Gregorian, days since 1970-01-01). */
int64_t tq_days_from_civil(int64_t y, unsigned m, unsigned d);
void tq_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);

#endif
