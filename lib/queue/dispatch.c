/*
 * dispatch.c - a queue's dispatcher: which due task takes the next slot.
 *
 * Due tasks wait in a binary heap ordered by priority (higher first),
 * then eta (earlier first), then insertion order (seq).  A slot is given
 * (tq_dispatch) while the queue is declared and not paused, holds fewer
 * than max_concurrent slots, its token bucket has a whole token, and the
 * task's concurrency key value holds fewer than concurrency_key_max.  A
 * task stopped only by its key leaves the heap for its key's blocked
 * list, so it never holds back tasks with other keys; the key's next
 * released slot puts its blocked tasks back in the heap.  When only the
 * bucket is short, the clock (clock.c) is asked to come back when the
 * next token is there.  A slot is counted from the grant to the end of
 * the attempt (tq_release_slot), so the limits bound what runs, also
 * between the grant and the task's step that starts the attempt.
 *
 * Everything here is memory: tasks register again at recovery (task.c).
 */
#include "queue.h"

#include <stdlib.h>
#include <string.h>

static bool before(const tq_rec *a, const tq_rec *b) {
  if (a->priority != b->priority) return a->priority > b->priority;
  if (a->eta_ms != b->eta_ms) return a->eta_ms < b->eta_ms;
  return a->seq < b->seq;
}

static void put(tq_queue *q, uint32_t i, tq_rec *r) {
  q->heap[i] = r;
  r->heap_idx = i;
}

static void sift_up(tq_queue *q, uint32_t i) {
  tq_rec *r = q->heap[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!before(r, q->heap[p])) break;
    put(q, i, q->heap[p]);
    i = p;
  }
  put(q, i, r);
}

static void sift_down(tq_queue *q, uint32_t i) {
  tq_rec *r = q->heap[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= q->n) break;
    if (c + 1 < q->n && before(q->heap[c + 1], q->heap[c])) c++;
    if (!before(q->heap[c], r)) break;
    put(q, i, q->heap[c]);
    i = c;
  }
  put(q, i, r);
}

static void heap_del(tq_queue *q, tq_rec *r) {
  uint32_t i = r->heap_idx;
  r->heap_idx = TQ_NO_HEAP;
  tq_rec *last = q->heap[--q->n];
  if (i == q->n) return;
  put(q, i, last);
  sift_up(q, i);
  sift_down(q, last->heap_idx);
}

static int heap_add(tq_queue *q, tq_rec *r) {
  if (q->n == q->cap) {
    uint32_t cap = q->cap ? q->cap * 2 : 64;
    tq_rec **v = realloc(q->heap, cap * sizeof *v);
    if (v == NULL) return MLY_ENOMEM;
    q->heap = v;
    q->cap = cap;
  }
  put(q, q->n++, r);
  sift_up(q, r->heap_idx);
  return 0;
}

static tq_keyc *keyc(tq_queue *q, const char *val) {
  tq_keyc *k = NULL;
  HASH_FIND_STR(q->keys, val, k);
  if (k) return k;
  k = calloc(1, sizeof *k);
  if (k == NULL) return NULL;
  k->val = strdup(val);
  if (k->val == NULL) {
    free(k);
    return NULL;
  }
  HASH_ADD_KEYPTR(hh, q->keys, k->val, strlen(k->val), k);
  return k;
}

/* A key nobody runs or waits on is forgotten: the table is bounded by
 * the tasks that have one, not by every value ever seen. */
static void keyc_trim(tq_queue *q, tq_keyc *k) {
  if (k->running > 0 || k->blocked != NULL) return;
  HASH_DEL(q->keys, k);
  free(k->val);
  free(k);
}

void tq_enqueue(tq_queue *q, tq_rec *r) {
  r->q = q;
  if (heap_add(q, r) < 0) {
    /* no memory for the heap: it stays registered and tries again at
     * its next wake (task.c re-registers a record out of the heap) */
    return;
  }
  tq_dispatch(q);
}

static void refill(tq_queue *q, uint64_t now) {
  if (q->def.rate <= 0) return;
  if (now > q->refill_us) {
    q->tokens += (double)(now - q->refill_us) * q->def.rate / 1e6;
    if (q->tokens > q->def.bucket_size) q->tokens = q->def.bucket_size;
  }
  q->refill_us = now;
}

uint64_t tq_queue_due(tq_queue *q) {
  uint64_t due = 0;
  if (q->run_head && q->run_head->deadline_us) due = q->run_head->deadline_us;
  if (q->def.rate > 0 && q->n > 0 && !q->paused && q->declared &&
      q->running < q->def.max_concurrent && q->tokens < 1.0) {
    uint64_t t = q->refill_us +
                 (uint64_t)((1.0 - q->tokens) * 1e6 / q->def.rate) + 1;
    if (due == 0 || t < due) due = t;
  }
  return due;
}

static void grant(tq_queue *q, tq_rec *r) {
  r->granted = true;
  r->holds_slot = true;
  q->running++;
  if (r->kc) r->kc->running++;
  if (q->def.rate > 0) q->tokens -= 1.0;
  mly_wake(q->L->rt, r->id);
}

void tq_dispatch(tq_queue *q) {
  if (q->L->held) return; /* mly_queues_hold */
  if (!q->declared || q->paused) return;
  if (q->def.rate > 0) refill(q, tq_now_us()); /* no clock read without */
  while (q->n > 0 && q->running < q->def.max_concurrent) {
    if (q->def.rate > 0 && q->tokens < 1.0) {
      tq_clock_need(q->L, tq_queue_due(q));
      return;
    }
    tq_rec *r = q->heap[0];
    heap_del(q, r);
    if (r->keyval && q->def.concurrency_key_max > 0) {
      if (r->kc == NULL) r->kc = keyc(q, r->keyval);
      if (r->kc && r->kc->running >= q->def.concurrency_key_max) {
        r->blocked = true;
        r->bnext = NULL;
        if (r->kc->blocked_tail) r->kc->blocked_tail->bnext = r;
        else r->kc->blocked = r;
        r->kc->blocked_tail = r;
        continue;
      }
    }
    grant(q, r);
  }
}

/* Its key's blocked tasks go back to the heap to compete again. */
static void unblock(tq_queue *q, tq_keyc *k) {
  tq_rec *r = k->blocked;
  k->blocked = k->blocked_tail = NULL;
  while (r) {
    tq_rec *n = r->bnext;
    r->blocked = false;
    r->bnext = NULL;
    r->kc = NULL; /* looked up again when it competes */
    if (heap_add(q, r) < 0) r->blocked = true;
    r = n;
  }
}

void tq_release_slot(tq_rec *r) {
  tq_queue *q = r->q;
  if (!r->holds_slot) return;
  r->holds_slot = false;
  r->granted = false;
  q->running--;
  tq_keyc *k = r->kc;
  r->kc = NULL;
  if (k) {
    k->running--;
    unblock(q, k);
    keyc_trim(q, k);
  }
  tq_dispatch(q);
}

void tq_forget(tq_rec *r) {
  tq_queue *q = r->q;
  if (q == NULL) return;
  if (r->heap_idx != TQ_NO_HEAP) heap_del(q, r);
  if (r->blocked && r->kc) { /* out of its key's list */
    tq_rec **pp = &r->kc->blocked, *prev = NULL;
    while (*pp && *pp != r) {
      prev = *pp;
      pp = &(*pp)->bnext;
    }
    if (*pp) *pp = r->bnext;
    if (r->kc->blocked_tail == r) r->kc->blocked_tail = prev;
    r->blocked = false;
    tq_keyc *k = r->kc;
    r->kc = NULL;
    keyc_trim(q, k);
  }
  tq_release_slot(r);
}

void tq_queue_free(tq_queue *q) {
  tq_keyc *k, *kt;
  HASH_ITER(hh, q->keys, k, kt) {
    HASH_DEL(q->keys, k);
    free(k->val);
    free(k);
  }
  free(q->heap);
  free(q);
}
