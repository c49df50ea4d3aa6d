/*
 * durable.c - the runtime's side of the store: what a durable step
 * writes, what waits for its commit, and how instances come back.
 *
 * It reaches storage only through store.h (D11): records go into the
 * store's turn buffer, completions come back through hooks.done, and
 * the store never names anything here.
 *
 * The contract (D2): a step's record holds its new state (yield point
 * name, data, wait, timer deadline), the event ids it consumed, the
 * events it sent to durable machines and the children it spawned.  Until
 * that record is durable:
 *   - the instance is held (D_HELD): a wake only marks it (D_WAKE), and
 *     durable_release queues it once the batch is synced;
 *   - everything it sent waits in the journal's done-list (JD_DELIVER);
 *   - the children it spawned are held too, their first state inside
 *     the parent's record, so a lost record loses parent and child alike.
 * An event for a durable machine from anywhere else (the host, a plain
 * machine, a durable post) gets an EVENT record of its own and is
 * delivered after it.  Every such event carries an id (eid); a step lists
 * the eids it consumed, a DROP record the ones dropped unread, so replay
 * knows exactly what was still in each inbox.
 *
 * Shutting the runtime down suspends durable instances (D_SILENT): they
 * leave memory without an END record, their inboxes whole (keep_inboxes),
 * and continue on the next open.
 */
#include "context.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- encoding ---- */

int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put_evid(mly_runtime *rt, jbuf *b, uint32_t id) {
  const char *name = intern_name(&rt->intern, id);
  if (name) jb_str(b, name, strlen(name));
  else jb_uint(b, id);
}

/* The deadline of its timer as wall-clock ms (monotonic time does not
 * survive a reboot), or 0.  A timer that has fired but whose step has not
 * run yet (a snapshot can see one) is recorded as long overdue: 1. */
static int64_t due_wall(mly_runtime *rt, const mly_inst *m) {
  if (m->head.woke == WOKE_TIMER) return 1;
  if ((m->head.flags & F_QUEUED) || m->heap_idx == NO_HEAP) return 0;
  uint64_t due_us = rt->heap.v[m->heap_idx].due_us, now = rt_now_us();
  /* in ms, and bounded (deadlines are at most ~31,700 years away, see
   * arm()): no arithmetic here can overflow */
  int64_t left = due_us > now ? (int64_t)((due_us - now + 999) / 1000) : 0;
  if (left > MAX_WAIT_MS) left = MAX_WAIT_MS;
  int64_t due = wall_ms() + left;
  return due > 0 ? due : 1;
}

static const char *point_of(const mly_inst *m, char *buf, size_t len) {
  const mly_type_def *d = &m->type->def;
  if (m->head.pc == 0) return "begin";
  if (m->head.pc < d->npoints) return d->points[m->head.pc];
  /* anonymous: recorded as such, and refused on recovery (D1) */
  snprintf(buf, len, "line %u", m->head.pc - MLY__ANON_BASE);
  return buf;
}

/* S, with the context and name fields (10, 11) only for an instance
 * that has either (context.h): how is PS_FULL (a snapshot: the context
 * and name whole) and/or PS_EXIT (it exited: no wait, no context).
 * Returns the context bytes written, or a negative error (the context
 * does not encode, or no memory) with the record unfinished. */
int64_t put_state(mly_runtime *rt, jbuf *b, const mly_inst *m, int how) {
  const mly_type *t = m->type;
  bool exiting = (how & PS_EXIT) != 0;
  char pbuf[32];
  const char *pt = point_of(m, pbuf, sizeof pbuf);
  const mly_inst *p = m->parent;
  inst_ext *x = ext_get(rt, m);
  jb_array(b, x ? 12 : 10);
  jb_uint(b, m->id);
  jb_str(b, t->name, strlen(t->name));
  jb_uint(b, p && inst_durable(rt, p) ? p->id : 0);
  jb_uint(b, m->step);
  jb_str(b, pt, strlen(pt));
  jb_uint(b, t->def.version);
  /* without its trailing zero bytes: recovery zero-fills (recover.c) */
  size_t dn = t->def.data_size;
  uint64_t w = 0;
  while (dn >= 8 && (memcpy(&w, m->data + dn - 8, 8), w == 0)) dn -= 8;
  while (dn > 0 && m->data[dn - 1] == 0) dn--;
  jb_bin(b, m->data, dn);
  jb_uint(b, m->head.flags & (F_SHUT_REQ | F_IN_SHUTDOWN));
  jb_array(b, 5);
  jb_uint(b, exiting ? RP_W_EXITING : m->head.wait);
  put_evid(rt, b, m->wait_id);
  jb_uint(b, m->wait_arg);
  jb_int(b, exiting ? 0 : due_wall(rt, m));
  /* who answers a request: recovery ends the wait if it cannot (D2) */
  jb_uint(b, !exiting && m->head.wait == W_REPLY ? m->wait_peer : 0);
  jb_int(b, m->status);
  if (x == NULL) return 0;
  int64_t n = 0;
  if (exiting) {
    jb_nil(b);
  } else {
    size_t old = x->len;
    n = ctx_put(rt, b, x, (how & PS_FULL) != 0);
    if (n < 0) return n;
    rt->dur->ctx_bytes += x->len - old; /* mod 2^64: it may shrink */
  }
  if (x->name && ((how & PS_FULL) || !x->name_written)) {
    jb_str(b, x->name->name, x->name->len);
    x->name_written = true;
  } else {
    jb_nil(b);
  }
  return n;
}

void put_event(mly_runtime *rt, jbuf *b, mly_id to,
                      const mly_event *e) {
  jb_array(b, 9);
  jb_uint(b, e->eid);
  jb_uint(b, to);
  put_evid(rt, b, e->id);
  jb_uint(b, e->from);
  jb_uint(b, e->flags & ~(EVF_DURABLE_POST | EVF_REMOTE));
  jb_uint(b, e->corr);
  jb_int(b, e->status);
  jb_int(b, e->aux);
  if (e->payload == NULL) {
    jb_nil(b);
    return;
  }
  char *buf = NULL;
  size_t len = 0;
  if (mly_value_encode(e->payload, &buf, &len) < 0) {
    b->oom = true;
    return;
  }
  jb_bin(b, buf, len);
  free(buf);
}

/* After each record: counted; and, when no step is running (a host call,
 * the step's own STEP record, the turn's DROP), a point where the turn may
 * be cut (store_cut): a step's records (its spawns, its sends, its STEP)
 * are never cut apart. */
static void count_record(mly_runtime *rt, dur_state *d) {
  d->st->records++;
  if (rt->running == NULL) store_cut(d->s);
}

/* Appends are made outside a batch too (host calls): make sure the idle
 * turn that flushes them comes. */
static void want_flush(mly_runtime *rt) {
  if (rt->running == NULL) rt_schedule(rt);
}

static int commit(dur_state *d, uint8_t kind, mly_id id, mly_event *e,
                  mly_post_cb cb, void *arg) {
  jdone x = {kind, id, e, cb, arg};
  return store_on_commit(d->s, &x);
}

/* ---- hooks from machine.c and event.c ---- */

int durable_check_spawn(mly_runtime *rt, mly_type *t) {
  if (rt->dur == NULL || !(t->def.flags & MLY_TYPE_DURABLE)) return 0;
  return store_failed(rt->dur->s);
}

void durable_spawned(mly_runtime *rt, mly_inst *m) {
  dur_state *d = rt->dur;
  m->dflags |= D_HELD;
  d->live++;
  mly_inst *run = rt->running;
  if (run && inst_durable(rt, run) && PUSH(d, spawned, m->id) == 0)
    return; /* its first state goes into the parent's record */
  jbuf *b = store_buf(d->s);
  size_t at = jb_begin(b, store_next_seq(d->s), JR_CREATE, 1);
  /* mly_spawn_opts checked that the context encodes and fits */
  if (put_state(rt, b, m, 0) < 0) b->oom = true;
  jb_end(b, at);
  count_record(rt, d);
  if (commit(d, JD_RELEASE, m->id, NULL, NULL, NULL) < 0) b->oom = true;
  want_flush(rt);
}

static int event_record(dur_state *d, mly_runtime *rt, mly_id to,
                        mly_event *e);

bool durable_send(mly_runtime *rt, mly_id from, mly_inst *to, mly_event *e,
                  int *rc) {
  dur_state *d = rt->dur;
  mly_inst *run = rt->running;
  bool to_durable = inst_durable(rt, to);
  if (run && run->id == from && inst_durable(rt, run)) {
    /* a durable step's outbox: delivered once the step is durable */
    if (to_durable) e->eid = ++d->next_eid;
    *rc = PUSH(d, out, ((dur_out){to->id, e}));
    if (*rc < 0) ev_free(rt, e);
    return true;
  }
  if (!to_durable) return false;
  int err = store_failed(d->s);
  if (err) {
    ev_free(rt, e);
    *rc = err;
    return true;
  }
  *rc = event_record(d, rt, to->id, e);
  return true;
}

/* Whether `to` may be another process's instance (see internal.h). */
static bool maybe_remote(mly_runtime *rt, mly_id to) {
  dur_state *d = rt->dur;
  if (d == NULL || d->s->slot_hi == 0 || to == 0 ||
      inst_get(rt, to) != NULL || durable_parked(d, to))
    return false; /* here (a parked one answers as the journal does) */
  uint32_t slot = (uint32_t)to;
  return slot < d->s->slot_lo || slot >= d->s->slot_hi;
}

/* An EVENT record for e to `to`, delivered (kind JD_DELIVER) once it
 * committed; e is the store's from here on (freed on failure). */
static int event_record(dur_state *d, mly_runtime *rt, mly_id to,
                        mly_event *e) {
  e->eid = ++d->next_eid;
  jbuf *b = store_buf(d->s);
  size_t at = jb_begin(b, store_next_seq(d->s), JR_EVENT, 1);
  put_event(rt, b, to, e);
  jb_end(b, at);
  count_record(rt, d);
  int rc = commit(d, JD_DELIVER, to, e, NULL, NULL);
  if (rc < 0) {
    b->oom = true; /* the record is there; fail the batch rather than lie */
    ev_free(rt, e);
  }
  want_flush(rt);
  return rc;
}

/* A remote event goes into the store (a durable step's outbox, or an
 * EVENT record of its own) and nowhere here: its delivery frees it. */
bool durable_send_remote(mly_runtime *rt, mly_id from, mly_id to,
                         mly_event *e, int *rc) {
  dur_state *d = rt->dur;
  if (!maybe_remote(rt, to)) return false;
  if (e == NULL) return true;
  mly_inst *run = rt->running;
  e->flags |= EVF_REMOTE;
  if (run && run->id == from && inst_durable(rt, run)) {
    e->eid = ++d->next_eid;
    *rc = PUSH(d, out, ((dur_out){to, e}));
    if (*rc < 0) ev_free(rt, e);
    return true;
  }
  int err = store_failed(d->s);
  if (err) {
    ev_free(rt, e);
    *rc = err;
    return true;
  }
  *rc = event_record(d, rt, to, e);
  return true;
}

void durable_post(mly_runtime *rt, mly_event *e) {
  post_cb_box *box = (post_cb_box *)(intptr_t)e->status;
  mly_id to = e->corr;
  e->corr = 0;
  e->status = 0;
  e->flags &= ~EVF_DURABLE_POST;
  mly_inst *dst = inst_get(rt, to);
  /* another process's (a shared store): through the store, whose answer
   * is MLY_ESRCH when no process holds it */
  bool remote = !rt->stopping && maybe_remote(rt, to);
  /* a stopping runtime has suspended its durable machines: they are not
   * gone, and the host may post again after the next open */
  int rc = remote ? 0
           : dst == NULL ? (rt->stopping ? MLY_ESHUTDOWN : MLY_ESRCH)
           : rt->dur == NULL || !inst_durable(rt, dst) ? MLY_EINVAL
                                                       : 0;
  if (rc == 0) {
    bool taken = remote ? durable_send_remote(rt, 0, to, e, &rc)
                        : durable_send(rt, 0, dst, e, &rc);
    (void)taken; /* always: the target is durable, or remote */
    /* where its record ends in the batch: if a failed write got that far,
     * the answer is MLY_EUNKNOWN, not an error (journal.c run_done) */
    if (rc == 0)
      rc = commit(rt->dur, JD_POSTED, store_buf(rt->dur->s)->n, NULL,
                  box->cb, box->arg);
    if (rc == 0) {
      free(box);
      return;
    }
  } else {
    rt->st.undeliverable++; /* taken from the queue, never delivered */
    ev_free(rt, e);
  }
  if (box->cb) box->cb(rt, rc, box->arg);
  free(box);
}

void durable_took(mly_runtime *rt, mly_inst *m, mly_event *e) {
  dur_state *d = rt->dur;
  /* a suspended instance keeps its inbox in the journal: what a crash
   * keeps, a clean stop keeps too */
  if (d == NULL || (m->dflags & D_SILENT) || rt->closing) return;
  if (rt->running == m && inst_durable(rt, m)) {
    if (PUSH(d, took, e->eid) < 0) store_buf(d->s)->oom = true;
    return;
  }
  durable_dropped(rt, e);
}

void durable_dropped(mly_runtime *rt, mly_event *e) {
  dur_state *d = rt->dur;
  if (d == NULL || e->eid == 0) return;
  if (PUSH(d, drops, e->eid) < 0) store_buf(d->s)->oom = true;
  want_flush(rt);
}

static void forget_step(mly_runtime *rt, dur_state *d);

/* A step whose record cannot be: what it did is dropped, and the caller
 * ends it with rc (the batch stays whole: the record is taken back). */
static int step_refused(mly_runtime *rt, dur_state *d, size_t at, int rc) {
  jbuf *b = store_buf(d->s);
  forget_step(rt, d);
  if (!b->oom) { /* out of memory, the batch fails anyway (the store's flush) */
    b->n = at;
    store_seq_back(d->s);
  }
  return rc;
}

int durable_step_end(mly_runtime *rt, mly_inst *m, bool exited) {
  dur_state *d = rt->dur;
  if (store_failed(d->s)) return 0;
  /* An exit that took, sent and spawned nothing and leaves at once: the
   * END record that follows in this batch says all it would (its data
   * is never read again).  Not when it waits for children first, or is
   * suspended (no END follows). */
  if (exited && m->child == NULL && d->ntook == 0 && d->nout == 0 &&
      d->nspawned == 0 && !(m->dflags & D_SILENT) && !rt->closing)
    return 0;
  jbuf *b = store_buf(d->s);
  size_t at = jb_begin(b, store_next_seq(d->s), JR_STEP, 4);
  size_t before = b->n;
  int64_t ctx = put_state(rt, b, m, exited ? PS_EXIT : 0);
  if (ctx < 0) return step_refused(rt, d, at, (int)ctx);
  uint64_t size = b->n - before - (uint64_t)ctx;
  d->state_bytes = d->state_bytes ? (d->state_bytes * 15 + size) / 16 : size;
  jb_array(b, d->ntook);
  for (uint32_t i = 0; i < d->ntook; i++) jb_uint(b, d->took[i]);
  uint32_t nd = 0;
  for (uint32_t i = 0; i < d->nout; i++) nd += d->out[i].ev->eid != 0;
  jb_array(b, nd);
  for (uint32_t i = 0; i < d->nout; i++)
    if (d->out[i].ev->eid) put_event(rt, b, d->out[i].to, d->out[i].ev);
  uint32_t ns = 0;
  for (uint32_t i = 0; i < d->nspawned; i++)
    ns += inst_get(rt, d->spawned[i]) != NULL;
  jb_array(b, ns);
  for (uint32_t i = 0; i < d->nspawned; i++) {
    mly_inst *c = inst_get(rt, d->spawned[i]);
    int64_t r = c ? put_state(rt, b, c, 0) : 0;
    if (r < 0) return step_refused(rt, d, at, (int)r);
  }
  /* past the record bound it would read back as damage: refused */
  if (!b->oom && b->n - at - JR_HDR > JR_MAX_BODY)
    return step_refused(rt, d, at, MLY_ERANGE);
  jb_end(b, at);
  count_record(rt, d);
  int rc = 0;
  if (!exited) {
    m->dflags |= D_HELD;
    rc = commit(d, JD_RELEASE, m->id, NULL, NULL, NULL);
  }
  for (uint32_t i = 0; i < d->nout; i++) {
    int r = commit(d, JD_DELIVER, d->out[i].to, d->out[i].ev, NULL, NULL);
    if (r < 0) ev_free(rt, d->out[i].ev);
    if (r < 0) rc = r;
  }
  for (uint32_t i = 0; i < d->nspawned; i++)
    if (commit(d, JD_RELEASE, d->spawned[i], NULL, NULL, NULL) < 0) rc = MLY_ENOMEM;
  if (rc < 0) b->oom = true; /* the batch fails rather than half-commits */
  d->ntook = d->nout = d->nspawned = 0;
  return 0;
}

/* A step ended without a record (the instance was killed in it): what it
 * sent is dropped with it, and the children it spawned go as it goes. */
static void forget_step(mly_runtime *rt, dur_state *d) {
  for (uint32_t i = 0; i < d->nout; i++) ev_free(rt, d->out[i].ev);
  d->ntook = d->nout = d->nspawned = 0;
}

void durable_step_abandoned(mly_runtime *rt) {
  if (rt->dur) forget_step(rt, rt->dur);
}

bool durable_end(mly_runtime *rt, mly_inst *m, bool failed) {
  dur_state *d = rt->dur;
  if (d->live > 0) d->live--;
  if (store_failed(d->s)) return false;
  mly_inst *p = m->parent;
  bool notice = p && !(p->head.flags & (F_KILL | F_ENDING));
  uint64_t eid = notice && inst_durable(rt, p) ? ++d->next_eid : 0;
  inst_ext *x = ext_get(rt, m);
  if (x) d->ctx_bytes -= x->len;
  name_ent *nm = x ? x->name : NULL;
  jbuf *b = store_buf(d->s);
  size_t at = jb_begin(b, store_next_seq(d->s), JR_END, nm ? 6 : 4);
  jb_uint(b, m->id);
  jb_int(b, m->status);
  jb_int(b, failed ? MLY_LC_FAILED : MLY_LC_TERMINATED);
  jb_uint(b, eid);
  if (nm) { /* its tombstone: ext_end keeps the same time in memory */
    nm->ended_ms = names_now_ms(rt);
    jb_int(b, nm->ended_ms);
    jb_str(b, nm->name, nm->len);
  }
  jb_end(b, at);
  count_record(rt, d);
  want_flush(rt);
  if (!notice) return true;
  mly_event *e = ev_new(rt);
  if (e == NULL) return true; /* the notice is lost, as without a journal */
  e->id = MLY_EV_CHILD_EXIT;
  e->from = m->id;
  e->status = m->status;
  e->aux = failed ? MLY_LC_FAILED : MLY_LC_TERMINATED;
  e->eid = eid;
  /* Delivered now, not after the commit: the parent must find it when it
   * waits for this child, which is gone already.  The journal is a
   * prefix: any record of the parent that consumes the notice comes after
   * this END, so it can never be durable without it. */
  ev_deliver(rt, p, e);
  return true;
}

/* ---- after the batch ---- */

static void durable_release(mly_runtime *rt, mly_id id, int rc) {
  mly_inst *m = inst_get(rt, id);
  if (m == NULL || !(m->dflags & D_HELD)) return;
  m->dflags &= ~D_HELD;
  if (rc < 0) return; /* durable_fail_all ends it */
  if ((m->dflags & D_WAKE) && !(m->head.flags & F_QUEUED)) {
    m->dflags &= ~D_WAKE;
    inst_ready(m);
  }
}

/* A shutdown request must not overtake the events sent to its target
 * before it (a reply above all: only the request's own wait can take it,
 * mealy.h "Shutdown requests").  Events that go through the journal
 * reach their target once their batch is durable, so while any may be on
 * its way (a durable step's outbox, a batch not yet done, or a step that
 * runs now) the request follows the same path, as a marker event behind
 * them.  true: queued. */
bool durable_order_shutdown(mly_runtime *rt, mly_inst *m) {
  dur_state *d = rt->dur;
  if (d == NULL || store_failed(d->s)) return false;
  mly_inst *run = rt->running;
  bool in_step = run != NULL && inst_durable(rt, run);
  /* from inside any step: what the step sends after the request (a
   * journaled reply) still reaches the target in the same pass */
  if (run == NULL && store_idle(d->s)) return false;
  mly_event *e = ev_new(rt);
  if (e == NULL) return false;
  e->flags = EVF_SHUTDOWN_REQ;
  int rc = in_step ? PUSH(d, out, ((dur_out){m->id, e}))
                   : commit(d, JD_DELIVER, m->id, e, NULL, NULL);
  if (rc < 0) {
    ev_free(rt, e);
    return false;
  }
  want_flush(rt);
  return true;
}

static bool in_ids(const mly_id *ids, size_t n, mly_id id) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] == id) return true;
  return false;
}

static void durable_deliver(mly_runtime *rt, mly_id to, mly_event *e,
                            int rc) {
  if (e->flags & EVF_SHUTDOWN_REQ) { /* not an event: see above */
    mly_inst *m = inst_get(rt, to);
    ev_free(rt, e);
    if (m != NULL) inst_request_shutdown(m);
    return;
  }
  dur_state *d = rt->dur;
  if (d && d->nrerun && (in_ids(d->rerun, d->nrerun_skip, e->from) ||
                         in_ids(d->rerun, d->nrerun, to))) {
    ev_free(rt, e); /* see hook_rerun */
    return;
  }
  mly_inst *dst = rc < 0 || (e->flags & EVF_REMOTE) ? NULL : inst_get(rt, to);
  if (dst == NULL) {
    /* a remote one went to its owner through the store */
    if (rc == 0 && !(e->flags & EVF_REMOTE)) rt->st.undeliverable++;
    ev_free(rt, e);
    return;
  }
  ev_deliver(rt, dst, e);
}

void durable_flush(mly_runtime *rt) {
  dur_state *d = rt->dur;
  if (d->ndrops > 0 && !store_failed(d->s)) {
    jbuf *b = store_buf(d->s);
    size_t at = jb_begin(b, store_next_seq(d->s), JR_DROP, 1);
    jb_array(b, d->ndrops);
    for (uint32_t i = 0; i < d->ndrops; i++) jb_uint(b, d->drops[i]);
    jb_end(b, at);
    count_record(rt, d);
  }
  d->ndrops = 0;
  store_flush(d->s);
}

/* A compaction needs memory and journal to agree: no record pending, no
 * write in flight.  Under a steady load that moment never comes by
 * itself, so once a compaction is wanted steps pause (durable_paused):
 * the batch in flight completes, what it left pending is flushed, and
 * when that is durable too the compaction runs and steps go on. */
static void durable_after_commit(mly_runtime *rt) {
  dur_state *d = rt->dur;
  if (d == NULL || rt->running != NULL) return;
  if (rt->stopping) { /* see mly_journal_compact */
    d->compact_wanted = false;
    return;
  }
  uint64_t total = d->st->total_bytes;
  uint64_t live = d->live * (d->state_bytes + 16) + d->nparked * 64 +
                  d->ctx_bytes + names_ntombs(rt) * 64;
  if (d->s->ops->compact && total >= d->compact_min_bytes && total > live &&
      (total - live) * 100 >= total * d->compact_dead_pct)
    d->compact_wanted = true;
  if (!d->compact_wanted || !store_idle(d->s)) return;
  d->compact_wanted = false;
  durable_compact_now(rt);
  rt_schedule(rt); /* the steps that waited */
}

/* ---- what the store reports (store_hooks; arg: the runtime) ---- */

/* rc < 0: the batch failed.  A durable post whose record had reached the
 * medium (jdone.id: where it ends in the batch, wrote: how far the write
 * got) may be read back on the next open: its answer is MLY_EUNKNOWN;
 * one whose record did not is certainly not stored: rc. */
static void hook_done(void *arg, const jdone *d, int rc, size_t wrote) {
  mly_runtime *rt = arg;
  switch (d->kind) {
  case JD_RELEASE: durable_release(rt, d->id, rc); break;
  case JD_DELIVER: durable_deliver(rt, d->id, d->ev, rc); break;
  case JD_POSTED:
    if (d->cb) d->cb(rt, rc < 0 && d->id <= wrote ? MLY_EUNKNOWN : rc, d->arg);
    break;
  }
}

static void hook_committed(void *arg) {
  mly_runtime *rt = arg;
  if (rt->dur && rt->dur->nrerun) {
    free(rt->dur->rerun);
    rt->dur->rerun = NULL;
    rt->dur->nrerun = rt->dur->nrerun_skip = 0;
  }
  durable_after_commit(rt);
}

/* Fail-stop (D3): every durable machine ends with the error and the host
 * is told. */
static void hook_failed(void *arg, int rc, const char *msg) {
  mly_runtime *rt = arg;
  dur_state *d = rt->dur;
  durable_fail_all(rt, rc);
  if (d && d->on_error) d->on_error(rt, rc, msg, d->arg);
}

/* A shared store lost these instances (its lease ran out, a commit was
 * fenced): another process runs them now, so they leave memory silently,
 * with no END record, their uncommitted steps dropped (the store counted
 * them).  A parent takes its children with it. */
static void evict_as(mly_runtime *rt, const mly_id *ids, size_t n,
                     int status) {
  for (size_t i = 0; i < n; i++) {
    mly_inst *m = inst_get(rt, ids[i]);
    if (m != NULL && inst_durable(rt, m)) m->dflags |= D_SILENT;
  }
  inst_unqueue_flagged(rt, D_SILENT);
  for (size_t i = n; i-- > 0;) {
    mly_inst *m = inst_get(rt, ids[i]);
    if (m != NULL && (m->dflags & D_SILENT)) {
      inst_end_now(m, status);
      if (rt->dur && rt->dur->live > 0) rt->dur->live--;
    }
  }
}

static void hook_evict(void *arg, const mly_id *ids, size_t n) {
  evict_as(arg, ids, n, MLY_EPERM);
}

void durable_leave(mly_runtime *rt, const mly_id *ids, size_t n) {
  evict_as(rt, ids, n, MLY_EPERM);
}

/* A batch left out steps that spawned a name another process holds
 * (store.h rerun): the instances leave as evicted ones do, and the
 * store brings back those with committed rows; their steps run again,
 * and the spawn now finds the name taken (MLY_EEXIST).  A named child
 * that never committed ends with MLY_EEXIST (a plain parent's
 * CHILD_EXIT says so). */
static void hook_rerun(void *arg, const mly_id *ids, size_t n,
                       size_t nskipped) {
  mly_runtime *rt = arg;
  dur_state *d = rt->dur;
  if (d == NULL) return;
  mly_id *keep = malloc((n ? n : 1) * sizeof *keep);
  if (keep) memcpy(keep, ids, n * sizeof *keep);
  free(d->rerun);
  d->rerun = keep;
  d->nrerun = keep ? n : 0;
  d->nrerun_skip = keep ? nskipped : 0;
  evict_as(rt, ids, n, MLY_EEXIST);
}

/* How a name stands in a shared store (store.h name_seen). */
static void hook_name_seen(void *arg, const char *name, size_t len,
                           mly_id id, bool live, int32_t status,
                           int64_t ended_ms) {
  (void)name_learn(arg, name, len, id, live, status, ended_ms);
}

/* Records a shared store hands up while running (recover.c): what
 * fails is said on stderr, and the store fails with it. */
static int hook_records(void *arg, const unsigned char *records, size_t len,
                        int (*fn)(mly_runtime *, const unsigned char *, size_t,
                                  char *, size_t),
                        const char *what) {
  mly_runtime *rt = arg;
  char err[512];
  int rc = fn(rt, records, len, err, sizeof err);
  if (rc < 0 && rc != MLY_ESHUTDOWN)
    fprintf(stderr, "mealy: %s: %s\n", what, err[0] ? err : mly_strerror(rc));
  return rc;
}

/* A dead process's instances this one claimed: back as at open. */
static int hook_adopt(void *arg, const unsigned char *records, size_t len) {
  return hook_records(arg, records, len, durable_adopt,
                      "adopting instances");
}

/* Events other processes committed for instances here. */
static int hook_deliver(void *arg, const unsigned char *records,
                        size_t len) {
  return hook_records(arg, records, len, durable_deliver_records,
                      "delivering events of other processes");
}

/* A shared store rejoined on another slot range. */
static int hook_rerange(void *arg, uint32_t lo, uint32_t hi) {
  return slots_rerange(arg, lo, hi);
}

/* The store's last handle is gone: it held the runtime open. */
static void hook_closed(void *arg) { rt_release(arg); }

void durable_set_hooks(mly_runtime *rt, mly_store *s) {
  s->hooks = (store_hooks){.arg = rt, .done = hook_done,
                           .closed = hook_closed,
                           .committed = hook_committed,
                           .failed = hook_failed, .evict = hook_evict,
                           .adopt = hook_adopt, .deliver = hook_deliver,
                           .rerange = hook_rerange,
                           .rerun = hook_rerun,
                           .name_seen = hook_name_seen,
                           .pooled = dpool_pooled, .unlend = dpool_unlend,
                           .wake = dpool_wake};
  rt->open_handles++; /* released by hook_closed */
}

bool mly_store_shared(const mly_runtime *rt) {
  return rt->dur != NULL && rt->dur->s->slot_hi != 0;
}

bool durable_paused(const mly_runtime *rt) {
  return rt->dur != NULL && rt->dur->compact_wanted && !rt->stopping &&
         !store_failed(rt->dur->s);
}

/* Silently out of memory: they are in the journal, not ended.  All are
 * marked first: ending a parent ends its children, whatever their slots,
 * and a durable child must not write an END on the way. */
static void end_durable(mly_runtime *rt, int status) {
  for (uint32_t s = 0; s < rt->nslots; s++) {
    mly_inst *m = rt->slots[s];
    if (m != NULL && inst_durable(rt, m)) m->dflags |= D_SILENT;
  }
  inst_unqueue_flagged(rt, D_SILENT);
  for (uint32_t s = rt->nslots; s-- > 0;) {
    mly_inst *m = rt->slots[s];
    if (m != NULL && (m->dflags & D_SILENT)) inst_end_now(m, status);
  }
}

void durable_fail_all(mly_runtime *rt, int rc) {
  if (rt->dur == NULL) return;
  end_durable(rt, rc);
  rt->dur->live = 0;
  rt->dur->ctx_bytes = 0;
}

/* A clean stop keeps every inbox: events that were never journaled (a
 * plain mly_post, a process exit, a signal, the end of a child that was
 * not durable) get a record now, after the journaled ones. */
static void keep_inboxes(mly_runtime *rt) {
  dur_state *d = rt->dur;
  if (store_failed(d->s)) return;
  jbuf *b = store_buf(d->s);
  for (uint32_t s = 0; s < rt->nslots; s++) {
    mly_inst *m = rt->slots[s];
    if (m == NULL || !inst_durable(rt, m) || m->inbox == NULL) continue;
    mly_event *e = m->inbox;
    do {
      e = e->next;
      if (e->eid != 0) continue;
      e->eid = ++d->next_eid;
      size_t at = jb_begin(b, store_next_seq(d->s), JR_EVENT, 1);
      put_event(rt, b, m->id, e);
      jb_end(b, at);
      count_record(rt, d);
    } while (e != m->inbox);
  }
  want_flush(rt);
}

void durable_suspend_all(mly_runtime *rt) {
  keep_inboxes(rt);
  end_durable(rt, MLY_ESHUTDOWN);
}

void parked_free(parked *p) {
  free(p->type);
  free(p->point);
  free(p->reason);
  free(p->state);
}

void durable_state_free(mly_runtime *rt, dur_state *d) {
  forget_step(rt, d);
  free(d->took);
  free(d->out);
  free(d->spawned);
  free(d->drops);
  for (size_t i = 0; i < d->nparked; i++) parked_free(&d->parked[i]);
  free(d->parked);
  for (size_t i = 0; i < d->npev; i++) free(d->pev[i].p);
  free(d->pev);
  free(d->rerun);
  free(d);
}

void durable_close(mly_runtime *rt) {
  dur_state *d = rt->dur;
  if (d == NULL) return;
  rt->dur = NULL; /* completions after this only touch instances */
  store_close(d->s);
  durable_state_free(rt, d);
}

/* ---- compaction ---- */

typedef struct snap_tombs {
  mly_runtime *rt;
  jbuf *b;
  uint64_t n;
} snap_tombs;

/* TOMB [seq, 9, name, id, status, ended_ms]: a tombstone within the
 * retention (older ones are dropped here, D4's "compaction"). */
static int put_tomb(const name_ent *e, void *arg) {
  snap_tombs *t = arg;
  size_t at = jb_begin(t->b, store_next_seq(t->rt->dur->s), JR_TOMB, 4);
  jb_str(t->b, e->name, e->len);
  jb_uint(t->b, e->id);
  jb_int(t->b, e->status);
  jb_int(t->b, e->ended_ms);
  jb_end(t->b, at);
  t->n++;
  return 0;
}

/* The live set as records: SNAP, an INST per instance (parked ones byte
 * for byte), an EVENT per event still in a durable inbox, a TOMB per
 * tombstone, SNAPEND. */
static void snapshot(mly_runtime *rt, jbuf *b, uint64_t *nbytes_state) {
  dur_state *d = rt->dur;
  mly_store *j = d->s;
  uint64_t ninst = 0, nev = 0;
  size_t at = jb_begin(b, store_next_seq(j), JR_SNAP, 2);
  jb_uint(b, d->next_eid);
  jb_uint(b, rt->corr_next);
  jb_end(b, at);
  size_t before = b->n;
  for (uint32_t s = 0; s < rt->nslots; s++) {
    mly_inst *m = rt->slots[s];
    if (m == NULL || !inst_durable(rt, m)) continue;
    at = jb_begin(b, store_next_seq(j), JR_INST, 1);
    int how = PS_FULL | ((m->head.flags & F_ENDING) ? PS_EXIT : 0);
    if (put_state(rt, b, m, how) < 0) b->oom = true; /* it encoded before */
    jb_end(b, at);
    ninst++;
  }
  for (size_t i = 0; i < d->nparked; i++) {
    at = jb_begin(b, store_next_seq(j), JR_INST, 1);
    jb_raw(b, d->parked[i].state, d->parked[i].len);
    jb_end(b, at);
    ninst++;
  }
  *nbytes_state = b->n - before;
  for (uint32_t s = 0; s < rt->nslots; s++) {
    mly_inst *m = rt->slots[s];
    if (m == NULL || !inst_durable(rt, m) || m->inbox == NULL) continue;
    const mly_event *e = m->inbox;
    do {
      e = e->next;
      if (e->eid == 0) continue;
      at = jb_begin(b, store_next_seq(j), JR_EVENT, 1);
      put_event(rt, b, m->id, e);
      jb_end(b, at);
      nev++;
    } while (e != m->inbox);
  }
  for (size_t i = 0; i < d->npev; i++) {
    at = jb_begin(b, store_next_seq(j), JR_EVENT, 1);
    jb_raw(b, d->pev[i].p, d->pev[i].len);
    jb_end(b, at);
    nev++;
  }
  snap_tombs tb = {rt, b, 0};
  names_foreach_tomb(rt, put_tomb, &tb);
  at = jb_begin(b, store_next_seq(j), JR_SNAPEND, 3);
  jb_uint(b, ninst);
  jb_uint(b, nev);
  jb_uint(b, tb.n);
  jb_end(b, at);
}

/* Runs on the loop thread when nothing is in flight: no instance is
 * held, so memory and store agree.  The store writes the snapshot and
 * drops what it replaces (store.h compact); a failure there is its
 * fail-stop. */
int durable_compact_now(mly_runtime *rt) {
  dur_state *d = rt->dur;
  int rc = store_failed(d->s);
  if (rc) return rc;
  if (d->s->ops->compact == NULL) return MLY_ENOSYS;
  jbuf b = {0};
  uint64_t state_bytes = 0;
  snapshot(rt, &b, &state_bytes);
  if (b.oom) {
    jb_free(&b);
    return MLY_ENOMEM; /* nothing changed: the store goes on as it was */
  }
  rc = store_compact(d->s, &b);
  jb_free(&b);
  if (rc < 0) return rc;
  if (state_bytes > d->ctx_bytes) state_bytes -= d->ctx_bytes;
  if (d->live + d->nparked)
    d->state_bytes = state_bytes / (d->live + d->nparked);
  return 0;
}

int mly_journal_compact(mly_runtime *rt) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (rt->dur == NULL) return MLY_EINVAL;
  if (rt->dur->s->ops->compact == NULL) return MLY_ENOSYS;
  /* the machines a stop suspended are only in the journal now: a live
   * set written from memory would leave them out */
  if (rt->stopping) return MLY_ESHUTDOWN;
  int rc = store_failed(rt->dur->s);
  if (rc) return rc;
  if (rt->running != NULL || !store_idle(rt->dur->s)) {
    rt->dur->compact_wanted = true; /* steps pause until it has run */
    return 0;
  }
  return durable_compact_now(rt);
}

int mly_durable_sync(mly_runtime *rt, mly_post_cb cb, void *arg) {
  if (rt == NULL || cb == NULL) return MLY_EINVAL;
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (rt->dur == NULL) return MLY_EINVAL;
  int rc = store_failed(rt->dur->s);
  if (rc) return rc;
  /* behind everything written so far: its batch commits after theirs */
  rc = commit(rt->dur, JD_POSTED, store_buf(rt->dur->s)->n, NULL, cb, arg);
  if (rc == 0) want_flush(rt);
  return rc;
}

bool dur_grow(void **v, uint32_t *cap, size_t size) {
  uint32_t c = *cap ? *cap * 2 : 64;
  void *p = realloc(*v, (size_t)c * size);
  if (p == NULL) return false;
  *v = p;
  *cap = c;
  return true;
}
