/*
 * interp_rt.c - the fsm layer of a runtime: attaching it (its two
 * types), the table of dispatches in flight, small shared helpers (log
 * lines, the wall clock, random draws), and freeing it all with the
 * runtime.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsmrt.h"

/* The layer hangs on its runtime through mly_runtime_attach: the
 * runtime below knows nothing of it (arrows point down). */
#define FSM_ATTACH_KEY "mly.fsm"

static void fsm_rt_release(void *p);

fsm_rt *fsm_rt_get(mly_runtime *rt) {
  return rt ? mly_runtime_attached(rt, FSM_ATTACH_KEY) : NULL;
}

int mly_fsm_attach(mly_runtime *rt) {
  if (rt == NULL) return MLY_EINVAL;
  if (!mly_runtime_on_loop_thread(rt)) return MLY_EPERM;
  if (fsm_rt_get(rt) != NULL) return 0;
  fsm_rt *f = calloc(1, sizeof *f);
  if (f == NULL) return MLY_ENOMEM;
  f->rt = rt;
  f->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)f ^ 0x9e3779b97f4a7c15ULL;
  /* libuv's pool: UV_THREADPOOL_SIZE threads (default 4) */
  const char *ps = getenv("UV_THREADPOOL_SIZE");
  long pool = ps ? strtol(ps, NULL, 10) : 4;
  if (pool < 2) pool = 2;
  if (pool > 1024) pool = 1024;
  f->jobs_max = (uint32_t)pool - 1;
  int rc = mly_type_register(rt, &fsm_type_def, &f->type);
  if (rc == 0) rc = mly_type_register(rt, &fsm_def_type_def, &f->def_type);
  if (rc == 0) rc = fsm_fan_attach(f);
  if (rc < 0) { /* a registered type stays: harmless, never spawned */
    free(f);
    return rc;
  }
  rc = mly_runtime_attach(rt, FSM_ATTACH_KEY, f, fsm_rt_release);
  if (rc < 0) {
    free(f);
    return rc;
  }
  return 0;
}

/* Called by the runtime when it is freed, with the other layers'. */
static void fsm_rt_release(void *p) {
  fsm_rt *f = p;
  for (uint32_t i = 0; i < f->nruns; i++) {
    fsm_run *r = f->runs[i];
    if (r == NULL) continue;
    fsm_call_clear(&r->call);
    fsm_exec_cleanup(r);
    free(r);
  }
  free(f->runs);
  for (fsm_run *o = f->orphans; o != NULL; o = o->jobq_next)
    o->f = NULL; /* their completion frees them, touching nothing else */
  fsm_actions_free(f);
  fsm_defs_free(f);
  free(f);
}

void fsm_set_test_hooks(mly_runtime *rt, const fsm_test_hooks *h) {
  fsm_rt *f = fsm_rt_get(rt);
  if (f == NULL) return;
  f->hooks = *h;
  if (h->jitter_seed) f->rng = h->jitter_seed;
}

void mly_fsm_set_log(mly_runtime *rt, void (*fn)(void *arg, const char *line),
                     void *arg) {
  /* before any action is registered: attach the layer now, or the
     setting would be lost */
  if (rt != NULL && fsm_rt_get(rt) == NULL) (void)mly_fsm_attach(rt);
  fsm_rt *f = fsm_rt_get(rt);
  if (f == NULL) return;
  f->log = fn;
  f->log_arg = arg;
}

void fsm_log(fsm_rt *f, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (f->log) f->log(f->log_arg, line);
  else fprintf(stderr, "mealy fsm: %s\n", line);
}

/* Wall clock, coarse (a tick, ~1-4 ms): history, retry ages and the
 * deadlines shown by mly_fsm_info need no more, and it costs no syscall. */
int64_t fsm_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t fsm_rand(fsm_rt *f) { /* xorshift64* */
  uint64_t x = f->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  f->rng = x;
  return x * 0x2545f4914f6cdd1dULL;
}

/* Copy src into dst (len bytes), cut and always NUL-ended. */
void fsm_strlcpy(char *dst, const char *src, size_t len) {
  str_copy(dst, src, len);
}

void fsm_hash_hex(const unsigned char *hash, char *hex) {
  static const char d[] = "0123456789abcdef";
  for (int i = 0; i < FSM_HASH_LEN; i++) {
    hex[2 * i] = d[hash[i] >> 4];
    hex[2 * i + 1] = d[hash[i] & 15];
  }
  hex[2 * FSM_HASH_LEN] = '\0';
}

/* ---- dispatches in flight ---- */

fsm_run *fsm_run_get(fsm_rt *f, mly_id id) {
  uint32_t slot = (uint32_t)id;
  fsm_run *r = slot < f->nruns ? f->runs[slot] : NULL;
  return r != NULL && r->id == id ? r : NULL;
}

fsm_run *fsm_run_make(fsm_rt *f, mly_id id) {
  fsm_run *r = fsm_run_get(f, id);
  if (r != NULL) return r;
  r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->id = id;
  r->f = f;
  r->pid = -1;
  r->stdout_fd = r->stderr_fd = -1;
  r->exec_due_ms = -1;
  uint32_t slot = (uint32_t)id;
  if (slot >= f->nruns) {
    uint32_t n = f->nruns ? f->nruns : 64;
    while (n <= slot) n *= 2;
    fsm_run **v = realloc(f->runs, n * sizeof *v);
    if (v == NULL) {
      free(r);
      return NULL;
    }
    memset(v + f->nruns, 0, (n - f->nruns) * sizeof *v);
    f->runs = v;
    f->nruns = n;
  }
  if (f->runs[slot] != NULL) /* a stale one: its instance is gone */
    fsm_run_drop(f, f->runs[slot]);
  f->runs[slot] = r;
  return r;
}

void fsm_call_clear(mly_action_call *c) {
  mly_value_free(c->context);
  mly_value_free(c->scratch);
  mly_value_free(c->forks);
  mly_value_free(c->spawns);
  mly_value_free(c->token);
  c->context = c->scratch = c->forks = c->spawns = c->token = NULL;
  c->token_set = false;
  c->fail = 0;
  c->next[0] = c->error[0] = '\0';
}

/* The instance ended: forget its dispatch, unless a threadpool job still
 * uses it (then the job's completion frees it). */
void fsm_run_drop(fsm_rt *f, fsm_run *r) {
  uint32_t slot = (uint32_t)r->id;
  if (slot < f->nruns && f->runs[slot] == r) f->runs[slot] = NULL;
  fsm_slot_give_back(f, r); /* its queue's slot, held or asked */
  fsm_exec_cleanup(r);
  if (r->job_queued) { /* never started: out of the queue */
    fsm_run **pp = &f->jobq_head, *prev = NULL;
    while (*pp != r) {
      prev = *pp;
      pp = &(*pp)->jobq_next;
    }
    *pp = r->jobq_next;
    if (f->jobq_tail == r) f->jobq_tail = prev;
    r->job_queued = false;
    r->async = FSM_ASYNC_NONE;
  }
  if (r->async == FSM_ASYNC_BLOCKING && !r->job_done) {
    r->orphan = true;
    r->jobq_next = f->orphans;
    f->orphans = r;
    return;
  }
  fsm_call_clear(&r->call);
  free(r);
}
