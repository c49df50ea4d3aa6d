/*
 * fuzz_fsm_seeds.c - the YAML loader's target for the standalone driver
 * (fuzz_main.c): a few machine files written here, to which the meson
 * test adds test/fsm/ (the files the tests load) and fsm-crashes/ (the
 * inputs that broke the loader once) on the command line.  Inputs that
 * load, or get far enough to be refused by the validator, are kept to
 * mutate further.
 */
#include <string.h>

#include "fuzz_driver.h"
#include "fuzz_fsm.h"
#include "mealy.h"

static const char *const seeds[] = {
    "state_machines:\n"
    "  - name: m\n"
    "    namespace: ns\n"
    "    context_types: {n: int, l: [str]}\n"
    "    states:\n"
    "      - {name: a, initial: True, action: A, transitions: [{event: ok, "
    "to: b, countdown: {minimum: 1s, maximum: 2s}}]}\n"
    "      - name: b\n"
    "        continuation: True\n"
    "        action: B\n"
    "        transitions: [{event: x, to: c}]\n"
    "      - {name: c, fan_in: {count: 3, tolerate: 1}, action: C, "
    "transitions: [{event: y, to: w}]}\n"
    "      - name: w\n"
    "        wait: {events: [go], timeout: 1d, timeout_event: late}\n"
    "        transitions: [{event: go, to: z}, {event: late, to: z}]\n"
    "      - {name: z, final: True, entry: {exec: [/bin/true], timeout: 1s}}\n",
    "queues: {q: {}}\nstate_machines:\n  - name: m\n    on_failure: b\n"
    "    states: [{name: a, initial: True, action: A, transitions: "
    "[{event: e, to: b}]}, {name: b, final: True}]\n",
    "a: &x [1, 2]\nstate_machines: [{name: m, states: *x}]\n",
    /* '#' (first byte 0x23): the queue layer's readers are on */
    "# queues and schedules, each error path\n"
    "state_machines:\n  - name: m\n"
    "    states: [{name: a, initial: True, action: A, transitions: "
    "[{event: e, to: b}]}, {name: b, final: True}]\n"
    "queues:\n- {name: q, max_concurrent: 2, priority: 3, rate: 5, "
    "concurrency_key: c, concurrency_limit: 1}\n- {name: \"a@b\"}\n"
    "- {max_concurrent: 1}\n- {name: q}\n"
    "schedules:\n- {name: h, every: 5s, function: f}\n"
    "- {name: \"a@b\", every: 5s, function: f}\n"
    "- {name: h, cron: '0 3 * * MON', function: f, machine: m}\n"
    "- {name: t, every: 1m, machine: m, queue: q, priority: 2, "
    "payload: {a: [1, true, x]}}\n"
    "- {name: u, every: 1m, machine: nosuch, queue: nosuch, priority: 9}\n"
    "- {every: 5s}\n- 7\n",
    "# schedules alone\nschedules:\n- {name: f/x, every: 5s, function: f}\n"
    "- {name: ok, cron: '*/5 * * * *', timezone: Europe/Berlin, "
    "missed: all, function: g}\n",
};

static int make_seeds(fz_corpus *out, char *err, size_t errlen) {
  (void)err;
  (void)errlen;
  for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
    int rc = fz_corpus_add(out, (const uint8_t *)seeds[i], strlen(seeds[i]));
    if (rc) return rc;
  }
  return 0;
}

static bool keep(void) {
  return ff_last.rc == 0 || (ff_last.errors > 0 && ff_last.errors < 4);
}

static void count(uint64_t c[FZ_NCOUNTS]) {
  c[0] += ff_last.rc == 0;
  c[1] += ff_last.machines;
  c[2] += ff_last.rc == MLY_EINVAL;
}

const fz_target fz_this_target = {
    "fuzz_fsm", make_seeds, keep, count,
    {"loaded", "machines", "refused", NULL}};
