/*
 * test_outq.c - the supervisor's own output (outq) and escaping (esc),
 * checked against models with random sequences.
 *
 * outq: random lines written while a reader reads random amounts at
 * random times through a small pipe.  Whatever the order, every line
 * that arrives is whole and exact, lines arrive in the order written,
 * the "N lines of output dropped" notes count exactly the lines missing
 * (see check_stream), and at the end every drop has been said.
 *
 * esc: random bytes escaped: nothing a terminal acts on is left (no C0
 * but tab, no DEL, no C1, no bidi control), the output is UTF-8, and
 * unescaping gives the input back.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "esc.h"
#include "harness.h"
#include "outq.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* ---- outq against its model ---- */

typedef struct sink {
  char *buf;
  size_t len, cap;
} sink;

static void drain(int fd, sink *k, size_t most) {
  while (most > 0) {
    if (k->cap - k->len < 65536) {
      k->cap = k->cap ? k->cap * 2 : 1 << 20;
      k->buf = realloc(k->buf, k->cap);
      ck_assert_ptr_nonnull(k->buf);
    }
    size_t want = most < 65536 ? most : 65536;
    ssize_t n = read(fd, k->buf + k->len, want);
    if (n <= 0) return;
    k->len += (size_t)n;
    most -= (size_t)n;
  }
}

/* Line id: "L<id> " then (id * 7) % 1500 letters derived from the id. */
static size_t make_line(uint64_t id, char *out) {
  size_t n = (size_t)sprintf(out, "L%llu ", (unsigned long long)id);
  size_t extra = (size_t)((id * 7919) % 1500);
  for (size_t i = 0; i < extra; i++) out[n++] = (char)('a' + (id + i) % 26);
  out[n++] = '\n';
  return n;
}

/* The stream against the model.  A note is written once the queue has
 * drained, so every line before it was written before it, every line
 * after it was written after it: the lines missing before a note were
 * all dropped before it (skipped so far <= noted), and every line it
 * counts was written before the first line that follows it (noted <=
 * skipped when that line arrives). */
static void check_stream(const sink *k, uint64_t written, uint64_t dropped) {
  uint64_t expect = 0, skipped = 0, noted = 0, owed = 0;
  size_t pos = 0;
  char line[2048];
  while (pos < k->len) {
    char *nl = memchr(k->buf + pos, '\n', k->len - pos);
    ck_assert_msg(nl != NULL, "a line cut at the end of the stream");
    size_t len = (size_t)(nl - (k->buf + pos)) + 1;
    const char *s = k->buf + pos;
    unsigned long long n = 0;
    if (s[0] == 'L') {
      ck_assert(sscanf(s, "L%llu ", &n) == 1);
      ck_assert_msg(n >= expect, "line %llu after %llu: out of order", n,
                    (unsigned long long)expect);
      skipped += n - expect;
      ck_assert_uint_eq(make_line(n, line), len);
      ck_assert_msg(memcmp(line, s, len) == 0, "line %llu is not whole", n);
      ck_assert_msg(skipped >= owed, "a note counted %llu lines, %llu are "
                    "missing", (unsigned long long)owed,
                    (unsigned long long)skipped);
      expect = n + 1;
    } else {
      const char *m = strstr(s, "mealy");
      ck_assert_msg(m != NULL && m < nl, "an unknown line");
      ck_assert(sscanf(m, "mealy %llu lines of output dropped", &n) == 1);
      noted += n;
      ck_assert_msg(skipped <= noted, "%llu lines missing, notes say %llu",
                    (unsigned long long)skipped, (unsigned long long)noted);
      owed = noted;
    }
    pos += len;
  }
  skipped += written - expect; /* lines dropped at the very end */
  ck_assert_uint_eq(skipped, dropped);
  ck_assert_uint_eq(noted, dropped);
}

static void never_cb(uv_timer_t *t) { (void)t; }

START_TEST(outq_model) {
  for (int round = 0; round < 12; round++) {
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    int fds[2];
    ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
    fcntl(fds[1], F_SETPIPE_SZ, 4096);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    outq *q = outq_open(fds[1]);
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(outq_attach(q, &loop), 0);
    /* the queue's poll does not keep a loop alive (it never holds a run
     * open): something else must, as the runtime does in the supervisor */
    uv_timer_t alive;
    uv_timer_init(&loop, &alive);
    ck_assert_int_eq(uv_timer_start(&alive, never_cb, 1000000, 0), 0);
    sink k = {0};
    uint64_t id = 0;
    int steps = 200 + (int)(next() % 2000);
    char line[2048];
    for (int i = 0; i < steps; i++) {
      uint64_t r = next() % 100;
      if (r < 70) {
        size_t n = make_line(id++, line);
        outq_write(q, line, n);
      } else if (r < 85) {
        drain(fds[0], &k, (size_t)(next() % 20000));
      } else if (r < 97) {
        uv_run(&loop, UV_RUN_NOWAIT);
      } else { /* a long stall: the queue fills up, lines are dropped */
        for (int b = 0; b < 400; b++) outq_write(q, line, make_line(id++, line));
      }
    }
    /* a reader again, until everything and the last note are out */
    for (int i = 0; i < 100000; i++) {
      drain(fds[0], &k, SIZE_MAX);
      uv_run(&loop, UV_RUN_NOWAIT);
      uint64_t before = k.len;
      drain(fds[0], &k, SIZE_MAX);
      if (k.len == before && i > 10) break;
    }
    uint64_t dropped = outq_dropped(q);
    uv_close((uv_handle_t *)&alive, NULL);
    outq_close(q);
    uv_run(&loop, UV_RUN_DEFAULT);
    drain(fds[0], &k, SIZE_MAX);
    check_stream(&k, id, dropped);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    close(fds[0]);
    close(fds[1]);
    free(k.buf);
  }
}
END_TEST

/* The output of a queue to a reader that is gone: every line dropped,
 * never a signal or an error. */
START_TEST(outq_reader_gone) {
  uv_loop_t loop;
  ck_assert_int_eq(uv_loop_init(&loop), 0);
  int fds[2];
  ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
  outq *q = outq_open(fds[1]);
  outq_attach(q, &loop);
  close(fds[0]);
  signal(SIGPIPE, SIG_IGN);
  for (int i = 0; i < 10; i++) outq_write(q, "x\n", 2);
  ck_assert_uint_eq(outq_dropped(q), 10);
  outq_close(q);
  uv_run(&loop, UV_RUN_DEFAULT);
  ck_assert_int_eq(uv_loop_close(&loop), 0);
  close(fds[1]);
}
END_TEST

/* ---- esc against its inverse ---- */

static size_t put_utf8(uint32_t cp, unsigned char *o) {
  if (cp < 0x80) return o[0] = (unsigned char)cp, 1;
  if (cp < 0x800)
    return o[0] = (unsigned char)(0xC0 | cp >> 6),
           o[1] = (unsigned char)(0x80 | (cp & 0x3F)), 2;
  if (cp < 0x10000)
    return o[0] = (unsigned char)(0xE0 | cp >> 12),
           o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F)),
           o[2] = (unsigned char)(0x80 | (cp & 0x3F)), 3;
  return o[0] = (unsigned char)(0xF0 | cp >> 18),
         o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F)),
         o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F)),
         o[3] = (unsigned char)(0x80 | (cp & 0x3F)), 4;
}

static size_t unescape(const char *s, size_t n, unsigned char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    unsigned v;
    if (s[i] == '\\' && i + 3 < n && s[i + 1] == 'x' &&
        sscanf(s + i + 2, "%2x", &v) == 1) {
      out[o++] = (unsigned char)v;
      i += 4;
    } else if (s[i] == '\\' && i + 5 < n && s[i + 1] == 'u' &&
               sscanf(s + i + 2, "%4x", &v) == 1) {
      o += put_utf8(v, out + o);
      i += 6;
    } else {
      out[o++] = (unsigned char)s[i++];
    }
  }
  return o;
}

START_TEST(esc_model) {
  /* bytes drawn to hit the interesting cases often */
  static const unsigned char pool[] = {
      'a', 'Z', ' ', '\t', '\n', '\r', 0x00, 0x1b, '[', 0x07, 0x7f, 0x80,
      0x9b, 0xc2, 0xc3, 0xa9, 0xe2, 0x80, 0xae, 0xaa, 0x8e, 0xd8, 0x9c,
      0xf0, 0x9f, 0x98, 0x80, 0xff, 0xed, 0xa0};
  for (int round = 0; round < 20000; round++) {
    unsigned char in[64];
    size_t n = (size_t)(next() % sizeof in);
    for (size_t i = 0; i < n; i++)
      in[i] = next() % 4 ? pool[next() % sizeof pool] : (unsigned char)next();
    for (size_t i = 0; i < n; i++)
      if (in[i] == '\\') in[i] = 'b'; /* a literal \x would not round-trip */
    char out[ESC_MAX(sizeof in) + 1];
    size_t len = esc_str((const char *)in, n, out, sizeof out);
    ck_assert_uint_eq(strlen(out), len);
    ck_assert_msg(!esc_needed(out, len), "escaped output still needs escaping");
    for (size_t i = 0; i < len;) { /* UTF-8, and nothing a terminal acts on */
      uint32_t cp;
      size_t l = utf8_at((const unsigned char *)out + i, len - i, &cp);
      ck_assert_msg(l > 0, "not UTF-8 at %zu", i);
      ck_assert(cp >= 0x20 || cp == '\t');
      ck_assert(cp != 0x7f && !(cp >= 0x80 && cp <= 0x9f));
      ck_assert(!(cp >= 0x202a && cp <= 0x202e) && !(cp >= 0x2066 && cp <= 0x2069));
      i += l;
    }
    unsigned char back[sizeof in * 2];
    size_t bn = unescape(out, len, back);
    ck_assert_uint_eq(bn, n);
    ck_assert(memcmp(back, in, n) == 0);
    ck_assert(esc_needed((const char *)in, n) == (len != n || memcmp(out, in, n)));
  }
  /* a small buffer: cut before an escape, never inside one */
  char small[6];
  ck_assert_uint_eq(esc_str("ab\x1b" "c", 4, small, sizeof small), 2);
  ck_assert_str_eq(small, "ab");
}
END_TEST

static Suite *outq_suite(void) {
  Suite *s = suite_create("outq");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 280);
  tcase_add_test(tc, outq_model);
  tcase_add_test(tc, outq_reader_gone);
  tcase_add_test(tc, esc_model);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(outq_suite)
