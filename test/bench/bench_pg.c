/*
 * bench_pg.c - the libpq connection on the loop (lib/store/pg_conn.c)
 * against the private cluster: run it as
 *   bash test/pg/with_cluster.sh build/test/bench/bench_pg
 * Figures: queries/s pipelined and one at a time (each sent from the
 * previous one's callback), and committed inserts/s, each its own
 * transaction (pipelined; fsync and synchronous_commit on) and many in
 * one transaction.
 *
 * Then durable machines (steppers: a step, a yield, the next turn)
 * committing every step: 10,000 machines in one process and 10,000
 * shared by three processes (3,334 each, one database), on the
 * PostgreSQL store and, in the same run, on the journal (a state
 * directory per process under BENCH_DIR or ./bench-state: a real disk,
 * sync `always`).  Steps/s is every step of every process over the time
 * the slowest process took.  Then failover: a process holding 300
 * sleeping machines under a 2 s lease is killed (SIGKILL) while another
 * runs; the time from the kill until every one of them stepped again in
 * the survivor, which claims them while running (p50/p99 over the
 * rounds, BENCH_FAILOVER_ROUNDS, 20 by default).  Lines "BENCH name value unit".
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <libpq-fe.h>

#include "mealy.h"
#include "store/pg_conn.h"

static int left, failed;
static mly_pg *pg;
static const char *chain_sql;

static void on_done(mly_pg *p, const PGresult *res, const char *err,
                    void *arg) {
  (void)p;
  (void)res;
  (void)arg;
  if (err && failed++ == 0) fprintf(stderr, "bench_pg: %s\n", err);
  left--;
}

static void on_chain(mly_pg *p, const PGresult *res, const char *err,
                     void *arg) {
  on_done(p, res, err, arg);
  if (left > 0) mly_pg_query(pg, chain_sql, 0, NULL, on_chain, NULL);
}

static double now_s(uv_loop_t *loop) {
  uv_update_time(loop);
  return (double)uv_hrtime() / 1e9;
}

static void drain(uv_loop_t *loop) {
  while (left > 0) uv_run(loop, UV_RUN_ONCE);
}

static void pipelined(uv_loop_t *loop, const char *name, const char *sql,
                      int n, const char *unit) {
  left = n;
  double t0 = now_s(loop);
  for (int i = 0; i < n; i++) mly_pg_query(pg, sql, 0, NULL, on_done, NULL);
  drain(loop);
  printf("BENCH %s %.0f %s\n", name, n / (now_s(loop) - t0), unit);
}

/* ---- durable steppers on a store ---- */

typedef struct stepper {
  uint32_t n, target;
} stepper;
#define STEPPER_POINTS(X) X(stepper, next)
MLY_POINTS(stepper, STEPPER_POINTS);

static uint32_t finished;
static int stepper_run(mly_machine *m, void *data) {
  stepper *s = data;
  MLY_BEGIN(m);
  while (s->n < s->target) {
    s->n++;
    MLY_YIELD_AT(m, stepper_next);
  }
  finished++;
  MLY_END(m);
}

static char dbci[1200];

/* A fresh database with the schema. */
static void fresh_db(const char *c) {
  PGconn *k = PQconnectdb(c);
  PQclear(PQexec(k, "DROP DATABASE IF EXISTS mly_bench WITH (FORCE)"));
  PQclear(PQexec(k, "CREATE DATABASE mly_bench"));
  PQfinish(k);
  snprintf(dbci, sizeof dbci, "%s dbname=mly_bench", c);
  char msg[512];
  if (mly_store_pg_init(dbci, NULL, msg, sizeof msg) < 0) {
    fprintf(stderr, "bench_pg: init: %s\n", msg);
    exit(1);
  }
}

static mly_runtime *open_rt(bool pg, int k, uint32_t lease_ms) {
  mly_runtime *rt;
  if (mly_runtime_new(&rt, NULL, NULL) < 0) exit(1);
  mly_type_def def = {.name = "stepper", .run = stepper_run,
                      MLY_TYPE_POINTS(stepper), .data_size = sizeof(stepper),
                      .flags = MLY_TYPE_DURABLE};
  mly_type *t;
  if (mly_type_register(rt, &def, &t) < 0) exit(1);
  char err[512], dir[4200];
  int rc;
  if (pg) {
    mly_store_pg_options o = {.conninfo = dbci, .lease_ms = lease_ms};
    rc = mly_store_postgres(rt, &o, err, sizeof err);
  } else {
    const char *b = getenv("BENCH_DIR");
    snprintf(dir, sizeof dir, "%s/p%d", b && *b ? b : "bench-state", k);
    char cmd[8500];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    if (system(cmd) != 0) exit(1);
    mly_journal_options o = {.dir = dir, .sync = MLY_SYNC_ALWAYS};
    rc = mly_journal_open(rt, &o, err, sizeof err);
  }
  if (rc < 0) {
    fprintf(stderr, "bench_pg: open: %s\n", err);
    exit(1);
  }
  return rt;
}

/* One process's share: n machines of `steps` steps; writes its seconds. */
static void stepper_child(bool pg, int k, uint32_t n, uint32_t steps, int fd) {
  mly_runtime *rt = open_rt(pg, k, 10000);
  mly_type *t = mly_type_find(rt, "stepper");
  double t0 = (double)uv_hrtime() / 1e9;
  for (uint32_t i = 0; i < n; i++) {
    stepper s = {.target = steps};
    if (mly_spawn(rt, t, &s, sizeof s, NULL) < 0) exit(1);
  }
  while (finished < n) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  double secs = (double)uv_hrtime() / 1e9 - t0;
  if (mly_journal_error(rt) != 0) exit(2);
  if (write(fd, &secs, sizeof secs) != sizeof secs) exit(1);
  mly_runtime_close(rt);
  exit(0);
}

static void steppers(bool pg, int procs, uint32_t machines, uint32_t steps) {
  if (pg) fresh_db(getenv("MLY_TEST_PG"));
  int p[2];
  if (pipe(p) < 0) exit(1);
  uint32_t each = (machines + (uint32_t)procs - 1) / (uint32_t)procs;
  for (int k = 0; k < procs; k++)
    if (fork() == 0) stepper_child(pg, k, each, steps, p[1]);
  close(p[1]);
  double worst = 0, secs;
  int got = 0;
  while (read(p[0], &secs, sizeof secs) == sizeof secs) {
    got++;
    if (secs > worst) worst = secs;
  }
  close(p[0]);
  int st, bad = 0;
  while (wait(&st) > 0) bad += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
  if (bad || got != procs) {
    fprintf(stderr, "bench_pg: %d of %d processes failed\n", bad, procs);
    exit(1);
  }
  printf("BENCH durable_steps_%s_%dproc_%u %.0f steps/s\n",
         pg ? "postgresql" : "journal", procs, machines,
         (double)each * procs * steps / worst);
  fflush(stdout);
}

/* ---- failover ---- */

/* A sleeper wakes every 50 ms; one taken over by another process counts
 * its first step there, and the 300th writes the time (uv_hrtime: one
 * monotonic clock for every process of the machine). */
typedef struct sleeper {
  uint32_t n;
  bool counted;
} sleeper;
#define SLEEPER_POINTS(X) X(sleeper, nap)
MLY_POINTS(sleeper, SLEEPER_POINTS);

enum { FO_MACHINES = 300 };
static uint32_t adopted_steps;
static int fo_fd = -1;
static int sleeper_run(mly_machine *m, void *data) {
  sleeper *s = data;
  MLY_BEGIN(m);
  for (;;) {
    if (mly_recovered(m) && !s->counted) {
      s->counted = true;
      if (++adopted_steps == FO_MACHINES) {
        uint64_t t = uv_hrtime();
        if (write(fo_fd, &t, sizeof t) != sizeof t) exit(1);
      }
    }
    s->n++;
    MLY_SLEEP_AT(m, sleeper_nap, 50);
  }
  MLY_END(m);
}

static void never(uv_timer_t *t) {
  (void)t;
  exit(1);
}

/* n sleepers (0: none, it waits for others' to take over) under a 2 s
 * lease, until killed. */
static void fo_child(uint32_t n) {
  mly_runtime *rt;
  if (mly_runtime_new(&rt, NULL, NULL) < 0) exit(1);
  mly_type_def def = {.name = "sleeper", .run = sleeper_run,
                      MLY_TYPE_POINTS(sleeper), .data_size = sizeof(sleeper),
                      .flags = MLY_TYPE_DURABLE};
  mly_type *t;
  if (mly_type_register(rt, &def, &t) < 0) exit(1);
  char err[512];
  mly_store_pg_options o = {.conninfo = dbci, .lease_ms = 2000};
  if (mly_store_postgres(rt, &o, err, sizeof err) < 0) {
    fprintf(stderr, "bench_pg: open: %s\n", err);
    exit(1);
  }
  for (uint32_t i = 0; i < n; i++) {
    sleeper s = {0};
    if (mly_spawn(rt, t, &s, sizeof s, NULL) < 0) exit(1);
  }
  uv_timer_t keep;
  uv_timer_init(mly_runtime_loop(rt), &keep);
  uv_timer_start(&keep, never, 300000, 0);
  for (;;) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
}

static int64_t fo_sql(const char *q) {
  PGconn *k = PQconnectdb(dbci);
  PGresult *r = PQexec(k, q);
  int64_t v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                  ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                  : -1;
  PQclear(r);
  PQfinish(k);
  return v;
}

static int by_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Rounds: a survivor with nothing, a victim with 300 sleepers; the
 * victim is killed once every sleeper committed a step; the time until
 * all 300 stepped in the survivor. */
static void failover(int rounds) {
  uint64_t *ms = calloc((size_t)rounds, sizeof *ms);
  int got = 0;
  for (int r = 0; r < rounds; r++) {
    fresh_db(getenv("MLY_TEST_PG"));
    int p[2];
    if (pipe(p) < 0) exit(1);
    fo_fd = p[1];
    pid_t b = fork();
    if (b == 0) fo_child(0);
    pid_t a = fork();
    if (a == 0) fo_child(FO_MACHINES);
    close(p[1]);
    for (int i = 0; i < 3000 &&
                    fo_sql("SELECT count(*) FROM mealy.instances WHERE step "
                           ">= 2") < FO_MACHINES;
         i++)
      usleep(10000);
    uint64_t t0 = uv_hrtime(), t1;
    kill(a, SIGKILL);
    waitpid(a, NULL, 0);
    if (read(p[0], &t1, sizeof t1) == sizeof t1)
      ms[got++] = (t1 - t0) / 1000000;
    else fprintf(stderr, "bench_pg: failover round %d: no takeover\n", r);
    close(p[0]);
    kill(b, SIGKILL);
    waitpid(b, NULL, 0);
  }
  if (got == 0) exit(1);
  qsort(ms, (size_t)got, sizeof *ms, by_u64);
  printf("BENCH failover_lease2s_p50 %llu ms\n",
         (unsigned long long)ms[got / 2]);
  printf("BENCH failover_lease2s_p99 %llu ms\n",
         (unsigned long long)ms[(got * 99 + 99) / 100 - 1]);
  printf("BENCH failover_rounds %d rounds\n", got);
  free(ms);
}

int main(void) {
  const char *c = getenv("MLY_TEST_PG");
  if (!c) {
    fprintf(stderr, "bench_pg: MLY_TEST_PG is not set: run it through "
                    "test/pg/with_cluster.sh\n");
    return 1;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  if (mly_pg_open(&loop, c, false, &pg) < 0) return 1;
  left = 1;
  mly_pg_query(pg, "CREATE TABLE IF NOT EXISTS bench (x int)", 0, NULL,
               on_done, NULL);
  drain(&loop);

  pipelined(&loop, "pg_select_pipelined", "SELECT 1", 50000, "queries/s");

  left = 5000;
  chain_sql = "SELECT 1";
  double t0 = now_s(&loop);
  mly_pg_query(pg, chain_sql, 0, NULL, on_chain, NULL);
  drain(&loop);
  printf("BENCH pg_select_one_at_a_time %.0f queries/s\n",
         5000 / (now_s(&loop) - t0));

  pipelined(&loop, "pg_insert_commit_each_pipelined",
            "INSERT INTO bench VALUES (1)", 5000, "commits/s");

  left = 1;
  mly_pg_query(pg, "BEGIN", 0, NULL, on_done, NULL);
  drain(&loop);
  t0 = now_s(&loop);
  left = 50000;
  for (int i = 0; i < 50000; i++)
    mly_pg_query(pg, "INSERT INTO bench VALUES (2)", 0, NULL, on_done, NULL);
  left++;
  mly_pg_query(pg, "COMMIT", 0, NULL, on_done, NULL);
  drain(&loop);
  printf("BENCH pg_insert_one_transaction %.0f rows/s\n",
         50000 / (now_s(&loop) - t0));

  mly_pg_close(pg);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  fflush(stdout);

  for (int procs = 1; procs <= 3; procs += 2) {
    steppers(false, procs, 10000, 20);
    steppers(true, procs, 10000, 20);
  }
  const char *fr = getenv("BENCH_FAILOVER_ROUNDS");
  failover(fr && atoi(fr) > 0 ? atoi(fr) : 20);
  return failed ? 1 : 0;
}
