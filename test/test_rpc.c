/*
 * test_rpc.c - the control socket server (machines/common/rpc.c) with
 * methods that answer late, and its client (rpcc.c).
 *
 * The server runs on a loop in this thread; clients are threads with
 * blocking sockets.  Methods: "now" answers params[0] at once; "hold"
 * keeps the call; "release" answers every held call, last held first,
 * then itself.  Checked:
 *   - answers leave in request order whatever order methods finish in
 *     (random sequences of hold/now/release against a model: the k-th
 *     answer is the k-th request's, with its result);
 *   - a held notification is run, never answered;
 *   - a client that pipelines more held calls than RPC_MAX_PENDING is
 *     not read past the bound (held never exceeds it), and is served
 *     in full once they are released;
 *   - a client that hangs up with calls held: answering them later is
 *     safe (ASan);
 *   - rpc_call_sock: the result, an error answer, a missing socket.
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "harness.h"
#include "rpc.h"

#define MAXHELD 4096

typedef struct srv_state {
  rpc_call *held[MAXHELD];
  int64_t held_val[MAXHELD];
  size_t nheld, max_held;
  size_t notified;
} srv_state;

static void m_now(rpc_call *call, const mly_value *params, void *ud) {
  (void)ud;
  int64_t v = -1;
  mly_value_get_int(mly_array_at(params, 0), &v);
  rpc_reply(call, mly_value_int(v));
}

static void m_hold(rpc_call *call, const mly_value *params, void *ud) {
  srv_state *st = ud;
  int64_t v = -1;
  mly_value_get_int(mly_array_at(params, 0), &v);
  if (rpc_call_is_notification(call)) st->notified++;
  ck_assert_uint_lt(st->nheld, MAXHELD);
  st->held_val[st->nheld] = v;
  st->held[st->nheld++] = call;
  if (st->nheld > st->max_held) st->max_held = st->nheld;
}

static void m_release(rpc_call *call, const mly_value *params, void *ud) {
  (void)params;
  srv_state *st = ud;
  /* answering may read more requests of their client, held anew here:
   * those wait for the next release */
  size_t n = st->nheld;
  rpc_call **calls = malloc(n * sizeof *calls + 1);
  int64_t *vals = malloc(n * sizeof *vals + 1);
  memcpy(calls, st->held, n * sizeof *calls);
  memcpy(vals, st->held_val, n * sizeof *vals);
  st->nheld = 0;
  for (size_t i = n; i-- > 0;) /* last held first */
    rpc_reply(calls[i], mly_value_int(vals[i]));
  free(calls);
  free(vals);
  rpc_reply(call, mly_value_uint(n));
}

static void m_fail(rpc_call *call, const mly_value *params, void *ud) {
  (void)params;
  (void)ud;
  rpc_fail(call, "failed on purpose %d", 7);
}

static const rpc_method methods[] = {
    {"now", m_now}, {"hold", m_hold}, {"release", m_release},
    {"fail", m_fail}};

typedef struct fixture {
  uv_loop_t loop;
  rpc_server *srv;
  srv_state st;
  char dir[64];
  char path[sizeof ((struct sockaddr_un *)0)->sun_path]; /* a socket's */
  pthread_t th;
  volatile int done;
  uv_timer_t poll; /* ends the loop when the client thread is done */
} fixture;

static void start(fixture *f) {
  signal(SIGPIPE, SIG_IGN); /* as every host: a client may go away */
  memset(f, 0, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/test_rpc.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(f->dir));
  ck_assert_int_lt(snprintf(f->path, sizeof f->path, "%s/s.sock", f->dir),
                   (int)sizeof f->path);
  ck_assert_int_eq(uv_loop_init(&f->loop), 0);
  rpc_config cfg = {.loop = &f->loop, .path = f->path, .methods = methods,
                    .nmethods = sizeof methods / sizeof methods[0],
                    .what = "test", .ud = &f->st};
  char err[512];
  ck_assert_msg(rpc_start(&cfg, &f->srv, err, sizeof err) == 0, "%s", err);
}

static void check_done(uv_timer_t *t) {
  fixture *f = t->data;
  if (f->done) uv_stop(&f->loop);
}

/* Runs the loop until the client thread fn is done. */
static void run_client(fixture *f, void *(*fn)(void *)) {
  f->done = 0;
  ck_assert_int_eq(pthread_create(&f->th, NULL, fn, f), 0);
  uv_timer_init(&f->loop, &f->poll);
  f->poll.data = f;
  uv_timer_start(&f->poll, check_done, 1, 1);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&f->poll, NULL);
  pthread_join(f->th, NULL);
}

static void stop(fixture *f) {
  rpc_stop(f->srv);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(&f->loop), 0);
  rmdir(f->dir);
}

/* ---- a blocking client ---- */

static int conn(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  size_t n = strlen(path);
  if (n >= sizeof a.sun_path) abort(); /* a fixture's path always fits */
  memcpy(a.sun_path, path, n + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) abort();
  return fd;
}

static void put(int fd, int type, uint64_t msgid, const char *method,
                int64_t arg) {
  mly_value *r = mly_value_array();
  mly_array_push(r, mly_value_int(type));
  if (type == 0) mly_array_push(r, mly_value_uint(msgid));
  mly_array_push(r, mly_value_str(method));
  mly_value *p = mly_value_array();
  mly_array_push(p, mly_value_int(arg));
  mly_array_push(r, p);
  char *buf;
  size_t len;
  if (mly_value_encode(r, &buf, &len) < 0) abort();
  mly_value_free(r);
  for (size_t off = 0; off < len;) {
    ssize_t w = write(fd, buf + off, len - off);
    if (w <= 0) abort();
    off += (size_t)w;
  }
  free(buf);
}

typedef struct reader {
  char buf[1 << 16];
  size_t n;
} reader;

static mly_value *get(int fd, reader *r) {
  for (;;) {
    mly_value *v = NULL;
    size_t used = 0;
    int rc = mly_value_decode_prefix(r->buf, r->n, &v, &used);
    if (rc == 0) {
      memmove(r->buf, r->buf + used, r->n - used);
      r->n -= used;
      return v;
    }
    if (rc != MLY_EAGAIN || r->n == sizeof r->buf) abort();
    ssize_t k = read(fd, r->buf + r->n, sizeof r->buf - r->n);
    if (k <= 0) return NULL;
    r->n += (size_t)k;
  }
}

/* ---- random sequences against the model ---- */

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static int model_errors;

static void *order_client(void *arg) {
  fixture *f = arg;
  int fd = conn(f->path);
  reader *r = calloc(1, sizeof *r);
  for (int round = 0; round < 200; round++) {
    /* a random batch of hold/now/notification, ending in release */
    uint64_t ids[80];
    int64_t want[80];
    int n = 0, k = 1 + (int)(next() % 40);
    for (int i = 0; i < k; i++) {
      int64_t v = (int64_t)(next() % 1000000);
      uint64_t id = next() & 0xffffffffu;
      switch (next() % 3) {
      case 0: put(fd, 0, id, "hold", v); ids[n] = id, want[n++] = v; break;
      case 1: put(fd, 0, id, "now", v); ids[n] = id, want[n++] = v; break;
      default: put(fd, 2, 0, "hold", v); break; /* never answered */
      }
    }
    uint64_t rid = next() & 0xffffffffu;
    put(fd, 0, rid, "release", 0);
    for (int i = 0; i < n; i++) {
      mly_value *a = get(fd, r);
      uint64_t id = 0;
      int64_t v = -1;
      mly_value_get_uint(mly_array_at(a, 1), &id);
      mly_value_get_int(mly_array_at(a, 3), &v);
      if (id != ids[i] || v != want[i]) model_errors++;
      mly_value_free(a);
    }
    mly_value *a = get(fd, r);
    uint64_t id = 0;
    mly_value_get_uint(mly_array_at(a, 1), &id);
    if (id != rid) model_errors++;
    mly_value_free(a);
  }
  free(r);
  close(fd);
  f->done = 1;
  return NULL;
}

START_TEST(answers_in_request_order) {
  fixture f;
  start(&f);
  model_errors = 0;
  run_client(&f, order_client);
  ck_assert_int_eq(model_errors, 0);
  ck_assert_uint_gt(f.st.notified, 0);
  stop(&f);
}
END_TEST

/* More held calls than RPC_MAX_PENDING from one client, released from
 * another: never more than the bound held, every answer in order. */
#define OVER (RPC_MAX_PENDING * 3 + 5)
static void *bound_client(void *arg) {
  fixture *f = arg;
  int a = conn(f->path), b = conn(f->path);
  reader *ra = calloc(1, sizeof *ra), *rb = calloc(1, sizeof *rb);
  for (int i = 0; i < (int)OVER; i++) put(a, 0, (uint64_t)i, "hold", i);
  int got = 0, rounds = 0;
  while (got < (int)OVER && rounds++ < 100000) {
    put(b, 0, 1, "release", 0);
    mly_value *x = get(b, rb);
    uint64_t n = 0;
    mly_value_get_uint(mly_array_at(x, 3), &n);
    mly_value_free(x);
    for (uint64_t k = 0; k < n; k++) { /* what was held, answered now */
      mly_value *v = get(a, ra);
      uint64_t id = 0;
      mly_value_get_uint(mly_array_at(v, 1), &id);
      mly_value_free(v);
      if (id != (uint64_t)got) model_errors++;
      got++;
    }
  }
  if (got != (int)OVER) model_errors++;
  free(ra);
  free(rb);
  close(a);
  close(b);
  f->done = 1;
  return NULL;
}

START_TEST(pending_bound) {
  fixture f;
  start(&f);
  model_errors = 0;
  run_client(&f, bound_client);
  ck_assert_int_eq(model_errors, 0);
  ck_assert_uint_le(f.st.max_held, RPC_MAX_PENDING);
  ck_assert_uint_eq(f.st.max_held, RPC_MAX_PENDING);
  stop(&f);
}
END_TEST

/* Hangs up with calls held; another client releases them. */
static void *hangup_client(void *arg) {
  fixture *f = arg;
  int a = conn(f->path), b = conn(f->path);
  reader *rb = calloc(1, sizeof *rb);
  for (int i = 0; i < 10; i++) put(a, 0, (uint64_t)i, "hold", i);
  put(a, 0, 99, "now", 1);
  close(a);
  /* the server may not have read a's requests before it saw the hang
   * up; released either way */
  put(b, 0, 1, "release", 0);
  mly_value *x = get(b, rb);
  uint64_t id = 0;
  mly_value_get_uint(mly_array_at(x, 1), &id);
  if (id != 1) model_errors++;
  mly_value_free(x);
  free(rb);
  close(b);
  f->done = 1;
  return NULL;
}

START_TEST(hangup_with_calls_held) {
  fixture f;
  start(&f);
  model_errors = 0;
  run_client(&f, hangup_client);
  ck_assert_int_eq(model_errors, 0);
  /* held ones not released by b's call (read after it) go now */
  while (f.st.nheld > 0) {
    f.st.nheld--;
    rpc_reply(f.st.held[f.st.nheld], NULL);
  }
  stop(&f);
}
END_TEST

/* rpc_call_sock from a thread: a result, an error, a missing socket. */
static int call_rc[3];
static int64_t call_val;
static void *call_client(void *arg) {
  fixture *f = arg;
  mly_value *res = NULL, *p = mly_value_array();
  mly_array_push(p, mly_value_int(42));
  call_rc[0] = rpc_call_sock("test", f->path, "now", p, 30000, &res);
  mly_value_get_int(res, &call_val);
  mly_value_free(res);
  res = NULL;
  call_rc[1] = rpc_call_sock("test", f->path, "fail", mly_value_array(),
                             30000, &res);
  call_rc[2] = rpc_call_sock("test", "/nonexistent/x.sock", "now",
                             mly_value_array(), 30000, &res);
  f->done = 1;
  return NULL;
}

START_TEST(client_calls) {
  fixture f;
  start(&f);
  run_client(&f, call_client);
  ck_assert_int_eq(call_rc[0], 0);
  ck_assert_int_eq(call_val, 42);
  ck_assert_int_eq(call_rc[1], -1);
  ck_assert_int_eq(call_rc[2], -1);
  stop(&f);
}
END_TEST

static Suite *rpc_suite(void) {
  Suite *s = suite_create("rpc");
  TCase *tc = tcase_create("rpc");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, answers_in_request_order);
  tcase_add_test(tc, pending_bound);
  tcase_add_test(tc, hangup_with_calls_held);
  tcase_add_test(tc, client_calls);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(rpc_suite)
