/*
 * test_names.c - named instances (mealy.h "Contexts and names").
 *
 * A name is held from spawn to end, then by a tombstone for the
 * retention window: spawning it meanwhile is refused with MLY_EEXIST and
 * mly_name_lookup says which ("running" or "already done", with the id,
 * the status and when it ended).  Durable names and tombstones survive a
 * clean stop, a close, a SIGKILL and a compaction; compaction and lookups
 * drop tombstones past the window, so the name is free again.  Time is a
 * test clock (names_set_clock), never a sleep.  Parked instances keep
 * their names; events reach an instance through its name.
 */
#include "harness.h"
#include "context.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[256];

static void fresh_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/mealy-names.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* ---- the test clock ---- */

static int64_t now_ms;
static int64_t test_clock(void *arg) {
  (void)arg;
  return now_ms;
}
#define T0 1767225600000ll /* 2026-01-01 00:00:00 UTC */

/* ---- a named machine: waits for STOP, exits with its payload ---- */

enum { EV_STOP = 1, EV_GO = 2 };
static char self_name[300];
static uint32_t gos;

#define NAMED_POINTS(X) X(named, wait)
MLY_POINTS(named, NAMED_POINTS);
static int named_run(mly_machine *m, void *data) {
  int64_t *status = data;
  MLY_BEGIN(m);
  {
    const char *n = mly_self_name(m);
    snprintf(self_name, sizeof self_name, "%s", n ? n : "(none)");
  }
  for (;;) {
    MLY_AWAIT_AT(m, named_wait, MLY_EV_ANY, -1);
    if (mly_current_event(m)->id == EV_STOP) break;
    gos++;
  }
  mly_value_get_int(mly_current_event(m)->payload, status);
  MLY_EXIT(m, (int)*status);
  MLY_END(m);
}

static mly_type_def named_def(const char *name, uint32_t version,
                              bool durable) {
  return (mly_type_def){.name = name, .run = named_run,
                        MLY_TYPE_POINTS(named), .data_size = sizeof(int64_t),
                        .version = version,
                        .flags = durable ? MLY_TYPE_DURABLE : 0};
}

static mly_runtime *rt_at(const char *state_dir, int64_t retention,
                          uint32_t version) {
  mly_runtime *rt = h_runtime();
  mly_type_def def = named_def("order", version, state_dir != NULL);
  h_type(rt, &def);
  ck_assert_int_eq(names_set_clock(rt, test_clock, NULL), 0);
  if (state_dir) {
    mly_journal_options o = {.dir = state_dir, .name_retention_ms = retention};
    char err[512];
    int rc = h_durable_open(rt, &o, err, sizeof err);
    ck_assert_msg(rc == 0, "open: %s", err);
  }
  return rt;
}

static int spawn_named(mly_runtime *rt, const char *name, mly_id *id) {
  mly_spawn_options o = {.name = name};
  return mly_spawn_opts(rt, mly_type_find(rt, "order"), &o, id);
}

static void stop(mly_runtime *rt, mly_id id, int status) {
  ck_assert_int_eq(mly_runtime_send(rt, id, EV_STOP, mly_value_int(status)), 0);
  RUN_UNTIL(rt, mly_instance_data(rt, id) == NULL, 100);
}

static mly_name_info lookup(mly_runtime *rt, const char *name, int want) {
  mly_name_info i = {0};
  ck_assert_int_eq(mly_name_lookup(rt, name, &i), want);
  return i;
}

/* ---- given names, in memory and durable ---- */

static void unique_case(const char *state_dir) {
  now_ms = T0;
  mly_runtime *rt = rt_at(state_dir, 0, 1);
  mly_id a = 0, b = 0;
  ck_assert_int_eq(spawn_named(rt, "order-1", &a), 0);
  ck_assert_str_eq(mly_instance_name(rt, a), "order-1");
  /* live: refused, and lookup says running */
  ck_assert_int_eq(spawn_named(rt, "order-1", &b), MLY_EEXIST);
  ck_assert_uint_eq(b, 0);
  mly_name_info i = lookup(rt, "order-1", 0);
  ck_assert_int_eq(i.state, MLY_NAME_LIVE);
  ck_assert_uint_eq(i.id, a);
  RUN_UNTIL(rt, strcmp(self_name, "order-1") == 0, 100);
  lookup(rt, "order-2", MLY_ENOENT);
  now_ms = T0 + 5000;
  stop(rt, a, 7);
  ck_assert_ptr_null(mly_instance_name(rt, a));
  /* ended: refused too, and lookup says done, how and when */
  ck_assert_int_eq(spawn_named(rt, "order-1", &b), MLY_EEXIST);
  i = lookup(rt, "order-1", 0);
  ck_assert_int_eq(i.state, MLY_NAME_ENDED);
  ck_assert_uint_eq(i.id, a);
  ck_assert_int_eq(i.status, 7);
  ck_assert_int_eq(i.ended_ms, T0 + 5000);
  /* other names are free; unnamed spawns are as before */
  ck_assert_int_eq(spawn_named(rt, "order-2", &b), 0);
  ck_assert_int_eq(spawn_named(rt, NULL, &a), 0);
  ck_assert_ptr_null(mly_instance_name(rt, a));
  stop(rt, a, 0);
  stop(rt, b, 0);
  i = lookup(rt, "order-2", 0);
  ck_assert_int_eq(i.state, MLY_NAME_ENDED);
  ck_assert_int_eq(i.status, 0);
  mly_runtime_close(rt);
}

START_TEST(t_names_unique_in_memory) { unique_case(NULL); }
END_TEST

START_TEST(t_names_unique_durable) {
  fresh_dir();
  unique_case(dir);
  h_rmtree(dir);
}
END_TEST

START_TEST(t_malformed_names_refused) {
  mly_runtime *rt = rt_at(NULL, 0, 1);
  mly_type *t = mly_type_find(rt, "order");
  char longest[MLY_INSTANCE_NAME_MAX + 2];
  memset(longest, 'x', sizeof longest - 1);
  longest[sizeof longest - 1] = '\0';
  const char *bad[] = {"", "a/b", "tab\there", "del\x7f", longest,
                       "bad\xff", "cut\xc3", "long\xc0\xaf", /* overlong */
                       "c1\xc2\x85", "surrogate\xed\xa0\x80"};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    /* the context is taken, also on error (ASan sees a leak if not) */
    mly_spawn_options o = {.name = bad[k], .context = mly_value_map()};
    mly_id id = 0;
    ck_assert_int_eq(mly_spawn_opts(rt, t, &o, &id), MLY_EINVAL);
    mly_name_info i;
    ck_assert_int_eq(mly_name_lookup(rt, bad[k], &i), MLY_EINVAL);
  }
  longest[MLY_INSTANCE_NAME_MAX] = '\0'; /* 255 bytes: fine */
  mly_id id = 0;
  ck_assert_int_eq(spawn_named(rt, longest, &id), 0);
  ck_assert_int_eq(spawn_named(rt, "spaces and ünïcode are fine", &id), 0);
  ck_assert_uint_eq(h_stat_live(rt), 2);
  mly_runtime_close(rt);
}
END_TEST

static bool generated_shape(const char *s, const char *type) {
  size_t tl = strlen(type);
  if (strncmp(s, type, tl) != 0 || strlen(s) != tl + 22) return false;
  s += tl;
  if (s[0] != '-' || s[15] != '-') return false;
  for (int i = 1; i < 15; i++)
    if (s[i] < '0' || s[i] > '9') return false;
  for (int i = 16; i < 22; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
      return false;
  return true;
}

START_TEST(t_generated_names) {
  now_ms = T0 + 3723000; /* 01:02:03 */
  mly_runtime *rt = rt_at(NULL, 0, 1);
  mly_type_def def = named_def("shop/order", 1, false);
  mly_type *slash = h_type(rt, &def);
  mly_type *t = mly_type_find(rt, "order");
  char out[MLY_INSTANCE_NAME_MAX + 1];
  mly_spawn_options o = {.generate_name = true, .name_out = out,
                         .name_out_len = sizeof out};
  enum { N = 2000 };
  static char seen[N][MLY_INSTANCE_NAME_MAX + 1];
  for (int i = 0; i < N; i++) {
    mly_id id = 0;
    ck_assert_int_eq(mly_spawn_opts(rt, t, &o, &id), 0);
    ck_assert_msg(generated_shape(out, "order"), "shape: %s", out);
    ck_assert_int_eq(strncmp(out, "order-20260101010203-", 21), 0);
    ck_assert_str_eq(mly_instance_name(rt, id), out);
    snprintf(seen[i], sizeof seen[i], "%s", out);
  }
  for (int i = 1; i < N; i++) /* all held, so all differ */
    ck_assert_int_eq(lookup(rt, seen[i], 0).state, MLY_NAME_LIVE);
  ck_assert_uint_eq(h_stat_live(rt), N);
  /* a type name's '/' becomes '.' */
  ck_assert_int_eq(mly_spawn_opts(rt, slash, &o, NULL), 0);
  ck_assert_msg(generated_shape(out, "shop.order"), "shape: %s", out);
  /* name_out too short: nothing spawned */
  o.name_out_len = 10;
  ck_assert_int_eq(mly_spawn_opts(rt, t, &o, NULL), MLY_ERANGE);
  mly_spawn_options g = {.name = "given", .name_out = out, .name_out_len = 5};
  ck_assert_int_eq(mly_spawn_opts(rt, t, &g, NULL), MLY_ERANGE);
  g.name_out_len = 6;
  ck_assert_int_eq(mly_spawn_opts(rt, t, &g, NULL), 0);
  ck_assert_str_eq(out, "given");
  ck_assert_uint_eq(h_stat_live(rt), N + 2);
  mly_runtime_close(rt);
}
END_TEST

/* ---- retention ---- */

START_TEST(t_tombstone_expires) {
  fresh_dir();
  now_ms = T0;
  mly_runtime *rt = rt_at(dir, 1000, 1);
  mly_id a = 0, b = 0;
  ck_assert_int_eq(spawn_named(rt, "job", &a), 0);
  stop(rt, a, 3);
  now_ms = T0 + 999;
  ck_assert_int_eq(lookup(rt, "job", 0).state, MLY_NAME_ENDED);
  ck_assert_int_eq(spawn_named(rt, "job", &b), MLY_EEXIST);
  now_ms = T0 + 1000; /* the window is over: free, without a compaction */
  lookup(rt, "job", MLY_ENOENT);
  ck_assert_int_eq(spawn_named(rt, "job", &b), 0);
  ck_assert_int_eq(lookup(rt, "job", 0).state, MLY_NAME_LIVE);
  ck_assert_uint_eq(lookup(rt, "job", 0).id, b);
  /* expiry also happens without a lookup of that name: on any end */
  mly_id c = 0;
  ck_assert_int_eq(spawn_named(rt, "other", &c), 0);
  stop(rt, c, 0);
  ck_assert_uint_eq(names_ntombs(rt), 1);
  now_ms = T0 + 5000;
  stop(rt, b, 0);
  ck_assert_uint_eq(names_ntombs(rt), 1); /* "other" expired, "job" new */
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

static int count_tombs(const mly_record *r, void *arg) {
  if (strcmp(r->kind, "tomb") == 0) ++*(int *)arg;
  return 0;
}

static int tombs_on_disk(void) {
  int n = 0;
  char err[256];
  ck_assert_int_eq(mly_journal_scan(dir, false, count_tombs, &n, err,
                                    sizeof err), 0);
  return n;
}

START_TEST(t_tombstones_across_restart_and_compaction) {
  int64_t retention = _i == 0 ? 10000 : -1; /* 10 s, or forever */
  fresh_dir();
  now_ms = T0;
  mly_runtime *rt = rt_at(dir, retention, 1);
  mly_id a = 0, b = 0, c = 0;
  ck_assert_int_eq(spawn_named(rt, "a", &a), 0);
  ck_assert_int_eq(spawn_named(rt, "b", &b), 0);
  ck_assert_int_eq(spawn_named(rt, "c", &c), 0);
  stop(rt, a, 1);
  now_ms = T0 + 5000;
  stop(rt, b, 2);
  mly_runtime_close(rt); /* c is suspended, its name with it */

  now_ms = T0 + 6000;
  rt = rt_at(dir, retention, 1);
  mly_name_info i = lookup(rt, "a", 0);
  ck_assert_int_eq(i.state, MLY_NAME_ENDED);
  ck_assert_uint_eq(i.id, a);
  ck_assert_int_eq(i.status, 1);
  ck_assert_int_eq(i.ended_ms, T0);
  i = lookup(rt, "b", 0);
  ck_assert_int_eq(i.status, 2);
  ck_assert_int_eq(i.ended_ms, T0 + 5000);
  i = lookup(rt, "c", 0);
  ck_assert_int_eq(i.state, MLY_NAME_LIVE);
  ck_assert_uint_eq(i.id, c);
  ck_assert_str_eq(mly_instance_name(rt, c), "c");
  ck_assert_int_eq(spawn_named(rt, "c", NULL), MLY_EEXIST);

  now_ms = T0 + 11000; /* "a" is past the window, "b" is not */
  ck_assert_int_eq(mly_journal_compact(rt), 0);
  if (H_JOURNAL_FIGURE("tombstones in its files after a compaction"))
    ck_assert_int_eq(tombs_on_disk(), retention < 0 ? 2 : 1);
  mly_runtime_close(rt);
  rt = rt_at(dir, retention, 1);
  if (retention < 0) {
    ck_assert_int_eq(lookup(rt, "a", 0).status, 1);
  } else {
    lookup(rt, "a", MLY_ENOENT);
    ck_assert_int_eq(spawn_named(rt, "a", NULL), 0);
  }
  ck_assert_int_eq(lookup(rt, "b", 0).state, MLY_NAME_ENDED);
  ck_assert_str_eq(mly_instance_name(rt, c), "c");
  now_ms = T0 + 365ll * 24 * 3600 * 1000;
  ck_assert_int_eq(mly_journal_compact(rt), 0);
  mly_runtime_close(rt);
  rt = rt_at(dir, retention, 1);
  if (retention < 0) ck_assert_int_eq(lookup(rt, "b", 0).status, 2);
  else lookup(rt, "b", MLY_ENOENT);
  ck_assert_int_eq(lookup(rt, "c", 0).state, MLY_NAME_LIVE);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

/* ---- SIGKILL: names and tombstones of what committed ---- */

START_TEST(t_names_survive_sigkill) {
  fresh_dir();
  now_ms = T0;
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    mly_runtime *rt = rt_at(dir, 0, 1);
    mly_id ids[10];
    char name[32];
    for (int i = 0; i < 10; i++) {
      snprintf(name, sizeof name, "n%d", i);
      if (spawn_named(rt, name, &ids[i]) < 0) _exit(3);
    }
    for (int i = 0; i < 5; i++)
      mly_runtime_send(rt, ids[i], EV_STOP, mly_value_int(i));
    mly_journal_stats st;
    for (int k = 0; k < 1000; k++) { /* until the ends are synced */
      uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
      mly_journal_stats_get(rt, &st);
      if (h_stat_live(rt) == 5 && st.syncs >= 2) break;
    }
    raise(SIGKILL);
  }
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  mly_runtime *rt = rt_at(dir, 0, 1);
  char name[32];
  for (int i = 0; i < 10; i++) {
    snprintf(name, sizeof name, "n%d", i);
    mly_name_info n = lookup(rt, name, 0);
    ck_assert_int_eq(n.state, i < 5 ? MLY_NAME_ENDED : MLY_NAME_LIVE);
    if (i < 5) ck_assert_int_eq(n.status, i);
    else ck_assert_str_eq(mly_instance_name(rt, n.id), name);
    ck_assert_int_eq(spawn_named(rt, name, NULL), MLY_EEXIST);
  }
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

/* ---- send by name ---- */

static int post_status = 1;
static void post_cb(mly_runtime *rt, int status, void *arg) {
  (void)rt;
  (void)arg;
  post_status = status;
}

START_TEST(t_send_by_name) {
  fresh_dir();
  now_ms = T0;
  gos = 0;
  mly_runtime *rt = rt_at(dir, 0, 1);
  mly_id id = 0;
  ck_assert_int_eq(spawn_named(rt, "target", &id), 0);
  mly_runtime_close(rt);
  rt = rt_at(dir, 0, 1);
  mly_name_info i = lookup(rt, "target", 0);
  ck_assert_int_eq(i.state, MLY_NAME_LIVE);
  ck_assert_int_eq(mly_post_durable(rt, i.id, EV_GO, NULL, post_cb, NULL), 0);
  RUN_UNTIL(rt, post_status == 0 && gos == 1, 200);
  stop(rt, i.id, 0);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

/* ---- parked instances keep their names ---- */

START_TEST(t_parked_keeps_name) {
  fresh_dir();
  now_ms = T0;
  mly_runtime *rt = rt_at(dir, 0, 1);
  mly_id id = 0;
  mly_spawn_options o = {.name = "keeper", .context = mly_value_str("kept")};
  ck_assert_int_eq(mly_spawn_opts(rt, mly_type_find(rt, "order"), &o, &id), 0);
  mly_runtime_close(rt);

  rt = rt_at(dir, 0, 2); /* version 2 does not resume version 1: parked */
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  ck_assert_uint_eq(st.parked, 1);
  mly_name_info i = lookup(rt, "keeper", 0);
  ck_assert_int_eq(i.state, MLY_NAME_LIVE);
  ck_assert_uint_eq(i.id, id);
  ck_assert_int_eq(spawn_named(rt, "keeper", NULL), MLY_EEXIST);
  ck_assert_int_eq(mly_journal_compact(rt), 0); /* kept whole */
  mly_runtime_close(rt);

  rt = rt_at(dir, 0, 1); /* the right code again: back, name and context */
  ck_assert_str_eq(mly_instance_name(rt, id), "keeper");
  const char *s = NULL;
  ck_assert_int_eq(mly_value_get_str(mly_instance_context(rt, id), &s, NULL),
                   0);
  ck_assert_str_eq(s, "kept");
  stop(rt, id, 0);
  ck_assert_int_eq(lookup(rt, "keeper", 0).state, MLY_NAME_ENDED);
  mly_runtime_close(rt);
  h_rmtree(dir);
}
END_TEST

/* ---- a durable step spawns a named child with a context ---- */

#define PARENT_POINTS(X) X(parent, wait)
MLY_POINTS(parent, PARENT_POINTS);
static int parent_spawned;
static int parent_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  {
    int64_t zero = 0;
    mly_spawn_options o = {.arg = &zero, .arg_len = sizeof zero,
                           .name = "kid", .context = mly_value_str("ctx")};
    mly_type *t = mly_type_find(mly_machine_runtime(m), "order");
    parent_spawned = mly_spawn_child_opts(m, t, &o, NULL) == 0;
    /* the same name again, in the same step: held already */
    o.context = mly_value_str("again");
    if (mly_spawn_child_opts(m, t, &o, NULL) != MLY_EEXIST) parent_spawned = -1;
  }
  MLY_AWAIT_AT(m, parent_wait, EV_STOP, -1);
  MLY_END(m);
}

START_TEST(t_child_named_with_context) {
  fresh_dir();
  now_ms = T0;
  mly_type_def pdef = {.name = "parent", .run = parent_run,
                       MLY_TYPE_POINTS(parent), .version = 1,
                       .flags = MLY_TYPE_DURABLE};
  mly_runtime *rt;
  for (int round = 0; round < 2; round++) {
    rt = h_runtime();
    mly_type_def def = named_def("order", 1, true);
    h_type(rt, &def);
    h_type(rt, &pdef);
    ck_assert_int_eq(names_set_clock(rt, test_clock, NULL), 0);
    mly_journal_options o = {.dir = dir};
    ck_assert_int_eq(h_durable_open(rt, &o, NULL, 0), 0);
    if (round == 0) {
      h_spawn(rt, mly_type_find(rt, "parent"), NULL, 0);
      RUN_UNTIL(rt, parent_spawned != 0, 100);
      ck_assert_int_eq(parent_spawned, 1);
    }
    /* the child's first state, in its parent's record: name and context */
    mly_name_info i = lookup(rt, "kid", 0);
    ck_assert_int_eq(i.state, MLY_NAME_LIVE);
    const char *s = NULL;
    ck_assert_int_eq(mly_value_get_str(mly_instance_context(rt, i.id), &s,
                                       NULL), 0);
    ck_assert_str_eq(s, "ctx");
    ck_assert_str_eq(mly_instance_name(rt, i.id), "kid");
    mly_runtime_close(rt);
  }
  h_rmtree(dir);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("names");
  TCase *c = tcase_create("names");
  tcase_set_timeout(c, 300);
  tcase_add_test(c, t_names_unique_in_memory);
  tcase_add_test(c, t_names_unique_durable);
  tcase_add_test(c, t_malformed_names_refused);
  tcase_add_test(c, t_generated_names);
  tcase_add_test(c, t_tombstone_expires);
  tcase_add_loop_test(c, t_tombstones_across_restart_and_compaction, 0, 2);
  tcase_add_test(c, t_names_survive_sigkill);
  tcase_add_test(c, t_send_by_name);
  tcase_add_test(c, t_parked_keeps_name);
  tcase_add_test(c, t_child_named_with_context);
  suite_add_tcase(s, c);
  return s;
}

H_MAIN(suite)
