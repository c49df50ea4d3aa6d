/*
 * jreplay.h - replaying records into the live set (lib/ only).
 */
#ifndef MLY_JREPLAY_H
#define MLY_JREPLAY_H

#include "journal.h"
#include "hashtab.h"

#include <stdio.h>

/* Wait kinds as records store them (the runtime's W_* values, and one
 * more for an instance that exited and is stopping its children). */
enum { RP_W_NONE = 0, RP_W_TURN, RP_W_SLEEP, RP_W_COND, RP_W_EVENT,
       RP_W_REPLY, RP_W_CHILDREN, RP_W_EXITING = 100 };

/* A durable runtime holds at most this many instance slots; an id past
 * it is refused on recovery (the slot table would be gigabytes). */
#define RP_MAX_SLOT (1u << 24)

typedef struct rp_state {
  mly_id id, parent;
  const char *type, *point, *wname;
  size_t tlen, plen, wnlen, dlen;
  uint64_t step, version, flags, wait, wev, warg;
  mly_id peer;              /* W_REPLY: the request's target; 0 unknown */
  int64_t due_ms, status;
  const void *data;
  const unsigned char *raw; /* the whole S */
  size_t rawlen;
  const unsigned char *fields, *tail; /* field 0, and past field 9 */
  bool has_ctx;             /* field 10 is a bin: the context changed */
  const void *ctx;          /* its msgpack (ctxlen 0: none)          */
  size_t ctxlen;
  const char *name;         /* field 11: its name, or NULL          */
  size_t namelen;
} rp_state;

typedef struct rp_event {
  uint64_t eid, to, ev, from, flags, corr;
  const char *name;         /* ev as a name, or NULL */
  size_t nlen;
  int64_t status, aux;
  const void *payload;      /* msgpack, or NULL */
  size_t plen;
  const unsigned char *raw; /* the whole E; NULL for a made notice */
  size_t rawlen;
  bool dead;                /* consumed or dropped */
} rp_event;

typedef struct rp_inst {
  mly_id id;
  const unsigned char *s;   /* its last state S */
  uint32_t slen;
  mly_id parent;
  bool ended;
  uint8_t namelen;          /* 0: unnamed (a name is 1..255 bytes)   */
  uint32_t ctxlen;          /* 0: no context                         */
  const unsigned char *ctx; /* its last committed context (msgpack)  */
  const char *name;
} rp_inst;

/* A tombstone read back: an END with a name, or a TOMB. */
typedef struct rp_tomb {
  const char *name;
  size_t len;
  mly_id id;
  int64_t status, ended_ms;
  UT_hash_handle hh;
} rp_tomb;

typedef struct u64map {
  uint64_t *keys;
  uint32_t *vals;
  size_t cap, n;
} u64map;

typedef struct replay {
  rp_inst *insts;
  size_t ninsts, icap;
  uint32_t *slot;         /* slot -> index in insts (dense ids) */
  size_t nslot;
  u64map imap;            /* id -> index, for ids far past the others */
  rp_event *evs;
  size_t nevs, ecap;
  u64map emap;
  uint64_t live, pending, records;
  rp_tomb *tombs;         /* by name (uthash) */
  uint64_t ntombs;
  uint64_t max_eid, max_corr;
  /* the last SNAP's counters: a shared store's own (node << 40), which
   * events made by other processes must not move */
  uint64_t snap_eid, snap_corr;
  bool snapped;
  char *err;
  size_t errlen;
} replay;

bool rp_parse_state(jcur *c, rp_state *s);
/* 0, or MLY_EINVAL: not 1..MLY_INSTANCE_NAME_MAX bytes, a control
 * character or a '/' (names.c) */
int name_check(const char *name, size_t len);
/* S with its context and name (fields 10, 11) written whole. */
void rp_state_full(jbuf *b, const rp_state *s);
bool rp_parse_event(jcur *c, rp_event *e);
int rp_record(const jrec *rec, void *arg); /* a jr_read callback */
uint32_t rp_find_inst(const replay *r, mly_id id);
void rp_free(replay *r);

#endif
