/*
 * promhttp.h - a small HTTP/1.1 server on the loop for a Prometheus
 * scrape: GET /metrics (HEAD too), nothing else.
 *
 * It listens on a unix socket or on a loopback TCP address (127.0.0.0/8
 * or ::1): metrics name every program and its state and are served
 * without authentication, so an address other hosts can reach is
 * refused; put a proxy (or node_exporter's textfile, or an SSH tunnel)
 * in front to export them further.  Requests are parsed by http_parser
 * (Debian's libhttp-parser, the parser long paired with libuv).
 *
 * The answer to GET /metrics is the body function's text, with
 * Content-Type MLY_METRICS_CONTENT_TYPE and Content-Length; any other
 * path is 404, any other method on /metrics 405 (Allow: GET, HEAD); a
 * request that is not HTTP is 400, one larger than max_request 431.
 * Every answer ends the connection (Connection: close).
 *
 * Bounds, whoever connects: at most max_clients connections (the next
 * get 503 and are closed), a request at most max_request bytes, a body
 * at most max_body bytes (else 500), and each connection closed
 * timeout_ms after it was accepted, whatever it is doing (a client that
 * sends half a request, or does not read its answer: slowloris).
 */
#ifndef MLY_PROMHTTP_H
#define MLY_PROMHTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "mealy.h"
#include "usock.h"

#define PROMHTTP_MAX_CLIENTS 16
#define PROMHTTP_TIMEOUT_MS 10000
#define PROMHTTP_MAX_REQUEST 8192
#define PROMHTTP_MAX_BODY (64u << 20)

/* Where to listen: a unix socket path (any value with a '/'), or
 * 127.0.0.1:PORT (any 127.x.y.z) or [::1]:PORT; PORT 0 picks one. */
typedef struct promhttp_addr {
  bool is_unix;
  char path[108];
  struct sockaddr_storage sa;
} promhttp_addr;
/* 0, or MLY_EINVAL with what is wrong and what to do in why. */
int promhttp_parse_addr(const char *s, promhttp_addr *out, char *why,
                        size_t whylen);

/* Writes the body through write(warg, ...); returns 0 or an error. */
typedef int (*promhttp_body_fn)(void *ud, mly_metrics_write_fn write,
                                void *warg);

typedef struct promhttp_config {
  uv_loop_t *loop;
  const char *listen;      /* promhttp_parse_addr's syntax */
  unsigned mode;           /* a unix socket's mode; 0: 0600 */
  uint32_t max_clients;    /* 0: PROMHTTP_MAX_CLIENTS */
  int64_t timeout_ms;      /* 0: PROMHTTP_TIMEOUT_MS */
  size_t max_request;      /* 0: PROMHTTP_MAX_REQUEST */
  size_t max_body;         /* 0: PROMHTTP_MAX_BODY */
  promhttp_body_fn body;
  void *ud;
  void (*log)(void *ud, const char *msg); /* what it refused; or NULL */
} promhttp_config;

typedef struct promhttp promhttp;

/* Binds and listens; err says what and where. */
int promhttp_start(const promhttp_config *cfg, promhttp **out, char *err,
                   size_t errlen);
/* Closes every connection and the listener; removes a unix socket file
 * if it is still ours. */
void promhttp_stop(promhttp *h);
uint32_t promhttp_clients(const promhttp *h);
/* What it listens on, as "127.0.0.1:9100" or the path (the port picked
 * when 0 was asked). */
const char *promhttp_where(const promhttp *h);

#endif
