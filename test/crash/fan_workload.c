/*
 * fan_workload.c - YAML machines that fork, spawn, continue and fan in,
 * for fan_crash to kill.
 *
 *   fan_workload DIR run ROUND     start job ROUND, work until killed
 *   fan_workload DIR finish ROUNDS start any job 0..ROUNDS-1 not yet
 *                                  started, work until every instance
 *                                  has ended, then exit 0
 *
 * Job r has N items and batch size 1 + r % 4.  Its first action forks 2
 * copies, so 3 continuation chains walk the items; every replica spawns
 * one `kid`; each chain merges at `join` (count 0: all its replicas),
 * whose action forks once more; the 6 instances per job merge at
 * `gather` (a 30 ms window, grouped by job; even jobs) or `gather2`
 * (a count of 6, grouped by job; odd jobs), whose action writes
 * DIR/out/r-NAME: "job COUNT SUM ITEMS" and the replica count of each
 * merged chain.  A kid writes DIR/out/k-NAME.  Files are named after the
 * instance that writes them and written whole (rename), so an action
 * that runs again after a crash writes the same file again; anything
 * merged or spawned twice, or lost, shows in the counts fan_crash makes.
 * In run mode it writes "open" on fd 3 once its store is open (the
 * store: MLY_TEST_STORE, test/store_param.h), from which fan_crash times
 * its kill.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fsm_fan_util.h"
#include "mealy.h"
#include "../store_param.h"

#define N_ITEMS 24

static char out_dir[4096];

static const char *yaml =
    "state_machines:\n"
    FAN_Y_MACHINE("job")
    FAN_Y_START("Start", "work") FAN_Y_WORK("Work", "")
    "      - name: join\n"
    "        fan_in: {count: 0}\n"
    "        action: Join\n"
    "        transitions:\n"
    "          - {event: go, to: gather}\n"
    "          - {event: go2, to: gather2}\n"
    "      - name: gather2\n"
    "        fan_in: {count: 6}\n"
    "        fan_in_group: job\n"
    "        action: Gather\n"
    "        transitions:\n"
    "          - {event: ok, to: end}\n"
    "      - name: gather\n"
    "        fan_in: 30ms\n"
    "        fan_in_group: job\n"
    "        action: Gather\n"
    "        transitions:\n"
    "          - {event: ok, to: end}\n"
    "      - name: end\n"
    "        final: True\n"
    FAN_Y_MACHINE("kid")
    "      - name: start\n"
    "        initial: True\n"
    "        final: True\n"
    "        action: Kid\n";

static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...) {
  char path[4200];
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "BAD ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  snprintf(path, sizeof path, "%s/BAD", out_dir);
  FILE *f = fopen(path, "a");
  if (f) {
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    va_end(ap);
    fclose(f);
  }
}

/* Write DIR/out/PREFIX-NAME whole, with text. */
static int put(const char *prefix, const char *key, const char *text) {
  char name[256], path[4400], tmp[4500];
  snprintf(name, sizeof name, "%s", key);
  for (char *p = name; *p; p++)
    if (*p == '/') *p = '_';
  snprintf(path, sizeof path, "%s/%s-%s", out_dir, prefix, name);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (f == NULL) return -errno;
  fputs(text, f);
  if (fclose(f) != 0 || rename(tmp, path) != 0) return -errno;
  return 0;
}

static int a_start(mly_action_call *c, void *arg) {
  (void)arg;
  mly_value *ctx = mly_action_context(c);
  mly_value *items = mly_value_array();
  for (int i = 0; i < N_ITEMS; i++) mly_array_push(items, mly_value_int(i));
  mly_map_set(ctx, "items", items);
  for (int i = 0; i < 2; i++) mly_action_fork(c, NULL);
  return mly_action_event(c, "go");
}

static int a_work(mly_action_call *c, void *arg) {
  (void)arg;
  mly_value *ctx = mly_action_context(c);
  if (mly_action_continuing(c))
    return mly_continue_list(c, "items", (uint32_t)fan_util_int(ctx, "bs"),
                             "batch");
  const mly_value *b = mly_map_get(ctx, "batch");
  int64_t sum = 0;
  for (size_t i = 0; i < mly_value_len(b); i++) {
    int64_t v = 0;
    mly_value_get_int(mly_array_at(b, i), &v);
    sum += v;
  }
  mly_map_set_int(ctx, "part", sum);
  mly_map_set_int(ctx, "k", (int64_t)mly_value_len(b));
  mly_value *kids = mly_value_array(), *kc = mly_value_map();
  mly_map_set_int(kc, "job", fan_util_int(ctx, "job"));
  mly_array_push(kids, kc);
  mly_action_spawn(c, "kid", kids, 0);
  return mly_action_event(c, "done");
}

static int a_join(mly_action_call *c, void *arg) {
  (void)arg;
  mly_value *ctx = mly_action_context(c);
  const mly_value *mg = mly_map_get(ctx, "merged");
  int64_t bs = fan_util_int(ctx, "bs"), sum = 0, k = 0;
  int64_t want = (N_ITEMS + bs - 1) / bs;
  for (size_t i = 0; i < mly_value_len(mg); i++) {
    sum += fan_util_int(mly_array_at(mg, i), "part");
    k += fan_util_int(mly_array_at(mg, i), "k");
  }
  if ((int64_t)mly_value_len(mg) != want || k != N_ITEMS ||
      sum != N_ITEMS * (N_ITEMS - 1) / 2)
    bad("%s: join merged %zu (want %" PRId64 "), k %" PRId64 ", sum %"
        PRId64, mly_action_key(c), mly_value_len(mg), want, k, sum);
  mly_map_set_int(ctx, "sum", sum);
  mly_map_set_int(ctx, "k", k);
  mly_map_set_int(ctx, "n", (int64_t)mly_value_len(mg));
  mly_map_del(ctx, "items");
  mly_map_del(ctx, "batch");
  mly_action_fork(c, NULL);
  /* odd jobs meet at a count, even ones in a time window */
  return mly_action_event(c, fan_util_int(ctx, "job") % 2 ? "go2" : "go");
}

static int a_gather(mly_action_call *c, void *arg) {
  (void)arg;
  mly_value *ctx = mly_action_context(c);
  const mly_value *mg = mly_map_get(ctx, "merged");
  char text[4096];
  int64_t sum = 0, k = 0;
  size_t n = mly_value_len(mg);
  for (size_t i = 0; i < n; i++) {
    sum += fan_util_int(mly_array_at(mg, i), "sum");
    k += fan_util_int(mly_array_at(mg, i), "k");
  }
  int w = snprintf(text, sizeof text, "%" PRId64 " %zu %" PRId64 " %" PRId64,
                   fan_util_int(ctx, "job"), n, sum, k);
  for (size_t i = 0; i < n && w > 0 && (size_t)w < sizeof text - 24; i++)
    w += snprintf(text + w, sizeof text - (size_t)w, " %" PRId64,
                  fan_util_int(mly_array_at(mg, i), "n"));
  snprintf(text + w, sizeof text - (size_t)w, "\n");
  int rc = put("r", mly_action_key(c), text);
  return rc < 0 ? rc : mly_action_event(c, "ok");
}

static int a_kid(mly_action_call *c, void *arg) {
  (void)arg;
  char text[32];
  snprintf(text, sizeof text, "%" PRId64 "\n",
           fan_util_int(mly_action_context(c), "job"));
  return put("k", mly_action_key(c), text);
}

static void start_job(mly_runtime *rt, int r) {
  char name[32];
  snprintf(name, sizeof name, "job-%d", r);
  mly_value *ctx = mly_value_map();
  mly_map_set_int(ctx, "job", r);
  mly_map_set_int(ctx, "bs", 1 + r % 4);
  int rc = mly_fsm_start(rt, "job", name, ctx, NULL, 0, NULL);
  if (rc < 0 && rc != MLY_EEXIST) bad("start %s: %s", name, mly_strerror(rc));
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: fan_workload DIR run ROUND | DIR finish ROUNDS\n");
    return 2;
  }
  char state[4200];
  snprintf(state, sizeof state, "%s/state", argv[1]);
  snprintf(out_dir, sizeof out_dir, "%s/out", argv[1]);
  mkdir(state, 0700);
  mkdir(out_dir, 0700);
  mly_runtime *rt;
  if (mly_runtime_new(&rt, NULL, NULL) < 0) return 1;
  struct { const char *n; mly_action_fn fn; } acts[] = {
      {"Start", a_start}, {"Work", a_work},     {"Join", a_join},
      {"Gather", a_gather}, {"Kid", a_kid}};
  for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
    if (mly_action_register(rt, acts[i].n, acts[i].fn, NULL, 0) < 0) return 1;
  mly_journal_options jo = {.dir = state, .sync = MLY_SYNC_NEVER,
                            .segment_bytes = 256 << 10,
                            .compact_min_bytes = 512 << 10};
  char err[512];
  if (h_durable_open(rt, &jo, err, sizeof err) < 0) {
    fprintf(stderr, "fan_workload: %s\n", err);
    return 1;
  }
  fan_util_load(rt, "fan_workload.yaml", yaml);
  int arg = atoi(argv[3]);
  if (strcmp(argv[2], "run") == 0) {
    if (write(3, "open\n", 5) != 5) return 1; /* fan_crash is gone */
    start_job(rt, arg);
    for (;;) /* until killed; idle without spinning */
      if (uv_run(mly_runtime_loop(rt), UV_RUN_DEFAULT) == 0) usleep(10000);
  }
  for (int r = 0; r < arg; r++) start_job(rt, r);
  if (!fan_util_run(rt, fan_util_all_ended, rt, 120000)) {
    bad("finish: instances still running");
    return 1;
  }
  mly_runtime_close(rt);
  return 0;
}
