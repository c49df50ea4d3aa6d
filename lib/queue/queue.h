/*
 * queue.h - what the files of lib/queue/ share: the queue layer of one
 * runtime (layer.c), its queues and their dispatchers (dispatch.c), the
 * task machine (task.c), attempts (attempt.c), the clock (clock.c),
 * slots for other machines' steps (slot.c).
 *
 * The durable truth is in the task instances (their data and context,
 * D10); everything here is memory that recovery rebuilds: a task that
 * reaches its `waiting` point (again, after a restart) registers itself
 * with its queue's dispatcher.  Nothing here is touched off the loop
 * thread except an attempt's outcome fields, by a blocking function's
 * mly_task_done on its threadpool thread (attempt.c says how).
 */
#ifndef MLY_QUEUE_H
#define MLY_QUEUE_H

#include "mealy.h"
#include "../freelist.h"
#include "../taskpool.h"
#include "../value.h"

#include <uthash.h>

#define TQ_TYPE "mly.task"
#define TQ_CLOCK_TYPE "mly.queue.clock"
#define TQ_SCHED_TYPE "mly.schedule"
#define TQ_QSTATE_TYPE "mly.queue"
#define TQ_ATTACH "queue"
#define TQ_NAME_PREFIX "task:"
#define TQ_EV_RETRY "mly.task.retry"
#define TQ_DEFAULT_CONCURRENT 1000
#define TQ_DEFAULT_LEVELS 10
#define TQ_MAX_LEVELS 1000

/* The task instance's data: saved byte for byte with every step. */
/* Its first layout (type version 1), still read from old journals and
 * converted on restore (tqdata.c): two fixed name arrays, mostly zeros,
 * in every record. */
typedef struct tq_data_v1 {
  char queue[MLY_NAME_MAX + 1];
  char target[MLY_NAME_MAX + 1];
  uint8_t kind, state, pad[2];
  int32_t priority, last_error;
  uint32_t attempts, failures, pad2;
  int64_t eta_ms, created_ms, first_run_ms;
  uint64_t seq;
  mly_retry retry;
  char last_msg[MLY_TASK_MSG_MAX + 1];
} tq_data_v1;

/* Now (type version 2): numbers first, then the three strings packed
 * one after another ("queue\0target\0last_msg\0") and zeros, which the
 * journal trims from the end of a record.  `layout` tells the two apart:
 * a version-1 record begins with its queue's name, a printable byte. */
#define TQ_LAYOUT 2
#define TQ_TEXT_MAX (2 * (MLY_NAME_MAX + 1) + MLY_TASK_MSG_MAX + 1)
typedef struct tq_data {
  uint8_t layout; /* TQ_LAYOUT */
  uint8_t kind;   /* mly_task_kind */
  uint8_t state;  /* mly_task_state */
  uint8_t pad;
  int32_t priority;
  int32_t last_error;
  uint32_t attempts, failures;
  uint32_t pad2;
  int64_t eta_ms, created_ms, first_run_ms;
  uint64_t seq;
  mly_retry retry; /* as given: fields < 0 are the queue's */
  char text[TQ_TEXT_MAX]; /* tqdata.c's accessors read and write it */
} tq_data;

/* tqdata.c */
const char *tq_d_queue(const tq_data *d);
const char *tq_d_target(const tq_data *d);
const char *tq_d_msg(const tq_data *d);
/* the three strings, each cut to its bound (queue and target at
 * MLY_NAME_MAX, the message at MLY_TASK_MSG_MAX); zeros after */
void tq_d_set_text(tq_data *d, const char *queue, const char *target,
                   const char *msg);
void tq_d_set_msg(tq_data *d, const char *msg);
/* a version-1 layout converted in place, a text made NUL-safe (data read
 * from a file); a current one left as it is */
void tq_d_upgrade(tq_data *d);

/* A queue's state instance's data (qstate.c; read offline by offline.c). */
typedef struct qs_data {
  char queue[MLY_NAME_MAX + 1];
  uint8_t paused;
  uint8_t pad[7];
} qs_data;

typedef struct tq_queue tq_queue;
typedef struct tq_rec tq_rec;
typedef struct tq_layer tq_layer;

/* One attempt (the public mly_task). */
struct mly_task {
  tq_layer *L;
  tq_rec *rec;          /* NULL once abandoned (timeout, task ended) */
  mly_runtime *rt;
  mly_id id;
  const mly_value *payload;
  const char *name;
  char queue[MLY_NAME_MAX + 1];
  mly_task_target target;
  char target_name[MLY_NAME_MAX + 1];
  uint32_t attempt;
  mly_task_fn fn;
  void *fn_arg;
  bool blocking;        /* runs on the threadpool: set before, read only */
  bool in_pool;         /* its work request has not come back            */
  bool reported;
  mly_task_outcome outcome;
  char msg[MLY_TASK_MSG_MAX + 1];
  uint64_t deadline_us; /* 0: no timeout */
  mly_task *rnext, *rprev; /* the queue's running list, start order */
  uv_work_t work;
};

/* Running attempts per value of a queue's concurrency key. */
typedef struct tq_keyc {
  char *val;
  uint32_t running;
  tq_rec *blocked, *blocked_tail; /* waiting only for this key */
  UT_hash_handle hh;
} tq_keyc;

/* The in-memory side of a task that reached `waiting`. */
struct tq_rec {
  mly_id id;
  tq_queue *q;
  uint32_t heap_idx;    /* in q->heap, or TQ_NO_HEAP */
  int32_t priority;
  int64_t eta_ms;
  uint64_t seq;
  char *keyval;         /* its concurrency key value, or NULL */
  tq_keyc *kc;          /* while it holds a key slot or is blocked on one */
  tq_rec *bnext;        /* in kc's blocked list */
  bool blocked;
  bool granted;         /* a slot is held for it: it may start */
  bool holds_slot;      /* granted or running: counted in q->running */
  mly_task *att;        /* the attempt running, or NULL */
  uint32_t pool_inflight; /* its blocking attempts not yet back */
  bool finished;        /* an outcome waits for the task's step */
  mly_task_outcome outcome;
  int32_t err;
  char msg[MLY_TASK_MSG_MAX + 1];
};
#define TQ_NO_HEAP UINT32_MAX

struct tq_queue {
  tq_layer *L;
  mly_queue_def def;    /* resolved; strings point into the fields below */
  char name[MLY_NAME_MAX + 1];
  char key[MLY_NAME_MAX + 1];
  bool declared;        /* false: named by a recovered task only */
  bool paused;
  bool state_dirty;     /* paused changed; no state instance holds it yet */
  mly_id state_id;      /* its "mly.queue" instance (qstate.c), 0: none */
  tq_rec **heap;        /* due tasks waiting for a slot */
  uint32_t n, cap;
  uint32_t running;     /* slots held */
  tq_keyc *keys;
  double tokens;
  uint64_t refill_us;
  uint64_t started, succeeded, failed, dead_lettered;
  uint64_t singular, permanent, timed_out;
  mly_task *run_head, *run_tail;
  tq_queue *next;       /* declaration order */
  UT_hash_handle hh;
};

typedef struct tq_fn {
  char name[MLY_NAME_MAX + 1];
  mly_task_fn fn;
  void *arg;
  unsigned flags;
  UT_hash_handle hh;
} tq_fn;

typedef struct tq_added {
  mly_id id;
  mly_task_added_cb cb;
  void *arg;
  UT_hash_handle hh;
} tq_added;

typedef struct tq_sched tq_sched;

/* A slot for another machine's step (slot.c): a record as a task's, in
 * the layer's own table of steps (by the machine's id). */
typedef struct tq_step {
  tq_rec rec;
  UT_hash_handle hh;
} tq_step;

struct tq_layer {
  mly_runtime *rt;
  mly_type *type, *clock_type, *qs_type;
  bool states_synced;   /* the queues' state instances were looked up */
  uint32_t ev_retry;
  tq_queue *queues, *qhead, *qtail;
  tq_fn *fns;
  tq_fn starter;
  bool has_starter;
  tq_fn *fn_last;       /* tq_fn_find's last answer (fns are freed only
                           with the layer) */
  freelist rec_pool, att_pool; /* freed records and attempts, reused */
  tq_rec **recs;        /* by the task's slot (its id's low 32 bits) */
  uint32_t nrecs;
  tq_added *added;
  uint64_t last_seq;
  uint64_t rand;        /* xorshift state for jitter */
  mly_id clock;         /* the clock instance, 0: none */
  uint64_t clock_due;   /* what it sleeps until (us), 0: nothing */
  bool closing;
  bool held;            /* mly_queues_hold: no slot is granted */
  tq_step *steps;       /* slot.c: steps holding or waiting for a slot */
  /* schedule.c */
  mly_type *sc_type;
  tq_sched *scheds;
  int64_t (*sc_now)(void *arg); /* test clock (ms), NULL: the wall clock */
  void *sc_now_arg;
  uint64_t sc_due_us;           /* earliest schedule tick (clock), 0 */
  taskpool *pool;               /* a shared store's (tq_pool), or NULL */
  taskpool_user pool_user;      /* told when the pool comes (pool.c) */
};

/* task.c: a task's in-memory record, found by its slot (O(1)) */
tq_rec *tq_rec_find(const tq_layer *L, mly_id id);

/* layer.c */
tq_layer *tq_get(mly_runtime *rt);
tq_queue *tq_queue_find(tq_layer *L, const char *name);
tq_queue *tq_queue_get(tq_layer *L, const char *name); /* placeholder ok */
tq_fn *tq_fn_find(tq_layer *L, const char *name);
/* 1 to MLY_NAME_MAX of [A-Za-z0-9_.-] (mly_queue_declare's rule) */
bool tq_valid_qname(const char *s);
/* 1..max bytes, no control character, '/' or '@' (a schedule's name
 * and what it runs): 0 or MLY_EINVAL */
int tq_check_name(const char *n, size_t max);
void tq_resolve(const tq_queue *q, const mly_retry *given, mly_retry *out);
/* 0, or MLY_EINVAL (with a sentence naming queue q in err) */
int tq_check_retry(const mly_retry *r, const char *q, char *err, size_t len);
uint64_t tq_rand(tq_layer *L);
int64_t tq_wall_ms(void);
uint64_t tq_now_us(void);

/* dispatch.c */
void tq_enqueue(tq_queue *q, tq_rec *r);   /* due: wait for a slot */
void tq_dispatch(tq_queue *q);
void tq_release_slot(tq_rec *r);           /* its attempt is over */
void tq_forget(tq_rec *r);                 /* out of heap and key lists */
uint64_t tq_queue_due(tq_queue *q);        /* next clock need, 0: none */
void tq_queue_free(tq_queue *q);

/* attempt.c */
void tq_attempt_start(tq_layer *L, tq_rec *r, tq_data *d);
void tq_finish(tq_rec *r, mly_task_outcome o, int err, const char *msg);
void tq_timeouts(tq_queue *q, uint64_t now_us);
void tq_abandon(tq_rec *r);                /* the task ends under it */

/* clock.c */
int tq_clock_register(tq_layer *L);
/* qmetrics.c: the layer's figures in mly_metrics_write */
int tq_metrics_source(mly_metrics *mx, void *arg);
void tq_clock_need(tq_layer *L, uint64_t due_us);
void tq_tick(tq_layer *L);

/* qstate.c */
int tq_qstate_register(tq_layer *L);
bool tq_journaled(tq_layer *L);       /* a journal is open */
void tq_states_sync(tq_layer *L);     /* once, before the first dispatch */
void tq_state_declared(tq_queue *q);
void tq_state_changed(tq_queue *q);   /* paused or resumed */

/* schedule.c */
int tq_sched_register(tq_layer *L);
void tq_sched_tick(tq_layer *L);   /* wake the schedules that are due */
void tq_sched_free_all(tq_layer *L);

/* tasks.c: a task's listing from its data, name and payload */
void tq_task_info(const tq_data *d, mly_id id, const char *iname,
                  const mly_value *payload, const tq_queue *q,
                  mly_task_info *out);

/* task.c */
int tq_task_register(tq_layer *L);
/* The concurrency key's value in a payload (a map), as text: a string,
 * or an integer printed; NULL for none (or no memory). */
char *tq_key_value(const tq_queue *q, const mly_value *payload);

/* pool.c: the shared store's task pool, NULL without one (the journal:
 * limits in memory); a queue served (claimed from) with its limits */
taskpool *tq_pool(tq_layer *L);
void tq_serve(tq_queue *q);
void tq_serve_all(tq_layer *L);
int tq_pool_user(tq_layer *L); /* attaches L->pool_user */

/* slot.c: the steps' slots go with the layer */
void tq_steps_free(tq_layer *L);

#endif /* MLY_QUEUE_H */
