//! The HID transport over the virtual HID stack: listed keys found and matched against
//! the registry, reported with what they need, hot-plug, and the driver path that turns a
//! listed key into a medium.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_hid::{HidConnection, HidDeviceInfo, HidDriver, HidError, HidTransport, VirtualHid};
use kb_registry::Registry;
use kb_token::memory::MemoryToken;
use kb_token::{Token, TokenError, Transport, TransportEvent};
use kb_types::{DeviceId, ErrorCode, HasErrorCode, TransportKind};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);
const WAIT: Duration = Duration::from_secs(5);

fn device(path: &str, vid: u16, pid: u16, serial: &str, interface: i32) -> HidDeviceInfo {
    HidDeviceInfo {
        path: path.into(),
        vendor_id: vid,
        product_id: pid,
        serial: serial.into(),
        manufacturer: "M".into(),
        product: "P".into(),
        usage_page: 0xFF00,
        usage: 1,
        interface_number: interface,
    }
}

fn next(rx: &Receiver<TransportEvent>) -> TransportEvent {
    rx.recv_timeout(WAIT).expect("an event within 5 s")
}

fn until_complete(rx: &Receiver<TransportEvent>) -> Vec<TransportEvent> {
    let mut out = Vec::new();
    loop {
        match next(rx) {
            TransportEvent::EnumerationComplete => return out,
            e => out.push(e),
        }
    }
}

/// Nothing more arrives during a few polls.
fn quiet(rx: &Receiver<TransportEvent>) {
    if let Ok(e) = rx.recv_timeout(POLL * 8) {
        panic!("unexpected event {e:?}");
    }
}

fn error_text(e: TransportEvent) -> String {
    match e {
        TransportEvent::Error(m) => m,
        other => panic!("expected a transport error, got {other:?}"),
    }
}

fn transport(hid: &VirtualHid) -> HidTransport {
    HidTransport::with_backend(Arc::new(hid.clone()), Registry::builtin().unwrap()).with_poll_interval(POLL)
}

#[test]
fn listed_keys_are_reported_with_what_they_need_and_others_ignored() {
    let hid = VirtualHid::new();
    // Present at start: a listed vendor key with two HID interfaces, a keyboard, and a
    // YubiKey's HID interface (a CCID key, served through PC/SC).
    hid.plug(device("/dev/hidraw0", 0x096E, 0x0309, "GM0001", 0));
    hid.plug(device("/dev/hidraw1", 0x096E, 0x0309, "GM0001", 1));
    hid.plug(device("/dev/hidraw2", 0x046D, 0xC31C, "", 0));
    hid.plug(device("/dev/hidraw3", 0x1050, 0x0407, "", 0));
    let t = transport(&hid);
    assert_eq!(t.kind(), TransportKind::Hid);
    let rx = t.watch().unwrap();
    let events = until_complete(&rx);
    assert_eq!(events.len(), 1, "one report per physical key: {events:?}");
    let msg = error_text(events.into_iter().next().unwrap());
    assert_eq!(
        msg,
        "USB key Feitian Technologies (飞天诚信) ePass3000GM (096E:0309, serial GM0001) present, needs the vendor's SKF (GM/T 0016) or PKCS#11 module"
    );
    quiet(&rx);

    // Hot-plug: a second listed key without a serial is reported when it arrives …
    hid.plug(device("/dev/hidraw5", 0x1677, 0x0103, "", 0));
    let msg = error_text(next(&rx));
    assert!(
        msg.starts_with("USB key China Huada Integrated Circuit Design (CIDC, 华大) Token (1677:0103) present, needs"),
        "{msg}"
    );
    quiet(&rx);
    // … pulling a key that was never a medium reports nothing, and plugging it in again
    // reports it again.
    assert!(hid.pull("/dev/hidraw0") && hid.pull("/dev/hidraw1"));
    quiet(&rx);
    hid.plug(device("/dev/hidraw6", 0x096E, 0x0309, "GM0001", 0));
    assert!(error_text(next(&rx)).contains("ePass3000GM (096E:0309, serial GM0001) present"));
    quiet(&rx);
    // Nothing listed is a medium, so there is nothing to open.
    let e = t.open(&DeviceId::new(TransportKind::Hid, "GM0001")).err().unwrap();
    assert_eq!(e.code(), ErrorCode::UnknownDevice);
}

#[test]
fn no_devices_completes_at_once_and_keeps_polling() {
    let hid = VirtualHid::new();
    let t = transport(&hid);
    let started = Instant::now();
    let rx = t.watch().unwrap();
    assert!(until_complete(&rx).is_empty());
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    let before = hid.enumerations();
    let deadline = Instant::now() + WAIT;
    while hid.enumerations() < before + 3 {
        assert!(Instant::now() < deadline, "the transport stopped polling: {before} → {}", hid.enumerations());
        std::thread::sleep(POLL);
    }
}

#[test]
fn a_failing_listing_is_reported_once_and_keeps_what_was_known() {
    let hid = VirtualHid::new();
    hid.fail_enumeration(Some("sysfs unreadable"));
    let t = transport(&hid);
    let rx = t.watch().unwrap();
    let events = until_complete(&rx);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(error_text(events.into_iter().next().unwrap()), "HID: listing devices failed: HID: sysfs unreadable");
    quiet(&rx);
    // Recovers: a key plugged in meanwhile is found.
    hid.plug(device("/dev/hidraw0", 0x096E, 0x0401, "", 0));
    hid.fail_enumeration(None);
    assert!(error_text(next(&rx)).contains("ePass3000 (096E:0401) present"));
}

#[test]
fn dropping_the_transport_stops_the_watcher() {
    let hid = VirtualHid::new();
    let t = transport(&hid);
    let rx = t.watch().unwrap();
    until_complete(&rx);
    drop(t);
    // The thread ends within a poll step and drops its sender.
    let deadline = Instant::now() + WAIT;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            _ if Instant::now() > deadline => panic!("watcher still running"),
            _ => {}
        }
    }
}

// --- The driver path: a test protocol ("acme-hid") over the virtual device -------------

/// The registry a build with an "acme-hid" driver would ship.
const ACME_REGISTRY: &str = r#"
[[usb]]
vid = "F055"
pid = "0001"
vendor = "Acme"
model = "Test Key"
interface = "vendor"
app = "acme-hid"
source = "test"

[[usb]]
vid = "F055"
pid = "0002"
vendor = "Acme"
model = "Other Key"
interface = "vendor"
app = "other-hid"
source = "test"
"#;

/// A driver that asks the key for its serial number with one report and exposes it as
/// an in-memory medium: `00 'S'` → `00 len serial…`.
struct AcmeDriver;

impl HidDriver for AcmeDriver {
    fn name(&self) -> &str {
        "acme-hid"
    }

    fn open(&self, mut connection: Box<dyn HidConnection>, device: &HidDeviceInfo) -> kb_token::Result<Box<dyn Token>> {
        // Only the vendor-defined interface speaks the protocol.
        if device.usage_page < 0xFF00 {
            return Err(TokenError::NotSupported("not the protocol interface".into()));
        }
        connection.write_report(&[0x00, b'S'])?;
        let mut buf = [0u8; 64];
        let n = connection.read_report(&mut buf, Duration::from_millis(500))?;
        let len = usize::from(*buf.get(1).unwrap_or(&0));
        let serial = buf.get(2..2 + len).filter(|_| n >= 2 + len).ok_or_else(|| TokenError::Io("short answer".into()))?;
        let serial = String::from_utf8_lossy(serial).into_owned();
        Ok(Box::new(
            MemoryToken::new(TransportKind::Hid, &format!("acme-{serial}"), "12345678", "87654321").with_label("Acme Test Key"),
        ))
    }
}

fn acme(hid: &VirtualHid) -> HidTransport {
    let registry = Registry::parse_with_hid_drivers(ACME_REGISTRY, &["acme-hid", "other-hid"]).unwrap();
    HidTransport::with_backend(Arc::new(hid.clone()), registry).with_poll_interval(POLL).with_driver(Arc::new(AcmeDriver))
}

fn plug_acme(hid: &VirtualHid, path: &str, serial: &str, opens: usize) {
    // A boot-protocol interface the driver refuses, then the vendor interface.
    let mut keyboard = device(&format!("{path}k"), 0xF055, 0x0001, serial, 0);
    keyboard.usage_page = 0x0001;
    hid.plug(keyboard);
    hid.plug(device(path, 0xF055, 0x0001, serial, 1));
    let answer = [&[0x00, serial.len() as u8][..], serial.as_bytes()].concat();
    for _ in 0..opens {
        hid.script(path, &[0x00, b'S'], &[&answer]);
    }
}

#[test]
fn a_key_with_a_driver_is_a_medium_added_and_removed() {
    let hid = VirtualHid::new();
    plug_acme(&hid, "/dev/hidraw0", "A1", 2);
    let t = acme(&hid);
    let rx = t.watch().unwrap();
    let events = until_complete(&rx);
    let [TransportEvent::Added(info)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!((info.id.0.as_str(), info.label.as_str(), info.transport), ("hid:acme-A1", "Acme Test Key", TransportKind::Hid));
    assert_eq!(hid.written("/dev/hidraw0"), vec![vec![0x00, b'S']], "the driver spoke on the vendor interface");
    assert!(hid.written("/dev/hidraw0k").is_empty());

    // Opening goes through the driver again, over a fresh connection.
    let token = t.open(&info.id).unwrap();
    assert_eq!(token.info().id, info.id);
    assert_eq!(hid.written("/dev/hidraw0").len(), 2);

    // Pulled out → Removed, and the id no longer opens.
    let id = info.id.clone();
    hid.pull("/dev/hidraw0");
    hid.pull("/dev/hidraw0k");
    match next(&rx) {
        TransportEvent::Removed(gone) => assert_eq!(gone, id),
        e => panic!("{e:?}"),
    }
    assert_eq!(t.open(&id).err().unwrap().code(), ErrorCode::UnknownDevice);

    // Inserted again → Added again.
    plug_acme(&hid, "/dev/hidraw4", "A1", 1);
    assert!(matches!(next(&rx), TransportEvent::Added(i) if i.id == id));
}

#[test]
fn driver_failures_are_reported_and_missing_drivers_named() {
    let hid = VirtualHid::new();
    // No scripted answer: the driver's read times out.
    plug_acme(&hid, "/dev/hidraw0", "A2", 0);
    // Listed for a driver this build does not have.
    hid.plug(device("/dev/hidraw9", 0xF055, 0x0002, "B1", 0));
    let t = acme(&hid);
    let rx = t.watch().unwrap();
    let mut msgs: Vec<String> = until_complete(&rx).into_iter().map(error_text).collect();
    msgs.sort();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0]
            .starts_with("USB key Acme Other Key (F055:0002, serial B1) present, needs the KeyBridge HID driver \"other-hid\""),
        "{}",
        msgs[0]
    );
    assert!(
        msgs[1].starts_with(
            "USB key Acme Test Key (F055:0001, serial A2) present but not usable: I/O: the HID device sent no report"
        ),
        "{}",
        msgs[1]
    );
    assert!(msgs[1].contains("sent no report"), "{}", msgs[1]);

    // Without the udev rules: the message says what to do.
    plug_acme(&hid, "/dev/hidraw5", "A3", 1);
    hid.deny_access("/dev/hidraw5");
    hid.deny_access("/dev/hidraw5k");
    let msg = error_text(next(&rx));
    assert!(msg.contains("(F055:0001, serial A3) present but not usable") && msg.contains("udev rules"), "{msg}");
}

#[test]
fn a_medium_pulled_mid_operation_fails_cleanly() {
    let hid = VirtualHid::new();
    plug_acme(&hid, "/dev/hidraw0", "A4", 1);
    let conn_hid = hid.clone();
    let mut conn = kb_hid::HidBackend::open(&conn_hid, "/dev/hidraw0").unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        conn.read_report(&mut buf, Duration::from_secs(10))
    });
    std::thread::sleep(Duration::from_millis(50));
    let pulled = Instant::now();
    hid.pull("/dev/hidraw0");
    let r = reader.join().unwrap();
    assert_eq!(r, Err(HidError::Disconnected));
    assert!(pulled.elapsed() < Duration::from_secs(1));
    assert_eq!(TokenError::from(HidError::Disconnected).code(), ErrorCode::DeviceRemoved);
    // A key plugged in at the same path later is a different device to old connections.
    let mut old = kb_hid::HidBackend::open(&hid, "/dev/hidraw0k").unwrap();
    hid.pull("/dev/hidraw0k");
    plug_acme(&hid, "/dev/hidraw0", "A5", 0);
    assert_eq!(old.write_report(&[0, 1]), Err(HidError::Disconnected));
    assert_eq!(kb_hid::HidBackend::open(&hid, "/dev/nothing").err(), Some(HidError::NotFound("/dev/nothing".into())));
}
