/*
 * masterd.c - the seed's MasterD, written as resumable C functions.
 *
 * MasterD waits for a configuration to be chosen by an external event,
 * re-checking every 2 s as the seed does, then starts two subsystems
 * ("rt", then "app") as child machines and runs until it is asked to shut
 * down.  A shutdown request swaps in its shutdown routine (the seed's
 * shutdown_state_machine): stop app, stop RT, stop the loop.  The routine
 * copes with a partial start: it stops only what was started.
 *
 * SIGINT and SIGTERM arrive as ordinary events; MasterD answers them by
 * asking for its own shutdown.
 */
#include "masterd.h"

#include "mlog.h"

#include <signal.h>
#include <stdarg.h>
#include <string.h>

void masterd_logf(masterd_log *log, const char *who, const char *fmt, ...) {
  if (log == NULL) return;
  va_list ap;
  va_start(ap, fmt);
  mlogv(log->out, who, fmt, ap);
  va_end(ap);
}

/* ---- a subsystem: starts, works, stops when asked ---- */

typedef struct subsystem {
  masterd_log *log;
  char name[16];
  uint64_t beats;
} subsystem;

#define SUBSYSTEM_POINTS(X) X(subsystem, starting) X(subsystem, working) \
  X(subsystem, stopping)
MLY_POINTS(subsystem, SUBSYSTEM_POINTS);

static int subsystem_run(mly_machine *m, void *data) {
  subsystem *s = data;
  MLY_BEGIN(m);
  masterd_logf(s->log, s->name, "starting");
  MLY_SLEEP_AT(m, subsystem_starting, 100);
  masterd_logf(s->log, s->name, "up");
  for (;;) {
    MLY_SLEEP_AT(m, subsystem_working, 1000);
    s->beats++;
  }
  MLY_END(m);
}

static int subsystem_shutdown(mly_machine *m, void *data) {
  subsystem *s = data;
  MLY_BEGIN(m);
  masterd_logf(s->log, s->name, "stopping");
  MLY_SLEEP_AT(m, subsystem_stopping, 50);
  masterd_logf(s->log, s->name, "stopped");
  MLY_END(m);
}

/* ---- MasterD ---- */

typedef struct masterd {
  masterd_arg arg;
  char config[64];
  mly_id rt_child, app_child;
  int status;
} masterd;

#define MASTERD_POINTS(X)                                                 \
  X(masterd, config_wait) X(masterd, running) X(masterd, stopping_app)    \
  X(masterd, stopping_rt)
MLY_POINTS(masterd, MASTERD_POINTS);

/* A signal is a request to shut down; a config event picks the config. */
static void masterd_take(mly_machine *m, masterd *d) {
  const mly_event *e = mly_current_event(m);
  mly_runtime *rt = mly_machine_runtime(m);
  uint32_t config_id = 0;
  if (e == NULL) return;
  if (e->id == MLY_EV_SIGNAL(SIGINT) || e->id == MLY_EV_SIGNAL(SIGTERM)) {
    masterd_logf(d->arg.log, "masterd", "caught signal %d: shutting down",
                 (int)e->status);
    mly_shutdown(rt, mly_self(m));
    return;
  }
  const char *name = NULL;
  if (mly_event_id(rt, "config", &config_id) == 0 && e->id == config_id &&
      mly_value_get_str(e->payload, &name, NULL) == 0 && name[0] != '\0') {
    masterd_logf(d->arg.log, "masterd", "external request: config %s", name);
    snprintf(d->config, sizeof d->config, "%s", name);
  }
}

static int spawn_subsystem(mly_machine *m, masterd *d, const char *name,
                           mly_id *out) {
  subsystem s = {.log = d->arg.log};
  snprintf(s.name, sizeof s.name, "%s", name);
  masterd_logf(d->arg.log, "masterd", "starting %s", name);
  return mly_spawn_child(m, d->arg.types->subsystem, &s, sizeof s, out);
}

static int masterd_run(mly_machine *m, void *data) {
  masterd *d = data;
  MLY_BEGIN(m);
  masterd_logf(d->arg.log, "masterd", "init server");
  mly_signal_watch(m, SIGINT);
  mly_signal_watch(m, SIGTERM);
  while (d->config[0] == '\0') {
    MLY_AWAIT_AT(m, masterd_config_wait, MLY_EV_ANY, d->arg.recheck_ms);
    if (mly_timed_out(m))
      masterd_logf(d->arg.log, "masterd", "no config chosen yet; "
                   "checking again in %lld ms", (long long)d->arg.recheck_ms);
    masterd_take(m, d);
  }
  masterd_logf(d->arg.log, "masterd", "setting up config %s", d->config);
  if (spawn_subsystem(m, d, "rt", &d->rt_child) < 0 ||
      spawn_subsystem(m, d, "app", &d->app_child) < 0)
    MLY_EXIT(m, 1);
  for (;;) {
    MLY_AWAIT_AT(m, masterd_running, MLY_EV_ANY, -1);
    masterd_take(m, d);
  }
  MLY_END(m);
}

/* Stop a child if it was started; the caller then awaits it. */
static bool stop_child(mly_machine *m, masterd *d, mly_id child,
                       const char *what) {
  masterd_logf(d->arg.log, "masterd", "stopping %s", what);
  return child != 0 && mly_shutdown(mly_machine_runtime(m), child) == 0;
}

static int masterd_shutdown(mly_machine *m, void *data) {
  masterd *d = data;
  MLY_BEGIN(m);
  if (stop_child(m, d, d->app_child, "app"))
    MLY_AWAIT_CHILD_AT(m, masterd_stopping_app, d->app_child, &d->status);
  if (stop_child(m, d, d->rt_child, "rt"))
    MLY_AWAIT_CHILD_AT(m, masterd_stopping_rt, d->rt_child, &d->status);
  masterd_logf(d->arg.log, "masterd", "stopping loop");
  /* a second runtime shutdown would mean "force": ask only once */
  if (!mly_runtime_stopping(mly_machine_runtime(m)))
    mly_runtime_shutdown(mly_machine_runtime(m), d->arg.stop_grace_ms);
  MLY_END(m);
}

int masterd_register(mly_runtime *rt, masterd_types *out) {
  int rc = mly_type_register(rt, &(mly_type_def){
      .name = "subsystem", .run = subsystem_run,
      .shutdown = subsystem_shutdown, MLY_TYPE_POINTS(subsystem),
      .data_size = sizeof(subsystem), .version = 1}, &out->subsystem);
  if (rc < 0) return rc;
  return mly_type_register(rt, &(mly_type_def){
      .name = "masterd", .run = masterd_run, .shutdown = masterd_shutdown,
      MLY_TYPE_POINTS(masterd), .data_size = sizeof(masterd), .version = 1},
      &out->masterd);
}
