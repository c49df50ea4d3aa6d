/*
 * control.c - the control socket: msgpack-RPC over a unix socket.
 *
 * Any msgpack-RPC client can drive the supervisor.  A request is
 * [0, msgid, method, params], the answer [1, msgid, error, result] with
 * error nil on success or a string.  Methods:
 *
 *   status [NAME...]      -> [{name, state, pid, uptime_ms, restarts,
 *                             last_exit, last_signal, ready, fatal,
 *                             backoff_ms, backoffs}, ...]
 *   start|stop|restart [NAME] -> "ok"
 *   signal [SIG, NAME]    -> "ok"
 *   reload []             -> "ok" (the file is checked first: an invalid
 *                            file is an error answer, nothing changes)
 *   shutdown []           -> "ok"
 *   tail [NAME, N]        -> the last N lines (at most 200) it wrote, as
 *                            the bytes it wrote (a str that may hold NULs)
 *   reopen []             -> "ok": every log file is opened again
 *   metrics []            -> the Prometheus text format 0.0.4 (a str):
 *                            the supervisor's figures and its runtime's
 *
 * The socket is created with mode 0600 (or the config's socket_mode), in
 * a directory no other user can write (or a sticky one), and
 * each peer's uid is checked with SO_PEERCRED: the supervisor's own user
 * or root.  Anyone else receives [2, "refused", [reason]] and is hung up.
 *
 * Every client is bounded, whoever it is: at most control_max_clients at
 * once (the next ones are refused); a request at most CTL_MAX_REQUEST
 * bytes; answers waiting to be sent at most CTL_CLIENT_OUT per client and
 * CTL_TOTAL_OUT for all (past that, its requests are not read until the
 * client reads its answers: memory stays bounded however it pipelines);
 * and a connection that makes no progress for control_timeout (no
 * request, or answers it does not read, or half a request) is closed.
 * What is refused or closed is logged, rate-limited (svlog.c).
 *
 * The socket file is removed at exit only if it is still ours: the same
 * device and inode as the socket we bound (a second supervisor may have
 * taken the path after the file was deleted).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "esc.h"
#include "sv.h"

#define CTL_MAX_REQUEST (64u * 1024u)
#define CTL_CLIENT_OUT (256u * 1024u)
#define CTL_TOTAL_OUT (16u * 1024u * 1024u)

typedef struct ctl_client ctl_client;

typedef struct ctl {
  sv *s;
  uv_pipe_t server;
  char path[108];
  int dirfd;            /* the socket's directory, held since bind */
  char base[108];       /* the socket's name in it */
  dev_t dev;            /* the socket file we bound: removed only if still */
  ino_t ino;
  ctl_client *clients;
  uint32_t nclients;
  size_t out_total;     /* bytes of answers not yet sent, all clients */
  uint32_t paused_total; /* clients paused because of out_total */
  sv_ratelimit rl_refused, rl_full, rl_closed, rl_bad;
} ctl;

struct ctl_client {
  uv_pipe_t h;
  uv_timer_t timer;     /* no progress for control_timeout: closed */
  ctl *c;
  char *buf;
  size_t n, cap;
  size_t out;           /* bytes of answers not yet sent */
  bool reading, paused, paused_total, closing;
  int open_handles;
  ctl_client *next, **pprev;
};

/* ---- writing ---- */

typedef struct ctl_write {
  uv_write_t req;
  char *data;
  size_t len;
  bool hangup;
} ctl_write;

static void unlink_client(ctl_client *cl) {
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
  ctl_client *cl = h->data;
  if (--cl->open_handles > 0) return;
  free(cl->buf);
  free(cl);
}

static void client_close(ctl_client *cl) {
  if (cl->closing) return;
  cl->closing = true;
  unlink_client(cl);
  uv_close((uv_handle_t *)&cl->timer, client_closed);
  uv_close((uv_handle_t *)&cl->h, client_closed);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);

/* Reads requests only while its answers (and everybody's) are flowing. */
static void flow(ctl_client *cl) {
  ctl *c = cl->c;
  if (cl->closing || c == NULL) return;
  bool own = cl->out > CTL_CLIENT_OUT;
  bool total = c->out_total > CTL_TOTAL_OUT;
  if (total != cl->paused_total) {
    cl->paused_total = total;
    if (total) c->paused_total++;
    else c->paused_total--;
  }
  bool want = !own && !total && !cl->paused;
  if (want && !cl->reading)
    cl->reading = uv_read_start((uv_stream_t *)&cl->h, alloc_cb, read_cb) == 0;
  else if (!want && cl->reading && uv_read_stop((uv_stream_t *)&cl->h) == 0)
    cl->reading = false;
}

static void progress(ctl_client *cl) {
  if (!cl->closing && cl->c)
    uv_timer_again(&cl->timer);
}

static void written(uv_write_t *req, int status) {
  ctl_write *w = (ctl_write *)req;
  ctl_client *cl = req->handle->data;
  if (!cl->closing && cl->c) {
    cl->out -= w->len;
    cl->c->out_total -= w->len;
    progress(cl);
    if (status < 0 || w->hangup) {
      client_close(cl);
    } else {
      flow(cl);
      if (cl->c->paused_total > 0) /* room for the others again? */
        for (ctl_client *o = cl->c->clients; o; o = o->next)
          if (o->paused_total) flow(o);
    }
  }
  free(w->data);
  free(w);
}

/* Sends v (and frees it); hangs up afterwards when asked. */
static void send_value(ctl_client *cl, mly_value *v, bool hangup) {
  char *buf = NULL;
  size_t len = 0;
  ctl_write *w = malloc(sizeof *w);
  if (w == NULL || v == NULL || mly_value_encode(v, &buf, &len) < 0) {
    free(w);
    mly_value_free(v);
    client_close(cl);
    return;
  }
  mly_value_free(v);
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

/* [2, kind, [why]]: a notification, then the client is hung up. */
static void refuse(ctl_client *cl, const char *kind, const char *why) {
  mly_value *r = mly_value_array();
  mly_array_push(r, mly_value_int(2));
  mly_array_push(r, mly_value_str(kind));
  mly_value *args = mly_value_array();
  mly_array_push(args, mly_value_str(why));
  mly_array_push(r, args);
  cl->paused = true;
  send_value(cl, r, true);
}

static void answer(ctl_client *cl, uint64_t msgid, const char *error,
                   mly_value *result) {
  mly_value *r = mly_value_array();
  mly_array_push(r, mly_value_int(1));
  mly_array_push(r, mly_value_uint(msgid));
  mly_array_push(r, error ? mly_value_str(error) : mly_value_nil());
  mly_array_push(r, result ? result : mly_value_nil());
  send_value(cl, r, false);
}

/* ---- methods ---- */

/* Stopped by a signal (SIGSTOP, SIGTSTP, a debugger): its machine still
 * says running, /proc says 'T' or 't'. */
static bool stopped_by_signal(int pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "re");
  if (f == NULL) return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *e = strrchr(buf, ')'); /* the name may hold anything */
  return e && e[1] == ' ' && (e[2] == 'T' || e[2] == 't');
}

static mly_value *proc_status(sv *s, const sv_proc *p) {
  char state[32];
  mly_value *m = mly_value_map();
  mly_map_set_str(m, "name", p->name);
  const char *st = sv_proc_state(s, p, state, sizeof state);
  if (p->pid > 0 && stopped_by_signal(p->pid)) st = "stopped (signal)";
  mly_map_set_str(m, "state", st);
  mly_map_set_int(m, "pid", p->pid);
  uint64_t now = uv_hrtime() / 1000000u;
  mly_map_set_int(m, "uptime_ms", p->pid > 0 ? (int64_t)(now - p->started_ms) : 0);
  mly_map_set_uint(m, "restarts", p->restarts);
  if (p->has_exit && p->last_signal == 0)
    mly_map_set_int(m, "last_exit", p->last_exit);
  else
    mly_map_set(m, "last_exit", mly_value_nil());
  if (p->has_exit && p->last_signal != 0)
    mly_map_set_str(m, "last_signal", sv_signal_name(p->last_signal));
  else
    mly_map_set(m, "last_signal", mly_value_nil());
  mly_map_set_bool(m, "ready", p->ready);
  mly_map_set_bool(m, "fatal", p->fatal);
  mly_map_set_int(m, "backoff_ms", p->last_backoff_ms);
  mly_value *b = mly_value_array();
  for (size_t i = 0; i < p->nbackoffs; i++)
    mly_array_push(b, mly_value_int(p->backoffs[i]));
  mly_map_set(m, "backoffs", b);
  /* sd_notify (notify.c): what the program said of itself */
  mly_map_set_str(m, "status", p->status);
  mly_map_set_int(m, "main_pid", p->main_pid);
  mly_map_set_bool(m, "reloading", p->sd_reloading);
  mly_map_set_bool(m, "stopping", p->sd_stopping);
  mly_map_set_int(m, "errno", p->sd_errno);
  mly_map_set_uint(m, "watchdog_kicks", p->wd_kicks);
  mly_map_set_uint(m, "watchdog_expired", p->wd_expired);
  mly_map_set_uint(m, "notify_accepted", p->sd_accepted);
  mly_map_set_uint(m, "notify_refused", p->sd_refused);
  return m;
}

static const char *arg_str(const mly_value *params, size_t i) {
  const char *s = NULL;
  if (mly_value_get_str(mly_array_at(params, i), &s, NULL) < 0) return NULL;
  return s;
}

/* "no such program 'x'": err gets it, naming what was asked (the
 * client's own string, cut short; ctl escapes what it prints). */
static const char *no_such(const char *name, char *err, size_t errlen) {
  if (name == NULL) return "a program name is needed (a string)";
  snprintf(err, errlen, "no such program '%.64s'%s", name,
           strlen(name) > 64 ? "..." : "");
  return err;
}

static const char *do_status(sv *s, const mly_value *params, mly_value **res,
                             char *err, size_t errlen) {
  mly_value *list = mly_value_array();
  size_t n = mly_value_len(params);
  for (size_t i = 0; i < n; i++) {
    const char *name = arg_str(params, i);
    if (name == NULL || sv_find(s, name) == NULL) {
      mly_value_free(list);
      return no_such(name, err, errlen);
    }
  }
  for (size_t i = 0; i < s->nprocs; i++) {
    const sv_proc *p = s->procs[i];
    bool wanted = n == 0; /* a removed program is listed until it is down */
    for (size_t k = 0; k < n && !wanted; k++)
      wanted = sv_find(s, arg_str(params, k)) == p;
    if (wanted) mly_array_push(list, proc_status(s, p));
  }
  *res = list;
  return NULL;
}

static const char *do_command(sv *s, const char *method,
                              const mly_value *params, char *err,
                              size_t errlen) {
  bool is_signal = strcmp(method, "signal") == 0;
  const char *name = arg_str(params, is_signal ? 1 : 0);
  sv_proc *p = name ? sv_find(s, name) : NULL;
  if (name == NULL) return "a program name is needed";
  if (p == NULL || p->machine == 0) return no_such(name, err, errlen);
  if (is_signal) {
    const char *sig = arg_str(params, 0);
    int signum = sig ? sv_signal_number(sig) : -1;
    if (signum <= 0) return "unknown signal name";
    if (p->pid <= 0) return "the program is not running";
    mly_runtime_send(s->rt, p->machine, SV_EV_SIGNAL, mly_value_int(signum));
    return NULL;
  }
  uint32_t ev = strcmp(method, "start") == 0  ? SV_EV_START
                : strcmp(method, "stop") == 0 ? SV_EV_STOP
                                              : SV_EV_RESTART;
  if (s->stopping && ev != SV_EV_STOP) return "the supervisor is shutting down";
  if (p->retiring && ev != SV_EV_STOP)
    return "removed from the configuration: it is stopping, and goes once down";
  p->launched = true; /* by hand: the supervisor no longer waits for it */
  p->held_down = ev == SV_EV_STOP; /* kept down, even across a crash */
  mly_runtime_send(s->rt, p->machine, ev, NULL);
  sv_logf(s, p->name, "%s requested through the control socket", method);
  return NULL;
}

/* The file is read here, once: what "ok" answers is what is applied,
 * whatever happens to the file before the supervisor's next step. */
static const char *do_reload(sv *s, char *err, size_t errlen) {
  sv_config *next = NULL;
  if (s->stopping) return "the supervisor is shutting down";
  if (sv_reload_config(s, &next, err, errlen) < 0) return err;
  sv_config_free(s->reload_cfg); /* a newer request wins */
  s->reload_cfg = next;
  mly_runtime_send(s->rt, s->sup, SV_EV_RELOAD, NULL);
  return NULL;
}

static const char *do_tail(sv *s, const mly_value *params, mly_value **res,
                           char *err, size_t errlen) {
  const char *name = arg_str(params, 0);
  sv_proc *p = name ? sv_find(s, name) : NULL;
  if (p == NULL) return no_such(name, err, errlen);
  int64_t want = SV_TAIL_LINES;
  if (mly_value_len(params) > 1 &&
      mly_value_get_int(mly_array_at(params, 1), &want) < 0)
    return "the line count must be a number";
  size_t n = want < 0 ? 0 : (size_t)want;
  if (n > p->tail_count) n = p->tail_count;
  mly_value *lines = mly_value_array();
  size_t first = (p->tail_next + SV_TAIL_LINES - n) % SV_TAIL_LINES;
  for (size_t i = 0; i < n; i++)
  {
    size_t k = (first + i) % SV_TAIL_LINES;
    mly_array_push(lines, mly_value_strn(p->tail[k], p->tail_len[k]));
  }
  *res = lines;
  return NULL;
}

static void dispatch(ctl_client *cl, const mly_value *req) {
  sv *s = cl->c->s;
  int64_t type = -1;
  uint64_t msgid = 0;
  const char *method = NULL;
  const mly_value *params = mly_array_at(req, 3);
  if (mly_value_type(req) != MLY_V_ARRAY || mly_value_len(req) != 4 ||
      mly_value_get_int(mly_array_at(req, 0), &type) < 0 || type != 0 ||
      mly_value_get_uint(mly_array_at(req, 1), &msgid) < 0 ||
      mly_value_get_str(mly_array_at(req, 2), &method, NULL) < 0 ||
      mly_value_type(params) != MLY_V_ARRAY) {
    answer(cl, msgid, "not a msgpack-RPC request [0, msgid, method, params]", NULL);
    return;
  }
  char err[1024];
  const char *e = NULL;
  mly_value *res = NULL;
  if (strcmp(method, "status") == 0) {
    e = do_status(s, params, &res, err, sizeof err);
  } else if (!strcmp(method, "start") || !strcmp(method, "stop") ||
             !strcmp(method, "restart") || !strcmp(method, "signal")) {
    e = do_command(s, method, params, err, sizeof err);
  } else if (strcmp(method, "reload") == 0) {
    e = do_reload(s, err, sizeof err);
  } else if (strcmp(method, "shutdown") == 0) {
    mly_runtime_send(s->rt, s->sup, SV_EV_SHUTDOWN, NULL);
  } else if (strcmp(method, "tail") == 0) {
    e = do_tail(s, params, &res, err, sizeof err);
  } else if (strcmp(method, "metrics") == 0) {
    e = sv_metrics_text(s, &res);
  } else if (strcmp(method, "reopen") == 0) {
    sv_logf(s, "mealy", "reopening log files (requested through the "
            "control socket)");
    logpipe_reopen_all(s);
  } else {
    char shown[ESC_MAX(64) + 1];
    size_t len = strlen(method);
    esc_str(method, len > 64 ? 64 : len, shown, sizeof shown);
    snprintf(err, sizeof err, "unknown method '%s%s'", shown,
             len > 64 ? "..." : "");
    e = err;
  }
  if (e == NULL && res == NULL) res = mly_value_str("ok");
  if (e != NULL) {
    mly_value_free(res);
    res = NULL;
  }
  answer(cl, msgid, e, res);
}

/* ---- reading ---- */

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)hint;
  ctl_client *cl = h->data;
  if (cl->cap - cl->n < 4096 && cl->cap < CTL_MAX_REQUEST) {
    size_t cap = cl->cap ? cl->cap * 2 : 8192;
    if (cap > CTL_MAX_REQUEST) cap = CTL_MAX_REQUEST;
    char *p = realloc(cl->buf, cap);
    if (p != NULL) {
      cl->buf = p;
      cl->cap = cap;
    }
  }
  *b = uv_buf_init(cl->buf + cl->n, (unsigned)(cl->cap - cl->n));
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  (void)b;
  ctl_client *cl = st->data;
  if (nread < 0) {
    client_close(cl);
    return;
  }
  if (nread > 0) progress(cl);
  cl->n += (size_t)nread;
  size_t off = 0;
  for (;;) {
    mly_value *req = NULL;
    size_t used = 0;
    int rc = mly_value_decode_prefix(cl->buf + off, cl->n - off, &req, &used);
    if (rc == MLY_EAGAIN) break;
    if (rc < 0) { /* garbage: answer once, then hang up */
      sv_logf_rl(cl->c->s, &cl->c->rl_bad, "control",
                 "closed a client: malformed msgpack");
      cl->n = 0;
      refuse(cl, "error", "malformed msgpack");
      return;
    }
    dispatch(cl, req);
    mly_value_free(req);
    off += used;
    if (cl->closing) return;
  }
  memmove(cl->buf, cl->buf + off, cl->n - off);
  cl->n -= off;
  if (cl->n == cl->cap && cl->cap >= CTL_MAX_REQUEST) {
    sv_logf_rl(cl->c->s, &cl->c->rl_bad, "control", "closed a client: a "
               "request larger than %u bytes", CTL_MAX_REQUEST);
    refuse(cl, "error", "request too large");
  }
}

static void timed_out(uv_timer_t *t) {
  ctl_client *cl = t->data;
  if (cl->closing || cl->c == NULL) return;
  ctl *c = cl->c;
  sv_logf_rl(c->s, &c->rl_closed, "control", "closed a client: %s for %lld ms",
             cl->out > 0 ? "it does not read its answers"
             : cl->n > 0 ? "half a request, and nothing more"
                         : "no request",
             (long long)c->s->cfg->control_timeout_ms);
  client_close(cl);
}

static bool peer_allowed(ctl_client *cl, uid_t *uid) {
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
  ctl *c = server->data;
  if (status < 0) return;
  ctl_client *cl = calloc(1, sizeof *cl);
  if (cl == NULL) return;
  cl->c = c;
  uv_pipe_init(c->s->loop, &cl->h, 0);
  uv_timer_init(c->s->loop, &cl->timer);
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
  uint64_t t = (uint64_t)c->s->cfg->control_timeout_ms;
  uv_timer_start(&cl->timer, timed_out, t, t);
  uid_t uid = (uid_t)-1;
  if (!peer_allowed(cl, &uid)) {
    char why[128];
    snprintf(why, sizeof why, "permission denied: uid %d may not control "
             "this supervisor (uid %d)", (int)uid, (int)geteuid());
    sv_logf_rl(c->s, &c->rl_refused, "control", "refused a client: %s", why);
    refuse(cl, "refused", why);
    return;
  }
  if (c->nclients > c->s->cfg->control_max_clients) {
    char why[128];
    snprintf(why, sizeof why, "too many control connections (%u at once); "
             "try again later", c->s->cfg->control_max_clients);
    sv_logf_rl(c->s, &c->rl_full, "control", "refused a client: %s", why);
    refuse(cl, "refused", why);
    return;
  }
  flow(cl);
  if (!cl->reading) client_close(cl);
}

/* A socket file left by a supervisor that died is removed; one that a
 * live server answers on is not taken over, and *who says whose it is. */
static int claim_path(const char *path, struct ucred *who) {
  struct stat st;
  if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : -errno;
  if (!S_ISSOCK(st.st_mode)) return MLY_EEXIST;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  bool live = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  socklen_t len = sizeof *who;
  if (live && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, who, &len) < 0)
    who->pid = 0, who->uid = (uid_t)-1;
  if (fd >= 0) close(fd);
  if (live) return MLY_EBUSY;
  return unlink(path) < 0 ? -errno : 0;
}

static void server_closed(uv_handle_t *h) {
  ctl *c = h->data;
  if (c->dirfd >= 0) close(c->dirfd);
  free(c);
}

/* Another user who can write a directory on the socket's path could
 * swap the socket (or what clients take for it) between our calls, or
 * after: every directory on the way must be trusted (mly_path_check);
 * the directory is held open, so the socket is removed from it at exit
 * whatever its path names by then. */
static int socket_dir(ctl *c, const char *path, char *err, size_t errlen) {
  char dir[4096];
  int rc = mly_path_check(path, (uid_t)-1, dir, sizeof dir, err, errlen);
  if (rc < 0) return rc; /* err says what and where */
  c->dirfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (c->dirfd < 0) {
    rc = -errno;
    snprintf(err, errlen, "%s: the socket's directory %s: %s", path, dir,
             mly_strerror(rc));
    return rc;
  }
  const char *slash = strrchr(path, '/');
  snprintf(c->base, sizeof c->base, "%s", slash ? slash + 1 : path);
  return 0;
}

int ctl_start(sv *s, const char *path, char *err, size_t errlen) {
  if (strlen(path) >= sizeof ((struct sockaddr_un *)0)->sun_path) {
    snprintf(err, errlen, "%s: socket path too long (at most 107 bytes)", path);
    return MLY_ENAMETOOLONG;
  }
  ctl *c = calloc(1, sizeof *c);
  if (c == NULL) return MLY_ENOMEM;
  c->s = s;
  c->dirfd = -1;
  int rc = socket_dir(c, path, err, errlen);
  struct ucred who = {0};
  if (rc == 0) rc = claim_path(path, &who);
  if (rc < 0) {
    if (rc == MLY_EBUSY)
      snprintf(err, errlen, "%s: another server is listening there (uid %d, "
               "pid %d)%s; stop it, or choose another socket path", path,
               (int)who.uid, (int)who.pid, who.uid == 0 || who.uid == geteuid()
               ? ": another supervisor" : ", not a user this supervisor trusts");
    else if (rc == MLY_EEXIST)
      snprintf(err, errlen, "%s: exists and is not a socket", path);
    else if (c->dirfd >= 0)
      snprintf(err, errlen, "%s: %s", path, mly_strerror(rc));
    if (c->dirfd >= 0) close(c->dirfd);
    free(c);
    return rc;
  }
  snprintf(c->path, sizeof c->path, "%s", path);
  uv_pipe_init(s->loop, &c->server, 0);
  c->server.data = c;
  /* bound here, not by uv_pipe_bind: libuv unlinks the path of a socket
   * it bound when the handle closes, even if the path is no longer ours.
   * Born with its mode: no window where others connect, and no chmod by
   * path, which would follow a symlink swapped in after bind. */
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  memcpy(a.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  rc = fd < 0 ? -errno : 0;
  mode_t mode = s->cfg->socket_mode ? (mode_t)s->cfg->socket_mode : 0600;
  mode_t old = umask(~mode & 0777);
  if (rc == 0 && bind(fd, (struct sockaddr *)&a, sizeof a) < 0) rc = -errno;
  umask(old);
  if (rc == 0) rc = uv_pipe_open(&c->server, fd);
  if (rc < 0 && fd >= 0) close(fd);
  struct stat st;
  if (rc == 0) rc = fstatat(c->dirfd, c->base, &st, AT_SYMLINK_NOFOLLOW) < 0
                   ? -errno : 0;
  if (rc == 0) {
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    rc = uv_listen((uv_stream_t *)&c->server, 128, on_connection);
  }
  if (rc < 0) {
    snprintf(err, errlen, "%s: cannot listen: %s", path, mly_strerror(rc));
    uv_close((uv_handle_t *)&c->server, server_closed);
    return rc;
  }
  s->ctl = c;
  return 0;
}

/* Our socket file goes, from the directory held since bind, and only if
 * it is still the one we bound. */
static void remove_socket(sv *s, ctl *c) {
  struct stat st;
  if (fstatat(c->dirfd, c->base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISSOCK(st.st_mode) && st.st_dev == c->dev && st.st_ino == c->ino)
    unlinkat(c->dirfd, c->base, 0);
  else
    sv_logf(s, "mealy", "%s is no longer our socket: left in place", c->path);
}

uint32_t ctl_clients(const sv *s) {
  const ctl *c = s->ctl;
  return c ? c->nclients : 0;
}

void ctl_stop(sv *s) {
  ctl *c = s->ctl;
  if (c == NULL) return;
  s->ctl = NULL;
  sv_rl_flush(s, &c->rl_refused, "control");
  sv_rl_flush(s, &c->rl_full, "control");
  sv_rl_flush(s, &c->rl_closed, "control");
  sv_rl_flush(s, &c->rl_bad, "control");
  while (c->clients) {
    ctl_client *cl = c->clients;
    client_close(cl); /* unlinks it */
    cl->c = NULL;     /* the server may be freed before the clients close */
  }
  remove_socket(s, c);
  uv_close((uv_handle_t *)&c->server, server_closed);
}
