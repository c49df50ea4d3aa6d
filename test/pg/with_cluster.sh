#!/usr/bin/env bash
# with_cluster.sh COMMAND ARGS...: runs a PostgreSQL suite against its own
# private cluster (cluster.sh start ... stop), with MLY_TEST_PG (conninfo),
# MLY_TEST_PG_DIR (its directory) and MLY_TEST_PG_CLUSTER (cluster.sh, for
# restarts) in the environment.  When no cluster can be started the suite
# FAILS with a sentence saying it did not run: never a quiet skip.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! info=$(bash "$here/cluster.sh" start); then
  echo "!!! FAIL: the PostgreSQL suite '$*' DID NOT RUN: no private cluster"
  echo "!!! could be started (needs Debian's postgresql; as root, or as a"
  echo "!!! user that can run initdb).  See the lines above."
  exit 1
fi
dir=${info#host=}; dir=${dir%% *}
trap 'bash "$here/cluster.sh" stop "$dir"' EXIT
export MLY_TEST_PG="$info" MLY_TEST_PG_DIR="$dir" MLY_TEST_PG_CLUSTER="$here/cluster.sh"
"$@" &
child=$!
# killed (a timeout): stop the suite, then the EXIT trap stops the cluster
trap 'kill "$child" 2>/dev/null; exit 143' TERM INT HUP
wait "$child"
