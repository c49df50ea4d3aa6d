/*
 * promhttp.c - GET /metrics over plain HTTP/1.1 on the loop (promhttp.h
 * says what it answers and how it is bounded).
 *
 * A connection's life: accepted (or answered 503 past max_clients), its
 * deadline timer started once and never pushed back, bytes fed to
 * http_parser until a request is complete, an error, or max_request
 * bytes; then one answer is written, reading stops, and the connection
 * closes when the write completes (or at the deadline, whichever comes
 * first).  The body is built whole before the headers, bounded by
 * max_body, so the answer carries its Content-Length.
 */
#include "promhttp.h"
#include "textbuf.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct conn conn;

struct promhttp {
  promhttp_config cfg;
  union {
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } srv;
  promhttp_addr addr;
  usock us;
  char where[128];
  http_parser_settings settings;
  conn *conns;
  uint32_t nconns;
};

struct conn {
  union {
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  uv_timer_t timer;
  uv_write_t wreq;
  promhttp *srv;   /* NULL once the server stopped */
  http_parser parser;
  char url[256];
  size_t url_len;
  bool url_long, complete, answered, closing;
  size_t got;      /* request bytes read */
  textbuf body;    /* the body of a 200, being written */
  char hdr[256];   /* the headers being written */
  char text[64];   /* the body of an error */
  int open_handles;
  char rbuf[1024];
  conn *next, **pprev;
};

/* ---- addresses ---- */

static bool loopback(const struct sockaddr_storage *sa) {
  if (sa->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
  }
  const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
  return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
}

int promhttp_parse_addr(const char *s, promhttp_addr *out, char *why,
                        size_t whylen) {
  memset(out, 0, sizeof *out);
  if (strchr(s, '/') != NULL) {
    if (strlen(s) >= sizeof out->path) {
      snprintf(why, whylen, "a unix socket path must be shorter than %zu "
               "bytes; choose a shorter one", sizeof out->path);
      return MLY_EINVAL;
    }
    out->is_unix = true;
    snprintf(out->path, sizeof out->path, "%s", s);
    return 0;
  }
  const char *colon = strrchr(s, ':');
  char host[64];
  bool v6 = s[0] == '[';
  size_t hl = colon ? (size_t)(colon - s) : 0;
  if (v6 && (hl < 2 || s[hl - 1] != ']')) colon = NULL;
  char *end = NULL;
  long port = colon ? strtol(colon + 1, &end, 10) : -1;
  if (colon == NULL || hl == 0 || hl >= sizeof host || colon[1] == '\0' ||
      *end != '\0' || port < 0 || port > 65535) {
    snprintf(why, whylen, "'%.100s' is neither a unix socket path (with a "
             "'/') nor HOST:PORT such as 127.0.0.1:9464 or [::1]:9464", s);
    return MLY_EINVAL;
  }
  memcpy(host, s + v6, hl - 2 * v6);
  host[hl - 2 * v6] = '\0';
  int rc = v6 ? uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&out->sa)
              : uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&out->sa);
  if (rc < 0) {
    snprintf(why, whylen, "'%.64s' is not a numeric IP address; write "
             "127.0.0.1:PORT or [::1]:PORT (or a unix socket path)", host);
    return MLY_EINVAL;
  }
  if (!loopback(&out->sa)) {
    snprintf(why, whylen, "%.100s is not a loopback address: metrics are "
             "served without authentication, only on 127.0.0.0/8, [::1] or "
             "a unix socket; put a proxy in front to export them further", s);
    return MLY_EINVAL;
  }
  return 0;
}

/* ---- connections ---- */

static void conn_closed(uv_handle_t *h) {
  conn *c = h->data;
  if (--c->open_handles > 0) return;
  textbuf_free(&c->body);
  free(c);
}

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = true;
  if (c->pprev) {
    *c->pprev = c->next;
    if (c->next) c->next->pprev = c->pprev;
    c->pprev = NULL;
    if (c->srv) c->srv->nconns--;
  }
  uv_close((uv_handle_t *)&c->timer, conn_closed);
  uv_close((uv_handle_t *)&c->h, conn_closed);
}

static void say(promhttp *s, const char *msg) {
  if (s && s->cfg.log) s->cfg.log(s->cfg.ud, msg);
}

static void written(uv_write_t *w, int status) {
  (void)status;
  conn_close(w->data);
}

static const char *reason(int code) {
  switch (code) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  default: return "Service Unavailable";
  }
}

/* One answer: the headers (and a short text for an error) live in the
 * connection, the body of a 200 in c->body, until the write completes. */
static void send_answer(conn *c, int code, bool head) {
  size_t body_len = c->body.n;
  if (code != 200)
    body_len = (size_t)snprintf(c->text, sizeof c->text, "%d %s\n", code,
                                reason(code));
  int hl = snprintf(c->hdr, sizeof c->hdr,
                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                    "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                    code, reason(code),
                    code == 200 ? MLY_METRICS_CONTENT_TYPE
                                : "text/plain; charset=utf-8",
                    body_len, code == 405 ? "Allow: GET, HEAD\r\n" : "");
  c->answered = true;
  uv_read_stop(&c->h.stream);
  uv_buf_t b[2];
  unsigned nb = 0;
  b[nb++] = uv_buf_init(c->hdr, (unsigned)hl);
  if (!head && body_len > 0)
    b[nb++] = uv_buf_init(code == 200 ? c->body.p : c->text, (unsigned)body_len);
  c->wreq.data = c;
  if (uv_write(&c->wreq, &c->h.stream, b, nb, written) < 0) conn_close(c);
}

/* ---- requests ---- */

static void respond(conn *c) {
  promhttp *s = c->srv;
  struct http_parser_url u;
  http_parser_url_init(&u);
  if (c->url_long || http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 ||
      !(u.field_set & (1u << UF_PATH))) {
    send_answer(c, c->url_long ? 404 : 400, false);
    return;
  }
  const char *path = c->url + u.field_data[UF_PATH].off;
  size_t plen = u.field_data[UF_PATH].len;
  if (plen != 8 || memcmp(path, "/metrics", 8) != 0) {
    send_answer(c, 404, false);
    return;
  }
  bool head = c->parser.method == HTTP_HEAD;
  if (c->parser.method != HTTP_GET && !head) {
    send_answer(c, 405, false);
    return;
  }
  c->body.max = s->cfg.max_body;
  int rc = s->cfg.body(s->cfg.ud, textbuf_put, &c->body);
  if (rc != 0) {
    char msg[160];
    if (rc == MLY_ENOSPC)
      snprintf(msg, sizeof msg, "the metrics text is larger than %zu bytes: "
               "answered 500", s->cfg.max_body);
    else
      snprintf(msg, sizeof msg, "could not build the metrics: %s",
               mly_strerror(rc < 0 ? rc : MLY_EIO));
    say(s, msg);
    send_answer(c, 500, false);
    return;
  }
  send_answer(c, 200, head);
}

static int on_url(http_parser *p, const char *at, size_t n) {
  conn *c = p->data;
  if (c->url_len + n > sizeof c->url) c->url_long = true;
  else {
    memcpy(c->url + c->url_len, at, n);
    c->url_len += n;
  }
  return 0;
}

static int on_complete(http_parser *p) {
  ((conn *)p->data)->complete = true;
  http_parser_pause(p, 1); /* one request a connection: the rest is not read */
  return 0;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)hint;
  conn *c = h->data;
  *b = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  conn *c = st->data;
  if (c->answered || c->closing || c->srv == NULL) return;
  if (nread < 0) { /* gone (or EOF) before a whole request */
    conn_close(c);
    return;
  }
  if (nread == 0) return; /* EAGAIN: and 0 bytes would tell the parser EOF */
  size_t n = (size_t)nread;
  size_t room = c->srv->cfg.max_request - c->got;
  bool over = n > room;
  if (over) n = room;
  c->got += n;
  size_t used = http_parser_execute(&c->parser, &c->srv->settings, b->base, n);
  if (c->complete) {
    respond(c);
  } else if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || used != n) {
    say(c->srv, "closed a connection: not an HTTP request");
    send_answer(c, 400, false);
  } else if (over || c->got >= c->srv->cfg.max_request) {
    char msg[128];
    snprintf(msg, sizeof msg, "closed a connection: a request larger than "
             "%zu bytes", c->srv->cfg.max_request);
    say(c->srv, msg);
    send_answer(c, 431, false);
  }
}

static void timed_out(uv_timer_t *t) {
  conn *c = t->data;
  if (c->closing) return;
  char msg[160];
  snprintf(msg, sizeof msg, "closed a connection: %s within %lld ms",
           c->answered ? "its answer was not read" : "no whole request",
           (long long)(c->srv ? c->srv->cfg.timeout_ms : 0));
  say(c->srv, msg);
  conn_close(c);
}

static int handle_init(promhttp *s, uv_stream_t *h) {
  return s->addr.is_unix ? uv_pipe_init(s->cfg.loop, (uv_pipe_t *)h, 0)
                         : uv_tcp_init(s->cfg.loop, (uv_tcp_t *)h);
}

static void on_connection(uv_stream_t *server, int status) {
  promhttp *s = server->data;
  if (status < 0) return;
  conn *c = calloc(1, sizeof *c);
  if (c == NULL) return;
  c->srv = s;
  if (handle_init(s, &c->h.stream) < 0) {
    free(c);
    return;
  }
  uv_timer_init(s->cfg.loop, &c->timer);
  c->h.stream.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  c->next = s->conns;
  if (s->conns) s->conns->pprev = &c->next;
  s->conns = c;
  c->pprev = &s->conns;
  s->nconns++;
  if (uv_accept(server, &c->h.stream) < 0) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, timed_out, (uint64_t)s->cfg.timeout_ms, 0);
  if (s->nconns > s->cfg.max_clients) {
    char msg[128];
    snprintf(msg, sizeof msg, "refused a connection: %u at once already",
             s->cfg.max_clients);
    say(s, msg);
    send_answer(c, 503, false);
    return;
  }
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  if (uv_read_start(&c->h.stream, alloc_cb, read_cb) < 0) conn_close(c);
}

/* ---- the server ---- */

static void server_closed(uv_handle_t *h) { free(h->data); }

static int listen_unix(promhttp *s, char *err, size_t errlen) {
  int fd = -1;
  int rc = usock_bind(&s->us, s->addr.path, s->cfg.mode, &fd, err, errlen);
  if (rc < 0) return rc;
  rc = uv_pipe_open(&s->srv.pipe, fd);
  if (rc < 0) close(fd);
  snprintf(s->where, sizeof s->where, "%s", s->addr.path);
  return rc;
}

static int listen_tcp(promhttp *s) {
  int rc = uv_tcp_bind(&s->srv.tcp, (const struct sockaddr *)&s->addr.sa, 0);
  struct sockaddr_storage sa;
  int len = sizeof sa;
  if (rc == 0)
    rc = uv_tcp_getsockname(&s->srv.tcp, (struct sockaddr *)&sa, &len);
  if (rc < 0) return rc;
  char ip[INET6_ADDRSTRLEN];
  if (sa.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&sa;
    uv_ip6_name(a, ip, sizeof ip);
    snprintf(s->where, sizeof s->where, "[%s]:%d", ip, ntohs(a->sin6_port));
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&sa;
    uv_ip4_name(a, ip, sizeof ip);
    snprintf(s->where, sizeof s->where, "%s:%d", ip, ntohs(a->sin_port));
  }
  return 0;
}

int promhttp_start(const promhttp_config *cfg, promhttp **out, char *err,
                   size_t errlen) {
  promhttp *s = calloc(1, sizeof *s);
  if (s == NULL) return MLY_ENOMEM;
  s->cfg = *cfg;
  s->us.dirfd = -1;
  if (!s->cfg.max_clients) s->cfg.max_clients = PROMHTTP_MAX_CLIENTS;
  if (!s->cfg.timeout_ms) s->cfg.timeout_ms = PROMHTTP_TIMEOUT_MS;
  if (!s->cfg.max_request) s->cfg.max_request = PROMHTTP_MAX_REQUEST;
  if (!s->cfg.max_body) s->cfg.max_body = PROMHTTP_MAX_BODY;
  s->settings.on_url = on_url;
  s->settings.on_message_complete = on_complete;
  char why[256];
  int rc = promhttp_parse_addr(cfg->listen, &s->addr, why, sizeof why);
  if (rc < 0) {
    snprintf(err, errlen, "%s", why);
    free(s);
    return rc;
  }
  rc = handle_init(s, &s->srv.stream);
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s", cfg->listen, mly_strerror(rc));
    free(s);
    return rc;
  }
  s->srv.stream.data = s;
  err[0] = '\0';
  rc = s->addr.is_unix ? listen_unix(s, err, errlen) : listen_tcp(s);
  if (rc == 0) rc = uv_listen(&s->srv.stream, 64, on_connection);
  if (rc < 0) {
    if (err[0] == '\0')
      snprintf(err, errlen, "%s: cannot listen: %s", cfg->listen,
               mly_strerror(rc));
    usock_remove(&s->us);
    uv_close((uv_handle_t *)&s->srv, server_closed);
    return rc;
  }
  *out = s;
  return 0;
}

void promhttp_stop(promhttp *s) {
  if (s == NULL) return;
  while (s->conns) {
    conn *c = s->conns;
    conn_close(c); /* unlinks it */
    c->srv = NULL;
  }
  if (s->addr.is_unix && !usock_remove(&s->us))
    say(s, "the metrics socket is no longer ours: left in place");
  uv_close((uv_handle_t *)&s->srv, server_closed);
}

uint32_t promhttp_clients(const promhttp *s) { return s ? s->nconns : 0; }
const char *promhttp_where(const promhttp *s) { return s->where; }
