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
  mly_queue_conf *qconf;  /* queues: and schedules: of its files */
  rpc_method *methods;    /* fsm's and the queues', one table */
  mly_store_conf *sconf;  /* store: of its files */
  mly_conf_section sec[3];/* qconf's and sconf's, for the loader */
  bool store_failed;      /* the journal or store stopped: exit 1 */
  bool sconf_used;        /* durable on PostgreSQL */
  bool loop_open;
} fsm_host;

/* What run and validate share (fsm_run.c): a runtime with the fsm and
 * queue layers, the --actions library (NULL: none) given it, and the
 * files loaded with their queues: and schedules: into h->set and
 * h->qconf, every name checked that can be (run: all of them; validate:
 * actions and functions only with a library).  lo: on_error etc., the
 * rest is filled in.  0, or a negative MLY_E* after the messages. */
int fsm_host_load(fsm_host *h, const char *cmd, const char *actions,
                  bool run, const char *const *files, size_t nfiles,
                  mly_fsm_load_options *lo);
/* Everything of h closed and freed but h itself (any stage of it). */
void fsm_host_close(fsm_host *h);

/* --actions LIB.so (fsm_actions.c): checks that only root or we can
 * change it, loads it, runs its mly_actions_init(rt).  0, or a negative
 * MLY_E* code after a line on stderr that starts with cmd.  *handle: the
 * library once opened (even if its init then failed), never closed by
 * the caller while actions it registered may run. */
int fsm_actions_load(mly_runtime *rt, const char *cmd, const char *path,
                     void **handle);

/* The table the host registers on its socket. */
extern const rpc_method fsm_methods[];
extern const size_t fsm_nmethods;
/* The task queues' methods (queue_methods.c), served beside them. */
extern const rpc_method queue_methods[];
extern const size_t queue_nmethods;

/* A queue's and a task's listing as the host's replies give them
 * (queue_methods.c); offline (limits false) a queue has no limits. */
void queue_put_info(mly_value *m, const mly_queue_info *qi, bool limits);
int queue_put_task(const mly_task_info *t, void *array);
/* Why mly_defer refused adding a task (rc): which queue or function is
 * unknown, what is wrong with the name, or what holds it (queued, done,
 * deleted); into buf, returned (queue_methods.c; offline says the
 * same). */
const char *queue_add_refusal(mly_runtime *rt, int rc, const char *q,
                              const char *fn, const char *name,
                              const mly_name_info *ex, char *buf,
                              size_t len);
/* `mealy queue SUB --state-dir DIR` (queue_offline.c): the exit status;
 * *res the reply a host would give (NULL: none). */
int queue_offline(const char *cmd, const char *sub, const char *dir,
                  char **pos, int npos, const char *name, mly_value **res);
/* `mealy queue ls|show --store CONNINFO` (queue_offline.c): the same
 * from a PostgreSQL store, read only; the changes are refused (1). */
int queue_store(const char *cmd, const char *sub, const char *conninfo,
                char **pos, mly_value **res);

/* The loader's queue_known for the host: a queue of its files' queues:
 * or one declared already (fsm_run.c). */
bool fsm_host_queue_known(const char *name, void *arg);

/* key=value (a string) and key:=VALUE (number, true, false, null)
 * arguments into a map; NULL after saying which one is wrong (fsm_ctl.c;
 * the queue client uses it too). */
mly_value *ctl_kv_map(const char *cmd, char **args, int n);

#endif
