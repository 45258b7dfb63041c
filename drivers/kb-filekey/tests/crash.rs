//! Crash safety of the file-type key.
//!
//! - `kill_during_changes_never_corrupts_or_loses`: a child process (this test binary
//!   re-executed with `KB_CRASH_CHILD=1`) loops through changes — user PIN A→B, import a
//!   certificate, rewrite a 32 KiB seal, PIN B→A, delete the certificate, rewrite the
//!   seal — logging `b <step>` before and `e <step>` after each one. The parent SIGKILLs
//!   it at random moments and then checks that the file opens and is *exactly* the state
//!   before or after the step in flight (which PIN works, whether the certificate is
//!   there, which seal image is stored), and exactly the "after" state when the step had
//!   finished. The next child continues from the state found.
//! - Damaged files (every truncation length, every single flipped byte) are `Corrupt`
//!   (`ErrorCode::TokenCorrupt`), and no operation writes to them.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kb_crypto::{PrivateKey, PublicKey, SignatureScheme};
use kb_filekey::{CreateOptions, FileToken};
use kb_pki::issue::{CertKind, CertificateParams, issue};
use kb_pki::time::UnixTime;
use kb_pki::{LocalSigner, Signer};
use kb_token::{Token, TokenError};
use kb_types::{Algorithm, ErrorCode, HasErrorCode, KeyUsage, Pin, PinKind};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PIN_A: &str = "crash-pin-A1";
const PIN_B: &str = "crash-pin-B2";
const SO: &str = "crash-so-pin";
const SEAL_LEN: usize = 32 * 1024;
const CHILD_ENV: &str = "KB_CRASH_CHILD";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    PinAtoB,
    ImportCert,
    Seal,
    PinBtoA,
    DeleteCert,
}

fn step_kind(k: u64) -> Step {
    match k % 6 {
        0 => Step::PinAtoB,
        1 => Step::ImportCert,
        3 => Step::PinBtoA,
        4 => Step::DeleteCert,
        _ => Step::Seal,
    }
}

/// What the file must show after steps `0..n` (n = 0: the initial state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    pin_b: bool,
    cert: bool,
    /// Which seal image: 0 initially, k + 1 after a seal write at step k.
    seal: u64,
}

fn state_after(n: u64) -> State {
    let mut s = State { pin_b: false, cert: false, seal: 0 };
    for k in 0..n {
        match step_kind(k) {
            Step::PinAtoB => s.pin_b = true,
            Step::PinBtoA => s.pin_b = false,
            Step::ImportCert => s.cert = true,
            Step::DeleteCert => s.cert = false,
            Step::Seal => s.seal = k + 1,
        }
    }
    s
}

fn seal_image(v: u64) -> Vec<u8> {
    let mut img = v.to_be_bytes().to_vec();
    img.extend((0..SEAL_LEN as u64).map(|i| (i.wrapping_mul(31) ^ v) as u8));
    img
}

fn pin(s: &str) -> Pin {
    Pin::new(s)
}

fn current_pin(s: State) -> &'static str {
    if s.pin_b { PIN_B } else { PIN_A }
}

/// Not a test on its own: the child's body, run only when the parent re-executes this
/// binary with `KB_CRASH_CHILD=1`. Loops until killed.
#[test]
fn crash_child() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("1") {
        return;
    }
    let key = PathBuf::from(std::env::var("KB_CRASH_KEY").unwrap());
    let progress = PathBuf::from(std::env::var("KB_CRASH_PROGRESS").unwrap());
    let cert = std::fs::read(std::env::var("KB_CRASH_CERT").unwrap()).unwrap();
    let mut k: u64 = std::env::var("KB_CRASH_START").unwrap().parse().unwrap();
    let mut log = std::fs::OpenOptions::new().append(true).create(true).open(progress).unwrap();
    let mut t = FileToken::open(&key).unwrap();
    loop {
        let state = state_after(k);
        log.write_all(format!("b {k}\n").as_bytes()).unwrap();
        match step_kind(k) {
            Step::PinAtoB => t.change_pin(PinKind::User, &pin(PIN_A), &pin(PIN_B)).unwrap(),
            Step::PinBtoA => t.change_pin(PinKind::User, &pin(PIN_B), &pin(PIN_A)).unwrap(),
            step => {
                let mut s = t.login(&pin(current_pin(state))).unwrap();
                match step {
                    Step::ImportCert => s.import_certificate("c", KeyUsage::Sign, &cert).unwrap(),
                    Step::DeleteCert => s.delete_certificate("c", KeyUsage::Sign).unwrap(),
                    _ => s.write_seal("s", "seal", "image/png", &seal_image(k + 1)).unwrap(),
                }
            }
        }
        log.write_all(format!("e {k}\n").as_bytes()).unwrap();
        k += 1;
    }
}

/// The state the file is in, found the way a user would: which PIN opens it, whether
/// the certificate is installed, which seal image is stored.
fn observe(path: &Path, cert: &[u8]) -> State {
    let mut t = FileToken::open(path).unwrap_or_else(|e| panic!("the key file does not open after a kill: {e}"));
    let seal = t.read_seal("s").unwrap();
    let v = u64::from_be_bytes(seal[..8].try_into().unwrap());
    assert_eq!(seal, seal_image(v), "seal image is not one that was written");
    let cs = t.containers().unwrap();
    assert_eq!(cs.len(), 1);
    let slot = cs[0].sign.clone().unwrap();
    let has_cert = match slot.certificate {
        None => false,
        Some(c) if c == cert => true,
        Some(_) => panic!("a certificate that was never imported"),
    };
    let first = t.login(&pin(PIN_A)).map(drop);
    let pin_b = match first {
        Ok(()) => false,
        Err(TokenError::WrongPin { .. }) => {
            drop(t.login(&pin(PIN_B)).unwrap_or_else(|e| panic!("neither PIN opens the key: {e}")));
            true
        }
        Err(e) => panic!("login: {e}"),
    };
    // Both logins above leave the counter full again.
    assert_eq!(t.pin_info(PinKind::User).unwrap().retries_left, 6);
    State { pin_b, cert: has_cert, seal: v }
}

fn random_below(n: u64) -> u64 {
    u64::from_be_bytes(kb_crypto::rng::random_array::<8>().unwrap()) % n
}

fn temp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp-")).count()
}

#[test]
fn kill_during_changes_never_corrupts_or_loses() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("crash.kbkey");
    let cert_path = dir.path().join("cert.der");

    // Setup: a key with a container, an SM2 signing key, a certificate for it (kept
    // aside for the child to import), and the initial seal.
    let mut t = FileToken::create(&key, "crash", &pin(PIN_A), &pin(SO), CreateOptions::weak_for_tests()).unwrap();
    let public = {
        let mut s = t.login(&pin(PIN_A)).unwrap();
        s.create_container("c").unwrap();
        let pk = s.generate_key_pair("c", KeyUsage::Sign, Algorithm::Sm2).unwrap();
        s.write_seal("s", "seal", "image/png", &seal_image(0)).unwrap();
        pk
    };
    let ca = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
    let ca_cert = issue(
        &CertificateParams::new("CN=Crash CA", CertKind::Root { path_len: None }, UnixTime::now(), 30),
        ca.public_key(),
        None,
        &ca,
    )
    .unwrap();
    let cert =
        issue(&CertificateParams::leaf("CN=crash", KeyUsage::Sign, UnixTime::now(), 30), &public, Some(&ca_cert), &ca).unwrap();
    std::fs::write(&cert_path, cert.der()).unwrap();
    assert_eq!(observe(&key, cert.der()), state_after(0));

    // Time a few steps in this process, so the kill delays span several steps whatever
    // the build profile and machine speed.
    let step_time = {
        let t0 = Instant::now();
        t.change_pin(PinKind::User, &pin(PIN_A), &pin(PIN_B)).unwrap();
        t.change_pin(PinKind::User, &pin(PIN_B), &pin(PIN_A)).unwrap();
        let mut s = t.login(&pin(PIN_A)).unwrap();
        s.write_seal("s", "seal", "image/png", &seal_image(0)).unwrap();
        s.import_certificate("c", KeyUsage::Sign, cert.der()).unwrap();
        s.delete_certificate("c", KeyUsage::Sign).unwrap();
        t0.elapsed() / 5
    };
    let max_delay_us = (step_time.as_micros() as u64 * 4).max(2_000);
    assert_eq!(observe(&key, cert.der()), state_after(0));

    let exe = std::env::current_exe().unwrap();
    let mut next_step = 0u64;
    let (mut kills, mut before, mut after, mut between, mut temps_seen) = (0u32, 0u32, 0u32, 0u32, 0u32);
    let mut kinds_in_flight = std::collections::BTreeMap::<String, u32>::new();
    // At least 30 kills however slow the machine (the time limit only catches a hang); up to
    // 60 while the first 15 s last.
    let deadline = started + Duration::from_secs(15);
    while kills < 60 && (kills < 30 || Instant::now() < deadline) {
        assert!(started.elapsed() < Duration::from_secs(600), "hung: {kills} kills in 10 minutes");
        let progress = dir.path().join(format!("progress-{kills}"));
        let err_log = std::fs::File::create(dir.path().join(format!("child-{kills}.err"))).unwrap();
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env("KB_CRASH_KEY", &key)
            .env("KB_CRASH_PROGRESS", &progress)
            .env("KB_CRASH_CERT", &cert_path)
            .env("KB_CRASH_START", next_step.to_string())
            .stdout(Stdio::null())
            .stderr(err_log)
            .spawn()
            .unwrap();
        // Wait until it is working, then let it run for a random time up to ~4 steps.
        let wait_start = Instant::now();
        while std::fs::metadata(&progress).map(|m| m.len()).unwrap_or(0) == 0 {
            assert!(wait_start.elapsed() < Duration::from_secs(20), "child never started");
            if let Some(status) = child.try_wait().unwrap() {
                let err = std::fs::read_to_string(dir.path().join(format!("child-{kills}.err"))).unwrap_or_default();
                panic!("child exited early ({status}): {err}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(random_below(max_delay_us)));
        if let Some(status) = child.try_wait().unwrap() {
            let err = std::fs::read_to_string(dir.path().join(format!("child-{kills}.err"))).unwrap_or_default();
            panic!("child died by itself ({status}): {err}");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        if temp_files(dir.path()) > 0 {
            temps_seen += 1; // killed between writing the temp file and renaming it
        }

        // Where was it? Only complete lines count.
        let log = std::fs::read_to_string(&progress).unwrap();
        let complete = &log[..log.rfind('\n').map_or(0, |i| i + 1)];
        let last = complete.lines().last().unwrap_or_else(|| panic!("no complete progress line: {log:?}"));
        let (tag, k) = last.split_once(' ').unwrap();
        let k: u64 = k.parse().unwrap();
        let found = observe(&key, cert.der());
        next_step = match tag {
            // Step k finished: exactly its after-state.
            "e" => {
                assert_eq!(found, state_after(k + 1), "after finished step {k} ({:?})", step_kind(k));
                between += 1;
                k + 1
            }
            // Step k in flight: before or after it, nothing else.
            "b" => {
                *kinds_in_flight.entry(format!("{:?}", step_kind(k))).or_default() += 1;
                if found == state_after(k) {
                    before += 1;
                    k
                } else if found == state_after(k + 1) {
                    after += 1;
                    k + 1
                } else {
                    panic!(
                        "killed during step {k} ({:?}): found {found:?}, expected {:?} or {:?}",
                        step_kind(k),
                        state_after(k),
                        state_after(k + 1)
                    );
                }
            }
            other => panic!("bad progress tag {other}"),
        };
    }
    assert!(next_step > 6, "the children made almost no progress ({next_step} steps)");

    // The private key survived everything; a write cleans up any stale temp file.
    let state = state_after(next_step);
    let mut t = FileToken::open(&key).unwrap();
    {
        let mut s = t.login(&pin(current_pin(state))).unwrap();
        let scheme = SignatureScheme::sm2_default();
        let pk: PublicKey = cert.public_key().unwrap();
        let digest = pk.message_digest(&scheme, b"after the storm").unwrap();
        let sig = s.sign_digest("c", KeyUsage::Sign, &scheme, &digest).unwrap();
        pk.verify(&scheme, b"after the storm", &sig).unwrap();
        s.write_seal("s", "seal", "image/png", b"final").unwrap();
    }
    assert_eq!(temp_files(dir.path()), 0);
    eprintln!(
        "crash test: {kills} SIGKILLs in {:.1?}, {next_step} steps done; in flight at the kill: {kinds_in_flight:?}; \
         found before-state {before}×, after-state {after}×, between steps {between}×; \
         a half-written temp file was left {temps_seen}× (and removed by the next writer); one step ≈ {step_time:?}",
        started.elapsed()
    );
}

// ---- damaged files ------------------------------------------------------------------------

fn sample_key(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("good.kbkey");
    let mut t = FileToken::create(&path, "good", &pin(PIN_A), &pin(SO), CreateOptions::weak_for_tests()).unwrap();
    {
        let mut s = t.login(&pin(PIN_A)).unwrap();
        s.create_container("c").unwrap();
        s.generate_key_pair("c", KeyUsage::Sign, Algorithm::Sm2).unwrap();
        s.write_seal("s", "seal", "image/png", b"small image").unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

fn assert_corrupt<T>(r: Result<T, TokenError>, what: &str) {
    match r {
        Err(e @ TokenError::Corrupt(_)) => assert_eq!(e.code(), ErrorCode::TokenCorrupt),
        Err(e) => panic!("{what}: expected Corrupt, got {e:?}"),
        Ok(_) => panic!("{what}: expected Corrupt, got Ok"),
    }
}

#[test]
fn every_truncation_and_flipped_byte_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = sample_key(dir.path());
    let bad = dir.path().join("bad.kbkey");
    for len in 0..good.len() {
        std::fs::write(&bad, &good[..len]).unwrap();
        assert_corrupt(FileToken::open(&bad), &format!("truncated to {len}"));
    }
    let mut longer = good.clone();
    longer.push(0);
    std::fs::write(&bad, &longer).unwrap();
    assert_corrupt(FileToken::open(&bad), "one byte appended");
    for i in 0..good.len() {
        for mask in [0x01u8, 0x80] {
            let mut b = good.clone();
            b[i] ^= mask;
            std::fs::write(&bad, &b).unwrap();
            assert_corrupt(FileToken::open(&bad), &format!("byte {i} ^ {mask:#04x}"));
        }
    }
    // Sanity: the unchanged bytes open.
    std::fs::write(&bad, &good).unwrap();
    assert!(FileToken::open(&bad).is_ok());
}

#[test]
fn damage_under_an_open_token_is_reported_and_never_written_over() {
    let dir = tempfile::tempdir().unwrap();
    let (path, good) = sample_key(dir.path());
    let mut t = FileToken::open(&path).unwrap();
    let mid = good.len() / 2;
    let mut flipped = good.clone();
    flipped[mid] ^= 0x20;
    let damaged = [good[..good.len() - 10].to_vec(), good[..20].to_vec(), flipped, Vec::new()];
    for bytes in damaged {
        std::fs::write(&path, &bytes).unwrap();
        assert_corrupt(t.pin_info(PinKind::User), "pin_info");
        assert_corrupt(t.containers(), "containers");
        assert_corrupt(t.seals(), "seals");
        assert_corrupt(t.read_seal("s"), "read_seal");
        assert_corrupt(t.public_key("c", KeyUsage::Sign), "public_key");
        assert_corrupt(t.login(&pin(PIN_A)), "login, right PIN");
        assert_corrupt(t.login(&pin("wrong-pin")), "login, wrong PIN (must not count)");
        assert_corrupt(t.change_pin(PinKind::User, &pin(PIN_A), &pin("new-pin-x")), "change_pin");
        assert_corrupt(t.unblock_pin(&pin(SO), &pin("new-pin-x")), "unblock_pin");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "a damaged file was written to");
    }
    // A session opened before the damage cannot write over it either.
    std::fs::write(&path, &good).unwrap();
    let mut s = t.login(&pin(PIN_A)).unwrap();
    std::fs::write(&path, &good[..good.len() - 1]).unwrap();
    assert_corrupt(s.write_seal("s2", "x", "image/png", b"x"), "write_seal");
    assert_corrupt(s.create_container("d"), "create_container");
    assert_corrupt(s.sign_digest("c", KeyUsage::Sign, &SignatureScheme::sm2_default(), &[0u8; 32]), "sign");
    assert_eq!(std::fs::read(&path).unwrap(), good[..good.len() - 1]);
    // Restoring the bytes restores the key, counters untouched by all the above.
    std::fs::write(&path, &good).unwrap();
    assert_eq!(s.sign_digest("c", KeyUsage::Sign, &SignatureScheme::sm2_default(), &[0u8; 32]).map(|_| ()), Ok(()));
    drop(s);
    assert_eq!(t.pin_info(PinKind::User).unwrap().retries_left, 6);
}
