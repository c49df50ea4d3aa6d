/*
 * esc.h - text from outside made safe to show on a terminal.
 *
 * What a program writes, a value from a configuration file or a request
 * on the control socket may hold bytes that drive a terminal: ESC
 * sequences, C1 controls (U+0080-U+009F, CSI is U+009B), bidirectional
 * overrides (U+202E shows text right to left).  Shown, they are escaped
 * the way journalctl does: "\x1b", "\u009b", "\u202e"; bytes that are not
 * UTF-8 become "\xNN".  A tab is kept.  Everything else is left as is.
 */
#ifndef MLY_ESC_H
#define MLY_ESC_H

#include "mealy.h"

/* The functions live in libmealy (mealy.h, "Utilities"), which the YAML
 * reader shares; these are their short names here. */
#define ESC_MAX(n) MLY_ESC_MAX(n)

static inline size_t utf8_at(const unsigned char *s, size_t n, uint32_t *cp) {
  return mly_utf8_at(s, n, cp);
}
static inline bool esc_needed(const char *s, size_t n) {
  return mly_esc_needed(s, n);
}
static inline size_t esc_str(const char *s, size_t n, char *out, size_t cap) {
  return mly_esc_str(s, n, out, cap);
}

#endif
