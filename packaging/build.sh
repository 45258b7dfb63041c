#!/usr/bin/env bash
# Builds KeyBridge's Linux packages with Tauri's bundler (the prebuilt npm @tauri-apps/cli,
# pinned in packaging/package-lock.json).
#
#   packaging/build.sh [--release] [--bundles deb,rpm,appimage] [--prebuilt]
#
# --prebuilt: package the binaries already in <target>/<profile>/ without running cargo
# (tests/run-all.sh builds every binary once, with the test build's features, and packages
# those: a second `cargo build -p …` selection would resolve features differently and
# compile much of the tree again).
# Default: a debug-profile build (the warm test cache; what tests/package/run.sh installs),
# bundles deb and rpm. --release builds what users get. The packages land in
# $CARGO_TARGET_DIR/package/<profile>/bundle/{deb,rpm,appimage}/ and their paths are
# printed, one a line, on stdout.
#
# What goes in (besides what src-tauri/tauri.conf.json's "bundle" section lists: the desktop
# entry, icons, udev rules, copyright, maintainer scripts, dependencies):
#   /usr/bin/keybridge-desktop               the desktop app (its window; started without
#                                            --window it replaces itself with the core)
#   /usr/bin/keybridge-tray                  the app's core: tray, device service, bridge
#                                            (no WebKit)
#   /usr/bin/keybridge                       the command line
#   /usr/lib/keybridge/libkb_skf_module.so   KeyBridge's SKF (GM/T 0016) module
#   browser native-messaging host manifests  from installer/browser/, when it exists
#                                            (stage_browser_integration below)
# Their paths depend on the profile and the target directory, so they are given to the
# bundler as a configuration overlay ($STAGE/overlay.json) instead of in tauri.conf.json.
#
# The bundler takes the desktop binary from <target>/<profile>/; the script points it at a
# staging target directory holding stripped copies of the three built files, so the cargo
# build stays the ordinary (warm) one and the packages carry no debug symbols.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PROFILE=debug
BUNDLES=deb,rpm
PREBUILT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --release) PROFILE=release ;;
    --bundles) BUNDLES="$2"; shift ;;
    --bundles=*) BUNDLES="${1#--bundles=}" ;;
    --prebuilt) PREBUILT=1 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
log() { echo "build.sh: $*" >&2; }

[ -f "$ROOT/ui/dist/index.html" ] || {
  log "ui/dist is missing: installer/bootstrap.sh --app builds the UI the app embeds"
  exit 1
}
# The bundler (prebuilt, no compile), reinstalled when its lock file changes.
want="$(sha256sum "$ROOT/packaging/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$ROOT/packaging/node_modules/.kb-lock.sha256" 2>/dev/null)" != "$want" ]; then
  (cd "$ROOT/packaging" && npm ci --silent --no-audit --no-fund)
  echo "$want" > "$ROOT/packaging/node_modules/.kb-lock.sha256"
fi

cargo_flags=()
[ "$PROFILE" = release ] && cargo_flags+=(--release)
built=("$TARGET/$PROFILE/keybridge-desktop" "$TARGET/$PROFILE/keybridge-tray" "$TARGET/$PROFILE/keybridge" "$TARGET/$PROFILE/libkb_skf_module.so")
if [ $PREBUILT = 1 ]; then
  for f in "${built[@]}"; do
    [ -f "$f" ] || { log "--prebuilt: $f is not built"; exit 1; }
  done
  log "prebuilt ($PROFILE): ${built[*]}"
else
  log "cargo build ($PROFILE): keybridge-desktop, keybridge-tray, keybridge, kb-skf-module"
  CARGO_TARGET_DIR="$TARGET" cargo build "${cargo_flags[@]}" -p keybridge-desktop -p keybridge-tray -p keybridge -p kb-skf-module >&2
fi

STAGE="$TARGET/package"
BIN="$STAGE/$PROFILE"
FILES="$STAGE/files-$PROFILE"
rm -rf "$BIN/bundle" "$FILES"
mkdir -p "$BIN" "$FILES"
strip_copy() { # SRC DST: a stripped copy (no symbols, no debug info)
  install -m 0755 "$1" "$2"
  strip --strip-unneeded "$2"
}
strip_copy "$TARGET/$PROFILE/keybridge-desktop" "$BIN/keybridge-desktop"
strip_copy "$TARGET/$PROFILE/keybridge-tray" "$FILES/keybridge-tray"
strip_copy "$TARGET/$PROFILE/keybridge" "$FILES/keybridge"
install -m 0644 "$TARGET/$PROFILE/libkb_skf_module.so" "$FILES/libkb_skf_module.so"
strip --strip-unneeded "$FILES/libkb_skf_module.so"

# Package path -> staged file, for deb, rpm and the AppImage alike.
declare -A files=(
  ["/usr/bin/keybridge-tray"]="$FILES/keybridge-tray"
  ["/usr/bin/keybridge"]="$FILES/keybridge"
  ["/usr/lib/keybridge/libkb_skf_module.so"]="$FILES/libkb_skf_module.so"
)

# The browser integration (issue 17 §2): the native-messaging
# host manifest installer/browser/com.keybridge.host.json (generated and checked by
# `cargo test -p kb-bridge --lib native`; see installer/browser/README.md). It goes to
# /usr/share/keybridge/native-messaging-hosts/; postinst links it into the system-wide
# directories of Chromium, Google Chrome and Microsoft Edge, postrm removes the links. Firefox
# needs its own manifest ("allowed_extensions") and extension, which do not exist yet.
stage_browser_integration() {
  local m="$ROOT/installer/browser/com.keybridge.host.json"
  if [ ! -f "$m" ]; then
    log "no installer/browser/com.keybridge.host.json: packages without the browser native-messaging manifest"
    return
  fi
  # Shipped under /usr/share (Debian policy: no package files in /etc/opt, and files in
  # /etc are conffiles); the maintainer scripts link it into each browser's directory.
  files["/usr/share/keybridge/native-messaging-hosts/$(basename "$m")"]="$m"
  log "browser native-messaging manifest: /usr/share/keybridge, linked for Chromium, Chrome, Edge by postinst"
}
stage_browser_integration

# Library dependencies of the deb, computed from the staged binaries by dpkg-shlibdeps
# (versioned, as Debian's own packages declare them) and added to tauri.conf.json's
# hand-written "depends" (pcscd, the tray's appindicator, which the core loads at run time,
# and the libraries; the bundler adds WebKitGTK and GTK itself).
shlibs=""
if [[ ",$BUNDLES," == *,deb,* ]]; then
  command -v dpkg-shlibdeps > /dev/null || { log "dpkg-shlibdeps (Debian dpkg-dev) is needed for the deb"; exit 1; }
  sh_dir="$STAGE/shlibdeps"
  rm -rf "$sh_dir"; mkdir -p "$sh_dir/debian"
  printf 'Source: keybridge\n\nPackage: keybridge\nArchitecture: any\n' > "$sh_dir/debian/control"
  shlibs="$(cd "$sh_dir" && dpkg-shlibdeps -O "$BIN/keybridge-desktop" "$FILES/keybridge-tray" "$FILES/keybridge" "$FILES/libkb_skf_module.so" 2> /dev/null \
    | sed -n 's/^shlibs:Depends=//p')"
  [ -n "$shlibs" ] || { log "dpkg-shlibdeps found no dependencies"; exit 1; }
fi

# The packages' Maintainer (Debian policy 5.6.2: a name and an e-mail address); the
# bundler takes it from the publisher. Windows and macOS keep tauri.conf.json's plain
# publisher name.
MAINTAINER="${KB_PACKAGE_MAINTAINER:-KeyBridge packagers <packages@example.invalid>}"

# The overlay: the same files for deb, rpm and AppImage (merged into tauri.conf.json's
# "files", which list the udev rules and the copyright file), the deb's dependencies, and
# the Maintainer, and the package name: Debian and RPM package names are lower case ("keybridge", not the
# bundler's "key-bridge" from productName "KeyBridge"). The name only reaches the package
# metadata and file names: the desktop binary is already built, and the desktop entry's
# Name is written out in packaging/linux/keybridge-desktop.desktop.
overlay="$STAGE/overlay-$PROFILE.json"
for k in "${!files[@]}"; do printf '%s\t%s\n' "$k" "${files[$k]}"; done | SHLIBS="$shlibs" MAINTAINER="$MAINTAINER" python3 -c '
import json, os, re, sys
conf = json.load(open(sys.argv[1]))
files = dict(line.rstrip("\n").split("\t", 1) for line in sys.stdin)
name = lambda dep: re.split(r"[\s(]", dep.strip(), maxsplit=1)[0]
computed = [d.strip() for d in os.environ["SHLIBS"].split(",") if d.strip()]
# A versioned computed entry replaces the hand-written one of the same package.
depends = computed + [d for d in conf["bundle"]["linux"]["deb"]["depends"] if name(d) not in {name(c) for c in computed}]
deb = {"files": files}
if computed:
    deb["depends"] = depends
json.dump({"productName": "keybridge", "bundle": {"publisher": os.environ["MAINTAINER"], "linux": {
    "deb": deb, "rpm": {"files": files}, "appimage": {"files": files},
}}}, sys.stdout, indent=2, sort_keys=True)
' "$ROOT/src-tauri/tauri.conf.json" > "$overlay"

bundle_flags=(--ci --bundles "$BUNDLES" --config "$overlay")
[ "$PROFILE" = debug ] && bundle_flags+=(--debug)
log "tauri bundle ($BUNDLES)"
(cd "$ROOT/src-tauri" && CARGO_TARGET_DIR="$STAGE" "$ROOT/packaging/node_modules/.bin/tauri" bundle "${bundle_flags[@]}") >&2
find "$BIN/bundle" -maxdepth 2 -type f \( -name '*.deb' -o -name '*.rpm' -o -name '*.AppImage' \) | sort
