/*
 * event.c - events, inboxes and delivery.
 *
 * Every instance has an inbox: a circular singly-linked list held by its
 * tail, so appending is O(1) and a selective take (the first event with a
 * given id and sender, Erlang's selective receive) walks from the head.
 *
 * Delivery puts an event in the inbox and wakes the receiver only if the
 * event ends the receiver's current wait.  The receiver never runs inside
 * the sender's step: it is queued, and the ready queue is FIFO, so events
 * from one sender to one receiver keep their order.  A reply is accepted
 * only while its requester waits for exactly that correlation id; any
 * other reply is late, and is dropped and counted instead of being left
 * where a later wait could take it.
 *
 * Events are recycled through a per-runtime free list: a ping-pong of
 * events allocates nothing once warm.
 */
#include "internal.h"
#include "journal.h"

#include <stdlib.h>

mly_event *ev_new(mly_runtime *rt) {
  mly_event *e = rt->ev_free;
  if (e != NULL) {
    rt->ev_free = e->next;
    rt->ev_nfree--;
  } else {
    e = malloc(sizeof *e);
    if (e == NULL) return NULL;
    rt_bytes(rt, (ptrdiff_t)sizeof *e);
  }
  *e = (mly_event){0};
  return e;
}

void ev_free(mly_runtime *rt, mly_event *e) {
  if (e == NULL) return;
  mly_value_free(e->payload);
  e->payload = NULL;
  if (rt->ev_nfree >= EV_FREE_MAX) { /* posts bring events from outside */
    rt_bytes(rt, -(ptrdiff_t)sizeof *e);
    free(e);
    return;
  }
  e->next = rt->ev_free;
  rt->ev_free = e;
  rt->ev_nfree++;
}

void ev_free_all(mly_runtime *rt) {
  while (rt->ev_free != NULL) {
    mly_event *e = rt->ev_free;
    rt->ev_free = e->next;
    free(e);
  }
  rt->ev_nfree = 0;
}

static bool wait_matches(const mly_inst *m, const mly_event *e) {
  switch (m->head.wait) {
  case W_EVENT:
    return !(e->flags & MLY_EVF_REPLY) &&
           (m->wait_id == MLY_EV_ANY || m->wait_id == e->id) &&
           (m->wait_arg == 0 || m->wait_arg == e->from);
  case W_REPLY:
    return (e->flags & MLY_EVF_REPLY) && m->wait_arg == e->corr;
  case W_COND:
    return true; /* any event may change the condition */
  default:
    return false;
  }
}

bool inbox_has_match(const mly_inst *m) {
  if (m->inbox == NULL) return false;
  const mly_event *e = m->inbox;
  do {
    e = e->next;
    if (wait_matches(m, e)) return true;
  } while (e != m->inbox);
  return false;
}

void inbox_append(mly_inst *m, mly_event *e) {
  if (m->inbox == NULL) {
    e->next = e;
  } else {
    e->next = m->inbox->next;
    m->inbox->next = e;
  }
  m->inbox = e;
}

/* Takes ownership of e whatever happens. */
int ev_deliver(mly_runtime *rt, mly_inst *to, mly_event *e) {
  bool match = wait_matches(to, e);
  if ((e->flags & MLY_EVF_REPLY) && !(match && to->head.wait == W_REPLY)) {
    rt->st.late_replies++;
    if (e->eid) durable_dropped(rt, e);
    ev_free(rt, e);
    return 0;
  }
  if ((to->head.flags & F_ENDING) ||
      (!match && (to->type->def.flags & MLY_TYPE_DROP_UNHANDLED))) {
    rt->st.dropped++;
    if (e->eid) durable_dropped(rt, e);
    ev_free(rt, e);
    return 0;
  }
  inbox_append(to, e);
  rt->st.delivered++;
  if (match) inst_wake(to, WOKE_EVENT);
  return 0;
}

mly_event *inbox_take(mly_inst *m, uint32_t id, uint64_t from, bool reply,
                      uint64_t corr) {
  if (m->inbox == NULL) return NULL;
  mly_event *prev = m->inbox, *e = prev->next;
  for (;;) {
    bool hit = reply ? ((e->flags & MLY_EVF_REPLY) && e->corr == corr)
                     : (!(e->flags & MLY_EVF_REPLY) &&
                        (id == MLY_EV_ANY || e->id == id) &&
                        (from == 0 || e->from == from));
    if (hit) {
      if (e == prev) {
        m->inbox = NULL; /* it was the only one */
      } else {
        prev->next = e->next;
        if (m->inbox == e) m->inbox = prev;
      }
      e->next = NULL;
      if (e->eid) durable_took(m->type->rt, m, e);
      return e;
    }
    if (e == m->inbox) return NULL;
    prev = e;
    e = e->next;
  }
}

static size_t inbox_drop_matching(mly_runtime *rt, mly_inst *m, uint32_t id) {
  size_t n = 0;
  mly_event *e;
  while ((e = inbox_take(m, id, 0, false, 0)) != NULL) {
    ev_free(rt, e);
    n++;
  }
  return n;
}

/* Everything goes, replies included (a selective take skips them). */
void inbox_clear(mly_runtime *rt, mly_inst *m) {
  while (m->inbox != NULL) {
    mly_event *e = m->inbox->next; /* the head */
    if (e == m->inbox) m->inbox = NULL;
    else m->inbox->next = e->next;
    e->next = NULL;
    if (e->eid) durable_took(rt, m, e);
    ev_free(rt, e);
    rt->st.dropped++;
  }
}

int ev_send(mly_runtime *rt, mly_id from, mly_id to, uint32_t id,
            uint32_t flags, uint64_t corr, mly_value *payload) {
  mly_inst *dst = inst_get(rt, to);
  bool remote = dst == NULL && rt->dur && durable_send_remote(rt, from, to,
                                                              NULL, NULL);
  if (dst == NULL && !remote) {
    mly_value_free(payload);
    return MLY_ESRCH;
  }
  /* a payload that goes into a record (for a durable receiver, here or
   * in another process) must fit one: refused here, not dropped with the
   * step that sent it */
  int rc;
  if (payload && rt->dur && (remote || inst_durable(rt, dst)) &&
      (rc = value_fits(payload, JR_VALUE_MAX)) < 0) {
    mly_value_free(payload);
    return rc;
  }
  mly_event *e = ev_new(rt);
  if (e == NULL) {
    mly_value_free(payload);
    return MLY_ENOMEM;
  }
  e->id = id;
  e->flags = flags;
  e->from = from;
  e->corr = corr;
  e->payload = payload;
  if (remote) return durable_send_remote(rt, from, to, e, &rc), rc;
  if (rt->dur && durable_send(rt, from, dst, e, &rc)) return rc;
  return ev_deliver(rt, dst, e);
}

/* ---- public ---- */

static int check_id(uint32_t id) {
  return id == MLY_EV_ANY ? MLY_EINVAL : 0;
}

int mly_send(mly_machine *from, mly_id to, uint32_t id, mly_value *payload) {
  mly_inst *m = INST(from);
  int rc = check_id(id);
  if (rc < 0) {
    mly_value_free(payload);
    return rc;
  }
  return ev_send(m->type->rt, m->id, to, id, 0, 0, payload);
}

int mly_runtime_send(mly_runtime *rt, mly_id to, uint32_t id,
                     mly_value *payload) {
  int rc = rt_on_loop_thread(rt) ? check_id(id) : MLY_EPERM;
  if (rc < 0) {
    mly_value_free(payload);
    return rc;
  }
  return ev_send(rt, 0, to, id, 0, 0, payload);
}

int mly_reply(mly_machine *m, const mly_event *req, uint32_t id,
              mly_value *payload) {
  if (req == NULL || !(req->flags & MLY_EVF_REQUEST) || req->from == 0) {
    mly_value_free(payload);
    return MLY_EINVAL;
  }
  mly_inst *self = INST(m);
  return ev_send(self->type->rt, self->id, req->from, id, MLY_EVF_REPLY,
                 req->corr, payload);
}

const mly_event *mly_current_event(const mly_machine *m) {
  mly_runtime *rt = INST(m)->type->rt;
  return rt->running == INST(m) ? rt->cur : NULL;
}

mly_value *mly_event_take_payload(mly_machine *m) {
  mly_runtime *rt = INST(m)->type->rt;
  if (rt->running != INST(m) || rt->cur == NULL) return NULL;
  mly_value *v = rt->cur->payload;
  rt->cur->payload = NULL;
  return v;
}

size_t mly_inbox_drop(mly_machine *m, uint32_t id) {
  mly_inst *i = INST(m);
  size_t n = inbox_drop_matching(i->type->rt, i, id);
  i->type->rt->st.dropped += n;
  return n;
}

size_t mly_inbox_count(const mly_machine *m, uint32_t id) {
  const mly_inst *i = INST(m);
  if (i->inbox == NULL) return 0;
  size_t n = 0;
  const mly_event *e = i->inbox;
  do {
    e = e->next;
    n += id == MLY_EV_ANY || e->id == id;
  } while (e != i->inbox);
  return n;
}

size_t mly_inbox_len(const mly_machine *m) {
  return mly_inbox_count(m, MLY_EV_ANY);
}

mly_event *mly_inbox_take(mly_machine *m, uint32_t id) {
  return inbox_take(INST(m), id, 0, false, 0);
}

void mly_event_free(mly_runtime *rt, mly_event *e) { ev_free(rt, e); }

int mly_event_id(mly_runtime *rt, const char *name, uint32_t *out) {
  if (!rt_on_loop_thread(rt)) return MLY_EPERM;
  if (out == NULL) return MLY_EINVAL;
  return intern_get(&rt->intern, name, out);
}

const char *mly_event_name(mly_runtime *rt, uint32_t id) {
  return intern_name(&rt->intern, id);
}
