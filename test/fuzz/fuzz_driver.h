/*
 * fuzz_driver.h - what the standalone driver's files share: byte buffers,
 * a corpus, a deterministic random stream, the seed corpus and the
 * mutator.  (libFuzzer builds use none of this: they link the target
 * alone.)
 */
#ifndef MLY_FUZZ_DRIVER_H
#define MLY_FUZZ_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fz_buf {
  uint8_t *p;
  size_t n;
} fz_buf;

typedef struct fz_corpus {
  fz_buf *v;
  size_t n, cap;
} fz_corpus;

/* Appends a copy of p[0..n); MLY_ENOMEM on failure. */
int fz_corpus_add(fz_corpus *c, const uint8_t *p, size_t n);
/* Replaces entry i with a copy of p[0..n). */
int fz_corpus_set(fz_corpus *c, size_t i, const uint8_t *p, size_t n);
void fz_corpus_free(fz_corpus *c);
/* The whole of a file, in a new buffer (free b->p); 0 or -errno. */
int fz_read_file(const char *path, fz_buf *out);

/* xorshift64*: the same seed, the same inputs, on every machine. */
typedef struct fz_rng {
  uint64_t s;
} fz_rng;

static inline uint64_t fz_next(fz_rng *r) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return r->s * 0x2545f4914f6cdd1dull;
}

/* Uniform enough in [0, n); 0 when n is 0. */
static inline size_t fz_below(fz_rng *r, size_t n) {
  return n ? (size_t)(fz_next(r) % n) : 0;
}

/* Runs the workload into a scratch directory and adds inputs built from
 * its segments: plain, compacted, with stale and torn compactions, torn
 * tails.  Returns 0 or a negative error with a message in err. */
int fz_make_seeds(fz_corpus *out, char *err, size_t errlen);

/* What a target tells the driver (fuzz_main.c serves every target):
 * each target's driver build defines fz_this_target. */
#define FZ_NCOUNTS 4
typedef struct fz_target {
  const char *name;    /* "fuzz_journal": messages; the artifact is
                          crash-NAME with '-' for '_' */
  int (*make_seeds)(fz_corpus *out, char *err, size_t errlen);
  /* after an input: whether it got far enough to mutate further */
  bool (*keep)(void);
  /* adds what the last input reached to counts (named below) */
  void (*count)(uint64_t counts[FZ_NCOUNTS]);
  const char *count_names[FZ_NCOUNTS]; /* NULL: unused */
} fz_target;
extern const fz_target fz_this_target;

/* Mutates b in place (b->p holds max_len bytes); donors give splices. */
void fz_mutate(fz_rng *r, fz_buf *b, size_t max_len, const fz_corpus *donors);

#endif
