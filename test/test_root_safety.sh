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

# ok, bad, check, poll, alive, gone
# shellcheck source=proc_helpers.sh
source "$(dirname "${BASH_SOURCE[0]}")/proc_helpers.sh"

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
    poll 100 logged "cannot open log $D/mine/fifo.log: no such device or address"
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
      poll 100 logged "cannot open log $D/rootlogs/out.log: permission denied"
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
  check "env_inherit: false: exactly PATH and env: (and the marker)" \
    poll 100 eval '[ "$(sort "$D/clean.env" | grep -v "^MEALY_PROGRAM=" | tr "\n" " ")" = "FOO=bar PATH=/usr/bin:/bin " ]'
  check "the supervisor's marker names the program" \
    grep -Eq '^MEALY_PROGRAM=clean:[0-9]+\.[0-9]+$' "$D/clean.env"
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
    poll 100 eval '[ "$(sort "$D/clean2.env" | grep -v "^MEALY_PROGRAM=" | tr "\n" " ")" = "PATH=/usr/bin:/bin " ]'
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
      poll 100 eval '[ "$(sort "$D/ulogs/c.env" | grep -v "^MEALY_PROGRAM=" | tr "\n" " ")" = "HOME=$uhome LOGNAME=$U PATH=/usr/bin:/bin SHELL=$ushell USER=$U " ]'
  fi
  case_end
fi

# ---- every directory of a path (issue 10 follow-up, 1, 11) -----------

case_begin chain "every directory on the socket's path, and ctl's server"
cat >"$CFG" <<EOF
programs:
  a: {command: [sleep, "1000"], cwd: $D}
EOF
mkdir -p "$D/realdir"
ln -s "$D/realdir" "$D/rootlink" # a symlink of root's own is followed
SOCK="$D/rootlink/s.sock"
if sv_start; then
  check "a root-owned symlink on the path is fine" [ -S "$D/realdir/s.sock" ]
fi
case_end
if need_user "another user's directory above the socket's, her symlink, her server"; then
  # her directory, with a root-owned one inside: she can rename "inner"
  # away and put her own in its place, whatever inner's owner
  mkdir -p "$D/b1/md/inner"; chown "$U" "$D/b1/md"
  SOCK="$D/b1/md/inner/x.sock"
  sv_refuses "$D/b1/md belongs to another user"
  check "no socket was created there" [ ! -e "$SOCK" ]
  # her symlink in a sticky directory, pointing at root's directory
  mkdir -m 1777 "$D/stk"; chmod 1777 "$D/stk"
  as_u ln -s "$D/realdir" "$D/stk/hers"
  SOCK="$D/stk/hers/y.sock"
  sv_refuses "$D/stk/hers is a symbolic link of another user"
  # her server in a sticky directory: root's ctl must not talk to it
  cat >"$D/fake.py" <<'PY'
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(4)
open(sys.argv[2], "w").write("%d\n" % os.getpid())
while True:
    c, _ = s.accept()
    try:
        c.recv(65536)
        # [1, 1, nil, "ok"]: the answer a real supervisor gives to stop
        c.sendall(b"\x94\x01\x01\xc0\xa2ok")
    except OSError:
        pass
    c.close()
PY
  # (its cwd in $D: cleanup finds it)
  (cd "$D" && exec runuser -u "$U" -- python3 "$D/fake.py" "$D/stk/fake.sock" \
     "$D/stk/fake.up") &
  if poll 100 test -s "$D/stk/fake.up"; then
    FAKE=$(cat "$D/stk/fake.up"); SVPIDS+=("$FAKE")
    out=$(timeout 20 "$mealy" ctl -s "$D/stk/fake.sock" stop a 2>&1); rc=$?
    check "ctl refuses a server of another user (exit $rc)" \
      eval '[ "$rc" != 0 ] && ! grep -qx ok <<<"$out"'
    check "... and says whose it is ($out)" \
      grep -qF "is served by uid $(id -u "$U")" <<<"$out"
    # her server listens first where root's supervisor wants its socket
    SOCK="$D/stk/fake.sock"
    sv_refuses "another server is listening there (uid $(id -u "$U")"
  else
    bad "the other user's fake server starts"
  fi
  kill "$FAKE" 2>/dev/null
fi

# ---- what ctl prints from the server is escaped (2) -------------------

case_begin escape "ctl escapes what the server sends"
cat >"$D/evil.py" <<'PY'
import msgpack, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(4)
open(sys.argv[2], "w").write("%d\n" % os.getpid())
bad = "\x1b]0;PWNED\x07\u009b31m\u202eX\x7f"
while True:
    c, _ = s.accept()
    try:
        req = msgpack.unpackb(c.recv(65536), raw=False)
        if req[2] == "status":
            ans = [1, req[1], None, [{"name": bad, "state": bad, "pid": 1,
                   "uptime_ms": 5, "restarts": 0, "last_exit": None,
                   "last_signal": bad}]]
        else:
            ans = [1, req[1], "no " + bad, None]
        c.sendall(msgpack.packb(ans, use_bin_type=True))
    except OSError:
        pass
    c.close()
PY
# Debian's python3, where python3-msgpack is (a python3 first on PATH may
# be another)
py=/usr/bin/python3; [ -x "$py" ] || py=python3
(cd "$D" && exec "$py" "$D/evil.py" "$D/evil.sock" "$D/evil.up") &
if poll 100 test -s "$D/evil.up"; then
  SVPIDS+=("$(cat "$D/evil.up")")
  raw() { LC_ALL=C grep -c $'[\x01-\x08\x0b-\x1f\x7f]\|\xc2\x9b\|\xe2\x80\xae' "$1"; }
  timeout 20 "$mealy" ctl -s "$D/evil.sock" status >"$D/st.out" 2>&1
  check "status: no control character reaches the terminal" [ "$(raw "$D/st.out")" = 0 ]
  check "status: they are shown escaped" grep -qF '\x1b]0;PWNED\x07\u009b31m\u202eX\x7f' "$D/st.out"
  timeout 20 "$mealy" ctl -s "$D/evil.sock" status --json >"$D/js.out" 2>&1
  check "status --json: none either" [ "$(raw "$D/js.out")" = 0 ]
  check "status --json: still JSON" python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$D/js.out"
  timeout 20 "$mealy" ctl -s "$D/evil.sock" stop a >"$D/err.out" 2>&1
  check "an error: none either" [ "$(raw "$D/err.out")" = 0 ]
  check "an error: shown escaped" grep -qF 'no \x1b]0;PWNED' "$D/err.out"
  kill "$(cat "$D/evil.up")"
else
  bad "the fake server starts"
fi

# ---- the socket is removed from the directory held since bind (3) ----

case_begin unlink "at exit the socket goes from its own directory, not by path"
cat >"$CFG" <<EOF
programs:
  a: {command: [sleep, "1000"], cwd: $D}
EOF
mkdir "$D/sd" "$D/victim"
echo "not a socket of ours" >"$D/victim/s.sock"
SOCK="$D/sd/s.sock"
if sv_start; then
  # what another user could do to a directory she can write: here root
  # plays it, since a directory she could write is refused at start
  mv "$D/sd" "$D/sd.old"
  ln -s "$D/victim" "$D/sd"
  kill -TERM "$SVPID"
  poll 200 gone "$SVPID" || kill -KILL "$SVPID"
  wait "$SVPID" 2>/dev/null; SVPID=""
  check "the file the path names now is untouched" \
    [ "$(cat "$D/victim/s.sock" 2>/dev/null)" = "not a socket of ours" ]
  check "our socket was removed from its own directory" [ ! -e "$D/sd.old/s.sock" ]
fi
case_end

# ---- log directories and files (4, 5, 7, 12) --------------------------

case_begin logchain "a log's directories, a planted log file"
mkdir -m 700 "$D/roottarget"
echo "root's" >"$D/roottarget/keep"
mkdir "$D/rl"
: >"$D/rl/open.log"; chmod 666 "$D/rl/open.log"
echo "root's own" >"$D/rl.target"; ln "$D/rl.target" "$D/rl/hard.log"
cat >"$CFG" <<EOF
log_dir: $D/rl
programs:
  w: {command: [sh, -c, "echo hello; exec sleep 1000"], cwd: $D, stdout: open.log}
  h: {command: [sh, -c, "echo hello; exec sleep 1000"], cwd: $D, stdout: hard.log}
EOF
if sv_start; then
  check "a log file writable by others is refused" \
    poll 100 logged "$D/rl/open.log is writable by others"
  check "a log file with a second link is refused" \
    poll 100 logged "$D/rl/hard.log has more than one link"
  check "its output goes to the supervisor's output instead" \
    poll 100 logged "[w] hello"
  check "... as the message says" logged "its stdout goes to the supervisor's own stdout instead, as [w] lines"
  check "the hard link's other name is untouched" [ "$(cat "$D/rl.target")" = "root's own" ]
fi
case_end
if need_user "a root program's log under another user's directory"; then
  mkdir -p "$D/mh/logs"; chown -R "$U" "$D/mh"
  as_u ln -s "$D/roottarget" "$D/mh/logs/d"
  cat >"$CFG" <<EOF
log_dir: $D/mh/logs
programs:
  r: {command: [sh, -c, "echo hello; exec sleep 1000"], cwd: $D, stdout: d/rootsub.log}
  p: {command: [sh, -c, "echo hello; exec sleep 1000"], cwd: $D, stdout: plain.log}
EOF
  if sv_start; then
    check "a root program's log under her directory is refused" \
      poll 100 logged "$D/mh belongs to another user"
    check "(both logs)" \
      poll 100 eval '[ "$(grep -c "belongs to another user" "$LOG")" -ge 2 ]'
  fi
  case_end
  check "nothing was created through her symlink" [ ! -e "$D/roottarget/rootsub.log" ]
  check "nor in her directory" [ ! -e "$D/mh/logs/plain.log" ]

  case_begin logown "a user's log: a file she does not own, messages"
  mkdir "$D/ul"; chown "$U" "$D/ul"
  : >"$D/ul/planted.log"; chmod 666 "$D/ul/planted.log" # root's, in her dir
  cat >"$CFG" <<EOF
programs:
  v:
    command: [sh, -c, "echo hello; exec sleep 1000"]
    cwd: $D
    user: $U
    stdout: $D/ul/planted.log
  x:
    command: [sh, -c, "echo hello; exec sleep 1000"]
    cwd: $D
    user: $U
    stdout: $D/noperm.log
EOF
  if sv_start; then
    check "a log file of another user in her directory is refused" \
      poll 100 logged "$D/ul/planted.log is owned by another user"
    check "a log she cannot create: the message names her and where output goes" \
      poll 100 logged "cannot open log $D/noperm.log: permission denied (opened as user $U); its stdout goes to the supervisor's own stdout instead, as [x] lines"
    check "and it does go there" poll 100 logged "[x] hello"
    check "'output is lost' is not said" bash -c "! grep -q 'output is lost' '$LOG'"
  fi
  case_end

  case_begin rotate "rotation renames in the directory first opened, as the user"
  mkdir -p "$D/u5/logs"; chown -R "$U" "$D/u5"
  mkdir "$D/roottarget5"
  echo "root's log" >"$D/roottarget5/out.log"
  echo "root's old log" >"$D/roottarget5/out.log.1"
  cat >"$CFG" <<EOF
programs:
  r:
    command: [sh, -c, 'echo first; while [ ! -e $D/go ]; do sleep 0.05; done; i=0; while [ \$i -lt 100 ]; do echo "line \$i ......................................................"; i=\$((i+1)); done; echo done; exec sleep 1000']
    cwd: $D
    user: $U
    stdout: {file: $D/u5/logs/out.log, max_size: 1KB, keep: 2}
EOF
  if sv_start; then
    check "the first line is written" poll 100 has_line "$D/u5/logs/out.log" first
    # she swaps her log directory for a symlink to root's
    as_u mv "$D/u5/logs" "$D/u5/logs.old"
    as_u ln -s "$D/roottarget5" "$D/u5/logs"
    touch "$D/go"
    check "the program wrote everything" \
      poll 100 eval 'ctl tail r -n 1 2>/dev/null | grep -qx done'
    check "rotation happened in her old directory" [ -e "$D/u5/logs.old/out.log.1" ]
    check "root's files are untouched" \
      eval '[ "$(cat "$D/roottarget5/out.log")" = "root'"'"'s log" ] && [ "$(cat "$D/roottarget5/out.log.1")" = "root'"'"'s old log" ] && [ ! -e "$D/roottarget5/out.log.2" ]'
    check "the rotated files are hers" [ "$(owner_of "$D/u5/logs.old/out.log.1")" = "$U" ]
    # the file is compared with its name in the held directory, not with
    # the path (which names root's file now): no reopen on every read
    check "the swap is not taken for a moved log" \
      bash -c "! grep -q 'was removed or moved' '$LOG'"
  fi
  case_end

  case_begin rotfail "a rotation that fails is said, once, and the file stays bounded"
  mkdir "$D/r7" # root's: she cannot rename in it
  : >"$D/r7/out.log"; chown "$U" "$D/r7/out.log"; chmod 640 "$D/r7/out.log"
  cat >"$CFG" <<EOF
programs:
  f:
    command: [sh, -c, 'i=0; while [ \$i -lt 200 ]; do echo "line \$i ......................................................"; i=\$((i+1)); done; echo done; exec sleep 1000']
    cwd: $D
    user: $U
    stdout: {file: $D/r7/out.log, max_size: 1KB, keep: 2}
EOF
  if sv_start; then
    check "the program wrote everything" \
      poll 100 eval 'ctl tail f -n 1 2>/dev/null | grep -qx done'
    check "the failure is said" \
      poll 100 logged "cannot rotate log $D/r7/out.log: permission denied"
    check "... once, not per line" [ "$(grep -c "cannot rotate" "$LOG")" = 1 ]
    size=$(stat -c %s "$D/r7/out.log")
    check "the file stops at twice max_size ($size <= 2048)" [ "$size" -le 2048 ]
    check "it did grow past max_size first ($size > 1024)" [ "$size" -gt 1024 ]
  fi
  case_end

  case_begin nonroot "a supervisor that is not root, asked for user: root"
  mkdir -m 700 "$D/nr"; chown "$U" "$D/nr"
  cat >"$D/nr/c.yaml" <<EOF
programs:
  a: {command: [sleep, "1000"], cwd: $D/nr, user: root, restart: never}
EOF
  (cd "$D/nr" && exec runuser -u "$U" -- "$mealy" supervise "$D/nr/c.yaml" \
     -s "$D/nr/s.sock" --state-dir "$D/nr/st") >"$LOG" 2>&1 &
  SVPID=$!; SVPIDS+=("$SVPID")
  check "the failure is said" poll 100 logged "not permitted"
  check "without a wrong cause" bash -c "! grep -q 'wrong thread' '$LOG'"
  kill -TERM "$SVPID" 2>/dev/null
  poll 200 gone "$SVPID" || kill -KILL "$SVPID"
  wait "$SVPID" 2>/dev/null; SVPID=""
fi

# ---- the state directory's entries (8, 9) -----------------------------

case_begin stfiles "every entry of the state directory is ours alone"
cat >"$CFG" <<EOF
programs:
  a: {command: [sleep, "1000"], cwd: $D}
EOF
echo "keep me" >"$D/victim"
mkdir -m 700 "$D/hl"; ln "$D/victim" "$D/hl/LOCK"
sv_refuses "LOCK: has more than one link" -- --state-dir "$D/hl"
check "the LOCK hard link's other name is not truncated" [ "$(cat "$D/victim")" = "keep me" ]
mkdir -m 700 "$D/wr"; : >"$D/wr/seg-00000000000000000001.mj"
chmod 666 "$D/wr/seg-00000000000000000001.mj"
sv_refuses "seg-00000000000000000001.mj: writable by its group or others" -- --state-dir "$D/wr"
mkdir -m 700 "$D/ln2"; echo x >"$D/ln2.other"; ln "$D/ln2.other" "$D/ln2/other"
sv_refuses "ln2/other: a file with more than one link" -- --state-dir "$D/ln2"
mkdir -m 700 "$D/sub"; mkdir "$D/sub/dir"
sv_refuses "sub/dir: a directory" -- --state-dir "$D/sub"
mkdir -m 700 "$D/lnk"; ln -s "$D/victim" "$D/lnk/x"
sv_refuses "lnk/x: a symbolic link" -- --state-dir "$D/lnk"
if need_user "a segment of another user, the state directory's parent"; then
  mkdir -m 700 "$D/ou"; : >"$D/ou/seg-00000000000000000001.mj"
  chown "$U" "$D/ou/seg-00000000000000000001.mj"
  chmod 600 "$D/ou/seg-00000000000000000001.mj"
  sv_refuses "seg-00000000000000000001.mj: owned by another user" -- --state-dir "$D/ou"
  mkdir -p "$D/herp/st"; chmod 700 "$D/herp/st"; chown "$U" "$D/herp"
  sv_refuses "the state directory $D/herp/st: $D/herp belongs to another user" \
    -- --state-dir "$D/herp/st"
fi

if [ "$fail" = 0 ]; then
  echo "all root-safety checks passed"
else
  echo "some root-safety checks FAILED"
fi
exit "$fail"
