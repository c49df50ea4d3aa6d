/*
 * fanin.c - fan-in: arrivals, the collector machine ("fsm-fanin") and
 * the merge.  fan.h says how collectors are named.
 *
 * Exactly once, across kill -9 at any point.  Three kinds of step touch
 * a fan-in, and each is one atomic record (D2):
 *   1. An arrival: the instance whose next transition enters the fan-in
 *      state finds its collector by name (spawning it when the name is
 *      free: the spawn is in this same record), sends it its context
 *      (FSM_EV_ARRIVE) and ends.  Lost record: the instance re-runs the
 *      dispatch after recovery and arrives then; the collector it may
 *      have spawned is lost with it, and any arrival that found that
 *      collector by name came later in the journal, so is lost too (a
 *      torn tail is always a suffix).  Committed record: the event is
 *      in the journal, delivered exactly once (its eid is listed by the
 *      step that takes it).
 *   2. The merge (collector step A): when the window's timer fires, or
 *      `need` arrivals and failures are in its inbox, the collector takes
 *      them (count: exactly `need`), starts the merge instance (a YAML
 *      instance that dispatches the boxcar's event with the merged
 *      contexts under "merged") and marks itself closed, all in one
 *      record.  Lost: every arrival is still in its inbox after the
 *      restart, and the merge runs again from scratch; committed: the
 *      arrivals are taken for good and the merge instance exists.
 *   3. The drain (collector step B, the step after A): an arrival that
 *      found the collector open sent to it before step A ran, so its
 *      record comes before A's in the journal and its event is
 *      delivered no later than A's record is durable.  The collector
 *      runs B only after A is durable (a held instance does not run),
 *      so by then every such straggler is in its inbox; B forwards each
 *      to the next generation and ends.  Arrivals after A see `closed`
 *      in its data and go to the next generation themselves.
 * The fan-in action then runs in the merge instance's first dispatch,
 * with the idempotency key of that dispatch, at least once as every
 * dispatch does, and always over the same merged list.
 *
 * Failures and totals travel the same way.  A replica that fails for
 * good (or moves to an on_failure state that cannot lead back) sends
 * FSM_EV_FAIL from its failing step; a count counts arrivals and
 * failures.  `count: 0` learns how many replicas a continuation chain
 * had from FSM_EV_TOTAL, sent by the chain's last replica (the one whose
 * continuation named no token, or that failed before starting the next:
 * the name the next would have is free) in the same step as its arrival
 * or failure; the collector takes the total first, the arrivals wait in
 * its inbox meanwhile.  A merge that cannot start (its definition not
 * loaded) takes nothing and tries again later.
 */
#include "fan.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FANIN_POINTS(X) X(fanin, total) X(fanin, window) X(fanin, count) \
  X(fanin, retry) X(fanin, drain)
MLY_POINTS(fanin, FANIN_POINTS);

/* ---- names ---- */

uint64_t fsm_fan_hash(const void *p, size_t n, uint64_t h) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

static bool plain(const char *s, size_t n) {
  if (n == 0 || n > 40) return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' ||
          s[i] == '-'))
      return false;
  return true;
}

/* The group part of a collector's name. */
static int group_part(const mly_value *ctx, const char *key, char *buf,
                      size_t len) {
  const mly_value *v = key && ctx ? mly_map_get(ctx, key) : NULL;
  if (key == NULL) {
    snprintf(buf, len, "-");
    return 0;
  }
  const char *s;
  size_t n;
  if (v && mly_value_get_str(v, &s, &n) == 0 && plain(s, n)) {
    snprintf(buf, len, "s%.*s", (int)n, s);
    return 0;
  }
  int64_t i;
  if (v && mly_value_get_int(v, &i) == 0) {
    snprintf(buf, len, "i%" PRId64, i);
    return 0;
  }
  /* anything else (missing: nil) by the hash of its bytes */
  char *b = NULL;
  size_t bl = 0;
  mly_value *nil = v ? NULL : mly_value_nil();
  int rc = mly_value_encode(v ? v : nil, &b, &bl);
  mly_value_free(nil);
  if (rc < 0) return rc;
  snprintf(buf, len, "h%016" PRIx64,
           fsm_fan_hash(b, bl, FSM_FAN_HASH_SEED));
  free(b);
  return 0;
}

/* The lineage of a replica (count: 0), or NULL. */
static const char *lineage(const mly_value *ctx) {
  const mly_value *fan = ctx ? mly_map_get(ctx, FSM_KEY_FAN) : NULL;
  const char *l = NULL;
  if (fan && mly_map_get_str(fan, "l", &l) == 0) return l;
  return NULL;
}

/* base = "fanin:MACHINE:STATE:GROUP:LINEAGE" */
static int base_name(const fsm_machine *def, const fsm_state *st,
                     const mly_value *ctx, char *buf, size_t len) {
  char group[48];
  const char *lin = "-";
  bool all = st->fan_in == FSM_FAN_COUNT && st->fan_in_count == 0;
  if (all) {
    lin = lineage(ctx);
    if (lin == NULL) return MLY_EINVAL; /* not a continuation's replica */
    snprintf(group, sizeof group, "-"); /* one total for all replicas */
  } else {
    int rc = group_part(ctx, st->fan_in_group, group, sizeof group);
    if (rc < 0) return rc;
  }
  int n = snprintf(buf, len, "fanin:%s:%s:%s:%s", def->name, st->name,
                   group, lin);
  return n < 0 || (size_t)n + 22 > len ? MLY_ENAMETOOLONG : 0;
}

int fsm_fan_child_name(const char *key, const char *tag, uint64_t n,
                       char *buf, size_t len) {
  char k[MLY_INSTANCE_NAME_MAX + 24];
  snprintf(k, sizeof k, "%s", key);
  for (char *p = k; *p; p++)
    if (*p == '/') *p = '.';
  int w = snprintf(buf, len, "%s%s%" PRIu64, k, tag, n);
  if (w >= 0 && (size_t)w <= MLY_INSTANCE_NAME_MAX && (size_t)w < len)
    return 0;
  w = snprintf(buf, len, "h%016" PRIx64 "%s%" PRIu64,
               fsm_fan_hash(k, strlen(k), FSM_FAN_HASH_SEED), tag, n);
  return w < 0 || (size_t)w >= len ? MLY_ENAMETOOLONG : 0;
}

/* ---- finding a collector ---- */

enum { GEN_FREE, GEN_OPEN, GEN_USED };

static int gen_state(mly_runtime *rt, const char *base, uint64_t gen,
                     char *name, size_t len, mly_id *id) {
  snprintf(name, len, "%s:%" PRIu64, base, gen);
  mly_name_info ni;
  int rc = mly_name_lookup(rt, name, &ni);
  if (rc == MLY_ENOENT) return GEN_FREE;
  if (rc < 0) return rc;
  if (ni.state != MLY_NAME_LIVE) return GEN_USED;
  const fanin_data *d = mly_instance_data(rt, ni.id);
  if (d == NULL || d->closed) return GEN_USED;
  *id = ni.id;
  return GEN_OPEN;
}

/* The open collector base:G for the first G >= gen that is not used up
 * (spawned here when free: inside the caller's step).  Used generations
 * form a prefix (a generation is made only once the one before has
 * closed), so the search is exponential then binary: O(log gens). */
static int route(fsm_rt *f, const char *base, const fanin_data *proto,
                 uint64_t gen, mly_id *out) {
  mly_runtime *rt = f->rt;
  char name[MLY_INSTANCE_NAME_MAX + 1];
  int s = gen_state(rt, base, gen, name, sizeof name, out);
  if (s < 0) return s;
  if (s == GEN_USED) {
    uint64_t lo = gen, hi, step = 1;
    for (;;) {
      hi = lo + step;
      s = gen_state(rt, base, hi, name, sizeof name, out);
      if (s < 0) return s;
      if (s != GEN_USED) break;
      lo = hi;
      step *= 2;
    }
    while (hi - lo > 1) {
      uint64_t mid = lo + (hi - lo) / 2;
      s = gen_state(rt, base, mid, name, sizeof name, out);
      if (s < 0) return s;
      if (s == GEN_USED) lo = mid;
      else hi = mid;
    }
    gen = hi;
    s = gen_state(rt, base, gen, name, sizeof name, out);
    if (s < 0) return s;
  }
  if (s == GEN_OPEN) return 0;
  fanin_data d = *proto;
  d.gen = gen;
  d.closed = 0;
  d.have_total = 0;
  d.merged = d.failed = 0;
  if (d.mode == FSM_FAN_WINDOW) d.due_ms = (int64_t)(gen + 1) * d.window_ms;
  mly_type *t = mly_type_find(rt, FSM_FAN_TYPE_NAME);
  if (t == NULL) return MLY_ENOENT;
  mly_spawn_options o = {.arg = &d, .arg_len = sizeof d, .name = name};
  return mly_spawn_opts(rt, t, &o, out);
}

static int ev(mly_runtime *rt, const char *name, uint32_t *id) {
  return mly_event_id(rt, name, id);
}

/* Where an arrival for state `st` of `def`, with context ctx, goes. */
static int collector_for(fsm_rt *f, const unsigned char *hash,
                         const fsm_machine *def, const fsm_state *st,
                         const mly_value *ctx, mly_id *out) {
  char base[MLY_INSTANCE_NAME_MAX + 1];
  int rc = base_name(def, st, ctx, base, sizeof base);
  if (rc < 0) return rc;
  fanin_data p;
  memset(&p, 0, sizeof p);
  memcpy(p.hash, hash, FSM_HASH_LEN);
  p.state = (uint32_t)(st - def->states);
  p.mode = (uint8_t)st->fan_in;
  p.need = st->fan_in_count;
  p.tolerate = st->fan_in_tolerate;
  uint64_t gen = 0;
  if (st->fan_in == FSM_FAN_WINDOW) {
    int64_t w = st->fan_in_window_ms > 0 ? st->fan_in_window_ms : 1;
    p.window_ms = w; /* route() sets the window's end */
    gen = (uint64_t)(fsm_now_ms() / w);
  }
  return route(f, base, &p, gen, out);
}

/* The total a last replica knows (0: none). */
static uint64_t known_total(const mly_value *ctx) {
  const mly_value *fan = ctx ? mly_map_get(ctx, FSM_KEY_FAN) : NULL;
  uint64_t t = 0;
  if (fan && mly_map_get_uint(fan, "t", &t) == 0) return t;
  return 0;
}

static int send_total(mly_machine *m, mly_id to, uint64_t total) {
  uint32_t id;
  int rc = ev(mly_machine_runtime(m), FSM_EV_TOTAL, &id);
  if (rc < 0) return rc;
  mly_value *p = mly_value_map();
  if (p == NULL || mly_map_set_uint(p, "n", total) < 0) {
    mly_value_free(p);
    return MLY_ENOMEM;
  }
  return mly_send(m, to, id, p);
}

/* ---- the interpreter's hooks ---- */

int fsm_fan_arrive(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                   const fsm_state *to, const mly_value *ctx) {
  mly_runtime *rt = f->rt;
  const fsm_machine *def = fsm_def_get(f, in->hash);
  if (def == NULL) return MLY_ENOENT;
  mly_id cid;
  int rc = collector_for(f, in->hash, def, to, ctx, &cid);
  if (rc == MLY_EINVAL)
    fsm_log(f, "%s: fan-in state %s has count 0 (every replica of a "
            "continuation), but %s did not come from a continuation; "
            "give the count",
            def->name, to->name, mly_self_name(m) ? mly_self_name(m) : "?");
  if (rc < 0) return rc;
  uint32_t arr;
  if ((rc = ev(rt, FSM_EV_ARRIVE, &arr)) < 0) return rc;
  mly_value *p = mly_value_map();
  mly_value *c = fsm_fan_ctx_copy(ctx);
  if (p == NULL || c == NULL || mly_map_set(p, "c", c) < 0 ||
      mly_map_set_uint(p, "s", in->state) < 0 ||
      mly_map_set_uint(p, "t", in->trans) < 0 ||
      mly_map_set_str(p, "e", in->event) < 0) {
    if (p == NULL) mly_value_free(c);
    mly_value_free(p);
    return MLY_ENOMEM;
  }
  uint64_t total = known_total(ctx);
  if ((rc = mly_send(m, cid, arr, p)) < 0) return rc;
  if (total && to->fan_in == FSM_FAN_COUNT && to->fan_in_count == 0 &&
      (rc = send_total(m, cid, total)) < 0)
    return rc;
  return 0;
}

int fsm_fan_in_enter(fsm_rt *f, mly_machine *m, fsm_inst *in,
                     const fsm_state *to) {
  int rc = fsm_fan_arrive(f, m, in, to, mly_context(m));
  if (rc < 0) return rc;
  in->phase = FSM_PH_DONE; /* ends in this step, with the arrival */
  in->status = 0;
  return 0;
}

const fsm_state *fsm_fan_next_fan_in(const fsm_machine *def,
                                     const fsm_inst *in) {
  if (in->state >= def->nstates) return NULL;
  const fsm_state *s = &def->states[in->state];
  if (in->trans >= s->ntrans) return NULL;
  uint32_t to = s->trans[in->trans].to;
  if (to >= def->nstates || def->states[to].fan_in == FSM_FAN_NONE)
    return NULL;
  return &def->states[to];
}

bool fsm_fan_in_ready(fsm_rt *f, mly_machine *m, fsm_inst *in) {
  (void)f;
  (void)m;
  return in->phase != FSM_PH_FAN_IN;
}

/* The first counted fan-in reachable from state `from` (breadth first),
 * or NULL. */
static const fsm_state *downstream_count(const fsm_machine *def,
                                         uint32_t from) {
  if (from >= def->nstates) return NULL;
  uint32_t *q = malloc(def->nstates * sizeof *q);
  bool *seen = calloc(def->nstates, 1);
  const fsm_state *hit = NULL;
  size_t h = 0, t = 0;
  if (q == NULL || seen == NULL) goto out;
  q[t++] = from;
  seen[from] = true;
  while (h < t && hit == NULL) {
    const fsm_state *s = &def->states[q[h++]];
    for (size_t i = 0; i < s->ntrans; i++) {
      uint32_t to = s->trans[i].to;
      if (to >= def->nstates || seen[to]) continue;
      if (def->states[to].fan_in == FSM_FAN_COUNT) {
        hit = &def->states[to];
        break;
      }
      seen[to] = true;
      q[t++] = to;
    }
  }
out:
  free(q);
  free(seen);
  return hit;
}

/* A replica of a continuation chain that fails for good: its lineage
 * and, when it is the chain's last (it started no replica: the name its
 * dispatch would have given one is free), the chain's length.  The root
 * (generation 0) may have failed before its context got "_fan": its
 * lineage is the one its dispatch's key gives (continuation.c). */
static int chain_of(mly_machine *m, const fsm_inst *in, const mly_value *ctx,
                    char *lin, size_t len, uint64_t *total) {
  const mly_value *fan = ctx ? mly_map_get(ctx, FSM_KEY_FAN) : NULL;
  const char *l = NULL;
  uint64_t g = 0, t = 0;
  char key[MLY_INSTANCE_NAME_MAX + 24];
  fsm_key(m, in, key, sizeof key);
  if (fan && mly_map_get_str(fan, "l", &l) == 0) {
    (void)mly_map_get_uint(fan, "g", &g);
    (void)mly_map_get_uint(fan, "t", &t);
    snprintf(lin, len, "%s", l);
  } else {
    fsm_fan_lineage(key, lin, len);
  }
  *total = t;
  if (t == 0) {
    char name[MLY_INSTANCE_NAME_MAX + 1];
    mly_name_info ni;
    int rc = fsm_fan_replica_name(ctx, key, g + 1, name, sizeof name);
    if (rc < 0) return rc;
    rc = mly_name_lookup(mly_machine_runtime(m), name, &ni);
    if (rc == MLY_ENOENT) *total = g + 1;
    else if (rc < 0) return rc;
  }
  return 0;
}

static bool feeds_from_continuation(const fsm_machine *def,
                                    const fsm_inst *in) {
  if (in->state >= def->nstates) return false;
  const fsm_state *s = &def->states[in->state];
  if (s->continuation) return true;
  return in->trans < s->ntrans && s->trans[in->trans].to < def->nstates &&
         def->states[s->trans[in->trans].to].continuation;
}

int fsm_fan_failed(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                   const mly_value *ctx, const char *error) {
  const fsm_machine *def = fsm_def_get(f, in->hash);
  if (def == NULL) return 0;
  const fsm_state *st = downstream_count(def, in->state);
  if (st == NULL) return 0;
  bool all = st->fan_in_count == 0;
  const mly_value *fan = ctx ? mly_map_get(ctx, FSM_KEY_FAN) : NULL;
  if (all && fan == NULL && !feeds_from_continuation(def, in))
    return 0; /* never part of a chain: nobody waits for it */
  mly_value *c = NULL;
  uint64_t total = 0;
  int rc = 0;
  if (all) {
    char lin[40];
    if ((rc = chain_of(m, in, ctx, lin, sizeof lin, &total)) < 0) return rc;
    /* the collector's name reads the lineage from the context */
    c = ctx ? mly_value_copy(ctx) : mly_value_map();
    if (c == NULL) return MLY_ENOMEM;
    mly_value *nf = mly_value_map();
    if (nf == NULL || mly_map_set_str(nf, "l", lin) < 0) {
      mly_value_free(nf);
      mly_value_free(c);
      return MLY_ENOMEM;
    }
    if (mly_map_set(c, FSM_KEY_FAN, nf) < 0) { /* nf is taken, also here */
      mly_value_free(c);
      return MLY_ENOMEM;
    }
    ctx = c;
  }
  mly_id cid;
  uint32_t id;
  mly_value *p = NULL;
  if ((rc = collector_for(f, in->hash, def, st, ctx, &cid)) < 0 ||
      (rc = ev(f->rt, FSM_EV_FAIL, &id)) < 0)
    goto out;
  p = mly_value_map();
  if (p == NULL || mly_map_set_str(p, "error", error ? error : "") < 0) {
    rc = MLY_ENOMEM;
    goto out;
  }
  rc = mly_send(m, cid, id, p);
  p = NULL;
  if (rc == 0 && all && total) rc = send_total(m, cid, total);
out:
  mly_value_free(p);
  mly_value_free(c);
  if (rc < 0)
    fsm_log(f, "instance %s: cannot tell fan-in %s of its failure: %s",
            mly_self_name(m), st->name, mly_strerror(rc));
  return rc;
}

/* Breadth first from `from`: is `to` reachable? */
static bool reaches(const fsm_machine *def, uint32_t from, uint32_t to) {
  if (from >= def->nstates) return false;
  bool *seen = calloc(def->nstates, 1);
  uint32_t *q = malloc(def->nstates * sizeof *q);
  bool hit = false;
  size_t h = 0, t = 0;
  if (seen == NULL || q == NULL) goto out;
  q[t++] = from;
  seen[from] = true;
  while (h < t && !hit) {
    uint32_t s = q[h++];
    if (s == to) hit = true;
    for (size_t i = 0; i < def->states[s].ntrans; i++) {
      uint32_t n = def->states[s].trans[i].to;
      if (n < def->nstates && !seen[n]) {
        seen[n] = true;
        q[t++] = n;
      }
    }
  }
out:
  free(seen);
  free(q);
  return hit;
}

int fsm_fan_failed_to(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                      const mly_value *ctx, const char *error,
                      uint32_t on_failure) {
  const fsm_machine *def = fsm_def_get(f, in->hash);
  if (def == NULL) return 0;
  const fsm_state *st = downstream_count(def, in->state);
  if (st == NULL || reaches(def, on_failure, (uint32_t)(st - def->states)))
    return 0; /* it may still arrive there */
  return fsm_fan_failed(f, m, in, ctx, error);
}

/* ---- the collector ---- */

mly_value *fsm_fan_ctx_copy(const mly_value *ctx) {
  mly_value *c = ctx ? mly_value_copy(ctx) : mly_value_map();
  if (c && mly_value_type(c) == MLY_V_MAP) {
    mly_map_del(c, FSM_KEY_FAN);
    mly_map_del(c, FSM_KEY_TOKEN);
    mly_map_del(c, FSM_KEY_MERGED); /* an earlier fan-in's list */
  }
  return c;
}

int fsm_fan_start(fsm_rt *f, const fsm_machine *def, const fsm_inst *proto,
                  mly_value *ctx, const char *name, uint32_t *again) {
  mly_id id;
  int rc = fsm_instance_start(f, NULL, def, proto, ctx, name, NULL, 0, &id);
  if (rc == MLY_EEXIST) {
    if (again) (*again)++;
    return 0;
  }
  return rc;
}

/* The base of the collector's own name (its name less ":GEN"). */
static int own_base(mly_machine *m, char *buf, size_t len) {
  const char *name = mly_self_name(m);
  const char *colon = name ? strrchr(name, ':') : NULL;
  if (colon == NULL || (size_t)(colon - name) >= len) return MLY_EINVAL;
  memcpy(buf, name, (size_t)(colon - name));
  buf[colon - name] = '\0';
  return 0;
}

/* Step A: take the arrivals, start the merge instance, close. */
static int merge(fsm_rt *f, mly_machine *m, fanin_data *d) {
  mly_runtime *rt = f->rt;
  uint32_t arr, fail;
  int rc;
  if ((rc = ev(rt, FSM_EV_ARRIVE, &arr)) < 0 ||
      (rc = ev(rt, FSM_EV_FAIL, &fail)) < 0)
    return rc;
  /* what can fail without losing anything fails before the first take */
  const fsm_machine *def = fsm_def_get(f, d->hash);
  if (def == NULL) return MLY_ENOENT;
  mly_value *merged = mly_value_array(), *boxcar = NULL;
  if (merged == NULL) return MLY_ENOMEM;
  uint64_t bs = FSM_NO_STATE, bt = FSM_NO_STATE;
  const char *be = "";
  char bev[MLY_NAME_MAX + 1] = "";
  d->merged = d->failed = 0;
  while (d->mode == FSM_FAN_WINDOW || d->merged + d->failed < d->need) {
    mly_event *e = mly_inbox_take(m, MLY_EV_ANY);
    if (e == NULL) break;
    if (e->id != arr && e->id != fail) { /* a second total: nothing */
      mly_event_free(rt, e);
      continue;
    }
    if (e->id == arr && e->payload) {
      mly_value *c = mly_map_get(e->payload, "c");
      if (boxcar == NULL) {
        boxcar = mly_value_copy(c);
        (void)mly_map_get_uint(e->payload, "s", &bs);
        (void)mly_map_get_uint(e->payload, "t", &bt);
        if (mly_map_get_str(e->payload, "e", &be) == 0)
          snprintf(bev, sizeof bev, "%s", be);
      }
      mly_value *cc = mly_value_copy(c);
      if (cc == NULL || mly_array_push(merged, cc) < 0) rc = MLY_ENOMEM;
      d->merged++;
    } else if (e->id == fail) {
      d->failed++;
    }
    mly_event_free(rt, e);
  }
  d->closed = 1;
  if (rc < 0 || boxcar == NULL) {
    if (boxcar == NULL && rc == 0)
      fsm_log(f, "%s: every one of %" PRIu32 " replicas failed; nothing "
              "to merge", mly_self_name(m), d->failed);
    mly_value_free(merged);
    mly_value_free(boxcar);
    return rc;
  }
  if (d->mode == FSM_FAN_COUNT && d->failed > d->tolerate) {
    char err[160];
    snprintf(err, sizeof err,
             "fan-in %s: %" PRIu32 " of %" PRIu32 " replicas failed, "
             "more than the %" PRIu32 " it tolerates",
             def->states[d->state].name, d->failed, d->need, d->tolerate);
    fsm_log(f, "%s", err);
    (void)mly_map_set_str(boxcar, FSM_KEY_ERROR, err);
  }
  if (mly_map_set(boxcar, FSM_KEY_MERGED, merged) < 0) {
    mly_value_free(boxcar);
    return MLY_ENOMEM;
  }
  fsm_inst p;
  memset(&p, 0, sizeof p);
  memcpy(p.hash, d->hash, FSM_HASH_LEN);
  p.state = (uint32_t)bs;
  p.trans = (uint32_t)bt;
  p.phase = FSM_PH_DISPATCH;
  p.flags = FSM_IF_FAN_MERGED;
  p.origin = mly_self(m);
  p.first_try_ms = fsm_now_ms();
  p.due_ms = -1;
  snprintf(p.event, sizeof p.event, "%s", bev);
  char name[MLY_INSTANCE_NAME_MAX + 1];
  snprintf(name, sizeof name, "%s.m", mly_self_name(m));
  return fsm_fan_start(f, def, &p, boxcar, name, NULL);
}

/* Step B: what came after the merge goes to the next generation. */
static int drain(fsm_rt *f, mly_machine *m, fanin_data *d) {
  char base[MLY_INSTANCE_NAME_MAX + 1];
  int rc = own_base(m, base, sizeof base);
  if (rc < 0) return rc;
  mly_event *e;
  while ((e = mly_inbox_take(m, MLY_EV_ANY)) != NULL) {
    mly_id to;
    rc = route(f, base, d, d->gen + 1, &to);
    if (rc == 0) {
      mly_value *pl = e->payload;
      e->payload = NULL;
      rc = mly_send(m, to, e->id, pl);
    }
    mly_event_free(f->rt, e);
    if (rc < 0) return rc;
  }
  return 0;
}

/* Arrivals and failures in the inbox reach `need` (anything else there,
 * a second total, does not count).  The length first: the walk runs
 * only when it may succeed. */
static bool counted_enough(fsm_rt *f, mly_machine *m, const fanin_data *d) {
  if (mly_inbox_len(m) < d->need) return false;
  uint32_t arr, fail;
  if (ev(f->rt, FSM_EV_ARRIVE, &arr) < 0 || ev(f->rt, FSM_EV_FAIL, &fail) < 0)
    return false;
  return mly_inbox_count(m, arr) + mly_inbox_count(m, fail) >= d->need;
}

static int64_t left_ms(int64_t due) {
  int64_t now = fsm_now_ms();
  return due > now ? due - now : 0;
}

static int fanin_run(mly_machine *m, void *data) {
  fanin_data *d = data;
  fsm_rt *f = fsm_rt_get(mly_machine_runtime(m));
  uint32_t total_id = 0;
  if (f == NULL) MLY_EXIT(m, MLY_EINVAL);
  if (ev(f->rt, FSM_EV_TOTAL, &total_id) < 0) MLY_EXIT(m, MLY_ENOMEM);
  MLY_BEGIN(m);
  if (d->mode == FSM_FAN_COUNT && d->need == 0) {
    MLY_AWAIT_AT(m, fanin_total, total_id, -1);
    if (mly_current_event(m) == NULL) MLY_EXIT(m, MLY_ECANCELED);
    uint64_t n = 0;
    (void)mly_map_get_uint(mly_current_event(m)->payload, "n", &n);
    d->need = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    d->have_total = 1;
  }
  if (d->mode == FSM_FAN_WINDOW)
    MLY_SLEEP_AT(m, fanin_window, (uint64_t)left_ms(d->due_ms));
  else
    MLY_WAIT_UNTIL_AT(m, fanin_count, counted_enough(f, m, d) ||
                                          mly_shutdown_requested(m));
  if (mly_shutdown_requested(m)) MLY_EXIT(m, MLY_ECANCELED);
  /* a merge that cannot start takes nothing: the arrivals stay in the
     inbox (in the journal), and it is tried again */
  while ((d->merge_failed = (uint8_t)(merge(f, m, d) < 0)) != 0 &&
         !d->closed) {
    fsm_log(f, "%s: the merge cannot run yet (its definition is not "
            "loaded, or memory ran out); tried again in 10 s",
            mly_self_name(m));
    MLY_SLEEP_AT(m, fanin_retry, 10000);
  }
  if (d->merge_failed) {
    fsm_log(f, "%s: the merge failed after taking its arrivals",
            mly_self_name(m));
    MLY_EXIT(m, MLY_ENOMEM);
  }
  /* runs once step A is durable: see the top of the file */
  MLY_YIELD_AT(m, fanin_drain);
  {
    int rc = drain(f, m, d);
    if (rc < 0) {
      fsm_log(f, "%s: forwarding late arrivals failed: %s",
              mly_self_name(m), mly_strerror(rc));
      MLY_EXIT(m, rc);
    }
  }
  MLY_END(m);
}

const mly_type_def fsm_fanin_type_def = {
    .name = FSM_FAN_TYPE_NAME,
    .run = fanin_run,
    MLY_TYPE_POINTS(fanin),
    .data_size = sizeof(fanin_data),
    .version = 1,
    .min_version = 1,
    .flags = MLY_TYPE_DURABLE,
};

int fsm_fan_attach(fsm_rt *f) {
  mly_type *t;
  if (mly_type_find(f->rt, FSM_FAN_TYPE_NAME)) return 0;
  return mly_type_register(f->rt, &fsm_fanin_type_def, &t);
}
