//! Scenario tests of the file commands, through the real `keybridge` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::PrivateKey;
use kb_pki::cms::{SignOptions, sign};
use kb_pki::issue::{CertKind, CertificateParams, issue, self_signed};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner};
use kb_types::{Algorithm, KeyUsage};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn kb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keybridge")).args(args).output().unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn error_code(out: &Output) -> u64 {
    json(out)["error"]["code"].as_u64().unwrap_or(0)
}

struct Fixture {
    dir: tempfile::TempDir,
    leaf_key: PrivateKey,
}

impl Fixture {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn fixture(leaf_days: i64, leaf_start: UnixTime) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ca_s = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
    let ca = self_signed(
        &CertificateParams::new("C=CN,CN=CLI Test CA", CertKind::Root { path_len: None }, UnixTime::now().plus_days(-400), 3650),
        &ca_s,
    )
    .unwrap();
    let leaf_key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let leaf = issue(
        &CertificateParams::leaf("C=CN,O=测试单位,CN=签名人", KeyUsage::Sign, leaf_start, leaf_days),
        &leaf_key.public_key(),
        Some(&ca),
        &ca_s,
    )
    .unwrap();
    let enc_key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let enc = issue(
        &CertificateParams::leaf("C=CN,O=测试单位,CN=签名人", KeyUsage::Encrypt, leaf_start, leaf_days),
        &enc_key.public_key(),
        Some(&ca),
        &ca_s,
    )
    .unwrap();
    let w = |n: &str, b: &[u8]| std::fs::write(dir.path().join(n), b).unwrap();
    w("ca.pem", ca.to_pem().as_bytes());
    w("leaf.der", leaf.der());
    w("enc.pem", enc.to_pem().as_bytes());
    w("enc.key", enc_key.to_pkcs8_pem().unwrap().as_bytes());
    Fixture { dir, leaf_key }
}

fn leaf(f: &Fixture) -> Certificate {
    Certificate::from_der(&std::fs::read(f.path("leaf.der")).unwrap()).unwrap()
}

#[test]
fn cert_show_text_and_json() {
    let f = fixture(365, UnixTime::now().plus_days(-1));
    let out = kb(&[
        "cert",
        "show",
        "--file",
        &f.path("leaf.der"),
        "--thumbprint",
        "sha1",
        "--thumbprint",
        "sm3",
        "--ca",
        &f.path("ca.pem"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("CN=签名人, O=测试单位, C=CN"), "{text}");
    assert!(text.contains("OK (2 certificates)"));
    let out = kb(&["--json", "cert", "show", "--file", &f.path("leaf.der"), "--thumbprint", "md5", "--thumbprint", "sha256"]);
    let v = json(&out);
    let cert = leaf(&f);
    assert_eq!(v["serial"], cert.serial_hex());
    assert_eq!(v["usage"], "sign");
    assert_eq!(v["thumbprints"]["md5"], cert.thumbprint(kb_types::HashAlgorithm::Md5));
    assert_eq!(v["thumbprints"]["sha256"], cert.thumbprint(kb_types::HashAlgorithm::Sha256));
    assert_eq!(v["thumbprint_sha1"], cert.thumbprint(kb_types::HashAlgorithm::Sha1));
    // A CA certificate is labelled a CA (was "sign+encrypt").
    let out = kb(&["cert", "show", "--file", &f.path("ca.pem")]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(" CA [digitalSignature, keyCertSign, cRLSign]"), "{text}");
    assert_eq!(json(&kb(&["--json", "cert", "show", "--file", &f.path("ca.pem")]))["role"], "ca");
}

#[test]
fn bad_inputs_have_stable_codes() {
    let f = fixture(365, UnixTime::now().plus_days(-1));
    std::fs::write(f.path("junk.der"), b"\x30\x82\x01\x00garbage").unwrap();
    let out = kb(&["--json", "cert", "show", "--file", &f.path("junk.der")]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(error_code(&out), 3001, "certificate_malformed");
    let out = kb(&["--json", "cert", "show", "--file", &f.path("missing.der")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(error_code(&out), 9001, "io");
    // Expired certificate: details still shown, chain check fails with 3002.
    let old = fixture(10, UnixTime::now().plus_days(-30));
    let out = kb(&["--json", "cert", "show", "--file", &old.path("leaf.der"), "--ca", &old.path("ca.pem")]);
    assert_eq!(out.status.code(), Some(2));
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().split("\n{\"error\"").collect();
    assert!(lines[0].contains("\"status\": \"expired\""), "{}", lines[0]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"code\":3002"));
    // Another CA with the same name: the issuer is found by name but its signature fails (3005).
    let other = fixture(365, UnixTime::now().plus_days(-1));
    let out = kb(&["--json", "cert", "show", "--file", &f.path("leaf.der"), "--ca", &other.path("ca.pem")]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"code\":3005"));
    // A trust bundle without the issuer at all: 3004 unknown issuer.
    let out = kb(&["--json", "cert", "show", "--file", &f.path("leaf.der"), "--ca", &f.path("enc.pem")]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"code\":3004"));
}

#[test]
fn verify_detached_and_attached() {
    let f = fixture(365, UnixTime::now().plus_days(-1));
    let s = LocalSigner::new(f.leaf_key.clone());
    let content = "投标文件正文".repeat(1000).into_bytes();
    std::fs::write(f.path("bid.txt"), &content).unwrap();
    let det = sign(&content, &s, &leaf(&f), &SignOptions { detached: true, ..Default::default() }).unwrap();
    std::fs::write(f.path("bid.p7s"), det).unwrap();
    let att = sign(&content, &s, &leaf(&f), &SignOptions::default()).unwrap();
    std::fs::write(f.path("bid.p7m"), att).unwrap();

    let ok = kb(&["--json", "verify", "--sig", &f.path("bid.p7s"), "--in", &f.path("bid.txt"), "--ca", &f.path("ca.pem")]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let v = json(&ok);
    assert_eq!(v["ok"], true);
    assert_eq!(v["signers"][0]["chain"]["ok"], true);
    assert!(kb(&["verify", "--sig", &f.path("bid.p7m")]).status.success());

    let mut changed = content.clone();
    changed[10] ^= 1;
    std::fs::write(f.path("changed.txt"), &changed).unwrap();
    let bad = kb(&["--json", "verify", "--sig", &f.path("bid.p7s"), "--in", &f.path("changed.txt")]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(error_code(&bad), 3021);
    let missing = kb(&["--json", "verify", "--sig", &f.path("bid.p7s")]);
    assert_eq!(error_code(&missing), 3023, "detached without content");
    std::fs::write(f.path("trunc.p7s"), &std::fs::read(f.path("bid.p7s")).unwrap()[..100]).unwrap();
    assert_eq!(error_code(&kb(&["--json", "verify", "--sig", &f.path("trunc.p7s")])), 3020);
}

#[test]
fn encrypt_streams_to_an_envelope_others_can_open() {
    let f = fixture(365, UnixTime::now().plus_days(-1));
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(f.path("bid.bin"), &data).unwrap();
    let out = kb(&["--json", "encrypt", "--to", &f.path("enc.pem"), "--in", &f.path("bid.bin"), "--out", &f.path("bid.p7e")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(json(&out)["bytes_in"], 3_000_000);
    // Open with the library and the recipient's key.
    let key = PrivateKey::from_pkcs8_pem(&std::fs::read_to_string(f.path("enc.key")).unwrap()).unwrap();
    let cert = Certificate::from_pem(&std::fs::read_to_string(f.path("enc.pem")).unwrap()).unwrap();
    let d = kb_pki::cms::LocalDecrypter::new(key, cert).unwrap();
    let plain = kb_pki::cms::envelope::decrypt_bytes(&std::fs::read(f.path("bid.p7e")).unwrap(), &d).unwrap();
    assert!(plain[..] == data[..]);
    // Encrypting to a signing certificate is refused (3008) and leaves no output behind.
    let bad = kb(&["--json", "encrypt", "--to", &f.path("leaf.der"), "--in", &f.path("bid.bin"), "--out", &f.path("x.p7e")]);
    assert_eq!(error_code(&bad), 3008);
    assert!(!Path::new(&f.path("x.p7e")).exists() && !Path::new(&f.path("x.kbtmp")).exists());
}
