/*
 * conf.h - what the files of lib/conf/ share: the reader of one YAML
 * document (mealy.h, "Reading YAML files").  A mly_conf_node is libyaml's
 * yaml_node_t under another name, so mealy.h need not include yaml.h.
 */
#ifndef MLY_CONF_CONF_H
#define MLY_CONF_CONF_H

#include <yaml.h>

#include "mealy.h"

#define CONF_TEXT_LIMIT (1u << 20)  /* no real file is bigger */
#define CONF_DEPTH_LIMIT 32         /* real ones nest 4-6 levels */
#define CONF_ANCHOR_LIMIT 1000      /* anchors, and aliases */
/* Durations stay far below what int64 and double arithmetic can hold, so
 * callers can add and multiply them without overflow checks. */
#define CONF_DURATION_LIMIT (365LL * 24 * 3600 * 1000)

struct mly_conf {
  mly_conf_options o;
  const char *path;        /* o.path, or "config" */
  const char *text;        /* for positions of encoding errors */
  size_t len;
  yaml_document_t *doc;
  size_t work, work_limit; /* nodes and bytes read, aliases included */
  size_t nerrors;
  bool stop;               /* an error that ends the walk in any mode */
};

#define YN(n) ((yaml_node_t *)(n))
#define CN(n) ((mly_conf_node *)(n))

int conf_vbad(mly_conf *c, uint32_t line, uint32_t col, const char *fmt,
              va_list ap);

#endif
