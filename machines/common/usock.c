/*
 * usock.c - a listening unix socket that no other user can swap
 * (usock.h says why and how).
 */
#include "usock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "mealy.h"

/* A socket file left by a server that died is removed; one that a live
 * server answers on is not taken over, and *who says whose it is. */
static int claim_path(const char *path, struct ucred *who) {
  struct stat st;
  if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : -errno;
  if (!S_ISSOCK(st.st_mode)) return MLY_EEXIST;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  bool live = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  socklen_t len = sizeof *who;
  if (live && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, who, &len) < 0)
    who->pid = 0, who->uid = (uid_t)-1;
  if (fd >= 0) close(fd);
  if (live) return MLY_EBUSY;
  return unlink(path) < 0 ? -errno : 0;
}

static int hold_dir(usock *u, const char *path, char *err, size_t errlen) {
  char dir[4096];
  int rc = mly_path_check(path, (uid_t)-1, dir, sizeof dir, err, errlen);
  if (rc < 0) return rc; /* err says what and where */
  u->dirfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (u->dirfd < 0) {
    rc = -errno;
    snprintf(err, errlen, "%s: the socket's directory %s: %s", path, dir,
             mly_strerror(rc));
    return rc;
  }
  const char *slash = strrchr(path, '/');
  snprintf(u->base, sizeof u->base, "%s", slash ? slash + 1 : path);
  return 0;
}

static int bind_new(usock *u, unsigned mode, int *out) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  memcpy(a.sun_path, u->path, strlen(u->path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  mode_t old = umask(~(mode_t)(mode ? mode : 0600) & 0777);
  int rc = bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ? -errno : 0;
  umask(old);
  struct stat st;
  if (rc == 0 && fstatat(u->dirfd, u->base, &st, AT_SYMLINK_NOFOLLOW) < 0)
    rc = -errno;
  if (rc < 0) {
    close(fd);
    return rc;
  }
  u->dev = st.st_dev;
  u->ino = st.st_ino;
  *out = fd;
  return 0;
}

int usock_bind(usock *u, const char *path, unsigned mode, int *fd,
               char *err, size_t errlen) {
  memset(u, 0, sizeof *u);
  u->dirfd = -1;
  if (strlen(path) >= sizeof u->path) {
    snprintf(err, errlen, "%s: socket path too long (at most 107 bytes)", path);
    return MLY_ENAMETOOLONG;
  }
  snprintf(u->path, sizeof u->path, "%s", path);
  int rc = hold_dir(u, path, err, errlen);
  struct ucred who = {0};
  if (rc == 0) rc = claim_path(path, &who);
  if (rc == 0) rc = bind_new(u, mode, fd);
  if (rc == 0) return 0;
  if (rc == MLY_EBUSY)
    snprintf(err, errlen, "%s: another server is listening there (uid %d, "
             "pid %d)%s; stop it, or choose another socket path", path,
             (int)who.uid, (int)who.pid, who.uid == 0 || who.uid == geteuid()
             ? ": another server of ours" : ", not a user we trust");
  else if (rc == MLY_EEXIST)
    snprintf(err, errlen, "%s: exists and is not a socket", path);
  else if (u->dirfd >= 0)
    snprintf(err, errlen, "%s: cannot listen: %s", path, mly_strerror(rc));
  if (u->dirfd >= 0) close(u->dirfd);
  u->dirfd = -1;
  return rc;
}

bool usock_remove(usock *u) {
  if (u->dirfd < 0) return false;
  struct stat st;
  bool ours = fstatat(u->dirfd, u->base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
              S_ISSOCK(st.st_mode) && st.st_dev == u->dev &&
              st.st_ino == u->ino;
  if (ours) unlinkat(u->dirfd, u->base, 0);
  close(u->dirfd);
  u->dirfd = -1;
  return ours;
}
