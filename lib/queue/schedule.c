/*
 * schedule.c - schedules: a cron expression or a period, in a time
 * zone, that adds a task at each tick.
 *
 * D10: each schedule is a small durable machine, "mly.schedule", named
 * "schedule:NAME", whose data holds the next tick not yet enqueued.  It
 * waits at its one point `idle` until that tick is due, then, in one
 * step, adds the tick's tasks (named "NAME@SECONDS", the tick's UTC
 * time: the queue's named-task facility refuses a second add of a tick
 * even if a step were run again) and moves its next tick past now; the
 * step commits both together, so each tick is enqueued once, also
 * across restarts.
 *
 * Missed ticks.  Ticks due at or before now are missed when they are not
 * the newest one, and the newest one is missed when now is more than
 * MLY_SCHEDULE_GRACE_MS past it (the process was down, or the loop was
 * held): `skip` enqueues only a newest tick that is not missed, `one`
 * the newest due tick whatever its age, `all` every due tick, at most
 * the newest MLY_MISSED_ALL_MAX of them.
 *
 * The declaration (expression, zone, target, payload) lives in memory
 * and is given again at each start; the instance holds only where the
 * schedule is.  Until a schedule is declared its instance waits.
 */
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"

#define SC_PREFIX "schedule:"

typedef struct sc_data {
  char name[MLY_NAME_MAX + 1];
  int64_t next_s;   /* next tick not yet enqueued, 0: not yet computed */
  uint64_t enqueued;/* ticks enqueued over its life                    */
  uint64_t skipped; /* ticks missed and not enqueued                   */
} sc_data;

struct tq_sched {
  tq_sched *next;
  char name[MLY_SCHEDULE_NAME_MAX + 1];
  bool is_cron;
  tq_cron cron;
  int64_t every_s;
  tq_tz tz;
  bool has_tz;
  mly_missed missed;
  mly_task_kind kind;
  char target[MLY_NAME_MAX + 1];
  char queue[MLY_NAME_MAX + 1];
  mly_value *payload;
  int32_t priority;
  mly_id id;        /* its instance, 0: not found yet */
};

#define SC_POINTS(X) X(sc, idle)
MLY_POINTS(sc, SC_POINTS);

static int64_t now_s(tq_layer *L) {
  int64_t ms = L->sc_now ? L->sc_now(L->sc_now_arg) : tq_wall_ms();
  return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

static tq_sched *find(tq_layer *L, const char *name) {
  for (tq_sched *s = L->scheds; s; s = s->next)
    if (strcmp(s->name, name) == 0) return s;
  return NULL;
}

static int next_tick(const tq_sched *s, int64_t after, int64_t *out) {
  if (!s->is_cron) {
    int64_t k = after >= 0 ? after / s->every_s
                           : -((-after + s->every_s - 1) / s->every_s);
    *out = (k + 1) * s->every_s;
    return 0;
  }
  return tq_cron_next(&s->cron, s->has_tz ? &s->tz : NULL, after, out);
}

/* Ask the queue layer's clock to look again when s is due (real time
 * only: with a test clock, mly_schedules_poke drives it). */
static void need(tq_layer *L, const sc_data *d) {
  if (L->sc_now || d->next_s == 0) return;
  if (d->next_s == INT64_MAX) return;
  int64_t ms = d->next_s * 1000 - tq_wall_ms();
  uint64_t us = tq_now_us() + (uint64_t)(ms > 0 ? ms : 0) * 1000u + 1;
  if (L->sc_due_us == 0 || us < L->sc_due_us) L->sc_due_us = us;
  tq_clock_need(L, us);
}

static bool due(mly_machine *m, sc_data *d) {
  tq_layer *L = tq_get(mly_machine_runtime(m));
  if (L == NULL) return false;
  tq_sched *s = find(L, d->name);
  if (s == NULL) return false;
  if (s->id == 0) s->id = mly_self(m);
  if (d->next_s == 0 || d->next_s <= now_s(L)) return true;
  need(L, d);
  return false;
}

static void add_tick(tq_layer *L, tq_sched *s, int64_t tick) {
  char name[MLY_NAME_MAX + 1];
  snprintf(name, sizeof name, "%s@%lld", s->name, (long long)tick);
  mly_task_target what = {.kind = s->kind, .name = s->target};
  mly_task_opts o = {.queue = s->queue[0] ? s->queue : NULL,
                     .name = name,
                     .priority = s->priority};
  mly_value *p = s->payload ? mly_value_copy(s->payload) : NULL;
  int rc = mly_task_add(L->rt, &what, p, &o);
  if (rc < 0 && rc != MLY_EEXIST)
    fprintf(stderr, "mealy: schedule %s: tick %s not enqueued: %s\n",
            s->name, name, mly_strerror(rc));
}

/* The step's work: the due ticks by the missed policy, then the next. */
static void fire(mly_machine *m, sc_data *d) {
  tq_layer *L = tq_get(mly_machine_runtime(m));
  tq_sched *s = L ? find(L, d->name) : NULL;
  if (s == NULL) return;
  int64_t now = now_s(L), t = d->next_s, next;
  if (t == 0) {
    if (next_tick(s, now, &next) == 0) d->next_s = next;
    need(L, d);
    return;
  }
  int64_t ring[MLY_MISSED_ALL_MAX];
  uint64_t n = 0;
  int rc = 0;
  while (t <= now) {
    ring[n++ % MLY_MISSED_ALL_MAX] = t;
    if ((rc = next_tick(s, t, &t)) < 0) break;
  }
  int64_t newest = n ? ring[(n - 1) % MLY_MISSED_ALL_MAX] : 0;
  bool late = n && (now - newest) * 1000 > MLY_SCHEDULE_GRACE_MS;
  uint64_t take = 0;
  if (s->missed == MLY_MISSED_ALL)
    take = n < MLY_MISSED_ALL_MAX ? n : MLY_MISSED_ALL_MAX;
  else if (n && (s->missed == MLY_MISSED_ONE || !late))
    take = 1;
  for (uint64_t i = n - take; i < n; i++)
    add_tick(L, s, ring[i % MLY_MISSED_ALL_MAX]);
  d->enqueued += take;
  d->skipped += n - take;
  d->next_s = rc < 0 ? INT64_MAX : t; /* no tick for 9 years: none */
  need(L, d);
}

static int sc_run(mly_machine *m, void *data) {
  sc_data *d = data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_WAIT_UNTIL_AT(m, sc_idle, due(m, d));
    fire(m, d); /* committed when it waits again */
  }
  MLY_END(m);
}

static void sc_fini(mly_machine *m, void *data) {
  sc_data *d = data;
  tq_layer *L = tq_get(mly_machine_runtime(m));
  tq_sched *s = L ? find(L, d->name) : NULL;
  if (s && s->id == mly_self(m)) s->id = 0;
}

int tq_sched_register(tq_layer *L) {
  mly_type_def def = {.name = TQ_SCHED_TYPE,
                      .run = sc_run,
                      MLY_TYPE_POINTS(sc),
                      .data_size = sizeof(sc_data),
                      .version = 1,
                      .flags = MLY_TYPE_DURABLE,
                      .fini = sc_fini};
  return mly_type_register(L->rt, &def, &L->sc_type);
}

void tq_sched_free_all(tq_layer *L) {
  while (L->scheds) {
    tq_sched *s = L->scheds;
    L->scheds = s->next;
    if (s->has_tz) tq_tz_free(&s->tz);
    mly_value_free(s->payload);
    free(s);
  }
}

static int refuse(char *err, size_t len, const char *fmt, const char *a,
                  const char *b) {
  if (len) snprintf(err, len, fmt, a, b);
  return MLY_EINVAL;
}

int tq_check_name(const char *n, size_t max) {
  size_t len = n ? strlen(n) : 0;
  if (len == 0 || len > max) return MLY_EINVAL;
  for (const char *p = n; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '/' || *p == '@')
      return MLY_EINVAL;
  return 0;
}

static void wake(tq_layer *L, tq_sched *s) {
  char iname[sizeof SC_PREFIX + MLY_SCHEDULE_NAME_MAX];
  snprintf(iname, sizeof iname, SC_PREFIX "%s", s->name);
  if (s->id == 0) {
    mly_name_info ni;
    if (mly_name_lookup(L->rt, iname, &ni) == 0 &&
        ni.state == MLY_NAME_LIVE)
      s->id = ni.id;
  }
  if (s->id != 0) {
    mly_wake(L->rt, s->id);
    return;
  }
  sc_data d;
  memset(&d, 0, sizeof d);
  snprintf(d.name, sizeof d.name, "%s", s->name);
  mly_spawn_options so = {.arg = &d, .arg_len = sizeof d, .name = iname};
  mly_id id = 0;
  if (mly_spawn_opts(L->rt, L->sc_type, &so, &id) == 0) s->id = id;
}

int mly_schedule_declare(mly_runtime *rt, const mly_schedule_def *def,
                         char *err, size_t errlen) {
  tq_layer *L = tq_get(rt);
  if (errlen) err[0] = '\0';
  if (L == NULL) return MLY_ENOENT;
  if (def == NULL || tq_check_name(def->name, MLY_SCHEDULE_NAME_MAX) < 0)
    return refuse(err, errlen, "schedule name \"%s\"%s: 1..40 bytes, no "
                  "control character, '/' or '@'",
                  def && def->name ? def->name : "", "");
  if (find(L, def->name)) return MLY_EEXIST;
  if ((def->cron == NULL) == (def->every_ms <= 0))
    return refuse(err, errlen, "schedule %s%s: give either cron or every",
                  def->name, "");
  if (def->cron == NULL && def->every_ms % 1000 != 0)
    return refuse(err, errlen, "schedule %s%s: every is whole seconds",
                  def->name, "");
  if ((unsigned)def->missed > MLY_MISSED_ALL)
    return refuse(err, errlen, "schedule %s%s: missed is skip, one or all",
                  def->name, "");
  if (tq_check_name(def->what.name, MLY_NAME_MAX) < 0)
    return refuse(err, errlen, "schedule %s%s: what it runs needs a name",
                  def->name, "");
  if (def->what.kind == MLY_TASK_FUNCTION ? tq_fn_find(L, def->what.name) == NULL
                                           : !L->has_starter) {
    if (errlen)
      snprintf(err, errlen, "schedule %s: %s '%s' %s", def->name,
               def->what.kind == MLY_TASK_FUNCTION ? "function" : "machine",
               def->what.name,
               def->what.kind == MLY_TASK_FUNCTION
                   ? "is not registered (mly_defer_register it first)"
                   : "cannot be started: no starter (mly_task_set_starter)");
    return MLY_ENOENT;
  }
  tq_sched *s = calloc(1, sizeof *s);
  if (s == NULL) return MLY_ENOMEM;
  snprintf(s->name, sizeof s->name, "%s", def->name);
  int rc = 0;
  if (def->cron) {
    s->is_cron = true;
    char e[200];
    size_t col = 0;
    if ((rc = tq_cron_parse(def->cron, &s->cron, e, sizeof e, &col)) < 0) {
      if (errlen)
        snprintf(err, errlen, "schedule %s: cron \"%s\", column %zu: %s",
                 def->name, def->cron, col + 1, e);
      free(s);
      return rc;
    }
  } else {
    s->every_s = def->every_ms / 1000;
  }
  if (def->tz && strcmp(def->tz, "UTC") != 0) {
    if ((rc = tq_tz_load(NULL, def->tz, &s->tz, err, errlen)) < 0) {
      free(s);
      return rc;
    }
    s->has_tz = true;
  }
  s->missed = def->missed;
  s->kind = def->what.kind;
  snprintf(s->target, sizeof s->target, "%s", def->what.name);
  snprintf(s->queue, sizeof s->queue, "%s", def->queue ? def->queue : "");
  s->priority = def->priority;
  if (def->payload && (s->payload = mly_value_copy(def->payload)) == NULL) {
    if (s->has_tz) tq_tz_free(&s->tz);
    free(s);
    return MLY_ENOMEM;
  }
  s->next = L->scheds;
  L->scheds = s;
  wake(L, s);
  return 0;
}

void mly_schedule_set_clock(mly_runtime *rt, int64_t (*now_ms)(void *arg),
                            void *arg) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return;
  L->sc_now = now_ms;
  L->sc_now_arg = arg;
}

void mly_schedules_poke(mly_runtime *rt) {
  tq_layer *L = tq_get(rt);
  if (L == NULL) return;
  for (tq_sched *s = L->scheds; s; s = s->next) wake(L, s);
}

void tq_sched_tick(tq_layer *L) {
  int64_t now = now_s(L);
  L->sc_due_us = 0;
  for (tq_sched *s = L->scheds; s; s = s->next) {
    if (s->id == 0) continue;
    const sc_data *d = mly_instance_data(L->rt, s->id);
    if (d == NULL) continue;
    if (d->next_s != 0 && d->next_s <= now) mly_wake(L->rt, s->id);
    else need(L, d);
  }
}

int mly_schedule_info_get(mly_runtime *rt, const char *name,
                          mly_schedule_info *out) {
  tq_layer *L = tq_get(rt);
  tq_sched *s = L ? find(L, name) : NULL;
  if (s == NULL) return MLY_ENOENT;
  memset(out, 0, sizeof *out);
  out->id = s->id;
  const sc_data *d = s->id ? mly_instance_data(rt, s->id) : NULL;
  if (d) {
    out->next_ms = d->next_s * 1000;
    out->enqueued = d->enqueued;
    out->skipped = d->skipped;
  }
  return 0;
}
