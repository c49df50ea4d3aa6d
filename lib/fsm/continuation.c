/*
 * continuation.c - continuation states: each token starts a replica.
 *
 * A state marked `continuation: True` has its action called twice per
 * dispatch: first at the continuation position (mly_action_continuing
 * says so), where it reads the current token (mly_action_token: NULL in
 * the first instance) and names the next one with mly_action_continue,
 * or none; then, as any state, at the action position.  For a returned
 * token, fsm_continuation_run starts a replica of the instance at the
 * dispatch it is in (Fantasm: the same event from the same state, so it
 * runs the continuation again with the new token), with generation + 1,
 * named "NAME.SEQ.c<gen>" from the key NAME/SEQ of the chain's first
 * dispatch (a dispatch that runs again starts no replica twice), after
 * continuation_countdown if set.
 *
 * Every replica carries "_fan": {l: LINEAGE, b: KEY, g: GENERATION} in
 * its context, LINEAGE a hash of KEY, the first dispatch's key; the replica whose
 * continuation returns no token also gets t: its generation + 1, the
 * number of replicas.  A fan-in with `count: 0` uses both: it merges
 * when all of them arrived (or failed, up to `tolerate`).
 *
 * Helpers for the common cases read a batch into the context:
 * mly_continue_lines (the lines of a file; the token is a byte offset)
 * and mly_continue_list (a list in the context; the token is an index).
 * Neither makes Fantasm's extra empty batch: the last batch knows it is
 * the last.
 */
#include "fan.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A line longer than this is an error (MLY_ERANGE), not a batch. */
#define LINE_MAX_BYTES (1u << 20)
/* A batch ends early once its lines hold this much (the rest come in
 * the next batch): one call reads at most this + LINE_MAX_BYTES. */
#define BATCH_MAX_BYTES (64u << 20)

int mly_action_continue(mly_action_call *call, mly_value *token) {
  if (call == NULL || call->where != FSM_AT_CONTINUATION) {
    mly_value_free(token);
    return MLY_EINVAL;
  }
  mly_value_free(call->token);
  call->token = token;
  call->token_set = true;
  return 0;
}

const mly_value *mly_action_token(const mly_action_call *call) {
  return call && call->context ? mly_map_get(call->context, FSM_KEY_TOKEN)
                               : NULL;
}

bool mly_action_continuing(const mly_action_call *call) {
  return call && call->where == FSM_AT_CONTINUATION;
}

uint32_t mly_action_generation(const mly_action_call *call) {
  const mly_value *fan =
      call && call->context ? mly_map_get(call->context, FSM_KEY_FAN) : NULL;
  uint64_t g = 0;
  if (fan) (void)mly_map_get_uint(fan, "g", &g);
  return (uint32_t)g;
}

static int set_batch(mly_action_call *call, const char *key,
                     mly_value *batch, bool more, uint64_t next) {
  int rc = mly_map_set(call->context, key, batch);
  if (rc < 0) return rc;
  if (!more) return mly_action_continue(call, NULL);
  mly_value *t = mly_value_uint(next);
  return t ? mly_action_continue(call, t) : MLY_ENOMEM;
}

/* What a path that is not a regular file is, for the sentence. */
static const char *kind_of(mode_t m) {
  return S_ISDIR(m)    ? "a directory"
         : S_ISFIFO(m) ? "a FIFO (named pipe)"
         : S_ISCHR(m)  ? "a character device"
         : S_ISBLK(m)  ? "a block device"
         : S_ISSOCK(m) ? "a socket"
                       : "not a regular file";
}

/* The file cannot be read: the call fails with a text that names it
 * (the action returns rc; the step's error says what to fix).  What is
 * not a regular file (a directory, a FIFO, a device: /dev/zero would
 * never end) fails for good: no retry turns it into a file. */
static int lines_fail(mly_action_call *call, const char *path, int rc,
                      mode_t mode) {
  if (mode && !S_ISREG(mode))
    mly_action_fail(call, true, "continuation over the lines of %s: it is "
                    "%s, not a file; give the path of a file", path,
                    kind_of(mode));
  else
    mly_action_fail(call, false, "continuation over the lines of %s: %s",
                    path, rc == MLY_ERANGE ? "a line is longer than 1 MiB"
                                           : mly_strerror(rc));
  return rc;
}

/* The next line of fp into *buf (grown up to LINE_MAX_BYTES), without
 * its newline: 1, 0 at the end of the file, or an error (MLY_ERANGE: a
 * line over LINE_MAX_BYTES, read no further). */
static int read_line(FILE *fp, char **buf, size_t *cap, size_t *len) {
  size_t n = 0;
  int c;
  errno = 0;
  while ((c = getc_unlocked(fp)) != EOF && c != '\n') {
    if (n == LINE_MAX_BYTES) return MLY_ERANGE;
    if (n == *cap) {
      size_t nc = *cap ? *cap * 2 : 256;
      char *nb = realloc(*buf, nc < LINE_MAX_BYTES ? nc : LINE_MAX_BYTES);
      if (nb == NULL) return MLY_ENOMEM;
      *buf = nb;
      *cap = nc < LINE_MAX_BYTES ? nc : LINE_MAX_BYTES;
    }
    (*buf)[n++] = (char)c;
  }
  if (c == EOF && ferror(fp)) return errno ? -errno : MLY_EIO;
  *len = n;
  return c == '\n' || n > 0;
}

int mly_continue_lines(mly_action_call *call, const char *path, uint32_t n,
                       const char *key) {
  if (call == NULL || path == NULL || key == NULL || n == 0 ||
      call->where != FSM_AT_CONTINUATION)
    return MLY_EINVAL;
  uint64_t off = 0;
  const mly_value *tok = mly_action_token(call);
  if (tok && mly_value_get_uint(tok, &off) < 0) return MLY_EINVAL;
  /* O_NONBLOCK: opening a FIFO does not wait for a writer */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return lines_fail(call, path, -errno, 0);
  struct stat st;
  mode_t kind = 0;
  int e = fstat(fd, &st) < 0 ? -errno : 0;
  if (e == 0 && !S_ISREG(st.st_mode)) {
    kind = st.st_mode;
    e = S_ISDIR(kind) ? -EISDIR : MLY_EINVAL;
  }
  if (e < 0) {
    close(fd);
    return lines_fail(call, path, e, kind);
  }
  FILE *fp = fdopen(fd, "r");
  if (fp == NULL) {
    e = -errno;
    close(fd);
    return lines_fail(call, path, e, 0);
  }
  mly_value *batch = mly_value_array();
  char *line = NULL;
  size_t cap = 0, total = 0;
  int rc = batch ? 0 : MLY_ENOMEM;
  if (rc == 0 && fseeko(fp, (off_t)off, SEEK_SET) < 0) rc = -errno;
  for (uint32_t i = 0; i < n && rc == 0 && total < BATCH_MAX_BYTES; i++) {
    size_t len = 0;
    int got = read_line(fp, &line, &cap, &len);
    if (got <= 0) {
      rc = got;
      break;
    }
    total += len + 1;
    rc = mly_array_push(batch, mly_value_strn(line ? line : "", len));
  }
  free(line);
  bool more = false;
  uint64_t next = 0;
  if (rc == 0) {
    int c = fgetc(fp); /* is there another line? */
    more = c != EOF;
    off_t pos = ftello(fp);
    next = more ? (uint64_t)pos - 1 : 0;
    if (ferror(fp)) rc = errno ? -errno : MLY_EIO;
  }
  fclose(fp);
  if (rc < 0) {
    mly_value_free(batch);
    return rc == MLY_ENOMEM ? rc : lines_fail(call, path, rc, 0);
  }
  return set_batch(call, key, batch, more, next);
}

int mly_continue_list(mly_action_call *call, const char *list_key,
                      uint32_t n, const char *key) {
  if (call == NULL || list_key == NULL || key == NULL || n == 0 ||
      call->where != FSM_AT_CONTINUATION)
    return MLY_EINVAL;
  uint64_t at = 0;
  const mly_value *tok = mly_action_token(call);
  if (tok && mly_value_get_uint(tok, &at) < 0) return MLY_EINVAL;
  const mly_value *list = mly_map_get(call->context, list_key);
  if (list && mly_value_type(list) != MLY_V_ARRAY) return MLY_EINVAL;
  size_t len = mly_value_len(list);
  mly_value *batch = mly_value_array();
  if (batch == NULL) return MLY_ENOMEM;
  for (uint64_t i = at; i < len && i < at + n; i++) {
    int rc = mly_array_push(batch, mly_value_copy(mly_array_at(list, i)));
    if (rc < 0) {
      mly_value_free(batch);
      return rc;
    }
  }
  return set_batch(call, key, batch, at + n < len, at + n);
}

void fsm_fan_lineage(const char *key, char *buf, size_t len) {
  snprintf(buf, len, "c%016" PRIx64,
           fsm_fan_hash(key, strlen(key), FSM_FAN_HASH_SEED));
}

int fsm_fan_replica_name(const mly_value *ctx, const char *key,
                         uint64_t gen, char *buf, size_t len) {
  const mly_value *fan = ctx ? mly_map_get(ctx, FSM_KEY_FAN) : NULL;
  const char *base = NULL;
  if (fan == NULL || mly_map_get_str(fan, "b", &base) < 0) base = key;
  return fsm_fan_child_name(base, ".c", gen, buf, len);
}

/* Mark ctx as generation gen of the chain its first dispatch's key names
 * (lineage "l" and base name "b" kept when it is marked already), with
 * the total when known. */
static int lineage_of(mly_value *ctx, const char *key, uint32_t gen,
                      uint64_t total) {
  mly_value *fan = mly_map_get(ctx, FSM_KEY_FAN);
  if (fan == NULL || mly_value_type(fan) != MLY_V_MAP) {
    char l[24];
    fsm_fan_lineage(key, l, sizeof l);
    if ((fan = mly_value_map()) == NULL) return MLY_ENOMEM;
    int rc = mly_map_set_str(fan, "l", l);
    if (rc == 0) rc = mly_map_set_str(fan, "b", key);
    if (rc == 0) rc = mly_map_set(ctx, FSM_KEY_FAN, fan);
    else mly_value_free(fan);
    if (rc < 0) return rc;
  }
  int rc = mly_map_set_uint(fan, "g", gen);
  if (rc == 0 && total) rc = mly_map_set_uint(fan, "t", total);
  return rc;
}

int fsm_continuation_run(fsm_rt *f, mly_machine *m, const fsm_inst *in,
                         fsm_run *r, const fsm_state *st) {
  (void)m;
  mly_action_call *c = &r->call;
  if (st->action.kind != FSM_ACT_C) {
    fsm_log(f, "%s: state %s: a continuation runs a C action; "
            "an exec action cannot continue", c->key, st->name);
    return MLY_ENOSYS;
  }
  const fsm_action_ent *a = fsm_action_find(f, st->action.name);
  if (a == NULL) return MLY_ENOENT;
  c->where = FSM_AT_CONTINUATION;
  mly_value_free(c->token);
  c->token = NULL;
  c->token_set = false;
  int rc = a->fn(c, a->arg);
  fsm_call_returned(c, rc);
  if (c->fail) return rc < 0 ? rc : MLY_EAGAIN;
  uint32_t gen = in->generation;
  if (c->token == NULL) /* the last replica: it knows how many there are */
    return lineage_of(c->context, c->key, gen, (uint64_t)gen + 1);
  if ((rc = lineage_of(c->context, c->key, gen, 0)) < 0) return rc;
  mly_value *ctx = mly_value_copy(c->context);
  if (ctx == NULL) return MLY_ENOMEM;
  rc = mly_map_set(ctx, FSM_KEY_TOKEN, c->token);
  c->token = NULL;
  if (rc == 0) rc = lineage_of(ctx, c->key, gen + 1, 0);
  char name[MLY_INSTANCE_NAME_MAX + 1];
  if (rc == 0)
    rc = fsm_fan_replica_name(ctx, c->key, (uint64_t)gen + 1, name,
                              sizeof name);
  if (rc < 0) {
    mly_value_free(ctx);
    return rc;
  }
  fsm_inst p = *in;
  p.generation = gen + 1;
  p.flags |= FSM_IF_REPLICA;
  p.origin = mly_self(m);
  p.attempt = 0;
  p.first_try_ms = fsm_now_ms();
  p.phase = FSM_PH_DISPATCH;
  if (st->continuation_countdown_ms > 0) {
    p.phase = FSM_PH_SLEEP;
    p.why = FSM_WHY_CONTINUATION;
    p.countdown_ms = st->continuation_countdown_ms;
    p.due_ms = fsm_now_ms() + st->continuation_countdown_ms;
  }
  return fsm_fan_start(f, r->def, &p, ctx, name, NULL);
}
