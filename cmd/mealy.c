/*
 * mealy.c - the `mealy` command: one subcommand per file, dispatched here.
 */
#include <stdio.h>
#include <string.h>

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

int main(int argc, char **argv) {
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
