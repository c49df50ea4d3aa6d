/*
 * pg_rows.c - a row of the PostgreSQL store read back, checked before
 * it becomes a record the runtime restores (pg_store.c: recovery, a
 * claim at run time, events of other processes; pg_live.c).
 *
 * Every value read from the database is untrusted: a row changed by
 * hand, by a broken migration or by a disk gives a sentence that names
 * it (table and id) and says what is wrong and the way out, never a
 * crash and never "offset 0: a record whose fields ...".  A bigint
 * column is taken only when it is not NULL and is 8 bytes (binary
 * results) or a whole decimal number (text results); a state must be an
 * S record of this very id in a slot a runtime can hold, a context must
 * decode, a name must be a name; an event body must be an E record of
 * its eid for its target.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../jreplay.h"
#include "pg_rows.h"

bool pg_col_i64(const PGresult *r, int i, int col, int64_t *v) {
  if (col >= PQnfields(r) || PQgetisnull(r, i, col)) return false;
  const char *p = PQgetvalue(r, i, col);
  if (PQfformat(r, col) == 1) {
    if (PQgetlength(r, i, col) != 8) return false;
    uint64_t u = 0;
    for (int k = 0; k < 8; k++) u = u << 8 | (unsigned char)p[k];
    *v = (int64_t)u;
    return true;
  }
  char *end;
  errno = 0;
  long long x = strtoll(p, &end, 10);
  if (errno || end == p || *end) return false;
  *v = x;
  return true;
}

static int bad(char *why, size_t n, const char *table, const char *key,
               uint64_t id, const char *what) {
  if (why && n)
    snprintf(why, n,
             "%s %s %" PRIu64 ": %s; the row cannot be restored: fix it or "
             "restore it from a backup, or delete it (DELETE FROM %s WHERE "
             "%s = %" PRIu64 "; what it held is lost): `mealy store stat "
             "--bad` lists every such row",
             table, key, id, what, table, key, id);
  return MLY_EBADMSG;
}

int pg_inst_check(uint64_t id, const void *state, size_t slen,
                  const void *ctx, size_t clen, const char *name,
                  size_t nlen, char *why, size_t n) {
  const char *T = "mealy.instances", *K = "id";
  if ((uint32_t)id >= RP_MAX_SLOT || id >> 32 == 0)
    return bad(why, n, T, K, id, "the id is not one a runtime makes");
  jbuf b = {0};
  jb_array(&b, 12);
  jb_raw(&b, state, slen);
  if (ctx) jb_bin(&b, ctx, clen);
  else jb_nil(&b);
  if (name) jb_str(&b, name, nlen);
  else jb_nil(&b);
  if (b.oom) {
    jb_free(&b);
    return MLY_ENOMEM;
  }
  jcur c = {b.p, b.p + b.n, false};
  rp_state s;
  int rc = 0;
  if (!rp_parse_state(&c, &s) || c.p != c.end)
    rc = bad(why, n, T, K, id, name && name_check(name, nlen) < 0
                                   ? "its name is not a name"
                                   : "its state does not parse (not the "
                                     "fields of an S record)");
  else if (s.id != id)
    rc = bad(why, n, T, K, id, "its state is that of another id");
  else if ((uint32_t)s.parent >= RP_MAX_SLOT)
    rc = bad(why, n, T, K, id, "its state names a parent no runtime makes");
  jb_free(&b);
  mly_value *v = NULL;
  if (rc == 0 && ctx && clen > 0) {
    int d = mly_value_decode(ctx, clen, &v);
    if (d == MLY_ENOMEM) rc = d;
    else if (d < 0) rc = bad(why, n, T, K, id, "its context does not decode");
    mly_value_free(v);
  }
  return rc;
}

int pg_event_check(uint64_t eid, uint64_t target, const void *body,
                   size_t len, char *why, size_t n) {
  const char *T = "mealy.events", *K = "eid";
  jcur c = {body, (const unsigned char *)body + len, false};
  rp_event e;
  if (!rp_parse_event(&c, &e) || c.p != c.end)
    return bad(why, n, T, K, eid, "its body does not parse (not an E "
               "record)");
  if (e.eid != eid) return bad(why, n, T, K, eid, "its body is another event's");
  if (e.to != target)
    return bad(why, n, T, K, eid, "its body is for another target");
  return 0;
}

int pg_tomb_check(const PGresult *r, int i, char *why, size_t n) {
  int64_t id, status, ended;
  const char *name = PQgetvalue(r, i, 0);
  size_t nlen = (size_t)PQgetlength(r, i, 0);
  bool num = pg_col_i64(r, i, 1, &id) && pg_col_i64(r, i, 2, &status) &&
             pg_col_i64(r, i, 3, &ended);
  if (num && !PQgetisnull(r, i, 0) && name_check(name, nlen) == 0) return 0;
  char shown[MLY_ESC_MAX(64) + 1];
  mly_esc_str(name, nlen < 64 ? nlen : 64, shown, sizeof shown);
  if (why && n)
    snprintf(why, n,
             "mealy.names name '%s': %s; fix the row or delete it (DELETE "
             "FROM mealy.names WHERE name = '...'; the name is free again): "
             "`mealy store stat --bad` lists every such row",
             shown, num ? "not a name" : "its id, status or ended_ms is not a "
             "number");
  return MLY_EBADMSG;
}
