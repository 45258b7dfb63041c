//! The PKCS#11 medium against a real module, SoftHSM2, with independent peers:
//! OpenSC's `pkcs11-tool` puts keys and certificates on the token and lists what we wrote;
//! the OpenSSL CLI verifies our signatures and makes the ciphertexts we decrypt.
//!
//! Each test runs in a child process with its own token directory (see
//! `kb_interop::softhsm`). Without SoftHSM2 the tests skip loudly, or fail under
//! `KB_INTEROP_REQUIRED=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use kb_crypto::rsa::RsaPadding;
use kb_crypto::{HashAlgorithm, PublicKey, SignatureScheme};
use kb_interop::softhsm::SoftHsm;
use kb_interop::{OpenSsl, pem, write};
use kb_pkcs11::{Pkcs11Module, Pkcs11Token, Pkcs11Transport};
use kb_pki::Certificate;
use kb_token::{Token, TokenError, Transport, TransportEvent};
use kb_types::{Algorithm, DeviceId, ErrorCode, HasErrorCode, KeyUsage, Pin, PinKind};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const USER: &str = "123456";
const SO: &str = "87654321";

fn pin(s: &str) -> Pin {
    Pin::new(s)
}

fn code<T>(r: Result<T, TokenError>) -> ErrorCode {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.code(),
    }
}

/// The token labelled `label`, opened through the module like the transport does.
fn open(rig: &SoftHsm, label: &str) -> Pkcs11Token {
    let m = Pkcs11Module::load(rig.module()).unwrap();
    let (_, info) = m.tokens().unwrap().into_iter().find(|(_, i)| i.label == label).expect("token present");
    Pkcs11Token::open(m, &info.id).unwrap()
}

/// A test CA and a certificate from it for `key`.
struct Ca(kb_pki::issue::TestCa);

impl Ca {
    fn new() -> Ca {
        Ca(kb_pki::issue::TestCa::new(Algorithm::EcdsaP256, "C=CN,O=KeyBridge Test,CN=PKCS#11 Test CA").unwrap())
    }

    fn issue(&self, cn: &str, key: &PublicKey, usage: KeyUsage) -> Certificate {
        self.0.leaf(&format!("C=CN,O=KeyBridge Test,CN={cn}"), key, usage).unwrap()
    }
}

/// A token holding an EC P-256 key pair made by `pkcs11-tool` on the token (id 01) and an
/// RSA-2048 key made by OpenSSL and imported with `pkcs11-tool` (id 02), each with a
/// certificate issued by `ca` and written by `pkcs11-tool`.
fn provision(rig: &SoftHsm, ssl: &OpenSsl, label: &str, ca: &Ca) {
    rig.init_token(label, USER, SO);
    let login = ["--login", "--pin", USER];
    rig.tool_ok(
        label,
        &[&login[..], &["--keypairgen", "--key-type", "EC:prime256v1", "--id", "01", "--label", "ec-key"]].concat(),
    );
    let dir = rig.dir();
    let rsa = dir.join(format!("{label}-rsa.der"));
    let rsa_pub = dir.join(format!("{label}-rsa-pub.der"));
    let (rsa, rsa_pub) = (rsa.to_str().unwrap(), rsa_pub.to_str().unwrap());
    ssl.ok(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-outform", "DER", "-out", rsa]);
    ssl.ok(&["pkey", "-inform", "DER", "-in", rsa, "-pubout", "-outform", "DER", "-out", rsa_pub]);
    for (file, kind) in [(rsa, "privkey"), (rsa_pub, "pubkey")] {
        rig.tool_ok(label, &[&login[..], &["--write-object", file, "--type", kind, "--id", "02", "--label", "rsa-key"]].concat());
    }
    let mut t = open(rig, label);
    for (id, name, usage) in [("01", "ec-key", KeyUsage::Sign), ("02", "rsa-key", KeyUsage::Both)] {
        let key = t.public_key(name, KeyUsage::Sign).unwrap();
        let cert = ca.issue(name, &key, usage);
        let file = write(dir, &format!("{label}-{name}.der"), cert.der());
        rig.tool_ok(label, &[&login[..], &["--write-object", &file, "--type", "cert", "--id", id, "--label", name]].concat());
    }
}

/// Verify `sig` over `msg` with the OpenSSL CLI (`extra` are `-sigopt`s).
fn openssl_verifies(ssl: &OpenSsl, dir: &Path, key: &PublicKey, msg: &[u8], sig: &[u8], extra: &[&str]) {
    let key = write(dir, "verify-key.pem", pem("PUBLIC KEY", &key.to_spki_der().unwrap()));
    let msg = write(dir, "verify-msg.bin", msg);
    let sig = write(dir, "verify-sig.bin", sig);
    let args = [&["dgst", "-sha256", "-verify", &key, "-signature", &sig][..], extra, &[&msg]].concat();
    let out = String::from_utf8(ssl.ok(&args)).unwrap();
    assert!(out.contains("Verified OK"), "{out}");
}

#[test]
fn lists_signs_and_decrypts() {
    let Some(rig) = SoftHsm::enter("lists_signs_and_decrypts") else { return };
    let Some(ssl) = kb_interop::openssl() else { return };
    let ca = Ca::new();
    provision(&rig, &ssl, "kb-main", &ca);
    let mut t = open(&rig, "kb-main");

    let info = t.info();
    assert_eq!(
        (info.label.as_str(), info.manufacturer.as_str(), info.model.as_str()),
        ("kb-main", "SoftHSM project", "SoftHSM v2")
    );
    assert!(!info.serial.is_empty());
    assert_eq!(info.id, DeviceId(format!("pkcs11:libsofthsm2:{}", info.serial)));
    assert!(info.capabilities.key_generation && info.capabilities.so_pin);
    assert!(info.capabilities.algorithms.contains(&Algorithm::EcdsaP256));
    assert!(!info.capabilities.algorithms.contains(&Algorithm::Sm2), "SoftHSM2 has no SM2");

    // Containers by CKA_ID, named by CKA_LABEL, usage from the certificates.
    let cs = t.containers().unwrap();
    let names: Vec<&str> = cs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ec-key", "rsa-key"]);
    let ec = cs[0].sign.as_ref().unwrap();
    assert_eq!((ec.usage, ec.algorithm), (KeyUsage::Sign, Algorithm::EcdsaP256));
    let rsa = cs[1].sign.as_ref().unwrap();
    assert_eq!((rsa.usage, rsa.algorithm), (KeyUsage::Both, Algorithm::Rsa { bits: 2048 }));
    assert!(cs.iter().all(|c| c.encrypt.is_none()));
    let ec_cert = Certificate::from_der(ec.certificate.as_ref().unwrap()).unwrap();
    assert_eq!(ec_cert.subject_cn().as_deref(), Some("ec-key"));
    ec_cert.verify_signature(kb_pki::Signer::public_key(&ca.0.signer)).unwrap();
    let ec_key = t.public_key("ec-key", KeyUsage::Sign).unwrap();
    let rsa_key = t.public_key("rsa-key", KeyUsage::Both).unwrap();
    assert_eq!(ec_cert.public_key().unwrap(), ec_key);
    assert_eq!(code(t.public_key("ec-key", KeyUsage::Encrypt)), ErrorCode::NotFound);
    assert_eq!(code(t.public_key("nope", KeyUsage::Sign)), ErrorCode::NotFound);

    let msg = "投标文件 — PKCS#11".as_bytes();
    let mut s = t.login(&pin(USER)).unwrap();
    // ECDSA P-256: hashed here, CKM_ECDSA on the token, r ‖ s re-encoded as DER.
    let scheme = SignatureScheme::Ecdsa(HashAlgorithm::Sha256);
    let sig = s.sign_digest("ec-key", KeyUsage::Sign, &scheme, &ec_key.message_digest(&scheme, msg).unwrap()).unwrap();
    assert_eq!(sig[0], 0x30, "DER");
    ec_key.verify(&scheme, msg, &sig).unwrap();
    openssl_verifies(&ssl, rig.dir(), &ec_key, msg, &sig, &[]);
    // RSA PKCS#1 v1.5 (CKM_RSA_PKCS over our DigestInfo) and PSS.
    for (scheme, extra) in [
        (SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256), &[][..]),
        (
            SignatureScheme::RsaPss(HashAlgorithm::Sha256),
            &["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"][..],
        ),
    ] {
        let digest = rsa_key.message_digest(&scheme, msg).unwrap();
        let sig = s.sign_digest("rsa-key", KeyUsage::Both, &scheme, &digest).unwrap();
        rsa_key.verify(&scheme, msg, &sig).unwrap();
        openssl_verifies(&ssl, rig.dir(), &rsa_key, msg, &sig, extra);
    }
    // A tampered message does not verify: the check above can fail.
    let sig = s.sign_digest("ec-key", KeyUsage::Sign, &scheme, &ec_key.message_digest(&scheme, msg).unwrap()).unwrap();
    assert!(ec_key.verify(&scheme, b"another message", &sig).is_err());
    // Scheme/key mismatch and SM2 on a module without SM2 mechanisms.
    let d = [1u8; 32];
    assert_eq!(
        code(s.sign_digest("ec-key", KeyUsage::Sign, &SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256), &d)),
        ErrorCode::InvalidParameter
    );
    assert_eq!(code(s.sign_digest("ec-key", KeyUsage::Sign, &SignatureScheme::sm2_default(), &d)), ErrorCode::InvalidParameter);

    // RSA decryption of ciphertexts made by OpenSSL: PKCS#1 v1.5 and OAEP (SHA-1, the only
    // OAEP hash SoftHSM2 2.6 implements).
    let secret = kb_interop::random_bytes(32);
    let key_pem = write(rig.dir(), "rsa-pub.pem", pem("PUBLIC KEY", &rsa_key.to_spki_der().unwrap()));
    let plain = write(rig.dir(), "secret.bin", &secret);
    for (padding, opts) in [
        (RsaPadding::Pkcs1v15, &["-pkeyopt", "rsa_padding_mode:pkcs1"][..]),
        (RsaPadding::Oaep(HashAlgorithm::Sha1), &["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha1"][..]),
    ] {
        let ct = ssl.ok(&[&["pkeyutl", "-encrypt", "-pubin", "-inkey", &key_pem, "-in", &plain][..], opts].concat());
        let out = s.decrypt("rsa-key", KeyUsage::Both, &ct, padding).unwrap();
        assert_eq!(&out[..], &secret[..], "{padding:?}");
    }
    let mut ct = ssl.ok(&["pkeyutl", "-encrypt", "-pubin", "-inkey", &key_pem, "-in", &plain]);
    ct[10] ^= 1;
    let e = s.decrypt("rsa-key", KeyUsage::Both, &ct, RsaPadding::Pkcs1v15).unwrap_err();
    assert_eq!(e.code(), ErrorCode::DecryptionFailed, "{e}");
    assert_eq!(code(s.decrypt("ec-key", KeyUsage::Sign, &ct, RsaPadding::Pkcs1v15)), ErrorCode::UnsupportedAlgorithm);
}

#[test]
fn pins_wrong_change_unblock() {
    let Some(rig) = SoftHsm::enter("pins_wrong_change_unblock") else { return };
    rig.init_token("kb-pins", USER, SO);
    let mut t = open(&rig, "kb-pins");

    // SoftHSM2 reports no count: a wrong PIN is wrong_pin with the count unknown, and
    // pin_info says it cannot tell rather than inventing a number.
    assert_eq!(t.login(&pin("000000")).err(), Some(TokenError::WrongPinRetriesUnknown));
    assert_eq!(code(t.login(&pin("000000"))), ErrorCode::WrongPin);
    match t.pin_info(PinKind::User) {
        Err(TokenError::NotSupported(m)) => assert!(m.contains("few are left"), "{m}"),
        other => panic!("{other:?}"),
    }
    drop(t.login(&pin(USER)).unwrap());

    // Change the user PIN (C_SetPIN): the old one stops working; bad new PINs are refused.
    assert_eq!(code(t.change_pin(PinKind::User, &pin(USER), &pin("12"))), ErrorCode::PinPolicy);
    assert_eq!(code(t.change_pin(PinKind::User, &pin("999999"), &pin("24681357"))), ErrorCode::WrongPin);
    t.change_pin(PinKind::User, &pin(USER), &pin("24681357")).unwrap();
    assert_eq!(code(t.login(&pin(USER))), ErrorCode::WrongPin);
    drop(t.login(&pin("24681357")).unwrap());

    // Change the SO PIN, then unblock (C_InitPIN as SO) with the new one.
    assert_eq!(code(t.change_pin(PinKind::So, &pin("11112222"), &pin("55556666"))), ErrorCode::WrongPin);
    t.change_pin(PinKind::So, &pin(SO), &pin("55556666")).unwrap();
    assert_eq!(code(t.unblock_pin(&pin(SO), &pin("13572468"))), ErrorCode::WrongPin);
    t.unblock_pin(&pin("55556666"), &pin("13572468")).unwrap();
    assert_eq!(code(t.login(&pin("24681357"))), ErrorCode::WrongPin);
    drop(t.login(&pin("13572468")).unwrap());
    // pkcs11-tool agrees the new user PIN is the one.
    rig.tool_ok("kb-pins", &["--login", "--pin", "13572468", "--list-objects"]);
    assert!(!rig.tool("kb-pins", &["--login", "--pin", USER, "--list-objects"]).status.success());
}

#[test]
fn keygen_and_certificate_import() {
    let Some(rig) = SoftHsm::enter("keygen_and_certificate_import") else { return };
    rig.init_token("kb-gen", USER, SO);
    let ca = Ca::new();
    let mut t = open(&rig, "kb-gen");
    let mut s = t.login(&pin(USER)).unwrap();
    let ec = s.generate_key_pair("gen-ec", KeyUsage::Sign, Algorithm::EcdsaP256).unwrap();
    let rsa = s.generate_key_pair("gen-rsa", KeyUsage::Both, Algorithm::Rsa { bits: 2048 }).unwrap();
    assert_eq!((ec.algorithm(), rsa.algorithm()), (Algorithm::EcdsaP256, Algorithm::Rsa { bits: 2048 }));
    assert_eq!(code(s.generate_key_pair("x", KeyUsage::Encrypt, Algorithm::EcdsaP256)), ErrorCode::NotSupported);
    assert_eq!(code(s.generate_key_pair("x", KeyUsage::Sign, Algorithm::Sm2)), ErrorCode::NotSupported);
    assert_eq!(code(s.create_container("empty")), ErrorCode::NotSupported);

    let ec_cert = ca.issue("gen-ec", &ec, KeyUsage::Sign);
    let rsa_cert = ca.issue("gen-rsa", &rsa, KeyUsage::Both);
    assert_eq!(code(s.import_certificate("gen-ec", KeyUsage::Sign, rsa_cert.der())), ErrorCode::CertificateKeyMismatch);
    s.import_certificate("gen-ec", KeyUsage::Sign, ec_cert.der()).unwrap();
    s.import_certificate("gen-rsa", KeyUsage::Both, rsa_cert.der()).unwrap();
    // The generated key signs, and its certificate's key verifies.
    let scheme = SignatureScheme::Ecdsa(HashAlgorithm::Sha256);
    let sig = s.sign_digest("gen-ec", KeyUsage::Sign, &scheme, &ec.message_digest(&scheme, b"m").unwrap()).unwrap();
    ec_cert.public_key().unwrap().verify(&scheme, b"m", &sig).unwrap();
    drop(s);

    // pkcs11-tool sees our objects: key pairs and certificates under one CKA_ID each.
    let list = rig.tool_ok("kb-gen", &["--login", "--pin", USER, "--list-objects"]);
    for needle in
        ["Certificate Object", "Private Key Object; EC", "Private Key Object; RSA", "label:      gen-ec", "label:      gen-rsa"]
    {
        assert!(list.contains(needle), "{needle} not in:\n{list}");
    }
    let cs = t.containers().unwrap();
    assert_eq!(cs.len(), 2);
    assert!(cs.iter().all(|c| c.sign.as_ref().is_some_and(|s| s.certificate.is_some())), "{cs:?}");

    // Regenerating replaces the key pair and drops the old certificate; then delete.
    let mut s = t.login(&pin(USER)).unwrap();
    let ec2 = s.generate_key_pair("gen-ec", KeyUsage::Sign, Algorithm::EcdsaP256).unwrap();
    assert_ne!(ec2, ec);
    s.delete_certificate("gen-rsa", KeyUsage::Both).unwrap();
    assert_eq!(code(s.delete_certificate("gen-rsa", KeyUsage::Both)), ErrorCode::NotFound);
    s.delete_container("gen-rsa").unwrap();
    drop(s);
    let cs = t.containers().unwrap();
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].sign.as_ref().map(|s| s.certificate.is_none()), Some(true));
    assert_eq!(t.public_key("gen-ec", KeyUsage::Sign).unwrap(), ec2);
    let list = rig.tool_ok("kb-gen", &["--login", "--pin", USER, "--list-objects"]);
    assert!(!list.contains("Certificate Object") && !list.contains("gen-rsa"), "{list}");
}

#[track_caller]
fn next(rx: &Receiver<TransportEvent>) -> TransportEvent {
    rx.recv_timeout(Duration::from_secs(10)).expect("transport event")
}

#[test]
fn tokens_come_and_go() {
    let Some(rig) = SoftHsm::enter("tokens_come_and_go") else { return };
    rig.init_token("kb-a", USER, SO);
    rig.init_token("kb-b", USER, SO);
    let transport = Pkcs11Transport::new(rig.module()).with_poll_interval(Duration::from_millis(100));
    let rx = transport.watch().unwrap();
    let mut added = Vec::new();
    loop {
        match next(&rx) {
            TransportEvent::Added(i) => added.push(i),
            TransportEvent::EnumerationComplete => break,
            other => panic!("{other:?}"),
        }
    }
    added.sort_by(|x, y| x.label.cmp(&y.label));
    let labels: Vec<&str> = added.iter().map(|i| i.label.as_str()).collect();
    assert_eq!(labels, ["kb-a", "kb-b"]);
    let (a, b) = (added[0].clone(), added[1].clone());
    let mut token_a = transport.open(&a.id).unwrap();
    let mut token_b = transport.open(&b.id).unwrap();
    assert!(token_a.containers().unwrap().is_empty());

    // Removed at run time: an event, and a clean device_removed from the open token.
    let t0 = Instant::now();
    rig.delete_token("kb-a");
    assert_eq!(next(&rx), TransportEvent::Removed(a.id.clone()));
    assert!(t0.elapsed() < Duration::from_secs(2), "removal seen after {:?}", t0.elapsed());
    assert_eq!(code(token_a.containers()), ErrorCode::DeviceRemoved);
    assert_eq!(code(token_a.login(&pin(USER)).map(|_| ())), ErrorCode::DeviceRemoved);
    assert_eq!(code(transport.open(&a.id).map(|_| ())), ErrorCode::DeviceRemoved);
    // The other token is unaffected.
    drop(token_b.login(&pin(USER)).unwrap());
}

#[test]
fn bad_module_paths_have_a_stable_code() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("not-a-module.so");
    std::fs::write(&text, "this is not a shared library").unwrap();
    // A real shared library that is not a PKCS#11 module.
    let libz = ["/usr/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/aarch64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file());
    let mut cases =
        vec![(dir.path().join("missing.so"), "no such file"), (text, "cannot load"), ("relative.so".into(), "absolute")];
    if let Some(z) = libz {
        cases.push((z, "C_GetFunctionList"));
    }
    for (path, says) in cases {
        let e = Pkcs11Module::load(&path).unwrap_err();
        assert_eq!(e.code(), ErrorCode::ModuleLoadFailed, "{path:?}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(says) && msg.contains(path.to_str().unwrap()), "{msg}");

        // Through the transport: one Error event with the code's name, then enumeration
        // completes (other media are not held up); opening fails with the same code.
        let transport = Pkcs11Transport::new(&path);
        let rx = transport.watch().unwrap();
        match next(&rx) {
            TransportEvent::Error(m) => assert!(m.starts_with("module_load_failed: "), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(next(&rx), TransportEvent::EnumerationComplete);
        assert_eq!(code(transport.open(&DeviceId("pkcs11:x:1".into())).map(|_| ())), ErrorCode::ModuleLoadFailed);
    }
}
