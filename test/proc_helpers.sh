# proc_helpers.sh - small process helpers shared by the shell suites that
# drive real processes (test_supervise.sh and those that source it,
# test_root_safety.sh).  Sourced, never run.  No check measures a
# duration: waits are bounded polls.

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
