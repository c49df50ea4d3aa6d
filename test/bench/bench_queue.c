/*
 * bench_queue.c - durable task queues, beside beanstalkd.
 *
 *   bench_queue [DIR] [N]   (DIR default ./bench-queue-state, on a real
 *                            disk: a tmpfs would make fdatasync free;
 *                            N tasks, default 200000)
 *
 *  1. durable tasks per second: N tasks of 100-byte payloads over 8
 *     queues, each enqueued, run and completed, under the `always` sync
 *     policy (every batch fdatasync'd before anything goes on); with
 *     the CPU time, journal bytes and records per task (compaction is
 *     off in this run: it would start the byte count again);
 *  2. beanstalkd -f 0 (fsync every write) started here on 127.0.0.1 with
 *     its binlog in DIR, the same N jobs put, reserved and deleted over
 *     its text protocol by one client pipelining 1,000 commands at a
 *     time (at most 20,000 jobs: it fsyncs each command), in the same run (skipped, and said so, when beanstalkd is
 *     not installed: `apt-get install beanstalkd`);
 *  3. rate-limit accuracy: one queue at 1,000 tasks/s (bucket 10) for
 *     10 s, tasks started in each whole second, min and max;
 *  4. enqueue latency to a durable acknowledgement (on_added), one task
 *     at a time under `always`: p50 and p99.
 * Lines: BENCH <name> <value> <unit>.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mealy.h"
#include "../store_param.h"

static double now_s(void) { return (double)uv_hrtime() / 1e9; }

static double cpu_s(void) { /* this process, user + system */
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static char dir[4096];

static void wipe(const char *d) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
  if (system(cmd) != 0) {
    fprintf(stderr, "cannot remove %s\n", d);
    exit(1);
  }
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_queue: %s: %s\n", what, mly_strerror(rc));
  exit(1);
}

/* ---- 1. durable tasks/s ---- */

static uint64_t done_count;
static void count_fn(mly_task *t, void *arg) {
  (void)arg;
  done_count++;
  mly_task_done(t, MLY_TASK_OK, NULL);
}

static mly_runtime *open_rt(const char *sub, mly_sync sync,
                            bool no_compaction) {
  mly_runtime *rt;
  int rc = mly_runtime_new(&rt, NULL, NULL);
  if (rc < 0) die("runtime", rc);
  if ((rc = mly_queues_open(rt)) < 0) die("queues", rc);
  if (sub) {
    char d[4200], err[256];
    snprintf(d, sizeof d, "%s/%s", dir, sub);
    mly_journal_options jo = {.dir = d, .sync = sync};
    /* compaction starts the byte count again */
    if (no_compaction) jo.compact_min_bytes = 1ULL << 50;
    if ((rc = h_durable_open(rt, &jo, err, sizeof err)) < 0) {
      fprintf(stderr, "bench_queue: %s\n", err);
      exit(1);
    }
  }
  return rt;
}

static void run_until(mly_runtime *rt, uint64_t *counter, uint64_t n) {
  while (*counter < n) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
}

static void tick(uv_timer_t *t) { *(bool *)t->data = true; }

/* The last batches are still being written when the last task ran:
 * wait (100 ms turns) until the byte count stops moving. */
static void settle_journal(mly_runtime *rt, mly_journal_stats *js) {
  uv_timer_t t;
  bool fired;
  uv_timer_init(mly_runtime_loop(rt), &t);
  t.data = &fired;
  mly_journal_stats_get(rt, js);
  for (;;) {
    uint64_t before = js->bytes;
    fired = false;
    uv_timer_start(&t, tick, 100, 0);
    while (!fired) uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
    mly_journal_stats_get(rt, js);
    if (js->bytes == before) break;
  }
  uv_close((uv_handle_t *)&t, NULL);
}

static double bench_mealy(uint64_t n) {
  mly_runtime *rt = open_rt("tasks", MLY_SYNC_ALWAYS, true);
  int rc = mly_defer_register(rt, "count", count_fn, NULL, 0);
  if (rc < 0) die("register", rc);
  char qn[8][16];
  for (int i = 0; i < 8; i++) {
    snprintf(qn[i], sizeof qn[i], "q%d", i);
    mly_queue_def d = {.name = qn[i], .retry = MLY_RETRY_UNSET};
    if ((rc = mly_queue_declare(rt, &d, NULL, 0)) < 0) die("declare", rc);
  }
  char body[100];
  memset(body, 'x', sizeof body);
  done_count = 0;
  double t0 = now_s(), c0 = cpu_s();
  /* enqueue in slices of 10,000 between loop turns, as a busy producer
   * on the loop would: each slice shares group commits */
  uint64_t added = 0;
  while (done_count < n) {
    for (int k = 0; k < 10000 && added < n; k++, added++) {
      mly_task_opts o = {.queue = qn[added % 8]};
      if ((rc = mly_defer(rt, "count", mly_value_bin(body, sizeof body), &o)) < 0)
        die("defer", rc);
    }
    uv_run(mly_runtime_loop(rt), added < n ? UV_RUN_NOWAIT : UV_RUN_ONCE);
  }
  double dt = now_s() - t0, cpu = cpu_s() - c0;
  mly_journal_stats js;
  settle_journal(rt, &js);
  printf("BENCH queue_durable_tasks_per_s %.0f tasks/s\n", (double)n / dt);
  printf("BENCH queue_durable_syncs %llu count\n", (unsigned long long)js.syncs);
  printf("BENCH queue_durable_cpu_per_task %.2f us\n", cpu * 1e6 / (double)n);
  printf("BENCH queue_durable_bytes_per_task %.0f bytes\n",
         (double)js.bytes / (double)n);
  printf("BENCH queue_durable_records_per_task %.2f records\n",
         (double)js.records / (double)n);
  fflush(stdout);
  mly_runtime_close(rt);
  return (double)n / dt;
}

/* ---- 2. beanstalkd ---- */

static int bs_fd;
static char bs_buf[1 << 20];
static size_t bs_len;

static void bs_send(const char *p, size_t len) {
  while (len > 0) {
    ssize_t w = write(bs_fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("beanstalkd write", -errno);
    p += w;
    len -= (size_t)w;
  }
}

/* One reply line (and, after RESERVED, its body): consumed from bs_buf. */
static void bs_line(char *line, size_t cap) {
  for (;;) {
    char *nl = memchr(bs_buf, '\n', bs_len);
    if (nl) {
      size_t l = (size_t)(nl - bs_buf) + 1;
      unsigned id, bytes;
      size_t need = l;
      if (sscanf(bs_buf, "RESERVED %u %u", &id, &bytes) == 2)
        need = l + bytes + 2;
      if (bs_len >= need) {
        size_t c = l < cap ? l : cap - 1;
        memcpy(line, bs_buf, c);
        line[c] = '\0';
        memmove(bs_buf, bs_buf + need, bs_len - need);
        bs_len -= need;
        return;
      }
    }
    ssize_t r = read(bs_fd, bs_buf + bs_len, sizeof bs_buf - bs_len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die("beanstalkd read", r < 0 ? -errno : MLY_EIO);
    bs_len += (size_t)r;
  }
}

static double bench_beanstalkd(uint64_t n) {
  if (system("command -v beanstalkd >/dev/null 2>&1") != 0) {
    printf("# beanstalkd not installed: skipped (apt-get install beanstalkd)\n");
    return 0;
  }
  char bdir[4200];
  snprintf(bdir, sizeof bdir, "%s/beanstalkd", dir);
  wipe(bdir);
  if (mkdir(bdir, 0700) < 0) die("mkdir", -errno);
  int port = 20000 + getpid() % 20000;
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  pid_t pid = fork();
  if (pid == 0) {
    execlp("beanstalkd", "beanstalkd", "-l", "127.0.0.1", "-p", ps, "-f", "0",
           "-b", bdir, (char *)NULL);
    _exit(127);
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  bs_fd = -1;
  for (int i = 0; i < 500 && bs_fd < 0; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) bs_fd = fd;
    else {
      close(fd);
      usleep(10000);
    }
  }
  if (bs_fd < 0) die("beanstalkd connect", MLY_ETIMEDOUT);
  int one = 1;
  setsockopt(bs_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char body[100];
  memset(body, 'x', sizeof body);
  char *cmd = malloc(1000 * 160), line[256];
  uint64_t ids[1000];
  double t0 = now_s();
  for (uint64_t done = 0; done < n;) {
    size_t k = n - done < 1000 ? n - done : 1000, len = 0;
    for (size_t i = 0; i < k; i++) {
      len += (size_t)sprintf(cmd + len, "put 0 0 60 100\r\n");
      memcpy(cmd + len, body, 100);
      len += 100;
      memcpy(cmd + len, "\r\n", 2);
      len += 2;
    }
    bs_send(cmd, len);
    for (size_t i = 0; i < k; i++) bs_line(line, sizeof line);
    len = 0;
    for (size_t i = 0; i < k; i++)
      len += (size_t)sprintf(cmd + len, "reserve-with-timeout 0\r\n");
    bs_send(cmd, len);
    for (size_t i = 0; i < k; i++) {
      unsigned id = 0, b;
      bs_line(line, sizeof line);
      if (sscanf(line, "RESERVED %u %u", &id, &b) != 2) die(line, MLY_EIO);
      ids[i] = id;
    }
    len = 0;
    for (size_t i = 0; i < k; i++)
      len += (size_t)sprintf(cmd + len, "delete %llu\r\n",
                             (unsigned long long)ids[i]);
    bs_send(cmd, len);
    for (size_t i = 0; i < k; i++) {
      bs_line(line, sizeof line);
      if (strncmp(line, "DELETED", 7) != 0) die(line, MLY_EIO);
    }
    done += k;
  }
  double dt = now_s() - t0;
  free(cmd);
  close(bs_fd);
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  wipe(bdir);
  printf("BENCH beanstalkd_f0_tasks_per_s %.0f tasks/s\n", (double)n / dt);
  fflush(stdout);
  return (double)n / dt;
}

/* ---- 3. rate-limit accuracy ---- */

static uint64_t per_sec[16];
static double rate_t0;
static uint64_t rate_runs;
static void rate_fn(mly_task *t, void *arg) {
  (void)arg;
  int s = (int)(now_s() - rate_t0);
  if (s >= 0 && s < 16) per_sec[s]++;
  rate_runs++;
  mly_task_done(t, MLY_TASK_OK, NULL);
}

static void bench_rate(void) {
  mly_runtime *rt = open_rt("rate", MLY_SYNC_ALWAYS, false);
  mly_defer_register(rt, "rate", rate_fn, NULL, 0);
  mly_queue_def d = {.name = "r", .rate = 1000, .bucket_size = 10,
                     .retry = MLY_RETRY_UNSET};
  int rc = mly_queue_declare(rt, &d, NULL, 0);
  if (rc < 0) die("declare", rc);
  uint64_t n = 10000;
  for (uint64_t i = 0; i < n; i++) {
    mly_task_opts o = {.queue = "r"};
    if ((rc = mly_defer(rt, "rate", NULL, &o)) < 0) die("defer", rc);
  }
  rate_t0 = now_s();
  run_until(rt, &rate_runs, n);
  uint64_t mn = UINT64_MAX, mx = 0;
  for (int s = 0; s < 10; s++) {
    if (per_sec[s] < mn) mn = per_sec[s];
    if (per_sec[s] > mx) mx = per_sec[s];
  }
  printf("BENCH queue_rate_1000_per_s_min %llu tasks/s\n", (unsigned long long)mn);
  printf("BENCH queue_rate_1000_per_s_max %llu tasks/s\n", (unsigned long long)mx);
  fflush(stdout);
  mly_runtime_close(rt);
}

/* ---- 4. enqueue latency ---- */

static double lat_t0;
static double lats[4000];
static uint64_t nlat;
static void added_cb(mly_runtime *rt, int status, mly_id id, void *arg) {
  (void)rt, (void)id, (void)arg;
  if (status < 0) die("on_added", status);
  lats[nlat++] = now_s() - lat_t0;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void noop_fn(mly_task *t, void *arg) {
  (void)arg;
  mly_task_done(t, MLY_TASK_OK, NULL);
}

static void bench_latency(void) {
  mly_runtime *rt = open_rt("latency", MLY_SYNC_ALWAYS, false);
  mly_defer_register(rt, "noop", noop_fn, NULL, 0);
  char body[100];
  memset(body, 'y', sizeof body);
  uint64_t n = 2000;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t before = nlat;
    mly_task_opts o = {.on_added = added_cb};
    lat_t0 = now_s();
    int rc = mly_defer(rt, "noop", mly_value_bin(body, sizeof body), &o);
    if (rc < 0) die("defer", rc);
    run_until(rt, &nlat, before + 1);
  }
  qsort(lats, n, sizeof lats[0], cmp_d);
  printf("BENCH queue_enqueue_ack_p50 %.1f us\n", lats[n / 2] * 1e6);
  printf("BENCH queue_enqueue_ack_p99 %.1f us\n", lats[n * 99 / 100] * 1e6);
  fflush(stdout);
  mly_runtime_close(rt);
}

int main(int argc, char **argv) {
  snprintf(dir, sizeof dir, "%s", argc > 1 ? argv[1] : "./bench-queue-state");
  uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 200000;
  signal(SIGPIPE, SIG_IGN);
  wipe(dir);
  if (mkdir(dir, 0700) < 0) die("mkdir", -errno);
  double m = bench_mealy(n);
  /* beanstalkd fsyncs every command: fewer jobs keep the run short */
  if (getenv("BENCH_QUEUE_ONLY_TASKS")) return 0;
  double b = bench_beanstalkd(n < 20000 ? n : 20000);
  if (b > 0) printf("BENCH queue_vs_beanstalkd %.1f x\n", m / b);
  bench_rate();
  bench_latency();
  wipe(dir);
  return 0;
}
