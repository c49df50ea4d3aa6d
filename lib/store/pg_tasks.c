/*
 * pg_tasks.c - the PostgreSQL store's task pool and global queue limits
 * (store.h's store_tasks; schema v4, pg_schema.c).
 *
 * A task that is due and waits for a slot is not tied to the process
 * that made it.  The task's step that reaches `waiting` puts it in the
 * pool (`put`): in that step's transaction its row loses its owner and
 * gets its queue, priority, eta and key (mealy.instances.pool*), and a
 * notice on "mealy_tasks" (payload: the queue) tells every process; once
 * the transaction committed the instance leaves this process (hooks.
 * pooled), and its slot in this process's range stays lent (not reused)
 * until the instance ended wherever it ran (hooks.unlend, after a look
 * at the table every poll).
 *
 * A process that serves a queue (`serve`: its limits, kept in
 * mealy.queues, the last declaration wins) claims due pooled tasks when
 * it has room: mealy.claim locks the queue's row (grants of one queue
 * are serialized across processes), refills its token bucket, counts the
 * slots held (mealy.slots, every process's), and takes tasks in order
 * (priority, eta, id; FOR UPDATE SKIP LOCKED) while max_concurrent, the
 * tokens and each key's limit allow, inserting a slot row for each and
 * making the task this node's, all in one transaction; the rows and
 * their pending events go up through hooks.adopt, and the task's step
 * sees its grant (`granted`, once).  It claims on a notice, after its
 * own commits, on the poll, and when the claim said when to come back (a
 * token, a task's eta).
 *
 * A slot row goes in the transaction that ends the attempt (`drop`, or
 * the put of a retry), or with its instance's END (a trigger), or when
 * its node is taken over (a trigger: the node died or was fenced; its
 * tasks come back from their last committed step).  Steps of other
 * machines (`ask`, a YAML step's `queue:`) take a slot the same way in
 * a transaction of their own, and drop it with the step's commit.
 *
 * Loop thread only; everything goes on the store's connection, in order.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../hashtab.h"
#include "pg_tasks.h"

#define CLAIM_MAX 128 /* tasks one claim takes at most */
#define LENT_MAX 8192 /* ids one look at lent slots names at most */

typedef struct pq { /* a queue this process serves */
  char name[MLY_NAME_MAX + 1];
  uint32_t maxc, bucket, keymax;
  double rate;
  bool claim, want;
  bool stored, storing; /* its declaration is in mealy.queues */
  bool dirty;           /* limits changed while one was on its way */
  uint32_t held; /* tasks claimed here whose slot was not dropped yet */
  struct pg_tasks *t;
  UT_hash_handle hh;
} pq;

typedef struct hold { /* a slot this process holds */
  mly_id id;
  pq *q;         /* a task's (NULL: a step's) */
  bool fresh;    /* claimed, the task's step has not seen it yet */
  UT_hash_handle hh;
} hold;

typedef struct askr { /* a step's slot asked for */
  mly_id id;
  char queue[MLY_NAME_MAX + 1];
  char *key;
  bool inflight;
  bool dropped; /* its step ended while the ask was in flight */
  struct pg_tasks *t;
  UT_hash_handle hh;
} askr;

typedef struct lent {
  mly_id id;
  UT_hash_handle hh;
} lent;

typedef struct idv {
  mly_id *v;
  size_t n, cap;
} idv;

typedef struct pbatch { /* instances a batch puts in the pool */
  struct pbatch *next;
  uint64_t serial;
  idv ids;
} pbatch;

typedef struct tbuf { /* an SQL array literal */
  char *p;
  size_t n, cap;
  bool oom;
} tbuf;

typedef struct claimed {
  struct pg_tasks *t;
  pq *q;
} claimed;

struct pg_tasks {
  mly_store *s;
  mly_pg *pg;
  const char *pnode, *pepoch; /* the store's: its epoch changes when it
                                 rejoins after a lost lease */
  pq *queues;
  hold *holds;
  askr *asks;
  lent *lent;
  /* this turn's */
  tbuf p_id, p_q, p_prio, p_eta, p_key, d_id;
  idv p_ids;
  size_t ndrops;
  pbatch *phead, *ptail;
  bool claiming, looking;
  claimed cl; /* the claim in flight */
};

static int idv_push(idv *v, mly_id id) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? 2 * v->cap : 16;
    mly_id *p = realloc(v->v, cap * sizeof *p);
    if (!p) return MLY_ENOMEM;
    v->v = p;
    v->cap = cap;
  }
  v->v[v->n++] = id;
  return 0;
}

static void tb_raw(tbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->cap - b->n < n + 2) {
    size_t cap = b->cap ? b->cap : 256;
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

static void tb_sep(tbuf *b) { tb_raw(b, b->n ? "," : "{", 1); }

static void tb_i64(tbuf *b, int64_t v) {
  char t[24];
  tb_sep(b);
  tb_raw(b, t, (size_t)snprintf(t, sizeof t, "%" PRId64, v));
}

/* A text element, quoted ("a\"b"); NULL: NULL. */
static void tb_str(tbuf *b, const char *s) {
  tb_sep(b);
  if (!s) {
    tb_raw(b, "NULL", 4);
    return;
  }
  tb_raw(b, "\"", 1);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') tb_raw(b, "\\", 1);
    tb_raw(b, s, 1);
  }
  tb_raw(b, "\"", 1);
}

/* The literal, ended (NUL included); empty again after.  NULL: no memory. */
static const char *tb_end(tbuf *b) {
  if (b->n == 0) tb_raw(b, "{", 1);
  tb_raw(b, "}", 2);
  b->n = 0;
  return b->oom ? NULL : b->p;
}

static void claim_next(pg_tasks *t);

static pq *pq_find(pg_tasks *t, const char *name) {
  pq *q = NULL;
  HASH_FIND_STR(t->queues, name, q);
  return q;
}

static hold *hold_find(pg_tasks *t, mly_id id) {
  hold *h = NULL;
  HASH_FIND(hh, t->holds, &id, sizeof id, h);
  return h;
}

static void hold_del(pg_tasks *t, hold *h) {
  if (h->q && h->q->held) {
    h->q->held--;
    h->q->want = true;
  }
  HASH_DEL(t->holds, h);
  free(h);
}

static int hold_add(pg_tasks *t, mly_id id, pq *q) {
  hold *h = hold_find(t, id);
  if (h) return 0;
  if (!(h = calloc(1, sizeof *h))) return MLY_ENOMEM;
  h->id = id;
  h->q = q;
  h->fresh = q != NULL;
  bool hash_oom = false;
  HASH_ADD(hh, t->holds, id, sizeof h->id, h);
  if (hash_oom) {
    free(h);
    return MLY_ENOMEM;
  }
  if (q) q->held++;
  return 0;
}

static void lent_del(pg_tasks *t, mly_id id) {
  lent *l = NULL;
  HASH_FIND(hh, t->lent, &id, sizeof id, l);
  if (l) {
    HASH_DEL(t->lent, l);
    free(l);
  }
}

static void lent_add(pg_tasks *t, mly_id id) {
  uint32_t slot = (uint32_t)id;
  if (slot < t->s->slot_lo || slot >= t->s->slot_hi) return; /* not ours */
  lent *l = calloc(1, sizeof *l);
  if (!l) return; /* the slot stays lent for good: not reused */
  l->id = id;
  bool hash_oom = false;
  HASH_ADD(hh, t->lent, id, sizeof l->id, l);
  if (hash_oom) free(l);
}

static const char *node(pg_tasks *t) { return t->pnode; }

/* ---- store_tasks ---- */

static int op_put(mly_store *s, mly_id id, const char *queue,
                  int32_t priority, int64_t eta_ms, const char *key) {
  pg_tasks *t = pg_store_tasks(s);
  hold *h = hold_find(t, id);
  if (h) hold_del(t, h); /* the put drops its slot too */
  tb_i64(&t->p_id, (int64_t)id);
  tb_str(&t->p_q, queue);
  tb_i64(&t->p_prio, priority);
  tb_i64(&t->p_eta, eta_ms);
  tb_str(&t->p_key, key);
  return idv_push(&t->p_ids, id);
}

static int op_drop(mly_store *s, mly_id id) {
  pg_tasks *t = pg_store_tasks(s);
  hold *h = hold_find(t, id);
  if (h) hold_del(t, h);
  askr *a = NULL;
  HASH_FIND(hh, t->asks, &id, sizeof id, a);
  if (a && a->inflight) a->dropped = true; /* on_taken lets it go */
  else if (a) { /* asked, not granted: asked no more */
    HASH_DEL(t->asks, a);
    free(a->key);
    free(a);
  }
  tb_i64(&t->d_id, (int64_t)id);
  t->ndrops++;
  return t->d_id.oom ? MLY_ENOMEM : 0;
}

static bool op_granted(mly_store *s, mly_id id) {
  hold *h = hold_find(pg_store_tasks(s), id);
  if (!h || !h->fresh) return false;
  h->fresh = false;
  return true;
}

static int serve_send(pg_tasks *t, pq *q);

static void on_served(mly_pg *pg, const PGresult *res, const char *err,
                      void *arg) {
  pq *q = arg;
  q->storing = false;
  q->stored = res != NULL && !q->dirty;
  if (q->dirty && pg_store_live(q->t->s)) {
    serve_send(q->t, q);
    return;
  }
  if (err && mly_pg_connected(pg) && pg_store_live(q->t->s))
    fprintf(stderr, "mealy: postgresql store: queue %s: its declaration was "
            "not stored (again at the next poll): %s\n", q->name, err);
  if (res) claim_next(q->t);
}

static const char SQL_SERVE[] = "SELECT mealy.serve($1, $2, $3, $4, $5)";

/* Its limits into mealy.queues (claims wait for them: in order on the
 * connection). */
static int serve_send(pg_tasks *t, pq *q) {
  if (q->storing) return 0; /* dirty: on_served sends again */
  q->dirty = false;
  char v1[24], v2[32], v3[24], v4[24];
  snprintf(v1, sizeof v1, "%" PRIu32, q->maxc);
  snprintf(v2, sizeof v2, "%.17g", q->rate);
  snprintf(v3, sizeof v3, "%" PRIu32, q->bucket);
  snprintf(v4, sizeof v4, "%" PRIu32, q->keymax);
  const char *v[] = {q->name, v1, v2, v3, v4};
  int r = mly_pg_query(t->pg, SQL_SERVE, 5, v, on_served, q);
  if (r == 0) q->storing = true;
  return r;
}

static int op_serve(mly_store *s, const char *queue, uint32_t max_concurrent,
                    double rate, uint32_t bucket, uint32_t key_max,
                    bool claim) {
  pg_tasks *t = pg_store_tasks(s);
  pq *q = pq_find(t, queue);
  if (!q) {
    if (!(q = calloc(1, sizeof *q))) return MLY_ENOMEM;
    snprintf(q->name, sizeof q->name, "%s", queue);
    q->t = t;
    bool hash_oom = false;
    HASH_ADD_STR(t->queues, name, q);
    if (hash_oom) {
      free(q);
      return MLY_ENOMEM;
    }
  }
  bool same = q->maxc == max_concurrent && q->rate == rate &&
              q->bucket == bucket && q->keymax == key_max;
  q->claim = claim;
  q->want = true;
  if (!same || !q->stored) {
    q->maxc = max_concurrent;
    q->rate = rate;
    q->bucket = bucket;
    q->keymax = key_max;
    q->stored = false;
    q->dirty = q->storing;
    int r = serve_send(t, q);
    if (r < 0) return r;
  }
  pg_tasks_kick(t);
  return 0;
}

/* Slots given back (an attempt, a step is over): the processes waiting
 * for the queue are told at COMMIT. */
static const char SQL_DROP[] =
    "WITH d AS (DELETE FROM mealy.slots WHERE instance = ANY ($1::bigint[])"
    " RETURNING queue) SELECT pg_notify('" PG_TASKS_CHANNEL "', q)"
    " FROM (SELECT DISTINCT queue AS q FROM d) x";

static const char SQL_TAKE[] = "SELECT mealy.take_slot($1, $2, $3, $4, $5)";

static void on_taken(mly_pg *pg, const PGresult *res, const char *err,
                     void *arg) {
  (void)pg;
  (void)err; /* asked again at the next notice or poll */
  askr *a = arg;
  pg_tasks *t = a->t;
  a->inflight = false;
  if (!res || PQntuples((PGresult *)res) != 1 ||
      PQgetvalue((PGresult *)res, 0, 0)[0] != 't')
    return;
  mly_id id = a->id;
  bool dropped = a->dropped;
  HASH_DEL(t->asks, a);
  free(a->key);
  free(a);
  if (dropped) { /* granted after its step ended: given back at once */
    char ids[32];
    snprintf(ids, sizeof ids, "{%" PRIu64 "}", (uint64_t)id);
    const char *v[] = {ids};
    mly_pg_query(t->pg, SQL_DROP, 1, v, NULL, NULL);
    return;
  }
  if (hold_add(t, id, NULL) < 0) return; /* asked again: it holds it */
  if (t->s->hooks.wake) t->s->hooks.wake(t->s->hooks.arg, id);
}

static void ask_send(pg_tasks *t, askr *a) {
  if (a->inflight || !pg_store_live(t->s)) return;
  char id[24];
  snprintf(id, sizeof id, "%" PRIu64, (uint64_t)a->id);
  const char *v[] = {node(t), t->pepoch, a->queue, a->key, id};
  if (mly_pg_query(t->pg, SQL_TAKE, 5, v, on_taken, a) == 0)
    a->inflight = true;
}

static int op_ask(mly_store *s, const char *queue, const char *key,
                  mly_id id) {
  pg_tasks *t = pg_store_tasks(s);
  if (hold_find(t, id)) return 1;
  askr *a = NULL;
  HASH_FIND(hh, t->asks, &id, sizeof id, a);
  if (a && strcmp(a->queue, queue) != 0 && !a->inflight) {
    HASH_DEL(t->asks, a); /* another queue now */
    free(a->key);
    free(a);
    a = NULL;
  }
  if (a) return 0;
  if (!(a = calloc(1, sizeof *a))) return MLY_ENOMEM;
  a->id = id;
  a->t = t;
  snprintf(a->queue, sizeof a->queue, "%s", queue);
  if (key && !(a->key = strdup(key))) {
    free(a);
    return MLY_ENOMEM;
  }
  bool hash_oom = false;
  HASH_ADD(hh, t->asks, id, sizeof a->id, a);
  if (hash_oom) {
    free(a->key);
    free(a);
    return MLY_ENOMEM;
  }
  ask_send(t, a);
  return 0;
}

/* ---- the batch: puts and drops of the turn's steps ---- */

/* Rows of this node become pool rows (their slots go); every process
 * serving their queues is told at COMMIT. */
static const char SQL_PUT[] =
    "WITH p AS (UPDATE mealy.instances i SET owner = NULL, pool = u.q,"
    " pool_prio = u.p, pool_eta = u.e, pool_key = u.k"
    " FROM unnest($3::bigint[], $4::text[], $5::integer[], $6::bigint[],"
    " $7::text[]) AS u(id, q, p, e, k)"
    " WHERE i.id = u.id AND i.owner = $1 AND i.epoch = $2"
    " RETURNING i.id, u.q),"
    " d AS (DELETE FROM mealy.slots s WHERE s.instance IN (SELECT id FROM p))"
    " SELECT pg_notify('" PG_TASKS_CHANNEL "', x.q)"
    " FROM (SELECT DISTINCT q FROM p) x";

int pg_tasks_flush(pg_tasks *t, uint64_t serial, pg_emit_fn emit,
                   void *ctx) {
  int r = 0;
  if (t->p_ids.n) {
    const char *v[] = {node(t), t->pepoch, tb_end(&t->p_id), tb_end(&t->p_q),
                       tb_end(&t->p_prio), tb_end(&t->p_eta),
                       tb_end(&t->p_key)};
    for (int i = 2; i < 7; i++)
      if (!v[i]) r = MLY_ENOMEM;
    if (r == 0) r = emit(ctx, SQL_PUT, 7, v);
    pbatch *pb = r == 0 ? calloc(1, sizeof *pb) : NULL;
    if (r == 0 && !pb) r = MLY_ENOMEM;
    if (pb) {
      pb->serial = serial;
      pb->ids = t->p_ids;
      t->p_ids = (idv){0};
      if (t->ptail) t->ptail->next = pb;
      else t->phead = pb;
      t->ptail = pb;
    }
  }
  if (r == 0 && t->ndrops) {
    const char *v[] = {tb_end(&t->d_id)};
    r = v[0] ? emit(ctx, SQL_DROP, 1, v) : MLY_ENOMEM;
  }
  tbuf *all[] = {&t->p_id, &t->p_q, &t->p_prio, &t->p_eta, &t->p_key,
                 &t->d_id};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
    all[i]->n = 0;
    all[i]->oom = false;
  }
  t->p_ids.n = 0;
  t->ndrops = 0;
  return r;
}

void pg_tasks_batch_done(pg_tasks *t, uint64_t serial, bool ok) {
  while (t->phead && t->phead->serial <= serial) {
    pbatch *pb = t->phead;
    t->phead = pb->next;
    if (!t->phead) t->ptail = NULL;
    if (ok && pb->serial == serial && pb->ids.n) {
      pg_store_disown(t->s, pb->ids.v, pb->ids.n);
      for (size_t i = 0; i < pb->ids.n; i++) lent_add(t, pb->ids.v[i]);
      if (t->s->hooks.pooled)
        t->s->hooks.pooled(t->s->hooks.arg, pb->ids.v, pb->ids.n);
    }
    free(pb->ids.v);
    free(pb);
  }
}

/* ---- claiming ---- */

static const char SQL_CLAIM[] =
    "WITH g AS MATERIALIZED (SELECT * FROM mealy.claim($1, $2, $3, $4)),"
    " i AS (SELECT x.id, x.step, x.parent, x.state, x.context, x.name"
    "  FROM mealy.instances x WHERE x.id IN (SELECT g.id FROM g))"
    " SELECT 0 AS k, id, step, parent, state, context, name, 0::bigint AS seq"
    "  FROM i"
    " UNION ALL SELECT 1, e.target, e.eid, 0, e.body, NULL, NULL, e.seq"
    "  FROM mealy.events e WHERE e.target IN (SELECT id FROM i)"
    " UNION ALL SELECT 2, g.wait_ms, 0, 0, NULL, NULL, NULL, 0"
    "  FROM g WHERE g.id IS NULL"
    " ORDER BY 1, 8, 2";


static void each_claimed(void *arg, mly_id id) {
  claimed *c = arg;
  lent_del(c->t, id);
  hold_add(c->t, id, c->q); /* no memory: the task puts itself back */
}

static void on_claim(mly_pg *pg, const PGresult *cres, const char *err,
                     void *arg) {
  pg_tasks *t = arg;
  PGresult *res = (PGresult *)cres;
  pq *q = t->cl.q;
  t->claiming = false;
  if (!res) {
    /* lost with the connection: it may have committed; the tasks it
     * took are this node's, found by the next look at what it owns */
    if (err && !mly_pg_connected(pg)) pg_store_unsure(t->s);
    q->want = true; /* the next poll tries again */
    return;
  }
  if (!pg_store_live(t->s)) return;
  int n = PQntuples(res);
  int64_t wait = -1;
  for (int i = n; i-- > 0;) {
    const char *k = PQgetvalue(res, i, 0);
    if (k[0] != '2') break;
    if (!PQgetisnull(res, i, 1)) wait = strtoll(PQgetvalue(res, i, 1), NULL, 10);
  }
  int rc = pg_store_hand_up(t->s, res, true, each_claimed, &t->cl);
  if (rc < 0) return; /* the store failed (hand_up said why) */
  if (wait == 0) q->want = true; /* more are there */
  else if (wait > 0) pg_store_poll_soon(t->s, (uint64_t)wait);
  claim_next(t);
}

static void claim_next(pg_tasks *t) {
  if (t->claiming || !pg_store_live(t->s)) return;
  for (pq *q = t->queues; q; q = q->hh.next) {
    if (!q->want || !q->claim || !q->stored) continue;
    q->want = false;
    if (q->held >= q->maxc) continue; /* a drop wants it again */
    uint32_t room = q->maxc - q->held;
    if (room > CLAIM_MAX) room = CLAIM_MAX;
    char n[16];
    snprintf(n, sizeof n, "%" PRIu32, room);
    const char *v[] = {node(t), t->pepoch, q->name, n};
    t->cl.q = q;
    if (mly_pg_query(t->pg, SQL_CLAIM, 4, v, on_claim, t) == 0) {
      t->claiming = true;
      return;
    }
    q->want = true;
    return;
  }
}

void pg_tasks_kick(pg_tasks *t) { claim_next(t); }

void pg_tasks_notify(pg_tasks *t, const char *queue) {
  pq *q = pq_find(t, queue);
  if (q) q->want = true;
  for (askr *a = t->asks; a; a = a->hh.next)
    if (strcmp(a->queue, queue) == 0) ask_send(t, a);
  claim_next(t);
}

/* ---- lent slots come back once their instances ended ---- */

static const char SQL_LENT[] =
    "SELECT x FROM unnest($1::bigint[]) x WHERE NOT EXISTS"
    " (SELECT 1 FROM mealy.instances i WHERE i.id = x)";

static void on_looked(mly_pg *pg, const PGresult *cres, const char *err,
                      void *arg) {
  (void)pg;
  (void)err;
  pg_tasks *t = arg;
  PGresult *res = (PGresult *)cres;
  t->looking = false;
  if (!res || !pg_store_live(t->s)) return;
  int n = PQntuples(res);
  idv back = {0};
  for (int i = 0; i < n; i++) {
    mly_id id = (mly_id)strtoull(PQgetvalue(res, i, 0), NULL, 10);
    lent *l = NULL;
    HASH_FIND(hh, t->lent, &id, sizeof id, l);
    if (!l) continue; /* claimed back meanwhile */
    lent_del(t, id);
    if (idv_push(&back, id) < 0) break;
  }
  if (back.n && t->s->hooks.unlend)
    t->s->hooks.unlend(t->s->hooks.arg, back.v, back.n);
  free(back.v);
}

static void look_lent(pg_tasks *t) {
  if (t->looking || !t->lent) return;
  tbuf b = {0};
  size_t k = 0;
  for (lent *l = t->lent; l && k < LENT_MAX; l = l->hh.next, k++)
    tb_i64(&b, (int64_t)l->id);
  const char *v[] = {tb_end(&b)};
  if (v[0] && mly_pg_query(t->pg, SQL_LENT, 1, v, on_looked, t) == 0)
    t->looking = true;
  free(b.p);
}

void pg_tasks_poll(pg_tasks *t) {
  if (!pg_store_live(t->s)) return;
  for (pq *q = t->queues; q; q = q->hh.next) {
    q->want = true;
    if (!q->stored) serve_send(t, q);
  }
  for (askr *a = t->asks; a; a = a->hh.next) ask_send(t, a);
  look_lent(t);
  claim_next(t);
}

int pg_tasks_new(mly_store *s, mly_pg *pg, const char *pnode,
                 const char *pepoch, pg_tasks **out) {
  pg_tasks *t = calloc(1, sizeof *t);
  if (!t) return MLY_ENOMEM;
  t->s = s;
  t->pg = pg;
  t->cl.t = t;
  t->pnode = pnode;
  t->pepoch = pepoch;
  *out = t;
  return 0;
}

void pg_tasks_free(pg_tasks *t) {
  if (!t) return;
  pq *q, *qt;
  HASH_ITER(hh, t->queues, q, qt) {
    HASH_DEL(t->queues, q);
    free(q);
  }
  hold *h, *ht;
  HASH_ITER(hh, t->holds, h, ht) {
    HASH_DEL(t->holds, h);
    free(h);
  }
  askr *a, *at;
  HASH_ITER(hh, t->asks, a, at) { /* the connection failed their queries */
    HASH_DEL(t->asks, a);
    free(a->key);
    free(a);
  }
  lent *l, *lt;
  HASH_ITER(hh, t->lent, l, lt) {
    HASH_DEL(t->lent, l);
    free(l);
  }
  while (t->phead) {
    pbatch *pb = t->phead;
    t->phead = pb->next;
    free(pb->ids.v);
    free(pb);
  }
  tbuf *all[] = {&t->p_id, &t->p_q, &t->p_prio, &t->p_eta, &t->p_key,
                 &t->d_id};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->p);
  free(t->p_ids.v);
  free(t);
}

const store_tasks pg_tasks_ops = {.put = op_put,
                                  .drop = op_drop,
                                  .granted = op_granted,
                                  .serve = op_serve,
                                  .ask = op_ask};
