//! Which transports a KeyBridge front end (CLI, desktop, bridge) watches.
//!
//! One place decides what media exist: every front end calls [`standard_transports`]
//! and adds what it returns to its [`crate::devices::DeviceManager`], so a new driver
//! (PC/SC, PKCS#11, SKF, HID, BLE, phone) is listed everywhere by changing this file
//! alone — no front-end code changes above the driver layer.

use crate::settings::Settings;
use kb_token::Transport;
use kb_token::file::FileTransport;
use std::path::Path;
use std::sync::Arc;

/// The transports for these settings: the file-key directory `key_dir` (the settings'
/// `file_key_dir`, or a front end's override) and every hardware transport the
/// settings enable.
pub fn standard_transports(_settings: &Settings, key_dir: &Path) -> Vec<Arc<dyn Transport>> {
    vec![Arc::new(FileTransport::new(key_dir))]
}
