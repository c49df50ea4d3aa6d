/*
 * ctl.c - `mealy ctl`: a msgpack-RPC client for the control socket.
 *
 *   mealy ctl [-s SOCKET] [--timeout DUR] status [--json] [NAME...]
 *   mealy ctl [-s SOCKET] [--timeout DUR] start|stop|restart NAME
 *   mealy ctl [-s SOCKET] [--timeout DUR] signal SIG NAME
 *   mealy ctl [-s SOCKET] [--timeout DUR] reload | reopen | shutdown
 *   mealy ctl [-s SOCKET] [--timeout DUR] tail NAME [-n N] [--escape]
 *   mealy ctl [-s SOCKET] [--timeout DUR] metrics
 *
 * Every call is bounded by --timeout (default 5 s): connecting, sending
 * and reading the answer.  Lines from `tail` are bytes as the program
 * wrote them; on a terminal (or with --escape) control characters are
 * escaped, so a program cannot drive the administrator's terminal.
 * Errors from the supervisor may quote input: they are always escaped,
 * as are the strings of `status` (with --json, as \uNNNN escapes, so it
 * stays JSON).  The call itself is rpc.h's client: ctl talks only to a
 * server run by root or by its own user (SO_PEERCRED).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "esc.h"
#include "mealy.h"
#include "rpc.h"

#define CTL_TIMEOUT_MS 5000

static void usage(FILE *f) {
  fprintf(f,
      "usage: mealy ctl [-s SOCKET] [--timeout DUR] COMMAND\n"
      "  status [--json] [NAME...]   state, pid, uptime, restarts, last exit\n"
      "  start NAME | stop NAME | restart NAME\n"
      "  signal SIG NAME             send SIG (TERM, HUP, USR1, ...) to its group\n"
      "  reload                      re-read the configuration file\n"
      "  reopen                      reopen every log file (after a rotation)\n"
      "  shutdown                    stop every program and the supervisor\n"
      "  tail NAME [-n N] [--escape] the last N lines it wrote (default 20);\n"
      "                              control characters are escaped on a\n"
      "                              terminal, or always with --escape\n"
      "  metrics                     the Prometheus text format: every\n"
      "                              program's and the supervisor's figures\n"
      "SOCKET defaults to ./mealy.sock.  --timeout bounds the whole call\n"
      "(default 5s; 0: wait forever): past it, ctl says so and exits 1.\n");
}

static void fmt_uptime(int64_t ms, char *buf, size_t len) {
  if (ms <= 0) snprintf(buf, len, "-");
  else if (ms < 60000) snprintf(buf, len, "%.1fs", (double)ms / 1000.0);
  else if (ms < 3600000) snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", ms / 60000, ms / 1000 % 60);
  else snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", ms / 3600000, ms / 60000 % 60);
}

/* A JSON string: '"', '\\' and what esc_str would escape as \uNNNN
 * (a byte that is not UTF-8 as \u00NN), so the output stays valid JSON
 * and cannot drive a terminal. */
static void print_json_string(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  putchar('"');
  for (size_t i = 0; i < n;) {
    uint32_t cp = u[i];
    size_t l = utf8_at(u + i, n - i, &cp);
    if (l == 0) printf("\\u%04x", (unsigned)u[i]), l = 1;
    else if (cp == '"' || cp == '\\') printf("\\%c", (char)cp);
    else if (cp == '\t' || esc_needed(s + i, l)) printf("\\u%04x", (unsigned)cp);
    else fwrite(u + i, 1, l, stdout);
    i += l;
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
  case MLY_V_STR: { const char *s = ""; size_t n = 0; mly_value_get_str(v, &s, &n); print_json_string(s, n); break; }
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
      print_json_string(k, strlen(k));
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
    const char *name = "?", *state = "?", *sig = NULL, *status = "";
    int64_t pid = 0, up = 0, code = 0;
    uint64_t restarts = 0;
    mly_map_get_str(p, "name", &name);
    mly_map_get_str(p, "state", &state);
    mly_map_get_int(p, "pid", &pid);
    mly_map_get_int(p, "uptime_ms", &up);
    mly_map_get_uint(p, "restarts", &restarts);
    mly_map_get_str(p, "status", &status); /* sd_notify's STATUS= */
    char uptime[32], last[96] = "-", pidbuf[24] = "-";
    fmt_uptime(up, uptime, sizeof uptime);
    /* the server's strings, escaped (at most 64 bytes of each shown) */
    char nb[ESC_MAX(64) + 1], sb[ESC_MAX(64) + 1], gb[ESC_MAX(16) + 1];
    if (mly_map_get_str(p, "last_signal", &sig) == 0) {
      esc_str(sig, strnlen(sig, 16), gb, sizeof gb);
      snprintf(last, sizeof last, "killed by SIG%s", gb);
    } else if (mly_map_get_int(p, "last_exit", &code) == 0) {
      /* < 0: an adopted process (MAINPID, or after a supervisor crash)
       * whose exit status cannot be read */
      if (code < 0) snprintf(last, sizeof last, "exit unknown");
      else snprintf(last, sizeof last, "exit %" PRId64, code);
    }
    if (pid > 0) snprintf(pidbuf, sizeof pidbuf, "%" PRId64, pid);
    esc_str(name, strnlen(name, 64), nb, sizeof nb);
    esc_str(state, strnlen(state, 64), sb, sizeof sb);
    char tb[ESC_MAX(256) + 1];
    esc_str(status, strnlen(status, 256), tb, sizeof tb);
    printf("%-16s %-10s %7s %9s %8" PRIu64 " %s%s%s\n", nb, sb, pidbuf, uptime,
           restarts, last, *tb ? "  " : "", tb);
  }
}

static mly_value *strings(char **argv, int n) {
  mly_value *a = mly_value_array();
  for (int i = 0; i < n; i++) mly_array_push(a, mly_value_str(argv[i]));
  return a;
}

/* One line of `tail`: its bytes, or escaped for a terminal. */
static void print_line(const mly_value *v, bool escape) {
  const char *line = "";
  size_t len = 0;
  mly_value_get_str(v, &line, &len);
  if (!escape) {
    fwrite(line, 1, len, stdout);
    putchar('\n');
    return;
  }
  char *out = malloc(ESC_MAX(len) + 1);
  if (out == NULL) return;
  size_t n = esc_str(line, len, out, ESC_MAX(len) + 1);
  fwrite(out, 1, n, stdout);
  putchar('\n');
  free(out);
}

static int tail_args(char **args, int rest, bool *escape, mly_value **params) {
  const char *name = NULL;
  long n = 20;
  for (int k = 0; k < rest; k++) {
    if (strcmp(args[k], "--escape") == 0) {
      *escape = true;
    } else if (strcmp(args[k], "-n") == 0) {
      char *end = NULL;
      n = k + 1 < rest ? strtol(args[k + 1], &end, 10) : -1;
      if (k + 1 >= rest || *end != '\0' || n < 0) {
        fprintf(stderr, "mealy ctl tail: -n wants a number of lines, not "
                "'%s'\n", k + 1 < rest ? args[k + 1] : "");
        return -1;
      }
      k++;
    } else if (name == NULL && args[k][0] != '-') {
      name = args[k];
    } else {
      return -1;
    }
  }
  if (name == NULL) return -1;
  *params = strings((char **)&name, 1);
  mly_array_push(*params, mly_value_int(n));
  return 0;
}

int cmd_ctl(int argc, char **argv) {
  const char *sock = "mealy.sock";
  int64_t timeout_ms = CTL_TIMEOUT_MS;
  int i = 1;
  while (i + 1 < argc) {
    if (strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "--socket") == 0) {
      sock = argv[i + 1];
    } else if (strcmp(argv[i], "--timeout") == 0) {
      if (opt_duration("ctl", "--timeout", argv[i + 1], &timeout_ms) < 0)
        return 2;
    } else {
      break;
    }
    i += 2;
  }
  if (i >= argc || strcmp(argv[i], "--help") == 0) {
    usage(i >= argc ? stderr : stdout);
    return i >= argc ? 2 : 0;
  }
  const char *cmd = argv[i++];
  int rest = argc - i;
  char **args = argv + i;
  bool json = false, escape = isatty(STDOUT_FILENO);
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
  } else if ((!strcmp(cmd, "reload") || !strcmp(cmd, "reopen") ||
              !strcmp(cmd, "shutdown") || !strcmp(cmd, "metrics")) &&
             rest == 0) {
    params = mly_value_array();
  } else if (strcmp(cmd, "tail") == 0 &&
             tail_args(args, rest, &escape, &params) == 0) {
    /* params set */
  } else {
    fprintf(stderr, "mealy ctl: bad command line for '%s'\n", cmd);
    usage(stderr);
    return 2;
  }
  mly_value *res = NULL;
  if (rpc_call_sock("mealy ctl", sock, cmd, params, timeout_ms, &res) < 0)
    return 1;
  int rc = 0;
  if (strcmp(cmd, "status") == 0) {
    if (json) {
      print_json(res);
      putchar('\n');
    } else {
      print_status(res);
    }
  } else if (res && strcmp(cmd, "metrics") == 0) {
    const char *text = NULL;
    size_t len = 0;
    if (mly_value_get_str(res, &text, &len) < 0 ||
        fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
      fprintf(stderr, "mealy ctl metrics: %s\n", text ? "cannot write the text"
              : "the answer is not text");
      rc = 1;
    }
  } else if (res && strcmp(cmd, "tail") == 0) {
    for (size_t k = 0; k < mly_value_len(res); k++)
      print_line(mly_array_at(res, k), escape);
  } else {
    puts("ok");
  }
  mly_value_free(res);
  return rc;
}
