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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The length of the valid UTF-8 sequence at s (1-4, n > 0), with its
 * code point, or 0 when the bytes are not UTF-8 (overlong forms,
 * surrogates and values past U+10FFFF included). */
size_t utf8_at(const unsigned char *s, size_t n, uint32_t *cp);

/* The longest escaped form of n bytes, without the NUL. */
#define ESC_MAX(n) (4 * (n))

/* Whether any of the n bytes at s would be escaped. */
bool esc_needed(const char *s, size_t n);
/* Escapes n bytes at s into out (cap bytes, always NUL-terminated when
 * cap > 0); stops before an escape that would not fit.  Returns the
 * length written. */
size_t esc_str(const char *s, size_t n, char *out, size_t cap);

#endif
