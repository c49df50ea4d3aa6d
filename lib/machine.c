/*
 * machine.c - instances: birth, steps, waits, shutdown and death.
 *
 * A step is everything a body does from a resume to its next yield.  The
 * body macros (mealy.h) call the mly__* functions here: a wait's setup
 * says what the instance waits for; its done-test, run on the first pass
 * and on every resume, says whether the wait is over.  The runtime only
 * ever resumes an instance through inst_wake(), with the reason in
 * head.woke, and at most once per wake (F_QUEUED).
 *
 * Shutdown follows the seed's MealyCoroutine: a request sets a flag and
 * wakes the instance.  If its type has a shutdown routine, the next resume
 * starts that routine from its beginning (and the running wait is
 * abandoned); otherwise the current wait ends early, once, and the body
 * sees mly_shutdown_requested().
 *
 * An instance that exits while it still has children does not end yet: it
 * asks its newest child to shut down, waits for it to end, then the next
 * (reverse start order, as an OTP supervisor does), and ends last.
 */
#include "context.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* ---- slot table: ids to instances ---- */

static int slot_alloc(mly_runtime *rt, mly_inst *m) {
  uint32_t s;
  if (rt->nfree > 0) {
    s = rt->free_slots[--rt->nfree];
  } else if (rt->slots_confined) {
    return MLY_ENOSPC; /* its range is full (slots_confine) */
  } else {
    if (rt->nslots == rt->slot_cap) {
      uint32_t cap = rt->slot_cap ? rt->slot_cap * 2 : 256;
      mly_inst **slots = realloc(rt->slots, (size_t)cap * sizeof *slots);
      if (slots == NULL) return MLY_ENOMEM;
      rt->slots = slots;
      rt->heap.slots = slots; /* the heap finds instances by slot */
      uint32_t *gens = realloc(rt->gens, (size_t)cap * sizeof *gens);
      if (gens == NULL) return MLY_ENOMEM;
      rt->gens = gens;
      rt_bytes(rt, (ptrdiff_t)(cap - rt->slot_cap) *
                       (ptrdiff_t)(sizeof *slots + sizeof *gens));
      rt->slot_cap = cap;
    }
    s = rt->nslots++;
    rt->gens[s] = 1;
  }
  rt->slots[s] = m;
  m->id = (uint64_t)rt->gens[s] << 32 | s;
  return 0;
}

static void slot_free(mly_runtime *rt, uint32_t s);

static void slot_release(mly_runtime *rt, mly_inst *m) {
  uint32_t s = (uint32_t)m->id;
  rt->slots[s] = NULL;
  if (++rt->gens[s] == 0) rt->gens[s] = 1; /* ids are never 0 */
  if (rt->slots_own_only && rt->slots_confined &&
      (s < rt->conf_lo || s >= rt->conf_hi))
    return; /* another process's range: never made here */
  slot_free(rt, s);
}

/* A lent slot: off the free list until its instance ended elsewhere
 * (slot_unlend) or came back here (inst_restore: then it is freed when
 * it ends here, as any).  Kept by slot, so that whichever way the
 * instance comes back (claimed from the pool, or with a dead process's
 * node) the slot is never on the free list twice. */
typedef struct lent_slot {
  uint32_t s;
  UT_hash_handle hh;
} lent_slot;

static lent_slot *lent_find(mly_runtime *rt, uint32_t s) {
  lent_slot *l = NULL;
  HASH_FIND(hh, rt->lent_slots, &s, sizeof s, l);
  return l;
}

static bool lent_take(mly_runtime *rt, uint32_t s) {
  lent_slot *l = rt->lent_slots ? lent_find(rt, s) : NULL;
  if (l == NULL) return false;
  HASH_DEL(rt->lent_slots, l);
  free(l);
  return true;
}

void slot_lend(mly_runtime *rt, uint32_t s) {
  if (s >= rt->nslots || rt->slots[s] != NULL || lent_find(rt, s)) return;
  bool found = false;
  for (uint32_t i = rt->nfree; i-- > 0;) /* the newest freed: at the end */
    if (rt->free_slots[i] == s) {
      memmove(rt->free_slots + i, rt->free_slots + i + 1,
              (rt->nfree - i - 1) * sizeof *rt->free_slots);
      rt->nfree--;
      found = true;
      break;
    }
  if (!found) return; /* not free here (another range's): nothing lent */
  lent_slot *l = malloc(sizeof *l);
  bool hash_oom = l == NULL;
  if (l != NULL) {
    l->s = s;
    HASH_ADD(hh, rt->lent_slots, s, sizeof l->s, l);
    if (hash_oom) free(l);
  }
  /* no memory: the slot stays off the list for good (never reused) */
}

void slot_unlend(mly_runtime *rt, uint32_t s) {
  if (lent_take(rt, s) && s < rt->nslots && rt->slots[s] == NULL &&
      (!rt->slots_confined || (s >= rt->conf_lo && s < rt->conf_hi)))
    slot_free(rt, s);
}

void slots_lent_free(mly_runtime *rt) {
  lent_slot *l, *t;
  HASH_ITER(hh, rt->lent_slots, l, t) {
    HASH_DEL(rt->lent_slots, l);
    free(l);
  }
}

static void slot_free(mly_runtime *rt, uint32_t s) {
  if (rt->free_slots == NULL) {
    rt->free_slots = malloc((size_t)rt->slot_cap * sizeof *rt->free_slots);
    if (rt->free_slots == NULL) return; /* the slot is leaked, not reused */
    rt_bytes(rt, (ptrdiff_t)rt->slot_cap * (ptrdiff_t)sizeof(uint32_t));
    rt->free_cap = rt->slot_cap;
  } else if (rt->nfree == rt->free_cap) {
    uint32_t *f = realloc(rt->free_slots,
                          (size_t)rt->slot_cap * sizeof *rt->free_slots);
    if (f == NULL) return;
    rt_bytes(rt, (ptrdiff_t)(rt->slot_cap - rt->free_cap) *
                     (ptrdiff_t)sizeof(uint32_t));
    rt->free_slots = f;
    rt->free_cap = rt->slot_cap;
  }
  rt->free_slots[rt->nfree++] = s;
}

/* Recovery: make slots 0..n-1 exist, empty, generation 1. */
int slots_reserve(mly_runtime *rt, uint32_t n) {
  if (n <= rt->nslots) return 0;
  if (n > rt->slot_cap) {
    mly_inst **slots = realloc(rt->slots, (size_t)n * sizeof *slots);
    if (slots == NULL) return MLY_ENOMEM;
    rt->slots = slots;
    rt->heap.slots = slots;
    uint32_t *gens = realloc(rt->gens, (size_t)n * sizeof *gens);
    if (gens == NULL) return MLY_ENOMEM;
    rt->gens = gens;
    rt_bytes(rt, (ptrdiff_t)(n - rt->slot_cap) *
                     (ptrdiff_t)(sizeof *slots + sizeof *gens));
    rt->slot_cap = n;
  }
  for (uint32_t s = rt->nslots; s < n; s++) {
    rt->slots[s] = NULL;
    rt->gens[s] = 1;
  }
  rt->nslots = n;
  return 0;
}

/* Recovery over a shared store: only the empty slots of [lo, hi) stay
 * free, and the table never grows (the other slots are other processes'
 * ids).  A slot of a recovered instance outside the range is free again
 * when it ends: its range came with it (the store's promise). */
void slots_confine(mly_runtime *rt, uint32_t lo, uint32_t hi) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < rt->nfree; i++) {
    uint32_t s = rt->free_slots[i];
    if (s >= lo && s < hi) rt->free_slots[n++] = s;
  }
  rt->nfree = n;
  rt->slots_confined = true;
  rt->conf_lo = lo;
  rt->conf_hi = hi;
}

/* A shared store moved this process to another slot range [lo, hi)
 * while running (pg_store.c: its lease ran out and another process took
 * its range): the free list becomes the empty slots of the new range
 * only, lowest first out.  No instance of the old range is live here
 * (they left with the lease). */
int slots_rerange(mly_runtime *rt, uint32_t lo, uint32_t hi) {
  int rc = slots_reserve(rt, hi);
  if (rc < 0) return rc;
  if (rt->free_cap < rt->slot_cap) {
    uint32_t *f = realloc(rt->free_slots, (size_t)rt->slot_cap * sizeof *f);
    if (f == NULL) return MLY_ENOMEM;
    rt_bytes(rt, (ptrdiff_t)(rt->slot_cap - rt->free_cap) *
                     (ptrdiff_t)sizeof(uint32_t));
    rt->free_slots = f;
    rt->free_cap = rt->slot_cap;
  }
  rt->nfree = 0;
  for (uint32_t s = hi; s-- > lo;)
    if (rt->slots[s] == NULL) rt->free_slots[rt->nfree++] = s;
  rt->slots_confined = true;
  rt->conf_lo = lo;
  rt->conf_hi = hi;
  slots_lent_free(rt); /* the old range's: never reused here now */
  return 0;
}

/* Recovery: the slots left empty become free, newest-numbered last. */
int slots_finish(mly_runtime *rt) {
  uint32_t nfree = 0;
  for (uint32_t s = 0; s < rt->nslots; s++) nfree += rt->slots[s] == NULL;
  if (nfree == 0) return 0;
  uint32_t *f = realloc(rt->free_slots, (size_t)rt->slot_cap * sizeof *f);
  if (f == NULL) return MLY_ENOMEM;
  rt_bytes(rt, (ptrdiff_t)(rt->slot_cap - rt->free_cap) *
                   (ptrdiff_t)sizeof(uint32_t));
  rt->free_slots = f;
  rt->free_cap = rt->slot_cap;
  rt->nfree = 0;
  for (uint32_t s = rt->nslots; s-- > 0;)
    if (rt->slots[s] == NULL) f[rt->nfree++] = s;
  return 0;
}

mly_inst *inst_get(const mly_runtime *rt, mly_id id) {
  uint32_t s = (uint32_t)id;
  if (s >= rt->nslots || rt->gens[s] != (uint32_t)(id >> 32)) return NULL;
  return rt->slots[s];
}

/* ---- per-type pools: no malloc header per instance ---- */

#define POOL_CHUNK_BYTES (64 * 1024)
#define CHUNK_HDR 16 /* the chunk link, and instances stay aligned */

static mly_inst *pool_get(mly_type *t) {
  if (t->free_list == NULL) {
    size_t n = (POOL_CHUNK_BYTES - CHUNK_HDR) / t->inst_size;
    if (n == 0) n = 1;
    unsigned char *c = malloc(CHUNK_HDR + n * t->inst_size);
    if (c == NULL) return NULL;
    rt_bytes(t->rt, (ptrdiff_t)(CHUNK_HDR + n * t->inst_size));
    *(void **)c = t->chunks;
    t->chunks = c;
    for (size_t i = n; i-- > 0;) {
      void **slot = (void **)(c + CHUNK_HDR + i * t->inst_size);
      *slot = t->free_list;
      t->free_list = slot;
    }
  }
  void **p = t->free_list;
  t->free_list = *p;
  return (mly_inst *)p;
}

static void pool_put(mly_type *t, mly_inst *m) {
  *(void **)m = t->free_list;
  t->free_list = m;
}

void inst_free_pools(mly_runtime *rt) {
  for (mly_type *t = rt->types; t != NULL; t = t->next) {
    while (t->chunks != NULL) {
      void *c = t->chunks;
      t->chunks = *(void **)c;
      free(c);
    }
    t->free_list = NULL;
  }
}

/* ---- the ready queue ---- */

/* One place at a time (internal.h), asserted where it changes: O(1), so
 * debug builds pay nothing that grows; invariant.c checks the whole. */
static inline void assert_place(const mly_inst *m) {
  (void)m;
  assert(!((m->head.flags & F_QUEUED) && m->heap_idx != NO_HEAP));
  assert(!((m->dflags & D_WAKE) &&
           ((m->head.flags & F_QUEUED) || m->heap_idx != NO_HEAP)));
}

/* Queues link instances by slot number through rnext (see internal.h). */
static void queue_append(mly_inst **head, mly_inst **tail, mly_inst *m) {
  m->rnext = NO_NEXT;
  if (*tail) (*tail)->rnext = (uint32_t)m->id; /* the slot */
  else *head = m;
  *tail = m;
}

static mly_inst *queue_next(const mly_runtime *rt, const mly_inst *m) {
  return m->rnext == NO_NEXT ? NULL : rt->slots[m->rnext];
}

static void ready_push(mly_inst *m) {
  mly_runtime *rt = m->type->rt;
  assert(!(m->head.flags & F_QUEUED) && m->heap_idx == NO_HEAP);
  assert(rt->running != m); /* inst_wake defers it: F_REWAKE */
  queue_append(&rt->ready_head, &rt->ready_tail, m);
  m->head.flags |= F_QUEUED;
  m->dflags &= ~D_WAKE; /* queued: a wake that waited is served */
  if (m->head.lc != MLY_LC_INIT) m->head.lc = MLY_LC_ACTIVE;
  rt_schedule(rt);
}

/* Queue it to run (a durable release): its timer goes, as with a wake. */
void inst_ready(mly_inst *m) {
  heap_remove(m->type->rt, m);
  ready_push(m);
}

static bool unlink_from(mly_runtime *rt, mly_inst **head, mly_inst **tail,
                        mly_inst *m) {
  mly_inst *prev = NULL;
  for (mly_inst *i = *head; i != NULL; prev = i, i = queue_next(rt, i)) {
    if (i != m) continue;
    if (prev) prev->rnext = m->rnext;
    else *head = queue_next(rt, m);
    if (*tail == m) *tail = prev;
    return true;
  }
  return false;
}

/* Take every instance that has all of dflags out of both queues, in one
 * pass (ready_unlink one by one would be quadratic): suspending a
 * million durable instances. */
static void queue_drop(mly_runtime *rt, mly_inst **head, mly_inst **tail,
                       uint32_t dflags) {
  mly_inst *m = *head;
  *head = *tail = NULL;
  while (m != NULL) {
    mly_inst *next = queue_next(rt, m);
    if ((m->dflags & dflags) == dflags) {
      m->head.flags &= (uint8_t)~F_QUEUED;
      m->rnext = NO_NEXT;
    } else {
      queue_append(head, tail, m);
    }
    m = next;
  }
}

void inst_unqueue_flagged(mly_runtime *rt, uint32_t dflags) {
  queue_drop(rt, &rt->ready_head, &rt->ready_tail, dflags);
  queue_drop(rt, &rt->later_head, &rt->later_tail, dflags);
}

/* O(queue length): only killing a queued instance needs it. */
static void ready_unlink(mly_inst *m) {
  mly_runtime *rt = m->type->rt;
  if (!(m->head.flags & F_QUEUED)) return;
  if (!unlink_from(rt, &rt->ready_head, &rt->ready_tail, m))
    unlink_from(rt, &rt->later_head, &rt->later_tail, m);
  m->head.flags &= (uint8_t)~F_QUEUED;
}

void inst_wake(mly_inst *m, uint8_t reason) {
  mly_runtime *rt = m->type->rt;
  if (m->head.flags & F_QUEUED) return;
  if (rt->running == m) { /* only a W_COND test can get here: see run_step */
    m->head.flags |= F_REWAKE;
    return;
  }
  m->head.woke = reason;
  heap_remove(rt, m);
  ready_push(m);
}

void inst_timer_fired(mly_inst *m) {
  m->type->rt->st.timers_fired++;
  inst_wake(m, WOKE_TIMER);
}

/* ---- birth ---- */

/* What mly_spawn_opts adds: checked before anything is made. */
typedef struct spawn_ext {
  mly_value *ctx;
  const char *name;
  size_t len;
} spawn_ext;

/* Gives m its context and name; undone by ext_end. */
static int attach(mly_runtime *rt, mly_inst *m, const spawn_ext *x) {
  inst_ext *e = ext_make(rt, m);
  if (e == NULL) return MLY_ENOMEM;
  if (x->name) {
    int rc = name_hold(rt, x->name, x->len, m->id, &e->name);
    if (rc < 0) {
      ext_end(rt, m, true);
      return rc;
    }
  }
  e->ctx = x->ctx;
  e->touched = x->ctx != NULL;
  return 0;
}

static int spawn(mly_runtime *rt, mly_type *t, mly_inst *parent,
                 const void *arg, size_t len, const spawn_ext *x,
                 mly_id *out) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (t == NULL || t->rt != rt || len > t->def.data_size ||
      (len > 0 && arg == NULL))
    return MLY_EINVAL;
  if (rt->stopping || rt->closing) return MLY_ESHUTDOWN;
  if (parent != NULL && (parent->head.flags & (F_ENDING | F_KILL)))
    return MLY_ESHUTDOWN;
  int rc = durable_check_spawn(rt, t);
  if (rc < 0) return rc;
  mly_inst *m = pool_get(t);
  if (m == NULL) return MLY_ENOMEM;
  memset(m, 0, t->inst_size);
  if ((rc = slot_alloc(rt, m)) < 0) { /* MLY_ENOSPC: a range is full */
    pool_put(t, m);
    return rc;
  }
  if (len > 0) memcpy(m->data, arg, len);
  m->type = t;
  m->heap_idx = NO_HEAP;
  m->head.lc = MLY_LC_INIT;
  if (x && (x->ctx || x->name) && (rc = attach(rt, m, x)) < 0) {
    slot_release(rt, m);
    pool_put(t, m);
    return rc;
  }
  if (parent != NULL) inst_link_child(parent, m);
  rt->st.live++;
  rt->st.spawned++;
  rt_keep_alive(rt);
  if (inst_durable(rt, m)) durable_spawned(rt, m); /* held until recorded */
  inst_wake(m, WOKE_START);
  if (out) *out = m->id;
  return 0;
}

void inst_link_child(mly_inst *parent, mly_inst *m) {
  m->parent = parent;
  m->sib_next = parent->child;
  if (parent->child) parent->child->sib_prev = m;
  parent->child = m;
}

/* Recovery: an instance with a given id, in its slot, not yet running. */
mly_inst *inst_restore(mly_runtime *rt, mly_type *t, mly_id id) {
  uint32_t s = (uint32_t)id;
  if (s >= rt->nslots || rt->slots[s] != NULL) return NULL;
  mly_inst *m = pool_get(t);
  if (m == NULL) return NULL;
  memset(m, 0, t->inst_size);
  m->type = t;
  m->id = id;
  m->heap_idx = NO_HEAP;
  m->head.lc = MLY_LC_READY;
  rt->slots[s] = m;
  rt->gens[s] = (uint32_t)(id >> 32);
  rt->st.live++;
  lent_take(rt, s); /* back here: freed when it ends, as any */
  return m;
}

int mly_spawn(mly_runtime *rt, mly_type *type, const void *arg,
              size_t arg_len, mly_id *out) {
  return spawn(rt, type, NULL, arg, arg_len, NULL, out);
}

int mly_spawn_child(mly_machine *parent, mly_type *type, const void *arg,
                    size_t arg_len, mly_id *out) {
  mly_inst *p = INST(parent);
  return spawn(p->type->rt, type, p, arg, arg_len, NULL, out);
}

/* A durable type's context goes into its first record: it must encode,
 * and fit in one record with the data (journal.h JR_MAX_BODY). */
static int context_fits(mly_runtime *rt, mly_type *t, const mly_value *v) {
  if (v == NULL || rt->dur == NULL || !(t->def.flags & MLY_TYPE_DURABLE))
    return 0;
  /* counted, not encoded: put_state encodes it once */
  return value_fits(v, JR_VALUE_MAX - t->def.data_size);
}

/* The name o asks for, checked and free, into buf. */
static int pick_name(mly_runtime *rt, mly_type *t, const mly_spawn_options *o,
                     char *buf, size_t cap, spawn_ext *x) {
  if (o->name != NULL) {
    x->len = strlen(o->name);
    int rc = name_check(o->name, x->len);
    if (rc == 0) rc = name_free_now(rt, o->name, x->len);
    x->name = o->name;
    return rc;
  }
  if (!o->generate_name) return 0;
  int rc = names_init(rt);
  for (int i = 0; i < 16 && rc == 0; i++) {
    name_generate(rt, t->name, buf, cap);
    x->len = strlen(buf);
    x->name = buf;
    if (name_free_now(rt, buf, x->len) == 0) return 0;
  }
  return rc < 0 ? rc : MLY_EEXIST; /* 36^6 names a second: not by chance */
}

static int spawn_opts(mly_runtime *rt, mly_type *t, mly_inst *parent,
                      const mly_spawn_options *o, mly_id *out) {
  static const mly_spawn_options none = {0};
  if (o == NULL) o = &none;
  char gen[MLY_NAME_MAX + 64];
  spawn_ext x = {o->context, NULL, 0};
  int rc = !rt_on_loop_thread(rt) ? MLY_EPERM
           : t == NULL || t->rt != rt ? MLY_EINVAL
                                      : pick_name(rt, t, o, gen, sizeof gen, &x);
  if (rc == 0 && o->name_out && x.name && x.len + 1 > o->name_out_len)
    rc = MLY_ERANGE;
  if (rc == 0) rc = context_fits(rt, t, o->context);
  if (rc == 0) rc = spawn(rt, t, parent, o->arg, o->arg_len, &x, out);
  if (rc < 0) {
    mly_value_free(o->context); /* taken, also on error */
    return rc;
  }
  if (o->name_out && o->name_out_len > 0) {
    if (x.name) memcpy(o->name_out, x.name, x.len + 1);
    else o->name_out[0] = '\0';
  }
  return 0;
}

int mly_spawn_opts(mly_runtime *rt, mly_type *type,
                   const mly_spawn_options *o, mly_id *out) {
  return spawn_opts(rt, type, NULL, o, out);
}

int mly_spawn_child_opts(mly_machine *parent, mly_type *type,
                         const mly_spawn_options *o, mly_id *out) {
  mly_inst *p = INST(parent);
  return spawn_opts(p->type->rt, type, p, o, out);
}

/* ---- death ---- */

static void inst_finalize(mly_inst *m, bool forced);

static void stop_next_child(mly_inst *m) {
  inst_request_shutdown(m->child); /* newest first */
}

/* A parent learns how its child ended: a CHILD_EXIT event, or, if the
 * parent has exited and is stopping its children, the next step of that. */
static void notify_parent(mly_inst *p, mly_inst *c, bool failed,
                          bool recorded) {
  mly_runtime *rt = p->type->rt;
  if (p->head.flags & F_KILL) return; /* it is being ended by force */
  if (p->head.flags & F_ENDING) {
    if (p->child != NULL) stop_next_child(p);
    else inst_finalize(p, false);
    return;
  }
  if (recorded) return; /* durable_end delivers it once the END is durable */
  mly_event *e = ev_new(rt);
  if (e == NULL) return; /* out of memory: the notice is lost, counted */
  e->id = MLY_EV_CHILD_EXIT;
  e->from = c->id;
  e->status = c->status;
  e->aux = failed ? MLY_LC_FAILED : MLY_LC_TERMINATED;
  ev_deliver(rt, p, e);
}

static void inst_finalize(mly_inst *m, bool forced) {
  mly_runtime *rt = m->type->rt;
  mly_type *t = m->type;
  bool failed = forced || m->status != 0;
  m->head.lc = failed ? MLY_LC_FAILED : MLY_LC_TERMINATED;
  /* a durable instance that leaves memory without an end (suspended, or
   * the runtime closing) continues on the next open */
  bool suspended = inst_durable(rt, m) &&
                   ((m->dflags & D_SILENT) || rt->closing);
  bool recorded = inst_durable(rt, m) && !suspended &&
                  durable_end(rt, m, failed);
  heap_remove(rt, m);
  ready_unlink(m);
  inbox_clear(rt, m);
  sig_forget(rt, m->id);
  /* its processes are left running for it to adopt, as after a crash */
  proc_owner_ended(rt, m->id, suspended);
  if (t->def.fini) t->def.fini(&m->head, m->data);
  if (m->dflags & D_EXT) ext_end(rt, m, suspended); /* after fini: it may
                                                      look at its context */
  mly_inst *p = m->parent;
  if (p != NULL) {
    if (m->sib_prev) m->sib_prev->sib_next = m->sib_next;
    else p->child = m->sib_next;
    if (m->sib_next) m->sib_next->sib_prev = m->sib_prev;
  }
  slot_release(rt, m);
  rt->st.live--;
  if (p != NULL) notify_parent(p, m, failed, recorded);
  pool_put(t, m);
  rt_maybe_stop(rt);
}

void inst_exit(mly_inst *m) {
  mly_runtime *rt = m->type->rt;
  heap_remove(rt, m);
  m->head.wait = W_NONE;
  if (m->child == NULL) {
    inst_finalize(m, false);
    return;
  }
  m->head.flags |= F_ENDING;
  m->head.wait = W_CHILDREN;
  m->head.lc = MLY_LC_READY;
  inbox_clear(rt, m);
  stop_next_child(m);
}

static bool is_running_or_above(const mly_runtime *rt, const mly_inst *m) {
  for (const mly_inst *i = rt->running; i != NULL; i = i->parent)
    if (i == m) return true;
  return false;
}

static void kill_now(mly_inst *m, int status) {
  m->head.flags |= F_KILL;
  while (m->child != NULL) kill_now(m->child, status);
  m->status = status;
  inst_finalize(m, true);
}

void inst_kill(mly_inst *m) {
  mly_runtime *rt = m->type->rt;
  if (m->head.flags & F_KILL) return;
  if (is_running_or_above(rt, m)) {
    /* Never free the instance whose step is on the stack: end it after. */
    if (rt->nkills == rt->kills_cap) {
      uint32_t cap = rt->kills_cap ? rt->kills_cap * 2 : 8;
      mly_id *k = realloc(rt->kills, cap * sizeof *k);
      if (k == NULL) return;
      rt->kills = k;
      rt->kills_cap = cap;
    }
    rt->kills[rt->nkills++] = m->id;
    return;
  }
  kill_now(m, MLY_ECANCELED);
}

/* As inst_kill, with the status it ends with (when not deferred). */
void inst_end_now(mly_inst *m, int status) {
  mly_runtime *rt = m->type->rt;
  if (m->head.flags & F_KILL) return;
  if (is_running_or_above(rt, m)) inst_kill(m);
  else kill_now(m, status);
}

static void run_deferred_kills(mly_runtime *rt) {
  while (rt->nkills > 0) {
    mly_inst *m = inst_get(rt, rt->kills[--rt->nkills]);
    if (m != NULL) kill_now(m, MLY_ECANCELED);
  }
}

static void queue_forget(mly_runtime *rt, mly_inst *m) {
  while (m != NULL) {
    mly_inst *next = queue_next(rt, m);
    m->head.flags &= (uint8_t)~F_QUEUED;
    m = next;
  }
}

void inst_kill_all(mly_runtime *rt) {
  queue_forget(rt, rt->ready_head);
  queue_forget(rt, rt->later_head);
  rt->ready_head = rt->ready_tail = rt->later_head = rt->later_tail = NULL;
  for (uint32_t s = rt->nslots; s-- > 0;) { /* newest slots first */
    mly_inst *m = rt->slots[s];
    if (m != NULL && m->parent == NULL) kill_now(m, MLY_ECANCELED);
  }
}

/* A request from host code or a step: behind the events sent to m
 * before it, journaled ones included (durable_order_shutdown). */
void inst_ask_shutdown(mly_inst *m) {
  mly_runtime *rt = m->type->rt;
  if ((m->head.flags & F_SHUT_REQ) || !durable_order_shutdown(rt, m))
    inst_request_shutdown(m);
}

void inst_request_shutdown(mly_inst *m) {
  if (m->head.flags & F_SHUT_REQ) return; /* repeats are harmless */
  m->head.flags |= F_SHUT_REQ | F_SHUT_WAKE;
  if (m->head.flags & F_ENDING) return;   /* already on its way out */
  if (m->type->rt->running == m || (m->head.flags & F_QUEUED)) return;
  if (m->head.wait != W_NONE) inst_wake(m, WOKE_SHUTDOWN);
}

/* ---- steps ---- */

static bool has_shutdown_routine(const mly_inst *m) {
  return m->type->def.shutdown != NULL && !(m->head.flags & F_IN_SHUTDOWN);
}

/* Every wait of a durable type is named (D1).  An anonymous one is
 * refused as soon as it is reached, whether or not it would suspend, so
 * a body that passes a test where the wait completes at once cannot go
 * on in production where it suspends.  The type's flag decides, not
 * whether a journal is open: the same code behaves the same without
 * one.  Tested by the setups and done-tests below (the body macros set
 * pc before the setup runs). */
static bool anon_refused(const mly_inst *m) {
  return m->head.pc >= MLY__ANON_BASE &&
         (m->type->def.flags & MLY_TYPE_DURABLE);
}

/* A request's wait was abandoned (a shutdown routine took over): its
 * reply, if it came already, can never be taken: it is late. */
static void reply_forget(mly_runtime *rt, mly_inst *m) {
  mly_event *e = inbox_take(m, 0, 0, true, m->wait_arg);
  if (e == NULL) return;
  rt->st.late_replies++;
  ev_free(rt, e);
}

/* A durable step that could not be committed (durable_step_end: a
 * context that does not encode, a record past the bound) ends the
 * instance with that error: nothing of the step was kept. */
static bool step_refused(mly_inst *m, int rc) {
  if (rc == 0) return false;
  ready_unlink(m);
  kill_now(m, rc);
  return true;
}

static void run_step(mly_runtime *rt, mly_inst *m) {
  mly_type *t = m->type;
  assert_place(m);
  m->head.flags &= (uint8_t)~(F_QUEUED | F_REWAKE);
  m->dflags &= ~D_WAKE; /* this step serves any wake that waited */
  if (m->head.wait == W_TURN) m->head.woke = WOKE_TURN; /* its turn came */
  if ((m->head.flags & F_SHUT_REQ) && has_shutdown_routine(m)) {
    /* the seed's swap to shutdown_state_machine */
    m->head.flags |= F_IN_SHUTDOWN;
    m->head.flags &= (uint8_t)~F_SHUT_WAKE;
    m->dflags &= ~D_SHUT_HIDE;
    if (m->head.wait == W_REPLY) reply_forget(rt, m);
    m->head.pc = 0;
    m->head.wait = W_NONE;
    heap_remove(rt, m);
  }
  m->head.lc = MLY_LC_ACTIVE;
  m->step++;
  rt->st.steps++;
  rt->running = m;
  mly_fn fn = (m->head.flags & F_IN_SHUTDOWN) && t->def.shutdown
                  ? t->def.shutdown : t->def.run;
  int r = fn(&m->head, m->data);
  rt->running = NULL;
  ev_free(rt, rt->cur);
  rt->cur = NULL;
  if (m->head.flags & F_KILL) { /* run_deferred_kills ends it */
    if (rt->dur) durable_step_abandoned(rt);
    return;
  }
  bool durable = inst_durable(rt, m);
  m->dflags &= ~D_RECOVERED;
  if (r == MLY_YIELDED && anon_refused(m)) {
    /* an anonymous wait cannot be resumed after a restart (D1): the
     * instance fails now, not parked at the next open, whether or not
     * the wait would have suspended (its setup did nothing, its test
     * said "not yet": see wait_setup) */
    ready_unlink(m);
    heap_remove(rt, m);
    m->status = MLY_EINVAL;
    r = MLY_EXITED;
  }
  if (r != MLY_YIELDED) {
    if (r != MLY_EXITED) m->status = MLY_EINVAL; /* a body that lied */
    if (durable && step_refused(m, durable_step_end(rt, m, true))) return;
    inst_exit(m);
    return;
  }
  if (m->head.wait == W_NONE) { /* returned without a wait: next turn */
    mly__yield(&m->head);
    if (durable) step_refused(m, durable_step_end(rt, m, false));
    return;
  }
  if (durable && step_refused(m, durable_step_end(rt, m, false))) return;
  if (!(m->head.flags & F_QUEUED)) {
    m->head.lc = MLY_LC_READY;
    if (m->head.flags & F_SHUT_WAKE) {
      inst_wake(m, WOKE_SHUTDOWN);
    } else if ((m->head.flags & F_REWAKE) && m->head.wait == W_COND) {
      /* an event came while its condition was being tested: test again */
      inst_wake(m, WOKE_EVENT);
    }
  }
  m->head.flags &= (uint8_t)~F_REWAKE;
}

void inst_run_batch(mly_runtime *rt, uint32_t budget) {
  for (uint32_t n = 0; n < budget && rt->ready_head != NULL; n++) {
    mly_inst *m = rt->ready_head;
    rt->ready_head = queue_next(rt, m);
    if (rt->ready_head == NULL) rt->ready_tail = NULL;
    if (m->dflags & D_HELD) { /* its last step is not durable yet */
      m->head.flags &= (uint8_t)~F_QUEUED;
      m->dflags |= D_WAKE;  /* durable_release queues it again */
      continue;
    }
    run_step(rt, m);
    if (rt->nkills) run_deferred_kills(rt);
  }
  /* Machines that yielded for a turn run on the next one. */
  if (rt->later_head != NULL) {
    if (rt->ready_tail) rt->ready_tail->rnext = (uint32_t)rt->later_head->id;
    else rt->ready_head = rt->later_head;
    rt->ready_tail = rt->later_tail;
    rt->later_head = rt->later_tail = NULL;
  }
}

/* ---- waits: setups and done-tests called by the body macros ---- */

/* Every setup starts here; false: the wait is refused (anon_refused),
 * and the setup must do nothing more. */
static bool wait_setup(mly_inst *m, uint8_t kind) {
  mly_runtime *rt = m->type->rt;
  ev_free(rt, rt->cur); /* the previous event is no longer valid */
  rt->cur = NULL;
  m->head.woke = WOKE_NONE;
  m->dflags &= ~D_SHUT_HIDE; /* a new wait: see shutdown_ends */
  m->status = 0;
  if (anon_refused(m)) {
    m->head.wait = W_NONE;
    return false;
  }
  m->head.wait = kind;
  return true;
}

static void wait_error(mly_inst *m, int err) {
  m->head.woke = WOKE_ERROR;
  m->status = err;
}


static void arm(mly_inst *m, int64_t ms) {
  mly_runtime *rt = m->type->rt;
  if (ms < 0) return;
  if (ms > MAX_WAIT_MS) ms = MAX_WAIT_MS;
  /* +1 us: now is rounded down, and a sleep must never end early */
  uint64_t due = rt_now_us() + 1 + (uint64_t)ms * 1000u;
  if (heap_push(rt, m, due) < 0) {
    wait_error(m, MLY_ENOMEM);
    return;
  }
  if (rt->timer_due == 0 || due < rt->timer_due) rt_arm_timer(rt);
}

static int wait_over(mly_inst *m) {
  heap_remove(m->type->rt, m);
  /* a yield that ends in the step that set it up (a shutdown request
   * ended it early) is still queued for its turn: leave that place too */
  if (m->head.wait == W_TURN && (m->head.flags & F_QUEUED)) ready_unlink(m);
  m->head.wait = W_NONE;
  return 1;
}

/* A shutdown request not yet seen ends the first wait tested after it,
 * before anything else could: the wait takes nothing (an event stays in
 * the inbox, a fired timer is forgotten), so the body's natural
 * `if (mly_shutdown_requested(m)) break;` never drops what it was given.
 * One exception, since a reply can only be taken by its own request: a
 * request whose reply is already there returns it, and the shutdown ends
 * the next wait instead; until that wait begins, mly_shutdown_requested
 * says false (D_SHUT_HIDE), so the same natural test keeps the reply.
 * With a shutdown routine the wait is not ended: the runtime resumes the
 * instance in that routine instead (run_step). */
static bool shutdown_ends(mly_inst *m) {
  if (!(m->head.flags & F_SHUT_WAKE) || has_shutdown_routine(m)) return false;
  m->head.flags &= (uint8_t)~F_SHUT_WAKE;
  m->head.woke = WOKE_SHUTDOWN;
  wait_over(m);
  return true;
}

/* The wait is not satisfied: go on waiting. */
static int not_yet(mly_inst *m) {
  m->head.woke = WOKE_NONE;
  return 0;
}

void mly__yield(mly_machine *mm) {
  mly_inst *m = INST(mm);
  mly_runtime *rt = m->type->rt;
  if (!wait_setup(m, W_TURN)) return;
  heap_remove(rt, m);
  queue_append(&rt->later_head, &rt->later_tail, m);
  m->head.flags |= F_QUEUED;
  rt_schedule(rt);
}

void mly__sleep(mly_machine *mm, uint64_t ms) {
  mly_inst *m = INST(mm);
  if (!wait_setup(m, W_SLEEP)) return;
  arm(m, ms > MAX_WAIT_MS ? MAX_WAIT_MS : (int64_t)ms);
}

void mly__wait_cond(mly_machine *mm) { (void)wait_setup(INST(mm), W_COND); }

int mly__woke_done(mly_machine *mm) {
  mly_inst *m = INST(mm);
  uint8_t want = m->head.wait == W_TURN ? WOKE_TURN : WOKE_TIMER;
  if (anon_refused(m)) return 0; /* run_step ends it */
  if (m->head.woke == WOKE_ERROR) return wait_over(m);
  if (shutdown_ends(m)) return 1;
  if (m->head.woke == want) return wait_over(m);
  return not_yet(m);
}

int mly__cond_done(mly_machine *mm, int cond) {
  mly_inst *m = INST(mm);
  if (anon_refused(m)) return 0;
  if (shutdown_ends(m)) return 1;
  return cond ? wait_over(m) : not_yet(m);
}

void mly__await(mly_machine *mm, uint32_t id, mly_id from, int64_t ms) {
  mly_inst *m = INST(mm);
  if (!wait_setup(m, W_EVENT)) return;
  m->wait_id = id;
  m->wait_arg = from;
  arm(m, ms);
}

void mly__await_name(mly_machine *mm, const char *name, int64_t ms) {
  mly_inst *m = INST(mm);
  uint32_t id = 0;
  int rc = intern_get(&m->type->rt->intern, name, &id);
  mly__await(mm, id, 0, rc < 0 ? -1 : ms);
  if (rc < 0 && !anon_refused(m)) wait_error(m, rc);
}

int mly__await_done(mly_machine *mm) {
  mly_inst *m = INST(mm);
  mly_runtime *rt = m->type->rt;
  if (anon_refused(m)) return 0;
  if (m->head.woke == WOKE_ERROR) return wait_over(m);
  bool reply = m->head.wait == W_REPLY;
  mly_event *e = NULL;
  if (reply) { /* only this wait can take it: before the shutdown */
    e = inbox_take(m, 0, 0, true, m->wait_arg);
    if (e != NULL && (m->head.flags & F_SHUT_WAKE) &&
        !has_shutdown_routine(m))
      m->dflags |= D_SHUT_HIDE; /* see shutdown_ends */
  }
  if (e == NULL && shutdown_ends(m)) return 1;
  if (!reply) e = inbox_take(m, m->wait_id, m->wait_arg, false, 0);
  if (e != NULL) { /* an event wins over a timer that fired meanwhile */
    rt->cur = e;
    m->head.woke = WOKE_EVENT;
    return wait_over(m);
  }
  if (m->head.woke == WOKE_TIMER) return wait_over(m);
  return not_yet(m);
}

static bool inbox_has_exit_of(const mly_inst *m, mly_id child) {
  if (m->inbox == NULL) return false;
  const mly_event *e = m->inbox;
  do {
    e = e->next;
    if (e->id == MLY_EV_CHILD_EXIT && e->from == child) return true;
  } while (e != m->inbox);
  return false;
}

void mly__await_child(mly_machine *mm, mly_id child) {
  mly_inst *m = INST(mm);
  mly__await(mm, MLY_EV_CHILD_EXIT, child, -1);
  if (anon_refused(m)) return;
  mly_inst *c = inst_get(m->type->rt, child);
  if (child == 0 || ((c == NULL || c->parent != m) &&
                     !inbox_has_exit_of(m, child)))
    wait_error(m, MLY_ESRCH);
}

int mly__child_done(mly_machine *mm, int *status) {
  mly_inst *m = INST(mm);
  if (!mly__await_done(mm)) return 0;
  const mly_event *e = m->type->rt->cur;
  if (status == NULL) return 1; /* not wanted */
  if (e != NULL) *status = (int)e->status;
  else if (m->head.woke == WOKE_ERROR) *status = m->status;
  return 1;
}

void mly__request(mly_machine *mm, mly_id to, uint32_t id,
                  mly_value *payload, int64_t ms) {
  mly_inst *m = INST(mm);
  mly_runtime *rt = m->type->rt;
  if (!wait_setup(m, W_REPLY)) {
    mly_value_free(payload); /* nothing is sent */
    return;
  }
  m->wait_arg = ++rt->corr_next;
  m->wait_peer = to; /* journaled: a recovered wait knows who answers */
  int rc = id == MLY_EV_ANY ? MLY_EINVAL : 0;
  if (rc == 0)
    rc = ev_send(rt, m->id, to, id, MLY_EVF_REQUEST, m->wait_arg, payload);
  else
    mly_value_free(payload);
  if (rc < 0) wait_error(m, rc);
  else arm(m, ms);
}

int mly__finish(mly_machine *mm, int status) {
  INST(mm)->status = status;
  return MLY_EXITED;
}

int mly__bad_point(mly_machine *mm) {
  /* Resumed at a point this body does not have: end it, failed. */
  return mly__finish(mm, MLY_ENOENT);
}

/* ---- what a body may ask about itself ---- */

bool mly_timed_out(const mly_machine *m) { return m->woke == WOKE_TIMER; }

int mly_wait_error(const mly_machine *m) {
  return m->woke == WOKE_ERROR ? INST(m)->status : 0;
}

bool mly_recovered(const mly_machine *m) {
  return (INST(m)->dflags & D_RECOVERED) != 0;
}

bool mly_shutdown_requested(const mly_machine *m) {
  return (m->flags & F_SHUT_REQ) && !(INST(m)->dflags & D_SHUT_HIDE);
}

mly_runtime *mly_machine_runtime(const mly_machine *m) {
  return INST(m)->type->rt;
}
mly_id mly_self(const mly_machine *m) { return INST(m)->id; }
mly_id mly_parent(const mly_machine *m) {
  const mly_inst *p = INST(m)->parent;
  return p ? p->id : 0;
}
void *mly_machine_data(mly_machine *m) { return INST(m)->data; }

void *mly_instance_data(mly_runtime *rt, mly_id id) {
  if (!rt_on_loop_thread(rt)) return NULL;
  mly_inst *m = inst_get(rt, id);
  return m ? m->data : NULL;
}
uint64_t mly_step_number(const mly_machine *m) { return INST(m)->step; }

/* ---- by id, from host code ---- */

int mly_shutdown(mly_runtime *rt, mly_id id) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  mly_inst *m = inst_get(rt, id);
  if (m == NULL) return MLY_ESRCH;
  inst_ask_shutdown(m);
  return 0;
}

int mly_kill(mly_runtime *rt, mly_id id) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  mly_inst *m = inst_get(rt, id);
  if (m == NULL) return MLY_ESRCH;
  inst_kill(m);
  return 0;
}

int mly_wake(mly_runtime *rt, mly_id id) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  mly_inst *m = inst_get(rt, id);
  if (m == NULL) return MLY_ESRCH;
  if (m->head.wait == W_COND && rt->running != m) inst_wake(m, WOKE_EVENT);
  return 0;
}
