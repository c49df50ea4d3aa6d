/*
 * run.c - one `mealy supervise` run, from the file to the last child.
 *
 * Loads and validates the whole configuration before anything starts,
 * becomes a subreaper, opens the control socket, and hands over to the
 * supervisor machine on a runtime of its own.  When that machine has
 * stopped every program and ended, the control socket and the log pipes
 * close, the loop runs dry, and the run is over.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "outq.h"
#include "sv.h"

int sv_reload_config(sv *s, sv_config **out, char *err, size_t errlen) {
  if (s->config_text)
    return sv_config_parse(s->config_path, s->config_text, s->config_len, out,
                           err, errlen);
  return sv_config_load(s->config_path, out, err, errlen);
}

static void free_all(sv *s) {
  HASH_CLEAR(hh_name, s->by_name); /* the tables; the procs go below */
  HASH_CLEAR(hh_pid, s->by_pid);
  HASH_CLEAR(hh_inst, s->by_inst);
  for (size_t i = 0; i < s->nprocs; i++) sv_proc_free(s->procs[i]);
  free(s->procs);
  for (size_t i = 0; i < s->nold; i++) sv_config_free(s->old_cfgs[i]);
  free(s->kept);
  sv_config_free(s->reload_cfg);
  free(s->old_cfgs);
  if (s->state_fd >= 0) close(s->state_fd);
  sv_config_free(s->cfg);
}

/* Three pipes a program: a thousand programs need more than 1024 fds. */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static int setup(sv *s, const sv_run_options *o) {
  char err[1024];
  int rc;
  raise_fd_limit();
  if ((rc = reaper_enable()) < 0)
    sv_logf(s, "mealy", "cannot become a subreaper (%s): orphans go to init",
            mly_strerror(rc));
  if ((rc = mly_runtime_new(&s->rt, NULL, NULL)) < 0) return rc;
  s->loop = mly_runtime_loop(s->rt);
  outq_attach(s->out, s->loop);
  outq_attach(s->err, s->loop);
  if ((rc = coproc_register(s->rt, &s->coproc_type)) < 0) return rc;
  if ((rc = sup_register(s->rt, &s->sup_type)) < 0) return rc;
  const char *dir = o->state_dir ? o->state_dir : s->cfg->state_dir;
  s->state_dir = dir;
  if ((rc = sv_manager_setup(s)) < 0)
    sv_logf(s, "mealy", "cannot notify the service manager: %s",
            mly_strerror(rc));
  if ((rc = sv_tree_setup(s, dir)) < 0) return rc;
  if ((rc = sv_tree_check_limits(s, s->cfg, err, sizeof err)) < 0) {
    fprintf(stderr, "%s\n", err); /* an error in the file, as at load */
    return rc;
  }
  if (dir && (rc = sv_state_open(s, dir, err, sizeof err)) < 0) {
    fprintf(stderr, "mealy supervise: %s\n", err);
    return rc;
  }
  if (dir) sv_logf(s, "mealy", "state directory %s: %zu programs remembered",
                   dir, s->nkept);
  const char *sock = o->socket_override ? o->socket_override : s->cfg->socket;
  if ((rc = ctl_start(s, sock, err, sizeof err)) < 0) {
    sv_logf(s, "mealy", "control socket: %s", err);
    return rc;
  }
  sv_logf(s, "mealy", "control socket %s", sock);
  if ((rc = sv_metrics_start(s, err, sizeof err)) < 0) {
    sv_logf(s, "mealy", "%s", err);
    return rc;
  }
  sv *self = s;
  return mly_spawn(s->rt, s->sup_type, &self, sizeof self, &s->sup);
}

int sv_run(const sv_run_options *o) {
  char err[1024];
  sv *s = calloc(1, sizeof *s);
  if (s == NULL) return MLY_ENOMEM;
  /* its own output never blocks it (outq.h) */
  s->out = outq_open(fileno(o->log ? o->log : stdout));
  s->err = outq_open(STDERR_FILENO);
  s->rng = uv_hrtime() | 1;
  s->state_fd = -1;
  snprintf(s->config_path, sizeof s->config_path, "%s", o->config_path);
  s->config_text = o->config_text;
  s->config_len = o->config_len;
  int rc = o->config_text
               ? sv_config_parse(o->config_path, o->config_text, o->config_len,
                                 &s->cfg, err, sizeof err)
               : sv_config_load(o->config_path, &s->cfg, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "%s\n", err); /* an error, whatever the log is */
    outq_close(s->out);
    outq_close(s->err);
    free(s);
    return rc;
  }
  rc = setup(s, o);
  if (rc == 0) rc = mly_runtime_run(s->rt);
  if (rc == 0) rc = s->exit_status;
  if (s->ctl) ctl_stop(s);
  sv_metrics_stop(s);
  logpipe_close_all(s);
  if (s->rt) sv_notify_end(s); /* if the supervisor machine never ran */
  if (s->rt) sv_manager_end(s);
  if (s->rt) sv_tree_end(s);
  outq_close(s->out); /* closed with the loop, which runs once more */
  outq_close(s->err);
  if (s->rt) mly_runtime_close(s->rt);
  free_all(s);
  free(s);
  return rc;
}
