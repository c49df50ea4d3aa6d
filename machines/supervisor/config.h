/*
 * config.h - the supervisor's configuration: what `mealy supervise FILE`
 * reads, validated completely before anything starts.
 *
 *   socket: /run/mealy.sock          # control socket (default ./mealy.sock)
 *   socket_mode: "0600"              # octal string (default 0600)
 *   log_dir: /var/log/mealy          # where relative log files go (default .)
 *   shutdown_grace: 30s              # whole-supervisor stop deadline
 *   on_fatal: stay | shutdown        # a program going fatal stops everything?
 *   state_dir: /var/lib/mealy        # journal: survive the supervisor's death
 *   orphans: adopt | stop            # children found alive after a crash
 *   sync: always | never | interval:100ms
 *   tracking: auto | cgroup | pgroup # how a program's processes are found
 *   control_timeout: 30s             # a control connection idle or stalled
 *                                    # that long is closed
 *   control_max_clients: 256         # control connections at once
 *   metrics: 127.0.0.1:9464          # Prometheus text over HTTP: a unix
 *                                    # socket path, or a loopback HOST:PORT
 *   programs:
 *     web:
 *       command: [/usr/bin/python3, -m, http.server, "8080"]
 *       shell: false                 # a string command needs shell: true
 *       cwd: /srv/www
 *       env: {PORT: "8080", DEBUG: null}   # null unsets an inherited var
 *       restart: always | on-failure | never
 *       success_exit_codes: [0]
 *       backoff: {initial: 100ms, max: 30s, multiplier: 2.0, jitter: 0.1,
 *                 reset_after: 10s}
 *       intensity: {max_restarts: 5, within: 60s}
 *       start_timeout: 5s            # ready: none: min uptime to count as
 *                                    # started; notify: readiness deadline,
 *                                    # a failed start when missed
 *       ready: none | 2s | sd_notify | {notify_fd: 3}
 *                                    # sd_notify: READY=1 on $NOTIFY_SOCKET
 *       watchdog: 10s                # WATCHDOG=1 at least that often, or
 *                                    # it has failed (stop, restart policy)
 *       stop_signal: TERM
 *       stop_grace: 10s
 *       depends_on: [db]
 *       stdout: inherit | FILE | {file: FILE, max_size: 10MB, keep: 5}
 *       stderr: inherit | FILE | {...}
 *       user: www-data               # its groups, HOME, USER, LOGNAME, SHELL too
 *       group: www-data
 *       limits: {memory_max: 256MB, cpu_max: 1.5, pids_max: 100}  # cgroups
 *       env_inherit: true            # false: a clean environment
 *
 *   env_inherit: true                # the default for every program
 */
#ifndef MLY_SUPERVISOR_CONFIG_H
#define MLY_SUPERVISOR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "mealy.h"

typedef enum sv_restart { SV_RESTART_ALWAYS = 0, SV_RESTART_ON_FAILURE,
                          SV_RESTART_NEVER } sv_restart;
typedef enum sv_ready { SV_READY_NONE = 0, SV_READY_DELAY, SV_READY_NOTIFY,
                        SV_READY_SD_NOTIFY } sv_ready;
typedef enum sv_output { SV_OUT_INHERIT = 0, SV_OUT_FILE } sv_output;
typedef enum sv_on_fatal { SV_FATAL_STAY = 0, SV_FATAL_SHUTDOWN } sv_on_fatal;
typedef enum sv_orphans { SV_ORPHANS_ADOPT = 0, SV_ORPHANS_STOP } sv_orphans;
typedef enum sv_tracking { SV_TRACK_AUTO = 0, SV_TRACK_CGROUP,
                           SV_TRACK_PGROUP } sv_tracking;

/* A program's cgroup limits (cgroup v2 tracking only); 0: not set. */
enum { SV_LIMIT_MEMORY = 0, SV_LIMIT_CPU, SV_LIMIT_PIDS, SV_NLIMITS };
typedef struct sv_limits {
  uint64_t memory_max;   /* bytes: memory.max */
  double cpu_max;        /* CPUs, e.g. 0.5: cpu.max "50000 100000" */
  uint64_t pids_max;     /* pids.max */
  int line[SV_NLIMITS], col[SV_NLIMITS]; /* where each is set, for messages */
} sv_limits;

typedef struct sv_log {
  sv_output mode;
  char *file;         /* resolved against log_dir when relative */
  uint64_t max_size;  /* bytes before rotation; 0 = never rotate (default 10MB) */
  uint32_t keep;      /* rotated files kept: FILE.1 .. FILE.keep (default 5) */
} sv_log;

typedef struct sv_env_op {
  char *name;
  char *value;        /* NULL: unset */
} sv_env_op;

typedef struct sv_program {
  char *name;
  char **argv;        /* NULL-terminated; for shell: {"/bin/sh","-c",cmd,NULL} */
  size_t argc;
  bool shell;
  char *cwd;          /* NULL: inherit */
  sv_env_op *env;
  size_t nenv;
  sv_restart restart;
  int *success_codes; /* default {0} */
  size_t nsuccess;
  struct {
    int64_t initial_ms;   /* default 100 */
    int64_t max_ms;       /* default 30000 */
    double multiplier;    /* default 2.0, >= 1.0 */
    double jitter;        /* default 0.0, in [0, 1] */
    int64_t reset_after_ms; /* stable uptime that resets backoff, default 10000 */
  } backoff;
  struct {
    uint32_t max_restarts;  /* default 5 */
    int64_t within_ms;      /* default 60000 */
  } intensity;
  int64_t start_timeout_ms; /* default 0: started at exec */
  sv_ready ready;
  int64_t ready_delay_ms;   /* SV_READY_DELAY */
  int notify_fd;            /* SV_READY_NOTIFY: fd number in the child (>= 3) */
  int64_t watchdog_ms;      /* 0: none; else WATCHDOG=1 due that often */
  int stop_signal;          /* default SIGTERM */
  int64_t stop_grace_ms;    /* default 10000 */
  char **depends_on;
  size_t ndeps;
  sv_log out, err;
  char *user, *group;       /* NULL: unchanged */
  uid_t uid;                /* resolved at load time when user is set */
  gid_t gid;
  bool has_uid, has_gid;
  sv_limits limits;
  /* the user's passwd entry (NULL: a numeric id without one) and its
   * supplementary groups (getgrouplist for the user and gid) */
  char *login, *home, *shell_path;
  gid_t *groups;
  size_t ngroups;
  /* env_inherit: the supervisor's environment underneath env: (default,
   * or the top-level env_inherit); false: only PATH, the user's HOME,
   * USER, LOGNAME, SHELL, and env: */
  bool env_inherit;
  bool env_inherit_set;
  /* where the program was defined, for messages */
  int line, col;
} sv_program;

typedef struct sv_config {
  char *path;
  char *socket;           /* default "mealy.sock" */
  unsigned socket_mode;   /* socket_mode: 0600 (octal); the peer's uid is
                             checked whatever the mode */
  char *log_dir;          /* default "." */
  int64_t shutdown_grace_ms; /* default 30000 */
  sv_on_fatal on_fatal;
  char *state_dir;        /* NULL: nothing is kept across a crash */
  sv_orphans orphans;     /* default adopt */
  sv_tracking tracking;   /* default auto: cgroup v2 when it can */
  bool env_inherit;       /* default true: programs see our environment */
  mly_sync sync;          /* default always */
  uint32_t sync_interval_ms;
  int64_t control_timeout_ms;   /* default 30000 */
  uint32_t control_max_clients; /* default 256 */
  char *metrics;          /* NULL: no metrics listener (promhttp.h) */
  sv_program *programs;   /* in file order */
  size_t nprograms;
  size_t *start_order;    /* indexes into programs: dependencies first */
} sv_config;

/* Load and validate.  On error returns a negative MLY_E* and writes one
 * message "FILE:LINE:COL: what is wrong; what to do" into err. */
int sv_config_load(const char *path, sv_config **out, char *err, size_t errlen);
/* The same from a string (path is used only in messages). */
int sv_config_parse(const char *path, const char *text, size_t len,
                    sv_config **out, char *err, size_t errlen);
void sv_config_free(sv_config *c);

const sv_program *sv_config_find(const sv_config *c, const char *name);
/* Whether two definitions differ in anything that needs a restart. */
bool sv_program_changed(const sv_program *a, const sv_program *b);

/* "TERM", "SIGTERM", "15", "RTMIN+6" -> 15, ...; -1 if unknown. */
int sv_signal_number(const char *name);
/* The name of a signal 1..SIGRTMAX without "SIG": "TERM", a real-time
 * one as kill -l prints it ("RTMIN+6", "RTMAX-2"), one with neither its
 * number ("32"); a string literal.  NULL for no signal (0, negative, past
 * SIGRTMAX). */
const char *sv_signal_name(int signum);

#endif
