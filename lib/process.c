/*
 * process.c - child processes whose exit is an event.
 *
 * A machine spawns a process (spawn.c sets the child up) and the runtime
 * watches it through a pidfd on the loop: when it turns readable the
 * process has exited, we reap it, and its exit becomes
 * MLY_EV_PROCESS_EXIT for the owning machine.  Nothing polls.  A process
 * left running by a previous run of the host is adopted the same way,
 * except that its status is not ours to read.
 *
 * The rule that keeps PID reuse harmless: a process is in the runtime's
 * list from spawn until we reaped it, and mly_process_signal only
 * signals a pid found in that list, through its pidfd.  After the reap
 * the pid may belong to somebody else, and the answer is MLY_ESRCH.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* A child of ours, or a process adopted from a previous run, watched
 * through its pidfd. */
struct mly_proc {
  uv_poll_t poll;
  mly_runtime *rt;
  mly_id owner;
  int pid;
  int pidfd;
  bool own; /* our child: we reap it and read its status */
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
  uv_close((uv_handle_t *)&p->poll, proc_closed);
}

/* The pidfd turned readable: the process has exited.  An adopted one is
 * not our child, so its status is not ours to read: -1, no signal. */
static void exited_cb(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  mly_proc *p = h->data;
  int64_t exit_status = -1;
  int term_signal = 0;
  if (p->own && spawn_reaped(p->pid, &exit_status, &term_signal) == MLY_EAGAIN)
    return; /* not yet */
  gone(p, exit_status, term_signal);
}

/* Watches pid through its pidfd from now on, for m.  own: our child, whose
 * status we reap; else adopted.  Takes the pidfd, even on failure. */
static int watch(mly_inst *m, int pid, int pidfd, bool own) {
  mly_runtime *rt = m->type->rt;
  mly_proc *p = calloc(1, sizeof *p);
  if (p == NULL) {
    close(pidfd);
    return MLY_ENOMEM;
  }
  p->rt = rt;
  p->owner = m->id;
  p->pid = pid;
  p->pidfd = pidfd;
  p->own = own;
  p->poll.data = p;
  rt->open_handles++;
  int rc = uv_poll_init(rt->loop, &p->poll, pidfd);
  if (rc < 0) {
    rt->open_handles--;
    close(pidfd);
    free(p);
    return rc;
  }
  rc = uv_poll_start(&p->poll, UV_READABLE, exited_cb);
  if (rc < 0) {
    uv_close((uv_handle_t *)&p->poll, proc_closed);
    return rc;
  }
  link_proc(rt, p);
  return 0;
}

int mly_process_spawn(mly_machine *mm, const mly_process_options *o,
                      int *pid_out) {
  mly_inst *m = INST(mm);
  mly_runtime *rt = m->type->rt;
  if (o == NULL || o->argv == NULL || o->argv[0] == NULL) return MLY_EINVAL;
  if (rt->closing) return MLY_ESHUTDOWN;
  int pid, pidfd;
  int rc = spawn_process(o, &pid, &pidfd);
  if (rc < 0) return rc;
  rc = watch(m, pid, pidfd, true);
  if (rc < 0) { /* it cannot be watched: it must not run unwatched */
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    return rc;
  }
  if (pid_out) *pid_out = pid;
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
  if (rc < 0) {
    close(pidfd);
    return rc;
  }
  return watch(m, pid, pidfd, false);
}

int mly_process_signal(mly_runtime *rt, int pid, int signum, bool group) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (pid <= 0 || signum < 0 || signum >= 65) return MLY_EINVAL;
  for (mly_proc *p = rt->procs; p != NULL; p = p->next) {
    if (p->pid != pid) continue;
    /* the pidfd proves the leader is ours (for a group: still there) */
    if (syscall(SYS_pidfd_send_signal, p->pidfd, group ? 0 : signum, NULL, 0) < 0)
      return -errno;
    if (!group) return 0;
    return kill(-pid, signum) < 0 ? -errno : 0;
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
    uv_close((uv_handle_t *)&p->poll, proc_closed);
  }
}
