/*
 * pl_selftest.c - the power-loss simulator checked against a script whose
 * crash images are known by hand: what the interposer logs, and what the
 * model lets survive.
 *
 *   pl_selftest INTERPOSER          the test
 *   pl_selftest script ROOT         (run by the test, under the interposer)
 *   pl_selftest unsupported ROOT    (a call the model does not know)
 *
 * The script, under ROOT:
 *
 *   mkdir d; create d/f; write 1024 x 'A'; fsync f; fsync d
 *   pwrite 1024 x 'B' at 1024 (two sectors, never synced)
 *   rename d/f -> d/g (d never synced again)
 *   fsync ROOT (d's entry is now durable)
 *   create d/h with O_SYNC, writev "xy" "z" (data durable, entry not)
 *   opendir d ... closedir (an fd closed behind the interposer's back)
 *
 * so at its end a synced image holds exactly d/f = 1024 'A'; a prefix
 * image holds f, or g with 'B's after the 'A's (a prefix of them: a torn
 * write), and h = "xyz" only with g; a reorder image keeps each 'B'
 * sector whole or zero, and some image keeps the second without the
 * first.  Right after the mkdir nothing is durable: the image is empty.
 */
#include "pl_model.h"
#include "pl_proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
  if (ok) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FAIL: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  failures++;
}

static void must(bool ok, const char *what) {
  if (ok) return;
  fprintf(stderr, "pl_selftest: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* ---- the scripts ---- */

static int script(const char *root) {
  char p[PATH_MAX], q[PATH_MAX];
  char a[1024], b[1024];
  memset(a, 'A', sizeof a);
  memset(b, 'B', sizeof b);
  snprintf(p, sizeof p, "%s/d", root);
  must(mkdir(p, 0755) == 0, "mkdir");
  snprintf(q, sizeof q, "%s/d/f", root);
  int fd = open(q, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  must(fd >= 0 && write(fd, a, sizeof a) == sizeof a && fsync(fd) == 0, "f");
  int dfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  must(dfd >= 0 && fsync(dfd) == 0, "d");
  must(pwrite(fd, b, sizeof b, 1024) == sizeof b, "pwrite");
  must(renameat(dfd, "f", dfd, "g") == 0, "rename");
  int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  must(rfd >= 0 && fsync(rfd) == 0, "root");
  int hfd = openat(dfd, "h", O_WRONLY | O_CREAT | O_SYNC | O_CLOEXEC, 0644);
  struct iovec v[2] = {{"xy", 2}, {"z", 1}};
  must(hfd >= 0 && writev(hfd, v, 2) == 3, "h");
  DIR *dp = opendir(p);
  must(dp != NULL, "opendir");
  while (readdir(dp) != NULL) {
  }
  closedir(dp);
  close(hfd);
  close(rfd);
  close(dfd);
  close(fd);
  return 0;
}

static int unsupported(const char *root) {
  char p[PATH_MAX], q[PATH_MAX];
  snprintf(p, sizeof p, "%s/x", root);
  snprintf(q, sizeof q, "%s/y", root);
  int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  must(fd >= 0 && close(fd) == 0 && link(p, q) == 0, "link");
  return 0;
}

/* ---- the test ---- */

static void run_script(const char *self, const char *what, const char *ip,
                       const char *root, const char *log, const char *work) {
  char errp[PATH_MAX + 16];
  snprintf(errp, sizeof errp, "%s/%s.err", work, what);
  const char *args[] = {self, what, root, NULL};
  const char *env[] = {"LD_PRELOAD", ip, "POWERLOSS_DIR", root,
                       "POWERLOSS_LOG", log, NULL};
  pl_out o;
  plp_run(self, args, env, errp, 120, &o);
  free(o.text);
  if (!WIFEXITED(o.status) || WEXITSTATUS(o.status) != 0) {
    fprintf(stderr, "pl_selftest: the %s script failed (status %d): %s\n",
            what, o.status, plp_first_line(errp));
    exit(1);
  }
}

/* The file at dir/name: its size (-1: none), its bytes in buf. */
static long slurp(const char *dir, const char *name, char *buf, size_t cap) {
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "rb");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, cap, f);
  fclose(f);
  return (long)n;
}

static int entries(const char *dir) {
  DIR *dp = opendir(dir);
  if (dp == NULL) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dp)) != NULL) n += e->d_name[0] != '.';
  closedir(dp);
  return n;
}

static bool all(const char *p, char c, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != c) return false;
  return true;
}

/* Builds one image into work/img; returns its d directory. */
static const char *build(const pl_model *m, const char *work, size_t k,
                         plm_class cls, uint64_t seed) {
  static char img[PATH_MAX], d[PATH_MAX + 8];
  char err[512], desc[1024];
  snprintf(img, sizeof img, "%s/img", work);
  plp_rm_rf(img);
  must(mkdir(img, 0755) == 0, img);
  if (plm_build(m, k, cls, seed, img, desc, sizeof desc, err, sizeof err) < 0) {
    fprintf(stderr, "pl_selftest: %s\n", err);
    exit(1);
  }
  snprintf(d, sizeof d, "%s/d", img);
  return d;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "script") == 0) return script(argv[2]);
  if (argc == 3 && strcmp(argv[1], "unsupported") == 0) return unsupported(argv[2]);
  if (argc != 2) {
    fprintf(stderr, "usage: pl_selftest INTERPOSER\n");
    return 2;
  }
  char self[PATH_MAX], ip[PATH_MAX], work[1024];
  must(realpath(argv[0], self) && realpath(argv[1], ip), "realpath");
  plp_mkdtemp("mealy-plself", work, sizeof work);
  char root[PATH_MAX], log[PATH_MAX], err[512];
  snprintf(root, sizeof root, "%s/root", work);
  snprintf(log, sizeof log, "%s/log", work);
  must(mkdir(root, 0755) == 0, root);
  run_script(self, "script", ip, root, log, work);

  pl_model *m;
  if (plm_load(log, &m, err, sizeof err) < 0) {
    fprintf(stderr, "FAIL: the log: %s\n", err);
    return 1;
  }
  check(plm_compare(m, root, err, sizeof err) == 0, "the log does not explain "
        "the directory: %s", err);
  size_t n = plm_nops(m);
  char buf[4096];

  /* right after the mkdir: nothing */
  char img[PATH_MAX + 8];
  const char *d = build(m, work, 1, PLM_SYNCED, 0);
  snprintf(img, sizeof img, "%s/img", work);
  check(entries(img) == 0, "after the mkdir, the synced image has %d entries",
        entries(img));

  /* the end, synced: d/f = 1024 'A' and nothing else */
  d = build(m, work, n, PLM_SYNCED, 0);
  long fl = slurp(d, "f", buf, sizeof buf);
  check(entries(img) == 1 && entries(d) == 1, "synced: %d entries in the root, "
        "%d in d (want 1, 1)", entries(img), entries(d));
  check(fl == 1024 && all(buf, 'A', 1024), "synced: d/f has %ld bytes, want "
        "1024 'A'", fl);
  check(plm_unsynced(m, n) == 3, "%zu unsynced operations at the end, want 3 "
        "(the pwrite, the rename, the entry of h)", plm_unsynced(m, n));

  /* prefix and reorder images, many seeds */
  bool seen_torn = false, seen_h = false, seen_hole = false;
  for (uint64_t s = 1; s <= 200; s++) {
    plm_class cls = s % 2 ? PLM_PREFIX : PLM_REORDER;
    d = build(m, work, n, cls, s);
    char fb[4096], gb[4096];
    long f = slurp(d, "f", fb, sizeof fb), g = slurp(d, "g", gb, sizeof gb);
    check((f >= 0) != (g >= 0), "seed %llu: f %ld, g %ld: one of them, not "
          "both", (unsigned long long)s, f, g);
    long len = g >= 0 ? g : f;
    if (len < 0) continue;
    memcpy(buf, g >= 0 ? gb : fb, (size_t)len);
    check(len >= 1024 && len <= 2048 && all(buf, 'A', 1024), "seed %llu: the "
          "synced 'A's are not intact (%ld bytes)", (unsigned long long)s, len);
    long h = slurp(d, "h", buf + 2048, 16);
    if (h >= 0) {
      seen_h = true;
      check(h == 3 && memcmp(buf + 2048, "xyz", 3) == 0, "seed %llu: h has "
            "%ld bytes, want \"xyz\" (its data was synced)",
            (unsigned long long)s, h);
    }
    if (cls == PLM_PREFIX) {
      check(all(buf + 1024, 'B', (size_t)len - 1024), "seed %llu: prefix: "
            "after the 'A's, not only 'B's", (unsigned long long)s);
      check(h < 0 || g >= 0, "seed %llu: prefix: h without the rename before "
            "it", (unsigned long long)s);
      seen_torn |= len > 1024 && len < 2048;
    } else {
      for (long at = 1024; at < len; at += 512) {
        size_t k = (size_t)(len - at < 512 ? len - at : 512);
        check(all(buf + at, 'B', k) || all(buf + at, 0, k), "seed %llu: "
              "reorder: a sector neither old nor new", (unsigned long long)s);
      }
      seen_hole |= len == 2048 && buf[1024] == 0 && buf[1536] == 'B';
    }
  }
  check(seen_torn, "no prefix image tore the pwrite");
  check(seen_h, "no image kept the entry of h");
  check(seen_hole, "no reorder image kept the second 'B' sector without the "
        "first");
  plm_free(m);

  /* a call outside the model is refused, never guessed at */
  char root2[PATH_MAX + 8], log2[PATH_MAX + 8];
  snprintf(root2, sizeof root2, "%s/root2", work);
  snprintf(log2, sizeof log2, "%s/log2", work);
  must(mkdir(root2, 0755) == 0, root2);
  run_script(self, "unsupported", ip, root2, log2, work);
  check(plm_load(log2, &m, err, sizeof err) < 0 && strstr(err, "link"),
        "a log with link() loads: %s", err);

  if (failures == 0) plp_rm_rf(work);
  else fprintf(stderr, "kept: %s\n", work);
  printf("powerloss model: %s\n", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
