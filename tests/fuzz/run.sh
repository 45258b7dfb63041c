#!/usr/bin/env bash
# Run every cargo-fuzz target in tests/fuzz for N seconds each (default 30).
#
#   tests/fuzz/run.sh [seconds] [target...]
#
# - Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when it is missing.
# - libFuzzer needs nightly rustc flags (-Zsanitizer, sancov). On a stable toolchain
#   RUSTC_BOOTSTRAP=1 unlocks them, which is what this script does by default; set
#   KB_FUZZ_TOOLCHAIN=nightly to use `cargo +nightly fuzz` instead when one is installed.
# - Every target found by `cargo fuzz list` is run (so new targets need no edit here),
#   starting from the committed seeds in seeds/<target>/; inputs libFuzzer finds go to
#   corpus/<target>/ and crashes to artifacts/<target>/ (both git-ignored).
# - Extra libFuzzer flags: KB_FUZZ_ARGS (e.g. "-max_len=65536 -jobs=2").
# Exits non-zero if any target crashed, printing the reproducer command.
set -euo pipefail

secs="${1:-30}"
shift || true
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cargo_fuzz=(cargo fuzz)
if [[ -n "${KB_FUZZ_TOOLCHAIN:-}" ]]; then
    cargo_fuzz=(cargo "+${KB_FUZZ_TOOLCHAIN}" fuzz)
else
    export RUSTC_BOOTSTRAP=1
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <("${cargo_fuzz[@]}" list --fuzz-dir "$here")
fi

echo "== building ${#targets[@]} targets (${cargo_fuzz[*]}, RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-unset})"
"${cargo_fuzz[@]}" build --fuzz-dir "$here"

mkdir -p logs
summary=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
    log="logs/$t.log"
    echo "== $t: ${secs}s"
    set +e
    # shellcheck disable=SC2086
    "${cargo_fuzz[@]}" run --fuzz-dir "$here" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" ${KB_FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    set -e
    runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)"
    cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)"
    if [[ $rc -eq 0 ]]; then
        summary+=("$(printf '%-16s ok     %10s execs  cov %s' "$t" "${runs:-?}" "${cov:-?}")")
    else
        failed=1
        crash="$(ls -t "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* 2>/dev/null | head -1 || true)"
        summary+=("$(printf '%-16s FAILED %10s execs  exit %s  %s' "$t" "${runs:-?}" "$rc" "${crash:-see $log}")")
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5 || true
        [[ -n "$crash" ]] && echo "   reproduce: (cd tests/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $t $crash)"
    fi
done

echo
echo "== summary (${secs}s per target; logs in tests/fuzz/logs/)"
printf '%s\n' "${summary[@]}"
exit "$failed"
