/*
 * value.h - the value layer's calls for the layers above it (lib/ only):
 * shared copies and encoding without a packer, which the runtime, the
 * durable layer and fsm/ use; and str_copy, a bounded string copy.
 * Below the runtime: it knows nothing of instances or stores.
 */
#ifndef MLY_VALUE_H
#define MLY_VALUE_H

#include "mealy.h"

#include <string.h>

/* src into dst (cap bytes, > 0), cut to fit and NUL-ended: what
 * snprintf(dst, cap, "%s", src) does, without the format machinery. */
static inline void str_copy(char *dst, const char *src, size_t cap) {
  size_t n = strnlen(src, cap - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* value.c: a copy of v that shares its children (one header copied; a
 * child is copied only when a getter reaches it for change).  Both trees
 * stay on one thread while they share (see value.c).  NULL: no memory. */
mly_value *value_share(mly_value *v);
/* value.c: the length of v's msgpack encoding, counted without making
 * it; the encoder's refusals (MLY_EINVAL nested past
 * MLY_VALUE_MAX_DEPTH, MLY_ERANGE a length msgpack cannot hold). */
int value_encoded_size(const mly_value *v, size_t *out);
/* value.c: 0 when v (NULL: nothing) encodes in at most max bytes;
 * MLY_ERANGE past it, MLY_EINVAL when it does not encode.  What a
 * durable record carries (a payload, a context) is checked with it
 * against the record bound before it is taken (journal.h
 * JR_VALUE_MAX). */
int value_fits(const mly_value *v, size_t max);
/* value.c: v's msgpack encoding (the bytes mly_value_encode makes) into
 * dst, which holds the length value_encoded_size counted (call it first:
 * it refuses what cannot be encoded).  Returns that length. */
size_t value_encode_raw(const mly_value *v, unsigned char *dst);

/* value.c: the encoding given to a writer as it is made (msgpack's
 * packer callback: 0 or -1) */
int value_encode_to(const mly_value *v,
                    int (*write)(void *data, const char *buf, size_t len),
                    void *data);

#endif /* MLY_VALUE_H */
