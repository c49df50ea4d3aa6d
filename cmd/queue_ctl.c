/*
 * queue_ctl.c - `mealy queue ls|show|add|retry|delete|purge|pause|
 * resume`: clients of the task queues of a running `mealy fsm run`,
 * through its control socket (queue_methods.c serves them).
 *
 * Each takes -s SOCKET (default ./mealy-fsm.sock) and --timeout DUR
 * (default 5s); ls and show take --json.  With --state-dir DIR each
 * works on a state directory instead, with no host (queue_offline.c):
 * ls and show always (read only), the changes only while no host holds
 * DIR.  With --store CONNINFO ls and show read a PostgreSQL store (the
 * changes are refused: they go through a running host).  The replies have one shape either way, and one printer.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "fsmhost.h"

typedef struct qsub {
  const char *name, *args, *what;
  int npos;   /* positional arguments wanted; -1: 2 or more */
} qsub;

static const qsub subs[] = {
    {"ls", "[--json]", "each queue: depth (scheduled, waiting), running, "
     "dead, paused, rate and limits", 0},
    {"show", "QUEUE [--json]", "a queue and its tasks: state, attempts, "
     "errors, times", 1},
    {"add", "QUEUE FUNCTION [--name N] [k=v | k:=VALUE...]", "add a task "
     "running a function registered in the host", -1},
    {"retry", "TASK-ID", "run a dead letter again, with the queue's policy",
     1},
    {"delete", "TASK-ID", "delete a task in any state", 1},
    {"purge", "QUEUE", "delete every task of the queue", 1},
    {"pause", "QUEUE", "stop starting tasks (it keeps accepting them)", 1},
    {"resume", "QUEUE", "start tasks again", 1},
};
#define NSUBS (sizeof subs / sizeof subs[0])

static void usage(FILE *f, const qsub *s) {
  if (s) {
    fprintf(f, "usage: mealy queue %s %s [-s SOCKET] [--timeout DUR]\n"
            "       mealy queue %s %s --state-dir DIR\n"
            "       mealy queue %s %s --store CONNINFO\n  %s\n",
            s->name, s->args, s->name, s->args, s->name, s->args, s->what);
  } else {
    fprintf(f, "usage: mealy queue SUBCOMMAND [OPTIONS]\n\nsubcommands:\n");
    for (size_t i = 0; i < NSUBS; i++)
      fprintf(f, "  %-7s %-44s\n          %s\n", subs[i].name, subs[i].args,
              subs[i].what);
  }
  fputs("SOCKET (a running `mealy fsm run`) defaults to ./" FSM_DEFAULT_SOCKET
        "; --timeout (default 5s, 0: none) bounds the call.\n"
        "--state-dir DIR: no host; ls and show read DIR's journal (also "
        "while a host\nruns: a moment of it, without limits and "
        "counters); the others change DIR\nonly while no host holds it.\n"
        "--store CONNINFO: no host; ls and show read a PostgreSQL store (every "
        "process's\ntasks at one moment, nothing taken from them); the "
        "others are refused there\n(make them through a running host).\n",
        f);
}

static const char *sget(const mly_value *m, const char *k) {
  const char *s = "";
  mly_map_get_str(m, k, &s);
  return s;
}
static uint64_t uget(const mly_value *m, const char *k) {
  uint64_t u = 0;
  mly_map_get_uint(m, k, &u);
  return u;
}
static int64_t iget(const mly_value *m, const char *k) {
  int64_t i = 0;
  mly_map_get_int(m, k, &i);
  return i;
}

/* s escaped for the terminal into out (cut to fit). */
static void esc(const char *s, char *out, size_t cap) {
  mly_esc_str(s, strlen(s), out, cap);
}

static void print_queue_row(const mly_value *q) {
  bool paused = false;
  const mly_value *p = mly_map_get(q, "paused");
  if (p) mly_value_get_bool(p, &paused);
  double rate = 0;
  const mly_value *r = mly_map_get(q, "rate");
  if (r) mly_value_get_double(r, &rate);
  char qn[MLY_ESC_MAX(64) + 1], rs[32] = "-", mc[32] = "-";
  esc(sget(q, "name"), qn, sizeof qn);
  if (r) snprintf(rs, sizeof rs, "%g", rate); /* offline: no limits */
  if (mly_map_get(q, "max_concurrent"))
    snprintf(mc, sizeof mc, "%" PRIu64, uget(q, "max_concurrent"));
  /* steps: YAML machines' dispatches through the queue (queue:), known
   * to a host only */
  char sw[24] = "-", sr[24] = "-";
  if (mly_map_get(q, "steps_waiting"))
    snprintf(sw, sizeof sw, "%" PRIu64, uget(q, "steps_waiting"));
  if (mly_map_get(q, "steps_running"))
    snprintf(sr, sizeof sr, "%" PRIu64, uget(q, "steps_running"));
  printf("%-20s %9" PRIu64 " %9" PRIu64 " %8" PRIu64 " %6" PRIu64
         " %-6s %8s %8s %10s %9s\n", qn, uget(q, "scheduled"),
         uget(q, "waiting"), uget(q, "running"), uget(q, "dead"),
         paused ? "yes" : "no", rs, mc, sw, sr);
}

static void print_queue_head(void) {
  printf("%-20s %9s %9s %8s %6s %-6s %8s %8s %10s %9s\n", "QUEUE",
         "SCHEDULED", "WAITING", "RUNNING", "DEAD", "PAUSED", "RATE",
         "MAXCONC", "STEPSWAIT", "STEPSRUN");
}

static void fmt_time(int64_t ms, char *buf, size_t len) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A queue the host does not declare: why its tasks wait (stderr). */
static void print_note(const mly_value *q) {
  const char *note = NULL;
  if (mly_map_get_str(q, "note", &note) < 0) return;
  char qn[MLY_ESC_MAX(64) + 1];
  esc(sget(q, "name"), qn, sizeof qn);
  fprintf(stderr, "note: queue %s: %s\n", qn, note);
}

static void print_show(const mly_value *q) {
  print_queue_head();
  print_queue_row(q);
  print_note(q);
  const mly_value *tasks = mly_map_get(q, "tasks");
  size_t n = mly_value_len(tasks);
  /* the ID, NAME and RUNS columns as wide as their widest value (ids
   * grow past 8 digits, names to 64 bytes) */
  int idw = 8, nw = 24, fw = 10;
  for (size_t i = 0; i < n; i++) {
    const mly_value *t = mly_array_at(tasks, i);
    char b[MLY_ESC_MAX(64) + 1];
    const char *nm = "-";
    int l = snprintf(b, sizeof b, "%" PRIu64, uget(t, "id"));
    if (l > idw) idw = l;
    mly_map_get_str(t, "name", &nm);
    esc(nm, b, sizeof b);
    if ((int)strlen(b) > nw) nw = (int)strlen(b);
    esc(sget(t, "runs"), b, sizeof b);
    if ((int)strlen(b) > fw) fw = (int)strlen(b);
  }
  printf("\n%-*s %-*s %-*s %-10s %8s %-20s %s\n", idw, "ID", nw, "NAME", fw,
         "RUNS", "STATE", "ATTEMPTS", "ETA", "LAST ERROR");
  for (size_t i = 0; i < n; i++) {
    const mly_value *t = mly_array_at(tasks, i);
    char eta[32], name[MLY_ESC_MAX(64) + 1], fn[MLY_ESC_MAX(64) + 1],
        msg[MLY_ESC_MAX(128) + 1];
    fmt_time(iget(t, "eta_ms"), eta, sizeof eta);
    const char *nm = "-";
    mly_map_get_str(t, "name", &nm);
    esc(nm, name, sizeof name);
    esc(sget(t, "runs"), fn, sizeof fn);
    esc(sget(t, "last_msg"), msg, sizeof msg);
    printf("%-*" PRIu64 " %-*s %-*s %-10s %8" PRIu64 " %-20s %s%s%s\n",
           idw, uget(t, "id"), nw, name, fw, fn, sget(t, "state"), uget(t, "attempts"),
           eta, sget(t, "last_error"), *msg ? ": " : "", msg);
  }
}


/* A reply, from a host or from DIR, as the subcommand prints it. */
static void print_result(const qsub *s, const mly_value *res, bool json,
                         int st) {
  if (st != 0) return;
  if (res == NULL || mly_value_type(res) == MLY_V_NIL) {
    puts("ok");
  } else if (json) {
    json_value(stdout, res);
    putchar('\n');
  } else if (!strcmp(s->name, "ls")) {
    print_queue_head();
    for (size_t i = 0; i < mly_value_len(res); i++)
      print_queue_row(mly_array_at(res, i));
    for (size_t i = 0; i < mly_value_len(res); i++)
      print_note(mly_array_at(res, i));
  } else if (!strcmp(s->name, "show")) {
    print_show(res);
  } else if (!strcmp(s->name, "add")) {
    printf("%" PRIu64 "\n", uget(res, "id"));
  } else if (!strcmp(s->name, "purge")) {
    printf("%" PRIu64 " deleted\n", uget(res, "deleted"));
  } else {
    puts("ok");
  }
}

int cmd_queue(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout, NULL);
    return argc < 2 ? 2 : 0;
  }
  const qsub *s = NULL;
  for (size_t i = 0; i < NSUBS; i++)
    if (!strcmp(argv[1], subs[i].name)) s = &subs[i];
  if (s == NULL) {
    fprintf(stderr, "mealy queue: no subcommand '%s'\n", argv[1]);
    usage(stderr, NULL);
    return 2;
  }
  char cmd[32];
  snprintf(cmd, sizeof cmd, "mealy queue %s", s->name);
  const char *sock = FSM_DEFAULT_SOCKET, *name = NULL, *dir = NULL,
             *store = NULL;
  bool sock_given = false;
  int64_t timeout_ms = 5000;
  bool json = false;
  char **pos = calloc((size_t)argc, sizeof *pos);
  int npos = 0;
  if (pos == NULL) return 1;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help")) {
      usage(stdout, s);
      free(pos);
      return 0;
    } else if (!strcmp(a, "--json")) {
      json = true;
    } else if ((!strcmp(a, "-s") || !strcmp(a, "--socket")) && i + 1 < argc) {
      sock = argv[++i];
      sock_given = true;
    } else if (!strcmp(a, "--state-dir") && i + 1 < argc) {
      dir = argv[++i];
    } else if (!strcmp(a, "--store") && i + 1 < argc) {
      store = argv[++i];
    } else if (!strcmp(a, "--name") && i + 1 < argc) {
      name = argv[++i];
    } else if (!strcmp(a, "--timeout") && i + 1 < argc) {
      if (opt_duration(cmd, "--timeout", argv[++i], &timeout_ms) < 0) {
        free(pos);
        return 2;
      }
    } else if (a[0] == '-' && a[1] != '\0') {
      fprintf(stderr, "%s: %s is not an option here (see --help)\n", cmd, a);
      free(pos);
      return 2;
    } else {
      pos[npos++] = argv[i];
    }
  }
  if (s->npos >= 0 ? npos != s->npos : npos < 2) {
    fprintf(stderr, "%s: bad command line\n", cmd);
    usage(stderr, s);
    free(pos);
    return 2;
  }
  if (!sock_given && !dir) store = opt_store(store);
  if ((dir || store) && (sock_given || (dir && store))) {
    fprintf(stderr, "%s: -s SOCKET (a host), --state-dir DIR and --store "
            "CONNINFO: one of them\n", cmd);
    free(pos);
    return 2;
  }
  mly_value *res = NULL;
  int st = 0;
  if (dir || store) {
    st = dir ? queue_offline(cmd, s->name, dir, pos, npos, name, &res)
             : queue_store(cmd, s->name, store, pos, &res);
    print_result(s, res, json, st);
    mly_value_free(res);
    free(pos);
    return st;
  }
  mly_value *params = mly_value_array();
  if (!strcmp(s->name, "add")) {
    mly_value *pl = ctl_kv_map(cmd, pos + 2, npos - 2);
    mly_array_push(params, mly_value_str(pos[0]));
    mly_array_push(params, mly_value_str(pos[1]));
    mly_array_push(params, name ? mly_value_str(name) : mly_value_nil());
    mly_array_push(params, pl ? pl : mly_value_nil());
    if (pl == NULL) st = 2;
  } else if (!strcmp(s->name, "retry") || !strcmp(s->name, "delete")) {
    char *end;
    unsigned long long id = strtoull(pos[0], &end, 10);
    if (*pos[0] == '\0' || *end || id == 0) {
      fprintf(stderr, "%s: '%s' is not a task id (a number from `mealy "
              "queue show`)\n", cmd, pos[0]);
      st = 2;
    }
    mly_array_push(params, mly_value_uint(id));
  } else if (npos == 1) {
    mly_array_push(params, mly_value_str(pos[0]));
  }
  char method[32];
  snprintf(method, sizeof method, "queue.%s", s->name);
  if (st == 0) {
    st = rpc_call_sock(cmd, sock, method, params, timeout_ms, &res) < 0;
    params = NULL;
  }
  print_result(s, res, json, st);
  mly_value_free(params);
  mly_value_free(res);
  free(pos);
  return st;
}