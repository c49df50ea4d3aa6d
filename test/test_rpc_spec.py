#!/usr/bin/python3
"""test_rpc_spec.py - the control socket against the msgpack-RPC spec,
spoken by an independent implementation (Debian's python3-msgpack).

usage: test_rpc_spec.py PATH/TO/mealy supervise
       test_rpc_spec.py PATH/TO/mealy fsm ACTIONS.so MACHINES.yaml

Starts `mealy supervise` (one program) or `mealy fsm run` and checks, on
its socket (rpc.c, the one server of every host):
  - requests pipelined on one connection are answered in order, each
    with its msgid, whatever the msgids (0, 2^32-1, repeated);
  - a notification [2, method, params] is run but never answered, and a
    request with msgid 0 after it gets its own answer, only one;
  - a well-formed message that is not a valid request gets an error
    answer with its msgid and the connection stays usable; one without a
    usable msgid, bytes that are not msgpack, and a frame larger than
    64 KiB get [2, "error", [why]] and the connection is closed;
  - a request sent one byte at a time is answered;
  - a client that shuts down its side (EOF) after its requests gets
    every answer, late ones too, then the connection is closed;
  - thousands of requests written before reading any answer (the server
    stops reading, then serves what waited) are all answered, in order;
  - clients that leave without reading do not take the server down;
  - many clients at once, each pipelining, each get their own answers.
Prints one line per check; exits 1 if any failed.  The fsm host runs on
the store MLY_TEST_STORE names (as store_args in proc_helpers.sh: the
journal, or PostgreSQL through test/pg/with_cluster.sh: pg-rpc-spec-fsm).
"""
import hashlib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import msgpack

import svtest
from svtest import Conn, check


def wait_for(pred):
    """pred() polled for 30 s at the most."""
    return svtest.poll(pred, tries=600, every=0.05)


def store_args(mealy, state):
    """The arguments of `mealy fsm run` for the store MLY_TEST_STORE names:
    --state-dir STATE, or a database of STATE's own in the private cluster
    (MLY_TEST_PG), made and initialised here.  Another name fails."""
    store = os.environ.get("MLY_TEST_STORE") or "journal"
    if store == "journal":
        return ["--state-dir", state]
    if store != "postgresql":
        print(f"FAIL: MLY_TEST_STORE={store}: no such store (journal, "
              "postgresql)")
        sys.exit(1)
    ci = os.environ.get("MLY_TEST_PG")
    if not ci:
        print("FAIL: MLY_TEST_STORE=postgresql needs MLY_TEST_PG: run the "
              "suite through test/pg/with_cluster.sh")
        sys.exit(1)
    db = "mly_" + hashlib.md5(state.encode()).hexdigest()[:16]
    subprocess.run(["psql", "-X", "-q", ci, "-c", f"CREATE DATABASE {db}"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([mealy, "store", "init", "--store", f"{ci} dbname={db}"],
                   check=True, stdout=subprocess.DEVNULL)
    # the store's default lease: no host is killed here, and thousands of
    # requests at once keep a sanitizer build's loop busy past a short one
    # (its instances would leave it, as they should)
    return ["--store", f"{ci} dbname={db}", "--lease",
            os.environ.get("MLY_TEST_PG_LEASE_MS") or "10000"]


def main():
    mealy = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "supervise"
    top = tempfile.mkdtemp(prefix="rpcspec.")
    os.chmod(top, 0o700)
    sock = os.path.join(top, "s.sock")
    if mode == "supervise":
        cfg = os.path.join(top, "c.yaml")
        with open(cfg, "w") as f:
            f.write(f"socket: {sock}\nprograms:\n  svc:\n"
                    f"    command: [/bin/sleep, '1000']\n")
        argv = [mealy, "supervise", cfg]
        method, params, name_method = "status", [], "status"
    else:
        lib = os.path.join(top, "act.so")
        shutil.copy(sys.argv[3], lib)
        os.chmod(lib, 0o644)
        argv = [mealy, "fsm", "run", sys.argv[4], "--actions", lib,
                *store_args(mealy, os.path.join(top, "state")), "-s", sock]
        method, params, name_method = "ls", [{}], "show"
    srv = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                           stderr=open(os.path.join(top, "err"), "w"))
    try:
        if not check("its socket appears",
                     wait_for(lambda: os.path.exists(sock))):
            sys.exit(1)
        run_checks(sock, method, params, name_method, mode)
    finally:
        srv.terminate()
        try:
            srv.wait(30)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
        if svtest.failed:
            sys.stdout.write(open(os.path.join(top, "err")).read()[-4000:])
        shutil.rmtree(top, ignore_errors=True)
    sys.exit(1 if svtest.failed else 0)




def is_answer(m, msgid, ok=True):
    return (isinstance(m, list) and len(m) == 4 and m[0] == 1 and
            m[1] == msgid and ((m[2] is None) == ok))


def run_checks(sock, method, params, name_method, mode):
    # 1. pipelined, in order, msgids echoed (0, max, repeated, mixed)
    c = Conn(sock)
    ids = [0, 4294967295, 7, 7, 3, 123456, 1]
    batch = b""
    for i in ids:
        batch += msgpack.packb([0, i, method, params])
    batch += msgpack.packb([0, 99, "no-such-method", []])
    batch += msgpack.packb([0, 100, method, params])
    c.raw(batch)
    got = [c.recv() for _ in range(len(ids) + 2)]
    check("pipelined: answered in order with their msgids",
          all(is_answer(m, i) for m, i in zip(got, ids)), got)
    check("pipelined: an unknown method is an error answer in its place",
          is_answer(got[-2], 99, ok=False) and "unknown method" in got[-2][2],
          got[-2])
    check("pipelined: and the next request is answered after it",
          is_answer(got[-1], 100), got[-1])

    # 2. notifications: run, never answered; msgid 0 unaffected
    c.send([2, method, params])
    c.send([2, "no-such-method", []])
    c.send([0, 0, method, params])
    c.send([0, 5, method, params])
    a, b = c.recv(), c.recv()
    check("notification: no answer; the msgid 0 request gets its own",
          is_answer(a, 0), a)
    check("notification: the next answer is the next request's (5)",
          is_answer(b, 5), b)
    if mode == "supervise":
        c.send([2, "stop", ["svc"]])  # run though unanswered
        def stopped():
            c.send([0, 6, "status", ["svc"]])
            m = c.recv()
            return is_answer(m, 6) and m[3][0]["pid"] == 0
        check("notification: its method did run (svc stopped)",
              wait_for(stopped))
    else:
        c.send([2, "start", ["order", "by-notification", None]])
        def started():
            c.send([0, 6, "ls", [{}]])
            m = c.recv()
            return is_answer(m, 6) and any(
                i["name"] == "by-notification" for i in m[3])
        check("notification: its method did run (an instance started)",
              wait_for(started))

    # 3. malformed, with a msgid: an error answer, the connection stays
    bad = [([0, 11, 42, []], "method must be a string"),
           ([0, 12, method], "4 elements"),
           ([0, 13, method, {"a": 1}], "params must be an array"),
           ([0, 14, method, params, "extra"], "4 elements"),
           ([1, 15, None, None], "response")]
    for req, word in bad:
        c.send(req)
        m = c.recv()
        check(f"malformed {req!r}: error answer naming '{word}'",
              is_answer(m, req[1], ok=False) and word in m[2], m)
    c.send([0, 16, method, params])
    check("after malformed requests, the connection still serves",
          is_answer(c.recv(), 16))
    c.close()

    # 4. no msgid, or not msgpack: [2, "error", [why]], then closed
    cases = [(msgpack.packb([0, -1, method, params]), "msgid"),
             (msgpack.packb([0, "x", method, params]), "msgid"),
             (msgpack.packb([2, 42, []]), "method must be a string"),
             (msgpack.packb([2, method]), "3 elements"),
             (msgpack.packb("hello"), "not a msgpack-RPC message"),
             (msgpack.packb([7, 1, method, params]), "first element"),
             (b"\xc1\x00\x00garbage", "malformed msgpack")]
    for raw, word in cases:
        c = Conn(sock)
        c.raw(raw)
        m = c.recv()
        check(f"no msgid {raw[:12]!r}: a notification naming '{word}'",
              isinstance(m, list) and m[0] == 2 and m[1] == "error" and
              word in m[2][0], m)
        check(f"no msgid {raw[:12]!r}: then closed", c.recv() is None)
        c.close()

    # 5. frame size: just under 64 KiB served, over it refused and closed
    c = Conn(sock)
    c.send([0, 21, name_method, ["x" * 60000]])
    m = c.recv()
    check("a 60 KB request is answered (an error: no such name)",
          is_answer(m, 21, ok=False), str(m)[:200])
    c.send([0, 22, name_method, ["x" * 70000]])
    m = c.recv()
    check("a 70 KB request: [2, error, [request too large]]",
          isinstance(m, list) and m[:2] == [2, "error"] and
          "too large" in m[2][0], str(m)[:200])
    check("a 70 KB request: then closed", c.recv() is None)
    c.close()

    # 6. one byte at a time
    c = Conn(sock)
    for byte in msgpack.packb([0, 31, method, params]):
        c.raw(bytes([byte]))
    check("a request sent byte by byte is answered", is_answer(c.recv(), 31))
    c.close()

    # 7. thousands written before any answer is read: the server stops
    # reading while its answers wait, then serves what was buffered
    c = Conn(sock)
    n = 3000
    data = b"".join(msgpack.packb([0, i, method, params]) for i in range(n))
    w = threading.Thread(target=c.raw, args=(data,))
    w.start()
    time.sleep(0.2)  # not a check: lets the answers pile up unread
    got = [c.recv() for _ in range(n)]
    w.join()
    check(f"{n} pipelined before reading: all answered in order",
          all(is_answer(m, i) for i, m in enumerate(got)),
          next((m for i, m in enumerate(got) if not is_answer(m, i)), None))
    c.close()

    # 8. a client that shuts down its side after its requests still gets
    # every answer (late ones too), then the server closes
    c = Conn(sock)
    reqs = [[0, 40 + i, method, params] for i in range(5)]
    if mode == "fsm":  # answered once journaled: late
        reqs.insert(2, [0, 60, "send", ["by-notification", "nothing", None]])
    c.raw(b"".join(msgpack.packb(r) for r in reqs))
    c.s.shutdown(socket.SHUT_WR)
    got = [c.recv() for _ in reqs]
    check("shut down after its requests: every answer, in order",
          all(is_answer(m, r[1]) for m, r in zip(got, reqs)), got)
    check("... then the server closes", c.recv() is None)
    c.close()

    # 9. clients that go away without reading their answers: the server
    # (its writes failing, EPIPE) serves the next one
    for _ in range(20):
        c = Conn(sock)
        c.raw(b"".join(msgpack.packb([0, i, method, params])
                       for i in range(200)))
        c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
    c = Conn(sock)
    c.send([0, 77, method, params])
    check("after 20 clients left without reading, the next is served",
          is_answer(c.recv(), 77))
    c.close()

    # 10. many clients at once, each pipelining its own msgids
    conns = [Conn(sock) for _ in range(40)]
    rnd = random.Random(14)
    want = []
    for c in conns:
        ids = [rnd.randrange(1 << 32) for _ in range(25)]
        want.append(ids)
        c.raw(b"".join(msgpack.packb([0, i, method, params]) for i in ids))
    ok = True
    for c, ids in zip(conns, want):
        got = [c.recv() for _ in ids]
        ok = ok and all(is_answer(m, i) for m, i in zip(got, ids))
        c.close()
    check("40 clients pipelining 25 requests each: each its own, in order", ok)


if __name__ == "__main__":
    main()
