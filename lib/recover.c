/*
 * recover.c - opening a journal: verify, replay, and bring every live
 * durable instance back where it was.
 *
 * An instance returns with its own id (same slot, same generation), so
 * the ids other machines hold, in their data or in events, still reach
 * it.  It resumes at its named yield point, re-armed with the wait it
 * committed: a timer from its wall-clock deadline (overdue ones fire at
 * once, in deadline order), an event wait that is satisfied at once if
 * its inbox already holds a match.  A wait that nothing can satisfy any
 * more (what it waits for was not durable) ends at once with MLY_ELOST.
 *
 * Instances that cannot come back are parked, with the reason, and kept
 * in the journal as they are: an unknown type, a version this code does
 * not accept, a yield point it does not name or names without code (a
 * probe enters the body there, see point_has_code), and every
 * descendant of a parked instance (a subtree moves as one).  A parked
 * instance keeps its slot: no spawn of this run takes its id.
 */
#include "context.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


typedef struct back {
  mly_inst *m;
  mly_id parent, peer;
  int64_t due_ms;
  bool exiting;
} back;

/* A parked instance keeps its S for compaction: with its context and
 * name whole (its last record may have said "context unchanged"), and
 * its name held (a spawn must not take it). */
static int park(mly_runtime *rt, const rp_state *s, const char *reason) {
  dur_state *d = rt->dur;
  if (s->name) {
    int rc = name_hold(rt, s->name, s->namelen, s->id, NULL);
    if (rc < 0) return rc == MLY_EEXIST ? MLY_EBADMSG : rc;
  }
  parked *v = realloc(d->parked, (d->nparked + 1) * sizeof *v);
  if (v == NULL) return MLY_ENOMEM;
  d->parked = v;
  parked *p = &v[d->nparked];
  *p = (parked){.id = s->id, .parent = s->parent,
                .version = (uint32_t)s->version};
  p->type = strndup(s->type, s->tlen);
  p->point = strndup(s->point, s->plen);
  p->reason = strdup(reason);
  jbuf b = {0};
  if (s->ctx || s->name) rp_state_full(&b, s);
  else jb_raw(&b, s->raw, s->rawlen);
  p->state = b.p;
  p->len = b.n;
  if (!p->type || !p->point || !p->reason || b.oom) {
    parked_free(p);
    return MLY_ENOMEM;
  }
  d->ctx_bytes += s->ctxlen;
  d->nparked++;
  return 0;
}

/* What a probe found, per type, body and point: bodies are entered once
 * per open for each, not once per instance. */
typedef struct probe {
  const mly_type *t;
  uint32_t pc;
  bool shutdown, has_code;
} probe;

typedef struct probes {
  probe *v;
  size_t n, cap;
  int err; /* out of memory */
} probes;

/* Whether the body resumes at pc: a copy of the instance enters it there
 * with F_PROBE set, where a wait yields at once without its test, so
 * only a point with no case in the body reaches mly__bad_point
 * (MLY_EXITED with MLY_ENOENT).  Code before MLY_BEGIN runs, on a copy of
 * the data: mealy.h asks that it have no side effects. */
static bool point_has_code(probes *pr, mly_type *t, bool shutdown,
                           uint32_t pc, const rp_state *s) {
  for (size_t i = pr->n; i-- > 0;)
    if (pr->v[i].t == t && pr->v[i].pc == pc && pr->v[i].shutdown == shutdown)
      return pr->v[i].has_code;
  mly_inst *m = calloc(1, t->inst_size);
  if (m == NULL) {
    pr->err = MLY_ENOMEM;
    return true;
  }
  m->type = t;
  m->id = s->id;
  m->heap_idx = NO_HEAP;
  m->head.pc = pc;
  m->head.flags = F_PROBE | (shutdown ? F_IN_SHUTDOWN : 0);
  if (s->dlen) memcpy(m->data, s->data, s->dlen);
  int r = (shutdown ? t->def.shutdown : t->def.run)(&m->head, m->data);
  bool has = !(r == MLY_EXITED && m->status == MLY_ENOENT);
  free(m);
  if (pr->n == pr->cap) {
    size_t cap = pr->cap ? pr->cap * 2 : 16;
    probe *v = realloc(pr->v, cap * sizeof *v);
    if (v == NULL) {
      pr->err = MLY_ENOMEM;
      return has;
    }
    pr->v = v;
    pr->cap = cap;
  }
  pr->v[pr->n++] = (probe){t, pc, shutdown, has};
  return has;
}

/* Why this state cannot resume here, or NULL; *pc gets its point. */
static const char *refusal(mly_runtime *rt, probes *pr, const rp_state *s,
                           mly_type **tp, uint32_t *pc, char *buf,
                           size_t len) {
  char name[MLY_NAME_MAX + 1];
  snprintf(name, sizeof name, "%.*s", (int)s->tlen, s->type);
  mly_type *t = s->tlen <= MLY_NAME_MAX ? mly_type_find(rt, name) : NULL;
  if (t == NULL) {
    snprintf(buf, len, "type '%s' is not registered", name);
    return buf;
  }
  if (!(t->def.flags & MLY_TYPE_DURABLE)) {
    snprintf(buf, len, "type '%s' is not durable in this code", name);
    return buf;
  }
  uint32_t lo = t->def.min_version ? t->def.min_version : t->def.version;
  if (s->version < lo || s->version > t->def.version) {
    snprintf(buf, len, "version %llu of '%s' is not accepted (this code "
             "resumes versions %u to %u)", (unsigned long long)s->version,
             name, lo, t->def.version);
    return buf;
  }
  if (s->dlen > t->def.data_size) {
    snprintf(buf, len, "its data is %zu bytes, type '%s' now holds %zu",
             s->dlen, name, t->def.data_size);
    return buf;
  }
  *pc = UINT32_MAX;
  if (s->plen == 5 && memcmp(s->point, "begin", 5) == 0) *pc = 0;
  for (uint32_t i = 1; i < t->def.npoints && *pc == UINT32_MAX; i++)
    if (strlen(t->def.points[i]) == s->plen &&
        memcmp(t->def.points[i], s->point, s->plen) == 0)
      *pc = i;
  if (*pc == UINT32_MAX) {
    snprintf(buf, len, "yield point '%.*s' no longer exists in type '%s'%s",
             (int)s->plen, s->point, name,
             s->plen > 5 && memcmp(s->point, "line ", 5) == 0
                 ? " (an anonymous wait: durable types need named ones)"
                 : "");
    return buf;
  }
  /* The body it resumes in (see restore_one), unless it will not resume
   * at this point at all: it is ending, or a requested shutdown starts
   * the shutdown routine from its beginning. */
  bool in_shut = (s->flags & F_IN_SHUTDOWN) && t->def.shutdown;
  bool restarts = (s->flags & F_SHUT_REQ) && !in_shut && t->def.shutdown;
  if (*pc != 0 && s->wait != RP_W_EXITING && !restarts &&
      !point_has_code(pr, t, in_shut, *pc, s)) {
    snprintf(buf, len, "yield point '%.*s' of type '%s' has no code in "
             "this version (its name is in the points list, but no wait "
             "of the %s uses it: was it renamed?)", (int)s->plen, s->point,
             name, in_shut ? "shutdown routine" : "body");
    return buf;
  }
  *tp = t;
  return NULL;
}

static int ev_id_of(mly_runtime *rt, uint64_t id, const char *name,
                    size_t nlen, uint32_t *out) {
  if (name == NULL) {
    *out = (uint32_t)id;
    return 0;
  }
  char buf[256];
  if (nlen >= sizeof buf) return MLY_ENAMETOOLONG;
  memcpy(buf, name, nlen);
  buf[nlen] = '\0';
  return intern_get(&rt->intern, buf, out);
}

static int park_counted(mly_runtime *rt, const rp_state *s,
                        const char *why) {
  rt->dur->open_st.parked++;
  return park(rt, s, why);
}

/* Its context and name, as its records left them. */
static int restore_ext(mly_runtime *rt, mly_inst *m, const rp_state *s,
                       char *err, size_t errlen) {
  if (s->ctx) {
    int rc = ctx_restore(rt, m, s->ctx, s->ctxlen);
    if (rc == MLY_ENOMEM) return rc;
    if (rc < 0)
      return jr_errf(err, errlen, MLY_EBADMSG, "instance %llu: its context "
                     "is not a value", (unsigned long long)s->id);
    rt->dur->ctx_bytes += s->ctxlen;
  }
  if (s->name) {
    inst_ext *x = ext_make(rt, m);
    if (x == NULL) return MLY_ENOMEM;
    int rc = name_hold(rt, s->name, s->namelen, s->id, &x->name);
    if (rc == MLY_EEXIST)
      return jr_errf(err, errlen, MLY_EBADMSG, "instance %llu: its name '%.*s' "
                     "is held by another live instance (the journal is "
                     "damaged)", (unsigned long long)s->id, (int)s->namelen,
                     s->name);
    if (rc < 0) return rc;
    x->name_written = true;
  }
  return 0;
}

static int restore_one(mly_runtime *rt, mly_type *t, uint32_t pc,
                       const rp_state *s, back *b, char *err, size_t errlen) {
  dur_state *d = rt->dur;
  uint32_t slot = (uint32_t)s->id;
  if (slot < rt->nslots && rt->slots[slot] != NULL)
    return jr_errf(err, errlen, MLY_EBADMSG, "instance %llu: its slot is held "
                "by instance %llu (two live generations of one slot: the "
                "journal is damaged)", (unsigned long long)s->id,
                (unsigned long long)rt->slots[slot]->id);
  mly_inst *m = inst_restore(rt, t, s->id);
  if (m == NULL) return MLY_ENOMEM;
  d->live++;
  d->open_st.recovered++;
  m->head.pc = pc;
  m->step = (uint32_t)s->step;
  memcpy(m->data, s->data, s->dlen);
  m->head.flags = (uint8_t)(s->flags & F_SHUT_REQ);
  /* in its shutdown routine: only if this code still has one (else the
   * request stands, and the body sees it) */
  if ((s->flags & F_IN_SHUTDOWN) && t->def.shutdown) m->head.flags |= F_IN_SHUTDOWN;
  m->status = (int32_t)s->status;
  m->dflags = D_RECOVERED;
  m->wait_arg = s->warg;
  int rc = ev_id_of(rt, s->wev, s->wname, s->wnlen, &m->wait_id);
  if (rc < 0)
    return jr_errf(err, errlen, rc, "instance %llu: its wait names an event "
                "that cannot be interned", (unsigned long long)s->id);
  b->exiting = s->wait == RP_W_EXITING;
  m->head.wait = b->exiting || s->wait > RP_W_CHILDREN ? W_NONE : (uint8_t)s->wait;
  b->m = m;
  b->parent = s->parent;
  b->peer = s->peer;
  b->due_ms = s->due_ms;
  return restore_ext(rt, m, s, err, errlen);
}

static int by_eid(const void *a, const void *b) {
  const rp_event *x = *(rp_event *const *)a, *y = *(rp_event *const *)b;
  return x->eid < y->eid ? -1 : x->eid > y->eid;
}

static int by_id(const void *a, const void *b) {
  const back *x = a, *y = b;
  return x->m->id < y->m->id ? -1 : x->m->id > y->m->id;
}

static int by_due(const void *a, const void *b) {
  const back *x = *(back *const *)a, *y = *(back *const *)b;
  return x->due_ms < y->due_ms ? -1 : x->due_ms > y->due_ms;
}

static int parked_by_id(const void *a, const void *b) {
  const parked *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* d->parked is sorted by id once rebuild has parked what it parks. */
static bool is_parked(const dur_state *d, mly_id id) {
  parked key = {.id = id};
  return id != 0 && d->nparked > 0 &&
         bsearch(&key, d->parked, d->nparked, sizeof key, parked_by_id);
}

bool durable_parked(const dur_state *d, mly_id id) {
  return is_parked(d, id);
}

static bool has_parked_child(const dur_state *d, mly_id id) {
  for (size_t i = 0; i < d->nparked; i++)
    if (d->parked[i].parent == id) return true;
  return false;
}

/* A recovered wait that nothing can satisfy any more: what it waits for
 * did not come back, and will not (it was not durable, or it ended), or
 * a restart does not bring it back (a child process, a signal watch).
 * A parked instance may come back with other code: a wait on one stands. */
static bool lost_cause(mly_runtime *rt, const back *b) {
  const mly_inst *m = b->m;
  const dur_state *d = rt->dur;
  mly_id from = m->wait_arg;
  switch (m->head.wait) {
  case W_REPLY:
    /* peer 0: a record older than the peer field, nothing is known */
    return b->peer != 0 && inst_get(rt, b->peer) == NULL &&
           !is_parked(d, b->peer);
  case W_EVENT:
    if (m->wait_id == MLY_EV_PROCESS_EXIT ||
        (m->wait_id >= MLY_EV_SIGNAL_BASE && m->wait_id < MLY_EV_CHILD_EXIT))
      return true;
    if (from != 0) return inst_get(rt, from) == NULL && !is_parked(d, from);
    return m->wait_id == MLY_EV_CHILD_EXIT && m->child == NULL &&
           !has_parked_child(d, m->id);
  default:
    return false;
  }
}

static int keep_parked_event(mly_runtime *rt, const rp_event *e) {
  dur_state *d = rt->dur;
  rawev *v = realloc(d->pev, (d->npev + 1) * sizeof *v);
  if (v == NULL) return MLY_ENOMEM;
  d->pev = v;
  rawev *r = &v[d->npev];
  if (e->raw) {
    r->p = malloc(e->rawlen);
    if (r->p == NULL) return MLY_ENOMEM;
    memcpy(r->p, e->raw, e->rawlen);
    r->len = e->rawlen;
  } else { /* a notice made by replay: write it out */
    jbuf b = {0};
    mly_event ev = {.id = (uint32_t)e->ev, .from = e->from,
                    .status = e->status, .aux = e->aux, .eid = e->eid};
    put_event(rt, &b, e->to, &ev);
    if (b.oom) {
      jb_free(&b);
      return MLY_ENOMEM;
    }
    r->p = b.p;
    r->len = b.n;
  }
  d->npev++;
  return 0;
}

/* The event a record holds, made again. */
static int event_of(mly_runtime *rt, const rp_event *x, mly_event **out,
                    char *err, size_t errlen) {
  mly_event *e = ev_new(rt);
  if (e == NULL) return MLY_ENOMEM;
  int rc = ev_id_of(rt, x->ev, x->name, x->nlen, &e->id);
  e->from = x->from;
  e->flags = (uint32_t)x->flags;
  e->corr = x->corr;
  e->status = x->status;
  e->aux = x->aux;
  e->eid = x->eid;
  if (rc == 0 && x->payload &&
      mly_value_decode(x->payload, x->plen, &e->payload) < 0)
    rc = jr_errf(err, errlen, MLY_EBADMSG, "event %llu for instance %llu: its "
              "payload is not a value", (unsigned long long)x->eid,
              (unsigned long long)x->to);
  if (rc < 0) {
    ev_free(rt, e);
    return rc;
  }
  *out = e;
  return 0;
}

static int restore_events(mly_runtime *rt, replay *r, char *err,
                          size_t errlen) {
  rp_event **v = malloc((r->pending + 1) * sizeof *v);
  if (v == NULL) return MLY_ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i < r->nevs; i++)
    if (!r->evs[i].dead) v[n++] = &r->evs[i];
  qsort(v, n, sizeof *v, by_eid);
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    const rp_event *x = v[i];
    mly_inst *m = inst_get(rt, x->to);
    if (m == NULL || !inst_durable(rt, m)) {
      if (is_parked(rt->dur, x->to)) rc = keep_parked_event(rt, x);
      continue; /* its target ended: nobody will read it */
    }
    mly_event *e = NULL;
    rc = event_of(rt, x, &e, err, errlen);
    if (rc == 0) inbox_append(m, e);
  }
  free(v);
  return rc;
}

/* Every wait as it was committed. */
static int rearm(mly_runtime *rt, back *bs, size_t n) {
  back **timed = malloc((n + 1) * sizeof *timed);
  if (timed == NULL) return MLY_ENOMEM;
  size_t nt = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t w = bs[i].m->head.wait;
    if (!bs[i].exiting && w == W_SLEEP && bs[i].due_ms <= 0)
      bs[i].due_ms = 1; /* a sleep always has a deadline: overdue */
    if (!bs[i].exiting && bs[i].due_ms > 0 &&
        (w == W_SLEEP || w == W_EVENT || w == W_REPLY))
      timed[nt++] = &bs[i];
  }
  qsort(timed, nt, sizeof *timed, by_due); /* overdue: in deadline order */
  int64_t now_wall = wall_ms();
  uint64_t now = rt_now_us();
  int rc = 0;
  for (size_t i = 0; i < nt && rc == 0; i++) {
    /* a deadline from the file is bounded before any arithmetic */
    int64_t due = timed[i]->due_ms, left = 0;
    if (due > now_wall) left = due - now_wall > MAX_WAIT_MS ? MAX_WAIT_MS
                                                                : due - now_wall;
    rc = heap_push(rt, timed[i]->m, now + 1 + (uint64_t)left * 1000u);
  }
  free(timed);
  if (rc < 0) return rc;
  rt_arm_timer(rt);
  for (size_t i = 0; i < n; i++) {
    mly_inst *m = bs[i].m;
    if (bs[i].exiting) continue;
    switch (m->head.wait) {
    case W_NONE: inst_wake(m, WOKE_START); break;
    case W_TURN: inst_wake(m, WOKE_TURN); break;
    case W_COND: inst_wake(m, WOKE_EVENT); break;
    case W_EVENT:
    case W_REPLY:
      if (inbox_has_match(m)) {
        inst_wake(m, WOKE_EVENT);
      } else if (lost_cause(rt, &bs[i])) {
        m->status = MLY_ELOST; /* mly_wait_error, or the child's status */
        inst_wake(m, WOKE_ERROR);
      }
      break;
    default: break;
    }
  }
  for (size_t i = 0; i < n; i++)
    if (bs[i].exiting) inst_exit(bs[i].m); /* stop its children, then end */
  return 0;
}

/* The nearest parked instance above x, or 0. */
static mly_id parked_above(const replay *r, const bool *gone,
                           const rp_inst *x) {
  mly_id p = x->parent;
  for (size_t hops = 0; p != 0 && hops < r->ninsts; hops++) {
    uint32_t k = rp_find_inst(r, p);
    if (k == UINT32_MAX || r->insts[k].ended) return 0;
    if (gone[k]) return p;
    p = r->insts[k].parent;
  }
  return 0;
}

/* A parent chain that loops (an instance its own ancestor) cannot come
 * from this code: it is damage, refused before anything is linked (the
 * links would make a cycle that ending an instance never leaves).
 * Linear: each instance is walked once (0 new, 1 on this walk, 2 done). */
static int refuse_parent_loops(const replay *r, char *err, size_t errlen) {
  unsigned char *st = calloc(r->ninsts + 1, 1);
  if (st == NULL) return MLY_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < r->ninsts && rc == 0; i++) {
    uint32_t k = (uint32_t)i;
    while (k != UINT32_MAX && st[k] == 0) {
      st[k] = 1;
      const rp_inst *x = &r->insts[k];
      k = x->ended || x->parent == 0 ? UINT32_MAX : rp_find_inst(r, x->parent);
    }
    if (k != UINT32_MAX && st[k] == 1)
      rc = jr_errf(err, errlen, MLY_EBADMSG, "instance %llu is its own "
                   "ancestor (its parent chain loops)",
                   (unsigned long long)r->insts[k].id);
    for (uint32_t j = (uint32_t)i; j != UINT32_MAX && st[j] == 1;) {
      st[j] = 2;
      const rp_inst *x = &r->insts[j];
      j = x->ended || x->parent == 0 ? UINT32_MAX : rp_find_inst(r, x->parent);
    }
  }
  free(st);
  return rc;
}

/* Parked instances keep their slots: a spawn that took one would give a
 * new id to it, and the next replay would take the parked instance for
 * ended (a slot is reused only after an end). */
static int hold_parked_slots(mly_runtime *rt) {
  dur_state *d = rt->dur;
  if (d->nparked == 0 || rt->nfree == 0) return 0;
  unsigned char *held = calloc(rt->nslots / 8 + 1, 1);
  if (held == NULL) return MLY_ENOMEM;
  for (size_t i = 0; i < d->nparked; i++) {
    uint32_t s = (uint32_t)d->parked[i].id;
    if (s < rt->nslots) held[s / 8] |= (unsigned char)(1u << (s % 8));
  }
  uint32_t n = 0;
  for (uint32_t i = 0; i < rt->nfree; i++) {
    uint32_t s = rt->free_slots[i];
    if (!(held[s / 8] & (1u << (s % 8)))) rt->free_slots[n++] = s;
  }
  rt->nfree = n;
  free(held);
  return 0;
}

/* Adoption (the runtime runs): slots on the free list are only this
 * process's own empty ones; one an adopted instance now holds leaves it
 * (never one of the range's, the store's promise; checked all the same). */
static void drop_held_slots(mly_runtime *rt) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < rt->nfree; i++) {
    uint32_t s = rt->free_slots[i];
    if (s < rt->nslots && rt->slots[s] == NULL) rt->free_slots[n++] = s;
  }
  rt->nfree = n;
}

/* Brings the instances of r back.  adopt: the runtime runs already (a
 * shared store handed them over, durable_adopt): the slot table keeps its
 * free list and confinement, and the eid and correlation counters stay
 * this process's own. */
static int rebuild(mly_runtime *rt, replay *r, bool adopt, char *err,
                   size_t errlen) {
  uint32_t nslots = 0;
  for (size_t i = 0; i < r->ninsts; i++) {
    uint32_t s = (uint32_t)r->insts[i].id;
    if (s >= RP_MAX_SLOT)
      return jr_errf(err, errlen, MLY_ERANGE, "instance id %llu is past what "
                  "this runtime can hold", (unsigned long long)r->insts[i].id);
    if (s + 1 > nslots) nslots = s + 1;
  }
  int rc = refuse_parent_loops(r, err, errlen);
  if (rc < 0) return rc;
  const mly_store *st = rt->dur->s;
  if (st->slot_hi > nslots) nslots = st->slot_hi; /* its range, whole */
  rc = slots_reserve(rt, nslots);
  if (rc < 0) return rc;
  for (size_t i = 0; i < r->ninsts; i++) { /* ended ids are never reused */
    const rp_inst *x = &r->insts[i];
    uint32_t s = (uint32_t)x->id, gen = (uint32_t)(x->id >> 32);
    uint32_t next = x->ended ? gen + 1 : gen;
    if (next == 0) next = 1;
    if (next > rt->gens[s]) rt->gens[s] = next;
  }
  back *bs = calloc(r->live + 1, sizeof *bs);
  bool *gone = calloc(r->ninsts + 1, sizeof *gone); /* parked first */
  probes pr = {0};
  if (bs == NULL || gone == NULL) rc = MLY_ENOMEM;
  size_t n = 0;
  /* the instances this code refuses are parked, and top-level ones it
   * accepts come back; then children come back, or are parked with a
   * parked ancestor (they are read twice, top-level ones once) */
  for (int pass = 0; pass < 2 && rc == 0; pass++) {
    for (size_t i = 0; i < r->ninsts && rc == 0; i++) {
      const rp_inst *x = &r->insts[i];
      if (x->ended || gone[i] || (pass == 1 && x->parent == 0)) continue;
      rp_state s;
      jcur c = {x->s, x->s + x->slen, false};
      if (!rp_parse_state(&c, &s)) {
        rc = jr_errf(err, errlen, MLY_EBADMSG, "instance %llu: its state does "
                     "not parse", (unsigned long long)x->id);
        break;
      }
      /* what its records committed, not only its last one */
      s.ctx = x->ctx;
      s.ctxlen = x->ctxlen;
      s.name = x->name;
      s.namelen = x->namelen;
      char why[256];
      mly_type *t = NULL;
      uint32_t pc = 0;
      const char *no = refusal(rt, &pr, &s, &t, &pc, why, sizeof why);
      if ((rc = pr.err) < 0) break;
      if (pass == 0 && no) gone[i] = true;
      mly_id above = no || pass == 0 ? 0 : parked_above(r, gone, x);
      if (above) {
        snprintf(why, sizeof why, "its %s %llu is parked (a subtree is "
                 "parked as one)", above == x->parent ? "parent" : "ancestor",
                 (unsigned long long)above);
        no = why;
      }
      if (no) {
        rc = park_counted(rt, &s, no);
      } else if (pass == 1 || x->parent == 0) {
        back b = {0};
        rc = restore_one(rt, t, pc, &s, &b, err, errlen);
        if (rc == 0 && b.m) bs[n++] = b;
      }
    }
  }
  free(gone);
  free(pr.v);
  if (rc == 0) {
    dur_state *d = rt->dur; /* is_parked searches them */
    if (d->nparked > 1)
      qsort(d->parked, d->nparked, sizeof *d->parked, parked_by_id);
    if (adopt) {
      drop_held_slots(rt);
    } else {
      rc = slots_finish(rt);
      if (rc == 0 && st->slot_hi) slots_confine(rt, st->slot_lo, st->slot_hi);
    }
    if (rc == 0) rc = hold_parked_slots(rt);
  }
  if (rc == 0) {
    qsort(bs, n, sizeof *bs, by_id); /* links: the newest child first */
    for (size_t i = 0; i < n; i++) {
      mly_inst *p = bs[i].parent ? inst_get(rt, bs[i].parent) : NULL;
      if (p) inst_link_child(p, bs[i].m);
    }
    rc = restore_events(rt, r, err, errlen);
  }
  for (rp_tomb *t = r->tombs; t != NULL && rc == 0; t = t->hh.next)
    rc = name_tomb(rt, t->name, t->len, t->id, (int32_t)t->status,
                   t->ended_ms); /* a live holder wins; expired: dropped */
  if (rc == 0) {
    /* a shared store's eids and correlations are this node's own
     * (node << 40, its SNAP): those of other processes' events, which
     * its snapshot holds too, are in their nodes' spaces */
    bool own = st->slot_hi && r->snapped;
    uint64_t corr = own ? r->snap_corr : r->max_corr;
    if (!adopt && corr > rt->corr_next) rt->corr_next = corr;
    if (!adopt) rt->dur->next_eid = own ? r->snap_eid : r->max_eid;
    rt_keep_alive(rt);
    rc = rearm(rt, bs, n);
  }
  free(bs);
  if (rc < 0 && err[0] == '\0')
    jr_errf(err, errlen, rc, "recovery: %s", mly_strerror(rc));
  return rc;
}

#define DEFAULT_COMPACT_MIN (64u << 20)
#define DEFAULT_DEAD_PCT 50

int durable_open_check(mly_runtime *rt, const mly_journal_options *opt,
                       char *err, size_t errlen) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (rt->dur)
    return jr_errf(err, errlen, MLY_EEXIST, "this runtime has a journal already");
  if (rt->nslots > 0 || rt->closing || rt->stopping)
    return jr_errf(err, errlen, MLY_EBUSY, "open the journal before spawning "
                "any instance");
  if (opt && opt->sync > MLY_SYNC_NEVER)
    return jr_errf(err, errlen, MLY_EINVAL, "unknown sync policy %d", (int)opt->sync);
  return 0;
}

int durable_open(mly_runtime *rt, mly_store *s, const mly_journal_options *opt,
                 char *err, size_t errlen) {
  char scratch[512];
  if (err == NULL || errlen == 0) {
    err = scratch;
    errlen = sizeof scratch;
  }
  err[0] = '\0';
  durable_set_hooks(rt, s); /* from here on, s goes through store_close */
  int rc = durable_open_check(rt, opt, err, errlen);
  dur_state *d = rc < 0 ? NULL : calloc(1, sizeof *d);
  if (rc == 0 && (d == NULL || names_init(rt) < 0)) rc = MLY_ENOMEM;
  if (rc < 0) {
    free(d);
    store_close(s);
    return rc;
  }
  d->s = s;
  d->st = store_stats(s);
  d->compact_min_bytes = opt && opt->compact_min_bytes ? opt->compact_min_bytes
                                                       : DEFAULT_COMPACT_MIN;
  d->compact_dead_pct = opt && opt->compact_dead_pct ? opt->compact_dead_pct
                                                     : DEFAULT_DEAD_PCT;
  if (opt) {
    d->on_error = opt->on_error;
    d->arg = opt->arg;
  }
  names_set_retention(rt, opt == NULL || opt->name_retention_ms == 0
                              ? MLY_DEFAULT_NAME_RETENTION_MS
                              : opt->name_retention_ms);
  s->name_retention_ms = names_retention(rt);
  replay r = {.err = err, .errlen = errlen};
  /* the records stay valid (r points into them) until store_recover_end;
   * appends go where they belong from here on: an instance that was
   * ending writes its END record during rebuild */
  rc = store_recover(s, rp_record, &r, err, errlen);
  if (rc == 0) {
    rt->dur = d;
    rc = rebuild(rt, &r, false, err, errlen);
  }
  store_recover_end(s);
  rp_free(&r);
  if (rc < 0) {
    if (err[0] == '\0') jr_errf(err, errlen, rc, "%s", mly_strerror(rc));
    if (rt->dur) { /* instances brought back so far go, silently */
      durable_fail_all(rt, rc);
      rt->dur = NULL;
    }
    store_close(s);
    durable_state_free(rt, d);
    names_free(rt); /* tombstones and parked names read so far */
    return rc;
  }
  rc = dpool_attach(rt);
  if (rc < 0) {
    jr_errf(err, errlen, rc, "the task pool: %s", mly_strerror(rc));
    return rc; /* open; closed with the runtime */
  }
  if (d->st->salvaged > 0) { /* drop the damage for good, now */
    rc = durable_compact_now(rt);
    if (rc < 0)
      jr_errf(err, errlen, rc, "rewriting the salvaged %s failed: %s%s",
              s->ops->name, mly_strerror(rc),
              rc == MLY_ERANGE ? " (segment numbers are used up: copy the state "
                                 "into a fresh directory)" : "");
  }
  rt_schedule(rt);
  return rc;
}

/* A shared store claimed more instances while the runtime runs: p holds
 * them as framed records (JR_HDR, then the body: SNAP, INST..., EVENT...,
 * SNAPEND), folded as recovery folds them and brought back the same way
 * (parked when this code cannot run them, overdue timers at once). */
int durable_adopt(mly_runtime *rt, const unsigned char *p, size_t len,
                  char *err, size_t errlen) {
  if (rt->dur == NULL || rt->stopping || rt->closing) return MLY_ESHUTDOWN;
  err[0] = '\0';
  replay r = {.err = err, .errlen = errlen};
  int rc = 0;
  for (size_t off = 0; rc == 0 && off < len;) {
    uint32_t n = len - off >= JR_HDR ? jr_le32(p + off) : 0;
    if (len - off < JR_HDR || n > len - off - JR_HDR) {
      rc = jr_errf(err, errlen, MLY_EBADMSG, "adopted records: a record "
                   "past the end at offset %zu", off);
      break;
    }
    jrec rec = {.body = p + off + JR_HDR, .len = n, .file = "adopted",
                .offset = off};
    rc = rp_record(&rec, &r);
    off += JR_HDR + n;
  }
  if (rc == 0) rc = rebuild(rt, &r, true, err, errlen);
  rp_free(&r);
  if (rc == 0) rt_schedule(rt);
  return rc;
}

/* store_hooks.deliver: EVENT records (framed) that other processes
 * committed for instances this one owns, in commit order per sender:
 * into their inboxes as a journaled event after its commit (their
 * consumption is a took like any other).  One for an instance that is
 * not here (it ended, or left) is skipped. */
int durable_deliver_records(mly_runtime *rt, const unsigned char *p,
                            size_t len, char *err, size_t errlen) {
  if (rt->dur == NULL || rt->stopping || rt->closing) return MLY_ESHUTDOWN;
  err[0] = '\0';
  int rc = 0;
  for (size_t off = 0; rc == 0 && off < len;) {
    uint32_t n = len - off >= JR_HDR ? jr_le32(p + off) : 0;
    if (len - off < JR_HDR || n > len - off - JR_HDR)
      return jr_errf(err, errlen, MLY_EBADMSG, "delivered records: a record "
                     "past the end at offset %zu", off);
    jcur c = {p + off + JR_HDR, p + off + JR_HDR + n, false};
    uint32_t nf;
    uint64_t seq, kind;
    rp_event x;
    off += JR_HDR + n;
    if (!jc_array(&c, &nf) || !jc_uint(&c, &seq) || !jc_uint(&c, &kind) ||
        kind != JR_EVENT || !rp_parse_event(&c, &x))
      return jr_errf(err, errlen, MLY_EBADMSG, "delivered records: not an "
                     "EVENT record before offset %zu", off);
    mly_inst *m = inst_get(rt, x.to);
    if (m == NULL || !inst_durable(rt, m)) continue;
    mly_event *e = NULL;
    rc = event_of(rt, &x, &e, err, errlen);
    if (rc == 0) rc = ev_deliver(rt, m, e);
  }
  return rc;
}

/* The journal's entry: the journal store over opt->dir, and the durable
 * layer on it. */
int mly_journal_open(mly_runtime *rt, const mly_journal_options *opt,
                     char *err, size_t errlen) {
  char scratch[512];
  if (err == NULL || errlen == 0) {
    err = scratch;
    errlen = sizeof scratch;
  }
  err[0] = '\0';
  int rc = durable_open_check(rt, opt, err, errlen);
  if (rc < 0) return rc;
  mly_store *s = NULL;
  rc = journal_store_open(mly_runtime_loop(rt), opt, &s, err, errlen);
  if (rc < 0) return rc;
  return durable_open(rt, s, opt, err, errlen);
}

/* ---- questions ---- */

int mly_journal_error(const mly_runtime *rt) {
  int rc = rt->dur ? store_failed(rt->dur->s) : 0;
  return rc == MLY_EAGAIN ? 0 : rc; /* a shared store coming back: not an
                                       error that stopped it */
}

int mly_journal_stats_get(const mly_runtime *rt, mly_journal_stats *out) {
  if (rt->dur == NULL) return MLY_EINVAL;
  dur_state *d = rt->dur;
  *out = *d->st;
  out->recovered = d->open_st.recovered;
  out->parked = d->open_st.parked;
  out->live_bytes = d->live * (d->state_bytes + 16);
  return 0;
}

int mly_journal_parked(mly_runtime *rt, int (*cb)(const mly_parked *, void *),
                       void *arg) {
  if (rt->dur == NULL) return 0;
  for (size_t i = 0; i < rt->dur->nparked; i++) {
    const parked *p = &rt->dur->parked[i];
    mly_parked x = {p->id, p->type, p->point, p->version, p->reason};
    int rc = cb(&x, arg);
    if (rc) return rc;
  }
  return 0;
}

int mly_sync_parse(const char *s, mly_sync *out, uint32_t *interval_ms) {
  if (s == NULL) return MLY_EINVAL;
  *interval_ms = 0;
  if (strcmp(s, "always") == 0) *out = MLY_SYNC_ALWAYS;
  else if (strcmp(s, "never") == 0) *out = MLY_SYNC_NEVER;
  else if (strncmp(s, "interval:", 9) == 0) {
    int64_t ms;
    int rc = mly_duration_parse(s + 9, &ms);
    if (rc < 0) return rc;
    if (ms <= 0 || ms > UINT32_MAX) return MLY_ERANGE;
    *out = MLY_SYNC_INTERVAL;
    *interval_ms = (uint32_t)ms;
  } else {
    return MLY_EINVAL;
  }
  return 0;
}
