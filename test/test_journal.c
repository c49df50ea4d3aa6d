/*
 * test_journal.c - the durable layer: record codec and CRC, recovery of
 * instances, events and timers, torn tails, damage, sequence gaps,
 * salvage, compaction, the directory lock, versions and unknown yield
 * points, fault injection (fail-stop), and a real crash (SIGKILL) of a
 * forked workload.
 */
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "journal.h"

/* ---- a scratch state directory per test ---- */

static char dir[256];

static void fresh_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/mealy-jt.XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
}

static int nsegments(void) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += strncmp(e->d_name, "seg-", 4) == 0;
  closedir(d);
  return n;
}

/* The newest segment's path. */
static void last_segment(char *path, size_t len) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  char best[256] = "";
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, "seg-", 4) == 0 && strcmp(e->d_name, best) > 0)
      snprintf(best, sizeof best, "%s", e->d_name);
  closedir(d);
  ck_assert_str_ne(best, "");
  snprintf(path, len, "%s/%s", dir, best);
}

static long file_size(const char *path) {
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  return (long)st.st_size;
}

/* ---- a durable counter ---- */

#define NMAX 256
static uint32_t done_n[NMAX], done_recovered[NMAX];
static uint64_t done_step[NMAX];
static uint64_t ticks; /* steps that ran, over every runtime of a test */

typedef struct counter {
  uint32_t idx, n, target, recovered;
  uint32_t sleep_ms;
} counter;

#define COUNTER_POINTS(X) X(counter, tick)
MLY_POINTS(counter, COUNTER_POINTS);

static int counter_run(mly_machine *m, void *data) {
  counter *c = data;
  MLY_BEGIN(m);
  while (c->n < c->target) {
    if (mly_recovered(m)) c->recovered++;
    c->n++;
    ticks++;
    MLY_SLEEP_AT(m, counter_tick, c->sleep_ms);
  }
  if (mly_recovered(m)) c->recovered++;
  done_n[c->idx] = c->n;
  done_recovered[c->idx] = c->recovered;
  done_step[c->idx] = mly_step_number(m);
  MLY_END(m);
}

static mly_type_def counter_def(uint32_t version) {
  return (mly_type_def){.name = "counter", .run = counter_run,
                        MLY_TYPE_POINTS(counter), .data_size = sizeof(counter),
                        .version = version, .flags = MLY_TYPE_DURABLE};
}

static mly_runtime *open_rt(mly_type **t, const mly_journal_options *o) {
  mly_runtime *rt = h_runtime();
  mly_type_def def = counter_def(1);
  *t = h_type(rt, &def);
  mly_journal_options dflt = {.dir = dir};
  char err[512];
  int rc = mly_journal_open(rt, o ? o : &dflt, err, sizeof err);
  ck_assert_msg(rc == 0, "open: %s", err);
  return rt;
}

static void run_turns(mly_runtime *rt, int n) {
  for (int i = 0; i < n; i++) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
}

static void spawn_counters(mly_runtime *rt, mly_type *t, uint32_t n,
                           uint32_t target) {
  for (uint32_t i = 0; i < n; i++) {
    counter c = {.idx = i, .target = target};
    h_spawn(rt, t, &c, sizeof c);
  }
}

static void reset(void) {
  memset(done_n, 0, sizeof done_n);
  memset(done_recovered, 0, sizeof done_recovered);
  memset(done_step, 0, sizeof done_step);
  ticks = 0;
}

/* ---- codec ---- */

START_TEST(t_crc32c) {
  /* the check value of CRC-32C */
  ck_assert_uint_eq(jr_crc32c("123456789", 9), 0xe3069283u);
  ck_assert_uint_eq(jr_crc32c_soft("123456789", 9), 0xe3069283u);
  /* every path: the byte tail, 8 at a time, three blocks side by side
     (short and long blocks), at every alignment near their edges */
  static unsigned char buf[40000];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (unsigned char)(i * 7 + 3 + (i >> 9));
  for (size_t n = 0; n < 1000; n += 37)
    ck_assert_uint_eq(jr_crc32c(buf, n), jr_crc32c_soft(buf, n));
  static const size_t edges[] = {383, 384, 385, 391, 392, 767, 768, 12287,
                                 12288, 12289, 12671, 12672, 24576, 36863,
                                 39999};
  for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
    for (size_t off = 0; off < 9; off++)
      ck_assert_uint_eq(jr_crc32c(buf + off, edges[i] - off),
                        jr_crc32c_soft(buf + off, edges[i] - off));
  /* continued across calls, as a frame's sum is */
  uint32_t c = jr_crc32c_more(jr_crc32c(buf, 5000), buf + 5000, 30000);
  ck_assert_uint_eq(c, jr_crc32c_soft(buf, 35000));
}
END_TEST

START_TEST(t_codec_roundtrip) {
  jbuf b = {0};
  size_t at = jb_begin(&b, 42, JR_END, 6);
  jb_uint(&b, 0x123456789ull);
  jb_int(&b, -5);
  jb_int(&b, -40000);
  jb_str(&b, "yield-point", 11);
  jb_bin(&b, "\0\1\2", 3);
  jb_nil(&b);
  jb_end(&b, at);
  ck_assert(!b.oom);
  uint32_t len = (uint32_t)b.p[0] | (uint32_t)b.p[1] << 8 |
                 (uint32_t)b.p[2] << 16 | (uint32_t)b.p[3] << 24;
  ck_assert_uint_eq(len, b.n - JR_HDR);
  jcur c = {b.p + JR_HDR, b.p + b.n, false};
  uint32_t n;
  uint64_t u;
  int64_t i;
  const char *s;
  const void *p;
  size_t sl;
  ck_assert(jc_array(&c, &n) && n == 8);
  ck_assert(jc_uint(&c, &u) && u == 42);
  ck_assert(jc_uint(&c, &u) && u == JR_END);
  ck_assert(jc_uint(&c, &u) && u == 0x123456789ull);
  ck_assert(jc_int(&c, &i) && i == -5);
  ck_assert(jc_int(&c, &i) && i == -40000);
  ck_assert(jc_str(&c, &s, &sl) && sl == 11 && memcmp(s, "yield-point", 11) == 0);
  ck_assert(jc_bin(&c, &p, &sl) && sl == 3 && memcmp(p, "\0\1\2", 3) == 0);
  ck_assert(jc_nil(&c));
  ck_assert(c.p == c.end && !c.bad);
  /* the generic decoder reads a body too (it is plain msgpack) */
  mly_value *v = NULL;
  ck_assert_int_eq(mly_value_decode(b.p + JR_HDR, b.n - JR_HDR, &v), 0);
  ck_assert_uint_eq(mly_value_len(v), 8);
  mly_value_free(v);
  /* a truncated body is refused, never over-read */
  jcur t = {b.p + JR_HDR, b.p + b.n - 3, false};
  ck_assert(jc_skip(&t) == false);
  jb_free(&b);
}
END_TEST

/* ---- recovery ---- */

START_TEST(t_close_and_continue) {
  fresh_dir();
  reset();
  mly_type *t;
  mly_runtime *rt = open_rt(&t, NULL);
  spawn_counters(rt, t, 100, 50);
  run_turns(rt, 20);
  uint64_t before = ticks;
  ck_assert_uint_gt(before, 100);
  ck_assert_uint_lt(before, 100 * 50);
  mly_runtime_close(rt); /* suspends: nothing ends, everything is written */
  rt = open_rt(&t, NULL);
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  ck_assert_uint_eq(st.recovered, 100);
  ck_assert_uint_eq(st.parked, 0);
  h_run(rt);
  for (int i = 0; i < 100; i++) {
    ck_assert_uint_eq(done_n[i], 50);
    ck_assert_uint_eq(done_recovered[i], 1); /* exactly one first step */
    /* the idempotency key goes on counting across the restart */
    ck_assert_uint_eq(done_step[i], 51);
  }
  /* every step ran exactly once: nothing lost, nothing repeated */
  ck_assert_uint_eq(ticks, 100 * 50);
  mly_runtime_close(rt);
  /* everything ended: a third open finds nothing alive */
  rt = open_rt(&t, NULL);
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  ck_assert_uint_eq(st.recovered, 0);
  mly_runtime_close(rt);
}
END_TEST

START_TEST(t_group_commit_counts) {
  fresh_dir();
  reset();
  mly_type *t;
  mly_runtime *rt = open_rt(&t, NULL);
  spawn_counters(rt, t, 200, 10);
  h_run(rt);
  mly_journal_stats st;
  ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
  /* 200 creates + 2000 steps + 200 ends, in far fewer fdatasyncs */
  ck_assert_uint_ge(st.records, 200 + 2000 + 200);
  ck_assert_uint_le(st.syncs, 40);
  ck_assert_uint_eq(st.syncs, st.batches);
  mly_runtime_close(rt);
}
END_TEST

/* Deadlines survive: three sleepers wake, after reopening late, in the
 * order of their deadlines. */
static int order[8], norder;
typedef struct sleeper {
  uint32_t idx, ms;
} sleeper;
#define SLEEPER_POINTS(X) X(sleeper, zz)
MLY_POINTS(sleeper, SLEEPER_POINTS);
static int sleeper_run(mly_machine *m, void *data) {
  sleeper *s = data;
  MLY_BEGIN(m);
  MLY_SLEEP_AT(m, sleeper_zz, s->ms);
  order[norder++] = (int)s->idx;
  MLY_END(m);
}

START_TEST(t_timers_overdue_in_order) {
  fresh_dir();
  norder = 0;
  mly_type_def def = {.name = "sleeper", .run = sleeper_run,
                      MLY_TYPE_POINTS(sleeper), .data_size = sizeof(sleeper),
                      .version = 1, .flags = MLY_TYPE_DURABLE};
  mly_journal_options o = {.dir = dir};
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &def);
  ck_assert_int_eq(mly_journal_open(rt, &o, NULL, 0), 0);
  uint32_t ms[3] = {300, 100, 200};
  for (uint32_t i = 0; i < 3; i++) {
    sleeper s = {i, ms[i]};
    h_spawn(rt, t, &s, sizeof s);
  }
  run_turns(rt, 3); /* each is asleep */
  ck_assert_int_eq(norder, 0);
  mly_runtime_close(rt);
  usleep(400 * 1000); /* every deadline passes while nothing runs */
  rt = h_runtime();
  h_type(rt, &def);
  ck_assert_int_eq(mly_journal_open(rt, &o, NULL, 0), 0);
  h_run(rt);
  ck_assert_int_eq(norder, 3);
  ck_assert_int_eq(order[0], 1);
  ck_assert_int_eq(order[1], 2);
  ck_assert_int_eq(order[2], 0);
  mly_runtime_close(rt);
}
END_TEST

/* Events between durable machines: a pinger asks, a ponger answers; the
 * conversation is interrupted by a close and finishes after reopening
 * with every exchange counted once. */
#define PING 7
#define PONG 8
typedef struct pp {
  uint32_t n, target;
  mly_id peer;
} pp;
#define PINGER_POINTS(X) X(pinger, asked)
MLY_POINTS(pinger, PINGER_POINTS);
#define PONGER_POINTS(X) X(ponger, listen)
MLY_POINTS(ponger, PONGER_POINTS);
static uint32_t pongs_total;

static int pinger_run(mly_machine *m, void *data) {
  pp *p = data;
  MLY_BEGIN(m);
  while (p->n < p->target) {
    MLY_REQUEST_AT(m, pinger_asked, p->peer, PING, mly_value_uint(p->n), 5000);
    ck_assert_ptr_nonnull(mly_current_event(m));
    uint64_t got = 0;
    ck_assert_int_eq(mly_value_get_uint(mly_current_event(m)->payload, &got), 0);
    ck_assert_uint_eq(got, p->n + 1000);
    p->n++;
  }
  mly_send(m, p->peer, PONG, NULL); /* stop */
  MLY_END(m);
}

static int ponger_run(mly_machine *m, void *data) {
  pp *p = data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_AWAIT_AT(m, ponger_listen, MLY_EV_ANY, -1);
    const mly_event *e = mly_current_event(m);
    if (e->id == PONG) break;
    uint64_t v = 0;
    mly_value_get_uint(e->payload, &v);
    mly_reply(m, e, PING, mly_value_uint(v + 1000));
    p->n++;
    pongs_total++;
  }
  MLY_END(m);
}

static void pp_types(mly_runtime *rt, mly_type **a, mly_type **b) {
  mly_type_def da = {.name = "pinger", .run = pinger_run,
                     MLY_TYPE_POINTS(pinger), .data_size = sizeof(pp),
                     .version = 1, .flags = MLY_TYPE_DURABLE};
  mly_type_def db = {.name = "ponger", .run = ponger_run,
                     MLY_TYPE_POINTS(ponger), .data_size = sizeof(pp),
                     .version = 1, .flags = MLY_TYPE_DURABLE};
  *a = h_type(rt, &da);
  *b = h_type(rt, &db);
}

START_TEST(t_request_reply_across_restart) {
  fresh_dir();
  pongs_total = 0;
  mly_journal_options o = {.dir = dir};
  mly_runtime *rt = h_runtime();
  mly_type *a, *b;
  pp_types(rt, &a, &b);
  ck_assert_int_eq(mly_journal_open(rt, &o, NULL, 0), 0);
  pp q = {0};
  mly_id pong = h_spawn(rt, b, &q, sizeof q);
  pp p = {.target = 300, .peer = pong};
  h_spawn(rt, a, &p, sizeof p);
  run_turns(rt, 40);
  ck_assert_uint_gt(pongs_total, 0);
  ck_assert_uint_lt(pongs_total, 300);
  mly_runtime_close(rt);
  rt = h_runtime();
  pp_types(rt, &a, &b);
  ck_assert_int_eq(mly_journal_open(rt, &o, NULL, 0), 0);
  h_run(rt);
  ck_assert_uint_eq(pongs_total, 300); /* none lost, none answered twice */
  mly_runtime_close(rt);
}
END_TEST

/* ---- damage ---- */

static void history_with(const mly_journal_options *o, uint32_t n,
                         uint32_t target, uint32_t turns) {
  reset();
  mly_type *t;
  mly_runtime *rt = open_rt(&t, o);
  spawn_counters(rt, t, n, target);
  run_turns(rt, (int)turns);
  mly_runtime_close(rt);
}

static void make_history(uint32_t n, uint32_t target, uint32_t turns) {
  history_with(NULL, n, target, turns);
}

START_TEST(t_torn_tail_is_cut) {
  fresh_dir();
  make_history(10, 100, 10);
  char seg[512];
  last_segment(seg, sizeof seg);
  long size = file_size(seg);
  FILE *f = fopen(seg, "ab");
  /* the start of a record whose body never made it */
  fwrite("\x40\0\0\0\x11\x22\x33\x44\x93\x01", 1, 10, f);
  fclose(f);
  mly_type *t;
  mly_runtime *rt = open_rt(&t, NULL);
  mly_journal_stats st;
  mly_journal_stats_get(rt, &st);
  ck_assert_uint_eq(st.torn_bytes, 10);
  ck_assert_uint_eq(st.recovered, 10);
  ck_assert_int_eq(file_size(seg), size); /* cut back */
  h_run(rt);
  for (int i = 0; i < 10; i++) ck_assert_uint_eq(done_n[i], 100);
  mly_runtime_close(rt);
}
END_TEST

START_TEST(t_bad_crc_in_the_middle_refused_then_salvaged) {
  fresh_dir();
  make_history(10, 100, 10);
  char seg[512];
  last_segment(seg, sizeof seg);
  long size = file_size(seg);
  int fd = open(seg, O_RDWR);
  unsigned char byte;
  ck_assert_int_eq(pread(fd, &byte, 1, size / 2), 1);
  byte ^= 0x5a;
  ck_assert_int_eq(pwrite(fd, &byte, 1, size / 2), 1);
  close(fd);
  mly_runtime *rt = h_runtime();
  mly_type_def def = counter_def(1);
  h_type(rt, &def);
  mly_journal_options o = {.dir = dir};
  char err[512] = "";
  ck_assert_int_eq(mly_journal_open(rt, &o, err, sizeof err), MLY_EBADMSG);
  ck_assert_msg(strstr(err, "seg-") && strstr(err, "offset "), "%s", err);
  ck_assert_msg(strstr(err, "salvage"), "%s", err);
  mly_runtime_close(rt);
  /* the check tool sees the same */
  ck_assert_int_eq(mly_journal_scan(dir, false, NULL, NULL, err, sizeof err),
                   MLY_EBADMSG);
  /* salvage keeps what verifies and rewrites the journal clean */
  rt = h_runtime();
  h_type(rt, &def);
  o.salvage = true;
  ck_assert_int_eq(mly_journal_open(rt, &o, err, sizeof err), 0);
  mly_journal_stats st;
  mly_journal_stats_get(rt, &st);
  ck_assert_uint_ge(st.salvaged, 1);
  ck_assert_uint_eq(st.recovered, 10);
  mly_runtime_close(rt);
  int rc = mly_journal_scan(dir, false, NULL, NULL, err, sizeof err);
  ck_assert_msg(rc == 0, "after salvage: %s", err);
}
END_TEST

START_TEST(t_directory_lock) {
  fresh_dir();
  mly_type *t;
  mly_runtime *a = open_rt(&t, NULL);
  mly_runtime *b = h_runtime();
  mly_type_def def = counter_def(1);
  h_type(b, &def);
  mly_journal_options o = {.dir = dir};
  char err[512] = "", pid[32];
  ck_assert_int_eq(mly_journal_open(b, &o, err, sizeof err), MLY_EBUSY);
  snprintf(pid, sizeof pid, "process %d", (int)getpid());
  ck_assert_msg(strstr(err, pid) && strstr(err, dir), "%s", err);
  mly_runtime_close(b);
  mly_runtime_close(a); /* the lock goes with it */
  b = open_rt(&t, NULL);
  mly_runtime_close(b);
}
END_TEST

/* ---- versions and yield points ---- */

#define OLDV_POINTS(X) X(oldv, waiting)
MLY_POINTS(oldv, OLDV_POINTS);
static int oldv_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_SLEEP_AT(m, oldv_waiting, 3600 * 1000);
  MLY_END(m);
}
#define NEWV_POINTS(X) X(newv, renamed)
MLY_POINTS(newv, NEWV_POINTS);
static int newv_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_SLEEP_AT(m, newv_renamed, 10);
  MLY_END(m);
}

static int collect_parked(const mly_parked *p, void *arg) {
  snprintf(arg, 512, "%s|%s|%u|%s", p->type, p->point, p->version, p->reason);
  return 0;
}

static int point_of(const mly_info *i, void *arg) {
  snprintf(arg, 64, "%s", i->point);
  return 0;
}

static mly_runtime *open_v(mly_type_def def, char *parked_out) {
  mly_runtime *rt = h_runtime();
  if (def.name) h_type(rt, &def);
  mly_journal_options o = {.dir = dir};
  char err[512];
  ck_assert_msg(mly_journal_open(rt, &o, err, sizeof err) == 0, "%s", err);
  parked_out[0] = '\0';
  mly_journal_parked(rt, collect_parked, parked_out);
  return rt;
}

START_TEST(t_versions_and_points) {
  fresh_dir();
  char parked[512];
  mly_type_def v1 = {.name = "job", .run = oldv_run, MLY_TYPE_POINTS(oldv),
                     .data_size = 8, .version = 1, .flags = MLY_TYPE_DURABLE};
  mly_runtime *rt = open_v(v1, parked);
  mly_type *t = mly_type_find(rt, "job");
  h_spawn(rt, t, NULL, 0);
  run_turns(rt, 3);
  mly_runtime_close(rt);

  /* version 2 that does not accept 1: parked, listed, the rest runs */
  mly_type_def v2 = v1;
  v2.version = 2;
  v2.min_version = 2;
  rt = open_v(v2, parked);
  ck_assert_msg(strstr(parked, "job|waiting|1|version 1 of 'job' is not "
                               "accepted (this code resumes versions 2 to 2)"),
                "%s", parked);
  mly_stats s;
  mly_runtime_stats(rt, &s);
  ck_assert_uint_eq(s.live, 0);
  mly_runtime_close(rt);

  /* the point was renamed: parked with its name */
  mly_type_def v3 = {.name = "job", .run = newv_run, MLY_TYPE_POINTS(newv),
                     .data_size = 8, .version = 1, .flags = MLY_TYPE_DURABLE};
  rt = open_v(v3, parked);
  ck_assert_msg(strstr(parked, "yield point 'waiting' no longer exists in "
                               "type 'job'"), "%s", parked);
  mly_runtime_close(rt);

  /* no such type: parked, and kept through a compaction */
  mly_type_def none = {0};
  rt = open_v(none, parked);
  ck_assert_msg(strstr(parked, "type 'job' is not registered"), "%s", parked);
  ck_assert_int_eq(mly_journal_compact(rt), 0);
  mly_runtime_close(rt);
  ck_assert_int_eq(nsegments(), 1);

  /* and the right code resumes it after all that */
  mly_type_def v1b = v1;
  v1b.version = 2;
  v1b.min_version = 1;
  rt = open_v(v1b, parked);
  ck_assert_str_eq(parked, "");
  mly_runtime_stats(rt, &s);
  ck_assert_uint_eq(s.live, 1);
  char point[64] = "";
  mly_foreach(rt, point_of, point);
  ck_assert_str_eq(point, "waiting"); /* back where it was */
  mly_runtime_close(rt);
}
END_TEST

/* ---- compaction ---- */

START_TEST(t_compaction_keeps_the_live_set) {
  fresh_dir();
  reset();
  mly_type *t;
  mly_journal_options o = {.dir = dir, .segment_bytes = 4096};
  mly_runtime *rt = open_rt(&t, &o);
  spawn_counters(rt, t, 20, 400);
  run_turns(rt, 100);
  ck_assert_int_gt(nsegments(), 3);
  uint64_t before = ticks;
  ck_assert_int_eq(mly_journal_compact(rt), 0);
  /* it runs once the batches in flight are done: how many loop turns
   * that takes depends on the machine's load, so wait for it (steps
   * pause meanwhile, and run again only on the turn after it) */
  mly_journal_stats st;
  RUN_UNTIL(rt, mly_journal_stats_get(rt, &st) == 0 && st.compactions > 0,
            10000);
  ck_assert_int_le(nsegments(), 2);
  ck_assert_uint_eq(st.compactions, 1);
  mly_runtime_close(rt);
  mly_journal_info info;
  char err[256];
  ck_assert_int_eq(mly_journal_info_get(dir, &info, err, sizeof err), 0);
  ck_assert_uint_eq(info.live_instances, 20);
  rt = open_rt(&t, &o);
  h_run(rt);
  for (int i = 0; i < 20; i++) ck_assert_uint_eq(done_n[i], 400);
  ck_assert_uint_eq(ticks, 20 * 400);
  ck_assert_uint_gt(before, 0);
  mly_runtime_close(rt);
}
END_TEST

/* Automatic: past the threshold, the dead records go by themselves. */
START_TEST(t_compaction_automatic) {
  fresh_dir();
  reset();
  mly_type *t;
  mly_journal_options o = {.dir = dir, .compact_min_bytes = 64 * 1024,
                           .segment_bytes = 16 * 1024};
  mly_runtime *rt = open_rt(&t, &o);
  spawn_counters(rt, t, 5, 3000);
  h_run(rt);
  mly_journal_stats st;
  mly_journal_stats_get(rt, &st);
  ck_assert_uint_ge(st.compactions, 1);
  ck_assert_uint_lt(st.total_bytes, 256 * 1024);
  mly_runtime_close(rt);
}
END_TEST

/* ---- fault injection ---- */

typedef struct fault_plan {
  int op;      /* which call fails */
  int after;   /* after this many good ones */
  int err;     /* with this error (or a short write when 1) */
  int seen;
} fault_plan;

static int fault_hook(void *arg, int op, size_t len) {
  fault_plan *f = arg;
  if (op != f->op) return 0;
  if (f->seen++ < f->after) return 0;
  if (f->err == 1) return len > 1 ? (int)(len / 2) : 0; /* short write */
  return f->err;
}

static int errors_seen, last_error;
static void on_error(mly_runtime *rt, int err, const char *msg, void *arg) {
  (void)rt;
  (void)arg;
  ck_assert_ptr_nonnull(strstr(msg, "no more commits"));
  errors_seen++;
  last_error = err;
}

static void fault_case(int op, int err, int expect) {
  fresh_dir();
  reset();
  errors_seen = 0;
  fault_plan plan = {op, 5, err, 0};
  mly_journal_options o = {.dir = dir, .fault = fault_hook, .fault_arg = &plan,
                           .on_error = on_error};
  mly_type *t;
  mly_runtime *rt = open_rt(&t, &o);
  spawn_counters(rt, t, 10, 1000);
  h_run(rt); /* the machines end with the error, so the loop runs dry */
  ck_assert_int_eq(errors_seen, 1);
  ck_assert_int_eq(last_error, expect);
  ck_assert_int_eq(mly_journal_error(rt), expect);
  mly_stats s;
  mly_runtime_stats(rt, &s);
  ck_assert_uint_eq(s.live, 0);
  for (int i = 0; i < 10; i++) ck_assert_uint_eq(done_n[i], 0);
  /* nothing more is accepted */
  counter c = {.target = 1};
  ck_assert_int_eq(mly_spawn(rt, t, &c, sizeof c, NULL), expect);
  mly_runtime_close(rt);
  /* what was committed before is intact; the rest runs to the end */
  rt = open_rt(&t, NULL);
  mly_journal_stats st;
  mly_journal_stats_get(rt, &st);
  ck_assert_uint_eq(st.recovered, 10);
  h_run(rt);
  for (int i = 0; i < 10; i++) ck_assert_uint_eq(done_n[i], 1000);
  mly_runtime_close(rt);
}

START_TEST(t_fault_fdatasync_eio) { fault_case(MLY_JOP_SYNC, -EIO, -EIO); }
END_TEST
START_TEST(t_fault_write_enospc) { fault_case(MLY_JOP_WRITE, -ENOSPC, -ENOSPC); }
END_TEST
START_TEST(t_fault_short_write) { fault_case(MLY_JOP_WRITE, 1, MLY_ENOSPC); }
END_TEST

/* ---- a real crash ---- */

/* The child runs counters and SIGKILLs itself from inside a step; the
 * parent reopens the journal and finishes the work. */
static int crash_after;
static int crasher_run(mly_machine *m, void *data) {
  counter *c = data;
  MLY_BEGIN(m);
  while (c->n < c->target) {
    if (++ticks == (uint64_t)crash_after) raise(SIGKILL);
    c->n++;
    MLY_SLEEP_AT(m, counter_tick, 0);
  }
  done_n[c->idx] = c->n;
  MLY_END(m);
}

START_TEST(t_sigkill_mid_step) {
  fresh_dir();
  reset();
  mly_type_def def = counter_def(1);
  def.run = crasher_run;
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    crash_after = 777;
    mly_runtime *rt = NULL;
    mly_runtime_new(&rt, NULL, NULL);
    mly_type_register(rt, &def, NULL);
    mly_journal_options o = {.dir = dir};
    if (mly_journal_open(rt, &o, NULL, 0) < 0) _exit(3);
    for (uint32_t i = 0; i < 20; i++) {
      counter c = {.idx = i, .target = 100};
      mly_spawn(rt, mly_type_find(rt, "counter"), &c, sizeof c, NULL);
    }
    mly_runtime_run(rt);
    _exit(4); /* never: it dies at step 777 */
  }
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  crash_after = -1;
  mly_runtime *rt = h_runtime();
  h_type(rt, &def);
  mly_journal_options o = {.dir = dir};
  char err[512];
  ck_assert_msg(mly_journal_open(rt, &o, err, sizeof err) == 0, "%s", err);
  mly_journal_stats st;
  mly_journal_stats_get(rt, &st);
  ck_assert_uint_eq(st.recovered, 20);
  h_run(rt);
  for (int i = 0; i < 20; i++) ck_assert_uint_eq(done_n[i], 100);
  /* at most the steps of the batches in flight ran twice: less than the
   * 777 before the crash, and never fewer than the 2000 needed */
  ck_assert_uint_ge(ticks + 777, 2000);
  ck_assert_uint_le(ticks, 2000);
  mly_runtime_close(rt);
}
END_TEST

/* D2: what a durable step sends is delivered only after its record is
 * synced: the receiver sees more fdatasyncs done than the sender did. */
static uint64_t sync_at_send, sync_at_receive;
#define D2_POINTS(X) X(d2, listen)
MLY_POINTS(d2, D2_POINTS);
static int d2_run(mly_machine *m, void *data) {
  mly_id *peer = data;
  mly_journal_stats st;
  MLY_BEGIN(m);
  if (*peer) { /* the sender */
    mly_journal_stats_get(mly_machine_runtime(m), &st);
    sync_at_send = st.syncs;
    mly_send(m, *peer, 5, NULL);
    MLY_EXIT(m, 0);
  }
  MLY_AWAIT_AT(m, d2_listen, 5, -1);
  mly_journal_stats_get(mly_machine_runtime(m), &st);
  sync_at_receive = st.syncs;
  MLY_END(m);
}

START_TEST(t_outbox_after_commit) {
  fresh_dir();
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){
      .name = "d2", .run = d2_run, MLY_TYPE_POINTS(d2),
      .data_size = sizeof(mly_id), .version = 1, .flags = MLY_TYPE_DURABLE});
  mly_journal_options o = {.dir = dir};
  ck_assert_int_eq(mly_journal_open(rt, &o, NULL, 0), 0);
  mly_id none = 0;
  mly_id rx = h_spawn(rt, t, &none, sizeof none);
  run_turns(rt, 4); /* the receiver waits */
  h_spawn(rt, t, &rx, sizeof rx);
  h_run(rt);
  ck_assert_uint_gt(sync_at_receive, sync_at_send);
  mly_runtime_close(rt);
}
END_TEST

/* Policies: `interval` syncs far less than once a batch, `never` not at
 * all; both lose nothing when the process closes cleanly. */
static void policy_case(mly_sync sync, uint32_t ms, uint64_t max_syncs) {
  fresh_dir();
  reset();
  mly_journal_options o = {.dir = dir, .sync = sync, .interval_ms = ms};
  mly_type *t;
  mly_runtime *rt = open_rt(&t, &o);
  spawn_counters(rt, t, 50, 40);
  run_turns(rt, 10);
  mly_journal_stats st;
  mly_journal_stats_get(rt, &st);
  ck_assert_uint_ge(st.batches, 3);
  ck_assert_uint_le(st.syncs, max_syncs);
  mly_runtime_close(rt);
  rt = open_rt(&t, NULL);
  mly_journal_stats_get(rt, &st);
  ck_assert_uint_eq(st.recovered, 50);
  h_run(rt);
  for (int i = 0; i < 50; i++) ck_assert_uint_eq(done_n[i], 40);
  ck_assert_uint_eq(ticks, 50 * 40);
  mly_runtime_close(rt);
}

START_TEST(t_policy_interval) { policy_case(MLY_SYNC_INTERVAL, 60000, 1); }
END_TEST
START_TEST(t_policy_never) { policy_case(MLY_SYNC_NEVER, 0, 0); }
END_TEST

/* Durable posts: from another thread; the callback says when the event
 * is durable, and it is there after a restart even if never read. */
typedef struct poster {
  mly_runtime *rt;
  mly_id to;
  int n;
} poster;
static int post_ok, post_err;
static void posted(mly_runtime *rt, int status, void *arg) {
  (void)rt;
  (void)arg;
  if (status == 0) post_ok++;
  else post_err = status;
}
static void post_thread(void *arg) {
  poster *p = arg;
  for (int i = 0; i < p->n; i++)
    ck_assert_int_eq(mly_post_durable(p->rt, p->to, 9, mly_value_int(i),
                                      posted, NULL), 0);
}
#define INBOX_POINTS(X) X(inbox, idle) X(inbox, reading)
MLY_POINTS(inbox, INBOX_POINTS);
static bool may_read;      /* false in the first run, true after */
static int64_t seen[64];
static int nseen;
static int inbox_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_WAIT_UNTIL_AT(m, inbox_idle, may_read); /* events queue meanwhile */
  while (nseen < 20) {
    MLY_AWAIT_AT(m, inbox_reading, 9, -1);
    mly_value_get_int(mly_current_event(m)->payload, &seen[nseen++]);
  }
  MLY_END(m);
}

START_TEST(t_durable_post) {
  fresh_dir();
  post_ok = post_err = 0;
  mly_journal_options o = {.dir = dir};
  mly_type_def def = {.name = "inbox", .run = inbox_run,
                      MLY_TYPE_POINTS(inbox), .data_size = 8, .version = 1,
                      .flags = MLY_TYPE_DURABLE};
  may_read = false;
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &def);
  ck_assert_int_eq(mly_journal_open(rt, &o, NULL, 0), 0);
  mly_id id = h_spawn(rt, t, NULL, 0);
  run_turns(rt, 3);
  poster p = {rt, id, 20};
  uv_thread_t th;
  ck_assert_int_eq(uv_thread_create(&th, post_thread, &p), 0);
  uv_thread_join(&th);
  for (int i = 0; i < 100 && post_ok < 20; i++) run_turns(rt, 1);
  ck_assert_int_eq(post_ok, 20);
  ck_assert_int_eq(post_err, 0);
  /* to something not durable: refused through the callback */
  mly_type *plain = h_type(rt, &(mly_type_def){.name = "plain",
                                               .run = inbox_run,
                                               MLY_TYPE_POINTS(inbox)});
  mly_id pid = h_spawn(rt, plain, NULL, 0);
  ck_assert_int_eq(mly_post_durable(rt, pid, 9, NULL, posted, NULL), 0);
  for (int i = 0; i < 100 && post_err == 0; i++) run_turns(rt, 1);
  ck_assert_int_eq(post_err, MLY_EINVAL);
  mly_runtime_close(rt);
  /* after a restart the condition holds: it reads all 20, in order */
  may_read = true;
  nseen = 0;
  rt = h_runtime();
  h_type(rt, &def);
  ck_assert_int_eq(mly_journal_open(rt, &o, NULL, 0), 0);
  mly_info info;
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_uint_eq(info.inbox, 20);
  h_run(rt);
  ck_assert_int_eq(nseen, 20);
  for (int i = 0; i < 20; i++) ck_assert_int_eq(seen[i], i);
  mly_runtime_close(rt);
}
END_TEST

/* Compaction that crashed before its SNAPEND: the half-written segment
 * is ignored and removed; what the old segments hold counts. */
START_TEST(t_compaction_crash_before_end) {
  fresh_dir();
  make_history(6, 100, 8);
  char keep[256];
  snprintf(keep, sizeof keep, "%s", dir);
  /* a compacted journal of the same workload elsewhere, to borrow a
   * snapshot segment from */
  fresh_dir();
  make_history(6, 100, 8);
  mly_type *t;
  mly_runtime *rt = open_rt(&t, NULL);
  ck_assert_int_eq(mly_journal_compact(rt), 0);
  mly_runtime_close(rt);
  char snap[512];
  last_segment(snap, sizeof snap);
  long size = file_size(snap);
  snprintf(dir, sizeof dir, "%s", keep);
  char old[512];
  last_segment(old, sizeof old);
  char torn[600]; /* the number the compaction gave it */
  snprintf(torn, sizeof torn, "%s/%s", dir, strrchr(snap, '/') + 1);
  char cmd[1400];
  /* everything but its last record (the SNAPEND): a compaction cut short */
  snprintf(cmd, sizeof cmd, "head -c %ld '%s' > '%s'", size - 12, snap, torn);
  ck_assert_int_eq(system(cmd), 0);
  reset();
  rt = open_rt(&t, NULL);
  mly_journal_stats st;
  mly_journal_stats_get(rt, &st);
  ck_assert_uint_eq(st.recovered, 6);
  ck_assert_uint_ge(st.torn_bytes, (uint64_t)(size - 12));
  ck_assert_int_ne(access(torn, F_OK), 0); /* removed */
  h_run(rt);
  for (int i = 0; i < 6; i++) ck_assert_uint_eq(done_n[i], 100);
  mly_runtime_close(rt);
}
END_TEST

/* Compaction that crashed after its snapshot was safe but before the old
 * segments went: they are leftovers, removed on open, nothing doubled. */
START_TEST(t_compaction_crash_before_unlink) {
  fresh_dir();
  make_history(6, 100, 8);
  char old[512], saved[600];
  last_segment(old, sizeof old);
  snprintf(saved, sizeof saved, "%s.saved", old);
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", old, saved);
  ck_assert_int_eq(system(cmd), 0);
  mly_type *t;
  mly_runtime *rt = open_rt(&t, NULL);
  ck_assert_int_eq(mly_journal_compact(rt), 0);
  mly_runtime_close(rt);
  snprintf(cmd, sizeof cmd, "mv '%s' '%s'", saved, old); /* it is back */
  ck_assert_int_eq(system(cmd), 0);
  ck_assert_int_eq(nsegments(), 2);
  reset();
  rt = open_rt(&t, NULL);
  ck_assert_int_eq(nsegments(), 1);
  mly_journal_stats st;
  mly_journal_stats_get(rt, &st);
  ck_assert_uint_eq(st.recovered, 6);
  h_run(rt);
  for (int i = 0; i < 6; i++) ck_assert_uint_eq(done_n[i], 100);
  mly_runtime_close(rt);
}
END_TEST

/* ---- the on-disk format (format 2): batches, proof, hostile files ---- */

static unsigned char *slurp(const char *path, long *size) {
  *size = file_size(path);
  unsigned char *p = malloc((size_t)*size + 1);
  ck_assert_ptr_nonnull(p);
  int fd = open(path, O_RDONLY);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(pread(fd, p, (size_t)*size, 0), *size);
  close(fd);
  return p;
}

static void spew(const char *path, const void *p, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, p, n), (ssize_t)n);
  close(fd);
}

typedef struct tframe {
  long off;
  uint32_t len, nrec;
} tframe;

/* The frames of a segment image, trusting their lengths. */
static int frames_of(const unsigned char *p, long size, tframe *out, int max) {
  int n = 0;
  for (long o = JR_SEG_HDR; o + JR_FRAME_HDR <= size && n < max;) {
    uint32_t len = jr_le32(p + o);
    if (o + JR_FRAME_HDR + (long)len > size) break;
    uint32_t nrec = 0;
    for (uint32_t r = 0; r + JR_HDR <= len; r += JR_HDR + jr_le32(p + o + JR_FRAME_HDR + r))
      nrec++;
    out[n++] = (tframe){o, len, nrec};
    o += JR_FRAME_HDR + len;
  }
  return n;
}

/* A fresh history of n counters: the newest segment's path, size and
 * frames (their number is returned). */
static int history_frames(uint32_t n, uint32_t turns, char *seg, size_t len,
                          long *size, tframe *f, int max) {
  fresh_dir();
  make_history(n, 100, turns);
  last_segment(seg, len);
  unsigned char *p = slurp(seg, size);
  int nf = frames_of(p, *size, f, max);
  free(p);
  return nf;
}

static int count_rec(const mly_record *r, void *arg) {
  (void)r;
  (*(uint64_t *)arg)++;
  return 0;
}

static uint64_t records_now(void) {
  uint64_t n = 0;
  char err[512];
  int rc = mly_journal_scan(dir, false, count_rec, &n, err, sizeof err);
  ck_assert_msg(rc == 0, "scan: %s", err);
  return n;
}

/* Opens dir as a runtime would; MLY_* and err. */
static int try_open(bool salvage, mly_journal_stats *st, char *err,
                    size_t errlen) {
  mly_runtime *rt = h_runtime();
  mly_type_def def = counter_def(1);
  h_type(rt, &def);
  mly_journal_options o = {.dir = dir, .salvage = salvage};
  int rc = mly_journal_open(rt, &o, err, errlen);
  if (rc == 0 && st) mly_journal_stats_get(rt, st);
  mly_runtime_close(rt);
  return rc;
}

static void zero_range(const char *path, long off, long n) {
  int fd = open(path, O_WRONLY);
  ck_assert_int_ge(fd, 0);
  static const unsigned char z[4096];
  for (long k = 0; k < n;) {
    long c = n - k < (long)sizeof z ? n - k : (long)sizeof z;
    ck_assert_int_eq(pwrite(fd, z, (size_t)c, off + k), c);
    k += c;
  }
  close(fd);
}

/* Zeroes n bytes at off, or at the first place after it (within
 * `within` bytes) where they are not all zero already: damage that
 * changes nothing would make a test pass or fail by chance (a CRC byte
 * is 0 once in 256 files, data is often zero). */
static void zero_some(const char *path, long off, long n, long within) {
  long size;
  unsigned char *p = slurp(path, &size);
  for (long at = off; at + n <= size && at < off + within; at++)
    for (long k = 0; k < n; k++)
      if (p[at + k] != 0) {
        free(p);
        zero_range(path, at, n);
        return;
      }
  free(p);
  ck_abort_msg("%s: no non-zero %ld bytes within %ld of %ld", path, n,
               within, off);
}

/* Rewrites a segment with one frame per record, record `skip` (0-based)
 * left out: every frame verifies and chains, only the sequence has a
 * hole. */
static void reframe_without(const char *path, int skip) {
  long size;
  unsigned char *p = slurp(path, &size);
  tframe f[4096];
  int nf = frames_of(p, size, f, 4096);
  unsigned char *out = malloc((size_t)size * 2 + 64);
  memcpy(out, p, JR_SEG_HDR);
  uint32_t salt = jr_le32(p + 8), chain = jr_le32(p + 28);
  size_t n = JR_SEG_HDR;
  int k = 0;
  for (int i = 0; i < nf; i++)
    for (uint32_t r = 0; r < f[i].len; k++) {
      const unsigned char *rec = p + f[i].off + JR_FRAME_HDR + r;
      uint32_t rl = JR_HDR + jr_le32(rec);
      r += rl;
      if (k == skip) continue;
      chain = jr_frame_header(out + n, salt, chain, n, rec, rl);
      memcpy(out + n + JR_FRAME_HDR, rec, rl);
      n += JR_FRAME_HDR + rl;
    }
  ck_assert_int_gt(k, skip + 1);
  spew(path, out, n);
  free(out);
  free(p);
}

/* Cut one whole record out of the middle: each batch still verifies and
 * chains, but the sequence has a hole. */
START_TEST(t_sequence_gap_refused) {
  fresh_dir();
  make_history(4, 100, 6);
  char seg[512];
  last_segment(seg, sizeof seg);
  reframe_without(seg, 4);
  char err[512] = "";
  ck_assert_int_eq(mly_journal_scan(dir, false, NULL, NULL, err, sizeof err),
                   MLY_EBADMSG);
  ck_assert_msg(strstr(err, "sequence gap: expected record 5, found 6"), "%s",
                err);
}
END_TEST

/* Issue 8: one flipped byte in the snapshot a compaction wrote was called
 * a torn tail, and the open deleted the segment and everything with it. */
START_TEST(t_snapshot_damage_refused) {
  fresh_dir();
  make_history(6, 100, 8);
  mly_type *t;
  mly_runtime *rt = open_rt(&t, NULL);
  ck_assert_int_eq(mly_journal_compact(rt), 0);
  mly_runtime_close(rt);
  ck_assert_int_eq(nsegments(), 1);
  char seg[512];
  last_segment(seg, sizeof seg);
  long size;
  unsigned char *p = slurp(seg, &size);
  tframe f[8];
  ck_assert_int_eq(frames_of(p, size, f, 8), 1); /* the snapshot alone */
  p[size / 2] ^= 0x01;
  spew(seg, p, (size_t)size);
  char err[512] = "";
  ck_assert_int_eq(try_open(false, NULL, err, sizeof err), MLY_EBADMSG);
  ck_assert_msg(strstr(err, "offset 32: batch checksum mismatch") &&
                strstr(err, "a snapshot is synced"), "%s", err);
  ck_assert_int_eq(try_open(false, NULL, err, sizeof err), MLY_EBADMSG);
  ck_assert_int_eq(file_size(seg), size); /* nothing cut, nothing removed */
  mly_journal_info in;
  ck_assert_int_eq(mly_journal_info_get(dir, &in, err, sizeof err), MLY_EBADMSG);
  free(p);
}
END_TEST

/* Issue 8: a power loss in the middle of the last batch, its blocks
 * persisted out of order (zeroes, then later bytes): nothing in it was
 * acknowledged, so it is cut, with or without --salvage, and none of its
 * records is kept behind the gap. */
START_TEST(t_unacknowledged_batch_cut_whatever_its_shape) {
  for (int shape = 0; shape < 3; shape++)
    for (int salvage = 0; salvage < 2; salvage++) {
      char seg[512];
      long size;
      tframe f[4096];
      int nf = history_frames(10, 10, seg, sizeof seg, &size, f, 4096);
      ck_assert_int_ge(nf, 2); /* batches: as the threadpool made them */
      tframe last = f[nf - 1];
      uint64_t before = records_now();
      if (shape == 0) /* its start never made it, the rest did */
        zero_range(seg, last.off, JR_FRAME_HDR + JR_HDR + 2);
      else if (shape == 1) /* a hole in its middle */
        zero_some(seg, last.off + JR_FRAME_HDR + last.len / 2, 3,
                  (long)last.len / 2 - 3);
      else /* only its header, zeroes where the payload was */
        zero_range(seg, last.off + JR_FRAME_HDR, last.len);
      mly_journal_stats st;
      char err[512] = "";
      int rc = try_open(salvage, &st, err, sizeof err);
      ck_assert_msg(rc == 0, "shape %d salvage %d: %s", shape, salvage, err);
      ck_assert_uint_eq(st.torn_bytes, JR_FRAME_HDR + last.len);
      ck_assert_uint_eq(st.salvaged, 0);
      ck_assert_uint_eq(st.recovered, 10);
      ck_assert_int_eq(file_size(seg), last.off);
      ck_assert_uint_eq(records_now(), before - last.nrec);
    }
}
END_TEST

/* Damage in a batch that a later batch proves durable is refused, with
 * file and offset; --salvage skips that batch and keeps the rest. */
START_TEST(t_acknowledged_batch_damage_refused) {
  char seg[512];
  long size;
  tframe f[4096];
  int nf = history_frames(10, 30, seg, sizeof seg, &size, f, 4096);
  ck_assert_int_ge(nf, 3);
  tframe mid = f[nf / 2];
  zero_range(seg, mid.off, JR_FRAME_HDR + JR_HDR + 2); /* as a torn write */
  char err[512] = "", want[64];
  ck_assert_int_eq(try_open(false, NULL, err, sizeof err), MLY_EBADMSG);
  snprintf(want, sizeof want, "offset %ld: ", mid.off);
  ck_assert_msg(strstr(err, want) && strstr(err, "seg-") &&
                strstr(err, "a later batch was written after this one was "
                            "durable"), "%s", err);
  ck_assert_int_eq(file_size(seg), size);
  mly_journal_stats st;
  ck_assert_int_eq(try_open(true, &st, err, sizeof err), 0);
  ck_assert_uint_ge(st.salvaged, 1);
  ck_assert_int_eq(try_open(false, NULL, err, sizeof err), 0); /* rewritten */
}
END_TEST

/* Under `never` no batch says anything was durable: damage anywhere in
 * what a run wrote is an unsynced tail, cut with all that follows it
 * (that policy's documented loss), never kept behind a gap. */
START_TEST(t_unsynced_batches_cut_from_the_damage) {
  fresh_dir();
  mly_journal_options o = {.dir = dir, .sync = MLY_SYNC_NEVER};
  history_with(&o, 10, 100, 30);
  char seg[512];
  last_segment(seg, sizeof seg);
  long size;
  unsigned char *p = slurp(seg, &size);
  tframe f[4096];
  int nf = frames_of(p, size, f, 4096);
  free(p);
  ck_assert_int_ge(nf, 3);
  tframe mid = f[nf / 2];
  zero_some(seg, mid.off + JR_FRAME_HDR + 1, 4, (long)mid.len - 5);
  unsigned char *damaged = slurp(seg, &size);
  for (int salvage = 0; salvage < 2; salvage++) {
    spew(seg, damaged, (size_t)size);
    mly_journal_stats st;
    char err[512] = "";
    ck_assert_int_eq(try_open(salvage, &st, err, sizeof err), 0);
    ck_assert_uint_eq(st.torn_bytes, (uint64_t)(size - mid.off));
    ck_assert_uint_eq(st.salvaged, 0);
    ck_assert_int_eq(file_size(seg), mid.off);
  }
  free(damaged);
}
END_TEST

/* A missing segment is refused: in the middle (numbers jump and the
 * chain breaks) and at the start (the journal's first one). */
START_TEST(t_missing_segment_refused) {
  for (int which = 0; which < 2; which++) {
    fresh_dir();
    mly_journal_options o = {.dir = dir, .segment_bytes = 1024,
                             .compact_min_bytes = UINT64_MAX / 2};
    history_with(&o, 5, 100, 30);
    ck_assert_int_ge(nsegments(), 3);
    char path[600];
    snprintf(path, sizeof path, "%s/seg-%020d.mj", dir, which == 0 ? 2 : 1);
    ck_assert_int_eq(unlink(path), 0);
    char err[512] = "";
    ck_assert_int_eq(try_open(false, NULL, err, sizeof err), MLY_EBADMSG);
    ck_assert_msg(strstr(err, which == 0 ? "segments are missing"
                                          : "first segments are missing"),
                  "%s", err);
  }
}
END_TEST

/* Bytes from an earlier life never verify: a batch copied from another
 * journal (another salt), or from earlier in the same file (the chain),
 * at the tail is cut, never replayed. */
START_TEST(t_foreign_batch_never_verifies) {
  fresh_dir();
  make_history(3, 100, 6);
  char other[600];
  last_segment(other, sizeof other);
  long osize;
  unsigned char *op = slurp(other, &osize);
  for (int same = 0; same < 2; same++) {
    char seg[512];
    long size;
    tframe f[4096];
    int nf = history_frames(3, 6, seg, sizeof seg, &size, f, 4096);
    unsigned char *p = slurp(seg, &size);
    const unsigned char *src = same ? p : op;
    if (!same) nf = frames_of(op, osize, f, 4096);
    tframe x = f[nf / 2];
    uint64_t before = records_now();
    FILE *fp = fopen(seg, "ab");
    fwrite(src + x.off, 1, JR_FRAME_HDR + x.len, fp);
    fclose(fp);
    mly_journal_info in;
    char err[512] = "";
    ck_assert_int_eq(mly_journal_info_get(dir, &in, err, sizeof err), 0);
    ck_assert_uint_eq(in.torn_bytes, JR_FRAME_HDR + x.len);
    ck_assert_int_eq(in.tail_suspect, !same); /* another salt: not a header */
    mly_journal_stats st;
    ck_assert_int_eq(try_open(false, &st, err, sizeof err), 0);
    ck_assert_uint_eq(st.torn_bytes, JR_FRAME_HDR + x.len);
    ck_assert_uint_eq(records_now(), before);
    free(p);
  }
  free(op);
}
END_TEST

/* Other formats are refused by name, old and new. */
START_TEST(t_format_versions_refused) {
  fresh_dir();
  char path[600], err[512] = "";
  snprintf(path, sizeof path, "%s/seg-%020d.mj", dir, 1);
  unsigned char h[JR_SEG_HDR + 64] = {0};
  jr_seg_header(h, 7, 0, 1, 0);
  h[4] = 3; /* a format this mealy does not know */
  uint32_t crc = jr_crc32c(h, 28);
  memcpy(h + 28, &crc, 4);
  spew(path, h, sizeof h);
  ck_assert_int_eq(try_open(false, NULL, err, sizeof err), MLY_EBADMSG);
  ck_assert_msg(strstr(err, "offset 0: journal format 3"), "%s", err);
  /* format 1: a file that begins with a record */
  jbuf b = {0};
  size_t at = jb_begin(&b, 1, JR_CREATE, 1);
  jb_nil(&b);
  jb_end(&b, at);
  spew(path, b.p, b.n);
  jb_free(&b);
  ck_assert_int_eq(try_open(false, NULL, err, sizeof err), MLY_EBADMSG);
  ck_assert_msg(strstr(err, "journal format 1"), "%s", err);
}
END_TEST

/* Issue 10: a FIFO, a link or a directory in place of a segment is
 * refused without being opened for reading (a FIFO blocked forever). */
START_TEST(t_not_a_regular_segment_refused) {
  const char *what[] = {"a FIFO", "a symbolic link", "a directory"};
  for (int i = 0; i < 3; i++) {
    fresh_dir();
    char path[600], err[512] = "";
    snprintf(path, sizeof path, "%s/seg-%020d.mj", dir, 1);
    if (i == 0) ck_assert_int_eq(mkfifo(path, 0600), 0);
    if (i == 1) ck_assert_int_eq(symlink("/etc/passwd", path), 0);
    if (i == 2) ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert_int_eq(try_open(false, NULL, err, sizeof err), MLY_EBADMSG);
    ck_assert_msg(strstr(err, what[i]) && strstr(err, "not a segment file"),
                  "%s", err);
    mly_journal_info in;
    ck_assert_int_eq(mly_journal_info_get(dir, &in, err, sizeof err),
                     MLY_EBADMSG);
  }
}
END_TEST

/* Issue 10: reading is linear in the file's size whatever the bytes.
 * The verifier counts the bytes it looks at; the bound is on that count,
 * never on time. */
static uint64_t examined(int *rc) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  ck_assert_int_ge(fd, 0);
  jread jr;
  char err[512] = "";
  *rc = jr_read(fd, dir, false, false, &jr, NULL, NULL, err, sizeof err);
  uint64_t n = jr.examined;
  jr_read_free(&jr);
  close(fd);
  return n;
}

START_TEST(t_hostile_bytes_linear_work) {
  const size_t size = 4u << 20;
  unsigned char *p = malloc(JR_SEG_HDR + size);
  char path[600];
  int rc;
  for (int kind = 0; kind < 3; kind++) {
    fresh_dir();
    snprintf(path, sizeof path, "%s/seg-%020d.mj", dir, 1);
    jr_seg_header(p, 0x5eed, 0, 1, 0);
    if (kind < 2) { /* the unit that made the old reader quadratic */
      static const unsigned char unit0[] = {0, 0, 0, 0, 0, 0, 0, 0, 0x92, 1, 1};
      unsigned char unit[sizeof unit0];
      memcpy(unit, unit0, sizeof unit);
      uint32_t half = (uint32_t)(size / 2);
      memcpy(unit, &half, 4);
      for (size_t o = 0; o < size; o++) p[JR_SEG_HDR + o] = unit[o % sizeof unit];
    } else { /* batch headers that verify, each claiming half the file */
      unsigned char *zero = calloc(1, size / 2);
      unsigned char fh[JR_FRAME_HDR];
      jr_frame_header(fh, 0x5eed, 0, JR_SEG_HDR, zero, (uint32_t)(size / 2));
      free(zero);
      for (size_t o = 0; o + sizeof fh <= size; o += sizeof fh)
        memcpy(p + JR_SEG_HDR + o, fh, sizeof fh);
    }
    /* kind 0: no segment header (format 1 bytes), 1 and 2: one */
    size_t skip = kind == 0 ? JR_SEG_HDR : 0;
    spew(path, p + skip, JR_SEG_HDR + size - skip);
    uint64_t n = examined(&rc);
    fprintf(stderr, "hostile kind %d: %" PRIu64 " bytes examined for a file "
            "of %zu\n", kind, n, JR_SEG_HDR + size - skip);
    uint64_t bound = kind == 0 ? 2 * JR_SEG_HDR + (1u << 20) : 8 * (uint64_t)size + (4u << 20);
    ck_assert_msg(n <= bound, "kind %d: %" PRIu64 " bytes examined for a "
                  "file of %zu", kind, n, size);
    ck_assert_int_eq(rc, kind == 1 ? 0 : MLY_EBADMSG); /* 1: a torn tail */
  }
  free(p);
}
END_TEST

/* Issue 10: a 2 GiB sparse segment after a header reads without reading
 * 2 GiB into memory: the hole is skipped, memory stays flat, and it is a
 * suspect tail, not "ok". */
START_TEST(t_sparse_segment_bounded) {
  fresh_dir();
  char path[600];
  snprintf(path, sizeof path, "%s/seg-%020d.mj", dir, 1);
  unsigned char h[JR_SEG_HDR];
  jr_seg_header(h, 9, 0, 1, 0);
  spew(path, h, sizeof h);
  ck_assert_int_eq(truncate(path, 2L << 30), 0);
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  int rc;
  uint64_t n = examined(&rc);
  getrusage(RUSAGE_SELF, &ru1);
  fprintf(stderr, "2 GiB sparse: %" PRIu64 " bytes examined, max RSS grew "
          "%ld KiB\n", n, ru1.ru_maxrss - ru0.ru_maxrss);
  ck_assert_int_eq(rc, 0);
  ck_assert_uint_le(n, 3 * (2ull << 30)); /* linear, whatever the file system */
  ck_assert_int_le(ru1.ru_maxrss - ru0.ru_maxrss, 64 * 1024); /* KiB */
  mly_journal_info in;
  char err[512];
  ck_assert_int_eq(mly_journal_info_get(dir, &in, err, sizeof err), 0);
  ck_assert_uint_eq(in.records, 0);
  ck_assert_uint_eq(in.torn_bytes, (2ull << 30) - JR_SEG_HDR);
  ck_assert(in.tail_suspect);
}
END_TEST

/* The invariant, on random damage: in a journal written under `always`,
 * damage in any batch but the last is refused, damage in the last one is
 * cut to its start, and what remains reads again. */
START_TEST(t_random_damage_model) {
  uint64_t seed = 0x8badf00d;
  for (int round = 0; round < 24; round++) {
    char seg[512];
    long size;
    tframe f[4096];
    int nf = history_frames(4, 5, seg, sizeof seg, &size, f, 4096);
    unsigned char *p = slurp(seg, &size);
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    int i = (int)((seed >> 33) % (uint64_t)nf);
    bool last = i == nf - 1 || round % 3 == 0;
    if (last) i = nf - 1;
    tframe x = f[i];
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    long at = x.off + (long)((seed >> 33) % (JR_FRAME_HDR + x.len));
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    long n = 1 + (long)((seed >> 33) % 16);
    if (at + n > x.off + JR_FRAME_HDR + x.len) n = x.off + JR_FRAME_HDR + x.len - at;
    for (long k = 0; k < n; k++) p[at + k] ^= (unsigned char)(1 + (seed >> (k % 48)) % 255);
    spew(seg, p, (size_t)size);
    free(p);
    mly_journal_stats st;
    char err[512] = "";
    int rc = try_open(false, &st, err, sizeof err);
    if (last) {
      ck_assert_msg(rc == 0, "round %d: %s", round, err);
      ck_assert_uint_eq(st.torn_bytes, (uint64_t)(size - x.off));
      ck_assert_int_eq(file_size(seg), x.off);
      ck_assert_int_eq(try_open(false, NULL, err, sizeof err), 0);
    } else {
      ck_assert_msg(rc == MLY_EBADMSG, "round %d: batch %d of %d: %s", round,
                    i, nf, err);
      ck_assert_int_eq(file_size(seg), size);
    }
  }
}
END_TEST

START_TEST(t_sync_parse) {
  mly_sync s;
  uint32_t ms;
  ck_assert_int_eq(mly_sync_parse("always", &s, &ms), 0);
  ck_assert_int_eq(s, MLY_SYNC_ALWAYS);
  ck_assert_int_eq(mly_sync_parse("never", &s, &ms), 0);
  ck_assert_int_eq(s, MLY_SYNC_NEVER);
  ck_assert_int_eq(mly_sync_parse("interval:250ms", &s, &ms), 0);
  ck_assert_int_eq(s, MLY_SYNC_INTERVAL);
  ck_assert_uint_eq(ms, 250);
  ck_assert_int_eq(mly_sync_parse("interval:2s", &s, &ms), 0);
  ck_assert_uint_eq(ms, 2000);
  ck_assert_int_eq(mly_sync_parse("sometimes", &s, &ms), MLY_EINVAL);
  ck_assert_int_eq(mly_sync_parse("interval:0", &s, &ms), MLY_ERANGE);
  ck_assert_int_eq(mly_sync_parse("interval:x", &s, &ms), MLY_EINVAL);
}
END_TEST

START_TEST(t_open_rules) {
  fresh_dir();
  mly_type *t;
  mly_runtime *rt = h_runtime();
  mly_type_def def = counter_def(1);
  t = h_type(rt, &def);
  counter c = {.target = 1};
  h_spawn(rt, t, &c, sizeof c); /* not durable yet: no journal */
  mly_journal_options o = {.dir = dir};
  char err[256];
  ck_assert_int_eq(mly_journal_open(rt, &o, err, sizeof err), MLY_EBUSY);
  ck_assert_ptr_nonnull(strstr(err, "before spawning"));
  mly_runtime_close(rt);
}
END_TEST

/* A journal that holds no record says so (total_bytes 0), even when a
 * run was killed after creating its first segment: the crash workload
 * tells a first start by it. */
START_TEST(t_empty_journal_has_no_bytes) {
  fresh_dir();
  for (int i = 0; i < 2; i++) {
    mly_type *t;
    mly_runtime *rt = open_rt(&t, NULL);
    mly_journal_stats st;
    ck_assert_int_eq(mly_journal_stats_get(rt, &st), 0);
    ck_assert_uint_eq(st.total_bytes, 0);
    mly_runtime_close(rt);
  }
  ck_assert_int_eq(nsegments(), 1); /* its header alone */
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("journal");
  TCase *c = tcase_create("codec");
  tcase_add_test(c, t_crc32c);
  tcase_add_test(c, t_codec_roundtrip);
  tcase_add_test(c, t_sync_parse);
  suite_add_tcase(s, c);
  TCase *r = tcase_create("recovery");
  tcase_set_timeout(r, 120);
  tcase_add_test(r, t_close_and_continue);
  tcase_add_test(r, t_group_commit_counts);
  tcase_add_test(r, t_timers_overdue_in_order);
  tcase_add_test(r, t_request_reply_across_restart);
  tcase_add_test(r, t_open_rules);
  tcase_add_test(r, t_sigkill_mid_step);
  tcase_add_test(r, t_outbox_after_commit);
  tcase_add_test(r, t_policy_interval);
  tcase_add_test(r, t_policy_never);
  tcase_add_test(r, t_durable_post);
  suite_add_tcase(s, r);
  TCase *d = tcase_create("damage");
  tcase_set_timeout(d, 120);
  tcase_add_test(d, t_torn_tail_is_cut);
  tcase_add_test(d, t_bad_crc_in_the_middle_refused_then_salvaged);
  tcase_add_test(d, t_directory_lock);
  tcase_add_test(d, t_versions_and_points);
  tcase_add_test(d, t_compaction_keeps_the_live_set);
  tcase_add_test(d, t_compaction_automatic);
  tcase_add_test(d, t_compaction_crash_before_end);
  tcase_add_test(d, t_compaction_crash_before_unlink);
  tcase_add_test(d, t_fault_fdatasync_eio);
  tcase_add_test(d, t_fault_write_enospc);
  tcase_add_test(d, t_fault_short_write);
  suite_add_tcase(s, d);
  TCase *f = tcase_create("format");
  tcase_set_timeout(f, 300);
  tcase_add_test(f, t_sequence_gap_refused);
  tcase_add_test(f, t_snapshot_damage_refused);
  tcase_add_test(f, t_unacknowledged_batch_cut_whatever_its_shape);
  tcase_add_test(f, t_acknowledged_batch_damage_refused);
  tcase_add_test(f, t_unsynced_batches_cut_from_the_damage);
  tcase_add_test(f, t_missing_segment_refused);
  tcase_add_test(f, t_foreign_batch_never_verifies);
  tcase_add_test(f, t_format_versions_refused);
  tcase_add_test(f, t_not_a_regular_segment_refused);
  tcase_add_test(f, t_hostile_bytes_linear_work);
  tcase_add_test(f, t_sparse_segment_bounded);
  tcase_add_test(f, t_random_damage_model);
  tcase_add_test(f, t_empty_journal_has_no_bytes);
  suite_add_tcase(s, f);
  return s;
}

H_MAIN(suite)
