/*
 * queue_functions.c - deferred functions for the `mealy queue` CLI tests,
 * loaded by `mealy fsm run --actions` (test_queue_cli.sh): its
 * mly_actions_init registers task functions with mly_defer_register.
 *
 *   record           (on the loop)        appends a line to the file
 *   record_blocking  (on the threadpool)  named by $MEALY_QTEST_LOG:
 *                      "FUNCTION QUEUE NAME|- customer=C n=N attempt=A"
 *   fail_for_good    reports a permanent failure (a dead letter)
 * and declares the queue "fromlib" (mly_queue_declare).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mealy.h>

static void put(mly_task *t, const char *fn) {
  const char *path = getenv("MEALY_QTEST_LOG");
  const mly_value *p = mly_task_payload(t);
  const char *customer = "-", *name = mly_task_name(t);
  int64_t n = -1;
  mly_map_get_str(p, "customer", &customer);
  mly_map_get_int(p, "n", &n);
  char line[512];
  int len = snprintf(line, sizeof line, "%s %s %s customer=%s n=%" PRId64
                     " attempt=%u\n", fn, mly_task_queue(t), name ? name : "-",
                     customer, n, mly_task_attempt(t));
  int fd = path ? open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)
                : -1;
  bool ok = fd >= 0 && len > 0 && write(fd, line, (size_t)len) == len;
  if (fd >= 0) close(fd);
  mly_task_done(t, ok ? MLY_TASK_OK : MLY_TASK_RETRY,
                ok ? NULL : "cannot write $MEALY_QTEST_LOG");
}

static void record(mly_task *t, void *arg) {
  (void)arg;
  put(t, "record");
}

static void record_blocking(mly_task *t, void *arg) {
  (void)arg;
  put(t, "record_blocking");
}

static void fail_for_good(mly_task *t, void *arg) {
  (void)arg;
  mly_task_done(t, MLY_TASK_PERMANENT, "fails for good");
}

int mly_actions_init(mly_runtime *rt);
int mly_actions_init(mly_runtime *rt) {
  int rc = mly_defer_register(rt, "record", record, NULL, 0);
  if (rc == 0)
    rc = mly_defer_register(rt, "record_blocking", record_blocking, NULL,
                            MLY_DEFER_BLOCKING);
  if (rc == 0) rc = mly_defer_register(rt, "fail_for_good", fail_for_good,
                                       NULL, 0);
  /* a queue declared in C by the library (validate must give it a
   * runtime with the queue layer, as run does) */
  mly_queue_def d = {.name = "fromlib", .max_concurrent = 2,
                     .retry = MLY_RETRY_UNSET};
  if (rc == 0) rc = mly_queue_declare(rt, &d, NULL, 0);
  return rc;
}
