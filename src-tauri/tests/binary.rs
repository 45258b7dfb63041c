//! The `keybridge-desktop` binary's own behaviour without a window.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keybridge-desktop"));
    c.env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY");
    c
}

#[test]
fn without_a_display_it_says_what_to_use_instead() {
    let home = tempfile::tempdir().unwrap();
    let out = bin().arg("--home").arg(home.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("DISPLAY") && err.contains("keybridge serve"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn arguments_are_checked() {
    let out = bin().arg("--frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument --frobnicate"));
    let out = bin().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("keybridge-desktop "));
    let out = bin().arg("--home").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--home needs a directory"));
}
