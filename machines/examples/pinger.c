/*
 * pinger.c - the README's first example, whole: a machine that asks
 * another one for replies (MLY_REQUEST), and tells a reply from a timeout
 * from a failed request.  Built by meson, run by the test command, and
 * compiled there as a user would, with nothing but the public header:
 *   cc -std=c11 -Wall -Wextra -Wimplicit-fallthrough pinger.c \
 *      $(pkg-config --cflags --libs mealy)
 * (gcc: add -Wjump-misses-init to catch a local used across a wait).
 *
 * One pinger asks its own child, a ponger, three times and exits 0; its
 * exit stops the ponger.  A second pinger asks instance 0, which is nobody:
 * its request fails (MLY_ESRCH) and it must not count that as an answer.
 */
#include <mealy.h>

#include <stdio.h>

enum { PING = 1, PONG = 2 };

/* ---- the ponger: answers until it is asked to stop ---- */

#define PONGER_POINTS(X) X(ponger, serving)
MLY_POINTS(ponger, PONGER_POINTS);

static int ponger_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_AWAIT_AT(m, ponger_serving, PING, -1);
    /* a shutdown ends this wait with nothing taken: nothing is lost */
    if (mly_shutdown_requested(m)) break;
    mly_reply(m, mly_current_event(m), PONG, NULL);
  }
  MLY_END(m);
}

/* ---- the pinger ---- */

struct pinger {
  mly_id peer;      /* whom to ask */
  bool own_ponger;  /* ... or a ponger of its own, a child */
  int asked;        /* lives in the data: locals do not survive a wait */
  int *result;      /* the host's: how it ended */
};

#define PINGER_POINTS(X) X(pinger, idle) X(pinger, asking)
MLY_POINTS(pinger, PINGER_POINTS);

static int pinger_run(mly_machine *m, void *data) {
  struct pinger *p = data;
  MLY_BEGIN(m);
  if (p->own_ponger) {
    mly_type *t = mly_type_find(mly_machine_runtime(m), "ponger");
    if (mly_spawn_child(m, t, NULL, 0, &p->peer) < 0) MLY_EXIT(m, 2);
  }
  for (p->asked = 0; p->asked < 3; p->asked++) {
    MLY_SLEEP_AT(m, pinger_idle, 10);                  /* a named yield point */
    MLY_REQUEST_AT(m, pinger_asking, p->peer, PING, NULL, 500);
    if (mly_current_event(m) == NULL) {   /* no reply: a timeout, or an error */
      *p->result = mly_timed_out(m) ? MLY_ETIMEDOUT : mly_wait_error(m);
      MLY_EXIT(m, 1);
    }
  }
  *p->result = 0;
  MLY_END(m);
}

int main(void) {
  mly_runtime *rt;
  mly_type *pinger;
  int ok = -1, alone = -1;
  int rc = mly_runtime_new(&rt, NULL, NULL);
  if (rc == 0)
    rc = mly_type_register(rt, &(mly_type_def){.name = "ponger",
        .run = ponger_run, MLY_TYPE_POINTS(ponger)}, NULL);
  if (rc == 0)
    rc = mly_type_register(rt, &(mly_type_def){.name = "pinger",
        .run = pinger_run, MLY_TYPE_POINTS(pinger),
        .data_size = sizeof(struct pinger)}, &pinger);
  if (rc == 0)
    rc = mly_spawn(rt, pinger, &(struct pinger){.own_ponger = true, .result = &ok},
                   sizeof(struct pinger), NULL);
  if (rc == 0) /* asks instance 0: nobody */
    rc = mly_spawn(rt, pinger, &(struct pinger){.peer = 0, .result = &alone},
                   sizeof(struct pinger), NULL);
  if (rc == 0) rc = mly_runtime_run(rt);
  if (rt) mly_runtime_close(rt);
  if (rc < 0) {
    fprintf(stderr, "pinger: %s\n", mly_strerror(rc));
    return 1;
  }
  printf("pinger with a ponger: %s\n", ok == 0 ? "3 replies" : mly_strerror(ok));
  printf("pinger asking nobody: %s\n", alone == 0 ? "replies?!" : mly_strerror(alone));
  return ok == 0 && alone == MLY_ESRCH ? 0 : 1;
}
