/*
 * jlive.c - the live instances of a state directory, offline: what
 * recovery would bring back (the same fold of the records, jreplay.c),
 * handed over one at a time with their type, yield point, name, fixed
 * data and committed context (mly_journal_live).  Nothing is locked or
 * written: a directory a live runtime appends to is read as it is at
 * that moment.  The task queues' offline listings stand on it.
 */
#include "../jreplay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int mly_journal_live(const char *dir, int (*cb)(const mly_live *, void *),
                     void *arg, char *err, size_t errlen) {
  int fd = jr_open_dir(dir, err, errlen); /* err may be NULL: jr_errf */
  if (fd < 0) return fd;
  replay r = {.err = err, .errlen = errlen};
  jread jr;
  int rc = jr_read(fd, dir, false, JR_READ, &jr, rp_record, &r, err, errlen);
  for (size_t i = 0; rc == 0 && i < r.ninsts; i++) {
    const rp_inst *x = &r.insts[i];
    if (x->ended) continue;
    rp_state st;
    jcur c = {x->s, x->s + x->slen, false};
    if (!rp_parse_state(&c, &st)) {
      rc = jr_errf(err, errlen, MLY_EBADMSG, "instance %llu: its state does "
                   "not parse", (unsigned long long)x->id);
      break;
    }
    char type[MLY_NAME_MAX + 1], point[MLY_NAME_MAX + 1];
    snprintf(type, sizeof type, "%.*s", (int)st.tlen, st.type);
    snprintf(point, sizeof point, "%.*s", (int)st.plen, st.point);
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)x->namelen, x->name ? x->name : "");
    mly_value *ctx = NULL;
    if (x->ctxlen > 0 && (rc = mly_value_decode(x->ctx, x->ctxlen, &ctx)) < 0) {
      jr_errf(err, errlen, rc, "instance %llu: its context does not decode",
              (unsigned long long)x->id);
      break;
    }
    mly_live l = {.id = x->id, .parent = x->parent, .type = type,
                  .point = point, .name = x->namelen ? name : NULL,
                  .data = st.data, .data_len = st.dlen, .context = ctx};
    rc = cb(&l, arg);
    mly_value_free(ctx);
  }
  jr_read_free(&jr);
  rp_free(&r);
  close(fd);
  return rc;
}
