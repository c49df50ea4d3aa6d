#!/usr/bin/env bash
# Integration: the supervisor's own I/O (issue 9 sections 1, 4, 5; issue
# 10 sections 3, 5), against the real binary and real processes.  It never
# dies or stalls because of its output or its clients; bytes are bytes;
# log files follow rotations; output survives its SIGKILL; messages say
# what is wrong; what reaches a terminal is escaped; every client is
# bounded.
#
# The helpers (cases, polls, process checks) are test_supervise.sh's.
#
# usage: test_supervise_io.sh PATH/TO/mealy
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SV_HELPERS_ONLY=1
# shellcheck source=test_supervise.sh
source "$here/test_supervise.sh" "$@"
py=$(command -v python3) || { echo "FAIL: python3 is needed"; exit 1; }
client() { timeout 60 "$py" "$here/sv_client.py" "$@"; }
# ctl bounded by its own --timeout: a stalled supervisor fails a poll at
# once instead of holding each try for timeout(1)'s 20 s
tctl() { timeout 20 "$mealy" ctl -s "$SOCK" --timeout 3s "$@"; }
has_bytes() { # FILE PYTHON-BYTES-LITERAL: the file holds those bytes
  "$py" -c "import sys; sys.exit(0 if $2 in open(sys.argv[1],'rb').read() else 1)" "$1"
}
lacks_byte() { # FILE HEX: the file does not hold that byte
  "$py" -c "import sys; sys.exit(1 if bytes.fromhex('$2') in open(sys.argv[1],'rb').read() else 0)" "$1"
}

###########################################################################
case_begin io1 "SIGPIPE: clients that hang up, a reader that goes away"
cat >"$CFG" <<EOF
programs:
  chatty:
    command: "while :; do echo tick; sleep 0.05; done"
    shell: true
  big:
    command: "i=0; while [ \$i -lt 200 ]; do echo line-\$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=\$((i+1)); done; exec sleep 1000"
    shell: true
EOF
if sv_start; then
  check "ignored: SIGPIPE is in the supervisor's ignored set" \
    eval '(( 0x$(sed -n "s/^SigIgn:\t//p" /proc/$SVPID/status) & (1 << 12) ))'
  check "big wrote its 200 lines" poll 100 tail_has big line-199-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
  check "50 clients send status and close without reading" \
    eq "$(client noread "$SOCK" 50)" done
  check "the supervisor is alive" alive "$SVPID"
  check "it still answers" ctl_quiet status
  # a large answer to a client gone: tail of 200 long lines, 50 times
  for _ in $(seq 50); do
    "$py" -c "
import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(bytes([0x94,0,1,0xa4])+b'tail'+bytes([0x92,0xa3])+b'big'+bytes([0xcc,200])); s.close()" "$SOCK"
  done
  check "after 50 large answers to nobody: alive, answers" \
    eval 'alive "$SVPID" && ctl_quiet status'
  ichild=$(pid_of chatty)
  check "a program does not inherit the ignored SIGPIPE" \
    eval '! (( 0x$(sed -n "s/^SigIgn:\t//p" /proc/$ichild/status) & (1 << 12) ))'
fi
case_end

case_begin io1b "mealy supervise | head -3: the reader goes, the supervisor stays"
cat >"$CFG" <<EOF
programs:
  chatty:
    command: "while :; do echo tick; sleep 0.02; done"
    shell: true
EOF
: >"$LOG"
MEALY_TEST_MARK="$MARK" "$mealy" supervise "$CFG" -s "$SOCK" > >(head -3 >"$D/head.out") 2>"$D/err" &
SVPID=$!
SVPIDS+=("$SVPID")
if poll 100 ctl_quiet status; then
  check "head printed 3 lines and is gone" poll 100 eval '[ "$(wc -l <"$D/head.out")" = 3 ]'
  sleep 0.5 # chatty writes 25 more lines into the closed pipe meanwhile
  check "the supervisor is alive after its reader left" alive "$SVPID"
  check "it answers" ctl_quiet status
  check "chatty still runs" running chatty
  kill -TERM "$SVPID"
  if sv_wait; then
    check "SIGTERM: exit 0 (got $SVRC; 141 is death by SIGPIPE)" eq "$SVRC" 0
  else
    bad "SIGTERM: the supervisor ends"
  fi
else
  bad "the supervisor answers on $SOCK"
fi
case_end

case_begin io1c "mealy demo | head -1: another long-running command"
( "$mealy" demo --port 0 --config-after 100ms --for 1500ms | head -1 >/dev/null
  echo "${PIPESTATUS[0]}" >"$D/demo.rc" )
check "the demo ends by itself with status 0 (got $(cat "$D/demo.rc"))" \
  eq "$(cat "$D/demo.rc")" 0
mkfifo "$D/fifo"
exec {rfd}<>"$D/fifo" # a reader that never reads
timeout -k 5 60 "$mealy" demo --port 0 --config-after 100ms --status-every 5ms \
  --for 1500ms >"$D/fifo" 2>&1
rc=$?
check "the demo with a stalled reader still ends on time, status 0 (got $rc)" eq "$rc" 0
exec {rfd}<&-
case_end

###########################################################################
case_begin io2 "fds 0-2 closed at start: reopened on /dev/null"
cat >"$CFG" <<EOF
programs:
  inherit:
    command: "while :; do echo out; echo err >&2; sleep 0.05; done"
    shell: true
  quiet:
    command: [sleep, "1000"]
EOF
: >"$LOG"
MEALY_TEST_MARK="$MARK" "$mealy" supervise "$CFG" -s "$SOCK" <&- >&- 2>&- &
SVPID=$!
SVPIDS+=("$SVPID")
if poll 100 ctl_quiet status; then
  check "inherit runs" poll 100 running inherit
  ipid=$(pid_of inherit)
  sleep 0.5
  check "inherit is still the same process (no SIGABRT, no EPIPE death)" \
    eq "$(pid_of inherit)" "$ipid"
  check "no restart happened" eq "$(field inherit restarts)" 0
  for fd in 0 1 2; do
    check "the supervisor's fd $fd is /dev/null" \
      eq "$(readlink "/proc/$SVPID/fd/$fd")" /dev/null
  done
  check "ctl shutdown: ok" eq "$(ctl shutdown 2>&1)" ok
  if sv_wait; then
    check "exit 0, no libuv assertion (got $SVRC; 134 is SIGABRT)" eq "$SVRC" 0
  else
    bad "the supervisor ends"
  fi
else
  bad "the supervisor answers on $SOCK"
fi
case_end

###########################################################################
case_begin io3 "stdout into a FIFO whose reader stops: no stall, drops counted"
mkfifo "$D/fifo"
exec {rfd}<>"$D/fifo"   # the reader: this shell, which does not read
cat >"$CFG" <<EOF
programs:
  flood:
    command: "i=0; while :; do i=\$((i+1)); echo flood-\$i-yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy; done"
    shell: true
  counter:
    command: "i=0; while :; do i=\$((i+1)); echo c\$i; sleep 0.05; done"
    shell: true
    stdout: $D/counter.log
EOF
MEALY_TEST_MARK="$MARK" "$mealy" supervise "$CFG" -s "$SOCK" >"$D/fifo" 2>&1 &
SVPID=$!
SVPIDS+=("$SVPID")
if poll 100 eval 'tctl status >/dev/null 2>&1'; then
  # the pipe (64 KiB) and the supervisor's queue (256 KiB) are full long
  # before this: everything after is dropped, and nothing waits
  check "flood has written more than 20000 lines" poll 200 eval \
    '[ "$(tctl tail flood -n 1 | sed "s/^flood-\([0-9]*\)-.*/\1/")" -gt 20000 ] 2>/dev/null'
  check "ctl status answers while nobody reads the output" \
    eval 'tctl status >/dev/null'
  n1=$(wc -l <"$D/counter.log")
  check "other programs' file logs keep growing" \
    poll 100 eval '[ "$(wc -l <"$D/counter.log")" -gt $((n1 + 5)) ]'
  # a reader again: the queue drains and says how much was dropped
  cat <&$rfd >"$D/drained" &
  catpid=$!
  check "the output says how many lines were dropped" \
    poll 100 grep -qE '^[0-9:.]+ mealy +[0-9]+ lines of output dropped: nobody was reading it' "$D/drained"
  kill "$catpid" 2>/dev/null
  wait "$catpid" 2>/dev/null
  # stalled again: SIGTERM is acted on at once
  kill -TERM "$SVPID"
  if sv_wait; then
    check "SIGTERM with a stalled reader: exit 0 (got $SVRC)" eq "$SVRC" 0
  else
    bad "SIGTERM with a stalled reader: the supervisor ends"
  fi
else
  bad "the supervisor answers on $SOCK"
fi
exec {rfd}<&-
case_end

###########################################################################
case_begin io4 "mealy ctl --timeout"
cat >"$CFG" <<EOF
programs:
  svc:
    command: [sleep, "1000"]
EOF
if sv_start; then
  kill -STOP "$SVPID"
  out=$(timeout 20 "$mealy" ctl -s "$SOCK" --timeout 300ms status 2>&1); rc=$?
  check "a stopped supervisor: ctl --timeout 300ms exits 1 (got $rc)" eq "$rc" 1
  check "it says the timeout fired ($out)" \
    grep -q "no answer from $SOCK within 300ms (--timeout)" <<<"$out"
  out=$(timeout 30 "$mealy" ctl -s "$SOCK" status 2>&1); rc=$?
  check "the default timeout fires too: exit 1, not killed by timeout(1) (got $rc)" eq "$rc" 1
  check "the default is 5s ($out)" grep -q "within 5s (--timeout)" <<<"$out"
  kill -CONT "$SVPID"
  check "after SIGCONT it answers again" poll 100 ctl_quiet status
  out=$(timeout 20 "$mealy" ctl -s "$SOCK" --timeout soon status 2>&1); rc=$?
  check "--timeout soon: exit 2, says what to write ($out)" \
    eval '[ "$rc" = 2 ] && grep -q "is not a duration" <<<"$out"'
fi
case_end

###########################################################################
case_begin io5 "bytes are bytes: a NUL survives inherit, files and ctl tail"
cat >"$CFG" <<EOF
programs:
  nul:
    command: "printf 'before\\\\000after\\\\n'; exec sleep 1000"
    shell: true
  nulfile:
    command: "printf 'before\\\\000after\\\\n'; exec sleep 1000"
    shell: true
    stdout: $D/nul.log
EOF
if sv_start; then
  check "nul runs" poll 100 running nul
  check "inherit: the supervisor's output holds '[nul] before\\0after'" \
    poll 100 has_bytes "$LOG" "b'[nul] before\\x00after\\n'"
  ctl tail nul >"$D/tail.out"
  check "ctl tail (not a terminal): the bytes as written" \
    has_bytes "$D/tail.out" "b'before\\x00after\\n'"
  check "a log file: the bytes as written" \
    poll 100 has_bytes "$D/nul.log" "b'before\\x00after\\n'"
  check "ctl tail --escape: before\\x00after" \
    eq "$(ctl tail nul --escape)" 'before\x00after'
fi
case_end

###########################################################################
case_begin io6 "control characters: escaped on a terminal and in messages"
cat >"$CFG" <<EOF
programs:
  evil:
    command: "printf '\\\\033[31mRED\\\\033[0m \\\\302\\\\233 \\\\342\\\\200\\\\256gnp.exe\\\\n'; exec sleep 1000"
    shell: true
EOF
want='\x1b[31mRED\x1b[0m \u009b \u202egnp.exe'
if sv_start; then
  check "evil runs" poll 100 running evil
  check "not a terminal: the raw bytes, unchanged (log)" \
    poll 100 has_bytes "$LOG" "b'[evil] \\x1b[31mRED\\x1b[0m \\xc2\\x9b \\xe2\\x80\\xaegnp.exe\\n'"
  check "ctl tail --escape: escaped as journalctl does" \
    eq "$(ctl tail evil --escape)" "$want"
  if command -v script >/dev/null; then
    script -qec "timeout 20 $mealy ctl -s $SOCK tail evil" "$D/tty.out" >/dev/null 2>&1
    check "ctl tail on a terminal: escaped" grep -qF "$want" "$D/tty.out"
    check "ctl tail on a terminal: no raw ESC" lacks_byte "$D/tty.out" 1b
  else
    bad "script(1) (util-linux) is needed to test a terminal"
  fi
  # a message that quotes input: an unknown method named with ESC and U+202E
  client method "$SOCK" "1b5b324ae280ae" >"$D/answer"
  check "unknown method: the answer quotes it escaped" \
    grep -qF "unknown method '\\x1b[2J\\u202e'" "$D/answer"
  check "unknown method: no raw ESC in the answer" lacks_byte "$D/answer" 1b
fi
case_end

case_begin io6b "the supervisor on a terminal escapes its programs' output"
if command -v script >/dev/null; then
  cat >"$CFG" <<EOF
programs:
  evil:
    command: "printf '\\\\033]0;owned\\\\007\\\\033[2Jx\\\\n'; exec sleep 1000"
    shell: true
EOF
  MEALY_TEST_MARK="$MARK" script -qfec "$mealy supervise $CFG -s $SOCK" "$D/tty.out" >/dev/null 2>&1 &
  SVPIDS+=("$!")
  if poll 100 ctl_quiet status; then
    SVPID=$(pgrep -f "^$mealy supervise $CFG" | head -n1)
    check "evil runs" poll 100 running evil
    check "the terminal shows [evil] \\x1b]0;owned\\x07\\x1b[2Jx" \
      poll 100 grep -qF '[evil] \x1b]0;owned\x07\x1b[2Jx' "$D/tty.out"
    check "no raw ESC reached the terminal" lacks_byte "$D/tty.out" 1b
  else
    bad "the supervisor answers on $SOCK"
  fi
else
  bad "script(1) (util-linux) is needed to test a terminal"
fi
case_end

case_begin io6c "configuration errors quote input escaped"
printf 'programs:\n  a:\n    command: [x]\n    restart: "\\e[2J\\u202e"\n' >"$D/esc.yaml"
out=$("$mealy" supervise --check "$D/esc.yaml" 2>&1); rc=$?
printf '%s' "$out" >"$D/esc.out"
check "--check refuses it: exit 1 (got $rc)" eq "$rc" 1
check "the message quotes the value escaped ($out)" \
  grep -qF "'\\x1b[2J\\u202e'" "$D/esc.out"
check "no raw ESC in the message" lacks_byte "$D/esc.out" 1b
check "no raw U+202E in the message" lacks_byte "$D/esc.out" e280ae
case_end

###########################################################################
case_begin io7 "log files: moved, removed, SIGHUP, ctl reopen"
cat >"$CFG" <<EOF
programs:
  w:
    command: "i=0; while :; do i=\$((i+1)); echo w\$i; sleep 0.05; done"
    shell: true
    stdout: $D/w.log
EOF
grows() { [ -s "$1" ] && [ "$(wc -l <"$1")" -ge "${2:-3}" ]; }
if sv_start; then
  check "w.log fills" poll 100 grows "$D/w.log"
  mv "$D/w.log" "$D/w.log.moved"
  check "moved: a new w.log is written" poll 100 grows "$D/w.log"
  check "log: it noticed" logged w "log $D/w.log was removed or moved: opening it anew"
  check "moved: nothing lost, nothing out of order across the two files" \
    eval 'cat "$D/w.log.moved" "$D/w.log" | tr -d w | awk "NR != \$1 {exit 1}"'
  rm "$D/w.log"
  check "removed: a new w.log is written" poll 100 grows "$D/w.log"
  check "removed: noticed too" eval '[ "$(count w "log .* was removed or moved")" = 2 ]'
  check "ctl reopen: ok" eq "$(ctl reopen 2>&1)" ok
  check "log: reopening log files" logged mealy 'reopening log files'
  mv "$D/w.log" "$D/w.log.hup"
  kill -HUP "$SVPID"
  check "SIGHUP: reloads" poll 100 logged mealy 'reloading'
  check "SIGHUP: a new w.log is written" poll 100 grows "$D/w.log"
  check "SIGHUP: nothing lost across the move" \
    eval 'cat "$D/w.log.hup" "$D/w.log" | tr -d w | awk "NR>1 && \$1 != p+1 {exit 1} {p=\$1}"'
fi
case_end

###########################################################################
case_begin io8 "state_dir: a program that writes survives the supervisor's SIGKILL"
cat >"$CFG" <<EOF
state_dir: $D/state
programs:
  w:
    command: "i=0; while :; do i=\$((i+1)); echo n\$i; if [ -e $D/burst ] && [ ! -e $D/burst.done ]; then : >$D/burst.done; seq 1 30000 | sed 's/^/b/'; echo burst-end; fi; sleep 0.1; done"
    shell: true
    stdout: $D/w.log
EOF
if sv_start; then
  check "w runs" poll 100 running w
  wpid=$(pid_of w)
  check "its stdout is a FIFO in the state directory" test -p "$D/state/fifo-w.out"
  check "w.log fills" poll 100 grows "$D/w.log" 3
  sleep 0.3
  kill -KILL "$SVPID"
  sv_wait
  touch "$D/burst" # 30000 lines, 200 KB: more than a pipe holds
  sleep 1.5        # 10 writes and the burst with no supervisor
  check "w is alive after writing with no supervisor (no SIGPIPE)" alive "$wpid"
  blocked() { # a process of w's group waits in pipe_write
    local q
    for q in $(group_members "$wpid"); do
      grep -q pipe_write "/proc/$q/wchan" 2>/dev/null && return 0
    done
    return 1
  }
  check "w is blocked in write once the FIFO is full" poll 100 blocked
  sv_start
  check "w adopted: the same pid" poll 100 eq_field w pid "$wpid"
  check "the burst arrives whole after the restart" poll 200 grep -qx burst-end "$D/w.log"
  check "all 30000 burst lines, in order" \
    eq "$(grep -E '^b[0-9]+$' "$D/w.log" | tr -d b | awk 'NR != $1 {print "gap at " NR; exit} END {print NR}')" 30000
  check "the n lines are consecutive: nothing it wrote was lost" \
    eval 'grep "^n" "$D/w.log" | tr -d n | awk "NR != \$1 {exit 1}"'
  ctl_quiet shutdown
  sv_wait
  check "a clean shutdown removes the FIFOs" \
    eval '! ls "$D/state" | grep -q "^fifo-"'
fi
case_end

###########################################################################
case_begin io9 "spawn errors say which step failed"
cat >"$CFG" <<EOF
programs:
  nocwd:
    command: [/bin/pwd]
    cwd: /nonexistent/dir
    restart: never
  noexe:
    command: [/nonexistent/bin/x]
    restart: never
EOF
if sv_start; then
  check "log: cannot chdir to /nonexistent/dir: No such file or directory" \
    poll 100 logged nocwd 'cannot chdir to /nonexistent/dir: No such file or directory'
  check "log: cannot execute /nonexistent/bin/x: No such file or directory" \
    poll 100 logged noexe 'cannot execute /nonexistent/bin/x: No such file or directory'
fi
case_end

###########################################################################
case_begin io10 "the control socket: a missing directory, someone else's file"
cat >"$CFG" <<EOF
programs:
  svc:
    command: [sleep, "1000"]
EOF
out=$(MEALY_TEST_MARK="$MARK" timeout 20 "$mealy" supervise "$CFG" -s /nonexistent/dir/x.sock 2>&1); rc=$?
check "-s /nonexistent/dir/x.sock: exit 1 (got $rc)" eq "$rc" 1
check "it says the directory does not exist ($out)" \
  grep -q "directory /nonexistent does not exist" <<<"$out"
check "it started nothing" none_marked "$MARK"
if sv_start; then
  first=$SVPID
  firstlog=$LOG
  rm "$SOCK"           # the first one's file is gone ...
  LOG=$D/log.second
  sv_start             # ... and a second supervisor takes the path
  second=$SVPID
  kill -TERM "$first"
  poll 100 gone "$first"
  wait "$first" 2>/dev/null
  check "the first one's exit left the second one's socket in place" test -S "$SOCK"
  check "the first one says so" grep -q "$SOCK is no longer our socket: left in place" "$firstlog"
  check "the second one still answers" ctl_quiet status
  SVPID=$second
fi
case_end

###########################################################################
case_begin io11 "a program stopped by a signal shows as stopped (signal)"
cat >"$CFG" <<EOF
programs:
  p:
    command: [sleep, "1000"]
EOF
if sv_start; then
  check "p runs" poll 100 running p
  kill -STOP "$(pid_of p)"
  check "SIGSTOP: state stopped (signal)" poll 100 state_is p 'stopped (signal)'
  check "the table shows it" grep -qE '^p +stopped \(signal\) ' <<<"$(ctl status)"
  kill -CONT "$(pid_of p)"
  check "SIGCONT: running again" poll 100 state_is p running
fi
case_end

###########################################################################
case_begin io12 "control clients are bounded: pipelining, half requests, idle, too many"
cat >"$CFG" <<EOF
control_timeout: 1s
control_max_clients: 5
programs:
  svc:
    command: [sleep, "1000"]
EOF
if sv_start; then
  # the requests it may send are bounded: once 256 KiB of answers wait,
  # the supervisor reads no more of them (the kernel's socket buffers
  # take a few hundred KiB more); unbounded, it sends gigabytes in 20 s
  out=$(client pipeline "$SOCK" 20)
  check "a client that never reads its answers is closed ($out)" \
    grep -q '^closed ' <<<"$out"
  sent=${out#* }
  check "it could send less than 4 MiB of requests before that ($sent bytes)" \
    test "$sent" -lt 4194304
  check "log: closed a client: it does not read its answers" \
    logged control 'closed a client: it does not read its answers'
  out=$(client big "$SOCK" 100000 | tr '\n' ' ')
  check "half a request larger than 64 KiB: refused and closed ($out)" \
    eq "$out" "too-large closed "
  out=$(client hold "$SOCK" 1 10)
  check "an idle connection is closed after control_timeout ($out)" eq "$out" closed
  check "log: closed a client: no request" logged control 'closed a client: no request'
  out=$(client hold "$SOCK" 8 0.8 | sort | uniq -c | awk '{printf "%s %s ", $1, $2}')
  check "8 at once, 5 allowed: 3 refused, 5 open ($out)" eq "$out" "5 open 3 refused "
  refused=3
  check "it still answers" ctl_quiet status
  # many refusals: a burst of at most 10 log lines a window, the rest counted
  n=$(client hold "$SOCK" 65 3 | grep -c refused)
  check "65 at once: 60 or more refused (got $n)" test "$n" -ge 60
  refused=$((refused + n))
  ctl_quiet shutdown
  sv_wait
  shown=$(count control 'refused a client: too many control connections')
  suppressed=$(grep -oE 'control +[0-9]+ similar messages suppressed' "$LOG" |
    grep -oE '[0-9]+ similar' | awk '{n += $1} END {print n + 0}')
  check "refusals logged: at most 10 a window ($shown shown)" test "$shown" -le 20
  check "refusals: shown + suppressed = $refused ($shown + ${suppressed:-0})" \
    eq $((shown + ${suppressed:-0})) "$refused"
fi
case_end

###########################################################################
echo "== done"
if [ "$fail" = 0 ]; then echo "all supervise-io checks passed"; else echo "some supervise-io checks FAILED"; fi
exit $fail
