/*
 * pg_conn.h - one PostgreSQL connection driven by a libuv loop (internal).
 *
 * libpq's asynchronous API on a uv_poll_t watching PQsocket: connecting
 * (PQconnectStart/PQconnectPoll), sending (PQsendQueryParams in pipeline
 * mode, each query followed by a sync so that it is its own implicit
 * transaction unless an explicit BEGIN is open), reading
 * (PQconsumeInput/PQisBusy/PQgetResult) never block the loop, and no
 * thread is started.  Queries wait in a queue and are answered in order,
 * each through its callback, once.
 *
 * When the server goes away, every query sent and not yet answered fails
 * with an error saying so; with retry on, the connection is made again
 * with backoff (50 ms doubling to 5 s), channels listened to are listened
 * to again, and queries not yet sent go out on the new connection.
 * Notifications that came while disconnected are lost: callers that need
 * them look at once on every connection (mly_pg_on_connect) and poll.  Loop thread only.
 *
 * One wait is libpq's, not the loop's to avoid: a host NAME in conninfo
 * is resolved with getaddrinfo inside PQconnectStart.  Give a socket
 * directory (host=/path) or hostaddr= for a loop that never waits.
 */
#ifndef MLY_STORE_PG_CONN_H
#define MLY_STORE_PG_CONN_H

#include <stdbool.h>
#include <libpq-fe.h>
#include <uv.h>

typedef struct mly_pg mly_pg;

/* A query's answer: res is the query's result (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK) and err NULL; or res NULL and err a sentence (the
 * server's message, "connection to the server was lost ...", or "the
 * connection was closed").  res is freed after the callback returns. */
typedef void (*mly_pg_result_cb)(mly_pg *pg, const PGresult *res,
                                 const char *err, void *arg);
typedef void (*mly_pg_notify_cb)(mly_pg *pg, const char *channel,
                                 const char *payload, void *arg);

/* Starts connecting.  retry: after a lost connection (or a failed first
 * attempt) connect again with backoff; without it a failed connection
 * fails every query, then and later.  conninfo is copied.  0 or
 * MLY_ENOMEM. */
int mly_pg_open(uv_loop_t *loop, const char *conninfo, bool retry,
                mly_pg **out);

/* Queues one statement with text parameters $1..$n (values[i] NULL is
 * SQL NULL).  The strings are copied.  0, MLY_ENOMEM, or MLY_ESHUTDOWN
 * after mly_pg_close. */
int mly_pg_query(mly_pg *pg, const char *sql, int n,
                 const char *const *values, mly_pg_result_cb cb, void *arg);

/* As mly_pg_query, but the values are not copied: values[i] (lengths[i]
 * bytes when formats[i] is 1, binary; text otherwise; lengths and
 * formats, copied, may be NULL: all text) must stay as they are until cb
 * was called (a caller that keeps a statement to send it again after a
 * lost connection; bytea without hex). */
int mly_pg_query_ref(mly_pg *pg, const char *sql, int n,
                     const char *const *values, const int *lengths,
                     const int *formats, mly_pg_result_cb cb, void *arg);

/* LISTEN on channel (an SQL identifier, quoted here) now and after every
 * reconnection; notifications go to the callback set by mly_pg_on_notify. */
int mly_pg_listen(mly_pg *pg, const char *channel);
void mly_pg_on_notify(mly_pg *pg, mly_pg_notify_cb cb, void *arg);

/* Every connection, this one's and the blocking ones (pg_live.c,
 * pg_store.c's registration), is made with connect_timeout 10 s and TCP
 * keepalives (idle 10 s, every 5 s, 3 lost: gone) unless conninfo says
 * otherwise; the asynchronous connect enforces connect_timeout itself
 * (libpq does not there).  A blocking connection: */
PGconn *mly_pg_connect_blocking(const char *conninfo);

/* Queries sent and unanswered for ms with nothing read from the server
 * meanwhile: the connection is taken as lost (a server or network gone
 * silent).  0 (the default): never. */
void mly_pg_set_stall(mly_pg *pg, uint64_t ms);

/* cb runs each time a connection is made (the first and every one made
 * again), once its session statement and LISTENs are queued: a query it
 * sends goes after them (a store fetching what was notified while it was
 * not listening).  NULL: none. */
typedef void (*mly_pg_connect_cb)(mly_pg *pg, void *arg);
void mly_pg_on_connect(mly_pg *pg, mly_pg_connect_cb cb, void *arg);

/* sql (copied; no parameters, e.g. "SET lock_timeout = 5000") is sent
 * first on this connection and on every one made again, before LISTEN
 * and the queries waiting; a failure is the answer of no one.  0,
 * MLY_ENOMEM, MLY_ESHUTDOWN. */
int mly_pg_set_session(mly_pg *pg, const char *sql);

/* Inside a result callback: the SQLSTATE of the error answered ("57014",
 * "MLYF1", ...), or "" (no error, or not the server's). */
const char *mly_pg_sqlstate(const mly_pg *pg);

/* While not connected: fails every query waiting to be sent, with why
 * (a caller that gave up on the server).  Connected: does nothing. */
void mly_pg_fail_waiting(mly_pg *pg, const char *why);

/* weak: the connection keeps the loop alive only while a query waits
 * for its answer (a store: the runtime's loop ends when its work does);
 * otherwise (the default) until it is closed. */
void mly_pg_set_weak(mly_pg *pg, bool weak);

/* Connected now?  And how many connections were made so far. */
bool mly_pg_connected(const mly_pg *pg);
unsigned mly_pg_connects(const mly_pg *pg);
/* The last connection error, or "" */
const char *mly_pg_last_error(const mly_pg *pg);

/* Makes msg (a server's or libpq's words; NUL-terminated, len bytes)
 * fit to show: conninfo's password (and sslpassword) becomes *** wherever
 * it appears, also when libpq cannot parse conninfo (found by hand then),
 * and control characters are escaped as mly_esc_str does (a newline is
 * kept).  Cut to len.  pg_yaml.c. */
void pg_mask_password(const char *conninfo, char *msg, size_t len);

/* Fails what is queued ("the connection was closed"), closes the handles;
 * the memory goes once the loop has run the close callbacks. */
void mly_pg_close(mly_pg *pg);

#endif
