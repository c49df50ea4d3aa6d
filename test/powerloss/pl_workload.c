/*
 * pl_workload.c - the durable workload the power-loss simulator records
 * and then recovers from every crash image.
 *
 *   pl_workload DIR run PHASE   work (PHASE 0, 1, ...; the checker kills
 *                               the early phases, the last one finishes;
 *                               PL_COMPACT_PHASE compacts first)
 *   pl_workload DIR recover     open a crash image, say what came back,
 *                               and run everything to its end
 *
 * Machines (all durable, spawned by the host on a first start):
 *  - COUNTERS counters keep n and a hash chain h = H(h, n) and sleep
 *    between steps;
 *  - PAIRS pinger/ponger pairs: the pinger requests n, the ponger replies
 *    n + 1000;
 *  - one sink takes the keys the host posts with mly_post_durable and
 *    keeps a bitmap of them; a second copy of a key is reported BAD, the
 *    key END_KEY ends it.
 *
 * Every line on fd 3 states something acknowledged at that moment: a
 * machine reports right after a wait returns, and a durable machine
 * resumes only once its record is synced, so "c I N H" (counter I has
 * committed state N), "p I N" and "q I N" (pinger and ponger at N); the
 * host reports "P K" before it posts key K and "e K" once the post is
 * acknowledged (its callback said 0).  "done ..." comes from a machine's
 * last step, before that step commits: it acknowledges nothing, but the
 * machine may be gone from then on (the sink's line has its bitmap in
 * hex).  In recover mode the host first reports
 * "open RECOVERED PARKED TORN" and one "R ..." line per recovered
 * instance with the data it came back with, read before any step runs,
 * then posts END_KEY and runs everything to its end.  The interposer logs
 * these lines in order with the file system calls, which is how the
 * checker knows what was acknowledged at a crash point.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mealy.h"
#include "pl_workload.h"

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...) {
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof line || write(3, line, (size_t)n) != n)
    _exit(9); /* the checker is gone, or a line is cut */
}

/* ---- counter ---- */

typedef struct counter {
  uint32_t idx, n;
  uint64_t h;
} counter;
#define COUNTER_POINTS(X) X(counter, tick)
MLY_POINTS(counter, COUNTER_POINTS);

static int counter_run(mly_machine *m, void *data) {
  counter *c = data;
  MLY_BEGIN(m);
  while (c->n < PL_TARGET) {
    c->h = pl_chain(c->h, c->n);
    c->n++;
    MLY_SLEEP_AT(m, counter_tick, c->h % 3 == 0 ? 1 : 0);
    report("c %u %u %llu\n", c->idx, c->n, (unsigned long long)c->h);
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
  while (p->n < PL_TARGET) {
    MLY_REQUEST_AT(m, pinger_asking, p->peer, PL_EV_PING,
                   mly_value_uint(p->n), -1);
    report("p %u %u\n", p->idx, p->n);
    const mly_event *e = mly_current_event(m);
    uint64_t got = 0;
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
  while (p->n < PL_TARGET) {
    MLY_AWAIT_AT(m, ponger_listening, PL_EV_PING, -1);
    report("q %u %u\n", p->idx, p->n);
    const mly_event *e = mly_current_event(m);
    uint64_t v = 0;
    if (e == NULL || mly_value_get_uint(e->payload, &v) < 0 || v != p->n)
      report("BAD ponger %u expected %u got %llu\n", p->idx, p->n,
             (unsigned long long)v);
    if (e) mly_reply(m, e, PL_EV_PING, mly_value_uint(v + 1000));
    p->n++;
  }
  report("done q %u %u\n", p->idx, p->n);
  MLY_END(m);
}

/* ---- sink ---- */

typedef struct sink {
  uint32_t n;
  uint8_t seen[PL_NKEYS / 8];
} sink;
#define SINK_POINTS(X) X(sink, taking)
MLY_POINTS(sink, SINK_POINTS);

static void hex(const uint8_t *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static int sink_run(mly_machine *m, void *data) {
  sink *s = data;
  char h[PL_NKEYS / 4 + 1];
  MLY_BEGIN(m);
  for (;;) {
    MLY_AWAIT_AT(m, sink_taking, PL_EV_KEY, -1);
    const mly_event *e = mly_current_event(m);
    uint64_t k = PL_NKEYS + 1;
    if (e == NULL || mly_value_get_uint(e->payload, &k) < 0 || k > PL_END_KEY) {
      report("BAD sink got a key that makes no sense\n");
      continue;
    }
    if (k == PL_END_KEY) break;
    if (s->seen[k / 8] & (1u << (k % 8)))
      report("BAD sink got key %llu twice\n", (unsigned long long)k);
    s->seen[k / 8] |= (uint8_t)(1u << (k % 8));
    s->n++;
  }
  hex(s->seen, sizeof s->seen, h);
  report("done s %u %s\n", s->n, h);
  MLY_END(m);
}

/* ---- the host ---- */

typedef struct host {
  mly_runtime *rt;
  mly_id sink;
  uint32_t next, last; /* keys still to post: next .. last - 1 */
  bool post_end;
  uv_check_t check;
  bool check_open;
} host;

static void posted(mly_runtime *rt, int status, void *arg) {
  (void)rt;
  uintptr_t k = (uintptr_t)arg;
  if (k == PL_END_KEY) return;
  if (status == 0) report("e %u\n", (unsigned)k);
  else report("BAD post of key %u failed: %d\n", (unsigned)k, status);
}

static void check_closed(uv_handle_t *h) {
  host *H = h->data;
  H->check_open = false;
}

/* One key a loop turn, so the posts spread over the batches. */
static void post_next(uv_check_t *c) {
  host *H = c->data;
  if (H->next < H->last) {
    uint32_t k = H->next++;
    report("P %u\n", k);
    int rc = mly_post_durable(H->rt, H->sink, PL_EV_KEY, mly_value_uint(k),
                              posted, (void *)(uintptr_t)k);
    if (rc < 0) report("BAD post of key %u refused: %d\n", k, rc);
    return;
  }
  if (H->post_end)
    mly_post_durable(H->rt, H->sink, PL_EV_KEY, mly_value_uint(PL_END_KEY),
                     posted, (void *)(uintptr_t)PL_END_KEY);
  uv_close((uv_handle_t *)c, check_closed);
}

static mly_type *t_counter, *t_pinger, *t_ponger, *t_sink;

static int reg(mly_runtime *rt, const char *name, mly_fn run,
               const char *const *points, uint32_t npoints, size_t size,
               mly_type **out) {
  mly_type_def d = {.name = name, .run = run, .points = points,
                    .npoints = npoints, .data_size = size, .version = 1,
                    .flags = MLY_TYPE_DURABLE};
  return mly_type_register(rt, &d, out);
}

static int spawn_all(host *H) {
  int rc = 0;
  for (uint32_t i = 0; i < PL_COUNTERS && rc == 0; i++) {
    counter c = {.idx = i};
    rc = mly_spawn(H->rt, t_counter, &c, sizeof c, NULL);
  }
  for (uint32_t i = 0; i < PL_PAIRS && rc == 0; i++) {
    pp q = {.idx = i};
    mly_id pong = 0;
    rc = mly_spawn(H->rt, t_ponger, &q, sizeof q, &pong);
    pp p = {.idx = i, .peer = pong};
    if (rc == 0) rc = mly_spawn(H->rt, t_pinger, &p, sizeof p, NULL);
  }
  if (rc == 0) rc = mly_spawn(H->rt, t_sink, NULL, 0, &H->sink);
  return rc;
}

/* What an instance came back with (recover mode), and where the sink is. */
static int tell(const mly_info *in, void *arg) {
  host *H = arg;
  void *d = mly_instance_data(H->rt, in->id);
  char h[PL_NKEYS / 4 + 1];
  if (d == NULL) return 0;
  if (strcmp(in->type, "counter") == 0) {
    const counter *c = d;
    if (H->post_end)
      report("R c %u %u %llu\n", c->idx, c->n, (unsigned long long)c->h);
  } else if (strcmp(in->type, "pinger") == 0 || strcmp(in->type, "ponger") == 0) {
    const pp *p = d;
    if (H->post_end) report("R %c %u %u\n", in->type[1] == 'i' ? 'p' : 'q',
                            p->idx, p->n);
  } else if (strcmp(in->type, "sink") == 0) {
    const sink *s = d;
    H->sink = in->id;
    hex(s->seen, sizeof s->seen, h);
    if (H->post_end) report("R s %u %s\n", s->n, h);
  }
  return 0;
}

int main(int argc, char **argv) {
  bool recover = argc == 3 && strcmp(argv[2], "recover") == 0;
  if (!recover && !(argc == 4 && strcmp(argv[2], "run") == 0)) {
    fprintf(stderr, "usage: pl_workload DIR run PHASE | pl_workload DIR recover\n");
    return 2;
  }
  unsigned phase = recover ? 0 : (unsigned)atoi(argv[3]);
  if (phase >= PL_PHASES) {
    fprintf(stderr, "pl_workload: PHASE is 0 to %d\n", PL_PHASES - 1);
    return 2;
  }
  host H = {0};
  if (mly_runtime_new(&H.rt, NULL, NULL) < 0 ||
      reg(H.rt, "counter", counter_run, counter_points, counter__npoints,
          sizeof(counter), &t_counter) < 0 ||
      reg(H.rt, "pinger", pinger_run, pinger_points, pinger__npoints,
          sizeof(pp), &t_pinger) < 0 ||
      reg(H.rt, "ponger", ponger_run, ponger_points, ponger__npoints,
          sizeof(pp), &t_ponger) < 0 ||
      reg(H.rt, "sink", sink_run, sink_points, sink__npoints, sizeof(sink),
          &t_sink) < 0)
    return 3;
  char err[1024];
  /* recorded: every batch synced, small segments, an eager compaction, so
   * crash points land in segment switches and compactions too; recovered:
   * nothing synced, the image is thrown away */
  mly_journal_options o = {.dir = argv[1], .segment_bytes = PL_SEGMENT,
                           .compact_min_bytes = 3 * PL_SEGMENT,
                           .sync = recover ? MLY_SYNC_NEVER : MLY_SYNC_ALWAYS};
  int rc = mly_journal_open(H.rt, &o, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "pl_workload: %s\n", err);
    report("refused %d\n", rc);
    return 4;
  }
  mly_journal_stats st;
  mly_journal_stats_get(H.rt, &st);
  H.post_end = recover;
  if (recover)
    report("open %llu %llu %llu\n", (unsigned long long)st.recovered,
           (unsigned long long)st.parked, (unsigned long long)st.torn_bytes);
  mly_foreach(H.rt, tell, &H);
  if (!recover && st.recovered == 0 && st.parked == 0 && st.total_bytes == 0 &&
      spawn_all(&H) < 0)
    return 3;
  if (!recover && phase == PL_COMPACT_PHASE &&
      (rc = mly_journal_compact(H.rt)) < 0) {
    fprintf(stderr, "pl_workload: compaction: %s\n", mly_strerror(rc));
    return 6;
  }
  if (!recover) {
    H.next = phase * PL_KEYS_PER_PHASE;
    H.last = H.next + PL_KEYS_PER_PHASE;
    H.post_end = phase == PL_PHASES - 1;
  }
  if (H.sink && (H.next < H.last || H.post_end)) {
    uv_check_init(mly_runtime_loop(H.rt), &H.check);
    H.check.data = &H;
    H.check_open = true;
    uv_check_start(&H.check, post_next);
    uv_unref((uv_handle_t *)&H.check);
  }
  rc = mly_runtime_run(H.rt);
  if (H.check_open) uv_close((uv_handle_t *)&H.check, check_closed);
  mly_runtime_close(H.rt);
  return rc < 0 ? 5 : 0;
}
