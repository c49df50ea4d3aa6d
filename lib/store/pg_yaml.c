/*
 * pg_yaml.c - the `store:` section of the YAML files the fsm loader
 * reads (mly_store_conf, mealy.h), and a conninfo shown without its
 * password (mly_store_pg_conninfo_show).
 *
 *     store: postgresql://mealy@/mealy?host=/run/postgresql
 * or
 *     store:
 *       postgresql: host=/run/postgresql dbname=mealy
 *       lease: 10s
 *       poll: 1s
 *       give_up: 60s
 *       lock_timeout: 5s
 *       statement_timeout: 0
 *
 * Every field is checked where it is read and reported at its
 * FILE:LINE:COL; a conninfo libpq cannot parse is refused there, and no
 * message ever quotes the conninfo (it may hold a password).  One store
 * for all the files: a second `store:` is an error naming the first.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mealy.h"
#include "pg_conn.h"

struct mly_store_conf {
  char *conninfo;
  int64_t lease, poll, give_up, lock_timeout, statement_timeout;
  char *file; /* where store: was read first */
  uint32_t line;
};

mly_store_conf *mly_store_conf_new(void) {
  return calloc(1, sizeof(mly_store_conf));
}

void mly_store_conf_free(mly_store_conf *sc) {
  if (sc == NULL) return;
  free(sc->conninfo);
  free(sc->file);
  free(sc);
}

static void put(char *out, size_t len, size_t *o, const char *s);

/* libpq's message about a conninfo, its quoted fragments (which may be
 * a piece of the password) replaced by "...". */
static void unquote(const char *in, char *out, size_t len) {
  size_t o = 0;
  bool q = false;
  out[0] = '\0';
  for (; *in && *in != '\n'; in++) {
    char ch[2] = {*in, 0};
    if (*in == '"' && (q = !q)) put(out, len, &o, "\"...\"");
    else if (!q && *in != '"') put(out, len, &o, ch);
  }
}

/* A conninfo libpq parses (a key=value string or a postgresql:// URI);
 * otherwise why not into err (nothing of the conninfo quoted). */
static bool parses(const char *conninfo, char *err, size_t len) {
  char *msg = NULL;
  PQconninfoOption *o = PQconninfoParse(conninfo, &msg);
  if (o) {
    PQconninfoFree(o);
    return true;
  }
  unquote(msg ? msg : "out of memory", err, len);
  PQfreemem(msg);
  return false;
}

#define SC(o) ((mly_store_conf *)(o))

static int set_conninfo(mly_conf *c, mly_store_conf *sc, mly_conf_node *v) {
  const char *s;
  int rc = mly_conf_get_str(c, v, "postgresql", &s);
  if (rc) return rc;
  char why[256];
  if (s[0] == '\0')
    return mly_conf_bad(c, v, "postgresql: an empty conninfo; give "
                        "postgresql://... or 'host=DIR dbname=NAME'");
  if (!parses(s, why, sizeof why))
    return mly_conf_bad(c, v, "postgresql: not a libpq connection string "
                        "or postgresql:// URI (%s)", why);
  return mly_conf_set_str(c, v, "postgresql", &sc->conninfo);
}

static int f_pg(mly_conf *c, void *o, mly_conf_node *v) {
  return set_conninfo(c, SC(o), v);
}

/* A duration in [min, max] ms; 0 allowed when zero_ok. */
static int dur(mly_conf *c, mly_conf_node *v, const char *what, int64_t min,
               int64_t max, bool zero_ok, int64_t *out) {
  int64_t ms;
  int rc = mly_conf_get_dur(c, v, what, 0, &ms);
  if (rc) return rc;
  if ((ms == 0 && !zero_ok) || (ms != 0 && (ms < min || ms > max)))
    return mly_conf_bad(c, v, "%s: from %lldms to %llds%s", what,
                        (long long)min, (long long)(max / 1000),
                        zero_ok ? " (0: none)" : "");
  *out = ms;
  return 0;
}

#define HOUR_MS 3600000
static int f_lease(mly_conf *c, void *o, mly_conf_node *v) {
  return dur(c, v, "lease", 100, HOUR_MS, false, &SC(o)->lease);
}
static int f_poll(mly_conf *c, void *o, mly_conf_node *v) {
  return dur(c, v, "poll", 10, HOUR_MS, false, &SC(o)->poll);
}
static int f_give_up(mly_conf *c, void *o, mly_conf_node *v) {
  return dur(c, v, "give_up", 100, 24 * (int64_t)HOUR_MS, false,
             &SC(o)->give_up);
}
static int f_lock(mly_conf *c, void *o, mly_conf_node *v) {
  return dur(c, v, "lock_timeout", 1, HOUR_MS, false, &SC(o)->lock_timeout);
}
static int f_stmt(mly_conf *c, void *o, mly_conf_node *v) {
  return dur(c, v, "statement_timeout", 1, 24 * (int64_t)HOUR_MS, true,
             &SC(o)->statement_timeout);
}

static const mly_conf_field store_fields[] = {
    {"postgresql", f_pg, false},      {"lease", f_lease, false},
    {"poll", f_poll, false},          {"give_up", f_give_up, false},
    {"lock_timeout", f_lock, false},  {"statement_timeout", f_stmt, false},
};

static int read_store(mly_conf *c, mly_conf_node *v, void *arg) {
  mly_store_conf *sc = arg;
  if (sc == NULL) /* mly_store_conf_section(NULL) */
    return mly_conf_bad(c, v, "store: has no mly_store_conf to go to (a "
                        "program's mistake: mly_store_conf_section(NULL))");
  const char *path = mly_conf_path(c);
  if (sc->file)
    return mly_conf_bad(c, v, "store: is given twice (first at %s:%u): "
                        "one store for all the files",
                        mly_conf_show(sc->file).s, sc->line);
  if (!(sc->file = strdup(path ? path : "config"))) return mly_conf_nomem(c);
  sc->line = mly_conf_line(v);
  int rc;
  if (mly_conf_type_of(v) == MLY_CONF_SCALAR) {
    rc = set_conninfo(c, sc, v);
  } else if (mly_conf_type_of(v) == MLY_CONF_MAP) {
    rc = mly_conf_walk(c, v, store_fields,
                       sizeof store_fields / sizeof *store_fields,
                       "in store:", sc);
    if (rc == 0 && sc->conninfo == NULL)
      rc = mly_conf_bad(c, v, "store: needs postgresql: CONNINFO (the "
                        "database, postgresql://... or 'host=DIR "
                        "dbname=NAME')");
  } else {
    rc = mly_conf_bad(c, v, "store: is a conninfo (postgresql://...) or a "
                      "map (postgresql: CONNINFO, lease: 10s, ...), not %s",
                      mly_conf_kind_name(v));
  }
  return rc;
}

mly_conf_section mly_store_conf_section(mly_store_conf *sc) {
  return (mly_conf_section){"store", read_store, sc, NULL};
}

bool mly_store_conf_get(const mly_store_conf *sc, mly_store_pg_options *o) {
  if (sc == NULL || o == NULL || sc->conninfo == NULL) return false;
  o->conninfo = sc->conninfo;
  o->lease_ms = (uint32_t)sc->lease;
  o->poll_ms = (uint32_t)sc->poll;
  o->give_up_ms = (uint32_t)sc->give_up;
  o->lock_timeout_ms = (uint32_t)sc->lock_timeout;
  o->statement_timeout_ms = (uint32_t)sc->statement_timeout;
  return true;
}

const char *mly_store_conf_where(const mly_store_conf *sc, uint32_t *line) {
  if (sc == NULL || sc->file == NULL) return NULL;
  if (line) *line = sc->line;
  return sc->file;
}

/* ---- a conninfo shown without its password ---- */

static void put(char *out, size_t len, size_t *o, const char *s) {
  size_t n = strlen(s);
  if (*o + n >= len) n = *o + 1 < len ? len - *o - 1 : 0;
  memcpy(out + *o, s, n);
  *o += n;
  out[*o] = '\0';
}

char *mly_store_pg_conninfo_show(const char *conninfo, char *out,
                                 size_t len) {
  if (out == NULL || len == 0) return out;
  out[0] = '\0';
  size_t o = 0;
  char *msg = NULL;
  PQconninfoOption *opts = conninfo ? PQconninfoParse(conninfo, &msg) : NULL;
  PQfreemem(msg);
  if (opts == NULL) {
    put(out, len, &o, "(a conninfo libpq cannot read)");
    return out;
  }
  for (PQconninfoOption *p = opts; p->keyword; p++) {
    if (p->val == NULL || p->val[0] == '\0') continue;
    bool secret = strcmp(p->keyword, "password") == 0 ||
                  strcmp(p->keyword, "sslpassword") == 0 ||
                  strchr(p->dispchar ? p->dispchar : "", '*') != NULL;
    if (o) put(out, len, &o, " ");
    put(out, len, &o, p->keyword);
    put(out, len, &o, "=");
    if (secret) {
      put(out, len, &o, "***");
      continue;
    }
    bool quote = p->val[strcspn(p->val, " '\\")] != '\0';
    if (quote) put(out, len, &o, "'");
    for (const char *v = p->val; *v; v++) {
      char ch[3] = {*v, 0, 0};
      if (*v == '\'' || *v == '\\') {
        ch[0] = '\\';
        ch[1] = *v;
      }
      put(out, len, &o, ch);
    }
    if (quote) put(out, len, &o, "'");
  }
  PQconninfoFree(opts);
  return out;
}

/* Every occurrence of val[0..vl) in msg becomes ***. */
static void mask_span(char *msg, size_t len, const char *val, size_t vl) {
  if (vl == 0) return;
  char *at, *from = msg;
  while ((at = memmem(from, strlen(from), val, vl)) != NULL) {
    size_t rest = strlen(at + vl);
    if ((size_t)(at - msg) + 3 + rest + 1 > len) { /* cut it off */
      *at = '\0';
      break;
    }
    memmove(at + 3, at + vl, rest + 1);
    memcpy(at, "***", 3);
    from = at + 3;
  }
}

/* A conninfo libpq cannot parse (its message quotes it whole, e.g.
 * "invalid IPv6 host address in URI: \"postgresql://u:PW@[::1/db\""):
 * the password is found by hand.  A URI's is between the first ':' and
 * the first '@' after "://"; in key=value form, each password= or
 * sslpassword= value, quoted or up to the next blank. */
static void mask_unparsed(const char *ci, char *msg, size_t len) {
  const char *sch = strstr(ci, "://");
  if (sch) {
    const char *u = sch + 3, *at = strchr(u, '@');
    const char *colon = at ? memchr(u, ':', (size_t)(at - u)) : NULL;
    if (colon) mask_span(msg, len, colon + 1, (size_t)(at - colon - 1));
    return;
  }
  for (const char *k = ci; (k = strstr(k, "password")) != NULL;) {
    const char *v = k + 8;
    k = v;
    while (*v == ' ' || *v == '\t') v++;
    if (*v++ != '=') continue;
    while (*v == ' ' || *v == '\t') v++;
    size_t n;
    if (*v == '\'') {
      v++;
      for (n = 0; v[n] && v[n] != '\''; n += v[n] == '\\' && v[n + 1] ? 2 : 1) {}
    } else {
      n = strcspn(v, " \t\n");
    }
    mask_span(msg, len, v, n);
  }
}

/* Control characters of msg escaped as mly_esc_str does, line by line
 * (a newline is kept): a server's or libpq's words never reach a
 * terminal raw.  Cut to len. */
static void escape_lines(char *msg, size_t len) {
  size_t n = strlen(msg);
  if (!mly_esc_needed(msg, n)) return;
  size_t cap = MLY_ESC_MAX(n) + 1, o = 0;
  char *t = malloc(cap);
  if (t == NULL) { /* no room to escape: blank them */
    for (unsigned char *p = (unsigned char *)msg; *p; p++)
      if ((*p < 0x20 && *p != '\n' && *p != '\t') || *p >= 0x7f) *p = '?';
    return;
  }
  for (const char *seg = msg; o + 1 < cap;) {
    size_t sl = strcspn(seg, "\n");
    o += mly_esc_str(seg, sl, t + o, cap - o);
    if (seg[sl] != '\n' || o + 1 >= cap) break;
    t[o++] = '\n';
    t[o] = '\0';
    seg += sl + 1;
  }
  snprintf(msg, len, "%s", t);
  free(t);
}

void pg_mask_password(const char *conninfo, char *msg, size_t len) {
  if (msg == NULL || len == 0) return;
  PQconninfoOption *opts = conninfo ? PQconninfoParse(conninfo, NULL) : NULL;
  if (opts == NULL && conninfo) mask_unparsed(conninfo, msg, len);
  for (PQconninfoOption *p = opts; p && p->keyword; p++) {
    if (p->val == NULL || strlen(p->val) < 1 ||
        (strcmp(p->keyword, "password") && strcmp(p->keyword, "sslpassword")))
      continue;
    mask_span(msg, len, p->val, strlen(p->val));
  }
  PQconninfoFree(opts);
  escape_lines(msg, len);
}
