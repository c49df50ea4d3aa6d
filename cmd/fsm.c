/*
 * fsm.c - `mealy fsm SUBCOMMAND`: YAML machines from the command line.
 *
 *   validate [--json] FILE...   every error of the files (exit 1 if any)
 *   dot FILE [MACHINE]          a machine as a Graphviz DOT graph
 *   run, start, send, ls, show, migrate  a host and its clients (fsm_run.c,
 *                               fsm_ctl.c)
 *
 * Subcommands are rows of one table (name, function, usage line, what it
 * does); each parses its own options and answers --help.  Messages are
 * the loader's: "FILE:LINE:COL: what is wrong; what to do", one a line,
 * every one of them; notes (keys accepted and ignored, deprecated ones)
 * come as "FILE:LINE:COL: note: ...".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "fsmhost.h"
#include "mealy.h"

typedef struct fsm_cmd {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *args;
  const char *what;
} fsm_cmd;

static int fsm_validate(int argc, char **argv);
static int fsm_dot(int argc, char **argv);

static const fsm_cmd fsm_cmds[] = {
    {"validate", fsm_validate, "[--json] FILE...",
     "check machine files; print every error (exit 1 if any)"},
    {"dot", fsm_dot, "FILE [MACHINE]",
     "print a machine as a Graphviz DOT graph (dot -Tsvg to draw it)"},
    /* a host and its clients, over the control socket (fsm_run.c,
       fsm_ctl.c) */
    {"run", cmd_fsm_run, "FILE... --state-dir DIR",
     "run the machines, durable in DIR (--actions LIB.so, -s SOCKET)"},
    {"start", cmd_fsm_start, "MACHINE [k=v...]",
     "start an instance on a running host (--name N)"},
    {"send", cmd_fsm_send, "INSTANCE EVENT [k=v]",
     "send an event to an instance, with a payload"},
    {"ls", cmd_fsm_ls, "[--state S] [--json]",
     "list the live instances (--machine M)"},
    {"show", cmd_fsm_show, "INSTANCE [--json]",
     "an instance's state, context, waits, retries, history"},
    {"migrate", cmd_fsm_migrate, "FILE [--dry-run]",
     "move running instances to FILE's definitions where safe"},
};
#define NCMDS (sizeof fsm_cmds / sizeof fsm_cmds[0])

static void usage(FILE *f) {
  fprintf(f, "usage: mealy fsm SUBCOMMAND [OPTIONS]\n\nsubcommands:\n");
  for (size_t i = 0; i < NCMDS; i++)
    fprintf(f, "  %-9s %-18s %s\n", fsm_cmds[i].name, fsm_cmds[i].args,
            fsm_cmds[i].what);
  fprintf(f, "\nThe file format: README, \"YAML machines\".  "
             "'mealy fsm SUBCOMMAND --help' tells more.\n");
}

/* Options the table's short column leaves out. */
static const char *more_args(const char *name) {
  return strcmp(name, "validate") == 0 ? "[--actions LIB.so] " : "";
}

static void sub_usage(FILE *f, const char *name) {
  for (size_t i = 0; i < NCMDS; i++)
    if (strcmp(fsm_cmds[i].name, name) == 0)
      fprintf(f, "usage: mealy fsm %s %s%s\n  %s\n", name, more_args(name),
              fsm_cmds[i].args, fsm_cmds[i].what);
}

static bool is_help(const char *a) {
  return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

/* ---- messages, as text or gathered for --json ---- */

static void json_msg(FILE *f, bool first, const mly_conf_msg *m) {
  if (!first) fputc(',', f);
  json_obj o = {f, true};
  fputc('{', f);
  json_key(&o, "file");
  json_str(f, m->file, strlen(m->file));
  json_key(&o, "line");
  fprintf(f, "%u", m->line);
  json_key(&o, "col");
  fprintf(f, "%u", m->col);
  json_key(&o, "message");
  json_str(f, m->text, strlen(m->text));
  fputc('}', f);
}

/* Text mode prints at once; --json keeps them for the object. */
typedef struct kept {
  char *file, *text;
  uint32_t line, col;
} kept;

typedef struct gather {
  bool json;
  kept *err, *note;
  size_t nerr, nnote;
  bool nomem;
} gather;

static void keep(gather *g, kept **v, size_t *n, const mly_conf_msg *m) {
  kept *nv = realloc(*v, (*n + 1) * sizeof *nv);
  if (nv == NULL) {
    g->nomem = true;
    return;
  }
  *v = nv;
  nv[*n] = (kept){strdup(m->file), strdup(m->text), m->line, m->col};
  if (!nv[*n].file || !nv[*n].text) g->nomem = true;
  ++*n;
}

static void on_error(const mly_conf_msg *m, void *arg) {
  gather *g = arg;
  if (g->json) return keep(g, &g->err, &g->nerr, m);
  char buf[2048];
  fprintf(stderr, "%s\n", mly_conf_format(m, buf, sizeof buf));
  g->nerr++;
}

static void on_note(const mly_conf_msg *m, void *arg) {
  gather *g = arg;
  if (g->json) return keep(g, &g->note, &g->nnote, m);
  char buf[2048];
  mly_conf_msg n = *m;
  char text[2100];
  snprintf(text, sizeof text, "note: %s", m->text);
  n.text = text;
  fprintf(stderr, "%s\n", mly_conf_format(&n, buf, sizeof buf));
  g->nnote++;
}

static void kept_json(FILE *f, const kept *v, size_t n) {
  fputc('[', f);
  for (size_t i = 0; i < n; i++) {
    mly_conf_msg m = {v[i].file ? v[i].file : "", v[i].line, v[i].col,
                      v[i].text ? v[i].text : ""};
    json_msg(f, i == 0, &m);
  }
  fputc(']', f);
}

static void kept_free(kept *v, size_t n) {
  for (size_t i = 0; v && i < n; i++) free(v[i].file), free(v[i].text);
  free(v);
}

static void hash_hex(const unsigned char *h, char out[65]) {
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* ---- validate ---- */

static int fsm_validate(int argc, char **argv) {
  bool json = false, options = true;
  const char *actions = NULL;
  const char **files = calloc((size_t)argc, sizeof *files);
  size_t nfiles = 0;
  if (files == NULL) {
    fprintf(stderr, "mealy fsm validate: out of memory\n");
    return 1;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (options && is_help(a)) {
      sub_usage(stdout, "validate");
      printf("  --json          one JSON object on stdout: ok, errors, "
             "notes, actions_checked,\n"
             "                  machines (name, states, hash)\n"
             "  --actions LIB.so  load the library mealy fsm run --actions "
             "would (the same\n"
             "                  checks of its owner and mode), and refuse "
             "action names it does\n"
             "                  not register.  Without it action names are "
             "not checked, and\n"
             "                  the output says so (exec: actions need no "
             "library).\n"
             "  The files' queues: and schedules: are read and checked as "
             "mealy fsm run\n"
             "  reads them (a machine's queue:, a schedule's queue, machine, "
             "priority, and\n"
             "  with --actions its function); the library gets the runtime "
             "run gives it.\n");
      free(files);
      return 0;
    } else if (options && strcmp(a, "--") == 0) {
      options = false;
    } else if (options && strcmp(a, "--json") == 0) {
      json = true;
    } else if (options && strcmp(a, "--actions") == 0 && i + 1 < argc) {
      actions = argv[++i];
    } else if (options && a[0] == '-' && a[1] != '\0') {
      fprintf(stderr, "mealy fsm validate: %s '%s'\n",
              strcmp(a, "--actions") == 0 ? "LIB.so is needed after"
                                          : "unknown option", a);
      sub_usage(stderr, "validate");
      free(files);
      return 2;
    } else {
      files[nfiles++] = a;
    }
  }
  if (nfiles == 0) {
    fprintf(stderr, "mealy fsm validate: FILE is needed\n");
    sub_usage(stderr, "validate");
    free(files);
    return 2;
  }
  gather g = {.json = json};
  mly_fsm_load_options o = {.on_error = on_error, .on_note = on_note,
                            .arg = &g};
  /* what mealy fsm run builds, the same code: a runtime with the queue
   * layer for the library, the files' queues: and schedules: read and
   * checked */
  fsm_host h = {0};
  int rc = fsm_host_load(&h, "mealy fsm validate", actions, false, files,
                         nfiles, &o);
  mly_fsm_set *set = h.set;
  h.set = NULL;
  free(files);
  if (rc < 0 && g.nerr == 0 && rc != MLY_ENOMEM) { /* the library's: said */
    fsm_host_close(&h);
    mly_fsm_set_free(set);
    return 1;
  }
  if (rc == MLY_ENOMEM) g.nomem = true;
  size_t n = mly_fsm_count(set);
  if (json) {
    json_obj top = {stdout, true};
    fputc('{', stdout);
    json_key(&top, "ok");
    fputs(rc == 0 ? "true" : "false", stdout);
    json_key(&top, "errors");
    kept_json(stdout, g.err, g.nerr);
    json_key(&top, "notes");
    kept_json(stdout, g.note, g.nnote);
    json_key(&top, "actions_checked");
    fputs(actions ? "true" : "false", stdout);
    json_key(&top, "machines");
    fputc('[', stdout);
    for (size_t i = 0; i < n; i++) {
      const mly_fsm_machine *m = mly_fsm_at(set, i);
      char hex[65];
      hash_hex(mly_fsm_hash(m), hex);
      json_obj mo = {stdout, true};
      fputs(i ? ",{" : "{", stdout);
      json_key(&mo, "name");
      json_str(stdout, mly_fsm_name(m), strlen(mly_fsm_name(m)));
      json_key(&mo, "states");
      printf("%zu", mly_fsm_nstates(m));
      json_key(&mo, "hash");
      json_str(stdout, hex, 64);
      fputc('}', stdout);
    }
    fputs("]}\n", stdout);
  } else if (rc == 0) {
    for (size_t i = 0; i < n; i++) {
      const mly_fsm_machine *m = mly_fsm_at(set, i);
      char hex[65];
      hash_hex(mly_fsm_hash(m), hex);
      printf("%s: %zu states, sha256 %.16s\n", mly_fsm_name(m),
             mly_fsm_nstates(m), hex);
    }
    if (actions)
      printf("ok: %zu machine%s; every action name is registered by %s "
             "(and every schedule's function)\n", n, n == 1 ? "" : "s",
             actions);
    else
      printf("ok: %zu machine%s; action names not checked (structure only: "
             "give --actions LIB.so to check them)\n", n, n == 1 ? "" : "s");
  } else {
    fprintf(stderr, "mealy fsm validate: %zu error%s\n", g.nerr,
            g.nerr == 1 ? "" : "s");
  }
  if (g.nomem) fprintf(stderr, "mealy fsm validate: out of memory\n");
  kept_free(g.err, g.nerr);
  kept_free(g.note, g.nnote);
  mly_fsm_set_free(set);
  fsm_host_close(&h);
  return rc == 0 && !g.nomem && fflush(stdout) == 0 ? 0 : 1;
}

/* ---- dot ---- */

static int fsm_dot(int argc, char **argv) {
  const char *file = NULL, *name = NULL;
  bool options = true;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (options && is_help(a)) {
      sub_usage(stdout, "dot");
      printf("  MACHINE may be left out when FILE defines one machine.\n"
             "  Initial: bold, with an arrow from a point; final: double "
             "circle; wait: hexagon;\n"
             "  continuation and fan-in states say so; transitions show "
             "event, countdown, action;\n"
             "  failure edges are dashed.  Draw it: mealy fsm dot F | dot "
             "-Tsvg > F.svg\n");
      return 0;
    } else if (options && strcmp(a, "--") == 0) {
      options = false;
    } else if (options && a[0] == '-' && a[1] != '\0') {
      fprintf(stderr, "mealy fsm dot: unknown option '%s'\n", a);
      sub_usage(stderr, "dot");
      return 2;
    } else if (file == NULL) {
      file = a;
    } else if (name == NULL) {
      name = a;
    } else {
      fprintf(stderr, "mealy fsm dot: one FILE and one MACHINE only ('%s' is "
              "extra)\n", a);
      return 2;
    }
  }
  if (file == NULL) {
    fprintf(stderr, "mealy fsm dot: FILE is needed\n");
    sub_usage(stderr, "dot");
    return 2;
  }
  gather g = {0};
  mly_fsm_load_options o = {.on_error = on_error, .arg = &g};
  /* the file as run reads it: its queues: and schedules: too */
  fsm_host h = {0};
  int rc = fsm_host_load(&h, "mealy fsm dot", NULL, false, &file, 1, &o);
  mly_fsm_set *set = h.set;
  h.set = NULL;
  fsm_host_close(&h);
  if (rc) {
    fprintf(stderr, "mealy fsm dot: %s: %s\n", file,
            rc == MLY_EINVAL ? "not valid (the errors are above)"
                             : mly_strerror(rc));
    return 1;
  }
  const mly_fsm_machine *m = NULL;
  if (name) {
    m = mly_fsm_find(set, name);
    if (m == NULL)
      fprintf(stderr, "mealy fsm dot: %s has no machine '%s'\n", file, name);
  } else if (mly_fsm_count(set) == 1) {
    m = mly_fsm_at(set, 0);
  } else {
    fprintf(stderr, "mealy fsm dot: %s defines %zu machines; name one:", file,
            mly_fsm_count(set));
    for (size_t i = 0; i < mly_fsm_count(set); i++)
      fprintf(stderr, " %s", mly_fsm_name(mly_fsm_at(set, i)));
    fputc('\n', stderr);
  }
  rc = m ? mly_fsm_dot(m, stdout) : MLY_ENOENT;
  mly_fsm_set_free(set);
  if (rc == 0 && fflush(stdout) != 0) rc = MLY_EIO;
  if (rc == MLY_EIO) fprintf(stderr, "mealy fsm dot: cannot write: %s\n",
                             mly_strerror(rc));
  return rc == 0 ? 0 : 1;
}

/* ---- dispatch ---- */

int cmd_fsm(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return 0;
  }
  for (size_t i = 0; i < NCMDS; i++)
    if (strcmp(argv[1], fsm_cmds[i].name) == 0)
      return fsm_cmds[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "mealy fsm: unknown subcommand '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
