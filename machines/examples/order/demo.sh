#!/usr/bin/env bash
# demo.sh - the order workflow, start to end, in one command (from the
# repository root, after `meson setup build && ninja -C build`):
#
#   machines/examples/order/demo.sh [MEALY [ORDER_ACTIONS.so]]
#
# It runs `mealy fsm run order.yaml --actions order_actions.so` in a
# private directory and drives four orders through it with `mealy fsm`:
#   alice  card visa      charged, paid, shipped after 1s: done
#   bob    card flaky     charge fails twice, retried with backoff: done
#   carol  card declined  a permanent failure: on_failure, declined
#   dave   card visa      never paid; its deadline (3 days, shortened to
#                         1.5s by expire_after_ms) expires it: cancelled
# then prints each order's notification, sorted, and stops the host.
# Exit 0 when all four ended as above within DEMO_TIMEOUT seconds
# (default 60).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../demo_host.sh
source "$here/../demo_host.sh"
mealy=$(readlink -f "${1:-build/cmd/mealy}")
so=$(readlink -f "${2:-build/machines/order_actions.so}")
for x in "$mealy" "$so"; do
  [ -f "$x" ] || { echo "demo.sh: $x is missing: build first (meson setup build && ninja -C build)" >&2; exit 2; }
done
demo_host "$here" order.yaml --actions "$so"
waiting() { f ls --state awaiting 2>/dev/null | grep -q "^$1 "; }
N=notify_file=$D/notes
f start order --name alice card=visa amount:=30 "$N" >/dev/null &&
f start order --name bob card=flaky amount:=12 "$N" >/dev/null &&
f start order --name carol card=declined amount:=99 "$N" >/dev/null &&
f start order --name dave card=visa amount:=5 expire_after_ms:=1500 "$N" \
  >/dev/null || demo_fail "cannot start the orders"
for o in alice bob; do
  wait_for waiting "$o" || demo_fail "$o never waited for payment"
  f send "$o" paid >/dev/null || demo_fail "cannot send $o paid"
done
wait_for lines "$D/notes" 4 || demo_fail "not every order ended"
sort "$D/notes"
demo_stop
