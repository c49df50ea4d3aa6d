/*
 * pl_interpose.c - the LD_PRELOAD half of the power-loss simulator: it
 * lets every file system call happen and logs, in the order they
 * completed, those that change something under one directory (the root),
 * with the data of every write.  The image builder (pl_model.c) replays
 * the log under a power-loss model: file data is durable only once its
 * file is fsync'ed or fdatasync'ed, a directory entry (create, mkdir,
 * unlink, rename) only once its directory is fsync'ed.
 *
 *   POWERLOSS_DIR    the root: an absolute, normalized path
 *   POWERLOSS_LOG    the log file (outside the root); records are appended
 *   POWERLOSS_ACKFD  an fd whose writes are logged as acknowledgements
 *   POWERLOSS_KILL_WRITE  N: SIGKILL the process right after the Nth logged
 *                    write, before anything can sync it (a crash that
 *                    leaves an unsynced tail for the next run to find)
 *   POWERLOSS_KILL_CROSS  C: the same, right after the first write that
 *                    takes a file past a multiple of C bytes (the write
 *                    that fills a segment)
 *   POWERLOSS_KILL_CREATED  B: the same, right after the first write that
 *                    takes a file this process created past B bytes (the
 *                    first records of a new segment or snapshot, past
 *                    its header)
 *
 * Without POWERLOSS_DIR it does nothing.  A descriptor is tracked from
 * the open that named a path under the root until its close; every
 * tracked call re-checks the descriptor's inode, so a descriptor closed
 * behind our back (closedir) and reused is never mistaken for the file.
 * Calls the model cannot express (a shared writable mapping, links,
 * O_TMPFILE, hole punching, copy_file_range and sendfile into a file)
 * are logged as PL_UNSUPPORTED and make the checker fail instead of
 * proving something false.  One mutex serializes the logged calls (the
 * journal writes from libuv's threadpool); calls on descriptors that are
 * not tracked never take it, so a signal handler writing to libuv's
 * self-pipe cannot deadlock.
 */
#undef _FILE_OFFSET_BITS /* define open and open64 each under its own name */
#include "pl_log.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define FD_MAX 16384

static struct {
  bool on;
  bool created; /* this process made the file (POWERLOSS_KILL_CREATED) */
  dev_t dev;
  ino_t ino;
} fds[FD_MAX];

static bool active;
static char root[PL_PATH_MAX];
static size_t rootlen;
static int logfd = -1, ackfd = -1;
static unsigned long writes, kill_write, kill_cross, kill_created;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static __thread int in_hook;

/* ---- the real functions ---- */

static void *real_fn(void **slot, const char *name) {
  void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
  if (p == NULL) {
    p = dlsym(RTLD_NEXT, name);
    if (p == NULL) abort(); /* a libc without it: nothing to simulate */
    __atomic_store_n(slot, p, __ATOMIC_RELEASE);
  }
  return p;
}

#define REAL(ret, name, ...)                                                 \
  static void *name##_slot;                                                  \
  ret (*real_##name)(__VA_ARGS__) = real_fn(&name##_slot, #name)

/* ---- the log ---- */

static void die(const char *what) {
  static const char pre[] = "pl_interpose: cannot write the log: ";
  ssize_t (*w)(int, const void *, size_t) = dlsym(RTLD_NEXT, "write");
  if (w) {
    (void)!w(2, pre, sizeof pre - 1);
    (void)!w(2, what, strlen(what));
    (void)!w(2, "\n", 1);
  }
  abort(); /* a log with a hole would prove nothing */
}

static void emit(uint32_t op, int fd, int fd2, uint32_t flags, uint64_t off,
                 const char *p, const char *p2, const void *data,
                 uint64_t len) {
  REAL(ssize_t, writev, int, const struct iovec *, int);
  pl_rec r = {PL_MAGIC, op, fd, fd2, flags, p ? (uint32_t)strlen(p) : 0,
              p2 ? (uint32_t)strlen(p2) : 0, 0, off, data ? len : 0};
  struct iovec v[4] = {{&r, sizeof r}, {(void *)(p ? p : ""), r.plen},
                       {(void *)(p2 ? p2 : ""), r.p2len},
                       {(void *)(data ? data : ""), (size_t)r.len}};
  size_t total = sizeof r + r.plen + r.p2len + r.len;
  int iv = 0;
  while (total > 0) {
    ssize_t w = real_writev(logfd, v + iv, 4 - iv);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die(strerror(errno));
    total -= (size_t)w;
    while (iv < 4 && (size_t)w >= v[iv].iov_len) w -= (ssize_t)v[iv++].iov_len;
    if (iv < 4) {
      v[iv].iov_base = (char *)v[iv].iov_base + w;
      v[iv].iov_len -= (size_t)w;
    }
  }
}

/* ---- paths ---- */

/* Lexically normalizes an absolute path in place ("." "..", "//"). */
static void normalize(char *path) {
  char out[PL_PATH_MAX];
  size_t n = 0;
  const char *s = path;
  while (*s) {
    while (*s == '/') s++;
    const char *e = s;
    while (*e && *e != '/') e++;
    size_t len = (size_t)(e - s);
    if (len == 0 || (len == 1 && s[0] == '.')) {
    } else if (len == 2 && s[0] == '.' && s[1] == '.') {
      while (n > 0 && out[n - 1] != '/') n--;
      if (n > 0) n--;
    } else if (n + 1 + len < sizeof out) {
      out[n++] = '/';
      memcpy(out + n, s, len);
      n += len;
    }
    s = e;
  }
  if (n == 0) out[n++] = '/';
  out[n] = '\0';
  memcpy(path, out, n + 1);
}

/* Is dirfd/path under the root?  Then rel gets the path relative to it. */
static bool under_root(int dirfd, const char *path, char *rel) {
  char abs[PL_PATH_MAX];
  if (!active || path == NULL) return false;
  if (path[0] == '/') {
    snprintf(abs, sizeof abs, "%s", path);
  } else {
    char base[PL_PATH_MAX];
    if (dirfd == AT_FDCWD) {
      if (getcwd(base, sizeof base) == NULL) return false;
    } else {
      char link[64];
      snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
      ssize_t n = readlink(link, base, sizeof base - 1);
      if (n <= 0) return false;
      base[n] = '\0';
    }
    size_t bl = strlen(base), pl = strlen(path);
    if (bl + 1 + pl >= sizeof abs) return false;
    memcpy(abs, base, bl);
    abs[bl] = '/';
    memcpy(abs + bl + 1, path, pl + 1);
  }
  normalize(abs);
  if (strncmp(abs, root, rootlen) != 0) return false;
  if (abs[rootlen] == '\0') {
    rel[0] = '\0';
    return true;
  }
  if (abs[rootlen] != '/') return false;
  memcpy(rel, abs + rootlen + 1, strlen(abs + rootlen + 1) + 1); /* < abs */
  return true;
}

/* ---- descriptors ---- */

static bool maybe_tracked(int fd) {
  return active && !in_hook && fd >= 0 &&
         (fd == ackfd || (fd < FD_MAX && __atomic_load_n(&fds[fd].on,
                                                         __ATOMIC_RELAXED)));
}

/* Under the lock: is fd still the file it was opened as? */
static bool tracked(int fd) {
  if (fd < 0 || fd >= FD_MAX || !fds[fd].on) return false;
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_dev == fds[fd].dev && st.st_ino == fds[fd].ino)
    return true;
  __atomic_store_n(&fds[fd].on, false, __ATOMIC_RELAXED); /* closed elsewhere */
  return false;
}

static void track(int fd, bool created) {
  struct stat st;
  if (fd >= FD_MAX) die("a tracked descriptor past FD_MAX");
  if (fstat(fd, &st) < 0) die("fstat of a new descriptor");
  fds[fd].dev = st.st_dev;
  fds[fd].ino = st.st_ino;
  fds[fd].created = created;
  __atomic_store_n(&fds[fd].on, true, __ATOMIC_RELAXED);
}

static void lock(void) {
  pthread_mutex_lock(&mu);
  in_hook++;
}

static void unlock(void) {
  in_hook--;
  pthread_mutex_unlock(&mu);
}

__attribute__((constructor)) static void pl_init(void) {
  const char *dir = getenv("POWERLOSS_DIR"), *log = getenv("POWERLOSS_LOG");
  const char *ack = getenv("POWERLOSS_ACKFD");
  if (dir == NULL || dir[0] != '/' || log == NULL) return;
  REAL(int, open, const char *, int, ...);
  snprintf(root, sizeof root, "%s", dir);
  normalize(root);
  rootlen = strlen(root);
  logfd = real_open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (logfd < 0) die(log);
  ackfd = ack ? atoi(ack) : -1;
  const char *kw = getenv("POWERLOSS_KILL_WRITE");
  kill_write = kw ? strtoul(kw, NULL, 10) : 0;
  const char *kc = getenv("POWERLOSS_KILL_CROSS");
  kill_cross = kc ? strtoul(kc, NULL, 10) : 0;
  const char *kn = getenv("POWERLOSS_KILL_CREATED");
  kill_created = kn ? strtoul(kn, NULL, 10) : 0;
  active = true;
}

/* ---- opening ---- */

static int after_open(int fd, const char *rel, int flags, bool created) {
  if (fd < 0) return fd;
  struct stat st;
  bool dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
  if ((flags & O_TMPFILE) == O_TMPFILE) {
    emit(PL_UNSUPPORTED, fd, -1, 0, 0, "O_TMPFILE", NULL, NULL, 0);
    return fd;
  }
  if (fd < FD_MAX && fds[fd].on) emit(PL_CLOSE, fd, -1, 0, 0, NULL, NULL, NULL, 0);
  track(fd, created);
  emit(PL_OPEN, fd, -1, (uint32_t)flags, dir, rel, NULL, NULL, 0);
  return fd;
}

static int do_openat(int dirfd, const char *path, int flags, mode_t mode,
                     bool at) {
  REAL(int, openat, int, const char *, int, ...);
  char rel[PL_PATH_MAX];
  if (in_hook || !under_root(at ? dirfd : AT_FDCWD, path, rel))
    return real_openat(at ? dirfd : AT_FDCWD, path, flags, mode);
  lock();
  struct stat st;
  bool existed = fstatat(at ? dirfd : AT_FDCWD, path, &st, 0) == 0;
  int fd = real_openat(at ? dirfd : AT_FDCWD, path, flags, mode);
  int e = errno;
  after_open(fd, rel, flags, !existed);
  unlock();
  errno = e;
  return fd;
}

static mode_t mode_arg(int flags, va_list ap) {
  return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE
             ? (mode_t)va_arg(ap, int) : 0;
}

/* open and open64, openat and openat64: the mode comes only with O_CREAT
 * or O_TMPFILE */
#define MODE_ARG(m, flags)                                                   \
  va_list ap;                                                                \
  va_start(ap, flags);                                                       \
  mode_t m = mode_arg(flags, ap);                                            \
  va_end(ap)
#define OPEN_HOOK(name)                                                      \
  int name(const char *path, int flags, ...) {                               \
    MODE_ARG(m, flags);                                                      \
    return do_openat(AT_FDCWD, path, flags, m, false);                       \
  }
#define OPENAT_HOOK(name)                                                    \
  int name(int dirfd, const char *path, int flags, ...) {                    \
    MODE_ARG(m, flags);                                                      \
    return do_openat(dirfd, path, flags, m, true);                           \
  }
OPEN_HOOK(open)
OPEN_HOOK(open64)
OPENAT_HOOK(openat)
OPENAT_HOOK(openat64)

/* _FORTIFY_SOURCE's entries */
int __open_2(const char *path, int flags) {
  return do_openat(AT_FDCWD, path, flags, 0, false);
}
int __open64_2(const char *path, int flags) {
  return do_openat(AT_FDCWD, path, flags, 0, false);
}
int __openat_2(int dirfd, const char *path, int flags) {
  return do_openat(dirfd, path, flags, 0, true);
}
int __openat64_2(int dirfd, const char *path, int flags) {
  return do_openat(dirfd, path, flags, 0, true);
}
int creat(const char *path, mode_t mode) {
  return do_openat(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, mode, false);
}
int creat64(const char *path, mode_t mode) {
  return do_openat(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, mode, false);
}

int close(int fd) {
  REAL(int, close, int);
  if (!maybe_tracked(fd) || fd == ackfd) return real_close(fd);
  lock();
  bool t = tracked(fd);
  int rc = real_close(fd);
  int e = errno;
  if (t) {
    __atomic_store_n(&fds[fd].on, false, __ATOMIC_RELAXED);
    emit(PL_CLOSE, fd, -1, 0, 0, NULL, NULL, NULL, 0); /* closed even on error */
  }
  unlock();
  errno = e;
  return rc;
}

static int do_dup(int old, int want, int flags, int how) {
  REAL(int, dup, int);
  REAL(int, dup2, int, int);
  REAL(int, dup3, int, int, int);
  bool hook = maybe_tracked(old) || (how && maybe_tracked(want));
  if (!hook) return how == 0 ? real_dup(old) : how == 2 ? real_dup2(old, want)
                                                   : real_dup3(old, want, flags);
  lock();
  bool t = tracked(old), tw = how && want != old && tracked(want);
  int fd = how == 0 ? real_dup(old) : how == 2 ? real_dup2(old, want)
                                      : real_dup3(old, want, flags);
  int e = errno;
  if (fd >= 0 && fd != old) {
    if (tw) {
      __atomic_store_n(&fds[want].on, false, __ATOMIC_RELAXED);
      emit(PL_CLOSE, want, -1, 0, 0, NULL, NULL, NULL, 0);
    }
    if (t) {
      track(fd, fds[old].created);
      emit(PL_DUP, old, fd, 0, 0, NULL, NULL, NULL, 0);
    }
  }
  unlock();
  errno = e;
  return fd;
}
int dup(int fd) { return do_dup(fd, -1, 0, 0); }
int dup2(int fd, int to) { return do_dup(fd, to, 0, 2); }
int dup3(int fd, int to, int flags) { return do_dup(fd, to, flags, 3); }

/* ---- writing ---- */

/* Logs n bytes written at off (-1: where the write left the offset). */
static void log_write(int fd, int64_t off, const void *buf, size_t n) {
  if (fd == ackfd) {
    emit(PL_ACK, fd, -1, 0, 0, NULL, NULL, buf, n);
    return;
  }
  if (!tracked(fd)) return;
  if (off < 0) off = (int64_t)lseek(fd, 0, SEEK_CUR) - (int64_t)n;
  emit(PL_WRITE, fd, -1, 0, (uint64_t)off, NULL, NULL, buf, n);
  uint64_t end = (uint64_t)off + n;
  if (++writes == kill_write ||
      (kill_cross && end / kill_cross > (uint64_t)off / kill_cross) ||
      (kill_created && fds[fd].created && end > kill_created))
    kill(getpid(), SIGKILL);
}

/* The bytes of an iovec, as one buffer (the caller frees it). */
static void *gather(const struct iovec *iov, int cnt, size_t n) {
  char *b = malloc(n ? n : 1);
  if (b == NULL) die("out of memory");
  size_t at = 0;
  for (int i = 0; i < cnt && at < n; i++) {
    size_t k = iov[i].iov_len < n - at ? iov[i].iov_len : n - at;
    memcpy(b + at, iov[i].iov_base, k);
    at += k;
  }
  return b;
}

ssize_t write(int fd, const void *buf, size_t n) {
  REAL(ssize_t, write, int, const void *, size_t);
  if (!maybe_tracked(fd)) return real_write(fd, buf, n);
  lock();
  ssize_t w = real_write(fd, buf, n);
  int e = errno;
  if (w > 0) log_write(fd, -1, buf, (size_t)w);
  unlock();
  errno = e;
  return w;
}

static ssize_t do_pwrite(int fd, const void *buf, size_t n, off_t off) {
  REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
  if (!maybe_tracked(fd)) return real_pwrite(fd, buf, n, off);
  lock();
  ssize_t w = real_pwrite(fd, buf, n, off);
  int e = errno;
  int fl = fcntl(fd, F_GETFL);
  /* O_APPEND makes Linux append whatever the offset says */
  if (w > 0) log_write(fd, fl >= 0 && (fl & O_APPEND) ? -1 : off, buf, (size_t)w);
  unlock();
  errno = e;
  return w;
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  return do_pwrite(fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
  return do_pwrite(fd, buf, n, off);
}

static void log_sync(int fd, uint32_t op);

/* writev, pwritev, pwritev2: off -1 is the file offset */
static ssize_t do_writev(int fd, const struct iovec *iov, int cnt, off_t off,
                         int flags, int how) {
  REAL(ssize_t, writev, int, const struct iovec *, int);
  REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
  REAL(ssize_t, pwritev2, int, const struct iovec *, int, off_t, int);
  ssize_t w;
#define CALL()                                                               \
  (how == 0 ? real_writev(fd, iov, cnt)                                      \
            : how == 1 ? real_pwritev(fd, iov, cnt, off)                      \
                       : real_pwritev2(fd, iov, cnt, off, flags))
  if (!maybe_tracked(fd)) return CALL();
  lock();
  w = CALL();
#undef CALL
  int e = errno;
  if (w > 0) {
    void *b = gather(iov, cnt, (size_t)w);
    int fl = fcntl(fd, F_GETFL);
    bool append = fl >= 0 && (fl & O_APPEND);
    log_write(fd, how == 0 || off < 0 || append ? -1 : off, b, (size_t)w);
    free(b);
    if (how == 2 && (flags & (RWF_DSYNC | RWF_SYNC)) && tracked(fd))
      log_sync(fd, PL_FDATASYNC);
  }
  unlock();
  errno = e;
  return w;
}
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  return do_writev(fd, iov, cnt, -1, 0, 0);
}
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
  return do_writev(fd, iov, cnt, off, 0, 1);
}
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) {
  return do_writev(fd, iov, cnt, off, 0, 1);
}
ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off,
                 int flags) {
  return do_writev(fd, iov, cnt, off, flags, 2);
}
ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off_t off,
                    int flags) {
  return do_writev(fd, iov, cnt, off, flags, 2);
}

/* ---- sizes ---- */

static int do_ftruncate(int fd, off_t len) {
  REAL(int, ftruncate, int, off_t);
  if (!maybe_tracked(fd)) return real_ftruncate(fd, len);
  lock();
  int rc = real_ftruncate(fd, len);
  int e = errno;
  if (rc == 0 && tracked(fd))
    emit(PL_TRUNC, fd, -1, 0, (uint64_t)len, NULL, NULL, NULL, 0);
  unlock();
  errno = e;
  return rc;
}
int ftruncate(int fd, off_t len) { return do_ftruncate(fd, len); }
int ftruncate64(int fd, off_t len) { return do_ftruncate(fd, len); }

static int do_truncate(const char *path, off_t len) {
  REAL(int, truncate, const char *, off_t);
  char rel[PL_PATH_MAX];
  if (in_hook || !under_root(AT_FDCWD, path, rel)) return real_truncate(path, len);
  lock();
  int rc = real_truncate(path, len);
  int e = errno;
  if (rc == 0) emit(PL_TRUNC_PATH, -1, -1, 0, (uint64_t)len, rel, NULL, NULL, 0);
  unlock();
  errno = e;
  return rc;
}
int truncate(const char *path, off_t len) { return do_truncate(path, len); }
int truncate64(const char *path, off_t len) { return do_truncate(path, len); }

static int do_fallocate(int fd, int mode, off_t off, off_t len, bool posix) {
  REAL(int, fallocate, int, int, off_t, off_t);
  REAL(int, posix_fallocate, int, off_t, off_t);
  if (!maybe_tracked(fd))
    return posix ? real_posix_fallocate(fd, off, len)
                 : real_fallocate(fd, mode, off, len);
  lock();
  int rc = posix ? real_posix_fallocate(fd, off, len)
                 : real_fallocate(fd, mode, off, len);
  int e = errno;
  if (rc == 0 && tracked(fd)) {
    if (mode == 0)
      emit(PL_EXTEND, fd, -1, 0, (uint64_t)(off + len), NULL, NULL, NULL, 0);
    else if (mode != FALLOC_FL_KEEP_SIZE)
      emit(PL_UNSUPPORTED, fd, -1, 0, 0, "fallocate mode", NULL, NULL, 0);
  }
  unlock();
  errno = e;
  return rc;
}
int fallocate(int fd, int mode, off_t off, off_t len) {
  return do_fallocate(fd, mode, off, len, false);
}
int fallocate64(int fd, int mode, off_t off, off_t len) {
  return do_fallocate(fd, mode, off, len, false);
}
int posix_fallocate(int fd, off_t off, off_t len) {
  return do_fallocate(fd, 0, off, len, true);
}
int posix_fallocate64(int fd, off_t off, off_t len) {
  return do_fallocate(fd, 0, off, len, true);
}

/* ---- syncing ---- */

static void log_sync(int fd, uint32_t op) {
  emit(op, fd, -1, 0, 0, NULL, NULL, NULL, 0);
}

static int do_sync(int fd, uint32_t op) {
  REAL(int, fsync, int);
  REAL(int, fdatasync, int);
  if (!maybe_tracked(fd))
    return op == PL_FSYNC ? real_fsync(fd) : real_fdatasync(fd);
  lock();
  int rc = op == PL_FSYNC ? real_fsync(fd) : real_fdatasync(fd);
  int e = errno;
  if (rc == 0 && tracked(fd)) log_sync(fd, op);
  unlock();
  errno = e;
  return rc;
}
int fsync(int fd) { return do_sync(fd, PL_FSYNC); }
int fdatasync(int fd) { return do_sync(fd, PL_FDATASYNC); }

int sync_file_range(int fd, off_t off, off_t n, unsigned flags) {
  REAL(int, sync_file_range, int, off_t, off_t, unsigned);
  if (!maybe_tracked(fd)) return real_sync_file_range(fd, off, n, flags);
  lock();
  int rc = real_sync_file_range(fd, off, n, flags);
  int e = errno;
  if (rc == 0 && tracked(fd)) log_sync(fd, PL_SYNC_RANGE);
  unlock();
  errno = e;
  return rc;
}

void sync(void) {
  REAL(void, sync, void);
  if (!active || in_hook) {
    real_sync();
    return;
  }
  lock();
  real_sync();
  emit(PL_SYNC_ALL, -1, -1, 0, 0, NULL, NULL, NULL, 0);
  unlock();
}

int syncfs(int fd) {
  REAL(int, syncfs, int);
  if (!active || in_hook) return real_syncfs(fd);
  lock();
  int rc = real_syncfs(fd);
  int e = errno;
  if (rc == 0) emit(PL_SYNC_ALL, -1, -1, 0, 0, NULL, NULL, NULL, 0);
  unlock();
  errno = e;
  return rc;
}

/* ---- directory entries ---- */

/* One path call: op logged when it succeeds, with what (NULL: the path
 * relative to the root). */
#define PATH_CALL(op, what, dirfd, path, call)                               \
  do {                                                                       \
    char rel_[PL_PATH_MAX];                                                  \
    if (in_hook || !under_root(dirfd, path, rel_)) return call;              \
    lock();                                                                  \
    int rc_ = call;                                                          \
    int e_ = errno;                                                          \
    const char *w_ = what;                                                   \
    if (rc_ == 0) emit(op, -1, -1, 0, 0, w_ ? w_ : rel_, NULL, NULL, 0);     \
    unlock();                                                                \
    errno = e_;                                                              \
    return rc_;                                                              \
  } while (0)

int mkdir(const char *path, mode_t mode) {
  REAL(int, mkdir, const char *, mode_t);
  PATH_CALL(PL_MKDIR, NULL, AT_FDCWD, path, real_mkdir(path, mode));
}
int mkdirat(int dirfd, const char *path, mode_t mode) {
  REAL(int, mkdirat, int, const char *, mode_t);
  PATH_CALL(PL_MKDIR, NULL, dirfd, path, real_mkdirat(dirfd, path, mode));
}
int unlink(const char *path) {
  REAL(int, unlink, const char *);
  PATH_CALL(PL_UNLINK, NULL, AT_FDCWD, path, real_unlink(path));
}
int rmdir(const char *path) {
  REAL(int, rmdir, const char *);
  PATH_CALL(PL_RMDIR, NULL, AT_FDCWD, path, real_rmdir(path));
}
int unlinkat(int dirfd, const char *path, int flags) {
  REAL(int, unlinkat, int, const char *, int);
  PATH_CALL(flags & AT_REMOVEDIR ? PL_RMDIR : PL_UNLINK, NULL, dirfd, path,
            real_unlinkat(dirfd, path, flags));
}

static int do_rename(int d1, const char *p1, int d2, const char *p2,
                     unsigned flags, int how) {
  REAL(int, rename, const char *, const char *);
  REAL(int, renameat, int, const char *, int, const char *);
  REAL(int, renameat2, int, const char *, int, const char *, unsigned);
  char r1[PL_PATH_MAX], r2[PL_PATH_MAX];
#define CALL()                                                               \
  (how == 0 ? real_rename(p1, p2)                                            \
            : how == 1 ? real_renameat(d1, p1, d2, p2)                        \
                       : real_renameat2(d1, p1, d2, p2, flags))
  bool a = !in_hook && under_root(how ? d1 : AT_FDCWD, p1, r1);
  bool b = !in_hook && under_root(how ? d2 : AT_FDCWD, p2, r2);
  if (!a && !b) return CALL();
  lock();
  int rc = CALL();
#undef CALL
  int e = errno;
  if (rc == 0) {
    if (a && b && !(flags & RENAME_EXCHANGE))
      emit(PL_RENAME, -1, -1, 0, 0, r1, r2, NULL, 0);
    else
      emit(PL_UNSUPPORTED, -1, -1, 0, 0, "rename across the root or exchange",
           NULL, NULL, 0);
  }
  unlock();
  errno = e;
  return rc;
}
int rename(const char *a, const char *b) { return do_rename(AT_FDCWD, a, AT_FDCWD, b, 0, 0); }
int renameat(int da, const char *a, int db, const char *b) {
  return do_rename(da, a, db, b, 0, 1);
}
int renameat2(int da, const char *a, int db, const char *b, unsigned flags) {
  return do_rename(da, a, db, b, flags, 2);
}

/* Links are not in the model: logged so the checker refuses the log. */
int link(const char *a, const char *b) {
  REAL(int, link, const char *, const char *);
  PATH_CALL(PL_UNSUPPORTED, "link", AT_FDCWD, b, real_link(a, b));
}
int linkat(int da, const char *a, int db, const char *b, int flags) {
  REAL(int, linkat, int, const char *, int, const char *, int);
  PATH_CALL(PL_UNSUPPORTED, "linkat", db, b, real_linkat(da, a, db, b, flags));
}
int symlink(const char *a, const char *b) {
  REAL(int, symlink, const char *, const char *);
  PATH_CALL(PL_UNSUPPORTED, "symlink", AT_FDCWD, b, real_symlink(a, b));
}
int symlinkat(const char *a, int db, const char *b) {
  REAL(int, symlinkat, const char *, int, const char *);
  PATH_CALL(PL_UNSUPPORTED, "symlinkat", db, b, real_symlinkat(a, db, b));
}

/* Copies the kernel makes into a file carry no data we could log. */
static void check_copy(int fd, const char *name) {
  if (!maybe_tracked(fd)) return;
  lock();
  if (tracked(fd)) emit(PL_UNSUPPORTED, fd, -1, 0, 0, name, NULL, NULL, 0);
  unlock();
}
ssize_t copy_file_range(int in, off_t *inoff, int out, off_t *outoff,
                        size_t n, unsigned flags) {
  REAL(ssize_t, copy_file_range, int, off_t *, int, off_t *, size_t, unsigned);
  check_copy(out, "copy_file_range");
  return real_copy_file_range(in, inoff, out, outoff, n, flags);
}
ssize_t sendfile(int out, int in, off_t *off, size_t n) {
  REAL(ssize_t, sendfile, int, int, off_t *, size_t);
  check_copy(out, "sendfile");
  return real_sendfile(out, in, off, n);
}

/* ---- mappings ---- */

/* A shared writable mapping writes behind the log's back. */
static void check_map(int fd, int prot, int flags) {
  if (fd < 0 || !(prot & PROT_WRITE) || !(flags & MAP_SHARED) ||
      !maybe_tracked(fd))
    return;
  lock();
  if (tracked(fd))
    emit(PL_UNSUPPORTED, fd, -1, 0, 0, "shared writable mmap", NULL, NULL, 0);
  unlock();
}
void *mmap(void *addr, size_t n, int prot, int flags, int fd, off_t off) {
  REAL(void *, mmap, void *, size_t, int, int, int, off_t);
  check_map(fd, prot, flags);
  return real_mmap(addr, n, prot, flags, fd, off);
}
void *mmap64(void *addr, size_t n, int prot, int flags, int fd, off_t off) {
  REAL(void *, mmap64, void *, size_t, int, int, int, off_t);
  check_map(fd, prot, flags);
  return real_mmap64(addr, n, prot, flags, fd, off);
}
