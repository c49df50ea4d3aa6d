/*
 * durable.h - what durable.c and recover.c share (lib/ only).
 */
#ifndef MLY_DURABLE_H
#define MLY_DURABLE_H

#include "internal.h"
#include "jreplay.h"
#include "store/store.h"

typedef struct dur_out {
  mly_id to;
  mly_event *ev;
} dur_out;

typedef struct parked {
  mly_id id, parent;
  char *type, *point, *reason;
  uint32_t version;
  unsigned char *state; /* its S, byte for byte, kept for compaction */
  size_t len;
} parked;

typedef struct rawev {
  unsigned char *p; /* an E for a parked instance */
  size_t len;
} rawev;

#define VEC(T, name) \
  T *name;           \
  uint32_t n##name, cap##name

struct dur_state {
  mly_store *s;           /* where steps go: only through store.h */
  mly_journal_stats *st;  /* the store's figures (store_stats) */
  uint64_t next_eid;
  VEC(uint64_t, took);
  VEC(dur_out, out);
  VEC(mly_id, spawned);
  VEC(uint64_t, drops);
  parked *parked;
  size_t nparked;
  rawev *pev;
  size_t npev;
  uint64_t live;        /* durable instances in memory */
  uint64_t state_bytes; /* running average size of a state record,
                           its context not counted */
  uint64_t ctx_bytes;   /* committed contexts of live and parked ones */
  uint64_t compact_min_bytes, compact_dead_pct; /* mly_journal_options */
  bool compact_wanted;
  mly_journal_stats open_st; /* recovered, parked */
  void (*on_error)(mly_runtime *rt, int err, const char *msg, void *arg);
  void *arg;
  /* store_hooks.rerun: ids that left to run again, until the batch's
   * completions are done (the first nrerun_skip did not step) */
  mly_id *rerun;
  size_t nrerun, nrerun_skip;
};

/* Append one element to a VEC, doubling it. */
#define PUSH(d, name, val)                                                 \
  ((d)->n##name < (d)->cap##name ||                                        \
           dur_grow((void **)&(d)->name, &(d)->cap##name, sizeof *(d)->name)   \
       ? ((d)->name[(d)->n##name++] = (val), 0)                            \
       : MLY_ENOMEM)


bool dur_grow(void **v, uint32_t *cap, size_t size);
/* Whether id is one of the instances parked here (recover.c). */
bool durable_parked(const dur_state *d, mly_id id);
int64_t wall_ms(void);
void durable_state_free(mly_runtime *rt, dur_state *d);
void parked_free(parked *p);
enum { PS_FULL = 1, PS_EXIT = 2 };
int64_t put_state(mly_runtime *rt, jbuf *b, const mly_inst *m, int how);
/* Opens the durable layer of rt on store s, which it takes in every case
 * (closed on failure): sets its hooks, recovers the live set through it
 * (store_recover, rp_record) and brings every instance back.  opt gives
 * the policies that are the durable layer's (compaction thresholds, name
 * retention, on_error); the store took what is its own.  err (may be
 * NULL) says what is wrong.  mly_journal_open is this over the journal
 * store; a store of another kind is opened the same way. */
int durable_open(mly_runtime *rt, mly_store *s, const mly_journal_options *opt,
                 char *err, size_t errlen);
/* What must hold before a store is made for rt: 0, or the error with
 * err filled in. */
int durable_open_check(mly_runtime *rt, const mly_journal_options *opt,
                       char *err, size_t errlen);
int durable_compact_now(mly_runtime *rt);
/* store_hooks.adopt: records (framed SNAP, INST..., EVENT..., SNAPEND)
 * another process's instances this one claimed while running, restored
 * as at open.  MLY_ESHUTDOWN while stopping; else errors as recovery's. */
int durable_adopt(mly_runtime *rt, const unsigned char *p, size_t len,
                  char *err, size_t errlen);
/* store_hooks.deliver: framed EVENT records for instances here, into
 * their inboxes in order. */
int durable_deliver_records(mly_runtime *rt, const unsigned char *p,
                            size_t len, char *err, size_t errlen);
/* s reports to rt's durable layer, and holds rt open until it closed. */
void durable_set_hooks(mly_runtime *rt, mly_store *s);
void put_event(mly_runtime *rt, jbuf *b, mly_id to, const mly_event *e);

#endif
