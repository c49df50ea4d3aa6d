/*
 * pg_conn.c - one PostgreSQL connection on a libuv loop (see pg_conn.h).
 *
 * States: CONNECTING (PQconnectPoll drives the socket), UP (pipeline mode,
 * nonblocking), DOWN (waiting for the backoff timer), DEAD (no retry and
 * the connection failed).  Queries are in one of two lists: sent (in the
 * pipeline, answered in order) or waiting (queued while not UP).  A sent
 * query's answer is its result, then a NULL from PQgetResult, then the
 * PGRES_PIPELINE_SYNC of the sync sent after it: the sync completes it.
 * Memory is freed once every handle's close callback has run.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "mealy.h"
#include "pg_conn.h"

enum { PG_CONNECTING, PG_UP, PG_DOWN, PG_DEAD };

#define PG_CONNECT_TIMEOUT_S 10 /* when conninfo gives no connect_timeout */
#define PG_BACKOFF_MIN_MS 50
#define PG_BACKOFF_MAX_MS 5000
#define PG_CHANNEL_MAX 63

typedef struct pgq {
  struct pgq *next;
  char *sql;
  int n;
  char **vals;
  int *lens, *fmts;       /* mly_pg_query_ref's (copied), or NULL */
  bool borrowed;          /* vals[i] are the caller's */
  mly_pg_result_cb cb;
  void *arg;
  PGresult *res;
  char *err;
  char sqlstate[6]; /* the error's, or "" */
  int phase; /* 0: awaiting the result, 1: awaiting the sync */
} pgq;

typedef struct pgq_list {
  pgq *head, *tail;
} pgq_list;

struct mly_pg {
  uv_loop_t *loop;
  char *conninfo;
  bool retry, closing, weak;
  int state;
  PGconn *conn;
  uv_poll_t *poll;
  int poll_fd;
  uv_timer_t timer;
  int handles; /* open handles; memory goes when it reaches 0 */
  pgq_list sent, waiting;
  char **chans;
  size_t nchans;
  char *session;      /* sent first on every connection, or NULL */
  const char *cur_state; /* the SQLSTATE of the answer being delivered */
  mly_pg_notify_cb ncb;
  void *narg;
  mly_pg_connect_cb ccb;
  void *carg;
  uint64_t backoff_ms;
  uint64_t connect_ms;   /* a connection not made in this long failed */
  uint64_t stall_ms;     /* queries unanswered this long: lost (0: never) */
  uint64_t progress_at;  /* uv_now when the server last answered (or the
                            first query waiting was sent) */
  unsigned connects;
  char lasterr[512];
};

static void start_connect(mly_pg *pg);

/* conninfo with the defaults a server that never answers needs: a
 * connect timeout (libpq has none by default) and TCP keepalives; what
 * conninfo says itself wins (expand_dbname: it comes last). */
static const char *const conn_keys[] = {
    "connect_timeout", "keepalives", "keepalives_idle",
    "keepalives_interval", "keepalives_count", "dbname", NULL};
#define CONN_VALUES(conninfo)                                            \
  {PG_STR(PG_CONNECT_TIMEOUT_S), "1", "10", "5", "3", (conninfo), NULL}
#define PG_STR_(x) #x
#define PG_STR(x) PG_STR_(x)

PGconn *mly_pg_connect_blocking(const char *conninfo) {
  const char *const vals[] = CONN_VALUES(conninfo);
  return PQconnectdbParams(conn_keys, vals, 1);
}

/* The connect_timeout conninfo gives (libpq's rule: at least 2 s), or
 * the default, in ms. */
static uint64_t connect_timeout_ms(const char *conninfo) {
  uint64_t s = PG_CONNECT_TIMEOUT_S;
  PQconninfoOption *o = PQconninfoParse(conninfo, NULL);
  for (PQconninfoOption *x = o; x && x->keyword; x++)
    if (strcmp(x->keyword, "connect_timeout") == 0 && x->val && x->val[0]) {
      long v = strtol(x->val, NULL, 10);
      s = v <= 0 ? 0 : v < 2 ? 2 : (uint64_t)v;
    }
  if (o) PQconninfoFree(o);
  return s * 1000;
}
static void update_ref(mly_pg *pg);
static void on_backoff(uv_timer_t *t) { start_connect(t->data); }

static void push(pgq_list *l, pgq *q) {
  q->next = NULL;
  if (l->tail) l->tail->next = q;
  else l->head = q;
  l->tail = q;
}

static pgq *pop(pgq_list *l) {
  pgq *q = l->head;
  if (q) {
    l->head = q->next;
    if (!l->head) l->tail = NULL;
  }
  return q;
}

static void q_free(pgq *q) {
  if (!q->borrowed)
    for (int i = 0; i < q->n; i++) free(q->vals[i]);
  free(q->vals);
  free(q->lens);
  free(q->fmts);
  free(q->sql);
  free(q->err);
  if (q->res) PQclear(q->res);
  free(q);
}

/* Answers q (once) and frees it. */
static void deliver(mly_pg *pg, pgq *q, const char *err) {
  if (!err && !q->res)
    err = q->err ? q->err : "the server sent no result for the query";
  pg->cur_state = q->sqlstate;
  if (q->cb) q->cb(pg, err ? NULL : q->res, err, q->arg);
  pg->cur_state = "";
  q_free(q);
}

static void fail_all(mly_pg *pg, pgq_list *l, const char *err) {
  pgq *q;
  while ((q = pop(l)) != NULL) deliver(pg, q, err);
}

static void maybe_free(mly_pg *pg) {
  if (pg->closing && pg->handles == 0) {
    for (size_t i = 0; i < pg->nchans; i++) free(pg->chans[i]);
    free(pg->chans);
    free(pg->session);
    free(pg->conninfo);
    free(pg);
  }
}

static void on_poll_closed(uv_handle_t *h) {
  mly_pg *pg = h->data;
  free(h);
  pg->handles--;
  maybe_free(pg);
}

static void on_timer_closed(uv_handle_t *h) {
  mly_pg *pg = h->data;
  pg->handles--;
  maybe_free(pg);
}

static void drop_poll(mly_pg *pg) {
  if (pg->poll) {
    uv_poll_stop(pg->poll);
    uv_close((uv_handle_t *)pg->poll, on_poll_closed);
    pg->poll = NULL;
  }
}

/* Stops watching and closes the connection; sent queries fail with what
 * lasterr says; then a retry is scheduled, or the connection is dead. */
static void went_down(mly_pg *pg) {
  drop_poll(pg);
  if (pg->conn) PQfinish(pg->conn);
  pg->conn = NULL;
  pg->state = PG_DOWN;
  fail_all(pg, &pg->sent, pg->lasterr);
  if (pg->closing) return;
  if (pg->retry) {
    uv_timer_start(&pg->timer, on_backoff, pg->backoff_ms, 0);
    update_ref(pg);
    pg->backoff_ms *= 2;
    if (pg->backoff_ms > PG_BACKOFF_MAX_MS) pg->backoff_ms = PG_BACKOFF_MAX_MS;
  } else {
    pg->state = PG_DEAD;
    fail_all(pg, &pg->waiting, pg->lasterr);
  }
}

static void set_err(mly_pg *pg, const char *what, const char *detail) {
  size_t n = strlen(detail);
  while (n > 0 && (detail[n - 1] == '\n' || detail[n - 1] == ' ')) n--;
  snprintf(pg->lasterr, sizeof pg->lasterr, "%s: %.*s", what, (int)n,
           detail);
  pg_mask_password(pg->conninfo, pg->lasterr, sizeof pg->lasterr);
}

static void on_poll(uv_poll_t *h, int status, int events);

/* A weak connection keeps the loop alive only while a query waits for
 * its answer: idle (even listening, or waiting to reconnect), it lets the
 * loop end.  Otherwise its handles keep the loop alive until closed. */
static void update_ref(mly_pg *pg) {
  bool busy = !pg->weak || pg->sent.head || pg->waiting.head;
  if (pg->poll) {
    if (busy) uv_ref((uv_handle_t *)pg->poll);
    else uv_unref((uv_handle_t *)pg->poll);
  }
  if (busy) uv_ref((uv_handle_t *)&pg->timer);
  else uv_unref((uv_handle_t *)&pg->timer);
}

static int watch(mly_pg *pg, int events) {
  int fd = PQsocket(pg->conn);
  if (fd < 0) return -1;
  if (pg->poll && pg->poll_fd != fd) drop_poll(pg);
  if (!pg->poll) {
    uv_poll_t *p = malloc(sizeof *p);
    if (!p || uv_poll_init(pg->loop, p, fd) != 0) {
      free(p);
      return -1;
    }
    p->data = pg;
    pg->poll = p;
    pg->poll_fd = fd;
    pg->handles++;
  }
  if (uv_poll_start(pg->poll, events, on_poll) != 0) return -1;
  update_ref(pg);
  return 0;
}

static void lost(mly_pg *pg) {
  set_err(pg, "connection to the server was lost",
          pg->conn ? PQerrorMessage(pg->conn) : "");
  went_down(pg);
}

/* Flushes what libpq holds and watches for the answer (and for room to
 * write when the flush was partial). */
static void flush_and_watch(mly_pg *pg) {
  int r = PQflush(pg->conn);
  if (r < 0 || watch(pg, UV_READABLE | (r == 1 ? UV_WRITABLE : 0)) < 0)
    lost(pg);
}

static int send_one(mly_pg *pg, pgq *q) {
  push(&pg->sent, q);
  if (!PQsendQueryParams(pg->conn, q->sql, q->n, NULL,
                         (const char *const *)q->vals, q->lens, q->fmts, 0) ||
      !PQpipelineSync(pg->conn))
    return -1;
  return 0;
}

static pgq *q_new(const char *sql, int n, const char *const *values,
                  mly_pg_result_cb cb, void *arg) {
  pgq *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  q->cb = cb;
  q->arg = arg;
  q->sql = strdup(sql);
  q->vals = calloc(n > 0 ? (size_t)n : 1, sizeof *q->vals);
  if (!q->sql || !q->vals) goto fail;
  for (; q->n < n; q->n++) {
    if (values[q->n] && !(q->vals[q->n] = strdup(values[q->n]))) goto fail;
  }
  return q;
fail:
  q_free(q);
  return NULL;
}

static int listen_q(mly_pg *pg, const char *chan) {
  char sql[PG_CHANNEL_MAX + 16];
  snprintf(sql, sizeof sql, "LISTEN \"%s\"", chan);
  pgq *q = q_new(sql, 0, NULL, NULL, NULL);
  if (!q) return MLY_ENOMEM;
  if (pg->state == PG_UP) {
    if (send_one(pg, q) < 0) return -1;
  } else {
    push(&pg->waiting, q);
  }
  return 0;
}

static void watch_stall(mly_pg *pg);

static void connected(mly_pg *pg) {
  pg->state = PG_UP;
  pg->progress_at = uv_now(pg->loop);
  watch_stall(pg); /* and the connect timeout is over */
  pg->connects++;
  pg->backoff_ms = PG_BACKOFF_MIN_MS;
  pg->lasterr[0] = '\0';
  if (PQsetnonblocking(pg->conn, 1) != 0 || !PQenterPipelineMode(pg->conn)) {
    lost(pg);
    return;
  }
  pgq *sq = pg->session ? q_new(pg->session, 0, NULL, NULL, NULL) : NULL;
  if (pg->session && (!sq || send_one(pg, sq) < 0)) {
    if (!sq) snprintf(pg->lasterr, sizeof pg->lasterr, "out of memory");
    lost(pg);
    return;
  }
  for (size_t i = 0; i < pg->nchans; i++) {
    int r = listen_q(pg, pg->chans[i]);
    if (r < 0) {
      if (r == MLY_ENOMEM) snprintf(pg->lasterr, sizeof pg->lasterr, "out of memory");
      lost(pg);
      return;
    }
  }
  pgq *q;
  while ((q = pop(&pg->waiting)) != NULL) {
    if (send_one(pg, q) < 0) {
      lost(pg);
      return;
    }
  }
  if (pg->ccb) pg->ccb(pg, pg->carg); /* its queries go out below */
  if (pg->state == PG_UP && !pg->closing) flush_and_watch(pg);
}

static void connect_failed(mly_pg *pg) {
  set_err(pg, "cannot connect to the server",
          pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
  went_down(pg);
}

static void connect_step(mly_pg *pg) {
  switch (PQconnectPoll(pg->conn)) {
  case PGRES_POLLING_READING:
    if (watch(pg, UV_READABLE) < 0) connect_failed(pg);
    break;
  case PGRES_POLLING_WRITING:
    if (watch(pg, UV_WRITABLE) < 0) connect_failed(pg);
    break;
  case PGRES_POLLING_OK:
    connected(pg);
    break;
  default:
    connect_failed(pg);
    break;
  }
}

/* A library does not write on stderr: the server's notices, and the
 * error it sends an idle connection before closing it (which comes back
 * as the connection's error), are dropped here. */
static void on_notice(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

/* libpq's asynchronous connect does not enforce connect_timeout: this
 * timer does (a server that accepts and never answers). */
static void on_connect_timeout(uv_timer_t *t) {
  mly_pg *pg = t->data;
  if (pg->state != PG_CONNECTING || pg->closing) return;
  char why[96];
  snprintf(why, sizeof why, "timeout expired (no answer in %llu ms)",
           (unsigned long long)pg->connect_ms);
  set_err(pg, "cannot connect to the server", why);
  went_down(pg);
}

/* A connection that stays up while the server answers nothing (a
 * network gone silent, keepalives off or slower): a query sent and
 * unanswered for stall_ms, with nothing read meanwhile, loses it. */
static void on_stall_tick(uv_timer_t *t) {
  mly_pg *pg = t->data;
  if (pg->state != PG_UP || pg->closing) return;
  uint64_t now = uv_now(pg->loop);
  if (!pg->sent.head) {
    pg->progress_at = now;
    return;
  }
  if (now - pg->progress_at < pg->stall_ms) return;
  char why[96];
  snprintf(why, sizeof why, "no answer from the server in %llu ms",
           (unsigned long long)(now - pg->progress_at));
  set_err(pg, "connection to the server was lost", why);
  uv_timer_stop(&pg->timer);
  went_down(pg);
}

static void start_connect(mly_pg *pg) {
  pg->state = PG_CONNECTING;
  const char *const vals[] = CONN_VALUES(pg->conninfo);
  pg->conn = PQconnectStartParams(conn_keys, vals, 1);
  if (!pg->conn || PQstatus(pg->conn) == CONNECTION_BAD) {
    connect_failed(pg);
    return;
  }
  if (pg->connect_ms) {
    uv_timer_start(&pg->timer, on_connect_timeout, pg->connect_ms, 0);
    update_ref(pg);
  }
  PQsetNoticeProcessor(pg->conn, on_notice, NULL);
  /* as libpq says: behave as if PQconnectPoll had answered WRITING */
  if (watch(pg, UV_WRITABLE) < 0) connect_failed(pg);
}

/* Takes every complete answer libpq has parsed; stops when it is busy. */
static void take_results(mly_pg *pg) {
  int nulls = 0;
  while (pg->state == PG_UP && pg->sent.head && !PQisBusy(pg->conn)) {
    PGresult *r = PQgetResult(pg->conn);
    pgq *q = pg->sent.head;
    if (!r) {
      if (q->phase == 1 && ++nulls > 1) break;
      q->phase = 1;
      continue;
    }
    nulls = 0;
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      deliver(pg, pop(&pg->sent), NULL);
      if (pg->closing) return;
      continue;
    }
    if (q->res || q->err) {
      PQclear(r); /* a second result for one statement: keep the first */
    } else if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
      q->res = r;
    } else {
      const char *m = st == PGRES_PIPELINE_ABORTED
                          ? "the query was not run: an earlier one failed"
                          : PQresultErrorMessage(r);
      size_t n = strlen(m);
      while (n > 0 && m[n - 1] == '\n') n--;
      size_t cap = MLY_ESC_MAX(n) + 8; /* room to escape, *** for a word */
      if ((q->err = malloc(cap)) != NULL) {
        snprintf(q->err, cap, "%.*s", (int)n, m);
        pg_mask_password(pg->conninfo, q->err, cap);
      }
      const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      snprintf(q->sqlstate, sizeof q->sqlstate, "%s", code ? code : "");
      PQclear(r);
      if (!q->err) {
        snprintf(pg->lasterr, sizeof pg->lasterr, "out of memory");
        went_down(pg);
        return;
      }
    }
  }
}

static void take_notifies(mly_pg *pg) {
  PGnotify *n;
  while (pg->conn && (n = PQnotifies(pg->conn)) != NULL) {
    if (pg->ncb && !pg->closing) pg->ncb(pg, n->relname, n->extra, pg->narg);
    PQfreemem(n);
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  mly_pg *pg = h->data;
  if (pg->closing || h != pg->poll) return;
  if (pg->state == PG_CONNECTING) {
    connect_step(pg);
    return;
  }
  if (pg->state != PG_UP) return;
  if (status < 0) {
    lost(pg);
    return;
  }
  if (events & UV_READABLE) {
    pg->progress_at = uv_now(pg->loop);
    int ok = PQconsumeInput(pg->conn);
    take_results(pg);
    if (pg->closing || pg->state != PG_UP) return;
    take_notifies(pg);
    if (pg->closing || pg->state != PG_UP) return;
    if (!ok || PQstatus(pg->conn) == CONNECTION_BAD) {
      lost(pg);
      return;
    }
  }
  flush_and_watch(pg);
}

int mly_pg_open(uv_loop_t *loop, const char *conninfo, bool retry,
                mly_pg **out) {
  mly_pg *pg = calloc(1, sizeof *pg);
  if (!pg || !(pg->conninfo = strdup(conninfo))) {
    free(pg);
    return MLY_ENOMEM;
  }
  pg->loop = loop;
  pg->retry = retry;
  pg->cur_state = "";
  pg->backoff_ms = PG_BACKOFF_MIN_MS;
  pg->connect_ms = connect_timeout_ms(conninfo);
  uv_timer_init(loop, &pg->timer);
  pg->timer.data = pg;
  pg->handles = 1;
  start_connect(pg);
  *out = pg;
  return 0;
}

static int enqueue(mly_pg *pg, pgq *q) {
  if (!pg->sent.head) pg->progress_at = uv_now(pg->loop);
  if (pg->state != PG_UP) {
    push(&pg->waiting, q);
    update_ref(pg);
    return 0;
  }
  if (send_one(pg, q) < 0) lost(pg);
  else flush_and_watch(pg);
  return 0;
}

int mly_pg_query(mly_pg *pg, const char *sql, int n,
                 const char *const *values, mly_pg_result_cb cb, void *arg) {
  if (pg->closing) return MLY_ESHUTDOWN;
  if (pg->state == PG_DEAD) return MLY_EIO;
  pgq *q = q_new(sql, n, values, cb, arg);
  if (!q) return MLY_ENOMEM;
  return enqueue(pg, q);
}

int mly_pg_query_ref(mly_pg *pg, const char *sql, int n,
                     const char *const *values, const int *lengths,
                     const int *formats, mly_pg_result_cb cb, void *arg) {
  if (pg->closing) return MLY_ESHUTDOWN;
  if (pg->state == PG_DEAD) return MLY_EIO;
  pgq *q = calloc(1, sizeof *q);
  if (!q) return MLY_ENOMEM;
  q->borrowed = true;
  q->cb = cb;
  q->arg = arg;
  size_t k = n > 0 ? (size_t)n : 1;
  q->sql = strdup(sql);
  q->vals = malloc(k * sizeof *q->vals);
  if (lengths && (q->lens = malloc(k * sizeof *q->lens)))
    memcpy(q->lens, lengths, (size_t)n * sizeof *q->lens);
  if (formats && (q->fmts = malloc(k * sizeof *q->fmts)))
    memcpy(q->fmts, formats, (size_t)n * sizeof *q->fmts);
  if (!q->sql || !q->vals || (lengths && !q->lens) || (formats && !q->fmts)) {
    q_free(q);
    return MLY_ENOMEM;
  }
  for (; q->n < n; q->n++) q->vals[q->n] = (char *)values[q->n];
  return enqueue(pg, q);
}

int mly_pg_listen(mly_pg *pg, const char *channel) {
  size_t len = strlen(channel);
  if (len == 0 || len > PG_CHANNEL_MAX ||
      strspn(channel, "abcdefghijklmnopqrstuvwxyz0123456789_") != len)
    return MLY_EINVAL;
  if (pg->closing) return MLY_ESHUTDOWN;
  char **c = realloc(pg->chans, (pg->nchans + 1) * sizeof *c);
  if (!c) return MLY_ENOMEM;
  pg->chans = c;
  if (!(c[pg->nchans] = strdup(channel))) return MLY_ENOMEM;
  pg->nchans++;
  if (pg->state == PG_DEAD) return MLY_EIO;
  int r = listen_q(pg, channel);
  if (r == MLY_ENOMEM) return r;
  if (r < 0) lost(pg);
  else if (pg->state == PG_UP) flush_and_watch(pg);
  return 0;
}

int mly_pg_set_session(mly_pg *pg, const char *sql) {
  if (pg->closing) return MLY_ESHUTDOWN;
  char *c = strdup(sql);
  if (!c) return MLY_ENOMEM;
  free(pg->session);
  pg->session = c;
  if (pg->state == PG_UP) {
    pgq *q = q_new(sql, 0, NULL, NULL, NULL);
    if (!q) return MLY_ENOMEM;
    if (send_one(pg, q) < 0) lost(pg);
    else flush_and_watch(pg);
  }
  return 0;
}

const char *mly_pg_sqlstate(const mly_pg *pg) { return pg->cur_state; }

void mly_pg_fail_waiting(mly_pg *pg, const char *why) {
  if (pg->state != PG_UP) fail_all(pg, &pg->waiting, why);
  update_ref(pg);
}

void mly_pg_on_notify(mly_pg *pg, mly_pg_notify_cb cb, void *arg) {
  pg->ncb = cb;
  pg->narg = arg;
}

static void watch_stall(mly_pg *pg) {
  uint64_t tick = pg->stall_ms / 4 ? pg->stall_ms / 4 : 1;
  if (pg->stall_ms) uv_timer_start(&pg->timer, on_stall_tick, tick, tick);
  else uv_timer_stop(&pg->timer);
}

void mly_pg_set_stall(mly_pg *pg, uint64_t ms) {
  pg->stall_ms = ms;
  if (pg->state == PG_UP && !pg->closing) {
    pg->progress_at = uv_now(pg->loop);
    watch_stall(pg);
  }
}

void mly_pg_on_connect(mly_pg *pg, mly_pg_connect_cb cb, void *arg) {
  pg->ccb = cb;
  pg->carg = arg;
}

void mly_pg_set_weak(mly_pg *pg, bool weak) {
  pg->weak = weak;
  update_ref(pg);
}

bool mly_pg_connected(const mly_pg *pg) { return pg->state == PG_UP; }
unsigned mly_pg_connects(const mly_pg *pg) { return pg->connects; }
const char *mly_pg_last_error(const mly_pg *pg) { return pg->lasterr; }

void mly_pg_close(mly_pg *pg) {
  if (pg->closing) return;
  pg->closing = true;
  drop_poll(pg);
  if (pg->conn) PQfinish(pg->conn);
  pg->conn = NULL;
  fail_all(pg, &pg->sent, "the connection was closed");
  fail_all(pg, &pg->waiting, "the connection was closed");
  uv_close((uv_handle_t *)&pg->timer, on_timer_closed);
}
