/*
 * mealy.c - the `mealy` command: one subcommand per file, dispatched here.
 *
 * Before any subcommand runs, fds 0-2 closed by the caller are opened on
 * /dev/null, so the next file or socket opened cannot take their number
 * and receive what is meant for stdout or stderr.  The long-running ones
 * (supervise, demo) also ignore SIGPIPE: a reader that goes away, a client
 * that hangs up, `| head` make a write fail with EPIPE instead of killing
 * every program's supervisor (a spawned program gets SIGPIPE back: libuv
 * resets signal dispositions in the child).  The short ones keep the
 * usual death by SIGPIPE under `| head`.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "mealy.h"

static const struct {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *what;
  bool long_running;
} commands[] = {
    {"supervise", cmd_supervise, "run the supervisor (built-in demo without FILE)", true},
    {"ctl", cmd_ctl, "control a running supervisor through its socket", false},
    {"journal", cmd_journal, "look at a state directory: stat, dump, check, compact", false},
    {"store", cmd_store, "the PostgreSQL store's schema: init, migrate, stat", false},
    {"fsm", cmd_fsm, "YAML machines: validate, dot, run; start, send, ls, show", false},
    {"queue", cmd_queue, "task queues of an fsm host (its socket or its state directory): ls, show, add, retry, delete, purge, pause, resume", false},
    {"demo", cmd_demo, "run the embedding demo (MasterD beside a TCP server)", true},
    {"demo-status", cmd_demo_status, "print the instance table of a running demo", false},
    {"version", cmd_version, "print the version", false},
};

static void usage(FILE *f) {
  fprintf(f, "usage: mealy COMMAND [OPTIONS]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].what);
  fprintf(f, "\n'mealy COMMAND --help' tells more.\n");
}

int cmd_version(int argc, char **argv) {
  (void)argc;
  (void)argv;
  printf("mealy %d.%d.%d\n", MLY_VERSION_MAJOR, MLY_VERSION_MINOR,
         MLY_VERSION_PATCH);
  return 0;
}

static void std_fds(void) {
  for (int fd = 0; fd < 3; fd++) {
    if (fcntl(fd, F_GETFD) >= 0) continue;
    int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    if (n >= 0 && n != fd) { /* a lower fd was closed too: fill it first */
      dup2(n, fd);
      close(n);
    }
  }
}

int main(int argc, char **argv) {
  std_fds();
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "-h") == 0) {
    usage(stdout);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(argv[1], commands[i].name) == 0) {
      if (commands[i].long_running) signal(SIGPIPE, SIG_IGN);
      return commands[i].fn(argc - 1, argv + 1);
    }
  fprintf(stderr, "mealy: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
