/*
 * jinfo.c - the journal's offline questions, on a state directory that
 * no runtime needs open: every verified record (mly_journal_scan, what
 * `mealy journal dump` prints) and what the directory holds
 * (mly_journal_info_get).  Nothing here takes the lock or writes; a
 * directory a live runtime appends to is read as it is at that moment.
 * The live set is counted with the same fold recovery uses (jreplay.c).
 */
#include "../jreplay.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>


typedef struct scan_arg {
  int (*cb)(const mly_record *, void *);
  void *arg;
} scan_arg;

static int scan_one(const jrec *r, void *arg) {
  scan_arg *a = arg;
  mly_record x = {r->seq, jr_kind_name(r->kind), r->file, r->offset, r->body,
                  r->len};
  return a->cb ? a->cb(&x, a->arg) : 0;
}

int jr_open_dir(const char *dir, char *err, size_t errlen) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return jr_errf(err, errlen, -errno, "%s: %s", dir, mly_strerror(-errno));
  return fd;
}

int mly_journal_scan(const char *dir, bool salvage,
                     int (*cb)(const mly_record *, void *), void *arg,
                     char *err, size_t errlen) {
  int fd = jr_open_dir(dir, err, errlen); /* err may be NULL: jr_errf */
  if (fd < 0) return fd;
  scan_arg a = {cb, arg};
  jread jr;
  int rc = jr_read(fd, dir, salvage, JR_STREAM, &jr, scan_one, &a, err, errlen);
  jr_read_free(&jr);
  close(fd);
  return rc;
}

int mly_journal_info_get(const char *dir, mly_journal_info *out, char *err,
                         size_t errlen) {
  int fd = jr_open_dir(dir, err, errlen); /* err may be NULL: jr_errf */
  if (fd < 0) return fd;
  replay r = {.err = err, .errlen = errlen};
  jread jr;
  int rc = jr_read(fd, dir, false, false, &jr, rp_record, &r, err, errlen);
  if (rc == 0) {
    *out = (mly_journal_info){0};
    for (size_t i = jr.base; i < jr.nsegs; i++) {
      if (jr.segs[i].removed) continue;
      out->segments++;
      out->bytes += jr.segs[i].len;
    }
    out->records = r.records;
    out->next_seq = jr.next_seq;
    out->live_instances = r.live;
    out->pending_events = r.pending;
    out->live_records = r.live + r.pending + r.ntombs +
                        (jr.base_is_snapshot ? 2 : 0);
    out->dead_ratio = r.records > out->live_records
                          ? (double)(r.records - out->live_records) / (double)r.records
                          : 0.0;
    out->torn_bytes = jr.torn_bytes;
    out->batches = jr.frames;
    out->stray_bytes = jr.stray_bytes;
    out->tail_suspect = jr.tail_suspect;
    out->tombstones = r.ntombs;
    for (size_t i = 0; i < r.ninsts; i++) {
      if (r.insts[i].ended) continue;
      out->named += r.insts[i].name != NULL;
      out->context_bytes += r.insts[i].ctxlen;
    }
  }
  jr_read_free(&jr);
  rp_free(&r);
  close(fd);
  return rc;
}
