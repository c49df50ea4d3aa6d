/*
 * metrics.c - a runtime's figures in the Prometheus text format 0.0.4.
 *
 * The writer (struct mly_metrics) lives on the caller's stack for one
 * mly_metrics_write: a MLY_METRICS_CHUNK buffer that goes to the caller's
 * callback whenever it fills, the current family (its samples must
 * follow it, named after it), and the first error, which sticks: after
 * it every call returns it and writes nothing.  Nothing here allocates,
 * so a scrape costs the same memory with ten instances or ten million.
 *
 * Names and label names are checked against the format's grammar, and
 * text is escaped as it says: in HELP a backslash and a newline, in a
 * label value also the double quote.  Counters are named *_total, sizes
 * *_bytes, durations *_seconds (Prometheus's naming conventions).
 *
 * What the runtime writes is read from the structures as they are: the
 * instance counts per type and lifecycle by one walk over the slot
 * table (scratch counters in each type), the rest from mly_stats and
 * the journal's figures (journal.c).  Sources registered by the layers
 * above follow, in the order they were added.
 */
#include "durable.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct metrics_src {
  mly_metrics_source_fn fn;
  void *arg;
} metrics_src;

#define FAMILY_MAX 200

struct mly_metrics {
  mly_runtime *rt;
  mly_metrics_write_fn write;
  void *arg;
  int err;
  size_t n;
  char family[FAMILY_MAX + 1]; /* "" before the first family */
  mly_metric_type type;
  char buf[MLY_METRICS_CHUNK];
};

/* ---- the writer ---- */

static void flush(mly_metrics *mx) {
  if (mx->err == 0 && mx->n > 0) mx->err = mx->write(mx->arg, mx->buf, mx->n);
  mx->n = 0;
}

static void put(mly_metrics *mx, const char *p, size_t n) {
  while (n > 0 && mx->err == 0) {
    size_t room = sizeof mx->buf - mx->n;
    size_t k = n < room ? n : room;
    memcpy(mx->buf + mx->n, p, k);
    mx->n += k;
    p += k;
    n -= k;
    if (mx->n == sizeof mx->buf) flush(mx);
  }
}

static void puts_(mly_metrics *mx, const char *s) { put(mx, s, strlen(s)); }

/* Text escaped as the format wants: \\ and \n always, \" in labels. */
static void put_escaped(mly_metrics *mx, const char *s, bool quote) {
  const char *run = s;
  for (; *s; s++) {
    const char *rep = *s == '\\'             ? "\\\\"
                      : *s == '\n'           ? "\\n"
                      : quote && *s == '"'   ? "\\\""
                                             : NULL;
    if (rep == NULL) continue;
    put(mx, run, (size_t)(s - run));
    puts_(mx, rep);
    run = s + 1;
  }
  put(mx, run, (size_t)(s - run));
}

static bool name_char(char c, bool first, bool colon) {
  return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (colon && c == ':') || (!first && c >= '0' && c <= '9');
}

static bool valid_name(const char *s, bool colon) {
  if (s == NULL || *s == '\0' || strlen(s) > FAMILY_MAX) return false;
  for (const char *p = s; *p; p++)
    if (!name_char(*p, p == s, colon)) return false;
  return true;
}

static int fail(mly_metrics *mx, int err) {
  if (mx->err == 0) mx->err = err;
  return mx->err;
}

static const char *const type_names[] = {"counter", "gauge", "histogram",
                                         "summary", "untyped"};

int mly_metrics_family(mly_metrics *mx, const char *name,
                       mly_metric_type type, const char *help) {
  if (mx->err) return mx->err;
  if (!valid_name(name, true) || (unsigned)type > MLY_METRIC_UNTYPED)
    return fail(mx, MLY_EINVAL);
  snprintf(mx->family, sizeof mx->family, "%s", name);
  mx->type = type;
  puts_(mx, "# HELP ");
  puts_(mx, name);
  puts_(mx, " ");
  put_escaped(mx, help ? help : "", false);
  puts_(mx, "\n# TYPE ");
  puts_(mx, name);
  puts_(mx, " ");
  puts_(mx, type_names[type]);
  puts_(mx, "\n");
  return mx->err;
}

/* The family's own name, or a suffix its type allows. */
static bool of_family(const mly_metrics *mx, const char *name) {
  size_t n = strlen(mx->family);
  if (n == 0 || strncmp(name, mx->family, n) != 0) return false;
  const char *rest = name + n;
  if (*rest == '\0') return mx->type != MLY_METRIC_HISTOGRAM;
  if (mx->type == MLY_METRIC_HISTOGRAM && !strcmp(rest, "_bucket")) return true;
  return (mx->type == MLY_METRIC_HISTOGRAM || mx->type == MLY_METRIC_SUMMARY) &&
         (!strcmp(rest, "_sum") || !strcmp(rest, "_count"));
}

static bool valid_label(const char *s) {
  return valid_name(s, false) && strncmp(s, "__", 2) != 0;
}

static int sample_start(mly_metrics *mx, const char *name,
                        const char *const *labels) {
  if (mx->err) return mx->err;
  if (name == NULL || !of_family(mx, name)) return fail(mx, MLY_EINVAL);
  for (size_t i = 0; labels && labels[i]; i += 2)
    if (!valid_label(labels[i]) || labels[i + 1] == NULL)
      return fail(mx, MLY_EINVAL);
  puts_(mx, name);
  if (labels && labels[0]) {
    puts_(mx, "{");
    for (size_t i = 0; labels[i]; i += 2) {
      if (i > 0) puts_(mx, ",");
      puts_(mx, labels[i]);
      puts_(mx, "=\"");
      put_escaped(mx, labels[i + 1], true);
      puts_(mx, "\"");
    }
    puts_(mx, "}");
  }
  puts_(mx, " ");
  return mx->err;
}

/* A double as the format reads it: exact (shortest that reads back). */
static void put_double(mly_metrics *mx, double v) {
  char b[40];
  if (isnan(v)) snprintf(b, sizeof b, "NaN");
  else if (isinf(v)) snprintf(b, sizeof b, v > 0 ? "+Inf" : "-Inf");
  else if (v == floor(v) && fabs(v) < 9007199254740992.0)
    snprintf(b, sizeof b, "%.0f", v);
  else {
    for (int prec = 6; prec <= 17; prec++) {
      snprintf(b, sizeof b, "%.*g", prec, v);
      if (strtod(b, NULL) == v) break;
    }
  }
  puts_(mx, b);
}

int mly_metrics_sample(mly_metrics *mx, const char *name,
                       const char *const *labels, double value) {
  if (sample_start(mx, name, labels)) return mx->err;
  put_double(mx, value);
  puts_(mx, "\n");
  return mx->err;
}

int mly_metrics_sample_u64(mly_metrics *mx, const char *name,
                           const char *const *labels, uint64_t value) {
  if (sample_start(mx, name, labels)) return mx->err;
  char b[24];
  snprintf(b, sizeof b, "%" PRIu64 "\n", value);
  puts_(mx, b);
  return mx->err;
}

mly_runtime *mly_metrics_runtime(const mly_metrics *mx) { return mx->rt; }

/* ---- sources ---- */

int mly_metrics_source_add(mly_runtime *rt, mly_metrics_source_fn fn,
                           void *arg) {
  if (rt == NULL || fn == NULL) return MLY_EINVAL;
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  for (uint32_t i = 0; i < rt->nmsrc; i++)
    if (rt->msrc[i].fn == fn && rt->msrc[i].arg == arg) return MLY_EEXIST;
  if (rt->nmsrc == rt->msrc_cap) {
    uint32_t cap = rt->msrc_cap ? rt->msrc_cap * 2 : 4;
    metrics_src *v = realloc(rt->msrc, cap * sizeof *v);
    if (v == NULL) return MLY_ENOMEM;
    rt_bytes(rt, (ptrdiff_t)((cap - rt->msrc_cap) * sizeof *v));
    rt->msrc = v;
    rt->msrc_cap = cap;
  }
  rt->msrc[rt->nmsrc++] = (metrics_src){fn, arg};
  return 0;
}

int mly_metrics_source_remove(mly_runtime *rt, mly_metrics_source_fn fn,
                              void *arg) {
  if (rt == NULL) return MLY_EINVAL;
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  for (uint32_t i = 0; i < rt->nmsrc; i++) {
    if (rt->msrc[i].fn != fn || rt->msrc[i].arg != arg) continue;
    memmove(&rt->msrc[i], &rt->msrc[i + 1],
            (rt->nmsrc - i - 1) * sizeof *rt->msrc);
    rt->nmsrc--;
    return 0;
  }
  return MLY_ENOENT;
}

/* ---- the runtime's figures ---- */

static void one(mly_metrics *mx, const char *name, mly_metric_type type,
                const char *help, uint64_t v) {
  mly_metrics_family(mx, name, type, help);
  mly_metrics_sample_u64(mx, name, NULL, v);
}
#define COUNTER(mx, name, help, v) one(mx, name, MLY_METRIC_COUNTER, help, v)
#define GAUGE(mx, name, help, v) one(mx, name, MLY_METRIC_GAUGE, help, v)

static void instances(mly_metrics *mx, mly_runtime *rt) {
  for (mly_type *t = rt->types; t != NULL; t = t->next)
    memset(t->scan, 0, sizeof t->scan);
  for (uint32_t s = 0; s < rt->nslots; s++) {
    const mly_inst *m = rt->slots[s];
    if (m != NULL && m->head.lc < 5) m->type->scan[m->head.lc]++;
  }
  mly_metrics_family(mx, "mealy_instances", MLY_METRIC_GAUGE,
                     "Live instances, by type and lifecycle.");
  for (mly_type *t = rt->types; t != NULL; t = t->next)
    for (int lc = 0; lc < 5; lc++) {
      const char *labels[] = {"type", t->name, "lifecycle",
                              mly_lifecycle_name((mly_lifecycle)lc), NULL};
      mly_metrics_sample_u64(mx, "mealy_instances", labels, t->scan[lc]);
    }
}

static uint32_t post_depth(mly_runtime *rt) {
  uv_mutex_lock(&rt->post.lock);
  uint32_t n = rt->post.n;
  uv_mutex_unlock(&rt->post.lock);
  return n;
}

static void runtime_figures(mly_metrics *mx, mly_runtime *rt) {
  const mly_stats *st = &rt->st;
  instances(mx, rt);
  COUNTER(mx, "mealy_instances_spawned_total", "Instances spawned.",
          st->spawned);
  COUNTER(mx, "mealy_steps_total", "Steps run (resume to next yield).",
          st->steps);
  COUNTER(mx, "mealy_events_delivered_total", "Events put in an inbox.",
          st->delivered);
  COUNTER(mx, "mealy_events_dropped_total",
          "Events dropped unhandled (DROP_UNHANDLED, mly_inbox_drop, the "
          "inbox of an ending instance).", st->dropped);
  COUNTER(mx, "mealy_events_late_replies_total",
          "Replies whose request had finished.", st->late_replies);
  COUNTER(mx, "mealy_events_undeliverable_total",
          "Posted events taken but not delivered (target gone).",
          st->undeliverable);
  COUNTER(mx, "mealy_events_posted_total",
          "Events received through mly_post.", st->posted);
  COUNTER(mx, "mealy_timers_fired_total", "Instance timers that fired.",
          st->timers_fired);
  GAUGE(mx, "mealy_timers_pending", "Instances waiting with a deadline.",
        rt->heap.n);
  GAUGE(mx, "mealy_post_queue_depth",
        "Events posted from other threads, not yet taken by the loop.",
        post_depth(rt));
  GAUGE(mx, "mealy_post_queue_limit", "Bound of the post queue.",
        rt->post.max);
  GAUGE(mx, "mealy_processes", "Child processes watched by the runtime.",
        rt->nprocs);
  GAUGE(mx, "mealy_runtime_memory_bytes",
        "Memory held by the runtime itself.", st->bytes);
  GAUGE(mx, "mealy_runtime_stopping", "1 once a shutdown has begun.",
        rt->stopping ? 1 : 0);
}

static void histogram(mly_metrics *mx, const char *name, const char *help,
                      const jhist *h, const jbounds *b, double scale) {
  char bucket[FAMILY_MAX + 8], sum[FAMILY_MAX + 8], count[FAMILY_MAX + 8];
  snprintf(bucket, sizeof bucket, "%s_bucket", name);
  snprintf(sum, sizeof sum, "%s_sum", name);
  snprintf(count, sizeof count, "%s_count", name);
  mly_metrics_family(mx, name, MLY_METRIC_HISTOGRAM, help);
  uint64_t acc = 0;
  for (size_t i = 0; i <= b->nle; i++) {
    char le[32];
    acc += h->n[i];
    if (i == b->nle) snprintf(le, sizeof le, "+Inf");
    else if (scale == 1) snprintf(le, sizeof le, "%" PRIu64, b->le[i]);
    else snprintf(le, sizeof le, "%g", (double)b->le[i] / scale);
    const char *labels[] = {"le", le, NULL};
    mly_metrics_sample_u64(mx, bucket, labels, acc);
  }
  if (scale == 1) mly_metrics_sample_u64(mx, sum, NULL, h->sum);
  else mly_metrics_sample(mx, sum, NULL, (double)h->sum / scale);
  mly_metrics_sample_u64(mx, count, NULL, h->count);
}

static void journal_part(mly_metrics *mx, mly_runtime *rt) {
  mly_journal_stats st;
  if (rt->dur == NULL || mly_journal_stats_get(rt, &st) < 0) return;
  /* NULL: a store that keeps no batch figures (store.h figures) */
  const journal_figures *f = store_figures(rt->dur->s);
  COUNTER(mx, "mealy_journal_records_total", "Records appended since open.",
          st.records);
  if (f)
    COUNTER(mx, "mealy_journal_written_bytes_total",
            "Bytes written to the journal since open (compactions too).",
            f->written);
  COUNTER(mx, "mealy_journal_batches_total",
          "Batches (group commits) written, failed ones too.", st.batches);
  COUNTER(mx, "mealy_journal_syncs_total", "fdatasync calls.", st.syncs);
  COUNTER(mx, "mealy_journal_segments_created_total",
          "Segment files created since open.", st.segments);
  COUNTER(mx, "mealy_journal_compactions_total", "Compactions run.",
          st.compactions);
  GAUGE(mx, "mealy_journal_size_bytes",
        "Bytes of batches in the state directory.", st.total_bytes);
  GAUGE(mx, "mealy_journal_live_bytes",
        "Estimate of what a compaction would keep.", st.live_bytes);
  if (f) {
    histogram(mx, "mealy_journal_batch_bytes",
              "Bytes written per batch (frames included).", &f->batch_bytes,
              &jh_batch_bytes, 1);
    histogram(mx, "mealy_journal_batch_records", "Records per batch.",
              &f->batch_records, &jh_batch_records, 1);
    histogram(mx, "mealy_journal_sync_seconds",
              "Time of each batch's fdatasync, off the loop thread.",
              &f->sync_ns, &jh_sync_ns, 1e9);
  }
  GAUGE(mx, "mealy_journal_failed",
        "1 once the journal stopped for an error (fail-stop).",
        mly_journal_error(rt) != 0);
  GAUGE(mx, "mealy_journal_recovered_instances",
        "Instances brought back at open.", st.recovered);
  GAUGE(mx, "mealy_journal_parked_instances",
        "Instances found at open that this code cannot resume.", st.parked);
  GAUGE(mx, "mealy_journal_torn_bytes",
        "Bytes of a torn tail cut off at open.", st.torn_bytes);
  GAUGE(mx, "mealy_journal_salvaged_records",
        "Damaged records skipped at open (salvage).", st.salvaged);
}

int mly_metrics_write(mly_runtime *rt, mly_metrics_write_fn write,
                      void *arg) {
  if (rt == NULL || write == NULL) return MLY_EINVAL;
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  mly_metrics mx = {.rt = rt, .write = write, .arg = arg};
  runtime_figures(&mx, rt);
  journal_part(&mx, rt);
  /* a source may remove itself (or add one): walk by index */
  for (uint32_t i = 0; i < rt->nmsrc && mx.err == 0; i++) {
    int rc = rt->msrc[i].fn(&mx, rt->msrc[i].arg);
    if (rc != 0) fail(&mx, rc);
  }
  flush(&mx);
  return mx.err;
}

static int to_file(void *arg, const char *p, size_t n) {
  return fwrite(p, 1, n, arg) == n ? 0 : MLY_EIO;
}

int mly_metrics_fprint(mly_runtime *rt, void *file) {
  if (file == NULL) return MLY_EINVAL;
  return mly_metrics_write(rt, to_file, file);
}
