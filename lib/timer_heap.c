/*
 * timer_heap.c - the deadlines of sleeping machines (decision D6).
 *
 * One binary min-heap per runtime holds every machine that has a timer;
 * the runtime keeps a single uv_timer_t armed for the earliest entry.  A
 * sleeping machine costs one 16-byte entry here and no libuv handle.
 *
 * Deadlines are monotonic microseconds; ties fire in insertion order (a
 * 32-bit counter compared modulo 2^32, so it may wrap).  Entries name
 * their instance by slot, and each instance remembers its index
 * (heap_idx), so removing one that an event woke early is O(log n): a
 * timer that lost the race never fires.
 *
 * Whoever changes the earliest deadline keeps the runtime's uv timer in
 * step (internal.h): heap_push's callers arm it for an earlier deadline,
 * and heap_remove re-arms or stops it when the root goes.  A timer left
 * armed for a machine that was killed, ended or suspended would hold the
 * loop, or wake it, for nothing.
 */
#include "internal.h"

#include <assert.h>
#include <stdlib.h>

static bool before(const heap_ent *a, const heap_ent *b) {
  if (a->due_us != b->due_us) return a->due_us < b->due_us;
  return (int32_t)(a->seq - b->seq) < 0;
}

static void heap_set(mly_heap *h, uint32_t i, heap_ent e) {
  h->v[i] = e;
  h->slots[e.slot]->heap_idx = i;
}

static void sift_up(mly_heap *h, uint32_t i) {
  heap_ent e = h->v[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!before(&e, &h->v[p])) break;
    heap_set(h, i, h->v[p]);
    i = p;
  }
  heap_set(h, i, e);
}

static void sift_down(mly_heap *h, uint32_t i) {
  heap_ent e = h->v[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c])) c++;
    if (!before(&h->v[c], &e)) break;
    heap_set(h, i, h->v[c]);
    i = c;
  }
  heap_set(h, i, e);
}

int heap_push(mly_runtime *rt, mly_inst *m, uint64_t due_us) {
  mly_heap *h = &rt->heap;
  /* one place at a time: not queued, not in the heap already */
  assert(m->heap_idx == NO_HEAP && !(m->head.flags & F_QUEUED));
  if (h->n == h->cap) {
    uint32_t cap = h->cap ? h->cap * 2 : 64;
    heap_ent *v = realloc(h->v, (size_t)cap * sizeof *v);
    if (v == NULL) return MLY_ENOMEM;
    rt_bytes(rt, (ptrdiff_t)(cap - h->cap) * (ptrdiff_t)sizeof *v);
    h->v = v;
    h->cap = cap;
  }
  heap_ent e = {due_us, h->seq++, (uint32_t)m->id};
  h->v[h->n] = e;
  m->heap_idx = h->n++;
  sift_up(h, m->heap_idx);
  return 0;
}

void heap_remove(mly_runtime *rt, mly_inst *m) {
  mly_heap *h = &rt->heap;
  uint32_t i = m->heap_idx;
  if (i == NO_HEAP) return;
  assert(i < h->n && h->v[i].slot == (uint32_t)m->id);
  m->heap_idx = NO_HEAP;
  if (--h->n != i) {
    heap_ent last = h->v[h->n];
    heap_set(h, i, last);
    if (i > 0 && before(&last, &h->v[(i - 1) / 2]))
      sift_up(h, i);
    else
      sift_down(h, i);
  }
  if (i == 0) rt_deadline_changed(rt);
}

void heap_free(mly_heap *h) {
  free(h->v);
  h->v = NULL;
  h->n = h->cap = 0;
}
