/*
 * test_pg_store.c - durable machines on the PostgreSQL store
 * (lib/store/pg_store.c) against a private cluster (MLY_TEST_PG):
 * counters run to their end with every step committed in the database;
 * a process killed half-way (its lease then runs out) is taken over by
 * the next one, whose counters continue from their last committed step
 * and end with exactly their target; a process whose lease another took
 * commits nothing more (the commit is fenced and counted, its instances
 * leave it) and the rows keep what was committed before; two processes
 * hold distinct slot ranges and node ids; a short lease is renewed in
 * the background, given up by a clean stop (the next process claims at
 * once), and one that ran out in the database evicts; a process
 * SIGSTOPped past its lease and continued commits nothing of the
 * instances the next one took, and says so.  While running, a live
 * process takes over what a SIGKILLed one left once its lease ran out;
 * two live processes racing for it: exactly one wins, every counter ends
 * once, at its target; one that does not know the type parks them.
 */
#include "harness.h"

#include <inttypes.h>
#include <stdbool.h>
#include <libpq-fe.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "durable.h"
#include "pg_helpers.h"
#include "store/pg_store.h"

static char db[1024];

static PGconn *dbc(void) { return pg_test_connect(db); }
static int64_t sql_int(const char *q) { return pg_test_int(db, q); }

static void sql_exec(const char *q) {
  PGconn *c = dbc();
  PGresult *r = PQexec(c, q);
  ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK ||
                    PQresultStatus(r) == PGRES_TUPLES_OK,
                "%s: %s", q, PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(c);
}

/* A fresh database with the schema, per test. */
static void fresh_db(void) {
  PGconn *c = PQconnectdb(conninfo());
  ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
  PQclear(PQexec(c, "DROP DATABASE IF EXISTS mly_store WITH (FORCE)"));
  PGresult *r = PQexec(c, "CREATE DATABASE mly_store");
  ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s",
                PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(c);
  char msg[512];
  ck_assert_msg(mly_store_pg_init(db, NULL, msg, sizeof msg) == 0, "%s", msg);
}

/* ---- a durable counter ---- */

#define NMAX 64
static uint32_t done_n[NMAX], done_recovered[NMAX], ndone;
static uint64_t ticks;

typedef struct counter {
  uint32_t idx, n, target, recovered, sleep_ms;
} counter;

#define COUNTER_POINTS(X) X(counter, tick)
MLY_POINTS(counter, COUNTER_POINTS);

static int counter_run(mly_machine *m, void *data) {
  counter *c = data;
  MLY_BEGIN(m);
  while (c->n < c->target) {
    if (mly_recovered(m)) c->recovered++;
    c->n++;
    ticks++;
    MLY_SLEEP_AT(m, counter_tick, c->sleep_ms);
  }
  if (mly_recovered(m)) c->recovered++;
  done_n[c->idx] = c->n;
  done_recovered[c->idx] = c->recovered;
  ndone++;
  MLY_END(m);
}

static void reset(void) {
  memset(done_n, 0, sizeof done_n);
  memset(done_recovered, 0, sizeof done_recovered);
  ndone = 0;
  ticks = 0;
}

static mly_runtime *open_pg(mly_type **t, uint32_t lease_ms) {
  mly_runtime *rt = h_runtime();
  mly_type_def def = {.name = "counter", .run = counter_run,
                      MLY_TYPE_POINTS(counter), .data_size = sizeof(counter),
                      .version = 1, .flags = MLY_TYPE_DURABLE};
  *t = h_type(rt, &def);
  mly_store_pg_options o = {.conninfo = db, .lease_ms = lease_ms};
  char err[512];
  int rc = mly_store_postgres(rt, &o, err, sizeof err);
  ck_assert_msg(rc == 0, "mly_store_postgres: %s", err);
  return rt;
}

static mly_store *store_of(mly_runtime *rt) { return rt->dur->s; }

static void spawn_counters(mly_runtime *rt, mly_type *t, uint32_t n,
                           uint32_t target, uint32_t sleep_ms) {
  for (uint32_t i = 0; i < n; i++) {
    counter c = {.idx = i, .target = target, .sleep_ms = sleep_ms};
    h_spawn(rt, t, &c, sizeof c);
  }
}

static void close_rt(mly_runtime *rt) {
  mly_runtime_shutdown(rt, 0);
  ck_assert_int_eq(mly_runtime_run(rt), 0);
  mly_runtime_close(rt);
}

START_TEST(counters_complete) {
  fresh_db();
  reset();
  mly_type *t;
  mly_runtime *rt = open_pg(&t, 0);
  ck_assert_uint_eq(store_of(rt)->slot_lo, 0); /* the first range */
  spawn_counters(rt, t, 20, 5, 0);
  /* while they run, their rows are there under this node */
  RUN_UNTIL(rt, ticks >= 20, 100000);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), 20);
  h_run(rt);
  ck_assert_uint_eq(ndone, 20);
  for (int i = 0; i < 20; i++) ck_assert_uint_eq(done_n[i], 5);
  ck_assert_uint_eq(ticks, 100); /* one run, no step twice */
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), 0);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.events"), 0);
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  ck_assert_uint_gt(st.batches, 0);
  ck_assert_uint_ge(st.records, 120); /* 20 creates, 100 steps */
  ck_assert_int_eq(mly_journal_error(rt), 0);
  mly_runtime_close(rt);
}
END_TEST

/* A child process runs counters and dies (SIGKILL) half-way; once its
 * lease ran out the next process takes them over and every counter ends
 * at exactly its target, from its last committed step. */
START_TEST(takeover_after_kill) {
  fresh_db();
  reset();
  int p[2];
  ck_assert_int_eq(pipe(p), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(p[0]);
    mly_type *t;
    mly_runtime *rt = open_pg(&t, 300);
    spawn_counters(rt, t, 30, 40, 1);
    bool told = false;
    for (;;) {
      uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
      if (!told && ticks >= 300) { /* a good part committed */
        told = true;
        if (write(p[1], "x", 1) != 1) _exit(3);
      }
    }
  }
  close(p[1]);
  char x;
  ck_assert_int_eq(read(p[0], &x, 1), 1);
  close(p[0]);
  kill(pid, SIGKILL);
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  int64_t left = sql_int("SELECT count(*) FROM mealy.instances");
  ck_assert_int_eq(left, 30);
  int64_t committed = sql_int("SELECT sum(step) FROM mealy.instances");
  ck_assert_int_gt(committed, 0);
  /* its lease (300 ms) runs out */
  for (int i = 0; i < 200 && sql_int("SELECT count(*) FROM mealy.nodes WHERE "
                                     "lease_until > now()") > 0;
       i++)
    usleep(20000);
  mly_type *t;
  mly_runtime *rt = open_pg(&t, 0);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.nodes WHERE taken_by "
                           "IS NOT NULL"),
                   1);
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  ck_assert_uint_eq(st.recovered, 30);
  /* the dead node's range came along and this one makes its instances
   * there: the range it took at registration (1) is free again */
  ck_assert_uint_eq(store_of(rt)->slot_lo, 0);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.ranges"), 1);
  h_run(rt);
  ck_assert_uint_eq(ndone, 30);
  for (int i = 0; i < 30; i++) {
    ck_assert_uint_eq(done_n[i], 40);
    ck_assert_uint_ge(done_recovered[i], 1);
  }
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), 0);
  mly_runtime_close(rt);
}
END_TEST

/* Another process took this one's node (its lease ran out while it was
 * paused): its next commit is refused, counted, its instances leave it,
 * and the rows keep what was committed before. */
START_TEST(fenced_commit) {
  fresh_db();
  reset();
  mly_type *t;
  mly_runtime *rt = open_pg(&t, 0);
  spawn_counters(rt, t, 10, 1000000, 5);
  RUN_UNTIL(rt, ticks >= 50, 100000);
  char q[256];
  int64_t node = pg_store_node(store_of(rt));
  /* as a claimant does: the lease ran out and another node took the
   * node, its instances and its range */
  int64_t other = sql_int("INSERT INTO mealy.nodes (host, pid, lease_until)"
                          " VALUES ('x', 0, now() + interval '1 hour')"
                          " RETURNING id");
  char cq[512];
  snprintf(cq, sizeof cq,
           "BEGIN; UPDATE mealy.nodes SET lease_until = now() - interval"
           " '1 s', taken_by = %" PRId64 " WHERE id = %" PRId64 ";"
           " UPDATE mealy.ranges SET node = %" PRId64 " WHERE node = %" PRId64
           "; UPDATE mealy.instances SET owner = %" PRId64 " WHERE owner = %"
           PRId64 "; COMMIT", other, node, other, node, other, node);
  sql_exec(cq);
  (void)q;
  int64_t before = sql_int("SELECT sum(step) FROM mealy.instances");
  const pg_store_fencing *f = pg_store_fencing_get(store_of(rt));
  RUN_UNTIL(rt, h_stat_live(rt) == 0, 100000);
  ck_assert_uint_ge(f->fenced_batches, 1);
  ck_assert_uint_ge(f->dropped_steps, 1);
  ck_assert_uint_eq(f->evicted, 10);
  ck_assert_int_eq(sql_int("SELECT sum(step) FROM mealy.instances"), before);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), 10);
  ck_assert_int_eq(mly_journal_error(rt), 0); /* not failed: fenced */
  ck_assert_uint_eq(ndone, 0);
  close_rt(rt);
  /* nothing changed on the way out either */
  ck_assert_int_eq(sql_int("SELECT sum(step) FROM mealy.instances"), before);
}
END_TEST

/* Two live processes: distinct nodes, epochs and slot ranges, so the
 * instance ids they make never collide. */
START_TEST(two_nodes_distinct_ranges) {
  fresh_db();
  reset();
  mly_type *t1, *t2;
  mly_runtime *a = open_pg(&t1, 0);
  mly_runtime *b = open_pg(&t2, 0);
  mly_store *sa = store_of(a), *sb = store_of(b);
  ck_assert_int_ne(pg_store_node(sa), pg_store_node(sb));
  ck_assert_int_lt(pg_store_epoch(sa), pg_store_epoch(sb));
  ck_assert_uint_ne(sa->slot_lo, sb->slot_lo);
  counter c = {.idx = 0, .target = 1};
  mly_id ia = h_spawn(a, t1, &c, sizeof c);
  c.idx = 1;
  mly_id ib = h_spawn(b, t2, &c, sizeof c);
  ck_assert_uint_ge((uint32_t)ia, sa->slot_lo);
  ck_assert_uint_lt((uint32_t)ia, sa->slot_hi);
  ck_assert_uint_ge((uint32_t)ib, sb->slot_lo);
  ck_assert_uint_lt((uint32_t)ib, sb->slot_hi);
  h_run(a);
  h_run(b);
  ck_assert_uint_eq(ndone, 2);
  mly_runtime_close(a);
  mly_runtime_close(b);
}
END_TEST

/* A short lease (300 ms) renewed in the background holds over seconds of
 * work; a clean stop gives it up, so the next process claims the
 * suspended instances at once and they finish from where they were. */
START_TEST(renewed_then_released) {
  fresh_db();
  reset();
  mly_type *t;
  mly_runtime *rt = open_pg(&t, 300);
  spawn_counters(rt, t, 5, 1000000, 10);
  uv_loop_t *loop = mly_runtime_loop(rt);
  uv_update_time(loop);
  uint64_t t0 = uv_now(loop);
  RUN_UNTIL(rt, (uv_update_time(loop), uv_now(loop) - t0 >= 1500), 10000000);
  const pg_store_fencing *f = pg_store_fencing_get(store_of(rt));
  ck_assert_uint_eq(f->fenced_batches, 0);
  ck_assert_uint_eq(f->evicted, 0);
  ck_assert_uint_eq(h_stat_live(rt), 5);
  close_rt(rt);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.nodes WHERE "
                           "lease_until > clock_timestamp()"),
                   0);
  int64_t before = sql_int("SELECT sum(step) FROM mealy.instances");
  mly_runtime *rt2 = open_pg(&t, 300);
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt2, &st), 0);
  ck_assert_uint_eq(st.recovered, 5);
  RUN_UNTIL(rt2, sql_int("SELECT sum(step) FROM mealy.instances") > before,
            10000000);
  close_rt(rt2);
}
END_TEST

/* The lease ran out in the database (nobody took the node yet): the
 * renewal finds it gone and the instances leave this process. */
START_TEST(lease_ran_out) {
  fresh_db();
  reset();
  mly_type *t;
  mly_runtime *rt = open_pg(&t, 300);
  spawn_counters(rt, t, 4, 1000000, 1000); /* a step a second: few commits */
  RUN_UNTIL(rt, ticks >= 4, 100000);
  char q[256];
  snprintf(q, sizeof q,
           "UPDATE mealy.nodes SET lease_until = now() - interval '1 s'"
           " WHERE id = %" PRId64, pg_store_node(store_of(rt)));
  sql_exec(q);
  RUN_UNTIL(rt, h_stat_live(rt) == 0, 10000000);
  ck_assert_uint_eq(pg_store_fencing_get(store_of(rt))->evicted, 4);
  close_rt(rt);
}
END_TEST

/* Fencing with real processes: A runs counters under a 500 ms lease and
 * is stopped (SIGSTOP) past it; B opens, takes A's node over and runs
 * every counter to exactly its target; A, continued, commits nothing of
 * what it lost (B's steps all matched their expected step), its
 * instances leave it, and it says so on stderr. */
START_TEST(sigstop_past_the_lease) {
  fresh_db();
  reset();
  char errpath[] = "/tmp/mly-pgfence.XXXXXX";
  int efd = mkstemp(errpath);
  ck_assert_int_ge(efd, 0);
  int up[2];
  ck_assert_int_eq(pipe(up), 0);
  pid_t a = fork();
  ck_assert_int_ge(a, 0);
  if (a == 0) {
    dup2(efd, 2);
    close(up[0]);
    mly_type *t;
    mly_runtime *rt = open_pg(&t, 500);
    spawn_counters(rt, t, 10, 200, 5);
    bool told = false;
    uv_loop_t *loop = mly_runtime_loop(rt);
    uint64_t t0 = uv_hrtime();
    while (!told || h_stat_live(rt) > 0) {
      uv_run(loop, UV_RUN_ONCE);
      if (!told && ticks >= 20) {
        told = true;
        if (write(up[1], "x", 1) != 1) _exit(3);
      }
      if (uv_hrtime() - t0 > 120e9) _exit(2);
    }
    pg_store_fencing f = *pg_store_fencing_get(store_of(rt));
    if (write(up[1], &f, sizeof f) != sizeof f) _exit(3);
    _exit(0);
  }
  close(up[1]);
  char x;
  ck_assert_int_eq(read(up[0], &x, 1), 1);
  ck_assert_int_eq(kill(a, SIGSTOP), 0);
  for (int i = 0; i < 500 && sql_int("SELECT count(*) FROM mealy.nodes WHERE "
                                     "lease_until > clock_timestamp()") > 0;
       i++)
    usleep(20000);
  mly_type *t;
  mly_runtime *b = open_pg(&t, 0);
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(b, &st), 0);
  ck_assert_uint_eq(st.recovered, 10);
  RUN_UNTIL(b, ndone == 10, 10000000);
  for (int i = 0; i < 10; i++) ck_assert_uint_eq(done_n[i], 200);
  ck_assert_uint_eq(pg_store_fencing_get(store_of(b))->fenced_batches, 0);
  ck_assert_int_eq(mly_journal_error(b), 0);
  ck_assert_int_eq(kill(a, SIGCONT), 0);
  pg_store_fencing f;
  ck_assert_int_eq(read(up[0], &f, sizeof f), (ssize_t)sizeof f);
  int status;
  ck_assert_int_eq(waitpid(a, &status, 0), a);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ck_assert_uint_eq(f.evicted, 10);
  char said[4096] = "";
  ssize_t n = pread(efd, said, sizeof said - 1, 0);
  ck_assert_int_gt(n, 0);
  ck_assert_msg(strstr(said, "10 instance(s) stop running here"), "%s", said);
  close(efd);
  unlink(errpath);
  close_rt(b); /* B's last batch (the ENDs) commits */
  /* nothing of A's reached the rows: B ended them all, none is left */
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), 0);
}
END_TEST

/* ---- three processes, SIGKILL at random moments ---- */

/* A counter that, at its end, appends "idx n step" to a file: its effect
 * outside the store (at least once; every line must say the same). */
static int done_fd = -1;
static int tally_run(mly_machine *m, void *data) {
  counter *c = data;
  MLY_BEGIN(m);
  while (c->n < c->target) {
    c->n++;
    MLY_SLEEP_AT(m, counter_tick, c->sleep_ms);
  }
  {
    char line[64];
    int k = snprintf(line, sizeof line, "%u %u %" PRIu64 "\n", c->idx, c->n,
                     mly_step_number(m));
    if (write(done_fd, line, (size_t)k) != k) abort();
  }
  MLY_END(m);
}

/* One worker process: claims what dead ones left, runs until its work is
 * done (then gives its lease up) or it is killed. */
static void tally_worker(int first_idx, int n, uint32_t target,
                         uint32_t sleep_ms) {
  mly_runtime *rt = h_runtime();
  mly_type_def def = {.name = "tally", .run = tally_run,
                      MLY_TYPE_POINTS(counter), .data_size = sizeof(counter),
                      .version = 1, .flags = MLY_TYPE_DURABLE};
  mly_type *t = h_type(rt, &def);
  mly_store_pg_options o = {.conninfo = db, .lease_ms = 400};
  char err[512];
  if (mly_store_postgres(rt, &o, err, sizeof err) < 0) {
    fprintf(stderr, "worker: %s\n", err);
    _exit(3);
  }
  for (int i = 0; i < n; i++) {
    counter c = {.idx = (uint32_t)(first_idx + i), .target = target,
                 .sleep_ms = sleep_ms};
    if (mly_spawn(rt, t, &c, sizeof c, NULL) < 0) _exit(4);
  }
  mly_runtime_run(rt);
  _exit(mly_journal_error(rt) == 0 ? 0 : 5);
}

static pid_t start_worker(int first_idx, int n) {
  pid_t p = fork();
  ck_assert_int_ge(p, 0);
  if (p == 0) tally_worker(first_idx, n, 150, 3);
  return p;
}

static int64_t live_leases(void) {
  return sql_int("SELECT count(*) FROM mealy.nodes WHERE taken_by IS NULL"
                 " AND lease_until > clock_timestamp()");
}

START_TEST(three_processes_sigkill) {
  fresh_db();
  char path[] = "/tmp/mly-pgtally.XXXXXX";
  done_fd = mkstemp(path);
  ck_assert_int_ge(done_fd, 0);
  enum { PROCS = 3, EACH = 10, ROUNDS = 8 };
  pid_t w[PROCS];
  for (int k = 0; k < PROCS; k++) w[k] = start_worker(k * EACH, EACH);
  /* every counter's create committed before the first kill (one killed
   * before would never have existed: nothing to keep) */
  for (int i = 0; i < 3000 && sql_int("SELECT count(*) FROM mealy.instances") <
                                  PROCS * EACH;
       i++)
    usleep(10000);
  srand((unsigned)getpid());
  int kills = 0;
  for (int r = 0; r < ROUNDS; r++) {
    usleep((useconds_t)(100000 + rand() % 400000));
    int k = rand() % PROCS;
    int status;
    if (waitpid(w[k], &status, WNOHANG) == w[k]) { /* done by itself */
      ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    } else {
      kill(w[k], SIGKILL);
      ck_assert_int_eq(waitpid(w[k], &status, 0), w[k]);
      kills++;
    }
    /* its lease runs out; the new process claims it */
    int64_t before = live_leases();
    for (int i = 0; i < 300 && live_leases() >= before && before > 0; i++)
      usleep(20000);
    w[k] = start_worker(0, 0);
  }
  /* the end: processes whose lease ran out are claimed by a last one */
  for (int i = 0; i < 3000 && sql_int("SELECT count(*) FROM mealy.instances") > 0;
       i++) {
    usleep(20000);
    if (i % 50 == 49 && sql_int("SELECT count(*) FROM mealy.instances i JOIN "
                                "mealy.nodes n ON n.id = i.owner WHERE "
                                "n.lease_until <= clock_timestamp()") > 0)
      start_worker(0, 0); /* reaped below */
  }
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), 0);
  int status;
  while (wait(&status) > 0)
    ck_assert(WIFSIGNALED(status) || WEXITSTATUS(status) == 0);
  /* every counter ended, at exactly its target and step */
  FILE *f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  bool seen[PROCS * EACH] = {false};
  unsigned idx, n;
  uint64_t step, step0 = 0;
  while (fscanf(f, "%u %u %" SCNu64, &idx, &n, &step) == 3) {
    ck_assert_uint_lt(idx, PROCS * EACH);
    ck_assert_uint_eq(n, 150);
    if (step0 == 0) step0 = step;
    ck_assert_uint_eq(step, step0); /* no step lost or applied twice */
    seen[idx] = true;
  }
  fclose(f);
  for (int i = 0; i < PROCS * EACH; i++) ck_assert_msg(seen[i], "counter %d", i);
  ck_assert_int_gt(kills, 0);
  unlink(path);
}
END_TEST

/* ---- takeover while running ---- */

/* A process that runs no counters of its own: it keeps its loop until
 * killed, taking over what dead ones left (tally_run writes a line per
 * counter that ended).  with_type false: it does not know "tally" (what
 * it takes over is parked; it writes how many to fd). */
static void never(uv_timer_t *t) {
  (void)t;
  abort(); /* ten minutes: the test that started it is long gone */
}

static void idle_worker(bool with_type, int fd) {
  mly_runtime *rt = h_runtime();
  mly_type_def def = {.name = "tally", .run = tally_run,
                      MLY_TYPE_POINTS(counter), .data_size = sizeof(counter),
                      .version = 1, .flags = MLY_TYPE_DURABLE};
  if (with_type) h_type(rt, &def);
  mly_store_pg_options o = {.conninfo = db, .lease_ms = 400};
  char err[512];
  if (mly_store_postgres(rt, &o, err, sizeof err) < 0) {
    fprintf(stderr, "worker: %s\n", err);
    _exit(3);
  }
  uv_timer_t keep; /* the loop runs with no instance of its own */
  uv_timer_init(mly_runtime_loop(rt), &keep);
  uv_timer_start(&keep, never, 600000, 0);
  size_t told = 0;
  for (;;) {
    uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
    if (mly_journal_error(rt) != 0) _exit(5);
    if (!with_type && rt->dur->nparked != told) {
      told = rt->dur->nparked;
      char line[32];
      int k = snprintf(line, sizeof line, "%zu\n", told);
      if (write(fd, line, (size_t)k) != k) _exit(6);
    }
  }
}

static pid_t start_idle(bool with_type, int fd) {
  pid_t p = fork();
  ck_assert_int_ge(p, 0);
  if (p == 0) idle_worker(with_type, fd);
  return p;
}

/* A process that runs n tally counters (lease 400 ms) until killed. */
static pid_t start_counters(int n, uint32_t target, uint32_t sleep_ms) {
  pid_t a = fork();
  ck_assert_int_ge(a, 0);
  if (a == 0) tally_worker(0, n, target, sleep_ms);
  return a;
}

/* A runs counters; B and C run none and stay; A is killed: once its
 * lease ran out exactly one of B and C takes its node over (one
 * taken_by, one adopter), and every counter ends there exactly once, at
 * its target and the same step. */
START_TEST(live_takeover_race) {
  fresh_db();
  char path[] = "/tmp/mly-pgadopt.XXXXXX";
  done_fd = mkstemp(path);
  ck_assert_int_ge(done_fd, 0);
  enum { N = 20, TARGET = 400 };
  pid_t b = start_idle(true, -1), c = start_idle(true, -1);
  pid_t a = start_counters(N, TARGET, 2);
  /* a good part of A's steps committed, none ended */
  for (int i = 0; i < 3000 && sql_int("SELECT coalesce(min(step), 0) FROM "
                                      "mealy.instances") < 20;
       i++)
    usleep(10000);
  ck_assert_int_ge(sql_int("SELECT min(step) FROM mealy.instances"), 20);
  kill(a, SIGKILL);
  int status;
  ck_assert_int_eq(waitpid(a, &status, 0), a);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), N);
  /* B or C continues them: they end, with no process started */
  for (int i = 0; i < 6000 && sql_int("SELECT count(*) FROM mealy.instances") > 0;
       i++)
    usleep(10000);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), 0);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.nodes WHERE taken_by "
                           "IS NOT NULL"),
                   1);
  /* the one that took it holds A's range; the other none of it */
  ck_assert_int_eq(sql_int("SELECT count(DISTINCT taken_by) FROM mealy.nodes"),
                   1);
  /* both still run (neither was fenced into failing) */
  ck_assert_int_eq(waitpid(b, &status, WNOHANG), 0);
  ck_assert_int_eq(waitpid(c, &status, WNOHANG), 0);
  kill(b, SIGKILL);
  kill(c, SIGKILL);
  waitpid(b, &status, 0);
  waitpid(c, &status, 0);
  FILE *f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  unsigned seen[N] = {0}, idx, n;
  uint64_t step, step0 = 0;
  while (fscanf(f, "%u %u %" SCNu64, &idx, &n, &step) == 3) {
    ck_assert_uint_lt(idx, N);
    ck_assert_uint_eq(n, TARGET);
    if (step0 == 0) step0 = step;
    ck_assert_uint_eq(step, step0);
    seen[idx]++;
  }
  fclose(f);
  for (int i = 0; i < N; i++)
    ck_assert_msg(seen[i] == 1, "counter %d ended %u times", i, seen[i]);
  unlink(path);
}
END_TEST

/* The live process that takes over does not know the type: the
 * instances are parked there (as at open), kept in the database. */
START_TEST(live_takeover_parks) {
  fresh_db();
  int p[2];
  ck_assert_int_eq(pipe(p), 0);
  done_fd = -1;
  pid_t b = start_idle(false, p[1]);
  close(p[1]);
  pid_t a = start_counters(5, 1000000, 5);
  for (int i = 0; i < 3000 && sql_int("SELECT coalesce(min(step), 0) FROM "
                                      "mealy.instances") < 3;
       i++)
    usleep(10000);
  kill(a, SIGKILL);
  int status;
  waitpid(a, &status, 0);
  FILE *f = fdopen(p[0], "r");
  unsigned parked = 0;
  ck_assert_int_eq(fscanf(f, "%u", &parked), 1); /* blocks until told */
  fclose(f);
  ck_assert_uint_eq(parked, 5);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances i JOIN "
                           "mealy.nodes n ON n.id = i.owner WHERE "
                           "n.taken_by IS NULL"),
                   5);
  kill(b, SIGKILL);
  waitpid(b, &status, 0);
}
END_TEST

/* ---- events between processes ---- */

#define PING 7
#define PONG 8
enum { PP_N = 150 };
typedef struct pp {
  uint32_t n;
  mly_id peer;
} pp;
#define PINGER_POINTS(X) X(pinger, asked)
MLY_POINTS(pinger, PINGER_POINTS);
#define PONGER_POINTS(X) X(ponger, listen)
MLY_POINTS(ponger, PONGER_POINTS);

static void pp_line(const char *who, uint32_t n) {
  char line[32];
  int k = snprintf(line, sizeof line, "%s %u\n", who, n);
  if (write(done_fd, line, (size_t)k) != k) abort();
}

static int pinger_run(mly_machine *m, void *data) {
  pp *p = data;
  MLY_BEGIN(m);
  while (p->n < PP_N) {
    if (mly_send(m, p->peer, PING, NULL) < 0) abort();
    MLY_AWAIT_AT(m, pinger_asked, PONG, -1);
    p->n++;
  }
  pp_line("P", p->n);
  MLY_END(m);
}

static int ponger_run(mly_machine *m, void *data) {
  pp *p = data;
  MLY_BEGIN(m);
  while (p->n < PP_N) {
    MLY_AWAIT_AT(m, ponger_listen, PING, -1);
    if (mly_send(m, mly_current_event(m)->from, PONG, NULL) < 0) abort();
    p->n++;
  }
  pp_line("Q", p->n);
  MLY_END(m);
}

/* A process with both types: spawns a ponger (peer 0) or a pinger at
 * peer, writes the id to fd, and runs until killed. */
static void pp_worker(mly_id peer, int fd) {
  mly_runtime *rt = h_runtime();
  mly_type_def dp = {.name = "pinger", .run = pinger_run,
                     MLY_TYPE_POINTS(pinger), .data_size = sizeof(pp),
                     .version = 1, .flags = MLY_TYPE_DURABLE};
  mly_type_def dq = {.name = "ponger", .run = ponger_run,
                     MLY_TYPE_POINTS(ponger), .data_size = sizeof(pp),
                     .version = 1, .flags = MLY_TYPE_DURABLE};
  mly_type *ta = h_type(rt, &dp), *tb = h_type(rt, &dq);
  mly_store_pg_options o = {.conninfo = db, .lease_ms = 400, .poll_ms = 200};
  char err[512];
  if (mly_store_postgres(rt, &o, err, sizeof err) < 0) _exit(3);
  pp x = {.peer = peer};
  mly_id id;
  if (mly_spawn(rt, peer ? ta : tb, &x, sizeof x, &id) < 0) _exit(4);
  if (write(fd, &id, sizeof id) != sizeof id) _exit(6);
  uv_timer_t keep;
  uv_timer_init(mly_runtime_loop(rt), &keep);
  uv_timer_start(&keep, never, 600000, 0);
  for (;;) {
    uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
    if (mly_journal_error(rt) != 0) _exit(5);
  }
}

/* A pinger in X, a ponger in Y: every ping and pong goes through the
 * database (the owner woken by NOTIFY).  Y is killed half-way; X takes
 * the ponger over with its pending pings and the conversation ends with
 * both at exactly PP_N, once each. */
START_TEST(ping_pong_across_processes) {
  fresh_db();
  char path[] = "/tmp/mly-pgpp.XXXXXX";
  done_fd = mkstemp(path);
  ck_assert_int_ge(done_fd, 0);
  int p[2];
  ck_assert_int_eq(pipe(p), 0);
  pid_t y = fork();
  ck_assert_int_ge(y, 0);
  if (y == 0) pp_worker(0, p[1]);
  mly_id q = 0;
  ck_assert_int_eq(read(p[0], &q, sizeof q), (ssize_t)sizeof q);
  pid_t x = fork();
  ck_assert_int_ge(x, 0);
  if (x == 0) pp_worker(q, p[1]);
  mly_id pi = 0;
  ck_assert_int_eq(read(p[0], &pi, sizeof pi), (ssize_t)sizeof pi);
  char sq[128];
  snprintf(sq, sizeof sq, "SELECT coalesce(max(step), 0) FROM "
           "mealy.instances WHERE id = %" PRIu64, q);
  /* the ponger answered a good part, each ping from the other process */
  for (int i = 0; i < 6000 && sql_int(sq) < PP_N / 3; i++) usleep(10000);
  ck_assert_int_ge(sql_int(sq), PP_N / 3);
  ck_assert_int_eq(sql_int("SELECT count(DISTINCT owner) FROM "
                           "mealy.instances"),
                   2);
  kill(y, SIGKILL);
  int status;
  ck_assert_int_eq(waitpid(y, &status, 0), y);
  for (int i = 0; i < 6000 && sql_int("SELECT count(*) FROM mealy.instances") > 0;
       i++)
    usleep(10000);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), 0);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.events"), 0);
  ck_assert_int_eq(waitpid(x, &status, WNOHANG), 0); /* still running */
  kill(x, SIGKILL);
  waitpid(x, &status, 0);
  FILE *f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  char who[4];
  unsigned n, np = 0, nq = 0;
  while (fscanf(f, "%3s %u", who, &n) == 2) {
    ck_assert_uint_eq(n, PP_N);
    if (who[0] == 'P') np++;
    else nq++;
  }
  fclose(f);
  ck_assert_uint_eq(np, 1);
  ck_assert_uint_eq(nq, 1);
  unlink(path);
  close(p[0]);
  close(p[1]);
}
END_TEST

/* The fallback: an event row another process committed without a
 * notification (inserted here by SQL) is found by the poll (poll_ms),
 * delivered once, and its row goes with the step that consumed it. */
static uint32_t waiter_got;
#define WAITER_POINTS(X) X(waiter, wait) X(waiter, after)
MLY_POINTS(waiter, WAITER_POINTS);
static int waiter_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT_AT(m, waiter_wait, 9, -1);
  waiter_got++;
  MLY_YIELD_AT(m, waiter_after); /* a step after the one that consumed it */
  MLY_END(m);
}

/* An event for id inserted by SQL, as "node 999" would commit it, with
 * no notification. */
static void insert_foreign_event(mly_id id) {
  /* E [eid, to, ev, from, flags, corr, status, aux, payload], made by
   * "node 999" */
  jbuf b = {0};
  uint64_t eid = (999ull << 40) + 1;
  jb_array(&b, 9);
  jb_uint(&b, eid);
  jb_uint(&b, id);
  jb_uint(&b, 9);
  for (int i = 0; i < 5; i++) jb_uint(&b, 0);
  jb_nil(&b);
  char seid[24], sid[24];
  snprintf(seid, sizeof seid, "%" PRIu64, eid);
  snprintf(sid, sizeof sid, "%" PRIu64, id);
  const char *v[] = {seid, sid, (const char *)b.p};
  int lens[] = {0, 0, (int)b.n}, fmts[] = {0, 0, 1};
  PGconn *c = dbc();
  PGresult *r = PQexecParams(c,
                             "INSERT INTO mealy.events (eid, target, sender,"
                             " body) VALUES ($1, $2, 0, $3)",
                             3, NULL, v, lens, fmts, 0);
  ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s",
                PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(c);
  jb_free(&b);
}

START_TEST(poll_finds_unnotified_events) {
  fresh_db();
  mly_runtime *rt = h_runtime();
  mly_type_def def = {.name = "waiter", .run = waiter_run,
                      MLY_TYPE_POINTS(waiter), .data_size = 8,
                      .version = 1, .flags = MLY_TYPE_DURABLE};
  mly_type *t = h_type(rt, &def);
  mly_store_pg_options o = {.conninfo = db, .poll_ms = 100};
  char err[512];
  ck_assert_msg(mly_store_postgres(rt, &o, err, sizeof err) == 0, "%s", err);
  mly_id id;
  ck_assert_int_eq(mly_spawn(rt, t, NULL, 0, &id), 0);
  waiter_got = 0;
  RUN_UNTIL(rt, sql_int("SELECT count(*) FROM mealy.instances WHERE step "
                        ">= 1") == 1,
            100000);
  insert_foreign_event(id);
  RUN_UNTIL(rt, waiter_got == 1, 100000);
  RUN_UNTIL(rt, sql_int("SELECT count(*) FROM mealy.events") == 0, 100000);
  ck_assert_uint_eq(pg_store_fencing_get(store_of(rt))->delivered, 1);
  h_run(rt);
  ck_assert_uint_eq(waiter_got, 1);
  mly_runtime_close(rt);
}
END_TEST


/* ---- a node whose lease ran out comes back (rejoin) ---- */

/* The server kept this node's row locked past its lease (as an outage
 * longer than the lease): its instances leave; while it cannot come
 * back, a durable spawn is refused (MLY_EAGAIN, never a 0 with nothing
 * stored); then it rejoins with a new epoch, its instances (nobody took
 * them) run on here, and what it spawns is stored. */
START_TEST(rejoin_after_outage) {
  fresh_db();
  reset();
  mly_type *t;
  mly_runtime *rt = open_pg(&t, 300);
  spawn_counters(rt, t, 4, 1000000, 20);
  RUN_UNTIL(rt, ticks >= 8, 100000);
  const pg_store_fencing *f = pg_store_fencing_get(store_of(rt));
  int64_t node = pg_store_node(store_of(rt)),
          epoch = pg_store_epoch(store_of(rt));
  char q[256];
  PGconn *c = dbc();
  PQclear(PQexec(c, "BEGIN"));
  snprintf(q, sizeof q, "UPDATE mealy.nodes SET lease_until = now() -"
           " interval '1 s' WHERE id = %" PRId64, node);
  PGresult *r = PQexec(c, q);
  ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  RUN_UNTIL(rt, f->evicted == 4, 100000);
  ck_assert_uint_eq(h_stat_live(rt), 0);
  counter k = {.idx = 9, .target = 3, .sleep_ms = 1};
  mly_id id;
  ck_assert_int_eq(mly_spawn(rt, t, &k, sizeof k, &id), MLY_EAGAIN);
  ck_assert_uint_eq(f->rejoins, 0);
  PQclear(PQexec(c, "COMMIT"));
  PQfinish(c);
  RUN_UNTIL(rt, f->rejoins == 1 && h_stat_live(rt) == 4, 100000);
  ck_assert_int_gt(pg_store_epoch(store_of(rt)), epoch);
  ck_assert_uint_eq(f->reranges, 0); /* nobody took its range */
  uint64_t was = ticks;
  RUN_UNTIL(rt, ticks >= was + 8, 100000); /* they run on */
  ck_assert_int_eq(mly_spawn(rt, t, &k, sizeof k, &id), 0);
  RUN_UNTIL(rt, ndone == 1, 100000);
  ck_assert_uint_eq(done_n[9], 3);
  ck_assert_int_eq(mly_journal_error(rt), 0);
  snprintf(q, sizeof q, "SELECT count(*) FROM mealy.instances WHERE owner ="
           " %" PRId64 " AND epoch = %" PRId64, node,
           pg_store_epoch(store_of(rt)));
  RUN_UNTIL(rt, sql_int(q) == 4, 100000); /* the END of 9 commits */
  close_rt(rt);
}
END_TEST

/* As a claimant does while this node is paused: another node took its
 * row, instances and slot range.  The node comes back on a free range:
 * what it spawns is stored, with ids in that range, and the instances it
 * lost stay the claimant's. */
START_TEST(rejoin_after_takeover) {
  fresh_db();
  reset();
  mly_type *t;
  mly_runtime *rt = open_pg(&t, 300);
  spawn_counters(rt, t, 4, 1000000, 20);
  RUN_UNTIL(rt, ticks >= 8, 100000);
  const pg_store_fencing *f = pg_store_fencing_get(store_of(rt));
  int64_t node = pg_store_node(store_of(rt));
  uint32_t old = pg_store_slot_base(store_of(rt)) >> PG_RANGE_BITS;
  int64_t other = sql_int("INSERT INTO mealy.nodes (host, pid, lease_until)"
                          " VALUES ('x', 0, now() + interval '1 hour')"
                          " RETURNING id");
  char q[512];
  snprintf(q, sizeof q,
           "BEGIN; UPDATE mealy.nodes SET lease_until = now() - interval"
           " '1 s', taken_by = %" PRId64 " WHERE id = %" PRId64 ";"
           " UPDATE mealy.ranges SET node = %" PRId64 " WHERE node = %" PRId64
           "; UPDATE mealy.instances SET owner = %" PRId64 " WHERE owner = %"
           PRId64 "; COMMIT", other, node, other, node, other, node);
  sql_exec(q);
  RUN_UNTIL(rt, f->rejoins == 1, 100000);
  ck_assert_uint_eq(f->evicted, 4);
  ck_assert_uint_eq(f->reranges, 1);
  uint32_t now = pg_store_slot_base(store_of(rt)) >> PG_RANGE_BITS;
  ck_assert_uint_ne(now, old);
  counter k = {.idx = 9, .target = 1000000, .sleep_ms = 20};
  mly_id id;
  ck_assert_int_eq(mly_spawn(rt, t, &k, sizeof k, &id), 0);
  ck_assert_uint_eq((uint32_t)id >> PG_RANGE_BITS, now);
  snprintf(q, sizeof q, "SELECT count(*) FROM mealy.instances WHERE owner ="
           " %" PRId64 " AND step >= 3", node);
  RUN_UNTIL(rt, sql_int(q) == 1, 100000);
  snprintf(q, sizeof q, "SELECT count(*) FROM mealy.instances WHERE owner ="
           " %" PRId64, other);
  ck_assert_int_eq(sql_int(q), 4);
  ck_assert_uint_eq(h_stat_live(rt), 1);
  ck_assert_int_eq(mly_journal_error(rt), 0);
  close_rt(rt);
}
END_TEST

/* A store that failed (a commit the server refused) gives its lease up
 * at once, though the process stays up: another process claims its
 * instances now, not when an hour's lease runs out. */
START_TEST(failed_store_releases_its_lease) {
  fresh_db();
  reset();
  mly_type *t;
  mly_runtime *rt = open_pg(&t, 3600000);
  spawn_counters(rt, t, 5, 1000000, 5);
  RUN_UNTIL(rt, ticks >= 10, 100000);
  sql_exec("ALTER TABLE mealy.instances ADD CONSTRAINT brk CHECK (step < 40)"
           " NOT VALID");
  RUN_UNTIL(rt, mly_journal_error(rt) != 0, 100000);
  RUN_UNTIL(rt, sql_int("SELECT count(*) FROM mealy.nodes WHERE lease_until"
                        " > clock_timestamp()") == 0,
            5000);
  sql_exec("ALTER TABLE mealy.instances DROP CONSTRAINT brk");
  mly_type *t2;
  mly_runtime *b = open_pg(&t2, 0);
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(b, &st), 0);
  ck_assert_uint_eq(st.recovered, 5);
  uint64_t was = ticks;
  RUN_UNTIL(b, ticks >= was + 10, 100000);
  mly_runtime_close(rt);
  close_rt(b);
}
END_TEST

/* A batch fenced for one instance (its row went) drops the batch's
 * steps; the others, whose rows are still this node's, come back from
 * the database and run on here: none strands under a live lease. */
START_TEST(fenced_rows_come_back) {
  fresh_db();
  reset();
  mly_type *t;
  mly_runtime *rt = open_pg(&t, 600);
  spawn_counters(rt, t, 5, 1000000, 5);
  RUN_UNTIL(rt, ticks >= 10, 100000);
  sql_exec("DELETE FROM mealy.instances WHERE id = (SELECT min(id) FROM"
           " mealy.instances)");
  const pg_store_fencing *f = pg_store_fencing_get(store_of(rt));
  RUN_UNTIL(rt, f->fenced_batches >= 1, 100000);
  RUN_UNTIL(rt, f->adopted >= 4 && h_stat_live(rt) == 4, 100000);
  int64_t s0 = sql_int("SELECT sum(step) FROM mealy.instances");
  RUN_UNTIL(rt, sql_int("SELECT sum(step) FROM mealy.instances") >= s0 + 8,
            100000);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), 4);
  ck_assert_int_eq(mly_journal_error(rt), 0);
  close_rt(rt);
}
END_TEST

/* lease_ms and poll_ms out of their ranges (mealy.h) are refused. */
START_TEST(lease_and_poll_ranges) {
  fresh_db();
  static const uint32_t lease[] = {1, 3, 99, 3600001, UINT32_MAX},
                        poll[] = {1, 9, 3600001, UINT32_MAX};
  char err[512];
  for (size_t i = 0; i < 9; i++) {
    mly_runtime *rt = h_runtime();
    mly_store_pg_options o = {.conninfo = db};
    if (i < 5) o.lease_ms = lease[i];
    else o.poll_ms = poll[i - 5];
    ck_assert_int_eq(mly_store_postgres(rt, &o, err, sizeof err), MLY_EINVAL);
    ck_assert_msg(strstr(err, i < 5 ? "lease_ms" : "poll_ms"), "%s", err);
    mly_runtime_close(rt);
  }
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.nodes"), 0);
  mly_runtime *rt = h_runtime();
  mly_store_pg_options o = {.conninfo = db, .lease_ms = 100, .poll_ms = 10};
  ck_assert_msg(mly_store_postgres(rt, &o, err, sizeof err) == 0, "%s", err);
  h_run(rt);
  mly_runtime_close(rt);
}
END_TEST

/* An event committed while the store's connection was down (so its
 * notification went to no one) is fetched as soon as the connection is
 * back, not at the next poll (an hour here). */
START_TEST(reconnect_fetches_at_once) {
  fresh_db();
  mly_runtime *rt = h_runtime();
  mly_type_def def = {.name = "waiter", .run = waiter_run,
                      MLY_TYPE_POINTS(waiter), .data_size = 8,
                      .version = 1, .flags = MLY_TYPE_DURABLE};
  mly_type *t = h_type(rt, &def);
  mly_store_pg_options o = {.conninfo = db, .poll_ms = MLY_PG_POLL_MAX_MS};
  char err[512];
  ck_assert_msg(mly_store_postgres(rt, &o, err, sizeof err) == 0, "%s", err);
  mly_id id;
  ck_assert_int_eq(mly_spawn(rt, t, NULL, 0, &id), 0);
  waiter_got = 0;
  RUN_UNTIL(rt, sql_int("SELECT count(*) FROM mealy.instances WHERE step "
                        ">= 1") == 1,
            100000);
  ck_assert_int_ge(sql_int("SELECT count(pg_terminate_backend(pid)) FROM"
                           " pg_stat_activity WHERE datname = 'mly_store'"
                           " AND pid <> pg_backend_pid()"), 1);
  insert_foreign_event(id);
  RUN_UNTIL(rt, waiter_got == 1, 5000);
  RUN_UNTIL(rt, sql_int("SELECT count(*) FROM mealy.events") == 0, 100000);
  h_run(rt);
  mly_runtime_close(rt);
}
END_TEST

/* A process restarted 70 times after a clean stop, each run leaving one
 * more instance waiting on a day-long timer: each run claims the ranges
 * of the one before and makes its instances there, so one or two ranges
 * are held, never one more per run (64 runs used to exhaust them). */
START_TEST(restarts_reuse_ranges) {
  fresh_db();
  reset();
  for (int i = 0; i < 70; i++) {
    mly_type *t;
    mly_runtime *rt = open_pg(&t, 0);
    counter c = {.idx = 0, .target = 2, .sleep_ms = 86400000};
    h_spawn(rt, t, &c, sizeof c);
    char q[128];
    snprintf(q, sizeof q, "SELECT count(*) FROM mealy.instances WHERE step"
             " >= 1");
    RUN_UNTIL(rt, sql_int(q) == i + 1, 100000);
    close_rt(rt);
    ck_assert_int_le(sql_int("SELECT count(*) FROM mealy.ranges"), 2);
  }
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"), 70);
  ck_assert_int_eq(sql_int("SELECT count(DISTINCT id & 4294967295) FROM"
                           " mealy.instances"), 70);
  /* rows of nodes gone for over an hour holding nothing are deleted at
   * the next open; one gone a minute stays (it may come back) */
  sql_exec("INSERT INTO mealy.nodes (host, pid, lease_until) VALUES"
           " ('old', 1, now() - interval '2 hours'),"
           " ('recent', 2, now() - interval '1 minute')");
  int64_t nodes = sql_int("SELECT count(*) FROM mealy.nodes");
  ck_assert_int_ge(nodes, 72);
  mly_type *t;
  mly_runtime *rt = open_pg(&t, 0);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.nodes WHERE host ="
                           " 'old'"), 0);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.nodes WHERE host ="
                           " 'recent'"), 1);
  close_rt(rt);
}
END_TEST

/* One turn of 80,000 spawns (each then sleeps a day): its records go in
 * transactions of a bounded size, sent one after another, and the lease's
 * renewals go between them: nothing is evicted after the commit, however
 * long the whole turn takes on a busy machine (a 4 s lease here; the
 * whole turn takes longer, each part far less). */
START_TEST(big_turn_keeps_its_lease) {
  fresh_db();
  reset();
  mly_type *t;
  mly_runtime *rt = open_pg(&t, 4000);
  enum { N = 80000 };
  for (uint32_t i = 0; i < N; i++) {
    counter c = {.idx = 0, .target = 2, .sleep_ms = 86400000};
    h_spawn(rt, t, &c, sizeof c);
  }
  pg_store_net net;
  RUN_UNTIL(rt, ticks >= N && (pg_store_net_get(store_of(rt), &net),
                               net.inflight == 0),
            10000000);
  const pg_store_fencing *f = pg_store_fencing_get(store_of(rt));
  ck_assert_uint_eq(f->evicted, 0);
  ck_assert_uint_eq(f->fenced_batches, 0);
  ck_assert_int_eq(mly_journal_error(rt), 0);
  ck_assert_uint_eq(h_stat_live(rt), N);
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  /* N creates and N first steps: at least 2N / 2048 transactions */
  ck_assert_uint_ge(st.batches, 2 * N / 2048);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances WHERE"
                           " step >= 1"), N);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.nodes WHERE"
                           " lease_until > clock_timestamp()"), 1);
  close_rt(rt);
}
END_TEST

/* A step's records never go in two transactions (the invariant the cut
 * points of a big turn keep: store.h `cut`): one step that sends 3,000
 * events to an instance of another node commits them and its STEP in
 * one transaction (one xmin for every event row and the sender's row),
 * in a turn of 5,000 host spawns around it that is cut into parts (at
 * least 3 batches: cut points are found between host records). */
static mly_id burst_to;
enum { BURST = 3000 };
#define BURST_POINTS(X) X(burst, nap)
MLY_POINTS(burst, BURST_POINTS);

static int burst_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  for (uint32_t i = 0; i < BURST; i++)
    ck_assert_int_eq(mly_send(m, burst_to, 7, NULL), 0);
  MLY_SLEEP_AT(m, burst_nap, 86400000);
  MLY_END(m);
}

START_TEST(step_never_cut_apart) {
  fresh_db();
  reset();
  mly_type *t2;
  mly_runtime *rt2 = open_pg(&t2, 0); /* the receiver's node */
  counter c = {.idx = 0, .target = 2, .sleep_ms = 86400000};
  burst_to = h_spawn(rt2, t2, &c, sizeof c);
  RUN_UNTIL(rt2, ticks >= 1, 100000);
  mly_type *t;
  mly_runtime *rt = open_pg(&t, 0);
  mly_type_def def = {.name = "burst", .run = burst_run,
                      MLY_TYPE_POINTS(burst), .version = 1,
                      .flags = MLY_TYPE_DURABLE};
  mly_type *bt = h_type(rt, &def);
  for (uint32_t i = 0; i < 2500; i++) h_spawn(rt, t, &c, sizeof c);
  mly_id b = h_spawn(rt, bt, NULL, 0);
  for (uint32_t i = 0; i < 2500; i++) h_spawn(rt, t, &c, sizeof c);
  char q[200];
  snprintf(q, sizeof q, "SELECT count(*) FROM mealy.instances WHERE id = %"
           PRIu64 " AND step >= 1", (uint64_t)b);
  RUN_UNTIL(rt, sql_int(q) == 1, 10000000);
  snprintf(q, sizeof q, "SELECT count(*) FROM mealy.events WHERE target = %"
           PRIu64, (uint64_t)burst_to);
  ck_assert_int_eq(sql_int(q), BURST);
  snprintf(q, sizeof q, "SELECT count(DISTINCT e.xmin::text) FROM"
           " mealy.events e WHERE e.target = %" PRIu64, (uint64_t)burst_to);
  ck_assert_int_eq(sql_int(q), 1);
  snprintf(q, sizeof q, "SELECT count(*) FROM mealy.events e,"
           " mealy.instances i WHERE e.target = %" PRIu64 " AND i.id = %"
           PRIu64 " AND e.xmin::text = i.xmin::text", (uint64_t)burst_to,
           (uint64_t)b);
  ck_assert_int_eq(sql_int(q), BURST);
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  ck_assert_uint_ge(st.batches, 3); /* the turn was cut, elsewhere */
  close_rt(rt);
  close_rt(rt2);
}
END_TEST

int main(void) {
  snprintf(db, sizeof db, "%s dbname=mly_store", conninfo());
  Suite *s = suite_create("pg_store");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, counters_complete);
  tcase_add_test(tc, takeover_after_kill);
  tcase_add_test(tc, fenced_commit);
  tcase_add_test(tc, two_nodes_distinct_ranges);
  tcase_add_test(tc, renewed_then_released);
  tcase_add_test(tc, lease_ran_out);
  tcase_add_test(tc, sigstop_past_the_lease);
  tcase_add_test(tc, three_processes_sigkill);
  tcase_add_test(tc, live_takeover_race);
  tcase_add_test(tc, live_takeover_parks);
  tcase_add_test(tc, ping_pong_across_processes);
  tcase_add_test(tc, poll_finds_unnotified_events);
  tcase_add_test(tc, rejoin_after_outage);
  tcase_add_test(tc, rejoin_after_takeover);
  tcase_add_test(tc, failed_store_releases_its_lease);
  tcase_add_test(tc, fenced_rows_come_back);
  tcase_add_test(tc, lease_and_poll_ranges);
  tcase_add_test(tc, reconnect_fetches_at_once);
  tcase_add_test(tc, restarts_reuse_ranges);
  tcase_add_test(tc, big_turn_keeps_its_lease);
  tcase_add_test(tc, step_never_cut_apart);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
