/*
 * logpipe.c - what a child writes, line by line.
 *
 * Each child gets a pipe for stdout and one for stderr (and one more for
 * its readiness notification, s6 style: it writes a newline to fd N when
 * it is ready).  The supervisor reads them on its loop and writes whole
 * lines: to its own stdout/stderr behind a "[name] " prefix, or to a log
 * file that rotates by size (FILE -> FILE.1 -> ... -> FILE.keep).  A line
 * is never split between two files: rotation happens before a line that
 * would not fit.  A line longer than the buffer is written in pieces, each
 * ended with a newline.  The last SV_TAIL_LINES lines are also kept in
 * memory for `mealy ctl tail`.  A log file is opened as the program's
 * user (mly_open_as), never through a symlink, and created 0640; its
 * directory is checked as sshd's StrictModes would (mly_path_check) and
 * held open: rotation renames in it, as the program's user.
 *
 * A pipe outlives its process when a grandchild still holds the write
 * end; it is read until EOF, and freed from its close callback.
 *
 * Log files are opened again on SIGHUP and `mealy ctl reopen` (after an
 * outside rotation), and when the file is found removed or moved: after
 * each read, before writing, its inode is compared with the path's.
 * Bytes are bytes: a line is written by its length, NULs included.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "outq.h"
#include "sv.h"

struct sv_logpipe {
  uv_pipe_t h;
  sv *s;
  sv_proc *p;       /* NULL once the program is gone */
  lp_kind kind;
  char name[64];
  const sv_log *log;
  const sv_program *prog; /* whose user opens the log file */
  int child_fd;     /* the write end, until the child has it */
  int file_fd;      /* the log file, in file mode */
  int dir_fd;       /* its directory, opened safely at the first open */
  bool fifo;        /* a FIFO in the state directory, not a pipe */
  uint64_t size;
  uint64_t rot_last_ms;  /* the last failed rotation (0: none) */
  uint64_t rot_said_ms;  /* when that was last logged */
  uint64_t dropped;      /* lines dropped past the hard bound, not yet said */
  char buf[4096];
  size_t n;
  sv_logpipe *next, **pprev;
};

static void as_user(const sv_program *g, mly_process_options *as) {
  *as = (mly_process_options){.set_uid = g->has_uid, .uid = g->uid,
                              .set_gid = g->has_gid, .gid = g->gid,
                              .groups = g->groups, .ngroups = g->ngroups};
}

static const char *base_of(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* The log's directory, once: every directory on its path must be
 * trusted (root's, ours, or the program's own user's, since what follows
 * is done as that user: mly_path_check), and it is held open, so a later
 * rotation or reopen happens in the same directory whatever its path
 * names by then. */
static int open_dir(sv_logpipe *lp, const mly_process_options *as,
                    char *err, size_t errlen) {
  char dir[4096];
  const sv_program *g = lp->prog;
  int rc = mly_path_check(lp->log->file, g->has_uid ? g->uid : (uid_t)-1, dir,
                          sizeof dir, err, errlen);
  if (rc < 0) return rc;
  rc = mly_open_as(as, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
  if (rc < 0) return rc;
  lp->dir_fd = rc;
  return 0;
}

/* As the program's user when it has one (as systemd does for
 * StandardOutput=file:), never through a symlink, and not readable by
 * others: a program cannot make us append to a file it may not write.
 * A file that is there already must be a regular file with one link,
 * owned by the program's user (ours without user:), and not writable by
 * others: a file another user planted is not ours to append to.  err
 * gets what went wrong. */
static int open_log(sv_logpipe *lp, char *err, size_t errlen) {
  const sv_program *g = lp->prog;
  mly_process_options as;
  as_user(g, &as);
  lp->file_fd = -1;
  *err = '\0';
  int rc = lp->dir_fd >= 0 ? 0 : open_dir(lp, &as, err, errlen);
  /* O_NONBLOCK: a FIFO put there with no reader fails the open at once
   * (ENXIO) instead of hanging the supervisor */
  int fd = rc < 0 ? rc : mly_openat_as(&as, lp->dir_fd, base_of(lp->log->file),
                                       O_WRONLY | O_APPEND | O_CREAT |
                                       O_NOFOLLOW | O_NONBLOCK, 0640);
  if (rc == 0 && fd < 0) rc = fd;
  struct stat st;
  if (rc == 0 && fstat(fd, &st) < 0) rc = -errno;
  uid_t owner = g->has_uid ? g->uid : geteuid();
  const char *why = NULL;
  if (rc == 0) {
    if (!S_ISREG(st.st_mode)) why = "is not a regular file";
    else if (st.st_uid != owner) why = "is owned by another user";
    else if (st.st_mode & 002) why = "is writable by others";
    else if (st.st_nlink > 1) why = "has more than one link (a hard link)";
  }
  if (why) {
    snprintf(err, errlen, "%s %s (owner uid %u, mode %04o, links %u), not a "
             "file of uid %u's alone; remove it", lp->log->file, why,
             (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
             (unsigned)st.st_nlink, (unsigned)owner);
    rc = MLY_EPERM;
  }
  if (rc < 0) {
    if (fd >= 0) close(fd);
    if (*err == '\0')
      snprintf(err, errlen, "%s: %s", lp->log->file, rc == -ELOOP ?
               "it is a symbolic link, which is never followed; remove it" :
               mly_strerror(rc));
    return rc;
  }
  int fl = fcntl(fd, F_GETFL); /* writes block as before */
  if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  lp->file_fd = fd;
  lp->size = (uint64_t)st.st_size;
  return 0;
}

/* Names (FILE, FILE.1 .. FILE.keep) made before the fork: the renames
 * run as the program's user (mly_run_as), in the directory held open. */
typedef struct rot_args {
  int dir_fd;
  uint32_t keep;
  char **names;
} rot_args;

static int rotate_fn(void *arg) {
  const rot_args *r = arg;
  for (uint32_t i = r->keep; i > 1; i--)
    if (renameat(r->dir_fd, r->names[i - 1], r->dir_fd, r->names[i]) < 0 &&
        errno != ENOENT) /* a missing one is fine */
      return -errno;
  int rc = r->keep > 0 ? renameat(r->dir_fd, r->names[0], r->dir_fd, r->names[1])
                       : unlinkat(r->dir_fd, r->names[0], 0);
  return rc < 0 ? -errno : 0;
}

static int rotate_files(sv_logpipe *lp) {
  const sv_log *l = lp->log;
  char **names = calloc((size_t)l->keep + 1, sizeof *names);
  int rc = names ? 0 : MLY_ENOMEM;
  for (uint32_t i = 0; rc == 0 && i <= l->keep; i++)
    if (asprintf(&names[i], i ? "%s.%u" : "%s", base_of(l->file), i) < 0)
      names[i] = NULL, rc = MLY_ENOMEM;
  if (rc == 0) {
    mly_process_options as;
    as_user(lp->prog, &as);
    rot_args r = {lp->dir_fd, l->keep, names};
    rc = mly_run_as(&as, rotate_fn, &r);
  }
  for (uint32_t i = 0; names && i <= l->keep; i++) free(names[i]);
  free(names);
  return rc;
}

/* A failed rotation leaves the file open and growing, up to twice
 * max_size; past that lines are dropped (and counted).  It is tried
 * again every SV_ROTATE_RETRY_MS and said at most every
 * SV_ROTATE_SAY_MS. */
#define SV_ROTATE_RETRY_MS 10000u
#define SV_ROTATE_SAY_MS 60000u

/* Opened again in the directory held since the first open (SIGHUP,
 * `mealy ctl reopen`, or the file found removed or moved). */
static void reopen(sv_logpipe *lp) {
  if (lp->file_fd >= 0) close(lp->file_fd);
  lp->file_fd = -1;
  char err[512];
  if (open_log(lp, err, sizeof err) < 0)
    sv_logf(lp->s, lp->name, "cannot reopen log %s; its output goes to the "
            "supervisor's own output from now on", err);
}

/* Removed (no link left) or moved (its name in the held directory names
 * another file, or none): the next line goes to a new file there.  The
 * held directory, not the path: after the path's directory is swapped,
 * the path names another file for ever, and each read would reopen. */
static void check_moved(sv_logpipe *lp) {
  struct stat fst, pst;
  if (lp->file_fd < 0 || lp->dir_fd < 0 || fstat(lp->file_fd, &fst) < 0)
    return;
  bool gone = fst.st_nlink == 0 ||
              fstatat(lp->dir_fd, base_of(lp->log->file), &pst,
                      AT_SYMLINK_NOFOLLOW) < 0 ||
              pst.st_dev != fst.st_dev || pst.st_ino != fst.st_ino;
  if (!gone) return;
  sv_logf(lp->s, lp->name, "log %s was removed or moved: opening it anew",
          lp->log->file);
  reopen(lp);
}

static void rotate(sv_logpipe *lp) {
  const sv_log *l = lp->log;
  uint64_t now = uv_now(lp->s->loop);
  if (lp->rot_last_ms && now - lp->rot_last_ms < SV_ROTATE_RETRY_MS) return;
  int rc = rotate_files(lp);
  if (rc < 0) {
    lp->rot_last_ms = now ? now : 1;
    if (lp->rot_said_ms == 0 || now - lp->rot_said_ms >= SV_ROTATE_SAY_MS) {
      lp->rot_said_ms = now ? now : 1;
      sv_logf(lp->s, lp->name, "cannot rotate log %s: %s; it grows to at most "
              "%llu bytes (twice max_size), then its lines are dropped "
              "(%llu so far); trying again every %us", l->file,
              mly_strerror(rc), (unsigned long long)l->max_size * 2,
              (unsigned long long)lp->dropped, SV_ROTATE_RETRY_MS / 1000);
    }
    return;
  }
  if (lp->dropped)
    sv_logf(lp->s, lp->name, "log %s rotated again; %llu lines were dropped",
            l->file, (unsigned long long)lp->dropped);
  lp->rot_last_ms = lp->rot_said_ms = lp->dropped = 0;
  close(lp->file_fd);
  char err[512];
  if (open_log(lp, err, sizeof err) < 0)
    sv_logf(lp->s, lp->name, "cannot reopen log %s; its output goes to the "
            "supervisor's own output from now on", err);
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return; /* a full disk loses log lines, not the supervisor */
    p += w;
    n -= (size_t)w;
  }
}

static void emit(sv_logpipe *lp, const char *line, size_t len) {
  if (lp->kind == LP_NOTIFY) {
    if (lp->p) mly_runtime_send(lp->s->rt, lp->p->machine, SV_EV_NOTIFIED, NULL);
    return;
  }
  if (lp->p) sv_proc_tail_add(lp->p, line, len);
  int k = lp->kind == LP_STDERR;
  uint64_t none = 0, *bytes = lp->p ? &lp->p->log_bytes[k] : &none,
           *lost = lp->p ? &lp->p->log_dropped[k] : &none;
  if (lp->log->mode == SV_OUT_FILE && lp->file_fd >= 0) {
    if (lp->log->max_size > 0 && lp->size > 0 &&
        lp->size + len + 1 > lp->log->max_size)
      rotate(lp);
    if (lp->file_fd < 0) {
      (*lost)++;
      return;
    }
    if (lp->log->max_size > 0 && lp->size > 0 &&
        lp->size + len + 1 > 2 * lp->log->max_size) {
      lp->dropped++; /* the hard bound of a log that cannot rotate */
      (*lost)++;
      return;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) {
      (*lost)++;
      return;
    }
    memcpy(copy, line, len);
    copy[len] = '\n';
    write_all(lp->file_fd, copy, len + 1); /* one write: lines stay whole */
    free(copy);
    lp->size += len + 1;
    *bytes += len + 1;
    return;
  }
  /* bytes as written; escaped only for a terminal */
  char prefix[80];
  int pl = snprintf(prefix, sizeof prefix, "[%s] ", lp->name);
  outq *q = lp->kind == LP_STDERR ? lp->s->err : lp->s->out;
  uint64_t before = outq_dropped(q);
  outq_line(q, prefix, (size_t)pl, line, len, true);
  if (outq_dropped(q) != before) (*lost)++;
  else *bytes += len + 1;
}

static void closed_cb(uv_handle_t *h) {
  sv_logpipe *lp = h->data;
  if (lp->file_fd >= 0) close(lp->file_fd);
  if (lp->dir_fd >= 0) close(lp->dir_fd);
  free(lp);
}

static void fifo_remove(sv_logpipe *lp);

static void lp_close(sv_logpipe *lp) {
  if (uv_is_closing((uv_handle_t *)&lp->h)) return;
  fifo_remove(lp);
  if (lp->n > 0 && lp->kind != LP_NOTIFY) emit(lp, lp->buf, lp->n);
  lp->n = 0;
  if (lp->child_fd >= 0) close(lp->child_fd);
  lp->child_fd = -1;
  if (lp->kind == LP_NOTIFY && lp->p && lp->p->notify == lp)
    lp->p->notify = NULL; /* its owner must not reach it again */
  if (lp->pprev) { /* unlink */
    *lp->pprev = lp->next;
    if (lp->next) lp->next->pprev = lp->pprev;
    lp->pprev = NULL;
  }
  uv_close((uv_handle_t *)&lp->h, closed_cb);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)hint;
  sv_logpipe *lp = h->data;
  *b = uv_buf_init(lp->buf + lp->n, (unsigned)(sizeof lp->buf - lp->n));
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  (void)b;
  sv_logpipe *lp = st->data;
  if (nread < 0) {
    lp_close(lp);
    return;
  }
  lp->n += (size_t)nread;
  if (lp->kind != LP_NOTIFY && lp->log->mode == SV_OUT_FILE) check_moved(lp);
  size_t start = 0;
  for (size_t i = 0; i < lp->n; i++) {
    if (lp->buf[i] != '\n') continue;
    emit(lp, lp->buf + start, i - start);
    start = i + 1;
    if (lp->kind == LP_NOTIFY) { /* one line is all readiness needs */
      lp->n = 0;
      lp_close(lp);
      return;
    }
  }
  memmove(lp->buf, lp->buf + start, lp->n - start);
  lp->n -= start;
  if (lp->n == sizeof lp->buf) { /* a very long line: write a piece */
    emit(lp, lp->buf, lp->n);
    lp->n = 0;
  }
}

/* Its lines are not lost: emit() writes them to our own output. */
static void log_refused(sv_logpipe *lp, const char *err) {
  const sv_program *g = lp->prog;
  char who[96] = "";
  if (g->has_uid)
    snprintf(who, sizeof who, " (opened as user %s)", g->user ? g->user : "?");
  sv_logf(lp->s, lp->name, "cannot open log %s%s; its %s goes to the "
          "supervisor's own %s instead, as [%s] lines", err, who,
          lp->kind == LP_STDERR ? "stderr" : "stdout",
          lp->kind == LP_STDERR ? "stderr" : "stdout", lp->name);
}

/* ---- FIFOs in the state directory: output that outlives us ---- */

static void fifo_name(const char *name, lp_kind kind, char *buf, size_t len) {
  snprintf(buf, len, "fifo-%s.%s", name, kind == LP_STDERR ? "err" : "out");
}

/* Ours to read: a FIFO owned by us, not a file swapped in. */
static int fifo_check(int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0) return -errno;
  return S_ISFIFO(st.st_mode) && st.st_uid == geteuid() ? 0 : MLY_EINVAL;
}

/* A fresh FIFO for a child about to start: fds[0] our read end, fds[1]
 * the child's end, opened read-write so that a reader exists as long as
 * the child does: when the supervisor dies, the child's writes fill the
 * FIFO's buffer and then block; they never fail with EPIPE. */
static int fifo_open(sv *s, const sv_proc *p, lp_kind kind, int fds[2]) {
  char fn[128];
  fifo_name(p->name, kind, fn, sizeof fn);
  if (unlinkat(s->state_fd, fn, 0) < 0 && errno != ENOENT) return -errno;
  if (mkfifoat(s->state_fd, fn, 0600) < 0) return -errno;
  fds[0] = openat(s->state_fd, fn, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
  if (fds[0] < 0) return -errno;
  fds[1] = openat(s->state_fd, fn, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  int rc = fds[1] < 0 ? -errno : fifo_check(fds[0]);
  if (rc < 0) {
    close(fds[0]);
    if (fds[1] >= 0) close(fds[1]);
  }
  return rc;
}

/* The FIFO goes with the last writer, if the path still names it. */
static void fifo_remove(sv_logpipe *lp) {
  char fn[128];
  struct stat mine, now;
  uv_os_fd_t fd;
  if (!lp->fifo) return;
  fifo_name(lp->name, lp->kind, fn, sizeof fn);
  if (uv_fileno((uv_handle_t *)&lp->h, &fd) == 0 && fstat(fd, &mine) == 0 &&
      fstatat(lp->s->state_fd, fn, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
      mine.st_dev == now.st_dev && mine.st_ino == now.st_ino)
    unlinkat(lp->s->state_fd, fn, 0);
}

/* A reader on rfd (and the child's end, cfd, until the spawn). */
static int lp_new(sv *s, sv_proc *p, lp_kind kind, int rfd, int cfd,
                  bool fifo, sv_logpipe **out) {
  sv_logpipe *lp = calloc(1, sizeof *lp);
  if (lp == NULL) {
    close(rfd);
    if (cfd >= 0) close(cfd);
    return MLY_ENOMEM;
  }
  lp->s = s;
  lp->p = p;
  lp->kind = kind;
  lp->fifo = fifo;
  lp->file_fd = lp->dir_fd = -1;
  lp->child_fd = cfd;
  lp->log = kind == LP_STDERR ? &p->prog->err : &p->prog->out;
  lp->prog = p->prog;
  snprintf(lp->name, sizeof lp->name, "%s", p->name);
  uv_pipe_init(s->loop, &lp->h, 0);
  lp->h.data = lp;
  lp->next = s->pipes;
  if (s->pipes) s->pipes->pprev = &lp->next;
  s->pipes = lp;
  lp->pprev = &s->pipes;
  int rc = uv_pipe_open(&lp->h, rfd);
  if (rc < 0) close(rfd);
  char err[512];
  if (rc == 0 && kind != LP_NOTIFY && lp->log->mode == SV_OUT_FILE &&
      open_log(lp, err, sizeof err) < 0)
    log_refused(lp, err);
  if (rc == 0) rc = uv_read_start((uv_stream_t *)&lp->h, alloc_cb, read_cb);
  if (rc < 0) {
    lp_close(lp);
    return rc;
  }
  *out = lp;
  return 0;
}

int logpipe_open(sv *s, sv_proc *p, lp_kind kind, int *child_fd,
                 sv_logpipe **out) {
  int fds[2];
  bool fifo = s->state_fd >= 0 && kind != LP_NOTIFY;
  int rc = fifo ? fifo_open(s, p, kind, fds) : 0;
  if (rc < 0) {
    sv_logf(s, p->name, "cannot make its output FIFO in the state directory "
            "(%s): a pipe instead; its output is lost if the supervisor dies",
            mly_strerror(rc));
    fifo = false;
  }
  if (!fifo) rc = pipe2(fds, O_CLOEXEC) < 0 ? -errno : 0;
  if (rc < 0) return rc;
  rc = lp_new(s, p, kind, fds[0], fds[1], fifo, out);
  if (rc == 0) *child_fd = fds[1];
  return rc;
}

void logpipe_adopt(sv *s, sv_proc *p) {
  if (s->state_fd < 0) return;
  for (lp_kind kind = LP_STDOUT; kind <= LP_STDERR; kind++) {
    char fn[128];
    sv_logpipe *lp;
    fifo_name(p->name, kind, fn, sizeof fn);
    int fd = openat(s->state_fd, fn, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    int rc = fd < 0 ? -errno : fifo_check(fd);
    if (rc == 0) rc = lp_new(s, p, kind, fd, -1, true, &lp);
    else if (fd >= 0) close(fd);
    if (rc < 0)
      sv_logf(s, p->name, "cannot reopen its %s (%s/%s): %s; what it writes "
              "is lost", kind == LP_STDERR ? "stderr" : "stdout", "state_dir",
              fn, mly_strerror(rc));
  }
}

void logpipe_spawned(sv_logpipe *lp) {
  if (lp->child_fd >= 0) close(lp->child_fd);
  lp->child_fd = -1;
}

void logpipe_detach(sv_logpipe *lp) {
  lp->p = NULL;
  if (lp->kind == LP_NOTIFY) lp_close(lp);
}

void logpipe_forget_proc(sv *s, sv_proc *p) {
  sv_logpipe *lp = s->pipes;
  while (lp) {
    sv_logpipe *next = lp->next;
    if (lp->p == p) logpipe_detach(lp);
    lp = next;
  }
}

void logpipe_reopen_all(sv *s) {
  for (sv_logpipe *lp = s->pipes; lp; lp = lp->next)
    if (lp->kind != LP_NOTIFY && lp->log->mode == SV_OUT_FILE &&
        !uv_is_closing((uv_handle_t *)&lp->h))
      reopen(lp);
}

void logpipe_close_all(sv *s) {
  while (s->pipes) lp_close(s->pipes);
}
