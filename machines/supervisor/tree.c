/*
 * tree.c - a program's processes, as a whole.
 *
 * What a program starts belongs to it, whatever process group or session
 * it moves to, and goes when the program stops.  Two ways to know it:
 *
 *   cgroup  (cgroup v2, when the supervisor can make cgroups): each
 *           program runs in a cgroup of its own (cgroup.c).  Its tree is
 *           what the cgroup holds; it is empty when cgroup.events says
 *           "populated 0", which inotify reports; SIGKILL is cgroup.kill.
 *           `limits:` apply there.
 *   pgroup  (otherwise, or `tracking: pgroup`): the program's process
 *           group, plus the orphans the subreaper receives that carry the
 *           program's marker (reaper.c).  Orphans are looked for among the
 *           supervisor's children when the tree is signalled or checked;
 *           a SIGCHLD tells every program that is waiting for its tree to
 *           empty to look again.
 *
 * Either way each process has the stop signal once, as at one instant:
 * the cgroup is frozen while it is signalled; the group has it in one
 * kill, the orphans outside it one by one.  What the program starts
 * after that (its cleanup) does not get it: it keeps the rest of the
 * grace.  Only processes that were there at the stop and escaped the
 * signal are given it while the rest drains: orphaned since from outside
 * the group, or exec'd since when it was started just before the stop
 * (between fork and exec, it may have been lost in the exec).
 *
 * Each spawn is one instance, numbered; the marker MEALY_PROGRAM names it
 * in both ways (a program can read its own name there).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "sv.h"

/* ---- the choice, at start ---- */

/* A previous run killed while it signalled a program (its cgroup frozen
 * for at most 200 ms) left that cgroup frozen: it is thawed at start,
 * whether the program is adopted, started anew or kept down. */
static void said_thawed(const char *name, int rc, void *arg) {
  sv *s = arg;
  if (rc == 0)
    sv_logf(s, "mealy", "cgroup %s was left frozen (a previous run killed "
            "while it signalled it): thawed", name);
  else
    sv_logf(s, "mealy", "cgroup %s was left frozen and cannot be thawed: %s",
            name, mly_strerror(rc));
}

int sv_tree_setup(sv *s, const char *state_dir) {
  char why[PATH_MAX + 256], id[32];
  if (s->cfg->tracking == SV_TRACK_PGROUP) {
    s->tracking = SV_TRACK_PGROUP;
    sv_logf(s, "mealy", "process tracking: process groups and marked orphans "
            "(tracking: pgroup)");
    return 0;
  }
  /* with a state directory the subtree keeps its name across runs, so
   * what a previous run left running is found in it */
  uint64_t h = 1469598103934665603ull;
  for (const char *c = state_dir; c && *c; c++)
    h = (h ^ (unsigned char)*c) * 1099511628211ull;
  if (state_dir) snprintf(id, sizeof id, "s%016llx", (unsigned long long)h);
  else snprintf(id, sizeof id, "%d", (int)getpid());
  int rc = sv_cgroups_open(id, &s->cgroups, why, sizeof why);
  if (rc < 0 && s->cfg->tracking == SV_TRACK_CGROUP) {
    sv_logf(s, "mealy", "tracking: cgroup, but %s; set tracking: auto or "
            "pgroup, or delegate a cgroup v2 subtree to the supervisor", why);
    return rc;
  }
  if (rc < 0) {
    s->tracking = SV_TRACK_PGROUP;
    sv_logf(s, "mealy", "process tracking: process groups and marked orphans "
            "(no cgroups: %s)", why);
    return 0;
  }
  s->tracking = SV_TRACK_CGROUP;
  const char *ctl = sv_cgroups_controllers(s->cgroups);
  sv_logf(s, "mealy", "process tracking: cgroup v2, one cgroup per program "
          "under %s (controllers: %s)", sv_cgroups_path(s->cgroups),
          *ctl ? ctl : "none");
  sv_cgroups_thaw_left(s->cgroups, said_thawed, s);
  return 0;
}

static const char *const limit_keys[SV_NLIMITS] = {"memory_max", "cpu_max",
                                                   "pids_max"};
static const char *const limit_ctls[SV_NLIMITS] = {"memory", "cpu", "pids"};

int sv_tree_check_limits(sv *s, const sv_config *cfg, char *err, size_t len) {
  unsigned have = s->tracking == SV_TRACK_CGROUP ? sv_cgroups_limits(s->cgroups)
                                                 : 0;
  for (size_t i = 0; i < cfg->nprograms; i++) {
    const sv_limits *l = &cfg->programs[i].limits;
    for (int k = 0; k < SV_NLIMITS; k++) {
      if (l->line[k] == 0 || (have & (1u << k))) continue;
      if (s->tracking != SV_TRACK_CGROUP)
        snprintf(err, len, "%s:%d:%d: limits %s needs cgroup v2 tracking, and "
                 "this supervisor tracks process groups; remove the limit, "
                 "or run it where it can make cgroups", cfg->path, l->line[k],
                 l->col[k], limit_keys[k]);
      else
        snprintf(err, len, "%s:%d:%d: limits %s needs the %s controller, "
                 "which is not enabled for %s (enabled: %s); enable it in "
                 "the parent's cgroup.subtree_control (systemd: Delegate=yes) "
                 "or remove the limit", cfg->path, l->line[k], l->col[k],
                 limit_keys[k], limit_ctls[k], sv_cgroups_path(s->cgroups),
                 *sv_cgroups_controllers(s->cgroups)
                     ? sv_cgroups_controllers(s->cgroups) : "none");
      return MLY_EINVAL;
    }
  }
  return 0;
}

/* ---- one program ---- */

static void tree_changed(void *arg) {
  sv_proc *p = arg;
  if (p->draining && p->machine)
    mly_runtime_send(p->sv->rt, p->machine, SV_EV_TREE, NULL);
}

int sv_tree_prepare(sv_proc *p) {
  sv *s = p->sv;
  if (p->instance) HASH_DELETE(hh_inst, s->by_inst, p);
  p->instance = ++s->instances;
  p->nsignalled = 0;
  p->stop_tick = 0;
  p->main_pgid = 0;
  HASH_ADD(hh_inst, s->by_inst, instance, sizeof p->instance, p);
  if (s->tracking != SV_TRACK_CGROUP) return 0;
  int rc = 0;
  if (p->cg == NULL)
    rc = sv_cg_open(s->cgroups, s->loop, p->name, tree_changed, p, &p->cg);
  else
    rc = sv_cg_renew(p->cg);
  if (rc == 0) rc = sv_cg_set_limits(p->cg, &p->prog->limits);
  if (rc < 0)
    sv_logf(s, p->name, "cannot set up its cgroup under %s: %s",
            sv_cgroups_path(s->cgroups), mly_strerror(rc));
  return rc;
}

void sv_tree_marker(const sv_proc *p, char *buf, size_t len) {
  snprintf(buf, len, "%s:%d.%llu", p->name, (int)getpid(),
           (unsigned long long)p->instance);
}

/* Kernels without clone3's CLONE_INTO_CGROUP (before 5.7): the supervisor
 * moves into the program's cgroup, forks there, and moves back. */
static int spawn_from_inside(sv_proc *p, mly_machine *m,
                             mly_process_options *o, int *pid) {
  int rc = sv_cg_enter(p->cg);
  if (rc < 0) {
    sv_logf(p->sv, p->name, "cannot enter its cgroup to start it: %s",
            mly_strerror(rc));
    return rc;
  }
  o->into_cgroup = false;
  rc = mly_process_spawn(m, o, pid);
  int back = sv_cg_leave(p->cg);
  if (back < 0) { /* then a cgroup.kill would kill the supervisor too */
    p->sv->cg_stuck = true;
    sv_logf(p->sv, p->name, "cannot move back out of its cgroup: %s; "
            "stopping programs one process at a time from now on",
            mly_strerror(back));
  }
  return rc;
}

/* For the figure logged at exit: fork's cost grows with the supervisor's
 * memory, and benchmarks tell it apart from the supervisor's own work. */
static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int sv_tree_spawn(sv_proc *p, mly_machine *m, mly_process_options *o,
                  int *pid) {
  sv *s = p->sv;
  uint64_t t0 = thread_cpu_ns();
  int rc = 0;
  if (p->cg && !s->no_clone3) {
    o->into_cgroup = true;
    o->cgroup_fd = sv_cg_fd(p->cg);
    rc = mly_process_spawn(m, o, pid);
    if (rc == MLY_ENOSYS) {
      s->no_clone3 = true;
      sv_logf(s, "mealy", "this kernel cannot start a child in a cgroup "
              "(clone3): the supervisor forks from inside each cgroup");
    }
  }
  if (p->cg && s->no_clone3) rc = spawn_from_inside(p, m, o, pid);
  else if (p->cg == NULL) rc = mly_process_spawn(m, o, pid);
  s->spawn_cpu_ns += thread_cpu_ns() - t0;
  s->spawns++;
  return rc;
}

typedef struct orphan_walk {
  sv_proc *p;
  int sig;             /* 0: only count */
  bool once;           /* only those not signalled yet, and note them */
  size_t count;
  int *pids;
  size_t max;
  bool later;          /* after the stop: not those started since */
} orphan_walk;

/* Clock ticks since boot, as /proc/PID/stat counts start times. */
static uint64_t boot_ticks(void) {
  struct timespec ts;
  long hz = sysconf(_SC_CLK_TCK);
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) /
         (1000000000u / (uint64_t)(hz > 0 ? hz : 100));
}

/* Whether pid was started after the stop signal went out: in a later
 * tick (one started within the stop's own tick counts as there before).
 * Such a process is the program's answer to the signal (its cleanup),
 * or a new process under a reused pid: it does not get the signal. */
static bool started_after_stop(const sv_proc *p, int pid) {
  uint64_t t;
  return p->stop_tick && mly_process_start_time(pid, &t) == 0 &&
         t > p->stop_tick;
}

static void comm_of(int pid, char *out, size_t len) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/comm", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? 0 : read(fd, out, len - 1);
  if (fd >= 0) close(fd);
  out[n > 0 ? n : 0] = '\0';
}

/* A process started at most this many clock ticks (10 ms each) before
 * the stop may have been between its fork and its exec when it had the
 * signal. */
#define FORK_EXEC_TICKS 5

/* Whether pid was started so shortly before the stop that it may have
 * had the signal between fork and exec. */
static bool young_at_stop(const sv_proc *p, int pid) {
  uint64_t t;
  return p->stop_tick && mly_process_start_time(pid, &t) == 0 &&
         t + FORK_EXEC_TICKS >= p->stop_tick;
}

/* Whether pid is to get the stop signal now: not yet; or it has exec'd
 * since and was started just before the stop (a shell's child between
 * fork and exec catches the signal with the shell's handler, and the
 * exec forgets it).  One that was there longer had the signal for good:
 * if it exec'd since, that exec was its answer (a TERM trap that execs
 * its cleanup), which keeps the grace, as under systemd or s6, which
 * signal each process once. */
static bool note_signalled(sv_proc *p, int pid) {
  char comm[16];
  comm_of(pid, comm, sizeof comm);
  for (size_t i = 0; i < p->nsignalled; i++)
    if (p->signalled[i].pid == pid) {
      if (strcmp(p->signalled[i].comm, comm) == 0) return false;
      memcpy(p->signalled[i].comm, comm, sizeof comm);
      return young_at_stop(p, pid);
    }
  if (p->nsignalled < sizeof p->signalled / sizeof p->signalled[0]) {
    p->signalled[p->nsignalled].pid = pid;
    memcpy(p->signalled[p->nsignalled++].comm, comm, sizeof comm);
  }
  return true;
}

static bool had_group_signal(const sv_proc *p, int pid) {
  int pg = getpgid(pid);
  return pid == p->pid || (pg > 0 && (pg == p->pgid || pg == p->main_pgid));
}

static int visit_orphan(sv *s, int pid, void *arg) {
  (void)s;
  orphan_walk *w = arg;
  if (reaper_marker(pid) != w->p->instance) return 0;
  /* the main process, and one in the program's group or in its main
   * process's, had the stop signal with it (or was started after it, by
   * one that had it) */
  if (w->once && had_group_signal(w->p, pid)) return 0;
  if (w->later && started_after_stop(w->p, pid)) return 0;
  if (w->once && !note_signalled(w->p, pid)) return 0;
  if (w->sig) kill(pid, w->sig); /* our child: its pid is not reused */
  if (w->sig && w->once) kill(pid, SIGCONT);
  if (w->pids && w->count < w->max) w->pids[w->count] = pid;
  w->count++;
  return 0;
}

static size_t orphans(sv_proc *p, int sig, int *pids, size_t max) {
  orphan_walk w = {p, sig, false, 0, pids, max, false};
  if (p->instance) reaper_each_orphan(p->sv, visit_orphan, &w);
  return w.count;
}

#define FREEZE_WAIT_MS 200 /* the supervisor waits, blocked, at most this */
#define CG_MAX_PIDS 16384  /* signalled one by one at a stop */

/* The stop signal (and SIGCONT) to every process in the cgroup once, as
 * at one instant: the cgroup is frozen while cgroup.procs is read and
 * each is signalled, then thawed.  Unfrozen, a process forked while the
 * list was read would escape the signal, and one forked after, in answer
 * to it (its cleanup, which has the rest of the grace), could not be
 * told from it.  Without a freezer (Linux < 5.2; or the supervisor is in
 * there, see spawn_from_inside) one reading of the list does. */
static void cg_signal_all(sv_proc *p, int sig) {
  int stack[256], self = (int)getpid();
  int *pids = malloc(CG_MAX_PIDS * sizeof *pids);
  size_t max = pids ? CG_MAX_PIDS : 256;
  if (pids == NULL) pids = stack;
  int fr = sv_cg_has(p->cg, self) ? MLY_EPERM
                                  : sv_cg_freeze(p->cg, FREEZE_WAIT_MS);
  int n = sv_cg_pids(p->cg, pids, max);
  for (int i = 0; i < n; i++)
    if (pids[i] != self) {
      note_signalled(p, pids[i]);
      kill(pids[i], sig);
      kill(pids[i], SIGCONT);
    }
  if (fr == 0 || fr == MLY_ETIMEDOUT) sv_cg_thaw(p->cg);
  if (pids != stack) free(pids);
}

/* While the rest drains: a process that had the stop signal at the
 * instant, just after its start, and has exec'd since (a shell's child
 * between fork and exec caught it with the shell's handler, and the
 * exec forgot it) has it again (note_signalled).  Never one that was not
 * there at the instant. */
static void cg_signal_execd(sv_proc *p, int sig) {
  for (size_t i = 0; i < p->nsignalled; i++) {
    int pid = p->signalled[i].pid;
    if (sv_cg_has(p->cg, pid) && !started_after_stop(p, pid) &&
        note_signalled(p, pid)) {
      kill(pid, sig);
      kill(pid, SIGCONT);
    }
  }
}

void sv_tree_signal_new(sv_proc *p) {
  orphan_walk w = {p, p->prog->stop_signal, true, 0, NULL, 0, true};
  if (p->cg) cg_signal_execd(p, p->prog->stop_signal);
  else if (p->instance) reaper_each_orphan(p->sv, visit_orphan, &w);
}

bool sv_tree_empty(sv_proc *p) {
  if (p->pid > 0) return false;
  if (p->cg) return sv_cg_populated(p->cg) <= 0;
  if (p->pgid > 0 && !reaper_group_empty(p->pgid)) return false;
  return orphans(p, 0, NULL, 0) == 0;
}

int sv_tree_signal(sv_proc *p, int sig) {
  sv *s = p->sv;
  if (p->cg && sig == p->prog->stop_signal && sig != SIGKILL) {
    cg_signal_all(p, sig);
    p->stop_tick = boot_ticks();
    return 0;
  }
  if (p->cg && !(sig == SIGKILL && s->cg_stuck)) return sv_cg_signal(p->cg, sig);
  if (p->cg) { /* the supervisor may be in there: each process but itself */
    int pids[1024], n = sv_cg_pids(p->cg, pids, 1024);
    for (int i = 0; i < n; i++)
      if (pids[i] != (int)getpid()) kill(pids[i], sig);
    return 0;
  }
  /* its main process, with its group when it leads one; and the group it
   * was started in, when its main process is another (MAINPID) */
  int mpg = p->pid > 0 ? getpgid(p->pid) : -1;
  bool group = p->pid > 0 && (p->pid == p->pgid || mpg == p->pid);
  /* each once: a main process (MAINPID) in the program's group has it
   * with the group */
  if (p->pid > 0 && (group || p->pgid <= 0 || mpg != p->pgid))
    mly_process_signal(s->rt, p->pid, sig, group);
  if (p->pgid > 0 && p->pgid != p->pid) reaper_group_signal(p->pgid, sig);
  if (sig == p->prog->stop_signal) { /* the orphans outside them, once */
    orphan_walk w = {p, sig, true, 0, NULL, 0, false};
    p->main_pgid = group ? p->pid : 0;
    if (p->instance) reaper_each_orphan(s, visit_orphan, &w);
    p->stop_tick = boot_ticks();
  } else {
    orphans(p, sig, NULL, 0);
  }
  return 0;
}

size_t sv_tree_pids(sv_proc *p, int *pids, size_t max) {
  if (p->cg) {
    int n = sv_cg_pids(p->cg, pids, max);
    return n < 0 ? 0 : (size_t)n;
  }
  size_t k = 0;
  if (p->pgid > 0 && (p->pid > 0 || !reaper_group_empty(p->pgid)))
    k = reaper_group_pids(p->pgid, pids, max);
  size_t n = orphans(p, 0, pids + k, max - k);
  return k + (n < max - k ? n : max - k);
}

void sv_tree_drain(sv_proc *p, bool on) {
  sv *s = p->sv;
  if (p->draining == on) return;
  p->draining = on;
  p->tree_evented = p->cg && sv_cg_watch(p->cg, on) == 0;
  if (on && p->cg && !p->tree_evented) /* then it is looked at */
    sv_logf(s, p->name, "cannot watch its cgroup.events: looking every 200 ms");
  if (on) DL_APPEND2(s->drainers, p, drain_prev, drain_next);
  else DL_DELETE2(s->drainers, p, drain_prev, drain_next);
}

void sv_tree_close(sv_proc *p) {
  sv *s = p->sv;
  sv_tree_drain(p, false);
  if (p->instance) HASH_DELETE(hh_inst, s->by_inst, p);
  p->instance = 0;
  sv_cg_close(p->cg);
  p->cg = NULL;
}

/* ---- the supervisor ---- */

void sv_tree_chld(sv *s) {
  reaper_reap_orphans(s);
  if (s->tracking == SV_TRACK_CGROUP) return; /* cgroup.events says it */
  sv_proc *p;
  DL_FOREACH2(s->drainers, p, drain_next) /* those whose child is gone */
    if (p->machine && p->pid == 0)
      mly_runtime_send(s->rt, p->machine, SV_EV_TREE, NULL);
}

typedef struct leftovers {
  int pids[256];
  size_t n;
} leftovers;

static int kill_leftover(sv *s, int pid, void *arg) {
  leftovers *l = arg;
  uint64_t inst = reaper_marker(pid);
  if (l->n < sizeof l->pids / sizeof l->pids[0]) l->pids[l->n++] = pid;
  if (inst == 0 && reaper_is_zombie(pid)) return 0; /* only to reap */
  sv_proc *p = NULL;
  HASH_FIND(hh_inst, s->by_inst, &inst, sizeof inst, p);
  sv_logf(s, p ? p->name : "mealy", "pid %d is left %s: SIGKILL", pid,
          inst ? "of this program" : "by a program (it has no marker)");
  kill(pid, SIGKILL);
  return 0;
}

/* Every program is down.  Nothing of theirs outlives the supervisor:
 * orphans still here are killed and reaped, a few rounds (each death may
 * hand over its own children), and the cgroups go. */
void sv_tree_end(sv *s) {
  for (int round = 0; round < 16; round++) {
    leftovers l = {.n = 0};
    reaper_each_orphan(s, kill_leftover, &l);
    if (l.n == 0) break;
    for (size_t i = 0; i < l.n; i++) {
      siginfo_t si;
      waitid(P_PID, (id_t)l.pids[i], &si, WEXITED);
    }
  }
  for (size_t i = 0; i < s->nprocs; i++) sv_tree_close(s->procs[i]);
  sv_cgroups_close(s->cgroups);
  s->cgroups = NULL;
  struct rusage ru;
  if (s->spawns && getrusage(RUSAGE_SELF, &ru) == 0)
    sv_logf(s, "mealy", "supervisor CPU: %.1f ms, %.1f ms of it in forking "
            "%llu children",
            (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3,
            (double)s->spawn_cpu_ns / 1e6, (unsigned long long)s->spawns);
  s->spawns = 0; /* once */
}
