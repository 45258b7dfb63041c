//! The `keybridge-tray` binary itself: what it links, and how it behaves without a window.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_keybridge-tray");
/// The page engine and its libraries: the window's, never the core's.
const ENGINE: [&str; 3] = ["libwebkit2gtk", "libjavascriptcoregtk", "libsoup"];

fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The long-lived core must not link WebKit: the dynamic loader maps and relocates every
/// library a binary needs, used or not (~24 MiB of WebKit's in the core's RSS when it
/// was the same binary as the window). Its direct needs (`readelf -d`), and everything
/// they pull in (`ldd`).
#[cfg(target_os = "linux")]
#[test]
fn the_core_does_not_link_webkit() {
    let dynamic = run("readelf", &["-d", BIN]);
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(needed.iter().any(|l| l.contains("libgtk-3")), "GTK (the tray) is linked: the listing is read right\n{dynamic}");
    for lib in ENGINE {
        assert!(!needed.iter().any(|l| l.contains(lib)), "the core needs {lib}:\n{dynamic}");
    }
    let all = run("ldd", &[BIN]);
    for lib in ENGINE {
        assert!(!all.contains(lib), "the core loads {lib} through a library it needs:\n{all}");
    }
}

#[test]
fn without_a_display_it_says_what_to_use_instead() {
    let home = tempfile::tempdir().unwrap();
    let out =
        Command::new(BIN).env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY").arg("--home").arg(home.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("DISPLAY") && err.contains("keybridge serve"), "{err}");
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("keybridge-tray "));
    let out = Command::new(BIN).args(["--window", "/nowhere"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("keybridge-desktop --window"));
}
