//! PC/SC for KeyBridge: smart cards and USB keys in readers, with hot-plug.
//!
//! - [`PcscTransport`]: the [`kb_token::Transport`] over PC/SC — readers and cards as they
//!   come and go (`SCardGetStatusChange` with the PnP pseudo-reader and a bounded wait),
//!   surviving a restart of the PC/SC service; cards KeyBridge serves are opened as
//!   [`kb_openpgp::OpenPgpCard`] tokens, others reported with what they need.
//! - [`PcscCard`]: a [`kb_apdu::CardBackend`] over one reader, reconnecting after a card
//!   reset; PC/SC failures become `ApduError`s in [`map_error`] alone.
//! - [`registry`]: the media registry kept as data in `drivers/registry/media.toml`
//!   (ATR patterns and USB VID:PID → card application or what must be installed),
//!   re-exported from `kb-registry`.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

mod backend;
mod transport;

pub use backend::{PcscCard, map_error};
/// The media registry, shared with the HID transport (crate `kb-registry`).
pub use kb_registry as registry;
pub use kb_registry::Registry;
pub use transport::{MAX_BACKOFF, MIN_BACKOFF, PcscTransport, STATUS_WAIT};
