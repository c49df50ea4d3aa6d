/*
 * fuzz_corpus.c - the standalone driver's byte buffers and corpora
 * (fuzz_driver.h), shared by every target's driver build.
 */
#include "fuzz_driver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mealy.h"

int fz_corpus_add(fz_corpus *c, const uint8_t *p, size_t n) {
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 32;
    fz_buf *v = realloc(c->v, cap * sizeof *v);
    if (v == NULL) return MLY_ENOMEM;
    c->v = v;
    c->cap = cap;
  }
  c->v[c->n] = (fz_buf){NULL, 0};
  c->n++;
  int rc = fz_corpus_set(c, c->n - 1, p, n);
  if (rc < 0) c->n--;
  return rc;
}

int fz_corpus_set(fz_corpus *c, size_t i, const uint8_t *p, size_t n) {
  uint8_t *q = malloc(n ? n : 1);
  if (q == NULL) return MLY_ENOMEM;
  if (n) memcpy(q, p, n);
  free(c->v[i].p);
  c->v[i] = (fz_buf){q, n};
  return 0;
}

void fz_corpus_free(fz_corpus *c) {
  for (size_t i = 0; i < c->n; i++) free(c->v[i].p);
  free(c->v);
  *c = (fz_corpus){0};
}

int fz_read_file(const char *path, fz_buf *out) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return -errno;
  uint8_t *p = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  for (;;) {
    if (n == cap) {
      cap = cap ? cap * 2 : 4096;
      uint8_t *q = realloc(p, cap);
      if (q == NULL) {
        rc = MLY_ENOMEM;
        break;
      }
      p = q;
    }
    size_t got = fread(p + n, 1, cap - n, f);
    n += got;
    if (got == 0) {
      if (ferror(f)) rc = MLY_EIO;
      break;
    }
  }
  fclose(f);
  if (rc < 0) {
    free(p);
    return rc;
  }
  *out = (fz_buf){p, n};
  return 0;
}

