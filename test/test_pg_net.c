/*
 * test_pg_net.c - the PostgreSQL store when its connection is lost
 * (lib/store/pg_store.c: batch serials and the resync), against a private
 * cluster (MLY_TEST_PG, MLY_TEST_PG_DIR, MLY_TEST_PG_CLUSTER).  Durable
 * counters run a step every 2 ms; each remembers the count the process
 * acknowledged (a step resumes only once committed); at the end every
 * counter parks and the database's count (read from the instance's state
 * row) must equal it, and nothing may be fenced (a step applied twice
 * would fail the expected-step check):
 *   - kill_points: the store's connection (through a proxy in this
 *     process, so that answers can be held) is cut at chosen points of a
 *     batch's pipeline: the fence waiting on the node row's lock, a step
 *     waiting on an instance row's lock (both: the backend terminated),
 *     COMMIT done on the server with its answer held (then cut), and a
 *     random moment with answers held.  Each time the database says
 *     whether the batch committed (its serial on the node row), and the
 *     resync must agree: committed ones reported, the others sent again.
 *   - restart_under_load: pg_ctl restart -m fast, three times, under load.
 *   - lost_claim_answer: a claim of a dead process's instances commits on
 *     the server and its answer is cut: the next claim finds them.
 *   - outage_past_lease: the server down longer than the lease: every
 *     instance is evicted (said, counted); held batches are decided by the
 *     fence (committed ones found, the rest refused); no counter is ahead
 *     of what its machine ran; the next process continues each counter
 *     from its committed count.
 *   - lock_held_then_released: another session holds an instance's row
 *     lock: batches are cancelled by lock_timeout and sent again in
 *     their place until it goes; every step commits once.
 *   - give_up_on_server_gone: the server stopped and not back within the
 *     give-up time: the store fails (MLY_ETIMEDOUT), nothing
 *     acknowledged is lost, the next process continues every counter.
 */
#include "harness.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include "durable.h"
#include "jreplay.h"
#include "pg_helpers.h"
#include "store/pg_store.h"

static char db[1024];    /* the test's own connections */
static char store_db[1100]; /* the store's (maybe through the proxy) */

static PGconn *dbc(void) { return pg_test_connect(db); }
static int64_t sql_int(const char *q) { return pg_test_int(db, q); }

static void exec_on(PGconn *c, const char *q) {
  PGresult *r = PQexec(c, q);
  ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK ||
                    PQresultStatus(r) == PGRES_TUPLES_OK,
                "%s: %s", q, PQresultErrorMessage(r));
  PQclear(r);
}

static void fresh_db(void) {
  PGconn *c = PQconnectdb(conninfo());
  ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
  PQclear(PQexec(c, "DROP DATABASE IF EXISTS mly_net WITH (FORCE)"));
  exec_on(c, "CREATE DATABASE mly_net");
  PQfinish(c);
  char msg[512];
  ck_assert_msg(mly_store_pg_init(db, NULL, msg, sizeof msg) == 0, "%s", msg);
}

/* ---- the counters ---- */

#define N 24
static uint64_t acked[N], ran[N];
static bool is_parked[N];
static bool halt;

typedef struct ctr {
  uint32_t idx;
  uint64_t n;
} ctr;

#define CTR_POINTS(X) X(ctr, tick) X(ctr, park)
MLY_POINTS(ctr, CTR_POINTS);

static int ctr_run(mly_machine *m, void *data) {
  ctr *c = data;
  MLY_BEGIN(m);
  for (;;) {
    if (halt) break;
    c->n++;
    ran[c->idx] = c->n;
    MLY_SLEEP_AT(m, ctr_tick, 2);
    acked[c->idx] = c->n; /* its step committed */
  }
  acked[c->idx] = c->n;
  is_parked[c->idx] = true;
  MLY_SLEEP_AT(m, ctr_park, 3600000);
  MLY_END(m);
}

/* One step then the end: its batches (create, step, end) go behind
 * whatever is in flight. */
static bool solo_done;
typedef struct solo {
  uint32_t unused;
} solo;
#define SOLO_POINTS(X) X(solo, nap)
MLY_POINTS(solo, SOLO_POINTS);

static int solo_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_SLEEP_AT(m, solo_nap, 1);
  solo_done = true;
  MLY_END(m);
}

static void reset(void) {
  solo_done = false;
  memset(acked, 0, sizeof acked);
  memset(ran, 0, sizeof ran);
  memset(is_parked, 0, sizeof is_parked);
  halt = false;
}

static uint64_t acked_total(void) {
  uint64_t t = 0;
  for (int i = 0; i < N; i++) t += acked[i];
  return t;
}

static bool all_parked(void) {
  for (int i = 0; i < N; i++)
    if (!is_parked[i]) return false;
  return true;
}

/* A fresh database, counters at 0, the store's connections named
 * mlynet (found in pg_stat_activity). */
static void fresh_run(void) {
  fresh_db();
  reset();
  snprintf(store_db, sizeof store_db, "%s application_name=mlynet", db);
}

static mly_runtime *open_pg_opts(mly_store_pg_options o,
                                 uint64_t *recovered) {
  mly_runtime *rt = h_runtime();
  mly_type_def def = {.name = "ctr", .run = ctr_run, MLY_TYPE_POINTS(ctr),
                      .data_size = sizeof(ctr), .version = 1,
                      .flags = MLY_TYPE_DURABLE};
  h_type(rt, &def);
  mly_type_def sdef = {.name = "solo", .run = solo_run,
                       MLY_TYPE_POINTS(solo), .data_size = sizeof(solo),
                       .version = 1, .flags = MLY_TYPE_DURABLE};
  h_type(rt, &sdef);
  o.conninfo = store_db;
  char err[512];
  int rc = mly_store_postgres(rt, &o, err, sizeof err);
  ck_assert_msg(rc == 0, "mly_store_postgres: %s", err);
  mly_journal_stats js;
  ck_assert_int_eq(mly_journal_stats_get(rt, &js), 0);
  if (recovered) *recovered = js.recovered;
  return rt;
}

static mly_runtime *open_pg(uint32_t lease_ms, uint64_t *recovered) {
  return open_pg_opts((mly_store_pg_options){.lease_ms = lease_ms},
                      recovered);
}

static mly_store *store_of(mly_runtime *rt) { return rt->dur->s; }

static void spawn_all(mly_runtime *rt) {
  mly_type *t = mly_type_find(rt, "ctr");
  ck_assert_ptr_nonnull(t);
  for (uint32_t i = 0; i < N; i++) {
    ctr c = {.idx = i};
    h_spawn(rt, t, &c, sizeof c);
  }
}

/* Each counter's count as the database has it (its state row). */
static int db_counts(uint64_t out[N]) {
  PGconn *c = dbc();
  PGresult *r = PQexecParams(c, "SELECT state FROM mealy.instances", 0, NULL,
                             NULL, NULL, NULL, 1);
  ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
  int rows = PQntuples(r);
  for (int i = 0; i < rows; i++) {
    jbuf b = {0};
    jb_array(&b, 12);
    jb_raw(&b, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
    jb_nil(&b);
    jb_nil(&b);
    ck_assert(!b.oom);
    jcur cur = {b.p, b.p + b.n, false};
    rp_state s;
    ck_assert(rp_parse_state(&cur, &s));
    /* the data as the runtime keeps it: trailing zero bytes left out */
    ck_assert_uint_le(s.dlen, sizeof(ctr));
    ctr k = {0};
    memcpy(&k, s.data, s.dlen);
    ck_assert_uint_lt(k.idx, N);
    out[k.idx] = k.n;
    jb_free(&b);
  }
  PQclear(r);
  PQfinish(c);
  return rows;
}

static int64_t node_serial(int64_t node) {
  char q[128];
  snprintf(q, sizeof q, "SELECT batch_serial FROM mealy.nodes WHERE id = %" PRId64,
           node);
  return sql_int(q);
}

/* The store's backends (application_name mlynet) are gone. */
static void wait_store_backends_gone(void) {
  int i = 0;
  while (sql_int("SELECT count(*) FROM pg_stat_activity WHERE"
                 " application_name = 'mlynet'") > 0) {
    ck_assert_msg(++i < 20000, "the store's backend never went");
    usleep(1000);
  }
}

/* ---- a proxy between the store and the server, that can hold the
 * server's answers and cut every connection ---- */

#define PX_MAX 8
typedef struct proxy {
  char dir[64], path[128], target[256];
  int lfd, n, cfd[PX_MAX], sfd[PX_MAX];
  pthread_t th;
  atomic_int stop, hold, cut, cut_done;
} proxy;
static proxy px;

static void px_close(proxy *p, int i) {
  close(p->cfd[i]);
  close(p->sfd[i]);
  p->cfd[i] = p->cfd[p->n - 1];
  p->sfd[i] = p->sfd[p->n - 1];
  p->n--;
}

static bool pump(int from, int to) {
  char buf[65536];
  ssize_t k = read(from, buf, sizeof buf);
  if (k <= 0) return false;
  for (ssize_t w = 0; w < k;) {
    ssize_t x = write(to, buf + w, (size_t)(k - w));
    if (x < 0 && errno == EINTR) continue;
    if (x <= 0) return false;
    w += x;
  }
  return true;
}

static void *px_main(void *arg) {
  proxy *p = arg;
  while (!atomic_load(&p->stop)) {
    int cut = atomic_load(&p->cut);
    if (cut != atomic_load(&p->cut_done)) {
      while (p->n) px_close(p, 0); /* what was held is dropped */
      atomic_store(&p->cut_done, cut);
    }
    bool hold = atomic_load(&p->hold);
    struct pollfd f[1 + 2 * PX_MAX];
    int n = p->n;
    f[0] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
    for (int i = 0; i < n; i++) {
      f[1 + 2 * i] = (struct pollfd){.fd = p->cfd[i], .events = POLLIN};
      f[2 + 2 * i] =
          (struct pollfd){.fd = hold ? -1 : p->sfd[i], .events = POLLIN};
    }
    if (poll(f, (nfds_t)(1 + 2 * n), 2) <= 0) continue;
    for (int i = n - 1; i >= 0; i--) {
      bool ok = true;
      if (f[1 + 2 * i].revents) ok = pump(p->cfd[i], p->sfd[i]);
      if (ok && !hold && f[2 + 2 * i].revents)
        ok = pump(p->sfd[i], p->cfd[i]);
      if (!ok) px_close(p, i);
    }
    if (f[0].revents & POLLIN) {
      int c = accept(p->lfd, NULL, NULL);
      if (c < 0) continue;
      int s = socket(AF_UNIX, SOCK_STREAM, 0);
      struct sockaddr_un a = {.sun_family = AF_UNIX};
      if (snprintf(a.sun_path, sizeof a.sun_path, "%s", p->target) >=
          (int)sizeof a.sun_path) {
        close(c);
        close(s);
        continue;
      }
      if (p->n == PX_MAX || s < 0 ||
          connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        close(c);
        if (s >= 0) close(s);
        continue;
      }
      p->cfd[p->n] = c;
      p->sfd[p->n++] = s;
    }
  }
  while (p->n) px_close(p, 0);
  return NULL;
}

static void px_start(void) {
  memset(&px, 0, sizeof px);
  const char *dir = getenv("MLY_TEST_PG_DIR");
  ck_assert_msg(dir && *dir, "MLY_TEST_PG_DIR is not set");
  snprintf(px.target, sizeof px.target, "%s/.s.PGSQL.5432", dir);
  snprintf(px.dir, sizeof px.dir, "/tmp/mlynet.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(px.dir));
  snprintf(px.path, sizeof px.path, "%s/.s.PGSQL.5432", px.dir);
  px.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
  ck_assert_int_ge(px.lfd, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  ck_assert_int_lt(snprintf(a.sun_path, sizeof a.sun_path, "%s", px.path),
                   (int)sizeof a.sun_path);
  ck_assert_int_eq(bind(px.lfd, (struct sockaddr *)&a, sizeof a), 0);
  ck_assert_int_eq(listen(px.lfd, 16), 0);
  ck_assert_int_eq(pthread_create(&px.th, NULL, px_main, &px), 0);
  snprintf(store_db, sizeof store_db,
           "host=%s port=5432 dbname=mly_net user=mealy"
           " application_name=mlynet",
           px.dir);
}

static void px_cut(void) {
  int c = atomic_fetch_add(&px.cut, 1) + 1;
  for (int i = 0; atomic_load(&px.cut_done) != c; i++) {
    ck_assert_msg(i < 100000, "the proxy did not cut");
    usleep(100);
  }
}

static void px_stop(void) {
  atomic_store(&px.stop, 1);
  pthread_join(px.th, NULL);
  close(px.lfd);
  unlink(px.path);
  rmdir(px.dir);
}

/* ---- kill_points: the store's flush wrapped ---- */

enum { M_NONE, M_FENCE, M_STEP, M_COMMIT, M_RANDOM, M_COUNT };
static const char *mode_name[] = {"", "fence waiting", "step waiting",
                                  "commit answer held", "random, held"};

static const store_ops *orig_ops;
static store_ops wrapped_ops;
static int armed;
static int64_t kp_node;
static struct {
  bool pending, committed;
  int mode;
  uint64_t serial, found, resent;
} chk;
static int rounds[M_COUNT], decided[2];

static void wait_lock_waiter(void) {
  int i = 0;
  while (sql_int("SELECT count(*) FROM pg_stat_activity WHERE"
                 " application_name = 'mlynet' AND wait_event_type = 'Lock'") !=
         1) {
    ck_assert_msg(++i < 20000, "the batch never waited on the lock");
    usleep(1000);
  }
}

static void wflush(mly_store *s) {
  pg_store_net before, after;
  pg_store_net_get(s, &before);
  int mode = armed;
  /* one batch at a time, so that the database's answer is this one's */
  if (before.inflight || before.resync || s->ops->idle(s)) mode = M_NONE;
  PGconn *lk = NULL;
  if (mode == M_FENCE || mode == M_STEP) {
    lk = dbc();
    exec_on(lk, "BEGIN");
    exec_on(lk, mode == M_FENCE
                    ? "SELECT 1 FROM mealy.nodes FOR UPDATE"
                    : "SELECT 1 FROM mealy.instances FOR UPDATE");
  }
  if (mode == M_COMMIT || mode == M_RANDOM) atomic_store(&px.hold, 1);
  orig_ops->flush(s);
  pg_store_net_get(s, &after);
  if (mode == M_NONE || after.serial == before.serial) {
    if (lk) {
      exec_on(lk, "ROLLBACK");
      PQfinish(lk);
    }
    atomic_store(&px.hold, 0);
    return;
  }
  armed = M_NONE;
  uint64_t S = after.serial;
  switch (mode) {
  case M_FENCE:
  case M_STEP:
    wait_lock_waiter();
    /* OFFSET 0: the filter first, then the terminations */
    ck_assert_int_eq(sql_int("SELECT count(*) FROM (SELECT pid FROM"
                             " pg_stat_activity WHERE application_name ="
                             " 'mlynet' OFFSET 0) a WHERE"
                             " pg_terminate_backend(a.pid, 60000)"),
                     1);
    exec_on(lk, "ROLLBACK");
    PQfinish(lk);
    break;
  case M_COMMIT:
    for (int i = 0; node_serial(kp_node) < (int64_t)S; i++) {
      ck_assert_msg(i < 20000, "batch %" PRIu64 " never committed", S);
      usleep(1000);
    }
  px_cut();
    break;
  default:
    usleep((useconds_t)(rand() % 4000));
    px_cut();
    break;
  }
  wait_store_backends_gone();
  atomic_store(&px.hold, 0);
  const pg_store_fencing *f = pg_store_fencing_get(s);
  chk.pending = true;
  chk.mode = mode;
  chk.serial = S;
  chk.committed = node_serial(kp_node) >= (int64_t)S;
  if (mode == M_COMMIT) ck_assert(chk.committed);
  if (mode == M_FENCE || mode == M_STEP) ck_assert(!chk.committed);
  chk.found = f->found_committed;
  chk.resent = f->resent;
}

#define KP_ROUNDS 6 /* per mode */
static uint64_t mark;
static int next_mode = M_FENCE;
static mly_runtime *kp_rt;

static void on_kp_tick(uv_timer_t *t) {
  mly_store *s = store_of(kp_rt);
  pg_store_net net;
  pg_store_net_get(s, &net);
  const pg_store_fencing *f = pg_store_fencing_get(s);
  ck_assert_int_eq(mly_journal_error(kp_rt), 0);
  if (chk.pending) {
    if (net.resync || (f->found_committed == chk.found &&
                       f->resent == chk.resent))
      return; /* not decided yet */
    if (chk.committed) {
      ck_assert_msg(f->found_committed > chk.found,
                    "%s: batch %" PRIu64 " committed, resync said not",
                    mode_name[chk.mode], chk.serial);
    } else {
      ck_assert_msg(f->found_committed == chk.found && f->resent > chk.resent,
                    "%s: batch %" PRIu64 " did not commit, resync said it did",
                    mode_name[chk.mode], chk.serial);
    }
    decided[chk.committed]++;
    rounds[chk.mode]++;
    chk.pending = false;
    mark = acked_total();
    return;
  }
  if (armed || halt) {
    if (halt && all_parked()) {
      uv_close((uv_handle_t *)t, NULL);
      mly_runtime_shutdown(kp_rt, 0);
    }
    return;
  }
  if (acked_total() < mark + 100) return; /* going again after the last */
  bool left = false;
  for (int m = M_FENCE; m < M_COUNT; m++) left |= rounds[m] < KP_ROUNDS;
  if (!left) {
    halt = true;
    return;
  }
  while (rounds[next_mode] >= KP_ROUNDS)
    next_mode = next_mode + 1 == M_COUNT ? M_FENCE : next_mode + 1;
  armed = next_mode;
  next_mode = next_mode + 1 == M_COUNT ? M_FENCE : next_mode + 1;
}

/* Every counter is_parked at the count the process acknowledged, in the
 * database too. */
static void check_counts(void) {
  uint64_t dbn[N] = {0};
  ck_assert_int_eq(db_counts(dbn), N);
  for (int i = 0; i < N; i++) {
    ck_assert_msg(is_parked[i], "counter %d", i);
    ck_assert_msg(dbn[i] == acked[i],
                  "counter %d: %" PRIu64 " in the database, %" PRIu64
                  " acknowledged",
                  i, dbn[i], acked[i]);
    ck_assert_uint_gt(acked[i], 0);
  }
}

START_TEST(kill_points) {
  fresh_db();
  reset();
  px_start();
  srand(1234);
  memset(rounds, 0, sizeof rounds);
  memset(decided, 0, sizeof decided);
  memset(&chk, 0, sizeof chk);
  armed = M_NONE;
  mark = 0;
  kp_rt = open_pg(60000, NULL);
  mly_store *s = store_of(kp_rt);
  kp_node = pg_store_node(s);
  orig_ops = s->ops;
  wrapped_ops = *orig_ops;
  wrapped_ops.flush = wflush;
  s->ops = &wrapped_ops;
  spawn_all(kp_rt);
  uv_timer_t t;
  uv_timer_init(mly_runtime_loop(kp_rt), &t);
  uv_timer_start(&t, on_kp_tick, 5, 5);
  ck_assert_int_eq(mly_runtime_run(kp_rt), 0);
  const pg_store_fencing *f = pg_store_fencing_get(s);
  ck_assert_uint_eq(f->fenced_batches, 0);
  ck_assert_uint_eq(f->evicted, 0);
  ck_assert_uint_ge(f->resyncs, M_COUNT - 1);
  for (int m = M_FENCE; m < M_COUNT; m++) ck_assert_int_eq(rounds[m], KP_ROUNDS);
  ck_assert_int_ge(decided[0], 2 * KP_ROUNDS);
  ck_assert_int_ge(decided[1], KP_ROUNDS);
  fprintf(stderr, "kill_points: %d committed, %d not; resyncs %" PRIu64
          ", found committed %" PRIu64 ", resent %" PRIu64
          ", refused twice %" PRIu64 "\n",
          decided[1], decided[0], f->resyncs, f->found_committed, f->resent,
          f->refused_twice);
  s->ops = orig_ops;
  mly_runtime_close(kp_rt);
  check_counts();
  px_stop();
}
END_TEST

/* ---- the server restarted or away: cluster.sh through uv_spawn ---- */

typedef struct outage {
  mly_runtime *rt;
  uv_timer_t t;
  uv_process_t proc;
  bool running;
  int done, want;     /* outages finished, wanted */
  int64_t exit_status;
  const char *verb;   /* restart, or pause then resume */
  uint64_t mark;
  bool past_lease;    /* outage_past_lease: pause, wait for the evictions */
  int phase;
} outage;

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
  outage *o = p->data;
  (void)sig;
  o->exit_status = status;
  o->running = false;
  uv_close((uv_handle_t *)p, NULL);
}

static void cluster(outage *o, const char *verb) {
  const char *sh = getenv("MLY_TEST_PG_CLUSTER"),
             *dir = getenv("MLY_TEST_PG_DIR");
  ck_assert_msg(sh && dir, "MLY_TEST_PG_CLUSTER/MLY_TEST_PG_DIR not set");
  char *args[] = {"bash", (char *)sh, (char *)verb, (char *)dir, NULL};
  uv_stdio_container_t io[3] = {{.flags = UV_IGNORE},
                                {.flags = UV_INHERIT_FD, .data.fd = 2},
                                {.flags = UV_INHERIT_FD, .data.fd = 2}};
  uv_process_options_t po = {.exit_cb = on_exit_cb, .file = "bash",
                             .args = args, .stdio_count = 3, .stdio = io};
  o->proc.data = o;
  o->running = true;
  ck_assert_int_eq(uv_spawn(mly_runtime_loop(o->rt), &o->proc, &po), 0);
}

static void on_restart_tick(uv_timer_t *t) {
  outage *o = t->data;
  ck_assert_int_eq(mly_journal_error(o->rt), 0);
  if (o->running) return;
  if (o->phase == 1) { /* a restart ended */
    ck_assert_int_eq(o->exit_status, 0);
    o->done++;
    o->phase = 0;
    o->mark = acked_total();
    return;
  }
  if (halt) {
    if (all_parked()) {
      uv_close((uv_handle_t *)t, NULL);
      mly_runtime_shutdown(o->rt, 0);
    }
    return;
  }
  if (acked_total() < o->mark + 200) return; /* steady again first */
  if (o->done == o->want) {
    halt = true;
    return;
  }
  o->phase = 1;
  cluster(o, "restart");
}

START_TEST(restart_under_load) {
  fresh_run();
  outage o = {.want = 3};
  o.rt = open_pg(0, NULL);
  spawn_all(o.rt);
  uv_timer_init(mly_runtime_loop(o.rt), &o.t);
  o.t.data = &o;
  uv_timer_start(&o.t, on_restart_tick, 5, 5);
  ck_assert_int_eq(mly_runtime_run(o.rt), 0);
  const pg_store_fencing *f = pg_store_fencing_get(store_of(o.rt));
  ck_assert_int_eq(o.done, 3);
  ck_assert_uint_eq(f->fenced_batches, 0);
  ck_assert_uint_eq(f->evicted, 0);
  ck_assert_uint_ge(f->resyncs, 1);
  fprintf(stderr, "restart_under_load: resyncs %" PRIu64
          ", found committed %" PRIu64 ", resent %" PRIu64 "\n",
          f->resyncs, f->found_committed, f->resent);
  ck_assert_int_eq(mly_journal_error(o.rt), 0);
  mly_runtime_close(o.rt);
  check_counts();
}
END_TEST

/* The next process claims every counter (dbn: the database's counts)
 * and continues each from its committed count. */
static void next_process_continues(const uint64_t dbn[N]) {
  memset(is_parked, 0, sizeof is_parked);
  memset(acked, 0, sizeof acked);
  halt = true;
  uint64_t rec = 0;
  mly_runtime *rt = open_pg(0, &rec);
  ck_assert_uint_eq(rec, N);
  uv_timer_t t;
  uv_timer_init(mly_runtime_loop(rt), &t);
  outage o2 = {.rt = rt};
  t.data = &o2;
  uv_timer_start(&t, on_restart_tick, 5, 5);
  ck_assert_int_eq(mly_runtime_run(rt), 0);
  mly_runtime_close(rt);
  for (int i = 0; i < N; i++) ck_assert_uint_eq(acked[i], dbn[i]);
  check_counts();
}

/* phases: 0 running, 1 pausing, 2 paused (waiting for the evictions),
 * 3 resuming, 4 settling (held batches decided) */
static void on_pause_tick(uv_timer_t *t) {
  outage *o = t->data;
  mly_store *s = store_of(o->rt);
  const pg_store_fencing *f = pg_store_fencing_get(s);
  pg_store_net net;
  pg_store_net_get(s, &net);
  if (o->running) return;
  switch (o->phase) {
  case 0:
    if (acked_total() < 200) return;
    o->phase = 1;
    cluster(o, "pause");
    return;
  case 1:
    ck_assert_int_eq(o->exit_status, 0);
    o->phase = 2;
    return;
  case 2:
    if (f->evicted < N) return; /* the lease runs out, locally */
    o->phase = 3;
    cluster(o, "resume");
    return;
  case 3:
    ck_assert_int_eq(o->exit_status, 0);
    o->phase = 4;
    return;
  default:
    if (net.resync || net.inflight) return;
    uv_close((uv_handle_t *)t, NULL);
    mly_runtime_shutdown(o->rt, 0);
  }
}

START_TEST(outage_past_lease) {
  fresh_run();
  outage o = {.want = 1};
  o.rt = open_pg(600, NULL);
  spawn_all(o.rt);
  uv_timer_init(mly_runtime_loop(o.rt), &o.t);
  o.t.data = &o;
  uv_timer_start(&o.t, on_pause_tick, 5, 5);
  ck_assert_int_eq(mly_runtime_run(o.rt), 0);
  const pg_store_fencing *f = pg_store_fencing_get(store_of(o.rt));
  ck_assert_uint_eq(f->evicted, N);
  /* what was held is decided: committed, or refused by the fence.  The
   * connection may or may not have been taken as lost during the pause
   * (a resync): that depends on how long the pause outlasts the stall
   * bound (pg_conn.c), which a loaded machine decides; either way every
   * batch was decided once, which the counts below check. */
  ck_assert_uint_ge(f->found_committed + f->fenced_batches, 1);
  fprintf(stderr, "outage_past_lease: resyncs %" PRIu64 ", found committed %"
          PRIu64 ", fenced %" PRIu64 ", dropped steps %" PRIu64 "\n",
          f->resyncs, f->found_committed, f->fenced_batches, f->dropped_steps);
  mly_runtime_close(o.rt);
  uint64_t dbn[N] = {0};
  ck_assert_int_eq(db_counts(dbn), N);
  for (int i = 0; i < N; i++) {
    /* nothing lost that was acknowledged, nothing the machine did not
     * run, at most the one step in flight beyond what it saw */
    ck_assert_uint_ge(dbn[i], acked[i]);
    ck_assert_uint_le(dbn[i], ran[i]);
    ck_assert_uint_le(ran[i], acked[i] + 1);
  }
  /* the next process continues every counter from its committed count */
  next_process_continues(dbn);
}
END_TEST

/* ---- a row lock held by another session: lock_timeout ---- */

#define LOCK_ROUNDS 5
typedef struct locker {
  mly_runtime *rt;
  PGconn *lk;
  int phase, round;
  uint64_t mark, until; /* timeouts to wait for this round */
} locker;

static void on_lock_tick(uv_timer_t *t) {
  locker *l = t->data;
  const pg_store_fencing *f = pg_store_fencing_get(store_of(l->rt));
  ck_assert_int_eq(mly_journal_error(l->rt), 0);
  switch (l->phase) {
  case 0:
    if (acked_total() < l->mark + 200) return;
    /* a stuck session: an instance's row (the first, then one at random)
     * locked, not let go until the test says so */
    l->lk = dbc();
    exec_on(l->lk, "BEGIN");
    exec_on(l->lk, l->round == 0
                       ? "SELECT 1 FROM (SELECT id FROM mealy.instances"
                         " ORDER BY id LIMIT 1 FOR UPDATE) x"
                       : "SELECT 1 FROM (SELECT id FROM mealy.instances"
                         " ORDER BY random() LIMIT 1 FOR UPDATE) x");
    l->until = f->timeouts + 1 + (uint64_t)(rand() % 3);
    l->phase = l->round == 0 ? 1 : 2;
    return;
  case 1: /* a batch waits on it; one more goes behind it: the fence
           * must refuse that one until the first commits */
    if (sql_int("SELECT count(*) FROM pg_stat_activity WHERE"
                " application_name = 'mlynet' AND wait_event_type = 'Lock'") <
        1)
      return;
    solo s = {0};
    h_spawn(l->rt, mly_type_find(l->rt, "solo"), &s, sizeof s);
    l->phase = 2;
    return;
  case 2: /* the batches wait, are cancelled, and are sent again */
    if (f->timeouts < l->until) return;
    if (l->round == 0) ck_assert(!solo_done);
    l->mark = acked_total();
    exec_on(l->lk, "COMMIT");
    PQfinish(l->lk);
    l->lk = NULL;
    l->phase = ++l->round < LOCK_ROUNDS ? 0 : 3;
    return;
  case 3: /* going again: every counter past where it was */
    if (acked_total() < l->mark + 200) return;
    halt = true;
    l->phase = 4;
    return;
  default:
    if (!all_parked()) return;
    uv_close((uv_handle_t *)t, NULL);
    mly_runtime_shutdown(l->rt, 0);
  }
}

/* A session holding an instance's row lock: each batch waits
 * lock_timeout, is cancelled (counted), sent again in its place (those
 * behind it refused by the fence until it commits); once the lock goes
 * every step commits, once: the database's counts are the acknowledged
 * ones and nothing was fenced.  LOCK_ROUNDS rounds: a random row held
 * for a random number (1..3) of timeouts each after the first. */
typedef struct text {
  char p[1 << 16];
  size_t n;
} text;

static int to_text(void *arg, const char *p, size_t n) {
  text *t = arg;
  ck_assert_uint_lt(t->n + n, sizeof t->p);
  memcpy(t->p + t->n, p, n);
  t->n += n;
  t->p[t->n] = '\0';
  return 0;
}

START_TEST(lock_held_then_released) {
  fresh_run();
  /* trust authentication: the password is not used, only never shown */
  snprintf(store_db, sizeof store_db,
           "%s application_name=mlynet password=pw0rdXYZ", db);
  srand(4321);
  locker l = {0};
  l.rt = open_pg_opts((mly_store_pg_options){.lock_timeout_ms = 100}, NULL);
  spawn_all(l.rt);
  uv_timer_t t;
  uv_timer_init(mly_runtime_loop(l.rt), &t);
  t.data = &l;
  uv_timer_start(&t, on_lock_tick, 5, 5);
  ck_assert_int_eq(mly_runtime_run(l.rt), 0);
  const pg_store_fencing *f = pg_store_fencing_get(store_of(l.rt));
  ck_assert_uint_ge(f->timeouts, LOCK_ROUNDS);
  ck_assert_uint_ge(f->out_of_order, 1);
  ck_assert_uint_ge(f->retried, f->timeouts + f->out_of_order);
  ck_assert(solo_done);
  ck_assert_uint_eq(f->fenced_batches, 0);
  ck_assert_uint_eq(f->evicted, 0);
  ck_assert_uint_eq(f->resyncs, 0);
  fprintf(stderr, "lock_held_then_released: timeouts %" PRIu64
          ", out of order %" PRIu64 ", retried %" PRIu64 "\n",
          f->timeouts, f->out_of_order, f->retried);
  ck_assert_int_eq(mly_journal_error(l.rt), 0);
  /* the figures in the metrics, the conninfo nowhere */
  static text m;
  m.n = 0;
  ck_assert_int_eq(mly_metrics_write(l.rt, to_text, &m), 0);
  char want[160];
  snprintf(want, sizeof want,
           "mealy_pg_store_batches_retried_total{reason=\"timeout\"} %" PRIu64
           "\n", f->timeouts);
  ck_assert_msg(strstr(m.p, want), "%s", m.p);
  snprintf(want, sizeof want,
           "mealy_pg_store_batches_retried_total{reason=\"out_of_order\"} %"
           PRIu64 "\n", f->out_of_order);
  ck_assert_msg(strstr(m.p, want), "%s", m.p);
  ck_assert_ptr_nonnull(strstr(m.p, "mealy_pg_store_connected 1\n"));
  ck_assert_ptr_nonnull(strstr(m.p, "mealy_pg_store_fenced_batches_total 0\n"));
  ck_assert_ptr_null(strstr(m.p, "pw0rdXYZ"));
  mly_runtime_close(l.rt);
  check_counts();
}
END_TEST


/* ---- a claim whose answer is lost: a live process (through the proxy)
 * claims a SIGKILLed one's counters; the claim waits on a row the test
 * holds, commits on the server once the test lets go, and its answer is
 * held and then cut.  The process does not know it owns them: the claim
 * after the next renewal reads every instance it owns (SQL_ADOPT_MINE)
 * and brings them back; each counter goes on from its committed count,
 * once. ---- */

static void keep_alive(uv_timer_t *t) { (void)t; }

static void turn_x(mly_runtime *x, int n) {
  for (int i = 0; i < n; i++) {
    uv_run(mly_runtime_loop(x), UV_RUN_NOWAIT);
    usleep(1000);
  }
}

START_TEST(lost_claim_answer) {
  fresh_db();
  reset();
  snprintf(store_db, sizeof store_db, "%s application_name=mlydead", db);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    mly_runtime *d = open_pg(2000, NULL);
    spawn_all(d);
    RUN_UNTIL(d, acked_total() >= 2 * N, 100000);
    raise(SIGKILL);
  }
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFSIGNALED(status));
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), N);
  int64_t dead = sql_int("SELECT max(owner) FROM mealy.instances");
  /* the test holds one of its rows: the claim will wait on it */
  PGconn *lk = dbc();
  exec_on(lk, "BEGIN");
  char q[256];
  snprintf(q, sizeof q,
           "SELECT 1 FROM mealy.instances WHERE owner = %" PRId64
           " ORDER BY id LIMIT 1 FOR UPDATE", dead);
  exec_on(lk, q);
  px_start();
  mly_runtime *x = open_pg(3000, NULL); /* before the dead lease ran out */
  int64_t me = pg_store_node(store_of(x));
  uv_timer_t ka; /* its loop runs its lease's timers while it has nothing */
  uv_timer_init(mly_runtime_loop(x), &ka);
  uv_timer_start(&ka, keep_alive, 5, 5);
  /* its claim, after a renewal, waits on the row */
  for (int i = 0; sql_int("SELECT count(*) FROM pg_stat_activity WHERE"
                          " application_name = 'mlynet' AND"
                          " wait_event_type = 'Lock'") != 1;
       i++) {
    ck_assert_msg(i < 20000, "the claim never waited on the lock");
    turn_x(x, 2);
  }
  atomic_store(&px.hold, 1); /* its answer will not come */
  exec_on(lk, "COMMIT");
  PQfinish(lk);
  snprintf(q, sizeof q,
           "SELECT count(*) FROM mealy.instances WHERE owner = %" PRId64, me);
  for (int i = 0; sql_int(q) != N; i++) {
    ck_assert_msg(i < 20000, "the claim did not commit");
    usleep(1000);
  }
  px_cut();
  atomic_store(&px.hold, 0);
  const pg_store_fencing *f = pg_store_fencing_get(store_of(x));
  ck_assert_uint_eq(f->adopted, 0); /* the answer never came */
  for (int i = 0; f->adopted < N; i++) {
    ck_assert_msg(i < 30000, "the instances never came back");
    turn_x(x, 1);
  }
  ck_assert_uint_eq(f->adopted, N);
  for (int i = 0; acked_total() < 4 * N; i++) {
    ck_assert_msg(i < 30000, "the counters did not go on");
    turn_x(x, 1);
  }
  halt = true;
  for (int i = 0; !all_parked(); i++) {
    ck_assert_msg(i < 30000, "the counters did not park");
    turn_x(x, 1);
  }
  turn_x(x, 20);
  ck_assert_uint_eq(f->fenced_batches, 0);
  ck_assert_int_eq(mly_journal_error(x), 0);
  check_counts();
  uv_close((uv_handle_t *)&ka, NULL);
  mly_runtime_shutdown(x, 0);
  ck_assert_int_eq(mly_runtime_run(x), 0);
  mly_runtime_close(x);
  px_stop();
}
END_TEST

/* ---- a server that does not come back: the give-up time ---- */

static void on_giveup_tick(uv_timer_t *t) {
  outage *o = t->data;
  if (o->running) return;
  switch (o->phase) {
  case 0:
    ck_assert_int_eq(mly_journal_error(o->rt), 0);
    if (acked_total() < 200) return;
    o->phase = 1;
    cluster(o, "pause");
    return;
  case 1:
    ck_assert_int_eq(o->exit_status, 0);
    o->mark = acked_total();
    o->phase = 2;
    return;
  case 2: /* steps wait on no connection until the give-up time */
    if (mly_journal_error(o->rt) == 0) return;
    ck_assert_int_eq(mly_journal_error(o->rt), MLY_ETIMEDOUT);
    o->phase = 3;
    cluster(o, "resume");
    return;
  default:
    ck_assert_int_eq(o->exit_status, 0);
    uv_close((uv_handle_t *)t, NULL);
    mly_runtime_shutdown(o->rt, 0);
  }
}

START_TEST(give_up_on_server_gone) {
  fresh_run();
  outage o = {.want = 1};
  o.rt = open_pg_opts((mly_store_pg_options){.lease_ms = 3000,
                                             .give_up_ms = 1000},
                      NULL);
  spawn_all(o.rt);
  uv_timer_init(mly_runtime_loop(o.rt), &o.t);
  o.t.data = &o;
  uv_timer_start(&o.t, on_giveup_tick, 5, 5);
  ck_assert_int_eq(mly_runtime_run(o.rt), 0);
  const pg_store_fencing *f = pg_store_fencing_get(store_of(o.rt));
  /* given up before the lease ran out: nothing evicted or fenced */
  ck_assert_uint_eq(f->evicted, 0);
  ck_assert_uint_eq(f->fenced_batches, 0);
  /* no step was acknowledged once the server was gone */
  ck_assert_uint_eq(acked_total(), o.mark);
  mly_runtime_close(o.rt);
  uint64_t dbn[N] = {0};
  ck_assert_int_eq(db_counts(dbn), N);
  for (int i = 0; i < N; i++) {
    ck_assert_uint_ge(dbn[i], acked[i]); /* nothing acknowledged lost */
    ck_assert_uint_le(dbn[i], ran[i]);
  }
  /* its lease runs out (the failed store does not give it up): the next
   * process claims every counter and continues from its committed count */
  for (int i = 0; sql_int("SELECT count(*) FROM mealy.nodes WHERE"
                          " lease_until > clock_timestamp()") > 0; i++) {
    ck_assert_msg(i < 60000, "the failed process's lease never ran out");
    usleep(1000);
  }
  next_process_continues(dbn);
}
END_TEST

/* ---- a 16 MiB context: bytea as binary parameters ---- */

#define BIG (16u << 20)
static size_t big_seen;
typedef struct bigm {
  uint32_t phase;
} bigm;
#define BIG_POINTS(X) X(bigm, set) X(bigm, park)
MLY_POINTS(bigm, BIG_POINTS);

static int big_run(mly_machine *m, void *data) {
  bigm *g = data;
  MLY_BEGIN(m);
  if (!mly_recovered(m)) {
    unsigned char *p = malloc(BIG);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < BIG; i++) p[i] = (unsigned char)(i * 131 + 7);
    mly_value *v = mly_value_bin(p, BIG);
    free(p);
    ck_assert_ptr_nonnull(v);
    mly_context_set(m, v);
  }
  MLY_SLEEP_AT(m, bigm_set, 1);
  for (;;) { /* after a recovery too */
    const void *p = NULL;
    size_t len = 0;
    mly_value *v = mly_context(m);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(mly_value_get_bin(v, &p, &len), 0);
    ck_assert_uint_eq(len, BIG);
    for (size_t i = 0; i < BIG; i += 4099)
      ck_assert_uint_eq(((const unsigned char *)p)[i],
                        (unsigned char)(i * 131 + 7));
    big_seen = len;
    g->phase++;
    MLY_SLEEP_AT(m, bigm_park, 20);
  }
  MLY_END(m);
}

static void on_big_tick(uv_timer_t *t) {
  if (!big_seen) return;
  uv_close((uv_handle_t *)t, NULL);
  mly_runtime_shutdown(t->data, 0);
}

static void big_round(uint64_t *recovered) {
  mly_runtime *rt = h_runtime();
  mly_type_def def = {.name = "bigm", .run = big_run, MLY_TYPE_POINTS(bigm),
                      .data_size = sizeof(bigm), .version = 1,
                      .flags = MLY_TYPE_DURABLE};
  mly_type *ty = h_type(rt, &def);
  mly_store_pg_options o = {.conninfo = store_db};
  char err[512];
  ck_assert_msg(mly_store_postgres(rt, &o, err, sizeof err) == 0, "%s", err);
  mly_journal_stats js;
  ck_assert_int_eq(mly_journal_stats_get(rt, &js), 0);
  *recovered = js.recovered;
  if (!js.recovered) {
    bigm g = {0};
    h_spawn(rt, ty, &g, sizeof g);
  }
  big_seen = 0;
  uv_timer_t t;
  uv_timer_init(mly_runtime_loop(rt), &t);
  t.data = rt;
  uv_timer_start(&t, on_big_tick, 5, 5);
  ck_assert_int_eq(mly_runtime_run(rt), 0);
  ck_assert_int_eq(mly_journal_error(rt), 0);
  mly_runtime_close(rt);
}

/* The context goes in and comes back whole, and the row holds it as
 * bytes (not text): octet_length is the msgpack's, a little over 16 MiB. */
START_TEST(context_16_mib) {
  fresh_db();
  snprintf(store_db, sizeof store_db, "%s application_name=mlynet", db);
  uint64_t rec = 0;
  uv_loop_t *l = uv_default_loop();
  uv_update_time(l);
  uint64_t t0 = uv_hrtime();
  big_round(&rec);
  ck_assert_uint_eq(rec, 0);
  int64_t len = sql_int("SELECT octet_length(context) FROM mealy.instances");
  ck_assert_int_ge(len, BIG);
  ck_assert_int_le(len, BIG + 16);
  big_round(&rec); /* recovered: the context read back */
  ck_assert_uint_eq(rec, 1);
  fprintf(stderr, "context_16_mib: %.2f s (two runtimes)\n",
          (double)(uv_hrtime() - t0) / 1e9);
}
END_TEST

int main(void) {
  snprintf(db, sizeof db, "%s dbname=mly_net", conninfo());
  Suite *s = suite_create("pg_net");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 240);
  tcase_add_test(tc, kill_points);
  tcase_add_test(tc, restart_under_load);
  tcase_add_test(tc, outage_past_lease);
  tcase_add_test(tc, lock_held_then_released);
  tcase_add_test(tc, give_up_on_server_gone);
  tcase_add_test(tc, context_16_mib);
  tcase_add_test(tc, lost_claim_answer);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
