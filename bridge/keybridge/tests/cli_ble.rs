//! `keybridge ble scan|connect|disconnect|forget` against the BLE rig of
//! `drivers/kb-ble/tests/rig` (python-dbusmock's bluez5 on a private bus, the PyPI OpenPGP
//! card emulator behind a GATT key). The CLI is a child process, so the bus address is
//! simply its environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../drivers/kb-ble/tests/rig/mod.rs"]
mod rig;

use std::process::{Command, Output};

const KEY: &str = "C0:FF:EE:00:0C:11";

fn cli(bus: &str, home: &std::path::Path, args: &[&str]) -> (serde_json::Value, Output) {
    let out = Command::new(env!("CARGO_BIN_EXE_keybridge"))
        .arg("--home")
        .arg(home)
        .arg("--json")
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (v, out)
}

#[test]
fn ble_scan_connect_disconnect_forget() {
    let Some(mut rig) = rig::Rig::start(true) else { return };
    rig.add_key(KEY, "KB BLE CLI", 20, "0000C11C");
    let home = rig.dir.path().join("home");
    let (v, out) = cli(&rig.bus, &home, &["ble", "scan", "--seconds", "0.3"]);
    assert!(out.status.success(), "{out:?}");
    let k = &v["keys"][0];
    assert_eq!(k["address"], KEY);
    assert_eq!(k["name"], "KB BLE CLI");
    assert_eq!(k["rssi"], -52);
    assert_eq!(k["connected"], false);
    assert_eq!(k["remembered"], false);

    let (v, out) = cli(&rig.bus, &home, &["ble", "connect", KEY, "--auto-reconnect"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(v["device"]["id"], "ble:openpgp-FF4B0000C11C");
    assert_eq!(v["containers"][0]["name"], "openpgp");
    assert_eq!(v["auto_reconnect"], true);
    // Remembered, and the link closed when the command ended.
    let (v, _) = cli(&rig.bus, &home, &["ble", "scan", "--seconds", "0.3"]);
    assert_eq!(v["keys"][0]["remembered"], true);
    assert_eq!(v["keys"][0]["connected"], false);
    assert_eq!(v["keys"][0]["device_id"], "ble:openpgp-FF4B0000C11C");

    let (v, out) = cli(&rig.bus, &home, &["ble", "disconnect", KEY]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(v["result"], "disconnected");
    let (_, out) = cli(&rig.bus, &home, &["ble", "forget", KEY]);
    assert!(out.status.success(), "{out:?}");
    let (v, out) = cli(&rig.bus, &home, &["ble", "forget", KEY]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(v["error"]["name"], "unknown_device");
}

#[test]
fn ble_scan_without_bluetoothd_is_bluetooth_unavailable() {
    let Some(rig) = rig::Rig::start(false) else { return };
    let (v, out) = cli(&rig.bus, &rig.dir.path().join("home"), &["ble", "scan"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(v["error"]["code"], 4032);
    assert_eq!(v["error"]["message"], "蓝牙不可用");
}

/// `keybridge serve` hosts BLE keys: a key remembered with `--auto-reconnect` joins the
/// served media when in range, and its link closes when serving stops (SIGTERM).
#[test]
fn serve_reconnects_a_remembered_key_and_closes_its_link_at_exit() {
    let Some(mut rig) = rig::Rig::start(true) else { return };
    rig.add_key(KEY, "KB BLE serve", 20, "0000C11D");
    let home = rig.dir.path().join("home");
    let (_, out) = cli(&rig.bus, &home, &["ble", "scan", "--seconds", "0.3"]);
    assert!(out.status.success(), "{out:?}");
    let (_, out) = cli(&rig.bus, &home, &["ble", "connect", KEY, "--auto-reconnect"]);
    assert!(out.status.success(), "{out:?}");

    let ready = home.join("ready.json");
    let mut server = Served(
        Command::new(env!("CARGO_BIN_EXE_keybridge"))
            .arg("--home")
            .arg(&home)
            .args(["serve", "--port", "0", "--ready-file"])
            .arg(&ready)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &rig.bus)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    rig::wait_for("serve to listen", || ready.exists());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    let secret =
        kb_bridge::secret::ClientSecret::from_hex(&std::fs::read_to_string(r["secret_file"].as_str().unwrap()).unwrap()).unwrap();
    let url = r["url"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let devices = || {
        rt.block_on(async {
            let c = kb_bridge::client::BridgeClient::connect(kb_bridge::client::ClientOptions {
                url: url.clone(),
                origin: None,
                secret: Some(secret.clone()),
                sdk: "ble-test".into(),
            })
            .await
            .unwrap();
            c.request(c.next_id(), "devices.list", serde_json::json!({})).await.unwrap()
        })
    };
    // The monitor brings the remembered key back (every few seconds).
    rig::wait_for("the BLE key among the served media", || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        devices().to_string().contains("ble:openpgp-FF4B0000C11D")
    });
    // Connected at the Bluetooth level while served.
    let (v, _) = cli(&rig.bus, &home, &["ble", "scan", "--seconds", "0.3"]);
    assert_eq!(v["keys"][0]["connected"], true, "{v}");

    // Stop serving: the link is closed on the way out.
    // (Not reaped yet, so the pid is still this child's.)
    let stopped = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.0.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "serve did not stop");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (v, _) = cli(&rig.bus, &home, &["ble", "scan", "--seconds", "0.3"]);
    assert_eq!(v["keys"][0]["connected"], false, "closed at exit: {v}");
}

/// The server process, killed (through its handle, never by name) if the test fails
/// before it stops.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
