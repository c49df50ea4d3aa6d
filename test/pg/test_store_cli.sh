#!/usr/bin/env bash
# mealy store init|migrate|stat against a private cluster (MLY_TEST_PG, set
# by with_cluster.sh): answers before the schema exists, init creates it
# (and changes nothing the second time), stat counts what is in the
# tables, migrate at the current version has nothing to do, and a schema
# newer than the code (the version row set higher by hand) is refused by
# init, migrate and stat, changing nothing.  Issue 13's breaker: a
# damaged version row (-1, 0, none) fails every action with one advice;
# `stat --bad` lists rows no process can restore; MEALY_STORE stands for
# --store; a malformed URI's password and the server's control
# characters never reach the terminal raw.
set -uo pipefail
MEALY=$1
C=${MLY_TEST_PG:?"!!! FAIL: MLY_TEST_PG is not set: this PostgreSQL suite DID NOT RUN"}
fails=0 checks=0
check() { # name, command...
  checks=$((checks + 1))
  if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
}
# the version this mealy makes: MLY_STORE_PG_VERSION in mealy.h
V=$(sed -n "s/^#define MLY_STORE_PG_VERSION \([0-9][0-9]*\).*/\1/p" "$(dirname "$0")/../../lib/include/mealy.h")
[ -n "$V" ] || { echo "FAIL: MLY_STORE_PG_VERSION not found in mealy.h"; exit 1; }
psqlq() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$C" -c "$1"; }
has() { grep -q -- "$1" <<<"$2"; }

out=$("$MEALY" store --help); check "--help" has "init" "$out"
out=$("$MEALY" store stat --help); check "stat --help" has "migrate" "$out"
env -u MEALY_STORE "$MEALY" store stat >/dev/null 2>&1; check "no --store: usage (2)" test $? = 2
"$MEALY" store frob --store "$C" >/dev/null 2>&1; check "unknown action (2)" test $? = 2
"$MEALY" store init --json --store "$C" >/dev/null 2>&1; check "--json with init (2)" test $? = 2

out=$("$MEALY" store stat --store "$C" 2>&1); rc=$?
check "stat before init fails" test $rc = 1
check "stat before init says run init" has "mealy store init" "$out"
out=$("$MEALY" store migrate --store "$C" 2>&1); rc=$?
check "migrate before init fails" test $rc = 1
check "migrate before init says run init" has "mealy store init" "$out"

out=$("$MEALY" store init --store "$C" 2>&1); rc=$?
check "init" test $rc = 0
check "init says created" has "created at version $V" "$out"
check "version row is $V" test "$(psqlq 'SELECT version FROM mealy.schema_version')" = $V
out=$("$MEALY" store init --store "$C" 2>&1); rc=$?
check "init again: nothing to do" test "$rc:$(has 'nothing to do' "$out" && echo y)" = "0:y"
out=$("$MEALY" store migrate --store "$C" 2>&1); rc=$?
check "migrate at version $V: nothing to do" test "$rc:$(has 'nothing to do' "$out" && echo y)" = "0:y"

out=$("$MEALY" store stat --json --store "$C"); rc=$?
check "stat --json empty" test "$rc:$out" = "0:{\"version\":$V,\"code_version\":$V,\"instances\":0,\"ended\":0,\"owned\":0,\"events\":0,\"timers\":0,\"nodes\":0}"

uri="postgresql:///postgres?host=${MLY_TEST_PG_DIR:?}&user=mealy"
out=$("$MEALY" store stat --json --store="$uri"); rc=$?
check "stat with a postgresql:// URI" test "$rc:${out:0:12}" = "0:{\"version\":$V"

# rows by hand: node 1 holds its lease, node 2's ran out, node 3 was
# taken over; 3 live instances (one of node 1, under its lease; one
# waiting on a timer), 1 tombstone, 2 events
psqlq "INSERT INTO mealy.nodes (host, pid, lease_until, taken_by) VALUES
       ('h', 1, now() + interval '1 hour', NULL), ('h', 2, now() - interval '1 hour', NULL),
       ('h', 3, now() + interval '1 hour', 1)" >/dev/null
psqlq "INSERT INTO mealy.instances (id, owner, epoch, step, name, due_ms, state) VALUES
       (1, 1, 1, 0, 'a', 5, '\\x90'), (2, 2, 2, 0, NULL, NULL, '\\x90'),
       (3, 3, 3, 0, 'b', NULL, '\\x90')" >/dev/null
psqlq "INSERT INTO mealy.names (name, id) VALUES ('a', 1), ('b', 3)" >/dev/null
psqlq "INSERT INTO mealy.names (name, id, status, ended_ms) VALUES ('a-old', 7, 0, 1)" >/dev/null
psqlq "INSERT INTO mealy.events (eid, target, sender, body) VALUES (1, 1, 0, '\\x90'), (2, 2, 0, '\\x90')" >/dev/null
out=$("$MEALY" store stat --json --store "$C")
check "stat --json counts" test "$out" = "{\"version\":$V,\"code_version\":$V,\"instances\":3,\"ended\":1,\"owned\":1,\"events\":2,\"timers\":1,\"nodes\":1}"
out=$("$MEALY" store stat --store "$C")
check "stat text" has "instances 3 live, 1 ended, 1 under a lease" "$out"
check "stat text: processes" has "processes 1 holding a lease" "$out"
# names: a live instance's name and a tombstone's are taken (one key over
# both); a tombstone deleted (past its retention) frees its name
psqlq "INSERT INTO mealy.names (name, id) VALUES ('a', 9)" >/dev/null 2>&1
check "a live instance's name is unique" test $? != 0
psqlq "INSERT INTO mealy.names (name, id) VALUES ('a-old', 9)" >/dev/null 2>&1
check "a tombstone keeps its name" test $? != 0
psqlq "DELETE FROM mealy.names WHERE name = 'a-old'" >/dev/null
psqlq "INSERT INTO mealy.names (name, id) VALUES ('a-old', 9)" >/dev/null
check "a deleted tombstone frees its name" test $? = 0

# --bad (issue 13 brk #15): the rows by hand above hold no S record nor E
# record: each is listed with the way out, and the exit says so
out=$("$MEALY" store stat --bad --store "$C" 2>&1); rc=$?
check "--bad: exit 1 with bad rows" test $rc = 1
for r in "mealy.instances id 1:" "mealy.instances id 3:" "mealy.events eid 2:"; do
  check "--bad lists $r" has "$r" "$out"
done
check "--bad gives the way out" has "DELETE FROM mealy.instances WHERE id = 2" "$out"
check "--bad counts them" has "^5 row(s) that cannot be restored" "$out"
"$MEALY" store stat --bad --json --store "$C" >/dev/null 2>&1
check "--bad with --json: usage (2)" test $? = 2

# MEALY_STORE stands for --store (brk #13: argv is shown by ps)
out=$(MEALY_STORE="$C" "$MEALY" store stat --json); rc=$?
check "MEALY_STORE stands for --store" test "$rc:${out:0:12}" = "0:{\"version\":$V"
out=$(MEALY_STORE="host=/nonexistent/dir dbname=x" "$MEALY" store stat --json --store "$C"); rc=$?
check "--store wins over MEALY_STORE" test "$rc:${out:0:12}" = "0:{\"version\":$V"

# a password in a URI libpq cannot parse is never printed (brk #13)
for a in init migrate stat; do
  out=$("$MEALY" store $a --store 'postgresql://pwuser:Sekr3tPw@[::1/m3' 2>&1); rc=$?
  check "$a: a malformed URI fails" test $rc = 1
  check "$a: its password is masked" test "$(has Sekr3tPw "$out" && echo leak)" = ""
  check "$a: libpq's words are there" has "IPv6" "$out"
done
# control characters of the server's words are escaped (brk #15)
out=$("$MEALY" store stat --store "$C user=$(printf '\033[31mX\a')" 2>&1); rc=$?
check "a role that does not exist fails" test $rc = 1
check "no raw ESC or BEL" test "$(tr -d -c '\033\007' <<<"$out" | wc -c)" = 0
check "the escapes are shown" has '\\x1b\[31mX\\x07' "$out"

# a damaged version row (brk #6): every action fails, saying so
for bad in "-1" "0"; do
  psqlq "UPDATE mealy.schema_version SET version = $bad" >/dev/null
  for a in init migrate stat; do
    out=$("$MEALY" store $a --store "$C" 2>&1); rc=$?
    check "$a on version $bad fails (1)" test $rc = 1
    check "$a on version $bad says damaged" has "holds '$bad'.*damaged" "$out"
  done
done
psqlq "DELETE FROM mealy.schema_version" >/dev/null
for a in init migrate stat; do
  out=$("$MEALY" store $a --store "$C" 2>&1); rc=$?
  check "$a on an empty version table fails, one advice" has "is empty: the schema is damaged.*INSERT INTO mealy.schema_version" "$out"
done
psqlq "INSERT INTO mealy.schema_version (version) VALUES ($V)" >/dev/null

psqlq "UPDATE mealy.schema_version SET version = $((V + 1))" >/dev/null
for a in init migrate stat; do
  out=$("$MEALY" store $a --store "$C" 2>&1); rc=$?
  check "$a refuses a newer schema" test $rc = 1
  check "$a says why" has "version $((V + 1)), newer than this mealy's version $V" "$out"
done
check "refusal changed nothing" test "$(psqlq 'SELECT version FROM mealy.schema_version')" = $((V + 1))

out=$("$MEALY" store stat --store "host=/nonexistent/dir dbname=x" 2>&1); rc=$?
check "no server: fails" test $rc = 1
check "no server: says cannot connect" has "cannot connect" "$out"

# a server that accepts and never answers: connect_timeout holds (the
# tool ends, says why), for stat and init alike
BH=$(mktemp -d)
python3 -c 'import socket,sys,time
s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(16); time.sleep(120)' \
  "$BH/.s.PGSQL.5432" & BHP=$!
for ((i = 0; i < 100; i++)); do [ -S "$BH/.s.PGSQL.5432" ] && break; sleep 0.1; done
for a in stat init; do
  out=$(timeout 60 "$MEALY" store $a --store "host=$BH dbname=x connect_timeout=2" 2>&1); rc=$?
  check "silent server: $a fails (not killed by timeout)" test $rc = 1
  check "silent server: $a says timeout expired" has "timeout expired" "$out"
done
kill $BHP; rm -rf "$BH"

echo "$((checks - fails)) of $checks checks passed"
[ "$fails" = 0 ]
