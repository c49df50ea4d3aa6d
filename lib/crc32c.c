/*
 * crc32c.c - CRC-32C (Castagnoli), the checksum of journal records.
 *
 * The SSE4.2 crc32 instruction does 8 bytes at a time where the CPU has
 * it (chosen at run time); elsewhere a byte table computes the same sum.
 * The table is a compile-time constant (the macros below expand the
 * polynomial division for each byte), so there is no state to set up.
 */
#include "journal.h"

#include <string.h>

#define POLY 0x82f63b78u
#define S(r) (((r) >> 1) ^ (POLY & (0u - ((r)&1u))))
#define T(b) S(S(S(S(S(S(S(S((uint32_t)(b)))))))))
#define R4(n) T(n), T(n + 1), T(n + 2), T(n + 3)
#define R16(n) R4(n), R4(n + 4), R4(n + 8), R4(n + 12)
#define R64(n) R16(n), R16(n + 16), R16(n + 32), R16(n + 48)

static const uint32_t table[256] = {R64(0), R64(64), R64(128), R64(192)};

static uint32_t crc_soft(uint32_t crc, const unsigned char *p, size_t n) {
  while (n--) crc = (crc >> 8) ^ table[(crc ^ *p++) & 0xff];
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
crc_hw(uint32_t crc, const unsigned char *p, size_t n) {
  uint64_t c = crc;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c = __builtin_ia32_crc32di(c, w);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = (uint32_t)c;
  while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return c32;
}
#endif

uint32_t jr_crc32c_more(uint32_t crc, const void *buf, size_t n) {
  const unsigned char *p = buf;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("sse4.2")) return ~crc_hw(~crc, p, n);
#endif
  return ~crc_soft(~crc, p, n);
}

uint32_t jr_crc32c(const void *buf, size_t n) {
  return jr_crc32c_more(0, buf, n);
}

uint32_t jr_crc32c_soft(const void *buf, size_t n) {
  return ~crc_soft(~0u, buf, n);
}
