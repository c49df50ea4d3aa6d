/*
 * demo.c - a host program that embeds mealy beside its own libuv work.
 *
 * The host owns the loop.  On it run the host's own handles: a line-based
 * TCP server on 127.0.0.1 (it echoes lines; "config NAME" picks MasterD's
 * configuration, "status" answers the instance table, "quit" hangs up)
 * and a periodic timer of its own.  The mealy runtime sits beside them on
 * the same loop and thread; a separate "config picker" thread posts the
 * configuration with mly_post, the one thread-safe call.
 *
 * When MasterD's shutdown routine has stopped app and RT, it asks the
 * runtime to stop; the runtime's on_stop callback closes the host's
 * handles, and uv_run returns: nothing is left running.
 */
#include "demo.h"
#include "outq.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "masterd.h"

typedef struct client client;

typedef struct demo {
  const demo_options *o;
  uv_loop_t loop;
  uv_tcp_t server;
  uv_timer_t tick, stop_timer;
  uv_thread_t picker;
  uv_mutex_t lock;
  uv_cond_t cond;
  bool picker_on, picker_cancel;
  mly_runtime *rt;
  mly_id masterd;
  uint32_t config_ev;
  masterd_types types;
  masterd_log log;
  outq *q;           /* o->out, never blocking (outq.h) */
  FILE *out;         /* a stream onto q, or o->out */
  client *clients;
  uint64_t ticks;
  bool stopped;
} demo;

struct client {
  uv_tcp_t h;
  demo *d;
  char buf[1024];
  size_t n;
  client *next;
};

void demo_default_options(demo_options *o) {
  *o = (demo_options){.port = 7070, .config_after_ms = 3000,
                      .config = "mill.ini", .run_for_ms = -1,
                      .status_every_ms = 0, .recheck_ms = 2000,
                      .out = stdout};
}

/* ---- the config picker thread ---- */

static void picker_main(void *arg) {
  demo *d = arg;
  uint64_t ns = (uint64_t)d->o->config_after_ms * 1000000u;
  uv_mutex_lock(&d->lock);
  if (!d->picker_cancel) uv_cond_timedwait(&d->cond, &d->lock, ns);
  bool cancel = d->picker_cancel;
  uv_mutex_unlock(&d->lock);
  if (!cancel)
    mly_post(d->rt, d->masterd, d->config_ev, mly_value_str(d->o->config));
}

static void picker_stop(demo *d) {
  if (!d->picker_on) return;
  uv_mutex_lock(&d->lock);
  d->picker_cancel = true;
  uv_cond_signal(&d->cond);
  uv_mutex_unlock(&d->lock);
  uv_thread_join(&d->picker);
  d->picker_on = false;
}

/* ---- the host's TCP server ---- */

typedef struct write_req {
  uv_write_t req;
  char *data;
} write_req;

static void written(uv_write_t *req, int status) {
  (void)status;
  write_req *w = (write_req *)req;
  free(w->data);
  free(w);
}

static void client_send(client *c, const char *data, size_t len) {
  write_req *w = malloc(sizeof *w);
  char *copy = malloc(len ? len : 1);
  if (w == NULL || copy == NULL) {
    free(w);
    free(copy);
    return;
  }
  memcpy(copy, data, len);
  w->data = copy;
  uv_buf_t b = uv_buf_init(copy, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&c->h, &b, 1, written) < 0) {
    free(copy);
    free(w);
  }
}

static void client_closed(uv_handle_t *h) {
  client *c = h->data;
  demo *d = c->d;
  for (client **p = &d->clients; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  free(c);
}

static void client_close(client *c) {
  if (!uv_is_closing((uv_handle_t *)&c->h))
    uv_close((uv_handle_t *)&c->h, client_closed);
}

static void send_status(client *c) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (f == NULL) return;
  mly_runtime_dump(c->d->rt, f);
  fclose(f);
  client_send(c, text, len);
  free(text);
}

static void handle_line(client *c, char *line) {
  demo *d = c->d;
  if (strncmp(line, "config ", 7) == 0) {
    int rc = mly_runtime_send(d->rt, d->masterd, d->config_ev,
                              mly_value_str(line + 7));
    const char *ans = rc == 0 ? "ok\n" : "error: masterd has ended\n";
    client_send(c, ans, strlen(ans));
  } else if (strcmp(line, "status") == 0) {
    send_status(c);
  } else if (strcmp(line, "quit") == 0) {
    client_close(c);
  } else {
    size_t n = strlen(line);
    line[n] = '\n';
    client_send(c, line, n + 1);
  }
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  client *c = h->data;
  *buf = uv_buf_init(c->buf + c->n, (unsigned)(sizeof c->buf - c->n - 1));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  client *c = s->data;
  if (nread < 0) {
    client_close(c);
    return;
  }
  c->n += (size_t)nread;
  char *start = c->buf, *nl;
  while (!uv_is_closing((uv_handle_t *)&c->h) &&
         (nl = memchr(start, '\n', (size_t)(c->buf + c->n - start)))) {
    *nl = '\0';
    if (nl > start && nl[-1] == '\r') nl[-1] = '\0';
    handle_line(c, start);
    start = nl + 1;
  }
  c->n = (size_t)(c->buf + c->n - start);
  memmove(c->buf, start, c->n);
  if (c->n == sizeof c->buf - 1) client_close(c); /* a line too long */
}

static void on_connection(uv_stream_t *server, int status) {
  demo *d = server->data;
  if (status < 0) return;
  client *c = calloc(1, sizeof *c);
  if (c == NULL) return;
  c->d = d;
  uv_tcp_init(&d->loop, &c->h);
  c->h.data = c;
  c->next = d->clients;
  d->clients = c;
  if (uv_accept(server, (uv_stream_t *)&c->h) < 0 ||
      uv_read_start((uv_stream_t *)&c->h, alloc_cb, read_cb) < 0)
    client_close(c);
}

/* ---- timers and stopping ---- */

static void tick_cb(uv_timer_t *h) {
  demo *d = h->data;
  d->ticks++;
  if (d->o->status_every_ms > 0) {
    fprintf(d->out, "--- instances (host tick %llu) ---\n",
            (unsigned long long)d->ticks);
    mly_runtime_dump(d->rt, d->out);
    fflush(d->out);
  }
}

static void stop_timer_cb(uv_timer_t *h) {
  demo *d = h->data;
  masterd_logf(&d->log, "host", "run time is up: shutting down");
  mly_runtime_shutdown(d->rt, 5000);
}

/* The runtime has stopped: the host closes its own handles. */
static void on_stop(mly_runtime *rt, void *arg) {
  (void)rt;
  demo *d = arg;
  d->stopped = true;
  masterd_logf(&d->log, "host", "runtime stopped; closing the host's handles");
  uv_close((uv_handle_t *)&d->server, NULL);
  uv_close((uv_handle_t *)&d->tick, NULL);
  uv_close((uv_handle_t *)&d->stop_timer, NULL);
  for (client *c = d->clients; c; c = c->next) client_close(c);
}

static int listen_on(demo *d) {
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", d->o->port, &addr);
  uv_tcp_init(&d->loop, &d->server);
  d->server.data = d;
  int rc = uv_tcp_bind(&d->server, (const struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&d->server, 16, on_connection);
  if (rc < 0) return rc;
  struct sockaddr_storage got;
  int len = sizeof got;
  uv_tcp_getsockname(&d->server, (struct sockaddr *)&got, &len);
  masterd_logf(&d->log, "host", "line server on 127.0.0.1:%d "
               "(try: config NAME | status | quit)",
               ntohs(((struct sockaddr_in *)&got)->sin_port));
  return 0;
}

static int start(demo *d) {
  int rc = mly_runtime_new(&d->rt, &d->loop,
                           &(mly_runtime_options){.on_stop = on_stop, .arg = d});
  if (rc < 0) return rc;
  if ((rc = masterd_register(d->rt, &d->types)) < 0 ||
      (rc = mly_event_id(d->rt, "config", &d->config_ev)) < 0)
    return rc;
  masterd_arg a = {&d->log, &d->types, d->o->recheck_ms, 5000};
  if ((rc = mly_spawn(d->rt, d->types.masterd, &a, sizeof a, &d->masterd)) < 0)
    return rc;
  uv_timer_init(&d->loop, &d->tick);
  uv_timer_init(&d->loop, &d->stop_timer);
  d->tick.data = d->stop_timer.data = d;
  if ((rc = listen_on(d)) < 0) return rc;
  uint64_t every = d->o->status_every_ms > 0 ? (uint64_t)d->o->status_every_ms : 1000;
  uv_timer_start(&d->tick, tick_cb, every, every);
  if (d->o->run_for_ms >= 0)
    uv_timer_start(&d->stop_timer, stop_timer_cb, (uint64_t)d->o->run_for_ms, 0);
  if (d->o->config_after_ms >= 0) {
    if ((rc = uv_thread_create(&d->picker, picker_main, d)) < 0) return rc;
    d->picker_on = true;
  }
  return 0;
}

int demo_run(const demo_options *o) {
  demo *d = calloc(1, sizeof *d);
  if (d == NULL) return MLY_ENOMEM;
  d->o = o;
  int rc = uv_loop_init(&d->loop);
  if (rc < 0) {
    free(d);
    return rc;
  }
  /* a reader that stops reading must not stop the loop */
  fflush(o->out);
  d->q = outq_open(fileno(o->out));
  d->out = d->q ? outq_fopen(d->q) : NULL;
  if (d->out == NULL) d->out = o->out;
  else outq_attach(d->q, &d->loop);
  d->log.out = d->out;
  uv_mutex_init(&d->lock);
  uv_cond_init(&d->cond);
  rc = start(d);
  if (rc < 0) {
    masterd_logf(&d->log, "host", "cannot start: %s", mly_strerror(rc));
    if (d->rt) mly_runtime_shutdown(d->rt, 0);
  }
  if (rc == 0 || d->rt) uv_run(&d->loop, UV_RUN_DEFAULT);
  picker_stop(d);
  if (d->rt) mly_runtime_close(d->rt);
  if (d->out != o->out) fclose(d->out);
  outq_close(d->q);
  uv_run(&d->loop, UV_RUN_DEFAULT); /* the close callbacks */
  int closed = uv_loop_close(&d->loop);
  if (rc == 0 && (!d->stopped || closed != 0)) rc = MLY_EBUSY;
  uv_cond_destroy(&d->cond);
  uv_mutex_destroy(&d->lock);
  free(d);
  return rc;
}
