//! Harness body for the desktop app's update-check response parser (uses nothing but
//! `kb_desktop`, `kb_crypto` and `std`, so `bridge/kb-desktop/tests/no_panic.rs` can include
//! this file).
//!
//! Input: a raw HTTP response as a server (or a captive portal, or an attacker on the
//! path of a misconfigured http URL) might send. The app pins a fixed fuzzing key here
//! ([`fuzz_key`]; the seeds are signed with it). Invariants: an accepted manifest verified
//! with the pinned key and has a `MAJOR.MINOR.PATCH` version, which is not newer than
//! itself and compares consistently.

use kb_desktop::update::{is_newer, parse_response, parse_version};

/// The fuzzing release key (a fixed scalar: it signs the committed seeds).
pub fn fuzz_key() -> kb_crypto::PrivateKey {
    let k = kb_crypto::sm2::Sm2PrivateKey::from_bytes(&[0x5a; 32]).expect("a valid scalar");
    kb_crypto::PrivateKey::Sm2(k)
}

/// Returns whether the response was accepted as a manifest.
pub fn update_manifest(data: &[u8]) -> bool {
    match parse_response(data, &[fuzz_key().public_key()]) {
        Ok(m) => {
            assert!(parse_version(&m.version).is_some(), "accepted an unparseable version");
            assert!(!is_newer(&m.version, &m.version), "a version is newer than itself");
            assert!(is_newer(&m.version, "0.0.0") || parse_version(&m.version) == Some((0, 0, 0)));
            true
        }
        Err(_) => false,
    }
}
