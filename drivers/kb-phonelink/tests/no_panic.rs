//! No phone-link parser may panic, whatever bytes a scanner or a transport delivers.
//!
//! The harness bodies the libFuzzer targets run (`tests/fuzz/src/phonelink.rs`, targets
//! `phone_qr` and `phone_frame`) are fed the committed seeds (`tests/fuzz/seeds/phone_qr/`:
//! offer strings and a raw body; `tests/fuzz/seeds/phone_frame/`: the test vector's
//! handshake frames, a refusal, a transport frame), which must all be accepted, then
//! deterministic mutations of them (`tests/fuzz/src/mutator.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/phonelink.rs"]
mod harness;
#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/mutator.rs"]
mod mutator;

#[test]
fn qr_parser_never_panics() {
    mutator::run(env!("CARGO_MANIFEST_DIR"), "phone_qr", harness::phone_qr, 5_000);
}

#[test]
fn frame_and_handshake_parsers_never_panic() {
    mutator::run(env!("CARGO_MANIFEST_DIR"), "phone_frame", harness::phone_frame, 1_000);
}

/// Writes the generated `phone_qr` seeds (an offer with every endpoint type, and its raw
/// body). Run by hand: `cargo test -p kb-phonelink --test no_panic -- --ignored generate_seeds`.
#[test]
#[ignore = "writes seed files"]
fn generate_seeds() {
    use kb_phonelink::qr::{Endpoint, Offer};
    let o = Offer {
        pc_key: *kb_phonelink::StaticKey::from_private(&[0x11; 32]).unwrap().public(),
        offer_id: *b"offer-02",
        secret: zeroize::Zeroizing::new([0x42; 16]),
        expires: 1_800_000_000,
        endpoints: vec![
            Endpoint::Direct("10.0.0.7:48213".parse().unwrap()),
            Endpoint::Direct("[fd00::7]:48213".parse().unwrap()),
            Endpoint::Relay { url: "wss://relay.example.com:443".into(), tunnel: "kb-0123456789abcdef".into() },
        ],
    };
    let dir = mutator::seed_dir(env!("CARGO_MANIFEST_DIR"), "phone_qr");
    std::fs::write(dir.join("all_endpoints"), o.encode().unwrap()).unwrap();
    std::fs::write(dir.join("raw_body.bin"), o.body()).unwrap();
}
