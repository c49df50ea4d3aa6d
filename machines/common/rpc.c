/*
 * rpc.c - the msgpack-RPC server of every control socket (see rpc.h).
 *
 * A client holds its calls in arrival order; a call answered (now or
 * later) waits until every call before it is answered, then its bytes
 * are written: answers leave in request order whatever order methods
 * finish in.  A notification is a call whose answer is never written.
 * A call whose client has gone is orphaned (its client pointer cleared)
 * and freed when its method answers it.
 *
 * Every client is bounded, whoever it is (rpc.h).  The socket is bound
 * by usock.c, not by uv_pipe_bind: libuv unlinks the path of a socket it
 * bound when the handle closes, even if the path is no longer ours.
 * usock checks every directory on the path, holds the directory, takes
 * over only a dead socket, binds with the mode from birth, and at stop
 * removes the file only if it is still the socket we bound.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esc.h"
#include "rpc.h"
#include "usock.h"

typedef struct rpc_client rpc_client;

struct rpc_server {
  rpc_config cfg;
  uv_pipe_t server;
  usock us;             /* the socket file, its held directory */
  rpc_client *clients;
  uint32_t nclients;
  size_t out_total;     /* bytes of answers not yet sent, all clients */
  uint32_t paused_total; /* clients paused because of out_total */
};

struct rpc_call {
  rpc_client *cl;       /* NULL once the client has gone */
  rpc_call *next;       /* the client's next call, in arrival order */
  mly_value *req;       /* the message, owning params */
  const char *method;
  uint64_t msgid;
  bool notify, done;
  char *out;            /* the encoded answer, once done */
  size_t outlen;
};

struct rpc_client {
  uv_pipe_t h;
  uv_timer_t timer;     /* no progress for timeout_ms: closed */
  rpc_server *c;
  char *buf;
  size_t n, cap;
  size_t out;           /* bytes of answers not yet sent */
  rpc_call *head, **tail; /* calls not yet answered on the wire */
  uint32_t npending;
  bool reading, paused, paused_total, closing, serving;
  bool stalled;         /* whole requests wait in buf for room */
  bool eof;             /* it has shut down its side */
  int open_handles;
  rpc_client *next, **pprev;
};

static void logf_(rpc_server *c, rpc_log_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(rpc_server *c, rpc_log_kind kind, const char *fmt, ...) {
  if (c == NULL || c->cfg.log == NULL) return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  c->cfg.log(c->cfg.ud, kind, msg);
}

static void call_free(rpc_call *call) {
  mly_value_free(call->req);
  free(call->out);
  free(call);
}

/* ---- writing ---- */

typedef struct rpc_write {
  uv_write_t req;
  char *data;
  size_t len;
  bool hangup;
} rpc_write;

static void unlink_client(rpc_client *cl) {
  if (cl->pprev == NULL) return;
  *cl->pprev = cl->next;
  if (cl->next) cl->next->pprev = cl->pprev;
  cl->pprev = NULL;
  if (cl->c) {
    cl->c->nclients--;
    cl->c->out_total -= cl->out;
    if (cl->paused_total) cl->c->paused_total--;
  }
  cl->out = 0;
  cl->paused_total = false;
}

static void client_closed(uv_handle_t *h) {
  rpc_client *cl = h->data;
  if (--cl->open_handles > 0) return;
  free(cl->buf);
  free(cl);
}

/* Its calls still running are orphaned; answered ones go. */
static void client_close(rpc_client *cl) {
  if (cl->closing) return;
  cl->closing = true;
  unlink_client(cl);
  for (rpc_call *call = cl->head, *next; call; call = next) {
    next = call->next;
    if (call->done) call_free(call);
    else call->cl = NULL, call->next = NULL;
  }
  cl->head = NULL;
  cl->tail = &cl->head;
  cl->npending = 0;
  uv_close((uv_handle_t *)&cl->timer, client_closed);
  uv_close((uv_handle_t *)&cl->h, client_closed);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);
static void serve(rpc_client *cl);

/* Whether another of its requests may be served now: its answers (and
 * everybody's) are flowing and it holds fewer calls than the bound. */
static bool room(const rpc_client *cl) {
  const rpc_server *c = cl->c;
  return c != NULL && !cl->closing && !cl->paused &&
         cl->out <= RPC_CLIENT_OUT && cl->npending < RPC_MAX_PENDING &&
         c->out_total <= RPC_TOTAL_OUT;
}

/* Reads only while there is room; what waited in buf is served when
 * there is room again.  A client that has shut down its side (EOF) is
 * closed once every request it sent is answered and written. */
static void flow(rpc_client *cl) {
  rpc_server *c = cl->c;
  if (cl->closing || c == NULL) return;
  bool total = c->out_total > RPC_TOTAL_OUT;
  if (total != cl->paused_total) {
    cl->paused_total = total;
    if (total) c->paused_total++;
    else c->paused_total--;
  }
  bool want = room(cl) && !cl->eof;
  if (want && !cl->reading)
    cl->reading = uv_read_start((uv_stream_t *)&cl->h, alloc_cb, read_cb) == 0;
  else if (!want && cl->reading && uv_read_stop((uv_stream_t *)&cl->h) == 0)
    cl->reading = false;
  if (cl->stalled && room(cl)) serve(cl);
  if (cl->eof && !cl->closing && !cl->stalled && !cl->serving &&
      cl->head == NULL && cl->out == 0)
    client_close(cl);
}

static void progress(rpc_client *cl) {
  if (!cl->closing && cl->c) uv_timer_again(&cl->timer);
}

static void written(uv_write_t *req, int status) {
  rpc_write *w = (rpc_write *)req;
  rpc_client *cl = req->handle->data;
  if (!cl->closing && cl->c) {
    cl->out -= w->len;
    cl->c->out_total -= w->len;
    progress(cl);
    if (status < 0 || w->hangup) {
      client_close(cl);
    } else {
      flow(cl);
      if (cl->c && cl->c->paused_total > 0) /* room for the others again? */
        for (rpc_client *o = cl->c->clients; o; o = o->next)
          if (o->paused_total) flow(o);
    }
  }
  free(w->data);
  free(w);
}

/* Writes len bytes of buf (taken); hangs up afterwards when asked. */
static void send_bytes(rpc_client *cl, char *buf, size_t len, bool hangup) {
  rpc_write *w = malloc(sizeof *w);
  if (w == NULL) {
    free(buf);
    client_close(cl);
    return;
  }
  w->data = buf;
  w->len = len;
  w->hangup = hangup;
  uv_buf_t b = uv_buf_init(buf, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&cl->h, &b, 1, written) < 0) {
    free(buf);
    free(w);
    client_close(cl);
    return;
  }
  cl->out += len;
  if (cl->c) cl->c->out_total += len;
  flow(cl);
}

/* [2, kind, [why]]: the server's notification, then the client is hung
 * up (refused, or a message it cannot answer). */
static void refuse(rpc_client *cl, const char *kind, const char *why) {
  mly_value *r = mly_value_array();
  mly_array_push(r, mly_value_int(2));
  mly_array_push(r, mly_value_str(kind));
  mly_value *args = mly_value_array();
  mly_array_push(args, mly_value_str(why));
  mly_array_push(r, args);
  cl->paused = true;
  char *buf = NULL;
  size_t len = 0;
  int rc = mly_value_encode(r, &buf, &len);
  mly_value_free(r);
  if (rc < 0) client_close(cl);
  else send_bytes(cl, buf, len, true);
}

/* Writes the answers now first in line; stops at one still running. */
static void drain(rpc_client *cl) {
  while (cl->head && cl->head->done && !cl->closing) {
    rpc_call *call = cl->head;
    cl->head = call->next;
    if (cl->head == NULL) cl->tail = &cl->head;
    cl->npending--;
    char *out = call->out;
    size_t len = call->outlen;
    call->out = NULL;
    call_free(call);
    if (out) send_bytes(cl, out, len, false); /* may close cl */
  }
  if (!cl->closing) flow(cl);
}

static void finish(rpc_call *call, const char *error, mly_value *result) {
  if (call->done) { /* answered twice: a bug in a method; kept safe */
    mly_value_free(result);
    return;
  }
  call->done = true;
  rpc_client *cl = call->cl;
  if (cl == NULL) { /* its client has gone */
    mly_value_free(result);
    call_free(call);
    return;
  }
  if (call->notify) {
    mly_value_free(result);
  } else {
    if (error) {
      mly_value_free(result);
      result = mly_value_nil();
    } else if (result == NULL) {
      result = mly_value_str("ok");
    }
    mly_value *r = mly_value_array();
    mly_array_push(r, mly_value_int(1));
    mly_array_push(r, mly_value_uint(call->msgid));
    mly_array_push(r, error ? mly_value_str(error) : mly_value_nil());
    mly_array_push(r, result);
    int rc = mly_value_encode(r, &call->out, &call->outlen);
    mly_value_free(r);
    if (rc < 0) {
      client_close(cl); /* frees call, done */
      return;
    }
  }
  drain(cl);
}

void rpc_reply(rpc_call *call, mly_value *result) {
  finish(call, NULL, result);
}

void rpc_fail(rpc_call *call, const char *fmt, ...) {
  char err[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, sizeof err, fmt, ap);
  va_end(ap);
  finish(call, err, NULL);
}

bool rpc_call_is_notification(const rpc_call *call) { return call->notify; }

const char *rpc_call_method(const rpc_call *call) { return call->method; }

const char *rpc_arg_str(const mly_value *params, size_t i) {
  const char *s = NULL;
  if (mly_value_get_str(mly_array_at(params, i), &s, NULL) < 0) return NULL;
  return s;
}

/* ---- dispatching ---- */

static const rpc_method *find_method(rpc_server *c, const char *name) {
  for (size_t i = 0; i < c->cfg.nmethods; i++)
    if (strcmp(c->cfg.methods[i].name, name) == 0) return &c->cfg.methods[i];
  return NULL;
}

/* What is wrong with msg as [0, msgid, method, params] or
 * [2, method, params], or NULL; *has_id when it carries a msgid to
 * answer with. */
static const char *check(const mly_value *msg, int64_t *type, bool *has_id,
                         uint64_t *msgid) {
  *has_id = false;
  if (mly_value_type(msg) != MLY_V_ARRAY)
    return "not a msgpack-RPC message: an array [0, msgid, method, params] "
           "or [2, method, params] was expected";
  size_t n = mly_value_len(msg);
  if (mly_value_get_int(mly_array_at(msg, 0), type) < 0 ||
      (*type != 0 && *type != 1 && *type != 2))
    return "not a msgpack-RPC message: its first element must be 0 "
           "(request) or 2 (notification)";
  if (*type != 2 && mly_value_get_uint(mly_array_at(msg, 1), msgid) == 0 &&
      *msgid <= UINT32_MAX)
    *has_id = true;
  if (*type == 1)
    return "a response [1, msgid, error, result] was sent to the server, "
           "which makes no requests";
  if (*type == 0 && !*has_id)
    return "a request's msgid must be an unsigned 32-bit integer";
  size_t at = *type == 0 ? 2 : 1; /* where the method is */
  if (n != at + 2)
    return *type == 0 ? "a request is [0, msgid, method, params]: 4 elements"
                      : "a notification is [2, method, params]: 3 elements";
  if (mly_value_type(mly_array_at(msg, at)) != MLY_V_STR)
    return "the method must be a string";
  if (mly_value_type(mly_array_at(msg, at + 1)) != MLY_V_ARRAY)
    return "params must be an array";
  return NULL;
}

/* Takes msg. */
static void dispatch(rpc_client *cl, mly_value *msg) {
  rpc_server *c = cl->c;
  int64_t type = -1;
  uint64_t msgid = 0;
  bool has_id = false;
  const char *bad = check(msg, &type, &has_id, &msgid);
  if (bad && !has_id) {
    mly_value_free(msg);
    logf_(c, RPC_LOG_BAD, "closed a client: %s", bad);
    refuse(cl, "error", bad);
    return;
  }
  rpc_call *call = calloc(1, sizeof *call);
  if (call == NULL) {
    mly_value_free(msg);
    client_close(cl);
    return;
  }
  call->cl = cl;
  call->req = msg;
  call->msgid = msgid;
  call->notify = type == 2;
  *cl->tail = call;
  cl->tail = &call->next;
  cl->npending++;
  if (bad) {
    rpc_fail(call, "%s", bad);
    return;
  }
  size_t at = call->notify ? 1 : 2;
  mly_value_get_str(mly_array_at(msg, at), &call->method, NULL);
  const mly_value *params = mly_array_at(msg, at + 1);
  const rpc_method *m = find_method(c, call->method);
  if (m == NULL) {
    char shown[ESC_MAX(64) + 1];
    size_t len = strlen(call->method);
    esc_str(call->method, len > 64 ? 64 : len, shown, sizeof shown);
    rpc_fail(call, "unknown method '%s%s'", shown, len > 64 ? "..." : "");
    return;
  }
  m->fn(call, params, c->cfg.ud);
  if (!cl->closing) flow(cl); /* at the bound of calls held, stop reading */
}

/* ---- reading ---- */

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)hint;
  rpc_client *cl = h->data;
  size_t max = cl->c ? cl->c->cfg.max_request : RPC_MAX_REQUEST;
  if (cl->cap - cl->n < 4096 && cl->cap < max) {
    size_t cap = cl->cap ? cl->cap * 2 : 8192;
    if (cap > max) cap = max;
    char *p = realloc(cl->buf, cap);
    if (p != NULL) {
      cl->buf = p;
      cl->cap = cap;
    }
  }
  *b = uv_buf_init(cl->buf + cl->n, (unsigned)(cl->cap - cl->n));
}

/* Serves the whole messages in buf, one at a time while there is room:
 * a client that fills its pending calls stops here (stalled), the rest
 * waits in buf until flow() finds room again and calls this. */
static void serve(rpc_client *cl) {
  if (cl->serving) return;
  cl->serving = true;
  size_t off = 0;
  int rc = 0;
  bool whole = false; /* stopped for room with a whole message left? */
  for (;;) {
    if (!room(cl)) {
      whole = cl->n > off;
      break;
    }
    mly_value *msg = NULL;
    size_t used = 0;
    rc = mly_value_decode_prefix(cl->buf + off, cl->n - off, &msg, &used);
    if (rc == MLY_EAGAIN) break;
    if (rc < 0) { /* garbage: said once, then hung up */
      logf_(cl->c, RPC_LOG_BAD, "closed a client: malformed msgpack");
      cl->n = off = 0;
      refuse(cl, "error", "malformed msgpack");
      break;
    }
    off += used;
    dispatch(cl, msg);
  }
  cl->serving = false;
  if (cl->closing) return;
  memmove(cl->buf, cl->buf + off, cl->n - off);
  cl->n -= off;
  cl->stalled = whole && !cl->paused;
  size_t max = cl->c->cfg.max_request;
  if (rc == MLY_EAGAIN && cl->n == cl->cap && cl->cap >= max) {
    logf_(cl->c, RPC_LOG_BAD, "closed a client: a request larger than %zu "
          "bytes", max);
    refuse(cl, "error", "request too large");
    return;
  }
  flow(cl); /* an EOF client may be done */
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  (void)b;
  rpc_client *cl = st->data;
  if (cl->c == NULL || cl->closing) return;
  if (nread == UV_EOF) { /* answered all the same, then closed */
    cl->eof = true;
    flow(cl);
    return;
  }
  if (nread < 0) {
    client_close(cl);
    return;
  }
  if (nread > 0) progress(cl);
  cl->n += (size_t)nread;
  serve(cl);
}

static void timed_out(uv_timer_t *t) {
  rpc_client *cl = t->data;
  if (cl->closing || cl->c == NULL) return;
  if (cl->head && !cl->head->done) return; /* the server is slow, not it */
  rpc_server *c = cl->c;
  logf_(c, RPC_LOG_CLOSED, "closed a client: %s for %lld ms",
        cl->out > 0 ? "it does not read its answers"
        : cl->n > 0 ? "half a request, and nothing more"
                    : "no request",
        (long long)c->cfg.timeout_ms);
  client_close(cl);
}

static bool peer_allowed(rpc_client *cl, uid_t *uid) {
  uv_os_fd_t fd;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (uv_fileno((uv_handle_t *)&cl->h, &fd) < 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
    return false;
  *uid = cred.uid;
  return cred.uid == 0 || cred.uid == geteuid();
}

static void on_connection(uv_stream_t *server, int status) {
  rpc_server *c = server->data;
  if (status < 0) return;
  rpc_client *cl = calloc(1, sizeof *cl);
  if (cl == NULL) return;
  cl->c = c;
  cl->tail = &cl->head;
  uv_pipe_init(c->cfg.loop, &cl->h, 0);
  uv_timer_init(c->cfg.loop, &cl->timer);
  cl->h.data = cl;
  cl->timer.data = cl;
  cl->open_handles = 2;
  cl->next = c->clients;
  if (c->clients) c->clients->pprev = &cl->next;
  c->clients = cl;
  cl->pprev = &c->clients;
  c->nclients++;
  if (uv_accept(server, (uv_stream_t *)&cl->h) < 0) {
    client_close(cl);
    return;
  }
  uint64_t t = (uint64_t)c->cfg.timeout_ms;
  uv_timer_start(&cl->timer, timed_out, t, t);
  uid_t uid = (uid_t)-1;
  char why[160];
  if (!peer_allowed(cl, &uid)) {
    snprintf(why, sizeof why, "permission denied: uid %d may not control "
             "this %s (uid %d)", (int)uid, c->cfg.what, (int)geteuid());
    logf_(c, RPC_LOG_REFUSED, "refused a client: %s", why);
    refuse(cl, "refused", why);
    return;
  }
  if (c->nclients > c->cfg.max_clients) {
    snprintf(why, sizeof why, "too many control connections (%u at once); "
             "try again later", c->cfg.max_clients);
    logf_(c, RPC_LOG_FULL, "refused a client: %s", why);
    refuse(cl, "refused", why);
    return;
  }
  flow(cl);
  if (!cl->reading) client_close(cl);
}

/* ---- the socket ---- */

static void server_closed(uv_handle_t *h) { free(h->data); }

int rpc_start(const rpc_config *cfg, rpc_server **out, char *err,
              size_t errlen) {
  const char *path = cfg->path;
  rpc_server *c = calloc(1, sizeof *c);
  if (c == NULL) return MLY_ENOMEM;
  c->cfg = *cfg;
  if (c->cfg.max_clients == 0) c->cfg.max_clients = 256;
  if (c->cfg.timeout_ms <= 0) c->cfg.timeout_ms = 30000;
  if (c->cfg.max_request == 0) c->cfg.max_request = RPC_MAX_REQUEST;
  if (c->cfg.what == NULL) c->cfg.what = "server";
  c->cfg.path = NULL; /* not kept: c->us.path is */
  int fd = -1;
  int rc = usock_bind(&c->us, path, c->cfg.mode, &fd, err, errlen);
  if (rc < 0) {
    free(c);
    return rc;
  }
  uv_pipe_init(cfg->loop, &c->server, 0);
  c->server.data = c;
  rc = uv_pipe_open(&c->server, fd);
  if (rc < 0) close(fd);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&c->server, 128, on_connection);
  if (rc < 0) {
    snprintf(err, errlen, "%s: cannot listen: %s", path, mly_strerror(rc));
    usock_remove(&c->us);
    uv_close((uv_handle_t *)&c->server, server_closed);
    return rc;
  }
  *out = c;
  return 0;
}

size_t rpc_client_count(const rpc_server *srv) { return srv->nclients; }

void rpc_stop(rpc_server *c) {
  if (c == NULL) return;
  while (c->clients) {
    rpc_client *cl = c->clients;
    client_close(cl); /* unlinks it */
    cl->c = NULL;     /* the server may be freed before the clients close */
  }
  if (!usock_remove(&c->us)) /* only if still ours, from the held dir */
    logf_(c, RPC_LOG_INFO, "%s is no longer our socket: left in place",
          c->us.path);
  uv_close((uv_handle_t *)&c->server, server_closed);
}
