/*
 * validate.c - the checks that need a whole machine, or the whole set,
 * once every file is read: names that refer to states, exactly one
 * initial state and at least one final, a transition per event and
 * state, every state reachable and every reachable state able to end,
 * Fantasm's forbidden combinations, wait states whose events lead
 * somewhere, machine names unique across files, and (with a registry)
 * that every action is registered.  Each problem is reported where it is
 * written; all of them are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

/* A machine's name for messages (it may have been refused). */
#define MNAME(m) ((m)->name ? (m)->name : "?")

bool fsm_name_ok(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
          (s[n] >= '0' && s[n] <= '9') || s[n] == '-'))
      return false;
  return n >= 1 && n <= 50;
}

/* "a, b, c" (cut with "..." past the buffer) for messages. */
static void state_list(const fsm_machine *m, char *buf, size_t len) {
  size_t at = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < m->nstates; i++) {
    if (m->states[i].name == NULL) continue;
    int w = snprintf(buf + at, len - at, "%s%s", at ? ", " : "",
                     m->states[i].name);
    if (w < 0 || (size_t)w >= len - at) {
      if (len > 4) memcpy(buf + len - 4, "...", 4);
      return;
    }
    at += (size_t)w;
  }
}

/* ------------------------------------------------------------------ */
/* Names: sorted once, so repeats and look-ups cost n log n however    */
/* many states, events or machines a file has.                         */

typedef struct named {
  const char *name;
  size_t idx;
} named;

typedef const char *(*name_at_fn)(const void *base, size_t i);

static int named_cmp(const void *a, const void *b) {
  const named *x = a, *y = b;
  int r = strcmp(x->name, y->name);
  return r ? r : (x->idx > y->idx) - (x->idx < y->idx);
}

/* The n names (NULL ones left out) sorted by name, then position; *len
 * gets how many.  NULL when out of memory. */
static named *sort_names(const void *base, size_t n, name_at_fn at,
                         size_t *len) {
  named *v = malloc((n ? n : 1) * sizeof *v);
  if (v == NULL) return NULL;
  *len = 0;
  for (size_t i = 0; i < n; i++)
    if (at(base, i)) v[(*len)++] = (named){at(base, i), i};
  qsort(v, *len, sizeof *v, named_cmp);
  return v;
}

/* first[i]: the position of the first entry named as entry i when i
 * repeats it, else SIZE_MAX.  MLY_ENOMEM or 0. */
static int repeats(const void *base, size_t n, name_at_fn at, size_t *first) {
  size_t len;
  named *v = sort_names(base, n, at, &len);
  if (v == NULL) return MLY_ENOMEM;
  for (size_t i = 0; i < n; i++) first[i] = SIZE_MAX;
  for (size_t i = 1, run = 0; i < len; i++) {
    if (strcmp(v[i].name, v[run].name) != 0) run = i;
    else first[v[i].idx] = v[run].idx;
  }
  free(v);
  return 0;
}

static const char *state_name_at(const void *base, size_t i) {
  return ((const fsm_state *)base)[i].name;
}

static const char *event_at(const void *base, size_t i) {
  return ((const fsm_transition *)base)[i].event;
}

static const char *machine_name_at(const void *base, size_t i) {
  return ((const fsm_machine *)base)[i].name;
}

/* The position of the first entry named name in a sorted v (a repeated
 * name is an error, and refers to the first), or FSM_NO_STATE. */
static uint32_t find_named(const named *v, size_t len, const char *name) {
  size_t lo = 0, hi = len; /* the first entry not below name */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(v[mid].name, name) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo < len && strcmp(v[lo].name, name) == 0 ? (uint32_t)v[lo].idx
                                                    : FSM_NO_STATE;
}

static void check_queue(fsm_loader *L, const fsm_ref *ref) {
  const mly_fsm_load_options *o = L->o;
  if (o->queue_known == NULL || o->queue_known(ref->name, o->queue_arg))
    return;
  fsm_ld_bad(L, &ref->pos, "queue '%s' is not declared; declare it under "
             "queues: (or in C before the load), or fix the name",
             mly_conf_show(ref->name).s);
}

static void resolve_refs(fsm_loader *L) {
  size_t nm = L->set->nmachines, *lens = calloc(nm ? nm : 1, sizeof *lens);
  named **sorted = calloc(nm ? nm : 1, sizeof *sorted);
  if (lens == NULL || sorted == NULL) {
    fsm_ld_nomem(L);
    goto out;
  }
  for (size_t r = 0; r < L->nrefs; r++) {
    fsm_ref *ref = &L->refs[r];
    if (ref->kind == REF_QUEUE) {
      check_queue(L, ref);
      continue;
    }
    fsm_machine *m = &L->set->machines[ref->mi];
    if (sorted[ref->mi] == NULL &&
        (sorted[ref->mi] = sort_names(m->states, m->nstates, state_name_at,
                                      &lens[ref->mi])) == NULL) {
      fsm_ld_nomem(L);
      goto out;
    }
    uint32_t to = find_named(sorted[ref->mi], lens[ref->mi], ref->name);
    if (to == FSM_NO_STATE) {
      char known[512];
      state_list(m, known, sizeof known);
      fsm_ld_bad(L, &ref->pos, "'%s' is not a state of machine '%s' "
                 "(states: %s); fix the name or add the state",
                 mly_conf_show(ref->name).s, MNAME(m), known);
      continue;
    }
    switch (ref->kind) {
    case REF_TO: m->states[ref->si].trans[ref->ti].to = to; break;
    case REF_STATE_FAIL: m->states[ref->si].on_failure = to; break;
    case REF_MACHINE_FAIL: m->on_failure = to; break;
    case REF_QUEUE: break; /* checked above */
    }
  }
out:
  for (size_t i = 0; sorted && i < nm; i++) free(sorted[i]);
  free(sorted);
  free(lens);
}

static void check_names(fsm_loader *L, fsm_machine *m) {
  size_t most = m->nstates;
  for (size_t i = 0; i < m->nstates; i++)
    if (m->states[i].ntrans > most) most = m->states[i].ntrans;
  size_t *first = malloc((most ? most : 1) * sizeof *first);
  if (first == NULL || repeats(m->states, m->nstates, state_name_at, first)) {
    free(first);
    fsm_ld_nomem(L);
    return;
  }
  for (size_t i = 0; i < m->nstates; i++) {
    const fsm_state *s = &m->states[i], *f = &m->states[first[i]];
    if (first[i] != SIZE_MAX)
      fsm_ld_bad(L, &s->pos, "state '%s' is defined twice in machine '%s' "
                 "(first at %u:%u); rename or remove one", s->name,
                 MNAME(m), f->pos.line, f->pos.col);
  }
  for (size_t i = 0; i < m->nstates; i++) {
    fsm_state *s = &m->states[i];
    if (s->name == NULL) continue;
    if (repeats(s->trans, s->ntrans, event_at, first)) {
      fsm_ld_nomem(L);
      break;
    }
    for (size_t t = 0; t < s->ntrans; t++) {
      const fsm_transition *tr = &s->trans[t], *f = &s->trans[first[t]];
      if (first[t] != SIZE_MAX)
        fsm_ld_bad(L, &tr->pos, "event '%s' has two transitions from state "
                   "'%s' (first at %u:%u); keep one", tr->event, s->name,
                   f->pos.line, f->pos.col);
    }
  }
  free(first);
}

static void check_initial_final(fsm_loader *L, fsm_machine *m) {
  bool final = false;
  for (size_t i = 0; i < m->nstates; i++) {
    fsm_state *s = &m->states[i];
    final = final || s->final;
    if (!s->initial) continue;
    if (m->initial == FSM_NO_STATE) {
      m->initial = (uint32_t)i;
      continue;
    }
    const fsm_state *first = &m->states[m->initial];
    fsm_ld_bad(L, &s->pos, "machine '%s' has a second initial state '%s' "
               "(the first is '%s' at %u:%u); keep one initial: True",
               MNAME(m), s->name ? s->name : "?", first->name ? first->name : "?",
               first->pos.line, first->pos.col);
  }
  if (m->nstates == 0) return; /* said already */
  if (m->initial == FSM_NO_STATE)
    fsm_ld_bad(L, &m->pos, "machine '%s' has no initial state; mark one with "
               "initial: True", MNAME(m));
  if (!final)
    fsm_ld_bad(L, &m->pos, "machine '%s' has no final state; mark at least "
               "one with final: True", MNAME(m));
}

static bool is_join(const fsm_state *s) {
  return s->continuation || s->fan_in != FSM_FAN_NONE;
}

/* Fantasm's rules, and ours for wait states. */
static void check_state(fsm_loader *L, fsm_machine *m, fsm_state *s) {
  const char *n = s->name ? s->name : "?";
  if (s->action.kind == FSM_ACT_NONE && !s->final && !s->wait)
    fsm_ld_bad(L, &s->pos, "state '%s' has no action; add action: NAME (only "
               "final and wait states may have none)", n);
  if (s->continuation && s->fan_in != FSM_FAN_NONE)
    fsm_ld_bad(L, &s->pos, "state '%s' is both a continuation and a fan-in; "
               "split it into two states", n);
  if (is_join(s) && s->exit.kind != FSM_ACT_NONE)
    fsm_ld_bad(L, &s->exit.pos, "state '%s' is a %s state and may not have "
               "an exit action; move it to the next state's entry", n,
               s->continuation ? "continuation" : "fan-in");
  if (!s->continuation && s->continuation_countdown_ms >= 0)
    fsm_ld_bad(L, &s->pos, "state '%s' has continuation_countdown but is not "
               "a continuation; add continuation: True or remove it", n);
  if (s->fan_in == FSM_FAN_NONE && s->fan_in_group)
    fsm_ld_bad(L, &s->pos, "state '%s' has fan_in_group but no fan_in; add "
               "fan_in: or remove fan_in_group", n);
  if (s->wait && (is_join(s) || s->action.kind != FSM_ACT_NONE))
    fsm_ld_bad(L, &s->pos, "wait state '%s' may not have an action, "
               "continuation or fan_in: it only waits; put them in the "
               "states before or after it", n);
  if (s->wait && s->final)
    fsm_ld_bad(L, &s->pos, "state '%s' is final and waits; a final state "
               "ends the instance, so remove wait: or final:", n);
  for (size_t t = 0; t < s->ntrans; t++) {
    fsm_transition *tr = &s->trans[t];
    if (tr->action.kind == FSM_ACT_NONE) continue;
    if (is_join(s))
      fsm_ld_bad(L, &tr->action.pos, "a transition out of %s state '%s' may "
                 "not have an action; move it to the next state's entry",
                 s->continuation ? "continuation" : "fan-in", n);
    else if (tr->to < m->nstates && is_join(&m->states[tr->to]))
      fsm_ld_bad(L, &tr->action.pos, "a transition into %s state '%s' may "
                 "not have an action; move it to this state's exit or that "
                 "state's entry",
                 m->states[tr->to].continuation ? "continuation" : "fan-in",
                 m->states[tr->to].name);
  }
  /* each event a wait state waits for leads somewhere */
  size_t len;
  named *ev_sorted = s->wait ? sort_names(s->trans, s->ntrans, event_at, &len)
                             : NULL;
  if (s->wait && ev_sorted == NULL) {
    fsm_ld_nomem(L);
    return;
  }
  for (size_t w = 0; s->wait && w <= s->nwait_events; w++) {
    const char *ev = w < s->nwait_events ? s->wait_events[w]
                                         : s->wait_timeout_event;
    if (ev != NULL && find_named(ev_sorted, len, ev) == FSM_NO_STATE)
      fsm_ld_bad(L, &s->pos, "wait state '%s' waits for '%s' but has no "
                 "transition for it; add - event: %s, to: STATE", n, ev, ev);
  }
  free(ev_sorted);

}

/* The edges of the graph: transitions, and a failure edge from every
 * state that is not final to its on_failure (or the machine's). */
static uint32_t fail_of(const fsm_machine *m, const fsm_state *s) {
  if (s->final) return FSM_NO_STATE;
  return s->on_failure != FSM_NO_STATE ? s->on_failure : m->on_failure;
}

typedef struct graph {
  size_t *off;     /* edges of i: to[off[i] .. off[i+1]) */
  uint32_t *to;
  size_t *roff;    /* the same, reversed */
  uint32_t *rto;
  uint32_t *queue;
} graph;

static void graph_free(graph *g) {
  free(g->off);
  free(g->to);
  free(g->roff);
  free(g->rto);
  free(g->queue);
}

static size_t edges_of(const fsm_machine *m, size_t i, uint32_t *out) {
  const fsm_state *s = &m->states[i];
  size_t k = 0;
  for (size_t t = 0; t < s->ntrans; t++)
    if (s->trans[t].to < m->nstates) {
      if (out) out[k] = s->trans[t].to;
      k++;
    }
  uint32_t f = fail_of(m, s);
  if (f < m->nstates) {
    if (out) out[k] = f;
    k++;
  }
  return k;
}

static int graph_build(const fsm_machine *m, graph *g) {
  size_t n = m->nstates, e = 0;
  for (size_t i = 0; i < n; i++) e += edges_of(m, i, NULL);
  g->off = calloc(n + 1, sizeof *g->off);
  g->roff = calloc(n + 2, sizeof *g->roff);
  g->to = calloc(e ? e : 1, sizeof *g->to);
  g->rto = calloc(e ? e : 1, sizeof *g->rto);
  g->queue = calloc(n, sizeof *g->queue);
  if (!g->off || !g->roff || !g->to || !g->rto || !g->queue)
    return MLY_ENOMEM;
  for (size_t i = 0; i < n; i++)
    g->off[i + 1] = g->off[i] + edges_of(m, i, g->to + g->off[i]);
  for (size_t k = 0; k < e; k++) g->roff[g->to[k] + 2]++;
  for (size_t i = 0; i < n; i++) g->roff[i + 2] += g->roff[i + 1];
  for (size_t i = 0; i < n; i++)
    for (size_t k = g->off[i]; k < g->off[i + 1]; k++)
      g->rto[g->roff[g->to[k] + 1]++] = (uint32_t)i;
  return 0;
}

/* Marks in seen what the queued states reach (back: what reaches them). */
static void reach(const graph *g, bool back, bool *seen, size_t tail) {
  const size_t *off = back ? g->roff : g->off;
  const uint32_t *to = back ? g->rto : g->to;
  for (size_t head = 0; head < tail; head++) {
    uint32_t cur = g->queue[head];
    for (size_t k = off[cur]; k < off[cur + 1]; k++)
      if (!seen[to[k]]) seen[to[k]] = true, g->queue[tail++] = to[k];
  }
}

static void check_graph(fsm_loader *L, fsm_machine *m) {
  if (m->initial == FSM_NO_STATE || m->nstates == 0) return;
  graph g = {0};
  bool *fwd = calloc(m->nstates, sizeof *fwd);
  bool *end = calloc(m->nstates, sizeof *end);
  if (!fwd || !end || graph_build(m, &g) != 0) {
    fsm_ld_nomem(L);
    goto out;
  }
  fwd[m->initial] = true;
  g.queue[0] = m->initial;
  reach(&g, false, fwd, 1);
  /* the states that can end: backwards from every final one */
  size_t tail = 0;
  for (size_t i = 0; i < m->nstates; i++)
    if (m->states[i].final) end[i] = true, g.queue[tail++] = (uint32_t)i;
  reach(&g, true, end, tail);
  for (size_t i = 0; i < m->nstates; i++) {
    fsm_state *s = &m->states[i];
    const char *n = s->name;
    if (n == NULL) continue; /* refused as it was read */
    if (!fwd[i])
      fsm_ld_bad(L, &s->pos, "state '%s' is unreachable: no transition from "
                 "the initial state leads to it; add one or remove the "
                 "state", n);
    else if (!s->final && s->ntrans == 0)
      fsm_ld_bad(L, &s->pos, "state '%s' is not final and has no "
                 "transitions: an instance there could never move on; add "
                 "transitions: or final: True", n);
    else if (!end[i] && tail > 0)
      fsm_ld_bad(L, &s->pos, "no final state can be reached from state '%s': "
                 "an instance there could never end; add a transition that "
                 "leads to a final state", n);
  }
out:
  graph_free(&g);
  free(fwd);
  free(end);
}

static void check_actions(fsm_loader *L, const fsm_action *a) {
  const mly_fsm_load_options *o = L->o;
  if (a->kind != FSM_ACT_C || o->action_known == NULL) return;
  if (!o->action_known(a->name, o->action_arg))
    fsm_ld_bad(L, &a->pos, "action '%s' is not registered; register it with "
               "mly_action_register (or load the library that does: "
               "--actions LIB.so), or fix the name",
               mly_conf_show(a->name).s);
}

static void check_machine_actions(fsm_loader *L, const fsm_machine *m) {
  for (size_t i = 0; i < m->nstates; i++) {
    const fsm_state *s = &m->states[i];
    check_actions(L, &s->entry);
    check_actions(L, &s->action);
    check_actions(L, &s->exit);
    for (size_t t = 0; t < s->ntrans; t++) check_actions(L, &s->trans[t].action);
  }
}

static const char *ctype_key_at(const void *base, size_t i) {
  return ((const fsm_ctx_type *)base)[i].key;
}

static void check_ctypes(fsm_loader *L, const fsm_machine *m) {
  size_t *first = malloc((m->nctypes ? m->nctypes : 1) * sizeof *first);
  if (first == NULL || repeats(m->ctypes, m->nctypes, ctype_key_at, first)) {
    free(first);
    fsm_ld_nomem(L);
    return;
  }
  for (size_t i = 0; i < m->nctypes; i++) {
    const fsm_ctx_type *t = &m->ctypes[i];
    if (first[i] != SIZE_MAX)
      fsm_ld_bad(L, &t->pos, "context key '%s' is typed twice (first at "
                 "%u:%u); keep one", mly_conf_show(t->key).s,
                 m->ctypes[first[i]].pos.line, m->ctypes[first[i]].pos.col);
  }
  free(first);
}

static void check_set(fsm_loader *L) {
  fsm_set *set = L->set;
  size_t *first = malloc((set->nmachines ? set->nmachines : 1) *
                         sizeof *first);
  if (first == NULL ||
      repeats(set->machines, set->nmachines, machine_name_at, first)) {
    free(first);
    fsm_ld_nomem(L);
    return;
  }
  for (size_t i = 0; i < set->nmachines; i++) {
    const fsm_machine *m = &set->machines[i];
    if (first[i] == SIZE_MAX) continue;
    const fsm_pos *p = &set->machines[first[i]].pos;
    fsm_ld_bad(L, &m->pos, "machine '%s' is defined twice (first at "
               "%s:%u:%u); rename one", m->name, p->file, p->line, p->col);
  }
  free(first);
}

int fsm_validate(fsm_loader *L) {
  size_t before = L->nerrors;
  resolve_refs(L);
  check_set(L);
  for (size_t i = 0; i < L->set->nmachines && !L->nomem; i++) {
    fsm_machine *m = &L->set->machines[i];
    check_names(L, m);
    check_ctypes(L, m);
    check_initial_final(L, m);
    for (size_t s = 0; s < m->nstates; s++)
      if (m->states[s].name) check_state(L, m, &m->states[s]);
    check_graph(L, m);
    check_machine_actions(L, m);
  }
  return L->nomem ? MLY_ENOMEM : L->nerrors > before ? MLY_EINVAL : 0;
}
