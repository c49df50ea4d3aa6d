/*
 * pg_store.h - the PostgreSQL store (lib/ only): store.h's operations on
 * a database of schema version MLY_STORE_PG_VERSION (pg_schema.c).
 */
#ifndef MLY_STORE_PG_STORE_H
#define MLY_STORE_PG_STORE_H

#include "store.h"

/* What the PostgreSQL store was asked to be. */
typedef struct pg_store_options {
  const char *conninfo; /* libpq connection string or postgresql:// URI */
  uint32_t lease_ms;    /* this process's ownership lease; 0: 10,000     */
  uint32_t poll_ms;     /* events of other processes are looked for this
                           often when no notification came; 0: 1,000     */
  uint32_t give_up_ms;  /* no working connection this long with batches
                           waiting: the store fails; 0: max(60,000,
                           6 x lease_ms)                                 */
  uint32_t lock_timeout_ms; /* the connections' lock_timeout; 0: 5,000   */
  uint32_t statement_timeout_ms; /* their statement_timeout; 0: none     */
  bool local_tasks;     /* no task pool (store_ops.tasks NULL)           */
} pg_store_options;

/* Slots of one range: node ranges are range_no << PG_RANGE_BITS ... */
#define PG_RANGE_BITS 18u

/* Registers this process as a node (its lease starts), takes a slot
 * range, and opens the connection the store commits on (loop's).  Blocks
 * while it registers (as opening a journal reads its files); recover,
 * called next, claims the instances of nodes whose lease ran out.
 * The durable layer sets its hooks (durable_set_hooks).  MLY_EIO with the server's words in err
 * (cannot connect, no schema: run `mealy store init`, a schema of
 * another version), MLY_ENOSPC (every slot range is held), MLY_ENOMEM. */
int pg_store_open(uv_loop_t *loop, const pg_store_options *o,
                  mly_store **out, char *err, size_t errlen);

/* The first slot this process makes new instances in (its range's
 * first), and its node id and fencing epoch (for messages and tests). */
uint32_t pg_store_slot_base(const mly_store *s);
int64_t pg_store_node(const mly_store *s);
int64_t pg_store_epoch(const mly_store *s);

/* Figures of fencing: batches a fence refused, and the steps (STEP
 * records) dropped with them; instances that left (evicted) and that
 * this node took over while running (adopted; not those of recover);
 * events of other processes fetched and handed up (delivered).  And of
 * lost connections: how many times batches lost their answer (resyncs),
 * of those batches how many had committed (found by their serial:
 * reported as such) and how many were sent again (resent);
 * refused_twice: a batch sent again that the fence's serial check found
 * committed already (never applied twice). */
typedef struct pg_store_fencing {
  uint64_t fenced_batches, dropped_steps, evicted, adopted, delivered;
  uint64_t resyncs, found_committed, resent, refused_twice;
  uint64_t name_reruns; /* instances whose step (or own create) a commit
                           left out for a name another process held:
                           their steps run again (pg_store.c names) */
  /* batches the server cancelled (lock_timeout, statement_timeout: 55P03,
   * 57014) or aborted (deadlock, serialization: 40P01, 40001), and those
   * its fence refused because one before them had not committed (MLYF3);
   * each is sent again (retried counts the sends) */
  uint64_t timeouts, aborted, out_of_order, retried;
  /* times the node came back after its lease ran out (rejoin), and of
   * those, how many on a new slot range (a claimant took its own) */
  uint64_t rejoins, reranges;
} pg_store_fencing;
const pg_store_fencing *pg_store_fencing_get(const mly_store *s);

/* s is a PostgreSQL store; its connection is up now. */
bool pg_store_is(const mly_store *s);
bool pg_store_connected(const mly_store *s);

/* For tests: the last batch's serial, the batches in flight (held ones
 * too), and whether a resync holds them (a lost connection). */
typedef struct pg_store_net {
  uint64_t serial;
  size_t inflight;
  bool resync;
} pg_store_net;
void pg_store_net_get(const mly_store *s, pg_store_net *out);

#endif
