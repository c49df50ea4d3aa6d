#!/bin/bash
# mealy-supervise(1) names an installed unit only when one is installed:
# configure with -Dsystemdsystemunitdir=no (and the default) in temporary
# build directories and look at the generated page.
# usage: test_man_nounit.sh SOURCE_ROOT MESON
src=$1 meson=${2:-meson}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0 pass=0
ok() { if eval "$2"; then pass=$((pass+1)); echo "ok: $1"
       else fail=$((fail+1)); echo "FAIL: $1"; fi; }
"$meson" setup "$tmp/no" "$src" -Dsystemdsystemunitdir=no \
  -Dbashcompletiondir=no >"$tmp/no.log" 2>&1 || { cat "$tmp/no.log"; exit 1; }
page=$tmp/no/dist/mealy-supervise.1
ok "the page is generated" '[ -s "$page" ]'
ok "no unit named without a unit (no 'no/mealy.service')" \
  '! grep -q "no/mealy.service" "$page"'
ok "no @...@ left" '! grep -q "@[A-Z]*@" "$page"'
"$meson" setup "$tmp/yes" "$src" -Dsystemdsystemunitdir=/usr/lib/x/system \
  >"$tmp/yes.log" 2>&1 || { cat "$tmp/yes.log"; exit 1; }
ok "the unit is named when installed" \
  'grep -qx ".I /usr/lib/x/system/mealy.service" "$tmp/yes/dist/mealy-supervise.1"'
if command -v man >/dev/null; then
  ok "both pages render without a warning" \
    '[ -z "$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" "$tmp/yes/dist/mealy-supervise.1" 2>&1 >/dev/null)" ]'
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
