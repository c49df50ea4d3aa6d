#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests, never the system's.
#   cluster.sh start          makes a temporary directory, initdb + pg_ctl
#                             start in it (unix socket in that directory,
#                             listen_addresses='', fsync on), prints the
#                             conninfo on stdout: host=DIR dbname=postgres ...
#   cluster.sh restart DIR    pg_ctl restart -m fast (the tests' outage)
#   cluster.sh pause|resume DIR   pg_ctl stop, pg_ctl start (an outage)
#   cluster.sh stop DIR       stops it and removes DIR
#   cluster.sh env DIR        prints MLY_TEST_PG=<conninfo>
# As root the server runs as a dedicated user (mealypg, made with useradd
# when missing); otherwise as the caller.  Needs Debian's postgresql
# (/usr/lib/postgresql/*/bin).  Exits non-zero with a sentence on stderr
# when it cannot.
set -euo pipefail
PGUSER_NAME=mealypg

die() { echo "cluster.sh: $*" >&2; exit 1; }
cd / # the server's user may not be able to enter the caller's directory

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] ||
    die "no PostgreSQL server here (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql"
  echo "$d"
}

as_owner() { # runs a command as the cluster's owner
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$PGUSER_NAME" -- "$@"
  else
    "$@"
  fi
}

conninfo() { echo "host=$1 port=5432 dbname=postgres user=mealy"; }

case "${1:-}" in
start)
  bin=$(bindir)
  if [ "$(id -u)" = 0 ] && ! id "$PGUSER_NAME" >/dev/null 2>&1; then
    # another suite's cluster.sh may be making it at the same moment
    useradd -M -r -d /nonexistent -s /usr/sbin/nologin "$PGUSER_NAME" ||
      id "$PGUSER_NAME" >/dev/null 2>&1 ||
      die "running as root, but cannot create the user $PGUSER_NAME with useradd"
  fi
  dir=$(mktemp -d /tmp/mealy-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown "$PGUSER_NAME:" "$dir"
  chmod 700 "$dir"
  if ! as_owner "$bin/initdb" -D "$dir/data" -U mealy -A trust -E UTF8 \
      --locale=C.UTF-8 >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2; rm -rf "$dir"; die "initdb failed"
  fi
  cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
max_connections = 50
CONF
  if ! as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 120 start \
      >/dev/null 2>&1; then
    cat "$dir/log" >&2 2>/dev/null || true; rm -rf "$dir"; die "pg_ctl start failed"
  fi
  conninfo "$dir"
  ;;
restart)
  dir=${2:?cluster.sh restart DIR}
  as_owner "$(bindir)/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 120 \
    restart -m fast >/dev/null
  ;;
pause|resume) # the server down (pg_ctl stop) and up again, DIR kept
  dir=${2:?cluster.sh $1 DIR}
  if [ "$1" = pause ]; then
    as_owner "$(bindir)/pg_ctl" -D "$dir/data" -w -t 120 stop -m fast >/dev/null
  else
    as_owner "$(bindir)/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 120 start >/dev/null
  fi
  ;;
stop)
  dir=${2:?cluster.sh stop DIR}
  [ -d "$dir/data" ] || die "$dir is not a cluster made by cluster.sh"
  as_owner "$(bindir)/pg_ctl" -D "$dir/data" -w -t 120 stop -m fast \
    >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
env)
  echo "MLY_TEST_PG=$(conninfo "${2:?cluster.sh env DIR}")"
  ;;
*)
  echo "usage: cluster.sh start | restart|pause|resume|stop|env DIR" >&2
  exit 2
  ;;
esac
