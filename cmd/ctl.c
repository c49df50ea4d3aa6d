/*
 * ctl.c - `mealy ctl`: a msgpack-RPC client for the control socket.
 *
 *   mealy ctl [-s SOCKET] status [--json] [NAME...]
 *   mealy ctl [-s SOCKET] start|stop|restart NAME
 *   mealy ctl [-s SOCKET] signal SIG NAME
 *   mealy ctl [-s SOCKET] reload | shutdown
 *   mealy ctl [-s SOCKET] tail NAME [-n N]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cmd.h"
#include "mealy.h"

static void usage(FILE *f) {
  fprintf(f,
      "usage: mealy ctl [-s SOCKET] COMMAND\n"
      "  status [--json] [NAME...]   state, pid, uptime, restarts, last exit\n"
      "  start NAME | stop NAME | restart NAME\n"
      "  signal SIG NAME             send SIG (TERM, HUP, USR1, ...) to its group\n"
      "  reload                      re-read the configuration file\n"
      "  shutdown                    stop every program and the supervisor\n"
      "  tail NAME [-n N]            the last N lines it wrote (default 20)\n"
      "SOCKET defaults to ./mealy.sock\n");
}

/* Whoever serves the socket must be root or our own user: another user
 * who could bind the path (in /tmp, say) would otherwise receive our
 * commands and answer what it likes.  Returns fd, or closes it. */
static int server_trusted(int fd, const char *path) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  if (cred.uid == 0 || cred.uid == geteuid()) return fd;
  close(fd);
  fprintf(stderr, "mealy ctl: %s is served by uid %d (pid %d), neither root "
          "nor this user (uid %d): not talking to it; check who created that "
          "socket\n", path, (int)cred.uid, (int)cred.pid, (int)geteuid());
  return MLY_EPERM;
}

static int connect_to(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) return -ENAMETOOLONG;
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  return server_trusted(fd, path);
}

/* Sends [0, 1, method, params] and reads one whole answer. */
static int call(const char *sock, const char *method, mly_value *params,
                mly_value **answer) {
  int fd = connect_to(sock);
  if (fd < 0) {
    mly_value_free(params);
    if (fd != MLY_EPERM)
      fprintf(stderr, "mealy ctl: cannot connect to %s: %s\n", sock,
            mly_strerror(fd));
    return -1;
  }
  mly_value *req = mly_value_array();
  mly_array_push(req, mly_value_int(0));
  mly_array_push(req, mly_value_uint(1));
  mly_array_push(req, mly_value_str(method));
  mly_array_push(req, params);
  char *buf = NULL;
  size_t len = 0;
  int rc = mly_value_encode(req, &buf, &len);
  mly_value_free(req);
  /* MSG_NOSIGNAL: a supervisor that refuses us hangs up; its answer may
   * already wait in our buffer, so a broken pipe still reads it. */
  for (size_t off = 0; rc == 0 && off < len;) {
    ssize_t w = send(fd, buf + off, len - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) break;
    if (w < 0) rc = -errno;
    else off += (size_t)w;
  }
  free(buf);
  size_t cap = 65536, n = 0;
  char *in = malloc(cap);
  while (rc == 0 && in != NULL) {
    size_t used = 0;
    rc = mly_value_decode_prefix(in, n, answer, &used);
    if (rc != MLY_EAGAIN) break;
    rc = 0;
    if (n == cap) {
      char *bigger = realloc(in, cap *= 2);
      if (bigger == NULL) break;
      in = bigger;
    }
    ssize_t r = read(fd, in + n, cap - n);
    if (r <= 0) {
      rc = MLY_EIO;
      break;
    }
    n += (size_t)r;
  }
  free(in);
  close(fd);
  if (rc < 0) {
    fprintf(stderr, "mealy ctl: no answer from %s (%s)\n", sock, mly_strerror(rc));
    return -1;
  }
  return 0;
}

/* What the server sends may drive a terminal: control bytes, DEL, C1
 * controls (U+0080-U+009F) and bidirectional overrides (U+202A-U+202E,
 * U+2066-U+2069).  The length of such a character at p (0: another),
 * and its code point. */
static size_t special_at(const unsigned char *p, unsigned *cp) {
  *cp = p[0];
  if (p[0] < 0x20 || p[0] == 0x7f) return 1;
  if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) return *cp = p[1], 2;
  if (p[0] == 0xe2 && p[1] == 0x80 && p[2] >= 0xaa && p[2] <= 0xae)
    return *cp = 0x2000u + p[2] - 0x80u, 3;
  if (p[0] == 0xe2 && p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9)
    return *cp = 0x2040u + p[2] - 0x80u, 3;
  return 0;
}

/* s escaped for a terminal into out (cap bytes): \\xNN, \\uNNNN; a tab
 * is kept. */
static const char *shown(const char *s, char *out, size_t cap) {
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p && n + 8 < cap; p++) {
    unsigned cp;
    size_t len = special_at(p, &cp);
    if (len == 0 || *p == '\t') out[n++] = (char)*p;
    else if (len == 1) n += (size_t)snprintf(out + n, cap - n, "\\x%02x", cp);
    else n += (size_t)snprintf(out + n, cap - n, "\\u%04x", cp), p += len - 1;
  }
  out[n] = '\0';
  return out;
}

/* The result of an answer, or NULL after printing its error. */
static const mly_value *result_of(const mly_value *a) {
  int64_t type = -1;
  const char *err = NULL;
  mly_value_get_int(mly_array_at(a, 0), &type);
  if (type == 2) { /* a notification: refused, or malformed */
    const char *why = NULL;
    mly_value_get_str(mly_array_at(mly_array_at(a, 2), 0), &why, NULL);
    char buf[1024];
    fprintf(stderr, "mealy ctl: %s\n", why ? shown(why, buf, sizeof buf)
                                           : "refused");
    return NULL;
  }
  if (mly_value_get_str(mly_array_at(a, 2), &err, NULL) == 0) {
    char buf[1024];
    fprintf(stderr, "mealy ctl: %s\n", shown(err, buf, sizeof buf));
    return NULL;
  }
  return mly_array_at(a, 3);
}

static void fmt_uptime(int64_t ms, char *buf, size_t len) {
  if (ms <= 0) snprintf(buf, len, "-");
  else if (ms < 60000) snprintf(buf, len, "%.1fs", (double)ms / 1000.0);
  else if (ms < 3600000) snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", ms / 60000, ms / 1000 % 60);
  else snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", ms / 3600000, ms / 60000 % 60);
}

static void print_json_string(const char *s) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned cp;
    size_t len = special_at(p, &cp);
    if (*p == '"' || *p == '\\') printf("\\%c", *p);
    else if (len == 0) putchar(*p);
    else printf("\\u%04x", cp), p += len - 1;
  }
  putchar('"');
}

static void print_json(const mly_value *v) {
  switch (mly_value_type(v)) {
  case MLY_V_NIL: printf("null"); break;
  case MLY_V_BOOL: { bool b = false; mly_value_get_bool(v, &b); printf(b ? "true" : "false"); break; }
  case MLY_V_INT: { int64_t i = 0; mly_value_get_int(v, &i); printf("%" PRId64, i); break; }
  case MLY_V_UINT: { uint64_t u = 0; mly_value_get_uint(v, &u); printf("%" PRIu64, u); break; }
  case MLY_V_DOUBLE: { double d = 0; mly_value_get_double(v, &d); printf("%g", d); break; }
  case MLY_V_STR: { const char *s = ""; mly_value_get_str(v, &s, NULL); print_json_string(s); break; }
  case MLY_V_BIN: printf("null"); break;
  case MLY_V_ARRAY:
    putchar('[');
    for (size_t i = 0; i < mly_value_len(v); i++) {
      if (i) putchar(',');
      print_json(mly_array_at(v, i));
    }
    putchar(']');
    break;
  case MLY_V_MAP:
    putchar('{');
    for (size_t i = 0; i < mly_value_len(v); i++) {
      const char *k;
      mly_value *val;
      mly_map_at(v, i, &k, &val);
      if (i) putchar(',');
      print_json_string(k);
      putchar(':');
      print_json(val);
    }
    putchar('}');
    break;
  }
}

static void print_status(const mly_value *list) {
  printf("%-16s %-10s %7s %9s %8s %s\n", "NAME", "STATE", "PID", "UPTIME",
         "RESTARTS", "LAST EXIT");
  for (size_t i = 0; i < mly_value_len(list); i++) {
    const mly_value *p = mly_array_at(list, i);
    const char *name = "?", *state = "?", *sig = NULL;
    int64_t pid = 0, up = 0, code = 0;
    uint64_t restarts = 0;
    mly_map_get_str(p, "name", &name);
    mly_map_get_str(p, "state", &state);
    mly_map_get_int(p, "pid", &pid);
    mly_map_get_int(p, "uptime_ms", &up);
    mly_map_get_uint(p, "restarts", &restarts);
    char uptime[32], last[48] = "-", pidbuf[24] = "-";
    fmt_uptime(up, uptime, sizeof uptime);
    char nb[256], sb[256], gb[64]; /* the server's strings, escaped */
    if (mly_map_get_str(p, "last_signal", &sig) == 0)
      snprintf(last, sizeof last, "killed by SIG%s", shown(sig, gb, sizeof gb));
    else if (mly_map_get_int(p, "last_exit", &code) == 0) snprintf(last, sizeof last, "exit %" PRId64, code);
    if (pid > 0) snprintf(pidbuf, sizeof pidbuf, "%" PRId64, pid);
    printf("%-16s %-10s %7s %9s %8" PRIu64 " %s\n", shown(name, nb, sizeof nb),
           shown(state, sb, sizeof sb), pidbuf, uptime, restarts, last);
  }
}

static mly_value *strings(char **argv, int n) {
  mly_value *a = mly_value_array();
  for (int i = 0; i < n; i++) mly_array_push(a, mly_value_str(argv[i]));
  return a;
}

int cmd_ctl(int argc, char **argv) {
  const char *sock = "mealy.sock";
  int i = 1;
  if (i + 1 < argc && (strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "--socket") == 0)) {
    sock = argv[i + 1];
    i += 2;
  }
  if (i >= argc || strcmp(argv[i], "--help") == 0) {
    usage(i >= argc ? stderr : stdout);
    return i >= argc ? 2 : 0;
  }
  const char *cmd = argv[i++];
  int rest = argc - i;
  char **args = argv + i;
  bool json = false;
  mly_value *params = NULL;
  if (strcmp(cmd, "status") == 0) {
    if (rest > 0 && strcmp(args[0], "--json") == 0) {
      json = true;
      args++;
      rest--;
    }
    params = strings(args, rest);
  } else if ((!strcmp(cmd, "start") || !strcmp(cmd, "stop") || !strcmp(cmd, "restart")) && rest == 1) {
    params = strings(args, 1);
  } else if (strcmp(cmd, "signal") == 0 && rest == 2) {
    params = strings(args, 2);
  } else if ((!strcmp(cmd, "reload") || !strcmp(cmd, "shutdown")) && rest == 0) {
    params = mly_value_array();
  } else if (strcmp(cmd, "tail") == 0 && (rest == 1 || (rest == 3 && !strcmp(args[1], "-n")))) {
    char *end = NULL;
    long n = rest == 3 ? strtol(args[2], &end, 10) : 20;
    if (rest == 3 && (*end != '\0' || n < 0)) {
      fprintf(stderr, "mealy ctl tail: -n wants a number of lines, not '%s'\n", args[2]);
      return 2;
    }
    params = strings(args, 1);
    mly_array_push(params, mly_value_int(n));
  } else {
    fprintf(stderr, "mealy ctl: bad command line for '%s'\n", cmd);
    usage(stderr);
    return 2;
  }
  mly_value *answer = NULL;
  if (call(sock, cmd, params, &answer) < 0) return 1;
  const mly_value *res = result_of(answer);
  int rc = res ? 0 : 1;
  if (res && strcmp(cmd, "status") == 0) {
    if (json) {
      print_json(res);
      putchar('\n');
    } else {
      print_status(res);
    }
  } else if (res && strcmp(cmd, "tail") == 0) {
    for (size_t k = 0; k < mly_value_len(res); k++) {
      const char *line = "";
      mly_value_get_str(mly_array_at(res, k), &line, NULL);
      puts(line);
    }
  } else if (res) {
    puts("ok");
  }
  mly_value_free(answer);
  return rc;
}
