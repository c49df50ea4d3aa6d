/*
 * outq.c - non-blocking, bounded output for stdout and stderr (outq.h).
 */
#include "outq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "esc.h"
#include "mlog.h"

struct outq {
  int fd;            /* ours: nonblocking, or the original when direct */
  bool direct;       /* a regular file or a device: plain writes */
  bool sock;         /* send(MSG_DONTWAIT) on a shared description */
  bool tty;
  bool broken;       /* the reader is gone: drop everything */
  int restore_flags; /* >= 0: flags to put back on a shared description */
  uv_poll_t poll;
  bool attached, polling;
  char *buf;         /* ring of OUTQ_CAP bytes */
  size_t head, len;
  uint64_t dropped, noted;
};

outq *outq_open(int fd) {
  outq *q = calloc(1, sizeof *q);
  if (q == NULL) return NULL;
  q->restore_flags = -1;
  q->fd = fd;
  struct stat st;
  q->tty = isatty(fd);
  if (fstat(fd, &st) < 0 || S_ISREG(st.st_mode) ||
      (S_ISCHR(st.st_mode) && !q->tty) || S_ISBLK(st.st_mode)) {
    q->direct = true; /* files do not wait for a reader */
    return q;
  }
  if ((q->buf = malloc(OUTQ_CAP)) == NULL) {
    free(q);
    return NULL;
  }
  if (S_ISSOCK(st.st_mode)) {
    q->sock = true;
    return q;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int own = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (own >= 0) {
    q->fd = own;
    return q;
  }
  /* no /proc: share the description, and put its flags back at the end */
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0)
    q->restore_flags = fl;
  return q;
}

bool outq_tty(const outq *q) { return q && q->tty; }
uint64_t outq_dropped(const outq *q) { return q ? q->dropped : 0; }

/* One write without waiting: bytes written, 0 when it would block, -1
 * when the reader is gone. */
static ssize_t try_write(outq *q, const char *p, size_t n) {
  for (;;) {
    ssize_t w = q->sock ? send(q->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL)
                        : write(q->fd, p, n);
    if (w >= 0) return w;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -1;
  }
}

static void direct_write(outq *q, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(q->fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) { /* a full disk: the line is lost, not the process */
      q->dropped++;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

static void push(outq *q, const char *p, size_t n) {
  size_t tail = (q->head + q->len) % OUTQ_CAP;
  size_t first = n < OUTQ_CAP - tail ? n : OUTQ_CAP - tail;
  memcpy(q->buf + tail, p, first);
  memcpy(q->buf, p + first, n - first);
  q->len += n;
}

static void poll_cb(uv_poll_t *h, int status, int events);

static void want_poll(outq *q, bool on) {
  if (!q->attached || on == q->polling) return;
  if (on ? uv_poll_start(&q->poll, UV_WRITABLE, poll_cb) == 0
         : uv_poll_stop(&q->poll) == 0)
    q->polling = on;
}

/* Writes what waits; says how many lines were dropped once it is all
 * out.  Returns whether everything went. */
static bool flush(outq *q) {
  while (q->len > 0 && !q->broken) {
    size_t n = q->len < OUTQ_CAP - q->head ? q->len : OUTQ_CAP - q->head;
    ssize_t w = try_write(q, q->buf + q->head, n);
    if (w == 0) return false;
    if (w < 0) {
      q->broken = true;
      break;
    }
    q->head = (q->head + (size_t)w) % OUTQ_CAP;
    q->len -= (size_t)w;
  }
  if (q->broken) {
    q->len = 0;
    return true;
  }
  if (q->dropped > q->noted) {
    char note[160];
    int n = mlog_format(note, sizeof note, "mealy", "%llu lines of output "
                        "dropped: nobody was reading it",
                        (unsigned long long)(q->dropped - q->noted));
    q->noted = q->dropped;
    if (n > 0 && (size_t)n < sizeof note) push(q, note, (size_t)n);
    return flush(q);
  }
  return true;
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  (void)events;
  outq *q = h->data;
  if (status < 0) q->broken = true;
  if (flush(q)) want_poll(q, false);
}

int outq_attach(outq *q, uv_loop_t *loop) {
  if (q == NULL || q->direct || q->attached) return 0;
  int rc = uv_poll_init(loop, &q->poll, q->fd);
  if (rc < 0) return rc;
  q->poll.data = q;
  uv_unref((uv_handle_t *)&q->poll); /* output never keeps a run alive */
  q->attached = true;
  if (q->len > 0) want_poll(q, true);
  return 0;
}

void outq_write(outq *q, const char *p, size_t n) {
  if (q == NULL || n == 0) return;
  if (q->direct) {
    direct_write(q, p, n);
    return;
  }
  if (q->broken) {
    q->dropped++;
    return;
  }
  if (q->len == 0 && q->dropped == q->noted) {
    ssize_t w = try_write(q, p, n);
    if (w < 0) {
      q->broken = true;
      q->dropped++;
      return;
    }
    p += w;
    n -= (size_t)w;
    if (n == 0) return;
  }
  if (n > OUTQ_CAP - q->len) { /* no room: the line goes, counted */
    q->dropped++;
    return;
  }
  push(q, p, n);
  if (!flush(q)) want_poll(q, true);
}

void outq_line(outq *q, const char *prefix, size_t plen, const char *body,
               size_t blen, bool escape_tty) {
  if (q == NULL) return;
  bool esc = escape_tty && q->tty && esc_needed(body, blen);
  size_t cap = plen + (esc ? ESC_MAX(blen) : blen) + 2;
  char stack[8192];
  char *line = cap <= sizeof stack ? stack : malloc(cap);
  if (line == NULL) {
    q->dropped++;
    return;
  }
  memcpy(line, prefix, plen);
  size_t n = plen;
  if (esc) {
    n += esc_str(body, blen, line + n, cap - n);
  } else {
    memcpy(line + n, body, blen);
    n += blen;
  }
  line[n++] = '\n';
  outq_write(q, line, n);
  if (line != stack) free(line);
}

static ssize_t cookie_write(void *c, const char *p, size_t n) {
  outq_write(c, p, n);
  return (ssize_t)n; /* written or dropped: never an error to stdio */
}

FILE *outq_fopen(outq *q) {
  if (q == NULL) return NULL;
  FILE *f = fopencookie(q, "w", (cookie_io_functions_t){.write = cookie_write});
  if (f != NULL) setvbuf(f, NULL, _IOLBF, 0);
  return f;
}

static void release(outq *q) {
  if (q->restore_flags >= 0) fcntl(q->fd, F_SETFL, q->restore_flags);
  else if (!q->direct && !q->sock && q->fd > 2) close(q->fd);
  free(q->buf);
  free(q);
}

static void closed_cb(uv_handle_t *h) { release(h->data); }

void outq_close(outq *q) {
  if (q == NULL) return;
  if (!q->direct) flush(q); /* what goes now goes; the rest is dropped */
  if (q->attached) /* the fd is closed once the loop lets go of it */
    uv_close((uv_handle_t *)&q->poll, closed_cb);
  else
    release(q);
}
