/*
 * test_queue_durable.c - task queues over a journal: every task comes
 * back after a restart where it stood (scheduled, waiting, dead) with its
 * payload, the dispatcher is rebuilt from them, a task due while the
 * process was down runs at once, a success is never run again, names
 * answer "already queued" and "already done" across restarts and are free
 * again after the retention window, a 16 MiB payload is stored once, not
 * per attempt, and a task that succeeds costs two records and a bounded
 * number of bytes.  The kill -9 cases are in test_queue_crash.c.
 */
#include "queue_harness.h"

#include <unistd.h>

static char dir[256];
static int64_t retention_ms;

static void fresh_dir(void) {
  h_tmpdir(dir, sizeof dir, "mealy-q");
}

/* A runtime on dir, with the queues and functions every test uses. */
static void open_rt(void) {
  rt = h_runtime();
  ck_assert_int_eq(mly_queues_open(rt), 0);
  ck_assert_int_eq(mly_defer_register(rt, "rec", rec_fn, NULL, 0), 0);
  mly_queue_def p = {.name = "p", .paused = true, .concurrency_key = "k",
                     .retry = {1, 1, 1, 0, 0, 0}};
  char err[256];
  ck_assert_int_eq(mly_queue_declare(rt, &p, err, sizeof err), 0);
  mly_journal_options jo = {.dir = dir, .sync = MLY_SYNC_ALWAYS,
                            .name_retention_ms = retention_ms};
  h_journal_open(rt, &jo);
}

static void reopen(void) {
  mly_runtime_close(rt);
  open_rt();
}

static void setup(void) {
  memset(&R, 0, sizeof R);
  R.loop_thread = pthread_self();
  retention_ms = 0;
  fresh_dir();
  open_rt();
}

static void teardown(void) {
  mly_runtime_close(rt);
  rt = NULL;
  h_rmtree(dir);
}

static int sum_n;
static int sum_cb(const mly_task_info *t, void *a) {
  int64_t n = 0;
  (void)a;
  ck_assert_int_eq(mly_map_get_int(t->payload, "n", &n), 0);
  sum_n += (int)n;
  return 0;
}

START_TEST(restart_keeps_every_state) {
  for (int i = 1; i <= 3; i++)
    ck_assert_int_eq(
        mly_defer(rt, "rec", pl(i, i), &(mly_task_opts){.queue = "p"}), 0);
  mly_task_opts later = {.countdown_ms = 3600 * 1000};
  ck_assert_int_eq(mly_defer(rt, "rec", pl(10, -1), &later), 0);
  R.script[0] = MLY_TASK_PERMANENT;
  R.nscript = 1;
  mly_id dead = 0;
  mly_task_opts od = {.name = "dead-one", .id_out = &dead};
  ck_assert_int_eq(mly_defer(rt, "rec", pl(20, -1), &od), 0);
  Q_UNTIL(rt, count_tasks(MLY_TASK_DEAD) == 1 &&
                    count_tasks(MLY_TASK_WAITING) == 3, 100000);
  reopen();
  Q_UNTIL(rt, count_tasks(MLY_TASK_WAITING) == 3, 100000);
  ck_assert_int_eq(count_tasks(MLY_TASK_SCHEDULED), 1);
  ck_assert_int_eq(count_tasks(MLY_TASK_DEAD), 1);
  sum_n = 0;
  ck_assert_int_eq(mly_task_foreach(rt, NULL, MLY_TASKS_ALL, sum_cb, NULL), 0);
  ck_assert_int_eq(sum_n, 1 + 2 + 3 + 10 + 20); /* payloads came back */
  mly_task_info ti;
  ck_assert_int_eq(mly_task_info_get(rt, dead, &ti), 0);
  ck_assert_str_eq(ti.last_msg, "scripted");
  ck_assert_uint_eq(ti.attempts, 1);
  ck_assert_int_eq(R.runs, 1); /* only the dead letter's attempt */
  /* the rebuilt dispatcher runs the waiting ones when resumed, and the
   * dead letter once retried */
  ck_assert_int_eq(mly_queue_resume(rt, "p"), 0);
  ck_assert_int_eq(mly_task_retry(rt, dead, NULL), 0);
  Q_UNTIL(rt, R.runs == 1 + 4, 100000);
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 1, 100000);
  ck_assert_int_eq(count_tasks(MLY_TASK_SCHEDULED), 1);
}
END_TEST

START_TEST(due_while_down_runs_at_once) {
  mly_task_opts o = {.countdown_ms = 150};
  ck_assert_int_eq(mly_defer(rt, "rec", pl(1, -1), &o), 0);
  Q_UNTIL(rt, count_tasks(MLY_TASK_SCHEDULED) == 1, 100000);
  mly_runtime_close(rt);
  usleep(300 * 1000); /* past its eta while nothing runs */
  open_rt();
  Q_UNTIL(rt, R.runs == 1, 100000);
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 100000);
}
END_TEST

START_TEST(success_never_runs_again) {
  for (int i = 0; i < 20; i++) ck_assert_int_eq(mly_defer(rt, "rec", pl(i, -1), NULL), 0);
  Q_UNTIL(rt, R.runs == 20 && count_tasks(MLY_TASKS_ALL) == 0, 100000);
  reopen();
  h_turns(rt, 200);
  ck_assert_int_eq(R.runs, 20);
  ck_assert_int_eq(count_tasks(MLY_TASKS_ALL), 0);
}
END_TEST

START_TEST(names_across_restart_and_window) {
  mly_name_info ni;
  mly_task_opts q = {.queue = "p", .name = "queued", .exists = &ni};
  mly_task_opts d = {.name = "done", .exists = &ni};
  ck_assert_int_eq(mly_defer(rt, "rec", pl(1, -1), &q), 0);
  ck_assert_int_eq(mly_defer(rt, "rec", pl(2, -1), &d), 0);
  Q_UNTIL(rt, R.runs == 1 && count_tasks(MLY_TASKS_ALL) == 1, 100000);
  reopen();
  ck_assert_int_eq(mly_defer(rt, "rec", pl(3, -1), &q), MLY_EEXIST);
  ck_assert_int_eq(ni.state, MLY_NAME_LIVE);
  ck_assert_int_eq(mly_defer(rt, "rec", pl(4, -1), &d), MLY_EEXIST);
  ck_assert_int_eq(ni.state, MLY_NAME_ENDED);
  ck_assert_int_eq(ni.status, 0);
}
END_TEST

START_TEST(name_free_after_window) {
  mly_runtime_close(rt);
  retention_ms = 1;
  open_rt();
  mly_name_info ni;
  mly_task_opts d = {.name = "once", .exists = &ni};
  ck_assert_int_eq(mly_defer(rt, "rec", pl(1, -1), &d), 0);
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 100000);
  usleep(20 * 1000);
  ck_assert_int_eq(mly_journal_compact(rt), 0);
  Q_UNTIL(rt, mly_task_lookup(rt, NULL, "once", &ni) == MLY_ENOENT, 100000);
  ck_assert_int_eq(mly_defer(rt, "rec", pl(2, -1), &d), 0);
  Q_UNTIL(rt, R.runs == 2, 100000);
}
END_TEST

static int big_attempts;
static size_t big_len;
static void big_fn(mly_task *t, void *arg) {
  (void)arg;
  const void *p;
  size_t len = 0;
  mly_value_get_bin(mly_task_payload(t), &p, &len);
  if (len && ((const unsigned char *)p)[len - 1] == 0x5a) big_len = len;
  big_attempts++;
  mly_task_done(t, big_attempts < 4 ? MLY_TASK_RETRY : MLY_TASK_OK, "again");
}

START_TEST(payload_16_mib_stored_once) {
  size_t len = 16u << 20;
  unsigned char *b = malloc(len);
  memset(b, 0x5a, len);
  ck_assert_int_eq(mly_defer_register(rt, "big", big_fn, NULL, 0), 0);
  mly_retry r = {10, 1, 1, 0, 0, 0};
  mly_task_opts o = {.queue = "p", .retry = &r};
  ck_assert_int_eq(mly_defer(rt, "big", mly_value_bin(b, len), &o), 0);
  free(b);
  Q_UNTIL(rt, count_tasks(MLY_TASK_WAITING) == 1, 100000);
  reopen(); /* it comes back from the journal */
  ck_assert_int_eq(mly_defer_register(rt, "big", big_fn, NULL, 0), 0);
  mly_queue_resume(rt, "p");
  Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == 0, 100000);
  ck_assert_int_eq(big_attempts, 4);
  ck_assert_uint_eq(big_len, len);
  /* four attempts, three retries and a restart: the payload was written
   * once (the reopening's journal holds less than two copies) */
  mly_journal_info ji;
  char err[256];
  mly_runtime_close(rt);
  if (H_JOURNAL_FIGURE("the journal's bytes")) {
    ck_assert_int_eq(mly_journal_info_get(dir, &ji, err, sizeof err), 0);
    ck_assert_uint_lt(ji.bytes, 2 * (uint64_t)len);
  }
  open_rt();
}
END_TEST

static void other_fn(mly_task *t, void *arg) {
  (void)arg;
  mly_task_done(t, MLY_TASK_OK, NULL);
}

START_TEST(restart_before_declarations) {
  mly_queue_def lq = {.name = "lq", .paused = true, .retry = MLY_RETRY_UNSET};
  ck_assert_int_eq(mly_queue_declare(rt, &lq, NULL, 0), 0);
  ck_assert_int_eq(mly_defer_register(rt, "other", other_fn, NULL, 0), 0);
  ck_assert_int_eq(mly_defer(rt, "rec", pl(1, -1), &(mly_task_opts){.queue = "lq"}), 0);
  mly_id gone = 0;
  ck_assert_int_eq(mly_defer(rt, "other", pl(2, -1),
                             &(mly_task_opts){.queue = "p", .id_out = &gone}),
                   0);
  Q_UNTIL(rt, count_tasks(MLY_TASK_WAITING) == 2, 100000);
  reopen(); /* "lq" not declared, "other" not registered */
  Q_UNTIL(rt, count_tasks(MLY_TASK_WAITING) == 2, 100000);
  ck_assert_int_eq(mly_queue_resume(rt, "p"), 0);
  /* a function nobody registered: the attempt fails for good */
  Q_UNTIL(rt, count_tasks(MLY_TASK_DEAD) == 1, 100000);
  mly_task_info ti;
  ck_assert_int_eq(mly_task_info_get(rt, gone, &ti), 0);
  ck_assert_int_eq(ti.last_error, MLY_ENOENT);
  ck_assert_ptr_nonnull(strstr(ti.last_msg, "other"));
  /* the queue nobody declared yet holds its task until it is */
  h_turns(rt, 100);
  ck_assert_int_eq(R.runs, 0);
  lq.paused = false;
  ck_assert_int_eq(mly_queue_declare(rt, &lq, NULL, 0), 0);
  Q_UNTIL(rt, R.runs == 1, 100000);
}
END_TEST

START_TEST(pause_survives_restart) {
  mly_queue_def q = {.name = "pq", .retry = MLY_RETRY_UNSET};
  ck_assert_int_eq(mly_queue_declare(rt, &q, NULL, 0), 0);
  ck_assert_int_eq(mly_queue_pause(rt, "pq"), 0);
  for (int i = 0; i < 5; i++)
    ck_assert_int_eq(mly_defer(rt, "rec", pl(i, -1), &(mly_task_opts){.queue = "pq"}), 0);
  Q_UNTIL(rt, count_tasks(MLY_TASK_WAITING) == 5, 100000);
  mly_runtime_close(rt);
  open_rt();
  ck_assert_int_eq(mly_queue_declare(rt, &q, NULL, 0), 0); /* not paused */
  Q_UNTIL(rt, count_tasks(MLY_TASK_WAITING) == 5, 100000);
  h_turns(rt, 100);
  ck_assert_int_eq(R.runs, 0); /* still paused */
  mly_queue_info qi;
  ck_assert_int_eq(mly_queue_info_get(rt, "pq", &qi), 0);
  ck_assert(qi.paused);
  /* "p" is declared paused; a durable resume wins over that */
  ck_assert_int_eq(mly_queue_resume(rt, "p"), 0);
  ck_assert_int_eq(mly_defer(rt, "rec", pl(9, -1), &(mly_task_opts){.queue = "p"}), 0);
  Q_UNTIL(rt, R.runs == 1, 100000);
  reopen(); /* declared paused, resumed before: resumed */
  ck_assert_int_eq(mly_queue_declare(rt, &q, NULL, 0), 0);
  ck_assert_int_eq(mly_defer(rt, "rec", pl(10, -1), &(mly_task_opts){.queue = "p"}), 0);
  Q_UNTIL(rt, R.runs == 2, 100000);
  ck_assert_int_eq(R.order[1], 10);
  ck_assert_int_eq(mly_queue_resume(rt, "pq"), 0);
  Q_UNTIL(rt, R.runs == 7, 100000);
}
END_TEST

static int added_status[4], nadded;
static void on_added(mly_runtime *r, int status, mly_id id, void *arg) {
  (void)r, (void)arg;
  ck_assert_uint_ne(id, 0);
  added_status[nadded++] = status;
}

START_TEST(on_added_after_commit_or_close) {
  nadded = 0;
  mly_task_opts o = {.queue = "p", .on_added = on_added};
  ck_assert_int_eq(mly_defer(rt, "rec", pl(1, -1), &o), 0);
  ck_assert_int_eq(nadded, 0); /* not before its creation is durable */
  Q_UNTIL(rt, nadded == 1, 100000);
  ck_assert_int_eq(added_status[0], 0);
  mly_journal_stats js;
  ck_assert_int_eq(mly_journal_stats_get(rt, &js), 0);
  ck_assert_uint_ge(js.syncs, 1);
  /* closed before its first step: told, and it is there after all */
  ck_assert_int_eq(mly_defer(rt, "rec", pl(2, -1), &o), 0);
  mly_runtime_close(rt);
  ck_assert_int_eq(nadded, 2);
  ck_assert_int_eq(added_status[1], MLY_ESHUTDOWN);
  open_rt();
  Q_UNTIL(rt, count_tasks(MLY_TASK_WAITING) == 2, 100000);
}
END_TEST

/* What a task costs the journal, counted (bench_queue measures the
 * time): a task that succeeds at its first attempt is its creation
 * (data and payload) and its end, two records; the step that ran it
 * writes nothing of its own, and its data goes without trailing zero
 * bytes.  With a 100-byte payload that is under 450 bytes a task (it
 * was 3 records and ~950 bytes). */
static uint64_t ran;
static void count_fn(mly_task *t, void *arg) {
  (void)arg;
  ran++;
  mly_task_done(t, MLY_TASK_OK, NULL);
}

START_TEST(journal_bytes_and_records_per_task) {
  enum { N = 500 };
  ck_assert_int_eq(mly_defer_register(rt, "count", count_fn, NULL, 0), 0);
  mly_runtime_close(rt); /* what the fixture's open wrote, as a base */
  mly_journal_info a, b;
  char err[256];
  ck_assert_int_eq(mly_journal_info_get(dir, &a, err, sizeof err), 0);
  open_rt();
  ck_assert_int_eq(mly_defer_register(rt, "count", count_fn, NULL, 0), 0);
  unsigned char body[100];
  memset(body, 'x', sizeof body);
  ran = 0;
  for (int i = 0; i < N; i++) {
    mly_task_opts o = {.queue = MLY_QUEUE_DEFAULT};
    ck_assert_int_eq(mly_defer(rt, "count", mly_value_bin(body, sizeof body),
                               &o), 0);
  }
  Q_UNTIL(rt, ran == N && count_tasks(MLY_TASKS_ALL) == 0, 100000);
  mly_runtime_close(rt);
  ck_assert_int_eq(mly_journal_info_get(dir, &b, err, sizeof err), 0);
  open_rt();
  uint64_t records = b.records - a.records, bytes = b.bytes - a.bytes;
  /* the reopening may write a few records of its own (queue states) */
  ck_assert_msg(records >= 2 * N && records <= 2 * N + 16,
                "%llu records for %d tasks", (unsigned long long)records, N);
  ck_assert_msg(bytes <= 320 * (uint64_t)N, "%llu bytes for %d tasks",
                (unsigned long long)bytes, N);
}
END_TEST

/* ---- a journal written by the first task layout (type version 1) ---- */

/* The task's data as version 1 wrote it, byte for byte: two fixed name
 * arrays, the numbers, the last message. */
typedef struct v1_data {
  char queue[64];
  char target[64];
  uint8_t kind, state, pad[2];
  int32_t priority, last_error;
  uint32_t attempts, failures, pad2;
  int64_t eta_ms, created_ms, first_run_ms;
  uint64_t seq;
  mly_retry retry;
  char last_msg[128];
} v1_data;

#define V1_POINTS(X)                                                    \
  X(v1, scheduled) X(v1, waiting) X(v1, running) X(v1, finishing) X(v1, dead)
MLY_POINTS(v1, V1_POINTS);

/* where version 1's body stood while its task waited for a slot */
static int v1_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_WAIT_UNTIL_AT(m, v1_waiting, false);
  MLY_END(m);
}

static int v1_seen;
static int v1_scan_cb(const mly_task_info *t, void *a) {
  (void)a;
  int64_t n = -1;
  ck_assert_int_eq(mly_map_get_int(t->payload, "n", &n), 0);
  ck_assert_str_eq(t->queue, "default");
  ck_assert_str_eq(t->target.name, "rec");
  ck_assert_int_eq(t->target.kind, MLY_TASK_FUNCTION);
  ck_assert_int_eq(t->state, MLY_TASK_WAITING);
  ck_assert_int_eq(t->attempts, (uint32_t)n);
  ck_assert_int_eq(t->failures, (uint32_t)n);
  ck_assert_int_eq(t->priority, (int)n);
  ck_assert_int_eq(t->last_error, n ? MLY_EIO : 0);
  ck_assert_str_eq(t->last_msg, n ? "an old failure" : "");
  ck_assert_int_eq(t->retry.task_retry_limit, 7 + n);
  v1_seen |= 1 << n;
  return 0;
}

START_TEST(recovers_version_1_tasks) {
  mly_runtime_close(rt);
  h_rmtree(dir);
  fresh_dir();
  rt = h_runtime();
  mly_type_def def = {.name = "mly.task", .run = v1_run, MLY_TYPE_POINTS(v1),
                      .data_size = sizeof(v1_data), .version = 1,
                      .flags = MLY_TYPE_DURABLE};
  mly_type *ty;
  ck_assert_int_eq(mly_type_register(rt, &def, &ty), 0);
  mly_journal_options jo = {.dir = dir, .sync = MLY_SYNC_ALWAYS};
  h_journal_open(rt, &jo);
  int64_t now = now_ms();
  for (int i = 0; i < 3; i++) {
    v1_data d;
    memset(&d, 0, sizeof d);
    strcpy(d.queue, "default");
    strcpy(d.target, "rec");
    d.kind = MLY_TASK_FUNCTION;
    d.state = MLY_TASK_WAITING;
    d.priority = i;
    d.attempts = d.failures = (uint32_t)i;
    d.last_error = i ? MLY_EIO : 0;
    d.eta_ms = d.created_ms = now;
    d.seq = (uint64_t)now * 1000u + (uint64_t)i;
    mly_retry unset = MLY_RETRY_UNSET;
    d.retry = unset;
    d.retry.task_retry_limit = 7 + i;
    if (i) strcpy(d.last_msg, "an old failure");
    mly_spawn_options so = {.arg = &d, .arg_len = sizeof d,
                            .context = pl(i, -1)};
    ck_assert_int_eq(mly_spawn_opts(rt, ty, &so, NULL), 0);
  }
  h_turns(rt, 50);
  mly_runtime_close(rt);
  /* read offline, converted */
  char err[256];
  v1_seen = 0;
  ck_assert_int_eq(mly_task_scan(dir, NULL, MLY_TASKS_ALL, v1_scan_cb, NULL,
                                 err, sizeof err), 0);
  ck_assert_int_eq(v1_seen, 7);
  /* recovered by this version: listed as they were, then run */
  open_rt();
  v1_seen = 0;
  ck_assert_int_eq(mly_task_foreach(rt, NULL, MLY_TASK_WAITING, v1_scan_cb,
                                    NULL), 0);
  ck_assert_int_eq(v1_seen, 7);
  Q_UNTIL(rt, R.runs == 3 && count_tasks(MLY_TASKS_ALL) == 0, 100000);
  int ran_n[3] = {0};
  for (int i = 0; i < 3; i++) ran_n[R.order[i]]++;
  ck_assert(ran_n[0] == 1 && ran_n[1] == 1 && ran_n[2] == 1);
}
END_TEST

/* ---- randomized, with restarts, against a model ---- */

#define MN 120
static int m_ok[MN], m_runs[MN];
static bool m_deleted[MN], m_run_after_delete;

static void model_fn(mly_task *t, void *arg) {
  (void)arg;
  int64_t n = 0;
  mly_map_get_int(mly_task_payload(t), "n", &n);
  m_runs[n]++;
  if (m_deleted[n]) m_run_after_delete = true;
  mly_task_outcome o = MLY_TASK_OK;
  if (mly_task_attempt(t) == 1 && n % 5 == 0) o = MLY_TASK_PERMANENT;
  else if (mly_task_attempt(t) == 1 && n % 3 == 0) o = MLY_TASK_RETRY;
  if (o == MLY_TASK_OK) m_ok[n]++;
  mly_task_done(t, o, NULL);
}

static void model_open(void) {
  open_rt();
  ck_assert_int_eq(mly_defer_register(rt, "model", model_fn, NULL, 0), 0);
  mly_queue_def a = {.name = "ma", .max_concurrent = 2, .concurrency_key = "k",
                     .retry = {5, 1, 2, 1, 0, 0.3}};
  ck_assert_int_eq(mly_queue_declare(rt, &a, NULL, 0), 0);
}

static int retry_cb(const mly_task_info *t, void *arg) {
  (void)arg;
  ck_assert_int_eq(mly_task_retry(rt, t->id, NULL), 0);
  return 0;
}

START_TEST(random_restarts_against_model) {
  unsigned seed = 777u + (unsigned)_i;
  memset(m_ok, 0, sizeof m_ok);
  memset(m_runs, 0, sizeof m_runs);
  memset(m_deleted, 0, sizeof m_deleted);
  m_run_after_delete = false;
  mly_runtime_close(rt);
  model_open();
  mly_id ids[MN] = {0};
  for (int n = 0; n < MN;) {
    int op = (int)(rand_r(&seed) % 10);
    if (op < 5) { /* add, sometimes twice under one name */
      char name[16];
      snprintf(name, sizeof name, "m%d", n);
      mly_value *p = pl(n, (int)(rand_r(&seed) % 3));
      mly_task_opts o = {.queue = n % 2 ? "ma" : "p", .name = name,
                         .countdown_ms = rand_r(&seed) % 3 ? 0 : 5,
                         .priority = (int)(rand_r(&seed) % 3), .id_out = &ids[n]};
      ck_assert_int_eq(mly_defer(rt, "model", p, &o), 0);
      ck_assert_int_eq(mly_defer(rt, "model", pl(n, -1), &o), MLY_EEXIST);
      n++;
    } else if (op == 5) {
      mly_queue_pause(rt, rand_r(&seed) % 2 ? "ma" : "p");
    } else if (op == 6) {
      mly_queue_resume(rt, rand_r(&seed) % 2 ? "ma" : "p");
    } else if (op == 7) { /* a clean restart */
      mly_runtime_close(rt);
      model_open();
    } else if (op == 8 && n > 0) { /* delete one that may still be there */
      int k = (int)(rand_r(&seed) % (unsigned)n);
      if (!m_deleted[k] && m_ok[k] == 0 && mly_task_delete(rt, ids[k]) == 0)
        m_deleted[k] = true;
    } else {
      h_turns(rt, 5);
    }
  }
  mly_queue_resume(rt, "ma");
  mly_queue_resume(rt, "p");
  for (int round = 0; round < 5; round++) {
    Q_UNTIL(rt, count_tasks(MLY_TASKS_ALL) == count_tasks(MLY_TASK_DEAD), 100000);
    if (count_tasks(MLY_TASKS_ALL) == 0) break;
    mly_task_foreach(rt, NULL, MLY_TASK_DEAD, retry_cb, NULL);
    Q_UNTIL(rt, count_tasks(MLY_TASK_DEAD) == 0, 100000);
  }
  ck_assert_int_eq(count_tasks(MLY_TASKS_ALL), 0);
  ck_assert(!m_run_after_delete);
  for (int n = 0; n < MN; n++) {
    mly_name_info ni;
    char name[16];
    snprintf(name, sizeof name, "m%d", n);
    ck_assert_int_eq(mly_task_lookup(rt, n % 2 ? "ma" : "p", name, &ni), 0);
    ck_assert_int_eq(ni.state, MLY_NAME_ENDED);
    if (m_deleted[n]) {
      ck_assert_int_le(m_ok[n], 0);
      ck_assert_int_eq(ni.status, MLY_ECANCELED);
    } else {
      ck_assert_msg(m_ok[n] == 1, "task %d succeeded %d times", n, m_ok[n]);
      ck_assert_int_eq(ni.status, 0);
    }
  }
}
END_TEST

static Suite *queue_durable_suite(void) {
  Suite *s = suite_create("queue_durable");
  TCase *tc = tcase_create("queue_durable");
  tcase_set_timeout(tc, 120);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, restart_keeps_every_state);
  tcase_add_test(tc, due_while_down_runs_at_once);
  tcase_add_test(tc, success_never_runs_again);
  tcase_add_test(tc, names_across_restart_and_window);
  tcase_add_test(tc, name_free_after_window);
  tcase_add_test(tc, payload_16_mib_stored_once);
  tcase_add_test(tc, restart_before_declarations);
  tcase_add_test(tc, pause_survives_restart);
  tcase_add_test(tc, on_added_after_commit_or_close);
  /* the journal's bytes per task; a version-1 journal written by hand */
  h_tcase_add_journal_only(tc, journal_bytes_and_records_per_task);
  h_tcase_add_journal_only(tc, recovers_version_1_tasks);
  tcase_add_loop_test(tc, random_restarts_against_model, 0, 6);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(queue_durable_suite)
