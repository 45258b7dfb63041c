//! The file-type key through the `Token` / `Session` / `Transport` traits, with low
//! KDF parameters so the suite is fast.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kb_crypto::rsa::RsaPadding;
use kb_crypto::sm2::CiphertextLayout;
use kb_crypto::{HashAlgorithm, PrivateKey, PublicKey, SignatureScheme};
use kb_filekey::{CreateOptions, FORMAT_VERSION, FileToken, FileTransport, KdfParams, MAX_SEAL_BYTES};
use kb_pki::issue::{CertificateParams, issue};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, Signer};
use kb_token::{Session, Token, TokenError, Transport, TransportEvent};
use kb_types::{Algorithm, DeviceId, ErrorCode, HasErrorCode, KeyUsage, Pin, PinKind, TransportKind};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const USER: &str = "12345678";
const SO: &str = "admin-87654321";

fn pin(s: &str) -> Pin {
    Pin::new(s)
}

fn make(dir: &Path, name: &str) -> FileToken {
    make_with(dir, name, CreateOptions::weak_for_tests())
}

fn make_with(dir: &Path, name: &str, options: CreateOptions) -> FileToken {
    FileToken::create(dir.join(format!("{name}.kbkey")), &format!("{name} 的文件证书"), &pin(USER), &pin(SO), options)
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
}

fn code<T>(r: Result<T, TokenError>) -> ErrorCode {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.code(),
    }
}

fn err<T>(r: Result<T, TokenError>) -> TokenError {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

/// A `kb_pki::Signer` over a session slot, so CSRs and certificates can be signed by a
/// key that never leaves the medium.
struct TokenSigner<'s, 'a> {
    session: RefCell<&'s mut (dyn Session + 'a)>,
    container: String,
    usage: KeyUsage,
    public: PublicKey,
    scheme: SignatureScheme,
}

impl<'s, 'a> TokenSigner<'s, 'a> {
    fn new(session: &'s mut (dyn Session + 'a), container: &str, usage: KeyUsage, public: PublicKey) -> Self {
        let scheme = SignatureScheme::default_for(public.algorithm());
        TokenSigner { session: RefCell::new(session), container: container.into(), usage, public, scheme }
    }
}

impl Signer for TokenSigner<'_, '_> {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }
    fn scheme(&self) -> &SignatureScheme {
        &self.scheme
    }
    fn sign_digest(&self, digest: &[u8]) -> kb_pki::Result<Vec<u8>> {
        self.session.borrow_mut().sign_digest(&self.container, self.usage, &self.scheme, digest).map_err(|e| match e {
            TokenError::Crypto(c) => kb_pki::PkiError::Crypto(c),
            TokenError::Pki(p) => p,
            other => kb_pki::PkiError::Crypto(kb_crypto::CryptoError::Unsupported(format!("device: {other}"))),
        })
    }
}

struct Ca(kb_pki::issue::TestCa);

fn ca() -> Ca {
    Ca(kb_pki::issue::TestCa::new(Algorithm::Sm2, "C=CN,O=KeyBridge Test,CN=Test CA").unwrap())
}

impl Ca {
    fn leaf(&self, subject_key: &PublicKey, usage: KeyUsage) -> Certificate {
        self.0.leaf("C=CN,O=某某公司,CN=张三", subject_key, usage).unwrap()
    }
}

// ---- format and creation ----------------------------------------------------------

#[test]
fn format_document_states_the_code_version() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/file-token-format.md")).unwrap();
    assert!(
        doc.contains(&format!("`FORMAT_VERSION = {FORMAT_VERSION}`")),
        "docs/file-token-format.md must state `FORMAT_VERSION = {FORMAT_VERSION}`"
    );
}

#[test]
fn create_open_and_device_info() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.kbkey");
    let t = FileToken::create(&path, "张三的证书", &pin(USER), &pin(SO), CreateOptions::weak_for_tests()).unwrap();
    let info = t.info();
    assert_eq!(info.id, DeviceId::new(TransportKind::File, "alice"));
    assert_eq!(info.id.0, "file:alice");
    assert_eq!(info.label, "张三的证书");
    assert_eq!(info.manufacturer, "KeyBridge");
    assert_eq!(info.model, "File Key v1");
    assert_eq!(info.transport, TransportKind::File);
    assert!(info.serial.starts_with("KBF-") && info.serial.len() == 20, "{}", info.serial);
    assert!(info.capabilities.key_generation && info.capabilities.seals && info.capabilities.so_pin);
    for a in [Algorithm::Sm2, Algorithm::Rsa { bits: 2048 }, Algorithm::EcdsaP256] {
        assert!(info.capabilities.algorithms.contains(&a));
    }

    // Creating over an existing file fails and leaves it alone.
    let before = std::fs::read(&path).unwrap();
    let e = err(FileToken::create(&path, "other", &pin(USER), &pin(SO), CreateOptions::weak_for_tests()));
    assert!(matches!(e, TokenError::AlreadyExists(_)), "{e:?}");
    assert_eq!(e.code(), ErrorCode::AlreadyExists);
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // Open gives the same device.
    let mut again = FileToken::open(&path).unwrap();
    assert_eq!(again.info(), info);
    let user = again.pin_info(PinKind::User).unwrap();
    assert_eq!((user.retries_left, user.max_retries, user.locked, user.is_default), (6, 6, false, true));
    let so = again.pin_info(PinKind::So).unwrap();
    assert_eq!((so.retries_left, so.max_retries, so.locked, so.is_default), (10, 10, false, true));
    assert!(again.containers().unwrap().is_empty());
    assert!(again.seals().unwrap().is_empty());

    // Missing file → Removed.
    let e = err(FileToken::open(dir.path().join("nobody.kbkey")));
    assert_eq!(e, TokenError::Removed);
    assert_eq!(e.code(), ErrorCode::DeviceRemoved);

    // Options: own serial, own retry limits, PINs chosen by the user (not defaults).
    let opts = CreateOptions {
        serial: Some("SN-0001".into()),
        max_user_retries: 3,
        max_so_retries: 5,
        pins_are_default: false,
        ..CreateOptions::weak_for_tests()
    };
    let mut b = make_with(dir.path(), "bob", opts);
    assert_eq!(b.info().serial, "SN-0001");
    let u = b.pin_info(PinKind::User).unwrap();
    assert_eq!((u.retries_left, u.max_retries, u.is_default), (3, 3, false));
    assert_eq!(b.pin_info(PinKind::So).unwrap().max_retries, 5);
}

#[test]
fn create_rejects_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.kbkey");
    let o = CreateOptions::weak_for_tests;
    assert_eq!(code(FileToken::create(&p, "x", &pin("12345"), &pin(SO), o())), ErrorCode::PinPolicy);
    assert_eq!(code(FileToken::create(&p, "x", &pin(USER), &pin(&"9".repeat(33)), o())), ErrorCode::PinPolicy);
    assert_eq!(code(FileToken::create(&p, "", &pin(USER), &pin(SO), o())), ErrorCode::InvalidParameter);
    assert_eq!(code(FileToken::create(&p, "a\nb", &pin(USER), &pin(SO), o())), ErrorCode::InvalidParameter);
    let zero = CreateOptions { max_user_retries: 0, ..o() };
    assert_eq!(code(FileToken::create(&p, "x", &pin(USER), &pin(SO), zero)), ErrorCode::InvalidParameter);
    let huge = CreateOptions { kdf: KdfParams { m_cost_kib: 4 << 20, t_cost: 1, p_cost: 1 }, ..o() };
    assert_eq!(code(FileToken::create(&p, "x", &pin(USER), &pin(SO), huge)), ErrorCode::InvalidParameter);
    assert!(!p.exists());
    let missing_dir = dir.path().join("no/such/dir/k.kbkey");
    assert_eq!(code(FileToken::create(&missing_dir, "x", &pin(USER), &pin(SO), o())), ErrorCode::Io);
}

// ---- PINs -----------------------------------------------------------------------------

#[test]
fn wrong_pins_count_down_lock_and_unblock() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = make(dir.path(), "k");
    let path = t.path().to_path_buf();

    // Two wrong, then right: counter back to full.
    assert_eq!(err(t.login(&pin("00000000"))), TokenError::WrongPin { retries_left: 5 });
    assert_eq!(err(t.login(&pin("00000000"))), TokenError::WrongPin { retries_left: 4 });
    assert_eq!(t.pin_info(PinKind::User).unwrap().retries_left, 4);
    drop(t.login(&pin(USER)).unwrap());
    assert_eq!(t.pin_info(PinKind::User).unwrap().retries_left, 6);

    // 6 → 0, each persisted before the error comes back (a fresh handle sees it).
    for left in (0..6u8).rev() {
        let e = err(t.login(&pin("wrong-pin")));
        assert_eq!(e, TokenError::WrongPin { retries_left: left });
        assert_eq!(e.code(), ErrorCode::WrongPin);
        assert_eq!(FileToken::open(&path).unwrap().pin_info(PinKind::User).unwrap().retries_left, left);
    }
    let info = t.pin_info(PinKind::User).unwrap();
    assert!(info.locked && info.retries_left == 0);
    // Locked: even the right PIN is refused, and changing it too.
    let e = err(t.login(&pin(USER)));
    assert_eq!(e, TokenError::PinLocked);
    assert_eq!(e.code(), ErrorCode::PinLocked);
    assert_eq!(code(t.change_pin(PinKind::User, &pin(USER), &pin("new-pin-1"))), ErrorCode::PinLocked);

    // Wrong SO PIN costs an SO try and changes nothing else.
    assert_eq!(err(t.unblock_pin(&pin("not-the-so"), &pin("new-user-pin"))), TokenError::WrongPin { retries_left: 9 });
    assert_eq!(t.pin_info(PinKind::So).unwrap().retries_left, 9);
    assert!(t.pin_info(PinKind::User).unwrap().locked);
    // Policy is checked before the SO PIN (no try spent).
    assert_eq!(code(t.unblock_pin(&pin(SO), &pin("short"))), ErrorCode::PinPolicy);
    assert_eq!(t.pin_info(PinKind::So).unwrap().retries_left, 9);

    // Unblock with the SO PIN: new user PIN, both counters full.
    t.unblock_pin(&pin(SO), &pin("new-user-pin")).unwrap();
    let u = t.pin_info(PinKind::User).unwrap();
    assert_eq!((u.retries_left, u.locked, u.is_default), (6, false, false));
    assert_eq!(t.pin_info(PinKind::So).unwrap().retries_left, 10);
    assert_eq!(err(t.login(&pin(USER))), TokenError::WrongPin { retries_left: 5 });
    drop(t.login(&pin("new-user-pin")).unwrap());
    // Unblock also works when not locked (resets the PIN).
    t.unblock_pin(&pin(SO), &pin("third-pin")).unwrap();
    drop(t.login(&pin("third-pin")).unwrap());
}

#[test]
fn a_pin_verified_moments_ago_skips_the_kdf_but_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = make(dir.path(), "fast");
    let path = t.path().to_path_buf();
    drop(t.login(&pin(USER)).unwrap());
    assert_eq!(t.slow_logins(), 1);
    // The same PIN again (what the service does with its PIN cache): no KDF.
    for _ in 0..3 {
        drop(t.login(&pin(USER)).unwrap());
    }
    assert_eq!(t.slow_logins(), 1);
    // A different PIN always takes the slow path and costs a try.
    assert_eq!(err(t.login(&pin("00000000"))), TokenError::WrongPin { retries_left: 5 });
    assert_eq!(t.slow_logins(), 2);
    // The try changed the record on disk: the right PIN is verified for real again
    // (which resets the counter).
    drop(t.login(&pin(USER)).unwrap());
    assert_eq!(t.slow_logins(), 3);
    assert_eq!(t.pin_info(PinKind::User).unwrap().retries_left, 6);
    drop(t.login(&pin(USER)).unwrap());
    assert_eq!(t.slow_logins(), 3);
    // The PIN changed by another process: the old PIN is refused, not remembered.
    let mut other = FileToken::open(&path).unwrap();
    other.change_pin(PinKind::User, &pin(USER), &pin("changed-9")).unwrap();
    assert_eq!(err(t.login(&pin(USER))), TokenError::WrongPin { retries_left: 5 });
    drop(t.login(&pin("changed-9")).unwrap());
    // Locked by another process: refused although this handle verified it before.
    drop(t.login(&pin("changed-9")).unwrap());
    let slow = t.slow_logins();
    for _ in 0..6 {
        let _ = other.login(&pin("wrong-pin"));
    }
    assert_eq!(err(t.login(&pin("changed-9"))), TokenError::PinLocked);
    assert!(t.slow_logins() > slow);
}

/// The device service logs in for every signature; the key it signs with is opened
/// (decrypted, parsed) once and used again — but only while the file still holds the very
/// record it came from, whoever changed the file.
#[test]
fn an_opened_key_serves_again_only_for_the_record_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = make(dir.path(), "keys");
    let path = t.path().to_path_buf();
    let scheme = SignatureScheme::sm2_default();
    let first = {
        let mut s = t.login(&pin(USER)).unwrap();
        s.create_container("c").unwrap();
        s.generate_key_pair("c", KeyUsage::Sign, Algorithm::Sm2).unwrap()
    };
    let sign = |t: &mut FileToken, msg: &[u8], pk: &PublicKey| {
        let digest = pk.message_digest(&scheme, msg).unwrap();
        t.login(&pin(USER)).unwrap().sign_digest("c", KeyUsage::Sign, &scheme, &digest)
    };
    for i in 0..4u8 {
        let sig = sign(&mut t, &[i], &first).unwrap();
        first.verify(&scheme, &[i], &sig).unwrap();
    }
    assert_eq!(t.key_openings(), 1, "four signatures, one key opened");

    // Another process replaces the key: this handle signs with the new one at once.
    let mut other = FileToken::open(&path).unwrap();
    let second = other.login(&pin(USER)).unwrap().generate_key_pair("c", KeyUsage::Sign, Algorithm::Sm2).unwrap();
    assert_ne!(first, second);
    let sig = sign(&mut t, b"after", &second).unwrap();
    second.verify(&scheme, b"after", &sig).unwrap();
    assert!(first.verify(&scheme, b"after", &sig).is_err(), "not the key opened before");
    assert_eq!(t.key_openings(), 2);

    // Deleted elsewhere: no signature from the key opened before.
    other.login(&pin(USER)).unwrap().delete_container("c").unwrap();
    assert_eq!(code(sign(&mut t, b"gone", &second)), ErrorCode::NotFound);

    // A PIN change forgets the data key and the keys opened under it.
    t.change_pin(PinKind::User, &pin(USER), &pin("changed-9")).unwrap();
    assert_eq!(t.key_openings(), 0);
}

#[test]
fn so_pin_locks_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = make_with(dir.path(), "k", CreateOptions { max_so_retries: 3, ..CreateOptions::weak_for_tests() });
    assert_eq!(err(t.unblock_pin(&pin("bad-so-1"), &pin("whatever1"))), TokenError::WrongPin { retries_left: 2 });
    assert_eq!(err(t.change_pin(PinKind::So, &pin("bad-so-2"), &pin("whatever1"))), TokenError::WrongPin { retries_left: 1 });
    assert_eq!(err(t.unblock_pin(&pin("bad-so-3"), &pin("whatever1"))), TokenError::WrongPin { retries_left: 0 });
    assert!(t.pin_info(PinKind::So).unwrap().locked);
    assert_eq!(err(t.unblock_pin(&pin(SO), &pin("whatever1"))), TokenError::PinLocked);
    assert_eq!(err(t.change_pin(PinKind::So, &pin(SO), &pin("whatever1"))), TokenError::PinLocked);
    // The user PIN is independent.
    assert_eq!(t.pin_info(PinKind::User).unwrap().retries_left, 6);
    drop(t.login(&pin(USER)).unwrap());
}

#[test]
fn change_pin_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = make(dir.path(), "k");
    // Policy failures cost no try.
    assert_eq!(err(t.change_pin(PinKind::User, &pin(USER), &pin("12345"))), TokenError::PinPolicy("the PIN is too short"));
    assert_eq!(code(t.change_pin(PinKind::User, &pin(USER), &pin(&"x".repeat(33)))), ErrorCode::PinPolicy);
    assert_eq!(t.pin_info(PinKind::User).unwrap().retries_left, 6);
    // A wrong old PIN costs a try.
    assert_eq!(err(t.change_pin(PinKind::User, &pin("not-it!"), &pin("abcdef"))), TokenError::WrongPin { retries_left: 5 });
    // Boundaries: 6 and 32 characters; characters, not bytes (6 CJK = 18 bytes).
    t.change_pin(PinKind::User, &pin(USER), &pin("abcdef")).unwrap();
    let u = t.pin_info(PinKind::User).unwrap();
    assert_eq!((u.retries_left, u.is_default), (6, false));
    t.change_pin(PinKind::User, &pin("abcdef"), &pin(&"z".repeat(32))).unwrap();
    t.change_pin(PinKind::User, &pin(&"z".repeat(32)), &pin("口令口令口令")).unwrap();
    assert_eq!(err(t.login(&pin("abcdef"))), TokenError::WrongPin { retries_left: 5 });
    drop(t.login(&pin("口令口令口令")).unwrap());
    // SO PIN change.
    assert!(t.pin_info(PinKind::So).unwrap().is_default);
    t.change_pin(PinKind::So, &pin(SO), &pin("new-so-pin")).unwrap();
    assert!(!t.pin_info(PinKind::So).unwrap().is_default);
    assert_eq!(err(t.unblock_pin(&pin(SO), &pin("abcdefg"))), TokenError::WrongPin { retries_left: 9 });
    t.unblock_pin(&pin("new-so-pin"), &pin("abcdefg")).unwrap();
    drop(t.login(&pin("abcdefg")).unwrap());
}

// ---- keys, certificates, signatures ---------------------------------------------------

#[test]
fn keygen_sign_and_verify_every_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = make(dir.path(), "k");
    let mut s = t.login(&pin(USER)).unwrap();
    let cases = [
        ("sm2", Algorithm::Sm2, vec![SignatureScheme::sm2_default(), SignatureScheme::Sm2Sm3 { id: b"custom-id".to_vec() }]),
        (
            "rsa",
            Algorithm::Rsa { bits: 2048 },
            vec![SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256), SignatureScheme::RsaPss(HashAlgorithm::Sha256)],
        ),
        ("p256", Algorithm::EcdsaP256, vec![SignatureScheme::Ecdsa(HashAlgorithm::Sha256)]),
    ];
    let mut keys = Vec::new();
    for (name, alg, schemes) in &cases {
        s.create_container(name).unwrap();
        let pk = s.generate_key_pair(name, KeyUsage::Sign, *alg).unwrap();
        assert_eq!(pk.algorithm(), *alg);
        for scheme in schemes {
            let digest = pk.message_digest(scheme, b"bid file").unwrap();
            let sig = s.sign_digest(name, KeyUsage::Sign, scheme, &digest).unwrap();
            pk.verify(scheme, b"bid file", &sig).unwrap();
            assert!(pk.verify(scheme, b"bid filE", &sig).is_err());
        }
        // Scheme for another algorithm: a clear error, no signature.
        let wrong =
            if *alg == Algorithm::Sm2 { SignatureScheme::Ecdsa(HashAlgorithm::Sha256) } else { SignatureScheme::sm2_default() };
        assert_eq!(code(s.sign_digest(name, KeyUsage::Sign, &wrong, &[0u8; 32])), ErrorCode::InvalidParameter);
        keys.push((name.to_string(), pk));
    }
    assert_eq!(code(s.generate_key_pair("sm2", KeyUsage::Sign, Algorithm::Rsa { bits: 1024 })), ErrorCode::NotSupported);
    drop(s);

    let cs = t.containers().unwrap();
    assert_eq!(cs.len(), 3);
    for (name, pk) in &keys {
        let c = cs.iter().find(|c| &c.name == name).unwrap();
        let slot = c.sign.as_ref().unwrap();
        assert_eq!((slot.usage, slot.algorithm, slot.certificate.is_none()), (KeyUsage::Sign, pk.algorithm(), true));
        assert!(c.encrypt.is_none());
        assert_eq!(&t.public_key(name, KeyUsage::Sign).unwrap(), pk);
        // `Both` is the sign slot.
        assert_eq!(&t.public_key(name, KeyUsage::Both).unwrap(), pk);
        assert_eq!(code(t.public_key(name, KeyUsage::Encrypt)), ErrorCode::NotFound);
    }

    // Regenerating replaces the key.
    let mut s = t.login(&pin(USER)).unwrap();
    let new = s.generate_key_pair("sm2", KeyUsage::Sign, Algorithm::Sm2).unwrap();
    assert_ne!(new, keys[0].1);
    drop(s);
    assert_eq!(t.public_key("sm2", KeyUsage::Sign).unwrap(), new);
}

#[test]
fn csr_certificates_and_signing_through_a_signer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let mut t = make(dir.path(), "k");
    let mut s = t.login(&pin(USER)).unwrap();
    s.create_container("main").unwrap();
    let sign_pk = s.generate_key_pair("main", KeyUsage::Sign, Algorithm::Sm2).unwrap();
    let enc_pk = s.generate_key_pair("main", KeyUsage::Encrypt, Algorithm::Sm2).unwrap();

    // A CSR signed on the device.
    let csr_der = {
        let signer = TokenSigner::new(s.as_mut(), "main", KeyUsage::Sign, sign_pk.clone());
        kb_pki::csr::build("C=CN,O=某某公司,CN=张三", &signer, Vec::new()).unwrap()
    };
    let csr = kb_pki::csr::CertificationRequest::from_der(&csr_der).unwrap();
    csr.verify().unwrap();
    assert_eq!(csr.public_key().unwrap(), sign_pk);

    // Matching certificates go in; a certificate for the other key does not.
    let sign_cert = ca.leaf(&sign_pk, KeyUsage::Sign);
    let enc_cert = ca.leaf(&enc_pk, KeyUsage::Encrypt);
    let e = err(s.import_certificate("main", KeyUsage::Encrypt, sign_cert.der()));
    assert_eq!(e, TokenError::CertificateKeyMismatch);
    assert_eq!(e.code(), ErrorCode::CertificateKeyMismatch);
    s.import_certificate("main", KeyUsage::Sign, sign_cert.der()).unwrap();
    s.import_certificate("main", KeyUsage::Encrypt, enc_cert.der()).unwrap();
    // Garbage, and slots/containers that do not exist.
    assert_eq!(code(s.import_certificate("main", KeyUsage::Sign, b"not a certificate")), ErrorCode::CertificateMalformed);
    assert_eq!(code(s.import_certificate("nope", KeyUsage::Sign, sign_cert.der())), ErrorCode::NotFound);
    s.create_container("empty").unwrap();
    assert_eq!(code(s.import_certificate("empty", KeyUsage::Sign, sign_cert.der())), ErrorCode::NotFound);

    // Sign a digest; verify with the certificate's key.
    let cert_key = sign_cert.public_key().unwrap();
    let scheme = SignatureScheme::sm2_default();
    let digest = cert_key.message_digest(&scheme, "投标文件".as_bytes()).unwrap();
    let sig = s.sign_digest("main", KeyUsage::Sign, &scheme, &digest).unwrap();
    cert_key.verify(&scheme, "投标文件".as_bytes(), &sig).unwrap();
    // A leaf issued through the TokenSigner verifies with the device key.
    let issued = {
        let signer = TokenSigner::new(s.as_mut(), "main", KeyUsage::Sign, sign_pk.clone());
        let params = CertificateParams::new("CN=self", kb_pki::issue::CertKind::Root { path_len: None }, UnixTime::now(), 10);
        issue(&params, &sign_pk, None, &signer).unwrap()
    };
    issued.verify_signature(&sign_pk).unwrap();
    drop(s);

    let c = t.containers().unwrap().into_iter().find(|c| c.name == "main").unwrap();
    assert_eq!(c.sign.unwrap().certificate.as_deref(), Some(sign_cert.der()));
    assert_eq!(c.encrypt.unwrap().certificate.as_deref(), Some(enc_cert.der()));

    // Delete a certificate: the key pair stays and still signs.
    let mut s = t.login(&pin(USER)).unwrap();
    s.delete_certificate("main", KeyUsage::Sign).unwrap();
    assert_eq!(code(s.delete_certificate("main", KeyUsage::Sign)), ErrorCode::NotFound);
    assert_eq!(code(s.delete_certificate("empty", KeyUsage::Sign)), ErrorCode::NotFound);
    assert_eq!(code(s.delete_certificate("nope", KeyUsage::Sign)), ErrorCode::NotFound);
    let sig = s.sign_digest("main", KeyUsage::Sign, &scheme, &digest).unwrap();
    cert_key.verify_digest(&scheme, &digest, &sig).unwrap();
    // Regenerating a key drops its certificate.
    s.generate_key_pair("main", KeyUsage::Encrypt, Algorithm::Sm2).unwrap();
    drop(s);
    let c = t.containers().unwrap().into_iter().find(|c| c.name == "main").unwrap();
    assert!(c.sign.unwrap().certificate.is_none());
    assert!(c.encrypt.unwrap().certificate.is_none());
}

#[test]
fn decrypt_sm2_every_layout_and_rsa() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = make(dir.path(), "k");
    let mut s = t.login(&pin(USER)).unwrap();
    s.create_container("c").unwrap();
    let pk = s.generate_key_pair("c", KeyUsage::Encrypt, Algorithm::Sm2).unwrap();
    let key = b"0123456789abcdef";
    let der = pk.encrypt(key, RsaPadding::Pkcs1v15).unwrap();
    assert_eq!(&s.decrypt("c", KeyUsage::Encrypt, &der, RsaPadding::Pkcs1v15).unwrap()[..], key);
    let PublicKey::Sm2(sm2) = &pk else { panic!("not SM2") };
    for (layout, with_04) in
        [(CiphertextLayout::C1C3C2, true), (CiphertextLayout::C1C3C2, false), (CiphertextLayout::C1C2C3, true)]
    {
        let raw = sm2.encrypt(key).unwrap().encode(layout, with_04);
        assert_eq!(&s.decrypt("c", KeyUsage::Encrypt, &raw, RsaPadding::Pkcs1v15).unwrap()[..], key, "{layout:?} {with_04}");
    }
    // Altered ciphertext → an error, no plaintext.
    let mut bad = der.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(s.decrypt("c", KeyUsage::Encrypt, &bad, RsaPadding::Pkcs1v15).is_err());
    // No key in the sign slot.
    assert_eq!(code(s.decrypt("c", KeyUsage::Sign, &der, RsaPadding::Pkcs1v15)), ErrorCode::NotFound);

    // RSA OAEP and PKCS#1 v1.5.
    s.create_container("rsa").unwrap();
    let rpk = s.generate_key_pair("rsa", KeyUsage::Encrypt, Algorithm::Rsa { bits: 2048 }).unwrap();
    for p in [RsaPadding::Pkcs1v15, RsaPadding::Oaep(HashAlgorithm::Sha256)] {
        let ct = rpk.encrypt(key, p).unwrap();
        assert_eq!(&s.decrypt("rsa", KeyUsage::Encrypt, &ct, p).unwrap()[..], key);
    }
    // ECDSA keys cannot decrypt.
    s.create_container("ec").unwrap();
    s.generate_key_pair("ec", KeyUsage::Encrypt, Algorithm::EcdsaP256).unwrap();
    assert_eq!(code(s.decrypt("ec", KeyUsage::Encrypt, &der, RsaPadding::Pkcs1v15)), ErrorCode::UnsupportedAlgorithm);
}

#[test]
fn containers_names_and_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = make(dir.path(), "k");
    let mut s = t.login(&pin(USER)).unwrap();
    s.create_container("张三-签名").unwrap();
    assert_eq!(code(s.create_container("张三-签名")), ErrorCode::AlreadyExists);
    for bad in ["", "a\u{0}b", "tab\there", &"n".repeat(65)] {
        assert_eq!(code(s.create_container(bad)), ErrorCode::InvalidParameter, "{bad:?}");
    }
    s.create_container(&"n".repeat(64)).unwrap();
    let unknown = "no-such-container";
    assert_eq!(code(s.generate_key_pair(unknown, KeyUsage::Sign, Algorithm::Sm2)), ErrorCode::NotFound);
    assert_eq!(code(s.sign_digest(unknown, KeyUsage::Sign, &SignatureScheme::sm2_default(), &[0; 32])), ErrorCode::NotFound);
    assert_eq!(code(s.decrypt(unknown, KeyUsage::Encrypt, b"x", RsaPadding::Pkcs1v15)), ErrorCode::NotFound);
    assert_eq!(code(s.delete_certificate(unknown, KeyUsage::Sign)), ErrorCode::NotFound);
    assert_eq!(code(s.delete_container(unknown)), ErrorCode::NotFound);
    // Empty container: no key in either slot.
    assert_eq!(code(s.sign_digest("张三-签名", KeyUsage::Sign, &SignatureScheme::sm2_default(), &[0; 32])), ErrorCode::NotFound);
    drop(s);
    assert_eq!(code(t.public_key(unknown, KeyUsage::Sign)), ErrorCode::NotFound);
    let names: Vec<String> = t.containers().unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec!["张三-签名".to_string(), "n".repeat(64)]);

    let mut s = t.login(&pin(USER)).unwrap();
    s.generate_key_pair("张三-签名", KeyUsage::Sign, Algorithm::Sm2).unwrap();
    s.delete_container("张三-签名").unwrap();
    assert_eq!(code(s.delete_container("张三-签名")), ErrorCode::NotFound);
    assert_eq!(code(s.sign_digest("张三-签名", KeyUsage::Sign, &SignatureScheme::sm2_default(), &[0; 32])), ErrorCode::NotFound);
    drop(s);
    assert_eq!(t.containers().unwrap().len(), 1);
}

#[test]
fn seals_write_read_replace_delete() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = make(dir.path(), "k");
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n".iter().copied().chain((0..5000u32).map(|i| (i * 7) as u8)).collect();
    let mut s = t.login(&pin(USER)).unwrap();
    s.write_seal("seal-1", "公司公章", "image/png", &png).unwrap();
    s.write_seal("seal-2", "法人章", "image/gif", b"GIF89a").unwrap();
    drop(s);
    let seals = t.seals().unwrap();
    assert_eq!(seals.len(), 2);
    assert_eq!(
        (seals[0].id.as_str(), seals[0].name.as_str(), seals[0].mime.as_str(), seals[0].size),
        ("seal-1", "公司公章", "image/png", png.len() as u64)
    );
    assert_eq!(t.read_seal("seal-1").unwrap(), png);
    assert_eq!(t.read_seal("seal-2").unwrap(), b"GIF89a");
    assert_eq!(code(t.read_seal("seal-3")), ErrorCode::NotFound);

    let mut s = t.login(&pin(USER)).unwrap();
    // Replace keeps one entry.
    s.write_seal("seal-2", "法人章（新）", "image/png", b"new image").unwrap();
    // Limits and bad input.
    let big = vec![7u8; MAX_SEAL_BYTES + 1];
    let e = err(s.write_seal("big", "big", "image/png", &big));
    assert_eq!(e.code(), ErrorCode::NotSupported);
    assert!(e.to_string().contains("1 MiB"), "{e}");
    s.write_seal("max", "max", "image/png", &big[..MAX_SEAL_BYTES]).unwrap();
    assert_eq!(code(s.write_seal("x", "x", "png", b"img")), ErrorCode::InvalidParameter);
    assert_eq!(code(s.write_seal("x", "x", "image/png", b"")), ErrorCode::InvalidParameter);
    assert_eq!(code(s.write_seal("", "x", "image/png", b"img")), ErrorCode::InvalidParameter);
    s.delete_seal("seal-1").unwrap();
    assert_eq!(code(s.delete_seal("seal-1")), ErrorCode::NotFound);
    drop(s);
    let ids: Vec<String> = t.seals().unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(ids, vec!["seal-2".to_string(), "max".to_string()]);
    assert_eq!(t.read_seal("seal-2").unwrap(), b"new image");
    assert_eq!(t.read_seal("max").unwrap().len(), MAX_SEAL_BYTES);
    assert_eq!(code(t.read_seal("seal-1")), ErrorCode::NotFound);
}

// ---- secrets never leak ---------------------------------------------------------------

#[test]
fn marker_pins_and_keys_never_reach_the_file_or_errors() {
    const MARK: &str = "PIN-MARKER-7f3a";
    const SO_MARK: &str = "SO-MARKER-c81d";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.kbkey");
    let mut t = FileToken::create(&path, "marker", &pin(MARK), &pin(SO_MARK), CreateOptions::weak_for_tests()).unwrap();
    let mut texts = vec![format!("{t:?}")];
    let mut record = |e: TokenError| texts.push(format!("{e} | {e:?}"));
    record(err(t.login(&pin(&format!("{MARK}x")))));
    record(err(t.change_pin(PinKind::User, &pin(&format!("x{MARK}")), &pin(MARK))));
    record(err(t.change_pin(PinKind::User, &pin(MARK), &pin("12"))));
    record(err(t.unblock_pin(&pin(&format!("{SO_MARK}!")), &pin(MARK))));
    let mut s = t.login(&pin(MARK)).unwrap();
    s.create_container("c").unwrap();
    let pk = s.generate_key_pair("c", KeyUsage::Sign, Algorithm::Sm2).unwrap();
    s.generate_key_pair("c", KeyUsage::Encrypt, Algorithm::Rsa { bits: 2048 }).unwrap();
    s.write_seal("s", "seal", "image/png", b"img").unwrap();
    let e = err(s.create_container("c"));
    drop(s);
    texts.push(format!("{e} | {e:?}"));
    t.change_pin(PinKind::User, &pin(MARK), &pin(&format!("{MARK}-2"))).unwrap();
    texts.push(format!("{t:?}"));
    for text in &texts {
        assert!(!text.contains("MARKER"), "{text}");
    }
    assert!(format!("{:?}", pin(MARK)).contains("REDACTED"));

    // No file in the directory (key, lock, temp) holds a PIN, in any common encoding.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for needle in [MARK, SO_MARK] {
            let utf16: Vec<u8> = needle.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
            for n in [needle.as_bytes().to_vec(), utf16, needle.to_lowercase().into_bytes()] {
                assert!(!bytes.windows(n.len()).any(|w| w == n.as_slice()), "a PIN is in the file");
            }
        }
    }

    // The private keys in the file are not PKCS#8 (they are sealed), while the public
    // key is there in the clear.
    let bytes = std::fs::read(&path).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes[48..]).unwrap();
    let c = &body["containers"][0];
    for slot in ["sign", "encrypt"] {
        let sealed = base64_decode(c[slot]["private_key"].as_str().unwrap());
        assert!(PrivateKey::from_pkcs8_der(&sealed).is_err());
        assert!(PrivateKey::from_pkcs8_der(&sealed[12..]).is_err());
    }
    assert_eq!(base64_decode(c["sign"]["public_key"].as_str().unwrap()), pk.to_spki_der().unwrap());
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64ct::{Base64, Encoding};
    Base64::decode_vec(s).unwrap()
}

// ---- several handles / processes --------------------------------------------------------

#[test]
fn every_operation_rereads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = make(dir.path(), "k");
    let mut b = FileToken::open(a.path()).unwrap();
    {
        let mut s = a.login(&pin(USER)).unwrap();
        s.create_container("c").unwrap();
        s.generate_key_pair("c", KeyUsage::Sign, Algorithm::Sm2).unwrap();
    }
    assert_eq!(b.containers().unwrap().len(), 1);
    // A PIN change made through one handle applies to the other.
    b.change_pin(PinKind::User, &pin(USER), &pin("changed-pin")).unwrap();
    assert_eq!(err(a.login(&pin(USER))), TokenError::WrongPin { retries_left: 5 });
    assert_eq!(b.pin_info(PinKind::User).unwrap().retries_left, 5);
    // An open session keeps working after the PIN changed elsewhere (same data key),
    // and sees deletions made elsewhere.
    let mut sa = a.login(&pin("changed-pin")).unwrap();
    let digest = [1u8; 32];
    sa.sign_digest("c", KeyUsage::Sign, &SignatureScheme::sm2_default(), &digest).unwrap();
    {
        let mut sb = b.login(&pin("changed-pin")).unwrap();
        sb.delete_container("c").unwrap();
    }
    assert_eq!(code(sa.sign_digest("c", KeyUsage::Sign, &SignatureScheme::sm2_default(), &digest)), ErrorCode::NotFound);
    drop(sa);

    // The file is deleted → Removed; replaced by another key → Removed too.
    let path = a.path().to_path_buf();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(err(a.containers()), TokenError::Removed);
    assert_eq!(err(a.login(&pin("changed-pin"))), TokenError::Removed);
    FileToken::create(&path, "impostor", &pin(USER), &pin(SO), CreateOptions::weak_for_tests()).unwrap();
    assert_eq!(err(a.pin_info(PinKind::User)), TokenError::Removed);
    assert_eq!(err(b.login(&pin(USER))), TokenError::Removed);
}

#[test]
fn busy_when_another_process_holds_the_lock() {
    use fs2::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let mut t = make(dir.path(), "k");
    t.set_lock_timeout(Duration::from_millis(200));
    let lock = std::fs::File::open(dir.path().join(".k.kbkey.lock")).unwrap();
    lock.lock_exclusive().unwrap();
    let start = Instant::now();
    let e = err(t.login(&pin("wrong-pin")));
    assert_eq!(e, TokenError::Busy);
    assert_eq!(e.code(), ErrorCode::DeviceBusy);
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(code(t.change_pin(PinKind::User, &pin(USER), &pin("abcdefgh"))), ErrorCode::DeviceBusy);
    // Reads need no lock, and nothing was counted.
    assert_eq!(t.pin_info(PinKind::User).unwrap().retries_left, 6);
    drop(lock);
    drop(t.login(&pin(USER)).unwrap());
}

#[test]
fn threads_serialise_their_changes() {
    let dir = tempfile::tempdir().unwrap();
    let t = make(dir.path(), "k");
    let path = t.path().to_path_buf();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut t = FileToken::open(&path).unwrap();
                let mut s = t.login(&pin(USER)).unwrap();
                for j in 0..5 {
                    s.create_container(&format!("t{i}-{j}")).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // No lost update: all 20 containers are there.
    assert_eq!(FileToken::open(&path).unwrap().containers().unwrap().len(), 20);
}

// ---- transport --------------------------------------------------------------------------

fn next(rx: &Receiver<TransportEvent>) -> TransportEvent {
    rx.recv_timeout(Duration::from_secs(10)).expect("no event within 10 s")
}

#[test]
fn transport_lists_and_watches_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let a = make(dir.path(), "alice");
    let b = make(dir.path(), "bob");
    std::fs::write(dir.path().join("broken.kbkey"), b"not a key file").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
    std::fs::create_dir(dir.path().join("folder.kbkey")).unwrap();

    let transport = FileTransport::new(dir.path()).with_poll_interval(Duration::from_millis(50));
    assert_eq!(transport.kind(), TransportKind::File);
    let rx = transport.watch().unwrap();
    let mut added = Vec::new();
    let mut errors = Vec::new();
    loop {
        match next(&rx) {
            TransportEvent::Added(info) => added.push(info),
            TransportEvent::Error(e) => errors.push(e),
            TransportEvent::EnumerationComplete => break,
            e => panic!("unexpected {e:?}"),
        }
    }
    added.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(added, vec![a.info(), b.info()]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("broken.kbkey:"), "{}", errors[0]);

    // Open through the transport.
    let mut tb = transport.open(&DeviceId::new(TransportKind::File, "bob")).unwrap();
    assert_eq!(tb.info(), b.info());
    drop(tb.login(&pin(USER)).unwrap());
    for bad in ["file:nobody", "file:../alice", "file:", "file:.k", "pcsc:alice", "alice"] {
        assert_eq!(code(transport.open(&DeviceId(bad.into()))), ErrorCode::UnknownDevice, "{bad}");
    }
    assert_eq!(code(transport.open(&DeviceId::new(TransportKind::File, "broken"))), ErrorCode::TokenCorrupt);

    // A new key appears, one goes away; the broken file is not reported again.
    let c = make(dir.path(), "carol");
    assert_eq!(next(&rx), TransportEvent::Added(c.info()));
    std::fs::remove_file(a.path()).unwrap();
    assert_eq!(next(&rx), TransportEvent::Removed(a.info().id));
    // The broken file gets fixed (e.g. a copy finished): now it is a device.
    std::fs::remove_file(dir.path().join("broken.kbkey")).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let fixed = make(dir.path(), "broken");
    assert_eq!(next(&rx), TransportEvent::Added(fixed.info()));
    // Changes inside a key (a login resetting the counter, a new container) are not events.
    {
        let mut t = FileToken::open(c.path()).unwrap();
        let mut s = t.login(&pin(USER)).unwrap();
        s.create_container("x").unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(rx.try_recv().is_err());
    drop(rx);
    drop(transport);
}

#[test]
fn transport_on_a_missing_directory_reports_once_and_recovers() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("later");
    let transport = FileTransport::new(&dir).with_poll_interval(Duration::from_millis(50));
    let rx = transport.watch().unwrap();
    assert!(matches!(next(&rx), TransportEvent::Error(_)));
    assert_eq!(next(&rx), TransportEvent::EnumerationComplete);
    std::thread::sleep(Duration::from_millis(150));
    std::fs::create_dir(&dir).unwrap();
    let k = make(&dir, "k");
    assert_eq!(next(&rx), TransportEvent::Added(k.info()));
}

// ---- timing (not a test of speed: prints numbers for the report) ------------------------

/// `cargo test --release -p kb-token --test file_token -- --ignored --nocapture default_kdf_timing`
#[test]
#[ignore = "slow by design: measures the default Argon2id cost"]
fn default_kdf_timing() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("t.kbkey");
    let t0 = Instant::now();
    let mut t = FileToken::create(&path, "timing", &pin(USER), &pin(SO), CreateOptions::default()).unwrap();
    let create = t0.elapsed();
    let t1 = Instant::now();
    let mut opened = FileToken::open(&path).unwrap();
    let open = t1.elapsed();
    let t2 = Instant::now();
    drop(opened.login(&pin(USER)).unwrap());
    let login = t2.elapsed();
    let t3 = Instant::now();
    assert!(t.login(&pin("wrong-pin")).is_err());
    let wrong = t3.elapsed();
    let t4 = Instant::now();
    t.change_pin(PinKind::User, &pin(USER), &pin("another-pin")).unwrap();
    let change = t4.elapsed();
    eprintln!(
        "default KDF {:?}: create {create:?}, open {open:?}, login {login:?}, wrong PIN {wrong:?}, change PIN {change:?}",
        KdfParams::DEFAULT
    );
}

/// SM2 dual certificates: an encryption pair delivered in a GM/T 0009 envelope sealed to
/// the container's signing key is opened inside the file key and lands in the
/// encryption slot with its certificate; a bad envelope or certificate changes nothing.
#[test]
fn enveloped_encryption_pair_is_imported_inside_the_key() {
    use kb_crypto::sm2::Sm2PrivateKey;
    use kb_pki::issue::TestCa;
    use kb_token::Sm2EnvelopedKey;
    let dir = tempfile::tempdir().unwrap();
    let mut t = make(dir.path(), "dual");
    let ca = TestCa::new(Algorithm::Sm2, "CN=KMC Test CA").unwrap();
    let mut s = t.login(&pin(USER)).unwrap();
    s.create_container("c").unwrap();
    let PublicKey::Sm2(sign_pub) = s.generate_key_pair("c", KeyUsage::Sign, Algorithm::Sm2).unwrap() else { panic!() };
    // The pair the key has in its encryption slot before: it must survive failed imports.
    let old_pub = s.generate_key_pair("c", KeyUsage::Encrypt, Algorithm::Sm2).unwrap();

    let enc = Sm2PrivateKey::generate().unwrap();
    let enc_pub = PublicKey::Sm2(*enc.public_key());
    let cert = ca.leaf("CN=张三", &enc_pub, KeyUsage::Encrypt).unwrap();
    let env = Sm2EnvelopedKey::seal(&enc, &sign_pub).unwrap();

    // Refusals first: sealed to another key, a certificate for another key.
    let stranger = Sm2PrivateKey::generate().unwrap();
    let wrong_env = Sm2EnvelopedKey::seal(&enc, stranger.public_key()).unwrap();
    assert_eq!(code(s.import_enveloped_key("c", &wrong_env, Some(cert.der()))), ErrorCode::EnvelopedKeyInvalid);
    let other_cert = ca.leaf("CN=张三", &PublicKey::Sm2(*stranger.public_key()), KeyUsage::Encrypt).unwrap();
    assert_eq!(err(s.import_enveloped_key("c", &env, Some(other_cert.der()))), TokenError::CertificateKeyMismatch);
    assert!(matches!(s.import_enveloped_key("nope", &env, Some(cert.der())), Err(TokenError::NotFound(_))));
    drop(s);
    assert_eq!(t.public_key("c", KeyUsage::Encrypt).unwrap(), old_pub, "a refused import changed the slot");

    let mut s = t.login(&pin(USER)).unwrap();
    s.import_enveloped_key("c", &env, Some(cert.der())).unwrap();
    // The medium decrypts with the imported key what anyone encrypts to the certificate.
    let ct = enc.public_key().encrypt(b"session key 16 b").unwrap().to_der().unwrap();
    assert_eq!(&s.decrypt("c", KeyUsage::Encrypt, &ct, RsaPadding::Pkcs1v15).unwrap()[..], b"session key 16 b");
    drop(s);
    assert_eq!(t.public_key("c", KeyUsage::Encrypt).unwrap(), enc_pub);
    let c = t.containers().unwrap().into_iter().find(|c| c.name == "c").unwrap();
    assert_eq!(c.encrypt.unwrap().certificate.as_deref(), Some(cert.der()));
    assert!(c.sign.is_some(), "the signing pair stays");
    // The encryption private key is not in the file in the clear.
    let file = std::fs::read(t.path()).unwrap();
    let d = enc.to_bytes();
    let d_hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!file.windows(32).any(|w| w == &d[..]) && !String::from_utf8_lossy(&file).to_lowercase().contains(&d_hex));
}
