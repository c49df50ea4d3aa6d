/*
 * config.c - loading the supervisor's configuration file.
 *
 * `mealy supervise FILE` reads one YAML file (the format is in config.h)
 * and refuses it as a whole, before anything starts, if any part of it is
 * wrong: a supervisor that starts half a system and then trips over a typo
 * is worse than one that says where the typo is.  So everything that can
 * be checked at load time is checked here - types, ranges, names, users
 * and groups, the dependency graph - and the first problem is reported as
 * "FILE:LINE:COL: what is wrong; what to do".
 *
 * The YAML itself is read by libmealy's reader (mealy.h, "Reading YAML
 * files": positions, typed getters, field tables, the limits on what a
 * file may cost); this file holds only the supervisor's own keys, as
 * field tables of handlers.  The result is plain malloc'd memory owned
 * by the sv_config; the YAML document is dropped on return.  In YAML an
 * empty value is null, and here null means "not set": the default
 * applies.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the GNU strerror_r, which returns its string */
#endif
#include "config.h"
#include "promhttp.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "mealy.h"

#define NAME_LIMIT 63                        /* program names */
#define MIB (1024ull * 1024)
#define LOG_SIZE_DEFAULT (10 * MIB)
#define LOG_KEEP_DEFAULT 5
#define LOG_KEEP_LIMIT 1000                  /* rotation renames each one */
#define FD_LIMIT 1023
#define PWBUF_LIMIT (1u << 20)
/* ------------------------------------------------------------------ */
/* Errors.                                                             */

typedef struct named {
  const char *name;
  size_t idx;
} named;

typedef struct ctx {
  sv_config *cfg;
  named *byname;           /* programs sorted by name, for lookups */
  size_t *stamp;           /* per program: 1 + last program naming it */
} ctx;

/* The reader (mealy.h, "Reading YAML files") carries the ctx. */
#define CTX(c) ((ctx *)mly_conf_user(c))

/* The tables below are the reader's field tables. */
typedef mly_conf_field field;

/* The first message into err: the load stops at it. */
typedef struct errbuf {
  char *err;
  size_t errlen;
} errbuf;

static void on_error(const mly_conf_msg *m, void *arg) {
  errbuf *e = arg;
  if (e->err && e->errlen) mly_conf_format(m, e->err, e->errlen);
}

/* Sorts v by name (then file order) and returns the file index of the
 * earliest repeat of a name, or SIZE_MAX; *first is its first use. */
static int named_cmp(const void *a, const void *b) {
  const named *x = a, *y = b;
  int r = strcmp(x->name, y->name);
  return r ? r : (x->idx > y->idx) - (x->idx < y->idx);
}

static size_t find_dup(named *v, size_t n, size_t *first) {
  size_t best = SIZE_MAX, run = 0;
  qsort(v, n, sizeof *v, named_cmp);
  for (size_t i = 1; i < n; i++) {
    if (strcmp(v[i - 1].name, v[i].name) != 0) run = i;
    else if (v[i].idx < best) best = v[i].idx, *first = v[run].idx;
  }
  return best;
}

/* ------------------------------------------------------------------ */
/* Signals.                                                            */

static const struct { const char *name; int num; } signals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},       {"QUIT", SIGQUIT},
    {"ILL", SIGILL},   {"TRAP", SIGTRAP},     {"ABRT", SIGABRT},
    {"BUS", SIGBUS},   {"FPE", SIGFPE},       {"KILL", SIGKILL},
    {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},     {"USR2", SIGUSR2},
    {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},     {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},     {"TTOU", SIGTTOU},
    {"URG", SIGURG},   {"XCPU", SIGXCPU},     {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
    {"IO", SIGIO},     {"SYS", SIGSYS},
#ifdef SIGSTKFLT
    {"STKFLT", SIGSTKFLT},
#endif
#ifdef SIGPWR
    {"PWR", SIGPWR},
#endif
};
#define NSIGNALS (sizeof signals / sizeof signals[0])

/* Real-time signals, named as kill -l and systemd name them: RTMIN+n in
 * the lower half, RTMAX-n in the upper.  Literals, so a name is never a
 * buffer of ours (callers keep the pointer, any thread). */
#define RT(n) {"RTMIN+" #n, "RTMAX-" #n}
static const char *const rt_names[][2] = {
    {"RTMIN", "RTMAX"}, RT(1),  RT(2),  RT(3),  RT(4),  RT(5),  RT(6),
    RT(7),  RT(8),  RT(9),  RT(10), RT(11), RT(12), RT(13), RT(14), RT(15),
    RT(16), RT(17), RT(18), RT(19), RT(20), RT(21), RT(22), RT(23), RT(24),
    RT(25), RT(26), RT(27), RT(28), RT(29), RT(30), RT(31), RT(32)};
#undef RT
#define NRT (int)(sizeof rt_names / sizeof rt_names[0])
/* A signal below SIGRTMIN with no name (glibc keeps 32 and 33): its
 * number. */
static const char *const num_names[] = {
    "0",  "1",  "2",  "3",  "4",  "5",  "6",  "7",  "8",  "9",  "10",
    "11", "12", "13", "14", "15", "16", "17", "18", "19", "20", "21",
    "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32",
    "33", "34", "35", "36", "37", "38", "39", "40"};
#define NNUM (int)(sizeof num_names / sizeof num_names[0])

/* "RTMIN", "RTMIN+6", "RTMAX-2" (after any SIG): its number, else -1. */
static int rt_number(const char *name) {
  bool min = strncasecmp(name, "RTMIN", 5) == 0;
  if (!min && strncasecmp(name, "RTMAX", 5) != 0) return -1;
  int64_t n = 0;
  const char *off = name + 5;
  if (*off && ((*off != (min ? '+' : '-')) ||
               !mly_conf_parse_int(off + 1, &n) || n < 0 || n >= NRT))
    return -1;
  int sig = min ? SIGRTMIN + (int)n : SIGRTMAX - (int)n;
  return sig >= SIGRTMIN && sig <= SIGRTMAX ? sig : -1;
}

int sv_signal_number(const char *name) {
  if (name == NULL) return -1;
  int64_t n;
  if (mly_conf_parse_int(name, &n)) return n >= 1 && n <= SIGRTMAX ? (int)n : -1;
  if (strncasecmp(name, "SIG", 3) == 0) name += 3;
  for (size_t i = 0; i < NSIGNALS; i++)
    if (strcasecmp(name, signals[i].name) == 0) return signals[i].num;
  return rt_number(name);
}

const char *sv_signal_name(int signum) {
  if (signum < 1 || signum > SIGRTMAX) return NULL;
  for (size_t i = 0; i < NSIGNALS; i++)
    if (signals[i].num == signum) return signals[i].name;
  if (signum >= SIGRTMIN) {
    int n = signum - SIGRTMIN, m = SIGRTMAX - signum;
    bool low = n <= (SIGRTMAX - SIGRTMIN) / 2;
    if ((low ? n : m) < NRT) return rt_names[low ? n : m][low ? 0 : 1];
  }
  return signum < NNUM ? num_names[signum] : NULL;
}

/* ------------------------------------------------------------------ */
/* Users and groups, resolved now so a typo fails the load, not the    */
/* start.  The libc wants a buffer of unknown size: grow it on ERANGE. */

static int lookup_fail(mly_conf *c, mly_conf_node *v, int rc, const char *what,
                       const char *name) {
  if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM)
    return mly_conf_bad(c, v, "unknown %s '%s'; create it, or write an existing %s "
               "name or a numeric id", what, mly_conf_show(name).s, what);
  char buf[128];
  mly_conf_bad(c, v, "cannot look up %s '%s': %s", what, mly_conf_show(name).s,
      strerror_r(rc, buf, sizeof buf));
  return -rc;
}

/* A numeric id that names no entry is used as it is (containers often
 * run with ids that have no passwd line). */
static bool numeric_id(const char *s, uint32_t *id) {
  int64_t n;
  if (!mly_conf_parse_int(s, &n) || n < 0 || n >= (int64_t)UINT32_MAX) return false;
  *id = (uint32_t)n;
  return true;
}

/* A user (with its primary group) or a group, by name, else a numeric
 * id: *id gets it.  One loop for both databases. */
static int lookup_id(mly_conf *c, mly_conf_node *v, bool user, const char *name,
                     uint32_t *id, gid_t *primary, bool *has_primary,
                     sv_program *pu) {
  struct passwd pw, *pwr = NULL;
  struct group gr, *grr = NULL;
  size_t size = 1024;
  char *buf = NULL;
  int rc;
  do {
    char *nb = realloc(buf, size *= 2);
    if (nb == NULL) return free(buf), mly_conf_nomem(c);
    buf = nb;
    rc = user ? getpwnam_r(name, &pw, buf, size, &pwr)
              : getgrnam_r(name, &gr, buf, size, &grr);
  } while (rc == ERANGE && size < PWBUF_LIMIT);
  bool found = user ? pwr != NULL : grr != NULL;
  if (found) *id = user ? pw.pw_uid : gr.gr_gid;
  if (found && user) *primary = pw.pw_gid, *has_primary = true;
  if (found && user && pu) { /* what the child's environment says of it */
    free(pu->login), free(pu->home), free(pu->shell_path);
    pu->login = strdup(pw.pw_name);
    pu->home = strdup(pw.pw_dir);
    pu->shell_path = strdup(*pw.pw_shell ? pw.pw_shell : "/bin/sh");
    if (!pu->login || !pu->home || !pu->shell_path) return free(buf), mly_conf_nomem(c);
  }
  free(buf);
  if (found || numeric_id(name, id)) return 0;
  return lookup_fail(c, v, rc, user ? "user" : "group", name);
}

static int lookup_user(mly_conf *c, mly_conf_node *v, sv_program *p,
                       gid_t *primary, bool *has_primary) {
  uint32_t id;
  int rc = lookup_id(c, v, true, p->user, &id, primary, has_primary, p);
  if (rc == 0) p->uid = (uid_t)id, p->has_uid = true;
  return rc;
}

static int lookup_group(mly_conf *c, mly_conf_node *v, sv_program *p) {
  uint32_t id;
  int rc = lookup_id(c, v, false, p->group, &id, NULL, NULL, NULL);
  if (rc == 0) p->gid = (gid_t)id, p->has_gid = true;
  return rc;
}

/* The user's supplementary groups, as initgroups would set them (the
 * program's gid among them); none for a numeric id without an entry. */
static int lookup_groups(mly_conf *c, sv_program *p) {
  if (p->login == NULL || !p->has_gid) return 0;
  int n = 32;
  for (;;) {
    gid_t *g = realloc(p->groups, (size_t)n * sizeof *g);
    if (g == NULL) return mly_conf_nomem(c);
    p->groups = g;
    int want = n;
    if (getgrouplist(p->login, p->gid, g, &want) >= 0) {
      p->ngroups = (size_t)want;
      return 0;
    }
    if (want <= n) want = n * 2; /* glibc says how many; others may not */
    if (want > 65536) return mly_conf_nomem(c);
    n = want;
  }
}

/* ------------------------------------------------------------------ */
/* Program settings.                                                   */

typedef struct pctx {
  sv_program *p;
  size_t idx;
  mly_conf_node *key;      /* the program's name, where messages point */
  mly_conf_node *command;  /* kept until shell: is known */
  gid_t primary;         /* the user's own group, when group is unset */
  bool has_primary;
  mly_conf_node *user;     /* where user: is, for a message */
  char where[96];        /* "in program 'web'" */
} pctx;

#define P(o) (((pctx *)(o))->p)

static int pf_command(mly_conf *c, void *o, mly_conf_node *v) {
  (void)c;
  ((pctx *)o)->command = v;
  return 0;
}

static int pf_shell(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_bool(c, v, "shell", &P(o)->shell);
}

static int pf_cwd(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_set_str(c, v, "cwd", &P(o)->cwd);
}

static bool env_name_ok(const char *s) {
  if (*s == '\0' || (*s >= '0' && *s <= '9')) return false;
  for (; *s; s++)
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9')))
      return false;
  return true;
}

static int env_entry(mly_conf *c, sv_program *p, mly_conf_node *k, mly_conf_node *v) {
  const char *name, *value = NULL;
  int rc = mly_conf_get_str(c, k, "an env name", &name);
  if (rc) return rc;
  if (!env_name_ok(name))
    return mly_conf_bad(c, k, "'%s' is not a valid environment variable name; use "
               "letters, digits and '_', not starting with a digit",
               mly_conf_show(name).s);
  if (!mly_conf_is_null(v) && mly_conf_scalar(v) == NULL)
    return mly_conf_bad(c, v, "env %s must be a string, or null to unset it, not %s",
               name, mly_conf_kind_name(v));
  if (!mly_conf_is_null(v) && (rc = mly_conf_get_str(c, v, "an env value", &value)) != 0)
    return rc;
  sv_env_op *e = &p->env[p->nenv++];
  if ((e->name = strdup(name)) == NULL) return mly_conf_nomem(c);
  if (value && (e->value = strdup(value)) == NULL) return mly_conf_nomem(c);
  return 0;
}

static int env_dups(mly_conf *c, mly_conf_node *map, sv_program *p) {
  named *v = malloc((p->nenv ? p->nenv : 1) * sizeof *v);
  if (v == NULL) return mly_conf_nomem(c);
  for (size_t i = 0; i < p->nenv; i++) v[i] = (named){p->env[i].name, i};
  size_t first = 0, dup = find_dup(v, p->nenv, &first);
  free(v);
  if (dup == SIZE_MAX) return 0;
  mly_conf_node *k, *k1, *val;
  int rc = mly_conf_pair(c, map, first, &k1, &val);
  if (rc == 0) rc = mly_conf_pair(c, map, dup, &k, &val);
  if (rc) return rc;
  return mly_conf_bad(c, k, "env %s is set twice (first at %u:%u); keep one",
             p->env[dup].name, mly_conf_line(k1),
             mly_conf_col(k1));
}

static int pf_env(mly_conf *c, void *o, mly_conf_node *v) {
  sv_program *p = P(o);
  if (mly_conf_type_of(v) != MLY_CONF_MAP)
    return mly_conf_bad(c, v, "env must be a map of NAME: value, not %s", mly_conf_kind_name(v));
  size_t n = mly_conf_len(v);
  if ((p->env = calloc(n ? n : 1, sizeof *p->env)) == NULL) return mly_conf_nomem(c);
  for (size_t i = 0; i < n; i++) {
    mly_conf_node *k, *val;
    int rc = mly_conf_pair(c, v, i, &k, &val);
    if (rc == 0) rc = env_entry(c, p, k, val);
    if (rc) return rc;
  }
  return env_dups(c, v, p);
}

static int pf_restart(mly_conf *c, void *o, mly_conf_node *v) {
  const char *s;
  int rc = mly_conf_get_str(c, v, "restart", &s);
  if (rc) return rc;
  if (!strcmp(s, "always")) P(o)->restart = SV_RESTART_ALWAYS;
  else if (!strcmp(s, "on-failure")) P(o)->restart = SV_RESTART_ON_FAILURE;
  else if (!strcmp(s, "never")) P(o)->restart = SV_RESTART_NEVER;
  else return mly_conf_bad(c, v, "restart must be always, on-failure or never, not "
                  "'%s'", mly_conf_show(s).s);
  return 0;
}

static int pf_codes(mly_conf *c, void *o, mly_conf_node *v) {
  sv_program *p = P(o);
  if (mly_conf_type_of(v) != MLY_CONF_LIST)
    return mly_conf_bad(c, v, "success_exit_codes must be a list such as [0, 2], not "
               "%s", mly_conf_kind_name(v));
  size_t n = mly_conf_len(v);
  if (n == 0)
    return mly_conf_bad(c, v, "success_exit_codes is empty; list at least one exit "
               "code, e.g. [0]");
  if ((p->success_codes = calloc(n, sizeof(int))) == NULL) return mly_conf_nomem(c);
  for (size_t i = 0; i < n; i++) {
    mly_conf_node *it;
    int64_t code;
    int rc = mly_conf_item(c, v, i, &it);
    if (rc == 0) rc = mly_conf_get_int(c, it, "an exit code", 0, 255, &code);
    if (rc) return rc;
    p->success_codes[p->nsuccess++] = (int)code;
  }
  return 0;
}

static int bf_initial(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_dur(c, v, "backoff initial", 1, &P(o)->backoff.initial_ms);
}

static int bf_max(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_dur(c, v, "backoff max", 1, &P(o)->backoff.max_ms);
}

static int bf_multiplier(mly_conf *c, void *o, mly_conf_node *v) {
  double *m = &P(o)->backoff.multiplier;
  int rc = mly_conf_get_num(c, v, "backoff multiplier", m);
  if (rc == 0 && *m < 1.0)
    return mly_conf_bad(c, v, "backoff multiplier must be 1 or more (1 keeps the "
               "delay fixed), not %s", mly_conf_show(mly_conf_scalar(v)).s);
  return rc;
}

static int bf_jitter(mly_conf *c, void *o, mly_conf_node *v) {
  double *j = &P(o)->backoff.jitter;
  int rc = mly_conf_get_num(c, v, "backoff jitter", j);
  if (rc == 0 && (*j < 0.0 || *j > 1.0))
    return mly_conf_bad(c, v, "backoff jitter must be between 0 and 1 (a fraction of "
               "the delay), not %s", mly_conf_show(mly_conf_scalar(v)).s);
  return rc;
}

static int bf_reset(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_dur(c, v, "backoff reset_after", 1,
                 &P(o)->backoff.reset_after_ms);
}

static const field backoff_fields[] = {
    {"initial", bf_initial, false},       {"max", bf_max, false},
    {"multiplier", bf_multiplier, false}, {"jitter", bf_jitter, false},
    {"reset_after", bf_reset, false}};

static int pf_backoff(mly_conf *c, void *o, mly_conf_node *v) {
  sv_program *p = P(o);
  char where[128];
  if (mly_conf_type_of(v) != MLY_CONF_MAP)
    return mly_conf_bad(c, v, "backoff must be a map such as {initial: 100ms, max: "
               "30s}, not %s", mly_conf_kind_name(v));
  snprintf(where, sizeof where, "in backoff of program '%s'", p->name);
  int rc = mly_conf_walk(c, v, backoff_fields,
                    sizeof backoff_fields / sizeof backoff_fields[0], where, o);
  if (rc == 0 && p->backoff.initial_ms > p->backoff.max_ms)
    return mly_conf_bad(c, v, "backoff initial (%lldms) is more than max (%lldms); "
               "lower initial or raise max (default 30s)",
               (long long)p->backoff.initial_ms,
               (long long)p->backoff.max_ms);
  return rc;
}

static int if_max(mly_conf *c, void *o, mly_conf_node *v) {
  int64_t n;
  int rc = mly_conf_get_int(c, v, "intensity max_restarts", 1, UINT32_MAX, &n);
  if (rc == 0) P(o)->intensity.max_restarts = (uint32_t)n;
  return rc;
}

static int if_within(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_dur(c, v, "intensity within", 1, &P(o)->intensity.within_ms);
}

static const field intensity_fields[] = {{"max_restarts", if_max, false},
                                         {"within", if_within, false}};

static int pf_intensity(mly_conf *c, void *o, mly_conf_node *v) {
  char where[128];
  if (mly_conf_type_of(v) != MLY_CONF_MAP)
    return mly_conf_bad(c, v, "intensity must be a map such as {max_restarts: 5, "
               "within: 60s}, not %s", mly_conf_kind_name(v));
  snprintf(where, sizeof where, "in intensity of program '%s'", P(o)->name);
  return mly_conf_walk(c, v, intensity_fields,
                  sizeof intensity_fields / sizeof intensity_fields[0], where,
                  o);
}

static int pf_start_timeout(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_dur(c, v, "start_timeout", 0, &P(o)->start_timeout_ms);
}

static int rf_notify_fd(mly_conf *c, void *o, mly_conf_node *v) {
  int64_t fd;
  int rc = mly_conf_get_int(c, v, "notify_fd", INT64_MIN, INT64_MAX, &fd);
  if (rc) return rc;
  if (fd < 3)
    return mly_conf_bad(c, v, "notify_fd must be 3 or more: 0, 1 and 2 are the "
               "program's stdin, stdout and stderr");
  if (fd > FD_LIMIT)
    return mly_conf_bad(c, v, "notify_fd must be at most %d", FD_LIMIT);
  P(o)->notify_fd = (int)fd;
  return 0;
}

static const field ready_fields[] = {{"notify_fd", rf_notify_fd, false}};

static int ready_map(mly_conf *c, void *o, mly_conf_node *v) {
  sv_program *p = P(o);
  char where[128];
  snprintf(where, sizeof where, "in ready of program '%s'", p->name);
  int rc = mly_conf_walk(c, v, ready_fields, 1, where, o);
  if (rc) return rc;
  if (p->notify_fd < 0)
    return mly_conf_bad(c, v, "ready needs notify_fd, e.g. ready: {notify_fd: 3}");
  p->ready = SV_READY_NOTIFY;
  return 0;
}

static int pf_ready(mly_conf *c, void *o, mly_conf_node *v) {
  sv_program *p = P(o);
  if (mly_conf_type_of(v) == MLY_CONF_MAP) return ready_map(c, o, v);
  const char *s;
  if (mly_conf_scalar(v) == NULL)
    return mly_conf_bad(c, v, "ready must be none, a duration such as 2s, "
               "sd_notify or {notify_fd: 3}, not %s", mly_conf_kind_name(v));
  int rc = mly_conf_get_str(c, v, "ready", &s);
  if (rc) return rc;
  if (strcmp(s, "none") == 0) {
    p->ready = SV_READY_NONE;
    return 0;
  }
  if (strcmp(s, "sd_notify") == 0) {
    p->ready = SV_READY_SD_NOTIFY;
    return 0;
  }
  int64_t ms;
  rc = mly_duration_parse(s, &ms);
  if (*s == '-' || (rc != 0 && rc != MLY_ERANGE))
    return mly_conf_bad(c, v, "ready: '%s' is not none, sd_notify or a duration; "
               "write none, 2s, sd_notify or {notify_fd: 3}", mly_conf_show(s).s);
  rc = mly_conf_get_dur(c, v, "ready", 1, &p->ready_delay_ms);
  if (rc == 0) p->ready = SV_READY_DELAY;
  return rc;
}

static int pf_watchdog(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_dur(c, v, "watchdog", 1, &P(o)->watchdog_ms);
}

static int pf_stop_signal(mly_conf *c, void *o, mly_conf_node *v) {
  const char *s;
  int rc = mly_conf_get_str(c, v, "stop_signal", &s);
  if (rc) return rc;
  int sig = sv_signal_number(s);
  if (sig < 0)
    return mly_conf_bad(c, v, "'%s' is not a signal; write a name such as TERM, INT, "
               "QUIT, HUP or USR1, or a number", mly_conf_show(s).s);
  P(o)->stop_signal = sig;
  return 0;
}

static int pf_stop_grace(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_dur(c, v, "stop_grace", 1, &P(o)->stop_grace_ms);
}


static int name_cmp(const void *a, const void *b) {
  return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* Index of the program called name, or SIZE_MAX. */
static size_t find_program(const mly_conf *c, const char *name) {
  named key = {name, 0};
  const named *hit = bsearch(&key, CTX(c)->byname, CTX(c)->cfg->nprograms,
                             sizeof key, name_cmp);
  return hit ? hit->idx : SIZE_MAX;
}

static int depends_item(mly_conf *c, pctx *pc, mly_conf_node *it, size_t i) {
  sv_program *p = pc->p;
  const char *name;
  if (mly_conf_scalar(it) == NULL || mly_conf_is_null(it))
    return mly_conf_bad(c, it, "depends_on: expected a list of strings (program "
               "names); item %zu is %s", i + 1, mly_conf_kind_name(it));
  int rc = mly_conf_get_str(c, it, "depends_on", &name);
  if (rc) return rc;
  size_t dep = find_program(c, name);
  if (dep == SIZE_MAX)
    return mly_conf_bad(c, it, "program '%s' depends on '%s', which is not defined",
               p->name, mly_conf_show(name).s);
  if (dep == pc->idx)
    return mly_conf_bad(c, it, "program '%s' depends on itself; remove it from its "
               "depends_on", p->name);
  /* stamp makes repeats O(1) to find, however long the list */
  if (CTX(c)->stamp[dep] == pc->idx + 1)
    return mly_conf_bad(c, it, "depends_on lists '%s' twice; keep one", name);
  CTX(c)->stamp[dep] = pc->idx + 1;
  if ((p->depends_on[p->ndeps] = strdup(name)) == NULL) return mly_conf_nomem(c);
  p->ndeps++;
  return 0;
}

static int pf_depends(mly_conf *c, void *o, mly_conf_node *v) {
  sv_program *p = P(o);
  if (mly_conf_type_of(v) != MLY_CONF_LIST)
    return mly_conf_bad(c, v, "depends_on: expected a list of strings (program "
               "names), not %s", mly_conf_kind_name(v));
  size_t n = mly_conf_len(v);
  if ((p->depends_on = calloc(n + 1, sizeof(char *))) == NULL)
    return mly_conf_nomem(c);
  for (size_t i = 0; i < n; i++) {
    mly_conf_node *it;
    int rc = mly_conf_item(c, v, i, &it);
    if (rc == 0) rc = depends_item(c, o, it, i);
    if (rc) return rc;
  }
  return 0;
}

/* stdout / stderr */

typedef struct lctx {
  pctx *pc;
  sv_log *log;
  const char *which;
} lctx;

static int lf_file(mly_conf *c, void *o, mly_conf_node *v) {
  lctx *l = o;
  char what[32];
  snprintf(what, sizeof what, "%s file", l->which);
  return mly_conf_set_str(c, v, what, &l->log->file);
}

static int lf_max_size(mly_conf *c, void *o, mly_conf_node *v) {
  lctx *l = o;
  return mly_conf_get_size(c, v, "max_size", &l->log->max_size);
}

static int lf_keep(mly_conf *c, void *o, mly_conf_node *v) {
  lctx *l = o;
  int64_t n;
  int rc = mly_conf_get_int(c, v, "keep", 0, LOG_KEEP_LIMIT, &n);
  if (rc == 0) l->log->keep = (uint32_t)n;
  return rc;
}

static const field log_fields[] = {{"file", lf_file, false},
                                   {"max_size", lf_max_size, false},
                                   {"keep", lf_keep, false}};

static int parse_log(mly_conf *c, pctx *pc, mly_conf_node *v, sv_log *log,
                     const char *which) {
  lctx l = {pc, log, which};
  if (mly_conf_scalar(v) != NULL) {
    const char *s;
    int rc = mly_conf_get_str(c, v, which, &s);
    if (rc) return rc;
    if (strcmp(s, "inherit") == 0) return 0;
    log->mode = SV_OUT_FILE;
    return lf_file(c, &l, v);
  }
  if (mly_conf_type_of(v) != MLY_CONF_MAP)
    return mly_conf_bad(c, v, "%s must be inherit, a file, or {file: F, max_size: "
               "10MB, keep: 5}, not %s", which, mly_conf_kind_name(v));
  char where[128];
  snprintf(where, sizeof where, "in %s of program '%s'", which, pc->p->name);
  log->mode = SV_OUT_FILE;
  int rc = mly_conf_walk(c, v, log_fields, 3, where, &l);
  if (rc == 0 && log->file == NULL)
    return mly_conf_bad(c, v, "%s needs a file, e.g. {file: %s.log, max_size: 10MB}",
               which, pc->p->name);
  return rc;
}

static int pf_stdout(mly_conf *c, void *o, mly_conf_node *v) {
  return parse_log(c, o, v, &P(o)->out, "stdout");
}

static int pf_stderr(mly_conf *c, void *o, mly_conf_node *v) {
  return parse_log(c, o, v, &P(o)->err, "stderr");
}

static int pf_user(mly_conf *c, void *o, mly_conf_node *v) {
  pctx *pc = o;
  pc->user = v;
  int rc = mly_conf_set_str(c, v, "user", &pc->p->user);
  return rc ? rc : lookup_user(c, v, pc->p, &pc->primary, &pc->has_primary);
}

static int pf_group(mly_conf *c, void *o, mly_conf_node *v) {
  int rc = mly_conf_set_str(c, v, "group", &P(o)->group);
  return rc ? rc : lookup_group(c, v, P(o));
}

/* limits: {memory_max: 256MB, cpu_max: 1.5, pids_max: 100} */

static void limit_at(void *o, int which, mly_conf_node *v) {
  P(o)->limits.line[which] = (int)mly_conf_line(v);
  P(o)->limits.col[which] = (int)mly_conf_col(v);
}

static int lim_memory(mly_conf *c, void *o, mly_conf_node *v) {
  limit_at(o, SV_LIMIT_MEMORY, v);
  int rc = mly_conf_get_size(c, v, "memory_max", &P(o)->limits.memory_max);
  if (rc == 0 && P(o)->limits.memory_max < 4096)
    return mly_conf_bad(c, v, "memory_max must be at least 4KB (a page), e.g. 256MB");
  return rc;
}

static int lim_cpu(mly_conf *c, void *o, mly_conf_node *v) {
  double *cpus = &P(o)->limits.cpu_max;
  limit_at(o, SV_LIMIT_CPU, v);
  int rc = mly_conf_get_num(c, v, "cpu_max", cpus);
  if (rc == 0 && (*cpus < 0.01 || *cpus > 4096))
    return mly_conf_bad(c, v, "cpu_max is a number of CPUs between 0.01 and 4096, "
               "e.g. 0.5 for half of one, not %s", mly_conf_show(mly_conf_scalar(v)).s);
  return rc;
}

static int lim_pids(mly_conf *c, void *o, mly_conf_node *v) {
  int64_t n;
  limit_at(o, SV_LIMIT_PIDS, v);
  int rc = mly_conf_get_int(c, v, "pids_max", 1, 4194304, &n);
  if (rc == 0) P(o)->limits.pids_max = (uint64_t)n;
  return rc;
}

static const field limit_fields[] = {{"memory_max", lim_memory, false},
                                     {"cpu_max", lim_cpu, false},
                                     {"pids_max", lim_pids, false}};

static int pf_limits(mly_conf *c, void *o, mly_conf_node *v) {
  char where[128];
  if (mly_conf_type_of(v) != MLY_CONF_MAP)
    return mly_conf_bad(c, v, "limits must be a map such as {memory_max: 256MB, "
               "cpu_max: 1.5, pids_max: 100}, not %s", mly_conf_kind_name(v));
  snprintf(where, sizeof where, "in limits of program '%s'", P(o)->name);
  return mly_conf_walk(c, v, limit_fields,
                  sizeof limit_fields / sizeof limit_fields[0], where, o);
}

static int pf_env_inherit(mly_conf *c, void *o, mly_conf_node *v) {
  P(o)->env_inherit_set = true;
  return mly_conf_get_bool(c, v, "env_inherit", &P(o)->env_inherit);
}

static const field program_fields[] = {
    {"command", pf_command, false},
    {"shell", pf_shell, false},
    {"cwd", pf_cwd, false},
    {"env", pf_env, false},
    {"restart", pf_restart, false},
    {"success_exit_codes", pf_codes, false},
    {"backoff", pf_backoff, false},
    {"intensity", pf_intensity, false},
    {"start_timeout", pf_start_timeout, false},
    {"ready", pf_ready, false},
    {"watchdog", pf_watchdog, false},
    {"stop_signal", pf_stop_signal, false},
    {"stop_grace", pf_stop_grace, false},
    {"depends_on", pf_depends, false},
    {"stdout", pf_stdout, false},
    {"stderr", pf_stderr, false},
    {"user", pf_user, false},
    {"group", pf_group, false},
    {"limits", pf_limits, false},
    {"env_inherit", pf_env_inherit, false}};

/* ------------------------------------------------------------------ */
/* A whole program.                                                    */

static void program_defaults(sv_program *p) {
  p->restart = SV_RESTART_ALWAYS;
  p->backoff.initial_ms = 100;
  p->backoff.max_ms = 30000;
  p->backoff.multiplier = 2.0;
  p->backoff.jitter = 0.0;
  p->backoff.reset_after_ms = 10000;
  p->intensity.max_restarts = 5;
  p->intensity.within_ms = 60000;
  p->ready = SV_READY_NONE;
  p->notify_fd = -1;
  p->stop_signal = SIGTERM;
  p->stop_grace_ms = 10000;
  p->out = p->err = (sv_log){SV_OUT_INHERIT, NULL, LOG_SIZE_DEFAULT,
                             LOG_KEEP_DEFAULT};
}

static int argv_shell(mly_conf *c, sv_program *p, mly_conf_node *v) {
  const char *s;
  int rc = mly_conf_get_str(c, v, "command", &s);
  if (rc) return rc;
  if (*s == '\0')
    return mly_conf_bad(c, v, "command is empty; write the command line to run");
  if ((p->argv = calloc(4, sizeof(char *))) == NULL) return mly_conf_nomem(c);
  const char *sh[] = {"/bin/sh", "-c", s};
  for (p->argc = 0; p->argc < 3; p->argc++)
    if ((p->argv[p->argc] = strdup(sh[p->argc])) == NULL) return mly_conf_nomem(c);
  return 0;
}

static int argv_list(mly_conf *c, sv_program *p, mly_conf_node *v) {
  size_t n = mly_conf_len(v);
  if (n == 0)
    return mly_conf_bad(c, v, "command is an empty list; write the program and its "
               "arguments, e.g. [/usr/bin/python3, -m, http.server]");
  if ((p->argv = calloc(n + 1, sizeof(char *))) == NULL) return mly_conf_nomem(c);
  for (size_t i = 0; i < n; i++) {
    mly_conf_node *it;
    const char *s;
    int rc = mly_conf_item(c, v, i, &it);
    if (rc) return rc;
    if (mly_conf_scalar(it) == NULL || mly_conf_is_null(it))
      return mly_conf_bad(c, it, "command: expected a list of strings; item %zu is %s",
                 i + 1, mly_conf_kind_name(it));
    if ((rc = mly_conf_get_str(c, it, "a command argument", &s)) != 0) return rc;
    if (i == 0 && *s == '\0')
      return mly_conf_bad(c, it, "the program to run (the first item of command) is "
                 "empty");
    if ((p->argv[i] = strdup(s)) == NULL) return mly_conf_nomem(c);
    p->argc = i + 1;
  }
  return 0;
}

/* command and shell are read in any order, so argv is built after both. */
static int build_argv(mly_conf *c, pctx *pc) {
  sv_program *p = pc->p;
  mly_conf_node *v = pc->command;
  if (v == NULL)
    return mly_conf_bad(c, pc->key, "program '%s' has no command; add command: "
               "[program, args...]", p->name);
  if (mly_conf_scalar(v) != NULL) {
    if (!p->shell)
      return mly_conf_bad(c, v, "command is a string; set shell: true to run it "
                 "through /bin/sh, or write it as a list");
    return argv_shell(c, p, v);
  }
  if (mly_conf_type_of(v) == MLY_CONF_LIST) {
    if (p->shell)
      return mly_conf_bad(c, v, "command is a list, but shell: true runs one string; "
                 "write the command as a string, or drop shell: true");
    return argv_list(c, p, v);
  }
  return mly_conf_bad(c, v, "command must be a list of strings (or one string with "
             "shell: true), not %s", mly_conf_kind_name(v));
}

static int load_program(mly_conf *c, size_t idx, mly_conf_node *k, mly_conf_node *v) {
  sv_program *p = &CTX(c)->cfg->programs[idx];
  pctx pc = {.p = p, .idx = idx, .key = k};
  snprintf(pc.where, sizeof pc.where, "in program '%s'", p->name);
  if (mly_conf_is_null(v))
    return mly_conf_bad(c, k, "program '%s' has no command; add command: [program, "
               "args...]", p->name);
  if (mly_conf_type_of(v) != MLY_CONF_MAP)
    return mly_conf_bad(c, v, "program '%s' must be a map of settings such as "
               "command: and restart:, not %s", p->name, mly_conf_kind_name(v));
  int rc = mly_conf_walk(c, v, program_fields,
                    sizeof program_fields / sizeof program_fields[0],
                    pc.where, &pc);
  if (rc == 0) rc = build_argv(c, &pc);
  if (rc) return rc;
  if (p->success_codes == NULL) {
    if ((p->success_codes = calloc(1, sizeof(int))) == NULL) return mly_conf_nomem(c);
    p->nsuccess = 1;
  }
  /* like su(1): a user without a group runs in the user's own group,
     not in the supervisor's (often root's) */
  if (p->group == NULL && pc.has_primary)
    p->gid = pc.primary, p->has_gid = true;
  /* a uid alone would leave the program in our group, root's */
  if (p->has_uid && !p->has_gid)
    return mly_conf_bad(c, pc.user, "user %s has no passwd entry, so no group of its "
               "own; set group: (a name or a numeric id)", mly_conf_show(p->user).s);
  return lookup_groups(c, p);
}

/* ------------------------------------------------------------------ */
/* The programs map.                                                   */

static bool name_ok(const char *s) {
  if (!strcmp(s, ".") || !strcmp(s, "..")) return false; /* path parts */
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '_' || *s == '.' || *s == '-'))
      return false;
  return true;
}

static int program_name(mly_conf *c, size_t i, mly_conf_node *k) {
  const char *name;
  if (mly_conf_scalar(k) == NULL)
    return mly_conf_bad(c, k, "program names must be strings, not %s", mly_conf_kind_name(k));
  int rc = mly_conf_get_str(c, k, "a program name", &name);
  if (rc) return rc;
  size_t len = strlen(name);
  if (len > NAME_LIMIT)
    return mly_conf_bad(c, k, "program name '%s' is %zu characters long; the limit "
               "is %d", mly_conf_show(name).s, len, NAME_LIMIT);
  if (len == 0 || !name_ok(name))
    return mly_conf_bad(c, k, "program name '%s' is not allowed; use letters, digits, "
               "'_', '.' and '-' (and not '.' or '..')", mly_conf_show(name).s);
  sv_program *p = &CTX(c)->cfg->programs[i];
  if ((p->name = strdup(name)) == NULL) return mly_conf_nomem(c);
  p->line = (int)mly_conf_line(k);
  p->col = (int)mly_conf_col(k);
  CTX(c)->byname[i] = (named){p->name, i};
  return 0;
}

static int program_names(mly_conf *c, mly_conf_node *map) {
  sv_config *cfg = CTX(c)->cfg;
  for (size_t i = 0; i < cfg->nprograms; i++) {
    mly_conf_node *k, *v;
    int rc = mly_conf_pair(c, map, i, &k, &v);
    if (rc == 0) rc = program_name(c, i, k);
    if (rc) return rc;
    program_defaults(&cfg->programs[i]);
  }
  size_t first = 0, dup = find_dup(CTX(c)->byname, cfg->nprograms, &first);
  if (dup == SIZE_MAX) return 0;
  const sv_program *a = &cfg->programs[first], *b = &cfg->programs[dup];
  return mly_conf_bad_at(c, (uint32_t)b->line, (uint32_t)b->col,
                "program '%s' is defined twice (first at %d:%d); rename or "
                "remove one", b->name, a->line, a->col);
}

static int top_programs(mly_conf *c, void *o, mly_conf_node *v) {
  sv_config *cfg = o;
  if (mly_conf_is_null(v) || (mly_conf_type_of(v) == MLY_CONF_MAP && mly_conf_len(v) == 0))
    return mly_conf_bad(c, v, "programs is empty; define at least one program");
  if (mly_conf_type_of(v) != MLY_CONF_MAP)
    return mly_conf_bad(c, v, "programs must be a map of name: settings, not %s",
               mly_conf_kind_name(v));
  size_t n = mly_conf_len(v);
  cfg->programs = calloc(n, sizeof *cfg->programs);
  CTX(c)->byname = calloc(n, sizeof *CTX(c)->byname);
  CTX(c)->stamp = calloc(n, sizeof *CTX(c)->stamp);
  if (!cfg->programs || !CTX(c)->byname || !CTX(c)->stamp) return mly_conf_nomem(c);
  cfg->nprograms = n;
  /* all names first: depends_on may name a program defined further down */
  int rc = program_names(c, v);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    mly_conf_node *k, *body;
    rc = mly_conf_pair(c, v, i, &k, &body);
    if (rc == 0) rc = load_program(c, i, k, body);
  }
  return rc;
}

/* ------------------------------------------------------------------ */
/* The top level.                                                      */

static int top_socket(mly_conf *c, void *o, mly_conf_node *v) {
  sv_config *cfg = o;
  int rc = mly_conf_set_str(c, v, "socket", &cfg->socket);
  size_t max = sizeof(((struct sockaddr_un *)0)->sun_path);
  if (rc == 0 && strlen(cfg->socket) >= max)
    return mly_conf_bad(c, v, "socket path is %zu bytes; a Unix socket path must be "
               "shorter than %zu, so choose a shorter one",
               strlen(cfg->socket), max);
  return rc;
}

/* An octal string ("0600", "660"): a plain 0600 in YAML 1.1 would be
 * read as a decimal number by some tools, so the key takes the digits. */
static int top_socket_mode(mly_conf *c, void *o, mly_conf_node *v) {
  const char *s;
  int rc = mly_conf_get_str(c, v, "socket_mode", &s);
  if (rc) return rc;
  unsigned mode = 0;
  size_t n = 0;
  for (; s[n]; n++) {
    if (s[n] < '0' || s[n] > '7' || n >= 4)
      return mly_conf_bad(c, v, "socket_mode must be an octal mode such as \"0600\", "
                 "not '%s'", mly_conf_show(s).s);
    mode = mode * 8 + (unsigned)(s[n] - '0');
  }
  if (n == 0 || mode > 0777)
    return mly_conf_bad(c, v, "socket_mode must be an octal mode between 0000 and 0777, "
               "not '%s'", mly_conf_show(s).s);
  if ((mode & 0600) != 0600)
    return mly_conf_bad(c, v, "socket_mode %s would lock the supervisor's own user "
               "out; keep the owner's read and write bits (0600)", mly_conf_show(s).s);
  ((sv_config *)o)->socket_mode = mode;
  return 0;
}

static int top_log_dir(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_set_str(c, v, "log_dir", &((sv_config *)o)->log_dir);
}

static int top_grace(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_dur(c, v, "shutdown_grace", 1,
                 &((sv_config *)o)->shutdown_grace_ms);
}

static int top_on_fatal(mly_conf *c, void *o, mly_conf_node *v) {
  const char *s;
  int rc = mly_conf_get_str(c, v, "on_fatal", &s);
  if (rc) return rc;
  if (!strcmp(s, "stay")) ((sv_config *)o)->on_fatal = SV_FATAL_STAY;
  else if (!strcmp(s, "shutdown")) ((sv_config *)o)->on_fatal = SV_FATAL_SHUTDOWN;
  else return mly_conf_bad(c, v, "on_fatal must be stay or shutdown, not '%s'",
                  mly_conf_show(s).s);
  return 0;
}

static int top_state_dir(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_set_str(c, v, "state_dir", &((sv_config *)o)->state_dir);
}

static int top_env_inherit(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_bool(c, v, "env_inherit", &((sv_config *)o)->env_inherit);
}

static int top_orphans(mly_conf *c, void *o, mly_conf_node *v) {
  const char *s;
  int rc = mly_conf_get_str(c, v, "orphans", &s);
  if (rc) return rc;
  if (!strcmp(s, "adopt")) ((sv_config *)o)->orphans = SV_ORPHANS_ADOPT;
  else if (!strcmp(s, "stop")) ((sv_config *)o)->orphans = SV_ORPHANS_STOP;
  else return mly_conf_bad(c, v, "orphans must be adopt or stop, not '%s'", mly_conf_show(s).s);
  return 0;
}

static int top_tracking(mly_conf *c, void *o, mly_conf_node *v) {
  const char *s;
  int rc = mly_conf_get_str(c, v, "tracking", &s);
  if (rc) return rc;
  if (!strcmp(s, "auto")) ((sv_config *)o)->tracking = SV_TRACK_AUTO;
  else if (!strcmp(s, "cgroup")) ((sv_config *)o)->tracking = SV_TRACK_CGROUP;
  else if (!strcmp(s, "pgroup")) ((sv_config *)o)->tracking = SV_TRACK_PGROUP;
  else return mly_conf_bad(c, v, "tracking must be auto, cgroup or pgroup, not '%s'",
                  mly_conf_show(s).s);
  return 0;
}

static int top_sync(mly_conf *c, void *o, mly_conf_node *v) {
  const char *s;
  sv_config *cfg = o;
  int rc = mly_conf_get_str(c, v, "sync", &s);
  if (rc) return rc;
  if (mly_sync_parse(s, &cfg->sync, &cfg->sync_interval_ms) < 0)
    return mly_conf_bad(c, v, "sync must be always, never or interval:DURATION "
               "(e.g. interval:100ms), not '%s'", mly_conf_show(s).s);
  return 0;
}

static int top_control_timeout(mly_conf *c, void *o, mly_conf_node *v) {
  return mly_conf_get_dur(c, v, "control_timeout", 1,
                 &((sv_config *)o)->control_timeout_ms);
}

static int top_control_max_clients(mly_conf *c, void *o, mly_conf_node *v) {
  int64_t n;
  int rc = mly_conf_get_int(c, v, "control_max_clients", 1, 65536, &n);
  if (rc == 0) ((sv_config *)o)->control_max_clients = (uint32_t)n;
  return rc;
}

/* Checked now (promhttp_parse_addr): a typo or a non-loopback address
 * fails the load, not the start. */
static int top_metrics(mly_conf *c, void *o, mly_conf_node *v) {
  sv_config *cfg = o;
  int rc = mly_conf_set_str(c, v, "metrics", &cfg->metrics);
  if (rc) return rc;
  promhttp_addr a;
  char why[512];
  if (promhttp_parse_addr(cfg->metrics, &a, why, sizeof why) < 0)
    return mly_conf_bad(c, v, "metrics: %s", why);
  return 0;
}

static const field top_fields[] = {{"socket", top_socket, false},
                                   {"socket_mode", top_socket_mode, false},
                                   {"log_dir", top_log_dir, false},
                                   {"shutdown_grace", top_grace, false},
                                   {"on_fatal", top_on_fatal, false},
                                   {"state_dir", top_state_dir, false},
                                   {"orphans", top_orphans, false},
                                   {"sync", top_sync, false},
                                   {"tracking", top_tracking, false},
                                   {"env_inherit", top_env_inherit, false},
                                   {"control_timeout", top_control_timeout, false},
                                   {"control_max_clients", top_control_max_clients, false},
                                   {"metrics", top_metrics, false},
                                   {"programs", top_programs, true}};

/* ------------------------------------------------------------------ */
/* Start order: a stable Kahn's algorithm.  Of the programs whose      */
/* dependencies have all started, the one first in the file goes next, */
/* so independent programs start in file order.                        */

static void heap_push(size_t *h, size_t *n, size_t v) {
  size_t i = (*n)++;
  for (; i > 0 && h[(i - 1) / 2] > v; i = (i - 1) / 2) h[i] = h[(i - 1) / 2];
  h[i] = v;
}

static size_t heap_pop(size_t *h, size_t *n) {
  size_t top = h[0], v = h[--*n], i = 0;
  for (;;) {
    size_t l = 2 * i + 1;
    if (l >= *n) break;
    if (l + 1 < *n && h[l + 1] < h[l]) l++;
    if (h[l] >= v) break;
    h[i] = h[l];
    i = l;
  }
  h[i] = v;
  return top;
}

typedef struct graph {
  size_t *indeg;  /* dependencies not yet started */
  size_t *off;    /* dependents of i: adj[off[i] .. off[i+1]) */
  size_t *adj;
  size_t *heap;
} graph;

static int graph_build(mly_conf *c, graph *g) {
  sv_config *cfg = CTX(c)->cfg;
  size_t n = cfg->nprograms, e = 0;
  for (size_t i = 0; i < n; i++) e += cfg->programs[i].ndeps;
  g->indeg = calloc(n, sizeof(size_t));
  g->off = calloc(n + 1, sizeof(size_t));
  g->adj = calloc(e ? e : 1, sizeof(size_t));
  g->heap = calloc(n, sizeof(size_t));
  if (!g->indeg || !g->off || !g->adj || !g->heap) return mly_conf_nomem(c);
  for (size_t i = 0; i < n; i++)
    for (size_t d = 0; d < cfg->programs[i].ndeps; d++)
      g->off[find_program(c, cfg->programs[i].depends_on[d]) + 1]++;
  for (size_t i = 0; i < n; i++) g->off[i + 1] += g->off[i];
  for (size_t i = 0; i < n; i++) {
    g->indeg[i] = cfg->programs[i].ndeps;
    for (size_t d = 0; d < cfg->programs[i].ndeps; d++) {
      size_t j = find_program(c, cfg->programs[i].depends_on[d]);
      g->adj[g->off[j] + g->heap[j]++] = i; /* heap: fill counts for now */
    }
  }
  return 0;
}

static void graph_free(graph *g) {
  free(g->indeg);
  free(g->off);
  free(g->adj);
  free(g->heap);
}

/* A dependency of i that has not started: there is one for every program
 * left over, or its count would have dropped to 0. */
static size_t waiting_dep(mly_conf *c, const graph *g, size_t i) {
  const sv_program *p = &CTX(c)->cfg->programs[i];
  for (size_t d = 0; d < p->ndeps; d++) {
    size_t j = find_program(c, p->depends_on[d]);
    if (g->indeg[j] > 0) return j;
  }
  return i; /* not reached */
}

/* Follows unstarted dependencies from the first program left over until
 * one repeats: that closes a cycle.  It is reported from its member
 * first in the file, so the message does not depend on the walk. */
static int report_cycle(mly_conf *c, graph *g, size_t start) {
  /* path fits in adj: each program on it has a dependency edge */
  size_t n = CTX(c)->cfg->nprograms, *pos = g->heap, *path = g->adj, k = 0;
  for (size_t i = 0; i < n; i++) pos[i] = SIZE_MAX;
  size_t cur = start;
  while (pos[cur] == SIZE_MAX) {
    pos[cur] = k;
    path[k++] = cur;
    cur = waiting_dep(c, g, cur);
  }
  size_t from = pos[cur], len = k - from, low = from;
  for (size_t i = from; i < k; i++)
    if (path[i] < path[low]) low = i;
  char text[512];
  size_t at = 0;
  for (size_t i = 0; i <= len && at < sizeof text; i++) {
    const char *name = CTX(c)->cfg->programs[path[from + (low - from + i) % len]].name;
    int w = snprintf(text + at, sizeof text - at, "%s%s", i ? " -> " : "", name);
    if (w < 0) break;
    at += (size_t)w;
  }
  const sv_program *p = &CTX(c)->cfg->programs[path[low]];
  return mly_conf_bad_at(c, (uint32_t)p->line, (uint32_t)p->col,
                "dependency cycle: %s; remove one of these depends_on", text);
}

static int start_order(mly_conf *c) {
  sv_config *cfg = CTX(c)->cfg;
  size_t n = cfg->nprograms, nh = 0, placed = 0;
  graph g = {0};
  int rc = graph_build(c, &g);
  if (rc == 0 && (cfg->start_order = calloc(n, sizeof(size_t))) == NULL)
    rc = mly_conf_nomem(c);
  for (size_t i = 0; rc == 0 && i < n; i++)
    if (g.indeg[i] == 0) heap_push(g.heap, &nh, i);
  while (rc == 0 && nh > 0) {
    size_t i = heap_pop(g.heap, &nh);
    cfg->start_order[placed++] = i;
    for (size_t a = g.off[i]; a < g.off[i + 1]; a++)
      if (--g.indeg[g.adj[a]] == 0) heap_push(g.heap, &nh, g.adj[a]);
  }
  for (size_t i = 0; rc == 0 && placed < n && i < n; i++)
    if (g.indeg[i] > 0) rc = report_cycle(c, &g, i);
  graph_free(&g);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Loading.                                                            */

/* Relative log files live in log_dir, which is known only at the end. */
static int resolve_log(mly_conf *c, sv_log *l) {
  if (l->mode != SV_OUT_FILE || l->file[0] == '/') return 0;
  const char *dir = CTX(c)->cfg->log_dir;
  size_t dl = strlen(dir), fl = strlen(l->file);
  bool slash = dl > 0 && dir[dl - 1] == '/';
  char *full = malloc(dl + fl + 2);
  if (full == NULL) return mly_conf_nomem(c);
  memcpy(full, dir, dl);
  if (!slash) full[dl++] = '/';
  memcpy(full + dl, l->file, fl + 1);
  free(l->file);
  l->file = full;
  return 0;
}

static int finish(mly_conf *c, mly_conf_node *root) {
  sv_config *cfg = CTX(c)->cfg;
  if (cfg->programs == NULL)
    return mly_conf_bad(c, root, "no 'programs' key; add programs: with at least one "
               "program");
  if (!cfg->socket && (cfg->socket = strdup("mealy.sock")) == NULL)
    return mly_conf_nomem(c);
  if (!cfg->log_dir && (cfg->log_dir = strdup(".")) == NULL) return mly_conf_nomem(c);
  if (cfg->socket_mode == 0) cfg->socket_mode = 0600;
  for (size_t i = 0; i < cfg->nprograms; i++) {
    sv_program *p = &cfg->programs[i];
    if (!p->env_inherit_set) p->env_inherit = cfg->env_inherit;
    int rc = resolve_log(c, &cfg->programs[i].out);
    if (rc == 0) rc = resolve_log(c, &cfg->programs[i].err);
    if (rc) return rc;
  }
  return start_order(c);
}

static int load_root(mly_conf *c, mly_conf_node *root) {
  if (root == NULL)
    return mly_conf_bad_at(c, 1, 1, "the file is empty; write a map "
                  "with a 'programs' key");
  if (mly_conf_type_of(root) != MLY_CONF_MAP)
    return mly_conf_bad(c, root, "the top level is %s; it must be a map with a "
               "'programs' key", mly_conf_kind_name(root));
  int rc = mly_conf_walk(c, root, top_fields,
                    sizeof top_fields / sizeof top_fields[0],
                    "at the top level", CTX(c)->cfg);
  return rc ? rc : finish(c, root);
}

int sv_config_parse(const char *path, const char *text, size_t len,
                    sv_config **out, char *err, size_t errlen) {
  errbuf e = {err, errlen};
  ctx x = {0};
  mly_conf_options o = {.path = path ? path : "config", .on_error = on_error,
                        .arg = &e, .user = &x};
  if (err && errlen) err[0] = '\0';
  if (out == NULL)
    return mly_conf_report(&o, 0, 0, "no configuration text given");
  *out = NULL;
  if ((x.cfg = calloc(1, sizeof *x.cfg)) == NULL) {
    mly_conf_report(&o, 0, 0, "out of memory while loading the configuration");
    return MLY_ENOMEM;
  }
  x.cfg->shutdown_grace_ms = 30000;
  x.cfg->control_timeout_ms = 30000;
  x.cfg->control_max_clients = 256;
  x.cfg->on_fatal = SV_FATAL_STAY;
  x.cfg->env_inherit = true;
  int rc = 0;
  if ((x.cfg->path = strdup(o.path)) == NULL) {
    mly_conf_report(&o, 0, 0, "out of memory while loading the configuration");
    rc = MLY_ENOMEM;
  }
  if (rc == 0) rc = mly_conf_parse(&o, text, len, load_root);
  free(x.byname);
  free(x.stamp);
  if (rc) sv_config_free(x.cfg);
  else *out = x.cfg;
  return rc;
}

int sv_config_load(const char *path, sv_config **out, char *err,
                   size_t errlen) {
  errbuf e = {err, errlen};
  mly_conf_options o = {.path = path ? path : "config", .on_error = on_error,
                        .arg = &e};
  if (out) *out = NULL;
  if (path == NULL || out == NULL)
    return mly_conf_report(&o, 0, 0, "no configuration file given");
  char *text = NULL;
  size_t len = 0;
  int rc = mly_conf_read(&o, path, &text, &len);
  if (rc) return rc;
  rc = sv_config_parse(path, text, len, out, err, errlen);
  free(text);
  return rc;
}

static void free_program(sv_program *p) {
  free(p->name);
  if (p->argv)
    for (size_t i = 0; p->argv[i]; i++) free(p->argv[i]);
  free(p->argv);
  free(p->cwd);
  for (size_t i = 0; i < p->nenv; i++) {
    free(p->env[i].name);
    free(p->env[i].value);
  }
  free(p->env);
  free(p->success_codes);
  for (size_t i = 0; i < p->ndeps; i++) free(p->depends_on[i]);
  free(p->depends_on);
  free(p->out.file);
  free(p->err.file);
  free(p->user);
  free(p->group);
  free(p->login);
  free(p->home);
  free(p->shell_path);
  free(p->groups);
}

void sv_config_free(sv_config *c) {
  if (c == NULL) return;
  for (size_t i = 0; i < c->nprograms; i++) free_program(&c->programs[i]);
  free(c->programs);
  free(c->start_order);
  free(c->path);
  free(c->socket);
  free(c->metrics);
  free(c->log_dir);
  free(c->state_dir);
  free(c);
}

const sv_program *sv_config_find(const sv_config *c, const char *name) {
  if (c == NULL || name == NULL) return NULL;
  for (size_t i = 0; i < c->nprograms; i++)
    if (strcmp(c->programs[i].name, name) == 0) return &c->programs[i];
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Comparing two definitions of a program, for reloads.  Lists whose   */
/* order does not change what runs (env, exit codes, dependencies) are */
/* compared as sets, so reordering them restarts nothing.              */

static bool str_eq(const char *a, const char *b) {
  return a == b || (a && b && strcmp(a, b) == 0);
}

static bool env_subset(const sv_program *a, const sv_program *b) {
  for (size_t i = 0; i < a->nenv; i++) {
    size_t j = 0;
    while (j < b->nenv && strcmp(a->env[i].name, b->env[j].name) != 0) j++;
    if (j == b->nenv || !str_eq(a->env[i].value, b->env[j].value))
      return false;
  }
  return true;
}

static bool codes_subset(const int *a, size_t na, const int *b, size_t nb) {
  for (size_t i = 0; i < na; i++) {
    size_t j = 0;
    while (j < nb && a[i] != b[j]) j++;
    if (j == nb) return false;
  }
  return true;
}

static bool deps_subset(const sv_program *a, const sv_program *b) {
  for (size_t i = 0; i < a->ndeps; i++) {
    size_t j = 0;
    while (j < b->ndeps && strcmp(a->depends_on[i], b->depends_on[j]) != 0)
      j++;
    if (j == b->ndeps) return false;
  }
  return true;
}

static bool log_eq(const sv_log *a, const sv_log *b) {
  if (a->mode != b->mode) return false;
  return a->mode != SV_OUT_FILE || (str_eq(a->file, b->file) &&
                                    a->max_size == b->max_size &&
                                    a->keep == b->keep);
}

static bool argv_eq(const sv_program *a, const sv_program *b) {
  if (a->argc != b->argc) return false;
  for (size_t i = 0; i < a->argc; i++)
    if (!str_eq(a->argv[i], b->argv[i])) return false;
  return true;
}

static bool ready_eq(const sv_program *a, const sv_program *b) {
  if (a->ready != b->ready || a->watchdog_ms != b->watchdog_ms) return false;
  if (a->ready == SV_READY_DELAY) return a->ready_delay_ms == b->ready_delay_ms;
  if (a->ready == SV_READY_NOTIFY) return a->notify_fd == b->notify_fd;
  return true;
}

static bool ids_eq(const sv_program *a, const sv_program *b) {
  return str_eq(a->user, b->user) && str_eq(a->group, b->group) &&
         a->has_uid == b->has_uid && (!a->has_uid || a->uid == b->uid) &&
         a->has_gid == b->has_gid && (!a->has_gid || a->gid == b->gid) &&
         str_eq(a->home, b->home) && str_eq(a->shell_path, b->shell_path) &&
         a->ngroups == b->ngroups &&
         (a->ngroups == 0 ||
          memcmp(a->groups, b->groups, a->ngroups * sizeof *a->groups) == 0) &&
         a->env_inherit == b->env_inherit;
}

static bool limits_eq(const sv_limits *a, const sv_limits *b) {
  return a->memory_max == b->memory_max && a->cpu_max == b->cpu_max &&
         a->pids_max == b->pids_max;
}

static bool timing_eq(const sv_program *a, const sv_program *b) {
  return a->backoff.initial_ms == b->backoff.initial_ms &&
         a->backoff.max_ms == b->backoff.max_ms &&
         a->backoff.multiplier == b->backoff.multiplier &&
         a->backoff.jitter == b->backoff.jitter &&
         a->backoff.reset_after_ms == b->backoff.reset_after_ms &&
         a->intensity.max_restarts == b->intensity.max_restarts &&
         a->intensity.within_ms == b->intensity.within_ms &&
         a->start_timeout_ms == b->start_timeout_ms &&
         a->stop_signal == b->stop_signal &&
         a->stop_grace_ms == b->stop_grace_ms;
}

bool sv_program_changed(const sv_program *a, const sv_program *b) {
  if (a == NULL || b == NULL) return a != b;
  return !(str_eq(a->name, b->name) && argv_eq(a, b) && a->shell == b->shell &&
           str_eq(a->cwd, b->cwd) && a->nenv == b->nenv &&
           env_subset(a, b) && a->restart == b->restart &&
           codes_subset(a->success_codes, a->nsuccess, b->success_codes,
                        b->nsuccess) &&
           codes_subset(b->success_codes, b->nsuccess, a->success_codes,
                        a->nsuccess) &&
           timing_eq(a, b) && ready_eq(a, b) && a->ndeps == b->ndeps &&
           deps_subset(a, b) && log_eq(&a->out, &b->out) &&
           log_eq(&a->err, &b->err) && ids_eq(a, b) &&
           limits_eq(&a->limits, &b->limits));
}
