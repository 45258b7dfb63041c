//! OCSP answered by `kb_pki::ocsp::respond` (as the dev CA will) and checked by
//! `check_response`, for SM2, ECDSA P-256 and RSA: good, revoked (date and reason),
//! unknown — and every answer that must not count: garbage, `tryLater`, stale, not yet
//! valid, signed by someone else, about another certificate, replayed for another nonce.
//! OpenSSL's side (its responder, its client) is in tests/interop/tests/openssl_ocsp.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::{HashAlgorithm, PrivateKey};
use kb_pki::Certificate;
use kb_pki::issue::TestCa;
use kb_pki::ocsp::{CertId, CertStatus, OcspResponse, ResponseStatus, check_response, parse_request, request, respond};
use kb_pki::revocation::{RevocationReason, RevocationSource, RevocationStatus, UnknownReason};
use kb_pki::time::UnixTime;
use kb_types::{Algorithm, ErrorCode, HasErrorCode, KeyUsage};

struct Fixture {
    ca: TestCa,
    revoked: Certificate,
    good: Certificate,
    stranger: Certificate,
    now: UnixTime,
}

fn fixture(alg: Algorithm) -> Fixture {
    let ca = TestCa::new(alg, "C=CN,CN=OCSP Test CA").unwrap();
    let leaf =
        |cn: &str| ca.leaf(&format!("C=CN,CN={cn}"), &PrivateKey::generate(alg).unwrap().public_key(), KeyUsage::Sign).unwrap();
    Fixture { revoked: leaf("已吊销"), good: leaf("正常"), stranger: leaf("未登记"), now: UnixTime::now(), ca }
}

impl Fixture {
    /// The CA's answer to `req`: revoked / good by serial, anything else unknown.
    fn answer(&self, req: &[u8], this: UnixTime, next: UnixTime) -> Vec<u8> {
        let (revoked, good) = (self.revoked.serial_bytes().to_vec(), self.good.serial_bytes().to_vec());
        let at = UnixTime(self.now.0 - 600);
        respond(&self.ca.cert, &self.ca.signer, req, this, next, &move |id: &CertId| {
            if id.serial == revoked {
                Some(CertStatus::Revoked { at, reason: Some(RevocationReason::KeyCompromise) })
            } else if id.serial == good {
                Some(CertStatus::Good)
            } else {
                None
            }
        })
        .unwrap()
    }

    fn ask(&self, cert: &Certificate, hash: HashAlgorithm, nonce: Option<&[u8]>) -> RevocationStatus {
        let req = request(&[CertId::new(cert, &self.ca.cert, hash)], nonce).unwrap();
        let resp = self.answer(&req, self.now, self.now.plus_days(1));
        check_response(cert, &self.ca.cert, &resp, nonce, self.now)
    }
}

fn unknown(s: RevocationStatus) -> UnknownReason {
    assert_eq!(s.error_code(), Some(ErrorCode::RevocationUnknown), "{s:?}");
    match s {
        RevocationStatus::Unknown { why } => why,
        other => panic!("expected unknown, got {other:?}"),
    }
}

#[test]
fn good_revoked_and_unknown_for_every_algorithm_and_hash() {
    for alg in [Algorithm::Sm2, Algorithm::EcdsaP256, Algorithm::Rsa { bits: 2048 }] {
        let f = fixture(alg);
        for hash in [HashAlgorithm::Sha1, HashAlgorithm::Sha256, HashAlgorithm::Sm3] {
            let nonce = [7u8; 16];
            match f.ask(&f.revoked, hash, Some(&nonce)) {
                RevocationStatus::Revoked { at, reason, source: RevocationSource::Ocsp { responder, .. } } => {
                    assert_eq!((at, reason), (UnixTime(f.now.0 - 600), Some(RevocationReason::KeyCompromise)));
                    assert!(responder.contains("OCSP Test CA"), "{responder}");
                }
                other => panic!("{alg:?} {hash:?}: {other:?}"),
            }
            assert!(f.ask(&f.good, hash, Some(&nonce)).is_good(), "{alg:?} {hash:?}");
            assert_eq!(unknown(f.ask(&f.stranger, hash, None)), UnknownReason::ResponderUnknown);
        }
    }
}

#[test]
fn requests_round_trip_with_their_nonce() {
    let f = fixture(Algorithm::Sm2);
    let ids = [CertId::new(&f.good, &f.ca.cert, HashAlgorithm::Sha1), CertId::new(&f.revoked, &f.ca.cert, HashAlgorithm::Sm3)];
    let parsed = parse_request(&request(&ids, Some(b"0123456789abcdef")).unwrap()).unwrap();
    assert_eq!(parsed.ids, ids);
    assert_eq!(parsed.nonce.as_deref(), Some(&b"0123456789abcdef"[..]));
    assert!(request(&[], None).is_err());
    // One response answers both, echoing the nonce.
    let resp = f.answer(&request(&ids, Some(b"n1")).unwrap(), f.now, f.now.plus_days(1));
    let parsed = OcspResponse::from_der(&resp).unwrap();
    assert_eq!((parsed.status, parsed.responses().len(), parsed.nonce()), (ResponseStatus::Successful, 2, Some(&b"n1"[..])));
}

#[test]
fn a_replayed_answer_to_another_nonce_or_another_certificate_says_nothing() {
    let f = fixture(Algorithm::Sm2);
    let old = f.answer(
        &request(&[CertId::new(&f.revoked, &f.ca.cert, HashAlgorithm::Sha1)], Some(b"old")).unwrap(),
        f.now,
        f.now.plus_days(1),
    );
    assert!(matches!(unknown(check_response(&f.revoked, &f.ca.cert, &old, Some(b"new"), f.now)), UnknownReason::Replayed { .. }));
    // The good certificate's answer presented for the revoked one: not about it.
    let req = request(&[CertId::new(&f.good, &f.ca.cert, HashAlgorithm::Sha1)], None).unwrap();
    let good = f.answer(&req, f.now, f.now.plus_days(1));
    assert_eq!(unknown(check_response(&f.revoked, &f.ca.cert, &good, None, f.now)), UnknownReason::OtherCertificate);
}

#[test]
fn stale_and_future_answers_say_nothing() {
    let f = fixture(Algorithm::EcdsaP256);
    let req = request(&[CertId::new(&f.good, &f.ca.cert, HashAlgorithm::Sha1)], None).unwrap();
    let stale = f.answer(&req, f.now.plus_days(-3), f.now.plus_days(-1));
    assert!(matches!(unknown(check_response(&f.good, &f.ca.cert, &stale, None, f.now)), UnknownReason::Stale { .. }));
    let future = f.answer(&req, f.now.plus_days(1), f.now.plus_days(2));
    assert!(matches!(unknown(check_response(&f.good, &f.ca.cert, &future, None, f.now)), UnknownReason::NotYetValid { .. }));
}

#[test]
fn an_answer_signed_by_anyone_but_the_issuer_says_nothing() {
    let f = fixture(Algorithm::Sm2);
    // Same name, another key: the responderID (by key) names no one we trust.
    let forger = TestCa::new(Algorithm::Sm2, "C=CN,CN=OCSP Test CA").unwrap();
    let req = request(&[CertId::new(&f.revoked, &f.ca.cert, HashAlgorithm::Sha1)], None).unwrap();
    let forged = respond(&forger.cert, &forger.signer, &req, f.now, f.now.plus_days(1), &|_| Some(CertStatus::Good)).unwrap();
    assert!(matches!(unknown(check_response(&f.revoked, &f.ca.cert, &forged, None, f.now)), UnknownReason::BadSignature { .. }));
    // One changed digit in the genuine answer's signed producedAt (the first
    // GeneralizedTime): still parses, no longer verifies.
    let mut genuine = f.answer(&req, f.now, f.now.plus_days(1));
    let t = genuine.windows(2).position(|w| w == [0x18, 0x0f]).unwrap();
    genuine[t + 2 + 13] ^= 0x01;
    let why = unknown(check_response(&f.revoked, &f.ca.cert, &genuine, None, f.now));
    assert!(matches!(why, UnknownReason::BadSignature { .. } | UnknownReason::Malformed { .. }), "{why:?}");
}

#[test]
fn garbage_and_refusals_are_unknown_with_their_reason() {
    let f = fixture(Algorithm::Sm2);
    for bytes in [&b""[..], b"<html>proxy error</html>", b"\x30\x03\x0a\x01\x04"] {
        assert!(matches!(unknown(check_response(&f.good, &f.ca.cert, bytes, None, f.now)), UnknownReason::Malformed { .. }));
        let e = OcspResponse::from_der(bytes).unwrap_err();
        assert_eq!(e.code(), ErrorCode::OcspMalformed);
    }
    // tryLater (3): no response bytes.
    assert_eq!(
        unknown(check_response(&f.good, &f.ca.cert, b"\x30\x03\x0a\x01\x03", None, f.now)),
        UnknownReason::ResponderRefused { status: "TryLater".into() }
    );
    // A request that does not parse gets malformedRequest.
    let resp = respond(&f.ca.cert, &f.ca.signer, b"nonsense", f.now, f.now.plus_days(1), &|_| None).unwrap();
    assert_eq!(OcspResponse::from_der(&resp).unwrap().status, ResponseStatus::MalformedRequest);
    // Oversized input is refused before parsing.
    assert_eq!(OcspResponse::from_der(&vec![0x30; 70_000]).unwrap_err().code(), ErrorCode::OcspMalformed);
}
