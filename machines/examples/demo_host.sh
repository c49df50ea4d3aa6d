# demo_host.sh - what the YAML machine demos (order/demo.sh,
# exec/demo.sh) share; sourced, never run.
#
#   demo_host DIR FILE.yaml [--actions LIB.so]
#       D: a private directory (mode 700: `mealy fsm run` loads only files
#       no other user can swap) where FILE.yaml (and LIB.so) are copied,
#       removed at exit; starts `mealy fsm run` there (cwd D) on socket
#       D/fsm.sock, state in D/state, its stderr in D/host.log; returns
#       once it answers.  `mealy` must be set.
#   f ARGS...      `mealy fsm ARGS -s D/fsm.sock`
#   wait_for CMD   poll CMD 0.1 s apart, at most DEMO_TIMEOUT s (60)
#   demo_fail MSG  say MSG and the host's log, exit 1
#   demo_stop      SIGTERM the host and reap it
HOST=""
demo_host() {
  local src=$1 yaml=$2
  shift 2
  D=$(mktemp -d "${TMPDIR:-/tmp}/mealy-demo.XXXXXX") || exit 1
  chmod 700 "$D"
  trap '[ -n "$HOST" ] && kill -9 "$HOST" 2>/dev/null; rm -rf "$D"' EXIT
  install -m 644 "$src/$yaml" "$D/" || exit 1
  local args=()
  if [ "${1:-}" = --actions ]; then
    install -m 644 "$2" "$D/actions.so" || exit 1
    args=(--actions "$D/actions.so")
  fi
  (cd "$D" && exec "$mealy" fsm run "$yaml" "${args[@]}" \
     --state-dir "$D/state" -s "$D/fsm.sock" 2>"$D/host.log") &
  HOST=$!
  wait_for f ls >/dev/null 2>&1 || demo_fail "the host did not start"
}
f() { "$mealy" fsm "$@" -s "$D/fsm.sock"; }
wait_for() {
  local i
  for ((i = 0; i < ${DEMO_TIMEOUT:-60} * 10; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}
demo_fail() {
  echo "demo.sh: $1" >&2
  cat "$D/host.log" >&2
  exit 1
}
demo_stop() {
  kill -TERM "$HOST"
  wait "$HOST" 2>/dev/null
  HOST=""
}
# lines FILE N: FILE has at least N lines
lines() { [ -f "$1" ] && [ "$(wc -l < "$1")" -ge "$2" ]; }
