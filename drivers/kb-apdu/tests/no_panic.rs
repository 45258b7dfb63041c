//! No parser in kb-apdu may panic, whatever bytes a card sends.
//!
//! The harness body the libFuzzer target runs (`tests/fuzz/src/apdu.rs`, target
//! `apdu_tlv`) is fed the committed seeds (`tests/fuzz/seeds/apdu_tlv/`: an OpenPGP
//! application-related-data object, a public-key template, an FCI), which must all parse,
//! then 5,000 deterministic mutations of them (`tests/fuzz/src/mutator.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/apdu.rs"]
mod harness;
#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/mutator.rs"]
mod mutator;

#[test]
fn apdu_and_tlv_parsers_never_panic() {
    mutator::run(env!("CARGO_MANIFEST_DIR"), "apdu_tlv", harness::apdu_tlv, 5_000);
}

/// Random bytes (not mutated seeds) too: short inputs hit the status-word and command
/// case boundaries the seeds do not.
#[test]
fn random_short_inputs_never_panic() {
    let mut rng = mutator::Rng::new(7816);
    for _ in 0..5_000 {
        let len = rng.below(24);
        let input: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if std::panic::catch_unwind(|| harness::apdu_tlv(&input)).is_err() {
            panic!("panic on {}", hex::encode(&input));
        }
    }
}
