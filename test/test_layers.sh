#!/bin/bash
# test_layers.sh - lib/ reads bottom-up (DESIGN.md "Layers inside lib/",
# D11): arrows point down only.  Checked on the sources (includes) and on
# the built objects (the symbols each one calls), so a call by name that
# goes up fails here even when no header says so.
#   usage: test_layers.sh SOURCE_ROOT LIBMEALY_A
set -u
root=$1
lib=$2
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# fsm/ and queue/ stand on the public API (mealy.h) and their own headers:
# nothing of the runtime's internals.
while IFS= read -r hit; do
  bad "$hit: fsm/ and queue/ use the runtime through mealy.h only"
done < <(grep -Hn '#include "\.\./\(internal\|context\|durable\|journal\|jreplay\)\.h"' \
           "$root"/lib/fsm/*.[ch] "$root"/lib/queue/*.[ch])

# The journal (the store's embedded implementation) knows nothing above
# the store seam.
for f in journal/journal.c journal/jread.c journal/jinfo.c journal/jlive.c jcodec.c \
         crc32c.c; do
  [ -f "$root/lib/$f" ] || { bad "lib/$f is not there (moved? update this test)"; continue; }
  grep -Hn '#include "\(\.\./\)\?\(internal\|context\|durable\)\.h"' "$root/lib/$f" &&
    bad "lib/$f includes the runtime's internals"
done

# Symbols each object needs from elsewhere, as "object symbol" lines.
undef() { nm -u "$lib" 2>/dev/null | awk '/^lib_.*\.o:$/ {o=$1; sub(/:$/,"",o); next}
                                     NF==2 && $1=="U" {print o, $2}'; }
syms=$(undef)
[ -n "$syms" ] || { echo "FAIL: nm read no symbols from $lib"; exit 1; }

# The journal calls nothing of the runtime or the durable layer by name:
# it reports through store hooks.
up='^(durable_|rt_|inst_|ev_|inbox_|names?_|ext_|ctx_|intern_|mly_runtime_|mly_post)'
for o in lib_journal_journal.c.o lib_journal_jread.c.o lib_jcodec.c.o \
         lib_journal_jinfo.c.o lib_journal_jlive.c.o; do
  grep -q "^$o " <<< "$syms" || bad "$o: not in $lib (renamed? update this test)"
  while read -r obj sym; do
    [ "$obj" = "$o" ] || continue
    [[ $sym =~ $up ]] && bad "$o calls $sym (a layer above the store)"
  done <<< "$syms"
done

# The durable layer reaches the journal through store.h only: of the
# journal's live functions it names just the constructor (in
# mly_journal_open).
for o in lib_durable.c.o lib_recover.c.o lib_metrics.c.o lib_names.c.o; do
  grep -q "^$o " <<< "$syms" || bad "$o: not in $lib (renamed? update this test)"
  while read -r obj sym; do
    [ "$obj" = "$o" ] || continue
    case $sym in
      journal_store_open) [ "$o" = lib_recover.c.o ] ||
                            bad "$o calls $sym (only mly_journal_open may)";;
      journal_*) bad "$o calls $sym: the journal goes through store.h";;
    esac
  done <<< "$syms"
done
grep -q '^lib_recover.c.o journal_store_open$' <<< "$syms" ||
  bad "recover.c does not open the journal store (the check above saw nothing)"

# fsm/ and queue/ objects call no runtime internals by name.
while read -r obj sym; do
  case $obj in lib_fsm_*|lib_queue_*) ;; *) continue;; esac
  [[ $sym =~ ^(rt_|inst_|ev_|inbox_|durable_|journal_|names?_|ext_|ctx_)[a-z_]*$ ]] &&
    bad "$obj calls $sym (a runtime internal)"
done <<< "$syms"

[ $fail = 0 ] && echo "ok: lib/ layers point down"
exit $fail
