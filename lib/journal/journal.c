/*
 * journal.c - the live journal of a runtime: the state directory, its
 * lock, the segment being appended to, and group commit (D3).
 *
 * Records of one loop turn accumulate in `pend`, with the things to do
 * once they are durable (`pend_done`: release a machine, deliver an event,
 * report a durable post).  At the end of a batch, if no write is in
 * flight, the two are swapped into `fly` and one work item on the libuv
 * threadpool writes the whole batch and, under the `always` policy, runs
 * one fdatasync for it.  Its completion runs the done-list on the loop
 * thread.  While it is in flight the next batch accumulates: one fsync
 * serves every step of a turn, however many machines took one.
 *
 * What a work item writes is one frame (journal.h): the batch, chained
 * to the frame before, with how much of the segment was durable when it
 * was written, which is how a reader tells an acknowledged batch from
 * the one a crash cut short.  Every file and directory entry is durable
 * before anything that depends on it is acknowledged: a new segment's
 * header and the directory are synced when it is created, and the state
 * directory's parents when they are made.
 *
 * Any write or fdatasync error is final (fail-stop): the journal refuses
 * every later commit, every durable machine ends with the error, the host
 * is told through on_error, and the write is never retried: after a
 * failed fsync the kernel may have dropped the dirty pages, so a retry
 * that succeeds would prove nothing.
 *
 * The journal is the embedded store under durable machines (store.h,
 * D11): `journal_store_ops` at the end of this file is its table.  It
 * knows nothing of the runtime above it: it gets its loop from
 * mly_store.loop and reports completions (hooks.done), the end of a
 * batch (hooks.committed), fail-stop (hooks.failed) and its last handle
 * (hooks.closed) through the hooks the durable layer set.
 */
#include "../journal.h"
#include "../store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define DEFAULT_SEGMENT (64u << 20)

typedef struct dlist {
  jdone *v;
  size_t n, cap;
} dlist;

struct mly_journal {
  mly_store base;      /* first: a mly_journal is a mly_store */
  mly_journal_options opt;
  char dir[4096];
  int dirfd, lockfd, segfd;
  uint64_t seg_no, seg_bytes;
  uint64_t synced;     /* bytes of the segment known durable */
  uint32_t salt, chain; /* of the segment; the last frame's sum */
  uint64_t next_seq;
  jbuf pend, fly;
  dlist pend_done, fly_done;
  uv_work_t work;
  bool busy;           /* a work item is in flight */
  bool fly_sync;       /* ... and it syncs */
  uint64_t fly_synced; /* ... its frames say this much was durable */
  size_t fly_wrote;    /* ... and it wrote this many bytes */
  bool dirty;          /* written since the last fdatasync */
  int fly_rc;
  size_t wrote;        /* bytes of the last batch written that reached the
                          file (a failed write may have got part way):
                          kept by write_all, which every write of a batch
                          goes through, from the batch's first byte;
                          run_done answers durable posts by it */
  int failed;          /* fail-stop: the first error */
  bool closing;
  bool timer_open;
  uv_timer_t timer;    /* interval policy: the next fdatasync */
  uint64_t last_sync_ms;
  mly_journal_stats st;
  uint64_t fly_records;  /* records of the batch in flight */
  uint64_t flushed;      /* st.records when the last batch left */
  uint64_t fly_sync_ns;  /* how long its fdatasync took */
  journal_figures fig;
  jread rd;            /* recovery: what rp_record points into */
  bool rd_open;        /* ... until recover_end */
};

static const store_ops journal_store_ops;
static void journal_flush(mly_journal *j);
static int journal_write_sync(mly_journal *j, const jbuf *b);

/* Every byte that reaches a segment counts in the size of the journal
 * (bytes, total_bytes: mly_journal_stats) and in what metrics say was
 * written. */
static void count_written(mly_journal *j, size_t n) {
  j->st.bytes += n;
  j->st.total_bytes += n;
  j->seg_bytes += n;
  j->fig.written += n;
}

static const uint64_t bytes_le[] = {512, 2048, 8192, 32768, 131072, 524288,
                                    2097152, 8388608, 33554432};
static const uint64_t records_le[] = {1, 2, 4, 8, 16, 32, 64, 128, 256,
                                      1024, 4096};
static const uint64_t sync_le[] = {100000, 250000, 500000, 1000000, 2500000,
                                   5000000, 10000000, 25000000, 50000000,
                                   100000000, 250000000, 1000000000};
#define NB(a) (sizeof a / sizeof a[0])
const jbounds jh_batch_bytes = {bytes_le, NB(bytes_le)};
const jbounds jh_batch_records = {records_le, NB(records_le)};
const jbounds jh_sync_ns = {sync_le, NB(sync_le)};
_Static_assert(NB(bytes_le) <= JH_MAX && NB(records_le) <= JH_MAX &&
               NB(sync_le) <= JH_MAX, "jhist holds every bucket");

static void jhist_add(jhist *h, const jbounds *b, uint64_t v) {
  size_t i = 0;
  while (i < b->nle && v > b->le[i]) i++;
  h->n[i]++;
  h->count++;
  h->sum += v;
}

/* ---- the turn buffer (store.h) ---- */

#define J(s) ((mly_journal *)(s))
#define CJ(s) ((const mly_journal *)(s))

static const journal_figures *j_figures(const mly_store *s) {
  return &CJ(s)->fig;
}
static jbuf *j_buf(mly_store *s) { return &J(s)->pend; }
static uint64_t j_next_seq(mly_store *s) { return J(s)->next_seq++; }
static void j_seq_back(mly_store *s) { J(s)->next_seq--; }
static int j_failed(const mly_store *s) { return CJ(s)->failed; }
static bool j_idle(const mly_store *s) {
  const mly_journal *j = CJ(s);
  return !j->busy && j->pend.n == 0 && j->pend_done.n == 0;
}
static mly_journal_stats *j_stats(mly_store *s) { return &J(s)->st; }
static void j_flush(mly_store *s) { journal_flush(J(s)); }

static int j_on_commit(mly_store *s, const jdone *d) {
  dlist *l = &J(s)->pend_done;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 256;
    jdone *v = realloc(l->v, cap * sizeof *v);
    if (v == NULL) return MLY_ENOMEM;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = *d;
  return 0;
}

/* ---- the work item (threadpool) ---- */

static int fault(mly_journal *j, int op, size_t len) {
  return j->opt.fault ? j->opt.fault(j->opt.fault_arg, op, len) : 0;
}

/* Writes the buffers of v (at most 2) whole; *done: the bytes that
 * reached the file, also when it fails part way.  The fault hook sees one
 * write of their total. */
static int write_all(mly_journal *j, const struct iovec *v, int nv,
                     size_t *done_out) {
  size_t total = 0;
  *done_out = 0;
  for (int i = 0; i < nv; i++) total += v[i].iov_len;
  int f = fault(j, MLY_JOP_WRITE, total);
  if (f < 0) return f;
  bool short_write = f > 0 && (size_t)f < total;
  size_t limit = short_write ? (size_t)f : total;
  size_t done = 0;
  while (done < limit) {
    struct iovec w[2];
    int nw = 0;
    size_t skip = done, room = limit - done;
    for (int i = 0; i < nv && room > 0; i++) {
      if (skip >= v[i].iov_len) {
        skip -= v[i].iov_len;
        continue;
      }
      size_t k = v[i].iov_len - skip < room ? v[i].iov_len - skip : room;
      w[nw++] = (struct iovec){(char *)v[i].iov_base + skip, k};
      room -= k;
      skip = 0;
    }
    ssize_t n = writev(j->segfd, w, nw);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return MLY_EIO;
    done += (size_t)n;
    *done_out = done;
  }
  return short_write ? MLY_ENOSPC : 0; /* a short write is a full disk */
}

/* Writes n bytes of records as frames, split between records past
 * JR_MAX_FRAME; *wrote: the bytes that went to the file. */
static int write_frames(mly_journal *j, const unsigned char *p, size_t n,
                        uint64_t synced, size_t *wrote) {
  *wrote = 0;
  while (n > 0) {
    size_t k = 0;
    while (k < n) {
      size_t r = JR_HDR + (size_t)jr_le32(p + k);
      if (k > 0 && k + r > JR_MAX_FRAME) break;
      k += r;
    }
    unsigned char h[JR_FRAME_HDR];
    uint32_t sum = jr_frame_header(h, j->salt, j->chain, synced, p,
                                   (uint32_t)k);
    struct iovec v[2] = {{h, sizeof h}, {(void *)p, k}};
    size_t done;
    int rc = write_all(j, v, 2, &done);
    if (rc < 0) return rc;
    /* j->wrote counts in the batch's record bytes (where a durable post's
     * record ends), whole frames only: a frame cut short never verifies,
     * so none of its records can come back */
    j->wrote += k;
    j->chain = sum;
    *wrote += sizeof h + k;
    p += k;
    n -= k;
  }
  return 0;
}

static int sync_fd(mly_journal *j, int fd) {
  int f = fault(j, MLY_JOP_SYNC, 0);
  if (f < 0) return f;
  return fdatasync(fd) < 0 ? -errno : 0;
}

static void work_cb(uv_work_t *w) {
  mly_journal *j = w->data;
  int rc = write_frames(j, j->fly.p, j->fly.n, j->fly_synced, &j->fly_wrote);
  uint64_t t0 = uv_hrtime();
  if (rc == 0 && j->fly_sync) rc = sync_fd(j, j->segfd);
  j->fly_sync_ns = uv_hrtime() - t0;
  j->fly_rc = rc;
}

static void maybe_free(mly_journal *j);
static void fail_stop(mly_journal *j, int rc, const char *what);

/* rc < 0: the batch failed.  A durable post whose record had reached the
 * file (jdone.id: where it ends in the batch, wrote: how far the write
 * got) may be read back on the next open: its answer is MLY_EUNKNOWN;
 * one whose record did not is certainly not in the journal: rc. */
static void run_done(mly_journal *j, dlist *l, int rc, size_t wrote) {
  const store_hooks *h = &j->base.hooks;
  for (size_t i = 0; i < l->n; i++) h->done(h->arg, &l->v[i], rc, wrote);
  l->n = 0;
}

static void after_work_cb(uv_work_t *w, int status) {
  mly_journal *j = w->data;
  int rc = status < 0 ? status : j->fly_rc;
  j->busy = false;
  j->st.batches++;
  if (rc == 0) {
    count_written(j, j->fly_wrote);
    if (j->fly.n > 0) {
      jhist_add(&j->fig.batch_bytes, &jh_batch_bytes, j->fly_wrote);
      jhist_add(&j->fig.batch_records, &jh_batch_records, j->fly_records);
    }
    if (j->fly_sync) {
      jhist_add(&j->fig.sync_ns, &jh_sync_ns, j->fly_sync_ns);
      j->st.syncs++;
      j->dirty = false;
      j->synced = j->seg_bytes;
    } else if (j->fly.n > 0) {
      j->dirty = true;
    }
  }
  j->fly.n = 0;
  if (j->closing) {
    run_done(j, &j->fly_done, rc, j->wrote);
    j->wrote = 0;
    if (rc == 0 && !j->failed && j->pend.n > 0) rc = journal_write_sync(j, &j->pend);
    run_done(j, &j->pend_done, rc, j->wrote);
    maybe_free(j);
    return;
  }
  if (rc < 0) {
    fail_stop(j, rc, j->fly_sync ? "write or fdatasync" : "write");
    return;
  }
  run_done(j, &j->fly_done, 0, 0);
  if (j->base.hooks.committed) j->base.hooks.committed(j->base.hooks.arg);
  journal_flush(j);
}

/* ---- segments ---- */

static void seg_name(char *buf, size_t len, uint64_t no) {
  snprintf(buf, len, "seg-%020" PRIu64 ".mj", no); /* jr_seg_no reads it */
}

static uint32_t new_salt(const mly_journal *j) {
  uint32_t salt;
  if (getrandom(&salt, sizeof salt, GRND_NONBLOCK) == (ssize_t)sizeof salt)
    return salt;
  uint64_t t = uv_hrtime() ^ (uint64_t)getpid() << 32 ^ j->seg_no;
  return (uint32_t)(t ^ t >> 32) * 2654435761u; /* no entropy yet: differ */
}

/* A new segment: created, its header written and synced, and the
 * directory synced, before any batch goes into it. */
static int journal_new_segment(mly_journal *j, uint64_t no, uint32_t flags) {
  char name[32];
  if (no == 0) return MLY_ERANGE; /* the numbers wrapped: old would sort new */
  seg_name(name, sizeof name, no);
  int fd = openat(j->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND |
                  O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  int old = j->segfd;
  j->segfd = fd;
  uint32_t salt = new_salt(j);
  unsigned char h[JR_SEG_HDR];
  jr_seg_header(h, salt, old >= 0 ? j->chain : 0, no, flags);
  struct iovec v = {h, sizeof h};
  size_t done;
  int rc = write_all(j, &v, 1, &done);
  if (rc == 0) rc = sync_fd(j, fd);
  if (rc == 0 && fsync(j->dirfd) < 0) rc = -errno;
  if (rc < 0) {
    j->segfd = old;
    close(fd);
    return rc;
  }
  if (old >= 0) close(old);
  j->seg_no = no;
  j->seg_bytes = j->synced = sizeof h;
  j->salt = salt;
  j->chain = jr_le32(h + 28);
  j->st.segments++;
  return 0;
}

/* ---- flushing ---- */

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

static void flush_timer_cb(uv_timer_t *t) { journal_flush(t->data); }

static void journal_flush(mly_journal *j) {
  if (j->busy || j->closing) return;
  if (j->failed) {
    if (j->pend_done.n) run_done(j, &j->pend_done, j->failed, 0);
    j->pend.n = 0;
    return;
  }
  bool want_sync = j->opt.sync == MLY_SYNC_ALWAYS ||
                   (j->opt.sync == MLY_SYNC_INTERVAL && (j->dirty || j->pend.n) &&
                    now_ms() - j->last_sync_ms >= j->opt.interval_ms);
  if (j->pend.n == 0 && j->pend_done.n == 0 &&
      !(want_sync && j->dirty && j->opt.sync != MLY_SYNC_ALWAYS))
    return;
  if (j->pend.oom) {
    fail_stop(j, MLY_ENOMEM, "building a batch");
    return;
  }
  if (j->seg_bytes >= j->opt.segment_bytes && j->pend.n > 0) {
    /* the old segment is complete and synced under `always`; under the
     * other policies it gets its fdatasync now */
    if (j->dirty && fdatasync(j->segfd) < 0) {
      fail_stop(j, -errno, "fdatasync before a new segment");
      return;
    }
    int rc = journal_new_segment(j, j->seg_no + 1, 0);
    if (rc < 0) {
      fail_stop(j, rc, "creating a segment");
      return;
    }
  }
  jbuf tb = j->fly;
  j->fly = j->pend;
  j->pend = tb;
  j->pend.n = 0;
  dlist td = j->fly_done;
  j->fly_done = j->pend_done;
  j->pend_done = td;
  j->pend_done.n = 0;
  j->fly_records = j->st.records - j->flushed;
  j->flushed = j->st.records;
  j->fly_sync = want_sync && (j->fly.n > 0 || j->dirty);
  j->fly_synced = j->synced;
  j->wrote = 0;
  if (j->fly_sync) j->last_sync_ms = now_ms();
  j->busy = true;
  j->work.data = j;
  int rc = uv_queue_work(j->base.loop, &j->work, work_cb, after_work_cb);
  if (rc < 0) {
    j->busy = false;
    fail_stop(j, rc, "queueing a write");
    return;
  }
  if (j->opt.sync == MLY_SYNC_INTERVAL && !j->fly_sync)
    uv_timer_start(&j->timer, flush_timer_cb, j->opt.interval_ms, 0);
}

/* ---- fail-stop ---- */

static void fail_stop(mly_journal *j, int rc, const char *what) {
  if (j->failed) return;
  j->failed = rc;
  char msg[4400];
  snprintf(msg, sizeof msg, "journal %s: %s failed: %s; no more commits",
           j->dir, what, mly_strerror(rc));
  run_done(j, &j->fly_done, rc, j->wrote);
  run_done(j, &j->pend_done, rc, 0);
  j->pend.n = 0;
  if (j->base.hooks.failed) j->base.hooks.failed(j->base.hooks.arg, rc, msg);
}

/* ---- open and close ---- */

/* LOCK is ours alone: only its owner can open it, so no other user can
 * hold the lock (flock needs no more than an open descriptor). */
static int lock_dir(mly_journal *j, char *err, size_t errlen) {
  j->lockfd = openat(j->dirfd, "LOCK", O_RDWR | O_CREAT | O_NOFOLLOW |
                     O_NONBLOCK | O_CLOEXEC, 0600);
  if (j->lockfd < 0) {
    int e = -errno;
    snprintf(err, errlen, "%s/LOCK: cannot open: %s", j->dir,
             e == -ELOOP ? "it is a symbolic link; remove it" : mly_strerror(e));
    return e;
  }
  struct stat st;
  if (fstat(j->lockfd, &st) < 0) return -errno;
  if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1) {
    snprintf(err, errlen, "%s/LOCK: %s; remove it", j->dir,
             !S_ISREG(st.st_mode)     ? "is not a regular file"
             : st.st_uid != geteuid() ? "is owned by another user"
                                      : "has more than one link (a hard "
                                        "link to another file)");
    return MLY_EPERM;
  }
  if ((st.st_mode & 077) && fchmod(j->lockfd, 0600) < 0) return -errno;
  if (flock(j->lockfd, LOCK_EX | LOCK_NB) < 0) {
    int e = -errno;
    char pid[32] = "";
    ssize_t n = pread(j->lockfd, pid, sizeof pid - 1, 0);
    if (n > 0) pid[n] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    if (e == -EWOULDBLOCK)
      snprintf(err, errlen, "%s is in use by process %s (it holds %s/LOCK); "
               "stop it or choose another state directory", j->dir,
               *pid ? pid : "?", j->dir);
    else
      snprintf(err, errlen, "%s/LOCK: cannot lock: %s", j->dir, mly_strerror(e));
    return e == -EWOULDBLOCK ? MLY_EBUSY : e;
  }
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  if (ftruncate(j->lockfd, 0) < 0 || pwrite(j->lockfd, pid, (size_t)n, 0) != n) {
    int e = -errno;
    snprintf(err, errlen, "%s/LOCK: cannot write: %s", j->dir, mly_strerror(e));
    return e;
  }
  return 0;
}

/* Every entry of the state directory is ours alone, as the directory
 * is: not a symbolic link, owned by us, writable by nobody else, a
 * regular file with one link (or a FIFO of ours: the supervisor keeps
 * its programs' output in some).  Anything else is refused by name
 * before a byte of it is read. */
static int check_entries(mly_journal *j, char *err, size_t errlen) {
  int fd = dup(j->dirfd);
  DIR *d = fd < 0 ? NULL : fdopendir(fd);
  if (d == NULL) {
    int e = -errno;
    if (fd >= 0) close(fd);
    snprintf(err, errlen, "%s: cannot list: %s", j->dir, mly_strerror(e));
    return e;
  }
  rewinddir(d);
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    struct stat st;
    if (fstatat(j->dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) continue;
      rc = -errno;
      snprintf(err, errlen, "%s/%s: %s", j->dir, e->d_name, mly_strerror(rc));
      break;
    }
    uint64_t no;
    const char *what = jr_seg_no(e->d_name, &no) ? "segment file"
                                                 : "file of the state directory";
    const char *why = NULL; /* not a file at all: MLY_EBADMSG */
    if (S_ISLNK(st.st_mode)) why = "a symbolic link";
    else if (S_ISDIR(st.st_mode)) why = "a directory";
    else if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode))
      why = "neither a regular file nor a FIFO";
    rc = why ? MLY_EBADMSG : MLY_EPERM; /* else: not ours alone */
    if (why == NULL && st.st_uid != geteuid()) why = "owned by another user";
    else if (why == NULL && (st.st_mode & 022))
      why = "writable by its group or others";
    else if (why == NULL && st.st_nlink != 1)
      why = "a file with more than one link";
    if (why == NULL) {
      rc = 0;
      continue;
    }
    snprintf(err, errlen, "%s/%s: %s, not a %s of uid %u alone (owner uid %u, "
             "mode %04o, links %u); remove it", j->dir, e->d_name, why, what,
             (unsigned)geteuid(), (unsigned)st.st_uid,
             (unsigned)(st.st_mode & 07777), (unsigned)st.st_nlink);
  }
  closedir(d);
  return rc;
}

/* Syncs the directory that holds the last component of path (a parent
 * we may not read, only search, cannot be synced: it is left as it is). */
static int sync_parent(char *path) {
  char *slash = strrchr(path, '/');
  const char *parent = slash == NULL ? "." : slash == path ? "/" : path;
  if (slash && slash != path) *slash = '\0';
  int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int rc = fd < 0 ? (errno == EACCES ? 0 : -errno)
                  : fsync(fd) < 0 ? -errno : 0;
  if (fd >= 0) close(fd);
  if (slash && slash != path) *slash = '/';
  return rc;
}

/* Makes dir and its missing parents (as mkdir -p makes them; the
 * directory itself 0700), each synced into its parent, and syncs dir's
 * own entry (a directory made by an earlier run that crashed first): a
 * power loss must not take the state directory. */
static int mkdir_p(const char *dir) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", dir);
  size_t n = strlen(buf);
  while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char c = *p;
    *p = '\0';
    int rc = 0;
    if (mkdir(buf, c ? 0755 : 0700) == 0) rc = c ? sync_parent(buf) : 0;
    else if (errno != EEXIST) rc = -errno;
    *p = c;
    if (rc < 0) return rc;
    if (c == '\0') return sync_parent(buf);
  }
}

/* The state directory decides what this process will do (which process
 * groups it signals, among others), so it must be ours alone, as sshd
 * wants its keys: a real directory, not a symbolic link, owned by the
 * user that runs us, writable by nobody else.  Returns its fd. */
static int journal_open_dir(const char *dir, char *err, size_t errlen) {
  char why[1024];
  int rc = mly_path_check(dir, (uid_t)-1, NULL, 0, why, sizeof why);
  if (rc == MLY_EPERM) { /* its parents: nobody else may swap it either */
    snprintf(err, errlen, "the state directory %s", why);
    return rc;
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int e = -errno;
    struct stat st;
    if ((e == -ELOOP || e == -ENOTDIR) && lstat(dir, &st) == 0 &&
        S_ISLNK(st.st_mode))
      snprintf(err, errlen, "%s: the state directory is a symbolic link; "
               "give the real path", dir);
    else
      snprintf(err, errlen, "%s: cannot open the state directory: %s", dir,
               mly_strerror(e));
    return e;
  }
  struct stat st;
  rc = fstat(fd, &st) < 0 ? -errno : 0;
  if (rc == 0 && st.st_uid != geteuid()) {
    snprintf(err, errlen, "%s: the state directory is owned by uid %u, not "
             "by uid %u that runs this; chown it or choose another", dir,
             (unsigned)st.st_uid, (unsigned)geteuid());
    rc = MLY_EPERM;
  } else if (rc == 0 && (st.st_mode & 022)) {
    snprintf(err, errlen, "%s: the state directory is writable by %s "
             "(mode %04o); chmod go-w it", dir,
             (st.st_mode & 022) == 022 ? "group and others"
             : (st.st_mode & 002)      ? "others" : "its group",
             (unsigned)(st.st_mode & 07777));
    rc = MLY_EPERM;
  } else if (rc < 0) {
    snprintf(err, errlen, "%s: %s", dir, mly_strerror(rc));
  }
  if (rc < 0) {
    close(fd);
    return rc;
  }
  return fd;
}

static void timer_closed(uv_handle_t *h) {
  mly_journal *j = h->data;
  j->timer_open = false;
  maybe_free(j);
}

static void release(mly_journal *j) {
  store_hooks h = j->base.hooks;
  if (j->rd_open) jr_read_free(&j->rd);
  if (j->segfd >= 0) close(j->segfd);
  if (j->lockfd >= 0) close(j->lockfd); /* drops the lock */
  if (j->dirfd >= 0) close(j->dirfd);
  jb_free(&j->pend);
  jb_free(&j->fly);
  free(j->pend_done.v);
  free(j->fly_done.v);
  free(j);
  if (h.closed) h.closed(h.arg);
}

static void maybe_free(mly_journal *j) {
  if (!j->closing || j->busy || j->timer_open) return;
  release(j);
}

int journal_store_open(uv_loop_t *loop, const mly_journal_options *o,
                       mly_store **out, char *err, size_t errlen) {
  mly_journal *j = calloc(1, sizeof *j);
  if (j == NULL) return MLY_ENOMEM;
  j->base.ops = &journal_store_ops;
  j->base.loop = loop;
  if (o) j->opt = *o;
  if (j->opt.segment_bytes == 0) j->opt.segment_bytes = DEFAULT_SEGMENT;
  if (j->opt.sync == MLY_SYNC_INTERVAL && j->opt.interval_ms == 0)
    j->opt.interval_ms = 100;
  snprintf(j->dir, sizeof j->dir, "%s", j->opt.dir ? j->opt.dir : "mealy-state");
  j->opt.dir = j->dir;
  j->dirfd = j->lockfd = j->segfd = -1;
  int rc = mkdir_p(j->dir);
  if (rc < 0)
    snprintf(err, errlen, "%s: cannot create the state directory: %s", j->dir,
             mly_strerror(rc));
  if (rc == 0 && (j->dirfd = journal_open_dir(j->dir, err, errlen)) < 0)
    rc = j->dirfd;
  if (rc < 0) {
    free(j);
    return rc;
  }
  rc = lock_dir(j, err, errlen);
  if (rc == 0) rc = check_entries(j, err, errlen);
  if (rc < 0) {
    if (j->lockfd >= 0) close(j->lockfd);
    close(j->dirfd);
    free(j);
    return rc;
  }
  uv_timer_init(loop, &j->timer);
  uv_unref((uv_handle_t *)&j->timer);
  j->timer.data = j;
  j->timer_open = true;
  j->last_sync_ms = now_ms();
  *out = &j->base;
  return 0;
}

/* Opens the newest segment for appending (after recovery).  What it
 * holds, and its name, may be only in the page cache (a process killed
 * between a write and its sync, not a power loss): both are synced
 * first, so the next frame's `synced` is true and the file stays. */
static int journal_append_to(mly_journal *j, const jseg *s) {
  int fd = openat(j->dirfd, s->name, O_WRONLY | O_APPEND | O_NOFOLLOW |
                  O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = sync_fd(j, fd);
  if (rc == 0 && fsync(j->dirfd) < 0) rc = -errno;
  if (rc < 0) {
    close(fd);
    return rc;
  }
  if (j->segfd >= 0) close(j->segfd);
  j->segfd = fd;
  j->seg_no = s->no;
  j->seg_bytes = j->synced = s->len;
  j->salt = s->salt;
  j->chain = s->end_sum;
  return 0;
}

/* The segment appends go to: the newest one that counts, or a new one. */
static int append_target(mly_journal *j, const jread *jr) {
  for (size_t i = jr->nsegs; i-- > jr->base;) {
    const jseg *s = &jr->segs[i];
    if (!s->removed) return journal_append_to(j, s);
  }
  uint64_t no = jr->nsegs ? jr->segs[jr->nsegs - 1].no + 1 : 1;
  return journal_new_segment(j, no, 0); /* synced, with the directory */
}

/* store.h recover: every record from the base segment on, verified
 * (D4), to cb; the torn tail cut and unfinished segments removed; then
 * where appends go, and their numbers, before the durable layer rebuilds
 * (an instance that was ending writes its END record during it).  The
 * segments stay mapped until recover_end: we hold the lock, nobody cuts
 * one under us. */
static int j_recover(mly_store *s, int (*cb)(const jrec *, void *), void *arg,
                     char *err, size_t errlen) {
  mly_journal *j = J(s);
  if (j->rd_open) return MLY_EBUSY; /* once */
  j->rd_open = true;
  jread *jr = &j->rd;
  int rc = jr_read(j->dirfd, j->dir, j->opt.salvage, JR_MAP, jr, cb, arg, err,
                   errlen);
  if (rc == 0 && (rc = jr_repair(j->dirfd, jr)) < 0)
    jr_errf(err, errlen, rc, "%s: cannot repair the torn tail: %s", j->dir,
            mly_strerror(rc));
  if (rc == 0) rc = append_target(j, jr);
  if (rc < 0) return rc;
  j->next_seq = jr->next_seq;
  for (size_t i = jr->base; i < jr->nsegs; i++) /* batches, not headers */
    if (!jr->segs[i].removed && jr->segs[i].len > JR_SEG_HDR)
      j->st.total_bytes += jr->segs[i].len - JR_SEG_HDR;
  j->st.torn_bytes = jr->torn_bytes;
  j->st.salvaged = jr->salvaged;
  return 0;
}

static void j_recover_end(mly_store *s) {
  mly_journal *j = J(s);
  if (!j->rd_open) return;
  jr_read_free(&j->rd);
  j->rd_open = false;
}

/* What is pending goes out here and now, and its done-list runs. */
static int journal_write_pending(mly_journal *j) {
  if (j->busy) return MLY_EBUSY;
  int rc = j->failed;
  j->wrote = 0;
  if (rc == 0 && j->pend.n > 0) rc = journal_write_sync(j, &j->pend);
  j->pend.n = 0;
  j->flushed = j->st.records;
  run_done(j, &j->pend_done, rc, j->wrote);
  if (rc < 0) fail_stop(j, rc, "write");
  return rc;
}

/* Writes buf and syncs it, here and now: compaction and close. */
static int journal_write_sync(mly_journal *j, const jbuf *b) {
  size_t wrote = 0;
  int rc = write_frames(j, b->p, b->n, j->synced, &wrote);
  if (rc == 0) rc = sync_fd(j, j->segfd);
  if (rc == 0) {
    count_written(j, wrote);
    j->st.syncs++;
    j->dirty = false;
    j->synced = j->seg_bytes;
  }
  return rc;
}

/* ---- compaction ---- */

/* Segments numbered below keep_no go, once the new one is safe. */
static int unlink_older(int dirfd, uint64_t keep_no) {
  int fd = dup(dirfd);
  if (fd < 0) return -errno;
  DIR *dir = fdopendir(fd);
  if (dir == NULL) {
    close(fd);
    return -errno;
  }
  rewinddir(dir);
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) {
    uint64_t no;
    if (!jr_seg_no(e->d_name, &no)) continue;
    if (no < keep_no && unlinkat(dirfd, e->d_name, 0) < 0 && errno != ENOENT)
      rc = -errno;
  }
  closedir(dir);
  if (rc == 0 && fsync(dirfd) < 0) rc = -errno;
  return rc;
}

/* store.h compact: the snapshot the durable layer wrote from memory
 * (SNAP ... SNAPEND) becomes a new segment, and the older ones go.
 * Crash-safe at every point: the old segments go only after the new one
 * and the directory are synced, and a new segment without its SNAPEND is
 * ignored on open.  Records still pending (recovery's, before a salvaged
 * journal is rewritten) are written first, in the old segment. */
static int j_compact(mly_store *s, const jbuf *snap) {
  mly_journal *j = J(s);
  int rc = j->failed;
  if (rc == 0 && (j->pend.n > 0 || j->pend_done.n > 0))
    rc = journal_write_pending(j);
  if (rc) return rc;
  if (j->busy) return MLY_EBUSY; /* memory and journal must agree */
  uint64_t no = j->seg_no + 1;
  rc = journal_new_segment(j, no, JR_SEG_SNAPSHOT);
  if (rc == 0) rc = journal_write_sync(j, snap);
  if (rc == 0) rc = fsync(j->dirfd) < 0 ? -errno : 0;
  if (rc == 0) rc = unlink_older(j->dirfd, no);
  if (rc < 0) {
    fail_stop(j, rc, "compaction");
    return rc;
  }
  j->st.compactions++;
  j->st.bytes = 0;
  j->st.total_bytes = snap->n;
  return 0;
}

/* What was appended is written and synced before the journal goes: a
 * closed runtime loses nothing it accepted.  With a write in flight, its
 * completion does this. */
static void j_close(mly_store *s) {
  mly_journal *j = J(s);
  if (j == NULL || j->closing) return;
  j->closing = true;
  if (!j->busy) {
    int rc = j->failed;
    j->wrote = 0;
    if (rc == 0 && j->pend.n > 0) rc = journal_write_sync(j, &j->pend);
    else if (rc == 0 && j->dirty && fdatasync(j->segfd) < 0) rc = -errno;
    run_done(j, &j->pend_done, rc, j->wrote);
  }
  if (j->timer_open) uv_close((uv_handle_t *)&j->timer, timer_closed);
  maybe_free(j);
}

static const store_ops journal_store_ops = {
    .name = "journal",
    .recover = j_recover,
    .buf = j_buf,
    .next_seq = j_next_seq,
    .seq_back = j_seq_back,
    .on_commit = j_on_commit,
    .flush = j_flush,
    .failed = j_failed,
    .idle = j_idle,
    .compact = j_compact,
    .stats = j_stats,
    .close = j_close,
    .recover_end = j_recover_end,
    .figures = j_figures,
};
