/*
 * pl_proc.c - processes and files for the power-loss tools (pl_proc.h).
 */
#include "pl_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void out_add(pl_out *o, const char *p, size_t n) {
  if (o->len + n + 1 > o->cap) {
    o->cap = (o->len + n + 1) * 2;
    o->text = realloc(o->text, o->cap);
    if (o->text == NULL) abort();
  }
  memcpy(o->text + o->len, p, n);
  o->len += n;
  o->text[o->len] = '\0';
  for (size_t i = 0; i < n; i++) o->lines += p[i] == '\n';
}

void plp_run(const char *prog, const char *const *args,
             const char *const *env, const char *errpath, int limit_s,
             pl_out *o) {
  int fds[2];
  if (pipe(fds) < 0) {
    perror("pipe");
    exit(1);
  }
  memset(o, 0, sizeof *o);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    exit(1);
  }
  if (pid == 0) {
    close(fds[0]);
    if (fds[1] != 3) {
      dup2(fds[1], 3);
      close(fds[1]);
    }
    int e = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (e >= 0) { /* stdout too: the reports go to fd 3 */
      dup2(e, 1);
      dup2(e, 2);
    }
    bool preload = false;
    for (int i = 0; env && env[i]; i += 2) {
      setenv(env[i], env[i + 1], 1);
      preload |= strcmp(env[i], "LD_PRELOAD") == 0;
    }
    if (preload) { /* ASan wants to come first; the interposer must */
      const char *a = getenv("ASAN_OPTIONS");
      char buf[1024];
      snprintf(buf, sizeof buf, "%s%sverify_asan_link_order=0", a ? a : "",
               a && *a ? ":" : "");
      setenv("ASAN_OPTIONS", buf, 1);
    }
    execv(prog, (char *const *)args);
    _exit(127);
  }
  close(fds[1]);
  bool killed = false;
  time_t t0 = time(NULL);
  char buf[65536];
  for (;;) {
    struct pollfd pf = {fds[0], POLLIN, 0};
    int pr = poll(&pf, 1, 1000);
    if (pr < 0 && errno == EINTR) continue;
    if (pr == 0) {
      if (!killed && time(NULL) - t0 > limit_s) {
        kill(pid, SIGKILL);
        killed = true;
        out_add(o, "HANG\n", 5);
      }
      continue;
    }
    ssize_t r = read(fds[0], buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    out_add(o, buf, (size_t)r);
  }
  close(fds[0]);
  while (waitpid(pid, &o->status, 0) < 0 && errno == EINTR) {
  }
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
  (void)st;
  (void)flag;
  (void)f;
  return remove(p);
}

void plp_rm_rf(const char *p) {
  struct stat st;
  if (lstat(p, &st) == 0) nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *plp_first_line(const char *path) {
  FILE *f = fopen(path, "r");
  static char buf[2048];
  buf[0] = '\0';
  if (f) {
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
  }
  buf[strcspn(buf, "\n")] = '\0';
  return buf;
}

void plp_mkdtemp(const char *name, char *out, size_t len) {
  const char *t = getenv("TMPDIR");
  snprintf(out, len, "%s/%s.XXXXXX", t && *t ? t : "/tmp", name);
  if (mkdtemp(out) == NULL) {
    perror(out);
    exit(1);
  }
}
