#!/usr/bin/env bash
# Runs every KeyBridge test on a fresh Debian 12 machine: installs what is needed
# (installer/bootstrap.sh), then the whole workspace test suite with the independent
# peers required (OpenSSL 3, PyPI gmssl, npm sm-crypto), the desktop UI's component tests
# and its real window under Xvfb (WebKitWebDriver), the bridge's end-to-end tests
# (headless Chromium, Node clients), then a quick benchmark smoke
# run so the benchmark binary cannot rot.
#
#   tests/run-all.sh            everything
#   KB_SKIP_BENCH=1 tests/run-all.sh   tests only
#   KB_SKIP_PACKAGE=1 tests/run-all.sh without the package install test (needs root)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Each phase's wall time, so CI's 30-minute budget can be kept by looking at the log.
START=$SECONDS
PHASE_START=$SECONDS
phase() {
  echo "   (phase took $((SECONDS - PHASE_START)) s; $((SECONDS - START)) s so far)"
  PHASE_START=$SECONDS
  echo "== $* =="
}

"$ROOT/installer/bootstrap.sh"

# The package test's Debian 12 root (debootstrap: mostly download and unpacking) is made in
# the background while the workspace compiles; the package phase waits for it. Its own
# process group, so an early exit can stop it.
pkg_root_pid=""
bench_pid=""
logs="$(mktemp -d)"
stop_background() {
  local pid
  for pid in $pkg_root_pid $bench_pid; do kill -- "-$pid" 2> /dev/null || true; done
  rm -rf "$logs"
}
trap stop_background EXIT
if [ "${KB_SKIP_PACKAGE:-0}" != "1" ]; then
  setsid -w "$ROOT/tests/package/run.sh" --root > "$logs/package-root.log" 2>&1 &
  pkg_root_pid=$!
fi

export KB_INTEROP_REQUIRED=1
# CI builds from a fresh clone: incremental compilation only writes caches nobody reads.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Every later phase runs what this phase builds: the test build, then the workspace's binaries,
# examples and benchmarks with the same features (tests/run-tests.py --build-all-targets).
# A `cargo build -p …`/`cargo run -p …` of its own would resolve features for its selection
# and compile much of the tree again.
phase "cargo test (workspace): built once, the test binaries run two at a time (tests/run-tests.py)"
python3 "$ROOT/tests/run-tests.py" --jobs 2 --build-all-targets
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
export ROOT
run_built() { python3 "$ROOT/tests/run-tests.py" --run "$@"; }

phase "TypeScript SDK (bridge/sdk-js): npm test"
(cd "$ROOT/bridge/sdk-js" && npm test)

phase "desktop app UI (ui/): type check and component tests (Vitest)"
(cd "$ROOT/ui" && npm run --silent typecheck && npm test)

phase "desktop app: the real window under Xvfb, driven by WebKitWebDriver (tests/desktop)"
# The window binary exec()s the core, keybridge-tray, from beside it: both come from the
# first phase's --workspace build.
"$ROOT/tests/desktop/run.sh" "$BIN/keybridge-desktop"

phase "bridge end to end (tests/e2e): a web page in headless Chromium, a bid tool sealing a 64 MiB bid, a phone as the key"
(cd "$ROOT/tests/e2e" && KEYBRIDGE_BIN="$BIN/keybridge" npm test)

phase "main job smoke run: the README's run command (keybridge demo), then sign and verify with the demo key"
demo="$logs/demo"; mkdir "$demo"
kb=("$BIN/keybridge" --home "$demo")
"${kb[@]}" demo > "$demo/demo.log"
"${kb[@]}" demo > /dev/null   # idempotent: a second run only reports the existing key
"${kb[@]}" --json certs > "$demo/certs.json"
echo "投标文件 smoke test" > "$demo/bid.txt"
echo 12345678 | "${kb[@]}" --pin-stdin sign --in "$demo/bid.txt" --out "$demo/bid.p7s" --format cms-detached > /dev/null
"${kb[@]}" verify --sig "$demo/bid.p7s" --in "$demo/bid.txt" --ca "$demo/data/demo-ca/root.pem" > /dev/null
# The demo chain checked by OpenSSL too (SM2 needs the GM/T default ID).
"${kb[@]}" cert export --out "$demo/sign.pem" --pem > /dev/null
openssl verify -CAfile "$demo/data/demo-ca/root.pem" -vfyopt distid:1234567812345678 "$demo/sign.pem"
run_built example:walkthrough -- "$demo/walkthrough" > /dev/null

# The benchmark smoke, the dev-profile builds of the first phase (the crypto crates are
# optimised there too): it keeps the benchmark binaries from rotting without a cold release
# build; figures come from release builds (docs/benchmarks.md), none are checked here. With
# the package test it runs in the background beside it: the install test mostly waits on
# dpkg and the disk.
bench_smoke() {
  run_built bin:kb-bench -- --quick
  run_built bin:kb-dudect -- --quick
  run_built bench:bridge_load -- --quick
  run_built bench:envelope -- --quick
  run_built bench:relay -- --quick
}
run_bench=1
[ "${KB_SKIP_BENCH:-0}" != "1" ] || run_bench=0

# The package install test needs root (debootstrap, chroot, mounts) and Debian's archive the
# first time; CI has both. KB_SKIP_PACKAGE=1 leaves it out on a developer machine.
if [ "${KB_SKIP_PACKAGE:-0}" != "1" ]; then
  phase "packages: the .deb (debug bundle), lintian, apt install into a fresh Debian 12 root, used there (tests/package)$([ $run_bench = 1 ] && echo '; the benchmark smoke beside it')"
  if [ $run_bench = 1 ]; then
    setsid -w bash -c "$(declare -f run_built bench_smoke); bench_smoke" > "$logs/bench.log" 2>&1 &
    bench_pid=$!
  fi
  wait "$pkg_root_pid" || { cat "$logs/package-root.log"; echo "run-all: making the package test's Debian root failed" >&2; exit 1; }
  pkg_root_pid=""
  sed 's/^/   (background) /' "$logs/package-root.log"
  KB_PACKAGE_PREBUILT=1 "$ROOT/tests/package/run.sh"
  if [ $run_bench = 1 ]; then
    bench_status=0
    wait "$bench_pid" || bench_status=$?
    bench_pid=""
    echo "-- benchmark smoke (dev profile; figures are not checked here; see docs/benchmarks.md) --"
    cat "$logs/bench.log"
    [ "$bench_status" = 0 ] || { echo "run-all: the benchmark smoke failed ($bench_status)" >&2; exit 1; }
    run_bench=0
  fi
fi

if [ $run_bench = 1 ]; then
  phase "benchmark smoke run (dev profile; figures are not checked here; see docs/benchmarks.md)"
  bench_smoke
fi
echo "   (phase took $((SECONDS - PHASE_START)) s)"
echo "run-all: ok in $((SECONDS - START)) s"
