/*
 * freelist.h - freed objects of one size kept for reuse.
 *
 * Objects that come and go once per task or per instance (a queue's task
 * records and attempts, a context's side-table entry) are taken from a
 * free list instead of malloc when one is there: with thousands in
 * flight, malloc's per-thread caches overflow and every allocation pays
 * for its general bins.  A list holds at most FREELIST_MAX objects; past
 * that, a freed object goes back to free().  Objects are linked through
 * their first pointer-sized bytes, so an object is at least a pointer
 * long.  Everything on a list came from malloc/calloc: free() of one is
 * always right.  Not thread-safe: a list belongs to one loop thread.
 */
#ifndef MLY_FREELIST_H
#define MLY_FREELIST_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FREELIST_MAX 4096

typedef struct freelist {
  void *head;
  uint32_t n;
} freelist;

/* size bytes, zeroed (as calloc); NULL: out of memory */
static inline void *freelist_get(freelist *f, size_t size) {
  void *x = f->head;
  if (x == NULL) return calloc(1, size);
  memcpy(&f->head, x, sizeof f->head);
  f->n--;
  memset(x, 0, size);
  return x;
}

/* keeps x (NULL: nothing) for reuse, or frees it when the list is full */
static inline void freelist_put(freelist *f, void *x) {
  if (x == NULL) return;
  if (f->n >= FREELIST_MAX) {
    free(x);
    return;
  }
  memcpy(x, &f->head, sizeof f->head);
  f->head = x;
  f->n++;
}

/* frees everything the list holds */
static inline void freelist_drain(freelist *f) {
  while (f->head) {
    void *x = f->head;
    memcpy(&f->head, x, sizeof f->head);
    free(x);
  }
  f->n = 0;
}

#endif
