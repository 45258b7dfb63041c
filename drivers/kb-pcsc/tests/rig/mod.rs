//! The PC/SC test rig: a real pcscd with vsmartcard's vpcd reader, and OpenPGP cards
//! played by the independent PyPI emulator `smartcard-app-openpgp` through
//! `tests/pcsc/vpcd_openpgp.py`. The rig starts and stops its processes itself, by pid,
//! on loopback only.
//!
//! There is one pcscd per machine (its socket is `/run/pcscd/pcscd.comm`), so rigs run
//! one at a time: a process-wide mutex plus a file lock across processes. A pcscd the
//! rig did not start is left alone: the rig then uses it if it has the Debian vpcd
//! reader (port 35963), and tests that restart pcscd skip.
//!
//! Missing peers (pcscd, vpcd, the emulator in `$KB_TOOLS/venv`) skip the test with a
//! loud message, or fail it when `KB_INTEROP_REQUIRED=1` (CI).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const PCSCD: &str = "/usr/sbin/pcscd";
const VPCD: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
const SOCKET: &str = "/run/pcscd/pcscd.comm";
const PID_FILE: &str = "/run/pcscd/pcscd.pid";
/// The port of Debian's own vpcd configuration (`/etc/reader.conf.d/vpcd`).
const SYSTEM_VPCD_PORT: u16 = 35963;
/// Where the rig records the pcscd it started, to clean up after a crashed run.
const OWN_PID: &str = "/tmp/keybridge-pcsc-rig.pcscd.pid";
const LOCK: &str = "/tmp/keybridge-pcsc-rig.lock";

static IN_PROCESS: Mutex<()> = Mutex::new(());

fn tools() -> PathBuf {
    std::env::var_os("KB_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/keybridge"))
}

fn python() -> PathBuf {
    tools().join("venv/bin/python")
}

fn bridge_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/pcsc/vpcd_openpgp.py")
}

/// Skip (or fail under `KB_INTEROP_REQUIRED=1`) when a peer is missing.
fn missing(what: &str) -> Option<Rig> {
    let msg = format!("PC/SC rig: {what}; install it with installer/bootstrap.sh");
    if std::env::var("KB_INTEROP_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{msg} (KB_INTEROP_REQUIRED=1)");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
    None
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn read_pid(path: &str) -> Option<u32> {
    // pcscd writes its pid file with a terminating NUL ("1234\n\0").
    std::fs::read_to_string(path).ok()?.trim_matches(|c: char| c.is_whitespace() || c == '\0').parse().ok()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running rig. Dropping it kills its cards and the pcscd it started.
pub struct Rig {
    _guard: MutexGuard<'static, ()>,
    _lock: File,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pcscd: Option<Child>,
    conf_dir: PathBuf,
    pub reader: String,
}

impl Rig {
    /// Start pcscd with a vpcd reader (or reuse a foreign pcscd that has one).
    pub fn start() -> Option<Rig> {
        let guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
        for (path, what) in [(PCSCD, "pcscd (Debian pcscd) not installed"), (VPCD, "vpcd (Debian vsmartcard-vpcd) not installed")]
        {
            if !Path::new(path).exists() {
                return missing(what);
            }
        }
        let probe = Command::new(python()).args(["-c", "import smartcard.app.openpgp, ZODB"]).stderr(Stdio::null()).status();
        if !probe.is_ok_and(|s| s.success()) {
            return missing(&format!("the PyPI smartcard-app-openpgp emulator is not in {}", tools().join("venv").display()));
        }
        let lock = File::options().create(true).truncate(false).write(true).open(LOCK).unwrap();
        fs2::FileExt::lock_exclusive(&lock).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let conf_dir = dir.path().join("reader.conf.d");
        std::fs::create_dir_all(&conf_dir).unwrap();
        // A pcscd we started in a run that crashed: ours to stop.
        if let Some(pid) = read_pid(OWN_PID).filter(|p| pid_alive(*p)) {
            signal(pid, "-KILL");
            let _ = std::fs::remove_file(OWN_PID);
        }
        let foreign = read_pid(PID_FILE).filter(|p| pid_alive(*p));
        let mut rig =
            Rig { _guard: guard, _lock: lock, dir, port: SYSTEM_VPCD_PORT, pcscd: None, conf_dir, reader: String::new() };
        if let Some(pid) = foreign {
            eprintln!(
                "PC/SC rig: a pcscd not started by the rig is running (pid {pid}); using its vpcd reader on port {SYSTEM_VPCD_PORT}"
            );
        } else {
            rig.port = free_port();
            std::fs::write(
                rig.conf_dir.join("vpcd"),
                format!(
                    "FRIENDLYNAME \"KeyBridge Virtual PCD\"\nDEVICENAME /dev/null:{port}\nLIBPATH {VPCD}\nCHANNELID {port}\n",
                    port = rig.port
                ),
            )
            .unwrap();
            rig.start_pcscd();
        }
        rig.reader = rig.wait_reader(Duration::from_secs(10))?;
        Some(rig)
    }

    /// Whether this rig owns pcscd (and so may restart it).
    pub fn owns_pcscd(&self) -> bool {
        self.pcscd.is_some()
    }

    /// Where our pcscd logs: the rig's dir, or `$KB_PCSCD_LOG` (then with `--debug`, and
    /// kept after the test: to see what PC/SC reports when a test fails).
    fn pcscd_log_path(&self) -> PathBuf {
        std::env::var_os("KB_PCSCD_LOG").map(PathBuf::from).unwrap_or_else(|| self.dir.path().join("pcscd.log"))
    }

    /// Start our pcscd and wait for its socket.
    pub fn start_pcscd(&mut self) {
        let log = File::options().create(true).append(true).open(self.pcscd_log_path()).unwrap();
        let mut cmd = Command::new(PCSCD);
        cmd.args(["--foreground", "--config"]).arg(&self.conf_dir);
        if std::env::var_os("KB_PCSCD_LOG").is_some() {
            cmd.arg("--debug");
        }
        let child = cmd.stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("start pcscd");
        std::fs::write(OWN_PID, child.id().to_string()).unwrap();
        self.pcscd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while pcsc::Context::establish(pcsc::Scope::User).is_err() {
            assert!(Instant::now() < deadline, "pcscd did not come up; log: {}", self.pcscd_log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop our pcscd (SIGTERM, then SIGKILL after 3 s) and wait for it.
    pub fn stop_pcscd(&mut self) {
        if let Some(mut child) = self.pcscd.take() {
            signal(child.id(), "-TERM");
            let deadline = Instant::now() + Duration::from_secs(3);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = std::fs::remove_file(OWN_PID);
        }
    }

    pub fn pcscd_log(&self) -> String {
        std::fs::read_to_string(self.pcscd_log_path()).unwrap_or_default()
    }

    fn wait_reader(&self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let want = if self.pcscd.is_some() { "KeyBridge Virtual PCD" } else { "Virtual PCD" };
            if let Ok(ctx) = pcsc::Context::establish(pcsc::Scope::User)
                && let Ok(names) = ctx.list_readers_owned()
                && let Some(n) = names.iter().map(|n| n.to_string_lossy().into_owned()).find(|n| n.starts_with(want))
            {
                return Some(n);
            }
            if Instant::now() > deadline {
                missing(&format!("no vpcd reader appeared in pcscd; pcscd log: {}", self.pcscd_log()));
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Insert a card: start the emulator with its state in `name` under the rig's dir.
    pub fn insert(&self, name: &str, serial: &str, slow_sign: Option<f64>) -> VirtualCard {
        let state = self.dir.path().join(name);
        let log = self.dir.path().join(format!("{name}.log"));
        let mut cmd = Command::new(python());
        cmd.arg(bridge_script())
            .args(["--port", &self.port.to_string(), "--state"])
            .arg(&state)
            .args(["--serial", serial])
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap());
        if let Some(s) = slow_sign {
            cmd.args(["--slow-sign", &s.to_string()]);
        }
        let mut child = cmd.spawn().expect("start the card emulator");
        // Wait until it is connected to vpcd ("inserted").
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "inserted", "emulator log: {}", std::fs::read_to_string(&log).unwrap_or_default());
        VirtualCard { child: Some(child), log }
    }
}

impl Rig {
    /// A personalized card (see [`personalize`]) that stalls `slow_sign` seconds in every
    /// PSO:CDS, so a kill can land mid-command.
    pub fn insert_personalized_slow(&self, name: &str, serial: &str, slow_sign: f64) -> VirtualCard {
        {
            let _c = self.insert(name, serial, None);
            personalize(&mut open_direct(self));
        }
        self.insert(name, serial, Some(slow_sign))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop_pcscd();
    }
}

/// A card process (an emulator connected to vpcd). Dropping or [`VirtualCard::pull`]
/// kills it: the card leaves the reader.
pub struct VirtualCard {
    child: Option<Child>,
    /// The emulator's stderr.
    log: PathBuf,
}

impl VirtualCard {
    /// Wait until the emulator's log holds `line` (e.g. "stalling PSO:CDS", which a card
    /// inserted with `slow_sign` says when a signature command starts its stall). The
    /// timeout only catches a hang.
    pub fn wait_for_log(&self, line: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.lines().any(|l| l.trim() == line) {
                return;
            }
            assert!(Instant::now() < deadline, "no {line:?} in the emulator's log within {timeout:?}: {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL the card process: the card is pulled out.
    pub fn pull(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for VirtualCard {
    fn drop(&mut self) {
        self.pull();
    }
}

pub const USER_PIN: &str = "123456";
pub const ADMIN_PIN: &str = "12345678";

/// Give a fresh emulated card a P-256 signature key and an RSA-2048 decryption key. The
/// emulator generates keys in a background thread after the algorithm changes and
/// answers `6F00` until one is ready, so generation is retried for a while.
pub fn personalize<B: kb_apdu::CardBackend>(card: &mut kb_openpgp::OpenPgpCard<B>) {
    use kb_types::{Algorithm, KeyUsage, Pin};
    for (usage, alg) in [(KeyUsage::Sign, Algorithm::EcdsaP256), (KeyUsage::Encrypt, Algorithm::Rsa { bits: 2048 })] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut s = card.login_admin(&Pin::new(USER_PIN), &Pin::new(ADMIN_PIN)).unwrap();
            match s.generate_key_pair(kb_openpgp::CONTAINER, usage, alg) {
                Ok(_) => break,
                Err(kb_token::TokenError::Card { sw: 0x6F00, .. }) if Instant::now() < deadline => {
                    drop(s);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("generating {alg} for {usage}: {e}"),
            }
        }
    }
}

/// Connect to the card in the rig's reader directly (no transport), once vpcd has handed
/// it to pcscd. The 30 s only catch a hang.
pub fn connect_direct(rig: &Rig) -> kb_pcsc::PcscCard {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    let reader = std::ffi::CString::new(rig.reader.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match kb_pcsc::PcscCard::connect(ctx.clone(), &reader) {
            Ok(b) => return b,
            Err(e) => assert!(Instant::now() < deadline, "connect to the card: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Open the card in the rig's reader directly (no transport).
pub fn open_direct(rig: &Rig) -> kb_openpgp::OpenPgpCard<kb_pcsc::PcscCard> {
    kb_openpgp::OpenPgpCard::open(connect_direct(rig), kb_types::TransportKind::Pcsc).unwrap()
}
