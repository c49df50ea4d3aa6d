/*
 * internal.h - what the files of lib/ share and nobody else sees.
 *
 * An instance is a `struct mly_inst`: the public `struct mly_machine` head
 * that the body macros touch, then the runtime's bookkeeping, then the
 * user's data (type->data_size bytes).  Instances come from a per-type
 * pool and are found by id through a slot table: id = generation << 32 |
 * slot, so a stale id never reaches a reused slot.
 *
 * Invariants (kept by machine.c and timer_heap.c, checked by invariant.c;
 * docs/design.md says why they matter):
 *   - an instance is in the ready queue  <=>  m->head.flags & F_QUEUED;
 *   - an instance is in the timer heap   <=>  heap_idx != NO_HEAP;
 *   - it is in one place at a time: queued (to run), in the heap (waiting
 *     with a deadline), or only waiting (for an event, a child, a wake):
 *     never queued and in the heap at once, and a held durable instance
 *     with a pending wake (D_WAKE) is not queued;
 *   - the uv timer is armed for the heap's earliest deadline, or stopped
 *     when the heap is empty: every removal of the earliest entry re-arms
 *     it (at once from host code, at the end of a loop callback inside
 *     one), so an ended or suspended sleeper never holds the loop;
 *   - a reply in an inbox is for the instance's current request wait
 *     (only that wait can take it: anything else is counted late);
 *   - head.wait == W_NONE while the instance runs or is queued to run for
 *     a reason that already satisfied it; events then only enter the inbox;
 *   - only the loop thread touches anything here but rt->post (post.c).
 */
#ifndef MLY_INTERNAL_H
#define MLY_INTERNAL_H

#include "mealy.h"
#include "freelist.h"
#include "value.h"

#include <stdio.h>
#include <string.h>

/* head.wait: what a yielded instance waits for. */
enum {
  W_NONE = 0, /* running, or not waiting                      */
  W_TURN,     /* the next loop turn                           */
  W_SLEEP,    /* its timer                                    */
  W_COND,     /* anything that may change its condition       */
  W_EVENT,    /* an event: wait_id (0 any), from wait_arg (0 any) */
  W_REPLY,    /* a reply with correlation id wait_arg         */
  W_CHILDREN  /* it has exited; its children are being stopped */
};

/* head.woke: why the wait ended. */
enum { WOKE_NONE = 0, WOKE_TURN, WOKE_TIMER, WOKE_EVENT, WOKE_SHUTDOWN,
       WOKE_ERROR, WOKE_START };

/* head.flags */
#define F_QUEUED 0x01u    /* in the ready queue                          */
#define F_SHUT_REQ 0x02u  /* a shutdown was requested                    */
#define F_SHUT_WAKE 0x04u /* ... and has not yet ended a wait            */
#define F_IN_SHUTDOWN 0x08u /* running the type's shutdown routine       */
#define F_ENDING 0x10u    /* exited; stopping its children              */
#define F_KILL 0x20u      /* to be ended by force after its step         */
#define F_REWAKE 0x40u    /* woken during its own step (W_COND)          */
#define F_PROBE MLY__F_PROBE /* recovery asks whether a point has code   */

/* Longer waits are this long: ~31,700 years, and no overflow in us. */
#define MAX_WAIT_MS 1000000000000000ll

#define NO_HEAP UINT32_MAX
#define NO_NEXT UINT32_MAX

typedef struct mly_inst mly_inst;

struct mly_type {
  mly_type_def def;
  char name[MLY_NAME_MAX + 1];
  mly_runtime *rt;
  size_t inst_size;     /* sizeof(mly_inst) + data, rounded */
  void *free_list;      /* pool: freed instances */
  void *chunks;         /* pool: chunks, linked through their first word */
  mly_type *next;
  uint64_t scan[5];     /* metrics.c: instances per lifecycle, counted
                           afresh by each mly_metrics_write */
};

/* dflags: durable instances (durable.c) */
#define D_HELD 0x1u      /* its last record is not yet durable: no step */
#define D_WAKE 0x2u      /* woken while held: runs once released       */
#define D_RECOVERED 0x4u /* brought back from the journal; first step   */
#define D_SILENT 0x8u    /* suspended: ends without a record            */
/* not only durable: a request took its reply with F_SHUT_WAKE pending,
 * so mly_shutdown_requested says false until the next wait (machine.c) */
#define D_SHUT_HIDE 0x10u
/* not only durable: it has a context or a name (context.h) */
#define D_EXT 0x20u

struct mly_inst {
  struct mly_machine head;
  uint32_t heap_idx;    /* while it has a timer: its place in the heap */
  uint32_t wait_id;
  int32_t status;       /* exit status / wait error */
  uint32_t step;        /* steps run */
  uint32_t dflags;      /* D_* */
  uint32_t rnext;       /* while F_QUEUED: slot of the next in its queue
                           (two fields, so the invariants can be checked:
                           it fills what was padding before id) */
  mly_id id;
  uint64_t wait_arg;    /* from-filter, correlation id or child id */
  mly_id wait_peer;     /* W_REPLY: the request's target (durable.c) */
  mly_type *type;
  mly_event *inbox;     /* tail of a circular list: inbox->next is head */
  mly_inst *parent;
  mly_inst *child;      /* newest child first */
  mly_inst *sib_next;   /* older sibling */
  mly_inst *sib_prev;   /* newer sibling */
  _Alignas(8) unsigned char data[]; /* user data, 8-byte aligned */
};

static inline mly_inst *INST(const mly_machine *m) {
  return (mly_inst *)(uintptr_t)m;
}

/* Timer heap (timer_heap.c): a binary min-heap of (deadline, seq). */
typedef struct heap_ent {
  uint64_t due_us; /* monotonic microseconds                         */
  uint32_t seq;    /* insertion order: FIFO among equal deadlines     */
  uint32_t slot;   /* the instance, by slot: 16 bytes an entry        */
} heap_ent;

typedef struct mly_heap {
  heap_ent *v;
  uint32_t n, cap;
  uint32_t seq;
  mly_inst **slots; /* the runtime's slot table, to find instances   */
} mly_heap;

int heap_push(mly_runtime *rt, mly_inst *m, uint64_t due_us);
/* Takes m out of the heap (no-op if it is not in it); re-arms the uv
 * timer when the earliest deadline changed. */
void heap_remove(mly_runtime *rt, mly_inst *m);
void heap_free(mly_heap *h);

/* Event-name interning (intern.c). */
typedef struct mly_intern {
  char **names;   /* id - MLY_EV_NAME_BASE -> name */
  uint32_t n, cap;
  uint32_t *table; /* open addressing: index+1, 0 empty */
  uint32_t tcap;
} mly_intern;
#define MLY_EV_NAME_BASE 0x10000u
#define MLY_EV_NAME_MAX 0xfffe0000u /* ids below the signal range */
int intern_get(mly_intern *t, const char *name, uint32_t *out);
const char *intern_name(const mly_intern *t, uint32_t id);
void intern_free(mly_intern *t);

/* Cross-thread posts (post.c).  A durable post carries its callback in
 * a box, pointed to by the event's status while it travels. */
#define EVF_DURABLE_POST 0x80000000u
/* A shutdown request queued behind journaled events (durable.c). */
#define EVF_SHUTDOWN_REQ 0x40000000u
/* A durable step's send to an id held by no instance here, over a shared
 * store: it reaches its owner through the database (durable.c). */
#define EVF_REMOTE 0x20000000u
typedef struct post_cb_box {
  mly_post_cb cb;
  void *arg;
} post_cb_box;
typedef struct mly_post_q {
  uv_mutex_t lock;
  mly_event *head, *tail; /* posted, not yet taken by the loop */
  uint32_t n, max;        /* how many are posted; the bound          */
  bool stopping;          /* mly_runtime_shutdown was called: refuse  */
  bool closed;
  uv_async_t async;
} mly_post_q;

typedef struct sig_watch {
  uv_signal_t handle;
  mly_runtime *rt;
  int signum;
  mly_id *ids;
  uint32_t n, cap;
} sig_watch;

typedef struct mly_proc mly_proc;
typedef struct dur_state dur_state;
typedef struct inst_ext inst_ext;
typedef struct names names;

struct mly_runtime {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  bool owns_loop;
  uv_thread_t owner;
  mly_runtime_options opt;

  /* slot table */
  mly_inst **slots;
  uint32_t *gens;
  uint32_t nslots, slot_cap;
  uint32_t *free_slots;
  uint32_t nfree, free_cap;
  bool slots_confined; /* slots_confine: new slots only from the list */
  uint32_t conf_lo, conf_hi; /* ... its range */
  bool slots_own_only;  /* a task pool: a slot outside the range is never
                           free here (its instances move between
                           processes); dpool.c */
  struct lent_slot *lent_slots; /* slots lent to the pool (slot_lend) */

  mly_type *types;

  /* scheduling */
  mly_inst *ready_head, *ready_tail;
  mly_inst *later_head, *later_tail; /* yielded to the next turn */
  mly_inst *running;
  mly_event *cur;          /* the event the running step took */
  uv_idle_t idle;
  bool idle_on;

  mly_heap heap;
  uv_timer_t timer;
  uint64_t timer_due;      /* deadline (us) the uv timer is armed for; 0 none */
  bool in_cb;              /* in idle_cb, timer_cb or the post async_cb:
                              they re-arm the timer once, at the end */

  mly_id *kills;           /* mly_kill from inside a step */
  uint32_t nkills, kills_cap;

  mly_event *ev_free;      /* recycled events */
  uint32_t ev_nfree;       /* ... how many: at most EV_FREE_MAX are kept */
  uint64_t corr_next;

  mly_intern intern;
  mly_post_q post;
  sig_watch **sigs;
  uint32_t nsigs;
  mly_proc *procs;
  size_t nprocs;

  /* shutdown */
  bool stopping, stopped, closing, close_pending;
  uv_timer_t grace;
  int open_handles;

  mly_stats st;
  dur_state *dur;          /* NULL: no journal (durable.c) */
  inst_ext **exts;         /* contexts and names by slot (context.c):
                              NULL until the first; nexts long        */
  uint32_t next_cap, nexts; /* its length; how many are held           */
  freelist ext_pool;       /* freed inst_ext kept for reuse (context.c) */
  names *names;            /* the name table (names.c) */

  struct metrics_src *msrc; /* metrics sources, in order (metrics.c) */
  uint32_t nmsrc, msrc_cap;
  /* layers above (mly_runtime_attach): released last */
  struct {
    const char *key;
    void *ptr;
    void (*release)(void *ptr);
  } attached[MLY_ATTACH_MAX];
  uint32_t nattached;
};

static inline bool inst_durable(const mly_runtime *rt, const mly_inst *m) {
  return rt->dur != NULL && (m->type->def.flags & MLY_TYPE_DURABLE);
}

/* Names a user gives (yield points, events) are printed in tables and
 * logs and kept in the journal: no control characters in them. */
static inline bool has_control(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
  return false;
}

/* runtime.c */
bool rt_on_loop_thread(const mly_runtime *rt);
/* The runtime's clock: monotonic milliseconds, read fresh (not libuv's
 * cached loop time, which is stale inside a long batch). */
static inline uint64_t rt_now_us(void) { return uv_hrtime() / 1000u; }
void rt_schedule(mly_runtime *rt);        /* make sure the idle runs */
void rt_arm_timer(mly_runtime *rt);
/* The earliest deadline went: re-arm now, or at the end of the loop
 * callback that is running (it re-arms anyway). */
void rt_deadline_changed(mly_runtime *rt);
void rt_maybe_stop(mly_runtime *rt);
void rt_keep_alive(mly_runtime *rt);
void rt_bytes(mly_runtime *rt, ptrdiff_t delta);
void rt_handle_closed(uv_handle_t *h);
void rt_release(mly_runtime *rt);

/* machine.c */
mly_inst *inst_get(const mly_runtime *rt, mly_id id);
int slots_reserve(mly_runtime *rt, uint32_t n);
int slots_finish(mly_runtime *rt);
void slots_confine(mly_runtime *rt, uint32_t lo, uint32_t hi);
int slots_rerange(mly_runtime *rt, uint32_t lo, uint32_t hi);
/* dpool.c: a slot whose instance left for the pool is not reused (lent)
 * until the instance ended wherever it ran (unlent). */
void slot_lend(mly_runtime *rt, uint32_t s);
void slot_unlend(mly_runtime *rt, uint32_t s);
void slots_lent_free(mly_runtime *rt);
void inst_wake(mly_inst *m, uint8_t reason);
void inst_run_batch(mly_runtime *rt, uint32_t budget);
void inst_timer_fired(mly_inst *m);
void inst_request_shutdown(mly_inst *m); /* now */
void inst_ask_shutdown(mly_inst *m);     /* in order with events to m */
void inst_kill(mly_inst *m);
void inst_kill_all(mly_runtime *rt);
void inst_free_pools(mly_runtime *rt);
void inst_ready(mly_inst *m);            /* queue it to run */
void inst_unqueue_flagged(mly_runtime *rt, uint32_t dflags); /* one pass */
void inst_end_now(mly_inst *m, int status); /* by force, children first */
void inst_exit(mly_inst *m);
mly_inst *inst_restore(mly_runtime *rt, mly_type *t, mly_id id);
void inst_link_child(mly_inst *parent, mly_inst *m);
void notify_parent_event(mly_runtime *rt, mly_inst *p, mly_event *e);

/* durable.c: the runtime's side of the journal */
bool durable_send(mly_runtime *rt, mly_id from, mly_inst *to, mly_event *e,
                  int *rc);
/* A send to an id not in this process, over a shared store, and not in
 * its own slot range (one there that is not here has ended): it goes
 * through the database to the process that owns it (true: taken, *rc
 * says how; e NULL: only whether it would be).  A durable step's goes
 * with its step; any other (the host, a plain machine) in an EVENT
 * record of its own.  false: not such a send. */
bool durable_send_remote(mly_runtime *rt, mly_id from, mly_id to,
                         mly_event *e, int *rc);
void durable_spawned(mly_runtime *rt, mly_inst *m);
/* 0, or < 0: the step cannot be committed (its context does not encode,
 * its record passes the bound): nothing of it was kept, end it */
int durable_step_end(mly_runtime *rt, mly_inst *m, bool exited);
bool durable_end(mly_runtime *rt, mly_inst *m, bool failed);
void durable_step_abandoned(mly_runtime *rt);
void durable_took(mly_runtime *rt, mly_inst *m, mly_event *e);
void durable_dropped(mly_runtime *rt, mly_event *e);
void durable_fail_all(mly_runtime *rt, int rc);
void durable_flush(mly_runtime *rt);
bool durable_paused(const mly_runtime *rt); /* a compaction waits */
void durable_suspend_all(mly_runtime *rt);
void durable_close(mly_runtime *rt);
void durable_post(mly_runtime *rt, mly_event *e);
bool durable_order_shutdown(mly_runtime *rt, mly_inst *m);
int durable_check_spawn(mly_runtime *rt, mly_type *t);

/* event.c */
#define EV_FREE_MAX 4096
mly_event *ev_new(mly_runtime *rt);
void ev_free(mly_runtime *rt, mly_event *e);
void ev_free_all(mly_runtime *rt);
int ev_deliver(mly_runtime *rt, mly_inst *to, mly_event *e);
mly_event *inbox_take(mly_inst *m, uint32_t id, uint64_t from, bool reply,
                      uint64_t corr);
void inbox_clear(mly_runtime *rt, mly_inst *m);
void inbox_append(mly_inst *m, mly_event *e);  /* no test, no wake */
bool inbox_has_match(const mly_inst *m);        /* for its current wait */
int ev_send(mly_runtime *rt, mly_id from, mly_id to, uint32_t id,
            uint32_t flags, uint64_t corr, mly_value *payload);

/* post.c */
int post_init(mly_runtime *rt);
void post_stop(mly_runtime *rt);  /* refuse from now on (shutdown) */
void post_close(mly_runtime *rt);
bool post_pending(const mly_runtime *rt); /* posted, not yet taken */

/* signal.c */
void sig_close_all(mly_runtime *rt);
void sig_forget(mly_runtime *rt, mly_id id);

/* spawn.c: the child's setup; the exit status of our own child */
int spawn_process(const mly_process_options *o, int *pid, int *pidfd);
int spawn_reaped(int pid, int64_t *status, int *term_signal);

/* process.c */
void proc_close_all(mly_runtime *rt);
/* Its owner ended: signal its processes (mealy.h), or with let_go (a
 * suspended durable owner) leave them running, watched. */
void proc_owner_ended(mly_runtime *rt, mly_id owner, bool let_go);
int proc_check(const mly_runtime *rt); /* for invariant.c */

/* invariant.c: 0, or MLY_EBADMSG with the first broken invariant in err.
 * O(instances); for tests, between loop callbacks. */
int rt_check(const mly_runtime *rt, char *err, size_t len);

/* introspect.c */
const char *inst_point_name(const mly_inst *m, char *buf, size_t len);

#endif /* MLY_INTERNAL_H */
