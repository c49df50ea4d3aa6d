/*
 * test_pg_conn.c - lib/store/pg_conn.c against a private PostgreSQL
 * cluster (MLY_TEST_PG, set by test/pg/with_cluster.sh): queries answered
 * on the loop without blocking it, pipelined queries in order, a failed
 * query failing alone, NOTIFY delivered, reconnection after
 * `pg_ctl restart -m fast` (the query in flight fails, the next works,
 * LISTEN holds again), an outage waited out with backoff (a query queued
 * while the server is down is answered once it is back), closing from
 * inside an answer, and a connection that cannot be made.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "mealy.h"
#include "pg_helpers.h"
#include "store/pg_conn.h"


/* Runs the loop until *flag or a generous limit (a stuck test fails). */
static void run_until(uv_loop_t *loop, const bool *flag) {
  for (long i = 0; !*flag && i < 20000000; i++) {
    if (uv_run(loop, UV_RUN_ONCE) == 0 && !*flag) {
      ck_abort_msg("the loop ran out of work before the answer came");
    }
  }
  ck_assert_msg(*flag, "no answer within the limit");
}

/* ---- the loop is not blocked while a query is pending ---- */

typedef struct answer {
  bool done;
  char err[512];
  char val[64];
  int order;
} answer;

static int next_order;

static void on_answer(mly_pg *pg, const PGresult *res, const char *err,
                      void *arg) {
  (void)pg;
  answer *a = arg;
  a->done = true;
  a->order = next_order++;
  if (err) snprintf(a->err, sizeof a->err, "%s", err);
  else if (PQntuples(res) > 0)
    snprintf(a->val, sizeof a->val, "%s", PQgetvalue(res, 0, 0));
}

static unsigned long turns;
static void on_check(uv_check_t *c) { (void)c; turns++; }
static void on_idle(uv_idle_t *i) { (void)i; }

static void close_loop(uv_loop_t *loop) {
  uv_run(loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(loop), 0);
}

/* A connection (with retry) that answered a first query */
static mly_pg *open_up(uv_loop_t *loop) {
  mly_pg *pg;
  ck_assert_int_eq(mly_pg_open(loop, conninfo(), true, &pg), 0);
  answer up = {0};
  ck_assert_int_eq(mly_pg_query(pg, "SELECT 1", 0, NULL, on_answer, &up), 0);
  run_until(loop, &up.done);
  ck_assert_str_eq(up.err, "");
  return pg;
}

START_TEST(loop_not_blocked) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mly_pg *pg = open_up(&loop);
  answer slow = {0};
  uv_check_t check;
  uv_idle_t idle;
  uv_check_init(&loop, &check);
  uv_check_start(&check, on_check);
  uv_idle_init(&loop, &idle);
  uv_idle_start(&idle, on_idle);
  turns = 0;
  ck_assert_int_eq(mly_pg_query(pg, "SELECT pg_sleep(0.2)::text || 'slept'",
                                0, NULL, on_answer, &slow),
                   0);
  run_until(&loop, &slow.done);
  ck_assert_str_eq(slow.err, "");
  ck_assert_str_eq(slow.val, "slept");
  /* a loop blocked in libpq for 0.2 s would have turned a few times */
  ck_assert_msg(turns >= 100, "the loop turned only %lu times", turns);
  uv_close((uv_handle_t *)&check, NULL);
  uv_close((uv_handle_t *)&idle, NULL);
  mly_pg_close(pg);
  close_loop(&loop);
}
END_TEST

/* ---- pipelined queries, in order; a failure fails only its query ----
 * Random sequences against a model: each query is answered once, in the
 * order sent, with its own value or its own error, whether it was queued
 * before the connection was up or sent on a live pipeline. */

enum { PIPE_N = 300 };

static void pipeline_round(uv_loop_t *loop, mly_pg *pg, unsigned seed) {
  static answer a[PIPE_N];
  static bool bad[PIPE_N];
  memset(a, 0, sizeof a);
  next_order = 0;
  srand(seed);
  for (int i = 0; i < PIPE_N; i++) {
    char v[16];
    snprintf(v, sizeof v, "%d", i);
    const char *vals[] = {v};
    bad[i] = rand() % 7 == 0;
    ck_assert_int_eq(mly_pg_query(pg,
                                  bad[i] ? "SELECT (1 / ($1::int - $1::int))::text"
                                         : "SELECT ($1::int * 2)::text",
                                  1, vals, on_answer, &a[i]),
                     0);
    if (rand() % 50 == 0) uv_run(loop, UV_RUN_NOWAIT); /* some go out early */
  }
  run_until(loop, &a[PIPE_N - 1].done);
  for (int i = 0; i < PIPE_N; i++) {
    ck_assert_msg(a[i].done, "seed %u: query %d unanswered", seed, i);
    ck_assert_int_eq(a[i].order, i);
    if (bad[i]) {
      ck_assert_msg(strstr(a[i].err, "division by zero"), "seed %u: %s", seed,
                    a[i].err);
    } else {
      char want[16];
      snprintf(want, sizeof want, "%d", i * 2);
      ck_assert_msg(!a[i].err[0], "seed %u: query %d: %s", seed, i, a[i].err);
      ck_assert_str_eq(a[i].val, want);
    }
  }
}

START_TEST(pipelined_in_order) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mly_pg *pg;
  ck_assert_int_eq(mly_pg_open(&loop, conninfo(), true, &pg), 0);
  unsigned seed = (unsigned)time(NULL);
  printf("pipelined_in_order: seed %u\n", seed);
  for (unsigned r = 0; r < 10; r++) /* the first before connecting */
    pipeline_round(&loop, pg, seed + r);
  ck_assert_uint_eq(mly_pg_connects(pg), 1);
  mly_pg_close(pg);
  close_loop(&loop);
}
END_TEST

/* ---- an explicit transaction spans queries ---- */

START_TEST(transaction_spans_queries) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mly_pg *pg;
  ck_assert_int_eq(mly_pg_open(&loop, conninfo(), true, &pg), 0);
  answer a[6] = {{0}};
  const char *q[] = {"CREATE TEMP TABLE t (x int)", "BEGIN",
                     "INSERT INTO t VALUES (1)", "ROLLBACK",
                     "INSERT INTO t VALUES (2)",
                     "SELECT string_agg(x::text, ',') FROM t"};
  for (int i = 0; i < 6; i++)
    ck_assert_int_eq(mly_pg_query(pg, q[i], 0, NULL, on_answer, &a[i]), 0);
  run_until(&loop, &a[5].done);
  for (int i = 0; i < 6; i++) ck_assert_str_eq(a[i].err, "");
  ck_assert_str_eq(a[5].val, "2");
  mly_pg_close(pg);
  close_loop(&loop);
}
END_TEST

/* ---- NOTIFY, and reconnection ---- */

typedef struct heard {
  int n;
  char payload[64];
} heard;

static void on_notify(mly_pg *pg, const char *channel, const char *payload,
                      void *arg) {
  (void)pg;
  heard *h = arg;
  if (strcmp(channel, "mly_test") == 0) {
    h->n++;
    snprintf(h->payload, sizeof h->payload, "%s", payload);
  }
}

static void notify_and_wait(uv_loop_t *loop, mly_pg *listener, mly_pg *sender,
                            heard *h, const char *payload) {
  answer sync = {0}, sent = {0};
  /* the LISTEN went out before this query: once it is answered, the
   * listener listens */
  ck_assert_int_eq(mly_pg_query(listener, "SELECT 1", 0, NULL, on_answer, &sync), 0);
  run_until(loop, &sync.done);
  ck_assert_str_eq(sync.err, "");
  int before = h->n;
  const char *vals[] = {payload};
  ck_assert_int_eq(mly_pg_query(sender, "SELECT pg_notify('mly_test', $1)", 1,
                                vals, on_answer, &sent),
                   0);
  run_until(loop, &sent.done);
  ck_assert_str_eq(sent.err, "");
  for (long i = 0; h->n == before && i < 20000000; i++) uv_run(loop, UV_RUN_ONCE);
  ck_assert_int_eq(h->n, before + 1);
  ck_assert_str_eq(h->payload, payload);
}

/* a listens on mly_test (a bad channel name is refused), b sends */
static void listener_and_sender(uv_loop_t *loop, mly_pg **a, mly_pg **b,
                                heard *h) {
  ck_assert_int_eq(mly_pg_open(loop, conninfo(), true, a), 0);
  ck_assert_int_eq(mly_pg_open(loop, conninfo(), true, b), 0);
  mly_pg_on_notify(*a, on_notify, h);
  ck_assert_int_eq(mly_pg_listen(*a, "Bad-Name"), MLY_EINVAL);
  ck_assert_int_eq(mly_pg_listen(*a, "mly_test"), 0);
}

START_TEST(notify_delivered) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mly_pg *a, *b;
  heard h = {0};
  listener_and_sender(&loop, &a, &b, &h);
  notify_and_wait(&loop, a, b, &h, "hello");
  notify_and_wait(&loop, a, b, &h, "again");
  mly_pg_close(a);
  mly_pg_close(b);
  close_loop(&loop);
}
END_TEST

/* cluster.sh restart|pause|resume on the suite's cluster */
static void server(const char *what) {
  const char *cl = getenv("MLY_TEST_PG_CLUSTER"), *dir = getenv("MLY_TEST_PG_DIR");
  ck_assert_msg(cl && dir, "MLY_TEST_PG_CLUSTER/_DIR not set");
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "bash '%s' %s '%s'", cl, what, dir);
  ck_assert_int_eq(system(cmd), 0);
}

START_TEST(reconnect_after_restart) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mly_pg *a, *b;
  heard h = {0};
  listener_and_sender(&loop, &a, &b, &h);
  notify_and_wait(&loop, a, b, &h, "before");
  ck_assert_uint_eq(mly_pg_connects(a), 1);
  answer inflight = {0}, next = {0};
  ck_assert_int_eq(mly_pg_query(a, "SELECT pg_sleep(60)::text", 0, NULL,
                                on_answer, &inflight),
                   0);
  server("restart"); /* the query is sent: it is in flight */
  run_until(&loop, &inflight.done);
  ck_assert_msg(inflight.err[0] != '\0', "the in-flight query did not fail");
  ck_assert_msg(strstr(inflight.err, "lost") || strstr(inflight.err, "terminat"),
                "unclear error: %s", inflight.err);
  ck_assert_int_eq(mly_pg_query(a, "SELECT 42::text", 0, NULL, on_answer, &next),
                   0);
  run_until(&loop, &next.done);
  ck_assert_str_eq(next.err, "");
  ck_assert_str_eq(next.val, "42");
  ck_assert_uint_eq(mly_pg_connects(a), 2);
  ck_assert(mly_pg_connected(a));
  /* b finds out on its next query (which may fail once), then works */
  for (int tries = 0; tries < 2; tries++) {
    answer x = {0};
    ck_assert_int_eq(mly_pg_query(b, "SELECT 1", 0, NULL, on_answer, &x), 0);
    run_until(&loop, &x.done);
    if (!x.err[0]) break;
  }
  notify_and_wait(&loop, a, b, &h, "after"); /* LISTEN holds again */
  mly_pg_close(a);
  mly_pg_close(b);
  close_loop(&loop);
}
END_TEST

/* The server down for a while: the connection is lost, attempts fail
 * (backoff), a query waits for the server, then goes out and is answered. */
START_TEST(waits_out_an_outage) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mly_pg *pg = open_up(&loop);
  answer later = {0};
  server("pause");
  /* the idle connection sees the server go */
  for (long i = 0; mly_pg_connected(pg) && i < 20000000; i++)
    uv_run(&loop, UV_RUN_ONCE);
  ck_assert(!mly_pg_connected(pg));
  ck_assert_int_eq(mly_pg_query(pg, "SELECT 'back'", 0, NULL, on_answer, &later),
                   0);
  /* until an attempt to connect again has failed */
  for (long i = 0; !strstr(mly_pg_last_error(pg), "cannot connect") && i < 20000000; i++)
    uv_run(&loop, UV_RUN_ONCE);
  ck_assert_msg(strstr(mly_pg_last_error(pg), "cannot connect"), "%s",
                mly_pg_last_error(pg));
  ck_assert(!mly_pg_connected(pg));
  ck_assert(!later.done);
  server("resume");
  run_until(&loop, &later.done);
  ck_assert_str_eq(later.err, "");
  ck_assert_str_eq(later.val, "back");
  ck_assert_uint_eq(mly_pg_connects(pg), 2);
  mly_pg_close(pg);
  close_loop(&loop);
}
END_TEST

/* mly_pg_close from inside an answer: that answer came, every later
 * query fails with "closed" once, queries after it are refused, and the
 * loop ends with nothing left open (ASan: no use after free). */
static void close_in_answer(mly_pg *pg, const PGresult *res, const char *err,
                            void *arg) {
  on_answer(pg, res, err, arg);
  mly_pg_close(pg);
  ck_assert_int_eq(mly_pg_query(pg, "SELECT 1", 0, NULL, on_answer, NULL),
                   MLY_ESHUTDOWN);
}

START_TEST(close_from_a_callback) {
  enum { N = 20, CLOSER = 5 };
  uv_loop_t loop;
  uv_loop_init(&loop);
  mly_pg *pg = open_up(&loop);
  answer a[N];
  memset(a, 0, sizeof a);
  next_order = 0;
  for (int i = 0; i < N; i++)
    ck_assert_int_eq(mly_pg_query(pg, "SELECT 'x'", 0, NULL,
                                  i == CLOSER ? close_in_answer : on_answer,
                                  &a[i]),
                     0);
  run_until(&loop, &a[N - 1].done);
  for (int i = 0; i < N; i++) {
    ck_assert(a[i].done);
    ck_assert_int_eq(a[i].order, i);
    if (i <= CLOSER) ck_assert_str_eq(a[i].val, "x");
    else ck_assert_str_eq(a[i].err, "the connection was closed");
  }
  close_loop(&loop);
}
END_TEST

START_TEST(cannot_connect) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mly_pg *pg;
  ck_assert_int_eq(mly_pg_open(&loop, "host=/nonexistent/dir dbname=x", false,
                               &pg), 0);
  answer a = {0};
  int rc = mly_pg_query(pg, "SELECT 1", 0, NULL, on_answer, &a);
  if (rc == 0) run_until(&loop, &a.done);
  else ck_assert_int_eq(rc, MLY_EIO);
  ck_assert_msg(strstr(rc == 0 ? a.err : mly_pg_last_error(pg),
                       "cannot connect"), "%s / %s", a.err, mly_pg_last_error(pg));
  ck_assert_int_eq(mly_pg_query(pg, "SELECT 1", 0, NULL, on_answer, &a),
                   MLY_EIO);
  mly_pg_close(pg);
  close_loop(&loop);
}
END_TEST

/* A "server" that accepts and never answers (a unix socket listening,
 * never read): the asynchronous connect gives up after connect_timeout
 * (libpq does not enforce it there), and so does a blocking one. */
START_TEST(connect_timeout_enforced) {
  char dir[] = "/tmp/mly-bh.XXXXXX", path[64], ci[256];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/.s.PGSQL.5432", dir);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  ck_assert_int_eq(listen(fd, 16), 0);
  snprintf(ci, sizeof ci, "host=%s dbname=x connect_timeout=2", dir);
  uv_loop_t loop;
  uv_loop_init(&loop);
  mly_pg *pg;
  ck_assert_int_eq(mly_pg_open(&loop, ci, false, &pg), 0);
  answer a = {0};
  int rc = mly_pg_query(pg, "SELECT 1", 0, NULL, on_answer, &a);
  ck_assert_int_eq(rc, 0);
  run_until(&loop, &a.done);
  ck_assert_msg(strstr(a.err, "timeout expired"), "%s", a.err);
  mly_pg_close(pg);
  close_loop(&loop);
  PGconn *c = mly_pg_connect_blocking(ci);
  ck_assert_int_eq(PQstatus(c), CONNECTION_BAD);
  PQfinish(c);
  close(fd);
  unlink(path);
  rmdir(dir);
}
END_TEST

/* A connection whose server stops answering (its backend stopped with
 * SIGSTOP: the socket stays up, nothing comes): the query waiting fails
 * once stall_ms passed with nothing read, and the connection is made
 * again, on which the next query is answered. */
START_TEST(silent_server_detected) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  mly_pg *pg = open_up(&loop);
  mly_pg_set_stall(pg, 1000);
  answer p = {0};
  ck_assert_int_eq(mly_pg_query(pg, "SELECT pg_backend_pid()", 0, NULL,
                                on_answer, &p), 0);
  run_until(&loop, &p.done);
  pid_t pid = (pid_t)atoi(p.val);
  ck_assert_int_gt(pid, 0);
  ck_assert_int_eq(kill(pid, SIGSTOP), 0);
  answer a = {0};
  ck_assert_int_eq(mly_pg_query(pg, "SELECT 1", 0, NULL, on_answer, &a), 0);
  run_until(&loop, &a.done);
  kill(pid, SIGCONT);
  ck_assert_msg(strstr(a.err, "no answer from the server"), "%s", a.err);
  answer b = {0};
  ck_assert_int_eq(mly_pg_query(pg, "SELECT 2", 0, NULL, on_answer, &b), 0);
  run_until(&loop, &b.done);
  ck_assert_str_eq(b.err, "");
  ck_assert_str_eq(b.val, "2");
  ck_assert_uint_ge(mly_pg_connects(pg), 2);
  mly_pg_close(pg);
  close_loop(&loop);
}
END_TEST

int main(void) {
  conninfo();
  Suite *s = suite_create("pg_conn");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, loop_not_blocked);
  tcase_add_test(tc, pipelined_in_order);
  tcase_add_test(tc, transaction_spans_queries);
  tcase_add_test(tc, notify_delivered);
  tcase_add_test(tc, reconnect_after_restart);
  tcase_add_test(tc, waits_out_an_outage);
  tcase_add_test(tc, close_from_a_callback);
  tcase_add_test(tc, cannot_connect);
  tcase_add_test(tc, connect_timeout_enforced);
  tcase_add_test(tc, silent_server_detected);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
