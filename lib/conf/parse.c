/*
 * parse.c - loading one YAML document for the reader (mealy.h, "Reading
 * YAML files"), and reading the file it comes from.
 *
 * libyaml's document API loads the text as a graph of nodes that carry
 * their positions; callers walk only the shapes they expect, so aliases
 * (even self-referential ones) cost only the work they are charged for
 * (node.c).  Before that, a pass over the events refuses what would make
 * libyaml itself slow or the file mean something else: deep nesting,
 * many anchors, explicit tags.  In YAML an empty value is null, and null
 * means "not set": the default applies.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"

/* libyaml gives encoding errors as a byte offset, not a line. */
static int bad_offset(mly_conf *c, size_t off, const char *problem) {
  uint32_t line = 0, col = 0;
  for (size_t i = 0; i < off && i < c->len; i++) {
    if (c->text[i] == '\n') line++, col = 0;
    else col++;
  }
  return mly_conf_bad_at(c, line + 1, col + 1,
                         "YAML: %s; save the file as UTF-8 text", problem);
}

static int yaml_error(mly_conf *c, yaml_parser_t *ps) {
  /* libyaml's loader fails without setting an error when a strdup of its
     own fails: no error means out of memory */
  if (ps->error == YAML_MEMORY_ERROR || ps->error == YAML_NO_ERROR)
    return mly_conf_nomem(c);
  c->stop = true;
  const char *problem = ps->problem ? ps->problem : "unreadable YAML";
  if (ps->error == YAML_READER_ERROR)
    return bad_offset(c, ps->problem_offset, problem);
  yaml_mark_t m = ps->problem_mark;
  if (ps->context == NULL)
    return mly_conf_bad_at(c, (uint32_t)m.line + 1, (uint32_t)m.column + 1,
                           "YAML: %s", problem);
  return mly_conf_bad_at(c, (uint32_t)m.line + 1, (uint32_t)m.column + 1,
                         "YAML: %s %s at %zu:%zu", problem, ps->context,
                         ps->context_mark.line + 1,
                         ps->context_mark.column + 1);
}

static int bad_mark(mly_conf *c, yaml_mark_t m, const char *fmt,
                    const char *a, int n) {
  c->stop = true;
  if (a) return mly_conf_bad_at(c, (uint32_t)m.line + 1,
                                (uint32_t)m.column + 1, fmt, a);
  return mly_conf_bad_at(c, (uint32_t)m.line + 1, (uint32_t)m.column + 1, fmt,
                         n);
}

/* Documents after the first would be ignored; better to say so.  Empty
 * ones ("---" at the end) are fine; every one is looked at, not only the
 * second. */
static int no_more_docs(mly_conf *c, yaml_parser_t *ps) {
  for (;;) {
    yaml_document_t more;
    if (!yaml_parser_load(ps, &more)) return yaml_error(c, ps);
    yaml_node_t *root = yaml_document_get_root_node(&more);
    int rc = 0;
    if (root != NULL && !mly_conf_is_null(CN(root)))
      rc = mly_conf_bad(c, CN(root), "another YAML document starts here; "
                        "keep the whole configuration in one");
    yaml_document_delete(&more);
    if (rc || root == NULL) return rc; /* an error, or the end */
  }
}

/* An explicit tag changes what a value means (!!null "/x" is no path,
 * !!binary is base64, !!python/object is code elsewhere); values here
 * are read by their key, so a tag is refused unless it says what the
 * node already is. */
static int tag_check(mly_conf *c, const yaml_event_t *ev,
                     const yaml_char_t *tag, const char *plain) {
  if (tag == NULL || strcmp((const char *)tag, plain) == 0) return 0;
  const char *t = (const char *)tag;
  const char *core = "tag:yaml.org,2002:";
  char name[sizeof(mly_conf_shown) + 2];
  if (strncmp(t, core, strlen(core)) == 0)
    snprintf(name, sizeof name, "!!%s", mly_conf_show(t + strlen(core)).s);
  else
    snprintf(name, sizeof name, "%s", mly_conf_show(t).s);
  return bad_mark(c, ev->start_mark, "the YAML tag %s is not supported; "
                  "remove it (values are read by their key, e.g. quote a "
                  "string)", name, 0);
}

static int event_check(mly_conf *c, const yaml_event_t *ev, size_t *depth,
                       size_t *anchors, size_t *aliases) {
  const yaml_char_t *anchor = NULL;
  int rc = 0;
  switch (ev->type) {
  case YAML_SEQUENCE_START_EVENT: anchor = ev->data.sequence_start.anchor;
    rc = tag_check(c, ev, ev->data.sequence_start.tag, YAML_SEQ_TAG);
    ++*depth;
    break;
  case YAML_MAPPING_START_EVENT: anchor = ev->data.mapping_start.anchor;
    rc = tag_check(c, ev, ev->data.mapping_start.tag, YAML_MAP_TAG);
    ++*depth;
    break;
  case YAML_SEQUENCE_END_EVENT:
  case YAML_MAPPING_END_EVENT: --*depth; break;
  case YAML_SCALAR_EVENT: anchor = ev->data.scalar.anchor;
    rc = tag_check(c, ev, ev->data.scalar.tag, YAML_STR_TAG);
    break;
  case YAML_ALIAS_EVENT:
    if (++*aliases > CONF_ANCHOR_LIMIT)
      return bad_mark(c, ev->start_mark, "more than %d aliases (*name); "
                      "write the values out instead", NULL,
                      CONF_ANCHOR_LIMIT);
    break;
  default: break;
  }
  if (rc) return rc;
  if (*depth > CONF_DEPTH_LIMIT)
    return bad_mark(c, ev->start_mark, "lists and maps are nested more than "
                    "%d deep here; a configuration needs 4", NULL,
                    CONF_DEPTH_LIMIT);
  if (anchor && ++*anchors > CONF_ANCHOR_LIMIT)
    return bad_mark(c, ev->start_mark, "more than %d anchors (&name); remove "
                    "the ones nothing refers to", NULL, CONF_ANCHOR_LIMIT);
  return 0;
}

/* libyaml slows down with the square of the nesting of flow lists and
 * maps, and of the number of anchors.  A first pass over the events
 * refuses such files before the loader builds a document from them;
 * libyaml reads ahead of the events only a bounded distance. */
static int precheck(mly_conf *c) {
  yaml_parser_t ps;
  yaml_event_t ev;
  if (!yaml_parser_initialize(&ps)) return mly_conf_nomem(c);
  yaml_parser_set_input_string(&ps, (const unsigned char *)c->text, c->len);
  size_t depth = 0, anchors = 0, aliases = 0;
  int rc = 0;
  for (bool end = false; rc == 0 && !end;) {
    if (!yaml_parser_parse(&ps, &ev)) {
      rc = yaml_error(c, &ps);
      break;
    }
    end = ev.type == YAML_STREAM_END_EVENT;
    rc = event_check(c, &ev, &depth, &anchors, &aliases);
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&ps);
  return rc;
}

int mly_conf_parse(const mly_conf_options *o, const char *text, size_t len,
                   mly_conf_root_fn fn) {
  mly_conf_options none = {0};
  mly_conf c = {.o = o ? *o : none, .text = text, .len = len,
                .work_limit = 8 * len + (1u << 20)};
  c.path = c.o.path ? c.o.path : "config";
  if (fn == NULL || (text == NULL && len > 0))
    return mly_conf_report(&c.o, 0, 0, "no configuration text given");
  if (len > CONF_TEXT_LIMIT)
    return mly_conf_report(&c.o, 0, 0, "is larger than %u MiB; that is not "
                           "a configuration file", CONF_TEXT_LIMIT >> 20);
  yaml_parser_t ps;
  yaml_document_t doc;
  int rc = precheck(&c);
  if (rc) return rc;
  if (!yaml_parser_initialize(&ps)) return mly_conf_nomem(&c);
  yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
  if (!yaml_parser_load(&ps, &doc)) {
    rc = yaml_error(&c, &ps);
  } else {
    c.doc = &doc;
    rc = fn(&c, CN(yaml_document_get_root_node(&doc)));
    if (rc == 0) rc = no_more_docs(&c, &ps);
    yaml_document_delete(&doc);
    c.doc = NULL;
  }
  yaml_parser_delete(&ps);
  return rc;
}

static int read_fail(const mly_conf_options *o, int rc) {
  char buf[128];
  mly_conf_report(o, 0, 0, "cannot read: %s",
                  strerror_r(-rc, buf, sizeof buf));
  return rc;
}

/* Only regular files: opening a FIFO would block until someone writes to
 * it, and a directory reads as nothing. */
static int open_regular(const mly_conf_options *o, const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return read_fail(o, -errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return read_fail(o, -e);
  }
  if (S_ISREG(st.st_mode)) return fd;
  close(fd);
  if (S_ISDIR(st.st_mode)) return read_fail(o, -EISDIR);
  return mly_conf_report(o, 0, 0, "cannot read: not a regular file");
}

/* Reads at most CONF_TEXT_LIMIT + 1 bytes: enough to tell that it is too
 * big, and never stuck on an endless file. */
int mly_conf_read(const mly_conf_options *o, const char *path, char **text,
                  size_t *len) {
  mly_conf_options named = o ? *o : (mly_conf_options){0};
  if (named.path == NULL) named.path = path;
  int fd = open_regular(&named, path);
  if (fd < 0) return fd;
  char *buf = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  while (rc == 0 && n < CONF_TEXT_LIMIT + 1) {
    if (n == cap) {
      cap = cap ? 2 * cap : 4096;
      if (cap > CONF_TEXT_LIMIT + 1) cap = CONF_TEXT_LIMIT + 1;
      char *nb = realloc(buf, cap);
      if (nb == NULL) rc = MLY_ENOMEM;
      else buf = nb;
      continue;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r == 0) break;
    if (r > 0) n += (size_t)r;
    else if (errno != EINTR) rc = -errno;
  }
  close(fd);
  if (rc) {
    free(buf);
    return read_fail(&named, rc);
  }
  *text = buf;
  *len = n;
  return 0;
}
