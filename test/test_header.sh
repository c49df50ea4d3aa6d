#!/usr/bin/env bash
# test_header.sh - mealy.h as a user meets it: compile the README's first
# example (machines/examples/pinger.c) with nothing but the public header,
# under plain -std=c11 -Wall -Wextra -Wimplicit-fallthrough -Werror, with
# gcc (also -Wjump-misses-init, the flag that catches a local used across
# a wait) and with clang; check that a local used across a wait is caught;
# then run the example built by meson.
# Usage: test_header.sh INCLUDE_DIR PINGER_C PINGER_EXE
set -u
inc=$1 src=$2 exe=$3
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
uv_cflags=$(pkg-config --cflags libuv)

for cc in gcc clang; do
  if ! command -v "$cc" >/dev/null; then
    echo "FAIL: $cc is not installed (test/run-all.sh installs it)"
    fail=1
    continue
  fi
  extra=()
  [ "$cc" = gcc ] && extra=(-Wjump-misses-init)
  if "$cc" -std=c11 -Wall -Wextra -Wimplicit-fallthrough -Werror "${extra[@]}" \
      -I"$inc" $uv_cflags -c "$src" -o "$tmp/pinger-$cc.o" 2>"$tmp/err"; then
    echo "ok: $cc -std=c11 -Wall -Wextra -Wimplicit-fallthrough ${extra[*]}"
  else
    echo "FAIL: $cc -std=c11 on $src:"
    cat "$tmp/err"
    fail=1
  fi
done

# The flag finds the mistake the header warns about.
cat >"$tmp/bad.c" <<'C'
#include <mealy.h>
#define BAD_POINTS(X) X(bad, napping)
MLY_POINTS(bad, BAD_POINTS);
int bad_run(mly_machine *m, void *data);
int bad_run(mly_machine *m, void *data) {
  (void)data;
  MLY_BEGIN(m);
  int tries = 3; /* a local: garbage after the wait */
  while (tries-- > 0) MLY_SLEEP_AT(m, bad_napping, 1);
  MLY_END(m);
}
C
if gcc -std=c11 -Wall -Wextra -Werror -Wjump-misses-init -I"$inc" $uv_cflags \
    -c "$tmp/bad.c" -o "$tmp/bad.o" 2>"$tmp/err"; then
  echo "FAIL: -Wjump-misses-init did not catch a local used across a wait"
  fail=1
elif grep -q "jump-misses-init" "$tmp/err"; then
  echo "ok: gcc -Wjump-misses-init catches a local used across a wait"
else
  echo "FAIL: the bad example failed for another reason:"
  cat "$tmp/err"
  fail=1
fi

# Included after a system header under strict C11: a clear message.
{ echo '#include <stdio.h>'; cat "$src"; } >"$tmp/late.c"
if gcc -std=c11 -I"$inc" $uv_cflags -c "$tmp/late.c" -o "$tmp/late.o" 2>"$tmp/err"; then
  echo "ok: mealy.h after <stdio.h> compiles"
elif grep -q "include <mealy.h> first" "$tmp/err"; then
  echo "ok: mealy.h after <stdio.h> under -std=c11 says what to do"
else
  echo "FAIL: mealy.h after <stdio.h>:"
  cat "$tmp/err"
  fail=1
fi

if out=$("$exe"); then
  echo "ok: $out" | head -3
else
  echo "FAIL: the example: $out"
  fail=1
fi
exit $fail
