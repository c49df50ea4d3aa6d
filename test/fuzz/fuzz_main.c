/*
 * fuzz_main.c - the standalone driver of the fuzz targets (the journal's,
 * the YAML machine loader's), for builds without libFuzzer (gcc, `meson
 * test --suite fuzz`).  What differs between targets - the name, the
 * seed corpus, which inputs to keep mutating, what to count - is the
 * target's fz_this_target (fuzz_driver.h); the journal's is shown here.
 *
 *     fuzz_journal [--iters N] [--seed S] [--max-len N] [--timeout SEC]
 *                  [--write-seeds DIR] [FILE|DIR ...]
 *
 * Every FILE (or file in DIR) runs through LLVMFuzzerTestOneInput first:
 * that is how a saved crash is replayed.  Then N inputs (--iters, else
 * FUZZ_ITERS, else 20000) are made by mutating the seed corpus (a real
 * journal the workload writes at startup, see fuzz_seeds.c), the FILEs,
 * and a pool of earlier inputs that got past the reader.  The mutations
 * come from xorshift with a fixed seed (--seed); the seed corpus is a
 * real run, whose timing and wall-clock deadlines vary a little, so two
 * runs are alike, not identical: what reproduces a failure is the input
 * it saves.  --write-seeds writes the seed corpus as files (for
 * libFuzzer: run-libfuzzer.sh) and exits.
 *
 * A crash, a failed check (abort) or a sanitizer report saves the input
 * that caused it as crash-fuzz-journal in FUZZ_ARTIFACT_DIR (default: the
 * current directory) before the process dies; an input that runs longer
 * than --timeout seconds (default 10) is saved and reported as a hang.
 * Leaks: LeakSanitizer reports them at exit; FUZZ_LEAK_EVERY=n checks
 * every n inputs as well and saves the last inputs to try one by one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "fuzz_driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
#include "mealy.h"

#define POOL_MAX 256
#define DEFAULT_ITERS 20000
#define DEFAULT_MAX_LEN 65536

/* Present only in sanitized builds. */
extern void __sanitizer_set_death_callback(void (*cb)(void))
    __attribute__((weak));
extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

typedef struct opts {
  uint64_t iters, seed;
  size_t max_len;
  unsigned timeout;
  const char *seeds_out;
  char **files;
  int nfiles;
} opts;

/* ---- saving the input that killed us ---- */

static char g_artifact[1024];
static const uint8_t *volatile g_cur;
static volatile size_t g_cur_n;
static volatile sig_atomic_t g_saved;

static void say(const char *s) {
  ssize_t w = write(2, s, strlen(s));
  (void)w;
}

static void save_input(void) {
  if (g_saved || g_cur == NULL) return;
  g_saved = 1;
  int fd = open(g_artifact, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    say(fz_this_target.name);
    say(": cannot save the input\n");
    return;
  }
  size_t off = 0;
  while (off < g_cur_n) {
    ssize_t w = write(fd, g_cur + off, g_cur_n - off);
    if (w <= 0) break;
    off += (size_t)w;
  }
  close(fd);
  say(fz_this_target.name);
  say(": the input is saved in ");
  say(g_artifact);
  say("\n");
}

static void on_fatal(int sig) {
  save_input();
  signal(sig, SIG_DFL);
  raise(sig);
}

static void on_alarm(int sig) {
  (void)sig;
  say(fz_this_target.name);
  say(": an input ran past the timeout: a hang\n");
  save_input();
  signal(SIGABRT, SIG_DFL);
  abort();
}

static void install_handlers(void) {
  const char *dir = getenv("FUZZ_ARTIFACT_DIR");
  int n = snprintf(g_artifact, sizeof g_artifact, "%s/crash-",
                   dir && *dir ? dir : ".");
  for (const char *p = fz_this_target.name; *p && n > 0 &&
                                            (size_t)n + 1 < sizeof g_artifact;
       p++)
    g_artifact[n++] = *p == '_' ? '-' : *p;
  if (n > 0 && (size_t)n < sizeof g_artifact) g_artifact[n] = '\0';
  signal(SIGABRT, on_fatal); /* failed checks; sanitizers' abort_on_error */
  signal(SIGALRM, on_alarm);
  if (__sanitizer_set_death_callback) {
    __sanitizer_set_death_callback(save_input);
    return; /* the sanitizer owns SEGV and friends, and reports them */
  }
  signal(SIGSEGV, on_fatal);
  signal(SIGBUS, on_fatal);
  signal(SIGFPE, on_fatal);
  signal(SIGILL, on_fatal);
}

static void arm(unsigned seconds) {
  struct itimerval t = {{0, 0}, {seconds, 0}};
  setitimer(ITIMER_REAL, &t, NULL);
}

/* ---- running inputs ---- */

typedef struct tally {
  uint64_t runs, counts[FZ_NCOUNTS];
} tally;

static void run_one(const uint8_t *p, size_t n, const opts *o, tally *t) {
  g_cur = p;
  g_cur_n = n;
  arm(o->timeout);
  LLVMFuzzerTestOneInput(p, n);
  arm(0);
  g_cur = NULL;
  t->runs++;
  fz_this_target.count(t->counts);
}

static int read_file(const char *path, fz_corpus *c) {
  fz_buf b;
  int rc = fz_read_file(path, &b);
  if (rc < 0) return rc;
  rc = fz_corpus_add(c, b.p, b.n);
  free(b.p);
  return rc;
}

/* A file, or every regular file of a directory. */
static int load_path(const char *path, fz_corpus *c) {
  struct stat st;
  if (stat(path, &st) < 0) return -errno;
  if (!S_ISDIR(st.st_mode)) return read_file(path, c);
  struct dirent **names;
  int n = scandir(path, &names, NULL, alphasort);
  if (n < 0) return -errno;
  int rc = 0;
  for (int i = 0; i < n; i++) {
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", path, names[i]->d_name);
    if (rc == 0 && stat(full, &st) == 0 && S_ISREG(st.st_mode))
      rc = read_file(full, c);
    free(names[i]);
  }
  free(names);
  return rc;
}

static int write_seeds(const char *dir, const fz_corpus *c) {
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) return -errno;
  for (size_t i = 0; i < c->n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-%03zu", dir, i);
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -errno;
    size_t w = fwrite(c->v[i].p, 1, c->v[i].n, f);
    if (fclose(f) != 0 || w != c->v[i].n) return MLY_EIO;
  }
  return 0;
}

/* The last inputs: a leak found by a check may come from any input since
 * the one before (a stale pointer can hide it for a while). */
#define RECENT 16
static fz_corpus g_recent;
static size_t g_recent_next;

static void remember(const uint8_t *p, size_t n) {
  int rc = g_recent.n < RECENT ? fz_corpus_add(&g_recent, p, n)
                               : fz_corpus_set(&g_recent, g_recent_next, p, n);
  if (rc == 0) g_recent_next = (g_recent_next + 1) % RECENT;
}

static void save_recent(void) {
  for (size_t i = 0; i < g_recent.n; i++) {
    char path[1100];
    snprintf(path, sizeof path, "%s-leak-%02zu", g_artifact, i);
    FILE *f = fopen(path, "wb");
    if (f == NULL) continue;
    fwrite(g_recent.v[i].p, 1, g_recent.v[i].n, f);
    fclose(f);
  }
  fprintf(stderr, "%s: the last %zu inputs are saved as %s-leak-NN; "
          "run each alone (--iters 0 FILE) to find the one that leaks\n",
          fz_this_target.name, g_recent.n, g_artifact);
}

static void leak_check(uint64_t i, uint64_t every) {
  if (every == 0 || !__lsan_do_recoverable_leak_check || (i + 1) % every) return;
  if (__lsan_do_recoverable_leak_check()) {
    fprintf(stderr, "%s: a leak, found after input %" PRIu64 "\n",
            fz_this_target.name, i);
    save_recent();
    exit(1);
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fuzz(const opts *o, const fz_corpus *seeds, tally *t) {
  fz_corpus pool = {0};
  fz_rng rng = {o->seed ? o->seed : 1};
  uint8_t *work = malloc(o->max_len);
  if (work == NULL) return MLY_ENOMEM;
  const char *le = getenv("FUZZ_LEAK_EVERY");
  uint64_t leak_every = le ? strtoull(le, NULL, 10) : 0;
  int rc = 0;
  for (uint64_t i = 0; i < o->iters && rc == 0; i++) {
    const fz_corpus *from = pool.n && fz_below(&rng, 2) ? &pool : seeds;
    const fz_buf *base = &from->v[fz_below(&rng, from->n)];
    fz_buf b = {work, base->n < o->max_len ? base->n : o->max_len};
    memcpy(work, base->p, b.n);
    fz_mutate(&rng, &b, o->max_len, fz_below(&rng, 2) ? seeds : &pool);
    if (leak_every) remember(b.p, b.n);
    run_one(b.p, b.n, o, t);
    if (fz_this_target.keep())
      rc = pool.n < POOL_MAX ? fz_corpus_add(&pool, b.p, b.n)
                             : fz_corpus_set(&pool, fz_below(&rng, POOL_MAX),
                                             b.p, b.n);
    leak_check(i, leak_every);
  }
  fz_corpus_free(&pool);
  fz_corpus_free(&g_recent);
  free(work);
  return rc;
}

/* ---- options ---- */

static int usage(void) {
  fprintf(stderr, "usage: %s [--iters N] [--seed S] [--max-len N] "
                  "[--timeout SEC] [--write-seeds DIR] [FILE|DIR ...]\n",
          fz_this_target.name);
  return 2;
}

static bool number(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || end == s || *end) return false;
  *out = v;
  return true;
}

static int parse(int argc, char **argv, opts *o) {
  const char *env = getenv("FUZZ_ITERS");
  *o = (opts){.iters = DEFAULT_ITERS, .seed = 0x6d65616c79ull,
              .max_len = DEFAULT_MAX_LEN, .timeout = 10};
  if (env && !number(env, &o->iters)) return usage();
  int i = 1;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    uint64_t v = 0;
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (i + 1 >= argc) return usage();
    const char *arg = argv[++i];
    if (strcmp(argv[i - 1], "--write-seeds") == 0) {
      o->seeds_out = arg;
      continue;
    }
    if (!number(arg, &v)) return usage();
    if (strcmp(argv[i - 1], "--iters") == 0) o->iters = v;
    else if (strcmp(argv[i - 1], "--seed") == 0) o->seed = v;
    else if (strcmp(argv[i - 1], "--max-len") == 0 && v >= 16 && v <= (1u << 20))
      o->max_len = (size_t)v;
    else if (strcmp(argv[i - 1], "--timeout") == 0 && v > 0 && v < 86400)
      o->timeout = (unsigned)v;
    else return usage();
  }
  o->files = argv + i;
  o->nfiles = argc - i;
  return 0;
}

int main(int argc, char **argv) {
  opts o;
  int rc = parse(argc, argv, &o);
  if (rc) return rc;
  install_handlers();
  fz_corpus seeds = {0};
  char err[512] = "";
  double t0 = now_s();
  const char *name = fz_this_target.name;
  rc = fz_this_target.make_seeds(&seeds, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "%s: seeds: %s\n", name, err);
    return 1;
  }
  if (o.seeds_out) {
    rc = write_seeds(o.seeds_out, &seeds);
    if (rc < 0)
      fprintf(stderr, "%s: %s: %s\n", name, o.seeds_out, mly_strerror(rc));
    else
      printf("%s: %zu seeds in %s\n", name, seeds.n, o.seeds_out);
    fz_corpus_free(&seeds);
    return rc < 0;
  }
  tally t = {0};
  for (int i = 0; i < o.nfiles && rc == 0; i++) {
    size_t before = seeds.n;
    if ((rc = load_path(o.files[i], &seeds)) < 0)
      fprintf(stderr, "%s: %s: %s\n", name, o.files[i], mly_strerror(rc));
    for (size_t k = before; k < seeds.n; k++)
      run_one(seeds.v[k].p, seeds.v[k].n, &o, &t);
  }
  uint64_t replayed = t.runs;
  size_t nseeds = seeds.n;
  if (rc == 0) rc = fuzz(&o, &seeds, &t);
  fz_corpus_free(&seeds);
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", name, mly_strerror(rc));
    return 1;
  }
  double dt = now_s() - t0;
  printf("%s: %" PRIu64 " inputs (%" PRIu64 " from files, %zu seeds)"
         " in %.1f s, %.0f/s", name, t.runs, replayed, nseeds, dt,
         (double)t.runs / (dt > 0 ? dt : 1));
  for (int i = 0; i < FZ_NCOUNTS; i++)
    if (fz_this_target.count_names[i])
      printf("%s %s %" PRIu64, i ? "," : ";", fz_this_target.count_names[i],
             t.counts[i]);
  printf("\n");
  return 0;
}
