#!/usr/bin/python3
"""test_supervise_model.py - `mealy supervise` against a model, at random.

usage: test_supervise_model.py PATH/TO/mealy
  MEALY_MODEL_SEEDS=N   sequences to run (default 200); thousands for a
                        long run
  MEALY_MODEL_FIRST=S   the first seed (default 1): seeds S .. S+N-1
  MEALY_MODEL_SEED=S    replay one sequence (a failure prints its seed)
  MEALY_MODEL_JOBS=J    sequences run side by side (default 6)

Each sequence (one seed) draws up to five programs a..e, each depending
on some earlier ones, and runs the real supervisor on them with real
processes.  It then drives it with random steps: `start`, `stop`,
`restart` and `signal` through the control socket (msgpack-RPC, spoken
directly), reloads with edited configurations (programs changed, removed,
added back; an invalid file now and then; by `reload` or SIGHUP), crashes
(a program exits 3, or its leader is SIGKILLed), readiness lines, and
slow stops (a program that holds on SIGTERM until the test releases it).
Several steps may follow each other without waiting (a burst), as long
as their outcome does not depend on timing.  It ends with a shutdown:
graceful, by a second signal, or by a short shutdown_grace.

A model (class Model) says what must come of every step once everything
has settled: which programs are listed, each one's state (running,
starting, stopping, waiting, stopped, fatal), whether its process is the
same one as before or a new one, and what each command answers.  After
every burst the test waits until the supervisor is quiet and matches the
model (polled, with a generous limit), then checks the invariants:

  - at most one live process tree per program: each program holds a lock
    while it lives, and a second live copy finds it taken (at any time,
    not only when settled); every live process of a program is in the
    process group of the pid that status shows, and nothing of it lives
    when status shows none
  - status matches /proc: each pid shown is alive, leads its own group,
    and is the process of that program with its current definition
  - dependency order: a program starts only while all it depends on is
    ready; at shutdown, and for removed programs, no program is asked to
    stop while a program that depends on it still has a process
  - nothing starts or restarts once the shutdown has begun
  - no process of the supervisor's is left after it exits; it exits 0

A failure prints the seed, the steps so far, what the model expected and
what the supervisor said, and the end of its log.  Nothing measures a
duration: waits are bounded polls, and every verdict is on states,
orders and counts.
"""
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import svtest
from svtest import proc_stat

NAMES = "abcde"
SETTLE_LIMIT = 30.0   # seconds to reach the model's state (generous)
QUIET = 0.15          # the log unchanged this long, with status matching
EXIT_LIMIT = 40.0     # seconds for the supervisor to end after shutdown

LIFE_SH = r'''#!/bin/sh
# life.sh NAME ONTERM TAG: a program of the model test.  Holds NAME.lock
# while it lives (a second live copy writes to doubles).  TERM: exit, or
# (hold) wait until the test writes to the fifo release-PID.  USR1: noted
# in events; USR2: exit 3 (a crash); HUP: its readiness line on fd 3.
# (A signal to the group may kill mkfifo or interrupt the open: retried.)
n=$1 onterm=$2 tag=$3 dir=$(dirname "$0") f=$(dirname "$0")/release-$$
exec 9>>"$dir/$n.lock"
flock -n 9 || echo "$n $$ $tag" >>"$dir/doubles"
case $onterm in
  exit) trap 'exit 0' TERM ;;
  hold) trap 'until [ -p "$f" ] || mkfifo "$f" 9>&-; do :; done 2>/dev/null
              until read x <"$f"; do :; done 2>/dev/null
              exit 0' TERM ;;
esac
trap 'echo "$n USR1 $$" >>"$dir/events"' USR1
trap 'exit 3' USR2
trap 'echo >&3' HUP
echo "$n start $$ $tag" >>"$dir/events"
while :; do sleep 1000 9>&- & wait $!; done
'''


class Failure(Exception):
    pass


# ---- definitions and configurations ----------------------------------

class Def:
    """One program's definition; equal definitions need no restart."""
    FIELDS = ("tag", "onterm", "ready", "restart", "max_restarts")

    def __init__(self, name, **kw):
        self.name = name
        for f in self.FIELDS:
            setattr(self, f, kw[f])

    def key(self):
        return tuple(getattr(self, f) for f in self.FIELDS)

    def __eq__(self, other):
        return isinstance(other, Def) and self.key() == other.key()

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "%s(%s)" % (self.name, ",".join(str(x) for x in self.key()))


def random_def(rng, name, tag):
    return Def(name, tag=tag,
               onterm=rng.choice(["exit", "exit", "hold"]),
               ready=rng.choice(["none", "none", "notify"]),
               restart=rng.choice(["always", "always", "on-failure", "never"]),
               max_restarts=rng.choice([1, 2, 50]))


def config_text(d, cfg, deps, grace):
    """The configuration after its socket line (svtest.Sv adds it)."""
    out = ["shutdown_grace: %s" % grace, "programs:"]
    for n in NAMES:
        if n not in cfg:
            continue
        g = cfg[n]
        out += ["  %s:" % n,
                "    command: [sh, %s/life.sh, %s, %s, t%d]"
                % (d, n, g.onterm, g.tag),
                "    restart: %s" % g.restart,
                "    backoff: {initial: 10ms, max: 20ms}",
                "    intensity: {max_restarts: %d, within: 10m}"
                % g.max_restarts,
                "    stop_grace: 60s",
                "    env: {MODEL_PROG: %s}" % n]
        if g.ready == "notify":
            out.append("    ready: {notify_fd: 3}")
        if deps[n]:
            out.append("    depends_on: [%s]" % ", ".join(deps[n]))
    return "\n".join(out) + "\n"


# ---- the model -------------------------------------------------------

class Life:
    """One process of a program, from spawn to exit."""
    serial = 0

    def __init__(self, g):
        Life.serial += 1
        self.serial = Life.serial   # tells lives apart (id() is reused)
        self.tag = g.tag
        self.hold = g.onterm == "hold"
        self.notify = g.ready == "notify"
        self.notified = False
        self.stopping = False
        self.pid = None       # learnt when the test next settles

    def ready(self):
        return not self.stopping and (not self.notify or self.notified)


class Proc:
    def __init__(self, g):
        self.d = g            # its definition
        self.pending = None   # a reload's definition, for its next life
        self.retiring = False
        self.stop_sent = False
        self.held = False     # stopped by hand
        self.fatal = False
        self.fails = 0        # restarts counted against the intensity
        self.want = True      # the supervisor starts every program once
        self.life = None
        self.starts = 0       # its start lines in the events file


class Model:
    """What the supervisor must do, once everything has settled.

    The rules, as README.md states them: one life at a time (a command
    during a stop takes effect when it is down); a start or restart waits
    until every dependency is ready; a crash goes through the restart
    policy and the intensity limit; a reload gives a changed program its
    new definition for its next life (restarting it unless stopped by
    hand), stops a removed one in reverse dependency order and forgets it
    once down; a shutdown stops everything in reverse dependency order
    and starts nothing."""

    def __init__(self, deps, cfg):
        self.deps = deps
        self.cfg = dict(cfg)
        self.procs = {n: Proc(cfg[n]) for n in NAMES if n in cfg}
        self.shutdown = False
        self.closure()

    def is_up(self, p):
        return p.want or p.life is not None

    def deps_ready(self, n):
        for d in self.deps[n]:
            q = self.procs.get(d)
            if q is None or q.life is None or not q.life.ready():
                return False
        return True

    def dependent_up(self, n):
        return any(n in self.deps[m] and self.is_up(q)
                   for m, q in self.procs.items() if m != n)

    @staticmethod
    def swap(p):
        p.d, p.pending = p.pending, None
        p.fatal = False
        p.fails = 0

    @staticmethod
    def clear_fatal(p):
        if p.fatal:
            p.fatal = False
            p.fails = 0

    def stop(self, p):
        p.want = False
        if p.life:
            p.life.stopping = True

    def closure(self):
        """Everything that follows by itself, until nothing changes."""
        while True:
            changed = False
            for p in self.procs.values():
                if p.life and p.life.stopping and not p.life.hold:
                    p.life = None
                    changed = True
                if p.life is None and p.pending is not None:
                    self.swap(p)
            for n in list(self.procs):
                p = self.procs[n]
                if p.retiring and p.life is None and not p.want:
                    del self.procs[n]
                    changed = True
            for n in reversed(list(self.procs)):
                p = self.procs[n]
                if (not (self.shutdown or p.retiring) or p.stop_sent or
                        not self.is_up(p) or self.dependent_up(n)):
                    continue
                p.stop_sent = True
                self.stop(p)
                changed = True
            if not self.shutdown:
                for n, p in self.procs.items():
                    if p.want and p.life is None and self.deps_ready(n):
                        if p.pending is not None:
                            self.swap(p)
                        p.life = Life(p.d)
                        changed = True
            if not changed:
                return

    # commands; each returns whether the supervisor must answer "ok"
    def defined(self, n):
        p = self.procs.get(n)
        return p is not None and not p.retiring

    def up_by_hand(self, n, again):
        """start (again False) and restart (again True)."""
        if not self.defined(n) or self.shutdown:
            return False
        p = self.procs[n]
        p.held = False
        self.clear_fatal(p)
        p.want = True
        if again and p.life:
            p.life.stopping = True
        self.closure()
        return True

    def stop_by_hand(self, n):
        if not self.defined(n):
            return False
        p = self.procs[n]
        p.held = True
        self.stop(p)
        self.closure()
        return True

    def crash(self, n):
        p = self.procs[n]
        p.life = None
        if p.d.restart == "never":
            p.want = False
        elif p.fails >= p.d.max_restarts:
            p.fatal = True
            p.want = False
        else:
            p.fails += 1
        self.closure()

    def notified(self, n):
        self.procs[n].life.notified = True
        self.closure()

    def released(self, n):
        self.procs[n].life = None
        self.closure()

    def replace(self, p, g):
        p.pending = g
        if p.held or self.shutdown:
            return
        self.clear_fatal(p)
        p.want = True
        if p.life:
            p.life.stopping = True

    def reload(self, cfg):
        if self.shutdown:
            return False
        for n, p in list(self.procs.items()):
            g = cfg.get(n)
            cur = p.pending or p.d
            if g is None:
                if not p.retiring:
                    p.retiring = True
                    p.stop_sent = False
                    p.pending = None
            elif p.retiring:
                p.retiring = False
                if p.stop_sent or g != cur:
                    p.stop_sent = False
                    self.replace(p, g)
            elif g != cur:
                self.replace(p, g)
        for n in NAMES:
            if n in cfg and n not in self.procs:
                self.procs[n] = Proc(cfg[n])
        self.cfg = dict(cfg)
        self.closure()
        return True

    def begin_shutdown(self):
        self.shutdown = True
        self.closure()

    # what status must show
    def expected(self, n):
        p = self.procs[n]
        if p.life:
            if p.life.stopping:
                return "stopping"
            return "starting" if p.life.notify and not p.life.notified \
                else "running"
        if p.want:
            return "waiting"
        return "fatal" if p.fatal else "stopped"

    def snapshot(self):
        return {n: (p.life and p.life.serial, p.life and p.life.stopping,
                    p.life and p.life.notified, p.want, p.retiring)
                for n, p in self.procs.items()}


# ---- the control socket ----------------------------------------------

class Ctl:
    """Requests one at a time on one connection (made when needed, again
    after a failure)."""

    def __init__(self, path):
        self.path = path
        self.conn = None
        self.msgid = 0

    def close(self):
        if self.conn:
            self.conn.close()
        self.conn = None

    def call(self, method, *params):
        """(error, result) of one request; raises OSError when it cannot."""
        if self.conn is None:
            self.conn = svtest.Conn(self.path, timeout=20)
        self.msgid += 1
        try:
            self.conn.send([0, self.msgid, method, list(params)])
            while True:
                msg = self.conn.recv()
                if msg is None:
                    raise ConnectionError("the supervisor hung up")
                if msg[0] == 1 and msg[1] == self.msgid:
                    return msg[2], msg[3]
        except OSError:
            self.close()
            raise


# ---- processes -------------------------------------------------------

def marked(mark):
    """{pid: MODEL_PROG or None} of the live processes of a sequence."""
    return {pid: svtest.env_value(env, "MODEL_PROG")
            for pid, env in svtest.marked(mark).items()}


# ---- one sequence ----------------------------------------------------

LOG_RE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (\S+) +(.*)$")


class Sequence:
    def __init__(self, mealy, seed, top):
        self.mealy = mealy
        self.seed = seed
        self.rng = random.Random(seed)
        self.top = top
        self.name = "s%d" % seed
        self.dir = os.path.join(top, self.name)
        self.steps = []
        self.sv = None
        self.ctl = None
        self.counts = {}

    # ---- helpers ----
    def path(self, name):
        return os.path.join(self.dir, name)

    def note(self, text):
        self.steps.append(text)

    def count(self, kind):
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def fail(self, why):
        raise Failure(why)

    def events(self):
        try:
            with open(self.path("events")) as f:
                return f.read().split("\n")
        except OSError:
            return []

    def starts_of(self, n, lines=None):
        lines = self.events() if lines is None else lines
        return [ln.split() for ln in lines if ln.startswith(n + " start ")]

    def check_doubles(self):
        try:
            with open(self.path("doubles")) as f:
                text = f.read()
        except OSError:
            return
        if text.strip():
            self.fail("two live copies of a program (name pid tag): "
                      + text.strip().replace("\n", "; "))

    def status(self):
        err, res = self.ctl.call("status")
        if err is not None:
            self.fail("status: %s" % err)
        return {e["name"]: e for e in res}

    def command(self, method, *params):
        try:
            err, _ = self.ctl.call(method, *params)
        except OSError as e:
            self.fail("%s %s: %s" % (method, " ".join(params), e))
        return err

    def expect_answer(self, ok, method, *params):
        err = self.command(method, *params)
        if ok and err is not None:
            self.fail("%s %s: expected ok, got %r" % (method,
                      " ".join(params), err))
        if not ok and err is None:
            self.fail("%s %s: expected an error, got ok" % (method,
                      " ".join(params)))

    def write_config(self, cfg, text=None):
        self.sv.write(None if cfg is None else
                      config_text(self.dir, cfg, self.deps, self.grace), text)

    def log_lines(self):
        try:
            with open(self.path("log"), errors="replace") as f:
                return f.read().split("\n")
        except OSError:
            return []

    # ---- settling ----
    def mismatch(self, st, ev):
        m = self.model
        if set(st) != set(m.procs):
            return "listed %s, expected %s" % (sorted(st), sorted(m.procs))
        for n, p in m.procs.items():
            e = st[n]
            want = m.expected(n)
            if e["state"] != want:
                return "%s: state %s, expected %s" % (n, e["state"], want)
            pid = e["pid"]
            if p.life is None:
                if pid != 0:
                    return "%s: pid %d, expected none" % (n, pid)
                continue
            if pid <= 0:
                return "%s: no pid, expected one" % n
            starts = self.starts_of(n, ev)
            if p.life.pid is not None and pid != p.life.pid:
                return "%s: pid %d, expected the same process %d" % (
                    n, pid, p.life.pid)
            if p.life.pid is None:
                if len(starts) <= p.starts or int(starts[-1][2]) != pid:
                    return "%s: expected a new process (pid %d; starts %d)" \
                        % (n, pid, len(starts))
                if starts[-1][3] != "t%d" % p.life.tag:
                    return "%s: runs %s, expected t%d" % (
                        n, starts[-1][3], p.life.tag)
            if e["ready"] != (want == "running"):
                return "%s: ready %s in state %s" % (n, e["ready"], want)
        return None

    def settle(self, untouched=()):
        """Waits until the supervisor is quiet and matches the model."""
        deadline = time.monotonic() + SETTLE_LIMIT
        since = None
        size = -1
        why = "nothing polled"
        while True:
            self.check_doubles()
            st = self.status()
            ev = self.events()
            why = self.mismatch(st, ev)
            now = time.monotonic()
            cur = os.path.getsize(self.path("log"))
            if why is None:
                if since is not None and cur == size and now - since >= QUIET:
                    break
                if since is None or cur != size:
                    since, size = now, cur
            else:
                since = None
            if now > deadline:
                self.fail("not settled: " + why)
            time.sleep(0.02)
        # learn the new processes, then check status against /proc
        for n, p in self.model.procs.items():
            if p.life is not None and p.life.pid is None:
                p.life.pid = st[n]["pid"]
            starts = len(self.starts_of(n, ev))
            if n in untouched and starts != p.starts:
                self.fail("%s: %d unexpected starts" % (n, starts - p.starts))
            p.starts = starts
        self.check_proc(st)

    def check_proc(self, st):
        live = marked(self.dir)
        for n, e in st.items():
            pid = e["pid"]
            if pid <= 0:
                continue
            ps = proc_stat(pid)
            if ps is None or ps[0] == "Z":
                self.fail("%s: status pid %d is not alive" % (n, pid))
            if ps[1] != pid:
                self.fail("%s: pid %d is in group %d, not its own" %
                          (n, pid, ps[1]))
            if live.get(pid) != n:
                self.fail("%s: pid %d is not a process of %s" % (n, pid, n))
        for pid, n in live.items():
            if n is None:
                continue
            ps = proc_stat(pid)
            if ps is None or ps[0] == "Z":
                continue
            e = st.get(n)
            if e is None or e["pid"] <= 0 or ps[1] != e["pid"]:
                self.fail("process %d of %s (group %d) lives beside status "
                          "pid %s" % (pid, n, ps[1], e and e["pid"]))

    # ---- actions ----
    def deps_closure(self):
        tc = {}
        for n in NAMES:
            s = set(self.deps[n])
            for d in self.deps[n]:
                s |= tc[d]
            tc[n] = s
        return tc

    def can_touch(self, n, touched):
        """Whether a step on n has one outcome whatever the timing: not
        after a step on something that depends on n (that one may be
        passing its dependency check just then).  A crash ends a burst:
        its exit comes when it comes."""
        return not any(n in self.tdeps[m] for m in touched)

    def stoppable(self, n):
        p = self.model.procs.get(n)
        return p is None or p.life is None or p.life.pid is not None or \
            not p.life.hold

    def release(self, pid):
        fifo = self.path("release-%d" % pid)
        for _ in range(2000):
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:       # not there yet, or no reader yet
                if proc_stat(pid) is None:
                    self.fail("release: %d is gone already" % pid)
                time.sleep(0.01)
                continue
            try:
                os.write(fd, b"go\n")
            finally:
                os.close(fd)
            for _ in range(200):
                st = proc_stat(pid)
                if st is None or st[0] == "Z":
                    return
                time.sleep(0.01)
        self.fail("release: %d does not exit" % pid)

    def reload_step(self, touched):
        m, rng = self.model, self.rng
        if rng.random() < 0.1:   # an invalid file: refused, nothing changes
            self.write_config(None, "programs:\n  a: [\n")
            self.note("reload (invalid)")
            self.expect_answer(False, "reload")
            self.write_config(m.cfg)
            self.count("reload-invalid")
            return
        cfg = dict(m.cfg)
        ok_stop = {n for n in NAMES if self.can_touch(n, touched) and
                   self.stoppable(n)}
        for n in NAMES:
            r = rng.random()
            if n in cfg and r < 0.15:
                gone = {n} | {k for k in cfg if n in self.tdeps[k]}
                if gone <= ok_stop:
                    for k in gone:
                        del cfg[k]
            elif n in cfg and r < 0.45 and n in ok_stop:
                self.tag += 1
                cfg[n] = random_def(rng, n, self.tag)
        for n in NAMES:   # add, or bring back; dependencies first
            if n in cfg or rng.random() >= 0.4:
                continue
            if not all(d in cfg for d in self.deps[n]):
                continue
            p = m.procs.get(n)
            if p is not None and (n in touched or n not in ok_stop):
                continue   # retiring: back only once its stop settled
            self.tag += 1
            cfg[n] = random_def(rng, n, self.tag)
        if not cfg:   # a configuration has at least one program
            cfg = dict(m.cfg)
        self.write_config(cfg)
        self.note("reload %s" % sorted(cfg.values(), key=lambda g: g.name))
        if rng.random() < 0.3:
            before = sum(1 for ln in self.log_lines()
                         if "mealy    reloading " in ln)
            os.kill(self.sv.proc.pid, signal.SIGHUP)
            self.poll_log(lambda lines: sum(1 for ln in lines if
                                            "mealy    reloading " in ln)
                          > before, "SIGHUP: reloading")
            self.status()   # a round trip: the reload has read the file
            m.reload(cfg)
            self.count("reload-sighup")
        else:
            self.expect_answer(m.reload(cfg), "reload")
            self.count("reload")

    def poll_log(self, cond, what):
        deadline = time.monotonic() + SETTLE_LIMIT
        while not cond(self.log_lines()):
            if time.monotonic() > deadline:
                self.fail("never logged: " + what)
            time.sleep(0.01)

    def one_action(self, touched, first):
        """Picks one step whose outcome the model can tell; runs it."""
        m, rng = self.model, self.rng
        choices = []
        for n in NAMES:
            p = m.procs.get(n)
            ct = self.can_touch(n, touched)
            if m.defined(n) and ct:
                choices += [("start", n)] * 2
                if self.stoppable(n):
                    choices += [("stop", n)] * 2 + [("restart", n)] * 2
            elif not m.defined(n):
                choices.append(("start-undefined", n))
            if p is None:
                continue
            life = p.life
            if life is not None and life.pid is not None:
                choices.append(("signal", n))
                if ct and not life.stopping:
                    choices += [("crash", n)] * 2
                    if life.notify and not life.notified:
                        choices += [("ready", n)] * 3
                if ct and life.stopping and life.hold:
                    choices += [("release", n)] * 3
            elif life is None and first:
                choices.append(("signal-none", n))
        choices += [("reload", None)] * 3
        kind, n = rng.choice(choices)
        self.count(kind)
        if kind == "reload":
            self.reload_step(touched)
            return
        self.note("%s %s" % (kind, n))
        p = m.procs.get(n)
        if kind == "start":
            self.expect_answer(m.up_by_hand(n, False), "start", n)
        elif kind == "stop":
            self.expect_answer(m.stop_by_hand(n), "stop", n)
        elif kind == "restart":
            self.expect_answer(m.up_by_hand(n, True), "restart", n)
        elif kind == "start-undefined":
            self.expect_answer(False, "start", n)
        elif kind == "signal":
            pid = p.life.pid
            self.expect_answer(True, "signal", "USR1", n)
            deadline = time.monotonic() + SETTLE_LIMIT
            while "%s USR1 %d" % (n, pid) not in self.events():
                if time.monotonic() > deadline:
                    self.fail("signal USR1 %s: never reached pid %d" % (n, pid))
                time.sleep(0.01)
        elif kind == "signal-none":
            self.expect_answer(False, "signal", "USR1", n)
        elif kind == "crash":
            if rng.random() < 0.5:
                self.expect_answer(True, "signal", "USR2", n)
            else:
                os.kill(p.life.pid, signal.SIGKILL)
            m.crash(n)
        elif kind == "ready":
            self.expect_answer(True, "signal", "HUP", n)
            m.notified(n)
        elif kind == "release":
            self.release(p.life.pid)
            m.released(n)

    def burst(self):
        touched = set()
        self.note("-- burst")
        for i in range(self.rng.choice([1, 1, 1, 2, 3, 4])):
            snap = self.model.snapshot()
            self.one_action(touched, i == 0)
            after = self.model.snapshot()
            touched |= {n for n in set(snap) | set(after)
                        if snap.get(n) != after.get(n)}
            step = self.steps[-1].split()
            if step[0] in ("start", "stop", "restart", "ready", "release"):
                touched.add(step[1])
            if step[0] == "crash":
                break
        self.settle(set(self.model.procs) - touched)

    # ---- the end ----
    def shutdown(self):
        m, rng = self.model, self.rng
        how = rng.choice(["ctl", "TERM", "INT"])
        # a second signal while a slow program holds the shutdown up (it
        # cannot have ended then); a late one is tried too, below
        second = self.grace == "60s" and rng.random() < 0.5 and any(
            p.life and p.life.hold for p in m.procs.values())
        self.note("shutdown by %s%s (shutdown_grace %s)" % (
            how, ", then a second signal" if second else "", self.grace))
        self.count("shutdown-" + how)
        if how == "ctl":
            self.expect_answer(True, "shutdown")
        else:
            os.kill(self.sv.proc.pid, getattr(signal, "SIG" + how))
        m.begin_shutdown()
        self.poll_log(lambda lines: any(
            re.search(r"mealy +(SIGTERM|SIGINT|shutdown requested): "
                      r"stopping", ln) for ln in lines), "the shutdown began")
        if rng.random() < 0.5 and m.cfg:
            n = rng.choice(sorted(m.cfg))
            try:
                err, _ = self.ctl.call("start", n)
                if err is None:
                    self.fail("start %s during shutdown: answered ok" % n)
            except OSError:
                pass   # already gone
        running = [n for n, p in m.procs.items()
                   if p.life and not p.life.stopping and p.life.pid]
        if running and rng.random() < 0.5:   # a crash: no restart now
            n = rng.choice(sorted(running))
            self.note("crash %s during the shutdown" % n)
            self.count("shutdown-crash")
            os.kill(m.procs[n].life.pid, signal.SIGKILL)
            m.procs[n].life = None
        if second:
            self.count("shutdown-second")
            os.kill(self.sv.proc.pid, rng.choice([signal.SIGINT, signal.SIGTERM]))
        deadline = time.monotonic() + EXIT_LIMIT
        released = set()
        late = not second and rng.random() < 0.2
        if late:
            self.count("shutdown-late-signal")
        while self.sv.proc.poll() is None:
            if time.monotonic() > deadline:
                self.fail("the supervisor does not end after the shutdown")
            if late and any("every program is down" in ln
                            for ln in self.log_lines()):
                late = False   # too late to matter: it must still exit 0
                os.kill(self.sv.proc.pid, signal.SIGINT)
            if not second and self.grace == "60s":
                # release the slow ones as they are asked to stop
                for n, p in m.procs.items():
                    if p.life and p.life.hold and p.life.pid not in released:
                        try:
                            st = self.ctl.call("status", n)[1]
                        except OSError:
                            break
                        if st and st[0]["state"] == "stopping":
                            released.add(p.life.pid)
                            self.release(p.life.pid)
            time.sleep(0.02)
        self.ctl.close()
        if self.sv.proc.returncode != 0:
            self.fail("the supervisor exited %d" % self.sv.proc.returncode)
        deadline = time.monotonic() + 10
        while marked(self.dir):
            if time.monotonic() > deadline:
                self.fail("processes left after the supervisor exited: %s"
                          % marked(self.dir))
            time.sleep(0.05)
        self.check_doubles()
        self.check_log(second)

    def check_log(self, second):
        """Orders that must hold over the whole run, from its log."""
        alive, ready, retiring = {}, {}, set()
        down = False
        for i, ln in enumerate(self.log_lines()):
            mt = LOG_RE.match(ln)
            if not mt:
                continue
            who, msg = mt.group(1), mt.group(2)
            where = "log line %d (%s)" % (i + 1, ln)
            if who == "mealy":
                if re.match(r"(SIGTERM|SIGINT|shutdown requested): stopping",
                            msg):
                    down = True
                continue
            n = who
            if msg.startswith("started, pid"):
                if down:
                    self.fail("started during the shutdown: " + where)
                for d in self.deps[n]:
                    if not ready.get(d):
                        self.fail("%s started while %s was not ready: %s"
                                  % (n, d, where))
                alive[n], ready[n] = True, False
            elif msg == "ready":
                ready[n] = True
            elif msg.startswith("stopping:"):
                ready[n] = False
                if down or n in retiring:
                    for k in NAMES:
                        if n in self.deps[k] and alive.get(k):
                            self.fail("%s asked to stop while %s, which "
                                      "depends on it, runs: %s" % (n, k, where))
            elif msg.startswith(("exited", "cannot start", "cannot execute",
                                 "cannot chdir", "cannot switch",
                                 "cannot set up")):  # a failed spawn
                alive[n], ready[n] = False, False
            elif msg.startswith(("grace over", "SIGKILL to group")):
                ready[n] = False
            elif msg.startswith("removed from the config"):
                retiring.add(n)
            elif msg in ("back in the config", "removed"):
                retiring.discard(n)
            elif msg.startswith("restarting in") and down:
                self.fail("a restart during the shutdown: " + where)
        if second and not any(re.search(r"mealy +SIG(INT|TERM) during "
                                         r"shutdown: SIGKILL", ln)
                              for ln in self.log_lines()):
            self.fail("the second signal is not logged")

    # ---- the whole sequence ----
    def run(self):
        rng = self.rng
        os.makedirs(self.dir)
        with open(self.path("life.sh"), "w") as f:
            f.write(LIFE_SH)
        self.deps = {n: [d for d in NAMES[:i] if rng.random() < 0.35]
                     for i, n in enumerate(NAMES)}
        self.tdeps = self.deps_closure()
        self.grace = rng.choice(["60s", "60s", "60s", "1s"])
        self.tag = 0
        cfg = {}
        for n in NAMES:
            if all(d in cfg for d in self.deps[n]) and rng.random() < 0.85:
                self.tag += 1
                cfg[n] = random_def(rng, n, self.tag)
        if not cfg:
            self.tag += 1
            cfg["a"] = random_def(rng, "a", self.tag)
        self.note("deps %s, shutdown_grace %s" % (
            {n: d for n, d in self.deps.items() if d}, self.grace))
        self.note("config %s" % sorted(cfg.values(), key=lambda g: g.name))
        self.sv = svtest.Sv(self.mealy, self.top, self.name,
                            config_text(self.dir, cfg, self.deps, self.grace))
        self.ctl = Ctl(self.sv.sock)
        if not self.sv.answers():
            self.fail("the supervisor does not answer")
        self.model = Model(self.deps, cfg)
        self.settle()
        for _ in range(rng.randint(3, 9)):
            self.burst()
        self.shutdown()

    def cleanup(self):
        if self.ctl:
            self.ctl.close()
        if self.sv and self.sv.proc.poll() is None:
            self.sv.proc.kill()
            self.sv.proc.wait()
        svtest.kill_marked(self.dir)


def run_one(mealy, seed, top, lock, totals):
    s = Sequence(mealy, seed, top)
    try:
        s.run()
        ok, text = True, None
    except Failure as e:
        ok = False
        text = ["FAIL: seed %d: %s" % (seed, e),
                "  replay: MEALY_MODEL_SEED=%d %s %s" % (seed, sys.argv[0],
                                                         mealy),
                "  steps:"] + ["    " + x for x in s.steps]
        try:
            text.append("  status: %s" % sorted(
                (n, e["state"], e["pid"]) for n, e in s.status().items()))
        except Exception:
            pass
        if getattr(s, "model", None):
            text.append("  model: %s" % sorted(
                (n, s.model.expected(n), p.life and p.life.pid)
                for n, p in s.model.procs.items()))
        text.append("  log (end):")
        text += ["    | " + x for x in s.log_lines()[-60:]]
    finally:
        s.cleanup()
    with lock:
        for k, v in s.counts.items():
            totals[k] = totals.get(k, 0) + v
        if ok:
            shutil.rmtree(s.dir, ignore_errors=True)
        else:
            print("\n".join(text), flush=True)
    return ok


def main():
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    mealy = os.path.abspath(sys.argv[1])
    if os.environ.get("MEALY_MODEL_SEED"):
        seeds = [int(os.environ["MEALY_MODEL_SEED"])]
    else:
        first = int(os.environ.get("MEALY_MODEL_FIRST", "1"))
        seeds = range(first, first + int(os.environ.get("MEALY_MODEL_SEEDS",
                                                         "200")))
    jobs = int(os.environ.get("MEALY_MODEL_JOBS", "6"))
    top = tempfile.mkdtemp(prefix="mealy-model.")
    os.chmod(top, 0o755)
    lock = threading.Lock()
    totals = {}
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(
                lambda sd: run_one(mealy, sd, top, lock, totals), seeds))
    finally:
        shutil.rmtree(top, ignore_errors=True)
    failed = results.count(False)
    print("model: %d sequences (seeds %d..%d), steps: %s" % (
        len(results), min(seeds), max(seeds),
        ", ".join("%s %d" % kv for kv in sorted(totals.items()))))
    print("model: %d passed, %d failed" % (len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
