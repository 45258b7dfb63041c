//! SM2 CMS (GM/T 0010) against an implementation nobody here wrote: the GmSSL 3.1.1 CLI
//! (`gmssl cmsencrypt/cmsdecrypt/cmssign/cmsverify`), built by installer/bootstrap.sh from
//! the GmSSL source in PyPI's `easy_gmssl` sdist. What passes and what cannot, and why, is
//! in docs/sm2-cms.md:
//!
//! - GmSSL envelopes (EnvelopedData v1, RecipientInfo v1, key transport `301.2`) open in
//!   KeyBridge;
//! - KeyBridge envelopes in GmSSL form (`Sm2KeyTransport::GmSsl`) open in GmSSL; our
//!   standard form (`301.3`, v0) is refused by GmSSL, which accepts only its own;
//! - GmSSL SignedData is signed over SM3(encapsulated ContentInfo) without ZA: KeyBridge
//!   refuses it with `cms_signature_non_conformant` naming exactly that, while GmSSL
//!   itself accepts it; GmSSL likewise refuses KeyBridge's standard SignedData.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::{PrivateKey, PublicKey};
use kb_interop::{GmSsl, gmssl_cli, path_in, pem, random_message, read, tempdir, write};
use kb_pki::cms::envelope::{decrypt_bytes, encrypt_bytes};
use kb_pki::cms::{EnvelopeOptions, LocalDecrypter, SignOptions, SignedMessage, Sm2KeyTransport, sign};
use kb_pki::issue::TestCa;
use kb_pki::signer::{LocalSigner, Signer};
use kb_pki::{Certificate, PkiError};
use kb_types::{Algorithm, ErrorCode, HasErrorCode, KeyUsage};
use std::path::Path;

const PASS: &str = "kb-interop";

/// A key pair made by GmSSL (its encrypted PKCS#8 PEM stays with GmSSL) and its public key.
fn gmssl_key(g: &GmSsl, dir: &Path) -> (String, PublicKey) {
    let key = path_in(dir, "gm-key.pem");
    let public = path_in(dir, "gm-pub.pem");
    g.ok(&["sm2keygen", "-pass", PASS, "-out", &key, "-pubout", &public]);
    let text = read(&public);
    let (label, der) = der::pem::decode_vec(&text).unwrap();
    assert_eq!(label, "PUBLIC KEY");
    (key, PublicKey::from_spki_der(&der).unwrap())
}

/// A GmSSL key pair with a KeyBridge test-CA certificate for `usage`: (GmSSL's key file,
/// the certificate, its PEM file).
fn gmssl_holder(g: &GmSsl, dir: &Path, usage: KeyUsage) -> (String, Certificate, String) {
    let (key, public) = gmssl_key(g, dir);
    let cert = ca().leaf(&format!("C=CN,CN=GmSSL {usage}"), &public, usage).unwrap();
    let pem = cert_file(dir, &format!("gm-{usage}.pem"), &cert);
    (key, cert, pem)
}

fn ca() -> TestCa {
    TestCa::new(Algorithm::Sm2, "C=CN,O=KeyBridge Interop,CN=GmSSL CMS CA").unwrap()
}

fn cert_file(dir: &Path, name: &str, c: &Certificate) -> String {
    write(dir, name, c.to_pem())
}

#[test]
fn gmssl_envelopes_open_in_keybridge() {
    let Some(g) = gmssl_cli() else { return };
    let d = tempdir();
    let d = d.path();
    let ca = ca();
    let key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let cert = ca.leaf("C=CN,CN=收件人", &key.public_key(), KeyUsage::Encrypt).unwrap();
    let cert_pem = cert_file(d, "rcpt.pem", &cert);
    let dec = LocalDecrypter::new(key, cert).unwrap();
    for (i, msg) in [b"x".to_vec(), random_message(100), random_message(70_000)].into_iter().enumerate() {
        let input = write(d, &format!("m{i}"), &msg);
        let env = path_in(d, &format!("env{i}.pem"));
        g.ok(&["cmsencrypt", "-rcptcert", &cert_pem, "-in", &input, "-out", &env]);
        if i == 0 {
            // The variant under test: GmSSL's own form.
            let parsed = String::from_utf8(g.ok(&["cmsparse", "-in", &env])).unwrap();
            assert!(parsed.contains("algorithm: sm2encrypt") && parsed.matches("version: 1").count() == 2, "{parsed}");
        }
        let got = decrypt_bytes(&read(&env), &dec).unwrap_or_else(|e| panic!("GmSSL envelope of {} bytes: {e}", msg.len()));
        assert_eq!(&got[..], &msg[..]);
    }
}

#[test]
fn keybridge_envelopes_in_gmssl_form_open_in_gmssl() {
    let Some(g) = gmssl_cli() else { return };
    let d = tempdir();
    let d = d.path();
    let (gm_key, cert, cert_pem) = gmssl_holder(&g, d, KeyUsage::Encrypt);
    let msg = random_message(50_000);
    let decrypt = |name: &str, env: &[u8]| {
        let env_path = write(d, name, pem("CMS", env));
        let out = path_in(d, &format!("{name}.out"));
        let run = g.run(&["cmsdecrypt", "-key", &gm_key, "-pass", PASS, "-cert", &cert_pem, "-in", &env_path, "-out", &out]);
        run.status.success().then(|| read(&out))
    };
    let gmssl_form = EnvelopeOptions { sm2_key_transport: Sm2KeyTransport::GmSsl, ..Default::default() };
    let env = encrypt_bytes(&msg, std::slice::from_ref(&cert), &gmssl_form).unwrap();
    assert_eq!(decrypt("gmssl-form.pem", &env).as_deref(), Some(&msg[..]), "GmSSL refused our GmSSL-form envelope");
    // Our default (GM/T 0006 SM2-3 `301.3`, version 0): GmSSL 3.1.1 accepts only `301.2`
    // with version 1 (src/cms.c cms_recipient_info_from_der), so it refuses it.
    let env = encrypt_bytes(&msg, std::slice::from_ref(&cert), &EnvelopeOptions::default()).unwrap();
    assert_eq!(decrypt("standard-form.pem", &env), None, "GmSSL 3.1.1 now opens 301.3 envelopes: update docs/sm2-cms.md");
}

#[test]
fn gmssl_signed_data_is_refused_with_what_was_found() {
    let Some(g) = gmssl_cli() else { return };
    let d = tempdir();
    let d = d.path();
    let (gm_key, _, cert_pem) = gmssl_holder(&g, d, KeyUsage::Sign);
    let msg = random_message(5_000);
    let input = write(d, "m", &msg);
    let sd = path_in(d, "sd.pem");
    g.ok(&["cmssign", "-key", &gm_key, "-pass", PASS, "-cert", &cert_pem, "-in", &input, "-out", &sd]);
    // GmSSL itself is happy with it …
    let out = String::from_utf8(g.ok(&["cmsverify", "-in", &sd])).unwrap();
    assert!(out.contains("verify success"), "{out}");
    // … KeyBridge parses it, finds the content, and refuses the signature, saying why.
    let m = SignedMessage::from_der(&read(&sd)).unwrap();
    assert_eq!(m.content(), Some(&msg[..]));
    match m.verify(None, &[]) {
        Err(e @ PkiError::CmsSignatureNonConformant { .. }) => {
            assert_eq!(e.code(), ErrorCode::CmsSignatureNonConformant);
            let text = e.to_string();
            assert!(
                text.contains("SM3(encapsulated ContentInfo) without ZA") && text.contains("not GM/T 0009/0010 conformant"),
                "{text}"
            );
        }
        other => panic!("GmSSL SignedData: want a non-conformance diagnosis, got {other:?}"),
    }
}

#[test]
fn gmssl_refuses_standard_signed_data() {
    let Some(g) = gmssl_cli() else { return };
    let d = tempdir();
    let d = d.path();
    let ca = ca();
    let s = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
    let cert = ca.leaf("C=CN,CN=签名者", s.public_key(), KeyUsage::Sign).unwrap();
    let msg = random_message(1_000);
    let sd = sign(&msg, &s, &cert, &SignOptions::default()).unwrap();
    assert_eq!(SignedMessage::from_der(&sd).unwrap().verify(None, &[]).unwrap().len(), 1);
    let path = write(d, "kb-sd.pem", pem("CMS", &sd));
    // GmSSL 3.1.1 checks its own digest (SM3 over the ContentInfo and attributes, no ZA)
    // and SM2 signature OID 1.2.156.10197.1.501 only: a GM/T 0010 SignedData fails there.
    let out = g.run(&["cmsverify", "-in", &path]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("verify success"), "GmSSL 3.1.1 now verifies GM/T 0010 SignedData: update docs/sm2-cms.md\n{text}");
}
