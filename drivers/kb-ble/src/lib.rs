//! BLE keys (蓝牙Key) for KeyBridge: ISO 7816 APDUs over GATT with the FIDO BLE framing
//! (docs/ble-keys.md), under the same card stack PC/SC cards use.
//!
//! - [`frame`]: the framing, I/O-free — fragmenter, strict reassembler, the host's view of
//!   an exchange (keep-alive, error frames, cancel).
//! - [`BleCentral`] / [`BleLink`]: the BLE I/O as two traits, implemented by [`btle`]
//!   (btleplug; BlueZ over D-Bus on Linux) and [`virtual_key`] (in memory).
//! - [`BleCard`]: a [`kb_apdu::CardBackend`] over a link, so `kb_apdu::send` and
//!   [`kb_openpgp::OpenPgpCard`] run over BLE unchanged; link loss mid-APDU is
//!   `outcome_unknown` within a bound, a link already down is `medium_offline`.
//! - [`BleTransport`]: scan (filtered by the service), list, connect/disconnect/forget on
//!   the user's request, remembered keys reconnecting if asked, `Offline`/`Online`
//!   events, 蓝牙不可用 reported once as a state, and links closed at exit.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

#[cfg(target_os = "linux")]
pub mod btle;
mod card;
pub mod frame;
mod link;
mod token;
mod transport;
pub mod virtual_key;

pub use card::{BleCard, ExchangeLimits, SharedLink, exchange};
pub use link::{
    Advertisement, BleCentral, BleError, BleLink, BluetoothState, CONTROL_POINT_LENGTH_UUID, CONTROL_POINT_UUID, OnLost,
    SERVICE_UUID, STATUS_UUID,
};
pub use token::BleToken;
pub use transport::{BleKeyListing, BleTransport, RECONNECT_INTERVAL, RememberedKey, SCAN_WINDOW, STATE_POLL};
