/*
 * parse.c - the `state_machines:` list of a machine file: machines,
 * their states and transitions, read through the YAML reader's field
 * tables (mealy.h, "Reading YAML files") into def.h's structs.
 *
 * Keys keep Fantasm's names and meanings; what only App Engine needed is
 * accepted with a note.  Every error is reported and the walk goes on
 * (the reader runs with all_errors), so one run of `mealy fsm validate`
 * lists them all.  What needs the whole machine (targets, reachability,
 * forbidden combinations) is validate.c's.
 *
 * Durations: a bare number is seconds, as in Fantasm ("countdown: 30"),
 * and may have decimals ("min_backoff_seconds: 0.5"); with a unit it is
 * mealy's duration (250ms, 10s, 2m, 1h) or days (3d).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

#define DAY_MS (24LL * 3600 * 1000)
#define YEAR_MS (365 * DAY_MS)
#define ACTION_NAME_MAX 127

/* What machines and transitions share: retry policy, countdown, queue. */
typedef struct common {
  fsm_file *f;
  fsm_retry *retry;
  fsm_countdown *countdown;
  char **queue;
  mly_conf_node *max_retries; /* where it was, for the exclusive check */
  mly_conf_node *retry_limit;
  mly_conf_node *max_backoff; /* where it was, for the min <= max check */
  char where[400];            /* "in machine 'm'" */
} common;

typedef struct mctx {
  common h;
  fsm_machine *m;
  size_t mi;
  mly_conf_node *states;
  bool states_bad;   /* not a list: said already */
  mly_conf_node *on_failure;
} mctx;

typedef struct sctx {
  mctx *mc;
  fsm_state *s;
  size_t si;
  mly_conf_node *on_failure;
  mly_conf_node *transitions;
  char where[400];
} sctx;

typedef struct tctx {
  common h;
  sctx *sc;
  fsm_transition *t;
  size_t ti;
  mly_conf_node *to;
} tctx;

#define F(c) ((fsm_file *)mly_conf_user(c))

fsm_pos fsm_pos_of(const fsm_file *f, const mly_conf_node *n) {
  return (fsm_pos){f->file, mly_conf_line(n), mly_conf_col(n)};
}

/* ------------------------------------------------------------------ */
/* Values.                                                             */

/* The forms a duration is written in, for every message about one. */
#define DURATION_FORMS "30 (seconds), 250ms, 10s, 2m, 1h or 3d"

static int not_duration(mly_conf *c, mly_conf_node *v, const char *what,
                        const char *alt, const char *s) {
  return mly_conf_bad(c, v, "%s '%s' is not a duration; write %s%s%s", what,
                      mly_conf_show(s).s, DURATION_FORMS, alt ? ", or " : "",
                      alt ? alt : "");
}

/* A duration (see the top of the file) of at least min ms.  alt: the
 * other form the field takes ("{minimum: 10s, maximum: 60s}"), or NULL;
 * every message about its shape names every accepted form. */
static int get_span(mly_conf *c, mly_conf_node *v, const char *what,
                    const char *alt, int64_t min, int64_t *out) {
  const char *s = mly_conf_scalar(v);
  if (s == NULL || mly_conf_is_null(v))
    return mly_conf_bad(c, v, "%s must be a duration: %s%s%s; it is %s", what,
                        DURATION_FORMS, alt ? ", or " : "", alt ? alt : "",
                        mly_conf_kind_name(v));
  int rc;
  size_t n = strlen(s), digits = strspn(s, "0123456789");
  bool plain = digits > 0 && (s[digits] == '\0' ||
                              (s[digits] == '.' &&
                               strspn(s + digits + 1, "0123456789") ==
                                   n - digits - 1));
  if (plain) { /* seconds, as in Fantasm: 30, 0.5 (read in the C locale) */
    double secs;
    if ((rc = mly_conf_get_num(c, v, what, &secs)) != 0) return rc;
    if (secs * 1000 > (double)YEAR_MS)
      return mly_conf_bad(c, v, "%s '%s' is longer than a year; write a "
                          "shorter one", what, mly_conf_show(s).s);
    *out = (int64_t)llround(secs * 1000);
  } else if (n > 1 && s[n - 1] == 'd' && s[0] >= '0' && s[0] <= '9') {
    int64_t days = 0;
    char num[24];
    if (n - 1 >= sizeof num) days = INT64_MAX;
    else {
      memcpy(num, s, n - 1);
      num[n - 1] = '\0';
      if (!mly_conf_parse_int(num, &days))
        return not_duration(c, v, what, alt, s);
    }
    if (days > 365)
      return mly_conf_bad(c, v, "%s '%s' is longer than a year; write a "
                          "shorter one", what, mly_conf_show(s).s);
    *out = days * DAY_MS;
  } else {
    int64_t ms;
    rc = *s == '-' ? MLY_EINVAL : mly_duration_parse(s, &ms);
    if (*s == '-')
      return mly_conf_bad(c, v, "%s cannot be negative; write a duration "
                          "such as 10s%s%s", what, alt ? ", or " : "",
                          alt ? alt : "");
    if (rc == MLY_ERANGE || (rc == 0 && ms > YEAR_MS))
      return mly_conf_bad(c, v, "%s '%s' is longer than a year; write a "
                          "shorter one", what, mly_conf_show(s).s);
    if (rc)
      return not_duration(c, v, what, alt, s);
    *out = ms;
  }
  if (*out < min)
    return mly_conf_bad(c, v, "%s must be more than 0; write a duration "
                        "such as 10s%s%s", what, alt ? ", or " : "",
                        alt ? alt : "");
  return 0;
}

static int get_secs(mly_conf *c, mly_conf_node *v, const char *what,
                    int64_t min, int64_t *out) {
  return get_span(c, v, what, NULL, min, out);
}

static int get_name(mly_conf *c, mly_conf_node *v, const char *what,
                    char **dst) {
  const char *s;
  int rc = mly_conf_get_str(c, v, what, &s);
  if (rc) return rc;
  if (!fsm_name_ok(s))
    return mly_conf_bad(c, v, "%s '%s' is not allowed; use 1 to 50 letters, "
                        "digits and '-'", what, mly_conf_show(s).s);
  char *copy = strdup(s);
  if (copy == NULL) return mly_conf_nomem(c);
  free(*dst);
  *dst = copy;
  return 0;
}

static void ignored(mly_conf *c, mly_conf_node *v, const char *key) {
  fsm_ld_note(c, v, "'%s' concerns App Engine only; accepted and ignored",
              key);
}

/* ------------------------------------------------------------------ */
/* Actions: a name (a registered C action) or {exec: [...], timeout}.  */

static bool action_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > ACTION_NAME_MAX) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '_' || *s == '.' || *s == '-' ||
          *s == ':'))
      return false;
  return true;
}

static int ex_exec(mly_conf *c, void *o, mly_conf_node *v) {
  fsm_action *a = o;
  if (mly_conf_type_of(v) != MLY_CONF_LIST)
    return mly_conf_bad(c, v, "exec must be a list: the program and its "
                        "arguments, e.g. [/usr/bin/notify, --to, ops]; it "
                        "is %s", mly_conf_kind_name(v));
  if (mly_conf_len(v) == 0)
    return mly_conf_bad(c, v, "exec is an empty list: there is no program "
                        "to run; name it and its arguments, e.g. "
                        "[/usr/bin/notify, --to, ops]");
  size_t n = mly_conf_len(v);
  if ((a->argv = calloc(n + 1, sizeof *a->argv)) == NULL)
    return mly_conf_nomem(c);
  for (size_t i = 0; i < n; i++) {
    mly_conf_node *it;
    const char *s;
    int rc = mly_conf_item(c, v, i, &it);
    if (rc == 0) rc = mly_conf_get_str(c, it, "an exec argument", &s);
    if (rc) return rc;
    if (i == 0 && *s == '\0')
      return mly_conf_bad(c, it, "the program to run (the first item of "
                          "exec) is empty");
    if ((a->argv[i] = strdup(s)) == NULL) return mly_conf_nomem(c);
    a->argc = i + 1;
  }
  return 0;
}

static int ex_timeout(mly_conf *c, void *o, mly_conf_node *v) {
  return get_secs(c, v, "exec timeout", 1, &((fsm_action *)o)->timeout_ms);
}

static const mly_conf_field exec_fields[] = {{"exec", ex_exec, false},
                                             {"timeout", ex_timeout, false}};

/* key: "action", "entry", "exit" */
static int get_action(mly_conf *c, mly_conf_node *v, const char *key,
                      const char *ns, fsm_action *a) {
  a->pos = fsm_pos_of(F(c), v);
  a->timeout_ms = -1;
  if (mly_conf_type_of(v) == MLY_CONF_MAP) {
    char where[64];
    snprintf(where, sizeof where, "in %s", key);
    a->kind = FSM_ACT_EXEC;
    int rc = mly_conf_walk(c, v, exec_fields, 2, where, a);
    if (rc == 0 && a->argv == NULL)
      return mly_conf_bad(c, v, "%s needs exec: [program, args...]", key);
    return rc;
  }
  if (mly_conf_type_of(v) != MLY_CONF_SCALAR)
    return mly_conf_bad(c, v, "%s must be an action name or {exec: [program, "
                        "args...], timeout: 30s}, not %s", key,
                        mly_conf_kind_name(v));
  const char *s;
  int rc = mly_conf_get_str(c, v, key, &s);
  if (rc) return rc;
  if (!action_name_ok(s))
    return mly_conf_bad(c, v, "action name '%s' is not allowed; use up to %d "
                        "letters, digits and '_', '.', '-', ':'",
                        mly_conf_show(s).s, ACTION_NAME_MAX);
  /* Fantasm: a name without a dot lives in the machine's namespace */
  bool prefix = ns != NULL && strchr(s, '.') == NULL;
  size_t len = (prefix ? strlen(ns) + 1 : 0) + strlen(s) + 1;
  if ((a->name = malloc(len)) == NULL) return mly_conf_nomem(c);
  snprintf(a->name, len, "%s%s%s", prefix ? ns : "", prefix ? "." : "", s);
  a->kind = FSM_ACT_C;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Retry policy, countdown, queue: machines and transitions.           */

static int rt_limit(mly_conf *c, void *o, mly_conf_node *v) {
  common *h = o;
  h->retry_limit = v;
  return mly_conf_get_int(c, v, "task_retry_limit", 0, INT32_MAX,
                          &h->retry->task_retry_limit);
}

static int rt_max_retries(mly_conf *c, void *o, mly_conf_node *v) {
  common *h = o;
  h->max_retries = v;
  fsm_ld_note(c, v, "max_retries is deprecated; write task_retry_limit");
  return mly_conf_get_int(c, v, "max_retries", 0, INT32_MAX,
                          &h->retry->task_retry_limit);
}

static int rt_min_backoff(mly_conf *c, void *o, mly_conf_node *v) {
  return get_secs(c, v, "min_backoff", 0,
                  &((common *)o)->retry->min_backoff_ms);
}

static int rt_max_backoff(mly_conf *c, void *o, mly_conf_node *v) {
  ((common *)o)->max_backoff = v;
  return get_secs(c, v, "max_backoff", 0,
                  &((common *)o)->retry->max_backoff_ms);
}

static int rt_age(mly_conf *c, void *o, mly_conf_node *v) {
  return get_secs(c, v, "task_age_limit", 1,
                  &((common *)o)->retry->task_age_limit_ms);
}

static int rt_doublings(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_int(c, v, "max_doublings", 0, 64,
                          &((common *)o)->retry->max_doublings);
}

static int rt_jitter(mly_conf *c, void *o, mly_conf_node *v) {
  double *j = &((common *)o)->retry->jitter;
  int rc = mly_conf_get_num(c, v, "jitter", j);
  if (rc == 0 && (*j < 0.0 || *j > 1.0))
    return mly_conf_bad(c, v, "jitter must be between 0 and 1 (a fraction of "
                        "the delay), not %s", mly_conf_show(mly_conf_scalar(v)).s);
  return rc;
}

static int cd_min(mly_conf *c, void *o, mly_conf_node *v) {
  return get_secs(c, v, "countdown minimum", 0, &((fsm_countdown *)o)->min_ms);
}

static int cd_max(mly_conf *c, void *o, mly_conf_node *v) {
  return get_secs(c, v, "countdown maximum", 0, &((fsm_countdown *)o)->max_ms);
}

#define RANGE_FORM "{minimum: 10s, maximum: 60s} (drawn once in that range)"

static const mly_conf_field countdown_fields[] = {
    {"minimum", cd_min, false}, {"maximum", cd_max, false}};

static int co_countdown(mly_conf *c, void *o, mly_conf_node *v) {
  fsm_countdown *cd = ((common *)o)->countdown;
  if (mly_conf_type_of(v) != MLY_CONF_MAP) {
    int rc = get_span(c, v, "countdown", RANGE_FORM, 0, &cd->min_ms);
    cd->max_ms = cd->min_ms;
    return rc;
  }
  int rc = mly_conf_walk(c, v, countdown_fields, 2, "in countdown", cd);
  if (rc) return rc;
  if (cd->min_ms < 0 || cd->max_ms < 0)
    return mly_conf_bad(c, v, "countdown needs both minimum and maximum: "
                        "write a duration (%s), or %s", DURATION_FORMS,
                        RANGE_FORM);
  if (cd->min_ms > cd->max_ms)
    return mly_conf_bad(c, v, "countdown minimum is more than its maximum; "
                        "swap them");
  return 0;
}

/* The name is checked when every file's queues: are read (validate.c). */
static int co_queue(mly_conf *c, void *o, mly_conf_node *v) {
  common *h = o;
  int rc = mly_conf_set_str(c, v, "queue", h->queue);
  if (rc || *h->queue == NULL) return rc;
  return fsm_ref_add(h->f->L, REF_QUEUE, 0, 0, 0, *h->queue,
                     fsm_pos_of(h->f, v));
}

static int co_ignored(mly_conf *c, void *o, mly_conf_node *v) {
  (void)o;
  ignored(c, v, "target");
  return 0;
}

/* task_retry_limit and its deprecated name max_retries are one setting */
static int retry_exclusive(mly_conf *c, common *h) {
  if (h->max_retries && h->retry_limit)
    return mly_conf_bad(c, h->max_retries, "max_retries and "
                        "task_retry_limit are one setting %s; keep "
                        "task_retry_limit", h->where);
  /* both in one place: a maximum below the minimum is a mistake (from
     different places, the minimum wins at run time) */
  if (h->max_backoff && h->retry->min_backoff_ms >= 0 &&
      h->retry->max_backoff_ms >= 0 &&
      h->retry->min_backoff_ms > h->retry->max_backoff_ms)
    return mly_conf_bad(c, h->max_backoff, "max_backoff is less than "
                        "min_backoff %s; swap them", h->where);
  return 0;
}

#define RETRY_FIELDS                                                    \
  {"task_retry_limit", rt_limit, false},                                \
  {"max_retries", rt_max_retries, false},                               \
  {"min_backoff_seconds", rt_min_backoff, false},                       \
  {"max_backoff_seconds", rt_max_backoff, false},                       \
  {"min_backoff", rt_min_backoff, false},                               \
  {"max_backoff", rt_max_backoff, false},                               \
  {"task_age_limit", rt_age, false},                                    \
  {"max_doublings", rt_doublings, false},                               \
  {"jitter", rt_jitter, false},                                         \
  {"countdown", co_countdown, false},                                   \
  {"queue", co_queue, false},                                           \
  {"target", co_ignored, false}

static void retry_defaults(fsm_retry *r) {
  *r = (fsm_retry){-1, -1, -1, -1, -1, -1.0};
}

/* ------------------------------------------------------------------ */
/* Transitions.                                                        */

static int tf_event(mly_conf *c, void *o, mly_conf_node *v) {
  return get_name(c, v, "event name", &((tctx *)o)->t->event);
}

static int tf_to(mly_conf *c, void *o, mly_conf_node *v) {
  const char *s;
  int rc = mly_conf_get_str(c, v, "to", &s);
  if (rc == 0) ((tctx *)o)->to = v;
  return rc;
}

static int tf_action(mly_conf *c, void *o, mly_conf_node *v) {
  tctx *t = o;
  return get_action(c, v, "action", t->sc->mc->m->namespace_, &t->t->action);
}

static const mly_conf_field trans_fields[] = {
    {"event", tf_event, false}, {"to", tf_to, false},
    {"action", tf_action, false}, RETRY_FIELDS};

static int parse_trans(mly_conf *c, sctx *sc, size_t ti, mly_conf_node *v) {
  fsm_transition *t = &sc->s->trans[ti];
  tctx tc = {.h = {.f = F(c), .retry = &t->retry, .countdown = &t->countdown,
                   .queue = &t->queue},
             .sc = sc, .t = t, .ti = ti};
  retry_defaults(&t->retry);
  t->countdown = (fsm_countdown){-1, -1};
  t->to = FSM_NO_STATE;
  t->pos = fsm_pos_of(F(c), v);
  if (mly_conf_type_of(v) != MLY_CONF_MAP)
    return mly_conf_bad(c, v, "a transition must be a map such as {event: "
                        "ok, to: done}, not %s", mly_conf_kind_name(v));
  snprintf(tc.h.where, sizeof tc.h.where, "in a transition %.380s", sc->where);
  int rc = mly_conf_walk(c, v, trans_fields,
                         sizeof trans_fields / sizeof trans_fields[0],
                         tc.h.where, &tc);
  int rc2 = retry_exclusive(c, &tc.h);
  if (rc == 0) rc = rc2;
  if (t->event == NULL && rc == 0)
    rc = mly_conf_bad(c, v, "this transition has no event; add event: "
                      "NAME (what the action returns)");
  if (tc.to == NULL) {
    if (rc == 0)
      rc = mly_conf_bad(c, v, "this transition has no target; add to: "
                        "STATE");
    return rc;
  }
  int r = fsm_ref_add(F(c)->L, REF_TO, sc->mc->mi, sc->si, ti,
                      mly_conf_scalar(tc.to), fsm_pos_of(F(c), tc.to));
  return rc ? rc : r;
}

/* ------------------------------------------------------------------ */
/* States.                                                             */

#define S(o) (((sctx *)(o))->s)

static int sf_name(mly_conf *c, void *o, mly_conf_node *v) {
  return get_name(c, v, "state name", &S(o)->name);
}

static int sf_initial(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_bool(c, v, "initial", &S(o)->initial);
}

static int sf_final(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_bool(c, v, "final", &S(o)->final);
}

static const char *ns_of(void *o) { return ((sctx *)o)->mc->m->namespace_; }

static int sf_entry(mly_conf *c, void *o, mly_conf_node *v) {
  return get_action(c, v, "entry", ns_of(o), &S(o)->entry);
}

static int sf_action(mly_conf *c, void *o, mly_conf_node *v) {
  return get_action(c, v, "action", ns_of(o), &S(o)->action);
}

static int sf_exit(mly_conf *c, void *o, mly_conf_node *v) {
  return get_action(c, v, "exit", ns_of(o), &S(o)->exit);
}

static int sf_continuation(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_bool(c, v, "continuation", &S(o)->continuation);
}

static int sf_cont_countdown(mly_conf *c, void *o, mly_conf_node *v) {
  return get_secs(c, v, "continuation_countdown", 0,
                  &S(o)->continuation_countdown_ms);
}

static int fi_count(mly_conf *c, void *o, mly_conf_node *v) {
  int64_t n;
  int rc = mly_conf_get_int(c, v, "fan_in count", 0, UINT32_MAX, &n);
  if (rc == 0) ((fsm_state *)o)->fan_in_count = (uint32_t)n;
  return rc;
}

static int fi_tolerate(mly_conf *c, void *o, mly_conf_node *v) {
  int64_t n;
  int rc = mly_conf_get_int(c, v, "fan_in tolerate", 0, UINT32_MAX, &n);
  if (rc == 0) ((fsm_state *)o)->fan_in_tolerate = (uint32_t)n;
  return rc;
}

static const mly_conf_field fan_in_fields[] = {
    {"count", fi_count, false}, {"tolerate", fi_tolerate, false}};

static int sf_fan_in(mly_conf *c, void *o, mly_conf_node *v) {
  fsm_state *s = S(o);
  if (mly_conf_type_of(v) != MLY_CONF_MAP) {
    s->fan_in = FSM_FAN_WINDOW;
    return get_span(c, v, "fan_in", "{count: N, tolerate: K}", 1,
                    &s->fan_in_window_ms);
  }
  s->fan_in = FSM_FAN_COUNT;
  int rc = mly_conf_walk(c, v, fan_in_fields, 2, "in fan_in", s);
  if (rc) return rc;
  if (s->fan_in_count > 0 && s->fan_in_tolerate >= s->fan_in_count)
    return mly_conf_bad(c, v, "fan_in tolerates %u failures of %u arrivals: "
                        "nothing would be left to merge; lower tolerate",
                        s->fan_in_tolerate, s->fan_in_count);
  return 0;
}

static int sf_fan_in_group(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_set_str(c, v, "fan_in_group", &S(o)->fan_in_group);
}

static int sf_transitions(mly_conf *c, void *o, mly_conf_node *v) {
  if (mly_conf_type_of(v) != MLY_CONF_LIST)
    return mly_conf_bad(c, v, "transitions must be a list of {event: E, to: "
                        "STATE}, not %s", mly_conf_kind_name(v));
  ((sctx *)o)->transitions = v;
  return 0;
}

static int sf_on_failure(mly_conf *c, void *o, mly_conf_node *v) {
  const char *s;
  int rc = mly_conf_get_str(c, v, "on_failure", &s);
  if (rc == 0) ((sctx *)o)->on_failure = v;
  return rc;
}

typedef struct wctx {
  fsm_state *s;
  mly_conf_node *list;
} wctx;

/* An event listed twice is refused, as two transitions for one event
 * are: the second at its place, naming the first. */
static int wait_event(mly_conf *c, void *o, mly_conf_node *it, size_t i) {
  wctx *w = o;
  fsm_state *s = w->s;
  const char *name = mly_conf_scalar(it);
  for (size_t j = 0; name && j < i; j++) {
    mly_conf_node *prev;
    const char *p;
    if (mly_conf_item(c, w->list, j, &prev) == 0 &&
        (p = mly_conf_scalar(prev)) != NULL && strcmp(p, name) == 0)
      return mly_conf_bad(c, it, "event '%s' is listed twice in wait "
                          "events (first at %u:%u); keep one",
                          mly_conf_show(name).s, mly_conf_line(prev),
                          mly_conf_col(prev));
  }
  int rc = get_name(c, it, "event name", &s->wait_events[s->nwait_events]);
  if (rc == 0) s->nwait_events++;
  return rc;
}

static int wf_events(mly_conf *c, void *o, mly_conf_node *v) {
  fsm_state *s = o;
  if (mly_conf_type_of(v) != MLY_CONF_LIST || mly_conf_len(v) == 0)
    return mly_conf_bad(c, v, "wait events must be a list of event names, "
                        "e.g. [paid, cancelled]");
  size_t n = mly_conf_len(v);
  if ((s->wait_events = calloc(n, sizeof *s->wait_events)) == NULL)
    return mly_conf_nomem(c);
  return mly_conf_each(c, v, wait_event, &(wctx){s, v});
}

static int wf_timeout(mly_conf *c, void *o, mly_conf_node *v) {
  return get_secs(c, v, "wait timeout", 1, &((fsm_state *)o)->wait_timeout_ms);
}

static int wf_timeout_event(mly_conf *c, void *o, mly_conf_node *v) {
  return get_name(c, v, "timeout_event", &((fsm_state *)o)->wait_timeout_event);
}

static const mly_conf_field wait_fields[] = {
    {"events", wf_events, false}, {"timeout", wf_timeout, false},
    {"timeout_event", wf_timeout_event, false}};

static int sf_wait(mly_conf *c, void *o, mly_conf_node *v) {
  fsm_state *s = S(o);
  if (mly_conf_type_of(v) != MLY_CONF_MAP)
    return mly_conf_bad(c, v, "wait must be a map such as {events: [paid], "
                        "timeout: 3d, timeout_event: expired}, not %s",
                        mly_conf_kind_name(v));
  s->wait = true;
  int rc = mly_conf_walk(c, v, wait_fields, 3, "in wait", s);
  if (rc) return rc;
  if (s->nwait_events == 0)
    return mly_conf_bad(c, v, "wait needs events: the events it waits for, "
                        "e.g. events: [paid, cancelled]");
  if (s->wait_timeout_ms >= 0 && s->wait_timeout_event == NULL)
    return mly_conf_bad(c, v, "wait has a timeout but no timeout_event; add "
                        "timeout_event: NAME (the event sent when it fires)");
  if (s->wait_timeout_ms < 0 && s->wait_timeout_event != NULL)
    return mly_conf_bad(c, v, "wait has a timeout_event but no timeout; add "
                        "timeout: 3d, or remove timeout_event");
  return 0;
}

static const mly_conf_field state_fields[] = {
    {"name", sf_name, false},
    {"initial", sf_initial, false},
    {"final", sf_final, false},
    {"entry", sf_entry, false},
    {"action", sf_action, false},
    {"exit", sf_exit, false},
    {"continuation", sf_continuation, false},
    {"continuation_countdown", sf_cont_countdown, false},
    {"fan_in", sf_fan_in, false},
    {"fan_in_group", sf_fan_in_group, false},
    {"transitions", sf_transitions, false},
    {"wait", sf_wait, false},
    {"on_failure", sf_on_failure, false}};

static void state_defaults(fsm_state *s) {
  s->continuation_countdown_ms = -1;
  s->fan_in_window_ms = -1;
  s->wait_timeout_ms = -1;
  s->on_failure = FSM_NO_STATE;
}

static int trans_item(mly_conf *c, void *o, mly_conf_node *v, size_t i) {
  return parse_trans(c, o, i, v);
}

static int state_transitions(mly_conf *c, sctx *sc) {
  fsm_state *s = sc->s;
  size_t n = mly_conf_len(sc->transitions);
  if (n == 0) return 0;
  if ((s->trans = calloc(n, sizeof *s->trans)) == NULL)
    return mly_conf_nomem(c);
  s->ntrans = n;
  for (size_t i = 0; i < n; i++) s->trans[i].to = FSM_NO_STATE;
  return mly_conf_each(c, sc->transitions, trans_item, sc);
}

static int parse_state(mly_conf *c, mctx *mc, size_t si, mly_conf_node *v) {
  sctx sc = {.mc = mc, .s = &mc->m->states[si], .si = si};
  state_defaults(sc.s);
  sc.s->pos = fsm_pos_of(F(c), v);
  if (mly_conf_type_of(v) != MLY_CONF_MAP)
    return mly_conf_bad(c, v, "a state must be a map such as {name: start, "
                        "initial: True, action: Start}, not %s",
                        mly_conf_kind_name(v));
  /* the name first, for the messages about the rest */
  for (size_t i = 0; i < mly_conf_len(v); i++) {
    mly_conf_node *k, *val;
    if (mly_conf_pair(c, v, i, &k, &val) != 0) break;
    const char *ks = mly_conf_scalar(k);
    if (ks && strcmp(ks, "name") == 0 && mly_conf_scalar(val))
      snprintf(sc.where, sizeof sc.where, "in state '%.170s' of %.200s",
               mly_conf_show(mly_conf_scalar(val)).s, mc->h.where + 3);
  }
  if (sc.where[0] == '\0')
    snprintf(sc.where, sizeof sc.where, "in a state of %.200s", mc->h.where + 3);
  int rc = mly_conf_walk(c, v, state_fields,
                         sizeof state_fields / sizeof state_fields[0],
                         sc.where, &sc);
  if (sc.s->name == NULL && rc == 0)
    rc = mly_conf_bad(c, v, "this state has no name; add name: NAME");
  if (sc.transitions) {
    int r = state_transitions(c, &sc);
    if (rc == 0) rc = r;
  }
  if (sc.on_failure) {
    int r = fsm_ref_add(F(c)->L, REF_STATE_FAIL, mc->mi, si, 0,
                        mly_conf_scalar(sc.on_failure),
                        fsm_pos_of(F(c), sc.on_failure));
    if (rc == 0) rc = r;
  }
  return rc;
}

/* ------------------------------------------------------------------ */
/* Machines.                                                           */

#define M(o) (((mctx *)(o))->m)

static int mf_name(mly_conf *c, void *o, mly_conf_node *v) {
  return get_name(c, v, "machine name", &M(o)->name);
}

static int mf_namespace(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_set_str(c, v, "namespace", &M(o)->namespace_);
}

static int mf_version(mly_conf *c, void *o, mly_conf_node *v) {
  int64_t n;
  int rc = mly_conf_get_int(c, v, "version", 1, UINT32_MAX, &n);
  if (rc == 0) M(o)->version = (uint32_t)n;
  return rc;
}

static int mf_logging(mly_conf *c, void *o, mly_conf_node *v) {
  (void)o;
  ignored(c, v, "logging");
  return 0;
}

static int mf_semaphore(mly_conf *c, void *o, mly_conf_node *v) {
  bool b;
  (void)o;
  int rc = mly_conf_get_bool(c, v, "use_run_once_semaphore", &b);
  if (rc == 0)
    fsm_ld_note(c, v, "'use_run_once_semaphore' is accepted and ignored: "
                "each step commits once here, so no semaphore is needed");
  return rc;
}

static int mf_states(mly_conf *c, void *o, mly_conf_node *v) {
  if (mly_conf_is_null(v)) return 0; /* machine_states says it */
  ((mctx *)o)->states_bad = true;
  if (mly_conf_type_of(v) != MLY_CONF_LIST)
    return mly_conf_bad(c, v, "states must be a list of states, not %s",
                        mly_conf_kind_name(v));
  ((mctx *)o)->states_bad = false;
  ((mctx *)o)->states = v;
  return 0;
}

static int mf_on_failure(mly_conf *c, void *o, mly_conf_node *v) {
  const char *s;
  int rc = mly_conf_get_str(c, v, "on_failure", &s);
  if (rc == 0) ((mctx *)o)->on_failure = v;
  return rc;
}

/* context_types: our names and Fantasm's Python ones. */
static const struct {
  const char *name;
  fsm_ctype type;
  bool list;
} ctype_names[] = {
    {"int", FSM_T_INT, false},       {"uint", FSM_T_UINT, false},
    {"float", FSM_T_FLOAT, false},   {"bool", FSM_T_BOOL, false},
    {"string", FSM_T_STRING, false}, {"binary", FSM_T_BINARY, false},
    {"datetime", FSM_T_DATETIME, false}, {"map", FSM_T_MAP, false},
    {"any", FSM_T_ANY, false},
    /* Python's */
    {"long", FSM_T_INT, false},      {"str", FSM_T_STRING, false},
    {"unicode", FSM_T_STRING, false}, {"bytes", FSM_T_BINARY, false},
    {"dict", FSM_T_MAP, false},      {"json", FSM_T_ANY, false},
    {"list", FSM_T_ANY, true}};

static int ctype_lookup(const char *s, fsm_ctx_type *t) {
  for (size_t i = 0; i < sizeof ctype_names / sizeof ctype_names[0]; i++)
    if (strcmp(s, ctype_names[i].name) == 0) {
      t->type = ctype_names[i].type;
      t->list = t->list || ctype_names[i].list;
      return 0;
    }
  return -1;
}

#define CTYPES_KNOWN "int, uint, float, bool, string, binary, datetime, map, " \
  "any, or a list of one: [int]"

static int ctype_value(mly_conf *c, mly_conf_node *v, fsm_ctx_type *t) {
  const char *s;
  if (mly_conf_type_of(v) == MLY_CONF_LIST) {
    if (mly_conf_len(v) != 1)
      return mly_conf_bad(c, v, "a list type names one item type, e.g. "
                          "[int]");
    t->list = true;
    int rc = mly_conf_item(c, v, 0, &v);
    if (rc) return rc;
    if (mly_conf_type_of(v) == MLY_CONF_LIST)
      return mly_conf_bad(c, v, "lists of lists are not a context type; "
                          "write [any]");
  }
  int rc = mly_conf_get_str(c, v, "a context type", &s);
  if (rc) return rc;
  if (strncmp(s, "list of ", 8) == 0) {
    t->list = true;
    s += 8;
  }
  if (ctype_lookup(s, t) == 0 && !(t->list && strcmp(s, "list") == 0 &&
                                   mly_conf_type_of(v) != MLY_CONF_SCALAR))
    return 0;
  if (strcmp(s, "pickle") == 0)
    return mly_conf_bad(c, v, "'pickle' is a Python-only type; store the "
                        "value as one of " CTYPES_KNOWN);
  if (strchr(s, '.'))
    return mly_conf_bad(c, v, "'%s' is a Python class; store it as one of "
                        CTYPES_KNOWN " (a datastore key: string)",
                        mly_conf_show(s).s);
  return mly_conf_bad(c, v, "unknown context type '%s'; write " CTYPES_KNOWN,
                      mly_conf_show(s).s);
}

static int mf_ctypes(mly_conf *c, void *o, mly_conf_node *v) {
  fsm_machine *m = M(o);
  if (mly_conf_type_of(v) != MLY_CONF_MAP)
    return mly_conf_bad(c, v, "context_types must be a map of key: type, "
                        "not %s", mly_conf_kind_name(v));
  size_t n = mly_conf_len(v);
  if ((m->ctypes = calloc(n ? n : 1, sizeof *m->ctypes)) == NULL)
    return mly_conf_nomem(c);
  int first = 0;
  for (size_t i = 0; i < n; i++) {
    mly_conf_node *k, *val;
    const char *key;
    int rc = mly_conf_pair(c, v, i, &k, &val);
    if (rc == 0) rc = mly_conf_get_str(c, k, "a context key", &key);
    fsm_ctx_type *t = &m->ctypes[m->nctypes];
    /* a key typed twice: validate.c */
    if (rc == 0) rc = ctype_value(c, val, t);
    if (rc == 0) {
      t->pos = fsm_pos_of(F(c), k);
      if ((t->key = strdup(key)) == NULL) return mly_conf_nomem(c);
      m->nctypes++;
    }
    if (rc && !first) first = rc;
    if (rc == MLY_ENOMEM) return rc;
  }
  return first;
}

static const mly_conf_field machine_fields[] = {
    {"name", mf_name, false},
    {"namespace", mf_namespace, false},
    {"version", mf_version, false},
    {"logging", mf_logging, false},
    {"use_run_once_semaphore", mf_semaphore, false},
    {"context_types", mf_ctypes, false},
    {"states", mf_states, true},
    {"on_failure", mf_on_failure, false},
    RETRY_FIELDS};

static int state_item(mly_conf *c, void *o, mly_conf_node *v, size_t i) {
  return parse_state(c, o, i, v);
}

static int machine_states(mly_conf *c, mctx *mc, mly_conf_node *v) {
  fsm_machine *m = mc->m;
  if (mc->states_bad) return MLY_EINVAL;
  if (mc->states == NULL || mly_conf_len(mc->states) == 0)
    return mly_conf_bad(c, mc->states ? mc->states : v,
                        "machine '%s' has no states; add states: with an "
                        "initial and a final one", m->name ? m->name : "?");
  size_t n = mly_conf_len(mc->states);
  if ((m->states = calloc(n, sizeof *m->states)) == NULL)
    return mly_conf_nomem(c);
  m->nstates = n;
  for (size_t i = 0; i < n; i++) state_defaults(&m->states[i]);
  return mly_conf_each(c, mc->states, state_item, mc);
}

static int parse_machine(mly_conf *c, mly_conf_node *v) {
  fsm_loader *L = F(c)->L;
  fsm_set *set = L->set;
  fsm_machine *grown = realloc(set->machines,
                               (set->nmachines + 1) * sizeof *grown);
  if (grown == NULL) return mly_conf_nomem(c);
  set->machines = grown;
  size_t mi = set->nmachines++;
  fsm_machine *m = &set->machines[mi];
  memset(m, 0, sizeof *m);
  m->version = 1;
  m->on_failure = FSM_NO_STATE;
  m->initial = FSM_NO_STATE;
  m->countdown = (fsm_countdown){-1, -1};
  retry_defaults(&m->retry);
  m->pos = fsm_pos_of(F(c), v);
  mctx mc = {.h = {.f = F(c), .retry = &m->retry, .countdown = &m->countdown,
                   .queue = &m->queue},
             .m = m, .mi = mi};
  if (mly_conf_type_of(v) != MLY_CONF_MAP)
    return mly_conf_bad(c, v, "a machine must be a map with name: and "
                        "states:, not %s", mly_conf_kind_name(v));
  /* the name first, for the messages (the table reads it again) */
  for (size_t i = 0; i < mly_conf_len(v); i++) {
    mly_conf_node *k, *val;
    if (mly_conf_pair(c, v, i, &k, &val) != 0) break;
    const char *ks = mly_conf_scalar(k);
    if (ks && strcmp(ks, "name") == 0 && mly_conf_scalar(val))
      snprintf(mc.h.where, sizeof mc.h.where, "in machine '%s'",
               mly_conf_show(mly_conf_scalar(val)).s);
  }
  if (mc.h.where[0] == '\0')
    snprintf(mc.h.where, sizeof mc.h.where, "in machine #%zu of %.300s",
             mi + 1, F(c)->file);
  int rc = mly_conf_walk(c, v, machine_fields,
                         sizeof machine_fields / sizeof machine_fields[0],
                         mc.h.where, &mc);
  int r = retry_exclusive(c, &mc.h);
  if (rc == 0) rc = r;
  if (m->name == NULL && rc == 0)
    r = mly_conf_bad(c, v, "this machine has no name; add name: NAME");
  if (rc == 0) rc = r;
  if (rc != MLY_ENOMEM) {
    r = machine_states(c, &mc, v);
    if (rc == 0) rc = r;
  }
  if (mc.on_failure) {
    r = fsm_ref_add(L, REF_MACHINE_FAIL, mi, 0, 0,
                    mly_conf_scalar(mc.on_failure),
                    fsm_pos_of(F(c), mc.on_failure));
    if (rc == 0) rc = r;
  }
  return rc;
}

static int machine_item(mly_conf *c, void *o, mly_conf_node *v, size_t i) {
  (void)o;
  (void)i;
  return parse_machine(c, v);
}

int fsm_parse_machines(fsm_file *f, mly_conf_node *list) {
  if (mly_conf_type_of(list) != MLY_CONF_LIST)
    return mly_conf_bad(f->c, list, "state_machines must be a list of "
                        "machines, not %s", mly_conf_kind_name(list));
  return mly_conf_each(f->c, list, machine_item, NULL);
}
