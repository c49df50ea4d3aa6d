/*
 * json.c - a JSON writer for value trees (mly_value), for the commands
 * that print JSON.
 *
 * The output is always valid JSON, whatever the value holds: strings are
 * escaped fully (quotes, backslash, every control character), and a byte
 * that is not part of valid UTF-8 (stray, overlong, a surrogate, past
 * U+10FFFF) is written as \u00XX, its Latin-1 reading, so nothing is
 * dropped silently.  Binaries are hex strings; NaN and infinities, which
 * JSON cannot say, are null.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "esc.h"

/* The length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  uint32_t cp;
  return utf8_at(s, n, &cp);
}

void json_str(FILE *f, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  fputc('"', f);
  for (size_t i = 0; i < n;) {
    size_t k = utf8_seq(p + i, n - i);
    if (p[i] == '"' || p[i] == '\\') fprintf(f, "\\%c", p[i]);
    else if (p[i] == '\n') fputs("\\n", f);
    else if (p[i] == '\t') fputs("\\t", f);
    else if (p[i] == '\r') fputs("\\r", f);
    else if (k == 0 || p[i] < 0x20 || p[i] == 0x7f) fprintf(f, "\\u%04x", p[i]);
    else {
      fwrite(p + i, 1, k, f);
      i += k;
      continue;
    }
    i++;
  }
  fputc('"', f);
}

void json_hex(FILE *f, const void *p, size_t n) {
  fputc('"', f);
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) fprintf(f, "%02x", b[i]);
  fputc('"', f);
}

/* The shortest form that reads back as the same double. */
static void json_double(FILE *f, double d) {
  char buf[32];
  if (!isfinite(d)) {
    fputs("null", f); /* JSON has no NaN or infinity */
    return;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, d);
    if (strtod(buf, NULL) == d) break;
  }
  fputs(buf, f);
}

void json_value(FILE *f, const mly_value *v) {
  const char *s;
  const void *p;
  size_t n;
  int64_t i;
  uint64_t u;
  double d;
  bool b;
  switch (mly_value_type(v)) {
  case MLY_V_NIL: fputs("null", f); break;
  case MLY_V_BOOL:
    mly_value_get_bool(v, &b);
    fputs(b ? "true" : "false", f);
    break;
  case MLY_V_INT: mly_value_get_int(v, &i); fprintf(f, "%" PRId64, i); break;
  case MLY_V_UINT: mly_value_get_uint(v, &u); fprintf(f, "%" PRIu64, u); break;
  case MLY_V_DOUBLE:
    mly_value_get_double(v, &d);
    json_double(f, d);
    break;
  case MLY_V_STR: mly_value_get_str(v, &s, &n); json_str(f, s, n); break;
  case MLY_V_BIN: mly_value_get_bin(v, &p, &n); json_hex(f, p, n); break;
  case MLY_V_ARRAY:
    fputc('[', f);
    for (size_t k = 0; k < mly_value_len(v); k++) {
      if (k) fputc(',', f);
      json_value(f, mly_array_at(v, k));
    }
    fputc(']', f);
    break;
  case MLY_V_MAP:
    fputc('{', f);
    for (size_t k = 0; k < mly_value_len(v); k++) {
      mly_value *val;
      mly_map_at(v, k, &s, &val);
      if (k) fputc(',', f);
      json_str(f, s, strlen(s));
      fputc(':', f);
      json_value(f, val);
    }
    fputc('}', f);
    break;
  }
}

void json_key(json_obj *o, const char *k) {
  if (!o->first) fputc(',', o->f);
  o->first = false;
  json_str(o->f, k, strlen(k));
  fputc(':', o->f);
}
