//! CRLs with the OpenSSL 3 command line, both directions:
//! - `openssl ca -revoke … -crl_reason keyCompromise` then `openssl ca -gencrl` (RSA-2048,
//!   ECDSA P-256, and SM2 signed with the GM/T ID through `-sigopt distid:…`): KeyBridge
//!   reads the CRL, verifies it against OpenSSL's CA and finds the revoked certificate
//!   (with its reason) and the good one;
//! - CRLs KeyBridge issues: `openssl crl -CAfile … -noout` verifies them for RSA and
//!   ECDSA and prints the entry with its reason; for SM2 (whose `openssl crl` verifies with
//!   the empty ID) OpenSSL checks the signature through the primitive path — `asn1parse`
//!   finds the signed part and the signature, `pkeyutl -verify -rawin -digest sm3 -pkeyopt
//!   distid:1234567812345678` checks it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_interop::openssl_ca::{Kind, OpensslCa, signed_parts, sm2_verifies};
use kb_interop::{openssl, read, tempdir, write};
use kb_pki::issue::TestCa;
use kb_pki::revocation::{Crl, CrlEntry, RevocationReason, RevocationStatus, check_crl, issue_crl};
use kb_pki::time::UnixTime;
use kb_types::{Algorithm, KeyUsage};

#[test]
fn openssl_crls_are_read_and_checked() {
    let Some(o) = openssl() else { return };
    for kind in Kind::ALL {
        let t = tempdir();
        let ca = OpensslCa::new(&o, t.path(), kind);
        let (revoked, good) = (ca.issue("revoked", "leaf"), ca.issue("good", "leaf"));
        let before = UnixTime::now();
        ca.revoke("revoked", "keyCompromise");
        let crl = Crl::from_any(&read(&ca.gencrl())).unwrap();
        crl.verify_signature(&ca.cert).unwrap_or_else(|e| panic!("{kind:?}: OpenSSL's CRL does not verify: {e}"));
        assert_eq!(crl.number().as_deref(), Some("1000"), "{kind:?}");
        let now = UnixTime::now();
        match check_crl(&revoked, &ca.cert, &crl, now) {
            RevocationStatus::Revoked { at, reason, .. } => {
                assert_eq!(reason, Some(RevocationReason::KeyCompromise), "{kind:?}");
                assert!(at.0 >= before.0 - 2 && at.0 <= now.0 + 2, "{kind:?}: revoked at {at:?}");
            }
            other => panic!("{kind:?}: the revoked certificate is {other:?}"),
        }
        assert!(check_crl(&good, &ca.cert, &crl, now).is_good(), "{kind:?}");
    }
}

#[test]
fn keybridge_crls_verify_in_openssl() {
    let Some(o) = openssl() else { return };
    for alg in [Algorithm::Rsa { bits: 2048 }, Algorithm::EcdsaP256, Algorithm::Sm2] {
        let t = tempdir();
        let d = t.path();
        let ca = TestCa::new(alg, "C=CN,O=KeyBridge,CN=KeyBridge CRL Test CA").unwrap();
        let key = kb_crypto::PrivateKey::generate(alg).unwrap();
        let leaf = ca.leaf("C=CN,CN=已吊销", &key.public_key(), KeyUsage::Sign).unwrap();
        let now = UnixTime::now();
        let entries = [CrlEntry { serial: leaf.serial_bytes().to_vec(), at: now, reason: Some(RevocationReason::KeyCompromise) }];
        let crl = issue_crl(&ca.cert, &ca.signer, &entries, now, now.plus_days(7), 42).unwrap();
        let ca_pem = write(d, "ca.pem", ca.cert.to_pem());
        let crl_pem = write(d, "crl.pem", crl.to_pem());
        let text = String::from_utf8(o.ok(&["crl", "-in", &crl_pem, "-noout", "-text"])).unwrap();
        assert!(text.contains("Key Compromise") && text.contains(&leaf.serial_hex().to_uppercase()), "{alg}: {text}");
        assert!(text.contains("X509v3 CRL Number") && text.contains("42"), "{alg}: {text}");
        if alg == Algorithm::Sm2 {
            let (tbs, sig) = signed_parts(&o, &write(d, "crl.der", crl.der()), None);
            sm2_verifies(&o, d, &ca_pem, &tbs, &sig);
        } else {
            let out = o.run(&["crl", "-in", &crl_pem, "-CAfile", &ca_pem, "-noout"], b"");
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && said.contains("verify OK"), "{alg}: {said}");
            // Another CA's certificate: OpenSSL refuses it.
            let other = TestCa::new(alg, "C=CN,O=KeyBridge,CN=KeyBridge CRL Test CA").unwrap();
            let other_pem = write(d, "other.pem", other.cert.to_pem());
            let out = o.run(&["crl", "-in", &crl_pem, "-CAfile", &other_pem, "-noout"], b"");
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(!said.contains("verify OK"), "{alg}: OpenSSL accepted a CRL under a foreign key: {said}");
        }
    }
}
