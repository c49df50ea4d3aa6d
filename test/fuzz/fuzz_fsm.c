/*
 * fuzz_fsm.c - the fuzz target of the YAML machine loader (lib/fsm/,
 * lib/conf/): an input is the text of one machine file.
 *
 * Whatever the text, loading returns 0 with a set, or an error with at
 * least one message and no set, and leaks nothing.  A set that loads
 * must hold what the validator promises (one initial state, every
 * transition's target a state of its machine), encode, decode and encode
 * again to the same bytes with the same hash, and draw as DOT.  The
 * input's first byte also picks options: an action registry that knows
 * every other name, and the task queue layer's readers of `queues:` and
 * `schedules:` (their error paths and the checks after the load).
 *
 * Imports are relative to a directory that does not exist, so an input
 * reads no other file unless it names an absolute path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/def.h"
#include "fuzz_fsm.h"
#include "mealy.h"

ff_result ff_last;

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf(stderr, "fuzz_fsm: check failed: %s (%s:%d)\n", #cond,    \
              __FILE__, __LINE__);                                      \
      abort();                                                          \
    }                                                                   \
  } while (0)

static void on_msg(const mly_conf_msg *m, void *arg) {
  size_t *n = arg;
  char buf[256];
  CHECK(m->file != NULL && m->text != NULL && m->text[0] != '\0');
  mly_conf_format(m, buf, sizeof buf);
  ++*n;
}

static bool known(const char *name, void *arg) {
  (void)arg;
  return strlen(name) % 2 == 0;
}

static void check_machine(const fsm_machine *m) {
  CHECK(m->name && m->nstates > 0 && m->initial < m->nstates);
  size_t initials = 0, finals = 0;
  for (size_t i = 0; i < m->nstates; i++) {
    const fsm_state *s = &m->states[i];
    initials += s->initial;
    finals += s->final;
    CHECK(s->name != NULL);
    for (size_t t = 0; t < s->ntrans; t++) CHECK(s->trans[t].to < m->nstates);
  }
  CHECK(initials == 1 && finals >= 1);
  char *a, *b;
  size_t la, lb;
  CHECK(fsm_def_encode(m, &a, &la) == 0);
  fsm_machine *d = NULL;
  CHECK(fsm_def_decode(a, la, &d) == 0);
  CHECK(memcmp(d->hash, m->hash, sizeof m->hash) == 0);
  CHECK(fsm_def_encode(d, &b, &lb) == 0);
  CHECK(la == lb && memcmp(a, b, la) == 0);
  char *dot = NULL;
  size_t dl = 0;
  FILE *f = open_memstream(&dot, &dl);
  CHECK(f != NULL);
  CHECK(mly_fsm_dot((const mly_fsm_machine *)m, f) == 0);
  fclose(f);
  CHECK(dl > 0 && strncmp(dot, "digraph ", 8) == 0);
  free(dot);
  free(a);
  free(b);
  fsm_machine_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t nerr = 0, nnote = 0;
  mly_conf_section sections[2];
  mly_queue_conf *qc = NULL;
  uint8_t flags = size ? data[0] : 0;
  mly_fsm_load_options o = {.on_error = on_msg, .arg = &nerr};
  (void)nnote;
  if (flags & 1) o.action_known = known;
  if ((flags & 2) && (qc = mly_queue_conf_new()) != NULL) {
    mly_queue_conf_sections(qc, sections);
    o.sections = sections, o.nsections = 2;
  }
  mly_fsm_set *set = NULL;
  int rc = mly_fsm_load_text("/nonexistent-mealy-fuzz/machines.yaml",
                             (const char *)data, size, &o, &set);
  ff_last = (ff_result){rc, 0, 0};
  if (rc == 0) {
    CHECK(set != NULL && nerr == 0);
    const fsm_set *s = (const fsm_set *)set;
    for (size_t i = 0; i < s->nmachines; i++) check_machine(&s->machines[i]);
    ff_last.machines = s->nmachines;
  } else {
    CHECK(set == NULL);
    CHECK(rc == MLY_ENOMEM || nerr > 0);
    ff_last.errors = nerr;
  }
  mly_fsm_set_free(set);
  mly_queue_conf_free(qc);
  return 0;
}
