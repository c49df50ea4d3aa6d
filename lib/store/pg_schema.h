/*
 * pg_schema.h - the PostgreSQL store's schema engine (internal): what
 * mly_store_pg_init/_migrate run, open to a test that gives its own list
 * of migrations (a version 2 that works, one that fails half-way).
 */
#ifndef MLY_STORE_PG_SCHEMA_H
#define MLY_STORE_PG_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

/* The schema of version `code` is migs[0..code-1] applied in order, each
 * a NULL-ended list of single statements.  create: init (an empty
 * database gets every migration; an older schema is refused with
 * MLY_EEXIST); otherwise migrate (no schema: MLY_ENOENT).  One
 * transaction under an advisory lock; a newer schema: MLY_ERANGE.  *from
 * (may be NULL): the version found.  Errors as mly_store_pg_init. */
int mly_pg_schema_apply(const char *conninfo, const char *const *const *migs,
                        int code, bool create, int *from, char *msg,
                        size_t msgsz);

/* The one row of mealy.schema_version (ntuples rows were read; its
 * version column as text, or null), checked: a version from 1 up in
 * *version and 0; otherwise MLY_EBADMSG and *version 0, with why saying
 * what is wrong and PG_SCHEMA_DAMAGED (empty, two rows, NULL, not a
 * number, 0 or less).  Every reader of the version calls it. */
int pg_schema_version_check(int ntuples, bool null, const char *text,
                            int *version, char *why, size_t whylen);
/* The one advice for a damaged schema_version, wherever it is read. */
#define PG_SCHEMA_DAMAGED                                                  \
  "the schema is damaged: restore the database from a backup, or write "  \
  "the version its tables are at (DELETE FROM mealy.schema_version; "      \
  "INSERT INTO mealy.schema_version (version) VALUES (N)) and run "        \
  "`mealy store migrate`"

/* Schema mealy without its version table: what to say. */
#define PG_SCHEMA_NO_VERSION                                               \
  "schema mealy is there without mealy.schema_version: the schema is "    \
  "damaged: restore the database from a backup, or, if it holds nothing " \
  "to keep, DROP SCHEMA mealy CASCADE and run `mealy store init`"

/* The real chain: version N is mly_pg_migrations[0..N-1]. */
extern const char *const *const mly_pg_migrations[];

#endif
