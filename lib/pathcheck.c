/*
 * pathcheck.c - whether a path's directories can change under us.
 *
 * A root daemon that uses a path by name (a socket clients connect to, a
 * log file it opens again at each rotation, a state directory) is only
 * as safe as the directories on the way: whoever can write one of them
 * can rename it away and put their own in its place, or replace a
 * directory with a symbolic link.  So, as sshd's StrictModes does for
 * ~/.ssh, every directory from / down to the path's own directory must be
 * owned by root, by us (or one more uid the caller trusts: a program's
 * own user, when what follows is done as that user), and writable by
 * nobody else unless sticky.  Symbolic links on the way are resolved by
 * hand, each one checked the same way, so what is checked is what the
 * kernel will walk.  Checking by name is enough here: once every
 * directory passes, nobody untrusted can change any of them afterwards.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINKS_MAX 40

static bool trusted_uid(uid_t u, uid_t also) {
  return u == 0 || u == geteuid() || (also != (uid_t)-1 && u == also);
}

static int refuse(const char *path, const char *what, const char *why,
                  const struct stat *st, char *err, size_t errlen) {
  snprintf(err, errlen, "%s: %s %s (owner uid %u, mode %04o): another user "
           "could swap what is under it; use a path whose every directory "
           "only root or uid %u can write", path, what, why,
           (unsigned)st->st_uid, (unsigned)(st->st_mode & 07777),
           (unsigned)geteuid());
  return MLY_EPERM;
}

static int check_dir(const char *path, const char *dir, const struct stat *st,
                     uid_t also, char *err, size_t errlen) {
  if (!trusted_uid(st->st_uid, also))
    return refuse(path, dir, "belongs to another user", st, err, errlen);
  if ((st->st_mode & 022) && !(st->st_mode & S_ISVTX))
    return refuse(path, dir, (st->st_mode & 002)
                  ? "is writable by others without the sticky bit"
                  : "is writable by its group without the sticky bit",
                  st, err, errlen);
  return 0;
}

/* cur (a resolved directory, "/" or "/a/b") minus its last component */
static void up(char *cur) {
  char *s = strrchr(cur, '/');
  if (s == cur) cur[1] = '\0';
  else if (s) *s = '\0';
}

static int walk(const char *path, uid_t also, char *dir, size_t dirlen,
                char *err, size_t errlen) {
  char cur[PATH_MAX], rest[2 * PATH_MAX], tmp[2 * PATH_MAX], link[PATH_MAX];
  struct stat st;
  int links = 0;
  if (path == NULL || *path == '\0') return MLY_EINVAL;
  /* the directory part: everything but the last component */
  const char *slash = strrchr(path, '/');
  size_t n = slash ? (size_t)(slash - path) : 0;
  if (path[0] != '/') {
    if (getcwd(cur, sizeof cur) == NULL) return -errno;
    if (snprintf(rest, sizeof rest, "%s/%.*s", cur, (int)n, path) >=
        (int)sizeof rest)
      return MLY_ENAMETOOLONG;
  } else if (snprintf(rest, sizeof rest, "%.*s", (int)n, path) >=
             (int)sizeof rest) {
    return MLY_ENAMETOOLONG;
  }
  snprintf(cur, sizeof cur, "/");
  if (lstat(cur, &st) < 0) return -errno;
  int rc = check_dir(path, "/", &st, also, err, errlen);
  if (rc < 0) return rc;
  char *p = rest;
  while (*p) {
    while (*p == '/') p++;
    if (*p == '\0') break;
    char *e = strchrnul(p, '/');
    size_t len = (size_t)(e - p);
    if ((len == 1 && p[0] == '.')) {
      p = e;
      continue;
    }
    if (len == 2 && p[0] == '.' && p[1] == '.') {
      up(cur); /* cur holds no link: lexical is right */
      p = e;
      continue;
    }
    char next[PATH_MAX];
    if (snprintf(next, sizeof next, "%s%s%.*s", cur, strcmp(cur, "/") ? "/" : "",
                 (int)len, p) >= (int)sizeof next)
      return MLY_ENAMETOOLONG;
    if (lstat(next, &st) < 0) {
      int e2 = -errno;
      if (e2 == MLY_ENOENT)
        snprintf(err, errlen, "%s: directory %s does not exist; create it first", path,
                 next);
      else
        snprintf(err, errlen, "%s: %s: %s", path, next, mly_strerror(e2));
      return e2;
    }
    if (S_ISLNK(st.st_mode)) {
      if (!trusted_uid(st.st_uid, also))
        return refuse(path, next, "is a symbolic link of another user", &st,
                      err, errlen);
      if (++links > LINKS_MAX) return -ELOOP;
      ssize_t l = readlink(next, link, sizeof link - 1);
      if (l < 0) return -errno;
      link[l] = '\0';
      /* the target, then what was left after this component */
      if (snprintf(tmp, sizeof tmp, "%s%s", link, e) >= (int)sizeof tmp)
        return MLY_ENAMETOOLONG;
      memcpy(rest, tmp, strlen(tmp) + 1);
      p = rest;
      if (link[0] == '/') snprintf(cur, sizeof cur, "/");
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      snprintf(err, errlen, "%s: %s is not a directory", path, next);
      return -ENOTDIR;
    }
    rc = check_dir(path, next, &st, also, err, errlen);
    if (rc < 0) return rc;
    memcpy(cur, next, strlen(next) + 1);
    p = e;
  }
  if (dir != NULL && snprintf(dir, dirlen, "%s", cur) >= (int)dirlen)
    return MLY_ENAMETOOLONG;
  return 0;
}

int mly_path_check(const char *path, uid_t also, char *dir, size_t dirlen,
                   char *err, size_t errlen) {
  char none[1];
  if (err == NULL || errlen == 0) err = none, errlen = sizeof none;
  *err = '\0';
  int rc = walk(path, also, dir, dirlen, err, errlen);
  if (rc < 0 && *err == '\0')
    snprintf(err, errlen, "%s: %s", path ? path : "(null)", mly_strerror(rc));
  return rc;
}
