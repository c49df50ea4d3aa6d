/*
 * notify.c - sd_notify, the server side: readiness and liveness the way
 * daemons built for systemd already say them.
 *
 * A program with `ready: sd_notify` or `watchdog:` gets a datagram socket
 * of its own, named in its environment as NOTIFY_SOCKET (and, with a
 * watchdog, WATCHDOG_USEC).  The socket lives in a directory of the
 * supervisor's, mode 0711, under systemd's RUNTIME_DIRECTORY, /run for
 * root, or $TMPDIR: mealy-notify-HASH of the state directory (the same
 * each run), or a fresh mealy-notify.XXXXXX without one.  The state
 * directory itself is 0700, which another user: could not traverse.
 * the socket file is the program's user's, mode 0600, so nobody else can
 * even send to it.  SO_PASSCRED gives each datagram its sender's pid, and
 * only a process of that program counts (its child, its MAINPID, its
 * cgroup, or its process group and the marked orphans of it): anything
 * else is ignored, with a rate-limited log line.
 *
 * The protocol (sd_notify(3)): one datagram of newline-separated
 * KEY=VALUE lines, at most NOTIFY_MAX bytes; unknown keys are ignored.
 *   READY=1        ready (dependents start); after RELOADING=1, reloaded
 *   STATUS=text    shown by `mealy ctl status`
 *   MAINPID=pid    the process to watch when the one started exits; only
 *                  one of the program's own processes is taken
 *   STOPPING=1     it is on its way down (shown; the watchdog is off)
 *   RELOADING=1    reloading, until READY=1
 *   ERRNO=n        shown and logged
 *   WATCHDOG=1     alive (see `watchdog:`); WATCHDOG=trigger: failed now
 *   WATCHDOG_USEC= a new watchdog interval, from the program itself
 *   FDSTORE=1      refused: any descriptors sent are closed, and logged
 *
 * The socket stays open across the program's lives (and, with a state
 * directory, keeps its path across supervisor restarts, so an adopted
 * program's WATCHDOG=1 still arrives).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cgroup.h"
#include "sv.h"

#define NOTIFY_MAX 4096 /* systemd's own limit (PIPE_BUF) */
#define TAKE_PER_WAKE 64 /* datagrams read per wake-up: others wait */
#define MAX_FDS 16

typedef struct sv_notify {
  uv_poll_t poll;
  sv *s;
  sv_proc *p;            /* NULL once its program is gone */
  int fd;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  sv_ratelimit rl;
} sv_notify;

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

/* ---- the directory ---- */

/* A directory of our own, mode 0711: programs of other users reach their
 * own socket by name, and cannot list or replace anything. */
static int own_dir(sv *s, const char *path) {
  struct stat st;
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = fstat(fd, &st) < 0 ? -errno : 0;
  if (rc == 0 && st.st_uid != geteuid()) {
    sv_logf(s, "mealy", "%s is owned by uid %u, not by the supervisor: "
            "remove it, the supervisor makes it", path, (unsigned)st.st_uid);
    rc = MLY_EPERM;
  }
  if (rc == 0 && fchmod(fd, 0711) < 0) rc = -errno;
  close(fd);
  return rc;
}

/* Where the directory goes: systemd's RuntimeDirectory=, else /run for
 * root, else $TMPDIR or /tmp. */
static const char *runtime_base(void) {
  const char *base = getenv("RUNTIME_DIRECTORY");
  if (base && base[0] == '/' && !strchr(base, ':') && strlen(base) < 40)
    return base;
  struct stat st;
  if (geteuid() == 0 && stat("/run", &st) == 0 && S_ISDIR(st.st_mode))
    return "/run";
  base = getenv("TMPDIR");
  return base && base[0] == '/' && strlen(base) < 40 ? base : "/tmp";
}

static int notify_dir(sv *s) {
  if (s->notify_dir[0]) return 0;
  char path[sizeof s->notify_dir];
  int rc;
  if (s->state_dir) { /* a name of its own, the same each run: a program
                         adopted after a crash still reaches its socket */
    uint64_t h = 1469598103934665603ull;
    for (const char *c = s->state_dir; *c; c++)
      h = (h ^ (unsigned char)*c) * 1099511628211ull;
    snprintf(path, sizeof path, "%s/mealy-notify-%016llx", runtime_base(),
             (unsigned long long)h);
    rc = mkdir(path, 0711) < 0 && errno != EEXIST ? -errno : own_dir(s, path);
    if (rc < 0) { /* somebody else's (a shared /tmp): not a reason to start
                     no sd_notify program at all; adoption loses the path */
      sv_logf(s, "mealy", "cannot use the sd_notify directory %s: %s; using "
              "a fresh one (programs left by an earlier run cannot reach "
              "theirs)", path, mly_strerror(rc));
      snprintf(path, sizeof path, "%s/mealy-notify.XXXXXX", runtime_base());
      rc = mkdtemp(path) ? own_dir(s, path) : -errno;
    }
  } else { /* a fresh one nobody else can have made */
    snprintf(path, sizeof path, "%s/mealy-notify.XXXXXX", runtime_base());
    rc = mkdtemp(path) ? own_dir(s, path) : -errno;
  }
  if (rc < 0) {
    sv_logf(s, "mealy", "cannot make the sd_notify directory %s: %s", path,
            mly_strerror(rc));
    return rc;
  }
  s->notify_dir_made = true;
  memcpy(s->notify_dir, path, sizeof path);
  return 0;
}

/* ---- belonging ---- */

static int parent_of(int pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char *e = strrchr(buf, ')'); /* "pid (comm) S ppid" */
  if (e == NULL || e[1] == '\0' || e[2] == '\0') return -1;
  return atoi(e + 4);
}

bool sv_notify_belongs(sv_proc *p, int pid) {
  if (pid <= 0 || pid == (int)getpid()) return false;
  if (pid == p->pid) return true;
  if (p->main_pid > 0 && pid == p->main_pid) {
    uint64_t st;
    return mly_process_start_time(pid, &st) == 0 && st == p->main_start;
  }
  if (p->pid == 0 && !p->draining) return false; /* nothing of it runs */
  if (p->cg) return sv_cg_has(p->cg, pid);
  /* its own session and group: a stranger cannot join it (setpgid
   * works only within one session) */
  if (p->pgid > 0 && getpgid(pid) == p->pgid) return true;
  return p->instance && parent_of(pid) == (int)getpid() &&
         reaper_marker(pid) == p->instance;
}

int64_t sv_watchdog_ms(const sv_proc *p) {
  if (p->wd_usec_override > 0) {
    int64_t ms = (p->wd_usec_override + 999) / 1000;
    return ms > 0 ? ms : 1;
  }
  return p->prog->watchdog_ms;
}

/* ---- one datagram ---- */

static void send_coproc(sv_proc *p, uint32_t ev) {
  if (p->machine) mly_runtime_send(p->sv->rt, p->machine, ev, NULL);
}

static bool parse_int(const char *v, long long lo, long long hi,
                      long long *out) {
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (end == v || *end != '\0' || errno || n < lo || n > hi) return false;
  *out = n;
  return true;
}

static void take_mainpid(sv_notify *nt, sv_proc *p, const char *v) {
  long long n;
  uint64_t st;
  if (!parse_int(v, 1, INT32_MAX, &n)) {
    sv_logf_rl(nt->s, &nt->rl, p->name, "MAINPID=%.32s is not a pid: ignored",
               v);
    return;
  }
  int old = p->main_pid;
  p->main_pid = 0; /* belongs() must not take the claim itself as proof */
  if (!sv_notify_belongs(p, (int)n) ||
      mly_process_start_time((int)n, &st) < 0) {
    p->main_pid = old;
    sv_logf_rl(nt->s, &nt->rl, p->name, "MAINPID=%lld is not one of its "
               "processes: ignored", n);
    return;
  }
  p->main_pid = (int)n;
  p->main_start = st;
  if (old != p->main_pid)
    sv_logf(nt->s, p->name, "main process: pid %d (MAINPID)", p->main_pid);
}

static void take_line(sv_notify *nt, sv_proc *p, const char *k, size_t kl,
                      const char *v) {
#define KEY(s) (kl == sizeof(s) - 1 && memcmp(k, s, kl) == 0)
  long long n;
  if (KEY("READY") && strcmp(v, "1") == 0) {
    bool was = p->sd_ready && !p->sd_reloading;
    p->sd_ready = true;
    if (p->sd_reloading) sv_logf(nt->s, p->name, "reloaded (READY=1)");
    p->sd_reloading = false;
    if (!was && p->prog->ready == SV_READY_SD_NOTIFY)
      send_coproc(p, SV_EV_NOTIFIED); /* with only a watchdog: shown */
  } else if (KEY("STATUS")) {
    snprintf(p->status, sizeof p->status, "%s", v);
  } else if (KEY("MAINPID")) {
    take_mainpid(nt, p, v);
  } else if (KEY("STOPPING") && strcmp(v, "1") == 0) {
    if (!p->sd_stopping) sv_logf(nt->s, p->name, "stopping (STOPPING=1)");
    p->sd_stopping = true;
  } else if (KEY("RELOADING") && strcmp(v, "1") == 0) {
    if (!p->sd_reloading) sv_logf(nt->s, p->name, "reloading (RELOADING=1)");
    p->sd_reloading = true;
  } else if (KEY("ERRNO")) {
    if (parse_int(v, 0, 4095, &n)) {
      p->sd_errno = (int)n;
      sv_logf_rl(nt->s, &nt->rl, p->name, "ERRNO=%d (%s)", p->sd_errno,
                 strerror(p->sd_errno));
    }
  } else if (KEY("WATCHDOG") && strcmp(v, "1") == 0) {
    p->wd_last_ms = now_ms();
    p->wd_kicks++;
  } else if (KEY("WATCHDOG") && strcmp(v, "trigger") == 0) {
    send_coproc(p, SV_EV_WATCHDOG);
  } else if (KEY("WATCHDOG_USEC")) {
    if (parse_int(v, 1, (long long)365 * 86400 * 1000000, &n)) {
      p->wd_usec_override = n;
      p->wd_last_ms = now_ms(); /* systemd restarts the timer too */
    }
  } else if (KEY("FDSTORE") && strcmp(v, "1") == 0) {
    sv_logf_rl(nt->s, &nt->rl, p->name, "FDSTORE=1 refused: the supervisor "
               "keeps no file descriptors for programs");
  } /* anything else: ignored, as systemd does with what it does not know */
#undef KEY
}

static void take(sv_notify *nt, sv_proc *p, char *buf, size_t len) {
  p->sd_accepted++;
  for (size_t at = 0; at < len;) {
    char *line = buf + at, *nl = memchr(line, '\n', len - at);
    size_t ll = nl ? (size_t)(nl - line) : len - at;
    at += ll + 1;
    line[ll] = '\0'; /* buf has room for the last one's NUL */
    char *eq = memchr(line, '=', ll);
    if (eq == NULL || eq == line || memchr(line, '\0', ll) != NULL)
      continue; /* not KEY=VALUE (or a NUL inside): ignored */
    take_line(nt, p, line, (size_t)(eq - line), eq + 1);
  }
}

/* What came with a datagram: the sender's credentials; descriptors are
 * closed at once (FDSTORE is not supported). */
static int ancillary(struct msghdr *mh, struct ucred *cred) {
  int nfds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_CREDENTIALS &&
        c->cmsg_len >= CMSG_LEN(sizeof *cred)) {
      memcpy(cred, CMSG_DATA(c), sizeof *cred);
    } else if (c->cmsg_type == SCM_RIGHTS) {
      size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < n; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
        close(fd);
        nfds++;
      }
    }
  }
  return nfds;
}

static void readable(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  sv_notify *nt = h->data;
  char buf[NOTIFY_MAX + 1];
  for (int i = 0; i < TAKE_PER_WAKE; i++) {
    union {
      struct cmsghdr align;
      char b[CMSG_SPACE(sizeof(struct ucred)) +
             CMSG_SPACE(MAX_FDS * sizeof(int))];
    } ctl;
    struct iovec iov = {buf, NOTIFY_MAX};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    ssize_t n = recvmsg(nt->fd, &mh, MSG_DONTWAIT | MSG_TRUNC |
                                        MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return; /* EAGAIN: all read */
    struct ucred cred = {0, 0, 0};
    int nfds = ancillary(&mh, &cred);
    sv_proc *p = nt->p;
    if (p == NULL) continue;
    /* sd_notify_barrier: BARRIER=1 and an fd whose closing is the answer */
    bool barrier = n == 9 && memcmp(buf, "BARRIER=1", 9) == 0;
    if ((nfds > 0 && !barrier) || (mh.msg_flags & MSG_CTRUNC))
      sv_logf_rl(nt->s, &nt->rl, p->name, "closed %d file descriptors sent "
                 "by pid %d: the supervisor keeps none (FDSTORE)", nfds,
                 (int)cred.pid);
    if ((size_t)n > NOTIFY_MAX || (mh.msg_flags & MSG_TRUNC)) {
      p->sd_refused++;
      sv_logf_rl(nt->s, &nt->rl, p->name, "a notify message of %zd bytes "
                 "from pid %d is over the limit of %d: ignored", n,
                 (int)cred.pid, NOTIFY_MAX);
      continue;
    }
    if (!sv_notify_belongs(p, (int)cred.pid)) {
      p->sd_refused++;
      sv_logf_rl(nt->s, &nt->rl, p->name, "a notify message from pid %d, "
                 "which is not one of its processes: ignored", (int)cred.pid);
      continue;
    }
    take(nt, p, buf, (size_t)n);
  }
}

/* ---- the socket ---- */

static bool wants_socket(const sv_program *g) {
  return g->ready == SV_READY_SD_NOTIFY || g->watchdog_ms > 0;
}

/* The socket belongs to the program's user:, or to the supervisor's
 * without one: set at each start, since a reload may change user:/group:
 * while the socket (kept across starts) stays. */
static int own_socket(const char *path, const sv_program *g) {
  uid_t uid = g->has_uid ? g->uid : geteuid();
  gid_t gid = g->has_gid ? g->gid : getegid();
  return lchown(path, uid, gid) < 0 ? -errno : 0;
}

static int open_socket(sv_proc *p) {
  sv *s = p->sv;
  const sv_program *g = p->prog;
  int rc = notify_dir(s);
  if (rc < 0) return rc;
  sv_notify *nt = calloc(1, sizeof *nt);
  if (nt == NULL) return MLY_ENOMEM;
  nt->s = s;
  nt->p = p;
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  int n = snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", s->notify_dir,
                   p->name);
  if (n < 0 || (size_t)n >= sizeof a.sun_path) {
    sv_logf(s, p->name, "its sd_notify socket %s/%s is longer than %zu bytes; "
            "choose a shorter state_dir or program name", s->notify_dir,
            p->name, sizeof a.sun_path - 1);
    free(nt);
    return MLY_ENAMETOOLONG;
  }
  memcpy(nt->path, a.sun_path, sizeof nt->path);
  int one = 1;
  nt->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  rc = nt->fd < 0 ? -errno : 0;
  if (rc == 0 && setsockopt(nt->fd, SOL_SOCKET, SO_PASSCRED, &one,
                            sizeof one) < 0)
    rc = -errno;
  /* the directory is ours: what is there is a socket of an earlier run */
  if (rc == 0) unlink(a.sun_path);
  if (rc == 0 && bind(nt->fd, (struct sockaddr *)&a, sizeof a) < 0)
    rc = -errno;
  if (rc == 0 && chmod(a.sun_path, 0600) < 0) rc = -errno;
  if (rc == 0) rc = own_socket(nt->path, g);
  if (rc == 0) rc = uv_poll_init(s->loop, &nt->poll, nt->fd);
  if (rc < 0) {
    sv_logf(s, p->name, "cannot open its sd_notify socket %s: %s", nt->path,
            mly_strerror(rc));
    if (nt->fd >= 0) close(nt->fd);
    free(nt);
    return rc;
  }
  nt->poll.data = nt;
  uv_poll_start(&nt->poll, UV_READABLE, readable);
  uv_unref((uv_handle_t *)&nt->poll); /* never what keeps the loop alive */
  p->sdn = nt;
  return 0;
}

int sv_notify_prepare(sv_proc *p, char *path, size_t len) {
  if (len) path[0] = '\0';
  if (!wants_socket(p->prog)) {
    sv_notify_close(p);
    return 0;
  }
  int rc = p->sdn ? own_socket(p->sdn->path, p->prog) : open_socket(p);
  if (rc < 0 && p->sdn)
    sv_logf(p->sv, p->name, "cannot give its sd_notify socket %s to its "
            "user: %s", p->sdn->path, mly_strerror(rc));
  if (rc == 0 && len) snprintf(path, len, "%s", p->sdn->path);
  return rc;
}

void sv_notify_reset(sv_proc *p) {
  p->status[0] = '\0';
  p->main_pid = 0;
  p->main_start = 0;
  p->sd_ready = p->sd_reloading = p->sd_stopping = false;
  p->sd_errno = 0;
  p->wd_usec_override = 0;
  p->wd_last_ms = now_ms();
}

static void closed(uv_handle_t *h) {
  sv_notify *nt = h->data;
  close(nt->fd);
  free(nt);
}

void sv_notify_close(sv_proc *p) {
  sv_notify *nt = p->sdn;
  if (nt == NULL) return;
  p->sdn = NULL;
  sv_rl_flush(nt->s, &nt->rl, p->name);
  nt->p = NULL;
  unlink(nt->path);
  uv_close((uv_handle_t *)&nt->poll, closed);
}

void sv_notify_end(sv *s) {
  for (size_t i = 0; i < s->nprocs; i++) sv_notify_close(s->procs[i]);
  if (s->notify_dir_made) rmdir(s->notify_dir);
  s->notify_dir_made = false;
}
