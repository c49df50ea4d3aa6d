/*
 * error.c - the sentence for each MLY_E* code.
 *
 * Codes are negative errno values (as libuv's are), so an error that comes
 * from the system passes through unchanged.  The text is fixed here rather
 * than taken from strerror(3) so that it never allocates and reads the same
 * on every libc.
 */
#include "mealy.h"

#include <errno.h>
#include <string.h>

const char *mly_strerror(int err) {
  switch (err) {
  case 0: return "success";
  case MLY_EPERM: return "operation not permitted";
  case MLY_ENOENT: return "no such entry";
  case MLY_ESRCH: return "no such instance, or it has ended";
  case MLY_EIO: return "input/output error";
  case MLY_ENOMEM: return "out of memory";
  case MLY_EBUSY: return "resource busy";
  case MLY_EEXIST: return "already exists";
  case MLY_EINVAL: return "invalid argument";
  case MLY_ENOSPC: return "no space left on device";
  case MLY_ERANGE: return "value out of range";
  case MLY_ENAMETOOLONG: return "name too long";
  case MLY_ENOSYS: return "not supported";
  case MLY_EBADMSG: return "malformed data";
  case MLY_ESHUTDOWN: return "runtime is shutting down";
  case MLY_ETIMEDOUT: return "timed out";
  case MLY_ECANCELED: return "ended by force";
  case -EACCES: return "permission denied";
  case MLY_EAGAIN: return "not yet complete; try again";
  case MLY_EUNKNOWN: return "outcome unknown (the journal stopped while the "
                            "record was being made durable)";
  case MLY_ELOST: return "what the wait waited for did not survive the "
                         "restart (it was not durable)";
  case -ECHILD: return "no child process";
  case -EPIPE: return "broken pipe (the other end closed)";
  case -ECONNREFUSED: return "connection refused (nothing listens there)";
  case -ECONNRESET: return "connection reset by peer";
  /* the libc's own sentences start with a capital: these read as ours */
  case -ENOTDIR: return "not a directory";
  case -EISDIR: return "is a directory";
  case -ELOOP: return "too many levels of symbolic links";
  case -ENXIO: return "no such device or address";
  case -EROFS: return "read-only file system";
  case -EXDEV: return "invalid cross-device link";
  case -ENOTEMPTY: return "directory not empty";
  case -EMFILE: return "too many open files";
  case -ENFILE: return "too many open files in system";
  case -EADDRINUSE: return "address already in use";
  case -ENOTSOCK: return "not a socket";
  case -ETXTBSY: return "text file busy";
  case -EFBIG: return "file too large";
  case -EDQUOT: return "disk quota exceeded";
  default: {
    const char *d = err < 0 && err > -4096 ? strerrordesc_np(-err) : NULL;
    return d ? d : "unknown error";
  }
  }
}
