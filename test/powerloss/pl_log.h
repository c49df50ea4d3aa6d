/*
 * pl_log.h - the operation log of the power-loss simulator: what the
 * interposer (pl_interpose.c) writes and the image builder (pl_model.c)
 * reads.
 *
 * A log is a run of records, each a fixed header followed by `plen` bytes
 * of path, `p2len` bytes of a second path and `len` bytes of data (only
 * for PL_WRITE and PL_ACK).  Paths are relative to the target directory
 * (the root), normalized, "" for the root itself.  Only calls that
 * succeeded and that touch something under the root are logged, in the
 * order they completed (one lock serializes them), and the acknowledgement
 * lines the workload writes on its report fd are logged in the same order,
 * so a crash "after record k" knows what had been acknowledged by then.
 *
 * The checker writes the first records itself (PL_PRE for entries that
 * exist before the workload starts: durable by assumption) and a PL_MARK
 * before each run of the workload; the interposer appends the rest.  Integers are in host byte order: a log is read on
 * the machine that wrote it.
 */
#ifndef PL_LOG_H
#define PL_LOG_H

#include <stdint.h>

#define PL_MAGIC 0x504c4f47u /* "PLOG" */

enum pl_op {
  PL_PRE = 1,    /* path: a directory that exists, durable, before the run */
  PL_OPEN,       /* path, fd, flags (open flags), off: 1 if a directory */
  PL_CLOSE,      /* fd */
  PL_DUP,        /* fd -> fd2 */
  PL_WRITE,      /* fd, off, len bytes of data (the bytes written) */
  PL_TRUNC,      /* fd, off: the new size */
  PL_TRUNC_PATH, /* path, off: the new size */
  PL_EXTEND,     /* fd, off: the size grows to at least this (fallocate) */
  PL_FSYNC,      /* fd: data and metadata of that file or directory */
  PL_FDATASYNC,  /* fd */
  PL_SYNC_RANGE, /* fd: sync_file_range, which makes nothing durable */
  PL_SYNC_ALL,   /* sync(), syncfs(): everything */
  PL_MKDIR,      /* path */
  PL_UNLINK,     /* path */
  PL_RMDIR,      /* path */
  PL_RENAME,     /* path -> path2 */
  PL_ACK,        /* len bytes the workload wrote on its report fd */
  PL_UNSUPPORTED, /* path: the name of a call the model does not know */
  PL_MARK        /* the checker: a run of the workload on the state
                    directory path (relative to the root) begins here */
};

typedef struct pl_rec {
  uint32_t magic;
  uint32_t op;
  int32_t fd, fd2;
  uint32_t flags;
  uint32_t plen, p2len;
  uint32_t pad;
  uint64_t off;
  uint64_t len;
} pl_rec;

#define PL_PATH_MAX 4096

#endif /* PL_LOG_H */
