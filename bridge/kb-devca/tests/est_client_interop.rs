//! The dev CA's EST endpoints driven by an EST client nobody here wrote: the crates.io
//! crate **est-ca 0.2.0** (`est_ca::est::client`: `cacerts`, `simpleenroll`,
//! `simplereenroll` over a caller-supplied `reqwest` 0.12 client with native-tls; its
//! `make_csr` makes a P-256 key pair and PKCS#10 with rcgen 0.13).
//!
//! How the dev CA authorises, and what the test gives it:
//! - `simpleenroll` (变更/补发, a new key): HTTP Basic `application-id : base64(signature)`,
//!   the signature made with the *old* certificate's key over the application id and the
//!   new key (`kb_ca::proof::enrol_message`). est-ca's client sends whatever user and
//!   password it is handed, so the test computes that password from est-ca's own CSR.
//! - `simplereenroll` (续期, the same key): est-ca expects an mTLS client, and the test
//!   builds one with the certificate just issued and est-ca's key. The dev CA asks for a
//!   client certificate in the handshake but does not authorise by it: what it checks is
//!   an approved 续期 application for a certificate it issued to the CSR's key, and the
//!   CSR's self-signature (proof of possession of that key).
//!
//! est-ca has no helper for a second CSR with a kept key, so the re-enrolment CSR is made
//! with rcgen 0.13 (est-ca's CSR library) exactly as `est_ca::est::client::make_csr` makes
//! one, from the key PEM `make_csr` returned.
//!
//! `openssl verify` also checks the issued certificates; a missing `openssl` skips that
//! part, unless `KB_INTEROP_REQUIRED=1`.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

mod common;

use est_ca::est::client as est;
use kb_ca::api::{self, RenewalKind};
use kb_crypto::PrivateKey;
use kb_devca::{Config, DevCa, ManualClock, Server};
use kb_pki::chain::{TrustStore, verify_chain};
use kb_pki::csr::CertificationRequest;
use kb_pki::issue::{CertKind, CertificateParams, issue, self_signed};
use kb_pki::time::{DAY, UnixTime};
use kb_pki::{Certificate, LocalSigner, Signer};
use kb_types::{Algorithm, KeyUsage};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const COMMON_NAME: &str = "est-ca client";
const DISTID: &str = "distid:1234567812345678";

/// What `est_ca::est::client::make_csr` does, with a key kept from an earlier call.
fn csr_with_key(key_pem: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![COMMON_NAME.to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, COMMON_NAME);
    params.serialize_request(&key).unwrap().der().to_vec()
}

/// `openssl verify` of `leaf` against `root`; false when OpenSSL is missing (and allowed to be).
fn openssl_verifies(dir: &Path, root: &Certificate, leaf: &Certificate) -> bool {
    if Command::new("openssl").arg("version").output().is_err() {
        assert_ne!(std::env::var("KB_INTEROP_REQUIRED").as_deref(), Ok("1"), "openssl is required (KB_INTEROP_REQUIRED=1)");
        return false;
    }
    let (r, l) = (dir.join("root.pem"), dir.join(format!("{}.pem", leaf.serial_hex())));
    std::fs::write(&r, root.to_pem()).unwrap();
    std::fs::write(&l, leaf.to_pem()).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-vfyopt", DISTID, "-CAfile", r.to_str().unwrap(), l.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn est_ca_client_enrols_and_reenrols_with_the_dev_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The dev CA's clock starts a year and a day back, so the certificate enrolled now can
    // be renewed a year later (renewal opens 90 days before expiry) and every certificate
    // is valid at the real time OpenSSL checks them at.
    let real = UnixTime::now();
    let (t1, t0) = (real.0 - DAY, real.0 - DAY - 365 * DAY);
    let clock = Arc::new(ManualClock::new(t0));
    let root_signer = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
    let root = self_signed(
        &CertificateParams::new(
            "CN=EST Client Interop Dev Root",
            CertKind::Root { path_len: Some(0) },
            UnixTime(t0 - 400 * DAY),
            3650,
        ),
        &root_signer,
    )
    .unwrap();
    let config = Config { name: "est-client-interop".into(), public_url: String::new(), operator_key: "k".into() };
    let ca = Arc::new(DevCa::open(&d.join("ca.sqlite"), root.clone(), root_signer.clone(), clock.clone(), config).unwrap());
    let (tls_cert, tls_key) = common::tls_identity();
    let server = Server::start_tls(Arc::clone(&ca), "127.0.0.1:0".parse().unwrap(), &tls_cert.to_pem(), &tls_key).unwrap();
    let base = format!("https://localhost:{}", server.addr().port());
    // `localhost` resolves to loopback; no proxy from the environment.
    let client = |identity: Option<reqwest::Identity>| {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(60))
            .add_root_certificate(reqwest::Certificate::from_pem(tls_cert.to_pem().as_bytes()).unwrap());
        if let Some(i) = identity {
            b = b.identity(i);
        }
        b.build().unwrap()
    };
    let http = client(None);
    let trust = TrustStore::from_certs([root.clone()]);

    // /cacerts: exactly our root.
    assert_eq!(est::cacerts(&http, &base).await.unwrap(), root.der());

    // The user's current certificate (an SM2 key), 20 days from expiry; 变更 approved.
    let old_key = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
    let mut lp = CertificateParams::leaf(&format!("CN={COMMON_NAME}"), KeyUsage::Sign, UnixTime(t0 - 300 * DAY), 1);
    lp.not_after = UnixTime(t0 + 20 * DAY);
    let old = issue(&lp, old_key.public_key(), Some(&root), &root_signer).unwrap();
    let rekey = common::approved(&ca, &old_key, &old, RenewalKind::Rekey);

    // simpleenroll with est-ca's own P-256 key and CSR.
    let (csr, key_pem) = est::make_csr(COMMON_NAME).unwrap();
    let key = LocalSigner::new(PrivateKey::from_pkcs8_pem(&key_pem).unwrap());
    assert_eq!(key.public_key().algorithm(), Algorithm::EcdsaP256);
    let csr_key = CertificationRequest::from_der(&csr).unwrap().public_key().unwrap();
    assert_eq!(csr_key, *key.public_key());
    let spki = csr_key.to_spki_der().unwrap();
    let password = api::b64(&old_key.sign_message(&kb_ca::proof::enrol_message(&rekey, &spki)).unwrap());
    // A password the old key did not make is refused (401), and est-ca reports it.
    let forged = api::b64(&key.sign_message(&kb_ca::proof::enrol_message(&rekey, &spki)).unwrap());
    let refused = est::simpleenroll(&http, &base, &rekey, &forged, &csr).await.unwrap_err().to_string();
    assert!(refused.contains("401"), "{refused}");
    let enrolled = Certificate::from_der(&est::simpleenroll(&http, &base, &rekey, &password, &csr).await.unwrap()).unwrap();
    assert_eq!(enrolled.public_key().unwrap(), csr_key);
    assert_eq!(enrolled.subject(), old.subject());
    verify_chain(&enrolled, &[], &trust, real).unwrap();
    let openssl = openssl_verifies(d, &root, &enrolled);

    // A year on, 20 days before the new certificate expires: 续期 approved.
    clock.advance(t1 - t0);
    let renew = common::approved(&ca, &key, &enrolled, RenewalKind::Renew);
    assert_ne!(renew, rekey);

    // simplereenroll with the same key, over mTLS with the certificate just issued.
    let mtls = client(Some(reqwest::Identity::from_pkcs8_pem(enrolled.to_pem().as_bytes(), key_pem.as_bytes()).unwrap()));
    // A key the dev CA never certified gets no renewal, client certificate or not (403).
    let (stranger_csr, _) = est::make_csr(COMMON_NAME).unwrap();
    let refused = est::simplereenroll(&mtls, &base, &stranger_csr).await.unwrap_err().to_string();
    assert!(refused.contains("403"), "{refused}");
    let csr2 = csr_with_key(&key_pem);
    assert_ne!(csr2, csr, "a new request");
    let renewed = Certificate::from_der(&est::simplereenroll(&mtls, &base, &csr2).await.unwrap()).unwrap();
    assert_eq!(renewed.public_key().unwrap(), csr_key, "the same key");
    assert_ne!(renewed.serial_hex(), enrolled.serial_hex(), "a new serial");
    assert_eq!(renewed.subject(), enrolled.subject());
    assert!(renewed.not_after() > enrolled.not_after());
    verify_chain(&renewed, &[], &trust, real).unwrap();
    assert_eq!(openssl_verifies(d, &root, &renewed), openssl);
}
