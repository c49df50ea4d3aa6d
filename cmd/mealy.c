/*
 * mealy.c - the `mealy` command: one subcommand per file, dispatched here.
 *
 * Before any subcommand runs, the process is made safe for its own I/O:
 * SIGPIPE is ignored (a reader that goes away, a control client that
 * hangs up, `| head`: a write fails with EPIPE instead of killing us; a
 * spawned program gets SIGPIPE back, libuv resets signal dispositions in
 * the child), and fds 0-2 closed by the caller are opened on /dev/null, so
 * the next file or socket opened cannot take their number and receive
 * what is meant for stdout or stderr.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "mealy.h"

static const struct {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *what;
} commands[] = {
    {"supervise", cmd_supervise, "run the supervisor (built-in demo without FILE)"},
    {"ctl", cmd_ctl, "control a running supervisor through its socket"},
    {"journal", cmd_journal, "look at a state directory: stat, dump, check, compact"},
    {"demo", cmd_demo, "run the embedding demo (MasterD beside a TCP server)"},
    {"demo-status", cmd_demo_status, "print the instance table of a running demo"},
    {"version", cmd_version, "print the version"},
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
  signal(SIGPIPE, SIG_IGN);
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
    if (strcmp(argv[1], commands[i].name) == 0)
      return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "mealy: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
