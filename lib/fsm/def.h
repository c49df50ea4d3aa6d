/*
 * def.h - a loaded YAML machine definition: what the fsm loader
 * (load.c, validate.c) builds and the interpreter (interp.c) runs.
 *
 * The loader owns every pointer here; fsm_set_free() releases a whole
 * set.  States, transitions and machines refer to each other by index,
 * never by pointer, so a definition can be encoded (fsm_def_encode: a
 * canonical msgpack value), hashed (its content hash pins running
 * instances to it) and decoded again from storage unchanged.
 * Durations are milliseconds; -1 means "not set" wherever a default
 * applies (the interpreter resolves transition -> state -> machine ->
 * queue -> built-in default).
 */
#ifndef MLY_FSM_DEF_H
#define MLY_FSM_DEF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mealy.h"

typedef struct fsm_pos {
  const char *file; /* points into the set's file table */
  uint32_t line, col;
} fsm_pos;

typedef enum fsm_ctype {
  FSM_T_ANY = 0,
  FSM_T_INT,
  FSM_T_UINT,
  FSM_T_FLOAT,
  FSM_T_BOOL,
  FSM_T_STRING,
  FSM_T_BINARY,
  FSM_T_DATETIME, /* stored as int: ms since the epoch, UTC */
  FSM_T_MAP
} fsm_ctype;

typedef struct fsm_ctx_type {
  char *key;
  fsm_ctype type;
  bool list; /* a list of `type` */
  fsm_pos pos;
} fsm_ctx_type;

/* Retry policy (App Engine's names).  -1: not set here. */
typedef struct fsm_retry {
  int64_t task_retry_limit;
  int64_t min_backoff_ms;
  int64_t max_backoff_ms;
  int64_t max_doublings;
  int64_t task_age_limit_ms;
  double jitter; /* 0..1 fraction of the delay; < 0: not set */
} fsm_retry;

typedef enum fsm_action_kind {
  FSM_ACT_NONE = 0,
  FSM_ACT_C,   /* a registered C action, by name (namespace applied) */
  FSM_ACT_EXEC /* a command: argv, timeout */
} fsm_action_kind;

typedef struct fsm_action {
  fsm_action_kind kind;
  char *name;       /* FSM_ACT_C */
  char **argv;      /* FSM_ACT_EXEC: NULL-ended */
  size_t argc;
  int64_t timeout_ms; /* FSM_ACT_EXEC; -1: none */
  fsm_pos pos;
} fsm_action;

typedef struct fsm_countdown {
  int64_t min_ms, max_ms; /* fixed: min == max; none: both -1 */
} fsm_countdown;

typedef struct fsm_transition {
  char *event;
  uint32_t to; /* state index in the machine */
  fsm_action action;
  fsm_countdown countdown;
  fsm_retry retry;
  char *queue; /* NULL: the machine's */
  fsm_pos pos;
} fsm_transition;

typedef enum fsm_fan_in {
  FSM_FAN_NONE = 0,
  FSM_FAN_WINDOW, /* fan_in: 5s (Fantasm's) */
  FSM_FAN_COUNT   /* fan_in: {count: N, tolerate: K} */
} fsm_fan_in;

#define FSM_NO_STATE UINT32_MAX

typedef struct fsm_state {
  char *name;
  bool initial, final;
  fsm_action entry, action, exit;
  bool continuation;
  int64_t continuation_countdown_ms;
  fsm_fan_in fan_in;
  int64_t fan_in_window_ms;       /* FSM_FAN_WINDOW */
  uint32_t fan_in_count;          /* FSM_FAN_COUNT; 0: all replicas */
  uint32_t fan_in_tolerate;
  char *fan_in_group;             /* a context key, or NULL */
  bool wait;                      /* a wait state */
  char **wait_events;
  size_t nwait_events;
  int64_t wait_timeout_ms;        /* -1: none */
  char *wait_timeout_event;
  uint32_t on_failure;            /* FSM_NO_STATE: the machine's */
  fsm_transition *trans;
  size_t ntrans;
  fsm_pos pos;
} fsm_state;

typedef struct fsm_machine {
  char *name;
  char *namespace_; /* prefix of action names, or NULL */
  uint32_t version;
  char *queue;      /* NULL: run on the loop, no queue */
  fsm_retry retry;
  uint32_t on_failure; /* FSM_NO_STATE: none */
  fsm_ctx_type *ctypes;
  size_t nctypes;
  fsm_state *states;
  size_t nstates;
  uint32_t initial;
  unsigned char hash[32]; /* of fsm_def_encode's bytes */
  fsm_pos pos;
  /* added by the loader (branch fsmload): Fantasm's machine-level
     countdown, the default of its transitions ({-1, -1}: none) */
  fsm_countdown countdown;
} fsm_machine;

typedef struct fsm_set {
  fsm_machine *machines;
  size_t nmachines;
  char **files; /* every file read (the root first), for fsm_pos */
  size_t nfiles;
  /* queues: and schedules: sections are handed to the queue layer's
     reader (lib/queue/) as the loader meets them */
} fsm_set;

void fsm_set_free(fsm_set *s);
const fsm_machine *fsm_set_find(const fsm_set *s, const char *name);
uint32_t fsm_state_find(const fsm_machine *m, const char *name);

/* A machine as one canonical msgpack value (no positions), and back:
 * the interpreter stores a definition once, by hash, and decodes it at
 * recovery.  decode returns MLY_EBADMSG for anything malformed. */
int fsm_def_encode(const fsm_machine *m, char **buf, size_t *len);
int fsm_def_decode(const void *buf, size_t len, fsm_machine **out);
void fsm_machine_free(fsm_machine *m);

#endif
