//! KeyBridge's SKF module, built as a real shared library by cargo, loaded through the
//! `kb-skf` loader across `dlopen` (and by an independent C program), over file keys made
//! by the test. The module finds its keys through `KEYBRIDGE_SKF_KEY_DIR`; setting it
//! in-process would need `unsafe`, so each test runs in a child process of its own (see
//! [`enter`]) with a private key directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kb_crypto::rsa::RsaPadding;
use kb_crypto::sm2::CiphertextLayout;
use kb_crypto::{PublicKey, SignatureScheme};
use kb_filekey::{CreateOptions, FileToken};
use kb_pki::Certificate;
use kb_skf::{REQUIRED_FUNCTIONS, SkfModule, SkfToken, SkfTransport};
use kb_token::{Token, TokenError, Transport, TransportEvent};
use kb_types::{Algorithm, DeviceId, ErrorCode, HasErrorCode, KeyUsage, Pin, PinKind, TransportKind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const USER: &str = "11112222";
const SO: &str = "33334444";
const RIG_ENV: &str = "KB_SKF_TEST_RIG";

/// `libkb_skf_module.so` as cargo built it for this test run: the test executable lives
/// in `<target>/<profile>/deps/`, and cargo writes the package's cdylib into that same
/// `deps/` directory (and copies it one level up) — with or without `CARGO_TARGET_DIR`.
fn module_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let name = format!("{}kb_skf_module{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    [deps.join(&name), deps.parent().unwrap().join(&name)]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found next to {}", exe.display()))
}

/// The key directory, inside the child process that runs the test body; `None` in the
/// parent after the child passed. The child finds its keys through
/// `KEYBRIDGE_SKF_KEY_DIR`.
fn enter(test_name: &str) -> Option<PathBuf> {
    enter_with(test_name, |dir| vec![("KEYBRIDGE_SKF_KEY_DIR", dir.as_os_str().to_owned())])
}

/// [`enter`] with the child's environment chosen by `env(key directory)`; everything
/// the child needs must be in it (`KEYBRIDGE_SKF_KEY_DIR` and `KEYBRIDGE_HOME` are
/// removed first).
fn enter_with(test_name: &str, env: impl FnOnce(&Path) -> Vec<(&'static str, std::ffi::OsString)>) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(RIG_ENV) {
        return Some(PathBuf::from(dir));
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("keys");
    std::fs::create_dir(&dir).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env_remove("KEYBRIDGE_SKF_KEY_DIR")
        .env_remove("KEYBRIDGE_HOME")
        .envs(env(&dir))
        .env(RIG_ENV, &dir)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "SKF test {test_name} failed in its child process:\n{text}");
    assert!(text.contains("1 passed"), "SKF test {test_name} did not run in the child:\n{text}");
    None
}

struct Ca(kb_pki::issue::TestCa);

impl Ca {
    fn new() -> Ca {
        Ca(kb_pki::issue::TestCa::new(Algorithm::Sm2, "C=CN,O=KeyBridge Test,CN=SKF Test CA").unwrap())
    }

    fn issue(&self, cn: &str, key: &PublicKey, usage: KeyUsage) -> Certificate {
        self.0.leaf(&format!("C=CN,O=KeyBridge Test,CN={cn}"), key, usage).unwrap()
    }
}

/// A file key `<dir>/<name>.kbkey` with container `main` holding an SM2 signing and an
/// SM2 encryption pair, each with a certificate from `ca`.
struct Key {
    serial: String,
    sign: PublicKey,
    encrypt: PublicKey,
    sign_cert: Vec<u8>,
    encrypt_cert: Vec<u8>,
}

fn make_key(dir: &Path, name: &str, ca: &Ca) -> Key {
    let serial = format!("KBF-SKF-{name}");
    let opts = CreateOptions { serial: Some(serial.clone()), ..CreateOptions::weak_for_tests() };
    let mut t =
        FileToken::create(dir.join(format!("{name}.kbkey")), &format!("测试 {name}"), &Pin::new(USER), &Pin::new(SO), opts)
            .unwrap();
    let mut s = t.login(&Pin::new(USER)).unwrap();
    s.create_container("main").unwrap();
    let sign = s.generate_key_pair("main", KeyUsage::Sign, Algorithm::Sm2).unwrap();
    let encrypt = s.generate_key_pair("main", KeyUsage::Encrypt, Algorithm::Sm2).unwrap();
    let sign_cert = ca.issue(&format!("{name} sign"), &sign, KeyUsage::Sign).der().to_vec();
    let encrypt_cert = ca.issue(&format!("{name} enc"), &encrypt, KeyUsage::Encrypt).der().to_vec();
    s.import_certificate("main", KeyUsage::Sign, &sign_cert).unwrap();
    s.import_certificate("main", KeyUsage::Encrypt, &encrypt_cert).unwrap();
    Key { serial, sign, encrypt, sign_cert, encrypt_cert }
}

fn skf_id(serial: &str) -> DeviceId {
    DeviceId::new(TransportKind::Skf, serial)
}

fn open(serial: &str) -> SkfToken {
    SkfToken::open(SkfModule::load(&module_path()).unwrap(), &skf_id(serial)).unwrap()
}

fn code<T>(r: Result<T, TokenError>) -> ErrorCode {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.code(),
    }
}

/// The next event within `timeout`; a transport error fails the test.
fn next_event(rx: &Receiver<TransportEvent>, timeout: Duration) -> Option<TransportEvent> {
    match rx.recv_timeout(timeout) {
        Ok(TransportEvent::Error(e)) => panic!("transport error: {e}"),
        Ok(e) => Some(e),
        Err(_) => None,
    }
}

#[test]
fn lists_signs_and_decrypts_through_dlopen() {
    let Some(dir) = enter("lists_signs_and_decrypts_through_dlopen") else { return };
    let key = make_key(&dir, "alpha", &Ca::new());

    let transport = SkfTransport::new(module_path());
    let rx = transport.watch().unwrap();
    let added = match next_event(&rx, Duration::from_secs(5)) {
        Some(TransportEvent::Added(info)) => info,
        other => panic!("{other:?}"),
    };
    assert_eq!(next_event(&rx, Duration::from_secs(5)), Some(TransportEvent::EnumerationComplete));
    assert_eq!(added.id, skf_id(&key.serial));
    assert_eq!(
        (added.label.as_str(), added.serial.as_str(), added.manufacturer.as_str()),
        ("测试 alpha", key.serial.as_str(), "KeyBridge")
    );
    assert_eq!(added.transport, TransportKind::Skf);

    let mut t = transport.open(&added.id).unwrap();
    let containers = t.containers().unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    let c = &containers[0];
    assert_eq!(c.name, "main");
    assert_eq!(c.sign.as_ref().unwrap().certificate.as_deref(), Some(&key.sign_cert[..]));
    assert_eq!(c.encrypt.as_ref().unwrap().certificate.as_deref(), Some(&key.encrypt_cert[..]));
    assert_eq!(t.public_key("main", KeyUsage::Sign).unwrap(), key.sign);
    assert_eq!(t.public_key("main", KeyUsage::Encrypt).unwrap(), key.encrypt);
    assert_eq!(code(t.public_key("nope", KeyUsage::Sign)), ErrorCode::NotFound);
    let pin = t.pin_info(PinKind::User).unwrap();
    assert_eq!((pin.retries_left, pin.max_retries, pin.locked, pin.is_default), (6, 6, false, true));

    let mut s = t.login(&Pin::new(USER)).unwrap();
    // Sign: e = SM3(ZA ‖ M) on our side, r and s from SKF_ECCSignData, DER out.
    let scheme = SignatureScheme::sm2_default();
    let msg = "投标文件 bid".as_bytes();
    let e = key.sign.message_digest(&scheme, msg).unwrap();
    let sig = s.sign_digest("main", KeyUsage::Sign, &scheme, &e).unwrap();
    key.sign.verify(&scheme, msg, &sig).unwrap();
    assert!(key.sign.verify(&scheme, b"other", &sig).is_err());
    assert_eq!(code(s.sign_digest("main", KeyUsage::Sign, &scheme, &e[..31])), ErrorCode::InvalidParameter);

    // Decrypt with the encryption key through SKF_ECCDecrypt, any ciphertext layout.
    let content_key = *b"0123456789abcdef";
    let der = key.encrypt.encrypt(&content_key, RsaPadding::Pkcs1v15).unwrap();
    assert_eq!(&s.decrypt("main", KeyUsage::Encrypt, &der, RsaPadding::Pkcs1v15).unwrap()[..], &content_key);
    let PublicKey::Sm2(enc) = &key.encrypt else { panic!() };
    let raw = enc.encrypt(&content_key).unwrap().encode(CiphertextLayout::C1C2C3, false);
    assert_eq!(&s.decrypt("main", KeyUsage::Encrypt, &raw, RsaPadding::Pkcs1v15).unwrap()[..], &content_key);
    let mut tampered = der.clone();
    let n = tampered.len();
    tampered[n - 1] ^= 1;
    assert_eq!(code(s.decrypt("main", KeyUsage::Encrypt, &tampered, RsaPadding::Pkcs1v15)), ErrorCode::DecryptionFailed);
    // Encrypted to the signing key: the encryption key cannot open it.
    let wrong = key.sign.encrypt(&content_key, RsaPadding::Pkcs1v15).unwrap();
    assert_eq!(code(s.decrypt("main", KeyUsage::Encrypt, &wrong, RsaPadding::Pkcs1v15)), ErrorCode::DecryptionFailed);
    drop(s);

    // Pulled out: the open medium fails cleanly and the transport reports it.
    std::fs::remove_file(dir.join("alpha.kbkey")).unwrap();
    assert_eq!(code(t.containers()), ErrorCode::DeviceRemoved);
    assert_eq!(next_event(&rx, Duration::from_secs(3)), Some(TransportEvent::Removed(added.id.clone())));
}

#[test]
fn pins_retries_lock_and_unblock() {
    let Some(dir) = enter("pins_retries_lock_and_unblock") else { return };
    let key = make_key(&dir, "beta", &Ca::new());
    let mut t = open(&key.serial);

    assert_eq!(t.login(&Pin::new("000000")).err(), Some(TokenError::WrongPin { retries_left: 5 }));
    assert_eq!(code(t.login(&Pin::new("000000"))), ErrorCode::WrongPin);
    assert_eq!(t.pin_info(PinKind::User).unwrap().retries_left, 4);
    // A right PIN resets the counter (checked independently on the file key).
    drop(t.login(&Pin::new(USER)).unwrap());
    let mut file = FileToken::open(dir.join("beta.kbkey")).unwrap();
    assert_eq!(file.pin_info(PinKind::User).unwrap().retries_left, 6);

    for left in (0..6).rev() {
        let e = t.login(&Pin::new("000000")).err().unwrap();
        if left == 0 {
            assert_eq!(e, TokenError::PinLocked);
        } else {
            assert_eq!(e, TokenError::WrongPin { retries_left: left });
        }
    }
    assert_eq!(code(t.login(&Pin::new(USER))), ErrorCode::PinLocked);
    assert!(t.pin_info(PinKind::User).unwrap().locked);

    // Unblock: a wrong SO PIN costs an SO try and says how many are left.
    assert_eq!(t.unblock_pin(&Pin::new("99999999"), &Pin::new("55556666")).err(), Some(TokenError::WrongPin { retries_left: 9 }));
    assert_eq!(t.pin_info(PinKind::So).unwrap().retries_left, 9);
    t.unblock_pin(&Pin::new(SO), &Pin::new("55556666")).unwrap();
    drop(t.login(&Pin::new("55556666")).unwrap());

    // Change: the old PIN no longer works, the new one does; the file key agrees.
    t.change_pin(PinKind::User, &Pin::new("55556666"), &Pin::new("77778888")).unwrap();
    assert_eq!(code(t.login(&Pin::new("55556666"))), ErrorCode::WrongPin);
    drop(file.login(&Pin::new("77778888")).unwrap());
    assert_eq!(code(t.change_pin(PinKind::User, &Pin::new("77778888"), &Pin::new("1"))), ErrorCode::PinPolicy);
}

#[test]
fn keygen_and_certificate_import() {
    let Some(dir) = enter("keygen_and_certificate_import") else { return };
    let ca = Ca::new();
    let key = make_key(&dir, "gamma", &ca);
    let mut t = open(&key.serial);
    let mut s = t.login(&Pin::new(USER)).unwrap();
    // A new container with an on-device signing pair, as for 变更/补发.
    let public = s.generate_key_pair("renewed", KeyUsage::Sign, Algorithm::Sm2).unwrap();
    assert_eq!(code(s.generate_key_pair("renewed", KeyUsage::Encrypt, Algorithm::Sm2)), ErrorCode::NotSupported);
    let cert = ca.issue("gamma renewed", &public, KeyUsage::Sign);
    let other = ca.issue("someone else", &key.encrypt, KeyUsage::Sign);
    assert_eq!(code(s.import_certificate("renewed", KeyUsage::Sign, other.der())), ErrorCode::CertificateKeyMismatch);
    s.import_certificate("renewed", KeyUsage::Sign, cert.der()).unwrap();
    let e = public.message_digest(&SignatureScheme::sm2_default(), b"m").unwrap();
    let sig = s.sign_digest("renewed", KeyUsage::Sign, &SignatureScheme::sm2_default(), &e).unwrap();
    public.verify(&SignatureScheme::sm2_default(), b"m", &sig).unwrap();
    drop(s);
    // Read back independently from the file key itself.
    let mut file = FileToken::open(dir.join("gamma.kbkey")).unwrap();
    let c = file.containers().unwrap().into_iter().find(|c| c.name == "renewed").unwrap();
    assert_eq!(c.sign.unwrap().certificate.as_deref(), Some(cert.der()));
    assert_eq!(file.public_key("renewed", KeyUsage::Sign).unwrap(), public);
    // Without a login the module refuses private-key work.
    assert_eq!(t.containers().unwrap().len(), 2);
}

#[test]
fn device_events_arrive_before_the_poll() {
    let Some(dir) = enter("device_events_arrive_before_the_poll") else { return };
    let ca = Ca::new();
    make_key(&dir, "one", &ca);
    let module = SkfModule::load(&module_path()).unwrap();
    assert!(module.has_device_events() && module.can_decrypt());
    // A 10 s poll: anything seen sooner came through SKF_WaitForDevEvent.
    let transport = SkfTransport::new(module_path()).with_poll_interval(Duration::from_secs(10));
    let rx = transport.watch().unwrap();
    assert!(matches!(next_event(&rx, Duration::from_secs(5)), Some(TransportEvent::Added(_))));
    assert_eq!(next_event(&rx, Duration::from_secs(5)), Some(TransportEvent::EnumerationComplete));
    std::thread::sleep(Duration::from_millis(300)); // let the event thread take its first look
    let start = Instant::now();
    let two = make_key(&dir, "two", &ca);
    match next_event(&rx, Duration::from_secs(3)) {
        Some(TransportEvent::Added(info)) => assert_eq!(info.id, skf_id(&two.serial)),
        other => panic!("{other:?}"),
    }
    let added = start.elapsed();
    std::fs::remove_file(dir.join("two.kbkey")).unwrap();
    assert_eq!(next_event(&rx, Duration::from_secs(3)), Some(TransportEvent::Removed(skf_id(&two.serial))));
    eprintln!("SKF insert → Added in {added:?}");
    assert!(added < Duration::from_secs(2), "{added:?}");
}

#[test]
fn bad_modules_are_module_load_failed() {
    let missing = SkfModule::load(Path::new("/nonexistent/libskf.so")).unwrap_err();
    assert_eq!(missing.code(), ErrorCode::ModuleLoadFailed);
    assert_eq!(SkfModule::load(Path::new("libskf.so")).unwrap_err().code(), ErrorCode::ModuleLoadFailed);
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.so");
    std::fs::write(&junk, b"not a library").unwrap();
    let e = SkfModule::load(&junk).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ModuleLoadFailed);
    assert!(e.to_string().contains("cannot load the library"), "{e}");
    // Through a transport: one error event, then enumeration completes (never a crash).
    let rx = SkfTransport::new(&junk).watch().unwrap();
    match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
        TransportEvent::Error(m) => assert!(m.starts_with("module_load_failed"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), TransportEvent::EnumerationComplete);
}

/// A real shared library built by gcc exporting every required SKF function but one:
/// chosen over a cargo feature of kb-skf-module (features unify across a workspace build
/// and would strip the symbol from the real module too) and over a second crate (a
/// fixture generated from `REQUIRED_FUNCTIONS` cannot fall behind the list).
#[test]
fn a_module_missing_any_function_names_it() {
    if Command::new("gcc").arg("--version").output().is_err() {
        kb_interop::unavailable::<()>("gcc", "not on PATH (Debian package gcc)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for omitted in REQUIRED_FUNCTIONS {
        let src: String = REQUIRED_FUNCTIONS
            .iter()
            .filter(|f| *f != omitted)
            .map(|f| format!("unsigned int {f}(void) {{ return 0x0A000003u; }}\n"))
            .collect();
        let c = dir.path().join(format!("{omitted}.c"));
        let so = dir.path().join(format!("lib-without-{omitted}.so"));
        std::fs::write(&c, src).unwrap();
        let out = Command::new("gcc").args(["-shared", "-fPIC", "-o"]).arg(&so).arg(&c).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let e = SkfModule::load(&so).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ModuleLoadFailed, "{omitted}");
        assert!(e.to_string().contains(&format!("{omitted} is missing")), "{omitted}: {e}");
    }
}

/// `tests/c/<name>.c` built with gcc into `dir`; `None` (loudly) without gcc.
fn build_c_program(dir: &Path, name: &str) -> Option<PathBuf> {
    if Command::new("gcc").arg("--version").output().is_err() {
        return kb_interop::unavailable("gcc", "not on PATH (Debian package gcc)");
    }
    let exe = dir.join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let out = Command::new("gcc").args(["-Wall", "-Werror", "-O1", "-o"]).arg(&exe).arg(&src).arg("-ldl").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(exe)
}

/// The `key=value` lines a C program printed.
fn field(text: &str, k: &str) -> String {
    text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or_else(|| panic!("no {k} in:\n{text}")).to_string()
}

/// An independent SKF consumer written in C (its own declarations of the standard's types
/// and structures) signs with a KeyBridge file key through the module; kb-crypto checks
/// the signature, the key and the certificate it printed.
#[test]
fn a_c_program_signs_through_the_module() {
    let Some(dir) = enter("a_c_program_signs_through_the_module") else { return };
    let Some(exe) = build_c_program(&dir, "skf_consumer") else { return };
    let key = make_key(&dir, "delta", &Ca::new());

    let scheme = SignatureScheme::sm2_default();
    let e = key.sign.message_digest(&scheme, b"signed by C").unwrap();
    let out = Command::new(&exe).arg(module_path()).arg(USER).arg(hex::encode(&e)).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let field = |k: &str| field(&text, k);
    assert_eq!(field("device"), "delta");
    assert_eq!(field("devinfo_size"), "294");
    assert_eq!(field("serial"), key.serial);
    assert_eq!(field("manufacturer"), "KeyBridge");
    assert_eq!(field("asym"), "0x00020500");
    assert_eq!(field("wrong_pin_rv"), "0x0A000024");
    assert_eq!(field("wrong_pin_retries"), "5");
    assert_eq!(field("container"), "main");
    assert_eq!(field("container_type"), "2");
    assert_eq!(field("pub_bits"), "256");
    let PublicKey::Sm2(k) = &key.sign else { panic!() };
    assert_eq!(format!("{}{}", field("pub_x"), field("pub_y")), hex::encode(k.to_xy()));
    assert_eq!(hex::decode(field("cert")).unwrap(), key.sign_cert);
    assert_eq!(field("sig_r_pad"), "00".repeat(32));
    let raw = hex::decode(format!("{}{}", field("sig_r"), field("sig_s"))).unwrap();
    key.sign.verify(&scheme, b"signed by C", &raw).unwrap();
    assert_eq!(field("done"), "1");
}

/// Without `KEYBRIDGE_SKF_KEY_DIR` the module finds the keys where the KeyBridge user's
/// settings put them (`file_key_dir` in `$KEYBRIDGE_HOME/config/settings.toml`), read by
/// the module itself (it does not link the device service).
#[test]
fn keys_found_through_the_users_settings() {
    let Some(dir) = enter_with("keys_found_through_the_users_settings", |keys| {
        let home = keys.parent().unwrap().join("home");
        std::fs::create_dir_all(home.join("config")).unwrap();
        let settings = format!("pin_cache_minutes = 5\nfile_key_dir = \"{}\"\n", keys.display());
        std::fs::write(home.join("config/settings.toml"), settings).unwrap();
        vec![("KEYBRIDGE_HOME", home.into_os_string())]
    }) else {
        return;
    };
    assert!(std::env::var_os("KEYBRIDGE_SKF_KEY_DIR").is_none());
    let key = make_key(&dir, "zeta", &Ca::new());
    let module = SkfModule::load(&module_path()).unwrap();
    let mut t = SkfToken::open(module, &skf_id(&key.serial)).unwrap();
    assert_eq!(t.public_key("main", KeyUsage::Sign).unwrap(), key.sign);
}

/// What open-source SKF tools and CA signing controls do (`tests/c/skf_ca_control.c`, an
/// independent C program): device state, lock, device authentication through the
/// module's own SM4 (`SKF_GenRandom`, `SKF_SetSymmKey` with `DevAuthAlgId`,
/// `SKF_EncryptInit`/`SKF_Encrypt`, `SKF_CloseHandle`, `SKF_DevAuth`) with a wrong and the
/// right key, a change of the key (kept across processes), then PIN, `SKF_DigestInit`
/// with ZA, `SKF_ECCSignData` — the signature verified here by kb-crypto over the message.
#[test]
fn a_ca_control_authenticates_the_device_and_signs() {
    let Some(dir) = enter("a_ca_control_authenticates_the_device_and_signs") else { return };
    let Some(exe) = build_c_program(&dir, "skf_ca_control") else { return };
    let key = make_key(&dir, "eta", &Ca::new());
    let default = std::str::from_utf8(&kb_skf_module::dev_auth::DEFAULT_DEV_AUTH_KEY).unwrap();
    assert_eq!(default, "1234567812345678");
    let (wrong, new) = ("8765432187654321", "KeyBridge-Auth-1");
    let run = |args: &[&str]| {
        let out = Command::new(&exe).arg(module_path()).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    let msg = "招标文件 signed by a CA control";
    let text = run(&[USER, msg, default, wrong, new]);
    let field = |k: &str| field(&text, k);
    assert_eq!(field("device"), "eta");
    assert_eq!((field("dev_state"), field("absent_state")), ("1".into(), "0".into()));
    assert_eq!(field("dev_auth_alg"), "0x00000401");
    assert_eq!(field("sym_cap"), "0x00000403");
    assert_eq!(field("lock_contended_rv"), "0x0A00000F"); // SAR_TIMEOUTERR
    assert_eq!(field("change_unauthenticated_rv"), "0x0A00002D"); // SAR_USER_NOT_LOGGED_IN
    assert_eq!(field("wrong_auth_rv"), "0x0A000001"); // SAR_FAIL
    assert_eq!(field("auth_without_random_rv"), "0x0A000001");
    assert_eq!(field("dev_auth"), "ok");
    assert_eq!(field("old_key_after_change_rv"), "0x0A000001");
    assert_eq!(field("new_key"), "ok");
    let PublicKey::Sm2(k) = &key.sign else { panic!() };
    assert_eq!(format!("{}{}", field("pub_x"), field("pub_y")), hex::encode(k.to_xy()));
    // The device's SM3 with ZA is the standard's e, and the signature verifies over the
    // message on its own.
    let scheme = SignatureScheme::sm2_default();
    assert_eq!(field("e"), hex::encode(key.sign.message_digest(&scheme, msg.as_bytes()).unwrap()));
    let raw = hex::decode(format!("{}{}", field("sig_r"), field("sig_s"))).unwrap();
    key.sign.verify(&scheme, msg.as_bytes(), &raw).unwrap();
    assert!(key.sign.verify(&scheme, b"another message", &raw).is_err());
    // SKF_ECCVerify accepted it (the program checked) and refuses another digest.
    assert_eq!(field("verify_other_digest_rv"), "0x0A000001");
    assert_eq!(field("done"), "1");

    // The changed key is kept beside the key file, for this key (serial) only.
    let sidecar = kb_skf_module::dev_auth::sidecar(&dir.join("eta.kbkey"));
    let stored = std::fs::read_to_string(&sidecar).unwrap();
    assert_eq!(stored, format!("KBSKF-DEVAUTH/1 {} {}\n", key.serial, hex::encode(new)));
    // A new process: the new key authenticates, the default does not.
    let text = run(&[USER, msg, new, default]);
    assert_eq!((crate::field(&text, "dev_auth"), crate::field(&text, "wrong_auth_rv")), ("ok".into(), "0x0A000001".into()));
    // The file key itself is unchanged and still opens with its PIN.
    drop(FileToken::open(dir.join("eta.kbkey")).unwrap().login(&Pin::new(USER)).unwrap());
}

/// Hex text (`ab:cd:…` lines as `openssl pkey -text` prints them) after `label:` up to
/// the next label, as bytes.
fn openssl_text_field(text: &str, label: &str) -> Vec<u8> {
    let start = text.find(&format!("{label}:")).unwrap_or_else(|| panic!("no {label} in {text}")) + label.len() + 1;
    let hex: String = text[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .flat_map(|l| l.trim().split(':').filter(|h| !h.is_empty()).map(String::from).collect::<Vec<_>>())
        .collect();
    hex::decode(hex).unwrap()
}

/// DER TLV, for assembling an SM2EnvelopedKey independently of `Sm2EnvelopedKey::to_der`.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// SM2 dual certificates through `SKF_ImportECCKeyPair`: an envelope made entirely by
/// independent tools — the encryption pair by `openssl genpkey`, its private key under
/// SM4-ECB by `openssl enc`, the SM4 key SM2-encrypted to the on-device signing key by the
/// GmSSL 3.1.1 CLI — is imported through dlopen, opened inside the module, and then the
/// new key decrypts what GmSSL encrypts to it. Refused envelopes change nothing.
#[test]
fn enveloped_key_from_independent_tools_imports_through_dlopen() {
    let Some(dir) = enter("enveloped_key_from_independent_tools_imports_through_dlopen") else { return };
    let (Some(ossl), Some(gm)) = (kb_interop::openssl(), kb_interop::gmssl_cli()) else { return };
    let ca = Ca::new();
    let key = make_key(&dir, "dual", &ca);
    let mut t = open(&key.serial);
    let mut s = t.login(&Pin::new(USER)).unwrap();
    // 变更/补发: a new signing pair on the device; the KMC seals the encryption pair to it.
    let PublicKey::Sm2(sign_pub) = s.generate_key_pair("rekeyed", KeyUsage::Sign, Algorithm::Sm2).unwrap() else { panic!() };
    let work = kb_interop::tempdir();
    let w = work.path();
    let sign_pem = kb_interop::write(w, "sign_pub.pem", PublicKey::Sm2(sign_pub).to_spki_pem().unwrap());
    let enc_pem = kb_interop::path_in(w, "enc.pem");
    ossl.ok(&["genpkey", "-algorithm", "SM2", "-out", &enc_pem]);
    let text = String::from_utf8(ossl.ok(&["pkey", "-in", &enc_pem, "-text", "-noout"])).unwrap();
    let mut d = openssl_text_field(&text, "priv");
    while d.len() > 32 && d[0] == 0 {
        d.remove(0);
    }
    let mut d32 = vec![0u8; 32 - d.len()];
    d32.extend(d);
    let point = openssl_text_field(&text, "pub");
    assert_eq!(point.len(), 65);
    let enc_pub_pem = kb_interop::path_in(w, "enc_pub.pem");
    ossl.ok(&["pkey", "-in", &enc_pem, "-pubout", "-out", &enc_pub_pem]);
    let sym = kb_interop::random16();
    let sym_path = kb_interop::write(w, "sym.bin", sym);
    let d_path = kb_interop::write(w, "d.bin", &d32);
    let epk = ossl.ok(&["enc", "-sm4-ecb", "-nopad", "-K", &hex::encode(sym), "-in", &d_path]);
    assert_eq!(epk.len(), 32);
    let cipher = gm.ok(&["sm2encrypt", "-pubkey", &sign_pem, "-in", &sym_path]);
    let bit = |b: &[u8]| tlv(0x03, &[&[0u8][..], b].concat());
    let sm4_ecb_oid = [0x06, 0x08, 0x2A, 0x81, 0x1C, 0xCF, 0x55, 0x01, 0x68, 0x01];
    let env_der = tlv(0x30, &[tlv(0x30, &sm4_ecb_oid), cipher, bit(&point), bit(&epk)].concat());
    let env = kb_token::Sm2EnvelopedKey::from_der(&env_der).unwrap();
    assert_eq!(env.to_der().unwrap(), env_der, "our encoding matches the independently assembled one");

    let enc_pub = PublicKey::from_spki_pem(&String::from_utf8(kb_interop::read(&enc_pub_pem)).unwrap()).unwrap();
    let cert = ca.issue("dual enc", &enc_pub, KeyUsage::Encrypt);
    // Sealed to the old signing key (another container's), it does not open here.
    let wrong = kb_token::Sm2EnvelopedKey::seal(
        &kb_crypto::sm2::Sm2PrivateKey::from_bytes(&d32).unwrap(),
        match &key.sign {
            PublicKey::Sm2(k) => k,
            _ => panic!(),
        },
    )
    .unwrap();
    assert_eq!(code(s.import_enveloped_key("rekeyed", &wrong, Some(cert.der()))), ErrorCode::EnvelopedKeyInvalid);
    assert!(t_containers_enc(&dir, "rekeyed").is_none(), "a refused envelope wrote something");
    let other = ca.issue("dual enc", &key.encrypt, KeyUsage::Encrypt);
    assert_eq!(code(s.import_enveloped_key("rekeyed", &env, Some(other.der()))), ErrorCode::CertificateKeyMismatch);

    s.import_enveloped_key("rekeyed", &env, Some(cert.der())).unwrap();
    // GmSSL encrypts to the new encryption key; the device (SKF_ECCDecrypt) decrypts.
    let msg = kb_interop::random16();
    let msg_path = kb_interop::write(w, "msg.bin", msg);
    let ct = gm.ok(&["sm2encrypt", "-pubkey", &enc_pub_pem, "-in", &msg_path]);
    assert_eq!(&s.decrypt("rekeyed", KeyUsage::Encrypt, &ct, RsaPadding::Pkcs1v15).unwrap()[..], &msg[..]);
    drop(s);
    assert_eq!(t_containers_enc(&dir, "rekeyed"), Some((enc_pub, cert.der().to_vec())));
}

/// The encryption slot of `container` in `dual.kbkey`, read from the file key directly.
fn t_containers_enc(dir: &Path, container: &str) -> Option<(PublicKey, Vec<u8>)> {
    let mut file = FileToken::open(dir.join("dual.kbkey")).unwrap();
    let c = file.containers().unwrap().into_iter().find(|c| c.name == container)?;
    let cert = c.encrypt?.certificate?;
    Some((file.public_key(container, KeyUsage::Encrypt).unwrap(), cert))
}

/// The other direction: an envelope KeyBridge seals (the dev CA's side) opens with the
/// independent tools — GmSSL decrypts the SM4 key with the signing key, OpenSSL's SM4-ECB
/// the private key — to exactly the key sealed.
#[test]
fn keybridge_envelopes_open_with_independent_tools() {
    let (Some(ossl), Some(gm)) = (kb_interop::openssl(), kb_interop::gmssl_cli()) else { return };
    let work = kb_interop::tempdir();
    let w = work.path();
    let sign_pem = kb_interop::path_in(w, "sign.pem");
    let sign_pub_pem = kb_interop::path_in(w, "sign_pub.pem");
    gm.ok(&["sm2keygen", "-pass", "kb-test", "-out", &sign_pem, "-pubout", &sign_pub_pem]);
    let PublicKey::Sm2(sign_pub) =
        PublicKey::from_spki_pem(&String::from_utf8(kb_interop::read(&sign_pub_pem)).unwrap()).unwrap()
    else {
        panic!()
    };
    let enc = kb_crypto::sm2::Sm2PrivateKey::generate().unwrap();
    let env = kb_token::Sm2EnvelopedKey::seal(&enc, &sign_pub).unwrap();
    let der = env.to_der().unwrap();
    // Take it apart with OpenSSL's ASN.1 parser, not ours.
    let der_path = kb_interop::write(w, "env.der", &der);
    let parsed = String::from_utf8(ossl.ok(&["asn1parse", "-inform", "DER", "-in", &der_path])).unwrap();
    assert!(parsed.contains(":1.2.156.10197.1.104.1") || parsed.contains("sm4-ecb"), "{parsed}");
    // The second SEQUENCE at depth 1 is symEncryptedKey (the first is symAlgID).
    let line = parsed
        .lines()
        .filter(|l| l.contains("d=1") && l.contains("cons: SEQUENCE"))
        .nth(1)
        .unwrap_or_else(|| panic!("no SM2Cipher in {parsed}"));
    let num = |key: &str| -> usize {
        let at = line.find(key).unwrap() + key.len();
        line[at..].trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let off: usize = line.split(':').next().unwrap().trim().parse().unwrap();
    let cipher_path = kb_interop::write(w, "cipher.der", &der[off..off + num("hl=") + num(" l=")]);
    let sym = gm.ok(&["sm2decrypt", "-key", &sign_pem, "-pass", "kb-test", "-in", &cipher_path]);
    assert_eq!(sym.len(), 16);
    let epk_path = kb_interop::write(w, "epk.bin", env.encrypted_private_key);
    let d = ossl.ok(&["enc", "-d", "-sm4-ecb", "-nopad", "-K", &hex::encode(&sym), "-in", &epk_path]);
    assert_eq!(&d[..], &enc.to_bytes()[..]);
}
