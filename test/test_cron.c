/*
 * test_cron.c - schedules' times against a brute-force model.
 *
 * Random cron expressions are generated together with the sets they
 * mean (the generator is the parser's model); the model walks a range
 * minute by minute in UTC, turning each minute into local time with the
 * C library's own zone code (TZ set here, in the test process only: the
 * library reads TZif files itself), and ticks where the local minute
 * matches, with the DST rules: a local minute skipped by a spring
 * forward ticks at the transition, a repeated local minute ticks once.
 * tq_cron_next, stepped through the same range, must give the same
 * ticks.  Zones: UTC, Europe/Berlin, America/New_York.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "mealy.h"
#include "queue/cron.h"

typedef struct gen {
  char text[512];
  uint64_t bits[5];
  bool star[5];
} gen;

static uint64_t rs = 88172645463325252ull;
static unsigned rnd(unsigned n) {
  rs ^= rs << 13;
  rs ^= rs >> 7;
  rs ^= rs << 17;
  return (unsigned)(rs % n);
}

static const unsigned lo_[5] = {0, 0, 1, 1, 0}, hi_[5] = {59, 23, 31, 12, 6};
static const char *const mon3[] = {"jan", "Feb", "MAR", "apr", "May", "jun",
                                   "JUL", "aug", "Sep", "oct", "NOV", "dec"};
static const char *const dow3[] = {"sun", "Mon", "TUE", "wed",
                                   "Thu", "fri", "SAT"};

static void put_val(char *b, size_t n, int f, unsigned v, bool single) {
  size_t l = strlen(b);
  if (f == 3 && rnd(3) == 0) snprintf(b + l, n - l, "%s", mon3[v - 1]);
  else if (f == 4 && rnd(3) == 0) snprintf(b + l, n - l, "%s", dow3[v % 7]);
  else if (f == 4 && v == 0 && single && rnd(2)) snprintf(b + l, n - l, "7");
  else snprintf(b + l, n - l, "%u", v);
}

static void gen_field(gen *g, int f) {
  char *b = g->text + strlen(g->text);
  size_t n = sizeof g->text - (size_t)(b - g->text);
  unsigned lo = lo_[f], hi = hi_[f];
  unsigned items = 1 + (rnd(3) == 0 ? rnd(3) : 0);
  g->star[f] = false;
  for (unsigned it = 0; it < items; it++) {
    if (it) strcat(b, ",");
    unsigned kind = rnd(it == 0 ? 6 : 4) + (it == 0 ? 0 : 2);
    unsigned a, z, step = 1;
    if (kind <= 1) { /* '*' or '*' step */
      if (it == 0) g->star[f] = true;
      strcat(b, "*");
      a = lo, z = hi;
      if (kind == 1) {
        step = 1 + rnd(hi / 2 + 1);
        snprintf(b + strlen(b), n - strlen(b), "/%u", step);
      }
    } else if (kind <= 3) { /* N */
      a = z = lo + rnd(hi - lo + 1);
      put_val(b, n, f, a, true);
    } else { /* A-B, maybe /S */
      a = lo + rnd(hi - lo + 1);
      z = a + rnd(hi - a + 1);
      put_val(b, n, f, a, false);
      strcat(b, "-");
      put_val(b, n, f, z, false);
      if (rnd(2)) {
        step = 1 + rnd(hi / 2 + 1);
        snprintf(b + strlen(b), n - strlen(b), "/%u", step);
      }
    }
    /* "7" as the top of a range of days of week would be Sunday; the
     * generator writes ranges with numbers 0..6 only, so 7 means 0 only
     * as a single value */
    for (unsigned v = a; v <= z; v += step) g->bits[f] |= 1ull << v;
  }
}

static void gen_expr(gen *g) {
  memset(g, 0, sizeof *g);
  for (int f = 0; f < 5; f++) {
    if (f) strcat(g->text, rnd(4) ? " " : "  ");
    gen_field(g, f);
  }
}

static bool model_match(const gen *g, const struct tm *tm) {
  if (!(g->bits[0] >> tm->tm_min & 1) || !(g->bits[1] >> tm->tm_hour & 1) ||
      !(g->bits[3] >> (tm->tm_mon + 1) & 1))
    return false;
  bool dm = g->bits[2] >> tm->tm_mday & 1, wm = g->bits[4] >> tm->tm_wday & 1;
  if (!g->star[2] && !g->star[4]) return dm || wm;
  return dm && wm;
}

/* local civil minute (minutes since 1970-01-01 00:00 local) of t */
static int64_t civil_min(time_t t, struct tm *tm) {
  localtime_r(&t, tm);
  return tq_days_from_civil(tm->tm_year + 1900, (unsigned)tm->tm_mon + 1,
                            (unsigned)tm->tm_mday) * 1440 +
         tm->tm_hour * 60 + tm->tm_min;
}

static bool model_civil_match(const gen *g, int64_t cm) {
  int64_t y;
  unsigned mo, d;
  int64_t day = cm >= 0 ? cm / 1440 : -((-cm + 1439) / 1440);
  tq_civil_from_days(day, &y, &mo, &d);
  struct tm tm = {0};
  tm.tm_min = (int)(cm - day * 1440) % 60;
  tm.tm_hour = (int)(cm - day * 1440) / 60;
  tm.tm_mday = (int)d;
  tm.tm_mon = (int)mo - 1;
  tm.tm_wday = (int)(((day % 7) + 7 + 4) % 7);
  return model_match(g, &tm);
}

static size_t compared;

static void check_range(const char *zone, const gen *g, const tq_cron *c,
                        int64_t from, int64_t minutes) {
  tq_tz tz, *tzp = NULL;
  char err[256];
  if (strcmp(zone, "UTC") != 0) {
    ck_assert_int_eq(tq_tz_load(NULL, zone, &tz, err, sizeof err), 0);
    tzp = &tz;
  }
  setenv("TZ", zone, 1);
  tzset();
  from -= from % 60;
  struct tm tm;
  int64_t hiwater = civil_min((time_t)from, &tm);
  int64_t cur = from, next;
  int rc = tq_cron_next(c, tzp, cur, &next);
  for (int64_t i = 1; i <= minutes; i++) {
    int64_t t = from + i * 60;
    int64_t cm = civil_min((time_t)t, &tm);
    bool tick = false;
    if (cm > hiwater) {
      for (int64_t s = hiwater + 1; s < cm && !tick; s++) /* a gap */
        tick = model_civil_match(g, s);
      tick = tick || model_match(g, &tm);
      hiwater = cm;
    }
    if (tick) {
      ck_assert_msg(rc == 0 && next == t, "%s in %s: model ticks at %lld, "
                    "next says %lld (rc %d)", g->text, zone, (long long)t,
                    (long long)next, rc);
      compared++;
      rc = tq_cron_next(c, tzp, t, &next);
    } else {
      ck_assert_msg(rc != 0 || next > t, "%s in %s: next says %lld, the "
                    "model does not tick there", g->text, zone,
                    (long long)next);
    }
  }
  if (tzp) tq_tz_free(tzp);
}

/* 2024-03-31 01:00 UTC: Berlin springs forward; 2024-10-27 01:00 UTC:
 * it falls back; New York: 2024-03-10 07:00 and 2024-11-03 06:00 UTC;
 * past the zone files' last transitions (their footer rules): New York
 * 2040-03-11, Berlin 2040-10-28, New York 2100-11-07, Berlin 2100-03-28 */
static const int64_t around[] = {1711846800, 1729990800, 1710054000,
                                 1730613600, 2215062000, 2234998800,
                                 4129250400, 4109878800};
#define NAROUND (sizeof around / sizeof *around)

START_TEST(cron_vs_model) {
  static const char *const zones[] = {"UTC", "Europe/Berlin",
                                      "America/New_York"};
  for (int k = 0; k < 150; k++) {
    gen g;
    gen_expr(&g);
    tq_cron c;
    char err[256];
    size_t col;
    int rc = tq_cron_parse(g.text, &c, err, sizeof err, &col);
    ck_assert_msg(rc == 0, "\"%s\": %s at %zu", g.text, err, col);
    ck_assert_msg(c.min == g.bits[0] && c.hour == g.bits[1] &&
                  c.dom == g.bits[2] && c.mon == g.bits[3] &&
                  c.dow == g.bits[4] && c.dom_star == g.star[2] &&
                  c.dow_star == g.star[4], "\"%s\": parsed sets differ",
                  g.text);
    for (int z = 0; z < 3; z++) {
      int64_t from = around[rnd(NAROUND)] - 86400 * (int64_t)rnd(3) -
                     (int64_t)rnd(86400);
      check_range(zones[z], &g, &c, from, 3 * 1440);
    }
  }
  /* expressions that tick every minute or hour of a DST day, and a
   * random year-long range in each zone */
  static const char *const dense[] = {"* * * * *", "*/7 * * * *",
                                      "30 2 * * *", "0,15,30,45 1-3 * * *",
                                      "59 1 * * SUN", "0 0 29 2 *",
                                      "5 4 13 * FRI"};
  for (size_t k = 0; k < sizeof dense / sizeof *dense; k++) {
    gen g;
    memset(&g, 0, sizeof g);
    tq_cron c;
    char err[256];
    ck_assert_int_eq(tq_cron_parse(dense[k], &c, err, sizeof err, NULL), 0);
    g.bits[0] = c.min, g.bits[1] = c.hour, g.bits[2] = c.dom;
    g.bits[3] = c.mon, g.bits[4] = c.dow;
    g.star[2] = c.dom_star, g.star[4] = c.dow_star;
    snprintf(g.text, sizeof g.text, "%s", dense[k]);
    for (int z = 0; z < 3; z++)
      for (size_t a = 0; a < NAROUND; a++)
        check_range(zones[z], &g, &c, around[a] - 3 * 3600, 6 * 60);
    if (k >= 2)
      for (int z = 0; z < 3; z++)
        check_range(zones[z], &g, &c, 1704067200, 366 * 1440);
  }
  ck_assert_uint_gt(compared, 1000);
}
END_TEST

/* The DST rules spelled out on known dates (Berlin). */
START_TEST(dst_examples) {
  tq_tz tz;
  char err[256];
  ck_assert_int_eq(tq_tz_load(NULL, "Europe/Berlin", &tz, err, sizeof err),
                   0);
  tq_cron c;
  int64_t t;
  /* 02:30 does not exist on 2024-03-31: it ticks at 03:00 CEST (01:00Z) */
  ck_assert_int_eq(tq_cron_parse("30 2 * * *", &c, err, sizeof err, NULL), 0);
  ck_assert_int_eq(tq_cron_next(&c, &tz, 1711846800 - 3600, &t), 0);
  ck_assert_int_eq(t, 1711846800);
  /* 02:30 happens twice on 2024-10-27: it ticks at the first (00:30Z),
   * then the next day */
  ck_assert_int_eq(tq_cron_next(&c, &tz, 1729990800 - 7200, &t), 0);
  ck_assert_int_eq(t, 1729990800 - 1800);
  ck_assert_int_eq(tq_cron_next(&c, &tz, t, &t), 0);
  ck_assert_int_eq(t, 1729990800 - 1800 + 86400 + 3600);
  tq_tz_free(&tz);
}
END_TEST

START_TEST(parse_errors) {
  static const struct {
    const char *expr;
    size_t col;
    const char *says;
  } bad[] = {
      {"", 0, "missing the minute"},
      {"* * * *", 7, "missing the day of week"},
      {"60 * * * *", 0, "minute out of range"},
      {"* 24 * * *", 2, "hour out of range"},
      {"* * 0 * *", 4, "day of month out of range"},
      {"* * * 13 *", 6, "month out of range"},
      {"* * * * 8", 8, "day of week out of range"},
      {"* * * FOO *", 6, "expected a number or a name"},
      {"MON * * * *", 0, "minute: expected a number"},
      {"5-1 * * * *", 0, "range must not go down"},
      {"*/0 * * * *", 2, "step out of range"},
      {"*/x * * * *", 2, "a step is a number"},
      {"1,,2 * * * *", 2, "expected a number"},
      {"* * * * * *", 10, "more than 5 fields"},
      {"1;2 * * * *", 1, "unexpected character"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    tq_cron c;
    char err[256] = "";
    size_t col = 999;
    ck_assert_int_eq(tq_cron_parse(bad[i].expr, &c, err, sizeof err, &col),
                     MLY_EINVAL);
    ck_assert_msg(strstr(err, bad[i].says) != NULL, "\"%s\": \"%s\"",
                  bad[i].expr, err);
    ck_assert_msg(col == bad[i].col, "\"%s\": col %zu", bad[i].expr, col);
  }
  tq_cron c;
  int64_t t;
  ck_assert_int_eq(tq_cron_parse("0 0 31 2 *", &c, NULL, 0, NULL), 0);
  ck_assert_int_eq(tq_cron_next(&c, NULL, 0, &t), MLY_ENOENT);
}
END_TEST

START_TEST(zone_names) {
  tq_tz tz;
  char err[256];
  static const char *const refused[] = {"../etc/passwd", "/etc/localtime",
                                        "Europe/../../etc", ".hidden", "",
                                        "a b", "Europe/"};
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
    ck_assert_int_eq(tq_tz_load(NULL, refused[i], &tz, err, sizeof err),
                     MLY_EINVAL);
  ck_assert_int_eq(tq_tz_load(NULL, "No/Such_Zone", &tz, err, sizeof err),
                   MLY_ENOENT);
  ck_assert_int_eq(tq_tz_load(NULL, "UTC", &tz, err, sizeof err), 0);
  ck_assert_int_eq(tq_tz_offset(&tz, 1700000000), 0);
  tq_tz_free(&tz);
  ck_assert_int_eq(tq_tz_load(NULL, "America/New_York", &tz, err, sizeof err),
                   0);
  ck_assert_int_eq(tq_tz_offset(&tz, 1719835200), -4 * 3600); /* July */
  ck_assert_int_eq(tq_tz_offset(&tz, 1704067200), -5 * 3600); /* Jan */
  tq_tz_free(&tz);
}
END_TEST

/* ---- past the last transition: the footer's POSIX TZ rule ---- */

/* The C library's offset at t in zone (TZ set in this process only). */
static long libc_offset(const char *zone, int64_t t) {
  setenv("TZ", zone, 1);
  tzset();
  time_t tt = (time_t)t;
  struct tm tm;
  ck_assert_ptr_nonnull(localtime_r(&tt, &tm));
  return tm.tm_gmtoff;
}

/* Known DST changes (UTC seconds) in 2040 and 2100: the offset just
 * before and at each. */
typedef struct change {
  const char *zone;
  int64_t at;
  int32_t before, after;
} change;

START_TEST(footer_rule_known_dates) {
  static const change ch[] = {
      {"America/New_York", 2215062000, -5 * 3600, -4 * 3600}, /* 2040-03-11 */
      {"America/New_York", 2235621600, -4 * 3600, -5 * 3600}, /* 2040-11-04 */
      {"Europe/Berlin", 2216250000, 3600, 7200},              /* 2040-03-25 */
      {"Europe/Berlin", 2234998800, 7200, 3600},              /* 2040-10-28 */
      {"Australia/Sydney", 2216822400, 11 * 3600, 10 * 3600}, /* 2040-04-01 */
      {"Australia/Sydney", 2233152000, 10 * 3600, 11 * 3600}, /* 2040-10-07 */
      {"America/New_York", 4108690800, -5 * 3600, -4 * 3600}, /* 2100-03-14 */
      {"America/New_York", 4129250400, -4 * 3600, -5 * 3600}, /* 2100-11-07 */
      {"Europe/Berlin", 4109878800, 3600, 7200},              /* 2100-03-28 */
      {"Europe/Berlin", 4128627600, 7200, 3600},              /* 2100-10-31 */
      {"Australia/Sydney", 4110451200, 11 * 3600, 10 * 3600}, /* 2100-04-04 */
      {"Australia/Sydney", 4126176000, 10 * 3600, 11 * 3600}, /* 2100-10-03 */
  };
  for (size_t i = 0; i < sizeof ch / sizeof *ch; i++) {
    tq_tz tz;
    char err[256];
    ck_assert_int_eq(tq_tz_load(NULL, ch[i].zone, &tz, err, sizeof err), 0);
    ck_assert_msg(tz.rule, "%s: no footer rule read", ch[i].zone);
    ck_assert_int_eq(tq_tz_offset(&tz, ch[i].at - 1), ch[i].before);
    ck_assert_int_eq(tq_tz_offset(&tz, ch[i].at), ch[i].after);
    /* and the C library agrees */
    ck_assert_int_eq(libc_offset(ch[i].zone, ch[i].at - 1), ch[i].before);
    ck_assert_int_eq(libc_offset(ch[i].zone, ch[i].at), ch[i].after);
    tq_tz_free(&tz);
  }
}
END_TEST

/* Every hour of 2036..2042 and 2097..2103 (the transitions the rules
 * make fall on whole hours, so each is met at its instant) against the
 * C library, in zones of every shape of rule: northern, southern, none
 * (<-03>3), minutes (Chatham), a negative time (Nuuk, version 3),
 * times of 24:00 (Santiago). */
START_TEST(footer_rule_vs_libc) {
  static const char *const zones[] = {
      "America/New_York", "Europe/Berlin", "Australia/Sydney",
      "Europe/London", "Pacific/Auckland", "Pacific/Chatham",
      "America/Nuuk", "America/Santiago", "America/Sao_Paulo",
      "Asia/Tehran", "UTC"};
  static const int64_t spans[][2] = {{2082758400, 2303683200},  /* 2036-42 */
                                     {4007836800, 4228588800}}; /* 2097-03 */
  for (size_t z = 0; z < sizeof zones / sizeof *zones; z++) {
    tq_tz tz;
    char err[256];
    ck_assert_msg(tq_tz_load(NULL, zones[z], &tz, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_msg(tz.rule, "%s: no footer rule read", zones[z]);
    setenv("TZ", zones[z], 1);
    tzset();
    long diffs = 0;
    for (size_t s = 0; s < 2; s++)
      for (int64_t t = spans[s][0]; t < spans[s][1]; t += 3600) {
        time_t tt = (time_t)t;
        struct tm tm;
        localtime_r(&tt, &tm);
        int32_t mine = tq_tz_offset(&tz, t);
        if (mine != tm.tm_gmtoff && diffs++ < 5)
          fprintf(stderr, "%s at %lld: %d, the C library %ld\n", zones[z],
                  (long long)t, mine, tm.tm_gmtoff);
      }
    ck_assert_msg(diffs == 0, "%s: %ld differences", zones[z], diffs);
    tq_tz_free(&tz);
  }
}
END_TEST

START_TEST(footer_rule_forms) {
  tq_tz tz;
  memset(&tz, 0, sizeof tz);
  static const char *const good[] = {
      "EST5EDT,M3.2.0,M11.1.0", "<-03>3", "<+0330>-3:30",
      "<-02>2<-01>,M3.5.0/-1,M10.5.0/0", "AAA3BBB,J60/2,J300/1:30:15",
      "AAA-1BBB-2,0/0,365/25", "EST5EDT", "XXX-12:45YYY-13:45,M9.5.0/2:45,"
      "M4.1.0/3:45", "<-04>4<-03>,M9.1.6/24,M4.1.6/24"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    ck_assert_msg(tq_tz_rule_parse(good[i], strlen(good[i]), &tz) == 0,
                  "refused: %s", good[i]);
  static const char *const bad[] = {
      "E5", "EST", "EST5EDT,M13.1.0,M11.1.0", "EST5EDT,M3.6.0,M11.1.0",
      "EST5EDT,M3.2.7,M11.1.0", "EST5EDT,M3.2.0", "EST5EDT,J0,J365",
      "EST5EDT,J1,J366", "EST5EDT,M3.2.0/168,M11.1.0", "<-03", "<>3",
      "EST99", "EST5EDT,M3.2.0,M11.1.0x", "EST5EDT,,"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    ck_assert_msg(tq_tz_rule_parse(bad[i], strlen(bad[i]), &tz) ==
                      MLY_EINVAL, "accepted: %s", bad[i]);
  /* J counts no February 29, n does: in 2040 (leap) J60 is March 1 and
   * 59 (0-based) February 29 */
  ck_assert_int_eq(tq_tz_rule_parse("AAA0BBB,J60/0,J61/0", 19, &tz), 0);
  int64_t mar1 = tq_days_from_civil(2040, 3, 1) * 86400;
  ck_assert_int_eq(tq_tz_rule_offset(&tz, mar1 - 1), 0);
  ck_assert_int_eq(tq_tz_rule_offset(&tz, mar1), 3600);
  ck_assert_int_eq(tq_tz_rule_parse("AAA0BBB,59/0,60/0", 17, &tz), 0);
  int64_t feb29 = tq_days_from_civil(2040, 2, 29) * 86400;
  ck_assert_int_eq(tq_tz_rule_offset(&tz, feb29 - 1), 0);
  ck_assert_int_eq(tq_tz_rule_offset(&tz, feb29), 3600);
  ck_assert_int_eq(tq_tz_rule_offset(&tz, feb29 + 86400), 0);
}
END_TEST

static Suite *cron_suite(void) {
  Suite *s = suite_create("cron");
  TCase *tc = tcase_create("cron");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, parse_errors);
  tcase_add_test(tc, zone_names);
  tcase_add_test(tc, dst_examples);
  tcase_add_test(tc, cron_vs_model);
  tcase_add_test(tc, footer_rule_known_dates);
  tcase_add_test(tc, footer_rule_vs_libc);
  tcase_add_test(tc, footer_rule_forms);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(cron_suite)
