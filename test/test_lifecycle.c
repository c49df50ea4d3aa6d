/*
 * test_lifecycle.c - lifecycle states, shutdown (routine swap and flag),
 * parent/child links and the order children are stopped in, runtime
 * shutdown with grace and force, kill.
 */
#include "harness.h"

#include <string.h>

typedef struct trace {
  char log[128];
  size_t n;
  int fini;
  int stops;
} trace;

static void tr(trace *t, const char *s) {
  size_t l = strlen(s);
  if (t->n + l < sizeof t->log) {
    memcpy(t->log + t->n, s, l);
    t->n += l;
    t->log[t->n] = 0;
  }
}

/* ---- the seed's MasterD: main body, and a shutdown routine swapped in ---- */

typedef struct masterd {
  trace *t;
  int checks;
} masterd;

#define MASTERD_POINTS(X) X(masterd, config_wait) X(masterd, running) \
  X(masterd, stopping)
MLY_POINTS(masterd, MASTERD_POINTS);

static int masterd_run(mly_machine *m, void *data) {
  masterd *d = data;
  MLY_BEGIN(m);
  tr(d->t, "init;");
  for (;;) {
    MLY_AWAIT_AT(m, masterd_config_wait, 1, 20);
    if (!mly_timed_out(m)) break;
    d->checks++;
  }
  tr(d->t, "start;");
  MLY_AWAIT_AT(m, masterd_running, 2, -1);
  tr(d->t, "never;");
  MLY_END(m);
}

static int masterd_shutdown(mly_machine *m, void *data) {
  masterd *d = data;
  MLY_BEGIN(m);
  tr(d->t, "stop-app;");
  MLY_SLEEP_AT(m, masterd_stopping, 1);
  ck_assert(mly_shutdown_requested(m));
  tr(d->t, "stop-rt;");
  MLY_END(m);
}

static void stopped(mly_runtime *rt, void *arg) {
  (void)rt;
  ((trace *)arg)->stops++;
}

START_TEST(shutdown_routine_is_swapped_in) {
  trace t = {0};
  mly_runtime *rt = NULL;
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, &(mly_runtime_options){
      .on_stop = stopped, .arg = &t}), 0);
  mly_type *ty = h_type(rt, &(mly_type_def){.name = "masterd", .run = masterd_run,
      .shutdown = masterd_shutdown, MLY_TYPE_POINTS(masterd),
      .data_size = sizeof(masterd)});
  mly_id id = h_spawn(rt, ty, &(masterd){&t, 0}, sizeof(masterd));
  mly_info info;
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_int_eq(info.lifecycle, MLY_LC_INIT);
  h_turn(rt);
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_int_eq(info.lifecycle, MLY_LC_READY);
  ck_assert_str_eq(info.point, "config_wait");
  /* several re-checks, then the config arrives */
  for (mly_stats st = {0}; st.timers_fired < 3; mly_runtime_stats(rt, &st))
    uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  ck_assert_int_eq(mly_runtime_send(rt, id, 1, NULL), 0);
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_int_eq(info.lifecycle, MLY_LC_ACTIVE); /* queued to run */
  h_turn(rt);
  ck_assert_int_eq(mly_info_get(rt, id, &info), 0);
  ck_assert_str_eq(info.point, "running");
  ck_assert_int_eq(mly_shutdown(rt, id), 0);
  ck_assert_int_eq(mly_shutdown(rt, id), 0); /* a repeat is harmless */
  ck_assert_int_eq(mly_runtime_shutdown(rt, -1), 0);
  h_run(rt);
  ck_assert_str_eq(t.log, "init;start;stop-app;stop-rt;");
  ck_assert_int_eq(t.stops, 1);
  ck_assert_int_eq(mly_runtime_shutdown(rt, -1), 0); /* harmless now */
  ck_assert_int_eq(t.stops, 1);
  mly_id late;
  ck_assert_int_eq(mly_spawn(rt, ty, NULL, 0, &late), MLY_ESHUTDOWN);
  mly_runtime_close(rt);
}
END_TEST

/* ---- without a routine: the wait ends once, the flag is seen ---- */

static int flagger_run(mly_machine *m, void *data) {
  int *wakes = data;
  MLY_BEGIN(m);
  MLY_SLEEP(m, 1000000);
  (*wakes)++;
  if (!mly_shutdown_requested(m)) MLY_EXIT(m, 1);
  /* the flag stays set but waits are not cut short again */
  MLY_SLEEP(m, 2);
  ck_assert(mly_timed_out(m)); /* this sleep ran its course */
  MLY_EXIT(m, *wakes == 1 ? 5 : 6);
  MLY_END(m);
}

typedef struct holder {
  mly_type *t;
  const void *arg;
  size_t len;
  int64_t *out;
} holder;

static int holder_run(mly_machine *m, void *data) {
  holder *h = data;
  mly_id c;
  MLY_BEGIN(m);
  ck_assert_int_eq(mly_spawn_child(m, h->t, h->arg, h->len, &c), 0);
  MLY_AWAIT(m, MLY_EV_CHILD_EXIT, -1);
  h->out[0] = mly_current_event(m)->status;
  h->out[1] = mly_current_event(m)->aux;
  MLY_END(m);
}

static int child_of_cb(const mly_info *i, void *arg) {
  if (i->parent != 0) *(mly_id *)arg = i->id;
  return 0;
}

START_TEST(shutdown_flag_ends_one_wait) {
  mly_runtime *rt = h_runtime();
  int64_t out[2] = {-1, -1};
  mly_type *ft = h_type(rt, &(mly_type_def){.name = "flag", .run = flagger_run,
                                            .data_size = sizeof(int)});
  mly_type *ht = h_type(rt, &(mly_type_def){.name = "holder", .run = holder_run,
                                            .data_size = sizeof(holder)});
  h_spawn(rt, ht, &(holder){ft, NULL, 0, out}, sizeof(holder));
  h_turn(rt);
  h_turn(rt);
  /* find the child and ask it twice */
  mly_stats st;
  mly_runtime_stats(rt, &st);
  ck_assert_uint_eq(st.live, 2);
  mly_id child = 0;
  ck_assert_int_eq(mly_foreach(rt, child_of_cb, &child), 0);
  ck_assert_uint_ne(child, 0);
  ck_assert_int_eq(mly_shutdown(rt, child), 0);
  ck_assert_int_eq(mly_shutdown(rt, child), 0);
  h_run(rt);
  ck_assert_int_eq(out[0], 5);
  ck_assert_int_eq(out[1], MLY_LC_FAILED);
  mly_runtime_close(rt);
}
END_TEST

/* ---- children stop newest first, one after the other ---- */

typedef struct kid {
  trace *t;
  char name[4];
} kid;

static int kid_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  for (;;) MLY_AWAIT(m, 99, -1);
  MLY_END(m);
}

static int kid_shutdown(mly_machine *m, void *data) {
  kid *k = data;
  MLY_BEGIN(m);
  tr(k->t, k->name);
  tr(k->t, "+");
  MLY_SLEEP(m, 2);
  tr(k->t, k->name);
  tr(k->t, "-");
  MLY_END(m);
}

typedef struct brood {
  trace *t;
  mly_type *kt;
  bool wait_for_shutdown;
} brood;

static int brood_run(mly_machine *m, void *data) {
  brood *b = data;
  MLY_BEGIN(m);
  {
    const char *names[] = {"A", "B", "C"};
    for (int i = 0; i < 3; i++) {
      kid k = {b->t, {0}};
      strcpy(k.name, names[i]);
      ck_assert_int_eq(mly_spawn_child(m, b->kt, &k, sizeof k, NULL), 0);
    }
  }
  if (b->wait_for_shutdown) MLY_AWAIT(m, 99, -1);
  tr(b->t, "P;");
  MLY_END(m);
}

static void brood_fini(mly_machine *m, void *data) {
  (void)m;
  ((brood *)data)->t->fini++;
}

START_TEST(children_stop_in_reverse_order) {
  mly_runtime *rt = h_runtime();
  trace t = {0};
  mly_type *kt = h_type(rt, &(mly_type_def){.name = "kid", .run = kid_run,
      .shutdown = kid_shutdown, .data_size = sizeof(kid)});
  mly_type *bt = h_type(rt, &(mly_type_def){.name = "brood", .run = brood_run,
      .data_size = sizeof(brood), .fini = brood_fini});
  mly_id p = h_spawn(rt, bt, &(brood){&t, kt, false}, sizeof(brood));
  h_turn(rt);
  mly_info info;
  ck_assert_int_eq(mly_info_get(rt, p, &info), 0);
  ck_assert_str_eq(info.waiting, "children to stop");
  ck_assert(info.shutting_down);
  ck_assert_int_eq(mly_runtime_send(rt, p, 5, NULL), 0); /* dropped, ending */
  h_run(rt);
  ck_assert_str_eq(t.log, "P;C+C-B+B-A+A-");
  ck_assert_int_eq(t.fini, 1);
  mly_runtime_close(rt);
}
END_TEST

START_TEST(runtime_shutdown_goes_through_parents) {
  mly_runtime *rt = h_runtime();
  trace t = {0};
  mly_type *kt = h_type(rt, &(mly_type_def){.name = "kid", .run = kid_run,
      .shutdown = kid_shutdown, .data_size = sizeof(kid)});
  mly_type *bt = h_type(rt, &(mly_type_def){.name = "brood", .run = brood_run,
      .data_size = sizeof(brood)});
  h_spawn(rt, bt, &(brood){&t, kt, true}, sizeof(brood));
  h_turn(rt);
  ck_assert_uint_eq(h_stat_live(rt), 4);
  ck_assert_int_eq(mly_runtime_shutdown(rt, -1), 0);
  h_run(rt);
  ck_assert_str_eq(t.log, "P;C+C-B+B-A+A-");
  mly_runtime_close(rt);
}
END_TEST

/* ---- grace runs out: what is left is ended by force ---- */

static int stubborn_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  for (;;) MLY_AWAIT(m, 99, -1); /* ignores the flag */
  MLY_END(m);
}

static void count_fini(mly_machine *m, void *data) {
  (void)m;
  (*(trace **)data)->fini++;
}

START_TEST(grace_deadline_forces) {
  trace t = {0};
  mly_runtime *rt = NULL;
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, &(mly_runtime_options){
      .on_stop = stopped, .arg = &t}), 0);
  mly_type *st = h_type(rt, &(mly_type_def){.name = "stubborn",
      .run = stubborn_run, .data_size = sizeof(trace *), .fini = count_fini});
  trace *tp = &t;
  for (int i = 0; i < 3; i++) h_spawn(rt, st, &tp, sizeof tp);
  h_turn(rt);
  ck_assert_int_eq(mly_runtime_shutdown(rt, 10), 0);
  h_turn(rt);
  ck_assert_uint_eq(h_stat_live(rt), 3); /* they ignored it */
  h_run(rt);                             /* the grace timer ends them */
  ck_assert_uint_eq(h_stat_live(rt), 0);
  ck_assert_int_eq(t.fini, 3);
  ck_assert_int_eq(t.stops, 1);
  mly_runtime_close(rt);
}
END_TEST

START_TEST(second_request_forces) {
  trace t = {0};
  mly_runtime *rt = NULL;
  ck_assert_int_eq(mly_runtime_new(&rt, NULL, &(mly_runtime_options){
      .on_stop = stopped, .arg = &t}), 0);
  mly_type *st = h_type(rt, &(mly_type_def){.name = "stubborn",
      .run = stubborn_run, .data_size = sizeof(trace *), .fini = count_fini});
  trace *tp = &t;
  for (int i = 0; i < 3; i++) h_spawn(rt, st, &tp, sizeof tp);
  h_turn(rt);
  ck_assert_int_eq(mly_runtime_shutdown(rt, -1), 0);
  h_turn(rt);
  ck_assert_uint_eq(h_stat_live(rt), 3);
  ck_assert_int_eq(mly_runtime_shutdown(rt, -1), 0);
  ck_assert_uint_eq(h_stat_live(rt), 0);
  ck_assert_int_eq(t.fini, 3);
  ck_assert_int_eq(t.stops, 1);
  mly_runtime_close(rt);
}
END_TEST

/* ---- kill, also of oneself from inside a step ---- */

static int suicide_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  ck_assert_int_eq(mly_kill(mly_machine_runtime(m), mly_self(m)), 0);
  /* still running this step: the instance is ended when it returns */
  MLY_SLEEP(m, 1000000);
  MLY_END(m);
}

START_TEST(kill_from_inside_a_step) {
  mly_runtime *rt = h_runtime();
  int64_t out[2] = {-1, -1};
  mly_type *ft = h_type(rt, &(mly_type_def){.name = "suicide", .run = suicide_run});
  mly_type *ht = h_type(rt, &(mly_type_def){.name = "holder", .run = holder_run,
                                            .data_size = sizeof(holder)});
  h_spawn(rt, ht, &(holder){ft, NULL, 0, out}, sizeof(holder));
  h_run(rt);
  ck_assert_int_eq(out[0], MLY_ECANCELED);
  ck_assert_int_eq(out[1], MLY_LC_FAILED);
  mly_runtime_close(rt);
}
END_TEST

START_TEST(kill_parent_kills_children_first) {
  mly_runtime *rt = h_runtime();
  trace t = {0};
  mly_type *kt = h_type(rt, &(mly_type_def){.name = "kid", .run = kid_run,
      .shutdown = kid_shutdown, .data_size = sizeof(kid)});
  mly_type *bt = h_type(rt, &(mly_type_def){.name = "brood", .run = brood_run,
      .data_size = sizeof(brood), .fini = brood_fini});
  mly_id p = h_spawn(rt, bt, &(brood){&t, kt, true}, sizeof(brood));
  h_turn(rt);
  ck_assert_uint_eq(h_stat_live(rt), 4);
  ck_assert_int_eq(mly_kill(rt, p), 0);
  ck_assert_uint_eq(h_stat_live(rt), 0);
  ck_assert_str_eq(t.log, ""); /* no step ran: by force */
  ck_assert_int_eq(t.fini, 1);
  ck_assert_int_eq(mly_kill(rt, p), MLY_ESRCH);
  ck_assert_int_eq(mly_runtime_send(rt, p, 1, NULL), MLY_ESRCH);
  mly_runtime_close(rt);
}
END_TEST

/* ---- the natural shutdown test never drops an event it was given ---- */

typedef struct listener {
  int handled;   /* events handled in the main loop */
  int drained;   /* events found in the inbox after it */
  int later;     /* events a wait returned after the shutdown request */
  bool requested_later;
} listener;

static int listener_run(mly_machine *m, void *data) {
  listener *l = *(listener **)data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_AWAIT(m, 7, -1);
    if (mly_shutdown_requested(m)) break; /* the natural pattern */
    l->handled++;
  }
  /* what was not taken is still there */
  do {
    MLY_AWAIT(m, 7, 0);
    if (mly_current_event(m)) l->drained++;
  } while (mly_current_event(m) != NULL);
  /* later waits work normally; the flag stays set */
  MLY_AWAIT(m, 8, 1000);
  if (mly_current_event(m)) l->later++;
  l->requested_later = mly_shutdown_requested(m);
  MLY_END(m);
}

START_TEST(shutdown_request_never_drops_an_event) {
  for (int order = 0; order < 2; order++) {
    mly_runtime *rt = h_runtime();
    listener l = {0};
    mly_type *t = h_type(rt, &(mly_type_def){.name = "listener",
        .run = listener_run, .data_size = sizeof(listener *)});
    listener *lp = &l;
    mly_id id = h_spawn(rt, t, &lp, sizeof lp);
    h_turn(rt);
    ck_assert_int_eq(mly_runtime_send(rt, id, 7, NULL), 0);
    ck_assert_int_eq(mly_runtime_send(rt, id, 7, NULL), 0);
    h_turn(rt); /* both handled */
    ck_assert_int_eq(lp->handled, 2);
    /* an event and a request both before its next step, in either order */
    if (order == 0) ck_assert_int_eq(mly_runtime_send(rt, id, 7, NULL), 0);
    ck_assert_int_eq(mly_shutdown(rt, id), 0);
    if (order == 1) ck_assert_int_eq(mly_runtime_send(rt, id, 7, NULL), 0);
    ck_assert_int_eq(mly_runtime_send(rt, id, 8, NULL), 0);
    h_run(rt);
    ck_assert_int_eq(l.handled, 2);  /* the break took nothing ... */
    ck_assert_int_eq(l.drained, 1);  /* ... the event was still there */
    ck_assert_int_eq(l.later, 1);
    ck_assert(l.requested_later);
    mly_stats st;
    mly_runtime_stats(rt, &st);
    ck_assert_uint_eq(st.dropped, 0);
    mly_runtime_close(rt);
  }
}
END_TEST

/* ---- a reply that comes with a shutdown request is not lost ---- */

typedef struct asker_rec {
  int replies, broke, after_event, requested_after, requested_before;
} asker_rec;

typedef struct asker {
  asker_rec *r;
  mly_id server;
} asker;

#define ASKER_POINTS(X) X(asker, asking) X(asker, after)
MLY_POINTS(asker, ASKER_POINTS);

static int asker_run(mly_machine *m, void *data) {
  asker *a = data;
  MLY_BEGIN(m);
  MLY_REQUEST_AT(m, asker_asking, a->server, 5, NULL, -1);
  if (mly_shutdown_requested(m)) { /* the natural pattern */
    a->r->broke = 1;
    MLY_EXIT(m, 2);
  }
  if (mly_current_event(m)) a->r->replies++;
  MLY_AWAIT_AT(m, asker_after, 9, -1); /* the shutdown ends this one */
  a->r->after_event = mly_current_event(m) != NULL;
  a->r->requested_after = mly_shutdown_requested(m);
  MLY_END(m);
}

typedef struct server {
  int order; /* 0: reply, then shutdown; 1: the other way round */
} server;

#define SERVER_POINTS(X) X(server, serving) X(server, serving2)
MLY_POINTS(server, SERVER_POINTS);

static int server_run(mly_machine *m, void *data) {
  server *s = data;
  const mly_event *e;
  MLY_BEGIN(m);
  MLY_AWAIT_AT(m, server_serving, 5, -1);
  e = mly_current_event(m);
  ck_assert_ptr_nonnull(e);
  if (s->order == 1)
    ck_assert_int_eq(mly_shutdown(mly_machine_runtime(m), e->from), 0);
  ck_assert_int_eq(mly_reply(m, e, 6, mly_value_str("answer")), 0);
  if (s->order == 0)
    ck_assert_int_eq(mly_shutdown(mly_machine_runtime(m), e->from), 0);
  MLY_END(m);
}

/* _i: which of the two is durable (bit 0 the asker, bit 1 the server) */
START_TEST(reply_with_shutdown_request_is_returned) {
  for (int order = 0; order < 2; order++) {
    mly_runtime *rt = h_runtime();
    asker_rec r = {0};
    char dir[] = "/tmp/mly-reply-XXXXXX";
    mly_type *at = h_type(rt, &(mly_type_def){.name = "asker",
        .run = asker_run, MLY_TYPE_POINTS(asker), .data_size = sizeof(asker),
        .flags = (_i & 1) ? MLY_TYPE_DURABLE : 0});
    mly_type *st = h_type(rt, &(mly_type_def){.name = "server",
        .run = server_run, MLY_TYPE_POINTS(server), .data_size = sizeof(server),
        .flags = (_i & 2) ? MLY_TYPE_DURABLE : 0});
    if (_i) {
      ck_assert_ptr_nonnull(mkdtemp(dir));
      ck_assert_int_eq(h_durable_open(rt, &(mly_journal_options){
                           .dir = dir, .sync = MLY_SYNC_NEVER}, NULL, 0), 0);
    }
    mly_id srv = h_spawn(rt, st, &(server){order}, sizeof(server));
    h_spawn(rt, at, &(asker){&r, srv}, sizeof(asker));
    h_run(rt);
    ck_assert_msg(r.broke == 0, "order %d: the request ended early", order);
    ck_assert_int_eq(r.replies, 1);        /* the request returned it */
    ck_assert_int_eq(r.after_event, 0);    /* the next wait ended early */
    ck_assert_int_eq(r.requested_after, 1);
    mly_stats sts;
    mly_runtime_stats(rt, &sts);
    ck_assert_uint_eq(sts.dropped, 0);
    ck_assert_uint_eq(sts.late_replies, 0);
    ck_assert_uint_eq(sts.live, 0);
    mly_runtime_close(rt);
    if (_i) h_rmtree(dir);
  }
}
END_TEST

/* The runtime's shutdown while a durable server's reply is on its way
 * (its batch being synced): the request to the asker waits behind it.
 * The journal's fault hook holds that sync until the shutdown is made;
 * on PostgreSQL (no fault hook) the batch's COMMIT is answered on the
 * connection's poll, which comes after the prepare phase that makes the
 * shutdown.  On either store the figure that shows the reply was on its
 * way is the asker's: no reply yet when the shutdown was made. */
typedef struct held_sync {
  uv_sem_t go;
  int served; /* the server has replied: hold the next sync, once */
  int held;
} held_sync;

static int hold_sync(void *arg, int op, size_t len) {
  (void)len;
  held_sync *h = arg;
  if (op == MLY_JOP_SYNC && __atomic_load_n(&h->served, __ATOMIC_SEQ_CST) &&
      !h->held) {
    uv_sem_wait(&h->go);
    h->held = 1;
  }
  return 0;
}

typedef struct dserver {
  int *served;
} dserver;

static int dserver_run(mly_machine *m, void *data) {
  dserver *s = data;
  MLY_BEGIN(m);
  MLY_AWAIT_AT(m, server_serving, 5, -1);
  ck_assert_int_eq(mly_reply(m, mly_current_event(m), 6, NULL), 0);
  __atomic_store_n(s->served, 1, __ATOMIC_SEQ_CST);
  MLY_AWAIT_AT(m, server_serving2, 99, -1); /* suspended by the shutdown */
  MLY_END(m);
}

typedef struct shut_host {
  mly_runtime *rt;
  held_sync *h;
  int *served;
  asker_rec *r;
  int done;
  int replies_at_shutdown;
} shut_host;

static void shut_after_serve(uv_prepare_t *c) {
  shut_host *sh = c->data;
  if (sh->done || __atomic_load_n(sh->served, __ATOMIC_SEQ_CST) == 0) return;
  sh->done = 1;
  /* the server's step ran and its batch is being synced: now, before
   * the loop polls (a check handle would come after a poll that waits
   * for that very sync) */
  sh->replies_at_shutdown = sh->r->replies;
  ck_assert_int_eq(mly_runtime_shutdown(sh->rt, -1), 0);
  uv_sem_post(&sh->h->go);
}

START_TEST(runtime_shutdown_waits_behind_a_journaled_reply) {
  mly_runtime *rt = h_runtime();
  asker_rec r = {0};
  held_sync h = {.served = 0};
  ck_assert_int_eq(uv_sem_init(&h.go, 0), 0);
  char dir[] = "/tmp/mly-rshut-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  mly_type *at = h_type(rt, &(mly_type_def){.name = "asker",
      .run = asker_run, MLY_TYPE_POINTS(asker), .data_size = sizeof(asker)});
  mly_type *st = h_type(rt, &(mly_type_def){.name = "server",
      .run = dserver_run, MLY_TYPE_POINTS(server), .data_size = sizeof(dserver),
      .flags = MLY_TYPE_DURABLE});
  ck_assert_int_eq(h_durable_open(rt, &(mly_journal_options){.dir = dir,
                       .fault = hold_sync, .fault_arg = &h}, NULL, 0), 0);
  mly_id srv = h_spawn(rt, st, &(dserver){&h.served}, sizeof(dserver));
  for (int i = 0; i < 1000; i++) { /* the server is recorded and waiting */
    mly_info info;
    ck_assert_int_eq(mly_info_get(rt, srv, &info), 0);
    if (info.lifecycle == MLY_LC_READY) break;
    uv_run(mly_runtime_loop(rt), UV_RUN_ONCE);
  }
  shut_host sh = {rt, &h, &h.served, &r, 0, -1};
  uv_prepare_t c;
  uv_prepare_init(mly_runtime_loop(rt), &c);
  c.data = &sh;
  uv_prepare_start(&c, shut_after_serve);
  uv_unref((uv_handle_t *)&c);
  h_spawn(rt, at, &(asker){&r, srv}, sizeof(asker));
  h_run(rt);
  ck_assert_int_eq(sh.done, 1);
  ck_assert_int_eq(sh.replies_at_shutdown, 0); /* the reply was on its way */
  if (H_JOURNAL_FIGURE("its fault hook held the sync"))
    ck_assert_int_eq(h.held, 1);
  ck_assert_msg(r.broke == 0, "the request ended before its reply came");
  ck_assert_int_eq(r.replies, 1);
  ck_assert_int_eq(r.requested_after, 1);
  mly_stats sts;
  mly_runtime_stats(rt, &sts);
  ck_assert_uint_eq(sts.late_replies, 0);
  ck_assert_uint_eq(sts.undeliverable, 0);
  uv_close((uv_handle_t *)&c, NULL);
  mly_runtime_close(rt);
  uv_sem_destroy(&h.go);
  h_rmtree(dir);
}
END_TEST

/* With a shutdown routine the request's wait is abandoned: a reply that
 * had come is late (counted), not left where nothing can take it. */
static int asker_stop(mly_machine *m, void *data) {
  asker *a = data;
  MLY_BEGIN(m);
  a->r->requested_before = mly_shutdown_requested(m);
  MLY_END(m);
}

START_TEST(reply_to_abandoned_request_is_late) {
  mly_runtime *rt = h_runtime();
  asker_rec r = {0};
  mly_type *at = h_type(rt, &(mly_type_def){.name = "asker",
      .run = asker_run, .shutdown = asker_stop, MLY_TYPE_POINTS(asker),
      .data_size = sizeof(asker)});
  mly_type *st = h_type(rt, &(mly_type_def){.name = "server",
      .run = server_run, MLY_TYPE_POINTS(server), .data_size = sizeof(server)});
  mly_id srv = h_spawn(rt, st, &(server){0}, sizeof(server));
  h_spawn(rt, at, &(asker){&r, srv}, sizeof(asker));
  h_run(rt);
  ck_assert_int_eq(r.requested_before, 1);
  ck_assert_int_eq(r.replies, 0);
  mly_stats sts;
  mly_runtime_stats(rt, &sts);
  ck_assert_uint_eq(sts.late_replies, 1);
  ck_assert_uint_eq(sts.dropped, 0);
  mly_runtime_close(rt);
}
END_TEST

/* ---- a child kills its parent from inside its own step ---- */

typedef struct rebel {
  trace *t;
  int how;         /* 0: then sleeps, 1: then exits, 2: via a grandchild */
  int depth;       /* 0: the parent; 1: the child; 2: a grandchild */
  mly_type *type;
  mly_id target;   /* whom to kill */
} rebel;

static int rebel_run(mly_machine *m, void *data) {
  rebel *r = data;
  MLY_BEGIN(m);
  if (r->depth == 0 || (r->depth == 1 && r->how == 2)) {
    rebel c = *r;
    c.depth++;
    c.target = r->depth == 0 ? mly_self(m) : r->target;
    ck_assert_int_eq(mly_spawn_child(m, r->type, &c, sizeof c, NULL), 0);
    MLY_AWAIT(m, 99, -1);
    tr(r->t, "never;");
  } else {
    ck_assert_int_eq(mly_kill(mly_machine_runtime(m), r->target), 0);
    if (r->how == 1) MLY_EXIT(m, 3);
    MLY_SLEEP(m, 1000000);
  }
  MLY_END(m);
}

static void rebel_fini(mly_machine *m, void *data) {
  (void)m;
  rebel *r = data;
  tr(r->t, r->depth == 0 ? "P;" : r->depth == 1 ? "C;" : "G;");
}

START_TEST(child_kills_parent_from_its_step_children_end_first) {
  const char *want[] = {"C;P;", "C;P;", "G;C;P;"};
  for (int how = 0; how < 3; how++) {
    mly_runtime *rt = h_runtime();
    trace t = {0};
    mly_type *rt_ = h_type(rt, &(mly_type_def){.name = "rebel", .run = rebel_run,
        .data_size = sizeof(rebel), .fini = rebel_fini});
    h_spawn(rt, rt_, &(rebel){&t, how, 0, rt_, 0}, sizeof(rebel));
    h_run(rt);
    ck_assert_msg(strcmp(t.log, want[how]) == 0, "how %d: %s", how, t.log);
    ck_assert_uint_eq(h_stat_live(rt), 0);
    mly_runtime_close(rt);
  }
}
END_TEST

START_TEST(close_ends_everything) {
  mly_runtime *rt = h_runtime();
  trace t = {0};
  mly_type *st = h_type(rt, &(mly_type_def){.name = "stubborn",
      .run = stubborn_run, .data_size = sizeof(trace *), .fini = count_fini});
  trace *tp = &t;
  for (int i = 0; i < 50; i++) h_spawn(rt, st, &tp, sizeof tp);
  h_turn(rt);
  for (int i = 0; i < 50; i++) h_spawn(rt, st, &tp, sizeof tp); /* queued */
  mly_runtime_close(rt);
  ck_assert_int_eq(t.fini, 100);
}
END_TEST

static Suite *lifecycle_suite(void) {
  Suite *s = suite_create("lifecycle");
  TCase *tc = tcase_create("lifecycle");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, shutdown_routine_is_swapped_in);
  tcase_add_test(tc, shutdown_flag_ends_one_wait);
  tcase_add_test(tc, children_stop_in_reverse_order);
  tcase_add_test(tc, runtime_shutdown_goes_through_parents);
  tcase_add_test(tc, grace_deadline_forces);
  tcase_add_test(tc, second_request_forces);
  tcase_add_test(tc, kill_from_inside_a_step);
  tcase_add_test(tc, kill_parent_kills_children_first);
  tcase_add_test(tc, close_ends_everything);
  tcase_add_test(tc, shutdown_request_never_drops_an_event);
  tcase_add_loop_test(tc, reply_with_shutdown_request_is_returned, 0, 4);
  tcase_add_test(tc, reply_to_abandoned_request_is_late);
  tcase_add_test(tc, runtime_shutdown_waits_behind_a_journaled_reply);
  tcase_add_test(tc, child_kills_parent_from_its_step_children_end_first);
  suite_add_tcase(s, tc);
  return s;
}

H_MAIN(lifecycle_suite)
