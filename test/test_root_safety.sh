#!/usr/bin/env bash
# Integration: `mealy supervise` run as root on a host with other users
# (issue 10, sections 1 and 2).  Each check plays what another user could
# do, or looks at what a child receives:
#
#   socket     its mode is set at bind, never by path; a directory other
#              users can write (without the sticky bit) is refused
#   logs       opened as the program's user, never through a symlink,
#              created 0640
#   state      the state directory must be a real directory of ours that
#              nobody else can write; files in it are 0600, a symlinked
#              LOCK is refused and its target untouched; no other user can
#              plant a record or hold the lock
#   children   no inherited descriptor beyond 0-2 and the configured ones;
#              user: brings its supplementary groups, HOME, USER, LOGNAME,
#              SHELL; env_inherit: false gives a clean environment
#
# Checks that play another user create one (useradd) and a group, and
# delete them at the end: that needs root.  Without root they cannot run,
# and the suite says so loudly and FAILS unless MEALY_TEST_ALLOW_NONROOT=1
# (a developer's machine), so CI (root) never passes them silently.
#
# No check measures a duration: waits are bounded polls.
#
# usage: test_root_safety.sh PATH/TO/mealy
set -u
if [ $# -lt 1 ]; then
  echo "usage: $0 PATH/TO/mealy" >&2
  exit 2
fi
mealy=$(readlink -f "$1")
[ -x "$mealy" ] || { echo "FAIL: $1 is not an executable" >&2; exit 1; }

fail=0
C=""
top=$(mktemp -d "${TMPDIR:-/tmp}/mealy-rs.XXXXXX")
chmod 755 "$top" # the second user must reach the directories it plays in
SVPIDS=()
U="" G="" # the second user and its extra group, when root
umask 022

ok() { echo "ok: $C: $1"; }
bad() { echo "FAIL: $C: $1"; fail=1; }
check() { # description, command...
  local what=$1; shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}
poll() { # tries, command...: 0.1 s apart
  local n=$1 i; shift
  for ((i = 0; i < n; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}
alive() {
  local st
  [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || return 1
  st=$( { cat "/proc/$1/stat"; } 2>/dev/null) || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ]
}
gone() { ! alive "$1"; }

# Every program of this suite runs with its cwd inside $top: that is how
# leftovers are found (env_inherit: false leaves no mark in the env).
ours() {
  local f c
  for f in /proc/[0-9]*/cwd; do
    c=$(readlink "$f" 2>/dev/null) || continue
    [[ $c == "$top"* ]] || continue
    f=${f#/proc/}; echo "${f%/cwd}"
  done | grep -vx "$$" || true
}

cleanup() {
  local p
  for p in "${SVPIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for p in $(ours); do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$top"
  [ -n "$U" ] && userdel "$U" 2>/dev/null
  [ -n "$G" ] && groupdel "$G" 2>/dev/null
}
trap cleanup EXIT
trap 'echo "FAIL: interrupted"; exit 1' INT TERM HUP

if [ "$(id -u)" = 0 ]; then
  U="mlyrs$$" G="mlyrsg$$"
  if ! groupadd "$G" || ! useradd -M -d "/home/$U" -s /bin/sh -G "$G" "$U"; then
    echo "FAIL: running as root, but cannot create a second user ($U) with useradd"
    U="" G=""
    fail=1
  fi
else
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "!!! NOT ROOT: the checks that play a second user CANNOT RUN here.  !!!"
  echo "!!! Run this suite as root (CI does) to check issue 10 for real.   !!!"
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  [ "${MEALY_TEST_ALLOW_NONROOT:-}" = 1 ] || fail=1
fi
as_u() { runuser -u "$U" -- "$@"; }

# ---- one case --------------------------------------------------------

D="" CFG="" SOCK="" LOG="" SVPID=""
case_begin() { # name, title
  C=$1
  echo "== $C: $2"
  D="$top/$1"
  mkdir -p "$D"
  CFG="$D/c.yaml"
  SOCK="$D/s.sock"
  LOG="$D/log"
  SVPID=""
}
sv_launch() { # [env assignments for the supervisor...] -- [args...]
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  : >"$LOG"
  (cd "$D" && exec env "${envs[@]}" "$mealy" supervise "$CFG" -s "$SOCK" "$@") \
    >>"$LOG" 2>&1 &
  SVPID=$!
  SVPIDS+=("$SVPID")
}
ctl() { timeout 20 "$mealy" ctl -s "$SOCK" "$@"; }
answers() { ctl status >/dev/null 2>&1; }
sv_start() { # as sv_launch; then waits until it answers
  sv_launch "$@"
  poll 100 answers && return 0
  bad "the supervisor answers on $SOCK"
  sed 's/^/  | /' "$LOG"
  return 1
}
# the supervisor refuses to start: it ends non-zero, saying $1
sv_refuses() { # what it must say, [args for sv_launch]
  local say=$1; shift
  sv_launch "$@"
  if ! poll 200 gone "$SVPID"; then
    bad "refused at start (it still runs)"
    kill -KILL "$SVPID"
    return
  fi
  wait "$SVPID"
  local rc=$?
  check "refused at start (exit $rc)" [ "$rc" != 0 ]
  if grep -qF -- "$say" "$LOG"; then ok "it says: $say"
  else bad "it says: $say (log: $(tr '\n' ' ' <"$LOG"))"; fi
}
case_end() {
  if [ -n "$SVPID" ] && alive "$SVPID"; then
    ctl shutdown >/dev/null 2>&1 || kill -TERM "$SVPID"
    poll 200 gone "$SVPID" || kill -KILL "$SVPID"
  fi
  [ -n "$SVPID" ] && wait "$SVPID" 2>/dev/null
  SVPID=""
}
field() {
  ctl status --json "$1" 2>/dev/null |
    sed -n "s/.*\"$2\":\(\"[^\"]*\"\|[^,}]*\).*/\1/p" | tr -d '"'
}
state_is() { [ "$(field "$1" state)" = "$2" ]; }
has_line() { grep -qxF -- "$2" "$1" 2>/dev/null; }
has_fds() { [ "$(tr '\n' ' ' <"$1" 2>/dev/null)" = "$2" ]; }
nonempty() { [ -s "$1" ]; }
logged() { grep -qF -- "$1" "$LOG"; }
mode_of() { stat -c %a "$1"; }
owner_of() { stat -c %U "$1"; }
need_user() { # a case that plays another user
  [ -n "$U" ] && return 0
  echo "!!! $C: SKIPPED, needs a second user (root): $1"
  return 1
}

# ---- 1. the socket ---------------------------------------------------

case_begin sock "the socket is born with its mode; unsafe directories are refused"
cat >"$CFG" <<EOF
socket_mode: "0660"
programs:
  a: {command: [sleep, "1000"], cwd: $D}
EOF
if sv_start; then
  check "socket_mode 0660 with umask 022: the socket is 660" \
    [ "$(mode_of "$SOCK")" = 660 ]
fi
case_end
cat >"$CFG" <<EOF
programs:
  a: {command: [sleep, "1000"], cwd: $D}
EOF
mkdir -m 0777 "$D/open" "$D/grp"
chmod 0777 "$D/open"; chmod 0770 "$D/grp"
SOCK="$D/open/s.sock"
sv_refuses "is writable by others without the sticky bit"
check "no socket was created there" [ ! -e "$SOCK" ]
SOCK="$D/grp/s.sock"
sv_refuses "is writable by its group without the sticky bit"
mkdir "$D/sticky" && chmod 1777 "$D/sticky"
SOCK="$D/sticky/s.sock"
if sv_start; then
  ok "a sticky directory (as /tmp) is fine"
  check "the default mode is 0600" [ "$(mode_of "$SOCK")" = 600 ]
fi
case_end
if need_user "a directory of another user"; then
  mkdir "$D/theirs" && chown "$U" "$D/theirs"
  SOCK="$D/theirs/s.sock"
  sv_refuses "belongs to another user"
fi

# ---- 1. log files ----------------------------------------------------

case_begin logs "log files: no symlink followed, 0640, opened as the user"
echo "root's own secret" >"$D/target"
chmod 600 "$D/target"
mkdir "$D/mine"
ln -s "$D/target" "$D/mine/out.log"
cat >"$CFG" <<EOF
programs:
  a:
    command: [sh, -c, "echo hello; exec sleep 1000"]
    cwd: $D
    stdout: $D/mine/out.log
  b:
    command: [sh, -c, "echo hello; exec sleep 1000"]
    cwd: $D
    stdout: $D/mine/b.log
  f:
    command: [sh, -c, "echo hello; exec sleep 1000"]
    cwd: $D
    stdout: $D/mine/fifo.log
EOF
mkfifo "$D/mine/fifo.log"
if sv_start; then
  check "a FIFO with no reader as a log does not hang the start" \
    poll 100 logged "cannot open log $D/mine/fifo.log: No such device or address"
  check "a symlinked log is refused" poll 100 logged "is a symbolic link"
  check "b's log is written" poll 100 has_line "$D/mine/b.log" hello
  check "b's log is created 0640" [ "$(mode_of "$D/mine/b.log")" = 640 ]
fi
case_end
check "the symlink's target is untouched" \
  [ "$(cat "$D/target")" = "root's own secret" ]
if need_user "a program whose user swaps its log for a symlink"; then
  mkdir "$D/ulogs" "$D/rootlogs"
  chown "$U" "$D/ulogs"
  cat >"$CFG" <<EOF
programs:
  u:
    command: [sh, -c, "echo hello; exec sleep 1000"]
    cwd: $D
    user: $U
    stdout: $D/ulogs/out.log
  v:
    command: [sh, -c, "echo hello; exec sleep 1000"]
    cwd: $D
    user: $U
    stdout: $D/rootlogs/out.log
EOF
  if sv_start; then
    check "u's log is written" poll 100 has_line "$D/ulogs/out.log" hello
    check "u's log belongs to u's user" [ "$(owner_of "$D/ulogs/out.log")" = "$U" ]
    check "u's log is 0640" [ "$(mode_of "$D/ulogs/out.log")" = 640 ]
    check "v's log, in a directory its user cannot write, is not created" \
      poll 100 logged "cannot open log $D/rootlogs/out.log: Permission denied"
    check "(not even by root)" [ ! -e "$D/rootlogs/out.log" ]
    ctl stop u >/dev/null
    check "u stops" poll 100 state_is u stopped
    # the user's attack: its log becomes a symlink to a root-only file
    as_u rm -f "$D/ulogs/out.log"
    as_u ln -s "$D/target" "$D/ulogs/out.log"
    ctl start u >/dev/null
    check "the restarted program's symlinked log is refused" \
      poll 100 logged "out.log: it is a symbolic link"
  fi
  case_end
  check "root's file is untouched" [ "$(cat "$D/target")" = "root's own secret" ]
fi

# ---- 1. the state directory -----------------------------------------

case_begin state "the state directory is ours alone"
cat >"$CFG" <<EOF
programs:
  a: {command: [sleep, "1000"], cwd: $D}
EOF
if sv_start -- --state-dir "$D/st/deeper"; then
  check "created 0700" [ "$(mode_of "$D/st/deeper")" = 700 ]
  check "LOCK is 0600" [ "$(mode_of "$D/st/deeper/LOCK")" = 600 ]
  n=$(find "$D/st/deeper" -type f | wc -l)
  bad_modes=$(find "$D/st/deeper" -type f ! -perm 600 | tr '\n' ' ')
  check "all $n files in it are 0600 ($bad_modes)" [ -z "$bad_modes" ] 
fi
case_end
mkdir -m 700 "$D/real"
ln -s "$D/real" "$D/link"
sv_refuses "$D/link: the state directory is a symbolic link" -- --state-dir "$D/link"
mkdir -m 770 "$D/g"; chmod 770 "$D/g"
sv_refuses "is writable by its group (mode 0770)" -- --state-dir "$D/g"
mkdir -m 707 "$D/o"; chmod 707 "$D/o"
sv_refuses "is writable by others (mode 0707)" -- --state-dir "$D/o"
echo "keep me" >"$D/victim"
chmod 644 "$D/victim"
mkdir -m 700 "$D/lk"
ln -s "$D/victim" "$D/lk/LOCK"
sv_refuses "LOCK: cannot open: it is a symbolic link" -- --state-dir "$D/lk"
check "the LOCK symlink's target is not truncated" [ "$(cat "$D/victim")" = "keep me" ]
mkdir -m 700 "$D/lf"; mkfifo "$D/lf/LOCK"
sv_refuses "LOCK: is not a regular file" -- --state-dir "$D/lf"
mkdir -m 700 "$D/sl"
ln -s "$D/victim" "$D/sl/seg-00000000000000000001.mj"
sv_refuses "seg-00000000000000000001.mj: a symbolic link, not a segment file" \
  -- --state-dir "$D/sl"
check "a symlinked segment is not followed (its target is intact)" \
  [ "$(cat "$D/victim")" = "keep me" ]
ln -s "$D/st/deeper" "$D/jlink" # a journal is there
if "$mealy" journal compact "$D/jlink" >"$D/jc.out" 2>&1; then
  bad "mealy journal compact refuses the symlinked directory"
else
  check "mealy journal compact refuses the symlinked directory too" \
    grep -qF "is a symbolic link" "$D/jc.out"
fi
if need_user "another user's state directory, planted records, the lock"; then
  mkdir -m 700 "$D/theirs"; chown "$U" "$D/theirs"
  sv_refuses "the state directory is owned by uid $(id -u "$U"), not by uid 0" \
    -- --state-dir "$D/theirs"
  # the layout of earlier versions: 0755 directory, 0644 LOCK, which any
  # user could flock (shown first on a file of the same kind)
  mkdir -m 755 "$D/old"; : >"$D/old/LOCK"; chmod 644 "$D/old/LOCK"
  : >"$D/probe"; chmod 644 "$D/probe"
  check "(another user can flock a 0644 file: the check below means it)" \
    as_u flock -n "$D/probe" true
  if sv_start -- --state-dir "$D/old"; then
    check "LOCK is made 0600" [ "$(mode_of "$D/old/LOCK")" = 600 ]
    if as_u flock -n "$D/old/LOCK" true 2>"$D/flock.err"; then
      bad "another user cannot hold LOCK"
    else
      check "another user cannot hold LOCK" grep -q "Permission denied" "$D/flock.err"
    fi
    seg=$(cd "$D/old" && ls seg-* | head -1)
    check "another user cannot plant a record (append to $seg)" \
      bash -c "! runuser -u $U -- sh -c 'echo forged >>$D/old/$seg' 2>/dev/null"
    check "nor a new segment" \
      bash -c "! runuser -u $U -- sh -c 'echo x >$D/old/seg-99999999999999999999.mj' 2>/dev/null"
  fi
  case_end
  # with a directory the user can write, the supervisor will not start at
  # all: nothing of what is in there is read
  mkdir -m 700 "$D/planted"; chmod 777 "$D/planted"
  as_u sh -c "echo forged >$D/planted/seg-00000000000000000001.mj"
  sv_refuses "is writable by group and others (mode 0777)" -- --state-dir "$D/planted"
fi

# ---- 2. descriptors --------------------------------------------------

case_begin fds "children get 0-2 and the configured fds, nothing inherited"
cat >"$CFG" <<EOF
programs:
  a:
    command: [sh, -c, 'ls /proc/\$\$/fd; exec sleep 1000']
    cwd: $D
    stdout: $D/a.out
  n:
    command: [sh, -c, 'ls /proc/\$\$/fd; echo >&3; exec sleep 1000']
    cwd: $D
    ready: {notify_fd: 3}
    stdout: $D/n.out
EOF
exec 9>"$D/fd9" 8<"$CFG"
if sv_start; then
  check "the supervisor itself holds fd 9 (the test means it)" \
    [ -e "/proc/$SVPID/fd/9" ]
  # ls writes straight to the shell's stdout: no pipe of the shell's own
  check "a has exactly 0 1 2" poll 100 has_fds "$D/a.out" "0 1 2 "
  check "n has exactly 0 1 2 3 (its notify fd)" poll 100 has_fds "$D/n.out" "0 1 2 3 "
fi
exec 9>&- 8<&-
case_end

# ---- 2. identity and environment -------------------------------------

case_begin env "env_inherit, and what user: brings"
cat >"$CFG" <<EOF
programs:
  inherit:
    command: [env]
    cwd: $D
    restart: never
    stdout: $D/inherit.env
  clean:
    command: [env]
    cwd: $D
    restart: never
    env_inherit: false
    env: {FOO: bar}
    stdout: $D/clean.env
EOF
if sv_start MEALY_SECRET=s3cret PATH=/usr/bin:/bin; then
  check "by default the environment is inherited" \
    poll 100 has_line "$D/inherit.env" MEALY_SECRET=s3cret
  check "env_inherit: false: exactly PATH and env:" \
    poll 100 eval '[ "$(sort "$D/clean.env" | tr "\n" " ")" = "FOO=bar PATH=/usr/bin:/bin " ]'
fi
case_end
cat >"$CFG" <<EOF
env_inherit: false
programs:
  clean:
    command: [env]
    cwd: $D
    restart: never
    stdout: $D/clean2.env
  back:
    command: [env]
    cwd: $D
    restart: never
    env_inherit: true
    stdout: $D/back.env
EOF
if sv_start MEALY_SECRET=s3cret PATH=/usr/bin:/bin; then
  check "top-level env_inherit: false: only PATH" \
    poll 100 eval '[ "$(sort "$D/clean2.env" | tr "\n" " ")" = "PATH=/usr/bin:/bin " ]'
  check "a program's env_inherit: true wins" \
    poll 100 has_line "$D/back.env" MEALY_SECRET=s3cret
fi
case_end
if need_user "user: with supplementary groups and the passwd entry"; then
  echo "for the group only" >"$D/gfile"
  chgrp "$G" "$D/gfile"; chmod 640 "$D/gfile"
  mkdir "$D/ulogs"; chown "$U" "$D/ulogs"
  IFS=: read -r _ _ _ _ _ uhome ushell < <(getent passwd "$U")
  cat >"$CFG" <<EOF
programs:
  u:
    command: [sh, -c, 'cat $D/gfile; id -G | tr " " "\n" | sort -n | tr "\n" " "; echo; echo HOME=\$HOME USER=\$USER LOGNAME=\$LOGNAME SHELL=\$SHELL']
    cwd: $D
    restart: never
    user: $U
    stdout: $D/ulogs/u.out
  c:
    command: [env]
    cwd: $D
    restart: never
    user: $U
    env_inherit: false
    stdout: $D/ulogs/c.env
EOF
  if sv_start HOME=/root USER=root LOGNAME=root SHELL=/bin/bash PATH=/usr/bin:/bin; then
    check "a file readable through a supplementary group is read" \
      poll 100 has_line "$D/ulogs/u.out" "for the group only"
    want=$(id -G "$U" | tr ' ' '\n' | sort -n | tr '\n' ' ')
    check "the groups are the user's own ($want)" \
      poll 100 has_line "$D/ulogs/u.out" "$want"
    check "HOME, USER, LOGNAME, SHELL come from the passwd entry" \
      poll 100 has_line "$D/ulogs/u.out" "HOME=$uhome USER=$U LOGNAME=$U SHELL=$ushell"
    check "env_inherit: false with user: PATH and the user's four" \
      poll 100 eval '[ "$(sort "$D/ulogs/c.env" | tr "\n" " ")" = "HOME=$uhome LOGNAME=$U PATH=/usr/bin:/bin SHELL=$ushell USER=$U " ]'
  fi
  case_end
fi

if [ "$fail" = 0 ]; then
  echo "all root-safety checks passed"
else
  echo "some root-safety checks FAILED"
fi
exit "$fail"
