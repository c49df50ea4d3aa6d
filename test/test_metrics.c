/*
 * test_metrics.c - mly_metrics_write: the text it writes (HELP/TYPE,
 * escaping, names checked, exact numbers), the bounded chunks it hands
 * to the callback, sources (order, errors, removal), and instance counts
 * per type and lifecycle against what the test spawned.  The values are
 * also read back by a real Prometheus parser in test_metrics_scrape.py.
 */
#include "harness.h"

#include <math.h>
#include <string.h>

typedef struct sink {
  char text[1 << 20];
  size_t n;
  size_t calls, biggest;
  int fail_at; /* the call that fails (1-based); 0: none */
} sink;

static int to_sink(void *arg, const char *p, size_t n) {
  sink *s = arg;
  s->calls++;
  if (s->fail_at && (int)s->calls == s->fail_at) return -77;
  ck_assert_uint_gt(n, 0);
  if (n > s->biggest) s->biggest = n;
  ck_assert_uint_lt(s->n + n, sizeof s->text);
  memcpy(s->text + s->n, p, n);
  s->n += n;
  s->text[s->n] = '\0';
  return 0;
}

static sink *sink_new(void) {
  sink *s = calloc(1, sizeof *s);
  ck_assert_ptr_nonnull(s);
  return s;
}

/* ---- a source that writes what a test asks ---- */

typedef struct src_case {
  int which;
  int rc[8];
  int calls;
} src_case;

static int src_escape(mly_metrics *mx, void *arg) {
  src_case *c = arg;
  c->calls++;
  c->rc[0] = mly_metrics_family(mx, "t_esc", MLY_METRIC_GAUGE,
                                "back\\slash and\nnewline \"quoted\"");
  const char *l[] = {"v", "a\"b\\c\nd", "empty", "", NULL};
  c->rc[1] = mly_metrics_sample(mx, "t_esc", l, 1.5);
  c->rc[2] = mly_metrics_sample(mx, "t_esc", NULL, NAN);
  c->rc[3] = mly_metrics_sample(mx, "t_esc", NULL, -INFINITY);
  c->rc[4] = mly_metrics_sample_u64(mx, "t_esc", NULL, UINT64_MAX);
  c->rc[5] = mly_metrics_sample(mx, "t_esc", NULL, 0.1);
  return 0;
}

START_TEST(text_is_escaped_and_exact) {
  mly_runtime *rt = h_runtime();
  src_case c = {0};
  ck_assert_int_eq(mly_metrics_source_add(rt, src_escape, &c), 0);
  sink *s = sink_new();
  ck_assert_int_eq(mly_metrics_write(rt, to_sink, s), 0);
  for (int i = 0; i < 6; i++) ck_assert_int_eq(c.rc[i], 0);
  ck_assert_ptr_nonnull(strstr(s->text,
      "# HELP t_esc back\\\\slash and\\nnewline \"quoted\"\n"
      "# TYPE t_esc gauge\n"
      "t_esc{v=\"a\\\"b\\\\c\\nd\",empty=\"\"} 1.5\n"
      "t_esc NaN\nt_esc -Inf\nt_esc 18446744073709551615\nt_esc 0.1\n"));
  ck_assert_int_eq(s->text[s->n - 1], '\n');
  free(s);
  mly_runtime_close(rt);
}
END_TEST

/* Each kind of bad name is refused, and the error sticks. */
static int src_bad(mly_metrics *mx, void *arg) {
  src_case *c = arg;
  switch (c->which) {
  case 0: return mly_metrics_family(mx, "9lives", MLY_METRIC_GAUGE, "x");
  case 1: return mly_metrics_family(mx, "a-b", MLY_METRIC_GAUGE, "x");
  case 2: return mly_metrics_family(mx, "", MLY_METRIC_GAUGE, "x");
  case 3: return mly_metrics_family(mx, "t", (mly_metric_type)9, "x");
  case 4: return mly_metrics_sample(mx, "t", NULL, 1); /* no family */
  case 5:
    mly_metrics_family(mx, "t_a", MLY_METRIC_GAUGE, "x");
    return mly_metrics_sample(mx, "t_b", NULL, 1); /* another family */
  case 6:
    mly_metrics_family(mx, "t_g", MLY_METRIC_GAUGE, "x");
    return mly_metrics_sample(mx, "t_g_sum", NULL, 1); /* not a summary */
  case 7:
    mly_metrics_family(mx, "t_h", MLY_METRIC_HISTOGRAM, "x");
    return mly_metrics_sample(mx, "t_h", NULL, 1); /* bare histogram */
  case 8: {
    mly_metrics_family(mx, "t_l", MLY_METRIC_GAUGE, "x");
    const char *l[] = {"__reserved", "v", NULL};
    return mly_metrics_sample(mx, "t_l", l, 1);
  }
  case 9: {
    mly_metrics_family(mx, "t_l", MLY_METRIC_GAUGE, "x");
    const char *l[] = {"a:b", "v", NULL}; /* no colon in label names */
    return mly_metrics_sample(mx, "t_l", l, 1);
  }
  default: {
    char longname[260];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    return mly_metrics_family(mx, longname, MLY_METRIC_GAUGE, "x");
  }
  }
}

START_TEST(bad_names_are_refused) {
  mly_runtime *rt = h_runtime();
  src_case c = {.which = _i};
  ck_assert_int_eq(mly_metrics_source_add(rt, src_bad, &c), 0);
  sink *s = sink_new();
  ck_assert_int_eq(mly_metrics_write(rt, to_sink, s), MLY_EINVAL);
  /* nothing of the bad line was written */
  ck_assert_ptr_null(strstr(s->text, "9lives"));
  ck_assert_ptr_null(strstr(s->text, "t_b "));
  ck_assert_ptr_null(strstr(s->text, "__reserved"));
  free(s);
  mly_runtime_close(rt);
}
END_TEST

/* Many series: the callback sees chunks of at most MLY_METRICS_CHUNK,
 * and a failing callback stops the write with its error. */
static int src_many(mly_metrics *mx, void *arg) {
  (void)arg;
  mly_metrics_family(mx, "t_many", MLY_METRIC_GAUGE, "many");
  for (int i = 0; i < 5000; i++) {
    char v[16];
    snprintf(v, sizeof v, "%d", i);
    const char *l[] = {"i", v, NULL};
    int rc = mly_metrics_sample(mx, "t_many", l, i);
    if (rc) return rc;
  }
  return 0;
}

START_TEST(chunks_are_bounded_and_errors_stop) {
  mly_runtime *rt = h_runtime();
  ck_assert_int_eq(mly_metrics_source_add(rt, src_many, NULL), 0);
  sink *s = sink_new();
  ck_assert_int_eq(mly_metrics_write(rt, to_sink, s), 0);
  ck_assert_uint_le(s->biggest, MLY_METRICS_CHUNK);
  ck_assert_uint_gt(s->calls, 10);
  ck_assert_ptr_nonnull(strstr(s->text, "t_many{i=\"4999\"} 4999\n"));
  size_t calls = s->calls;
  free(s);
  s = sink_new();
  s->fail_at = 3;
  ck_assert_int_eq(mly_metrics_write(rt, to_sink, s), -77);
  ck_assert_uint_eq(s->calls, 3); /* not called again after it failed */
  ck_assert_uint_lt(s->calls, calls);
  free(s);
  mly_runtime_close(rt);
}
END_TEST

static int src_a(mly_metrics *mx, void *arg) {
  (void)arg;
  mly_metrics_family(mx, "t_a", MLY_METRIC_COUNTER, "a");
  return mly_metrics_sample_u64(mx, "t_a", NULL, 1);
}
static int src_b(mly_metrics *mx, void *arg) {
  (void)mx;
  return *(int *)arg;
}

START_TEST(sources_in_order_and_removed) {
  mly_runtime *rt = h_runtime();
  int brc = 0;
  ck_assert_int_eq(mly_metrics_source_add(rt, src_a, NULL), 0);
  ck_assert_int_eq(mly_metrics_source_add(rt, src_a, NULL), MLY_EEXIST);
  ck_assert_int_eq(mly_metrics_source_add(rt, src_b, &brc), 0);
  ck_assert_int_eq(mly_metrics_source_add(rt, NULL, NULL), MLY_EINVAL);
  sink *s = sink_new();
  ck_assert_int_eq(mly_metrics_write(rt, to_sink, s), 0);
  /* the runtime's own families first, then the source's */
  char *steps = strstr(s->text, "# TYPE mealy_steps_total counter\n");
  char *a = strstr(s->text, "# TYPE t_a counter\nt_a 1\n");
  ck_assert_ptr_nonnull(steps);
  ck_assert_ptr_nonnull(a);
  ck_assert(steps < a);
  brc = MLY_EIO; /* a source's error ends the write */
  s->n = 0;
  ck_assert_int_eq(mly_metrics_write(rt, to_sink, s), MLY_EIO);
  ck_assert_int_eq(mly_metrics_source_remove(rt, src_b, &brc), 0);
  ck_assert_int_eq(mly_metrics_source_remove(rt, src_b, &brc), MLY_ENOENT);
  s->n = 0;
  ck_assert_int_eq(mly_metrics_write(rt, to_sink, s), 0);
  free(s);
  mly_runtime_close(rt);
}
END_TEST

/* ---- instance counts against what was spawned ---- */

typedef struct sleeper { int ms; } sleeper;
static int sleeper_run(mly_machine *m, void *data) {
  sleeper *d = data;
  MLY_BEGIN(m);
  MLY_SLEEP(m, d->ms);
  MLY_END(m);
}

static uint64_t value_of(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; (p = strstr(p, series)) != NULL; p++)
    if ((p == text || p[-1] == '\n') && p[n] == ' ')
      return strtoull(p + n + 1, NULL, 10);
  ck_abort_msg("no series %s", series);
  return 0;
}

START_TEST(instances_per_type_and_lifecycle) {
  mly_runtime *rt = h_runtime();
  mly_type *a = h_type(rt, &(mly_type_def){.name = "alpha", .run = sleeper_run,
      .data_size = sizeof(sleeper)});
  mly_type *b = h_type(rt, &(mly_type_def){.name = "beta", .run = sleeper_run,
      .data_size = sizeof(sleeper)});
  unsigned k = 37 + (unsigned)_i * 11;
  for (unsigned i = 0; i < k; i++) h_spawn(rt, a, &(sleeper){100000}, sizeof(sleeper));
  for (unsigned i = 0; i < 5; i++) h_spawn(rt, b, &(sleeper){100000}, sizeof(sleeper));
  sink *s = sink_new();
  ck_assert_int_eq(mly_metrics_write(rt, to_sink, s), 0);
  ck_assert_uint_eq(value_of(s->text, "mealy_instances{type=\"alpha\",lifecycle=\"init\"}"), k);
  ck_assert_uint_eq(value_of(s->text, "mealy_instances{type=\"beta\",lifecycle=\"init\"}"), 5);
  h_turn(rt); /* their first step: each sleeps now */
  s->n = 0;
  ck_assert_int_eq(mly_metrics_write(rt, to_sink, s), 0);
  ck_assert_uint_eq(value_of(s->text, "mealy_instances{type=\"alpha\",lifecycle=\"ready\"}"), k);
  ck_assert_uint_eq(value_of(s->text, "mealy_instances{type=\"alpha\",lifecycle=\"init\"}"), 0);
  ck_assert_uint_eq(value_of(s->text, "mealy_instances{type=\"beta\",lifecycle=\"ready\"}"), 5);
  ck_assert_uint_eq(value_of(s->text, "mealy_timers_pending"), k + 5);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(value_of(s->text, "mealy_steps_total"), st.steps);
  ck_assert_uint_eq(value_of(s->text, "mealy_instances_spawned_total"), k + 5);
  /* no journal: no journal families */
  ck_assert_ptr_null(strstr(s->text, "mealy_journal_"));
  free(s);
  mly_runtime_close(rt);
}
END_TEST

/* Another thread may not write a runtime's metrics. */
typedef struct thread_box {
  mly_runtime *rt;
  int rc;
} thread_box;

static void other_thread(void *arg) {
  thread_box *b = arg;
  sink *s = sink_new();
  b->rc = mly_metrics_write(b->rt, to_sink, s);
  free(s);
}

START_TEST(loop_thread_only) {
  mly_runtime *rt = h_runtime();
  thread_box box = {rt, 0};
  uv_thread_t t;
  ck_assert_int_eq(uv_thread_create(&t, other_thread, &box), 0);
  uv_thread_join(&t);
  ck_assert_int_eq(box.rc, MLY_EPERM);
  mly_runtime_close(rt);
}
END_TEST

static Suite *metrics_suite(void) {
  Suite *s = suite_create("metrics");
  TCase *tc = tcase_create("metrics");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, text_is_escaped_and_exact);
  tcase_add_loop_test(tc, bad_names_are_refused, 0, 11);
  tcase_add_test(tc, chunks_are_bounded_and_errors_stop);
  tcase_add_test(tc, sources_in_order_and_removed);
  tcase_add_loop_test(tc, instances_per_type_and_lifecycle, 0, 3);
  tcase_add_test(tc, loop_thread_only);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(metrics_suite)
