/*
 * reaper.c - no zombies, ever.
 *
 * The supervisor makes itself a child subreaper, so orphaned grandchildren
 * are re-parented to it instead of to init.  libuv reaps only the children
 * it spawned (waitpid on each known pid), so on every SIGCHLD we look for
 * zombie children that the runtime does not know and reap those; the
 * runtime's own children are left for libuv, which reports their exit.
 *
 * A process group whose leader has exited may still have members (a
 * grandchild that ignored the stop signal).  The group id stays reserved
 * while it has members, so signalling -pgid is safe exactly when some
 * process still has that pgid; we check /proc before we kill.
 */
#include <ctype.h>
#include <stdlib.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sv.h"

int reaper_enable(void) {
  return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 ? -errno : 0;
}

/* Reads pid's state, parent and process group from /proc/PID/stat. */
static int proc_stat(int pid, char *state, int *ppid, int *pgrp) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "re");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *close_paren = strrchr(buf, ')'); /* comm may hold spaces */
  if (close_paren == NULL) return -1;
  return sscanf(close_paren + 1, " %c %d %d", state, ppid, pgrp) == 3 ? 0 : -1;
}

typedef int (*proc_visit)(int pid, char state, int ppid, int pgrp, void *arg);

static int each_process(proc_visit fn, void *arg) {
  DIR *d = opendir("/proc");
  if (d == NULL) return -errno;
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (!isdigit((unsigned char)e->d_name[0])) continue;
    int pid = atoi(e->d_name), ppid, pgrp;
    char state;
    if (proc_stat(pid, &state, &ppid, &pgrp) == 0)
      rc = fn(pid, state, ppid, pgrp, arg);
  }
  closedir(d);
  return rc;
}

typedef struct orphan_scan {
  mly_runtime *rt;
  int self;
  int reaped;
} orphan_scan;

static int reap_one(int pid, char state, int ppid, int pgrp, void *arg) {
  (void)pgrp;
  orphan_scan *o = arg;
  if (ppid != o->self || state != 'Z' || mly_process_known(o->rt, pid)) return 0;
  if (waitpid(pid, NULL, WNOHANG) == pid) o->reaped++;
  return 0;
}

int reaper_reap_orphans(mly_runtime *rt) {
  orphan_scan o = {rt, getpid(), 0};
  each_process(reap_one, &o);
  return o.reaped;
}

typedef struct group_scan {
  int pgid;
  bool found;
} group_scan;

static int in_group(int pid, char state, int ppid, int pgrp, void *arg) {
  (void)pid;
  (void)ppid;
  group_scan *g = arg;
  if (pgrp == g->pgid && state != 'Z') g->found = true;
  return g->found ? 1 : 0;
}

int reaper_kill_group_leftovers(int pgid, int sig) {
  group_scan g = {pgid, false};
  each_process(in_group, &g);
  if (!g.found) return 0;
  return kill(-pgid, sig) < 0 ? -errno : 1;
}
