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

# The store a shell suite's hosts run on: MLY_TEST_STORE, as for the C
# suites (test/store_param.h).  store_args MEALY DIR sets the array
# STORE_ARGS to the arguments of `mealy fsm run` that open it: on the
# journal (the default) "--state-dir DIR"; on postgresql "--store
# CONNINFO --lease MS" on a database of DIR's own in the private cluster
# of test/pg/with_cluster.sh (MLY_TEST_PG; made and initialised the first
# time; lease MLY_TEST_PG_LEASE_MS, default 3000: a restart after kill -9
# waits for it, a loop busier than it evicts), so a restarted host
# finds what the one before left there.  Another name fails the suite.
# store_settle, before starting a host: on postgresql it waits (at most
# 30 s) until no other process holds a lease in that database, as
# store_param.h's open does: these suites run one host at a time, and a
# restart after kill -9 means the one before is gone (a host that opens
# while a killed one's lease still runs is the multi-process case, with
# its own suites).
store_name() { echo "${MLY_TEST_STORE:-journal}"; }
store_args() {
  local mealy=$1 dir=$2 db ci
  case $(store_name) in
  journal) STORE_ARGS=(--state-dir "$dir") ;;
  postgresql)
    ci=${MLY_TEST_PG:?"!!! FAIL: MLY_TEST_STORE=postgresql needs MLY_TEST_PG: run the suite through test/pg/with_cluster.sh"}
    db=mly_$(printf '%s' "$dir" | md5sum | cut -c1-16)
    if ! psql -X -q -t -A "$ci" -c "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
      psql -X -q "$ci" -c "CREATE DATABASE $db" >/dev/null &&
        "$mealy" store init --store "$ci dbname=$db" >/dev/null ||
        { echo "FAIL: cannot make the database $db"; exit 1; }
    fi
    STORE_ARGS=(--store "$ci dbname=$db" --lease "${MLY_TEST_PG_LEASE_MS:-3000}")
    STORE_DB="$ci dbname=$db" ;;
  *) echo "FAIL: MLY_TEST_STORE=$(store_name): no such store (journal, postgresql)"
     exit 1 ;;
  esac
}
store_settle() {
  [ "$(store_name)" = postgresql ] || return 0
  leases() {
    [ "$(psql -X -q -t -A "$STORE_DB" -c "SELECT count(*) FROM mealy.nodes
      WHERE taken_by IS NULL AND lease_until > clock_timestamp()")" = 0 ]
  }
  poll 300 leases || echo "store_settle: a lease still runs after 30 s"
}
# journal_only WHAT: a check of the journal's own figures or files, not
# made on another store: true on the journal; elsewhere false, and the
# output says "journal only: SECTION: WHAT" (never a quiet skip).
journal_only() {
  [ "$(store_name)" = journal ] && return 0
  echo "journal only: ${C:-}: $1 (not checked on $(store_name))"
  return 1
}
