//! Fuzz harness bodies for KeyBridge's parsers.
//!
//! Each `pub fn target(data: &[u8]) -> bool` feeds arbitrary bytes to the public parsers
//! and then exercises whatever a caller would do with the result. It must never panic.
//! It returns whether the main parser accepted the input, so the stable `no_panic`
//! tests can check that every seed parses (and cannot pass vacuously).
//!
//! The same files are compiled three ways:
//! - here, for the libFuzzer targets in `fuzz_targets/` (one line each);
//! - into `drivers/kb-crypto/tests/no_panic.rs` (`crypto.rs`),
//!   `drivers/kb-pki/tests/no_panic.rs` (`pki.rs`) and `drivers/kb-apdu/tests/no_panic.rs`
//!   (`apdu.rs`), `bridge/kb-bridge-protocol/tests/no_panic.rs` (`bridge.rs`) and
//!   `bridge/kb-bridge/tests/no_panic.rs` (`handshake.rs`) and
//!   `bridge/kb-desktop/tests/no_panic.rs` (`update.rs`) and
//!   `drivers/kb-phonelink/tests/no_panic.rs` (`phonelink.rs`) with
//!   `drivers/kb-phone/tests/no_panic.rs` (`phone.rs`) with
//!   `#[path]`, where a deterministic
//!   mutator (`mutator.rs`) replays thousands of mutated seeds under `cargo test`.
//!
//! Adding a target: write `pub fn name(data: &[u8]) -> bool` in `crypto.rs` or `pki.rs`,
//! add `fuzz_targets/name.rs` (copy any one), a `[[bin]]` in `Cargo.toml`, seeds in
//! `seeds/name/`, and one `run("name", harness::name, 5_000)` line in the `no_panic` test.

pub mod apdu;
pub mod bridge;
pub mod crypto;
pub mod handshake;
#[doc(hidden)]
pub mod mutator;
pub mod phonelink;
pub mod phone;
pub mod pki;
pub mod update;
