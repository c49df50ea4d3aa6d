/*
 * action.c - the action registry of the fsm layer, and what an action
 * sees of its call (mly_action_*).
 *
 * Actions are C functions bound to names, per runtime: the loader
 * checks every name a file uses against this table (fsm_action_find) at
 * load time, and the interpreter calls them through it.  An action sees
 * only its struct mly_action_call: the working context, the scratch map,
 * the idempotency key and where it runs; it answers through the call
 * (next event, failure).  Nothing here touches the runtime, so a
 * blocking action may use all of it from a threadpool thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsmrt.h"

static bool action_name_ok(const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > MLY_NAME_MAX) return false;
  for (const char *p = name; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) return false;
  return true;
}

int mly_action_register(mly_runtime *rt, const char *name, mly_action_fn fn,
                        void *arg, uint32_t flags) {
  if (rt == NULL || fn == NULL || !action_name_ok(name) ||
      (flags & ~MLY_ACTION_BLOCKING))
    return MLY_EINVAL;
  int rc = mly_fsm_attach(rt);
  if (rc < 0) return rc;
  fsm_rt *f = fsm_rt_get(rt);
  if (fsm_action_find(f, name) != NULL) return MLY_EEXIST;
  fsm_action_ent *e = calloc(1, sizeof *e);
  if (e == NULL || (e->name = strdup(name)) == NULL) {
    free(e);
    return MLY_ENOMEM;
  }
  e->fn = fn;
  e->arg = arg;
  e->flags = flags;
  bool hash_oom = false;
  HASH_ADD_KEYPTR(hh, f->actions, e->name, strlen(e->name), e);
  if (hash_oom) {
    free(e->name);
    free(e);
    return MLY_ENOMEM;
  }
  /* dispatches that wait for it go on (registering is rare: a scan) */
  for (uint32_t i = 0; i < f->nruns; i++) {
    fsm_run *r = f->runs[i];
    if (r && r->async == FSM_ASYNC_ACTION && !r->job_done &&
        strcmp(r->missing, name) == 0) {
      r->job_done = true;
      const char *who = mly_instance_name(rt, r->id);
      fsm_log(f, "action %s is registered: instance %s goes on", name,
              who ? who : "(unnamed)");
      mly_wake(rt, r->id);
    }
  }
  return 0;
}

int fsm_action_await(fsm_rt *f, mly_machine *m, fsm_run *r,
                     const fsm_action *a) {
  r->async = FSM_ASYNC_ACTION;
  r->job_done = false;
  r->missing = a->name;
  /* a dispatch that cannot run holds no slot of its queue (it may wait
   * until a restart): the slot goes back, and is taken again when the
   * action is registered (fsm_dispatch) */
  fsm_slot_give_back(f, r);
  fsm_log(f, "instance %s (machine %s), state %s: action %s is not "
          "registered; its dispatch waits (nothing is lost, nothing "
          "committed) and goes on once %s is registered: restart the host "
          "with the library that has it (mealy fsm run --actions LIB.so)",
          mly_self_name(m), r->def->name, r->call.state, a->name, a->name);
  return FSM_WALK_BLOCKING;
}

const fsm_action_ent *fsm_action_find(const fsm_rt *f, const char *name) {
  if (f == NULL || name == NULL) return NULL;
  fsm_action_ent *e = NULL;
  HASH_FIND_STR(f->actions, name, e);
  return e;
}

/* A definition's action to its registry entry, cached by address. */
const fsm_action_ent *fsm_action_resolve(fsm_rt *f, const fsm_action *a) {
  uintptr_t h = (uintptr_t)a;
  h ^= h >> 9;
  h ^= h >> 17;
  size_t i = h % (sizeof f->acache / sizeof f->acache[0]);
  if (f->acache[i].a == a) return f->acache[i].e;
  const fsm_action_ent *e = fsm_action_find(f, a->name);
  if (e != NULL) {
    f->acache[i].a = a;
    f->acache[i].e = e;
  }
  return e;
}

bool mly_action_known(const char *name, void *rt) {
  return fsm_action_find(fsm_rt_get(rt), name) != NULL;
}

void fsm_actions_free(fsm_rt *f) {
  fsm_action_ent *e, *tmp;
  HASH_ITER(hh, f->actions, e, tmp) {
    HASH_DEL(f->actions, e);
    free(e->name);
    free(e);
  }
}

/* ---- one call ---- */

mly_value *mly_action_context(mly_action_call *c) { return c->context; }
/* Made on first use: most dispatches never need one. */
mly_value *mly_action_scratch(mly_action_call *c) {
  if (c->scratch == NULL) c->scratch = mly_value_map();
  return c->scratch;
}
const char *mly_action_key(const mly_action_call *c) { return c->key; }
const char *mly_action_machine(const mly_action_call *c) { return c->machine; }
const char *mly_action_state(const mly_action_call *c) { return c->state; }
const char *mly_action_event_in(const mly_action_call *c) { return c->event; }
uint32_t mly_action_attempt(const mly_action_call *c) { return c->attempt; }

int mly_action_event(mly_action_call *c, const char *event) {
  if (c == NULL || event == NULL) return MLY_EINVAL;
  size_t n = strlen(event);
  if (n > MLY_NAME_MAX) return MLY_ENAMETOOLONG;
  if (!action_name_ok(event)) return MLY_EINVAL;
  memcpy(c->next, event, n + 1);
  return 0;
}

int mly_action_fail(mly_action_call *c, bool permanent, const char *fmt,
                    ...) {
  c->fail = permanent ? MLY_ACTION_PERMANENT : MLY_ACTION_RETRY;
  c->error[0] = '\0';
  if (fmt != NULL) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
  }
  return permanent ? MLY_ECANCELED : MLY_EAGAIN;
}

void fsm_text_clean(char *s) {
  size_t n = strlen(s), o = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp = 0;
    size_t k = mly_utf8_at((const unsigned char *)s + i, n - i, &cp);
    if (k == 0 || (cp < 0x20 && cp != '\t') || (cp >= 0x7f && cp < 0xa0)) {
      s[o++] = '?';
      i += k ? k : 1;
      continue;
    }
    memmove(s + o, s + i, k);
    o += k;
    i += k;
  }
  s[o] = '\0';
}

/* An action returned: fold its return value into the call's failure. */
void fsm_call_returned(mly_action_call *c, int rc) {
  if (rc >= 0 || c->fail != 0) return;
  c->fail = MLY_ACTION_RETRY;
  snprintf(c->error, sizeof c->error, "%s", mly_strerror(rc));
}

const char *fsm_where_name(fsm_where w) {
  static const char *const names[] = {"exit",         "fan_in", "transition",
                                      "entry",        "continuation",
                                      "action",       "done"};
  return (unsigned)w < sizeof names / sizeof names[0] ? names[w] : "?";
}
