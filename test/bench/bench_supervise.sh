#!/usr/bin/env bash
# Supervisor benchmarks: restart latency (a child's exit to the next
# child's start, with the smallest backoff, 1 ms), CPU time and wakeups of
# an idle supervisor with 100 children over 10 s, and its RSS with 100 and
# 1000 programs.  Prints BENCH lines.
#   bench_supervise.sh MEALY BENCH_CHILD
set -eu
mealy=$1 child=$2
dir=$(mktemp -d)
sup=
cleanup() { [ -n "$sup" ] && kill -KILL "$sup" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

wait_for() { # command... : up to 60 s
  for _ in $(seq 600); do "$@" && return 0; sleep 0.1; done
  echo "bench_supervise: timed out waiting for: $*" >&2; return 1
}

stop_sup() {
  "$mealy" ctl -s "$dir/s.sock" shutdown >/dev/null
  wait "$sup" || true
  sup=
}

# ---- restart latency ----
cat >"$dir/restart.yaml" <<EOC
socket: $dir/s.sock
programs:
  crasher:
    command: [$child]
    env: {BENCH_OUT: $dir/times}
    restart: always
    backoff: {initial: 1ms, max: 1ms, multiplier: 1.0, reset_after: 1h}
    intensity: {max_restarts: 100000, within: 1s}
EOC
"$mealy" supervise "$dir/restart.yaml" >"$dir/restart.log" 2>&1 &
sup=$!
lines_ge() { test "$(cat "$dir/times" 2>/dev/null | wc -l)" -ge "$1"; }
wait_for lines_ge 501
stop_sup
awk 'NR > 1 { print ($1 - prev_end) / 1e6 } { prev_end = $2 }' "$dir/times" \
  | head -n 500 | sort -n >"$dir/lat"
n=$(wc -l <"$dir/lat")
p50=$(sed -n "$(( n / 2 ))p" "$dir/lat")
p99=$(sed -n "$(( n * 99 / 100 ))p" "$dir/lat")
echo "BENCH supervise_restart_latency_p50 $p50 ms"
echo "BENCH supervise_restart_latency_p99 $p99 ms"

# ---- idle: 100 children, 10 s ----
gen() { # count file
  { echo "socket: $dir/s.sock"; echo "programs:"
    for i in $(seq "$1"); do
      echo "  p$i: {command: [sleep, '100000'], stop_grace: 1s}"
    done; } >"$2"
}
running() { test "$("$mealy" ctl -s "$dir/s.sock" status | grep -c ' running ')" -ge "$1"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
switches() { awk '/ctxt_switches/ { s += $2 } END { print s }' "/proc/$1/status"; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

gen 100 "$dir/idle.yaml"
"$mealy" supervise "$dir/idle.yaml" >"$dir/idle.log" 2>&1 &
sup=$!
wait_for running 100
sleep 1
c0=$(cpu_ticks "$sup") w0=$(switches "$sup")
sleep 10
c1=$(cpu_ticks "$sup") w1=$(switches "$sup")
hz=$(getconf CLK_TCK)
echo "BENCH supervise_idle_cpu_10s $(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { printf "%.3f", (b - a) / hz }') s"
echo "BENCH supervise_idle_wakeups_10s $((w1 - w0)) wakeups"
echo "BENCH supervise_rss_100 $(rss_kb "$sup") KiB"
stop_sup

# ---- 1000 programs ----
gen 1000 "$dir/big.yaml"
"$mealy" supervise "$dir/big.yaml" >"$dir/big.log" 2>&1 &
sup=$!
wait_for running 1000
echo "BENCH supervise_rss_1000 $(rss_kb "$sup") KiB"
stop_sup
