/*
 * pg_store.c - store.h's operations on PostgreSQL (schema v2 to v4, see
 * pg_schema.c): many processes share one database of durable instances.
 *
 * Each process is a node: a row in mealy.nodes with a lease and a
 * fencing epoch.  Opening registers the node and takes a slot range (so
 * that the instance ids it makes are unique across nodes: see the schema
 * comment); recover claims every node whose lease ran out (FOR UPDATE
 * SKIP LOCKED on its row: two claimants never take one node) and hands
 * back the instances it now owns as a snapshot (SNAP, INST..., EVENT...,
 * TOMB..., SNAPEND).  Registration and recovery block (a private
 * connection, as opening a journal reads its files); from then on the
 * store talks to the server only through pg_conn.c on the runtime's loop.
 *
 * Group commit: the records of one loop turn (the durable layer appends
 * them to `buf`, as for the journal) become ONE transaction, pipelined
 * on the connection: BEGIN; mealy.fence (this node still holds its lease
 * at its epoch: a row lock on its node row, raise if not); one call per
 * record (mealy.create, mealy.step, mealy.end_, event inserts and
 * deletes); COMMIT.  The completions queued behind the turn are reported
 * only once COMMIT has answered.  The one rule the rest relies on: a
 * change reaches the database only inside a transaction whose fence
 * passed and whose every step matched owner, epoch and expected step
 * (`owned` holds the step this node last appended for each instance).
 *
 * A batch the database refused as fenced (SQLSTATE MLYF1) is dropped and
 * counted; the instances it concerns (all of them, when the node lost
 * its lease) leave this process through hooks.evict, with a line on
 * stderr saying so.  Any other failure the server answers fails the
 * store.
 *
 * A lost connection does not: each batch has a serial (1, 2, ... per
 * node) that its fence writes on the node row in the batch's own
 * transaction (nodes.batch_serial), and keeps its statements until it is
 * answered.  When the connection goes while batches are in flight (their
 * outcome unknown), the store holds them, and holds new ones unsent (a
 * resync); the connection comes back (pg_conn.c's backoff) and the first
 * query on it reads the row's serial (FOR UPDATE: after any transaction
 * of the old connection that still holds the row).  Batches at or below
 * it committed: their completions run as success.  The others are sent
 * again, in order, from their kept statements, and their completions
 * run once they are answered.  A batch sent again whose serial the row
 * already has is refused by the fence (MLYF2: it committed, reported as
 * such), so none ever commits twice.  If the lease ran out meanwhile,
 * the fence refuses the rest: evicted, counted and said, as above.
 *
 * A batch is built whole (its statements kept) and then sent.  Names
 * are unique across nodes without stopping anything (section "names"
 * below): a batch that creates named instances claims their names first
 * and leaves out the steps that spawned a name held elsewhere; those
 * run again.  Events to other nodes' instances are inserted only for
 * targets that have a row; a durable post to one that has none answers
 * MLY_ESRCH.
 *
 * The task pool (pg_tasks.c, store_ops.tasks) puts its statements (tasks
 * into the pool, slots given back) at the end of a turn's last batch,
 * before COMMIT, is told when each batch is over, claims on the
 * "mealy_tasks" channel and the poll, and hands claimed tasks up the way
 * adoption does (adopt_rows).
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../hashtab.h"
#include "../jreplay.h"
#include "pg_conn.h"
#include "pg_rows.h"
#include "pg_schema.h"
#include "pg_store.h"
#include "pg_tasks.h"

/* An instance this node owns: the step it last appended. */
typedef struct owned {
  mly_id id;
  uint64_t step;
  mly_id parent;
  uint64_t grp; /* the step group it is in (pg_store.gserial) */
  uint64_t got; /* the claim that brought it (pg_store.claims) */
  UT_hash_handle hh;
} owned;

/* An eid this node has in memory (handed up by recover, adopt or
 * deliver) whose row is still there: a fetch does not hand it up again.
 * It goes when the batch whose step consumed or dropped it committed. */
typedef struct seen {
  uint64_t eid;
  mly_id target; /* its instance: the entry goes when that one ends */
  UT_hash_handle hh;
} seen;

/* An SQL array literal, growing: "{1,2,NULL}"; or (sb_bin) a bytea[] in
 * PostgreSQL's binary array format, sent as a binary parameter. */
typedef struct sbuf {
  char *p;
  size_t n, cap;
  bool oom, hasnull;
  uint32_t nel;
} sbuf;

static void sb_raw(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->cap - b->n < n + 2) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - b->n < n + 2) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
}

static void sb_sep(sbuf *b) { sb_raw(b, b->n ? "," : "{", 1); }

static void sb_i64(sbuf *b, int64_t v) {
  char t[24];
  sb_sep(b);
  sb_raw(b, t, (size_t)snprintf(t, sizeof t, "%" PRId64, v));
}

static void sb_word(sbuf *b, const char *w) {
  sb_sep(b);
  sb_raw(b, w, strlen(w));
}

static void be32(unsigned char *o, uint32_t v) {
  o[0] = (unsigned char)(v >> 24);
  o[1] = (unsigned char)(v >> 16);
  o[2] = (unsigned char)(v >> 8);
  o[3] = (unsigned char)v;
}

/* The binary array: ndim, has-null, element type (bytea, 17), then for
 * one dimension its size and lower bound (20 bytes, written by
 * sb_bin_end), then each element: its length (-1: NULL) and bytes. */
#define SB_BIN_HDR 20
#define BYTEA_OID 17

/* An element of a binary bytea[] (p NULL: NULL). */
static void sb_bin(sbuf *b, const void *p, size_t n) {
  unsigned char len[4];
  if (b->n == 0) {
    unsigned char z[SB_BIN_HDR] = {0};
    sb_raw(b, (const char *)z, sizeof z);
  }
  if (n > INT32_MAX) b->oom = true; /* no bytea is this long */
  be32(len, p ? (uint32_t)n : UINT32_MAX);
  sb_raw(b, (const char *)len, 4);
  if (p) sb_raw(b, p, n);
  else b->hasnull = true;
  b->nel++;
}

/* The binary array ended (its length in *len); empty again after. */
static const char *sb_bin_end(sbuf *b, int *len) {
  if (b->n == 0) { /* no element: no dimension */
    unsigned char z[12] = {0};
    be32(z + 8, BYTEA_OID);
    sb_raw(b, (const char *)z, sizeof z);
  } else if (!b->oom) {
    unsigned char *h = (unsigned char *)b->p;
    be32(h, 1);
    be32(h + 4, b->hasnull);
    be32(h + 8, BYTEA_OID);
    be32(h + 12, b->nel);
    be32(h + 16, 1);
  }
  if (b->n > INT32_MAX) b->oom = true;
  *len = (int)b->n;
  b->n = 0;
  b->nel = 0;
  b->hasnull = false;
  return b->oom ? NULL : b->p;
}

/* The literal, ended; the buffer is then empty again for the next. */
static const char *sb_end(sbuf *b) {
  if (b->n == 0) sb_raw(b, "{", 1);
  sb_raw(b, "}", 2); /* with its NUL */
  b->n = 0;
  return b->oom ? NULL : b->p;
}

/* A statement a batch keeps until it is answered (sent again after a
 * lost connection): sql is a static string, vals are the batch's. */
typedef struct sstmt {
  const char *sql;
  int n;
  uint8_t kind;    /* SK_*: what its answer tells (on_answer) */
  bool bin;        /* some value is binary: lens and fmts say which */
  char *vals[10];
  int lens[10], fmts[10];
} sstmt;

enum { SK_PLAIN, SK_NAMES, SK_RERUN, SK_EVENTS };

/* A name the batch spawned that another process holds (names_claim's
 * answer): its holder, and the group whose step is left out. */
typedef struct nconflict {
  char *name;
  mly_id holder, group;
  bool live;
  int32_t status;
  int64_t ended_ms;
} nconflict;

/* One transaction in flight. */
typedef struct batch {
  struct batch *next;
  struct pg_store *st;
  uint64_t serial;
  int64_t epoch; /* the node's epoch when it was made (rejoin changes it) */
  char pserial[24];
  sstmt *stmts;
  size_t nstmts, stcap;
  bool held; /* its answer was lost, or it was not sent: a resync decides */
  bool split;  /* a part of a big turn, more parts after it */
  bool queued; /* held until the batches before it are answered (behind
                  a split part): op_flush's bound, see PG_BATCH_RECORDS */
  bool dup;  /* the fence found it committed already (MLYF2) */
  jdone *dones;
  size_t ndones;
  mly_id *ids; /* instances it changes: evicted if it is fenced */
  size_t nids, idcap;
  uint64_t *gone; /* eids it consumes or drops: unseen once committed */
  size_t ngone, gonecap;
  uint64_t steps, records, bytes;
  size_t unanswered;
  bool fenced, lease_lost;
  bool retry; /* cancelled or out of order: sent again once answered */
  char err[256];
  size_t answered;     /* statements answered: the next answer's index */
  bool named;          /* it creates named instances: names_claim first */
  nconflict *conf;     /* names held elsewhere (names_claim) */
  size_t nconf;
  PGresult *rerun;     /* mealy.rerun_rows: what the skipped left */
  bool ends;           /* it ends instances: their seen eids go */
  bool got_names, got_rerun; /* names_claim, rerun_rows answered */
  uint64_t *missing;   /* eids of events to other processes' ids that no
                          process holds: not inserted (a post's answer
                          is MLY_ESRCH) */
  size_t nmissing;
} batch;

/* The snapshot is built whole in one buffer, then handed out: what
 * rp_record keeps points into it until recover_end. */
typedef struct walk {
  jbuf b;
  size_t *at; /* where each record begins */
  unsigned *kind;
  size_t n, cap;
  uint64_t seq;
} walk;

static void head(walk *w, unsigned kind, uint32_t nfields) {
  if (w->n == w->cap) {
    size_t cap = w->cap ? 2 * w->cap : 256;
    size_t *at = realloc(w->at, cap * sizeof *at);
    if (at) w->at = at;
    unsigned *k = realloc(w->kind, cap * sizeof *k);
    if (k) w->kind = k;
    if (!at || !k) {
      w->b.oom = true;
      return;
    }
    w->cap = cap;
  }
  w->at[w->n] = w->b.n;
  w->kind[w->n++] = kind;
  jb_array(&w->b, nfields + 2);
  jb_uint(&w->b, ++w->seq);
  jb_uint(&w->b, kind);
}

static void walk_free(walk *w) {
  jb_free(&w->b);
  free(w->at);
  free(w->kind);
  *w = (walk){0};
}

typedef struct pg_store {
  mly_store base;
  pg_store_options o;
  char *conninfo;
  mly_pg *pg;
  int64_t node, epoch;
  uint32_t range;
  char pnode[24], pepoch[24];
  jbuf buf;
  uint64_t seq;
  /* offsets in buf after which the turn may be cut (op_cut), ascending;
   * a big turn is cut into parts only there */
  size_t *cuts, ncuts, cutcap;
  jdone *dones; /* queued behind what buf holds */
  size_t ndones, dcap;
  batch *head, *tail; /* in flight, in commit order */
  owned *owned;
  int failed;
  bool closing, told_failed, lost, releasing;
  bool rejoining;          /* lost: the rejoin's statement is in flight */
  int64_t renew_epoch, claim_epoch; /* the epoch the one in flight has */
  uint64_t rejoins;
  uint64_t bserial;       /* the last batch's serial */
  uint64_t last_ok;       /* the highest serial known committed */
  uv_timer_t giveup;      /* looks every give_up_ms / 8 */
  uint64_t down_since;    /* uv_now when batches began to wait on no
                             connection; 0: they do not */
  bool resync, asked;     /* batches held; the row's serial asked for */
  uv_timer_t later;
  uv_timer_t renew;        /* the lease, every lease_ms / 3 */
  uint64_t renewed_at;     /* uv_now when the last renewal the server
                              confirmed was sent (or registration) */
  uint64_t sent_at;
  bool renewing;
  bool claiming;           /* a claim of dead nodes is in flight */
  bool claim_unsure;       /* one's answer was lost: it may have committed */
  uint64_t claims;
  int timers_open; /* reports a batch that never reached the server */
  batch *undone;    /* ... those batches */
  mly_journal_stats stats;
  pg_store_fencing fencing;
  walk rec; /* the records recover handed out */
  /* the step group: STEP records and events of a batch gathered into
   * arrays, sent as two statements (see group_send) */
  uint64_t gserial;
  uint32_t gsteps, gevents;
  sbuf g_ids, g_expect, g_steps, g_due, g_states, g_setctx, g_ctx, g_took;
  sbuf e_eid, e_to, e_from, e_body;
  sbuf n_to; /* targets this node does not own: their owners are woken */
  uint32_t gnotify;
  /* events of other processes for this node's instances: LISTEN on
   * `channel`, and a fetch every poll_ms as the fallback */
  seen *seen;
  char channel[32];
  char session[128]; /* sets lock_timeout and statement_timeout */
  uv_timer_t poll;
  bool fetching, fetch_again;
  /* names (see "names" below): the named creates of the batch being
   * built (names_claim's arrays), the instance whose step spawns them,
   * statements kept and not sent while a batch is built, and the names
   * feed's cursors */
  sbuf c_names, c_ids, c_groups;
  mly_id creator;
  bool building;
  int64_t name_from, name_last;
  bool names_polling;
  pg_tasks *tasks; /* the task pool (pg_tasks.c) */
} pg_store;

#define ST(s) ((pg_store *)(s))

/* ---- small helpers ---- */

/* The slot range this node makes new instances in. */
static void set_range(pg_store *st, uint32_t r) {
  st->range = r;
  st->base.slot_lo = r << PG_RANGE_BITS;
  st->base.slot_hi = (r + 1) << PG_RANGE_BITS;
}

static void i64s(char out[24], int64_t v) {
  snprintf(out, 24, "%" PRId64, v);
}

static owned *own_find(pg_store *st, mly_id id) {
  owned *o = NULL;
  HASH_FIND(hh, st->owned, &id, sizeof id, o);
  return o;
}

static int own_put(pg_store *st, mly_id id, uint64_t step, mly_id parent) {
  owned *o = own_find(st, id);
  if (!o) {
    if (!(o = calloc(1, sizeof *o))) return MLY_ENOMEM;
    o->id = id;
    bool hash_oom = false;
    HASH_ADD(hh, st->owned, id, sizeof o->id, o);
    if (hash_oom) {
      free(o);
      return MLY_ENOMEM;
    }
  }
  o->step = step;
  o->parent = parent;
  return 0;
}

static void own_del(pg_store *st, mly_id id) {
  owned *o = own_find(st, id);
  if (o) {
    HASH_DEL(st->owned, o);
    free(o);
  }
}

/* ---- the batch: statements and their answers ---- */

static void names_batch_reset(batch *b);
static void names_rerun(pg_store *st, batch *b);
static void seen_prune(pg_store *st);

static void batch_free(batch *b) {
  for (size_t i = 0; i < b->nstmts; i++)
    for (int k = 0; k < b->stmts[i].n; k++) free(b->stmts[i].vals[k]);
  free(b->stmts);
  free(b->dones);
  free(b->ids);
  free(b->gone);
  names_batch_reset(b);
  free(b);
}

static int batch_id(batch *b, mly_id id) {
  if (b->nids == b->idcap) {
    size_t cap = b->idcap ? 2 * b->idcap : 16;
    mly_id *v = realloc(b->ids, cap * sizeof *v);
    if (!v) return MLY_ENOMEM;
    b->ids = v;
    b->idcap = cap;
  }
  b->ids[b->nids++] = id;
  return 0;
}

static int batch_gone(batch *b, uint64_t eid) {
  if (b->ngone == b->gonecap) {
    size_t cap = b->gonecap ? 2 * b->gonecap : 16;
    uint64_t *v = realloc(b->gone, cap * sizeof *v);
    if (!v) return MLY_ENOMEM;
    b->gone = v;
    b->gonecap = cap;
  }
  b->gone[b->ngone++] = eid;
  return 0;
}

static bool seen_has(pg_store *st, uint64_t eid) {
  seen *x = NULL;
  HASH_FIND(hh, st->seen, &eid, sizeof eid, x);
  return x != NULL;
}

static int seen_add(pg_store *st, uint64_t eid, mly_id target) {
  if (seen_has(st, eid)) return 0;
  seen *x = calloc(1, sizeof *x);
  if (!x) return MLY_ENOMEM;
  x->eid = eid;
  x->target = target;
  bool hash_oom = false;
  HASH_ADD(hh, st->seen, eid, sizeof x->eid, x);
  if (hash_oom) {
    free(x);
    return MLY_ENOMEM;
  }
  return 0;
}

static void seen_del(pg_store *st, uint64_t eid) {
  seen *x = NULL;
  HASH_FIND(hh, st->seen, &eid, sizeof eid, x);
  if (x) {
    HASH_DEL(st->seen, x);
    free(x);
  }
}

static void evict(pg_store *st, const mly_id *ids, size_t n, const char *why) {
  size_t k = 0;
  mly_id *gone = malloc((n ? n : 1) * sizeof *gone);
  for (size_t i = 0; i < n; i++) {
    if (!own_find(st, ids[i])) continue;
    own_del(st, ids[i]);
    if (gone) gone[k++] = ids[i];
  }
  st->fencing.evicted += k;
  if (k) fprintf(stderr,
          "mealy: postgresql store: node %" PRId64 " (epoch %" PRId64
          "): %s: %zu instance(s) stop running here\n",
          st->node, st->epoch, why, k);
  if (k && st->base.hooks.evict) st->base.hooks.evict(st->base.hooks.arg, gone, k);
  free(gone);
}

static void evict_all(pg_store *st, const char *why) {
  size_t n = HASH_COUNT(st->owned), i = 0;
  mly_id *ids = malloc((n ? n : 1) * sizeof *ids);
  if (!ids) {
    st->failed = MLY_ENOMEM;
    return;
  }
  owned *o, *tmp;
  HASH_ITER(hh, st->owned, o, tmp) ids[i++] = o->id;
  evict(st, ids, n, why);
  free(ids);
}

static void lease_lost(pg_store *st, const char *why);
static void fail_release(pg_store *st);

static bool eid_missing(const batch *b, uint64_t eid) {
  for (size_t i = 0; i < b->nmissing; i++)
    if (b->missing[i] == eid) return true;
  return false;
}

/* A batch is over: fenced ones evict, failed ones fail the store; then
 * its completions, in order. */
static void batch_done(pg_store *st, batch *b) {
  int rc = 0;
  if (b->dup) { /* committed before: what it says now is the refusal */
    st->fencing.refused_twice++;
    b->err[0] = '\0';
    b->fenced = false;
  }
  if (b->fenced) {
    st->fencing.fenced_batches++;
    st->fencing.dropped_steps += b->steps;
    char why[320];
    snprintf(why, sizeof why, "a commit was refused (%s)", b->err);
    if (b->epoch != st->epoch) {
      /* made before a rejoin: its instances left with the old lease,
       * and those that came back since are the database's, not its */
    } else if (b->lease_lost) {
      lease_lost(st, why);
    } else {
      evict(st, b->ids, b->nids, why);
      /* the refused steps' instances whose rows are still this node's
       * come back as the database has them (the next claim reads every
       * row this node owns): they never strand under a live lease */
      st->claim_unsure = true;
    }
    rc = MLY_EPERM;
  } else if (b->err[0]) {
    if (!st->failed) {
      st->failed = MLY_EIO;
      fprintf(stderr, "mealy: postgresql store: node %" PRId64
              ": a commit failed, the store stops: %s\n", st->node, b->err);
    }
    rc = st->failed;
  } else if (st->failed) {
    rc = st->failed;
  } else {
    st->stats.batches++;
    st->stats.syncs++; /* a COMMIT waits for its WAL flush */
    st->stats.records += b->records;
    st->stats.bytes += b->bytes;
    if (b->serial > st->last_ok) st->last_ok = b->serial;
    for (size_t i = 0; i < b->ngone; i++) seen_del(st, b->gone[i]);
    if (b->ends) seen_prune(st);
    if (b->nconf) names_rerun(st, b); /* before the completions */
  }
  if (st->tasks) pg_tasks_batch_done(st->tasks, b->serial, rc == 0);
  /* wrote: a batch whose COMMIT may have reached the server before the
   * connection went is not known to have failed (MLY_EUNKNOWN for its
   * posts) */
  size_t wrote = rc == 0 || (b->err[0] && !b->fenced &&
                             strstr(b->err, "connection") != NULL)
                     ? SIZE_MAX
                     : 0;
  bool miss = false; /* the event a post's answer follows was not kept */
  for (size_t i = 0; i < b->ndones; i++) {
    const jdone *d = &b->dones[i];
    if (d->kind == JD_DELIVER)
      miss = rc == 0 && d->ev && eid_missing(b, d->ev->eid);
    bool srch = d->kind == JD_POSTED && miss; /* certainly not kept */
    st->base.hooks.done(st->base.hooks.arg, d, srch ? MLY_ESRCH : rc,
                        srch ? 0 : wrote);
  }
  if (rc == 0 && st->base.hooks.committed)
    st->base.hooks.committed(st->base.hooks.arg);
  if (rc < 0 && rc != MLY_EPERM && !st->told_failed) {
    st->told_failed = true;
    fail_release(st);
    if (st->base.hooks.failed)
      st->base.hooks.failed(st->base.hooks.arg, rc, b->err);
  }
}

/* Takes b off the list of batches in flight (answers come in order: b
 * is the head, but for one that never went out). */
static void take_head(pg_store *st, batch *b) {
  batch **p = &st->head, *prev = NULL;
  while (*p && *p != b) {
    prev = *p;
    p = &(*p)->next;
  }
  if (!*p) return;
  *p = b->next;
  if (st->tail == b) st->tail = prev;
  b->next = NULL;
}

static void release(pg_store *st);
static void resync_start(pg_store *st);

/* b was answered whole: reported and freed, unless it is held. */
enum { RS_LOST, RS_RETRY, RS_QUEUED };
static void resend(pg_store *st, batch *b, int why);
static void settle(pg_store *st, batch *b);

/* The head waited behind a split part (PG_BATCH_RECORDS): its turn now. */
static void kick(pg_store *st) {
  batch *b = st->head;
  if (!b || !b->queued || st->resync) return;
  if (st->failed) { /* never sent: it fails as the batches before it */
    b->queued = b->held = false;
    snprintf(b->err, sizeof b->err, "the store failed earlier");
    settle(st, b);
    return;
  }
  resend(st, b, RS_QUEUED);
}

static void settle(pg_store *st, batch *b) {
  if (b->held) return;
  if (b->retry && !st->failed) {
    resend(st, b, RS_RETRY);
    return;
  }
  take_head(st, b);
  batch_done(st, b);
  batch_free(b);
  if (st->closing && !st->head) release(st);
  else kick(st);
}

static void names_answer(batch *b, const sstmt *k, const PGresult *res);

static void on_answer(mly_pg *pg, const PGresult *res, const char *err,
                      void *arg) {
  batch *b = arg;
  size_t idx = b->answered++;
  if (res && !err && idx < b->nstmts && b->stmts[idx].kind != SK_PLAIN)
    names_answer(b, &b->stmts[idx], res);
  if (err && !mly_pg_connected(pg) && !b->st->failed) {
    /* the connection went: whether it committed is not known */
    b->held = true;
    resync_start(b->st);
  } else if (err && !b->err[0]) {
    /* the server's first line, without its "ERROR:  " */
    const char *m = strncmp(err, "ERROR:  ", 8) == 0 ? err + 8 : err;
    snprintf(b->err, sizeof b->err, "%.*s", (int)strcspn(m, "\n"), m);
    if (strstr(err, "mealy fenced:")) {
      b->fenced = true;
      b->lease_lost = strstr(err, "no longer holds its lease") != NULL;
    }
    if (strstr(err, "mealy committed:")) b->dup = true;
    /* what a retry can mend: the server cancelled a wait (lock_timeout,
     * statement_timeout), broke a deadlock, or the fence found a batch
     * before this one not committed (it is sent again first) */
    const char *code = mly_pg_sqlstate(pg);
    bool cancel = !strcmp(code, "55P03") || !strcmp(code, "57014"),
         abort_ = !strcmp(code, "40P01") || !strcmp(code, "40001"),
         order = !strcmp(code, "MLYF3");
    if (cancel || abort_ || order) {
      b->retry = true;
      if (cancel) b->st->fencing.timeouts++;
      else if (abort_) b->st->fencing.aborted++;
      else b->st->fencing.out_of_order++;
      if (cancel && b->st->fencing.timeouts == 1)
        fprintf(stderr, "mealy: postgresql store: node %" PRId64
                ": %s; the batch is sent again (said once)\n",
                b->st->node, b->err);
    }
  }
  /* COMMIT of an aborted transaction answers ROLLBACK */
  if (res && strcmp(PQcmdStatus((PGresult *)res), "ROLLBACK") == 0 &&
      !b->err[0])
    snprintf(b->err, sizeof b->err, "the transaction was rolled back");
  if (--b->unanswered > 0) return;
  settle(b->st, b);
}

static int send_kept(pg_store *st, batch *b, const sstmt *k) {
  int r = mly_pg_query_ref(st->pg, k->sql, k->n,
                           (const char *const *)k->vals,
                           k->bin ? k->lens : NULL, k->bin ? k->fmts : NULL,
                           on_answer, b);
  if (r == 0) b->unanswered++;
  return r;
}

/* Keeps the statement (sql static), and sends it unless a resync holds
 * the batches.  lens, fmts: NULL (text), or value i is binary of lens[i]
 * bytes where fmts[i] is 1. */
static int stmt_f(pg_store *st, batch *b, const char *sql, int n,
                  const char *const *vals, const int *lens,
                  const int *fmts) {
  if (b->nstmts == b->stcap) {
    size_t cap = b->stcap ? 2 * b->stcap : 8;
    sstmt *v = realloc(b->stmts, cap * sizeof *v);
    if (!v) return MLY_ENOMEM;
    b->stmts = v;
    b->stcap = cap;
  }
  sstmt *k = &b->stmts[b->nstmts];
  k->sql = sql;
  k->n = 0;
  k->kind = SK_PLAIN;
  k->bin = fmts != NULL;
  for (; k->n < n; k->n++) {
    int i = k->n;
    bool bin = fmts && fmts[i];
    k->fmts[i] = bin;
    k->lens[i] = bin ? lens[i] : 0;
    k->vals[i] = NULL;
    if (vals[i] && bin && (k->vals[i] = malloc(lens[i] ? (size_t)lens[i] : 1)))
      memcpy(k->vals[i], vals[i], (size_t)lens[i]);
    else if (vals[i] && !bin)
      k->vals[i] = strdup(vals[i]);
    if (vals[i] && !k->vals[i]) {
      for (int i = 0; i < k->n; i++) free(k->vals[i]);
      return MLY_ENOMEM;
    }
  }
  b->nstmts++;
  if (st->building) return 0; /* batch_close sends them once built */
  if (st->resync || b->queued) {
    b->held = true;
    return 0;
  }
  return send_kept(st, b, k);
}

static int stmt(pg_store *st, batch *b, const char *sql, int n,
                const char *const *vals) {
  return stmt_f(st, b, sql, n, vals, NULL, NULL);
}

/* ---- a lost connection: the resync ---- */

static const char SQL_SERIAL[] =
    "SELECT batch_serial FROM mealy.nodes WHERE id = $1 FOR UPDATE";

static void on_serial(mly_pg *pg, const PGresult *res, const char *err,
                      void *arg);

/* Batches are held from now; the first query on the next connection
 * reads the serial (queued now: pg_conn sends it once connected). */
static void resync_start(pg_store *st) {
  if (!st->resync) st->fencing.resyncs++;
  st->resync = true;
  if (st->asked) return;
  const char *v[] = {st->pnode};
  int r = mly_pg_query(st->pg, SQL_SERIAL, 1, v, on_serial, st);
  if (r == 0) st->asked = true;
  else if (!st->failed) st->failed = r;
}

/* The serial the row must hold for b to commit (the fence's p_prev):
 * the batch in flight before it (sent again before it), or the last one
 * known committed. */
static uint64_t prev_serial(const pg_store *st, const batch *b) {
  const batch *p = NULL;
  for (const batch *x = st->head; x && x != b; x = x->next) p = x;
  return p ? p->serial : st->last_ok;
}

/* Sends b's statements again (it did not commit): after a lost
 * connection, or (retry) after the server cancelled or refused it. */
static void resend(pg_store *st, batch *b, int why) {
  b->held = b->dup = b->fenced = b->lease_lost = b->retry = false;
  b->queued = false;
  b->err[0] = '\0';
  names_batch_reset(b); /* names_claim answers again */
  b->unanswered = 1; /* held until every statement is queued */
  if (why == RS_RETRY) st->fencing.retried++;
  else if (why == RS_LOST) st->fencing.resent++;
  sstmt *f = b->nstmts > 1 ? &b->stmts[1] : NULL; /* the fence */
  int r = 0;
  if (f && f->n == 4) {
    char prev[24];
    i64s(prev, (int64_t)prev_serial(st, b));
    char *pv = strdup(prev);
    if (pv) {
      free(f->vals[3]);
      f->vals[3] = pv;
    } else {
      r = MLY_ENOMEM;
    }
  }
  for (size_t i = 0; r == 0 && i < b->nstmts; i++) {
    if (st->resync) { /* lost again, on the way */
      b->held = true;
      break;
    }
    r = send_kept(st, b, &b->stmts[i]);
  }
  if (r < 0) {
    if (!st->failed) st->failed = r;
    snprintf(b->err, sizeof b->err, "cannot send a batch again: %s",
             mly_strerror(r));
  }
  if (--b->unanswered == 0) settle(st, b);
}

static void on_serial(mly_pg *pg, const PGresult *res, const char *err,
                      void *arg) {
  pg_store *st = arg;
  st->asked = false;
  if (err && !mly_pg_connected(pg) && !st->failed) {
    resync_start(st); /* lost again: on the next connection */
    return;
  }
  uint64_t done = 0;
  if (!err && PQntuples((PGresult *)res) == 1)
    done = strtoull(PQgetvalue((PGresult *)res, 0, 0), NULL, 10);
  else if (!st->failed) {
    st->failed = MLY_EIO;
    fprintf(stderr, "mealy: postgresql store: node %" PRId64
            ": after a lost connection, which batches committed cannot be"
            " read, the store stops: %s\n", st->node,
            err ? err : "the node's row is gone");
    fail_release(st);
  }
  /* the committed ones first, in order (a flush meanwhile is held) */
  batch *b;
  while ((b = st->head) != NULL && b->held &&
         (st->failed || b->serial <= done)) {
    b->held = false;
    if (st->failed) {
      snprintf(b->err, sizeof b->err, "%s",
               "the connection was lost and the batch's outcome is unknown");
    } else if (b->named && !(b->got_names && b->got_rerun)) {
      /* which of its steps were left out for a name is not known: stop
       * (a restart brings back what committed) */
      st->failed = MLY_EIO;
      snprintf(b->err, sizeof b->err, "%s",
               "a batch that creates named instances committed, and what "
               "it said about their names was lost with the connection: "
               "the store stops (restart: what committed comes back)");
      fprintf(stderr, "mealy: postgresql store: node %" PRId64 ": %s\n",
              st->node, b->err);
    } else {
      b->err[0] = '\0';
      b->dup = b->fenced = false;
      st->fencing.found_committed++;
    }
    settle(st, b);
    if (st->closing && !st->head) return; /* released */
  }
  st->resync = false;
  batch *nx;
  for (b = st->head; b && !st->resync; b = nx) {
    nx = b->next; /* resend may report b (nothing sent) */
    if (b->held) resend(st, b, RS_LOST);
  }
}

/* ---- records to statements ---- */

static const char SQL_CREATE[] =
    "SELECT mealy.create($1, $2, $3, $4, $5, $6, $7, $8, $9)";
static const char SQL_END[] = "SELECT mealy.end_($1, $2, $3, $4, $5, $6)";
static const char SQL_DROP[] =
    "DELETE FROM mealy.events WHERE eid = ANY ($1::bigint[])";

static int group_step(pg_store *st, batch *b, const rp_state *s, owned *o,
                      jcur *took);
static int names_note(pg_store *st, batch *b, const rp_state *s);

/* S's fields 0..9 (what instances.state keeps), its context (set or
 * not) and due time. */
static int put_state(pg_store *st, batch *b, const rp_state *s, bool create,
                     jcur *took) {
  char id[24], step[24], parent[24], due[24];
  i64s(id, (int64_t)s->id);
  i64s(step, (int64_t)s->step);
  i64s(parent, (int64_t)s->parent);
  i64s(due, s->due_ms);
  char *name = s->name ? strndup(s->name, s->namelen) : NULL;
  int r = MLY_ENOMEM;
  if (s->name && !name) goto out;
  if (create && s->name && (r = names_note(st, b, s)) < 0) goto out;
  if (create) {
    /* state and context: binary bytea */
    const char *v[] = {st->pnode, st->pepoch, id, step, parent, name,
                       s->due_ms ? due : NULL, (const char *)s->fields,
                       s->has_ctx && s->ctxlen ? s->ctx : NULL};
    int lens[9] = {[7] = (int)(s->tail - s->fields), [8] = (int)s->ctxlen};
    int fmts[9] = {[7] = 1, [8] = 1};
    r = stmt_f(st, b, SQL_CREATE, 9, v, lens, fmts);
  } else {
    owned *o = own_find(st, s->id);
    if (!o) { /* not ours (evicted): the step is dropped */
      b->steps++;
      r = 0;
      goto out;
    }
    r = group_step(st, b, s, o, took);
    b->steps++;
  }
  if (r == 0) r = own_put(st, s->id, s->step, s->parent);
  if (r == 0) r = batch_id(b, s->id);
out:
  free(name);
  return r;
}

static int put_event(pg_store *st, batch *b, const rp_event *e) {
  (void)b;
  sb_i64(&st->e_eid, (int64_t)e->eid);
  sb_i64(&st->e_to, (int64_t)e->to);
  sb_i64(&st->e_from, (int64_t)e->from);
  sb_bin(&st->e_body, e->raw, e->rawlen);
  st->gevents++;
  if (!own_find(st, e->to)) { /* another process's, or none's */
    sb_i64(&st->n_to, (int64_t)e->to);
    st->gnotify++;
  }
  return 0;
}

#define GROUP_BUFS(st)                                                   \
  {&(st)->g_ids, &(st)->g_expect, &(st)->g_steps, &(st)->g_due,            \
   &(st)->g_states, &(st)->g_setctx, &(st)->g_ctx, &(st)->g_took,          \
   &(st)->e_eid, &(st)->e_to, &(st)->e_from, &(st)->e_body, &(st)->n_to}

/* The group is emptied (sent, or dropped with a failed batch). */
static void group_send_none(pg_store *st) {
  sbuf *all[] = GROUP_BUFS(st);
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
    all[i]->n = 0;
    all[i]->nel = 0;
    all[i]->oom = all[i]->hasnull = false;
  }
  st->gsteps = st->gevents = st->gnotify = 0;
  st->gserial++;
}

/* Only for a target that has a row (nothing waits for an id no process
 * holds), and not from a step the batch left out (mealy.skipped).  With
 * targets of other processes, the eids not inserted are answered. */
#define SQL_EVENTS_INS                                                     \
  "INSERT INTO mealy.events (eid, target, sender, body)"                  \
  " SELECT u.* FROM unnest($1::bigint[], $2::bigint[], $3::bigint[],"     \
  " $4::bytea[]) AS u(eid, target, sender, body)"                         \
  " WHERE u.sender <> ALL (mealy.skipped()) AND EXISTS (SELECT 1"         \
  " FROM mealy.instances i WHERE i.id = u.target)"
static const char SQL_EVENTS[] = SQL_EVENTS_INS;
static const char SQL_EVENTS_ASK[] =
    "WITH ins AS (" SQL_EVENTS_INS " RETURNING eid)"
    " SELECT unnest($1::bigint[]) EXCEPT SELECT eid FROM ins";
/* Wakes the owners of the targets (delivered at COMMIT, not before). */
static const char SQL_NOTIFY[] =
    "SELECT pg_notify('mealy_node_' || owner, '') FROM (SELECT DISTINCT"
    " owner FROM mealy.instances WHERE id = ANY ($1::bigint[])"
    " AND owner <> $2) o";
static const char SQL_STEPS[] =
    "SELECT mealy.steps($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/* Sends what the group gathered: the events first (a step's took never
 * names an event of its own batch: those are delivered after commit),
 * then the steps. */
static int group_send(pg_store *st, batch *b) {
  int r = 0;
  if (st->gevents) {
    int lens[4] = {0}, fmts[4] = {[3] = 1};
    const char *v[] = {sb_end(&st->e_eid), sb_end(&st->e_to),
                       sb_end(&st->e_from), sb_bin_end(&st->e_body, &lens[3])};
    r = v[0] && v[1] && v[2] && v[3]
            ? stmt_f(st, b, st->gnotify ? SQL_EVENTS_ASK : SQL_EVENTS, 4, v,
                     lens, fmts)
            : MLY_ENOMEM;
    if (r == 0 && st->gnotify) b->stmts[b->nstmts - 1].kind = SK_EVENTS;
  }
  if (r == 0 && st->gnotify) {
    const char *v[] = {sb_end(&st->n_to), st->pnode};
    r = v[0] ? stmt(st, b, SQL_NOTIFY, 2, v) : MLY_ENOMEM;
  }
  if (r == 0 && st->gsteps) {
    int lens[10] = {0}, fmts[10] = {[6] = 1, [8] = 1};
    const char *v[] = {st->pnode,
                       st->pepoch,
                       sb_end(&st->g_ids),
                       sb_end(&st->g_expect),
                       sb_end(&st->g_steps),
                       sb_end(&st->g_due),
                       sb_bin_end(&st->g_states, &lens[6]),
                       sb_end(&st->g_setctx),
                       sb_bin_end(&st->g_ctx, &lens[8]),
                       sb_end(&st->g_took)};
    for (int i = 2; i < 10 && r == 0; i++)
      if (!v[i]) r = MLY_ENOMEM;
    if (r == 0) r = stmt_f(st, b, SQL_STEPS, 10, v, lens, fmts);
  }
  group_send_none(st);
  return r;
}

/* A STEP into the group (sent first if the instance is in it already). */
static int group_step(pg_store *st, batch *b, const rp_state *s, owned *o,
                      jcur *took) {
  int r = 0;
  if (o->grp == st->gserial && (r = group_send(st, b)) < 0) return r;
  o->grp = st->gserial;
  sb_i64(&st->g_ids, (int64_t)s->id);
  sb_i64(&st->g_expect, (int64_t)o->step);
  sb_i64(&st->g_steps, (int64_t)s->step);
  if (s->due_ms) sb_i64(&st->g_due, s->due_ms);
  else sb_word(&st->g_due, "NULL");
  sb_bin(&st->g_states, s->fields, (size_t)(s->tail - s->fields));
  sb_word(&st->g_setctx, s->has_ctx ? "t" : "f");
  sb_bin(&st->g_ctx, s->has_ctx && s->ctxlen ? s->ctx : NULL,
         s->has_ctx ? s->ctxlen : 0);
  uint32_t n;
  if (!jc_array(took, &n)) return MLY_EBADMSG;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t eid;
    if (!jc_uint(took, &eid)) return MLY_EBADMSG;
    sb_i64(&st->g_took, (int64_t)eid);
    if (batch_gone(b, eid) < 0) return MLY_ENOMEM;
  }
  st->gsteps++;
  return 0;
}

/* An array of eids as an SQL array literal: "{1,2,3}" (malloc'd). */
static char *eid_array(jcur *c) {
  uint32_t n;
  if (!jc_array(c, &n)) return NULL;
  char *s = malloc((size_t)n * 21 + 3), *p = s;
  if (!s) return NULL;
  *p++ = '{';
  for (uint32_t i = 0; i < n; i++) {
    uint64_t eid;
    if (!jc_uint(c, &eid)) {
      free(s);
      return NULL;
    }
    p += sprintf(p, i ? ",%" PRIu64 : "%" PRIu64, eid);
  }
  *p++ = '}';
  *p = '\0';
  return s;
}

/* STEP [seq, 2, S, took, out, spawned] */
static int put_step(pg_store *st, batch *b, jcur *c) {
  rp_state s;
  if (!rp_parse_state(c, &s)) return MLY_EBADMSG;
  int r = put_state(st, b, &s, false, c);
  if (r == 0 && !own_find(st, s.id) && !jc_skip(c)) r = MLY_EBADMSG;
  uint32_t n;
  if (r < 0 || !jc_array(c, &n)) return r < 0 ? r : MLY_EBADMSG;
  for (uint32_t i = 0; i < n && r == 0; i++) {
    rp_event e;
    r = rp_parse_event(c, &e) ? put_event(st, b, &e) : MLY_EBADMSG;
  }
  if (r < 0 || !jc_array(c, &n)) return r < 0 ? r : MLY_EBADMSG;
  st->creator = s.id; /* its children's names go with its step */
  for (uint32_t i = 0; i < n && r == 0; i++) {
    rp_state k;
    r = rp_parse_state(c, &k) ? put_state(st, b, &k, true, NULL) : MLY_EBADMSG;
  }
  st->creator = 0;
  return r;
}

/* END [seq, 4, id, status, lifecycle, notice_eid (, ended_ms, name)]:
 * the row goes, its name becomes a tombstone, and the parent's
 * CHILD_EXIT notice (made by the runtime, not in the record) becomes an
 * event row as recovery would make it. */
static int put_end(pg_store *st, batch *b, jcur *c, uint32_t nfields) {
  uint64_t id, neid;
  int64_t status, lc, ended = 0;
  const char *nm = NULL;
  size_t nlen = 0;
  if (!jc_uint(c, &id) || !jc_int(c, &status) || !jc_int(c, &lc) ||
      !jc_uint(c, &neid))
    return MLY_EBADMSG;
  if (nfields >= 6 && (!jc_int(c, &ended) || !jc_str(c, &nm, &nlen)))
    return MLY_EBADMSG;
  owned *o = own_find(st, id);
  if (!o) return 0; /* evicted: not ours to end */
  mly_id parent = o->parent;
  char sid[24], sst[24], send_ms[24];
  i64s(sid, (int64_t)id);
  i64s(sst, status);
  i64s(send_ms, ended);
  char *name = nm ? strndup(nm, nlen) : NULL;
  if (nm && !name) return MLY_ENOMEM;
  const char *v[] = {st->pnode, st->pepoch, sid, sst, nm ? send_ms : NULL,
                     name};
  int r = stmt(st, b, SQL_END, 6, v);
  free(name);
  if (r == 0) r = batch_id(b, id);
  own_del(st, id);
  b->ends = true;
  if (r < 0 || neid == 0 || parent == 0) return r;
  jbuf e = {0};
  jb_array(&e, 9);
  jb_uint(&e, neid);
  jb_uint(&e, parent);
  jb_uint(&e, MLY_EV_CHILD_EXIT);
  jb_uint(&e, id);
  jb_uint(&e, 0);
  jb_uint(&e, 0);
  jb_int(&e, status);
  jb_int(&e, lc);
  jb_nil(&e);
  if (e.oom) return MLY_ENOMEM;
  rp_event ev = {.eid = neid, .to = parent, .from = id, .raw = e.p,
                 .rawlen = e.n};
  r = put_event(st, b, &ev);
  jb_free(&e);
  return r;
}

static int put_record(pg_store *st, batch *b, const unsigned char *body,
                      uint32_t len) {
  jcur c = {body, body + len, false};
  uint32_t n;
  uint64_t seq, kind;
  if (!jc_array(&c, &n) || n < 2 || !jc_uint(&c, &seq) || !jc_uint(&c, &kind))
    return MLY_EBADMSG;
  b->records++;
  b->bytes += len;
  switch (kind) {
  case JR_CREATE: {
    rp_state s;
    return rp_parse_state(&c, &s) ? put_state(st, b, &s, true, NULL)
                                  : MLY_EBADMSG;
  }
  case JR_STEP: return put_step(st, b, &c);
  case JR_EVENT: {
    rp_event e;
    return rp_parse_event(&c, &e) ? put_event(st, b, &e) : MLY_EBADMSG;
  }
  case JR_END: {
    int r = group_send(st, b); /* its steps before its end */
    return r < 0 ? r : put_end(st, b, &c, n - 2);
  }
  case JR_DROP: {
    int r = group_send(st, b); /* the events before they are dropped */
    if (r < 0) return r;
    jcur g = c;
    uint32_t ng;
    if (jc_array(&g, &ng))
      for (uint32_t i = 0; i < ng && r == 0; i++) {
        uint64_t eid;
        r = jc_uint(&g, &eid) ? batch_gone(b, eid) : MLY_EBADMSG;
      }
    if (r < 0) return r;
    char *eids = eid_array(&c);
    if (!eids) return MLY_EBADMSG;
    const char *v[] = {eids};
    r = stmt(st, b, SQL_DROP, 1, v);
    free(eids);
    return r;
  }
  default: return 0; /* snapshot kinds: nothing a table store keeps */
  }
}

/* ---- store.h operations ---- */

static jbuf *op_buf(mly_store *s) { return &ST(s)->buf; }

/* A point where the turn may be cut (store.h).  Without memory for it
 * the turn is just cut less often: it stays correct. */
static void op_cut(mly_store *s) {
  pg_store *st = ST(s);
  while (st->ncuts && st->cuts[st->ncuts - 1] > st->buf.n)
    st->ncuts--; /* records taken back (seq_back) */
  if (st->ncuts && st->cuts[st->ncuts - 1] == st->buf.n) return;
  if (st->ncuts == st->cutcap) {
    size_t cap = st->cutcap ? 2 * st->cutcap : 256;
    size_t *v = realloc(st->cuts, cap * sizeof *v);
    if (!v) return;
    st->cuts = v;
    st->cutcap = cap;
  }
  st->cuts[st->ncuts++] = st->buf.n;
}
static uint64_t op_next_seq(mly_store *s) { return ++ST(s)->seq; }
static void op_seq_back(mly_store *s) { ST(s)->seq--; }

static int op_on_commit(mly_store *s, const jdone *d) {
  pg_store *st = ST(s);
  if (st->ndones == st->dcap) {
    size_t cap = st->dcap ? 2 * st->dcap : 64;
    jdone *v = realloc(st->dones, cap * sizeof *v);
    if (!v) return MLY_ENOMEM;
    st->dones = v;
    st->dcap = cap;
  }
  st->dones[st->ndones++] = *d;
  return 0;
}

static void on_later(uv_timer_t *t) {
  pg_store *st = t->data;
  batch *b;
  while ((b = st->undone) != NULL) {
    st->undone = b->next;
    batch_done(st, b);
    batch_free(b);
  }
}

/* A batch that cannot go out: reported from the loop, not from flush. */
static void defer_failed(pg_store *st, batch *b, int rc, const char *why) {
  if (!st->failed) st->failed = rc;
  if (!b->err[0]) snprintf(b->err, sizeof b->err, "%s", why);
  b->next = NULL;
  batch **p = &st->undone; /* in order */
  while (*p) p = &(*p)->next;
  *p = b;
  uv_timer_start(&st->later, on_later, 0, 0);
}

static int names_wrap(pg_store *st, batch *b);
static void names_build_reset(pg_store *st);

/* pg_tasks.c's statements go into the batch as ours do. */
typedef struct tasks_ctx {
  pg_store *st;
  batch *b;
} tasks_ctx;

static int tasks_emit(void *ctx, const char *sql, int n,
                      const char *const *vals) {
  tasks_ctx *c = ctx;
  return stmt(c->st, c->b, sql, n, vals);
}

/* A turn's records go in transactions of at most this many: a turn of
 * 100,000 spawns is many transactions, each sent once the one before it
 * was answered (the later ones are queued), so that a renewal of the
 * lease, sent meanwhile, waits behind one part, never behind the whole
 * turn (the renewal cannot go around it on a connection of its own:
 * every batch's fence holds the node's row until it commits).  The
 * turn's completions follow its last part.  A part ends only at a cut
 * point the durable layer gave (op_cut): the records of one step (its
 * spawns, its sends, its STEP) always commit together. */
#define PG_BATCH_RECORDS 2048

/* A batch begun: in the list of those in flight, its BEGIN and fence
 * kept; it is built whole, then sent by batch_close (names_claim, when
 * the batch has named creates, goes before them, after the fence). */
static batch *batch_open(pg_store *st, int *r) {
  batch *b = calloc(1, sizeof *b);
  if (!b) {
    *r = MLY_ENOMEM;
    return NULL;
  }
  b->st = st;
  /* statements are queued on the connection at once; answers come in
   * order, so b is answered after every batch sent before it */
  b->unanswered = 1; /* held until every statement is queued */
  b->queued = st->tail && (st->tail->split || st->tail->queued);
  if (st->tail) st->tail->next = b;
  else st->head = b;
  st->tail = b;
  b->serial = ++st->bserial;
  b->epoch = st->epoch;
  i64s(b->pserial, (int64_t)b->serial);
  char prev[24];
  i64s(prev, (int64_t)prev_serial(st, b));
  const char *fv[] = {st->pnode, st->pepoch, b->pserial, prev};
  st->building = true;
  *r = stmt(st, b, "BEGIN", 0, NULL);
  if (*r == 0) *r = stmt(st, b, "SELECT mealy.fence($1, $2, $3, $4)", 4, fv);
  return b;
}

/* The batch's last statements, then all of it sent, unless a resync or
 * the part before it holds it (r < 0: it fails, rolled back). */
static void batch_close(pg_store *st, batch *b, int r) {
  if (r == 0) r = group_send(st, b);
  else group_send_none(st);
  if (r == 0 && b->named) r = names_wrap(st, b);
  names_build_reset(st);
  /* the pool's statements after the turn's last steps: in its last part */
  if (r == 0 && st->tasks && !b->split) {
    tasks_ctx tc = {st, b};
    r = pg_tasks_flush(st->tasks, b->serial, tasks_emit, &tc);
  }
  if (r == 0) r = stmt(st, b, "COMMIT", 0, NULL);
  st->building = false;
  if (r == 0 && (st->resync || b->queued)) b->held = b->nstmts > 0;
  for (size_t i = 0; r == 0 && !st->resync && !b->queued && i < b->nstmts;
       i++)
    r = send_kept(st, b, &b->stmts[i]);
  if (r < 0) {
    /* what was queued runs as an aborted transaction's tail or not at
     * all: the batch fails; the store with it */
    if (!st->failed) st->failed = r;
    if (!b->err[0])
      snprintf(b->err, sizeof b->err, "a record could not become a statement: %s",
               mly_strerror(r));
    if (b->unanswered > 1) {
      /* roll back what is open so that nothing of it commits */
      stmt(st, b, "ROLLBACK", 0, NULL);
    }
  }
  if (--b->unanswered == 0 && !b->held) {
    /* nothing was sent: report from the loop */
    take_head(st, b);
    defer_failed(st, b, st->failed, "");
  }
}

static void op_flush(mly_store *s) {
  pg_store *st = ST(s);
  if (st->buf.n == 0 && st->ndones == 0) return;
  jdone *dones = st->dones;
  size_t ndones = st->ndones;
  st->dones = NULL;
  st->ndones = st->dcap = 0;
  if (st->failed || st->buf.oom) {
    batch *b = calloc(1, sizeof *b);
    if (!b) {
      st->failed = MLY_ENOMEM;
      st->dones = dones; /* they stay queued; failed() says why */
      st->ndones = st->dcap = ndones;
      return;
    }
    b->st = st;
    b->dones = dones;
    b->ndones = ndones;
    st->buf.n = 0;
    st->ncuts = 0;
    st->buf.oom = false;
    defer_failed(st, b, st->failed ? st->failed : MLY_ENOMEM,
                 "the store failed earlier");
    return;
  }
  int r = 0;
  batch *b = batch_open(st, &r);
  size_t ci = 0; /* the next cut point at or after off */
  for (size_t off = 0; b && r == 0 && off + JR_HDR <= st->buf.n;) {
    uint32_t len = jr_le32(st->buf.p + off);
    if (off + JR_HDR + len > st->buf.n) {
      r = MLY_EBADMSG;
      break;
    }
    while (ci < st->ncuts && st->cuts[ci] < off) ci++;
    bool cut = ci < st->ncuts && st->cuts[ci] == off;
    if (b->records >= PG_BATCH_RECORDS && cut) { /* the next part */
      b->split = true;
      batch_close(st, b, 0);
      b = batch_open(st, &r);
      if (!b || r < 0) break;
    }
    r = put_record(st, b, st->buf.p + off + JR_HDR, len);
    off += JR_HDR + len;
  }
  st->buf.n = 0;
  st->ncuts = 0;
  if (!b) { /* out of memory between parts */
    st->failed = r;
    st->dones = dones; /* reported by the next flush, failed */
    st->ndones = st->dcap = ndones;
    group_send_none(st);
    return;
  }
  b->dones = dones;
  b->ndones = ndones;
  batch_close(st, b, r);
}

/* Failed for good; or, while the lease is lost and the node not yet
 * back (rejoin), not now: spawns and sends are refused with MLY_EAGAIN
 * rather than taken and dropped. */
static int op_failed(const mly_store *s) {
  const pg_store *st = (const pg_store *)s;
  return st->failed ? st->failed : st->lost ? MLY_EAGAIN : 0;
}

/* Rows are the live set already: nothing to rewrite (mly_journal_compact
 * answers 0; total_bytes stays 0, so none is ever wanted by itself). */
static int op_compact(mly_store *s, const jbuf *snapshot) {
  (void)snapshot;
  if (ST(s)->failed) return ST(s)->failed;
  ST(s)->stats.compactions++;
  return 0;
}

static bool op_idle(const mly_store *s) {
  const pg_store *st = (const pg_store *)s;
  return st->buf.n == 0 && st->ndones == 0 && !st->head && !st->undone;
}

static mly_journal_stats *op_stats(mly_store *s) { return &ST(s)->stats; }

/* Both timers are closed: the memory goes, and the runtime is told. */
static void on_later_closed(uv_handle_t *h) {
  pg_store *st = h->data;
  if (--st->timers_open > 0) return;
  void (*closed)(void *) = st->base.hooks.closed;
  void *arg = st->base.hooks.arg;
  free(st);
  if (closed) closed(arg);
}

/* ---- events of other processes: woken by a notification on this
 * node's channel (their COMMIT sent it), or by the poll timer; the rows
 * for instances this node owns that other nodes made (eid >> 40 is the
 * node that made it) and that it does not hold yet, in commit order per
 * sender (seq: a sender's commits follow one another), to
 * hooks.deliver ---- */

static const char SQL_FETCH[] =
    "SELECT e.eid, e.body, e.target FROM mealy.events e"
    " JOIN mealy.instances i"
    " ON i.id = e.target WHERE i.owner = $1 AND i.epoch = $2"
    " AND (e.eid >> 40) <> $1 ORDER BY e.seq";

static void fetch(pg_store *st);
static void adopt_fail(pg_store *st, int rc, const char *why);

static void on_fetched(mly_pg *pg, const PGresult *cres, const char *err,
                       void *arg) {
  (void)pg;
  (void)err; /* the next notification or poll tries again */
  pg_store *st = arg;
  PGresult *res = (PGresult *)cres;
  st->fetching = false;
  if (!res || st->closing || st->failed || st->lost) return;
  int n = PQntuples(res), rc = 0;
  jbuf b = {0};
  uint64_t k = 0;
  char why[512] = "events of other processes could not be delivered";
  for (int i = 0; i < n && rc == 0; i++) {
    int64_t seid, target;
    if (!pg_col_i64(res, i, 0, &seid) || !pg_col_i64(res, i, 2, &target) ||
        PQgetisnull(res, i, 1)) {
      rc = MLY_EBADMSG;
      snprintf(why, sizeof why, "a row of mealy.events whose eid or target "
               "is not a number (`mealy store stat --bad` lists it)");
      break;
    }
    uint64_t eid = (uint64_t)seid;
    if (seen_has(st, eid)) continue;
    size_t len = 0;
    unsigned char *body = PQunescapeBytea(
        (const unsigned char *)PQgetvalue(res, i, 1), &len);
    if (body && (rc = pg_event_check(eid, (uint64_t)target, body, len, why,
                                     sizeof why)) < 0) {
      PQfreemem(body);
      break;
    }
    if (!body || (rc = seen_add(st, eid, (mly_id)target)) < 0) {
      if (body) PQfreemem(body);
      rc = MLY_ENOMEM;
      break;
    }
    size_t at = jb_begin(&b, ++k, JR_EVENT, 1);
    jb_raw(&b, body, len);
    jb_end(&b, at);
    PQfreemem(body);
  }
  if (rc == 0 && b.oom) rc = MLY_ENOMEM;
  st->fencing.delivered += k;
  if (rc == 0 && k && st->base.hooks.deliver)
    rc = st->base.hooks.deliver(st->base.hooks.arg, b.p, b.n);
  jb_free(&b);
  if (rc < 0 && rc != MLY_ESHUTDOWN) adopt_fail(st, rc, why);
  else if (st->fetch_again) fetch(st);
}

static void fetch(pg_store *st) {
  if (st->closing || st->failed || st->lost) return;
  if (st->fetching) {
    st->fetch_again = true;
    return;
  }
  st->fetch_again = false;
  const char *v[] = {st->pnode, st->pepoch};
  if (mly_pg_query(st->pg, SQL_FETCH, 2, v, on_fetched, st) == 0)
    st->fetching = true;
}

static void on_notify(mly_pg *pg, const char *channel, const char *payload,
                      void *arg) {
  (void)pg;
  pg_store *st = arg;
  if (strcmp(channel, PG_TASKS_CHANNEL) == 0) {
    if (st->tasks && !st->closing) pg_tasks_notify(st->tasks, payload);
    return;
  }
  fetch(st);
}

static void names_poll(pg_store *st);
static void names_expire(pg_store *st);

static void on_poll(uv_timer_t *t) {
  pg_store *st = t->data;
  fetch(st);
  names_poll(st);
  if (st->tasks && !st->closing) pg_tasks_poll(st->tasks);
}

/* A connection made (again): what was notified while none listened is
 * looked for now, not at the next poll. */
static void on_connect(mly_pg *pg, void *arg) {
  (void)pg;
  pg_store *st = arg;
  if (mly_pg_connects(pg) > 1) fetch(st);
}

/* ---- the lease ---- */

static void rejoin(pg_store *st);
static void claim(pg_store *st);

/* Its instances leave at once (another process may run them now); the
 * node then comes back (rejoin) rather than idle for good. */
static void lease_lost(pg_store *st, const char *why) {
  if (st->lost) return;
  st->lost = true;
  evict_all(st, why);
  rejoin(st);
}

/* ---- rejoining after the lease was lost: the node's row gets a new
 * epoch and lease (and is no longer taken: a claimant keeps what it
 * took), the instances still this node's (none claimed them: the server
 * was away) move to the new epoch and come back through the next claim
 * (SQL_ADOPT_MINE), and if a claimant took the node's slot range, a free
 * one is taken and the runtime makes new instances there (hooks.rerange).
 * Batches made before carry the old epoch: the fence refuses them.
 * Until it is back, op_failed answers MLY_EAGAIN: nothing is taken that
 * could not be stored.  Tried again on every renewal tick. ---- */

static const char SQL_REJOIN[] =
    "WITH n AS (UPDATE mealy.nodes SET epoch = nextval('mealy.epochs'),"
    "  taken_by = NULL, lease_until = clock_timestamp() + $2 * interval"
    "  '1 millisecond' WHERE id = $1 RETURNING epoch),"
    " i AS (UPDATE mealy.instances SET epoch = (SELECT epoch FROM n)"
    "  WHERE owner = $1 RETURNING 1)"
    " SELECT (SELECT epoch FROM n), EXISTS (SELECT 1 FROM mealy.ranges"
    "  WHERE range_no = $3 AND node = $1), (SELECT count(*) FROM i)";

/* A free range (none: no row; two racing for one: no row, tried again). */
static const char SQL_NEW_RANGE[] =
    "INSERT INTO mealy.ranges (range_no, node) SELECT g, $1"
    " FROM generate_series(0, 63) g WHERE g NOT IN"
    " (SELECT range_no FROM mealy.ranges) ORDER BY g LIMIT 1"
    " ON CONFLICT DO NOTHING RETURNING range_no";

static void rejoined(pg_store *st) {
  st->lost = st->rejoining = false;
  st->fencing.rejoins++;
  st->renewed_at = st->sent_at;
  st->claim_unsure = true; /* every row this node owns comes back */
  fprintf(stderr, "mealy: postgresql store: node %" PRId64 " is back with "
          "epoch %" PRId64 " (range %" PRIu32 "): it takes work again\n",
          st->node, st->epoch, st->range);
  claim(st);
  fetch(st);
}

static void on_new_range(mly_pg *pg, const PGresult *res, const char *err,
                         void *arg) {
  (void)pg;
  (void)err; /* the next tick tries again */
  pg_store *st = arg;
  st->rejoining = false;
  if (st->closing || st->failed || !res || PQntuples((PGresult *)res) != 1)
    return;
  set_range(st, (uint32_t)atoi(PQgetvalue((PGresult *)res, 0, 0)));
  st->fencing.reranges++;
  int rc = st->base.hooks.rerange
               ? st->base.hooks.rerange(st->base.hooks.arg, st->base.slot_lo,
                                        st->base.slot_hi)
               : 0;
  if (rc < 0) {
    adopt_fail(st, rc, "no memory for a new slot range");
    return;
  }
  rejoined(st);
}

static void on_rejoin(mly_pg *pg, const PGresult *res, const char *err,
                      void *arg) {
  (void)pg;
  (void)err; /* the next tick tries again */
  pg_store *st = arg;
  st->rejoining = false;
  PGresult *r = (PGresult *)res;
  if (st->closing || st->failed || !r || PQntuples(r) != 1) return;
  if (PQgetisnull(r, 0, 0)) {
    adopt_fail(st, MLY_EIO, "the lease ran out and the node's row is gone "
               "(deleted as a node gone for an hour): it cannot come back");
    return;
  }
  st->epoch = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  i64s(st->pepoch, st->epoch);
  if (PQgetvalue(r, 0, 1)[0] == 't') {
    rejoined(st);
    return;
  }
  const char *v[] = {st->pnode};
  if (mly_pg_query(st->pg, SQL_NEW_RANGE, 1, v, on_new_range, st) == 0)
    st->rejoining = true;
}

static void rejoin(pg_store *st) {
  if (!st->lost || st->rejoining || st->closing || st->failed) return;
  char lease[24], range[24];
  i64s(lease, st->o.lease_ms);
  i64s(range, st->range);
  const char *v[] = {st->pnode, lease, range};
  st->sent_at = uv_now(st->base.loop);
  if (mly_pg_query(st->pg, SQL_REJOIN, 3, v, on_rejoin, st) == 0)
    st->rejoining = true;
}

/* ---- taking over while running: after each renewal that the server
 * confirmed, the nodes whose lease ran out are claimed (as recover does,
 * FOR UPDATE SKIP LOCKED on their rows, only while this node's own lease
 * holds: its row is locked too, so that no one takes this node over in
 * the same moment), in one statement that also returns their instances
 * and pending events; they go to hooks.adopt as framed records ---- */

static const char SQL_ADOPT[] =
    "WITH me AS (SELECT id FROM mealy.nodes WHERE id = $1 AND epoch = $2"
    "  AND taken_by IS NULL AND lease_until > clock_timestamp() FOR UPDATE),"
    " dead AS (SELECT id FROM mealy.nodes WHERE taken_by IS NULL"
    "  AND lease_until < clock_timestamp() AND id <> $1"
    "  AND EXISTS (SELECT 1 FROM me) FOR UPDATE SKIP LOCKED),"
    " t AS (UPDATE mealy.nodes n SET taken_by = $1 FROM dead"
    "  WHERE n.id = dead.id RETURNING n.id),"
    " r AS (UPDATE mealy.ranges SET node = $1"
    "  WHERE node IN (SELECT id FROM t)),"
    " i AS (UPDATE mealy.instances SET owner = $1, epoch = $2"
    "  WHERE owner IN (SELECT id FROM t)"
    "  RETURNING id, step, parent, state, context, name)"
    " SELECT 0 AS k, id, step, parent, state, context, name, 0::bigint AS seq"
    "  FROM i"
    " UNION ALL SELECT 1, e.target, e.eid, 0, e.body, NULL, NULL, e.seq"
    "  FROM mealy.events e WHERE e.target IN (SELECT id FROM i)"
    " ORDER BY 1, 8, 2";

/* After a claim whose answer was lost (the connection went: it may have
 * committed): every instance this node owns at its epoch, with their
 * events; on_claimed keeps those it did not hold. */
static const char SQL_ADOPT_MINE[] =
    "WITH i AS (SELECT id, step, parent, state, context, name"
    "  FROM mealy.instances WHERE owner = $1 AND epoch = $2)"
    " SELECT 0 AS k, id, step, parent, state, context, name, 0::bigint AS seq"
    "  FROM i"
    " UNION ALL SELECT 1, e.target, e.eid, 0, e.body, NULL, NULL, e.seq"
    "  FROM mealy.events e WHERE e.target IN (SELECT id FROM i)"
    " ORDER BY 1, 8, 2";

/* S as instances.state/context/name keep it: an INST's body. */
static void put_inst(jbuf *b, const void *state, size_t slen, const void *ctx,
                     size_t clen, const char *name, size_t nlen) {
  jb_array(b, 12);
  jb_raw(b, state, slen);
  if (ctx) jb_bin(b, ctx, clen);
  else jb_nil(b);
  if (name) jb_str(b, name, nlen);
  else jb_nil(b);
}

/* A store that failed (fail-stop) gives its lease up at once, so that
 * other processes claim its instances now, not never: it renews no more
 * (on_renew), and this runs behind every batch already sent, so none of
 * them is overtaken.  No answer is waited for: if it does not reach the
 * server, the lease runs out by itself. */
static void fail_release(pg_store *st) {
  if (st->closing || st->lost || !st->pg) return;
  const char *v[] = {st->pnode, st->pepoch};
  (void)mly_pg_query(st->pg,
                     "UPDATE mealy.nodes SET lease_until = clock_timestamp()"
                     " WHERE id = $1 AND epoch = $2 AND taken_by IS NULL",
                     2, v, NULL, NULL);
}

static void adopt_fail(pg_store *st, int rc, const char *why) {
  if (st->failed) return;
  st->failed = rc;
  fail_release(st);
  fprintf(stderr, "mealy: postgresql store: node %" PRId64
          ": the store stops: %s\n",
          st->node, why);
  if (!st->told_failed) {
    st->told_failed = true;
    if (st->base.hooks.failed) st->base.hooks.failed(st->base.hooks.arg, rc, why);
  }
}

static bool id_in(const mly_id *ids, size_t n, mly_id id) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] == id) return true;
  return false;
}

/* Rows of SQL_ADOPT's shape (k, id, step, parent, state, context, name,
 * seq; text) to hooks.adopt: the instances this node does not hold yet
 * (only those of `only`, when given) and their events.  why: for the
 * line on stderr. */
static int adopt_rows(pg_store *st, PGresult *res, const mly_id *only,
                      size_t nonly, const char *why, bool pool,
                      void (*each)(void *, mly_id), void *earg);

static void adopt_res(pg_store *st, PGresult *res, const mly_id *only,
                      size_t nonly, const char *why) {
  adopt_rows(st, res, only, nonly, why, false, NULL, NULL);
}

/* adopt_res, and: pool, rows a claim of the task pool made (k 2, its
 * hint, skipped; not counted or said as a takeover); each (may be NULL)
 * is called with every instance handed up.  0, or the error (the store
 * failed with it, but MLY_ESHUTDOWN). */
static int adopt_rows(pg_store *st, PGresult *res, const mly_id *only,
                      size_t nonly, const char *why, bool pool,
                      void (*each)(void *, mly_id), void *earg) {
  uint64_t serial = ++st->claims;
  int n = PQntuples(res);
  if (n == 0) return 0;
  jbuf b = {0};
  uint64_t base = (uint64_t)st->node << 40, seq = 0;
  size_t at = jb_begin(&b, ++seq, JR_SNAP, 2);
  jb_uint(&b, base);
  jb_uint(&b, base);
  jb_end(&b, at);
  uint64_t ni = 0, ne = 0;
  int rc = 0;
  char bad[512] = "instances taken over could not be restored";
  for (int i = 0; i < n && rc == 0; i++) {
    char k = PQgetvalue(res, i, 0)[0];
    if (k != '0' && k != '1') continue; /* a claim's hint */
    bool inst = k == '0';
    int64_t c1, c2, c3 = 0;
    if (!pg_col_i64(res, i, 1, &c1) || !pg_col_i64(res, i, 2, &c2) ||
        (inst && !pg_col_i64(res, i, 3, &c3)) || PQgetisnull(res, i, 4)) {
      rc = MLY_EBADMSG;
      snprintf(bad, sizeof bad, "a row of %s taken over has a key, step or "
               "parent that is not a number (`mealy store stat --bad` lists "
               "it)", inst ? "mealy.instances" : "mealy.events");
      break;
    }
    size_t sl = 0, cl = 0;
    unsigned char *sv = PQunescapeBytea(
        (const unsigned char *)PQgetvalue(res, i, 4), &sl);
    unsigned char *cv = inst && !PQgetisnull(res, i, 5)
                            ? PQunescapeBytea(
                                  (const unsigned char *)PQgetvalue(res, i, 5),
                                  &cl)
                            : NULL;
    const char *nm = inst && !PQgetisnull(res, i, 6) ? PQgetvalue(res, i, 6)
                                                     : NULL;
    if (!sv || (inst && !PQgetisnull(res, i, 5) && !cv)) rc = MLY_ENOMEM;
    else if ((rc = inst ? pg_inst_check((uint64_t)c1, sv, sl, cv, cl, nm,
                                        nm ? (size_t)PQgetlength(res, i, 6)
                                           : 0,
                                        bad, sizeof bad)
                        : pg_event_check((uint64_t)c2, (uint64_t)c1, sv, sl,
                                         bad, sizeof bad)) < 0) {
      /* named in bad */
    } else if (inst) {
      mly_id id = (mly_id)c1;
      if (own_find(st, id)) goto next; /* held already (SQL_ADOPT_MINE) */
      if (only && !id_in(only, nonly, id)) goto next;
      rc = own_put(st, id, (uint64_t)c2, (mly_id)c3);
      if (rc == 0) own_find(st, id)->got = serial;
      if (rc == 0 && each) each(earg, id);
      at = jb_begin(&b, ++seq, JR_INST, 1);
      put_inst(&b, sv, sl, cv, cl, nm, nm ? (size_t)PQgetlength(res, i, 6) : 0);
      jb_end(&b, at);
      ni++;
    } else {
      owned *o = own_find(st, (mly_id)c1);
      if (!o || o->got != serial) goto next; /* its target was held */
      rc = seen_add(st, (uint64_t)c2, o->id);
      at = jb_begin(&b, ++seq, JR_EVENT, 1);
      jb_raw(&b, sv, sl);
      jb_end(&b, at);
      ne++;
    }
  next:
    PQfreemem(sv);
    if (cv) PQfreemem(cv);
  }
  at = jb_begin(&b, ++seq, JR_SNAPEND, 3);
  jb_uint(&b, ni);
  jb_uint(&b, ne);
  jb_uint(&b, 0);
  jb_end(&b, at);
  if (rc == 0 && b.oom) rc = MLY_ENOMEM;
  if (!pool) st->fencing.adopted += ni;
  if (rc == 0 && ni && !pool)
    fprintf(stderr, "mealy: postgresql store: node %" PRId64 " (epoch %" PRId64
            "): %s %" PRIu64 " instance(s)\n", st->node, st->epoch, why, ni);
  if (rc == 0 && ni && st->base.hooks.adopt)
    rc = st->base.hooks.adopt(st->base.hooks.arg, b.p, b.n);
  jb_free(&b);
  /* stopping: they stay this node's in the database, given up with its
   * lease when it closes */
  if (rc < 0 && rc != MLY_ESHUTDOWN) adopt_fail(st, rc, bad);
  return rc;
}

static void on_claimed(mly_pg *pg, const PGresult *cres, const char *err,
                       void *arg) {
  (void)pg;
  (void)err;
  pg_store *st = arg;
  PGresult *res = (PGresult *)cres;
  st->claiming = false;
  if (!res) st->claim_unsure = true; /* looked at by the next claim */
  if (!res || st->closing || st->failed || st->lost) return; /* next time */
  if (st->claim_epoch != st->epoch) { /* sent before a rejoin: again */
    claim(st);
    return;
  }
  st->claim_unsure = false;
  adopt_res(st, res, NULL, 0,
            "took over, from processes whose lease ran out,");
}

static void claim(pg_store *st) {
  if (st->claiming || st->closing || st->failed || st->lost) return;
  /* every row this node owns, read while parts of a turn wait unsent,
   * would bring back instances those parts end: after them */
  if (st->claim_unsure && st->tail && st->tail->queued) return;
  const char *v[] = {st->pnode, st->pepoch};
  st->claim_epoch = st->epoch;
  if (mly_pg_query(st->pg, st->claim_unsure ? SQL_ADOPT_MINE : SQL_ADOPT, 2,
                   v, on_claimed, st) == 0)
    st->claiming = true;
}

static void on_renewed(mly_pg *pg, const PGresult *res, const char *err,
                       void *arg) {
  (void)pg;
  pg_store *st = arg;
  st->renewing = false;
  if (st->closing || st->lost || st->renew_epoch != st->epoch) return;
  if (res && PQntuples((PGresult *)res) == 1) {
    st->renewed_at = st->sent_at;
    claim(st);
    names_expire(st);
  } else if (res) { /* the row said no: taken over, or ran out */
    lease_lost(st, "the lease could not be renewed (another process may "
                   "have taken this one's instances)");
  } else if (uv_now(st->base.loop) - st->renewed_at >= st->o.lease_ms) {
    (void)err;
    lease_lost(st, "the lease ran out while the server could not be reached");
  }
}

static void on_renew(uv_timer_t *t) {
  pg_store *st = t->data;
  if (st->closing || st->failed) return;
  if (st->lost) {
    rejoin(st);
    return;
  }
  /* first: a renewal still unanswered (the server is away) must not
   * hide that the lease ran out */
  if (uv_now(st->base.loop) - st->renewed_at >= st->o.lease_ms) {
    lease_lost(st, "the lease ran out before it was renewed");
    return;
  }
  if (st->renewing) return;
  char lease[24];
  i64s(lease, st->o.lease_ms);
  const char *v[] = {st->pnode, st->pepoch, lease};
  st->sent_at = uv_now(st->base.loop);
  st->renew_epoch = st->epoch;
  if (mly_pg_query(st->pg,
                   "UPDATE mealy.nodes SET lease_until = clock_timestamp() +"
                   " $3 * interval '1 millisecond' WHERE id = $1 AND epoch = $2"
                   " AND taken_by IS NULL AND lease_until > clock_timestamp()"
                   " RETURNING 1",
                   3, v, on_renewed, st) == 0)
    st->renewing = true;
}

/* ---- names: unique across processes (schema v5, pg_schema.c).
 *
 * A batch that creates named instances calls mealy.names_claim first
 * (after the fence) with every name it creates, the instance that would
 * hold it and its group: the instance whose step spawned it (its
 * children's creates are in that step's record), or itself for a create
 * of its own (the host's, a plain machine's).  A name another process
 * holds (live, or a tombstone within the retention) is answered with
 * its holder and its group is skipped: the step, the creates it makes
 * and the events it sends leave the transaction (every statement
 * checks mealy.skipped()), and the rest commits.  mealy.rerun_rows, the
 * batch's last statement, reads what the skipped instances left: their
 * committed rows, with their descendants and pending events.  Once
 * COMMIT answered, the runtime learns the name (hooks.name_seen: a
 * spawn of it now answers MLY_EEXIST at once), the skipped instances
 * and their descendants leave memory (hooks.rerun) and those rows come
 * back (hooks.adopt), all before the batch's completions: the left-out
 * steps run again, as after a crash, and the spawn finds the name
 * taken.  A named child whose own create was skipped (no step of a
 * durable parent made it) ends with MLY_EEXIST.
 *
 * The names feed: every poll, the rows of mealy.names changed since the
 * last look (their rev, from a sequence), to hooks.name_seen: names
 * others hold and their tombstones are known here shortly after they
 * commit.  A rev is taken before its transaction commits, so one
 * committed late could hide behind a later one: each look goes back to
 * where the look before it began, and the batch's own check above is
 * what keeps names unique whatever the feed missed.  Each renewal of
 * the lease also deletes up to EXPIRE_MAX tombstones past the
 * retention. ---- */

#define NAMES_PAGE 4096
#define EXPIRE_MAX 1000

/* An element of a text[] literal: quoted, '"' and '\' escaped. */
static void sb_text(sbuf *b, const char *p, size_t n) {
  sb_sep(b);
  sb_raw(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '"' || p[i] == '\\') sb_raw(b, "\\", 1);
    sb_raw(b, p + i, 1);
  }
  sb_raw(b, "\"", 1);
}

static int names_note(pg_store *st, batch *b, const rp_state *s) {
  sb_text(&st->c_names, s->name, s->namelen);
  sb_i64(&st->c_ids, (int64_t)s->id);
  sb_i64(&st->c_groups, (int64_t)(st->creator ? st->creator : s->id));
  b->named = true;
  return st->c_names.oom || st->c_ids.oom || st->c_groups.oom ? MLY_ENOMEM
                                                                : 0;
}

static void names_build_reset(pg_store *st) {
  sbuf *all[] = {&st->c_names, &st->c_ids, &st->c_groups};
  for (size_t i = 0; i < 3; i++) {
    all[i]->n = 0;
    all[i]->oom = false;
  }
}

/* names_claim after BEGIN and the fence (statements 0 and 1), and
 * rerun_rows last (COMMIT follows). */
static int names_wrap(pg_store *st, batch *b) {
  char ret[24];
  i64s(ret, st->base.name_retention_ms);
  const char *v[] = {st->pnode,           st->pepoch,
                     sb_end(&st->c_names), sb_end(&st->c_ids),
                     sb_end(&st->c_groups), ret};
  /* sb_end hands back one buffer per sbuf: the three are distinct */
  if (!v[2] || !v[3] || !v[4]) return MLY_ENOMEM;
  int r = stmt(st, b,
               "SELECT * FROM mealy.names_claim($1, $2, $3::text[],"
               " $4::bigint[], $5::bigint[], $6)",
               6, v);
  if (r < 0) return r;
  sstmt k = b->stmts[b->nstmts - 1];
  k.kind = SK_NAMES;
  memmove(&b->stmts[3], &b->stmts[2], (b->nstmts - 3) * sizeof k);
  b->stmts[2] = k;
  r = stmt(st, b, "SELECT * FROM mealy.rerun_rows($1, $2)", 2, v);
  if (r == 0) b->stmts[b->nstmts - 1].kind = SK_RERUN;
  return r;
}

static void names_batch_reset(batch *b) {
  for (size_t i = 0; i < b->nconf; i++) free(b->conf[i].name);
  free(b->conf);
  b->conf = NULL;
  b->nconf = 0;
  if (b->rerun) PQclear(b->rerun);
  b->rerun = NULL;
  b->answered = 0;
  b->got_names = b->got_rerun = false;
  free(b->missing);
  b->missing = NULL;
  b->nmissing = 0;
}

/* names_claim's rows (c_name, c_holder, c_status, c_ended, c_group), or
 * rerun_rows' (kept until the batch is over). */
static void names_answer(batch *b, const sstmt *k, const PGresult *cres) {
  PGresult *res = (PGresult *)cres;
  if (k->kind == SK_EVENTS) { /* the eids not inserted */
    int n = PQntuples(res);
    uint64_t *v = n > 0 ? realloc(b->missing, (b->nmissing + (size_t)n) *
                                                  sizeof *v)
                        : NULL;
    if (n > 0 && !v && !b->err[0])
      snprintf(b->err, sizeof b->err, "out of memory");
    for (int i = 0; v && i < n; i++)
      v[b->nmissing++] = strtoull(PQgetvalue(res, i, 0), NULL, 10);
    if (v) b->missing = v;
    return;
  }
  if (k->kind == SK_RERUN) {
    b->got_rerun = true;
    if (b->rerun) PQclear(b->rerun);
    b->rerun = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
    if (!b->rerun && b->nconf && !b->err[0])
      snprintf(b->err, sizeof b->err, "out of memory");
    return;
  }
  b->got_names = true;
  int n = PQntuples(res);
  if (n <= 0) return;
  nconflict *c = calloc((size_t)n, sizeof *c);
  if (!c) {
    if (!b->err[0]) snprintf(b->err, sizeof b->err, "out of memory");
    return;
  }
  for (int i = 0; i < n; i++) {
    c[i].name = strdup(PQgetvalue(res, i, 0));
    c[i].holder = (mly_id)strtoull(PQgetvalue(res, i, 1), NULL, 10);
    c[i].live = PQgetisnull(res, i, 3);
    c[i].status = (int32_t)strtoll(PQgetvalue(res, i, 2), NULL, 10);
    c[i].ended_ms = strtoll(PQgetvalue(res, i, 3), NULL, 10);
    c[i].group = (mly_id)strtoull(PQgetvalue(res, i, 4), NULL, 10);
    if (!c[i].name && !b->err[0])
      snprintf(b->err, sizeof b->err, "out of memory");
  }
  b->conf = c;
  b->nconf = (size_t)n;
}

/* The batch committed without the steps of b->conf's groups: see above. */
static void names_rerun(pg_store *st, batch *b) {
  /* the groups still this node's (one ended since is gone for good),
   * then their descendants */
  size_t n = 0, cap = b->nconf + HASH_COUNT(st->owned);
  mly_id *ids = malloc((cap ? cap : 1) * sizeof *ids);
  if (!ids) {
    adopt_fail(st, MLY_ENOMEM, "out of memory");
    return;
  }
  for (size_t i = 0; i < b->nconf; i++)
    if (own_find(st, b->conf[i].group) && !id_in(ids, n, b->conf[i].group))
      ids[n++] = b->conf[i].group;
  size_t nskipped = n;
  owned *o, *tmp;
  HASH_ITER(hh, st->owned, o, tmp) {
    if (id_in(ids, nskipped, o->id)) continue;
    size_t depth = 0;
    for (owned *p = own_find(st, o->parent); p && depth < 1024;
         p = own_find(st, p->parent), depth++)
      if (id_in(ids, nskipped, p->id)) {
        ids[n++] = o->id;
        break;
      }
  }
  st->fencing.name_reruns += nskipped;
  fprintf(stderr, "mealy: postgresql store: node %" PRId64 ": %zu name(s) "
          "spawned here are held by other processes (%s%s): %zu step(s) run "
          "again\n", st->node, b->nconf, b->conf[0].name ? b->conf[0].name : "?",
          b->nconf > 1 ? ", ..." : "", nskipped);
  for (size_t i = 0; i < n; i++) own_del(st, ids[i]);
  if (n && st->base.hooks.rerun)
    st->base.hooks.rerun(st->base.hooks.arg, ids, n, nskipped);
  /* learned once the children that held them here have gone */
  for (size_t i = 0; i < b->nconf; i++)
    if (b->conf[i].name && st->base.hooks.name_seen)
      st->base.hooks.name_seen(st->base.hooks.arg, b->conf[i].name,
                               strlen(b->conf[i].name), b->conf[i].holder,
                               b->conf[i].live, b->conf[i].status,
                               b->conf[i].ended_ms);
  if (b->rerun && n)
    adopt_res(st, b->rerun, ids, n, "runs again, from its committed step,");
  free(ids);
}

/* Eids whose instance is no longer this node's (it ended, or left). */
static void seen_prune(pg_store *st) {
  seen *x, *tmp;
  HASH_ITER(hh, st->seen, x, tmp) {
    if (own_find(st, x->target)) continue;
    HASH_DEL(st->seen, x);
    free(x);
  }
}

static void names_poll(pg_store *st);

static void on_names(mly_pg *pg, const PGresult *cres, const char *err,
                     void *arg) {
  (void)pg;
  (void)err; /* the next poll looks again */
  pg_store *st = arg;
  PGresult *res = (PGresult *)cres;
  st->names_polling = false;
  if (!res || st->closing || st->failed) return;
  int n = PQntuples(res);
  int64_t top = st->name_from;
  for (int i = 0; i < n; i++) {
    const char *nm = PQgetvalue(res, i, 0);
    int64_t rev = strtoll(PQgetvalue(res, i, 4), NULL, 10);
    if (rev > top) top = rev;
    if (st->base.hooks.name_seen)
      st->base.hooks.name_seen(
          st->base.hooks.arg, nm, (size_t)PQgetlength(res, i, 0),
          (mly_id)strtoull(PQgetvalue(res, i, 1), NULL, 10),
          PQgetisnull(res, i, 3),
          (int32_t)strtoll(PQgetvalue(res, i, 2), NULL, 10),
          strtoll(PQgetvalue(res, i, 3), NULL, 10));
  }
  if (n == NAMES_PAGE) { /* catching up: on at once */
    st->name_from = st->name_last = top;
    names_poll(st);
    return;
  }
  st->name_from = st->name_last; /* the next look goes back this far */
  if (top > st->name_last) st->name_last = top;
}

static void names_poll(pg_store *st) {
  if (st->names_polling || st->closing || st->failed ||
      !st->base.hooks.name_seen)
    return;
  char from[24];
  i64s(from, st->name_from);
  const char *v[] = {from};
  if (mly_pg_query(st->pg,
                   "SELECT name, id, status, ended_ms, rev FROM mealy.names"
                   " WHERE rev > $1 ORDER BY rev LIMIT 4096",
                   1, v, on_names, st) == 0)
    st->names_polling = true;
}

static void on_expired(mly_pg *pg, const PGresult *res, const char *err,
                       void *arg) {
  (void)pg;
  (void)res;
  (void)err; /* the next renewal tries again */
  (void)arg;
}

static void names_expire(pg_store *st) {
  if (st->base.name_retention_ms < 0 || st->closing || st->failed) return;
  char ret[24], lim[24];
  i64s(ret, st->base.name_retention_ms);
  i64s(lim, EXPIRE_MAX);
  const char *v[] = {ret, lim};
  (void)mly_pg_query(st->pg, "SELECT mealy.expire_names($1, $2)", 2, v,
                     on_expired, st);
}

/* ---- giving up on a server that does not come back: batches waiting
 * on no connection for give_up_ms fail the store (fail-stop, as a
 * journal that cannot write); their outcome is unknown (a COMMIT may
 * have reached the server before it went) ---- */

static void on_giveup_tick(uv_timer_t *t) {
  pg_store *st = t->data;
  if (st->failed) return;
  uint64_t now = uv_now(st->base.loop);
  if (!st->head || mly_pg_connected(st->pg)) {
    st->down_since = 0;
    return;
  }
  if (st->down_since == 0) st->down_since = now ? now : 1;
  if (now - st->down_since < st->o.give_up_ms) return;
  char why[sizeof ((batch *)0)->err];
  const char *last = mly_pg_last_error(st->pg);
  snprintf(why, sizeof why, "no connection to the server for %" PRIu64
           " ms (give-up time %" PRIu32 " ms): %.*s", now - st->down_since,
           st->o.give_up_ms, (int)strcspn(last, "\n"), last);
  st->failed = MLY_ETIMEDOUT;
  fprintf(stderr, "mealy: postgresql store: node %" PRId64 ": %s; the "
          "store stops, the outcome of the steps waiting is unknown\n",
          st->node, why);
  /* the held batches, then those whose statements wait on pg_conn (and
   * the serial's query: on_serial finds nothing held) */
  batch *b;
  while ((b = st->head) != NULL && b->held) {
    b->held = false;
    snprintf(b->err, sizeof b->err, "%s", why);
    settle(st, b);
    if (st->closing && !st->head) return; /* released */
  }
  mly_pg_fail_waiting(st->pg, why);
}

/* ---- closing: batches in flight finish, the lease is given up (so that
 * another process, or this one restarted, claims the instances at once),
 * then the handles go ---- */

static void finish_close(pg_store *st) {
  if (st->pg) mly_pg_close(st->pg);
  st->pg = NULL;
  on_later(&st->later);
  owned *o, *tmp;
  HASH_ITER(hh, st->owned, o, tmp) {
    HASH_DEL(st->owned, o);
    free(o);
  }
  seen *x, *xt;
  HASH_ITER(hh, st->seen, x, xt) {
    HASH_DEL(st->seen, x);
    free(x);
  }
  jb_free(&st->buf);
  walk_free(&st->rec);
  pg_tasks_free(st->tasks);
  st->tasks = NULL;
  sbuf *all[] = GROUP_BUFS(st);
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->p);
  free(st->c_names.p);
  free(st->c_ids.p);
  free(st->c_groups.p);
  free(st->dones);
  free(st->cuts);
  free(st->conninfo);
  st->timers_open = 4;
  uv_close((uv_handle_t *)&st->giveup, on_later_closed);
  uv_close((uv_handle_t *)&st->poll, on_later_closed);
  uv_close((uv_handle_t *)&st->renew, on_later_closed);
  uv_close((uv_handle_t *)&st->later, on_later_closed);
}

static void on_released(mly_pg *pg, const PGresult *res, const char *err,
                        void *arg) {
  (void)pg;
  (void)res;
  (void)err; /* not given up: it runs out by itself */
  finish_close(arg);
}

static void release(pg_store *st) {
  if (st->releasing) return;
  st->releasing = true;
  const char *v[] = {st->pnode, st->pepoch};
  if (st->failed || st->lost || !mly_pg_connected(st->pg) ||
      mly_pg_query(st->pg,
                   "UPDATE mealy.nodes SET lease_until = clock_timestamp()"
                   " WHERE id = $1 AND epoch = $2 AND taken_by IS NULL",
                   2, v, on_released, st) < 0)
    finish_close(st);
}

static void op_close(mly_store *s) {
  pg_store *st = ST(s);
  if (st->closing) return;
  uv_timer_stop(&st->renew);
  uv_timer_stop(&st->poll);
  op_flush(s); /* what the last turn appended (a stop keeps inboxes) */
  st->closing = true;
  if (!st->head) release(st);
}

/* ---- registration and recovery (blocking, a private connection) ---- */

static int db_err(char *err, size_t errlen, const char *what, PGconn *c,
                  PGresult *r) {
  const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
  size_t n = strlen(m);
  while (n && (m[n - 1] == '\n' || m[n - 1] == ' ')) n--;
  jr_errf(err, errlen, MLY_EIO, "postgresql store: %s: %.*s", what, (int)n, m);
  if (r) PQclear(r);
  return MLY_EIO;
}

/* Runs sql; its rows in binary (resultFormat 1) when bin. */
static PGresult *q(PGconn *c, const char *sql, int n, const char *const *v,
                   bool bin) {
  return PQexecParams(c, sql, n, NULL, v, NULL, NULL, bin ? 1 : 0);
}

static bool ok(PGresult *r) {
  ExecStatusType t = PQresultStatus(r);
  return t == PGRES_TUPLES_OK || t == PGRES_COMMAND_OK;
}

/* The private blocking connection, with the store's session settings
 * (lock_timeout, statement_timeout: a claim never waits forever either). */
static PGconn *blocking_connect(pg_store *st) {
  PGconn *c = mly_pg_connect_blocking(st->conninfo);
  if (c && PQstatus(c) == CONNECTION_OK) PQclear(PQexec(c, st->session));
  return c;
}

static int64_t be64(const char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | (unsigned char)p[i];
  return (int64_t)v;
}

static int register_node(pg_store *st, PGconn *c, char *err, size_t errlen) {
  char host[256] = "?", pid[24], lease[24];
  gethostname(host, sizeof host - 1);
  i64s(pid, (int64_t)getpid());
  i64s(lease, st->o.lease_ms);
  PGresult *r = q(c, "SELECT version FROM mealy.schema_version", 0, NULL,
                  false);
  if (!ok(r)) {
    const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    bool none = code && (!strcmp(code, "42P01") || !strcmp(code, "3F000"));
    if (none) { /* no table: is the schema there without it? */
      PQclear(r);
      r = q(c, "SELECT to_regnamespace('mealy') IS NOT NULL", 0, NULL, false);
      bool schema = ok(r) && PQntuples(r) == 1 &&
                    strcmp(PQgetvalue(r, 0, 0), "t") == 0;
      if (ok(r)) PQclear(r);
      else return db_err(err, errlen, "reading the schema's version", c, r);
      return schema ? jr_errf(err, errlen, MLY_EBADMSG,
                              "postgresql store: %s", PG_SCHEMA_NO_VERSION)
                    : jr_errf(err, errlen, MLY_EIO, "postgresql store: no "
                              "mealy schema (run `mealy store init`)");
    }
    return db_err(err, errlen, "reading the schema's version", c, r);
  }
  char why[400];
  int v = 0, rc = pg_schema_version_check(
                 PQntuples(r), PQntuples(r) == 1 && PQgetisnull(r, 0, 0),
                 PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "", &v,
                 why, sizeof why);
  PQclear(r);
  if (rc < 0) return jr_errf(err, errlen, rc, "postgresql store: %s", why);
  if (v != MLY_STORE_PG_VERSION)
    return jr_errf(err, errlen, MLY_EIO,
                   "postgresql store: the database's mealy schema is version "
                   "%d, this mealy's is %d: %s",
                   v, MLY_STORE_PG_VERSION,
                   v < MLY_STORE_PG_VERSION ? "run `mealy store migrate`"
                                            : "use a newer mealy");
  r = q(c, "BEGIN", 0, NULL, false);
  if (!ok(r)) return db_err(err, errlen, "BEGIN", c, r);
  PQclear(r);
  const char *rv[] = {host, pid, lease};
  r = q(c,
        "INSERT INTO mealy.nodes (host, pid, lease_until) VALUES ($1, $2,"
        " clock_timestamp() + $3 * interval '1 millisecond')"
        " RETURNING id, epoch",
        3, rv, false);
  if (!ok(r)) return db_err(err, errlen, "registering this process", c, r);
  st->node = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  st->epoch = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  PQclear(r);
  i64s(st->pnode, st->node);
  i64s(st->pepoch, st->epoch);
  /* ranges: one at a time; a dead holder's empty ranges are free again */
  r = q(c, "LOCK TABLE mealy.ranges IN SHARE ROW EXCLUSIVE MODE", 0, NULL,
        false);
  if (!ok(r)) return db_err(err, errlen, "locking the slot ranges", c, r);
  PQclear(r);
  r = q(c,
        "DELETE FROM mealy.ranges r USING mealy.nodes n WHERE n.id = r.node"
        " AND (n.taken_by IS NOT NULL OR n.lease_until < clock_timestamp())"
        " AND NOT EXISTS (SELECT 1 FROM mealy.instances i"
        "  WHERE ((i.id & 4294967295) >> 18) = r.range_no)",
        0, NULL, false);
  if (!ok(r)) return db_err(err, errlen, "freeing slot ranges", c, r);
  PQclear(r);
  const char *mv[] = {st->pnode};
  r = q(c,
        "INSERT INTO mealy.ranges (range_no, node) SELECT g, $1"
        " FROM generate_series(0, 63) g WHERE g NOT IN"
        " (SELECT range_no FROM mealy.ranges) ORDER BY g LIMIT 1"
        " RETURNING range_no",
        1, mv, false);
  if (!ok(r)) return db_err(err, errlen, "taking a slot range", c, r);
  if (PQntuples(r) == 0) {
    PQclear(r);
    return jr_errf(err, errlen, MLY_ENOSPC,
                   "postgresql store: all 64 slot ranges are held by "
                   "processes or by the instances of dead ones: stop one");
  }
  st->range = (uint32_t)atoi(PQgetvalue(r, 0, 0));
  PQclear(r);
  r = q(c, "COMMIT", 0, NULL, false);
  if (!ok(r)) return db_err(err, errlen, "COMMIT", c, r);
  PQclear(r);
  return 0;
}

/* Takes over every node whose lease ran out (and nobody took): their
 * instances, at this node's epoch, and their slot ranges. */
static const char SQL_CLAIM[] =
    "WITH dead AS (SELECT id FROM mealy.nodes WHERE taken_by IS NULL"
    "  AND lease_until < clock_timestamp() AND id <> $1"
    "  FOR UPDATE SKIP LOCKED),"
    " t AS (UPDATE mealy.nodes n SET taken_by = $1 FROM dead"
    "  WHERE n.id = dead.id RETURNING n.id),"
    " r AS (UPDATE mealy.ranges SET node = $1"
    "  WHERE node IN (SELECT id FROM t)),"
    " i AS (UPDATE mealy.instances SET owner = $1, epoch = $2"
    "  WHERE owner IN (SELECT id FROM t) RETURNING id)"
    " SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM i)";

/* The claim brought slot ranges (a dead node's, or a stopped one's with
 * instances still in them, as a process restarted after a clean stop):
 * the lowest becomes the range this node makes instances in, and the
 * one it took at registration (empty: it made nothing yet) is free again.
 * So a process restarted over and over holds one range, not one more
 * per run.  And rows of nodes gone for an hour that hold nothing are
 * deleted (a process that wakes after that cannot come back: its store
 * fails, saying so). */
static int reuse_range(pg_store *st, PGconn *c, char *err, size_t errlen) {
  char range[24];
  i64s(range, st->range);
  const char *v[] = {st->pnode, range};
  PGresult *r = q(c,
                  "WITH n AS (SELECT min(range_no) AS r FROM mealy.ranges"
                  "  WHERE node = $1 AND range_no <> $2),"
                  " d AS (DELETE FROM mealy.ranges WHERE range_no = $2"
                  "  AND node = $1 AND (SELECT r FROM n) IS NOT NULL)"
                  " SELECT r FROM n WHERE r IS NOT NULL",
                  2, v, false);
  if (!ok(r)) return db_err(err, errlen, "choosing a slot range", c, r);
  if (PQntuples(r) == 1) {
    set_range(st, (uint32_t)atoi(PQgetvalue(r, 0, 0)));
  }
  PQclear(r);
  r = q(c,
        "DELETE FROM mealy.nodes n"
        " WHERE n.lease_until < clock_timestamp() - interval '1 hour'"
        " AND NOT EXISTS (SELECT 1 FROM mealy.ranges g WHERE g.node = n.id)"
        " AND NOT EXISTS (SELECT 1 FROM mealy.instances i"
        "  WHERE i.owner = n.id)",
        0, NULL, false);
  if (!ok(r)) return db_err(err, errlen, "deleting rows of gone nodes", c, r);
  PQclear(r);
  return 0;
}

static int hand_out(walk *w, int (*cb)(const jrec *, void *), void *arg) {
  if (w->b.oom) return MLY_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < w->n && rc == 0; i++) {
    size_t end = i + 1 < w->n ? w->at[i + 1] : w->b.n;
    jrec rec = {.seq = i + 1, .kind = w->kind[i], .body = w->b.p + w->at[i],
                .len = (uint32_t)(end - w->at[i]), .file = "postgresql",
                .offset = 0};
    rc = cb(&rec, arg);
  }
  return rc;
}

static int snapshot(pg_store *st, PGconn *c, walk *w, char *err,
                    size_t errlen) {
  const char *mv[] = {st->pnode};
  PGresult *ri = q(c,
                   "SELECT id, step, parent, state, context, name"
                   " FROM mealy.instances WHERE owner = $1 ORDER BY id",
                   1, mv, true);
  if (!ok(ri)) return db_err(err, errlen, "reading instances", c, ri);
  PGresult *re = q(c,
                   "SELECT e.body, e.eid, e.target FROM mealy.events e"
                   " JOIN mealy.instances i"
                   " ON i.id = e.target WHERE i.owner = $1 ORDER BY e.seq",
                   1, mv, true);
  if (!ok(re)) {
    PQclear(ri);
    return db_err(err, errlen, "reading events", c, re);
  }
  PGresult *rt = q(c, "SELECT name, id, status, ended_ms FROM mealy.tombstones",
                   0, NULL, true);
  if (!ok(rt)) {
    PQclear(ri);
    PQclear(re);
    return db_err(err, errlen, "reading tombstones", c, rt);
  }
  int rc = 0, ni = PQntuples(ri), ne = PQntuples(re), nt = PQntuples(rt);
  uint64_t base = (uint64_t)st->node << 40; /* this node's eids and corrs */
  head(w, JR_SNAP, 2);
  jb_uint(&w->b, base);
  jb_uint(&w->b, base);
  for (int i = 0; i < ni && rc == 0; i++) {
    int64_t id, step, parent;
    if (!pg_col_i64(ri, i, 0, &id) || !pg_col_i64(ri, i, 1, &step) ||
        !pg_col_i64(ri, i, 2, &parent)) {
      rc = jr_errf(err, errlen, MLY_EBADMSG, "postgresql store: a row of "
                   "mealy.instances whose id, step or parent is not a "
                   "number (`mealy store stat --bad` lists it)");
      break;
    }
    char why[512];
    if ((rc = pg_inst_check((uint64_t)id, PQgetvalue(ri, i, 3),
                            (size_t)PQgetlength(ri, i, 3),
                            PQgetisnull(ri, i, 4) ? NULL : PQgetvalue(ri, i, 4),
                            (size_t)PQgetlength(ri, i, 4),
                            PQgetisnull(ri, i, 5) ? NULL : PQgetvalue(ri, i, 5),
                            (size_t)PQgetlength(ri, i, 5), why,
                            sizeof why)) < 0) {
      jr_errf(err, errlen, rc, "postgresql store: %s", why);
      break;
    }
    rc = own_put(st, (mly_id)id, (uint64_t)step, (mly_id)parent);
    head(w, JR_INST, 1);
    put_inst(&w->b, PQgetvalue(ri, i, 3), (size_t)PQgetlength(ri, i, 3),
             PQgetisnull(ri, i, 4) ? NULL : PQgetvalue(ri, i, 4),
             (size_t)PQgetlength(ri, i, 4),
             PQgetisnull(ri, i, 5) ? NULL : PQgetvalue(ri, i, 5),
             (size_t)PQgetlength(ri, i, 5));
  }
  for (int i = 0; i < ne && rc == 0; i++) {
    int64_t eid, target;
    char why[512];
    if (!pg_col_i64(re, i, 1, &eid) || !pg_col_i64(re, i, 2, &target)) {
      rc = jr_errf(err, errlen, MLY_EBADMSG, "postgresql store: a row of "
                   "mealy.events whose eid or target is not a number");
      break;
    }
    if ((rc = pg_event_check((uint64_t)eid, (uint64_t)target,
                             PQgetvalue(re, i, 0),
                             (size_t)PQgetlength(re, i, 0), why,
                             sizeof why)) < 0) {
      jr_errf(err, errlen, rc, "postgresql store: %s", why);
      break;
    }
    rc = seen_add(st, (uint64_t)eid, (mly_id)target);
    head(w, JR_EVENT, 1);
    jb_raw(&w->b, PQgetvalue(re, i, 0), (size_t)PQgetlength(re, i, 0));
  }
  for (int i = 0; i < nt && rc == 0; i++) {
    char why[512];
    if ((rc = pg_tomb_check(rt, i, why, sizeof why)) < 0) {
      jr_errf(err, errlen, rc, "postgresql store: %s", why);
      break;
    }
    head(w, JR_TOMB, 4);
    jb_str(&w->b, PQgetvalue(rt, i, 0), (size_t)PQgetlength(rt, i, 0));
    jb_uint(&w->b, (uint64_t)be64(PQgetvalue(rt, i, 1)));
    jb_int(&w->b, be64(PQgetvalue(rt, i, 2)));
    jb_int(&w->b, be64(PQgetvalue(rt, i, 3)));
  }
  if (rc == 0) {
    head(w, JR_SNAPEND, 3);
    jb_uint(&w->b, (uint64_t)ni);
    jb_uint(&w->b, (uint64_t)ne);
    jb_uint(&w->b, (uint64_t)nt);
  }
  st->stats.recovered = (uint64_t)ni;
  PQclear(ri);
  PQclear(re);
  PQclear(rt);
  return rc;
}

/* The names other processes hold now, learned before anything is
 * spawned here (the feed then keeps them current): a host that opens
 * while another holds a name it is about to spawn answers MLY_EEXIST at
 * once.  Those of the instances this node owns come back with them. */
static int names_at_open(pg_store *st, PGconn *c, char *err, size_t errlen) {
  if (!st->base.hooks.name_seen) return 0;
  const char *mv[] = {st->pnode};
  PGresult *r = q(c,
                  "SELECT n.name, n.id FROM mealy.names n"
                  " WHERE n.ended_ms IS NULL AND NOT EXISTS (SELECT 1"
                  " FROM mealy.instances i WHERE i.id = n.id"
                  " AND i.owner = $1)",
                  1, mv, false);
  if (!ok(r)) return db_err(err, errlen, "reading the names held", c, r);
  for (int i = 0; i < PQntuples(r); i++)
    st->base.hooks.name_seen(st->base.hooks.arg, PQgetvalue(r, i, 0),
                             (size_t)PQgetlength(r, i, 0),
                             (mly_id)strtoull(PQgetvalue(r, i, 1), NULL, 10),
                             true, 0, 0);
  PQclear(r);
  return 0;
}

static int op_recover(mly_store *s, int (*cb)(const jrec *, void *),
                      void *arg, char *err, size_t errlen) {
  pg_store *st = ST(s);
  PGconn *c = blocking_connect(st);
  if (PQstatus(c) != CONNECTION_OK) {
    int rc = db_err(err, errlen, "cannot connect", c, NULL);
    PQfinish(c);
    return rc;
  }
  const char *cv[] = {st->pnode, st->pepoch};
  int rc = 0;
  PGresult *r = q(c, "BEGIN", 0, NULL, false);
  PQclear(r);
  r = q(c, SQL_CLAIM, 2, cv, false);
  if (!ok(r)) {
    rc = db_err(err, errlen, "claiming the instances of dead processes", c, r);
    goto out;
  }
  PQclear(r);
  rc = reuse_range(st, c, err, errlen);
  if (rc == 0) rc = snapshot(st, c, &st->rec, err, errlen);
  st->seq = st->rec.seq;
  if (rc == 0) rc = names_at_open(st, c, err, errlen);
  if (rc == 0) {
    r = q(c, "COMMIT", 0, NULL, false);
    if (!ok(r)) rc = db_err(err, errlen, "COMMIT", c, r);
    else PQclear(r);
  }
out:
  PQfinish(c);
  if (rc == 0) rc = hand_out(&st->rec, cb, arg);
  if (rc < 0) pg_mask_password(st->conninfo, err, errlen);
  return rc;
}

static void op_recover_end(mly_store *s) { walk_free(&ST(s)->rec); }

static const store_ops pg_ops = {
    .name = "postgresql",
    .recover = op_recover,
    .buf = op_buf,
    .next_seq = op_next_seq,
    .seq_back = op_seq_back,
    .on_commit = op_on_commit,
    .flush = op_flush,
    .failed = op_failed,
    .idle = op_idle,
    .compact = op_compact,
    .stats = op_stats,
    .close = op_close,
    .recover_end = op_recover_end,
    .figures = NULL,
    .cut = op_cut,
    .tasks = &pg_tasks_ops,
};

/* Without the task pool (pg_store_options.local_tasks). */
static const store_ops pg_ops_local = {
    .name = "postgresql",
    .recover = op_recover,
    .buf = op_buf,
    .next_seq = op_next_seq,
    .seq_back = op_seq_back,
    .on_commit = op_on_commit,
    .flush = op_flush,
    .failed = op_failed,
    .idle = op_idle,
    .compact = op_compact,
    .stats = op_stats,
    .close = op_close,
    .recover_end = op_recover_end,
    .figures = NULL,
    .cut = op_cut,
};

int pg_store_open(uv_loop_t *loop, const pg_store_options *o,
                  mly_store **out, char *err, size_t errlen) {
  pg_store *st = calloc(1, sizeof *st);
  if (!st || !(st->conninfo = strdup(o->conninfo))) {
    free(st);
    return jr_errf(err, errlen, MLY_ENOMEM, "out of memory");
  }
  st->base.ops = o->local_tasks ? &pg_ops_local : &pg_ops;
  st->base.loop = loop;
  st->o = *o;
  st->o.conninfo = st->conninfo;
  if (!st->o.lease_ms) st->o.lease_ms = 10000;
  if (!st->o.poll_ms) st->o.poll_ms = 1000;
  if (!st->o.give_up_ms)
    st->o.give_up_ms = st->o.lease_ms > 10000 ? 6 * st->o.lease_ms : 60000;
  if (!st->o.lock_timeout_ms) st->o.lock_timeout_ms = 5000;
  snprintf(st->session, sizeof st->session,
           "SELECT set_config('lock_timeout', '%" PRIu32 "', false),"
           " set_config('statement_timeout', '%" PRIu32 "', false)",
           st->o.lock_timeout_ms, st->o.statement_timeout_ms);
  PGconn *c = blocking_connect(st);
  int rc = PQstatus(c) == CONNECTION_OK ? register_node(st, c, err, errlen)
                                        : db_err(err, errlen, "cannot connect",
                                                 c, NULL);
  PQfinish(c);
  if (rc == 0) rc = mly_pg_open(loop, st->conninfo, true, &st->pg);
  if (rc == 0) rc = mly_pg_set_session(st->pg, st->session);
  if (rc == 0) mly_pg_set_weak(st->pg, true);
  snprintf(st->channel, sizeof st->channel, "mealy_node_%" PRId64, st->node);
  if (rc == 0) rc = mly_pg_listen(st->pg, st->channel);
  if (rc == 0 && !o->local_tasks) rc = mly_pg_listen(st->pg, PG_TASKS_CHANNEL);
  if (rc == 0 && !o->local_tasks)
    rc = pg_tasks_new(&st->base, st->pg, st->pnode, st->pepoch, &st->tasks);
  if (rc == 0) mly_pg_on_notify(st->pg, on_notify, st);
  if (rc == 0) mly_pg_on_connect(st->pg, on_connect, st);
  /* a connection the server stopped answering is lost (then made again):
   * longer than any wait the server itself bounds, and than the lease */
  uint64_t stall = st->o.lease_ms > st->o.lock_timeout_ms ? st->o.lease_ms
                                                          : st->o.lock_timeout_ms;
  if (st->o.statement_timeout_ms > stall) stall = st->o.statement_timeout_ms;
  if (rc == 0) mly_pg_set_stall(st->pg, stall + 5000);
  if (rc < 0) {
    pg_mask_password(st->conninfo, err, errlen);
    if (st->pg) mly_pg_close(st->pg);
    pg_tasks_free(st->tasks);
    free(st->conninfo);
    free(st);
    return rc;
  }
  uv_timer_init(loop, &st->later);
  st->later.data = st;
  uv_timer_init(loop, &st->renew);
  st->renew.data = st;
  uv_unref((uv_handle_t *)&st->renew);
  uv_timer_init(loop, &st->giveup);
  st->giveup.data = st;
  uv_unref((uv_handle_t *)&st->giveup);
  uint32_t tick = st->o.give_up_ms / 8 ? st->o.give_up_ms / 8 : 1;
  uv_timer_start(&st->giveup, on_giveup_tick, tick, tick);
  uv_timer_init(loop, &st->poll);
  st->poll.data = st;
  uv_unref((uv_handle_t *)&st->poll);
  uv_timer_start(&st->poll, on_poll, st->o.poll_ms, st->o.poll_ms);
  uv_update_time(loop);
  st->renewed_at = uv_now(loop); /* a moment after registration */
  uv_timer_start(&st->renew, on_renew, st->o.lease_ms / 3,
                 st->o.lease_ms / 3 ? st->o.lease_ms / 3 : 1);
  set_range(st, st->range);
  *out = &st->base;
  return 0;
}

uint32_t pg_store_slot_base(const mly_store *s) {
  return ((const pg_store *)s)->range << PG_RANGE_BITS;
}
int64_t pg_store_node(const mly_store *s) { return ((const pg_store *)s)->node; }
int64_t pg_store_epoch(const mly_store *s) {
  return ((const pg_store *)s)->epoch;
}
const pg_store_fencing *pg_store_fencing_get(const mly_store *s) {
  return &((const pg_store *)s)->fencing;
}

bool pg_store_is(const mly_store *s) { return s->ops == &pg_ops; }
bool pg_store_connected(const mly_store *s) {
  const pg_store *st = (const pg_store *)s;
  return st->pg && mly_pg_connected(st->pg);
}

void pg_store_net_get(const mly_store *s, pg_store_net *out) {
  const pg_store *st = (const pg_store *)s;
  out->serial = st->bserial;
  out->inflight = 0;
  for (const batch *b = st->head; b; b = b->next) out->inflight++;
  out->resync = st->resync;
}

/* ---- what pg_tasks.c calls (pg_tasks.h) ---- */

pg_tasks *pg_store_tasks(mly_store *s) { return ST(s)->tasks; }

int pg_store_hand_up(mly_store *s, const PGresult *res, bool pool,
                     void (*each)(void *, mly_id), void *arg) {
  return adopt_rows(ST(s), (PGresult *)res, NULL, 0, "claimed", pool, each,
                    arg);
}

void pg_store_disown(mly_store *s, const mly_id *ids, size_t n) {
  for (size_t i = 0; i < n; i++) own_del(ST(s), ids[i]);
}

bool pg_store_live(const mly_store *s) {
  const pg_store *st = (const pg_store *)s;
  return !st->closing && !st->failed && !st->lost;
}

void pg_store_unsure(mly_store *s) { ST(s)->claim_unsure = true; }

void pg_store_poll_soon(mly_store *s, uint64_t ms) {
  pg_store *st = ST(s);
  if (st->closing) return;
  uint64_t due = uv_timer_get_due_in(&st->poll);
  if (uv_is_active((uv_handle_t *)&st->poll) && due <= ms) return;
  uv_timer_start(&st->poll, on_poll, ms, st->o.poll_ms);
}
