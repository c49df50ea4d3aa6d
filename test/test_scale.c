/*
 * test_scale.c - 100,000 machines alive at once.
 *
 * The design target is a small, flat cost per waiting machine (128 bytes
 * of runtime memory for a sleeping one).  These tests spawn 100k
 * instances of a type with 16 bytes of data, check that every one of
 * them is there (unique ids, introspection sees them all), that each
 * gets exactly its own event or timer, in deadline order, and measure
 * stats.bytes per instance.  Counts and order only, no durations.
 */
#include "harness.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define N 100000
#define BYTES_PER_INSTANCE_MAX 200

static uint32_t xorshift32(uint32_t *s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

static int cmp_id(const void *a, const void *b) {
  mly_id x = *(const mly_id *)a, y = *(const mly_id *)b;
  return x < y ? -1 : x > y;
}

/* Run single loop turns until *cond* holds (bounded); checks that no turn
 * runs more steps than the budget. */
#define TURN_UNTIL(rt, cond)                                             \
  do {                                                                   \
    mly_stats st_;                                                       \
    mly_runtime_stats((rt), &st_);                                       \
    uint64_t before_ = st_.steps;                                        \
    int turns_ = 0;                                                      \
    while (!(cond)) {                                                    \
      ck_assert_int_lt(turns_++, 100000);                                \
      h_turn(rt);                                                        \
      mly_runtime_stats((rt), &st_);                                     \
      ck_assert_uint_le(st_.steps - before_, MLY_DEFAULT_STEP_BUDGET);   \
      before_ = st_.steps;                                               \
    }                                                                    \
  } while (0)

static uint64_t h_steps(mly_runtime *rt) {
  mly_stats st;
  mly_runtime_stats(rt, &st);
  return st.steps;
}

/* ---- 100k machines waiting for an event ---- */

typedef struct ev_shared {
  uint32_t hits[N];
  uint32_t wrong_payload;
  uint32_t no_event;
} ev_shared;

typedef struct cell {
  ev_shared *sh;
  uint32_t idx;
  uint32_t pad;
} cell;
_Static_assert(sizeof(cell) == 16, "the type under test has 16 bytes of data");

static int cell_run(mly_machine *m, void *data) {
  cell *c = data;
  MLY_BEGIN(m);
  MLY_AWAIT(m, 1, -1);
  {
    const mly_event *e = mly_current_event(m);
    int64_t v = -1;
    if (e == NULL) {
      c->sh->no_event++;
    } else {
      if (e->payload == NULL || mly_value_get_int(e->payload, &v) != 0 ||
          v != (int64_t)c->idx)
        c->sh->wrong_payload++;
      c->sh->hits[c->idx]++;
    }
  }
  MLY_END(m);
}

typedef struct census {
  const mly_id *sorted;
  size_t n;
  uint64_t visited, known, waiting_ev1, ready, in_timer, inbox;
  mly_id last;
  bool ascending_slots;
} census;

static int census_cb(const mly_info *i, void *arg) {
  census *c = arg;
  c->visited++;
  if (bsearch(&i->id, c->sorted, c->n, sizeof *c->sorted, cmp_id)) c->known++;
  if (strcmp(i->waiting, "event 1") == 0) c->waiting_ev1++;
  if (strcmp(i->waiting, "timer") == 0) c->in_timer++;
  if (i->lifecycle == MLY_LC_READY) c->ready++;
  c->inbox += i->inbox;
  return 0;
}

START_TEST(hundred_thousand_waiting_for_events) {
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){.name = "cell", .run = cell_run,
                                           .data_size = sizeof(cell)});
  ev_shared *sh = calloc(1, sizeof *sh);
  mly_id *ids = malloc(N * sizeof *ids);
  mly_id *sorted = malloc(N * sizeof *sorted);
  ck_assert_ptr_nonnull(sh);
  ck_assert_ptr_nonnull(ids);
  ck_assert_ptr_nonnull(sorted);
  for (uint32_t i = 0; i < N; i++)
    ids[i] = h_spawn(rt, t, &(cell){sh, i, 0}, sizeof(cell));

  /* ids are unique */
  memcpy(sorted, ids, N * sizeof *ids);
  qsort(sorted, N, sizeof *sorted, cmp_id);
  for (size_t i = 1; i < N; i++) ck_assert_uint_ne(sorted[i - 1], sorted[i]);

  TURN_UNTIL(rt, h_steps(rt) >= N);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.steps, N);
  ck_assert_uint_eq(st.live, N);
  ck_assert_uint_eq(st.spawned, N);
  /* one more turn runs nothing: they are all waiting */
  h_turn(rt);
  ck_assert_uint_eq(h_steps(rt), N);

  double per = (double)st.bytes / N;
  fprintf(stderr, "scale: %d machines awaiting an event: stats.bytes = %" PRIu64
          " (%.1f bytes per instance, data_size %zu)\n",
          N, st.bytes, per, sizeof(cell));
  ck_assert_msg(st.bytes / N < BYTES_PER_INSTANCE_MAX,
                "%.1f bytes per instance", per);

  census c = {.sorted = sorted, .n = N};
  ck_assert_int_eq(mly_foreach(rt, census_cb, &c), 0);
  ck_assert_uint_eq(c.visited, N);
  ck_assert_uint_eq(c.known, N);
  ck_assert_uint_eq(c.waiting_ev1, N);
  ck_assert_uint_eq(c.ready, N);
  ck_assert_uint_eq(c.inbox, 0);

  /* each gets its own event, payload = its index */
  for (uint32_t i = 0; i < N; i++)
    ck_assert_int_eq(mly_runtime_send(rt, ids[i], 1, mly_value_int(i)), 0);
  h_run(rt);
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.live, 0);
  ck_assert_uint_eq(st.spawned, N);
  ck_assert_uint_eq(st.steps, 2 * N);
  ck_assert_uint_eq(st.delivered, N);
  ck_assert_uint_eq(st.dropped, 0);
  ck_assert_uint_eq(sh->no_event, 0);
  ck_assert_uint_eq(sh->wrong_payload, 0);
  for (uint32_t i = 0; i < N; i++) ck_assert_uint_eq(sh->hits[i], 1);

  /* the ended ones are gone, and their ids are never handed out again */
  ck_assert_int_eq(mly_info_get(rt, ids[0], &(mly_info){0}), MLY_ESRCH);
  ck_assert_int_eq(mly_runtime_send(rt, ids[N - 1], 1, NULL), MLY_ESRCH);
  c = (census){.sorted = sorted, .n = N};
  ck_assert_int_eq(mly_foreach(rt, census_cb, &c), 0);
  ck_assert_uint_eq(c.visited, 0);
  /* a second wave reuses the slots, never the ids */
  enum { WAVE = 1000 };
  mly_id again[WAVE], again_sorted[WAVE];
  for (uint32_t i = 0; i < WAVE; i++) {
    again[i] = h_spawn(rt, t, &(cell){sh, i, 0}, sizeof(cell));
    ck_assert_ptr_null(bsearch(&again[i], sorted, N, sizeof *sorted, cmp_id));
  }
  memcpy(again_sorted, again, sizeof again);
  qsort(again_sorted, WAVE, sizeof *again_sorted, cmp_id);
  for (size_t i = 1; i < WAVE; i++)
    ck_assert_uint_ne(again_sorted[i - 1], again_sorted[i]);
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.live, WAVE);
  for (uint32_t i = 0; i < WAVE; i++)
    ck_assert_int_eq(mly_runtime_send(rt, again[i], 1, mly_value_int(i)), 0);
  h_run(rt);
  ck_assert_uint_eq(h_stat_live(rt), 0);
  for (uint32_t i = 0; i < WAVE; i++) ck_assert_uint_eq(sh->hits[i], 2);
  ck_assert_uint_eq(sh->wrong_payload, 0);

  mly_runtime_close(rt);
  free(sorted);
  free(ids);
  free(sh);
}
END_TEST

/* ---- 100k machines sleeping 1..50 ms ----
 *
 * Whatever the clock, a machine that went to sleep earlier, for no longer,
 * must not wake later: for A before B (in sleep order) with ms_A <= ms_B,
 * A wakes before B (equal deadlines fire in insertion order). */

#define MAX_MS 50

typedef struct sl_shared {
  uint32_t order[N];    /* sleep rank: the heap's tie-break */
  uint32_t by_order[N]; /* sleep rank -> index */
  uint32_t wake[N];     /* wake rank */
  uint32_t ms[N];
  uint32_t hits[N];
  uint32_t nslept;
  uint32_t nwoke;
  uint32_t not_timer;   /* a sleep that ended for another reason */
} sl_shared;

typedef struct napper {
  sl_shared *sh;
  uint32_t idx;
  uint32_t ms;
} napper;
_Static_assert(sizeof(napper) == 16, "the type under test has 16 bytes of data");

static int napper_run(mly_machine *m, void *data) {
  napper *z = data;
  sl_shared *sh = z->sh;
  MLY_BEGIN(m);
  sh->by_order[sh->nslept] = z->idx;
  sh->order[z->idx] = sh->nslept++;
  MLY_SLEEP(m, z->ms);
  if (!mly_timed_out(m)) sh->not_timer++;
  sh->wake[z->idx] = sh->nwoke++;
  sh->hits[z->idx]++;
  MLY_END(m);
}

/* Count pairs (A, B), A slept before B with ms_A <= ms_B, where B woke
 * first; *first gets one such B.  O(N * MAX_MS). */
static uint64_t wake_inversions(const sl_shared *sh, uint32_t *first) {
  int64_t latest[MAX_MS + 1]; /* latest wake among those slept so far, by ms */
  for (int v = 0; v <= MAX_MS; v++) latest[v] = -1;
  uint64_t bad = 0;
  for (uint32_t r = 0; r < N; r++) {
    uint32_t b = sh->by_order[r];
    int64_t worst = -1;
    for (uint32_t v = 1; v <= sh->ms[b]; v++)
      if (latest[v] > worst) worst = latest[v];
    if (worst > (int64_t)sh->wake[b] && bad++ == 0) *first = b;
    if ((int64_t)sh->wake[b] > latest[sh->ms[b]]) latest[sh->ms[b]] = sh->wake[b];
  }
  return bad;
}

START_TEST(hundred_thousand_sleeping) {
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){.name = "napper", .run = napper_run,
                                           .data_size = sizeof(napper)});
  sl_shared *sh = calloc(1, sizeof *sh);
  ck_assert_ptr_nonnull(sh);
  uint32_t seed = 0x9e3779b9u;
  uint32_t min_ms = MAX_MS + 1, max_ms = 0;
  for (uint32_t i = 0; i < N; i++) {
    uint32_t ms = 1 + xorshift32(&seed) % MAX_MS;
    if (ms < min_ms) min_ms = ms;
    if (ms > max_ms) max_ms = ms;
    sh->ms[i] = ms;
    h_spawn(rt, t, &(napper){sh, i, ms}, sizeof(napper));
  }
  ck_assert_uint_eq(min_ms, 1);
  ck_assert_uint_eq(max_ms, MAX_MS);

  TURN_UNTIL(rt, sh->nslept >= N);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.spawned, N);
  ck_assert_uint_eq(st.live + sh->nwoke, N);
  fprintf(stderr, "scale: %d machines sleeping 1-50 ms: stats.bytes = %" PRIu64
          " (%.1f bytes per instance, %" PRIu64 " still asleep)\n",
          N, st.bytes, (double)st.bytes / N, st.live);

  h_run(rt);
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.live, 0);
  ck_assert_uint_eq(st.spawned, N);
  ck_assert_uint_eq(st.timers_fired, N);
  ck_assert_uint_eq(st.steps, 2 * N);
  ck_assert_uint_eq(sh->nslept, N);
  ck_assert_uint_eq(sh->nwoke, N);
  ck_assert_uint_eq(sh->not_timer, 0);
  for (uint32_t i = 0; i < N; i++) ck_assert_uint_eq(sh->hits[i], 1);
  uint32_t b = 0;
  uint64_t bad = wake_inversions(sh, &b);
  ck_assert_msg(bad == 0,
                "%" PRIu64 " machines woke before one that slept earlier for no "
                "longer; e.g. #%u (sleep rank %u, %u ms, wake rank %u)",
                bad, b, sh->order[b], sh->ms[b], sh->wake[b]);
  mly_runtime_close(rt);
  free(sh);
}
END_TEST

/* ---- the cost of a sleeping machine, all 100k asleep at once ---- */

typedef struct dozer {
  uint64_t ms;
  uint64_t woke;
} dozer;
_Static_assert(sizeof(dozer) == 16, "the type under test has 16 bytes of data");

static int dozer_run(mly_machine *m, void *data) {
  dozer *d = data;
  MLY_BEGIN(m);
  MLY_SLEEP(m, d->ms);
  d->woke++;
  MLY_END(m);
}

static int count_cb(const mly_info *i, void *arg) {
  census *c = arg;
  c->visited++;
  if (strcmp(i->waiting, "timer") == 0) c->in_timer++;
  if (i->timer_left_ms > 0) c->known++;
  if (i->id <= c->last) c->ascending_slots = false;
  c->last = i->id > c->last ? i->id : c->last;
  return 0;
}

static int census_stop(const mly_info *i, void *arg) {
  (void)i;
  int *n = arg;
  return ++*n == 1000 ? 7 : 0;
}

START_TEST(hundred_thousand_asleep_bytes) {
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){.name = "dozer", .run = dozer_run,
                                           .data_size = sizeof(dozer)});
  for (uint32_t i = 0; i < N; i++)
    h_spawn(rt, t, &(dozer){.ms = 3600 * 1000 + i}, sizeof(dozer));
  TURN_UNTIL(rt, h_steps(rt) >= N);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.live, N);
  ck_assert_uint_eq(st.steps, N);
  ck_assert_uint_eq(st.timers_fired, 0);
  double per = (double)st.bytes / N;
  fprintf(stderr, "scale: %d machines all asleep: stats.bytes = %" PRIu64
          " (%.1f bytes per instance, data_size %zu)\n",
          N, st.bytes, per, sizeof(dozer));
  ck_assert_msg(st.bytes / N < BYTES_PER_INSTANCE_MAX,
                "%.1f bytes per instance", per);
  census c = {.ascending_slots = true};
  ck_assert_int_eq(mly_foreach(rt, count_cb, &c), 0);
  ck_assert_uint_eq(c.visited, N);
  ck_assert_uint_eq(c.in_timer, N);
  ck_assert_uint_eq(c.known, N); /* every one has a timer pending */
  /* a walk can be stopped: the callback's value comes back */
  ck_assert(c.ascending_slots); /* fresh slots, visited in slot order */
  int seen = 0;
  ck_assert_int_eq(mly_foreach(rt, census_stop, &seen), 7);
  ck_assert_int_eq(seen, 1000);
  /* closing ends them all (fini-less, no step runs) and frees everything */
  mly_runtime_close(rt);
}
END_TEST

/* ---- timeouts far in the future never fire ----
 *
 * "at most ms milliseconds": a wait with a huge limit (INT64_MAX is the
 * natural "practically forever") must not time out, and must not be
 * reported as due now. */

typedef struct far_out {
  uint32_t timed_out, got, other;
} far_out;

typedef struct far {
  far_out *out;
  int64_t ms;
} far;

static int far_run(mly_machine *m, void *data) {
  far *f = data;
  MLY_BEGIN(m);
  MLY_AWAIT(m, 5, f->ms);
  if (mly_timed_out(m)) f->out->timed_out++;
  else if (mly_current_event(m) != NULL) f->out->got++;
  else f->out->other++;
  MLY_END(m);
}

typedef struct far_host {
  uv_timer_t h;
  mly_runtime *rt;
  const mly_id *ids;
  size_t n;
  int sent;
} far_host;

static void far_send(uv_timer_t *h) {
  far_host *fh = h->data;
  for (size_t i = 0; i < fh->n; i++)
    if (mly_runtime_send(fh->rt, fh->ids[i], 5, NULL) == 0) fh->sent++;
}

#define FAR_EACH 200

START_TEST(huge_timeouts_never_fire) {
  static const int64_t limits[] = {
      INT64_MAX,
      INT64_MAX / 2,
      (int64_t)(UINT64_MAX / 1000 + 1), /* the first that overflows in us */
      INT64_C(1) << 62,
      INT64_C(1000000000000), /* ~31 years: fits easily, the control */
  };
  enum { NLIM = sizeof limits / sizeof limits[0], NFAR = NLIM * FAR_EACH };
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){.name = "far", .run = far_run,
                                           .data_size = sizeof(far)});
  far_out out = {0};
  mly_id ids[NFAR];
  for (int i = 0; i < NFAR; i++)
    ids[i] = h_spawn(rt, t, &(far){&out, limits[i % NLIM]}, sizeof(far));
  TURN_UNTIL(rt, h_steps(rt) >= NFAR);
  /* every one still waits, with a timer that is far from due */
  int due_soon[NLIM] = {0};
  for (int i = 0; i < NFAR; i++) {
    mly_info info;
    if (mly_info_get(rt, ids[i], &info) != 0 ||
        info.timer_left_ms < INT64_C(1000000000)) /* < ~11 days */
      due_soon[i % NLIM]++;
  }
  far_host fh = {.rt = rt, .ids = ids, .n = NFAR};
  uv_timer_init(mly_runtime_loop(rt), &fh.h);
  fh.h.data = &fh;
  uv_timer_start(&fh.h, far_send, 20, 0);
  h_run(rt);
  uv_close((uv_handle_t *)&fh.h, NULL);
  char msg[512] = "";
  size_t len = 0;
  int bad = 0;
  for (int k = 0; k < NLIM; k++) {
    bad += due_soon[k];
    len += (size_t)snprintf(msg + len, sizeof msg - len, " %" PRId64 " ms: %d/%d;",
                            limits[k], due_soon[k], FAR_EACH);
  }
  ck_assert_msg(bad == 0 && out.timed_out == 0,
                "waits due within 11 days (or over) by limit:%s %u timed out",
                msg, out.timed_out);
  ck_assert_uint_eq(out.timed_out, 0);
  ck_assert_uint_eq(out.other, 0);
  ck_assert_uint_eq(out.got, NFAR);
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.timers_fired, 0);
  mly_runtime_close(rt);
}
END_TEST

static Suite *scale_suite(void) {
  Suite *s = suite_create("scale");
  TCase *tc = tcase_create("hundred_thousand");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, hundred_thousand_waiting_for_events);
  tcase_add_test(tc, hundred_thousand_sleeping);
  tcase_add_test(tc, hundred_thousand_asleep_bytes);
  suite_add_tcase(s, tc);
  TCase *lim = tcase_create("limits");
  tcase_set_timeout(lim, 30);
  tcase_add_test(lim, huge_timeouts_never_fire);
  suite_add_tcase(s, lim);
  return s;
}

H_MAIN(scale_suite)
