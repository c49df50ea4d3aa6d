/*
 * cgroup.c - cgroup v2 for the supervisor: one cgroup per program.
 *
 * The cgroup v2 hierarchy is found in /proc/self/mountinfo (on a hybrid
 * host it is /sys/fs/cgroup/unified), the supervisor's own cgroup in
 * /proc/self/cgroup ("0::/PATH").  A cgroup with processes in it cannot
 * hand controllers to its children (the "no internal processes" rule), so
 * when the supervisor's cgroup is its alone it moves into a leaf of it,
 * "supervisor", and the programs' cgroups sit beside that leaf; when it
 * shares its cgroup it makes "mealy-ID" under it for the programs and
 * stays where it is.  Controllers (memory, cpu, pids) are enabled where
 * the parent offers them; those that are not are why a `limits:` key is
 * refused.
 *
 * A child must be in its cgroup before it can start anything: it is
 * created there (clone3 with CLONE_INTO_CGROUP, through the directory's
 * descriptor), and nothing is ever migrated, which matters: a migration
 * may wait for an RCU grace period, milliseconds with the supervisor
 * blocked.  Before Linux 5.7 the supervisor moves itself into the
 * program's cgroup, forks there, and moves back.
 *
 * A signal other than SIGKILL goes to the processes one by one, so to be
 * one instant for all (as kill(-pgid) is for a group) the cgroup is
 * frozen meanwhile (cgroup.freeze): a frozen process neither forks nor
 * handles the signal before the thaw.
 *
 * Files are opened relative to directory descriptors, with O_NOFOLLOW;
 * what is read from them is bounded.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "mealy.h"

struct sv_cgroups {
  char path[PATH_MAX];   /* the programs' parent */
  char home[PATH_MAX];   /* the supervisor's own cgroup */
  bool made;             /* path was made here: removed at close */
  unsigned limits;
  char controllers[128];
  size_t mnt_len;        /* path's first bytes: where cgroup2 is mounted */
};

struct sv_cg {
  uv_fs_event_t watch;
  sv_cgroups *g;
  int fd;                /* the directory, for clone3 */
  void (*on_change)(void *arg);
  void *arg;
  bool watching;
  bool killed;           /* cgroup.kill written: make it afresh to reuse */
  char path[];           /* as long as it is: a thousand programs */
};

/* dir/leaf into out; MLY_ERANGE if it does not fit. */
static int join(char *out, size_t len, const char *dir, const char *leaf) {
  int n = snprintf(out, len, "%s/%s", dir, leaf);
  return n < 0 || (size_t)n >= len ? MLY_ERANGE : 0;
}

static int write_at(const char *dir, const char *file, const char *text) {
  char p[PATH_MAX + 64];
  snprintf(p, sizeof p, "%s/%s", dir, file);
  int fd = open(p, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -errno;
  ssize_t n = write(fd, text, strlen(text));
  int rc = n < 0 ? -errno : 0;
  close(fd);
  return rc;
}

/* Reads up to len-1 bytes of dir/file, NUL-terminated; returns the count. */
static ssize_t read_at(const char *dir, const char *file, char *buf,
                       size_t len) {
  char p[PATH_MAX + 64];
  snprintf(p, sizeof p, "%s/%s", dir, file);
  int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -errno;
  size_t got = 0;
  ssize_t n;
  while (got < len - 1 && (n = read(fd, buf + got, len - 1 - got)) > 0)
    got += (size_t)n;
  int err = errno;
  close(fd);
  buf[got] = '\0';
  return n < 0 ? -err : (ssize_t)got;
}

/* Where cgroup2 is mounted (its root must be the hierarchy's root). */
static int find_mount(char *out, size_t len) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (f == NULL) return -errno;
  char line[4096];
  int rc = MLY_ENOENT;
  while (rc < 0 && fgets(line, sizeof line, f)) {
    char root[PATH_MAX], mnt[PATH_MAX], fstype[64];
    const char *dash = strstr(line, " - ");
    if (dash == NULL || sscanf(dash + 3, "%63s", fstype) != 1 ||
        strcmp(fstype, "cgroup2") != 0)
      continue;
    if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2) continue;
    if (strcmp(root, "/") != 0 || strchr(mnt, '\\')) continue;
    snprintf(out, len, "%s", mnt);
    rc = 0;
  }
  fclose(f);
  return rc;
}

static int own_cgroup(char *out, size_t len) {
  char buf[PATH_MAX + 64];
  ssize_t n = read_at("/proc/self", "cgroup", buf, sizeof buf);
  if (n < 0) return (int)n;
  for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
    if (strncmp(l, "0::", 3) == 0) {
      size_t k = strcspn(l + 3, "\n");
      if (k >= len) return MLY_ERANGE;
      memcpy(out, l + 3, k);
      out[k] = '\0';
      return 0;
    }
  return MLY_ENOENT;
}

/* Is this process the only one in cgroup dir? */
static bool alone_in(const char *dir) {
  char buf[256];
  ssize_t n = read_at(dir, "cgroup.procs", buf, sizeof buf);
  if (n <= 0 || (size_t)n == sizeof buf - 1) return false;
  return atoi(buf) == (int)getpid() && strchr(buf, '\n') == buf + n - 1;
}

static const char *const ctl_names[SV_NLIMITS] = {"memory", "cpu", "pids"};

/* Enables what the parent offers of memory, cpu and pids, one by one. */
static void enable_controllers(sv_cgroups *g) {
  char have[512];
  if (read_at(g->path, "cgroup.controllers", have, sizeof have) < 0) have[0] = 0;
  for (int i = 0; i < SV_NLIMITS; i++) {
    char word[16];
    snprintf(word, sizeof word, " %s ", ctl_names[i]);
    char spaced[520];
    snprintf(spaced, sizeof spaced, " %s ", have);
    for (char *c = spaced; *c; c++) if (*c == '\n') *c = ' ';
    if (strstr(spaced, word) == NULL) continue;
    char cmd[16];
    snprintf(cmd, sizeof cmd, "+%s", ctl_names[i]);
    write_at(g->path, "cgroup.subtree_control", cmd);
  }
  ssize_t n = read_at(g->path, "cgroup.subtree_control", g->controllers,
                      sizeof g->controllers);
  if (n < 0) g->controllers[0] = '\0';
  g->controllers[strcspn(g->controllers, "\n")] = '\0';
  char spaced[160];
  snprintf(spaced, sizeof spaced, " %s ", g->controllers);
  for (int i = 0; i < SV_NLIMITS; i++) {
    char word[16];
    snprintf(word, sizeof word, " %s ", ctl_names[i]);
    if (strstr(spaced, word)) g->limits |= 1u << i;
  }
}

static int make_dir(const char *path) {
  return mkdir(path, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

int sv_cgroups_open(const char *id, sv_cgroups **out, char *why, size_t len) {
  char mnt[PATH_MAX], own[PATH_MAX];
  int rc = find_mount(mnt, sizeof mnt);
  if (rc < 0) {
    snprintf(why, len, "no cgroup v2 hierarchy is mounted");
    return rc;
  }
  if ((rc = own_cgroup(own, sizeof own)) < 0) {
    snprintf(why, len, "cannot read /proc/self/cgroup: %s", mly_strerror(rc));
    return rc;
  }
  sv_cgroups *g = calloc(1, sizeof *g);
  if (g == NULL) return MLY_ENOMEM;
  g->mnt_len = strlen(mnt);
  int n = snprintf(g->home, sizeof g->home, "%s%s", mnt,
                   strcmp(own, "/") == 0 ? "" : own);
  if (n < 0 || (size_t)n >= sizeof g->home - 64) {
    free(g);
    snprintf(why, len, "the cgroup path is too long");
    return MLY_ERANGE;
  }
  if (alone_in(g->home)) { /* ours: programs beside a "supervisor" leaf */
    snprintf(g->path, sizeof g->path, "%s", g->home);
    rc = join(g->home, sizeof g->home, g->path, "supervisor");
    if (rc == 0) rc = make_dir(g->home);
    if (rc == 0) rc = write_at(g->home, "cgroup.procs", "0");
  } else { /* shared: a subtree of our own under it */
    char leaf[64];
    snprintf(leaf, sizeof leaf, "mealy-%s", id);
    rc = join(g->path, sizeof g->path, g->home, leaf);
    if (rc == 0) rc = make_dir(g->path);
    g->made = rc == 0;
  }
  if (rc == 0) { /* can a process be moved in? (the permission that counts) */
    char probe[PATH_MAX], leaf[32];
    snprintf(leaf, sizeof leaf, "probe-%d", (int)getpid());
    rc = join(probe, sizeof probe, g->path, leaf);
    if (rc == 0) rc = make_dir(probe);
    if (rc == 0) {
      rc = write_at(probe, "cgroup.procs", "0");
      int back = write_at(g->home, "cgroup.procs", "0");
      if (rc == 0) rc = back;
      rmdir(probe);
    }
  }
  if (rc < 0) {
    snprintf(why, len, "cannot make or enter a cgroup under %s: %s", g->path,
             mly_strerror(rc));
    if (g->made) rmdir(g->path);
    free(g);
    return rc;
  }
  enable_controllers(g);
  *out = g;
  return 0;
}

const char *sv_cgroups_path(const sv_cgroups *g) { return g->path; }
unsigned sv_cgroups_limits(const sv_cgroups *g) { return g->limits; }
const char *sv_cgroups_controllers(const sv_cgroups *g) {
  return g->controllers;
}

/* Whether dir's cgroup.freeze says frozen ("1"). */
static bool freeze_set(const char *dir) {
  char buf[8];
  return read_at(dir, "cgroup.freeze", buf, sizeof buf) > 0 && buf[0] == '1';
}

int sv_cgroups_thaw_left(sv_cgroups *g,
                         void (*thawed)(const char *name, int rc, void *arg),
                         void *arg) {
  DIR *d = opendir(g->path);
  if (d == NULL) return -errno;
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL) {
    char sub[PATH_MAX];
    if (strncmp(e->d_name, "program-", 8) != 0 ||
        join(sub, sizeof sub, g->path, e->d_name) < 0 || !freeze_set(sub))
      continue;
    int rc = write_at(sub, "cgroup.freeze", "0");
    n++;
    if (thawed) thawed(e->d_name, rc, arg);
  }
  closedir(d);
  return n;
}

/* Programs' cgroups this run did not use (left by a previous run, a
 * program kept down since) go too, when empty; rmdir refuses others. */
static void remove_empty_programs(const char *path) {
  DIR *d = opendir(path);
  if (d == NULL) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char sub[PATH_MAX];
    if (strncmp(e->d_name, "program-", 8) == 0 &&
        join(sub, sizeof sub, path, e->d_name) == 0)
      rmdir(sub);
  }
  closedir(d);
}

void sv_cgroups_close(sv_cgroups *g) {
  if (g == NULL) return;
  remove_empty_programs(g->path);
  if (g->made) rmdir(g->path);
  free(g);
}

/* ---- one program ---- */

static void watch_cb(uv_fs_event_t *h, const char *file, int events,
                     int status) {
  (void)file;
  (void)events;
  (void)status;
  sv_cg *c = h->data;
  if (c->on_change) c->on_change(c->arg);
}

int sv_cg_open(sv_cgroups *g, uv_loop_t *loop, const char *name,
               void (*on_change)(void *arg), void *arg, sv_cg **out) {
  char leaf[96];
  snprintf(leaf, sizeof leaf, "program-%s", name);
  size_t len = strlen(g->path) + 1 + strlen(leaf) + 1;
  sv_cg *c = len <= PATH_MAX ? calloc(1, sizeof *c + len) : NULL;
  if (c == NULL) return len <= PATH_MAX ? MLY_ENOMEM : MLY_ERANGE;
  c->g = g;
  c->on_change = on_change;
  c->arg = arg;
  int rc = join(c->path, len, g->path, leaf);
  /* An empty one left by a previous run may have been through cgroup.kill
   * (see sv_cg_renew): made afresh.  A populated one (children to adopt)
   * is kept: rmdir refuses it. */
  if (rc == 0) rmdir(c->path);
  if (rc == 0) rc = make_dir(c->path);
  if (rc == 0) /* a previous run may have ended while it was frozen */
    write_at(c->path, "cgroup.freeze", "0");
  c->fd = rc < 0 ? -1 : open(c->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC |
                                          O_NOFOLLOW);
  if (rc == 0 && c->fd < 0) rc = -errno;
  if (rc == 0) rc = uv_fs_event_init(loop, &c->watch);
  if (rc < 0) {
    if (c->fd >= 0) close(c->fd);
    free(c);
    return rc;
  }
  c->watch.data = c;
  uv_unref((uv_handle_t *)&c->watch); /* never keeps the loop alive */
  *out = c;
  return 0;
}

/* Watched only while somebody waits for it to empty: a running program's
 * cgroup changes at each start and exit, and nobody needs to hear it. */
int sv_cg_watch(sv_cg *c, bool on) {
  if (c->watching == on) return 0;
  int rc;
  if (on) {
    char ev[PATH_MAX + 16];
    snprintf(ev, sizeof ev, "%s/cgroup.events", c->path);
    rc = uv_fs_event_start(&c->watch, watch_cb, ev, 0);
  } else {
    rc = uv_fs_event_stop(&c->watch);
  }
  if (rc == 0) c->watching = on;
  return rc;
}

static int set_one(sv_cg *c, const char *file, const char *value) {
  return write_at(c->path, file, value);
}

int sv_cg_set_limits(sv_cg *c, const sv_limits *l) {
  char v[64];
  int rc = 0, r;
  unsigned have = c->g->limits;
  if (have & (1u << SV_LIMIT_MEMORY)) {
    if (l->memory_max) snprintf(v, sizeof v, "%llu", (unsigned long long)l->memory_max);
    else snprintf(v, sizeof v, "max");
    if ((r = set_one(c, "memory.max", v)) < 0) rc = r;
  }
  if (have & (1u << SV_LIMIT_CPU)) {
    if (l->cpu_max > 0)
      snprintf(v, sizeof v, "%llu 100000",
               (unsigned long long)(l->cpu_max * 100000 + 0.5));
    else snprintf(v, sizeof v, "max 100000");
    if ((r = set_one(c, "cpu.max", v)) < 0) rc = r;
  }
  if (have & (1u << SV_LIMIT_PIDS)) {
    if (l->pids_max) snprintf(v, sizeof v, "%llu", (unsigned long long)l->pids_max);
    else snprintf(v, sizeof v, "max");
    if ((r = set_one(c, "pids.max", v)) < 0) rc = r;
  }
  return rc;
}

int sv_cg_fd(const sv_cg *c) { return c->fd; }
int sv_cg_enter(sv_cg *c) { return write_at(c->path, "cgroup.procs", "0"); }
int sv_cg_leave(sv_cg *c) { return write_at(c->g->home, "cgroup.procs", "0"); }

int sv_cg_populated(sv_cg *c) {
  char buf[256];
  ssize_t n = read_at(c->path, "cgroup.events", buf, sizeof buf);
  if (n < 0) return (int)n;
  const char *p = strstr(buf, "populated ");
  return p == NULL ? MLY_EBADMSG : p[10] == '1';
}

int sv_cg_pids(sv_cg *c, int *pids, size_t max) {
  char p[PATH_MAX + 16], buf[4096];
  snprintf(p, sizeof p, "%s/cgroup.procs", c->path);
  FILE *f = fopen(p, "re");
  if (f == NULL) return -errno;
  size_t k = 0;
  while (k < max && fgets(buf, sizeof buf, f)) {
    int pid = atoi(buf);
    if (pid > 0) pids[k++] = pid;
  }
  fclose(f);
  return (int)k;
}

int sv_cg_signal(sv_cg *c, int sig) {
  if (sig == SIGKILL) {
    int rc = write_at(c->path, "cgroup.kill", "1");
    if (rc == 0) c->killed = true;
    if (rc != MLY_ENOENT) return rc; /* older kernels have no cgroup.kill */
  }
  int pids[256], n, rounds = 0, self = (int)getpid();
  /* a cgroup can hold more than fits here: go on while there are more */
  do {
    n = sv_cg_pids(c, pids, sizeof pids / sizeof pids[0]);
    for (int i = 0; i < n; i++)
      if (pids[i] != self) kill(pids[i], sig);
  } while (n == (int)(sizeof pids / sizeof pids[0]) && sig == SIGKILL &&
           ++rounds < 64);
  return n < 0 ? n : 0;
}

int sv_cg_freeze(sv_cg *c, int wait_ms) {
  int rc = write_at(c->path, "cgroup.freeze", "1");
  if (rc < 0) return rc; /* before Linux 5.2: no freezer */
  char p[PATH_MAX + 16], buf[256];
  snprintf(p, sizeof p, "%s/cgroup.events", c->path);
  int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) rc = -errno;
  uint64_t until = uv_hrtime() + (uint64_t)wait_ms * 1000000u;
  while (fd >= 0) { /* cgroup.events wakes poll (POLLPRI) when it changes */
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n < 0) {
      rc = -errno;
      break;
    }
    buf[n] = '\0';
    const char *f = strstr(buf, "frozen ");
    if (f == NULL || f[7] == '1') {
      rc = f == NULL ? MLY_EBADMSG : 0;
      break;
    }
    uint64_t now = uv_hrtime();
    if (now >= until) {
      rc = MLY_ETIMEDOUT;
      break;
    }
    struct pollfd pf = {.fd = fd, .events = POLLPRI};
    if (poll(&pf, 1, (int)((until - now + 999999u) / 1000000u)) < 0 &&
        errno != EINTR) {
      rc = -errno;
      break;
    }
  }
  if (fd >= 0) close(fd);
  if (rc < 0 && rc != MLY_ETIMEDOUT) sv_cg_thaw(c);
  return rc;
}

int sv_cg_thaw(sv_cg *c) { return write_at(c->path, "cgroup.freeze", "0"); }

/* Once cgroup.kill has been written to a cgroup, the kernel (seen on 6.18)
 * SIGKILLs every child later started into it with clone3's
 * CLONE_INTO_CGROUP, at birth: its kill count no longer matches the
 * parent's.  So a killed cgroup is not reused: once empty, it is removed
 * and made again (limits are set by the caller afterwards). */
int sv_cg_renew(sv_cg *c) {
  if (!c->killed || sv_cg_populated(c) != 0) return 0;
  bool watching = c->watching;
  if (watching) sv_cg_watch(c, false);
  close(c->fd);
  c->fd = -1;
  int rc = rmdir(c->path) < 0 && errno != ENOENT ? -errno : 0;
  if (rc == 0) rc = make_dir(c->path);
  if (rc == 0) {
    c->fd = open(c->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (c->fd < 0) rc = -errno;
  }
  if (rc == 0) c->killed = false;
  if (watching) sv_cg_watch(c, true);
  return rc;
}

static void cg_closed(uv_handle_t *h) { free(h->data); }

void sv_cg_close(sv_cg *c) {
  if (c == NULL) return;
  if (c->fd >= 0) close(c->fd);
  rmdir(c->path); /* fails (EBUSY) if anything is left in it: kept then */
  c->on_change = NULL;
  uv_close((uv_handle_t *)&c->watch, cg_closed);
}

bool sv_cg_has(const sv_cg *c, int pid) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/cgroup", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  char *line = strstr(buf, "0::/"); /* the v2 line: "0::/PATH" */
  if (line == NULL || (line != buf && line[-1] != '\n')) return false;
  line += 3;
  line[strcspn(line, "\n")] = '\0';
  return strlen(c->path) > c->g->mnt_len &&
         strcmp(c->path + c->g->mnt_len, line) == 0;
}
