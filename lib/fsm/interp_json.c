/*
 * interp_json.c - values to JSON and back, for command actions (the
 * context goes to a command's stdin as JSON, its stdout comes back as a
 * JSON object).  Debian's jansson does the text; this file only maps
 * types: nil <-> null, bool, int/uint <-> integer (a uint past INT64_MAX
 * becomes a real), double <-> real, string <-> string (bytes that are
 * not UTF-8 are refused: a command could not read them back), binary ->
 * a lowercase hex string, array <-> array, map <-> object.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsmrt.h"

static json_t *to_json(const mly_value *v, int depth) {
  if (depth > MLY_VALUE_MAX_DEPTH) return NULL;
  switch (mly_value_type(v)) {
  case MLY_V_NIL: return json_null();
  case MLY_V_BOOL: {
    bool b = false;
    mly_value_get_bool(v, &b);
    return json_boolean(b);
  }
  case MLY_V_INT: {
    int64_t i = 0;
    mly_value_get_int(v, &i);
    return json_integer(i);
  }
  case MLY_V_UINT: {
    uint64_t u = 0;
    mly_value_get_uint(v, &u);
    return u <= INT64_MAX ? json_integer((json_int_t)u) : json_real((double)u);
  }
  case MLY_V_DOUBLE: {
    double d = 0;
    mly_value_get_double(v, &d);
    return json_real(d); /* NULL for NaN/inf: refused */
  }
  case MLY_V_STR: {
    const char *s;
    size_t n;
    mly_value_get_str(v, &s, &n);
    return json_stringn(s, n); /* NULL when not UTF-8 */
  }
  case MLY_V_BIN: {
    const void *p;
    size_t n;
    mly_value_get_bin(v, &p, &n);
    char *hex = malloc(2 * n + 1);
    if (hex == NULL) return NULL;
    for (size_t i = 0; i < n; i++)
      snprintf(hex + 2 * i, 3, "%02x", ((const unsigned char *)p)[i]);
    hex[2 * n] = '\0';
    json_t *j = json_stringn(hex, 2 * n);
    free(hex);
    return j;
  }
  case MLY_V_ARRAY: {
    json_t *a = json_array();
    for (size_t i = 0; a && i < mly_value_len(v); i++) {
      json_t *e = to_json(mly_array_at(v, i), depth + 1);
      if (e == NULL || json_array_append_new(a, e) < 0) {
        json_decref(a);
        return NULL;
      }
    }
    return a;
  }
  case MLY_V_MAP: {
    json_t *o = json_object();
    for (size_t i = 0; o && i < mly_value_len(v); i++) {
      const char *k;
      mly_value *e;
      mly_map_at(v, i, &k, &e);
      json_t *j = to_json(e, depth + 1);
      if (j == NULL || json_object_set_new(o, k, j) < 0) {
        json_decref(o);
        return NULL;
      }
    }
    return o;
  }
  }
  return NULL;
}

int fsm_json_encode(const mly_value *v, char **out, size_t *len) {
  json_t *j = to_json(v, 0);
  if (j == NULL) return MLY_EINVAL;
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(j);
  if (s == NULL) return MLY_ENOMEM;
  *out = s;
  *len = strlen(s);
  return 0;
}

static mly_value *from_json(json_t *j, int depth) {
  if (depth > MLY_VALUE_MAX_DEPTH) return NULL;
  switch (json_typeof(j)) {
  case JSON_NULL: return mly_value_nil();
  case JSON_TRUE: return mly_value_bool(true);
  case JSON_FALSE: return mly_value_bool(false);
  case JSON_INTEGER: return mly_value_int(json_integer_value(j));
  case JSON_REAL: return mly_value_double(json_real_value(j));
  case JSON_STRING: return mly_value_strn(json_string_value(j), json_string_length(j));
  case JSON_ARRAY: {
    mly_value *a = mly_value_array();
    size_t i;
    json_t *e;
    json_array_foreach(j, i, e) {
      mly_value *x = from_json(e, depth + 1);
      if (a == NULL || x == NULL || mly_array_push(a, x) < 0) {
        if (a == NULL || x == NULL) mly_value_free(x);
        mly_value_free(a);
        return NULL;
      }
    }
    return a;
  }
  case JSON_OBJECT: {
    mly_value *o = mly_value_map();
    const char *k;
    json_t *e;
    json_object_foreach(j, k, e) {
      mly_value *x = from_json(e, depth + 1);
      if (o == NULL || x == NULL || mly_map_set(o, k, x) < 0) {
        if (o == NULL || x == NULL) mly_value_free(x);
        mly_value_free(o);
        return NULL;
      }
    }
    return o;
  }
  }
  return NULL;
}

int fsm_json_decode_object(const char *buf, size_t len, mly_value **out,
                           char *err, size_t errlen) {
  json_error_t je;
  json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
  if (j == NULL) {
    snprintf(err, errlen, "not JSON (line %d, column %d: %s)", je.line,
             je.column, je.text);
    return MLY_EINVAL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    snprintf(err, errlen, "not a JSON object");
    return MLY_EINVAL;
  }
  mly_value *v = from_json(j, 0);
  json_decref(j);
  if (v == NULL) {
    snprintf(err, errlen, "nested too deep, or out of memory");
    return MLY_EINVAL;
  }
  *out = v;
  return 0;
}
