/*
 * test_fsm_migrate.c - moving running YAML machine instances to a new
 * definition (mly_fsm_migrate): a safe move is taken in a step of the
 * instance's own and it goes on on the new definition, also after a
 * restart; each unsafe change is refused with its reason; a dry run
 * changes nothing; a sleeping instance keeps its deadline; and random
 * combinations of safe and unsafe changes against a model of the
 * verdict, each waiting instance then finishing on the definition the
 * model says (MIGRATE_SEED=N repeats a run; the seed is in a failure).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm_helpers.h"

static char finals[8][64];
static int nfinals;
static char lines[32][512];
static int nlines;

static void log_line(void *arg, const char *line) {
  (void)arg;
  if (nlines < 32) snprintf(lines[nlines++], sizeof lines[0], "%s", line);
}
static bool logged(const char *needle) {
  for (int i = 0; i < nlines; i++)
    if (strstr(lines[i], needle)) return true;
  return false;
}

static int go(mly_action_call *c, void *arg) {
  (void)arg;
  const char *ev = "go"; /* or the context's "ev" */
  mly_map_get_str(mly_action_context(c), "ev", &ev);
  return mly_action_event(c, ev);
}
static int final_(mly_action_call *c, void *arg) {
  (void)arg;
  if (nfinals < 8)
    snprintf(finals[nfinals++], sizeof finals[0], "%s", mly_action_state(c));
  return 0;
}
static void reg(mly_runtime *rt) {
  ck_assert_int_eq(mly_action_register(rt, "Go", go, NULL, 0), 0);
  ck_assert_int_eq(mly_action_register(rt, "Final", final_, NULL, 0), 0);
  mly_fsm_set_log(rt, log_line, NULL);
}

/* v1: a -> w (wait) -> v1, with a countdown machine beside it */
#define HEAD "state_machines:\n- name: mig\n"
#define A "  - {name: a, initial: True, action: Go, transitions: [{event: go, to: w}]}\n"
static const char *v1 = HEAD
    "  context_types: {n: int, s: any}\n"
    "  states:\n" A
    "  - {name: w, wait: {events: [on]}, transitions: [{event: on, to: v1}]}\n"
    "  - {name: v1, final: True, entry: Final}\n";
/* safe: n widened to any, another final state, a new state */
static const char *v2 = HEAD
    "  context_types: {n: any}\n"
    "  states:\n" A
    "  - {name: w, wait: {events: [on, off]},\n"
    "     transitions: [{event: on, to: v2}, {event: off, to: x}]}\n"
    "  - {name: x, final: True, entry: Final}\n"
    "  - {name: v2, final: True, entry: Final}\n";
/* unsafe, one reason each */
static const char *not_wait = HEAD
    "  states:\n" A
    "  - {name: w, action: Go, transitions: [{event: go, to: v1}]}\n"
    "  - {name: v1, final: True, entry: Final}\n";
static const char *no_state = HEAD
    "  states:\n"
    "  - {name: a, initial: True, action: Go, transitions: [{event: go, to: w2}]}\n"
    "  - {name: w2, wait: {events: [on]}, transitions: [{event: on, to: v1}]}\n"
    "  - {name: v1, final: True, entry: Final}\n";
static const char *narrowed = HEAD
    "  context_types: {n: string}\n"
    "  states:\n" A
    "  - {name: w, wait: {events: [on]}, transitions: [{event: on, to: v1}]}\n"
    "  - {name: v1, final: True, entry: Final}\n";
static const char *from_any = HEAD
    "  context_types: {s: int}\n"
    "  states:\n" A
    "  - {name: w, wait: {events: [on]}, transitions: [{event: on, to: v1}]}\n"
    "  - {name: v1, final: True, entry: Final}\n";
static const char *new_type = HEAD
    "  context_types: {n: int, t: int}\n"
    "  states:\n" A
    "  - {name: w, wait: {events: [on]}, transitions: [{event: on, to: v1}]}\n"
    "  - {name: v1, final: True, entry: Final}\n";

typedef struct report {
  int n, migrated;
  char name[8][64], reason[8][256];
  bool ok[8];
} report;
static void on_mig(void *arg, const mly_fsm_migration *m) {
  report *r = arg;
  if (r->n < 8) {
    snprintf(r->name[r->n], sizeof r->name[0], "%s", m->name);
    snprintf(r->reason[r->n], sizeof r->reason[0], "%s", m->reason);
    r->ok[r->n] = m->migrated;
    r->n++;
  }
  r->migrated += m->migrated;
}

static int migrate(mly_runtime *rt, const char *yaml, uint32_t flags,
                   report *r) {
  memset(r, 0, sizeof *r);
  mly_fsm_set *set = fh_load(rt, yaml);
  int rc = mly_fsm_migrate(rt, set, flags, on_mig, r);
  mly_fsm_set_free(set);
  return rc;
}

static void hash_of(mly_runtime *rt, const char *name, char out[65]) {
  mly_fsm_info fi;
  ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, name), &fi), 0);
  memcpy(out, fi.hash, 65);
}

static const char *want_hash;
static bool has_hash(mly_runtime *rt, void *name) {
  char h[65];
  hash_of(rt, name, h);
  return strcmp(h, want_hash) == 0;
}

static char tmpdir[64];
static mly_runtime *fresh(void) {
  h_tmpdir(tmpdir, sizeof tmpdir, "mly-fsmmig");
  nfinals = nlines = 0;
  return fh_durable(tmpdir, reg);
}

static void start(mly_runtime *rt, const char *name, mly_value *ctx) {
  ck_assert_int_eq(mly_fsm_start(rt, "mig", name, ctx, NULL, 0, NULL), 0);
  fh_at at = {name, "wait", "w"};
  fh_until(rt, fh_is_at, &at, 10000);
}

/* the hash a set's machine has, as the runtime reports it */
static void set_hash(mly_runtime *rt, const char *yaml, char out[65]) {
  mly_fsm_set *set = fh_load(rt, yaml);
  const unsigned char *h = mly_fsm_hash(mly_fsm_find(set, "mig"));
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", h[i]);
  mly_fsm_set_free(set);
}

START_TEST(safe_migration_survives_restart) {
  mly_runtime *rt = fresh();
  fh_add(rt, v1);
  mly_value *ctx = mly_value_map();
  mly_map_set_int(ctx, "n", 7);
  start(rt, "m1", ctx);
  char h1[65], h2[65], h[65];
  hash_of(rt, "m1", h1);
  set_hash(rt, v2, h2);
  ck_assert_str_ne(h1, h2);

  /* dry run: reported, nothing changes, new starts stay on v1 */
  report r;
  ck_assert_int_eq(migrate(rt, v2, MLY_FSM_MIGRATE_DRY_RUN, &r), 1);
  ck_assert_int_eq(r.n, 1);
  ck_assert_str_eq(r.name[0], "m1");
  ck_assert(r.ok[0]);
  h_turns(rt, 50);
  hash_of(rt, "m1", h);
  ck_assert_str_eq(h, h1);
  start(rt, "d1", NULL);
  hash_of(rt, "d1", h);
  ck_assert_str_eq(h, h1);

  /* for real: both move, in a step of their own */
  ck_assert_int_eq(migrate(rt, v2, 0, &r), 2);
  want_hash = h2;
  fh_until(rt, has_hash, "m1", 10000);
  fh_until(rt, has_hash, "d1", 10000);
  ck_assert(logged("instance m1: migrated to definition"));
  fh_at at = {"m1", "wait", "w"};
  ck_assert(fh_is_at(rt, &at));
  /* migrating again finds nothing to move */
  ck_assert_int_eq(migrate(rt, v2, 0, &r), 0);
  ck_assert_int_eq(r.n, 0);

  /* restart with only the old file: they stay on v2 */
  mly_runtime_close(rt);
  rt = fh_durable(tmpdir, reg);
  fh_add(rt, v1);
  hash_of(rt, "m1", h);
  ck_assert_str_eq(h, h2);
  ck_assert_int_eq(mly_fsm_send(rt, "m1", "on", NULL, NULL, NULL), 0);
  ck_assert_int_eq(mly_fsm_send(rt, "d1", "off", NULL, NULL, NULL), 0);
  fh_until(rt, fh_ended, "m1", 10000);
  fh_until(rt, fh_ended, "d1", 10000);
  ck_assert_int_eq(fh_end_status(rt, "m1"), 0);
  ck_assert_int_eq(fh_end_status(rt, "d1"), 0);
  ck_assert_int_eq(nfinals, 2); /* v2's states, which v1 lacks */
  ck_assert(strcmp(finals[0], "v2") == 0 || strcmp(finals[1], "v2") == 0);
  ck_assert(strcmp(finals[0], "x") == 0 || strcmp(finals[1], "x") == 0);
  mly_runtime_close(rt);
  h_rmtree(tmpdir);
}
END_TEST

START_TEST(unsafe_refused_with_reasons) {
  mly_runtime *rt = fresh();
  fh_add(rt, v1);
  mly_value *ctx = mly_value_map();
  mly_map_set_int(ctx, "n", 7);
  mly_map_set_str(ctx, "s", "text");
  mly_map_set_str(ctx, "t", "text");
  start(rt, "u1", ctx);
  char h1[65], h[65];
  hash_of(rt, "u1", h1);
  static const struct {
    const char **yaml;
    const char *reason;
  } cases[] = {
      {&not_wait, "state w is a wait state but a plain state"},
      {&no_state, "state w is not in the new definition"},
      {&narrowed, "context key n changes type from int to string"},
      {&from_any, "context key s changes type from any to int"},
      {&new_type, "context key t is string but machine mig declares it int"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (uint32_t dry = 0; dry < 2; dry++) {
      report r;
      ck_assert_int_eq(migrate(rt, *cases[i].yaml, dry, &r), 0);
      ck_assert_int_eq(r.n, 1);
      ck_assert(!r.ok[0]);
      ck_assert_msg(strstr(r.reason[0], cases[i].reason) != NULL,
                    "case %zu: reason '%s'", i, r.reason[0]);
    }
  }
  h_turns(rt, 50);
  hash_of(rt, "u1", h);
  ck_assert_str_eq(h, h1);
  ck_assert_int_eq(mly_fsm_send(rt, "u1", "on", NULL, NULL, NULL), 0);
  fh_until(rt, fh_ended, "u1", 10000);
  ck_assert_int_eq(nfinals, 1);
  ck_assert_str_eq(finals[0], "v1");
  mly_runtime_close(rt);
  h_rmtree(tmpdir);
}
END_TEST

/* A sleeping instance (a countdown pending) takes the migration at its
 * sleep and keeps its deadline; a pending transition that the new
 * definition lacks is refused. */
static const char *cd1 = HEAD
    "  states:\n"
    "  - {name: a, initial: True, action: Go,\n"
    "     transitions: [{event: go, to: b, countdown: 1h}]}\n"
    "  - {name: b, final: True, entry: Final}\n";
static const char *cd2 = HEAD
    "  states:\n"
    "  - {name: a, initial: True, action: Go,\n"
    "     transitions: [{event: go, to: b, countdown: 2h}]}\n"
    "  - {name: b, final: True, entry: Final}\n";
static const char *cd_other = HEAD
    "  states:\n"
    "  - {name: a, initial: True, action: Go,\n"
    "     transitions: [{event: go, to: c}]}\n"
    "  - {name: b, final: True, entry: Final}\n"
    "  - {name: c, action: Go, transitions: [{event: go, to: b}]}\n";

START_TEST(sleeping_instance) {
  mly_runtime *rt = fresh();
  fh_add(rt, cd1);
  ck_assert_int_eq(mly_fsm_start(rt, "mig", "s1", NULL, NULL, 0, NULL), 0);
  fh_at at = {"s1", "sleep", "a"};
  fh_until(rt, fh_is_at, &at, 10000);
  mly_fsm_info fi;
  ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, "s1"), &fi), 0);
  int64_t due = fi.due_ms;
  report r;
  ck_assert_int_eq(migrate(rt, cd_other, 0, &r), 0);
  ck_assert_int_eq(r.n, 1);
  ck_assert_msg(strstr(r.reason[0], "pending transition a -(go)-> b") != NULL,
                "%s", r.reason[0]);
  char h2[65];
  set_hash(rt, cd2, h2);
  ck_assert_int_eq(migrate(rt, cd2, 0, &r), 1);
  want_hash = h2;
  fh_until(rt, has_hash, "s1", 10000);
  ck_assert_int_eq(mly_fsm_info_get(rt, fh_id(rt, "s1"), &fi), 0);
  ck_assert_str_eq(fi.phase, "sleep");
  ck_assert_str_eq(fi.state, "a");
  ck_assert_int_eq(fi.due_ms, due); /* the deadline chosen stays */
  ck_assert_int_eq(nfinals, 0);
  mly_runtime_close(rt);
  h_rmtree(tmpdir);
}
END_TEST

/* ---- randomized: the verdict and what follows against a model ---- */

/* v1, and v2 built from independent changes, each safe or not by
 * construction: the model of mly_fsm_migrate's verdict.  Instances wait
 * at w, or sleep in a with a pending countdown transition into w. */
static const char *rv1 =
    "state_machines:\n- name: mig\n  context_types: {n: int}\n  states:\n"
    "  - {name: a, initial: True, action: Go, transitions:\n"
    "     [{event: slow, to: w, countdown: 1h}, {event: fast, to: w}]}\n"
    "  - {name: w, wait: {events: [on]}, transitions: [{event: on, to: f1}]}\n"
    "  - {name: f1, final: True, entry: Final}\n";

typedef struct change {
  int w_kind;   /* 0 wait (safe), 1 plain (unsafe)                    */
  int w_name;   /* 0 w (safe), 1 w2 (unsafe)                          */
  int slow;     /* 0 slow -> w (safe), 1 slow -> x (unsafe: sleepers) */
  int n_type;   /* 0 int, 1 any (safe), 2 string (unsafe)             */
  int m_type;   /* 0 none, 1 m: int declared anew                     */
} change;

static void make_v2(const change *c, char *buf, size_t len) {
  static const char *nt[] = {"int", "any", "string"};
  const char *w = c->w_name ? "w2" : "w";
  snprintf(buf, len,
           "state_machines:\n- name: mig\n  context_types: {n: %s%s}\n"
           "  states:\n"
           "  - {name: a, initial: True, action: Go, transitions:\n"
           "     [{event: slow, to: %s, countdown: 1h}, {event: fast, to: %s},\n"
           "      {event: other, to: x}]}\n"
           "  - {name: %s, %s transitions: [{event: %s, to: f2}]}\n"
           "  - {name: f2, final: True, entry: Final}\n"
           "  - {name: x, final: True}\n",
           nt[c->n_type], c->m_type ? ", m: int" : "", c->slow ? "x" : w, w,
           w, c->w_kind ? "action: Go," : "wait: {events: [on]},",
           c->w_kind ? "go" : "on");
}

static bool model_safe(const change *c, bool sleeper, bool has_m) {
  return !c->w_kind && !c->w_name && !(sleeper && c->slow) &&
         c->n_type != 2 && !(c->m_type && has_m);
}

static bool settled(mly_runtime *rt, void *arg) {
  (void)arg;
  static const char *names[] = {"r0", "r1", "r2", "r3"};
  for (int i = 0; i < 4; i++) {
    fh_at w = {names[i], "wait", "w"}, s = {names[i], "sleep", "a"};
    if (!fh_is_at(rt, &w) && !fh_is_at(rt, &s)) return false;
  }
  return true;
}

START_TEST(random_changes_vs_model) {
  unsigned seed = (unsigned)getpid();
  if (getenv("MIGRATE_SEED")) seed = (unsigned)atoi(getenv("MIGRATE_SEED"));
  srand(seed);
  int safe_seen = 0, unsafe_seen = 0;
  for (int round = 0; round < 40; round++) {
    change c = {rand() % 4 == 0, rand() % 5 == 0, rand() % 3 == 0,
                rand() % 3, rand() % 2};
    char v2[1024];
    make_v2(&c, v2, sizeof v2);
    mly_runtime *rt = h_runtime();
    nfinals = nlines = 0;
    reg(rt);
    fh_add(rt, rv1);
    /* r0, r1 wait; r2, r3 sleep; r1 and r3 hold m as a string */
    bool sleeper[4] = {false, false, true, true};
    bool has_m[4] = {false, true, false, true};
    char name[4][8];
    for (int i = 0; i < 4; i++) {
      snprintf(name[i], sizeof name[i], "r%d", i);
      mly_value *ctx = mly_value_map();
      mly_map_set_int(ctx, "n", i);
      mly_map_set_str(ctx, "ev", sleeper[i] ? "slow" : "fast");
      if (has_m[i]) mly_map_set_str(ctx, "m", "text");
      ck_assert_int_eq(mly_fsm_start(rt, "mig", name[i], ctx, NULL, 0, NULL),
                       0);
    }
    fh_until(rt, settled, NULL, 10000);
    char h1[65], h2[65], h[65];
    hash_of(rt, "r0", h1);
    set_hash(rt, v2, h2);
    report r;
    int want = 0;
    for (int i = 0; i < 4; i++) want += model_safe(&c, sleeper[i], has_m[i]);
    ck_assert_int_eq(migrate(rt, v2, 0, &r), want);
    ck_assert_int_eq(r.n, 4);
    for (int k = 0; k < 4; k++) {
      int i = r.name[k][1] - '0';
      bool ok = model_safe(&c, sleeper[i], has_m[i]);
      ck_assert_msg(r.ok[k] == ok, "seed %u round %d %s: %s (%s)", seed, round,
                    r.name[k], r.ok[k] ? "migrated" : "refused", r.reason[k]);
      ck_assert(ok || r.reason[k][0] != '\0');
      ok ? safe_seen++ : unsafe_seen++;
    }
    /* each moves (in a step of its own) or stays; waiters then finish on
       the definition they ended up with */
    for (int i = 0; i < 4; i++) {
      if (model_safe(&c, sleeper[i], has_m[i])) {
        want_hash = h2;
        fh_until(rt, has_hash, name[i], 10000);
      }
    }
    h_turns(rt, 50);
    for (int i = 0; i < 4; i++) {
      hash_of(rt, name[i], h);
      ck_assert_str_eq(h, model_safe(&c, sleeper[i], has_m[i]) ? h2 : h1);
      fh_at at = {name[i], sleeper[i] ? "sleep" : "wait",
                  sleeper[i] ? "a" : "w"};
      ck_assert(fh_is_at(rt, &at));
      if (sleeper[i]) continue;
      nfinals = 0;
      ck_assert_int_eq(mly_fsm_send(rt, name[i], "on", NULL, NULL, NULL), 0);
      fh_until(rt, fh_ended, name[i], 10000);
      ck_assert_int_eq(nfinals, 1);
      ck_assert_str_eq(finals[0],
                       model_safe(&c, false, has_m[i]) ? "f2" : "f1");
    }
    mly_runtime_close(rt);
  }
  ck_assert_msg(safe_seen > 0 && unsafe_seen > 0, "seed %u: one-sided", seed);
}
END_TEST

/* mly_fsm_migrate_durable answers once, after it returned, when the
 * events' records are in the journal (counted: the journal wrote and
 * synced them before the answer); never for a dry run or nothing moved;
 * without a journal, on the next turn. */
static int answers, answer_status;
static uint64_t synced_at_answer;
static void answered(mly_runtime *rt, int status, void *arg) {
  (void)arg;
  answers++;
  answer_status = status;
  mly_journal_stats js;
  if (mly_journal_stats_get(rt, &js) == 0) synced_at_answer = js.syncs;
}
static bool answered_once(mly_runtime *rt, void *arg) {
  (void)rt, (void)arg;
  return answers > 0;
}

START_TEST(durable_answer) {
  mly_runtime *rt = fresh();
  fh_add(rt, v1);
  start(rt, "d1", NULL);
  start(rt, "d2", NULL);
  mly_fsm_set *set = fh_load(rt, v2);
  answers = 0;
  report r = {0};
  ck_assert_int_eq(mly_fsm_migrate_durable(rt, set, MLY_FSM_MIGRATE_DRY_RUN,
                                           on_mig, &r, answered, NULL), 2);
  for (int i = 0; i < 20; i++) uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
  ck_assert_int_eq(answers, 0); /* a dry run posts nothing: no answer */
  mly_journal_stats js;
  ck_assert_int_eq(mly_journal_stats_get(rt, &js), 0);
  uint64_t syncs = js.syncs, records = js.records;
  memset(&r, 0, sizeof r);
  ck_assert_int_eq(mly_fsm_migrate_durable(rt, set, 0, on_mig, &r, answered,
                                           NULL), 2);
  ck_assert_int_eq(answers, 0); /* never before it returns */
  ck_assert_int_eq(r.migrated, 2);
  fh_until(rt, answered_once, NULL, 10000);
  ck_assert_int_eq(answer_status, 0);
  ck_assert_int_eq(mly_journal_stats_get(rt, &js), 0);
  ck_assert_uint_gt(synced_at_answer, syncs);   /* a sync came before it */
  ck_assert_uint_ge(js.records, records + 2);   /* the two events' records */
  /* the same file again: nothing to move, no answer */
  ck_assert_int_eq(mly_fsm_migrate_durable(rt, set, 0, NULL, NULL, answered,
                                           NULL), 0);
  for (int i = 0; i < 20; i++) uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
  ck_assert_int_eq(answers, 1);
  mly_fsm_set_free(set);
  mly_runtime_close(rt);
  h_rmtree(tmpdir);

  /* without a journal: on the next turn */
  rt = h_runtime();
  reg(rt);
  fh_add(rt, v1);
  ck_assert_int_eq(mly_fsm_start(rt, "mig", "m-mem", NULL, NULL, 0, NULL), 0);
  fh_at at = {"m-mem", "wait", "w"};
  fh_until(rt, fh_is_at, &at, 10000);
  set = fh_load(rt, v2);
  answers = 0;
  ck_assert_int_eq(mly_fsm_migrate_durable(rt, set, 0, NULL, NULL, answered,
                                           NULL), 1);
  ck_assert_int_eq(answers, 0);
  fh_until(rt, answered_once, NULL, 10000);
  ck_assert_int_eq(answer_status, 0);
  mly_fsm_set_free(set);
  mly_runtime_close(rt);
}
END_TEST

START_TEST(bad_arguments) {
  mly_runtime *rt = h_runtime();
  ck_assert_int_eq(mly_fsm_migrate(rt, NULL, 0, NULL, NULL), MLY_EINVAL);
  ck_assert_int_eq(mly_fsm_migrate_durable(rt, NULL, 0, NULL, NULL, NULL,
                                           NULL), MLY_EINVAL);
  mly_runtime_close(rt);
}
END_TEST

static Suite *fsm_migrate_suite(void) {
  Suite *s = suite_create("fsm_migrate");
  TCase *tc = tcase_create("migrate");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, safe_migration_survives_restart);
  tcase_add_test(tc, unsafe_refused_with_reasons);
  tcase_add_test(tc, sleeping_instance);
  tcase_add_test(tc, random_changes_vs_model);
  tcase_add_test(tc, durable_answer);
  tcase_add_test(tc, bad_arguments);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(fsm_migrate_suite)
