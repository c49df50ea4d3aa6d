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
 *
 * A process does not outlive its owner (mealy.h): when the owning
 * machine ends, the process gets SIGTERM and SIGCONT, and SIGKILL from a
 * grace timer of its own; its handles are unreferenced from then on, so
 * it never holds the loop after on_stop.  When the runtime closes, what
 * still runs gets SIGKILL and its handle stays open (referenced) until it
 * is reaped: nothing is orphaned, nothing left a zombie.  Detached
 * processes, and those of a durable instance that leaves memory without
 * an end, are only watched until they exit.
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
  mly_id owner;         /* 0 once the owner has ended */
  int pid;
  int pidfd;
  bool own;             /* our child: we reap it and read its status */
  bool group;           /* it leads its own process group: signal that */
  bool detached;        /* left running when its owner ends */
  bool timer_on;        /* grace is initialized */
  int nhandles;         /* open: the watch, and the grace timer if any */
  int64_t end_grace_ms; /* SIGKILL this long after SIGTERM (< 0: at once) */
  uv_timer_t grace;     /* SIGKILL at the end of the owner's grace */
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
  if (--p->nhandles == 0) {
    if (p->pidfd >= 0) close(p->pidfd);
    free(p);
  }
  rt_release(rt);
}

/* Close its handles; the last close callback frees it. */
static void proc_close(mly_proc *p) {
  if (p->timer_on) {
    p->timer_on = false;
    uv_close((uv_handle_t *)&p->grace, proc_closed);
  }
  uv_close((uv_handle_t *)&p->poll, proc_closed);
}

/* Signal one process of the list (never a reaped one: see above), its
 * group with group=true: the pidfd proves the leader is still ours (for
 * a group: still there). */
static int proc_kill(mly_proc *p, int signum, bool group) {
  if (syscall(SYS_pidfd_send_signal, p->pidfd, group ? 0 : signum, NULL, 0) < 0)
    return -errno;
  if (!group) return 0;
  return kill(-p->pid, signum) < 0 ? -errno : 0;
}

static void grace_cb(uv_timer_t *h) {
  mly_proc *p = h->data;
  proc_kill(p, SIGKILL, p->group);
}

/* Its owner ended: TERM (and CONT, so a stopped process can act on it),
 * then KILL at the end of the grace. */
static void end_process(mly_proc *p) {
  mly_runtime *rt = p->rt;
  if (p->end_grace_ms < 0) {
    proc_kill(p, SIGKILL, p->group);
    return;
  }
  proc_kill(p, SIGTERM, p->group);
  proc_kill(p, SIGCONT, p->group);
  if (uv_timer_init(rt->loop, &p->grace) < 0) { /* no timer: no grace */
    proc_kill(p, SIGKILL, p->group);
    return;
  }
  p->grace.data = p;
  p->timer_on = true;
  p->nhandles++;
  rt->open_handles++;
  uv_unref((uv_handle_t *)&p->grace);
  uint64_t ms = p->end_grace_ms ? (uint64_t)p->end_grace_ms
                                : MLY_PROCESS_END_GRACE_MS;
  uv_timer_start(&p->grace, grace_cb, ms, 0);
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
  proc_close(p);
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
static int watch(mly_inst *m, int pid, int pidfd, bool own, mly_proc **out) {
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
  p->nhandles = 1;
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
  *out = p;
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
  mly_proc *p = NULL;
  rc = watch(m, pid, pidfd, true, &p);
  if (rc < 0) { /* it cannot be watched: it must not run unwatched */
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    return rc;
  }
  p->group = o->new_group; /* its own session: it leads its group */
  p->detached = o->detached;
  p->end_grace_ms = o->end_grace_ms;
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
  mly_proc *p = NULL;
  rc = watch(m, pid, pidfd, false, &p);
  if (rc == 0) p->group = getpgid(pid) == pid; /* checked with the pidfd held */
  return rc;
}

int mly_process_signal(mly_runtime *rt, int pid, int signum, bool group) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (pid <= 0 || signum < 0 || signum >= 65) return MLY_EINVAL;
  for (mly_proc *p = rt->procs; p != NULL; p = p->next)
    if (p->pid == pid) return proc_kill(p, signum, group);
  return MLY_ESRCH;
}

size_t mly_process_count(const mly_runtime *rt) { return rt->nprocs; }

bool mly_process_known(const mly_runtime *rt, int pid) {
  for (const mly_proc *p = rt->procs; p != NULL; p = p->next)
    if (p->pid == pid) return true;
  return false;
}

void proc_owner_ended(mly_runtime *rt, mly_id owner, bool let_go) {
  for (mly_proc *p = rt->procs; p != NULL; p = p->next) {
    if (p->owner != owner) continue;
    p->owner = 0;
    uv_unref((uv_handle_t *)&p->poll); /* from now on it never holds the loop */
    if (let_go) p->detached = true;     /* the next run adopts it */
    if (!p->detached && !rt->closing) end_process(p); /* closing: below */
  }
}

/* invariant.c: a process whose owner ended never holds the loop, and
 * one with an owner has a live one. */
int proc_check(const mly_runtime *rt) {
  for (const mly_proc *p = rt->procs; p != NULL; p = p->next) {
    bool held = uv_has_ref((const uv_handle_t *)&p->poll) != 0;
    if (p->owner == 0 && held && !rt->closing) return MLY_EBUSY;
    if (p->owner != 0 && inst_get(rt, p->owner) == NULL) return MLY_ESRCH;
  }
  return 0;
}

/* The runtime is closing: a detached process is no longer watched; any
 * other is killed, and watched (holding the loop) until it is reaped.
 * One already dead is reaped as soon as the loop sees its pidfd. */
void proc_close_all(mly_runtime *rt) {
  for (mly_proc *p = rt->procs, *next; p != NULL; p = next) {
    next = p->next;
    if (p->detached) {
      unlink_proc(rt, p);
      proc_close(p);
      continue;
    }
    p->owner = 0;
    if (p->timer_on) {
      p->timer_on = false;
      uv_close((uv_handle_t *)&p->grace, proc_closed);
    }
    int rc = proc_kill(p, SIGKILL, p->group);
    if (rc < 0 && p->group) rc = proc_kill(p, SIGKILL, false);
    if (rc < 0 && rc != MLY_ESRCH) { /* it cannot be signalled: do not wait */
      unlink_proc(rt, p);
      proc_close(p);
      continue;
    }
    uv_ref((uv_handle_t *)&p->poll); /* close waits for the reap */
  }
}
