//! The 蓝牙设备 page: BLE keys (蓝牙Key) hosted by the device service.
//!
//! The app adds one [`BleTransport`] to its device service (`kb_service::media::
//! ble_transport`, remembered keys in `<data dir>/ble-keys.json` as the CLI keeps them),
//! so a connected key and its certificates are listed on the home screen like any medium
//! and go offline / online with the link. This page lists the keys in two lists — 未连接
//! and 已连接 — and scans, connects, disconnects and forgets them on the user's request
//! only: KeyBridge never connects to a stranger by itself, and reconnects a remembered key
//! coming in range only when the user asked for that ([`Desktop::ble_set_auto_reconnect`]).
//!
//! Without Bluetooth (no adapter, switched off, no bluetoothd, no system bus, or a system
//! KeyBridge has no central for) the page shows 蓝牙不可用: a state, not an error; the app
//! starts as fast as without BLE. Every change reaches the window as one `ble-status`
//! event with the whole page.

use crate::model::AppError;
use crate::{Desktop, DesktopOptions, EventSink};
use kb_ble::{BleKeyListing, BleTransport, BluetoothState, SCAN_WINDOW};
use kb_service::devices::DeviceManager;
use kb_service::settings::Paths;
use kb_types::{ErrorCode, HasErrorCode, Lang};
use serde::{Deserialize, Serialize};
use specta::Type;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

/// A BLE key as the page lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct BleKeyView {
    /// Bluetooth address (`AA:BB:CC:DD:EE:FF`): what the buttons name.
    pub address: String,
    /// Its advertised (or remembered) name.
    pub name: Option<String>,
    /// Signal strength in dBm, from the last scan (`None`: not seen by it).
    pub rssi: Option<i16>,
    /// Bonded with this computer at the Bluetooth level.
    pub paired: bool,
    /// Connected before and not forgotten.
    pub remembered: bool,
    /// Reconnected by KeyBridge when it comes in range (the user asked for it).
    pub auto_reconnect: bool,
    /// Seen by the last scan.
    pub in_range: bool,
    /// Its medium id once KeyBridge connected to it (the home screen lists it under it).
    pub device: Option<String>,
    /// A key the media registry knows but KeyBridge cannot drive (a FIDO security key):
    /// what it needs, shown instead of 连接.
    pub needs: Option<String>,
}

/// Event `ble-status`, and what every BLE command answers: the whole 蓝牙设备 page.
#[cfg_attr(feature = "tauri-events", derive(tauri_specta::Event))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct BleStatus {
    /// Bluetooth can be used; `false` is 蓝牙不可用 (the page says what to do).
    pub available: bool,
    /// Why not, in English from the system (shown as a detail), when not available.
    pub reason: Option<String>,
    /// A scan is running (refresh is busy).
    pub scanning: bool,
    /// 未连接: keys seen by the last scan, or remembered, that are not connected now
    /// (in range first, strongest signal first).
    pub not_connected: Vec<BleKeyView>,
    /// 已连接: keys connected through KeyBridge, their link up.
    pub connected: Vec<BleKeyView>,
}

/// The BLE transport the app hosts, and who hears of its changes.
pub(crate) struct BleHost {
    transport: Arc<BleTransport>,
    scanning: Arc<AtomicBool>,
    events: Arc<dyn EventSink>,
}

impl BleHost {
    /// The transport `opts` ask for — a test's central, else the system's Bluetooth when
    /// the hardware transports are on — added to `manager`; `None` when there is none.
    pub(crate) fn start(
        opts: &DesktopOptions,
        paths: &Paths,
        manager: &DeviceManager,
        events: &Arc<dyn EventSink>,
    ) -> Result<Option<BleHost>, kb_service::ServiceError> {
        let transport = match &opts.ble {
            Some(central) => Some(Arc::new(BleTransport::with_store(Arc::clone(central), kb_service::media::ble_store(paths)))),
            None if opts.hardware => kb_service::media::ble_transport(paths),
            None => None,
        };
        let Some(transport) = transport else { return Ok(None) };
        manager.add_transport(transport.clone())?;
        let host = BleHost { transport, scanning: Arc::default(), events: Arc::clone(events) };
        host.forward_changes();
        Ok(Some(host))
    }

    /// Changes of the transport → `ble-status` events, one per burst, off every caller's
    /// thread (the status asks the Bluetooth stack for its state).
    fn forward_changes(&self) {
        let changes = self.transport.changes();
        let transport = Arc::downgrade(&self.transport);
        let (scanning, events) = (Arc::clone(&self.scanning), Arc::clone(&self.events));
        let _ = std::thread::Builder::new().name("kb-desktop-ble".into()).spawn(move || {
            while changes.recv().is_ok() {
                while changes.try_recv().is_ok() {}
                let Some(t) = Weak::upgrade(&transport) else { break };
                events.ble_status(&status(&t, scanning.load(Ordering::SeqCst)));
            }
        });
    }

    fn status(&self) -> BleStatus {
        status(&self.transport, self.scanning.load(Ordering::SeqCst))
    }
}

impl Drop for BleHost {
    fn drop(&mut self) {
        self.transport.close();
    }
}

fn view(k: BleKeyListing) -> BleKeyView {
    BleKeyView {
        address: k.advertisement.address,
        name: k.advertisement.name,
        rssi: if k.in_range { k.advertisement.rssi } else { None },
        paired: k.advertisement.paired,
        remembered: k.remembered,
        auto_reconnect: k.auto_reconnect,
        in_range: k.in_range,
        device: k.device_id,
        needs: k.advertisement.needs,
    }
}

/// The page as the transport has it now.
fn status(t: &BleTransport, scanning: bool) -> BleStatus {
    let (available, reason) = match t.bluetooth_state() {
        BluetoothState::Available => (true, None),
        BluetoothState::Unavailable { reason } => (false, Some(reason)),
    };
    let (connected, mut not_connected): (Vec<BleKeyListing>, Vec<BleKeyListing>) = t.keys().into_iter().partition(|k| k.online);
    not_connected.sort_by_key(|k| (!k.in_range, std::cmp::Reverse(k.advertisement.rssi.unwrap_or(i16::MIN))));
    BleStatus {
        available,
        reason,
        scanning,
        not_connected: not_connected.into_iter().map(view).collect(),
        connected: connected.into_iter().map(view).collect(),
    }
}

/// The page when the app hosts no BLE transport (a system without a central for it).
fn unsupported() -> BleStatus {
    BleStatus {
        available: false,
        reason: Some("BLE keys are not supported on this system".into()),
        scanning: false,
        not_connected: Vec::new(),
        connected: Vec::new(),
    }
}

/// A transport's error for the window, by its stable code.
fn app_error<E: HasErrorCode + std::fmt::Display>(lang: Lang) -> impl Fn(E) -> AppError {
    move |e| AppError::new(e.code(), lang, e.to_string())
}

impl Desktop {
    fn ble_host(&self) -> Result<&BleHost, AppError> {
        self.ble
            .as_ref()
            .ok_or_else(|| AppError::new(ErrorCode::BluetoothUnavailable, self.lang(), unsupported().reason.unwrap_or_default()))
    }

    /// Do `f` on the transport (the user asked), then answer with the page and tell the
    /// window.
    fn ble_do(&self, f: impl FnOnce(&BleTransport) -> Result<(), AppError>) -> Result<BleStatus, AppError> {
        let host = self.ble_host()?;
        f(&host.transport)?;
        Ok(host.status())
    }

    /// The 蓝牙设备 page: Bluetooth's state and the two lists (no scan).
    pub fn ble_state(&self) -> BleStatus {
        self.ble.as_ref().map_or_else(unsupported, BleHost::status)
    }

    /// Refresh: scan for [`SCAN_WINDOW`] (the page shows it busy meanwhile: a
    /// `ble-status` event with `scanning` at the start and the lists at the end).
    pub fn ble_scan(&self) -> Result<BleStatus, AppError> {
        let host = self.ble_host()?;
        if host.scanning.swap(true, Ordering::SeqCst) {
            // Another window's refresh is running: its end brings the lists.
            return Ok(host.status());
        }
        self.events.ble_status(&host.status());
        let scanned = host.transport.scan(SCAN_WINDOW);
        host.scanning.store(false, Ordering::SeqCst);
        let status = host.status();
        self.events.ble_status(&status);
        scanned.map_err(app_error(self.lang()))?;
        Ok(status)
    }

    /// Connect to a key the user picked: its card application is opened, it joins the
    /// media (home screen) and is remembered.
    pub fn ble_connect(&self, address: &str) -> Result<BleStatus, AppError> {
        self.ble_do(|t| t.connect(address).map(drop).map_err(app_error(self.lang())))
    }

    /// Disconnect a key: its link closes, it leaves the media; it stays remembered and is
    /// no longer reconnected by itself.
    pub fn ble_disconnect(&self, address: &str) -> Result<BleStatus, AppError> {
        self.ble_do(|t| t.disconnect(address).map_err(app_error(self.lang())))
    }

    /// Forget a remembered key (disconnecting it first if connected).
    pub fn ble_forget(&self, address: &str) -> Result<BleStatus, AppError> {
        self.ble_do(|t| t.forget(address).map_err(app_error(self.lang())))
    }

    /// Reconnect a remembered key whenever it comes in range (or stop doing so).
    pub fn ble_set_auto_reconnect(&self, address: &str, on: bool) -> Result<BleStatus, AppError> {
        self.ble_do(|t| t.set_auto_reconnect(address, on).map_err(app_error(self.lang())))
    }

    /// At exit: stop scans and close every BLE link (btleplug does not do it itself).
    pub fn shutdown(&self) {
        if let Some(host) = &self.ble {
            host.transport.close();
        }
    }
}
