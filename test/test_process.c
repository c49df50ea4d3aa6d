/*
 * test_process.c - child processes owned by machines.
 *
 * Machines spawn real programs (/bin/sh, sleep, echo) and wait for
 * MLY_EV_PROCESS_EXIT.  The tests check what the event says (exit code,
 * signal, pid), that a reaped pid is never signalled again, that signals
 * to a process group reach grandchildren (checked in /proc, since PID 1
 * may leave them as zombies), and that the spawn options (env, cwd, stdio)
 * take effect in the child, and that a process does not outlive the
 * machine that owns it (TERM, KILL after the grace; detached ones are left
 * running) nor hold the loop after it.  No test asserts a duration.
 */
#include "harness.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a machine that runs a list of jobs, one after the other ---- */

typedef struct job {
  mly_process_options opt;
  int send_signal;        /* if non-zero: signal the process after spawn */
  bool signal_group;
  /* results */
  int spawn_rc;
  int pid;
  size_t count_running;   /* mly_process_count right after the spawn */
  int signal_rc;
  bool exited;
  uint32_t ev_id;
  mly_id ev_from;
  int64_t status, aux;
  uint64_t corr;
  int resignal_rc, resignal_group_rc; /* after the exit */
  size_t count_after;
} job;

typedef struct runner {
  job *jobs;
  int n, i;
} runner;

static int runner_run(mly_machine *m, void *data) {
  runner *r = data;
  mly_runtime *rt = mly_machine_runtime(m);
  job *j;
  MLY_BEGIN(m);
  for (r->i = 0; r->i < r->n; r->i++) {
    j = &r->jobs[r->i];
    j->pid = -1;
    j->spawn_rc = mly_process_spawn(m, &j->opt, &j->pid);
    if (j->spawn_rc < 0) {
      j->count_after = mly_process_count(rt);
      continue;
    }
    j->count_running = mly_process_count(rt);
    if (j->send_signal)
      j->signal_rc = mly_process_signal(rt, j->pid, j->send_signal,
                                        j->signal_group);
    MLY_AWAIT(m, MLY_EV_PROCESS_EXIT, -1);
    j = &r->jobs[r->i];
    const mly_event *e = mly_current_event(m);
    if (e != NULL) {
      j->exited = true;
      j->ev_id = e->id;
      j->ev_from = e->from;
      j->status = e->status;
      j->aux = e->aux;
      j->corr = e->corr;
    }
    j->resignal_rc = mly_process_signal(rt, j->pid, SIGTERM, false);
    j->resignal_group_rc = mly_process_signal(rt, j->pid, SIGTERM, true);
    j->count_after = mly_process_count(rt);
  }
  MLY_END(m);
}

static void run_jobs(job *jobs, int n) {
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){.name = "runner", .run = runner_run,
                                           .data_size = sizeof(runner)});
  h_spawn(rt, t, &(runner){jobs, n, 0}, sizeof(runner));
  h_run(rt);
  ck_assert_uint_eq(mly_process_count(rt), 0);
  ck_assert_uint_eq(h_stat_live(rt), 0);
  mly_runtime_close(rt);
}

static const char *const sh_exit3[] = {"/bin/sh", "-c", "exit 3", NULL};
static const char *const sleep30[] = {"sleep", "30", NULL};

/* ---- exit code, pid, and no signal after the reap ---- */

START_TEST(exit_code_arrives_as_event) {
  job j = {.opt = {.argv = sh_exit3}};
  run_jobs(&j, 1);
  ck_assert_int_eq(j.spawn_rc, 0);
  ck_assert_int_gt(j.pid, 0);
  ck_assert_uint_eq(j.count_running, 1);
  ck_assert(j.exited);
  ck_assert_uint_eq(j.ev_id, MLY_EV_PROCESS_EXIT);
  ck_assert_uint_eq(j.ev_from, 0);
  ck_assert_int_eq(j.status, 3);
  ck_assert_int_eq(j.aux, 0);
  ck_assert_uint_eq(j.corr, (uint64_t)j.pid);
  ck_assert_int_eq(j.resignal_rc, MLY_ESRCH);
  ck_assert_int_eq(j.resignal_group_rc, MLY_ESRCH);
  ck_assert_uint_eq(j.count_after, 0);
}
END_TEST

START_TEST(signal_group_terminates_and_reaped_pid_is_esrch) {
  job j = {.opt = {.argv = sleep30, .new_group = true},
           .send_signal = SIGTERM, .signal_group = true};
  run_jobs(&j, 1);
  ck_assert_int_eq(j.spawn_rc, 0);
  ck_assert_uint_eq(j.count_running, 1);
  ck_assert_int_eq(j.signal_rc, 0);
  ck_assert(j.exited);
  ck_assert_int_eq(j.aux, SIGTERM);
  ck_assert_int_eq(j.status, 0);
  ck_assert_uint_eq(j.corr, (uint64_t)j.pid);
  ck_assert_int_eq(j.resignal_rc, MLY_ESRCH);
  ck_assert_int_eq(j.resignal_group_rc, MLY_ESRCH);
  ck_assert_uint_eq(j.count_after, 0);
  /* the new group is really gone (no zombie either: libuv reaped it) */
  errno = 0;
  ck_assert_int_eq(kill(j.pid, 0), -1);
  ck_assert_int_eq(errno, ESRCH);
}
END_TEST

START_TEST(signal_single_process_without_group) {
  job j = {.opt = {.argv = sleep30}, .send_signal = SIGKILL,
           .signal_group = false};
  run_jobs(&j, 1);
  ck_assert_int_eq(j.spawn_rc, 0);
  ck_assert_int_eq(j.signal_rc, 0);
  ck_assert(j.exited);
  ck_assert_int_eq(j.aux, SIGKILL);
  ck_assert_int_eq(j.resignal_rc, MLY_ESRCH);
}
END_TEST

/* mly_process_signal refuses what is not one of its children. */
START_TEST(signal_unknown_pid_is_esrch) {
  mly_runtime *rt = h_runtime();
  ck_assert_int_eq(mly_process_signal(rt, getpid(), 0, false), MLY_ESRCH);
  ck_assert_int_eq(mly_process_signal(rt, 1, SIGTERM, true), MLY_ESRCH);
  ck_assert_int_eq(mly_process_signal(rt, 0, SIGTERM, false), MLY_EINVAL);
  ck_assert_int_eq(mly_process_signal(rt, -1, SIGTERM, false), MLY_EINVAL);
  ck_assert_uint_eq(mly_process_count(rt), 0);
  mly_runtime_close(rt);
}
END_TEST

/* ---- grandchildren die with the group ---- */

/* Processes (not zombies) whose process group is pgid; their pids go in
 * pids[0..max) when pids is not NULL. */
static int group_members(int pgid, int *pids, int max) {
  DIR *d = opendir("/proc");
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (!isdigit((unsigned char)de->d_name[0])) continue;
    char path[300], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue; /* it just went away */
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    char *rp = strrchr(buf, ')'); /* comm may hold spaces and parens */
    char state;
    int ppid, pgrp;
    if (rp == NULL || sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) != 3)
      continue;
    if (pgrp != pgid || state == 'Z' || state == 'X' || state == 'x') continue;
    if (pids && n < max) pids[n] = atoi(de->d_name);
    n++;
  }
  closedir(d);
  return n;
}

static const char *const sh_grandkids[] = {
    "/bin/sh", "-c", "sleep 30 & sleep 30 & wait", NULL};

typedef struct granny {
  int spawn_rc, pid, signal_rc;
  int tries;
  int before, after;        /* live members of the group */
  int kids[8];
  int nkids;
  bool exited;
  int64_t aux;
  int kill_rc, kill_errno;  /* kill(-pid, 0) at the end */
} granny;

#define GROUP_POLLS 500 /* x 10 ms */

typedef struct granny_arg {
  granny *g;
} granny_arg;

static int granny_run(mly_machine *m, void *data) {
  granny *g = ((granny_arg *)data)->g;
  mly_runtime *rt = mly_machine_runtime(m);
  MLY_BEGIN(m);
  g->spawn_rc = mly_process_spawn(
      m, &(mly_process_options){.argv = sh_grandkids, .new_group = true},
      &g->pid);
  if (g->spawn_rc < 0) MLY_EXIT(m, 1);
  /* wait (bounded) until the shell has started both sleeps */
  for (g->tries = 0; g->tries < GROUP_POLLS; g->tries++) {
    g->before = group_members(g->pid, NULL, 0);
    if (g->before >= 3) break;
    MLY_SLEEP(m, 10);
  }
  g->nkids = group_members(g->pid, g->kids, 8);
  g->signal_rc = mly_process_signal(rt, g->pid, SIGKILL, true);
  MLY_AWAIT(m, MLY_EV_PROCESS_EXIT, -1);
  g->exited = true;
  g->aux = mly_current_event(m)->aux;
  /* the grandchildren were reparented; whoever reaps them, they must not
   * be running any more (bounded: SIGKILL is not ignorable) */
  for (g->tries = 0; g->tries < GROUP_POLLS; g->tries++) {
    g->after = group_members(g->pid, NULL, 0);
    if (g->after == 0) break;
    MLY_SLEEP(m, 10);
  }
  errno = 0;
  g->kill_rc = kill(-g->pid, 0);
  g->kill_errno = errno;
  MLY_END(m);
}

START_TEST(group_signal_reaches_grandchildren) {
  mly_runtime *rt = h_runtime();
  granny g = {0};
  h_spawn(rt, h_type(rt, &(mly_type_def){.name = "granny", .run = granny_run,
                                         .data_size = sizeof(granny_arg)}),
          &(granny_arg){&g}, sizeof(granny_arg));
  h_run(rt);
  ck_assert_int_eq(g.spawn_rc, 0);
  ck_assert_int_ge(g.before, 3); /* sh and two sleeps, all in its group */
  ck_assert_int_ge(g.nkids, 3);
  ck_assert_int_eq(g.signal_rc, 0);
  ck_assert(g.exited);
  ck_assert_int_eq(g.aux, SIGKILL);
  ck_assert_int_eq(g.after, 0);
  /* each former member is gone, or a zombie nobody has reaped yet */
  for (int i = 0; i < g.nkids && i < 8; i++) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", g.kids[i]);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    char *rp = strrchr(buf, ')');
    ck_assert_ptr_nonnull(rp);
    ck_assert_msg(rp[2] == 'Z' || rp[2] == 'X', "pid %d still in state %c",
                  g.kids[i], rp[2]);
  }
  /* kill(-pid, 0) succeeds only while zombies of the group are unreaped */
  if (g.kill_rc == -1) ck_assert_int_eq(g.kill_errno, ESRCH);
  ck_assert_uint_eq(mly_process_count(rt), 0);
  mly_runtime_close(rt);
}
END_TEST

/* ---- spawn failures ---- */

static const char *const nonexistent_abs[] = {"/nonexistent/mly-no-such-prog", NULL};
static const char *const nonexistent_path[] = {"mly-no-such-program-4711", NULL};
static const char *const sh_true[] = {"/bin/sh", "-c", "exit 0", NULL};

START_TEST(spawn_nonexistent_program_fails) {
  mly_spawn_step step[4] = {99, 99, 99, 99};
  job j[4] = {
      {.opt = {.argv = nonexistent_abs, .failed_step = &step[0]}},
      {.opt = {.argv = nonexistent_path, .failed_step = &step[1]}},
      {.opt = {.argv = sh_true, .cwd = "/nonexistent/mly-dir",
               .failed_step = &step[2]}},
      {.opt = {.argv = sh_exit3}}, /* and the machine goes on working */
  };
  run_jobs(j, 4);
  ck_assert_int_eq(j[0].spawn_rc, MLY_ENOENT);
  ck_assert_int_eq(j[1].spawn_rc, MLY_ENOENT);
  ck_assert_int_eq(j[2].spawn_rc, MLY_ENOENT);
  /* the child said which step failed: exec, exec, chdir */
  ck_assert_int_eq(step[0], MLY_SPAWN_EXEC);
  ck_assert_int_eq(step[1], MLY_SPAWN_EXEC);
  ck_assert_int_eq(step[2], MLY_SPAWN_CHDIR);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(j[i].pid, -1); /* untouched on failure */
    ck_assert_uint_eq(j[i].count_after, 0);
    ck_assert(!j[i].exited);
  }
  ck_assert_int_eq(j[3].spawn_rc, 0);
  ck_assert(j[3].exited);
  ck_assert_int_eq(j[3].status, 3);
}
END_TEST

typedef struct bad_args {
  int *rc;
} bad_args;

static int bad_args_run(mly_machine *m, void *data) {
  int *rc = ((bad_args *)data)->rc;
  int pid = -1;
  static const char *const empty[] = {NULL};
  MLY_BEGIN(m);
  rc[0] = mly_process_spawn(m, NULL, &pid);
  rc[1] = mly_process_spawn(m, &(mly_process_options){.argv = NULL}, &pid);
  rc[2] = mly_process_spawn(m, &(mly_process_options){.argv = empty}, &pid);
  rc[3] = pid;
  rc[4] = (int)mly_process_count(mly_machine_runtime(m));
  /* a uid without a gid would keep our gid (root's): refused */
  static const char *const t[] = {"true", NULL};
  rc[5] = mly_process_spawn(m, &(mly_process_options){.argv = t,
                            .set_uid = true, .uid = 4242}, &pid);
  MLY_END(m);
}

START_TEST(spawn_bad_arguments_einval) {
  mly_runtime *rt = h_runtime();
  int rc[6] = {1, 1, 1, 1, 1, 1};
  mly_type *t = h_type(rt, &(mly_type_def){.name = "bad", .run = bad_args_run,
                                           .data_size = sizeof(bad_args)});
  h_spawn(rt, t, &(bad_args){rc}, sizeof(bad_args));
  h_run(rt);
  ck_assert_int_eq(rc[0], MLY_EINVAL);
  ck_assert_int_eq(rc[1], MLY_EINVAL);
  ck_assert_int_eq(rc[2], MLY_EINVAL);
  ck_assert_int_eq(rc[3], -1);
  ck_assert_int_eq(rc[4], 0);
  ck_assert_int_eq(rc[5], MLY_EINVAL);
  mly_runtime_close(rt);
}
END_TEST

/* ---- env and cwd ---- */

static const char *const sh_env_cwd[] = {
    "/bin/sh", "-c", "test \"$FOO\" = bar && test \"$(pwd)\" = /tmp", NULL};
static const char *const env_bar[] = {"FOO=bar", "PATH=/usr/bin:/bin", NULL};
static const char *const env_baz[] = {"FOO=baz", "PATH=/usr/bin:/bin", NULL};
static const char *const sh_no_inherit[] = {
    "/bin/sh", "-c", "test -z \"$MLY_TEST_INHERIT\"", NULL};
static const char *const sh_inherit[] = {
    "/bin/sh", "-c", "test \"$MLY_TEST_INHERIT\" = yes", NULL};

START_TEST(env_and_cwd_take_effect) {
  ck_assert_int_eq(setenv("MLY_TEST_INHERIT", "yes", 1), 0);
  job j[5] = {
      {.opt = {.argv = sh_env_cwd, .env = env_bar, .cwd = "/tmp"}},
      {.opt = {.argv = sh_env_cwd, .env = env_baz, .cwd = "/tmp"}}, /* env */
      {.opt = {.argv = sh_env_cwd, .env = env_bar, .cwd = "/"}},    /* cwd */
      {.opt = {.argv = sh_no_inherit, .env = env_bar}}, /* env replaces */
      {.opt = {.argv = sh_inherit}},                    /* NULL inherits */
  };
  run_jobs(j, 5);
  for (int i = 0; i < 5; i++) {
    ck_assert_int_eq(j[i].spawn_rc, 0);
    ck_assert(j[i].exited);
    ck_assert_int_eq(j[i].aux, 0);
  }
  ck_assert_int_eq(j[0].status, 0);
  ck_assert_int_ne(j[1].status, 0);
  ck_assert_int_ne(j[2].status, 0);
  ck_assert_int_eq(j[3].status, 0);
  ck_assert_int_eq(j[4].status, 0);
}
END_TEST

/* pid_env: NAME=<the child's own pid>, replacing one inherited or given,
 * with the environment given or inherited (and a bad name refused) */
static const char *const sh_pid_env[] = {
    "/bin/sh", "-c", "test \"$MLY_PID\" = $$ && test \"$FOO\" = bar", NULL};
static const char *const env_stale_pid[] = {"MLY_PID=1", "FOO=bar",
                                            "PATH=/usr/bin:/bin", NULL};

START_TEST(pid_env_names_the_child) {
  ck_assert_int_eq(setenv("FOO", "bar", 1), 0);
  ck_assert_int_eq(setenv("MLY_PID", "2", 1), 0);
  job j[4] = {
      {.opt = {.argv = sh_pid_env, .env = env_stale_pid, .pid_env = "MLY_PID"}},
      {.opt = {.argv = sh_pid_env, .pid_env = "MLY_PID"}}, /* inherited */
      {.opt = {.argv = sh_pid_env, .env = env_stale_pid}}, /* none: stale */
      {.opt = {.argv = sh_pid_env, .pid_env = "A=B"}},
  };
  run_jobs(j, 4);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(j[i].spawn_rc, 0);
    ck_assert(j[i].exited);
  }
  ck_assert_int_eq(j[0].status, 0);
  ck_assert_int_eq(j[1].status, 0);
  ck_assert_int_ne(j[2].status, 0);
  ck_assert_int_eq(j[3].spawn_rc, MLY_EINVAL);
  unsetenv("MLY_PID");
}
END_TEST

/* ---- stdio ---- */

static const char *const sh_echo_hi[] = {"/bin/sh", "-c", "echo hi", NULL};
static const char *const sh_echo_inherit[] = {"/bin/sh", "-c", "echo inherit", NULL};
static const char *const sh_stdout_is_null[] = {
    "/bin/sh", "-c", "test \"$(readlink /proc/$$/fd/1)\" = /dev/null", NULL};

static size_t read_all(int fd, char *buf, size_t cap) {
  size_t n = 0;
  for (;;) {
    ck_assert_uint_lt(n, cap);
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    ck_assert_int_ge(r, 0);
    if (r == 0) break;
    n += (size_t)r;
  }
  buf[n] = 0;
  return n;
}

START_TEST(stdio_fd_mode_writes_into_pipe) {
  int p[2];
  ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
  job j = {.opt = {.argv = sh_echo_hi}};
  j.opt.stdio[1].mode = MLY_STDIO_FD;
  j.opt.stdio[1].fd = p[1];
  run_jobs(&j, 1);
  ck_assert_int_eq(j.spawn_rc, 0);
  ck_assert_int_eq(j.status, 0);
  close(p[1]); /* the child's copy is gone with the child */
  char buf[64];
  ck_assert_uint_eq(read_all(p[0], buf, sizeof buf), 3);
  ck_assert_str_eq(buf, "hi\n");
  close(p[0]);
}
END_TEST

/* ---- nothing but what the options say ---- */

static const char *const sh_list_fds[] = {
    "/bin/sh", "-c", "ls /proc/$$/fd; echo extra | tee /dev/fd/50 >/dev/null",
    NULL}; /* (dash cannot name fd 50 in a redirection) */

/* An fd of ours without O_CLOEXEC (as a shell leaves them) never reaches
 * the child; the child's fds are 0-2 and the extra ones, even when the
 * sources sit where targets go (stdout comes from our fd 50, and our fd
 * 51 becomes the child's fd 50). */
START_TEST(child_gets_only_its_fds) {
  int out[2], ex[2];
  ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
  ck_assert_int_eq(pipe2(ex, O_CLOEXEC), 0);
  ck_assert_int_eq(dup2(out[1], 50), 50);     /* no O_CLOEXEC */
  ck_assert_int_eq(dup2(ex[1], 51), 51);
  int stray = open("/dev/null", O_RDONLY);    /* inherited by accident */
  ck_assert_int_eq(dup2(stray, 40), 40);
  close(stray);
  close(out[1]);
  close(ex[1]);
  job j = {.opt = {.argv = sh_list_fds}};
  j.opt.stdio[1].mode = MLY_STDIO_FD;
  j.opt.stdio[1].fd = 50;
  j.opt.extra[0].child_fd = 50;
  j.opt.extra[0].fd = 51;
  j.opt.nextra = 1;
  run_jobs(&j, 1);
  ck_assert_int_eq(j.spawn_rc, 0);
  ck_assert_int_eq(j.status, 0);
  close(50);
  close(51);
  close(40);
  char buf[256];
  read_all(out[0], buf, sizeof buf);
  ck_assert_str_eq(buf, "0\n1\n2\n50\n");
  read_all(ex[0], buf, sizeof buf);
  ck_assert_str_eq(buf, "extra\n");
  close(out[0]);
  close(ex[0]);
}
END_TEST

/* The invariant itself, on random layouts: sources scattered over the
 * fds a child's targets use (swaps and cycles among them), strays
 * without O_CLOEXEC around them.  Model: the child has exactly 0, 1, 2
 * and the targets, and each target is the very pipe given for it. */
static const char *const sh_ls_fds[] = {"/bin/sh", "-c", "ls -l /proc/$$/fd",
                                        NULL};

static int free_fd_below(int top) {
  for (int tries = 0; tries < 1000; tries++) {
    int fd = 3 + rand() % (top - 3);
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) return fd;
  }
  ck_abort_msg("no free fd");
  return -1;
}

static int put_at(int fd, int at) { /* moves fd to `at`, without O_CLOEXEC */
  ck_assert_int_eq(dup2(fd, at), at);
  close(fd);
  return at;
}

static unsigned long ino_of(int fd) {
  struct stat st;
  ck_assert_int_eq(fstat(fd, &st), 0);
  return (unsigned long)st.st_ino;
}

START_TEST(child_fds_match_the_model) {
  unsigned seed = 20261130u;
  srand(seed);
  for (int round = 0; round < 40; round++) {
    int out[2], used[64];
    int nused = 0;
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    int out_w = put_at(out[1], free_fd_below(64));
    used[nused++] = out_w;
    job j = {.opt = {.argv = sh_ls_fds}};
    j.opt.stdio[1].mode = MLY_STDIO_FD;
    j.opt.stdio[1].fd = out_w;
    bool target[64] = {false};
    unsigned long want[64] = {0};
    unsigned n = (unsigned)(rand() % (MLY_PROCESS_MAX_FDS + 1));
    for (unsigned i = 0; i < n; i++) {
      int cfd;
      do cfd = 3 + rand() % 61;
      while (target[cfd]);
      target[cfd] = true;
      int p[2];
      ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
      close(p[0]);
      int src = put_at(p[1], free_fd_below(64));
      used[nused++] = src;
      want[cfd] = ino_of(src);
      j.opt.extra[i].child_fd = cfd;
      j.opt.extra[i].fd = src;
    }
    j.opt.nextra = n;
    int strays = rand() % 4;
    for (int i = 0; i < strays; i++)
      used[nused++] = put_at(open("/dev/null", O_RDONLY), free_fd_below(64));
    run_jobs(&j, 1);
    ck_assert_int_eq(j.spawn_rc, 0);
    ck_assert_int_eq(j.status, 0);
    for (int i = 0; i < nused; i++) close(used[i]);
    char buf[8192];
    read_all(out[0], buf, sizeof buf);
    close(out[0]);
    bool seen[64] = {false};
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
      char *arrow = strstr(line, " -> ");
      if (arrow == NULL) continue; /* "total 0" */
      char *num = arrow;
      while (num > line && num[-1] != ' ') num--;
      int fd = atoi(num);
      ck_assert_msg(fd >= 0 && fd < 64 && (fd < 3 || target[fd]),
                    "round %d: the child has fd %d it was not given: %s",
                    round, fd, line);
      seen[fd] = true;
      if (fd >= 3) {
        char expect[64];
        snprintf(expect, sizeof expect, "pipe:[%lu]", want[fd]);
        ck_assert_str_eq(arrow + 4, expect);
      }
    }
    for (int fd = 0; fd < 64; fd++)
      ck_assert_msg(seen[fd] == (fd < 3 || target[fd]),
                    "round %d: fd %d %s", round, fd,
                    seen[fd] ? "present" : "missing");
  }
}
END_TEST

/* A script without "#!" runs under /bin/sh, as execvp would run it. */
START_TEST(script_without_shebang_runs_under_sh) {
  char path[] = "/tmp/mly-noshebang.XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  const char text[] = "exit $(($1 + 4))\n";
  ck_assert_int_eq(write(fd, text, sizeof text - 1), (ssize_t)sizeof text - 1);
  close(fd);
  ck_assert_int_eq(chmod(path, 0700), 0);
  const char *argv[] = {path, "3", NULL};
  job j = {.opt = {.argv = argv}};
  run_jobs(&j, 1);
  unlink(path);
  ck_assert_int_eq(j.spawn_rc, 0);
  ck_assert_int_eq(j.status, 7);
}
END_TEST

static const char *const sh_ids[] = {"/bin/sh", "-c", "id -u; id -g; id -G",
                                     NULL};

/* set_uid/set_gid with groups: exactly those supplementary groups */
START_TEST(child_gets_its_groups) {
  if (geteuid() != 0) {
    fprintf(stderr, "!!! child_gets_its_groups: NOT RUN, needs root !!!\n");
    ck_abort_msg("needs root (CI runs as root)");
  }
  gid_t groups[] = {4242, 65534};
  int out[2];
  ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
  job j[2] = {{.opt = {.argv = sh_ids, .set_uid = true, .uid = 65534,
                       .set_gid = true, .gid = 65534, .groups = groups,
                       .ngroups = 2}},
              {.opt = {.argv = sh_ids, .set_uid = true, .uid = 65534,
                       .set_gid = true, .gid = 65534}}}; /* none */
  for (int i = 0; i < 2; i++) {
    j[i].opt.stdio[1].mode = MLY_STDIO_FD;
    j[i].opt.stdio[1].fd = out[1];
  }
  run_jobs(j, 2);
  close(out[1]);
  char buf[256];
  read_all(out[0], buf, sizeof buf);
  close(out[0]);
  ck_assert_str_eq(buf, "65534\n65534\n65534 4242\n65534\n65534\n65534\n");
}
END_TEST

/* mly_open_as: the kernel checks the user's rights, not ours */
START_TEST(open_as_checks_the_users_rights) {
  if (geteuid() != 0) {
    fprintf(stderr, "!!! open_as_checks_the_users_rights: NOT RUN, needs root !!!\n");
    ck_abort_msg("needs root (CI runs as root)");
  }
  char dir[] = "/tmp/mly-openas.XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir)); /* 0700, root's */
  char path[64];
  snprintf(path, sizeof path, "%s/f", dir);
  mly_process_options nobody = {.set_uid = true, .uid = 65534,
                                .set_gid = true, .gid = 65534};
  ck_assert_int_eq(mly_open_as(&nobody, path, O_WRONLY | O_CREAT, 0600),
                   -EACCES);
  ck_assert_int_eq(access(path, F_OK), -1);
  ck_assert_int_eq(chmod(dir, 0777), 0);
  int fd = mly_open_as(&nobody, path, O_WRONLY | O_CREAT | O_NOFOLLOW, 0640);
  ck_assert_int_ge(fd, 0);
  ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  struct stat st;
  ck_assert_int_eq(fstat(fd, &st), 0);
  ck_assert_uint_eq(st.st_uid, 65534); /* created by the user */
  close(fd);
  /* no user: a plain open, by us */
  fd = mly_open_as(NULL, path, O_RDONLY, 0);
  ck_assert_int_ge(fd, 0);
  close(fd);
  char link[64];
  snprintf(link, sizeof link, "%s/l", dir);
  ck_assert_int_eq(symlink(path, link), 0);
  ck_assert_int_eq(mly_open_as(&nobody, link, O_WRONLY | O_NOFOLLOW, 0), -ELOOP);
  unlink(link);
  unlink(path);
  /* a uid without a gid is refused, not run in our group */
  mly_process_options uid_only = {.set_uid = true, .uid = 65534};
  ck_assert_int_eq(mly_open_as(&uid_only, path, O_WRONLY | O_CREAT, 0600),
                   MLY_EINVAL);
  ck_assert_int_eq(access(path, F_OK), -1);
  rmdir(dir);
}
END_TEST

/* mly_run_as: the function runs as the user; its error comes back */
static int try_mkdir(void *arg) {
  return mkdir(arg, 0700) < 0 ? -errno : 0;
}

START_TEST(run_as_runs_as_the_user) {
  if (geteuid() != 0) {
    fprintf(stderr, "!!! run_as_runs_as_the_user: NOT RUN, needs root !!!\n");
    ck_abort_msg("needs root (CI runs as root)");
  }
  char dir[] = "/tmp/mly-runas.XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir)); /* 0700, root's */
  char sub[64];
  snprintf(sub, sizeof sub, "%s/sub", dir);
  mly_process_options nobody = {.set_uid = true, .uid = 65534,
                                .set_gid = true, .gid = 65534};
  ck_assert_int_eq(mly_run_as(&nobody, try_mkdir, sub), -EACCES);
  ck_assert_int_eq(chmod(dir, 0777), 0);
  ck_assert_int_eq(mly_run_as(&nobody, try_mkdir, sub), 0);
  struct stat st;
  ck_assert_int_eq(stat(sub, &st), 0);
  ck_assert_uint_eq(st.st_uid, 65534);
  ck_assert_int_eq(mly_run_as(&nobody, try_mkdir, sub), -EEXIST);
  mly_process_options uid_only = {.set_uid = true, .uid = 65534};
  ck_assert_int_eq(mly_run_as(&uid_only, try_mkdir, sub), MLY_EINVAL);
  rmdir(sub);
  ck_assert_int_eq(mly_run_as(NULL, try_mkdir, sub), 0); /* as ourselves */
  ck_assert_int_eq(stat(sub, &st), 0);
  ck_assert_uint_eq(st.st_uid, 0);
  rmdir(sub);
  rmdir(dir);
}
END_TEST

START_TEST(stdio_null_mode_discards_output) {
  /* Capture this process's own stdout: whatever a child inherits ends up
   * in the pipe, whatever goes to /dev/null does not. */
  int cap[2];
  ck_assert_int_eq(pipe2(cap, O_CLOEXEC), 0);
  fflush(stdout);
  int saved = dup(1);
  ck_assert_int_ge(saved, 0);
  ck_assert_int_eq(dup2(cap[1], 1), 1);
  job j[3] = {
      {.opt = {.argv = sh_echo_hi}},
      {.opt = {.argv = sh_stdout_is_null}},
      {.opt = {.argv = sh_echo_inherit}}, /* control: inherited fd 1 */
  };
  j[0].opt.stdio[1].mode = MLY_STDIO_NULL;
  j[1].opt.stdio[1].mode = MLY_STDIO_NULL;
  run_jobs(j, 3);
  ck_assert_int_eq(dup2(saved, 1), 1);
  close(saved);
  close(cap[1]);
  char buf[256];
  read_all(cap[0], buf, sizeof buf);
  close(cap[0]);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(j[i].spawn_rc, 0);
    ck_assert(j[i].exited);
    ck_assert_int_eq(j[i].aux, 0);
  }
  ck_assert_int_eq(j[0].status, 0);
  ck_assert_int_eq(j[1].status, 0); /* its fd 1 really was /dev/null */
  ck_assert_int_eq(j[2].status, 0);
  ck_assert_str_eq(buf, "inherit\n"); /* and no "hi" */
}
END_TEST

/* ---- many owners: each exit goes to the machine that spawned it ---- */

#define NOWNERS 8

typedef struct owner {
  int code;
  int pid;
  int64_t status;
  uint64_t corr;
  int events;
} owner;

static int owner_run(mly_machine *m, void *data) {
  owner *o = data;
  MLY_BEGIN(m);
  {
    char script[32];
    snprintf(script, sizeof script, "exit %d", o->code);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    if (mly_process_spawn(m, &(mly_process_options){.argv = argv}, &o->pid) < 0)
      MLY_EXIT(m, 1);
  }
  MLY_AWAIT(m, MLY_EV_PROCESS_EXIT, -1);
  o->events++;
  o->status = mly_current_event(m)->status;
  o->corr = mly_current_event(m)->corr;
  /* nothing else is coming: a second wait would time out */
  MLY_AWAIT(m, MLY_EV_PROCESS_EXIT, 50);
  if (!mly_timed_out(m)) o->events++;
  MLY_END(m);
}

typedef struct owner_arg {
  owner *o;
} owner_arg;

static int owner_shim(mly_machine *m, void *data) {
  return owner_run(m, ((owner_arg *)data)->o);
}

START_TEST(exits_route_to_their_owners) {
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){.name = "owner", .run = owner_shim,
                                           .data_size = sizeof(owner_arg)});
  owner o[NOWNERS];
  for (int i = 0; i < NOWNERS; i++) {
    o[i] = (owner){.code = 10 + i, .pid = -1};
    h_spawn(rt, t, &(owner_arg){&o[i]}, sizeof(owner_arg));
  }
  h_run(rt);
  for (int i = 0; i < NOWNERS; i++) {
    ck_assert_int_gt(o[i].pid, 0);
    ck_assert_int_eq(o[i].events, 1);
    ck_assert_int_eq(o[i].status, 10 + i);
    ck_assert_uint_eq(o[i].corr, (uint64_t)o[i].pid);
    for (int k = 0; k < i; k++) ck_assert_int_ne(o[i].pid, o[k].pid);
  }
  ck_assert_uint_eq(mly_process_count(rt), 0);
  mly_runtime_close(rt);
}
END_TEST

/* ---- a process does not outlive its owner (unless detached) ---- */

static const char *const sh_deaf_grandkids[] = {
    "/bin/sh", "-c", "trap '' TERM; sleep 30 & sleep 30 & wait", NULL};
static const char *const sleep_30[] = {"sleep", "30", NULL};

typedef struct starter {
  mly_process_options o;
  int members;  /* wait until its group has this many, then go on */
  bool stay;    /* then wait forever instead of ending */
  int rc, pid, tries;
} starter;

typedef struct starter_arg {
  starter *s;
} starter_arg;

static int starter_run(mly_machine *m, void *data) {
  starter *s = ((starter_arg *)data)->s;
  MLY_BEGIN(m);
  s->rc = mly_process_spawn(m, &s->o, &s->pid);
  if (s->rc < 0) MLY_EXIT(m, 1);
  for (s->tries = 0; s->members > 0 && s->tries < GROUP_POLLS; s->tries++) {
    if (group_members(s->pid, NULL, 0) >= s->members) break;
    MLY_SLEEP(m, 10);
  }
  if (s->stay) MLY_AWAIT(m, 99, -1);
  MLY_END(m); /* ends without waiting for its process */
}

static mly_runtime *start_one(starter *s) {
  mly_runtime *rt = h_runtime();
  h_spawn(rt, h_type(rt, &(mly_type_def){.name = "starter", .run = starter_run,
                                         .data_size = sizeof(starter_arg)}),
          &(starter_arg){s}, sizeof(starter_arg));
  return rt;
}

/* The host's own handle keeps its loop running (the runtime no longer
 * does): a timer that ticks until the group is gone and reaped; bounded,
 * generous, since the machine is shared. */
typedef struct gone_watch {
  mly_runtime *rt;
  int pgid, ticks;
  bool gone;
} gone_watch;

static void gone_tick(uv_timer_t *h) {
  gone_watch *g = h->data;
  g->gone = group_members(g->pgid, NULL, 0) == 0 && mly_process_count(g->rt) == 0;
  if (g->gone || ++g->ticks > 1000) uv_timer_stop(h);
}

static bool run_until_gone(mly_runtime *rt, int pgid) {
  gone_watch g = {rt, pgid, 0, false};
  uv_timer_t t;
  uv_timer_init(mly_runtime_loop(rt), &t);
  t.data = &g;
  uv_timer_start(&t, gone_tick, 10, 10);
  uv_run(mly_runtime_loop(rt), UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(mly_runtime_loop(rt), UV_RUN_NOWAIT);
  return g.gone;
}

static bool alive(int pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return false;
  size_t len = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[len] = 0;
  char *rp = strrchr(buf, ')');
  return rp != NULL && rp[2] != 'Z' && rp[2] != 'X';
}

START_TEST(owner_end_terminates_its_group) {
  starter s = {.o = {.argv = sh_grandkids, .new_group = true}, .members = 3};
  mly_runtime *rt = start_one(&s);
  h_run(rt); /* returns when the owner has ended: the process does not hold it */
  ck_assert_int_eq(s.rc, 0);
  ck_assert_int_lt(s.tries, GROUP_POLLS);
  ck_assert_msg(run_until_gone(rt, s.pid), "the group outlived its owner");
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.delivered, 0); /* nobody to deliver the exit to */
  ck_assert_int_eq(mly_process_signal(rt, s.pid, SIGTERM, false), MLY_ESRCH);
  mly_runtime_close(rt);
}
END_TEST

START_TEST(owner_end_kills_a_deaf_group_after_the_grace) {
  for (int64_t grace = -1; grace <= 50; grace += 51) { /* at once, then 50 ms */
    starter s = {.o = {.argv = sh_deaf_grandkids, .new_group = true,
                       .end_grace_ms = grace}, .members = 3};
    mly_runtime *rt = start_one(&s);
    h_run(rt);
    ck_assert_int_eq(s.rc, 0);
    ck_assert_msg(run_until_gone(rt, s.pid),
                  "a group that ignores SIGTERM outlived grace %lld",
                  (long long)grace);
    mly_runtime_close(rt);
  }
}
END_TEST

START_TEST(owner_end_does_not_hold_the_loop_and_close_kills) {
  starter s = {.o = {.argv = sh_deaf_grandkids, .new_group = true,
                     .end_grace_ms = 600000}, .members = 3};
  mly_runtime *rt = start_one(&s);
  h_run(rt); /* held for the 10 min grace before: the CK timeout fails it */
  ck_assert_int_eq(s.rc, 0);
  ck_assert_msg(alive(s.pid), "the deaf shell died before its grace");
  ck_assert_uint_eq(mly_process_count(rt), 1);
  int kids[8];
  int n = group_members(s.pid, kids, 8);
  ck_assert_int_ge(n, 3);
  mly_runtime_close(rt); /* SIGKILLs the group, returns once sh is reaped */
  ck_assert(!alive(s.pid));
  ck_assert_int_eq(kill(s.pid, 0), -1); /* reaped: not even a zombie */
  for (int i = 0; i < 500 && group_members(s.pid, NULL, 0) > 0; i++)
    usleep(10000); /* the grandchildren are init's to reap */
  ck_assert_int_eq(group_members(s.pid, NULL, 0), 0);
}
END_TEST

START_TEST(close_kills_the_process_of_a_live_owner) {
  starter s = {.o = {.argv = sleep_30}, .stay = true};
  mly_runtime *rt = start_one(&s);
  for (int i = 0; i < 100 && s.pid <= 0; i++) h_turn(rt);
  ck_assert_int_eq(s.rc, 0);
  ck_assert(alive(s.pid));
  mly_runtime_close(rt);
  ck_assert_int_eq(kill(s.pid, 0), -1); /* killed and reaped, not orphaned */
  ck_assert_int_eq(errno, ESRCH);
}
END_TEST

START_TEST(detached_process_is_left_running) {
  starter s = {.o = {.argv = sleep_30, .new_group = true, .detached = true}};
  mly_runtime *rt = start_one(&s);
  h_run(rt);
  ck_assert_int_eq(s.rc, 0);
  for (int i = 0; i < 20; i++) { /* a signal would have been sent at once */
    h_turn(rt);
    usleep(5000);
  }
  ck_assert(alive(s.pid));
  mly_runtime_close(rt);
  ck_assert(alive(s.pid));
  ck_assert_int_eq(kill(s.pid, SIGKILL), 0);
  int status = 0;
  ck_assert_int_eq(waitpid(s.pid, &status, 0), s.pid); /* still our child */
  ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}
END_TEST

/* A durable owner suspended by the runtime's shutdown continues on the
 * next open: its process is left running for it to adopt. */
#define KEEPER_POINTS(X) X(keeper, watching)
MLY_POINTS(keeper, KEEPER_POINTS);

static int keeper_run(mly_machine *m, void *data) {
  int *pid = data;
  MLY_BEGIN(m);
  if (mly_process_spawn(m, &(mly_process_options){.argv = sleep_30}, pid) < 0)
    MLY_EXIT(m, 1);
  MLY_AWAIT_AT(m, keeper_watching, MLY_EV_PROCESS_EXIT, -1);
  MLY_END(m);
}

START_TEST(suspended_durable_owner_leaves_its_process_running) {
  char dir[] = "/tmp/mly-keeper-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){.name = "keeper", .run = keeper_run,
      MLY_TYPE_POINTS(keeper), .data_size = sizeof(int),
      .flags = MLY_TYPE_DURABLE});
  ck_assert_int_eq(h_durable_open(rt, &(mly_journal_options){.dir = dir},
                                    NULL, 0), 0);
  mly_id id = h_spawn(rt, t, NULL, 0);
  int pid = 0;
  for (int i = 0; i < 5000 && pid <= 0; i++) {
    int *p = mly_instance_data(rt, id);
    if (p && *p > 0) pid = *p;
    else uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  }
  ck_assert_int_gt(pid, 0);
  ck_assert_int_eq(mly_runtime_shutdown(rt, -1), 0);
  h_run(rt); /* suspended: the loop ends, the process is not waited for */
  ck_assert(alive(pid));
  mly_runtime_close(rt);
  ck_assert(alive(pid)); /* not signalled at close either */
  ck_assert_int_eq(kill(pid, SIGKILL), 0);
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  h_rmtree(dir);
}
END_TEST

/* ---- adoption: a process this runtime did not spawn ---- */

typedef struct adopter {
  int pid;
  uint64_t start;
  int adopt_rc, wrong_rc, signal_rc, again_rc;
  bool exited;
  int64_t status;
} adopter;

static int adopter_run(mly_machine *m, void *data) {
  adopter *a = data;
  mly_runtime *rt = mly_machine_runtime(m);
  MLY_BEGIN(m);
  a->wrong_rc = mly_process_adopt(m, a->pid, a->start + 1); /* not it */
  a->adopt_rc = mly_process_adopt(m, a->pid, a->start);
  if (a->adopt_rc < 0) MLY_EXIT(m, 1);
  a->again_rc = mly_process_adopt(m, a->pid, a->start);    /* twice */
  a->signal_rc = mly_process_signal(rt, a->pid, SIGTERM, false);
  MLY_AWAIT(m, MLY_EV_PROCESS_EXIT, -1);
  a->exited = mly_current_event(m) != NULL;
  if (a->exited) a->status = mly_current_event(m)->status;
  /* gone: never signalled again */
  a->signal_rc = mly_process_signal(rt, a->pid, SIGTERM, false) == MLY_ESRCH
                     ? a->signal_rc : -9999;
  MLY_END(m);
}

/* ---- into a cgroup (clone3 CLONE_INTO_CGROUP) ---- */

/* A fresh cgroup v2 directory under this process's own, or NULL (and why
 * in `why`) where this process cannot make one. */
static char *make_cgroup(char *rel, size_t rlen, char *why, size_t wlen) {
  char line[4096], mnt[2048] = "", own[2048] = "";
  FILE *f = fopen("/proc/self/mountinfo", "re");
  while (f && fgets(line, sizeof line, f)) {
    char root[2048], point[2048], fs[64];
    const char *dash = strstr(line, " - ");
    if (dash && sscanf(dash + 3, "%63s", fs) == 1 && !strcmp(fs, "cgroup2") &&
        sscanf(line, "%*s %*s %*s %2047s %2047s", root, point) == 2 &&
        !strcmp(root, "/"))
      snprintf(mnt, sizeof mnt, "%.2000s", point);
  }
  if (f) fclose(f);
  f = fopen("/proc/self/cgroup", "re");
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "0::", 3)) snprintf(own, sizeof own, "%.2000s", line + 3);
  if (f) fclose(f);
  own[strcspn(own, "\n")] = 0;
  snprintf(rel, rlen, "%.2000s/mly-test-%d", strcmp(own, "/") ? own : "",
           (int)getpid());
  char *dir = malloc(4200);
  ck_assert_ptr_nonnull(dir);
  snprintf(dir, 4200, "%.2000s%.2100s", mnt, rel);
  if (!*mnt || mkdir(dir, 0755) < 0) {
    snprintf(why, wlen, "%s", *mnt ? strerror(errno) : "no cgroup2 mount");
    free(dir);
    return NULL;
  }
  return dir;
}

START_TEST(spawn_into_cgroup_starts_inside) {
  char rel[2200], why[256], want[2300];
  char *dir = make_cgroup(rel, sizeof rel, why, sizeof why);
  const char *const in_cg[] = {"/bin/sh", "-c",
                               "grep -qxF \"$WANT\" /proc/self/cgroup", NULL};
  snprintf(want, sizeof want, "WANT=0::%.2200s", rel);
  const char *const env[] = {want, "PATH=/usr/bin:/bin", NULL};
  int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
  job j[2] = {
      {.opt = {.argv = in_cg, .env = env, .into_cgroup = true, .cgroup_fd = fd}},
      {.opt = {.argv = sh_exit3, .into_cgroup = true, .cgroup_fd = -1}},
  };
  if (dir == NULL) /* said, not skipped quietly: the error path still runs */
    printf("note: process: into_cgroup NOT TESTED here (cannot make a "
           "cgroup: %s); only its error path is\n", why);
  run_jobs(dir ? j : j + 1, dir ? 2 : 1);
  if (dir) {
    ck_assert_int_eq(j[0].spawn_rc, 0);
    ck_assert(j[0].exited);
    ck_assert_int_eq(j[0].status, 0); /* it was in the cgroup from the start */
    close(fd);
    ck_assert_int_eq(rmdir(dir), 0);  /* and nothing of it is left there */
    free(dir);
  }
  ck_assert_int_lt(j[1].spawn_rc, 0); /* no cgroup: refused, nothing runs */
  ck_assert_uint_eq(j[1].count_after, 0);
}
END_TEST

START_TEST(adopt_watches_through_pidfd) {
  /* a close-on-exec pipe: its EOF says the child has exec'd, so the
   * signal below reaches sleep, not a copy of this test process */
  int sync[2];
  ck_assert_int_eq(pipe2(sync, O_CLOEXEC), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    execlp("sleep", "sleep", "30", (char *)NULL);
    _exit(127);
  }
  close(sync[1]);
  char c;
  ck_assert_int_eq(read(sync[0], &c, 1), 0);
  close(sync[0]);
  adopter a = {.pid = pid};
  ck_assert_int_eq(mly_process_start_time(pid, &a.start), 0);
  ck_assert_uint_gt(a.start, 0);
  uint64_t again = 0;
  ck_assert_int_eq(mly_process_start_time(pid, &again), 0);
  ck_assert_uint_eq(again, a.start); /* stable: it names this process */
  mly_runtime *rt = h_runtime();
  mly_type *t = h_type(rt, &(mly_type_def){.name = "adopter",
                                           .run = adopter_run,
                                           .data_size = sizeof(adopter)});
  mly_id id = h_spawn(rt, t, &a, sizeof a);
  adopter *live = mly_instance_data(rt, id);
  ck_assert_ptr_nonnull(live);
  /* run until it has the exit; the data is read before the instance ends */
  for (int i = 0; i < 1000 && !live->exited; i++)
    uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  ck_assert_int_eq(live->wrong_rc, MLY_ESRCH);
  ck_assert_int_eq(live->adopt_rc, 0);
  ck_assert_int_eq(live->again_rc, MLY_EEXIST);
  ck_assert_int_eq(live->signal_rc, 0);
  ck_assert(live->exited);
  ck_assert_int_eq(live->status, -1); /* not our child: status unknown */
  h_run(rt);
  ck_assert_uint_eq(mly_process_count(rt), 0);
  mly_runtime_close(rt);
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid); /* the test is its parent */
  ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
  ck_assert_int_eq(mly_process_start_time(pid, &again), MLY_ESRCH);
}
END_TEST

static Suite *process_suite(void) {
  Suite *s = suite_create("process");
  TCase *tc = tcase_create("children");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, exit_code_arrives_as_event);
  tcase_add_test(tc, signal_group_terminates_and_reaped_pid_is_esrch);
  tcase_add_test(tc, signal_single_process_without_group);
  tcase_add_test(tc, signal_unknown_pid_is_esrch);
  tcase_add_test(tc, group_signal_reaches_grandchildren);
  tcase_add_test(tc, spawn_nonexistent_program_fails);
  tcase_add_test(tc, spawn_bad_arguments_einval);
  tcase_add_test(tc, env_and_cwd_take_effect);
  tcase_add_test(tc, pid_env_names_the_child);
  tcase_add_test(tc, stdio_fd_mode_writes_into_pipe);
  tcase_add_test(tc, stdio_null_mode_discards_output);
  tcase_add_test(tc, child_gets_only_its_fds);
  tcase_add_test(tc, script_without_shebang_runs_under_sh);
  tcase_add_test(tc, child_fds_match_the_model);
  tcase_add_test(tc, child_gets_its_groups);
  tcase_add_test(tc, open_as_checks_the_users_rights);
  tcase_add_test(tc, run_as_runs_as_the_user);
  tcase_add_test(tc, exits_route_to_their_owners);
  tcase_add_test(tc, spawn_into_cgroup_starts_inside);
  tcase_add_test(tc, owner_end_terminates_its_group);
  tcase_add_test(tc, owner_end_kills_a_deaf_group_after_the_grace);
  tcase_add_test(tc, owner_end_does_not_hold_the_loop_and_close_kills);
  tcase_add_test(tc, close_kills_the_process_of_a_live_owner);
  tcase_add_test(tc, detached_process_is_left_running);
  tcase_add_test(tc, suspended_durable_owner_leaves_its_process_running);
  tcase_add_test(tc, adopt_watches_through_pidfd);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(process_suite)
