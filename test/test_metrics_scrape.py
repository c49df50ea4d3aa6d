#!/usr/bin/python3
"""test_metrics_scrape.py - metrics read by a real Prometheus parser.

usage: test_metrics_scrape.py PATH/TO/mealy PATH/TO/metrics_embed
                              PATH/TO/metrics_rand

Every text is parsed by prometheus_client's text_string_to_metric_families
(Debian's python3-prometheus-client), which refuses what the exposition
format 0.0.4 does not allow, and each value is checked against what the
test did:

  roundtrip  random families from a metrics source (label values with
             quotes, backslashes, newlines, UTF-8; integers past 2^53,
             fractions, NaN, infinities), 200 seeds: the parser reads back
             every series, label and value exactly, and nothing else
  embed      a host with K durable sleepers and a ping-pong pair:
             instances per type and lifecycle, steps, events, journal
             records, batches, syncs, compactions equal to what
             mly_runtime_stats and mly_journal_stats_get say; histogram
             counts and sums agree with the counters
  supervise  programs that restart 3 times, exit 3, die by SIGKILL, write
             known bytes, stay up: state, restarts, last exit, readiness,
             uptime, pid, logged bytes, connections, through `mealy ctl
             metrics` and HTTP on a unix socket
  dropped    our stdout not read: a program's lines passed on plus lines
             dropped equal the lines it wrote, some dropped
  http       (with state_dir: every journal record counted in a batch)
             300 random requests in random pieces against a model of the
             answer (MEALY_HTTP_SEED replays one run);
             GET/HEAD /metrics 200, another path 404, POST 405, garbage
             400 and closed, an oversized request 431 and closed, half a
             request closed by the timeout, past max clients 503; the
             server still answers after each
  ipv6       [::1]:0 serves too (said, not run, on a host without ::1)
  config     a non-loopback address, or nonsense, fails the load with
             FILE:LINE:COL
  busy       a port already taken: exit 1 saying so, nothing started

Nothing measures a duration: waits are bounded polls.
"""
import functools
import os
import re
import signal
import socket
import subprocess
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

import svtest
from svtest import check

MEALY, EMBED, RAND = (os.path.abspath(a) for a in sys.argv[1:4])
# polls of 60 s (sleeps of 50 ms)
poll = functools.partial(svtest.poll, tries=1200, every=0.05)


def parse(text):
    """{(name, frozenset(labels)): value}, and the families' types."""
    samples, types = {}, {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, "duplicate series %s" % (key,)
            samples[key] = s.value
    return samples, types


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


###########################################################################
def case_roundtrip(tmp):
    import math
    text_path, exp_path = os.path.join(tmp, "t.txt"), os.path.join(tmp, "e.txt")
    bad = []
    for seed in range(1, 201):
        r = subprocess.run([RAND, str(seed), text_path, exp_path],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            bad.append((seed, r.stderr))
            continue
        try:
            got, _ = parse(open(text_path, encoding="utf-8").read())
        except Exception as e:  # the parser refused the text
            bad.append((seed, "parse: %r" % e))
            continue
        got = dict((k, v) for k, v in got.items() if k[0].startswith("rnd_"))
        want = {}
        for line in open(exp_path).read().splitlines():
            f = line.split(" ")
            labels = {}
            for i in range(2, len(f), 2):
                un = lambda h: "" if h == "-" else bytes.fromhex(h).decode()
                labels[un(f[i])] = un(f[i + 1])
            want[(f[0], frozenset(labels.items()))] = float(f[1])
        if set(got) != set(want):
            bad.append((seed, "series differ: %s" % (set(got) ^ set(want))))
            continue
        for key, v in want.items():
            g = got[key]
            if not (g == v or (math.isnan(g) and math.isnan(v))):
                bad.append((seed, "%s: got %r, want %r" % (key, g, v)))
                break
    check("roundtrip: 200 random sources read back exactly", not bad, bad[:3])


###########################################################################
def case_embed(tmp):
    k, n = 137, 25
    text_path = os.path.join(tmp, "embed.txt")
    out = subprocess.run([EMBED, os.path.join(tmp, "state"), str(k), str(n),
                          text_path], capture_output=True, text=True,
                         timeout=300)
    check("embed: the host ran", out.returncode == 0, out.stderr)
    if out.returncode != 0:
        return
    want = dict((a, int(b)) for a, b in
                (line.split() for line in out.stdout.splitlines()))
    samples, types = parse(open(text_path).read())
    check("embed: K sleepers ready",
          val(samples, "mealy_instances", type="sleeper", lifecycle="ready") == k)
    check("embed: none in init",
          val(samples, "mealy_instances", type="sleeper", lifecycle="init") == 0)
    check("embed: the pair ended (0 live)",
          sum(val(samples, "mealy_instances", type=t, lifecycle=lc) for t in
              ("ping", "pong") for lc in
              ("init", "ready", "active", "terminated", "failed")) == 0)
    check("embed: timers pending = K", val(samples, "mealy_timers_pending") == k)
    pairs = [("mealy_instances_spawned_total", "spawned"),
             ("mealy_steps_total", "steps"),
             ("mealy_events_delivered_total", "delivered"),
             ("mealy_events_dropped_total", "dropped"),
             ("mealy_timers_fired_total", "timers_fired"),
             ("mealy_journal_records_total", "records"),
             ("mealy_journal_batches_total", "batches"),
             ("mealy_journal_syncs_total", "syncs"),
             ("mealy_journal_compactions_total", "compactions"),
             ("mealy_journal_segments_created_total", "segments"),
             ("mealy_journal_size_bytes", "total_bytes"),
             ("mealy_runtime_memory_bytes", "memory")]
    for metric, stat in pairs:
        check("embed: %s = %s (%s)" % (metric, stat, want[stat]),
              val(samples, metric) == want[stat], val(samples, metric))
    check("embed: events delivered = 2N+1 (the pair's)",
          want["delivered"] == 2 * n + 1, want["delivered"])
    check("embed: one compaction", want["compactions"] == 1)
    check("embed: counters typed counter",
          types.get("mealy_steps") == "counter" and
          types.get("mealy_journal_syncs") == "counter", types.get("mealy_steps"))
    check("embed: histograms typed histogram",
          types.get("mealy_journal_batch_bytes") == "histogram")
    # histograms against the counters: every record went in some batch
    check("embed: batch_records sum = records",
          val(samples, "mealy_journal_batch_records_sum") == want["records"])
    bc = val(samples, "mealy_journal_batch_records_count")
    check("embed: batch counts agree", 0 < bc <= want["batches"] and
          val(samples, "mealy_journal_batch_bytes_count") == bc, bc)
    check("embed: +Inf bucket = count",
          val(samples, "mealy_journal_batch_bytes_bucket", le="+Inf") == bc)
    check("embed: a sync per synced batch",
          0 < val(samples, "mealy_journal_sync_seconds_count") <= want["syncs"])
    check("embed: written bytes >= batch bytes",
          val(samples, "mealy_journal_written_bytes_total") >=
          val(samples, "mealy_journal_batch_bytes_sum") > 0)


###########################################################################
class Supervisor(svtest.Sv):
    """A supervisor on cfg_text (after its socket line) in tmp/NAME;
    its metrics read through `mealy ctl metrics`."""
    ctl_timeout = "10s"
    stop_wait = 120

    def __init__(self, tmp, cfg_text, name="sv", stdout=None):
        super().__init__(MEALY, tmp, name, cfg_text, stdout=stdout)

    def metrics(self):
        r = self.ctl("metrics")
        return parse(r.stdout)[0] if r.returncode == 0 else None


    def metrics_port(self, host):
        """The port it says it serves metrics on at host (polled)."""
        said = r"metrics on http://%s:(\d+)/metrics" % re.escape(host)
        return poll(lambda: (mm := re.search(said, self.logtext())) and
                    int(mm.group(1)))


def recv_all(s):
    """What comes on s until the other side closes; s closed."""
    data = b""
    s.settimeout(60)
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def http_unix(path, request):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(path)
    s.sendall(request)
    return recv_all(s)


def split_response(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/1.1 ") else 0
    headers = dict((l.split(":", 1)[0].lower(), l.split(":", 1)[1].strip())
                   for l in lines[1:] if ":" in l)
    return status, headers, body


def case_supervise(tmp):
    msock = os.path.join(tmp, "metrics.sock")
    talk_lines = 7
    line = "0123456789abcdef"  # 16 bytes, 17 with its newline
    cfg = """metrics: %s
programs:
  up:
    command: [/bin/sleep, "1000"]
  flappy:
    command: "exit 3"
    shell: true
    restart: always
    backoff: {initial: 10ms, max: 10ms}
    intensity: {max_restarts: 3, within: 1h}
  killed:
    command: "kill -KILL $$"
    shell: true
    restart: never
  rtsig:
    command: "kill -40 $$"
    shell: true
    restart: never
  talker:
    command: "for i in $(seq %d); do echo %s; done; echo err >&2; exec sleep 1000"
    shell: true
""" % (msock, talk_lines, line)
    sv = Supervisor(tmp, cfg)
    try:
        ok = poll(lambda: (m := sv.metrics()) and
                  val(m, "mealy_supervisor_program_state", program="flappy", state="fatal") == 1 and
                  val(m, "mealy_supervisor_program_state", program="killed", state="stopped") == 1 and
                  val(m, "mealy_supervisor_program_state", program="rtsig", state="stopped") == 1 and
                  val(m, "mealy_supervisor_program_logged_bytes_total", program="talker", stream="stdout") == talk_lines * 17 and
                  val(m, "mealy_supervisor_program_logged_bytes_total", program="talker", stream="stderr") == 4)
        check("supervise: settled (flappy fatal, killed stopped, talker wrote)",
              ok, sv.logtext()[-2000:])
        m = sv.metrics()
        if not m:
            return
        check("supervise: flappy restarted 3 times",
              val(m, "mealy_supervisor_program_restarts_total", program="flappy") == 3)
        check("supervise: flappy last exit code 3",
              val(m, "mealy_supervisor_program_last_exit_code", program="flappy") == 3)
        check("supervise: killed by signal 9",
              val(m, "mealy_supervisor_program_last_exit_signal", program="killed", signal="KILL") == 9)
        rtname = subprocess.run(["bash", "-c", "kill -l 40"], capture_output=True,
                                text=True).stdout.strip()  # RTMIN+6 with glibc
        check("supervise: a real-time signal (40) named as kill -l names it (%s)" % rtname,
              val(m, "mealy_supervisor_program_last_exit_signal", program="rtsig", signal=rtname) == 40)
        check("supervise: killed has no exit code",
              val(m, "mealy_supervisor_program_last_exit_code", program="killed") is None)
        check("supervise: up is running and ready",
              val(m, "mealy_supervisor_program_state", program="up", state="running") == 1 and
              val(m, "mealy_supervisor_program_ready", program="up") == 1)
        check("supervise: flappy fatal, not ready",
              val(m, "mealy_supervisor_program_fatal", program="flappy") == 1 and
              val(m, "mealy_supervisor_program_ready", program="flappy") == 0)
        for prog in ("up", "flappy", "killed", "rtsig", "talker"):
            states = [v for (n, l), v in m.items()
                      if n == "mealy_supervisor_program_state" and ("program", prog) in l]
            check("supervise: %s is in exactly one state" % prog,
                  sum(states) == 1 and len(states) >= 10, states)
        st = sv.ctl("status", "--json", "up").stdout
        pid = int(re.search(r'"pid":\s*(\d+)', st).group(1))
        check("supervise: pid as status says", val(m, "mealy_supervisor_program_pid", program="up") == pid)
        check("supervise: up has an uptime", val(m, "mealy_supervisor_program_uptime_seconds", program="up") > 0)
        check("supervise: flappy has no uptime", val(m, "mealy_supervisor_program_uptime_seconds", program="flappy") == 0)
        check("supervise: no line dropped",
              val(m, "mealy_supervisor_program_dropped_lines_total", program="talker", stream="stdout") == 0)
        check("supervise: the ctl connection is counted",
              val(m, "mealy_supervisor_control_connections") == 1)
        check("supervise: coprocess instances = 5 programs",
              sum(val(m, "mealy_instances", type="coprocess", lifecycle=lc)
                  for lc in ("init", "ready", "active")) == 5)
        check("supervise: CPU and RSS", val(m, "mealy_supervisor_cpu_seconds_total") > 0 and
              val(m, "mealy_supervisor_resident_memory_bytes") > 0)
        check("supervise: spawns = 1 + 4 + 1 + 1 + 1",
              val(m, "mealy_supervisor_spawns_total") == 8,
              val(m, "mealy_supervisor_spawns_total"))
        # the same figures over HTTP on the unix socket
        status, headers, body = split_response(
            http_unix(msock, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
        check("supervise: HTTP 200", status == 200, status)
        check("supervise: content type 0.0.4",
              headers.get("content-type") == "text/plain; version=0.0.4; charset=utf-8")
        check("supervise: content length", int(headers.get("content-length", -1)) == len(body))
        hm, _ = parse(body.decode())
        check("supervise: HTTP: flappy restarts 3",
              val(hm, "mealy_supervisor_program_restarts_total", program="flappy") == 3)
        check("supervise: HTTP: this scrape's connection counted",
              val(hm, "mealy_supervisor_metrics_connections") == 1)
        check("supervise: metrics socket mode 0600",
              (os.stat(msock).st_mode & 0o777) == 0o600, oct(os.stat(msock).st_mode))
    finally:
        rc = sv.stop()
    check("supervise: exits 0", rc == 0, rc)
    check("supervise: the metrics socket is removed", not os.path.exists(msock))


def case_dropped(tmp):
    """Our stdout not read: every line of a program is either passed on
    (its bytes counted) or dropped (counted), never both, never lost."""
    n, line = 40000, "0123456789abcdef"
    rfd, wfd = os.pipe()
    sv = Supervisor(tmp, """programs:
  loud:
    command: "i=0; while [ $i -lt %d ]; do echo %s; i=$((i+1)); done; exec sleep 1000"
    shell: true
""" % (n, line), name="drop", stdout=wfd)
    os.close(wfd)
    try:
        def settled():
            m = sv.metrics()
            if not m:
                return None
            b = val(m, "mealy_supervisor_program_logged_bytes_total", program="loud", stream="stdout")
            d = val(m, "mealy_supervisor_program_dropped_lines_total", program="loud", stream="stdout")
            return (b, d) if b is not None and b / 17 + d == n else None
        got = poll(settled, tries=2400)
        check("dropped: passed on + dropped = lines written", bool(got), got)
        if got:
            check("dropped: some were dropped (nobody read)", got[1] > 0, got)
            check("dropped: whole lines only", got[0] % 17 == 0, got)
    finally:
        os.set_blocking(rfd, False)
        sv.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + 120
        while sv.proc.poll() is None and time.monotonic() < end:
            try:
                if not os.read(rfd, 1 << 16):  # let it write its last lines
                    time.sleep(0.02)
            except BlockingIOError:
                time.sleep(0.02)
        rc = sv.stop()
        os.close(rfd)
    check("dropped: exits 0", rc == 0, rc)


###########################################################################
def tcp_connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    return s


def http_model(ask, sv, rounds=300):
    """Random requests, sent in random pieces, against a model of the
    answer: garbage 400; past 8 KiB 431; /metrics (with or without a
    query) 200 for GET and HEAD, 405 for other methods; any other path
    404.  Afterwards no connection is left open."""
    import random
    seed = int(os.environ.get("MEALY_HTTP_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    bad = []
    for i in range(rounds):
        kind = rng.choice(["GET", "HEAD", "POST", "PUT", "DELETE", "GET",
                           "garbage"])
        path = rng.choice(["/metrics", "/metrics?name[]=x&y", "/", "/metricsx",
                           "/x/metrics", "/METRICS"])
        headers = b"".join(b"X-H%d: %s\r\n" % (k, b"v" * rng.choice([1, 50, 3000]))
                           for k in range(rng.randrange(5)))
        body = b"b" * rng.choice([0, 0, 10, 5000]) if kind in ("POST", "PUT") else b""
        if body:
            headers += b"Content-Length: %d\r\n" % len(body)
        if kind == "garbage":
            # control bytes, but not CR or LF: empty lines before a
            # request line are allowed (RFC 9112 2.2), so "\n\r\n\r\n"
            # is no request yet, not garbage
            ctl = [b for b in range(1, 32) if b not in (10, 13)]
            req = bytes(rng.choice(ctl) for _ in range(rng.randrange(1, 40))) + b"\r\n\r\n"
            want = 400
        else:
            req = (b"%s %s HTTP/1.1\r\nHost: x\r\n" % (kind.encode(), path.encode())
                   + headers + b"\r\n" + body)
            if len(req) > 8192:
                want = 431
            elif path.split("?")[0] != "/metrics":
                want = 404
            else:
                want = 200 if kind in ("GET", "HEAD") else 405
        s = tcp_connect(sv.port)
        try:
            at = 0
            while at < len(req):  # random pieces
                step = rng.randrange(1, len(req) - at + 1)
                s.sendall(req[at:at + step])
                at += step
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before the rest was sent
        st, h, got = split_response(recv_all(s))
        if st != want:
            bad.append((i, kind, path, len(req), st, want))
    check("http-model: %d random requests answered as the model says "
          "(MEALY_HTTP_SEED=%d)" % (rounds, seed), not bad, bad[:5])
    check("http-model: no connection left",
          poll(lambda: val(sv.metrics() or {}, "mealy_supervisor_metrics_connections") == 0))


def case_http(tmp):
    sv = Supervisor(tmp, """metrics: 127.0.0.1:0
state_dir: state
programs:
  up:
    command: [/bin/sleep, "1000"]
""", name="http")
    try:
        port = sv.metrics_port("127.0.0.1")
        check("http: listening on a loopback port", bool(port), sv.logtext())
        if not port:
            return
        sv.port = port

        def ask(req):
            s = tcp_connect(port)
            s.sendall(req)
            return split_response(recv_all(s))

        def alive():
            st, _, body = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            return st == 200 and b"mealy_supervisor_program_state" in body

        st, h, body = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        check("http: GET /metrics 200", st == 200, st)
        check("http: Connection: close", h.get("connection") == "close")
        parse(body.decode())

        def journal_quiet():
            m = parse(ask(b"GET /metrics HTTP/1.0\r\n\r\n")[2].decode())[0]
            r = val(m, "mealy_journal_records_total")
            return m if r and r == val(m, "mealy_journal_batch_records_sum") else None
        m = poll(journal_quiet)
        check("http: with state_dir the journal's figures: every record in a batch", bool(m))
        if m:
            check("http: journal syncs counted", val(m, "mealy_journal_syncs_total") > 0 and
                  0 < val(m, "mealy_journal_sync_seconds_count") <= val(m, "mealy_journal_syncs_total"))
        st, h, body = ask(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
        check("http: a query string is fine, HTTP/1.0 too", st == 200, st)
        st, h, body = ask(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        check("http: HEAD 200, no body", st == 200 and body == b"" and
              int(h.get("content-length", 0)) > 0, (st, body[:50]))
        st, h, body = ask(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        check("http: wrong path 404", st == 404, st)
        st, h, body = ask(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        check("http: / 404", st == 404, st)
        st, h, body = ask(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        check("http: POST 405 with Allow", st == 405 and h.get("allow") == "GET, HEAD", (st, h))
        st, h, body = ask(b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        check("http: DELETE 405", st == 405, st)
        st, h, body = ask(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
        check("http: garbage (a TLS hello) 400 and closed", st == 400, st)
        st, h, body = ask(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        check("http: oversized request 431 and closed", st == 431, st)
        check("http: still answers", alive())
        # half a request: closed by the server's timeout (no answer)
        s = tcp_connect(port)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        data = recv_all(s)
        check("http: half a request is closed, unanswered", data == b"", data[:80])
        check("http: logged why", poll(lambda: "no whole request" in sv.logtext()))
        # many clients: 16 held open (half requests), the next gets 503
        held = []
        for _ in range(16):
            c = tcp_connect(port)
            c.sendall(b"GET /metr")
            held.append(c)
        ok = poll(lambda: val(sv.metrics() or {}, "mealy_supervisor_metrics_connections") == 16)
        check("http: 16 connections held", ok)
        st, h, body = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        check("http: the 17th gets 503", st == 503, st)
        for c in held:
            c.close()
        check("http: connections released",
              poll(lambda: val(sv.metrics() or {}, "mealy_supervisor_metrics_connections") == 0))
        check("http: answers again after the crowd", alive())
        http_model(ask, sv)
        # pipelined second request: one answer, then closed
        s = tcp_connect(port)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /other HTTP/1.1\r\n\r\n")
        data = recv_all(s)
        check("http: one answer per connection", data.count(b"HTTP/1.1 ") == 1 and
              data.startswith(b"HTTP/1.1 200"), data[:40])
    finally:
        rc = sv.stop()
    check("http: exits 0", rc == 0, rc)


def case_ipv6(tmp):
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError as e:
        print("NOT RUN ipv6: this host has no ::1 (%s)" % e)
        return
    sv = Supervisor(tmp, """metrics: "[::1]:0"
programs:
  up:
    command: [/bin/sleep, "1000"]
""", name="v6")
    try:
        port = sv.metrics_port("[::1]")
        check("ipv6: listening on [::1]", bool(port), sv.logtext())
        if port:
            s = socket.create_connection(("::1", port), timeout=60)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            st, _, body = split_response(recv_all(s))
            m, _ = parse(body.decode())
            check("ipv6: GET /metrics 200, up running", st == 200 and
                  val(m, "mealy_supervisor_program_state", program="up", state="running") == 1)
    finally:
        rc = sv.stop()
    check("ipv6: exits 0", rc == 0, rc)


###########################################################################
def case_config(tmp):
    for value, words in (("0.0.0.0:9100", "not a loopback address"),
                         ("'[2001:db8::1]:9100'", "not a loopback address"),
                         ("localhost:9100", "not a numeric IP address"),
                         ("127.0.0.1:99999", "neither a unix socket path"),
                         ("nonsense", "neither a unix socket path")):
        path = os.path.join(tmp, "bad.yaml")
        with open(path, "w") as f:
            f.write("socket: %s/bad.sock\nmetrics: %s\nprograms:\n  a:\n"
                    "    command: [/bin/true]\n" % (tmp, value))
        r = subprocess.run([MEALY, "supervise", path], capture_output=True,
                           text=True, timeout=60)
        check("config: metrics: %s refused at %s:2:10" % (value, path),
              r.returncode != 0 and ("%s:2:10: metrics: " % path) in r.stderr
              and words in r.stderr, r.stderr)


def case_busy(tmp):
    """A port another server holds: the supervisor says so and exits 1,
    its control socket removed, nothing started."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    path = os.path.join(tmp, "busy.yaml")
    mark = os.path.join(tmp, "started")
    with open(path, "w") as f:
        f.write("socket: %s/busy.sock\nmetrics: 127.0.0.1:%d\nprograms:\n"
                "  a:\n    command: [/bin/touch, %s]\n" % (tmp, port, mark))
    r = subprocess.run([MEALY, "supervise", path], capture_output=True,
                       text=True, timeout=60)
    taken.close()
    check("busy: exits 1 saying why", r.returncode == 1 and
          "metrics: 127.0.0.1:%d: cannot listen: address already in use" % port
          in r.stdout + r.stderr, (r.returncode, r.stdout[-300:], r.stderr[-300:]))
    check("busy: control socket removed, nothing started",
          not os.path.exists(os.path.join(tmp, "busy.sock")) and not os.path.exists(mark))


def main():
    top = svtest.top("mealy-metrics-", 0o700)
    try:
        for name, fn in (("roundtrip", case_roundtrip), ("embed", case_embed), ("supervise", case_supervise),
                         ("dropped", case_dropped), ("http", case_http),
                         ("ipv6", case_ipv6), ("config", case_config),
                         ("busy", case_busy)):
            d = os.path.join(top, name)
            os.mkdir(d, 0o700)
            print("== " + name)
            fn(d)
    finally:
        code = svtest.finish(top)
    sys.exit(code)


main()
