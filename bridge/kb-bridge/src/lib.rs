//! KeyBridge's local signing bridge: the WebSocket server that lets bid-authoring
//! tools and trading-platform web pages sign, verify, encrypt and decrypt with the
//! user's keys — without ever seeing a PIN — and the Rust client for it.
//!
//! The wire contract is `kb-bridge-protocol` (and `docs/bridge-protocol.md`); this
//! crate enforces it:
//!
//! - [`handshake`]: before any method runs, the HTTP upgrade is checked — peer on
//!   loopback, `Host` a loopback name with our port (DNS rebinding), `Origin` an
//!   allowed web origin (cross-site WebSocket hijacking), or, with no `Origin`, the
//!   per-user [`secret::ClientSecret`] in `Authorization: Bearer`.
//! - [`consent`]: a web origin's first method raises a consent prompt through the
//!   service's `Prompter`; grants are remembered, listed and revocable ([`consent::GrantStore`]).
//! - [`methods`]: every method as a plain synchronous function over the device
//!   service, testable without a socket. PINs are asked by the device service's
//!   prompter inside the device actor; no method takes one.
//! - [`streams`]: bulk data in binary frames with back-pressure both ways.
//! - [`server`]: the tokio server — limits (message size, requests in flight, failure
//!   rate, idle request timeout, slow readers, handshake time), events, cancellation.
//! - [`client`]: the Rust client SDK.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod activity;
pub mod browser_policy;
pub mod certs;
pub mod client;
pub mod config;
pub mod consent;
mod error;
pub mod handshake;
pub mod methods;
pub mod native;
pub mod secret;
pub mod server;
pub mod streams;
pub use kb_service::trust;

pub use config::BridgeConfig;
pub use error::{error_object, service_error_object};
pub use server::{Bridge, RunningBridge};

/// The runtime the bridge runs on (`keybridge serve`, the desktop app's core): **one**
/// worker thread for the connections' tasks, and tokio's blocking pool for every request
/// (media, files, crypto: `spawn_blocking`).
///
/// One worker because nothing CPU-heavy runs on it and, with a second one, every message
/// woke both: a signature for one client waiting for each answer cost 6.6–6.8 thread
/// switches with two workers and 5.0 with one (`cargo bench -p kb-bridge --bench
/// bridge_load`; see `docs/bridge-performance.md`). The WebSocket framing of large
/// streams stays well under one core (about 1 CPU-s per GiB each way).
pub fn runtime_builder() -> tokio::runtime::Builder {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.worker_threads(1).enable_all().thread_name("kb-bridge");
    b
}
