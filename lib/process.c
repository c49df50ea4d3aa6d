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
 *
 * A process does not outlive its owner (mealy.h): when the owning
 * machine ends, the process gets SIGTERM and SIGCONT, and SIGKILL from a
 * grace timer of its own; its handles are unreferenced from then on, so
 * it never holds the loop after on_stop.  When the runtime closes,
 * what still runs gets SIGKILL and its handle stays open (referenced)
 * until libuv has reaped it: nothing is orphaned, nothing left a zombie.
 * Detached processes, and those of a suspended durable instance, are
 * only watched until they exit.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A child of ours (h), or a process adopted from a previous run, watched
 * through a pidfd (poll): its handle shares the uv_handle_t head. */
struct mly_proc {
  union {
    uv_process_t h;
    uv_poll_t poll;
  };
  mly_runtime *rt;
  mly_id owner;         /* 0 once the owner has ended */
  int pid;
  int pidfd;            /* adopted: -1 for our own children */
  int nhandles;         /* open: the watch, and the grace timer if any */
  int64_t end_grace_ms; /* SIGKILL this long after SIGTERM (< 0: at once) */
  bool group;           /* it leads its own process group: signal that */
  bool detached;        /* left running when its owner ends */
  bool timer_on;        /* grace is initialized */
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
  uv_close((uv_handle_t *)&p->h, proc_closed);
}

/* Signal one process of the list (never a reaped one: see above); its
 * group with group=true.  An adopted one is not our child: the pidfd
 * proves the leader is still the process we adopted. */
static int proc_kill(mly_proc *p, int signum, bool group) {
  if (p->pidfd >= 0) {
    if (syscall(SYS_pidfd_send_signal, p->pidfd, group ? 0 : signum, NULL, 0) < 0)
      return -errno;
    if (!group) return 0;
  }
  if (group) return kill(-p->pid, signum) < 0 ? -errno : 0;
  return uv_process_kill(&p->h, signum);
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

static void exit_cb(uv_process_t *h, int64_t exit_status, int term_signal) {
  gone(h->data, exit_status, term_signal);
}

/* An adopted process's pidfd turns readable when it exits.  It is not our
 * child, so its status is not ours to read: -1, no signal. */
static void adopted_cb(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  gone(h->data, -1, 0);
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

int mly_process_spawn(mly_machine *mm, const mly_process_options *o,
                      int *pid_out) {
  mly_inst *m = INST(mm);
  mly_runtime *rt = m->type->rt;
  if (o == NULL || o->argv == NULL || o->argv[0] == NULL) return MLY_EINVAL;
  if (rt->closing) return MLY_ESHUTDOWN;
  uv_stdio_container_t stdio[CHILD_FD_MAX];
  int nstdio = build_stdio(o, stdio);
  if (nstdio < 0) return nstdio;
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
  p->nhandles = 1;
  p->end_grace_ms = o->end_grace_ms;
  p->group = o->new_group; /* setsid: it leads its own group */
  p->detached = o->detached;
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
  p->nhandles = 1;
  p->group = getpgid(pid) == pid; /* checked with the pidfd held */
  p->poll.data = p;
  rt->open_handles++;
  rc = uv_poll_init(rt->loop, &p->poll, pidfd);
  if (rc < 0) {
    rt->open_handles--;
    close(pidfd);
    free(p);
    return rc;
  }
  rc = uv_poll_start(&p->poll, UV_READABLE, adopted_cb);
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
    uv_unref((uv_handle_t *)&p->h); /* from now on it never holds the loop */
    if (let_go) p->detached = true; /* the next run adopts it */
    if (!p->detached && !rt->closing) end_process(p); /* closing: below */
  }
}

/* invariant.c: a process whose owner ended never holds the loop, and
 * one with an owner has a live one. */
int proc_check(const mly_runtime *rt) {
  for (const mly_proc *p = rt->procs; p != NULL; p = p->next) {
    bool held = uv_has_ref((const uv_handle_t *)&p->h) != 0;
    if (p->owner == 0 && held && !rt->closing) return MLY_EBUSY;
    if (p->owner != 0 && inst_get(rt, p->owner) == NULL) return MLY_ESRCH;
  }
  return 0;
}

/* The runtime is closing: a detached process is no longer watched; any
 * other is killed, and watched (holding the loop) until it is reaped. */
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
    if (rc < 0) { /* it cannot be signalled: do not wait for it */
      unlink_proc(rt, p);
      proc_close(p);
      continue;
    }
    uv_ref((uv_handle_t *)&p->h); /* close waits for the reap */
  }
}
