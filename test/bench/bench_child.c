/*
 * bench_child.c - a child for the supervisor benchmarks: appends
 * "START_NS END_NS" (CLOCK_MONOTONIC) to the file named by $BENCH_OUT and
 * exits 1 at once, so the supervisor restarts it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

int main(void) {
  long long start = now_ns();
  const char *path = getenv("BENCH_OUT");
  if (path == NULL) return 2;
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0) return 2;
  char line[64];
  long long end = now_ns();
  int n = snprintf(line, sizeof line, "%lld %lld\n", start, end);
  if (write(fd, line, (size_t)n) != n) return 2;
  close(fd);
  _exit(1);
}
