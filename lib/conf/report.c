/*
 * report.c - the messages of the YAML reader: "FILE:LINE:COL: what is
 * wrong; what to do", handed to the caller's on_error one by one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "conf.h"

#define MSG_LIMIT 2048

/* A message cut to fit must not end inside a UTF-8 sequence, or a
 * terminal would print garbage after it. */
static void trim_utf8(char *s) {
  size_t n = strlen(s), i = n;
  while (i > 0 && n - i < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
  if (i == 0) return;
  unsigned char lead = (unsigned char)s[i - 1];
  size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  if (n - (i - 1) < need) s[i - 1] = '\0';
}

char *mly_conf_format(const mly_conf_msg *m, char *buf, size_t len) {
  if (buf == NULL || len == 0) return buf;
  const char *file = m->file ? m->file : "config";
  int n = m->line ? snprintf(buf, len, "%s:%u:%u: %s", file, m->line, m->col,
                             m->text)
                  : snprintf(buf, len, "%s: %s", file, m->text);
  if (n < 0) buf[0] = '\0';
  else if ((size_t)n >= len) trim_utf8(buf);
  return buf;
}

static void vsay(const mly_conf_options *o, uint32_t line, uint32_t col,
                 const char *fmt, va_list ap) {
  char text[MSG_LIMIT];
  int n = vsnprintf(text, sizeof text, fmt, ap);
  if (n < 0) text[0] = '\0';
  else if ((size_t)n >= sizeof text) trim_utf8(text);
  mly_conf_msg m = {o->path ? o->path : "config", line, col, text};
  if (o->on_error) o->on_error(&m, o->arg);
}

int mly_conf_report(const mly_conf_options *o, uint32_t line, uint32_t col,
                    const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (o) vsay(o, line, col, fmt, ap);
  va_end(ap);
  return MLY_EINVAL;
}

int conf_vbad(mly_conf *c, uint32_t line, uint32_t col, const char *fmt,
              va_list ap) {
  c->nerrors++;
  vsay(&c->o, line, col, fmt, ap);
  return MLY_EINVAL;
}

int mly_conf_bad_at(mly_conf *c, uint32_t line, uint32_t col,
                    const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = conf_vbad(c, line, col, fmt, ap);
  va_end(ap);
  return rc;
}

int mly_conf_bad(mly_conf *c, const mly_conf_node *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = n ? conf_vbad(c, mly_conf_line(n), mly_conf_col(n), fmt, ap)
             : conf_vbad(c, 0, 0, fmt, ap);
  va_end(ap);
  return rc;
}

int mly_conf_nomem(mly_conf *c) {
  mly_conf_bad_at(c, 0, 0, "out of memory while loading the configuration");
  c->stop = true;
  return MLY_ENOMEM;
}

mly_conf_shown mly_conf_show(const char *v) {
  mly_conf_shown o;
  size_t n = strlen(v), cut = n;
  if (n > 40) {
    cut = 40;
    while (cut > 0 && ((unsigned char)v[cut] & 0xC0) == 0x80) cut--;
  }
  size_t w = mly_esc_str(v, cut, o.s, sizeof o.s - 3);
  if (cut < n) memcpy(o.s + w, "...", 4);
  return o;
}

void *mly_conf_user(const mly_conf *c) { return c->o.user; }
const char *mly_conf_path(const mly_conf *c) { return c->path; }
size_t mly_conf_nerrors(const mly_conf *c) { return c->nerrors; }
