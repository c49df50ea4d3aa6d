/*
** test_value_share.c - shared copies of value trees (value_share, lib/
** only: a YAML machine's dispatch works on one of its context), and the
** encoded length counted without encoding (value_encoded_size), and the
** encoding written straight into a buffer (value_encode_raw).
**
** A shared copy holds the original's nodes until a getter reaches one
** for change; then that container is copied for the tree that reached
** it.  The invariant: whatever is done to either tree through the public
** API, each one stays equal to a deep copy (mly_value_copy) that had the
** same operations, and neither ever sees the other's changes.  Checked
** here by random operations on both trees (and chains of shares) against
** two deep-copied models, freed in random order; run it under ASan/LSan
** too, which checks that no node is freed twice or lost.
*/
#include "internal.h"
#include "mealy.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng % n);
}

static mly_value *random_tree(int depth) {
  switch (depth > 0 ? rnd(6) : rnd(4)) {
  case 0: return mly_value_int((int64_t)rnd(1000) - 500);
  case 1: {
    char s[32];
    snprintf(s, sizeof s, "s%u", rnd(100000));
    return mly_value_str(s);
  }
  case 2: return mly_value_bool(rnd(2));
  case 3: return mly_value_nil();
  case 4: {
    mly_value *a = mly_value_array();
    for (uint32_t i = rnd(4); i > 0; i--) mly_array_push(a, random_tree(depth - 1));
    return a;
  }
  default: {
    mly_value *m = mly_value_map();
    for (uint32_t i = rnd(5); i > 0; i--) {
      char k[8];
      snprintf(k, sizeof k, "k%u", rnd(6));
      mly_map_set(m, k, random_tree(depth - 1));
    }
    return m;
  }
  }
}

/* The same random walk in a tree and its model: they are equal, so the
 * same choices lead to the same place.  Returns the container reached
 * (through the getters that hand a child out for change) in each. */
static void walk(mly_value **t, mly_value **m) {
  while (rnd(3) != 0) {
    size_t n = mly_value_len(*t);
    if (n == 0) return;
    size_t i = rnd((uint32_t)n);
    mly_value *ct, *cm;
    if (mly_value_type(*t) == MLY_V_MAP) {
      ck_assert_int_eq(mly_map_at(*t, i, NULL, &ct), 0);
      ck_assert_int_eq(mly_map_at(*m, i, NULL, &cm), 0);
    } else {
      ct = mly_array_at(*t, i);
      cm = mly_array_at(*m, i);
    }
    mly_vtype ty = mly_value_type(ct);
    if (ty != MLY_V_MAP && ty != MLY_V_ARRAY) return;
    *t = ct;
    *m = cm;
  }
}

/* One change through the public API, done alike to a tree and its
 * model. */
static void change(mly_value *t, mly_value *m) {
  walk(&t, &m);
  uint64_t seed = rng;
  mly_value *v = random_tree(2);
  rng = seed;
  mly_value *w = random_tree(2);
  if (mly_value_type(t) == MLY_V_ARRAY) {
    ck_assert_int_eq(mly_array_push(t, v), 0);
    ck_assert_int_eq(mly_array_push(m, w), 0);
    return;
  }
  char k[8];
  snprintf(k, sizeof k, "k%u", rnd(6));
  if (rnd(3) == 0) {
    mly_value_free(v);
    mly_value_free(w);
    ck_assert_int_eq(mly_map_del(t, k), mly_map_del(m, k));
  } else {
    ck_assert_int_eq(mly_map_set(t, k, v), 0);
    ck_assert_int_eq(mly_map_set(m, k, w), 0);
  }
}

START_TEST(t_share_against_models) {
  for (int round = 0; round < 3000; round++) {
    mly_value *a = mly_value_map();
    for (uint32_t i = rnd(6); i > 0; i--) {
      char k[8];
      snprintf(k, sizeof k, "k%u", rnd(6));
      mly_map_set(a, k, random_tree(3));
    }
    /* up to three trees sharing with one another, each with a model */
    mly_value *t[3], *model[3];
    int nt = 1;
    t[0] = a;
    model[0] = mly_value_copy(a);
    for (int ops = rnd(40); ops > 0; ops--) {
      int i = rnd((uint32_t)nt);
      if (nt < 3 && rnd(5) == 0) {
        t[nt] = value_share(t[i]);
        ck_assert_ptr_nonnull(t[nt]);
        model[nt] = mly_value_copy(model[i]);
        nt++;
      } else if (nt > 1 && rnd(8) == 0) { /* one goes, the rest stay */
        mly_value_free(t[i]);
        mly_value_free(model[i]);
        t[i] = t[nt - 1];
        model[i] = model[nt - 1];
        nt--;
      } else {
        change(t[i], model[i]);
      }
      for (int j = 0; j < nt; j++)
        ck_assert_msg(mly_value_equal(t[j], model[j]),
                      "round %d: tree %d differs from its model", round, j);
    }
    for (int j = 0; j < nt; j++) {
      char *x = NULL, *y = NULL;
      size_t xn = 0, yn = 0;
      ck_assert_int_eq(mly_value_encode(t[j], &x, &xn), 0);
      ck_assert_int_eq(mly_value_encode(model[j], &y, &yn), 0);
      ck_assert(xn == yn && memcmp(x, y, xn) == 0);
      free(x);
      free(y);
    }
    while (nt > 0) { /* in a random order */
      int i = rnd((uint32_t)nt);
      mly_value_free(t[i]);
      mly_value_free(model[i]);
      t[i] = t[nt - 1];
      model[i] = model[nt - 1];
      nt--;
    }
  }
}
END_TEST

/* What is shared is not copied: a scalar is the same node in both trees
 * until one replaces it; a container is copied for the tree that
 * reaches it, and only then. */
START_TEST(t_share_copies_lazily) {
  mly_value *a = mly_value_map();
  mly_map_set_int(a, "n", 1);
  mly_map_set_str(a, "pad", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
  mly_value *sub = mly_value_map();
  mly_map_set_int(sub, "x", 7);
  mly_map_set(a, "sub", sub);
  mly_value *b = value_share(a);
  ck_assert_ptr_ne(a, b);
  ck_assert_ptr_eq(mly_map_get(a, "pad"), mly_map_get(b, "pad"));
  ck_assert_ptr_eq(mly_map_get(a, "n"), mly_map_get(b, "n"));
  mly_map_set_int(b, "n", 2);
  int64_t n = 0;
  ck_assert_int_eq(mly_map_get_int(a, "n", &n), 0);
  ck_assert_int_eq(n, 1);
  mly_value *bs = mly_map_get(b, "sub");
  ck_assert_ptr_ne(bs, sub); /* b got its own copy of the container */
  ck_assert_ptr_eq(mly_map_get(a, "sub"), sub);
  ck_assert_ptr_eq(mly_map_get(bs, "x"), mly_map_get(sub, "x"));
  mly_map_set_int(bs, "y", 8);
  ck_assert_ptr_null(mly_map_get(sub, "y"));
  mly_value_free(a); /* b keeps what it shared */
  ck_assert_int_eq(mly_map_get_int(b, "n", &n), 0);
  ck_assert_int_eq(n, 2);
  const char *s = NULL;
  ck_assert_int_eq(mly_map_get_str(b, "pad", &s), 0);
  ck_assert_str_eq(s, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
  ck_assert_int_eq(mly_map_get_int(bs, "x", &n), 0);
  ck_assert_int_eq(n, 7);
  mly_value_free(b);
}
END_TEST

/* value_encoded_size counts what mly_value_encode writes, and
 * value_encode_raw writes the same bytes, byte for byte,
 * across every size class of every type (fix forms, 8/16/32-bit heads)
 * and random trees; and refuses what it refuses. */
static mly_value *sized(uint32_t kind, size_t n) {
  char *buf = malloc(n + 1);
  memset(buf, 'x', n);
  buf[n] = '\0';
  mly_value *v = NULL;
  switch (kind) {
  case 0: v = mly_value_strn(buf, n); break;
  case 1: v = mly_value_bin(buf, n); break;
  case 2:
    v = mly_value_array();
    for (size_t i = 0; i < n; i++) mly_array_push(v, mly_value_nil());
    break;
  default:
    v = mly_value_map();
    for (size_t i = 0; i < n; i++) {
      char k[24];
      snprintf(k, sizeof k, "%zu", i);
      mly_map_set(v, k, mly_value_bool(i & 1));
    }
    if (n > 0) { /* and a long key */
      mly_map_set(v, buf, mly_value_nil());
    }
  }
  free(buf);
  return v;
}

static void size_is_exact(mly_value *v) {
  char *b = NULL;
  size_t len = 0, n = 0;
  ck_assert_int_eq(mly_value_encode(v, &b, &len), 0);
  ck_assert_int_eq(value_encoded_size(v, &n), 0);
  ck_assert_uint_eq(n, len);
  unsigned char *raw = malloc(n + 1); /* and the same bytes, written raw */
  ck_assert_uint_eq(value_encode_raw(v, raw), n);
  ck_assert(memcmp(raw, b, n) == 0);
  free(raw);
  free(b);
  mly_value_free(v);
}

START_TEST(t_encoded_size_exact) {
  static const size_t lens[] = {0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536};
  for (uint32_t k = 0; k < 4; k++)
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
      if (k < 3 || lens[i] < 4096) /* a map is built in quadratic time;
                                      its head is the array's */
        size_is_exact(sized(k, lens[i]));
  static const int64_t ints[] = {0, 1, 127, 128, 255, 256, 65535, 65536,
                                 4294967295LL, 4294967296LL, INT64_MAX,
                                 -1, -32, -33, -128, -129, -32768, -32769,
                                 -2147483648LL, -2147483649LL, INT64_MIN};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    size_is_exact(mly_value_int(ints[i]));
    if (ints[i] >= 0) size_is_exact(mly_value_uint((uint64_t)ints[i]));
  }
  size_is_exact(mly_value_uint(UINT64_MAX));
  size_is_exact(mly_value_double(0.5));
  size_is_exact(mly_value_double(-1e300));
  for (int i = 0; i < 2000; i++) size_is_exact(random_tree(4));
  /* too deep: refused as the encoder refuses it */
  mly_value *deep = mly_value_array();
  for (int i = 0; i < MLY_VALUE_MAX_DEPTH + 2; i++) {
    mly_value *a = mly_value_array();
    mly_array_push(a, deep);
    deep = a;
  }
  size_t n = 0;
  char *b = NULL;
  size_t len = 0;
  ck_assert_int_eq(value_encoded_size(deep, &n), MLY_EINVAL);
  ck_assert_int_eq(mly_value_encode(deep, &b, &len), MLY_EINVAL);
  mly_value_free(deep);
}
END_TEST

int main(void) {
  Suite *s = suite_create("value_share");
  TCase *c = tcase_create("share");
  tcase_set_timeout(c, 120);
  tcase_add_test(c, t_share_copies_lazily);
  tcase_add_test(c, t_share_against_models);
  tcase_add_test(c, t_encoded_size_exact);
  suite_add_tcase(s, c);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
