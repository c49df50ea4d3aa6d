/*
 * tz.c - time zones for schedules, read from TZif files (RFC 8536).
 *
 * glibc converts with one process-wide zone (TZ), and several runtimes
 * share a process, so a schedule's zone is read here: the 64-bit block
 * of a version 2+ file (the 32-bit block of a version 1 file), kept as
 * a table of transitions and the UTC offset after each, and the footer's
 * POSIX TZ rule (tzrule.c), which holds past the last transition (after
 * 2037 in a "fat" file, after the last change of the rules in a "slim"
 * one; for every time in a file without transitions).  A footer that
 * cannot be read leaves no rule: the last offset holds.
 *
 * The name is checked before any path is made of it (no absolute path,
 * no component starting with '.').  tzdata links zones by symlinks
 * inside its tree, so they are followed; the file reached must be a
 * regular file owned by root or us and not writable by group or others
 * (mealy runs as root).
 */
#include "cron.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mealy.h"

#define TZ_DIR "/usr/share/zoneinfo"
#define TZ_FILE_MAX (1u << 20)

static int fail(char *err, size_t len, int rc, const char *fmt,
                const char *name) {
  if (len) snprintf(err, len, fmt, name);
  return rc;
}

static bool name_ok(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 200 || name[0] == '/') return false;
  bool start = true;
  for (const char *p = name; *p; p++) {
    char ch = *p;
    if (start && (ch == '.' || ch == '/')) return false;
    start = ch == '/';
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '+' ||
          ch == '/' || ch == '.'))
      return false;
  }
  return !start;
}

static int64_t be(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  if (n == 4) return (int32_t)(uint32_t)v;
  return (int64_t)v;
}

static int parse(const unsigned char *b, size_t len, tq_tz *out) {
  if (len < 44 || memcmp(b, "TZif", 4) != 0) return MLY_EINVAL;
  int tsize = 4;
  size_t off = 0;
  for (int pass = 0; pass < 2; pass++) {
    if (off + 44 > len || memcmp(b + off, "TZif", 4) != 0) return MLY_EINVAL;
    const unsigned char *h = b + off;
    uint64_t isut = (uint64_t)be(h + 20, 4) & 0xffffffffu,
             isstd = (uint64_t)be(h + 24, 4) & 0xffffffffu,
             leap = (uint64_t)be(h + 28, 4) & 0xffffffffu,
             timecnt = (uint64_t)be(h + 32, 4) & 0xffffffffu,
             typecnt = (uint64_t)be(h + 36, 4) & 0xffffffffu,
             charcnt = (uint64_t)be(h + 40, 4) & 0xffffffffu;
    uint64_t body = timecnt * (uint64_t)tsize + timecnt + typecnt * 6 +
                    charcnt + leap * (uint64_t)(tsize + 4) + isstd + isut;
    if (typecnt == 0 || body > len - off - 44) return MLY_EINVAL;
    if (pass == 0 && h[4] >= '2') { /* skip to the 64-bit block */
      off += 44 + body;
      tsize = 8;
      continue;
    }
    const unsigned char *t = h + 44, *idx = t + timecnt * tsize,
                        *types = idx + timecnt;
    if (tsize == 8) { /* the footer: "\nTZ-STRING\n" */
      const unsigned char *f = h + 44 + body, *e = b + len;
      const unsigned char *nl = f < e && *f == '\n'
                                    ? memchr(f + 1, '\n', (size_t)(e - f - 1))
                                    : NULL;
      if (nl == NULL ||
          tq_tz_rule_parse((const char *)f + 1, (size_t)(nl - f - 1), out) < 0)
        out->rule = out->dst = false;
    }
    out->n = timecnt;
    out->at = calloc(timecnt ? timecnt : 1, sizeof *out->at);
    out->off = calloc(timecnt ? timecnt : 1, sizeof *out->off);
    if (!out->at || !out->off) return MLY_ENOMEM;
    out->off0 = (int32_t)be(types, 4);
    for (uint64_t i = 0; i < timecnt; i++) {
      out->at[i] = be(t + i * tsize, tsize);
      if (idx[i] >= typecnt || (i && out->at[i] <= out->at[i - 1]))
        return MLY_EINVAL;
      out->off[i] = (int32_t)be(types + idx[i] * 6, 4);
      if (out->off[i] < -86400 || out->off[i] > 86400) return MLY_EINVAL;
    }
    return 0;
  }
  return MLY_EINVAL;
}

int tq_tz_load(const char *dir, const char *name, tq_tz *out, char *err,
               size_t errlen) {
  memset(out, 0, sizeof *out);
  if (!name_ok(name))
    return fail(err, errlen, MLY_EINVAL,
                "time zone \"%s\": not a zone name (like Europe/Berlin)",
                name);
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir ? dir : TZ_DIR, name);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    return fail(err, errlen, errno == ENOENT ? MLY_ENOENT : MLY_EPERM,
                "time zone \"%s\": no such zone file", name);
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      st.st_size > TZ_FILE_MAX || (st.st_mode & 022) ||
      (st.st_uid != 0 && st.st_uid != geteuid())) {
    close(fd);
    return fail(err, errlen, MLY_EPERM,
                "time zone \"%s\": the zone file is not a regular file "
                "owned by root and writable only by its owner", name);
  }
  unsigned char *buf = malloc((size_t)st.st_size + 1);
  if (buf == NULL) {
    close(fd);
    return MLY_ENOMEM;
  }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  int rc = parse(buf, got, out);
  free(buf);
  if (rc < 0) {
    tq_tz_free(out);
    return fail(err, errlen, rc, "time zone \"%s\": not a TZif file", name);
  }
  return 0;
}

void tq_tz_free(tq_tz *tz) {
  free(tz->at);
  free(tz->off);
  memset(tz, 0, sizeof *tz);
}

int32_t tq_tz_offset(const tq_tz *tz, int64_t t) {
  if (tz->rule && (tz->n == 0 || t >= tz->at[tz->n - 1]))
    return tq_tz_rule_offset(tz, t);
  size_t lo = 0, hi = tz->n;
  while (lo < hi) { /* first transition after t */
    size_t mid = lo + (hi - lo) / 2;
    if (tz->at[mid] > t) hi = mid;
    else lo = mid + 1;
  }
  return lo == 0 ? tz->off0 : tz->off[lo - 1];
}
