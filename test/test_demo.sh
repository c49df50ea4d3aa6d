#!/usr/bin/env bash
# Integration: the real `mealy` binary runs the embedding demo end to end,
# answers demo-status while running, stops cleanly, and refuses bad input.
set -u
mealy=$1
fail=0
check() { # description, condition...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# 1. scripted run: config after 300 ms, shutdown after 1.5 s
"$mealy" demo --port 0 --config-after 300ms --recheck 100ms --for 1500ms >"$out" 2>&1
rc=$?
check "demo exits 0" test "$rc" = 0
order=$(grep -oE 'init server|no config chosen yet|external request: config mill.ini|starting rt|starting app|app +up|run time is up|stopping app|app +stopped|stopping rt|rt +stopped|stopping loop|runtime stopped' "$out" \
  | sed 's/  */ /g' | uniq | tr '\n' '|')
check "MasterD sequence: $order" test "$order" = \
  "init server|no config chosen yet|external request: config mill.ini|starting rt|starting app|app up|run time is up|stopping app|app stopped|stopping rt|rt stopped|stopping loop|runtime stopped|"

# 2. running demo: demo-status prints the table; SIGTERM stops it
port=$((20000 + RANDOM % 20000))
"$mealy" demo --port "$port" --config-after 100ms >"$out" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q "app      up" "$out" && break; sleep 0.1; done
status=$("$mealy" demo-status --port "$port")
check "demo-status shows masterd running" grep -qE 'masterd +ready +running +event any' <<<"$status"
check "demo-status shows two working subsystems" test "$(grep -cE 'subsystem +ready +working +timer' <<<"$status")" = 2
kill -TERM "$pid"
wait "$pid"
rc=$?
check "SIGTERM: exit 0" test "$rc" = 0
check "SIGTERM: caught as an event" grep -q "caught signal 15" "$out"
check "SIGTERM: clean stop" grep -q "runtime stopped" "$out"

# 3. bad input: clear errors, exit 2
err=$("$mealy" demo --for soon 2>&1); rc=$?
check "bad duration refused" test "$rc" = 2
check "bad duration message" grep -q "'soon' is not a duration" <<<"$err"
err=$("$mealy" demo --port 99999 2>&1); rc=$?
check "bad port refused" test "$rc" = 2
err=$("$mealy" frobnicate 2>&1); rc=$?
check "unknown command refused" test "$rc" = 2
err=$("$mealy" demo-status --port 1 2>&1); rc=$?
check "demo-status with no demo fails" test "$rc" = 1

exit $fail
