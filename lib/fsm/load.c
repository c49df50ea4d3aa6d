/*
 * load.c - reading machine files (mealy.h, "YAML machines: loading"):
 * the files themselves, `import:`, the top level, and the entry points.
 *
 * A file is read once however many files import it; a file that imports
 * itself through others is an error naming the cycle.  Imports are
 * relative to the importing file.  Every file's machines join one set,
 * whose names must not clash.  The YAML reader runs with all_errors, so
 * a file is read to its end whatever it holds, and the checks across
 * machines (validate.c) run even when some parts were refused: the user
 * gets every message in one go.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "load.h"

#define IMPORT_DEPTH_LIMIT 32
#define FILES_LIMIT 1000

/* ------------------------------------------------------------------ */
/* Messages.                                                           */

static void count_error(const mly_conf_msg *m, void *arg) {
  fsm_loader *L = arg;
  L->nerrors++;
  if (L->o->on_error) {
    L->o->on_error(m, L->o->arg);
  } else { /* without a handler the errors would be lost: stderr */
    char line[1024];
    fprintf(stderr, "mealy fsm: %s\n", mly_conf_format(m, line, sizeof line));
  }
}

static void pass_note(const mly_conf_msg *m, void *arg) {
  const mly_fsm_load_options *o = arg;
  if (o->on_note) o->on_note(m, o->arg);
}

int fsm_ld_bad(fsm_loader *L, const fsm_pos *p, const char *fmt, ...) {
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  mly_conf_options o = {.path = p ? p->file : NULL, .on_error = count_error,
                        .arg = L};
  return mly_conf_report(&o, p ? p->line : 0, p ? p->col : 0, "%s", text);
}

void fsm_ld_note(mly_conf *c, const mly_conf_node *n, const char *fmt, ...) {
  fsm_file *f = mly_conf_user(c);
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  mly_conf_options o = {.path = f->file, .on_error = pass_note,
                        .arg = (void *)f->L->o};
  mly_conf_report(&o, mly_conf_line(n), mly_conf_col(n), "%s", text);
}

int fsm_ld_nomem(fsm_loader *L) {
  if (!L->nomem) fsm_ld_bad(L, NULL, "out of memory while loading machines");
  L->nomem = true;
  return MLY_ENOMEM;
}

int fsm_ref_add(fsm_loader *L, fsm_ref_kind kind, size_t mi, size_t si,
                size_t ti, const char *name, fsm_pos pos) {
  if (name == NULL) return 0;
  if (L->nrefs == L->caprefs) {
    size_t cap = L->caprefs ? 2 * L->caprefs : 64;
    fsm_ref *r = realloc(L->refs, cap * sizeof *r);
    if (r == NULL) return fsm_ld_nomem(L);
    L->refs = r;
    L->caprefs = cap;
  }
  char *copy = strdup(name);
  if (copy == NULL) return fsm_ld_nomem(L);
  L->refs[L->nrefs++] = (fsm_ref){kind, mi, si, ti, copy, pos};
  return 0;
}

/* ------------------------------------------------------------------ */
/* Files.                                                              */

static int intern_file(fsm_loader *L, const char *path, const char **out) {
  fsm_set *s = L->set;
  char **f = realloc(s->files, (s->nfiles + 1) * sizeof *f);
  if (f == NULL) return fsm_ld_nomem(L);
  s->files = f;
  if ((f[s->nfiles] = strdup(path)) == NULL) return fsm_ld_nomem(L);
  *out = f[s->nfiles++];
  return 0;
}

static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) return strdup(".");
  if (slash == path) return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

static int load_text(fsm_loader *L, const char *path, const char *real,
                     const char *text, size_t len);

/* With trusted_files: real (no symbolic links in it) lies in trusted
 * directories and only root or we can change it.  0, or a message
 * through o (the file's own path names it) and MLY_EPERM. */
static int trusted(fsm_loader *L, const mly_conf_options *o,
                   const char *real) {
  if (!L->o->trusted_files) return 0;
  char err[512];
  int rc = mly_path_check(real, (uid_t)-1, NULL, 0, err, sizeof err);
  if (rc) {
    mly_conf_report(o, 0, 0, "not trusted: %s", err);
    return rc;
  }
  struct stat st;
  if (stat(real, &st) != 0) {
    rc = -errno;
    mly_conf_report(o, 0, 0, "cannot read: %s", strerror(-rc));
    return rc;
  }
  if ((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 022)) {
    mly_conf_report(o, 0, 0, "not trusted: owned by uid %u with mode %04o; "
                    "it must belong to root (or this user) and be writable "
                    "by its owner only (chown root, chmod go-w)",
                    (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
    return MLY_EPERM;
  }
  return 0;
}

/* The chain of imports that closes a cycle: "a.yaml -> b.yaml -> a.yaml". */
static void cycle_text(fsm_loader *L, size_t from, const char *again,
                       char *buf, size_t len) {
  size_t at = 0;
  buf[0] = '\0';
  for (size_t i = from; i < L->nstack && at < len; i++) {
    int w = snprintf(buf + at, len - at, "%s -> ", L->stack[i]);
    if (w < 0) return;
    at += (size_t)w;
  }
  if (at < len) snprintf(buf + at, len - at, "%s", again);
}

static int import_one(mly_conf *c, void *o, mly_conf_node *it, size_t i) {
  fsm_file *f = o;
  (void)i;
  fsm_loader *L = f->L;
  const char *rel;
  int rc = mly_conf_get_str(c, it, "an import", &rel);
  if (rc) return rc;
  if (*rel == '\0')
    return mly_conf_bad(c, it, "import is empty; write a path relative to "
                        "this file");
  char *path = NULL;
  if (rel[0] == '/') path = strdup(rel);
  else if (asprintf(&path, "%s/%s", f->dir, rel) < 0) path = NULL;
  if (path == NULL) return mly_conf_nomem(c);
  char *real = realpath(path, NULL);
  if (real == NULL) {
    int e = errno;
    rc = e == ENOMEM ? mly_conf_nomem(c)
                     : mly_conf_bad(c, it, "cannot import '%s': %s; write a "
                                    "path relative to this file",
                                    mly_conf_show(path).s, strerror(e));
    free(path);
    return rc;
  }
  for (size_t i = 0; i < L->nstack; i++)
    if (strcmp(L->stack[i], real) == 0) {
      char cyc[1024];
      cycle_text(L, i, real, cyc, sizeof cyc);
      rc = mly_conf_bad(c, it, "circular import: %s; remove one of these "
                        "imports", cyc);
      free(path);
      free(real);
      return rc;
    }
  for (size_t i = 0; i < L->ndone; i++)
    if (strcmp(L->done[i], real) == 0) { /* read already: once is enough */
      L->reused += L->gives[i];
      free(path);
      free(real);
      return 0;
    }
  if (L->nstack >= IMPORT_DEPTH_LIMIT || L->set->nfiles >= FILES_LIMIT) {
    rc = mly_conf_bad(c, it, "imports nest more than %d deep or name more "
                      "than %d files; flatten them", IMPORT_DEPTH_LIMIT,
                      FILES_LIMIT);
    free(path);
    free(real);
    return rc;
  }
  char *text = NULL;
  size_t len = 0;
  mly_conf_options ro = {.path = path, .on_error = count_error, .arg = L};
  /* the message names the import's own position too */
  rc = trusted(L, &ro, real);
  if (rc == 0) rc = mly_conf_read(&ro, real, &text, &len);
  if (rc) {
    mly_conf_bad(c, it, "this import cannot be read (the message before "
                 "says why)");
  } else {
    rc = load_text(L, path, real, text, len);
    free(text);
  }
  free(path);
  free(real);
  return rc;
}

static int top_import(mly_conf *c, void *o, mly_conf_node *v) {
  if (mly_conf_type_of(v) == MLY_CONF_SCALAR) return import_one(c, o, v, 0);
  if (mly_conf_type_of(v) != MLY_CONF_LIST)
    return mly_conf_bad(c, v, "import must be a list of files, not %s",
                        mly_conf_kind_name(v));
  return mly_conf_each(c, v, import_one, o);
}

static int top_machines(mly_conf *c, void *o, mly_conf_node *v) {
  (void)c;
  ((fsm_file *)o)->machines = v;
  return fsm_parse_machines(o, v);
}

static int top_root_url(mly_conf *c, void *o, mly_conf_node *v) {
  (void)o;
  fsm_ld_note(c, v, "'root_url' concerns App Engine only; accepted and "
              "ignored");
  return 0;
}

/* Machines and sections given so far (the check that a root file gives
 * something to run). */
static size_t given(const fsm_loader *L) {
  return L->set->nmachines + L->nsections + L->reused;
}

/* queues: and schedules: belong to the task-queue layer, if built in. */
static int top_section(mly_conf *c, mly_conf_node *v, const char *key) {
  fsm_file *f = mly_conf_user(c);
  const mly_fsm_load_options *o = f->L->o;
  for (size_t i = 0; i < o->nsections; i++)
    if (o->sections[i].key && strcmp(o->sections[i].key, key) == 0) {
      f->L->nsections++;
      return o->sections[i].read(c, v, o->sections[i].arg);
    }
  if (strcmp(key, "store") == 0)
    return mly_conf_bad(c, v, "'store' is not read by this program (mealy "
                        "fsm run reads it); remove it");
  return mly_conf_bad(c, v, "'%s' is not supported by this build (the task "
                      "queue layer reads it); remove it, or run a mealy that "
                      "has task queues", key);
}

static int top_queues(mly_conf *c, void *o, mly_conf_node *v) {
  (void)o;
  return top_section(c, v, "queues");
}

static int top_schedules(mly_conf *c, void *o, mly_conf_node *v) {
  (void)o;
  return top_section(c, v, "schedules");
}

/* store: is the PostgreSQL store's (mly_store_conf_section) */
static int top_store(mly_conf *c, void *o, mly_conf_node *v) {
  (void)o;
  return top_section(c, v, "store");
}

static const mly_conf_field top_fields[] = {
    {"import", top_import, false},
    {"state_machines", top_machines, false},
    {"queues", top_queues, true},
    {"schedules", top_schedules, true},
    {"root_url", top_root_url, false},
    {"store", top_store, true}};

static int load_root(mly_conf *c, mly_conf_node *root) {
  fsm_file *f = mly_conf_user(c);
  f->c = c;
  if (root == NULL || mly_conf_is_null(root))
    return mly_conf_bad_at(c, 1, 1, "the file is empty; write a map with "
                           "state_machines: (and import: if it needs other "
                           "files)");
  if (mly_conf_type_of(root) != MLY_CONF_MAP)
    return mly_conf_bad(c, root, "the top level is %s; it must be a map with "
                        "state_machines:", mly_conf_kind_name(root));
  size_t before = given(f->L);
  int rc = mly_conf_walk(c, root, top_fields,
                         sizeof top_fields / sizeof top_fields[0],
                         "at the top level", f);
  /* a file named to be loaded (not one imported: a library of machines
     may be empty) must give something to run, itself or by its imports */
  if (rc == 0 && f->L->nstack == 1 && given(f->L) == before) {
    if (f->machines)
      return mly_conf_bad(c, f->machines, "state_machines is an empty list: "
                          "this file has nothing to run; add a machine "
                          "(- name: NAME, states: [...])");
    return mly_conf_bad(c, root, "this file defines no machine: nothing to "
                        "run; add state_machines: with at least one machine "
                        "(or import: files that have some)");
  }
  return rc;
}

static int load_text(fsm_loader *L, const char *path, const char *real,
                     const char *text, size_t len) {
  fsm_file f = {.L = L};
  char *dir = dir_of(real);
  char *own = strdup(real);
  char **st = realloc(L->stack, (L->nstack + 1) * sizeof *st);
  if (st) L->stack = st;
  char **dn = realloc(L->done, (L->ndone + 1) * sizeof *dn);
  if (dn) L->done = dn;
  size_t *gv = realloc(L->gives, (L->ndone + 1) * sizeof *gv);
  if (gv) L->gives = gv;
  int rc = dir && own && st && dn && gv ? intern_file(L, path, &f.file)
                                        : fsm_ld_nomem(L);
  if (rc) {
    free(dir);
    free(own);
    return rc;
  }
  f.dir = dir;
  L->stack[L->nstack++] = own;
  size_t at = L->ndone++, before = given(L);
  L->done[at] = own;
  L->gives[at] = 0;
  mly_conf_options o = {.path = f.file, .all_errors = true,
                        .on_error = count_error, .arg = L, .user = &f};
  rc = mly_conf_parse(&o, text, len, load_root);
  L->gives[at] = given(L) - before;
  L->nstack--;
  free(dir);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Entry points.                                                       */

static void loader_free(fsm_loader *L) {
  for (size_t i = 0; i < L->nrefs; i++) free(L->refs[i].name);
  free(L->refs);
  for (size_t i = 0; i < L->ndone; i++) free(L->done[i]);
  free(L->done);
  free(L->gives);
  free(L->stack);
}

typedef struct source {
  const char *path;
  const char *text; /* NULL: read path */
  size_t len;
} source;

static int load_all(const source *src, size_t n, const mly_fsm_load_options *o,
                    mly_fsm_set **out) {
  static const mly_fsm_load_options none = {0};
  fsm_loader L = {.o = o ? o : &none};
  if (out) *out = NULL;
  if (out == NULL || (n > 0 && src == NULL)) return MLY_EINVAL;
  if ((L.set = calloc(1, sizeof *L.set)) == NULL) return MLY_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < n && !L.nomem; i++) {
    mly_conf_options ro = {.path = src[i].path, .on_error = count_error,
                           .arg = &L};
    char *text = NULL, *real = NULL;
    size_t len = src[i].len;
    int r = 0;
    if (src[i].path == NULL) {
      r = fsm_ld_bad(&L, NULL, "no machine file given");
    } else if (src[i].text == NULL) {
      /* what was checked is what is read: the path without links */
      char *rp = realpath(src[i].path, NULL);
      r = rp ? trusted(&L, &ro, rp) : 0; /* a missing file: read says so */
      if (r == 0) r = mly_conf_read(&ro, rp ? rp : src[i].path, &text, &len);
      free(rp);
    }
    if (r == 0) {
      real = realpath(src[i].path, NULL);
      bool seen = false;
      for (size_t j = 0; real && j < L.ndone; j++)
        seen = seen || strcmp(L.done[j], real) == 0;
      if (!seen)
        r = load_text(&L, src[i].path, real ? real : src[i].path,
                      text ? text : src[i].text, len);
    }
    free(text);
    free(real);
    if (r && rc == 0) rc = r;
  }
  if (!L.nomem) {
    int r = fsm_validate(&L);
    if (r && rc == 0) rc = r;
  }
  /* what the sections read, against every machine and file loaded */
  for (size_t i = 0; i < L.o->nsections && !L.nomem; i++)
    if (L.o->sections[i].check) {
      mly_conf_options ro = {.on_error = count_error, .arg = &L};
      L.o->sections[i].check(&ro, (const mly_fsm_set *)L.set,
                             L.o->sections[i].arg);
    }
  if (L.nomem) rc = MLY_ENOMEM;
  else if (L.nerrors > 0 && rc == 0) rc = MLY_EINVAL;
  if (rc == 0) rc = fsm_set_hash(L.set);
  loader_free(&L);
  if (rc) {
    fsm_set_free(L.set);
    return rc < 0 ? rc : MLY_EINVAL;
  }
  *out = (mly_fsm_set *)L.set;
  return 0;
}

int mly_fsm_load(const char *const *files, size_t nfiles,
                 const mly_fsm_load_options *o, mly_fsm_set **out) {
  source *src = calloc(nfiles ? nfiles : 1, sizeof *src);
  if (src == NULL) return MLY_ENOMEM;
  for (size_t i = 0; i < nfiles; i++) src[i].path = files[i];
  int rc = load_all(src, nfiles, o, out);
  free(src);
  return rc;
}

int mly_fsm_load_text(const char *path, const char *text, size_t len,
                      const mly_fsm_load_options *o, mly_fsm_set **out) {
  source s = {path ? path : "machines.yaml", text ? text : "", text ? len : 0};
  return load_all(&s, 1, o, out);
}
