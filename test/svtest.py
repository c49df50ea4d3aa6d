"""svtest.py - what the Python tests of `mealy supervise` share.

Checks counted and printed one a line ("ok: WHAT" / "FAIL: WHAT: DETAIL"),
bounded polls (never a measured duration), a directory of temporary runs
kept when something failed, the processes of a run found through
/proc by the mark in their environment, a raw msgpack-RPC connection to a
control socket (Conn), and Sv: `mealy supervise` run on a configuration
of its own in a directory of its own, asked through `mealy ctl`, stopped.

Used by test_sdnotify.py, test_supervise_regress.py,
test_metrics_scrape.py, test_supervise_model.py and test_rpc_spec.py
(each imports it from its own directory: meson runs them by path).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

checks = 0
failed = 0


def check(what, ok, detail=""):
    """Counts and prints one check; returns ok."""
    global checks, failed
    checks += 1
    print(("ok: " if ok else "FAIL: ") + what +
          (": " + str(detail) if detail != "" and not ok else ""), flush=True)
    if not ok:
        failed += 1
    return ok


def poll(fn, tries=300, every=0.1):
    """fn() until it returns something true, at most `tries` times with
    `every` seconds between; its last value."""
    v = None
    for _ in range(tries):
        v = fn()
        if v:
            return v
        time.sleep(every)
    return v


def top(prefix, mode=0o755):
    """A directory for the runs of one test."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, mode)
    return d


def finish(topdir):
    """The end of a test: its runs' directory kept if a check failed
    (said), removed if not; prints the counts; the exit status."""
    if failed:
        print("logs kept in", topdir)
    else:
        shutil.rmtree(topdir, ignore_errors=True)
    print("%d passed, %d failed" % (checks - failed, failed))
    return 1 if failed else 0


# ---- processes ----------------------------------------------------------

def proc_stat(pid):
    """(state, process group) of a process, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[2])


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


def environ_of(pid):
    """A process's environment, a list of b"KEY=value", or None."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return f.read().split(b"\0")
    except (OSError, TypeError):
        return None


def env_value(env, key):
    """The value of key (a str) in an environ_of() list, or None."""
    want = key.encode() + b"="
    for e in env or ():
        if e.startswith(want):
            return e[len(want):].decode()
    return None


MARK = "MEALY_TEST_MARK"


def marked(mark):
    """{pid: environment} of the live processes of the runs in directory
    `mark` (an Sv's, or a top() holding several): their MEALY_TEST_MARK
    is mark or below it."""
    exact = ("%s=%s" % (MARK, mark)).encode()
    below = exact + b"/"
    out = {}
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) == os.getpid():
            continue
        env = environ_of(int(e))
        if env is None or not any(kv == exact or kv.startswith(below)
                                  for kv in env):
            continue
        if alive(int(e)):
            out[int(e)] = env
    return out


def kill_marked(mark):
    for pid in marked(mark):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


# ---- the control socket, spoken directly -------------------------------------

class Conn:
    """A connection to a control socket (msgpack-RPC, python3-msgpack):
    messages sent and received as they are."""

    def __init__(self, path, timeout=30):
        import msgpack
        self.msgpack = msgpack
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        try:
            self.s.connect(path)
        except OSError:
            self.s.close()
            raise
        self.u = msgpack.Unpacker(raw=False, strict_map_key=False)

    def send(self, obj):
        self.s.sendall(self.msgpack.packb(obj, use_bin_type=True))

    def raw(self, b):
        self.s.sendall(b)

    def recv(self):
        """The next message, or None at EOF."""
        while True:
            for m in self.u:
                return m
            try:
                b = self.s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                b = b""
            if not b:
                return None
            self.u.feed(b)

    def close(self):
        self.s.close()


# ---- a supervisor ----------------------------------------------------------

def config_text(sock, programs, extra=""):
    """A configuration: programs a dict name -> its keys (YAML lines, as
    the test writes them), extra more top-level keys; or programs the
    text after the `socket:` line, as is."""
    if isinstance(programs, str):
        return "socket: %s\n%s" % (sock, programs)
    out = ["socket: %s\nshutdown_grace: 20s\n%sprograms:\n" % (sock, extra)]
    for pname, body in programs.items():
        out.append("  %s:\n" % pname)
        for line in body.strip("\n").split("\n"):
            out.append("    %s\n" % line)
    return "".join(out)


class Sv:
    """`mealy supervise` on programs (see config_text) in directory
    TOP/NAME (made if need be): sv.yaml, ctl.sock and its log there, run there, its
    processes marked with the directory (marked()).  stdout: where its
    output goes (default: the log; if given, its stderr goes to the
    log)."""
    ctl_timeout = "5s"   # mealy ctl --timeout
    stop_wait = 60       # seconds from SIGTERM to SIGKILL in stop()

    def __init__(self, mealy, topdir, name, programs, env=None, extra="",
                 stdout=None):
        self.mealy = mealy
        self.dir = os.path.join(topdir, name)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(self.dir, "ctl.sock")
        self.log = os.path.join(self.dir, "log")
        self.cfg = os.path.join(self.dir, "sv.yaml")
        self.extra = extra
        self.write(programs)
        e = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            e.pop(k, None)
        e[MARK] = self.dir
        e.update(env or {})
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [mealy, "supervise", self.cfg], cwd=self.dir, env=e,
                stdin=subprocess.DEVNULL, stdout=stdout or log,
                stderr=log if stdout else subprocess.STDOUT)

    def write(self, programs, text=None):
        """(Re)writes its configuration, whole at once (for a reload):
        config_text(programs), or text as is."""
        new = self.cfg + ".new"
        with open(new, "w") as f:
            f.write(text if text is not None else
                    config_text(self.sock, programs, self.extra))
        os.replace(new, self.cfg)

    def ctl(self, *args, timeout=None):
        return subprocess.run([self.mealy, "ctl", "-s", self.sock,
                               "--timeout", timeout or self.ctl_timeout]
                              + list(args), capture_output=True, text=True,
                              timeout=300)

    def status(self, name):
        r = self.ctl("status", "--json", name)
        try:
            return json.loads(r.stdout)[0] if r.returncode == 0 else None
        except (ValueError, IndexError):
            return None

    def field(self, name, key):
        st = self.status(name)
        return st.get(key) if st else None

    def environ(self, name):
        """(pid, environment) of a program's process, read at once
        (polled); (0, []) if it has none."""
        def read():
            pid = self.field(name, "pid")
            env = environ_of(pid) if pid else None
            return env is not None and (pid, env)
        return poll(read) or (0, [])

    def notify_socket(self, name):
        """The NOTIFY_SOCKET of a program's process, or None."""
        return env_value(environ_of(self.field(name, "pid")),
                         "NOTIFY_SOCKET")

    def answers(self, tries=300):
        """Whether it answers on its socket (polled, while it runs)."""
        return poll(lambda: self.proc.poll() is not None or
                    self.ctl("status").returncode == 0, tries) and \
            self.proc.poll() is None

    def logtext(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM):
        """Sends sig unless it has ended; its exit status (after a
        SIGKILL if it is not down within stop_wait seconds: not 0)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(self.stop_wait)
        except subprocess.TimeoutExpired:
            print("note: %s: no exit within %d s after signal %d"
                  % (self.dir, self.stop_wait, sig))
            self.proc.kill()
            self.proc.wait()
            rc = None
        if rc != 0:
            print("note: %s: supervise exited %s; its log:\n%s"
                  % (self.dir, rc, self.logtext()[-3000:]))
        return rc
