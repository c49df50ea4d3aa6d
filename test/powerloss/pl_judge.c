/*
 * pl_judge.c - what was acknowledged, and the verdict on a recovered
 * image (see pl_judge.h).
 */
#include "pl_judge.h"
#include "pl_proc.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

static uint64_t hashes[PL_TARGET + 1]; /* a counter's hash at each n */

static void hashes_init(void) {
  for (int i = 0; i < PL_TARGET; i++) hashes[i + 1] = pl_chain(hashes[i], (uint64_t)i);
}

static int mach(char kind, unsigned idx) {
  if (kind == 'c' && idx < PL_COUNTERS) return (int)idx;
  if (kind == 'p' && idx < PL_PAIRS) return PL_COUNTERS + (int)idx;
  if (kind == 'q' && idx < PL_PAIRS) return PL_COUNTERS + PL_PAIRS + (int)idx;
  return -1;
}

static void mach_name(int i, char *out) {
  if (i < PL_COUNTERS) sprintf(out, "counter %d", i);
  else if (i < PL_COUNTERS + PL_PAIRS) sprintf(out, "pinger %d", i - PL_COUNTERS);
  else sprintf(out, "ponger %d", i - PL_COUNTERS - PL_PAIRS);
}

static bool hex_bits(const char *s, uint8_t *out) {
  if (strlen(s) != 2 * PLJ_KEYBYTES) return false;
  for (int i = 0; i < PLJ_KEYBYTES; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) return false;
    out[i] = (uint8_t)v;
  }
  return true;
}

static bool bit(const uint8_t *b, unsigned k) { return b[k / 8] & (1u << (k % 8)); }

/* ---- what was acknowledged ---- */

static void acks_init(pl_acks *a) {
  hashes_init();
  memset(a, 0, sizeof *a);
  for (int i = 0; i < PLJ_NMACH; i++) a->n[i] = -1;
}

static void ack_line(pl_acks *a, const char *l) {
  char kind, hx[2 * PLJ_KEYBYTES + 2];
  unsigned idx, n;
  unsigned long long h;
  bool done = strncmp(l, "done ", 5) == 0;
  const char *p = done ? l + 5 : l;
  if (sscanf(p, "s %u %64s", &n, hx) == 2) {
    a->sink_done = done && hex_bits(hx, a->sink_bits);
    return;
  }
  if (sscanf(l, "P %u", &n) == 1 && n < PL_NKEYS) {
    a->posted[n / 8] |= (uint8_t)(1u << (n % 8));
    return;
  }
  if (sscanf(l, "e %u", &n) == 1 && n < PL_NKEYS) {
    a->acked[n / 8] |= (uint8_t)(1u << (n % 8));
    return;
  }
  if (sscanf(p, "%c %u %u %llu", &kind, &idx, &n, &h) >= 3) {
    int m = mach(kind, idx);
    if (m < 0) return;
    /* "done" comes from the last step, before its END record is written:
     * the machine may be gone, but its last state is not acknowledged */
    if (done) a->done[m] = true;
    else if ((int64_t)n > a->n[m]) a->n[m] = n;
  }
}

void plj_acks_at(const pl_model *m, size_t k, pl_acks *a) {
  acks_init(a);
  for (size_t i = 0; i < k; i++) {
    const char *s = plm_ack(m, i);
    if (s == NULL) continue;
    char line[512];
    while (*s) { /* an ack record holds whole lines */
      size_t n = strcspn(s, "\n");
      snprintf(line, sizeof line, "%.*s", (int)n, s);
      ack_line(a, line);
      s += n + (s[n] == '\n');
    }
  }
}

/* ---- judging an image ---- */

const char *const plj_cat_name[PLJ_NCAT] = {
    "ok", "refused", "lost (no state dir)", "lost", "invented", "unfinished",
    "journal check refused", "bad"};

static void fail(pl_verdict *v, int cat, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(pl_verdict *v, int cat, const char *fmt, ...) {
  if (v->cat) return; /* the first reason is the one shown */
  v->cat = cat;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->why, sizeof v->why, fmt, ap);
  va_end(ap);
}

void plj_check(const char *workload, const char *mealy, const char *img,
               const char *state_rel, const pl_acks *a, pl_verdict *v) {
  char state[2 * PATH_MAX], errpath[PATH_MAX + 16];
  snprintf(state, sizeof state, "%s/%s", img, state_rel);
  snprintf(errpath, sizeof errpath, "%s.err", img);
  struct stat st;
  bool had_dir = stat(state, &st) == 0;
  char check_err[512] = "";
  if (mealy && had_dir) { /* before the open, which repairs */
    const char *cargs[] = {mealy, "journal", "check", state, NULL};
    pl_out c;
    plp_run(mealy, cargs, NULL, errpath, 120, &c);
    free(c.text);
    /* 0 sound, 3 a suspect tail (one an open cuts: after a power loss
     * that reorders sectors, it is not a write cut short); 1 damage */
    if (!WIFEXITED(c.status) ||
        (WEXITSTATUS(c.status) != 0 && WEXITSTATUS(c.status) != 3))
      snprintf(check_err, sizeof check_err, "%s", plp_first_line(errpath));
  }
  const char *args[] = {workload, state, "recover", NULL};
  pl_out o;
  plp_run(workload, args, NULL, errpath, 120, &o); /* < 1 s */
  hashes_init();
  memset(v, 0, sizeof *v);
  bool present[PLJ_NMACH] = {0}, fin[PLJ_NMACH] = {0}, sink = false, sink_fin = false;
  int64_t rn[PLJ_NMACH], last[PLJ_NMACH];
  uint8_t sink_bits[PLJ_KEYBYTES] = {0}, final_bits[PLJ_KEYBYTES] = {0};
  bool opened = false;
  unsigned long long nrec = 0, parked = 0, torn = 0;
  char *save = NULL;
  for (char *l = strtok_r(o.text ? o.text : (char[]){0}, "\n", &save); l;
       l = strtok_r(NULL, "\n", &save)) {
    char kind, hx[2 * PLJ_KEYBYTES + 2];
    unsigned idx, n;
    unsigned long long h = 0;
    if (sscanf(l, "open %llu %llu %llu", &nrec, &parked, &torn) == 3) {
      opened = true;
    } else if (strncmp(l, "BAD", 3) == 0 || strcmp(l, "HANG") == 0) {
      fail(v, PLJ_BAD, "the recovered workload says: %s", l);
    } else if (sscanf(l, "R s %u %64s", &n, hx) == 2) {
      sink = true;
      if (!hex_bits(hx, sink_bits)) fail(v, PLJ_BAD, "a sink line: %s", l);
      unsigned cnt = 0;
      for (unsigned k = 0; k < PL_NKEYS; k++) {
        cnt += bit(sink_bits, k);
        if (bit(sink_bits, k) && !bit(a->posted, k))
          fail(v, PLJ_INVENTED, "the sink came back holding key %u, which was "
               "never posted", k);
      }
      if (cnt != n) fail(v, PLJ_INVENTED, "the sink came back with count %u "
                         "but %u keys", n, cnt);
    } else if (sscanf(l, "done s %u %64s", &n, hx) == 2) {
      sink_fin = hex_bits(hx, final_bits);
    } else if (sscanf(l, "R %c %u %u %llu", &kind, &idx, &n, &h) >= 3) {
      int m = mach(kind, idx);
      char nm[32];
      if (m < 0 || present[m]) {
        fail(v, PLJ_BAD, "a recovered line that makes no sense: %s", l);
        continue;
      }
      mach_name(m, nm);
      present[m] = true;
      rn[m] = n;
      last[m] = -1;
      int64_t acked = a->n[m] > 0 ? a->n[m] : 0;
      if ((int64_t)n < a->n[m])
        fail(v, PLJ_LOST, "%s came back at %u, but %lld was acknowledged", nm,
             n, (long long)a->n[m]);
      else if ((int64_t)n > acked + 1)
        fail(v, PLJ_INVENTED, "%s came back at %u, past the acknowledged %lld "
             "and the one after it", nm, n, (long long)a->n[m]);
      if (m < PL_COUNTERS && (n > PL_TARGET || h != hashes[n]))
        fail(v, PLJ_INVENTED, "%s came back at %u with a hash its steps never "
             "made", nm, n);
    } else if (sscanf(strncmp(l, "done ", 5) == 0 ? l + 5 : l, "%c %u %u %llu",
                      &kind, &idx, &n, &h) >= 3 && mach(kind, idx) >= 0) {
      int m = mach(kind, idx);
      char nm[32];
      mach_name(m, nm);
      if (!present[m]) {
        fail(v, PLJ_BAD, "%s ran but was not recovered: %s", nm, l);
        continue;
      }
      if (strncmp(l, "done ", 5) == 0) {
        fin[m] = true;
        if (n != PL_TARGET) fail(v, PLJ_BAD, "%s ended at %u", nm, n);
      } else if (last[m] >= 0 ? (int64_t)n != last[m] + 1
                              : (int64_t)n != rn[m] && (int64_t)n != rn[m] + 1) {
        fail(v, PLJ_BAD, "%s went from %lld to %u", nm,
             (long long)(last[m] >= 0 ? last[m] : rn[m]), n);
      } else {
        last[m] = n;
      }
      if (m < PL_COUNTERS && (n > PL_TARGET || h != hashes[n]))
        fail(v, PLJ_BAD, "%s at %u has a hash its steps never made", nm, n);
    }
  }
  if (!opened) {
    const char *e = plp_first_line(errpath);
    if (WIFEXITED(o.status) && WEXITSTATUS(o.status) == 4)
      fail(v, PLJ_REFUSED, "the open refused the image: %s", e);
    else
      fail(v, PLJ_BAD, "the recovery did not open (status %d): %s", o.status, e);
  }
  if (check_err[0])
    fail(v, PLJ_CHECK, "`mealy journal check` refused the image: %s", check_err);
  if (parked) fail(v, PLJ_BAD, "%llu instances parked", parked);
  /* what was acknowledged and is gone */
  for (int m = 0; m < PLJ_NMACH; m++) {
    char nm[32];
    mach_name(m, nm);
    if (!present[m] && a->n[m] >= 0 && !a->done[m])
      fail(v, had_dir ? PLJ_LOST : PLJ_LOST_DIR, "%s was acknowledged at %lld and "
           "did not come back%s", nm, (long long)a->n[m],
           had_dir ? "" : " (the image has no state directory: its entry in "
                          "the root was never synced)");
    if (present[m] && !fin[m])
      fail(v, PLJ_UNFINISHED, "%s came back but did not finish", nm);
  }
  for (unsigned k = 0; k < PL_NKEYS; k++) {
    if (!bit(a->acked, k)) continue;
    if (!sink && !a->sink_done)
      fail(v, had_dir ? PLJ_LOST : PLJ_LOST_DIR, "durable post %u was acknowledged "
           "but the sink did not come back%s", k,
           had_dir ? "" : " (the image has no state directory)");
    else if (sink && sink_fin && !bit(final_bits, k))
      fail(v, PLJ_LOST, "durable post %u was acknowledged but the sink never "
           "got it", k);
  }
  if (sink && !sink_fin) fail(v, PLJ_UNFINISHED, "the sink did not finish");
  for (unsigned k = 0; sink_fin && k < PL_NKEYS; k++)
    if (bit(final_bits, k) && !bit(a->posted, k))
      fail(v, PLJ_INVENTED, "the sink got key %u, which was never posted", k);
  if (!(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0) && opened)
    fail(v, PLJ_BAD, "the recovered workload ended with status %d: %s", o.status,
         plp_first_line(errpath));
  free(o.text);
}

bool plj_complete(const pl_acks *a) {
  bool ok = a->sink_done;
  for (int i = 0; i < PLJ_NMACH; i++) ok &= a->done[i];
  /* a key posted just before a kill may be gone: it was never acked */
  for (int k = 0; k < PLJ_KEYBYTES; k++)
    ok &= (a->acked[k] & ~a->sink_bits[k]) == 0 &&
          (a->sink_bits[k] & ~a->posted[k]) == 0;
  return ok;
}
