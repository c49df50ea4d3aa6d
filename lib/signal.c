/*
 * signal.c - Unix signals as events.
 *
 * A machine that watches a signal receives MLY_EV_SIGNAL(signum) like any
 * other event, so waiting for SIGTERM is an ordinary MLY_AWAIT.  One
 * uv_signal_t per signal number serves every watcher in the runtime; it is
 * stopped (restoring the default disposition) when its last watcher goes,
 * and unreferenced so that it never keeps the loop alive by itself.
 */
#include "internal.h"

#include <signal.h>
#include <stdlib.h>

static sig_watch *find(mly_runtime *rt, int signum) {
  for (uint32_t i = 0; i < rt->nsigs; i++)
    if (rt->sigs[i]->signum == signum) return rt->sigs[i];
  return NULL;
}

static void sig_cb(uv_signal_t *h, int signum) {
  sig_watch *w = h->data;
  mly_runtime *rt = w->rt;
  for (uint32_t i = 0; i < w->n; i++) {
    mly_event *e = NULL;
    mly_inst *m = inst_get(rt, w->ids[i]);
    if (m == NULL || (e = ev_new(rt)) == NULL) continue;
    e->id = MLY_EV_SIGNAL(signum);
    e->status = signum;
    ev_deliver(rt, m, e);
  }
}

static sig_watch *watch_new(mly_runtime *rt, int signum) {
  sig_watch **v = realloc(rt->sigs, (rt->nsigs + 1) * sizeof *v);
  if (v == NULL) return NULL;
  rt->sigs = v;
  sig_watch *w = calloc(1, sizeof *w);
  if (w == NULL) return NULL;
  if (uv_signal_init(rt->loop, &w->handle) < 0) {
    free(w);
    return NULL;
  }
  w->handle.data = w;
  w->rt = rt;
  w->signum = signum;
  uv_unref((uv_handle_t *)&w->handle);
  rt->open_handles++;
  rt->sigs[rt->nsigs++] = w;
  return w;
}

int mly_signal_watch(mly_machine *mm, int signum) {
  mly_inst *m = INST(mm);
  mly_runtime *rt = m->type->rt;
  if (signum <= 0 || signum >= 65 || signum == SIGKILL || signum == SIGSTOP)
    return MLY_EINVAL;
  sig_watch *w = find(rt, signum);
  if (w == NULL && (w = watch_new(rt, signum)) == NULL) return MLY_ENOMEM;
  for (uint32_t i = 0; i < w->n; i++)
    if (w->ids[i] == m->id) return 0;
  if (w->n == w->cap) {
    uint32_t cap = w->cap ? w->cap * 2 : 4;
    mly_id *ids = realloc(w->ids, cap * sizeof *ids);
    if (ids == NULL) return MLY_ENOMEM;
    w->ids = ids;
    w->cap = cap;
  }
  if (w->n == 0) {
    int rc = uv_signal_start(&w->handle, sig_cb, signum);
    if (rc < 0) return rc;
  }
  w->ids[w->n++] = m->id;
  return 0;
}

static void unwatch(sig_watch *w, mly_id id) {
  for (uint32_t i = 0; i < w->n; i++) {
    if (w->ids[i] != id) continue;
    w->ids[i] = w->ids[--w->n];
    if (w->n == 0) uv_signal_stop(&w->handle);
    return;
  }
}

int mly_signal_unwatch(mly_machine *mm, int signum) {
  mly_inst *m = INST(mm);
  sig_watch *w = find(m->type->rt, signum);
  if (w == NULL) return MLY_ENOENT;
  unwatch(w, m->id);
  return 0;
}

void sig_forget(mly_runtime *rt, mly_id id) {
  for (uint32_t i = 0; i < rt->nsigs; i++) unwatch(rt->sigs[i], id);
}

static void sig_closed(uv_handle_t *h) {
  sig_watch *w = h->data;
  mly_runtime *rt = w->rt;
  free(w->ids);
  free(w);
  rt_release(rt);
}

void sig_close_all(mly_runtime *rt) {
  for (uint32_t i = 0; i < rt->nsigs; i++)
    uv_close((uv_handle_t *)&rt->sigs[i]->handle, sig_closed);
  rt->nsigs = 0;
}
