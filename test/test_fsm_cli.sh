#!/usr/bin/env bash
# Integration: `mealy fsm validate|dot` on the files in test/fsm/: a valid
# file exits 0 and names its machines; a file with many mistakes exits 1
# and prints every one as FILE:LINE:COL (as text and as --json, which
# must parse); dot prints a graph with every state and transition, which
# Graphviz's `dot` renders when it is installed (run-all.sh installs it);
# bad command lines exit 2; every subcommand answers --help.
#
# usage: test_fsm_cli.sh PATH/TO/mealy PATH/TO/test/fsm
set -u
if [ $# -lt 2 ]; then
  echo "usage: $0 PATH/TO/mealy PATH/TO/test/fsm" >&2
  exit 2
fi
mealy=$(readlink -f "$1")
dir=$(readlink -f "$2")
fail=0
check() { # description, command...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fail=1; fi
}
top=$(mktemp -d "${TMPDIR:-/tmp}/mealy-fsmcli.XXXXXX")
trap 'rm -rf "$top"' EXIT

# ---- validate ----
"$mealy" fsm validate "$dir/order.yaml" >"$top/out" 2>"$top/err"
check "a valid file: exit 0" test $? = 0
check "it names the machine and its hash" \
  grep -q '^order: 5 states, sha256 [0-9a-f]\{16\}$' "$top/out"
check "it says action names were not checked" \
  grep -q 'action names not checked (structure only: give --actions LIB.so' "$top/out"
check "nothing on stderr" test ! -s "$top/err"

"$mealy" fsm validate "$dir/errors.yaml" >"$top/out" 2>"$top/err"
check "a bad file: exit 1" test $? = 1
want=(
  "errors.yaml:4:5: unknown key 'colour' in machine 'broken'"
  "errors.yaml:5:13: jitter must be between 0 and 1"
  "errors.yaml:16:23: continuation must be true or false, not 'yes'"
  "errors.yaml:13:29: 'nowhere' is not a state of machine 'broken'"
  "errors.yaml:14:9: state 'lost' is unreachable"
  "errors.yaml:17:9: state 'stuck' is not final and has no transitions"
  "errors.yaml:3:5: machine 'broken' has no final state"
)
for w in "${want[@]}"; do
  check "reported: $w" grep -qF "$w" "$top/err"
done
check "the count of errors ends it" grep -q '^mealy fsm validate: 7 errors$' "$top/err"
check "one note: target is ignored" \
  grep -qF "errors.yaml:6:13: note: 'target' concerns App Engine only" "$top/err"

"$mealy" fsm validate --json "$dir/errors.yaml" "$dir/order.yaml" >"$top/json"
check "--json: exit 1" test $? = 1
check "--json: one object with every error" python3 - "$top/json" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))
assert o["ok"] is False, o
assert len(o["errors"]) == 7, o["errors"]
e = o["errors"][0]
assert set(e) == {"file", "line", "col", "message"}, e
assert any(x["line"] == 13 and x["col"] == 29 for x in o["errors"])
assert len(o["notes"]) == 1 and o["actions_checked"] is False
assert o["machines"] == []
PY
"$mealy" fsm validate --json "$dir/order.yaml" >"$top/json"
check "--json of a valid file: exit 0" test $? = 0
check "--json names the machine, its states and its hash" python3 - "$top/json" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))
assert o["ok"] is True and o["errors"] == []
(m,) = o["machines"]
assert m["name"] == "order" and m["states"] == 5 and len(m["hash"]) == 64
PY

# the README's example, its import given a file to find
readme=$(dirname "$dir")/../README.md
mkdir -p "$top/common"
printf 'state_machines: []\n' >"$top/common/notify.yaml"
python3 - "$readme" "$top/readme.yaml" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
sec = t[t.index("## YAML machines"):]
m = re.search(r"```yaml\n(.*?)```", sec, re.S)
open(sys.argv[2], "w").write(m.group(1))
PY
"$mealy" fsm validate "$top/readme.yaml" >"$top/out" 2>&1
check "the README's example validates" test $? = 0
check "...as one machine of 5 states" grep -q '^order: 5 states' "$top/out"

# ---- dot ----
"$mealy" fsm dot "$dir/order.yaml" >"$top/order.dot"
check "dot: exit 0" test $? = 0
check "dot: every state and transition" python3 - "$top/order.dot" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
assert t.startswith('digraph "order" {') and t.rstrip().endswith("}")
nodes = set(re.findall(r'^  "([^"]+)" \[shape', t, re.M)) - {"__start"}
assert nodes == {"charging", "awaiting", "shipping", "done", "failed"}, nodes
edges = re.findall(r'^  "([^"]+)" -> "([^"]+)" \[(?:style=dashed, )?label="([^"]*)"', t, re.M)
labels = sorted(l.split("\\n")[0] for _, _, l in edges)
assert labels == sorted(["charged", "declined", "paid", "cancelled",
                         "expired", "shipped", "failure"]), labels
assert '"awaiting" [shape=hexagon' in t
assert '"charging" [shape=ellipse, style=bold' in t
assert '"__start" -> "charging"' in t
assert 'label="paid\\nafter 10s..1m"' in t
PY
if command -v dot >/dev/null; then
  dot -Tsvg "$top/order.dot" >"$top/order.svg" 2>"$top/dot.err"
  check "Graphviz renders it" test $? = 0 -a -s "$top/order.svg"
  check "the picture has every state" python3 - "$top/order.svg" <<'PY'
import sys
t = open(sys.argv[1]).read()
for s in ["charging", "awaiting", "shipping", "done", "failed"]:
    assert ">%s<" % s in t, s
PY
else
  echo "note: Graphviz's dot is not installed; the graph was parsed, not drawn"
fi
"$mealy" fsm dot "$dir/errors.yaml" >"$top/out" 2>"$top/err"
check "dot of a bad file: exit 1, the errors on stderr" \
  test $? = 1 -a ! -s "$top/out"
check "dot of a bad file names its errors" grep -q "errors.yaml:4:5:" "$top/err"
"$mealy" fsm dot "$dir/order.yaml" nosuch >/dev/null 2>"$top/err"
check "dot of an unknown machine: exit 1" test $? = 1
check "...and says so" grep -q "has no machine 'nosuch'" "$top/err"

# ---- command lines ----
for args in "fsm" "fsm nosuch" "fsm validate" "fsm validate --bogus x" \
            "fsm dot" "fsm dot a b c"; do
  "$mealy" $args >/dev/null 2>&1
  check "'mealy $args': exit 2" test $? = 2
done
for args in "fsm --help" "fsm validate --help" "fsm dot --help"; do
  "$mealy" $args >"$top/out" 2>&1
  check "'mealy $args': exit 0 with usage" \
    grep -q '^usage: mealy fsm' "$top/out"
done
"$mealy" --help | grep -q '^  fsm ' 
check "mealy --help lists fsm" test $? = 0
"$mealy" fsm validate "$top/none.yaml" 2>"$top/err"
check "a missing file: exit 1" test $? = 1
check "...named with the reason" grep -q "none.yaml: cannot read: No such file" "$top/err"
# a file that cannot be read is a refusal (1), not a usage error (2), in
# every subcommand that takes a file (migrate said 2; no host is needed
# to tell)
missing_exit() { # what, command...: exit 1 and the file named
  local what=$1; shift
  "$@" >/dev/null 2>"$top/err"
  local rc=$?
  check "$what of a missing file: exit 1" bash -c "[ $rc = 1 ] && grep -q none.yaml '$top/err'"
}
missing_exit "fsm dot" "$mealy" fsm dot "$top/none.yaml"
missing_exit "fsm migrate" "$mealy" fsm migrate "$top/none.yaml" -s "$top/no.sock"
missing_exit "fsm migrate --dry-run" "$mealy" fsm migrate --dry-run "$top/none.yaml" -s "$top/no.sock"
missing_exit "fsm run" "$mealy" fsm run "$top/none.yaml" --state-dir "$top/st" -s "$top/no.sock"

exit $fail
