#!/usr/bin/env bash
# mealy fsm run --store CONNINFO against a private cluster (MLY_TEST_PG, set
# by with_cluster.sh): a YAML instance started and sent an event lives in
# the database; the host stopped (SIGTERM) and started again finds it in
# the state it reached; --store with --state-dir, or --lease without
# --store, is bad usage.  store: in a file does what --store does;
# --store or --state-dir on the command line wins over it; its mistakes
# are load errors at their place, never quoting the password; a server
# gone past the give-up time stops the host (exit 1).  `fsm start`
# answers only once the create committed: it waits out an outage, and
# fails past the give-up time.
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

# store: in the file instead of --store (the map shape, a lease of 8 s:
# longer than the give-up time below, so the store gives up first)
cat >"$T/store.yaml" <<YAML
store:
  postgresql: "$C dbname=mly_fsm"
  lease: 8s
  give_up: 1500ms
YAML
"$MEALY" fsm run "$T/door.yaml" "$T/store.yaml" -s "$S" 2>"$T/host.err" &
HOST=$!
poll 300 f ls >/dev/null 2>&1
out=$(f start door --name y1 2>&1); check "store: in YAML: start y1" has y1 "$out"
check "y1 is a row" test "$(psqlq "SELECT count(*) FROM mealy.instances WHERE name = 'y1'")" = 1
check "store: lease 8s is the node's" test "$(psqlq "SELECT count(*) FROM mealy.nodes WHERE lease_until > clock_timestamp() + interval '4 s' AND lease_until < clock_timestamp() + interval '8.5 s'")" = 1
stop_host; check "host on store: stops cleanly" test $? = 0
check "store: the host says where its state is" grep -q "state in the PostgreSQL store" "$T/host.err"

# --store on the command line wins over store: (which names a database
# that does not exist), and says so
cat >"$T/other.yaml" <<YAML
store: "$C dbname=mly_nosuchdb"
YAML
"$MEALY" fsm run "$T/door.yaml" "$T/other.yaml" --store "$C dbname=mly_fsm" \
  -s "$S" 2>"$T/host.err" &
HOST=$!
poll 300 f ls >/dev/null 2>&1
out=$(f show y1 2>&1); check "--store wins: y1 is there" has closed "$out"
stop_host
check "--store wins: said" grep -q "other.yaml:1: store: is not used: --store given" "$T/host.err"
# and --state-dir wins too: a journal
"$MEALY" fsm run "$T/door.yaml" "$T/other.yaml" --state-dir "$T/jdir" \
  -s "$S" 2>"$T/host.err" &
HOST=$!
poll 300 f ls >/dev/null 2>&1
out=$(f show y1 2>&1); check "--state-dir wins: no y1 there" test -z "$(grep closed <<<"$out")"
stop_host
check "--state-dir wins: a journal" test -d "$T/jdir"
# a mistake in store: is a load error at its place; the password is not said
cat >"$T/bad.yaml" <<'YAML'
store:
  postgresql: "password=pw0rdXYZ pw0rdXYZ"
  lease: 20ms
YAML
"$MEALY" fsm run "$T/door.yaml" "$T/bad.yaml" -s "$S" 2>"$T/bad.err"
check "bad store: exits 1" test $? = 1
check "bad store: conninfo at 2:15" grep -q "bad.yaml:2:15: postgresql: not a libpq" "$T/bad.err"
check "bad store: lease at 3:10" grep -q "bad.yaml:3:10: lease: from 100ms" "$T/bad.err"
check "bad store: no password said" test -z "$(grep pw0rdXYZ "$T/bad.err")"
out=$("$MEALY" fsm validate "$T/door.yaml" "$T/store.yaml" 2>&1)
check "validate reads store:" test $? = 0
# neither: usage
env -u MEALY_STORE "$MEALY" fsm run "$T/door.yaml" -s "$S" >/dev/null 2>"$T/none.err"
check "no store at all: usage (2)" test $? = 2
check "no store at all: says so" grep -q "(or store: in a file)" "$T/none.err"

# mealy queue ls|show --store: every process's tasks from the database,
# read only (no node registered, nothing taken); the changes refused
cat >"$T/qs.yaml" <<'YAML'
queues:
- name: mail
schedules:
- name: tick
  every: 1s
  queue: mail
  machine: door
YAML
"$MEALY" fsm run "$T/door.yaml" "$T/qs.yaml" "$T/store.yaml" -s "$S" 2>"$T/host.err" &
HOST=$!
poll 300 f ls >/dev/null 2>&1
out=$("$MEALY" queue pause mail -s "$S" 2>&1); check "queue pause mail (host)" test $? = 0
qls() { "$MEALY" queue ls --store "$C dbname=mly_fsm password=pw0rdXYZ" --json 2>&1; }
waiting() { grep -q '"name":"mail","paused":true,"scheduled":[0-9]*,"waiting":[1-9]' <<<"$(qls)"; }
poll 300 waiting
check "queue ls --store: mail paused with tasks waiting" waiting
nodes=$(psqlq "SELECT count(*) FROM mealy.nodes")
out=$("$MEALY" queue show mail --store "$C dbname=mly_fsm" 2>&1)
check "queue show --store: the tasks, run door" has door "$out"
check "queue show --store: waiting" has waiting "$out"
check "queue --store registered no node" test "$(psqlq "SELECT count(*) FROM mealy.nodes")" = "$nodes"
check "queue --store: the password is not said" test -z "$(qls | grep pw0rdXYZ)"
out=$("$MEALY" queue show nosuch --store "$C dbname=mly_fsm" 2>&1)
check "queue show --store: an unknown queue" has "no queue 'nosuch' in the PostgreSQL store" "$out"
for sub in "retry 1" "delete 1" "purge mail" "resume mail" "pause mail"; do
  # shellcheck disable=SC2086
  out=$("$MEALY" queue $sub --store "$C dbname=mly_fsm" 2>&1); rc=$?
  check "queue $sub --store: refused (1)" test $rc = 1
  check "queue $sub --store: says how" has "make the change through a running host" "$out"
done
out=$("$MEALY" queue ls --store "$C dbname=mly_nosuchdb password=pw0rdXYZ" 2>&1); rc=$?
check "queue ls --store, no such database: 1" test $rc = 1
check "queue ls --store, no such database: said" has "cannot connect" "$out"
check "queue ls --store, no such database: no password" test -z "$(grep pw0rdXYZ <<<"$out")"
"$MEALY" queue ls --store "$C" --state-dir "$T/jdir" >/dev/null 2>&1
check "queue --store with --state-dir: usage (2)" test $? = 2
stop_host; check "host with queues on store: stops cleanly" test $? = 0

# the server gone for good: past give_up (1500 ms) the host says why
# and exits 1; the step waiting is not acknowledged
"$MEALY" fsm run "$T/door.yaml" "$T/store.yaml" -s "$S" 2>"$T/host.err" &
HOST=$!
poll 300 f ls >/dev/null 2>&1
out=$(f start door --name g1 2>&1); check "give-up: start g1" has g1 "$out"
bash "$MLY_TEST_PG_CLUSTER" pause "$MLY_TEST_PG_DIR"
f send g1 open >"$T/send.out" 2>&1 &
SEND=$!
wait "$HOST"; rc=$?
HOST=""
check "give-up: the host exits 1" test $rc = 1
check "give-up: it says why" grep -q "no connection to the server for" "$T/host.err"
check "give-up: the store stopped, exit said" grep -q "the store stopped (.*; exiting$" "$T/host.err"
wait "$SEND"; rc=$?
check "give-up: the send was not acknowledged" test $rc != 0
bash "$MLY_TEST_PG_CLUSTER" resume "$MLY_TEST_PG_DIR"
cat "$T/host.err"

# brk #7: `fsm start` answers once the create committed, never before.
# The server away: the answer waits; back, it comes, and the row is
# there (a lease longer than the outage).  Past the give-up time
# instead: start fails, never says the name.  (A database of its own:
# the host that gave up above still holds its rows.)
psql -X -q "$C" -c "DROP DATABASE IF EXISTS mly_fsm2 WITH (FORCE)" >/dev/null 2>&1
psql -X -q "$C" -c "CREATE DATABASE mly_fsm2" >/dev/null
"$MEALY" store init --store "$C dbname=mly_fsm2" >/dev/null
psq2() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$C dbname=mly_fsm2" -c "$1"; }
"$MEALY" fsm run "$T/door.yaml" --store "$C dbname=mly_fsm2" --lease 60000 \
  -s "$S" 2>"$T/host.err" &
HOST=$!
poll 300 f ls >/dev/null 2>&1
bash "$MLY_TEST_PG_CLUSTER" pause "$MLY_TEST_PG_DIR"
f start door --name q2 --timeout 120s >"$T/q2.out" 2>&1 &
Q=$!
sleep 1
check "outage: start has not answered" kill -0 $Q
bash "$MLY_TEST_PG_CLUSTER" resume "$MLY_TEST_PG_DIR"
wait $Q; rc=$?
check "outage: start answers once committed (0)" test $rc = 0
check "outage: and names q2" grep -q q2 "$T/q2.out"
check "outage: q2 is a row" test "$(psq2 "SELECT count(*) FROM mealy.instances WHERE name = 'q2'")" = 1
stop_host
psql -X -q "$C" -c "DROP DATABASE IF EXISTS mly_fsm2 WITH (FORCE)" >/dev/null 2>&1
psql -X -q "$C" -c "CREATE DATABASE mly_fsm2" >/dev/null
"$MEALY" store init --store "$C dbname=mly_fsm2" >/dev/null
"$MEALY" fsm run "$T/door.yaml" --store "$C dbname=mly_fsm2" --lease 60000 \
  --give-up 1500 -s "$S" 2>"$T/host.err" &
HOST=$!
poll 300 f ls >/dev/null 2>&1
bash "$MLY_TEST_PG_CLUSTER" pause "$MLY_TEST_PG_DIR"
out=$(f start door --name q3 --timeout 120s 2>&1); rc=$?
check "give-up: start fails (not 0)" test $rc != 0
check "give-up: start does not say q3 started" test -z "$(grep -v "not started\|unknown" <<<"$out" | grep q3)"
check "give-up: start says why" has "not started\|unknown outcome\|store" "$out"
wait "$HOST"
HOST=""
bash "$MLY_TEST_PG_CLUSTER" resume "$MLY_TEST_PG_DIR"
echo "$((checks - fails)) of $checks checks passed"
[ "$fails" = 0 ]
