/*
 * cmd.h - the subcommands of `mealy` and what they share.
 * Each returns the process exit status: 0 ok, 1 failure, 2 bad usage.
 */
#ifndef MLY_CMD_H
#define MLY_CMD_H

#include <stdint.h>

int cmd_demo(int argc, char **argv);
int cmd_demo_status(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_supervise(int argc, char **argv);
int cmd_ctl(int argc, char **argv);

/* Option values, with a clear message on stderr when they are bad:
 * "mealy demo: --for: 'x' is not a duration (write 250ms, 10s, 2m)". */
int opt_duration(const char *cmd, const char *opt, const char *val,
                 int64_t *out);
int opt_port(const char *cmd, const char *opt, const char *val, int *out);

#endif
