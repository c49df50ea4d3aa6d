/*
 * control.c - the supervisor's methods on its control socket.
 *
 * The socket itself, its bounds and its checks are rpc.c's, shared with
 * every host of mealy; here are the methods (each documented, with its
 * params and result, in the README's "Control socket" section):
 *
 *   status [NAME...]      -> [{name, state, pid, uptime_ms, restarts,
 *                             last_exit, last_signal, ready, fatal,
 *                             backoff_ms, backoffs}, ...]
 *   start|stop|restart [NAME] -> "ok"
 *   signal [SIG, NAME]    -> "ok"
 *   reload []             -> "ok" (the file is checked first: an invalid
 *                            file is an error answer, nothing changes)
 *   shutdown []           -> "ok"
 *   tail [NAME, N]        -> the last N lines (at most 200) it wrote, as
 *                            the bytes it wrote (a str that may hold NULs)
 *   reopen []             -> "ok": every log file is opened again
 *   metrics []            -> the Prometheus text format 0.0.4 (a str):
 *                            the supervisor's figures and its runtime's
 *
 * The socket's mode is the config's socket_mode, its bounds
 * control_max_clients and control_timeout.  What is refused or closed is
 * logged, rate-limited per kind (svlog.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"
#include "sv.h"

typedef struct ctl {
  sv *s;
  rpc_server *srv;
  sv_ratelimit rl[RPC_LOG_INFO];
} ctl;

/* ---- methods ---- */

/* Stopped by a signal (SIGSTOP, SIGTSTP, a debugger): its machine still
 * says running, /proc says 'T' or 't'. */
static bool stopped_by_signal(int pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "re");
  if (f == NULL) return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *e = strrchr(buf, ')'); /* the name may hold anything */
  return e && e[1] == ' ' && (e[2] == 'T' || e[2] == 't');
}

static mly_value *proc_status(sv *s, const sv_proc *p) {
  char state[32];
  mly_value *m = mly_value_map();
  mly_map_set_str(m, "name", p->name);
  const char *st = sv_proc_state(s, p, state, sizeof state);
  if (p->pid > 0 && stopped_by_signal(p->pid)) st = "stopped (signal)";
  mly_map_set_str(m, "state", st);
  mly_map_set_int(m, "pid", p->pid);
  uint64_t now = uv_hrtime() / 1000000u;
  mly_map_set_int(m, "uptime_ms", p->pid > 0 ? (int64_t)(now - p->started_ms) : 0);
  mly_map_set_uint(m, "restarts", p->restarts);
  if (p->has_exit && p->last_signal == 0)
    mly_map_set_int(m, "last_exit", p->last_exit);
  else
    mly_map_set(m, "last_exit", mly_value_nil());
  if (p->has_exit && p->last_signal != 0)
    mly_map_set_str(m, "last_signal", sv_signal_name(p->last_signal));
  else
    mly_map_set(m, "last_signal", mly_value_nil());
  mly_map_set_bool(m, "ready", p->ready);
  mly_map_set_bool(m, "fatal", p->fatal);
  mly_map_set_int(m, "backoff_ms", p->last_backoff_ms);
  mly_value *b = mly_value_array();
  for (size_t i = 0; i < p->nbackoffs; i++)
    mly_array_push(b, mly_value_int(p->backoffs[i]));
  mly_map_set(m, "backoffs", b);
  /* sd_notify (notify.c): what the program said of itself */
  mly_map_set_str(m, "status", p->status);
  mly_map_set_int(m, "main_pid", p->main_pid);
  mly_map_set_bool(m, "reloading", p->sd_reloading);
  mly_map_set_bool(m, "stopping", p->sd_stopping);
  mly_map_set_int(m, "errno", p->sd_errno);
  mly_map_set_uint(m, "watchdog_kicks", p->wd_kicks);
  mly_map_set_uint(m, "watchdog_expired", p->wd_expired);
  mly_map_set_uint(m, "notify_accepted", p->sd_accepted);
  mly_map_set_uint(m, "notify_refused", p->sd_refused);
  return m;
}

/* "no such program 'x'": err gets it, naming what was asked (the
 * client's own string, cut short; ctl escapes what it prints). */
static const char *no_such(const char *name, char *err, size_t errlen) {
  if (name == NULL) return "a program name is needed (a string)";
  snprintf(err, errlen, "no such program '%.64s'%s", name,
           strlen(name) > 64 ? "..." : "");
  return err;
}

static const char *do_status(sv *s, const mly_value *params, mly_value **res,
                             char *err, size_t errlen) {
  mly_value *list = mly_value_array();
  size_t n = mly_value_len(params);
  for (size_t i = 0; i < n; i++) {
    const char *name = rpc_arg_str(params, i);
    if (name == NULL || sv_find(s, name) == NULL) {
      mly_value_free(list);
      return no_such(name, err, errlen);
    }
  }
  for (size_t i = 0; i < s->nprocs; i++) {
    const sv_proc *p = s->procs[i];
    bool wanted = n == 0; /* a removed program is listed until it is down */
    for (size_t k = 0; k < n && !wanted; k++)
      wanted = sv_find(s, rpc_arg_str(params, k)) == p;
    if (wanted) mly_array_push(list, proc_status(s, p));
  }
  *res = list;
  return NULL;
}

static const char *do_command(sv *s, const char *method,
                              const mly_value *params, char *err,
                              size_t errlen) {
  bool is_signal = strcmp(method, "signal") == 0;
  const char *name = rpc_arg_str(params, is_signal ? 1 : 0);
  sv_proc *p = name ? sv_find(s, name) : NULL;
  if (name == NULL) return "a program name is needed";
  if (p == NULL || p->machine == 0) return no_such(name, err, errlen);
  if (is_signal) {
    const char *sig = rpc_arg_str(params, 0);
    int signum = sig ? sv_signal_number(sig) : -1;
    if (signum <= 0) return "unknown signal name";
    if (p->pid <= 0) return "the program is not running";
    mly_runtime_send(s->rt, p->machine, SV_EV_SIGNAL, mly_value_int(signum));
    return NULL;
  }
  uint32_t ev = strcmp(method, "start") == 0  ? SV_EV_START
                : strcmp(method, "stop") == 0 ? SV_EV_STOP
                                              : SV_EV_RESTART;
  if (s->stopping && ev != SV_EV_STOP) return "the supervisor is shutting down";
  if (p->retiring && ev != SV_EV_STOP)
    return "removed from the configuration: it is stopping, and goes once down";
  p->launched = true; /* by hand: the supervisor no longer waits for it */
  p->held_down = ev == SV_EV_STOP; /* kept down, even across a crash */
  mly_runtime_send(s->rt, p->machine, ev, NULL);
  sv_logf(s, p->name, "%s requested through the control socket", method);
  return NULL;
}

/* The file is read here, once: what "ok" answers is what is applied,
 * whatever happens to the file before the supervisor's next step. */
static const char *do_reload(sv *s, char *err, size_t errlen) {
  sv_config *next = NULL;
  if (s->stopping) return "the supervisor is shutting down";
  if (sv_reload_config(s, &next, err, errlen) < 0) return err;
  sv_config_free(s->reload_cfg); /* a newer request wins */
  s->reload_cfg = next;
  mly_runtime_send(s->rt, s->sup, SV_EV_RELOAD, NULL);
  return NULL;
}

static const char *do_tail(sv *s, const mly_value *params, mly_value **res,
                           char *err, size_t errlen) {
  const char *name = rpc_arg_str(params, 0);
  sv_proc *p = name ? sv_find(s, name) : NULL;
  if (p == NULL) return no_such(name, err, errlen);
  int64_t want = SV_TAIL_LINES;
  if (mly_value_len(params) > 1 &&
      mly_value_get_int(mly_array_at(params, 1), &want) < 0)
    return "the line count must be a number";
  size_t n = want < 0 ? 0 : (size_t)want;
  if (n > p->tail_count) n = p->tail_count;
  mly_value *lines = mly_value_array();
  size_t first = (p->tail_next + SV_TAIL_LINES - n) % SV_TAIL_LINES;
  for (size_t i = 0; i < n; i++)
  {
    size_t k = (first + i) % SV_TAIL_LINES;
    mly_array_push(lines, mly_value_strn(p->tail[k], p->tail_len[k]));
  }
  *res = lines;
  return NULL;
}

/* One table: a method's name, then how its answer is made. */
static void answer(rpc_call *call, const char *e, mly_value *res) {
  if (e != NULL) {
    mly_value_free(res);
    rpc_fail(call, "%s", e);
  } else {
    rpc_reply(call, res);
  }
}

static void m_status(rpc_call *call, const mly_value *params, void *ud) {
  char err[1024];
  mly_value *res = NULL;
  const char *e = do_status(((ctl *)ud)->s, params, &res, err, sizeof err);
  answer(call, e, res);
}

static void m_command(rpc_call *call, const mly_value *params, void *ud) {
  char err[1024];
  answer(call, do_command(((ctl *)ud)->s, rpc_call_method(call), params, err,
                          sizeof err), NULL);
}

static void m_reload(rpc_call *call, const mly_value *params, void *ud) {
  (void)params;
  char err[1024];
  answer(call, do_reload(((ctl *)ud)->s, err, sizeof err), NULL);
}

static void m_shutdown(rpc_call *call, const mly_value *params, void *ud) {
  (void)params;
  sv *s = ((ctl *)ud)->s;
  mly_runtime_send(s->rt, s->sup, SV_EV_SHUTDOWN, NULL);
  rpc_reply(call, NULL);
}

static void m_tail(rpc_call *call, const mly_value *params, void *ud) {
  char err[1024];
  mly_value *res = NULL;
  const char *e = do_tail(((ctl *)ud)->s, params, &res, err, sizeof err);
  answer(call, e, res);
}

static void m_metrics(rpc_call *call, const mly_value *params, void *ud) {
  (void)params;
  mly_value *res = NULL;
  const char *e = sv_metrics_text(((ctl *)ud)->s, &res);
  answer(call, e, res);
}

static void m_reopen(rpc_call *call, const mly_value *params, void *ud) {
  (void)params;
  sv *s = ((ctl *)ud)->s;
  sv_logf(s, "mealy", "reopening log files (requested through the "
          "control socket)");
  logpipe_reopen_all(s);
  rpc_reply(call, NULL);
}

static const rpc_method methods[] = {
    {"status", m_status},   {"start", m_command},     {"stop", m_command},
    {"restart", m_command}, {"signal", m_command},    {"reload", m_reload},
    {"shutdown", m_shutdown}, {"tail", m_tail},       {"reopen", m_reopen},
    {"metrics", m_metrics},
};

static void ctl_log(void *ud, rpc_log_kind kind, const char *msg) {
  ctl *c = ud;
  if (kind == RPC_LOG_INFO) sv_logf(c->s, "mealy", "%s", msg);
  else sv_logf_rl(c->s, &c->rl[kind], "control", "%s", msg);
}

int ctl_start(sv *s, const char *path, char *err, size_t errlen) {
  ctl *c = calloc(1, sizeof *c);
  if (c == NULL) return MLY_ENOMEM;
  c->s = s;
  rpc_config cfg = {
      .loop = s->loop,
      .path = path,
      .mode = s->cfg->socket_mode,
      .max_clients = s->cfg->control_max_clients,
      .timeout_ms = s->cfg->control_timeout_ms,
      .methods = methods,
      .nmethods = sizeof methods / sizeof methods[0],
      .what = "supervisor",
      .ud = c,
      .log = ctl_log,
  };
  int rc = rpc_start(&cfg, &c->srv, err, errlen);
  if (rc < 0) {
    free(c);
    return rc;
  }
  s->ctl = c;
  return 0;
}

/* Calls still running are none: every method answers at once. */

uint32_t ctl_clients(const sv *s) {
  const ctl *c = s->ctl;
  return c ? (uint32_t)rpc_client_count(c->srv) : 0;
}

void ctl_stop(sv *s) {
  ctl *c = s->ctl;
  if (c == NULL) return;
  s->ctl = NULL;
  rpc_stop(c->srv);
  for (int k = 0; k < RPC_LOG_INFO; k++) sv_rl_flush(s, &c->rl[k], "control");
  free(c);
}
