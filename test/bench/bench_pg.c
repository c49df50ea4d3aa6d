/*
 * bench_pg.c - the libpq connection on the loop (lib/store/pg_conn.c)
 * against the private cluster: run it as
 *   bash test/pg/with_cluster.sh build/test/bench/bench_pg
 * Figures: queries/s pipelined and one at a time (each sent from the
 * previous one's callback), and committed inserts/s, each its own
 * transaction (pipelined; fsync and synchronous_commit on) and many in
 * one transaction.  Lines "BENCH name value unit".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  return failed ? 1 : 0;
}
