/*
 * spawn.c - the child side of starting a program, and opening a file as
 * another user.
 *
 * A child gets exactly what its options say: fds 0-2 and the extra fds,
 * nothing else (every other descriptor this process holds, inherited
 * ones without O_CLOEXEC included, is closed: close_range, else a loop);
 * its own session when asked; the given supplementary groups, gid and uid
 * (in that order: groups and gid need privilege the uid drop ends);
 * default signal dispositions and an empty signal mask; the given
 * environment.  libuv's uv_spawn keeps inherited fds open and always
 * drops supplementary groups, hence this file.
 *
 * Between fork and exec the child calls only async-signal-safe system
 * calls: everything that may allocate (the exec candidates along PATH)
 * is prepared before the fork.  A step that fails (setsid, the fds,
 * chdir, the ids, exec) is reported through a close-on-exec pipe, its
 * errno and which step it was, so mly_process_spawn fails at once as
 * uv_spawn did (MLY_ENOENT for a missing program) and can say why.  All signals are blocked
 * across the fork so no handler of ours runs in the child.  With
 * into_cgroup the fork is a clone3 into the given cgroup.
 *
 * mly_open_as opens a file in a short-lived child that has become the
 * given user, and receives the descriptor over a socket: the kernel
 * checks that user's permissions, so a path the user controls cannot
 * make us write where the user may not.  mly_run_as runs any function
 * that way (log rotation renames files as the program's user).  A uid
 * without a gid is refused (MLY_EINVAL) everywhere: the child would keep
 * our gid, root's.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define CHILD_FD_MAX 64
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* What the child does, decided before the fork. */
typedef struct plan {
  int src[CHILD_FD_MAX]; /* child fd i gets src[i]; -1: closed; -2: /dev/null */
  int nfds;              /* 0 .. nfds-1 may be open in the child */
  char **cand;           /* exec candidates, in PATH order */
  size_t ncand;
  char *const *env;
  char **env_own;        /* env with a pid_env slot, made here */
  char *pid_slot;        /* "NAME=" + room for the digits: the child's */
} plan;

static int plan_fds(const mly_process_options *o, plan *p) {
  if (o->nextra > MLY_PROCESS_MAX_FDS) return MLY_EINVAL;
  for (int i = 0; i < CHILD_FD_MAX; i++) p->src[i] = -1;
  p->nfds = 3;
  for (int i = 0; i < 3; i++) {
    switch (o->stdio[i].mode) {
    case MLY_STDIO_NULL: p->src[i] = -2; break;
    case MLY_STDIO_FD:
      if (o->stdio[i].fd < 0) return MLY_EINVAL;
      p->src[i] = o->stdio[i].fd;
      break;
    default: p->src[i] = i; break;
    }
  }
  for (unsigned i = 0; i < o->nextra; i++) {
    int cfd = o->extra[i].child_fd;
    if (cfd < 3 || cfd >= CHILD_FD_MAX || o->extra[i].fd < 0) return MLY_EINVAL;
    p->src[cfd] = o->extra[i].fd;
    if (cfd + 1 > p->nfds) p->nfds = cfd + 1;
  }
  return 0;
}

static const char *env_path(char *const *env) {
  for (size_t i = 0; env[i]; i++)
    if (strncmp(env[i], "PATH=", 5) == 0) return env[i] + 5;
  return DEFAULT_PATH;
}

/* argv[0] as execvp would try it, along the child's own PATH. */
static int plan_exec(const char *file, plan *p) {
  if (*file == '\0') return MLY_ENOENT;
  const char *path = strchr(file, '/') ? "" : env_path(p->env);
  size_t n = 1;
  for (const char *s = path; *s; s++) n += *s == ':';
  p->cand = calloc(n, sizeof *p->cand);
  if (p->cand == NULL) return MLY_ENOMEM;
  if (*path == '\0') {
    p->ncand = 1;
    return (p->cand[0] = strdup(file)) ? 0 : MLY_ENOMEM;
  }
  for (const char *s = path;; s++) {
    const char *e = strchrnul(s, ':');
    int dl = (int)(e - s);
    char *c = NULL; /* an empty PATH entry is the current directory */
    if (asprintf(&c, "%.*s%s%s", dl, s, dl ? "/" : "", file) < 0) c = NULL;
    if (c == NULL) return MLY_ENOMEM;
    p->cand[p->ncand++] = c;
    if (*e == '\0') break;
    s = e;
  }
  return 0;
}

static void plan_free(plan *p) {
  for (size_t i = 0; i < p->ncand; i++) free(p->cand[i]);
  free(p->cand);
  free(p->env_own);
  free(p->pid_slot);
}

#define PID_DIGITS 12

/* pid_env: the environment again, without NAME=, and a slot the child
 * fills with its own pid (it is known only there). */
static int plan_pid_env(const char *name, plan *p) {
  size_t n = 0, nl = strlen(name), k = 0;
  if (nl == 0 || strchr(name, '=')) return MLY_EINVAL;
  while (p->env[n]) n++;
  p->env_own = calloc(n + 2, sizeof *p->env_own);
  p->pid_slot = malloc(nl + 2 + PID_DIGITS);
  if (p->env_own == NULL || p->pid_slot == NULL) return MLY_ENOMEM;
  for (size_t i = 0; i < n; i++)
    if (!(strncmp(p->env[i], name, nl) == 0 && p->env[i][nl] == '='))
      p->env_own[k++] = p->env[i];
  memcpy(p->pid_slot, name, nl);
  p->pid_slot[nl] = '=';
  p->pid_slot[nl + 1] = '\0';
  p->env_own[k++] = p->pid_slot;
  p->env_own[k] = NULL;
  p->env = p->env_own;
  return 0;
}

/* ---- in the child: async-signal-safe calls only ---- */

static void close_from(int lo, int hi) { /* [lo, hi], hi may be ~0U */
  if (lo > hi && hi >= 0) return;
  if (syscall(SYS_close_range, (unsigned)lo, (unsigned)hi, 0) == 0) return;
  struct rlimit rl;
  int top = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                    rl.rlim_cur < (1u << 20)
                ? (int)rl.rlim_cur
                : 1 << 20;
  for (int fd = lo; fd < top && (hi < 0 || fd <= hi); fd++) close(fd);
}

/* Every descriptor but 0 .. keep-1 (those planned) and one more, `also`. */
static void close_others(const plan *p, int also) {
  for (int fd = 3; fd < p->nfds; fd++)
    if (p->src[fd] == -1) close(fd);
  close_from(p->nfds, also - 1);
  close_from(also + 1, -1);
}

/* Puts every planned fd in place; *errfd is moved out of the way. */
static int place_fds(const plan *p, int *errfd) {
  int tmp[CHILD_FD_MAX];
  int base = p->nfds;
  int e = fcntl(*errfd, F_DUPFD_CLOEXEC, base);
  if (e < 0) return -errno;
  *errfd = e;
  /* first everything above the targets, so no dup2 clobbers a source */
  for (int i = 0; i < p->nfds; i++) {
    tmp[i] = -1;
    if (p->src[i] == -1) continue;
    tmp[i] = p->src[i] == -2 ? open("/dev/null", O_RDWR | O_CLOEXEC)
                             : fcntl(p->src[i], F_DUPFD_CLOEXEC, base);
    if (tmp[i] < 0 && errno == EBADF && p->src[i] == i) continue; /* closed
      here, so closed there, as libuv did */
    if (tmp[i] < 0) return -errno;
  }
  for (int i = 0; i < p->nfds; i++)
    if (tmp[i] >= 0 && dup2(tmp[i], i) < 0) return -errno;
  return 0;
}

/* Raw system calls: the child has one thread, and after a raw clone3
 * glibc's wrappers would still see the parent's threads and try to make
 * them change ids too. */
static int become(const mly_process_options *o) {
  if (!o->set_uid && !o->set_gid) return 0;
  if (!o->set_gid) return MLY_EINVAL; /* a uid alone would keep our gid */
  if (syscall(SYS_setgroups, o->ngroups, o->ngroups ? o->groups : NULL) < 0)
    return -errno;
  if (syscall(SYS_setgid, o->gid) < 0) return -errno;
  if (o->set_uid && syscall(SYS_setuid, o->uid) < 0) return -errno;
  return 0;
}

static void reset_signals(void) {
  struct sigaction sa = {.sa_handler = SIG_DFL};
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP) sigaction(s, &sa, NULL);
}

/* Tells the parent the errno and the step (mly_spawn_step) that failed. */
static _Noreturn void fail(int errfd, int rc, mly_spawn_step step) {
  int e[2] = {-rc, (int)step};
  ssize_t w;
  do w = write(errfd, e, sizeof e);
  while (w < 0 && errno == EINTR);
  _exit(127);
}

/* The child's own pid after "NAME=" (the slot is the child's copy). */
static void fill_pid_slot(const plan *p) {
  if (p->pid_slot == NULL) return;
  char *d = p->pid_slot + strlen(p->pid_slot), tmp[PID_DIGITS];
  long pid = syscall(SYS_getpid);
  int n = 0;
  do tmp[n++] = (char)('0' + pid % 10);
  while ((pid /= 10) > 0 && n < PID_DIGITS - 1);
  while (n > 0) *d++ = tmp[--n];
  *d = '\0';
}

static _Noreturn void child(const mly_process_options *o, const plan *p,
                            int errfd) {
  reset_signals();
  fill_pid_slot(p);
  if (o->new_group && setsid() < 0) fail(errfd, -errno, MLY_SPAWN_SESSION);
  int rc = place_fds(p, &errfd);
  if (rc < 0) fail(errfd, rc, MLY_SPAWN_FDS);
  close_others(p, errfd);
  if (o->cwd && chdir(o->cwd) < 0) fail(errfd, -errno, MLY_SPAWN_CHDIR);
  if ((rc = become(o)) < 0) fail(errfd, rc, MLY_SPAWN_IDS);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  size_t argc = 0;
  while (o->argv[argc]) argc++;
  const char *sh_argv[argc + 2]; /* a script without #!, as execvp runs it */
  int err = ENOENT;
  for (size_t i = 0; i < p->ncand; i++) {
    execve(p->cand[i], (char *const *)(uintptr_t)o->argv, p->env);
    if (errno == ENOEXEC) {
      sh_argv[0] = "/bin/sh";
      sh_argv[1] = p->cand[i];
      for (size_t a = 1; a <= argc; a++) sh_argv[a + 1] = o->argv[a];
      execve("/bin/sh", (char *const *)(uintptr_t)sh_argv, p->env);
      err = errno;
      break;
    }
    if (errno == EACCES) err = EACCES; /* as execvp: remembered, go on */
    else if (errno != ENOENT && errno != ENOTDIR) {
      err = errno;
      break;
    }
  }
  fail(errfd, -err, MLY_SPAWN_EXEC);
}

/* ---- in the parent ---- */

/* Reads the child's error and its step: 0 once exec closed the pipe. */
static int read_err(int fd, mly_spawn_step *step) {
  int e[2] = {0, 0};
  ssize_t n;
  do n = read(fd, e, sizeof e);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)sizeof e || e[0] <= 0) return 0;
  if (step) *step = (mly_spawn_step)e[1];
  return -e[0];
}

static void reap(int pid) {
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
}

/* fork(), the child created in the cgroup v2 directory open as fd (so
 * nothing it does happens outside it, and nothing is migrated: a
 * migration can block for an RCU grace period).  The child runs only the
 * async-signal-safe code above, as after fork. */
static int clone_into(int cgroup_fd) {
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = CLONE_INTO_CGROUP;
  ca.exit_signal = SIGCHLD;
  ca.cgroup = (uint64_t)cgroup_fd;
  return (int)syscall(SYS_clone3, &ca, sizeof ca);
}

int spawn_process(const mly_process_options *o, int *pid_out, int *pidfd_out) {
  if (o->set_uid && !o->set_gid) return MLY_EINVAL; /* see become() */
  plan p = {.env = o->env ? (char *const *)(uintptr_t)o->env : environ};
  if (o->failed_step) *o->failed_step = MLY_SPAWN_PREPARE;
  int rc = plan_fds(o, &p);
  if (rc == 0) rc = plan_exec(o->argv[0], &p);
  if (rc == 0 && o->pid_env) rc = plan_pid_env(o->pid_env, &p);
  int ep[2] = {-1, -1};
  if (rc == 0 && pipe2(ep, O_CLOEXEC) < 0) rc = -errno;
  if (rc < 0) {
    plan_free(&p);
    return rc;
  }
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pid = o->into_cgroup ? clone_into(o->cgroup_fd) : fork();
  if (pid == 0) child(o, &p, ep[1]);
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(ep[1]);
  plan_free(&p);
  if (pid < 0) {
    close(ep[0]);
    if (o->into_cgroup && (fork_errno == ENOSYS || fork_errno == EINVAL ||
                           fork_errno == E2BIG))
      return MLY_ENOSYS; /* before Linux 5.7: no CLONE_INTO_CGROUP */
    return -fork_errno;
  }
  rc = read_err(ep[0], o->failed_step);
  close(ep[0]);
  int pidfd = rc < 0 ? -1 : (int)syscall(SYS_pidfd_open, pid, 0);
  if (rc == 0 && pidfd < 0) {
    rc = -errno;
    kill(pid, SIGKILL);
  }
  if (rc < 0) {
    reap(pid);
    return rc;
  }
  *pid_out = pid;
  *pidfd_out = pidfd;
  return 0;
}

/* The exit status of our own child, once its pidfd turned readable:
 * libuv's convention, the exit code or the signal that ended it. */
int spawn_reaped(int pid, int64_t *status, int *term_signal) {
  int st;
  pid_t r;
  do r = waitpid(pid, &st, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return MLY_EAGAIN;
  *status = -1;
  *term_signal = 0;
  if (r < 0) return -errno;
  if (WIFEXITED(st)) *status = WEXITSTATUS(st);
  if (WIFSIGNALED(st)) *status = 0, *term_signal = WTERMSIG(st);
  return 0;
}

/* ---- opening a file as another user ---- */

static int send_fd(int sock, int fd, int err) {
  char cbuf[CMSG_SPACE(sizeof(int))] = {0};
  struct iovec iov = {.iov_base = &err, .iov_len = sizeof err};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  return sendmsg(sock, &m, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static int recv_fd(int sock, bool want_fd) {
  int err = EIO;
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {.iov_base = &err, .iov_len = sizeof err};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                     .msg_controllen = sizeof cbuf};
  ssize_t n;
  do n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  if (n != (ssize_t)sizeof err) return MLY_EIO;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
  }
  return err > 0 ? -err : want_fd ? MLY_EIO : 0;
}

/* Runs fn(arg) as the user o describes, in a short-lived child that has
 * become that user (in this process when o changes no identity); with
 * want_fd, a descriptor fn returns is passed back to us.  Returns fn's
 * result (the descriptor, 0, or a negative error). */
static int run_as(const mly_process_options *o, int (*fn)(void *), void *arg,
                  bool want_fd) {
  if (o != NULL && o->set_uid && !o->set_gid) return MLY_EINVAL;
  if (o == NULL || (!o->set_uid && !o->set_gid)) return fn(arg);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pid = fork();
  if (pid == 0) { /* signals stay blocked: no handler of ours runs here */
    int rc = become(o);
    if (rc == 0) rc = fn(arg);
    send_fd(sv[1], want_fd && rc >= 0 ? rc : -1, rc < 0 ? -rc : 0);
    _exit(0);
  }
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(sv[1]);
  int rc = pid < 0 ? -fork_errno : recv_fd(sv[0], want_fd);
  close(sv[0]);
  if (pid > 0) reap(pid);
  return rc;
}

typedef struct open_args {
  int dirfd;
  const char *path;
  int flags;
  mode_t mode;
} open_args;

static int open_fn(void *arg) {
  const open_args *a = arg;
  int fd = openat(a->dirfd, a->path, a->flags, a->mode);
  return fd < 0 ? -errno : fd;
}

int mly_openat_as(const mly_process_options *o, int dirfd, const char *path,
                  int flags, unsigned mode) {
  if (path == NULL) return MLY_EINVAL;
  open_args a = {dirfd, path, flags | O_CLOEXEC, (mode_t)mode};
  return run_as(o, open_fn, &a, true);
}

int mly_open_as(const mly_process_options *o, const char *path, int flags,
                unsigned mode) {
  return mly_openat_as(o, AT_FDCWD, path, flags, mode);
}

int mly_run_as(const mly_process_options *o, int (*fn)(void *arg), void *arg) {
  if (fn == NULL) return MLY_EINVAL;
  int rc = run_as(o, fn, arg, false);
  return rc > 0 ? 0 : rc;
}
