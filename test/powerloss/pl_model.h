/*
 * pl_model.h - the image builder of the power-loss simulator: it replays
 * an operation log (pl_log.h) into model operations on objects (files
 * and directories) and builds, for a crash after the first k of them, the
 * directory a power loss could leave behind.
 *
 * The model (the one ALICE and CrashMonkey use): a write, truncate or
 * extension of a file is durable once that file is fsync'ed or
 * fdatasync'ed after it; a directory entry (create, mkdir, unlink, rmdir,
 * rename) once its directory is fsync'ed after it; sync() and syncfs()
 * make everything durable; sync_file_range makes nothing durable.  An
 * operation that is not durable at the crash may or may not have reached
 * the disk, and the image classes choose which did:
 *
 *   PLM_SYNCED   only what is durable;
 *   PLM_PREFIX   what is durable, then the first p of the others in the
 *                order they were made, the next one possibly cut short at
 *                any byte (a torn write);
 *   PLM_REORDER  what is durable, then any subset of the others, writes
 *                split at 512-byte sectors and each sector kept or lost
 *                on its own: later sectors can persist without earlier
 *                ones, whose bytes are then old or zero (a size that grew
 *                with no data, in one case of four per file); in half of
 *                the images the subset is "all but one sector or op" (one
 *                hole), the shape a disk's write cache leaves most often.
 *
 * The same (k, class, seed) on the same log always builds the same image.
 */
#ifndef PL_MODEL_H
#define PL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pl_model pl_model;

typedef enum plm_class { PLM_SYNCED = 0, PLM_PREFIX, PLM_REORDER } plm_class;
#define PLM_NCLASSES 3
const char *plm_class_name(plm_class c);
int plm_class_parse(const char *s, plm_class *out);

/* Model operation kinds. */
enum { PLM_ADD = 1, PLM_DEL, PLM_RENAME, PLM_WRITE, PLM_TRUNC, PLM_EXTEND,
       PLM_SYNC, PLM_SYNC_ALL, PLM_ACK, PLM_MARK };

/* Reads and replays a log; 0 or -1 with a message in err (a log the
 * model cannot express, or one that does not explain itself). */
int plm_load(const char *log, pl_model **out, char *err, size_t errlen);
void plm_free(pl_model *m);

size_t plm_nops(const pl_model *m);
int plm_kind(const pl_model *m, size_t i);
/* The bytes of an acknowledgement (PLM_ACK), NUL-terminated. */
const char *plm_ack(const pl_model *m, size_t i);
/* The state directory the log's runs used (relative to the root; from
 * its PL_MARK records, "state" without them). */
const char *plm_state(const pl_model *m);
/* Is operation i a sync of a regular file (not a directory)? */
bool plm_file_sync(const pl_model *m, size_t i);
/* How many operations before k are not durable at k. */
size_t plm_unsynced(const pl_model *m, size_t k);
/* Is one of them a write over more than one sector (so that a reorder
 * image can differ from every prefix)? */
bool plm_reorderable(const pl_model *m, size_t k);

/* Builds the image of a crash after the first k operations into outdir
 * (an existing, empty directory that stands for the root).  desc gets a
 * line saying what was kept.  0, or -1 with a message in err. */
int plm_build(const pl_model *m, size_t k, plm_class cls, uint64_t seed,
              const char *outdir, char *desc, size_t desclen, char *err,
              size_t errlen);

/* One line describing operation i (for `pl_check dump`). */
void plm_describe(const pl_model *m, size_t i, char *out, size_t len);

/* Does the directory root hold what the log says (every operation
 * applied)?  The test of the interposer: a call it missed shows here.
 * 0, or -1 with the first difference in err. */
int plm_compare(const pl_model *m, const char *root, char *err, size_t errlen);

#endif /* PL_MODEL_H */
