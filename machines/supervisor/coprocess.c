/*
 * coprocess.c - one program's life, as a mealy machine.
 *
 * The seed's Coprocess, made real: wait until what the program depends on
 * is ready, spawn it in its own process group, wait for it to be ready,
 * watch it (its exit arrives as an event; nothing polls), and on a stop
 * request send the stop signal and SIGCONT to the whole group, wait the
 * grace period, then SIGKILL the group.  When it ends by itself, or could
 * not start (spawn error, not ready within start_timeout), one restart
 * policy decides: restart after a backoff that grows (and resets after a
 * stable uptime), or stay down, or go `fatal` when it restarted too often
 * within the intensity window.
 *
 * One life at a time: a process is spawned only when the previous one has
 * been reaped, and every command is taken in every state (a start during
 * a stop means "up again once it is down", a signal reaches a process that
 * is stopping).  A reload's new definition (next_prog) is taken only
 * while no process runs.  Once the supervisor shuts down nothing starts
 * again; SV_EV_KILL ends a life at once, whatever its state.
 *
 * Every place it waits is a named yield point, so `mealy ctl status`
 * shows e.g. "web  backoff  ...".  The machine writes what the supervisor
 * and the control socket need into its sv_proc, and tells the supervisor
 * machine (its parent) with SV_EV_CHANGED.
 *
 * PID reuse: the child's pid is signalled only through
 * mly_process_signal, which refuses a pid that has been reaped.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sv.h"

extern char **environ;

typedef struct coproc {
  sv_proc *p;
  bool exited;          /* the current child has exited */
  int64_t exit_status;
  int term_signal;
  bool failed;          /* it could not start: spawn error, not ready */
  bool stop;            /* end the current life */
  bool again;           /* ...and up again at once (by hand, new definition) */
  bool kill;            /* SIGKILL at once, no grace (shutdown) */
  bool fresh;           /* this life is a start, not a restart */
  bool told_waiting;    /* the current wait for dependencies was logged */
  bool adopted;         /* the child was left by the previous run */
  bool asked;           /* this stop was asked for (not an exit) */
  bool waited_tree;     /* the child exited before the rest of its tree */
  bool killed_tree;     /* the grace ran out */
  bool told_left;       /* the rest of the tree was logged while it drains */
  uint64_t until_ms;    /* deadline of the current phase */
} coproc;

#define COPROC_POINTS(X)                                                   \
  X(coproc, stopped) X(coproc, fatal) X(coproc, starting)                  \
  X(coproc, running) X(coproc, backoff) X(coproc, stopping)                \
  X(coproc, killing) X(coproc, waiting) X(coproc, draining)                 \
  X(coproc, purging)
MLY_POINTS(coproc, COPROC_POINTS);

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

static void changed(mly_machine *m) {
  sv_state_save(((coproc *)mly_machine_data(m))->p);
  mly_send(m, mly_parent(m), SV_EV_CHANGED, NULL);
}

/* ---- spawning ---- */

/* A child's environment, each string ours. */
typedef struct envv {
  char **v;
  size_t n, cap;
  bool failed;
} envv;

static size_t env_find(const envv *e, const char *name) {
  size_t l = strlen(name);
  for (size_t i = 0; i < e->n; i++)
    if (strncmp(e->v[i], name, l) == 0 && e->v[i][l] == '=') return i;
  return SIZE_MAX;
}

static void env_unset(envv *e, const char *name) {
  size_t i = env_find(e, name);
  if (i == SIZE_MAX) return;
  free(e->v[i]);
  e->v[i] = e->v[--e->n];
  e->v[e->n] = NULL;
}

/* name=value (value NULL: kv is "name=value" already, from environ) */
static void env_put(envv *e, const char *name, const char *value) {
  if (e->failed) return;
  char *kv = NULL;
  if (value ? asprintf(&kv, "%s=%s", name, value) < 0
            : (kv = strdup(name)) == NULL) {
    e->failed = true;
    return;
  }
  if (value) env_unset(e, name);
  if (e->n + 2 > e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 32;
    char **v = realloc(e->v, cap * sizeof *v);
    if (v == NULL) {
      free(kv);
      e->failed = true;
      return;
    }
    e->v = v;
    e->cap = cap;
  }
  e->v[e->n++] = kv;
  e->v[e->n] = NULL;
}

static void free_env(char **env) {
  if (env == NULL) return;
  for (size_t i = 0; env[i]; i++) free(env[i]);
  free(env);
}

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* What the program's environment is, from the bottom: the supervisor's
 * own (env_inherit, the default) or only PATH; then, with user:, that
 * user's HOME, USER, LOGNAME and SHELL; then env: sets and unsets; then
 * the marker MEALY_PROGRAM that attributes its processes to it. */
static char **build_env(const sv_program *g, const char *marker,
                        const sv_proc *p, const char *notify) {
  envv e = {.v = calloc(32, sizeof(char *)), .cap = 32};
  e.failed = e.v == NULL;
  if (g->env_inherit) {
    for (size_t i = 0; environ[i]; i++) env_put(&e, environ[i], NULL);
  } else {
    const char *path = getenv("PATH");
    env_put(&e, "PATH", path && *path ? path : DEFAULT_PATH);
  }
  if (g->has_uid) { /* never root's HOME for another user */
    env_put(&e, "HOME", g->home ? g->home : "/");
    if (g->login) {
      env_put(&e, "USER", g->login);
      env_put(&e, "LOGNAME", g->login);
      env_put(&e, "SHELL", g->shell_path);
    } else { /* a numeric id without a passwd entry */
      env_unset(&e, "USER");
      env_unset(&e, "LOGNAME");
      env_unset(&e, "SHELL");
    }
  }
  for (size_t j = 0; j < g->nenv; j++) {
    if (g->env[j].value) env_put(&e, g->env[j].name, g->env[j].value);
    else env_unset(&e, g->env[j].name);
  }
  /* the supervisor's own manager's, never passed on; the program's own
   * socket (notify.c) when it has one */
  env_unset(&e, "NOTIFY_SOCKET");
  env_unset(&e, "WATCHDOG_USEC");
  env_unset(&e, "WATCHDOG_PID");
  if (notify[0]) env_put(&e, "NOTIFY_SOCKET", notify);
  if (notify[0] && sv_watchdog_ms(p) > 0) {
    char usec[32];
    snprintf(usec, sizeof usec, "%lld", (long long)sv_watchdog_ms(p) * 1000);
    env_put(&e, "WATCHDOG_USEC", usec);
  }
  env_put(&e, SV_MARKER, marker); /* last: the supervisor's (tree.c) */
  if (e.failed) {
    free_env(e.v);
    return NULL;
  }
  return e.v;
}

static int spawn_child(mly_machine *m, coproc *c, mly_spawn_step *step) {
  sv_proc *p = c->p;
  const sv_program *g = p->prog;
  sv_logpipe *out = NULL, *err = NULL;
  int out_fd = -1, err_fd = -1, notify_fd = -1;
  int rc = logpipe_open(p->sv, p, LP_STDOUT, &out_fd, &out);
  if (rc == 0) rc = logpipe_open(p->sv, p, LP_STDERR, &err_fd, &err);
  if (rc == 0 && g->ready == SV_READY_NOTIFY)
    rc = logpipe_open(p->sv, p, LP_NOTIFY, &notify_fd, &p->notify);
  char marker[128], notify[128] = "";
  sv_notify_reset(p);
  if (rc == 0) rc = sv_notify_prepare(p, notify, sizeof notify);
  if (rc == 0) rc = sv_tree_prepare(p);
  sv_tree_marker(p, marker, sizeof marker);
  char **env = rc == 0 ? build_env(g, marker, p, notify) : NULL;
  if (rc == 0 && env == NULL) rc = MLY_ENOMEM;
  if (rc == 0) {
    mly_process_options o = {
        .argv = (const char *const *)g->argv,
        .env = (const char *const *)env,
        .cwd = g->cwd,
        .new_group = true,
        .set_uid = g->has_uid, .uid = g->uid,
        .set_gid = g->has_gid, .gid = g->gid,
        .groups = g->groups, .ngroups = g->ngroups,
        .failed_step = step,
        /* with a watchdog: whose it is (sd_watchdog_enabled(3)) */
        .pid_env = notify[0] && sv_watchdog_ms(p) > 0 ? "WATCHDOG_PID" : NULL,
    };
    o.stdio[0].mode = MLY_STDIO_NULL;
    o.stdio[1].mode = MLY_STDIO_FD;
    o.stdio[1].fd = out_fd;
    o.stdio[2].mode = MLY_STDIO_FD;
    o.stdio[2].fd = err_fd;
    if (notify_fd >= 0) {
      o.extra[0].child_fd = g->notify_fd;
      o.extra[0].fd = notify_fd;
      o.nextra = 1;
    }
    int pid = 0;
    rc = sv_tree_spawn(p, m, &o, &pid);
    if (rc == 0) sv_proc_set_pid(p, pid);
    p->pgid = pid; /* its own session and group */
  }
  free_env(env);
  /* the parent keeps only the read ends */
  if (out) logpipe_spawned(out);
  if (err) logpipe_spawned(err);
  if (p->notify) logpipe_spawned(p->notify);
  if (rc < 0) {
    sv_proc_set_pid(p, 0);
    if (p->notify) logpipe_detach(p->notify);
    p->notify = NULL;
  }
  return rc;
}

/* Which step of a spawn failed, as the child reported it, said with the
 * system's words: "cannot chdir to /x: No such file or directory", not
 * "cannot start /bin/pwd: no such entry". */
static const char *spawn_failure(const sv_program *g, int rc,
                                 mly_spawn_step step, char *buf, size_t len) {
  const char *why = rc > -4096 && rc < 0 ? strerror(-rc) : mly_strerror(rc);
  switch (step) {
  case MLY_SPAWN_CHDIR:
    snprintf(buf, len, "cannot chdir to %s: %s", g->cwd, why);
    break;
  case MLY_SPAWN_IDS:
    snprintf(buf, len, "cannot switch to user %s, group %s: %s",
             g->user ? g->user : "(unchanged)",
             g->group ? g->group : "(the user's)", why);
    break;
  case MLY_SPAWN_EXEC:
    snprintf(buf, len, "cannot execute %s: %s", g->argv[0], why);
    break;
  case MLY_SPAWN_SESSION:
  case MLY_SPAWN_FDS:
    snprintf(buf, len, "cannot set up %s for %s: %s",
             step == MLY_SPAWN_FDS ? "the file descriptors" : "a session",
             g->argv[0], why);
    break;
  default:
    snprintf(buf, len, "cannot start %s: %s", g->argv[0], why);
    break;
  }
  return buf;
}

/* ---- stopping ---- */

/* The child is gone; what is left of its tree is stopped after this. */
static void child_gone(coproc *c) {
  sv_proc *p = c->p;
  sv_proc_set_pid(p, 0);
  p->ready = false;
  p->main_pid = 0;
  if (p->notify) logpipe_detach(p->notify);
  p->notify = NULL;
}

/* A child the previous run left alive: watch it, do not start another.
 * With `orphans: stop` it is then stopped and started afresh. */
static bool adopt(mly_machine *m, coproc *c) {
  sv_proc *p = c->p;
  int pid = p->adopt_pid;
  p->adopt_pid = 0;
  int rc = mly_process_adopt(m, pid, p->adopt_start);
  if (rc < 0) {
    sv_logf(p->sv, p->name, "pid %d of the previous run is gone (%s): "
            "starting anew", pid, mly_strerror(rc));
    return false;
  }
  sv_proc_set_pid(p, pid);
  p->pgid = pid;
  sv_tree_prepare(p); /* its cgroup, if the previous run made it */
  p->start_time = p->adopt_start;
  logpipe_adopt(p->sv, p); /* what it wrote meanwhile waits in its FIFOs */
  sv_notify_reset(p);
  sv_notify_prepare(p, NULL, 0); /* the same path: its WATCHDOG=1 arrive */
  sv_logf(p->sv, p->name, "adopted pid %d, left running by the previous run",
          pid);
  if (p->adopt_to_stop) { /* kept down: its stop was cut short */
    p->adopt_to_stop = false;
    sv_logf(p->sv, p->name, "kept down: stopping what the previous run "
            "left of it");
    c->stop = true;
    p->want_up = false;
  } else if (p->sv->cfg->orphans == SV_ORPHANS_STOP) {
    sv_logf(p->sv, p->name, "orphans: stop: stopping it, to start afresh");
    c->stop = true;
    c->again = true;
  }
  return true;
}

static void note_exit(coproc *c, const mly_event *e) {
  sv_proc *p = c->p;
  c->exited = true;
  c->exit_status = e->status;
  c->term_signal = (int)e->aux;
  p->has_exit = true;
  p->last_exit = (int)e->status;
  p->last_signal = (int)e->aux;
  if (c->term_signal)
    sv_logf(p->sv, p->name, "exited: killed by SIG%s",
            sv_signal_name(c->term_signal));
  else if (c->exit_status < 0)
    sv_logf(p->sv, p->name, "exited (status unknown: an adopted child is not "
            "ours to wait for)");
  else
    sv_logf(p->sv, p->name, "exited with status %d", (int)c->exit_status);
  child_gone(c);
  /* a SIGCHLD may have found this child's zombie first and left the
   * orphans behind it: now that it is reaped, they can be */
  reaper_reap_orphans(p->sv);
}

/* The process it started exited, and it named another as its main
 * process (MAINPID=, a daemon that forked): that one is watched from now
 * on, through a pidfd (it is not our child), as the program's life. */
static bool follow_main(mly_machine *m, coproc *c, const mly_event *e) {
  sv_proc *p = c->p;
  int main_pid = p->main_pid;
  if (main_pid <= 0 || main_pid == (int)e->corr || (int)e->corr != p->pid ||
      c->stop)
    return false;
  int rc = mly_process_adopt(m, main_pid, p->main_start);
  if (rc < 0) {
    sv_logf(p->sv, p->name, "its main process %d (MAINPID) is gone too",
            main_pid);
    return false;
  }
  if (e->aux)
    sv_logf(p->sv, p->name, "pid %d was killed by SIG%s; its main process "
            "is pid %d (MAINPID): watching that", (int)e->corr,
            sv_signal_name((int)e->aux), main_pid);
  else
    sv_logf(p->sv, p->name, "pid %d exited with status %d; its main process "
            "is pid %d (MAINPID): watching that", (int)e->corr,
            (int)e->status, main_pid);
  sv_proc_set_pid(p, main_pid);
  p->start_time = p->main_start;
  reaper_reap_orphans(p->sv);
  changed(m); /* a state directory keeps it: the next run adopts it */
  return true;
}

/* The watchdog: no WATCHDOG=1 within the interval, or WATCHDOG=trigger.
 * A failure like an exit: stop it, then the restart policy. */
static void watchdog_failed(coproc *c, const char *why) {
  sv_proc *p = c->p;
  if (p->pid <= 0 || c->stop || c->exited) return;
  p->wd_expired++;
  sv_logf(p->sv, p->name, "watchdog: %s: it has failed; stopping it", why);
  c->failed = true;
  c->stop = true;
  c->again = false;
}

/* Started by hand after giving up, or given a new definition: a fresh
 * start, as if never failed (systemd's reset-failed): the intensity window
 * and the backoff begin again. */
static void clear_fatal(sv_proc *p) {
  if (!p->fatal) return;
  p->fatal = false;
  p->nrestart_times = 0;
  p->cur_backoff_ms = 0;
}

static void want_up(sv_proc *p) {
  p->held_down = false;
  p->want_up = true;
  clear_fatal(p);
}

/* A reload's new definition, taken while no process runs. */
static void take_definition(sv_proc *p) {
  if (p->next_prog == NULL || p->pid > 0) return;
  p->prog = p->next_prog;
  p->next_prog = NULL;
  p->fatal = false;
  p->nrestart_times = 0;
  p->cur_backoff_ms = 0;
}

/* A command from the supervisor or the control socket, or the child's
 * exit.  Every state takes every command; the flags say what is due. */
static void take_command(mly_machine *m, coproc *c) {
  const mly_event *e = mly_current_event(m);
  sv_proc *p = c->p;
  if (e == NULL) {
    if (mly_shutdown_requested(m)) {
      p->want_up = false;
      c->stop = true;
      c->again = false;
    }
    return;
  }
  switch (e->id) {
  case SV_EV_START: /* nothing starts once shutdown has begun */
    if (p->sv->stopping) break;
    want_up(p);
    if (c->stop) c->again = true; /* stopping: up again once it is down */
    break;
  case SV_EV_REPLACE: /* stopped by hand: the new definition waits */
    if (p->held_down) break;
    /* FALLTHROUGH */
  case SV_EV_RESTART:
    if (p->sv->stopping) break;
    want_up(p);
    c->stop = true;
    c->again = true;
    break;
  case SV_EV_STOP:
    p->want_up = false;
    c->stop = true;
    c->again = false;
    break;
  case SV_EV_KILL:
    p->want_up = false;
    c->stop = true;
    c->kill = true;
    c->again = false;
    break;
  case SV_EV_SIGNAL: {
    int64_t sig = 0;
    if (p->pid > 0 && mly_value_get_int(e->payload, &sig) == 0)
      mly_process_signal(mly_machine_runtime(m), p->pid, (int)sig, true);
    break;
  }
  case MLY_EV_PROCESS_EXIT:
    if (!follow_main(m, c, e)) note_exit(c, e);
    break;
  case SV_EV_WATCHDOG:
    watchdog_failed(c, "WATCHDOG=trigger");
    break;
  default:
    break; /* SV_EV_WAKE, a readiness line out of turn */
  }
}

/* ---- restart policy ---- */

/* After a life that ended by itself or could not start. */
static bool wants_restart(const coproc *c) {
  const sv_program *g = c->p->prog;
  if (g->restart == SV_RESTART_ALWAYS) return true;
  if (g->restart == SV_RESTART_NEVER) return false;
  if (c->failed || c->term_signal) return true;
  for (size_t i = 0; i < g->nsuccess; i++)
    if (g->success_codes[i] == c->exit_status) return false;
  return true;
}

/* Too many restarts within the window?  Records this one if not. */
static bool intensity_exceeded(sv_proc *p) {
  const sv_program *g = p->prog;
  uint64_t now = now_ms();
  uint32_t keep = 0;
  for (uint32_t i = 0; i < p->nrestart_times; i++)
    if (now - p->restart_times[i] < (uint64_t)g->intensity.within_ms)
      p->restart_times[keep++] = p->restart_times[i];
  p->nrestart_times = keep;
  if (keep >= g->intensity.max_restarts) return true;
  uint64_t *t = realloc(p->restart_times, (keep + 1) * sizeof *t);
  if (t == NULL) return true; /* out of memory: do not loop restarting */
  p->restart_times = t;
  p->restart_times[p->nrestart_times++] = now;
  return false;
}

static double rand_unit(sv *s) { /* xorshift64*, in [-1, 1] */
  s->rng ^= s->rng >> 12;
  s->rng ^= s->rng << 25;
  s->rng ^= s->rng >> 27;
  uint64_t r = s->rng * 2685821657736338717ull;
  return (double)(r >> 11) / (double)(1ull << 52) - 1.0;
}

static int64_t next_backoff(sv_proc *p) {
  const sv_program *g = p->prog;
  if (now_ms() - p->started_ms >= (uint64_t)g->backoff.reset_after_ms)
    p->cur_backoff_ms = 0; /* it ran long enough: start over */
  int64_t d = p->cur_backoff_ms == 0
                  ? g->backoff.initial_ms
                  : (int64_t)((double)p->cur_backoff_ms * g->backoff.multiplier);
  if (d > g->backoff.max_ms) d = g->backoff.max_ms;
  p->cur_backoff_ms = d;
  if (g->backoff.jitter > 0)
    d += (int64_t)((double)d * g->backoff.jitter * rand_unit(p->sv));
  if (d < 0) d = 0;
  p->last_backoff_ms = d;
  if (p->nbackoffs == p->backoff_cap) {
    size_t cap = p->backoff_cap ? p->backoff_cap * 2 : 16;
    int64_t *b = realloc(p->backoffs, cap * sizeof *b);
    if (b != NULL) {
      p->backoffs = b;
      p->backoff_cap = cap;
    }
  }
  if (p->nbackoffs < p->backoff_cap) p->backoffs[p->nbackoffs++] = d;
  return d;
}

static int64_t left_ms(const coproc *c) {
  uint64_t now = now_ms();
  return c->until_ms > now ? (int64_t)(c->until_ms - now) : 0;
}

/* ---- what is left of a tree ---- */

#define KILL_WAIT_MS 5000 /* after SIGKILL: only an unkillable one stays */

/* A cgroup says when it empties; a process group is looked at again on
 * each SIGCHLD, and now and then in case a member's exit told nobody.
 * Either way it is looked at again at least every second while a stop
 * waits (never when idle): a lost notification costs a second, not the
 * rest of the grace. */
static int64_t tree_wait_ms(const coproc *c) {
  int64_t left = left_ms(c), most = c->p->tree_evented ? 1000 : 200;
  return left < most ? left : most;
}

/* Logs fmt with the tree's pids (and, for the second form, the wait). */
static void log_leftovers(coproc *c, const char *fmt) {
  sv_proc *p = c->p;
  int pids[32];
  char list[32 * 12 + 32] = "";
  size_t n = sv_tree_pids(p, pids, 32), at = 0;
  for (size_t i = 0; i < n && at < sizeof list - 12; i++)
    at += (size_t)snprintf(list + at, sizeof list - at, "%s%d", i ? " " : "",
                           pids[i]);
  if (n == 0) snprintf(list, sizeof list, "(none found)");
  else if (n == 32) snprintf(list + at, sizeof list - at, " and more");
  if (strstr(fmt, "still there"))
    sv_logf(p->sv, p->name, fmt, KILL_WAIT_MS, p->pgid, list);
  else
    sv_logf(p->sv, p->name, fmt, p->pgid, list);
}

/* ---- the machine ---- */

static bool is_stopping(const coproc *c) { return c->p->sv->stopping; }

/* How long `starting` lasts: < 0 no limit, 0 not at all.  A function, not
 * a local: a local does not survive the wait in the loop that tests it
 * (-Wjump-misses-init found it). */
static int64_t start_wait_ms(const sv_program *g) {
  if (g->ready == SV_READY_DELAY) return g->ready_delay_ms;
  if (g->ready == SV_READY_NOTIFY || g->ready == SV_READY_SD_NOTIFY)
    return g->start_timeout_ms > 0 ? g->start_timeout_ms : -1;
  return g->start_timeout_ms;
}

/* Until the watchdog's deadline: < 0 none (or STOPPING=1 said). */
static int64_t watchdog_left_ms(const sv_proc *p) {
  int64_t every = sv_watchdog_ms(p);
  if (every <= 0 || p->sd_stopping) return -1;
  uint64_t due = p->wd_last_ms + (uint64_t)every, now = now_ms();
  return due > now ? (int64_t)(due - now) : 0;
}

static void log_waiting_for_deps(sv_proc *p) {
  char names[512] = "";
  size_t n = 0;
  for (size_t i = 0; i < p->prog->ndeps; i++) {
    const char *d = p->prog->depends_on[i];
    sv_proc *q = sv_find(p->sv, d);
    if (q && q->ready) continue;
    int w = snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "", d);
    if (w < 0 || (size_t)w >= sizeof names - n) break;
    n += (size_t)w;
  }
  sv_logf(p->sv, p->name, "waiting for %s to be ready", names);
}

static void spawn_or_adopt(mly_machine *m, coproc *c) {
  sv_proc *p = c->p;
  c->exited = c->stop = c->again = c->kill = c->failed = false;
  p->started_ms = now_ms();
  c->adopted = p->adopt_pid > 0 && adopt(m, c);
  if (c->adopted) return;
  mly_spawn_step step = MLY_SPAWN_PREPARE;
  int rc = spawn_child(m, c, &step);
  if (rc < 0) { /* a failed start, for the restart policy */
    char why[512];
    sv_logf(p->sv, p->name, "%s", spawn_failure(p->prog, rc, step, why,
                                                sizeof why));
    c->exited = true;
    c->failed = true;
    c->exit_status = 127;
    c->term_signal = 0;
    p->has_exit = true;
    p->last_exit = 127;
    p->last_signal = 0;
    return;
  }
  sv_logf(p->sv, p->name, "started, pid %d", p->pid);
  if (mly_process_start_time(p->pid, &p->start_time) < 0)
    p->start_time = 0; /* gone already: its exit is on the way */
}

static int coproc_run(mly_machine *m, void *data) {
  coproc *c = data;
  sv_proc *p = c->p;
  MLY_BEGIN(m);
  for (;;) {
    /* ---- down, until started ---- */
    p->ready = false;
    while (!p->want_up) {
      take_definition(p);
      if (p->fatal)
        MLY_AWAIT_AT(m, coproc_fatal, MLY_EV_ANY, -1);
      else
        MLY_AWAIT_AT(m, coproc_stopped, MLY_EV_ANY, -1);
      if (mly_shutdown_requested(m)) MLY_EXIT(m, 0);
      c->stop = c->again = false;
      take_command(m, c);
      if (p->want_up) changed(m);
    }
    c->fresh = true;
    /* ---- one life after another, while it is wanted up ---- */
    while (p->want_up && !is_stopping(c)) {
      /* ---- waiting for its dependencies (an adopted child is up) ---- */
      take_definition(p);
      c->told_waiting = false;
      c->stop = c->again = false;
      while (p->adopt_pid == 0 && p->want_up && !is_stopping(c) &&
             !sv_deps_ready(p->sv, p->prog)) {
        if (!c->told_waiting) {
          log_waiting_for_deps(p);
          c->told_waiting = true;
        }
        p->waiting = true; /* the supervisor wakes it (SV_EV_WAKE) */
        changed(m);
        MLY_AWAIT_AT(m, coproc_waiting, MLY_EV_ANY, -1);
        take_command(m, c);
        take_definition(p); /* a REPLACE meanwhile: no process runs */
      }
      p->waiting = false;
      if (!p->want_up || is_stopping(c)) break;
      if (p->adopt_pid == 0 && (c->fresh || c->told_waiting))
        sv_logf(p->sv, p->name, "starting%s",
                p->prog->ndeps ? " (dependencies ready)" : "");
      c->fresh = false;
      /* ---- spawn ---- */
      spawn_or_adopt(m, c);
      changed(m);
      /* ---- starting: until ready (an adopted child was ready) ---- */
      if (!c->exited && !c->stop && !c->adopted) {
        if (start_wait_ms(p->prog) < 0 && p->prog->ready == SV_READY_NOTIFY)
          sv_logf(p->sv, p->name, "waiting for its readiness line on fd %d "
                  "(no start_timeout: as long as it takes)", p->prog->notify_fd);
        else if (start_wait_ms(p->prog) < 0)
          sv_logf(p->sv, p->name, "waiting for READY=1 on its NOTIFY_SOCKET "
                  "(no start_timeout: as long as it takes)");
        c->until_ms = now_ms() + (uint64_t)(start_wait_ms(p->prog) > 0
                                                ? start_wait_ms(p->prog) : 0);
        while (start_wait_ms(p->prog) != 0 && !c->exited && !c->stop) {
          MLY_AWAIT_AT(m, coproc_starting, MLY_EV_ANY,
                       start_wait_ms(p->prog) < 0 ? -1 : left_ms(c));
          if (mly_timed_out(m)) {
            if (p->prog->ready == SV_READY_NOTIFY ||
                p->prog->ready == SV_READY_SD_NOTIFY) {
              sv_logf(p->sv, p->name, "not ready within %lld ms: a failed "
                      "start, stopping it",
                      (long long)p->prog->start_timeout_ms);
              c->failed = true;
              c->stop = true;
            }
            break;
          }
          if (mly_current_event(m) &&
              mly_current_event(m)->id == SV_EV_NOTIFIED)
            break;
          take_command(m, c);
        }
        if (!c->exited && !c->stop) {
          p->ready = true;
          sv_logf(p->sv, p->name, "ready");
          changed(m);
        }
      } else if (!c->exited && !c->stop) {
        p->ready = true;
        changed(m);
      }
      /* ---- running (the watchdog counts from here) ---- */
      p->wd_last_ms = now_ms();
      while (!c->exited && !c->stop) {
        MLY_AWAIT_AT(m, coproc_running, MLY_EV_ANY, watchdog_left_ms(p));
        if (mly_timed_out(m)) {
          if (watchdog_left_ms(p) == 0) watchdog_failed(c, "no WATCHDOG=1 "
                                                        "within the interval");
          continue;
        }
        take_command(m, c);
      }
      /* ---- stopping: signal, grace, kill; the whole tree; commands
       * still count.  Asked to stop, or the child exited and left
       * processes behind: the tree gets the stop signal and the grace
       * period to empty (tree.c) ---- */
      p->ready = false;
      c->asked = !c->exited;
      c->waited_tree = c->killed_tree = c->told_left = false;
      if (c->asked || !sv_tree_empty(p)) {
        sv_tree_drain(p, true);
        if (!c->kill) {
          sv_logf(p->sv, p->name, "%s: SIG%s to group %d, grace %lld ms",
                  c->asked ? "stopping" : "processes of it are left",
                  sv_signal_name(p->prog->stop_signal), p->pgid,
                  (long long)p->prog->stop_grace_ms);
          sv_tree_signal(p, p->prog->stop_signal);
          sv_tree_signal(p, SIGCONT);
          changed(m);
          c->until_ms = now_ms() + (uint64_t)p->prog->stop_grace_ms;
          while (!c->exited && !c->kill) {
            MLY_AWAIT_AT(m, coproc_stopping, MLY_EV_ANY, left_ms(c));
            if (mly_timed_out(m)) break;
            take_command(m, c);
          }
          /* the rest of the tree keeps the rest of the grace */
          while (c->exited && !c->kill && left_ms(c) > 0 && !sv_tree_empty(p)) {
            if (c->waited_tree && !c->told_left &&
                (uint64_t)p->prog->stop_grace_ms - (uint64_t)left_ms(c) >= 5000) {
              c->told_left = true; /* once: who holds the stop up */
              log_leftovers(c, "its main process is gone; the rest of group "
                            "%d is within the grace: pids %s");
            }
            c->waited_tree = true;
            sv_tree_signal_new(p); /* orphaned by the exits since the stop */
            MLY_AWAIT_AT(m, coproc_draining, MLY_EV_ANY, tree_wait_ms(c));
            if (!mly_timed_out(m)) take_command(m, c);
          }
        }
        if (!c->exited || !sv_tree_empty(p)) {
          c->killed_tree = true;
          log_leftovers(c, c->kill ? "SIGKILL to group %d now (shutdown), pids %s"
                                   : "grace over: SIGKILL to group %d, pids %s");
          sv_tree_signal(p, SIGKILL);
          changed(m);
          while (!c->exited) {
            MLY_AWAIT_AT(m, coproc_killing, MLY_EV_ANY, -1);
            take_command(m, c);
          }
          c->until_ms = now_ms() + KILL_WAIT_MS;
          while (left_ms(c) > 0 && !sv_tree_empty(p)) {
            sv_tree_signal(p, SIGKILL); /* orphans it handed over since */
            MLY_AWAIT_AT(m, coproc_purging, MLY_EV_ANY, tree_wait_ms(c));
            if (!mly_timed_out(m)) take_command(m, c);
          }
          if (!sv_tree_empty(p))
            log_leftovers(c, "still there %d ms after SIGKILL to group %d, "
                          "left behind: pids %s");
        }
        if (!c->killed_tree && c->waited_tree)
          sv_logf(p->sv, p->name, "the rest of its processes have ended");
        sv_tree_drain(p, false);
      }
      changed(m);
      /* ---- it is down: up again? ---- */
      if (!p->want_up || is_stopping(c)) break;
      if (!c->again) { /* ended by itself, or failed to start */
        if (!wants_restart(c)) {
          sv_logf(p->sv, p->name, "not restarting (restart: %s)",
                  p->prog->restart == SV_RESTART_NEVER ? "never"
                                                       : "on-failure");
          p->want_up = false;
          break;
        }
        if (intensity_exceeded(p)) {
          sv_logf(p->sv, p->name, "fatal: more than %u restarts within "
                  "%lld ms; staying down until started by hand",
                  p->prog->intensity.max_restarts,
                  (long long)p->prog->intensity.within_ms);
          p->fatal = true;
          p->want_up = false;
          break;
        }
        { /* d does not live across the wait below */
          int64_t d = next_backoff(p);
          sv_logf(p->sv, p->name, "restarting in %lld ms", (long long)d);
          changed(m);
          c->until_ms = now_ms() + (uint64_t)d;
        }
        for (;;) {
          MLY_AWAIT_AT(m, coproc_backoff, MLY_EV_ANY, left_ms(c));
          if (mly_timed_out(m)) break;
          take_command(m, c);
          /* stopped, restarted by hand (now), or shutdown */
          if (!p->want_up || c->again || is_stopping(c)) break;
        }
        if (!p->want_up || is_stopping(c)) break;
      }
      p->restarts++;
    }
    p->want_up = false;
    changed(m);
  }
  MLY_END(m);
}

static void coproc_fini(mly_machine *m, void *data) {
  (void)m;
  coproc *c = data;
  if (c->p->notify) logpipe_detach(c->p->notify);
  c->p->notify = NULL;
}

int coproc_register(mly_runtime *rt, mly_type **out) {
  return mly_type_register(rt, &(mly_type_def){
      .name = "coprocess", .run = coproc_run, MLY_TYPE_POINTS(coproc),
      .data_size = sizeof(coproc), .version = 1, .fini = coproc_fini}, out);
}

const char *const *coproc_states(size_t *n) {
  *n = coproc__npoints - 1; /* "begin" is said "stopped" (sv_proc_state) */
  return coproc_points + 1;
}

int sv_proc_spawn_machine(sv *s, sv_proc *p, mly_machine *parent) {
  coproc c = {.p = p};
  (void)s;
  return mly_spawn_child(parent, s->coproc_type, &c, sizeof c, &p->machine);
}
