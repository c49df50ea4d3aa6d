/*
 * mealy.h - the one public header of libmealy.
 *
 * mealy hosts many small Mealy machines on a libuv loop.  A machine is a
 * resumable C function, written top to bottom like ordinary code, that
 * yields while it waits for a timer, an event, a child machine, a reply or
 * a child process.  This header is the whole API and reads as its manual.
 *
 * Conventions (as in libuv):
 *   - functions return 0 or a negative MLY_E* code; mly_strerror() names it;
 *   - everything runs on the loop thread that owns the runtime, except
 *     mly_post(), which any thread may call;
 *   - objects come in pairs: _new/_free, _open/_close, _start/_stop.
 *   - no global state: many runtimes may live in one process.
 */
#ifndef MEALY_H
#define MEALY_H

/* uv.h needs POSIX 2008 (pthread_rwlock_t): under a strict -std=c11 with
 * no feature-test macro, ask for it here (gnu11 has it by default).  That
 * only works when mealy.h comes before any system header; otherwise say
 * how to fix it. */
#if defined(__STRICT_ANSI__) && !defined(_POSIX_C_SOURCE) &&            \
    !defined(_XOPEN_SOURCE) && !defined(_GNU_SOURCE) &&                 \
    !defined(_DEFAULT_SOURCE) && !defined(_BSD_SOURCE)
#if defined(_FEATURES_H)
#error "mealy.h (through uv.h) needs POSIX 2008: include <mealy.h> first, or compile with -D_POSIX_C_SOURCE=200809L (or -D_GNU_SOURCE)"
#endif
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MLY_VERSION_MAJOR 0
#define MLY_VERSION_MINOR 1
#define MLY_VERSION_PATCH 0

/* ------------------------------------------------------------------ */
/* Errors: negative errno values, like libuv's UV_E*.                  */

#define MLY_EPERM        (-EPERM)        /* wrong thread, not allowed     */
#define MLY_ENOENT       (-ENOENT)       /* no such key, type or point    */
#define MLY_ESRCH        (-ESRCH)        /* no such (live) instance       */
#define MLY_EIO          (-EIO)
#define MLY_ENOMEM       (-ENOMEM)
#define MLY_EBUSY        (-EBUSY)
#define MLY_EEXIST       (-EEXIST)
#define MLY_EINVAL       (-EINVAL)
#define MLY_ENOSPC       (-ENOSPC)
#define MLY_ERANGE       (-ERANGE)
#define MLY_ENAMETOOLONG (-ENAMETOOLONG)
#define MLY_ENOSYS       (-ENOSYS)
#define MLY_EBADMSG      (-EBADMSG)      /* malformed encoded data        */
#define MLY_ESHUTDOWN    (-ESHUTDOWN)    /* runtime is stopping           */
#define MLY_ETIMEDOUT    (-ETIMEDOUT)
#define MLY_ECANCELED    (-ECANCELED)    /* ended by force                */
#define MLY_EAGAIN       (-EAGAIN)       /* not yet: try again later      */
/* Codes of mealy's own, outside the errno range (as libuv's UV_EOF): */
/* the outcome is not known: a durable post whose record may or may not
 * have reached the disk (see mly_post_durable) */
#define MLY_EUNKNOWN     (-4090)
/* a recovered wait whose cause did not survive the restart: a child or
 * a peer that was not durable, a child process, a signal watch */
#define MLY_ELOST        (-4091)

/* A sentence for an error code; never NULL, never allocates. */
const char *mly_strerror(int err);

/* ------------------------------------------------------------------ */
/* Values (layer `value`): typed trees encoded with msgpack.           */
/*                                                                     */
/* A value is nil, bool, int, uint, double, string, binary, array or   */
/* map (string keys).  Constructors return NULL when out of memory.    */
/* Containers own what is put in them: mly_array_push and mly_map_set  */
/* take ownership of the value even when they fail (it is freed).      */

typedef enum mly_vtype {
  MLY_V_NIL = 0,
  MLY_V_BOOL,
  MLY_V_INT,
  MLY_V_UINT,
  MLY_V_DOUBLE,
  MLY_V_STR,
  MLY_V_BIN,
  MLY_V_ARRAY,
  MLY_V_MAP
} mly_vtype;

typedef struct mly_value mly_value;

mly_value *mly_value_nil(void);
mly_value *mly_value_bool(bool b);
mly_value *mly_value_int(int64_t i);
mly_value *mly_value_uint(uint64_t u);
mly_value *mly_value_double(double d);
mly_value *mly_value_str(const char *s);                 /* NUL-terminated */
mly_value *mly_value_strn(const char *s, size_t len);    /* may hold NULs */
mly_value *mly_value_bin(const void *p, size_t len);
mly_value *mly_value_array(void);
mly_value *mly_value_map(void);
void mly_value_free(mly_value *v);                       /* NULL is fine */
mly_value *mly_value_copy(const mly_value *v);           /* deep copy */
bool mly_value_equal(const mly_value *a, const mly_value *b);
mly_vtype mly_value_type(const mly_value *v);            /* NULL -> NIL */
const char *mly_vtype_name(mly_vtype t);                 /* "int", ... */

/* Typed reads: MLY_EINVAL if the type does not match.  get_int accepts a
 * uint that fits in int64_t and get_uint a non-negative int; otherwise
 * MLY_ERANGE.  Strings and binaries are returned by reference: valid as
 * long as the value is.  Strings are always NUL-terminated. */
int mly_value_get_bool(const mly_value *v, bool *out);
int mly_value_get_int(const mly_value *v, int64_t *out);
int mly_value_get_uint(const mly_value *v, uint64_t *out);
int mly_value_get_double(const mly_value *v, double *out); /* ints too */
int mly_value_get_str(const mly_value *v, const char **s, size_t *len);
int mly_value_get_bin(const mly_value *v, const void **p, size_t *len);

/* Arrays and maps.  mly_value_len is the element (pair) count, 0 for a
 * scalar.  Maps keep insertion order; setting an existing key replaces
 * its value in place. */
size_t mly_value_len(const mly_value *v);
int mly_array_push(mly_value *array, mly_value *elem);
mly_value *mly_array_at(const mly_value *array, size_t i);
int mly_map_set(mly_value *map, const char *key, mly_value *val);
mly_value *mly_map_get(const mly_value *map, const char *key);
int mly_map_del(mly_value *map, const char *key);        /* MLY_ENOENT */
int mly_map_at(const mly_value *map, size_t i, const char **key,
               mly_value **val);
/* Shorthands: set builds the value; get returns MLY_ENOENT when the key
 * is missing and MLY_EINVAL/MLY_ERANGE as the typed reads do. */
int mly_map_set_int(mly_value *map, const char *key, int64_t i);
int mly_map_set_uint(mly_value *map, const char *key, uint64_t u);
int mly_map_set_double(mly_value *map, const char *key, double d);
int mly_map_set_bool(mly_value *map, const char *key, bool b);
int mly_map_set_str(mly_value *map, const char *key, const char *s);
int mly_map_get_int(const mly_value *map, const char *key, int64_t *out);
int mly_map_get_uint(const mly_value *map, const char *key, uint64_t *out);
int mly_map_get_double(const mly_value *map, const char *key, double *out);
int mly_map_get_bool(const mly_value *map, const char *key, bool *out);
int mly_map_get_str(const mly_value *map, const char *key, const char **s);

/* msgpack.  encode allocates *buf (free() it).  decode refuses anything
 * that is not exactly one well-formed value (MLY_EBADMSG): trailing
 * bytes, non-string map keys, ext types, nesting deeper than
 * MLY_VALUE_MAX_DEPTH. */
#define MLY_VALUE_MAX_DEPTH 64
int mly_value_encode(const mly_value *v, char **buf, size_t *len);
int mly_value_decode(const void *buf, size_t len, mly_value **out);
/* For streams: decode the first value of buf and say how many bytes it
 * used.  MLY_EAGAIN when buf holds only the start of a value. */
int mly_value_decode_prefix(const void *buf, size_t len, mly_value **out,
                            size_t *used);

/* ------------------------------------------------------------------ */
/* Runtime, types and instances.                                       */

typedef struct mly_runtime mly_runtime;
typedef struct mly_type mly_type;
typedef struct mly_machine mly_machine;

/* An instance id: never 0, never reused within a runtime. */
typedef uint64_t mly_id;

/* What a resume function returns; the MLY_* body macros return these. */
#define MLY_YIELDED 0
#define MLY_EXITED 1

/* A machine's body.  `data` is the instance's own data (data_size bytes,
 * zeroed, then filled from the spawn arguments). */
typedef int (*mly_fn)(mly_machine *m, void *data);

/* Type flags. */
#define MLY_TYPE_DROP_UNHANDLED 0x1u /* see "Events" below */
#define MLY_TYPE_DURABLE 0x2u        /* see "Durable machines" below */
/* every flag this version knows: registration refuses others (EINVAL) */
#define MLY_TYPE_FLAGS_ALL (MLY_TYPE_DROP_UNHANDLED | MLY_TYPE_DURABLE)

typedef struct mly_type_def {
  const char *name;          /* at most MLY_NAME_MAX bytes              */
  mly_fn run;                /* the body                                 */
  mly_fn shutdown;           /* optional: where a shutdown request goes  */
  const char *const *points; /* names of yield points, from MLY_POINTS   */
  uint32_t npoints;
  size_t data_size;          /* per-instance data                        */
  uint32_t version;          /* of the code, for persisted instances     */
  uint32_t min_version;      /* oldest persisted version this code still
                                resumes (0: only `version` itself)      */
  uint32_t flags;            /* MLY_TYPE_*                               */
  /* optional: called once when an instance is freed, however it ended */
  void (*fini)(mly_machine *m, void *data);
} mly_type_def;

#define MLY_NAME_MAX 63
/* A yield point name is at most this many bytes; mly_type_register
 * refuses a longer one (MLY_ENAMETOOLONG), a repeated one (MLY_EEXIST),
 * and with MLY_EINVAL: an empty or "line N" one, one with a control
 * character, a list whose first name (point 0) is not "begin" (MLY_POINTS
 * makes all of these right), a durable type without a points list, and
 * unknown flags.  Event names (mly_event_id) have no control characters
 * either (MLY_EINVAL). */
#define MLY_POINT_MAX 63

/* Lifecycle of an instance. */
typedef enum mly_lifecycle {
  MLY_LC_INIT = 0,   /* created; its first step has not run            */
  MLY_LC_READY,      /* waiting: for a timer, an event, a child...      */
  MLY_LC_ACTIVE,     /* runnable or running a step                      */
  MLY_LC_TERMINATED, /* ended with status 0                             */
  MLY_LC_FAILED      /* ended with a non-zero status, or by force       */
} mly_lifecycle;

const char *mly_lifecycle_name(mly_lifecycle lc); /* "init", "ready", ... */

typedef struct mly_runtime_options {
  uint32_t step_budget; /* steps per loop turn before I/O gets a turn;
                           0 = default (MLY_DEFAULT_STEP_BUDGET)        */
  /* called on the loop thread once the runtime has stopped: after
     mly_runtime_shutdown, when the last instance has ended and every
     post accepted before the shutdown has been taken.  It can run
     inside mly_runtime_shutdown itself (nothing was left to stop, or
     everything ended at once), or inside a second call that forces the
     end: do not free what the caller of mly_runtime_shutdown still uses */
  void (*on_stop)(mly_runtime *rt, void *arg);
  void *arg;
  /* events mly_post may hold that the loop has not taken yet; past it
     mly_post answers MLY_EAGAIN.  0 = default (MLY_DEFAULT_POST_QUEUE) */
  uint32_t post_queue_max;
} mly_runtime_options;

#define MLY_DEFAULT_STEP_BUDGET 4096
#define MLY_DEFAULT_POST_QUEUE 65536

/* Create a runtime on `loop`, or on a loop of its own when loop is NULL.
 * Embedding adds no thread and takes nothing over: the host's handles
 * keep running beside it.  The calling thread becomes the owner. */
int mly_runtime_new(mly_runtime **out, uv_loop_t *loop,
                    const mly_runtime_options *opt);
uv_loop_t *mly_runtime_loop(mly_runtime *rt);
/* True on the thread that owns rt (the one that created it and runs its
 * loop), where every call but the posts must be made.  Layers built on
 * the public API (queues, YAML machines) check it before they touch the
 * runtime's memory. */
bool mly_runtime_on_loop_thread(const mly_runtime *rt);

/* Run the runtime's own loop until no instance is left (or it stopped).
 * With a host loop, the host runs its loop instead. */
int mly_runtime_run(mly_runtime *rt);

/* Ask every top-level instance to shut down; each parent stops its
 * children (newest first) when it ends.  After grace_ms, whatever is left
 * is ended by force (mly_kill): grace_ms < 0 waits as long as it takes;
 * grace_ms == 0 asks, then ends what is left on the next loop turn (timer
 * phase), so a machine gets no step to react.  A second call while the
 * runtime is stopping forces the end at once, inside that call.  Durable
 * instances are suspended at the first call, not asked (see "Durable
 * machines").  From then on mly_spawn and mly_post answer MLY_ESHUTDOWN.
 * When the last instance is gone, on_stop runs (possibly inside this
 * call) and the runtime stops holding the loop alive.  Harmless to repeat
 * once everything has stopped. */
int mly_runtime_shutdown(mly_runtime *rt, int64_t grace_ms);
bool mly_runtime_stopping(const mly_runtime *rt);

/* End every instance by force (fini hooks run, no step runs), close the
 * runtime's handles and free it.  Durable instances are suspended, as by
 * mly_runtime_shutdown: they continue, inboxes whole, on the next open.
 * Child processes still running get SIGKILL (their group with
 * new_group), except detached ones and those of durable instances (left
 * for the next run): the runtime is released once they are reaped, so
 * none is orphaned.  With a host loop, the memory is released from the
 * handles' close callbacks: run the loop afterwards, as with uv_close.
 * With its own loop, it is all done on return. */
void mly_runtime_close(mly_runtime *rt);

/* Register a machine type.  Names are unique per runtime. */
int mly_type_register(mly_runtime *rt, const mly_type_def *def,
                      mly_type **out);
mly_type *mly_type_find(mly_runtime *rt, const char *name);

/* Create an instance.  Its data is zeroed, then the first arg_len bytes
 * are copied from arg (arg_len <= data_size).  It runs its first step on
 * the next loop turn.  Top-level instances have no parent; a machine
 * spawns children with mly_spawn_child.  Refused with MLY_ESHUTDOWN once
 * the runtime is stopping.  On a PostgreSQL store (mly_store_postgres)
 * a process makes its instances, durable or not, in its slot range:
 * 262,144 live at a time; the next is refused with MLY_ENOSPC (the range
 * is full: end some, or spread the work over more processes).  Memory
 * that cannot be had is MLY_ENOMEM. */
int mly_spawn(mly_runtime *rt, mly_type *type, const void *arg,
              size_t arg_len, mly_id *out);
int mly_spawn_child(mly_machine *parent, mly_type *type, const void *arg,
                    size_t arg_len, mly_id *out);

/* Ask an instance to shut down (see "Shutdown requests" under "Machine
 * bodies" below).  Repeats are harmless. */
int mly_shutdown(mly_runtime *rt, mly_id id);
/* End an instance now, by force: its children first (newest first), then
 * itself as failed with status MLY_ECANCELED; no step runs, fini hooks
 * do, and its child processes are signalled (see "Child processes").
 * From inside a step, of the instance itself or of any descendant (a
 * child killing its parent), it takes effect when that step returns,
 * and the children still end before the parent. */
int mly_kill(mly_runtime *rt, mly_id id);

/* Wake a machine that waits in MLY_WAIT_UNTIL so it re-tests its
 * condition.  No effect on other waits. */
int mly_wake(mly_runtime *rt, mly_id id);

/* An instance's data, for host code on the loop thread (NULL: no such
 * live instance).  Valid until the instance ends. */
void *mly_instance_data(mly_runtime *rt, mly_id id);
/* An instance's type, for host code on the loop thread (NULL: no such
 * live instance, or another thread).  Layers built on the public API
 * (the YAML machines) tell their own instances by it. */
mly_type *mly_instance_type(mly_runtime *rt, mly_id id);

/* The machine's own view of itself. */
mly_runtime *mly_machine_runtime(const mly_machine *m);
mly_id mly_self(const mly_machine *m);
mly_id mly_parent(const mly_machine *m);            /* 0: top level  */
void *mly_machine_data(mly_machine *m);
/* Idempotency key of the running step: instance id and step number. */
uint64_t mly_step_number(const mly_machine *m);

/* ------------------------------------------------------------------ */
/* Events.                                                             */
/*                                                                     */
/* An event has a 32-bit id: 1..0xffff are the application's own,      */
/* names are interned to ids by mly_event_id, and the MLY_EV_* ids     */
/* below come from the runtime.  Events sent during a step are          */
/* delivered in order per (sender, receiver) and the receiver runs      */
/* after the sending step.  An event that arrives while its receiver    */
/* is not waiting for it is queued in the receiver's inbox (postponed)  */
/* and taken by a later wait for that id; with MLY_TYPE_DROP_UNHANDLED  */
/* it is dropped and counted instead.  Sending to an instance that has */
/* ended is refused with MLY_ESRCH.                                     */

#define MLY_EV_ANY 0u                   /* await: any event            */
#define MLY_EV_USER_MAX 0xffffu
#define MLY_EV_CHILD_EXIT 0xffff0001u   /* a child machine ended       */
#define MLY_EV_PROCESS_EXIT 0xffff0002u /* a child process ended       */
#define MLY_EV_SIGNAL_BASE 0xfffe0000u
#define MLY_EV_SIGNAL(signum) (MLY_EV_SIGNAL_BASE + (uint32_t)(signum))

/* Event flags. */
#define MLY_EVF_REQUEST 0x1u
#define MLY_EVF_REPLY 0x2u

/*  event             status            aux                corr
 *  CHILD_EXIT        exit status       mly_lifecycle      -
 *  PROCESS_EXIT      exit code         terminating signal pid
 *  SIGNAL(n)         signal number     -                  -
 *  request / reply   -                 -                  correlation id */
typedef struct mly_event {
  uint32_t id;
  uint32_t flags;
  mly_id from;        /* sending instance; 0 from the host or a thread */
  uint64_t corr;
  int64_t status;
  int64_t aux;
  mly_value *payload; /* owned by the event; may be NULL               */
  struct mly_event *next; /* private */
  uint64_t eid;           /* private: its journal id, 0 if none        */
} mly_event;

/* Intern an event name ("config") to an id; the same name gives the
 * same id for the life of the runtime.  Loop thread; intern before
 * handing ids to other threads.  MLY_EINVAL for an empty name or one
 * with a control character, or a NULL out; MLY_ENAMETOOLONG past
 * MLY_NAME_MAX bytes. */
int mly_event_id(mly_runtime *rt, const char *name, uint32_t *out);
const char *mly_event_name(mly_runtime *rt, uint32_t id); /* NULL: none */

/* Send from a machine's step, or from host code on the loop thread.
 * The payload is owned by the runtime from the call on (also on error).
 * An event for a durable instance (here, or in another process of a
 * shared store) is written into a record: a payload whose encoding
 * passes the record bound (64 MiB, less 4 KiB for the event's fields)
 * is refused with MLY_ERANGE, one that does not encode (nested past
 * MLY_VALUE_MAX_DEPTH) with MLY_EINVAL; nothing is sent and the step
 * goes on (mly_reply and mly_post_durable too). */
int mly_send(mly_machine *from, mly_id to, uint32_t id, mly_value *payload);
int mly_runtime_send(mly_runtime *rt, mly_id to, uint32_t id,
                     mly_value *payload);
/* Reply to a request event with the same correlation id.  A reply that
 * arrives after its request has finished (timed out, or shut down) is
 * dropped and counted, never delivered to another wait. */
int mly_reply(mly_machine *m, const mly_event *request, uint32_t id,
              mly_value *payload);

/* The one thread-safe entry: post an event from any thread.  Events from
 * one thread arrive in the order posted.  Whether the target is alive is
 * known only on the loop thread: a post to an ended instance is dropped
 * and counted (stats.undeliverable).  The queue between the threads and
 * the loop is bounded (options.post_queue_max, MLY_DEFAULT_POST_QUEUE
 * events): when it is full the post is refused with MLY_EAGAIN (the
 * payload is freed; post again later), and once mly_runtime_shutdown has
 * been called, or the runtime is closing, with MLY_ESHUTDOWN.  The loop
 * takes at most step_budget posted events per turn, so a flood of posts
 * never starves the host's own handles and timers.  Every post answered
 * 0 is accounted for: stats.posted counts it when the loop takes it, and
 * it is then put in its target's inbox (stats.delivered) or counted in
 * stats.undeliverable; after a shutdown the runtime holds the loop (and
 * on_stop waits) until every post accepted before it has been taken, and
 * posts mly_runtime_close finds still queued are counted undeliverable
 * (a durable post's callback gets MLY_ESHUTDOWN).  mly_runtime_close
 * frees the runtime: the host must make its threads stop posting (join
 * them) before it calls mly_runtime_close. */
int mly_post(mly_runtime *rt, mly_id to, uint32_t id, mly_value *payload);

/* Inside a step: the event the last wait took (NULL if it ended for
 * another reason).  Valid until the machine yields or waits again.
 * take_payload hands the payload over to the caller. */
const mly_event *mly_current_event(const mly_machine *m);
mly_value *mly_event_take_payload(mly_machine *m);
/* Drop queued events with this id (MLY_EV_ANY: all); returns the count. */
size_t mly_inbox_drop(mly_machine *m, uint32_t id);
size_t mly_inbox_len(const mly_machine *m);
/* Queued events with this id (MLY_EV_ANY: all of them, as
 * mly_inbox_len); replies included. */
size_t mly_inbox_count(const mly_machine *m, uint32_t id);
/* Inside a step, without waiting: the oldest queued event with this id
 * (MLY_EV_ANY: any; a reply is never taken, only its request's wait
 * takes it), out of the inbox, or NULL.  It counts as consumed by this
 * step (a durable machine's step records it, D2).  The caller owns it:
 * mly_event_free, on the loop thread. */
mly_event *mly_inbox_take(mly_machine *m, uint32_t id);
/* Frees an event mly_inbox_take handed over, payload included (NULL:
 * nothing).  Loop thread. */
void mly_event_free(mly_runtime *rt, mly_event *e);

/* Unix signals as events: the machine receives MLY_EV_SIGNAL(signum). */
int mly_signal_watch(mly_machine *m, int signum);
int mly_signal_unwatch(mly_machine *m, int signum);

/* ------------------------------------------------------------------ */
/* Child processes.  Exit arrives as MLY_EV_PROCESS_EXIT to the owning */
/* machine (the runtime watches each child's pidfd: no polling).       */
/*                                                                     */
/* A child gets exactly what its options say: fds 0-2 and extra[], and */
/* no other descriptor of this process (inherited ones included); the  */
/* default disposition for every signal and an empty signal mask; with */
/* set_uid/set_gid, exactly the supplementary groups given (none when  */
/* ngroups is 0), then the gid, then the uid.                          */
/*                                                                     */
/* A process belongs to the machine that spawned (or adopted) it, and  */
/* it does not outlive it.  When the owner ends, however it ends (exit,*/
/* mly_kill, the force of a shutdown), a process still running gets    */
/* SIGTERM and SIGCONT, then SIGKILL after end_grace_ms; the signals go */
/* to its process group when it was spawned with new_group (an adopted */
/* process: when it leads a group), else to the process alone.  From   */
/* the owner's end on, it never holds the loop: on_stop and the end of */
/* mly_runtime_run do not wait for it (the SIGKILL timer and the reap  */
/* run while the host's loop runs for other reasons).                  */
/* mly_runtime_close SIGKILLs what is still running and releases the   */
/* runtime once that is reaped: close never leaves a process orphaned, */
/* nor a zombie.  Exceptions, left running and only watched (reaped    */
/* while the runtime lives, never signalled): a process spawned        */
/* `detached`, and the processes of a durable instance that leaves     */
/* memory without an end (suspended by the runtime's shutdown or a     */
/* journal failure, or the runtime closed under it): the next run      */
/* adopts them, as it would after a crash.  A machine that wants a     */
/* gentler stop (its own signal, a longer wait) stops its processes    */
/* itself before it ends, as the supervisor's coprocess machine does.  */

typedef enum mly_stdio_mode {
  MLY_STDIO_INHERIT = 0, /* the same fd of this process */
  MLY_STDIO_NULL,        /* /dev/null                   */
  MLY_STDIO_FD           /* the given fd                */
} mly_stdio_mode;

#define MLY_PROCESS_MAX_FDS 8

/* The steps of setting a child up, in the order it takes them: a spawn
 * that fails says which one (mly_process_options.failed_step). */
typedef enum mly_spawn_step {
  MLY_SPAWN_PREPARE = 0, /* in this process: PATH, pipe, fork           */
  MLY_SPAWN_SESSION,     /* setsid (new_group)                          */
  MLY_SPAWN_FDS,         /* putting fds 0-2 and extra[] in place        */
  MLY_SPAWN_CHDIR,       /* chdir(cwd)                                  */
  MLY_SPAWN_IDS,         /* supplementary groups, gid, uid              */
  MLY_SPAWN_EXEC         /* execve of argv[0] (every PATH candidate)    */
} mly_spawn_step;

typedef struct mly_process_options {
  const char *const *argv; /* argv[0] is looked up in PATH           */
  const char *const *env;  /* NULL: inherit this process's env        */
  const char *cwd;         /* NULL: inherit                           */
  bool new_group;          /* own session and process group           */
  struct {
    mly_stdio_mode mode;
    int fd;
  } stdio[3];
  /* more descriptors for the child: fd `fd` of this process becomes
   * `child_fd` (>= 3) in the child, e.g. an s6-style readiness pipe */
  struct {
    int child_fd;
    int fd;
  } extra[MLY_PROCESS_MAX_FDS];
  unsigned nextra;
  bool set_uid, set_gid;   /* run as uid / gid (needs privilege)      */
  uid_t uid;
  gid_t gid;
  /* supplementary groups with set_uid/set_gid (e.g. from getgrouplist);
   * borrowed for the call; NULL/0: none */
  const gid_t *groups;
  size_t ngroups;
  /* When the owning machine ends: SIGKILL this long after SIGTERM.  0 =
   * MLY_PROCESS_END_GRACE_MS; < 0 = SIGKILL at once, no SIGTERM. */
  int64_t end_grace_ms;
  bool detached;           /* left running when the owner ends          */
  /* out, optional: when the spawn fails, the step that failed (the child
   * reports it with the errno, over a close-on-exec pipe) */
  mly_spawn_step *failed_step;
  /* into_cgroup: the child starts in the cgroup v2 directory open as
   * cgroup_fd (Linux >= 5.7, clone3 CLONE_INTO_CGROUP), so nothing it
   * does can happen outside it, and nobody migrates (a migration can
   * block the caller for an RCU grace period).  cgroup_fd stays the
   * caller's.  MLY_ENOSYS where the kernel cannot. */
  bool into_cgroup;
  int cgroup_fd;
  /* pid_env: "NAME=PID" is added to the child's environment (replacing
   * any NAME= there), PID being the child's own pid, written in the
   * child before exec: what systemd's WATCHDOG_PID and LISTEN_PID need.
   * A name with '=' or an empty one: MLY_EINVAL.  NULL: none. */
  const char *pid_env;
} mly_process_options;

#define MLY_PROCESS_END_GRACE_MS 5000

/* Spawn a process owned by m; *pid_out gets its pid.  Fails at once
 * (e.g. MLY_ENOENT, -EACCES) when the child cannot be set up or argv[0]
 * cannot be executed; the child is then already gone, and
 * *opt->failed_step (if given) says which step failed. */
int mly_process_spawn(mly_machine *m, const mly_process_options *opt,
                      int *pid_out);
/* open(2) of path with flags (O_CLOEXEC is added) and mode, as the user
 * that opt's set_uid/uid, set_gid/gid and groups describe: in a
 * short-lived child that becomes that user, so the kernel checks that
 * user's rights along the whole path.  Without set_uid/set_gid it is a
 * plain open.  Other fields of opt are ignored.  Returns the descriptor,
 * or a negative MLY_E* (-errno of the open).  Blocks for a fork: call it
 * on the loop thread only where a blocking open is acceptable.
 * set_uid without set_gid is refused with MLY_EINVAL (here, in
 * mly_run_as and in mly_process_spawn): the child would keep this
 * process's gid (root's, for a supervisor). */
int mly_open_as(const mly_process_options *opt, const char *path, int flags,
                unsigned mode);
/* The same, openat(2) relative to dirfd (AT_FDCWD: as mly_open_as). */
int mly_openat_as(const mly_process_options *opt, int dirfd, const char *path,
                  int flags, unsigned mode);
/* Runs fn(arg) as that user, as mly_open_as does (in this process when
 * opt changes no identity): fn runs in a forked child of a possibly
 * threaded process, so it may call only async-signal-safe functions
 * (openat, renameat, unlinkat...) on data prepared beforehand.  Returns
 * fn's negative error, or 0. */
int mly_run_as(const mly_process_options *opt, int (*fn)(void *arg), void *arg);

/* Whether path's directories can be trusted not to change under us, as
 * sshd's StrictModes asks: every directory from / down to the one that
 * holds path's last component (the current directory's, for a relative
 * path) is owned by root, by this process's effective uid or by `also`
 * ((uid_t)-1: nobody more), and is not writable by its group or others
 * unless it has the sticky bit (as /tmp); a symbolic link on the way
 * must be owned by one of those too, and its target is checked the same
 * way.  The last component itself is not looked at.  On success, when
 * dir is not NULL, dir (dirlen bytes) gets the resolved directory, with
 * no symbolic link in it.  Errors: MLY_EPERM with err (errlen bytes)
 * naming the directory, its owner and mode and what to do; -errno of a
 * directory that cannot be looked at (MLY_ENOENT: missing); ELOOP past
 * 40 links; MLY_ENAMETOOLONG. */
int mly_path_check(const char *path, uid_t also, char *dir, size_t dirlen,
                   char *err, size_t errlen);

/* Signal a child process of this runtime (its group, with group=true).
 * MLY_ESRCH once it has been reaped: a reaped pid is never signalled. */
int mly_process_signal(mly_runtime *rt, int pid, int signum, bool group);
size_t mly_process_count(const mly_runtime *rt);
/* Whether pid is a child process of this runtime not yet reaped: a
 * subreaper uses it to tell its own children from adopted orphans. */
bool mly_process_known(const mly_runtime *rt, int pid);

/* A process's start time (clock ticks since boot, /proc/PID/stat): with
 * the pid it names one process for good, as a pid alone does not.
 * MLY_ESRCH if there is no such (living) process. */
int mly_process_start_time(int pid, uint64_t *out);
/* Watch a process this runtime did not spawn (one left running by a
 * previous run of the host), through a pidfd: no polling.  It must have
 * the given start time, or MLY_ESRCH (its pid now names another).  Its
 * exit arrives as MLY_EV_PROCESS_EXIT with status -1 and no signal: it
 * is not our child, so its exit status cannot be read.
 * mly_process_signal works on it, checked through the pidfd. */
int mly_process_adopt(mly_machine *m, int pid, uint64_t start_time);


/* ------------------------------------------------------------------ */
/* Durable machines (layer `journal`).                                 */
/*                                                                     */
/* A type registered with MLY_TYPE_DURABLE keeps every instance in the */
/* runtime's journal: an append-only log in a state directory.  Each   */
/* step commits atomically (D2): its yield point name, its data, its   */
/* timer deadline, the events it consumed and the events it sent go    */
/* into one record, and the machine resumes, and its outgoing events   */
/* are delivered, only once that record is durable.  Records of one    */
/* loop turn share one fdatasync (group commit, D3), on the libuv      */
/* threadpool.  After a crash and mly_journal_open, every durable      */
/* instance continues from its last committed step: at its named yield */
/* point, with its data, its pending events and its timer (an overdue  */
/* timer fires at once, in deadline order), and mly_recovered() true   */
/* for that first step.  A step that was running at the crash runs    */
/* again: side effects inside a step are at-least-once, and            */
/* mly_step_number() with mly_self() is the idempotency key.           */
/*                                                                     */
/* Rules for durable types: the data is saved byte for byte, so it     */
/* holds no pointers; every wait is a named one (_AT forms: a type     */
/* without a points list is refused at registration, an instance that */
/* reaches an anonymous wait fails with MLY_EINVAL, nothing committed); */
/* a data size may grow between versions (new bytes are zero), never  */
/* shrink.  Renaming a yield point: see "Machine bodies" below.        */
/* The runtime's shutdown leaves durable instances in the journal: they */
/* are suspended, not ended, with their inboxes whole (a clean stop,   */
/* or mly_runtime_close, also writes the events that were never        */
/* journaled: plain posts, process exits, signals), and continue on    */
/* the next open.  Explicit mly_shutdown/mly_kill of a durable         */
/* instance ends it for good.  Events from a durable machine to a      */
/* non-durable one are not journaled; nor are plain posts,             */
/* child-process exits and signals until such a stop: a crash loses    */
/* them.                                                               */
/*                                                                     */
/* A recovered instance continues, is parked with a reason, or its     */
/* wait ends with an error; it never hangs on something that cannot    */
/* come back.  A wait whose cause did not survive the restart ends at  */
/* once with MLY_ELOST (mly_wait_error(), or the status of             */
/* MLY_AWAIT_CHILD): a child that was not durable (or any child's exit */
/* when none came back), a reply from a request target that was not    */
/* durable or has ended, a child-process exit, a signal.  A wait on a  */
/* parked instance stands: other code may bring it back.               */
/*                                                                     */
/* An instance at a point whose name the code does not list, or lists */
/* with no wait of that name in the body, is parked at open (renaming: */
/* see "Machine bodies").  To tell, mly_journal_open enters each body  */
/* once per recovered (point, body) with a probe flag set, where every */
/* wait yields at once without testing anything: code before           */
/* MLY_BEGIN runs then, so keep it free of side effects.               */

typedef enum mly_sync {
  MLY_SYNC_ALWAYS = 0, /* fdatasync every batch before machines go on:
                          nothing committed is ever lost              */
  MLY_SYNC_INTERVAL,   /* write every batch, fdatasync at most every
                          interval_ms: a power loss loses up to that
                          much; a crash of the process loses nothing   */
  MLY_SYNC_NEVER       /* write, leave syncing to the kernel: a power
                          loss may lose anything not yet written back */
} mly_sync;

/* Fault hook operations (tests). */
#define MLY_JOP_WRITE 1
#define MLY_JOP_SYNC 2

typedef struct mly_journal_options {
  const char *dir;            /* state directory; NULL: "mealy-state"  */
  mly_sync sync;
  uint32_t interval_ms;       /* MLY_SYNC_INTERVAL; 0: 100             */
  bool salvage;               /* keep what verifies past damage        */
  uint64_t segment_bytes;     /* a new segment past this; 0: 64 MiB     */
  uint64_t compact_min_bytes; /* compact only past this; 0: 64 MiB      */
  uint32_t compact_dead_pct;  /* ... and when this % is dead; 0: 50     */
  /* told (on the loop thread) when the journal stops for an error */
  void (*on_error)(mly_runtime *rt, int err, const char *msg, void *arg);
  void *arg;
  /* tests: called on the writing thread before each write (len bytes)
   * and fdatasync.  Return 0 to go on, < 0 to fail the call with that
   * error, or for a write 0 < n < len to write only n bytes and fail
   * with MLY_ENOSPC (a short write). */
  int (*fault)(void *arg, int op, size_t len);
  void *fault_arg;
  /* how long tombstones of named instances are kept; 0: default
     (MLY_DEFAULT_NAME_RETENTION_MS), < 0: forever */
  int64_t name_retention_ms;
} mly_journal_options;

/* "always", "never", "interval:MS". */
int mly_sync_parse(const char *s, mly_sync *out, uint32_t *interval_ms);

/* Open (or create) the state directory, lock it, verify and recover it,
 * and make the runtime durable.  Call it after registering the durable
 * types and before spawning anything.  Errors carry a sentence in err:
 * MLY_EBUSY when another process holds the directory (its pid named),
 * MLY_EBADMSG for damage in anything acknowledged, a missing segment, a
 * segment that is not a regular file, or another journal format (file,
 * offset and reason).  The unacknowledged tail (batches after the last
 * sync that a crash cut short) is cut off and counted in torn_bytes. */
int mly_journal_open(mly_runtime *rt, const mly_journal_options *opt,
                     char *err, size_t errlen);
/* True once durable machines have a store under them (mly_journal_open
 * succeeded), until the runtime is freed.  Loop thread. */
bool mly_runtime_durable(const mly_runtime *rt);
/* 0, or the error that stopped the journal (fail-stop). */
int mly_journal_error(const mly_runtime *rt);
/* Rewrite the live set into a new segment and drop the old ones.  Runs
 * when nothing is in flight (at once, or after the current batch).  On
 * the PostgreSQL store: nothing to rewrite, 0 (the store's error once
 * it stopped).
 * MLY_ESHUTDOWN once the runtime is stopping: the machines it suspended
 * are only in the journal then (no automatic compaction runs either). */
int mly_journal_compact(mly_runtime *rt);

typedef struct mly_journal_stats {
  uint64_t records;      /* written since open                        */
  uint64_t bytes;
  uint64_t batches;
  uint64_t syncs;        /* fdatasync calls                           */
  uint64_t segments;     /* created since open                        */
  uint64_t compactions;
  uint64_t live_bytes;   /* estimate of what a compaction would keep */
  uint64_t total_bytes;  /* of batches in the directory (segment
                            headers not counted): 0 holds no record   */
  uint64_t recovered;    /* instances brought back at open            */
  uint64_t parked;       /* ... and those that could not be           */
  uint64_t torn_bytes;   /* cut off a torn tail at open               */
  uint64_t salvaged;     /* damaged records skipped (salvage)         */
} mly_journal_stats;
int mly_journal_stats_get(const mly_runtime *rt, mly_journal_stats *out);

/* Instances the journal holds but this code cannot resume (unknown type,
 * a version it does not accept, a yield point it does not list or that
 * no wait of the body uses, a parked parent or ancestor: a subtree is
 * parked as one): they are listed here with the reason, kept in the
 * journal for a later version, and the rest run.  A parked instance
 * keeps its id: no spawn reuses its slot while it is parked, and
 * sending to it fails with MLY_ESRCH. */
typedef struct mly_parked {
  mly_id id;
  const char *type;
  const char *point;
  uint32_t version;
  const char *reason;
} mly_parked;
int mly_journal_parked(mly_runtime *rt,
                       int (*cb)(const mly_parked *, void *), void *arg);

/* True during the first step an instance runs after recovery. */
bool mly_recovered(const mly_machine *m);

/* ------------------------------------------------------------------ */
/* Contexts and names: durable-machine facilities every type may use   */
/* (the YAML machines and the task queues stand on them, D10).         */
/*                                                                     */
/* A context is one mly_value of any size (usually a map) that an      */
/* instance carries beside its fixed data.  For a durable type it is   */
/* committed with every step, in the same record as the data (atomic   */
/* with it, D2), and restored at recovery: 1 MiB and more work, up to  */
/* the journal's record bound (64 MiB encoded).  A step that leaves    */
/* the context equal to what was last committed does not write it      */
/* again.                                                              */
/*                                                                     */
/* A name is unique in the runtime (and its journal; over the          */
/* PostgreSQL store, across the processes that share it: see           */
/* mly_store_postgres for when it is known): spawning a name           */
/* that a live instance holds, or that an instance which ended within  */
/* the retention window held (its tombstone), is refused with          */
/* MLY_EEXIST; mly_name_lookup tells "running" from "already done".    */
/* Tombstones of durable instances are journaled and survive restarts; */
/* compaction drops those older than the retention window             */
/* (mly_journal_options.name_retention_ms; default 7 days).  Names of  */
/* non-durable instances are held in memory, tombstones too (with the  */
/* default window when no journal is open).  A tombstone past the      */
/* window is also dropped from memory when its name is looked up or    */
/* spawned, or when any named instance ends: the name is free again    */
/* whether or not a compaction ran.                                    */
/*                                                                     */
/* In the journal (docs/design.md "Contexts and names"): the context   */
/* is a field of the state record (a bin of its msgpack; nil when a    */
/* step left it as committed, so a step that did not change it writes  */
/* a few bytes, whatever its size); the name is in the instance's      */
/* first record; a tombstone is in its END record, and in a TOMB       */
/* record of each snapshot while it is within the window.  Instances   */
/* without a context or a name cost no memory and no record bytes more */
/* than before.                                                        */

#define MLY_INSTANCE_NAME_MAX 255
#define MLY_DEFAULT_NAME_RETENTION_MS (7LL * 24 * 3600 * 1000)

/* The running instance's context (NULL: none).  Owned by the instance:
 * change it in place during a step; what it holds when the step ends is
 * what commits.  Loop thread only.  Calling it marks the context as
 * possibly changed: at the end of the step a durable instance encodes it
 * and compares (length and 64-bit hash) with what was committed; a step
 * that never calls it (nor mly_context_set) costs nothing for it.  So
 * call it in every step that changes the context: a change made through
 * a pointer kept from an earlier step is seen only at the next step that
 * calls it.  The pointer is valid until mly_context_set or the end.
 *
 * A durable step whose context does not encode (nested deeper than
 * MLY_VALUE_MAX_DEPTH), or whose record would pass the journal's bound
 * (64 MiB with its data, events and spawned children), cannot commit:
 * the instance ends with MLY_EINVAL or MLY_ERANGE (as by mly_kill,
 * nothing of that step kept), the journal goes on. */
mly_value *mly_context(mly_machine *m);
/* Replace the context; takes v (NULL clears it), frees the old one.
 * From the instance's step (host code on the loop thread may call it
 * between steps: a durable instance commits it with its next step, or
 * a compaction).  Out of memory, v is freed and the instance ends as by
 * mly_kill (it cannot go on without the context it was given). */
void mly_context_set(mly_machine *m, mly_value *v);
/* Host code on the loop thread: a live instance's context (NULL: none,
 * or no such live instance).  Valid until its next step. */
const mly_value *mly_instance_context(mly_runtime *rt, mly_id id);

typedef struct mly_spawn_options {
  const void *arg;      /* copied into the data, as mly_spawn          */
  size_t arg_len;
  mly_value *context;   /* initial context; taken, also on error.  A
                           durable type commits it with the create
                           record: MLY_EINVAL if it does not encode,
                           MLY_ERANGE past the record bound          */
  const char *name;     /* a unique name (1..MLY_INSTANCE_NAME_MAX
                           bytes, printable: no control character, no
                           '/', valid UTF-8), or NULL                 */
  bool generate_name;   /* without name: name it
                           TYPE-YYYYmmddHHMMSS-xxxxxx (UTC; six random
                           [a-z0-9] from a per-runtime generator seeded
                           by getrandom; a '/' of TYPE becomes '.'),
                           retried on a clash (16 tries, then
                           MLY_EEXIST)                                */
  char *name_out;       /* optional: receives the name (NUL-ended; ""
                           when unnamed)                               */
  size_t name_out_len;  /* MLY_ERANGE when too short (nothing spawned) */
} mly_spawn_options;

/* mly_spawn / mly_spawn_child with options (o may be NULL).  Errors as
 * mly_spawn's, and MLY_EEXIST for a name that is held (live or
 * tombstoned), MLY_EINVAL for a malformed name. */
int mly_spawn_opts(mly_runtime *rt, mly_type *type,
                   const mly_spawn_options *o, mly_id *out);
int mly_spawn_child_opts(mly_machine *parent, mly_type *type,
                         const mly_spawn_options *o, mly_id *out);

typedef enum mly_name_state {
  MLY_NAME_LIVE = 1, /* a live (or parked) instance holds it          */
  MLY_NAME_ENDED     /* a tombstone: it ended within the retention    */
} mly_name_state;

typedef struct mly_name_info {
  mly_name_state state;
  mly_id id;            /* the instance that holds / held it           */
  int status;           /* MLY_NAME_ENDED: its exit status (0: success) */
  int64_t ended_ms;     /* MLY_NAME_ENDED: wall clock, ms since epoch  */
} mly_name_info;

/* Who holds a name: 0, or MLY_ENOENT when it is free (never used, or its
 * tombstone expired), MLY_EINVAL for a malformed name.  Send to it by
 * name with the id it gives (mly_post_durable, mly_runtime_send).  Loop
 * thread only (MLY_EPERM). */
int mly_name_lookup(mly_runtime *rt, const char *name, mly_name_info *out);
/* A live instance's name (NULL: unnamed or no such instance); valid
 * while it lives. */
const char *mly_instance_name(mly_runtime *rt, mly_id id);
const char *mly_self_name(const mly_machine *m);

/* A durable post: like mly_post, with an answer.  cb runs once, on the
 * loop thread, with:
 *   0             the event's record is in the journal (synced under
 *                 MLY_SYNC_ALWAYS; written under the other policies): it
 *                 is delivered exactly once, across restarts;
 *   MLY_EUNKNOWN  the journal stopped (a failed fdatasync, a later write
 *                 cut short) after the frame holding the record reached
 *                 the file whole (a frame cut short never verifies): it
 *                 is not
 *                 delivered in this run, and the next open delivers it
 *                 exactly when the record survived (it does after a
 *                 process crash, it may not after a power loss).  To
 *                 retry safely, carry a key of your own in the payload
 *                 (a request id) and let the machine skip keys it took;
 *   other < 0     it is certainly not in the journal, now or after any
 *                 restart, and never delivered: safe to retry.
 *                 MLY_ESRCH: no such instance; MLY_EINVAL: not durable;
 *                 MLY_ESHUTDOWN: the runtime is stopping or closing (the
 *                 target may be back after the next open); a journal
 *                 error when its record was never written.
 * The target must be durable.  The call itself refuses, calling cb
 * never, a payload past the record bound (MLY_ERANGE: 64 MiB encoded,
 * as mly_send) or one that does not encode (MLY_EINVAL), on any thread,
 * as it refuses a full queue (MLY_EAGAIN). */
typedef void (*mly_post_cb)(mly_runtime *rt, int status, void *arg);
int mly_post_durable(mly_runtime *rt, mly_id to, uint32_t id,
                     mly_value *payload, mly_post_cb cb, void *arg);

/* A barrier on the durable store: cb runs once, on the loop thread,
 * when everything written before the call (the create records of
 * instances spawned, events sent, durable posts, steps) is committed
 * (0), or with MLY_EUNKNOWN / another error as for mly_post_durable when
 * the store stopped first.  So a host that spawned an instance answers
 * its client only once the instance survives a crash (`mealy fsm start`
 * does; on a PostgreSQL store a server that is away holds the answer
 * until it is back, or give_up_ms).  0, or MLY_EINVAL (rt or cb NULL,
 * no store open), MLY_EPERM (not the loop thread), the store's error
 * (it stopped: cb is not called), MLY_ENOMEM. */
int mly_durable_sync(mly_runtime *rt, mly_post_cb cb, void *arg);

/* Offline access for tools (`mealy journal`): no runtime needed. */
typedef struct mly_record {
  uint64_t seq;
  const char *kind;      /* "create", "step", "event", "end", ...     */
  const char *file;      /* segment file name                         */
  uint64_t offset;
  const void *body;      /* the msgpack body                          */
  size_t len;
} mly_record;
/* Verify every batch and record of dir, as an open would, without
 * changing it; cb (may be NULL) sees each record that counts (its body
 * is valid during the call only: memory holds one record at a time).
 * MLY_EBADMSG with file, offset and reason for damage; never blocks on
 * a path that is not a regular file (it is refused). */
int mly_journal_scan(const char *dir, bool salvage,
                     int (*cb)(const mly_record *, void *), void *arg,
                     char *err, size_t errlen);

typedef struct mly_journal_info {
  uint64_t segments, bytes, records, next_seq;
  uint64_t live_instances, pending_events;
  uint64_t live_records;  /* records a compaction would keep */
  double dead_ratio;      /* of records                      */
  uint64_t torn_bytes;    /* the unacknowledged tail the next open cuts */
  uint64_t batches;       /* frames (one write each) that count */
  uint64_t stray_bytes;   /* bytes that are not records that count: the
                             torn tail, an unfinished compaction */
  bool tail_suspect;      /* the torn tail is not a write cut short (e.g.
                             zeroes, random bytes, a copied batch): the
                             open still cuts it, `check` says so */
  uint64_t tombstones;    /* names of ended instances it holds (those
                             past the window included: an open or a
                             compaction drops them)                  */
  uint64_t named;         /* live instances with a name               */
  uint64_t context_bytes; /* committed contexts of live instances     */
} mly_journal_info;
int mly_journal_info_get(const char *dir, mly_journal_info *out, char *err,
                         size_t errlen);

/* The live instances of dir, read as mly_journal_info_get reads it (no
 * lock, nothing changed: if a process has dir open, what is seen is a
 * moment of it): cb sees each (pointers valid during the call only; the
 * type and point cut at MLY_NAME_MAX bytes).  A non-zero return of cb
 * stops the walk and is returned; MLY_EBADMSG (err says where) as
 * mly_journal_scan. */
typedef struct mly_live {
  mly_id id, parent;
  const char *type, *point;
  const char *name;          /* NULL: unnamed                        */
  const void *data;          /* its fixed data, as its last step left it */
  size_t data_len;           /* records keep no trailing zero bytes: it may
                                be less than the type's data_size, the rest
                                is zero                                 */
  const mly_value *context;  /* its committed context, or NULL       */
} mly_live;
int mly_journal_live(const char *dir, int (*cb)(const mly_live *, void *),
                     void *arg, char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* Layers above the runtime.                                           */
/*                                                                     */
/* A layer built on the runtime (the task queues, the YAML machines)   */
/* keeps one state object per runtime under a key of its own: no      */
/* global state, and each finds its object from the runtime it is     */
/* given.  `release` (may be NULL) runs when the runtime is freed,     */
/* after every instance has gone (their fini hooks ran).  key is a     */
/* string that lives as long as the runtime (a literal).  At most      */
/* MLY_ATTACH_MAX keys (MLY_ENOSPC); a key already attached:           */
/* MLY_EEXIST.  Loop thread only.                                      */

#define MLY_ATTACH_MAX 8
int mly_runtime_attach(mly_runtime *rt, const char *key, void *ptr,
                       void (*release)(void *ptr));
void *mly_runtime_attached(const mly_runtime *rt, const char *key);

/* ------------------------------------------------------------------ */
/* Task queues and deferred calls (layer `queue`).                     */
/*                                                                     */
/* A task is a durable machine (D10) of the type "mly.task": it sleeps */
/* until its eta, waits for a slot of its queue, runs an attempt,      */
/* retries after a backoff, and ends.  Its payload is its context      */
/* (stored once with the task, never copied per attempt: 16 MiB and    */
/* more work, up to the journal's record bound); its name, when it has */
/* one, is a named instance "task:QUEUE:NAME".  With a journal open,   */
/* every task survives kill -9: a task due while the process was down */
/* runs at once after the restart.                                     */
/*                                                                     */
/* Setting up: mly_queues_open(rt) once, before mly_journal_open (it   */
/* registers the task type), then mly_queue_declare and               */
/* mly_defer_register for every queue and function the tasks in the   */
/* journal may name (before or after the open: a recovered task whose */
/* queue is not declared waits, counted in the listing, until it is;   */
/* one whose function is unknown fails its attempt as permanent).     */
/*                                                                     */
/* Dispatch.  A queue starts a waiting task when it is not paused, it  */
/* runs fewer than max_concurrent, its token bucket holds a token (a   */
/* bucket of bucket_size tokens refilled at `rate` per second; every   */
/* attempt takes one), and the task's concurrency key value (the       */
/* payload map's entry named by concurrency_key, a string or an        */
/* integer) has fewer than concurrency_key_max attempts running.       */
/* Among the tasks that may start: higher priority first, then earlier */
/* eta, then insertion order.  A task blocked only by its key does not */
/* hold back tasks with other keys.  A paused queue keeps accepting    */
/* tasks, and attempts already running finish.  With a journal open, a */
/* pause or resume is durable (a small durable machine "queue:NAME"    */
/* holds it) and wins over the declaration's `paused` after a restart. */
/*                                                                     */
/* Attempts.  A function registered without MLY_DEFER_BLOCKING runs on */
/* the loop thread, inside the task's step: it must not block.  It     */
/* reports with mly_task_done, at once or later from the loop thread  */
/* (after its own I/O).  A blocking one runs on the libuv threadpool   */
/* and reports with mly_task_done before it returns (from that        */
/* thread).  Outcomes: MLY_TASK_OK (the task ends: its end record is  */
/* the commit of the success, so a task whose success committed never */
/* runs again); MLY_TASK_RETRY (a failed attempt: counted, retried     */
/* after a backoff within the retry policy); MLY_TASK_RETRY_SINGULAR   */
/* (retried after the same backoff, not counted: App Engine's          */
/* SingularTaskFailure); MLY_TASK_PERMANENT (no retry: a dead letter,  */
/* App Engine's PermanentTaskFailure).  A task whose counted failures */
/* pass task_retry_limit, or whose age (from its first attempt) passes */
/* task_age_limit_ms, whichever comes first, becomes a dead letter.    */
/* An attempt running at a crash runs again after the restart (not    */
/* counted): side effects are at-least-once; mly_task_id() is the      */
/* idempotency key (the same for every attempt, across restarts).     */
/*                                                                     */
/* Timeouts (timeout_ms > 0).  An attempt that has not reported when   */
/* its timeout passes counts as a failed attempt (MLY_TASK_RETRY with  */
/* MLY_ETIMEDOUT) and frees its slot; a report that comes later is     */
/* ignored.  What a timeout can do depends on where the attempt runs: */
/* a loop function runs inside a step and cannot be interrupted, so   */
/* the timeout covers only the time after it returned without a       */
/* report (asynchronous work); a blocking function is abandoned on its */
/* threadpool thread (the thread stays busy until the function        */
/* returns, and its report is ignored).                                */
/*                                                                     */
/* Dead letters stay as live instances at the point "dead", with their */
/* attempts and last error: list them (mly_task_foreach with           */
/* MLY_TASKS_DEAD), retry them with a fresh policy (mly_task_retry), or */
/* delete them (mly_task_delete).                                       */
/*                                                                     */
/* Thread rules: everything here is for the loop thread, except        */
/* mly_task_done and the mly_task accessors inside a blocking function */
/* on its threadpool thread.                                           */

typedef struct mly_task mly_task; /* one attempt of a task, running */

/* Retry policy (App Engine's names).  A field < 0 is "not set": a task */
/* takes it from its queue, a queue from the defaults below.            */
typedef struct mly_retry {
  int64_t task_retry_limit;  /* counted failures retried; then dead    */
  int64_t min_backoff_ms;    /* first delay                            */
  int64_t max_backoff_ms;    /* no delay is longer                     */
  int64_t max_doublings;     /* the delay doubles this many times, then
                                grows by the last doubled step          */
  int64_t task_age_limit_ms; /* 0: no age limit                         */
  double jitter;             /* 0..1: each delay is shortened by up to
                                this fraction, at random               */
} mly_retry;

#define MLY_RETRY_UNSET {-1, -1, -1, -1, -1, -1.0}
#define MLY_DEFAULT_TASK_RETRY_LIMIT 25
#define MLY_DEFAULT_MIN_BACKOFF_MS 100
#define MLY_DEFAULT_MAX_BACKOFF_MS 3600000
#define MLY_DEFAULT_MAX_DOUBLINGS 16

/* The delay before the retry that follows `failures` counted failures
 * (>= 1) under a complete policy, before jitter: min_backoff doubled
 * (failures - 1) times up to max_doublings, then grown linearly by the
 * last step, at most max_backoff.  For tools and tests. */
int64_t mly_retry_backoff(const mly_retry *r, uint64_t failures);

/* A queue, as C code or a YAML reader declares it.  Zero means "the
 * default" for every count; a YAML reader fills it field by field. */
typedef struct mly_queue_def {
  const char *name;             /* 1..MLY_NAME_MAX bytes, [A-Za-z0-9_.-] */
  uint32_t max_concurrent;      /* attempts running at once; 0: 1000    */
  double rate;                  /* attempts started per second; 0: none */
  uint32_t bucket_size;         /* tokens; 0: max(1, rate)              */
  uint32_t priority_levels;     /* priorities 0..levels-1; 0: 10        */
  mly_retry retry;              /* its defaults (fields < 0: built-in)  */
  int64_t timeout_ms;           /* per attempt; <= 0: none              */
  const char *concurrency_key;  /* payload key limited per value; NULL */
  uint32_t concurrency_key_max; /* with a key: running per value; 0: 1 */
  bool paused;                  /* starts paused (unless a durable pause
                                   or resume of it says otherwise)      */
} mly_queue_def;

#define MLY_QUEUE_DEFAULT "default" /* declared by mly_queues_open */

/* The queue layer of rt: registers the durable type "mly.task" and
 * declares the queue "default".  Call before mly_journal_open.  Its
 * memory is released with the runtime.  MLY_EEXIST: already open. */
int mly_queues_open(mly_runtime *rt);

/* Declare a queue (copied).  Declaring a name again replaces its
 * settings (tasks keep their place; `paused` counts only the first
 * time: then use mly_queue_pause/resume).  On the PostgreSQL store with
 * shared tasks, max_concurrent, rate, bucket_size and the key limit hold
 * across all processes, and the database keeps the limits of the last
 * process that declared the queue; pausing stays per process.  MLY_EINVAL with a sentence in err
 * (errlen bytes; err may be NULL) for a bad field; MLY_ENOENT: the
 * queue layer is not open. */
int mly_queue_declare(mly_runtime *rt, const mly_queue_def *def, char *err,
                      size_t errlen);
int mly_queue_pause(mly_runtime *rt, const char *queue);
int mly_queue_resume(mly_runtime *rt, const char *queue);

/* Outcomes an attempt reports. */
typedef enum mly_task_outcome {
  MLY_TASK_OK = 0,
  MLY_TASK_RETRY,          /* failed: counted, retried within the policy */
  MLY_TASK_RETRY_SINGULAR, /* failed once: retried, not counted          */
  MLY_TASK_PERMANENT       /* failed for good: a dead letter at once     */
} mly_task_outcome;

/* A task function: runs one attempt; reports with mly_task_done. */
typedef void (*mly_task_fn)(mly_task *t, void *arg);

#define MLY_DEFER_BLOCKING 0x1u /* run on the libuv threadpool */

/* Register a function tasks may name (1..MLY_NAME_MAX bytes, no control
 * characters).  MLY_EEXIST: the name is taken. */
int mly_defer_register(mly_runtime *rt, const char *name, mly_task_fn fn,
                       void *arg, unsigned flags);
/* true: a function of this name is registered (false without the queue
 * layer).  Loop thread. */
bool mly_defer_known(mly_runtime *rt, const char *name);

/* What a task runs: a registered function, or the start of a machine
 * through the starter a layer above registered (the YAML machines: the
 * queue never names them).  A starter gets the machine name from
 * mly_task_target(t) and reports like a function (OK once started). */
typedef enum mly_task_kind {
  MLY_TASK_FUNCTION = 0,
  MLY_TASK_MACHINE
} mly_task_kind;

typedef struct mly_task_target {
  mly_task_kind kind;
  const char *name; /* the function, or the machine (1..MLY_NAME_MAX) */
} mly_task_target;

/* The one starter of MLY_TASK_MACHINE tasks (replaces any before it). */
int mly_task_set_starter(mly_runtime *rt, mly_task_fn start, void *arg,
                         unsigned flags);

typedef void (*mly_task_added_cb)(mly_runtime *rt, int status, mly_id task,
                                  void *arg);

typedef struct mly_task_opts {
  const char *queue;     /* NULL: MLY_QUEUE_DEFAULT                     */
  const char *name;      /* idempotent name within the queue, or NULL  */
  int64_t countdown_ms;  /* run no earlier than this from now          */
  int64_t eta_ms;        /* ... or at this wall-clock time (ms since the
                            epoch); 0: now + countdown                  */
  int32_t priority;      /* 0..levels-1 of its queue; higher first      */
  const mly_retry *retry;/* NULL: the queue's; fields < 0: the queue's   */
  /* optional: runs once, on the loop thread: status 0 when the task's
   * creation is durable (committed under the journal's sync policy;
   * without a journal: at its first step); < 0 when the task went before
   * that: the journal's error (it stopped: the task is not there),
   * or MLY_ESHUTDOWN (the runtime stopped or closed first, and the task
   * may be back after the next open; or it was deleted) */
  mly_task_added_cb on_added;
  void *arg;
  mly_id *id_out;        /* optional: the task's instance id           */
  /* optional: on MLY_EEXIST, who holds the name: MLY_NAME_LIVE (already
   * queued or running: TaskAlreadyExistsError) or MLY_NAME_ENDED (done
   * within the retention window: TombstonedTaskError), with its id */
  mly_name_info *exists;
} mly_task_opts;

/* Add a task.  payload (any value, usually a map; may be NULL) is
 * taken, also on error.  0: accepted (in memory; durable once on_added
 * says so).  Errors: MLY_ENOENT an unknown queue or function (deferring
 * to an unknown function fails here, not at run time) or no starter;
 * MLY_EEXIST a name held (see opts.exists); MLY_EINVAL a malformed
 * name, a priority outside the queue's levels, a bad target, a retry
 * policy with jitter past 1 or min_backoff past max_backoff;
 * MLY_ERANGE a payload past the record bound (64 MiB encoded, as a
 * context at spawn), MLY_EINVAL one that does not encode;
 * MLY_ESHUTDOWN the runtime is stopping; a journal error. */
int mly_task_add(mly_runtime *rt, const mly_task_target *what,
                 mly_value *payload, const mly_task_opts *opts);
/* mly_task_add of the registered function `function`. */
int mly_defer(mly_runtime *rt, const char *function, mly_value *payload,
              const mly_task_opts *opts);

/* Inside an attempt (loop function: until it reports; blocking function:
 * during the call).  The payload is the task's, read-only, shared by
 * every attempt: never change it. */
const mly_value *mly_task_payload(const mly_task *t);
mly_id mly_task_id(const mly_task *t);          /* the idempotency key */
const char *mly_task_name(const mly_task *t);   /* NULL: unnamed       */
const char *mly_task_queue(const mly_task *t);
mly_task_target mly_task_target_of(const mly_task *t);
uint32_t mly_task_attempt(const mly_task *t);   /* 1 for the first run  */
mly_runtime *mly_task_runtime(const mly_task *t);
/* Report the attempt's outcome, exactly once per attempt (also after a
 * timeout: then it is ignored).  msg (may be NULL) is copied: the last
 * error a dead letter shows.  After it the handle is gone. */
void mly_task_done(mly_task *t, mly_task_outcome outcome, const char *msg);

/* Listing, for tools and tests. */
typedef enum mly_task_state {
  MLY_TASK_SCHEDULED = 1, /* sleeping until its eta (or a backoff)     */
  MLY_TASK_WAITING = 2,   /* due, waiting for a slot of its queue      */
  MLY_TASK_RUNNING = 4,   /* an attempt runs                           */
  MLY_TASK_DEAD = 8       /* failed for good: a dead letter            */
} mly_task_state;
#define MLY_TASKS_ALL 0xfu
#define MLY_TASKS_DEAD MLY_TASK_DEAD
const char *mly_task_state_name(mly_task_state s); /* "scheduled", ... */

#define MLY_TASK_MSG_MAX 127

typedef struct mly_task_info {
  mly_id id;
  const char *queue;
  const char *name;        /* NULL: unnamed                          */
  mly_task_target target;
  mly_task_state state;
  int32_t priority;
  int64_t eta_ms;          /* wall clock: when it is (was) due       */
  int64_t created_ms;
  int64_t first_run_ms;    /* 0: never ran                           */
  uint32_t attempts;       /* attempts started (singular ones too)   */
  uint32_t failures;       /* counted failures                       */
  int32_t last_error;      /* 0, MLY_ETIMEDOUT, ...                   */
  const char *last_msg;    /* "" when none                           */
  const mly_value *payload;
  mly_retry retry;         /* the policy it runs under (resolved)    */
} mly_task_info;

/* Calls cb for each live task of `queue` (NULL: every queue) whose state
 * is in `states` (MLY_TASK_* bits); pointers are valid during the call.
 * A non-zero return stops the walk and is returned. */
int mly_task_foreach(mly_runtime *rt, const char *queue, unsigned states,
                     int (*cb)(const mly_task_info *, void *), void *arg);
/* MLY_ESRCH: no such live task. */
int mly_task_info_get(mly_runtime *rt, mly_id id, mly_task_info *out);

/* Retry a dead letter now, with a fresh policy (NULL: the queue's): its
 * counted failures and age start again.  MLY_EINVAL: not dead, or a bad
 * policy (as mly_task_add's); durable as an event to the task (journaled
 * before it acts). */
int mly_task_retry(mly_runtime *rt, mly_id id, const mly_retry *fresh);
/* Delete a task in any state: it ends, failed with MLY_ECANCELED (its
 * name is tombstoned).  MLY_EBUSY: a blocking attempt is running on the
 * threadpool (it reads the payload): try again after it reports. */
int mly_task_delete(mly_runtime *rt, mly_id id);
/* Delete every task of the queue (not those MLY_EBUSY); *n the count. */
int mly_queue_purge(mly_runtime *rt, const char *queue, size_t *n);

typedef struct mly_queue_info {
  mly_queue_def def;       /* as declared, defaults resolved          */
  bool paused;
  uint64_t scheduled, waiting, running, dead; /* tasks now            */
  uint64_t started, succeeded, failed, dead_lettered; /* since open  */
  double tokens;           /* in the bucket now (rate > 0)            */
  /* attempts since open, by outcome (with succeeded and failed above:
   * failed counts MLY_TASK_RETRY, timeouts included) */
  uint64_t singular;       /* MLY_TASK_RETRY_SINGULAR (crash reruns too) */
  uint64_t permanent;      /* MLY_TASK_PERMANENT                         */
  uint64_t timed_out;      /* attempts that passed the queue's timeout   */
  /* the pause as the journal will hold it: the queue's state instance
   * has stepped to `paused` (false: no instance, or resumed; a tool
   * waits for it to equal `paused` before closing the runtime) */
  bool paused_saved;
  /* other machines' steps (mly_queue_slot_take; the YAML machines'
   * `queue:`) now: holding a slot, and waiting for one */
  uint64_t steps_running, steps_waiting;
} mly_queue_info;

/* Hold every queue (true): no task attempt starts and no slot is
 * granted, whatever the queues say, until released (false).  For tools
 * that open a host's state directory to change it (`mealy queue ...
 * --state-dir`) with no function registered: the tasks recover and wait.
 * MLY_ENOENT: no queue layer. */
int mly_queues_hold(mly_runtime *rt, bool hold);

/* Calls cb for each declared queue, in declaration order. */
int mly_queue_foreach(mly_runtime *rt,
                      int (*cb)(const mly_queue_info *, void *), void *arg);
int mly_queue_info_get(mly_runtime *rt, const char *queue,
                       mly_queue_info *out); /* MLY_ENOENT */
/* A declared queue's definition only (defaults resolved; its strings
 * valid while the runtime lives): O(1), where mly_queue_info_get counts
 * the tasks.  MLY_ENOENT. */
int mly_queue_def_get(mly_runtime *rt, const char *queue,
                      mly_queue_def *out);
/* A slot of a queue for one step of another durable machine (what a
 * YAML machine's or transition's `queue:` does): the step competes with
 * the queue's tasks for it (priority 0, in arrival order), so the
 * queue's max_concurrent, rate and concurrency_key limits (the key read
 * from `payload`, a map, or NULL) count it like a task's attempt; a
 * paused queue holds it back; a queue not (yet) declared holds it until
 * it is.  1: the slot is held, run the step; 0: it waits, and machine
 * `id` is woken (mly_wake) when the slot is granted: call again then
 * (1).  Release it when the step is over (the step's commit is in its
 * record; the slot is memory only: a crash frees it with the process,
 * and the step that did not commit asks again after the restart, so
 * nothing leaks).  A machine holds or waits for one slot at a time;
 * asking for another queue gives the first back.  The queue's timeout
 * does not apply to steps.  On the PostgreSQL store with shared tasks
 * (mly_store_pg_options.local_tasks false) the slot is a row of the
 * database's slot table, counted with every process's tasks and steps:
 * 0 asks the database (in a transaction of its own), `id` is woken when
 * it granted; the release goes with this loop turn's commit, and a
 * crashed process's slots go when its node is taken over.  MLY_ENOENT:
 * no queue layer (mly_queues_open); MLY_EINVAL: a bad name; MLY_EBUSY:
 * `id` is a task; MLY_ENOMEM.  Loop thread only. */
int mly_queue_slot_take(mly_runtime *rt, const char *queue, mly_id id,
                        const mly_value *payload);
/* Give back machine id's slot, or stop waiting for one (none: a no-op);
 * the next waiting step or task may start. */
void mly_queue_slot_release(mly_runtime *rt, mly_id id);
/* Offline, for tools: the tasks and queues of a state directory with no
 * runtime, read as mly_journal_live reads it (no lock, nothing changed;
 * if a host has dir open, what is seen is a moment of it).  A task's
 * retry policy is resolved against the built-in defaults (the queue's
 * declaration lives in its host).  mly_queue_scan gives "default" first,
 * then, by name, each queue a task or a pause names: its tasks now by
 * state and whether it is paused; def holds the name only (the limits
 * and counters live in a host's memory).  MLY_EBADMSG (err says where)
 * as mly_journal_scan; a non-zero return of cb stops and is returned. */
int mly_task_scan(const char *dir, const char *queue, unsigned states,
                  int (*cb)(const mly_task_info *, void *), void *arg,
                  char *err, size_t errlen);
int mly_queue_scan(const char *dir, int (*cb)(const mly_queue_info *, void *),
                   void *arg, char *err, size_t errlen);
/* The same from a PostgreSQL store (conninfo), read with
 * mly_store_pg_live: every process's tasks and queue states at one
 * moment, nothing taken from them; its errors. */
int mly_task_scan_pg(const char *conninfo, const char *queue,
                     unsigned states,
                     int (*cb)(const mly_task_info *, void *), void *arg,
                     char *err, size_t errlen);
int mly_queue_scan_pg(const char *conninfo,
                      int (*cb)(const mly_queue_info *, void *), void *arg,
                      char *err, size_t errlen);
/* Who holds a task name in a queue (mly_name_lookup of its instance
 * name): MLY_ENOENT when free. */
int mly_task_lookup(mly_runtime *rt, const char *queue, const char *name,
                    mly_name_info *out);

/* Schedules.  A schedule adds a task at each tick of a 5-field cron     */
/* expression (minute hour day-of-month month day-of-week: lists,       */
/* ranges, steps, names JAN..DEC and SUN..SAT, 7 is Sunday; when both   */
/* day fields are restricted a day matches when either does) read in an */
/* IANA time zone, or every `every_ms` (multiples since the epoch).  A  */
/* tick whose local time falls in a skipped hour (spring forward) runs  */
/* at the transition; a local time that occurs twice (fall back) ticks  */
/* once, at its first occurrence.  Zones are read from                  */
/* /usr/share/zoneinfo (TZif; past the file's last transition, the     */
/* POSIX TZ rule of its footer holds).                                  */
/*                                                                     */
/* Each schedule is a durable machine "schedule:NAME" holding its next */
/* tick; a tick's task is named "NAME@S" (S: the tick, UTC seconds since */
/* the epoch) and is added in the same committed step that moves the  */
/* next tick, so each tick is enqueued once, also across restarts (the */
/* tick's name makes a step run again harmless).  Ticks that came due  */
/* while the process was down (or more than MLY_SCHEDULE_GRACE_MS ago) */
/* are missed: MLY_MISSED_SKIP enqueues none of them, MLY_MISSED_ONE   */
/* the newest, MLY_MISSED_ALL each (at most the newest                */
/* MLY_MISSED_ALL_MAX; the others are counted as skipped).             */

typedef enum mly_missed {
  MLY_MISSED_SKIP = 0,
  MLY_MISSED_ONE,
  MLY_MISSED_ALL
} mly_missed;

#define MLY_MISSED_ALL_MAX 100
#define MLY_SCHEDULE_GRACE_MS 60000
#define MLY_SCHEDULE_NAME_MAX 40

typedef struct mly_schedule_def {
  const char *name;        /* 1..MLY_SCHEDULE_NAME_MAX bytes, no control
                              character, '/' or '@'                     */
  const char *cron;        /* the expression, or NULL with every_ms      */
  int64_t every_ms;        /* > 0, whole seconds: a period instead       */
  const char *tz;          /* IANA zone name; NULL or "UTC": UTC         */
  mly_missed missed;
  mly_task_target what;    /* the function, or the machine started      */
  const char *queue;       /* NULL: MLY_QUEUE_DEFAULT                    */
  const mly_value *payload;/* copied into each tick's task; NULL: none   */
  int32_t priority;
} mly_schedule_def;

/* Declare a schedule on rt (mly_queues_open first; with a journal, after
 * mly_journal_open so the schedule finds where it was).  The definition
 * is copied; give it again at each start (the instance keeps only its
 * next tick and counts).  A schedule never declared before sees its
 * first tick after now.  Loop thread.  MLY_EINVAL with a sentence in
 * err (a bad name, cron expression with its column, zone, missed or
 * target); MLY_ENOENT (no queue layer, no such zone, a function not
 * registered, or a machine target without a starter); MLY_EPERM (a
 * zone file not owned by root or writable by others); MLY_EEXIST
 * (declared already); MLY_ENOMEM. */
int mly_schedule_declare(mly_runtime *rt, const mly_schedule_def *def,
                         char *err, size_t errlen);

/* Tests: read "now" (ms since the epoch) from now_ms instead of the wall
 * clock; then no timer is armed for ticks: call mly_schedules_poke after
 * moving the clock.  Set before declaring. */
void mly_schedule_set_clock(mly_runtime *rt, int64_t (*now_ms)(void *arg),
                            void *arg);
void mly_schedules_poke(mly_runtime *rt);

typedef struct mly_schedule_info {
  mly_id id;          /* its instance; 0: not there yet               */
  int64_t next_ms;    /* its next tick, UTC ms; 0: not computed yet    */
  uint64_t enqueued;  /* ticks enqueued over its life                  */
  uint64_t skipped;   /* ticks missed and not enqueued                 */
} mly_schedule_info;
int mly_schedule_info_get(mly_runtime *rt, const char *name,
                          mly_schedule_info *out); /* MLY_ENOENT */

/* ------------------------------------------------------------------ */
/* YAML machines: actions and the interpreter (layer `fsm`).           */
/*                                                                     */
/* A machine defined in YAML (Fantasm's model, loaded by the fsm       */
/* loader) runs as instances of one durable type, "fsm": each instance */
/* carries its context (a map, saved with every step: see "Contexts   */
/* and names") and the definition it started with, pinned by content  */
/* hash (editing the file changes only instances started later).  One */
/* dispatch runs, in Fantasm's order: the exit action of the state it  */
/* leaves, the transition's action, the entry action of the state it   */
/* enters, its continuation (where marked), its action, which names    */
/* the next event.  A dispatch commits whole or not at all; a failed   */
/* one is retried after a backoff (committed, durable), then goes to   */
/* the state's or the machine's on_failure state with "error" (text)   */
/* and "cause" ({state, event, where, attempts, permanent}) in the     */
/* context, or fails the instance (status MLY_EIO, with a log line). */

typedef struct mly_action_call mly_action_call;

/* An action: a C function bound to a name the YAML file uses.  It
 * returns 0 (done; the next event is what mly_action_event set, or none)
 * or the value of mly_action_fail.  Any other negative return is a
 * retryable failure whose text is mly_strerror's.  Without
 * MLY_ACTION_BLOCKING it runs on the loop thread and must not block;
 * with it, on the libuv threadpool, where it may block but must touch
 * nothing of the runtime (only `call` through the mly_action_* calls
 * below, and mly_post). */
typedef int (*mly_action_fn)(mly_action_call *call, void *arg);

#define MLY_ACTION_BLOCKING 0x1u /* run on the threadpool                */

/* Register action `name` (1..MLY_NAME_MAX bytes, no control character)
 * on rt: MLY_EEXIST when taken, MLY_EINVAL for a bad name or flags.
 * Attaches the fsm layer (mly_fsm_attach) if it is not yet.  Register
 * before loading the files that use it (the loader refuses unknown
 * actions) and before mly_journal_open (recovered instances resume at
 * once).  A dispatch that reaches an action not registered (an instance
 * pinned to a definition whose action the host no longer registers)
 * waits for it, nothing of the dispatch committed, with a log line
 * (mly_fsm_info.awaits_action names it); registering that name wakes it
 * and the dispatch goes on with the same key.  Loop thread. */
int mly_action_register(mly_runtime *rt, const char *name, mly_action_fn fn,
                        void *arg, uint32_t flags);

/* Whether an action of this name is registered on rt (a void * here):
 * the loader's action_known check (mly_fsm_load_options). */
bool mly_action_known(const char *name, void *rt);

/* Inside an action.  The context is the working copy of the instance's
 * context (a map): change it in place; it is saved only when the whole
 * dispatch succeeds.  The scratch map lives for one dispatch only and is
 * never saved (Fantasm's `obj`): exit, transition, entry and action of
 * one dispatch share it.  The key names the dispatch: the same across
 * its retries and after a crash re-runs it ("NAME/SEQ": the instance's
 * name and the number of dispatches it committed before): use it to
 * make side effects idempotent.  Pointers are valid during the call. */
mly_value *mly_action_context(mly_action_call *call);
mly_value *mly_action_scratch(mly_action_call *call);
const char *mly_action_key(const mly_action_call *call);
/* Where it runs: the machine, the state, the event being dispatched
 * ("" for the initial dispatch), the attempt (0: the first). */
const char *mly_action_machine(const mly_action_call *call);
const char *mly_action_state(const mly_action_call *call);
const char *mly_action_event_in(const mly_action_call *call);
uint32_t mly_action_attempt(const mly_action_call *call);
/* Name the next event (copied; MLY_ENAMETOOLONG, MLY_EINVAL). */
int mly_action_event(mly_action_call *call, const char *event);
/* Fail the call: return its value from the action.  permanent: no
 * retry (on_failure at once); otherwise retried per the retry policy.
 * The text (printf format, cut at 255 bytes) goes to "error". */
#define MLY_ACTION_RETRY 1
#define MLY_ACTION_PERMANENT 2
int mly_action_fail(mly_action_call *call, bool permanent, const char *fmt,
                    ...) __attribute__((format(printf, 3, 4)));

/* Fork, spawn and continuation, from inside an action.  Each only
 * records the request in the call (a blocking action may use them); it
 * takes effect when the whole dispatch succeeded, in the step that
 * commits it, so a failed or retried dispatch starts nothing, and the
 * instances it starts are named from the dispatch's key: a dispatch that
 * runs again starts none twice.  Each takes what it is given (also on
 * error).  MLY_EINVAL for a wrong shape, MLY_ENOMEM.
 *
 * mly_action_fork: one more copy of this instance, with the context the
 * dispatch commits, the map `data` (NULL: nothing) merged over it and
 * "fork": N (1, 2, ... in the order asked), dispatching the same next
 * event.  The instance itself goes on as well: K forks, K + 1 instances.
 * Copies are named "NAME.SEQ.fN" (see mly_action_key). */
int mly_action_fork(mly_action_call *call, mly_value *data);
/* Start one instance of `machine` per map in the array `contexts`, each
 * with that context, after countdown_ms (0: at once; the countdown is a
 * durable sleep of the new instance).  Named "NAME.SEQ.sJ", J counting
 * every context spawned by the dispatch from 0.  A machine that is not
 * loaded fails the dispatch (MLY_ENOENT, retried per policy). */
int mly_action_spawn(mly_action_call *call, const char *machine,
                     mly_value *contexts, int64_t countdown_ms);
/* Continuation states (`continuation: True`): the state's action is
 * called first with mly_action_continuing() true, to read the current
 * token (NULL in the chain's first instance; the context holds it under
 * "_token") and name the next one: each token starts a replica of the
 * instance at this dispatch (Fantasm: the same event again), generation
 * + 1, named "NAME.SEQ.cG", after the state's continuation_countdown;
 * no token (NULL, or no call) ends the chain.  Then it is called as any
 * action (mly_action_continuing() false) to do the work of its batch.
 * A continuation runs on the loop thread (even for a blocking action).
 * The context carries "_fan": {l: chain, g: generation, t: replicas (on
 * the last)}: a fan-in with `count: 0` merges all the chain's replicas. */
int mly_action_continue(mly_action_call *call, mly_value *token);
const mly_value *mly_action_token(const mly_action_call *call);
bool mly_action_continuing(const mly_action_call *call);
uint32_t mly_action_generation(const mly_action_call *call);
/* Continuation helpers, called at the continuation position: put the
 * next batch of at most n items in the context under `key` (an array)
 * and continue while more remain (never an empty last batch).
 * _lines: the lines of the file at path (no newline; the token is a byte
 * offset; a line over 1 MiB is MLY_ERANGE, read no further; a batch
 * ends early once its lines hold 64 MiB, the rest in the next; open and
 * read errors as -errno; a directory -EISDIR, anything else that is not a
 * regular file (FIFO, device such as /dev/zero, socket) MLY_EINVAL).  On
 * such an error it also fails the call with a text naming path and the
 * cause (what is not a regular file: for good, the sentence saying what
 * it is; the rest retried); the action returns the code.
 * _list: the array in the context under list_key (the token is an
 * index; a missing key is an empty list). */
int mly_continue_lines(mly_action_call *call, const char *path, uint32_t n,
                       const char *key);
int mly_continue_list(mly_action_call *call, const char *list_key,
                      uint32_t n, const char *key);
/* Fan-in states.  An instance whose next event enters a fan-in state
 * hands its context to the state's collector and ends; once the window
 * ends (`fan_in: 5s`) or N instances arrived or failed
 * (`fan_in: {count: N, tolerate: K}`; count 0: every replica of the
 * continuation upstream), one instance goes on: the first to arrive
 * (its context), with the list of every merged context under "merged",
 * dispatching its event (exit, transition action, entry, action run
 * once, over the whole list).  Contexts with different values of the
 * state's fan_in_group key merge separately.  A replica whose dispatch
 * fails for good counts as failed at the counted fan-in downstream;
 * more than K failures put "error" in the merged instance's context.
 * Merging is exactly once across kill -9: nothing merged twice or lost.
 * Collectors are durable instances named
 * "fanin:MACHINE:STATE:GROUP:CHAIN:GEN" (type "fsm-fanin"); the merged
 * instance is named after its collector, with ".m". */

/* Command actions (`action: {exec: [argv...], timeout: 30s}`): the
 * context goes to the command's stdin as one JSON object; what it
 * prints on stdout, if anything, must be one JSON object, merged into
 * the context key by key; its key "event" (a string) names the next
 * event and is not merged.  Exit status 0: success; MLY_EXEC_PERMANENT
 * (100): a permanent failure; any other status, a signal, output that
 * is not a JSON object, or running past the timeout (the process group
 * gets SIGKILL): a retryable failure, its stderr's last line (up to 255
 * bytes) as the error text.  Output is bounded by MLY_EXEC_OUTPUT_MAX.
 * The command's pid is saved with the step that waits for it; after a
 * crash or a stop the dispatch runs again, and first kills that command
 * (its process group) if it still runs.  A crash before that step's
 * record was durable leaves the command unknown to the next run: it runs
 * on, beside the new one (make commands idempotent by the key, which is
 * in the environment as MLY_FSM_KEY). */
#define MLY_EXEC_PERMANENT 100
#define MLY_EXEC_OUTPUT_MAX (64u << 20)

/* Attach the fsm layer to rt: registers the types "fsm" and "fsm-def"
 * (and the fan-in collector's).  Idempotent.  Call before
 * mly_journal_open.  Freed with the runtime.  Each stored definition is
 * held by a durable instance "fsm-def-<hash>" that never ends, so once
 * machines are added mly_runtime_run returns only after
 * mly_runtime_shutdown.  MLY_ENOMEM; the errors of mly_type_register. */
int mly_fsm_attach(mly_runtime *rt);

/* The loader's set of machines (mly_fsm_load); opaque here. */
typedef struct mly_fsm_set mly_fsm_set;

/* Make the machines of a loaded set startable on rt (attaching the fsm
 * layer).  Each definition is copied and stored once by its content
 * hash (in the journal when one is open: call after mly_journal_open);
 * a machine added again under the same name with other content replaces
 * it for new instances only.  The set stays the caller's.  Loop
 * thread.  MLY_ENOENT: an action it names is not registered. */
int mly_fsm_add(mly_runtime *rt, const mly_fsm_set *set);

/* Start an instance of `machine` with `context` (a map or NULL; taken,
 * also on error).  name: unique (see mly_spawn_options.name), or NULL to
 * generate MACHINE-YYYYmmddHHMMSS-xxxxxx; the shapes of the names the
 * layer gives what it starts ("NAME.SEQ.fN", ".sN", ".cN",
 * "h<16 hex>.fN"..., "fanin:...", "fsm-def-...") are its own
 * (MLY_EINVAL, with a log line).  name_out (may be NULL)
 * receives the name.  A key the machine's context_types declares must
 * hold that type (MLY_EINVAL, with a log line; a dispatch that leaves
 * one with another type fails for good).  Errors: MLY_ENOENT (no such
 * machine), MLY_EEXIST
 * (the name is live or tombstoned: mly_name_lookup tells which),
 * MLY_EINVAL, MLY_ERANGE (name_out too short), mly_spawn's.  Loop
 * thread. */
int mly_fsm_start(mly_runtime *rt, const char *machine, const char *name,
                  mly_value *context, char *name_out, size_t name_out_len,
                  mly_id *id_out);

/* Send event `event` to the instance named `instance` (durable post: cb
 * as mly_post_durable's; NULL: none).  The payload (a map or NULL;
 * taken, also on error) is merged into the context when a wait state
 * takes the event.  An event that arrives while the instance is not in
 * a wait state waits in its inbox.  MLY_ENOENT: no such live instance
 * (MLY_ESRCH: it has ended, or is parked); MLY_EINVAL: the instance is
 * not one of a YAML machine (a fan-in collector, a definition holder),
 * or the payload holds a key of another type than the machine's
 * context_types declares (with a log line, as mly_fsm_start);
 * MLY_EINVAL or MLY_ERANGE: a payload no context could save (nested
 * past MLY_VALUE_MAX_DEPTH, past the journal's record bound);
 * MLY_ESHUTDOWN: the runtime is stopping (the instance is suspended,
 * back at the next open); MLY_EPERM off the loop thread. */
int mly_fsm_send(mly_runtime *rt, const char *instance, const char *event,
                 mly_value *payload, mly_post_cb cb, void *arg);

/* What `mealy fsm show` prints.  Strings point into the
 * runtime's memory, valid until the instance's next step. */
typedef struct mly_fsm_info {
  mly_id id;
  const char *name;
  const char *machine;
  uint32_t version;
  char hash[65];          /* the pinned definition, hex               */
  const char *state;      /* the state it is in, or enters            */
  bool entering;          /* its next dispatch enters `state` itself
                             (the initial one, a move to on_failure) */
  const char *event;      /* the event being dispatched, or ""        */
  const char *phase;      /* "dispatch", "sleep", "wait", "fan-in",
                             "done"                                   */
  const char *sleep_why;  /* "countdown", "backoff", ... or ""         */
  int64_t due_ms;         /* wall clock end of a sleep or wait; -1    */
  uint32_t attempt;       /* failed attempts of this dispatch         */
  uint64_t seq;           /* dispatches committed                     */
  const char *const *waits; /* a wait state's events (nwaits)         */
  size_t nwaits;
  const mly_value *context; /* includes "error" and "cause" after a
                               move to on_failure                      */
  const char *last_error; /* the last failure's text, or ""          */
  mly_lifecycle lifecycle;
  /* the last dispatches and failures, oldest first */
  struct mly_fsm_step {
    uint64_t seq;         /* the dispatch's number (its key's SEQ)     */
    int64_t at_ms;        /* wall clock                                */
    const char *from, *event, *to; /* "" where none                  */
    int result;           /* 0: committed; MLY_EAGAIN: failed, retried;
                             MLY_ECANCELED: failed, not retried (on to
                             on_failure, or the end)                  */
  } history[8];
  size_t nhistory;
  /* appended: its dispatch waits until this C action is registered (a
     host restarted without the library that has it), or "" */
  const char *awaits_action;
  /* appended: its dispatch waits for a slot of this queue (the
     machine's or transition's `queue:`: its limits hold it back), or "" */
  const char *awaits_queue;
} mly_fsm_info;
/* MLY_ESRCH: no such live instance of the fsm type; MLY_EPERM off the
 * loop thread. */
int mly_fsm_info_get(mly_runtime *rt, mly_id id, mly_fsm_info *out);

/* Move the running instances of the machines in `set` to the set's
 * definitions, where that is provably safe, and list each instance that
 * runs another definition of one of them: fn (may be NULL) gets one
 * mly_fsm_migration per instance, valid during the call.  Safe means:
 * the state it is in and the state of a pending transition (countdown,
 * retry, dispatch not yet run) exist in the new definition by name with
 * the same kind (plain, wait, continuation, fan-in of the same sort,
 * final), the pending transition is there on the same event to the same
 * state, each context key keeps its declared type (or is widened to
 * any), and the values it holds fit newly declared types.  Instances
 * waiting at a fan-in are refused (merged instances share one
 * definition).  Context has no required keys, so none can be missing.
 * Unless flags has MLY_FSM_MIGRATE_DRY_RUN (then nothing changes), the
 * set's machines are added (mly_fsm_add: new instances start on them)
 * and each instance found safe is posted a durable event ("fsm.migrate",
 * no new journal record kind) that it takes at its next wait or sleep,
 * in a step of its own: it checks again (it may have moved on; if no
 * longer safe it stays, with a log line) and switches its pinned
 * definition; a restart before that step delivers the event again once
 * its record is in the journal.  mly_fsm_migrate returns once the events
 * are posted, before their records are durable: to answer a user only
 * when nothing of the migration can be lost, use
 * mly_fsm_migrate_durable.
 * Returns the count reported migrated, or MLY_EINVAL, MLY_EPERM (not the
 * loop thread), mly_fsm_add's errors, a post's error.  Loop thread. */
#define MLY_FSM_MIGRATE_DRY_RUN 0x1u
typedef struct mly_fsm_migration {
  mly_id id;
  const char *name;     /* the instance's name                        */
  const char *machine;
  const char *state;    /* the state it is in                         */
  bool migrated;        /* false: refused, reason says why            */
  char reason[256];
} mly_fsm_migration;
typedef void (*mly_fsm_migrate_fn)(void *arg, const mly_fsm_migration *m);
int mly_fsm_migrate(mly_runtime *rt, const mly_fsm_set *set, uint32_t flags,
                    mly_fsm_migrate_fn fn, void *arg);
/* mly_fsm_migrate, with an answer when it is durable: when it returns
 * N > 0, done(rt, status, done_arg) runs exactly once, on the loop
 * thread, never before this call returns: status 0 once the record of
 * every migration event it posted is in the journal (synced under
 * MLY_SYNC_ALWAYS; then each instance switches, across any crash, at
 * its next wait or sleep, or stays where a check made then refuses), or
 * the first failure of one of them (mly_post_durable's statuses:
 * MLY_EUNKNOWN, MLY_ESHUTDOWN...; migrating again lists what is left).
 * Without a journal, status 0 on the next loop turn.  When it returns 0
 * or an error, or with MLY_FSM_MIGRATE_DRY_RUN, done never runs. */
typedef void (*mly_fsm_migrate_done_fn)(mly_runtime *rt, int status,
                                        void *arg);
int mly_fsm_migrate_durable(mly_runtime *rt, const mly_fsm_set *set,
                            uint32_t flags, mly_fsm_migrate_fn fn, void *arg,
                            mly_fsm_migrate_done_fn done, void *done_arg);

/* Where the interpreter's log lines go (a failed instance, a retry, an
 * ignored event): fn gets one line, no newline, on the loop thread.
 * Default (fn NULL): stderr, prefixed "mealy fsm: ".  Attaches the fsm
 * layer (mly_fsm_attach) if it is not yet, so it may come first. */
void mly_fsm_set_log(mly_runtime *rt, void (*fn)(void *arg, const char *line),
                     void *arg);

/* ------------------------------------------------------------------ */
/* Introspection.                                                      */

typedef struct mly_info {
  mly_id id;
  mly_id parent;
  const char *type;       /* type name                                 */
  mly_lifecycle lifecycle;
  const char *point;      /* current yield point name ("begin" at start) */
  /* "event config", "timer", "child 5", ...: large enough for the longest
     (an event name is at most MLY_NAME_MAX bytes), never cut */
  char waiting[MLY_NAME_MAX + 17];
  int64_t timer_left_ms;  /* -1: no timer                              */
  size_t inbox;           /* queued events                             */
  uint32_t children;
  bool shutting_down;
  char point_buf[24];     /* private: holds point when it is "line N" */
} mly_info;

/* Calls cb for every live instance (in slot order); a non-zero return from
 * cb stops the walk and is returned. */
int mly_foreach(mly_runtime *rt, int (*cb)(const mly_info *, void *),
                void *arg);
/* One instance (MLY_ESRCH: none; MLY_EINVAL: out is NULL). */
int mly_info_get(mly_runtime *rt, mly_id id, mly_info *out);
/* Print a table of instances (one line each) to a stdio stream. */
int mly_runtime_dump(mly_runtime *rt, void *file /* FILE* */);

typedef struct mly_stats {
  uint64_t live;            /* instances alive now                       */
  uint64_t spawned;
  uint64_t steps;
  uint64_t delivered;       /* events put in an inbox                    */
  uint64_t dropped;         /* unhandled (DROP_UNHANDLED, inbox_drop,
                               inbox of an ending instance)               */
  uint64_t late_replies;    /* replies whose request had finished        */
  uint64_t undeliverable;   /* posts taken but not delivered: to ended
                               instances (a durable post also: to one
                               that is not durable)                      */
  uint64_t posted;          /* events received through mly_post          */
  uint64_t timers_fired;
  uint64_t bytes;           /* memory held by the runtime itself         */
} mly_stats;

void mly_runtime_stats(const mly_runtime *rt, mly_stats *out);

/* ------------------------------------------------------------------ */
/* Metrics: the Prometheus text exposition format, version 0.0.4       */
/* (https://prometheus.io/docs/instrumenting/exposition_formats/).     */
/*                                                                     */
/* mly_metrics_write writes every figure of a runtime, then what each  */
/* registered metrics source adds, as text, in pieces to a callback:   */
/* the library holds one small buffer (MLY_METRICS_CHUNK bytes) and    */
/* nothing grows with the number of instances.  The caller decides     */
/* where the text goes: a FILE (mly_metrics_fprint), a buffer it bounds */
/* itself, an HTTP response (serve it as Content-Type                  */
/* MLY_METRICS_CONTENT_TYPE).  The README lists every metric.          */
/*                                                                     */
/* The runtime's own: mealy_instances{type,lifecycle} (a gauge for     */
/* every registered type and every lifecycle, 0 included),             */
/* mealy_instances_spawned_total, mealy_steps_total,                   */
/* mealy_events_{delivered,dropped,late_replies,undeliverable,posted}_total, */
/* mealy_timers_fired_total, mealy_timers_pending,                     */
/* mealy_post_queue_depth, mealy_post_queue_limit, mealy_processes,    */
/* mealy_runtime_memory_bytes, mealy_runtime_stopping; with a journal   */
/* open, mealy_journal_{records,written_bytes,batches,syncs,           */
/* segments_created,compactions}_total, mealy_journal_{size,live}_bytes, */
/* mealy_journal_batch_bytes and mealy_journal_batch_records           */
/* (histograms, per batch written), mealy_journal_sync_seconds         */
/* (histogram, per fdatasync of a batch), mealy_journal_failed and the */
/* figures of the open (recovered, parked, torn, salvaged).            */
/*                                                                     */
/* Loop thread only (MLY_EPERM otherwise).  Returns 0, or the first    */
/* non-zero return of write (write is not called again after it), of  */
/* a source, or an MLY_E* error (MLY_EINVAL: a source wrote a bad name); */
/* after an error the text handed over may end mid-line: discard it.   */

#define MLY_METRICS_CHUNK 4096
#define MLY_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Takes n bytes (n > 0) of text; returns 0 to go on, non-zero to stop. */
typedef int (*mly_metrics_write_fn)(void *arg, const char *p, size_t n);

int mly_metrics_write(mly_runtime *rt, mly_metrics_write_fn write, void *arg);
/* The same into a stdio stream: MLY_EIO when a write fails. */
int mly_metrics_fprint(mly_runtime *rt, void *file /* FILE* */);

/* A metrics source adds its own families to every mly_metrics_write of
 * its runtime, after the runtime's and in the order sources were added:
 * a layer above the runtime (the task queues, the supervisor, a host)
 * registers one for its figures.  It writes through mly_metrics_family
 * and mly_metrics_sample, which check names and escape text, and
 * returns 0 (or an error, which ends the write and is returned).  Its
 * metric names must not be used by the runtime or another source: use a
 * prefix of your own (mealy_queue_*, mealy_supervisor_*, myapp_*).
 * Sources live with the runtime: add them on the loop thread; remove one
 * with the same (fn, arg) before arg goes away.  MLY_EEXIST: that pair
 * is already added; MLY_ENOENT: not found. */
typedef struct mly_metrics mly_metrics; /* the writer, during one write */
typedef int (*mly_metrics_source_fn)(mly_metrics *mx, void *arg);
int mly_metrics_source_add(mly_runtime *rt, mly_metrics_source_fn fn,
                           void *arg);
int mly_metrics_source_remove(mly_runtime *rt, mly_metrics_source_fn fn,
                              void *arg);
mly_runtime *mly_metrics_runtime(const mly_metrics *mx);

typedef enum mly_metric_type {
  MLY_METRIC_COUNTER = 0, /* name it *_total                            */
  MLY_METRIC_GAUGE,
  MLY_METRIC_HISTOGRAM,   /* samples NAME_bucket{le=..}, _sum, _count   */
  MLY_METRIC_SUMMARY,     /* samples NAME{quantile=..}, _sum, _count    */
  MLY_METRIC_UNTYPED
} mly_metric_type;

/* Starts a family: its # HELP (help: one line of text; a backslash or a
 * newline in it is escaped) and # TYPE lines.  Every sample that follows
 * belongs to it, until the next family.  name: [a-zA-Z_:][a-zA-Z0-9_:]*,
 * at most 200 bytes; MLY_EINVAL otherwise. */
int mly_metrics_family(mly_metrics *mx, const char *name,
                       mly_metric_type type, const char *help);
/* One sample of the current family.  name: the family's name, or for a
 * histogram or summary that name with _bucket, _sum or _count (MLY_EINVAL
 * for any other, or with no family started).  labels: NULL, or pairs
 * {"name", "value", ..., NULL}; label names [a-zA-Z_][a-zA-Z0-9_]*, not
 * starting "__"; values any text (backslash, double quote and newline
 * are escaped).  A double is written exactly ("NaN", "+Inf", "-Inf"
 * included); the _u64 form writes integers past 2^53 exactly. */
int mly_metrics_sample(mly_metrics *mx, const char *name,
                       const char *const *labels, double value);
int mly_metrics_sample_u64(mly_metrics *mx, const char *name,
                           const char *const *labels, uint64_t value);

/* ------------------------------------------------------------------ */
/* Utilities.                                                          */

/* Parse a duration: a whole number with a unit, "250ms", "10s", "2m",
 * "1h" (a bare number is milliseconds).  MLY_EINVAL for anything else,
 * MLY_ERANGE past INT64_MAX ms. */
int mly_duration_parse(const char *s, int64_t *ms);

/* Text from outside (a configuration value, a program's output, a
 * request) made safe to show on a terminal: ESC sequences, C1 controls
 * (U+0080-U+009F) and bidirectional overrides are escaped the way
 * journalctl does ("\x1b", "\u009b", "\u202e"), bytes that are not
 * UTF-8 become "\xNN", a tab is kept, everything else is left as is.
 * mly_esc_str escapes n bytes at s into out (cap bytes, NUL-ended when
 * cap > 0), stops before an escape that would not fit, and returns the
 * length written; MLY_ESC_MAX(n) is the longest escaped form of n bytes
 * (without the NUL).  mly_utf8_at: the length (1-4) of the valid UTF-8
 * sequence at s (n > 0) with its code point, or 0 (overlong forms,
 * surrogates, past U+10FFFF).  Any thread. */
#define MLY_ESC_MAX(n) (4 * (n))
bool mly_esc_needed(const char *s, size_t n);
size_t mly_esc_str(const char *s, size_t n, char *out, size_t cap);
size_t mly_utf8_at(const unsigned char *s, size_t n, uint32_t *cp);

/* ------------------------------------------------------------------ */
/* Reading YAML files (lib/conf/): what the supervisor's configuration */
/* and the YAML machines are read with.                                */
/*                                                                     */
/* mly_conf_parse loads one YAML document with libyaml, after a first  */
/* pass that refuses what would cost too much (more than 32 levels of  */
/* nesting, more than 1000 anchors or aliases, more than 1 MiB of      */
/* text, explicit tags other than the node's own), and calls fn with   */
/* its root (NULL: an empty file).  Nodes are valid during fn only:    */
/* copy what you keep.  A second document after the first is an error. */
/* Every problem is reported through o->on_error as a mly_conf_msg     */
/* (file, line and column from 1; line 0: about the whole file) and    */
/* the functions return MLY_EINVAL (MLY_ENOMEM, or a read error from   */
/* mly_conf_read).  Messages say what is wrong and what to do; values  */
/* quoted from the file are cut to 40 bytes and escaped (mly_conf_show).*/
/*                                                                     */
/* A map of known keys is read with a field table:                     */
/*     static const mly_conf_field fields[] = {                        */
/*         {"name", f_name, false}, {"states", f_states, true}};       */
/*     rc = mly_conf_walk(c, node, fields, 2, "in machine 'm'", obj);  */
/* which calls each key's handler with obj and the value (a null value */
/* - empty, ~, null - means "not set" and skips the handler unless     */
/* nulls is true), refuses keys not in the table (listing the known    */
/* ones) and keys given twice.  With o->all_errors the walk goes on    */
/* after an error and returns the first; without, it stops at it.      */
/* The getters below check a scalar's type and range and report with   */
/* `what` naming the value ("backoff max").  One mly_conf is used by   */
/* one thread at a time; no global state.                              */

typedef struct mly_conf mly_conf;           /* one document being read  */
typedef struct mly_conf_node mly_conf_node; /* a node of it (libyaml's) */

typedef struct mly_conf_msg {
  const char *file;     /* o->path                                      */
  uint32_t line, col;   /* from 1; line 0: the file as a whole          */
  const char *text;     /* "what is wrong; what to do", no position     */
} mly_conf_msg;

typedef struct mly_conf_options {
  const char *path;     /* named in messages (NULL: "config")           */
  bool all_errors;      /* go on after an error: report every one       */
  void (*on_error)(const mly_conf_msg *msg, void *arg); /* may be NULL  */
  void *arg;            /* for on_error                                  */
  void *user;           /* what mly_conf_user returns                    */
} mly_conf_options;

typedef int (*mly_conf_root_fn)(mly_conf *c, mly_conf_node *root);
int mly_conf_parse(const mly_conf_options *o, const char *text, size_t len,
                   mly_conf_root_fn fn);
/* Read a whole regular file (never a FIFO or device: refused), at most
 * 1 MiB + 1 byte (mly_conf_parse says when it is too big); *text is
 * malloc'd (free it).  Errors: "PATH: cannot read: ..." and -errno. */
int mly_conf_read(const mly_conf_options *o, const char *path, char **text,
                  size_t *len);
/* Report a message about the file as a whole (or at line:col, from 1)
 * without a document; returns MLY_EINVAL. */
int mly_conf_report(const mly_conf_options *o, uint32_t line, uint32_t col,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* "FILE:LINE:COL: text" (or "FILE: text") into buf, cut between UTF-8
 * characters when it does not fit; returns buf. */
char *mly_conf_format(const mly_conf_msg *m, char *buf, size_t len);

void *mly_conf_user(const mly_conf *c);
const char *mly_conf_path(const mly_conf *c);
size_t mly_conf_nerrors(const mly_conf *c);   /* reported so far */

/* Nodes.  MLY_CONF_NULL: an empty or ~/null plain scalar (quoted "" is
 * a string).  mly_conf_scalar: the text of a scalar (NULL otherwise).
 * mly_conf_len: pairs of a map, items of a list, bytes of a scalar.
 * mly_conf_kind_name: "empty", "a string", "a list", "a map" for
 * messages.  pair/item count the work done (aliases make a small file
 * name a big node many times: the total read is bounded). */
typedef enum mly_conf_type {
  MLY_CONF_NULL = 0, MLY_CONF_SCALAR, MLY_CONF_LIST, MLY_CONF_MAP
} mly_conf_type;
mly_conf_type mly_conf_type_of(const mly_conf_node *n);
bool mly_conf_is_null(const mly_conf_node *n);
const char *mly_conf_kind_name(const mly_conf_node *n);
const char *mly_conf_scalar(const mly_conf_node *n);
size_t mly_conf_len(const mly_conf_node *n);
uint32_t mly_conf_line(const mly_conf_node *n);  /* from 1 */
uint32_t mly_conf_col(const mly_conf_node *n);   /* from 1 */
int mly_conf_pair(mly_conf *c, mly_conf_node *map, size_t i,
                  mly_conf_node **key, mly_conf_node **val);
int mly_conf_item(mly_conf *c, mly_conf_node *list, size_t i,
                  mly_conf_node **item);

/* Errors at a node (NULL: the file) or a position; return MLY_EINVAL
 * (mly_conf_nomem: MLY_ENOMEM, "out of memory while loading ..."). */
int mly_conf_bad(mly_conf *c, const mly_conf_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int mly_conf_bad_at(mly_conf *c, uint32_t line, uint32_t col,
                    const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int mly_conf_nomem(mly_conf *c);

/* A value quoted in a message: 40 bytes at most (cut between
 * characters, "..." added), escaped (mly_esc_str). */
typedef struct mly_conf_shown {
  char s[MLY_ESC_MAX(40) + 4];
} mly_conf_shown;
mly_conf_shown mly_conf_show(const char *v);

/* Typed scalars.  get_str: a non-null scalar without NUL bytes (valid
 * while the document is).  set_str: a non-empty copy into *dst (the old
 * one freed).  get_bool: true/false in any case (Fantasm's True/False).
 * get_int: whole decimal numbers in [lo, hi].  get_num: plain decimal
 * notation, finite.  get_dur: a duration (mly_duration_parse) of at
 * least min ms and at most a year.  get_size: bytes, or with a binary
 * unit (512KB, 10MB, 1GB).  mly_conf_parse_int: the decimal parser the
 * getters use, saturating past int64 (false: not a whole number). */
int mly_conf_get_str(mly_conf *c, mly_conf_node *v, const char *what,
                     const char **out);
int mly_conf_set_str(mly_conf *c, mly_conf_node *v, const char *what,
                     char **dst);
int mly_conf_get_bool(mly_conf *c, mly_conf_node *v, const char *what,
                      bool *out);
int mly_conf_get_int(mly_conf *c, mly_conf_node *v, const char *what,
                     int64_t lo, int64_t hi, int64_t *out);
int mly_conf_get_num(mly_conf *c, mly_conf_node *v, const char *what,
                     double *out);
int mly_conf_get_dur(mly_conf *c, mly_conf_node *v, const char *what,
                     int64_t min, int64_t *out);
int mly_conf_get_size(mly_conf *c, mly_conf_node *v, const char *what,
                      uint64_t *out);
bool mly_conf_parse_int(const char *s, int64_t *out);

typedef int (*mly_conf_field_fn)(mly_conf *c, void *obj, mly_conf_node *v);
typedef struct mly_conf_field {
  const char *key;
  mly_conf_field_fn fn;
  bool nulls;   /* the handler sees null values; otherwise null = unset */
} mly_conf_field;
/* At most 32 fields; `where` ends messages ("in program 'web'"). */
int mly_conf_walk(mly_conf *c, mly_conf_node *map, const mly_conf_field *f,
                  size_t nf, const char *where, void *obj);
/* fn for each item of a list (i from 0), going on after an error as
 * mly_conf_walk does; returns the first error. */
int mly_conf_each(mly_conf *c, mly_conf_node *list,
                  int (*fn)(mly_conf *c, void *obj, mly_conf_node *item,
                            size_t i),
                  void *obj);

/* ------------------------------------------------------------------ */
/* YAML machines (layer `fsm`, lib/fsm/): loading.                     */
/*                                                                     */
/* mly_fsm_load reads machine files in Fantasm's format (README, "YAML */
/* machines"): `state_machines:` and `import:` (paths relative to the  */
/* importing file; a circular import is an error naming the cycle),    */
/* checks everything it can before anything runs, and reports every    */
/* problem, not only the first, through o->on_error as mly_conf_msg's  */
/* ("FILE:LINE:COL" and a sentence on what to fix).  Keys that concern */
/* only App Engine (target, logging, use_run_once_semaphore, root_url) */
/* and deprecated ones (max_retries) are accepted with a note through  */
/* o->on_note.  Returns 0 and *out, or (*out NULL): MLY_EINVAL when    */
/* anything was reported, MLY_ENOMEM, a read error (-errno), MLY_EPERM */
/* for a file that o->trusted_files refuses.  A bare number in a       */
/* duration is seconds, as in Fantasm; 250ms, 10s, 2m, 1h, 3d also do. */
/*                                                                     */
/* Action names are checked at load time when o->action_known is set   */
/* (the interpreter plugs its registry in here): a name it does not    */
/* know is an error.  Without it only the structure is checked.        */
/* Top-level sections of other layers (the task queue's `queues:` and  */
/* `schedules:`) go to the readers in o->sections, with the document   */
/* alive; a section that has no reader is an error ("not supported by  */
/* this build").  A set is immutable once loaded: any thread may read  */
/* it; mly_fsm_set_free releases it (NULL is fine).                    */

typedef struct mly_fsm_set mly_fsm_set;
typedef struct mly_fsm_machine mly_fsm_machine;

typedef struct mly_conf_section {
  const char *key;     /* "queues" */
  /* read the section's value; report problems with mly_conf_bad and
     return 0 or the first error */
  int (*read)(mly_conf *c, mly_conf_node *value, void *arg);
  void *arg;
  /* may be NULL: called once after every file is read and the machines
     checked, to check what the section read against them (a schedule's
     machine:); report each mistake with mly_conf_report(&o, line, col,
     ...) on a copy o of *report with o.path set to the file it is in
     (each counts as a load error) */
  void (*check)(const mly_conf_options *report, const mly_fsm_set *set,
                void *arg);
} mly_conf_section;

typedef struct mly_fsm_load_options {
  /* every error; NULL: each goes to stderr, "mealy fsm: FILE:LINE:COL: ..." */
  void (*on_error)(const mly_conf_msg *msg, void *arg);
  void (*on_note)(const mly_conf_msg *msg, void *arg);  /* may be NULL */
  void *arg;                                    /* for both           */
  /* true: an action of this name is registered (name: the namespace
     applied, e.g. "shop.Charge"); NULL: names are not checked */
  bool (*action_known)(const char *name, void *arg);
  void *action_arg;
  const mly_conf_section *sections;
  size_t nsections;
  /* Files whose contents run commands (exec actions) must not be
     swappable by another user: with this set, every file read (the roots
     and their imports) must lie in directories mly_path_check trusts and
     be owned by root or this user, not writable by group or others; a
     file that is not is an error.  `mealy fsm run` always sets it. */
  bool trusted_files;
  /* true: a queue of this name will be declared (a machine's or a
     transition's `queue:`; mly_queue_conf_has answers for a conf's
     `queues:`, mly_queue_def_get for a runtime's); NULL: not checked.
     An unknown name is an error at its FILE:LINE:COL. */
  bool (*queue_known)(const char *name, void *arg);
  void *queue_arg;
} mly_fsm_load_options;

/* files: nfiles paths, each a root (machines of all of them share one
 * namespace of names). */
int mly_fsm_load(const char *const *files, size_t nfiles,
                 const mly_fsm_load_options *o, mly_fsm_set **out);
/* The same from text (path names it in messages; its imports are read
 * from files relative to it). */
int mly_fsm_load_text(const char *path, const char *text, size_t len,
                      const mly_fsm_load_options *o, mly_fsm_set **out);
void mly_fsm_set_free(mly_fsm_set *s);

/* Queues and schedules in YAML: `queues:` and `schedules:`, read by
 * the fsm loader's section hook (README "Queues and schedules in
 * YAML" lists the keys).  Make a conf, pass its two sections in
 * mly_fsm_load_options.sections, load; every mistake is reported
 * through the loader's on_error at FILE:LINE:COL.  Then declare what
 * was read: MLY_QCONF_QUEUES after mly_queues_open and before
 * mly_journal_open, MLY_QCONF_SCHEDULES after it; the first refusal
 * (mly_queue_declare's or mly_schedule_declare's) is returned.  The
 * conf is the caller's (free it after the apply; the runtime keeps
 * copies). */
typedef struct mly_queue_conf mly_queue_conf;
#define MLY_QCONF_QUEUES 0x1u
#define MLY_QCONF_SCHEDULES 0x2u
mly_queue_conf *mly_queue_conf_new(void);          /* NULL: no memory */
void mly_queue_conf_free(mly_queue_conf *qc);      /* NULL is fine    */
void mly_queue_conf_sections(mly_queue_conf *qc, mly_conf_section out[2]);
size_t mly_queue_conf_count(const mly_queue_conf *qc, bool schedules);
/* true: the conf's `queues:` declares `name` (after the load). */
bool mly_queue_conf_has(const mly_queue_conf *qc, const char *name);
/* Before the load: a schedule's queue: may also name a queue declared
 * on rt (else only its conf's queues and MLY_QUEUE_DEFAULT), its
 * priority is checked against that queue's levels, and with functions
 * true its function: must be registered on rt (mly_defer_known: give
 * true when every function there will be is registered, as `mealy fsm
 * run` does after --actions).  A schedule's machine: must be defined in
 * the set loaded, and every schedule's mistakes are load errors at
 * FILE:LINE:COL whether bound or not. */
void mly_queue_conf_bind(mly_queue_conf *qc, mly_runtime *rt, bool functions);
int mly_queue_conf_apply(mly_runtime *rt, const mly_queue_conf *qc,
                         unsigned what, char *err, size_t errlen);

/* Machines in file order (imports before the file that imports them). */
size_t mly_fsm_count(const mly_fsm_set *s);
const mly_fsm_machine *mly_fsm_at(const mly_fsm_set *s, size_t i);
const mly_fsm_machine *mly_fsm_find(const mly_fsm_set *s, const char *name);
const char *mly_fsm_name(const mly_fsm_machine *m);
size_t mly_fsm_nstates(const mly_fsm_machine *m);
/* SHA-256 of the machine's canonical encoding (no positions): equal
 * for equal definitions, whatever the file's layout; 32 bytes. */
const unsigned char *mly_fsm_hash(const mly_fsm_machine *m);
/* Graphviz DOT of one machine to a FILE * (void * here, as
 * mly_runtime_dump): the initial state drawn bold with an arrow from a
 * point, finals as double circles, wait states as hexagons, continuation
 * and fan-in states marked in their labels; transitions labelled with
 * their event, countdown and action.  0 or MLY_EIO. */
int mly_fsm_dot(const mly_fsm_machine *m, void *file);

/* ------------------------------------------------------------------ */
/* Machine bodies: protothread-style macros.                           */
/*                                                                     */
/*   #define PINGER_POINTS(X) X(pinger, idle) X(pinger, waiting)        */
/*   MLY_POINTS(pinger, PINGER_POINTS);                                */
/*                                                                     */
/*   static int pinger_run(mly_machine *m, void *data) {               */
/*     struct pinger *p = data;                                        */
/*     MLY_BEGIN(m);                                                   */
/*     MLY_SLEEP_AT(m, pinger_idle, 100);                              */
/*     MLY_AWAIT_AT(m, pinger_waiting, PONG, 500);                     */
/*     if (mly_current_event(m) == NULL) MLY_EXIT(m, 1); (no PONG)     */
/*     MLY_END(m);                                                     */
/*   }                                                                 */
/*                                                                     */
/* Rules.  Local variables do not survive a wait: keep state in the    */
/* instance data.  A local in scope across a wait compiles silently    */
/* and holds garbage after it (a loop on it may never end); gcc's      */
/* -Wjump-misses-init reports every such local ("switch jumps over     */
/* variable initialization"): build machines with it, as this project  */
/* does (clang has no such warning).  Do not put a wait inside a switch */
/* statement of your own.  Each named point stands at one place in the */
/* code (the compiler enforces it: a second use is a duplicate case    */
/* label).  Anonymous waits (the forms without _AT) are named "line N" */
/* and are only for machines that are never persisted: an instance of */
/* a MLY_TYPE_DURABLE type (journal open or not) that reaches one      */
/* fails at once with MLY_EINVAL, whether or not the wait would        */
/* suspend (a condition that holds, a child or target that does not   */
/* exist): the wait does nothing (a request is not sent).              */
/*                                                                     */
/* Renaming a yield point of a durable type: persisted instances rest  */
/* at the old name, so keep the old name's wait in the code, where it  */
/* was, beside the new one, for as long as any instance may rest there:*/
/*     if (0) MLY_AWAIT_AT(m, order_paying, PAID, 30000);  (old: only   */
/*     else   MLY_AWAIT_AT(m, order_charging, PAID, 30000); resumed)   */
/* An instance resumed at the old point finishes that wait and goes on */
/* after both.  Drop the old one in a later version, once no instance  */
/* rests there (`mealy journal dump`, mly_foreach).  Never keep a name */
/* in the points list without its wait in the code, and never remove  */
/* a name instances rest at: those instances are parked at open        */
/* (mly_journal_parked says why) until code that has the wait returns. */
/*                                                                     */
/* Shutdown requests (mly_shutdown; mly_runtime_shutdown for instances */
/* that are not durable).  A request never overtakes the events sent   */
/* to the instance before it: journaled ones reach it once durable,    */
/* and the request then waits behind them; one made inside a step,     */
/* with a journal open, takes effect after that step's events, as a    */
/* send would.  From then on mly_shutdown_requested(m) is true, for    */
/* good (but see replies below).  Without a shutdown routine, the      */
/* request also ends the first wait tested after it, early and with    */
/* nothing taken: mly_current_event(m) is NULL, mly_timed_out(m)       */
/* false, an event that had arrived stays in the inbox for a later     */
/* wait, a timer that had fired is forgotten.  Only that one wait ends */
/* early: later waits return events and time out as usual while the    */
/* flag stays true.  So the natural test after a wait never drops what */
/* it was given:                                                       */
/*     MLY_AWAIT_AT(m, pt, EV, -1);                                    */
/*     if (mly_shutdown_requested(m)) break;   (nothing was taken)     */
/* and a machine that goes on waiting while it stops (to drain, to     */
/* wait for children) tests what its wait returned first:              */
/*     if (mly_current_event(m)) handle(...); else if (...requested...) */
/* Replies: only the request's own wait can take one, so a request     */
/* whose reply had already arrived when the shutdown came returns the  */
/* reply, mly_shutdown_requested(m) says false until the next wait     */
/* begins, and the shutdown ends that next wait early instead: the     */
/* same natural test keeps the reply.  A reply that comes after its    */
/* request ended is late (stats.late_replies).  With a shutdown        */
/* routine no wait ends early: the next step starts that routine from  */
/* its beginning (it sees the same points list, and the inbox as it    */
/* was, less the reply of a request it abandoned: that one is late).   */

/* Declare the named yield points of machine type `pfx`: enumerators
 * pfx_NAME and a names array pfx_points for mly_type_def. */
#define MLY__PT_ENUM(pfx, name) pfx##_##name,
#define MLY__PT_STR(pfx, name) #name,
#define MLY_POINTS(pfx, LIST)                                         \
  enum pfx##_point { pfx##__begin = 0, LIST(MLY__PT_ENUM) pfx##__npoints }; \
  static const char *const pfx##_points[] = {"begin", LIST(MLY__PT_STR) NULL}
/* Designated-initializer shorthand for .points/.npoints. */
#define MLY_TYPE_POINTS(pfx) .points = pfx##_points, .npoints = pfx##__npoints

/* Anonymous points live above every named one. */
#define MLY__ANON_BASE 0x1000000u
#define MLY__ANON (MLY__ANON_BASE + (uint32_t)__LINE__)

/* Private: the part of an instance the macros touch. */
struct mly_machine {
  uint32_t pc;   /* the yield point it resumes at */
  uint8_t wait;  /* private: what it waits for     */
  uint8_t woke;  /* private: why its wait ended    */
  uint8_t lc;    /* mly_lifecycle                  */
  uint8_t flags; /* private                        */
};

/* Set while mly_journal_open checks that a recovered point has code: a
 * wait then yields at once, its test not evaluated. */
#define MLY__F_PROBE 0x80u

int mly__bad_point(mly_machine *m);
int mly__finish(mly_machine *m, int status);
void mly__yield(mly_machine *m);
void mly__sleep(mly_machine *m, uint64_t ms);
void mly__wait_cond(mly_machine *m);
void mly__await(mly_machine *m, uint32_t id, mly_id from, int64_t ms);
void mly__await_name(mly_machine *m, const char *name, int64_t ms);
void mly__await_child(mly_machine *m, mly_id child);
void mly__request(mly_machine *m, mly_id to, uint32_t id,
                  mly_value *payload, int64_t ms);
int mly__woke_done(mly_machine *m);
int mly__cond_done(mly_machine *m, int cond);
int mly__await_done(mly_machine *m);
int mly__child_done(mly_machine *m, int *status);

/* The fall into a wait's case label is meant: say so to compilers that
 * check (-Wimplicit-fallthrough; a comment does not reach them through a
 * macro).  GCC >= 7 and clang >= 10 know the attribute. */
#if defined(__has_attribute)
#if __has_attribute(fallthrough)
#define MLY__FALLTHROUGH __attribute__((fallthrough))
#endif
#endif
#ifndef MLY__FALLTHROUGH
#define MLY__FALLTHROUGH ((void)0)
#endif

/* One shape serves every wait: remember where we are, set it up (the
 * setup sees the point: a durable type refuses an anonymous one), and
 * from there on test whether it is over; yield while it is not. */
#define MLY__WAIT(m, pt, setup, done)                                 \
  do {                                                                \
    (m)->pc = (pt);                                                   \
    setup;                                                            \
    MLY__FALLTHROUGH;                                                 \
    case (pt):                                                        \
      if (((m)->flags & MLY__F_PROBE) || !(done)) return MLY_YIELDED; \
  } while (0)

#define MLY_BEGIN(m)                                                  \
  switch ((m)->pc) {                                                  \
  default:                                                            \
    return mly__bad_point(m);                                         \
  case 0:
#define MLY_END(m)                                                    \
  }                                                                   \
  return mly__finish((m), 0)
#define MLY_EXIT(m, status) return mly__finish((m), (status))

/* Yield until the next loop turn. */
#define MLY_YIELD_AT(m, pt) MLY__WAIT(m, pt, mly__yield(m), mly__woke_done(m))
#define MLY_YIELD(m) MLY_YIELD_AT(m, MLY__ANON)

/* Wait until cond holds; it is tested now and each time the machine is
 * woken: an event arrives, a child ends, mly_wake(), a shutdown. */
#define MLY_WAIT_UNTIL_AT(m, pt, cond)                                \
  MLY__WAIT(m, pt, mly__wait_cond(m), mly__cond_done(m, !!(cond)))
#define MLY_WAIT_UNTIL(m, cond) MLY_WAIT_UNTIL_AT(m, MLY__ANON, cond)

/* Sleep ms milliseconds (events meanwhile are queued). */
#define MLY_SLEEP_AT(m, pt, ms)                                       \
  MLY__WAIT(m, pt, mly__sleep(m, (ms)), mly__woke_done(m))
#define MLY_SLEEP(m, ms) MLY_SLEEP_AT(m, MLY__ANON, ms)

/* Wait for an event with this id (MLY_EV_ANY: any), at most ms
 * milliseconds (< 0: no limit).  Afterwards mly_current_event(m) is the event,
 * or NULL with mly_timed_out(m) true when the time ran out. */
#define MLY_AWAIT_AT(m, pt, id, ms)                                   \
  MLY__WAIT(m, pt, mly__await(m, (id), 0, (ms)), mly__await_done(m))
#define MLY_AWAIT(m, id, ms) MLY_AWAIT_AT(m, MLY__ANON, id, ms)
/* The same, with the event named ("config"). */
#define MLY_AWAIT_NAME_AT(m, pt, name, ms)                            \
  MLY__WAIT(m, pt, mly__await_name(m, (name), (ms)), mly__await_done(m))
#define MLY_AWAIT_NAME(m, name, ms) MLY_AWAIT_NAME_AT(m, MLY__ANON, name, ms)

/* Wait for child machine `child` to end; *status_ptr gets its exit
 * status (MLY_ESRCH if it is not a child of m).  status_ptr may be NULL
 * when the status is not wanted (mly_wait_error(m) still tells). */
#define MLY_AWAIT_CHILD_AT(m, pt, child, status_ptr)                  \
  MLY__WAIT(m, pt, mly__await_child(m, (child)),                      \
            mly__child_done(m, (status_ptr)))
#define MLY_AWAIT_CHILD(m, child, status_ptr)                         \
  MLY_AWAIT_CHILD_AT(m, MLY__ANON, child, status_ptr)

/* Send a request and wait for the reply with its correlation id, at most
 * ms milliseconds.  Afterwards mly_current_event(m) is the reply, or NULL: then
 * mly_timed_out(m), or mly_wait_error(m) (MLY_ESRCH: no such target). */
#define MLY_REQUEST_AT(m, pt, to, id, payload, ms)                    \
  MLY__WAIT(m, pt, mly__request(m, (to), (id), (payload), (ms)),      \
            mly__await_done(m))
#define MLY_REQUEST(m, to, id, payload, ms)                           \
  MLY_REQUEST_AT(m, MLY__ANON, to, id, payload, ms)

/* What ended the last wait: its time ran out; it failed (0: it did
 * not); a shutdown was requested (true from the request on, for good:
 * see "Shutdown requests" above for the one wait it ends early). */
bool mly_timed_out(const mly_machine *m);
int mly_wait_error(const mly_machine *m);
bool mly_shutdown_requested(const mly_machine *m);

/* ------------------------------------------------------------------ */
/* PostgreSQL store: durable machines of many processes in one        */
/* database (in progress: see README "PostgreSQL store")               */
/* ------------------------------------------------------------------ */

#define MLY_PG_LEASE_MIN_MS 100u
#define MLY_PG_LEASE_MAX_MS 3600000u
#define MLY_PG_POLL_MIN_MS 10u
#define MLY_PG_POLL_MAX_MS 3600000u

/* true when rt's durable layer is on a store that several processes
 * share (mly_store_postgres): a name, an instance row is the database's,
 * not this process's alone.  false: a journal, or no durable layer.  It
 * does not change once the layer is open. */
bool mly_store_shared(const mly_runtime *rt);

/* How a runtime's durable layer opens on PostgreSQL. */
typedef struct mly_store_pg_options {
  const char *conninfo;   /* libpq connection string or postgresql://
                             URI (copied); a socket directory (host=/dir)
                             or hostaddr= keeps the loop from ever waiting
                             on a name lookup                          */
  uint32_t lease_ms;      /* this process owns its instances while its
                             lease holds; renewed every lease_ms / 3.
                             Another process claims them once it ran
                             out.  0: 10,000; else from
                             MLY_PG_LEASE_MIN_MS to MLY_PG_LEASE_MAX_MS
                             (100 to 3,600,000), MLY_EINVAL otherwise.
                             A process whose lease ran out (the server
                             away that long, or the process paused)
                             comes back with a new epoch: until then
                             durable spawns and sends answer MLY_EAGAIN */
  uint32_t poll_ms;       /* events other processes commit for this
                             one's instances are looked for this often
                             when no notification came (and at once
                             after every reconnection); 0: 1,000; else
                             from MLY_PG_POLL_MIN_MS to MLY_PG_POLL_MAX_MS
                             (10 to 3,600,000), MLY_EINVAL otherwise   */
  /* The durable layer's policies, as for mly_journal_open (may be
   * NULL): on_error/arg, name_retention_ms.  The journal's own fields
   * (dir, sync, segments, compaction, fault) are not used. */
  const mly_journal_options *durable;
  /* A server that does not come back: when batches have waited this
   * long with no working connection (ms), the store fails as a journal
   * that cannot write does (fail-stop: the waiting steps' completions
   * and durable posts report the error, MLY_EUNKNOWN where a COMMIT may
   * have reached the server; the durable machines end; on_error is
   * called with MLY_ETIMEDOUT).  Checked every give_up_ms / 8.
   * 0: max(60,000, 6 x lease_ms). */
  uint32_t give_up_ms;
  /* Set on each of the store's connections (ms): a statement waiting
   * longer than lock_timeout_ms for a lock (another session holding a
   * row) is cancelled, or running longer than statement_timeout_ms; the
   * batch is sent again (a deadlock or serialization failure too), in
   * its place: no batch after it commits first.  lock_timeout_ms 0:
   * 5,000; statement_timeout_ms 0: none (PostgreSQL's 0). */
  uint32_t lock_timeout_ms;
  uint32_t statement_timeout_ms;
  /* Tasks (mly_task_add, mly_defer) and their queues' limits:
   * false (the default): shared.  A due task goes to the database's pool
   * with the step that makes it wait, and leaves this process; any
   * process that declared its queue (and has not paused it or held the
   * queues) claims it with a slot of the queue's max_concurrent, rate
   * and concurrency_key limits, counted over all processes (README,
   * "PostgreSQL store").  mly_task_foreach, _info_get and _lookup see
   * only the tasks in this process's memory (running, dead, and those
   * claimed and about to run), not those in the pool.
   * true: each process runs the tasks it made or took over with its
   * node, under limits counted in this process only (the journal's
   * way). */
  bool local_tasks;
} mly_store_pg_options;

/* Makes rt durable on a PostgreSQL database whose schema is at
 * MLY_STORE_PG_VERSION (`mealy store init`), as mly_journal_open does on
 * a directory: call it after registering the durable types and before
 * spawning anything.  The process registers as a node under a lease,
 * takes a range of instance slots (so that ids are unique across
 * processes), claims the instances of every process whose lease ran out
 * (continuing from their last committed step; overdue timers fire at
 * once) and brings them back.  It blocks while it does (a private
 * connection); from then on the store talks to the server only on rt's
 * loop (libpq's asynchronous API on uv_poll, no thread).  While it runs
 * it claims, after each renewal of its lease, the instances of processes
 * whose lease ran out since, and runs them as if it had just opened
 * (an unknown type is parked: mly_journal_parked).
 *
 * A send to an id no instance of this process holds goes through the
 * database: a durable step's mly_send in the step's transaction; the
 * host's mly_runtime_send and mly_post_durable, and a plain machine's
 * mly_send, in the next commit.  The process that owns the id is woken
 * (NOTIFY; it also looks every poll_ms) and delivers the events in
 * commit order per sender (each sender's in the order sent).  Such a
 * send answers 0 (the owner is not known at once); if no process holds
 * the id, nothing is stored, and a durable post's callback gets
 * MLY_ESRCH.  An id in this process's own slot range that it does not
 * hold has ended: MLY_ESRCH at once, as with the journal.
 *
 * Names (mealy.h "Contexts and names") are unique across the processes
 * with the same answers.  Each process learns, when it opens, the names
 * others hold, then every poll_ms the names others took or ended (mly_name_lookup answers for them: the id is the
 * other process's instance).  A spawn of a name another process took
 * that this one has not learned yet is caught when it commits: a
 * durable step that spawned it is left out of that commit (the turn's
 * other steps commit), and runs again from its last committed step,
 * where the spawn now answers MLY_EEXIST (side effects of the step are
 * at-least-once, as after a crash; the step's children and what it
 * sent are dropped with it; it and its descendants come back from the
 * database, so events waiting in their inboxes that were never stored,
 * a plain mly_post, a process exit, a signal, are lost as in a crash).
 * A host spawn (or a plain machine's) has
 * answered 0 by then: its instance ends with MLY_EEXIST at the commit
 * (a plain parent gets its CHILD_EXIT).  Tombstones past
 * name_retention_ms are deleted from the database as leases renew.
 *
 * A loop turn's steps commit in one transaction; a machine resumes only
 * once it committed.  Every commit first checks that this process still
 * holds its lease at its fencing epoch and that each instance is still
 * its own at the expected step: a commit that fails the check is dropped
 * (counted), the instances concerned stop running here, and a line on
 * stderr says so.  A commit the server cancelled (lock_timeout,
 * statement_timeout) or aborted (deadlock, serialization) is sent again
 * in its place (none after it commits first).  A lost connection holds
 * the commits until it is back (those whose answer was lost are found
 * committed or sent again); past give_up_ms without one the store
 * fails with MLY_ETIMEDOUT.  Any other failed commit stops the store
 * (fail-stop, as the journal: mly_journal_error).  Neither err nor
 * stderr ever quotes the conninfo's password.  mly_journal_stats_get and
 * mly_journal_error answer for this store too; mly_journal_compact has
 * nothing to rewrite (the database holds the live rows only): 0, counted
 * in stats.compactions (README "PostgreSQL store").
 *
 * Errors, with a sentence in err: MLY_EINVAL (rt, o or o->conninfo
 * NULL), MLY_EIO (cannot connect, no schema or another version: the
 * sentence says which command to run; the server refused: its words,
 * e.g. "permission denied for schema mealy"), MLY_EBADMSG
 * (mealy.schema_version is damaged: empty, NULL, not a version), MLY_ENOSPC
 * (all 64 slot ranges are held), MLY_EEXIST (rt is durable already),
 * MLY_EBUSY (instances were spawned), MLY_ENOMEM.  Server and libpq words
 * in err and on stderr have their control characters escaped
 * (mly_esc_str). */
int mly_store_postgres(mly_runtime *rt, const mly_store_pg_options *o,
                       char *err, size_t errlen);

/* The schema version this code creates and understands. */
#define MLY_STORE_PG_VERSION 6

/* What mly_store_pg_stat counts (the database's schema version; 0: it has
 * none). */
typedef struct mly_store_pg_counts {
  int version;        /* the database's schema version, 0: none          */
  int code_version;   /* MLY_STORE_PG_VERSION                            */
  int64_t instances;  /* live instances                                  */
  int64_t ended;      /* tombstones: instances that ended                */
  int64_t owned;      /* live instances whose owner's lease holds        */
  int64_t events;     /* pending events and posts                        */
  int64_t timers;     /* instances waiting on a timer                    */
  int64_t nodes;      /* processes holding an unexpired lease            */
} mly_store_pg_counts;

/* Tools for a PostgreSQL database given by conninfo (a libpq connection
 * string, "host=/run/pg dbname=mealy" or "postgresql://..."). Each call
 * connects, works and disconnects; it blocks the calling thread (it runs
 * a private libuv loop), so call it from a tool, not from a running loop.
 * msg (msgsz bytes, may be NULL) receives a sentence on failure (its
 * server words escaped, mly_esc_str; never the password).  conninfo NULL,
 * or st NULL for mly_store_pg_stat: MLY_EINVAL.
 *
 * mly_store_pg_init creates the schema (SQL schema "mealy") at
 * MLY_STORE_PG_VERSION in one transaction; on a database already at that
 * version it changes nothing and returns 0; *from (may be NULL) is the
 * version found (0: none, so it was created).  mly_store_pg_migrate moves
 * an older schema forward to MLY_STORE_PG_VERSION in one transaction
 * (nothing to do at that version).  Both take an advisory lock, so that
 * concurrent calls wait for each other.
 * Errors: MLY_EIO (cannot connect, or the server refused: msg has its
 * words), MLY_ERANGE (the database's schema is newer than this code:
 * nothing changed), MLY_EEXIST (init on an older schema: migrate it),
 * MLY_ENOENT (migrate or stat on a database without the schema),
 * MLY_EBADMSG (mealy.schema_version is damaged: empty, more than one
 * row, NULL, not a number, 0 or less: msg says what, and how to write
 * the version back; nothing changed), MLY_ENOMEM.
 * mly_store_pg_stat fills *st; on MLY_ERANGE st->version is still set. */
int mly_store_pg_init(const char *conninfo, int *from, char *msg,
                      size_t msgsz);
int mly_store_pg_migrate(const char *conninfo, int *from, char *msg,
                         size_t msgsz);
int mly_store_pg_stat(const char *conninfo, mly_store_pg_counts *st,
                      char *msg, size_t msgsz);

/* The live instances of a PostgreSQL store, for tools, as
 * mly_journal_live reads a state directory: every row of
 * mealy.instances (whichever process owns it, or none), read in one
 * READ ONLY transaction (a moment of the database; no node registered,
 * nothing owned, locked against the processes or changed), cb called
 * with each (pointers valid during the call only).  A non-zero return
 * of cb stops the walk and is returned.  MLY_EINVAL (conninfo or cb
 * NULL), MLY_EIO (cannot connect, the
 * server refused: err has its words, never the password), MLY_ENOENT
 * (no mealy schema), MLY_ERANGE (a schema newer than this code),
 * MLY_EBADMSG (a row that does not parse), MLY_ENOMEM.  Blocks. */
int mly_store_pg_live(const char *conninfo,
                      int (*cb)(const mly_live *, void *), void *arg,
                      char *err, size_t errlen);

/* The rows of a PostgreSQL store that a process could not restore, for
 * tools (`mealy store stat --bad`): every row of mealy.instances,
 * mealy.events and mealy.tombstones is checked as an open or a claim
 * reads it (an S record of its own id, a context that decodes, a name;
 * an E record of its eid for its target; a tombstone's name and
 * numbers), in one READ ONLY transaction as mly_store_pg_live, and cb is
 * called with a sentence for each bad one: the row (table and key), what
 * is wrong, and the way out (fix it, restore it, or DELETE it: the
 * sentence gives the statement).  A process that meets such a row at
 * open refuses to open (MLY_EBADMSG, err is that sentence), and one
 * that meets it in a claim or a fetch stops its store (on_error, the
 * sentence on stderr), so that nothing is run from a row read wrong.
 * *nbad (may be NULL): how many.  A non-zero return of cb stops and is
 * returned.  Errors as mly_store_pg_live.  Blocks. */
int mly_store_pg_bad(const char *conninfo,
                     int (*cb)(const char *row, void *arg), void *arg,
                     uint64_t *nbad, char *err, size_t errlen);

/* conninfo as key=value pairs for a message or a listing, with its
 * password (and sslpassword, and any option libpq calls secret) shown
 * as *** ; "(a conninfo libpq cannot read)" when libpq cannot parse it.
 * Cut to fit len (NUL-terminated); returns out (out NULL or len 0: out,
 * untouched).  Messages of the store
 * and of `mealy store` never quote a password: a server's or libpq's
 * words that contain it have it replaced by ***. */
char *mly_store_pg_conninfo_show(const char *conninfo, char *out,
                                 size_t len);

/* The `store:` section of YAML machine files (lib/store/pg_yaml.c),
 * through the fsm loader's section hook (mly_fsm_load_options.sections):
 *
 *     store: postgresql://mealy@/mealy?host=/run/postgresql
 *     store:                      # or a map; only postgresql: is needed
 *       postgresql: host=/run/postgresql dbname=mealy
 *       lease: 10s                # mly_store_pg_options.lease_ms
 *       poll: 1s                  # poll_ms
 *       give_up: 60s              # give_up_ms
 *       lock_timeout: 5s          # lock_timeout_ms
 *       statement_timeout: 0      # statement_timeout_ms (0: none)
 *
 * (a bare number is milliseconds).  Each field is checked at its
 * FILE:LINE:COL (a conninfo libpq cannot parse, a duration out of range,
 * an unknown key, store: twice across the files); no message quotes the
 * conninfo.  mly_store_conf_get fills o's fields from what was read
 * (0 where a field was not given: the defaults) and answers whether a
 * store: was read; o->conninfo stays valid while sc lives.
 * mly_store_conf_where: the file store: was read from (line in *line),
 * or NULL.  mly_store_conf_get with sc or o NULL: false; a section made
 * with sc NULL refuses a store: key (a message at its FILE:LINE:COL).
 * A conf is used by one thread at a time. */
typedef struct mly_store_conf mly_store_conf;
mly_store_conf *mly_store_conf_new(void); /* NULL: out of memory */
void mly_store_conf_free(mly_store_conf *sc); /* NULL is fine */
mly_conf_section mly_store_conf_section(mly_store_conf *sc);
bool mly_store_conf_get(const mly_store_conf *sc, mly_store_pg_options *o);
const char *mly_store_conf_where(const mly_store_conf *sc, uint32_t *line);

#ifdef __cplusplus
}
#endif
#endif /* MEALY_H */
