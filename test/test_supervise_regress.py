#!/usr/bin/env python3
"""Regressions of `mealy supervise` found by trying to break it (brksv).

Each case runs a real supervisor; waits are bounded polls, nothing asserts
a duration.  usage: test_supervise_regress.py PATH/TO/mealy [CASE...]
"""
import functools
import os
import pwd
import signal
import socket
import sys

import svtest
from svtest import check, poll

MEALY = os.path.abspath(sys.argv[1])
ONLY = sys.argv[2:]
TOP = svtest.top("mealy-regress.")
Sv = functools.partial(svtest.Sv, MEALY, TOP)


def can_cgroup():
    return os.geteuid() == 0 and os.path.exists("/sys/fs/cgroup")


# ---- F10: a cgroup emptied through cgroup.kill kills what starts in it ----

def case_killed_cgroup():
    print("# case: a start after a stop that ended in SIGKILL")
    sv = Sv("killed", {"ign": """
command: [sh, -c, "trap '' TERM; while :; do sleep 0.2; done"]
stop_grace: 300ms
"""})
    check("it runs", poll(lambda: sv.field("ign", "state") == "running"))
    sv.ctl("stop", "ign")
    check("stopped (by SIGKILL after the grace)",
          poll(lambda: sv.field("ign", "state") == "stopped"))
    sv.ctl("start", "ign")
    check("started again",
          poll(lambda: sv.field("ign", "state") == "running"))
    pid = sv.field("ign", "pid")
    # a child killed at birth is seen within a few loop turns: wait for
    # the program to have run long enough that it would have been
    ok = poll(lambda: (sv.field("ign", "uptime_ms") or 0) >= 1500)
    st = sv.status("ign")
    check("the new process lives on, not killed at birth (restarts 0, "
          "same pid)", ok and st and st["restarts"] == 0 and st["pid"] == pid
          and st["state"] == "running")
    check("supervise exits 0", sv.stop() == 0)


# ---- a supervisor killed during its cgroup freeze leaves it frozen ----

def cgroup_dir(pid):
    """The cgroup v2 directory pid is in, or None."""
    mnt = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split(" ")[0] == "cgroup2" and left.split(" ")[3] == "/":
                mnt = left.split(" ")[4]
                break
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            rel = [l[3:].strip() for l in f if l.startswith("0::")]
    except OSError:
        return None
    return mnt + rel[0] if mnt and rel else None


def cg_read(d, name):
    try:
        with open(os.path.join(d, name)) as f:
            return f.read()
    except OSError:
        return ""


def beat(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return -1


def case_left_frozen():
    print("# case: a program's cgroup left frozen by a killed supervisor")
    if not can_cgroup():
        print("skip: needs root and cgroup v2")
        return
    name = "left-frozen"
    state = os.path.join(TOP, name, "state")
    # run: adopted at the next start; held: stopped by hand, its TERM
    # ignored, so it is still stopping (kept down) when the supervisor dies
    progs = {"run": """
command: [sh, -c, "i=0; while :; do i=$((i+1)); echo $i > beat-run; sleep 0.05; done"]
""", "held": """
command: [sh, -c, "trap '' TERM; i=0; while :; do i=$((i+1)); echo $i > beat-held; sleep 0.05; done"]
stop_grace: 1h
"""}
    sv = Sv(name, progs, extra="state_dir: %s\n" % state)
    check("both run", poll(lambda: sv.field("run", "state") == "running" and
                           sv.field("held", "state") == "running"))
    if "cgroup v2" not in sv.logtext():
        print("skip: this supervisor does not track with cgroups")
        sv.stop(signal.SIGKILL)
        return
    pids = {p: sv.field(p, "pid") for p in progs}
    sv.ctl("stop", "held")
    check("held is stopping", poll(lambda: sv.field("held", "state")
                                   in ("stopping", "stopped")))
    sv.proc.kill()
    sv.proc.wait()
    dirs = {p: cgroup_dir(pids[p]) for p in progs}
    check("each program has a cgroup of its own",
          all(dirs.values()) and dirs["run"] != dirs["held"], str(dirs))
    # what the killed supervisor left: frozen, as in its stop's freeze
    for d in dirs.values():
        with open(os.path.join(d, "cgroup.freeze"), "w") as f:
            f.write("1")
    check("both cgroups frozen by hand",
          poll(lambda: all("frozen 1" in cg_read(d, "cgroup.events")
                           for d in dirs.values())))
    files = {p: os.path.join(sv.dir, "beat-" + p) for p in progs}
    before = {p: beat(files[p]) for p in progs}
    sv = Sv(name, progs, extra="state_dir: %s\n" % state)
    check("run is adopted, same pid",
          poll(lambda: sv.field("run", "state") == "running") and
          sv.field("run", "pid") == pids["run"])
    for p in progs:
        check("%s's cgroup is thawed" % p,
              poll(lambda: cg_read(dirs[p], "cgroup.freeze").strip() == "0"
                   and "frozen 0" in cg_read(dirs[p], "cgroup.events")))
        check("%s's processes run again (its beat goes on)" % p,
              poll(lambda: beat(files[p]) > before[p] + 2))
        check("the log says %s's cgroup was thawed" % p,
              "program-%s was left frozen" % p in sv.logtext())
    # held stays down, and the stop the killed run did not finish is done
    # again: adopted, stopping (its TERM ignored: until its grace ends)
    check("held is adopted to finish its stop",
          poll(lambda: sv.field("held", "state") == "stopping") and
          sv.field("held", "pid") == pids["held"] and
          "kept down: stopping what the previous run left" in sv.logtext())
    sv.ctl("signal", "KILL", "held")
    check("held is stopped, its cgroup empty",
          poll(lambda: sv.field("held", "state") == "stopped" and
               "populated 0" in cg_read(dirs["held"], "cgroup.events")))
    check("supervise exits 0", sv.stop() == 0)


def case_kept_down_leftover():
    print("# case (pgroup): killed while it stopped a program: the next run "
          "finishes the stop")
    name = "kept-down-pgroup"
    state = os.path.join(TOP, name, "state")
    progs = {"held": """
command: [sh, -c, "trap '' TERM; while :; do sleep 0.05; done"]
stop_grace: 1h
"""}
    extra = "state_dir: %s\ntracking: pgroup\n" % state
    sv = Sv(name, progs, extra=extra)
    check("it runs", poll(lambda: sv.field("held", "state") == "running"))
    pid = sv.field("held", "pid")
    sv.ctl("stop", "held")
    check("it is stopping", poll(lambda: sv.field("held", "state")
                                 == "stopping"))
    sv.proc.kill()
    sv.proc.wait()
    check("its process outlives the supervisor", svtest.alive(pid))
    sv = Sv(name, progs, extra=extra)
    check("the next run adopts it to finish its stop",
          poll(lambda: sv.field("held", "state") == "stopping") and
          sv.field("held", "pid") == pid and
          "kept down: stopping what the previous run left" in sv.logtext())
    sv.ctl("signal", "KILL", "held")
    check("stopped, its process gone",
          poll(lambda: sv.field("held", "state") == "stopped" and
               not svtest.alive(pid)))
    check("supervise exits 0", sv.stop() == 0)


# ---- a process that exec's from its TERM trap has the signal once ----

CLEANUP = """import signal, time
signal.signal(signal.SIGTERM,
              lambda *a: open("got", "a").write("TERM\\n"))
time.sleep(1.5)
open("got", "a").write("done\\n")
"""


def case_exec_from_trap():
    modes = ["pgroup"] + (["cgroup"] if can_cgroup() else [])
    for mode in modes:
        print("# case (%s): the stop signal's answer is an exec" % mode)
        name = "exec-trap-" + mode
        os.makedirs(os.path.join(TOP, name), exist_ok=True)
        with open(os.path.join(TOP, name, "cleanup.py"), "w") as f:
            f.write(CLEANUP)
        # a member in a session of its own (outside the group: pgroup
        # tracking signals it as an orphan), long there at the stop; its
        # TERM trap execs its cleanup, which keeps the grace after the main
        # process is gone, and must not have the signal a second time
        with open(os.path.join(TOP, name, "member.sh"), "w") as f:
            f.write("trap 'exec %s cleanup.py' TERM\n: > armed\n"
                    "while :; do sleep 0.1; done\n" % PY)
        sv = Sv(name, {"x": """
command: [sh, -c, "setsid sh member.sh & wait"]
stop_grace: 30s
"""}, extra="tracking: %s\n" % mode)
        armed = os.path.join(sv.dir, "armed")
        check("it runs, its trap set",
              poll(lambda: sv.field("x", "state") == "running" and
                   os.path.exists(armed)))
        # the member is old at the stop, not one that may be between
        # fork and exec (started within 50 ms of it)
        check("it has run a while",
              poll(lambda: (sv.field("x", "uptime_ms") or 0) >= 500))
        check("its tracking is %s" % mode,
              ("process tracking: cgroup v2" in sv.logtext()) ==
              (mode == "cgroup"))
        sv.ctl("stop", "x")
        check("stopped", poll(lambda: sv.field("x", "state") == "stopped"))
        got = os.path.join(sv.dir, "got")
        text = open(got).read() if os.path.exists(got) else ""
        check("its cleanup ran to the end, the signal not sent again",
              text == "done\n", repr(text))
        check("supervise exits 0", sv.stop() == 0)


# ---- F6: a reload that changes user: keeps the socket's old owner --------

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
SENDER = ("import os,socket,time;s=socket.socket(socket.AF_UNIX,"
          "socket.SOCK_DGRAM);s.sendto(('READY=1'+chr(10)+'STATUS=uid %d'"
          " % os.getuid()).encode(),os.environ['NOTIFY_SOCKET']);"
          "time.sleep(1000)")


def case_reload_user():
    print("# case: a reload changes user: of an sd_notify program")
    if os.geteuid() != 0:
        print("skip: needs root")
        return
    nobody = pwd.getpwnam("nobody")
    other = pwd.getpwnam("daemon")
    body = """
user: %s
ready: sd_notify
command: [%s, -c, "%s"]
"""
    sv = Sv("reload-user", {"svc": body % ("nobody", PY, SENDER)})
    check("ready as nobody",
          poll(lambda: sv.field("svc", "status") == "uid %d" % nobody.pw_uid))
    sv.write({"svc": body % ("daemon", PY, SENDER)})
    sv.proc.send_signal(signal.SIGHUP)
    check("ready again as daemon after the reload",
          poll(lambda: sv.field("svc", "status") == "uid %d" % other.pw_uid))
    sock = poll(lambda: sv.notify_socket("svc"))
    st = os.stat(sock) if sock else None
    check("its socket now belongs to daemon",
          st is not None and st.st_uid == other.pw_uid)
    check("supervise exits 0", sv.stop() == 0)


# ---- F1: a service manager that does not read stalls the supervisor ----

def case_manager_full():
    print("# case: the service manager's queue is full")
    path = os.path.join(TOP, "manager.sock")
    lis = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    lis.bind(path)  # never read: its queue fills after a few datagrams
    # WATCHDOG=1 every millisecond fills the queue at once
    sv = Sv("manager-full", {"a": 'command: [sleep, "1000"]'},
            env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000"})
    # (a stalled supervisor answers no ctl: bounded, not 300 x 5 s)
    check("it runs", poll(lambda: sv.field("a", "state") == "running",
                          tries=30))
    answered = all(sv.ctl("status", timeout="20s").returncode == 0
                   for _ in range(5))
    check("ctl status is answered while the manager does not read", answered)
    check("SIGTERM ends the run (exit 0)", sv.stop() == 0)
    # now a manager that reads: READY=1 arrives once its queue has room
    lis.settimeout(0.1)
    got = []
    sv = Sv("manager-late", {"a": 'command: [sleep, "1000"]'},
            env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    check("it runs", poll(lambda: sv.field("a", "state") == "running"))

    def ready_seen():
        try:
            while True:
                got.append(lis.recv(4096))
        except socket.timeout:
            pass
        return any(b"READY=1" in m for m in got)
    check("READY=1 reaches the manager once it reads", poll(ready_seen))
    check("SIGTERM ends the run (exit 0)", sv.stop() == 0)
    lis.close()


# ---- F13: sd_notify_barrier logged as an FDSTORE refusal ----------------

BARRIER = ("import os,socket,array,select,time;p=os.environ['NOTIFY_SOCKET'];"
           "s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM);"
           "s.sendto(b'READY=1',p);r,w=os.pipe();"
           "s.sendmsg([b'BARRIER=1'],[(socket.SOL_SOCKET,socket.SCM_RIGHTS,"
           "array.array('i',[w]))],0,p);os.close(w);"
           "ok=select.select([r],[],[],60)[0];"
           "s.sendto(b'STATUS=barrier '+(b'released' if ok else b'stuck'),p);"
           "time.sleep(1000)")


def case_barrier():
    print("# case: sd_notify_barrier (BARRIER=1 with a descriptor)")
    sv = Sv("barrier", {"b": """
ready: sd_notify
command: [%s, -c, "%s"]
""" % (PY, BARRIER)})
    check("the barrier is released (its descriptor closed)",
          poll(lambda: sv.field("b", "status") == "barrier released"))
    check("and not logged as a refused FDSTORE",
          "FDSTORE" not in sv.logtext())
    check("supervise exits 0", sv.stop() == 0)


# ---- F5: an adopted main process's unknown exit shown as "exit -1" -------

def case_unknown_exit():
    print("# case: the last exit of a MAINPID process is unknown")
    sv = Sv("unknown-exit", {"m": """
ready: sd_notify
restart: on-failure
shell: true
command: |
  sleep 1000 & echo $! > main
  exec %s -c "import os,socket;socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).sendto(('MAINPID=%%s'%%open('main').read().strip()+chr(10)+'READY=1').encode(),os.environ['NOTIFY_SOCKET'])"
""" % PY})
    check("watching its MAINPID",
          poll(lambda: (sv.field("m", "main_pid") or 0) > 0 and
               sv.field("m", "pid") == sv.field("m", "main_pid")))
    os.kill(sv.field("m", "main_pid"), signal.SIGKILL)
    check("restarted", poll(lambda: (sv.field("m", "restarts") or 0) >= 1))
    table = sv.ctl("status", "m").stdout
    check("the table says the exit is unknown, not 'exit -1' (%r)"
          % table.strip().split("\n")[-1],
          "exit -1" not in table and "unknown" in table)
    check("supervise exits 0", sv.stop() == 0)


# ---- F3: somebody else's stable sd_notify directory blocks every start ---

def fnv1a(text):
    h = 1469598103934665603
    for c in text.encode():
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def case_foreign_notify_dir():
    print("# case: the stable sd_notify directory is somebody else's")
    if os.geteuid() != 0:
        print("skip: needs root")
        return
    rt = os.path.join(TOP, "rt")
    os.makedirs(rt)
    os.chmod(rt, 0o1777)  # shared, as /tmp
    state = os.path.join(TOP, "foreign-state")
    squat = os.path.join(rt, "mealy-notify-%016x" % fnv1a(state))
    os.mkdir(squat, 0o777)
    nobody = pwd.getpwnam("nobody")
    os.chown(squat, nobody.pw_uid, nobody.pw_gid)
    sv = Sv("foreign-dir", {"svc": """
ready: sd_notify
command: [%s, -c, "%s"]
""" % (PY, SENDER)}, env={"RUNTIME_DIRECTORY": rt},
        extra="state_dir: %s\n" % state)
    check("the program gets ready all the same",
          poll(lambda: sv.field("svc", "ready"), tries=150))
    sock = sv.notify_socket("svc")
    check("its socket is not in the squatted directory",
          sock is not None and not sock.startswith(squat + "/"))
    check("the squatted directory is left alone",
          os.stat(squat).st_uid == nobody.pw_uid)
    check("supervise exits 0", sv.stop() == 0)


CASES = {"killed_cgroup": case_killed_cgroup,
         "left_frozen": case_left_frozen,
         "kept_down_leftover": case_kept_down_leftover,
         "exec_from_trap": case_exec_from_trap,
         "foreign_notify_dir": case_foreign_notify_dir,
         "barrier": case_barrier,
         "unknown_exit": case_unknown_exit,
         "manager_full": case_manager_full,
         "reload_user": case_reload_user}

try:
    for name, fn in CASES.items():
        if not ONLY or name in ONLY:
            fn()
finally:
    code = svtest.finish(TOP)
sys.exit(code)
