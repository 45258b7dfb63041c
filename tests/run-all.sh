#!/usr/bin/env bash
# Runs every KeyBridge test on a fresh Debian 12 machine: installs what is needed
# (installer/bootstrap.sh), then the whole workspace test suite with the independent
# peers required (OpenSSL 3, PyPI gmssl, npm sm-crypto), then a quick benchmark smoke
# run so the benchmark binary cannot rot.
#
#   tests/run-all.sh            everything
#   KB_SKIP_BENCH=1 tests/run-all.sh   tests only
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/installer/bootstrap.sh"

export KB_INTEROP_REQUIRED=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo test (workspace) =="
cargo test --workspace --locked --no-fail-fast

echo "== main job smoke run: the README's run command, checked with OpenSSL =="
demo="$(mktemp -d)"
trap 'rm -rf "$demo"' EXIT
cargo run --locked -q -p kb-pki --example walkthrough -- "$demo" > "$demo/walkthrough.log"
openssl verify -CAfile "$demo/ca.pem" -vfyopt distid:1234567812345678 "$demo/sign.pem"
cmp "$demo/bid.txt" "$demo/bid.opened.txt"

if [ "${KB_SKIP_BENCH:-0}" != "1" ]; then
  echo "== benchmark smoke run (figures are not checked here; see docs/benchmarks.md) =="
  cargo run --release --locked -q -p kb-bench -- --quick
fi
echo "run-all: ok"
