#!/usr/bin/env bash
# Installs everything KeyBridge needs to build, run and test on Debian 12.
# Idempotent: run it as often as you like. Uses sudo when not root.
#
#   installer/bootstrap.sh            system packages + test peers
#   installer/bootstrap.sh --system   system packages only
#   installer/bootstrap.sh --app      system packages + the desktop app's UI (ui/dist)
#   installer/bootstrap.sh --package  system packages + the UI + what building and testing the
#                                     packages needs (packaging/build.sh, tests/package/run.sh):
#                                     debootstrap, lintian, rpm, and the prebuilt Tauri bundler
#   installer/bootstrap.sh --udev     only the udev rules for USB keys (installer/README.md);
#                                     never part of the default run: they need a udev daemon
#
# Test peers (PyPI gmssl, npm sm-crypto, the GmSSL CLI) go into $KB_TOOLS (default ~/.cache/keybridge),
# never into the system Python or a global node_modules.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KB_TOOLS="${KB_TOOLS:-$HOME/.cache/keybridge}"
MODE="${1:-all}"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# --udev: give the desktop user access to the USB keys of drivers/registry/media.toml
# (installer/udev/70-keybridge.rules, generated from it). Idempotent; reloads udev only
# when it runs. KB_UDEV_RULES_DIR overrides /etc/udev/rules.d (for testing this step).
if [ "$MODE" = "--udev" ]; then
  src="$ROOT/installer/udev/70-keybridge.rules"
  dst="${KB_UDEV_RULES_DIR:-/etc/udev/rules.d}/70-keybridge.rules"
  if cmp -s "$src" "$dst"; then
    echo "bootstrap: $dst is up to date"
  else
    $SUDO install -D -m 0644 "$src" "$dst"
    echo "bootstrap: installed $dst"
  fi
  if [ -z "${KB_UDEV_RULES_DIR:-}" ] && [ -S /run/udev/control ] && command -v udevadm >/dev/null 2>&1; then
    $SUDO udevadm control --reload
    $SUDO udevadm trigger --action=change --subsystem-match=usb --subsystem-match=hidraw
    echo "bootstrap: udev reloaded; plugged-in keys are accessible now"
  else
    echo "bootstrap: udev is not running here; the rules take effect when it is"
  fi
  exit 0
fi

# --package adds the package tools (packaging/, tests/package/): debootstrap makes the clean
# Debian 12 root the .deb is installed into, lintian checks the .deb, rpm inspects the .rpm
# (the bundler writes it without rpm), python3-jsonschema validates tauri.conf.json
# (packaging/check-config.py); strip and dpkg-shlibdeps come with build-essential.
PACKAGE_APT_PACKAGES=(debootstrap lintian rpm python3-jsonschema)

# Debian packages: build tools, OpenSSL 3 (CLI peer + libssl for the benchmark's
# in-process OpenSSL comparison), Python and Node for the gmssl / sm-crypto peers,
# SoftHSM2 (a real PKCS#11 module) and OpenSC's pkcs11-tool for the PKCS#11 tests.
APT_PACKAGES=(
  ca-certificates build-essential pkg-config
  openssl libssl-dev
  python3 python3-venv python3-pip
  softhsm2 opensc
  libpcsclite-dev pcscd vsmartcard-vpcd
  libdbus-1-dev
  chromium
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev
  fonts-noto-cjk
  xvfb xauth webkit2gtk-driver dbus-daemon dbus-bin python3-dbusmock curl
  xfce4-panel
  cmake
  gnome-keyring
  nats-server
)
# (libpcsclite-dev: the PC/SC transport links libpcsclite; pcscd + vsmartcard-vpcd: the
# PC/SC test rig's reader daemon and virtual reader, drivers/kb-pcsc/tests/rig;
# libdbus-1-dev: BLE keys (kb-ble: btleplug talks to BlueZ over D-Bus through libdbus);
# dbus-daemon + python3-dbusmock also run the BLE rig (a mock BlueZ), drivers/kb-ble/tests/rig;
# chromium: the browser of the bridge's web-page tests, tests/e2e;
# libwebkit2gtk-4.1-dev, libgtk-3-dev, libayatana-appindicator3-dev (tray), librsvg2-dev:
# the desktop app (Tauri 2 on WebKitGTK); fonts-noto-cjk: without a CJK font Chinese
# renders as boxes; xvfb, webkit2gtk-driver (WebKitWebDriver), dbus-daemon
# (dbus-run-session), dbus-bin (dbus-send) and python3-dbusmock (a notification daemon):
# the desktop app's window tests, tests/desktop; xfce4-panel: a real tray host (its
# Status Tray plugin is a StatusNotifierWatcher drawing menus with libdbusmenu-gtk3) for
# tests/desktop/panel.test.mjs; cmake: builds the GmSSL CLI peer below;
# gnome-keyring: the Secret Service the phone link's pairing store is tested against,
# drivers/kb-phonelink/tests/store.rs;
# nats-server: the phone link's relay, which drivers/kb-phonelink's tests and benchmark
# start on loopback with installer/relay/*.conf.)

[ "$MODE" = "--package" ] && APT_PACKAGES+=("${PACKAGE_APT_PACKAGES[@]}")
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js: any v18+ on PATH will do; otherwise Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "bootstrap: cargo not found; install Rust from https://rustup.rs (stable)" >&2
  exit 1
fi

[ "$MODE" = "--system" ] && exit 0

# npm packages, pinned by each lock file; reinstalled whenever the lock changes (a stamp
# in node_modules holds the lock's hash).
npm_install() { # DIR PACKAGE-THAT-MUST-EXIST
  local dir="$1" want
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$dir/node_modules/.kb-lock.sha256" 2>/dev/null)" != "$want" ] || [ ! -d "$dir/node_modules/$2" ]; then
    (cd "$dir" && npm ci --silent --no-audit --no-fund)
    echo "$want" > "$dir/node_modules/.kb-lock.sha256"
  fi
}
# The desktop app's UI (ui/): Vue 3 + Vite, built into ui/dist, which the app embeds.
npm_install "$ROOT/ui" vue
# Built again only when a source is newer than the build: the desktop app embeds ui/dist,
# so a needless rebuild makes cargo rebuild the app (minutes, e.g. between run-all phases).
ui_built="$ROOT/ui/dist/index.html"
if [ ! -f "$ui_built" ] || [ -n "$(find "$ROOT/ui/src" "$ROOT/ui/index.html" "$ROOT/ui/package.json" \
  "$ROOT/ui/package-lock.json" "$ROOT/ui/vite.config.ts" -newer "$ui_built" -print -quit 2> /dev/null)" ]; then
  (cd "$ROOT/ui" && npm run --silent build)
fi
[ "$MODE" = "--app" ] && exit 0
# The prebuilt Tauri CLI whose bundler packaging/build.sh runs (pinned by its lock file).
if [ "$MODE" = "--package" ]; then
  npm_install "$ROOT/packaging" @tauri-apps/cli
  exit 0
fi

# PyPI peers in a private venv. Reinstalled whenever requirements.txt changes (a stamp
# holds its hash), so bumping a pin takes effect; the interop tests refuse a peer whose
# version differs from the pin.
mkdir -p "$KB_TOOLS"
VENV="$KB_TOOLS/venv"
REQS="$ROOT/tests/interop/requirements.txt"
if ! "$VENV/bin/python" -c "" 2>/dev/null; then
  # Missing, or broken by a Python upgrade.
  python3 -m venv --clear "$VENV"
fi
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ "$(cat "$VENV/.kb-requirements.sha256" 2>/dev/null)" != "$want" ] || ! "$VENV/bin/python" -c "import gmssl" 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS"
  echo "$want" > "$VENV/.kb-requirements.sha256"
fi

# The GmSSL CLI (an independent GM/T 0010 SM2 CMS peer, tests/interop/tests/gmssl_cms.rs),
# built from the GmSSL source that PyPI's easy_gmssl sdist ships (pinned here; the tests
# check `gmssl version`). Only the `gmssl` binary, statically linked, into $KB_TOOLS.
EASY_GMSSL_VERSION=2.0.1
GMSSL_VERSION=3.1.1
GMSSL_BIN="$KB_TOOLS/gmssl-$GMSSL_VERSION/bin/gmssl"
if [ "$("$GMSSL_BIN" version 2>/dev/null)" != "GmSSL $GMSSL_VERSION" ]; then
  tmp="$(mktemp -d)"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$tmp" "easy_gmssl==$EASY_GMSSL_VERSION"
  tar -xzf "$tmp/easy_gmssl-$EASY_GMSSL_VERSION.tar.gz" -C "$tmp"
  cmake -S "$tmp/easy_gmssl-$EASY_GMSSL_VERSION/easy_gmssl/Core/GmSSL-$GMSSL_VERSION" -B "$tmp/build" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF >/dev/null
  cmake --build "$tmp/build" --target gmssl-bin -j "$(nproc)" >/dev/null
  install -D -m 0755 "$tmp/build/bin/gmssl" "$GMSSL_BIN"
  rm -rf "$tmp"
fi

# The independent SM2/SM3/SM4 peer (sm-crypto).
npm_install "$ROOT/tests/interop/node" sm-crypto
# The TypeScript SDK (bridge/sdk-js): its dev tools (typescript, ws), then built (dist/
# is what its tests, examples and the browser tests load).
npm_install "$ROOT/bridge/sdk-js" typescript
(cd "$ROOT/bridge/sdk-js" && npm run --silent build)
# The end-to-end tests (tests/e2e): playwright-core drives Debian's chromium.
npm_install "$ROOT/tests/e2e" playwright-core

echo "bootstrap: ok (tools in $KB_TOOLS)"
