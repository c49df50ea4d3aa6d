/*
 * queue_methods.c - the task queues' methods on the control socket of
 * `mealy fsm run` (served beside fsm_methods; README "mealy queue"):
 *
 *   queue.ls      []                        -> [{queue counts...}, ...]
 *   queue.show    [QUEUE]                   -> {queue..., tasks: [...]}
 *   queue.add     [QUEUE, FUNCTION, NAME|nil, PAYLOAD|nil] -> {id}
 *   queue.retry   [TASK-ID]                 -> "ok" (a dead letter)
 *   queue.delete  [TASK-ID]                 -> "ok"
 *   queue.purge   [QUEUE]                   -> {deleted}
 *   queue.pause   [QUEUE] / queue.resume [QUEUE] -> "ok"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsmhost.h"

void queue_put_info(mly_value *m, const mly_queue_info *qi, bool limits) {
  mly_map_set_str(m, "name", qi->def.name);
  mly_map_set(m, "paused", mly_value_bool(qi->paused));
  mly_map_set_uint(m, "scheduled", qi->scheduled);
  mly_map_set_uint(m, "waiting", qi->waiting);
  mly_map_set_uint(m, "running", qi->running);
  mly_map_set_uint(m, "dead", qi->dead);
  if (!limits) return; /* offline: they live in the host */
  mly_map_set_uint(m, "steps_running", qi->steps_running);
  mly_map_set_uint(m, "steps_waiting", qi->steps_waiting);
  mly_map_set_uint(m, "max_concurrent", qi->def.max_concurrent);
  mly_map_set(m, "rate", mly_value_double(qi->def.rate));
  mly_map_set_uint(m, "bucket_size", qi->def.bucket_size);
  mly_map_set_uint(m, "priority_levels", qi->def.priority_levels);
  mly_map_set_int(m, "timeout_ms", qi->def.timeout_ms);
  mly_map_set(m, "concurrency_key",
              qi->def.concurrency_key ? mly_value_str(qi->def.concurrency_key)
                                      : mly_value_nil());
  mly_map_set_uint(m, "concurrency_limit", qi->def.concurrency_key_max);
  mly_map_set_uint(m, "succeeded", qi->succeeded);
  mly_map_set_uint(m, "dead_lettered", qi->dead_lettered);
}

static int ls_one(const mly_queue_info *qi, void *arg) {
  mly_value *m = mly_value_map();
  queue_put_info(m, qi, true);
  mly_map_set(m, "declared", mly_value_bool(true));
  return mly_array_push(arg, m);
}

/* ---- queues no one declared ----
 * A task of a queue this host does not declare (added offline, or its
 * queue left out of the files) waits until a host declares it: listed,
 * with declared false and why, never hidden. */

typedef struct undeclared {
  mly_runtime *rt;
  const char *only; /* NULL: every undeclared queue */
  mly_value *list;  /* of maps, as queue_put_info's */
  mly_value *tasks; /* show: its tasks (NULL: none wanted) */
} undeclared;

static mly_value *undeclared_entry(mly_value *list, const char *q) {
  for (size_t i = 0; i < mly_value_len(list); i++) {
    mly_value *m = mly_array_at(list, i);
    const char *n = NULL;
    if (mly_map_get_str(m, "name", &n) == 0 && strcmp(n, q) == 0) return m;
  }
  mly_value *m = mly_value_map();
  if (m == NULL) return NULL;
  mly_map_set_str(m, "name", q);
  mly_map_set(m, "declared", mly_value_bool(false));
  mly_map_set(m, "paused", mly_value_bool(false));
  static const char *const counts[] = {"scheduled", "waiting", "running",
                                       "dead"};
  for (int i = 0; i < 4; i++) mly_map_set_uint(m, counts[i], 0);
  mly_map_set_str(m, "note", "not declared in this host: its tasks wait "
                  "until a host declares it (queues: in the files it runs)");
  if (mly_array_push(list, m) < 0) return NULL;
  return m;
}

static int undeclared_one(const mly_task_info *t, void *arg) {
  undeclared *u = arg;
  mly_queue_def d;
  if (mly_queue_def_get(u->rt, t->queue, &d) == 0) return 0;
  if (u->only && strcmp(u->only, t->queue) != 0) return 0;
  mly_value *m = undeclared_entry(u->list, t->queue);
  if (m == NULL) return MLY_ENOMEM;
  const char *k = t->state == MLY_TASK_SCHEDULED ? "scheduled"
                  : t->state == MLY_TASK_WAITING ? "waiting"
                  : t->state == MLY_TASK_RUNNING ? "running"
                                                 : "dead";
  uint64_t n = 0;
  mly_map_get_uint(m, k, &n);
  mly_map_set_uint(m, k, n + 1);
  return u->tasks ? queue_put_task(t, u->tasks) : 0;
}

static void m_ls(rpc_call *call, const mly_value *params, void *ud) {
  fsm_host *h = ud;
  (void)params;
  mly_value *list = mly_value_array();
  mly_queue_foreach(h->rt, ls_one, list);
  undeclared u = {h->rt, NULL, list, NULL};
  mly_task_foreach(h->rt, NULL, MLY_TASKS_ALL, undeclared_one, &u);
  rpc_reply(call, list);
}

int queue_put_task(const mly_task_info *t, void *arg) {
  mly_value *m = mly_value_map();
  mly_map_set_uint(m, "id", t->id);
  mly_map_set(m, "name", t->name ? mly_value_str(t->name) : mly_value_nil());
  mly_map_set_str(m, "runs", t->target.name);
  mly_map_set_str(m, "state", mly_task_state_name(t->state));
  mly_map_set_int(m, "priority", t->priority);
  mly_map_set_int(m, "eta_ms", t->eta_ms);
  mly_map_set_int(m, "created_ms", t->created_ms);
  mly_map_set_uint(m, "attempts", t->attempts);
  mly_map_set_uint(m, "failures", t->failures);
  mly_map_set_str(m, "last_error", t->last_error ? mly_strerror(t->last_error)
                                                 : "");
  mly_map_set_str(m, "last_msg", t->last_msg ? t->last_msg : "");
  return mly_array_push(arg, m);
}

static const char *queue_arg(rpc_call *call, fsm_host *h,
                             const mly_value *params, mly_queue_info *qi) {
  const char *q = rpc_arg_str(params, 0);
  if (q == NULL) {
    rpc_fail(call, "a queue name is needed (a string)");
    return NULL;
  }
  if (mly_queue_info_get(h->rt, q, qi) < 0) {
    rpc_fail(call, "no such queue '%.64s'", q);
    return NULL;
  }
  return q;
}

static void m_show(rpc_call *call, const mly_value *params, void *ud) {
  fsm_host *h = ud;
  mly_queue_info qi;
  const char *q = rpc_arg_str(params, 0);
  if (q && mly_queue_info_get(h->rt, q, &qi) < 0) {
    /* tasks of a queue not declared here: shown, with why they wait */
    mly_value *list = mly_value_array(), *tasks = mly_value_array();
    undeclared u = {h->rt, q, list, tasks};
    mly_task_foreach(h->rt, NULL, MLY_TASKS_ALL, undeclared_one, &u);
    if (mly_value_len(list) == 1) {
      mly_value *m = mly_value_copy(mly_array_at(list, 0));
      mly_value_free(list);
      mly_map_set(m, "tasks", tasks);
      return rpc_reply(call, m);
    }
    mly_value_free(list);
    mly_value_free(tasks);
  }
  q = queue_arg(call, h, params, &qi);
  if (q == NULL) return;
  mly_value *m = mly_value_map(), *tasks = mly_value_array();
  queue_put_info(m, &qi, true);
  mly_map_set(m, "declared", mly_value_bool(true));
  mly_task_foreach(h->rt, q, MLY_TASKS_ALL, queue_put_task, tasks);
  mly_map_set(m, "tasks", tasks);
  rpc_reply(call, m);
}

static void m_pause(rpc_call *call, const mly_value *params, void *ud) {
  fsm_host *h = ud;
  mly_queue_info qi;
  const char *q = queue_arg(call, h, params, &qi);
  if (q == NULL) return;
  bool pause = strcmp(rpc_call_method(call), "queue.pause") == 0;
  int rc = pause ? mly_queue_pause(h->rt, q) : mly_queue_resume(h->rt, q);
  if (rc < 0) return rpc_fail(call, "%s", mly_strerror(rc));
  rpc_reply(call, NULL);
}

static void m_purge(rpc_call *call, const mly_value *params, void *ud) {
  fsm_host *h = ud;
  mly_queue_info qi;
  const char *q = queue_arg(call, h, params, &qi);
  if (q == NULL) return;
  size_t n = 0;
  int rc = mly_queue_purge(h->rt, q, &n);
  if (rc < 0) return rpc_fail(call, "%s", mly_strerror(rc));
  mly_value *m = mly_value_map();
  mly_map_set_uint(m, "deleted", n);
  rpc_reply(call, m);
}

static int task_id(rpc_call *call, const mly_value *params, mly_id *id) {
  uint64_t u;
  const mly_value *v = mly_array_at(params, 0);
  if (v == NULL || mly_value_get_uint(v, &u) < 0 || u == 0) {
    rpc_fail(call, "a task id is needed (a positive integer)");
    return -1;
  }
  *id = (mly_id)u;
  return 0;
}

static void m_task(rpc_call *call, const mly_value *params, void *ud) {
  fsm_host *h = ud;
  mly_id id;
  if (task_id(call, params, &id) < 0) return;
  bool retry = strcmp(rpc_call_method(call), "queue.retry") == 0;
  int rc = retry ? mly_task_retry(h->rt, id, NULL) : mly_task_delete(h->rt, id);
  if (rc == MLY_ESRCH) return rpc_fail(call, "no such task %llu",
                                       (unsigned long long)id);
  if (rc == MLY_EINVAL && retry)
    return rpc_fail(call, "task %llu is not a dead letter",
                    (unsigned long long)id);
  if (rc < 0) return rpc_fail(call, "%s", mly_strerror(rc));
  rpc_reply(call, NULL);
}

static void m_add(rpc_call *call, const mly_value *params, void *ud) {
  fsm_host *h = ud;
  const char *q = rpc_arg_str(params, 0), *fn = rpc_arg_str(params, 1),
             *name = rpc_arg_str(params, 2);
  const mly_value *p = mly_array_at(params, 3);
  if (q == NULL || fn == NULL)
    return rpc_fail(call, "add wants [QUEUE, FUNCTION, NAME|nil, "
                    "PAYLOAD|nil]");
  mly_id id = 0;
  mly_name_info ex;
  memset(&ex, 0, sizeof ex);
  mly_task_opts o = {.queue = q, .name = name, .id_out = &id,
                     .exists = &ex};
  mly_value *pl = p && mly_value_type(p) != MLY_V_NIL ? mly_value_copy(p)
                                                       : NULL;
  int rc = mly_defer(h->rt, fn, pl, &o);
  char why[512];
  if (rc < 0)
    return rpc_fail(call, "%s", queue_add_refusal(h->rt, rc, q, fn, name, &ex,
                                                  why, sizeof why));
  mly_value *m = mly_value_map();
  mly_map_set_uint(m, "id", id);
  rpc_reply(call, m);
}

/* Why mly_defer refused an add, the same sentence online and offline. */
const char *queue_add_refusal(mly_runtime *rt, int rc, const char *q,
                              const char *fn, const char *name,
                              const mly_name_info *ex, char *buf,
                              size_t len) {
  mly_queue_def d;
  const char *n = name ? name : "";
  char shown[MLY_ESC_MAX(64) + 1];
  mly_esc_str(n, strnlen(n, 64), shown, sizeof shown);
  if (rc == MLY_EEXIST && ex->state != MLY_NAME_ENDED)
    snprintf(buf, len, "task '%s' is already queued", shown);
  else if (rc == MLY_EEXIST)
    snprintf(buf, len, "task '%s' %s (its tombstone holds the name within "
             "the retention window)", shown,
             ex->status == 0             ? "is already done"
             : ex->status == MLY_ECANCELED ? "was deleted"
                                           : "already ran and failed");
  else if (rc == MLY_ENOENT && mly_queue_def_get(rt, q, &d) < 0)
    snprintf(buf, len, "no queue '%.64s' in this host (its queues are "
             "those of its files' queues: and default)", q);
  else if (rc == MLY_ENOENT)
    snprintf(buf, len, "no function '%.64s' registered in this host "
             "(mly_defer_register it in the --actions library)", fn);
  else if (rc == MLY_EINVAL && name && *name == '\0')
    snprintf(buf, len, "the task name is empty: give 1 or more bytes, or "
             "no --name");
  else if (rc == MLY_EINVAL && name && strchr(name, '/'))
    snprintf(buf, len, "task name '%s': it has a '/'; a task name has no "
             "'/', space or control character", shown);
  else if (rc == MLY_EINVAL && name &&
           strpbrk(name, " \t\n\r\v\f\x7f"))
    snprintf(buf, len, "task name '%s': it has a space or a control "
             "character (a newline, a tab); a task name has none", shown);
  else if (rc == MLY_EINVAL && name) {
    bool ctl = false;
    for (const char *s = name; *s; s++) ctl = ctl || (unsigned char)*s < 0x20;
    if (ctl)
      snprintf(buf, len, "task name '%s': it has a control character; a "
               "task name has none", shown);
    else
      snprintf(buf, len, "task name '%s': too long (with its queue's name, "
               "\"task:QUEUE:NAME\" is at most %d bytes)", shown,
               MLY_INSTANCE_NAME_MAX);
  } else
    snprintf(buf, len, "%s", mly_strerror(rc));
  return buf;
}

const rpc_method queue_methods[] = {
    {"queue.ls", m_ls},         {"queue.show", m_show},
    {"queue.add", m_add},       {"queue.retry", m_task},
    {"queue.delete", m_task},   {"queue.purge", m_purge},
    {"queue.pause", m_pause},   {"queue.resume", m_pause}};
const size_t queue_nmethods = sizeof queue_methods / sizeof queue_methods[0];
