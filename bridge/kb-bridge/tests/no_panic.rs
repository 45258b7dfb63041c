//! The handshake checks never panic and keep their invariants, whatever headers a
//! client sends: the libFuzzer target's body (`tests/fuzz/src/handshake.rs`) over the
//! committed seeds (which must all be accepted) and 5,000 mutations of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/handshake.rs"]
mod harness;
#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/mutator.rs"]
mod mutator;

#[test]
fn handshake_checks_never_panic() {
    mutator::run(env!("CARGO_MANIFEST_DIR"), "handshake", harness::handshake, 5_000);
}
