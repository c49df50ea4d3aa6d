/*
 * cgroup.h - cgroup v2 for the supervisor: one cgroup per program.
 *
 * sv_cgroups is the supervisor's own subtree; sv_cg is one program's
 * cgroup in it.  Everything a program starts stays in its cgroup, whatever
 * process group or session it moves to, so it can be listed, signalled,
 * killed as a whole (cgroup.kill) and seen empty ("populated 0" in
 * cgroup.events, watched through inotify while it matters: no polling).
 */
#ifndef MLY_SV_CGROUP_H
#define MLY_SV_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"

typedef struct sv_cgroups sv_cgroups;
typedef struct sv_cg sv_cg;

/* Finds the supervisor's cgroup and makes a subtree for its programs.  If
 * the supervisor is alone in its cgroup (a systemd unit with Delegate=yes,
 * a container), that cgroup is the subtree and the supervisor moves into
 * its leaf "supervisor" (as systemd's init.scope), so that controllers can
 * be enabled for the programs; otherwise a child "mealy-ID" is made beside
 * it.  On failure, returns a negative MLY_E* and says why in `why`. */
int sv_cgroups_open(const char *id, sv_cgroups **out, char *why, size_t len);
const char *sv_cgroups_path(const sv_cgroups *g);
/* Which limits can be set: bit (1 << SV_LIMIT_*) per enabled controller. */
unsigned sv_cgroups_limits(const sv_cgroups *g);
/* The controllers the programs' cgroups have, e.g. "cpu memory pids". */
const char *sv_cgroups_controllers(const sv_cgroups *g);
/* Thaws every program's cgroup found frozen in the subtree: a
 * supervisor killed while it signalled one (sv_cg_freeze, at most
 * 200 ms) left it frozen, and whatever runs in it would stay so (even
 * of a program kept down, never opened again).  thawed(name, rc, arg)
 * is called for each one found frozen: name its leaf ("program-NAME"),
 * rc 0 or why the thaw failed.  Returns how many were found frozen. */
int sv_cgroups_thaw_left(sv_cgroups *g,
                         void (*thawed)(const char *name, int rc, void *arg),
                         void *arg);
/* Removes the subtree if it was made here (its cgroups must be empty). */
void sv_cgroups_close(sv_cgroups *g);

/* A program's cgroup `name` (made, or found left by a previous run);
 * on_change(arg) is called when cgroup.events changes (sv_cg_watch). */
int sv_cg_open(sv_cgroups *g, uv_loop_t *loop, const char *name,
               void (*on_change)(void *arg), void *arg, sv_cg **out);
/* Calls on_change when cgroup.events changes, while on. */
int sv_cg_watch(sv_cg *c, bool on);
/* Sets memory.max, cpu.max and pids.max ("max" for those not set). */
int sv_cg_set_limits(sv_cg *c, const sv_limits *l);
/* Its directory's descriptor: a child is created in it (clone3). */
int sv_cg_fd(const sv_cg *c);
/* The supervisor moves into the cgroup (to fork a child there, where
 * clone3 cannot) and back. */
int sv_cg_enter(sv_cg *c);
int sv_cg_leave(sv_cg *c);
/* 1: some process is in it, 0: empty, < 0: error. */
int sv_cg_populated(sv_cg *c);
/* Up to max pids of its processes into pids; returns how many (or < 0). */
int sv_cg_pids(sv_cg *c, int *pids, size_t max);
/* SIGKILL: cgroup.kill; any other signal: to each process in it. */
int sv_cg_signal(sv_cg *c, int sig);
/* Freezes it (cgroup.freeze) and waits, at most wait_ms (blocking), for
 * cgroup.events to say every process in it is frozen: then none forks
 * or handles a signal until sv_cg_thaw.  0 frozen; MLY_ETIMEDOUT still
 * freezing (thaw it all the same); other < 0: not frozen (no freezer
 * before Linux 5.2).  Never on a cgroup the caller is in. */
int sv_cg_freeze(sv_cg *c, int wait_ms);
int sv_cg_thaw(sv_cg *c);
/* Before a start: a cgroup emptied through cgroup.kill is made afresh
 * (the kernel would kill what starts in it).  0 when nothing to do. */
int sv_cg_renew(sv_cg *c);
/* Whether pid is in this cgroup now (/proc/PID/cgroup). */
bool sv_cg_has(const sv_cg *c, int pid);
/* Stops watching, removes the cgroup if it is empty; frees c later. */
void sv_cg_close(sv_cg *c);

#endif
