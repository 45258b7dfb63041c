//! Which transports a KeyBridge front end (CLI, desktop, bridge) watches.
//!
//! One place decides what media exist: every front end calls [`standard_transports`]
//! and adds what it returns to its [`crate::devices::DeviceManager`], so a new driver
//! (PC/SC, PKCS#11, SKF, HID, BLE, phone) is listed everywhere by changing this file
//! alone — no front-end code changes above the driver layer.

use crate::settings::Settings;
use kb_pcsc::PcscTransport;
use kb_pkcs11::Pkcs11Transport;
use kb_token::Transport;
use kb_token::file::FileTransport;
use std::path::Path;
use std::sync::Arc;

/// The transports for these settings: the file-key directory `key_dir` (the settings'
/// `file_key_dir`, or a front end's override) and every hardware transport the
/// settings enable — one PKCS#11 transport per `pkcs11_modules` entry. A module that
/// cannot be loaded is reported by its transport as a `module_load_failed` transport
/// error; it never keeps the other media from being listed.
pub fn standard_transports(settings: &Settings, key_dir: &Path) -> Vec<Arc<dyn Transport>> {
    let mut transports: Vec<Arc<dyn Transport>> = vec![Arc::new(FileTransport::new(key_dir))];
    // Smart cards and USB keys through PC/SC: always on. Without a PC/SC service it
    // completes enumeration at once and keeps retrying in the background.
    transports.push(Arc::new(PcscTransport::new()));
    for module in &settings.pkcs11_modules {
        transports.push(Arc::new(Pkcs11Transport::new(module)));
    }
    transports
}
