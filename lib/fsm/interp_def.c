/*
 * interp_def.c - definitions pinned by content hash, and the machines
 * mly_fsm_start can start.
 *
 * A definition is stored once per hash as a named durable instance,
 * "fsm-def-<64 hex>", of the type "fsm-def": its context is a binary
 * holding fsm_def_encode's bytes, and it waits for ever.  So any store
 * that carries durable instances carries definitions, with no record of
 * a kind of its own; at recovery an instance finds its definition by
 * that name and decodes it (fsm_def_get).  In memory each hash has one
 * decoded copy (fsm_def_ent), owned here, that running instances share.
 *
 * On a store many processes share (PostgreSQL) a name is the database's:
 * one holder per hash for all hosts would be another process's to read
 * (and a second host's spawn of it a clash).  There each process holds
 * its own copy, unnamed, its context the magic, the hash and the bytes
 * (a "holder"): a host uses the holder it has (recovered or taken over
 * with a dead host's instances) or makes one; instances taken over bring
 * their process's holders along, so a definition an instance runs is
 * always where the instance is, after a migration too.  Holders of one
 * hash beyond the first are asked to end whenever they are looked for.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsmrt.h"

/* A shared store's holder context: magic, hash, fsm_def_encode's bytes. */
static const char HOLDER_MAGIC[8] = "fsmdef\001";
#define HOLDER_HDR (sizeof HOLDER_MAGIC + FSM_HASH_LEN)

/* ---- the "fsm-def" type: holds a definition in its context ---- */

#define FSMDEF_POINTS(X) X(fsmdef, hold)
MLY_POINTS(fsmdef, FSMDEF_POINTS);

static int fsmdef_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_WAIT_UNTIL_AT(m, fsmdef_hold, mly_shutdown_requested(m));
    if (mly_shutdown_requested(m)) break;
  }
  MLY_END(m);
}

const mly_type_def fsm_def_type_def = {
    .name = FSM_DEF_TYPE_NAME,
    .run = fsmdef_run,
    MLY_TYPE_POINTS(fsmdef),
    .data_size = 8,
    .version = 1,
    .flags = MLY_TYPE_DURABLE | MLY_TYPE_DROP_UNHANDLED,
};

/* ---- hashes ---- */

static bool hash_zero(const unsigned char *h) {
  for (int i = 0; i < FSM_HASH_LEN; i++)
    if (h[i]) return false;
  return true;
}

/* A 256-bit content hash for a machine whose loader left none: four
 * independent 64-bit FNV-1a lanes with murmur's finalizer.  The loader's
 * hash (SHA-256 of the same bytes) is used whenever it is set. */
static void content_hash(const char *buf, size_t len, unsigned char *out) {
  for (int lane = 0; lane < 4; lane++) {
    uint64_t h = 0xcbf29ce484222325ULL ^ ((uint64_t)(lane + 1) * 0x9e3779b97f4a7c15ULL);
    for (size_t i = 0; i < len; i++) {
      h ^= (unsigned char)buf[i];
      h *= 0x100000001b3ULL;
    }
    h ^= len;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb3fe1a85ec53ULL;
    h ^= h >> 33;
    for (int b = 0; b < 8; b++) out[lane * 8 + b] = (unsigned char)(h >> (8 * b));
  }
}

static fsm_def_ent *def_find(fsm_rt *f, const unsigned char *hash) {
  fsm_def_ent *e = NULL;
  HASH_FIND(hh, f->defs, hash, FSM_HASH_LEN, e);
  return e;
}

static int def_add(fsm_rt *f, const unsigned char *hash, const void *buf,
                   size_t len, fsm_def_ent **out) {
  fsm_machine *m = NULL;
  int rc = fsm_def_decode(buf, len, &m);
  if (rc < 0) return rc;
  fsm_def_ent *e = calloc(1, sizeof *e);
  if (e == NULL) {
    fsm_machine_free(m);
    return MLY_ENOMEM;
  }
  memcpy(e->hash, hash, FSM_HASH_LEN);
  memcpy(m->hash, hash, FSM_HASH_LEN);
  e->m = m;
  bool hash_oom = false;
  HASH_ADD(hh, f->defs, hash, FSM_HASH_LEN, e);
  if (hash_oom) {
    fsm_machine_free(m);
    free(e);
    return MLY_ENOMEM;
  }
  *out = e;
  return 0;
}

static void store_name(const unsigned char *hash, char *name) {
  char hex[2 * FSM_HASH_LEN + 1];
  fsm_hash_hex(hash, hex);
  snprintf(name, sizeof FSM_DEF_PREFIX + 2 * FSM_HASH_LEN, "%s%s",
           FSM_DEF_PREFIX, hex);
}

/* The holders of hash among this process's instances (shared store). */
typedef struct holders {
  fsm_rt *f;
  const unsigned char *hash;
  mly_id first;
  const void *body; /* the first's definition bytes */
  size_t len;
  mly_id extra[8];
  size_t nextra;
} holders;

static int holder_cb(const mly_info *in, void *arg) {
  holders *h = arg;
  if (strcmp(in->type, FSM_DEF_TYPE_NAME) != 0) return 0;
  const void *p;
  size_t len;
  if (mly_value_get_bin(mly_instance_context(h->f->rt, in->id), &p, &len) < 0 ||
      len < HOLDER_HDR || memcmp(p, HOLDER_MAGIC, sizeof HOLDER_MAGIC) != 0 ||
      memcmp((const char *)p + sizeof HOLDER_MAGIC, h->hash, FSM_HASH_LEN))
    return 0;
  if (h->first == 0) {
    h->first = in->id;
    h->body = (const char *)p + HOLDER_HDR;
    h->len = len - HOLDER_HDR;
  } else if (h->nextra < sizeof h->extra / sizeof *h->extra) {
    h->extra[h->nextra++] = in->id;
  }
  return 0;
}

/* Finds the holder of hash here; those beyond the first are asked to end
 * (they hold the same bytes). */
static void holder_find(fsm_rt *f, const unsigned char *hash, holders *h) {
  *h = (holders){.f = f, .hash = hash};
  mly_foreach(f->rt, holder_cb, h);
  for (size_t i = 0; i < h->nextra; i++) (void)mly_shutdown(f->rt, h->extra[i]);
}

/* A shared store: this process's own holder, unless it has one. */
static int holder_store(fsm_rt *f, fsm_def_ent *e, const char *buf,
                        size_t len) {
  holders h;
  holder_find(f, e->hash, &h);
  if (h.first) {
    e->stored = true;
    return 0;
  }
  char *c = malloc(HOLDER_HDR + len);
  if (c == NULL) return MLY_ENOMEM;
  memcpy(c, HOLDER_MAGIC, sizeof HOLDER_MAGIC);
  memcpy(c + sizeof HOLDER_MAGIC, e->hash, FSM_HASH_LEN);
  memcpy(c + HOLDER_HDR, buf, len);
  mly_value *ctx = mly_value_bin(c, HOLDER_HDR + len);
  free(c);
  if (ctx == NULL) return MLY_ENOMEM;
  mly_spawn_options o = {.context = ctx};
  mly_id id;
  int rc = mly_spawn_opts(f->rt, f->def_type, &o, &id);
  if (rc == 0) e->stored = true;
  return rc;
}

/* Spawn the holder of a definition, unless one holds the name already. */
static int def_store(fsm_rt *f, fsm_def_ent *e, const char *buf, size_t len) {
  if (mly_store_shared(f->rt)) return holder_store(f, e, buf, len);
  char name[sizeof FSM_DEF_PREFIX + 2 * FSM_HASH_LEN];
  store_name(e->hash, name);
  mly_name_info ni;
  if (mly_name_lookup(f->rt, name, &ni) == 0 && ni.state == MLY_NAME_LIVE) {
    e->stored = true;
    return 0;
  }
  mly_value *ctx = mly_value_bin(buf, len);
  if (ctx == NULL) return MLY_ENOMEM;
  mly_spawn_options o = {.context = ctx, .name = name};
  mly_id id;
  int rc = mly_spawn_opts(f->rt, f->def_type, &o, &id);
  if (rc == MLY_EEXIST) rc = 0; /* stored before */
  if (rc == 0) e->stored = true;
  return rc;
}

int fsm_def_put(fsm_rt *f, const fsm_machine *m) {
  char *buf = NULL;
  size_t len = 0;
  int rc = fsm_def_encode(m, &buf, &len);
  if (rc < 0) return rc;
  unsigned char hash[FSM_HASH_LEN];
  if (!hash_zero(m->hash)) memcpy(hash, m->hash, FSM_HASH_LEN);
  else content_hash(buf, len, hash);
  fsm_def_ent *e = def_find(f, hash);
  if (e == NULL) rc = def_add(f, hash, buf, len, &e);
  if (rc == 0 && !e->stored) rc = def_store(f, e, buf, len);
  free(buf);
  if (rc < 0) return rc;
  /* the machine by name: new instances run this definition */
  fsm_mach_ent *me = NULL;
  HASH_FIND_STR(f->machines, e->m->name, me);
  if (me == NULL) {
    me = calloc(1, sizeof *me);
    if (me == NULL || (me->name = strdup(e->m->name)) == NULL) {
      free(me);
      return MLY_ENOMEM;
    }
    bool hash_oom = false;
    HASH_ADD_KEYPTR(hh, f->machines, me->name, strlen(me->name), me);
    if (hash_oom) {
      free(me->name);
      free(me);
      return MLY_ENOMEM;
    }
  }
  me->def = e;
  return 0;
}

const fsm_machine *fsm_def_get(fsm_rt *f, const unsigned char *hash) {
  fsm_def_ent *e = def_find(f, hash);
  if (e != NULL) return e->m;
  char name[sizeof FSM_DEF_PREFIX + 2 * FSM_HASH_LEN];
  store_name(hash, name);
  mly_name_info ni;
  const void *p;
  size_t len;
  if (mly_name_lookup(f->rt, name, &ni) == 0 && ni.state == MLY_NAME_LIVE) {
    const mly_value *ctx = mly_instance_context(f->rt, ni.id);
    if (mly_value_get_bin(ctx, &p, &len) < 0) return NULL;
  } else { /* a shared store's holder (with what it took over) */
    holders h;
    holder_find(f, hash, &h);
    if (h.first == 0) return NULL;
    p = h.body;
    len = h.len;
  }
  if (def_add(f, hash, p, len, &e) < 0) return NULL;
  e->stored = true;
  return e->m;
}

const fsm_machine *fsm_machine_current(fsm_rt *f, const char *name) {
  fsm_mach_ent *me = NULL;
  if (f != NULL && name != NULL) HASH_FIND_STR(f->machines, name, me);
  return me ? me->def->m : NULL;
}

/* Every C action a machine names must be registered. */
static int check_actions(fsm_rt *f, const fsm_machine *m) {
  for (size_t i = 0; i < m->nstates; i++) {
    const fsm_state *s = &m->states[i];
    const fsm_action *as[3] = {&s->entry, &s->action, &s->exit};
    for (int k = 0; k < 3; k++)
      if (as[k]->kind == FSM_ACT_C && !fsm_action_find(f, as[k]->name)) {
        fsm_log(f, "machine %s, state %s: action %s is not registered",
                m->name, s->name, as[k]->name);
        return MLY_ENOENT;
      }
    for (size_t t = 0; t < s->ntrans; t++)
      if (s->trans[t].action.kind == FSM_ACT_C &&
          !fsm_action_find(f, s->trans[t].action.name)) {
        fsm_log(f, "machine %s, state %s: action %s is not registered",
                m->name, s->name, s->trans[t].action.name);
        return MLY_ENOENT;
      }
  }
  return 0;
}

int fsm_machine_add(fsm_rt *f, const fsm_machine *m) {
  int rc = check_actions(f, m);
  return rc < 0 ? rc : fsm_def_put(f, m);
}

int mly_fsm_add(mly_runtime *rt, const mly_fsm_set *set) {
  if (rt == NULL || set == NULL) return MLY_EINVAL;
  int rc = mly_fsm_attach(rt);
  if (rc < 0) return rc;
  fsm_rt *f = fsm_rt_get(rt);
  const fsm_set *s = (const fsm_set *)(const void *)set;
  for (size_t i = 0; i < s->nmachines; i++) /* all checked first */
    if ((rc = check_actions(f, &s->machines[i])) < 0) return rc;
  for (size_t i = 0; i < s->nmachines; i++)
    if ((rc = fsm_def_put(f, &s->machines[i])) < 0) return rc;
  return 0;
}

void fsm_defs_free(fsm_rt *f) {
  fsm_mach_ent *me, *mt;
  HASH_ITER(hh, f->machines, me, mt) {
    HASH_DEL(f->machines, me);
    free(me->name);
    free(me);
  }
  fsm_def_ent *e, *t;
  HASH_ITER(hh, f->defs, e, t) {
    HASH_DEL(f->defs, e);
    fsm_machine_free(e->m);
    free(e);
  }
}
