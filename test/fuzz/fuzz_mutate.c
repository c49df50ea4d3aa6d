/*
 * fuzz_mutate.c - the standalone driver's mutator: blind byte changes,
 * and changes that know the input's layout (fuzz_journal.h) and the
 * record format (journal.h), so that many inputs get past the length and
 * CRC checks and reach the body parser and replay.
 *
 * Blind: flip a bit, set a byte (random or a msgpack type tag), truncate,
 * erase or insert a run, splice a run from another input, flip a flag.
 * Aware: mutate inside a record body and fix its CRC; insert a record
 * generated from the record grammar (real field shapes, ids, names and
 * points of the workload, boundary numbers) with a correct CRC and the
 * seq that follows its neighbour; insert random bytes as a CRC-correct
 * record; duplicate, delete or swap records; copy a record from another
 * input; break a length field; recompute every CRC.  Whatever changes a
 * segment's size updates its length in the input's header, so the next
 * segment still starts where it did.
 */
#include "fuzz_driver.h"

#include <string.h>

#include "fuzz_journal.h"
#include "journal.h"

#define MAX_RECS 4096

/* ---- the layout ---- */

typedef struct region {
  size_t start, end;
} region;

/* The segments of an input, cut exactly as the target cuts them. */
static size_t regions(const uint8_t *p, size_t n, region out[FJ_MAX_SEGS]) {
  uint8_t flags = n ? p[0] : 0;
  size_t off = n ? 1 : 0, len[FJ_MAX_SEGS] = {0};
  unsigned nseg = fj_nsegs(flags);
  for (unsigned i = 0; i + 1 < nseg; i++) {
    len[i] = off + 2 <= n ? (size_t)p[off] | (size_t)p[off + 1] << 8 : 0;
    off = off + 2 <= n ? off + 2 : n;
  }
  for (unsigned i = 0; i < nseg; i++) {
    size_t left = n - off;
    size_t k = i + 1 == nseg || len[i] > left ? left : len[i];
    out[i] = (region){off, off + k};
    off += k;
  }
  return nseg;
}

/* Segment i grew or shrank by delta: say so in the header. */
static void resize_region(fz_buf *b, size_t i, long delta) {
  region rg[FJ_MAX_SEGS];
  size_t nseg = regions(b->p, b->n, rg);
  if (i + 1 >= nseg || 1 + 2 * i + 2 > b->n) return; /* the last: no field */
  long len = (long)(rg[i].end - rg[i].start) + delta;
  if (len < 0 || len > 65535) return;
  b->p[1 + 2 * i] = (uint8_t)len;
  b->p[2 + 2 * i] = (uint8_t)(len >> 8);
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

typedef struct rec {
  size_t at;    /* of the header */
  uint32_t len; /* of the body */
  size_t seg;
} rec;

/* Records whose length fits, segment by segment (CRCs not checked). */
static size_t records(const fz_buf *b, rec *out, size_t max) {
  region rg[FJ_MAX_SEGS];
  size_t nseg = regions(b->p, b->n, rg), n = 0;
  for (size_t s = 0; s < nseg; s++) {
    size_t off = rg[s].start;
    while (off + JR_HDR <= rg[s].end && n < max) {
      uint32_t len = le32(b->p + off);
      if (len > rg[s].end - off - JR_HDR) break;
      out[n++] = (rec){off, len, s};
      off += JR_HDR + len;
    }
  }
  return n;
}

static void fix_crc(fz_buf *b, const rec *r) {
  put_le32(b->p + r->at + 4, jr_crc32c(b->p + r->at + JR_HDR, r->len));
}

/* ---- byte surgery ---- */

/* Inserts n bytes of src (which may lie in b) at `at`; returns how many
 * fitted under max. */
static size_t insert(fz_buf *b, size_t max, size_t at, const uint8_t *src,
                     size_t n) {
  static uint8_t tmp[1 << 17];
  if (at > b->n) at = b->n;
  if (n > max - b->n) n = max - b->n;
  if (n > sizeof tmp) n = sizeof tmp;
  memcpy(tmp, src, n); /* before the move shifts it */
  memmove(b->p + at + n, b->p + at, b->n - at);
  memcpy(b->p + at, tmp, n);
  b->n += n;
  return n;
}

static void erase(fz_buf *b, size_t at, size_t n) {
  if (at >= b->n) return;
  if (n > b->n - at) n = b->n - at;
  memmove(b->p + at, b->p + at + n, b->n - at - n);
  b->n -= n;
}

static const uint8_t tags[] = {
    0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2,
    0xc4, 0xc5, 0xc6, 0xc7, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd3,
    0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff};

static uint8_t interesting(fz_rng *r) {
  return tags[fz_below(r, sizeof tags)];
}

/* ---- the record grammar ---- */

static const char *const type_names[] = {"counter", "parent", "pinger",
                                         "ponger",  "waiter", "dropper",
                                         "nosuch",  ""};
/* instance names: a few that clash, a malformed one */
static const char *const inst_names[] = {"a", "b", "order-1", "a/b", ""};
static const char *const point_names[] = {
    "begin", "tick", "kids", "asked", "listen", "hello", "later",
    "nap",   "stop", "line 12", "bogus", ""};

static uint64_t gen_uint(fz_rng *r) {
  static const uint64_t v[] = {0, 1, 2, 3, 5, 127, 128, 255, 256, 65535,
                               65536, 0xffffffffull, 1ull << 32,
                               (1ull << 32) | 1, 1ull << 28, INT64_MAX,
                               (uint64_t)INT64_MAX + 1, UINT64_MAX};
  return fz_below(r, 4) ? v[fz_below(r, sizeof v / sizeof *v)] : fz_next(r);
}

static int64_t gen_int(fz_rng *r) {
  static const int64_t v[] = {0, 1, -1, -32, -33, -128, -129, INT32_MIN,
                              INT64_MIN, INT64_MAX, 1000, 4102444800000};
  return fz_below(r, 4) ? v[fz_below(r, sizeof v / sizeof *v)]
                        : (int64_t)fz_next(r);
}

/* Instance ids: mostly small slots of the first generations, like the
 * workload's, sometimes anything. */
static uint64_t gen_id(fz_rng *r) {
  switch (fz_below(r, 8)) {
  case 0: return 0;
  case 1: return gen_uint(r);
  default: return (uint64_t)(1 + fz_below(r, 2)) << 32 | (1 + fz_below(r, 10));
  }
}

static void gen_name(fz_rng *r, jbuf *b, const char *const *names, size_t n) {
  const char *s = names[fz_below(r, n)];
  jb_str(b, s, strlen(s));
}

static void gen_bytes(fz_rng *r, jbuf *b, size_t max) {
  uint8_t tmp[128];
  size_t n = fz_below(r, max + 1);
  if (n > sizeof tmp) n = sizeof tmp;
  for (size_t i = 0; i < n; i++)
    tmp[i] = fz_below(r, 2) ? interesting(r) : (uint8_t)fz_next(r);
  jb_bin(b, tmp, n);
}

/* Any msgpack value, depth bounded. */
static void gen_any(fz_rng *r, jbuf *b, int depth) {
  switch (fz_below(r, depth > 2 ? 6 : 8)) {
  case 0: jb_uint(b, gen_uint(r)); break;
  case 1: jb_int(b, gen_int(r)); break;
  case 2: jb_nil(b); break;
  case 3: gen_name(r, b, point_names, 12); break;
  case 4: gen_bytes(r, b, 16); break;
  case 5: { /* a tag the writer never makes: float, bool, ext */
    uint8_t raw[9] = {fz_below(r, 2) ? 0xcb : 0xc3, 0, 0, 0, 0, 0, 0, 0, 0};
    jb_raw(b, raw, raw[0] == 0xcb ? 9 : 1);
    break;
  }
  case 6: {
    uint32_t n = (uint32_t)fz_below(r, 4);
    jb_array(b, n);
    for (uint32_t i = 0; i < n; i++) gen_any(r, b, depth + 1);
    break;
  }
  default: {
    uint8_t m = (uint8_t)(0x80 | fz_below(r, 3));
    jb_raw(b, &m, 1);
    for (unsigned i = 0; i < 2u * (m & 0x0f); i++) gen_any(r, b, depth + 1);
    break;
  }
  }
}

/* Mostly the right shape; now and then any value in its place. */
#define FIELD(r, b, gen) (fz_below(r, 16) ? (void)(gen) : gen_any(r, b, 1))

static uint32_t gen_count(fz_rng *r, uint32_t right) {
  switch (fz_below(r, 16)) {
  case 0: return right ? right - 1 : 0;
  case 1: return right + 1;
  default: return right;
  }
}

static void gen_wait(fz_rng *r, jbuf *b) {
  static const uint64_t waits[] = {0, 1, 2, 3, 4, 5, 6, 7, 100, 255};
  jb_array(b, gen_count(r, 4));
  FIELD(r, b, jb_uint(b, waits[fz_below(r, 10)]));
  if (fz_below(r, 4) == 0) jb_str(b, "hello", 5);
  else FIELD(r, b, jb_uint(b, fz_below(r, 2) ? fz_below(r, 10)
                                             : 0xffff0001u));
  FIELD(r, b, jb_uint(b, fz_below(r, 2) ? gen_id(r) : fz_below(r, 8)));
  static const int64_t due[] = {0, 1, -1, 1700000000000, 4102444800000,
                                INT64_MAX, INT64_MIN};
  FIELD(r, b, jb_int(b, due[fz_below(r, 7)]));
}

static void gen_payload(fz_rng *r, jbuf *b);

/* S, with a context and a name (fields 10, 11) now and then. */
static void gen_state(fz_rng *r, jbuf *b) {
  bool ext = fz_below(r, 3) == 0;
  jb_array(b, gen_count(r, ext ? 12 : 10));
  FIELD(r, b, jb_uint(b, gen_id(r)));
  FIELD(r, b, gen_name(r, b, type_names, 8));
  FIELD(r, b, jb_uint(b, fz_below(r, 2) ? 0 : gen_id(r)));
  FIELD(r, b, jb_uint(b, fz_below(r, 100)));
  FIELD(r, b, gen_name(r, b, point_names, 12));
  FIELD(r, b, jb_uint(b, fz_below(r, 4) ? 1 : gen_uint(r)));
  FIELD(r, b, gen_bytes(r, b, fz_below(r, 8) ? 24 : 128));
  FIELD(r, b, jb_uint(b, fz_below(r, 4)));
  gen_wait(r, b);
  FIELD(r, b, jb_int(b, gen_int(r)));
  if (!ext) return;
  if (fz_below(r, 3) == 0) jb_nil(b); /* the context: unchanged */
  else gen_payload(r, b);             /* ... nil, or a bin of a value */
  if (fz_below(r, 2)) jb_nil(b);
  else FIELD(r, b, gen_name(r, b, inst_names, 5));
}

static void gen_payload(fz_rng *r, jbuf *b) {
  if (fz_below(r, 2)) {
    jb_nil(b);
    return;
  }
  jbuf v = {0};
  gen_any(r, &v, 0);
  jb_bin(b, v.p, v.oom ? 0 : v.n);
  jb_free(&v);
}

static void gen_event(fz_rng *r, jbuf *b) {
  jb_array(b, gen_count(r, 9));
  FIELD(r, b, jb_uint(b, 1 + fz_below(r, 20)));
  FIELD(r, b, jb_uint(b, gen_id(r)));
  if (fz_below(r, 4) == 0) jb_str(b, "hello", 5);
  else FIELD(r, b, jb_uint(b, fz_below(r, 2) ? fz_below(r, 10) : 0xffff0001u));
  FIELD(r, b, jb_uint(b, gen_id(r)));
  FIELD(r, b, jb_uint(b, fz_below(r, 4)));
  FIELD(r, b, jb_uint(b, fz_below(r, 8)));
  FIELD(r, b, jb_int(b, gen_int(r)));
  FIELD(r, b, jb_int(b, fz_below(r, 5)));
  gen_payload(r, b);
}

static void gen_eids(fz_rng *r, jbuf *b) {
  uint32_t n = (uint32_t)fz_below(r, 4);
  jb_array(b, n);
  for (uint32_t i = 0; i < n; i++) jb_uint(b, 1 + fz_below(r, 20));
}

/* One whole record, header and CRC included, into b. */
static void gen_record(fz_rng *r, jbuf *b, uint64_t seq) {
  static const uint8_t fields[JR_KIND_MAX + 1] = {0, 1, 4, 1, 4, 2,
                                                  2, 1, 1, 4};
  unsigned kind = fz_below(r, 32)
                      ? 1 + (unsigned)fz_below(r, JR_KIND_MAX)
                      : (unsigned)fz_below(r, 2) * (JR_KIND_MAX + 1);
  bool tomb = kind == JR_END && fz_below(r, 3) == 0; /* a named end */
  uint32_t nf =
      gen_count(r, kind <= JR_KIND_MAX ? fields[kind] + 2u * tomb : 0);
  size_t at = jb_begin(b, seq, kind, nf);
  switch (kind) {
  case JR_CREATE:
  case JR_INST: gen_state(r, b); break;
  case JR_STEP: {
    gen_state(r, b);
    gen_eids(r, b);
    uint32_t n = (uint32_t)fz_below(r, 3);
    jb_array(b, n);
    for (uint32_t i = 0; i < n; i++) gen_event(r, b);
    n = (uint32_t)fz_below(r, 2);
    jb_array(b, n);
    for (uint32_t i = 0; i < n; i++) gen_state(r, b);
    break;
  }
  case JR_EVENT: gen_event(r, b); break;
  case JR_END:
    FIELD(r, b, jb_uint(b, gen_id(r)));
    FIELD(r, b, jb_int(b, gen_int(r)));
    FIELD(r, b, jb_int(b, fz_below(r, 6)));
    FIELD(r, b, jb_uint(b, fz_below(r, 2) ? 0 : 1 + fz_below(r, 20)));
    if (tomb) {
      FIELD(r, b, jb_int(b, gen_int(r)));
      FIELD(r, b, gen_name(r, b, inst_names, 5));
    }
    break;
  case JR_TOMB:
    FIELD(r, b, gen_name(r, b, inst_names, 5));
    FIELD(r, b, jb_uint(b, gen_id(r)));
    FIELD(r, b, jb_int(b, gen_int(r)));
    FIELD(r, b, jb_int(b, gen_int(r)));
    break;
  case JR_SNAP:
  case JR_SNAPEND:
    FIELD(r, b, jb_uint(b, fz_below(r, 30)));
    FIELD(r, b, jb_uint(b, fz_below(r, 30)));
    break;
  case JR_DROP: gen_eids(r, b); break;
  default: gen_any(r, b, 0); break;
  }
  jb_end(b, at);
}

/* The seq a record after rs[i] should carry (1 when there is none). */
static uint64_t seq_after(const fz_buf *b, const rec *rs, size_t n, size_t i) {
  if (n == 0 || i >= n) return 1;
  jcur c = {b->p + rs[i].at + JR_HDR, b->p + rs[i].at + JR_HDR + rs[i].len,
            false};
  uint32_t k;
  uint64_t seq;
  return jc_array(&c, &k) && jc_uint(&c, &seq) ? seq + 1 : 1;
}

/* ---- the mutations ---- */

typedef struct mctx {
  fz_rng *r;
  fz_buf *b;
  size_t max;
  const fz_corpus *donors;
  rec rs[MAX_RECS];
  size_t nrs;
} mctx;

static void m_flip(mctx *m) {
  if (m->b->n) m->b->p[fz_below(m->r, m->b->n)] ^= (uint8_t)(1u << fz_below(m->r, 8));
}

static void m_set(mctx *m) {
  if (m->b->n == 0) return;
  m->b->p[fz_below(m->r, m->b->n)] =
      fz_below(m->r, 2) ? interesting(m->r) : (uint8_t)fz_next(m->r);
}

static void m_truncate(mctx *m) { m->b->n = fz_below(m->r, m->b->n + 1); }

static void m_erase(mctx *m) {
  erase(m->b, fz_below(m->r, m->b->n), 1 + fz_below(m->r, 64));
}

static void m_insert_bytes(mctx *m) {
  uint8_t tmp[16];
  size_t n = 1 + fz_below(m->r, sizeof tmp);
  for (size_t i = 0; i < n; i++)
    tmp[i] = fz_below(m->r, 2) ? interesting(m->r) : (uint8_t)fz_next(m->r);
  insert(m->b, m->max, fz_below(m->r, m->b->n + 1), tmp, n);
}

static void m_splice(mctx *m) {
  if (m->donors->n == 0) return;
  const fz_buf *d = &m->donors->v[fz_below(m->r, m->donors->n)];
  if (d->n == 0) return;
  size_t from = fz_below(m->r, d->n), n = 1 + fz_below(m->r, d->n - from);
  if (n > 512) n = 1 + fz_below(m->r, 512);
  if (fz_below(m->r, 2)) { /* overwrite */
    size_t at = fz_below(m->r, m->b->n + 1);
    if (n > m->max - at) n = m->max - at;
    memcpy(m->b->p + at, d->p + from, n);
    if (at + n > m->b->n) m->b->n = at + n;
  } else {
    insert(m->b, m->max, fz_below(m->r, m->b->n + 1), d->p + from, n);
  }
}

static void m_flags(mctx *m) {
  if (m->b->n) m->b->p[0] ^= (uint8_t)(1u << fz_below(m->r, 8));
}

static void m_split(mctx *m) {
  size_t at = 1 + 2 * fz_below(m->r, 2); /* either length field */
  if (at + 1 >= m->b->n) return;
  unsigned v = m->b->p[at] | (unsigned)m->b->p[at + 1] << 8;
  v = fz_below(m->r, 2) ? v + (unsigned)fz_below(m->r, 17) - 8
                        : (unsigned)fz_below(m->r, 65536);
  m->b->p[at] = (uint8_t)v;
  m->b->p[at + 1] = (uint8_t)(v >> 8);
}

/* A byte inside a body changes, and the CRC is made right again. */
static void m_body(mctx *m) {
  if (m->nrs == 0) return;
  const rec *r = &m->rs[fz_below(m->r, m->nrs)];
  if (r->len == 0) return;
  uint8_t *p = m->b->p + r->at + JR_HDR + fz_below(m->r, r->len);
  switch (fz_below(m->r, 3)) {
  case 0: *p ^= (uint8_t)(1u << fz_below(m->r, 8)); break;
  case 1: *p = interesting(m->r); break;
  default: *p = (uint8_t)(*p + fz_below(m->r, 5) - 2); break;
  }
  fix_crc(m->b, r);
}

/* Where a new record goes: a record boundary (or a segment's end). */
static void boundary(mctx *m, size_t *at, size_t *seg, uint64_t *seq) {
  region rg[FJ_MAX_SEGS];
  size_t nseg = regions(m->b->p, m->b->n, rg);
  size_t i = fz_below(m->r, m->nrs + 1);
  if (i < m->nrs) {
    *at = m->rs[i].at;
    *seg = m->rs[i].seg;
    *seq = i ? seq_after(m->b, m->rs, m->nrs, i - 1) : 1;
  } else {
    *seg = nseg - 1;
    *at = rg[*seg].end;
    *seq = seq_after(m->b, m->rs, m->nrs, m->nrs - 1);
  }
  if (fz_below(m->r, 8) == 0) *seq = gen_uint(m->r);
}

static void put_record(mctx *m, const uint8_t *p, size_t n) {
  size_t at, seg;
  uint64_t seq;
  boundary(m, &at, &seg, &seq);
  (void)seq;
  resize_region(m->b, seg, (long)insert(m->b, m->max, at, p, n));
}

static void m_gen_record(mctx *m) {
  size_t at, seg;
  uint64_t seq;
  boundary(m, &at, &seg, &seq);
  jbuf b = {0};
  gen_record(m->r, &b, seq);
  if (!b.oom) resize_region(m->b, seg, (long)insert(m->b, m->max, at, b.p, b.n));
  jb_free(&b);
}

static void m_random_record(mctx *m) {
  uint8_t tmp[JR_HDR + 40];
  uint32_t n = (uint32_t)fz_below(m->r, 41);
  for (uint32_t i = 0; i < n; i++)
    tmp[JR_HDR + i] = fz_below(m->r, 2) ? interesting(m->r) : (uint8_t)fz_next(m->r);
  put_le32(tmp, n);
  put_le32(tmp + 4, jr_crc32c(tmp + JR_HDR, n));
  put_record(m, tmp, JR_HDR + n);
}

static void m_dup_record(mctx *m) {
  if (m->nrs == 0) return;
  const rec *r = &m->rs[fz_below(m->r, m->nrs)];
  size_t at = r->at + JR_HDR + r->len;
  if (fz_below(m->r, 2)) at = m->rs[fz_below(m->r, m->nrs)].at; /* elsewhere */
  size_t seg = r->seg;
  for (size_t i = 0; i < m->nrs; i++)
    if (m->rs[i].at == at) seg = m->rs[i].seg;
  resize_region(m->b, seg,
                (long)insert(m->b, m->max, at, m->b->p + r->at, JR_HDR + r->len));
}

static void m_del_record(mctx *m) {
  if (m->nrs == 0) return;
  const rec *r = &m->rs[fz_below(m->r, m->nrs)];
  resize_region(m->b, r->seg, -(long)(JR_HDR + r->len));
  erase(m->b, r->at, JR_HDR + r->len);
}

static void m_swap_records(mctx *m) {
  if (m->nrs < 2) return;
  size_t i = fz_below(m->r, m->nrs - 1);
  const rec *a = &m->rs[i], *c = &m->rs[i + 1];
  if (a->seg != c->seg) return;
  uint8_t tmp[JR_HDR + 256];
  size_t na = JR_HDR + a->len;
  if (na > sizeof tmp) return;
  memcpy(tmp, m->b->p + a->at, na); /* a moves behind c */
  memmove(m->b->p + a->at, m->b->p + c->at, JR_HDR + c->len);
  memcpy(m->b->p + a->at + JR_HDR + c->len, tmp, na);
}

static void m_donor_record(mctx *m) {
  if (m->donors->n == 0) return;
  const fz_buf *d = &m->donors->v[fz_below(m->r, m->donors->n)];
  static rec drs[MAX_RECS];
  size_t n = records(d, drs, MAX_RECS);
  if (n == 0) return;
  const rec *r = &drs[fz_below(m->r, n)];
  put_record(m, d->p + r->at, JR_HDR + r->len);
}

static void m_len_field(mctx *m) {
  if (m->nrs == 0) return;
  const rec *r = &m->rs[fz_below(m->r, m->nrs)];
  uint32_t len = r->len;
  switch (fz_below(m->r, 4)) {
  case 0: len++; break;
  case 1: len--; break;
  case 2: len = JR_MAX_BODY + (uint32_t)fz_below(m->r, 2); break;
  default: len = (uint32_t)fz_next(m->r); break;
  }
  put_le32(m->b->p + r->at, len);
}

static void m_fix_all(mctx *m) {
  for (size_t i = 0; i < m->nrs; i++) fix_crc(m->b, &m->rs[i]);
}

typedef struct op {
  void (*fn)(mctx *);
  unsigned weight;
} op;

static const op ops[] = {
    {m_flip, 4},       {m_set, 4},         {m_truncate, 1},
    {m_erase, 2},      {m_insert_bytes, 2}, {m_splice, 2},
    {m_flags, 3},      {m_split, 1},       {m_body, 12},
    {m_gen_record, 10}, {m_random_record, 2}, {m_dup_record, 2},
    {m_del_record, 2}, {m_swap_records, 2}, {m_donor_record, 3},
    {m_len_field, 2},  {m_fix_all, 1},
};

static void (*pick(fz_rng *r))(mctx *) {
  unsigned total = 0;
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) total += ops[i].weight;
  unsigned x = (unsigned)fz_below(r, total);
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
    if (x < ops[i].weight) return ops[i].fn;
    x -= ops[i].weight;
  }
  return m_flip;
}

void fz_mutate(fz_rng *r, fz_buf *b, size_t max_len, const fz_corpus *donors) {
  static mctx m; /* the record table is large: not on the stack */
  m.r = r;
  m.b = b;
  m.max = max_len;
  m.donors = donors;
  if (b->n > max_len) b->n = max_len;
  size_t n = 1 + fz_below(r, 4);
  for (size_t i = 0; i < n; i++) {
    m.nrs = records(b, m.rs, MAX_RECS); /* the layout may have moved */
    pick(r)(&m);
  }
}
