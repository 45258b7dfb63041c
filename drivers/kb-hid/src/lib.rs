//! HID keys for KeyBridge.
//!
//! Many Chinese GM (SM2) USB keys are HID devices that carry a vendor protocol; their
//! vendors ship SKF (GM/T 0016) or PKCS#11 modules that speak it. No such protocol is
//! publicly documented, so KeyBridge does not speak any of them: this crate finds the keys
//! listed in the media registry and says what each one needs, and gives a future protocol
//! driver the path to become a medium.
//!
//! - [`HidBackend`] / [`HidConnection`]: enumerate HID interfaces (VID/PID, serial, path,
//!   usage page), open one, write and read reports with a timeout. [`HidapiBackend`] is the
//!   real one (hidapi; on Linux its pure-Rust hidraw backend), [`VirtualHid`] an in-process
//!   one for tests (devices appear and disappear, scripted reports).
//! - [`HidTransport`]: the [`kb_token::Transport`] that polls the backend every
//!   [`POLL_INTERVAL`], matches devices against the registry's `interface = "vendor"` USB
//!   entries, and reports each listed key once, as "present, needs …" (a transport error,
//!   the way the PC/SC transport reports cards it cannot serve), or — when a [`HidDriver`]
//!   for the entry's `app` is registered — as a medium (`Added` / `Removed`).
//! - [`udev`]: the installer's udev rules, generated from the registry, and a syntax check.
//!
//! No report framing (APDU chunking over 64-byte reports) is provided: the only documented
//! framing of that kind in wide use, FIDO CTAPHID, carries no SM2 certificates, and the GM
//! keys' framings are unpublished.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

mod backend;
mod hidapi_backend;
mod transport;
pub mod udev;
mod virtual_hid;

pub use backend::{HidBackend, HidConnection, HidDeviceInfo, HidError};
pub use hidapi_backend::HidapiBackend;
pub use transport::{HidDriver, HidTransport, POLL_INTERVAL};
pub use virtual_hid::VirtualHid;
