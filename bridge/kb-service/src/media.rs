//! Which transports a KeyBridge front end (CLI, desktop, bridge) watches.
//!
//! One place decides what media exist: every front end calls [`standard_transports`]
//! and adds what it returns to its [`crate::devices::DeviceManager`], so a new driver
//! (PC/SC, PKCS#11, SKF, HID, BLE, phone) is listed everywhere by changing this file
//! alone — no front-end code changes above the driver layer.

use crate::settings::{Paths, Settings};
use kb_ble::BleTransport;
use kb_filekey::FileTransport;
use kb_hid::HidTransport;
use kb_pcsc::PcscTransport;
use kb_pkcs11::Pkcs11Transport;
use kb_skf::SkfTransport;
use kb_token::Transport;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The transports for these settings: the file-key directory `key_dir` (the settings'
/// `file_key_dir`, or a front end's override) and every hardware transport the
/// settings enable — one PKCS#11 transport per `pkcs11_modules` entry and one SKF
/// transport per `skf_modules` entry. A module that
/// cannot be loaded is reported by its transport as a `module_load_failed` transport
/// error; it never keeps the other media from being listed.
pub fn standard_transports(settings: &Settings, key_dir: &Path) -> Vec<Arc<dyn Transport>> {
    let mut transports: Vec<Arc<dyn Transport>> = vec![Arc::new(FileTransport::new(key_dir))];
    // Smart cards and USB keys through PC/SC: always on. Without a PC/SC service it
    // completes enumeration at once and keeps retrying in the background.
    transports.push(Arc::new(PcscTransport::new()));
    // USB keys on HID listed in the media registry: always on. Lists devices twice a
    // second without opening them; without HID access it finds nothing and never fails.
    transports.push(Arc::new(HidTransport::new()));
    for module in &settings.pkcs11_modules {
        transports.push(Arc::new(Pkcs11Transport::new(module)));
    }
    // One SKF (GM/T 0016) transport per `skf_modules` entry, reported like PKCS#11's.
    for module in &settings.skf_modules {
        transports.push(Arc::new(SkfTransport::new(module)));
    }
    transports
}

/// Where the BLE keys the user connected are remembered (`<data dir>/ble-keys.json`): one
/// file for the CLI, the desktop app and `keybridge serve`.
pub fn ble_store(paths: &Paths) -> PathBuf {
    paths.data_dir.join("ble-keys.json")
}

/// BLE keys (蓝牙Key) through the system's Bluetooth stack (BlueZ on Linux), remembered in
/// [`ble_store`]; `None` where KeyBridge has no Bluetooth central (other systems).
///
/// Not in [`standard_transports`]: a BLE key is connected on the user's request and its
/// link lives as long as the process that holds it, so only the long-running front ends
/// (the desktop app, `keybridge serve`) host it, and they need the transport itself to
/// scan, connect and disconnect. Hosting it costs nothing without Bluetooth: no thread of
/// btleplug's, no bus connection kept, and adding it to a
/// [`crate::devices::DeviceManager`] never waits for the Bluetooth stack (蓝牙不可用
/// arrives once, as a transport error, shortly after). Call [`BleTransport::close`] at
/// exit: scans stop and links close (btleplug does not do it when dropped).
pub fn ble_transport(paths: &Paths) -> Option<Arc<BleTransport>> {
    #[cfg(target_os = "linux")]
    {
        let central = kb_ble::btle::BtleCentral::new().ok()?;
        Some(Arc::new(BleTransport::with_store(Arc::new(central), ble_store(paths))))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = paths;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_types::TransportKind;

    #[test]
    fn every_front_end_gets_the_hardware_transports() {
        let kinds: Vec<TransportKind> =
            standard_transports(&Settings::default(), Path::new("/nonexistent")).iter().map(|t| t.kind()).collect();
        assert_eq!(kinds, [TransportKind::File, TransportKind::Pcsc, TransportKind::Hid]);
    }

    /// Whatever this machine's Bluetooth (here: no radio), hosting BLE keys never holds up
    /// a front end: enumeration completes at once, and the keys are remembered under the
    /// data directory, as the CLI keeps them.
    #[cfg(target_os = "linux")]
    #[test]
    fn ble_keys_are_hosted_without_waiting_for_bluetooth() {
        use kb_token::TransportEvent;
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under(dir.path());
        assert_eq!(ble_store(&paths), paths.data_dir.join("ble-keys.json"));
        let t = ble_transport(&paths).expect("BLE keys on Linux");
        assert_eq!(t.kind(), TransportKind::Ble);
        let rx = t.watch().unwrap();
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(30)), Ok(TransportEvent::EnumerationComplete));
        assert!(t.keys().is_empty());
        t.close();
    }
}
