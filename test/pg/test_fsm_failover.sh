#!/usr/bin/env bash
# Two `mealy fsm run --store` hosts on one database (MLY_TEST_PG, set by
# with_cluster.sh), started from the same machine file: both come up and
# both start instances (each holds its own copy of the definition: no
# name clash stops the second's store); A is killed with SIGKILL and B
# takes A's instances over once A's lease ran out: they answer through B
# from the state they reached, and run to their end.  Then A's host is
# started again and takes B's over after B is killed too; last, the only
# host is killed and started again at once, within its own lease (a quick
# systemd restart): its instances come back to it.
set -uo pipefail
MEALY=$1
C=${MLY_TEST_PG:?"!!! FAIL: MLY_TEST_PG is not set: this PostgreSQL suite DID NOT RUN"}
fails=0 checks=0
check() { # name, command...
  checks=$((checks + 1))
  if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
}
psqlq() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$C dbname=mly_fo" -c "$1"; }
has() { grep -q -- "$1" <<<"$2"; }
poll() { # tries, command...: until it succeeds (0.1 s apart)
  local n=$1; shift
  for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}
T=$(mktemp -d)
A="" B=""
trap 'kill -9 $A $B 2>/dev/null; rm -rf "$T"' EXIT
psql -X -q "$C" -c "DROP DATABASE IF EXISTS mly_fo WITH (FORCE)" >/dev/null 2>&1
psql -X -q "$C" -c "CREATE DATABASE mly_fo" >/dev/null
"$MEALY" store init --store "$C dbname=mly_fo" >/dev/null
cat >"$T/door.yaml" <<'YAML'
state_machines:
- name: door
  states:
  - name: closed
    initial: true
    wait: {events: [open]}
    transitions:
    - {event: open, to: opened}
  - name: opened
    wait: {events: [close]}
    transitions:
    - {event: close, to: shut}
  - {name: shut, final: true}
YAML
host() { # name: starts a host on socket $T/name.sock (its pid: $!)
  "$MEALY" fsm run "$T/door.yaml" --store "$C dbname=mly_fo" --lease 1000 \
    -s "$T/$1.sock" >/dev/null 2>>"$T/$1.err" &
}
on() { local h=$1; shift; "$MEALY" fsm "$@" -s "$T/$h.sock"; }
shows() { on "$1" show "$2" 2>/dev/null | grep -q -- "$3"; }

host a; A=$!
check "host a up" poll 300 on a ls
host b; B=$!
check "host b up beside it" poll 300 on b ls
for d in d1 d2 d3; do
  out=$(on a start door --name $d 2>&1); check "a starts $d" test "$out" = $d
done
out=$(on a send d1 open 2>&1); check "a: d1 opened" has ok "$out"
out=$(on b start door --name e1 2>&1); check "b starts e1 too" test "$out" = e1
out=$(on b send e1 open 2>&1); check "b: e1 opened" has ok "$out"
check "both stores still run" test "$(grep -c 'store stops' "$T/a.err" "$T/b.err" | awk -F: '{s+=$2} END {print s}')" = 0
check "two hosts hold leases" test "$(psqlq "SELECT count(*) FROM mealy.nodes WHERE lease_until > clock_timestamp()")" = 2
check "4 door rows" test "$(psqlq "SELECT count(*) FROM mealy.instances WHERE name IS NOT NULL")" = 4

kill -9 "$A"; wait "$A" 2>/dev/null; A=""
check "b takes d1 over, opened" poll 300 shows b d1 opened
check "and d2, closed" poll 100 shows b d2 closed
out=$(on b send d1 close 2>&1); check "d1 takes close through b" has ok "$out"
out=$(on b send d2 open 2>&1); check "d2 takes open through b" has ok "$out"
check "d1 ended: its row is gone" poll 100 test "$(psqlq "SELECT count(*) FROM mealy.instances WHERE name = 'd1'")" = 0
check "all of a's are b's" test "$(psqlq "SELECT count(DISTINCT owner) FROM mealy.instances WHERE name IS NOT NULL")" = 1

# a restarted at once (within b's lease), then b killed: a takes b's
host a; A=$!
check "host a up again" poll 300 on a ls
out=$(on a start door --name d4 2>&1); check "a starts d4" test "$out" = d4
kill -9 "$B"; wait "$B" 2>/dev/null; B=""
check "a takes d2 over, opened" poll 300 shows a d2 opened
check "and e1, opened" poll 100 shows a e1 opened
out=$(on a send e1 close 2>&1); check "e1 takes close through a" has ok "$out"
check "no store stopped" test "$(cat "$T/a.err" "$T/b.err" | grep -c 'store stops')" = 0
kill -9 "$A"; wait "$A" 2>/dev/null; A=""
# the only host killed and started again at once (within its lease):
# its own instances come back to it once the old lease ran out
host a; A=$!
check "host a up at once" poll 300 on a ls
check "it gets d4 back" poll 300 shows a d4 closed
check "and d2" poll 100 shows a d2 opened
out=$(on a send d4 open 2>&1); check "d4 takes open" has ok "$out"
check "no store stopped" test "$(cat "$T/a.err" "$T/b.err" | grep -c 'store stops')" = 0
kill -TERM "$A"; wait "$A"; check "a stops cleanly" test $? = 0; A=""

echo "$((checks - fails))/$checks checks passed"
if [ $fails -gt 0 ]; then
  echo "--- a.err"; cat "$T/a.err"; echo "--- b.err"; cat "$T/b.err"
  exit 1
fi
