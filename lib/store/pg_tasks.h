/*
 * pg_tasks.h - the PostgreSQL store's task pool (internal): what
 * pg_store.c calls in pg_tasks.c, and what pg_tasks.c calls back in
 * pg_store.c.  See pg_tasks.c.
 */
#ifndef MLY_STORE_PG_TASKS_H
#define MLY_STORE_PG_TASKS_H

#include "pg_conn.h"
#include "store.h"

typedef struct pg_tasks pg_tasks;

/* One statement into the batch being built (its transaction). */
typedef int (*pg_emit_fn)(void *ctx, const char *sql, int n,
                          const char *const *vals);

/* pnode, pepoch: the store's own strings (read at each use). */
int pg_tasks_new(mly_store *s, mly_pg *pg, const char *pnode,
                 const char *pepoch, pg_tasks **out);
/* What this turn's steps asked (pool puts, slots dropped), into the
 * batch of serial, after its steps and before its COMMIT. */
int pg_tasks_flush(pg_tasks *t, uint64_t serial, pg_emit_fn emit, void *ctx);
/* The batch of serial is over: ok, committed; else it changed nothing. */
void pg_tasks_batch_done(pg_tasks *t, uint64_t serial, bool ok);
/* After a flush, a notice on "mealy_tasks" (payload: a queue), the poll. */
void pg_tasks_kick(pg_tasks *t);
void pg_tasks_notify(pg_tasks *t, const char *queue);
void pg_tasks_poll(pg_tasks *t);
void pg_tasks_free(pg_tasks *t);

extern const store_tasks pg_tasks_ops;

#define PG_TASKS_CHANNEL "mealy_tasks"

/* pg_store.c */
pg_tasks *pg_store_tasks(mly_store *s);
/* Claimed rows (k, id, step, parent, state, context, name, seq: k 0 an
 * instance, 1 an event, others skipped) to hooks.adopt; pool: claimed
 * from the task pool (not counted or said as a takeover).  each (may be
 * NULL) is called with every instance handed up. */
int pg_store_hand_up(mly_store *s, const PGresult *res, bool pool,
                     void (*each)(void *, mly_id), void *arg);
/* These instances are not this node's any more (put in the pool). */
void pg_store_disown(mly_store *s, const mly_id *ids, size_t n);
/* Not closing, failed or without its lease. */
bool pg_store_live(const mly_store *s);
/* A claim's answer was lost: the next claim of dead nodes looks at
 * everything this node owns. */
void pg_store_unsure(mly_store *s);
/* The poll comes within ms (then every poll_ms again). */
void pg_store_poll_soon(mly_store *s, uint64_t ms);

#endif
