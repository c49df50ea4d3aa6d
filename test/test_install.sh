#!/usr/bin/env bash
# test_install.sh - `meson install` as a packager runs it: install into a
# temporary DESTDIR, check each file is there and is what it should be
# (the binary runs, the header is the source's, the man pages render
# without warnings, the unit passes systemd-analyze, the completion
# completes), then build an outside program against the installed
# mealy.pc with nothing but pkg-config, and run it.
#
# usage: test_install.sh BUILD_DIR PINGER_C PREFIX BINDIR LIBDIR INCLUDEDIR
#                        MANDIR UNITDIR COMPLDIR SANITIZE
set -u
[ $# -eq 10 ] || { echo "usage: $0 BUILD PINGER_C PREFIX BINDIR LIBDIR" \
  "INCLUDEDIR MANDIR UNITDIR COMPLDIR SANITIZE" >&2; exit 2; }
build=$1 pinger=$2 prefix=$3 bindir=$4 libdir=$5 incdir=$6 mandir=$7
unitdir=$8 compldir=$9 sanitize=${10}
src=$(cd "$(dirname "$0")/.." && pwd)
fail=0
n=0
ok() { n=$((n + 1)); echo "ok: $1"; }
bad() { n=$((n + 1)); echo "FAIL: $1"; fail=1; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mealy-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

abs() { case $1 in /*) echo "$1";; *) echo "$prefix/$1";; esac; }
root=$tmp/dest
B=$root$(abs "$bindir") L=$root$(abs "$libdir") I=$root$(abs "$incdir")
M=$root$(abs "$mandir") U=$root$(abs "$unitdir") C=$root$(abs "$compldir")

if ! meson install -C "$build" --destdir "$root" --no-rebuild --quiet \
    >"$tmp/install.log" 2>&1; then
  cat "$tmp/install.log"
  bad "meson install into DESTDIR"
  echo "$((n - fail)) passed, $fail failed"
  exit 1
fi
ok "meson install into DESTDIR"

# ---- every file, in its place ----
for f in "$B/mealy" "$I/mealy.h" "$L/libmealy.so" "$L/libmealy.a" \
         "$L/pkgconfig/mealy.pc" "$U/mealy.service" "$C/mealy" \
         "$M/man1/mealy.1" "$M/man1/mealy-supervise.1" "$M/man1/mealy-ctl.1" \
         "$M/man1/mealy-journal.1" "$M/man1/mealy-store.1" \
         "$M/man1/mealy-fsm.1" "$M/man1/mealy-queue.1"; do
  check "installed: ${f#"$root"}" test -s "$f"
done
check "nothing is installed outside the prefix" \
  test -z "$(cd "$root" && find . -mindepth 1 -maxdepth 1 ! -name "$(echo "$prefix" | cut -d/ -f2)")"
check "the binary runs and says its version" \
  bash -c "'$B/mealy' version | grep -q '^mealy [0-9]'"
check "the header is the source's" cmp -s "$I/mealy.h" "$src/lib/include/mealy.h"
check "libmealy.so is a link to the versioned library" test -L "$L/libmealy.so"

# ---- man pages: they render, with no groff warning ----
for p in mealy mealy-supervise mealy-ctl mealy-journal mealy-store mealy-fsm \
         mealy-queue; do
  f=$M/man1/$p.1
  check "$p(1) has no groff warning" \
    bash -c "[ -z \"\$(groff -man -ww -z -Tutf8 '$f' 2>&1)\" ]"
  check "$p(1) renders, its NAME and version filled in" \
    bash -c "MANWIDTH=80 man -l '$f' 2>/dev/null | grep -q '^NAME' &&
             ! grep -q '@[A-Z]*@' '$f'"
done

# ---- the unit ----
check "the unit is Type=notify, on the installed binary" \
  bash -c "grep -qx 'Type=notify' '$U/mealy.service' &&
           grep -q '^ExecStart=$(abs "$bindir")/mealy supervise' '$U/mealy.service'"
sed "s|$(abs "$bindir")/mealy|$B/mealy|g" "$U/mealy.service" >"$tmp/mealy.service"
if systemd-analyze verify --man=no "$tmp/mealy.service" >"$tmp/verify" 2>&1 &&
   ! grep -q . "$tmp/verify"; then
  ok "systemd-analyze verify finds nothing in the unit"
else
  cat "$tmp/verify"
  bad "systemd-analyze verify finds nothing in the unit"
fi

# ---- bash completion ----
complete_words() { # the words typed so far (the last one being completed)
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1));
           _mealy; echo "${COMPREPLY[*]}"' _ "$C/mealy" "$@"
}
check "completion: mealy ct -> ctl" test "$(complete_words mealy ct)" = ctl
check "completion: mealy ctl st -> status start stop" \
  test "$(complete_words mealy ctl st)" = "status start stop"
check "completion: mealy journal '' -> its actions" \
  test "$(complete_words mealy journal '')" = "stat dump check compact"
check "completion: mealy store '' -> its actions" \
  test "$(complete_words mealy store '')" = "init migrate stat"
check "completion: mealy supervise --ch -> --check" \
  test "$(complete_words mealy supervise --ch)" = "--check"
check "completion: mealy ctl status - -> --json only" \
  test "$(complete_words mealy ctl status -)" = "--json"
check "completion: mealy ctl tail x - -> -n --escape" \
  test "$(complete_words mealy ctl tail x -)" = "-n --escape"
check "completion: mealy ctl --t -> --timeout" \
  test "$(complete_words mealy ctl --t)" = "--timeout"

# ---- an outside program, built against the installed mealy.pc ----
export PKG_CONFIG_PATH=$L/pkgconfig
pc=(pkg-config --define-variable=prefix="$root$prefix")
check "pkg-config finds mealy $("${pc[@]}" --modversion mealy 2>/dev/null)" \
  "${pc[@]}" --exists mealy
cflags=$("${pc[@]}" --cflags mealy) libs=$("${pc[@]}" --libs mealy)
check "its -I is the installed include directory" \
  bash -c "[[ ' $cflags ' == *' -I$I '* ]]"
check "--static names the private dependencies (libyaml, msgpack)" \
  bash -c "\"\${@}\" --static --libs mealy | grep -q -- -lyaml" _ "${pc[@]}"
san=()
[ "$sanitize" != none ] && san=(-fsanitize="$sanitize")
# shellcheck disable=SC2086 # pkg-config's words are words
if cc -std=c11 "${san[@]}" $cflags "$pinger" -o "$tmp/pinger" $libs \
    2>"$tmp/cc.err"; then
  ok "cc \$(pkg-config --cflags --libs mealy) builds an outside program"
else
  cat "$tmp/cc.err"
  bad "cc \$(pkg-config --cflags --libs mealy) builds an outside program"
fi
check "it is linked to the shared libmealy" \
  bash -c "readelf -d '$tmp/pinger' | grep -q 'NEEDED.*libmealy.so'"
check "it runs against the installed library, and succeeds" \
  env LD_LIBRARY_PATH="$L" "$tmp/pinger"
check "... and that library is the installed one" bash -c \
  "LD_LIBRARY_PATH='$L' ldd '$tmp/pinger' | grep -q 'libmealy.so.* => $L/'"

echo "$((n - fail)) passed, $fail failed"
exit $fail
