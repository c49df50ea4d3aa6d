#!/usr/bin/env python3
"""make-repro.py - writes the journal reader's reproducers (see README).

    make-repro.py [DIR] [--tail-mb N]

Each file is an input of the journal fuzz target (layout: fuzz_journal.h):
a flags byte, then one segment file of hand-made records with correct
CRCs.  Replay one with the fuzz driver:  fuzz_journal --iters 0 FILE.
--tail-mb N also writes b6-garbage-tail-NMiB (not kept in the tree: big).
"""
import os
import random
import struct
import sys


def crc32c(data):
    crc = 0xffffffff
    for x in data:
        crc ^= x
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82f63b78 & -(crc & 1))
    return crc ^ 0xffffffff


class Bin(bytes):
    pass


def mp(v):
    """The msgpack of v: the few forms records use."""
    if v is None:
        return b'\xc0'
    if isinstance(v, Bin):
        return b'\xc4' + bytes([len(v)]) + bytes(v)
    if isinstance(v, str):
        s = v.encode()
        return bytes([0xa0 | len(s)]) + s
    if isinstance(v, int):
        if v < 0:
            return b'\xd3' + struct.pack('>q', v)
        if 0 <= v < 128:
            return bytes([v])
        if 0 <= v < 1 << 32:
            return b'\xce' + struct.pack('>I', v)
        return b'\xcf' + struct.pack('>Q', v)
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b''.join(mp(x) for x in v)
    raise TypeError(v)


def rec(body):
    b = mp(body)
    return struct.pack('<II', len(b), crc32c(b)) + b


def state(id, type, point, wait, warg=0, flags=0, parent=0, ctx=None,
          name=None):
    """S = [id, type, parent, step, point, version, data, flags,
            [wait, ev, arg, due_wall_ms], status (, context, name)]"""
    s = [id, type, parent, 1, point, 1, Bin(b''), flags, [wait, 0, warg, 0],
         0]
    if ctx is not None or name is not None:
        s += [ctx, name]
    return s


def event(eid, to, ev, frm, flags, corr, payload=None):
    """E = [eid, to, ev, from, flags, corr, status, aux, payload]"""
    return [eid, to, ev, frm, flags, corr, 0, 0, payload]


SALVAGE, TOP_NAMES = 0x04, 0x10                # fuzz_journal.h: files
TYPES, TURN, NO_RECOVERY = 0x20, 0x40, 0x80  # 2^64-3 .. 2^64-1
ID = (1 << 32) | 1                           # slot 1, generation 1
CREATE, EVENT, END, TOMB = 1, 3, 4, 9
W_REPLY, W_EVENT, W_EXITING = 5, 4, 100
F_IN_SHUTDOWN = 0x08


def inputs():
    return {
        'b1-end-seq-zero': bytes([TYPES]) +
            rec([1, CREATE, state(ID, 'counter', 'tick', W_EXITING)]),
        'b3-big-slot': bytes([NO_RECOVERY]) +
            rec([1, CREATE, state((1 << 32) | ((1 << 28) - 1), 'counter',
                                  'tick', 2)]),
        'b4-reply-leak': bytes([TYPES]) +
            rec([1, CREATE, state(ID, 'pinger', 'asked', W_REPLY, warg=1)]) +
            rec([2, EVENT, event(1, ID, 8, ID + 1, 2, 1)]),
        'b5-open-failure-leak': bytes([TYPES]) +
            rec([1, CREATE, state(ID, 'waiter', 'hello', W_EVENT)]) +
            rec([2, EVENT, event(1, ID, 5, 0, 0, 0)]) +
            rec([3, EVENT, event(2, ID, 5, 0, 0, 0, Bin(b'\xc1'))]),
        'b7-null-shutdown': bytes([TYPES | TURN]) +
            rec([1, CREATE, state(ID, 'counter', 'tick', 0,
                                  flags=F_IN_SHUTDOWN)]),
        'b9-segment-number-wraps': bytes([SALVAGE | TOP_NAMES | 2]) +
            struct.pack('<HH', 0, 0) +  # two empty files, then the third:
            rec([1, CREATE, state(ID, 'counter', 'tick', 2)]) +
            b'\xff' * 8 +                # damage, which salvage skips
            rec([2, CREATE, state(ID + 1, 'counter', 'tick', 2)]),
        'b11-parent-loop': bytes([TYPES]) +
            rec([1, CREATE, state(ID, 'counter', 'tick', 2, parent=ID)]) +
            rec([2, CREATE, state(ID + 1, 'counter', 'tick', 2,
                                  parent=ID + 2)]) +
            rec([3, CREATE, state(ID + 2, 'counter', 'tick', 2,
                                  parent=ID + 1)]),
        # not crashes: the context/name fields and the TOMB kind, kept
        # as inputs the fuzzer starts from (a name held twice is damage,
        # a context that is not msgpack too; a tombstone beside a live
        # holder of its name is not)
        'b12-name-held-twice': bytes([TYPES]) +
            rec([1, CREATE, state(ID, 'counter', 'tick', 2, name='x')]) +
            rec([2, CREATE, state(ID + 1, 'counter', 'tick', 2, name='x')]),
        'b12-context-not-msgpack': bytes([TYPES]) +
            rec([1, CREATE, state(ID, 'counter', 'tick', 2,
                                  ctx=Bin(b'\xc1'), name='c')]),
        'b12-tombs-and-contexts': bytes([TYPES | TURN]) +
            rec([1, CREATE, state(ID, 'counter', 'tick', 2,
                                  ctx=Bin(mp([1, 'two'])), name='a')]) +
            rec([2, END, ID, 3, 4, 0, 1767225600000, 'a']) +
            rec([3, TOMB, 'b', ID + 7, 0, 1767225600000]) +
            rec([4, CREATE, state(ID + 1, 'counter', 'tick', 2,
                                  ctx=Bin(b''), name='b')]),
        'b12-tomb-bad-name': bytes([TYPES]) +
            rec([1, TOMB, 'a/bad', ID + 8, 0, 1]),
        'b13-tomb-ended-long-ago': bytes([TYPES]) +
            rec([1, TOMB, 'old', ID + 8, 0, -(1 << 63)]),
        'b8-same-slot': bytes([TYPES]) +
            rec([1, CREATE, state(ID, 'counter', 'tick', 2)]) +
            rec([2, CREATE, state(ID + (1 << 32), 'counter', 'tick', 2)]),
    }


def main(argv):
    out = os.path.dirname(os.path.abspath(__file__))
    tail_mb = 0
    args = list(argv[1:])
    while args:
        a = args.pop(0)
        if a == '--tail-mb':
            tail_mb = int(args.pop(0))
        else:
            out = a
    os.makedirs(out, exist_ok=True)
    files = inputs()
    if tail_mb:
        rnd = random.Random(1)
        files['b6-garbage-tail-%dMiB' % tail_mb] = bytes([NO_RECOVERY]) + \
            rec([1, CREATE, state(ID, 'counter', 'tick', 2)]) + \
            rnd.randbytes(tail_mb << 20)
    for name, data in files.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)
        print(name, len(data))


if __name__ == '__main__':
    main(sys.argv)
