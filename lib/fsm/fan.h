/*
 * fan.h - what fork.c, spawn.c, continuation.c and fanin.c share: the
 * fan-in collector type, the reserved context keys and the rules that
 * name every instance they start.
 *
 * Everything durable here is a durable machine (D10); no journal record
 * of a new kind.  Instances started from a dispatch (forks, spawns,
 * continuation replicas) are started inside the dispatching step, so
 * their first state is in that step's record (durable.c): a step lost
 * to a crash loses them with it, a step that commits has them.  They
 * are also named from the dispatch's idempotency key, so a dispatch that
 * runs again (a retry after a later position failed) finds the name
 * taken (MLY_EEXIST) and starts nothing twice.
 *
 * Fan-in.  An instance whose next transition enters a fan-in state
 * sends its context to a collector (type "fsm-fanin") and ends, in one
 * step: the event is in the same record as its end.  The collector is a
 * named durable instance, one per (machine, fan-in state, fan_in_group
 * value, lineage, generation), so every arrival finds it by name:
 *     fanin:MACHINE:STATE:GROUP:LINEAGE:GEN
 * GROUP is the group value when it is short and plain ([A-Za-z0-9_.-],
 * up to 40 bytes), else "h" and 16 hex digits of a hash of its msgpack
 * bytes, "-" without a group.  LINEAGE is "-" except for `count: 0`
 * (every replica of one continuation), where it names the continuation.
 * GEN is the window index (floor(wall ms / window)) for a time window,
 * and 0, 1, ... for a count.  A collector whose data says `closed` has
 * merged: arrivals go to the next generation.  The collector keeps the
 * arrivals in its inbox (journaled events, O(1) each) and takes them all
 * in the step that merges; see fanin.c for why nothing is lost or merged
 * twice across kill -9.
 */
#ifndef MLY_FSM_FAN_H
#define MLY_FSM_FAN_H

#include "fsmrt.h"

#define FSM_FAN_TYPE_NAME "fsm-fanin"
/* Context keys the fan code writes (documented in mealy.h). */
#define FSM_KEY_FAN "_fan"      /* {l, b, g, t}: see continuation.c     */
#define FSM_KEY_TOKEN "_token"  /* the continuation token of a replica  */
#define FSM_KEY_FORK "fork"     /* a fork's number, 1..K                */

/* Event names between arrivals and collectors. */
#define FSM_EV_ARRIVE "fsm-fan-arrive"
#define FSM_EV_FAIL "fsm-fan-fail"
#define FSM_EV_TOTAL "fsm-fan-total"

/* The collector's fixed data (saved byte for byte: no pointers). */
typedef struct fanin_data {
  unsigned char hash[FSM_HASH_LEN]; /* the definition of the merge      */
  uint32_t state;    /* the fan-in state (index in the machine)         */
  uint8_t mode;      /* FSM_FAN_WINDOW or FSM_FAN_COUNT                 */
  uint8_t closed;    /* merged: later arrivals go to gen + 1            */
  uint8_t have_total;
  uint8_t merge_failed; /* in the merge step only                     */
  uint32_t need;     /* count: arrivals + failures to wait for          */
  uint32_t tolerate;
  int64_t window_ms; /* window: its length                             */
  int64_t due_ms;    /* window: its end, wall clock                     */
  uint64_t gen;
  uint32_t merged, failed; /* what the merge took (for `fsm show`)      */
} fanin_data;

/* The collector type (fsm_fan_attach, in interp.h, registers it). */
extern const mly_type_def fsm_fanin_type_def;

/* A name for an instance started by the dispatch with key `key`
 * ("NAME/SEQ"): "NAME.SEQ" + tag + number ('/' is not allowed in names).
 * MLY_ENAMETOOLONG past MLY_INSTANCE_NAME_MAX: the name part is then
 * replaced by a hash of it. */
int fsm_fan_child_name(const char *key, const char *tag, uint64_t n,
                       char *buf, size_t len);
/* 64-bit FNV-1a. */
uint64_t fsm_fan_hash(const void *p, size_t n, uint64_t h);
#define FSM_FAN_HASH_SEED 0xcbf29ce484222325ull

/* Start an instance of def at proto with context ctx (taken), named
 * `name`: MLY_EEXIST is success here (started before, by a run of the
 * same dispatch), counted in *again when given. */
int fsm_fan_start(fsm_rt *f, const fsm_machine *def, const fsm_inst *proto,
                  mly_value *ctx, const char *name, uint32_t *again);

/* Arrive at fan-in state `to` with context ctx (copied), as if an
 * instance at `in` (whose next transition enters `to`) did: finds or
 * makes the collector and sends, inside m's step.  fsm_fan_in_enter uses
 * it for the instance itself, fork.c for a fork whose next event enters
 * a fan-in (the copy need not exist to arrive). */
int fsm_fan_arrive(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                   const fsm_state *to, const mly_value *ctx);
/* The fan-in state in's next transition enters, or NULL. */
const fsm_state *fsm_fan_next_fan_in(const fsm_machine *def,
                                     const fsm_inst *in);

/* The lineage of a continuation chain: "c" and 16 hex digits of a hash
 * of its first dispatch's key. */
void fsm_fan_lineage(const char *key, char *buf, size_t len);

/* The name of replica `gen` of the chain ctx belongs to (its "_fan"
 * base, or `key` for the chain's first dispatch). */
int fsm_fan_replica_name(const mly_value *ctx, const char *key,
                         uint64_t gen, char *buf, size_t len);

/* A deep copy of ctx without the fan code's bookkeeping keys. */
mly_value *fsm_fan_ctx_copy(const mly_value *ctx);

#endif
