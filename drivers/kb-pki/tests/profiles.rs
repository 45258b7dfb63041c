//! Every certificate profile the issuing code produces (root, intermediate, SM2 sign and
//! encrypt leaves, dual pairs, RSA/ECDSA leaves, the TestCa), checked extension by
//! extension against docs/certificate-profiles.md (RFC 5280 §4.2.1, GM/T 0015):
//! basicConstraints only on CA certificates (critical, cA TRUE, pathLen as asked) and
//! absent on end-entity ones; keyUsage critical with exactly the profile's bits;
//! subjectKeyIdentifier (SHA-1 of the key bits) everywhere; authorityKeyIdentifier equal
//! to the issuer's SKI everywhere except on a self-signed root; extKeyUsage only when
//! asked for, non-critical.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use der::Decode;
use der::asn1::ObjectIdentifier as Oid;
use kb_crypto::{HashAlgorithm, PrivateKey};
use kb_pki::Certificate;
use kb_pki::issue::{CertKind, CertificateParams, TestCa, issue, issue_dual, self_signed};
use kb_pki::signer::{LocalSigner, Signer};
use kb_pki::time::UnixTime;
use kb_types::{Algorithm, KeyUsage};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage as X509KeyUsage, KeyUsages, SubjectKeyIdentifier,
};

const BASIC_CONSTRAINTS: &str = "2.5.29.19";
const KEY_USAGE: &str = "2.5.29.15";
const SKI: &str = "2.5.29.14";
const AKI: &str = "2.5.29.35";
const EKU: &str = "2.5.29.37";
const CLIENT_AUTH: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.2");

/// What one profile must look like.
struct Expect {
    what: String,
    /// `Some((pathLen))` for a CA (basicConstraints critical, cA TRUE), `None` = absent.
    ca: Option<Option<u8>>,
    key_usage: &'static [KeyUsages],
    /// The issuer's SKI, or `None` for a self-signed root (no AKI).
    aki: Option<Vec<u8>>,
    eku: Vec<Oid>,
}

const CA_BITS: &[KeyUsages] = &[KeyUsages::DigitalSignature, KeyUsages::KeyCertSign, KeyUsages::CRLSign];
const SIGN_BITS: &[KeyUsages] = &[KeyUsages::DigitalSignature, KeyUsages::NonRepudiation];
const ENC_BITS: &[KeyUsages] = &[KeyUsages::KeyEncipherment, KeyUsages::DataEncipherment, KeyUsages::KeyAgreement];
const BOTH_BITS: &[KeyUsages] =
    &[KeyUsages::DigitalSignature, KeyUsages::NonRepudiation, KeyUsages::KeyEncipherment, KeyUsages::DataEncipherment];
const ALL_BITS: &[KeyUsages] = &[
    KeyUsages::DigitalSignature,
    KeyUsages::NonRepudiation,
    KeyUsages::KeyEncipherment,
    KeyUsages::DataEncipherment,
    KeyUsages::KeyAgreement,
    KeyUsages::KeyCertSign,
    KeyUsages::CRLSign,
    KeyUsages::EncipherOnly,
    KeyUsages::DecipherOnly,
];

fn signer(alg: Algorithm) -> LocalSigner {
    LocalSigner::new(PrivateKey::generate(alg).unwrap_or_else(|e| panic!("{alg}: {e}")))
}

fn sha1_key_bits(c: &Certificate) -> Vec<u8> {
    kb_crypto::digest(HashAlgorithm::Sha1, c.public_key_bits())
}

/// Check `c` against `e`; every mismatch is named.
fn check(c: &Certificate, e: &Expect) {
    let what = &e.what;
    let tbs = c.x509().tbs_certificate();
    assert_eq!(tbs.version(), x509_cert::Version::V3, "{what}: X.509 v3");
    let exts = tbs.extensions().unwrap_or_else(|| panic!("{what}: no extensions"));
    let mut seen: Vec<String> = exts.iter().map(|x| x.extn_id.to_string()).collect();
    seen.sort();
    let before = seen.len();
    seen.dedup();
    assert_eq!(before, seen.len(), "{what}: an extension appears twice");
    let find = |oid: &str| exts.iter().find(|x| x.extn_id.to_string() == oid);

    // basicConstraints
    match (e.ca, find(BASIC_CONSTRAINTS)) {
        (None, None) => {}
        (None, Some(x)) => panic!("{what}: end-entity certificate carries basicConstraints (critical {})", x.critical),
        (Some(_), None) => panic!("{what}: CA certificate without basicConstraints"),
        (Some(path_len), Some(x)) => {
            assert!(x.critical, "{what}: basicConstraints must be critical on a CA");
            let bc = BasicConstraints::from_der(x.extn_value.as_bytes()).unwrap();
            assert!(bc.ca, "{what}: cA must be TRUE");
            assert_eq!(bc.path_len_constraint, path_len, "{what}: pathLenConstraint");
        }
    }
    assert_eq!(c.is_ca(), e.ca.is_some(), "{what}: is_ca()");

    // keyUsage: critical, exactly the profile's bits.
    let ku = find(KEY_USAGE).unwrap_or_else(|| panic!("{what}: no keyUsage"));
    assert!(ku.critical, "{what}: keyUsage must be critical");
    let bits = X509KeyUsage::from_der(ku.extn_value.as_bytes()).unwrap().0;
    for flag in ALL_BITS {
        assert_eq!(bits.contains(*flag), e.key_usage.contains(flag), "{what}: keyUsage {flag:?}");
    }

    // subjectKeyIdentifier: non-critical, RFC 5280 method 1.
    let ski = find(SKI).unwrap_or_else(|| panic!("{what}: no subjectKeyIdentifier"));
    assert!(!ski.critical, "{what}: subjectKeyIdentifier must not be critical");
    let ski_v = SubjectKeyIdentifier::from_der(ski.extn_value.as_bytes()).unwrap().0.as_bytes().to_vec();
    assert_eq!(ski_v, sha1_key_bits(c), "{what}: SKI = SHA-1 of the key bits");

    // authorityKeyIdentifier: non-critical keyIdentifier = the issuer's SKI.
    match (&e.aki, find(AKI)) {
        (None, None) => {}
        (None, Some(_)) => panic!("{what}: self-signed root carries authorityKeyIdentifier"),
        (Some(_), None) => panic!("{what}: no authorityKeyIdentifier"),
        (Some(want), Some(x)) => {
            assert!(!x.critical, "{what}: authorityKeyIdentifier must not be critical");
            let a = AuthorityKeyIdentifier::from_der(x.extn_value.as_bytes()).unwrap();
            assert_eq!(a.key_identifier.map(|k| k.as_bytes().to_vec()).as_ref(), Some(want), "{what}: AKI keyIdentifier");
            assert!(a.authority_cert_issuer.is_none() && a.authority_cert_serial_number.is_none(), "{what}: AKI issuer/serial");
        }
    }

    // extKeyUsage: only when asked for, non-critical.
    match (e.eku.is_empty(), find(EKU)) {
        (true, None) => {}
        (true, Some(_)) => panic!("{what}: extKeyUsage nobody asked for"),
        (false, None) => panic!("{what}: extKeyUsage missing"),
        (false, Some(x)) => {
            assert!(!x.critical, "{what}: extKeyUsage must not be critical");
            assert_eq!(ExtendedKeyUsage::from_der(x.extn_value.as_bytes()).unwrap().0, e.eku, "{what}: extKeyUsage");
        }
    }
}

fn leaf_bits(usage: KeyUsage) -> &'static [KeyUsages] {
    match usage {
        KeyUsage::Sign => SIGN_BITS,
        KeyUsage::Encrypt => ENC_BITS,
        KeyUsage::Both => BOTH_BITS,
    }
}

#[test]
fn every_issued_profile_matches_rfc5280_and_gmt0015() {
    let now = UnixTime::now();
    for alg in [Algorithm::Sm2, Algorithm::EcdsaP256, Algorithm::Rsa { bits: 2048 }] {
        for root_path_len in [None, Some(1)] {
            let root_s = signer(alg);
            let root = self_signed(
                &CertificateParams::new("C=CN,CN=Root", CertKind::Root { path_len: root_path_len }, now, 3650),
                &root_s,
            )
            .unwrap();
            let root_ski = root.subject_key_id().unwrap();
            check(
                &root,
                &Expect {
                    what: format!("{alg} root {root_path_len:?}"),
                    ca: Some(root_path_len),
                    key_usage: CA_BITS,
                    aki: None,
                    eku: vec![],
                },
            );

            let mid_s = signer(alg);
            let mid = issue(
                &CertificateParams::new("C=CN,CN=Sub CA", CertKind::Intermediate { path_len: Some(0) }, now, 1825),
                mid_s.public_key(),
                Some(&root),
                &root_s,
            )
            .unwrap();
            check(
                &mid,
                &Expect {
                    what: format!("{alg} intermediate"),
                    ca: Some(Some(0)),
                    key_usage: CA_BITS,
                    aki: Some(root_ski.clone()),
                    eku: vec![],
                },
            );

            for usage in [KeyUsage::Sign, KeyUsage::Encrypt, KeyUsage::Both] {
                for eku in [vec![], vec![CLIENT_AUTH]] {
                    let mut p = CertificateParams::leaf("C=CN,O=某某公司,CN=张三", usage, now, 365);
                    p.extended_key_usage = eku.clone();
                    let leaf = issue(&p, signer(alg).public_key(), Some(&mid), &mid_s).unwrap();
                    check(
                        &leaf,
                        &Expect {
                            what: format!("{alg} {usage} leaf, EKU {eku:?}"),
                            ca: None,
                            key_usage: leaf_bits(usage),
                            aki: mid.subject_key_id(),
                            eku,
                        },
                    );
                }
            }
        }
    }
}

#[test]
fn sm2_dual_pair_and_test_ca_profiles() {
    let now = UnixTime::now();
    let ca = TestCa::new(Algorithm::Sm2, "C=CN,O=KeyBridge Test,CN=Test CA").unwrap();
    let ca_ski = ca.cert.subject_key_id().unwrap();
    check(&ca.cert, &Expect { what: "TestCa root".into(), ca: Some(None), key_usage: CA_BITS, aki: None, eku: vec![] });
    let (s, e) = issue_dual(
        "C=CN,CN=用户",
        now,
        30,
        signer(Algorithm::Sm2).public_key(),
        signer(Algorithm::Sm2).public_key(),
        &ca.cert,
        &ca.signer,
    )
    .unwrap();
    check(&s, &Expect { what: "SM2 dual: sign".into(), ca: None, key_usage: SIGN_BITS, aki: Some(ca_ski.clone()), eku: vec![] });
    check(
        &e,
        &Expect { what: "SM2 dual: encrypt".into(), ca: None, key_usage: ENC_BITS, aki: Some(ca_ski.clone()), eku: vec![] },
    );
    for usage in [KeyUsage::Sign, KeyUsage::Encrypt, KeyUsage::Both] {
        let leaf = ca.leaf("CN=TestCa leaf", signer(Algorithm::Sm2).public_key(), usage).unwrap();
        check(
            &leaf,
            &Expect {
                what: format!("TestCa {usage} leaf"),
                ca: None,
                key_usage: leaf_bits(usage),
                aki: Some(ca_ski.clone()),
                eku: vec![],
            },
        );
    }
}
