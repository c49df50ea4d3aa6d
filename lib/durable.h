/*
 * durable.h - what durable.c and recover.c share (lib/ only).
 */
#ifndef MLY_DURABLE_H
#define MLY_DURABLE_H

#include "internal.h"
#include "jreplay.h"

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
  mly_journal *j;
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
  uint64_t base_bytes;  /* in the directory at open / last compaction */
  bool compact_wanted;
  mly_journal_stats open_st;
};

/* Append one element to a VEC, doubling it. */
#define PUSH(d, name, val)                                                 \
  ((d)->n##name < (d)->cap##name ||                                        \
           dur_grow((void **)&(d)->name, &(d)->cap##name, sizeof *(d)->name)   \
       ? ((d)->name[(d)->n##name++] = (val), 0)                            \
       : MLY_ENOMEM)


bool dur_grow(void **v, uint32_t *cap, size_t size);
int64_t wall_ms(void);
void durable_state_free(mly_runtime *rt, dur_state *d);
void parked_free(parked *p);
enum { PS_FULL = 1, PS_EXIT = 2 };
int64_t put_state(mly_runtime *rt, jbuf *b, const mly_inst *m, int how);
void put_event(mly_runtime *rt, jbuf *b, mly_id to, const mly_event *e);

#endif
