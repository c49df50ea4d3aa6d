/*
 * fsmrt.h - the fsm layer of one runtime (attached as "mly.fsm"): its two types, the
 * action registry, the definitions by hash and the startable machines by
 * name, and the dispatches in flight by instance id.  Private to
 * lib/fsm/ (fsmfan's files may include it too).
 */
#ifndef MLY_FSM_RT_H
#define MLY_FSM_RT_H

#include "mealy.h"
#include "../hashtab.h"
#include "../value.h"
#include "interp.h"

/* A definition, once per content hash. */
typedef struct fsm_def_ent {
  unsigned char hash[FSM_HASH_LEN];
  fsm_machine *m;   /* owned: decoded from the stored bytes          */
  bool stored;      /* its "fsm-def-<hex>" instance exists             */
  UT_hash_handle hh;
} fsm_def_ent;

/* A machine that mly_fsm_start can start: its current definition. */
typedef struct fsm_mach_ent {
  char *name;
  fsm_def_ent *def;
  UT_hash_handle hh;
} fsm_mach_ent;

struct fsm_rt {
  mly_runtime *rt;
  mly_type *type;      /* "fsm": the instances                        */
  mly_type *def_type;  /* "fsm-def": one per stored definition         */
  fsm_action_ent *actions;
  fsm_def_ent *defs;
  fsm_mach_ent *machines;
  fsm_run **runs;      /* by slot (the id's low 32 bits): O(1)       */
  uint32_t nruns;
  /* blocking actions: at most jobs_max on the threadpool at once (one
     thread less than the pool has, so the journal's fdatasync always
     finds one); the others wait here, in order */
  uint32_t jobs_running, jobs_max;
  fsm_run *jobq_head, *jobq_tail;
  fsm_run *orphans;    /* jobs whose instance ended (via jobq_next)  */
  /* actions resolved by the fsm_action they are named in (definitions
     and the registry only grow while the runtime lives): direct-mapped */
  struct {
    const fsm_action *a;
    const fsm_action_ent *e;
  } acache[256];
  fsm_test_hooks hooks;
  uint64_t rng;        /* xorshift: jitter, countdown ranges           */
  /* where the interpreter's log lines go (default: stderr) */
  void (*log)(void *arg, const char *line);
  void *log_arg;
};

#define FSM_TYPE_NAME "fsm"
#define FSM_DEF_TYPE_NAME "fsm-def"
#define FSM_DEF_PREFIX "fsm-def-"

/* action.c */
void fsm_actions_free(fsm_rt *f);
void fsm_call_returned(mly_action_call *c, int rc);
/* Make a failure text safe to keep and show, in place: each byte that is
 * not UTF-8 (a character cut short by a bound, a command's raw stderr)
 * and each control character but a tab becomes '?'. */
void fsm_text_clean(char *s);
const fsm_action_ent *fsm_action_resolve(fsm_rt *f, const fsm_action *a);
/* The dispatch of r needs C action a, which is not registered (a host
 * restarted without the library that has it): it waits, nothing of it
 * committed, until mly_action_register registers that name, then runs
 * the action.  Logs why; returns FSM_WALK_BLOCKING. */
int fsm_action_await(fsm_rt *f, mly_machine *m, fsm_run *r,
                     const fsm_action *a);

/* retry.c */
int64_t fsm_backoff_pick(fsm_rt *f, const fsm_retry *p, uint32_t attempt);
int64_t fsm_countdown_pick(fsm_rt *f, const fsm_countdown *c);

/* interp_rt.c */
void fsm_log(fsm_rt *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int64_t fsm_now_ms(void); /* wall clock */
uint64_t fsm_rand(fsm_rt *f);
void fsm_hash_hex(const unsigned char *hash, char *hex /* 65 */);
void fsm_strlcpy(char *dst, const char *src, size_t len);
fsm_run *fsm_run_make(fsm_rt *f, mly_id id);
void fsm_run_drop(fsm_rt *f, fsm_run *r);
void fsm_call_clear(mly_action_call *c);
/* interp_dispatch.c: queue or start a blocking job */
int fsm_job_submit(fsm_rt *f, fsm_run *r);

/* interp.c: the "fsm" type */
extern const mly_type_def fsm_type_def;
void fsm_end(fsm_inst *in, int status);
void fsm_key_fast(const mly_machine *m, const fsm_inst *in, fsm_run *r);
/* Its run record with the definition resolved; NULL: it ended (failed) */
fsm_run *fsm_run_for(fsm_rt *f, mly_machine *m, fsm_inst *in);

/* interp_dispatch.c: one dispatch, and what follows it */
enum { FSM_WALK_OK = 0, FSM_WALK_FAILED, FSM_WALK_BLOCKING, FSM_WALK_EXEC,
       FSM_WALK_QUEUE /* waits for a slot of its queue (r->qname) */ };
enum { FSM_QSLOT_NONE = 0, FSM_QSLOT_WAIT, FSM_QSLOT_HELD };
/* The slot the dispatch waits for came: true (also when there is no
 * dispatch in flight to wait for, as after a restart). */
bool fsm_slot_ready(fsm_rt *f, mly_machine *m);
/* The dispatch's queue slot back to its queue, held or asked for (none:
 * nothing); fsm_dispatch takes one again before it goes on. */
void fsm_slot_give_back(fsm_rt *f, fsm_run *r);
/* Run (or go on with) the pending dispatch; when it ends, commit it or
 * count the failure (in->phase changes).  Returns FSM_WALK_*. */
int fsm_dispatch(fsm_rt *f, mly_machine *m, fsm_inst *in, fsm_run *r);
/* The instance in a wait state took `event` (or its timeout's). */
void fsm_take_event(fsm_rt *f, mly_machine *m, fsm_inst *in,
                    const fsm_machine *def, const char *event);
/* A countdown ended: into a fan-in state, or dispatch. */
void fsm_route_after_countdown(fsm_rt *f, mly_machine *m, fsm_inst *in);
/* migrate.c: the event a migration posts an instance (a name no YAML
 * event can have), the safety check, and its taking at a wait or sleep.
 * fsm_migrate_check: 0 (out, if not NULL: the instance moved to nw), or
 * MLY_EINVAL with the reason in why. */
#define FSM_EV_MIGRATE "fsm.migrate"
int fsm_migrate_check(const fsm_machine *old, const fsm_machine *nw,
                      const fsm_inst *in, const mly_value *ctx,
                      fsm_inst *out, char *why, size_t len);
void fsm_migrate_take(fsm_rt *f, mly_machine *m, fsm_inst *in);
/* Machines by name (interp_def.c) */
const fsm_machine *fsm_machine_current(fsm_rt *f, const char *name);
int fsm_machine_add(fsm_rt *f, const fsm_machine *m);
/* interp_def.c: the "fsm-def" type and the definition store */
extern const mly_type_def fsm_def_type_def;
void fsm_defs_free(fsm_rt *f);

/* ctxtype.c: 0, or MLY_EINVAL with a sentence in err */
/* A context type in the file's words ("int", "any", ...). */
const char *fsm_ctype_name(fsm_ctype t);
/* 0, or < 0 with a sentence in err: ctx (a context, or a payload that
 * goes into one) could not be committed (too deep, past the journal's
 * record bound). */
int fsm_ctx_fits(const mly_value *ctx, char *err, size_t errlen);
int fsm_ctx_check(const fsm_machine *def, const mly_value *ctx, char *err,
                  size_t errlen);

/* interp_exec.c: command actions */
int fsm_exec_start(fsm_rt *f, mly_machine *m, fsm_run *r,
                   const fsm_action *a, fsm_inst *in);
/* A command left from before a crash (in->exec_pid): kill its group. */
void fsm_exec_reap_stale(fsm_rt *f, fsm_inst *in);
/* the process ended (ev) or its time ran out (ev NULL): 1 when the call
 * is complete (its result in r->call), 0 to keep waiting */
int fsm_exec_event(fsm_rt *f, mly_machine *m, fsm_run *r,
                   const mly_event *ev);
int64_t fsm_exec_left(const fsm_run *r);
void fsm_exec_cleanup(fsm_run *r);

/* interp_json.c: values <-> JSON (jansson) */
int fsm_json_encode(const mly_value *v, char **out, size_t *len);
/* one JSON object -> a map; err gets the reason */
int fsm_json_decode_object(const char *buf, size_t len, mly_value **out,
                           char *err, size_t errlen);

#endif
