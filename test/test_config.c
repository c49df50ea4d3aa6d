/*
 * test_config.c - the supervisor's configuration loader.
 *
 * Valid files are checked field by field, defaults included.  Every kind
 * of mistake is checked for its return code, for the exact FILE:LINE:COL
 * the message points at, and for the words a person needs to fix it.
 * A last group feeds damaged files through the parser: whatever comes
 * in, it returns a code and a message, and never crashes or leaks.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static sv_config *parse_ok(const char *yaml) {
  char err[512] = "";
  sv_config *c = NULL;
  int rc = sv_config_parse("sv.yaml", yaml, strlen(yaml), &c, err, sizeof err);
  ck_assert_msg(rc == 0, "unexpected error %d: %s", rc, err);
  ck_assert_ptr_nonnull(c);
  return c;
}

/* Parses yaml, expects code rc and a message that starts with prefix
 * and contains every word given (a NULL ends the list). */
static void expect_err(const char *yaml, int rc, const char *prefix, ...) {
  char err[512] = "";
  sv_config *c = (sv_config *)1;
  int got = sv_config_parse("sv.yaml", yaml, strlen(yaml), &c, err, sizeof err);
  ck_assert_msg(got == rc, "code %d, wanted %d (%s) for:\n%s", got, rc, err,
                yaml);
  ck_assert_ptr_null(c);
  ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
                "message '%s' does not start with '%s'", err, prefix);
  va_list ap;
  va_start(ap, prefix);
  for (const char *w; (w = va_arg(ap, const char *)) != NULL;)
    ck_assert_msg(strstr(err, w) != NULL, "message '%s' lacks '%s'", err, w);
  va_end(ap);
}

#define EXPECT_ERR(yaml, rc, prefix, ...) \
  expect_err((yaml), (rc), (prefix), __VA_ARGS__, (const char *)NULL)

/* One program, the setting under test on line 4 at column 5. */
#define WEB "programs:\n  web:\n    command: [/bin/true]\n"

/* ---- valid files ---- */

static const char *full_yaml =
    "socket: /run/mealy.sock\n"                                   /* 1 */
    "log_dir: /var/log/mealy\n"                                   /* 2 */
    "shutdown_grace: 45s\n"                                       /* 3 */
    "on_fatal: shutdown\n"                                        /* 4 */
    "programs:\n"                                                 /* 5 */
    "  web:\n"                                                    /* 6 */
    "    command: [/usr/bin/python3, -m, http.server, 8080]\n"    /* 7 */
    "    shell: false\n"
    "    cwd: /srv/www\n"
    "    env: {PORT: \"8080\", DEBUG: null, EMPTY: \"\", N: 5, T: ~}\n"
    "    restart: on-failure\n"
    "    success_exit_codes: [0, 2]\n"
    "    backoff: {initial: 250ms, max: 1m, multiplier: 1.5, jitter: 0.25,\n"
    "              reset_after: 20s}\n"
    "    intensity: {max_restarts: 3, within: 2m}\n"
    "    start_timeout: 5s\n"
    "    ready: {notify_fd: 4}\n"
    "    stop_signal: SIGINT\n"
    "    stop_grace: 15s\n"
    "    depends_on: [db]\n"
    "    stdout: web.out\n"
    "    stderr: {file: /tmp/web.err, max_size: 512KB, keep: 2}\n"
    "    user: root\n"
    "    group: root\n"
    "  db:\n"                                                     /* 25 */
    "    command: [/usr/bin/postgres, -D, /srv/db]\n";

START_TEST(t_full_config) {
  sv_config *c = parse_ok(full_yaml);
  ck_assert_str_eq(c->path, "sv.yaml");
  ck_assert_str_eq(c->socket, "/run/mealy.sock");
  ck_assert_str_eq(c->log_dir, "/var/log/mealy");
  ck_assert_int_eq(c->shutdown_grace_ms, 45000);
  ck_assert_int_eq(c->on_fatal, SV_FATAL_SHUTDOWN);
  ck_assert_uint_eq(c->nprograms, 2);

  const sv_program *w = &c->programs[0];
  ck_assert_ptr_eq(sv_config_find(c, "web"), w);
  ck_assert_str_eq(w->name, "web");
  ck_assert_int_eq(w->line, 6);
  ck_assert_int_eq(w->col, 3);
  ck_assert_uint_eq(w->argc, 4);
  ck_assert_str_eq(w->argv[0], "/usr/bin/python3");
  ck_assert_str_eq(w->argv[3], "8080");
  ck_assert_ptr_null(w->argv[4]);
  ck_assert(!w->shell);
  ck_assert_str_eq(w->cwd, "/srv/www");
  ck_assert_uint_eq(w->nenv, 5);
  ck_assert_str_eq(w->env[0].name, "PORT");
  ck_assert_str_eq(w->env[0].value, "8080");
  ck_assert_str_eq(w->env[1].name, "DEBUG");
  ck_assert_ptr_null(w->env[1].value);
  ck_assert_str_eq(w->env[2].value, "");
  ck_assert_str_eq(w->env[3].value, "5");
  ck_assert_ptr_null(w->env[4].value);
  ck_assert_int_eq(w->restart, SV_RESTART_ON_FAILURE);
  ck_assert_uint_eq(w->nsuccess, 2);
  ck_assert_int_eq(w->success_codes[0], 0);
  ck_assert_int_eq(w->success_codes[1], 2);
  ck_assert_int_eq(w->backoff.initial_ms, 250);
  ck_assert_int_eq(w->backoff.max_ms, 60000);
  ck_assert_double_eq(w->backoff.multiplier, 1.5);
  ck_assert_double_eq(w->backoff.jitter, 0.25);
  ck_assert_int_eq(w->backoff.reset_after_ms, 20000);
  ck_assert_uint_eq(w->intensity.max_restarts, 3);
  ck_assert_int_eq(w->intensity.within_ms, 120000);
  ck_assert_int_eq(w->start_timeout_ms, 5000);
  ck_assert_int_eq(w->ready, SV_READY_NOTIFY);
  ck_assert_int_eq(w->notify_fd, 4);
  ck_assert_int_eq(w->stop_signal, SIGINT);
  ck_assert_int_eq(w->stop_grace_ms, 15000);
  ck_assert_uint_eq(w->ndeps, 1);
  ck_assert_str_eq(w->depends_on[0], "db");
  ck_assert_int_eq(w->out.mode, SV_OUT_FILE);
  ck_assert_str_eq(w->out.file, "/var/log/mealy/web.out");
  ck_assert_uint_eq(w->out.max_size, 10u << 20);
  ck_assert_uint_eq(w->out.keep, 5);
  ck_assert_int_eq(w->err.mode, SV_OUT_FILE);
  ck_assert_str_eq(w->err.file, "/tmp/web.err");
  ck_assert_uint_eq(w->err.max_size, 512u << 10);
  ck_assert_uint_eq(w->err.keep, 2);
  ck_assert_str_eq(w->user, "root");
  ck_assert_str_eq(w->group, "root");
  ck_assert(w->has_uid && w->uid == 0);
  ck_assert(w->has_gid && w->gid == 0);

  const sv_program *d = sv_config_find(c, "db");
  ck_assert_ptr_eq(d, &c->programs[1]);
  ck_assert_int_eq(d->line, 25);
  ck_assert_ptr_null(sv_config_find(c, "nope"));
  /* db first: web depends on it */
  ck_assert_uint_eq(c->start_order[0], 1);
  ck_assert_uint_eq(c->start_order[1], 0);
  sv_config_free(c);
}
END_TEST

START_TEST(t_defaults) {
  sv_config *c = parse_ok(WEB);
  ck_assert_str_eq(c->socket, "mealy.sock");
  ck_assert_str_eq(c->log_dir, ".");
  ck_assert_uint_eq(c->socket_mode, 0600);
  ck_assert_int_eq(c->shutdown_grace_ms, 30000);
  ck_assert_int_eq(c->on_fatal, SV_FATAL_STAY);
  const sv_program *p = &c->programs[0];
  ck_assert_uint_eq(p->argc, 1);
  ck_assert_str_eq(p->argv[0], "/bin/true");
  ck_assert_ptr_null(p->argv[1]);
  ck_assert(!p->shell);
  ck_assert_ptr_null(p->cwd);
  ck_assert_uint_eq(p->nenv, 0);
  ck_assert_int_eq(p->restart, SV_RESTART_ALWAYS);
  ck_assert_uint_eq(p->nsuccess, 1);
  ck_assert_int_eq(p->success_codes[0], 0);
  ck_assert_int_eq(p->backoff.initial_ms, 100);
  ck_assert_int_eq(p->backoff.max_ms, 30000);
  ck_assert_double_eq(p->backoff.multiplier, 2.0);
  ck_assert_double_eq(p->backoff.jitter, 0.0);
  ck_assert_int_eq(p->backoff.reset_after_ms, 10000);
  ck_assert_uint_eq(p->intensity.max_restarts, 5);
  ck_assert_int_eq(p->intensity.within_ms, 60000);
  ck_assert_int_eq(p->start_timeout_ms, 0);
  ck_assert_int_eq(p->ready, SV_READY_NONE);
  ck_assert_int_eq(p->stop_signal, SIGTERM);
  ck_assert_int_eq(p->stop_grace_ms, 10000);
  ck_assert_uint_eq(p->ndeps, 0);
  ck_assert_int_eq(p->out.mode, SV_OUT_INHERIT);
  ck_assert_ptr_null(p->out.file);
  ck_assert_int_eq(p->err.mode, SV_OUT_INHERIT);
  ck_assert_ptr_null(p->user);
  ck_assert_ptr_null(p->group);
  ck_assert(!p->has_uid && !p->has_gid);
  ck_assert_uint_eq(c->start_order[0], 0);
  sv_config_free(c);
}
END_TEST

/* An empty value means "not set": the default applies. */
START_TEST(t_null_means_default) {
  sv_config *c = parse_ok("socket:\nprograms:\n  web:\n    command: [x]\n"
                          "    restart: ~\n    backoff:\n    env:\n"
                          "    stdout: null\n");
  ck_assert_str_eq(c->socket, "mealy.sock");
  ck_assert_int_eq(c->programs[0].restart, SV_RESTART_ALWAYS);
  ck_assert_int_eq(c->programs[0].backoff.max_ms, 30000);
  ck_assert_int_eq(c->programs[0].out.mode, SV_OUT_INHERIT);
  sv_config_free(c);
}
END_TEST

START_TEST(t_shell_command) {
  sv_config *c = parse_ok("programs:\n  s:\n    shell: true\n"
                          "    command: echo $HOME && sleep 1\n"
                          "  r: {command: [ls], restart: never}\n");
  const sv_program *p = &c->programs[0];
  ck_assert(p->shell);
  ck_assert_uint_eq(p->argc, 3);
  ck_assert_str_eq(p->argv[0], "/bin/sh");
  ck_assert_str_eq(p->argv[1], "-c");
  ck_assert_str_eq(p->argv[2], "echo $HOME && sleep 1");
  ck_assert_ptr_null(p->argv[3]);
  ck_assert_int_eq(c->programs[1].restart, SV_RESTART_NEVER);
  sv_config_free(c);
}
END_TEST

static void expect_order(const char *yaml, const char *want) {
  sv_config *c = parse_ok(yaml);
  char got[256] = "";
  for (size_t i = 0; i < c->nprograms; i++) {
    if (i) strcat(got, " ");
    strcat(got, c->programs[c->start_order[i]].name);
  }
  ck_assert_str_eq(got, want);
  sv_config_free(c);
}

START_TEST(t_start_order) {
  /* no dependencies: file order */
  expect_order("programs:\n  c: {command: [x]}\n  a: {command: [x]}\n"
               "  b: {command: [x]}\n", "c a b");
  /* dependencies first, otherwise file order */
  expect_order("programs:\n"
               "  web: {command: [x], depends_on: [api, cache]}\n"
               "  api: {command: [x], depends_on: [db]}\n"
               "  log: {command: [x]}\n"
               "  db: {command: [x]}\n"
               "  cache: {command: [x]}\n",
               "log db api cache web");
  /* a diamond */
  expect_order("programs:\n"
               "  top: {command: [x], depends_on: [l, r]}\n"
               "  l: {command: [x], depends_on: [base]}\n"
               "  r: {command: [x], depends_on: [base]}\n"
               "  base: {command: [x]}\n",
               "base l r top");
  /* a chain written backwards */
  expect_order("programs:\n"
               "  d: {command: [x], depends_on: [c]}\n"
               "  c: {command: [x], depends_on: [b]}\n"
               "  b: {command: [x], depends_on: [a]}\n"
               "  a: {command: [x]}\n",
               "a b c d");
}
END_TEST

START_TEST(t_ready_forms) {
  sv_config *c = parse_ok("programs:\n"
                          "  a: {command: [x], ready: none}\n"
                          "  b: {command: [x], ready: 2s}\n"
                          "  c: {command: [x], ready: {notify_fd: 3}}\n"
                          "  d: {command: [x], ready: 1500}\n"
                          "  e: {command: [x], ready: sd_notify, "
                          "watchdog: 10s}\n");
  ck_assert_int_eq(c->programs[0].ready, SV_READY_NONE);
  ck_assert_int_eq(c->programs[4].ready, SV_READY_SD_NOTIFY);
  ck_assert_int_eq(c->programs[4].watchdog_ms, 10000);
  ck_assert_int_eq(c->programs[0].watchdog_ms, 0);
  /* a new watchdog or readiness is a change that needs a restart */
  sv_config *d = parse_ok("programs:\n"
                          "  e: {command: [x], ready: sd_notify, "
                          "watchdog: 20s}\n"
                          "  f: {command: [x], ready: sd_notify}\n");
  ck_assert(sv_program_changed(&c->programs[4], &d->programs[0]));
  ck_assert(sv_program_changed(&c->programs[4], &d->programs[1]));
  ck_assert(!sv_program_changed(&c->programs[4], &c->programs[4]));
  sv_config_free(d);
  EXPECT_ERR(WEB "    watchdog: -1s\n", MLY_EINVAL, "sv.yaml:4:15: ",
             "watchdog cannot be negative");
  EXPECT_ERR(WEB "    watchdog: 0s\n", MLY_EINVAL, "sv.yaml:4:15: ",
             "watchdog");
  EXPECT_ERR(WEB "    ready: sdnotify\n", MLY_EINVAL, "sv.yaml:4:12: ",
             "sd_notify");
  ck_assert_int_eq(c->programs[1].ready, SV_READY_DELAY);
  ck_assert_int_eq(c->programs[1].ready_delay_ms, 2000);
  ck_assert_int_eq(c->programs[2].ready, SV_READY_NOTIFY);
  ck_assert_int_eq(c->programs[2].notify_fd, 3);
  ck_assert_int_eq(c->programs[3].ready_delay_ms, 1500);
  sv_config_free(c);
}
END_TEST

START_TEST(t_outputs) {
  sv_config *c = parse_ok("log_dir: logs/\n"
                          "programs:\n"
                          "  a: {command: [x], stdout: inherit, stderr: a.err}\n"
                          "  b: {command: [x], stdout: {file: sub/b.out}}\n"
                          "  c: {command: [x], stdout: {file: c.out, "
                          "max_size: 0, keep: 0}}\n");
  ck_assert_int_eq(c->programs[0].out.mode, SV_OUT_INHERIT);
  ck_assert_str_eq(c->programs[0].err.file, "logs/a.err");
  ck_assert_uint_eq(c->programs[0].err.max_size, 10u << 20);
  ck_assert_uint_eq(c->programs[0].err.keep, 5);
  ck_assert_str_eq(c->programs[1].out.file, "logs/sub/b.out");
  ck_assert_uint_eq(c->programs[1].out.keep, 5);
  ck_assert_str_eq(c->programs[2].out.file, "logs/c.out");
  ck_assert_uint_eq(c->programs[2].out.max_size, 0);
  ck_assert_uint_eq(c->programs[2].out.keep, 0);
  sv_config_free(c);
  /* the default log_dir is "." */
  c = parse_ok(WEB "    stdout: web.log\n");
  ck_assert_str_eq(c->programs[0].out.file, "./web.log");
  sv_config_free(c);
}
END_TEST

static uint64_t size_of(const char *text) {
  char yaml[256];
  snprintf(yaml, sizeof yaml, WEB "    stdout: {file: f, max_size: %s}\n",
           text);
  sv_config *c = parse_ok(yaml);
  uint64_t n = c->programs[0].out.max_size;
  sv_config_free(c);
  return n;
}

START_TEST(t_sizes) {
  ck_assert_uint_eq(size_of("10MB"), 10u << 20);
  ck_assert_uint_eq(size_of("512KB"), 512u << 10);
  ck_assert_uint_eq(size_of("1GB"), 1u << 30);
  ck_assert_uint_eq(size_of("4096"), 4096);
  ck_assert_uint_eq(size_of("2k"), 2048);
  ck_assert_uint_eq(size_of("3 MiB"), 3u << 20);
  ck_assert_uint_eq(size_of("100B"), 100);
  ck_assert_uint_eq(size_of("0"), 0);
}
END_TEST

START_TEST(t_signals) {
  ck_assert_int_eq(sv_signal_number("TERM"), SIGTERM);
  ck_assert_int_eq(sv_signal_number("SIGTERM"), SIGTERM);
  ck_assert_int_eq(sv_signal_number("15"), 15);
  ck_assert_int_eq(sv_signal_number("term"), SIGTERM);
  const char *names[] = {"HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TERM",
                         "ALRM", "CONT", "STOP", "TSTP", "PIPE", "CHLD",
                         "WINCH"};
  const int nums[] = {SIGHUP, SIGINT, SIGQUIT, SIGKILL, SIGUSR1, SIGUSR2,
                      SIGTERM, SIGALRM, SIGCONT, SIGSTOP, SIGTSTP, SIGPIPE,
                      SIGCHLD, SIGWINCH};
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    ck_assert_int_eq(sv_signal_number(names[i]), nums[i]);
    ck_assert_str_eq(sv_signal_name(nums[i]), names[i]);
  }
  ck_assert_int_eq(sv_signal_number("TREM"), -1);
  ck_assert_int_eq(sv_signal_number("0"), -1);
  ck_assert_int_eq(sv_signal_number("-9"), -1);
  ck_assert_int_eq(sv_signal_number("999"), -1);
  ck_assert_int_eq(sv_signal_number(""), -1);
  ck_assert_int_eq(sv_signal_number("SIG"), -1);
  ck_assert_int_eq(sv_signal_number(NULL), -1);
  ck_assert_ptr_null(sv_signal_name(0));
  ck_assert_ptr_null(sv_signal_name(-1));
  ck_assert_ptr_null(sv_signal_name(SIGRTMAX + 1));
  /* every signal a process can die of has a name, and the name reads
   * back as the same signal; real-time ones as kill -l names them */
  for (int sig = 1; sig <= SIGRTMAX; sig++) {
    const char *name = sv_signal_name(sig);
    ck_assert_msg(name != NULL, "signal %d has no name", sig);
    ck_assert_int_eq(sv_signal_number(name), sig);
  }
  ck_assert_str_eq(sv_signal_name(SIGRTMIN), "RTMIN");
  ck_assert_str_eq(sv_signal_name(SIGRTMAX), "RTMAX");
  ck_assert_str_eq(sv_signal_name(SIGRTMIN + 6), "RTMIN+6");
  ck_assert_str_eq(sv_signal_name(SIGRTMAX - 2), "RTMAX-2");
  ck_assert_int_eq(sv_signal_number("SIGRTMIN+6"), SIGRTMIN + 6);
  ck_assert_int_eq(sv_signal_number("rtmax-2"), SIGRTMAX - 2);
  ck_assert_int_eq(sv_signal_number("RTMIN-1"), -1);
  ck_assert_int_eq(sv_signal_number("RTMIN+"), -1);
  ck_assert_int_eq(sv_signal_number("RTMAX+1"), -1);
  sv_config *c = parse_ok(WEB "    stop_signal: 9\n");
  ck_assert_int_eq(c->programs[0].stop_signal, SIGKILL);
  sv_config_free(c);
}
END_TEST

START_TEST(t_user_group) {
  /* a user alone runs in the user's own group */
  sv_config *c = parse_ok(WEB "    user: root\n");
  ck_assert(c->programs[0].has_uid && c->programs[0].uid == 0);
  ck_assert(c->programs[0].has_gid && c->programs[0].gid == 0);
  ck_assert_ptr_null(c->programs[0].group);
  sv_config_free(c);
  /* a group alone */
  c = parse_ok(WEB "    group: root\n");
  ck_assert(!c->programs[0].has_uid);
  ck_assert(c->programs[0].has_gid && c->programs[0].gid == 0);
  sv_config_free(c);
  /* numeric ids that name no entry are used as they are */
  c = parse_ok(WEB "    user: 54321\n    group: 54322\n");
  ck_assert(c->programs[0].has_uid && c->programs[0].uid == 54321);
  ck_assert(c->programs[0].has_gid && c->programs[0].gid == 54322);
  /* no passwd entry: no login name, home or supplementary groups */
  ck_assert_ptr_null(c->programs[0].login);
  ck_assert_ptr_null(c->programs[0].home);
  ck_assert_uint_eq(c->programs[0].ngroups, 0);
  sv_config_free(c);
  /* ... but a uid with no entry and no group: refused, it would run in
   * the supervisor's group (root's) */
  EXPECT_ERR(WEB "    user: \"54321\"\n", MLY_EINVAL, "sv.yaml:4:11: ",
             "user 54321 has no passwd entry", "set group:");
}
END_TEST

/* user: brings the passwd entry and the groups initgroups would set */
START_TEST(t_user_identity) {
  struct passwd *pw = getpwuid(0);
  ck_assert_ptr_nonnull(pw);
  char text[256];
  snprintf(text, sizeof text, WEB "    user: %s\n", pw->pw_name);
  sv_config *c = parse_ok(text);
  const sv_program *p = &c->programs[0];
  ck_assert_str_eq(p->login, pw->pw_name);
  ck_assert_str_eq(p->home, pw->pw_dir);
  ck_assert_str_eq(p->shell_path, *pw->pw_shell ? pw->pw_shell : "/bin/sh");
  gid_t want[256];
  int n = 256;
  ck_assert_int_ge(getgrouplist(pw->pw_name, pw->pw_gid, want, &n), 0);
  ck_assert_uint_eq(p->ngroups, (size_t)n);
  for (int i = 0; i < n; i++) ck_assert_uint_eq(p->groups[i], want[i]);
  bool has_primary = false;
  for (size_t i = 0; i < p->ngroups; i++) has_primary |= p->groups[i] == p->gid;
  ck_assert(has_primary);
  /* another group: still the user's groups, that group among them */
  snprintf(text, sizeof text, WEB "    user: %s\n    group: 54329\n",
           pw->pw_name);
  sv_config *d = parse_ok(text);
  bool has_group = false;
  for (size_t i = 0; i < d->programs[0].ngroups; i++)
    has_group |= d->programs[0].groups[i] == 54329;
  ck_assert(has_group);
  ck_assert(sv_program_changed(&c->programs[0], &d->programs[0]));
  sv_config_free(d);
  sv_config_free(c);
}
END_TEST

/* env_inherit: true by default, false globally, per program on top */
START_TEST(t_env_inherit) {
  sv_config *c = parse_ok(WEB);
  ck_assert(c->env_inherit && c->programs[0].env_inherit);
  sv_config *d = parse_ok(WEB "    env_inherit: false\n");
  ck_assert(!d->programs[0].env_inherit);
  ck_assert(sv_program_changed(&c->programs[0], &d->programs[0]));
  sv_config_free(d);
  sv_config_free(c);
  /* global false, after the programs: it still applies to them */
  c = parse_ok(WEB "  other:\n    command: [/bin/true]\n    env_inherit: true\n"
               "env_inherit: false\n");
  ck_assert(!c->env_inherit);
  ck_assert(!c->programs[0].env_inherit);
  ck_assert(c->programs[1].env_inherit);
  sv_config_free(c);
  EXPECT_ERR(WEB "    env_inherit: maybe\n", MLY_EINVAL, "sv.yaml:4:18: ",
             "env_inherit", "true");
  EXPECT_ERR("env_inherit: [x]\n" WEB, MLY_EINVAL, "sv.yaml:1:14: ",
             "env_inherit must be", "not a list");
}
END_TEST

/* ---- errors, each pointing at the node at fault ---- */

START_TEST(t_err_unknown_key) {
  EXPECT_ERR(WEB "    comand: [x]\n", MLY_EINVAL, "sv.yaml:4:5: ",
             "unknown key 'comand' in program 'web'",
             "(known: command, shell, cwd, env,",
             "user, group, limits, env_inherit)");
  EXPECT_ERR("sockt: x\n" WEB, MLY_EINVAL, "sv.yaml:1:1: ",
             "unknown key 'sockt' at the top level",
             "known: socket, socket_mode, log_dir, shutdown_grace, on_fatal, "
             "state_dir, orphans, sync, tracking, env_inherit, control_timeout, "
             "control_max_clients, metrics, programs");
  EXPECT_ERR(WEB "    backoff: {initial: 1s, maximum: 2s}\n", MLY_EINVAL,
             "sv.yaml:4:28: ", "unknown key 'maximum' in backoff of program "
             "'web'", "initial, max, multiplier, jitter, reset_after");
  EXPECT_ERR(WEB "    intensity: {restarts: 1}\n", MLY_EINVAL,
             "sv.yaml:4:17: ", "unknown key 'restarts' in intensity",
             "max_restarts, within");
  EXPECT_ERR(WEB "    ready: {fd: 3}\n", MLY_EINVAL, "sv.yaml:4:13: ",
             "unknown key 'fd' in ready", "notify_fd");
  EXPECT_ERR(WEB "    stdout: {path: x}\n", MLY_EINVAL, "sv.yaml:4:14: ",
             "unknown key 'path' in stdout of program 'web'",
             "file, max_size, keep");
  /* a key that is not a name */
  EXPECT_ERR(WEB "    [a]: 1\n", MLY_EINVAL, "sv.yaml:4:5: ",
             "keys in program 'web' must be names, not a list");
}
END_TEST

START_TEST(t_socket_mode) {
  sv_config *c = parse_ok("socket_mode: \"0660\"\n" WEB);
  ck_assert_uint_eq(c->socket_mode, 0660);
  sv_config_free(c);
  c = parse_ok("socket_mode: 600\n" WEB);
  ck_assert_uint_eq(c->socket_mode, 0600);
  sv_config_free(c);
  EXPECT_ERR("socket_mode: \"0680\"\n" WEB, MLY_EINVAL, "sv.yaml:1:14: ",
             "socket_mode must be an octal mode such as \"0600\", not '0680'");
  EXPECT_ERR("socket_mode: \"01777\"\n" WEB, MLY_EINVAL, "sv.yaml:1:14: ",
             "socket_mode must be an octal mode");
  EXPECT_ERR("socket_mode: \"0400\"\n" WEB, MLY_EINVAL, "sv.yaml:1:14: ",
             "would lock the supervisor's own user out");
  EXPECT_ERR("socket_mode: [1]\n" WEB, MLY_EINVAL, "sv.yaml:1:14: ",
             "socket_mode must be a string, not a list");
}
END_TEST

START_TEST(t_durable_settings) {
  sv_config *c = parse_ok(WEB);
  ck_assert_ptr_null(c->state_dir);
  ck_assert_int_eq(c->orphans, SV_ORPHANS_ADOPT);
  ck_assert_int_eq(c->sync, MLY_SYNC_ALWAYS);
  sv_config_free(c);
  c = parse_ok("state_dir: /var/lib/x\norphans: stop\nsync: interval:250ms\n" WEB);
  ck_assert_str_eq(c->state_dir, "/var/lib/x");
  ck_assert_int_eq(c->orphans, SV_ORPHANS_STOP);
  ck_assert_int_eq(c->sync, MLY_SYNC_INTERVAL);
  ck_assert_uint_eq(c->sync_interval_ms, 250);
  sv_config_free(c);
  EXPECT_ERR("orphans: keep\n" WEB, MLY_EINVAL, "sv.yaml:1:10: ",
             "orphans must be adopt or stop, not 'keep'");
  EXPECT_ERR("sync: sometimes\n" WEB, MLY_EINVAL, "sv.yaml:1:7: ",
             "sync must be always, never or interval:DURATION");
  EXPECT_ERR("state_dir: ''\n" WEB, MLY_EINVAL, "sv.yaml:1:12: ",
             "state_dir is empty");
}
END_TEST

START_TEST(t_tracking_limits) {
  sv_config *c = parse_ok(WEB);
  ck_assert_int_eq(c->tracking, SV_TRACK_AUTO);
  ck_assert_uint_eq(c->programs[0].limits.memory_max, 0);
  ck_assert_int_eq(c->programs[0].limits.line[SV_LIMIT_MEMORY], 0);
  sv_config_free(c);
  c = parse_ok("tracking: pgroup\n" WEB
               "    limits: {memory_max: 64MB, cpu_max: 0.5, pids_max: 10}\n");
  ck_assert_int_eq(c->tracking, SV_TRACK_PGROUP);
  const sv_limits *l = &c->programs[0].limits;
  ck_assert_uint_eq(l->memory_max, 64ull << 20);
  ck_assert(l->cpu_max == 0.5);
  ck_assert_uint_eq(l->pids_max, 10);
  /* where each is, for the refusal where cgroups cannot apply it */
  ck_assert_int_eq(l->line[SV_LIMIT_MEMORY], 5);
  ck_assert_int_eq(l->col[SV_LIMIT_MEMORY], 26);
  ck_assert_int_eq(l->col[SV_LIMIT_CPU], 41);
  ck_assert_int_eq(l->col[SV_LIMIT_PIDS], 56);
  sv_config_free(c);
  /* a changed limit is a changed definition */
  sv_config *a = parse_ok(WEB "    limits: {pids_max: 10}\n");
  sv_config *b = parse_ok(WEB "    limits: {pids_max: 11}\n");
  ck_assert(sv_program_changed(&a->programs[0], &b->programs[0]));
  ck_assert(!sv_program_changed(&a->programs[0], &a->programs[0]));
  sv_config_free(a);
  sv_config_free(b);
  EXPECT_ERR("tracking: systemd\n" WEB, MLY_EINVAL, "sv.yaml:1:11: ",
             "tracking must be auto, cgroup or pgroup, not 'systemd'");
  EXPECT_ERR(WEB "    limits: {cpu_max: 0}\n", MLY_EINVAL, "sv.yaml:4:23: ",
             "cpu_max is a number of CPUs between 0.01 and 4096");
  EXPECT_ERR(WEB "    limits: {pids_max: 0}\n", MLY_EINVAL, "sv.yaml:4:24: ",
             "pids_max");
  EXPECT_ERR(WEB "    limits: {memory_max: 1}\n", MLY_EINVAL, "sv.yaml:4:26: ",
             "memory_max must be at least 4KB");
  EXPECT_ERR(WEB "    limits: {memory: 1GB}\n", MLY_EINVAL, "sv.yaml:4:14: ",
             "unknown key 'memory' in limits of program 'web'",
             "memory_max, cpu_max, pids_max");
  EXPECT_ERR(WEB "    limits: 1GB\n", MLY_EINVAL, "sv.yaml:4:13: ",
             "limits must be a map");
}
END_TEST

START_TEST(t_err_duration) {
  EXPECT_ERR("socket: s\nshutdown_grace: soon\n" WEB, MLY_EINVAL,
             "sv.yaml:2:17: ", "'soon' is not a duration; write 250ms, 10s "
             "or 2m");
  EXPECT_ERR(WEB "    stop_grace: 10 s\n", MLY_EINVAL, "sv.yaml:4:17: ",
             "'10 s' is not a duration");
  EXPECT_ERR(WEB "    stop_grace: -5s\n", MLY_EINVAL, "sv.yaml:4:17: ",
             "stop_grace cannot be negative");
  EXPECT_ERR(WEB "    stop_grace: 0s\n", MLY_EINVAL, "sv.yaml:4:17: ",
             "stop_grace must be more than 0");
  EXPECT_ERR("shutdown_grace: 0\n" WEB, MLY_EINVAL, "sv.yaml:1:17: ",
             "shutdown_grace must be more than 0");
  EXPECT_ERR(WEB "    backoff: {initial: 0ms}\n", MLY_EINVAL,
             "sv.yaml:4:24: ", "backoff initial must be more than 0");
  EXPECT_ERR(WEB "    backoff: {reset_after: 0}\n", MLY_EINVAL,
             "sv.yaml:4:28: ", "reset_after must be more than 0");
  EXPECT_ERR(WEB "    intensity: {within: 0s}\n", MLY_EINVAL,
             "sv.yaml:4:25: ", "intensity within must be more than 0");
  EXPECT_ERR(WEB "    start_timeout: 99999999999999999999h\n", MLY_EINVAL,
             "sv.yaml:4:20: ", "longer than a year");
  EXPECT_ERR(WEB "    start_timeout: 9000h\n", MLY_EINVAL, "sv.yaml:4:20: ",
             "longer than a year");
  EXPECT_ERR(WEB "    start_timeout: [1s]\n", MLY_EINVAL, "sv.yaml:4:20: ",
             "start_timeout must be a duration such as 10s, not a list");
  EXPECT_ERR(WEB "    backoff: {initial: 1m}\n", MLY_EINVAL,
             "sv.yaml:4:14: ", "backoff initial (60000ms) is more than max "
             "(30000ms)");
  /* start_timeout may be 0 */
  sv_config *c = parse_ok(WEB "    start_timeout: 0\n");
  sv_config_free(c);
}
END_TEST

START_TEST(t_err_no_command) {
  EXPECT_ERR("programs:\n  db:\n    command: [x]\n  web:\n    cwd: /\n",
             MLY_EINVAL, "sv.yaml:4:3: ", "program 'web' has no command");
  EXPECT_ERR("programs:\n  web:\n", MLY_EINVAL, "sv.yaml:2:3: ",
             "program 'web' has no command");
  EXPECT_ERR("programs:\n  web:\n    command:\n", MLY_EINVAL, "sv.yaml:2:3: ",
             "program 'web' has no command");
  EXPECT_ERR("programs:\n  web: [x]\n", MLY_EINVAL, "sv.yaml:2:8: ",
             "program 'web' must be a map of settings", "not a list");
}
END_TEST

START_TEST(t_err_depends) {
  EXPECT_ERR("programs:\n  web:\n    command: [x]\n    depends_on: [api, db]\n"
             "  api: {command: [x]}\n",
             MLY_EINVAL, "sv.yaml:4:23: ",
             "program 'web' depends on 'db', which is not defined");
  EXPECT_ERR(WEB "    depends_on: db\n", MLY_EINVAL, "sv.yaml:4:17: ",
             "depends_on: expected a list of strings");
  EXPECT_ERR(WEB "    depends_on: [[a]]\n", MLY_EINVAL, "sv.yaml:4:18: ",
             "expected a list of strings", "item 1 is a list");
  EXPECT_ERR(WEB "    depends_on: [web]\n", MLY_EINVAL, "sv.yaml:4:18: ",
             "program 'web' depends on itself");
  EXPECT_ERR("programs:\n  web:\n    command: [x]\n    depends_on: [a, a]\n"
             "  a: {command: [x]}\n",
             MLY_EINVAL, "sv.yaml:4:21: ", "depends_on lists 'a' twice");
}
END_TEST

START_TEST(t_err_cycle) {
  EXPECT_ERR("programs:\n"
             "  x: {command: [x]}\n"
             "  a: {command: [x], depends_on: [b]}\n"
             "  b: {command: [x], depends_on: [a]}\n",
             MLY_EINVAL, "sv.yaml:3:3: ", "dependency cycle: a -> b -> a");
  /* reported from its first member in the file, whatever leads into it */
  EXPECT_ERR("programs:\n"
             "  top: {command: [x], depends_on: [c]}\n"
             "  a: {command: [x], depends_on: [b]}\n"
             "  b: {command: [x], depends_on: [c]}\n"
             "  c: {command: [x], depends_on: [a]}\n",
             MLY_EINVAL, "sv.yaml:3:3: ",
             "dependency cycle: a -> b -> c -> a");
}
END_TEST

START_TEST(t_err_command) {
  EXPECT_ERR("programs:\n  web:\n    command: python3 -m http.server\n",
             MLY_EINVAL, "sv.yaml:3:14: ",
             "command is a string; set shell: true to run it through "
             "/bin/sh, or write it as a list");
  EXPECT_ERR("programs:\n  web:\n    command: [a, b]\n    shell: true\n",
             MLY_EINVAL, "sv.yaml:3:14: ", "command is a list",
             "shell: true");
  EXPECT_ERR("programs:\n  web:\n    command: []\n", MLY_EINVAL,
             "sv.yaml:3:14: ", "command is an empty list");
  EXPECT_ERR("programs:\n  web:\n    command: [\"\", b]\n", MLY_EINVAL,
             "sv.yaml:3:15: ", "first item of command", "empty");
  EXPECT_ERR("programs:\n  web:\n    command: [a, {b: c}]\n", MLY_EINVAL,
             "sv.yaml:3:18: ", "expected a list of strings",
             "item 2 is a map");
  EXPECT_ERR("programs:\n  web:\n    command:\n      - a\n      -\n",
             MLY_EINVAL, "sv.yaml:5:8: ", "expected a list of strings",
             "item 2 is empty");
  EXPECT_ERR("programs:\n  web:\n    command: {a: b}\n", MLY_EINVAL,
             "sv.yaml:3:14: ", "command must be a list of strings");
  EXPECT_ERR("programs:\n  web:\n    shell: true\n    command: \"\"\n",
             MLY_EINVAL, "sv.yaml:4:14: ", "command is empty");
  EXPECT_ERR("programs:\n  web:\n    command: [\"a\\0b\"]\n", MLY_EINVAL,
             "sv.yaml:3:15: ", "NUL character");
}
END_TEST

START_TEST(t_err_syntax) {
  EXPECT_ERR("programs:\n  web:\n    command: [x\n", MLY_EINVAL, "sv.yaml:4:1: ",
             "YAML: did not find expected ',' or ']'",
             "while parsing a flow sequence at 3:14");
  EXPECT_ERR("programs:\n  web:\n    command: [x]\n   cwd: /\n", MLY_EINVAL,
             "sv.yaml:4:4: ", "YAML: ");
  EXPECT_ERR("programs:\n  web:\n    command: \"x\n", MLY_EINVAL,
             "sv.yaml:4:1: ", "YAML: found unexpected end of stream",
             "while scanning a quoted scalar at 3:14");
  EXPECT_ERR("programs:\n  web: *nothing\n", MLY_EINVAL, "sv.yaml:2:8: ",
             "YAML: found undefined alias");
  EXPECT_ERR("programs:\n  web:\n    command: [\xff]\n", MLY_EINVAL,
             "sv.yaml:3:15: ", "YAML: invalid", "UTF-8");
  /* a second document would be silently ignored */
  EXPECT_ERR(WEB "---\nother: 1\n", MLY_EINVAL, "sv.yaml:5:1: ",
             "another YAML document");
  /* and so would a third, after an empty second */
  EXPECT_ERR(WEB "---\n---\nother: 1\n", MLY_EINVAL, "sv.yaml:6:1: ",
             "another YAML document");
  EXPECT_ERR(WEB "--- ~\n---\n--- [1]\n", MLY_EINVAL, "sv.yaml:6:5: ",
             "another YAML document");
  /* document markers around the one document are fine */
  sv_config_free(parse_ok("---\n" WEB "...\n"));
  sv_config_free(parse_ok(WEB "---\n"));
  sv_config_free(parse_ok(WEB "---\n---\n...\n"));
}
END_TEST

/* Tags change what a value means; only the ones that say what the node
 * already is are accepted, and the error points at the tag. */
START_TEST(t_err_tags) {
  EXPECT_ERR("programs:\n  web:\n    command: !!python/object:os.system x\n",
             MLY_EINVAL, "sv.yaml:3:14: ", "the YAML tag !!python/object:os.system "
             "is not supported");
  EXPECT_ERR("programs:\n  web:\n    command: !!binary eA==\n", MLY_EINVAL,
             "sv.yaml:3:14: ", "the YAML tag !!binary is not supported");
  EXPECT_ERR(WEB "    cwd: !!null \"/x\"\n", MLY_EINVAL, "sv.yaml:4:10: ",
             "the YAML tag !!null is not supported");
  EXPECT_ERR(WEB "    shell: !!bool true\n", MLY_EINVAL, "sv.yaml:4:12: ",
             "the YAML tag !!bool");
  EXPECT_ERR("programs: !mine\n  web:\n    command: [x]\n", MLY_EINVAL,
             "sv.yaml:1:11: ", "the YAML tag !mine is not supported");
  EXPECT_ERR("programs:\n  web:\n    command: !<tag:x.org:y> [x]\n",
             MLY_EINVAL, "sv.yaml:3:14: ", "the YAML tag tag:x.org:y");
  /* the plain ones say nothing new: accepted */
  sv_config_free(parse_ok("programs: !!map\n  web:\n    command: !!seq "
                          "[!!str x]\n"));
}
END_TEST

START_TEST(t_err_types) {
  EXPECT_ERR(WEB "    shell: yes\n", MLY_EINVAL, "sv.yaml:4:12: ",
             "shell must be true or false, not 'yes'");
  EXPECT_ERR(WEB "    cwd: [a]\n", MLY_EINVAL, "sv.yaml:4:10: ",
             "cwd must be a string, not a list");
  EXPECT_ERR(WEB "    cwd: \"\"\n", MLY_EINVAL, "sv.yaml:4:10: ",
             "cwd is empty");
  EXPECT_ERR(WEB "    env: [A]\n", MLY_EINVAL, "sv.yaml:4:10: ",
             "env must be a map");
  EXPECT_ERR(WEB "    backoff: 5s\n", MLY_EINVAL, "sv.yaml:4:14: ",
             "backoff must be a map");
  EXPECT_ERR(WEB "    intensity: [5]\n", MLY_EINVAL, "sv.yaml:4:16: ",
             "intensity must be a map");
  EXPECT_ERR(WEB "    success_exit_codes: 0\n", MLY_EINVAL, "sv.yaml:4:25: ",
             "success_exit_codes must be a list");
  EXPECT_ERR(WEB "    success_exit_codes: []\n", MLY_EINVAL, "sv.yaml:4:25: ",
             "success_exit_codes is empty");
  EXPECT_ERR(WEB "    success_exit_codes: [0, one]\n", MLY_EINVAL,
             "sv.yaml:4:29: ", "exit code must be a whole number, not 'one'");
  EXPECT_ERR(WEB "    success_exit_codes: [256]\n", MLY_EINVAL,
             "sv.yaml:4:26: ", "exit code must be at most 255");
  EXPECT_ERR(WEB "    success_exit_codes: [-1]\n", MLY_EINVAL,
             "sv.yaml:4:26: ", "exit code must be at least 0");
  EXPECT_ERR(WEB "    ready: [1]\n", MLY_EINVAL, "sv.yaml:4:12: ",
             "ready must be none, a duration such as 2s, sd_notify or {notify_fd: 3}");
  EXPECT_ERR(WEB "    ready: soon\n", MLY_EINVAL, "sv.yaml:4:12: ",
             "'soon' is not none, sd_notify or a duration");
  EXPECT_ERR(WEB "    ready: {}\n", MLY_EINVAL, "sv.yaml:4:12: ",
             "ready needs notify_fd");
  EXPECT_ERR(WEB "    ready: 0s\n", MLY_EINVAL, "sv.yaml:4:12: ",
             "ready must be more than 0");
  EXPECT_ERR(WEB "    stdout: [a]\n", MLY_EINVAL, "sv.yaml:4:13: ",
             "stdout must be inherit, a file, or {file:");
  EXPECT_ERR(WEB "    stderr: {keep: 2}\n", MLY_EINVAL, "sv.yaml:4:13: ",
             "stderr needs a file");
  EXPECT_ERR(WEB "    stdout: \"\"\n", MLY_EINVAL, "sv.yaml:4:13: ",
             "stdout file is empty");
  EXPECT_ERR(WEB "    user: [root]\n", MLY_EINVAL, "sv.yaml:4:11: ",
             "user must be a string");
}
END_TEST

START_TEST(t_err_values) {
  EXPECT_ERR(WEB "    stop_signal: TREM\n", MLY_EINVAL, "sv.yaml:4:18: ",
             "'TREM' is not a signal", "TERM");
  EXPECT_ERR(WEB "    stop_signal: 0\n", MLY_EINVAL, "sv.yaml:4:18: ",
             "'0' is not a signal");
  EXPECT_ERR(WEB "    restart: sometimes\n", MLY_EINVAL, "sv.yaml:4:14: ",
             "restart must be always, on-failure or never, not 'sometimes'");
  EXPECT_ERR("on_fatal: panic\n" WEB, MLY_EINVAL, "sv.yaml:1:11: ",
             "on_fatal must be stay or shutdown, not 'panic'");
  EXPECT_ERR(WEB "    intensity: {max_restarts: 0}\n", MLY_EINVAL,
             "sv.yaml:4:31: ", "max_restarts must be at least 1, not 0");
  EXPECT_ERR(WEB "    intensity: {max_restarts: -3}\n", MLY_EINVAL,
             "sv.yaml:4:31: ", "max_restarts must be at least 1");
  EXPECT_ERR(WEB "    intensity: {max_restarts: 99999999999999999999999}\n",
             MLY_EINVAL, "sv.yaml:4:31: ", "max_restarts must be at most");
  EXPECT_ERR(WEB "    ready: {notify_fd: 2}\n", MLY_EINVAL, "sv.yaml:4:24: ",
             "notify_fd must be 3 or more", "stdin, stdout and stderr");
  EXPECT_ERR(WEB "    ready: {notify_fd: 3.5}\n", MLY_EINVAL,
             "sv.yaml:4:24: ", "notify_fd must be a whole number");
  EXPECT_ERR(WEB "    ready: {notify_fd: 100000}\n", MLY_EINVAL,
             "sv.yaml:4:24: ", "notify_fd must be at most 1023");
  EXPECT_ERR(WEB "    backoff: {jitter: 1.5}\n", MLY_EINVAL, "sv.yaml:4:23: ",
             "jitter must be between 0 and 1", "1.5");
  EXPECT_ERR(WEB "    backoff: {jitter: -0.1}\n", MLY_EINVAL,
             "sv.yaml:4:23: ", "jitter must be between 0 and 1");
  EXPECT_ERR(WEB "    backoff: {multiplier: 0.5}\n", MLY_EINVAL,
             "sv.yaml:4:27: ", "multiplier must be 1 or more", "0.5");
  EXPECT_ERR(WEB "    backoff: {multiplier: .nan}\n", MLY_EINVAL,
             "sv.yaml:4:27: ", "multiplier must be a number");
  EXPECT_ERR(WEB "    backoff: {multiplier: 1e999}\n", MLY_EINVAL,
             "sv.yaml:4:27: ", "multiplier must be a number");
  EXPECT_ERR(WEB "    stdout: {file: f, keep: -1}\n", MLY_EINVAL,
             "sv.yaml:4:29: ", "keep must be at least 0");
  EXPECT_ERR(WEB "    stdout: {file: f, keep: 5000}\n", MLY_EINVAL,
             "sv.yaml:4:29: ", "keep must be at most 1000");
  char yaml[512];
  snprintf(yaml, sizeof yaml, "socket: /%0150d\n" WEB, 0);
  EXPECT_ERR(yaml, MLY_EINVAL, "sv.yaml:1:9: ", "socket path is 151 bytes",
             "shorter than 108");
  /* valid edge values */
  sv_config *c = parse_ok(WEB "    backoff: {multiplier: 1, jitter: 1}\n"
                          "    success_exit_codes: [255]\n");
  ck_assert_double_eq(c->programs[0].backoff.multiplier, 1.0);
  ck_assert_double_eq(c->programs[0].backoff.jitter, 1.0);
  sv_config_free(c);
}
END_TEST

START_TEST(t_err_sizes) {
  EXPECT_ERR(WEB "    stdout: {file: f, max_size: 10XB}\n", MLY_EINVAL,
             "sv.yaml:4:33: ", "max_size '10XB' is not a size",
             "512KB, 10MB, 1GB");
  EXPECT_ERR(WEB "    stdout: {file: f, max_size: MB}\n", MLY_EINVAL,
             "sv.yaml:4:33: ", "is not a size");
  EXPECT_ERR(WEB "    stdout: {file: f, max_size: -1}\n", MLY_EINVAL,
             "sv.yaml:4:33: ", "is not a size");
  EXPECT_ERR(WEB "    stdout: {file: f, max_size: 99999999999GB}\n",
             MLY_EINVAL, "sv.yaml:4:33: ", "is too big");
}
END_TEST

START_TEST(t_err_users) {
  EXPECT_ERR(WEB "    user: no-such-user-mealy\n", MLY_EINVAL,
             "sv.yaml:4:11: ", "unknown user 'no-such-user-mealy'");
  EXPECT_ERR(WEB "    group: no-such-group-mealy\n", MLY_EINVAL,
             "sv.yaml:4:12: ", "unknown group 'no-such-group-mealy'");
}
END_TEST

START_TEST(t_err_duplicates) {
  EXPECT_ERR("programs:\n  web: {command: [x]}\n  db: {command: [x]}\n"
             "  web: {command: [y]}\n",
             MLY_EINVAL, "sv.yaml:4:3: ",
             "program 'web' is defined twice (first at 2:3)");
  EXPECT_ERR("socket: a\n" WEB "socket: b\n", MLY_EINVAL, "sv.yaml:5:1: ",
             "'socket' is set twice at the top level (first at 1:1)");
  EXPECT_ERR(WEB "    command: [y]\n", MLY_EINVAL, "sv.yaml:4:5: ",
             "'command' is set twice in program 'web' (first at 3:5)");
  EXPECT_ERR(WEB "    env: {A: 1, B: 2, A: 3}\n", MLY_EINVAL,
             "sv.yaml:4:23: ", "env A is set twice (first at 4:11)");
  EXPECT_ERR(WEB "    backoff: {max: 1s, max: 2s}\n", MLY_EINVAL,
             "sv.yaml:4:24: ", "'max' is set twice in backoff");
}
END_TEST

START_TEST(t_err_env) {
  EXPECT_ERR(WEB "    env: {1X: a}\n", MLY_EINVAL, "sv.yaml:4:11: ",
             "'1X' is not a valid environment variable name");
  EXPECT_ERR(WEB "    env: {A=B: a}\n", MLY_EINVAL, "sv.yaml:4:11: ",
             "not a valid environment variable name");
  EXPECT_ERR(WEB "    env: {A: [1]}\n", MLY_EINVAL, "sv.yaml:4:14: ",
             "env A must be a string, or null to unset it");
  EXPECT_ERR(WEB "    env: {[A]: 1}\n", MLY_EINVAL, "sv.yaml:4:11: ",
             "env name must be a string");
}
END_TEST

START_TEST(t_err_top_level) {
  EXPECT_ERR("", MLY_EINVAL, "sv.yaml:1:1: ", "the file is empty");
  EXPECT_ERR("# only a comment\n\n", MLY_EINVAL, "sv.yaml:1:1: ",
             "the file is empty");
  EXPECT_ERR("- a\n- b\n", MLY_EINVAL, "sv.yaml:1:1: ",
             "the top level is a list; it must be a map with a 'programs' "
             "key");
  EXPECT_ERR("hello\n", MLY_EINVAL, "sv.yaml:1:1: ",
             "the top level is a string");
  EXPECT_ERR("socket: s\n", MLY_EINVAL, "sv.yaml:1:1: ", "no 'programs' key");
  EXPECT_ERR("socket: s\nprograms:\n", MLY_EINVAL, "sv.yaml:2:10: ",
             "programs is empty");
  EXPECT_ERR("programs: {}\n", MLY_EINVAL, "sv.yaml:1:11: ",
             "programs is empty");
  EXPECT_ERR("programs: [a]\n", MLY_EINVAL, "sv.yaml:1:11: ",
             "programs must be a map");
}
END_TEST

START_TEST(t_err_names) {
  EXPECT_ERR("programs:\n  web/1: {command: [x]}\n", MLY_EINVAL,
             "sv.yaml:2:3: ", "program name 'web/1' is not allowed",
             "letters, digits");
  EXPECT_ERR("programs:\n  \"..\": {command: [x]}\n", MLY_EINVAL,
             "sv.yaml:2:3: ", "program name '..' is not allowed");
  EXPECT_ERR("programs:\n  \"\": {command: [x]}\n", MLY_EINVAL,
             "sv.yaml:2:3: ", "program name '' is not allowed");
  EXPECT_ERR("programs:\n  [a]: {command: [x]}\n", MLY_EINVAL, "sv.yaml:2:3: ",
             "program names must be strings");
  char yaml[256];
  snprintf(yaml, sizeof yaml, "programs:\n  %064d: {command: [x]}\n", 0);
  EXPECT_ERR(yaml, MLY_EINVAL, "sv.yaml:2:3: ", "is 64 characters long",
             "the limit is 63");
  snprintf(yaml, sizeof yaml, "programs:\n  a-b.c_%057d: {command: [x]}\n", 0);
  sv_config *c = parse_ok(yaml);
  ck_assert_uint_eq(strlen(c->programs[0].name), 63);
  sv_config_free(c);
}
END_TEST

/* What would make libyaml or the loader slow or huge is refused. */
START_TEST(t_err_limits) {
  size_t big = (1u << 20) + 1;
  char *text = malloc(big + 64);
  ck_assert_ptr_nonnull(text);
  memset(text, '#', big);
  text[big] = '\0';
  EXPECT_ERR(text, MLY_EINVAL, "sv.yaml: ", "is larger than 1 MiB");
  /* nesting */
  strcpy(text, "programs: ");
  memset(text + 10, '[', 1000);
  text[1010] = '\0';
  EXPECT_ERR(text, MLY_EINVAL, "sv.yaml:1:42: ",
             "nested more than 32 deep");
  /* anchors and aliases */
  size_t n = (size_t)sprintf(text, "programs: {a: {command: [");
  for (int i = 0; i < 1001; i++) n += (size_t)sprintf(text + n, "&a%d x,", i);
  strcpy(text + n, "]}}\n");
  EXPECT_ERR(text, MLY_EINVAL, "sv.yaml:1:", "more than 1000 anchors (&name)");
  n = (size_t)sprintf(text, "programs: {a: {command: [&a x");
  for (int i = 0; i < 1001; i++) n += (size_t)sprintf(text + n, ", *a");
  strcpy(text + n, "]}}\n");
  EXPECT_ERR(text, MLY_EINVAL, "sv.yaml:1:", "more than 1000 aliases (*name)");
  /* a big value named many times over */
  n = (size_t)sprintf(text, "programs:\n  a: {command: &c [\"");
  memset(text + n, 'y', 20000);
  n += 20000;
  n += (size_t)sprintf(text + n, "\"]}\n");
  for (int i = 0; i < 200; i++)
    n += (size_t)sprintf(text + n, "  b%d: {command: *c}\n", i);
  EXPECT_ERR(text, MLY_EINVAL, "sv.yaml:2:20: ",
             "repeated through aliases (*name) too often");
  free(text);
  /* sharing settings through aliases is fine in moderation */
  sv_config *c = parse_ok("programs:\n"
                          "  a: {command: [x], env: &e {A: 1, B: 2}}\n"
                          "  b: {command: [y], env: *e}\n");
  ck_assert_uint_eq(c->programs[1].nenv, 2);
  ck_assert_str_eq(c->programs[1].env[1].value, "2");
  sv_config_free(c);
}
END_TEST

/* Messages are cut to the buffer, never past it, never mid-character. */
START_TEST(t_err_buffer) {
  const char *yaml = WEB "    restart: \xc3\xa9\xc3\xa9\xc3\xa9\n";
  char err[64];
  sv_config *c = NULL;
  for (size_t len = 1; len <= sizeof err; len++) {
    memset(err, 'X', sizeof err);
    ck_assert_int_eq(sv_config_parse("sv.yaml", yaml, strlen(yaml), &c, err,
                                     len), MLY_EINVAL);
    ck_assert_uint_lt(strlen(err), len);
    if (len == sizeof err) ck_assert_ptr_nonnull(strstr(err, "restart"));
  }
  /* the message ends "not '\xc3\xa9\xc3\xa9\xc3\xa9'": every cut through
     it must leave whole characters only */
  char full[256];
  sv_config_parse("sv.yaml", yaml, strlen(yaml), &c, full, sizeof full);
  const char *e = strstr(full, "\xc3\xa9");
  ck_assert_ptr_nonnull(e);
  for (size_t len = (size_t)(e - full) + 1; len < (size_t)(e - full) + 8;
       len++) {
    char cut[256];
    sv_config_parse("sv.yaml", yaml, strlen(yaml), &c, cut, len);
    size_t n = strlen(cut);
    ck_assert_uint_eq(n % 2, (size_t)(e - full) % 2); /* é is 2 bytes */
    ck_assert_int_eq(strncmp(cut, full, n), 0);
  }
  ck_assert_int_eq(sv_config_parse("sv.yaml", yaml, strlen(yaml), &c, NULL, 0),
                   MLY_EINVAL);
  ck_assert_int_eq(sv_config_parse("sv.yaml", NULL, 5, &c, NULL, 0),
                   MLY_EINVAL);
  /* without a path, messages say "config" */
  ck_assert_int_eq(sv_config_parse(NULL, "x: 1\n", 5, &c, err, sizeof err),
                   MLY_EINVAL);
  ck_assert_int_eq(strncmp(err, "config:1:1: unknown key 'x'", 27), 0);
  ck_assert_int_eq(sv_config_parse("sv.yaml", WEB, strlen(WEB), NULL, NULL, 0),
                   MLY_EINVAL);
}
END_TEST

/* ---- files ---- */

START_TEST(t_load_file) {
  char path[] = "/tmp/test_config_XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, full_yaml, strlen(full_yaml)),
                   (ssize_t)strlen(full_yaml));
  close(fd);
  char err[512];
  sv_config *c = NULL;
  ck_assert_int_eq(sv_config_load(path, &c, err, sizeof err), 0);
  ck_assert_str_eq(c->path, path);
  ck_assert_uint_eq(c->nprograms, 2);
  sv_config_free(c);

  /* messages name the file as given */
  fd = open(path, O_WRONLY | O_TRUNC);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, "programs: 5\n", 12), 12);
  close(fd);
  ck_assert_int_eq(sv_config_load(path, &c, err, sizeof err), MLY_EINVAL);
  ck_assert_ptr_null(c);
  char want[128];
  snprintf(want, sizeof want, "%s:1:11: programs must be a map", path);
  ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "message '%s'", err);
  unlink(path);

  ck_assert_int_eq(sv_config_load("/nonexistent/sv.yaml", &c, err, sizeof err),
                   MLY_ENOENT);
  ck_assert_ptr_null(c);
  ck_assert_str_eq(err, "/nonexistent/sv.yaml: cannot read: No such file or "
                   "directory");
  ck_assert_int_eq(sv_config_load("/tmp", &c, err, sizeof err), -EISDIR);
  ck_assert_str_eq(err, "/tmp: cannot read: Is a directory");
  ck_assert_int_eq(sv_config_load("/dev/null", &c, err, sizeof err),
                   MLY_EINVAL);
  ck_assert_str_eq(err, "/dev/null: cannot read: not a regular file");
  ck_assert_int_eq(sv_config_load(NULL, &c, err, sizeof err), MLY_EINVAL);
}
END_TEST

/* ---- reloads ---- */

static bool changed(const char *a_settings, const char *b_settings) {
  char ya[512], yb[512];
  const char *head = "programs:\n  db: {command: [db]}\n  web:\n";
  snprintf(ya, sizeof ya, "%s%s", head, a_settings);
  snprintf(yb, sizeof yb, "%s%s", head, b_settings);
  sv_config *a = parse_ok(ya), *b = parse_ok(yb);
  bool r = sv_program_changed(sv_config_find(a, "web"),
                              sv_config_find(b, "web"));
  ck_assert(r == sv_program_changed(sv_config_find(b, "web"),
                                    sv_config_find(a, "web")));
  sv_config_free(a);
  sv_config_free(b);
  return r;
}

START_TEST(t_program_changed) {
  const char *base = "    command: [a, b]\n    env: {X: 1, Y: ~}\n"
                     "    success_exit_codes: [0, 2]\n    depends_on: [db]\n";
  ck_assert(!changed(base, base));
  /* reordering sets changes nothing */
  ck_assert(!changed(base, "    command: [a, b]\n    env: {Y: ~, X: \"1\"}\n"
                           "    success_exit_codes: [2, 0]\n"
                           "    depends_on: [db]\n"));
  /* defaults written out are the same */
  ck_assert(!changed("    command: [a]\n",
                     "    command: [a]\n    restart: always\n"
                     "    stop_signal: SIGTERM\n    stop_grace: 10s\n"
                     "    stdout: inherit\n    backoff: {max: 30000}\n"));
  ck_assert(changed("    command: [a, b]\n", "    command: [a, c]\n"));
  ck_assert(changed("    command: [a, b]\n", "    command: [a]\n"));
  ck_assert(changed(base, "    command: [a, b]\n    env: {X: 1}\n"
                          "    success_exit_codes: [0, 2]\n"
                          "    depends_on: [db]\n"));
  ck_assert(changed("    command: [a]\n    env: {X: 1}\n",
                    "    command: [a]\n    env: {X: 2}\n"));
  ck_assert(changed("    command: [a]\n    env: {X: \"\"}\n",
                    "    command: [a]\n    env: {X: ~}\n"));
  ck_assert(changed("    command: [a]\n", "    command: [a]\n    cwd: /\n"));
  ck_assert(changed("    command: [a]\n", "    command: [a]\n"
                                          "    restart: never\n"));
  ck_assert(changed("    command: [a]\n", "    command: [a]\n"
                                          "    backoff: {jitter: 0.5}\n"));
  ck_assert(changed("    command: [a]\n", "    command: [a]\n"
                                          "    intensity: {within: 1s}\n"));
  ck_assert(changed("    command: [a]\n", "    command: [a]\n"
                                          "    ready: 1s\n"));
  ck_assert(changed("    command: [a]\n    ready: 1s\n",
                    "    command: [a]\n    ready: 2s\n"));
  ck_assert(changed("    command: [a]\n", "    command: [a]\n"
                                          "    stop_signal: INT\n"));
  ck_assert(changed("    command: [a]\n", "    command: [a]\n"
                                          "    depends_on: [db]\n"));
  ck_assert(changed("    command: [a]\n", "    command: [a]\n"
                                          "    stderr: e.log\n"));
  ck_assert(changed("    command: [a]\n    stderr: e.log\n",
                    "    command: [a]\n    stderr: {file: e.log, keep: 1}\n"));
  ck_assert(changed("    command: [a]\n", "    command: [a]\n"
                                          "    user: root\n"));
  ck_assert(changed("    command: [a]\n", "    command: [a]\n"
                                          "    start_timeout: 1s\n"));
  ck_assert(changed("    command: [echo]\n",
                    "    command: echo\n    shell: true\n"));
  ck_assert(sv_program_changed(NULL, &(sv_program){0}));
  ck_assert(!sv_program_changed(NULL, NULL));
}
END_TEST

/* ---- damaged input: a code and a message, never a crash ---- */

static void parse_any(const char *text, size_t len) {
  char err[256] = "";
  sv_config *c = NULL;
  int rc = sv_config_parse("sv.yaml", text, len, &c, err, sizeof err);
  if (rc == 0) {
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_gt(c->nprograms, 0);
    sv_config_free(c);
  } else {
    ck_assert_ptr_null(c);
    ck_assert_msg(rc == MLY_EINVAL, "code %d: %s", rc, err);
    ck_assert_msg(strncmp(err, "sv.yaml:", 8) == 0, "message '%s'", err);
  }
}

START_TEST(t_damaged_input) {
  size_t n = strlen(full_yaml);
  /* every prefix */
  for (size_t len = 0; len <= n; len++) parse_any(full_yaml, len);
  /* bytes replaced by others that YAML cares about */
  const char tricky[] = "\n :[]{}-,#&*!|>'\"%@`\t\\?\0\xff\xc3";
  char *buf = malloc(n + 1);
  ck_assert_ptr_nonnull(buf);
  uint32_t seed = 12345;
  for (int round = 0; round < 3000; round++) {
    memcpy(buf, full_yaml, n + 1);
    for (int k = 0; k < 1 + round % 4; k++) {
      seed = seed * 1103515245u + 12345u;
      size_t at = (seed >> 8) % n;
      buf[at] = tricky[(seed >> 20) % (sizeof tricky - 1)];
    }
    parse_any(buf, n);
  }
  free(buf);
  /* aliases, including one that contains itself */
  parse_any("programs:\n  web: &a {command: [x], depends_on: *a}\n", 52);
  const char *self = "programs:\n  web:\n    command: &l [x, *l]\n";
  parse_any(self, strlen(self));
  const char *shared = "x: &c [a]\nprograms: {a: {command: *c}}\n";
  parse_any(shared, strlen(shared));
  /* deep nesting */
  size_t deep = 100000;
  char *nest = malloc(2 * deep + 32);
  ck_assert_ptr_nonnull(nest);
  strcpy(nest, "programs: ");
  memset(nest + 10, '[', deep);
  memset(nest + 10 + deep, ']', deep);
  parse_any(nest, 10 + 2 * deep);
  free(nest);
}
END_TEST

static Suite *config_suite(void) {
  Suite *s = suite_create("config");
  TCase *v = tcase_create("valid");
  tcase_add_test(v, t_full_config);
  tcase_add_test(v, t_defaults);
  tcase_add_test(v, t_socket_mode);
  tcase_add_test(v, t_durable_settings);
  tcase_add_test(v, t_tracking_limits);
  tcase_add_test(v, t_null_means_default);
  tcase_add_test(v, t_shell_command);
  tcase_add_test(v, t_start_order);
  tcase_add_test(v, t_ready_forms);
  tcase_add_test(v, t_outputs);
  tcase_add_test(v, t_sizes);
  tcase_add_test(v, t_signals);
  tcase_add_test(v, t_user_group);
  tcase_add_test(v, t_user_identity);
  tcase_add_test(v, t_env_inherit);
  tcase_add_test(v, t_load_file);
  tcase_add_test(v, t_program_changed);
  suite_add_tcase(s, v);

  TCase *e = tcase_create("errors");
  tcase_add_test(e, t_err_unknown_key);
  tcase_add_test(e, t_err_duration);
  tcase_add_test(e, t_err_no_command);
  tcase_add_test(e, t_err_depends);
  tcase_add_test(e, t_err_cycle);
  tcase_add_test(e, t_err_command);
  tcase_add_test(e, t_err_syntax);
  tcase_add_test(e, t_err_tags);
  tcase_add_test(e, t_err_types);
  tcase_add_test(e, t_err_values);
  tcase_add_test(e, t_err_sizes);
  tcase_add_test(e, t_err_users);
  tcase_add_test(e, t_err_duplicates);
  tcase_add_test(e, t_err_env);
  tcase_add_test(e, t_err_top_level);
  tcase_add_test(e, t_err_names);
  tcase_add_test(e, t_err_limits);
  tcase_add_test(e, t_err_buffer);
  suite_add_tcase(s, e);

  TCase *d = tcase_create("damaged");
  tcase_set_timeout(d, 120); /* sanitizers make thousands of parses slow */
  tcase_add_test(d, t_damaged_input);
  suite_add_tcase(s, d);
  return s;
}

H_MAIN(config_suite)
