#!/usr/bin/env bash
# Usage: tests/stress.sh [N]   (default 5; logs in /tmp/stress-<i>.log; not part of CI)
# The whole Rust suite N times in a row with two CPU hogs running (issue 13 #5).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-5}
hogs=()
for i in 1 2; do timeout 3600 sh -c 'while :; do :; done' & hogs+=($!); done
echo "hogs: ${hogs[*]}"
export KB_INTEROP_REQUIRED=1 CARGO_TERM_COLOR=never
for i in $(seq 1 "$N"); do
  start=$(date +%s)
  if cargo test --workspace --locked --no-fail-fast > /tmp/stress-$i.log 2>&1; then r=ok; else r=FAILED; fi
  passed=$(grep -E "^test result" /tmp/stress-$i.log | awk '{s+=$4} END {print s}')
  failed=$(grep -E "^test result" /tmp/stress-$i.log | awk '{s+=$6} END {print s}')
  echo "run $i: $r, $passed passed, $failed failed, $(( $(date +%s) - start )) s"
done
kill "${hogs[@]}" 2>/dev/null; wait "${hogs[@]}" 2>/dev/null
echo "hogs stopped"
