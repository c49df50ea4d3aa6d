#!/usr/bin/env bash
# Integration: `mealy journal stat|dump|check|compact` on real state
# directories written by journal_fill (durable counters, one finished
# counter, one pending event whose payload needs JSON escaping): counts
# agree between the actions, dump is valid JSON with the fields named,
# damage is found and named, salvage passes it, compaction shrinks the
# journal and keeps every instance resumable, the directory lock is
# respected, and bad command lines exit 2.
#
# usage: test_journal_cli.sh PATH/TO/mealy PATH/TO/journal_fill
set -u
if [ $# -lt 2 ]; then
  echo "usage: $0 PATH/TO/mealy PATH/TO/journal_fill" >&2
  exit 2
fi
command -v python3 >/dev/null || { echo "skip: python3 is needed"; exit 77; }
mealy=$(readlink -f "$1")
fill=$(readlink -f "$2")
fail=0
check() { # description, command...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}
top=$(mktemp -d "${TMPDIR:-/tmp}/mealy-jcli.XXXXXX")
holder=""
cleanup() {
  [ -n "$holder" ] && kill "$holder" 2>/dev/null
  rm -rf "$top"
}
trap cleanup EXIT

N=8
quiet() { "$@" >/dev/null; }
# every line one JSON value, in strict UTF-8 (whatever the locale says)
valid_json() {
  python3 -c 'import json,sys; [json.loads(l.decode("utf-8")) for l in sys.stdin.buffer]'
}
# stat_field DIR NAME: one number of `mealy journal stat --json DIR`
stat_field() {
  "$mealy" journal stat --json "$1" | python3 -c \
    'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}
# the number before " records" in a check summary
summary_records() { sed -n 's/^ok: \([0-9]*\) records, .*/\1/p'; }
# frame_of FILE OFFSET: the offset and length of the batch (format 2
# frame, lib/journal.h) that holds the byte at OFFSET
frame_of() {
  python3 - "$1" "$2" <<'EOF'
import struct, sys
data = open(sys.argv[1], "rb").read()
at, o = int(sys.argv[2]), 32
while o + 24 <= len(data):
    n = struct.unpack_from("<I", data, o)[0]
    if o <= at < o + 24 + n:
        print(o, 24 + n); break
    o += 24 + n
EOF
}
flip_byte() { # file offset
  python3 - "$1" "$2" <<'EOF'
import sys
path, off = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0xff]))
EOF
}

# 1. a good journal: check, dump and stat agree
a=$top/a
"$fill" "$a" "$N" >"$top/fill.out" 2>&1
check "journal_fill writes a journal" test $? = 0
out=$("$mealy" journal check "$a" 2>&1); rc=$?
check "check passes on a good journal" test "$rc" = 0
check "check summary: $out" grep -qE '^ok: [0-9]+ records, [0-9]+ batches, 1 segments, next record [0-9]+$' <<<"$out"
nrec=$(summary_records <<<"$out")
"$mealy" journal dump "$a" >"$top/a.dump"; rc=$?
check "dump exits 0" test "$rc" = 0
check "dump has one line per record ($nrec)" test "$(wc -l <"$top/a.dump")" = "$nrec"
check "dump lines are valid JSON" valid_json <"$top/a.dump"
check "stat counts the same records" test "$(stat_field "$a" records)" = "$nrec"
check "next record follows the last seq" test "$(stat_field "$a" next_seq)" = \
  "$(tail -n 1 "$top/a.dump" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"] + 1)')"
check "dump: fields named by kind, payload decoded and escaped" python3 - "$top/a.dump" "$N" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
n = int(sys.argv[2])
kinds = [r["kind"] for r in recs]
assert kinds.count("create") == n + 1, kinds.count("create")
assert kinds.count("end") == 1 and kinds.count("event") == 1, kinds
assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
steps = [r for r in recs if r["kind"] == "step"]
assert steps, "no step records"
for r in steps:
    assert r["type"] == "counter" and r["point"] == "tick", r
    assert r["wait"]["kind"] in ("sleep", "exiting"), r
    bytes.fromhex(r["data"])  # bin as hex (trailing zero bytes are not written)
    assert r["took"] == [] and r["out"] == [] and r["spawned"] == [], r
    assert r["file"].startswith("seg-") and isinstance(r["offset"], int)
end = next(r for r in recs if r["kind"] == "end")
assert end["lifecycle"] == "terminated" and end["status"] == 0, end
assert end["name"] == "done" and end["ended_ms"] > 0, end  # its tombstone
creates = [r for r in recs if r["kind"] == "create"]
first = creates[0]
assert first["name"] == "first" and first["context_bytes"] > 1000, first
assert all("name" not in r for r in creates[1:-1]), creates
assert all(r.get("context_bytes") is None for r in creates[1:]), creates
# a step that left the context as committed does not carry it
assert all(r["context_bytes"] is None for r in steps if r["id"] == first["id"])
ev = next(r for r in recs if r["kind"] == "event")
assert ev["ev"] == "poke", ev
text = "tab\tquote\"back\\slash\x01 caf\u00e9 bad\u00ff"
assert ev["payload"] == {"n": 42, "text": text}, ev["payload"]
EOF
check "stat: $N live instances" test "$(stat_field "$a" live_instances)" = "$N"
check "stat: 1 pending event" test "$(stat_field "$a" pending_events)" = 1
st=$("$mealy" journal stat "$a")
check "stat text: live instances" grep -qE "^live instances +$N$" <<<"$st"
check "stat: 1 named, 1 tombstone" test "$(stat_field "$a" named) $(stat_field "$a" tombstones)" = "1 1"
check "stat: the context's bytes" test "$(stat_field "$a" context_bytes)" -gt 1000
check "stat text: tombstones" grep -qE "^tombstones +1$" <<<"$st"
check "stat text: dead ratio as a percentage" grep -qE '^dead ratio +[0-9]+\.[0-9]%$' <<<"$st"

# 2. a damaged byte in the middle of a segment
b=$top/b
cp -r "$a" "$b"
mid=$(sed -n "$((nrec / 2))p" "$top/a.dump")
seg=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["file"])' "$mid")
off=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["offset"])' "$mid")
read -r foff flen < <(frame_of "$b/$seg" "$off")
# the records of that batch, and those before it
inbatch=$(python3 -c 'import json,sys
a, b = int(sys.argv[1]), int(sys.argv[1]) + int(sys.argv[2])
print(sum(1 for l in open(sys.argv[3]) if a <= json.loads(l)["offset"] < b))' "$foff" "$flen" "$top/a.dump")
before=$(python3 -c 'import json,sys
print(sum(1 for l in open(sys.argv[2]) if json.loads(l)["offset"] < int(sys.argv[1])))' "$foff" "$top/a.dump")
flip_byte "$b/$seg" $((off + 12))
err=$("$mealy" journal check "$b" 2>&1 >/dev/null); rc=$?
check "check fails on damage (exit 1)" test "$rc" = 1
check "check names file and the batch's offset: $err" grep -qF "mealy journal: $b/$seg: offset $foff: batch checksum mismatch" <<<"$err"
check "... and why it is not a torn write" grep -qF "a later batch was written after this one was durable" <<<"$err"
out=$("$mealy" journal check --salvage "$b" 2>&1); rc=$?
check "check --salvage passes" test "$rc" = 0
check "check --salvage says what it skipped: $out" grep -qE "^ok: $((nrec - inbatch)) records, .*\(salvage: $inbatch records skipped\)$" <<<"$out"
"$mealy" journal dump "$b" >"$top/b.dump" 2>/dev/null; rc=$?
check "dump stops at damage (exit 1)" test "$rc" = 1
check "dump printed the records before it ($before)" test "$(wc -l <"$top/b.dump")" = "$before"
"$mealy" journal dump --salvage "$b" >"$top/b.dump"; rc=$?
check "dump --salvage passes" test "$rc" = 0
check "dump --salvage leaves out the damaged batch" test "$(wc -l <"$top/b.dump")" = $((nrec - inbatch))
check "dump --salvage lines are valid JSON" valid_json <"$top/b.dump"

# 3. a torn tail is not damage
c=$top/c
cp -r "$a" "$c"
printf 'xxxxxxx' >>"$c/$seg"
out=$("$mealy" journal check "$c" 2>&1); rc=$?
check "check passes with a torn tail" test "$rc" = 0
check "check says it is not acknowledged: $out" grep -qF "; torn tail: 7 bytes, not acknowledged, cut off at the next open" <<<"$out"
check "stat reports the torn tail" test "$(stat_field "$c" torn_bytes)" = 7
check "stat: a cut-short tail is not suspect" test "$(stat_field "$c" tail_suspect)" = False

# 4. compaction
d=$top/d
cp -r "$a" "$d"
bytes0=$(stat_field "$d" bytes)
out=$("$mealy" journal compact "$d" 2>&1); rc=$?
check "compact exits 0" test "$rc" = 0
check "compact prints before and after" grep -qE "^before: segments 1, bytes $bytes0, records $nrec$" <<<"$out"
check "compact says what it kept" grep -qE "^kept: instances $N, pending events 1$" <<<"$out"
check "compact: fewer records" test "$(stat_field "$d" records)" -lt "$nrec"
check "compact: fewer bytes" test "$(stat_field "$d" bytes)" -lt "$bytes0"
check "compact: one segment" test "$(stat_field "$d" segments)" = 1
check "compact: $N live instances kept" test "$(stat_field "$d" live_instances)" = "$N"
check "compact: the pending event kept" test "$(stat_field "$d" pending_events)" = 1
check "check passes after compact (DIR after --)" quiet "$mealy" journal check -- "$d"
kinds=$("$mealy" journal dump "$d" | python3 -c \
  'import json,sys; print(" ".join(json.loads(l)["kind"] for l in sys.stdin))')
check "compacted: a snapshot ($kinds)" test "$kinds" = \
  "snap$(printf ' inst%.0s' $(seq "$N")) event tomb snapend"
check "compacted: the name, context and tombstone kept" python3 - "$d" "$mealy" <<'EOF'
import json, subprocess, sys
out = subprocess.run([sys.argv[2], "journal", "dump", sys.argv[1]],
                     capture_output=True, text=True, check=True).stdout
recs = [json.loads(l) for l in out.splitlines()]
first = [r for r in recs if r["kind"] == "inst" and r.get("name") == "first"]
assert len(first) == 1 and first[0]["context_bytes"] > 1000, first
tomb = [r for r in recs if r["kind"] == "tomb"]
assert len(tomb) == 1 and tomb[0]["name"] == "done" and tomb[0]["status"] == 0
assert recs[-1]["kind"] == "snapend" and recs[-1]["tombstones"] == 1, recs[-1]
EOF
out=$("$fill" "$d" 0 2>&1)
check "compacted instances resume: $(tr '\n' ' ' <<<"$out")" \
  grep -qx "recovered $N" <<<"$out"
check "... none parked" grep -qx "parked 0" <<<"$out"

# 5. compaction respects the lock of a running process
e=$top/e
"$fill" "$e" 2 hold >"$top/hold.out" 2>&1 &
holder=$!
for _ in $(seq 100); do grep -q '^holding' "$top/hold.out" && break; sleep 0.1; done
check "journal_fill holds the journal" grep -qx "holding $holder" "$top/hold.out"
err=$("$mealy" journal compact "$e" 2>&1); rc=$?
check "compact of a locked journal fails (exit 1)" test "$rc" = 1
check "it names the holder: $err" grep -qF "in use by process $holder" <<<"$err"
check "read-only actions still work" quiet "$mealy" journal check "$e"
kill "$holder"
wait "$holder" 2>/dev/null
holder=""
out=$("$mealy" journal compact "$e" 2>&1); rc=$?
check "compact once the holder is gone" test "$rc" = 0

# 6. bad command lines: exit 2; other failures: exit 1
usage_rc() { # expected, args...
  local want=$1; shift
  "$mealy" journal "$@" >/dev/null 2>&1
  test $? = "$want"
}
check "no action: 2" usage_rc 2
check "unknown action: 2" usage_rc 2 frob "$a"
check "missing DIR: 2" usage_rc 2 check
check "extra argument: 2" usage_rc 2 check "$a" "$a"
check "unknown option: 2" usage_rc 2 check --bogus "$a"
check "--salvage with stat: 2" usage_rc 2 stat --salvage "$a"
check "--json with dump: 2" usage_rc 2 dump --json "$a"
check "-h: 0" usage_rc 0 -h
check "--help prints the usage" grep -q "usage: mealy journal" <<<"$("$mealy" journal --help)"
err=$("$mealy" journal check "$top/none" 2>&1); rc=$?
check "missing directory: 1" test "$rc" = 1
check "missing directory named: $err" grep -qF "$top/none" <<<"$err"
check "compact does not create a missing directory" \
  bash -c '! "$1" journal compact "$2" 2>/dev/null && ! test -e "$2"' _ "$mealy" "$top/none"
check "mealy --help lists journal" grep -qE '^  journal ' <<<"$("$mealy" --help)"

# 7. damage in a compaction's snapshot is refused, never cut (the open
# would delete the segment, and everything with it)
s=$top/s
cp -r "$a" "$s"
quiet "$mealy" journal compact "$s"
sseg=$(cd "$s" && ls seg-*.mj)
check "compacted: the snapshot alone" test "$(stat_field "$s" batches)" = 1
flip_byte "$s/$sseg" 100
cp "$s/$sseg" "$top/snap.flipped"
err=$("$mealy" journal check "$s" 2>&1 >/dev/null); rc=$?
check "damaged snapshot: check exits 1" test "$rc" = 1
check "... names file and offset: $err" grep -qF "$s/$sseg: offset 32: batch checksum mismatch" <<<"$err"
check "... and says a snapshot is synced first" grep -qF "a snapshot is synced before anything depends on it" <<<"$err"
out=$("$fill" "$s" 0 2>&1); rc=$?
check "damaged snapshot: the open refuses it: $(head -c 300 <<<"$out")" test "$rc" != 0
check "... and leaves the segment as it was" cmp -s "$s/$sseg" "$top/snap.flipped"

# 8. hostile directories: the tools never block, never follow a link,
# work in time linear in the bytes, and never call what is not a journal
# "ok".  Each command runs under a generous timeout: 124 is a hang.
h=$top/h
seg1=seg-00000000000000000001.mj
hostile() { # name, expected exit, expected text, action
  local what=$1 want=$2 text=$3 action=$4 out rc
  out=$(timeout 60 "$mealy" journal "$action" "$h" 2>&1 </dev/null); rc=$?
  check "$what: $action exits $want (got $rc): $(head -c 300 <<<"$out")" test "$rc" = "$want"
  check "$what: $action says '$text'" grep -qF -- "$text" <<<"$out"
}
fresh_h() { rm -rf "$h"; mkdir "$h"; }
fresh_h; mkfifo "$h/$seg1"
for act in check dump stat; do hostile "a FIFO" 1 "a FIFO, not a segment file" $act; done
out=$(timeout 60 "$fill" "$h" 0 2>&1); rc=$?
check "a FIFO: an open fails at once (rc $rc): $(head -c 300 <<<"$out")" \
  bash -c 'test "$1" != 0 && test "$1" != 124' _ "$rc"
fresh_h; ln -s /etc/passwd "$h/$seg1"
hostile "a symbolic link" 1 "a symbolic link, not a segment file" check
fresh_h; mkdir "$h/$seg1"
hostile "a directory" 1 "a directory, not a segment file" check
fresh_h; head -c 1048576 /dev/urandom >"$h/$seg1"
hostile "1 MiB of random bytes" 1 "offset 0: not a journal segment" check
fresh_h; head -c 32 "$a/$seg1" >"$h/$seg1"; head -c 1048576 /dev/urandom >>"$h/$seg1"
hostile "a header and 1 MiB of random bytes" 3 "suspect: 0 records, 0 batches" check
hostile "a header and 1 MiB of random bytes" 3 "not records: 1048576 bytes" check
check "... stat calls it suspect" test "$(stat_field "$h" tail_suspect)" = True
fresh_h; truncate -s 2G "$h/$seg1"
hostile "a 2 GiB sparse segment" 1 "offset 0: not a journal segment" check
fresh_h; head -c 32 "$a/$seg1" >"$h/$seg1"; truncate -s 2G "$h/$seg1"
hostile "a header and a 2 GiB hole" 3 "torn tail: 2147483616 bytes" check
# the unit that made the old reader quadratic, 1 MiB of it, after a
# header and alone
unit_file() { # path, header or not
  python3 - "$1" "$2" <<'EOF'
import struct, sys
size = 1 << 20
unit = struct.pack("<II", size // 2, 0) + bytes([0x92, 1, 1])
body = (unit * (size // len(unit) + 1))[:size]
head = open(sys.argv[2], "rb").read(32) if sys.argv[2] != "-" else b""
open(sys.argv[1], "wb").write(head + body)
EOF
}
fresh_h; unit_file "$h/$seg1" -
hostile "the quadratic unit" 1 "journal format 1 (an older mealy wrote it)" check
fresh_h; unit_file "$h/$seg1" "$a/$seg1"
hostile "the quadratic unit after a header" 3 "suspect: 0 records" check

exit $fail
