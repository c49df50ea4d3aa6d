/*
 * fsmhost.h - `mealy fsm run`: a host of YAML machines, and the methods
 * it serves on its control socket (fsm_methods.c; rpc.h is the socket).
 */
#ifndef MLY_FSMHOST_H
#define MLY_FSMHOST_H

#include "mealy.h"
#include "rpc.h"

#define FSM_DEFAULT_SOCKET "mealy-fsm.sock"

typedef struct fsm_host {
  uv_loop_t loop;
  mly_runtime *rt;
  rpc_server *srv;
  uv_signal_t sigterm, sigint;
  mly_fsm_set *set;
  void *actions;          /* the --actions library (dlopen), or NULL */
  int stops;              /* SIGTERM/SIGINT seen */
} fsm_host;

/* The table the host registers on its socket. */
extern const rpc_method fsm_methods[];
extern const size_t fsm_nmethods;

#endif
