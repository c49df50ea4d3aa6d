/*
 * textbuf.h - text gathered in memory up to a bound: the body of an
 * HTTP answer, the str of an RPC answer.  textbuf_put has the shape of
 * mly_metrics_write_fn, so a metrics text can be gathered whole.
 */
#ifndef MLY_TEXTBUF_H
#define MLY_TEXTBUF_H

#include <stddef.h>

typedef struct textbuf {
  char *p;    /* malloc'd; NULL while empty */
  size_t n, cap;
  size_t max; /* the bound: past it textbuf_put fails with MLY_ENOSPC */
} textbuf;

/* Appends n bytes: 0, MLY_ENOSPC past max, MLY_ENOMEM. */
int textbuf_put(void *tb, const char *p, size_t n);
void textbuf_free(textbuf *b);

#endif
