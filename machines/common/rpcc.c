/*
 * rpcc.c - the msgpack-RPC client of every control socket (see rpc.h).
 *
 * One call per connection: connect (without blocking: a server whose
 * backlog is full answers EAGAIN, tried again until the deadline), check
 * who serves the socket, send [0, msgid, method, params], read until the
 * answer carrying that msgid.  A notification from the server before it
 * ([2, "refused", [why]], [2, "error", [why]]) ends the call with why.
 * Everything is bounded by the deadline, and the answer by
 * RPCC_MAX_ANSWER bytes.  What the server says may quote input: it is
 * always escaped before it is printed.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "esc.h"
#include "rpc.h"

#define RPCC_MAX_ANSWER (256u * 1024u * 1024u)

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events, or the deadline (0: none): 0
 * ready, MLY_ETIMEDOUT, or -errno. */
static int wait_fd(int fd, short events, int64_t deadline) {
  for (;;) {
    int left = -1;
    if (deadline > 0) {
      int64_t d = deadline - now_ms();
      if (d <= 0) return MLY_ETIMEDOUT;
      left = d > 60000 ? 60000 : (int)d;
    }
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, left);
    if (n > 0) return 0;
    if (n < 0 && errno != EINTR) return -errno;
  }
}

void rpc_print_error(const char *prog, const char *msg, size_t len) {
  char shown[ESC_MAX(1024) + 1];
  esc_str(msg, len > 1024 ? 1024 : len, shown, sizeof shown);
  fprintf(stderr, "%s: %s\n", prog, shown);
}

/* Whoever serves the socket must be root or our own user: another user
 * who could bind the path (in /tmp, say) would otherwise receive our
 * commands and answer what it likes.  Returns fd, or closes it. */
static int server_trusted(const char *prog, int fd, const char *shown) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  if (cred.uid == 0 || cred.uid == geteuid()) return fd;
  close(fd);
  fprintf(stderr, "%s: %s is served by uid %d (pid %d), neither root "
          "nor this user (uid %d): not talking to it; check who created that "
          "socket\n", prog, shown, (int)cred.uid, (int)cred.pid,
          (int)geteuid());
  return MLY_EPERM;
}

static int connect_to(const char *prog, const char *path, const char *shown,
                      int64_t deadline) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) return -ENAMETOOLONG;
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  while (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN && (deadline <= 0 || now_ms() < deadline)) {
      poll(NULL, 0, 10);
      continue;
    }
    close(fd);
    return e == EAGAIN ? MLY_ETIMEDOUT : -e;
  }
  return server_trusted(prog, fd, shown);
}

static int send_all(int fd, const char *buf, size_t len, int64_t deadline) {
  int rc = 0;
  /* MSG_NOSIGNAL: a server that refuses us hangs up; its answer may
   * already wait in our buffer, so a broken pipe still reads it. */
  for (size_t off = 0; rc == 0 && off < len;) {
    ssize_t w = send(fd, buf + off, len - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) rc = wait_fd(fd, POLLOUT, deadline);
    else if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) break;
    else if (w < 0) rc = -errno;
    else off += (size_t)w;
  }
  return rc;
}

/* Reads one whole message into *msg. */
static int read_msg(int fd, char **in, size_t *cap, size_t *n,
                    mly_value **msg, int64_t deadline) {
  for (;;) {
    size_t used = 0;
    int rc = mly_value_decode_prefix(*in, *n, msg, &used);
    if (rc == 0) {
      memmove(*in, *in + used, *n - used);
      *n -= used;
      return 0;
    }
    if (rc != MLY_EAGAIN) return rc;
    if (*n == *cap) {
      if (*cap >= RPCC_MAX_ANSWER) return MLY_ERANGE;
      char *bigger = realloc(*in, *cap * 2);
      if (bigger == NULL) return MLY_ENOMEM;
      *in = bigger;
      *cap *= 2;
    }
    ssize_t r = read(fd, *in + *n, *cap - *n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) {
      if ((rc = wait_fd(fd, POLLIN, deadline)) < 0) return rc;
      continue;
    }
    if (r <= 0) return MLY_EIO;
    *n += (size_t)r;
  }
}

/* Sends the request and reads until the answer to msgid (a notification
 * of the server also ends it). */
static int exchange(int fd, const char *method, mly_value *params,
                    int64_t deadline, mly_value **answer) {
  const uint64_t msgid = 1;
  mly_value *req = mly_value_array();
  mly_array_push(req, mly_value_int(0));
  mly_array_push(req, mly_value_uint(msgid));
  mly_array_push(req, mly_value_str(method));
  mly_array_push(req, params);
  char *buf = NULL;
  size_t len = 0;
  int rc = mly_value_encode(req, &buf, &len);
  mly_value_free(req);
  if (rc == 0) rc = send_all(fd, buf, len, deadline);
  free(buf);
  size_t cap = 65536, n = 0;
  char *in = rc == 0 ? malloc(cap) : NULL;
  if (in == NULL && rc == 0) rc = MLY_ENOMEM;
  while (rc == 0) {
    mly_value *msg = NULL;
    rc = read_msg(fd, &in, &cap, &n, &msg, deadline);
    if (rc < 0) break;
    int64_t type = -1;
    uint64_t id = 0;
    mly_value_get_int(mly_array_at(msg, 0), &type);
    mly_value_get_uint(mly_array_at(msg, 1), &id);
    if (type == 2 || (type == 1 && id == msgid)) {
      *answer = msg;
      break;
    }
    mly_value_free(msg); /* not ours */
  }
  free(in);
  return rc;
}

static void fmt_ms(int64_t ms, char *buf, size_t len) {
  if (ms % 1000 == 0) snprintf(buf, len, "%llds", (long long)(ms / 1000));
  else snprintf(buf, len, "%lldms", (long long)ms);
}

/* The result of an answer (taken out of it), or NULL after printing its
 * error. */
static mly_value *result_of(const char *prog, mly_value *a) {
  int64_t type = -1;
  const char *err = NULL;
  size_t len = 0;
  mly_value_get_int(mly_array_at(a, 0), &type);
  if (type == 2) { /* a notification: refused, or malformed */
    const char *why = "refused";
    len = strlen(why);
    mly_value_get_str(mly_array_at(mly_array_at(a, 2), 0), &why, &len);
    rpc_print_error(prog, why, len);
    return NULL;
  }
  if (mly_value_get_str(mly_array_at(a, 2), &err, &len) == 0) {
    rpc_print_error(prog, err, len);
    return NULL;
  }
  mly_value *res = mly_value_copy(mly_array_at(a, 3));
  return res ? res : mly_value_nil();
}

int rpc_call_sock(const char *prog, const char *sock, const char *method,
                  mly_value *params, int64_t timeout_ms, mly_value **result) {
  int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
  char shown[ESC_MAX(108) + 1];
  esc_str(sock, strnlen(sock, 108), shown, sizeof shown);
  int fd = connect_to(prog, sock, shown, deadline);
  if (fd < 0 && fd != MLY_ETIMEDOUT) {
    mly_value_free(params);
    if (fd != MLY_EPERM) /* server_trusted said why */
      fprintf(stderr, "%s: cannot connect to %s: %s\n", prog, shown,
              mly_strerror(fd));
    return -1;
  }
  mly_value *answer = NULL;
  int rc = fd;
  if (fd >= 0) {
    rc = exchange(fd, method, params, deadline, &answer);
    close(fd);
  } else {
    mly_value_free(params);
  }
  if (rc == MLY_ETIMEDOUT) {
    char t[32];
    fmt_ms(timeout_ms, t, sizeof t);
    fprintf(stderr, "%s: no answer from %s within %s (--timeout): the "
            "server is stalled or overloaded\n", prog, shown, t);
    return -1;
  }
  if (rc < 0) {
    fprintf(stderr, "%s: no answer from %s (%s)\n", prog, shown,
            mly_strerror(rc));
    return -1;
  }
  *result = result_of(prog, answer);
  mly_value_free(answer);
  return *result ? 0 : -1;
}
