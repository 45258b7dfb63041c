//! Signatures per second over PC/SC on the virtual OpenPGP card (pcscd + vpcd + the
//! PyPI `smartcard-app-openpgp` emulator, started by the test rig). Each signature is
//! one card transaction: SELECT, VERIFY PW1, PSO:COMPUTE DIGITAL SIGNATURE (ECDSA P-256).
//!
//! `cargo bench -p kb-pcsc --bench pcsc_sign` (skips with a message when the rig's peers
//! are missing). Dominated by the emulator (Python) and pcscd round trips, not by KeyBridge.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout, missing_docs)]

#[path = "../tests/rig/mod.rs"]
mod rig;

use kb_crypto::{HashAlgorithm, SignatureScheme};
use kb_openpgp::CONTAINER;
use kb_token::Token;
use kb_types::{KeyUsage, Pin};
use std::time::{Duration, Instant};

fn main() {
    let Some(rig) = rig::Rig::start() else { return };
    let _card = rig.insert("bench", "000000B1", None);
    let mut card = rig::open_direct(&rig);
    rig::personalize(&mut card);
    let pk = card.public_key(CONTAINER, KeyUsage::Sign).unwrap();
    let scheme = SignatureScheme::Ecdsa(HashAlgorithm::Sha256);
    let digest = pk.message_digest(&scheme, b"bench").unwrap();
    let mut s = card.login(&Pin::new(rig::USER_PIN)).unwrap();
    for _ in 0..5 {
        s.sign_digest(CONTAINER, KeyUsage::Sign, &scheme, &digest).unwrap();
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_secs(3) {
        let sig = s.sign_digest(CONTAINER, KeyUsage::Sign, &scheme, &digest).unwrap();
        n += 1;
        if n == 1 {
            pk.verify_digest(&scheme, &digest, &sig).unwrap();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "ECDSA P-256 sign over PC/SC (virtual OpenPGP card): {n} in {secs:.2} s = {:.1} ops/s, {:.2} ms/op",
        f64::from(n) / secs,
        secs * 1000.0 / f64::from(n)
    );
}
