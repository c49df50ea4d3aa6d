/*
 * def.c - loaded definitions (def.h): freeing, finding, the canonical
 * encoding and its hash, and the public accessors of mealy.h.
 *
 * The encoding is a msgpack value built with the value layer: maps whose
 * keys come in one fixed order, no positions, no file names, so equal
 * definitions encode to equal bytes however their files are laid out.
 * Its SHA-256 (Nettle, Debian's nettle-dev) is the machine's content
 * hash, which pins running instances to the definition they started
 * with.  decode checks every field's type and every index, so a damaged
 * stored definition is refused (MLY_EBADMSG), never trusted.
 */
#include <nettle/sha2.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

/* ------------------------------------------------------------------ */
/* Freeing and finding.                                                */

static void action_free(fsm_action *a) {
  free(a->name);
  for (size_t i = 0; a->argv && i < a->argc; i++) free(a->argv[i]);
  free(a->argv);
}

static void state_free(fsm_state *s) {
  free(s->name);
  action_free(&s->entry);
  action_free(&s->action);
  action_free(&s->exit);
  free(s->fan_in_group);
  for (size_t i = 0; i < s->nwait_events; i++) free(s->wait_events[i]);
  free(s->wait_events);
  free(s->wait_timeout_event);
  for (size_t i = 0; i < s->ntrans; i++) {
    free(s->trans[i].event);
    action_free(&s->trans[i].action);
    free(s->trans[i].queue);
  }
  free(s->trans);
}

static void machine_clear(fsm_machine *m) {
  free(m->name);
  free(m->namespace_);
  free(m->queue);
  for (size_t i = 0; i < m->nctypes; i++) free(m->ctypes[i].key);
  free(m->ctypes);
  for (size_t i = 0; i < m->nstates; i++) state_free(&m->states[i]);
  free(m->states);
}

void fsm_machine_free(fsm_machine *m) {
  if (m == NULL) return;
  machine_clear(m);
  free(m);
}

void fsm_set_free(fsm_set *s) {
  if (s == NULL) return;
  for (size_t i = 0; i < s->nmachines; i++) machine_clear(&s->machines[i]);
  free(s->machines);
  for (size_t i = 0; i < s->nfiles; i++) free(s->files[i]);
  free(s->files);
  free(s);
}

const fsm_machine *fsm_set_find(const fsm_set *s, const char *name) {
  for (size_t i = 0; s && name && i < s->nmachines; i++)
    if (s->machines[i].name && strcmp(s->machines[i].name, name) == 0)
      return &s->machines[i];
  return NULL;
}

uint32_t fsm_state_find(const fsm_machine *m, const char *name) {
  for (size_t i = 0; m && name && i < m->nstates; i++)
    if (m->states[i].name && strcmp(m->states[i].name, name) == 0)
      return (uint32_t)i;
  return FSM_NO_STATE;
}

/* ------------------------------------------------------------------ */
/* Encoding.  Each put_* adds one key; the first failure sticks.       */

typedef struct enc {
  int rc;
} enc;

static void put(enc *e, mly_value *map, const char *k, mly_value *v) {
  if (e->rc) {
    mly_value_free(v);
    return;
  }
  if (v == NULL) e->rc = MLY_ENOMEM;
  else e->rc = mly_map_set(map, k, v);
}

static mly_value *str_or_nil(const char *s) {
  return s ? mly_value_str(s) : mly_value_nil();
}

static mly_value *strs(char *const *v, size_t n, enc *e) {
  mly_value *a = mly_value_array();
  for (size_t i = 0; a && i < n && e->rc == 0; i++) {
    mly_value *s = mly_value_str(v[i]);
    if (s == NULL) e->rc = MLY_ENOMEM;
    else e->rc = mly_array_push(a, s);
  }
  return a;
}

static mly_value *enc_retry(const fsm_retry *r, enc *e) {
  mly_value *m = mly_value_map();
  put(e, m, "limit", mly_value_int(r->task_retry_limit));
  put(e, m, "min", mly_value_int(r->min_backoff_ms));
  put(e, m, "max", mly_value_int(r->max_backoff_ms));
  put(e, m, "doublings", mly_value_int(r->max_doublings));
  put(e, m, "age", mly_value_int(r->task_age_limit_ms));
  put(e, m, "jitter", mly_value_double(r->jitter));
  return m;
}

static mly_value *enc_countdown(const fsm_countdown *c, enc *e) {
  mly_value *a = mly_value_array();
  if (a && e->rc == 0) e->rc = mly_array_push(a, mly_value_int(c->min_ms));
  if (a && e->rc == 0) e->rc = mly_array_push(a, mly_value_int(c->max_ms));
  return a;
}

static mly_value *enc_action(const fsm_action *a, enc *e) {
  mly_value *m = mly_value_map();
  put(e, m, "kind", mly_value_uint(a->kind));
  put(e, m, "name", str_or_nil(a->name));
  put(e, m, "argv", strs(a->argv, a->argc, e));
  put(e, m, "timeout", mly_value_int(a->timeout_ms));
  return m;
}

static mly_value *enc_trans(const fsm_transition *t, enc *e) {
  mly_value *m = mly_value_map();
  put(e, m, "event", str_or_nil(t->event));
  put(e, m, "to", mly_value_uint(t->to));
  put(e, m, "action", enc_action(&t->action, e));
  put(e, m, "countdown", enc_countdown(&t->countdown, e));
  put(e, m, "retry", enc_retry(&t->retry, e));
  put(e, m, "queue", str_or_nil(t->queue));
  return m;
}

static mly_value *enc_state(const fsm_state *s, enc *e) {
  mly_value *m = mly_value_map();
  put(e, m, "name", str_or_nil(s->name));
  put(e, m, "initial", mly_value_bool(s->initial));
  put(e, m, "final", mly_value_bool(s->final));
  put(e, m, "entry", enc_action(&s->entry, e));
  put(e, m, "action", enc_action(&s->action, e));
  put(e, m, "exit", enc_action(&s->exit, e));
  put(e, m, "continuation", mly_value_bool(s->continuation));
  put(e, m, "cont_countdown", mly_value_int(s->continuation_countdown_ms));
  put(e, m, "fan_in", mly_value_uint(s->fan_in));
  put(e, m, "fan_in_window", mly_value_int(s->fan_in_window_ms));
  put(e, m, "fan_in_count", mly_value_uint(s->fan_in_count));
  put(e, m, "fan_in_tolerate", mly_value_uint(s->fan_in_tolerate));
  put(e, m, "fan_in_group", str_or_nil(s->fan_in_group));
  put(e, m, "wait", mly_value_bool(s->wait));
  put(e, m, "wait_events", strs(s->wait_events, s->nwait_events, e));
  put(e, m, "wait_timeout", mly_value_int(s->wait_timeout_ms));
  put(e, m, "wait_timeout_event", str_or_nil(s->wait_timeout_event));
  put(e, m, "on_failure", mly_value_uint(s->on_failure));
  mly_value *ts = mly_value_array();
  for (size_t i = 0; ts && i < s->ntrans && e->rc == 0; i++) {
    mly_value *t = enc_trans(&s->trans[i], e);
    if (t == NULL) e->rc = MLY_ENOMEM;
    else if (e->rc == 0) e->rc = mly_array_push(ts, t);
    else mly_value_free(t);
  }
  put(e, m, "transitions", ts);
  return m;
}

static mly_value *enc_machine(const fsm_machine *fm, enc *e) {
  mly_value *m = mly_value_map();
  put(e, m, "format", mly_value_uint(1));
  put(e, m, "name", str_or_nil(fm->name));
  put(e, m, "namespace", str_or_nil(fm->namespace_));
  put(e, m, "version", mly_value_uint(fm->version));
  put(e, m, "queue", str_or_nil(fm->queue));
  put(e, m, "retry", enc_retry(&fm->retry, e));
  put(e, m, "countdown", enc_countdown(&fm->countdown, e));
  put(e, m, "on_failure", mly_value_uint(fm->on_failure));
  put(e, m, "initial", mly_value_uint(fm->initial));
  mly_value *ct = mly_value_array();
  for (size_t i = 0; ct && i < fm->nctypes && e->rc == 0; i++) {
    mly_value *t = mly_value_map();
    put(e, t, "key", mly_value_str(fm->ctypes[i].key));
    put(e, t, "type", mly_value_uint(fm->ctypes[i].type));
    put(e, t, "list", mly_value_bool(fm->ctypes[i].list));
    if (t == NULL) e->rc = MLY_ENOMEM;
    else if (e->rc == 0) e->rc = mly_array_push(ct, t);
    else mly_value_free(t);
  }
  put(e, m, "context_types", ct);
  mly_value *st = mly_value_array();
  for (size_t i = 0; st && i < fm->nstates && e->rc == 0; i++) {
    mly_value *s = enc_state(&fm->states[i], e);
    if (s == NULL) e->rc = MLY_ENOMEM;
    else if (e->rc == 0) e->rc = mly_array_push(st, s);
    else mly_value_free(s);
  }
  put(e, m, "states", st);
  return m;
}

int fsm_def_encode(const fsm_machine *m, char **buf, size_t *len) {
  if (m == NULL || buf == NULL || len == NULL) return MLY_EINVAL;
  enc e = {0};
  mly_value *v = enc_machine(m, &e);
  if (v == NULL) e.rc = MLY_ENOMEM;
  if (e.rc == 0) e.rc = mly_value_encode(v, buf, len);
  mly_value_free(v);
  return e.rc;
}

/* ------------------------------------------------------------------ */
/* Decoding: every key present with its type, every index in range.    */

typedef struct dec {
  int rc;
} dec;

static const mly_value *get(dec *d, const mly_value *m, const char *k,
                            mly_vtype t) {
  const mly_value *v = m ? mly_map_get(m, k) : NULL;
  if (d->rc == 0 && (v == NULL || mly_value_type(v) != t)) d->rc = MLY_EBADMSG;
  return d->rc ? NULL : v;
}

static int64_t get_i(dec *d, const mly_value *m, const char *k) {
  const mly_value *v = m ? mly_map_get(m, k) : NULL;
  int64_t i = 0;
  if (d->rc == 0 && (v == NULL || mly_value_get_int(v, &i) != 0))
    d->rc = MLY_EBADMSG;
  return i;
}

static uint64_t get_u(dec *d, const mly_value *m, const char *k,
                      uint64_t max) {
  const mly_value *v = m ? mly_map_get(m, k) : NULL;
  uint64_t u = 0;
  if (d->rc == 0 && (v == NULL || mly_value_get_uint(v, &u) != 0 || u > max))
    d->rc = MLY_EBADMSG;
  return u;
}

static bool get_b(dec *d, const mly_value *m, const char *k) {
  const mly_value *v = get(d, m, k, MLY_V_BOOL);
  bool b = false;
  if (v) mly_value_get_bool(v, &b);
  return b;
}

/* A string or nil (NULL); required: nil is refused. */
static char *get_s(dec *d, const mly_value *m, const char *k, bool required) {
  const mly_value *v = m ? mly_map_get(m, k) : NULL;
  const char *s;
  size_t n;
  if (d->rc) return NULL;
  if (v == NULL) d->rc = MLY_EBADMSG;
  else if (mly_value_type(v) == MLY_V_NIL && !required) return NULL;
  else if (mly_value_get_str(v, &s, &n) != 0 || strlen(s) != n)
    d->rc = MLY_EBADMSG;
  else {
    char *c = strdup(s);
    if (c == NULL) d->rc = MLY_ENOMEM;
    return c;
  }
  return NULL;
}

static char **get_strs(dec *d, const mly_value *m, const char *k, size_t *n) {
  const mly_value *a = get(d, m, k, MLY_V_ARRAY);
  *n = 0;
  if (a == NULL || mly_value_len(a) == 0) return NULL;
  char **v = calloc(mly_value_len(a) + 1, sizeof *v);
  if (v == NULL) {
    d->rc = MLY_ENOMEM;
    return NULL;
  }
  for (size_t i = 0; i < mly_value_len(a) && d->rc == 0; i++) {
    const mly_value *s = mly_array_at(a, i);
    const char *p;
    size_t len;
    if (mly_value_get_str(s, &p, &len) != 0 || strlen(p) != len)
      d->rc = MLY_EBADMSG;
    else if ((v[i] = strdup(p)) == NULL) d->rc = MLY_ENOMEM;
    else *n = i + 1;
  }
  return v;
}

static void dec_retry(dec *d, const mly_value *v, fsm_retry *r) {
  const mly_value *m = get(d, v, "retry", MLY_V_MAP);
  r->task_retry_limit = get_i(d, m, "limit");
  r->min_backoff_ms = get_i(d, m, "min");
  r->max_backoff_ms = get_i(d, m, "max");
  r->max_doublings = get_i(d, m, "doublings");
  r->task_age_limit_ms = get_i(d, m, "age");
  const mly_value *j = get(d, m, "jitter", MLY_V_DOUBLE);
  if (j) mly_value_get_double(j, &r->jitter);
}

static void dec_countdown(dec *d, const mly_value *v, fsm_countdown *c) {
  const mly_value *a = get(d, v, "countdown", MLY_V_ARRAY);
  if (a == NULL) return;
  if (mly_value_len(a) != 2 ||
      mly_value_get_int(mly_array_at(a, 0), &c->min_ms) != 0 ||
      mly_value_get_int(mly_array_at(a, 1), &c->max_ms) != 0)
    d->rc = MLY_EBADMSG;
}

static void dec_action(dec *d, const mly_value *v, const char *k,
                       fsm_action *a) {
  const mly_value *m = get(d, v, k, MLY_V_MAP);
  a->kind = (fsm_action_kind)get_u(d, m, "kind", FSM_ACT_EXEC);
  a->name = get_s(d, m, "name", false);
  a->argv = get_strs(d, m, "argv", &a->argc);
  a->timeout_ms = get_i(d, m, "timeout");
  if (d->rc == 0 && ((a->kind == FSM_ACT_C) != (a->name != NULL) ||
                     (a->kind == FSM_ACT_EXEC) != (a->argc > 0)))
    d->rc = MLY_EBADMSG;
}

static void dec_state(dec *d, const mly_value *v, fsm_state *s, size_t n) {
  s->name = get_s(d, v, "name", true);
  s->initial = get_b(d, v, "initial");
  s->final = get_b(d, v, "final");
  dec_action(d, v, "entry", &s->entry);
  dec_action(d, v, "action", &s->action);
  dec_action(d, v, "exit", &s->exit);
  s->continuation = get_b(d, v, "continuation");
  s->continuation_countdown_ms = get_i(d, v, "cont_countdown");
  s->fan_in = (fsm_fan_in)get_u(d, v, "fan_in", FSM_FAN_COUNT);
  s->fan_in_window_ms = get_i(d, v, "fan_in_window");
  s->fan_in_count = (uint32_t)get_u(d, v, "fan_in_count", UINT32_MAX);
  s->fan_in_tolerate = (uint32_t)get_u(d, v, "fan_in_tolerate", UINT32_MAX);
  s->fan_in_group = get_s(d, v, "fan_in_group", false);
  s->wait = get_b(d, v, "wait");
  s->wait_events = get_strs(d, v, "wait_events", &s->nwait_events);
  s->wait_timeout_ms = get_i(d, v, "wait_timeout");
  s->wait_timeout_event = get_s(d, v, "wait_timeout_event", false);
  s->on_failure = (uint32_t)get_u(d, v, "on_failure", UINT32_MAX);
  if (d->rc == 0 && s->on_failure != FSM_NO_STATE && s->on_failure >= n)
    d->rc = MLY_EBADMSG;
  const mly_value *ts = get(d, v, "transitions", MLY_V_ARRAY);
  if (ts == NULL || mly_value_len(ts) == 0) return;
  if ((s->trans = calloc(mly_value_len(ts), sizeof *s->trans)) == NULL) {
    d->rc = MLY_ENOMEM;
    return;
  }
  for (size_t i = 0; i < mly_value_len(ts) && d->rc == 0; i++) {
    const mly_value *tv = mly_array_at(ts, i);
    fsm_transition *t = &s->trans[i];
    s->ntrans = i + 1;
    if (mly_value_type(tv) != MLY_V_MAP) d->rc = MLY_EBADMSG;
    t->event = get_s(d, tv, "event", true);
    t->to = (uint32_t)get_u(d, tv, "to", n ? n - 1 : 0);
    dec_action(d, tv, "action", &t->action);
    dec_countdown(d, tv, &t->countdown);
    dec_retry(d, tv, &t->retry);
    t->queue = get_s(d, tv, "queue", false);
  }
}

static void dec_machine(dec *d, const mly_value *v, fsm_machine *m) {
  if (get_u(d, v, "format", 1) != 1) d->rc = MLY_EBADMSG;
  m->name = get_s(d, v, "name", true);
  m->namespace_ = get_s(d, v, "namespace", false);
  m->version = (uint32_t)get_u(d, v, "version", UINT32_MAX);
  m->queue = get_s(d, v, "queue", false);
  dec_retry(d, v, &m->retry);
  dec_countdown(d, v, &m->countdown);
  const mly_value *ct = get(d, v, "context_types", MLY_V_ARRAY);
  size_t nct = ct ? mly_value_len(ct) : 0;
  if (nct && (m->ctypes = calloc(nct, sizeof *m->ctypes)) == NULL)
    d->rc = MLY_ENOMEM;
  for (size_t i = 0; i < nct && d->rc == 0; i++) {
    const mly_value *t = mly_array_at(ct, i);
    fsm_ctx_type *c = &m->ctypes[i];
    m->nctypes = i + 1;
    if (mly_value_type(t) != MLY_V_MAP) d->rc = MLY_EBADMSG;
    c->key = get_s(d, t, "key", true);
    c->type = (fsm_ctype)get_u(d, t, "type", FSM_T_MAP);
    c->list = get_b(d, t, "list");
  }
  const mly_value *st = get(d, v, "states", MLY_V_ARRAY);
  size_t n = st ? mly_value_len(st) : 0;
  m->on_failure = (uint32_t)get_u(d, v, "on_failure", UINT32_MAX);
  m->initial = (uint32_t)get_u(d, v, "initial", UINT32_MAX);
  if (d->rc == 0 && (n == 0 || m->initial >= n ||
                     (m->on_failure != FSM_NO_STATE && m->on_failure >= n)))
    d->rc = MLY_EBADMSG;
  if (d->rc == 0 && (m->states = calloc(n, sizeof *m->states)) == NULL)
    d->rc = MLY_ENOMEM;
  for (size_t i = 0; i < n && d->rc == 0; i++) {
    const mly_value *sv = mly_array_at(st, i);
    m->nstates = i + 1;
    if (mly_value_type(sv) != MLY_V_MAP) d->rc = MLY_EBADMSG;
    else dec_state(d, sv, &m->states[i], n);
  }
}

int fsm_def_decode(const void *buf, size_t len, fsm_machine **out) {
  if (out == NULL) return MLY_EINVAL;
  *out = NULL;
  mly_value *v = NULL;
  int rc = mly_value_decode(buf, len, &v);
  if (rc) return rc == MLY_ENOMEM ? rc : MLY_EBADMSG;
  fsm_machine *m = calloc(1, sizeof *m);
  dec d = {m ? 0 : MLY_ENOMEM};
  if (m && mly_value_type(v) != MLY_V_MAP) d.rc = MLY_EBADMSG;
  if (m && d.rc == 0) dec_machine(&d, v, m);
  mly_value_free(v);
  if (d.rc == 0) {
    struct sha256_ctx h;
    sha256_init(&h);
    sha256_update(&h, len, buf);
    sha256_digest(&h, SHA256_DIGEST_SIZE, m->hash);
    *out = m;
    return 0;
  }
  fsm_machine_free(m);
  return d.rc;
}

/* The content hash of every machine of a set (load.c calls it last). */
int fsm_set_hash(fsm_set *s) {
  for (size_t i = 0; i < s->nmachines; i++) {
    char *buf;
    size_t len;
    int rc = fsm_def_encode(&s->machines[i], &buf, &len);
    if (rc) return rc;
    struct sha256_ctx h;
    sha256_init(&h);
    sha256_update(&h, len, (const uint8_t *)buf);
    sha256_digest(&h, SHA256_DIGEST_SIZE, s->machines[i].hash);
    free(buf);
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* mealy.h's accessors: the public types are these under other names.  */

void mly_fsm_set_free(mly_fsm_set *s) { fsm_set_free((fsm_set *)s); }

size_t mly_fsm_count(const mly_fsm_set *s) {
  return s ? ((const fsm_set *)s)->nmachines : 0;
}

const mly_fsm_machine *mly_fsm_at(const mly_fsm_set *s, size_t i) {
  const fsm_set *set = (const fsm_set *)s;
  return set && i < set->nmachines
             ? (const mly_fsm_machine *)&set->machines[i]
             : NULL;
}

const mly_fsm_machine *mly_fsm_find(const mly_fsm_set *s, const char *name) {
  return (const mly_fsm_machine *)fsm_set_find((const fsm_set *)s, name);
}

const char *mly_fsm_name(const mly_fsm_machine *m) {
  return m ? ((const fsm_machine *)m)->name : NULL;
}

size_t mly_fsm_nstates(const mly_fsm_machine *m) {
  return m ? ((const fsm_machine *)m)->nstates : 0;
}

const unsigned char *mly_fsm_hash(const mly_fsm_machine *m) {
  return m ? ((const fsm_machine *)m)->hash : NULL;
}
