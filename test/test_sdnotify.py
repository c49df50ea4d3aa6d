#!/usr/bin/env python3
"""sd_notify, both sides, against real `mealy supervise` runs.

Programs speak the protocol with test/sdnotify_send (a tiny C sender, as
libsystemd's sd_notify would); this test process is the foreign process
whose messages must be refused, and the listener that `mealy supervise`
itself notifies.  No check measures a duration: waits are bounded polls
and what is asserted is states, pids and counts.

The last case sends random datagrams (valid, garbage, too big, with NULs)
from the program and from this process, and checks what `ctl status`
shows against a model of the protocol: MEALY_SDN_SEEDS=N sequences
(default 12), MEALY_SDN_SEED=N to replay one.

usage: test_sdnotify.py PATH/TO/mealy PATH/TO/sdnotify_send
"""
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import svtest
from svtest import alive, check, env_value, environ_of, poll

MEALY, SEND = (os.path.abspath(a) for a in sys.argv[1:3])
TOP = svtest.top("mealy-sdn.")
Sv = functools.partial(svtest.Sv, MEALY, TOP)


def send_foreign(path, msg):
    """From this process: not one of any program's."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(msg.encode(), path)
    s.close()


def wait_file(path):
    return poll(lambda: os.path.exists(path) and open(path).read().strip())


# ---- READY=1, STATUS=, a foreign message, MAINPID ---------------------

def case_ready_status_mainpid(tracking):
    print("# case: ready, status, foreign messages, MAINPID (tracking: %s)"
          % tracking)
    sv = Sv("ready-" + tracking, {
        "svc": """
ready: sd_notify
shell: true
command: |
  echo "$NOTIFY_SOCKET" > sockpath
  while [ ! -e go1 ]; do sleep 0.1; done
  sleep 1000 & echo $! > mainpid
  exec %s 'STATUS=serving 3 clients' "MAINPID=$!" 'READY=1' -- sh -c 'while [ ! -e go2 ]; do sleep 0.1; done'
""" % SEND,
        "after": """
depends_on: [svc]
command: [sleep, "1000"]
""",
        "intruder": """
shell: true
command: |
  while [ ! -s sockpath ]; do sleep 0.1; done
  exec %s -s "$(cat sockpath)" READY=1 'STATUS=intruded' -- sleep 1000
""" % SEND}, extra="tracking: %s\n" % tracking)
    sockpath = wait_file(os.path.join(sv.dir, "sockpath"))
    check("the program got a NOTIFY_SOCKET", bool(sockpath))
    if not sockpath:
        return sv.stop()
    st = os.stat(sockpath)
    check("its socket is mode 0600", st.st_mode & 0o777 == 0o600)
    check("its directory is mode 0711",
          os.stat(os.path.dirname(sockpath)).st_mode & 0o777 == 0o711)
    # a stranger claims readiness, and a main pid of its own
    send_foreign(sockpath, "READY=1\nMAINPID=%d\nSTATUS=forged" % os.getpid())
    check("the foreign messages are refused (counted): this test's, and "
          "another program's", poll(lambda: (sv.field("svc", "notify_refused")
                                           or 0) >= 3))
    st = sv.status("svc")
    check("a foreign READY=1 does not make it ready", st and not st["ready"])
    check("a foreign MAINPID is not taken", st and st["main_pid"] == 0)
    check("a foreign STATUS is not shown", st and st["status"] == "")
    check("the dependent still waits",
          sv.field("after", "state") == "waiting")
    open(os.path.join(sv.dir, "go1"), "w").close()
    check("READY=1 from the program: ready",
          poll(lambda: sv.field("svc", "ready")))
    mainpid = int(wait_file(os.path.join(sv.dir, "mainpid")) or 0)
    st = sv.status("svc")
    check("STATUS= is shown by ctl status",
          st and st["status"] == "serving 3 clients")
    check("MAINPID from the program is taken", st and st["main_pid"] == mainpid)
    check("the dependent starts once it is ready",
          poll(lambda: sv.field("after", "state") == "running"))
    r = subprocess.run([MEALY, "ctl", "-s", sv.sock, "status"],
                       capture_output=True, text=True)
    check("the table shows the status line", "serving 3 clients" in r.stdout)
    # the process it started exits: the main process is watched instead
    started = sv.field("svc", "pid")
    open(os.path.join(sv.dir, "go2"), "w").close()
    check("its first process exits; it is now its MAINPID",
          poll(lambda: sv.field("svc", "pid") == mainpid))
    check("... and it did not restart",
          sv.field("svc", "restarts") == 0 and started != mainpid)
    check("the log says so", "(MAINPID): watching that" in sv.logtext())
    sv.ctl("stop", "svc")
    check("ctl stop stops the main process it watches",
          poll(lambda: not alive(mainpid) and
               sv.field("svc", "state") == "stopped"))
    sv.ctl("start", "svc")

    def followed():
        st = sv.status("svc")
        return (st and st["main_pid"] and st["pid"] == st["main_pid"] and
                st["main_pid"] != mainpid and st["main_pid"])
    main2 = poll(followed)
    check("started again, it follows its new MAINPID", main2)
    if main2:
        os.kill(main2, signal.SIGKILL)
    check("the main process dies: the program restarts",
          poll(lambda: (sv.field("svc", "restarts") or 0) >= 1))
    check("supervise exits 0", sv.stop() == 0)


# ---- a daemon's worker has the stop signal once ------------------------

def case_daemon_worker_once(tracking):
    """The main process (MAINPID), orphaned at once (as a daemon's double
    fork leaves it: one of the program's under either tracking), leads a
    session and group of its own,
    and its worker in it cleans up for 3 s after the stop signal; 1 s
    after the signal the main process is gone and the worker an orphan
    of the supervisor.  It had the signal with its group: it must not
    have it again while the rest drains (each TERM is written to terms;
    a second one would come after the worker ran its trap for the first,
    on every run)."""
    print("# case: a daemon's worker has the stop signal once (tracking: %s)"
          % tracking)
    sv = Sv("worker-" + tracking, {"svc": """
ready: sd_notify
shell: true
stop_grace: 20s
command: |
  cat >worker.sh <<'EOF'
  trap 'echo TERM >>terms; stop=1' TERM
  : >armed
  while [ -z "$stop" ]; do sleep 0.1; done
  sleep 3 && echo cleaned >cleaned
  EOF
  cat >daemon.sh <<'EOF'
  trap 'sleep 1; exit 0' TERM
  sh worker.sh &
  while :; do sleep 0.1; done
  EOF
  sh -c 'setsid sh daemon.sh & echo $! >daemonpid'
  exec %s "MAINPID=$(cat daemonpid)" READY=1 -- true
""" % SEND}, extra="tracking: %s\n" % tracking)
    armed = os.path.join(sv.dir, "armed")
    check("its worker runs", poll(lambda: os.path.exists(armed)))
    check("its main process is the daemon",
          poll(lambda: sv.field("svc", "main_pid") and
               sv.field("svc", "pid") == sv.field("svc", "main_pid")))
    sv.ctl("stop", "svc")
    check("stopped", poll(lambda: sv.field("svc", "state") == "stopped",
                          tries=300))
    check("the worker finished its cleanup",
          os.path.exists(os.path.join(sv.dir, "cleaned")))
    terms = os.path.join(sv.dir, "terms")
    n = open(terms).read().count("TERM") if os.path.exists(terms) else 0
    check("the worker had the stop signal once (got %d)" % n, n == 1)
    check("supervise exits 0", sv.stop() == 0)


# ---- a forged MAINPID from the program, STOPPING, RELOADING, ERRNO ----

def case_forged_mainpid():
    print("# case: MAINPID naming a stranger, STOPPING, RELOADING, ERRNO")
    stranger = subprocess.Popen(["sleep", "1000"])
    sv = Sv("forged", {"svc": """
ready: sd_notify
command: [%s, "MAINPID=%d", "READY=1", "RELOADING=1\\nERRNO=5", "UNKNOWN_KEY=x", "STOPPING=1", "--", sleep, "1000"]
""" % (SEND, stranger.pid)})
    check("ready", poll(lambda: sv.field("svc", "ready")))
    check("RELOADING=1 shown", poll(lambda: sv.field("svc", "reloading")))
    st = sv.status("svc")
    check("MAINPID naming a foreign process is refused",
          st and st["main_pid"] == 0)
    check("ERRNO= shown", st and st["errno"] == 5)
    check("STOPPING=1 shown", poll(lambda: sv.field("svc", "stopping")))
    check("the log says the MAINPID is not one of its processes",
          "MAINPID=%d is not one of its processes" % stranger.pid
          in sv.logtext())
    sockpath = env_value(environ_of(st["pid"]), "NOTIFY_SOCKET")
    check("the socket is named in its environment", bool(sockpath))
    subprocess.run([SEND, "-s", sockpath, "READY=1"])  # a stranger again
    check("still reloading after a stranger's READY=1",
          sv.field("svc", "reloading"))
    stranger.kill()
    stranger.wait()
    check("supervise exits 0", sv.stop() == 0)


# ---- a crash of the supervisor, with a state directory ----------------------

def case_adopt():
    print("# case: after a SIGKILL of supervise, its MAINPID is adopted and "
          "its watchdog goes on")
    progs = {"svc": """
ready: sd_notify
watchdog: 5s
shell: true
command: |
  %s -i 100 -n 0 WATCHDOG=1 & echo $! > mainpid
  exec %s "MAINPID=$!" READY=1 -- sh -c 'while [ ! -e go ]; do sleep 0.1; done'
""" % (SEND, SEND)}
    state = os.path.join(TOP, "adopt-state")
    sv = Sv("adopt", progs, extra="state_dir: %s\n" % state)
    mainpid = int(wait_file(os.path.join(sv.dir, "mainpid")) or 0)
    check("ready", poll(lambda: sv.field("svc", "ready")))
    open(os.path.join(sv.dir, "go"), "w").close()
    check("its main process is its MAINPID",
          poll(lambda: sv.field("svc", "pid") == mainpid))
    time.sleep(0.5)  # the save is journaled (sync: always), as suite 13
    sv.proc.kill()
    sv.proc.wait()
    check("the main process outlives the supervisor", alive(mainpid))
    sv2 = Sv("adopt-2", progs, extra="state_dir: %s\n" % state)
    check("the next run adopts it",
          poll(lambda: sv2.field("svc", "pid") == mainpid))
    kicks = poll(lambda: (sv2.field("svc", "watchdog_kicks") or 0) >= 100,
                 tries=600)
    check("its WATCHDOG=1 reach the next run (the same socket path)", kicks)
    st = sv2.status("svc")
    check("and keep it: no restart, no expiry",
          st and st["restarts"] == 0 and st["watchdog_expired"] == 0)
    check("supervise exits 0", sv2.stop() == 0)
    check("the adopted main process is stopped with it", not alive(mainpid))


# ---- a program of another user ---------------------------------------------

def case_user():
    import pwd
    print("# case: a program running as nobody reaches its own socket")
    nobody = pwd.getpwnam("nobody")
    send = os.path.join(TOP, "sdnotify_send")  # where nobody can run it
    shutil.copy(SEND, send)
    os.chmod(send, 0o755)
    sv = Sv("user", {"svc": """
user: nobody
ready: sd_notify
command: [%s, "STATUS=as nobody", READY=1, --, sleep, "1000"]
""" % send})
    check("ready, from a program of another user",
          poll(lambda: sv.field("svc", "ready")))
    _, env = sv.environ("svc")
    sock = env_value(env, "NOTIFY_SOCKET")
    st = os.stat(sock) if sock else None
    check("its socket is the program's user's, mode 0600",
          st and st.st_uid == nobody.pw_uid and st.st_mode & 0o777 == 0o600)
    check("its status is shown", sv.field("svc", "status") == "as nobody")
    check("supervise exits 0", sv.stop() == 0)


# ---- the watchdog -------------------------------------------------------

def case_watchdog():
    print("# case: watchdog expiry restarts, WATCHDOG=1 keeps it alive")
    sv = Sv("watchdog", {
        "silent": """
watchdog: 300ms
backoff: {initial: 50ms}
intensity: {max_restarts: 1000, within: 60s}
command: [sleep, "1000"]
""",
        "kicker": """
watchdog: 3s
ready: sd_notify
command: [%s, "-i", "30", "-n", "0", "WATCHDOG=1", "READY=1"]
""" % SEND,
        "trigger": """
ready: sd_notify
restart: on-failure
backoff: {initial: 50ms}
shell: true
command: |
  [ -e triggered ] && exec %s READY=1 -- sleep 1000
  touch triggered
  exec %s READY=1 WATCHDOG=trigger -- sleep 1000
""" % (SEND, SEND)})
    check("a silent program is restarted by its watchdog, again and again",
          poll(lambda: (sv.field("silent", "restarts") or 0) >= 3))
    check("... each counted as a watchdog expiry",
          (sv.field("silent", "watchdog_expired") or 0) >= 3)
    pid, env = sv.environ("silent")  # it restarts all the time: one read
    check("WATCHDOG_USEC in its environment", b"WATCHDOG_USEC=300000" in env)
    check("WATCHDOG_PID names the program's process",
          ("WATCHDOG_PID=%d" % pid).encode() in env)
    check("the kicker's kicks are counted, many intervals' worth",
          poll(lambda: (sv.field("kicker", "watchdog_kicks") or 0) >= 150,
               tries=600))
    st = sv.status("kicker")
    check("WATCHDOG=1 kept it alive: no restart, no expiry",
          st and st["restarts"] == 0 and st["watchdog_expired"] == 0)
    check("WATCHDOG=trigger: a failure, restarted (on-failure)",
          poll(lambda: sv.field("trigger", "restarts") == 1 and
               sv.field("trigger", "state") == "running"))
    check("... counted", sv.field("trigger", "watchdog_expired") == 1)
    check("the log names the watchdog",
          "watchdog: no WATCHDOG=1 within the interval" in sv.logtext() and
          "watchdog: WATCHDOG=trigger" in sv.logtext())
    check("supervise exits 0", sv.stop() == 0)


# ---- `mealy supervise` itself under a service manager --------------------

def case_manager(abstract):
    print("# case: supervise notifies its own NOTIFY_SOCKET (%s)"
          % ("@abstract" if abstract else "a path"))
    lis = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = "mealy-sdn-test-%d" % os.getpid()
        lis.bind("\0" + name)
        path = "@" + name
    else:
        path = os.path.join(TOP, "manager.sock")
        lis.bind(path)
    lis.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    lis.settimeout(0.1)
    msgs = []

    def drain():
        while True:
            try:
                data, anc, _, _ = lis.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                return
            msgs.append(data.decode())

    sv = Sv("manager-%s" % ("abstract" if abstract else "path"), {
        "slow": """
ready: sd_notify
shell: true
command: |
  while [ ! -e go ]; do sleep 0.1; done
  exec %s READY=1 -- sleep 1000
""" % SEND,
        "plain": "command: [sleep, \"1000\"]\n"},
        env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    poll(lambda: sv.field("plain", "state") == "running")
    drain()
    check("not READY=1 while a program is not ready",
          not any("READY=1" in m for m in msgs))
    _, env = sv.environ("plain")
    check("the programs do not get the supervisor's NOTIFY_SOCKET",
          not any(e.startswith(b"NOTIFY_SOCKET=") or
                  e.startswith(b"WATCHDOG_USEC=") for e in env))
    open(os.path.join(sv.dir, "go"), "w").close()

    def seen(prefix):
        drain()
        return any(m.startswith(prefix) for m in msgs)
    check("READY=1 once every program is ready",
          poll(lambda: seen("READY=1")))
    check("with a STATUS= line",
          any("STATUS=2 of 2 programs ready" in m for m in msgs))
    check("WATCHDOG=1 while it runs (WATCHDOG_USEC)",
          poll(lambda: drain() or
               sum(m == "WATCHDOG=1" for m in msgs) >= 5))
    sv.proc.send_signal(signal.SIGTERM)

    check("STOPPING=1 at shutdown", poll(lambda: seen("STOPPING=1")))
    check("READY=1 was sent exactly once",
          sum(m.startswith("READY=1") for m in msgs) == 1)
    check("supervise exits 0", sv.stop() == 0)
    lis.close()



# ---- the protocol against a model, at random ------------------------------

RELAY = r"""
import os, socket, sys, time
sock = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
n = 0
while True:
    path = "batch-%d" % n
    while not os.path.exists(path + ".ok"):
        time.sleep(0.02)
    for line in open(path).read().split("\n"):
        if line:
            s.sendto(bytes.fromhex(line), sock)
    open("sent-%d" % n, "w").close()
    n += 1
"""

KEYS = ["READY", "STATUS", "STOPPING", "RELOADING", "ERRNO", "WATCHDOG",
        "MAINPID", "FDSTORE", "X_UNKNOWN", "READY ", "ready", ""]


def random_line(rng, own_pid):
    k = rng.choice(KEYS)
    v = rng.choice(["1", "0", "", "trigger", "%d" % own_pid, "1",
                    "".join(rng.choice("abc XYZ=19-_.") for _ in
                            range(rng.randrange(0, 300))),
                    str(rng.randrange(-5, 5000)), "12abc", "1"])
    if k == "WATCHDOG" and v == "trigger":
        v = "1"  # a trigger ends the life: not this model's business
    line = k + "=" + v if rng.random() > 0.05 else k + v
    if rng.random() < 0.03:
        line = line[:1] + "\0" + line[1:]
    return line


def random_datagram(rng, own_pid):
    lines = [random_line(rng, own_pid) for _ in range(rng.randrange(1, 5))]
    d = "\n".join(lines) + ("\n" if rng.random() < 0.3 else "")
    if rng.random() < 0.04:
        d += "STATUS=" + "x" * (4096 + rng.randrange(1, 100))  # too big
    return d.encode()


class NotifyModel:
    """What the supervisor's status must say after the program's
    datagrams (taken) and strangers' (refused)."""

    def __init__(self, own_pid):
        self.own = own_pid
        self.status, self.errno, self.main_pid = "", 0, 0
        self.ready = self.reloading = self.stopping = False
        self.kicks = self.accepted = self.refused = 0

    def stranger(self, d):
        self.refused += 1

    def program(self, d):
        if len(d) > 4096:
            self.refused += 1
            return
        self.accepted += 1
        for line in d.decode().split("\n"):
            if "\0" in line or "=" not in line or line.startswith("="):
                continue
            k, v = line.split("=", 1)
            if k == "READY" and v == "1":
                self.ready, self.reloading = True, False
            elif k == "STATUS":
                self.status = v[:255]
            elif k == "STOPPING" and v == "1":
                self.stopping = True
            elif k == "RELOADING" and v == "1":
                self.reloading = True
            elif k == "ERRNO" and v.isdigit() and int(v) <= 4095:
                self.errno = int(v)
            elif k == "WATCHDOG" and v == "1":
                self.kicks += 1
            elif k == "MAINPID" and v == str(self.own):
                self.main_pid = self.own

    def differences(self, st):
        want = {"status": self.status, "errno": self.errno,
                "main_pid": self.main_pid, "ready": self.ready,
                "reloading": self.reloading, "stopping": self.stopping,
                "watchdog_kicks": self.kicks,
                "notify_accepted": self.accepted,
                "notify_refused": self.refused}
        return {k: (st.get(k), v) for k, v in want.items() if st.get(k) != v}


def case_model(seeds):
    import random
    print("# case: the protocol against a model, %d sequences" % len(seeds))
    for seed in seeds:
        rng = random.Random(seed)
        sv = Sv("model-%d" % seed, {"relay": """
ready: sd_notify
command: [%s, relay.py]
""" % sys.executable})
        open(os.path.join(sv.dir, "relay.py"), "w").write(RELAY)
        pid = poll(lambda: sv.field("relay", "pid"))
        _, env = sv.environ("relay")
        sock = env_value(env, "NOTIFY_SOCKET")
        m = NotifyModel(pid)
        bad = None
        for batch in range(rng.randrange(3, 8)):
            own = []
            for _ in range(rng.randrange(1, 15)):
                d = random_datagram(rng, pid)
                if rng.random() < 0.25:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                    s.sendto(d, sock)
                    s.close()
                    m.stranger(d)
                else:
                    own.append(d)
                    m.program(d)
            path = os.path.join(sv.dir, "batch-%d" % batch)
            with open(path, "w") as f:
                f.write("\n".join(d.hex() for d in own) + "\n")
            open(path + ".ok", "w").close()
            poll(lambda: os.path.exists(os.path.join(sv.dir,
                                                     "sent-%d" % batch)))
            # the counters settle, then every field must be the model's
            poll(lambda: not sv.status("relay") or
                 sv.field("relay", "notify_accepted") +
                 sv.field("relay", "notify_refused") >= m.accepted + m.refused)
            diff = poll(lambda: not m.differences(sv.status("relay") or {})
                        or None, tries=50)
            if diff is None:
                bad = m.differences(sv.status("relay") or {})
                break
        if not check("sequence %d: status matches the model%s" %
                     (seed, "" if bad is None else ": %r" % bad), bad is None):
            print("  replay: MEALY_SDN_SEED=%d" % seed)
        sv.stop()

def leftovers():
    return list(svtest.marked(TOP))


try:
    case_ready_status_mainpid("auto")
    case_ready_status_mainpid("pgroup")
    case_daemon_worker_once("auto")
    case_daemon_worker_once("pgroup")
    case_forged_mainpid()
    case_user()
    case_adopt()
    case_watchdog()
    case_manager(False)
    case_manager(True)
    one = os.environ.get("MEALY_SDN_SEED")
    case_model([int(one)] if one else
               range(1, int(os.environ.get("MEALY_SDN_SEEDS", "12")) + 1))
    if not check("nothing of any case is left running",
                 poll(lambda: not leftovers(), tries=100)):
        for pid in leftovers():
            print("note: left: %s" % open("/proc/%d/cmdline" % pid,
                                          "rb").read().replace(b"\0", b" "))
finally:
    svtest.kill_marked(TOP)
    code = svtest.finish(TOP)
sys.exit(code)
