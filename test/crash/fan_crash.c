/*
 * fan_crash.c - kill -9 YAML machines in the middle of fork, spawn,
 * continuation and fan-in, and count what they did.
 *
 *   fan_crash WORKLOAD [ROUNDS [SEED]]     (ROUNDS also from CRASH_ROUNDS)
 *
 * Round r starts `WORKLOAD DIR run r` (job r: see fan_workload.c) on the
 * same directory and SIGKILLs it a random 0-60 ms after its store is open
 * (it says so on fd 3; one round in four: after its start, so that kills
 * land in the open and its recovery too), while the jobs
 * of this and earlier rounds are forking, continuing, spawning and
 * merging.  The store is the workload's (MLY_TEST_STORE); timing the
 * kill from the open keeps it in the work on PostgreSQL too, where an
 * open waits for the killed process's lease.  Then `WORKLOAD DIR finish ROUNDS` runs every job to the end.
 * From the files the actions wrote (named after their instances, so a
 * re-run action rewrites its own file), for every job:
 *   - kids: exactly 3 * ceil(N / bs) (one per replica of 3 chains):
 *     none spawned twice, none lost;
 *   - the gather merges: 6 contexts in all (3 chains, each merged and
 *     forked once), each the merge of exactly ceil(N / bs) replicas, and
 *     the sums of items exact: nothing merged twice, nothing lost;
 *   - no action saw a wrong merge (the workload's BAD file).
 * Any failure prints the seed that reproduces it.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crash_util.h"

#define N_ITEMS 24 /* as fan_workload.c */
#define MAXJOBS 4096

static int failures;
static unsigned long long seed;
static char dir[] = "/tmp/mealy-fancrash.XXXXXX";

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FAIL (seed %llu): ", seed);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  failures++;
}

/* Starts the workload; *rfd (when not NULL): the read end of its fd 3. */
static pid_t start(const char *workload, const char *mode, int arg, int *rfd) {
  char a[16];
  snprintf(a, sizeof a, "%d", arg);
  int p[2] = {-1, -1};
  if (rfd && pipe(p) < 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    if (rfd) {
      if (p[0] != 3) close(p[0]);
      dup2(p[1], 3);
      if (p[1] != 3) close(p[1]);
    }
    execl(workload, workload, dir, mode, a, (char *)NULL);
    _exit(127);
  }
  if (rfd) {
    close(p[1]);
    *rfd = p[0];
  }
  return pid;
}

static int kids[MAXJOBS], merged[MAXJOBS];
static long long sums[MAXJOBS], items[MAXJOBS];

static void read_out(int rounds) {
  char path[4200];
  snprintf(path, sizeof path, "%s/out", dir);
  DIR *d = opendir(path);
  if (d == NULL) {
    fail("no %s: %s", path, strerror(errno));
    return;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char file[4600];
    snprintf(file, sizeof file, "%s/%s", path, e->d_name);
    FILE *f = fopen(file, "r");
    if (f == NULL) continue;
    if (strcmp(e->d_name, "BAD") == 0) {
      char line[512];
      while (fgets(line, sizeof line, f)) fail("the workload says: %s", line);
    } else if (strncmp(e->d_name, "k-", 2) == 0) {
      int job;
      if (fscanf(f, "%d", &job) == 1 && job >= 0 && job < rounds) kids[job]++;
      else fail("%s: not a job number", e->d_name);
    } else if (strncmp(e->d_name, "r-", 2) == 0) {
      int job, count;
      long long s, k;
      if (fscanf(f, "%d %d %lld %lld", &job, &count, &s, &k) != 4 ||
          job < 0 || job >= rounds) {
        fail("%s: malformed", e->d_name);
      } else {
        merged[job] += count;
        sums[job] += s;
        items[job] += k;
        int bs = 1 + job % 4, want = (N_ITEMS + bs - 1) / bs, n;
        for (int i = 0; i < count; i++)
          if (fscanf(f, "%d", &n) != 1 || n != want)
            fail("%s: a chain merged %d replicas, not %d", e->d_name, n,
                 want);
      }
    }
    fclose(f);
  }
  closedir(d);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: fan_crash WORKLOAD [ROUNDS [SEED]]\n");
    return 2;
  }
  int rounds = argc > 2 ? atoi(argv[2]) : 40;
  if (getenv("CRASH_ROUNDS")) rounds = atoi(getenv("CRASH_ROUNDS"));
  if (rounds < 1 || rounds > MAXJOBS) rounds = 40;
  seed = argc > 3 ? strtoull(argv[3], NULL, 10)
                  : (unsigned long long)time(NULL) ^ (unsigned long long)getpid();
  if (seed == 0) seed = 1;
  unsigned long long seed0 = seed;
  if (mkdtemp(dir) == NULL) return 1;
  fprintf(stderr, "fan_crash: %d rounds, seed %llu, in %s\n", rounds, seed0,
          dir);
  for (int r = 0; r < rounds; r++) {
    int fd;
    pid_t pid = start(argv[1], "run", r, &fd);
    if (pid < 0) return 1;
    long ms = (long)(crash_rng(&seed) % 60);
    if (crash_rng(&seed) % 4) { /* from the open: at most 120 s, generous */
      struct pollfd pf = {fd, POLLIN, 0};
      char b[8];
      if (poll(&pf, 1, 120000) != 1 || read(fd, b, 5) != 5)
        fail("round %d: the workload never said its store is open", r);
    }
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    close(fd);
    if (WIFEXITED(st)) fail("round %d: the workload exited (%d) before the kill",
                            r, WEXITSTATUS(st));
  }
  pid_t pid = start(argv[1], "finish", rounds, NULL);
  int st;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail("finish: status %d", st);
  seed = seed0;
  read_out(rounds);
  long long want_sum = 6LL * N_ITEMS * (N_ITEMS - 1) / 2;
  for (int j = 0; j < rounds; j++) {
    int bs = 1 + j % 4, reps = (N_ITEMS + bs - 1) / bs;
    if (kids[j] != 3 * reps)
      fail("job %d: %d kids, not %d", j, kids[j], 3 * reps);
    if (merged[j] != 6) fail("job %d: gather merged %d, not 6", j, merged[j]);
    if (sums[j] != want_sum)
      fail("job %d: sum %lld, not %lld", j, sums[j], want_sum);
    if (items[j] != 6LL * N_ITEMS)
      fail("job %d: %lld items, not %d", j, items[j], 6 * N_ITEMS);
  }
  if (failures == 0) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    const char *store = getenv("MLY_TEST_STORE");
    printf("fan_crash (%s): %d rounds, every job exact (seed %llu)\n",
           store && *store ? store : "journal", rounds, seed0);
    return 0;
  }
  fprintf(stderr, "fan_crash: %d failures; state kept in %s\n", failures, dir);
  return 1;
}
