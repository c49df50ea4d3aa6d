/*
** value.c - the `value` layer: typed value trees and their msgpack form.
**
** A mly_value is a small tagged tree (nil, bool, int, uint, double, str,
** bin, array, map) that machines exchange as event payloads and that the
** runtime stores and ships as msgpack.  This file builds, reads, copies,
** compares and frees those trees, and converts them to and from msgpack.
**
** Encoding goes through msgpack-c's packer into an sbuffer.  Decoding is a
** small reader written here, because the msgpack-c 4.0 C unpacker is not
** safe on hostile input: it allocates count * 24 bytes up front for the
** declared size of an array or map (the five bytes DF FF FF FF FF ask it
** for 100 GB, which aborts under ASan), and it fails every nesting deeper
** than 32 (its fixed stack) with NOMEM_ERROR, below the
** MLY_VALUE_MAX_DEPTH of 64 that mealy.h promises.  The reader checks each
** declared count and length against the bytes left before it allocates,
** so memory stays linear in the input, and its recursion stops at
** MLY_VALUE_MAX_DEPTH.
**
** Decisions the rest of the library relies on:
**   - INT and UINT holding the same mathematical value are equal, because
**     msgpack does not keep the difference: decoding yields UINT for every
**     value >= 0 and INT for every value < 0.  Use mly_value_get_int or
**     mly_value_get_uint rather than testing the type.
**   - Doubles are equal when their bits are: NaN equals the same NaN, and
**     -0.0 differs from 0.0, so equal values always encode alike.
**   - Maps are equal when they hold the same keys with equal values, in
**     any order.  A NULL value is equal to nil and encodes as nil.
**   - Decoding refuses (MLY_EBADMSG) maps with duplicate keys rather than
**     picking one, so no two readers can disagree on what a message means,
**     and keys holding a NUL byte, which the C-string key API cannot name.
**   - Strings are raw bytes: UTF-8 is not checked, either way.
**   - Encoding refuses (MLY_EINVAL) nesting deeper than
**     MLY_VALUE_MAX_DEPTH, so whatever encodes also decodes, and sizes
**     msgpack cannot express (4 GiB and more) with MLY_ERANGE.
**   - A value may sit in one container at most, and never inside itself.
**
** Shared copies (lib/ only, value_share): a YAML machine's dispatch works
** on a copy of the instance's context, and a deep copy of every node at
** every dispatch was most of its cost.  value_share copies one map or
** array header and shares what it holds: each child and each key counts
** one more owner (`shared`, a key's `refs`), and mly_value_free of a node
** with other owners only takes one away.  Scalars never change in place,
** so sharing them is invisible.  A shared container is never handed out
** for change: the getters that return a child (mly_map_get, mly_map_at,
** mly_array_at) first give the parent its own copy of a shared container
** child (own()), so a change through one tree never shows in the other.
** Counts are plain integers: trees that share nodes stay on one thread
** (the fsm makes a private deep copy before a blocking action).
*/
#include "mealy.h"
#include "internal.h"

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct mly_pair {
  char *key; /* NUL-terminated, holds no other NUL; in a key_box */
  mly_value *val;
} mly_pair;

struct mly_value {
  mly_vtype type;
  uint32_t shared; /* owners besides the first (value_share) */
  union {
    bool b;
    int64_t i;
    uint64_t u;
    double d;
    struct { char *p; size_t len; } s;            /* STR, BIN */
    struct { mly_value **v; size_t len, cap; } a; /* ARRAY */
    struct { mly_pair *v; size_t len, cap; } m;   /* MAP */
  } u;
};

/* ------------------------------------------------------------------ */
/* Keys: counted, so that a shared copy of a map shares them too.      */

typedef struct key_box {
  uint32_t refs; /* owners besides the first */
  size_t len;    /* strlen(s) */
  char s[];
} key_box;

static key_box *box_of(const char *k) {
  return (key_box *)(uintptr_t)(k - offsetof(key_box, s));
}

static char *key_new(const char *s, size_t len) {
  if (len > SIZE_MAX - sizeof(key_box) - 1)
    return NULL;
  key_box *b = malloc(sizeof *b + len + 1);
  if (!b)
    return NULL;
  b->refs = 0;
  b->len = len;
  memcpy(b->s, s, len);
  b->s[len] = '\0';
  return b->s;
}

static void key_free(char *k) {
  if (!k)
    return;
  key_box *b = box_of(k);
  if (b->refs > 0)
    b->refs--;
  else
    free(b);
}

/* ------------------------------------------------------------------ */
/* Construction and destruction.                                       */

static mly_value *value_new(mly_vtype t) {
  mly_value *v = calloc(1, sizeof *v);
  if (v)
    v->type = t;
  return v;
}

/* STR and BIN share one layout; both get a trailing NUL so that strings
 * are always NUL-terminated and p is never NULL, even when len is 0.
 * The bytes live in the value's own allocation, right after it (one
 * malloc per string, freed with the value). */
static mly_value *bytes_new(mly_vtype t, const void *p, size_t len) {
  if (len > SIZE_MAX - sizeof(mly_value) - 1 || (p == NULL && len > 0))
    return NULL;
  mly_value *v = malloc(sizeof *v + len + 1);
  if (!v)
    return NULL;
  memset(v, 0, sizeof *v);
  v->type = t;
  v->u.s.p = (char *)(v + 1);
  if (len)
    memcpy(v->u.s.p, p, len);
  v->u.s.p[len] = '\0';
  v->u.s.len = len;
  return v;
}

mly_value *mly_value_nil(void) { return value_new(MLY_V_NIL); }

mly_value *mly_value_bool(bool b) {
  mly_value *v = value_new(MLY_V_BOOL);
  if (v)
    v->u.b = b;
  return v;
}

mly_value *mly_value_int(int64_t i) {
  mly_value *v = value_new(MLY_V_INT);
  if (v)
    v->u.i = i;
  return v;
}

mly_value *mly_value_uint(uint64_t u) {
  mly_value *v = value_new(MLY_V_UINT);
  if (v)
    v->u.u = u;
  return v;
}

mly_value *mly_value_double(double d) {
  mly_value *v = value_new(MLY_V_DOUBLE);
  if (v)
    v->u.d = d;
  return v;
}

mly_value *mly_value_str(const char *s) {
  return s ? bytes_new(MLY_V_STR, s, strlen(s)) : NULL;
}

mly_value *mly_value_strn(const char *s, size_t len) {
  return bytes_new(MLY_V_STR, s, len);
}

mly_value *mly_value_bin(const void *p, size_t len) {
  return bytes_new(MLY_V_BIN, p, len);
}

mly_value *mly_value_array(void) { return value_new(MLY_V_ARRAY); }

mly_value *mly_value_map(void) { return value_new(MLY_V_MAP); }

void mly_value_free(mly_value *v) {
  if (!v)
    return;
  if (v->shared > 0) { /* another tree still holds it */
    v->shared--;
    return;
  }
  switch (v->type) {
  case MLY_V_STR:
  case MLY_V_BIN: /* its bytes are in its own allocation */
    break;
  case MLY_V_ARRAY:
    for (size_t i = 0; i < v->u.a.len; i++)
      mly_value_free(v->u.a.v[i]);
    free(v->u.a.v);
    break;
  case MLY_V_MAP:
    for (size_t i = 0; i < v->u.m.len; i++) {
      key_free(v->u.m.v[i].key);
      mly_value_free(v->u.m.v[i].val);
    }
    free(v->u.m.v);
    break;
  default:
    break;
  }
  free(v);
}

/* ------------------------------------------------------------------ */
/* Shared copies (see the file comment).                               */

mly_value *value_share(mly_value *v) {
  if (!v)
    return NULL;
  if (v->type != MLY_V_MAP && v->type != MLY_V_ARRAY) {
    v->shared++;
    return v;
  }
  mly_value *c = value_new(v->type);
  if (!c)
    return NULL;
  size_t n = v->u.a.len; /* the same place in both layouts */
  if (v->type == MLY_V_ARRAY) {
    if (n && !(c->u.a.v = malloc(n * sizeof *c->u.a.v))) {
      free(c);
      return NULL;
    }
    for (size_t i = 0; i < n; i++) {
      c->u.a.v[i] = v->u.a.v[i];
      c->u.a.v[i]->shared++;
    }
    c->u.a.len = c->u.a.cap = n;
    return c;
  }
  n = v->u.m.len;
  if (n && !(c->u.m.v = malloc(n * sizeof *c->u.m.v))) {
    free(c);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    c->u.m.v[i] = v->u.m.v[i];
    box_of(c->u.m.v[i].key)->refs++;
    c->u.m.v[i].val->shared++;
  }
  c->u.m.len = c->u.m.cap = n;
  return c;
}

/* A child reached for change (through a getter): a shared container is
 * replaced, in its parent's slot, by a copy of its own (whose children
 * are shared in turn).  NULL: out of memory. */
static mly_value *own(mly_value **slot) {
  mly_value *c = *slot;
  if (c->shared == 0 || (c->type != MLY_V_MAP && c->type != MLY_V_ARRAY))
    return c;
  mly_value *n = value_share(c);
  if (!n)
    return NULL;
  c->shared--;
  *slot = n;
  return n;
}

/* ------------------------------------------------------------------ */
/* Growable vectors for arrays and maps.                               */

/* Return vec resized to hold at least need elements of size bytes, or
 * NULL (vec untouched) when memory runs out.  Capacity doubles, so
 * appends are O(1) amortized; a first reservation is exact, so decoding
 * a counted container allocates just what it declared. */
static void *grow(void *vec, size_t *cap, size_t need, size_t size) {
  if (need <= *cap)
    return vec;
  size_t ncap = *cap > SIZE_MAX / 2 ? SIZE_MAX : *cap * 2;
  if (ncap < need)
    ncap = need;
  if (ncap < 4)
    ncap = 4;
  if (ncap > SIZE_MAX / size)
    return NULL;
  void *p = realloc(vec, ncap * size);
  if (p)
    *cap = ncap;
  return p;
}

/* Append elem to an array; elem is freed if that fails. */
static int array_append(mly_value *a, mly_value *elem) {
  mly_value **v = grow(a->u.a.v, &a->u.a.cap, a->u.a.len + 1, sizeof *v);
  if (!v) {
    mly_value_free(elem);
    return MLY_ENOMEM;
  }
  a->u.a.v = v;
  v[a->u.a.len++] = elem;
  return 0;
}

/* Append a pair without looking for its key; key and val are freed if
 * that fails.  Callers make sure the key is not already there. */
static int map_append(mly_value *m, char *key, mly_value *val) {
  mly_pair *v = grow(m->u.m.v, &m->u.m.cap, m->u.m.len + 1, sizeof *v);
  if (!v) {
    key_free(key);
    mly_value_free(val);
    return MLY_ENOMEM;
  }
  m->u.m.v = v;
  v[m->u.m.len].key = key;
  v[m->u.m.len].val = val;
  m->u.m.len++;
  return 0;
}

static bool is_array(const mly_value *v) {
  return v && v->type == MLY_V_ARRAY;
}

static bool is_map(const mly_value *v) { return v && v->type == MLY_V_MAP; }

/* ------------------------------------------------------------------ */
/* Arrays and maps.                                                    */

size_t mly_value_len(const mly_value *v) {
  if (is_array(v))
    return v->u.a.len;
  if (is_map(v))
    return v->u.m.len;
  return 0;
}

int mly_array_push(mly_value *array, mly_value *elem) {
  if (!is_array(array) || !elem) {
    mly_value_free(elem);
    return MLY_EINVAL;
  }
  return array_append(array, elem);
}

mly_value *mly_array_at(const mly_value *array, size_t i) {
  if (!is_array(array) || i >= array->u.a.len)
    return NULL;
  return own(&array->u.a.v[i]);
}

/* Linear search: maps are small, and insertion order is the contract. */
static mly_pair *map_find(const mly_value *m, const char *key) {
  for (size_t i = 0; i < m->u.m.len; i++)
    if (strcmp(m->u.m.v[i].key, key) == 0)
      return &m->u.m.v[i];
  return NULL;
}

int mly_map_set(mly_value *map, const char *key, mly_value *val) {
  if (!is_map(map) || !key || !val) {
    mly_value_free(val);
    return MLY_EINVAL;
  }
  mly_pair *p = map_find(map, key);
  if (p) {
    if (p->val != val) /* setting the same value again must not free it */
      mly_value_free(p->val);
    p->val = val;
    return 0;
  }
  char *k = key_new(key, strlen(key));
  if (!k) {
    mly_value_free(val);
    return MLY_ENOMEM;
  }
  return map_append(map, k, val);
}

mly_value *mly_map_get(const mly_value *map, const char *key) {
  if (!is_map(map) || !key)
    return NULL;
  mly_pair *p = map_find(map, key);
  return p ? own(&p->val) : NULL;
}

int mly_map_del(mly_value *map, const char *key) {
  if (!is_map(map) || !key)
    return MLY_EINVAL;
  mly_pair *p = map_find(map, key);
  if (!p)
    return MLY_ENOENT;
  key_free(p->key);
  mly_value_free(p->val);
  size_t i = (size_t)(p - map->u.m.v);
  /* Shift the tail down rather than swap in the last pair: order is kept. */
  memmove(p, p + 1, (map->u.m.len - i - 1) * sizeof *p);
  map->u.m.len--;
  return 0;
}

int mly_map_at(const mly_value *map, size_t i, const char **key,
               mly_value **val) {
  if (!is_map(map))
    return MLY_EINVAL;
  if (i >= map->u.m.len)
    return MLY_ENOENT;
  if (val) {
    mly_value *v = own(&map->u.m.v[i].val);
    if (!v)
      return MLY_ENOMEM;
    *val = v;
  }
  if (key)
    *key = map->u.m.v[i].key;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Types and typed reads.  Out pointers may be NULL to test only; on   */
/* error they are left alone.                                          */

mly_vtype mly_value_type(const mly_value *v) {
  return v ? v->type : MLY_V_NIL;
}

const char *mly_vtype_name(mly_vtype t) {
  static const char *const names[] = {
      [MLY_V_NIL] = "nil",       [MLY_V_BOOL] = "bool",
      [MLY_V_INT] = "int",       [MLY_V_UINT] = "uint",
      [MLY_V_DOUBLE] = "double", [MLY_V_STR] = "str",
      [MLY_V_BIN] = "bin",       [MLY_V_ARRAY] = "array",
      [MLY_V_MAP] = "map",
  };
  if ((unsigned)t >= sizeof names / sizeof names[0])
    return "unknown";
  return names[t];
}

int mly_value_get_bool(const mly_value *v, bool *out) {
  if (!v || v->type != MLY_V_BOOL)
    return MLY_EINVAL;
  if (out)
    *out = v->u.b;
  return 0;
}

int mly_value_get_int(const mly_value *v, int64_t *out) {
  int64_t i;
  if (!v)
    return MLY_EINVAL;
  if (v->type == MLY_V_INT)
    i = v->u.i;
  else if (v->type != MLY_V_UINT)
    return MLY_EINVAL;
  else if (v->u.u > (uint64_t)INT64_MAX)
    return MLY_ERANGE;
  else
    i = (int64_t)v->u.u;
  if (out)
    *out = i;
  return 0;
}

int mly_value_get_uint(const mly_value *v, uint64_t *out) {
  uint64_t u;
  if (!v)
    return MLY_EINVAL;
  if (v->type == MLY_V_UINT)
    u = v->u.u;
  else if (v->type != MLY_V_INT)
    return MLY_EINVAL;
  else if (v->u.i < 0)
    return MLY_ERANGE;
  else
    u = (uint64_t)v->u.i;
  if (out)
    *out = u;
  return 0;
}

int mly_value_get_double(const mly_value *v, double *out) {
  double d;
  switch (mly_value_type(v)) {
  case MLY_V_DOUBLE:
    d = v->u.d;
    break;
  case MLY_V_INT:
    d = (double)v->u.i;
    break;
  case MLY_V_UINT:
    d = (double)v->u.u;
    break;
  default:
    return MLY_EINVAL;
  }
  if (out)
    *out = d;
  return 0;
}

int mly_value_get_str(const mly_value *v, const char **s, size_t *len) {
  if (!v || v->type != MLY_V_STR)
    return MLY_EINVAL;
  if (s)
    *s = v->u.s.p;
  if (len)
    *len = v->u.s.len;
  return 0;
}

int mly_value_get_bin(const mly_value *v, const void **p, size_t *len) {
  if (!v || v->type != MLY_V_BIN)
    return MLY_EINVAL;
  if (p)
    *p = v->u.s.p;
  if (len)
    *len = v->u.s.len;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Map shorthands.                                                     */

int mly_map_set_int(mly_value *map, const char *key, int64_t i) {
  mly_value *v = mly_value_int(i);
  return v ? mly_map_set(map, key, v) : MLY_ENOMEM;
}

int mly_map_set_uint(mly_value *map, const char *key, uint64_t u) {
  mly_value *v = mly_value_uint(u);
  return v ? mly_map_set(map, key, v) : MLY_ENOMEM;
}

int mly_map_set_double(mly_value *map, const char *key, double d) {
  mly_value *v = mly_value_double(d);
  return v ? mly_map_set(map, key, v) : MLY_ENOMEM;
}

int mly_map_set_bool(mly_value *map, const char *key, bool b) {
  mly_value *v = mly_value_bool(b);
  return v ? mly_map_set(map, key, v) : MLY_ENOMEM;
}

int mly_map_set_str(mly_value *map, const char *key, const char *s) {
  if (!s) /* otherwise indistinguishable from running out of memory */
    return MLY_EINVAL;
  mly_value *v = mly_value_str(s);
  return v ? mly_map_set(map, key, v) : MLY_ENOMEM;
}

/* The value under key, or the error a shorthand get returns. */
static int map_lookup(const mly_value *map, const char *key,
                      const mly_value **v) {
  if (!is_map(map) || !key)
    return MLY_EINVAL;
  *v = mly_map_get(map, key);
  return *v ? 0 : MLY_ENOENT;
}

int mly_map_get_int(const mly_value *map, const char *key, int64_t *out) {
  const mly_value *v;
  int rc = map_lookup(map, key, &v);
  return rc ? rc : mly_value_get_int(v, out);
}

int mly_map_get_uint(const mly_value *map, const char *key, uint64_t *out) {
  const mly_value *v;
  int rc = map_lookup(map, key, &v);
  return rc ? rc : mly_value_get_uint(v, out);
}

int mly_map_get_double(const mly_value *map, const char *key, double *out) {
  const mly_value *v;
  int rc = map_lookup(map, key, &v);
  return rc ? rc : mly_value_get_double(v, out);
}

int mly_map_get_bool(const mly_value *map, const char *key, bool *out) {
  const mly_value *v;
  int rc = map_lookup(map, key, &v);
  return rc ? rc : mly_value_get_bool(v, out);
}

int mly_map_get_str(const mly_value *map, const char *key, const char **s) {
  const mly_value *v;
  int rc = map_lookup(map, key, &v);
  return rc ? rc : mly_value_get_str(v, s, NULL);
}

/* ------------------------------------------------------------------ */
/* Deep copy.                                                          */

static mly_value *array_copy(const mly_value *src) {
  mly_value *c = mly_value_array();
  if (!c)
    return NULL;
  for (size_t i = 0; i < src->u.a.len; i++) {
    mly_value *e = mly_value_copy(src->u.a.v[i]);
    if (!e || array_append(c, e) != 0) {
      mly_value_free(c);
      return NULL;
    }
  }
  return c;
}

static mly_value *map_copy(const mly_value *src) {
  mly_value *c = mly_value_map();
  if (!c)
    return NULL;
  for (size_t i = 0; i < src->u.m.len; i++) {
    const char *sk = src->u.m.v[i].key;
    char *k = key_new(sk, strlen(sk));
    mly_value *val = mly_value_copy(src->u.m.v[i].val);
    if (!k || !val) {
      key_free(k);
      mly_value_free(val);
      mly_value_free(c);
      return NULL;
    }
    if (map_append(c, k, val) != 0) {
      mly_value_free(c);
      return NULL;
    }
  }
  return c;
}

mly_value *mly_value_copy(const mly_value *v) {
  if (!v)
    return NULL;
  switch (v->type) {
  case MLY_V_STR:
  case MLY_V_BIN:
    return bytes_new(v->type, v->u.s.p, v->u.s.len);
  case MLY_V_ARRAY:
    return array_copy(v);
  case MLY_V_MAP:
    return map_copy(v);
  default: {
    mly_value *c = value_new(v->type);
    if (c)
      c->u = v->u;
    return c;
  }
  }
}

/* ------------------------------------------------------------------ */
/* Equality.                                                           */

static bool is_integer(mly_vtype t) { return t == MLY_V_INT || t == MLY_V_UINT; }

/* INT and UINT compare by mathematical value (see the file comment). */
static bool integer_equal(const mly_value *a, const mly_value *b) {
  if (a->type == b->type)
    return a->type == MLY_V_INT ? a->u.i == b->u.i : a->u.u == b->u.u;
  const mly_value *s = a->type == MLY_V_INT ? a : b;
  const mly_value *u = s == a ? b : a;
  return s->u.i >= 0 && (uint64_t)s->u.i == u->u.u;
}

static bool array_equal(const mly_value *a, const mly_value *b) {
  if (a->u.a.len != b->u.a.len)
    return false;
  for (size_t i = 0; i < a->u.a.len; i++)
    if (!mly_value_equal(a->u.a.v[i], b->u.a.v[i]))
      return false;
  return true;
}

/* Keys are unique within a map, so equal sizes plus every key of a found
 * in b with an equal value means the same set of pairs.  Pairs in the
 * same order (the usual case, e.g. after a round trip) skip the search. */
static bool map_equal(const mly_value *a, const mly_value *b) {
  if (a->u.m.len != b->u.m.len)
    return false;
  for (size_t i = 0; i < a->u.m.len; i++) {
    const mly_pair *pa = &a->u.m.v[i], *pb = &b->u.m.v[i];
    const mly_value *vb = strcmp(pa->key, pb->key) == 0
                              ? pb->val
                              : mly_map_get(b, pa->key);
    if (!vb || !mly_value_equal(pa->val, vb))
      return false;
  }
  return true;
}

bool mly_value_equal(const mly_value *a, const mly_value *b) {
  mly_vtype ta = mly_value_type(a), tb = mly_value_type(b);
  if (a == b)
    return true;
  if (is_integer(ta) && is_integer(tb))
    return integer_equal(a, b);
  if (ta != tb)
    return false;
  switch (ta) {
  case MLY_V_NIL: /* a NULL value is nil; do not touch it */
    return true;
  case MLY_V_BOOL:
    return a->u.b == b->u.b;
  case MLY_V_DOUBLE:
    return memcmp(&a->u.d, &b->u.d, sizeof a->u.d) == 0;
  case MLY_V_STR:
  case MLY_V_BIN:
    return a->u.s.len == b->u.s.len &&
           memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0;
  case MLY_V_ARRAY:
    return array_equal(a, b);
  case MLY_V_MAP:
    return map_equal(a, b);
  default:
    return false;
  }
}

/* ------------------------------------------------------------------ */
/* Encoding with msgpack-c.  Its packer reports only write failures,   */
/* and the sbuffer writer fails only when realloc does.                */

static int pk_rc(int rc) { return rc == 0 ? 0 : MLY_ENOMEM; }

static int encode_any(msgpack_packer *pk, const mly_value *v, int depth);

static int encode_bytes(msgpack_packer *pk, const mly_value *v) {
  size_t n = v->u.s.len;
  if (n > UINT32_MAX)
    return MLY_ERANGE;
  if (v->type == MLY_V_STR) {
    if (msgpack_pack_str(pk, n) != 0)
      return MLY_ENOMEM;
    return pk_rc(msgpack_pack_str_body(pk, v->u.s.p, n));
  }
  if (msgpack_pack_bin(pk, n) != 0)
    return MLY_ENOMEM;
  return pk_rc(msgpack_pack_bin_body(pk, v->u.s.p, n));
}

static int encode_array(msgpack_packer *pk, const mly_value *v, int depth) {
  if (v->u.a.len > UINT32_MAX)
    return MLY_ERANGE;
  if (msgpack_pack_array(pk, v->u.a.len) != 0)
    return MLY_ENOMEM;
  for (size_t i = 0; i < v->u.a.len; i++) {
    int rc = encode_any(pk, v->u.a.v[i], depth + 1);
    if (rc)
      return rc;
  }
  return 0;
}

static int encode_map(msgpack_packer *pk, const mly_value *v, int depth) {
  if (v->u.m.len > UINT32_MAX)
    return MLY_ERANGE;
  if (msgpack_pack_map(pk, v->u.m.len) != 0)
    return MLY_ENOMEM;
  for (size_t i = 0; i < v->u.m.len; i++) {
    const char *k = v->u.m.v[i].key;
    size_t n = box_of(k)->len;
    if (n > UINT32_MAX)
      return MLY_ERANGE;
    if (msgpack_pack_str(pk, n) != 0 || msgpack_pack_str_body(pk, k, n) != 0)
      return MLY_ENOMEM;
    int rc = encode_any(pk, v->u.m.v[i].val, depth + 1);
    if (rc)
      return rc;
  }
  return 0;
}

/* depth counts the containers around v, as the decoder does. */
static int encode_any(msgpack_packer *pk, const mly_value *v, int depth) {
  switch (mly_value_type(v)) {
  case MLY_V_NIL:
    return pk_rc(msgpack_pack_nil(pk));
  case MLY_V_BOOL:
    return pk_rc(v->u.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
  case MLY_V_INT:
    return pk_rc(msgpack_pack_int64(pk, v->u.i));
  case MLY_V_UINT:
    return pk_rc(msgpack_pack_uint64(pk, v->u.u));
  case MLY_V_DOUBLE:
    return pk_rc(msgpack_pack_double(pk, v->u.d));
  case MLY_V_STR:
  case MLY_V_BIN:
    return encode_bytes(pk, v);
  case MLY_V_ARRAY:
    return depth < MLY_VALUE_MAX_DEPTH ? encode_array(pk, v, depth)
                                       : MLY_EINVAL;
  case MLY_V_MAP:
    return depth < MLY_VALUE_MAX_DEPTH ? encode_map(pk, v, depth)
                                       : MLY_EINVAL;
  default:
    return MLY_EINVAL;
  }
}

/* The bytes a header of a str/bin/array/map of n takes (fixstr: 32,
 * fixarray/fixmap: 16 fit the tag; bin has no fix form). */
static size_t head_size(size_t n, size_t fix) {
  return n < fix ? 1 : n < 256 && fix != 16 ? 2 : n < 65536 ? 3 : 5;
}

static size_t uint_size(uint64_t u) {
  return u < 128 ? 1 : u <= UINT8_MAX ? 2 : u <= UINT16_MAX ? 3
         : u <= UINT32_MAX ? 5 : 9;
}

/* What encode_any would write, counted without writing: the same
 * refusals (MLY_EINVAL too deep, MLY_ERANGE a size msgpack cannot say). */
static int size_any(const mly_value *v, int depth, size_t *n) {
  size_t len;
  switch (mly_value_type(v)) {
  case MLY_V_NIL:
  case MLY_V_BOOL: *n += 1; return 0;
  case MLY_V_INT:
    if (v->u.i >= 0) *n += uint_size((uint64_t)v->u.i);
    else *n += v->u.i >= -32 ? 1 : v->u.i >= INT8_MIN ? 2
               : v->u.i >= INT16_MIN ? 3 : v->u.i >= INT32_MIN ? 5 : 9;
    return 0;
  case MLY_V_UINT: *n += uint_size(v->u.u); return 0;
  case MLY_V_DOUBLE: *n += 9; return 0;
  case MLY_V_STR:
  case MLY_V_BIN:
    len = v->u.s.len;
    if (len > UINT32_MAX)
      return MLY_ERANGE;
    *n += head_size(len, v->type == MLY_V_STR ? 32 : 0) + len;
    return 0;
  case MLY_V_ARRAY:
  case MLY_V_MAP:
    if (depth >= MLY_VALUE_MAX_DEPTH)
      return MLY_EINVAL;
    len = v->u.a.len; /* the same place in both layouts */
    if (len > UINT32_MAX)
      return MLY_ERANGE;
    *n += head_size(len, 16);
    for (size_t i = 0; i < len; i++) {
      const mly_value *c = v->type == MLY_V_ARRAY ? v->u.a.v[i] : v->u.m.v[i].val;
      if (v->type == MLY_V_MAP) {
        size_t k = box_of(v->u.m.v[i].key)->len;
        if (k > UINT32_MAX)
          return MLY_ERANGE;
        *n += head_size(k, 32) + k;
      }
      int rc = size_any(c, depth + 1, n);
      if (rc)
        return rc;
    }
    return 0;
  default:
    return MLY_EINVAL;
  }
}

/* A big-endian head: tag, then `bytes` bytes of n. */
static unsigned char *put_head(unsigned char *p, unsigned char tag,
                               uint64_t n, unsigned bytes) {
  *p++ = tag;
  for (unsigned i = bytes; i-- > 0;)
    *p++ = (unsigned char)(n >> (8 * i));
  return p;
}

static unsigned char *put_uint(unsigned char *p, uint64_t u) {
  if (u < 128)
    return put_head(p, (unsigned char)u, 0, 0);
  if (u <= UINT8_MAX)
    return put_head(p, 0xcc, u, 1);
  if (u <= UINT16_MAX)
    return put_head(p, 0xcd, u, 2);
  if (u <= UINT32_MAX)
    return put_head(p, 0xce, u, 4);
  return put_head(p, 0xcf, u, 8);
}

/* str (fix 32), bin (no fix form), array/map (fix 16): as msgpack-c. */
static unsigned char *put_len(unsigned char *p, size_t n, unsigned char fix,
                              unsigned char t8, unsigned char t16,
                              unsigned char t32, size_t fixmax) {
  if (n < fixmax)
    return put_head(p, (unsigned char)(fix | n), 0, 0);
  if (n <= UINT8_MAX && t8)
    return put_head(p, t8, n, 1);
  if (n <= UINT16_MAX)
    return put_head(p, t16, n, 2);
  return put_head(p, t32, n, 4);
}

/* encode_any's bytes, written straight to p (sized by size_any, which
 * refused what cannot be written). */
static unsigned char *raw_any(const mly_value *v, unsigned char *p) {
  switch (mly_value_type(v)) {
  case MLY_V_NIL: *p++ = 0xc0; return p;
  case MLY_V_BOOL: *p++ = v->u.b ? 0xc3 : 0xc2; return p;
  case MLY_V_INT: {
    int64_t i = v->u.i;
    if (i >= 0) return put_uint(p, (uint64_t)i);
    if (i >= -32) return put_head(p, (unsigned char)(0xe0 | (i + 32)), 0, 0);
    if (i >= INT8_MIN) return put_head(p, 0xd0, (uint64_t)i & 0xff, 1);
    if (i >= INT16_MIN) return put_head(p, 0xd1, (uint64_t)i & 0xffff, 2);
    if (i >= INT32_MIN) return put_head(p, 0xd2, (uint64_t)i & 0xffffffff, 4);
    return put_head(p, 0xd3, (uint64_t)i, 8);
  }
  case MLY_V_UINT: return put_uint(p, v->u.u);
  case MLY_V_DOUBLE: {
    uint64_t bits;
    memcpy(&bits, &v->u.d, sizeof bits);
    return put_head(p, 0xcb, bits, 8);
  }
  case MLY_V_STR:
  case MLY_V_BIN:
    p = v->type == MLY_V_STR
            ? put_len(p, v->u.s.len, 0xa0, 0xd9, 0xda, 0xdb, 32)
            : put_len(p, v->u.s.len, 0, 0xc4, 0xc5, 0xc6, 0);
    memcpy(p, v->u.s.p, v->u.s.len);
    return p + v->u.s.len;
  case MLY_V_ARRAY:
    p = put_len(p, v->u.a.len, 0x90, 0, 0xdc, 0xdd, 16);
    for (size_t i = 0; i < v->u.a.len; i++)
      p = raw_any(v->u.a.v[i], p);
    return p;
  case MLY_V_MAP:
    p = put_len(p, v->u.m.len, 0x80, 0, 0xde, 0xdf, 16);
    for (size_t i = 0; i < v->u.m.len; i++) {
      const key_box *k = box_of(v->u.m.v[i].key);
      p = put_len(p, k->len, 0xa0, 0xd9, 0xda, 0xdb, 32);
      memcpy(p, k->s, k->len);
      p = raw_any(v->u.m.v[i].val, p + k->len);
    }
    return p;
  default:
    return p;
  }
}

size_t value_encode_raw(const mly_value *v, unsigned char *dst) {
  return (size_t)(raw_any(v, dst) - dst);
}

int value_encoded_size(const mly_value *v, size_t *out) {
  size_t n = 0;
  int rc = size_any(v, 0, &n);
  if (rc == 0)
    *out = n;
  return rc;
}

int value_fits(const mly_value *v, size_t max) {
  size_t n = 0;
  if (v == NULL) return 0;
  if (value_encoded_size(v, &n) != 0) return MLY_EINVAL;
  return n > max ? MLY_ERANGE : 0;
}

/* lib/ only (internal.h): the encoding handed to a writer as it is made
 * (the journal appends a context to its batch without a copy). */
int value_encode_to(const mly_value *v,
                    int (*write)(void *data, const char *buf, size_t len),
                    void *data) {
  msgpack_packer pk;
  msgpack_packer_init(&pk, data, write);
  return encode_any(&pk, v, 0);
}

int mly_value_encode(const mly_value *v, char **buf, size_t *len) {
  if (!buf || !len)
    return MLY_EINVAL;
  *buf = NULL;
  *len = 0;
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  int rc = encode_any(&pk, v, 0);
  if (rc) {
    msgpack_sbuffer_destroy(&sb);
    return rc;
  }
  size_t n = sb.size;
  char *p = msgpack_sbuffer_release(&sb);
  /* The sbuffer starts at 8 KiB; give back the slack, as buffers may be
   * queued by the thousand.  If shrinking fails, the big one still works. */
  char *small = realloc(p, n);
  *buf = small ? small : p;
  *len = n;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Decoding.  A hand-written reader (see the file comment): every      */
/* length is checked against the bytes left before anything is        */
/* allocated, and nesting is bounded by MLY_VALUE_MAX_DEPTH.           */

typedef struct reader {
  const unsigned char *p, *end;
  bool truncated; /* it ran out of bytes (rather than meeting bad ones) */
} reader;

static size_t left(const reader *r) { return (size_t)(r->end - r->p); }

/* Are n more bytes there?  Remembers when they are not. */
static bool has(reader *r, uint64_t n) {
  if (n <= left(r))
    return true;
  r->truncated = true;
  return false;
}

/* Read an n-byte big-endian unsigned integer; false when truncated. */
static bool read_be(reader *r, size_t n, uint64_t *out) {
  if (!has(r, n))
    return false;
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++)
    x = (x << 8) | r->p[i];
  r->p += n;
  *out = x;
  return true;
}

/* Store a freshly built value, turning a failed allocation into ENOMEM. */
static int give(mly_value *v, mly_value **out) {
  if (!v)
    return MLY_ENOMEM;
  *out = v;
  return 0;
}

static int decode_any(reader *r, int depth, mly_value **out);

/* msgpack-c's convention: any value >= 0 is a UINT, any < 0 an INT. */
static int decode_signed(reader *r, size_t n, mly_value **out) {
  uint64_t x;
  if (!read_be(r, n, &x))
    return MLY_EBADMSG;
  unsigned bits = 8u * (unsigned)n;
  if (bits < 64 && (x >> (bits - 1)) & 1)
    x |= ~UINT64_C(0) << bits; /* sign-extend */
  if (!(x >> 63))
    return give(mly_value_uint(x), out);
  int64_t i;
  memcpy(&i, &x, sizeof i); /* two's complement, without overflow */
  return give(mly_value_int(i), out);
}

static int decode_unsigned(reader *r, size_t n, mly_value **out) {
  uint64_t x;
  if (!read_be(r, n, &x))
    return MLY_EBADMSG;
  return give(mly_value_uint(x), out);
}

static int decode_float(reader *r, size_t n, mly_value **out) {
  uint64_t x;
  if (!read_be(r, n, &x))
    return MLY_EBADMSG;
  if (n == 8) {
    double d;
    memcpy(&d, &x, sizeof d);
    return give(mly_value_double(d), out);
  }
  uint32_t x32 = (uint32_t)x;
  float f;
  memcpy(&f, &x32, sizeof f);
  return give(mly_value_double((double)f), out);
}

/* A str or bin body of len bytes, whose length took lenbytes (0 when it
 * was packed into the tag). */
static int decode_bytes(reader *r, mly_vtype t, size_t lenbytes,
                        uint64_t len, mly_value **out) {
  if (lenbytes && !read_be(r, lenbytes, &len))
    return MLY_EBADMSG;
  if (!has(r, len))
    return MLY_EBADMSG;
  int rc = give(bytes_new(t, r->p, (size_t)len), out);
  if (rc == 0)
    r->p += len;
  return rc;
}

/* Read a container's element count, or take n when it was in the tag.
 * Each element needs at least one byte (two for a map pair), so a count
 * larger than what is left is refused before anything is allocated. */
static int read_count(reader *r, size_t lenbytes, uint64_t *n,
                      size_t per_item, int depth) {
  if (depth >= MLY_VALUE_MAX_DEPTH)
    return MLY_EBADMSG;
  if (lenbytes && !read_be(r, lenbytes, n))
    return MLY_EBADMSG;
  if (!has(r, *n * per_item))
    return MLY_EBADMSG;
  return 0;
}

static int decode_array(reader *r, size_t lenbytes, uint64_t n, int depth,
                        mly_value **out) {
  int rc = read_count(r, lenbytes, &n, 1, depth);
  if (rc)
    return rc;
  mly_value *a = mly_value_array();
  if (!a)
    return MLY_ENOMEM;
  if (n && !(a->u.a.v = grow(NULL, &a->u.a.cap, n, sizeof(mly_value *))))
    rc = MLY_ENOMEM;
  while (rc == 0 && a->u.a.len < n) {
    rc = decode_any(r, depth + 1, &a->u.a.v[a->u.a.len]);
    if (rc == 0)
      a->u.a.len++;
  }
  if (rc)
    mly_value_free(a);
  else
    *out = a;
  return rc;
}

static bool is_str_tag(unsigned char tag) {
  return (tag & 0xe0) == 0xa0 || (tag >= 0xd9 && tag <= 0xdb);
}

/* A map key: a msgpack str with no NUL inside, returned as a C string. */
static int decode_key(reader *r, char **key) {
  if (!has(r, 1) || !is_str_tag(*r->p))
    return MLY_EBADMSG;
  mly_value *s;
  int rc = decode_any(r, 0, &s);
  if (rc)
    return rc;
  if (memchr(s->u.s.p, '\0', s->u.s.len)) {
    mly_value_free(s);
    return MLY_EBADMSG;
  }
  *key = key_new(s->u.s.p, s->u.s.len);
  mly_value_free(s);
  return *key ? 0 : MLY_ENOMEM;
}

static int key_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Refuse duplicate keys.  Sorting copies of the key pointers costs
 * O(n log n); checking each key with map_find would be quadratic, which
 * a hostile message with many keys could turn into a stall. */
static int check_unique(const mly_value *m) {
  size_t n = m->u.m.len;
  if (n < 2)
    return 0;
  char **keys = calloc(n, sizeof *keys);
  if (!keys)
    return MLY_ENOMEM;
  for (size_t i = 0; i < n; i++)
    keys[i] = m->u.m.v[i].key;
  qsort(keys, n, sizeof *keys, key_cmp);
  int rc = 0;
  for (size_t i = 1; i < n && rc == 0; i++)
    if (strcmp(keys[i - 1], keys[i]) == 0)
      rc = MLY_EBADMSG;
  free(keys);
  return rc;
}

/* One key/value pair, appended to m; capacity was reserved already. */
static int decode_pair(reader *r, mly_value *m, int depth) {
  mly_pair *p = &m->u.m.v[m->u.m.len];
  int rc = decode_key(r, &p->key);
  if (rc)
    return rc;
  rc = decode_any(r, depth + 1, &p->val);
  if (rc) {
    key_free(p->key);
    return rc;
  }
  m->u.m.len++;
  return 0;
}

static int decode_map(reader *r, size_t lenbytes, uint64_t n, int depth,
                      mly_value **out) {
  int rc = read_count(r, lenbytes, &n, 2, depth);
  if (rc)
    return rc;
  mly_value *m = mly_value_map();
  if (!m)
    return MLY_ENOMEM;
  if (n && !(m->u.m.v = grow(NULL, &m->u.m.cap, n, sizeof(mly_pair))))
    rc = MLY_ENOMEM;
  while (rc == 0 && m->u.m.len < n)
    rc = decode_pair(r, m, depth);
  if (rc == 0)
    rc = check_unique(m);
  if (rc)
    mly_value_free(m);
  else
    *out = m;
  return rc;
}

/* The tags of fixed-size formats, by their low bits: 1 << (tag - base)
 * bytes follow.  Anything unlisted (0xc1, ext and fixext) is refused. */
static int decode_tagged(reader *r, unsigned char tag, int depth,
                         mly_value **out) {
  switch (tag) {
  case 0xc0:
    return give(mly_value_nil(), out);
  case 0xc2:
  case 0xc3:
    return give(mly_value_bool(tag == 0xc3), out);
  case 0xc4: case 0xc5: case 0xc6:
    return decode_bytes(r, MLY_V_BIN, (size_t)1 << (tag - 0xc4), 0, out);
  case 0xca:
  case 0xcb:
    return decode_float(r, tag == 0xca ? 4 : 8, out);
  case 0xcc: case 0xcd: case 0xce: case 0xcf:
    return decode_unsigned(r, (size_t)1 << (tag - 0xcc), out);
  case 0xd0: case 0xd1: case 0xd2: case 0xd3:
    return decode_signed(r, (size_t)1 << (tag - 0xd0), out);
  case 0xd9: case 0xda: case 0xdb:
    return decode_bytes(r, MLY_V_STR, (size_t)1 << (tag - 0xd9), 0, out);
  case 0xdc:
  case 0xdd:
    return decode_array(r, tag == 0xdc ? 2 : 4, 0, depth, out);
  case 0xde:
  case 0xdf:
    return decode_map(r, tag == 0xde ? 2 : 4, 0, depth, out);
  default:
    return MLY_EBADMSG;
  }
}

/* depth counts the containers around the value being read. */
static int decode_any(reader *r, int depth, mly_value **out) {
  if (!has(r, 1))
    return MLY_EBADMSG;
  unsigned char tag = *r->p++;
  if (tag <= 0x7f) /* positive fixint */
    return give(mly_value_uint(tag), out);
  if (tag >= 0xe0) /* negative fixint */
    return give(mly_value_int((int64_t)tag - 256), out);
  if ((tag & 0xe0) == 0xa0)
    return decode_bytes(r, MLY_V_STR, 0, tag & 0x1fu, out);
  if ((tag & 0xf0) == 0x90)
    return decode_array(r, 0, tag & 0x0fu, depth, out);
  if ((tag & 0xf0) == 0x80)
    return decode_map(r, 0, tag & 0x0fu, depth, out);
  return decode_tagged(r, tag, depth, out);
}

int mly_value_decode_prefix(const void *buf, size_t len, mly_value **out,
                            size_t *used) {
  if (!out || !used || (!buf && len > 0))
    return MLY_EINVAL;
  *out = NULL;
  reader r = {buf, (const unsigned char *)buf + len, false};
  mly_value *v;
  int rc = len == 0 ? MLY_EAGAIN : decode_any(&r, 0, &v);
  if (rc == MLY_EBADMSG && r.truncated)
    return MLY_EAGAIN; /* a value that has not fully arrived yet */
  if (rc)
    return rc;
  *used = (size_t)(r.p - (const unsigned char *)buf);
  *out = v;
  return 0;
}

int mly_value_decode(const void *buf, size_t len, mly_value **out) {
  if (!out)
    return MLY_EINVAL;
  *out = NULL;
  if (len == 0)
    return MLY_EBADMSG;
  if (!buf)
    return MLY_EINVAL;
  reader r = {buf, (const unsigned char *)buf + len, false};
  mly_value *v;
  int rc = decode_any(&r, 0, &v);
  if (rc)
    return rc;
  if (r.p != r.end) { /* exactly one value: trailing bytes are an error */
    mly_value_free(v);
    return MLY_EBADMSG;
  }
  *out = v;
  return 0;
}
