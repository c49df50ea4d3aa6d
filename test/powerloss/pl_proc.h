/*
 * pl_proc.h - what the power-loss tools do with processes and files:
 * run a program that reports on fd 3, remove a tree, read a message.
 */
#ifndef PL_PROC_H
#define PL_PROC_H

#include <stddef.h>

typedef struct pl_out {
  char *text;      /* every byte it wrote on fd 3 (NUL-terminated) */
  size_t len, cap;
  int status;      /* as waitpid gives it */
  unsigned lines;
} pl_out;

/* Runs prog with args (args[0] included, NULL-terminated); its fd 3 is read
 * into o (free o->text), its stdout and stderr go to errpath.  env: NAME, VALUE
 * pairs, NULL-terminated, set in the child (NULL: none); with LD_PRELOAD
 * among them, ASan is told not to insist on coming first.  A run that
 * still goes after limit_s seconds (a generous bound, not a timing) is a
 * hang: killed, and "HANG" is appended. */
void plp_run(const char *prog, const char *const *args,
             const char *const *env, const char *errpath, int limit_s,
             pl_out *o);

/* A new directory $TMPDIR/NAME.XXXXXX (/tmp without TMPDIR) into out;
 * exits on failure. */
void plp_mkdtemp(const char *name, char *out, size_t len);

/* rm -rf path (nothing if it does not exist). */
void plp_rm_rf(const char *path);

/* The first line of a file ("" if none), in a static buffer. */
const char *plp_first_line(const char *path);

#endif /* PL_PROC_H */
