#!/usr/bin/env bash
# Start-up time and idle memory of the desktop app (release build), under Xvfb.
#
#   cargo build --release -p keybridge-desktop && tests/desktop/measure.sh [BIN] [RUNS]
#
# Cold start: from launching the process to the window's first painted screen (the UI
# calls `app_ready` after its first frame; `--exit-after-paint` prints `painted` then and
# quits), the home screen of an existing demo key, RUNS times (default 7); median and
# worst. The first start of a new home (which creates the demo key) is reported apart.
# Idle memory: the app left alone for 10 s after painting; RSS and PSS of the app and
# every process it started (WebKit's web and network processes), summed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/keybridge-desktop}"
RUNS="${2:-7}"
[ -x "$BIN" ] || { echo "measure.sh: $BIN not built (cargo build --release -p keybridge-desktop)" >&2; exit 1; }
# shellcheck source=session.sh
source "$HERE/session.sh"

home="$work/home"
now_ms() { date +%s%3N; }

# One start to the first paint; prints milliseconds.
start_once() {
  local t0 t1 line
  t0=$(now_ms)
  line="$(timeout 60 "$BIN" --home "$home" --exit-after-paint 2> "$work/app.log" | head -n 1 || true)"
  t1=$(now_ms)
  if [ "$line" != "painted" ]; then
    cat "$work/app.log" >&2
    echo "measure.sh: the app did not report a painted window" >&2
    exit 1
  fi
  echo $((t1 - t0))
}

first=$(start_once)
# Accept the agreement as a user would, so later starts show the home screen.
cat "$home/config/agreement-accepted" > /dev/null 2>&1 || {
  ver="$(grep -o 'AGREEMENT_VERSION: &str = "[^"]*"' "$ROOT/bridge/kb-desktop/src/lib.rs" | cut -d'"' -f2)"
  printf '%s' "$ver" > "$home/config/agreement-accepted"
}
times=()
for _ in $(seq "$RUNS"); do times+=("$(start_once)"); done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
median=${sorted[$(( ${#sorted[@]} / 2 ))]}
worst=${sorted[$(( ${#sorted[@]} - 1 ))]}

# Idle memory.
"$BIN" --home "$home" > /dev/null 2> "$work/idle.log" &
app=$!
track "$app"
sleep 12
descendants() { local p=$1; echo "$p"; for c in $(pgrep -P "$p"); do descendants "$c"; done; }
rss=0; pss=0; app_rss=0; procs=()
for p in $(descendants "$app"); do
  [ -r "/proc/$p/smaps_rollup" ] || continue
  r=$(awk '/^Rss:/{print $2}' "/proc/$p/smaps_rollup")
  s=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup")
  rss=$((rss + r)); pss=$((pss + s))
  [ "$p" = "$app" ] && app_rss=$r
  procs+=("$(cat "/proc/$p/comm")=$((r / 1024))MiB")
done
kill "$app"

echo "keybridge-desktop $("$BIN" --version 2>&1 | awk '{print $2}') — $(nproc) cores, $(uname -m)"
echo "cold start to first paint, ms (runs: ${times[*]}):"
echo "  median ${median}  worst ${worst}  (goal <= 1500)"
echo "  first start of a new home (creates the demo key): ${first}"
echo "idle memory after 12 s, all processes (${procs[*]}):"
echo "  RSS $((rss / 1024)) MiB  PSS $((pss / 1024)) MiB  (goal <= 150 MB); the app process alone: RSS $((app_rss / 1024)) MiB"
