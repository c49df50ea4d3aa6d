/*
 * interp_exec.c - command actions (`action: {exec: [argv...], timeout}`).
 *
 * The command is a child process of the instance (mly_process_spawn, in
 * its own process group).  Its stdin is a memfd holding the context as
 * one JSON object; its stdout and stderr are memfds too, read once it
 * has exited, so no pipe needs pumping on the loop and a command that
 * prints much never blocks on us (what it prints is bounded by
 * MLY_EXEC_OUTPUT_MAX).  The outcome (mealy.h): exit 0 and a JSON
 * object or nothing on stdout: success, the object merged into the
 * context, its "event" naming the next event; exit MLY_EXEC_PERMANENT:
 * a permanent failure; anything else, or the timeout (the group is
 * killed): a retryable one, with stderr's last line as the text.  The
 * command's environment is ours plus MLY_FSM_KEY, the dispatch's key.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsmrt.h"

static int memfd(const char *name) {
  int fd = memfd_create(name, MFD_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -errno;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

void fsm_exec_cleanup(fsm_run *r) {
  if (r->stdout_fd >= 0) close(r->stdout_fd);
  if (r->stderr_fd >= 0) close(r->stderr_fd);
  r->stdout_fd = r->stderr_fd = -1;
  r->pid = -1;
  r->timed_out = false;
  r->exec_due_ms = -1;
}

extern char **environ;

/* This process's environment with MLY_FSM_KEY=key (one allocation:
 * free() it after the spawn). */
static const char **env_with_key(const char *key) {
  size_t n = 0, klen = strlen(key);
  while (environ[n] != NULL) n++;
  const char **env = malloc((n + 2) * sizeof *env + klen + 16);
  if (env == NULL) return NULL;
  char *kv = (char *)(env + n + 2);
  snprintf(kv, klen + 16, "MLY_FSM_KEY=%s", key);
  size_t j = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "MLY_FSM_KEY=", 12) != 0) env[j++] = environ[i];
  env[j++] = kv;
  env[j] = NULL;
  return env;
}

void fsm_exec_reap_stale(fsm_rt *f, fsm_inst *in) {
  uint64_t st;
  if (in->exec_pid > 0 && mly_process_start_time(in->exec_pid, &st) == 0 &&
      st == in->exec_start) {
    fsm_log(f, "a command left running before a restart (pid %d) is "
               "killed: its dispatch runs again",
            (int)in->exec_pid);
    kill(-in->exec_pid, SIGKILL);
  }
  in->exec_pid = 0;
  in->exec_start = 0;
}

int fsm_exec_start(fsm_rt *f, mly_machine *m, fsm_run *r,
                   const fsm_action *a, fsm_inst *inst) {
  (void)f;
  if (a->argv == NULL || a->argv[0] == NULL) return MLY_EINVAL;
  char *json = NULL;
  size_t len = 0;
  int rc = fsm_json_encode(r->call.context, &json, &len);
  if (rc < 0) {
    mly_action_fail(&r->call, true,
                    "the context cannot be written as JSON (a string that "
                    "is not UTF-8, or a NaN)");
    return rc;
  }
  int in = memfd("fsm-stdin");
  if (in >= 0) {
    rc = write_all(in, json, len);
    if (rc == 0) rc = write_all(in, "\n", 1);
    if (rc == 0 && lseek(in, 0, SEEK_SET) < 0) rc = -errno;
    if (rc < 0) {
      close(in);
      in = rc;
    }
  }
  free(json);
  if (in < 0) return in;
  fsm_exec_cleanup(r);
  r->stdout_fd = memfd("fsm-stdout");
  r->stderr_fd = memfd("fsm-stderr");
  if (r->stdout_fd < 0 || r->stderr_fd < 0) {
    rc = r->stdout_fd < 0 ? r->stdout_fd : r->stderr_fd;
    close(in);
    fsm_exec_cleanup(r);
    return rc;
  }
  const char **env = env_with_key(r->call.key);
  if (env == NULL) {
    close(in);
    fsm_exec_cleanup(r);
    return MLY_ENOMEM;
  }
  mly_process_options o;
  memset(&o, 0, sizeof o);
  o.argv = (const char *const *)a->argv;
  o.env = env;
  o.new_group = true;
  o.end_grace_ms = -1; /* the instance ended: no command outlives it */
  o.stdio[0].mode = o.stdio[1].mode = o.stdio[2].mode = MLY_STDIO_FD;
  o.stdio[0].fd = in;
  o.stdio[1].fd = r->stdout_fd;
  o.stdio[2].fd = r->stderr_fd;
  int pid = -1;
  rc = mly_process_spawn(m, &o, &pid);
  free(env);
  close(in);
  if (rc < 0) {
    fsm_exec_cleanup(r);
    return rc;
  }
  r->pid = pid;
  inst->exec_pid = pid;
  if (mly_process_start_time(pid, &inst->exec_start) < 0)
    inst->exec_start = 0;
  r->exec_due_ms = a->timeout_ms >= 0 ? fsm_now_ms() + a->timeout_ms : -1;
  r->exit_status = 0;
  return 0;
}

int64_t fsm_exec_left(const fsm_run *r) {
  if (r->timed_out || r->exec_due_ms < 0) return -1;
  int64_t d = r->exec_due_ms - fsm_now_ms();
  return d > 0 ? d : 0;
}

/* The whole of a memfd, bounded; NULL with *len 0 when empty. */
static int slurp(int fd, char **out, size_t *len) {
  struct stat st;
  *out = NULL;
  *len = 0;
  if (fstat(fd, &st) < 0) return -errno;
  if (st.st_size == 0) return 0;
  if ((uint64_t)st.st_size > MLY_EXEC_OUTPUT_MAX) return MLY_ERANGE;
  char *b = malloc((size_t)st.st_size + 1);
  if (b == NULL) return MLY_ENOMEM;
  ssize_t n = pread(fd, b, (size_t)st.st_size, 0);
  if (n < 0) {
    free(b);
    return -errno;
  }
  b[n] = '\0';
  *out = b;
  *len = (size_t)n;
  return 0;
}

/* stderr's last non-empty line, for the error text. */
static void last_line(int fd, char *buf, size_t len) {
  char *s;
  size_t n;
  buf[0] = '\0';
  if (fd < 0 || slurp(fd, &s, &n) < 0 || s == NULL) return;
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = '\0';
  char *p = memrchr(s, '\n', n);
  snprintf(buf, len, "%s", p ? p + 1 : s);
  free(s);
}

static bool blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\n' && s[i] != '\t' && s[i] != '\r')
      return false;
  return true;
}

static void took_output(fsm_run *r) {
  char *out;
  size_t n;
  int rc = slurp(r->stdout_fd, &out, &n);
  if (rc < 0) {
    mly_action_fail(&r->call, false, "command output: %s%s", mly_strerror(rc),
                    rc == MLY_ERANGE ? " (past MLY_EXEC_OUTPUT_MAX)" : "");
    return;
  }
  if (out == NULL || blank(out, n)) {
    free(out);
    return;
  }
  mly_value *obj = NULL;
  char err[160];
  rc = fsm_json_decode_object(out, n, &obj, err, sizeof err);
  free(out);
  if (rc < 0) {
    mly_action_fail(&r->call, false, "command output is %s: print one JSON "
                                     "object, or nothing", err);
    return;
  }
  for (size_t i = 0; i < mly_value_len(obj); i++) {
    const char *k;
    mly_value *v;
    mly_map_at(obj, i, &k, &v);
    if (strcmp(k, "event") == 0) {
      const char *ev;
      if (mly_value_get_str(v, &ev, NULL) < 0 ||
          mly_action_event(&r->call, ev) < 0) {
        mly_action_fail(&r->call, true, "command output: \"event\" must be "
                                        "an event name (a string)");
        break;
      }
      continue;
    }
    mly_map_set(r->call.context, k, mly_value_copy(v));
  }
  mly_value_free(obj);
}

int fsm_exec_event(fsm_rt *f, mly_machine *m, fsm_run *r,
                   const mly_event *ev) {
  (void)m;
  if (ev == NULL) {
    if (r->pid > 0 && !r->timed_out) { /* its time ran out */
      r->timed_out = true;
      mly_process_signal(f->rt, r->pid, SIGKILL, true);
    }
    return 0; /* its exit comes */
  }
  if (ev->id != MLY_EV_PROCESS_EXIT || (int)ev->corr != r->pid) return 0;
  char text[200];
  last_line(r->stderr_fd, text, sizeof text);
  if (r->timed_out)
    mly_action_fail(&r->call, false,
                    "command ran past its timeout: its group was killed");
  else if (ev->aux != 0)
    mly_action_fail(&r->call, false, "command killed by signal %lld%s%s",
                    (long long)ev->aux, text[0] ? ": " : "", text);
  else if (ev->status == MLY_EXEC_PERMANENT)
    mly_action_fail(&r->call, true, "command failed for good (exit %d)%s%s",
                    MLY_EXEC_PERMANENT, text[0] ? ": " : "", text);
  else if (ev->status != 0)
    mly_action_fail(&r->call, false, "command exited %lld%s%s",
                    (long long)ev->status, text[0] ? ": " : "", text);
  else
    took_output(r);
  fsm_exec_cleanup(r);
  return 1;
}
