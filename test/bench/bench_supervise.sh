#!/usr/bin/env bash
# Supervisor benchmarks, mealy beside s6 when s6 is installed (Debian's
# `s6`; measured in the same run, same programs, same machine).  Prints
# BENCH lines.
#
#   start_1000      supervisor CPU per program to start 1,000 `sleep`
#                   programs (its fork included; the children's exec not).
#                   s6: s6-svscan plus the 1,000 s6-supervise processes.
#   restart_cpu     supervisor CPU per restart of a program that exits at
#                   once (1 ms backoff; s6 waits 1 s between restarts,
#                   hard-coded), on an idle host and with 1,000 unrelated
#                   processes running.
#   restart_latency a child's exit to the next child's start, p50 and p99.
#   idle            CPU and context switches (wakeups) of a supervisor
#                   with 100 programs over 10 s; RSS with 100 and 1,000.
#
# CPU is read from /proc/PID/task/*/schedstat (nanoseconds on a CPU).
#   [BENCH_PARTS="start restart idle"] bench_supervise.sh MEALY BENCH_CHILD
set -eu
mealy=$(readlink -f "$1") child=$(readlink -f "$2")
dir=$(mktemp -d)
sup= scan= crowd=()
cleanup() {
  [ -n "$sup" ] && kill -KILL "$sup" 2>/dev/null
  [ -n "$scan" ] && { s6-svscanctl -t "$s6dir" 2>/dev/null; sleep 0.5; s6_kill_all; }
  for p in "${crowd[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT
tag=$$ # sleep arguments carry it, so the processes of this run are counted

wait_for() { # command... : up to 120 s
  for _ in $(seq 1200); do "$@" && return 0; sleep 0.1; done
  echo "bench_supervise: timed out waiting for: $*" >&2; return 1
}
cpu_ns() { # pids...: nanoseconds on a CPU, every thread
  local p t s=0 v
  for p in "$@"; do
    for t in /proc/"$p"/task/*/schedstat; do
      read -r v _ <"$t" 2>/dev/null || continue
      s=$((s + v))
    done
  done
  echo "$s"
}
per() { awk -v a="$1" -v n="$2" -v d="$3" 'BEGIN { printf "%.3f", a / n / d }'; }
count_args() { pgrep -cxf "sleep $1" || true; }
count_is() { [ "$(count_args "$1")" -ge "$2" ]; }
switches() { awk '/ctxt_switches/ { s += $2 } END { print s }' "/proc/$1/status"; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
lines_ge() { test "$(cat "$1" 2>/dev/null | wc -l)" -ge "$2"; }

stop_sup() {
  "$mealy" ctl -s "$dir/s.sock" shutdown >/dev/null
  wait "$sup" || true
  sup=
}
gen() { # count file sleep-argument
  { echo "socket: $dir/s.sock"; echo "programs:"
    for i in $(seq "$1"); do
      echo "  p$i: {command: [sleep, '$3'], stop_grace: 1s}"
    done; } >"$2"
}
latency() { # times-file name: p50 and p99 of exit-to-next-start, 500 restarts
  awk 'NR > 1 { print ($1 - prev_end) / 1e6 } { prev_end = $2 }' "$1" \
    | head -n 500 | sort -n >"$dir/lat"
  local n
  n=$(wc -l <"$dir/lat")
  echo "BENCH $2_restart_latency_p10 $(sed -n "$(( n / 10 + 1 ))p" "$dir/lat") ms"
  echo "BENCH $2_restart_latency_p50 $(sed -n "$(( n / 2 ))p" "$dir/lat") ms"
  echo "BENCH $2_restart_latency_p99 $(sed -n "$(( n * 99 / 100 ))p" "$dir/lat") ms"
}

# ---- s6 ----
have_s6=false
command -v s6-svscan >/dev/null && command -v s6-supervise >/dev/null && have_s6=true
s6_pids() { echo "$scan"; pgrep -P "$scan" -x s6-supervise || true; }
s6_kill_all() {
  local p
  for p in $(pgrep -P "$scan" -x s6-supervise 2>/dev/null); do
    pkill -KILL -P "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null
  done
  kill -KILL "$scan" 2>/dev/null; wait "$scan" 2>/dev/null || true; scan=
}
s6dir=
s6_start() { # scandir (s6-svscan runs at most 500 services unless -c)
  s6dir=$1
  s6-svscan -c 2000 "$1" >/dev/null 2>&1 &
  scan=$!
}
s6_stop() { # stops every service, then s6-svscan ends
  s6-svscanctl -t "$s6dir"
  wait "$scan" 2>/dev/null || true
  scan=
}
s6_service() { # scandir name run-line
  mkdir -p "$1/$2"
  printf '#!/bin/sh\n%s\n' "$3" >"$1/$2/run"
  chmod +x "$1/$2/run"
}

part() { [[ " ${BENCH_PARTS:-start restart idle} " == *" $1 "* ]]; }

# ---- start 1,000 programs ----
if part start; then
arg="99990.$tag"
gen 1000 "$dir/big.yaml" "$arg"
"$mealy" supervise "$dir/big.yaml" >"$dir/big.log" 2>&1 &
sup=$!
wait_for count_is "$arg" 1000
c=$(cpu_ns "$sup")
echo "BENCH supervise_rss_1000 $(rss_kb "$sup") KiB"
t0=$(date +%s%N)
stop_sup
echo "BENCH supervise_stop_1000 $(( ($(date +%s%N) - t0) / 1000000 )) ms"
# the supervisor logs at exit how much of its CPU went into fork
fork_ms=$(sed -n 's/.*supervisor CPU: .*, \([0-9.]*\) ms of it in forking.*/\1/p' "$dir/big.log")
echo "BENCH supervise_start_1000_cpu_per_program $(awk -v c="$c" -v f="${fork_ms:-0}" \
  'BEGIN { printf "%.3f", (c / 1e6 - f) / 1000 }') ms (fork excluded)"
echo "BENCH supervise_start_1000_cpu_per_program_with_fork $(per "$c" 1000 1e6) ms"
if $have_s6; then
  arg="99991.$tag"
  for i in $(seq 1000); do s6_service "$dir/scan1000" "p$i" "exec sleep $arg"; done
  s6_start "$dir/scan1000"
  wait_for count_is "$arg" 1000
  # shellcheck disable=SC2046
  c=$(cpu_ns $(s6_pids))
  echo "BENCH s6_start_1000_cpu_per_program_with_fork $(per "$c" 1000 1e6) ms"
  t0=$(date +%s%N)
  s6_stop
  wait_for eval '[ "$(count_args '"$arg"')" = 0 ]'
  echo "BENCH s6_stop_1000 $(( ($(date +%s%N) - t0) / 1000000 )) ms"
fi
fi

# ---- restarts: CPU per restart, latency; then with 1,000 other processes ----
cat >"$dir/restart.yaml" <<EOC
socket: $dir/s.sock
programs:
  crasher:
    command: [$child]
    env: {BENCH_OUT: $dir/times}
    restart: always
    backoff: {initial: 1ms, max: 1ms, multiplier: 1.0, reset_after: 1h}
    intensity: {max_restarts: 1000000, within: 1s}
EOC
mealy_restarts() { # label
  rm -f "$dir/times"
  "$mealy" supervise "$dir/restart.yaml" >"$dir/restart.log" 2>&1 &
  sup=$!
  wait_for lines_ge "$dir/times" 100
  local c0 n0 c1 n1
  c0=$(cpu_ns "$sup") n0=$(wc -l <"$dir/times")
  wait_for lines_ge "$dir/times" $((n0 + 1000))
  c1=$(cpu_ns "$sup") n1=$(wc -l <"$dir/times")
  echo "BENCH supervise_restart_cpu$1 $(per $((c1 - c0)) $((n1 - n0)) 1e6) ms"
  stop_sup
  [ -n "$1" ] || latency "$dir/times" supervise
}
s6_restarts() { # label
  [ "$have_s6" = true ] || return 0
  rm -f "$dir/times"
  s6_service "$dir/scan1" crasher "export BENCH_OUT=$dir/times; exec $child"
  s6_start "$dir/scan1"
  wait_for lines_ge "$dir/times" 2
  local c0 n0 c1 n1
  # shellcheck disable=SC2046
  c0=$(cpu_ns $(s6_pids)) n0=$(wc -l <"$dir/times")
  wait_for lines_ge "$dir/times" $((n0 + 5))
  # shellcheck disable=SC2046
  c1=$(cpu_ns $(s6_pids)) n1=$(wc -l <"$dir/times")
  echo "BENCH s6_restart_cpu$1 $(per $((c1 - c0)) $((n1 - n0)) 1e6) ms"
  [ -n "$1" ] || latency "$dir/times" s6
  s6_stop
}
if part restart; then
mealy_restarts ""
s6_restarts ""
for i in $(seq 1000); do sleep "99992.$tag" & crowd+=($!); done
wait_for count_is "99992.$tag" 1000
mealy_restarts _1000_others
s6_restarts _1000_others
for p in "${crowd[@]}"; do kill -KILL "$p" 2>/dev/null; done
wait "${crowd[@]}" 2>/dev/null || true
crowd=()
fi

# ---- idle: 100 children, 10 s ----
part idle || exit 0
arg="99993.$tag"
gen 100 "$dir/idle.yaml" "$arg"
"$mealy" supervise "$dir/idle.yaml" >"$dir/idle.log" 2>&1 &
sup=$!
wait_for count_is "$arg" 100
sleep 1
c0=$(cpu_ns "$sup") w0=$(switches "$sup")
sleep 10
c1=$(cpu_ns "$sup") w1=$(switches "$sup")
echo "BENCH supervise_idle_cpu_10s $(per $((c1 - c0)) 1 1e9) s"
echo "BENCH supervise_idle_wakeups_10s $((w1 - w0)) wakeups"
echo "BENCH supervise_rss_100 $(rss_kb "$sup") KiB"
stop_sup
