#!/bin/bash
# test_store_param.sh - MLY_TEST_STORE is a parameter of the durable
# suites (store_param.h): the default and "journal" run them on the
# journal, and a name the test build does not know fails the suite,
# loudly, instead of skipping it.  The journal-only marks (store_param.h,
# harness.h): a suite with marked tests (MARKED_EXE, 4 of them) lists
# them by name on another store, counts them, and fails when
# MLY_TEST_JOURNAL_ONLY claims another count; on the journal it lists
# none.  (CK_RUN_CASE names no case: the marks are made when the suite is
# built, no test runs, so no cluster is needed.)  The shell suites'
# store_args refuses an unknown store, and journal_only says what it
# leaves out.
#   usage: test_store_param.sh SUITE_EXE MARKED_EXE PROC_HELPERS
set -u
exe=$1 marked=$2 helpers=$3
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
# journal-only marks, listed and counted
MLY_TEST_STORE=postgresql CK_RUN_CASE=no-such-case MLY_TEST_JOURNAL_ONLY=4 \
  "$marked" > "$out" 2>&1; rc=$?
n=$(grep -c "^journal only: t_[a-z_]* (not run on postgresql)$" "$out")
if [ $rc != 0 ] || [ "$n" != 4 ] ||
   ! grep -q "^postgresql: 4 tests journal only, not run here" "$out" ||
   ! grep -q "^journal only: t_post_sync_fails_unknown " "$out"; then
  echo "FAIL: the marked tests are not listed and counted (rc $rc, $n lines):"
  cat "$out"; fail=1
fi
MLY_TEST_STORE=postgresql CK_RUN_CASE=no-such-case MLY_TEST_JOURNAL_ONLY=0 \
  "$marked" > "$out" 2>&1
if [ $? = 0 ] || ! grep -q "^FAIL: 4 tests are marked journal only" "$out"; then
  echo "FAIL: a claim of full coverage with marked tests passed:"
  cat "$out"; fail=1
fi
MLY_TEST_STORE=journal CK_RUN_CASE=no-such-case MLY_TEST_JOURNAL_ONLY=0 \
  "$marked" > "$out" 2>&1
if [ $? != 0 ] || grep -q "journal only" "$out"; then
  echo "FAIL: on the journal a marked test is left out:"; cat "$out"; fail=1
fi
# the shell suites' parameter
out2=$(MLY_TEST_STORE=no-such-store bash -c \
  'source "$1"; store_args /bin/false /tmp/x; echo went on' _ "$helpers" 2>&1)
if [ $? = 0 ] || grep -q "went on" <<<"$out2" ||
   ! grep -q "MLY_TEST_STORE=no-such-store: no such store" <<<"$out2"; then
  echo "FAIL: store_args took an unknown store: $out2"; fail=1
fi
out2=$(MLY_TEST_STORE=postgresql bash -c \
  'source "$1"; C=sec; journal_only "files on disk" || echo left out' _ "$helpers")
if [ "$out2" != "journal only: sec: files on disk (not checked on postgresql)
left out" ]; then
  echo "FAIL: journal_only on postgresql said: $out2"; fail=1
fi
out2=$(bash -c 'source "$1"; store_args /bin/false /tmp/x; echo "${STORE_ARGS[*]}"; journal_only x && echo checked' _ "$helpers")
if [ "$out2" != "--state-dir /tmp/x
checked" ]; then
  echo "FAIL: store_args on the journal said: $out2"; fail=1
fi
[ $fail = 0 ] && echo "ok: the store is a test parameter; an unknown one fails; journal-only tests are listed and counted"
exit $fail
