/*
 * names.c - unique instance names and their tombstones (mealy.h
 * "Contexts and names"): one table per runtime, for the YAML machines'
 * named instances and the task queues' named tasks alike (D10).
 *
 * A name is held by a live instance (or a parked one) from its spawn to
 * its end, then by a tombstone (its id, exit status and the wall-clock
 * ms it ended) for the retention window.  Both kinds sit in one uthash
 * table keyed by the name; tombstones are also on a list in the order
 * they ended, so expiry pops from its head: a spawn, an end or a lookup
 * drops what has expired, and a name comes free again after the window
 * whether or not a compaction ran.  A lookup of one name also looks at
 * that entry's own age (the wall clock may step back, and the list is
 * only as ordered as the clock).
 *
 * Durable names live in the journal: the name in the state record of
 * the instance's first record, the tombstone in its END record, and in a
 * snapshot a TOMB record per tombstone still within the window
 * (durable.c); recovery puts both back (recover.c).
 */
#include "context.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <utlist.h>

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int names_init(mly_runtime *rt) {
  if (rt->names) return 0;
  names *n = calloc(1, sizeof *n);
  if (n == NULL) return MLY_ENOMEM;
  n->retention_ms = MLY_DEFAULT_NAME_RETENTION_MS;
  if (getrandom(&n->prng, sizeof n->prng, GRND_NONBLOCK) !=
      (ssize_t)sizeof n->prng) /* no entropy yet: at least differ */
    n->prng = uv_hrtime() ^ (uint64_t)getpid() << 32 ^ (uintptr_t)rt;
  rt->names = n;
  rt_bytes(rt, (ptrdiff_t)sizeof *n);
  return 0;
}

void names_free(mly_runtime *rt) {
  names *n = rt->names;
  if (n == NULL) return;
  name_ent *e, *tmp;
  HASH_ITER(hh, n->tab, e, tmp) {
    HASH_DEL(n->tab, e);
    free(e);
  }
  free(n);
  rt->names = NULL;
}

int names_set_clock(mly_runtime *rt, int64_t (*clock)(void *arg),
                    void *arg) {
  int rc = names_init(rt);
  if (rc < 0) return rc;
  rt->names->clock = clock;
  rt->names->clock_arg = arg;
  return 0;
}

void names_set_retention(mly_runtime *rt, int64_t ms) {
  if (rt->names) rt->names->retention_ms = ms;
}

int64_t names_retention(const mly_runtime *rt) {
  return rt->names ? rt->names->retention_ms : MLY_DEFAULT_NAME_RETENTION_MS;
}

int64_t names_now_ms(const mly_runtime *rt) {
  const names *n = rt->names;
  return n && n->clock ? n->clock(n->clock_arg) : wall_ms();
}

/* ended_ms comes from a file: no arithmetic on it may overflow (the
 * difference of two int64 is taken in uint64, once it is known >= 0). */
static bool expired(const names *n, const name_ent *e, int64_t now) {
  return !e->live && n->retention_ms >= 0 && now >= e->ended_ms &&
         (uint64_t)now - (uint64_t)e->ended_ms >= (uint64_t)n->retention_ms;
}

static void drop(mly_runtime *rt, name_ent *e) {
  names *n = rt->names;
  HASH_DEL(n->tab, e);
  if (!e->live) {
    DL_DELETE(n->tombs, e);
    n->ntombs--;
  }
  rt_bytes(rt, -(ptrdiff_t)(sizeof *e + e->len + 1));
  free(e);
}

/* Expired tombstones at the head of the list go (amortized O(1)). */
static void expire(mly_runtime *rt, int64_t now) {
  names *n = rt->names;
  while (n->tombs && expired(n, n->tombs, now)) drop(rt, n->tombs);
}

/* Printable: no control character, no '/', and what is not ASCII is
 * well-formed UTF-8 (shortest forms, no surrogates, at most U+10FFFF),
 * so a name prints the same in a log, a listing and `mealy journal dump`. */
int name_check(const char *name, size_t len) {
  if (name == NULL || len == 0 || len > MLY_INSTANCE_NAME_MAX)
    return MLY_EINVAL;
  const unsigned char *p = (const unsigned char *)name, *end = p + len;
  while (p < end) {
    unsigned c = *p++;
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f || c == '/') return MLY_EINVAL;
      continue;
    }
    unsigned n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
    if (n == 0 || c > 0xf4 || (size_t)(end - p) < n) return MLY_EINVAL;
    uint32_t cp = c & (0x3fu >> n);
    for (unsigned i = 0; i < n; i++) {
      if ((p[i] & 0xc0) != 0x80) return MLY_EINVAL;
      cp = cp << 6 | (p[i] & 0x3fu);
    }
    static const uint32_t least[] = {0, 0x80, 0x800, 0x10000};
    if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
        (cp >= 0x80 && cp < 0xa0)) /* C1 controls */
      return MLY_EINVAL;
    p += n;
  }
  return 0;
}

/* The entry for a name, an expired tombstone dropped on the way. */
static name_ent *find(mly_runtime *rt, const char *name, size_t len) {
  names *n = rt->names;
  if (n == NULL) return NULL;
  int64_t now = names_now_ms(rt);
  expire(rt, now);
  name_ent *e = NULL;
  HASH_FIND(hh, n->tab, name, len, e);
  if (e && expired(n, e, now)) {
    drop(rt, e);
    e = NULL;
  }
  return e;
}

int name_free_now(mly_runtime *rt, const char *name, size_t len) {
  return find(rt, name, len) ? MLY_EEXIST : 0;
}

static name_ent *ent_new(mly_runtime *rt, const char *name, size_t len) {
  name_ent *e = calloc(1, sizeof *e + len + 1);
  if (e == NULL) return NULL;
  memcpy(e->name, name, len);
  e->len = len;
  bool hash_oom = false;
  HASH_ADD_KEYPTR(hh, rt->names->tab, e->name, len, e);
  if (hash_oom) {
    free(e);
    return NULL;
  }
  rt_bytes(rt, (ptrdiff_t)(sizeof *e + len + 1));
  return e;
}

/* Onto the tombstone list in ended order: from the tail, so the usual
 * case (it ended last) is O(1). */
static void tomb_link(names *n, name_ent *e) {
  name_ent *after = n->tombs ? n->tombs->prev : NULL; /* the tail */
  while (after && after->ended_ms > e->ended_ms)
    after = after == n->tombs ? NULL : after->prev;
  if (after == NULL) DL_PREPEND(n->tombs, e);
  else if (after == n->tombs->prev) DL_APPEND(n->tombs, e);
  else DL_APPEND_ELEM(n->tombs, after, e);
  n->ntombs++;
}

int name_hold(mly_runtime *rt, const char *name, size_t len, mly_id id,
              name_ent **out) {
  int rc = names_init(rt);
  if (rc < 0) return rc;
  name_ent *e = find(rt, name, len);
  if (e && e->live && !e->remote) return MLY_EEXIST;
  if (e && e->live) { /* adopted from the process that held it */
    e->remote = false;
  } else if (e) { /* recovery: it was taken again after its tombstone expired */
    DL_DELETE(rt->names->tombs, e);
    rt->names->ntombs--;
  } else if ((e = ent_new(rt, name, len)) == NULL) {
    return MLY_ENOMEM;
  }
  e->live = true;
  e->id = id;
  e->status = 0;
  e->ended_ms = 0;
  if (out) *out = e;
  return 0;
}

int name_tomb(mly_runtime *rt, const char *name, size_t len, mly_id id,
              int32_t status, int64_t ended_ms) {
  int rc = names_init(rt);
  if (rc < 0) return rc;
  names *n = rt->names;
  name_ent *e = find(rt, name, len);
  if (e && (e->live || e->ended_ms >= ended_ms)) return 0; /* newer wins */
  if (e) {
    DL_DELETE(n->tombs, e);
    n->ntombs--;
  } else {
    name_ent probe = {.live = false, .ended_ms = ended_ms};
    if (expired(n, &probe, names_now_ms(rt))) return 0;
    if ((e = ent_new(rt, name, len)) == NULL) return MLY_ENOMEM;
  }
  e->live = false;
  e->id = id;
  e->status = status;
  e->ended_ms = ended_ms;
  tomb_link(n, e);
  return 0;
}

int name_learn(mly_runtime *rt, const char *name, size_t len, mly_id id,
               bool live, int32_t status, int64_t ended_ms) {
  int rc = name_check(name, len) < 0 ? MLY_EBADMSG : names_init(rt);
  if (rc < 0) return rc;
  names *n = rt->names;
  name_ent *e = find(rt, name, len);
  if (e && !e->remote && (e->live || e->id == id))
    return 0; /* this runtime's own holder, or its own ended one */
  if (!live) {
    if (e && e->live) { /* the remote holder ended */
      HASH_DEL(n->tab, e); /* again below, as a tombstone */
      rt_bytes(rt, -(ptrdiff_t)(sizeof *e + e->len + 1));
      free(e);
    }
    return name_tomb(rt, name, len, id, status, ended_ms);
  }
  if (e && !e->live) { /* its tombstone expired there: taken again */
    DL_DELETE(n->tombs, e);
    n->ntombs--;
  } else if (!e && (e = ent_new(rt, name, len)) == NULL) {
    return MLY_ENOMEM;
  }
  e->live = e->remote = true;
  e->id = id;
  e->status = 0;
  e->ended_ms = 0;
  return 0;
}

void name_release(mly_runtime *rt, name_ent *e, int32_t status,
                  int64_t ended_ms, bool suspended) {
  names *n = rt->names;
  if (suspended) { /* it continues on the next open, name and all */
    drop(rt, e);    /* live: not on the tombstone list */
    return;
  }
  e->live = false;
  e->status = status;
  e->ended_ms = ended_ms;
  tomb_link(n, e);
  expire(rt, names_now_ms(rt));
}

int names_foreach_tomb(mly_runtime *rt, int (*cb)(const name_ent *, void *),
                       void *arg) {
  if (rt->names == NULL) return 0;
  expire(rt, names_now_ms(rt));
  name_ent *e;
  DL_FOREACH(rt->names->tombs, e) {
    int rc = cb(e, arg);
    if (rc) return rc;
  }
  return 0;
}

uint64_t names_ntombs(const mly_runtime *rt) {
  return rt->names ? rt->names->ntombs : 0;
}

void name_generate(mly_runtime *rt, const char *type, char *buf, size_t len) {
  static const char digits[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  int64_t ms = names_now_ms(rt);
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  char when[32] = "00000000000000";
  if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y%m%d%H%M%S", &tm);
  char rnd[7];
  for (int i = 0; i < 6; i++)
    rnd[i] = digits[splitmix(&rt->names->prng) % 36];
  rnd[6] = '\0';
  snprintf(buf, len, "%s-%s-%s", type, when, rnd);
  for (char *p = buf; *p; p++)
    if (*p == '/') *p = '.'; /* type names may hold '/', names may not */
}

/* ---- the API ---- */

int mly_name_lookup(mly_runtime *rt, const char *name, mly_name_info *out) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (out == NULL || name == NULL) return MLY_EINVAL;
  size_t len = strlen(name);
  if (name_check(name, len) < 0) return MLY_EINVAL;
  name_ent *e = find(rt, name, len);
  if (e == NULL) return MLY_ENOENT;
  *out = (mly_name_info){e->live ? MLY_NAME_LIVE : MLY_NAME_ENDED, e->id,
                         e->live ? 0 : e->status, e->live ? 0 : e->ended_ms};
  return 0;
}

const char *mly_instance_name(mly_runtime *rt, mly_id id) {
  if (!rt_on_loop_thread(rt)) return NULL;
  mly_inst *m = inst_get(rt, id);
  inst_ext *x = m ? ext_get(rt, m) : NULL;
  return x && x->name ? x->name->name : NULL;
}

const char *mly_self_name(const mly_machine *mm) {
  const mly_inst *m = INST(mm);
  inst_ext *x = ext_get(m->type->rt, m);
  return x && x->name ? x->name->name : NULL;
}
