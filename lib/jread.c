/*
 * jread.c - reading and verifying a state directory.
 *
 * Every segment is read whole and every record verified: its length, its
 * CRC-32C, that its body is an array [seq, kind, ...] of a known kind,
 * and that seq is one more than the record before.  What counts as what:
 *
 *   - a record that does not verify in the last segment, after which no
 *     record verifies, is a torn tail: the write that a crash cut short.
 *     It is cut off (and counted), never replayed;
 *   - anything else that does not verify is damage: the directory is
 *     refused, naming the file, the offset and the reason, unless salvage
 *     is asked for, which skips to the next record that verifies;
 *   - the newest segment that starts with a complete snapshot (SNAP ...
 *     SNAPEND) is the base: older segments are leftovers of a compaction
 *     that crashed after its snapshot was safe, and are removed; a newest
 *     segment with an incomplete snapshot is the compaction that crashed
 *     before, and is removed instead.
 */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int jr_errf(char *err, size_t len, int rc, const char *fmt, ...) {
  if (err && len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
  }
  return rc;
}

bool jr_seg_no(const char *name, uint64_t *no) {
  if (strlen(name) != JR_SEG_NAME_LEN || strncmp(name, "seg-", 4) != 0 ||
      strcmp(name + 24, ".mj") != 0)
    return false;
  uint64_t v = 0;
  for (int i = 4; i < 24; i++) {
    if (name[i] < '0' || name[i] > '9') return false;
    unsigned d = (unsigned)(name[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false; /* past 2^64 - 1 */
    v = v * 10 + d;
  }
  *no = v;
  return true;
}

static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

/* ---- one record ---- */

typedef struct check {
  uint64_t seq;
  unsigned kind;
  uint32_t len;
  char why[160];
} check;

/* Whether the record at data[off] verifies; fills c. */
/* The cheap tests come first (the header, then the body's shape) and the
 * CRC last, and the reason is written only when asked (why): next_valid
 * runs this at every offset of a damaged stretch, and must stay linear. */
static bool verify_at(const unsigned char *data, size_t size, size_t off,
                      check *c, bool why) {
  size_t left = size - off;
  if (left < JR_HDR) {
    if (why)
      snprintf(c->why, sizeof c->why, "a record header needs 8 bytes, %zu "
               "left", left);
    return false;
  }
  uint32_t len = le32(data + off), crc = le32(data + off + 4);
  if (len > JR_MAX_BODY) {
    if (why)
      snprintf(c->why, sizeof c->why, "record length %" PRIu32
               " is past the limit of %u bytes", len, JR_MAX_BODY);
    return false;
  }
  if (len > left - JR_HDR) {
    if (why)
      snprintf(c->why, sizeof c->why, "record length %" PRIu32
               " runs past the end of the file (%zu bytes left)", len,
               left - JR_HDR);
    return false;
  }
  jcur cur = {data + off + JR_HDR, data + off + JR_HDR + len, false};
  uint32_t n;
  uint64_t seq, kind;
  bool shape = jc_array(&cur, &n) && n >= 2 && jc_uint(&cur, &seq) &&
               jc_uint(&cur, &kind) && kind >= 1 && kind <= JR_KIND_MAX;
  uint32_t sum = shape || why ? jr_crc32c(data + off + JR_HDR, len) : 0;
  if (sum != crc || !shape) {
    if (why && sum != crc)
      snprintf(c->why, sizeof c->why, "checksum mismatch (stored %08" PRIx32
               ", computed %08" PRIx32 ")", crc, sum);
    else if (why)
      snprintf(c->why, sizeof c->why, "the body is not a record (an array "
               "[seq, kind, ...] of a known kind)");
    return false;
  }
  c->seq = seq;
  c->kind = (unsigned)kind;
  c->len = len;
  return true;
}

/* Is there any record that verifies after off?  Only asked at damage. */
static size_t next_valid(const unsigned char *data, size_t size, size_t off) {
  check c;
  for (size_t o = off + 1; o + JR_HDR <= size; o++)
    if (verify_at(data, size, o, &c, false)) return o;
  return SIZE_MAX;
}

/* ---- files ---- */

/* Maps a segment: recovery reads the page cache in place, no copy. */
static int read_file(int dirfd, const char *name, bool map,
                     unsigned char **out, size_t *len, bool *mapped) {
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  size_t size = (size_t)st.st_size;
  void *p = NULL;
  if (size > 0 && map) {
    p = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) p = NULL; /* read it instead */
  }
  if (size > 0 && p == NULL) {
    /* a reader without the lock reads a copy: a mapping would fault if
     * the owner cut a torn tail under it */
    unsigned char *b = malloc(size);
    size_t got = 0;
    while (b && got < size) {
      ssize_t r = read(fd, b + got, size - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += (size_t)r;
    }
    if (b == NULL) {
      close(fd);
      return MLY_ENOMEM;
    }
    close(fd);
    *out = b;
    *len = got;
    *mapped = false;
    return 0;
  }
  close(fd);
  *out = p;
  *len = size;
  *mapped = p != NULL;
  return 0;
}

static int seg_cmp(const void *a, const void *b) {
  const jseg *x = a, *y = b;
  return x->no < y->no ? -1 : x->no > y->no;
}

static int list_segments(int dirfd, jread *r) {
  int fd = dup(dirfd);
  if (fd < 0) return -errno;
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return -errno;
  }
  rewinddir(d);
  size_t cap = 0;
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d)) != NULL) {
    uint64_t no;
    if (!jr_seg_no(e->d_name, &no)) continue;
    if (r->nsegs == cap) {
      cap = cap ? cap * 2 : 8;
      jseg *v = realloc(r->segs, cap * sizeof *v);
      if (v == NULL) {
        rc = MLY_ENOMEM;
        break;
      }
      r->segs = v;
    }
    jseg *s = &r->segs[r->nsegs++];
    *s = (jseg){.no = no};
    memcpy(s->name, e->d_name, JR_SEG_NAME_LEN + 1); /* checked above */
  }
  closedir(d);
  if (rc == 0 && r->nsegs > 1) qsort(r->segs, r->nsegs, sizeof *r->segs, seg_cmp);
  return rc;
}

void jr_read_free(jread *r) {
  for (size_t i = 0; i < r->nsegs; i++) {
    if (r->segs[i].mapped) munmap(r->segs[i].data, r->segs[i].file_len);
    else free(r->segs[i].data);
  }
  free(r->segs);
  *r = (jread){0};
}

/* ---- the walk ---- */

typedef struct walk {
  jread *r;
  const char *dir;
  bool salvage;
  int (*cb)(const jrec *, void *);
  void *arg;
  char *err;
  size_t errlen;
  bool have_seq;
  uint64_t expect;
} walk;

/* First pass over one segment: is it a complete snapshot? */
static int snapshot_state(const jseg *s) {
  check c;
  if (!verify_at(s->data, s->file_len, 0, &c, false) || c.kind != JR_SNAP)
    return 0; /* not a snapshot */
  for (size_t off = 0; verify_at(s->data, s->file_len, off, &c, false);
       off += JR_HDR + c.len)
    if (c.kind == JR_SNAPEND) return 2; /* complete */
  return 1; /* begun, not finished */
}

static int walk_segment(walk *w, size_t si) {
  jread *r = w->r;
  jseg *s = &r->segs[si];
  bool last = si + 1 == r->nsegs;
  size_t off = 0;
  s->len = s->file_len;
  while (off < s->file_len) {
    check c;
    bool ok = verify_at(s->data, s->file_len, off, &c, true);
    if (ok && w->have_seq && c.seq != w->expect && w->salvage)
      r->salvaged++; /* records are missing: count it, so it compacts */
    if (ok && w->have_seq && c.seq != w->expect && !w->salvage)
      return jr_errf(w->err, w->errlen, MLY_EBADMSG,
                  "%s/%s: offset %zu: sequence gap: expected record %" PRIu64
                  ", found %" PRIu64, w->dir, s->name, off, w->expect, c.seq);
    if (!ok) {
      size_t next = next_valid(s->data, s->file_len, off);
      if (last && next == SIZE_MAX) { /* the torn tail */
        r->torn_bytes += s->file_len - off;
        s->len = off;
        return 0;
      }
      if (!w->salvage)
        return jr_errf(w->err, w->errlen, MLY_EBADMSG,
                    "%s/%s: offset %zu: %s%s", w->dir, s->name, off, c.why,
                    last ? "; records that verify follow, so this is damage, "
                           "not a torn write (--salvage keeps what verifies)"
                         : " (--salvage keeps what verifies)");
      r->salvaged++;
      if (next == SIZE_MAX) {
        s->len = off;
        return 0;
      }
      off = next;
      continue;
    }
    w->have_seq = true;
    w->expect = c.seq + 1;
    if (w->cb) {
      jrec rec = {c.seq, c.kind, s->data + off + JR_HDR, c.len, s->name, off};
      int rc = w->cb(&rec, w->arg);
      if (rc) return rc;
    }
    off += JR_HDR + c.len;
  }
  return 0;
}

int jr_read(int dirfd, const char *dir, bool salvage, bool map, jread *r,
            int (*cb)(const jrec *, void *), void *arg, char *err,
            size_t errlen) {
  *r = (jread){.map = map};
  int rc = list_segments(dirfd, r);
  if (rc < 0)
    return jr_errf(err, errlen, rc, "%s: cannot list: %s", dir, mly_strerror(rc));
  for (size_t i = 0; i < r->nsegs; i++) {
    jseg *s = &r->segs[i];
    rc = read_file(dirfd, s->name, r->map, &s->data, &s->file_len, &s->mapped);
    if (rc < 0)
      return jr_errf(err, errlen, rc, "%s/%s: cannot read: %s", dir, s->name,
                  mly_strerror(rc));
    r->total_bytes += s->file_len;
  }
  /* the base: the newest complete snapshot; an unfinished one is dropped */
  size_t n = r->nsegs;
  r->base = 0;
  for (size_t i = n; i-- > 0;) {
    int st = snapshot_state(&r->segs[i]);
    if (st == 2) {
      r->base = i;
      r->base_is_snapshot = true;
      break;
    }
    if (st == 1 && i + 1 == n) { /* torn compaction: forget it */
      r->torn_bytes += r->segs[i].file_len;
      r->segs[i].len = 0;
      r->segs[i].removed = true;
      n--;
    }
  }
  walk w = {r, dir, salvage, cb, arg, err, errlen, false, 0};
  size_t keep = r->nsegs;
  r->nsegs = n; /* the walk sees the segments that count */
  for (size_t i = r->base; i < n && rc == 0; i++) rc = walk_segment(&w, i);
  r->nsegs = keep;
  r->next_seq = w.have_seq ? w.expect : 1;
  return rc;
}

int jr_repair(int dirfd, const jread *r) {
  bool changed = false;
  for (size_t i = 0; i < r->nsegs; i++) {
    const jseg *s = &r->segs[i];
    if (i < r->base || s->removed) {
      if (unlinkat(dirfd, s->name, 0) < 0 && errno != ENOENT) return -errno;
      changed = true;
    } else if (s->len < s->file_len) {
      int fd = openat(dirfd, s->name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return -errno;
      int rc = ftruncate(fd, (off_t)s->len) < 0 || fdatasync(fd) < 0 ? -errno : 0;
      close(fd);
      if (rc < 0) return rc;
      changed = true;
    }
  }
  if (changed && fsync(dirfd) < 0) return -errno;
  return 0;
}
