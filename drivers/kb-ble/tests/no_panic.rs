//! The BLE frame reassembler may not panic, whatever a key sends.
//!
//! The harness body the libFuzzer target runs (`tests/fuzz/src/ble.rs`, target
//! `ble_frame`) is fed the committed seeds (`tests/fuzz/seeds/ble_frame/`: responses at
//! 20 and 202-byte fragments, a SEQ wrap, keep-alive and error frames before an answer),
//! which must all yield an answer, then 5,000 deterministic mutations of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/ble.rs"]
mod harness;
#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/mutator.rs"]
mod mutator;

#[test]
fn the_reassembler_never_panics_on_mutated_frames() {
    mutator::run(env!("CARGO_MANIFEST_DIR"), "ble_frame", harness::ble_frame, 5_000);
}

/// Random short inputs too: header and sequence boundaries the seeds do not reach.
#[test]
fn random_short_inputs_never_panic() {
    let mut rng = mutator::Rng::new(0xB1E);
    for _ in 0..5_000 {
        let len = rng.below(40);
        let input: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if std::panic::catch_unwind(|| harness::ble_frame(&input)).is_err() {
            panic!("panic on {input:02x?}");
        }
    }
}
