//! The BLE stack over the in-memory central: kb-apdu's `send` and kb-openpgp's card over
//! BleCard at 20- and 512-byte fragments, link loss, malformed frames, keep-alives,
//! silence, cancel, Bluetooth unavailable, and the transport's events.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_apdu::{ApduError, CardBackend, Command, send};
use kb_ble::virtual_key::{VirtualCentral, VirtualKey};
use kb_ble::{BleCard, BleTransport, BluetoothState, ExchangeLimits, SharedLink};
use kb_token::{TokenError, Transport, TransportEvent};
use kb_types::{ErrorCode, HasErrorCode};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A card answering GET DATA with 300 bytes in two parts (61xx + GET RESPONSE) and
/// recording the data of chained PUT DATA commands.
fn chunky_card(received: Arc<Mutex<Vec<u8>>>) -> impl FnMut(&[u8]) -> Vec<u8> + Send + 'static {
    let big: Vec<u8> = (0..300u32).map(|i| (i * 13) as u8).collect();
    move |apdu: &[u8]| match apdu[1] {
        0xCA => [&big[..256], &[0x61, 44][..]].concat(),
        0xC0 => [&big[256..], &[0x90, 0x00][..]].concat(),
        0xDA => {
            let lc = apdu[4] as usize;
            received.lock().unwrap().extend_from_slice(&apdu[5..5 + lc]);
            vec![0x90, 0x00]
        }
        0x2A => vec![0x01, 0x02, 0x90, 0x00],
        _ => vec![0x6D, 0x00],
    }
}

fn limits() -> ExchangeLimits {
    ExchangeLimits { silence: Duration::from_millis(500), total: Duration::from_secs(10) }
}

fn card_on(central: &VirtualCentral, address: &str) -> BleCard {
    use kb_ble::BleCentral;
    let link = central.connect(address, Box::new(|| {})).unwrap();
    let slot: SharedLink = Arc::new(Mutex::new(Some(link)));
    BleCard::new(slot, limits())
}

#[test]
fn the_apdu_stack_runs_unchanged_over_ble_at_20_and_512() {
    for size in [20u16, 512] {
        let central = VirtualCentral::new();
        let got = Arc::new(Mutex::new(Vec::new()));
        central.add_key(VirtualKey::new("AA:00:00:00:00:01", "key", size, chunky_card(Arc::clone(&got))));
        let mut card = card_on(&central, "aa:00:00:00:00:01");
        let mut tx = card.transaction().unwrap();
        let r = send(tx.as_mut(), &Command::get_data(0x006E)).unwrap();
        assert_eq!(r.into_data().unwrap().len(), 300, "size {size}");
        // 600 bytes of data: command chaining (3 APDUs), each fragmented.
        let data: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        send(tx.as_mut(), &Command::put_data(0x0101, &data)).unwrap().into_data().unwrap();
        assert_eq!(*got.lock().unwrap(), data);
    }
}

#[test]
fn link_loss_mid_apdu_is_outcome_unknown_then_offline() {
    let central = VirtualCentral::new();
    let key = VirtualKey::new("AA:00:00:00:00:02", "key", 20, chunky_card(Arc::default()));
    key.faults(|f| f.drop_link_on = Some(Box::new(|apdu| apdu[1] == 0x2A)));
    central.add_key(key);
    central.add_key(VirtualKey::new("AA:00:00:00:00:12", "other", 512, chunky_card(Arc::default())));
    let mut card = card_on(&central, "AA:00:00:00:00:02");
    let mut other = card_on(&central, "AA:00:00:00:00:12");
    let start = Instant::now();
    let e = {
        let mut tx = card.transaction().unwrap();
        send(tx.as_mut(), &Command::compute_digital_signature(&[0x55; 32])).unwrap_err()
    };
    assert_eq!(e, ApduError::OutcomeUnknown);
    assert_eq!(e.code(), ErrorCode::OutcomeUnknown);
    assert!(start.elapsed() < Duration::from_secs(30), "hang guard");
    // The link is down now: the next command never leaves.
    let e = card.transaction().err().unwrap();
    assert_eq!(e, ApduError::Offline);
    assert_eq!(TokenError::from(e).code(), ErrorCode::MediumOffline);
    // Another key is not affected.
    let mut tx = other.transaction().unwrap();
    assert_eq!(send(tx.as_mut(), &Command::get_data(0x006E)).unwrap().into_data().unwrap().len(), 300);
}

#[test]
fn malformed_frames_from_the_key_are_clean_errors_and_the_link_recovers() {
    let central = VirtualCentral::new();
    let key = VirtualKey::new("AA:00:00:00:00:03", "key", 20, chunky_card(Arc::default()));
    central.add_key(key.clone());
    let mut card = card_on(&central, "AA:00:00:00:00:03");
    let init: Vec<u8> = [&[0x83, 0x00, 30][..], &[0u8; 17]].concat();
    let cases: Vec<(Vec<Vec<u8>>, ErrorCode, &str)> = vec![
        (vec![init.clone(), vec![0x01, 1, 2]], ErrorCode::BleFrameInvalid, "wrong sequence number"),
        (vec![vec![0x83, 0x00, 0x02, 0x90, 0x00, 0xFF]], ErrorCode::BleFrameInvalid, "more data than"),
        (vec![vec![0x99, 0x00, 0x02, 0x90, 0x00]], ErrorCode::BleFrameInvalid, "unknown command 0x99"),
        (vec![vec![0x05, 1, 2, 3]], ErrorCode::BleFrameInvalid, "without an initial fragment"),
        (vec![vec![0x83; 21]], ErrorCode::BleFrameInvalid, "exceeds the control-point length"),
        (vec![vec![0xBF, 0x00, 0x01, 0x06]], ErrorCode::BleKeyError, "busy"),
        // A stray fragment after a complete answer is left for the next exchange, which
        // drops it.
        (vec![vec![0x83, 0x00, 0x02, 0x6A, 0x82], vec![0x00, 1]], ErrorCode::NotFound, "6A82"),
    ];
    for (raw, code, what) in cases {
        key.faults(|f| f.raw_answers.push_back(raw.clone()));
        let mut tx = card.transaction().unwrap();
        let e = match send(tx.as_mut(), &Command::get_data(0x0101)) {
            Err(e) => TokenError::from(e),
            Ok(r) => TokenError::from(r.into_data().unwrap_err()),
        };
        assert_eq!(e.code(), code, "{what}: {e}");
        assert!(e.to_string().contains(what), "{what}: {e}");
        // And the next exchange works.
        let r = send(tx.as_mut(), &Command::get_data(0x006E)).unwrap();
        assert_eq!(r.into_data().unwrap().len(), 300, "after {what}");
    }
}

#[test]
fn keep_alives_are_waited_through_silence_is_bounded_and_cancel_stops() {
    let central = VirtualCentral::new();
    let key = VirtualKey::new("AA:00:00:00:00:04", "key", 512, chunky_card(Arc::default()));
    central.add_key(key.clone());
    let mut card = card_on(&central, "AA:00:00:00:00:04");
    key.faults(|f| f.keepalives = 5);
    {
        let mut tx = card.transaction().unwrap();
        assert_eq!(send(tx.as_mut(), &Command::get_data(0x006E)).unwrap().into_data().unwrap().len(), 300);
    }
    key.faults(|f| {
        f.keepalives = 0;
        f.silent = true;
    });
    {
        let mut tx = card.transaction().unwrap();
        assert_eq!(send(tx.as_mut(), &Command::get_data(0x006E)).unwrap_err(), ApduError::OutcomeUnknown);
    }
    let flag = card.cancel_flag();
    flag.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut tx = card.transaction().unwrap();
    assert_eq!(send(tx.as_mut(), &Command::get_data(0x006E)).unwrap_err().code(), ErrorCode::Cancelled);
}

/// An OpenPGP card played from the transcript of a session with the PyPI emulator (the
/// answers to SELECT and GET DATA that opening a card needs).
fn openpgp_table() -> impl FnMut(&[u8]) -> Vec<u8> + Send + 'static {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vectors/apdu/openpgp-emulator/session.json"))
            .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut table: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for x in v["exchanges"].as_array().unwrap() {
        let c = hex::decode(x["c"].as_str().unwrap()).unwrap();
        if !table.iter().any(|(k, _)| *k == c) {
            table.push((c, hex::decode(x["r"].as_str().unwrap()).unwrap()));
        }
    }
    move |apdu: &[u8]| table.iter().find(|(c, _)| c == apdu).map_or(vec![0x6D, 0x00], |(_, r)| r.clone())
}

fn next(rx: &Receiver<TransportEvent>) -> TransportEvent {
    rx.recv_timeout(Duration::from_secs(30)).expect("an event")
}

#[test]
fn transport_connects_on_request_reports_offline_and_keeps_others_working() {
    let central = Arc::new(VirtualCentral::new());
    let a = VirtualKey::new("AA:00:00:00:00:0A", "Key A", 20, openpgp_table());
    central.add_key(a.clone());
    central.add_key(VirtualKey::new("AA:00:00:00:00:0B", "Key B", 512, openpgp_table()));
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("ble-keys.json");
    let t = BleTransport::with_limits(central.clone(), Some(store.clone()), limits());
    let rx = t.watch().unwrap();
    assert_eq!(next(&rx), TransportEvent::EnumerationComplete);
    assert_eq!(t.bluetooth_state(), BluetoothState::Available);

    // A scan lists both, connected to neither.
    let listed = t.scan(Duration::from_millis(10)).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|k| !k.online && !k.remembered && k.in_range && k.device_id.is_none()));
    assert_eq!(listed[0].advertisement.name.as_deref(), Some("Key A"));

    let ia = t.connect("AA:00:00:00:00:0A").unwrap();
    assert_eq!(next(&rx), TransportEvent::Added(ia.clone()));
    assert!(ia.id.0.starts_with("ble:openpgp-"), "{}", ia.id);
    let mut ta = t.open(&ia.id).unwrap();
    assert_eq!(ta.info().id, ia.id);
    assert!(std::fs::read_to_string(&store).unwrap().contains("AA:00:00:00:00:0A"), "remembered on disk");

    // The link drops: Offline, and the open token fails cleanly.
    a.drop_link();
    assert_eq!(next(&rx), TransportEvent::Offline(ia.id.clone()));
    assert_eq!(ta.pin_info(kb_types::PinKind::User).unwrap_err().code(), ErrorCode::MediumOffline);
    assert_eq!(t.open(&ia.id).err().unwrap(), TokenError::Offline);
    let listed = t.keys();
    assert!(listed.iter().any(|k| k.advertisement.address == "AA:00:00:00:00:0A" && k.remembered && !k.online));

    // A remembered key set to reconnect comes back Online, and the token opened before
    // works again (same slot, fresh link).
    // Out of range first: the monitor looks for it but cannot reconnect.
    a.set_in_range(false);
    t.set_auto_reconnect("AA:00:00:00:00:0A", true).unwrap();
    assert!(t.reconnect_remembered().is_empty(), "not in range");
    a.set_in_range(true);
    // The monitor thread (every RECONNECT_INTERVAL) brings it back.
    assert_eq!(next(&rx), TransportEvent::Online(ia.id.clone()));
    assert_eq!(ta.info().id, ia.id);
    t.open(&ia.id).unwrap();

    // Disconnect on request: Removed; forget drops it from the store.
    t.disconnect("aa:00:00:00:00:0a").unwrap();
    assert_eq!(next(&rx), TransportEvent::Removed(ia.id.clone()));
    // The user's disconnect holds: no reconnecting by itself.
    let k = t.keys().into_iter().find(|k| k.advertisement.address == "AA:00:00:00:00:0A").unwrap();
    assert!(k.remembered && !k.auto_reconnect && !k.online, "{k:?}");
    let scans = central.scans();
    std::thread::sleep(kb_ble::RECONNECT_INTERVAL + Duration::from_millis(500));
    assert_eq!(central.scans(), scans, "nothing wants reconnecting");
    t.forget("AA:00:00:00:00:0A").unwrap();
    assert!(!std::fs::read_to_string(&store).unwrap().contains("AA:00:00:00:00:0A"));
    assert_eq!(t.forget("AA:00:00:00:00:0A").unwrap_err().code(), ErrorCode::UnknownDevice);
}

#[test]
fn a_key_without_the_card_application_or_with_a_bad_length_is_refused() {
    let central = Arc::new(VirtualCentral::new());
    central.add_key(VirtualKey::new("AA:00:00:00:00:0C", "not a card", 20, |_: &[u8]| vec![0x6A, 0x82]));
    let bad = VirtualKey::new("AA:00:00:00:00:0D", "bad length", 20, |_: &[u8]| vec![0x90, 0x00]);
    bad.set_control_point_length_raw(&[0x00, 0x05]);
    central.add_key(bad);
    let t = BleTransport::new(central);
    assert_eq!(t.connect("AA:00:00:00:00:0C").unwrap_err().code(), ErrorCode::NotSupported);
    assert_eq!(t.connect("AA:00:00:00:00:0D").unwrap_err().code(), ErrorCode::BleServiceInvalid);
    assert_eq!(t.connect("AA:00:00:00:00:0E").unwrap_err().code(), ErrorCode::UnknownDevice);
}

/// Wait (hang guard 30 s) until `f` holds.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bluetooth_unavailable_is_one_state_not_an_error_storm() {
    let central = Arc::new(VirtualCentral::new());
    central.set_state(BluetoothState::Unavailable { reason: "no adapter".into() });
    let t = BleTransport::new(central.clone());
    let changes = t.changes();
    let rx = t.watch().unwrap();
    // Enumeration does not wait for the Bluetooth stack; the state follows once.
    assert_eq!(next(&rx), TransportEvent::EnumerationComplete);
    match next(&rx) {
        TransportEvent::Error(m) => assert!(m.starts_with("bluetooth_unavailable: 蓝牙不可用"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.scan(Duration::from_millis(10)).unwrap_err().code(), ErrorCode::BluetoothUnavailable);
    assert_eq!(t.connect("AA:00:00:00:00:01").unwrap_err().code(), ErrorCode::BluetoothUnavailable);
    // Two more looks at the same state: nothing reported again.
    let checks = central.state_checks();
    wait_for("two more state checks", || central.state_checks() >= checks + 2);
    assert!(rx.try_recv().is_err(), "the same state is not reported again");
    // A second watcher (another front end's view) hears the state once, at once.
    let rx2 = t.watch().unwrap();
    assert_eq!(next(&rx2), TransportEvent::EnumerationComplete);
    assert!(matches!(next(&rx2), TransportEvent::Error(_)));
    assert!(rx.try_recv().is_err(), "not repeated to the first");
    // It comes back: no error, but the change listeners hear of it.
    while changes.try_recv().is_ok() {}
    central.set_state(BluetoothState::Available);
    changes.recv_timeout(Duration::from_secs(30)).expect("a change when Bluetooth comes back");
    assert!(rx.try_recv().is_err(), "available is not an error");
    // And goes away again: reported once more.
    central.set_state(BluetoothState::Unavailable { reason: "switched off".into() });
    match next(&rx) {
        TransportEvent::Error(m) => assert!(m.contains("switched off"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A Bluetooth stack that does not answer never holds up whoever starts watching (the
/// device service at start-up): `watch` asks it nothing.
#[test]
fn watching_never_waits_for_the_bluetooth_stack() {
    let central = Arc::new(VirtualCentral::new());
    central.hold_state_checks(true);
    let t = BleTransport::new(central.clone());
    let rx = t.watch().unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(TransportEvent::EnumerationComplete));
    // The monitor's look is stuck meanwhile; releasing it lets it finish.
    wait_for("the monitor's first look", || central.state_checks() >= 1);
    central.hold_state_checks(false);
    assert_eq!(t.keys(), vec![]);
}

/// A cancelled operation reaches the key: the exchange waiting for a silent key stops at
/// once (a CANCEL frame goes out), well before the silence bound.
#[test]
fn cancelling_the_operation_context_stops_a_waiting_exchange() {
    use kb_token::{OpContext, Token, UserAuth};
    let central = Arc::new(VirtualCentral::new());
    let key = VirtualKey::new("AA:00:00:00:00:0F", "Key F", 20, openpgp_table());
    central.add_key(key.clone());
    let patient = ExchangeLimits { silence: Duration::from_secs(600), total: Duration::from_secs(600) };
    let t = BleTransport::with_limits(central, None, patient);
    let info = t.connect("AA:00:00:00:00:0F").unwrap();
    let mut tok = t.open_card(&info.id).unwrap();
    // Already cancelled: nothing is sent.
    let ctx = OpContext::new();
    ctx.cancel();
    assert_eq!(tok.open_session(UserAuth::Pin(&kb_types::Pin::new("123456")), &ctx).err().unwrap(), TokenError::Cancelled);
    // Cancelled while the key is silent.
    key.faults(|f| f.silent = true);
    let ctx = OpContext::new();
    let canceller = ctx.clone();
    let started = Instant::now();
    let th = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        canceller.cancel();
    });
    let e = tok.open_session(UserAuth::Pin(&kb_types::Pin::new("123456")), &ctx).err().unwrap();
    th.join().unwrap();
    assert_eq!(e, TokenError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(60), "hang guard");
    // The cancel ends with its operation: the token works for the next one.
    key.faults(|f| f.silent = false);
    assert_eq!(tok.info().id, info.id);
    assert_eq!(tok.containers().unwrap()[0].name, "openpgp");
}

#[test]
fn a_key_the_registry_knows_but_keybridge_cannot_drive_is_listed_with_what_it_needs() {
    // A FIDO security key (the registry's [[ble]] entry for the FIDO service 0xFFFD), one
    // of ours, and a device with a service nobody knows.
    let central = Arc::new(VirtualCentral::new());
    let fido = uuid::Uuid::from_u128(0x0000_fffd_0000_1000_8000_0080_5f9b_34fb);
    central.add_key(VirtualKey::advertising("AA:00:00:00:0F:1D", "Security Key", fido));
    central.add_key(VirtualKey::advertising(
        "AA:00:00:00:00:99",
        "Heart rate",
        uuid::Uuid::from_u128(0x180d_0000_1000_8000_0080_5f9b_34fb),
    ));
    central.add_key(VirtualKey::new("AA:00:00:00:00:0A", "Key A", 20, openpgp_table()));
    let t = BleTransport::new(central);
    let listed = t.scan(Duration::from_millis(10)).unwrap();
    assert_eq!(listed.len(), 2, "ours and the known FIDO key, not a heart-rate sensor: {listed:?}");
    let key = listed.iter().find(|k| k.advertisement.address == "AA:00:00:00:0F:1D").unwrap();
    let needs = key.advertisement.needs.as_deref().unwrap();
    assert!(needs.contains("FIDO") && needs.contains("WebAuthn"), "{needs}");
    let ours = listed.iter().find(|k| k.advertisement.address == "AA:00:00:00:00:0A").unwrap();
    assert_eq!(ours.advertisement.needs, None);
    // The JSON the CLI and the page see names it too.
    assert!(serde_json::to_string(key).unwrap().contains("\"needs\":"));
    // Connecting is refused with what it needs, and no link is opened.
    let e = t.connect("AA:00:00:00:0F:1D").unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotSupported);
    assert!(e.to_string().contains("WebAuthn"), "{e}");
    assert!(t.scan(Duration::from_millis(10)).unwrap().iter().all(|k| !k.advertisement.connected));
    t.connect("AA:00:00:00:00:0A").unwrap();
}
