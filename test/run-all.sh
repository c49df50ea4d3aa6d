#!/usr/bin/env bash
# The test command: install what is missing (as root on Debian), build with
# -Wall -Wextra -Werror, run every suite, then build and run them all again
# under AddressSanitizer + UndefinedBehaviorSanitizer.  Exits non-zero on
# any failure and ends with one line: "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(gcc clang libc6-dev libuv1-dev libyaml-dev libmsgpack-dev nettle-dev
      uthash-dev check meson ninja-build pkg-config procps python3
      python3-msgpack libhttp-parser-dev
      python3-prometheus-client graphviz groff-base man-db systemd libjansson-dev
      beanstalkd tzdata postgresql libpq-dev)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

passed=0 failed=0
run_suites() { # dir, extra meson options...
  local dir=$1; shift
  if [ -d "$dir" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
  ninja -C "$dir"
  local out rc=0
  out=$(meson test -C "$dir" --print-errorlogs --num-processes 2 2>&1) || rc=$?
  echo "$out"
  local ok fail
  ok=$(echo "$out" | sed -n 's/^Ok: *\([0-9]*\).*/\1/p' | tail -n1)
  fail=$(echo "$out" | sed -n 's/^Fail: *\([0-9]*\).*/\1/p' | tail -n1)
  passed=$((passed + ${ok:-0}))
  failed=$((failed + ${fail:-0}))
  [ "$rc" = 0 ] || failed=$((failed + (${fail:-0} == 0 ? 1 : 0)))
}

run_suites build -Dbuildtype=debugoptimized
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
run_suites build-asan -Dbuildtype=debug -Db_sanitize=address,undefined \
  -Db_lundef=false -Dc_args=-fno-sanitize-recover=all

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
