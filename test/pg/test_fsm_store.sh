#!/usr/bin/env bash
# mealy fsm run --store CONNINFO against a private cluster (MLY_TEST_PG, set
# by with_cluster.sh): a YAML instance started and sent an event lives in
# the database; the host stopped (SIGTERM) and started again finds it in
# the state it reached; --store with --state-dir, or --lease without
# --store, is bad usage.
set -uo pipefail
MEALY=$1
C=${MLY_TEST_PG:?"!!! FAIL: MLY_TEST_PG is not set: this PostgreSQL suite DID NOT RUN"}
fails=0 checks=0
check() { # name, command...
  checks=$((checks + 1))
  if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
}
psqlq() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$C dbname=mly_fsm" -c "$1"; }
has() { grep -q -- "$1" <<<"$2"; }
poll() { # tries, command...: until it succeeds (0.1 s apart)
  local n=$1; shift
  for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}
T=$(mktemp -d)
trap 'kill $HOST 2>/dev/null; rm -rf "$T"' EXIT
HOST=""
psql -X -q "$C" -c "DROP DATABASE IF EXISTS mly_fsm WITH (FORCE)" >/dev/null 2>&1
psql -X -q "$C" -c "CREATE DATABASE mly_fsm" >/dev/null
"$MEALY" store init --store "$C dbname=mly_fsm" >/dev/null
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
S=$T/f.sock
f() { "$MEALY" fsm "$@" -s "$S"; }
start_host() {
  "$MEALY" fsm run "$T/door.yaml" --store "$C dbname=mly_fsm" --lease 2000 \
    -s "$S" 2>"$T/host.err" &
  HOST=$!
  poll 300 f ls >/dev/null 2>&1
}
stop_host() {
  kill -TERM "$HOST"
  wait "$HOST"
  local rc=$?
  HOST=""
  return $rc
}

"$MEALY" fsm run "$T/door.yaml" --store "$C" --state-dir "$T/st" >/dev/null 2>&1
check "--store with --state-dir: usage (2)" test $? = 2
"$MEALY" fsm run "$T/door.yaml" --state-dir "$T/st" --lease 100 >/dev/null 2>&1
check "--lease without --store: usage (2)" test $? = 2

start_host
check "host up on the store" f ls
out=$(f start door --name d1 2>&1); check "start d1" has d1 "$out"
out=$(f send d1 open 2>&1); check "send open" has ok "$out"
check "d1 is a row" test "$(psqlq "SELECT count(*) FROM mealy.instances WHERE name = 'd1'")" = 1
check "d1's name is taken" test "$(psqlq "SELECT count(*) FROM mealy.names WHERE name = 'd1' AND ended_ms IS NULL")" = 1
stop_host; check "host stops cleanly" test $? = 0
check "the stop gave the lease up" test "$(psqlq "SELECT count(*) FROM mealy.nodes WHERE lease_until > clock_timestamp()")" = 0
start_host
out=$(f show d1 2>&1); check "after a restart d1 is opened" has opened "$out"
out=$(f send d1 close 2>&1); check "and takes the next event" has ok "$out"
check "d1 ended: a tombstone keeps its name" test "$(psqlq "SELECT count(*) FROM mealy.tombstones WHERE name = 'd1'")" = 1
check "d1 ended: its row is gone" test "$(psqlq "SELECT count(*) FROM mealy.instances WHERE name = 'd1'")" = 0
stop_host
cat "$T/host.err"
echo "$((checks - fails)) of $checks checks passed"
[ "$fails" = 0 ]
