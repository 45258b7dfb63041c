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

export KB_INTEROP_REQUIRED=1
# CI builds from a fresh clone: incremental compilation only writes caches nobody reads.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

phase "cargo test (workspace)"
cargo test --workspace --locked --no-fail-fast

phase "TypeScript SDK (bridge/sdk-js): npm test"
(cd "$ROOT/bridge/sdk-js" && npm test)

phase "desktop app UI (ui/): type check and component tests (Vitest)"
(cd "$ROOT/ui" && npm run --silent typecheck && npm test)

phase "desktop app: the real window under Xvfb, driven by WebKitWebDriver (tests/desktop)"
cargo build --locked -q -p keybridge-desktop -p keybridge
"$ROOT/tests/desktop/run.sh" "${CARGO_TARGET_DIR:-$ROOT/target}/debug/keybridge-desktop"

phase "bridge end to end (tests/e2e): a web page in headless Chromium, a bid tool sealing a 64 MiB bid, a phone as the key"
cargo build --locked -q -p keybridge -p keybridge-phone
(cd "$ROOT/tests/e2e" && KEYBRIDGE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/keybridge" npm test)

# The package install test needs root (debootstrap, chroot, mounts) and Debian's archive the
# first time; CI has both. KB_SKIP_PACKAGE=1 leaves it out on a developer machine.
if [ "${KB_SKIP_PACKAGE:-0}" != "1" ]; then
  phase "packages: the .deb (debug bundle), lintian, apt install into a fresh Debian 12 root, used there (tests/package)"
  "$ROOT/installer/bootstrap.sh" --package > /dev/null
  "$ROOT/tests/package/run.sh"
fi

phase "main job smoke run: the README's run command (keybridge demo), then sign and verify with the demo key"
demo="$(mktemp -d)"
trap 'rm -rf "$demo"' EXIT
kb=(cargo run --locked -q -p keybridge -- --home "$demo")
"${kb[@]}" demo > "$demo/demo.log"
"${kb[@]}" demo > /dev/null   # idempotent: a second run only reports the existing key
"${kb[@]}" --json certs > "$demo/certs.json"
echo "投标文件 smoke test" > "$demo/bid.txt"
echo 12345678 | "${kb[@]}" --pin-stdin sign --in "$demo/bid.txt" --out "$demo/bid.p7s" --format cms-detached > /dev/null
"${kb[@]}" verify --sig "$demo/bid.p7s" --in "$demo/bid.txt" --ca "$demo/data/demo-ca/root.pem" > /dev/null
# The demo chain checked by OpenSSL too (SM2 needs the GM/T default ID).
"${kb[@]}" cert export --out "$demo/sign.pem" --pem > /dev/null
openssl verify -CAfile "$demo/data/demo-ca/root.pem" -vfyopt distid:1234567812345678 "$demo/sign.pem"
cargo run --locked -q -p kb-pki --example walkthrough -- "$demo/walkthrough" > /dev/null

if [ "${KB_SKIP_BENCH:-0}" != "1" ]; then
  # Built with the dev profile the tests already built (the crypto crates are optimised
  # there too): the smoke keeps the benchmark binaries from rotting without a cold release
  # build. Figures come from release builds: see docs/benchmarks.md.
  phase "benchmark smoke run (dev profile; figures are not checked here; see docs/benchmarks.md)"
  cargo run --locked -q -p kb-bench -- --quick
  cargo bench --profile dev --locked -q -p kb-bridge --bench bridge_load -- --quick
  cargo bench --profile dev --locked -q -p kb-bridge --bench envelope -- --quick
  cargo bench --profile dev --locked -q -p kb-phonelink --bench relay -- --quick
fi
echo "   (phase took $((SECONDS - PHASE_START)) s)"
echo "run-all: ok in $((SECONDS - START)) s"
