//! The dev CA's EST endpoints driven by tools nobody here wrote: OpenSSL makes the key
//! pairs and the PKCS#10 requests (SM2 with the GM/T default ID), curl speaks HTTPS with
//! the RFC 7030 headers (base64 body, `application/pkcs10`, HTTP Basic for simpleenroll),
//! and OpenSSL decodes the base64 certs-only PKCS#7 answers. The OpenXPKI EST
//! documentation's own smoke test is made of the same two tools.
//!
//! Missing `openssl` or `curl` skips the test, unless `KB_INTEROP_REQUIRED=1`.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

mod common;

use kb_ca::api::{self, RenewalKind};
use kb_crypto::PrivateKey;
use kb_devca::{Config, DevCa, Server, SystemClock};
use kb_pki::issue::{CertKind, CertificateParams, issue, self_signed};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner, Signer};
use kb_types::{Algorithm, KeyUsage};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const DISTID: &str = "distid:1234567812345678";
const SUBJECT: &str = "C=CN,O=Interop,CN=est-peer";

fn have(tool: &str) -> bool {
    let ok = Command::new(tool).arg("version").output().is_ok() || Command::new(tool).arg("--version").output().is_ok();
    if !ok && std::env::var("KB_INTEROP_REQUIRED").as_deref() == Ok("1") {
        panic!("{tool} is required (KB_INTEROP_REQUIRED=1) but not installed");
    }
    ok
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// An SM2 key pair made by OpenSSL (PKCS#8 PEM), and the same key for kb-pki.
fn openssl_sm2_key(dir: &Path, name: &str) -> (String, LocalSigner) {
    let path = dir.join(format!("{name}.key"));
    run(Command::new("openssl").args(["genpkey", "-algorithm", "SM2", "-out", path.to_str().unwrap()]));
    let key = PrivateKey::from_pkcs8_pem(&std::fs::read_to_string(&path).unwrap()).unwrap();
    (path.display().to_string(), LocalSigner::new(key))
}

/// `openssl req` → base64 DER PKCS#10, as an EST request body.
fn openssl_csr(dir: &Path, key: &str, name: &str) -> String {
    let b64 = dir.join(format!("{name}.b64"));
    let der = dir.join(format!("{name}.der"));
    run(Command::new("openssl").args([
        "req",
        "-new",
        "-key",
        key,
        "-subj",
        "/C=CN/O=Interop/CN=est-peer",
        "-sm3",
        "-sigopt",
        DISTID,
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]));
    run(Command::new("openssl").args(["base64", "-in", der.to_str().unwrap(), "-out", b64.to_str().unwrap()]));
    b64.display().to_string()
}

/// POST with curl the way RFC 7030 says; the answer's certificates, decoded by OpenSSL.
fn curl_enroll(dir: &Path, url: &str, tls_root: &str, body: &str, auth: Option<&str>) -> Vec<Certificate> {
    let out = dir.join("answer.b64");
    let mut c = Command::new("curl");
    c.args(["-sS", "--fail-with-body", "--cacert", tls_root, "-H", "Content-Type: application/pkcs10"]).args([
        "-H",
        "Content-Transfer-Encoding: base64",
        "--data-binary",
        &format!("@{body}"),
        "-o",
        out.to_str().unwrap(),
    ]);
    if let Some(a) = auth {
        c.args(["-u", a]);
    }
    c.arg(url);
    run(&mut c);
    certs_from_answer(dir, &out)
}

fn certs_from_answer(dir: &Path, b64: &Path) -> Vec<Certificate> {
    let der = dir.join("answer.p7");
    run(Command::new("openssl").args(["base64", "-d", "-A", "-in", b64.to_str().unwrap(), "-out", der.to_str().unwrap()]));
    let pem = run(Command::new("openssl").args(["pkcs7", "-inform", "DER", "-in", der.to_str().unwrap(), "-print_certs"]));
    Certificate::load_pem_chain(&String::from_utf8(pem).unwrap()).unwrap()
}

#[test]
fn curl_and_openssl_enrol_and_reenrol_with_the_dev_ca() {
    if !(have("openssl") && have("curl")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root_signer = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
    let root = self_signed(
        &CertificateParams::new(
            "CN=Interop Dev Root",
            CertKind::Root { path_len: Some(0) },
            UnixTime::now().plus_days(-400),
            3650,
        ),
        &root_signer,
    )
    .unwrap();
    let config = Config { name: "interop".into(), public_url: String::new(), operator_key: "k".into() };
    let ca =
        Arc::new(DevCa::open(&d.join("ca.sqlite"), root.clone(), root_signer.clone(), Arc::new(SystemClock), config).unwrap());
    // HTTPS, as EST clients expect, with a P-256 server certificate for localhost.
    let (tls_cert, tls_key) = common::tls_identity();
    let tls_root = d.join("tls-root.pem");
    std::fs::write(&tls_root, tls_cert.to_pem()).unwrap();
    let server = Server::start_tls(Arc::clone(&ca), "127.0.0.1:0".parse().unwrap(), &tls_cert.to_pem(), &tls_key).unwrap();
    let est = format!("https://localhost:{}/.well-known/est", server.addr().port());
    let tls_root = tls_root.to_str().unwrap();

    // /cacerts with curl + openssl.
    let b64 = d.join("cacerts.b64");
    run(Command::new("curl").args([
        "-sS",
        "--fail-with-body",
        "--cacert",
        tls_root,
        "-o",
        b64.to_str().unwrap(),
        &format!("{est}/cacerts"),
    ]));
    assert_eq!(certs_from_answer(d, &b64), vec![root.clone()]);

    // The user's key (made by OpenSSL) holds a certificate expiring in 20 days; the
    // renewal is bound, applied for and approved.
    let (key_path, key) = openssl_sm2_key(d, "user");
    let now = UnixTime::now();
    let mut lp = CertificateParams::leaf(SUBJECT, KeyUsage::Sign, now.plus_days(-300), 1);
    lp.not_after = now.plus_days(20);
    let old = issue(&lp, key.public_key(), Some(&root), &root_signer).unwrap();

    // simplereenroll: OpenSSL's CSR with the same key.
    common::approved(&ca, &key, &old, RenewalKind::Renew);
    let csr = openssl_csr(d, &key_path, "renew");
    let renewed = curl_enroll(d, &format!("{est}/simplereenroll"), tls_root, &csr, None);
    assert_eq!(renewed.len(), 1);
    assert_eq!(renewed[0].public_key().unwrap(), *key.public_key());
    assert_eq!(renewed[0].subject(), old.subject());
    assert!(renewed[0].not_after() > old.not_after());
    // OpenSSL verifies the issued certificate against the root.
    std::fs::write(d.join("root.pem"), root.to_pem()).unwrap();
    std::fs::write(d.join("renewed.pem"), renewed[0].to_pem()).unwrap();
    run(Command::new("openssl").args([
        "verify",
        "-vfyopt",
        DISTID,
        "-CAfile",
        d.join("root.pem").to_str().unwrap(),
        d.join("renewed.pem").to_str().unwrap(),
    ]));

    // simpleenroll: a new OpenSSL key, authorised (HTTP Basic) by the old key.
    let app = common::approved(&ca, &key, &old, RenewalKind::Rekey);
    let (new_key_path, new_key) = openssl_sm2_key(d, "new");
    let csr = openssl_csr(d, &new_key_path, "rekey");
    let auth =
        api::b64(&key.sign_message(&kb_ca::proof::enrol_message(&app, &new_key.public_key().to_spki_der().unwrap())).unwrap());
    // Without the authorisation curl gets 401.
    let refused = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %header{www-authenticate}", "--cacert", tls_root])
        .args(["-H", "Content-Type: application/pkcs10"])
        .args(["--data-binary", &format!("@{csr}"), &format!("{est}/simpleenroll")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "401 Basic realm=\"KeyBridge dev CA EST\"");
    let issued = curl_enroll(d, &format!("{est}/simpleenroll"), tls_root, &csr, Some(&format!("{app}:{auth}")));
    assert_eq!(issued[0].public_key().unwrap(), *new_key.public_key());
    assert_eq!(issued[0].subject(), old.subject());
}
