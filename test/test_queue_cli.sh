#!/usr/bin/env bash
# Integration: `mealy queue ...` against a running `mealy fsm run` whose
# file declares queues: and schedules:.  Listing (table and --json), show,
# pause/resume (durable: still paused after the host restarts), purge,
# the errors of add/retry/delete, a schedule starting a machine, --help of each subcommand, and a file
# with mistakes in queues:/schedules: refused with FILE:LINE:COL, deferred
# calls to functions an --actions library registered.
#
# No check measures a duration: waits are bounded polls.
#
# usage: test_queue_cli.sh PATH/TO/mealy PATH/TO/queue_test_functions.so
set -u
mealy=$(readlink -f "$1")
lib=$(readlink -f "$2") # an --actions library registering task functions
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

# a machine's queue: must be declared (in any file of the load, or the
# default queue): an unknown one refused at its position
cat >"$T/mq.yaml" <<'YAML'
state_machines:
- name: m
  queue: mial
  states:
  - name: a
    initial: true
    wait: {events: [go]}
    transitions:
    - {event: go, to: b, queue: default}
  - {name: b, final: true}
YAML
chmod 600 "$T/mq.yaml"
"$mealy" fsm run "$T/mq.yaml" "$T/q.yaml" --state-dir "$T/state6" \
  -s "$T/m.sock" 2>"$T/mq.err"; rc=$?
check "a machine naming an undeclared queue: exit 1" test "$rc" = 1
check "... at its position" grep -q "mq.yaml:3:10: queue 'mial' is not declared" "$T/mq.err"
sed -i 's/queue: mial/queue: mail/' "$T/mq.yaml"
"$mealy" fsm run "$T/mq.yaml" "$T/q.yaml" --state-dir "$T/state6" \
  -s "$T/m.sock" 2>"$T/mq2.err" &
HOST=$!
poll 300 "$mealy" queue ls -s "$T/m.sock" >/dev/null 2>&1
check "declared in another file of the load: it runs" "$mealy" queue ls -s "$T/m.sock"
kill -TERM "$HOST"; poll 300 gone "$HOST"; wait "$HOST" 2>/dev/null; HOST=""

# deferred calls through a host started with --actions LIB.so whose
# mly_actions_init registers task functions (mly_defer_register): added
# by `mealy queue add`, each runs once with its payload, on the loop or
# on the threadpool; a name is "already done" after; a permanent
# failure is a dead letter that retry runs again
export MEALY_QTEST_LOG=$T/calls.log
start_lib_host() {
  "$mealy" fsm run "$T/q.yaml" --state-dir "$T/state4" -s "$S" \
    --actions "$lib" 2>"$T/host4.err" &
  HOST=$!
  poll 300 q ls >/dev/null 2>&1
}
calls() { grep -c -- "$1" "$MEALY_QTEST_LOG" 2>/dev/null; }
start_lib_host
id=$(q add mail record --name first customer=acme n:=5); rc=$?
check "add of a registered function: its id" bash -c "[ $rc = 0 ] && [[ '$id' =~ ^[0-9]+\$ ]]"
poll 300 bash -c "[ \"\$(grep -c 'record mail first customer=acme n=5 attempt=1' \"$MEALY_QTEST_LOG\" 2>/dev/null)\" = 1 ]"
check "it ran once, with its payload" test "$(calls 'record mail first customer=acme n=5 attempt=1')" = 1
q add default record_blocking customer=zed n:=7 >/dev/null
poll 300 bash -c "grep -q 'record_blocking default - customer=zed n=7 attempt=1' \"$MEALY_QTEST_LOG\""
check "a blocking function ran (threadpool)" test "$(calls 'record_blocking default - customer=zed n=7')" = 1
out=$(q add mail record --name first customer=acme n:=5 2>&1); rc=$?
check "the name again: exit 1, already done" bash -c "[ $rc = 1 ] && grep -q 'already done' <<<\"\$0\"" "$out"
dead=$(q add mail fail_for_good --name doomed)
dead_state() { q show mail --json | "$py" -c "import json,sys; print([(t['state'], t['attempts']) for t in json.load(sys.stdin)['tasks'] if t['id']==$dead])"; }
poll 300 bash -c "[ \"\$(\"$mealy\" queue show mail --json -s \"$S\" | \"$py\" -c \"import json,sys; print([t['state'] for t in json.load(sys.stdin)['tasks'] if t['id']==$dead])\")\" = \"['dead']\" ]"
check "a permanent failure is a dead letter" test "$(dead_state)" = "[('dead', 1)]"
check "retry of it" test "$(q retry "$dead")" = ok
poll 300 bash -c "[ \"\$(\"$mealy\" queue show mail --json -s \"$S\" | \"$py\" -c \"import json,sys; print([t['attempts'] for t in json.load(sys.stdin)['tasks'] if t['id']==$dead])\")\" = \"[2]\" ]"
check "it ran again and is dead again" test "$(dead_state)" = "[('dead', 2)]"
stop_host
start_lib_host
q ls >/dev/null
check "after a restart nothing ran again" test "$(calls 'record mail first')" = 1
stop_host

# offline over the state directory (--state-dir, no socket): ls and show
# read it also while a host runs (and say so, pointing to the socket);
# the changes are refused then, and made when no host holds it, as the
# host would make them: a host started afterwards finds them
D=$T/state5
qd() { "$mealy" queue "$@" --state-dir "$D"; }
start_host5() {
  "$mealy" fsm run "$T/q.yaml" --state-dir "$D" -s "$S" --actions "$lib" \
    2>"$T/host5.err" &
  HOST=$!
  poll 300 q ls >/dev/null 2>&1
}
tasks_of() { # DIR-or-socket args...: [(name, state, attempts)] of mail
  "$mealy" queue show mail --json "$@" | "$py" -c "import json,sys; print(sorted((t['name'], t['state'], t['attempts']) for t in json.load(sys.stdin)['tasks']))"
}
start_host5
q add mail fail_for_good --name dd >"$T/dd.id"
poll 300 bash -c "[ \"\$(\"$mealy\" queue show mail --json -s \"$S\" | \"$py\" -c \"import json,sys; print([t['state'] for t in json.load(sys.stdin)['tasks']])\")\" = \"['dead']\" ]"
q pause mail >/dev/null
q add mail record --name x2 customer=later n:=2 >"$T/x2.id"
qd ls >"$T/off-ls.out" 2>"$T/off-ls.err"; rc=$?
check "offline ls beside a host: exit 0" test "$rc" = 0
check "offline ls: mail's rows" grep -qE '^mail +0 +1 +0 +1 yes +- +- +- +-$' "$T/off-ls.out"
check "offline ls says a host holds it, and where to ask" bash -c "grep -q 'in use by process $HOST' '$T/off-ls.err' && grep -q 'control socket' '$T/off-ls.err'"
check "offline show beside a host" test "$(tasks_of --state-dir "$D" 2>/dev/null)" = "[('dd', 'dead', 1), ('x2', 'waiting', 0)]"
for c in "pause mail" "resume mail" "add mail record --name no" "retry $(cat "$T/dd.id")" "delete $(cat "$T/x2.id")" "purge mail"; do
  # shellcheck disable=SC2086
  out=$(qd $c 2>&1); rc=$?
  check "offline $c refused while the host runs" bash -c "[ $rc = 1 ] && grep -q 'nothing was changed' <<<\"\$0\" && grep -q -- '-s SOCKET' <<<\"\$0\"" "$out"
done
check "nothing changed under the host" test "$(tasks_of -s "$S")" = "[('dd', 'dead', 1), ('x2', 'waiting', 0)]"
stop_host
qd ls --json >"$T/off.json"
check "offline ls --json: paused, counts, no limits" test "$(json "$T/off.json" "[(x['paused'], x['waiting'], x['dead'], 'max_concurrent' in x) for x in j if x['name']=='mail'][0]")" = "(True, 1, 1, False)"
id3=$(qd add mail record --name x3 customer=off n:=9); rc=$?
check "offline add: its id" bash -c "[ $rc = 0 ] && [[ '$id3' =~ ^[0-9]+\$ ]]"
out=$(qd add mail record --name x3 2>&1); rc=$?
check "offline add of a queued name: already queued" bash -c "[ $rc = 1 ] && grep -q 'already queued' <<<\"\$0\"" "$out"
check "offline retry of the dead letter" test "$(qd retry "$(cat "$T/dd.id")")" = ok
check "offline delete" test "$(qd delete "$(cat "$T/x2.id")")" = ok
out=$(qd delete "$(cat "$T/x2.id")" 2>&1); rc=$?
check "offline delete again: no such task" bash -c "[ $rc = 1 ] && grep -q 'no such task' <<<\"\$0\"" "$out"
out=$(qd show nosuch 2>&1); rc=$?
check "offline show of no queue: exit 1" bash -c "[ $rc = 1 ] && grep -q \"no queue 'nosuch'\" <<<\"\$0\"" "$out"
check "offline: the tasks as changed" test "$(tasks_of --state-dir "$D")" = "[('dd', 'waiting', 1), ('x3', 'waiting', 0)]"
check "offline resume" test "$(qd resume mail)" = ok
check "offline: resumed" test "$(qd ls --json | "$py" -c "import json,sys; print([x['paused'] for x in json.load(sys.stdin) if x['name']=='mail'])")" = "[False]"
start_host5
poll 300 bash -c "grep -q 'record mail x3 customer=off n=9 attempt=1' \"$MEALY_QTEST_LOG\""
check "the host ran the task added offline, with its payload" test "$(calls 'record mail x3 customer=off n=9')" = 1
poll 300 bash -c "[ \"\$(\"$mealy\" queue show mail --json -s \"$S\" | \"$py\" -c \"import json,sys; print([t['attempts'] for t in json.load(sys.stdin)['tasks']])\")\" = \"[2]\" ]"
check "the host ran the retried dead letter again" test "$(tasks_of -s "$S")" = "[('dd', 'dead', 2)]"
check "the task deleted offline never ran" test "$(calls 'record mail x2')" = 0
stop_host
check "offline purge" test "$(qd purge mail)" = "1 deleted"
check "offline pause of default" test "$(qd pause default)" = ok
start_host5
check "the host finds default paused" test "$(q ls --json | "$py" -c "import json,sys; print([(x['paused'], x['dead']) for x in json.load(sys.stdin) if x['name'] in ('default', 'mail')])")" = "[(True, 0), (False, 0)]"
stop_host
out=$("$mealy" queue ls --state-dir "$D" -s "$S" 2>&1); rc=$?
check "--state-dir with -s: exit 2" test "$rc" = 2

# --- findings of a newcomer test ---
# a refused schedule name after another schedule: exit 1 and the error,
# no SIGSEGV (the duplicate check compared the refused NULL name)
for nm in '"a@b"' 'f/x'; do
  printf 'schedules:\n- {name: h, every: 5s, function: f}\n- {name: %s, every: 5s, function: f}\n' "$nm" >"$T/r.yaml"
  chmod 600 "$T/r.yaml"
  "$mealy" fsm run "$T/r.yaml" --state-dir "$T/st-r" -s "$T/r.sock" 2>"$T/r.err"; rc=$?
  check "schedule name $nm refused: exit 1, no crash" test "$rc" = 1
  check "... at 3:10" grep -q "r.yaml:3:10: schedule name" "$T/r.err"
done
# what a schedule names is checked at load, every one at FILE:LINE:COL
# (run and validate alike): undeclared queue, unknown machine, priority
# out of range, unregistered function; a bad queue name at its place
cat >"$T/refs.yaml" <<'YAML'
state_machines:
- name: m
  states:
  - {name: a, initial: true, wait: {events: [go]}, transitions: [{event: go, to: b}]}
  - {name: b, final: true}
queues:
- {name: "a@b"}
- {name: q3, priority: 3}
schedules:
- {name: s1, every: 5s, function: record, queue: nosuch}
- {name: s2, every: 5s, machine: nosuch}
- {name: s3, every: 5s, function: record, queue: q3, priority: 3}
- {name: s4, every: 5s, function: nope}
YAML
chmod 600 "$T/refs.yaml"
refs_want="refs.yaml:7:10: queue name 'a@b'
refs.yaml:10:50: schedule 's1': queue 'nosuch' is not declared
refs.yaml:11:34: schedule 's2': machine 'nosuch' is not defined
refs.yaml:12:64: schedule 's3': priority 3 is outside queue 'q3'
refs.yaml:13:35: schedule 's4': function 'nope' is not registered"
has_all() { # FILE: every line of $refs_want in it
  while IFS= read -r w; do grep -qF "$w" "$1" || { echo "missing: $w"; return 1; }; done <<<"$refs_want"
}
"$mealy" fsm run "$T/refs.yaml" --actions "$lib" --state-dir "$T/st-refs" \
  -s "$T/refs.sock" 2>"$T/refs-run.err"; rc=$?
check "run: schedule references refused at load: exit 1" test "$rc" = 1
check "run: every one at its FILE:LINE:COL" has_all "$T/refs-run.err"
"$mealy" fsm validate --actions "$lib" "$T/refs.yaml" 2>"$T/refs-val.err"; rc=$?
check "validate --actions: the same errors, exit 1" bash -c "[ $rc = 1 ] && diff <(grep '^$T' '$T/refs-run.err' | sed 's|.*/||') <(grep '^$T' '$T/refs-val.err' | sed 's|.*/||')"
check "validate --actions: every one" has_all "$T/refs-val.err"
# validate reads queues:/schedules: and a machine's queue: as run does;
# a library registering deferred functions loads in validate
cat >"$T/vq.yaml" <<'YAML'
state_machines:
- name: m
  queue: mail
  states:
  - {name: a, initial: true, wait: {events: [go]}, transitions: [{event: go, to: b}]}
  - {name: b, final: true}
queues:
- {name: mail, max_concurrent: 1}
schedules:
- {name: t, every: 5s, function: record, queue: mail}
YAML
chmod 600 "$T/vq.yaml"
out=$("$mealy" fsm validate "$T/vq.yaml" 2>&1); rc=$?
check "validate: queues: and schedules: accepted" bash -c "[ $rc = 0 ] && grep -q '^ok: 1 machine' <<<\"\$0\"" "$out"
out=$("$mealy" fsm validate --actions "$lib" "$T/vq.yaml" 2>&1); rc=$?
check "validate --actions of a library that calls mly_defer_register" bash -c "[ $rc = 0 ] && grep -q 'every action name is registered' <<<\"\$0\"" "$out"
out=$("$mealy" fsm dot "$T/vq.yaml" 2>&1); rc=$?
check "fsm dot of a file with queues: and schedules: (was: not supported)" bash -c "[ $rc = 0 ] && grep -q '^digraph ' <<<\"\$0\"" "$out"
sed 's/queue: mail$/queue: fromlib/' "$T/vq.yaml" >"$T/vq3.yaml"; chmod 600 "$T/vq3.yaml"
out=$("$mealy" fsm validate --actions "$lib" "$T/vq3.yaml" 2>&1); rc=$?
check "validate --actions: a queue the library declares (mly_queue_declare) is known" bash -c "[ $rc = 0 ] && grep -q '^ok: 1 machine' <<<\"\$0\"" "$out"
sed 's/queue: mail$/queue: nosuch/' "$T/vq.yaml" >"$T/vq2.yaml"; chmod 600 "$T/vq2.yaml"
out=$("$mealy" fsm validate "$T/vq2.yaml" 2>&1); rc=$?
check "validate: a machine's queue: nosuch at 3:10" bash -c "[ $rc = 1 ] && grep -q \"vq2.yaml:3:10: queue 'nosuch' is not declared\" <<<\"\$0\"" "$out"

# a dispatch waiting for a slot: fsm show says which queue (text and
# --json), queue ls counts it in STEPSWAIT as --json's steps_waiting
cat >"$T/slot.yaml" <<'YAML'
state_machines:
- name: sm
  queue: one
  states:
  - {name: a, initial: true, action: {exec: [/bin/true]}, transitions: [{event: e, to: b}]}
  - {name: b, final: true}
queues:
- {name: one, max_concurrent: 1, paused: true}
YAML
chmod 600 "$T/slot.yaml"
"$mealy" fsm run "$T/slot.yaml" --state-dir "$T/st-slot" -s "$S" 2>"$T/slot.err" &
HOST=$!
poll 300 q ls >/dev/null 2>&1
"$mealy" fsm start sm --name s1 -s "$S" >/dev/null
"$mealy" fsm start sm --name s2 -s "$S" >/dev/null
poll 300 bash -c "\"$mealy\" fsm show s2 --json -s \"$S\" | grep -q '\"awaits_queue\": *\"one\"'"
"$mealy" fsm show s1 --json -s "$S" >"$T/s1.json"
check "fsm show --json: awaits_queue one" test "$(json "$T/s1.json" "j['awaits_queue']")" = one
check "fsm show: awaits_queue one" bash -c "\"$mealy\" fsm show s1 -s \"$S\" | grep -q '^awaits_queue one'"
check "queue ls: STEPSWAIT 2, STEPSRUN 0" bash -c "\"$mealy\" queue ls -s \"$S\" | grep -qE '^one +0 +0 +0 +0 yes .* 2 +0\$'"
check "queue ls --json: steps_waiting 2" test "$(q ls --json | "$py" -c "import json,sys; print([x['steps_waiting'] for x in json.load(sys.stdin) if x['name']=='one'])")" = "[2]"
# migrate reads the file as run does: its queues: are no error
out=$("$mealy" fsm migrate --dry-run "$T/slot.yaml" -s "$S" 2>&1); rc=$?
check "fsm migrate of a file with queues: (was: not supported)" bash -c "[ $rc = 0 ] && ! grep -q 'not supported' <<<\"\$0\"" "$out"
stop_host

# add's refusals say which thing is wrong; a deleted name says deleted;
# a task added offline to a queue the host does not declare is listed
# (ls, show, --json: declared false, why), never hidden
mkdir -p "$T/st-u"
out=$("$mealy" queue add nosuchq record --state-dir "$T/st-u" n:=1 2>&1); rc=$?
check "offline add to a queue DIR does not name: accepted, with a note" bash -c "[ $rc = 0 ] && grep -q \"note: no task or pause in .* names queue 'nosuchq'\" <<<\"\$0\"" "$out"
long=nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn # 41: past show's 24
"$mealy" queue add nosuchq record --name "$long" --state-dir "$T/st-u" >/dev/null 2>&1
"$mealy" fsm run "$T/q.yaml" --state-dir "$T/st-u" -s "$S" --actions "$lib" 2>"$T/u.err" &
HOST=$!
poll 300 q ls >/dev/null 2>&1
q ls >"$T/u-ls.out" 2>"$T/u-ls.err"
check "host ls lists the undeclared queue with its task" grep -qE '^nosuchq +0 +2 +0 +0 no +- +- +- +-$' "$T/u-ls.out"
check "... and says why it does not run" grep -q "note: queue nosuchq: not declared in this host" "$T/u-ls.err"
check "ls --json: declared false" test "$(q ls --json | "$py" -c "import json,sys; print([(x['declared'], x['waiting']) for x in json.load(sys.stdin) if x['name']=='nosuchq'])")" = "[(False, 2)]"
check "show of it lists the task" test "$(q show nosuchq --json | "$py" -c "import json,sys; j=json.load(sys.stdin); print((j['declared'], [t['runs'] for t in j['tasks']]))")" = "(False, ['record', 'record'])"
# ids of 10+ digits (slot << 32) and a 41-byte name keep show's columns
# aligned
q show nosuchq >"$T/u-show.out" 2>/dev/null
check "show: the NAME column where its header is, whatever the id's width" \
  "$py" -c 'import sys
lines = open(sys.argv[1]).read().splitlines()
h = [l for l in lines if l.startswith("ID ")][0]
rows = lines[lines.index(h) + 1:]
assert rows and all(len(r.split()[0]) >= 10 for r in rows), rows
assert all(r[h.index("NAME")] != " " and r[h.index("NAME") - 1] == " " for r in rows), (h, rows)
assert all(r[h.index("RUNS"):].startswith("record") for r in rows), (h, rows)
assert all(r[h.index("STATE"):].startswith("waiting") for r in rows), (h, rows)' "$T/u-show.out"
out=$(q add jobs nosuchfn 2>&1)
check "online add: no queue (said alone)" bash -c "grep -q \"no queue 'jobs' in this host\" <<<\"\$0\" && ! grep -q nosuchfn <<<\"\$0\"" "$out"
out=$(q add mail nosuchfn 2>&1)
check "online add: no function (said alone)" bash -c "grep -q \"no function 'nosuchfn' registered\" <<<\"\$0\" && ! grep -q 'no queue' <<<\"\$0\"" "$out"
for n in "a/b:has a '/'" ":is empty" $'a\nb:control character' "a b:a space"; do
  out=$(q add mail record --name "${n%%:*}" 2>&1); rc=$?
  check "name '${n%%:*}': exit 1, says ${n#*:}" bash -c "[ $rc = 1 ] && grep -q \"\$1\" <<<\"\$0\"" "$out" "${n#*:}"
done
id=$(q add mail fail_for_good --name gone)
poll 300 bash -c "\"$mealy\" queue delete $id -s \"$S\" >/dev/null 2>&1"
out=$(q add mail record --name gone 2>&1); rc=$?
check "a deleted name: exit 1, was deleted (not done)" bash -c "[ $rc = 1 ] && grep -q \"task 'gone' was deleted\" <<<\"\$0\" && ! grep -q done <<<\"\$0\"" "$out"
stop_host
out=$("$mealy" queue add mail record --name gone --state-dir "$T/st-u" 2>&1); rc=$?
check "offline: the same sentence for the deleted name" bash -c "[ $rc = 1 ] && grep -q \"task 'gone' was deleted\" <<<\"\$0\"" "$out"
out=$("$mealy" queue add mail record --name a/b --state-dir "$T/st-u" 2>&1); rc=$?
check "offline: the same sentence for a bad name" bash -c "[ $rc = 1 ] && grep -q \"task name 'a/b': it has a '/'\" <<<\"\$0\"" "$out"

exit $fail
