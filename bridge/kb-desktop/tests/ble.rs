//! The 蓝牙设备 page over the device service, with the in-memory BLE central: a key
//! connected on request joins the media with its certificate, a dropped link makes it
//! offline while the other media keep working, and no Bluetooth is a state the app
//! starts with as usual — without waiting for the Bluetooth stack.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kb_ble::virtual_key::{VirtualCentral, VirtualKey};
use kb_ble::{BleCentral, BluetoothState};
use kb_desktop::ble::BleStatus;
use kb_desktop::model::*;
use kb_desktop::prompter::PromptSink;
use kb_desktop::{Desktop, DesktopOptions, EventSink};
use kb_filekey::KdfParams;
use kb_types::{ErrorCode, KeyUsage};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "C0:FF:EE:00:00:01";
const STRANGER: &str = "C0:FF:EE:00:00:02";

/// Prompts are not expected here; events are collected.
struct Sink {
    ble: Mutex<Sender<BleStatus>>,
    media: Mutex<Sender<MediaChanged>>,
}

impl PromptSink for Sink {
    fn open(&self, request: &PromptRequest) {
        panic!("unexpected prompt {request:?}");
    }
    fn close(&self, _id: u32) {}
    fn notify(&self, _message: &str) {}
}

impl EventSink for Sink {
    fn media_changed(&self, event: &MediaChanged) {
        let _ = self.media.lock().unwrap().send(event.clone());
    }
    fn expiry_notice(&self, _notice: &ExpiryNotice) {}
    fn log_export_progress(&self, _progress: &LogExportProgress) {}
    fn update_available(&self, _status: &UpdateStatus) {}
    fn operation_status(&self, _status: &OperationStatus) {}
    fn ble_status(&self, status: &BleStatus) {
        let _ = self.ble.lock().unwrap().send(status.clone());
    }
}

struct App {
    desktop: Arc<Desktop>,
    ble: Receiver<BleStatus>,
    media: Receiver<MediaChanged>,
    _home: tempfile::TempDir,
}

fn open(central: Arc<dyn BleCentral>) -> App {
    open_with(Some(central))
}

fn open_with(central: Option<Arc<dyn BleCentral>>) -> App {
    let home = tempfile::tempdir().unwrap();
    let (ble_tx, ble) = channel();
    let (media_tx, media) = channel();
    let sink = Arc::new(Sink { ble: Mutex::new(ble_tx), media: Mutex::new(media_tx) });
    let opts = DesktopOptions {
        home: Some(home.path().to_path_buf()),
        kdf: KdfParams::weak_for_tests(),
        file_logging: false,
        hardware: false,
        bridge: None,
        ble: central,
        autostart_dir: None,
        ..DesktopOptions::default()
    };
    let desktop = Desktop::open(opts, sink.clone(), sink).unwrap();
    App { desktop, ble, media, _home: home }
}

/// Wait (hang guard 30 s) until `f` holds.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An OpenPGP card as the PyPI emulator answered a session (tests/vectors/apdu), with a
/// certificate for its signature key in the certificate data object.
fn openpgp_card_with_certificate() -> impl FnMut(&[u8]) -> Vec<u8> + Send + 'static {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vectors/apdu/openpgp-emulator/session.json"))
            .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let spki = hex::decode(v["sign_public_key_spki"].as_str().unwrap()).unwrap();
    let key = kb_crypto::PublicKey::from_spki_der(&spki).unwrap();
    let ca = kb_pki::issue::TestCa::new(kb_types::Algorithm::EcdsaP256, "CN=BLE Test CA").unwrap();
    let cert = ca.leaf("CN=蓝牙Key 持有人", &key, KeyUsage::Sign).unwrap().der().to_vec();
    let mut table: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for x in v["exchanges"].as_array().unwrap() {
        let c = hex::decode(x["c"].as_str().unwrap()).unwrap();
        if !table.iter().any(|(k, _)| *k == c) {
            table.push((c, hex::decode(x["r"].as_str().unwrap()).unwrap()));
        }
    }
    move |apdu: &[u8]| {
        // GET DATA 7F21 (cardholder certificate).
        if apdu.starts_with(&[0x00, 0xCA, 0x7F, 0x21]) {
            return [cert.as_slice(), &[0x90, 0x00]].concat();
        }
        table.iter().find(|(c, _)| c == apdu).map_or(vec![0x6D, 0x00], |(_, r)| r.clone())
    }
}

fn ble_medium(d: &Desktop) -> Option<Medium> {
    d.list_media().unwrap().into_iter().find(|m| m.kind == MediumKind::Ble)
}

#[test]
fn a_key_connected_on_request_joins_the_media_and_goes_offline_with_its_link() {
    let central = Arc::new(VirtualCentral::new());
    let key = VirtualKey::new(KEY, "蓝牙Key A", 20, openpgp_card_with_certificate());
    central.add_key(key.clone());
    central.add_key(VirtualKey::new(STRANGER, "Stranger", 512, openpgp_card_with_certificate()));
    let app = open(central.clone());
    let d = &app.desktop;
    let before = d.list_media().unwrap();
    assert_eq!(before.len(), 1, "only the demo key: {before:?}");

    // Nothing is scanned or connected by itself.
    let s = d.ble_state();
    assert!(s.available && s.connected.is_empty() && s.not_connected.is_empty(), "{s:?}");
    assert_eq!(central.scans(), 0);

    // Refresh: busy, then the two keys under 未连接 with their signal.
    let s = d.ble_scan().unwrap();
    assert!(!s.scanning);
    assert_eq!(s.not_connected.iter().map(|k| k.address.as_str()).collect::<Vec<_>>().len(), 2);
    let a = s.not_connected.iter().find(|k| k.address == KEY).unwrap();
    assert_eq!((a.name.as_deref(), a.rssi, a.in_range, a.remembered), (Some("蓝牙Key A"), Some(-60), true, false));
    let busy = wait_for("a busy status", || app.ble.try_iter().find(|s| s.scanning));
    assert!(busy.available);

    // Connect: the key moves to 已连接 and joins the media with its certificate.
    let s = d.ble_connect(KEY).unwrap();
    assert_eq!(s.connected.len(), 1);
    assert_eq!(s.connected[0].address, KEY);
    assert!(s.connected[0].remembered);
    let id = s.connected[0].device.clone().unwrap();
    assert!(s.not_connected.iter().all(|k| k.address == STRANGER), "{s:?}");
    wait_for("media-changed added", || app.media.try_iter().find(|e| e.device == id && e.change == MediaChange::Added));
    let m = ble_medium(d).expect("the BLE key is listed");
    assert_eq!(m.id, id);
    assert!(m.online);
    assert_eq!(m.certificates.len(), 1, "{m:?}");
    assert_eq!(m.certificates[0].subject_cn, "蓝牙Key 持有人");
    assert_eq!(d.list_media().unwrap().len(), 2);
    wait_for("a status with the key connected", || app.ble.try_iter().find(|s| s.connected.len() == 1));

    // The link drops: offline on the home screen and on the page; the demo key works.
    key.drop_link();
    wait_for("media-changed offline", || app.media.try_iter().find(|e| e.device == id && e.change == MediaChange::Offline));
    let m = ble_medium(d).unwrap();
    assert!(!m.online, "listed as offline");
    let s = wait_for("the page without it connected", || app.ble.try_iter().find(|s| s.connected.is_empty()));
    assert!(s.not_connected.iter().any(|k| k.address == KEY && k.remembered));
    let demo = d.list_media().unwrap().into_iter().find(|m| m.demo).unwrap();
    assert!(demo.online);
    let cert = &demo.certificates[0];
    assert_eq!(d.cert_details(&cert.cert_ref).unwrap().summary.serial, cert.serial);

    // Connect again on request: online again, same medium.
    let s = d.ble_connect(KEY).unwrap();
    assert_eq!(s.connected[0].device.as_deref(), Some(id.as_str()));
    wait_for("media-changed online", || app.media.try_iter().find(|e| e.device == id && e.change == MediaChange::Online));
    assert!(ble_medium(d).unwrap().online);

    // Reconnect-in-range is the user's choice, remembered.
    let s = d.ble_set_auto_reconnect(KEY, true).unwrap();
    assert!(s.connected[0].auto_reconnect);

    // Disconnect: gone from the media, remembered under 未连接, no longer reconnected.
    let s = d.ble_disconnect(KEY).unwrap();
    assert!(s.connected.is_empty());
    let k = s.not_connected.iter().find(|k| k.address == KEY).unwrap();
    assert!(k.remembered && !k.auto_reconnect);
    wait_for("media-changed removed", || app.media.try_iter().find(|e| e.device == id && e.change == MediaChange::Removed));
    assert!(ble_medium(d).is_none());

    // Forget: gone from the lists' remembered keys; forgetting again is unknown_device.
    let s = d.ble_forget(KEY).unwrap();
    assert!(s.not_connected.iter().all(|k| !k.remembered));
    assert_eq!(d.ble_forget(KEY).unwrap_err().code, ErrorCode::UnknownDevice.number());
    assert!(s.connected.is_empty());

    // At exit the links close and scans stop.
    d.ble_connect(STRANGER).unwrap();
    d.shutdown();
    let seen = central.scan(Duration::from_millis(1)).unwrap();
    assert!(seen.iter().all(|a| !a.connected), "closed at exit: {seen:?}");
}

#[test]
fn no_bluetooth_is_a_state_and_the_app_starts_without_waiting_for_it() {
    let central = Arc::new(VirtualCentral::new());
    central.set_state(BluetoothState::Unavailable { reason: "no Bluetooth adapter".into() });
    // A stack that does not answer at all while the app starts.
    central.hold_state_checks(true);
    let (tx, rx) = channel();
    let c: Arc<dyn BleCentral> = central.clone();
    std::thread::spawn(move || tx.send(open(c)).ok());
    let app = rx.recv_timeout(Duration::from_secs(60)).expect("the app starts while the Bluetooth stack does not answer");
    let d = &app.desktop;
    // Started, and the media answer, while the Bluetooth stack is stuck.
    assert_eq!(d.list_media().unwrap().len(), 1);
    central.hold_state_checks(false);

    let s = d.ble_state();
    assert!(!s.available);
    assert_eq!(s.reason.as_deref(), Some("no Bluetooth adapter"));
    let e = d.ble_scan().unwrap_err();
    assert_eq!(e.code, ErrorCode::BluetoothUnavailable.number());
    assert_eq!(e.message, "蓝牙不可用");
    assert_eq!(d.ble_connect(KEY).unwrap_err().code, ErrorCode::BluetoothUnavailable.number());
    let s = wait_for("an unavailable status event", || app.ble.try_iter().find(|s| !s.available));
    assert!(s.connected.is_empty());

    // Bluetooth comes back: the page hears of it.
    central.set_state(BluetoothState::Available);
    wait_for("an available status event", || app.ble.try_iter().find(|s| s.available));
    assert!(d.ble_state().available);
}

#[test]
fn without_a_ble_transport_the_page_says_unavailable() {
    let app = open_with(None);
    let d = &app.desktop;
    assert!(!d.ble_state().available);
    assert_eq!(d.ble_scan().unwrap_err().code, ErrorCode::BluetoothUnavailable.number());
    d.shutdown();
}
