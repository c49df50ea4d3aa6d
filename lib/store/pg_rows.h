/*
 * pg_rows.h - rows of the PostgreSQL store read back, checked (internal;
 * pg_rows.c).  Each check answers 0, MLY_ENOMEM, or MLY_EBADMSG with a
 * sentence in why naming the row (table and id), what is wrong and the
 * way out.
 */
#ifndef MLY_STORE_PG_ROWS_H
#define MLY_STORE_PG_ROWS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A bigint column of row i, binary (8 bytes) or text (a whole decimal
 * number) as the result was asked for: false when NULL or not that. */
bool pg_col_i64(const PGresult *r, int i, int col, int64_t *v);

/* A mealy.instances row as an INST record would hold it: state (fields
 * 0..9 of an S record of this id, in a slot a runtime can hold),
 * context (ctx NULL: none; else msgpack that decodes), name (NULL:
 * none). */
int pg_inst_check(uint64_t id, const void *state, size_t slen,
                  const void *ctx, size_t clen, const char *name,
                  size_t nlen, char *why, size_t n);
/* A mealy.events row: body is an E record of eid for target. */
int pg_event_check(uint64_t eid, uint64_t target, const void *body,
                   size_t len, char *why, size_t n);
/* A mealy.tombstones row i of (name, id, status, ended_ms). */
int pg_tomb_check(const PGresult *r, int i, char *why, size_t n);

#endif
