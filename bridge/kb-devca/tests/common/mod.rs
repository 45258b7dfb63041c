//! What the EST interop tests share: a renewal approved the way the phone pages and the
//! operator would, and a TLS identity for `localhost`.
#![allow(dead_code, clippy::unwrap_used)]

use kb_ca::api::{self, RenewalKind};
use kb_crypto::PrivateKey;
use kb_devca::DevCa;
use kb_pki::issue::{CertKind, CertificateParams, self_signed};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner, Signer};
use kb_types::Algorithm;

/// Bind `cert` (proven by `key`) to a phone, apply for `kind` (one year), pay, approve:
/// the application id.
pub(crate) fn approved(ca: &DevCa, key: &LocalSigner, cert: &Certificate, kind: RenewalKind) -> String {
    let ch = ca.challenge().unwrap().challenge;
    let sig = key.sign_message(&kb_ca::proof::binding_message(&ch, "M-1", cert.der())).unwrap();
    let b = ca
        .request_binding(&api::BindingRequest {
            challenge: ch,
            medium_serial: "M-1".into(),
            certificates: vec![api::ProvenCertificate { certificate: api::b64(cert.der()), signature: api::b64(&sig) }],
        })
        .unwrap();
    let phone = ca.answer_binding(&b.token, true).unwrap().unwrap();
    let app = ca.apply(&phone, &api::serial_of(cert), kind, 1, None).unwrap();
    ca.pay(&phone, &app).unwrap();
    ca.decide(&app, true, "").unwrap();
    app
}

/// A self-signed ECDSA P-256 server certificate for `localhost`, valid from yesterday for
/// 30 days, and its key (PEM).
pub(crate) fn tls_identity() -> (Certificate, String) {
    let key = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let mut p = CertificateParams::new("CN=localhost", CertKind::Root { path_len: Some(0) }, UnixTime::now().plus_days(-1), 30);
    p.subject_alt_names = vec!["localhost".into()];
    let cert = self_signed(&p, &LocalSigner::new(key.clone())).unwrap();
    (cert, key.to_pkcs8_pem().unwrap().to_string())
}
