//! OCSP with the OpenSSL 3 command line, both directions, offline (files, no sockets):
//! - OpenSSL as the **responder** (`openssl ocsp -index … -reqin -respout`, signed by the
//!   CA itself or by a delegated responder certificate with `OCSPSigning`), for RSA-2048,
//!   ECDSA P-256 and SM2 (`-rsigopt distid:…`): KeyBridge's request (with a nonce) gets
//!   an answer KeyBridge verifies — revoked with its reason, good, unknown for a serial the
//!   CA never issued — and a responder certificate *without* `OCSPSigning` is refused;
//! - OpenSSL as the **client** (`openssl ocsp -reqout`, then `-respin … -CAfile`): it
//!   verifies the answers `kb_pki::ocsp::respond` gives (as the dev CA will) for RSA and
//!   ECDSA and reads the status and reason. OpenSSL 3.0's OCSP client verifies SM2 with
//!   the empty ID, so the SM2 answers are checked through the primitive path instead:
//!   `asn1parse` finds the signed part and the signature, `pkeyutl -verify -rawin -digest
//!   sm3 -pkeyopt distid:1234567812345678` checks it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::HashAlgorithm;
use kb_interop::openssl_ca::{Kind, OpensslCa, signed_parts, sm2_verifies};
use kb_interop::{openssl, read, tempdir, write};
use kb_pki::ocsp::{CertId, CertStatus, OcspResponse, check_response, request, respond};
use kb_pki::revocation::{RevocationReason, RevocationStatus, UnknownReason};
use kb_pki::time::UnixTime;

#[test]
fn openssl_answers_and_keybridge_checks() {
    let Some(o) = openssl() else { return };
    for kind in Kind::ALL {
        let t = tempdir();
        let ca = OpensslCa::new(&o, t.path(), kind);
        let (revoked, good) = (ca.issue("revoked", "leaf"), ca.issue("good", "leaf"));
        ca.issue("responder", "responder");
        ca.issue("impostor", "leaf");
        ca.revoke("revoked", "keyCompromise");
        let ask = |cert: &kb_pki::Certificate, signer: &str| {
            let nonce = kb_crypto::rng::random_array::<16>().unwrap();
            let req = request(&[CertId::new(cert, &ca.cert, HashAlgorithm::Sha1)], Some(&nonce)).unwrap();
            let resp = read(&ca.answer(&write(&ca.dir, "req.der", req), signer));
            check_response(cert, &ca.cert, &resp, Some(&nonce), UnixTime::now())
        };
        for signer in ["ca", "responder"] {
            match ask(&revoked, signer) {
                RevocationStatus::Revoked { reason, .. } => assert_eq!(reason, Some(RevocationReason::KeyCompromise), "{kind:?}"),
                other => panic!("{kind:?} signed by {signer}: {other:?}"),
            }
            assert!(ask(&good, signer).is_good(), "{kind:?} signed by {signer}");
        }
        // A leaf without OCSPSigning signing answers: refused, whatever it says.
        assert!(
            matches!(ask(&good, "impostor"), RevocationStatus::Unknown { why: UnknownReason::BadSignature { .. } }),
            "{kind:?}: an unauthorised responder was believed"
        );
        // A serial this CA never issued: OpenSSL says unknown, and KeyBridge reads it so.
        let id = CertId { serial: vec![0x55; 12], ..CertId::new(&good, &ca.cert, HashAlgorithm::Sha1) };
        let req = request(std::slice::from_ref(&id), None).unwrap();
        let resp = OcspResponse::from_der(&read(&ca.answer(&write(&ca.dir, "req.der", req), "ca"))).unwrap();
        assert_eq!(resp.responses().len(), 1);
        assert_eq!((resp.responses()[0].id.as_ref(), &resp.responses()[0].status), (Some(&id), &CertStatus::Unknown), "{kind:?}");
    }
}

#[test]
fn keybridge_answers_and_openssl_checks() {
    let Some(o) = openssl() else { return };
    for kind in Kind::ALL {
        let t = tempdir();
        // The leaves come from an OpenSSL CA; KeyBridge answers for it with the CA's key
        // (as the dev CA answers for what it issued).
        let ca = OpensslCa::new(&o, t.path(), kind);
        let (revoked, good) = (ca.issue("revoked", "leaf"), ca.issue("good", "leaf"));
        let key = kb_crypto::PrivateKey::from_pkcs8_pem(&String::from_utf8(read(&ca.path("ca.key"))).unwrap()).unwrap();
        let signer = kb_pki::LocalSigner::new(key);
        let revoked_serial = revoked.serial_bytes().to_vec();
        let at = UnixTime(UnixTime::now().0 - 600);
        let lookup = move |id: &CertId| {
            Some(if id.serial == revoked_serial {
                CertStatus::Revoked { at, reason: Some(RevocationReason::KeyCompromise) }
            } else {
                CertStatus::Good
            })
        };
        for (name, cert, expect) in [("revoked", &revoked, "revoked"), ("good", &good, "good")] {
            // OpenSSL's request (with its nonce).
            let (req, resp) = (ca.path(&format!("{name}.req")), ca.path(&format!("{name}.resp")));
            let (issuer, leaf) = (ca.path("ca.pem"), ca.path(&format!("{name}.pem")));
            o.ok(&["ocsp", "-issuer", &issuer, "-cert", &leaf, "-reqout", &req]);
            let now = UnixTime::now();
            let answer = respond(&ca.cert, &signer, &read(&req), now, now.plus_days(1), &lookup).unwrap();
            write(&ca.dir, &format!("{name}.resp"), &answer);
            // KeyBridge agrees with itself first (sanity), then OpenSSL checks.
            let nonce = kb_pki::ocsp::parse_request(&read(&req)).unwrap().nonce;
            assert!(nonce.is_some(), "OpenSSL sends a nonce by default");
            let ours = check_response(cert, &ca.cert, &answer, nonce.as_deref(), now);
            assert_eq!(ours.is_good(), expect == "good", "{kind:?}: {ours:?}");
            if kind == Kind::Sm2 {
                // ResponseBytes' OCTET STRING holds the BasicOCSPResponse: find it, split it.
                let listing = String::from_utf8(o.ok(&["asn1parse", "-inform", "DER", "-in", &resp])).unwrap();
                let octet = listing.lines().find(|l| l.contains("OCTET STRING")).unwrap();
                let off: usize = octet.split(':').next().unwrap().trim().parse().unwrap();
                let (tbs, sig) = signed_parts(&o, &resp, Some(off));
                sm2_verifies(&o, &ca.dir, &issuer, &tbs, &sig);
                let text = String::from_utf8(o.ok(&["ocsp", "-respin", &resp, "-resp_text", "-noverify"])).unwrap();
                assert!(text.contains(&format!("Cert Status: {expect}")), "{text}");
            } else {
                let run = |args: &[&str]| {
                    let out = o.run(args, b"");
                    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
                };
                // Against its own request: signature, signer and the nonce it sent.
                let said = run(&["ocsp", "-reqin", &req, "-respin", &resp, "-CAfile", &issuer]);
                assert!(said.contains("Response verify OK") && !said.contains("Nonce Verify error"), "{kind:?}: {said}");
                // With `-cert` OpenSSL prints the status (and checks the signature again;
                // it makes its own request for that, so the nonce is not compared there).
                let said = run(&["ocsp", "-respin", &resp, "-issuer", &issuer, "-cert", &leaf, "-CAfile", &issuer, "-no_nonce"]);
                assert!(said.contains("Response verify OK") && said.contains(&format!(": {expect}")), "{kind:?}: {said}");
                if expect == "revoked" {
                    assert!(said.contains("Reason: keyCompromise"), "{said}");
                }
            }
        }
    }
}
