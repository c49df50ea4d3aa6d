/*
 * b4-reply-leak-no-journal.c - bug B4 without a journal (see README): a
 * reply delivered to a requester that is ended before its next step is
 * never freed, because inbox_clear drops only non-reply events.
 *
 *   cc -fsanitize=address -Ilib/include b4-reply-leak-no-journal.c \
 *      build-asan/libmealy.a -luv -lyaml -lmsgpackc -lpthread -lm && ./a.out
 *
 * LeakSanitizer: the reply (ev_new from mly_reply) and its payload.
 */
#include <stdio.h>

#include "mealy.h"

typedef struct req {
  mly_id peer;
} req;

#define A_POINTS(X) X(a, asked)
MLY_POINTS(a, A_POINTS);

static mly_id requester;

static int a_run(mly_machine *m, void *data) {
  req *r = data;
  MLY_BEGIN(m);
  MLY_REQUEST_AT(m, a_asked, r->peer, 7, mly_value_str("ping"), -1);
  MLY_END(m);
}

static int b_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  MLY_AWAIT(m, 7, -1);
  mly_reply(m, mly_current_event(m), 8, mly_value_str("pong"));
  mly_kill(mly_machine_runtime(m), requester); /* before it takes the reply */
  MLY_END(m);
}

int main(void) {
  mly_runtime *rt;
  mly_type *ta, *tb;
  mly_type_def da = {.name = "a", .run = a_run, MLY_TYPE_POINTS(a),
                     .data_size = sizeof(req), .version = 1};
  mly_type_def db = {.name = "b", .run = b_run, .data_size = 8, .version = 1};
  req r = {0};
  if (mly_runtime_new(&rt, NULL, NULL) < 0 || mly_type_register(rt, &da, &ta) < 0 ||
      mly_type_register(rt, &db, &tb) < 0 || mly_spawn(rt, tb, NULL, 0, &r.peer) < 0 ||
      mly_spawn(rt, ta, &r, sizeof r, &requester) < 0)
    return 1;
  mly_runtime_run(rt);
  mly_runtime_close(rt);
  return 0;
}
