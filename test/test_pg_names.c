/*
 * test_pg_names.c - names unique across processes on the PostgreSQL
 * store (pg_store.c "names", schema v5), against a private cluster
 * (MLY_TEST_PG):
 *   - names another process holds when a process opens are known there
 *     at once (MLY_EEXIST without a round trip);
 *   - a durable step spawning a name another process holds (live, or
 *     its tombstone, not yet learned here) answers MLY_EEXIST: the batch
 *     commits without that step, the step runs again from its committed
 *     state and the spawn finds the name taken; the other machines of
 *     the process lose no step and run none twice, and the store goes
 *     on;
 *   - a host spawn of such a name answers 0, its instance ends with
 *     MLY_EEXIST at the commit, and the next spawn answers MLY_EEXIST at
 *     once; mly_name_lookup sees the other process's holder;
 *   - a name ended in process A is seen ended in B (learned while B
 *     runs), refused within the retention, free after it, and the
 *     database deletes the expired tombstone;
 *   - several processes race for many names (a randomized test against
 *     a model): every name has exactly one winner, every attempt has
 *     exactly one answer, nothing else is lost;
 *   - the host's sends and durable posts and a plain machine's sends to
 *     an instance another process owns arrive, each sender's in order;
 *     a post to an id no process holds answers MLY_ESRCH and a send to
 *     one leaves no row; an id of the process's own range it does not
 *     hold answers MLY_ESRCH at once.
 */
#include "harness.h"

#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "durable.h"
#include "pg_helpers.h"
#include "store/pg_store.h"

static char db[1024];

static int64_t sql_int(const char *q) { return pg_test_int(db, q); }

static void fresh_db(void) {
  PGconn *c = PQconnectdb(conninfo());
  ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
  PQclear(PQexec(c, "DROP DATABASE IF EXISTS mly_names WITH (FORCE)"));
  PGresult *r = PQexec(c, "CREATE DATABASE mly_names");
  ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s",
                PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(c);
  char msg[512];
  ck_assert_msg(mly_store_pg_init(db, NULL, msg, sizeof msg) == 0, "%s", msg);
}

/* ---- machines ---- */

#define NMAX 256
static int last_rc[NMAX], runs[NMAX], reported[NMAX];
static uint64_t ticks;
static int win_fd = -1; /* "W name id pid" when a holder first runs */
static int res_fd = -1; /* "R name rc pid" once a spawner's answer is
                           committed */

/* holds its name: writes W in its first step (it runs only once its
 * create committed), then ends after hold_ms (0: sleeps on) with status
 * 7 */
typedef struct holder {
  uint32_t hold_ms;
  char name[48];
} holder;
#define HOLDER_POINTS(X) X(holder, held) X(holder, again)
MLY_POINTS(holder, HOLDER_POINTS);

static void line(int fd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void line(int fd, const char *fmt, ...) {
  if (fd < 0) return;
  char b[160];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b, sizeof b, fmt, ap);
  va_end(ap);
  if (write(fd, b, (size_t)n) != n) abort();
}

static int holder_run(mly_machine *m, void *data) {
  holder *h = data;
  MLY_BEGIN(m);
  line(win_fd, "W %s %" PRIu64 " %d\n", mly_self_name(m), mly_self(m),
       (int)getpid());
  MLY_SLEEP_AT(m, holder_held, h->hold_ms ? h->hold_ms : 100000000);
  MLY_EXIT(m, 7);
  MLY_END(m);
}

/* spawns a child holder named name; its answer once committed */
typedef struct spawner {
  uint32_t idx, hold_ms;
  int32_t rc;
  char name[48];
} spawner;
#define SPAWNER_POINTS(X) X(spawner, after) X(spawner, hold)
MLY_POINTS(spawner, SPAWNER_POINTS);

static int spawner_run(mly_machine *m, void *data) {
  spawner *s = data;
  MLY_BEGIN(m);
  {
    mly_runtime *rt = mly_machine_runtime(m);
    holder h = {.hold_ms = s->hold_ms};
    mly_spawn_options o = {.name = s->name, .arg = &h, .arg_len = sizeof h};
    s->rc = mly_spawn_child_opts(m, mly_type_find(rt, "holder"), &o, NULL);
    runs[s->idx]++;
    last_rc[s->idx] = s->rc;
  }
  MLY_SLEEP_AT(m, spawner_after, 0);
  reported[s->idx]++;
  line(res_fd, "R %s %d %d\n", s->name, s->rc, (int)getpid());
  MLY_SLEEP_AT(m, spawner_hold, 100000000);
  MLY_END(m);
}

typedef struct counter {
  uint32_t n, target;
} counter;
#define COUNTER_POINTS(X) X(counter, tick)
MLY_POINTS(counter, COUNTER_POINTS);

static int counter_run(mly_machine *m, void *data) {
  counter *c = data;
  MLY_BEGIN(m);
  while (c->n < c->target) {
    c->n++;
    ticks++;
    MLY_SLEEP_AT(m, counter_tick, 1);
  }
  MLY_END(m);
}

static mly_type *t_holder, *t_spawner, *t_counter;

static mly_runtime *open_rt(uint32_t lease_ms, uint32_t poll_ms,
                            int64_t retention_ms) {
  mly_runtime *rt = h_runtime();
  mly_type_def hd = {.name = "holder", .run = holder_run,
                     MLY_TYPE_POINTS(holder), .data_size = sizeof(holder),
                     .version = 1, .flags = MLY_TYPE_DURABLE};
  mly_type_def sd = {.name = "spawner", .run = spawner_run,
                     MLY_TYPE_POINTS(spawner), .data_size = sizeof(spawner),
                     .version = 1, .flags = MLY_TYPE_DURABLE};
  mly_type_def cd = {.name = "counter", .run = counter_run,
                     MLY_TYPE_POINTS(counter), .data_size = sizeof(counter),
                     .version = 1, .flags = MLY_TYPE_DURABLE};
  t_holder = h_type(rt, &hd);
  t_spawner = h_type(rt, &sd);
  t_counter = h_type(rt, &cd);
  mly_journal_options jo = {.name_retention_ms = retention_ms};
  mly_store_pg_options o = {.conninfo = db, .lease_ms = lease_ms,
                            .poll_ms = poll_ms, .durable = &jo};
  char err[512];
  int rc = mly_store_postgres(rt, &o, err, sizeof err);
  ck_assert_msg(rc == 0, "mly_store_postgres: %s", err);
  return rt;
}

static mly_id spawn_named(mly_runtime *rt, const char *name, uint32_t hold_ms,
                          int *rc) {
  holder h = {.hold_ms = hold_ms};
  mly_spawn_options o = {.name = name, .arg = &h, .arg_len = sizeof h};
  mly_id id = 0;
  *rc = mly_spawn_opts(rt, mly_type_find(rt, "holder"), &o, &id);
  return id;
}

static void spawn_spawner(mly_runtime *rt, uint32_t idx, const char *name) {
  spawner s = {.idx = idx};
  snprintf(s.name, sizeof s.name, "%s", name);
  h_spawn(rt, mly_type_find(rt, "spawner"), &s, sizeof s);
}

static int64_t name_rows(const char *name, bool live) {
  char q[256];
  snprintf(q, sizeof q,
           "SELECT count(*) FROM mealy.names WHERE name = '%s' AND ended_ms"
           " IS %s NULL",
           name, live ? "" : "NOT");
  return sql_int(q);
}

static int lookup(mly_runtime *rt, const char *name, mly_name_info *ni) {
  memset(ni, 0, sizeof *ni);
  return mly_name_lookup(rt, name, ni);
}

static void close_rt(mly_runtime *rt) {
  mly_runtime_shutdown(rt, 0);
  ck_assert_int_eq(mly_runtime_run(rt), 0);
  mly_runtime_close(rt);
}

static void reset(void) {
  memset(last_rc, 0, sizeof last_rc);
  memset(runs, 0, sizeof runs);
  memset(reported, 0, sizeof reported);
  ticks = 0;
}

/* A step in B spawns names A holds: one live and one ended before B
 * opened (learned at open), one taken and one ended after (not learned
 * by B: its feed is slow), one free.  Counters run beside them. */
START_TEST(step_spawn_of_a_name_held_elsewhere) {
  fresh_db();
  reset();
  mly_runtime *a = open_rt(60000, 60000, 0);
  int rc;
  mly_id alpha = spawn_named(a, "alpha", 0, &rc);
  ck_assert_int_eq(rc, 0);
  spawn_named(a, "beta", 1, &rc);
  ck_assert_int_eq(rc, 0);
  RUN_UNTIL(a, name_rows("alpha", true) == 1 && name_rows("beta", false) == 1,
            100000);
  mly_runtime *b = open_rt(60000, 60000, 0);
  /* delta starts and ends in A now, epsilon starts: B does not know */
  mly_id delta = spawn_named(a, "delta", 1, &rc);
  ck_assert_int_eq(rc, 0);
  mly_id epsilon = spawn_named(a, "epsilon", 0, &rc);
  ck_assert_int_eq(rc, 0);
  RUN_UNTIL(a, name_rows("delta", false) == 1 && name_rows("epsilon", true) == 1,
            100000);
  mly_name_info ni;
  ck_assert_int_eq(lookup(b, "alpha", &ni), 0); /* live there: at open */
  ck_assert_int_eq(ni.state, MLY_NAME_LIVE);
  ck_assert_uint_eq(ni.id, alpha);
  ck_assert_int_eq(lookup(b, "epsilon", &ni), MLY_ENOENT); /* not yet */
  ck_assert_int_eq(lookup(b, "beta", &ni), 0);           /* at open */
  ck_assert_int_eq(ni.state, MLY_NAME_ENDED);
  ck_assert_int_eq(ni.status, 7);
  for (int i = 0; i < 20; i++) {
    counter c = {.target = 40};
    h_spawn(b, t_counter, &c, sizeof c);
  }
  spawn_spawner(b, 0, "alpha");
  spawn_spawner(b, 1, "beta");
  spawn_spawner(b, 2, "gamma");
  spawn_spawner(b, 3, "delta");
  spawn_spawner(b, 4, "epsilon");
  RUN_UNTIL(b, reported[0] && reported[1] && reported[2] && reported[3] &&
                   reported[4] && ticks == 20 * 40,
            1000000);
  ck_assert_int_eq(mly_journal_error(b), 0);
  ck_assert_int_eq(last_rc[0], MLY_EEXIST);
  ck_assert_int_eq(runs[0], 1); /* known at once */
  ck_assert_int_eq(last_rc[1], MLY_EEXIST);
  ck_assert_int_eq(runs[1], 1); /* known at once */
  ck_assert_int_eq(last_rc[2], 0);
  ck_assert_int_eq(runs[2], 1);
  ck_assert_int_eq(last_rc[3], MLY_EEXIST);
  ck_assert_int_eq(runs[3], 2); /* once with 0, left out, once again */
  ck_assert_int_eq(last_rc[4], MLY_EEXIST);
  ck_assert_int_eq(runs[4], 2);
  for (int i = 0; i < 5; i++) ck_assert_int_eq(reported[i], 1);
  ck_assert_uint_eq(pg_store_fencing_get(b->dur->s)->name_reruns, 2);
  ck_assert_uint_eq(pg_store_fencing_get(b->dur->s)->fenced_batches, 0);
  /* B learned them: the holders are A's */
  ck_assert_int_eq(lookup(b, "epsilon", &ni), 0);
  ck_assert_int_eq(ni.state, MLY_NAME_LIVE);
  ck_assert_uint_eq(ni.id, epsilon);
  ck_assert_int_eq(lookup(b, "delta", &ni), 0);
  ck_assert_int_eq(ni.state, MLY_NAME_ENDED);
  ck_assert_uint_eq(ni.id, delta);
  ck_assert_int_eq(lookup(b, "gamma", &ni), 0);
  ck_assert_int_eq(ni.state, MLY_NAME_LIVE);
  /* the database: alpha still A's, gamma B's child's, every counter
   * gone, the four spawners there at their step */
  char q[160];
  snprintf(q, sizeof q, "SELECT id FROM mealy.names WHERE name = 'alpha'");
  ck_assert_uint_eq((uint64_t)sql_int(q), alpha);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances i JOIN"
                           " mealy.names n ON n.id = i.id"
                           " WHERE n.name = 'gamma'"),
                   1);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"
                           " WHERE name IN ('alpha', 'delta', 'epsilon')"),
                   2); /* A's alpha and epsilon */
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.events"), 0);
  close_rt(b);
  close_rt(a);
}
END_TEST

/* A host spawn in B of a name A holds: 0, then the instance ends with
 * MLY_EEXIST at the commit; the next spawn answers MLY_EEXIST at once. */
START_TEST(host_spawn_of_a_name_held_elsewhere) {
  fresh_db();
  reset();
  mly_runtime *a = open_rt(60000, 60000, 0);
  mly_runtime *b = open_rt(60000, 60000, 0); /* before A takes it */
  int rc;
  mly_id alpha = spawn_named(a, "alpha", 0, &rc);
  ck_assert_int_eq(rc, 0);
  RUN_UNTIL(a, name_rows("alpha", true) == 1, 100000);
  for (int i = 0; i < 10; i++) {
    counter c = {.target = 30};
    h_spawn(b, t_counter, &c, sizeof c);
  }
  mly_id mine = spawn_named(b, "alpha", 0, &rc);
  ck_assert_int_eq(rc, 0); /* not known here yet */
  ck_assert_uint_ne(mine, 0);
  mly_name_info ni;
  RUN_UNTIL(b, lookup(b, "alpha", &ni) == 0 && ni.id == alpha, 100000);
  ck_assert_ptr_null(mly_instance_name(b, mine)); /* it is gone */
  spawn_named(b, "alpha", 0, &rc);
  ck_assert_int_eq(rc, MLY_EEXIST);
  RUN_UNTIL(b, ticks == 10 * 30, 1000000);
  ck_assert_int_eq(mly_journal_error(b), 0);
  ck_assert_uint_eq(pg_store_fencing_get(b->dur->s)->name_reruns, 1);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.instances"
                           " WHERE name = 'alpha'"),
                   1);
  close_rt(b);
  close_rt(a);
}
END_TEST

/* A name ended in A is learned by B while both run (its feed), refused
 * within the retention, free after it; the expired row is deleted. */
START_TEST(tombstone_across_processes) {
  fresh_db();
  reset();
  mly_runtime *a = open_rt(3000, 50, 1500);
  mly_runtime *b = open_rt(3000, 50, 1500);
  /* an instance each keeps their loops alive (their lease timers do not) */
  holder h = {0};
  h_spawn(a, mly_type_find(a, "holder"), &h, sizeof h);
  h_spawn(b, mly_type_find(b, "holder"), &h, sizeof h);
  int rc;
  mly_id t1 = spawn_named(a, "t1", 1, &rc);
  ck_assert_int_eq(rc, 0);
  RUN_UNTIL(a, name_rows("t1", false) == 1, 100000);
  mly_name_info ni;
  RUN_UNTIL(b, lookup(b, "t1", &ni) == 0 && ni.state == MLY_NAME_ENDED,
            100000);
  ck_assert_uint_eq(ni.id, t1);
  ck_assert_int_eq(ni.status, 7);
  ck_assert_int_gt(ni.ended_ms, 0);
  spawn_named(b, "t1", 0, &rc);
  ck_assert_int_eq(rc, MLY_EEXIST); /* within the retention */
  /* past it: free in B, and the database deletes the row (renewals in
   * A, which runs in between) */
  for (int i = 0; i < 1500 && (lookup(b, "t1", &ni) != MLY_ENOENT ||
                      name_rows("t1", false) != 0);
       i++) {
    h_turns(a, 5);
    h_turns(b, 5);
    usleep(10000);
  }
  ck_assert_int_eq(lookup(b, "t1", &ni), MLY_ENOENT);
  ck_assert_int_eq(name_rows("t1", false), 0);
  mly_id again = spawn_named(b, "t1", 0, &rc);
  ck_assert_int_eq(rc, 0);
  RUN_UNTIL(b, name_rows("t1", true) == 1, 100000);
  char q[128];
  snprintf(q, sizeof q, "SELECT id FROM mealy.names WHERE name = 't1'");
  ck_assert_uint_eq((uint64_t)sql_int(q), again);
  /* and A learns it is B's now */
  RUN_UNTIL(a, lookup(a, "t1", &ni) == 0 && ni.state == MLY_NAME_LIVE, 100000);
  ck_assert_uint_eq(ni.id, again);
  ck_assert_int_eq(mly_journal_error(a), 0);
  ck_assert_int_eq(mly_journal_error(b), 0);
  close_rt(b);
  close_rt(a);
}
END_TEST

/* ---- several processes race for many names ---- */

enum { PROCS = 3, NAMES = 24, ATTEMPTS = 40, COUNTERS = 8, CTARGET = 60 };

/* One worker: spawners (in steps) and host spawns of names from the
 * pool, the first wave all at once (every worker the same names), the
 * rest at random moments; counters beside them.  Writes "X reruns" and
 * "C ticks" at the end. */
static void race_worker(unsigned seed) {
  mly_runtime *rt = open_rt(60000, 200, 0);
  srand(seed);
  for (int i = 0; i < COUNTERS; i++) {
    counter c = {.target = CTARGET};
    h_spawn(rt, t_counter, &c, sizeof c);
  }
  char name[32];
  int host_won = 0, host_refused = 0;
  for (int k = 0; k < ATTEMPTS; k++) {
    int nm = k < 8 ? k : rand() % NAMES;
    snprintf(name, sizeof name, "n%d", nm);
    if (k % 3 == 2) {
      int rc;
      spawn_named(rt, name, 0, &rc);
      if (rc == 0) host_won++;
      else if (rc == MLY_EEXIST) host_refused++;
      else _exit(6);
      line(res_fd, "H %s %d %d\n", name, rc, (int)getpid());
    } else {
      spawn_spawner(rt, (uint32_t)k, name);
    }
    if (k >= 8) { /* a random pause, its loop running */
      int turns = rand() % 40;
      for (int t = 0; t < turns; t++) {
        uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
        usleep(1000);
      }
    }
  }
  /* every spawner reported, every counter ended */
  for (int i = 0; i < 20000; i++) {
    int n = 0;
    for (int k = 0; k < ATTEMPTS; k++) n += k % 3 != 2 && reported[k];
    if (n == ATTEMPTS - ATTEMPTS / 3 && ticks == COUNTERS * CTARGET) break;
    uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
    usleep(1000);
  }
  /* the host spawns that lost at the commit are gone by now (their
   * holders never ran: no W line) */
  line(res_fd, "X %" PRIu64 " %d\n",
       pg_store_fencing_get(rt->dur->s)->name_reruns, (int)getpid());
  line(res_fd, "C %" PRIu64 " %d\n", ticks, (int)getpid());
  for (int k = 0; k < ATTEMPTS; k++)
    if (k % 3 != 2 && reported[k] != 1) _exit(7);
  if (mly_journal_error(rt) != 0) _exit(8);
  close_rt(rt);
  _exit(0);
}

typedef struct tally {
  int wins, ok_answers;
  uint64_t winner;
} tally;

START_TEST(names_race_model) {
  fresh_db();
  reset();
  char wpath[] = "/tmp/mly-pgnames-w.XXXXXX", rpath[] = "/tmp/mly-pgnames-r.XXXXXX";
  win_fd = mkstemp(wpath);
  res_fd = mkstemp(rpath);
  ck_assert_int_ge(win_fd, 0);
  ck_assert_int_ge(res_fd, 0);
  int go[2];
  ck_assert_int_eq(pipe(go), 0);
  pid_t w[PROCS];
  unsigned seed = (unsigned)getpid();
  for (int k = 0; k < PROCS; k++) {
    w[k] = fork();
    ck_assert_int_ge(w[k], 0);
    if (w[k] == 0) {
      char c;
      close(go[1]);
      if (read(go[0], &c, 1) != 0) _exit(9); /* all start together */
      race_worker(seed + (unsigned)k * 7919);
    }
  }
  close(go[0]);
  close(go[1]);
  for (int k = 0; k < PROCS; k++) {
    int status;
    ck_assert_int_eq(waitpid(w[k], &status, 0), w[k]);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "worker %d: status %d", k, status);
  }
  /* the model: per name, the holders that ran (W) and the answers */
  tally t[NAMES] = {{0}};
  FILE *f = fopen(wpath, "r");
  ck_assert_ptr_nonnull(f);
  char nm[64];
  uint64_t id;
  int pid, rc;
  while (fscanf(f, "W n%63s %" SCNu64 " %d\n", nm, &id, &pid) == 3) {
    int i = atoi(nm);
    ck_assert_int_lt(i, NAMES);
    t[i].wins++;
    t[i].winner = id;
  }
  fclose(f);
  f = fopen(rpath, "r");
  ck_assert_ptr_nonnull(f);
  char kind;
  uint64_t reruns = 0, cticks = 0;
  int answers = 0;
  while (fscanf(f, " %c", &kind) == 1) {
    if (kind == 'X' || kind == 'C') {
      uint64_t v;
      ck_assert_int_eq(fscanf(f, "%" SCNu64 " %d", &v, &pid), 2);
      if (kind == 'X') reruns += v;
      else cticks += v;
      continue;
    }
    ck_assert_int_eq(fscanf(f, " n%63s %d %d", nm, &rc, &pid), 3);
    int i = atoi(nm);
    answers++;
    ck_assert_msg(rc == 0 || rc == MLY_EEXIST, "n%d: %d", i, rc);
    /* a step's 0 is final (committed); a host spawn's 0 may still lose */
    if (rc == 0 && kind == 'R') t[i].ok_answers++;
  }
  fclose(f);
  ck_assert_int_eq(answers, PROCS * ATTEMPTS);
  ck_assert_uint_eq(cticks, (uint64_t)PROCS * COUNTERS * CTARGET);
  ck_assert_uint_gt(reruns, 0); /* the race was run through the database */
  for (int i = 0; i < NAMES; i++) {
    char q[128];
    snprintf(q, sizeof q, "SELECT count(*) FROM mealy.names WHERE name = 'n%d'",
             i);
    int64_t rows = sql_int(q);
    ck_assert_msg(t[i].wins <= 1, "n%d won %d times", i, t[i].wins);
    ck_assert_msg(t[i].ok_answers <= t[i].wins, "n%d: %d answers, %d wins", i,
                  t[i].ok_answers, t[i].wins);
    ck_assert_int_eq(rows, t[i].wins);
    if (t[i].wins) {
      snprintf(q, sizeof q, "SELECT id FROM mealy.names WHERE name = 'n%d'", i);
      ck_assert_uint_eq((uint64_t)sql_int(q), t[i].winner);
    }
  }
  for (int i = 0; i < 8; i++) ck_assert_int_eq(t[i].wins, 1);
  close(win_fd);
  close(res_fd);
  win_fd = res_fd = -1;
  unlink(wpath);
  unlink(rpath);
}
END_TEST


/* ---- events to another process's instance: from the host and from a
 * plain machine, in order per sender; to an id no process holds ---- */

enum { ITEM = 5, ITEMS = 60 };
static int col_done, col_bad;
static uint32_t col_got;

typedef struct collector {
  uint32_t got, bad;
  int64_t next_host, next_plain;
} collector;
#define COLLECTOR_POINTS(X) X(collector, wait)
MLY_POINTS(collector, COLLECTOR_POINTS);

static int collector_run(mly_machine *m, void *data) {
  collector *c = data;
  MLY_BEGIN(m);
  while (c->got < 2 * ITEMS) {
    MLY_AWAIT_AT(m, collector_wait, ITEM, -1);
    {
      int64_t v = -1;
      const mly_event *e = mly_current_event(m);
      if (e == NULL || mly_value_get_int(e->payload, &v) < 0) c->bad++;
      else if (v < 1000) c->bad += v != c->next_host++;
      else c->bad += v - 1000 != c->next_plain++;
      c->got++;
      col_got = c->got;
    }
  }
  col_bad = (int)c->bad;
  col_done++;
  MLY_END(m);
}

/* not durable: sends 1000.. to `to`, one a turn */
typedef struct pusher {
  mly_id to;
  uint32_t k;
} pusher;
#define PUSHER_POINTS(X) X(pusher, next)
MLY_POINTS(pusher, PUSHER_POINTS);

static int pusher_run(mly_machine *m, void *data) {
  pusher *p = data;
  MLY_BEGIN(m);
  while (p->k < ITEMS) {
    if (mly_send(m, p->to, ITEM, mly_value_int(1000 + p->k)) < 0) abort();
    p->k++;
    MLY_SLEEP_AT(m, pusher_next, 0);
  }
  MLY_END(m);
}

static int posts_ok, posts_srch, posts_other;
static void post_answer(mly_runtime *rt, int status, void *arg) {
  (void)rt;
  (void)arg;
  if (status == 0) posts_ok++;
  else if (status == MLY_ESRCH) posts_srch++;
  else posts_other++;
}

static mly_type *reg(mly_runtime *rt, const char *name,
                     int (*run)(mly_machine *, void *), const char *const *pts,
                     uint32_t npts, size_t size, bool durable) {
  mly_type_def d = {.name = name, .run = run, .points = pts, .npoints = npts,
                    .data_size = size, .version = 1,
                    .flags = durable ? MLY_TYPE_DURABLE : 0};
  return h_type(rt, &d);
}

START_TEST(sends_across_processes) {
  fresh_db();
  reset();
  col_done = col_bad = 0;
  col_got = 0;
  posts_ok = posts_srch = posts_other = 0;
  mly_runtime *a = h_runtime();
  mly_type *tc = reg(a, "collector", collector_run, collector_points,
                     collector__npoints, sizeof(collector), true);
  mly_store_pg_options o = {.conninfo = db, .lease_ms = 60000, .poll_ms = 50};
  char err[512];
  ck_assert_msg(mly_store_postgres(a, &o, err, sizeof err) == 0, "%s", err);
  collector c0 = {0};
  mly_spawn_options so = {.name = "col", .arg = &c0, .arg_len = sizeof c0};
  mly_id col = 0;
  ck_assert_int_eq(mly_spawn_opts(a, tc, &so, &col), 0);
  RUN_UNTIL(a, name_rows("col", true) == 1, 100000);
  mly_runtime *b = open_rt(60000, 50, 0);
  mly_type *tp = reg(b, "pusher", pusher_run, pusher_points,
                     pusher__npoints, sizeof(pusher), false);
  mly_name_info ni;
  RUN_UNTIL(b, lookup(b, "col", &ni) == 0, 100000); /* learned */
  ck_assert_uint_eq(ni.id, col);
  pusher p0 = {.to = col};
  h_spawn(b, tp, &p0, sizeof p0);
  /* the host's: one a turn, every fourth a durable post */
  for (int k = 0; k < ITEMS; k++) {
    int rc = k % 4 == 3 ? mly_post_durable(b, col, ITEM, mly_value_int(k),
                                           post_answer, NULL)
                        : mly_runtime_send(b, col, ITEM, mly_value_int(k));
    ck_assert_int_eq(rc, 0);
    h_turns(b, 2);
    h_turns(a, 1);
  }
  for (int i = 0; i < 3000 && !col_done; i++) {
    h_turns(b, 2);
    h_turns(a, 2);
    usleep(2000);
  }
  ck_assert_int_eq(col_done, 1);
  ck_assert_int_eq(col_bad, 0);
  ck_assert_uint_eq(col_got, 2 * ITEMS);
  RUN_UNTIL(b, posts_ok == ITEMS / 4, 100000);
  ck_assert_int_eq(posts_srch + posts_other, 0);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.events"), 0);
  /* the collector ended: a post to it answers MLY_ESRCH, a send leaves
   * no row; an id of B's own range that B does not hold: MLY_ESRCH */
  ck_assert_int_eq(mly_post_durable(b, col, ITEM, mly_value_int(1), post_answer,
                                    NULL),
                   0);
  ck_assert_int_eq(mly_runtime_send(b, col, ITEM, mly_value_int(2)), 0);
  RUN_UNTIL(b, posts_srch + posts_ok > ITEMS / 4, 100000);
  ck_assert_int_eq(posts_ok, ITEMS / 4);
  ck_assert_int_eq(posts_srch, 1);
  ck_assert_int_eq(posts_other, 0);
  h_turns(b, 5);
  ck_assert_int_eq(sql_int("SELECT count(*) FROM mealy.events"), 0);
  mly_id none = (uint64_t)1 << 32 | (pg_store_slot_base(b->dur->s) + 1000);
  ck_assert_int_eq(mly_runtime_send(b, none, ITEM, NULL), MLY_ESRCH);
  ck_assert_int_eq(mly_journal_error(a), 0);
  ck_assert_int_eq(mly_journal_error(b), 0);
  close_rt(b);
  close_rt(a);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("pg_names");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 240);
  tcase_add_test(tc, step_spawn_of_a_name_held_elsewhere);
  tcase_add_test(tc, host_spawn_of_a_name_held_elsewhere);
  tcase_add_test(tc, tombstone_across_processes);
  tcase_add_test(tc, names_race_model);
  tcase_add_test(tc, sends_across_processes);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  snprintf(db, sizeof db, "%s dbname=mly_names", conninfo());
  return run_suite(suite());
}
