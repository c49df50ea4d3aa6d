/*
 * jreplay.c - from records to the live set: which instances are alive,
 * with which last state, and which events wait in their inboxes.
 *
 * Replay keeps pointers into the segment buffers (jread), not copies: a
 * million instances replay without a million allocations.  The result
 * feeds recovery (durable.c) and `mealy journal stat`.
 */
#include "jreplay.h"

#include <stdlib.h>
#include <string.h>

/* ---- an open-addressing map from a non-zero u64 to an index ---- */

static uint64_t mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return k;
}

static int map_grow(u64map *m) {
  size_t cap = m->cap ? m->cap * 2 : 1024;
  uint64_t *keys = calloc(cap, sizeof *keys);
  uint32_t *vals = malloc(cap * sizeof *vals);
  if (keys == NULL || vals == NULL) {
    free(keys);
    free(vals);
    return MLY_ENOMEM;
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (m->keys[i] == 0) continue;
    size_t j = mix(m->keys[i]) & (cap - 1);
    while (keys[j] != 0) j = (j + 1) & (cap - 1);
    keys[j] = m->keys[i];
    vals[j] = m->vals[i];
  }
  free(m->keys);
  free(m->vals);
  m->keys = keys;
  m->vals = vals;
  m->cap = cap;
  return 0;
}

/* The slot of key: where it is, or where it would go. */
static size_t map_slot(const u64map *m, uint64_t key) {
  size_t j = mix(key) & (m->cap - 1);
  while (m->keys[j] != 0 && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
  return j;
}

static uint32_t map_get(const u64map *m, uint64_t key) {
  if (m->cap == 0 || key == 0) return UINT32_MAX;
  size_t j = map_slot(m, key);
  return m->keys[j] == key ? m->vals[j] : UINT32_MAX;
}

static int map_put(u64map *m, uint64_t key, uint32_t val) {
  if ((m->n + 1) * 2 > m->cap) {
    int rc = map_grow(m);
    if (rc < 0) return rc;
  }
  size_t j = map_slot(m, key);
  if (m->keys[j] == 0) m->n++;
  m->keys[j] = key;
  m->vals[j] = val;
  return 0;
}

static void map_free(u64map *m) {
  free(m->keys);
  free(m->vals);
  *m = (u64map){0};
}

/* ---- parsing ---- */

bool rp_parse_state(jcur *c, rp_state *s) {
  uint32_t n, wn;
  const unsigned char *start = c->p;
  *s = (rp_state){0};
  if (!jc_array(c, &n) || n < 10) return false;
  s->fields = c->p;
  bool ok = jc_uint(c, &s->id) && s->id != 0 && jc_str(c, &s->type, &s->tlen) &&
            jc_uint(c, &s->parent) && jc_uint(c, &s->step) &&
            jc_str(c, &s->point, &s->plen) && jc_uint(c, &s->version) &&
            jc_bin(c, &s->data, &s->dlen) && jc_uint(c, &s->flags) &&
            jc_array(c, &wn) && wn >= 4 && jc_uint(c, &s->wait) &&
            jc_evid(c, &s->wev, &s->wname, &s->wnlen) &&
            jc_uint(c, &s->warg) && jc_int(c, &s->due_ms);
  if (ok && wn >= 5) ok = jc_uint(c, &s->peer); /* older records: 0 */
  for (uint32_t i = 5; ok && i < wn; i++) ok = jc_skip(c); /* later fields */
  ok = ok && jc_int(c, &s->status);
  s->tail = c->p;
  if (ok && n > 10 && !jc_nil(c)) /* nil: unchanged */
    ok = s->has_ctx = jc_bin(c, &s->ctx, &s->ctxlen);
  if (ok && n > 11 && !jc_nil(c))
    ok = jc_str(c, &s->name, &s->namelen) &&
         name_check(s->name, s->namelen) == 0;
  for (uint32_t i = 12; ok && i < n; i++) ok = jc_skip(c);
  s->raw = start;
  s->rawlen = (size_t)(c->p - start);
  return ok && !c->bad;
}

bool rp_parse_event(jcur *c, rp_event *e) {
  uint32_t n;
  const unsigned char *start = c->p;
  *e = (rp_event){0};
  if (!jc_array(c, &n) || n < 9) return false;
  bool ok = jc_uint(c, &e->eid) && e->eid != 0 && jc_uint(c, &e->to) &&
            jc_evid(c, &e->ev, &e->name, &e->nlen) && jc_uint(c, &e->from) &&
            jc_uint(c, &e->flags) && jc_uint(c, &e->corr) &&
            jc_int(c, &e->status) && jc_int(c, &e->aux);
  if (ok && !jc_nil(c)) ok = jc_bin(c, &e->payload, &e->plen);
  for (uint32_t i = 9; ok && i < n; i++) ok = jc_skip(c);
  e->raw = start;
  e->rawlen = (size_t)(c->p - start);
  return ok && !c->bad;
}

/* ---- the tables ---- */

/* Instances by slot (the low half of an id): ids are dense, so an array
 * beats a hash.  A slot names its newest instance; an older one in the
 * same slot has ended (slots are reused only after an end). */
static uint32_t inst_at(const replay *r, mly_id id) {
  uint32_t slot = (uint32_t)id;
  if (slot < r->nslot) {
    uint32_t i = r->slot[slot];
    if (i != UINT32_MAX && r->insts[i].id == id) return i;
  }
  uint32_t i = map_get(&r->imap, id); /* a sparse one */
  return i != UINT32_MAX && r->insts[i].id == id ? i : UINT32_MAX;
}

static int slot_set(replay *r, uint32_t slot, uint32_t i) {
  if (slot >= RP_MAX_SLOT) return MLY_ERANGE;
  if (slot >= r->nslot) {
    size_t n = r->nslot ? r->nslot : 1024;
    while (n <= slot) n *= 2;
    uint32_t *v = realloc(r->slot, n * sizeof *v);
    if (v == NULL) return MLY_ENOMEM;
    memset(v + r->nslot, 0xff, (n - r->nslot) * sizeof *v);
    r->slot = v;
    r->nslot = n;
  }
  r->slot[slot] = i;
  return 0;
}

static int put_inst(replay *r, const rp_state *s) {
  uint32_t i = inst_at(r, s->id);
  if (i == UINT32_MAX) {
    if (r->ninsts == r->icap) {
      size_t cap = r->icap ? r->icap * 2 : 1024;
      rp_inst *v = realloc(r->insts, cap * sizeof *v);
      if (v == NULL) return MLY_ENOMEM;
      r->insts = v;
      r->icap = cap;
    }
    uint32_t slot = (uint32_t)s->id;
    /* a slot is reused only after an end: an older instance still in it
     * has ended, whatever its records said */
    uint32_t old = slot < r->nslot ? r->slot[slot] : UINT32_MAX;
    if (old != UINT32_MAX && !r->insts[old].ended) {
      r->insts[old].ended = true;
      r->live--;
    }
    i = (uint32_t)r->ninsts++;
    /* the array while ids are dense; one far past the others (the index
     * would cost more than the instances) goes into the map */
    int rc = slot < r->nslot || slot <= 4 * (r->ninsts + 16384)
                 ? slot_set(r, slot, i)
                 : map_put(&r->imap, s->id, i);
    if (rc < 0) return rc;
    r->live++;
    r->insts[i] = (rp_inst){.id = s->id};
  } else if (r->insts[i].ended) {
    return 0; /* a record for an ended instance changes nothing */
  }
  rp_inst *x = &r->insts[i];
  x->s = s->raw;
  x->slen = (uint32_t)s->rawlen;
  x->parent = s->parent;
  if (s->has_ctx) { /* nil leaves the last one: it did not change */
    if (s->ctxlen > UINT32_MAX) return MLY_EBADMSG;
    x->ctx = s->ctxlen ? s->ctx : NULL;
    x->ctxlen = (uint32_t)s->ctxlen;
  }
  if (s->name) {
    x->name = s->name;
    x->namelen = (uint8_t)s->namelen;
  }
  if (s->wait == RP_W_REPLY && s->warg > r->max_corr) r->max_corr = s->warg;
  return 0;
}

static int put_event(replay *r, const rp_event *e) {
  if (map_get(&r->emap, e->eid) != UINT32_MAX) return 0; /* seen: once */
  if (r->nevs == r->ecap) {
    size_t cap = r->ecap ? r->ecap * 2 : 1024;
    rp_event *v = realloc(r->evs, cap * sizeof *v);
    if (v == NULL) return MLY_ENOMEM;
    r->evs = v;
    r->ecap = cap;
  }
  r->evs[r->nevs] = *e;
  int rc = map_put(&r->emap, e->eid, (uint32_t)r->nevs);
  if (rc < 0) return rc;
  r->nevs++;
  r->pending++;
  if (e->eid > r->max_eid) r->max_eid = e->eid;
  if (e->corr > r->max_corr) r->max_corr = e->corr;
  return 0;
}

static void kill_event(replay *r, uint64_t eid) {
  uint32_t i = map_get(&r->emap, eid);
  if (i == UINT32_MAX || r->evs[i].dead) return;
  r->evs[i].dead = true;
  r->pending--;
}

static bool eids(jcur *c, replay *r, bool kill) {
  uint32_t n;
  if (!jc_array(c, &n)) return false;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t eid;
    if (!jc_uint(c, &eid)) return false;
    if (kill) kill_event(r, eid);
  }
  return true;
}

static int state_rec(jcur *c, replay *r) {
  rp_state s;
  if (!rp_parse_state(c, &s)) return MLY_EBADMSG;
  return put_inst(r, &s);
}

static int step_rec(jcur *c, replay *r) {
  int rc = state_rec(c, r);
  if (rc < 0) return rc;
  if (!eids(c, r, true)) return MLY_EBADMSG;
  uint32_t n;
  if (!jc_array(c, &n)) return MLY_EBADMSG;
  for (uint32_t i = 0; i < n; i++) {
    rp_event e;
    if (!rp_parse_event(c, &e)) return MLY_EBADMSG;
    if ((rc = put_event(r, &e)) < 0) return rc;
  }
  if (!jc_array(c, &n)) return MLY_EBADMSG;
  for (uint32_t i = 0; i < n && rc == 0; i++) rc = state_rec(c, r);
  return rc;
}

/* A tombstone: the newest for a name wins. */
static int put_tomb(replay *r, const char *name, size_t len, mly_id id,
                    int64_t status, int64_t ended_ms) {
  if (name_check(name, len) < 0) return MLY_EBADMSG;
  rp_tomb *t = NULL;
  HASH_FIND(hh, r->tombs, name, len, t);
  if (t == NULL) {
    if ((t = calloc(1, sizeof *t)) == NULL) return MLY_ENOMEM;
    t->name = name;
    t->len = len;
    bool hash_oom = false;
    HASH_ADD_KEYPTR(hh, r->tombs, t->name, t->len, t);
    if (hash_oom) {
      free(t);
      return MLY_ENOMEM;
    }
    r->ntombs++;
  } else if (t->ended_ms > ended_ms) {
    return 0;
  }
  t->id = id;
  t->status = status;
  t->ended_ms = ended_ms;
  return 0;
}

/* TOMB [seq, 9, name, id, status, ended_ms] */
static int tomb_rec(jcur *c, replay *r) {
  const char *name;
  size_t len;
  uint64_t id;
  int64_t status, ended;
  if (!jc_str(c, &name, &len) || !jc_uint(c, &id) || !jc_int(c, &status) ||
      !jc_int(c, &ended))
    return MLY_EBADMSG;
  return put_tomb(r, name, len, id, status, ended);
}

/* END [seq, 4, id, status, lifecycle, notice_eid (, ended_ms, name)] */
static int end_rec(jcur *c, replay *r, uint32_t nfields) {
  uint64_t id, eid;
  int64_t status, lc;
  if (!jc_uint(c, &id) || !jc_int(c, &status) || !jc_int(c, &lc) ||
      !jc_uint(c, &eid))
    return MLY_EBADMSG;
  if (nfields >= 6) { /* a named instance: its tombstone */
    int64_t ended;
    const char *name;
    size_t len;
    if (!jc_int(c, &ended) || !jc_str(c, &name, &len)) return MLY_EBADMSG;
    int rc = put_tomb(r, name, len, id, status, ended);
    if (rc < 0) return rc;
  }
  uint32_t i = inst_at(r, id);
  if (i == UINT32_MAX || r->insts[i].ended) return 0;
  r->insts[i].ended = true;
  r->live--;
  mly_id parent = r->insts[i].parent;
  if (eid == 0 || parent == 0) return 0;
  /* the parent's CHILD_EXIT notice, made here as the runtime made it */
  rp_event e = {.eid = eid, .to = parent, .ev = MLY_EV_CHILD_EXIT, .from = id,
                .status = status, .aux = lc};
  return put_event(r, &e);
}

int rp_record(const jrec *rec, void *arg) {
  replay *r = arg;
  jcur c = {rec->body, rec->body + rec->len, false};
  uint32_t n = 0;
  uint64_t seq, kind;
  jc_array(&c, &n);
  jc_uint(&c, &seq);
  jc_uint(&c, &kind);
  r->records++;
  int rc = 0;
  switch (kind) {
  case JR_CREATE:
  case JR_INST: rc = state_rec(&c, r); break;
  case JR_STEP: rc = step_rec(&c, r); break;
  case JR_EVENT: {
    rp_event e;
    rc = rp_parse_event(&c, &e) ? put_event(r, &e) : MLY_EBADMSG;
    break;
  }
  case JR_END: rc = end_rec(&c, r, n >= 2 ? n - 2 : 0); break;
  case JR_TOMB: rc = tomb_rec(&c, r); break;
  case JR_DROP: rc = eids(&c, r, true) ? 0 : MLY_EBADMSG; break;
  case JR_SNAP: {
    uint64_t eid, corr;
    if (!jc_uint(&c, &eid) || !jc_uint(&c, &corr)) rc = MLY_EBADMSG;
    else {
      if (eid > r->max_eid) r->max_eid = eid;
      if (corr > r->max_corr) r->max_corr = corr;
      r->snap_eid = eid;
      r->snap_corr = corr;
      r->snapped = true;
    }
    break;
  }
  default: break; /* SNAPEND */
  }
  if (rc == MLY_EBADMSG && r->err)
    snprintf(r->err, r->errlen, "%s: offset %llu: a %s record whose fields "
             "are not what that kind holds", rec->file,
             (unsigned long long)rec->offset, jr_kind_name((unsigned)kind));
  return rc;
}

void rp_free(replay *r) {
  rp_tomb *t, *tmp;
  HASH_ITER(hh, r->tombs, t, tmp) {
    HASH_DEL(r->tombs, t);
    free(t);
  }
  free(r->insts);
  free(r->evs);
  free(r->slot);
  map_free(&r->imap);
  map_free(&r->emap);
  *r = (replay){0};
}

uint32_t rp_find_inst(const replay *r, mly_id id) { return inst_at(r, id); }

void rp_state_full(jbuf *b, const rp_state *s) {
  jb_array(b, 12);
  jb_raw(b, s->fields, (size_t)(s->tail - s->fields));
  if (s->ctx && s->ctxlen) jb_bin(b, s->ctx, s->ctxlen);
  else jb_nil(b);
  if (s->name) jb_str(b, s->name, s->namelen);
  else jb_nil(b);
}
