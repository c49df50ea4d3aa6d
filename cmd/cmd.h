/*
 * cmd.h - the subcommands of `mealy` and what they share.
 * Each returns the process exit status: 0 ok, 1 failure, 2 bad usage.
 */
#ifndef MLY_CMD_H
#define MLY_CMD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "mealy.h"

int cmd_demo(int argc, char **argv);
int cmd_demo_status(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_supervise(int argc, char **argv);
int cmd_ctl(int argc, char **argv);
int cmd_journal(int argc, char **argv);
int cmd_store(int argc, char **argv);
int cmd_fsm(int argc, char **argv);
int cmd_queue(int argc, char **argv);
/* `mealy fsm run` (fsm_run.c) and its clients (fsm_ctl.c) */
int cmd_fsm_run(int argc, char **argv);
int cmd_fsm_start(int argc, char **argv);
int cmd_fsm_send(int argc, char **argv);
int cmd_fsm_ls(int argc, char **argv);
int cmd_fsm_show(int argc, char **argv);
int cmd_fsm_migrate(int argc, char **argv);

/* Option values, with a clear message on stderr when they are bad:
 * "mealy demo: --for: 'x' is not a duration (write 250ms, 10s, 2m)". */
int opt_duration(const char *cmd, const char *opt, const char *val,
                 int64_t *out);
int opt_port(const char *cmd, const char *opt, const char *val, int *out);
/* The PostgreSQL store's conninfo: --store's value when given, else
 * MEALY_STORE from the environment (which `ps` does not show to other
 * users, as it shows argv), else NULL. */
const char *opt_store(const char *given);

/* JSON (json.c): values, strings of n bytes, bytes as a hex string. */
void json_value(FILE *f, const mly_value *v);
void json_str(FILE *f, const char *s, size_t n);
void json_hex(FILE *f, const void *p, size_t n);
/* An object being written: json_key puts the comma before every key but
 * the first, then the key and its colon. */
typedef struct json_obj {
  FILE *f;
  bool first;
} json_obj;
void json_key(json_obj *o, const char *k);

#endif
