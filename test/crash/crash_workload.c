/*
 * crash_workload.c - durable machines for the crash test to kill.
 *
 *   crash_workload DIR run      work until killed (SIGKILL, by the harness)
 *   crash_workload DIR finish   work until every machine is done, then exit
 *
 * A root machine spawns, in its first step (so in one record), COUNTERS
 * counters and PAIRS pinger/ponger pairs, and waits for them all.
 *
 *  - a counter keeps n and a hash chain h = H(h, n); at the start of each
 *    step it reports "c IDX N H" on fd 3: that state is committed, since a
 *    durable machine resumes only after its last record is synced.  It is
 *    named "counter-IDX" and keeps n and h in its context too, which must
 *    equal its data's at every step ("BAD ... context" if not), and its
 *    name must be its own;
 *  - a pinger sends n to its ponger as a request and checks the reply is
 *    n + 1000; a ponger answers and counts.  They report "p IDX N" and
 *    "q IDX N" the same way; a wrong reply is reported as "BAD ...".
 * At the end each reports "done KIND IDX N [H]" and the root "all done".
 * The harness checks what it read against what it reads after a restart.
 * Segments are small and compaction eager, so kills also land inside
 * segment switches and compactions.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mealy.h"
#include "../store_param.h"
#include "crash_util.h"

#define COUNTERS 16
#define PAIRS 4
#define TARGET 600
#define PING 1

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...) {
  char line[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (write(3, line, (size_t)n) != n) _exit(9); /* the harness is gone */
}

/* ---- counter ---- */

typedef struct counter {
  uint32_t idx, n;
  uint64_t h;
} counter;
#define COUNTER_POINTS(X) X(counter, tick)
MLY_POINTS(counter, COUNTER_POINTS);

/* The context is committed with the data: they agree at every step. */
static void check_context(mly_machine *m, const counter *c) {
  char want[32];
  snprintf(want, sizeof want, "counter-%u", c->idx);
  const char *name = mly_self_name(m);
  if (name == NULL || strcmp(name, want) != 0)
    report("BAD counter %u is named %s\n", c->idx, name ? name : "(none)");
  mly_value *ctx = mly_context(m);
  uint64_t n = 0, h = 0;
  if (ctx == NULL) {
    if (c->n != 0) report("BAD counter %u lost its context\n", c->idx);
    return;
  }
  if (mly_map_get_uint(ctx, "n", &n) < 0 || mly_map_get_uint(ctx, "h", &h) < 0 ||
      n != c->n || h != c->h)
    report("BAD counter %u context n %llu h %llu, data n %u h %llu\n", c->idx,
           (unsigned long long)n, (unsigned long long)h, c->n,
           (unsigned long long)c->h);
}

static void set_context(mly_machine *m, const counter *c) {
  mly_value *ctx = mly_context(m);
  if (ctx == NULL) {
    mly_context_set(m, mly_value_map());
    ctx = mly_context(m);
  }
  mly_map_set_uint(ctx, "n", c->n);
  mly_map_set_uint(ctx, "h", c->h);
}

static int counter_run(mly_machine *m, void *data) {
  counter *c = data;
  MLY_BEGIN(m);
  while (c->n < TARGET) {
    report("c %u %u %llu\n", c->idx, c->n, (unsigned long long)c->h);
    check_context(m, c);
    c->h = crash_chain(c->h, c->n);
    c->n++;
    set_context(m, c);
    MLY_SLEEP_AT(m, counter_tick, c->h % 3 == 0 ? 1 : 0);
  }
  report("done c %u %u %llu\n", c->idx, c->n, (unsigned long long)c->h);
  MLY_END(m);
}

/* ---- ping-pong ---- */

typedef struct pp {
  uint32_t idx, n;
  mly_id peer;
} pp;
#define PINGER_POINTS(X) X(pinger, asking)
MLY_POINTS(pinger, PINGER_POINTS);
#define PONGER_POINTS(X) X(ponger, listening)
MLY_POINTS(ponger, PONGER_POINTS);

static int pinger_run(mly_machine *m, void *data) {
  pp *p = data;
  MLY_BEGIN(m);
  while (p->n < TARGET) {
    report("p %u %u\n", p->idx, p->n);
    MLY_REQUEST_AT(m, pinger_asking, p->peer, PING, mly_value_uint(p->n), -1);
    uint64_t got = 0;
    const mly_event *e = mly_current_event(m);
    if (e == NULL || mly_value_get_uint(e->payload, &got) < 0 ||
        got != p->n + 1000u)
      report("BAD pinger %u asked %u got %llu\n", p->idx, p->n,
             (unsigned long long)got);
    p->n++;
  }
  report("done p %u %u\n", p->idx, p->n);
  MLY_END(m);
}

static int ponger_run(mly_machine *m, void *data) {
  pp *p = data;
  MLY_BEGIN(m);
  while (p->n < TARGET) {
    report("q %u %u\n", p->idx, p->n);
    MLY_AWAIT_AT(m, ponger_listening, PING, -1);
    const mly_event *e = mly_current_event(m);
    uint64_t v = 0;
    mly_value_get_uint(e->payload, &v);
    if (v != p->n) report("BAD ponger %u expected %u got %llu\n", p->idx, p->n,
                          (unsigned long long)v);
    mly_reply(m, e, PING, mly_value_uint(v + 1000));
    p->n++;
  }
  report("done q %u %u\n", p->idx, p->n);
  MLY_END(m);
}

/* ---- root ---- */

typedef struct root {
  mly_id kids[COUNTERS + 2 * PAIRS];
  uint32_t next;
} root;
#define ROOT_POINTS(X) X(root, waiting)
MLY_POINTS(root, ROOT_POINTS);

static mly_type *t_counter, *t_pinger, *t_ponger;

static int root_run(mly_machine *m, void *data) {
  root *r = data;
  int status;
  MLY_BEGIN(m);
  for (uint32_t i = 0; i < COUNTERS; i++) {
    counter c = {.idx = i};
    char name[32];
    snprintf(name, sizeof name, "counter-%u", i);
    mly_spawn_options o = {.arg = &c, .arg_len = sizeof c, .name = name};
    if (mly_spawn_child_opts(m, t_counter, &o, &r->kids[i]) < 0)
      report("BAD counter %u not spawned\n", i);
  }
  for (uint32_t i = 0; i < PAIRS; i++) {
    pp q = {.idx = i};
    mly_id pong;
    mly_spawn_child(m, t_ponger, &q, sizeof q, &pong);
    pp p = {.idx = i, .peer = pong};
    r->kids[COUNTERS + 2 * i] = pong;
    mly_spawn_child(m, t_pinger, &p, sizeof p, &r->kids[COUNTERS + 2 * i + 1]);
  }
  for (r->next = 0; r->next < COUNTERS + 2 * PAIRS; r->next++) {
    MLY_AWAIT_CHILD_AT(m, root_waiting, r->kids[r->next], &status);
    if (status != 0) report("BAD child %u ended with %d\n", r->next, status);
  }
  report("all done\n");
  MLY_END(m);
}

static int reg(mly_runtime *rt, const char *name, mly_fn run,
               const char *const *points, uint32_t npoints, size_t size,
               mly_type **out) {
  mly_type_def d = {.name = name, .run = run, .points = points,
                    .npoints = npoints, .data_size = size, .version = 1,
                    .flags = MLY_TYPE_DURABLE};
  return mly_type_register(rt, &d, out);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: crash_workload DIR run|finish\n");
    return 2;
  }
  mly_runtime *rt;
  mly_type *t_root;
  if (mly_runtime_new(&rt, NULL, NULL) < 0 ||
      reg(rt, "counter", counter_run, counter_points, counter__npoints,
          sizeof(counter), &t_counter) < 0 ||
      reg(rt, "pinger", pinger_run, pinger_points, pinger__npoints,
          sizeof(pp), &t_pinger) < 0 ||
      reg(rt, "ponger", ponger_run, ponger_points, ponger__npoints,
          sizeof(pp), &t_ponger) < 0 ||
      reg(rt, "root", root_run, root_points, root__npoints, sizeof(root),
          &t_root) < 0)
    return 3;
  char err[512];
  /* small segments and an eager compaction: the kills land in segment
   * switches and in compactions too, not only in ordinary batches */
  mly_journal_options o = {.dir = argv[1], .segment_bytes = 16 * 1024,
                           .compact_min_bytes = 48 * 1024,
                           .name_retention_ms = -1};
  int rc = h_durable_open(rt, &o, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "crash_workload: %s\n", err);
    return 4;
  }
  mly_journal_stats st;
  mly_journal_stats_get(rt, &st);
  /* a store that knows no root is a first start (or one whose root's
   * create was lost); one whose root lives or ended (its name is kept for
   * good) is under way or all done: the same answer on every store */
  mly_name_info ni;
  if (mly_name_lookup(rt, "root", &ni) == MLY_ENOENT &&
      mly_spawn_opts(rt, t_root, &(mly_spawn_options){.name = "root"},
                     NULL) < 0)
    report("BAD root not spawned\n");
  report("started %llu\n", (unsigned long long)st.recovered);
  rc = mly_runtime_run(rt);
  mly_runtime_close(rt);
  return rc < 0 ? 5 : 0;
}
