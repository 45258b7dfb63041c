#!/usr/bin/env bash
# Start-up time, idle memory and the tray of the desktop app (release build), under Xvfb.
#
#   cargo build --release -p keybridge-desktop -p keybridge-tray && tests/desktop/measure.sh [BIN] [RUNS]
#
# Cold start: from launching the process to the window's first painted screen (the UI
# calls `app_ready` after its first frame; `--exit-after-paint` prints `painted` then and
# quits), the home screen of an existing demo key, RUNS times (default 7); median and
# worst. The first start of a new home (which creates the demo key) is reported apart.
# Idle memory: the app left alone for 12 s after painting; RSS and PSS of the app's core
# (keybridge-desktop replaces itself with keybridge-tray, same pid; a BIN without a core
# beside it is measured as it is: the design before the split)
# and every process it started (the window process, WebKit's web and network
# processes), summed.
# The tray, same core process: its window closed as a user closes it (the WM_DELETE_WINDOW
# message, tests/desktop/xwin.py), then, once the window process and WebKit's processes
# have exited, 12 s alone: idle memory in the tray (the core alone). Reopening: from the
# tray menu's 打开 KeyBridge item, clicked as a tray host clicks it (com.canonical.dbusmenu
# Event on the session bus), to the new window's first painted screen (`--report-paints`
# prints `painted` on each), RUNS times, closing it to the tray in between; median and
# worst. Three ways, each RUNS times:
#   - through the menu, as a tray host shows it: AboutToShow and Event `opened` on the
#     menu's root, DWELL ms (default 400: a quick user finding and clicking the first
#     item) until the click, then `closed`; timed from the click (what the user waits
#     for) and from the menu opening. The core starts the window hidden when the menu
#     opens (WindowHost::prewarm), so the click only maps it;
#   - the same with no dwell at all (a click the instant the menu opens: the worst case);
#   - a click with no menu opening reported first (a host that does not report it, or a
#     second start of the app): the window process starts on the click, as before.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/keybridge-desktop}"
RUNS="${2:-7}"
DWELL="${KB_MENU_DWELL_MS:-400}"
[ -x "$BIN" ] || { echo "measure.sh: $BIN not built (cargo build --release -p keybridge-desktop -p keybridge-tray)" >&2; exit 1; }
# shellcheck source=session.sh
source "$HERE/session.sh"

home="$work/home"
now_ms() { date +%s%3N; }

# One start to the first paint; prints milliseconds.
start_once() {
  local t0 t1 line
  t0=$(now_ms)
  # The first `painted` line (a helper the app's libraries start, at-spi's registry, may
  # write to the same stdout first).
  line="$(timeout 60 "$BIN" --home "$home" --exit-after-paint 2> "$work/app.log" | grep -m 1 -x painted || true)"
  t1=$(now_ms)
  if [ "$line" != "painted" ]; then
    cat "$work/app.log" >&2
    echo "measure.sh: the app did not report a painted window" >&2
    exit 1
  fi
  echo $((t1 - t0))
}

# The local bridge on a free loopback port (another KeyBridge may hold the default).
mkdir -p "$home/config"
echo "bridge_port = $(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')" \
  > "$home/config/settings.toml"
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

# Idle memory of a process and everything it started: "RSS_KiB PSS_KiB own_RSS_KiB list".
descendants() { local p=$1; echo "$p"; for c in $(pgrep -P "$p"); do descendants "$c"; done; }
tree_memory() {
  local root=$1 rss=0 pss=0 own=0 procs=() p r s
  for p in $(descendants "$root"); do
    [ -r "/proc/$p/smaps_rollup" ] || continue
    r=$(awk '/^Rss:/{print $2}' "/proc/$p/smaps_rollup")
    s=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup")
    rss=$((rss + r)); pss=$((pss + s))
    [ "$p" = "$root" ] && own=$r
    procs+=("$(cat "/proc/$p/comm")=$((r / 1024))MiB")
  done
  echo "$rss $pss $own ${procs[*]}"
}

# One app process for the rest: window open, then in the tray, then reopened. Its
# stdout comes through a FIFO, so each `painted` is read the moment it is written.
mkfifo "$work/paints"
"$BIN" --home "$home" --report-paints > "$work/paints" 2> "$work/idle.log" &
app=$!
track "$app"
exec 3< "$work/paints"
# Wait for the next `painted` line of the app (60 s only catch a hang).
painted() {
  local line
  while IFS= read -r -t 60 line <&3; do [ "$line" = painted ] && return 0; done
  cat "$work/idle.log" >&2
  tail -n 20 "$home"/logs/*.log >&2 2> /dev/null || true
  echo "measure.sh: the app did not report a painted window (${1:-})" >&2
  exit 1
}
web_processes() { for c in $(descendants "$app"); do [ "$(cat "/proc/$c/comm" 2>/dev/null)" = WebKitWebProces ] && echo "$c"; done; true; }
# Close the window as a user does; wait until the window process and every process under
# it (WebKit's) have exited.
close_to_tray() {
  local gone=0 before
  [ -n "$(web_processes)" ] || { echo "measure.sh: no web process before closing" >&2; exit 1; }
  before="$(descendants "$app" | grep -vx "$app" || true)"
  python3 "$HERE/xwin.py" close "$app"
  for _ in $(seq 600); do
    gone=1
    for p in $before; do [ -e "/proc/$p" ] && gone=0; done
    [ "$gone" = 1 ] && break
    sleep 0.05
  done
  [ "$gone" = 1 ] || { echo "measure.sh: the window's processes did not exit after the window closed" >&2; exit 1; }
}
painted "the first window"
sleep 12
read -r rss pss app_rss procs <<< "$(tree_memory "$app")"

close_to_tray
sleep 12
read -r tray_rss tray_pss tray_app_rss tray_procs <<< "$(tree_memory "$app")"

# The tray menu's 打开 KeyBridge item, found once; each call is one `gdbus call`.
read -r tray_bus tray_menu open_item <<< "$(/usr/bin/python3 "$HERE/tray.py" find "$app" "打开 KeyBridge")"
menu() { gdbus call --session --dest "$tray_bus" --object-path "$tray_menu" --method "com.canonical.dbusmenu.$1" "${@:2}" > /dev/null; }
# One reopen: MODE menu (opened, DWELL_MS, click, closed) or click (the click alone).
# Sets from_click and from_open (ms).
reopen() {
  local mode=$1 dwell=$2 t_open t_click t_paint
  t_open=$(now_ms)
  if [ "$mode" = menu ]; then
    menu AboutToShow 0
    menu Event 0 opened '<0>' 0
    [ "$dwell" -gt 0 ] && sleep "$(awk "BEGIN{print $dwell/1000}")"
  fi
  t_click=$(now_ms)
  menu Event "$open_item" clicked '<0>' 0
  [ "$mode" = menu ] && menu Event 0 closed '<0>' 0
  painted "reopen, $mode, dwell $dwell ms"
  t_paint=$(now_ms)
  from_click=$((t_paint - t_click)); from_open=$((t_paint - t_open))
}
median_worst() { local s; s=($(printf '%s\n' "$@" | sort -n)); echo "${s[$(( ${#s[@]} / 2 ))]} ${s[$(( ${#s[@]} - 1 ))]}"; }
declare -A reopens=()
for mode in "menu:$DWELL" "menu:0" "click:0"; do
  for _ in $(seq "$RUNS"); do
    reopen "${mode%%:*}" "${mode##*:}"
    reopens[$mode]+="$from_click "
    reopens[$mode/open]+="$from_open "
    sleep 2
    close_to_tray
    sleep 1
  done
done
kill "$app"
exec 3<&-

# The peer, same run: the same UI (ui/dist, on its in-memory mock backend) in WebKitGTK's
# own MiniBrowser — the same engine and page without KeyBridge's core — served from
# loopback, compositing off as the app has it.
peer_rss=0; peer_pss=0; peer_procs="(MiniBrowser not found)"
MINI=/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser
if [ -x "$MINI" ] && [ -f "$ROOT/ui/dist/index.html" ]; then
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  python3 -m http.server --bind 127.0.0.1 --directory "$ROOT/ui/dist" "$port" > /dev/null 2>&1 &
  track $!
  WEBKIT_DISABLE_COMPOSITING_MODE=1 "$MINI" "http://127.0.0.1:$port/" > /dev/null 2>&1 &
  mini=$!
  track "$mini"
  sleep 12
  read -r peer_rss peer_pss _ peer_procs <<< "$(tree_memory "$mini")"
  kill "$mini"
fi

echo "keybridge-desktop $("$BIN" --version 2>&1 | awk '{print $2}') — $(nproc) cores, $(uname -m)"
echo "cold start to first paint, ms (runs: ${times[*]}):"
echo "  median ${median}  worst ${worst}  (goal <= 1500)"
echo "  first start of a new home (creates the demo key): ${first}"
echo "idle memory after 12 s, all processes (${procs}):"
echo "  RSS $((rss / 1024)) MiB  PSS $((pss / 1024)) MiB  (goal <= 150 MB); the app process alone: RSS $((app_rss / 1024)) MiB"
echo "in the tray, window closed (its process and WebKit's ended), idle after 12 s (${tray_procs}):"
echo "  RSS $((tray_rss / 1024)) MiB  PSS $((tray_pss / 1024)) MiB  (goal <= 60 MiB RSS); the app process alone: RSS $((tray_app_rss / 1024)) MiB"
# shellcheck disable=SC2086
{
  read -r m w <<< "$(median_worst ${reopens[menu:$DWELL]})"; read -r mo wo <<< "$(median_worst ${reopens[menu:$DWELL/open]})"
  echo "reopen through the tray menu (opened, ${DWELL} ms, 打开 clicked) to the painted window, ms (from the click: ${reopens[menu:$DWELL]}):"
  echo "  from the click: median ${m}  worst ${w}  (goal <= 700); from the menu opening: median ${mo}  worst ${wo}"
  read -r m w <<< "$(median_worst ${reopens[menu:0]})"
  echo "  clicked the instant the menu opened (the worst case), from the click: median ${m}  worst ${w}  (runs: ${reopens[menu:0]})"
  read -r m w <<< "$(median_worst ${reopens[click:0]})"
  echo "  a click with no menu opening first (the window starts on the click), median ${m}  worst ${w}  (runs: ${reopens[click:0]})"
}
echo "peer, same run — the same UI in WebKitGTK's MiniBrowser (${peer_procs}):"
echo "  RSS $((peer_rss / 1024)) MiB  PSS $((peer_pss / 1024)) MiB"
if [ "$peer_pss" -gt 0 ]; then
  echo "  KeyBridge / MiniBrowser: RSS $(awk "BEGIN{printf \"%.2f\", $rss/$peer_rss}")x  PSS $(awk "BEGIN{printf \"%.2f\", $pss/$peer_pss}")x"
fi
