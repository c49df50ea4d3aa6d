/*
 * introspect.c - what every instance is doing, for people and tools.
 *
 * Named yield points (D1) make this readable: "web is in `stopping`,
 * waiting for event exit, 3200 ms left on its timer".
 */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>

static const char *const lc_names[] = {"init", "ready", "active",
                                       "terminated", "failed"};

const char *mly_lifecycle_name(mly_lifecycle lc) {
  return (unsigned)lc < 5 ? lc_names[lc] : "?";
}

const char *inst_point_name(const mly_inst *m, char *buf, size_t len) {
  uint32_t pc = m->head.pc;
  const mly_type_def *d = &m->type->def;
  if (pc == 0) return "begin";
  if (pc < d->npoints) return d->points[pc];
  if (pc >= MLY__ANON_BASE)
    snprintf(buf, len, "line %" PRIu32, pc - MLY__ANON_BASE);
  else
    snprintf(buf, len, "#%" PRIu32, pc);
  return buf;
}

static void event_label(mly_runtime *rt, uint32_t id, char *buf, size_t len) {
  const char *name = intern_name(&rt->intern, id);
  if (name) snprintf(buf, len, "%s", name);
  else if (id == MLY_EV_ANY) snprintf(buf, len, "any");
  else if (id == MLY_EV_CHILD_EXIT) snprintf(buf, len, "child-exit");
  else if (id == MLY_EV_PROCESS_EXIT) snprintf(buf, len, "process-exit");
  else if (id > MLY_EV_SIGNAL_BASE && id < MLY_EV_SIGNAL_BASE + 65)
    snprintf(buf, len, "signal %u", id - MLY_EV_SIGNAL_BASE);
  else snprintf(buf, len, "%" PRIu32, id);
}

/* The longest text: "event " and an interned name (at most MLY_NAME_MAX). */
_Static_assert(sizeof ((mly_info *)0)->waiting >= sizeof "event " + MLY_NAME_MAX,
               "mly_info.waiting holds every waiting text whole");

static void waiting_text(mly_runtime *rt, const mly_inst *m, char *buf,
                         size_t len) {
  char ev[MLY_NAME_MAX + 1]; /* an interned name fits: see mly_info */
  switch (m->head.wait) {
  case W_TURN: snprintf(buf, len, "next turn"); break;
  case W_SLEEP: snprintf(buf, len, "timer"); break;
  case W_COND: snprintf(buf, len, "condition"); break;
  case W_REPLY: snprintf(buf, len, "reply %" PRIu64, m->wait_arg); break;
  case W_CHILDREN: snprintf(buf, len, "children to stop"); break;
  case W_EVENT:
    if (m->wait_id == MLY_EV_CHILD_EXIT && m->wait_arg != 0) {
      snprintf(buf, len, "child %" PRIu64, m->wait_arg);
      break;
    }
    event_label(rt, m->wait_id, ev, sizeof ev);
    snprintf(buf, len, "event %s", ev);
    break;
  default:
    snprintf(buf, len, (m->head.flags & F_QUEUED) ? "to run" : "-");
  }
}

static void fill(mly_runtime *rt, const mly_inst *m, mly_info *out) {
  out->id = m->id;
  out->parent = m->parent ? m->parent->id : 0;
  out->type = m->type->name;
  out->lifecycle = (mly_lifecycle)m->head.lc;
  out->point = inst_point_name(m, out->point_buf, sizeof out->point_buf);
  waiting_text(rt, m, out->waiting, sizeof out->waiting);
  out->timer_left_ms = -1;
  if (!(m->head.flags & F_QUEUED) && m->heap_idx != NO_HEAP) {
    uint64_t due = rt->heap.v[m->heap_idx].due_us;
    uint64_t now = rt_now_us();
    out->timer_left_ms = due > now ? (int64_t)((due - now) / 1000) : 0;
  }
  out->inbox = mly_inbox_len(&m->head);
  out->children = 0;
  for (const mly_inst *c = m->child; c != NULL; c = c->sib_next)
    out->children++;
  out->shutting_down = (m->head.flags & (F_SHUT_REQ | F_ENDING)) != 0;
}

int mly_foreach(mly_runtime *rt, int (*cb)(const mly_info *, void *),
                void *arg) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  for (uint32_t s = 0; s < rt->nslots; s++) {
    const mly_inst *m = rt->slots[s];
    if (m == NULL) continue;
    mly_info info;
    fill(rt, m, &info);
    int rc = cb(&info, arg);
    if (rc != 0) return rc;
  }
  return 0;
}

mly_type *mly_instance_type(mly_runtime *rt, mly_id id) {
  if (!rt_on_loop_thread(rt)) return NULL;
  const mly_inst *m = inst_get(rt, id);
  return m ? m->type : NULL;
}

int mly_info_get(mly_runtime *rt, mly_id id, mly_info *out) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (out == NULL) return MLY_EINVAL;
  const mly_inst *m = inst_get(rt, id);
  if (m == NULL) return MLY_ESRCH;
  fill(rt, m, out);
  return 0;
}

static int dump_one(const mly_info *i, void *arg) {
  FILE *f = arg;
  char timer[24] = "-";
  if (i->timer_left_ms >= 0)
    snprintf(timer, sizeof timer, "%" PRId64 "ms", i->timer_left_ms);
  char id[24], parent[24];
  snprintf(id, sizeof id, "%" PRIu32 ".%" PRIu32, (uint32_t)i->id, (uint32_t)(i->id >> 32));
  if (i->parent)
    snprintf(parent, sizeof parent, "%" PRIu32 ".%" PRIu32, (uint32_t)i->parent, (uint32_t)(i->parent >> 32));
  else
    snprintf(parent, sizeof parent, "-");
  fprintf(f, "%-8s %-8s %-14s %-10s %-16s %-22s %-8s %5zu%s\n",
          id, parent, i->type, mly_lifecycle_name(i->lifecycle),
          i->point, i->waiting, timer, i->inbox,
          i->shutting_down ? " shutting-down" : "");
  return 0;
}

int mly_runtime_dump(mly_runtime *rt, void *file) {
  FILE *f = file;
  fprintf(f, "%-8s %-8s %-14s %-10s %-16s %-22s %-8s %5s\n", "ID", "PARENT",
          "TYPE", "STATE", "POINT", "WAITING", "TIMER", "INBOX");
  return mly_foreach(rt, dump_one, f);
}
