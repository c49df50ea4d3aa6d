/*
 * context.c - an instance's context: one mly_value beside its fixed data
 * (mealy.h "Contexts and names"), and the side table that holds it.
 *
 * The table (context.h) keeps struct mly_inst as it was: a machine that
 * never uses a context or a name pays nothing, in memory or in its
 * records.  For a durable instance a context is committed with its step,
 * inside the state record (durable.c put_state), as a bin holding its
 * msgpack.  What is committed is remembered as (length, 64-bit hash) of
 * that encoding: a step that did not touch the context (mly_context not
 * called, mly_context_set not called) writes nil without encoding
 * anything; one that touched it encodes it into the batch, and if the
 * bytes hash as the committed ones they are taken back out and nil is
 * written instead.  Replay reads nil as "unchanged" (jreplay.c).
 */
#include "context.h"

#include <stdlib.h>
#include <string.h>

/* The array grows to the slot table's capacity: every live slot fits. */
static int exts_fit(mly_runtime *rt, uint32_t s) {
  if (s < rt->next_cap) return 0;
  uint32_t cap = rt->slot_cap > s ? rt->slot_cap : s + 1;
  inst_ext **a = realloc(rt->exts, (size_t)cap * sizeof *a);
  if (a == NULL) return MLY_ENOMEM;
  memset(a + rt->next_cap, 0, (size_t)(cap - rt->next_cap) * sizeof *a);
  rt_bytes(rt, (ptrdiff_t)(cap - rt->next_cap) * (ptrdiff_t)sizeof *a);
  rt->exts = a;
  rt->next_cap = cap;
  return 0;
}

inst_ext *ext_make(mly_runtime *rt, mly_inst *m) {
  inst_ext *x = ext_get(rt, m);
  if (x) return x;
  uint32_t s = (uint32_t)m->id;
  if (exts_fit(rt, s) < 0) return NULL;
  x = freelist_get(&rt->ext_pool, sizeof *x);
  if (x == NULL) return NULL;
  x->id = m->id;
  rt->exts[s] = x;
  rt->nexts++;
  rt_bytes(rt, (ptrdiff_t)sizeof *x);
  m->dflags |= D_EXT;
  return x;
}

void ext_end(mly_runtime *rt, mly_inst *m, bool suspended) {
  inst_ext *x = ext_get(rt, m);
  m->dflags &= ~D_EXT;
  if (x == NULL) return;
  rt->exts[(uint32_t)m->id] = NULL;
  rt->nexts--;
  mly_value_free(x->ctx);
  if (x->name)
    name_release(rt, x->name, m->status,
                 x->name->ended_ms ? x->name->ended_ms : names_now_ms(rt),
                 suspended);
  rt_bytes(rt, -(ptrdiff_t)sizeof *x);
  freelist_put(&rt->ext_pool, x);
}

void ext_free_all(mly_runtime *rt) {
  for (uint32_t s = 0; s < rt->next_cap; s++)
    if (rt->exts[s] != NULL) {
      mly_value_free(rt->exts[s]->ctx);
      free(rt->exts[s]);
    }
  freelist_drain(&rt->ext_pool);
  free(rt->exts);
  rt->exts = NULL;
  rt->next_cap = rt->nexts = 0;
}

/* 64 bits over four independent lanes (a multiply chain per lane), so a
 * 64 KiB context hashes at memory speed; the length is compared too. */
uint64_t ctx_hash64(const void *p, size_t n) {
  const uint64_t K = 0x9e3779b97f4a7c15ull;
  uint64_t h[4] = {K, K ^ 1, K ^ 2, K ^ 3};
  const unsigned char *s = p;
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int l = 0; l < 4; l++) {
      uint64_t w;
      memcpy(&w, s + i + 8 * l, 8);
      h[l] = (h[l] ^ w) * K;
      h[l] ^= h[l] >> 29;
    }
  uint64_t r = n * K;
  for (int l = 0; l < 4; l++) r = (r ^ h[l]) * 0xbf58476d1ce4e5b9ull;
  for (; i < n; i++) r = (r ^ s[i]) * 0x100000001b3ull;
  r ^= r >> 31;
  r *= 0x94d049bb133111ebull;
  return r ^ (r >> 32);
}

int64_t ctx_put(mly_runtime *rt, jbuf *b, inst_ext *x, bool full) {
  (void)rt;
  if (!full && !x->touched) {
    jb_nil(b);
    return 0;
  }
  x->touched = false;
  /* counted first, then written straight into the batch: no packer, and
   * the bin's head in its shortest form */
  size_t len = 0;
  if (x->ctx != NULL && value_encoded_size(x->ctx, &len) != 0)
    return MLY_EINVAL; /* a value that does not encode: too deep */
  size_t start = b->n;
  jb_bin_head(b, len);
  unsigned char *p = len ? jb_take(b, len) : NULL;
  if (b->oom) return MLY_ENOMEM;
  if (len) value_encode_raw(x->ctx, p);
  uint64_t h = len ? ctx_hash64(p, len) : 0;
  if (!full && len == x->len && h == x->hash) {
    b->n = start; /* as committed: not again */
    jb_nil(b);
    return 0;
  }
  x->len = len;
  x->hash = h;
  return (int64_t)len;
}

int ctx_restore(mly_runtime *rt, mly_inst *m, const void *enc, size_t len) {
  mly_value *v = NULL;
  int rc = mly_value_decode(enc, len, &v);
  if (rc < 0) return rc;
  inst_ext *x = ext_make(rt, m);
  if (x == NULL) {
    mly_value_free(v);
    return MLY_ENOMEM;
  }
  x->ctx = v;
  x->len = len;
  x->hash = ctx_hash64(enc, len);
  return 0;
}

/* invariant.c: every ext belongs to a live instance marked D_EXT, and
 * each of those has one; a live name is its holder's (or a parked
 * instance's), a tombstone is on the ended-order list.  NULL: sound. */
const char *ext_check(const mly_runtime *rt) {
  uint64_t marked = 0;
  for (uint32_t s = 0; s < rt->nslots; s++)
    marked += rt->slots[s] && (rt->slots[s]->dflags & D_EXT);
  if (marked != rt->nexts)
    return "instances marked D_EXT and contexts/names held differ";
  uint64_t held = 0;
  for (uint32_t s = 0; s < rt->next_cap; s++) {
    const inst_ext *x = rt->exts[s];
    if (x == NULL) continue;
    held++;
    const mly_inst *m = inst_get(rt, x->id);
    if (m == NULL || !(m->dflags & D_EXT) || (uint32_t)x->id != s)
      return "a context or name is held for an instance that is gone";
    if (x->name && (!x->name->live || x->name->id != x->id))
      return "an instance's name entry is not live and its own";
  }
  if (held != rt->nexts) return "contexts/names held and their count differ";
  if (rt->names == NULL) return NULL;
  uint64_t tombs = 0;
  for (const name_ent *e = rt->names->tab; e != NULL; e = e->hh.next) {
    if (!e->live) {
      tombs++;
      continue;
    }
    if (e->remote) continue; /* held by another process */
    const mly_inst *m = inst_get(rt, e->id);
    const inst_ext *x = m ? ext_get(rt, m) : NULL;
    bool parked = false;
    for (size_t i = 0; m == NULL && rt->dur && i < rt->dur->nparked; i++)
      parked = parked || rt->dur->parked[i].id == e->id;
    if (!parked && (x == NULL || x->name != e))
      return "a live name whose holder does not hold it";
  }
  if (tombs != rt->names->ntombs) return "tombstones and their count differ";
  return NULL;
}

/* ---- the API ---- */

mly_value *mly_context(mly_machine *mm) {
  mly_inst *m = INST(mm);
  inst_ext *x = ext_get(m->type->rt, m);
  if (x == NULL || x->ctx == NULL) return NULL;
  x->touched = true; /* it may change in place: look at it at commit */
  return x->ctx;
}

void mly_context_set(mly_machine *mm, mly_value *v) {
  mly_inst *m = INST(mm);
  mly_runtime *rt = m->type->rt;
  inst_ext *x = v ? ext_make(rt, m) : ext_get(rt, m);
  if (x == NULL) {
    if (v == NULL) return; /* nothing held, nothing to clear */
    mly_value_free(v);
    inst_end_now(m, MLY_ENOMEM); /* it cannot go on without it */
    return;
  }
  if (x->ctx != v) mly_value_free(x->ctx);
  x->ctx = v;
  x->touched = true;
}

const mly_value *mly_instance_context(mly_runtime *rt, mly_id id) {
  if (!rt_on_loop_thread(rt)) return NULL;
  mly_inst *m = inst_get(rt, id);
  inst_ext *x = m ? ext_get(rt, m) : NULL;
  return x ? x->ctx : NULL;
}
