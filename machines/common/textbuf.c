/*
 * textbuf.c - text gathered in memory up to a bound (textbuf.h).
 */
#include "textbuf.h"

#include <stdlib.h>
#include <string.h>

#include "mealy.h"

int textbuf_put(void *tb, const char *p, size_t n) {
  textbuf *b = tb;
  if (n > b->max || b->n > b->max - n) return MLY_ENOSPC;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->n + n) cap *= 2;
    if (cap > b->max) cap = b->max;
    char *q = realloc(b->p, cap);
    if (q == NULL) return MLY_ENOMEM;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
  return 0;
}

void textbuf_free(textbuf *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}
