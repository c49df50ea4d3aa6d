/*
 * migrate.c - moving running YAML machine instances to a new definition
 * of their machine (mly_fsm_migrate, `mealy fsm migrate`).
 *
 * An instance is pinned to the definition it started with (its hash in
 * fsm_inst).  Migration is allowed only when it is provably safe for that
 * instance: the state it is in, and the state a pending transition (a
 * countdown, a retry, a dispatch not yet run) leads to, exist in the new
 * definition under the same names with the same kind (plain, wait,
 * continuation, fan-in of the same sort, final), the pending transition
 * exists there on the same event to the same state, and its context
 * fits the new context_types (a declared type unchanged, or widened to
 * any; a newly declared type that its values already hold).  Instances
 * at a fan-in are refused: merged instances share one definition.
 *
 * The switch is a durable step of the instance itself, with no journal
 * record of a new kind: mly_fsm_migrate posts the instance a durable
 * event FSM_EV_MIGRATE {from: HASH, to: HASH}; the instance takes it at
 * its next wait or sleep (the interpreter awaits it there), checks again
 * (it may have moved on meanwhile), and rewrites its state and
 * transition indexes, its history and its pinned hash.  The step that
 * takes the event commits that, so a crash before leaves it on the old
 * definition with the event still queued, and after leaves it on the new
 * one.  A check that fails at that point leaves the instance as it was,
 * with a log line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsmrt.h"

static const char *kind(const fsm_state *s) {
  if (s->final) return "final";
  if (s->wait) return "wait";
  if (s->fan_in == FSM_FAN_WINDOW) return "fan-in (window)";
  if (s->fan_in == FSM_FAN_COUNT) return "fan-in (count)";
  if (s->continuation) return "continuation";
  return "plain";
}

/* The state named like old's state s in nw, of the same kind. */
static int same_state(const fsm_machine *old, uint32_t s,
                      const fsm_machine *nw, uint32_t *ns, char *why,
                      size_t len) {
  const fsm_state *os = &old->states[s];
  *ns = fsm_state_find(nw, os->name);
  if (*ns == FSM_NO_STATE) {
    snprintf(why, len, "state %s is not in the new definition", os->name);
    return MLY_EINVAL;
  }
  const fsm_state *st = &nw->states[*ns];
  if (strcmp(kind(os), kind(st)) != 0) {
    snprintf(why, len, "state %s is a %s state but a %s state in the new "
             "definition", os->name, kind(os), kind(st));
    return MLY_EINVAL;
  }
  return 0;
}

static int types_ok(const fsm_machine *old, const fsm_machine *nw,
                    const mly_value *ctx, char *why, size_t len) {
  for (size_t i = 0; i < old->nctypes; i++) {
    const fsm_ctx_type *o = &old->ctypes[i];
    for (size_t k = 0; k < nw->nctypes; k++) {
      const fsm_ctx_type *n = &nw->ctypes[k];
      if (strcmp(o->key, n->key) != 0) continue;
      if (n->type == FSM_T_ANY && (!n->list || o->list)) continue; /* wider */
      if (n->type != o->type || n->list != o->list) {
        snprintf(why, len, "context key %s changes type from %s%s to %s%s "
                 "(only widening to any is safe)", o->key,
                 o->list ? "list of " : "", fsm_ctype_name(o->type),
                 n->list ? "list of " : "", fsm_ctype_name(n->type));
        return MLY_EINVAL;
      }
    }
  }
  /* keys declared anew: the values it holds must fit */
  return ctx != NULL && fsm_ctx_check(nw, ctx, why, len) < 0 ? MLY_EINVAL
                                                             : 0;
}

/* The transition on `event` from nw's state ns to the state named like
 * old's `to`. */
static uint32_t same_trans(const fsm_machine *old, const fsm_transition *ot,
                           const fsm_machine *nw, uint32_t ns) {
  const fsm_state *st = &nw->states[ns];
  for (size_t t = 0; t < st->ntrans; t++)
    if (strcmp(st->trans[t].event, ot->event) == 0 &&
        strcmp(nw->states[st->trans[t].to].name,
               old->states[ot->to].name) == 0)
      return (uint32_t)t;
  return FSM_NO_STATE;
}

int fsm_migrate_check(const fsm_machine *old, const fsm_machine *nw,
                      const fsm_inst *in, const mly_value *ctx,
                      fsm_inst *out, char *why, size_t len) {
  if (strcmp(old->name, nw->name) != 0) {
    snprintf(why, len, "it runs machine %s, not %s", old->name, nw->name);
    return MLY_EINVAL;
  }
  if (in->phase == FSM_PH_DONE) {
    snprintf(why, len, "it has ended");
    return MLY_EINVAL;
  }
  if (in->phase == FSM_PH_FAN_IN) {
    snprintf(why, len, "it waits at fan-in state %s: the instances merged "
             "there share one definition; migrate after the merge",
             in->state < old->nstates ? old->states[in->state].name : "?");
    return MLY_EINVAL;
  }
  if (in->state >= old->nstates) {
    snprintf(why, len, "its state index %u is not in its definition",
             in->state);
    return MLY_EINVAL;
  }
  uint32_t ns, nt = FSM_NO_STATE;
  if (same_state(old, in->state, nw, &ns, why, len) < 0) return MLY_EINVAL;
  const fsm_state *os = &old->states[in->state];
  bool pending = in->phase != FSM_PH_WAIT && !(in->flags & FSM_IF_ENTER) &&
                 in->trans < os->ntrans;
  if (pending) {
    const fsm_transition *ot = &os->trans[in->trans];
    uint32_t nto;
    if (same_state(old, ot->to, nw, &nto, why, len) < 0) return MLY_EINVAL;
    nt = same_trans(old, ot, nw, ns);
    if (nt == FSM_NO_STATE) {
      snprintf(why, len, "its pending transition %s -(%s)-> %s is not in "
               "the new definition", os->name, ot->event,
               old->states[ot->to].name);
      return MLY_EINVAL;
    }
  }
  if (types_ok(old, nw, ctx, why, len) < 0) return MLY_EINVAL;
  if (out == NULL) return 0;
  *out = *in;
  memcpy(out->hash, nw->hash, FSM_HASH_LEN);
  out->state = ns;
  if (pending) out->trans = nt;
  else if (in->phase != FSM_PH_WAIT && !(in->flags & FSM_IF_ENTER))
    out->trans = FSM_NO_STATE;
  /* history: by name where the new definition has them */
  for (size_t i = 0; i < FSM_HISTORY_MAX; i++) {
    struct fsm_hist *h = &out->hist[i];
    const struct fsm_hist *o = &in->hist[i];
    uint32_t f = o->from < old->nstates
                     ? fsm_state_find(nw, old->states[o->from].name)
                     : FSM_NO_STATE;
    uint32_t t = o->to < old->nstates
                     ? fsm_state_find(nw, old->states[o->to].name)
                     : FSM_NO_STATE;
    uint32_t tr = FSM_NO_STATE;
    if (f != FSM_NO_STATE && o->trans < old->states[o->from].ntrans)
      tr = same_trans(old, &old->states[o->from].trans[o->trans], nw, f);
    h->from = f == FSM_NO_STATE ? FSM_HIST_NONE : (uint16_t)f;
    h->to = t == FSM_NO_STATE ? FSM_HIST_NONE : (uint16_t)t;
    h->trans = tr == FSM_NO_STATE ? FSM_HIST_NONE : (uint16_t)tr;
  }
  return 0;
}

/* The instance took FSM_EV_MIGRATE at a wait or a sleep (interp.c). */
void fsm_migrate_take(fsm_rt *f, mly_machine *m, fsm_inst *in) {
  mly_value *p = mly_event_take_payload(m);
  const void *from = NULL, *to = NULL;
  size_t flen = 0, tlen = 0;
  if (mly_value_get_bin(mly_map_get(p, "from"), &from, &flen) < 0 ||
      mly_value_get_bin(mly_map_get(p, "to"), &to, &tlen) < 0 ||
      flen != FSM_HASH_LEN || tlen != FSM_HASH_LEN) {
    fsm_log(f, "instance %s: a malformed migration event, ignored",
            mly_self_name(m));
    mly_value_free(p);
    return;
  }
  char hex[2 * FSM_HASH_LEN + 1];
  fsm_hash_hex(to, hex);
  const fsm_machine *old = fsm_def_get(f, in->hash);
  const fsm_machine *nw = fsm_def_get(f, to);
  char why[256] = "";
  fsm_inst next;
  if (memcmp(in->hash, from, FSM_HASH_LEN) != 0)
    snprintf(why, sizeof why, "it no longer runs the definition the "
             "migration was checked against");
  else if (old == NULL || nw == NULL)
    snprintf(why, sizeof why, "definition %s is not stored", hex);
  else
    fsm_migrate_check(old, nw, in, mly_context(m), &next, why, sizeof why);
  mly_value_free(p);
  if (why[0] != '\0') {
    fsm_log(f, "instance %s: migration to %.12s refused: %s",
            mly_self_name(m), hex, why);
    return;
  }
  *in = next;
  fsm_run *r = fsm_run_get(f, mly_self(m));
  if (r != NULL) r->def = nw;
  fsm_log(f, "instance %s: migrated to definition %.12s (machine %s "
          "version %u)", mly_self_name(m), hex, nw->name, nw->version);
}

/* ---- mly_fsm_migrate ---- */

typedef struct mig_walk {
  fsm_rt *f;
  mly_id *ids;
  size_t n, cap;
  int rc;
} mig_walk;

static int collect(const mly_info *info, void *arg) {
  mig_walk *w = arg;
  if (mly_instance_type(w->f->rt, info->id) != w->f->type) return 0;
  if (w->n == w->cap) {
    size_t cap = w->cap ? 2 * w->cap : 64;
    mly_id *ids = realloc(w->ids, cap * sizeof *ids);
    if (ids == NULL) {
      w->rc = MLY_ENOMEM;
      return 1;
    }
    w->ids = ids;
    w->cap = cap;
  }
  w->ids[w->n++] = info->id;
  return 0;
}

/* The answer of mly_fsm_migrate_durable: done runs once every posted
 * event is answered (its record in the journal, or a failure).  left
 * counts the posts not yet answered, and one hold while posting. */
typedef struct mig_wait {
  size_t left;
  int status;
  mly_fsm_migrate_done_fn done;
  void *arg;
  mly_runtime *rt;
  uv_timer_t timer; /* without a journal: done on the next turn */
} mig_wait;

static void mig_posted(mly_runtime *rt, int status, void *arg) {
  mig_wait *w = arg;
  if (status < 0 && w->status == 0) w->status = status;
  if (--w->left > 0) return;
  if (w->done) w->done(rt, w->status, w->arg);
  free(w);
}

static void mig_timer_closed(uv_handle_t *h) {
  mig_wait *w = h->data;
  free(w);
}

static void mig_timer(uv_timer_t *t) {
  mig_wait *w = t->data;
  if (w->done) w->done(w->rt, 0, w->arg);
  uv_close((uv_handle_t *)t, mig_timer_closed);
}

static int post_one(fsm_rt *f, mly_id id, const fsm_inst *in,
                    const fsm_machine *nw, uint32_t eid, mig_wait *wait) {
  mly_value *p = mly_value_map();
  if (p == NULL) return MLY_ENOMEM;
  mly_map_set(p, "from", mly_value_bin(in->hash, FSM_HASH_LEN));
  mly_map_set(p, "to", mly_value_bin(nw->hash, FSM_HASH_LEN));
  if (mly_map_get(p, "to") == NULL) {
    mly_value_free(p);
    return MLY_ENOMEM;
  }
  if (!mly_runtime_durable(f->rt)) return mly_runtime_send(f->rt, id, eid, p);
  wait->left++;
  int rc = mly_post_durable(f->rt, id, eid, p, mig_posted, wait);
  if (rc < 0) wait->left--; /* refused: no answer comes */
  return rc;
}

int mly_fsm_migrate(mly_runtime *rt, const mly_fsm_set *set, uint32_t flags,
                    mly_fsm_migrate_fn fn, void *arg) {
  return mly_fsm_migrate_durable(rt, set, flags, fn, arg, NULL, NULL);
}

int mly_fsm_migrate_durable(mly_runtime *rt, const mly_fsm_set *set,
                            uint32_t flags, mly_fsm_migrate_fn fn, void *arg,
                            mly_fsm_migrate_done_fn done, void *done_arg) {
  fsm_rt *f = fsm_rt_get(rt);
  if (f == NULL || set == NULL) return MLY_EINVAL;
  if (!mly_runtime_on_loop_thread(rt)) return MLY_EPERM;
  const fsm_set *s = (const fsm_set *)(const void *)set;
  bool dry = (flags & MLY_FSM_MIGRATE_DRY_RUN) != 0;
  int rc = 0;
  uint32_t eid = 0;
  if (!dry && ((rc = mly_fsm_add(rt, set)) < 0 ||
               (rc = mly_event_id(rt, FSM_EV_MIGRATE, &eid)) < 0))
    return rc;
  mig_wait *wait = calloc(1, sizeof *wait);
  if (wait == NULL) return MLY_ENOMEM;
  *wait = (mig_wait){.left = 1, .done = done, .arg = done_arg, .rt = rt};
  mig_walk w = {.f = f};
  mly_foreach(rt, collect, &w);
  if (w.rc < 0) {
    free(w.ids);
    free(wait);
    return w.rc;
  }
  int moved = 0;
  for (size_t i = 0; i < w.n && rc == 0; i++) {
    const fsm_inst *in = mly_instance_data(rt, w.ids[i]);
    if (in == NULL) continue;
    const fsm_machine *old = fsm_def_get(f, in->hash);
    if (old == NULL || in->phase == FSM_PH_DONE) continue;
    const fsm_machine *nw = fsm_set_find(s, old->name);
    if (nw == NULL || memcmp(nw->hash, in->hash, FSM_HASH_LEN) == 0)
      continue; /* not in the file, or on that definition already */
    mly_fsm_migration r = {.id = w.ids[i],
                           .name = mly_instance_name(rt, w.ids[i]),
                           .machine = old->name,
                           .state = in->state < old->nstates
                                        ? old->states[in->state].name
                                        : ""};
    if (fsm_migrate_check(old, nw, in, mly_instance_context(rt, w.ids[i]),
                          NULL, r.reason, sizeof r.reason) == 0) {
      r.migrated = true;
      if (!dry && (rc = post_one(f, w.ids[i], in, nw, eid, wait)) < 0) {
        r.migrated = false;
        snprintf(r.reason, sizeof r.reason, "the migration event was not "
                 "sent: %s", mly_strerror(rc));
      }
      moved += r.migrated;
    }
    if (fn != NULL) fn(arg, &r);
  }
  free(w.ids);
  /* done only for an answer that reports some migrated: after their
     events' records are in the journal (the hold released here; the
     posts answer on later turns), or, without a journal, on the next
     turn */
  bool answer = rc >= 0 && moved > 0 && !dry;
  if (!answer) wait->done = NULL;
  if (!answer || mly_runtime_durable(f->rt)) {
    if (wait->left == 1) free(wait); /* nothing posted */
    else mig_posted(rt, 0, wait);    /* each post answers, the last frees */
    return rc < 0 ? rc : moved;
  }
  int r = uv_timer_init(mly_runtime_loop(rt), &wait->timer);
  if (r == 0) {
    wait->timer.data = wait;
    r = uv_timer_start(&wait->timer, mig_timer, 0, 0);
    if (r < 0) uv_close((uv_handle_t *)&wait->timer, mig_timer_closed);
  } else {
    free(wait);
  }
  return r < 0 ? MLY_EIO : moved;
}
