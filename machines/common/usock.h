/*
 * usock.h - a listening unix socket that no other user can swap.
 *
 * mealy runs as root: a socket path in a directory another user can
 * write could be replaced (or what clients take for it) between our
 * calls, or after.  usock_bind checks every directory on the path
 * (mly_path_check), holds the socket's directory open, takes over a
 * socket file only when nothing answers on it (a server that died),
 * and binds the socket born with its mode (no chmod by path).
 * usock_remove removes the file from the held directory, and only if it
 * is still the socket we bound.  Only mealy.h is used (DESIGN D9).
 */
#ifndef MLY_USOCK_H
#define MLY_USOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct usock {
  char path[108];
  int dirfd;      /* the socket's directory, held since bind; -1: none */
  char base[108]; /* the socket's name in it */
  dev_t dev;      /* the socket file we bound */
  ino_t ino;
} usock;

/* A bound (not yet listening) SOCK_STREAM socket, non-blocking and
 * close-on-exec, in *fd; mode 0: 0600.  Errors: negative MLY_E* with a
 * sentence in err naming the path (MLY_EBUSY: another server listens
 * there; MLY_EEXIST: not a socket; MLY_ENAMETOOLONG). */
int usock_bind(usock *u, const char *path, unsigned mode, int *fd,
               char *err, size_t errlen);
/* Removes the file if it is still ours (false: left in place) and
 * closes the directory. */
bool usock_remove(usock *u);

#endif
