//! The BLE test rig: BlueZ's D-Bus API stood in by python-dbusmock's `bluez5` template on
//! a private bus (a `dbus-daemon` of our own; btleplug finds it through
//! `DBUS_SYSTEM_BUS_ADDRESS`), GATT objects added by `tests/ble/ble_key_template.py`, and
//! behind each key the independent PyPI OpenPGP card emulator (`tests/pcsc/vpcd_openpgp.py`).
//!
//! The bus address is process-wide, so each test runs its body in a child process (this
//! test binary again, `KB_BLE_CHILD=1`) with the variable set; the parent starts and
//! stops the rig's processes by pid. Missing peers skip loudly, or fail with
//! `KB_INTEROP_REQUIRED=1`.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SYSTEM_PYTHON: &str = "/usr/bin/python3";
const DBUS_DAEMON: &str = "/usr/bin/dbus-daemon";
pub const USER_PIN: &str = "123456";
pub const ADMIN_PIN: &str = "12345678";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn venv_python() -> PathBuf {
    std::env::var_os("KB_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/keybridge"))
        .join("venv/bin/python")
}

/// Whether this process is a test body run by the rig.
pub fn is_child() -> bool {
    std::env::var("KB_BLE_CHILD").is_ok_and(|v| v == "1")
}

fn missing(what: &str) -> Option<Rig> {
    let msg = format!("BLE rig: {what}; install it with installer/bootstrap.sh");
    if std::env::var("KB_INTEROP_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{msg} (KB_INTEROP_REQUIRED=1)");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Run `tests/ble/rig_ctl.py` against the bus in `DBUS_SYSTEM_BUS_ADDRESS` (or `bus`).
pub fn ctl(bus: Option<&str>, args: &[&str]) {
    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.arg(repo().join("tests/ble/rig_ctl.py")).args(args);
    if let Some(b) = bus {
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", b);
    }
    let out = cmd.output().expect("run rig_ctl.py");
    assert!(out.status.success(), "rig_ctl.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A running rig. Dropping it kills every process it started (cards, the mock BlueZ,
/// the bus), by pid.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub bus: String,
    children: Vec<(String, Child)>,
}

impl Rig {
    /// Start a private bus, and the mock BlueZ with an adapter if `bluez`.
    pub fn start(bluez: bool) -> Option<Rig> {
        if !Path::new(DBUS_DAEMON).exists() {
            return missing("dbus-daemon (Debian dbus-daemon) not installed");
        }
        let probe = Command::new(SYSTEM_PYTHON).args(["-c", "import dbusmock, gi"]).stderr(Stdio::null()).status();
        if !probe.is_ok_and(|s| s.success()) {
            return missing("python-dbusmock (Debian python3-dbusmock) not installed for /usr/bin/python3");
        }
        let probe = Command::new(venv_python()).args(["-c", "import smartcard.app.openpgp, ZODB"]).stderr(Stdio::null()).status();
        if !probe.is_ok_and(|s| s.success()) {
            return missing(&format!("the PyPI smartcard-app-openpgp emulator is not in {}", venv_python().display()));
        }
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("system_bus_socket");
        let conf = dir.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"#,
                sock.display()
            ),
        )
        .unwrap();
        let mut rig = Rig { dir, bus: String::new(), children: Vec::new() };
        let mut daemon = Command::new(DBUS_DAEMON)
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let mut line = String::new();
        BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut line).unwrap();
        rig.children.push(("dbus-daemon".into(), daemon));
        rig.bus = line.trim().to_string();
        assert!(rig.bus.starts_with("unix:"), "dbus-daemon printed {line:?}");
        if bluez {
            let log = std::fs::File::create(rig.dir.path().join("dbusmock.log")).unwrap();
            let mock = Command::new(SYSTEM_PYTHON)
                .args(["-m", "dbusmock", "--system", "-t", "bluez5"])
                .env("DBUS_SYSTEM_BUS_ADDRESS", &rig.bus)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start dbusmock");
            rig.children.push(("dbusmock".into(), mock));
            ctl(Some(&rig.bus), &["wait"]);
            ctl(Some(&rig.bus), &["adapter"]);
        }
        Some(rig)
    }

    /// Add a BLE key at `address` fragmenting at `fragment` bytes, with a fresh emulated
    /// OpenPGP card behind it.
    pub fn add_key(&mut self, address: &str, name: &str, fragment: u16, serial: &str) {
        let port = free_port();
        ctl(Some(&self.bus), &["key", address, name, &fragment.to_string(), &port.to_string()]);
        let state = self.dir.path().join(format!("card-{serial}"));
        let mut card = Command::new(venv_python())
            .arg(repo().join("tests/pcsc/vpcd_openpgp.py"))
            .args(["--port", &port.to_string(), "--state"])
            .arg(&state)
            .args(["--serial", serial])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.dir.path().join(format!("card-{serial}.log"))).unwrap())
            .spawn()
            .expect("start the card emulator");
        let mut line = String::new();
        BufReader::new(card.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "inserted");
        self.children.push((format!("card {serial}"), card));
    }

    /// Run test `name` of this binary in a child process on the rig's bus; panics with
    /// its output if it failed.
    pub fn run_child(&self, name: &str) {
        let start = Instant::now();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env("KB_BLE_CHILD", "1")
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        print!("{text}");
        assert!(
            out.status.success() && text.contains("1 passed"),
            "child {name} failed after {:?}:\n{text}\n--- dbusmock log:\n{}",
            start.elapsed(),
            std::fs::read_to_string(self.dir.path().join("dbusmock.log")).unwrap_or_default()
        );
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        while let Some((_, mut c)) = self.children.pop() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait for `f` to hold (hang guard 30 s).
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
