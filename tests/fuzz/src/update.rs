//! Harness body for the desktop app's update-check response parser (uses nothing but
//! `kb_desktop` and `std`, so `bridge/kb-desktop/tests/no_panic.rs` can include this
//! file).
//!
//! Input: a raw HTTP response as a server (or a captive portal, or an attacker on the
//! path of a misconfigured http URL) might send. Invariants: an accepted manifest has a
//! `MAJOR.MINOR.PATCH` version, which is not newer than itself and compares consistently.

use kb_desktop::update::{is_newer, parse_response, parse_version};

/// Returns whether the response was accepted as a manifest.
pub fn update_manifest(data: &[u8]) -> bool {
    match parse_response(data) {
        Ok(m) => {
            assert!(parse_version(&m.version).is_some(), "accepted an unparseable version");
            assert!(!is_newer(&m.version, &m.version), "a version is newer than itself");
            assert!(is_newer(&m.version, "0.0.0") || parse_version(&m.version) == Some((0, 0, 0)));
            true
        }
        Err(_) => false,
    }
}
