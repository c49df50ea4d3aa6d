/*
 * pl_model.c - replaying an operation log into model operations, and
 * building crash images from them (see pl_model.h for the model).
 *
 * Loading replays the log on a "volatile" state (what the kernel shows:
 * every operation applied), which resolves paths and descriptors to
 * objects: a file or directory keeps its number however it is renamed or
 * unlinked.  Each model operation has one owner whose sync makes it
 * durable (the file for data, the directory for an entry; a rename has
 * two).  Building an image applies, in log order, to a fresh state whose
 * root starts as the log's PL_PRE entries left it, the operations durable
 * at the crash point and those the class keeps, then writes out the tree
 * reachable from the root.
 */
#include "pl_model.h"
#include "pl_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECTOR 512u
#define FD_MAX 16384

typedef struct ent {
  char *name;
  uint32_t obj;
} ent;

typedef struct fobj {
  unsigned char *data; /* a file's bytes */
  size_t size, cap;
  ent *ents;           /* a directory's entries */
  size_t nents, ecap;
} fobj;

typedef struct fstate {
  fobj *o;
  size_t n;
} fstate;

typedef struct mop {
  uint8_t kind;
  bool pre;          /* durable before the log began */
  uint32_t obj;      /* ADD, RENAME: the object named; data ops: the file */
  uint32_t dir, dir2;
  char *name, *name2;
  uint64_t off, len;
  const unsigned char *data;
  char *ack;
} mop;

struct pl_model {
  unsigned char *log;
  size_t loglen;
  mop *ops;
  size_t nops, cap;
  bool *isdir;
  char **path;       /* each object's last name, for messages */
  size_t nobj, ocap;
  fstate vol;        /* every operation applied */
  char *state;       /* from the first PL_MARK */
};

static int errf(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, len, fmt, ap);
  va_end(ap);
  return -1;
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL) {
    fprintf(stderr, "pl_model: out of memory\n");
    abort();
  }
  return q;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(xrealloc(NULL, n), s, n);
}

/* ---- states ---- */

static void st_grow(fstate *s, size_t n) {
  if (n <= s->n) return;
  s->o = xrealloc(s->o, n * sizeof *s->o);
  memset(s->o + s->n, 0, (n - s->n) * sizeof *s->o);
  s->n = n;
}

static void st_free(fstate *s) {
  for (size_t i = 0; i < s->n; i++) {
    free(s->o[i].data);
    for (size_t e = 0; e < s->o[i].nents; e++) free(s->o[i].ents[e].name);
    free(s->o[i].ents);
  }
  free(s->o);
  *s = (fstate){0};
}

static ent *st_find(fstate *s, uint32_t dir, const char *name) {
  fobj *d = &s->o[dir];
  for (size_t i = 0; i < d->nents; i++)
    if (strcmp(d->ents[i].name, name) == 0) return &d->ents[i];
  return NULL;
}

static void st_link(fstate *s, uint32_t dir, const char *name, uint32_t obj) {
  ent *e = st_find(s, dir, name);
  if (e) {
    e->obj = obj;
    return;
  }
  fobj *d = &s->o[dir];
  if (d->nents == d->ecap) {
    d->ecap = d->ecap ? 2 * d->ecap : 8;
    d->ents = xrealloc(d->ents, d->ecap * sizeof *d->ents);
  }
  d->ents[d->nents++] = (ent){xstrdup(name), obj};
}

static void st_unlink(fstate *s, uint32_t dir, const char *name) {
  ent *e = st_find(s, dir, name);
  if (e == NULL) return;
  fobj *d = &s->o[dir];
  free(e->name);
  *e = d->ents[--d->nents];
}

/* New bytes read as zeros, whether the file grows or shrank before. */
static void st_resize(fobj *f, size_t n) {
  if (n > f->cap) {
    size_t cap = f->cap ? f->cap : 4096;
    while (cap < n) cap *= 2;
    f->data = xrealloc(f->data, cap);
    memset(f->data + f->cap, 0, cap - f->cap);
    f->cap = cap;
  }
  if (n < f->size) memset(f->data + n, 0, f->size - n);
  f->size = n;
}

static void st_write(fobj *f, uint64_t off, const unsigned char *p, size_t n) {
  if (off + n > f->size) st_resize(f, off + n);
  memcpy(f->data + off, p, n);
}

/* Applies op, or for a write only bytes [from, to) of it. */
static void apply(fstate *s, const mop *op, uint64_t from, uint64_t to) {
  switch (op->kind) {
  case PLM_ADD: st_link(s, op->dir, op->name, op->obj); break;
  case PLM_DEL: st_unlink(s, op->dir, op->name); break;
  case PLM_RENAME:
    st_unlink(s, op->dir, op->name);
    st_link(s, op->dir2, op->name2, op->obj);
    break;
  case PLM_WRITE:
    st_write(&s->o[op->obj], op->off + from, op->data + from, to - from);
    break;
  case PLM_TRUNC: st_resize(&s->o[op->obj], op->off); break;
  case PLM_EXTEND:
    if (op->off > s->o[op->obj].size) st_resize(&s->o[op->obj], op->off);
    break;
  }
}

/* ---- loading ---- */

static mop *add_op(pl_model *m, uint8_t kind) {
  if (m->nops == m->cap) {
    m->cap = m->cap ? 2 * m->cap : 1024;
    m->ops = xrealloc(m->ops, m->cap * sizeof *m->ops);
  }
  mop *op = &m->ops[m->nops++];
  *op = (mop){.kind = kind};
  return op;
}

static uint32_t new_obj(pl_model *m, bool dir, const char *path) {
  if (m->nobj == m->ocap) {
    m->ocap = m->ocap ? 2 * m->ocap : 64;
    m->isdir = xrealloc(m->isdir, m->ocap * sizeof *m->isdir);
    m->path = xrealloc(m->path, m->ocap * sizeof *m->path);
  }
  m->isdir[m->nobj] = dir;
  m->path[m->nobj] = xstrdup(path);
  st_grow(&m->vol, m->nobj + 1);
  return (uint32_t)m->nobj++;
}

/* The last op, applied to the volatile state. */
static void commit(pl_model *m) {
  apply(&m->vol, &m->ops[m->nops - 1], 0, m->ops[m->nops - 1].len);
}

/* Splits rel into its directory (an object) and last name; -1: no such
 * directory.  "" (the root itself) has no parent: *name is "". */
static int64_t parent_of(pl_model *m, const char *rel, char *name) {
  uint32_t dir = 0;
  char buf[PL_PATH_MAX];
  snprintf(buf, sizeof buf, "%s", rel);
  char *s = buf, *slash;
  while ((slash = strchr(s, '/')) != NULL) {
    *slash = '\0';
    ent *e = st_find(&m->vol, dir, s);
    if (e == NULL || !m->isdir[e->obj]) return -1;
    dir = e->obj;
    s = slash + 1;
  }
  strcpy(name, s);
  return dir;
}

/* The object at rel, or -1. */
static int64_t lookup(pl_model *m, const char *rel) {
  char name[PL_PATH_MAX];
  if (rel[0] == '\0') return 0;
  int64_t dir = parent_of(m, rel, name);
  if (dir < 0) return -1;
  ent *e = st_find(&m->vol, (uint32_t)dir, name);
  return e ? (int64_t)e->obj : -1;
}

typedef struct fdent {
  uint32_t obj1; /* object + 1; 0: not open */
  bool sync;     /* O_SYNC or O_DSYNC: every write is durable */
} fdent;

static int replay(pl_model *m, fdent *fdt, const pl_rec *r, const char *p,
                  const char *p2, const unsigned char *data, size_t at,
                  char *err, size_t errlen) {
  char name[PL_PATH_MAX];
  int fd = r->fd;
  bool fd_op = r->op == PL_CLOSE || r->op == PL_DUP || r->op == PL_WRITE ||
               r->op == PL_TRUNC || r->op == PL_EXTEND || r->op == PL_FSYNC ||
               r->op == PL_FDATASYNC || r->op == PL_SYNC_RANGE;
  if (fd_op && (fd < 0 || fd >= FD_MAX || fdt[fd].obj1 == 0))
    return errf(err, errlen, "log offset %zu: op %u on descriptor %d, which "
                "no logged open made", at, r->op, fd);
  uint32_t obj = fd_op ? fdt[fd].obj1 - 1 : 0u;
  mop *op;
  switch (r->op) {
  case PL_PRE:
  case PL_MKDIR: {
    int64_t dir = parent_of(m, p, name);
    if (dir < 0 || name[0] == '\0' || st_find(&m->vol, (uint32_t)dir, name))
      return errf(err, errlen, "log offset %zu: mkdir %s does not fit the "
                  "log's directory tree", at, p);
    op = add_op(m, PLM_ADD);
    op->pre = r->op == PL_PRE;
    op->dir = (uint32_t)dir;
    op->name = xstrdup(name);
    op->obj = new_obj(m, true, p);
    commit(m);
    return 0;
  }
  case PL_OPEN: {
    if (fd < 0 || fd >= FD_MAX)
      return errf(err, errlen, "log offset %zu: descriptor %d", at, fd);
    int64_t o = lookup(m, p);
    int flags = (int)r->flags;
    if (o < 0) {
      int64_t dir = parent_of(m, p, name);
      if (!(flags & O_CREAT) || dir < 0)
        return errf(err, errlen, "log offset %zu: open of %s, which the log "
                    "never made (a call the interposer missed?)", at, p);
      op = add_op(m, PLM_ADD);
      op->dir = (uint32_t)dir;
      op->name = xstrdup(name);
      op->obj = new_obj(m, false, p);
      commit(m);
      o = op->obj;
    }
    if (m->isdir[o] != (r->off != 0))
      return errf(err, errlen, "log offset %zu: %s is a %s in the log but "
                  "not on disk", at, p, m->isdir[o] ? "directory" : "file");
    if ((flags & O_TRUNC) && !m->isdir[o]) {
      op = add_op(m, PLM_TRUNC);
      op->obj = (uint32_t)o;
      commit(m);
    }
    fdt[fd] = (fdent){(uint32_t)o + 1, (flags & (O_SYNC | O_DSYNC)) != 0};
    return 0;
  }
  case PL_CLOSE: fdt[fd].obj1 = 0; return 0;
  case PL_DUP:
    if (r->fd2 < 0 || r->fd2 >= FD_MAX)
      return errf(err, errlen, "log offset %zu: descriptor %d", at, r->fd2);
    fdt[r->fd2] = fdt[fd];
    return 0;
  case PL_WRITE:
    op = add_op(m, PLM_WRITE);
    op->obj = obj;
    op->off = r->off;
    op->len = r->len;
    op->data = data;
    commit(m);
    if (fdt[fd].sync) {
      op = add_op(m, PLM_SYNC);
      op->obj = obj;
    }
    return 0;
  case PL_TRUNC:
  case PL_EXTEND:
  case PL_TRUNC_PATH: {
    if (r->op == PL_TRUNC_PATH) {
      int64_t o = lookup(m, p);
      if (o < 0)
        return errf(err, errlen, "log offset %zu: truncate of %s, which the "
                    "log never made", at, p);
      obj = (uint32_t)o;
    }
    op = add_op(m, r->op == PL_EXTEND ? PLM_EXTEND : PLM_TRUNC);
    op->obj = obj;
    op->off = r->off;
    commit(m);
    return 0;
  }
  case PL_FSYNC:
  case PL_FDATASYNC:
    op = add_op(m, PLM_SYNC);
    op->obj = obj;
    return 0;
  case PL_SYNC_RANGE: return 0; /* makes nothing durable */
  case PL_SYNC_ALL: add_op(m, PLM_SYNC_ALL); return 0;
  case PL_UNLINK:
  case PL_RMDIR: {
    int64_t dir = parent_of(m, p, name);
    if (dir < 0 || st_find(&m->vol, (uint32_t)dir, name) == NULL)
      return errf(err, errlen, "log offset %zu: unlink of %s, which the log "
                  "never made", at, p);
    op = add_op(m, PLM_DEL);
    op->dir = (uint32_t)dir;
    op->name = xstrdup(name);
    commit(m);
    return 0;
  }
  case PL_RENAME: {
    char name2[PL_PATH_MAX];
    int64_t o = lookup(m, p), d1 = parent_of(m, p, name),
            d2 = parent_of(m, p2, name2);
    if (o < 0 || d2 < 0)
      return errf(err, errlen, "log offset %zu: rename %s -> %s does not fit "
                  "the log's directory tree", at, p, p2);
    op = add_op(m, PLM_RENAME);
    op->obj = (uint32_t)o;
    op->dir = (uint32_t)d1;
    op->name = xstrdup(name);
    op->dir2 = (uint32_t)d2;
    op->name2 = xstrdup(name2);
    free(m->path[o]);
    m->path[o] = xstrdup(p2);
    commit(m);
    return 0;
  }
  case PL_ACK:
    op = add_op(m, PLM_ACK);
    op->ack = xrealloc(NULL, r->len + 1);
    memcpy(op->ack, data, r->len);
    op->ack[r->len] = '\0';
    return 0;
  case PL_MARK:
    if (m->state == NULL && p[0]) m->state = xstrdup(p);
    add_op(m, PLM_MARK);
    return 0;
  case PL_UNSUPPORTED:
    return errf(err, errlen, "log offset %zu: the workload made a call the "
                "model does not know (%s): teach the simulator before "
                "trusting it", at, p);
  }
  return errf(err, errlen, "log offset %zu: unknown op %u", at, r->op);
}

int plm_load(const char *path, pl_model **out, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return errf(err, errlen, "%s: %s", path, strerror(errno));
  pl_model *m = calloc(1, sizeof *m);
  if (m == NULL) abort();
  size_t cap = 1 << 20;
  m->log = xrealloc(NULL, cap);
  size_t got;
  while ((got = fread(m->log + m->loglen, 1, cap - m->loglen, f)) > 0) {
    m->loglen += got;
    if (m->loglen == cap) m->log = xrealloc(m->log, cap *= 2);
  }
  fclose(f);
  new_obj(m, true, ""); /* the root: object 0 */
  fdent *fdt = calloc(FD_MAX, sizeof *fdt);
  if (fdt == NULL) abort();
  int rc = 0;
  size_t at = 0;
  while (rc == 0 && at < m->loglen) {
    pl_rec r;
    if (m->loglen - at < sizeof r) {
      rc = errf(err, errlen, "%s: offset %zu: a record cut short", path, at);
      break;
    }
    memcpy(&r, m->log + at, sizeof r);
    size_t need = sizeof r + (size_t)r.plen + r.p2len + r.len;
    if (r.magic != PL_MAGIC || r.plen >= PL_PATH_MAX || r.p2len >= PL_PATH_MAX ||
        need > m->loglen - at) {
      rc = errf(err, errlen, "%s: offset %zu: not a record", path, at);
      break;
    }
    char p[PL_PATH_MAX], p2[PL_PATH_MAX];
    memcpy(p, m->log + at + sizeof r, r.plen);
    p[r.plen] = '\0';
    memcpy(p2, m->log + at + sizeof r + r.plen, r.p2len);
    p2[r.p2len] = '\0';
    rc = replay(m, fdt, &r, p, p2, m->log + at + sizeof r + r.plen + r.p2len,
                at, err, errlen);
    at += need;
  }
  free(fdt);
  if (rc < 0) {
    plm_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

void plm_free(pl_model *m) {
  if (m == NULL) return;
  for (size_t i = 0; i < m->nops; i++) {
    free(m->ops[i].name);
    free(m->ops[i].name2);
    free(m->ops[i].ack);
  }
  for (size_t i = 0; i < m->nobj; i++) free(m->path[i]);
  free(m->path);
  free(m->isdir);
  free(m->ops);
  st_free(&m->vol);
  free(m->state);
  free(m->log);
  free(m);
}

size_t plm_nops(const pl_model *m) { return m->nops; }
int plm_kind(const pl_model *m, size_t i) { return m->ops[i].kind; }
const char *plm_state(const pl_model *m) { return m->state ? m->state : "state"; }

bool plm_file_sync(const pl_model *m, size_t i) {
  return m->ops[i].kind == PLM_SYNC && !m->isdir[m->ops[i].obj];
}
const char *plm_ack(const pl_model *m, size_t i) {
  return m->ops[i].kind == PLM_ACK ? m->ops[i].ack : NULL;
}

const char *plm_class_name(plm_class c) {
  static const char *const names[] = {"synced", "prefix", "reorder"};
  return (unsigned)c < PLM_NCLASSES ? names[c] : "?";
}

int plm_class_parse(const char *s, plm_class *out) {
  for (int c = 0; c < PLM_NCLASSES; c++)
    if (strcmp(s, plm_class_name((plm_class)c)) == 0) {
      *out = (plm_class)c;
      return 0;
    }
  return -1;
}

/* ---- durability at a crash point ---- */

/* last[obj]: 1 + the index of its last sync before k (0: none). */
static size_t *last_syncs(const pl_model *m, size_t k) {
  size_t *last = calloc(m->nobj + 1, sizeof *last);
  if (last == NULL) abort();
  for (size_t j = 0; j < k; j++) {
    if (m->ops[j].kind == PLM_SYNC) last[m->ops[j].obj] = j + 1;
    if (m->ops[j].kind == PLM_SYNC_ALL) last[m->nobj] = j + 1; /* everything */
  }
  return last;
}

static bool changes(const mop *op) {
  return op->kind == PLM_ADD || op->kind == PLM_DEL || op->kind == PLM_RENAME ||
         op->kind == PLM_WRITE || op->kind == PLM_TRUNC || op->kind == PLM_EXTEND;
}

static bool synced_by(const size_t *last, size_t nobj, uint32_t owner,
                      size_t i) {
  size_t s = last[owner] > last[nobj] ? last[owner] : last[nobj];
  return s > i + 1;
}

static bool durable(const pl_model *m, const size_t *last, size_t i) {
  const mop *op = &m->ops[i];
  if (op->pre) return true;
  switch (op->kind) {
  case PLM_ADD:
  case PLM_DEL: return synced_by(last, m->nobj, op->dir, i);
  case PLM_RENAME:
    return synced_by(last, m->nobj, op->dir, i) &&
           synced_by(last, m->nobj, op->dir2, i);
  default: return synced_by(last, m->nobj, op->obj, i);
  }
}

/* The pieces a write splits into: its stretches within one sector. */
static uint64_t pieces(const mop *op) {
  if (op->kind != PLM_WRITE || op->len == 0) return 1;
  return (op->off + op->len - 1) / SECTOR - op->off / SECTOR + 1;
}

/* Unsynced ops before k, their pieces, and the writes of several. */
static size_t count_unsynced(const pl_model *m, const size_t *last, size_t k,
                             uint64_t *npieces, uint64_t *nmulti) {
  size_t n = 0;
  *npieces = *nmulti = 0;
  for (size_t i = 0; i < k; i++)
    if (changes(&m->ops[i]) && !durable(m, last, i)) {
      n++;
      *npieces += pieces(&m->ops[i]);
      *nmulti += pieces(&m->ops[i]) > 1;
    }
  return n;
}

size_t plm_unsynced(const pl_model *m, size_t k) {
  size_t *last = last_syncs(m, k);
  uint64_t np, nm;
  size_t n = count_unsynced(m, last, k, &np, &nm);
  free(last);
  return n;
}

bool plm_reorderable(const pl_model *m, size_t k) {
  size_t *last = last_syncs(m, k);
  bool yes = false;
  for (size_t i = 0; i < k && !yes; i++)
    yes = changes(&m->ops[i]) && !durable(m, last, i) && pieces(&m->ops[i]) > 1;
  free(last);
  return yes;
}

/* ---- building an image ---- */

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545f4914f6cdd1dull;
}

static const char *base(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

/* desc: "W name@off+len:X.X" per unsynced op (X kept, . lost, Tn torn) */
typedef struct dbuf {
  char *p;
  size_t len, n;
  unsigned shown;
} dbuf;

static void dput(dbuf *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dput(dbuf *d, const char *fmt, ...) {
  if (d->n + 1 >= d->len) return;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(d->p + d->n, d->len - d->n, fmt, ap);
  va_end(ap);
  if (w > 0) d->n = d->n + (size_t)w < d->len ? d->n + (size_t)w : d->len - 1;
}

static void describe(dbuf *d, const pl_model *m, const mop *op) {
  if (++d->shown > 12) {
    if (d->shown == 13) dput(d, " ...");
    return;
  }
  switch (op->kind) {
  case PLM_ADD: dput(d, " add %s:", m->path[op->obj]); break;
  case PLM_DEL: dput(d, " del %s/%s:", m->path[op->dir], op->name); break;
  case PLM_RENAME: dput(d, " rename %s:", m->path[op->obj]); break;
  case PLM_WRITE:
    dput(d, " write %s@%llu+%llu:", base(m->path[op->obj]),
         (unsigned long long)op->off, (unsigned long long)op->len);
    break;
  case PLM_TRUNC:
    dput(d, " trunc %s@%llu:", base(m->path[op->obj]), (unsigned long long)op->off);
    break;
  case PLM_EXTEND:
    dput(d, " extend %s@%llu:", base(m->path[op->obj]), (unsigned long long)op->off);
    break;
  }
}

void plm_describe(const pl_model *m, size_t i, char *out, size_t len) {
  const mop *op = &m->ops[i];
  dbuf d = {out, len, 0, 0};
  out[0] = '\0';
  switch (op->kind) {
  case PLM_SYNC: dput(&d, "sync %s", m->path[op->obj]); break;
  case PLM_SYNC_ALL: dput(&d, "sync everything"); break;
  case PLM_ACK: dput(&d, "ack %.*s", (int)strcspn(op->ack, "\n"), op->ack); break;
  case PLM_MARK: dput(&d, "a run of the workload begins"); break;
  default:
    describe(&d, m, op);
    if (d.n > 0 && out[d.n - 1] == ':') out[--d.n] = '\0';
    if (op->pre) dput(&d, " (before the log)");
  }
}

static int write_tree(const fstate *s, const bool *isdir, uint32_t dir,
                      const char *path, int depth, char *err, size_t errlen) {
  if (depth > 32) return errf(err, errlen, "%s: the tree is too deep", path);
  const fobj *d = &s->o[dir];
  for (size_t i = 0; i < d->nents; i++) {
    char p[PL_PATH_MAX];
    int n = snprintf(p, sizeof p, "%s/%s", path, d->ents[i].name);
    if (n < 0 || (size_t)n >= sizeof p)
      return errf(err, errlen, "%s/%s: the path is too long (at most %d "
                  "bytes)", path, d->ents[i].name, PL_PATH_MAX - 1);
    uint32_t o = d->ents[i].obj;
    if (isdir[o]) {
      if (mkdir(p, 0755) < 0)
        return errf(err, errlen, "mkdir %s: %s", p, strerror(errno));
      int rc = write_tree(s, isdir, o, p, depth + 1, err, errlen);
      if (rc < 0) return rc;
      continue;
    }
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return errf(err, errlen, "create %s: %s", p, strerror(errno));
    const fobj *f = &s->o[o];
    size_t done = 0;
    while (done < f->size) {
      ssize_t w = write(fd, f->data + done, f->size - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        close(fd);
        return errf(err, errlen, "write %s: %s", p, strerror(errno));
      }
      done += (size_t)w;
    }
    close(fd);
  }
  return 0;
}

int plm_build(const pl_model *m, size_t k, plm_class cls, uint64_t seed,
              const char *outdir, char *desc, size_t desclen, char *err,
              size_t errlen) {
  if (k > m->nops)
    return errf(err, errlen, "crash point %zu is past the log's %zu "
                "operations", k, m->nops);
  size_t *last = last_syncs(m, k);
  uint64_t rs = (seed ^ (uint64_t)k * 0x9e3779b97f4a7c15ull ^ (uint64_t)cls) | 1;
  for (int i = 0; i < 4; i++) rng_next(&rs);
  uint64_t npieces, nmulti;
  size_t nun = count_unsynced(m, last, k, &npieces, &nmulti);
  /* prefix: how many unsynced ops are kept whole, and whether the next
   * one (a write) is torn; reorder: the odds of keeping each piece, or
   * (one hole) every piece but one: a sector of a write over several,
   * not its last, so later sectors persist without it (without such a
   * write, any piece) */
  size_t keep = cls == PLM_PREFIX ? (size_t)(rng_next(&rs) % (nun + 1)) : 0;
  bool torn = cls == PLM_PREFIX && rng_next(&rs) % 2;
  unsigned odds = 1 + (unsigned)(rng_next(&rs) % 3); /* in quarters */
  bool one_hole = rng_next(&rs) % 2;
  uint64_t hole = npieces ? rng_next(&rs) % npieces : 0, piece = 0;
  uint64_t hole_w = nmulti ? rng_next(&rs) % nmulti : UINT64_MAX, multi = 0;
  fstate img = {0};
  st_grow(&img, m->nobj);
  uint64_t *grew = calloc(m->nobj, sizeof *grew); /* reorder: size first */
  bool *size_first = calloc(m->nobj, sizeof *size_first);
  if (grew == NULL || size_first == NULL) abort();
  for (size_t o = 0; o < m->nobj; o++) size_first[o] = rng_next(&rs) % 4 == 0;
  dbuf d = {desc, desclen, 0, 0};
  desc[0] = '\0';
  dput(&d, "%s%s image, crash after op %zu of %zu, %zu unsynced:",
       plm_class_name(cls), cls == PLM_REORDER && one_hole ? " (one hole)" : "",
       k, m->nops, nun);
  size_t u = 0, kept = 0;
  for (size_t i = 0; i < k; i++) {
    const mop *op = &m->ops[i];
    if (!changes(op)) continue;
    if (durable(m, last, i)) {
      apply(&img, op, 0, op->len);
      continue;
    }
    describe(&d, m, op);
    bool show = d.shown <= 12;
    if (cls == PLM_SYNCED) {
      if (show) dput(&d, ".");
    } else if (cls == PLM_PREFIX) {
      if (u < keep) {
        apply(&img, op, 0, op->len);
        kept++;
        if (show) dput(&d, "X");
      } else if (u == keep && torn && op->kind == PLM_WRITE && op->len > 1) {
        uint64_t cut = 1 + rng_next(&rs) % (op->len - 1);
        apply(&img, op, 0, cut);
        if (show) dput(&d, "T%llu", (unsigned long long)cut);
      } else if (show) {
        dput(&d, ".");
      }
    } else if (op->kind != PLM_WRITE) {
      bool k1 = one_hole ? nmulti || piece++ != hole : rng_next(&rs) % 4 < odds;
      if (k1) apply(&img, op, 0, op->len), kept++;
      if (show) dput(&d, "%c", k1 ? 'X' : '.');
    } else {
      uint64_t end = op->off + op->len, np = pieces(op), j = 0, lose = UINT64_MAX;
      if (end > grew[op->obj]) grew[op->obj] = end;
      if (np > 1 && multi++ == hole_w) lose = rng_next(&rs) % (np - 1);
      for (uint64_t at = op->off; at < end; j++) {
        uint64_t next = (at / SECTOR + 1) * SECTOR;
        if (next > end) next = end;
        bool k1 = one_hole ? (nmulti ? j != lose : piece++ != hole)
                           : rng_next(&rs) % 4 < odds;
        if (k1) apply(&img, op, at - op->off, next - op->off), kept++;
        if (show) dput(&d, "%c", k1 ? 'X' : '.');
        at = next;
      }
    }
    u++;
  }
  if (cls == PLM_REORDER && !one_hole)
    for (size_t o = 0; o < m->nobj; o++)
      if (size_first[o] && grew[o] > img.o[o].size) {
        st_resize(&img.o[o], grew[o]);
        dput(&d, " (%s grew to %llu with no data)", base(m->path[o]),
             (unsigned long long)grew[o]);
      }
  int rc = write_tree(&img, m->isdir, 0, outdir, 0, err, errlen);
  st_free(&img);
  free(grew);
  free(size_first);
  free(last);
  return rc;
}

/* ---- comparing with a real directory ---- */

static int compare_dir(const pl_model *m, uint32_t dir, const char *path,
                       char *err, size_t errlen) {
  const fobj *d = &m->vol.o[dir];
  DIR *dp = opendir(path);
  if (dp == NULL) return errf(err, errlen, "%s: %s", path, strerror(errno));
  struct dirent *e;
  size_t seen = 0;
  int rc = 0;
  while (rc == 0 && (e = readdir(dp)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    seen++;
    bool found = false;
    for (size_t i = 0; i < d->nents && !found; i++)
      found = strcmp(d->ents[i].name, e->d_name) == 0;
    if (!found)
      rc = errf(err, errlen, "%s/%s exists, but the log never made it (a "
                "call the interposer missed)", path, e->d_name);
  }
  closedir(dp);
  if (rc == 0 && seen != d->nents)
    rc = errf(err, errlen, "%s: the log made %zu entries, the disk has %zu",
              path, d->nents, seen);
  for (size_t i = 0; rc == 0 && i < d->nents; i++) {
    char p[PL_PATH_MAX];
    int n = snprintf(p, sizeof p, "%s/%s", path, d->ents[i].name);
    if (n < 0 || (size_t)n >= sizeof p)
      return errf(err, errlen, "%s/%s: the path is too long (at most %d "
                  "bytes)", path, d->ents[i].name, PL_PATH_MAX - 1);
    uint32_t o = d->ents[i].obj;
    struct stat st;
    if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode) != !m->isdir[o]) {
      rc = errf(err, errlen, "%s: not what the log made", p);
    } else if (m->isdir[o]) {
      rc = compare_dir(m, o, p, err, errlen);
    } else {
      const fobj *f = &m->vol.o[o];
      unsigned char *b = xrealloc(NULL, f->size + 1);
      FILE *fp = fopen(p, "rb");
      size_t n = fp ? fread(b, 1, f->size + 1, fp) : 0;
      if (fp) fclose(fp);
      if (n != f->size || (f->size && memcmp(b, f->data, f->size) != 0))
        rc = errf(err, errlen, "%s: %zu bytes on disk differ from the %zu "
                  "the log wrote (a write the interposer missed)", p, n,
                  f->size);
      free(b);
    }
  }
  return rc;
}

int plm_compare(const pl_model *m, const char *root, char *err, size_t errlen) {
  return compare_dir(m, 0, root, err, errlen);
}
