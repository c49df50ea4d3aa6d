/*
 * test_fsm_migrate.c - moving running YAML machine instances to a new
 * definition (mly_fsm_migrate): a safe move is taken in a step of the
 * instance's own and it goes on on the new definition, also after a
 * restart; each unsafe change is refused with its reason; a dry run
 * changes nothing; a sleeping instance keeps its deadline.
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
  return mly_action_event(c, "go");
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
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mly-fsmmig-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
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
  for (int i = 0; i < 50; i++) uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
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
  for (int i = 0; i < 50; i++) uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
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

START_TEST(bad_arguments) {
  mly_runtime *rt = h_runtime();
  ck_assert_int_eq(mly_fsm_migrate(rt, NULL, 0, NULL, NULL), MLY_EINVAL);
  mly_runtime_close(rt);
}
END_TEST

int main(void) {
  Suite *s = suite_create("fsm_migrate");
  TCase *tc = tcase_create("migrate");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, safe_migration_survives_restart);
  tcase_add_test(tc, unsafe_refused_with_reasons);
  tcase_add_test(tc, sleeping_instance);
  tcase_add_test(tc, bad_arguments);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
