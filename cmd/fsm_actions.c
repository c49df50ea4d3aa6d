/*
 * fsm_actions.c - `--actions LIB.so`: a shared object whose
 * int mly_actions_init(mly_runtime *rt) registers actions
 * (mly_action_register).  `mealy fsm run` loads it to run them and
 * `mealy fsm validate` to check the names a file uses against the very
 * registry the host would have: one loader, so both see the same names.
 *
 * LIB.so is code run as this process, possibly root: it is refused
 * unless every directory on its path is trusted (mly_path_check) and the
 * file itself is a regular file owned by root or by us and writable by
 * no one else.  A symbolic link as the last component (libshop.so ->
 * libshop.so.1.0) is followed as mly_path_check follows those on the
 * way: the link must be owned by root or by us (it lies in a directory
 * checked already, so no one else can replace it), and its target's
 * directories are checked in turn, up to 40 links.  The file found is
 * opened with O_NOFOLLOW by its resolved path (no link left in it) and
 * loaded through /proc/self/fd, so what was checked is what runs.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsmhost.h"

/* path's last component with its links followed safely (above), into
 * out (PATH_MAX): a path with no link in it.  0, or an error with err
 * saying what and where. */
static int resolve(const char *path, char *out, char *err, size_t errlen) {
  char cur[PATH_MAX], dir[PATH_MAX], tgt[PATH_MAX];
  if (snprintf(cur, sizeof cur, "%s", path) >= (int)sizeof cur)
    return MLY_ENAMETOOLONG;
  for (int links = 0; links <= 40; links++) {
    int rc = mly_path_check(cur, (uid_t)-1, dir, sizeof dir, err, errlen);
    if (rc < 0) {
      if (rc != MLY_EPERM) snprintf(err, errlen, "%.900s: %s", cur,
                                    mly_strerror(rc));
      return rc;
    }
    const char *base = strrchr(cur, '/');
    base = base ? base + 1 : cur;
    if (*base == '\0' || !strcmp(base, ".") || !strcmp(base, "..")) {
      snprintf(err, errlen, "%.900s: is a directory; give the library's file",
               path);
      return MLY_EINVAL;
    }
    if (snprintf(out, PATH_MAX, "%s/%s", strcmp(dir, "/") ? dir : "",
                 base) >= PATH_MAX)
      return MLY_ENAMETOOLONG;
    struct stat st;
    if (lstat(out, &st) < 0) {
      rc = -errno;
      snprintf(err, errlen, "%.900s: %s", out, mly_strerror(rc));
      return rc;
    }
    if (!S_ISLNK(st.st_mode)) return 0;
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
      snprintf(err, errlen, "%.700s is a symbolic link owned by another user "
               "(uid %d): they could point it elsewhere; make it yours or "
               "root's, or give the file itself", out, (int)st.st_uid);
      return MLY_EPERM;
    }
    ssize_t n = readlink(out, tgt, sizeof tgt - 1);
    if (n < 0 || (size_t)n >= sizeof tgt - 1) {
      rc = n < 0 ? -errno : MLY_ENAMETOOLONG;
      snprintf(err, errlen, "%.900s: %s", out, mly_strerror(rc));
      return rc;
    }
    tgt[n] = '\0';
    if (tgt[0] == '/') rc = snprintf(cur, sizeof cur, "%s", tgt);
    else rc = snprintf(cur, sizeof cur, "%s/%s", dir, tgt);
    if (rc >= (int)sizeof cur) return MLY_ENAMETOOLONG;
  }
  snprintf(err, errlen, "%.900s: more than 40 symbolic links", path);
  return -ELOOP;
}

int fsm_actions_load(mly_runtime *rt, const char *cmd, const char *path,
                     void **handle) {
  char err[1024], real[PATH_MAX];
  *handle = NULL;
  int rc = resolve(path, real, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "%s: --actions %s\n", cmd, err);
    return rc;
  }
  int fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    rc = -errno;
    fprintf(stderr, "%s: --actions %s: %s\n", cmd, path, mly_strerror(rc));
    if (fd >= 0) close(fd);
    return rc;
  }
  const char *why = !S_ISREG(st.st_mode) ? "is not a regular file"
                    : st.st_uid != 0 && st.st_uid != geteuid()
                        ? "is owned by another user"
                    : st.st_mode & 022 ? "is writable by its group or others"
                                       : NULL;
  if (why) {
    fprintf(stderr, "%s: --actions %s %s (uid %d, mode %04o): another user "
            "could change the code this process runs; make it yours or "
            "root's, mode 0644 or stricter\n", cmd, path, why,
            (int)st.st_uid, (unsigned)(st.st_mode & 07777));
    close(fd);
    return MLY_EPERM;
  }
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
  void *h = dlopen(self, RTLD_NOW | RTLD_LOCAL);
  close(fd);
  if (h == NULL) {
    fprintf(stderr, "%s: --actions %s: %s\n", cmd, path, dlerror());
    return MLY_EINVAL;
  }
  *handle = h; /* from here on the caller keeps it (see fsmhost.h) */
  int (*init)(mly_runtime *) = NULL;
  *(void **)&init = dlsym(h, "mly_actions_init");
  if (init == NULL) {
    fprintf(stderr, "%s: --actions %s: no function mly_actions_init("
            "mly_runtime *) in it; define one that registers the actions\n",
            cmd, path);
    return MLY_EINVAL;
  }
  if ((rc = init(rt)) < 0) {
    fprintf(stderr, "%s: --actions %s: mly_actions_init failed: %s\n", cmd,
            path, mly_strerror(rc));
    return rc;
  }
  return 0;
}
