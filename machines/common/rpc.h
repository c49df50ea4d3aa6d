/*
 * rpc.h - the msgpack-RPC control socket: one server, one client.
 *
 * Every host that is controlled over a unix socket (`mealy supervise`,
 * `mealy fsm run`, later the queue host) serves it with this module and
 * registers its methods in a table; every command that drives one
 * (`mealy ctl`, `mealy fsm ...`, later `mealy queue ...`) calls it with
 * the client half.  It speaks msgpack-RPC as specified
 * (https://github.com/msgpack-rpc/msgpack-rpc/blob/master/spec.md):
 *
 *   request       [0, msgid, method, params]  answered [1, msgid, error,
 *                 result], error nil or a string, result nil on error
 *   notification  [2, method, params]         run, never answered
 *
 * Requests pipelined on one connection are answered in the order they
 * came, with their msgids, even when a method answers later than the
 * next one (rpc_reply may be called after the method returned).  A
 * well-formed msgpack value that is not a request gets an error answer
 * when it carries a msgid ([0 or 1, msgid, ...]); one without a usable
 * msgid, bytes that are not msgpack, or a request larger than
 * max_request, get the server's notification [2, "error", [why]] and the
 * connection is closed.  A client that may not connect gets
 * [2, "refused", [why]] and is hung up.  A client that shuts down its
 * side after its requests (EOF) still gets every answer, then the
 * connection is closed.  Hosts ignore SIGPIPE: a client that leaves
 * ends its connection only.
 *
 * Bounds, whoever the client is: at most max_clients connections; a
 * request at most max_request bytes; answers not yet sent at most
 * RPC_CLIENT_OUT per client and RPC_TOTAL_OUT in all, and at most
 * RPC_MAX_PENDING requests waiting for their answer per client (past
 * those, its requests are not read until it reads its answers); and a
 * connection making no progress for timeout_ms is closed.
 *
 * The socket is born with its mode (default 0600) in a directory checked
 * with mly_path_check and held open; a peer must be root or our own
 * user (SO_PEERCRED); the file is removed at stop only if it is still the
 * socket we bound.  Only mealy.h (and esc.h) are used (DESIGN D9).
 */
#ifndef MLY_RPC_H
#define MLY_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mealy.h"

#define RPC_MAX_REQUEST (64u * 1024u)
#define RPC_CLIENT_OUT (256u * 1024u)
#define RPC_TOTAL_OUT (16u * 1024u * 1024u)
#define RPC_MAX_PENDING 64u

/* ---- server ---- */

typedef struct rpc_server rpc_server;
/* One request (or notification) being served.  The method answers it
 * exactly once, with rpc_reply or rpc_fail, now or later; after that the
 * pointer is gone.  If the client hangs up first, the answer is dropped. */
typedef struct rpc_call rpc_call;

/* params is an array, owned by the call until it is answered. */
typedef void (*rpc_method_fn)(rpc_call *call, const mly_value *params,
                              void *ud);
typedef struct rpc_method {
  const char *name;
  rpc_method_fn fn;
} rpc_method;

/* What the server logs; the host decides how (the supervisor rate-limits
 * each kind).  msg is one line, without the host's prefix. */
typedef enum rpc_log_kind {
  RPC_LOG_REFUSED, /* a peer of another uid */
  RPC_LOG_FULL,    /* too many clients */
  RPC_LOG_CLOSED,  /* no progress for timeout_ms */
  RPC_LOG_BAD,     /* malformed or too large */
  RPC_LOG_INFO,    /* anything else */
} rpc_log_kind;

typedef struct rpc_config {
  uv_loop_t *loop;
  const char *path;          /* the socket, at most 107 bytes */
  unsigned mode;             /* 0: 0600 */
  uint32_t max_clients;      /* 0: 256 */
  int64_t timeout_ms;        /* 0: 30000 */
  size_t max_request;        /* 0: RPC_MAX_REQUEST */
  const rpc_method *methods; /* searched by name; the table must outlive */
  size_t nmethods;           /* the server */
  const char *what;          /* "supervisor": named in refusals */
  void *ud;                  /* given to methods and log */
  void (*log)(void *ud, rpc_log_kind kind, const char *msg); /* or NULL */
} rpc_config;

/* Binds and listens.  Errors: negative MLY_E* with err saying what and
 * where (path unsafe, another server listening there, not a socket). */
int rpc_start(const rpc_config *cfg, rpc_server **out, char *err,
              size_t errlen);
/* Closes every client (calls still pending are answered into the void)
 * and the socket; removes the socket file if it is still ours. */
void rpc_stop(rpc_server *srv);
size_t rpc_client_count(const rpc_server *srv);

/* Answer with result (taken; NULL: "ok"). */
void rpc_reply(rpc_call *call, mly_value *result);
/* Answer with an error, printf-style (cut at 1 KiB). */
void rpc_fail(rpc_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Whether it is a notification (its answer is dropped). */
bool rpc_call_is_notification(const rpc_call *call);
/* The method name of the call. */
const char *rpc_call_method(const rpc_call *call);

/* A string argument params[i], or NULL. */
const char *rpc_arg_str(const mly_value *params, size_t i);

/* ---- client ---- */

/* Calls method with params (taken) on the socket at sock, all within
 * timeout_ms (0: no limit), and stores the answer's result in *result
 * (owned by the caller).  Talks only to a server run by root or by our
 * own user.  On any failure (cannot connect, timeout, an error answer,
 * refused) prints one line "PROG: why" on stderr, escaped, and returns
 * -1. */
int rpc_call_sock(const char *prog, const char *sock, const char *method,
                  mly_value *params, int64_t timeout_ms, mly_value **result);

/* Prints "PROG: msg" on stderr, the n bytes of msg escaped. */
void rpc_print_error(const char *prog, const char *msg, size_t n);

#endif
