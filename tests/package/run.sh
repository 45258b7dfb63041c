#!/usr/bin/env bash
# The package install test: build the .deb, check it with lintian, install it with
# `apt install ./keybridge_*.deb` into a fresh Debian 12 root made by debootstrap, and use
# it there as a user would. Needs root (debootstrap, chroot, mounts); Debian's archive must
# be reachable the first time (and whenever the root is rebuilt).
#
#   tests/package/run.sh                build (debug profile) and test
#   KB_PACKAGE_DEB=path/to.deb tests/package/run.sh   test a .deb built elsewhere
#   KB_PACKAGE_PREBUILT=1 tests/package/run.sh     package the debug binaries already built
#                                       (packaging/build.sh --prebuilt; tests/run-all.sh)
#   tests/package/run.sh --root         only make the cached Debian 12 root (step 3) and stop
#
# Steps (each timed):
#   1. packaging/check-config.py (every platform's bundle configuration), then
#      packaging/build.sh --bundles deb (a debug-profile bundle).
#   2. lintian: no errors (warnings are printed).
#   3. The root: `debootstrap --variant=minbase bookworm` (+ bookworm-updates and the
#      security archive), cached in $KB_TOOLS/package-test/base-<key>; <key> hashes what
#      the root is made of, and a root older than KB_PACKAGE_BASE_DAYS (7) days is made
#      again, so reruns reuse it. Each run works on a fresh copy (on a tmpfs unless
#      KB_PACKAGE_TMPFS=0); the cached root is never changed. Downloaded packages are kept in $KB_TOOLS/package-test/archives (bind-mounted
#      as the copy's /var/cache/apt/archives), so warm runs download nothing.
#   4. In the copy (chroot, /proc and /dev mounted by this script, in a private mount
#      namespace, unmounted and the copy removed on exit): `apt install ./keybridge_*.deb`
#      — no udev there, so this also proves the maintainer scripts do not fail without it —
#      then, as an ordinary user, tests/package/inside.sh: every packaged binary resolves its
#      libraries (before anything else is installed), then (after adding Xvfb and
#      dbus-daemon, the test's own tools) `keybridge --version`, `keybridge demo`, a CMS
#      sign + verify (and a changed file refused), and the desktop app until its first
#      window paints.
#   5. `apt remove` keeps the user's keys and data and removes the udev rules; `apt purge`
#      says what it removes and still keeps the user's files.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
# A private mount namespace: whatever happens, no mount made here outlives the script or
# shows on the host. The mounts are still undone explicitly on exit.
if [ -z "${KB_PACKAGE_IN_NS:-}" ]; then
  export KB_PACKAGE_IN_NS=1
  exec unshare --mount --propagation private -- "$0" "$@"
fi

KB_TOOLS="${KB_TOOLS:-$HOME/.cache/keybridge}"
CACHE="$KB_TOOLS/package-test"
SUITE=bookworm
MIRROR="${KB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${KB_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
BASE_DAYS="${KB_PACKAGE_BASE_DAYS:-7}"
TEST_TOOLS=(xvfb dbus-daemon)
# What `apt install ./keybridge_*.deb` pulls in (src-tauri/tauri.conf.json's depends and
# recommends, and the WebKitGTK, GTK and tray libraries the bundler adds): --root downloads
# them ahead.
PREFETCH=(pcscd libpcsclite1 libdbus-1-3 libssl3 libwebkit2gtk-4.1-0 libgtk-3-0 libayatana-appindicator3-1 fonts-noto-cjk)
USER_NAME=kbtester
mkdir -p "$CACHE/archives/partial"

t_start=$(date +%s)
t_phase=$t_start
phase() { # NAME: time since the previous phase
  local now; now=$(date +%s)
  echo "run.sh: [$((now - t_phase)) s] $1"
  t_phase=$now
}

# ---- 3. the cached Debian 12 root -----------------------------------------------------
make_root() {
  recipe="suite=$SUITE mirror=$MIRROR security=$SECURITY_MIRROR variant=minbase user=$USER_NAME recipe=1"
  key="$(printf '%s' "$recipe" | sha256sum | cut -c1-16)"
  base="$CACHE/base-$key"
  if [ -e "$base/.kb-complete" ] && [ -n "$(find "$base/.kb-complete" -mtime "-$BASE_DAYS")" ]; then
    phase "reusing the Debian 12 root $base"
  else
    rm -rf --one-file-system "$base" "$base.new"
    echo "run.sh: debootstrap $SUITE into $base (once; about 2–4 minutes)"
    nice debootstrap --variant=minbase "$SUITE" "$base.new" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 || {
      tail -20 "$CACHE/debootstrap.log" >&2
      echo "run.sh: debootstrap failed (log: $CACHE/debootstrap.log)" >&2
      exit 1
    }
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
      "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SECURITY_MIRROR" "$SUITE" > "$base.new/etc/apt/sources.list"
    # Keep what `apt` downloads (it deletes it by default) so the archive cache fills.
    echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > "$base.new/etc/apt/apt.conf.d/01keybridge-keep"
    # A chroot starts no services (pcscd is a dependency).
    printf '#!/bin/sh\nexit 101\n' > "$base.new/usr/sbin/policy-rc.d"
    chmod 0755 "$base.new/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$base.new/etc/resolv.conf"
    chroot "$base.new" apt-get update -qq
    chroot "$base.new" env DEBIAN_FRONTEND=noninteractive apt-get -qq -y upgrade > /dev/null
    chroot "$base.new" apt-get clean
    chroot "$base.new" useradd --create-home --shell /bin/bash "$USER_NAME"
    touch "$base.new/.kb-complete"
    mv "$base.new" "$base"
    phase "made the Debian 12 root $base"
  fi
  # Older roots (another recipe) and runs a killed script left behind.
  for old in "$CACHE"/base-* "$CACHE"/run.*; do
    if [ -e "$old" ] && [ "$old" != "$base" ]; then rm -rf --one-file-system "$old"; fi
  done
}

# --root: only make (or check) the cached root, then stop. run-all starts this in the
# background at its beginning, so the download and unpacking overlap the compiling.
if [ "${1:-}" = "--root" ]; then
  "$ROOT/installer/bootstrap.sh" --package > "$CACHE/bootstrap-root.log" 2>&1 || { cat "$CACHE/bootstrap-root.log" >&2; exit 1; }
  make_root
  # Download what the install below will need into the package cache, from the root's own
  # package lists (apt run from outside with Dir= pointing at the root; the root itself is
  # not changed): the package's dependencies as the bundler declares them, WebKitGTK's that
  # it adds, the recommended CJK font and the test's own tools. Only a warm-up: the install
  # still resolves everything itself, and whatever is missing is downloaded then.
  apt-get -qq -o Dir="$base" -o Dir::Cache::archives="$CACHE/archives" \
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o Debug::NoLocking=1 -o APT::Sandbox::User=root \
    --download-only -y install "${PREFETCH[@]}" "${TEST_TOOLS[@]}" > "$CACHE/prefetch.log" 2>&1 \
    && phase "prefetched the install's packages ($(find "$CACHE/archives" -maxdepth 1 -name '*.deb' | wc -l) in the cache)" \
    || phase "prefetch failed (the install will download instead): $(tail -1 "$CACHE/prefetch.log")"
  echo "run.sh: the root is ready in $(($(date +%s) - t_start)) s"
  exit 0
fi

# ---- 1. the package -------------------------------------------------------------------
# debootstrap, lintian, the bundler and the UI (idempotent; quick when all is there).
"$ROOT/installer/bootstrap.sh" --package > "$CACHE/bootstrap.log" 2>&1 || {
  cat "$CACHE/bootstrap.log" >&2
  exit 1
}
phase "installer/bootstrap.sh --package"
# The bundle configuration of every platform, msi and dmg included (never built here).
python3 "$ROOT/packaging/check-config.py"
if [ -n "${KB_PACKAGE_DEB:-}" ]; then
  deb="$(realpath "$KB_PACKAGE_DEB")"
else
  deb="$(nice "$ROOT/packaging/build.sh" --bundles deb ${KB_PACKAGE_PREBUILT:+--prebuilt} | grep '\.deb$')"
fi
[ -f "$deb" ] || { echo "run.sh: no .deb ($deb)" >&2; exit 1; }
phase "built $(basename "$deb")"

# ---- 2. lintian -----------------------------------------------------------------------
# Lintian refuses nothing as root but says so; its tags go to stdout.
lint="$(lintian --fail-on error --display-info "$deb" 2> /dev/null)" || {
  echo "$lint"
  echo "run.sh: lintian reports errors" >&2
  exit 1
}
[ -z "$lint" ] || echo "$lint"
phase "lintian: no errors"

# ---- 3. the cached Debian 12 root (made now, or by --root beforehand) ------------------
make_root

# ---- 4. install and use ---------------------------------------------------------------
run="$(mktemp -d "$CACHE/run.XXXXXX")"
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -R "${mounted[$i]}" 2> /dev/null || umount -lR "${mounted[$i]}" || true; done
  # Remove the copy only when nothing is mounted on or under it any more.
  if grep -qE " $run(/| )" /proc/self/mountinfo; then
    echo "run.sh: mounts remain under $run; not removing it" >&2
  else
    rm -rf --one-file-system "$run"
  fi
}
trap cleanup EXIT
mount_in() { # ARGS... TARGET
  mount "$@"
  mounted+=("${*: -1}")
}
# The copy lives in memory (about 1.5 GB once installed) unless KB_PACKAGE_TMPFS=0: dpkg
# unpacks faster, and removing it is an unmount instead of deleting 100 000 files.
if [ "${KB_PACKAGE_TMPFS:-1}" != 0 ]; then
  mount_in -t tmpfs -o size=4g,mode=0755 kb-package-test "$run"
fi
cp -a --reflink=auto "$base/." "$run/"
cp /etc/resolv.conf "$run/etc/resolv.conf"
# dpkg without an fsync per file: this copy is thrown away, and the install itself is the
# same (what is unpacked, the maintainer scripts). Debian's own chroot builders do this.
echo force-unsafe-io > "$run/etc/dpkg/dpkg.cfg.d/keybridge-test-unsafe-io"
mount_in -t proc proc "$run/proc"
mount_in --rbind /dev "$run/dev"
mount --make-rslave "$run/dev"
mount_in --bind "$CACHE/archives" "$run/var/cache/apt/archives"
chroot "$run" chown _apt:root /var/cache/apt/archives/partial
phase "fresh copy of the root with /proc, /dev and the package cache mounted"

in_root() { chroot "$run" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }
as_user() {
  chroot "$run" runuser -u "$USER_NAME" -- env -i HOME="/home/$USER_NAME" USER="$USER_NAME" \
    PATH=/usr/bin:/bin LANG=C.UTF-8 "$@"
}
apt_install() { # ARGS...: apt install, refreshing the package lists once if they are stale
  in_root apt install -y -q "$@" > "$run/tmp/apt.log" 2>&1 || {
    echo "run.sh: apt install failed; refreshing the package lists and trying again" >&2
    in_root apt-get update -qq
    in_root apt install -y -q "$@" > "$run/tmp/apt.log" 2>&1 || { cat "$run/tmp/apt.log" >&2; exit 1; }
  }
}

cp "$deb" "$run/tmp/"
apt_install "/tmp/$(basename "$deb")"
grep -E '^(Setting up keybridge|The following NEW packages)' "$run/tmp/apt.log" || true
new_pkgs="$(grep -c '^Setting up ' "$run/tmp/apt.log" || true)"
phase "apt install ./$(basename "$deb") ($new_pkgs packages set up, no udev here)"
for d in /etc/chromium /etc/opt/chrome /etc/opt/edge; do
  # Read inside the root: the link is absolute.
  m="$d/native-messaging-hosts/com.keybridge.host.json"
  in_root grep -q '"path": "/usr/bin/keybridge"' "$m" 2> /dev/null || { echo "run.sh: no native messaging manifest at $d" >&2; exit 1; }
  mode="$(in_root stat -L -c %a "$m")"
  [ "$mode" = 644 ] || { echo "run.sh: $m is not readable by the browser (mode $mode)" >&2; exit 1; }
done
phase "the native messaging host manifest linked for Chromium, Chrome and Edge"

install -m 0755 "$HERE/inside.sh" "$run/tmp/inside.sh"
as_user /tmp/inside.sh libs
phase "every packaged binary resolves its libraries"

apt_install --no-install-recommends "${TEST_TOOLS[@]}"
phase "test tools installed (${TEST_TOOLS[*]})"
as_user /tmp/inside.sh run
phase "the CLI and the desktop app work"

# ---- 5. remove and purge --------------------------------------------------------------
user_data="/home/$USER_NAME/.local/share/keybridge"
[ -d "$run$user_data/keys" ] || { echo "run.sh: no user data at $user_data/keys after the demo" >&2; exit 1; }
in_root apt-get remove -y -q keybridge > "$run/tmp/remove.log" 2>&1 || { cat "$run/tmp/remove.log" >&2; exit 1; }
[ ! -e "$run/usr/bin/keybridge" ] && [ ! -e "$run/usr/lib/udev/rules.d/70-keybridge.rules" ] || {
  echo "run.sh: remove left the package's files" >&2
  exit 1
}
[ -d "$run$user_data/keys" ] || { echo "run.sh: remove deleted the user's keys" >&2; exit 1; }
for d in /etc/chromium /etc/opt/chrome /etc/opt/edge; do
  [ ! -L "$run$d/native-messaging-hosts/com.keybridge.host.json" ] || { echo "run.sh: remove left the manifest link in $d" >&2; exit 1; }
done
in_root apt-get purge -y -q keybridge > "$run/tmp/purge.log" 2>&1 || { cat "$run/tmp/purge.log" >&2; exit 1; }
grep -A6 '^keybridge: purge' "$run/tmp/purge.log"
grep -q '^keybridge: purge' "$run/tmp/purge.log" || { echo "run.sh: purge did not say what it removes" >&2; exit 1; }
[ -d "$run$user_data/keys" ] || { echo "run.sh: purge deleted the user's keys" >&2; exit 1; }
phase "remove keeps the user's keys and data; purge says what it removes and keeps them too"

echo "run.sh: ok in $(($(date +%s) - t_start)) s"
