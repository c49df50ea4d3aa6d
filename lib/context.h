/*
 * context.h - what an instance may carry beside its fixed data: a
 * context (one mly_value) and a unique name (lib/ only).
 *
 * Few instances carry either, so neither lives in struct mly_inst (its
 * size is the per-instance cost of every machine): an instance that has
 * one is marked D_EXT and its `inst_ext` is at its slot in a per-runtime
 * array beside the slot table (rt->exts: one pointer a slot, allocated
 * with the first ext), found in O(1) without hashing.  An instance
 * without D_EXT costs nothing more and its records are what they were
 * before contexts existed.
 *
 * For a durable instance the ext also remembers what was last committed
 * (the length and a 64-bit hash of the context's encoding), so a step
 * that leaves the context as it was writes no copy of it (context.c).
 */
#ifndef MLY_CONTEXT_H
#define MLY_CONTEXT_H

#include "durable.h"

#include "hashtab.h"

typedef struct name_ent name_ent;

struct inst_ext {
  mly_id id;
  mly_value *ctx;      /* NULL: none                                    */
  uint64_t hash;       /* of the committed encoding (durable)           */
  size_t len;          /* its length; 0: no context committed           */
  bool touched;        /* handed out or replaced since the last commit  */
  bool name_written;   /* the name is in a record already               */
  name_ent *name;      /* NULL: unnamed                                 */
};

/* A name: held by a live (or parked) instance, or a tombstone. */
struct name_ent {
  mly_id id;
  bool live;
  bool remote;         /* live in another process (a shared store): no
                          instance here holds it (name_learn)          */
  int32_t status;      /* tombstone: the exit status                    */
  int64_t ended_ms;    /* tombstone: wall clock ms                      */
  name_ent *prev, *next; /* tombstones, oldest first (utlist DL)        */
  UT_hash_handle hh;
  size_t len;
  char name[];         /* NUL-ended                                     */
};

/* The runtime's names: live ones and tombstones in one table. */
struct names {
  name_ent *tab;         /* by name (uthash)                            */
  name_ent *tombs;       /* tombstones, oldest first (utlist DL)         */
  uint64_t ntombs;
  int64_t retention_ms;  /* < 0: forever                                */
  uint64_t prng;         /* generated names (splitmix64), from getrandom */
  int64_t (*clock)(void *arg); /* tests: the wall clock; NULL: real     */
  void *clock_arg;
};

/* context.c */
static inline inst_ext *ext_get(const mly_runtime *rt, const mly_inst *m) {
  return (m->dflags & D_EXT) ? rt->exts[(uint32_t)m->id] : NULL;
}
inst_ext *ext_make(mly_runtime *rt, mly_inst *m); /* NULL: out of memory */
/* The instance leaves memory: its context goes, its name becomes a
 * tombstone (or, suspended, is let go: the journal still holds it). */
void ext_end(mly_runtime *rt, mly_inst *m, bool suspended);
void ext_free_all(mly_runtime *rt);
uint64_t ctx_hash64(const void *p, size_t n);
const char *ext_check(const mly_runtime *rt); /* invariant.c */
/* Writes the context field of a state record: the encoding (a bin; an
 * empty bin clears it) when full or when it differs from what was
 * committed, else nil ("unchanged").  Returns the bytes of context
 * written, or a negative error (the buffer is marked oom). */
int64_t ctx_put(mly_runtime *rt, jbuf *b, inst_ext *x, bool full);
/* Recovery: the instance comes back with this committed context. */
int ctx_restore(mly_runtime *rt, mly_inst *m, const void *enc, size_t len);

/* names.c */
int names_init(mly_runtime *rt);
void names_free(mly_runtime *rt);
void names_set_retention(mly_runtime *rt, int64_t ms);
int64_t names_retention(const mly_runtime *rt);
int64_t names_now_ms(const mly_runtime *rt);
/* Whether a name is free now (expired tombstones are dropped here). */
int name_free_now(mly_runtime *rt, const char *name, size_t len);
/* A live entry for id (recovery, parked instances, spawn). */
int name_hold(mly_runtime *rt, const char *name, size_t len, mly_id id,
              name_ent **out);
/* A tombstone (recovery); one older than the retention is not kept. */
int name_tomb(mly_runtime *rt, const char *name, size_t len, mly_id id,
              int32_t status, int64_t ended_ms);
/* A shared store says how a name stands in the database (another
 * process holds it, or its tombstone): the table learns it unless this
 * runtime knows better (its own live holder, or its own entry for the
 * same id).  A live one no instance here holds is `remote`: spawns of
 * it answer MLY_EEXIST, lookups see it, and name_hold (an adoption)
 * takes it over. */
int name_learn(mly_runtime *rt, const char *name, size_t len, mly_id id,
               bool live, int32_t status, int64_t ended_ms);
/* The holder ended: its entry becomes a tombstone (or goes, suspended). */
void name_release(mly_runtime *rt, name_ent *e, int32_t status,
                  int64_t ended_ms, bool suspended);
/* Every tombstone still within the retention, oldest first. */
int names_foreach_tomb(mly_runtime *rt, int (*cb)(const name_ent *, void *),
                       void *arg);
uint64_t names_ntombs(const mly_runtime *rt);
/* Tests: the wall clock names use (ended_ms, expiry, generated names). */
int names_set_clock(mly_runtime *rt, int64_t (*clock)(void *arg), void *arg);
/* TYPE-YYYYmmddHHMMSS-xxxxxx into buf (at least 96 bytes). */
void name_generate(mly_runtime *rt, const char *type, char *buf, size_t len);

#endif
