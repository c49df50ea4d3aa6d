/*
 * timer_heap.c - the deadlines of sleeping machines (decision D6).
 *
 * One binary min-heap per runtime holds every machine that has a timer;
 * the runtime keeps a single uv_timer_t armed for the earliest entry.  A
 * sleeping machine costs one 16-byte entry here and no libuv handle.
 *
 * The key packs the deadline (ms on the loop clock) above a 24-bit
 * insertion counter, so two machines with the same deadline fire in the
 * order they went to sleep.  The counter wraps after 16M insertions; only
 * entries with the same millisecond deadline inserted across a wrap could
 * then fire out of order.  Each instance remembers its own index
 * (heap_idx), so removing one when an event wakes it early is O(log n):
 * a timer that lost the race never fires.
 */
#include "internal.h"

#include <stdlib.h>

static void heap_set(mly_heap *h, uint32_t i, heap_ent e) {
  h->v[i] = e;
  e.inst->heap_idx = i;
}

static void sift_up(mly_heap *h, uint32_t i) {
  heap_ent e = h->v[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (h->v[p].key <= e.key) break;
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
    if (c + 1 < h->n && h->v[c + 1].key < h->v[c].key) c++;
    if (e.key <= h->v[c].key) break;
    heap_set(h, i, h->v[c]);
    i = c;
  }
  heap_set(h, i, e);
}

int heap_push(mly_heap *h, mly_inst *m, uint64_t deadline_ms) {
  if (h->n == h->cap) {
    uint32_t cap = h->cap ? h->cap * 2 : 64;
    heap_ent *v = realloc(h->v, (size_t)cap * sizeof *v);
    if (v == NULL) return MLY_ENOMEM;
    rt_bytes(m->type->rt, (ptrdiff_t)(cap - h->cap) * (ptrdiff_t)sizeof *v);
    h->v = v;
    h->cap = cap;
  }
  uint64_t seq = h->seq++ & ((1u << HEAP_SEQ_BITS) - 1);
  heap_ent e = {(deadline_ms << HEAP_SEQ_BITS) | seq, m};
  h->v[h->n] = e;
  m->heap_idx = h->n++;
  sift_up(h, m->heap_idx);
  return 0;
}

void heap_remove(mly_heap *h, mly_inst *m) {
  uint32_t i = m->heap_idx;
  if (i == NO_HEAP) return;
  m->heap_idx = NO_HEAP;
  if (--h->n == i) return;
  heap_ent last = h->v[h->n];
  heap_set(h, i, last);
  if (i > 0 && h->v[(i - 1) / 2].key > last.key)
    sift_up(h, i);
  else
    sift_down(h, i);
}

void heap_free(mly_heap *h) {
  free(h->v);
  h->v = NULL;
  h->n = h->cap = 0;
}
