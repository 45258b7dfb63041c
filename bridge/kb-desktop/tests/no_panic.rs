//! The update check's response parser never panics and keeps its invariants, whatever a
//! server sends: the libFuzzer target's body (`tests/fuzz/src/update.rs`) over the
//! committed seeds (which must all be accepted) and 5,000 mutations of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/update.rs"]
mod harness;
#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/mutator.rs"]
mod mutator;

#[test]
fn update_responses_never_panic() {
    mutator::run(env!("CARGO_MANIFEST_DIR"), "update_manifest", harness::update_manifest, 5_000);
}
