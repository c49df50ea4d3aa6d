/*
 * process.c - child processes whose exit is an event.
 *
 * A machine spawns a process through libuv; libuv reaps it from its
 * SIGCHLD handler and calls exit_cb, which turns the exit into
 * MLY_EV_PROCESS_EXIT for the owning machine.  Nothing polls.
 *
 * The rule that keeps PID reuse harmless: a process is in the runtime's
 * list from spawn until libuv reaped it, and mly_process_signal only
 * signals a pid found in that list.  After the reap the pid may belong to
 * somebody else, and the answer is MLY_ESRCH.  A handle is closed only in
 * its exit callback (or when the runtime closes), as libuv requires.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* A child of ours (h), or a process adopted from a previous run, watched
 * through a pidfd (poll): its handle shares the uv_handle_t head. */
struct mly_proc {
  union {
    uv_process_t h;
    uv_poll_t poll;
  };
  mly_runtime *rt;
  mly_id owner;
  int pid;
  int pidfd; /* adopted, or spawned into a cgroup: -1 for uv_spawn's */
  bool ours; /* with a pidfd: our child, whose status we reap */
  mly_proc *next, *prev;
};

static void link_proc(mly_runtime *rt, mly_proc *p) {
  p->next = rt->procs;
  if (rt->procs) rt->procs->prev = p;
  rt->procs = p;
  rt->nprocs++;
}

static void unlink_proc(mly_runtime *rt, mly_proc *p) {
  if (p->prev) p->prev->next = p->next;
  else rt->procs = p->next;
  if (p->next) p->next->prev = p->prev;
  p->next = p->prev = NULL;
  rt->nprocs--;
}

static void proc_closed(uv_handle_t *h) {
  mly_proc *p = h->data;
  mly_runtime *rt = p->rt;
  if (p->pidfd >= 0) close(p->pidfd);
  free(p);
  rt_release(rt);
}

static void gone(mly_proc *p, int64_t exit_status, int term_signal) {
  mly_runtime *rt = p->rt;
  unlink_proc(rt, p); /* reaped: its pid must never be signalled again */
  mly_inst *owner = inst_get(rt, p->owner);
  mly_event *e = owner ? ev_new(rt) : NULL;
  if (e != NULL) {
    e->id = MLY_EV_PROCESS_EXIT;
    e->status = exit_status;
    e->aux = term_signal;
    e->corr = (uint64_t)p->pid;
    ev_deliver(rt, owner, e);
  }
  uv_close((uv_handle_t *)&p->h, proc_closed);
}

static void exit_cb(uv_process_t *h, int64_t exit_status, int term_signal) {
  gone(h->data, exit_status, term_signal);
}

/* A pidfd turns readable when its process exits.  An adopted process is
 * not our child, so its status is not ours to read: -1, no signal; our
 * own (spawned into a cgroup) is reaped here, by pid: a child's pid is
 * not reused before it is reaped. */
static void pidfd_cb(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  mly_proc *p = h->data;
  if (!p->ours) {
    gone(p, -1, 0);
    return;
  }
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG) < 0) {
    if (errno == ECHILD) gone(p, -1, 0); /* reaped by somebody else */
    return;
  }
  if (si.si_pid == 0) return; /* not yet */
  if (si.si_code == CLD_EXITED) gone(p, si.si_status, 0);
  else gone(p, 0, si.si_status);
}

static void set_stdio(uv_stdio_container_t *c, int fd, mly_stdio_mode mode,
                      int given) {
  switch (mode) {
  case MLY_STDIO_NULL:
    c->flags = UV_IGNORE; /* libuv opens /dev/null for fds 0-2 */
    break;
  case MLY_STDIO_FD:
    c->flags = UV_INHERIT_FD;
    c->data.fd = given;
    break;
  default:
    c->flags = UV_INHERIT_FD;
    c->data.fd = fd;
    break;
  }
}

#define CHILD_FD_MAX 64

/* Fills the container table; returns how many fds the child gets. */
static int build_stdio(const mly_process_options *o,
                       uv_stdio_container_t *stdio) {
  int count = 3;
  for (int i = 0; i < 3; i++)
    set_stdio(&stdio[i], i, o->stdio[i].mode, o->stdio[i].fd);
  for (int i = 3; i < CHILD_FD_MAX; i++) stdio[i].flags = UV_IGNORE;
  if (o->nextra > MLY_PROCESS_MAX_FDS) return MLY_EINVAL;
  for (unsigned i = 0; i < o->nextra; i++) {
    int cfd = o->extra[i].child_fd;
    if (cfd < 3 || cfd >= CHILD_FD_MAX || o->extra[i].fd < 0) return MLY_EINVAL;
    stdio[cfd].flags = UV_INHERIT_FD;
    stdio[cfd].data.fd = o->extra[i].fd;
    if (cfd + 1 > count) count = cfd + 1;
  }
  return count;
}

/* ---- into a cgroup: clone3(CLONE_INTO_CGROUP) ----
 *
 * libuv's uv_spawn cannot start a child in a cgroup, and moving it there
 * after the fork would leave a moment in which it runs outside.  So this
 * is a small spawn of our own, with uv_spawn's semantics: signal
 * dispositions back to default and an empty mask, its own session, the
 * descriptors mapped, cwd, gid and uid, execvp in the given environment;
 * an exec failure comes back through a close-on-exec pipe as an errno. */

static void child_fail(int fd, int err) {
  ssize_t n = write(fd, &err, sizeof err);
  (void)n;
  _exit(127);
}

static void child_run(const mly_process_options *o, int errfd) {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (o->new_group && setsid() < 0) child_fail(errfd, errno);
  /* every source goes high first, so no dup2 overwrites another's source */
  int src[3 + MLY_PROCESS_MAX_FDS], dst[3 + MLY_PROCESS_MAX_FDS], n = 0;
  for (int i = 0; i < 3; i++) {
    int fd = -1;
    if (o->stdio[i].mode == MLY_STDIO_NULL)
      fd = open("/dev/null", (i == 0 ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    else if (o->stdio[i].mode == MLY_STDIO_FD)
      fd = o->stdio[i].fd;
    else if (fcntl(i, F_SETFD, 0) < 0 && errno != EBADF)
      child_fail(errfd, errno);
    if (o->stdio[i].mode == MLY_STDIO_INHERIT) continue;
    if (fd < 0) child_fail(errfd, errno);
    src[n] = fd;
    dst[n++] = i;
  }
  for (unsigned i = 0; i < o->nextra; i++) {
    src[n] = o->extra[i].fd;
    dst[n++] = o->extra[i].child_fd;
  }
  for (int i = 0; i < n; i++)
    if ((src[i] = fcntl(src[i], F_DUPFD_CLOEXEC, CHILD_FD_MAX)) < 0)
      child_fail(errfd, errno);
  for (int i = 0; i < n; i++)
    if (dup2(src[i], dst[i]) < 0) child_fail(errfd, errno);
  if (o->cwd && chdir(o->cwd) < 0) child_fail(errfd, errno);
  if ((o->set_uid || o->set_gid) && setgroups(0, NULL) < 0 && errno != EPERM)
    child_fail(errfd, errno);
  if (o->set_gid && setgid(o->gid) < 0) child_fail(errfd, errno);
  if (o->set_uid && setuid(o->uid) < 0) child_fail(errfd, errno);
  if (o->env) environ = (char **)(uintptr_t)o->env; /* PATH from there too */
  execvp(o->argv[0], (char *const *)(uintptr_t)o->argv);
  child_fail(errfd, errno);
}

static int spawn_into_cgroup(mly_runtime *rt, mly_inst *m,
                             const mly_process_options *o, int *pid_out) {
  int pipefd[2], pidfd = -1;
  if (pipe2(pipefd, O_CLOEXEC) < 0) return -errno;
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = CLONE_INTO_CGROUP | CLONE_PIDFD;
  ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
  ca.exit_signal = SIGCHLD;
  ca.cgroup = (uint64_t)o->cgroup_fd;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* no handler in the child */
  long pid = syscall(SYS_clone3, &ca, sizeof ca);
  if (pid == 0) {
    close(pipefd[0]);
    child_run(o, pipefd[1]);
  }
  int err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(pipefd[1]);
  if (pid < 0) {
    close(pipefd[0]);
    return err == ENOSYS || err == E2BIG ? MLY_ENOSYS : -err;
  }
  int child_err = 0;
  ssize_t r;
  do r = read(pipefd[0], &child_err, sizeof child_err);
  while (r < 0 && errno == EINTR);
  close(pipefd[0]);
  if (r == (ssize_t)sizeof child_err) { /* it did not exec: reap it */
    siginfo_t si;
    waitid(P_PID, (id_t)pid, &si, WEXITED);
    close(pidfd);
    return child_err > 0 ? -child_err : MLY_EIO;
  }
  /* from here on it runs: if it cannot be watched, it must not stay */
  siginfo_t si;
  mly_proc *p = calloc(1, sizeof *p);
  int rc = p ? uv_poll_init(rt->loop, &p->poll, pidfd) : MLY_ENOMEM;
  if (rc < 0) {
    free(p);
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    waitid(P_PID, (id_t)pid, &si, WEXITED);
    close(pidfd);
    return rc;
  }
  p->rt = rt;
  p->owner = m->id;
  p->pid = (int)pid;
  p->pidfd = pidfd;
  p->ours = true;
  p->poll.data = p;
  rt->open_handles++;
  rc = uv_poll_start(&p->poll, UV_READABLE, pidfd_cb);
  if (rc < 0) {
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    waitid(P_PID, (id_t)pid, &si, WEXITED);
    uv_close((uv_handle_t *)&p->poll, proc_closed); /* closes pidfd */
    return rc;
  }
  link_proc(rt, p);
  if (pid_out) *pid_out = (int)pid;
  return 0;
}

int mly_process_spawn(mly_machine *mm, const mly_process_options *o,
                      int *pid_out) {
  mly_inst *m = INST(mm);
  mly_runtime *rt = m->type->rt;
  if (o == NULL || o->argv == NULL || o->argv[0] == NULL) return MLY_EINVAL;
  if (rt->closing) return MLY_ESHUTDOWN;
  uv_stdio_container_t stdio[CHILD_FD_MAX];
  int nstdio = build_stdio(o, stdio);
  if (nstdio < 0) return nstdio;
  if (o->into_cgroup) return spawn_into_cgroup(rt, m, o, pid_out);
  mly_proc *p = calloc(1, sizeof *p);
  if (p == NULL) return MLY_ENOMEM;
  uv_process_options_t uo = {
      .exit_cb = exit_cb,
      .file = o->argv[0],
      .args = (char **)(uintptr_t)o->argv,
      .env = (char **)(uintptr_t)o->env,
      .cwd = o->cwd,
      .flags = (o->new_group ? UV_PROCESS_DETACHED : 0) |
               (o->set_uid ? UV_PROCESS_SETUID : 0) |
               (o->set_gid ? UV_PROCESS_SETGID : 0),
      .stdio_count = nstdio,
      .stdio = stdio,
      .uid = o->uid,
      .gid = o->gid,
  };
  p->rt = rt;
  p->owner = m->id;
  p->pidfd = -1;
  p->h.data = p;
  rt->open_handles++;
  int rc = uv_spawn(rt->loop, &p->h, &uo);
  if (rc < 0) {
    uv_close((uv_handle_t *)&p->h, proc_closed); /* required even now */
    return rc;
  }
  p->pid = p->h.pid;
  link_proc(rt, p);
  if (pid_out) *pid_out = p->pid;
  return 0;
}

int mly_process_start_time(int pid, uint64_t *out) {
  char path[64], buf[1024];
  if (pid <= 0) return MLY_EINVAL;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? MLY_ESRCH : -errno;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return MLY_ESRCH;
  buf[n] = '\0';
  /* "pid (comm) state ppid ...": comm may hold anything, even ") " */
  char *p = strrchr(buf, ')');
  if (p == NULL || p[1] != ' ') return MLY_EBADMSG;
  if (p[2] == 'Z' || p[2] == 'X') return MLY_ESRCH; /* dead, not yet reaped */
  p += 2;
  for (int field = 3; field < 22; field++) { /* starttime is field 22 */
    p = strchr(p, ' ');
    if (p == NULL) return MLY_EBADMSG;
    p++;
  }
  char *end;
  unsigned long long v = strtoull(p, &end, 10);
  if (end == p) return MLY_EBADMSG;
  *out = v;
  return 0;
}

int mly_process_adopt(mly_machine *mm, int pid, uint64_t start_time) {
  mly_inst *m = INST(mm);
  mly_runtime *rt = m->type->rt;
  if (pid <= 0) return MLY_EINVAL;
  if (rt->closing) return MLY_ESHUTDOWN;
  if (mly_process_known(rt, pid)) return MLY_EEXIST;
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) return errno == ESRCH ? MLY_ESRCH : -errno;
  /* checked after the pidfd is held: from here on the pid cannot be
   * reused under us, and the start time says it is the same process */
  uint64_t now = 0;
  int rc = mly_process_start_time(pid, &now);
  if (rc == 0 && now != start_time) rc = MLY_ESRCH;
  mly_proc *p = rc == 0 ? calloc(1, sizeof *p) : NULL;
  if (rc == 0 && p == NULL) rc = MLY_ENOMEM;
  if (rc < 0) {
    close(pidfd);
    return rc;
  }
  p->rt = rt;
  p->owner = m->id;
  p->pid = pid;
  p->pidfd = pidfd;
  p->poll.data = p;
  rt->open_handles++;
  rc = uv_poll_init(rt->loop, &p->poll, pidfd);
  if (rc < 0) {
    rt->open_handles--;
    close(pidfd);
    free(p);
    return rc;
  }
  rc = uv_poll_start(&p->poll, UV_READABLE, pidfd_cb);
  if (rc < 0) {
    uv_close((uv_handle_t *)&p->poll, proc_closed);
    return rc;
  }
  link_proc(rt, p);
  return 0;
}

int mly_process_signal(mly_runtime *rt, int pid, int signum, bool group) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (pid <= 0 || signum < 0 || signum >= 65) return MLY_EINVAL;
  for (mly_proc *p = rt->procs; p != NULL; p = p->next) {
    if (p->pid != pid) continue;
    if (p->pidfd >= 0) { /* adopted: the pidfd proves the leader is ours */
      if (syscall(SYS_pidfd_send_signal, p->pidfd, group ? 0 : signum, NULL, 0) < 0)
        return -errno;
      if (!group) return 0;
    }
    if (group) return kill(-pid, signum) < 0 ? -errno : 0;
    return uv_process_kill(&p->h, signum);
  }
  return MLY_ESRCH;
}

size_t mly_process_count(const mly_runtime *rt) { return rt->nprocs; }

bool mly_process_known(const mly_runtime *rt, int pid) {
  for (const mly_proc *p = rt->procs; p != NULL; p = p->next)
    if (p->pid == pid) return true;
  return false;
}

void proc_forget_owner(mly_runtime *rt, mly_id owner) {
  for (mly_proc *p = rt->procs; p != NULL; p = p->next)
    if (p->owner == owner) p->owner = 0;
}

/* The runtime is closing: stop watching.  The processes themselves are
 * left running; ending them is their owners' business before this. */
void proc_close_all(mly_runtime *rt) {
  while (rt->procs != NULL) {
    mly_proc *p = rt->procs;
    unlink_proc(rt, p);
    uv_close((uv_handle_t *)&p->h, proc_closed);
  }
}
