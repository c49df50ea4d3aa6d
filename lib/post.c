/*
 * post.c - events from other threads (decision D5).
 *
 * mly_post is the one entry any thread may call.  Posted events go on a
 * mutex-protected FIFO and an uv_async_t wakes the loop, which takes a
 * slice of the list at once (one lock per slice, not per event) and
 * delivers it in order.  uv_async_send coalesces, so a burst of posts
 * costs the loop one wakeup.  Whether the target is alive is only known on
 * the loop thread: a post to an instance that has ended is dropped and
 * counted.
 *
 * Bounded both ways: the FIFO holds at most post.max events (a post past
 * it is refused with MLY_EAGAIN, so a flood costs the poster, not the
 * runtime's memory), and one wakeup delivers at most step_budget of them
 * and then wakes the loop again, so the host's handles and timers get
 * their turn in between.  Once the runtime is stopping, posts are refused
 * with MLY_ESHUTDOWN: nothing is buffered that nobody will take.
 *
 * Every accepted post is accounted for: stats.posted counts it when the
 * loop takes it, and it is then delivered to an inbox or counted
 * undeliverable.  A stopping runtime keeps the loop up until what was
 * accepted before mly_runtime_shutdown has been taken (runtime.c,
 * rt_maybe_stop); what mly_runtime_close finds still queued is counted
 * undeliverable as it is freed.
 */
#include "internal.h"
#include "journal.h"

#include <stdlib.h>

/* Detach the first `max` posted events; *more says whether any are left. */
static mly_event *take_slice(mly_post_q *q, uint32_t max, bool *more) {
  uv_mutex_lock(&q->lock);
  mly_event *head = q->head, *last = NULL;
  uint32_t n = 0;
  for (mly_event *e = head; e != NULL && n < max; e = e->next, n++) last = e;
  if (last != NULL) {
    q->head = last->next;
    if (q->head == NULL) q->tail = NULL;
    last->next = NULL;
    q->n -= n;
  }
  *more = q->head != NULL;
  uv_mutex_unlock(&q->lock);
  return last != NULL ? head : NULL;
}

static void async_cb(uv_async_t *h) {
  mly_runtime *rt = h->data;
  bool more = false;
  mly_event *e = take_slice(&rt->post, rt->opt.step_budget, &more);
  if (more) uv_async_send(&rt->post.async); /* the rest on the next turn */
  rt->in_cb = true; /* wakes may take heap roots: re-arm once, below */
  while (e != NULL) {
    mly_event *next = e->next;
    e->next = NULL;
    rt->st.posted++;
    rt_bytes(rt, (ptrdiff_t)sizeof *e); /* it joins the runtime's pool */
    if (e->flags & EVF_DURABLE_POST) { /* recorded before it is delivered */
      durable_post(rt, e);
      e = next;
      continue;
    }
    mly_inst *to = inst_get(rt, e->corr);
    e->corr = 0;
    if (to == NULL) {
      rt->st.undeliverable++;
      ev_free(rt, e);
    } else {
      ev_deliver(rt, to, e);
    }
    e = next;
  }
  rt->in_cb = false;
  rt_arm_timer(rt);
  if (rt->stopping && rt->st.live == 0) rt_maybe_stop(rt); /* drained? */
}

bool post_pending(const mly_runtime *rt) {
  uv_mutex_t *lock = (uv_mutex_t *)&rt->post.lock; /* only the lock moves */
  uv_mutex_lock(lock);
  bool any = rt->post.head != NULL;
  uv_mutex_unlock(lock);
  return any;
}

int post_init(mly_runtime *rt) {
  int rc = uv_mutex_init(&rt->post.lock);
  if (rc < 0) return rc;
  rc = uv_async_init(rt->loop, &rt->post.async, async_cb);
  if (rc < 0) {
    uv_mutex_destroy(&rt->post.lock);
    return rc;
  }
  rt->post.async.data = rt;
  rt->post.max = rt->opt.post_queue_max ? rt->opt.post_queue_max
                                        : MLY_DEFAULT_POST_QUEUE;
  uv_unref((uv_handle_t *)&rt->post.async);
  return 0;
}

void post_stop(mly_runtime *rt) {
  uv_mutex_lock(&rt->post.lock);
  rt->post.stopping = true;
  uv_mutex_unlock(&rt->post.lock);
}

/* Refuse further posts and drop what was posted but not delivered. */
void post_close(mly_runtime *rt) {
  uv_mutex_lock(&rt->post.lock);
  rt->post.closed = true;
  mly_event *e = rt->post.head;
  rt->post.head = rt->post.tail = NULL;
  rt->post.n = 0;
  uv_mutex_unlock(&rt->post.lock);
  while (e != NULL) {
    mly_event *next = e->next;
    rt->st.posted++; /* accepted: taken now, and its target is gone */
    rt->st.undeliverable++;
    if (e->flags & EVF_DURABLE_POST) {
      post_cb_box *box = (post_cb_box *)(intptr_t)e->status;
      if (box->cb) box->cb(rt, MLY_ESHUTDOWN, box->arg);
      free(box);
    }
    mly_value_free(e->payload);
    free(e);
    e = next;
  }
}

static int post(mly_runtime *rt, mly_id to, uint32_t id, mly_value *payload,
                post_cb_box *box) {
  if (id == MLY_EV_ANY) {
    mly_value_free(payload);
    free(box);
    return MLY_EINVAL;
  }
  mly_event *e = malloc(sizeof *e);
  if (e == NULL) {
    mly_value_free(payload);
    free(box);
    return MLY_ENOMEM;
  }
  /* corr carries the target until the loop thread delivers it, and a
   * durable post's callback rides in status */
  *e = (mly_event){.id = id, .corr = to, .payload = payload};
  if (box) {
    e->flags = EVF_DURABLE_POST;
    e->status = (int64_t)(intptr_t)box;
  }
  uv_mutex_lock(&rt->post.lock);
  int rc = rt->post.closed || rt->post.stopping ? MLY_ESHUTDOWN
           : rt->post.n >= rt->post.max        ? MLY_EAGAIN
                                               : 0;
  if (rc < 0) {
    uv_mutex_unlock(&rt->post.lock);
    mly_value_free(payload);
    free(box);
    free(e);
    return rc;
  }
  if (rt->post.tail) rt->post.tail->next = e;
  else rt->post.head = e;
  rt->post.tail = e;
  rt->post.n++;
  /* inside the lock: post_close cannot close the handle in between */
  uv_async_send(&rt->post.async);
  uv_mutex_unlock(&rt->post.lock);
  return 0;
}

int mly_post(mly_runtime *rt, mly_id to, uint32_t id, mly_value *payload) {
  return post(rt, to, id, payload, NULL);
}

int mly_post_durable(mly_runtime *rt, mly_id to, uint32_t id,
                     mly_value *payload, mly_post_cb cb, void *arg) {
  int rc = value_fits(payload, JR_VALUE_MAX); /* it goes into a record */
  if (rc < 0) {
    mly_value_free(payload);
    return rc;
  }
  post_cb_box *box = malloc(sizeof *box);
  if (box == NULL) {
    mly_value_free(payload);
    return MLY_ENOMEM;
  }
  box->cb = cb;
  box->arg = arg;
  return post(rt, to, id, payload, box);
}
