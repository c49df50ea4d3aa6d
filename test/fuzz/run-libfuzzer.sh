#!/usr/bin/env bash
# run-libfuzzer.sh - build a fuzz target as a real libFuzzer binary
# (clang, -fsanitize=fuzzer,address,undefined) and run it.
#
#   test/fuzz/run-libfuzzer.sh [SECONDS] [libFuzzer flags...]
#   FUZZ_TARGET=fsm test/fuzz/run-libfuzzer.sh [SECONDS] ...
#
# FUZZ_TARGET: journal (default: fuzz_journal.c) or fsm (fuzz_fsm.c, the
# YAML machine loader: its seeds are the driver's, test/fsm/ and
# fsm-crashes/; the output goes to OUT/fsm/).
# It compiles the target with the library's sources (lib/*.c), makes the
# seed corpus with the standalone driver (--write-seeds: real journals
# the workload writes), and fuzzes for SECONDS (default 60) from those
# and the regression inputs in crashes/, keeping what it learns in
# OUT/corpus for the next run.  Exits non-zero on a crash, a
# failed check, a sanitizer report, a leak, a timeout (10 s an input) or
# an allocation past 64 MiB; the input is then in OUT/artifacts/.  OUT is
# FUZZ_OUT, default build-libfuzzer/ at the top of the tree.  CC picks
# the compiler (default clang); it needs libFuzzer (Debian: clang with
# libclang-rt-NN-dev, which clang pulls in).  To replay one input:
# OUT/fuzz_journal_libfuzzer FILE.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${FUZZ_OUT:-$top/build-libfuzzer}
secs=${1:-60}
[ $# -gt 0 ] && shift
cc=${CC:-clang}

if ! command -v "$cc" >/dev/null; then
  echo "run-libfuzzer.sh: $cc not found (apt-get install clang)" >&2
  exit 2
fi
case $secs in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS] [libFuzzer flags...]" >&2; exit 2 ;;
esac

target=${FUZZ_TARGET:-journal}
case $target in
  journal) ;;
  fsm) out=$out/fsm ;;
  *) echo "run-libfuzzer.sh: FUZZ_TARGET is journal or fsm" >&2; exit 2 ;;
esac
mkdir -p "$out/corpus" "$out/artifacts"
read -r -a pkg_cflags <<<"$(pkg-config --cflags libuv yaml-0.1 msgpack nettle)"
read -r -a pkg_libs <<<"$(pkg-config --libs libuv yaml-0.1 msgpack nettle)"
cflags=(-g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror
        -fno-omit-frame-pointer -fno-sanitize-recover=all
        -I"$top/lib" -I"$top/lib/include" "${pkg_cflags[@]}")
libs=("${pkg_libs[@]}" -lpthread -lm)
lib_src=("$top"/lib/*.c "$top"/lib/conf/*.c "$top"/lib/fsm/*.c)

if [ "$target" = fsm ]; then
  echo "run-libfuzzer.sh: building the loader's target in $out"
  "$cc" "${cflags[@]}" -fsanitize=address,undefined \
    "$here"/fuzz_main.c "$here"/fuzz_fsm_seeds.c "$here"/fuzz_corpus.c \
    "$here"/fuzz_mutate.c "$here"/fuzz_fsm.c "${lib_src[@]}" \
    -o "$out/fuzz_fsm_driver" "${libs[@]}"
  "$cc" "${cflags[@]}" -fsanitize=fuzzer,address,undefined \
    "$here"/fuzz_fsm.c "${lib_src[@]}" -o "$out/fuzz_fsm_libfuzzer" "${libs[@]}"
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
  rm -rf "$out/seeds"
  "$out/fuzz_fsm_driver" --write-seeds "$out/seeds"
  echo "run-libfuzzer.sh: fuzzing for $secs s"
  rc=0
  "$out/fuzz_fsm_libfuzzer" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=64 -max_len=16384 \
    -dict="$here/fsm.dict" \
    -artifact_prefix="$out/artifacts/" -print_final_stats=1 "$@" \
    "$out/corpus" "$out/seeds" "$top/test/fsm" "$here/fsm-crashes" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "run-libfuzzer.sh: FAILED (exit $rc); the input is in $out/artifacts/" >&2
    exit 1
  fi
  echo "run-libfuzzer.sh: no crash in $secs s"
  exit 0
fi

echo "run-libfuzzer.sh: building in $out"
# the seed corpus comes from the standalone driver: a real journal
"$cc" "${cflags[@]}" -fsanitize=address,undefined \
  "$here"/fuzz_main.c "$here"/fuzz_seeds.c "$here"/fuzz_corpus.c \
  "$here"/fuzz_mutate.c \
  "$here"/fuzz_journal.c "$here"/workload.c "${lib_src[@]}" \
  -o "$out/fuzz_journal_driver" "${libs[@]}"
"$cc" "${cflags[@]}" -fsanitize=fuzzer,address,undefined \
  "$here"/fuzz_journal.c "$here"/workload.c "${lib_src[@]}" \
  -o "$out/fuzz_journal_libfuzzer" "${libs[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
rm -rf "$out/seeds"
"$out/fuzz_journal_driver" --write-seeds "$out/seeds"

echo "run-libfuzzer.sh: fuzzing for $secs s"
rc=0
"$out/fuzz_journal_libfuzzer" -max_total_time="$secs" -timeout=10 \
  -rss_limit_mb=2048 -malloc_limit_mb=64 -max_len=65536 \
  -artifact_prefix="$out/artifacts/" -print_final_stats=1 "$@" \
  "$out/corpus" "$out/seeds" "$here/crashes" || rc=$?
if [ "$rc" != 0 ]; then
  echo "run-libfuzzer.sh: FAILED (exit $rc); the input is in $out/artifacts/" >&2
  exit 1
fi
echo "run-libfuzzer.sh: no crash in $secs s"
