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
# the number after "records " in a check summary
summary_records() { sed -n 's/^ok: \([0-9]*\) records in .*/\1/p'; }
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
check "check summary: $out" grep -qE '^ok: [0-9]+ records in 1 segments, next record [0-9]+$' <<<"$out"
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
    int(r["data"], 16)  # bin as hex
    assert r["took"] == [] and r["out"] == [] and r["spawned"] == [], r
    assert r["file"].startswith("seg-") and isinstance(r["offset"], int)
end = next(r for r in recs if r["kind"] == "end")
assert end["lifecycle"] == "terminated" and end["status"] == 0, end
ev = next(r for r in recs if r["kind"] == "event")
assert ev["ev"] == "poke", ev
text = "tab\tquote\"back\\slash\x01 caf\u00e9 bad\u00ff"
assert ev["payload"] == {"n": 42, "text": text}, ev["payload"]
EOF
check "stat: $N live instances" test "$(stat_field "$a" live_instances)" = "$N"
check "stat: 1 pending event" test "$(stat_field "$a" pending_events)" = 1
st=$("$mealy" journal stat "$a")
check "stat text: live instances" grep -qE "^live instances +$N$" <<<"$st"
check "stat text: dead ratio as a percentage" grep -qE '^dead ratio +[0-9]+\.[0-9]%$' <<<"$st"

# 2. a damaged byte in the middle of a segment
b=$top/b
cp -r "$a" "$b"
mid=$(sed -n "$((nrec / 2))p" "$top/a.dump")
seg=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["file"])' "$mid")
off=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["offset"])' "$mid")
flip_byte "$b/$seg" $((off + 12))
err=$("$mealy" journal check "$b" 2>&1 >/dev/null); rc=$?
check "check fails on damage (exit 1)" test "$rc" = 1
check "check names file and offset: $err" grep -qF "mealy journal: $b/$seg: offset $off: " <<<"$err"
out=$("$mealy" journal check --salvage "$b" 2>&1); rc=$?
check "check --salvage passes" test "$rc" = 0
check "check --salvage says what it skipped: $out" grep -qE "^ok: $((nrec - 1)) records .*\(salvage: 1 records skipped\)$" <<<"$out"
"$mealy" journal dump "$b" >"$top/b.dump" 2>/dev/null; rc=$?
check "dump stops at damage (exit 1)" test "$rc" = 1
check "dump printed the records before it" test "$(wc -l <"$top/b.dump")" = $((nrec / 2 - 1))
"$mealy" journal dump --salvage "$b" >"$top/b.dump"; rc=$?
check "dump --salvage passes" test "$rc" = 0
check "dump --salvage leaves out the damaged record" test "$(wc -l <"$top/b.dump")" = $((nrec - 1))
check "dump --salvage lines are valid JSON" valid_json <"$top/b.dump"

# 3. a torn tail is not damage
c=$top/c
cp -r "$a" "$c"
printf 'xxxxxxx' >>"$c/$seg"
out=$("$mealy" journal check "$c" 2>&1); rc=$?
check "check passes with a torn tail" test "$rc" = 0
check "stat reports the torn tail" test "$(stat_field "$c" torn_bytes)" = 7

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
  "snap$(printf ' inst%.0s' $(seq "$N")) event snapend"
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

exit $fail
