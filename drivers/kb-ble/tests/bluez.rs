//! BLE keys through btleplug's real BlueZ D-Bus code path, on the rig of `rig/mod.rs`
//! (python-dbusmock's bluez5 + GATT objects + the PyPI OpenPGP card emulator). Each test
//! starts its own rig and runs its body in a child process on the rig's bus.
//!
//! The rig has no radio: it models BlueZ's API, GATT writes and notifications, link
//! drops and fragment sizes, but no radio latency, connection intervals or packet loss.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod rig;

use kb_ble::btle::BtleCentral;
use kb_ble::{BleCentral, BleToken, BleTransport, BluetoothState, ExchangeLimits};
use kb_crypto::{HashAlgorithm, PrivateKey, SignatureScheme};
use kb_openpgp::CONTAINER;
use kb_pki::LocalSigner;
use kb_pki::issue::{self, CertificateParams};
use kb_pki::time::UnixTime;
use kb_token::{Token, TokenError, Transport, TransportEvent};
use kb_types::{Algorithm, DeviceInfo, ErrorCode, HasErrorCode, KeyUsage, Pin};
use rig::{ADMIN_PIN, Rig, USER_PIN, ctl};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const KEY20: &str = "C0:FF:EE:00:00:20";
const KEY512: &str = "C0:FF:EE:00:05:12";

fn limits() -> ExchangeLimits {
    ExchangeLimits { silence: Duration::from_secs(15), total: Duration::from_secs(60) }
}

fn transport() -> (Arc<BtleCentral>, BleTransport, Receiver<TransportEvent>) {
    let central = Arc::new(BtleCentral::new().unwrap());
    let t = BleTransport::with_limits(central.clone(), None, limits());
    let rx = t.watch().unwrap();
    (central, t, rx)
}

/// In the test process: start a rig (with the mock BlueZ if `bluez`, and these keys:
/// address, name, fragment size, card serial) and run test `name`'s body in a child on
/// its bus; false. In the child: true (run the body).
fn in_child(name: &str, bluez: bool, keys: &[(&str, &str, u16, &str)]) -> bool {
    if rig::is_child() {
        return true;
    }
    if let Some(mut rig) = Rig::start(bluez) {
        for (address, label, fragment, serial) in keys {
            rig.add_key(address, label, *fragment, serial);
        }
        rig.run_child(name);
    }
    false
}

fn next(rx: &Receiver<TransportEvent>) -> TransportEvent {
    rx.recv_timeout(Duration::from_secs(30)).expect("an event")
}

fn connect(t: &BleTransport, rx: &Receiver<TransportEvent>, address: &str) -> DeviceInfo {
    let info = t.connect(address).unwrap();
    assert_eq!(next(rx), TransportEvent::Added(info.clone()));
    info
}

/// A P-256 signature key (the emulator answers 6F00 until its key generator is ready)
/// and a certificate for it from a local CA.
fn personalize(tok: &mut BleToken) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let pk = loop {
        let mut s = tok.card_mut().login_admin(&Pin::new(USER_PIN), &Pin::new(ADMIN_PIN)).unwrap();
        match s.generate_key_pair(CONTAINER, KeyUsage::Sign, Algorithm::EcdsaP256) {
            Ok(pk) => break pk,
            Err(TokenError::Card { sw: 0x6F00, .. }) if Instant::now() < deadline => {
                drop(s);
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("key generation: {e}"),
        }
    };
    let ca = LocalSigner::new(PrivateKey::generate(Algorithm::EcdsaP256).unwrap());
    let now = UnixTime::now();
    let root =
        issue::self_signed(&CertificateParams::new("CN=BLE Test CA", issue::CertKind::Root { path_len: None }, now, 30), &ca)
            .unwrap();
    let leaf =
        issue::issue(&CertificateParams::leaf("CN=BLE key holder", KeyUsage::Sign, now, 30), &pk, Some(&root), &ca).unwrap();
    let mut s = tok.card_mut().login_admin(&Pin::new(USER_PIN), &Pin::new(ADMIN_PIN)).unwrap();
    s.import_certificate(CONTAINER, KeyUsage::Sign, leaf.der()).unwrap();
    leaf.der().to_vec()
}

/// Check a signature with the OpenSSL CLI (an independent verifier).
fn openssl_verify(spki_der: &[u8], msg: &[u8], sig: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let (k, m, s) = (dir.path().join("pub.der"), dir.path().join("msg"), dir.path().join("sig"));
    std::fs::write(&k, spki_der).unwrap();
    std::fs::write(&m, msg).unwrap();
    std::fs::write(&s, sig).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-keyform", "DER", "-verify"])
        .arg(&k)
        .arg("-signature")
        .arg(&s)
        .arg(&m)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");
}

fn sign(tok: &mut dyn Token, msg: &[u8]) -> Result<Vec<u8>, TokenError> {
    let pk = tok.public_key(CONTAINER, KeyUsage::Sign)?;
    let scheme = SignatureScheme::Ecdsa(HashAlgorithm::Sha256);
    let digest = pk.message_digest(&scheme, msg).unwrap();
    let mut s = tok.login(&Pin::new(USER_PIN))?;
    s.sign_digest(CONTAINER, KeyUsage::Sign, &scheme, &digest)
}

#[test]
fn scan_connect_read_sign_disconnect_at_20_and_512() {
    if !in_child(
        "scan_connect_read_sign_disconnect_at_20_and_512",
        true,
        &[(KEY20, "KB BLE 20", 20, "0000B020"), (KEY512, "KB BLE 512", 512, "0000B512")],
    ) {
        return;
    }
    let (central, t, rx) = transport();
    assert_eq!(next(&rx), TransportEvent::EnumerationComplete);
    assert_eq!(t.bluetooth_state(), BluetoothState::Available);
    let listed = t.scan(Duration::from_millis(300)).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for (k, (addr, name)) in listed.iter().zip([(KEY20, "KB BLE 20"), (KEY512, "KB BLE 512")]) {
        assert_eq!(k.advertisement.address, addr);
        assert_eq!(k.advertisement.name.as_deref(), Some(name));
        assert_eq!(k.advertisement.rssi, Some(-52));
        assert!(!k.advertisement.paired && !k.advertisement.connected && !k.online);
    }
    for addr in [KEY20, KEY512] {
        let info = connect(&t, &rx, addr);
        assert!(info.id.0.starts_with("ble:openpgp-FF4B0000B"), "{}", info.id);
        let cert = personalize(&mut t.open_card(&info.id).unwrap());

        // Disconnect, then measure connect → certificates on a fresh link.
        t.disconnect(addr).unwrap();
        assert_eq!(next(&rx), TransportEvent::Removed(info.id.clone()));
        assert!(!t.scan(Duration::from_millis(50)).unwrap().iter().any(|k| k.advertisement.connected));
        let start = Instant::now();
        let info = connect(&t, &rx, addr);
        let mut tok = t.open(&info.id).unwrap();
        let cs = tok.containers().unwrap();
        let connect_to_certs = start.elapsed();
        let slot = cs[0].sign.as_ref().unwrap();
        assert_eq!(slot.algorithm, Algorithm::EcdsaP256);
        assert_eq!(slot.certificate.as_deref(), Some(cert.as_slice()));

        // Sign on the key, verify with kb-crypto and the OpenSSL CLI.
        let msg = format!("bid file over BLE {addr}");
        let sig = sign(tok.as_mut(), msg.as_bytes()).unwrap();
        let pk = tok.public_key(CONTAINER, KeyUsage::Sign).unwrap();
        pk.verify(&SignatureScheme::Ecdsa(HashAlgorithm::Sha256), msg.as_bytes(), &sig).unwrap();
        openssl_verify(&pk.to_spki_der().unwrap(), msg.as_bytes(), &sig);

        // Figures (the rig has no radio latency; see the module doc).
        let n = 10;
        let start = Instant::now();
        for i in 0..n {
            sign(tok.as_mut(), format!("m{i}").as_bytes()).unwrap();
        }
        let per_s = n as f64 / start.elapsed().as_secs_f64();
        println!(
            "FIGURE ble-rig fragment={} connect_to_certificates_ms={:.0} signatures_per_s={per_s:.1}",
            if addr == KEY20 { 20 } else { 512 },
            connect_to_certs.as_secs_f64() * 1000.0
        );
        drop(tok);
        t.disconnect(addr).unwrap();
        assert_eq!(next(&rx), TransportEvent::Removed(info.id.clone()));
    }
    // At exit the transport closes its links and stops scanning.
    connect(&t, &rx, KEY20);
    t.close();
    assert!(!t.scan(Duration::from_millis(50)).unwrap().iter().any(|k| k.advertisement.connected), "closed at exit");
    // The adapter switched off: 蓝牙不可用 as a state.
    ctl(None, &["power", "off"]);
    assert!(matches!(central.state(), BluetoothState::Unavailable { .. }), "{:?}", central.state());
    ctl(None, &["power", "on"]);
    assert_eq!(central.state(), BluetoothState::Available);
}

#[test]
fn the_link_dropping_mid_signature_is_a_clean_error_and_others_keep_working() {
    if !in_child(
        "the_link_dropping_mid_signature_is_a_clean_error_and_others_keep_working",
        true,
        &[(KEY20, "KB BLE drop", 20, "0000D020"), (KEY512, "KB BLE other", 512, "0000D512")],
    ) {
        return;
    }
    let (_central, t, rx) = transport();
    assert_eq!(next(&rx), TransportEvent::EnumerationComplete);
    t.scan(Duration::from_millis(300)).unwrap();
    let dropping = connect(&t, &rx, KEY20);
    let other = connect(&t, &rx, KEY512);
    personalize(&mut t.open_card(&dropping.id).unwrap());
    let mut tok = t.open(&dropping.id).unwrap();
    ctl(None, &["drop-on", KEY20, "2A"]);
    let start = Instant::now();
    let e = sign(tok.as_mut(), b"never signed").unwrap_err();
    let took = start.elapsed();
    assert_eq!(e.code(), ErrorCode::OutcomeUnknown, "{e}");
    assert!(took < limits().silence, "link loss is seen before the silence bound ({took:?})");
    println!("link loss mid-signature reported after {took:?}");
    assert_eq!(next(&rx), TransportEvent::Offline(dropping.id.clone()));
    assert_eq!(tok.pin_info(kb_types::PinKind::User).unwrap_err().code(), ErrorCode::MediumOffline);
    // The other key keeps working.
    let mut o = t.open(&other.id).unwrap();
    assert_eq!(o.containers().unwrap().len(), 1);
    assert_eq!(o.pin_info(kb_types::PinKind::User).unwrap().retries_left, 3);
}

#[test]
fn malformed_frames_from_the_key_are_clean_errors() {
    if !in_child("malformed_frames_from_the_key_are_clean_errors", true, &[(KEY20, "KB BLE bad", 20, "0000BAD0")]) {
        return;
    }
    let (_central, t, rx) = transport();
    assert_eq!(next(&rx), TransportEvent::EnumerationComplete);
    t.scan(Duration::from_millis(300)).unwrap();
    let info = connect(&t, &rx, KEY20);
    let mut tok = t.open(&info.id).unwrap();
    let init = format!("830020{}", "00".repeat(17));
    for (raw, code, what) in [
        (format!("{init},01AABB"), ErrorCode::BleFrameInvalid, "wrong sequence number"),
        ("8300029000FF".to_string(), ErrorCode::BleFrameInvalid, "more data than"),
        ("9900029000".to_string(), ErrorCode::BleFrameInvalid, "unknown command 0x99"),
        ("BF000101".to_string(), ErrorCode::BleKeyError, "invalid command"),
    ] {
        ctl(None, &["raw", KEY20, &raw]);
        let e = tok.pin_info(kb_types::PinKind::User).unwrap_err();
        assert_eq!(e.code(), code, "{what}: {e}");
        assert!(e.to_string().contains(what), "{what}: {e}");
        assert_eq!(tok.pin_info(kb_types::PinKind::User).unwrap().retries_left, 3, "after {what}");
    }
}

/// The unique names (connections) on the bus now.
fn connections_on_the_bus() -> usize {
    let conn = dbus::blocking::Connection::new_system().unwrap();
    let bus = conn.with_proxy("org.freedesktop.DBus", "/org/freedesktop/DBus", Duration::from_secs(10));
    let (names,): (Vec<String>,) = bus.method_call("org.freedesktop.DBus", "ListNames", ()).unwrap();
    // Less our own.
    names.iter().filter(|n| n.starts_with(':')).count() - 1
}

/// Threads of this process named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .count()
}

#[test]
fn bluetoothd_absent_is_the_unavailable_state() {
    if !in_child("bluetoothd_absent_is_the_unavailable_state", false, &[]) {
        return;
    }
    let before = connections_on_the_bus();
    let (central, t, rx) = transport();
    let state = central.state();
    assert_eq!(state, BluetoothState::Unavailable { reason: "the Bluetooth service (bluetoothd) is not running".into() });
    assert_eq!(next(&rx), TransportEvent::EnumerationComplete);
    match next(&rx) {
        TransportEvent::Error(m) => assert!(m.starts_with("bluetooth_unavailable: 蓝牙不可用"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.scan(Duration::from_millis(50)).unwrap_err().code(), ErrorCode::BluetoothUnavailable);
    assert_eq!(t.connect(KEY20).unwrap_err().code(), ErrorCode::BluetoothUnavailable);
    assert!(rx.recv_timeout(kb_ble::STATE_POLL * 2).is_err(), "reported once, not a storm");
    // Asking again and again leaves nothing behind: no bus connection held per look
    // (btleplug's session keeps one for good), no runtime started.
    for _ in 0..20 {
        assert!(matches!(central.state(), BluetoothState::Unavailable { .. }));
    }
    rig::wait_for("the probes' connections to close", || connections_on_the_bus() <= before);
    assert_eq!(threads_named("kb-ble-btleplug"), 0, "no runtime without BlueZ");
}

/// No system bus at all (a container, a minimal server): 蓝牙不可用 at once, nothing
/// started. Runs in a child whose bus address names a socket that does not exist.
#[test]
fn no_system_bus_is_the_unavailable_state_at_once() {
    if !rig::is_child() {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "no_system_bus_is_the_unavailable_state_at_once", "--nocapture", "--test-threads=1"])
            .env("KB_BLE_CHILD", "1")
            .env("DBUS_SYSTEM_BUS_ADDRESS", format!("unix:path={}", dir.path().join("none").display()))
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        return;
    }
    let (central, t, rx) = transport();
    assert_eq!(next(&rx), TransportEvent::EnumerationComplete);
    match central.state() {
        BluetoothState::Unavailable { reason } => assert!(reason.starts_with("no D-Bus system bus"), "{reason}"),
        s => panic!("{s:?}"),
    }
    assert!(matches!(next(&rx), TransportEvent::Error(_)));
    assert_eq!(t.scan(Duration::from_millis(50)).unwrap_err().code(), ErrorCode::BluetoothUnavailable);
    assert_eq!(threads_named("kb-ble-btleplug"), 0, "no runtime without a bus");
    // Closing at exit has nothing to close and starts nothing.
    t.close();
    assert_eq!(threads_named("kb-ble-btleplug"), 0);
}

#[test]
fn a_fido_key_is_listed_with_what_it_needs_and_never_connected() {
    const FIDO: &str = "C0:FF:EE:00:0F:1D";
    if !in_child("a_fido_key_is_listed_with_what_it_needs_and_never_connected", true, &[(KEY20, "KB BLE 20", 20, "0000B021")]) {
        return;
    }
    // A FIDO security key (service 0xFFFD, in the registry) and a heart-rate sensor
    // (0x180D, known to nobody) next to one of ours.
    ctl(None, &["device", FIDO, "Security Key", "0000fffd-0000-1000-8000-00805f9b34fb"]);
    ctl(None, &["device", "C0:FF:EE:00:18:0D", "Heart rate", "0000180d-0000-1000-8000-00805f9b34fb"]);
    let (_central, t, rx) = transport();
    assert_eq!(next(&rx), TransportEvent::EnumerationComplete);
    let listed = t.scan(Duration::from_millis(300)).unwrap();
    let mut addresses: Vec<&str> = listed.iter().map(|k| k.advertisement.address.as_str()).collect();
    addresses.sort();
    assert_eq!(addresses, [KEY20, FIDO], "{listed:?}");
    let fido = listed.iter().find(|k| k.advertisement.address == FIDO).unwrap();
    assert!(fido.advertisement.needs.as_deref().is_some_and(|n| n.contains("WebAuthn")), "{fido:?}");
    assert!(listed.iter().find(|k| k.advertisement.address == KEY20).unwrap().advertisement.needs.is_none());
    let e = t.connect(FIDO).unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotSupported, "{e}");
    assert!(!t.scan(Duration::from_millis(50)).unwrap().iter().any(|k| k.advertisement.connected), "no link opened");
    connect(&t, &rx, KEY20);
    t.close();
}
