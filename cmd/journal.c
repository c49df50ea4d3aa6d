/*
 * journal.c - `mealy journal stat|dump|check|compact DIR`: a state
 * directory, looked at and tidied offline.
 *
 * stat, dump and check only read DIR and take no lock: a process that
 * has it open may be writing, and what they show is a moment of it.
 * compact takes the lock, as a runtime with no types registered, so
 * every instance is "parked" and kept byte for byte in the new segment.
 *
 * compact keeps every tombstone of a named instance (the retention
 * window is the host's setting, not known here).
 *
 * dump prints one JSON object per record (json.c writes them), the
 * fields of its kind named after the layouts at the top of
 * lib/journal.h; a field a layout does not know goes into "extra", so a
 * newer journal still dumps.  Binaries are hex strings; an event's
 * payload (msgpack) is decoded.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "mealy.h"

static void usage(FILE *f) {
  fprintf(f,
      "usage: mealy journal ACTION [OPTIONS] DIR\n"
      "  stat [--json] DIR      segments, bytes, records, live instances,\n"
      "                         pending events, dead ratio, torn tail,\n"
      "                         batches, bytes that are not records\n"
      "  dump [--salvage] DIR   every record, one JSON object a line\n"
      "  check [--salvage] DIR  verify every batch and record: exit 0 sound\n"
      "                         (a torn tail is cut at the next open), 1\n"
      "                         damage (an open refuses it), 3 suspect (the\n"
      "                         tail an open would cut is not a cut write)\n"
      "  compact DIR            rewrite the live set into one new segment\n"
      "                         (DIR must not be open in another process)\n"
      "  --salvage              skip damaged records, keep what verifies\n");
}

/* ---- record layouts (lib/journal.h) ---- */

typedef struct layout layout;
typedef enum how {
  PLAIN,     /* the value as it is                              */
  SPREAD,    /* an array whose fields join this object (S, E)    */
  OBJECT,    /* an array written as an object of its own (wait)  */
  LIST,      /* an array of arrays, each written as an object    */
  PAYLOAD,   /* nil, or a bin holding msgpack                    */
  LIFECYCLE, /* an mly_lifecycle                                 */
  WAIT_KIND, /* the runtime's wait kinds, as records store them  */
  CONTEXT,   /* a bin: its size as context_bytes (nil: unchanged) */
  OPTIONAL   /* left out when nil                                */
} how;
typedef struct field {
  const char *name;
  how how;
  const layout *sub;
} field;
struct layout {
  const field *f;
  size_t n;
  const char *extra; /* the key for fields past the layout */
};
#define LAYOUT(fields, extra) {fields, sizeof fields / sizeof fields[0], extra}

static const field wait_f[] = {
    {"kind", WAIT_KIND, NULL}, {"ev", PLAIN, NULL}, {"arg", PLAIN, NULL},
    {"due_wall_ms", PLAIN, NULL}, {"peer", PLAIN, NULL}};
static const layout wait_l = LAYOUT(wait_f, "extra");
static const field state_f[] = {
    {"id", PLAIN, NULL},    {"type", PLAIN, NULL},  {"parent", PLAIN, NULL},
    {"step", PLAIN, NULL},  {"point", PLAIN, NULL}, {"version", PLAIN, NULL},
    {"data", PLAIN, NULL},  {"flags", PLAIN, NULL}, {"wait", OBJECT, &wait_l},
    {"status", PLAIN, NULL}, {"context_bytes", CONTEXT, NULL},
    {"name", OPTIONAL, NULL}};
static const layout state_l = LAYOUT(state_f, "state_extra");
static const field event_f[] = {
    {"eid", PLAIN, NULL},    {"to", PLAIN, NULL},    {"ev", PLAIN, NULL},
    {"from", PLAIN, NULL},   {"flags", PLAIN, NULL}, {"corr", PLAIN, NULL},
    {"status", PLAIN, NULL}, {"aux", PLAIN, NULL},
    {"payload", PAYLOAD, NULL}};
static const layout event_l = LAYOUT(event_f, "event_extra");

/* What follows [seq, kind, ...] in each kind of record, by kind name. */
static const field create_f[] = {{"state", SPREAD, &state_l}};
static const field step_f[] = {
    {"state", SPREAD, &state_l}, {"took", PLAIN, NULL},
    {"out", LIST, &event_l}, {"spawned", LIST, &state_l}};
static const field event_rec_f[] = {{"event", SPREAD, &event_l}};
static const field end_f[] = {
    {"id", PLAIN, NULL}, {"status", PLAIN, NULL},
    {"lifecycle", LIFECYCLE, NULL}, {"notice_eid", PLAIN, NULL},
    {"ended_ms", PLAIN, NULL}, {"name", PLAIN, NULL}};
static const field snap_f[] = {
    {"next_eid", PLAIN, NULL}, {"next_corr", PLAIN, NULL}};
static const field snapend_f[] = {
    {"instances", PLAIN, NULL}, {"events", PLAIN, NULL},
    {"tombstones", PLAIN, NULL}};
static const field drop_f[] = {{"eids", PLAIN, NULL}};
static const field tomb_f[] = {
    {"name", PLAIN, NULL}, {"id", PLAIN, NULL}, {"status", PLAIN, NULL},
    {"ended_ms", PLAIN, NULL}};
static const struct {
  const char *kind;
  layout l;
} records[] = {
    {"create", LAYOUT(create_f, "extra")}, {"step", LAYOUT(step_f, "extra")},
    {"event", LAYOUT(event_rec_f, "extra")}, {"end", LAYOUT(end_f, "extra")},
    {"snap", LAYOUT(snap_f, "extra")}, {"snapend", LAYOUT(snapend_f, "extra")},
    {"inst", LAYOUT(create_f, "extra")}, {"drop", LAYOUT(drop_f, "extra")},
    {"tomb", LAYOUT(tomb_f, "extra")}};

/* The wait kinds of lib/jreplay.h (RP_W_*): not in the public header. */
static const char *wait_name(uint64_t w) {
  static const char *const names[] = {"none", "turn", "sleep", "cond",
                                      "event", "reply", "children"};
  if (w < sizeof names / sizeof names[0]) return names[w];
  return w == 100 ? "exiting" : NULL;
}

static void put_fields(json_obj *o, const mly_value *a, size_t from,
                       const layout *l);

static void put_object(FILE *f, const mly_value *a, const layout *l) {
  json_obj o = {f, true};
  fputc('{', f);
  put_fields(&o, a, 0, l);
  fputc('}', f);
}

static void put_field(json_obj *o, const field *fd, const mly_value *v) {
  bool arr = mly_value_type(v) == MLY_V_ARRAY;
  if (fd->how == SPREAD && arr) {
    put_fields(o, v, 0, fd->sub);
    return;
  }
  const void *p;
  size_t n;
  mly_value *decoded = NULL;
  if (fd->how == OPTIONAL && mly_value_type(v) == MLY_V_NIL) return;
  if (fd->how == CONTEXT) { /* its size: a context may be 16 MiB */
    json_key(o, fd->name);
    if (mly_value_get_bin(v, &p, &n) == 0) fprintf(o->f, "%zu", n);
    else fputs("null", o->f); /* as the step before committed it */
    return;
  }
  if (fd->how == PAYLOAD && mly_value_get_bin(v, &p, &n) == 0 &&
      mly_value_decode(p, n, &decoded) < 0) {
    json_key(o, "payload_raw"); /* not msgpack: the bytes as they are */
    json_hex(o->f, p, n);
    return;
  }
  json_key(o, fd->name);
  uint64_t u;
  int64_t i;
  if (fd->how == OBJECT && arr) {
    put_object(o->f, v, fd->sub);
  } else if (fd->how == LIST && arr) {
    fputc('[', o->f);
    for (size_t k = 0; k < mly_value_len(v); k++) {
      const mly_value *e = mly_array_at(v, k);
      if (k) fputc(',', o->f);
      if (mly_value_type(e) == MLY_V_ARRAY) put_object(o->f, e, fd->sub);
      else json_value(o->f, e);
    }
    fputc(']', o->f);
  } else if (fd->how == PAYLOAD && decoded) {
    json_value(o->f, decoded);
    mly_value_free(decoded);
  } else if (fd->how == LIFECYCLE && mly_value_get_int(v, &i) == 0 &&
             i >= MLY_LC_INIT && i <= MLY_LC_FAILED) {
    json_str(o->f, mly_lifecycle_name((mly_lifecycle)i),
             strlen(mly_lifecycle_name((mly_lifecycle)i)));
  } else if (fd->how == WAIT_KIND && mly_value_get_uint(v, &u) == 0 &&
             wait_name(u)) {
    json_str(o->f, wait_name(u), strlen(wait_name(u)));
  } else {
    json_value(o->f, v);
  }
}

static void put_fields(json_obj *o, const mly_value *a, size_t from,
                       const layout *l) {
  size_t len = mly_value_len(a);
  for (size_t i = 0; i < l->n && from + i < len; i++)
    put_field(o, &l->f[i], mly_array_at(a, from + i));
  if (from + l->n >= len) return;
  json_key(o, l->extra);
  fputc('[', o->f);
  for (size_t i = from + l->n; i < len; i++) {
    if (i > from + l->n) fputc(',', o->f);
    json_value(o->f, mly_array_at(a, i));
  }
  fputc(']', o->f);
}

static void dump_record(FILE *f, const mly_record *r, const mly_value *body) {
  json_obj o = {f, true};
  fputc('{', f);
  json_key(&o, "seq");
  fprintf(f, "%" PRIu64, r->seq);
  json_key(&o, "kind");
  json_str(f, r->kind, strlen(r->kind));
  json_key(&o, "file");
  json_str(f, r->file, strlen(r->file));
  json_key(&o, "offset");
  fprintf(f, "%" PRIu64, r->offset);
  static const layout unknown = {NULL, 0, "fields"};
  const layout *l = &unknown;
  for (size_t i = 0; i < sizeof records / sizeof records[0]; i++)
    if (strcmp(records[i].kind, r->kind) == 0) l = &records[i].l;
  put_fields(&o, body, 2, l);
  fputs("}\n", f);
}

/* ---- the walk shared by dump and check ---- */

typedef struct walk {
  bool dump;
  uint64_t records, segments, last_seq, skipped;
  char last_file[64];
  char why[256]; /* a problem found here, not by the library */
} walk;

static int on_record(const mly_record *r, void *arg) {
  walk *w = arg;
  mly_value *body = NULL;
  int rc = mly_value_decode(r->body, r->len, &body);
  if (rc < 0) {
    snprintf(w->why, sizeof w->why, "%s: offset %" PRIu64 ": record %" PRIu64
             " does not decode: %s", r->file, r->offset, r->seq,
             mly_strerror(rc));
    return rc;
  }
  if (strcmp(w->last_file, r->file) != 0) w->segments++;
  if (w->records > 0 && r->seq > w->last_seq + 1)
    w->skipped += r->seq - w->last_seq - 1; /* only --salvage lets a gap by */
  snprintf(w->last_file, sizeof w->last_file, "%s", r->file);
  w->last_seq = r->seq;
  w->records++;
  if (w->dump) dump_record(stdout, r, body);
  mly_value_free(body);
  return 0;
}

/* A problem with DIR.  The library names a damaged segment by its own
 * name ("seg-...: offset N: ..."), other problems by their whole path. */
static int fail_in(const char *dir, const char *msg) {
  if (strncmp(msg, "seg-", 4) == 0)
    fprintf(stderr, "mealy journal: %s/%s\n", dir, msg);
  else
    fprintf(stderr, "mealy journal: %s\n", msg);
  return 1;
}

static int finish_output(void) {
  if (fflush(stdout) == 0 && !ferror(stdout)) return 0;
  fprintf(stderr, "mealy journal: cannot write the output\n");
  return 1;
}

/* check also replays the records, as opening the journal would: a
 * record can verify and still not hold what its kind holds.  The replay
 * knows no salvage, so --salvage checks records one by one only. */
static int do_walk(const char *dir, bool salvage, bool dump) {
  walk w = {.dump = dump};
  mly_journal_info in = {0};
  char err[1024] = "";
  int rc = mly_journal_scan(dir, salvage, on_record, &w, err, sizeof err);
  if (rc < 0 || finish_output() != 0)
    return rc < 0 ? fail_in(dir, w.why[0] ? w.why : err) : 1;
  if (dump) return 0;
  if (!salvage && mly_journal_info_get(dir, &in, err, sizeof err) < 0)
    return fail_in(dir, err);
  bool suspect = !salvage && in.tail_suspect;
  printf("%s: %" PRIu64 " records", suspect ? "suspect" : "ok", w.records);
  if (!salvage) printf(", %" PRIu64 " batches", in.batches);
  printf(", %" PRIu64 " segments, next record %" PRIu64,
         salvage ? w.segments : in.segments, w.records ? w.last_seq + 1 : 1);
  if (w.skipped) printf(" (salvage: %" PRIu64 " records skipped)", w.skipped);
  if (in.torn_bytes)
    printf("; torn tail: %" PRIu64 " bytes, not acknowledged, cut off at the "
           "next open", in.torn_bytes);
  if (in.stray_bytes)
    printf("; not records: %" PRIu64 " bytes", in.stray_bytes);
  if (suspect)
    printf("; the torn tail is not a write cut short (zeroes, random or "
           "copied bytes?): look at it before an open cuts it");
  printf("\n");
  return finish_output() ? 1 : suspect ? 3 : 0;
}

/* ---- stat and compact ---- */

static int do_stat(const char *dir, bool json) {
  mly_journal_info in;
  char err[1024] = "";
  if (mly_journal_info_get(dir, &in, err, sizeof err) < 0)
    return fail_in(dir, err);
  if (json) {
    json_obj o = {stdout, true};
    fputc('{', stdout);
    json_key(&o, "dir");
    json_str(stdout, dir, strlen(dir));
    printf(",\"segments\":%" PRIu64 ",\"bytes\":%" PRIu64
           ",\"records\":%" PRIu64 ",\"next_seq\":%" PRIu64
           ",\"live_instances\":%" PRIu64 ",\"pending_events\":%" PRIu64
           ",\"live_records\":%" PRIu64
           ",\"dead_ratio\":%.4f,\"torn_bytes\":%" PRIu64
           ",\"batches\":%" PRIu64 ",\"stray_bytes\":%" PRIu64
           ",\"tail_suspect\":%s,\"named\":%" PRIu64
           ",\"tombstones\":%" PRIu64 ",\"context_bytes\":%" PRIu64 "}\n",
           in.segments, in.bytes, in.records, in.next_seq, in.live_instances,
           in.pending_events, in.live_records, in.dead_ratio, in.torn_bytes,
           in.batches, in.stray_bytes, in.tail_suspect ? "true" : "false",
           in.named, in.tombstones, in.context_bytes);
    return finish_output();
  }
  printf("segments         %" PRIu64 "\n" "bytes            %" PRIu64 "\n"
         "records          %" PRIu64 "\n" "next record      %" PRIu64 "\n"
         "live instances   %" PRIu64 "\n" "pending events   %" PRIu64 "\n"
         "live records     %" PRIu64 "\n" "dead ratio       %.1f%%\n"
         "torn tail bytes  %" PRIu64 "%s\n" "batches          %" PRIu64 "\n"
         "not records      %" PRIu64 " bytes\n"
         "named instances  %" PRIu64 "\n" "tombstones       %" PRIu64 "\n"
         "context bytes    %" PRIu64 "\n",
         in.segments, in.bytes, in.records, in.next_seq, in.live_instances,
         in.pending_events, in.live_records, in.dead_ratio * 100.0,
         in.torn_bytes, in.tail_suspect ? " (suspect: not a write cut short)"
                                        : "", in.batches, in.stray_bytes,
         in.named, in.tombstones, in.context_bytes);
  return finish_output();
}

/* Compaction may wait for a batch in flight: run the loop until it ran. */
static int compact_now(mly_runtime *rt) {
  int rc = mly_journal_compact(rt);
  mly_journal_stats st = {0};
  for (int turns = 0; rc == 0; turns++) {
    if ((rc = mly_journal_stats_get(rt, &st)) < 0 || st.compactions > 0) break;
    if (turns == 1000) return MLY_ETIMEDOUT;
    uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
    rc = mly_journal_error(rt);
  }
  return rc;
}

static int do_compact(const char *dir) {
  mly_journal_info before, after;
  char err[1024] = "";
  /* refuses a missing directory before mly_journal_open would create it */
  if (mly_journal_info_get(dir, &before, err, sizeof err) < 0)
    return fail_in(dir, err);
  if (before.segments == 0) {
    fprintf(stderr, "mealy journal: %s: no journal here (no segment files)\n",
            dir);
    return 1;
  }
  mly_runtime *rt = NULL;
  int rc = mly_runtime_new(&rt, NULL, NULL);
  if (rc < 0) {
    fprintf(stderr, "mealy journal: cannot make a runtime: %s\n",
            mly_strerror(rc));
    return 1;
  }
  /* the window is the host's to say: offline, every tombstone is kept */
  mly_journal_options o = {.dir = dir, .name_retention_ms = -1};
  rc = mly_journal_open(rt, &o, err, sizeof err);
  if (rc == 0 && (rc = compact_now(rt)) < 0)
    snprintf(err, sizeof err, "%s: compaction failed: %s", dir,
             mly_strerror(rc));
  mly_runtime_close(rt);
  if (rc < 0 || mly_journal_info_get(dir, &after, err, sizeof err) < 0)
    return fail_in(dir, err);
  printf("before: segments %" PRIu64 ", bytes %" PRIu64 ", records %" PRIu64
         "\nafter: segments %" PRIu64 ", bytes %" PRIu64 ", records %" PRIu64
         "\n"
         "kept: instances %" PRIu64 ", pending events %" PRIu64 "\n",
         before.segments, before.bytes, before.records, after.segments,
         after.bytes, after.records, after.live_instances,
         after.pending_events);
  return finish_output();
}

/* ---- the command line ---- */

int cmd_journal(int argc, char **argv) {
  const char *action = NULL, *dir = NULL;
  bool salvage = false, json = false, options = true;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (options && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
      usage(stdout);
      return 0;
    } else if (options && strcmp(a, "--") == 0) {
      options = false;
    } else if (options && strcmp(a, "--salvage") == 0) {
      salvage = true;
    } else if (options && strcmp(a, "--json") == 0) {
      json = true;
    } else if (options && a[0] == '-' && a[1] != '\0') {
      fprintf(stderr, "mealy journal: unknown option '%s'\n", a);
      usage(stderr);
      return 2;
    } else if (action == NULL) {
      action = a;
    } else if (dir == NULL) {
      dir = a;
    } else {
      fprintf(stderr, "mealy journal: one DIR only ('%s' is extra)\n", a);
      return 2;
    }
  }
  bool walks =
      action && (!strcmp(action, "dump") || !strcmp(action, "check"));
  const char *bad = NULL;
  if (action == NULL) bad = "an ACTION is needed";
  else if (!walks && strcmp(action, "stat") && strcmp(action, "compact"))
    bad = "unknown ACTION (stat, dump, check, compact)";
  else if (dir == NULL) bad = "DIR is needed";
  else if (salvage && !walks) bad = "--salvage goes with dump and check only";
  else if (json && strcmp(action, "stat")) bad = "--json goes with stat only";
  if (bad) {
    fprintf(stderr, "mealy journal: %s%s%s\n", action ? action : "",
            action ? ": " : "", bad);
    usage(stderr);
    return 2;
  }
  if (walks) return do_walk(dir, salvage, action[0] == 'd');
  if (strcmp(action, "stat") == 0) return do_stat(dir, json);
  return do_compact(dir);
}
