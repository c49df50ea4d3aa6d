/*
 * fuzz_alloc.c - an allocation limit for the standalone driver, as
 * libFuzzer's -malloc_limit_mb: the driver is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc, so every allocation of
 * the target and of libmealy comes through here, and one larger than
 * FUZZ_MALLOC_LIMIT_MB (default 64; 0: no limit) is reported and aborts
 * the run, which saves the input (see fuzz_main.c).  An input is at most
 * a few tens of KiB; memory out of proportion to it is a bug, and left
 * alone it shows up only as a slow test or a machine that swaps.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);

#define DEFAULT_LIMIT_MB 64

static size_t g_limit = SIZE_MAX;

/* Read once, before main and before any thread can allocate. */
__attribute__((constructor)) static void read_limit(void) {
  const char *s = getenv("FUZZ_MALLOC_LIMIT_MB");
  unsigned long long mb = s && *s ? strtoull(s, NULL, 10) : DEFAULT_LIMIT_MB;
  g_limit = mb == 0 || mb > (SIZE_MAX >> 20) ? SIZE_MAX : (size_t)mb << 20;
}

static size_t limit(void) { return g_limit; }

/* No allocation from here on: stdio may allocate, so format by hand. */
static void over(size_t n) {
  char buf[160];
  int len = snprintf(buf, sizeof buf, "fuzz_journal: an allocation of %zu "
                     "bytes, past the limit of %zu MiB (FUZZ_MALLOC_LIMIT_MB)\n",
                     n, limit() >> 20);
  if (len > 0) {
    ssize_t w = write(2, buf, (size_t)len < sizeof buf ? (size_t)len : sizeof buf - 1);
    (void)w;
  }
  abort();
}

void *__wrap_malloc(size_t n) {
  if (n > limit()) over(n);
  return __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n) {
  if (n && k > limit() / n) over(k > SIZE_MAX / n ? SIZE_MAX : k * n);
  return __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n) {
  if (n > limit()) over(n);
  return __real_realloc(p, n);
}
