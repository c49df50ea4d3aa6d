/*
 * reaper.c - no zombies, ever; and the orphans a program leaves.
 *
 * The supervisor makes itself a child subreaper, so orphaned grandchildren
 * are re-parented to it instead of to init.  libuv reaps only the children
 * it spawned (waitpid on each known pid), so on every SIGCHLD we ask the
 * kernel for a zombie child without reaping it (waitid with WNOWAIT) and
 * reap it only if the runtime does not know it.  The cost is one call per
 * zombie, whatever else runs on the host: nothing scans /proc.
 *
 * If the zombie found first is the runtime's own, the runtime has not yet
 * reaped it; it will, and its exit event calls this again (note_exit in
 * coprocess.c), so the orphans behind it are reaped then.
 *
 * Orphans are attributed to their program by the marker the supervisor
 * puts in every program's environment, MEALY_PROGRAM=NAME:SVPID.INSTANCE,
 * read from /proc/PID/environ (the environment the process was started
 * with: inherited by everything the program starts, unless it clears it).
 * The orphans are found among the supervisor's children
 * (/proc/self/task/TID/children), not among all processes.
 *
 * A process group whose leader has been reaped: its id stays reserved while
 * it has members, so if /proc/PGID exists again the number names somebody
 * else and the group is empty; if not, kill(-pgid) reaches exactly the
 * group (0 asks whether it has members).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sv.h"

int reaper_enable(void) {
  return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 ? -errno : 0;
}

static bool runtime_own(sv *s, int pid) {
  return sv_find_pid(s, pid) != NULL || mly_process_known(s->rt, pid);
}

int reaper_reap_orphans(sv *s) {
  int reaped = 0;
  for (;;) {
    siginfo_t si = {0};
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 ||
        si.si_pid == 0 || runtime_own(s, si.si_pid))
      return reaped;
    siginfo_t done;
    if (waitid(P_PID, (id_t)si.si_pid, &done, WEXITED | WNOHANG) < 0)
      return reaped;
    reaped++;
  }
}

/* ---- orphans and their marker ---- */

int reaper_each_orphan(sv *s, int (*fn)(sv *s, int pid, void *arg),
                       void *arg) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = 0, pid = 0;
  ssize_t n;
  while (rc == 0 && (n = read(fd, buf, sizeof buf)) > 0)
    for (ssize_t i = 0; i < n && rc == 0; i++) {
      if (isdigit((unsigned char)buf[i])) {
        pid = pid * 10 + (buf[i] - '0');
      } else if (pid > 0) { /* a pid may end a read, and go on in the next */
        if (!runtime_own(s, pid)) rc = fn(s, pid, arg);
        pid = 0;
      }
    }
  if (rc == 0 && pid > 0 && !runtime_own(s, pid)) rc = fn(s, pid, arg);
  close(fd);
  return rc;
}

#define ENVIRON_LIMIT (1u << 20) /* more than ARG_MAX's usual 128 KiB-2 MiB */

/* The program instance named by pid's marker from this supervisor, or 0. */
uint64_t reaper_marker(int pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/environ", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  size_t cap = 16384, len = 0;
  char *buf = malloc(cap + 1);
  ssize_t n;
  while (buf && (n = read(fd, buf + len, cap - len)) > 0) {
    len += (size_t)n;
    if (len == cap && cap < ENVIRON_LIMIT) {
      char *b = realloc(buf, cap * 2 + 1);
      if (b == NULL) break;
      buf = b;
      cap *= 2;
    } else if (len == cap) {
      break;
    }
  }
  close(fd);
  if (buf == NULL) return 0;
  buf[len] = '\0';
  static const char key[] = SV_MARKER "=";
  uint64_t inst = 0;
  for (size_t i = 0; i < len && inst == 0; i += strlen(buf + i) + 1) {
    if (strncmp(buf + i, key, sizeof key - 1) != 0) continue;
    const char *colon = strrchr(buf + i, ':');
    unsigned long svpid = 0;
    unsigned long long k = 0;
    if (colon && sscanf(colon + 1, "%lu.%llu", &svpid, &k) == 2 &&
        svpid == (unsigned long)getpid())
      inst = k;
  }
  free(buf);
  return inst;
}

bool reaper_is_zombie(int pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  buf[n > 0 ? n : 0] = '\0';
  const char *rp = strrchr(buf, ')');
  return rp && rp[1] == ' ' && rp[2] == 'Z';
}

/* ---- process groups ---- */

/* Is the group (whose leader has been reaped) gone? */
bool reaper_group_empty(int pgid) {
  char path[32];
  snprintf(path, sizeof path, "/proc/%d", pgid);
  if (access(path, F_OK) == 0) return true; /* the number is somebody's */
  return kill(-pgid, 0) < 0 && errno == ESRCH;
}

int reaper_group_signal(int pgid, int sig) {
  if (reaper_group_empty(pgid)) return 0;
  return kill(-pgid, sig) < 0 ? -errno : 1;
}

/* Members of a process group, for a log line: this one scans /proc, so it
 * is only called when a grace period ends with something left. */
size_t reaper_group_pids(int pgid, int *pids, size_t max) {
  DIR *d = opendir("/proc");
  if (d == NULL) return 0;
  struct dirent *e;
  size_t k = 0;
  while (k < max && (e = readdir(d)) != NULL) {
    if (!isdigit((unsigned char)e->d_name[0])) continue;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", atoi(e->d_name));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) continue;
    buf[n] = '\0';
    char *rp = strrchr(buf, ')'), state;
    int ppid, pgrp;
    if (rp && sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 &&
        pgrp == pgid && state != 'Z')
      pids[k++] = atoi(e->d_name);
  }
  closedir(d);
  return k;
}
