/*
 * supervisor.c - the master daemon: the seed's MasterD, for real programs.
 *
 * The supervisor machine owns one coprocess machine per program.  It
 * starts every program once (each coprocess waits until what it depends
 * on is ready, and is woken when that changes), and stops programs in
 * reverse: a program is asked to stop only once nothing that depends on
 * it is still up.  SIGHUP (or `ctl reload`) re-reads the file: added
 * programs start, removed ones stop and go once their process is down,
 * changed ones get their new definition for their next life (restarted
 * now unless stopped by hand), unchanged ones are left alone.
 *
 * SIGTERM, SIGINT or `ctl shutdown` stop everything and end the run:
 * from then on nothing starts or restarts; after shutdown_grace, or at
 * a second SIGTERM or SIGINT, whatever still runs (stopping or not) is
 * SIGKILLed at once.  SIGCHLD reaps orphans (tree.c).  Programs are
 * found by name and by pid in hash tables, and an event walks every
 * program only where it must (reload, shutdown, status).
 *
 * Decisions are made in one place, reconcile(), each time anything
 * changes: it looks at every program and does what is due.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "sv.h"

/* ---- programs ---- */

sv_proc *sv_proc_new(sv *s, const sv_program *prog) {
  sv_proc *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  sv_proc **v = realloc(s->procs, (s->nprocs + 1) * sizeof *v);
  if (v == NULL) {
    free(p);
    return NULL;
  }
  s->procs = v;
  p->sv = s;
  p->prog = prog;
  snprintf(p->name, sizeof p->name, "%s", prog->name);
  s->procs[s->nprocs++] = p;
  HASH_ADD(hh_name, s->by_name, name, strlen(p->name), p);
  s->nunlaunched++;
  return p;
}

void sv_proc_free(sv_proc *p) {
  logpipe_forget_proc(p->sv, p);
  sv_notify_close(p);
  for (size_t i = 0; i < SV_TAIL_LINES; i++) free(p->tail[i]);
  free(p->backoffs);
  free(p->restart_times);
  free(p);
}

void sv_proc_set_pid(sv_proc *p, int pid) {
  sv *s = p->sv;
  if (p->pid > 0) HASH_DELETE(hh_pid, s->by_pid, p);
  p->pid = pid > 0 ? pid : 0;
  if (p->pid > 0) HASH_ADD(hh_pid, s->by_pid, pid, sizeof p->pid, p);
}

static void sv_proc_remove(sv *s, sv_proc *p) {
  HASH_DELETE(hh_name, s->by_name, p);
  if (p->retiring && s->nretiring) s->nretiring--;
  if (!p->launched && s->nunlaunched) s->nunlaunched--;
  sv_proc_set_pid(p, 0);
  sv_tree_close(p);
  /* a program removed by a reload: its place in the list is looked up
     once, when it goes */
  for (size_t i = 0; i < s->nprocs; i++)
    if (s->procs[i] == p) {
      memmove(&s->procs[i], &s->procs[i + 1],
              (s->nprocs - i - 1) * sizeof *s->procs);
      s->nprocs--;
      break;
    }
  sv_proc_free(p);
}

/* One sv_proc per name, a retiring one included, while it lives. */
sv_proc *sv_find(sv *s, const char *name) {
  sv_proc *p = NULL;
  HASH_FIND(hh_name, s->by_name, name, strlen(name), p);
  return p;
}

sv_proc *sv_find_pid(sv *s, int pid) {
  sv_proc *p = NULL;
  HASH_FIND(hh_pid, s->by_pid, &pid, sizeof pid, p);
  return p;
}

void sv_proc_tail_add(sv_proc *p, const char *line, size_t len) {
  char *copy = malloc(len + 1);
  if (copy == NULL) return;
  memcpy(copy, line, len);
  copy[len] = '\0';
  free(p->tail[p->tail_next]);
  p->tail[p->tail_next] = copy;
  p->tail_len[p->tail_next] = (uint32_t)len;
  p->tail_next = (p->tail_next + 1) % SV_TAIL_LINES;
  if (p->tail_count < SV_TAIL_LINES) p->tail_count++;
}

/* The coprocess's yield point is the program's state. */
const char *sv_proc_state(sv *s, const sv_proc *p, char *buf, size_t len) {
  mly_info info;
  if (p->machine == 0 || mly_info_get(s->rt, p->machine, &info) < 0)
    return "gone";
  snprintf(buf, len, "%s", info.point);
  if (strcmp(buf, "begin") == 0) snprintf(buf, len, "stopped");
  return buf;
}

/* ---- reconcile: the one place decisions are made ---- */

/* Up: wanted up, or anything of its process tree still there. */
static bool is_up(const sv_proc *p) {
  return p->want_up || p->pid > 0 || p->draining;
}

bool sv_deps_ready(sv *s, const sv_program *g) {
  for (size_t i = 0; i < g->ndeps; i++) {
    sv_proc *d = sv_find(s, g->depends_on[i]);
    if (d == NULL || !d->ready) return false;
  }
  return true;
}

/* Is some program that is up depending on p? */
static bool has_dependent_up(sv *s, const sv_proc *p) {
  for (size_t i = 0; i < s->nprocs; i++) {
    const sv_proc *q = s->procs[i];
    if (q == p || !is_up(q)) continue;
    for (size_t k = 0; k < q->prog->ndeps; k++)
      if (strcmp(q->prog->depends_on[k], p->name) == 0) return true;
  }
  return false;
}

static void send_to(sv *s, sv_proc *p, uint32_t ev) {
  if (p->machine) mly_runtime_send(s->rt, p->machine, ev, NULL);
}

/* Programs never started yet: each waits for its dependencies itself. */
static void start_due(sv *s) {
  if (s->nunlaunched == 0) return; /* no event walks every program */
  for (size_t k = 0; k < s->cfg->nprograms; k++) {
    const sv_program *g = &s->cfg->programs[s->cfg->start_order[k]];
    sv_proc *p = sv_find(s, g->name);
    if (p == NULL || p->launched) continue;
    p->launched = true;
    send_to(s, p, SV_EV_START);
  }
  s->nunlaunched = 0; /* control.c and state.c launch by hand too */
}

/* Coprocesses waiting for dependencies that are ready now. */
static void wake_due(sv *s) {
  for (size_t i = 0; i < s->nprocs; i++) {
    sv_proc *p = s->procs[i];
    if (!p->waiting || !sv_deps_ready(s, p->prog)) continue;
    p->waiting = false; /* it sets it again if it must wait on */
    send_to(s, p, SV_EV_WAKE);
  }
}

/* Stop whatever is up, is to go down, and has no dependent up: in
 * reverse dependency order, at shutdown and for removed programs. */
static void stop_due(sv *s, bool everything) {
  if (!everything && s->nretiring == 0) return;
  for (size_t i = s->nprocs; i-- > 0;) {
    sv_proc *p = s->procs[i];
    if (!(everything || p->retiring) || p->stop_sent || !is_up(p)) continue;
    if (has_dependent_up(s, p)) continue;
    p->stop_sent = true;
    send_to(s, p, SV_EV_STOP);
  }
}

/* Removed programs that are down: end their machine and forget them. */
static void retire_due(sv *s) {
  if (s->nretiring == 0) return;
  for (size_t i = 0; i < s->nprocs;) {
    sv_proc *p = s->procs[i];
    if (!p->retiring || is_up(p)) {
      i++;
      continue;
    }
    /* Its program is down: the machine has nothing left to stop, and it
     * must end now, while the sv_proc it points at still exists. */
    if (p->machine) mly_kill(s->rt, p->machine);
    p->machine = 0;
    sv_state_forget(p);
    sv_logf(s, p->name, "removed");
    sv_proc_remove(s, p);
  }
}

static bool all_down(sv *s) {
  for (size_t i = 0; i < s->nprocs; i++)
    if (is_up(s->procs[i])) return false;
  return true;
}

static void reconcile(sv *s) {
  retire_due(s);
  if (s->stopping) {
    stop_due(s, true);
    return;
  }
  stop_due(s, false);
  start_due(s);
  wake_due(s);
  if (s->cfg->on_fatal == SV_FATAL_SHUTDOWN)
    for (size_t i = 0; i < s->nprocs; i++)
      if (s->procs[i]->fatal && !s->stopping) {
        sv_logf(s, "mealy", "%s is fatal and on_fatal is shutdown: stopping",
                s->procs[i]->name);
        s->exit_status = 1;
        s->stopping = true;
        stop_due(s, true);
      }
}

/* ---- reload ---- */

static int add_program(mly_machine *m, sv *s, const sv_program *g) {
  sv_proc *p = sv_proc_new(s, g);
  if (p == NULL) return MLY_ENOMEM;
  sv_state_attach(s, p);
  int rc = sv_proc_spawn_machine(s, p, m);
  if (rc < 0) sv_proc_remove(s, p);
  return rc < 0 ? rc : 0;
}

/* g is p's definition from now on: the coprocess takes it when no process
 * of p runs, and restarts p for it unless p was stopped by hand. */
static void redefine(sv *s, sv_proc *p, const sv_program *g) {
  p->next_prog = g;
  send_to(s, p, SV_EV_REPLACE);
}

/* One program of the new configuration, g, against what runs as p. */
static void reload_one(sv *s, sv_proc *p, const sv_program *g) {
  const sv_program *cur = p->next_prog ? p->next_prog : p->prog;
  if (g == NULL) {
    if (p->retiring) return;
    sv_logf(s, p->name, "removed from the config: stopping");
    p->retiring = true;
    p->stop_sent = false;
    p->next_prog = NULL;
    return;
  }
  if (p->retiring) { /* back before its old process was down */
    p->retiring = false;
    sv_logf(s, p->name, "back in the config");
    if (p->stop_sent || sv_program_changed(cur, g)) {
      p->stop_sent = false;
      redefine(s, p, g);
    } else {
      p->prog = g; /* never asked to stop: it just stays */
    }
    return;
  }
  if (sv_program_changed(cur, g)) {
    sv_logf(s, p->name, p->held_down
                            ? "changed: the new definition applies at its "
                              "next start (stopped by hand)"
                            : "changed: restarting with the new definition");
    redefine(s, p, g);
  } else if (p->next_prog) {
    p->next_prog = g; /* the same, now in the new config */
  } else {
    p->prog = g;
  }
}

/* SIGHUP reads the file now; `ctl reload` has read it already. */
static void reload(mly_machine *m, sv *s, bool by_ctl) {
  char err[1024];
  sv_config *next = by_ctl ? s->reload_cfg : NULL;
  s->reload_cfg = NULL;
  sv_logf(s, "mealy", "reloading %s", s->config_path);
  int rc = next ? 0 : sv_reload_config(s, &next, err, sizeof err);
  if (rc == 0 && (rc = sv_tree_check_limits(s, next, err, sizeof err)) < 0) {
    sv_config_free(next);
    next = NULL;
  }
  if (rc < 0) {
    sv_logf(s, "mealy", "reload refused, keeping the running config: %s", err);
    s->reload_failed = true;
    return;
  }
  s->reload_failed = false;
  sv_config **old = realloc(s->old_cfgs, (s->nold + 1) * sizeof *old);
  if (old == NULL) {
    sv_config_free(next);
    return;
  }
  s->old_cfgs = old;
  s->old_cfgs[s->nold++] = s->cfg;
  s->nretiring = 0;
  for (size_t i = 0; i < s->nprocs; i++) { /* removed, changed, back */
    reload_one(s, s->procs[i], sv_config_find(next, s->procs[i]->name));
    s->nretiring += s->procs[i]->retiring;
  }
  s->cfg = next;
  for (size_t k = 0; k < next->nprograms; k++) { /* added */
    const sv_program *g = &next->programs[k];
    if (sv_find(s, g->name) != NULL) continue;
    sv_logf(s, g->name, "added to the config");
    add_program(m, s, g);
  }
}

/* ---- the supervisor machine ---- */

typedef struct sup {
  sv *s;
  size_t i;
  uint64_t until_ms;
} sup;

#define SUP_POINTS(X) X(sup, running) X(sup, stopping)
MLY_POINTS(sup, SUP_POINTS);

static int64_t left_ms(uint64_t until) {
  uint64_t now = uv_hrtime() / 1000000u;
  if (until == UINT64_MAX) return -1;
  return until > now ? (int64_t)(until - now) : 0;
}

/* Everything still up goes now, stopping or not: dependents first. */
static void kill_all(sv *s) {
  for (size_t i = s->nprocs; i-- > 0;) {
    sv_proc *p = s->procs[i];
    if (is_up(p)) send_to(s, p, SV_EV_KILL);
  }
}

static const char *signal_word(uint32_t ev) {
  return ev == MLY_EV_SIGNAL(SIGTERM) ? "SIGTERM" : "SIGINT";
}

static void sup_take(mly_machine *m, sv *s) {
  const mly_event *e = mly_current_event(m);
  if (e == NULL) {
    if (mly_shutdown_requested(m)) s->stopping = true;
    return;
  }
  switch (e->id) {
  case MLY_EV_SIGNAL(SIGCHLD):
    sv_tree_chld(s);
    break;
  case MLY_EV_SIGNAL(SIGHUP):
  case SV_EV_RELOAD:
    if (e->id == MLY_EV_SIGNAL(SIGHUP))
      logpipe_reopen_all(s); /* an outside rotation moved them */
    if (s->stopping)
      sv_logf(s, "mealy", "reload ignored: shutting down");
    else
      reload(m, s, e->id == SV_EV_RELOAD);
    break;
  case MLY_EV_SIGNAL(SIGTERM):
  case MLY_EV_SIGNAL(SIGINT):
    if (s->stopping) { /* docker compose's convention: the second one kills */
      sv_logf(s, "mealy", "%s during shutdown: SIGKILL to what is left, now",
              signal_word(e->id));
      kill_all(s);
      break;
    }
    /* FALLTHROUGH */
  case SV_EV_SHUTDOWN:
    if (!s->stopping)
      sv_logf(s, "mealy", "%s: stopping every program in reverse order "
              "(SIGINT or SIGTERM again: kill at once)",
              e->id == SV_EV_SHUTDOWN ? "shutdown requested"
                                      : signal_word(e->id));
    s->stopping = true;
    break;
  default:
    break; /* SV_EV_CHANGED, CHILD_EXIT: reconcile looks at everything */
  }
}

static int sup_run(mly_machine *m, void *data) {
  sup *d = data;
  sv *s = d->s;
  MLY_BEGIN(m);
  static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    mly_signal_watch(m, sigs[i]);
  for (d->i = 0; d->i < s->cfg->nprograms; d->i++)
    if (add_program(m, s, &s->cfg->programs[d->i]) < 0)
      MLY_EXIT(m, 1);
  sv_state_leftovers(s);
  sv_logf(s, "mealy", "supervising %zu programs", s->nprocs);
  reconcile(s);
  sv_manager_check_ready(s);
  while (!s->stopping) {
    MLY_AWAIT_AT(m, sup_running, MLY_EV_ANY, -1);
    sup_take(m, s);
    reconcile(s);
    sv_manager_check_ready(s);
  }
  sv_manager_notify(s, "STOPPING=1\nSTATUS=stopping every program");
  reconcile(s);
  d->until_ms = uv_hrtime() / 1000000u + (uint64_t)s->cfg->shutdown_grace_ms;
  while (!all_down(s)) {
    MLY_AWAIT_AT(m, sup_stopping, MLY_EV_ANY, left_ms(d->until_ms));
    if (mly_timed_out(m)) {
      sv_logf(s, "mealy", "shutdown_grace is over: SIGKILL to what is left");
      kill_all(s);
      d->until_ms = UINT64_MAX;
    }
    sup_take(m, s);
    reconcile(s);
  }
  sv_logf(s, "mealy", "every program is down");
  for (d->i = 0; d->i < s->nprocs; d->i++) sv_state_forget(s->procs[d->i]);
  /* Exiting ends the (idle) coprocess machines too, newest first. */
  MLY_EXIT(m, s->exit_status);
  MLY_END(m);
}

/* The supervisor has ended: nothing is left to control or to log.  Its
 * signal watchers are gone, which restored the default dispositions: a
 * late Ctrl-C must not kill the run while it tears down (exit 0 stays 0). */
static void sup_fini(mly_machine *m, void *data) {
  (void)m;
  sup *d = data;
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  ctl_stop(d->s);
  sv_metrics_stop(d->s);
  sv_notify_end(d->s);
  sv_manager_end(d->s);
  sv_tree_end(d->s);
  logpipe_close_all(d->s);
}

int sup_register(mly_runtime *rt, mly_type **out) {
  return mly_type_register(rt, &(mly_type_def){
      .name = "supervisor", .run = sup_run, MLY_TYPE_POINTS(sup),
      .data_size = sizeof(sup), .version = 1, .fini = sup_fini}, out);
}
