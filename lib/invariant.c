/*
 * invariant.c - the runtime's invariants, checked whole.
 *
 * internal.h states what the scheduler relies on: an instance is in one
 * place at a time (the ready queue, the timer heap, or only waiting), the
 * heap is a heap whose entries and instances point at each other, and
 * the uv timer is armed for the earliest deadline (or stopped), what has
 * ended (an instance, a process's owner) holds nothing, and no reply
 * waits in an inbox where no wait can take it, and contexts and names
 * (context.h) are held by exactly the instances marked for them.  machine.c
 * and timer_heap.c assert the O(1) part where it changes; rt_check walks
 * everything, in O(instances), for tests that drive random sequences of
 * waits, timeouts, kills and shutdowns and check after every operation.
 * It is called between loop callbacks, never inside a step.
 */
#include "context.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int fail(char *err, size_t len, const char *fmt, ...) {
  if (err != NULL && len > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
  }
  return MLY_EBADMSG;
}

/* Walks one queue; marks each member in seen[] (a second visit is an
 * error: an instance queued twice, or a cycle). */
static int check_queue(const mly_runtime *rt, const mly_inst *head,
                       const mly_inst *tail, uint8_t *seen, uint32_t *count,
                       char *err, size_t len) {
  const mly_inst *last = NULL;
  for (const mly_inst *m = head; m != NULL;) {
    uint32_t s = (uint32_t)m->id;
    if (s >= rt->nslots || rt->slots[s] != m)
      return fail(err, len, "queue: a member is not a live instance");
    if (seen[s]++)
      return fail(err, len, "queue: %" PRIx64 " is queued twice", m->id);
    if (!(m->head.flags & F_QUEUED))
      return fail(err, len, "queue: %" PRIx64 " lacks F_QUEUED", m->id);
    (*count)++;
    last = m;
    m = m->rnext == NO_NEXT ? NULL : rt->slots[m->rnext];
  }
  if (last != tail) return fail(err, len, "queue: tail is not the last member");
  return 0;
}

static int check_heap(const mly_runtime *rt, char *err, size_t len) {
  const mly_heap *h = &rt->heap;
  for (uint32_t i = 0; i < h->n; i++) {
    uint32_t s = h->v[i].slot;
    const mly_inst *m = s < rt->nslots ? rt->slots[s] : NULL;
    if (m == NULL) return fail(err, len, "heap[%" PRIu32 "]: no instance", i);
    if (m->heap_idx != i)
      return fail(err, len, "heap[%" PRIu32 "]: %" PRIx64 " says %" PRIu32, i,
                  m->id, m->heap_idx);
    if (i > 0 && h->v[(i - 1) / 2].due_us > h->v[i].due_us)
      return fail(err, len, "heap[%" PRIu32 "]: earlier than its parent", i);
  }
  if (rt->closing) return 0;
  if (h->n == 0 && (rt->timer_due != 0 || uv_is_active((uv_handle_t *)&rt->timer)))
    return fail(err, len, "timer armed with an empty heap");
  if (h->n > 0 && (rt->timer_due != h->v[0].due_us ||
                   !uv_is_active((uv_handle_t *)&rt->timer)))
    return fail(err, len, "timer not armed for the earliest deadline");
  if (uv_has_ref((uv_handle_t *)&rt->timer))
    return fail(err, len, "the timer holds the loop");
  return 0;
}

static int check_inst(const mly_runtime *rt, const mly_inst *m,
                      const uint8_t *seen, char *err, size_t len) {
  uint32_t s = (uint32_t)m->id;
  bool queued = (m->head.flags & F_QUEUED) != 0;
  bool in_heap = m->heap_idx != NO_HEAP;
  if (queued != (seen[s] != 0))
    return fail(err, len, "%" PRIx64 ": F_QUEUED %d but in a queue %d", m->id,
                queued, seen[s] != 0);
  if (in_heap && (m->heap_idx >= rt->heap.n || rt->heap.v[m->heap_idx].slot != s))
    return fail(err, len, "%" PRIx64 ": heap_idx points elsewhere", m->id);
  if (queued && in_heap)
    return fail(err, len, "%" PRIx64 ": queued and in the timer heap", m->id);
  if ((m->dflags & D_WAKE) && (queued || in_heap))
    return fail(err, len, "%" PRIx64 ": pending wake while queued or timed", m->id);
  if ((m->head.flags & F_ENDING) && in_heap)
    return fail(err, len, "%" PRIx64 ": ending with a timer", m->id);
  if (m->head.wait == W_TURN && !queued && !(m->dflags & D_WAKE))
    return fail(err, len, "%" PRIx64 ": yielded for a turn, not queued", m->id);
  if (m->head.wait == W_SLEEP && !queued && !in_heap &&
      !(m->dflags & D_WAKE) && m->head.woke != WOKE_ERROR)
    return fail(err, len, "%" PRIx64 ": asleep without a timer", m->id);
  if (m->inbox != NULL) { /* a reply only its own request's wait can take */
    const mly_event *e = m->inbox;
    do {
      e = e->next;
      if ((e->flags & MLY_EVF_REPLY) &&
          !(m->head.wait == W_REPLY && e->corr == m->wait_arg))
        return fail(err, len, "%" PRIx64 ": a reply no wait can take", m->id);
    } while (e != m->inbox);
  }
  for (const mly_inst *c = m->child; c != NULL; c = c->sib_next) {
    if (c->parent != m)
      return fail(err, len, "%" PRIx64 ": a child with another parent", m->id);
    if (c->sib_next && c->sib_next->sib_prev != c)
      return fail(err, len, "%" PRIx64 ": sibling links disagree", m->id);
  }
  return 0;
}

int rt_check(const mly_runtime *rt, char *err, size_t len) {
  if (rt->running != NULL) return fail(err, len, "called inside a step");
  uint8_t *seen = calloc(rt->nslots ? rt->nslots : 1, 1);
  if (seen == NULL) return MLY_ENOMEM;
  uint32_t queued = 0;
  int rc = check_queue(rt, rt->ready_head, rt->ready_tail, seen, &queued, err, len);
  if (rc == 0)
    rc = check_queue(rt, rt->later_head, rt->later_tail, seen, &queued, err, len);
  if (rc == 0) rc = check_heap(rt, err, len);
  uint64_t live = 0;
  for (uint32_t s = 0; s < rt->nslots && rc == 0; s++) {
    const mly_inst *m = rt->slots[s];
    if (m == NULL) continue;
    live++;
    rc = check_inst(rt, m, seen, err, len);
  }
  free(seen);
  if (rc == 0 && live != rt->st.live)
    rc = fail(err, len, "%" PRIu64 " instances, stats say %" PRIu64, live,
              rt->st.live);
  if (rc == 0 && (rc = proc_check(rt)) < 0)
    rc = fail(err, len, rc == MLY_EBUSY
                            ? "a process whose owner ended holds the loop"
                            : "a process owned by an instance that is gone");
  const char *why = rc == 0 ? ext_check(rt) : NULL;
  if (why) rc = fail(err, len, "%s", why);
  /* ... except a stopping one, until it has taken what was posted */
  if (rc == 0 && !rt->closing && live == 0 &&
      uv_has_ref((const uv_handle_t *)&rt->post.async) &&
      !(rt->stopping && !rt->stopped && post_pending(rt)))
    rc = fail(err, len, "an empty runtime holds the loop");
  return rc;
}
