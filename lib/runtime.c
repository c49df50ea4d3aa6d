/*
 * runtime.c - the loop host: one runtime per loop thread.
 *
 * A runtime lives on a uv_loop_t that the host passes in, or on a loop of
 * its own.  It adds no thread and takes nothing over.  It owns:
 *   - an idle handle, active only while machines are ready to run; each
 *     loop turn it runs at most step_budget steps, so a busy machine never
 *     starves the host's I/O (libuv polls without blocking while an idle
 *     handle is active);
 *   - one timer handle over the deadline heap (D6), kept armed for the
 *     earliest deadline whenever it changes (a wait, a wake, a kill, an
 *     end, a suspension) and stopped when there is none, so an idle
 *     runtime causes no wakeups at all.  It is unreferenced: only the
 *     async handle below says whether the runtime holds the loop;
 *   - an async handle for mly_post (post.c), referenced while any
 *     instance lives: live machines keep the loop alive, an empty runtime
 *     does not;
 *   - a grace timer for mly_runtime_shutdown.
 * Memory is released from the handles' close callbacks, as libuv requires.
 */
#include "context.h"

#include <stdlib.h>
#include <string.h>

bool rt_on_loop_thread(const mly_runtime *rt) {
  uv_thread_t self = uv_thread_self();
  return uv_thread_equal(&self, &rt->owner) != 0;
}

bool mly_runtime_on_loop_thread(const mly_runtime *rt) {
  return rt_on_loop_thread(rt);
}

bool mly_runtime_durable(const mly_runtime *rt) { return rt->dur != NULL; }

void rt_bytes(mly_runtime *rt, ptrdiff_t delta) {
  rt->st.bytes = (uint64_t)((ptrdiff_t)rt->st.bytes + delta);
}

static void close_now(mly_runtime *rt);

static void idle_cb(uv_idle_t *h) {
  mly_runtime *rt = h->data;
  bool paused = durable_paused(rt);
  rt->in_cb = true;
  if (!paused) inst_run_batch(rt, rt->opt.step_budget);
  if (rt->dur) durable_flush(rt); /* group commit: one batch, one sync */
  rt->in_cb = false;
  if (rt->close_pending) {
    close_now(rt);
    return;
  }
  rt_arm_timer(rt);
  if (rt->ready_head == NULL || paused) { /* paused: the commit restarts it */
    uv_idle_stop(&rt->idle);
    rt->idle_on = false;
  }
}

void rt_schedule(mly_runtime *rt) {
  if (rt->idle_on || rt->closing) return;
  uv_idle_start(&rt->idle, idle_cb);
  rt->idle_on = true;
}

static void timer_cb(uv_timer_t *h) {
  mly_runtime *rt = h->data;
  uint64_t now = rt_now_us();
  rt->timer_due = 0;
  rt->in_cb = true;
  while (rt->heap.n > 0 && rt->heap.v[0].due_us <= now) {
    mly_inst *m = rt->slots[rt->heap.v[0].slot];
    heap_remove(rt, m);
    inst_timer_fired(m);
  }
  rt->in_cb = false;
  rt_arm_timer(rt);
}

void rt_deadline_changed(mly_runtime *rt) {
  if (!rt->in_cb) rt_arm_timer(rt);
}

void rt_arm_timer(mly_runtime *rt) {
  if (rt->closing) return;
  if (rt->heap.n == 0) {
    if (rt->timer_due != 0) uv_timer_stop(&rt->timer);
    rt->timer_due = 0;
    return;
  }
  uint64_t due = rt->heap.v[0].due_us;
  if (due == rt->timer_due) return;
  uint64_t now = rt_now_us();
  rt->timer_due = due;
  /* libuv counts whole milliseconds: round up, and timer_cb re-arms if
   * it is woken a little before the deadline */
  uv_timer_start(&rt->timer, timer_cb, due > now ? (due - now + 999) / 1000 : 0, 0);
}

void rt_maybe_stop(mly_runtime *rt) {
  if (rt->st.live > 0) return;
  if (rt->stopping && !rt->stopped && !rt->closing && post_pending(rt)) {
    /* posts accepted before the shutdown are taken first (delivered or
     * counted, post.c): the async handle holds the loop until then */
    uv_ref((uv_handle_t *)&rt->post.async);
    uv_async_send(&rt->post.async);
    return;
  }
  if (!rt->closing) uv_unref((uv_handle_t *)&rt->post.async);
  if (rt->stopping && !rt->stopped) {
    rt->stopped = true;
    if (!rt->closing) uv_timer_stop(&rt->grace);
    if (rt->opt.on_stop) rt->opt.on_stop(rt, rt->opt.arg);
  }
}

/* Live instances keep the loop alive; see the file comment. */
void rt_keep_alive(mly_runtime *rt) {
  if (rt->st.live > 0 && !rt->closing) uv_ref((uv_handle_t *)&rt->post.async);
}

void rt_handle_closed(uv_handle_t *h) { rt_release(h->data); }

/* One of the runtime's handles has closed; the last one frees it. */
void rt_release(mly_runtime *rt) {
  if (--rt->open_handles > 0) return;
  if (rt->owns_loop) return; /* mly_runtime_close frees it after the loop */
  inst_free_pools(rt);
  ext_free_all(rt);
  names_free(rt);
  for (uint32_t i = rt->nattached; i-- > 0;) /* newest first */
    if (rt->attached[i].release) rt->attached[i].release(rt->attached[i].ptr);
  for (mly_type *t = rt->types; t != NULL;) {
    mly_type *n = t->next;
    free(t);
    t = n;
  }
  free(rt->slots);
  free(rt->gens);
  free(rt->free_slots);
  slots_lent_free(rt);
  free(rt->kills);
  free(rt->sigs);
  free(rt->msrc);
  heap_free(&rt->heap);
  intern_free(&rt->intern);
  ev_free_all(rt);
  uv_mutex_destroy(&rt->post.lock);
  free(rt);
}

int mly_runtime_new(mly_runtime **out, uv_loop_t *loop,
                    const mly_runtime_options *opt) {
  if (out == NULL) return MLY_EINVAL;
  *out = NULL;
  mly_runtime *rt = calloc(1, sizeof *rt);
  if (rt == NULL) return MLY_ENOMEM;
  rt->st.bytes = sizeof *rt;
  if (opt) rt->opt = *opt;
  if (rt->opt.step_budget == 0) rt->opt.step_budget = MLY_DEFAULT_STEP_BUDGET;
  rt->owner = uv_thread_self();
  if (loop == NULL) {
    int rc = uv_loop_init(&rt->own_loop);
    if (rc < 0) {
      free(rt);
      return rc;
    }
    loop = &rt->own_loop;
    rt->owns_loop = true;
  }
  rt->loop = loop;
  int rc = post_init(rt);
  if (rc < 0) {
    if (rt->owns_loop) uv_loop_close(&rt->own_loop);
    free(rt);
    return rc;
  }
  uv_idle_init(loop, &rt->idle);
  uv_timer_init(loop, &rt->timer);
  uv_unref((uv_handle_t *)&rt->timer); /* live instances hold the loop */
  uv_timer_init(loop, &rt->grace);
  uv_unref((uv_handle_t *)&rt->grace);
  rt->idle.data = rt->timer.data = rt->grace.data = rt;
  rt->open_handles = 4; /* async, idle, timer, grace */
  *out = rt;
  return 0;
}

uv_loop_t *mly_runtime_loop(mly_runtime *rt) { return rt->loop; }

int mly_runtime_run(mly_runtime *rt) {
  if (!rt->owns_loop) return MLY_EINVAL;
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  rt_keep_alive(rt);
  return uv_run(rt->loop, UV_RUN_DEFAULT) < 0 ? MLY_EIO : 0;
}

static void force_all(mly_runtime *rt) {
  if (rt->running == NULL) {
    inst_kill_all(rt);
    return;
  }
  for (uint32_t s = rt->nslots; s-- > 0;) {
    mly_inst *m = rt->slots[s];
    if (m != NULL && m->parent == NULL) inst_kill(m);
  }
}

static void grace_cb(uv_timer_t *h) { force_all(h->data); }

int mly_runtime_shutdown(mly_runtime *rt, int64_t grace_ms) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (rt->stopped || rt->closing) return 0;
  if (rt->stopping) { /* the second request ends what is left */
    force_all(rt);
    return 0;
  }
  rt->stopping = true;
  post_stop(rt); /* nothing is buffered that nobody will take */
  if (rt->dur) durable_suspend_all(rt); /* they continue on the next open */
  for (uint32_t s = rt->nslots; s-- > 0;) {
    mly_inst *m = rt->slots[s];
    if (m != NULL && m->parent == NULL) inst_ask_shutdown(m);
  }
  if (grace_ms >= 0) uv_timer_start(&rt->grace, grace_cb, (uint64_t)grace_ms, 0);
  rt_maybe_stop(rt);
  return 0;
}

bool mly_runtime_stopping(const mly_runtime *rt) { return rt->stopping; }

static void close_handle(mly_runtime *rt, uv_handle_t *h) {
  h->data = rt;
  uv_close(h, rt_handle_closed);
}

static void close_now(mly_runtime *rt) {
  rt->closing = true;
  rt->close_pending = false;
  post_close(rt);
  if (rt->dur) durable_suspend_all(rt); /* as a shutdown does: inboxes kept */
  inst_kill_all(rt);
  ev_free(rt, rt->cur);
  rt->cur = NULL;
  if (rt->dur) durable_close(rt); /* writes what it accepted, then closes */
  proc_close_all(rt);
  sig_close_all(rt);
  close_handle(rt, (uv_handle_t *)&rt->idle);
  close_handle(rt, (uv_handle_t *)&rt->timer);
  close_handle(rt, (uv_handle_t *)&rt->grace);
  close_handle(rt, (uv_handle_t *)&rt->post.async);
}

void mly_runtime_close(mly_runtime *rt) {
  if (rt == NULL || rt->closing) return;
  if (rt->running != NULL) { /* from inside a step: after the batch */
    rt->close_pending = true;
    return;
  }
  close_now(rt);
  if (!rt->owns_loop) return;
  uv_run(rt->loop, UV_RUN_DEFAULT);
  uv_loop_close(rt->loop);
  rt->owns_loop = false; /* let the last release below free it */
  rt->open_handles = 1;
  rt_release(rt);
}

/* ---- types ---- */

static bool valid_name(const char *s) {
  if (s == NULL || *s == '\0') return false;
  for (; *s; s++)
    if (!(*s == '_' || *s == '-' || *s == '.' || *s == '/' ||
          (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
          (*s >= 'A' && *s <= 'Z')))
      return false;
  return true;
}

#define MLY_DATA_MAX (1u << 24)

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Yield point names: present, at most MLY_POINT_MAX bytes, no control
 * characters, unique, and the first is "begin" (point 0, where MLY_BEGIN
 * starts): a hand-written list could break any of these, MLY_POINTS
 * cannot.  A durable type
 * must name its points: with no list every wait would be anonymous, and
 * an anonymous wait cannot be resumed after a restart (D1).  Anonymous
 * waits beside named ones are only seen when one is reached: the
 * instance then fails (machine.c). */
static int check_points(const mly_type_def *def) {
  if ((def->flags & MLY_TYPE_DURABLE) && def->npoints < 1) return MLY_EINVAL;
  for (uint32_t i = 0; i < def->npoints; i++) {
    const char *p = def->points[i];
    if (p == NULL || *p == '\0') return MLY_EINVAL;
    if (strlen(p) > MLY_POINT_MAX) return MLY_ENAMETOOLONG;
    if (strncmp(p, "line ", 5) == 0) return MLY_EINVAL; /* that is anonymous */
    if (has_control(p)) return MLY_EINVAL;
  }
  if (def->npoints > 0 && strcmp(def->points[0], "begin") != 0)
    return MLY_EINVAL;
  if (def->npoints < 2) return 0;
  const char **v = malloc(def->npoints * sizeof *v);
  if (v == NULL) return MLY_ENOMEM;
  memcpy(v, def->points, def->npoints * sizeof *v);
  qsort(v, def->npoints, sizeof *v, cmp_str);
  int rc = 0;
  for (uint32_t i = 1; i < def->npoints && rc == 0; i++)
    if (strcmp(v[i - 1], v[i]) == 0) rc = MLY_EEXIST;
  free(v);
  return rc;
}

int mly_type_register(mly_runtime *rt, const mly_type_def *def,
                      mly_type **out) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (def == NULL || def->run == NULL || def->data_size > MLY_DATA_MAX ||
      (def->flags & ~MLY_TYPE_FLAGS_ALL))
    return MLY_EINVAL;
  if (def->name && strlen(def->name) > MLY_NAME_MAX) return MLY_ENAMETOOLONG;
  if (!valid_name(def->name)) return MLY_EINVAL;
  if (def->npoints >= MLY__ANON_BASE || (def->npoints > 0 && !def->points))
    return MLY_EINVAL;
  if (def->min_version > def->version) return MLY_EINVAL;
  int rc = check_points(def);
  if (rc < 0) return rc;
  if (mly_type_find(rt, def->name) != NULL) return MLY_EEXIST;
  mly_type *t = calloc(1, sizeof *t);
  if (t == NULL) return MLY_ENOMEM;
  rt_bytes(rt, (ptrdiff_t)sizeof *t);
  t->def = *def;
  strcpy(t->name, def->name);
  t->def.name = t->name;
  t->rt = rt;
  t->inst_size = (sizeof(mly_inst) + def->data_size + 7) & ~(size_t)7;
  t->next = rt->types;
  rt->types = t;
  if (out) *out = t;
  return 0;
}

mly_type *mly_type_find(mly_runtime *rt, const char *name) {
  if (name == NULL) return NULL;
  for (mly_type *t = rt->types; t != NULL; t = t->next)
    if (strcmp(t->name, name) == 0) return t;
  return NULL;
}

void mly_runtime_stats(const mly_runtime *rt, mly_stats *out) {
  if (out != NULL) *out = rt->st;
}

/* ---- layers above ---- */

int mly_runtime_attach(mly_runtime *rt, const char *key, void *ptr,
                       void (*release)(void *ptr)) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (key == NULL) return MLY_EINVAL;
  if (mly_runtime_attached(rt, key) != NULL) return MLY_EEXIST;
  if (rt->nattached == MLY_ATTACH_MAX) return MLY_ENOSPC;
  rt->attached[rt->nattached].key = key;
  rt->attached[rt->nattached].ptr = ptr;
  rt->attached[rt->nattached].release = release;
  rt->nattached++;
  return 0;
}

void *mly_runtime_attached(const mly_runtime *rt, const char *key) {
  for (uint32_t i = 0; i < rt->nattached; i++) /* a layer passes its own
                                                   constant: no strcmp */
    if (rt->attached[i].key == key) return rt->attached[i].ptr;
  for (uint32_t i = 0; i < rt->nattached; i++)
    if (strcmp(rt->attached[i].key, key) == 0) return rt->attached[i].ptr;
  return NULL;
}
