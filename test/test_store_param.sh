#!/bin/bash
# test_store_param.sh - MLY_TEST_STORE is a parameter of the durable
# suites (store_param.h): the default and "journal" run them on the
# journal, and a name the test build does not know fails the suite,
# loudly, instead of skipping it.
#   usage: test_store_param.sh SUITE_EXE
set -u
exe=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail=0

for v in "" journal; do
  if ! MLY_TEST_STORE=$v CK_FORK=no "$exe" > "$out" 2>&1; then
    echo "FAIL: MLY_TEST_STORE='$v': the suite failed:"; cat "$out"; fail=1
  fi
done

MLY_TEST_STORE=no-such-store CK_FORK=no "$exe" > "$out" 2>&1
rc=$?
if [ $rc = 0 ]; then
  echo "FAIL: MLY_TEST_STORE=no-such-store: the suite passed"; fail=1
elif ! grep -q "MLY_TEST_STORE=no-such-store: this test build knows no such store" "$out"; then
  echo "FAIL: MLY_TEST_STORE=no-such-store failed (rc $rc) without saying why:"
  cat "$out"; fail=1
fi
[ $fail = 0 ] && echo "ok: the store is a test parameter; an unknown one fails"
exit $fail
