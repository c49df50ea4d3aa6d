/*
** test_value.c - tests for the `value` layer (lib/value.c).
**
** Builds, reads, copies and compares value trees through the public API,
** pins the msgpack wire format with hand-written byte strings, and feeds
** the decoder hostile input: every truncation of a valid message,
** trailing bytes, excessive nesting, non-string and duplicate keys, ext
** types, absurd declared sizes and a few thousand random mutations.  Run
** it under ASan/LSan: most refusals are also checks that nothing leaks.
*/
#include "mealy.h"

#include <check.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A byte string literal and its length, for the two-argument helpers. */
#define BYTES(...)                                                        \
  ((const unsigned char[]){__VA_ARGS__}),                                 \
      sizeof((const unsigned char[]){__VA_ARGS__})

/* ------------------------------------------------------------------ */
/* Helpers.  Each reports the caller's line, since check reports the   */
/* line of the failing assertion.                                      */

/* Encode v (taking ownership), compare with the expected bytes, then
 * decode those bytes and compare with v: both directions of the wire. */
static void wire_(mly_value *v, const unsigned char *exp, size_t n, int line) {
  char *buf;
  size_t len;
  ck_assert_msg(v != NULL, "line %d: value", line);
  ck_assert_msg(mly_value_encode(v, &buf, &len) == 0, "line %d: encode", line);
  ck_assert_msg(len == n, "line %d: encoded %zu bytes, want %zu", line, len,
                n);
  ck_assert_msg(memcmp(buf, exp, n) == 0, "line %d: encoded bytes differ",
                line);
  free(buf);
  mly_value *d;
  ck_assert_msg(mly_value_decode(exp, n, &d) == 0, "line %d: decode", line);
  ck_assert_msg(mly_value_equal(v, d), "line %d: decoded value differs",
                line);
  mly_value_free(d);
  mly_value_free(v);
}
#define WIRE(v, ...) wire_((v), BYTES(__VA_ARGS__), __LINE__)

/* Decoding must fail with err and leave *out NULL. */
static void refused_(const unsigned char *b, size_t n, int err, int line) {
  mly_value *out = (mly_value *)&out; /* poison: must become NULL */
  int rc = mly_value_decode(b, n, &out);
  ck_assert_msg(rc == err, "line %d: decode gave %d, want %d", line, rc, err);
  ck_assert_msg(out == NULL, "line %d: out not cleared", line);
}
#define REFUSED(...) refused_(BYTES(__VA_ARGS__), MLY_EBADMSG, __LINE__)

/* Decode bytes that must be valid. */
static mly_value *decoded_(const unsigned char *b, size_t n, int line) {
  mly_value *out = NULL;
  int rc = mly_value_decode(b, n, &out);
  ck_assert_msg(rc == 0, "line %d: decode gave %d", line, rc);
  ck_assert_msg(out != NULL, "line %d: no value", line);
  return out;
}
#define DECODED(...) decoded_(BYTES(__VA_ARGS__), __LINE__)

/* Encode then decode, returning the copy that went over the wire. */
static mly_value *roundtrip(const mly_value *v) {
  char *buf;
  size_t len;
  ck_assert_int_eq(mly_value_encode(v, &buf, &len), 0);
  mly_value *d = NULL;
  ck_assert_int_eq(mly_value_decode(buf, len, &d), 0);
  free(buf);
  ck_assert(mly_value_equal(v, d));
  ck_assert(mly_value_equal(d, v));
  return d;
}

static uint64_t bits_of(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

static double double_of(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

static mly_value *push(mly_value *a, mly_value *e) {
  ck_assert_int_eq(mly_array_push(a, e), 0);
  return a;
}

/* {"nil":nil, "t":true, "f":false, "i":-5, "min":INT64_MIN, "u":7,
 *  "max":UINT64_MAX, "d":-0.5, "s":"hé", "e":"", "z":"a\0b",
 *  "b":bin(00 ff 00), "eb":bin(), "a":[1,"two",[],{}], "m":{"x":{"y":[nil]}},
 *  "long": 300 x 'q'} */
static mly_value *sample(void) {
  mly_value *m = mly_value_map();
  char longs[301];
  ck_assert_ptr_nonnull(m);
  memset(longs, 'q', 300);
  longs[300] = '\0';
  ck_assert_int_eq(mly_map_set(m, "nil", mly_value_nil()), 0);
  ck_assert_int_eq(mly_map_set_bool(m, "t", true), 0);
  ck_assert_int_eq(mly_map_set_bool(m, "f", false), 0);
  ck_assert_int_eq(mly_map_set_int(m, "i", -5), 0);
  ck_assert_int_eq(mly_map_set_int(m, "min", INT64_MIN), 0);
  ck_assert_int_eq(mly_map_set_uint(m, "u", 7), 0);
  ck_assert_int_eq(mly_map_set_uint(m, "max", UINT64_MAX), 0);
  ck_assert_int_eq(mly_map_set_double(m, "d", -0.5), 0);
  ck_assert_int_eq(mly_map_set_str(m, "s", "h\xc3\xa9"), 0);
  ck_assert_int_eq(mly_map_set_str(m, "e", ""), 0);
  ck_assert_int_eq(mly_map_set(m, "z", mly_value_strn("a\0b", 3)), 0);
  ck_assert_int_eq(mly_map_set(m, "b", mly_value_bin("\0\xff\0", 3)), 0);
  ck_assert_int_eq(mly_map_set(m, "eb", mly_value_bin(NULL, 0)), 0);
  mly_value *a = mly_value_array();
  push(a, mly_value_int(1));
  push(a, mly_value_str("two"));
  push(a, mly_value_array());
  push(a, mly_value_map());
  ck_assert_int_eq(mly_map_set(m, "a", a), 0);
  mly_value *y = push(mly_value_array(), mly_value_nil());
  mly_value *x = mly_value_map();
  ck_assert_int_eq(mly_map_set(x, "y", y), 0);
  mly_value *mm = mly_value_map();
  ck_assert_int_eq(mly_map_set(mm, "x", x), 0);
  ck_assert_int_eq(mly_map_set(m, "m", mm), 0);
  ck_assert_int_eq(mly_map_set_str(m, "long", longs), 0);
  return m;
}

/* Depth nested arrays around the integer 1: [[...[1]...]]. */
static mly_value *nested_arrays(int depth) {
  mly_value *v = mly_value_uint(1);
  for (int i = 0; i < depth; i++)
    v = push(mly_value_array(), v);
  return v;
}

/* ------------------------------------------------------------------ */
/* Constructors and typed reads.                                       */

START_TEST(t_scalars) {
  mly_value *n = mly_value_nil(), *b = mly_value_bool(true);
  mly_value *i = mly_value_int(-42), *u = mly_value_uint(42);
  mly_value *d = mly_value_double(2.5);
  bool bv = false;
  int64_t iv = 0;
  uint64_t uv = 0;
  double dv = 0;

  ck_assert_int_eq(mly_value_type(n), MLY_V_NIL);
  ck_assert_int_eq(mly_value_type(b), MLY_V_BOOL);
  ck_assert_int_eq(mly_value_type(i), MLY_V_INT);
  ck_assert_int_eq(mly_value_type(u), MLY_V_UINT);
  ck_assert_int_eq(mly_value_type(d), MLY_V_DOUBLE);
  ck_assert_int_eq(mly_value_get_bool(b, &bv), 0);
  ck_assert(bv);
  ck_assert_int_eq(mly_value_get_int(i, &iv), 0);
  ck_assert_int_eq(iv, -42);
  ck_assert_int_eq(mly_value_get_uint(u, &uv), 0);
  ck_assert_uint_eq(uv, 42);
  ck_assert_int_eq(mly_value_get_double(d, &dv), 0);
  ck_assert(dv == 2.5);
  ck_assert_uint_eq(mly_value_len(i), 0);

  /* Type mismatches leave the output alone. */
  bv = false;
  ck_assert_int_eq(mly_value_get_bool(n, &bv), MLY_EINVAL);
  ck_assert_int_eq(mly_value_get_bool(i, &bv), MLY_EINVAL);
  ck_assert(!bv);
  iv = 99;
  ck_assert_int_eq(mly_value_get_int(b, &iv), MLY_EINVAL);
  ck_assert_int_eq(mly_value_get_int(d, &iv), MLY_EINVAL);
  ck_assert_int_eq(iv, 99);
  ck_assert_int_eq(mly_value_get_uint(d, &uv), MLY_EINVAL);
  ck_assert_int_eq(mly_value_get_double(b, &dv), MLY_EINVAL);
  ck_assert_int_eq(mly_value_get_str(i, NULL, NULL), MLY_EINVAL);
  ck_assert_int_eq(mly_value_get_bin(i, NULL, NULL), MLY_EINVAL);

  mly_value *f = mly_value_bool(false);
  ck_assert_int_eq(mly_value_get_bool(f, &bv), 0);
  ck_assert(!bv);

  mly_value_free(n);
  mly_value_free(b);
  mly_value_free(i);
  mly_value_free(u);
  mly_value_free(d);
  mly_value_free(f);
}
END_TEST

START_TEST(t_int_conversions) {
  mly_value *big = mly_value_uint((uint64_t)INT64_MAX + 1);
  mly_value *fits = mly_value_uint((uint64_t)INT64_MAX);
  mly_value *neg = mly_value_int(-1), *zero = mly_value_int(0);
  mly_value *min = mly_value_int(INT64_MIN), *umax = mly_value_uint(UINT64_MAX);
  int64_t iv = 7;
  uint64_t uv = 7;
  double dv;

  ck_assert_int_eq(mly_value_get_int(big, &iv), MLY_ERANGE);
  ck_assert_int_eq(iv, 7);
  ck_assert_int_eq(mly_value_get_int(fits, &iv), 0);
  ck_assert_int_eq(iv, INT64_MAX);
  ck_assert_int_eq(mly_value_get_uint(neg, &uv), MLY_ERANGE);
  ck_assert_uint_eq(uv, 7);
  ck_assert_int_eq(mly_value_get_uint(zero, &uv), 0);
  ck_assert_uint_eq(uv, 0);
  ck_assert_int_eq(mly_value_get_uint(min, &uv), MLY_ERANGE);
  ck_assert_int_eq(mly_value_get_int(min, &iv), 0);
  ck_assert(iv == INT64_MIN);
  ck_assert_int_eq(mly_value_get_uint(umax, &uv), 0);
  ck_assert(uv == UINT64_MAX);
  ck_assert_int_eq(mly_value_get_uint(fits, &uv), 0);
  ck_assert(uv == (uint64_t)INT64_MAX);

  /* get_double accepts ints of both kinds. */
  ck_assert_int_eq(mly_value_get_double(neg, &dv), 0);
  ck_assert(dv == -1.0);
  ck_assert_int_eq(mly_value_get_double(umax, &dv), 0);
  ck_assert(dv == 18446744073709551616.0);
  ck_assert_int_eq(mly_value_get_double(min, &dv), 0);
  ck_assert(dv == -9223372036854775808.0);

  /* A NULL value is nil: no typed read accepts it. */
  ck_assert_int_eq(mly_value_get_int(NULL, &iv), MLY_EINVAL);
  ck_assert_int_eq(mly_value_get_uint(NULL, &uv), MLY_EINVAL);
  ck_assert_int_eq(mly_value_get_double(NULL, &dv), MLY_EINVAL);
  ck_assert_int_eq(mly_value_get_bool(NULL, NULL), MLY_EINVAL);
  ck_assert_int_eq(mly_value_get_str(NULL, NULL, NULL), MLY_EINVAL);
  ck_assert_int_eq(mly_value_get_bin(NULL, NULL, NULL), MLY_EINVAL);

  mly_value_free(big);
  mly_value_free(fits);
  mly_value_free(neg);
  mly_value_free(zero);
  mly_value_free(min);
  mly_value_free(umax);
}
END_TEST

START_TEST(t_strings) {
  const char *s = NULL;
  size_t len = 99;
  char src[] = "hello";
  mly_value *v = mly_value_str(src);

  src[0] = 'j'; /* the value holds its own copy */
  ck_assert_int_eq(mly_value_type(v), MLY_V_STR);
  ck_assert_int_eq(mly_value_get_str(v, &s, &len), 0);
  ck_assert_str_eq(s, "hello");
  ck_assert_uint_eq(len, 5);
  ck_assert_uint_eq(mly_value_len(v), 0); /* a string is a scalar */
  ck_assert_int_eq(mly_value_get_bin(v, NULL, NULL), MLY_EINVAL);
  ck_assert_int_eq(mly_value_get_int(v, NULL), MLY_EINVAL);
  mly_value_free(v);

  v = mly_value_strn("a\0b\0", 4);
  ck_assert_int_eq(mly_value_get_str(v, &s, &len), 0);
  ck_assert_uint_eq(len, 4);
  ck_assert(memcmp(s, "a\0b\0", 5) == 0); /* and NUL-terminated */
  mly_value_free(v);

  v = mly_value_strn("xyz", 2); /* only len bytes are taken */
  ck_assert_int_eq(mly_value_get_str(v, &s, &len), 0);
  ck_assert_str_eq(s, "xy");
  mly_value_free(v);

  v = mly_value_str("");
  ck_assert_int_eq(mly_value_get_str(v, &s, &len), 0);
  ck_assert_str_eq(s, "");
  ck_assert_uint_eq(len, 0);
  mly_value_free(v);

  v = mly_value_strn(NULL, 0);
  ck_assert_int_eq(mly_value_get_str(v, &s, &len), 0);
  ck_assert_ptr_nonnull(s);
  ck_assert_uint_eq(len, 0);
  mly_value_free(v);

  ck_assert_ptr_null(mly_value_str(NULL));
  ck_assert_ptr_null(mly_value_strn(NULL, 3));
  ck_assert_ptr_null(mly_value_strn("x", SIZE_MAX)); /* len + 1 overflows */
}
END_TEST

START_TEST(t_binary) {
  const void *p = NULL;
  size_t len = 99;
  mly_value *v = mly_value_bin("\x00\x01\x02", 3);

  ck_assert_int_eq(mly_value_type(v), MLY_V_BIN);
  ck_assert_int_eq(mly_value_get_bin(v, &p, &len), 0);
  ck_assert_uint_eq(len, 3);
  ck_assert(memcmp(p, "\x00\x01\x02", 3) == 0);
  ck_assert_int_eq(mly_value_get_str(v, NULL, NULL), MLY_EINVAL);
  mly_value_free(v);

  v = mly_value_bin(NULL, 0);
  ck_assert_int_eq(mly_value_get_bin(v, &p, &len), 0);
  ck_assert_uint_eq(len, 0);
  mly_value_free(v);
  ck_assert_ptr_null(mly_value_bin(NULL, 1));
}
END_TEST

START_TEST(t_vtype_names) {
  ck_assert_str_eq(mly_vtype_name(MLY_V_NIL), "nil");
  ck_assert_str_eq(mly_vtype_name(MLY_V_BOOL), "bool");
  ck_assert_str_eq(mly_vtype_name(MLY_V_INT), "int");
  ck_assert_str_eq(mly_vtype_name(MLY_V_UINT), "uint");
  ck_assert_str_eq(mly_vtype_name(MLY_V_DOUBLE), "double");
  ck_assert_str_eq(mly_vtype_name(MLY_V_STR), "str");
  ck_assert_str_eq(mly_vtype_name(MLY_V_BIN), "bin");
  ck_assert_str_eq(mly_vtype_name(MLY_V_ARRAY), "array");
  ck_assert_str_eq(mly_vtype_name(MLY_V_MAP), "map");
  ck_assert_ptr_nonnull(mly_vtype_name((mly_vtype)99));
  ck_assert_ptr_nonnull(mly_vtype_name((mly_vtype)-1));
}
END_TEST

START_TEST(t_null_values) {
  ck_assert_int_eq(mly_value_type(NULL), MLY_V_NIL);
  ck_assert_uint_eq(mly_value_len(NULL), 0);
  ck_assert_ptr_null(mly_value_copy(NULL));
  mly_value_free(NULL);
  ck_assert_ptr_null(mly_array_at(NULL, 0));
  ck_assert_ptr_null(mly_map_get(NULL, "a"));
  ck_assert_int_eq(mly_map_del(NULL, "a"), MLY_EINVAL);
  ck_assert_int_eq(mly_map_at(NULL, 0, NULL, NULL), MLY_EINVAL);

  /* NULL encodes as nil. */
  char *buf;
  size_t len;
  ck_assert_int_eq(mly_value_encode(NULL, &buf, &len), 0);
  ck_assert_uint_eq(len, 1);
  ck_assert_uint_eq((unsigned char)buf[0], 0xc0);
  free(buf);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Arrays and maps.                                                    */

START_TEST(t_array) {
  mly_value *a = mly_value_array();
  int64_t iv;

  ck_assert_int_eq(mly_value_type(a), MLY_V_ARRAY);
  ck_assert_uint_eq(mly_value_len(a), 0);
  ck_assert_ptr_null(mly_array_at(a, 0));
  for (int64_t i = 0; i < 100; i++)
    ck_assert_int_eq(mly_array_push(a, mly_value_int(i * 3)), 0);
  ck_assert_uint_eq(mly_value_len(a), 100);
  for (size_t i = 0; i < 100; i++) {
    ck_assert_int_eq(mly_value_get_int(mly_array_at(a, i), &iv), 0);
    ck_assert_int_eq(iv, (int64_t)i * 3);
  }
  ck_assert_ptr_null(mly_array_at(a, 100));
  ck_assert_ptr_null(mly_array_at(a, SIZE_MAX));

  /* Wrong container or NULL element: EINVAL, and the element is freed
   * (LeakSanitizer would report it otherwise). */
  mly_value *m = mly_value_map();
  ck_assert_int_eq(mly_array_push(m, mly_value_str("lost")), MLY_EINVAL);
  ck_assert_int_eq(mly_array_push(NULL, mly_value_int(1)), MLY_EINVAL);
  ck_assert_int_eq(mly_array_push(a, NULL), MLY_EINVAL);
  ck_assert_uint_eq(mly_value_len(a), 100);
  ck_assert_uint_eq(mly_value_len(m), 0);
  ck_assert_ptr_null(mly_array_at(m, 0));
  mly_value_free(m);
  mly_value_free(a);
}
END_TEST

/* Check that map m holds exactly the keys given, in that order. */
static void map_keys_(const mly_value *m, const char *const *keys, size_t n,
                      int line) {
  ck_assert_msg(mly_value_len(m) == n, "line %d: %zu pairs, want %zu", line,
                mly_value_len(m), n);
  for (size_t i = 0; i < n; i++) {
    const char *k = NULL;
    mly_value *v = NULL;
    ck_assert_msg(mly_map_at(m, i, &k, &v) == 0, "line %d: at %zu", line, i);
    ck_assert_msg(strcmp(k, keys[i]) == 0, "line %d: key %zu is %s, want %s",
                  line, i, k, keys[i]);
    ck_assert_msg(mly_map_get(m, k) == v, "line %d: get %s", line, k);
  }
  ck_assert_msg(mly_map_at(m, n, NULL, NULL) == MLY_ENOENT, "line %d", line);
}
#define MAP_KEYS(m, ...)                                                  \
  map_keys_((m), (const char *const[]){__VA_ARGS__},                      \
            sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *),  \
            __LINE__)

START_TEST(t_map_order) {
  mly_value *m = mly_value_map();
  int64_t iv;
  char key[] = "b";

  ck_assert_int_eq(mly_value_type(m), MLY_V_MAP);
  ck_assert_int_eq(mly_map_set_int(m, "c", 1), 0);
  ck_assert_int_eq(mly_map_set_int(m, "a", 2), 0);
  ck_assert_int_eq(mly_map_set_int(m, key, 3), 0);
  key[0] = 'z'; /* the map holds its own copy of the key */
  MAP_KEYS(m, "c", "a", "b");

  /* Replacing keeps the position. */
  ck_assert_int_eq(mly_map_set(m, "a", mly_value_str("two")), 0);
  MAP_KEYS(m, "c", "a", "b");
  ck_assert_int_eq(mly_value_type(mly_map_get(m, "a")), MLY_V_STR);

  /* Setting the value already there keeps it alive. */
  mly_value *same = mly_map_get(m, "a");
  ck_assert_int_eq(mly_map_set(m, "a", same), 0);
  ck_assert_ptr_eq(mly_map_get(m, "a"), same);

  /* Deleting keeps the order of the rest; appends go to the end. */
  ck_assert_int_eq(mly_map_del(m, "c"), 0);
  MAP_KEYS(m, "a", "b");
  ck_assert_int_eq(mly_map_del(m, "c"), MLY_ENOENT);
  ck_assert_int_eq(mly_map_set_int(m, "c", 4), 0);
  MAP_KEYS(m, "a", "b", "c");
  ck_assert_int_eq(mly_map_del(m, "b"), 0);
  MAP_KEYS(m, "a", "c");
  ck_assert_int_eq(mly_map_get_int(m, "c", &iv), 0);
  ck_assert_int_eq(iv, 4);
  ck_assert_ptr_null(mly_map_get(m, "b"));
  ck_assert_ptr_null(mly_map_get(m, "z"));
  ck_assert_ptr_null(mly_map_get(m, NULL));
  ck_assert_int_eq(mly_map_del(m, NULL), MLY_EINVAL);
  ck_assert_int_eq(mly_map_del(m, "c"), 0);
  ck_assert_int_eq(mly_map_del(m, "a"), 0);
  ck_assert_uint_eq(mly_value_len(m), 0);
  ck_assert_int_eq(mly_map_at(m, 0, NULL, NULL), MLY_ENOENT);

  /* Many keys: growth keeps every pair reachable, in order. */
  for (int i = 0; i < 500; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    ck_assert_int_eq(mly_map_set_int(m, k, i), 0);
  }
  ck_assert_uint_eq(mly_value_len(m), 500);
  for (int i = 0; i < 500; i++) {
    const char *k;
    char want[16];
    snprintf(want, sizeof want, "k%d", i);
    ck_assert_int_eq(mly_map_at(m, (size_t)i, &k, NULL), 0);
    ck_assert_str_eq(k, want);
    ck_assert_int_eq(mly_map_get_int(m, want, &iv), 0);
    ck_assert_int_eq(iv, i);
  }
  mly_value_free(m);
}
END_TEST

START_TEST(t_map_errors) {
  mly_value *m = mly_value_map(), *a = mly_value_array();

  /* The value is freed on every refusal (LeakSanitizer checks). */
  ck_assert_int_eq(mly_map_set(a, "k", mly_value_str("x")), MLY_EINVAL);
  ck_assert_int_eq(mly_map_set(NULL, "k", mly_value_int(1)), MLY_EINVAL);
  ck_assert_int_eq(mly_map_set(m, NULL, mly_value_int(1)), MLY_EINVAL);
  ck_assert_int_eq(mly_map_set(m, "k", NULL), MLY_EINVAL);
  ck_assert_int_eq(mly_map_set_int(a, "k", 1), MLY_EINVAL);
  ck_assert_int_eq(mly_map_set_uint(m, NULL, 1), MLY_EINVAL);
  ck_assert_int_eq(mly_map_set_str(m, "k", NULL), MLY_EINVAL);
  ck_assert_int_eq(mly_map_set_str(a, "k", "v"), MLY_EINVAL);
  ck_assert_uint_eq(mly_value_len(m), 0);
  ck_assert_uint_eq(mly_value_len(a), 0);
  ck_assert_int_eq(mly_map_del(a, "k"), MLY_EINVAL);
  ck_assert_int_eq(mly_map_at(a, 0, NULL, NULL), MLY_EINVAL);
  ck_assert_ptr_null(mly_map_get(a, "k"));

  /* The empty string is a key like any other. */
  ck_assert_int_eq(mly_map_set_int(m, "", 5), 0);
  ck_assert_ptr_nonnull(mly_map_get(m, ""));
  ck_assert_ptr_null(mly_map_get(m, "k"));
  mly_value_free(m);
  mly_value_free(a);
}
END_TEST

START_TEST(t_map_shorthands) {
  mly_value *m = mly_value_map();
  int64_t iv = 0;
  uint64_t uv = 0;
  double dv = 0;
  bool bv = false;
  const char *s = NULL;

  ck_assert_int_eq(mly_map_set_int(m, "i", -3), 0);
  ck_assert_int_eq(mly_map_set_uint(m, "u", UINT64_MAX), 0);
  ck_assert_int_eq(mly_map_set_double(m, "d", 0.25), 0);
  ck_assert_int_eq(mly_map_set_bool(m, "b", true), 0);
  ck_assert_int_eq(mly_map_set_str(m, "s", "text"), 0);
  MAP_KEYS(m, "i", "u", "d", "b", "s");

  ck_assert_int_eq(mly_map_get_int(m, "i", &iv), 0);
  ck_assert_int_eq(iv, -3);
  ck_assert_int_eq(mly_map_get_uint(m, "u", &uv), 0);
  ck_assert(uv == UINT64_MAX);
  ck_assert_int_eq(mly_map_get_double(m, "d", &dv), 0);
  ck_assert(dv == 0.25);
  ck_assert_int_eq(mly_map_get_double(m, "i", &dv), 0);
  ck_assert(dv == -3.0);
  ck_assert_int_eq(mly_map_get_bool(m, "b", &bv), 0);
  ck_assert(bv);
  ck_assert_int_eq(mly_map_get_str(m, "s", &s), 0);
  ck_assert_str_eq(s, "text");

  /* Missing keys, range and type errors, as the typed reads. */
  ck_assert_int_eq(mly_map_get_int(m, "nope", &iv), MLY_ENOENT);
  ck_assert_int_eq(mly_map_get_uint(m, "nope", &uv), MLY_ENOENT);
  ck_assert_int_eq(mly_map_get_double(m, "nope", &dv), MLY_ENOENT);
  ck_assert_int_eq(mly_map_get_bool(m, "nope", &bv), MLY_ENOENT);
  ck_assert_int_eq(mly_map_get_str(m, "nope", &s), MLY_ENOENT);
  ck_assert_int_eq(mly_map_get_int(m, "u", &iv), MLY_ERANGE);
  ck_assert_int_eq(mly_map_get_uint(m, "i", &uv), MLY_ERANGE);
  ck_assert_int_eq(mly_map_get_int(m, "s", &iv), MLY_EINVAL);
  ck_assert_int_eq(mly_map_get_bool(m, "i", &bv), MLY_EINVAL);
  ck_assert_int_eq(mly_map_get_str(m, "b", &s), MLY_EINVAL);
  ck_assert_int_eq(mly_map_get_double(m, "s", &dv), MLY_EINVAL);
  ck_assert_int_eq(mly_map_get_int(m, NULL, &iv), MLY_EINVAL);
  ck_assert_int_eq(mly_map_get_int(NULL, "i", &iv), MLY_EINVAL);
  mly_value *a = mly_value_array();
  ck_assert_int_eq(mly_map_get_int(a, "i", &iv), MLY_EINVAL);
  mly_value_free(a);

  /* A shorthand set replaces in place too. */
  ck_assert_int_eq(mly_map_set_bool(m, "i", false), 0);
  MAP_KEYS(m, "i", "u", "d", "b", "s");
  ck_assert_int_eq(mly_map_get_bool(m, "i", &bv), 0);
  ck_assert(!bv);
  mly_value_free(m);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Copy and equality.                                                  */

START_TEST(t_copy_independent) {
  mly_value *orig = sample();
  mly_value *copy = mly_value_copy(orig);
  const char *s1, *s2;

  ck_assert_ptr_nonnull(copy);
  ck_assert_ptr_ne(copy, orig);
  ck_assert(mly_value_equal(orig, copy));
  MAP_KEYS(copy, "nil", "t", "f", "i", "min", "u", "max", "d", "s", "e", "z",
           "b", "eb", "a", "m", "long");
  ck_assert_int_eq(mly_map_get_str(orig, "s", &s1), 0);
  ck_assert_int_eq(mly_map_get_str(copy, "s", &s2), 0);
  ck_assert_ptr_ne(s1, s2);

  /* Changes to the original, deep down, do not reach the copy. */
  mly_value *oa = mly_map_get(orig, "a");
  push(oa, mly_value_int(5));
  ck_assert(!mly_value_equal(orig, copy));
  ck_assert_uint_eq(mly_value_len(mly_map_get(copy, "a")), 4);
  mly_value *ox = mly_map_get(mly_map_get(orig, "m"), "x");
  ck_assert_int_eq(mly_map_set_int(ox, "y", 1), 0);
  mly_value *cy = mly_map_get(mly_map_get(mly_map_get(copy, "m"), "x"), "y");
  ck_assert_int_eq(mly_value_type(cy), MLY_V_ARRAY);

  /* Freeing the original leaves the copy whole (ASan: no use after free). */
  mly_value_free(orig);
  ck_assert_str_eq(s2, "h\xc3\xa9");
  mly_value *again = sample();
  ck_assert(mly_value_equal(again, copy));
  mly_value_free(again);

  /* Scalars copy too. */
  mly_value *d = mly_value_double(-0.0), *dc = mly_value_copy(d);
  ck_assert(mly_value_equal(d, dc));
  mly_value_free(d);
  mly_value_free(dc);
  mly_value_free(copy);
}
END_TEST

START_TEST(t_equal_scalars) {
  mly_value *i5 = mly_value_int(5), *u5 = mly_value_uint(5);
  mly_value *u6 = mly_value_uint(6), *d5 = mly_value_double(5.0);
  mly_value *im1 = mly_value_int(-1), *umax = mly_value_uint(UINT64_MAX);
  mly_value *nil = mly_value_nil(), *i0 = mly_value_int(0);
  mly_value *t = mly_value_bool(true), *f = mly_value_bool(false);

  /* INT and UINT with the same mathematical value are equal: msgpack
   * does not keep the difference. */
  ck_assert(mly_value_equal(i5, u5));
  ck_assert(mly_value_equal(u5, i5));
  ck_assert(!mly_value_equal(u5, u6));
  ck_assert(!mly_value_equal(i5, u6));
  ck_assert(!mly_value_equal(im1, umax)); /* same bits, not the same number */
  ck_assert(!mly_value_equal(umax, im1));
  ck_assert(!mly_value_equal(i5, d5));    /* no int/double equality */
  ck_assert(!mly_value_equal(d5, u5));
  ck_assert(mly_value_equal(t, t));
  ck_assert(!mly_value_equal(t, f));
  ck_assert(!mly_value_equal(f, nil));
  ck_assert(!mly_value_equal(i0, nil));
  ck_assert(!mly_value_equal(i0, f));
  /* NULL is nil. */
  ck_assert(mly_value_equal(NULL, NULL));
  ck_assert(mly_value_equal(NULL, nil));
  ck_assert(mly_value_equal(nil, NULL));
  ck_assert(!mly_value_equal(NULL, i0));

  mly_value *vals[] = {i5, u5, u6, d5, im1, umax, nil, i0, t, f};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
    mly_value_free(vals[i]);
}
END_TEST

START_TEST(t_equal_doubles) {
  /* Doubles compare by bits: NaN equals the same NaN, -0.0 is not 0.0. */
  mly_value *nan1 = mly_value_double(double_of(0x7ff8000000000000u));
  mly_value *nan2 = mly_value_double(double_of(0x7ff8000000000000u));
  mly_value *nan3 = mly_value_double(double_of(0x7ff8000000000001u));
  mly_value *pz = mly_value_double(0.0), *nz = mly_value_double(-0.0);
  mly_value *inf = mly_value_double(INFINITY);

  ck_assert(mly_value_equal(nan1, nan2));
  ck_assert(!mly_value_equal(nan1, nan3));
  ck_assert(!mly_value_equal(pz, nz));
  ck_assert(mly_value_equal(inf, inf));
  ck_assert(!mly_value_equal(inf, nan1));
  mly_value_free(nan1);
  mly_value_free(nan2);
  mly_value_free(nan3);
  mly_value_free(pz);
  mly_value_free(nz);
  mly_value_free(inf);
}
END_TEST

START_TEST(t_equal_containers) {
  mly_value *s = mly_value_str("ab"), *b = mly_value_bin("ab", 2);
  mly_value *z1 = mly_value_strn("a\0b", 3), *z2 = mly_value_strn("a\0c", 3);
  mly_value *z3 = mly_value_strn("a\0", 2), *a = mly_value_str("a");
  ck_assert(!mly_value_equal(s, b)); /* str and bin are distinct */
  ck_assert(!mly_value_equal(z1, z2));
  ck_assert(!mly_value_equal(z3, a));

  mly_value *a12 = push(push(mly_value_array(), mly_value_int(1)),
                        mly_value_uint(2));
  mly_value *a12u = push(push(mly_value_array(), mly_value_uint(1)),
                         mly_value_int(2));
  mly_value *a21 = push(push(mly_value_array(), mly_value_int(2)),
                        mly_value_int(1));
  mly_value *a1 = push(mly_value_array(), mly_value_int(1));
  mly_value *ea = mly_value_array(), *em = mly_value_map();
  ck_assert(mly_value_equal(a12, a12u));
  ck_assert(!mly_value_equal(a12, a21));
  ck_assert(!mly_value_equal(a12, a1));
  ck_assert(!mly_value_equal(a1, a12));
  ck_assert(!mly_value_equal(ea, em));

  /* Maps compare as sets of pairs, in any order. */
  mly_value *m1 = mly_value_map(), *m2 = mly_value_map();
  mly_map_set_int(m1, "a", 1);
  mly_map_set_int(m1, "b", 2);
  mly_map_set_uint(m2, "b", 2);
  mly_map_set_uint(m2, "a", 1);
  ck_assert(mly_value_equal(m1, m2));
  ck_assert(mly_value_equal(m2, m1));
  mly_map_set_int(m2, "c", 3);
  ck_assert(!mly_value_equal(m1, m2));
  ck_assert(!mly_value_equal(m2, m1));
  mly_map_del(m2, "c");
  mly_map_set_int(m2, "a", 9);
  ck_assert(!mly_value_equal(m1, m2));
  mly_map_del(m2, "a");
  mly_map_set_int(m2, "x", 1); /* same size and values, other key */
  ck_assert(!mly_value_equal(m1, m2));

  mly_value *vals[] = {s, b, z1, z2, z3, a, a12, a12u, a21, a1, ea, em, m1, m2};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
    mly_value_free(vals[i]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The wire format, byte by byte.                                      */

START_TEST(t_wire_scalars) {
  WIRE(mly_value_nil(), 0xc0);
  WIRE(mly_value_bool(false), 0xc2);
  WIRE(mly_value_bool(true), 0xc3);
  WIRE(mly_value_uint(0), 0x00);
  WIRE(mly_value_int(1), 0x01);
  WIRE(mly_value_uint(127), 0x7f);
  WIRE(mly_value_uint(128), 0xcc, 0x80);
  WIRE(mly_value_int(200), 0xcc, 0xc8);
  WIRE(mly_value_uint(65535), 0xcd, 0xff, 0xff);
  WIRE(mly_value_uint(65536), 0xce, 0x00, 0x01, 0x00, 0x00);
  WIRE(mly_value_uint(UINT64_MAX), 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
       0xff, 0xff);
  WIRE(mly_value_int(-1), 0xff);
  WIRE(mly_value_int(-32), 0xe0);
  WIRE(mly_value_int(-33), 0xd0, 0xdf);
  WIRE(mly_value_int(-129), 0xd1, 0xff, 0x7f);
  WIRE(mly_value_int(-32769), 0xd2, 0xff, 0xff, 0x7f, 0xff);
  WIRE(mly_value_int(INT64_MIN), 0xd3, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
       0x00, 0x00);
  WIRE(mly_value_double(1.0), 0xcb, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00,
       0x00);
  WIRE(mly_value_double(-0.0), 0xcb, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
       0x00);
}
END_TEST

START_TEST(t_wire_bytes) {
  WIRE(mly_value_str(""), 0xa0);
  WIRE(mly_value_str("a"), 0xa1, 'a');
  WIRE(mly_value_strn("a\0b", 3), 0xa3, 'a', 0x00, 'b');
  WIRE(mly_value_bin(NULL, 0), 0xc4, 0x00);
  WIRE(mly_value_bin("\x01\x02", 2), 0xc4, 0x02, 0x01, 0x02);

  /* Longer strings switch to str8 and str16. */
  char s32[33], s256[257];
  memset(s32, 'x', 32);
  s32[32] = '\0';
  memset(s256, 'y', 256);
  s256[256] = '\0';
  char *buf;
  size_t len;
  mly_value *v = mly_value_str(s32);
  ck_assert_int_eq(mly_value_encode(v, &buf, &len), 0);
  ck_assert_uint_eq(len, 34);
  ck_assert(memcmp(buf, "\xd9\x20xxx", 5) == 0);
  free(buf);
  mly_value_free(v);
  v = mly_value_str(s256);
  ck_assert_int_eq(mly_value_encode(v, &buf, &len), 0);
  ck_assert_uint_eq(len, 259);
  ck_assert(memcmp(buf, "\xda\x01\x00yy", 5) == 0);
  free(buf);
  mly_value_free(v);
}
END_TEST

START_TEST(t_wire_containers) {
  mly_value *m = mly_value_map();
  mly_map_set_int(m, "a", 1);
  WIRE(m, 0x81, 0xa1, 'a', 0x01); /* {"a":1} */

  WIRE(mly_value_array(), 0x90);
  WIRE(mly_value_map(), 0x80);
  /* [1, [2]] */
  WIRE(push(push(mly_value_array(), mly_value_int(1)),
            push(mly_value_array(), mly_value_int(2))),
       0x92, 0x01, 0x91, 0x02);
  /* {"k":[nil,true],"s":"v"}: insertion order is wire order */
  m = mly_value_map();
  mly_map_set(m, "k",
              push(push(mly_value_array(), mly_value_nil()),
                   mly_value_bool(true)));
  mly_map_set_str(m, "s", "v");
  WIRE(m, 0x82, 0xa1, 'k', 0x92, 0xc0, 0xc3, 0xa1, 's', 0xa1, 'v');

  /* Sixteen elements take array16. */
  mly_value *a = mly_value_array();
  for (int i = 0; i < 16; i++)
    push(a, mly_value_nil());
  WIRE(a, 0xdc, 0x00, 0x10, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0,
       0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0);
}
END_TEST

/* Formats our encoder never writes, but other msgpack writers do. */
START_TEST(t_decode_formats) {
  mly_value *v;
  int64_t iv;
  uint64_t uv;
  double dv;
  const char *s;
  const void *p;
  size_t len;

  v = DECODED(0xd0, 0x80); /* int8 -128 */
  ck_assert_int_eq(mly_value_type(v), MLY_V_INT);
  ck_assert_int_eq(mly_value_get_int(v, &iv), 0);
  ck_assert_int_eq(iv, -128);
  mly_value_free(v);
  v = DECODED(0xd0, 0x05); /* a non-negative signed int becomes UINT */
  ck_assert_int_eq(mly_value_type(v), MLY_V_UINT);
  ck_assert_int_eq(mly_value_get_uint(v, &uv), 0);
  ck_assert_uint_eq(uv, 5);
  mly_value_free(v);
  v = DECODED(0xd1, 0xff, 0x00);
  ck_assert_int_eq(mly_value_get_int(v, &iv), 0);
  ck_assert_int_eq(iv, -256);
  mly_value_free(v);
  v = DECODED(0xd2, 0xff, 0xff, 0xff, 0xff);
  ck_assert_int_eq(mly_value_get_int(v, &iv), 0);
  ck_assert_int_eq(iv, -1);
  mly_value_free(v);
  v = DECODED(0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
  ck_assert_int_eq(mly_value_type(v), MLY_V_UINT);
  ck_assert_int_eq(mly_value_get_int(v, &iv), 0);
  ck_assert(iv == INT64_MAX);
  mly_value_free(v);
  v = DECODED(0xcd, 0x01, 0x00); /* uint16 256 */
  ck_assert_int_eq(mly_value_get_uint(v, &uv), 0);
  ck_assert_uint_eq(uv, 256);
  mly_value_free(v);
  v = DECODED(0xca, 0x3f, 0x80, 0x00, 0x00); /* float32 1.0 */
  ck_assert_int_eq(mly_value_type(v), MLY_V_DOUBLE);
  ck_assert_int_eq(mly_value_get_double(v, &dv), 0);
  ck_assert(dv == 1.0);
  mly_value_free(v);
  v = DECODED(0xca, 0xff, 0xc0, 0x00, 0x00); /* float32 NaN */
  ck_assert_int_eq(mly_value_get_double(v, &dv), 0);
  ck_assert(isnan(dv));
  mly_value_free(v);
  v = DECODED(0xd9, 0x03, 'a', 'b', 'c'); /* str8 */
  ck_assert_int_eq(mly_value_get_str(v, &s, &len), 0);
  ck_assert_str_eq(s, "abc");
  mly_value_free(v);
  v = DECODED(0xdb, 0x00, 0x00, 0x00, 0x01, 'z'); /* str32 */
  ck_assert_int_eq(mly_value_get_str(v, &s, &len), 0);
  ck_assert_str_eq(s, "z");
  mly_value_free(v);
  v = DECODED(0xc6, 0x00, 0x00, 0x00, 0x02, 0xde, 0xad); /* bin32 */
  ck_assert_int_eq(mly_value_get_bin(v, &p, &len), 0);
  ck_assert_uint_eq(len, 2);
  ck_assert(memcmp(p, "\xde\xad", 2) == 0);
  mly_value_free(v);
  v = DECODED(0xdd, 0x00, 0x00, 0x00, 0x01, 0xc0); /* array32 [nil] */
  ck_assert_uint_eq(mly_value_len(v), 1);
  ck_assert_int_eq(mly_value_type(mly_array_at(v, 0)), MLY_V_NIL);
  mly_value_free(v);
  v = DECODED(0xde, 0x00, 0x01, 0xd9, 0x01, 'k', 0xc3); /* map16, str8 key */
  ck_assert_int_eq(mly_value_type(mly_map_get(v, "k")), MLY_V_BOOL);
  mly_value_free(v);
  v = DECODED(0xdf, 0x00, 0x00, 0x00, 0x00); /* map32 {} */
  ck_assert_int_eq(mly_value_type(v), MLY_V_MAP);
  ck_assert_uint_eq(mly_value_len(v), 0);
  mly_value_free(v);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Round trips.                                                        */

START_TEST(t_roundtrip_all_types) {
  mly_value *m = sample();
  mly_value *d = roundtrip(m);
  const char *s;
  size_t len;
  const void *p;
  int64_t iv;
  uint64_t uv;
  double dv;

  MAP_KEYS(d, "nil", "t", "f", "i", "min", "u", "max", "d", "s", "e", "z",
           "b", "eb", "a", "m", "long");
  ck_assert_int_eq(mly_value_type(mly_map_get(d, "nil")), MLY_V_NIL);
  ck_assert_int_eq(mly_map_get_int(d, "min", &iv), 0);
  ck_assert(iv == INT64_MIN);
  ck_assert_int_eq(mly_map_get_uint(d, "max", &uv), 0);
  ck_assert(uv == UINT64_MAX);
  ck_assert_int_eq(mly_map_get_int(d, "u", &iv), 0); /* UINT 7 reads as int */
  ck_assert_int_eq(iv, 7);
  ck_assert_int_eq(mly_map_get_double(d, "d", &dv), 0);
  ck_assert(dv == -0.5);
  ck_assert_int_eq(mly_value_get_str(mly_map_get(d, "z"), &s, &len), 0);
  ck_assert_uint_eq(len, 3);
  ck_assert(memcmp(s, "a\0b", 4) == 0);
  ck_assert_int_eq(mly_value_get_str(mly_map_get(d, "e"), &s, &len), 0);
  ck_assert_uint_eq(len, 0);
  ck_assert_str_eq(s, "");
  ck_assert_int_eq(mly_value_get_bin(mly_map_get(d, "b"), &p, &len), 0);
  ck_assert_uint_eq(len, 3);
  ck_assert(memcmp(p, "\0\xff\0", 3) == 0);
  ck_assert_int_eq(mly_value_get_bin(mly_map_get(d, "eb"), &p, &len), 0);
  ck_assert_uint_eq(len, 0);
  mly_value *a = mly_map_get(d, "a");
  ck_assert_uint_eq(mly_value_len(a), 4);
  ck_assert_int_eq(mly_value_type(mly_array_at(a, 2)), MLY_V_ARRAY);
  ck_assert_int_eq(mly_value_type(mly_array_at(a, 3)), MLY_V_MAP);
  mly_value *y = mly_map_get(mly_map_get(mly_map_get(d, "m"), "x"), "y");
  ck_assert_int_eq(mly_value_type(mly_array_at(y, 0)), MLY_V_NIL);
  ck_assert_int_eq(mly_map_get_str(d, "long", &s), 0);
  ck_assert_uint_eq(strlen(s), 300);
  mly_value_free(d);
  mly_value_free(m);

  /* Every scalar at the top level too. */
  mly_value *tops[] = {
      mly_value_nil(),           mly_value_bool(true),
      mly_value_int(INT64_MIN),  mly_value_uint(UINT64_MAX),
      mly_value_int(-1),         mly_value_double(DBL_MAX),
      mly_value_double(DBL_MIN), mly_value_str(""),
      mly_value_strn("\0", 1),   mly_value_bin(NULL, 0),
      mly_value_array(),         mly_value_map(),
  };
  for (size_t i = 0; i < sizeof tops / sizeof tops[0]; i++) {
    d = roundtrip(tops[i]);
    mly_value_free(d);
    mly_value_free(tops[i]);
  }
}
END_TEST

START_TEST(t_roundtrip_doubles) {
  /* Bits survive the trip: signed zero, infinities and NaN payloads. */
  const uint64_t bits[] = {
      0x0000000000000000u, 0x8000000000000000u, 0x7ff0000000000000u,
      0xfff0000000000000u, 0x7ff8000000000000u, 0x7ff8000000000001u,
      0xfff8000000000000u, 0x0000000000000001u, 0x3fb999999999999au,
  };
  for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++) {
    mly_value *v = mly_value_double(double_of(bits[i]));
    mly_value *d = roundtrip(v);
    double dv;
    ck_assert_int_eq(mly_value_get_double(d, &dv), 0);
    ck_assert_msg(bits_of(dv) == bits[i], "bits %016" PRIx64, bits[i]);
    mly_value_free(v);
    mly_value_free(d);
  }
}
END_TEST

START_TEST(t_roundtrip_large) {
  /* More than 65535 elements takes array32; long strings take str32. */
  enum { N = 70000 };
  mly_value *a = mly_value_array();
  for (uint64_t i = 0; i < N; i++)
    push(a, i % 2 ? mly_value_uint(i) : mly_value_int(-(int64_t)i));
  char *buf;
  size_t len;
  ck_assert_int_eq(mly_value_encode(a, &buf, &len), 0);
  ck_assert(memcmp(buf, "\xdd\x00\x01\x11\x70", 5) == 0);
  free(buf);
  mly_value *d = roundtrip(a);
  ck_assert_uint_eq(mly_value_len(d), N);
  int64_t iv;
  ck_assert_int_eq(mly_value_get_int(mly_array_at(d, N - 2), &iv), 0);
  ck_assert_int_eq(iv, -(N - 2));
  ck_assert_int_eq(mly_value_get_int(mly_array_at(d, N - 1), &iv), 0);
  ck_assert_int_eq(iv, N - 1);
  mly_value_free(d);
  mly_value_free(a);

  char *big = malloc(N);
  ck_assert_ptr_nonnull(big);
  for (size_t i = 0; i < N; i++)
    big[i] = (char)(i * 7);
  mly_value *s = mly_value_strn(big, N), *b = mly_value_bin(big, N);
  ck_assert_int_eq(mly_value_encode(s, &buf, &len), 0);
  ck_assert_uint_eq(len, N + 5);
  ck_assert(memcmp(buf, "\xdb\x00\x01\x11\x70", 5) == 0);
  free(buf);
  ck_assert_int_eq(mly_value_encode(b, &buf, &len), 0);
  ck_assert(memcmp(buf, "\xc6\x00\x01\x11\x70", 5) == 0);
  free(buf);
  mly_value_free(roundtrip(s));
  mly_value_free(roundtrip(b));
  mly_value_free(s);
  mly_value_free(b);
  free(big);
}
END_TEST

START_TEST(t_decode_large_map) {
  /* A map32 of 70000 pairs "k<i>": i, written by hand.  Decoding must not
   * be quadratic in the pair count (duplicate checks included). */
  enum { N = 70000 };
  size_t cap = 5 + (size_t)N * 16, n = 0;
  unsigned char *b = malloc(cap);
  ck_assert_ptr_nonnull(b);
  memcpy(b, "\xdf\x00\x01\x11\x70", 5);
  n = 5;
  for (int i = 0; i < N; i++) {
    int kl = snprintf((char *)b + n + 1, 12, "k%d", i);
    b[n] = (unsigned char)(0xa0 | kl);
    n += 1 + (size_t)kl;
    b[n++] = 0xce; /* uint32 */
    b[n++] = (unsigned char)(i >> 24);
    b[n++] = (unsigned char)(i >> 16);
    b[n++] = (unsigned char)(i >> 8);
    b[n++] = (unsigned char)i;
  }
  mly_value *m = decoded_(b, n, __LINE__);
  ck_assert_uint_eq(mly_value_len(m), N);
  const char *k;
  mly_value *v;
  uint64_t uv;
  ck_assert_int_eq(mly_map_at(m, N - 1, &k, &v), 0);
  ck_assert_str_eq(k, "k69999");
  ck_assert_int_eq(mly_value_get_uint(v, &uv), 0);
  ck_assert_uint_eq(uv, N - 1);
  ck_assert_int_eq(mly_map_get_uint(m, "k12345", &uv), 0);
  ck_assert_uint_eq(uv, 12345);
  mly_value_free(roundtrip(m));

  /* The same message with its last key repeated is refused. */
  ck_assert_uint_eq(b[n - 12], 0xa6); /* last pair: a6 "k69999" ce xxxx */
  memcpy(b + n - 11, "k12345", 6);
  mly_value *out = NULL;
  ck_assert_int_eq(mly_value_decode(b, n, &out), MLY_EBADMSG);
  ck_assert_ptr_null(out);
  mly_value_free(m);
  free(b);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Depth.                                                              */

START_TEST(t_depth_limit) {
  unsigned char b[MLY_VALUE_MAX_DEPTH + 8];
  char *buf;
  size_t len;

  /* MLY_VALUE_MAX_DEPTH nested containers are fine both ways; this is
   * also deeper than msgpack-c's own unpacker can go (32). */
  mly_value *ok = nested_arrays(MLY_VALUE_MAX_DEPTH);
  mly_value_free(roundtrip(ok));
  ck_assert_int_eq(mly_value_encode(ok, &buf, &len), 0);
  ck_assert_uint_eq(len, MLY_VALUE_MAX_DEPTH + 1);
  free(buf);
  mly_value_free(ok);

  /* One more is refused by both sides. */
  mly_value *deep = nested_arrays(MLY_VALUE_MAX_DEPTH + 1);
  buf = (char *)&buf;
  ck_assert_int_eq(mly_value_encode(deep, &buf, &len), MLY_EINVAL);
  ck_assert_ptr_null(buf);
  mly_value_free(deep);

  memset(b, 0x91, sizeof b); /* [[[...]]] */
  b[MLY_VALUE_MAX_DEPTH] = 0x01;
  mly_value_free(decoded_(b, MLY_VALUE_MAX_DEPTH + 1, __LINE__));
  b[MLY_VALUE_MAX_DEPTH - 1] = 0x90; /* innermost empty: still 64 */
  mly_value_free(decoded_(b, MLY_VALUE_MAX_DEPTH, __LINE__));
  b[MLY_VALUE_MAX_DEPTH - 1] = 0x91;
  b[MLY_VALUE_MAX_DEPTH] = 0x90; /* 65 arrays */
  refused_(b, MLY_VALUE_MAX_DEPTH + 1, MLY_EBADMSG, __LINE__);
  b[MLY_VALUE_MAX_DEPTH + 1] = 0x01;
  b[MLY_VALUE_MAX_DEPTH] = 0x91;
  refused_(b, MLY_VALUE_MAX_DEPTH + 2, MLY_EBADMSG, __LINE__);

  /* Maps count the same: {"a":{"a":...}} */
  unsigned char mb[3 * (MLY_VALUE_MAX_DEPTH + 1) + 1];
  for (int i = 0; i <= MLY_VALUE_MAX_DEPTH; i++)
    memcpy(mb + 3 * i, "\x81\xa1" "a", 3);
  mb[3 * MLY_VALUE_MAX_DEPTH] = 0xc0;
  mly_value_free(decoded_(mb, 3 * MLY_VALUE_MAX_DEPTH + 1, __LINE__));
  mb[3 * MLY_VALUE_MAX_DEPTH] = 0x81;
  mb[3 * (MLY_VALUE_MAX_DEPTH + 1)] = 0xc0;
  refused_(mb, sizeof mb, MLY_EBADMSG, __LINE__);

  /* A huge depth fails fast instead of overflowing the stack. */
  size_t n = 1000000;
  unsigned char *h = malloc(n);
  ck_assert_ptr_nonnull(h);
  memset(h, 0x91, n);
  refused_(h, n, MLY_EBADMSG, __LINE__);
  free(h);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Refusals.                                                           */

START_TEST(t_decode_truncated) {
  /* Every proper prefix of a valid message is refused, without leaks. */
  mly_value *m = sample();
  mly_value *big = mly_value_array();
  for (int i = 0; i < 40; i++)
    push(big, mly_value_uint((uint64_t)i << 40));
  ck_assert_int_eq(mly_map_set(m, "big", big), 0);
  char *buf;
  size_t len;
  ck_assert_int_eq(mly_value_encode(m, &buf, &len), 0);
  for (size_t n = 0; n < len; n++)
    refused_((const unsigned char *)buf, n, MLY_EBADMSG, (int)n);
  mly_value *d = decoded_((const unsigned char *)buf, len, __LINE__);
  ck_assert(mly_value_equal(d, m));
  mly_value_free(d);
  free(buf);
  mly_value_free(m);

  REFUSED(0xcb, 0x3f, 0xf0); /* float64 cut short */
  REFUSED(0xcd, 0x01);
  REFUSED(0xd9);              /* str8 without its length */
  REFUSED(0xa3, 'a', 'b');    /* fixstr 3 with 2 bytes */
  REFUSED(0x92, 0x01);        /* array 2 with 1 element */
  REFUSED(0x82, 0xa1, 'a', 0x01); /* map 2 with 1 pair */
  REFUSED(0x81, 0xa1, 'a');   /* key without value */
}
END_TEST

START_TEST(t_decode_trailing) {
  REFUSED(0xc0, 0xc0);
  REFUSED(0x01, 0x00);
  REFUSED(0x90, 0x90);
  REFUSED(0x81, 0xa1, 'a', 0x01, 0x00);
  REFUSED(0xa1, 'a', 'b');
  REFUSED(0x91, 0x01, 0x01);
}
END_TEST

START_TEST(t_decode_bad_keys) {
  REFUSED(0x81, 0x01, 0x02);             /* int key */
  REFUSED(0x81, 0xff, 0x02);             /* negative int key */
  REFUSED(0x81, 0xc0, 0x01);             /* nil key */
  REFUSED(0x81, 0xc3, 0x01);             /* bool key */
  REFUSED(0x81, 0xc4, 0x01, 'a', 0x01);  /* bin key: str and bin differ */
  REFUSED(0x81, 0x90, 0x01);             /* array key */
  REFUSED(0x81, 0x80, 0x01);             /* map key */
  REFUSED(0x81, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x01); /* double key */
  REFUSED(0x82, 0xa1, 'a', 0x01, 0x02, 0x03); /* second key bad */
  REFUSED(0x91, 0x81, 0x01, 0x02);       /* nested */
  /* A key with a NUL inside cannot be named through the C API. */
  REFUSED(0x81, 0xa3, 'a', 0x00, 'b', 0x01);
  /* Duplicate keys are refused, not resolved. */
  REFUSED(0x82, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02);
  REFUSED(0x83, 0xa1, 'b', 0x01, 0xa1, 'a', 0x01, 0xd9, 0x01, 'b', 0x02);
  REFUSED(0x81, 0xa1, 'x', 0x82, 0xa0, 0xc0, 0xa0, 0xc0);
  /* Keys that only share a prefix are distinct. */
  mly_value *v = DECODED(0x82, 0xa1, 'a', 0x01, 0xa2, 'a', 'a', 0x02);
  ck_assert_uint_eq(mly_value_len(v), 2);
  mly_value_free(v);
  v = DECODED(0x81, 0xa0, 0x05); /* the empty key is allowed */
  ck_assert_ptr_nonnull(mly_map_get(v, ""));
  mly_value_free(v);
}
END_TEST

START_TEST(t_decode_ext_and_reserved) {
  REFUSED(0xc1);                                   /* never used */
  REFUSED(0xd4, 0x01, 0x00);                       /* fixext 1 */
  REFUSED(0xd5, 0x01, 0x00, 0x00);                 /* fixext 2 */
  REFUSED(0xd6, 0x01, 0x00, 0x00, 0x00, 0x00);     /* fixext 4 */
  REFUSED(0xd7, 0xff, 0, 0, 0, 0, 0, 0, 0, 0);     /* timestamp 64 */
  REFUSED(0xd8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  REFUSED(0xc7, 0x00, 0x01);                       /* ext 8, empty */
  REFUSED(0xc8, 0x00, 0x01, 0x01, 0x00);           /* ext 16 */
  REFUSED(0xc9, 0x00, 0x00, 0x00, 0x00, 0x01);     /* ext 32 */
  REFUSED(0x92, 0x01, 0xd4, 0x01, 0x00);           /* inside an array */
  REFUSED(0x81, 0xa1, 'a', 0xc7, 0x00, 0x01);      /* as a map value */
}
END_TEST

START_TEST(t_decode_bad_args) {
  mly_value *out = (mly_value *)&out;
  unsigned char nil = 0xc0;

  /* The empty buffer holds no value. */
  ck_assert_int_eq(mly_value_decode(&nil, 0, &out), MLY_EBADMSG);
  ck_assert_ptr_null(out);
  out = (mly_value *)&out;
  ck_assert_int_eq(mly_value_decode(NULL, 0, &out), MLY_EBADMSG);
  ck_assert_ptr_null(out);
  ck_assert_int_eq(mly_value_decode(NULL, 1, &out), MLY_EINVAL);
  ck_assert_int_eq(mly_value_decode(&nil, 1, NULL), MLY_EINVAL);

  mly_value *v = mly_value_nil();
  char *buf;
  size_t len;
  ck_assert_int_eq(mly_value_encode(v, NULL, &len), MLY_EINVAL);
  ck_assert_int_eq(mly_value_encode(v, &buf, NULL), MLY_EINVAL);
  mly_value_free(v);
}
END_TEST

/* A stream of values: each is taken whole, a partial one asks for more. */
START_TEST(t_decode_prefix_stream) {
  mly_value *a = mly_value_array();
  mly_array_push(a, mly_value_str("status"));
  mly_array_push(a, mly_value_int(-7));
  char *ea = NULL, *eb = NULL;
  size_t la = 0, lb = 0;
  ck_assert_int_eq(mly_value_encode(a, &ea, &la), 0);
  ck_assert_int_eq(mly_value_encode(NULL, &eb, &lb), 0); /* nil */
  char *both = malloc(la + lb);
  memcpy(both, ea, la);
  memcpy(both + la, eb, lb);
  mly_value *got = NULL;
  size_t used = 0;
  for (size_t cut = 0; cut < la; cut++)
    ck_assert_int_eq(mly_value_decode_prefix(both, cut, &got, &used), MLY_EAGAIN);
  ck_assert_int_eq(mly_value_decode_prefix(both, la + lb, &got, &used), 0);
  ck_assert_uint_eq(used, la);
  ck_assert(mly_value_equal(got, a));
  mly_value_free(got);
  ck_assert_int_eq(mly_value_decode_prefix(both + la, lb, &got, &used), 0);
  ck_assert_uint_eq(used, lb);
  ck_assert_int_eq(mly_value_type(got), MLY_V_NIL);
  mly_value_free(got);
  static const unsigned char bad[] = {0xc1, 0x00}; /* never used tag */
  ck_assert_int_eq(mly_value_decode_prefix(bad, sizeof bad, &got, &used), MLY_EBADMSG);
  free(both);
  free(ea);
  free(eb);
  mly_value_free(a);
}
END_TEST

START_TEST(t_decode_absurd_sizes) {
  /* Declared sizes far beyond the input are refused before any
   * allocation (msgpack-c's unpacker would try to allocate 100 GB). */
  REFUSED(0xdd, 0xff, 0xff, 0xff, 0xff);
  REFUSED(0xdf, 0xff, 0xff, 0xff, 0xff);
  REFUSED(0xdb, 0xff, 0xff, 0xff, 0xff);
  REFUSED(0xc6, 0xff, 0xff, 0xff, 0xff);
  REFUSED(0xdc, 0xff, 0xff, 0xc0, 0xc0);
  REFUSED(0xde, 0x00, 0x02, 0xa1, 'a', 0xc0);
  REFUSED(0xdd, 0x00, 0x00, 0x00, 0x02, 0xc0);
  REFUSED(0x9f);
  REFUSED(0x8f, 0xa0);
  REFUSED(0xbf, 'x');
}
END_TEST

/* xorshift64: a fixed seed keeps failures reproducible. */
static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Whatever decodes must re-encode and decode to an equal value. */
static void fuzz_one(const unsigned char *b, size_t n) {
  mly_value *v = NULL;
  int rc = mly_value_decode(b, n, &v);
  ck_assert(rc == 0 || rc == MLY_EBADMSG);
  ck_assert((rc == 0) == (v != NULL));
  if (rc == 0) {
    mly_value *d = roundtrip(v);
    mly_value_free(d);
    mly_value_free(v);
  }
}

START_TEST(t_decode_mutations) {
  mly_value *m = sample();
  char *buf;
  size_t len;
  uint64_t seed = 0x9e3779b97f4a7c15u;
  ck_assert_int_eq(mly_value_encode(m, &buf, &len), 0);
  unsigned char *b = malloc(len + 8);
  ck_assert_ptr_nonnull(b);
  for (int iter = 0; iter < 20000; iter++) {
    size_t n = len;
    memcpy(b, buf, len);
    int edits = 1 + (int)(rnd(&seed) % 4);
    for (int e = 0; e < edits; e++)
      b[rnd(&seed) % n] = (unsigned char)rnd(&seed);
    if (iter % 3 == 0)
      n = (size_t)(rnd(&seed) % (len + 1));
    fuzz_one(b, n);
  }
  for (int iter = 0; iter < 20000; iter++) { /* short random strings */
    unsigned char r[24];
    size_t n = (size_t)(rnd(&seed) % sizeof r);
    for (size_t i = 0; i < n; i++)
      r[i] = (unsigned char)rnd(&seed);
    fuzz_one(r, n);
  }
  free(b);
  free(buf);
  mly_value_free(m);
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *value_suite(void) {
  Suite *s = suite_create("value");
  TCase *c = tcase_create("api");
  tcase_add_test(c, t_scalars);
  tcase_add_test(c, t_int_conversions);
  tcase_add_test(c, t_strings);
  tcase_add_test(c, t_binary);
  tcase_add_test(c, t_vtype_names);
  tcase_add_test(c, t_null_values);
  tcase_add_test(c, t_array);
  tcase_add_test(c, t_map_order);
  tcase_add_test(c, t_map_errors);
  tcase_add_test(c, t_map_shorthands);
  tcase_add_test(c, t_copy_independent);
  tcase_add_test(c, t_equal_scalars);
  tcase_add_test(c, t_equal_doubles);
  tcase_add_test(c, t_equal_containers);
  suite_add_tcase(s, c);

  TCase *w = tcase_create("msgpack");
  tcase_set_timeout(w, 60); /* sanitizers make the big cases slow */
  tcase_add_test(w, t_wire_scalars);
  tcase_add_test(w, t_wire_bytes);
  tcase_add_test(w, t_wire_containers);
  tcase_add_test(w, t_decode_formats);
  tcase_add_test(w, t_roundtrip_all_types);
  tcase_add_test(w, t_roundtrip_doubles);
  tcase_add_test(w, t_roundtrip_large);
  tcase_add_test(w, t_decode_large_map);
  tcase_add_test(w, t_depth_limit);
  tcase_add_test(w, t_decode_truncated);
  tcase_add_test(w, t_decode_trailing);
  tcase_add_test(w, t_decode_bad_keys);
  tcase_add_test(w, t_decode_ext_and_reserved);
  tcase_add_test(w, t_decode_bad_args);
  tcase_add_test(w, t_decode_absurd_sizes);
  tcase_add_test(w, t_decode_mutations);
  tcase_add_test(w, t_decode_prefix_stream);
  suite_add_tcase(s, w);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(value_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
