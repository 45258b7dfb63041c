//! The real hidapi code path, as far as a machine without HID devices allows: hidapi
//! initialises and enumerates for real, the transport over it completes enumeration at
//! once, and opening paths that are no HID device fails with stable codes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use kb_hid::{HidBackend, HidError, HidTransport, HidapiBackend};
use kb_token::{TokenError, Transport, TransportEvent};
use kb_types::{ErrorCode, HasErrorCode};
use std::time::{Duration, Instant};

#[test]
fn real_enumeration_runs() {
    let backend = HidapiBackend::new();
    let first = backend.enumerate().expect("hidapi enumerates without HID devices or access");
    // Again, refreshing the same hidapi context.
    let second = backend.enumerate().unwrap();
    println!("hidapi sees {} HID interface(s): {:?}", first.len(), first.iter().map(|d| &d.path).collect::<Vec<_>>());
    assert_eq!(first.len(), second.len());
    for d in &first {
        assert!(!d.path.is_empty());
    }
    // The build machines have no HID devices (no /dev/hidraw*, no /dev/uhid); where that
    // holds, enumeration must say so rather than invent devices.
    let hidraw_nodes = std::fs::read_dir("/dev")
        .map(|rd| rd.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("hidraw")).count());
    if cfg!(target_os = "linux") && hidraw_nodes.as_ref().is_ok_and(|n| *n == 0) {
        assert!(first.is_empty(), "{first:?}");
    }
}

#[test]
fn opening_what_is_not_there_maps_to_stable_codes() {
    let backend = HidapiBackend::new();
    let missing = backend.open("/dev/hidraw-keybridge-missing").err().expect("no such device");
    assert_eq!(missing, HidError::NotFound("/dev/hidraw-keybridge-missing".into()));
    assert_eq!(TokenError::from(missing).code(), ErrorCode::DeviceRemoved);

    let nul = backend.open("/dev/hid\0raw").err().expect("a path with NUL names nothing");
    assert_eq!(TokenError::from(nul).code(), ErrorCode::DeviceRemoved);

    #[cfg(target_os = "linux")]
    {
        // A device node that exists but is no hidraw device: hidapi opens it, its HID
        // ioctl fails, and the error is an I/O error that says so (not "removed").
        let not_hid = backend.open("/dev/null").err().expect("/dev/null is no HID device");
        let HidError::Io(msg) = &not_hid else { panic!("{not_hid:?}") };
        assert!(msg.contains("/dev/null"), "{msg}");
        assert_eq!(TokenError::from(not_hid).code(), ErrorCode::Io);
    }
}

#[test]
fn the_real_transport_never_holds_up_a_front_end() {
    let t = HidTransport::new();
    let started = Instant::now();
    let rx = t.watch().unwrap();
    loop {
        match rx.recv_timeout(Duration::from_secs(5)).expect("enumeration completes") {
            TransportEvent::EnumerationComplete => break,
            // A HID key on a developer's machine is reported; nothing else is expected.
            TransportEvent::Error(m) => assert!(m.starts_with("USB key "), "{m}"),
            e => panic!("{e:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
}
