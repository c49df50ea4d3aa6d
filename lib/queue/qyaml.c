/*
 * qyaml.c - the `queues:` and `schedules:` sections of the YAML files
 * the fsm loader reads, through its section hook (mly_conf_section).
 *
 * Each section is a list of maps.  Every field is checked where it is
 * read and every mistake is reported at its FILE:LINE:COL (a cron
 * expression's mistake at its own column, a time zone that cannot be
 * read at its value); reading goes on after an error so all are said.
 * What was read is kept in a mly_queue_conf, declared on a runtime
 * later by mly_queue_conf_apply (queues before mly_journal_open,
 * schedules after it).
 */
#include "queue.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"

typedef struct qc_queue {
  mly_queue_def def;
  char *name, *key;
  uint32_t line;
} qc_queue;

/* where a schedule's fields were read, for the checks after the load */
typedef struct qc_at {
  uint32_t line, col;
} qc_at;

typedef struct qc_sched {
  mly_schedule_def def;
  char *name, *cron, *tz, *queue, *target;
  mly_value *payload;
  char *file;                    /* the file it is in */
  qc_at at, at_queue, at_target, at_prio;
} qc_sched;

struct mly_queue_conf {
  qc_queue *q;
  size_t nq;
  qc_sched *s;
  size_t ns;
  mly_runtime *rt;  /* mly_queue_conf_bind: queues and functions known */
  bool functions;   /* rt's functions are all there will be */
};

mly_queue_conf *mly_queue_conf_new(void) {
  return calloc(1, sizeof(mly_queue_conf));
}

void mly_queue_conf_free(mly_queue_conf *qc) {
  if (qc == NULL) return;
  for (size_t i = 0; i < qc->nq; i++) {
    free(qc->q[i].name);
    free(qc->q[i].key);
  }
  for (size_t i = 0; i < qc->ns; i++) {
    qc_sched *s = &qc->s[i];
    free(s->name), free(s->cron), free(s->tz), free(s->queue);
    free(s->target), free(s->file);
    mly_value_free(s->payload);
  }
  free(qc->q);
  free(qc->s);
  free(qc);
}

size_t mly_queue_conf_count(const mly_queue_conf *qc, bool schedules) {
  return schedules ? qc->ns : qc->nq;
}

bool mly_queue_conf_has(const mly_queue_conf *qc, const char *name) {
  for (size_t i = 0; qc && i < qc->nq; i++)
    if (qc->q[i].name && strcmp(qc->q[i].name, name) == 0) return true;
  return false;
}

/* ---- queues ---- */

static int u32(mly_conf *c, mly_conf_node *v, const char *what, int64_t lo,
               uint32_t *out) {
  int64_t x;
  int rc = mly_conf_get_int(c, v, what, lo, UINT32_MAX, &x);
  if (rc == 0) *out = (uint32_t)x;
  return rc;
}

#define Q(o) (&((qc_queue *)(o))->def)
static int q_name(mly_conf *c, void *o, mly_conf_node *v) {
  const char *n;
  int rc = mly_conf_get_str(c, v, "name", &n);
  if (rc) return rc;
  if (!tq_valid_qname(n))
    return mly_conf_bad(c, v, "queue name '%s': 1 to %d of A-Z a-z 0-9 _ . "
                        "-; rename it", mly_conf_show(n).s, MLY_NAME_MAX);
  return mly_conf_set_str(c, v, "name", &((qc_queue *)o)->name);
}
static int q_max(mly_conf *c, void *o, mly_conf_node *v) {
  return u32(c, v, "max_concurrent", 1, &Q(o)->max_concurrent);
}
static int q_rate(mly_conf *c, void *o, mly_conf_node *v) {
  double r;
  int rc = mly_conf_get_num(c, v, "rate", &r);
  if (rc) return rc;
  if (r <= 0 || r > 1e9)
    return mly_conf_bad(c, v, "rate is tasks per second, more than 0 and "
                        "at most 1e9");
  Q(o)->rate = r;
  return 0;
}
static int q_bucket(mly_conf *c, void *o, mly_conf_node *v) {
  return u32(c, v, "bucket_size", 1, &Q(o)->bucket_size);
}
static int q_prio(mly_conf *c, void *o, mly_conf_node *v) {
  int64_t x;
  int rc = mly_conf_get_int(c, v, "priority", 1, 1000, &x);
  if (rc == 0) Q(o)->priority_levels = (uint32_t)x;
  return rc;
}
static int q_limit(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_int(c, v, "task_retry_limit", 0, INT32_MAX,
                          &Q(o)->retry.task_retry_limit);
}
static int q_minb(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_dur(c, v, "min_backoff", 0, &Q(o)->retry.min_backoff_ms);
}
static int q_maxb(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_dur(c, v, "max_backoff", 0, &Q(o)->retry.max_backoff_ms);
}
static int q_doub(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_int(c, v, "max_doublings", 0, 62,
                          &Q(o)->retry.max_doublings);
}
static int q_age(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_dur(c, v, "task_age_limit", 1,
                          &Q(o)->retry.task_age_limit_ms);
}
static int q_jitter(mly_conf *c, void *o, mly_conf_node *v) {
  double j;
  int rc = mly_conf_get_num(c, v, "jitter", &j);
  if (rc) return rc;
  if (!(j >= 0 && j <= 1))
    return mly_conf_bad(c, v, "jitter is a fraction from 0 to 1");
  Q(o)->retry.jitter = j;
  return 0;
}
static int q_timeout(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_dur(c, v, "timeout", 1, &Q(o)->timeout_ms);
}
static int q_key(mly_conf *c, void *o, mly_conf_node *v) {
  const char *k;
  int rc = mly_conf_get_str(c, v, "concurrency_key", &k);
  if (rc) return rc;
  if (*k == '\0' || strlen(k) > MLY_NAME_MAX)
    return mly_conf_bad(c, v, "concurrency_key is a payload key of 1 to %d "
                        "bytes", MLY_NAME_MAX);
  return mly_conf_set_str(c, v, "concurrency_key", &((qc_queue *)o)->key);
}
static int q_keymax(mly_conf *c, void *o, mly_conf_node *v) {
  return u32(c, v, "concurrency_limit", 1, &Q(o)->concurrency_key_max);
}
static int q_paused(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_bool(c, v, "paused", &Q(o)->paused);
}

static const mly_conf_field queue_fields[] = {
    {"name", q_name, false},           {"max_concurrent", q_max, false},
    {"rate", q_rate, false},           {"bucket_size", q_bucket, false},
    {"priority", q_prio, false},       {"task_retry_limit", q_limit, false},
    {"min_backoff", q_minb, false},    {"max_backoff", q_maxb, false},
    {"max_doublings", q_doub, false},  {"task_age_limit", q_age, false},
    {"jitter", q_jitter, false},       {"timeout", q_timeout, false},
    {"concurrency_key", q_key, false}, {"concurrency_limit", q_keymax, false},
    {"paused", q_paused, false},
};

static int grow(void **arr, size_t n, size_t size) {
  void *p = realloc(*arr, (n + 1) * size);
  if (p == NULL) return MLY_ENOMEM;
  *arr = p;
  memset((char *)p + n * size, 0, size);
  return 0;
}

static int read_queue(mly_conf *c, void *obj, mly_conf_node *item, size_t i) {
  mly_queue_conf *qc = obj;
  (void)i;
  if (mly_conf_type_of(item) != MLY_CONF_MAP)
    return mly_conf_bad(c, item, "a queue is a map (name: ..., "
                        "max_concurrent: ...), not %s",
                        mly_conf_kind_name(item));
  if (grow((void **)&qc->q, qc->nq, sizeof *qc->q) < 0)
    return mly_conf_nomem(c);
  qc_queue *q = &qc->q[qc->nq++];
  mly_retry unset = MLY_RETRY_UNSET;
  q->def.retry = unset;
  q->line = mly_conf_line(item);
  int rc = mly_conf_walk(c, item, queue_fields,
                         sizeof queue_fields / sizeof *queue_fields,
                         "in a queue", q);
  if (q->name == NULL) /* a name refused where it was read: said */
    return rc ? rc : mly_conf_bad(c, item, "a queue needs a name");
  for (size_t k = 0; k + 1 < qc->nq; k++)
    if (strcmp(qc->q[k].name ? qc->q[k].name : "", q->name) == 0)
      return mly_conf_bad(c, item, "queue '%s' is declared twice (first at "
                          "line %u)", mly_conf_show(q->name).s, qc->q[k].line);
  if (q->def.concurrency_key_max && q->key == NULL)
    return mly_conf_bad(c, item, "concurrency_limit needs concurrency_key "
                        "(the payload key it limits)");
  q->def.name = q->name;
  q->def.concurrency_key = q->key;
  char err[256];
  if (rc == 0 && tq_check_retry(&q->def.retry, q->name, err, sizeof err) < 0)
    return mly_conf_bad(c, item, "%s", err);
  return rc;
}

static int read_queues(mly_conf *c, mly_conf_node *v, void *arg) {
  if (mly_conf_type_of(v) != MLY_CONF_LIST)
    return mly_conf_bad(c, v, "queues: is a list of queues (- name: ...), "
                        "not %s", mly_conf_kind_name(v));
  return mly_conf_each(c, v, read_queue, arg);
}

/* ---- schedules ---- */

#define S(o) ((qc_sched *)(o))
static int s_name(mly_conf *c, void *o, mly_conf_node *v) {
  const char *n;
  int rc = mly_conf_get_str(c, v, "name", &n);
  if (rc) return rc;
  if (tq_check_name(n, MLY_SCHEDULE_NAME_MAX) < 0)
    return mly_conf_bad(c, v, "schedule name '%s': 1..%d bytes, no '/', "
                        "'@' or control character", mly_conf_show(n).s,
                        MLY_SCHEDULE_NAME_MAX);
  return mly_conf_set_str(c, v, "name", &S(o)->name);
}
static int s_cron(mly_conf *c, void *o, mly_conf_node *v) {
  const char *e;
  int rc = mly_conf_get_str(c, v, "cron", &e);
  if (rc) return rc;
  tq_cron cr;
  char err[200];
  size_t col = 0;
  if (tq_cron_parse(e, &cr, err, sizeof err, &col) < 0) {
    /* the column of the character at fault: exact for a plain scalar,
     * one short (the opening quote) for a quoted one */
    return mly_conf_bad_at(c, mly_conf_line(v),
                           mly_conf_col(v) + (uint32_t)col,
                           "cron \"%s\": %s; fields: minute hour "
                           "day-of-month month day-of-week",
                           mly_conf_show(e).s, err);
  }
  return mly_conf_set_str(c, v, "cron", &S(o)->cron);
}
static int s_every(mly_conf *c, void *o, mly_conf_node *v) {
  int rc = mly_conf_get_dur(c, v, "every", 1000, &S(o)->def.every_ms);
  if (rc == 0 && S(o)->def.every_ms % 1000)
    return mly_conf_bad(c, v, "every is whole seconds (10s, 5m, 1h)");
  return rc;
}
static int s_tz(mly_conf *c, void *o, mly_conf_node *v) {
  const char *z;
  int rc = mly_conf_get_str(c, v, "timezone", &z);
  if (rc) return rc;
  if (strcmp(z, "UTC") != 0) {
    tq_tz tz;
    char err[200];
    int zr = tq_tz_load(NULL, z, &tz, err, sizeof err);
    if (zr == MLY_ENOENT)
      return mly_conf_bad(c, v, "%s (an IANA name from /usr/share/zoneinfo, "
                          "like Europe/Berlin)", err);
    if (zr < 0) return mly_conf_bad(c, v, "%s", err);
    tq_tz_free(&tz);
  }
  return mly_conf_set_str(c, v, "timezone", &S(o)->tz);
}
static int s_missed(mly_conf *c, void *o, mly_conf_node *v) {
  const char *m;
  int rc = mly_conf_get_str(c, v, "missed", &m);
  if (rc) return rc;
  static const char *const names[] = {"skip", "one", "all"};
  for (int i = 0; i < 3; i++)
    if (strcmp(m, names[i]) == 0) {
      S(o)->def.missed = (mly_missed)i;
      return 0;
    }
  return mly_conf_bad(c, v, "missed is skip, one or all, not '%s'",
                      mly_conf_show(m).s);
}
static void at(qc_at *a, const mly_conf_node *v) {
  a->line = mly_conf_line(v);
  a->col = mly_conf_col(v);
}
static int s_queue(mly_conf *c, void *o, mly_conf_node *v) {
  at(&S(o)->at_queue, v);
  return mly_conf_set_str(c, v, "queue", &S(o)->queue);
}
static int target(mly_conf *c, qc_sched *s, mly_conf_node *v,
                  mly_task_kind k, const char *what) {
  if (s->target)
    return mly_conf_bad(c, v, "a schedule runs either a function or a "
                        "machine, not both");
  s->def.what.kind = k;
  at(&s->at_target, v);
  const char *n;
  int rc = mly_conf_get_str(c, v, what, &n);
  if (rc) return rc;
  if (tq_check_name(n, MLY_NAME_MAX) < 0)
    return mly_conf_bad(c, v, "%s '%s': 1..%d bytes, no '/', '@' or "
                        "control character", what, mly_conf_show(n).s,
                        MLY_NAME_MAX);
  return mly_conf_set_str(c, v, what, &s->target);
}
static int s_function(mly_conf *c, void *o, mly_conf_node *v) {
  return target(c, S(o), v, MLY_TASK_FUNCTION, "function");
}
static int s_machine(mly_conf *c, void *o, mly_conf_node *v) {
  return target(c, S(o), v, MLY_TASK_MACHINE, "machine");
}
static int s_prio(mly_conf *c, void *o, mly_conf_node *v) {
  int64_t x;
  int rc = mly_conf_get_int(c, v, "priority", 0, TQ_MAX_LEVELS - 1, &x);
  at(&S(o)->at_prio, v);
  if (rc == 0) S(o)->def.priority = (int32_t)x;
  return rc;
}

/* A payload: maps, lists and scalars (integers, true/false, null,
 * otherwise strings), at most 32 deep. */
static mly_value *to_value(mly_conf *c, mly_conf_node *v, int depth) {
  if (depth > 32) {
    mly_conf_bad(c, v, "payload nests deeper than 32");
    return NULL;
  }
  mly_value *out = NULL;
  switch (mly_conf_type_of(v)) {
  case MLY_CONF_NULL:
    return mly_value_nil();
  case MLY_CONF_SCALAR: {
    const char *s = mly_conf_scalar(v);
    int64_t x;
    if (mly_conf_parse_int(s, &x) && mly_conf_len(v) == strlen(s))
      return mly_value_int(x);
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0)
      return mly_value_bool(s[0] == 't');
    return mly_value_strn(s, mly_conf_len(v));
  }
  case MLY_CONF_LIST:
    if ((out = mly_value_array()) == NULL) return NULL;
    for (size_t i = 0; i < mly_conf_len(v); i++) {
      mly_conf_node *it;
      mly_value *e;
      if (mly_conf_item(c, v, i, &it) < 0 ||
          (e = to_value(c, it, depth + 1)) == NULL ||
          mly_array_push(out, e) < 0) {
        mly_value_free(out);
        return NULL;
      }
    }
    return out;
  case MLY_CONF_MAP:
    if ((out = mly_value_map()) == NULL) return NULL;
    for (size_t i = 0; i < mly_conf_len(v); i++) {
      mly_conf_node *k, *val;
      mly_value *e;
      const char *ks;
      if (mly_conf_pair(c, v, i, &k, &val) < 0 ||
          mly_conf_get_str(c, k, "a payload key", &ks) < 0 ||
          (e = to_value(c, val, depth + 1)) == NULL ||
          mly_map_set(out, ks, e) < 0) {
        mly_value_free(out);
        return NULL;
      }
    }
    return out;
  }
  return NULL;
}
static int s_payload(mly_conf *c, void *o, mly_conf_node *v) {
  size_t before = mly_conf_nerrors(c);
  mly_value *p = to_value(c, v, 0);
  if (p == NULL)
    return mly_conf_nerrors(c) > before ? MLY_EINVAL : mly_conf_nomem(c);
  mly_value_free(S(o)->payload);
  S(o)->payload = p;
  return 0;
}

static const mly_conf_field sched_fields[] = {
    {"name", s_name, false},         {"cron", s_cron, false},
    {"every", s_every, false},       {"timezone", s_tz, false},
    {"missed", s_missed, false},     {"queue", s_queue, false},
    {"function", s_function, false}, {"machine", s_machine, false},
    {"priority", s_prio, false},     {"payload", s_payload, true},
};

static int read_sched(mly_conf *c, void *obj, mly_conf_node *item, size_t i) {
  mly_queue_conf *qc = obj;
  (void)i;
  if (mly_conf_type_of(item) != MLY_CONF_MAP)
    return mly_conf_bad(c, item, "a schedule is a map (name: ..., cron: "
                        "..., function: ...), not %s",
                        mly_conf_kind_name(item));
  if (grow((void **)&qc->s, qc->ns, sizeof *qc->s) < 0)
    return mly_conf_nomem(c);
  qc_sched *s = &qc->s[qc->ns++];
  at(&s->at, item);
  if ((s->file = strdup(mly_conf_path(c))) == NULL) return mly_conf_nomem(c);
  int rc = mly_conf_walk(c, item, sched_fields,
                         sizeof sched_fields / sizeof *sched_fields,
                         "in a schedule", s);
  int bad = 0;
  /* a name refused where it was read is NULL here: said already */
  if (s->name == NULL) {
    if (rc == 0) bad = mly_conf_bad(c, item, "a schedule needs a name");
  } else
    for (size_t k = 0; k + 1 < qc->ns; k++)
      if (qc->s[k].name && strcmp(qc->s[k].name, s->name) == 0)
        bad = mly_conf_bad(c, item, "schedule '%s' is declared twice",
                           mly_conf_show(s->name).s);
  if ((s->cron == NULL) == (s->def.every_ms == 0) && rc == 0)
    bad = mly_conf_bad(c, item, "a schedule needs either cron: \"MIN HOUR "
                       "DOM MON DOW\" or every: 10m");
  if (s->target == NULL && rc == 0)
    bad = mly_conf_bad(c, item, "a schedule needs function: NAME (a "
                       "deferred function) or machine: NAME (a machine to "
                       "start)");
  s->def.name = s->name;
  s->def.cron = s->cron;
  s->def.tz = s->tz;
  s->def.queue = s->queue;
  s->def.what.name = s->target;
  s->def.payload = s->payload;
  return rc ? rc : bad;
}

static int read_scheds(mly_conf *c, mly_conf_node *v, void *arg) {
  if (mly_conf_type_of(v) != MLY_CONF_LIST)
    return mly_conf_bad(c, v, "schedules: is a list of schedules (- name: "
                        "...), not %s", mly_conf_kind_name(v));
  return mly_conf_each(c, v, read_sched, arg);
}

/* ---- after the load: what a schedule names ---- */

void mly_queue_conf_bind(mly_queue_conf *qc, mly_runtime *rt,
                         bool functions) {
  qc->rt = rt;
  qc->functions = rt && functions;
}

/* The priority levels of queue `name` (0: not declared anywhere). */
static uint32_t levels_of(const mly_queue_conf *qc, const char *name) {
  for (size_t i = 0; i < qc->nq; i++)
    if (qc->q[i].name && strcmp(qc->q[i].name, name) == 0)
      return qc->q[i].def.priority_levels ? qc->q[i].def.priority_levels
                                          : TQ_DEFAULT_LEVELS;
  mly_queue_def d;
  if (qc->rt && mly_queue_def_get(qc->rt, name, &d) == 0)
    return d.priority_levels;
  if (qc->rt == NULL && strcmp(name, MLY_QUEUE_DEFAULT) == 0)
    return TQ_DEFAULT_LEVELS; /* mly_queues_open declares it */
  return 0;
}

/* Every schedule's queue, machine, priority and (when they are all
 * known) function, each mistake at its FILE:LINE:COL: a schedule that
 * loads runs its ticks. */
static void check_scheds(const mly_conf_options *ro, const mly_fsm_set *set,
                         void *arg) {
  mly_queue_conf *qc = arg;
  for (size_t i = 0; i < qc->ns; i++) {
    qc_sched *s = &qc->s[i];
    if (s->name == NULL) continue; /* refused where it was read */
    mly_conf_options o = *ro;
    o.path = s->file;
    const char *qn = s->queue ? s->queue : MLY_QUEUE_DEFAULT;
    uint32_t lv = levels_of(qc, qn);
    qc_at *qa = s->queue ? &s->at_queue : &s->at;
    if (lv == 0)
      mly_conf_report(&o, qa->line, qa->col, "schedule '%s': queue '%s' is "
                      "not declared; declare it under queues: or fix the "
                      "name", mly_conf_show(s->name).s, mly_conf_show(qn).s);
    else if ((uint32_t)s->def.priority >= lv)
      mly_conf_report(&o, s->at_prio.line, s->at_prio.col, "schedule '%s': "
                      "priority %d is outside queue '%s' (0 to %u); lower "
                      "it or give the queue more priority levels",
                      mly_conf_show(s->name).s, (int)s->def.priority,
                      mly_conf_show(qn).s, lv - 1);
    if (s->target == NULL) continue;
    if (s->def.what.kind == MLY_TASK_MACHINE && set &&
        mly_fsm_find(set, s->target) == NULL)
      mly_conf_report(&o, s->at_target.line, s->at_target.col, "schedule "
                      "'%s': machine '%s' is not defined in these files; "
                      "fix the name or load the file that defines it",
                      mly_conf_show(s->name).s, mly_conf_show(s->target).s);
    if (s->def.what.kind == MLY_TASK_FUNCTION && qc->functions &&
        !mly_defer_known(qc->rt, s->target))
      mly_conf_report(&o, s->at_target.line, s->at_target.col, "schedule "
                      "'%s': function '%s' is not registered "
                      "(mly_defer_register it in the --actions library)",
                      mly_conf_show(s->name).s, mly_conf_show(s->target).s);
  }
}

void mly_queue_conf_sections(mly_queue_conf *qc, mly_conf_section out[2]) {
  out[0] = (mly_conf_section){"queues", read_queues, qc, NULL};
  out[1] = (mly_conf_section){"schedules", read_scheds, qc, check_scheds};
}

int mly_queue_conf_apply(mly_runtime *rt, const mly_queue_conf *qc,
                         unsigned what, char *err, size_t errlen) {
  int rc;
  if (what & MLY_QCONF_QUEUES)
    for (size_t i = 0; i < qc->nq; i++)
      if ((rc = mly_queue_declare(rt, &qc->q[i].def, err, errlen)) < 0)
        return rc;
  if (what & MLY_QCONF_SCHEDULES)
    for (size_t i = 0; i < qc->ns; i++)
      if ((rc = mly_schedule_declare(rt, &qc->s[i].def, err, errlen)) < 0)
        return rc;
  return 0;
}
