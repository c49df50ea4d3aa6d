#!/usr/bin/env bash
# Integration: `mealy fsm run` hosts test/fsm/host_order.yaml with the actions
# of test/fsm/host_actions.c (--actions), and `mealy fsm start|send|ls|show`
# drive it over its socket: contexts as given (strings and typed values),
# the wait state, the event's payload, names taken, errors and exit
# statuses, instances surviving SIGTERM and kill -9 of the host, and the
# checks on the actions library (writable by others, no init function),
# validate --actions, and an instance whose action the restarted host no
# longer registers (it waits, then goes on).
#
# No check measures a duration: waits are bounded polls.  The hosts run
# on the store MLY_TEST_STORE names (store_args, proc_helpers.sh): the
# journal, or PostgreSQL through test/pg/with_cluster.sh (pg-fsm-host).
#
# usage: test_fsm_host.sh PATH/TO/mealy ACTIONS.so NOINIT.so ORDER.yaml
#        [ACTIONS.c INCLUDE-DIR CC] (a library built as the README says)
set -u
mealy=$(readlink -f "$1")
actions_so=$(readlink -f "$2")
noinit_so=$(readlink -f "$3")
order_yaml=$(readlink -f "$4")
actions_c=${5:-}
include_dir=${6:-}
cc_bin=${7:-cc}
py=/usr/bin/python3

fail=0
C=""
# ok, bad, check, poll, gone, private_tmp
# shellcheck source=proc_helpers.sh
source "$(dirname "${BASH_SOURCE[0]}")/proc_helpers.sh"
private_tmp mealy-fsm

cp "$actions_so" "$T/act.so"
chmod 644 "$T/act.so"
cp "$order_yaml" "$T/host_order.yaml"
S=$T/f.sock
f() { "$mealy" fsm "$@" -s "$S"; }
store_args "$mealy" "$T/state"

start_host() { # extra args...
  store_settle
  rm -f "$T/host.err"
  "$mealy" fsm run "$T/host_order.yaml" --actions "$T/act.so" \
    "${STORE_ARGS[@]}" -s "$S" "$@" 2>"$T/host.err" &
  HOST=$!
  poll 300 f ls >/dev/null 2>&1
}
stop_host() { # signal
  kill "-$1" "$HOST" 2>/dev/null
  poll 300 gone "$HOST"
  local rc=0
  wait "$HOST" 2>/dev/null || rc=$?
  HOST=""
  return "$rc"
}
# json FILE EXPR: prints EXPR of the JSON in FILE (python, j the value)
json() { "$py" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
in_state() { # name state
  f ls --json >"$T/ls.json" 2>/dev/null &&
    [ "$(json "$T/ls.json" "[i['state'] for i in j if i['name']=='$1']")" = "['$2']" ]
}
absent() { # name
  f ls --json >"$T/ls.json" 2>/dev/null &&
    [ "$(json "$T/ls.json" "[i for i in j if i['name']=='$1']")" = "[]" ]
}

# ---------------------------------------------------------------------
C="help and usage"
for sub in run start send ls show; do
  "$mealy" fsm "$sub" --help >"$T/out" 2>&1; rc=$?
  check "fsm $sub --help: exit 0, says usage" \
    eval '[ $rc = 0 ] && grep -q "mealy fsm '"$sub"'" "$T/out"'
done
"$mealy" fsm run "$T/host_order.yaml" >"$T/out" 2>&1; rc=$?
check "run without --state-dir: exit 2, says so" \
  eval '[ $rc = 2 ] && grep -q -- "--state-dir DIR or --store CONNINFO is required" "$T/out"'
"$mealy" fsm show -s "$S" >"$T/out" 2>&1; rc=$?
check "show without INSTANCE: exit 2" eval '[ $rc = 2 ]'
"$mealy" fsm start order x:=notanumber -s "$S" >"$T/out" 2>&1; rc=$?
check "start x:=notanumber: exit 2, says what to write" \
  eval '[ $rc = 2 ] && grep -q "a number, true, false or null" "$T/out"'
"$mealy" fsm ls -s "$T/missing.sock" >"$T/out" 2>&1; rc=$?
check "ls without a host: exit 1, cannot connect" \
  eval '[ $rc = 1 ] && grep -q "cannot connect to $T/missing.sock" "$T/out"'

# ---------------------------------------------------------------------
C="the actions library is checked"
cp "$actions_so" "$T/open.so"
chmod 666 "$T/open.so"
"$mealy" fsm run "$T/host_order.yaml" --actions "$T/open.so" \
  --state-dir "$T/st2" -s "$T/x.sock" >"$T/out" 2>&1; rc=$?
check "a library writable by others: exit 1, refused ($(head -c 200 "$T/out"))" \
  eval '[ $rc = 1 ] && grep -q "writable by its group or others" "$T/out"'
check "... and nothing served" test ! -e "$T/x.sock"
cp "$noinit_so" "$T/noinit.so"
chmod 644 "$T/noinit.so"
"$mealy" fsm run "$T/host_order.yaml" --actions "$T/noinit.so" \
  --state-dir "$T/st2" -s "$T/x.sock" >"$T/out" 2>&1; rc=$?
check "a library without mly_actions_init: exit 1, says so" \
  eval '[ $rc = 1 ] && grep -q "no function mly_actions_init" "$T/out"'
"$mealy" fsm run "$T/host_order.yaml" --state-dir "$T/st2" -s "$T/x.sock" \
  >"$T/out" 2>&1; rc=$?
check "no --actions: exit 1, the action named at FILE:LINE:COL" \
  eval '[ $rc = 1 ] && grep -q "host_order.yaml:9:13: action .Count. is not registered" "$T/out"'

# ---------------------------------------------------------------------
C="validate --actions: names checked against the library's registry"
"$mealy" fsm validate --actions "$T/act.so" "$T/host_order.yaml" >"$T/out" 2>&1; rc=$?
check "the library registers Count: exit 0, says the names were checked" \
  eval '[ $rc = 0 ] && grep -q "every action name is registered by $T/act.so" "$T/out"'
sed 's/action: Count$/action: Cnt/' "$T/host_order.yaml" >"$T/typo.yaml"
"$mealy" fsm validate --actions "$T/act.so" "$T/typo.yaml" >"$T/out" 2>&1; rc=$?
check "a name it does not register: exit 1, at FILE:LINE:COL, each place" \
  eval '[ $rc = 1 ] && grep -q "typo.yaml:9:13: action .Cnt. is not registered" "$T/out" &&
        grep -q "typo.yaml:22:13: action .Cnt. is not registered" "$T/out"'
"$mealy" fsm validate --json --actions "$T/act.so" "$T/typo.yaml" >"$T/json" 2>/dev/null
check "--json: actions_checked true, both errors with line and col" \
  "$py" -c 'import json,sys; o=json.load(open(sys.argv[1]))
assert o["ok"] is False and o["actions_checked"] is True, o
assert [(e["line"], e["col"]) for e in o["errors"]] == [(9, 13), (22, 13)], o' "$T/json"
"$mealy" fsm validate "$T/typo.yaml" >"$T/out" 2>&1; rc=$?
check "without --actions: exit 0, and it says the names were not checked" \
  eval '[ $rc = 0 ] && grep -q "action names not checked (structure only: give --actions LIB.so" "$T/out"'
"$mealy" fsm validate --json "$T/typo.yaml" >"$T/json" 2>/dev/null
check "... --json: actions_checked false" \
  "$py" -c 'import json,sys; o=json.load(open(sys.argv[1]))
assert o["ok"] is True and o["actions_checked"] is False, o' "$T/json"
"$mealy" fsm validate --actions "$T/open.so" "$T/host_order.yaml" >"$T/out" 2>&1; rc=$?
check "a library writable by others: refused as by run, exit 1" \
  eval '[ $rc = 1 ] && grep -q "mealy fsm validate: --actions $T/open.so is writable by its group or others" "$T/out"'
"$mealy" fsm validate --actions "$T/noinit.so" "$T/host_order.yaml" >"$T/out" 2>&1; rc=$?
check "a library without mly_actions_init: exit 1, says so" \
  eval '[ $rc = 1 ] && grep -q "no function mly_actions_init" "$T/out"'
# an actions library built as the README says, `cc -shared -fPIC` with
# no libmealy linked in: the binary exports the API (was: undefined
# symbol mly_...)
if [ -n "$actions_c" ]; then
  "$cc_bin" -shared -fPIC -I"$include_dir" "$actions_c" -o "$T/plain.so" 2>"$T/cc.err"
  check "a plain shared object builds" test -s "$T/plain.so"
  chmod 644 "$T/plain.so"
  check "... it does not link libmealy" eval '! readelf -d "$T/plain.so" | grep -q "libmealy"'
  "$mealy" fsm validate --actions "$T/plain.so" "$T/host_order.yaml" >"$T/out" 2>&1; rc=$?
  check "... and it loads: its init registers through the binary's API" \
    eval '[ $rc = 0 ] && grep -q "every action name is registered" "$T/out"'
else
  check "the plain-library test has its source (ACTIONS.c INCLUDE-DIR)" false
fi
# a symbolic link as LIB.so (libshop.so -> libshop.so.1.0) is followed
# safely: was refused ("too many levels of symbolic links")
mkdir -p "$T/lib" && chmod 755 "$T/lib"
cp "$actions_so" "$T/lib/libshop.so.1.0" && chmod 644 "$T/lib/libshop.so.1.0"
ln -sf libshop.so.1.0 "$T/lib/libshop.so"
ln -sf "$T/lib/libshop.so" "$T/lib/chain.so"
for l in libshop.so chain.so; do
  "$mealy" fsm validate --actions "$T/lib/$l" "$T/host_order.yaml" >"$T/out" 2>&1; rc=$?
  check "--actions through a symlink ($l): loaded, exit 0" \
    eval '[ $rc = 0 ] && grep -q "every action name is registered" "$T/out"'
done
# ... but not through a link another user owns, nor to a file in a
# directory others may write
if [ "$(id -u)" = 0 ]; then
  ln -sf libshop.so.1.0 "$T/lib/theirs.so"
  chown -h nobody "$T/lib/theirs.so"
  "$mealy" fsm validate --actions "$T/lib/theirs.so" "$T/host_order.yaml" >"$T/out" 2>&1; rc=$?
  check "a symlink owned by another user: refused, said" \
    eval '[ $rc = 1 ] && grep -q "theirs.so is a symbolic link owned by another user" "$T/out"'
fi
mkdir -p "$T/open" && chmod 777 "$T/open"
cp "$actions_so" "$T/open/lib.so" && chmod 644 "$T/open/lib.so"
ln -sf "$T/open/lib.so" "$T/lib/toopen.so"
"$mealy" fsm validate --actions "$T/lib/toopen.so" "$T/host_order.yaml" >"$T/out" 2>&1; rc=$?
check "a symlink to a file in a directory others may write: refused" \
  eval '[ $rc = 1 ] && grep -q "$T/open" "$T/out"'
ln -sf loop2.so "$T/lib/loop1.so"; ln -sf loop1.so "$T/lib/loop2.so"
"$mealy" fsm validate --actions "$T/lib/loop1.so" "$T/host_order.yaml" >"$T/out" 2>&1; rc=$?
check "a loop of links: refused, said" \
  eval '[ $rc = 1 ] && grep -q "more than 40 symbolic links" "$T/out"'
"$mealy" fsm validate "$T/host_order.yaml" --actions >"$T/out" 2>&1; rc=$?
check "--actions without LIB.so: exit 2" \
  eval '[ $rc = 2 ] && grep -q "LIB.so is needed after" "$T/out"'

# ---------------------------------------------------------------------
C="start, ls, show, send"
start_host
check "the host serves its socket" alive "$HOST"
out=$(f start order --name o1 who=bob zip=007 amount:=42 paid:=false 2>&1)
check "start prints the name ($out)" [ "$out" = o1 ]
check "o1 reaches waiting (its initial action named ok)" poll 300 in_state o1 waiting
f show o1 --json >"$T/show.json"
check "show: context as given, strings stay strings" \
  [ "$(json "$T/show.json" "(j['context']['who'], j['context']['zip'], j['context']['amount'], j['context']['paid'], j['context']['n'])")" = "('bob', '007', 42, False, 1)" ]
check "show: machine, state, waits" \
  [ "$(json "$T/show.json" "(j['machine'], j['state'], j['waits'])")" = "('order', 'waiting', ['paid'])" ]
f show o1 >"$T/show.txt"
check "show (text): state and context" \
  eval 'grep -q "^state *waiting" "$T/show.txt" && grep -q "^context .*\"who\":\"bob\"" "$T/show.txt"'
out=$(f start order --name o1 2>&1); rc=$?
check "start o1 again: exit 1, the name is taken ($out)" \
  eval '[ $rc = 1 ] && grep -q "is taken" <<<"$out"'
out=$(f start nosuch 2>&1); rc=$?
check "start of an unknown machine: exit 1 ($out)" \
  eval '[ $rc = 1 ] && grep -q "no such machine" <<<"$out"'
gen=$(f start order 2>&1)
check "start without --name: a generated name ($gen)" \
  eval '[[ "$gen" =~ ^order-[0-9]{14}-[0-9a-z]+$ ]]'
check "the generated one reaches waiting" poll 300 in_state "$gen" waiting
f ls --state waiting --json >"$T/ls.json"
check "ls --state waiting: o1 and the generated one" \
  [ "$(json "$T/ls.json" "sorted(i['name'] for i in j)")" = "$("$py" -c 'import sys; print(sorted(sys.argv[1:]))' o1 "$gen")" ]
f ls --machine nosuch --json >"$T/ls.json"
check "ls --machine nosuch: none" [ "$(json "$T/ls.json" "len(j)")" = 0 ]
f ls >"$T/ls.txt"
check "ls (text): a header and o1" \
  eval 'head -1 "$T/ls.txt" | grep -q "^NAME" && grep -q "^o1 *order *waiting" "$T/ls.txt"'
out=$(f send nosuch paid 2>&1); rc=$?
check "send to no such instance: exit 1 ($out)" \
  eval '[ $rc = 1 ] && grep -q "no such instance" <<<"$out"'
out=$(f send o1 paid card=visa tries:=2 2>&1)
check "send o1 paid: ok once journaled ($out)" [ "$out" = ok ]
check "o1 takes paid: shipping" poll 300 in_state o1 shipping
f show o1 --json >"$T/show.json"
check "the payload is merged into the context" \
  [ "$(json "$T/show.json" "(j['context']['card'], j['context']['tries'], j['context']['who'])")" = "('visa', 2, 'bob')" ]
check "show: the history has both dispatches after the initial one" \
  [ "$(json "$T/show.json" "[(h['from'], h['event'], h['to']) for h in j['history']][-2:]")" = "[('start', 'ok', 'waiting'), ('waiting', 'paid', 'shipping')]" ]
out=$(f send o1 unknownevent 2>&1)
check "an event it does not wait for is journaled all the same ($out)" [ "$out" = ok ]
out=$(f send o1 shipped 2>&1)
check "send o1 shipped: ok" [ "$out" = ok ]
check "o1 ends (final state)" poll 300 absent o1
out=$(f show o1 2>&1); rc=$?
check "show o1 after its end: exit 1, it has ended ($out)" \
  eval '[ $rc = 1 ] && grep -q "has ended" <<<"$out"'

# ---------------------------------------------------------------------
C="instances outlive the host"
f start order --name o2 who=ann >/dev/null
check "o2 waiting" poll 300 in_state o2 waiting
stop_host TERM; rc=$?
check "SIGTERM: the host exits 0 ($rc)" [ "$rc" = 0 ]
check "... and removes its socket" test ! -e "$S"
start_host
check "after a restart, o2 is still waiting" poll 300 in_state o2 waiting
f show o2 --json >"$T/show.json"
check "... with its context" \
  [ "$(json "$T/show.json" "(j['context']['who'], j['context']['n'])")" = "('ann', 1)" ]
f start order --name o3 >/dev/null
check "o3 waiting" poll 300 in_state o3 waiting
stop_host KILL
start_host
check "after kill -9 of the host, o3 is still waiting" poll 300 in_state o3 waiting
out=$(f send o3 paid 2>&1)
check "send o3 paid after the crash: ok" [ "$out" = ok ]
check "o3 takes it: shipping" poll 300 in_state o3 shipping
f send o3 shipped >/dev/null
check "o3 ends" poll 300 absent o3
stop_host TERM

# ---------------------------------------------------------------------
C="an action no longer registered: the dispatch waits, nothing lost"
start_host
f start order --name o4 >/dev/null
check "o4 waiting" poll 300 in_state o4 waiting
stop_host TERM
# the host comes back with a file of its own and no library: o4 keeps
# its pinned definition, whose final state runs Count
cat >"$T/bare.yaml" <<'YAML'
state_machines:
- name: bare
  states:
  - {name: w, initial: true, wait: {events: [go]}, transitions: [{event: go, to: z}]}
  - {name: z, final: true}
YAML
rm -f "$T/host.err"
store_settle
"$mealy" fsm run "$T/bare.yaml" "${STORE_ARGS[@]}" -s "$S" 2>"$T/host.err" &
HOST=$!
poll 300 f ls >/dev/null 2>&1
f send o4 paid >/dev/null
check "o4 takes paid: shipping" poll 300 in_state o4 shipping
f send o4 shipped >/dev/null
awaits() { f show o4 --json >"$T/show.json" 2>/dev/null &&
  [ "$(json "$T/show.json" "j['awaits_action']")" = Count ]; }
check "o4's last dispatch waits for Count (show: awaits_action)" poll 300 awaits
check "... with a log line saying what to do" \
  grep -q "instance o4 (machine order), state done: action Count is not registered; its dispatch waits" "$T/host.err"
f show o4 >"$T/out" 2>&1
check "... the text of show says it too" grep -q "^awaits_action Count" "$T/out"
check "... and it is not failed: still live" \
  [ "$(json "$T/show.json" "(j['phase'], j['attempt'], j['context'].get('error'))")" = "('dispatch', 0, None)" ]
stop_host KILL
start_host # the library is back
# ended, not only absent: on PostgreSQL the new host claims o4 once the
# killed one's lease ran out, and until then does not list it
ended() { out=$(f show "$1" 2>&1); [ $? = 1 ] && grep -q "has ended" <<<"$out"; }
check "o4 goes on once Count is registered, and ends" poll 300 ended o4
check "... at its final state, not failed" eval '! grep -q "o4.*fail" "$T/host.err"'
stop_host TERM

echo
if [ "$fail" = 0 ]; then echo "PASS: fsm cli"; else echo "FAIL: fsm cli"; fi
exit "$fail"
