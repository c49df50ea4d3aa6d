/*
 * esc.c - text from outside made safe to show on a terminal (mealy.h,
 * "Utilities"): a configuration value, a program's output, a request.
 */
#include "mealy.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

size_t mly_utf8_at(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned char c = s[0];
  size_t len;
  uint32_t v, min;
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF) len = 3, v = c & 0x0F, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4) len = 4, v = c & 0x07, min = 0x10000;
  else return 0;
  if (len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    v = v << 6 | (s[i] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

/* Code points a terminal acts on: C0 but tab, DEL, C1, and the marks
 * and overrides that change the direction of text. */
static bool is_control(uint32_t cp) {
  return (cp < 0x20 && cp != '\t') || (cp >= 0x7F && cp <= 0x9F) ||
         cp == 0x061C || cp == 0x200E || cp == 0x200F ||
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

bool mly_esc_needed(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t l = mly_utf8_at(u + i, n - i, &cp);
    if (l == 0 || is_control(cp)) return true;
    i += l;
  }
  return false;
}

size_t mly_esc_str(const char *s, size_t n, char *out, size_t cap) {
  const unsigned char *u = (const unsigned char *)s;
  size_t o = 0;
  if (cap == 0) return 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t l = mly_utf8_at(u + i, n - i, &cp);
    char e[8];
    size_t el;
    if (l == 0) {
      el = (size_t)snprintf(e, sizeof e, "\\x%02x", u[i]);
      l = 1;
    } else if (is_control(cp)) {
      el = (size_t)(cp < 0x80 ? snprintf(e, sizeof e, "\\x%02x", (unsigned)cp)
                              : snprintf(e, sizeof e, "\\u%04x", (unsigned)cp));
    } else {
      if (o + l >= cap) break;
      memcpy(out + o, u + i, l);
      o += l;
      i += l;
      continue;
    }
    if (o + el >= cap) break;
    memcpy(out + o, e, el);
    o += el;
    i += l;
  }
  out[o] = '\0';
  return o;
}
