/*
 * sdmanager.c - sd_notify, the client side: `mealy supervise` tells its
 * own service manager (systemd's Type=notify, or anything that hands out
 * NOTIFY_SOCKET) how it is.
 *
 *   READY=1     once, when every program that must be up is: ready, or
 *               settled down (fatal, stopped by hand, ended for good)
 *   STATUS=     "N of M programs ready", when that changes
 *   STOPPING=1  when shutdown begins
 *   WATCHDOG=1  every half of WATCHDOG_USEC, when the manager set one
 *               (and WATCHDOG_PID, if set, names us)
 *
 * The protocol is one datagram of KEY=VALUE lines to an AF_UNIX path
 * (or, with a leading '@', an abstract name), which takes a sendmsg:
 * libsystemd's sd_notify would bring a library and its own dependencies
 * (compression, crypto) for it, and the receiving side (notify.c) is
 * ours anyway.  A failed send is logged once and never stops the run;
 * the socket is non-blocking, so a manager that does not read (its queue
 * full) never stalls the supervisor: READY=1 and a STATUS= that could not
 * be sent are sent again at the next change or watchdog tick.
 *
 * NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID are the supervisor's,
 * never its programs' (coprocess.c leaves them out of their environment).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sv.h"

typedef struct manager {
  int fd;
  struct sockaddr_un addr;
  socklen_t alen;
  uv_timer_t wd;
  bool wd_on;
  bool ready_sent;
  bool told_failure;
  bool unsent;           /* a READY=1/STATUS= refused: again at a tick */
  char status[128];
} manager;

bool sv_manager_notify(sv *s, const char *fmt, ...) {
  manager *mg = s->manager;
  if (mg == NULL) return false;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) return false;
  if ((size_t)n >= sizeof msg) n = (int)sizeof msg - 1;
  ssize_t w;
  do {
    w = sendto(mg->fd, msg, (size_t)n, MSG_NOSIGNAL,
               (struct sockaddr *)&mg->addr, mg->alen);
  } while (w < 0 && errno == EINTR);
  if (w < 0 && !mg->told_failure) {
    mg->told_failure = true; /* once: the manager may simply be gone */
    sv_logf(s, "mealy", "cannot notify the service manager at %s%s: %s",
            mg->addr.sun_path[0] ? "" : "@",
            mg->addr.sun_path + (mg->addr.sun_path[0] ? 0 : 1),
            strerror(errno));
  }
  return w >= 0;
}

static void watchdog_tick(uv_timer_t *t) {
  sv *s = t->data;
  sv_manager_notify(s, "WATCHDOG=1");
  manager *mg = s->manager;
  if (mg && mg->unsent) sv_manager_check_ready(s); /* a full queue's */
}

int sv_manager_setup(sv *s) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (path == NULL || path[0] == '\0') return 0;
  size_t len = strlen(path);
  manager *mg = calloc(1, sizeof *mg);
  if (mg == NULL) return MLY_ENOMEM;
  mg->addr.sun_family = AF_UNIX;
  if ((path[0] != '/' && path[0] != '@') || len >= sizeof mg->addr.sun_path) {
    sv_logf(s, "mealy", "NOTIFY_SOCKET is not an absolute path or an "
            "@abstract name that fits: not notifying the service manager");
    free(mg);
    return 0;
  }
  memcpy(mg->addr.sun_path, path, len);
  if (path[0] == '@') mg->addr.sun_path[0] = '\0';
  mg->alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                         (path[0] == '/'));
  mg->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (mg->fd < 0) {
    int rc = -errno;
    free(mg);
    return rc;
  }
  s->manager = mg;
  const char *usec = getenv("WATCHDOG_USEC"), *wpid = getenv("WATCHDOG_PID");
  char *end;
  unsigned long long us = usec ? strtoull(usec, &end, 10) : 0;
  bool ours = wpid == NULL || atoi(wpid) == (int)getpid();
  if (us > 0 && *end == '\0' && ours && uv_timer_init(s->loop, &mg->wd) == 0) {
    uint64_t every = us / 2000; /* half the interval, in ms */
    mg->wd.data = s;
    mg->wd_on = true;
    uv_timer_start(&mg->wd, watchdog_tick, 0, every ? every : 1);
    uv_unref((uv_handle_t *)&mg->wd);
    sv_logf(s, "mealy", "service manager watchdog: WATCHDOG=1 every %llu ms",
            (unsigned long long)(every ? every : 1));
  }
  return 0;
}

void sv_manager_check_ready(sv *s) {
  manager *mg = s->manager;
  if (mg == NULL || s->stopping) return;
  size_t ready = 0, settled = 0;
  for (size_t i = 0; i < s->nprocs; i++) {
    const sv_proc *p = s->procs[i];
    ready += p->ready;
    settled += p->ready || p->fatal || p->held_down || p->retiring ||
               (p->has_exit && !p->want_up && p->launched);
  }
  char status[sizeof mg->status];
  snprintf(status, sizeof status, "%zu of %zu programs ready", ready,
           s->nprocs);
  bool now_ready = !mg->ready_sent && settled == s->nprocs;
  if (!now_ready && strcmp(status, mg->status) == 0) return;
  if (!sv_manager_notify(s, "%sSTATUS=%s", now_ready ? "READY=1\n" : "",
                         status)) {
    mg->unsent = true; /* not sent (the manager's queue full?): again */
    return;
  }
  mg->unsent = false;
  memcpy(mg->status, status, sizeof status);
  if (now_ready) {
    mg->ready_sent = true;
    sv_logf(s, "mealy", "told the service manager: ready (%s)", status);
  }
}

static void timer_closed(uv_handle_t *h) { free(h->data); }

void sv_manager_end(sv *s) {
  manager *mg = s->manager;
  if (mg == NULL) return;
  s->manager = NULL;
  close(mg->fd);
  if (mg->wd_on) {
    mg->wd.data = mg;
    uv_timer_stop(&mg->wd);
    uv_close((uv_handle_t *)&mg->wd, timer_closed);
  } else {
    free(mg);
  }
}
