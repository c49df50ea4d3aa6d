/*
 * load.h - what the loader's files share (load.c: files, imports, the
 * top level; parse.c: machines, states, transitions; validate.c: the
 * checks across a whole machine and set).
 *
 * Names that refer to states (a transition's `to`, `on_failure`) are
 * kept as references while the files are read and resolved to indexes
 * by validate.c, when every state is known.
 */
#ifndef MLY_FSM_LOAD_H
#define MLY_FSM_LOAD_H

#include <stdarg.h>

#include "def.h"

typedef enum fsm_ref_kind {
  REF_TO = 0,     /* states[si].trans[ti].to */
  REF_STATE_FAIL, /* states[si].on_failure */
  REF_MACHINE_FAIL,
  REF_QUEUE       /* a machine's or transition's queue: (options' queue_known) */
} fsm_ref_kind;

typedef struct fsm_ref {
  fsm_ref_kind kind;
  size_t mi, si, ti;
  char *name;
  fsm_pos pos;
} fsm_ref;

typedef struct fsm_loader {
  const mly_fsm_load_options *o;
  fsm_set *set;
  size_t nerrors;
  bool nomem;
  fsm_ref *refs;
  size_t nrefs, caprefs;
  char **stack;      /* real paths of the files being read, outermost first */
  size_t nstack;
  char **done;       /* real paths read */
  size_t ndone;
  size_t *first_machine; /* per file in set->files: not used yet */
  size_t nsections;  /* queues: and schedules: sections read */
  size_t *gives;     /* per done[]: machines and sections it gave, its
                        imports' included (for an import read again) */
  size_t reused;     /* what imports read before gave again */
} fsm_loader;

/* One file being read. */
typedef struct fsm_file {
  fsm_loader *L;
  const char *file;  /* interned in set->files */
  const char *dir;   /* its directory, for imports */
  mly_conf *c;
  mly_conf_node *machines; /* its state_machines:, or NULL */
} fsm_file;

int fsm_ld_bad(fsm_loader *L, const fsm_pos *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fsm_ld_note(mly_conf *c, const mly_conf_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int fsm_ld_nomem(fsm_loader *L);
int fsm_ref_add(fsm_loader *L, fsm_ref_kind kind, size_t mi, size_t si,
                size_t ti, const char *name, fsm_pos pos);
fsm_pos fsm_pos_of(const fsm_file *f, const mly_conf_node *n);

/* parse.c: the state_machines list of one file. */
int fsm_parse_machines(fsm_file *f, mly_conf_node *list);
/* validate.c: every check across machines; 0 or MLY_EINVAL. */
int fsm_validate(fsm_loader *L);
/* def.c: every machine's content hash, once the set is valid. */
int fsm_set_hash(fsm_set *s);
/* Fantasm's names: ^[a-zA-Z0-9-]{1,50}$ */
bool fsm_name_ok(const char *s);

#endif
