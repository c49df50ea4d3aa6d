/*
 * test_pg_tasks.c - tasks shared by several processes through the
 * PostgreSQL store's task pool (lib/store/pg_tasks.c), against a private
 * cluster (MLY_TEST_PG).
 *
 * Worker processes (fork) open the store and serve one queue; one of
 * them (the producer) adds the tasks.  The task function writes what it
 * does into tables of the test's own in the same database, from the
 * process that runs it: a row per run (t_runs), and counters of the
 * attempts running now, per queue and per key value, with the highest
 * each reached (t_cur, t_keys: increased when an attempt starts,
 * decreased before it reports).  Triggers keep when each task's row went
 * (its END committed: t_ended) and when each slot was granted (t_grants).
 *
 *   - every task runs exactly once, tasks run in more than one process,
 *     and the counters never went past max_concurrent or the key's limit
 *     (randomized: limits, keys, run times and seeds differ per round);
 *   - the grants of a rate-limited queue, in any window of w seconds
 *     after a grant, are at most bucket + rate * w (a count bound);
 *   - two workers are SIGKILLed at random moments and started again
 *     while the producer's tasks run: every task still runs to success,
 *     none starts after its success committed, no slot is left;
 *   - steps of other machines (mly_queue_slot_take, a YAML `queue:`) in
 *     three processes hold at most max_concurrent slots at once, and the
 *     key's limit per key value, summed over the processes;
 *   - a failed first attempt goes back to the pool with its backoff's
 *     eta: each task runs twice, the second run no earlier than the
 *     backoff after the first began;
 *   - the server restarted twice under the load: nothing lost, nothing
 *     run after its success, no slot left.
 * Each worker checks its slot table's free list (check_free_list) every
 * 100 ms: slots lent to the pool are never reused while their instances
 * live elsewhere.
 */
#include "harness.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "pg_helpers.h"

static char db[1024];

static int64_t sql_int(const char *q) { return pg_test_int(db, q); }

static void sql_exec(PGconn *c, const char *q) {
  PGresult *r = PQexec(c, q);
  ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK ||
                    PQresultStatus(r) == PGRES_TUPLES_OK,
                "%s: %s", q, PQresultErrorMessage(r));
  PQclear(r);
}

/* A fresh database with the schema and the test's tables. */
static void fresh_db(void) {
  PGconn *c = PQconnectdb(conninfo());
  ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
  PQclear(PQexec(c, "DROP DATABASE IF EXISTS mly_tasks WITH (FORCE)"));
  sql_exec(c, "CREATE DATABASE mly_tasks");
  PQfinish(c);
  char msg[512];
  ck_assert_msg(mly_store_pg_init(db, NULL, msg, sizeof msg) == 0, "%s", msg);
  c = pg_test_connect(db);
  sql_exec(c, "CREATE TABLE t_runs (id bigint, n integer, pid integer,"
              " t timestamptz)");
  sql_exec(c, "CREATE TABLE t_cur (one integer PRIMARY KEY, cur integer,"
              " maxc integer)");
  sql_exec(c, "INSERT INTO t_cur VALUES (1, 0, 0)");
  sql_exec(c, "CREATE TABLE t_keys (k text PRIMARY KEY, cur integer,"
              " maxc integer)");
  sql_exec(c, "CREATE TABLE t_meta (one integer PRIMARY KEY, added integer,"
              " ready integer)");
  sql_exec(c, "INSERT INTO t_meta VALUES (1, 0, 0)");
  sql_exec(c, "CREATE TABLE t_ended (id bigint, t timestamptz)");
  sql_exec(c, "CREATE TABLE t_grants (queue text, t timestamptz,"
              " instance bigint)");
  sql_exec(c, "CREATE FUNCTION t_on_end() RETURNS trigger LANGUAGE plpgsql"
              " AS $$BEGIN INSERT INTO t_ended VALUES (OLD.id,"
              " clock_timestamp()); RETURN OLD; END$$");
  sql_exec(c, "CREATE TRIGGER t_end AFTER DELETE ON mealy.instances FOR EACH"
              " ROW EXECUTE FUNCTION t_on_end()");
  sql_exec(c, "CREATE FUNCTION t_on_grant() RETURNS trigger LANGUAGE plpgsql"
              " AS $$BEGIN INSERT INTO t_grants VALUES (NEW.queue,"
              " NEW.granted_at, NEW.instance); RETURN NEW; END$$");
  sql_exec(c, "CREATE TRIGGER t_grant AFTER INSERT ON mealy.slots FOR EACH"
              " ROW EXECUTE FUNCTION t_on_grant()");
  PQfinish(c);
}

/* ---- a worker process ---- */

typedef struct wcfg {
  uint32_t nadd, total;  /* tasks this one adds; all of them */
  uint32_t maxc, keymax, nkeys, bucket;
  double rate;
  uint32_t lease_ms;
  uint32_t run_max_ms;   /* an attempt lasts 0..this */
  unsigned seed;
  uint32_t backoff_ms;   /* > 0: a first attempt fails (retried after it) */
} wcfg;

static PGconn *side;       /* the worker's connection for t_* */
static uint32_t acked;     /* its tasks whose creation is durable */
static const wcfg *cfg;

static void side_exec(const char *sql, int n, const char *const *v) {
  PGresult *r = PQexecParams(side, sql, n, NULL, v, NULL, NULL, 0);
  /* the server restarted (shared_server_restart): again, connected anew
   * (a row written twice is counted once by the checks) */
  for (int i = 0; i < 600 && PQstatus(side) == CONNECTION_BAD; i++) {
    PQclear(r);
    usleep(50000);
    PQreset(side);
    r = PQexecParams(side, sql, n, NULL, v, NULL, NULL, 0);
  }
  if (PQresultStatus(r) != PGRES_COMMAND_OK &&
      PQresultStatus(r) != PGRES_TUPLES_OK) {
    fprintf(stderr, "worker %d: %s: %s", (int)getpid(), sql,
            PQresultErrorMessage(r));
    _exit(4);
  }
  PQclear(r);
}

typedef struct attempt {
  uv_timer_t timer;
  mly_task *t;
  char key[32];
} attempt;

static void attempt_closed(uv_handle_t *h) { free(h->data); }

static void attempt_over(uv_timer_t *tm) {
  attempt *a = tm->data;
  const char *v[] = {a->key};
  side_exec("UPDATE t_cur SET cur = cur - 1", 0, NULL);
  side_exec("UPDATE t_keys SET cur = cur - 1 WHERE k = $1", 1, v);
  mly_task_done(a->t,
                cfg->backoff_ms && mly_task_attempt(a->t) == 1 ? MLY_TASK_RETRY
                                                               : MLY_TASK_OK,
                NULL);
  uv_close((uv_handle_t *)tm, attempt_closed);
}

static void job(mly_task *t, void *arg) {
  (void)arg;
  const mly_value *p = mly_task_payload(t);
  int64_t n = -1;
  const char *k = "";
  mly_map_get_int(p, "n", &n);
  mly_value_get_str(mly_map_get(p, "k"), &k, NULL);
  char id[24], sn[24], pid[24];
  snprintf(id, sizeof id, "%" PRIu64, (uint64_t)mly_task_id(t));
  snprintf(sn, sizeof sn, "%" PRId64, n);
  snprintf(pid, sizeof pid, "%d", (int)getpid());
  const char *v[] = {id, sn, pid};
  side_exec("INSERT INTO t_runs VALUES ($1, $2, $3, clock_timestamp())", 3, v);
  side_exec("UPDATE t_cur SET cur = cur + 1, maxc = greatest(maxc, cur + 1)",
            0, NULL);
  const char *kv[] = {k};
  side_exec("INSERT INTO t_keys VALUES ($1, 1, 1) ON CONFLICT (k) DO UPDATE"
            " SET cur = t_keys.cur + 1, maxc = greatest(t_keys.maxc,"
            " t_keys.cur + 1)", 1, kv);
  attempt *a = calloc(1, sizeof *a);
  if (!a) _exit(5);
  a->t = t;
  snprintf(a->key, sizeof a->key, "%s", k);
  uv_timer_init(mly_runtime_loop(mly_task_runtime(t)), &a->timer);
  a->timer.data = a;
  uv_timer_start(&a->timer, attempt_over,
                 cfg->run_max_ms ? (uint64_t)(rand() % (cfg->run_max_ms + 1))
                                 : 0,
                 0);
}

static void added(mly_runtime *rt, int status, mly_id id, void *arg) {
  (void)rt;
  (void)id;
  (void)arg;
  if (status != 0) {
    fprintf(stderr, "worker: a task was not added: %s\n", mly_strerror(status));
    _exit(6);
  }
  acked++;
}

static bool all_done;
static mly_runtime *wrt; /* the worker's */
static void check_free_list(mly_runtime *rt);

static void check(uv_timer_t *tm) {
  (void)tm;
  if (wrt) check_free_list(wrt); /* the invariant, every 100 ms */
  static bool told;
  if (!told && cfg->nadd && acked == cfg->nadd) {
    char n[24];
    snprintf(n, sizeof n, "%" PRIu32, cfg->nadd);
    const char *v[] = {n};
    side_exec("UPDATE t_meta SET added = added + $1", 1, v);
    told = true;
  }
  char tot[24];
  snprintf(tot, sizeof tot, "%" PRIu32, cfg->total);
  const char *v[] = {tot};
  if (PQstatus(side) == CONNECTION_BAD) PQreset(side); /* a restart */
  PGresult *r = PQexecParams(side,
                             "SELECT (SELECT added FROM t_meta) >= $1 AND NOT"
                             " EXISTS (SELECT 1 FROM mealy.instances)",
                             1, NULL, v, NULL, NULL, 0);
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't')
    all_done = true;
  PQclear(r);
}

/* The slot table's free list: every slot on it once, empty, and in
 * this process's range (slots lent to the pool, or of other ranges,
 * never reused here).  A worker exits 8 when it does not hold. */
static void check_free_list(mly_runtime *rt) {
  uint8_t *seen = calloc(rt->nslots + 1, 1);
  if (!seen) _exit(5);
  for (uint32_t i = 0; i < rt->nfree; i++) {
    uint32_t s = rt->free_slots[i];
    if (s >= rt->nslots || seen[s] || rt->slots[s] != NULL ||
        (rt->slots_confined && (s < rt->conf_lo || s >= rt->conf_hi))) {
      fprintf(stderr, "worker: slot %u on the free list wrongly\n", s);
      _exit(8);
    }
    seen[s] = 1;
  }
  free(seen);
}

static void worker(const wcfg *c) {
  cfg = c;
  srand(c->seed ^ (unsigned)getpid());
  side = PQconnectdb(db);
  if (PQstatus(side) != CONNECTION_OK) _exit(2);
  mly_runtime *rt = NULL;
  if (mly_runtime_new(&rt, NULL, NULL) < 0 || mly_queues_open(rt) < 0) _exit(2);
  mly_store_pg_options o = {.conninfo = db, .lease_ms = c->lease_ms,
                            .poll_ms = 200};
  char err[512];
  if (mly_store_postgres(rt, &o, err, sizeof err) < 0) {
    fprintf(stderr, "worker: %s\n", err);
    _exit(2);
  }
  mly_queue_def qd = {.name = "q", .max_concurrent = c->maxc,
                      .rate = c->rate, .bucket_size = c->bucket,
                      .concurrency_key = c->nkeys ? "k" : NULL,
                      .concurrency_key_max = c->keymax,
                      .retry = MLY_RETRY_UNSET};
  if (c->backoff_ms)
    qd.retry = (mly_retry){5, c->backoff_ms, c->backoff_ms, 0, 0, 0};
  if (mly_queue_declare(rt, &qd, err, sizeof err) < 0 ||
      mly_defer_register(rt, "job", job, NULL, 0) < 0) {
    fprintf(stderr, "worker: %s\n", err);
    _exit(2);
  }
  side_exec("UPDATE t_meta SET ready = ready + 1", 0, NULL);
  /* the producer adds once the two others serve the queue too */
  for (int i = 0; c->nadd && i < 3000; i++) {
    PGresult *r = PQexec(side, "SELECT ready >= 3 FROM t_meta");
    bool go = PQresultStatus(r) == PGRES_TUPLES_OK &&
              PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (go) break;
    usleep(10000);
  }
  for (uint32_t i = 0; i < c->nadd; i++) {
    mly_value *p = mly_value_map();
    char k[16];
    snprintf(k, sizeof k, "k%u", c->nkeys ? (unsigned)(rand() % c->nkeys) : 0);
    mly_map_set_int(p, "n", i);
    mly_map_set_str(p, "k", k);
    mly_task_opts to = {.queue = "q", .on_added = added};
    if (mly_defer(rt, "job", p, &to) < 0) _exit(3);
  }
  uv_timer_t tm;
  uv_timer_init(mly_runtime_loop(rt), &tm);
  uv_timer_start(&tm, check, 100, 100);
  wrt = rt;
  while (!all_done) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  check_free_list(rt);
  if (mly_journal_error(rt) != 0) _exit(7);
  _exit(0);
}

static pid_t start(const wcfg *c) {
  pid_t p = fork();
  ck_assert_int_ge(p, 0);
  if (p == 0) worker(c);
  return p;
}

/* Waits for every worker to end by itself (generous: a noisy machine);
 * each must exit 0. */
static void wait_all(pid_t *p, int n) {
  for (int i = 0; i < n; i++) {
    int st = 0;
    pid_t w = 0;
    for (int k = 0; k < 3000 && (w = waitpid(p[i], &st, WNOHANG)) == 0; k++)
      usleep(100000);
    if (w == 0) {
      fprintf(stderr, "stuck: %lld in the pool, %lld owned, %lld slots, %lld"
              " live nodes, %lld runs\n",
              (long long)sql_int("SELECT count(*) FROM mealy.instances"
                                 " WHERE owner IS NULL"),
              (long long)sql_int("SELECT count(*) FROM mealy.instances"
                                 " WHERE owner IS NOT NULL"),
              (long long)sql_int("SELECT count(*) FROM mealy.slots"),
              (long long)sql_int("SELECT count(*) FROM mealy.nodes WHERE"
                                 " taken_by IS NULL AND lease_until > now()"),
              (long long)sql_int("SELECT count(*) FROM t_runs"));
      for (int j = i; j < n; j++) kill(p[j], SIGKILL);
      ck_abort_msg("worker %d did not finish within 300 s", i);
    }
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "worker %d ended with status %d", i, st);
  }
}

static void check_once(uint32_t total) {
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), 0);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.slots"), 0);
  ck_assert_int_eq(sql_int("SELECT count(DISTINCT id) FROM t_ended"), total);
  ck_assert_int_eq(sql_int("SELECT count(DISTINCT id) FROM t_runs"), total);
  /* no run began after its task's success committed */
  ck_assert_int_eq(sql_int("SELECT count(*) FROM t_runs r JOIN t_ended e"
                           " ON e.id = r.id WHERE r.t > e.t"),
                   0);
}

/* Randomized rounds: limits, keys and run times differ; every task runs
 * once, in more than one process, within the limits. */
START_TEST(shared_once_within_limits) {
  unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
  srand(seed);
  int shared = 0;
  for (int round = 0; round < 3; round++) {
    wcfg c = {.nadd = 0, .total = 150 + (uint32_t)(rand() % 100),
              .maxc = 2 + (uint32_t)(rand() % 5),
              .keymax = 1 + (uint32_t)(rand() % 2),
              .nkeys = 2 + (uint32_t)(rand() % 4), .lease_ms = 10000,
              .run_max_ms = 1 + (uint32_t)(rand() % 15),
              .seed = seed + (unsigned)round};
    fprintf(stderr, "round %d: seed %u, %u tasks, max_concurrent %u, key max"
            " %u over %u keys, runs up to %u ms\n", round, seed, c.total,
            c.maxc, c.keymax, c.nkeys, c.run_max_ms);
    fresh_db();
    wcfg prod = c;
    prod.nadd = c.total;
    pid_t p[3] = {start(&prod), start(&c), start(&c)};
    wait_all(p, 3);
    check_once(c.total);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM t_runs"), c.total);
    /* who wins each claim is a race: one process may take a whole round
     * on a loaded host; over the rounds, more than one must run tasks */
    if (sql_int("SELECT count(DISTINCT pid) FROM t_runs") >= 2) shared++;
    int64_t maxc = sql_int("SELECT maxc FROM t_cur");
    int64_t keyc = sql_int("SELECT max(maxc) FROM t_keys");
    fprintf(stderr, "round %d: at most %" PRId64 " running, %" PRId64
            " per key\n", round, maxc, keyc);
    ck_assert_int_le(maxc, c.maxc);
    ck_assert_int_le(keyc, c.keymax);
    ck_assert_int_ge(maxc, 1);
  }
  ck_assert_int_ge(shared, 1);
}
END_TEST

/* A rate-limited queue: after any grant, the grants in the next w
 * seconds are at most bucket + rate * w, whichever process asked. */
START_TEST(shared_rate) {
  fresh_db();
  wcfg c = {.total = 90, .maxc = 50, .rate = 30, .bucket = 5,
            .lease_ms = 10000, .run_max_ms = 2, .seed = (unsigned)time(NULL)};
  wcfg prod = c;
  prod.nadd = c.total;
  pid_t p[3] = {start(&prod), start(&c), start(&c)};
  wait_all(p, 3);
  check_once(c.total);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM t_grants"), c.total);
  ck_assert_int_ge(sql_int("SELECT count(DISTINCT pid) FROM t_runs"), 2);
  const double w[] = {0.1, 0.5, 1.0};
  for (int i = 0; i < 3; i++) {
    char q[512];
    snprintf(q, sizeof q,
             "SELECT coalesce(max(n), 0) FROM (SELECT (SELECT count(*) FROM"
             " t_grants b WHERE b.t >= a.t AND b.t < a.t + interval '%g s')"
             " AS n FROM t_grants a) x", w[i]);
    int64_t most = sql_int(q);
    fprintf(stderr, "grants in %g s: at most %" PRId64 " (bound %g)\n", w[i],
            most, c.bucket + c.rate * w[i]);
    ck_assert_int_le(most, (int64_t)(c.bucket + c.rate * w[i]) + 1);
  }
}
END_TEST

/* Two workers are SIGKILLed at random moments and started again while
 * the producer's tasks run; nothing is lost and no task runs again
 * after its success committed. */
START_TEST(shared_kill) {
  fresh_db();
  unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
  srand(seed);
  wcfg c = {.total = 800, .maxc = 6, .nkeys = 0, .lease_ms = 1500,
            .run_max_ms = 40, .seed = seed};
  wcfg prod = c;
  prod.nadd = c.total;
  pid_t p[3] = {start(&prod), start(&c), start(&c)};
  int kills = 0;
  for (int i = 0; i < 3000 && sql_int("SELECT count(*) FROM t_runs") == 0; i++)
    usleep(10000); /* the tasks run */
  for (int round = 0; round < 12; round++) {
    usleep(50000 + (useconds_t)(rand() % 300000));
    if (sql_int("SELECT ((SELECT added FROM t_meta) >= 800 AND NOT EXISTS"
                " (SELECT 1 FROM mealy.instances))::int"))
      break;
    int v = 1 + rand() % 2;
    kill(p[v], SIGKILL);
    int st;
    ck_assert_int_eq(waitpid(p[v], &st, 0), p[v]);
    if (WIFEXITED(st)) { /* it had finished: all done */
      ck_assert_int_eq(WEXITSTATUS(st), 0);
    } else {
      kills++;
    }
    p[v] = start(&c);
  }
  fprintf(stderr, "seed %u: %d workers killed, %" PRId64 " runs\n", seed,
          kills, sql_int("SELECT count(*) FROM t_runs"));
  ck_assert_int_ge(kills, 1);
  wait_all(p, 3);
  check_once(c.total);
  ck_assert_int_eq(sql_int("SELECT count(DISTINCT n) FROM t_runs"), c.total);
}
END_TEST

/* The server restarted (pg_ctl restart -m fast) twice while three
 * processes run a queue's tasks: claims, grants and commits lose their
 * answers and the processes reconnect; every task still runs to its end,
 * none after its success committed, and no slot is left. */
START_TEST(shared_server_restart) {
  fresh_db();
  const char *cl = getenv("MLY_TEST_PG_CLUSTER");
  const char *dir = getenv("MLY_TEST_PG_DIR");
  ck_assert_msg(cl && dir, "run through test/pg/with_cluster.sh");
  unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
  srand(seed);
  wcfg c = {.total = 600, .maxc = 10, .lease_ms = 30000, .run_max_ms = 20,
            .seed = seed};
  wcfg prod = c;
  prod.nadd = c.total;
  pid_t p[3] = {start(&prod), start(&c), start(&c)};
  for (int i = 0; i < 3000 && sql_int("SELECT count(*) FROM t_runs") == 0; i++)
    usleep(10000);
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "bash '%s' restart '%s'", cl, dir);
  for (int r = 0; r < 2; r++) {
    usleep(100000 + (useconds_t)(rand() % 400000));
    ck_assert_int_eq(system(cmd), 0);
  }
  int64_t runs = sql_int("SELECT count(*) FROM t_runs");
  fprintf(stderr, "seed %u: two restarts, %" PRId64 " runs before the "
          "last\n", seed, runs);
  wait_all(p, 3);
  check_once(c.total);
  ck_assert_int_eq(sql_int("SELECT count(DISTINCT n) FROM t_runs"), c.total);
}
END_TEST

/* A first attempt that fails goes back to the pool with its backoff's
 * eta: every task runs twice, the second time no earlier than the
 * backoff after the first began (the eta is kept in the pool row), in
 * whichever process claims it. */
START_TEST(shared_retry_backoff) {
  fresh_db();
  wcfg c = {.total = 60, .maxc = 20, .lease_ms = 10000, .run_max_ms = 2,
            .seed = (unsigned)time(NULL), .backoff_ms = 300};
  wcfg prod = c;
  prod.nadd = c.total;
  pid_t p[3] = {start(&prod), start(&c), start(&c)};
  wait_all(p, 3);
  check_once(c.total);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM t_runs"), 2 * c.total);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM (SELECT id FROM t_runs"
                           " GROUP BY id HAVING count(*) = 2) x"),
                   c.total);
  /* the second run began at least the backoff after the first */
  ck_assert_int_eq(sql_int("SELECT count(*) FROM (SELECT id, max(t) - min(t)"
                           " AS d FROM t_runs GROUP BY id) x"
                           " WHERE d < interval '300 ms'"),
                   0);
}
END_TEST

/* ---- steps of other machines with a slot each (mly_queue_slot_take,
 * as a YAML `queue:` step): the slots count across processes too ---- */

typedef struct slotter {
  uint32_t hold_ms;
} slotter;

#define SLOTTER_POINTS(X) X(slotter, want) X(slotter, hold)
MLY_POINTS(slotter, SLOTTER_POINTS);

static uint32_t slotters_done;

static void count_in(mly_machine *m, int d) {
  const char *k = "";
  mly_value_get_str(mly_map_get(mly_instance_context(mly_machine_runtime(m),
                                                     mly_self(m)),
                                "k"),
                    &k, NULL);
  const char *kv[] = {k};
  if (d > 0) {
    side_exec("UPDATE t_cur SET cur = cur + 1, maxc = greatest(maxc, cur + 1)",
              0, NULL);
    side_exec("INSERT INTO t_keys VALUES ($1, 1, 1) ON CONFLICT (k) DO UPDATE"
              " SET cur = t_keys.cur + 1, maxc = greatest(t_keys.maxc,"
              " t_keys.cur + 1)", 1, kv);
  } else {
    side_exec("UPDATE t_cur SET cur = cur - 1", 0, NULL);
    side_exec("UPDATE t_keys SET cur = cur - 1 WHERE k = $1", 1, kv);
  }
}

static int slotter_run(mly_machine *m, void *data) {
  slotter *s = data;
  mly_runtime *rt = mly_machine_runtime(m);
  MLY_BEGIN(m);
  MLY_WAIT_UNTIL_AT(m, slotter_want,
                    mly_queue_slot_take(rt, "s", mly_self(m),
                                        mly_instance_context(rt, mly_self(m)))
                        != 0);
  count_in(m, 1);
  MLY_SLEEP_AT(m, slotter_hold, s->hold_ms);
  count_in(m, -1);
  mly_queue_slot_release(rt, mly_self(m));
  slotters_done++;
  MLY_END(m);
}

static void slots_check(uv_timer_t *tm) {
  (void)tm;
  /* every machine asked and was granted once at least (a grant goes
   * again to a machine that a process left early), and none is left */
  PGresult *r = PQexec(side, "SELECT (SELECT count(*) FROM mealy.instances)"
                             " = 0 AND (SELECT count(DISTINCT instance) FROM"
                             " t_grants) >= 120");
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't')
    all_done = true;
  PQclear(r);
}

static void slot_worker(const wcfg *c) {
  cfg = c;
  srand(c->seed ^ (unsigned)getpid());
  side = PQconnectdb(db);
  if (PQstatus(side) != CONNECTION_OK) _exit(2);
  mly_runtime *rt = NULL;
  if (mly_runtime_new(&rt, NULL, NULL) < 0 || mly_queues_open(rt) < 0) _exit(2);
  mly_type_def def = {.name = "slotter", .run = slotter_run,
                      MLY_TYPE_POINTS(slotter), .data_size = sizeof(slotter),
                      .version = 1, .flags = MLY_TYPE_DURABLE};
  mly_type *t;
  if (mly_type_register(rt, &def, &t) < 0) _exit(2);
  mly_store_pg_options o = {.conninfo = db, .lease_ms = c->lease_ms,
                            .poll_ms = 200};
  char err[512];
  if (mly_store_postgres(rt, &o, err, sizeof err) < 0) _exit(2);
  mly_queue_def qd = {.name = "s", .max_concurrent = c->maxc,
                      .concurrency_key = "k",
                      .concurrency_key_max = c->keymax,
                      .retry = MLY_RETRY_UNSET};
  if (mly_queue_declare(rt, &qd, err, sizeof err) < 0) _exit(2);
  side_exec("UPDATE t_meta SET ready = ready + 1", 0, NULL);
  for (int i = 0; i < 3000; i++) { /* all three start together */
    PGresult *r = PQexec(side, "SELECT ready >= 3 FROM t_meta");
    bool go = PQresultStatus(r) == PGRES_TUPLES_OK &&
              PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (go) break;
    usleep(10000);
  }
  for (uint32_t i = 0; i < c->nadd; i++) {
    slotter s = {.hold_ms = (uint32_t)(rand() % (c->run_max_ms + 1))};
    mly_value *ctx = mly_value_map();
    char k[16];
    snprintf(k, sizeof k, "k%u", (unsigned)(rand() % c->nkeys));
    mly_map_set_str(ctx, "k", k);
    mly_spawn_options so = {.arg = &s, .arg_len = sizeof s, .context = ctx};
    if (mly_spawn_opts(rt, t, &so, NULL) < 0) _exit(3);
  }
  /* on until every machine of every process ended (a process that
   * leaves early leaves its machines to the others) */
  uv_timer_t tm;
  uv_timer_init(mly_runtime_loop(rt), &tm);
  uv_timer_start(&tm, slots_check, 100, 100);
  while (!all_done) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  if (mly_journal_error(rt) != 0) _exit(7);
  _exit(0);
}

/* Steps of machines in three processes take slots of one queue: at most
 * max_concurrent hold one at once over all of them, at most the key's
 * limit per key value, and every slot is given back. */
START_TEST(shared_step_slots) {
  fresh_db();
  unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
  srand(seed);
  wcfg c = {.nadd = 40, .maxc = 2 + (uint32_t)(rand() % 3),
            .keymax = 1, .nkeys = 3 + (uint32_t)(rand() % 3),
            .lease_ms = 10000, .run_max_ms = 1 + (uint32_t)(rand() % 20),
            .seed = seed};
  pid_t p[3];
  for (int i = 0; i < 3; i++) {
    p[i] = fork();
    ck_assert_int_ge(p[i], 0);
    if (p[i] == 0) slot_worker(&c);
  }
  wait_all(p, 3);
  int64_t maxc = sql_int("SELECT maxc FROM t_cur");
  int64_t keyc = sql_int("SELECT max(maxc) FROM t_keys");
  fprintf(stderr, "step slots: seed %u, max_concurrent %u, %u keys: at most"
          " %" PRId64 " held, %" PRId64 " per key\n", seed, c.maxc, c.nkeys,
          maxc, keyc);
  ck_assert_int_le(maxc, c.maxc);
  ck_assert_int_le(keyc, c.keymax);
  ck_assert_int_ge(maxc, 1);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.slots"), 0);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), 0);
  ck_assert_int_eq(sql_int("SELECT count(DISTINCT instance) FROM t_grants"),
                   120);
}
END_TEST

int main(void) {
  snprintf(db, sizeof db, "%s dbname=mly_tasks", conninfo());
  Suite *s = suite_create("pg_tasks");
  TCase *tc = tcase_create("shared");
  tcase_set_timeout(tc, 900);
  tcase_add_test(tc, shared_once_within_limits);
  tcase_add_test(tc, shared_rate);
  tcase_add_test(tc, shared_kill);
  tcase_add_test(tc, shared_step_slots);
  tcase_add_test(tc, shared_retry_backoff);
  tcase_add_test(tc, shared_server_restart);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
