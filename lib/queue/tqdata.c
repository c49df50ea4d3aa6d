/*
 * tqdata.c - a task's fixed data: its layouts and its three strings.
 *
 * A task's data is written whole with each of its records, so its
 * strings (queue, target, last message) are packed one after another at
 * the end instead of sitting in fixed arrays: what follows the last NUL
 * is zeros, which the journal does not store.  Data written by the first
 * layout (tq_data_v1, type version 1) is converted when it is first
 * read: by the task's body before anything else, by the readers that
 * look at an instance's data from outside (listing, offline scans).
 */
#include "queue.h"

#include <string.h>

_Static_assert(sizeof(tq_data) >= sizeof(tq_data_v1),
               "a durable type's data never shrinks");

/* The strings are written bounded and NUL-ended (tq_d_set_text), and
 * tq_d_upgrade makes any read from a file so, so each one is found by
 * the length of the ones before it. */
const char *tq_d_queue(const tq_data *d) { return d->text; }

const char *tq_d_target(const tq_data *d) {
  return d->text + strlen(d->text) + 1;
}

const char *tq_d_msg(const tq_data *d) {
  const char *t = tq_d_target(d);
  return t + strlen(t) + 1;
}

static size_t put(char *p, const char *s, size_t max) {
  size_t n = s ? strnlen(s, max) : 0;
  if (n) memcpy(p, s, n);
  p[n] = '\0';
  return n + 1;
}

/* The strings must not lie in d->text (tq_d_set_msg copies them out). */
void tq_d_set_text(tq_data *d, const char *queue, const char *target,
                   const char *msg) {
  size_t n = put(d->text, queue, MLY_NAME_MAX);
  n += put(d->text + n, target, MLY_NAME_MAX);
  n += put(d->text + n, msg, MLY_TASK_MSG_MAX);
  memset(d->text + n, 0, sizeof d->text - n);
}

void tq_d_set_msg(tq_data *d, const char *msg) {
  char q[MLY_NAME_MAX + 1], t[MLY_NAME_MAX + 1];
  put(q, tq_d_queue(d), MLY_NAME_MAX);
  put(t, tq_d_target(d), MLY_NAME_MAX);
  tq_d_set_text(d, q, t, msg);
}

void tq_d_upgrade(tq_data *d) {
  if (d->layout == TQ_LAYOUT) {
    /* NUL-safe: three strings within their bounds, whatever the bytes */
    char q[MLY_NAME_MAX + 1], t[MLY_NAME_MAX + 1], m[MLY_TASK_MSG_MAX + 1];
    const char *p = d->text, *end = d->text + sizeof d->text;
    char *out[3] = {q, t, m};
    size_t max[3] = {MLY_NAME_MAX, MLY_NAME_MAX, MLY_TASK_MSG_MAX};
    for (int i = 0; i < 3; i++) {
      size_t room = (size_t)(end - p), n = strnlen(p, room);
      if (n > max[i]) n = max[i];
      memcpy(out[i], p, n);
      out[i][n] = '\0';
      p += n < room ? n + 1 : room;
    }
    tq_d_set_text(d, q, t, m);
    return;
  }
  tq_data_v1 o;
  memcpy(&o, d, sizeof o);
  o.queue[MLY_NAME_MAX] = o.target[MLY_NAME_MAX] = '\0';
  o.last_msg[MLY_TASK_MSG_MAX] = '\0';
  memset(d, 0, sizeof *d);
  d->layout = TQ_LAYOUT;
  d->kind = o.kind;
  d->state = o.state;
  d->priority = o.priority;
  d->last_error = o.last_error;
  d->attempts = o.attempts;
  d->failures = o.failures;
  d->eta_ms = o.eta_ms;
  d->created_ms = o.created_ms;
  d->first_run_ms = o.first_run_ms;
  d->seq = o.seq;
  d->retry = o.retry;
  tq_d_set_text(d, o.queue, o.target, o.last_msg);
}
