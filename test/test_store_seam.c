/*
 * test_store_seam.c - the durable layer on a store that is not the
 * journal (store.h, D11): a store kept in memory, written here against
 * the table alone, carries durable machines through steps, a restart of
 * the runtime (its records handed back through recover) and a failure
 * (fail-stop through hooks.failed); the journal-only calls answer
 * MLY_ENOSYS for it and metrics leave out the journal's batch figures.
 *
 * It is also the smallest example of a store: what a new one (the
 * PostgreSQL store) must do for the durable layer, and nothing more.
 */
#include "harness.h"
#include "durable.h"

#include <string.h>

/* ---- a store in memory: its "medium" outlives the runtimes ---- */

typedef struct medium {
  jbuf log;          /* every record that committed, framed as appended */
  uint64_t next_seq;
  int fail_next;     /* < 0: the next batch fails with it */
  uint64_t batches, recovered_records;
} medium;

typedef struct mem_store {
  mly_store base;
  medium *md;
  jbuf buf;                  /* the turn buffer */
  jdone *pend, *fly;
  size_t npend, nfly, cappend, capfly;
  int failed;
  bool busy, closing;
  int fly_rc;                /* the batch in flight fails with it */
  uv_timer_t t;              /* completions come on a later loop turn */
  mly_journal_stats st;
} mem_store;

#define MS(s) ((mem_store *)(s))

static int ms_recover(mly_store *s, int (*cb)(const jrec *, void *), void *arg,
                      char *err, size_t errlen) {
  medium *md = MS(s)->md;
  for (size_t at = 0; at < md->log.n;) {
    uint32_t len = jr_le32(md->log.p + at);
    jrec r = {.body = md->log.p + at + JR_HDR, .len = len, .file = "memory",
              .offset = at};
    jcur c = {r.body, r.body + len, false};
    uint32_t n;
    uint64_t kind;
    if (!jc_array(&c, &n) || !jc_uint(&c, &r.seq) || !jc_uint(&c, &kind))
      return jr_errf(err, errlen, MLY_EBADMSG, "memory:%zu: no record", at);
    r.kind = (unsigned)kind;
    int rc = cb(&r, arg);
    if (rc) return rc;
    md->recovered_records++;
    at += JR_HDR + len;
  }
  return 0;
}

static jbuf *ms_buf(mly_store *s) { return &MS(s)->buf; }
static uint64_t ms_next_seq(mly_store *s) { return MS(s)->md->next_seq++; }
static void ms_seq_back(mly_store *s) { MS(s)->md->next_seq--; }
static int ms_failed(const mly_store *s) { return MS(s)->failed; }
static bool ms_idle(const mly_store *s) {
  const mem_store *m = (const mem_store *)s;
  return !m->busy && m->buf.n == 0 && m->npend == 0;
}
static mly_journal_stats *ms_stats(mly_store *s) { return &MS(s)->st; }

static int ms_on_commit(mly_store *s, const jdone *d) {
  mem_store *m = MS(s);
  if (m->npend == m->cappend) {
    size_t cap = m->cappend ? 2 * m->cappend : 64;
    jdone *v = realloc(m->pend, cap * sizeof *v);
    if (v == NULL) return MLY_ENOMEM;
    m->pend = v;
    m->cappend = cap;
  }
  m->pend[m->npend++] = *d;
  return 0;
}

static void report(mem_store *m, jdone *v, size_t n, int rc) {
  const store_hooks *h = &m->base.hooks;
  for (size_t i = 0; i < n; i++) h->done(h->arg, &v[i], rc, 0);
}

static void fail_stop(mem_store *m, int rc) {
  if (m->failed) return;
  m->failed = rc;
  size_t n = m->npend;
  m->npend = 0;
  report(m, m->pend, n, rc);
  m->base.hooks.failed(m->base.hooks.arg, rc, "memory store: the batch failed");
}

/* The batch "reaches the medium" here, a loop turn after the flush. */
static void ms_commit_cb(uv_timer_t *t) {
  mem_store *m = t->data;
  m->busy = false;
  size_t n = m->nfly;
  m->nfly = 0;
  int rc = m->fly_rc;
  m->md->batches++;
  if (rc < 0) {
    report(m, m->fly, n, rc);
    fail_stop(m, rc);
    return;
  }
  report(m, m->fly, n, 0);
  if (m->base.hooks.committed) m->base.hooks.committed(m->base.hooks.arg);
}

static void ms_flush(mly_store *s) {
  mem_store *m = MS(s);
  if (m->busy || m->closing || (m->buf.n == 0 && m->npend == 0)) return;
  if (m->failed) {
    size_t n = m->npend;
    m->npend = 0;
    m->buf.n = 0;
    report(m, m->pend, n, m->failed);
    return;
  }
  if (m->buf.oom) {
    fail_stop(m, MLY_ENOMEM);
    return;
  }
  m->fly_rc = m->md->fail_next;
  m->md->fail_next = 0;
  if (m->fly_rc == 0) { /* all or nothing: a failed batch leaves none */
    jb_raw(&m->md->log, m->buf.p, m->buf.n);
    m->st.bytes += m->buf.n;
    m->st.total_bytes += m->buf.n;
  }
  m->buf.n = 0;
  m->st.batches++;
  jdone *v = m->fly;
  size_t cap = m->capfly;
  m->fly = m->pend;
  m->capfly = m->cappend;
  m->nfly = m->npend;
  m->pend = v;
  m->cappend = cap;
  m->npend = 0;
  m->busy = true;
  uv_timer_start(&m->t, ms_commit_cb, 0, 0);
}

static void ms_closed(uv_handle_t *h) {
  mem_store *m = h->data;
  store_hooks hk = m->base.hooks;
  jb_free(&m->buf);
  free(m->pend);
  free(m->fly);
  free(m);
  hk.closed(hk.arg);
}

/* Close: what was appended reaches the medium, its completions run. */
static void ms_close(mly_store *s) {
  mem_store *m = MS(s);
  if (m->closing) return;
  m->closing = true;
  if (m->busy) {
    uv_timer_stop(&m->t);
    m->busy = false;
    report(m, m->fly, m->nfly, m->failed);
    m->nfly = 0;
  }
  if (!m->failed && m->buf.n) jb_raw(&m->md->log, m->buf.p, m->buf.n);
  report(m, m->pend, m->npend, m->failed);
  m->npend = 0;
  uv_close((uv_handle_t *)&m->t, ms_closed);
}

static const store_ops mem_ops = {
    .name = "memory",
    .recover = ms_recover,
    .buf = ms_buf,
    .next_seq = ms_next_seq,
    .seq_back = ms_seq_back,
    .on_commit = ms_on_commit,
    .flush = ms_flush,
    .failed = ms_failed,
    .idle = ms_idle,
    .compact = NULL, /* a store without compaction */
    .stats = ms_stats,
    .close = ms_close,
};

static void open_mem(mly_runtime *rt, medium *md,
                     const mly_journal_options *o) {
  mem_store *m = calloc(1, sizeof *m);
  ck_assert_ptr_nonnull(m);
  m->base.ops = &mem_ops;
  m->base.loop = mly_runtime_loop(rt);
  m->md = md;
  uv_timer_init(m->base.loop, &m->t);
  m->t.data = m;
  char err[256] = "";
  int rc = durable_open(rt, &m->base, o, err, sizeof err);
  ck_assert_msg(rc == 0, "durable_open on the memory store: %s", err);
  ck_assert(mly_runtime_durable(rt));
}

/* ---- a durable machine: N steps, then waits for GO, then ends ---- */

#define EV_GO 7
typedef struct counter {
  uint32_t n, steps;
} counter;
#define COUNTER_POINTS(X) X(counter, step) X(counter, go)
MLY_POINTS(counter, COUNTER_POINTS);

static uint32_t ended;

static int counter_run(mly_machine *m, void *data) {
  counter *c = data;
  MLY_BEGIN(m);
  while (c->n < c->steps) {
    c->n++;
    MLY_YIELD_AT(m, counter_step);
  }
  MLY_AWAIT_AT(m, counter_go, EV_GO, -1);
  ended++;
  MLY_EXIT(m, (int)c->n);
  MLY_END(m);
}

static const mly_type_def counter_def = {
    .name = "counter", .run = counter_run, MLY_TYPE_POINTS(counter),
    .data_size = sizeof(counter), .flags = MLY_TYPE_DURABLE};

static int count_waiting(const mly_info *i, void *arg) {
  *(uint32_t *)arg += strcmp(i->point, "go") == 0;
  return 0;
}

static uint32_t waiting(mly_runtime *rt) {
  uint32_t n = 0;
  mly_foreach(rt, count_waiting, &n);
  return n;
}

static int to_buf(void *arg, const char *p, size_t n) {
  jb_raw(arg, p, n);
  return 0;
}

#define NM 50

START_TEST(durable_machines_run_and_come_back_on_a_memory_store) {
  medium md = {.next_seq = 1};
  ended = 0;
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &counter_def);
  open_mem(rt, &md, NULL);
  mly_id ids[NM];
  for (uint32_t i = 0; i < NM; i++)
    ids[i] = h_spawn(rt, t, &(counter){0, 1 + i % 7}, sizeof(counter));
  RUN_UNTIL(rt, waiting(rt) == NM, 10000);
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  /* a CREATE per machine and a STEP per step: sum of 1 + i % 7, and the
   * step into the wait */
  uint64_t steps = 0;
  for (uint32_t i = 0; i < NM; i++) steps += 1 + i % 7 + 1;
  ck_assert_uint_eq(st.records, NM + steps);
  ck_assert_uint_eq(st.bytes, md.log.n);
  ck_assert_uint_gt(md.batches, 0);
  /* the journal-only calls: not for this store */
  ck_assert_int_eq(mly_journal_compact(rt), MLY_ENOSYS);
  jbuf text = {0};
  ck_assert_int_eq(mly_metrics_write(rt, to_buf, &text), 0);
  jb_raw(&text, "", 1);
  ck_assert_ptr_nonnull(strstr((char *)text.p, "mealy_journal_records_total"));
  ck_assert_ptr_null(strstr((char *)text.p, "mealy_journal_batch_bytes"));
  ck_assert_ptr_null(strstr((char *)text.p, "mealy_journal_written_bytes"));
  jb_free(&text);
  mly_runtime_close(rt);
  ck_assert_uint_eq(ended, 0);

  /* a new runtime on the same medium: every machine back at "go" */
  rt = h_runtime();
  t = h_type(rt, &counter_def);
  open_mem(rt, &md, NULL);
  ck_assert_uint_eq(md.recovered_records, NM + steps);
  ck_assert_uint_eq(waiting(rt), NM);
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  ck_assert_uint_eq(st.recovered, NM);
  for (uint32_t i = 0; i < NM; i++) {
    const counter *c = mly_instance_data(rt, ids[i]);
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->n, 1 + i % 7);
    ck_assert_int_eq(mly_runtime_send(rt, ids[i], EV_GO, NULL), 0);
  }
  RUN_UNTIL(rt, ended == NM, 10000);
  mly_runtime_close(rt);

  /* and once more: nothing is left (every END committed) */
  rt = h_runtime();
  h_type(rt, &counter_def);
  open_mem(rt, &md, NULL);
  ck_assert_uint_eq(h_stat_live(rt), 0);
  mly_runtime_close(rt);
  jb_free(&md.log);
}
END_TEST

static int errors_told;
static int error_rc;
static void on_error(mly_runtime *rt, int err, const char *msg, void *arg) {
  (void)rt;
  (void)arg;
  ck_assert_ptr_nonnull(strstr(msg, "memory store"));
  errors_told++;
  error_rc = err;
}

START_TEST(a_failed_batch_stops_the_store_and_ends_durable_machines) {
  medium md = {.next_seq = 1};
  ended = 0;
  errors_told = 0;
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &counter_def);
  open_mem(rt, &md, &(mly_journal_options){.on_error = on_error});
  for (uint32_t i = 0; i < NM; i++)
    h_spawn(rt, t, &(counter){0, 1000000}, sizeof(counter));
  RUN_UNTIL(rt, md.batches >= 3, 10000);
  size_t kept = md.log.n;
  md.fail_next = MLY_EIO;
  RUN_UNTIL(rt, h_stat_live(rt) == 0, 10000);
  ck_assert_int_eq(errors_told, 1);
  ck_assert_int_eq(error_rc, MLY_EIO);
  ck_assert_int_eq(mly_journal_error(rt), MLY_EIO);
  ck_assert_uint_eq(md.log.n, kept); /* the failed batch left nothing */
  /* fail-stop: no more durable spawns */
  mly_id id = 0;
  ck_assert_int_eq(mly_spawn(rt, t, &(counter){0, 1}, sizeof(counter), &id),
                   MLY_EIO);
  mly_runtime_close(rt);
  ck_assert_uint_eq(ended, 0);
  jb_free(&md.log);
}
END_TEST

static Suite *store_seam_suite(void) {
  Suite *s = suite_create("store_seam");
  TCase *tc = tcase_create("memory store");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, durable_machines_run_and_come_back_on_a_memory_store);
  tcase_add_test(tc, a_failed_batch_stops_the_store_and_ends_durable_machines);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(store_seam_suite)
