/*
 * metrics_rand.c - random families through a metrics source, for
 * test_metrics_scrape.py's round trip: whatever names, label values
 * (quotes, backslashes, newlines, UTF-8) and numbers (integers past
 * 2^53, fractions, NaN, infinities) a source writes, a Prometheus
 * parser must read back exactly.
 *
 * usage: metrics_rand SEED TEXT EXPECT
 * TEXT gets mly_metrics_write's output; EXPECT one line per sample:
 * "NAME VALUE K1 V1 K2 V2 ..." with every label name and value in hex.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mealy.h"

typedef struct rnd {
  uint64_t s;
  FILE *expect;
} rnd;

static uint64_t next(rnd *r) {
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}

static void hex(FILE *f, const char *s) {
  if (*s == '\0') fputs("-", f); /* an empty value */
  for (; *s; s++) fprintf(f, "%02x", (unsigned char)*s);
}

static void rand_text(rnd *r, char *buf, size_t len) {
  static const char *const atoms[] = {"a", "Z", "0", " ", "\"", "\\", "\n",
                                      "{", "}", "=", ",", "#", "é", "→", "n"};
  size_t n = next(r) % 12, k = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    const char *a = atoms[next(r) % (sizeof atoms / sizeof atoms[0])];
    if (k + strlen(a) + 1 > len) break;
    strcpy(buf + k, a);
    k += strlen(a);
  }
}

/* One sample with a random value; its expected line goes to EXPECT. */
static int sample(rnd *r, mly_metrics *mx, const char *name,
                  const char *const *labels) {
  char text[64];
  int rc;
  switch (next(r) % 6) {
  case 0: {
    uint64_t u = next(r);
    rc = mly_metrics_sample_u64(mx, name, labels, u);
    snprintf(text, sizeof text, "%" PRIu64, u);
    break;
  }
  case 1: {
    double d = (double)(int64_t)next(r) / (double)(1 + next(r) % 1000000);
    rc = mly_metrics_sample(mx, name, labels, d);
    snprintf(text, sizeof text, "%.17g", d);
    break;
  }
  case 2: {
    double d = ldexp((double)(next(r) % 1000), -(int)(next(r) % 60));
    rc = mly_metrics_sample(mx, name, labels, d);
    snprintf(text, sizeof text, "%.17g", d);
    break;
  }
  case 3:
    rc = mly_metrics_sample(mx, name, labels, NAN);
    snprintf(text, sizeof text, "nan");
    break;
  case 4: {
    bool pos = next(r) % 2;
    rc = mly_metrics_sample(mx, name, labels, pos ? INFINITY : -INFINITY);
    snprintf(text, sizeof text, "%s", pos ? "inf" : "-inf");
    break;
  }
  default: {
    int64_t v = (int64_t)(next(r) % 2000000) - 1000000;
    rc = mly_metrics_sample(mx, name, labels, (double)v);
    snprintf(text, sizeof text, "%" PRId64, v);
  }
  }
  fprintf(r->expect, "%s %s", name, text);
  for (size_t i = 0; labels[i]; i += 2) {
    fputc(' ', r->expect);
    hex(r->expect, labels[i]);
    fputc(' ', r->expect);
    hex(r->expect, labels[i + 1]);
  }
  fputc('\n', r->expect);
  return rc;
}

static int source(mly_metrics *mx, void *arg) {
  rnd *r = arg;
  int nfam = 1 + (int)(next(r) % 20);
  for (int f = 0; f < nfam; f++) {
    char name[32], help[64];
    bool counter = next(r) % 2;
    snprintf(name, sizeof name, "rnd_%c%d%s", 'a' + (int)(next(r) % 26), f,
             counter ? "_total" : "");
    rand_text(r, help, sizeof help);
    int rc = mly_metrics_family(mx, name, counter ? MLY_METRIC_COUNTER
                                                  : MLY_METRIC_GAUGE, help);
    if (rc) return rc;
    int nsamp = 1 + (int)(next(r) % 6);
    for (int i = 0; i < nsamp && rc == 0; i++) {
      char vals[2][64], idx[16];
      const char *labels[7];
      int k = 0;
      snprintf(idx, sizeof idx, "%d", i); /* series stay distinct */
      labels[k++] = "i";
      labels[k++] = idx;
      for (int l = 0, nl = (int)(next(r) % 3); l < nl; l++) {
        rand_text(r, vals[l], sizeof vals[l]);
        labels[k++] = l == 0 ? "k_one" : "K2";
        labels[k++] = vals[l];
      }
      labels[k] = NULL;
      rc = sample(r, mx, name, labels);
    }
    if (rc) return rc;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: metrics_rand SEED TEXT EXPECT\n");
    return 2;
  }
  rnd r = {.s = strtoull(argv[1], NULL, 10) * 2654435761u + 88172645463325252ull};
  FILE *text = fopen(argv[2], "w");
  r.expect = fopen(argv[3], "w");
  mly_runtime *rt;
  if (text == NULL || r.expect == NULL || mly_runtime_new(&rt, NULL, NULL) < 0)
    return 1;
  int rc = mly_metrics_source_add(rt, source, &r);
  if (rc == 0) rc = mly_metrics_fprint(rt, text);
  if (rc < 0) fprintf(stderr, "metrics_rand: %s\n", mly_strerror(rc));
  fclose(text);
  fclose(r.expect);
  mly_runtime_close(rt);
  return rc < 0;
}
