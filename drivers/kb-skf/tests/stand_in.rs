//! `kb-skf` against a stand-in for a vendor SKF module (`tests/c/stand_in_module.c`,
//! built here with gcc): no vendor module can be installed on these machines, so the
//! stand-in reproduces two behaviours of real ones (issue 13) — an `SKF_WaitForDevEvent`
//! that returns at once, every time, and out-parameter structures written past the
//! standard's layout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
// Reading the stand-in's call counters needs a `dlsym`.
#![allow(unsafe_code)]

use kb_crypto::SignatureScheme;
use kb_crypto::sm2::Sm2Signature;
use kb_skf::{MAX_QUICK_WAITS, SkfModule, SkfToken, SkfTransport};
use kb_token::{Token, Transport, TransportEvent};
use kb_types::{DeviceId, KeyUsage, Pin, PinKind, TransportKind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HANG: Duration = Duration::from_secs(60);

/// Build the stand-in with these `-D` flags into `dir`; `None` (loudly) without gcc.
fn build(dir: &Path, flags: &[&str]) -> Option<PathBuf> {
    if Command::new("gcc").arg("--version").output().is_err() {
        return kb_interop::unavailable("gcc", "not on PATH (Debian package gcc)");
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/stand_in_module.c");
    let so = dir.join(format!("libstandin{}.so", flags.join("").replace(['-', '='], "_")));
    let out = Command::new("gcc")
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-O1"])
        .args(flags)
        .arg("-o")
        .arg(&so)
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(so)
}

/// The stand-in's own counters and gate, reached through `dlsym` on the same library
/// the transport loaded (one copy per process).
struct Counters {
    lib: libloading::Library,
}

impl Counters {
    fn open(so: &Path) -> Self {
        // SAFETY: the stand-in's initialisers do nothing; it is already loaded.
        Counters { lib: unsafe { libloading::Library::new(so) }.unwrap() }
    }

    fn count(&self, which: i32) -> u32 {
        // SAFETY: `ULONG StandIn_Count(int)` as defined in stand_in_module.c.
        unsafe { (self.lib.get::<unsafe extern "C" fn(i32) -> u32>(b"StandIn_Count\0").unwrap())(which) }
    }

    fn waits(&self) -> u32 {
        self.count(0)
    }

    fn enumerations(&self) -> u32 {
        self.count(1)
    }

    fn release(&self) {
        // SAFETY: `void StandIn_Release(void)` as defined in stand_in_module.c.
        unsafe { (self.lib.get::<unsafe extern "C" fn()>(b"StandIn_Release\0").unwrap())() }
    }
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < HANG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Issue 13, item 1: a module whose wait returns at once made the events thread spin
/// and queue wake-ups without bound. Now: the wait is called a bounded number of times
/// (back-off, then polling alone), and wake-ups coalesce (at most one pending). The
/// stand-in's `SKF_EnumDev` blocks from its second call until released, so every
/// wake-up the storm causes meanwhile is pending at once: after the release, at most
/// one more enumeration may follow.
#[test]
fn a_wait_that_returns_at_once_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let Some(so) = build(dir.path(), &["-DGATE", "-DOVERWRITE=2"]) else { return };
    // An hour's poll: every enumeration after the first is caused by a wake-up.
    let transport = SkfTransport::new(&so).with_poll_interval(Duration::from_secs(3600));
    let rx = transport.watch().unwrap();
    match rx.recv_timeout(HANG).unwrap() {
        TransportEvent::Added(info) => assert_eq!(info.serial, "SI-0001"),
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.recv_timeout(HANG).unwrap(), TransportEvent::EnumerationComplete);
    let stand_in = Counters::open(&so);

    until("the events thread to give up on the module's wait", || stand_in.waits() >= MAX_QUICK_WAITS);
    // Over a few seconds of storm the counts stay within a small bound (counted, not
    // timed): the wait is not called again, and the one enumeration a wake-up started
    // is held in the stand-in's gate.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stand_in.waits(), MAX_QUICK_WAITS, "the events thread kept calling SKF_WaitForDevEvent");
    assert!(stand_in.enumerations() <= 2, "{} enumerations", stand_in.enumerations());

    // Every wake-up of the storm is now pending: they must be one.
    stand_in.release();
    std::thread::sleep(Duration::from_secs(2));
    let n = stand_in.enumerations();
    assert!(n <= 3, "{n} enumerations: more than one wake-up was pending");
    assert_eq!(stand_in.waits(), MAX_QUICK_WAITS);
    // Nothing changed on the module, so nothing was reported.
    assert!(rx.try_recv().is_err());
    drop(transport);
}

/// Run `body` in a child process (a module that corrupts memory must not take the
/// other tests down with it): the parent builds the stand-in and checks the child.
fn in_child(test_name: &str, flags: &[&str], body: impl FnOnce(&Path)) {
    const ENV: &str = "KB_SKF_STAND_IN";
    if let Some(so) = std::env::var_os(ENV) {
        return body(Path::new(&so));
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(so) = build(dir.path(), flags) else { return };
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV, &so)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{test_name} {flags:?} failed in its child ({}):\n{text}",
        out.status
    );
}

/// What a module that writes past its structures still shows: exactly the standard
/// layout's fields.
fn use_the_over_writing_module(so: &Path) {
    let module = SkfModule::load(so).unwrap();
    let mut t = SkfToken::open(module, &DeviceId::new(TransportKind::Skf, "SI-0001")).unwrap();
    let info = t.info();
    assert_eq!(
        (info.label.as_str(), info.serial.as_str(), info.manufacturer.as_str(), info.model.as_str()),
        ("stand-in key", "SI-0001", "Stand-in Vendor", "Stand-in")
    );
    let pin = t.pin_info(PinKind::User).unwrap();
    assert_eq!((pin.max_retries, pin.retries_left, pin.is_default, pin.locked), (10, 7, false, false));
    let containers = t.containers().unwrap();
    assert_eq!(containers.len(), 1);
    assert!(containers[0].sign.is_some() && containers[0].encrypt.is_none(), "{containers:?}");
    let mut s = t.login(&Pin::new("123456")).unwrap();
    let der = s.sign_digest("con", KeyUsage::Sign, &SignatureScheme::sm2_default(), &[7u8; 32]).unwrap();
    let sig = Sm2Signature::from_der(&der).unwrap();
    assert_eq!((sig.r[31], sig.s[31]), (1, 2));
    assert!(sig.r[..31].iter().chain(&sig.s[..31]).all(|b| *b == 0));
    let public = s.generate_key_pair("con", KeyUsage::Sign, kb_types::Algorithm::Sm2).unwrap();
    let kb_crypto::PublicKey::Sm2(k) = public else { panic!() };
    assert_eq!(hex_of(&k.to_xy()[..4]), "32c4ae2c");
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Issue 13, item 3: a module wrote 296 bytes into the 294-byte packed DEVINFO. Each
/// out-parameter structure now gets a larger zeroed buffer and only the standard layout
/// is read: the 2 extra bytes, and 1 KiB extra (which, written onto the stack as
/// before, smashes the caller's frame).
#[test]
fn structures_written_past_their_layout() {
    in_child("structures_written_past_their_layout", &["-DOVERWRITE=2"], use_the_over_writing_module);
}

#[test]
fn structures_written_far_past_their_layout() {
    in_child("structures_written_far_past_their_layout", &["-DOVERWRITE=1024"], use_the_over_writing_module);
}
