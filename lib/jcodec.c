/*
 * jcodec.c - journal records: a msgpack writer into a growing buffer and
 * a bounded reader over one record body.
 *
 * Records are written on the loop thread once per step, so the writer is
 * a handful of inline stores, not a general encoder: it emits only the
 * msgpack forms a record uses (uint, int, nil, array, str, bin), always
 * in the shortest form.  Any msgpack reader can read the result, and
 * `mealy journal dump` decodes it with the generic value decoder.
 *
 * The reader never trusts a length: every read checks what is left, and
 * a failed read sets `bad` so a caller may test once at the end.
 */
#include "journal.h"

#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {
    "?", "create", "step", "event", "end", "snap", "snapend", "inst", "drop", "tomb"};

const char *jr_kind_name(unsigned kind) {
  return kind <= JR_KIND_MAX ? kind_names[kind] : "?";
}

/* ---- writer ---- */

void jb_free(jbuf *b) {
  free(b->p);
  *b = (jbuf){0};
}

static bool grow(jbuf *b, size_t n);

/* room for n more bytes; false (oom set) when it cannot grow */
static inline bool reserve(jbuf *b, size_t n) {
  if (__builtin_expect(b->cap - b->n >= n && !b->oom, 1)) return true;
  return grow(b, n);
}

static bool grow(jbuf *b, size_t n) {
  if (b->oom) return false;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap - b->n < n) cap *= 2;
  unsigned char *p = realloc(b->p, cap);
  if (p == NULL) {
    b->oom = true;
    return false;
  }
  b->p = p;
  b->cap = cap;
  return true;
}

unsigned char *jb_take(jbuf *b, size_t n) {
  if (!reserve(b, n)) return NULL;
  unsigned char *p = b->p + b->n;
  b->n += n;
  return p;
}

void jb_raw(jbuf *b, const void *p, size_t n) {
  if (!reserve(b, n)) return;
  if (n) memcpy(b->p + b->n, p, n);
  b->n += n;
}

/* tag, then v big-endian in `bytes` (0, 1, 2, 4 or 8) bytes */
static inline void be(jbuf *b, unsigned char tag, uint64_t v, unsigned bytes) {
  if (!reserve(b, 9)) return;
  unsigned char *p = b->p + b->n;
  p[0] = tag;
  switch (bytes) {
  case 0: break;
  case 1: p[1] = (unsigned char)v; break;
  case 2: p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)v; break;
  case 4:
    for (unsigned i = 0; i < 4; i++) p[1 + i] = (unsigned char)(v >> (24 - 8 * i));
    break;
  default:
    for (unsigned i = 0; i < 8; i++) p[1 + i] = (unsigned char)(v >> (56 - 8 * i));
    break;
  }
  b->n += 1 + bytes;
}

void jb_uint_any(jbuf *b, uint64_t u) {
  if (u < 128) be(b, (unsigned char)u, 0, 0);
  else if (u <= UINT8_MAX) be(b, 0xcc, u, 1);
  else if (u <= UINT16_MAX) be(b, 0xcd, u, 2);
  else if (u <= UINT32_MAX) be(b, 0xce, u, 4);
  else be(b, 0xcf, u, 8);
}

void jb_int(jbuf *b, int64_t i) {
  if (i >= 0) jb_uint(b, (uint64_t)i);
  else if (i >= -32) be(b, (unsigned char)(0xe0 | (i + 32)), 0, 0);
  else if (i >= INT8_MIN) be(b, 0xd0, (uint64_t)i & 0xff, 1);
  else if (i >= INT16_MIN) be(b, 0xd1, (uint64_t)i & 0xffff, 2);
  else if (i >= INT32_MIN) be(b, 0xd2, (uint64_t)i & 0xffffffff, 4);
  else be(b, 0xd3, (uint64_t)i, 8);
}

void jb_nil(jbuf *b) { be(b, 0xc0, 0, 0); }

void jb_array(jbuf *b, uint32_t n) {
  if (n < 16) be(b, (unsigned char)(0x90 | n), 0, 0);
  else if (n <= UINT16_MAX) be(b, 0xdc, n, 2);
  else be(b, 0xdd, n, 4);
}

void jb_str(jbuf *b, const char *s, size_t n) {
  if (n < 32) be(b, (unsigned char)(0xa0 | n), 0, 0);
  else if (n <= UINT8_MAX) be(b, 0xd9, n, 1);
  else if (n <= UINT16_MAX) be(b, 0xda, n, 2);
  else be(b, 0xdb, n, 4);
  jb_raw(b, s, n);
}

void jb_bin_head(jbuf *b, size_t n) {
  if (n <= UINT8_MAX) be(b, 0xc4, n, 1);
  else if (n <= UINT16_MAX) be(b, 0xc5, n, 2);
  else be(b, 0xc6, n, 4);
}

void jb_bin(jbuf *b, const void *p, size_t n) {
  jb_bin_head(b, n);
  jb_raw(b, p, n);
}

/* A bin whose length is known only once its bytes are in: the header
 * takes the 32-bit form, filled in by jb_bin_close (3 bytes more than
 * the shortest form for a small one: any msgpack reader takes it). */
size_t jb_bin_open(jbuf *b) {
  be(b, 0xc6, 0, 4);
  return b->n;
}

void jb_bin_close(jbuf *b, size_t at) {
  if (b->oom) return;
  size_t n = b->n - at;
  unsigned char *h = b->p + at - 4;
  h[0] = (unsigned char)(n >> 24);
  h[1] = (unsigned char)(n >> 16);
  h[2] = (unsigned char)(n >> 8);
  h[3] = (unsigned char)n;
}

/* A msgpack packer's writer into a jbuf (value_encode_to). */
int jb_write(void *data, const char *buf, size_t len) {
  jbuf *b = data;
  jb_raw(b, buf, len);
  return b->oom ? -1 : 0;
}

size_t jb_begin(jbuf *b, uint64_t seq, unsigned kind, uint32_t nfields) {
  size_t start = b->n;
  static const unsigned char zero[JR_HDR];
  jb_raw(b, zero, JR_HDR);
  jb_array(b, nfields + 2);
  jb_uint(b, seq);
  jb_uint(b, kind);
  return start;
}

static void put_le32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

static void put_le64(unsigned char *p, uint64_t v) {
  put_le32(p, (uint32_t)v);
  put_le32(p + 4, (uint32_t)(v >> 32));
}

void jr_seg_header(unsigned char out[JR_SEG_HDR], uint32_t salt,
                   uint32_t prev, uint64_t seg_no, uint32_t flags) {
  memcpy(out, JR_MAGIC, 4);
  put_le32(out + 4, JR_VERSION);
  put_le32(out + 8, salt);
  put_le32(out + 12, prev);
  put_le64(out + 16, seg_no);
  put_le32(out + 24, flags);
  put_le32(out + 28, jr_crc32c(out, 28));
}

uint32_t jr_frame_header(unsigned char out[JR_FRAME_HDR], uint32_t salt,
                         uint32_t prev, uint64_t synced, const void *payload,
                         uint32_t len) {
  unsigned char s[4];
  put_le32(s, salt);
  put_le32(out, len);
  put_le32(out + 4, prev);
  put_le64(out + 8, synced);
  uint32_t sum = jr_crc32c_more(jr_crc32c_more(jr_crc32c(s, 4), out, 16),
                                payload, len);
  put_le32(out + 16, sum);
  put_le32(out + 20, jr_crc32c_more(jr_crc32c(s, 4), out, 20));
  return sum;
}

void jb_end(jbuf *b, size_t start) {
  if (b->oom) return;
  unsigned char *h = b->p + start;
  size_t len = b->n - start - JR_HDR;
  put_le32(h, (uint32_t)len);
  put_le32(h + 4, jr_crc32c(h + JR_HDR, len));
}

/* ---- reader ---- */

static bool take(jcur *c, size_t n, const unsigned char **out) {
  if (c->bad || (size_t)(c->end - c->p) < n) {
    c->bad = true;
    return false;
  }
  *out = c->p;
  c->p += n;
  return true;
}

static bool read_be(jcur *c, unsigned bytes, uint64_t *v) {
  const unsigned char *p;
  if (!take(c, bytes, &p)) return false;
  uint64_t r = 0;
  for (unsigned i = 0; i < bytes; i++) r = r << 8 | p[i];
  *v = r;
  return true;
}

static int peek(jcur *c) {
  if (c->bad || c->p >= c->end) {
    c->bad = true;
    return -1;
  }
  return *c->p;
}

static bool fail(jcur *c) {
  c->bad = true;
  return false;
}

bool jc_array(jcur *c, uint32_t *n) {
  int t = peek(c);
  uint64_t v;
  if (t < 0) return false;
  c->p++;
  if ((t & 0xf0) == 0x90) v = (unsigned)t & 0x0f;
  else if (t == 0xdc) { if (!read_be(c, 2, &v)) return false; }
  else if (t == 0xdd) { if (!read_be(c, 4, &v)) return false; }
  else return fail(c);
  /* each element takes at least one byte */
  if (v > (uint64_t)(c->end - c->p)) return fail(c);
  *n = (uint32_t)v;
  return true;
}

bool jc_uint(jcur *c, uint64_t *u) {
  int t = peek(c);
  if (t < 0) return false;
  c->p++;
  if (t < 0x80) { *u = (unsigned)t; return true; }
  switch (t) {
  case 0xcc: return read_be(c, 1, u);
  case 0xcd: return read_be(c, 2, u);
  case 0xce: return read_be(c, 4, u);
  case 0xcf: return read_be(c, 8, u);
  default: return fail(c);
  }
}

bool jc_int(jcur *c, int64_t *i) {
  int t = peek(c);
  uint64_t v;
  if (t < 0) return false;
  if (t < 0x80 || (t >= 0xcc && t <= 0xcf)) {
    if (!jc_uint(c, &v) || v > INT64_MAX) return fail(c);
    *i = (int64_t)v;
    return true;
  }
  c->p++;
  if (t >= 0xe0) { *i = t - 0x100; return true; }
  unsigned bytes = t == 0xd0 ? 1 : t == 0xd1 ? 2 : t == 0xd2 ? 4 : t == 0xd3 ? 8 : 0;
  if (bytes == 0 || !read_be(c, bytes, &v)) return fail(c);
  unsigned shift = 64 - 8 * bytes; /* sign-extend */
  *i = (int64_t)(v << shift) >> shift;
  return true;
}

bool jc_nil(jcur *c) { /* only a question: a non-nil is not damage */
  if (c->bad || c->p >= c->end || *c->p != 0xc0) return false;
  c->p++;
  return true;
}

static bool bytes_of(jcur *c, int t, const unsigned char **p, size_t *n,
                     bool str) {
  uint64_t len;
  if (str && (t & 0xe0) == 0xa0) len = (unsigned)t & 0x1f;
  else if (t == (str ? 0xd9 : 0xc4)) { if (!read_be(c, 1, &len)) return false; }
  else if (t == (str ? 0xda : 0xc5)) { if (!read_be(c, 2, &len)) return false; }
  else if (t == (str ? 0xdb : 0xc6)) { if (!read_be(c, 4, &len)) return false; }
  else return fail(c);
  if (!take(c, len, p)) return false;
  *n = len;
  return true;
}

bool jc_str(jcur *c, const char **s, size_t *n) {
  int t = peek(c);
  if (t < 0) return false;
  c->p++;
  const unsigned char *p;
  if (!bytes_of(c, t, &p, n, true)) return false;
  *s = (const char *)p;
  return true;
}

bool jc_bin(jcur *c, const void **out, size_t *n) {
  int t = peek(c);
  if (t < 0) return false;
  c->p++;
  const unsigned char *p;
  if (!bytes_of(c, t, &p, n, false)) return false;
  *out = p;
  return true;
}

bool jc_evid(jcur *c, uint64_t *id, const char **name, size_t *nlen) {
  int t = peek(c);
  if (t < 0) return false;
  *name = NULL;
  if ((t & 0xe0) == 0xa0 || (t >= 0xd9 && t <= 0xdb))
    return jc_str(c, name, nlen);
  return jc_uint(c, id);
}

/* Skip one value of any msgpack type, iteratively (no recursion depth to
 * exhaust): `todo` counts the values still to skip. */
bool jc_skip(jcur *c) {
  uint64_t todo = 1;
  while (todo > 0 && !c->bad) {
    todo--;
    int t = peek(c);
    if (t < 0) return false;
    c->p++;
    const unsigned char *p;
    uint64_t v;
    size_t n;
    if (t < 0x80 || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) continue;
    if ((t & 0xf0) == 0x80) { todo += 2 * ((unsigned)t & 0x0f); continue; }
    if ((t & 0xf0) == 0x90) { todo += (unsigned)t & 0x0f; continue; }
    if ((t & 0xe0) == 0xa0) { take(c, (unsigned)t & 0x1f, &p); continue; }
    switch (t) {
    case 0xc4: case 0xc5: case 0xc6:
      c->p--; bytes_of(c, *c->p++ , &p, &n, false); break;
    case 0xd9: case 0xda: case 0xdb:
      c->p--; bytes_of(c, *c->p++, &p, &n, true); break;
    case 0xca: take(c, 4, &p); break;
    case 0xcb: take(c, 8, &p); break;
    case 0xcc: case 0xd0: take(c, 1, &p); break;
    case 0xcd: case 0xd1: take(c, 2, &p); break;
    case 0xce: case 0xd2: take(c, 4, &p); break;
    case 0xcf: case 0xd3: take(c, 8, &p); break;
    case 0xdc: if (read_be(c, 2, &v)) todo += v; break;
    case 0xdd: if (read_be(c, 4, &v)) todo += v; break;
    case 0xde: if (read_be(c, 2, &v)) todo += 2 * v; break;
    case 0xdf: if (read_be(c, 4, &v)) todo += 2 * v; break;
    case 0xd4: take(c, 2, &p); break;
    case 0xd5: take(c, 3, &p); break;
    case 0xd6: take(c, 5, &p); break;
    case 0xd7: take(c, 9, &p); break;
    case 0xd8: take(c, 17, &p); break;
    case 0xc7: if (read_be(c, 1, &v)) take(c, v + 1, &p); break;
    case 0xc8: if (read_be(c, 2, &v)) take(c, v + 1, &p); break;
    case 0xc9: if (read_be(c, 4, &v)) take(c, v + 1, &p); break;
    default: return fail(c); /* 0xc1: never used */
    }
    /* more values than bytes left: damage, stop before looping long */
    if (todo > (uint64_t)(c->end - c->p)) return fail(c);
  }
  return !c->bad;
}
