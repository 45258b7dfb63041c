//! CRLs: issued here, checked here, for SM2, ECDSA P-256 and RSA — revoked (date and
//! reason), good, and every way the data can fail to vouch (stale, not yet valid, another
//! issuer, a forged signature, a tampered byte, a delta CRL, garbage) → unknown with why,
//! never good. OpenSSL's side (its CRLs read here, ours verified there) is in
//! tests/interop/tests/openssl_crl.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::PrivateKey;
use kb_pki::issue::TestCa;
use kb_pki::revocation::{CrlEntry, RevocationReason, RevocationSource, RevocationStatus, UnknownReason, check_crl, issue_crl};
use kb_pki::time::{DAY, UnixTime};
use kb_pki::{Certificate, PkiError};
use kb_types::{Algorithm, ErrorCode, HasErrorCode, KeyUsage};

const ALGS: [Algorithm; 3] = [Algorithm::Sm2, Algorithm::EcdsaP256, Algorithm::Rsa { bits: 2048 }];

struct Fixture {
    ca: TestCa,
    revoked: Certificate,
    good: Certificate,
    now: UnixTime,
}

fn fixture(alg: Algorithm) -> Fixture {
    fixture_named(alg, "C=CN,O=吊销测试,CN=Revocation Test CA")
}

fn fixture_named(alg: Algorithm, ca_name: &str) -> Fixture {
    let ca = TestCa::new(alg, ca_name).unwrap();
    let leaf = |cn: &str| {
        let key = PrivateKey::generate(alg).unwrap();
        ca.leaf(&format!("C=CN,CN={cn}"), &key.public_key(), KeyUsage::Sign).unwrap()
    };
    Fixture { revoked: leaf("已吊销"), good: leaf("正常"), now: UnixTime::now(), ca }
}

fn crl(f: &Fixture, reason: Option<RevocationReason>, this: UnixTime, next: UnixTime) -> kb_pki::revocation::Crl {
    let entries = [CrlEntry { serial: f.revoked.serial_bytes().to_vec(), at: UnixTime(f.now.0 - 3600), reason }];
    issue_crl(&f.ca.cert, &f.ca.signer, &entries, this, next, 7).unwrap()
}

#[test]
fn a_listed_certificate_is_revoked_with_date_and_reason_and_others_are_good() {
    for alg in ALGS {
        let f = fixture(alg);
        let list = crl(&f, Some(RevocationReason::KeyCompromise), f.now.plus_days(-1), f.now.plus_days(6));
        let got = check_crl(&f.revoked, &f.ca.cert, &list, f.now);
        let source = RevocationSource::Crl { number: Some("07".into()) };
        assert_eq!(
            got,
            RevocationStatus::Revoked {
                at: UnixTime(f.now.0 - 3600),
                reason: Some(RevocationReason::KeyCompromise),
                source: source.clone()
            },
            "{alg:?}"
        );
        assert_eq!(got.error_code(), Some(ErrorCode::CertificateRevoked));
        let good = check_crl(&f.good, &f.ca.cert, &list, f.now);
        assert_eq!(
            good,
            RevocationStatus::Good { source, this_update: list.this_update(), next_update: list.next_update() },
            "{alg:?}"
        );
        assert!(good.is_good() && good.error_code().is_none());
        // Round trip through PEM, and no reason given → none reported.
        let again = kb_pki::revocation::Crl::from_any(list.to_pem().as_bytes()).unwrap();
        assert_eq!(again.der(), list.der());
        let plain = crl(&f, None, f.now.plus_days(-1), f.now.plus_days(6));
        assert!(matches!(check_crl(&f.revoked, &f.ca.cert, &plain, f.now), RevocationStatus::Revoked { reason: None, .. }));
    }
}

#[test]
fn certificate_hold_counts_as_revoked() {
    let f = fixture(Algorithm::Sm2);
    let list = crl(&f, Some(RevocationReason::CertificateHold), f.now.plus_days(-1), f.now.plus_days(6));
    assert!(matches!(
        check_crl(&f.revoked, &f.ca.cert, &list, f.now),
        RevocationStatus::Revoked { reason: Some(RevocationReason::CertificateHold), .. }
    ));
}

fn unknown(s: RevocationStatus) -> UnknownReason {
    assert_eq!(s.error_code(), Some(ErrorCode::RevocationUnknown), "{s:?}");
    match s {
        RevocationStatus::Unknown { why } => why,
        other => panic!("expected unknown, got {other:?}"),
    }
}

#[test]
fn a_stale_or_future_crl_vouches_for_nothing() {
    let f = fixture(Algorithm::Sm2);
    let stale = crl(&f, None, f.now.plus_days(-8), f.now.plus_days(-1));
    for cert in [&f.good, &f.revoked] {
        assert_eq!(
            unknown(check_crl(cert, &f.ca.cert, &stale, f.now)),
            UnknownReason::Stale { next_update: stale.next_update().unwrap() }
        );
    }
    let future = crl(&f, None, UnixTime(f.now.0 + DAY), f.now.plus_days(8));
    assert!(matches!(unknown(check_crl(&f.good, &f.ca.cert, &future, f.now)), UnknownReason::NotYetValid { .. }));
    // Within the clock skew it is current.
    let skewed = crl(&f, None, UnixTime(f.now.0 + 60), f.now.plus_days(8));
    assert!(check_crl(&f.good, &f.ca.cert, &skewed, f.now).is_good());
}

#[test]
fn another_issuers_crl_or_a_forged_one_vouches_for_nothing() {
    let f = fixture(Algorithm::Sm2);
    let other = fixture_named(Algorithm::Sm2, "C=CN,O=另一家,CN=Another CA");
    // Another CA's CRL (another name): wrong issuer, whichever issuer certificate is given.
    let theirs = crl(&other, None, f.now.plus_days(-1), f.now.plus_days(6));
    assert_eq!(unknown(check_crl(&f.good, &f.ca.cert, &theirs, f.now)), UnknownReason::WrongIssuer);
    assert_eq!(unknown(check_crl(&f.good, &other.ca.cert, &theirs, f.now)), UnknownReason::WrongIssuer);
    // A forger with the same CA name but another key: the signature does not verify.
    let forger = TestCa::new(Algorithm::Sm2, "C=CN,O=吊销测试,CN=Revocation Test CA").unwrap();
    let forged = issue_crl(&forger.cert, &forger.signer, &[], f.now.plus_days(-1), f.now.plus_days(6), 8).unwrap();
    assert!(matches!(unknown(check_crl(&f.revoked, &f.ca.cert, &forged, f.now)), UnknownReason::BadSignature { .. }));
    // One flipped byte in a genuine CRL's signed part (inside the issuer name's last
    // character, so it still parses): the signature no longer verifies.
    let genuine = crl(&f, Some(RevocationReason::KeyCompromise), f.now.plus_days(-1), f.now.plus_days(6));
    let mut der = genuine.der().to_vec();
    let pos = der.windows(4).position(|w| w == b" CA\x31").map(|p| p + 2).unwrap_or_else(|| {
        let p = der.windows(2).position(|w| w == b"CA").unwrap();
        p + 1
    });
    der[pos] ^= 0x01;
    match kb_pki::revocation::Crl::from_der(&der) {
        Ok(t) => {
            let why = unknown(check_crl(&f.revoked, &f.ca.cert, &t, f.now));
            assert!(matches!(why, UnknownReason::BadSignature { .. } | UnknownReason::WrongIssuer), "{why:?}");
        }
        Err(e) => assert_eq!(e.code(), ErrorCode::CrlMalformed),
    }
}

#[test]
fn a_leaf_may_not_sign_crls_for_its_own_issuer() {
    // A leaf (keyUsage digitalSignature only) presenting a CRL it signed, as if it were the
    // issuer: refused because the key may not sign CRLs, before any lookup.
    let f = fixture(Algorithm::Sm2);
    let key = PrivateKey::generate(Algorithm::Sm2).unwrap();
    let leaf = f.ca.leaf("C=CN,CN=Revocation Test CA", &key.public_key(), KeyUsage::Sign).unwrap();
    let signer = kb_pki::LocalSigner::new(key);
    let bogus = issue_crl(&leaf, &signer, &[], f.now.plus_days(-1), f.now.plus_days(6), 1).unwrap();
    let e = bogus.verify_signature(&leaf).unwrap_err();
    assert!(matches!(e, PkiError::CrlSignatureInvalid(_)), "{e}");
    assert_eq!(e.code(), ErrorCode::CrlSignatureInvalid);
}

#[test]
fn garbage_is_a_malformed_crl() {
    for bytes in [&b""[..], b"\x30\x03\x02\x01\x00", b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"] {
        let e = kb_pki::revocation::Crl::from_any(bytes).unwrap_err();
        assert_eq!(e.code(), ErrorCode::CrlMalformed, "{e}");
    }
    let f = fixture(Algorithm::Sm2);
    let e = kb_pki::revocation::Crl::from_pem(&f.ca.cert.to_pem()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::CrlMalformed, "a certificate is not a CRL: {e}");
}

#[test]
fn issuing_refuses_a_next_update_before_this_update() {
    let f = fixture(Algorithm::Sm2);
    assert!(issue_crl(&f.ca.cert, &f.ca.signer, &[], f.now, f.now.plus_days(-1), 1).is_err());
}
