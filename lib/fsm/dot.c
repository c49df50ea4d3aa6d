/*
 * dot.c - a machine as a Graphviz DOT graph (`mealy fsm dot`).
 *
 * The initial state is bold with an arrow from a point; final states are
 * double circles, wait states hexagons; continuation and fan-in states
 * say so in their labels ("continuation", "fan-in 5s", "fan-in 3 of 4");
 * a state's action is on its second line.  Each transition is labelled
 * with its event, then its countdown and action; failure edges are
 * dashed and labelled "failure".  Names come from the loader's checked
 * set (letters, digits, '-'), action names and argv may hold anything,
 * so every string is quoted and escaped.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "def.h"

/* A DOT string's text: quotes and backslashes escaped, controls dropped. */
static void dot_text(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    if ((unsigned char)*s >= 0x20 && *s != 0x7f) fputc(*s, f);
  }
}

/* In the largest unit that divides it: 3d, 2h, 5m, 10s, 250ms. */
static void dot_ms(FILE *f, int64_t ms) {
  static const struct { int64_t ms; const char *unit; } units[] = {
      {86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (ms > 0 && ms % units[i].ms == 0) {
      fprintf(f, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
      return;
    }
  fprintf(f, "%" PRId64 "ms", ms);
}

static void dot_action(FILE *f, const fsm_action *a) {
  if (a->kind == FSM_ACT_C) dot_text(f, a->name);
  else if (a->kind == FSM_ACT_EXEC) {
    fputs("exec ", f);
    dot_text(f, a->argv[0]);
  }
}

static void dot_state(FILE *f, const fsm_state *s, bool initial) {
  const char *shape = s->final ? "doublecircle" : s->wait ? "hexagon"
                                                          : "ellipse";
  fprintf(f, "  \"");
  dot_text(f, s->name);
  fprintf(f, "\" [shape=%s", shape);
  if (initial) fputs(", style=bold", f);
  fputs(", label=\"", f);
  dot_text(f, s->name);
  if (s->continuation) fputs("\\n(continuation)", f);
  if (s->fan_in == FSM_FAN_WINDOW) {
    fputs("\\n(fan-in ", f);
    dot_ms(f, s->fan_in_window_ms);
    fputs(")", f);
  } else if (s->fan_in == FSM_FAN_COUNT) {
    if (s->fan_in_count)
      fprintf(f, "\\n(fan-in %" PRIu32 " of %" PRIu32 ")",
              s->fan_in_count - s->fan_in_tolerate, s->fan_in_count);
    else fputs("\\n(fan-in all)", f);
  }
  if (s->wait) {
    fputs("\\n(wait", f);
    if (s->wait_timeout_ms >= 0) {
      fputs(" ", f);
      dot_ms(f, s->wait_timeout_ms);
    }
    fputs(")", f);
  }
  if (s->action.kind != FSM_ACT_NONE) {
    fputs("\\n", f);
    dot_action(f, &s->action);
  }
  fputs("\"];\n", f);
}

static void dot_trans(FILE *f, const fsm_machine *m, const fsm_state *s,
                      const fsm_transition *t) {
  fputs("  \"", f);
  dot_text(f, s->name);
  fputs("\" -> \"", f);
  dot_text(f, m->states[t->to].name);
  fputs("\" [label=\"", f);
  dot_text(f, t->event);
  const fsm_countdown *cd = t->countdown.min_ms >= 0 ? &t->countdown
                                                     : &m->countdown;
  if (cd->min_ms >= 0) {
    fputs("\\nafter ", f);
    dot_ms(f, cd->min_ms);
    if (cd->max_ms != cd->min_ms) {
      fputs("..", f);
      dot_ms(f, cd->max_ms);
    }
  }
  if (t->action.kind != FSM_ACT_NONE) {
    fputs("\\n/ ", f);
    dot_action(f, &t->action);
  }
  fputs("\"];\n", f);
}

int mly_fsm_dot(const mly_fsm_machine *pm, void *file) {
  const fsm_machine *m = (const fsm_machine *)pm;
  FILE *f = file;
  if (m == NULL || f == NULL) return MLY_EINVAL;
  fputs("digraph \"", f);
  dot_text(f, m->name);
  fputs("\" {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n"
        "  edge [fontname=\"Helvetica\", fontsize=10];\n"
        "  \"__start\" [shape=point, label=\"\"];\n", f);
  for (size_t i = 0; i < m->nstates; i++)
    dot_state(f, &m->states[i], i == m->initial);
  if (m->initial < m->nstates) {
    fputs("  \"__start\" -> \"", f);
    dot_text(f, m->states[m->initial].name);
    fputs("\";\n", f);
  }
  for (size_t i = 0; i < m->nstates; i++) {
    const fsm_state *s = &m->states[i];
    for (size_t t = 0; t < s->ntrans; t++)
      if (s->trans[t].to < m->nstates) dot_trans(f, m, s, &s->trans[t]);
    uint32_t fail = s->on_failure != FSM_NO_STATE ? s->on_failure
                                                  : m->on_failure;
    if (!s->final && fail < m->nstates && fail != i) {
      fputs("  \"", f);
      dot_text(f, s->name);
      fputs("\" -> \"", f);
      dot_text(f, m->states[fail].name);
      fputs("\" [style=dashed, label=\"failure\"];\n", f);
    }
  }
  fputs("}\n", f);
  return ferror(f) ? MLY_EIO : 0;
}
