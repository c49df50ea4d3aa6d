/*
 * node.c - walking a loaded YAML document (mealy.h, "Reading YAML
 * files"): nodes with their positions, typed scalars, and maps of known
 * keys read through field tables.
 *
 * The walk goes only where a caller asks, to the depth its shapes have,
 * so a self-referential alias costs nothing; every node and byte read is
 * charged to a budget of 8 times the text plus 1 MiB, which an alias
 * bomb (one node named many times over) runs out of.
 */
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"

#define MIB (1024ull * 1024)

static const char *sval(const yaml_node_t *n) {
  return (const char *)n->data.scalar.value;
}

bool mly_conf_is_null(const mly_conf_node *cn) {
  const yaml_node_t *n = YN(cn);
  if (n == NULL) return true;
  if (n->type != YAML_SCALAR_NODE) return false;
  if (n->tag != NULL && strcmp((const char *)n->tag, YAML_NULL_TAG) == 0)
    return true;
  if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
  const char *s = sval(n);
  return !strcmp(s, "") || !strcmp(s, "~") || !strcmp(s, "null") ||
         !strcmp(s, "Null") || !strcmp(s, "NULL");
}

mly_conf_type mly_conf_type_of(const mly_conf_node *cn) {
  const yaml_node_t *n = YN(cn);
  if (n == NULL || mly_conf_is_null(cn)) return MLY_CONF_NULL;
  switch (n->type) {
  case YAML_SCALAR_NODE: return MLY_CONF_SCALAR;
  case YAML_SEQUENCE_NODE: return MLY_CONF_LIST;
  case YAML_MAPPING_NODE: return MLY_CONF_MAP;
  default: return MLY_CONF_NULL;
  }
}

const char *mly_conf_kind_name(const mly_conf_node *cn) {
  const yaml_node_t *n = YN(cn);
  switch (n ? n->type : YAML_NO_NODE) {
  case YAML_SCALAR_NODE: return mly_conf_is_null(cn) ? "empty" : "a string";
  case YAML_SEQUENCE_NODE: return "a list";
  case YAML_MAPPING_NODE: return "a map";
  default: return "nothing";
  }
}

const char *mly_conf_scalar(const mly_conf_node *cn) {
  const yaml_node_t *n = YN(cn);
  return n && n->type == YAML_SCALAR_NODE ? sval(n) : NULL;
}

size_t mly_conf_len(const mly_conf_node *cn) {
  const yaml_node_t *n = YN(cn);
  switch (n ? n->type : YAML_NO_NODE) {
  case YAML_SCALAR_NODE: return n->data.scalar.length;
  case YAML_SEQUENCE_NODE:
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  case YAML_MAPPING_NODE:
    return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  default: return 0;
  }
}

uint32_t mly_conf_line(const mly_conf_node *n) {
  return n ? (uint32_t)YN(n)->start_mark.line + 1 : 0;
}

uint32_t mly_conf_col(const mly_conf_node *n) {
  return n ? (uint32_t)YN(n)->start_mark.column + 1 : 0;
}

/* An alias lets a small file name one big node many times over; the
 * total read is bounded so that cannot blow up time or memory. */
static int spend(mly_conf *c, const yaml_node_t *n, size_t units) {
  c->work += units;
  if (c->work <= c->work_limit) return 0;
  if (c->stop) return MLY_EINVAL; /* said once */
  c->stop = true;
  return mly_conf_bad(c, CN(n), "this part is repeated through aliases "
                      "(*name) too often; write the values out instead");
}

/* libyaml's loader only makes valid node indexes, but a NULL here would
 * be a crash, so it becomes an error instead. */
int mly_conf_pair(mly_conf *c, mly_conf_node *map, size_t i,
                  mly_conf_node **k, mly_conf_node **v) {
  yaml_node_t *m = YN(map);
  if (m == NULL || m->type != YAML_MAPPING_NODE || i >= mly_conf_len(map))
    return mly_conf_bad(c, map, "malformed YAML map");
  yaml_node_pair_t *p = m->data.mapping.pairs.start + i;
  *k = CN(yaml_document_get_node(c->doc, p->key));
  *v = CN(yaml_document_get_node(c->doc, p->value));
  if (*k == NULL || *v == NULL) return mly_conf_bad(c, map, "malformed YAML map");
  return spend(c, YN(*k), 1);
}

int mly_conf_item(mly_conf *c, mly_conf_node *seq, size_t i,
                  mly_conf_node **it) {
  yaml_node_t *s = YN(seq);
  if (s == NULL || s->type != YAML_SEQUENCE_NODE || i >= mly_conf_len(seq))
    return mly_conf_bad(c, seq, "malformed YAML list");
  *it = CN(yaml_document_get_node(c->doc, s->data.sequence.items.start[i]));
  if (*it == NULL) return mly_conf_bad(c, seq, "malformed YAML list");
  return spend(c, YN(*it), 1);
}

/* ------------------------------------------------------------------ */
/* Scalars.                                                            */

int mly_conf_get_str(mly_conf *c, mly_conf_node *cv, const char *what,
                     const char **out) {
  yaml_node_t *v = YN(cv);
  if (v == NULL || v->type != YAML_SCALAR_NODE || mly_conf_is_null(cv))
    return mly_conf_bad(c, cv, "%s must be a string, not %s", what,
                        mly_conf_kind_name(cv));
  /* "\0" in a quoted scalar would silently cut the C string short */
  if (strlen(sval(v)) != v->data.scalar.length)
    return mly_conf_bad(c, cv, "%s contains a NUL character (\\0); remove it",
                        what);
  *out = sval(v);
  return spend(c, v, v->data.scalar.length + 1);
}

int mly_conf_set_str(mly_conf *c, mly_conf_node *v, const char *what,
                     char **dst) {
  const char *s;
  int rc = mly_conf_get_str(c, v, what, &s);
  if (rc) return rc;
  if (*s == '\0')
    return mly_conf_bad(c, v, "%s is empty; write a value or remove it", what);
  char *copy = strdup(s);
  if (copy == NULL) return mly_conf_nomem(c);
  free(*dst);
  *dst = copy;
  return 0;
}

int mly_conf_get_bool(mly_conf *c, mly_conf_node *v, const char *what,
                      bool *out) {
  const char *s;
  int rc = mly_conf_get_str(c, v, what, &s);
  if (rc) return rc;
  if (strcasecmp(s, "true") == 0) *out = true;
  else if (strcasecmp(s, "false") == 0) *out = false;
  else return mly_conf_bad(c, v, "%s must be true or false, not '%s'", what,
                           mly_conf_show(s).s);
  return 0;
}

/* Whole decimal numbers only: "08" is 8, "0x10" and "1e3" are refused.
 * Values past int64 saturate, so the range check reports them. */
bool mly_conf_parse_int(const char *s, int64_t *out) {
  bool neg = *s == '-';
  if (neg) s++;
  if (*s < '0' || *s > '9') return false;
  uint64_t n = 0, cap = (uint64_t)INT64_MAX + 1;
  for (; *s >= '0' && *s <= '9'; s++) {
    uint64_t d = (uint64_t)(*s - '0');
    n = n > (cap - d) / 10 ? cap : n * 10 + d;
  }
  if (*s != '\0') return false;
  if (neg) *out = n == cap ? INT64_MIN : -(int64_t)n;
  else *out = n == cap ? INT64_MAX : (int64_t)n;
  return true;
}

int mly_conf_get_int(mly_conf *c, mly_conf_node *v, const char *what,
                     int64_t lo, int64_t hi, int64_t *out) {
  const char *s;
  int rc = mly_conf_get_str(c, v, what, &s);
  if (rc) return rc;
  if (!mly_conf_parse_int(s, out))
    return mly_conf_bad(c, v, "%s must be a whole number, not '%s'", what,
                        mly_conf_show(s).s);
  if (*out < lo)
    return mly_conf_bad(c, v, "%s must be at least %lld, not %s", what,
                        (long long)lo, mly_conf_show(s).s);
  if (*out > hi)
    return mly_conf_bad(c, v, "%s must be at most %lld, not %s", what,
                        (long long)hi, mly_conf_show(s).s);
  return 0;
}

/* Plain decimal notation only: strtod would also take "nan", "inf",
 * hex floats and leading blanks.  The C locale keeps "1.5" meaning 1.5
 * should the program ever set one where the decimal point is a comma. */
static bool parse_num(const char *s, locale_t c_locale, double *out) {
  const char *p = s + (*s == '-');
  bool digits = false;
  while (*p >= '0' && *p <= '9') p++, digits = true;
  if (*p == '.')
    for (p++; *p >= '0' && *p <= '9'; p++) digits = true;
  if (!digits) return false;
  if (*p == 'e' || *p == 'E') {
    p += 1 + (p[1] == '+' || p[1] == '-');
    if (*p < '0' || *p > '9') return false;
    while (*p >= '0' && *p <= '9') p++;
  }
  if (*p != '\0') return false;
  *out = strtod_l(s, NULL, c_locale);
  return isfinite(*out);
}

int mly_conf_get_num(mly_conf *c, mly_conf_node *v, const char *what,
                     double *out) {
  const char *s;
  int rc = mly_conf_get_str(c, v, what, &s);
  if (rc) return rc;
  locale_t c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
  if (c_locale == (locale_t)0) return mly_conf_nomem(c);
  bool ok = parse_num(s, c_locale, out);
  freelocale(c_locale);
  if (!ok)
    return mly_conf_bad(c, v, "%s must be a number such as 1.5, not '%s'",
                        what, mly_conf_show(s).s);
  return 0;
}

int mly_conf_get_dur(mly_conf *c, mly_conf_node *v, const char *what,
                     int64_t min, int64_t *out) {
  const char *s;
  if (YN(v) == NULL || YN(v)->type != YAML_SCALAR_NODE)
    return mly_conf_bad(c, v, "%s must be a duration such as 10s, not %s",
                        what, mly_conf_kind_name(v));
  int rc = mly_conf_get_str(c, v, what, &s);
  if (rc) return rc;
  if (*s == '-')
    return mly_conf_bad(c, v, "%s cannot be negative; write a duration such "
                        "as 10s", what);
  rc = mly_duration_parse(s, out);
  if (rc == MLY_ERANGE || (rc == 0 && *out > CONF_DURATION_LIMIT))
    return mly_conf_bad(c, v, "%s '%s' is longer than a year; write a "
                        "shorter one", what, mly_conf_show(s).s);
  if (rc)
    return mly_conf_bad(c, v, "'%s' is not a duration; write 250ms, 10s or "
                        "2m", mly_conf_show(s).s);
  if (*out < min)
    return mly_conf_bad(c, v, "%s must be more than 0; write a duration "
                        "such as 10s", what);
  return 0;
}

/* Byte counts: "10MB", "512KB", "1GB", "4096".  Units are binary
 * (1KB = 1024 bytes), as log sizes usually are. */
int mly_conf_get_size(mly_conf *c, mly_conf_node *v, const char *what,
                      uint64_t *out) {
  static const struct { const char *unit; uint64_t mul; } units[] = {
      {"", 1},          {"b", 1},           {"k", 1024},
      {"kb", 1024},     {"kib", 1024},      {"m", MIB},
      {"mb", MIB},      {"mib", MIB},       {"g", 1024 * MIB},
      {"gb", 1024 * MIB}, {"gib", 1024 * MIB}};
  const char *s, *p;
  int rc = mly_conf_get_str(c, v, what, &s);
  if (rc) return rc;
  uint64_t n = 0;
  bool big = false;
  for (p = s; *p >= '0' && *p <= '9'; p++) {
    if (n > (UINT64_MAX - 9) / 10) big = true;
    else n = n * 10 + (uint64_t)(*p - '0');
  }
  if (p == s) goto invalid;
  if (*p == ' ') p++;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (strcasecmp(p, units[i].unit) != 0) continue;
    if (big || n > UINT64_MAX / units[i].mul)
      return mly_conf_bad(c, v, "%s '%s' is too big", what,
                          mly_conf_show(s).s);
    *out = n * units[i].mul;
    return 0;
  }
invalid:
  return mly_conf_bad(c, v, "%s '%s' is not a size; write bytes, or 512KB, "
                      "10MB, 1GB", what, mly_conf_show(s).s);
}

/* ------------------------------------------------------------------ */
/* Maps of known keys.                                                 */

static void known_keys(const mly_conf_field *f, size_t n, char *buf,
                       size_t len) {
  size_t at = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && at < len; i++) {
    int w = snprintf(buf + at, len - at, "%s%s", i ? ", " : "", f[i].key);
    if (w < 0) break;
    at += (size_t)w;
  }
}

static int find_field(const mly_conf_field *f, size_t n, const yaml_node_t *k) {
  for (size_t i = 0; i < n; i++)
    if (strlen(f[i].key) == k->data.scalar.length &&
        memcmp(f[i].key, sval(k), k->data.scalar.length) == 0)
      return (int)i;
  return -1;
}

/* One pair: 0, or the error it reported. */
static int walk_pair(mly_conf *c, mly_conf_node *map, size_t i,
                     const mly_conf_field *f, size_t nf, const char *where,
                     void *obj, yaml_mark_t *first, uint32_t *seen) {
  mly_conf_node *ck, *v;
  int rc = mly_conf_pair(c, map, i, &ck, &v);
  if (rc) return rc;
  yaml_node_t *k = YN(ck);
  if (k->type != YAML_SCALAR_NODE)
    return mly_conf_bad(c, ck, "keys %s must be names, not %s", where,
                        mly_conf_kind_name(ck));
  int fi = find_field(f, nf, k);
  if (fi < 0) {
    char known[512];
    known_keys(f, nf, known, sizeof known);
    return mly_conf_bad(c, ck, "unknown key '%s' %s (known: %s)",
                        mly_conf_show(sval(k)).s, where, known);
  }
  if (*seen & (1u << fi))
    return mly_conf_bad(c, ck, "'%s' is set twice %s (first at %zu:%zu); "
                        "keep one", f[fi].key, where, first[fi].line + 1,
                        first[fi].column + 1);
  *seen |= 1u << fi;
  first[fi] = k->start_mark;
  if (mly_conf_is_null(v) && !f[fi].nulls) return 0;
  return f[fi].fn(c, obj, v);
}

int mly_conf_walk(mly_conf *c, mly_conf_node *map, const mly_conf_field *f,
                  size_t nf, const char *where, void *obj) {
  yaml_mark_t first[32];
  uint32_t seen = 0;
  int first_rc = 0;
  if (nf > 32) return mly_conf_bad(c, map, "too many fields (a bug)");
  if (mly_conf_type_of(map) != MLY_CONF_MAP)
    return mly_conf_bad(c, map, "expected a map of settings %s, not %s",
                        where, mly_conf_kind_name(map));
  for (size_t i = 0; i < mly_conf_len(map); i++) {
    int rc = walk_pair(c, map, i, f, nf, where, obj, first, &seen);
    if (rc && first_rc == 0) first_rc = rc;
    if (rc && (!c->o.all_errors || c->stop || rc == MLY_ENOMEM)) break;
  }
  return first_rc;
}

int mly_conf_each(mly_conf *c, mly_conf_node *list,
                  int (*fn)(mly_conf *c, void *obj, mly_conf_node *item,
                            size_t i),
                  void *obj) {
  int first_rc = 0;
  if (mly_conf_type_of(list) != MLY_CONF_LIST)
    return mly_conf_bad(c, list, "expected a list, not %s",
                        mly_conf_kind_name(list));
  for (size_t i = 0; i < mly_conf_len(list); i++) {
    mly_conf_node *it;
    int rc = mly_conf_item(c, list, i, &it);
    if (rc == 0) rc = fn(c, obj, it, i);
    if (rc && first_rc == 0) first_rc = rc;
    if (rc && (!c->o.all_errors || c->stop || rc == MLY_ENOMEM)) break;
  }
  return first_rc;
}
