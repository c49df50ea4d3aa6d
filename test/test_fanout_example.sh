#!/bin/bash
# test_fanout_example.sh EXAMPLE YAML - the fan-out/fan-in example counts
# a generated file as wc does, for several batch sizes; killed in the
# middle and run again, it still counts every line once.
set -u
ex=$1 yaml=$2
tmp=$(mktemp -d /tmp/mealy-fanout.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq 1 1037); do
  printf 'line %d has %s\n' "$i" "$(seq -s ' ' 1 $((i % 7)))"
done > "$tmp/in.txt"
want="$(wc -l < "$tmp/in.txt") $(wc -w < "$tmp/in.txt")"
for b in 1 3 10 11 100 5000; do
  rm -rf "$tmp/state" "$tmp/out"
  "$ex" "$yaml" "$tmp/in.txt" "$tmp/out" "$tmp/state" "$b" > "$tmp/log" ||
    { cat "$tmp/log"; echo "FAIL: batch $b: exit status"; exit 1; }
  got=$(cat "$tmp/out")
  [ "$got" = "$want" ] || { echo "FAIL: batch $b: '$got', want '$want'"; exit 1; }
  "$ex" "$yaml" "$tmp/in.txt" "$tmp/out" "$tmp/state" "$b" | grep -q 'finished already' ||
    { echo "FAIL: batch $b: a second run did not say it had finished"; exit 1; }
done
# kill -9 in the middle, several times, then let it finish
rm -rf "$tmp/state" "$tmp/out"
for k in 1 2 3 4 5; do
  "$ex" "$yaml" "$tmp/in.txt" "$tmp/out" "$tmp/state" 2 > /dev/null &
  pid=$!
  sleep "0.0$((RANDOM % 9 + 1))"
  kill -9 $pid 2> /dev/null
  wait $pid 2> /dev/null
done
"$ex" "$yaml" "$tmp/in.txt" "$tmp/out" "$tmp/state" 2 > "$tmp/log" ||
  { cat "$tmp/log"; echo "FAIL: after kills: exit status"; exit 1; }
got=$(cat "$tmp/out")
[ "$got" = "$want" ] || { echo "FAIL: after kills: '$got', want '$want'"; exit 1; }
echo "fanout example: counts exact ($want) for every batch size and across kill -9"
