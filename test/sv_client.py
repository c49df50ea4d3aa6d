#!/usr/bin/env python3
"""Raw control-socket clients that misbehave, for test_supervise_io.sh.

The requests are msgpack-RPC written by hand (no msgpack module needed):
[0, msgid, method, params].  Each subcommand prints what it saw, one
word or number a line, for the shell to check.

  noread SOCK N          N clients: send `status`, close without reading
  pipeline SOCK SECONDS  send `status` requests without ever reading the
                         answers; prints "closed BYTES" when the supervisor
                         hangs up, "open BYTES" if it did not in SECONDS
  hold SOCK N SECONDS    N connections at once, idle; prints one line per
                         connection: refused (too many), closed, or open
  big SOCK BYTES         half a request of BYTES: a str32 header that
                         promises 1 MiB, then BYTES of it; prints what came
                         back, then closed or open
  method SOCK HEX        a request whose method is the bytes HEX; writes
                         the raw answer to stdout
"""
import select
import socket
import sys
import time


def mp_str(b):
    if len(b) < 32:
        return bytes([0xA0 | len(b)]) + b
    if len(b) < 256:
        return bytes([0xD9, len(b)]) + b
    return bytes([0xDA]) + len(b).to_bytes(2, "big") + b


def request(method, msgid=1):
    return bytes([0x94, 0x00, msgid & 0x7F]) + mp_str(method) + bytes([0x90])


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


def closed_within(s, seconds):
    """Reads until EOF or the deadline: (closed, bytes received)."""
    s.settimeout(0.2)
    got = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return True, got
        if not b:
            return True, got
        got += b
    return False, got


def noread(path, n):
    for _ in range(int(n)):
        s = connect(path)
        s.sendall(request(b"status"))
        s.close()
    print("done")


def pipeline(path, seconds):
    s = connect(path)
    s.setblocking(False)
    req = request(b"status") * 64
    sent = 0
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        try:
            sent += s.send(req)
        except BlockingIOError:
            time.sleep(0.05)
        except OSError:
            print("closed", sent)
            return
    print("open", sent)


def hold(path, n, seconds):
    socks = [connect(path) for _ in range(int(n))]
    got = {s: b"" for s in socks}
    closed = set()
    end = time.monotonic() + float(seconds)
    while len(closed) < len(socks) and time.monotonic() < end:
        ready, _, _ = select.select([s for s in socks if s not in closed],
                                    [], [], 0.1)
        for s in ready:
            try:
                b = s.recv(65536)
            except OSError:
                b = b""
            if b:
                got[s] += b
            else:
                closed.add(s)
    for s in socks:
        if b"too many" in got[s]:
            print("refused")
        elif s in closed:
            print("closed")
        else:
            print("open")


def big(path, nbytes):
    s = connect(path)
    head = bytes([0x94, 0x00, 0x01, 0xDB]) + (1 << 20).to_bytes(4, "big")
    try:
        s.sendall(head + b"x" * int(nbytes))
    except OSError:
        pass
    closed, got = closed_within(s, 10)
    print("too-large" if b"too large" in got else "no-answer")
    print("closed" if closed else "open")


def method(path, hexname):
    s = connect(path)
    s.sendall(request(bytes.fromhex(hexname)))
    _, got = closed_within(s, 2)
    sys.stdout.buffer.write(got)


if __name__ == "__main__":
    {"noread": noread, "pipeline": pipeline, "hold": hold, "big": big,
     "method": method}[sys.argv[1]](*sys.argv[2:])
