#!/usr/bin/env bash
# Integration: `mealy queue ...` against a running `mealy fsm run` whose
# file declares queues: and schedules:.  Listing (table and --json), show,
# pause/resume (durable: still paused after the host restarts), purge,
# the errors of add/retry/delete, a schedule starting a machine, --help of each subcommand, and a file
# with mistakes in queues:/schedules: refused with FILE:LINE:COL.
#
# No check measures a duration: waits are bounded polls.
#
# usage: test_queue_cli.sh PATH/TO/mealy
set -u
mealy=$(readlink -f "$1")
py=/usr/bin/python3

fail=0
# ok, bad, check, poll, gone, private_tmp
# shellcheck source=proc_helpers.sh
source "$(dirname "${BASH_SOURCE[0]}")/proc_helpers.sh"
private_tmp mealy-qcli

cat >"$T/q.yaml" <<'YAML'
queues:
- name: mail
  max_concurrent: 4
  rate: 10
  bucket_size: 20
  concurrency_key: customer
  concurrency_limit: 2
YAML
chmod 600 "$T/q.yaml"
S=$T/q.sock
q() { "$mealy" queue "$@" -s "$S"; }

start_host() {
  "$mealy" fsm run "$T/q.yaml" --state-dir "$T/state" -s "$S" \
    2>"$T/host.err" &
  HOST=$!
  poll 300 q ls >/dev/null 2>&1
}
stop_host() {
  kill -TERM "$HOST" 2>/dev/null
  poll 300 gone "$HOST"
  wait "$HOST" 2>/dev/null
  HOST=""
}
# jq-like: json FILE EXPR (python; j is the value)
json() { "$py" -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

start_host
check "ls lists default and mail" bash -c "q() { \"$mealy\" queue \"\$@\" -s \"$S\"; }; q ls | grep -q '^mail ' && q ls | grep -q '^default '"
q ls --json >"$T/ls.json"
check "ls --json: mail's limits" test "$(json "$T/ls.json" \
  "[(x['max_concurrent'], float(x['rate']), x['bucket_size'], x['concurrency_key'], x['concurrency_limit']) for x in j if x['name']=='mail'][0]")" \
  = "(4, 10.0, 20, 'customer', 2)"
check "pause" test "$(q pause mail)" = ok
q show mail --json >"$T/show.json"
check "show --json: paused, no tasks" test "$(json "$T/show.json" \
  "(j['paused'], j['tasks'])")" = "(True, [])"
stop_host
start_host
q show mail --json >"$T/show2.json"
check "paused after a restart" test "$(json "$T/show2.json" "j['paused']")" = True
check "resume" test "$(q resume mail)" = ok
q show mail --json >"$T/show3.json"
check "resumed" test "$(json "$T/show3.json" "j['paused']")" = False
check "purge of an empty queue" test "$(q purge mail)" = "0 deleted"
out=$(q add mail nothing 2>&1); rc=$?
check "add of an unknown function: exit 1" test "$rc" = 1
check "add says why" grep -q "no function 'nothing'" <<<"$out"
out=$(q retry 999999 2>&1); rc=$?
check "retry of no task: exit 1, said" bash -c "[ $rc = 1 ] && grep -q 'no such task' <<<\"\$0\"" "$out"
out=$(q delete 999999 2>&1); rc=$?
check "delete of no task: exit 1" test "$rc" = 1
out=$(q show nosuch 2>&1); rc=$?
check "show of no queue: exit 1, said" bash -c "[ $rc = 1 ] && grep -q \"no such queue 'nosuch'\" <<<\"\$0\"" "$out"
out=$(q retry abc 2>&1); rc=$?
check "retry abc: exit 2" test "$rc" = 2
for sub in ls show add retry delete purge pause resume; do
  check "$sub --help" bash -c "\"$mealy\" queue $sub --help | head -1 | grep -q '^usage: mealy queue $sub'"
done
"$mealy" queue frobnicate >/dev/null 2>&1; rc=$?
check "unknown subcommand: exit 2" test "$rc" = 2
stop_host

# a schedule that starts a machine (the host's starter): every second,
# each tick one instance named run:QUEUE:TASK-ID, its payload its context
cat >"$T/m.yaml" <<'YAML'
state_machines:
- name: ticker
  states:
  - name: start
    initial: true
    wait: {events: [go]}
    transitions:
    - {event: go, to: done}
  - name: done
    final: true
schedules:
- name: each-second
  every: 1s
  machine: ticker
  payload: {from: schedule}
YAML
chmod 600 "$T/m.yaml"
"$mealy" fsm run "$T/m.yaml" --state-dir "$T/state3" -s "$S" \
  2>"$T/host3.err" &
HOST=$!
ticks() { "$mealy" fsm ls --machine ticker --json -s "$S" 2>/dev/null |
  "$py" -c "import json,sys; print(len(json.load(sys.stdin)))" 2>/dev/null; }
poll 600 bash -c "[ \"\$(\"$mealy\" fsm ls --machine ticker -s \"$S\" 2>/dev/null | grep -c '^run:default:')\" -ge 2 ]"
check "ticks start the machine, one instance a tick" test "$(ticks)" -ge 2
name=$("$mealy" fsm ls --machine ticker -s "$S" | grep -m1 -o '^run:default:[0-9]*')
"$mealy" fsm show "$name" --json -s "$S" >"$T/inst.json"
check "the payload is its context" test "$(json "$T/inst.json" "j['context']['from']")" = schedule
stop_host

# mistakes in the sections: refused with their positions, all of them
cat >"$T/bad.yaml" <<'YAML'
queues:
- name: mail
  rate: -1
schedules:
- name: s
  cron: 0 3 * 13 *
  machine: f
YAML
chmod 600 "$T/bad.yaml"
"$mealy" fsm run "$T/bad.yaml" --state-dir "$T/state2" -s "$T/b.sock" \
  2>"$T/bad.err"; rc=$?
check "a bad file: exit 1" test "$rc" = 1
check "rate's position" grep -q "bad.yaml:3:9: rate" "$T/bad.err"
check "the cron field's position" grep -q "bad.yaml:6:15: cron" "$T/bad.err"

exit $fail
