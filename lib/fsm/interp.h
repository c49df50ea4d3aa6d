/*
 * interp.h - the YAML machine interpreter's internal interface: what
 * interp*.c, action.c and the fork/spawn/continuation/fan-in code
 * (fork.c, spawn.c, continuation.c, fan_in*.c) share.
 *
 * A YAML machine instance is an instance of one durable type, "fsm"
 * (MLY_TYPE_DURABLE, named yield points), whatever machine it runs:
 *   - its fixed data is an fsm_inst (below): the pinned definition's
 *     hash, the state it is in, the event it is about to dispatch, the
 *     retry counters and the generation/replica bookkeeping.  It holds no
 *     pointer: the runtime saves it byte for byte with every step;
 *   - its context (mly_context, a map) is the machine's context, saved
 *     with every step in the same record;
 *   - definitions are stored once per content hash, as the context of a
 *     named durable instance "fsm-def-<64 hex>" (type "fsm-def": it waits
 *     for ever and holds a MLY_V_BIN of fsm_def_encode's bytes).  At
 *     recovery an instance finds its definition by that name: editing the
 *     YAML file changes only instances started afterwards.
 * So atomic steps, group commit, recovery and kill -9 come from the
 * durable layer: the fsm writes no journal records of its own.
 *
 * One dispatch (Fantasm's order): with the pending event E taking
 * transition T from state S to state D,
 *     exit(S), [fan-in merge], T.action, entry(D), continuation(D),
 *     action(D) -> next event
 * runs on a working copy of the context; the context and fsm_inst are
 * replaced only when the whole dispatch succeeded, in the step that
 * commits it.  A dispatch with a blocking C action or an exec action
 * yields in the middle (to wait for the threadpool or the process): the
 * record written then still holds the context and position from before
 * the dispatch, so after a crash the whole dispatch runs again, with the
 * same idempotency key (fsm_key: the instance name and `seq`, the number
 * of dispatches committed).  A failed dispatch leaves the context as it
 * was, counts an attempt and sleeps the backoff (committed), or goes to
 * on_failure, or fails the instance.
 *
 * Threads: everything here runs on the loop thread, except the body of a
 * blocking C action (struct mly_action_call, below, is all it may touch).
 */
#ifndef MLY_FSM_INTERP_H
#define MLY_FSM_INTERP_H

#include <stdbool.h>
#include <stdint.h>
/* uthash: an allocation that fails leaves the table as it was and sets
 * the caller's `hash_oom` (as lib/context.h). */
#ifndef HASH_NONFATAL_OOM
#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(obj) (hash_oom = true)
#endif
#include <uthash.h>

#include "def.h"
#include "mealy.h"

/* ------------------------------------------------------------------ */
/* The durable instance record.                                        */

/* fsm_inst.phase: what the instance does next. */
typedef enum fsm_phase {
  FSM_PH_DISPATCH = 0, /* dispatch `event` (trans) from `state`         */
  FSM_PH_SLEEP,        /* durable sleep until due_ms (a transition's
                          countdown, a retry's backoff, a continuation
                          countdown), then FSM_PH_DISPATCH             */
  FSM_PH_WAIT,         /* a wait state: an external event, or the
                          timeout at due_ms (due_ms < 0: none)         */
  FSM_PH_FAN_IN,       /* handed to the fan-in code (fan_in.c): it
                          wakes the instance with phase set to
                          FSM_PH_DISPATCH (the merge's instance) or
                          FSM_PH_DONE (merged into another)            */
  FSM_PH_DONE          /* ended: status in `status`                    */
} fsm_phase;

/* fsm_inst.why: why it sleeps (for `mealy fsm show`). */
enum { FSM_WHY_NONE = 0, FSM_WHY_COUNTDOWN, FSM_WHY_BACKOFF,
       FSM_WHY_CONTINUATION };

/* fsm_inst.flags */
#define FSM_IF_STARTED 0x1u  /* set by the fan code on copies it starts  */
#define FSM_IF_REPLICA 0x2u  /* started by a fork or continuation       */
#define FSM_IF_FAN_MERGED 0x4u /* the fan-in code put merged contexts in
                                  the context (key FSM_KEY_MERGED)      */
#define FSM_IF_ENTER 0x8u    /* the dispatch enters `state` itself (the
                                initial dispatch, a move to on_failure):
                                entry, continuation, action; no exit, no
                                transition action                      */

#define FSM_HASH_LEN 32

typedef struct fsm_inst {
  unsigned char hash[FSM_HASH_LEN]; /* the pinned definition            */
  uint32_t state;    /* the state it is in (with FSM_IF_ENTER: the
                        state the dispatch enters)                      */
  uint32_t trans;    /* the transition `event` takes from `state`
                        (FSM_NO_STATE with FSM_IF_ENTER)                */
  uint32_t phase;    /* fsm_phase                                      */
  uint32_t why;      /* FSM_WHY_* while FSM_PH_SLEEP                   */
  uint32_t attempt;  /* failed attempts of this dispatch (0: first try) */
  uint32_t flags;    /* FSM_IF_*                                       */
  uint64_t seq;      /* dispatches committed: with the name, the key   */
  int64_t first_try_ms; /* wall clock (ms since the epoch) of this
                           dispatch's first attempt: task_age_limit    */
  int64_t due_ms;    /* wall clock: end of a sleep, a wait's timeout   */
  int64_t countdown_ms; /* the delay chosen (committed) for this sleep  */
  int32_t status;    /* FSM_PH_DONE: 0 success, < 0 failed             */
  /* fork / continuation bookkeeping (fsmfan's): Fantasm's generation
     counter and replica number; `origin` is the instance it was forked
     or continued from (0: started by mly_fsm_start) */
  uint32_t generation;
  uint32_t replica;
  mly_id origin;
  char event[MLY_NAME_MAX + 1]; /* the event being dispatched ("" in
                                   the initial dispatch)                */
  char error[64];               /* the last failure's text ("" none)   */
  uint32_t nhist;               /* entries ever written to hist         */
  uint32_t fail_moves;           /* moves to on_failure since the last
                                   committed dispatch: a cycle of
                                   on_failure states ends the instance */
  uint64_t spare[4];            /* for fsmfan, zero until used          */
  /* the last FSM_HISTORY_MAX dispatches and failures, a ring at
     nhist % FSM_HISTORY_MAX (`mealy fsm show`); 16 bytes each, as every
     byte here is written with every step.  A dispatch's number is not
     kept: mly_fsm_info_get counts back from seq (a committed dispatch
     and a failure that moved on, ECANCELED, each took one) */
  struct fsm_hist {
    int64_t at_ms;     /* wall clock                                    */
    uint16_t from, to; /* state indexes (FSM_HIST_NONE: none)          */
    uint16_t trans;    /* transition index in `from` (FSM_HIST_NONE)   */
    int16_t result;    /* 0 committed; failed: -EAGAIN retried,
                          -ECANCELED not retried (on_failure or end)   */
  } hist[8];
  /* a command action's process while the dispatch waits for it (saved
     with the wait's record): after a crash or a suspension, the dispatch
     that runs again first kills that one (its group), if the pid still
     names it (same start time) */
  int32_t exec_pid;
  uint32_t spare32b;
  uint64_t exec_start;
} fsm_inst;
#define FSM_HIST_NONE 0xffffu
#define FSM_HISTORY_MAX 8

/* Context keys the interpreter writes (documented in mealy.h). */
#define FSM_KEY_ERROR "error"   /* on_failure: the error text           */
#define FSM_KEY_CAUSE "cause"   /* on_failure: {state, event, where,
                                   attempts, permanent}                 */
#define FSM_KEY_MERGED "merged" /* fan-in: list of the merged contexts  */

/* ------------------------------------------------------------------ */
/* Actions: the registry (action.c) and one call.                      */

typedef struct fsm_action_ent {
  char *name;
  mly_action_fn fn;
  void *arg;
  uint32_t flags; /* MLY_ACTION_* */
  UT_hash_handle hh;
} fsm_action_ent;

/* The per-runtime fsm layer (attached as "mly.fsm"). */
typedef struct fsm_rt fsm_rt;
fsm_rt *fsm_rt_get(mly_runtime *rt);           /* NULL: not attached */
const fsm_action_ent *fsm_action_find(const fsm_rt *f, const char *name);

/* Where in a dispatch an action runs (mly_action_call.where). */
typedef enum fsm_where {
  FSM_AT_EXIT = 0,
  FSM_AT_FAN_IN,     /* the fan-in merge (fan_in.c)                     */
  FSM_AT_TRANSITION,
  FSM_AT_ENTRY,
  FSM_AT_CONTINUATION,
  FSM_AT_ACTION,
  FSM_AT_DONE
} fsm_where;
const char *fsm_where_name(fsm_where w); /* "exit", "transition", ... */

/* One action call: struct mly_action_call, which mealy.h keeps opaque.
 * A blocking action gets it on a threadpool thread and touches nothing
 * else. */
struct mly_action_call {
  mly_value *context;   /* the working copy of the context (a map)      */
  mly_value *scratch;   /* per dispatch, never saved (Fantasm's obj);
                           NULL until mly_action_scratch makes it     */
  const char *key;      /* idempotency key: "NAME/SEQ"                   */
  const char *machine, *state, *event; /* where it runs (read only)     */
  fsm_where where;
  uint32_t attempt;     /* 0 on the first try                            */
  /* results */
  char next[MLY_NAME_MAX + 1]; /* the next event ("" none)              */
  int fail;             /* 0, MLY_ACTION_RETRY or MLY_ACTION_PERMANENT   */
  char error[256];      /* the failure's text                            */
  /* requests for fsmfan (fork.c, spawn.c, continuation.c): filled by
     mly_action_fork / mly_action_spawn / mly_action_continue, applied
     after the dispatch by the hooks below; NULL when none */
  mly_value *forks;     /* array of maps: each fork's data              */
  mly_value *spawns;    /* array of {machine, contexts, countdown}      */
  mly_value *token;     /* continuation: the next token (NULL: none)    */
  bool token_set;
};

/* ------------------------------------------------------------------ */
/* The interpreter's per-instance memory (not saved): the dispatch in   */
/* flight.  Found by id (fsm_run_get); gone after a crash, which is how */
/* a recovered instance knows to run its dispatch again.               */

typedef struct fsm_run fsm_run;
struct fsm_run {
  mly_id id;
  fsm_rt *f;
  const fsm_machine *def; /* the pinned definition (owned by fsm_rt)    */
  fsm_where pos;          /* the next position of the dispatch          */
  struct mly_action_call call; /* context/scratch: the working copies */
  char key[MLY_INSTANCE_NAME_MAX + 24];
  size_t key_name_len;    /* "NAME/" cached in key (0: not yet)          */
  int async;              /* FSM_ASYNC_*: what the instance waits for   */
  bool job_done;          /* the blocking job or the process is over    */
  int pid;                /* exec: the process                          */
  int stdout_fd;          /* exec: a memfd the process writes            */
  int stderr_fd;          /* exec: a memfd for its stderr (error text)   */
  int64_t exec_due_ms;    /* exec: wall clock of its timeout; -1 none    */
  bool timed_out;         /* exec: killed for its timeout               */
  int64_t exit_status;
  uv_work_t work;         /* blocking: the threadpool request           */
  const fsm_action_ent *job;
  void *fan;              /* fsmfan's own per-instance memory           */
  const char *qname;      /* queue: the dispatch's queue (def's)         */
  uint8_t qslot;          /* ... its slot: FSM_QSLOT_* (fsmrt.h)         */
  bool in_dispatch;       /* call holds a dispatch's working copies     */
  bool orphan;            /* its instance ended while a job ran: the job's
                             completion frees it                        */
  bool job_queued;        /* waits for a threadpool slot (fsm_rt.jobq)  */
  fsm_run *jobq_next;
  const char *missing;    /* FSM_ASYNC_ACTION: the action's name (def's) */
};
/* FSM_ASYNC_ACTION: its action `missing` is not registered (action.c) */
enum { FSM_ASYNC_NONE = 0, FSM_ASYNC_BLOCKING, FSM_ASYNC_EXEC,
       FSM_ASYNC_ACTION };

fsm_run *fsm_run_get(fsm_rt *f, mly_id id);

/* The idempotency key of the dispatch in flight: "NAME/SEQ" (NAME: the
 * instance's name; every fsm instance has one). */
void fsm_key(const mly_machine *m, const fsm_inst *in, char *buf,
             size_t len);

/* The definition an instance runs, by hash: from memory, or decoded
 * from its "fsm-def-<hex>" instance (recovery).  NULL: MLY_ENOENT. */
const fsm_machine *fsm_def_get(fsm_rt *f, const unsigned char *hash);
/* Store a definition (once per hash) and keep it in memory. */
int fsm_def_put(fsm_rt *f, const fsm_machine *m);

/* Start an instance of machine `def` (its hash already stored by
 * fsm_def_put).  `context` is taken.  Used by mly_fsm_start and by the
 * fork/spawn/continuation code, which passes `proto` (the fsm_inst the
 * new one starts from: state, trans, event, generation, replica,
 * origin); proto NULL: the machine's initial dispatch.  parent: the
 * spawning instance (NULL: top level). */
int fsm_instance_start(fsm_rt *f, mly_machine *parent,
                       const fsm_machine *def, const fsm_inst *proto,
                       mly_value *context, const char *name,
                       char *name_out, size_t name_out_len, mly_id *out);

/* ------------------------------------------------------------------ */
/* Hooks: fsmfan implements them in fork.c, spawn.c, continuation.c,   */
/* fan_in.c.  Until then fanstub.c answers MLY_ENOSYS, and the         */
/* interpreter fails the dispatch (permanently) with a log line saying */
/* the feature is missing.  All run on the loop thread, inside the     */
/* instance's step.                                                    */

/* After a successful dispatch, before it commits: the call asked for
 * forks (call->forks != NULL).  Start one instance per fork, each with
 * the working context merged with its data and the same next event
 * (`in` already holds the committed next state/event/trans). */
int fsm_fork_apply(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                   fsm_run *r);
/* The same for call->spawns: instances of other machines, named after
 * the key so that a dispatch run twice spawns once. */
int fsm_spawn_apply(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                    fsm_run *r);
/* At FSM_AT_CONTINUATION of a state marked `continuation`: run its
 * continuation (the call has the token in the context) and start the
 * next replica for a returned token.  0 or < 0 (the dispatch fails:
 * retryable unless MLY_ENOSYS). */
int fsm_continuation_run(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                         fsm_run *r, const fsm_state *st);
/* The committed next transition goes into a state with fan_in: hand the
 * instance over.  `in->phase` is FSM_PH_FAN_IN on entry; the fan-in
 * code keeps what it needs (in->spare, its own storage) and later sets
 * phase to FSM_PH_DISPATCH (this instance carries the merge: the
 * merged contexts under FSM_KEY_MERGED) or FSM_PH_DONE, and calls
 * mly_wake.  While FSM_PH_FAN_IN the body waits at point "fan_in",
 * testing fsm_fan_in_ready(). */
int fsm_fan_in_enter(fsm_rt *f, mly_machine *m, fsm_inst *in,
                     const fsm_state *to);
bool fsm_fan_in_ready(fsm_rt *f, mly_machine *m, fsm_inst *in);
/* mly_fsm_attach: register the fan code's own types. */
int fsm_fan_attach(fsm_rt *f);
/* The instance fails for good (no on_failure state): tell a counted
 * fan-in downstream (0 when there is none).  Inside the failing step,
 * with the committed context. */
int fsm_fan_failed(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                   const mly_value *ctx, const char *error);
/* The same for a failure that moves the instance to its on_failure state:
 * told only when that state cannot lead back to the fan-in. */
int fsm_fan_failed_to(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                      const mly_value *ctx, const char *error,
                      uint32_t on_failure);

/* Test hooks (fsm_rt): retry delays chosen, counted not timed. */
typedef struct fsm_test_hooks {
  void (*delay_chosen)(void *arg, mly_id id, int why, uint32_t attempt,
                       int64_t delay_ms);
  void *arg;
  uint32_t jitter_seed; /* 0: random */
} fsm_test_hooks;
void fsm_set_test_hooks(mly_runtime *rt, const fsm_test_hooks *h);

/* The backoff for the attempt'th retry (1 = first retry) under a
 * resolved policy, before jitter: min * 2^min(attempt-1, doublings),
 * then linear past the doublings (App Engine), capped at max. */
int64_t fsm_backoff_ms(const fsm_retry *p, uint32_t attempt);
/* Resolve transition -> machine -> built-in defaults (App Engine's:
 * no retry limit, min 100 ms, max 1 h, 16 doublings, no age limit, no
 * jitter) into *out, every field set. */
void fsm_retry_resolve(const fsm_machine *m, const fsm_transition *t,
                       fsm_retry *out);
/* The same with a queue's policy (resolved: every field set) in place
 * of the built-in defaults: a machine or transition with `queue:`. */
void fsm_retry_resolve_q(const fsm_machine *m, const fsm_transition *t,
                         const mly_retry *q, fsm_retry *out);

#endif
