/*
 * dur_stub.c - TEMPORARY: an in-memory stand-in for the contexts and
 * names of mealy.h ("Contexts and names") until branch dur lands them.
 * Not durable.  Deleted when dur is merged.
 */
#include "../internal.h"
#include "queue.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

typedef struct stub_ent {
  mly_id id;
  mly_value *ctx;
  char *name;
  bool ended;
  int status;
  UT_hash_handle hh;  /* by id */
  UT_hash_handle hn;  /* by name */
} stub_ent;

typedef struct stub {
  stub_ent *by_id, *by_name;
} stub;

static void stub_release(void *p) {
  stub *s = p;
  stub_ent *e, *t;
  HASH_ITER(hn, s->by_name, e, t) { HASH_DELETE(hn, s->by_name, e); }
  HASH_ITER(hh, s->by_id, e, t) {
    HASH_DEL(s->by_id, e);
    mly_value_free(e->ctx);
    free(e->name);
    free(e);
  }
  free(s);
}

static stub *get(mly_runtime *rt) {
  stub *s = mly_runtime_attached(rt, "dur-stub");
  if (s) return s;
  s = calloc(1, sizeof *s);
  if (s && mly_runtime_attach(rt, "dur-stub", s, stub_release) < 0) {
    free(s);
    return NULL;
  }
  return s;
}

static stub_ent *ent(mly_runtime *rt, mly_id id) {
  stub *s = get(rt);
  stub_ent *e = NULL;
  if (s) HASH_FIND(hh, s->by_id, &id, sizeof id, e);
  return e;
}

mly_value *mly_context(mly_machine *m) {
  stub_ent *e = ent(mly_machine_runtime(m), mly_self(m));
  return e && !e->ended ? e->ctx : NULL;
}

void mly_context_set(mly_machine *m, mly_value *v) {
  stub_ent *e = ent(mly_machine_runtime(m), mly_self(m));
  if (e == NULL) {
    mly_value_free(v);
    return;
  }
  mly_value_free(e->ctx);
  e->ctx = v;
}

const mly_value *mly_instance_context(mly_runtime *rt, mly_id id) {
  stub_ent *e = ent(rt, id);
  return e && !e->ended ? e->ctx : NULL;
}

int mly_spawn_opts(mly_runtime *rt, mly_type *type, const mly_spawn_options *o,
                   mly_id *out) {
  stub *s = get(rt);
  if (s == NULL) {
    mly_value_free(o ? o->context : NULL);
    return MLY_ENOMEM;
  }
  if (o && o->name) {
    stub_ent *e = NULL;
    HASH_FIND(hn, s->by_name, o->name, strlen(o->name), e);
    if (e) {
      mly_value_free(o->context);
      return MLY_EEXIST;
    }
  }
  mly_id id;
  int rc = mly_spawn(rt, type, o ? o->arg : NULL, o ? o->arg_len : 0, &id);
  if (rc < 0) {
    mly_value_free(o ? o->context : NULL);
    return rc;
  }
  stub_ent *e = calloc(1, sizeof *e);
  e->id = id;
  e->ctx = o ? o->context : NULL;
  HASH_ADD(hh, s->by_id, id, sizeof id, e);
  if (o && o->name) {
    e->name = strdup(o->name);
    HASH_ADD_KEYPTR(hn, s->by_name, e->name, strlen(e->name), e);
  }
  if (out) *out = id;
  return 0;
}

int mly_name_lookup(mly_runtime *rt, const char *name, mly_name_info *out) {
  stub *s = get(rt);
  stub_ent *e = NULL;
  if (s) HASH_FIND(hn, s->by_name, name, strlen(name), e);
  if (e == NULL) return MLY_ENOENT;
  out->state = e->ended ? MLY_NAME_ENDED : MLY_NAME_LIVE;
  out->id = e->id;
  out->status = e->status;
  out->ended_ms = 0;
  return 0;
}

const char *mly_instance_name(mly_runtime *rt, mly_id id) {
  stub_ent *e = ent(rt, id);
  return e && !e->ended ? e->name : NULL;
}

void dur_stub_fini(mly_machine *m) {
  mly_runtime *rt = mly_machine_runtime(m);
  stub *s = get(rt);
  stub_ent *e = ent(rt, mly_self(m));
  if (e == NULL) return;
  mly_value_free(e->ctx);
  e->ctx = NULL;
  if (e->name && !(INST(m)->dflags & D_SILENT)) {
    e->ended = true;
    e->status = INST(m)->status;
    return;
  }
  if (e->name) HASH_DELETE(hn, s->by_name, e);
  HASH_DEL(s->by_id, e);
  free(e->name);
  free(e);
}
