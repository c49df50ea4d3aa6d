# proc_helpers.sh - small process helpers shared by the shell suites that
# drive real processes (test_supervise.sh and those that source it,
# test_root_safety.sh, the fsm and queue CLI suites): their report lines,
# polls, a private temporary directory.  Sourced, never run.  No check
# measures a duration: waits are bounded polls.

# poll TRIES COMMAND...: run COMMAND until it succeeds, at most TRIES
# times, 0.1 s apart.
poll() {
  local n=$1 i; shift
  for ((i = 0; i < n; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}
alive() { # pid: exists and is not a zombie
  local st
  [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || return 1
  st=$( { cat "/proc/$1/stat"; } 2>/dev/null) || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ]
}
gone() { ! alive "$1"; }

# ok, bad, check: the suites' report lines ("ok: CONTEXT: what", "FAIL:
# ..."), with C the section and fail set on a failure.  A suite may keep
# its own (defined after sourcing this, it wins).
ok() { echo "ok: ${C:-}: $1"; }
bad() { echo "FAIL: ${C:-}: $1"; fail=1; }
check() { # description, command...
  local what=$1; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

# private_tmp PREFIX: T a fresh directory only we may use; at exit the
# process HOST (when set) is killed and T removed.
private_tmp() {
  T=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  chmod 700 "$T"
  HOST=""
  trap '[ -n "$HOST" ] && kill -9 "$HOST" 2>/dev/null; rm -rf "$T"' EXIT
}
