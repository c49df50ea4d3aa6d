/*
 * crash_harness.c - kill a durable workload at random moments, restart
 * it, and check that nothing committed was lost or applied twice.
 *
 *   crash_harness WORKLOAD [ROUNDS [SEED]]     (ROUNDS also from CRASH_ROUNDS)
 *
 * Each round starts the workload on the same state directory, reads what
 * it reports on fd 3 (see crash_workload.c: each report names a state
 * that is committed), and SIGKILLs it a random 0-40 ms after its store
 * is open ("started"), or, one round in four, after its start (a kill
 * inside the open and its recovery).  For every
 * machine, the harness keeps the highest state it was told about; after a
 * restart the machine must report that state or the one after it (its
 * last step may have committed after its report), never less (lost) and
 * never more (applied twice), and within a run every step adds exactly
 * one.  A counter's hash chain must match its count.  At the end the
 * workload runs to completion and every machine must finish exactly at
 * its target.  Any failure prints the seed that reproduces it.
 *
 * The store is the workload's (MLY_TEST_STORE, test/store_param.h: the
 * journal, or PostgreSQL through test/pg/with_cluster.sh), so the harness
 * knows no store: each generation starts in a new state directory (a new
 * database on PostgreSQL), and a kill is timed from the open because an
 * open on PostgreSQL waits for the killed process's lease.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crash_util.h"

#define COUNTERS 16
#define PAIRS 4
#define TARGET 600

static uint64_t hashes[TARGET + 1];
static int64_t best[3][COUNTERS]; /* c, p, q: highest state reported */
static int64_t last_in_run[3][COUNTERS];
static int failures;
static unsigned long long seed;
static char dir[64]; /* this generation's state directory */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FAIL (seed %llu): ", seed);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  if (++failures > 20) exit(1);
}

static int kind_of(char k) { return k == 'c' ? 0 : k == 'p' ? 1 : k == 'q' ? 2 : -1; }

static int done_seen, all_done, started;

static void line(const char *l, int round) {
  char k;
  unsigned idx, n;
  unsigned long long h = 0;
  if (strncmp(l, "BAD", 3) == 0) {
    fail("round %d: the workload says: %s", round, l);
    return;
  }
  if (strncmp(l, "started", 7) == 0) {
    started = 1;
    return;
  }
  if (strcmp(l, "all done") == 0) {
    all_done = 1;
    return;
  }
  bool done = strncmp(l, "done ", 5) == 0;
  const char *p = done ? l + 5 : l;
  int got = sscanf(p, "%c %u %u %llu", &k, &idx, &n, &h);
  int kind = kind_of(k);
  if (got < 3 || kind < 0 || idx >= (kind ? PAIRS : COUNTERS) || n > TARGET) {
    fail("round %d: a line that makes no sense: '%s'", round, l);
    return;
  }
  if (kind == 0 && h != hashes[n])
    fail("round %d: counter %u at %u has hash %llu, not %llu (its data is "
         "not what its steps made)", round, idx, n, h,
         (unsigned long long)hashes[n]);
  int64_t *lr = &last_in_run[kind][idx], *b = &best[kind][idx];
  if (*lr >= 0) { /* within a run: one step at a time */
    if (n != (unsigned)*lr + 1 && !(done && n == (unsigned)*lr + 1))
      fail("round %d: %c%u went from %lld to %u within one run", round, k, idx,
           (long long)*lr, n);
  } else { /* the first report after a restart */
    if ((int64_t)n < *b)
      fail("round %d: %c%u came back at %u, but %lld was committed (lost)",
           round, k, idx, n, (long long)*b);
    if ((int64_t)n > *b + 1)
      fail("round %d: %c%u came back at %u, past %lld + 1 (a step applied "
           "twice)", round, k, idx, n, (long long)*b);
  }
  *lr = n;
  if ((int64_t)n > *b) *b = n;
  if (done) {
    done_seen++;
    if (n != TARGET) fail("%c%u finished at %u, not %d", k, idx, n, TARGET);
  }
}

/* Runs the workload; kill_ms < 0: until it exits, else killed kill_ms
 * after it said "started" (from_start: after its start).  Returns its
 * status. */
static int run(const char *workload, const char *mode, int kill_ms,
               bool from_start, int round) {
  int fds[2];
  if (pipe(fds) < 0) {
    perror("pipe");
    exit(1);
  }
  pid_t pid = fork();
  if (pid == 0) {
    if (fds[0] != 3) close(fds[0]); /* dup2 below replaces it otherwise */
    dup2(fds[1], 3);
    if (fds[1] != 3) close(fds[1]);
    execl(workload, workload, dir, mode, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < COUNTERS; i++) last_in_run[k][i] = -1;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  char buf[1 << 16];
  size_t n = 0;
  bool killed = false, timing = from_start;
  started = 0;
  for (;;) {
    int wait_ms = -1;
    if (kill_ms >= 0 && !timing) {
      wait_ms = 120000; /* an open takes at most seconds */
    } else if (kill_ms >= 0 && !killed) {
      struct timespec t;
      clock_gettime(CLOCK_MONOTONIC, &t);
      long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
      if (el >= kill_ms) {
        kill(pid, SIGKILL);
        killed = true;
      } else {
        wait_ms = (int)(kill_ms - el);
      }
    } else if (kill_ms < 0) {
      wait_ms = 120000; /* finishing takes seconds; a hang is a failure */
    }
    struct pollfd pf = {fds[0], POLLIN, 0};
    int pr = poll(&pf, 1, wait_ms);
    if (pr == 0 && (kill_ms < 0 || !timing)) {
      if (kill_ms < 0) fail("the finishing run hangs");
      else fail("round %d: the workload never said it started", round);
      kill(pid, SIGKILL);
      killed = timing = true;
      kill_ms = 0;
      continue;
    }
    if (pr <= 0) continue;
    ssize_t r = read(fds[0], buf + n, sizeof buf - n - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break; /* EOF: it exited or was killed */
    n += (size_t)r;
    buf[n] = '\0';
    char *s = buf, *nl;
    while ((nl = strchr(s, '\n')) != NULL) {
      *nl = '\0';
      line(s, round);
      s = nl + 1;
    }
    n = (size_t)(buf + n - s);
    memmove(buf, s, n); /* a line cut by the kill is never completed */
    if (started && !timing) { /* the kill is timed from now */
      timing = true;
      clock_gettime(CLOCK_MONOTONIC, &t0);
    }
  }
  close(fds[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

/* A new state directory for a generation (the last one's removed). */
static void new_dir(void) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (dir[0] && system(cmd) != 0) fail("cannot remove %s", dir);
  snprintf(dir, sizeof dir, "/tmp/mealy-crash.XXXXXX");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: crash_harness WORKLOAD [ROUNDS [SEED]]\n");
    return 2;
  }
  const char *env = getenv("CRASH_ROUNDS");
  int rounds = argc > 2 ? atoi(argv[2]) : env ? atoi(env) : 200;
  seed = argc > 3 ? strtoull(argv[3], NULL, 10) : (unsigned long long)time(NULL);
  if (seed == 0) seed = 1;
  unsigned long long seed0 = seed;
  for (int i = 0; i < TARGET; i++)
    hashes[i + 1] = crash_chain(hashes[i], (uint64_t)i);
  int kills = 0, generations = 0;
  for (int r = 0; r < rounds && failures == 0;) {
    /* a generation: from an empty directory until every machine is done */
    new_dir();
    for (int k = 0; k < 3; k++)
      for (int i = 0; i < COUNTERS; i++) best[k][i] = k < 1 || i < PAIRS ? 0 : -1;
    for (; r < rounds && failures == 0; r++) {
      int kill_ms = (int)(crash_rng(&seed) % 41);
      int st = run(argv[1], "run", kill_ms, crash_rng(&seed) % 4 == 0, r);
      if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) kills++;
      else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) break; /* all done */
      else fail("round %d: the workload failed (status %d)", r, st);
    }
    if (r < rounds) r++;
    int st = run(argv[1], "finish", -1, false, r);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      fail("the finishing run failed (status %d)", st);
    /* a machine that finished in an earlier round reports nothing now */
    for (int k = 0; k < 3; k++)
      for (int i = 0; i < (k ? PAIRS : COUNTERS); i++)
        if (best[k][i] != TARGET)
          fail("%c%d ended at %lld, not %d", "cpq"[k], i,
               (long long)best[k][i], TARGET);
    generations++;
  }
  const char *store = getenv("MLY_TEST_STORE");
  printf("crash (%s): %d rounds (seed %llu), %d killed, %d generations run "
         "to the end, %d machines each: %s\n",
         store && *store ? store : "journal", rounds, seed0, kills,
         generations, COUNTERS + 2 * PAIRS, failures ? "FAILED" : "ok");
  if (failures == 0) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  } else {
    fprintf(stderr, "state directory kept: %s\n", dir);
  }
  return failures ? 1 : 0;
}
