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

#include <signal.h>
#include <stdlib.h>

struct mly_proc {
  uv_process_t h;
  mly_runtime *rt;
  mly_id owner;
  int pid;
  mly_proc *next, *prev;
};

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
  free(p);
  rt_release(rt);
}

static void exit_cb(uv_process_t *h, int64_t exit_status, int term_signal) {
  mly_proc *p = h->data;
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
  uv_close((uv_handle_t *)h, proc_closed);
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
  p->h.data = p;
  rt->open_handles++;
  int rc = uv_spawn(rt->loop, &p->h, &uo);
  if (rc < 0) {
    uv_close((uv_handle_t *)&p->h, proc_closed); /* required even now */
    return rc;
  }
  p->pid = p->h.pid;
  p->next = rt->procs;
  if (rt->procs) rt->procs->prev = p;
  rt->procs = p;
  rt->nprocs++;
  if (pid_out) *pid_out = p->pid;
  return 0;
}

int mly_process_signal(mly_runtime *rt, int pid, int signum, bool group) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (pid <= 0 || signum < 0 || signum >= 65) return MLY_EINVAL;
  for (mly_proc *p = rt->procs; p != NULL; p = p->next) {
    if (p->pid != pid) continue;
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
