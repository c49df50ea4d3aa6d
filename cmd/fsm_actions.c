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
 * no one else.  The file is opened once and loaded through
 * /proc/self/fd, so what was checked is what runs.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsmhost.h"

int fsm_actions_load(mly_runtime *rt, const char *cmd, const char *path,
                     void **handle) {
  char err[1024];
  *handle = NULL;
  int rc = mly_path_check(path, (uid_t)-1, NULL, 0, err, sizeof err);
  if (rc < 0) {
    if (rc != MLY_EPERM) snprintf(err, sizeof err, "%s: %s", path,
                                  mly_strerror(rc));
    fprintf(stderr, "%s: --actions %s\n", cmd, err);
    return rc;
  }
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
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
