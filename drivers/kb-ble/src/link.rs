//! The BLE I/O behind two traits — [`BleCentral`] (the adapter: state, scan, connect) and
//! [`BleLink`] (one connected key: write a fragment, receive a notification) — with the
//! real implementation in [`crate::btle`] (btleplug, BlueZ over D-Bus on Linux) and an
//! in-memory one in [`crate::virtual_key`].

use kb_types::{ErrorCode, HasErrorCode};
use std::time::Duration;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Our own GATT service for APDU keys (docs/ble-keys.md). Not FIDO's `0xFFFD`: a FIDO
/// client (a browser, the OS) would take a key advertising it for a FIDO authenticator.
pub const SERVICE_UUID: Uuid = Uuid::from_u128(0x6b62_a5d0_7e3c_4d0b_9a43_2f1c_0b5e_0001);
/// Control point (host → key, write with response): request fragments.
pub const CONTROL_POINT_UUID: Uuid = Uuid::from_u128(0x6b62_a5d0_7e3c_4d0b_9a43_2f1c_0b5e_0002);
/// Status (key → host, notify): response fragments.
pub const STATUS_UUID: Uuid = Uuid::from_u128(0x6b62_a5d0_7e3c_4d0b_9a43_2f1c_0b5e_0003);
/// Control-point length (read): the key's fragment size, big-endian u16 in 20..=512.
pub const CONTROL_POINT_LENGTH_UUID: Uuid = Uuid::from_u128(0x6b62_a5d0_7e3c_4d0b_9a43_2f1c_0b5e_0004);

/// Whether Bluetooth can be used at all.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BluetoothState {
    /// An adapter is there and powered.
    Available,
    /// 蓝牙不可用: no adapter, switched off, or no Bluetooth service.
    Unavailable {
        /// Why, in English (the UI shows the code's message).
        reason: String,
    },
}

/// A BLE key seen in a scan (it advertises [`SERVICE_UUID`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Advertisement {
    /// Its Bluetooth address (`AA:BB:CC:DD:EE:FF`), the key's identity before connecting.
    pub address: String,
    /// Its advertised name.
    pub name: Option<String>,
    /// Signal strength, dBm.
    pub rssi: Option<i16>,
    /// Bonded with this PC.
    pub paired: bool,
    /// Connected now (by anyone on this PC).
    pub connected: bool,
    /// A key the media registry knows but KeyBridge cannot drive (it advertises another
    /// service, e.g. a FIDO security key's): what it needs, to show instead of 连接.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<String>,
}

/// The services a scan looks for: KeyBridge's own, then those of the registry's `[[ble]]`
/// entries (keys seen but not driven, reported with what they need).
pub(crate) fn scan_services() -> Vec<Uuid> {
    std::iter::once(SERVICE_UUID).chain(registry().ble().iter().filter_map(|b| Uuid::parse_str(&b.service).ok())).collect()
}

/// The built-in media registry, parsed once (scans ask it for every device they see).
fn registry() -> &'static kb_registry::Registry {
    static REGISTRY: std::sync::OnceLock<kb_registry::Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| kb_registry::Registry::builtin_or_empty().0)
}

/// What a key advertising `services` needs: `None` for a key KeyBridge drives (it
/// advertises [`SERVICE_UUID`]) or one the registry does not know; else the registry's
/// vendor, model and `needs`.
pub(crate) fn needs_of(services: &[Uuid]) -> Option<Option<String>> {
    if services.contains(&SERVICE_UUID) {
        return Some(None);
    }
    let wanted: Vec<String> = services.iter().map(Uuid::to_string).collect();
    let entry = registry().match_ble(&wanted)?;
    let kb_registry::Served::Needs(n) = &entry.served else { return None };
    Some(Some(format!("{} · {}: {n}", entry.model, entry.vendor)))
}

/// Errors of the BLE layer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BleError {
    /// 蓝牙不可用.
    #[error("Bluetooth is unavailable: {0}")]
    Unavailable(String),
    /// No key with that address was seen.
    #[error("no BLE key {0} in range (scan first)")]
    UnknownKey(String),
    /// The device lacks the service or a characteristic, or announced a bad length.
    #[error("not a supported BLE key: {0}")]
    ServiceInvalid(String),
    /// A framing failure (from [`crate::frame`]).
    #[error(transparent)]
    Frame(#[from] crate::frame::FrameError),
    /// The link dropped.
    #[error("the BLE link dropped")]
    Lost,
    /// Nothing came within the bound.
    #[error("the BLE key did not answer in time")]
    Timeout,
    /// The Bluetooth stack failed otherwise (connect refused, D-Bus error).
    #[error("Bluetooth: {0}")]
    Failed(String),
}

impl HasErrorCode for BleError {
    fn code(&self) -> ErrorCode {
        match self {
            BleError::Unavailable(_) => ErrorCode::BluetoothUnavailable,
            BleError::UnknownKey(_) => ErrorCode::UnknownDevice,
            BleError::ServiceInvalid(_) => ErrorCode::BleServiceInvalid,
            BleError::Frame(f) => f.code(),
            BleError::Lost => ErrorCode::MediumOffline,
            BleError::Timeout => ErrorCode::OperationTimedOut,
            BleError::Failed(_) => ErrorCode::Io,
        }
    }
}

impl From<BleError> for kb_token::TokenError {
    fn from(e: BleError) -> Self {
        match e {
            BleError::Lost => kb_token::TokenError::Offline,
            BleError::Timeout => kb_token::TokenError::TimedOut,
            BleError::UnknownKey(a) => kb_token::TokenError::UnknownDevice(a),
            e => kb_token::TokenError::Link { code: e.code(), message: e.to_string() },
        }
    }
}

/// Result alias.
pub(crate) type Result<T> = std::result::Result<T, BleError>;

/// Called once when a link drops by itself (out of range, key off, adapter gone). It runs
/// on the Bluetooth stack's thread: it must only hand the news on, never block.
pub type OnLost = Box<dyn Fn() + Send + Sync>;

/// The adapter.
pub trait BleCentral: Send + Sync {
    /// Whether Bluetooth can be used now (checked afresh: an adapter may come and go).
    fn state(&self) -> BluetoothState;

    /// Scan for `window`, filtered by [`SERVICE_UUID`], then stop the scan.
    fn scan(&self, window: Duration) -> Result<Vec<Advertisement>>;

    /// Connect to the key at `address`, find the service, read the control-point length
    /// and subscribe to the status characteristic. `on_lost` is called if the link later
    /// drops by itself.
    fn connect(&self, address: &str, on_lost: OnLost) -> Result<Box<dyn BleLink>>;

    /// Disconnect the device at `address` at the Bluetooth level, whoever connected it
    /// (a CLI's `ble disconnect`, where this process holds no link). Not connected: `Ok`.
    fn disconnect_device(&self, address: &str) -> Result<()>;

    /// Stop any scan and close every link this central opened (at exit: btleplug does not
    /// do it when its runtime is dropped).
    fn shutdown(&self);
}

/// One connected key.
pub trait BleLink: Send {
    /// The key's control-point length (fragment size), read at connect.
    fn control_point_length(&self) -> usize;

    /// Write one fragment to the control point.
    fn write(&mut self, fragment: &[u8]) -> Result<()>;

    /// The next status notification, waiting at most `timeout`: [`BleError::Timeout`] if
    /// none came, [`BleError::Lost`] once the link dropped.
    fn recv(&mut self, timeout: Duration) -> Result<Zeroizing<Vec<u8>>>;

    /// Whether the link is up.
    fn is_up(&self) -> bool;

    /// Disconnect (on the user's request, or at exit). Idempotent.
    fn close(&mut self);
}
