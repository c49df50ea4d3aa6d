/*
 * store.h - the seam under durable machines (lib/ only; DESIGN.md D11).
 *
 * The durable layer (durable.c, recover.c) reaches storage only through
 * this table; it never names the journal or PostgreSQL.  A store is an
 * object whose first member is `mly_store`; its operations are:
 *
 *   - A turn buffer.  During a loop turn the durable layer appends
 *     logical records to `buf`: the msgpack bodies journal.h defines
 *     (CREATE, STEP, EVENT, END, DROP, each framed by jb_begin/jb_end
 *     with the seq `next_seq` gives).  They are the store's input format
 *     whatever the store keeps: the journal writes them as they are; a
 *     table store (PostgreSQL) folds each into rows.
 *   - Group commit.  `on_commit` queues a completion (jdone) behind what
 *     was appended; `flush` (end of a turn) makes everything appended
 *     durable as one batch, all or nothing, and then reports each queued
 *     completion, in order, through hooks.done with the batch's result
 *     (0, or a negative MLY_E* code, after which the store is failed).
 *     Completions are reported on the loop thread, never from inside
 *     flush.  A step's machine resumes only from its completion.
 *   - Recovery.  `recover` hands back the live set as records through a
 *     callback (jreplay.c's rp_record folds them the same way for every
 *     store).  A store that keeps rows, not a log, hands them back as a
 *     snapshot: SNAP, INST..., EVENT..., TOMB..., SNAPEND.
 *   - Compaction, where a store has it (the journal; NULL otherwise):
 *     `compact` replaces what the store holds with the snapshot the
 *     durable layer wrote from memory.
 *
 * A shared store (several processes over one database) also owns
 * instances under a lease with a fencing epoch.  It tells the durable
 * layer, through hooks, about ownership that changes while running:
 *   - hooks.adopt: this process claimed more instances (another's lease
 *     ran out): their records, as a snapshot fragment (INST and EVENT
 *     records), to restore and run; overdue timers fire at once.
 *   - hooks.evict: this process lost instances (its lease ran out, a
 *     fenced commit): they leave memory with no END record, their steps
 *     not committed are dropped and counted (mly_journal_stats).
 *   - hooks.deliver: EVENT records another process committed for
 *     instances this process owns, in commit order per sender.
 * Both hand records framed as in `buf` (JR_HDR, then the body), valid
 * for the call only; adopt's are SNAP, INST..., EVENT..., SNAPEND.  A
 * negative return (but MLY_ESHUTDOWN: the runtime stops) fails the store.
 * The journal never calls these three.  Loop thread only, all of it.
 */
#ifndef MLY_STORE_STORE_H
#define MLY_STORE_STORE_H

#include "../journal.h"

#include <uv.h>

typedef struct mly_store mly_store;

/* What a store tells the layer above it: set by the durable layer when it
 * opens the store; `arg` is given back to each. */
typedef struct store_hooks {
  void *arg;
  /* A completion, after its batch: rc 0 durable, < 0 not (the store is
   * failed); wrote: how many bytes of the batch reached the medium (a
   * post whose record ends at or below it may be read back: its answer is
   * MLY_EUNKNOWN, see journal.c). */
  void (*done)(void *arg, const jdone *d, int rc, size_t wrote);
  /* The store released its last handle: the runtime may finish closing. */
  void (*closed)(void *arg);
  /* Shared stores only (may be NULL for the journal's user). */
  int (*adopt)(void *arg, const unsigned char *records, size_t len);
  void (*evict)(void *arg, const mly_id *ids, size_t n);
  int (*deliver)(void *arg, const unsigned char *records, size_t len);
  /* Added with the journal's move onto the seam (every store calls them):
   * `committed`: a batch became durable and its completions were all
   * reported (the durable layer may compact or resume paused steps).
   * `failed`: the store stopped for good (fail-stop, D3) with rc; msg
   * says what failed, for the host.  Completions still queued were
   * reported with rc before it. */
  void (*committed)(void *arg);
  void (*failed)(void *arg, int rc, const char *msg);
  /* Added for a shared store that rejoins after its lease ran out (may
   * be NULL): new instances are made in slots [lo, hi) from now on (the
   * store's slot_lo, slot_hi are set to them already); 0 or MLY_ENOMEM. */
  int (*rerange)(void *arg, uint32_t lo, uint32_t hi);
  /* Added for names across processes (shared stores only; may be NULL):
   * `name_seen`: how a name stands in the store (live: held by
   * instance id, maybe of another process; else its tombstone), for the
   * runtime's table of names (names.c name_learn).
   * `rerun`: a committed batch left out the steps of ids[0..nskipped)
   * (each spawned a name another process held, learned through
   * name_seen first) with the children those steps made; ids[nskipped..n)
   * are their other descendants.  All n leave memory silently now (no
   * END record; a child that never committed ends with MLY_EEXIST); the
   * store then hands back, through adopt, those that have committed rows
   * (their state and events as the batch left them), before the batch's
   * completions, so that the left-out steps run again.  Until
   * `committed`, a completion delivering an event from ids[0..nskipped)
   * is dropped (their steps did not happen), and one to any of ids is
   * dropped too (its row came back with the adoption). */
  void (*name_seen)(void *arg, const char *name, size_t len, mly_id id,
                    bool live, int32_t status, int64_t ended_ms);
  void (*rerun)(void *arg, const mly_id *ids, size_t n, size_t nskipped);
  /* Added with the task pool (store_tasks; may be NULL): `pooled`: these
   * instances' steps that put them in the pool committed: they leave
   * memory silently (no END, nothing counted) and their slots stay lent
   * (not reused: the instances live on elsewhere).  `unlend`: those
   * instances ended (wherever they ran): their slots are free again.
   * `wake`: a step's slot that tasks->ask asked for was granted. */
  void (*pooled)(void *arg, const mly_id *ids, size_t n);
  void (*unlend)(void *arg, const mly_id *ids, size_t n);
  void (*wake)(void *arg, mly_id id);
} store_hooks;

/* A shared store's task pool (taskpool.h says what each does; the first
 * argument is the store): NULL for the journal. */
typedef struct store_tasks {
  int (*put)(mly_store *s, mly_id id, const char *queue, int32_t priority,
             int64_t eta_ms, const char *key);
  int (*drop)(mly_store *s, mly_id id);
  bool (*granted)(mly_store *s, mly_id id);
  int (*serve)(mly_store *s, const char *queue, uint32_t max_concurrent,
               double rate, uint32_t bucket, uint32_t key_max, bool claim);
  int (*ask)(mly_store *s, const char *queue, const char *key, mly_id id);
} store_tasks;

typedef struct store_ops {
  const char *name; /* "journal", "postgresql": for messages */
  /* The live set, as records, to cb (a non-zero return stops the walk
   * and is returned); err says what is wrong (file and offset, or the
   * server's message).  Called once, before anything is appended. */
  int (*recover)(mly_store *s, int (*cb)(const jrec *, void *), void *arg,
                 char *err, size_t errlen);
  jbuf *(*buf)(mly_store *s);
  uint64_t (*next_seq)(mly_store *s);
  void (*seq_back)(mly_store *s); /* the last record was taken back */
  int (*on_commit)(mly_store *s, const jdone *d);
  void (*flush)(mly_store *s);
  int (*failed)(const mly_store *s);  /* 0, or why it stopped */
  bool (*idle)(const mly_store *s);   /* nothing appended, nothing in flight */
  int (*compact)(mly_store *s, const jbuf *snapshot); /* may be NULL */
  mly_journal_stats *(*stats)(mly_store *s);
  void (*close)(mly_store *s); /* hooks.closed once its handles are gone */
  /* Added with the journal's move onto the seam: */
  /* The records recover handed back (and what rp_record kept pointing
   * into) may go now: the durable layer rebuilt memory from them.  Until
   * this call they stay valid, also across appends.  May be NULL. */
  void (*recover_end)(mly_store *s);
  /* The journal's batch and fsync histograms (metrics.c); NULL for a
   * store that keeps none. */
  const journal_figures *(*figures)(const mly_store *s);
  /* Added with the task pool: NULL, or the store's pool (shared). */
  const store_tasks *tasks;
  /* Added with bounded transactions: everything appended so far may
   * commit without what is appended after it (no step is half-appended).
   * A store that commits a turn in several parts cuts only at such
   * points.  May be NULL (the journal commits a turn whole). */
  void (*cut)(mly_store *s);
} store_ops;

struct mly_store {
  const store_ops *ops;
  store_hooks hooks;
  uv_loop_t *loop;
  /* Added for shared stores: instance ids must be unique across
   * processes, so this process makes new instances only in slots
   * [slot_lo, slot_hi) (its range); recovered ones keep their slots.
   * 0, 0: anywhere (the journal). */
  uint32_t slot_lo, slot_hi;
  /* Set by the durable layer at open: how long a tombstone keeps its
   * name (ms; < 0: forever), for a shared store to enforce. */
  int64_t name_retention_ms;
};

static inline jbuf *store_buf(mly_store *s) { return s->ops->buf(s); }
static inline uint64_t store_next_seq(mly_store *s) { return s->ops->next_seq(s); }
static inline void store_seq_back(mly_store *s) { s->ops->seq_back(s); }
static inline int store_on_commit(mly_store *s, const jdone *d) {
  return s->ops->on_commit(s, d);
}
static inline void store_flush(mly_store *s) { s->ops->flush(s); }
static inline int store_failed(const mly_store *s) { return s->ops->failed(s); }
static inline bool store_idle(const mly_store *s) { return s->ops->idle(s); }
static inline mly_journal_stats *store_stats(mly_store *s) {
  return s->ops->stats(s);
}
static inline int store_recover(mly_store *s, int (*cb)(const jrec *, void *),
                                void *arg, char *err, size_t errlen) {
  return s->ops->recover(s, cb, arg, err, errlen);
}
static inline void store_recover_end(mly_store *s) {
  if (s->ops->recover_end) s->ops->recover_end(s);
}
/* MLY_ENOSYS: the store has no compaction (mealy.h has no ENOTSUP). */
static inline int store_compact(mly_store *s, const jbuf *snapshot) {
  return s->ops->compact ? s->ops->compact(s, snapshot) : MLY_ENOSYS;
}
static inline const journal_figures *store_figures(const mly_store *s) {
  return s->ops->figures ? s->ops->figures(s) : NULL;
}
static inline void store_close(mly_store *s) { s->ops->close(s); }
static inline void store_cut(mly_store *s) {
  if (s->ops->cut) s->ops->cut(s);
}

#endif /* MLY_STORE_STORE_H */
