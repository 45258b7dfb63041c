//! Which transports a KeyBridge front end (CLI, desktop, bridge) watches.
//!
//! One place decides what media exist: every front end calls [`standard_transports`]
//! and adds what it returns to its [`crate::devices::DeviceManager`], so a new driver
//! (PC/SC, PKCS#11, SKF, HID, BLE, phone) is listed everywhere by changing this file
//! alone — no front-end code changes above the driver layer.

use crate::settings::Settings;
use kb_filekey::FileTransport;
use kb_hid::HidTransport;
use kb_pcsc::PcscTransport;
use kb_pkcs11::Pkcs11Transport;
use kb_skf::SkfTransport;
use kb_token::Transport;
use std::path::Path;
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
}
