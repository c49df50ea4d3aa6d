/*
 * order_actions.c - the actions of the order workflow (order.yaml), as a
 * library for `mealy fsm run --actions` (its mly_actions_init registers
 * them):
 *
 *   Charge  charges context "amount" to context "card": "declined" is a
 *           permanent failure (the machine's on_failure state), "flaky"
 *           fails twice (retried with backoff) before it goes through.
 *           On success it records "charge_key" (the step's idempotency
 *           key, what a real payment API would be given) and arms the
 *           order's deadline: an order-deadline instance after
 *           expire_after_ms (default 3 days);
 *   Ship    records a tracking number derived from the key;
 *   Notify  appends "ORDER STATE: detail" to context "notify_file"
 *           (nothing when it is not set);
 *   Expire  (order-deadline) sends `expired` to the order.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <mealy.h>

#define DEADLINE_MS (3 * 24 * 3600 * 1000LL)

/* The instance's name: the key's part before '/'. */
static void instance_of(mly_action_call *c, char *buf, size_t len) {
  const char *k = mly_action_key(c);
  const char *slash = strrchr(k, '/');
  size_t n = slash ? (size_t)(slash - k) : strlen(k);
  if (n >= len) n = len - 1;
  memcpy(buf, k, n);
  buf[n] = '\0';
}

static int charge(mly_action_call *c, void *arg) {
  (void)arg;
  mly_value *ctx = mly_action_context(c);
  const char *card = "";
  int64_t amount = 0, expire = DEADLINE_MS;
  mly_map_get_str(ctx, "card", &card);
  mly_map_get_int(ctx, "amount", &amount);
  mly_map_get_int(ctx, "expire_after_ms", &expire);
  if (amount <= 0)
    return mly_action_fail(c, true, "amount must be a positive int");
  if (strcmp(card, "declined") == 0)
    return mly_action_fail(c, true, "card declined");
  if (strcmp(card, "flaky") == 0 && mly_action_attempt(c) < 2)
    return mly_action_fail(c, false, "payment gateway timed out");
  mly_map_set_str(ctx, "charge_key", mly_action_key(c));
  mly_map_set_int(ctx, "charge_attempts", mly_action_attempt(c) + 1);
  char me[MLY_INSTANCE_NAME_MAX + 1];
  instance_of(c, me, sizeof me);
  mly_value *d = mly_value_map(), *list = mly_value_array();
  mly_map_set_str(d, "order", me);
  mly_array_push(list, d);
  int rc = mly_action_spawn(c, "order-deadline", list, expire);
  if (rc < 0) return mly_action_fail(c, false, "deadline: %s", mly_strerror(rc));
  return mly_action_event(c, "charged");
}

static int ship(mly_action_call *c, void *arg) {
  (void)arg;
  char tracking[MLY_INSTANCE_NAME_MAX + 32];
  snprintf(tracking, sizeof tracking, "TRK-%s", mly_action_key(c));
  mly_map_set_str(mly_action_context(c), "tracking", tracking);
  return mly_action_event(c, "shipped");
}

static int notify(mly_action_call *c, void *arg) {
  (void)arg;
  mly_value *ctx = mly_action_context(c);
  const char *path = NULL, *detail = "";
  if (mly_map_get_str(ctx, "notify_file", &path) < 0) return 0;
  if (mly_map_get_str(ctx, "error", &detail) < 0 &&
      mly_map_get_str(ctx, "tracking", &detail) < 0)
    detail = "not paid before its deadline";
  int64_t tries = 0;
  mly_map_get_int(ctx, "charge_attempts", &tries);
  char me[MLY_INSTANCE_NAME_MAX + 1], line[1024];
  instance_of(c, me, sizeof me);
  int n = snprintf(line, sizeof line, "%s %s: %s (charge attempts: %lld)\n",
                   me, mly_action_state(c), detail, (long long)tries);
  if (n < 0 || (size_t)n >= sizeof line) n = (int)sizeof line - 1;
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                0600);
  if (fd < 0) return mly_action_fail(c, false, "%s: %s", path, strerror(errno));
  ssize_t w = write(fd, line, (size_t)n);
  close(fd);
  return w == n ? 0 : mly_action_fail(c, false, "%s: short write", path);
}

static int expire(mly_action_call *c, void *arg) {
  mly_runtime *rt = arg;
  const char *order = NULL;
  if (mly_map_get_str(mly_action_context(c), "order", &order) < 0)
    return mly_action_fail(c, true, "no order in the context");
  int rc = mly_fsm_send(rt, order, "expired", NULL, NULL, NULL);
  if (rc < 0 && rc != MLY_ENOENT && rc != MLY_ESRCH) /* ended: nothing to do */
    return mly_action_fail(c, false, "send: %s", mly_strerror(rc));
  return mly_action_event(c, "sent");
}

int mly_actions_init(mly_runtime *rt);
int mly_actions_init(mly_runtime *rt) {
  int rc;
  if ((rc = mly_action_register(rt, "Charge", charge, NULL, 0)) < 0 ||
      (rc = mly_action_register(rt, "Ship", ship, NULL, 0)) < 0 ||
      (rc = mly_action_register(rt, "Notify", notify, NULL, 0)) < 0 ||
      (rc = mly_action_register(rt, "Expire", expire, rt, 0)) < 0)
    return rc;
  return 0;
}
