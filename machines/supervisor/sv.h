/*
 * sv.h - the supervisor: what its files share.
 *
 * One `sv` per `mealy supervise` run.  Each program has an `sv_proc`,
 * owned by the sv (host memory, not machine data) so that status queries
 * and the control socket can read it at any time; a coprocess machine per
 * program runs its life, and a supervisor machine (the seed's MasterD)
 * starts programs in dependency order, stops them in reverse, and reloads.
 *
 * Coordination is level-triggered: a coprocess updates its sv_proc and
 * sends SV_EV_CHANGED to the supervisor machine, which looks at every
 * program again (sv_reconcile) and decides what to start or stop next.
 *
 * One program, one life at a time: a name has exactly one sv_proc and one
 * coprocess for as long as anything of it runs.  A reload that changes a
 * definition hands the new one to that same coprocess (next_prog), which
 * takes it only when its process is down; a removed program stays listed
 * (retiring) until its process has exited.  So no order of commands,
 * reloads and exits can put two processes of one program side by side.
 */
#ifndef MLY_SV_H
#define MLY_SV_H

#include <stdio.h>
#include <uthash.h>
#include <utlist.h>

#include "config.h"
#include "mealy.h"

/* events between the host, the supervisor and the coprocesses */
enum {
  SV_EV_START = 1, /* coprocess: be up (clears fatal)                  */
  SV_EV_STOP,      /* coprocess: be down                               */
  SV_EV_RESTART,   /* coprocess: stop if running, then up again        */
  SV_EV_SIGNAL,    /* coprocess: payload int signal for the child      */
  SV_EV_NOTIFIED,  /* coprocess: the child wrote its readiness line    */
  SV_EV_CHANGED,   /* supervisor: a program's state changed            */
  SV_EV_RELOAD,    /* supervisor: re-read the configuration            */
  SV_EV_SHUTDOWN,  /* supervisor: stop everything and exit             */
  SV_EV_SAVE,      /* sv-program record: payload bin, the new memory   */
  SV_EV_REPLACE,   /* coprocess: next_prog is its new definition       */
  SV_EV_KILL,      /* coprocess: SIGKILL now, go down (shutdown)        */
  SV_EV_WAKE,      /* coprocess: a dependency became ready             */
  SV_EV_TREE,      /* coprocess: its process tree may have emptied     */
  SV_EV_WATCHDOG   /* coprocess: WATCHDOG=trigger: it has failed now   */
};

/* In every program's environment: NAME:SUPERVISOR_PID.INSTANCE */
#define SV_MARKER "MEALY_PROGRAM"

#define SV_SAVED_MAX 96

#define SV_TAIL_LINES 200

typedef struct sv sv;
typedef struct outq outq;
typedef struct sv_logpipe sv_logpipe;
struct sv_cg;
struct sv_cgroups;
struct sv_notify;

typedef struct sv_proc {
  sv *sv;
  const sv_program *prog; /* points into the config that defined it */
  char name[64];
  mly_id machine;
  /* life, as the coprocess reports it */
  int pid;                /* 0: no process */
  uint64_t started_ms;    /* monotonic ms at spawn */
  uint32_t restarts;
  bool has_exit;
  int last_exit;          /* exit code, when last_signal is 0 */
  int last_signal;
  int64_t last_backoff_ms;
  int64_t cur_backoff_ms; /* 0: next delay is the initial one */
  int64_t *backoffs;      /* every delay chosen, for tests and status */
  size_t nbackoffs, backoff_cap;
  bool want_up;           /* the coprocess tries to keep it running */
  bool ready;             /* up and ready: dependents may start */
  bool fatal;             /* gave up; stays down until started by hand */
  bool held_down;         /* stopped by hand: stays down */
  /* state_dir (state.c) */
  mly_id rec;             /* its durable sv-program record, or 0 */
  uint64_t start_time;    /* of pid, from /proc: pid reuse is told apart */
  int adopt_pid;          /* a child left by the previous run, to adopt */
  uint64_t adopt_start;
  bool adopt_to_stop;     /* kept down, its child alive: the previous run
                             died stopping it; adopted to finish the stop */
  unsigned char saved[SV_SAVED_MAX]; /* what the record holds */
  bool saved_once;
  sv_logpipe *notify;     /* readiness pipe of the current child; the pipe
                             clears this when it closes */
  /* sd_notify (notify.c): the program's NOTIFY_SOCKET and what it said */
  struct sv_notify *sdn;  /* its socket, while its definition wants one */
  char status[256];       /* STATUS=, as sent (ctl escapes it) */
  int main_pid;           /* MAINPID=, checked to be of the program; 0 */
  uint64_t main_start;    /* its start time: pid reuse is told apart */
  bool sd_ready;          /* READY=1 since the spawn (or RELOADING=1) */
  bool sd_reloading;      /* RELOADING=1, until READY=1 */
  bool sd_stopping;       /* STOPPING=1 */
  int sd_errno;           /* ERRNO=, 0: none */
  uint64_t wd_last_ms;    /* monotonic ms of the last WATCHDOG=1 */
  int64_t wd_usec_override; /* WATCHDOG_USEC= from the program, 0: none */
  uint64_t wd_kicks;      /* WATCHDOG=1 messages taken (tests poll this) */
  uint64_t wd_expired;    /* lives ended by the watchdog */
  uint64_t sd_accepted, sd_refused; /* datagrams taken / refused */
  uint64_t *restart_times; /* ring for the intensity limit (ms) */
  uint32_t nrestart_times;
  /* supervisor bookkeeping */
  const sv_program *next_prog; /* a reload's new definition, taken by the
                                  coprocess once its process is down */
  bool launched;          /* START sent (first start, or added by a reload) */
  bool stop_sent;
  bool retiring;          /* removed by a reload: listed until it is down */
  bool waiting;           /* the coprocess waits for its dependencies */
  /* output: the last lines, as bytes (a line may hold a NUL) */
  char *tail[SV_TAIL_LINES];
  uint32_t tail_len[SV_TAIL_LINES];
  size_t tail_next, tail_count;
  uint64_t log_bytes[2];  /* stdout, stderr: bytes of lines passed on */
  uint64_t log_dropped[2]; /* ... and lines dropped (a log that cannot
                              rotate, our own output not read) */
  /* its processes as a whole (tree.c) */
  uint64_t instance;      /* of the current tree, named by its marker */
  int pgid;               /* the current tree's process group */
  struct sv_cg *cg;       /* its cgroup (cgroup tracking) */
  bool draining;          /* waiting for what is left of its tree */
  bool tree_evented;      /* its cgroup says when it empties: no looking */
  struct {                /* processes that have had the stop signal, */
    int pid;              /* with their name then: one that exec'd since */
    char comm[16];        /* may have lost it (a shell's fork, caught by */
  } signalled[32];        /* the shell's handler before it exec'd) */
  size_t nsignalled;
  int main_pgid;          /* its main process's group, when that had the
                             stop signal as a group (MAINPID) */
  uint64_t stop_tick;     /* the stop signal went out (boot clock ticks,
                             as /proc/PID/stat's start times); 0: not yet */
  struct sv_proc *drain_prev, *drain_next;
  /* look-ups (supervisor.c) */
  UT_hash_handle hh_name; /* by name (one proc per name) */
  UT_hash_handle hh_pid;  /* by the pid of its child */
  UT_hash_handle hh_inst; /* by instance */
} sv_proc;

typedef struct sv_kept { /* a record found in the journal at start */
  mly_id id;
  char name[64];
  bool claimed;
} sv_kept;

/* svlog.c: the supervisor's log, and a rate limit for lines an outsider
 * can cause */
#define SV_RL_BURST 10
#define SV_RL_WINDOW_MS 2000
typedef struct sv_ratelimit {
  uint64_t start;      /* ms, monotonic: the current window */
  unsigned n;          /* lines in it */
  uint64_t suppressed; /* not logged, not yet said */
} sv_ratelimit;
struct sv {
  mly_runtime *rt;
  uv_loop_t *loop;
  outq *out, *err;        /* its stdout and stderr, never blocking */
  sv_config *cfg;
  sv_config **old_cfgs;   /* kept until exit: retiring procs point there */
  size_t nold;
  sv_proc **procs;
  size_t nprocs;
  mly_type *coproc_type, *sup_type;
  mly_id sup;
  bool stopping;
  bool reload_failed;
  sv_config *reload_cfg;  /* read by `ctl reload`, for SV_EV_RELOAD */
  uint64_t rng;           /* xorshift state for backoff jitter */
  int exit_status;
  sv_logpipe *pipes;      /* log readers still draining */
  void *ctl;              /* control server */
  char config_path[4096];
  const char *config_text; /* built-in: reload parses this again */
  size_t config_len;
  bool durable;           /* a state_dir: the journal is open */
  int state_fd;           /* the state directory, or -1 */
  mly_type *rec_type;
  sv_kept *kept;
  size_t nkept;
  /* look-ups: O(1) whatever the number of programs */
  sv_proc *by_name, *by_pid, *by_inst;
  size_t nretiring;       /* reconcile skips what no program needs */
  size_t nunlaunched;
  /* process tracking (tree.c) */
  sv_tracking tracking;   /* in use: SV_TRACK_CGROUP or SV_TRACK_PGROUP */
  struct sv_cgroups *cgroups;
  uint64_t instances;
  sv_proc *drainers;      /* programs waiting for their tree to empty */
  bool cg_stuck;          /* the supervisor may be in a program's cgroup */
  bool no_clone3;         /* no CLONE_INTO_CGROUP: fork from inside */
  uint64_t spawn_cpu_ns;  /* CPU spent in spawning children (fork) */
  uint64_t spawns;
  struct promhttp *metrics; /* the metrics: listener, or NULL */
  sv_ratelimit metrics_rl;
  uint64_t started_ms;    /* monotonic, for uptime */
  /* sd_notify (notify.c) */
  char notify_dir[80];    /* the programs' sockets: "" until the first */
  bool notify_dir_made;   /* a temporary one, removed at exit */
  const char *state_dir;  /* the run's, or NULL */
  void *manager;          /* our own NOTIFY_SOCKET, or NULL */
};

/* Load the configuration again, from the file or the built-in text. */
int sv_reload_config(sv *s, sv_config **out, char *err, size_t errlen);

void sv_logf(sv *s, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sv_logf_rl(sv *s, sv_ratelimit *rl, const char *who, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));
void sv_rl_flush(sv *s, sv_ratelimit *rl, const char *who);

/* coprocess.c */
int coproc_register(mly_runtime *rt, mly_type **out);
int sv_proc_spawn_machine(sv *s, sv_proc *p, mly_machine *parent);
/* Every state sv_proc_state says of a program with a machine. */
const char *const *coproc_states(size_t *n);

/* supervisor.c */
int sup_register(mly_runtime *rt, mly_type **out);
sv_proc *sv_proc_new(sv *s, const sv_program *prog);
void sv_proc_free(sv_proc *p);
sv_proc *sv_find(sv *s, const char *name);   /* retiring too; O(1) */
sv_proc *sv_find_pid(sv *s, int pid);         /* whose child is pid; O(1) */
void sv_proc_set_pid(sv_proc *p, int pid);    /* 0: no child */
/* Whether every program g depends on is up and ready. */
bool sv_deps_ready(sv *s, const sv_program *g);
const char *sv_proc_state(sv *s, const sv_proc *p, char *buf, size_t len);
void sv_proc_tail_add(sv_proc *p, const char *line, size_t len);

/* logpipe.c: a pipe from a child's stdout/stderr (or its readiness fd) */
typedef enum { LP_STDOUT = 1, LP_STDERR = 2, LP_NOTIFY = 3 } lp_kind;
/* Opens a pipe; *child_fd is the end to hand to the child (close it in
 * the parent after the spawn with logpipe_spawned). */
int logpipe_open(sv *s, sv_proc *p, lp_kind kind, int *child_fd,
                 sv_logpipe **out);
void logpipe_spawned(sv_logpipe *lp); /* closes the child's end here */
/* With a state directory, output goes through FIFOs there (not pipes):
 * an adopted child's are opened again, and what it wrote while no
 * supervisor ran is read. */
void logpipe_adopt(sv *s, sv_proc *p);
void logpipe_detach(sv_logpipe *lp);  /* the proc is going away */
void logpipe_forget_proc(sv *s, sv_proc *p); /* before p is freed */
void logpipe_close_all(sv *s);
/* Every log file opened again (SIGHUP, `ctl reopen`). */
void logpipe_reopen_all(sv *s);

/* state.c: memory across the supervisor's own death (state_dir) */
int sv_state_open(sv *s, const char *dir, char *err, size_t errlen);
void sv_state_attach(sv *s, sv_proc *p); /* before its machine starts */
void sv_state_leftovers(sv *s);          /* after every program attached */
void sv_state_save(sv_proc *p);          /* on every change */
void sv_state_forget(sv_proc *p);        /* removed, or a clean stop */

/* reaper.c: the supervisor is a subreaper; orphans are reaped here */
int reaper_enable(void);
int reaper_reap_orphans(sv *s); /* returns how many */
/* fn(pid) for each living child of the supervisor the runtime did not
 * spawn (an orphan it received); stops at fn's first non-zero */
int reaper_each_orphan(sv *s, int (*fn)(sv *s, int pid, void *arg),
                       void *arg);
uint64_t reaper_marker(int pid); /* the instance its marker names, or 0 */
bool reaper_is_zombie(int pid);
bool reaper_group_empty(int pgid); /* a group whose leader was reaped */
int reaper_group_signal(int pgid, int sig);
size_t reaper_group_pids(int pgid, int *pids, size_t max); /* scans /proc */

/* tree.c: a program's processes as a whole (cgroup, or pgroup + marker) */
int sv_tree_setup(sv *s, const char *state_dir); /* logs what is in use */
/* Limits the tracking in use cannot apply: FILE:LINE:COL into err. */
int sv_tree_check_limits(sv *s, const sv_config *cfg, char *err, size_t len);
int sv_tree_prepare(sv_proc *p);         /* before each spawn */
void sv_tree_marker(const sv_proc *p, char *buf, size_t len); /* value */
/* mly_process_spawn, into the program's cgroup when there is one */
int sv_tree_spawn(sv_proc *p, mly_machine *m, mly_process_options *o,
                  int *pid);
bool sv_tree_empty(sv_proc *p);          /* child reaped, nothing left */
int sv_tree_signal(sv_proc *p, int sig); /* every process of it */
/* While the rest drains, the stop signal and SIGCONT to those of its
 * processes that were there at the stop and have not had it: orphans
 * that were outside its group (pgroup); any started just before the
 * stop that exec'd since having it (it may have been lost between fork
 * and exec; an older one's exec is its answer).  Never to one started
 * after the stop. */
void sv_tree_signal_new(sv_proc *p);
size_t sv_tree_pids(sv_proc *p, int *pids, size_t max);
void sv_tree_drain(sv_proc *p, bool on); /* SV_EV_TREE when it changes */
void sv_tree_close(sv_proc *p);
void sv_tree_chld(sv *s);                /* on SIGCHLD */
void sv_tree_end(sv *s);                 /* every program is down */

/* notify.c: sd_notify, the server side (one datagram socket a program)
 * and the client side (the supervisor's own readiness, to systemd) */
/* Opens p's socket if its definition wants one (ready: sd_notify or a
 * watchdog) and none is open; path gets NOTIFY_SOCKET's value, or ""
 * when none is wanted.  Logs and returns < 0 on failure. */
int sv_notify_prepare(sv_proc *p, char *path, size_t len);
/* A new life: what the previous one said is forgotten. */
void sv_notify_reset(sv_proc *p);
void sv_notify_close(sv_proc *p);    /* p goes, or wants no socket */
void sv_notify_end(sv *s);           /* the directory, at exit */
/* Whether pid is one of p's processes (its child, MAINPID, its cgroup or
 * process group, a marked orphan of ours). */
bool sv_notify_belongs(sv_proc *p, int pid);
/* The watchdog interval in force for p (ms), 0: none. */
int64_t sv_watchdog_ms(const sv_proc *p);
/* The supervisor to its own manager ($NOTIFY_SOCKET): "READY=1" etc.;
 * nothing when it was not started with one. */
bool sv_manager_notify(sv *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Once everything that must be up is: READY=1 (once); and STATUS=. */
void sv_manager_check_ready(sv *s);
int sv_manager_setup(sv *s);         /* reads NOTIFY_SOCKET, WATCHDOG_USEC */
void sv_manager_end(sv *s);

/* control.c: the unix socket */
int ctl_start(sv *s, const char *path, char *err, size_t errlen);
void ctl_stop(sv *s);
uint32_t ctl_clients(const sv *s);

/* svmetrics.c: the supervisor's figures, as a metrics source of its
 * runtime, and the metrics: listener */
int sv_metrics_start(sv *s, char *err, size_t errlen);
void sv_metrics_stop(sv *s);
/* The whole text as a str value, or an error sentence (control.c). */
const char *sv_metrics_text(sv *s, mly_value **out);

/* run.c: the whole thing */
typedef struct sv_run_options {
  const char *config_path;     /* the file, or a name for config_text */
  const char *config_text;     /* a built-in configuration, or NULL */
  size_t config_len;
  const char *socket_override; /* NULL: the config's */
  const char *state_dir;       /* NULL: the config's (or none) */
  FILE *log;
} sv_run_options;
/* < 0: an MLY_E* error (already logged); else the exit status. */
int sv_run(const sv_run_options *o);

#endif
