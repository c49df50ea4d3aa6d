/*
 * pg_live.c - the live instances of a PostgreSQL store, for tools
 * (mly_store_pg_live: what mly_journal_live is for a state directory).
 *
 * One READ ONLY transaction at REPEATABLE READ on a private blocking
 * connection: every row read belongs to one moment of the database,
 * nothing is locked that a running process waits for (plain reads take
 * no row locks; lock_timeout bounds the wait behind a migration).  No
 * node is registered, nothing is owned or changed: processes running on
 * the database go on as if no one looked.  Rows come through a cursor,
 * LIVE_FETCH at a time, so that memory stays bounded by one fetch.
 *
 * Each row of mealy.instances (owned by a process, or, with the task
 * pool, by none) is handed over as a mly_live: its state bytea holds the
 * S record's fields (parsed with jreplay.c's rp_parse_state, as the
 * store's recovery reads them), its context the msgpack value.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../jreplay.h"
#include "pg_conn.h"
#include "pg_rows.h"
#include "pg_schema.h"

#define LIVE_FETCH 256

static int fail(char *err, size_t errlen, const char *conninfo,
                const char *what, PGconn *c, PGresult *r, int rc) {
  const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
  size_t n = strcspn(m, "\n");
  jr_errf(err, errlen, rc, "postgresql store: %s: %.*s", what, (int)n, m);
  if (err && errlen) pg_mask_password(conninfo, err, errlen);
  if (r) PQclear(r);
  return rc;
}

static bool ok(PGresult *r) {
  ExecStatusType t = PQresultStatus(r);
  return t == PGRES_TUPLES_OK || t == PGRES_COMMAND_OK;
}

/* One row (id, parent, state, context, name; binary) to cb. */
static int one(const PGresult *r, int i,
               int (*cb)(const mly_live *, void *), void *arg, char *err,
               size_t errlen) {
  int64_t sid, parent;
  if (!pg_col_i64(r, i, 0, &sid) || !pg_col_i64(r, i, 1, &parent))
    return jr_errf(err, errlen, MLY_EBADMSG, "postgresql store: a row of "
                   "mealy.instances whose id or parent is not a number");
  mly_id id = (mly_id)sid;
  char why[512];
  int crc = pg_inst_check(id, PQgetvalue(r, i, 2),
                          (size_t)PQgetlength(r, i, 2),
                          PQgetisnull(r, i, 3) ? NULL : PQgetvalue(r, i, 3),
                          (size_t)PQgetlength(r, i, 3),
                          PQgetisnull(r, i, 4) ? NULL : PQgetvalue(r, i, 4),
                          (size_t)PQgetlength(r, i, 4), why, sizeof why);
  if (crc < 0) return jr_errf(err, errlen, crc, "postgresql store: %s", why);
  jbuf b = {0};
  jb_array(&b, 12);
  jb_raw(&b, PQgetvalue(r, i, 2), (size_t)PQgetlength(r, i, 2));
  jb_nil(&b);
  jb_nil(&b);
  if (b.oom) {
    jb_free(&b);
    return jr_errf(err, errlen, MLY_ENOMEM, "out of memory");
  }
  jcur cur = {b.p, b.p + b.n, false};
  rp_state st;
  if (!rp_parse_state(&cur, &st)) {
    jb_free(&b);
    return jr_errf(err, errlen, MLY_EBADMSG, "instance %llu: its state does "
                   "not parse", (unsigned long long)id);
  }
  char type[MLY_NAME_MAX + 1], point[MLY_NAME_MAX + 1], name[256];
  snprintf(type, sizeof type, "%.*s", (int)st.tlen, st.type);
  snprintf(point, sizeof point, "%.*s", (int)st.plen, st.point);
  bool named = !PQgetisnull(r, i, 4);
  snprintf(name, sizeof name, "%.*s", named ? PQgetlength(r, i, 4) : 0,
           named ? PQgetvalue(r, i, 4) : "");
  mly_value *ctx = NULL;
  int rc = 0;
  if (!PQgetisnull(r, i, 3) && PQgetlength(r, i, 3) > 0 &&
      (rc = mly_value_decode(PQgetvalue(r, i, 3),
                             (size_t)PQgetlength(r, i, 3), &ctx)) < 0) {
    jb_free(&b);
    return jr_errf(err, errlen, rc, "instance %llu: its context does not "
                   "decode", (unsigned long long)id);
  }
  mly_live l = {.id = id, .parent = (mly_id)parent,
                .type = type, .point = point, .name = named ? name : NULL,
                .data = st.data, .data_len = st.dlen, .context = ctx};
  rc = cb(&l, arg);
  mly_value_free(ctx);
  jb_free(&b);
  return rc;
}

/* A private blocking connection in one READ ONLY transaction on a
 * schema this code reads: *out, or an error (err says which). */
static int begin_read(const char *conninfo, PGconn **out, char *err,
                      size_t errlen) {
  PGconn *c = mly_pg_connect_blocking(conninfo);
  if (c == NULL) return jr_errf(err, errlen, MLY_ENOMEM, "out of memory");
  int rc;
  if (PQstatus(c) != CONNECTION_OK) {
    rc = fail(err, errlen, conninfo, "cannot connect", c, NULL, MLY_EIO);
    PQfinish(c);
    return rc;
  }
  PGresult *r = PQexec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  if (!ok(r)) {
    rc = fail(err, errlen, conninfo, "BEGIN", c, r, MLY_EIO);
    goto out;
  }
  PQclear(r);
  PQclear(PQexec(c, "SET LOCAL lock_timeout = 5000"));
  /* the schema: there, and one this code reads */
  r = PQexec(c, "SELECT to_regclass('mealy.schema_version') IS NOT NULL,"
                " to_regnamespace('mealy') IS NOT NULL");
  if (!ok(r) || PQntuples(r) != 1) {
    rc = fail(err, errlen, conninfo, "reading the schema's version", c, r,
              MLY_EIO);
    goto out;
  }
  bool there = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
  bool schema = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
  PQclear(r);
  if (!there && schema) {
    rc = jr_errf(err, errlen, MLY_EBADMSG, "postgresql store: %s",
                 PG_SCHEMA_NO_VERSION);
    goto out;
  }
  int v = 0;
  if (there) {
    r = PQexec(c, "SELECT version FROM mealy.schema_version");
    if (!ok(r)) {
      rc = fail(err, errlen, conninfo, "reading the schema's version", c, r,
                MLY_EIO);
      goto out;
    }
    char why[400];
    int n = PQntuples(r);
    rc = pg_schema_version_check(n, n == 1 && PQgetisnull(r, 0, 0),
                                 n == 1 ? PQgetvalue(r, 0, 0) : "", &v, why,
                                 sizeof why);
    PQclear(r);
    if (rc < 0) {
      rc = jr_errf(err, errlen, rc, "postgresql store: %s", why);
      goto out;
    }
  }
  if (v == 0 || v > MLY_STORE_PG_VERSION || v < 2) {
    rc = jr_errf(err, errlen, v == 0 || v < 2 ? MLY_ENOENT : MLY_ERANGE,
                 v == 0 ? "postgresql store: the database has no mealy "
                          "schema (mealy store init makes it)"
                 : v < 2 ? "postgresql store: the database's mealy schema "
                           "is version 1, which held no instances: run "
                           "mealy store migrate"
                         : "postgresql store: the database's mealy schema "
                           "is newer than this mealy's: use a newer mealy");
    goto out;
  }
  *out = c;
  return 0;
out:
  PQfinish(c); /* the transaction is rolled back: nothing was changed */
  return rc;
}

/* Every row of sql (binary), LIVE_FETCH at a time, to row(); a non-zero
 * answer stops the walk and is returned. */
static int walk(PGconn *c, const char *conninfo, const char *what,
                const char *sql,
                int (*row)(const PGresult *, int, void *), void *arg,
                char *err, size_t errlen) {
  char q[512];
  snprintf(q, sizeof q, "DECLARE w BINARY NO SCROLL CURSOR FOR %s", sql);
  PGresult *r = PQexec(c, q);
  if (!ok(r)) return fail(err, errlen, conninfo, what, c, r, MLY_EIO);
  PQclear(r);
  int rc = 0;
  for (;;) {
    char fetch[32];
    snprintf(fetch, sizeof fetch, "FETCH %d FROM w", LIVE_FETCH);
    r = PQexec(c, fetch);
    if (!ok(r)) return fail(err, errlen, conninfo, what, c, r, MLY_EIO);
    int n = PQntuples(r);
    for (int i = 0; i < n && rc == 0; i++) rc = row(r, i, arg);
    PQclear(r);
    if (rc != 0 || n < LIVE_FETCH) break;
  }
  PQclear(PQexec(c, "CLOSE w"));
  return rc;
}

typedef struct live_walk {
  int (*cb)(const mly_live *, void *);
  void *arg;
  char *err;
  size_t errlen;
} live_walk;

static int live_row(const PGresult *r, int i, void *p) {
  live_walk *w = p;
  return one(r, i, w->cb, w->arg, w->err, w->errlen);
}

int mly_store_pg_live(const char *conninfo,
                      int (*cb)(const mly_live *, void *), void *arg,
                      char *err, size_t errlen) {
  if (conninfo == NULL || cb == NULL) return MLY_EINVAL;
  PGconn *c = NULL;
  int rc = begin_read(conninfo, &c, err, errlen);
  if (rc < 0) return rc;
  live_walk w = {cb, arg, err, errlen};
  rc = walk(c, conninfo, "reading instances",
            "SELECT id, parent, state, context, name FROM mealy.instances"
            " ORDER BY id",
            live_row, &w, err, errlen);
  PQfinish(c); /* the transaction is rolled back: nothing was changed */
  return rc;
}

/* ---- the rows a process could not restore ---- */

typedef struct bad_walk {
  int (*cb)(const char *, void *);
  void *arg;
  uint64_t n;
} bad_walk;

static int said(bad_walk *w, int rc, const char *why) {
  if (rc == MLY_ENOMEM) return rc;
  if (rc == 0) return 0;
  w->n++;
  return w->cb(why, w->arg);
}

static int bad_inst(const PGresult *r, int i, void *p) {
  int64_t id, x;
  char why[600];
  if (!pg_col_i64(r, i, 0, &id)) return 0; /* a primary key: never */
  if (!pg_col_i64(r, i, 1, &x) || !pg_col_i64(r, i, 2, &x)) {
    snprintf(why, sizeof why, "mealy.instances id %lld: its step or parent "
             "is not a number", (long long)id);
    return said(p, MLY_EBADMSG, why);
  }
  int rc = pg_inst_check((uint64_t)id, PQgetvalue(r, i, 3),
                         (size_t)PQgetlength(r, i, 3),
                         PQgetisnull(r, i, 4) ? NULL : PQgetvalue(r, i, 4),
                         (size_t)PQgetlength(r, i, 4),
                         PQgetisnull(r, i, 5) ? NULL : PQgetvalue(r, i, 5),
                         (size_t)PQgetlength(r, i, 5), why, sizeof why);
  return said(p, rc, why);
}

static int bad_event(const PGresult *r, int i, void *p) {
  int64_t eid, target;
  char why[600];
  if (!pg_col_i64(r, i, 0, &eid)) return 0; /* a primary key: never */
  if (!pg_col_i64(r, i, 1, &target)) {
    snprintf(why, sizeof why, "mealy.events eid %lld: its target is not a "
             "number", (long long)eid);
    return said(p, MLY_EBADMSG, why);
  }
  int rc = pg_event_check((uint64_t)eid, (uint64_t)target,
                          PQgetvalue(r, i, 2), (size_t)PQgetlength(r, i, 2),
                          why, sizeof why);
  return said(p, rc, why);
}

static int bad_tomb(const PGresult *r, int i, void *p) {
  char why[600];
  return said(p, pg_tomb_check(r, i, why, sizeof why), why);
}

int mly_store_pg_bad(const char *conninfo,
                     int (*cb)(const char *row, void *arg), void *arg,
                     uint64_t *nbad, char *err, size_t errlen) {
  if (conninfo == NULL || cb == NULL) return MLY_EINVAL;
  PGconn *c = NULL;
  int rc = begin_read(conninfo, &c, err, errlen);
  if (rc < 0) return rc;
  bad_walk w = {cb, arg, 0};
  rc = walk(c, conninfo, "reading instances",
            "SELECT id, step, parent, state, context, name FROM"
            " mealy.instances ORDER BY id",
            bad_inst, &w, err, errlen);
  if (rc == 0)
    rc = walk(c, conninfo, "reading events",
              "SELECT eid, target, body FROM mealy.events ORDER BY eid",
              bad_event, &w, err, errlen);
  if (rc == 0)
    rc = walk(c, conninfo, "reading tombstones",
              "SELECT name, id, status, ended_ms FROM mealy.tombstones"
              " ORDER BY name",
              bad_tomb, &w, err, errlen);
  if (rc == MLY_ENOMEM) jr_errf(err, errlen, rc, "out of memory");
  PQfinish(c);
  if (nbad) *nbad = w.n;
  return rc;
}
