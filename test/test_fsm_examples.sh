#!/usr/bin/env bash
# Integration: the YAML machine examples run as the README says and end
# as they should.
#   order (machines/examples/order/demo.sh): alice and bob paid and
#     shipped (bob's charge retried twice with backoff first: 3 attempts
#     counted), carol's declined card a permanent failure that reached the
#     on_failure state with the action's error, dave's shortened deadline
#     expiring it unpaid;
#   exec (machines/examples/exec/demo.sh): every file's size and SHA-256
#     as sha256sum computes them, a missing file a permanent failure
#     (exit 100) reported through on_failure.
# Both files validate.  No check measures a duration: the demos poll with
# bounded waits.
#
# usage: test_fsm_examples.sh PATH/TO/mealy ORDER_ACTIONS.so SOURCE_ROOT
set -u
# shellcheck source=proc_helpers.sh
source "$(dirname "${BASH_SOURCE[0]}")/proc_helpers.sh"
fail=0
mealy=$(readlink -f "$1")
so=$(readlink -f "$2")
root=$(readlink -f "$3")
T=$(mktemp -d "${TMPDIR:-/tmp}/mealy-fsmex.XXXXXX")
trap 'rm -rf "$T"' EXIT

C="validate"
for y in order/order.yaml exec/digest.yaml; do
  check "$y validates" eval '"$mealy" fsm validate "$root/machines/examples/$y" >/dev/null'
done
# as the README says, with its library: every action name it uses is there
install -m 644 "$so" "$T/order_actions.so"
check "order/order.yaml validates with --actions, names checked" \
  eval '"$mealy" fsm validate --actions "$T/order_actions.so" "$root/machines/examples/order/order.yaml" | grep -q "every action name is registered by"'

C="order"
DEMO_TIMEOUT=120 "$root/machines/examples/order/demo.sh" "$mealy" "$so" \
  >"$T/order.out" 2>"$T/order.err"; rc=$?
check "demo exits 0" eval '[ $rc = 0 ]'
check "alice: paid, shipped, notified" \
  grep -qx "alice done: TRK-alice/2 (charge attempts: 1)" "$T/order.out"
check "bob: charge retried twice, then done" \
  grep -qx "bob done: TRK-bob/2 (charge attempts: 3)" "$T/order.out"
check "carol: declined card, on_failure with the error" \
  grep -qx "carol declined: card declined (charge attempts: 0)" "$T/order.out"
check "dave: the shortened deadline expired it" \
  grep -qx "dave cancelled: not paid before its deadline (charge attempts: 1)" "$T/order.out"
check "four lines, nothing else" eval '[ "$(wc -l < "$T/order.out")" = 4 ]'

C="exec"
head -c 200000 /dev/urandom >"$T/blob"
printf 'hello\n' >"$T/small"
(cd "$root" && DEMO_TIMEOUT=120 machines/examples/exec/demo.sh "$mealy" \
  "$T/blob" "$T/small" "$T/missing") >"$T/exec.out" 2>"$T/exec.err"; rc=$?
check "demo exits 0" eval '[ $rc = 0 ]'
for x in blob small; do
  want="$T/$x $(stat -c %s "$T/$x") $(sha256sum "$T/$x" | cut -d' ' -f1)"
  check "$x: size and sha256 as sha256sum" grep -qxF "$want" "$T/exec.out"
done
check "missing: a permanent failure, through on_failure" \
  grep -qxF "$T/missing failed: command failed for good (exit 100): no such file: $T/missing" "$T/exec.out"
check "three lines" eval '[ "$(wc -l < "$T/exec.out")" = 3 ]'

[ $fail = 0 ] || { echo "--- stderr"; cat "$T"/*.err; }
exit $fail
