/*
 * fsm_ctl.c - `mealy fsm start|send|ls|show`: clients of a running
 * `mealy fsm run`, through its control socket (rpc.h's client).
 *
 *   mealy fsm start MACHINE [--name N] [key=value | key:=JSON...]
 *   mealy fsm send INSTANCE EVENT [key=value | key:=JSON...]
 *   mealy fsm ls [--state S] [--machine M] [--json]
 *   mealy fsm show INSTANCE [--json]
 *   mealy fsm migrate FILE [--dry-run] [--json]
 *
 * Each also takes -s SOCKET (default ./mealy-fsm.sock) and --timeout DUR
 * (default 5s).  key=value puts a string in the context; key:=VALUE a
 * number, true, false or null (httpie's convention), so "007" stays a
 * string unless asked otherwise.  What the host sends back is printed
 * with its control characters escaped (--json: as \u escapes).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "esc.h"
#include "fsmhost.h"

typedef struct fsm_opts {
  const char *cmd;       /* "mealy fsm start" */
  const char *sock;
  int64_t timeout_ms;
  bool json;
  bool dry_run;
  const char *name, *state, *machine;
  char **pos;            /* positional arguments */
  int npos;
} fsm_opts;

static const char *const usages[][2] = {
    {"start", "mealy fsm start MACHINE [--name N] [key=value | key:=VALUE...]"
              " [-s SOCKET] [--timeout DUR]\n"
              "  Start an instance of MACHINE with that context; prints its "
              "name.\n"},
    {"send", "mealy fsm send INSTANCE EVENT [key=value | key:=VALUE...] "
             "[-s SOCKET] [--timeout DUR]\n"
             "  Send EVENT with that payload; ok once it is in the journal.\n"},
    {"ls", "mealy fsm ls [--state S] [--machine M] [--json] [-s SOCKET] "
           "[--timeout DUR]\n"
           "  List the live instances: name, machine, state, phase.\n"},
    {"show", "mealy fsm show INSTANCE [--json] [-s SOCKET] [--timeout DUR]\n"
             "  An instance's state, context, waits, retries, last error and "
             "history.\n"},
    {"migrate", "mealy fsm migrate FILE [--dry-run] [--json] [-s SOCKET] "
                "[--timeout DUR]\n"
                "  Move running instances to FILE's definitions where that "
                "is safe; list\n  each one migrated or refused (why).  "
                "--dry-run: change nothing.\n  Exit 1 when any is refused.\n"},
};

static void usage(const char *sub, FILE *f) {
  for (size_t i = 0; i < sizeof usages / sizeof usages[0]; i++)
    if (strcmp(usages[i][0], sub) == 0) fprintf(f, "usage: %s", usages[i][1]);
  fputs("key=value: a string; key:=VALUE: a number, true, false or null.\n"
        "SOCKET defaults to ./" FSM_DEFAULT_SOCKET "; --timeout (default "
        "5s, 0: none) bounds the call.\n", f);
}

/* Options anywhere; 0, or the exit status (help: 0 after printing, with
 * *done set). */
static int parse(const char *sub, int argc, char **argv, fsm_opts *o,
                 bool *done) {
  static char cmd[32];
  snprintf(cmd, sizeof cmd, "mealy fsm %s", sub);
  o->cmd = cmd;
  o->sock = FSM_DEFAULT_SOCKET;
  o->timeout_ms = 5000;
  o->pos = calloc((size_t)argc + 1, sizeof *o->pos);
  if (o->pos == NULL) return 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **val = !strcmp(a, "-s") || !strcmp(a, "--socket") ? &o->sock
                       : !strcmp(a, "--name")    ? &o->name
                       : !strcmp(a, "--state")   ? &o->state
                       : !strcmp(a, "--machine") ? &o->machine
                                                 : NULL;
    if (!strcmp(a, "--help")) {
      usage(sub, stdout);
      *done = true;
      return 0;
    } else if (!strcmp(a, "--json")) {
      o->json = true;
    } else if (!strcmp(a, "--dry-run") && !strcmp(sub, "migrate")) {
      o->dry_run = true;
    } else if (!strcmp(a, "--timeout") && i + 1 < argc) {
      if (opt_duration(cmd, "--timeout", argv[++i], &o->timeout_ms) < 0)
        return 2;
    } else if (val && i + 1 < argc) {
      *val = argv[++i];
    } else if (a[0] == '-' && a[1] != '\0') {
      fprintf(stderr, "%s: %s %s\n", cmd, a, val || !strcmp(a, "--timeout")
              ? "wants a value" : "is not an option here (see --help)");
      return 2;
    } else {
      o->pos[o->npos++] = argv[i];
    }
  }
  return 0;
}

/* key=value and key:=VALUE arguments into a map; NULL after saying
 * which one is wrong. */
mly_value *ctl_kv_map(const char *cmd, char **args, int n) {
  mly_value *m = mly_value_map();
  for (int i = 0; m && i < n; i++) {
    char *eq = strchr(args[i], '=');
    if (eq == NULL || eq == args[i] || (eq == args[i] + 1 && eq[-1] == ':')) {
      fprintf(stderr, "%s: '%s' is not key=value or key:=VALUE\n", cmd,
              args[i]);
      mly_value_free(m);
      return NULL;
    }
    bool typed = eq[-1] == ':';
    char key[MLY_NAME_MAX + 1];
    size_t klen = (size_t)(eq - args[i]) - typed;
    if (klen > MLY_NAME_MAX) klen = MLY_NAME_MAX;
    memcpy(key, args[i], klen);
    key[klen] = '\0';
    const char *v = eq + 1;
    mly_value *val = NULL;
    if (!typed) {
      val = mly_value_str(v);
    } else if (!strcmp(v, "true") || !strcmp(v, "false")) {
      val = mly_value_bool(v[0] == 't');
    } else if (!strcmp(v, "null")) {
      val = mly_value_nil();
    } else {
      char *end = NULL;
      errno = 0;
      long long ll = strtoll(v, &end, 10);
      if (*v && *end == '\0' && errno == 0) {
        val = mly_value_int(ll);
      } else {
        double d = strtod(v, &end);
        if (*v && *end == '\0') val = mly_value_double(d);
      }
      if (val == NULL) {
        fprintf(stderr, "%s: %s: after := write a number, true, false or "
                "null (key=value gives a string)\n", cmd, args[i]);
        mly_value_free(m);
        return NULL;
      }
    }
    mly_map_set(m, key, val);
  }
  return m;
}

/* A string of the host's answer, escaped for the terminal. */
static void put_str(const mly_value *m, const char *key, int width) {
  const char *s = "";
  mly_map_get_str(m, key, &s);
  char shown[ESC_MAX(256) + 1]; /* an error text is at most 255 bytes */
  esc_str(s, strnlen(s, 256), shown, sizeof shown);
  printf("%-*s", width, shown);
}

static void print_ls(const mly_value *list) {
  printf("%-32s %-16s %-16s %-9s %s\n", "NAME", "MACHINE", "STATE", "PHASE",
         "LIFECYCLE");
  for (size_t i = 0; i < mly_value_len(list); i++) {
    const mly_value *m = mly_array_at(list, i);
    put_str(m, "name", 32);
    putchar(' ');
    put_str(m, "machine", 16);
    putchar(' ');
    put_str(m, "state", 16);
    putchar(' ');
    put_str(m, "phase", 9);
    putchar(' ');
    put_str(m, "lifecycle", 0);
    putchar('\n');
  }
}

static void fmt_time(int64_t ms, char *buf, size_t len) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, len - n, ".%03dZ", (int)(ms % 1000));
}

static void print_show(const mly_value *m) {
  static const char *const keys[] = {"name", "machine", "state", "phase",
                                     "event", "sleep_why", "awaits_action",
                                     "awaits_queue", "lifecycle", "hash"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    if (mly_value_type(mly_map_get(m, keys[i])) != MLY_V_STR) continue;
    printf("%-10s ", keys[i]);
    put_str(m, keys[i], 0);
    putchar('\n');
  }
  uint64_t u = 0;
  int64_t due = 0;
  if (mly_map_get_uint(m, "id", &u) == 0) printf("%-10s %" PRIu64 "\n", "id", u);
  if (mly_map_get_uint(m, "version", &u) == 0)
    printf("%-10s %" PRIu64 "\n", "version", u);
  if (mly_map_get_uint(m, "attempt", &u) == 0)
    printf("%-10s %" PRIu64 "\n", "attempt", u);
  if (mly_map_get_uint(m, "seq", &u) == 0)
    printf("%-10s %" PRIu64 "\n", "steps", u);
  if (mly_map_get_int(m, "due_ms", &due) == 0) {
    char t[48];
    fmt_time(due, t, sizeof t);
    printf("%-10s %s\n", "due", t);
  }
  const mly_value *w = mly_map_get(m, "waits");
  if (mly_value_len(w) > 0) {
    printf("%-10s", "waits");
    for (size_t i = 0; i < mly_value_len(w); i++) {
      const char *s = "";
      char shown[ESC_MAX(64) + 1];
      mly_value_get_str(mly_array_at(w, i), &s, NULL);
      esc_str(s, strnlen(s, 64), shown, sizeof shown);
      printf(" %s", shown);
    }
    putchar('\n');
  }
  const mly_value *ctx = mly_map_get(m, "context");
  if (mly_value_type(mly_map_get(ctx, "error")) == MLY_V_STR) {
    printf("%-10s ", "error"); /* the last failure, also in the context */
    put_str(ctx, "error", 0);
    putchar('\n');
  }
  printf("%-10s ", "context");
  json_value(stdout, ctx);
  putchar('\n');
  const mly_value *hist = mly_map_get(m, "history");
  if (mly_value_len(hist) > 0) printf("history:\n");
  for (size_t i = 0; i < mly_value_len(hist); i++) {
    const mly_value *e = mly_array_at(hist, i);
    int64_t at = 0;
    char t[48];
    mly_map_get_int(e, "at_ms", &at);
    fmt_time(at, t, sizeof t);
    printf("  %s ", t);
    put_str(e, "from", 0);
    printf(" --");
    put_str(e, "event", 0);
    printf("--> ");
    put_str(e, "to", 0);
    printf(" (");
    put_str(e, "result", 0);
    printf(")\n");
  }
}

/* One subcommand: its params from the options, the call, the output. */
/* migrate's answer: one line per instance; 1 when any was refused. */
static int print_migrate(const mly_value *res, bool dry) {
  const mly_value *list = mly_map_get(res, "instances");
  int refused = 0;
  for (size_t i = 0; i < mly_value_len(list); i++) {
    const mly_value *e = mly_array_at(list, i);
    bool ok = false;
    mly_value_get_bool(mly_map_get(e, "migrated"), &ok);
    refused += !ok;
    fputs(ok ? (dry ? "would migrate " : "migrated ") : "refused  ", stdout);
    put_str(e, "name", 0);
    fputs(" (", stdout);
    put_str(e, "machine", 0);
    fputs(", state ", stdout);
    put_str(e, "state", 0);
    fputs(ok ? ")" : "): ", stdout);
    if (!ok) put_str(e, "reason", 0);
    putchar('\n');
  }
  printf("%zu %s, %d refused\n", mly_value_len(list) - (size_t)refused,
         dry ? "would migrate" : "migrated", refused);
  return refused > 0;
}

static int run(const char *sub, int argc, char **argv) {
  fsm_opts o = {0};
  bool done = false;
  int st = parse(sub, argc, argv, &o, &done);
  mly_value *params = NULL;
  if (st == 0 && !done) {
    params = mly_value_array();
    if (!strcmp(sub, "start") && o.npos >= 1) {
      mly_value *ctx = ctl_kv_map(o.cmd, o.pos + 1, o.npos - 1);
      mly_array_push(params, mly_value_str(o.pos[0]));
      mly_array_push(params, o.name ? mly_value_str(o.name) : mly_value_nil());
      mly_array_push(params, ctx);
      if (ctx == NULL) st = 2;
    } else if (!strcmp(sub, "send") && o.npos >= 2) {
      mly_value *pl = ctl_kv_map(o.cmd, o.pos + 2, o.npos - 2);
      mly_array_push(params, mly_value_str(o.pos[0]));
      mly_array_push(params, mly_value_str(o.pos[1]));
      mly_array_push(params, pl);
      if (pl == NULL) st = 2;
    } else if (!strcmp(sub, "ls") && o.npos == 0) {
      mly_value *f = mly_value_map();
      if (o.state) mly_map_set_str(f, "state", o.state);
      if (o.machine) mly_map_set_str(f, "machine", o.machine);
      mly_array_push(params, f);
    } else if (!strcmp(sub, "show") && o.npos == 1) {
      mly_array_push(params, mly_value_str(o.pos[0]));
    } else if (!strcmp(sub, "migrate") && o.npos == 1) {
      /* the host loads it: by a name that does not depend on our cwd */
      char *abs = realpath(o.pos[0], NULL);
      if (abs == NULL) {
        /* a file that cannot be read: refused (1), not a usage error */
        fprintf(stderr, "%s: %s: %s\n", o.cmd, o.pos[0], strerror(errno));
        st = 1;
      } else {
        mly_value *opt = mly_value_map();
        mly_map_set(opt, "dry_run", mly_value_bool(o.dry_run));
        mly_array_push(params, mly_value_str(abs));
        mly_array_push(params, opt);
        free(abs);
      }
    } else {
      fprintf(stderr, "%s: bad command line\n", o.cmd);
      usage(sub, stderr);
      st = 2;
    }
  }
  mly_value *res = NULL;
  if (st == 0 && !done) {
    st = rpc_call_sock(o.cmd, o.sock, sub, params, o.timeout_ms, &res) < 0;
    params = NULL;
  }
  if (st == 0 && res) {
    if (o.json) {
      json_value(stdout, res);
      putchar('\n');
    } else if (!strcmp(sub, "start")) {
      put_str(res, "name", 0);
      putchar('\n');
    } else if (!strcmp(sub, "ls")) {
      print_ls(res);
    } else if (!strcmp(sub, "show")) {
      print_show(res);
    } else if (!strcmp(sub, "migrate")) {
      st = print_migrate(res, o.dry_run);
    } else {
      puts("ok");
    }
  }
  mly_value_free(params);
  mly_value_free(res);
  free(o.pos);
  return st;
}

int cmd_fsm_start(int argc, char **argv) { return run("start", argc, argv); }
int cmd_fsm_send(int argc, char **argv) { return run("send", argc, argv); }
int cmd_fsm_ls(int argc, char **argv) { return run("ls", argc, argv); }
int cmd_fsm_show(int argc, char **argv) { return run("show", argc, argv); }
int cmd_fsm_migrate(int argc, char **argv) {
  return run("migrate", argc, argv);
}
