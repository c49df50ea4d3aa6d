/*
 * supervise.c - `mealy supervise [--check] [-s SOCKET] [FILE]`.
 *
 * Runs the supervisor in the foreground on FILE, or on the demo
 * configuration built into the binary when no FILE is given.  --check
 * only validates FILE and says where the first problem is.
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "sv.h"

extern const char mly_demo_config[];
extern const unsigned long mly_demo_config_len;

static void usage(FILE *f) {
  fprintf(f,
      "usage: mealy supervise [--check] [-s SOCKET] [--state-dir DIR] [FILE]\n"
      "  FILE         the configuration (YAML); without it, the built-in demo\n"
      "  --check      validate FILE and exit: 0 valid, 1 not\n"
      "  -s SOCKET    control socket path (overrides the file's socket:)\n"
      "  --state-dir DIR\n"
      "               keep the programs' state in a journal in DIR (overrides\n"
      "               the file's state_dir:): after the supervisor is killed,\n"
      "               the next run adopts (or, with orphans: stop, restarts)\n"
      "               the children it finds alive, never a second copy\n");
}

int cmd_supervise(int argc, char **argv) {
  const char *file = NULL, *sock = NULL, *state = NULL;
  bool check = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--check") == 0) {
      check = true;
    } else if (strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "--socket") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "mealy supervise: %s needs a path\n", argv[i]);
        return 2;
      }
      sock = argv[++i];
    } else if (strcmp(argv[i], "--state-dir") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "mealy supervise: --state-dir needs a directory\n");
        return 2;
      }
      state = argv[++i];
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "mealy supervise: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    } else if (file == NULL) {
      file = argv[i];
    } else {
      fprintf(stderr, "mealy supervise: one configuration file only\n");
      return 2;
    }
  }
  if (check) {
    char err[1024];
    sv_config *c = NULL;
    if (file == NULL) {
      fprintf(stderr, "mealy supervise: --check needs a FILE\n");
      return 2;
    }
    if (sv_config_load(file, &c, err, sizeof err) < 0) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    printf("%s: valid, %zu programs\n", file, c->nprograms);
    sv_config_free(c);
    return 0;
  }
  sv_run_options o = {.config_path = file, .socket_override = sock,
                      .state_dir = state, .log = stdout};
  if (file == NULL) {
    o.config_path = "(built-in demo)";
    o.config_text = mly_demo_config;
    o.config_len = mly_demo_config_len;
  }
  int rc = sv_run(&o);
  if (rc < 0) return 1;
  return rc;
}
