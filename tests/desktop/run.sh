#!/usr/bin/env bash
# The desktop app's real window, driven through WebDriver: Xvfb (a private display),
# a private D-Bus session (dbus-run-session), WebKitWebDriver (Debian's webkit2gtk-driver,
# the driver tauri-driver wraps). The tests start keybridge-desktop themselves (it replaces
# itself with its core, keybridge-tray beside it, same pid; the core starts the window,
# `keybridge-desktop --window`, as a process of its own, and again after each close) with
# automation enabled (TAURI_WEBVIEW_AUTOMATION=true, as tauri-driver sets it) and WebKit's
# inspector server on a loopback port (WEBKIT_INSPECTOR_SERVER), which each window
# process inherits; WebKitWebDriver runs with `--target` that address and attaches a new
# session to each window process. Every process is started here (or by the tests) and
# stopped by process id; loopback only.
#
#   tests/desktop/run.sh [BIN]      BIN defaults to target/debug/keybridge-desktop
#   KB_SCREENSHOTS=docs/screenshots tests/desktop/run.sh   also refresh the README's screenshots
#   KB_DESKTOP_TESTS="renewal" tests/desktop/run.sh        only these test files
#   KB_TEST_PATTERN="first run|one instance" tests/desktop/run.sh   only the tests named so
#
# Each test file gets a session of its own (display, bus, driver, app, home): the app is
# single-instance per session bus. panel.test.mjs puts the app in a real tray host, Xfce's
# panel (xfce4-panel), which it starts and stops itself; notray.test.mjs runs it where the
# tray library cannot be loaded. renewal.test.mjs also needs the keybridge CLI (beside
# BIN, or $KEYBRIDGE_BIN) and tests/e2e's npm packages (Playwright, jsQR, pngjs).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${1:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/keybridge-desktop}"
[ -x "$BIN" ] && [ -x "$(dirname "$BIN")/keybridge-tray" ] || {
  echo "run.sh: $BIN or the core beside it not built (cargo build -p keybridge-desktop -p keybridge-tray)" >&2
  exit 1
}
if [ -z "${KB_DESKTOP_TEST:-}" ]; then
  status=0
  for t in ${KB_DESKTOP_TESTS:-window renewal panel notray}; do
    KB_DESKTOP_TEST="$t" "$0" "$@" || status=$?
  done
  exit "$status"
fi
if [ -n "${KB_SCREENSHOTS:-}" ]; then
  mkdir -p "$KB_SCREENSHOTS"
  KB_SCREENSHOTS="$(cd "$KB_SCREENSHOTS" && pwd)"
  export KB_SCREENSHOTS
fi
# shellcheck source=session.sh
source "$HERE/session.sh"

# A notification daemon on the session bus (python-dbusmock's, Debian python3-dbusmock):
# the app's desktop notifications land in its call log.
/usr/bin/python3 -m dbusmock --template notification_daemon -l "$work/notify.log" > "$work/dbusmock.log" 2>&1 &
track $!
for _ in $(seq 100); do
  dbus-send --session --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.NameHasOwner \
    string:org.freedesktop.Notifications 2>/dev/null | grep -q "boolean true" && break
  sleep 0.1
done
export KB_NOTIFY_LOG="$work/notify.log"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"
inspector="127.0.0.1:$(free_port)"
WebKitWebDriver --host=127.0.0.1 --port="$port" --target="$inspector" > "$work/webdriver.log" 2>&1 &
webdriver=$!
track "$webdriver"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/status" > /dev/null && break; sleep 0.1; done

export KB_WEBDRIVER="http://127.0.0.1:$port" KB_INSPECTOR="$inspector" KB_DESKTOP_BIN="$BIN" KB_DESKTOP_HOME="$work/home"
export KB_APP_LOG="$work/app.log"
export KEYBRIDGE_BIN="${KEYBRIDGE_BIN:-$(dirname "$BIN")/keybridge}"
status=0
node --test --test-concurrency=1 ${KB_TEST_PATTERN:+--test-name-pattern="$KB_TEST_PATTERN"} "$HERE/$KB_DESKTOP_TEST.test.mjs" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- WebKitWebDriver log ---" >&2
  tail -40 "$work/webdriver.log" >&2 || true
  echo "--- keybridge-desktop log ---" >&2
  tail -40 "$work/app.log" >&2 || true
fi
exit "$status"
