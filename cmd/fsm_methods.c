/*
 * fsm_methods.c - what `mealy fsm run` answers on its control socket
 * (documented in the README, "Control socket protocol"):
 *
 *   start [MACHINE, NAME|nil, CONTEXT|nil] -> {name, id}
 *   send  [INSTANCE, EVENT, PAYLOAD|nil]   -> "ok", once the event's
 *                                             record is in the journal
 *   ls    [{state: S, machine: M}]         -> [{name, id, machine, state,
 *                                             phase, lifecycle}, ...]
 *   show  [INSTANCE]                       -> {name, id, machine, version,
 *                                             hash, state, event, phase,
 *                                             sleep_why, due_ms, attempt,
 *                                             seq, waits, context,
 *                                             lifecycle, history}
 *   migrate [FILE, {dry_run: BOOL}]        -> {migrated: N, instances:
 *                                             [{name, machine, state,
 *                                             migrated, reason}, ...]}
 *
 * `migrate` loads FILE (an absolute path; as `run` loads its files: the
 * same trust rules, every action registered) and moves the instances it
 * can (mly_fsm_migrate_durable); a file with errors is refused with
 * them.  INSTANCE is an instance's name.  `send` and `migrate` answer
 * late, once what they posted is in the journal (the durable post's
 * callback): rpc.c keeps the answers of a connection in request order
 * all the same.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsmhost.h"

static const char *errtext(int rc) { return mly_strerror(rc); }

/* A map argument params[i]: taken out as a copy, NULL when nil/absent,
 * or *bad when it is something else. */
static mly_value *arg_map(const mly_value *params, size_t i, bool *bad) {
  const mly_value *v = mly_array_at(params, i);
  *bad = false;
  if (v == NULL || mly_value_type(v) == MLY_V_NIL) return NULL;
  if (mly_value_type(v) != MLY_V_MAP) {
    *bad = true;
    return NULL;
  }
  return mly_value_copy(v);
}

/* The live instance named name: 0, or a failed call. */
static int find(rpc_call *call, fsm_host *h, const char *name, mly_id *id) {
  mly_name_info ni;
  if (name == NULL) {
    rpc_fail(call, "an instance name is needed (a string)");
    return -1;
  }
  int rc = mly_name_lookup(h->rt, name, &ni);
  if (rc == 0 && ni.state == MLY_NAME_LIVE) {
    *id = ni.id;
    return 0;
  }
  if (rc == 0)
    rpc_fail(call, "instance '%.64s' has ended (exit status %d)", name,
             ni.status);
  else
    rpc_fail(call, "no such instance '%.64s'", name);
  return -1;
}

typedef struct started {
  rpc_call *call;
  mly_value *answer;
} started;

static void on_started(mly_runtime *rt, int status, void *arg) {
  (void)rt;
  started *st = arg;
  if (status == 0) {
    rpc_reply(st->call, st->answer);
  } else {
    mly_value_free(st->answer);
    if (status == MLY_EUNKNOWN)
      rpc_fail(st->call, "unknown outcome: the store stopped after the "
               "instance's create was sent; it runs at the next start only "
               "if it was kept");
    else
      rpc_fail(st->call, "not started: the store could not keep it: %s",
               errtext(status));
  }
  free(st);
}

static void m_start(rpc_call *call, const mly_value *params, void *ud) {
  fsm_host *h = ud;
  const char *machine = rpc_arg_str(params, 0);
  const char *name = rpc_arg_str(params, 1);
  bool bad = false;
  mly_value *ctx = arg_map(params, 2, &bad);
  if (machine == NULL || bad ||
      (name == NULL && mly_value_type(mly_array_at(params, 1)) != MLY_V_NIL &&
       mly_value_len(params) > 1)) {
    mly_value_free(ctx);
    rpc_fail(call, "start wants [MACHINE, NAME or nil, CONTEXT map or nil]");
    return;
  }
  char out[MLY_NAME_MAX + 1];
  mly_id id = 0;
  int rc = mly_fsm_start(h->rt, machine, name, ctx, out, sizeof out, &id);
  if (rc == MLY_ENOENT)
    return rpc_fail(call, "no such machine '%.64s'", machine);
  if (rc == MLY_EEXIST)
    return rpc_fail(call, "the name '%.64s' is taken (a live instance, or "
                    "one that ended recently)", name ? name : "");
  if (rc == MLY_EINVAL)
    return rpc_fail(call, "cannot start: a malformed name, or a context key "
                    "of another type than the machine's context_types say "
                    "(the host's log names it)");
  if (rc == MLY_ENOSPC)
    return rpc_fail(call, "cannot start: this process's slot range is full "
                    "(262,144 live instances on a shared store): end some, "
                    "or start another process");
  if (rc < 0) return rpc_fail(call, "cannot start: %s", errtext(rc));
  mly_value *r = mly_value_map();
  mly_map_set_str(r, "name", out);
  mly_map_set_uint(r, "id", id);
  if (!mly_runtime_durable(h->rt)) return rpc_reply(call, r);
  /* the answer once its create committed (a crash then keeps it) */
  started *st = malloc(sizeof *st);
  if (st == NULL) {
    mly_value_free(r);
    return rpc_fail(call, "cannot start: %s", errtext(MLY_ENOMEM));
  }
  *st = (started){call, r};
  if ((rc = mly_durable_sync(h->rt, on_started, st)) < 0) {
    free(st);
    mly_value_free(r);
    rpc_fail(call, "started, but whether it is durable is not known: %s",
             errtext(rc));
  }
}

static void sent(mly_runtime *rt, int status, void *arg) {
  (void)rt;
  rpc_call *call = arg;
  if (status == 0) rpc_reply(call, NULL);
  else if (status == MLY_EUNKNOWN)
    rpc_fail(call, "unknown outcome: the journal stopped after the event "
             "was written; it is delivered at the next run only if it "
             "survived");
  else rpc_fail(call, "not sent: %s", errtext(status));
}

static void m_send(rpc_call *call, const mly_value *params, void *ud) {
  fsm_host *h = ud;
  const char *inst = rpc_arg_str(params, 0);
  const char *event = rpc_arg_str(params, 1);
  bool bad = false;
  mly_value *payload = arg_map(params, 2, &bad);
  if (inst == NULL || event == NULL || bad) {
    mly_value_free(payload);
    rpc_fail(call, "send wants [INSTANCE, EVENT, PAYLOAD map or nil]");
    return;
  }
  int rc = mly_fsm_send(h->rt, inst, event, payload, sent, call);
  if (rc == MLY_ENOENT) rpc_fail(call, "no such instance '%.64s'", inst);
  else if (rc == MLY_ESRCH) rpc_fail(call, "instance '%.64s' has ended", inst);
  else if (rc < 0) rpc_fail(call, "not sent: %s", errtext(rc));
  /* else: answered by sent() */
}

typedef struct ls_walk {
  fsm_host *h;
  const char *state, *machine;
  mly_value *list;
} ls_walk;

static int ls_one(const mly_info *in, void *arg) {
  ls_walk *w = arg;
  mly_fsm_info fi;
  if (mly_fsm_info_get(w->h->rt, in->id, &fi) < 0) return 0; /* not fsm */
  if (w->state && strcmp(w->state, fi.state) != 0) return 0;
  if (w->machine && strcmp(w->machine, fi.machine) != 0) return 0;
  mly_value *m = mly_value_map();
  mly_map_set_str(m, "name", fi.name ? fi.name : "");
  mly_map_set_uint(m, "id", fi.id);
  mly_map_set_str(m, "machine", fi.machine);
  mly_map_set_str(m, "state", fi.state);
  mly_map_set_str(m, "phase", fi.phase);
  mly_map_set_str(m, "lifecycle", mly_lifecycle_name(fi.lifecycle));
  mly_array_push(w->list, m);
  return 0;
}

static void m_ls(rpc_call *call, const mly_value *params, void *ud) {
  ls_walk w = {.h = ud};
  const mly_value *f = mly_array_at(params, 0);
  if (f != NULL && mly_value_type(f) != MLY_V_NIL) {
    if (mly_value_type(f) != MLY_V_MAP ||
        (mly_map_get(f, "state") && mly_map_get_str(f, "state", &w.state)) ||
        (mly_map_get(f, "machine") &&
         mly_map_get_str(f, "machine", &w.machine)))
      return rpc_fail(call, "ls wants [{state: S, machine: M}] (both "
                      "strings, both optional)");
  }
  w.list = mly_value_array();
  mly_foreach(w.h->rt, ls_one, &w);
  rpc_reply(call, w.list);
}

static mly_value *str_or_nil(const char *s) {
  return s && *s ? mly_value_str(s) : mly_value_nil();
}

static void m_show(rpc_call *call, const mly_value *params, void *ud) {
  fsm_host *h = ud;
  mly_id id = 0;
  if (find(call, h, rpc_arg_str(params, 0), &id) < 0) return;
  mly_fsm_info fi;
  int rc = mly_fsm_info_get(h->rt, id, &fi);
  if (rc < 0)
    return rpc_fail(call, "instance '%.64s' is not a YAML machine's: %s",
                    rpc_arg_str(params, 0), errtext(rc));
  mly_value *m = mly_value_map();
  mly_map_set_str(m, "name", fi.name ? fi.name : "");
  mly_map_set_uint(m, "id", fi.id);
  mly_map_set_str(m, "machine", fi.machine);
  mly_map_set_uint(m, "version", fi.version);
  mly_map_set_str(m, "hash", fi.hash);
  mly_map_set_str(m, "state", fi.state);
  mly_map_set(m, "event", str_or_nil(fi.event));
  mly_map_set_str(m, "phase", fi.phase);
  mly_map_set(m, "sleep_why", str_or_nil(fi.sleep_why));
  mly_map_set(m, "due_ms", fi.due_ms < 0 ? mly_value_nil()
                                         : mly_value_int(fi.due_ms));
  mly_map_set_uint(m, "attempt", fi.attempt);
  mly_map_set_uint(m, "seq", fi.seq);
  mly_value *waits = mly_value_array();
  for (size_t i = 0; i < fi.nwaits; i++)
    mly_array_push(waits, mly_value_str(fi.waits[i]));
  mly_map_set(m, "waits", waits);
  mly_map_set(m, "context", fi.context ? mly_value_copy(fi.context)
                                       : mly_value_map());
  mly_map_set_str(m, "lifecycle", mly_lifecycle_name(fi.lifecycle));
  mly_value *hist = mly_value_array();
  for (size_t i = 0; i < fi.nhistory; i++) {
    mly_value *e = mly_value_map();
    mly_map_set_uint(e, "seq", fi.history[i].seq);
    mly_map_set_int(e, "at_ms", fi.history[i].at_ms);
    mly_map_set_str(e, "from", fi.history[i].from);
    mly_map_set_str(e, "event", fi.history[i].event);
    mly_map_set_str(e, "to", fi.history[i].to);
    mly_map_set_str(e, "result", fi.history[i].result == 0 ? "ok"
                    : fi.history[i].result == MLY_EAGAIN ? "retried"
                                                         : "failed");
    mly_array_push(hist, e);
  }
  mly_map_set(m, "history", hist);
  mly_map_set(m, "awaits_action", str_or_nil(fi.awaits_action));
  mly_map_set(m, "awaits_queue", str_or_nil(fi.awaits_queue));
  rpc_reply(call, m);
}

/* Load errors, gathered (bounded) for the failure's text. */
typedef struct load_errs {
  char text[2048];
  size_t len;
} load_errs;

static void load_err(const mly_conf_msg *m, void *arg) {
  load_errs *e = arg;
  if (e->len >= sizeof e->text - 1) return;
  int n = snprintf(e->text + e->len, sizeof e->text - e->len, "%s%s:%u:%u: %s",
                   e->len ? "\n" : "", m->file, m->line, m->col, m->text);
  if (n > 0) e->len += (size_t)n;
  if (e->len >= sizeof e->text) e->len = sizeof e->text - 1;
}

static void mig_one(void *arg, const mly_fsm_migration *mg) {
  mly_value *e = mly_value_map();
  mly_map_set_str(e, "name", mg->name ? mg->name : "");
  mly_map_set_str(e, "machine", mg->machine);
  mly_map_set_str(e, "state", mg->state);
  mly_map_set(e, "migrated", mly_value_bool(mg->migrated));
  mly_map_set(e, "reason", str_or_nil(mg->reason));
  mly_array_push(arg, e);
}

/* The answer of a migration that moved some: once their events are in
 * the journal, never before (mly_fsm_migrate_durable). */
typedef struct mig_answer {
  rpc_call *call;
  mly_value *reply;
} mig_answer;

static void migrated(mly_runtime *rt, int status, void *arg) {
  mig_answer *a = arg;
  (void)rt;
  if (status == 0)
    rpc_reply(a->call, a->reply);
  else {
    mly_value_free(a->reply);
    if (status == MLY_EUNKNOWN)
      rpc_fail(a->call, "unknown outcome: the journal stopped after the "
               "migration events were written; run migrate again after "
               "the restart: it lists what is left");
    else
      rpc_fail(a->call, "the migration events were not journaled: %s; run "
               "migrate again: it lists what is left", errtext(status));
  }
  free(a);
}

static void m_migrate(rpc_call *call, const mly_value *params, void *ud) {
  fsm_host *h = ud;
  const char *path = rpc_arg_str(params, 0);
  const mly_value *o = mly_array_at(params, 1);
  bool dry = false;
  const mly_value *d =
      mly_value_type(o) == MLY_V_MAP ? mly_map_get(o, "dry_run") : NULL;
  if (path == NULL || path[0] != '/' ||
      (o != NULL && mly_value_type(o) != MLY_V_NIL &&
       mly_value_type(o) != MLY_V_MAP) ||
      (d != NULL && mly_value_get_bool(d, &dry) < 0))
    return rpc_fail(call, "migrate wants [FILE (an absolute path), "
                    "{dry_run: BOOL} or nil]");
  load_errs errs = {.len = 0};
  mly_fsm_load_options lo = {.on_error = load_err, .arg = &errs,
                            .action_known = mly_action_known,
                            .action_arg = h->rt, .trusted_files = true,
                            .queue_known = fsm_host_queue_known,
                            .queue_arg = h};
  /* its queues: and schedules: are read and checked as run reads them
   * (a file run loaded migrates), not declared: a migration moves
   * instances only */
  mly_queue_conf *qc = mly_queue_conf_new();
  /* store: is read and checked too, not used: the host's store stays */
  mly_store_conf *sc = mly_store_conf_new();
  mly_conf_section sec[3];
  if (qc == NULL || sc == NULL) {
    mly_queue_conf_free(qc);
    mly_store_conf_free(sc);
    return rpc_fail(call, "cannot migrate: %s", errtext(MLY_ENOMEM));
  }
  mly_queue_conf_bind(qc, h->rt, true);
  mly_queue_conf_sections(qc, sec);
  sec[2] = mly_store_conf_section(sc);
  lo.sections = sec;
  lo.nsections = 3;
  mly_fsm_set *set = NULL;
  int lrc = mly_fsm_load(&path, 1, &lo, &set);
  mly_queue_conf_free(qc);
  mly_store_conf_free(sc);
  if (lrc < 0)
    return rpc_fail(call, "%s", errs.len ? errs.text : "cannot load it");
  mly_value *list = mly_value_array();
  mig_answer *a = calloc(1, sizeof *a);
  if (a == NULL || list == NULL || (a->reply = mly_value_map()) == NULL) {
    free(a);
    mly_value_free(list);
    mly_fsm_set_free(set);
    return rpc_fail(call, "cannot migrate: %s", errtext(MLY_ENOMEM));
  }
  a->call = call;
  int rc = mly_fsm_migrate_durable(h->rt, set,
                                   dry ? MLY_FSM_MIGRATE_DRY_RUN : 0,
                                   mig_one, list, migrated, a);
  mly_fsm_set_free(set);
  if (rc < 0) {
    mly_value_free(list);
    mly_value_free(a->reply);
    free(a);
    return rpc_fail(call, "cannot migrate: %s%s", errtext(rc),
                    rc == MLY_ENOENT ? " (an action it names is not "
                    "registered: the host's --actions library lacks it)" : "");
  }
  mly_map_set_uint(a->reply, "migrated", (uint64_t)rc);
  mly_map_set(a->reply, "instances", list);
  if (rc == 0 || dry) migrated(h->rt, 0, a); /* nothing posted */
  /* else: migrated() answers once the events are in the journal */
}

const rpc_method fsm_methods[] = {
    {"start", m_start}, {"send", m_send},   {"ls", m_ls},
    {"show", m_show},   {"migrate", m_migrate}};
const size_t fsm_nmethods = sizeof fsm_methods / sizeof fsm_methods[0];
