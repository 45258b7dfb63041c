//! The BLE commands through Tauri's IPC (the mock runtime's real invoke path) with the
//! in-memory BLE central: arguments by their names, the page in every answer, errors by
//! their stable code, and `ble-status` events reaching the window.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod ipc;

use kb_ble::virtual_key::{VirtualCentral, VirtualKey};
use kb_desktop::DesktopOptions;
use kb_desktop::ble::BleStatus;
use kb_desktop::model::*;
use kb_filekey::KdfParams;
use keybridge_desktop::{PaintReport, install, with_commands};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tauri::test::{MockRuntime, mock_builder, mock_context, noop_assets};
use tauri::{WebviewWindow, WebviewWindowBuilder};
use tauri_specta::Event;

fn call(win: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, AppError> {
    ipc::invoke(win, cmd, args).map_err(|v| serde_json::from_value(v).unwrap())
}

fn status(win: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> BleStatus {
    serde_json::from_value(call(win, cmd, args).unwrap_or_else(|e| panic!("{cmd}: {e}"))).unwrap()
}

#[test]
fn ble_commands_and_events_through_ipc() {
    let home = tempfile::tempdir().unwrap();
    let central = Arc::new(VirtualCentral::new());
    // A key that is not an OpenPGP card: connecting is refused with its code.
    central.add_key(VirtualKey::new("C0:FF:EE:00:00:09", "Not a card", 20, |_: &[u8]| vec![0x6A, 0x82]));
    let opts = DesktopOptions {
        home: Some(home.path().to_path_buf()),
        kdf: KdfParams::weak_for_tests(),
        file_logging: false,
        hardware: false,
        bridge: None,
        ble: Some(central.clone()),
        autostart_dir: None,
        ..DesktopOptions::default()
    };
    let (builder, specta) = with_commands(mock_builder());
    let app = builder.build(mock_context(noop_assets())).unwrap();
    install(&app, &specta, opts, PaintReport::Off).unwrap();
    let win = WebviewWindowBuilder::new(&app, "main", Default::default()).build().unwrap();
    let events = Arc::new(Mutex::new(Vec::<BleStatus>::new()));
    let e = events.clone();
    BleStatus::listen(&app, move |ev| e.lock().unwrap().push(ev.payload));

    let s = status(&win, "ble_state", json!({}));
    assert!(s.available && s.not_connected.is_empty());
    let s = status(&win, "ble_scan", json!({}));
    assert_eq!(s.not_connected.len(), 1);
    assert_eq!(s.not_connected[0].rssi, Some(-60));
    let e = call(&win, "ble_connect", json!({"address": "C0:FF:EE:00:00:09"})).unwrap_err();
    assert_eq!(e.name, "not_supported", "{e:?}");
    let e = call(&win, "ble_disconnect", json!({"address": "C0:FF:EE:00:00:09"})).unwrap_err();
    assert_eq!(e.name, "unknown_device");
    let e = call(&win, "ble_set_auto_reconnect", json!({"address": "C0:FF:EE:00:00:09", "on": true})).unwrap_err();
    assert_eq!(e.name, "unknown_device");
    let e = call(&win, "ble_forget", json!({"address": "C0:FF:EE:00:00:09"})).unwrap_err();
    assert_eq!(e.name, "unknown_device");

    // The scan reached the window as events: busy, then the list.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = events.lock().unwrap().clone();
        if seen.iter().any(|s| s.scanning) && seen.iter().any(|s| !s.scanning && s.not_connected.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "ble-status events: {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
