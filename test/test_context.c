/*
 * test_context.c - contexts: one mly_value an instance carries beside its
 * data (mealy.h "Contexts and names").
 *
 * The invariant under every case: a durable instance's context and its
 * data commit together, so whenever it comes back (a clean stop, a close,
 * a compaction, a SIGKILL at any step) the counter kept in its context
 * equals the one kept in its data.  Around it: contexts in memory for
 * plain machines, a context given at spawn that commits with the create
 * record, 1 MiB and 16 MiB contexts, a step that leaves its context as it
 * was writing no copy of it (counted in journal bytes), a context that
 * cannot be committed (too deep, past the record bound) refused at spawn
 * or ending its instance with the error, the journal still whole.
 */
#include "harness.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[256];

static void fresh_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/mealy-ctx.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
}


/* ---- acc: counts in its data and in its context, one step each ---- */

enum { EV_POKE = 1, EV_CHANGE = 2, EV_STOP = 3 };

typedef struct acc {
  uint32_t idx, n, target;
  uint32_t blob;       /* bytes of the context's "blob"            */
} acc;

static uint32_t mismatches; /* a recovered context that is not its data's */
static uint32_t recovered_steps;
static uint32_t done_n[64];
static uint64_t ticks;
static int64_t crash_after = -1;

static mly_value *make_ctx(uint32_t idx, uint32_t n, uint32_t blob) {
  mly_value *c = mly_value_map();
  ck_assert_ptr_nonnull(c);
  mly_map_set_int(c, "n", n);
  if (blob) {
    unsigned char *p = malloc(blob);
    ck_assert_ptr_nonnull(p);
    for (uint32_t i = 0; i < blob; i++) p[i] = (unsigned char)(i * 31 + idx);
    mly_map_set(c, "blob", mly_value_bin(p, blob));
    free(p);
  }
  return c;
}

static int64_t ctx_n(const mly_value *c) {
  int64_t n = -1;
  if (c == NULL || mly_map_get_int(c, "n", &n) < 0) return -1;
  return n;
}

static bool blob_ok(const mly_value *c, uint32_t idx, uint32_t blob) {
  const void *p;
  size_t len;
  mly_value *b = mly_map_get(c, "blob");
  if (blob == 0) return b == NULL;
  if (mly_value_get_bin(b, &p, &len) < 0 || len != blob) return false;
  const unsigned char *s = p;
  for (uint32_t i = 0; i < blob; i++)
    if (s[i] != (unsigned char)(i * 31 + idx)) return false;
  return true;
}

#define ACC_POINTS(X) X(acc, tick) X(acc, last)
MLY_POINTS(acc, ACC_POINTS);

static int acc_run(mly_machine *m, void *data) {
  acc *a = data;
  MLY_BEGIN(m);
  while (a->n < a->target) {
    if (mly_recovered(m)) {
      recovered_steps++;
      if (ctx_n(mly_context(m)) != a->n) mismatches++;
    }
    if (crash_after >= 0 && ++ticks == (uint64_t)crash_after) raise(SIGKILL);
    if (mly_context(m) == NULL)
      mly_context_set(m, make_ctx(a->idx, a->n, a->blob));
    mly_map_set_int(mly_context(m), "n", a->n + 1);
    a->n++;
    MLY_SLEEP_AT(m, acc_tick, 0);
  }
  if (mly_recovered(m) && ctx_n(mly_context(m)) != a->n) mismatches++;
  done_n[a->idx % 64] = a->n;
  if (crash_after >= 0) raise(SIGKILL); /* a crash test ends in one */
  /* stays until told, so the host can look at its context */
  MLY_AWAIT_AT(m, acc_last, EV_STOP, -1);
  MLY_END(m);
}

static mly_type_def acc_def(bool durable) {
  return (mly_type_def){.name = "acc", .run = acc_run, MLY_TYPE_POINTS(acc),
                        .data_size = sizeof(acc), .version = 1,
                        .flags = durable ? MLY_TYPE_DURABLE : 0};
}

static void reset(void) {
  mismatches = recovered_steps = 0;
  memset(done_n, 0, sizeof done_n);
  ticks = 0;
  crash_after = -1;
}

static mly_runtime *open_acc(const mly_journal_options *o) {
  mly_runtime *rt = h_runtime();
  mly_type_def def = acc_def(true);
  h_type(rt, &def);
  mly_journal_options dflt = {.dir = dir};
  char err[512];
  int rc = h_durable_open(rt, o ? o : &dflt, err, sizeof err);
  ck_assert_msg(rc == 0, "open: %s", err);
  return rt;
}

static mly_id spawn_acc(mly_runtime *rt, uint32_t idx, uint32_t target,
                        uint32_t blob, bool with_ctx) {
  acc a = {.idx = idx, .target = target, .blob = blob};
  mly_spawn_options o = {.arg = &a, .arg_len = sizeof a};
  if (with_ctx) o.context = make_ctx(idx, 0, blob);
  mly_id id = 0;
  ck_assert_int_eq(mly_spawn_opts(rt, mly_type_find(rt, "acc"), &o, &id), 0);
  return id;
}

/* Every live acc: its context counts what its data counts. */
static void check_all(mly_runtime *rt, const mly_id *ids, size_t n) {
  for (size_t i = 0; i < n; i++) {
    acc *a = mly_instance_data(rt, ids[i]);
    ck_assert_ptr_nonnull(a);
    const mly_value *c = mly_instance_context(rt, ids[i]);
    if (a->n == 0 && c == NULL) continue; /* not stepped, none given */
    ck_assert_int_eq(ctx_n(c), a->n);
    ck_assert(blob_ok(c, a->idx, a->blob));
  }
}

static uint64_t jbytes(mly_runtime *rt) {
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  return st.bytes;
}

static bool all_done(mly_runtime *rt, const mly_id *ids, size_t n,
                     uint32_t target) {
  for (size_t i = 0; i < n; i++) {
    acc *a = mly_instance_data(rt, ids[i]);
    if (a == NULL || a->n != target) return false;
  }
  return true;
}

static void stop_all(mly_runtime *rt, const mly_id *ids, size_t n) {
  for (size_t i = 0; i < n; i++)
    ck_assert_int_eq(mly_runtime_send(rt, ids[i], EV_STOP, NULL), 0);
  RUN_UNTIL(rt, h_stat_live(rt) == 0, 1000);
}

/* ---- in memory ---- */

START_TEST(t_context_in_memory) {
  reset();
  mly_runtime *rt = h_runtime();
  mly_type_def def = acc_def(false);
  h_type(rt, &def);
  mly_id ids[3] = {spawn_acc(rt, 0, 5, 0, true), spawn_acc(rt, 1, 7, 100, false),
                   spawn_acc(rt, 2, 0, 0, true)};
  /* given at spawn: there before the first step */
  ck_assert_int_eq(ctx_n(mly_instance_context(rt, ids[0])), 0);
  ck_assert_ptr_null(mly_instance_context(rt, ids[1]));
  RUN_UNTIL(rt, done_n[0] == 5 && done_n[1] == 7, 100);
  check_all(rt, ids, 3);
  ck_assert_int_eq(ctx_n(mly_instance_context(rt, ids[2])), 0);
  ck_assert_ptr_null(mly_instance_context(rt, 12345));
  stop_all(rt, ids, 3);
  ck_assert_ptr_null(mly_instance_context(rt, ids[0])); /* ended: gone */
  mly_runtime_close(rt);
}
END_TEST

/* mly_context_set replaces and clears; a plain machine needs no journal */
#define SETTER_POINTS(X) X(setter, wait)
MLY_POINTS(setter, SETTER_POINTS);
static int setter_seen[4];
static int setter_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  setter_seen[0] = mly_context(m) == NULL;
  mly_context_set(m, mly_value_int(1));
  mly_context_set(m, mly_value_int(2)); /* the first is freed */
  setter_seen[1] = mly_value_type(mly_context(m)) == MLY_V_INT;
  MLY_AWAIT_AT(m, setter_wait, EV_POKE, -1);
  mly_context_set(m, NULL);
  setter_seen[2] = mly_context(m) == NULL;
  mly_context_set(m, NULL); /* clearing nothing: fine */
  setter_seen[3] = 1;
  MLY_END(m);
}

START_TEST(t_context_set_and_clear) {
  mly_runtime *rt = h_runtime();
  mly_type_def def = {.name = "setter", .run = setter_run,
                      MLY_TYPE_POINTS(setter)};
  mly_type *t = h_type(rt, &def);
  mly_id id = h_spawn(rt, t, NULL, 0);
  RUN_UNTIL(rt, setter_seen[1], 10);
  int64_t v = 0;
  ck_assert_int_eq(mly_value_get_int(mly_instance_context(rt, id), &v), 0);
  ck_assert_int_eq(v, 2);
  ck_assert_int_eq(mly_runtime_send(rt, id, EV_POKE, NULL), 0);
  h_run(rt);
  ck_assert(setter_seen[0] && setter_seen[2] && setter_seen[3]);
  mly_runtime_close(rt);
}
END_TEST

/* ---- durable ---- */

START_TEST(t_context_survives_stop_and_open) {
  fresh_dir();
  reset();
  mly_runtime *rt = open_acc(NULL);
  mly_id ids[8];
  for (uint32_t i = 0; i < 8; i++) ids[i] = spawn_acc(rt, i, 200, 64, i % 2);
  RUN_UNTIL(rt, ((acc *)mly_instance_data(rt, ids[0]))->n >= 20, 1000);
  check_all(rt, ids, 8);
  ck_assert_int_eq(mly_runtime_shutdown(rt, -1), 0); /* a clean stop */
  RUN_UNTIL(rt, h_stat_live(rt) == 0, 100);
  mly_runtime_close(rt);

  rt = open_acc(NULL);
  check_all(rt, ids, 8); /* back as committed, before any step */
  mly_runtime_close(rt); /* a close: suspended too */
  rt = open_acc(NULL);
  check_all(rt, ids, 8);
  RUN_UNTIL(rt, all_done(rt, ids, 8, 200), 100000);
  check_all(rt, ids, 8);
  ck_assert_uint_eq(mismatches, 0);
  ck_assert_uint_gt(recovered_steps, 0);
  stop_all(rt, ids, 8);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

/* A body that only waits: its context is the one it was spawned with. */
#define IDLE_POINTS(X) X(idle, wait)
MLY_POINTS(idle, IDLE_POINTS);
static int idle_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT_AT(m, idle_wait, EV_STOP, -1);
  MLY_END(m);
}
static const mly_type_def idle_def = {.name = "idle", .run = idle_run,
                                      MLY_TYPE_POINTS(idle), .version = 1,
                                      .flags = MLY_TYPE_DURABLE};

START_TEST(t_context_at_spawn_commits_with_create) {
  fresh_dir();
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &idle_def);
  mly_journal_options o = {.dir = dir};
  ck_assert_int_eq(h_durable_open(rt, &o, NULL, 0), 0);
  mly_value *want = make_ctx(9, 42, 1000);
  mly_spawn_options so = {.context = mly_value_copy(want)};
  mly_id id = 0;
  ck_assert_int_eq(mly_spawn_opts(rt, t, &so, &id), 0);
  /* its create record holds the context: one record, no step needed */
  mly_runtime_close(rt);

  rt = h_runtime();
  t = h_type(rt, &idle_def);
  ck_assert_int_eq(h_durable_open(rt, &o, NULL, 0), 0);
  ck_assert(mly_value_equal(mly_instance_context(rt, id), want));
  ck_assert_int_eq(mly_runtime_send(rt, id, EV_STOP, NULL), 0);
  h_run(rt);
  mly_runtime_close(rt);
  mly_value_free(want);
  h_rmtree(dir);
}
END_TEST

/* 1 MiB and 16 MiB: across a close, a compaction and a reopen. */
START_TEST(t_large_contexts) {
  static const uint32_t sizes[] = {1u << 20, 16u << 20};
  uint32_t blob = sizes[_i];
  fresh_dir();
  reset();
  /* on PostgreSQL a step of 2 x 16 MiB is a COMMIT of seconds here, and
   * the lease's renewal waits behind it on the connection: a lease
   * shorter than the commit evicts (as it should); this test's are 30 s
   * (it stops cleanly: a reopen does not wait for them) */
  const char *lease = getenv("MLY_TEST_PG_LEASE_MS");
  char *was = lease ? strdup(lease) : NULL;
  setenv("MLY_TEST_PG_LEASE_MS", "30000", 1);
  mly_runtime *rt = open_acc(NULL);
  mly_id ids[2] = {spawn_acc(rt, 0, 3, blob, true),
                   spawn_acc(rt, 1, 4, blob, false)};
  /* turns, not time: a 16 MiB step is a ~1 s COMMIT on PostgreSQL */
  RUN_UNTIL(rt, done_n[0] == 3 && done_n[1] == 4, 100000);
  check_all(rt, ids, 2);
  mly_runtime_close(rt);
  rt = open_acc(NULL);
  check_all(rt, ids, 2);
  ck_assert_int_eq(mly_journal_compact(rt), 0);
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  ck_assert_uint_eq(st.compactions, 1);
  /* the store holds both contexts whole, and not much more: the
   * journal's snapshot, or the database's rows */
  uint64_t held = st.total_bytes;
  if (!h_on_journal())
    held = (uint64_t)h_pg_count(dir, "SELECT coalesce(sum(octet_length("
                                "context)), -1) FROM mealy.instances");
  ck_assert_uint_ge(held, 2 * (uint64_t)blob);
  ck_assert_uint_le(held, 2 * (uint64_t)blob + 4096);
  mly_runtime_close(rt);
  rt = open_acc(NULL);
  check_all(rt, ids, 2);
  ck_assert_uint_eq(mismatches, 0);
  stop_all(rt, ids, 2);
  mly_runtime_close(rt);
  if (was) setenv("MLY_TEST_PG_LEASE_MS", was, 1);
  else unsetenv("MLY_TEST_PG_LEASE_MS");
  free(was);
  h_rmtree(dir);
}
END_TEST

/* ---- a step that leaves its context as it was writes no copy ---- */

#define POKED_POINTS(X) X(poked, wait)
MLY_POINTS(poked, POKED_POINTS);
static uint32_t pokes;
static int poked_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_AWAIT_AT(m, poked_wait, MLY_EV_ANY, -1);
    const mly_event *e = mly_current_event(m);
    if (e->id == EV_STOP) break;
    mly_value *c = mly_context(m); /* handed out: it may have changed */
    if (e->id == EV_CHANGE) mly_map_set_int(c, "n", ctx_n(c) + 1);
    else if (e->id == EV_POKE + 100) /* the same value, replaced */
      mly_context_set(m, mly_value_copy(c));
    pokes++;
  }
  MLY_END(m);
}

START_TEST(t_unchanged_context_not_rewritten) {
  fresh_dir();
  mly_runtime *rt = h_runtime();
  mly_type_def def = {.name = "poked", .run = poked_run,
                      MLY_TYPE_POINTS(poked), .version = 1,
                      .flags = MLY_TYPE_DURABLE};
  mly_type *t = h_type(rt, &def);
  mly_journal_options o = {.dir = dir};
  ck_assert_int_eq(h_durable_open(rt, &o, NULL, 0), 0);
  const uint32_t MiB = 1u << 20;
  mly_spawn_options so = {.context = make_ctx(3, 0, MiB)};
  mly_id id = 0;
  ck_assert_int_eq(mly_spawn_opts(rt, t, &so, &id), 0);
  RUN_UNTIL(rt, jbytes(rt) >= MiB, 100); /* the create record */
  uint64_t before = jbytes(rt);
  for (uint32_t i = 0; i < 20; i++) {
    uint32_t ev = i % 2 ? EV_POKE : EV_POKE + 100;
    ck_assert_int_eq(mly_runtime_send(rt, id, ev, NULL), 0);
    RUN_UNTIL(rt, pokes == i + 1, 100);
  }
  RUN_UNTIL(rt, jbytes(rt) > before, 100);
  /* 20 steps and 20 event records, no context among them */
  ck_assert_uint_lt(jbytes(rt) - before, 20 * 256);
  before = jbytes(rt);
  for (uint32_t i = 0; i < 3; i++) {
    ck_assert_int_eq(mly_runtime_send(rt, id, EV_CHANGE, NULL), 0);
    RUN_UNTIL(rt, pokes == 21 + i, 100);
  }
  RUN_UNTIL(rt, jbytes(rt) >= before + 3 * (uint64_t)MiB, 100);
  ck_assert_uint_lt(jbytes(rt) - before, 3 * (uint64_t)MiB + 3 * 512);
  mly_runtime_close(rt);

  /* and what came back is the last one committed */
  rt = h_runtime();
  t = h_type(rt, &def);
  ck_assert_int_eq(h_durable_open(rt, &o, NULL, 0), 0);
  const mly_value *c = mly_instance_context(rt, id);
  ck_assert_int_eq(ctx_n(c), 3);
  ck_assert(blob_ok(c, 3, MiB));
  ck_assert_int_eq(mly_runtime_send(rt, id, EV_STOP, NULL), 0);
  h_run(rt);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

/* ---- compaction keeps contexts, of every kind of instance ---- */

START_TEST(t_compaction_keeps_contexts) {
  fresh_dir();
  reset();
  mly_journal_options o = {.dir = dir, .compact_min_bytes = 1,
                           .compact_dead_pct = 1};
  mly_runtime *rt = open_acc(&o);
  mly_id ids[16];
  for (uint32_t i = 0; i < 16; i++) ids[i] = spawn_acc(rt, i, 50, 300, i % 3);
  /* automatic compactions run as they go (every batch is mostly dead) */
  RUN_UNTIL(rt, all_done(rt, ids, 16, 50), 100000);
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  if (H_JOURNAL_FIGURE("automatic compactions ran"))
    ck_assert_uint_gt(st.compactions, 0);
  ck_assert_int_eq(mly_journal_compact(rt), 0);
  mly_runtime_close(rt);
  rt = open_acc(&o);
  check_all(rt, ids, 16);
  ck_assert_uint_eq(mismatches, 0);
  stop_all(rt, ids, 16);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

/* ---- SIGKILL inside a step, again and again ---- */

START_TEST(t_context_and_data_survive_sigkill) {
  fresh_dir();
  reset();
  enum { N = 12, TARGET = 300 };
  mly_id ids[N];
  uint64_t seed = 0x1234567u + (uint64_t)_i * 7919u;
  for (int round = 0; round < 6; round++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
      reset();
      crash_after = 50 + (int64_t)((seed >> 33) % 900);
      mly_runtime *rt = NULL;
      mly_runtime_new(&rt, NULL, NULL);
      mly_type_def def = acc_def(true);
      mly_type_register(rt, &def, NULL);
      mly_journal_options o = {.dir = dir};
      if (h_durable_open(rt, &o, NULL, 0) < 0) _exit(3);
      if (round == 0)
        for (uint32_t i = 0; i < N; i++) {
          acc a = {.idx = i, .target = TARGET, .blob = 200 * i};
          mly_spawn_options so = {.arg = &a, .arg_len = sizeof a};
          if (i % 2) so.context = make_ctx(i, 0, a.blob);
          mly_spawn_opts(rt, mly_type_find(rt, "acc"), &so, NULL);
        }
      mly_runtime_run(rt);
      _exit(4); /* never: it ends in a SIGKILL */
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "round %d: child status %d", round, status);
  }
  mly_runtime *rt = open_acc(NULL);
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  ck_assert_uint_eq(st.recovered, N);
  for (uint32_t i = 0; i < N; i++) ids[i] = ((mly_id)1 << 32) | i;
  check_all(rt, ids, N);
  RUN_UNTIL(rt, all_done(rt, ids, N, TARGET), 100000);
  check_all(rt, ids, N);
  ck_assert_uint_eq(mismatches, 0);
  stop_all(rt, ids, N);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

/* ---- contexts that cannot be committed ---- */

#define BIG_POINTS(X) X(big, wait) X(big, stop)
MLY_POINTS(big, BIG_POINTS);
static size_t big_bytes;
static int big_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT_AT(m, big_wait, EV_POKE, -1);
  {
    void *p = calloc(1, big_bytes);
    mly_context_set(m, mly_value_bin(p, big_bytes));
    free(p);
  }
  MLY_AWAIT_AT(m, big_stop, EV_STOP, -1);
  MLY_END(m);
}

static mly_value *deep(int levels) {
  mly_value *v = mly_value_int(1);
  for (int i = 0; i < levels; i++) {
    mly_value *a = mly_value_array();
    mly_array_push(a, v);
    v = a;
  }
  return v;
}

START_TEST(t_context_past_the_bound_is_refused) {
  fresh_dir();
  mly_runtime *rt = h_runtime();
  mly_type_def def = {.name = "big", .run = big_run, MLY_TYPE_POINTS(big),
                      .version = 1, .flags = MLY_TYPE_DURABLE};
  mly_type *t = h_type(rt, &def);
  mly_journal_options o = {.dir = dir};
  ck_assert_int_eq(h_durable_open(rt, &o, NULL, 0), 0);
  void *p = calloc(1, 65u << 20);
  ck_assert_ptr_nonnull(p);
  mly_spawn_options so = {.context = mly_value_bin(p, 65u << 20)};
  free(p);
  mly_id id = 0;
  ck_assert_int_eq(mly_spawn_opts(rt, t, &so, &id), MLY_ERANGE);
  ck_assert_uint_eq(id, 0);
  so.context = deep(MLY_VALUE_MAX_DEPTH + 2); /* does not encode */
  ck_assert_int_eq(mly_spawn_opts(rt, t, &so, &id), MLY_EINVAL);
  ck_assert_uint_eq(h_stat_live(rt), 0);

  /* set in a step: the instance ends with MLY_ERANGE, nothing written */
  big_bytes = 65u << 20;
  mly_id a = h_spawn(rt, t, NULL, 0), b = h_spawn(rt, t, NULL, 0);
  RUN_UNTIL(rt, jbytes(rt) > 0, 100);
  ck_assert_int_eq(mly_runtime_send(rt, a, EV_POKE, NULL), 0);
  RUN_UNTIL(rt, mly_instance_data(rt, a) == NULL && h_stat_live(rt) == 1, 100);
  ck_assert_uint_lt(jbytes(rt), 1u << 20);
  ck_assert_int_eq(mly_journal_error(rt), 0);
  mly_runtime_close(rt);

  rt = h_runtime();
  t = h_type(rt, &def);
  char err[512];
  ck_assert_msg(h_durable_open(rt, &o, err, sizeof err) == 0, "%s", err);
  ck_assert_uint_eq(h_stat_live(rt), 1); /* b; a ended */
  ck_assert_ptr_nonnull(mly_instance_data(rt, b));
  big_bytes = 1000;
  ck_assert_int_eq(mly_runtime_send(rt, b, EV_POKE, NULL), 0);
  RUN_UNTIL(rt, mly_instance_context(rt, b) != NULL, 100);
  ck_assert_int_eq(mly_runtime_send(rt, b, EV_STOP, NULL), 0);
  h_run(rt);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("context");
  TCase *c = tcase_create("context");
  tcase_set_timeout(c, 600);
  tcase_add_test(c, t_context_in_memory);
  tcase_add_test(c, t_context_set_and_clear);
  tcase_add_test(c, t_context_survives_stop_and_open);
  tcase_add_test(c, t_context_at_spawn_commits_with_create);
  tcase_add_loop_test(c, t_large_contexts, 0, 2);
  tcase_add_test(c, t_unchanged_context_not_rewritten);
  tcase_add_test(c, t_compaction_keeps_contexts);
  tcase_add_loop_test(c, t_context_and_data_survive_sigkill, 0, 3);
  tcase_add_test(c, t_context_past_the_bound_is_refused);
  suite_add_tcase(s, c);
  return s;
}

H_MAIN(suite)
