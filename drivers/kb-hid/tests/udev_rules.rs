//! The checked-in udev rules are the ones the registry generates, and pass the check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_hid::udev;
use kb_registry::{Registry, UsbInterface};

const CHECKED_IN: &str = include_str!("../../../installer/udev/70-keybridge.rules");

#[test]
fn checked_in_rules_match_the_registry() {
    let registry = Registry::builtin().unwrap();
    let generated = udev::rules(&registry);
    assert!(
        CHECKED_IN == generated,
        "installer/udev/{} differs from drivers/registry/media.toml; regenerate it:\n  \
         cargo run -q -p kb-hid --example udev_rules > installer/udev/{}",
        udev::FILE_NAME,
        udev::FILE_NAME
    );
    udev::check(CHECKED_IN).unwrap();
    // Every vendor key of the registry is in the file, for both node types.
    let vendor: Vec<_> = registry.usb().iter().filter(|e| e.interface == UsbInterface::Vendor).collect();
    assert!(!vendor.is_empty());
    for e in vendor {
        let ids = format!("{{idVendor}}==\"{:04x}\", ATTRS{{idProduct}}==\"{:04x}\"", e.vid, e.pid);
        assert!(CHECKED_IN.contains(&format!("ATTRS{ids}")), "{ids}");
    }
}
