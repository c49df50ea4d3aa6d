/*
 * bench_pg_tasks.c - tasks/s through one queue shared by processes over
 * the PostgreSQL store's task pool (lib/store/pg_tasks.c), on the
 * private cluster of test/pg/with_cluster.sh (fsync and
 * synchronous_commit on):
 *
 *   bash test/pg/with_cluster.sh build/test/bench/bench_pg_tasks
 *
 * Each of P processes (1, then 3) adds its share of BENCH_TASKS tasks
 * (30,000 by default) with its queue held (mly_queues_hold: nothing is
 * claimed), so that every task waits in the pool; then all are let go at
 * once and the time until the last task's end committed is measured (as
 * River measures jobs worked from a full table).  The function reports
 * success at once: what is measured is the claim (a slot each, in the
 * claim's transaction), the step that runs it and the commit that ends
 * it.  Lines "BENCH name value unit"; River's published ~46,000 jobs/s is
 * quoted beside them, not measured here.
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mealy.h"

static char dbci[1200];
static uint32_t acked;

static int64_t q1(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  int64_t v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                  ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                  : -1;
  PQclear(r);
  return v;
}

static void noop(mly_task *t, void *arg) {
  (void)arg;
  mly_task_done(t, MLY_TASK_OK, NULL);
}

static void added(mly_runtime *rt, int status, mly_id id, void *arg) {
  (void)rt, (void)id, (void)arg;
  if (status != 0) _exit(3);
  acked++;
}

static void on_go(uv_poll_t *p, int status, int events) {
  (void)status, (void)events;
  char x;
  if (read(p->io_watcher.fd, &x, 1) != 1) _exit(0); /* parent went */
  mly_queues_hold(p->data, false);
  uv_poll_stop(p);
}

static void child(uint32_t n, int go) {
  mly_runtime *rt;
  char err[512];
  if (mly_runtime_new(&rt, NULL, NULL) < 0 || mly_queues_open(rt) < 0) _exit(1);
  mly_store_pg_options o = {.conninfo = dbci, .lease_ms = 10000};
  if (mly_store_postgres(rt, &o, err, sizeof err) < 0) {
    fprintf(stderr, "bench_pg_tasks: %s\n", err);
    _exit(1);
  }
  mly_queue_def qd = {.name = "b", .retry = MLY_RETRY_UNSET};
  if (mly_queue_declare(rt, &qd, err, sizeof err) < 0 ||
      mly_defer_register(rt, "noop", noop, NULL, 0) < 0 ||
      mly_queues_hold(rt, true) < 0)
    _exit(1);
  for (uint32_t i = 0; i < n; i++) {
    mly_task_opts to = {.queue = "b", .on_added = added};
    if (mly_defer(rt, "noop", NULL, &to) < 0) _exit(2);
  }
  uv_poll_t p;
  uv_poll_init(mly_runtime_loop(rt), &p, go);
  p.data = rt;
  uv_poll_start(&p, UV_READABLE, on_go);
  for (;;) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
}

static double now_s(void) { return (double)uv_hrtime() / 1e9; }

/* P processes share `total` tasks; prints the figures. */
static int round_of(const char *ci, int procs, uint32_t total) {
  PGconn *k = PQconnectdb(ci);
  PQclear(PQexec(k, "DROP DATABASE IF EXISTS mly_bench_tasks WITH (FORCE)"));
  PQclear(PQexec(k, "CREATE DATABASE mly_bench_tasks"));
  PQfinish(k);
  snprintf(dbci, sizeof dbci, "%s dbname=mly_bench_tasks", ci);
  char msg[512];
  if (mly_store_pg_init(dbci, NULL, msg, sizeof msg) < 0) {
    fprintf(stderr, "bench_pg_tasks: init: %s\n", msg);
    return 1;
  }
  PGconn *c = PQconnectdb(dbci);
  uint32_t each = total / (uint32_t)procs;
  total = each * (uint32_t)procs;
  pid_t pid[8];
  int go[8];
  double t0 = now_s();
  for (int i = 0; i < procs; i++) {
    int p[2];
    if (pipe(p) < 0) return 1;
    pid[i] = fork();
    if (pid[i] == 0) {
      close(p[1]);
      child(each, p[0]);
    }
    close(p[0]);
    go[i] = p[1];
  }
  char q[256];
  snprintf(q, sizeof q,
           "SELECT count(*) = %" PRIu32 " FROM mealy.instances WHERE owner IS"
           " NULL", total);
  int rc = 0;
  for (int i = 0; i < 60000; i++) { /* every task in the pool */
    PGresult *r = PQexec(c, q);
    bool all = PQresultStatus(r) == PGRES_TUPLES_OK &&
               PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (all) break;
    usleep(10000);
  }
  double t1 = now_s();
  for (int i = 0; i < procs; i++)
    if (write(go[i], "g", 1) != 1) rc = 1;
  double t2 = 0;
  for (int i = 0; i < 120000; i++) {
    if (q1(c, "SELECT count(*) FROM mealy.instances") == 0) {
      t2 = now_s();
      break;
    }
    usleep(2000);
  }
  if (t2 == 0) {
    fprintf(stderr, "bench_pg_tasks: %d processes: not done in time\n", procs);
    rc = 1;
  }
  for (int i = 0; i < procs; i++) {
    kill(pid[i], SIGKILL);
    waitpid(pid[i], NULL, 0);
    close(go[i]);
  }
  PQfinish(c);
  if (rc) return rc;
  if (procs == 1) {
    printf("BENCH pg_tasks_1proc %.0f tasks/s\n", total / (t2 - t1));
    printf("BENCH pg_tasks_added_1proc %.0f tasks/s\n", total / (t1 - t0));
  } else {
    printf("BENCH pg_tasks_shared_%dproc %.0f tasks/s\n", procs,
           total / (t2 - t1));
    printf("BENCH pg_tasks_added_%dproc %.0f tasks/s\n", procs,
           total / (t1 - t0));
  }
  fflush(stdout);
  return 0;
}

int main(void) {
  const char *ci = getenv("MLY_TEST_PG");
  if (ci == NULL || *ci == '\0') {
    fprintf(stderr, "bench_pg_tasks: MLY_TEST_PG is not set: run it through "
                    "test/pg/with_cluster.sh\n");
    return 1;
  }
  const char *n = getenv("BENCH_TASKS");
  uint32_t total = n && *n ? (uint32_t)strtoul(n, NULL, 10) : 30000;
  int rc = round_of(ci, 1, total);
  if (rc == 0) rc = round_of(ci, 3, total);
  printf("# beside River's published ~46,000 jobs/s (quoted, not measured "
         "here)\n");
  return rc;
}
