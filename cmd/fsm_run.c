/*
 * fsm_run.c - `mealy fsm run FILE... [--actions LIB.so] --state-dir DIR
 * [-s SOCKET]`: YAML machines in the foreground, durable in DIR,
 * controlled over a msgpack-RPC socket (rpc.h; methods: fsm_methods.c).
 *
 * Order matters: actions are registered first (the library's
 * mly_actions_init), then the files are loaded (the loader refuses
 * actions no one registered), the journal is opened (recovered instances
 * resume at once, their actions known), the machines are added (their
 * definitions stored by content hash), and the socket opens last.
 *
 * --actions LIB.so is code run as this process, possibly root:
 * fsm_actions.c checks it before it loads it (validate uses the same).
 *
 * SIGTERM or SIGINT: the socket closes, durable instances are suspended
 * (they continue at the next run), the process exits 0.  SIGPIPE is
 * ignored: a client that goes away is its connection's end only.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "fsmhost.h"

static void usage(FILE *f) {
  fprintf(f,
      "usage: mealy fsm run FILE... [--actions LIB.so] [-s SOCKET]\n"
      "         [--state-dir DIR [--sync POLICY] |\n"
      "          --store CONNINFO [--lease MS] [--give-up MS]\n"
      "                           [--lock-timeout MS]]\n"
      "  Run the machines of FILE... in the foreground, durable in DIR\n"
      "  (a journal) or in a PostgreSQL database shared with other hosts\n"
      "  (CONNINFO: postgresql://... or 'host=DIR dbname=NAME'; its schema\n"
      "  made by mealy store init; or store: in a FILE, which --state-dir\n"
      "  or --store overrides; without both, MEALY_STORE in the\n"
      "  environment stands for --store, out of sight of ps), controlled\n"
      "  through SOCKET (default\n"
      "  ./" FSM_DEFAULT_SOCKET "):\n"
      "  mealy fsm start|send|ls|show talk to it.\n"
      "  --actions LIB.so  a shared object whose\n"
      "                    int mly_actions_init(mly_runtime *rt)\n"
      "                    registers the actions (mly_action_register);\n"
      "                    it must be owned by root or by this user and\n"
      "                    writable by no one else, in trusted directories\n"
      "                    (a symlink: owned by root or this user, its\n"
      "                    target checked the same); build it with\n"
      "                    cc -shared -fPIC (the binary exports mly_*)\n"
      "  --sync POLICY     always (default), never, interval:100ms\n"
      "                    (a journal)\n"
      "  --lease MS        with --store (or store:): how long this process\n"
      "                    owns its instances unless it renews (100 to\n"
      "                    3600000; default 10000)\n"
      "  --give-up MS      with --store: steps waiting this long with no\n"
      "                    connection to the server stop the store and\n"
      "                    this process (exit 1); 100 to 86400000,\n"
      "                    default max(60000, 6 x lease)\n"
      "  --lock-timeout MS with --store: a statement waiting this long\n"
      "                    for a lock is cancelled and its batch sent\n"
      "                    again (1 to 3600000; default 5000)\n"
      "SIGTERM/SIGINT: stop; running instances continue at the next run.\n");
}

static void on_load_error(const mly_conf_msg *m, void *arg) {
  (void)arg;
  if (m->line > 0)
    fprintf(stderr, "%s:%u:%u: %s\n", m->file, m->line, m->col, m->text);
  else
    fprintf(stderr, "%s: %s\n", m->file, m->text);
}

static void host_stop(fsm_host *h) {
  if (h->stops++ == 0 && h->srv) {
    fprintf(stderr, "mealy fsm run: stopping; instances continue at the "
            "next run\n");
    rpc_stop(h->srv);
    h->srv = NULL;
    uv_close((uv_handle_t *)&h->sigterm, NULL);
    uv_close((uv_handle_t *)&h->sigint, NULL);
  }
  mly_runtime_shutdown(h->rt, 0);
}

static void on_stop_signal(uv_signal_t *s, int signum) {
  (void)signum;
  host_stop(s->data);
}

/* Fail-stop (D3): the journal or the store stopped; durable machines
 * ended with the error.  The host stops too and exits 1. */
static void on_journal_error(mly_runtime *rt, int err, const char *msg,
                             void *arg) {
  fsm_host *h = arg;
  (void)rt;
  fprintf(stderr, "mealy fsm run: the %s stopped (%s): %s; exiting\n",
          h->sconf_used ? "store" : "journal", mly_strerror(err), msg);
  h->store_failed = true;
  host_stop(h);
}

typedef struct run_args {
  const char **files;
  size_t nfiles;
  const char *actions, *state_dir, *sock, *sync, *store, *lease, *give_up,
      *lock_timeout;
} run_args;

/* A number of milliseconds from lo to hi, or 0 (not given); -1: said. */
static long ms_arg(const char *opt, const char *v, long lo, long hi) {
  if (v == NULL) return 0;
  char *end;
  long ms = strtol(v, &end, 10);
  if (end == v || *end || ms < lo || ms > hi) {
    fprintf(stderr, "mealy fsm run: %s: '%s' is not a number of "
            "milliseconds from %ld to %ld\n", opt, v, lo, hi);
    return -1;
  }
  return ms;
}

static int parse(int argc, char **argv, run_args *a) {
  a->files = calloc((size_t)argc, sizeof *a->files);
  if (a->files == NULL) return 1;
  a->sock = FSM_DEFAULT_SOCKET;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    const char **val = !strcmp(o, "--actions")     ? &a->actions
                       : !strcmp(o, "--state-dir") ? &a->state_dir
                       : !strcmp(o, "-s") || !strcmp(o, "--socket") ? &a->sock
                       : !strcmp(o, "--sync")      ? &a->sync
                       : !strcmp(o, "--store")     ? &a->store
                       : !strcmp(o, "--lease")     ? &a->lease
                       : !strcmp(o, "--give-up")   ? &a->give_up
                       : !strcmp(o, "--lock-timeout") ? &a->lock_timeout
                                                   : NULL;
    if (val && i + 1 < argc) {
      *val = argv[++i];
    } else if (val || (o[0] == '-' && o[1] != '\0')) {
      fprintf(stderr, "mealy fsm run: %s %s\n", o,
              val ? "wants a value" : "is not an option (see --help)");
      return 2;
    } else {
      a->files[a->nfiles++] = o;
    }
  }
  if (a->state_dir == NULL) a->store = opt_store(a->store);
  bool pgopt = a->lease || a->give_up || a->lock_timeout;
  if (a->nfiles == 0 || (a->state_dir && a->store) ||
      (pgopt && a->state_dir)) {
    fprintf(stderr, "mealy fsm run: %s\n",
            a->nfiles == 0 ? "no machine file given"
            : a->store ? "--state-dir and --store: one of them, not both"
                       : "--lease, --give-up and --lock-timeout go with "
                         "--store (or store: in a file), not --state-dir");
    usage(stderr);
    return 2;
  }
  if (ms_arg("--lease", a->lease, 100, 3600000) < 0 ||
      ms_arg("--give-up", a->give_up, 100, 86400000) < 0 ||
      ms_arg("--lock-timeout", a->lock_timeout, 1, 3600000) < 0)
    return 2;
  return 0;
}

/* The queue layer's starter (a task or schedule with `machine:`): an
 * instance of the machine with the payload (a map) as its context,
 * named "run:QUEUE:TASK-ID" so an attempt run again after a crash finds
 * the instance its first attempt started and counts as done. */
static void start_machine(mly_task *t, void *arg) {
  fsm_host *h = arg;
  mly_task_target what = mly_task_target_of(t);
  const mly_value *p = mly_task_payload(t);
  char name[MLY_INSTANCE_NAME_MAX + 1];
  snprintf(name, sizeof name, "run:%s:%llu", mly_task_queue(t),
           (unsigned long long)mly_task_id(t));
  mly_value *ctx = p && mly_value_type(p) == MLY_V_MAP ? mly_value_copy(p)
                                                        : NULL;
  int rc = mly_fsm_start(h->rt, what.name, name, ctx, NULL, 0, NULL);
  if (rc == 0 || rc == MLY_EEXIST) return mly_task_done(t, MLY_TASK_OK, NULL);
  mly_task_done(t, rc == MLY_ENOENT ? MLY_TASK_PERMANENT : MLY_TASK_RETRY,
                mly_strerror(rc));
}

/* A machine's queue: is one of the files' queues: or declared already
 * (the default queue). */
bool fsm_host_queue_known(const char *name, void *arg) {
  fsm_host *h = arg;
  mly_queue_def qd;
  return mly_queue_conf_has(h->qconf, name) ||
         mly_queue_def_get(h->rt, name, &qd) == 0;
}

int fsm_host_load(fsm_host *h, const char *cmd, const char *actions,
                  bool run, const char *const *files, size_t nfiles,
                  mly_fsm_load_options *lo) {
  int rc;
  if ((rc = uv_loop_init(&h->loop)) < 0) {
    fprintf(stderr, "%s: %s\n", cmd, mly_strerror(rc));
    return rc;
  }
  h->loop_open = true;
  if ((rc = mly_runtime_new(&h->rt, &h->loop, NULL)) < 0 ||
      (rc = mly_fsm_attach(h->rt)) < 0 || (rc = mly_queues_open(h->rt)) < 0 ||
      (h->qconf = mly_queue_conf_new()) == NULL) {
    if (rc == 0) rc = MLY_ENOMEM;
    fprintf(stderr, "%s: %s\n", cmd, mly_strerror(rc));
    return rc;
  }
  if (actions && (rc = fsm_actions_load(h->rt, cmd, actions, &h->actions)) < 0)
    return rc;
  /* run registers every action and function there will be; validate
   * knows them only from --actions */
  if (run || actions) {
    lo->action_known = mly_action_known;
    lo->action_arg = h->rt;
  }
  mly_queue_conf_bind(h->qconf, h->rt, run || actions);
  /* exec actions name commands to run: the files are trusted as the
   * library is (validate reads them as run would) */
  lo->trusted_files = run;
  lo->queue_known = fsm_host_queue_known;
  lo->queue_arg = h;
  mly_queue_conf_sections(h->qconf, h->sec);
  if ((h->sconf = mly_store_conf_new()) == NULL) {
    fprintf(stderr, "%s: %s\n", cmd, mly_strerror(MLY_ENOMEM));
    return MLY_ENOMEM;
  }
  h->sec[2] = mly_store_conf_section(h->sconf);
  lo->sections = h->sec;
  lo->nsections = 3;
  return mly_fsm_load(files, nfiles, lo, &h->set);
}

/* Everything up to the open socket; 0, or the exit status. */
static int setup(fsm_host *h, const run_args *a) {
  char err[1024];
  int rc;
  mly_journal_options jo = {.dir = a->state_dir, .on_error = on_journal_error,
                            .arg = h};
  if (a->sync && mly_sync_parse(a->sync, &jo.sync, &jo.interval_ms) < 0) {
    fprintf(stderr, "mealy fsm run: --sync: '%s' is not a policy (write "
            "always, never or interval:100ms)\n", a->sync);
    return 2;
  }
  mly_fsm_load_options lo = {.on_error = on_load_error};
  int lrc = fsm_host_load(h, "mealy fsm run", a->actions, true, a->files,
                          a->nfiles, &lo);
  /* where the instances are kept: the command line, or store: */
  mly_store_pg_options po = {0};
  if (a->store == NULL && a->state_dir == NULL &&
      mly_store_conf_where(h->sconf, NULL) == NULL) {
    fprintf(stderr, "mealy fsm run: --state-dir DIR or --store CONNINFO is "
            "required (or store: in a file): where the instances are "
            "kept\n");
    return 2;
  }
  if (lrc < 0) return 1;
  if (a->store == NULL && a->state_dir == NULL)
    mly_store_conf_get(h->sconf, &po); /* read: the load passed */
  if ((rc = mly_task_set_starter(h->rt, start_machine, h, 0)) < 0) {
    fprintf(stderr, "mealy fsm run: %s\n", mly_strerror(rc));
    return 1;
  }
  if ((rc = mly_queue_conf_apply(h->rt, h->qconf, MLY_QCONF_QUEUES, err,
                                 sizeof err)) < 0) {
    fprintf(stderr, "mealy fsm run: %s\n", err);
    return 1;
  }
  /* the command line wins over store: */
  uint32_t sline = 0;
  const char *sfile = mly_store_conf_where(h->sconf, &sline);
  if (sfile && (a->store || a->state_dir))
    fprintf(stderr, "mealy fsm run: %s:%u: store: is not used: %s given "
            "on the command line wins\n", sfile, sline,
            a->store ? "--store" : "--state-dir");
  if (a->state_dir && (a->lease || a->give_up || a->lock_timeout)) {
    fprintf(stderr, "mealy fsm run: --lease, --give-up and --lock-timeout "
            "go with a PostgreSQL store, not --state-dir\n");
    return 2;
  }
  if (a->store) po = (mly_store_pg_options){.conninfo = a->store};
  if (a->lease) po.lease_ms = (uint32_t)atol(a->lease);
  if (a->give_up) po.give_up_ms = (uint32_t)atol(a->give_up);
  if (a->lock_timeout) po.lock_timeout_ms = (uint32_t)atol(a->lock_timeout);
  po.durable = &jo;
  h->sconf_used = po.conninfo != NULL;
  if ((rc = h->sconf_used ? mly_store_postgres(h->rt, &po, err, sizeof err)
                          : mly_journal_open(h->rt, &jo, err, sizeof err)) <
      0) {
    fprintf(stderr, "mealy fsm run: %s\n", err);
    return 1;
  }
  if ((rc = mly_queue_conf_apply(h->rt, h->qconf, MLY_QCONF_SCHEDULES, err,
                                 sizeof err)) < 0) {
    fprintf(stderr, "mealy fsm run: %s\n", err);
    return 1;
  }
  h->methods = calloc(fsm_nmethods + queue_nmethods, sizeof *h->methods);
  if (h->methods == NULL) return 1;
  memcpy(h->methods, fsm_methods, fsm_nmethods * sizeof *h->methods);
  memcpy(h->methods + fsm_nmethods, queue_methods,
         queue_nmethods * sizeof *h->methods);
  if ((rc = mly_fsm_add(h->rt, h->set)) < 0) {
    fprintf(stderr, "mealy fsm run: cannot add the machines: %s%s\n",
            mly_strerror(rc), rc == MLY_ENOENT ? " (an action they name "
            "is not registered: give --actions LIB.so)" : "");
    return 1;
  }
  rpc_config rc_cfg = {.loop = &h->loop, .path = a->sock,
                       .methods = h->methods,
                       .nmethods = fsm_nmethods + queue_nmethods,
                       .what = "fsm host", .ud = h};
  if ((rc = rpc_start(&rc_cfg, &h->srv, err, sizeof err)) < 0) {
    fprintf(stderr, "mealy fsm run: control socket: %s\n", err);
    return 1;
  }
  uv_signal_init(&h->loop, &h->sigterm);
  uv_signal_init(&h->loop, &h->sigint);
  h->sigterm.data = h->sigint.data = h;
  uv_signal_start(&h->sigterm, on_stop_signal, SIGTERM);
  uv_signal_start(&h->sigint, on_stop_signal, SIGINT);
  /* not the conninfo: it may hold a password */
  fprintf(stderr, "mealy fsm run: %zu machines, state in %s, control "
          "socket %s\n", mly_fsm_count(h->set),
          h->sconf_used ? "the PostgreSQL store" : a->state_dir, a->sock);
  return 0;
}

void fsm_host_close(fsm_host *h) {
  if (h->srv) rpc_stop(h->srv);
  h->srv = NULL;
  if (h->rt) {
    mly_runtime_close(h->rt);
    uv_run(&h->loop, UV_RUN_DEFAULT); /* its handles' close callbacks */
  }
  h->rt = NULL;
  if (h->loop_open) uv_loop_close(&h->loop);
  h->loop_open = false;
  mly_fsm_set_free(h->set);
  h->set = NULL;
  mly_queue_conf_free(h->qconf);
  h->qconf = NULL;
  mly_store_conf_free(h->sconf);
  h->sconf = NULL;
  free(h->methods);
  h->methods = NULL;
  /* the library stays loaded: its code may still be referenced by
   * whatever the runtime left (and it is the process's end anyway) */
}

int cmd_fsm_run(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    }
  /* a host, as `mealy supervise`: a client that goes away must not
   * kill it (mealy.c ignores SIGPIPE only for long-running commands,
   * and `mealy fsm` is one only with `run`) */
  signal(SIGPIPE, SIG_IGN);
  run_args a = {0};
  int status = parse(argc, argv, &a);
  fsm_host *h = calloc(1, sizeof *h);
  if (status == 0 && h == NULL) status = 1;
  if (status == 0) status = setup(h, &a);
  if (status == 0) uv_run(&h->loop, UV_RUN_DEFAULT);
  if (status == 0 && h->store_failed) status = 1;
  if (h) fsm_host_close(h);
  free(h);
  free(a.files);
  return status;
}
