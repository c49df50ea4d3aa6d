/*
 * wordcount.c - the fan-out/fan-in example: count the lines and words
 * of a file with YAML machines (wordcount.yaml), durably.
 *
 *   mealy-fanout-example MACHINES.yaml INPUT OUTPUT [STATE_DIR [BATCH]]
 *
 * One instance, "wordcount-job", starts in a continuation state: each
 * batch of BATCH lines (default 100) of INPUT becomes a replica that
 * counts its own lines and words; a counted fan-in merges all of them
 * and adds the counts up; the final state writes "LINES WORDS" to
 * OUTPUT.  Killed at any point and run again with the same STATE_DIR
 * (default ./fanout-state), it goes on where it was: no batch counted
 * twice, none lost.  Run again after it finished, it says so.  The job
 * is named "wordcount-job" until the fan-in; the merge goes on as the
 * instance the fan-in starts (named after its collector).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mealy.h"

typedef struct job {
  const char *input;
  int done;
  int status;
} job;

static int64_t ctx_int(const mly_value *ctx, const char *key) {
  int64_t v = 0;
  (void)mly_map_get_int(ctx, key, &v);
  return v;
}

/* Continuation: the next batch of lines.  Action: count them. */
static int count_batch(mly_action_call *c, void *arg) {
  job *j = arg;
  mly_value *ctx = mly_action_context(c);
  if (mly_action_continuing(c))
    return mly_continue_lines(c, j->input, (uint32_t)ctx_int(ctx, "batch"),
                              "lines");
  const mly_value *lines = mly_map_get(ctx, "lines");
  int64_t words = 0;
  for (size_t i = 0; i < mly_value_len(lines); i++) {
    const char *s;
    size_t len;
    if (mly_value_get_str(mly_array_at(lines, i), &s, &len) < 0) continue;
    bool in = false;
    for (size_t k = 0; k < len; k++) {
      bool sp = isspace((unsigned char)s[k]);
      if (!sp && !in) words++;
      in = !sp;
    }
  }
  mly_map_set_int(ctx, "n_lines", (int64_t)mly_value_len(lines));
  mly_map_set_int(ctx, "n_words", words);
  mly_map_del(ctx, "lines"); /* only the counts travel to the fan-in */
  return mly_action_event(c, "counted");
}

/* The fan-in: every replica's counts, once. */
static int sum_counts(mly_action_call *c, void *arg) {
  (void)arg;
  mly_value *ctx = mly_action_context(c);
  const mly_value *merged = mly_map_get(ctx, "merged");
  int64_t lines = 0, words = 0;
  for (size_t i = 0; i < mly_value_len(merged); i++) {
    lines += ctx_int(mly_array_at(merged, i), "n_lines");
    words += ctx_int(mly_array_at(merged, i), "n_words");
  }
  mly_map_set_int(ctx, "lines_total", lines);
  mly_map_set_int(ctx, "words_total", words);
  mly_map_set_int(ctx, "batches", (int64_t)mly_value_len(merged));
  mly_map_del(ctx, "merged");
  return mly_action_event(c, "summed");
}

/* The final state: write the result (whole, so a re-run rewrites it). */
static int write_result(mly_action_call *c, void *arg) {
  job *j = arg;
  mly_value *ctx = mly_action_context(c);
  const char *out;
  if (mly_map_get_str(ctx, "output", &out) < 0)
    return mly_action_fail(c, true, "no output path in the context");
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", out);
  FILE *f = fopen(tmp, "w");
  if (f == NULL) return mly_action_fail(c, false, "%s: %s", tmp, strerror(errno));
  fprintf(f, "%" PRId64 " %" PRId64 "\n", ctx_int(ctx, "lines_total"),
          ctx_int(ctx, "words_total"));
  if (fclose(f) != 0 || rename(tmp, out) != 0)
    return mly_action_fail(c, false, "%s: %s", out, strerror(errno));
  printf("wordcount: %" PRId64 " lines, %" PRId64 " words, in %" PRId64
         " batches -> %s\n",
         ctx_int(ctx, "lines_total"), ctx_int(ctx, "words_total"),
         ctx_int(ctx, "batches"), out);
  j->done = 1;
  return 0;
}

static int count_live(const mly_info *i, void *arg) {
  if (strcmp(i->type, "fsm") == 0 || strcmp(i->type, "fsm-fanin") == 0)
    (*(int *)arg)++;
  return 0;
}

/* YAML instances and fan-in collectors still running. */
static int live(mly_runtime *rt) {
  int n = 0;
  mly_foreach(rt, count_live, &n);
  return n;
}

static void on_error(const mly_conf_msg *msg, void *arg) {
  (void)arg;
  fprintf(stderr, "%s:%u:%u: %s\n", msg->file, msg->line, msg->col,
          msg->text);
}

int main(int argc, char **argv) {
  if (argc < 4 || argc > 6) {
    fprintf(stderr, "usage: mealy-fanout-example MACHINES.yaml INPUT OUTPUT "
                    "[STATE_DIR [BATCH]]\n");
    return 2;
  }
  job j = {.input = argv[2]};
  const char *state = argc > 4 ? argv[4] : "fanout-state";
  long batch = argc > 5 ? atol(argv[5]) : 100;
  if (batch < 1) batch = 100;
  mly_runtime *rt;
  int rc = mly_runtime_new(&rt, NULL, NULL);
  if (rc == 0) rc = mly_action_register(rt, "CountBatch", count_batch, &j, 0);
  if (rc == 0) rc = mly_action_register(rt, "SumCounts", sum_counts, &j, 0);
  if (rc == 0) rc = mly_action_register(rt, "WriteResult", write_result, &j, 0);
  if (rc < 0) {
    fprintf(stderr, "wordcount: %s\n", mly_strerror(rc));
    return 1;
  }
  mly_journal_options jo = {.dir = state, .sync = MLY_SYNC_ALWAYS};
  char err[512];
  if (mly_journal_open(rt, &jo, err, sizeof err) < 0) {
    fprintf(stderr, "wordcount: %s\n", err);
    return 1;
  }
  mly_fsm_load_options lo = {.on_error = on_error};
  mly_fsm_set *set = NULL;
  const char *files[] = {argv[1]};
  rc = mly_fsm_load(files, 1, &lo, &set);
  if (rc == 0) rc = mly_fsm_add(rt, set);
  mly_fsm_set_free(set);
  if (rc < 0) {
    fprintf(stderr, "wordcount: %s: %s\n", argv[1], mly_strerror(rc));
    return 1;
  }
  mly_value *ctx = mly_value_map();
  mly_map_set_str(ctx, "output", argv[3]);
  mly_map_set_int(ctx, "batch", batch);
  /* Started before (the name is held, live or ended): what is left of
   * the job runs from the journal.  The first instance ends at the
   * fan-in; the merge goes on in an instance of its own. */
  rc = mly_fsm_start(rt, "wordcount", "wordcount-job", ctx, NULL, 0, NULL);
  bool again = rc == MLY_EEXIST;
  if (rc < 0 && !again) {
    fprintf(stderr, "wordcount: start: %s\n", mly_strerror(rc));
    return 1;
  }
  uv_loop_t *loop = mly_runtime_loop(rt);
  while (!j.done && live(rt) > 0) uv_run(loop, UV_RUN_ONCE);
  if (!j.done) {
    if (!again) {
      fprintf(stderr, "wordcount: the job ended without a result\n");
      return 1;
    }
    printf("wordcount: the job in %s has finished already\n", state);
  }
  /* let the final step commit before leaving */
  for (int i = 0; i < 100 && uv_run(loop, UV_RUN_NOWAIT); i++) {}
  mly_runtime_close(rt);
  return 0;
}
