/*
 * fsm_helpers.h - what the fsm suites share: machines from YAML text,
 * a runtime driven until a condition holds (the "fsm-def" holders never
 * end, so a runtime with YAML machines never runs dry), and a log of
 * what actions did.
 */
#ifndef MLY_TEST_FSM_HELPERS_H
#define MLY_TEST_FSM_HELPERS_H

#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static inline void fh_on_error(const mly_conf_msg *msg, void *arg) {
  (void)arg;
  fprintf(stderr, "load error: %s:%u:%u: %s\n", msg->file, msg->line, msg->col,
          msg->text);
}

/* Load YAML machines (rt's actions registered before); the caller frees
 * the set. */
static inline mly_fsm_set *fh_load(mly_runtime *rt, const char *yaml) {
  mly_fsm_load_options o = {.on_error = fh_on_error,
                            .action_known = mly_action_known,
                            .action_arg = rt};
  mly_fsm_set *set = NULL;
  ck_assert_int_eq(mly_fsm_load_text("test.yaml", yaml, strlen(yaml), &o, &set),
                   0);
  return set;
}

/* Load YAML machines into rt (its actions registered before). */
static inline void fh_add(mly_runtime *rt, const char *yaml) {
  mly_fsm_set *set = fh_load(rt, yaml);
  ck_assert_int_eq(mly_fsm_add(rt, set), 0);
  mly_fsm_set_free(set);
}

/* Run rt's loop until cond(rt, arg) holds; fails after max_turns turns
 * (H_UNTIL with a 5 ms tick). */
static inline void fh_until(mly_runtime *rt, bool (*cond)(mly_runtime *, void *),
                            void *arg, long max_turns) {
  ck_assert_msg(H_UNTIL(rt, cond(rt, arg), max_turns, 5),
                "condition not reached in %ld turns", max_turns);
}

/* The instance `name` has ended. */
static inline bool fh_ended(mly_runtime *rt, void *name) {
  mly_name_info ni;
  return mly_name_lookup(rt, name, &ni) == 0 && ni.state == MLY_NAME_ENDED;
}

static inline int fh_end_status(mly_runtime *rt, const char *name) {
  mly_name_info ni;
  ck_assert_int_eq(mly_name_lookup(rt, name, &ni), 0);
  ck_assert_int_eq(ni.state, MLY_NAME_ENDED);
  return ni.status;
}

static inline mly_id fh_id(mly_runtime *rt, const char *name) {
  mly_name_info ni;
  ck_assert_int_eq(mly_name_lookup(rt, name, &ni), 0);
  return ni.id;
}

/* The instance is in `phase` ("wait", "sleep", ...). */
typedef struct fh_at {
  const char *name;
  const char *phase;
  const char *state; /* NULL: any */
} fh_at;

static inline bool fh_is_at(mly_runtime *rt, void *arg) {
  fh_at *a = arg;
  mly_name_info ni;
  mly_fsm_info fi;
  if (mly_name_lookup(rt, a->name, &ni) < 0 || ni.state != MLY_NAME_LIVE)
    return false;
  if (mly_fsm_info_get(rt, ni.id, &fi) < 0) return false;
  return strcmp(fi.phase, a->phase) == 0 &&
         (a->state == NULL || strcmp(fi.state, a->state) == 0);
}

/* Append one line (printf-style, at most 255 bytes) to DIR/FILE with
 * one write, so that a crash child's record is whole or absent; a
 * failure ends the child with status 90. */
static inline void fh_append(const char *dir, const char *file,
                             const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void fh_append(const char *dir, const char *file,
                             const char *fmt, ...) {
  char path[4200], line[256];
  if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path)
    _exit(90);
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0 || n >= (int)sizeof line) _exit(90);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, line, (size_t)n) != n) _exit(90);
  close(fd);
}

/* A durable runtime on dir (made if needed). */
static inline mly_runtime *fh_durable(const char *dir, void (*reg)(mly_runtime *)) {
  mly_runtime *rt = h_runtime();
  ck_assert_int_eq(mly_fsm_attach(rt), 0);
  if (reg) reg(rt);
  mly_journal_options jo = {.dir = dir, .sync = MLY_SYNC_ALWAYS};
  h_journal_open(rt, &jo);
  return rt;
}

#endif
