#!/usr/bin/env bash
# demo.sh - the command-only workflow (digest.yaml), in one command (from
# the repository root, after `meson setup build && ninja -C build`):
#
#   machines/examples/exec/demo.sh [MEALY [FILE...]]
#
# It runs `mealy fsm run digest.yaml` (no --actions: every action is a
# command) in a private directory, starts one instance per FILE (default:
# README.md and a file that does not exist), waits until each reported,
# prints the report ("FILE SIZE SHA256", or "FILE failed: ERROR") and
# stops the host.  Exit 0 when every instance reported within
# DEMO_TIMEOUT seconds (default 60).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../demo_host.sh
source "$here/../demo_host.sh"
mealy=$(readlink -f "${1:-build/cmd/mealy}")
[ -f "$mealy" ] || { echo "demo.sh: $mealy is missing: build first (meson setup build && ninja -C build)" >&2; exit 2; }
shift
[ $# -gt 0 ] || set -- README.md no-such-file.txt
files=()
for x in "$@"; do files+=("$(readlink -m "$x")"); done
demo_host "$here" digest.yaml
install -m 644 "$here/steps.py" "$D/" # digest.yaml names it from D
for x in "${files[@]}"; do
  f start digest file="$x" report="$D/report" >/dev/null ||
    demo_fail "cannot start digest of $x"
done
wait_for lines "$D/report" ${#files[@]} || demo_fail "not every file was reported"
sort "$D/report"
demo_stop
