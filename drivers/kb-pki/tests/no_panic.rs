//! No parser in kb-pki may panic, whatever bytes it is handed.
//!
//! The same harness bodies the libFuzzer targets run (`tests/fuzz/src/pki.rs`) are fed
//! the committed seeds (`tests/fuzz/seeds/<target>/`), which must all be accepted, then
//! 5,000 deterministic mutations of them per target (`tests/fuzz/src/mutator.rs`). A
//! panic fails the test and prints the input in hex.
//!
//! `cargo test -p kb-pki --test no_panic -- --ignored generate_seeds` regenerates the
//! seeds of every target (kb-crypto's too) from fresh keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/pki.rs"]
mod harness;
#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/mutator.rs"]
mod mutator;
// For the seed generator: the fixed key the sm2_ciphertext/sm2_signature seeds use.
#[allow(unreachable_pub, dead_code)]
#[path = "../../../tests/fuzz/src/crypto.rs"]
mod crypto_harness;

const ITERATIONS: usize = 5_000;

fn seed_dir(target: &str) -> std::path::PathBuf {
    mutator::seed_dir(env!("CARGO_MANIFEST_DIR"), target)
}

fn run(target: &str, f: fn(&[u8]) -> bool, iterations: usize) {
    mutator::run(env!("CARGO_MANIFEST_DIR"), target, f, iterations);
}

#[test]
fn certificate_parsers_never_panic() {
    run("certificate", harness::certificate, ITERATIONS);
}

#[test]
fn csr_parsers_never_panic() {
    run("csr", harness::csr, ITERATIONS);
    // Not vacuous: every seed request also verifies.
    for (name, der) in mutator::load_seeds(&seed_dir("csr")) {
        let req = kb_pki::csr::CertificationRequest::from_der(&der).unwrap();
        assert!(req.verify().is_ok(), "csr seed {name} does not verify");
    }
}

#[test]
fn cms_signed_parser_never_panics() {
    run("cms_signed", harness::cms_signed, ITERATIONS);
    // Not vacuous: every seed verifies (attached ones alone, detached ones over "content").
    for (name, der) in mutator::load_seeds(&seed_dir("cms_signed")) {
        let m = kb_pki::cms::SignedMessage::from_der(&der).unwrap();
        let content: Option<&[u8]> = if m.is_detached() { Some(b"content") } else { None };
        assert!(m.verify(content, &[]).is_ok(), "cms_signed seed {name} does not verify");
    }
}

#[test]
fn cms_envelope_parser_never_panics() {
    run("cms_envelope", harness::cms_envelope, ITERATIONS);
    // Not vacuous: every seed opens with the fixed key.
    for (name, der) in mutator::load_seeds(&seed_dir("cms_envelope")) {
        let plain = kb_pki::cms::envelope::decrypt_bytes(&der, harness::envelope_decrypter());
        assert_eq!(plain.as_deref().map(|p| &p[..]), Ok(&b"content"[..]), "cms_envelope seed {name}");
    }
}

#[test]
fn crl_parser_never_panics() {
    run("crl", harness::crl, ITERATIONS);
}

#[test]
fn ocsp_parsers_never_panic() {
    run("ocsp", harness::ocsp, ITERATIONS);
}

#[test]
fn dn_parser_never_panics() {
    run("dn", harness::dn, ITERATIONS);
}

/// Regenerates the CMS seed folders and the envelope recipient fixture. Run by hand.
#[test]
#[ignore = "writes tests/fuzz/seeds/cms_*; run by hand"]
fn generate_cms_seeds() {
    seeds::generate_cms();
}

#[test]
#[ignore = "writes tests/fuzz/seeds/ocsp and tests/fuzz/fixtures/ocsp_ca.der; run by hand"]
fn generate_ocsp_seeds() {
    seeds::generate_ocsp();
}

#[test]
#[ignore = "writes tests/fuzz/seeds/crl; run by hand"]
fn generate_crl_seeds() {
    seeds::generate_crl();
}

/// Regenerates every seed folder. Run by hand; commit the result.
#[test]
#[ignore = "writes tests/fuzz/seeds/; run by hand"]
fn generate_seeds() {
    seeds::generate();
}

mod seeds {
    use super::seed_dir;
    use der::Encode;
    use der::asn1::Ia5String;
    use kb_crypto::PrivateKey;
    use kb_crypto::sm2::{CiphertextLayout, Sm2Ciphertext, Sm2Signature};
    use kb_pki::issue::{CertKind, CertificateParams, issue, self_signed};
    use kb_pki::signer::{LocalSigner, Signer};
    use kb_pki::time::UnixTime;
    use kb_types::{Algorithm, KeyUsage};
    use x509_cert::ext::Extension;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;

    fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
        let dir = seed_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    fn signer(alg: Algorithm) -> LocalSigner {
        LocalSigner::new(PrivateKey::generate(alg).unwrap())
    }

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn san(names: &[&str]) -> Extension {
        let gn = names.iter().map(|n| GeneralName::DnsName(Ia5String::new(n).unwrap())).collect();
        let value = SubjectAltName(gn).to_der().unwrap();
        Extension {
            extn_id: der::asn1::ObjectIdentifier::new_unwrap("2.5.29.17"),
            critical: false,
            extn_value: der::asn1::OctetString::new(value).unwrap(),
        }
    }

    /// OCSP requests (with and without a nonce) and the CA's answers (good, revoked with a
    /// reason, unknown, malformedRequest), for the SM2 CA whose certificate is the fixture.
    pub(super) fn generate_ocsp() {
        use kb_crypto::HashAlgorithm;
        use kb_pki::ocsp::{CertId, CertStatus, request, respond};
        use kb_pki::revocation::RevocationReason;
        let now = UnixTime(1_790_000_000);
        let ca_s = signer(Algorithm::Sm2);
        let ca =
            self_signed(&CertificateParams::new("CN=Fuzz OCSP CA", CertKind::Root { path_len: None }, now, 3650), &ca_s).unwrap();
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/fixtures");
        std::fs::write(fixtures.join("ocsp_ca.der"), ca.der()).unwrap();
        let leaf = issue(
            &CertificateParams::leaf("CN=持有人", KeyUsage::Sign, now, 365),
            signer(Algorithm::Sm2).public_key(),
            Some(&ca),
            &ca_s,
        )
        .unwrap();
        let ids = [CertId::new(&leaf, &ca, HashAlgorithm::Sha1), CertId::new(&ca, &ca, HashAlgorithm::Sm3)];
        let with_nonce = request(&ids, Some(b"nonce")).unwrap();
        write("ocsp", "request_nonce.der", &with_nonce);
        write("ocsp", "request_plain.der", request(&ids[..1], None).unwrap());
        let answer =
            |status: CertStatus| respond(&ca, &ca_s, &with_nonce, now, now.plus_days(1), &move |_| Some(status.clone())).unwrap();
        write("ocsp", "response_good.der", answer(CertStatus::Good));
        write(
            "ocsp",
            "response_revoked.der",
            answer(CertStatus::Revoked { at: now, reason: Some(RevocationReason::KeyCompromise) }),
        );
        write("ocsp", "response_unknown.der", answer(CertStatus::Unknown));
        write("ocsp", "response_malformed_request.der", respond(&ca, &ca_s, b"x", now, now.plus_days(1), &|_| None).unwrap());
    }

    /// CRLs of SM2, RSA and ECDSA CAs: empty, with entries (with and without a reason), PEM.
    pub(super) fn generate_crl() {
        use kb_pki::revocation::{CrlEntry, RevocationReason, issue_crl};
        let now = UnixTime(1_790_000_000);
        for (tag, alg) in [("sm2", Algorithm::Sm2), ("rsa", Algorithm::Rsa { bits: 2048 }), ("ecdsa", Algorithm::EcdsaP256)] {
            let ca_s = signer(alg);
            let ca = self_signed(&CertificateParams::new("CN=Fuzz CRL CA", CertKind::Root { path_len: None }, now, 3650), &ca_s)
                .unwrap();
            let empty = issue_crl(&ca, &ca_s, &[], now, now.plus_days(7), 1).unwrap();
            write("crl", &format!("{tag}_empty.der"), empty.der());
            let entries = [
                CrlEntry { serial: vec![0x01, 0x02, 0x03], at: now, reason: Some(RevocationReason::KeyCompromise) },
                CrlEntry { serial: vec![0x7f; 20], at: now.plus_days(-3), reason: None },
                CrlEntry { serial: vec![0x42], at: now.plus_days(-1), reason: Some(RevocationReason::CertificateHold) },
            ];
            let full = issue_crl(&ca, &ca_s, &entries, now, now.plus_days(7), 0x1234_5678).unwrap();
            write("crl", &format!("{tag}_entries.der"), full.der());
            if alg == Algorithm::Sm2 {
                write("crl", "sm2_entries.pem", full.to_pem());
            }
        }
    }

    /// SignedData (SM2 GM attached/detached, SM2 RFC profile, RSA, ECDSA) over "content",
    /// envelopes (definite DER and indefinite BER) to the fixed recipient.
    pub(super) fn generate_cms() {
        use kb_pki::cms::envelope::{self, EnvelopeOptions};
        use kb_pki::cms::{Profile, SignOptions, sign};
        let now = UnixTime(1_790_000_000);
        for (tag, alg) in [("sm2", Algorithm::Sm2), ("rsa", Algorithm::Rsa { bits: 2048 }), ("ecdsa", Algorithm::EcdsaP256)] {
            let ca_s = signer(alg);
            let ca = self_signed(&CertificateParams::new("CN=Fuzz CMS CA", CertKind::Root { path_len: None }, now, 3650), &ca_s)
                .unwrap();
            let s = signer(alg);
            let cert =
                issue(&CertificateParams::leaf("CN=签名人", KeyUsage::Sign, now, 365), s.public_key(), Some(&ca), &ca_s).unwrap();
            let o = SignOptions { signing_time: Some(now), ..Default::default() };
            write("cms_signed", &format!("{tag}_attached.der"), sign(b"content", &s, &cert, &o).unwrap());
            let det = SignOptions { detached: true, extra_certificates: vec![ca.clone()], ..o.clone() };
            write("cms_signed", &format!("{tag}_detached.der"), sign(b"content", &s, &cert, &det).unwrap());
            if alg == Algorithm::Sm2 {
                let rfc = SignOptions { profile: Some(Profile::Rfc5652), ..o };
                write("cms_signed", "sm2_rfc5652.der", sign(b"content", &s, &cert, &rfc).unwrap());
                // The fixed envelope recipient.
                let key = PrivateKey::Sm2(kb_crypto::sm2::Sm2PrivateKey::from_bytes(&super::harness::ENVELOPE_KEY).unwrap());
                let rcpt = issue(
                    &CertificateParams::leaf("CN=Fuzz Recipient", KeyUsage::Encrypt, now, 3650),
                    &key.public_key(),
                    Some(&ca),
                    &ca_s,
                )
                .unwrap();
                let fixture = seed_dir("cms_envelope").join("../../fixtures/envelope_recipient.der");
                std::fs::create_dir_all(fixture.parent().unwrap()).unwrap();
                std::fs::write(&fixture, rcpt.der()).unwrap();
                let other = issue(
                    &CertificateParams::leaf("CN=Other", KeyUsage::Encrypt, now, 3650),
                    signer(alg).public_key(),
                    Some(&ca),
                    &ca_s,
                )
                .unwrap();
                let both = [rcpt.clone(), other];
                write(
                    "cms_envelope",
                    "sm2_der.der",
                    envelope::encrypt_bytes(b"content", &both, &EnvelopeOptions::default()).unwrap(),
                );
                let mut ber = Vec::new();
                envelope::encrypt(&b"content"[..], &mut ber, None, std::slice::from_ref(&rcpt), &EnvelopeOptions::default())
                    .unwrap();
                write("cms_envelope", "sm2_ber.der", ber);
                let rfc = EnvelopeOptions { profile: Some(Profile::Rfc5652), ..Default::default() };
                write("cms_envelope", "sm2_rfc5652.der", envelope::encrypt_bytes(b"content", &[rcpt], &rfc).unwrap());
            }
        }
    }

    pub(super) fn generate() {
        let now = UnixTime(1_790_000_000); // 2026-09: seeds never need to be valid "now"
        for (tag, alg) in [("sm2", Algorithm::Sm2), ("rsa", Algorithm::Rsa { bits: 2048 }), ("ecdsa", Algorithm::EcdsaP256)] {
            // certificate: root (PEM or bare base64) and a leaf under it (DER).
            let root_s = signer(alg);
            let root = self_signed(
                &CertificateParams::new("C=CN,O=KeyBridge Fuzz,CN=Fuzz Root", CertKind::Root { path_len: Some(1) }, now, 3650),
                &root_s,
            )
            .unwrap();
            let leaf_s = signer(alg);
            let mut p = CertificateParams::leaf("C=CN,O=某某建设集团有限公司,OU=投标部,CN=张三", KeyUsage::Sign, now, 365);
            p.subject_alt_names = vec!["zs@example.cn".into(), "bid.example.cn".into()];
            p.extended_key_usage = vec![der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2")];
            let leaf = issue(&p, leaf_s.public_key(), Some(&root), &root_s).unwrap();
            write("certificate", &format!("{tag}_leaf.der"), leaf.der());
            match alg {
                Algorithm::Sm2 => {
                    write("certificate", "sm2_root.pem", root.to_pem());
                    let enc = issue(
                        &CertificateParams::leaf("C=CN,CN=张三", KeyUsage::Encrypt, now, 365),
                        signer(alg).public_key(),
                        Some(&root),
                        &root_s,
                    )
                    .unwrap();
                    write("certificate", "sm2_enc_leaf.der", enc.der());
                }
                Algorithm::Rsa { .. } => {
                    // Bare base64, as CA middleware hands it over.
                    let pem = root.to_pem();
                    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().join("\r\n");
                    write("certificate", "rsa_root.b64", b64);
                }
                Algorithm::EcdsaP256 => write("certificate", "ecdsa_root.der", root.der()),
            }

            // csr: SM2 with an extensionRequest, the others plain.
            let exts = if alg == Algorithm::Sm2 { vec![san(&["bid.example.cn", "www.example.cn"])] } else { vec![] };
            let csr = kb_pki::csr::build("C=CN,O=某某公司,CN=李四,E=ls@example.cn", &leaf_s, exts).unwrap();
            write("csr", &format!("{tag}.der"), csr);

            // keys: SPKI and PKCS#8.
            write("keys", &format!("{tag}_spki.der"), leaf_s.public_key().to_spki_der().unwrap());
            write("keys", &format!("{tag}_pkcs8.der"), &leaf_s.private_key().to_pkcs8_der().unwrap()[..]);
        }

        // sm2_ciphertext: the GM/T 0003.5 example in every layout, and a longer message
        // to the same (fixed) key.
        let gmt = Sm2Ciphertext::from_der(&unhex(
            "307C022004EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73022100E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0042059983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766041321886CA989CA9C7D58087307CA93092D651EFA",
        ))
        .unwrap();
        let long =
            super::crypto_harness::fixed_key().public_key().encrypt("投标报价：1,234,567.00 元 / bid price".as_bytes()).unwrap();
        for (tag, ct) in [("gmt", &gmt), ("long", &long)] {
            write("sm2_ciphertext", &format!("{tag}_asn1.der"), ct.to_der().unwrap());
            write("sm2_ciphertext", &format!("{tag}_c1c3c2_04.bin"), ct.encode(CiphertextLayout::C1C3C2, true));
            write("sm2_ciphertext", &format!("{tag}_c1c2c3.bin"), ct.encode(CiphertextLayout::C1C2C3, false));
        }
        write("sm2_ciphertext", "gmt_c1c3c2.bin", gmt.encode(CiphertextLayout::C1C3C2, false));
        write("sm2_ciphertext", "gmt_c1c2c3_04.bin", gmt.encode(CiphertextLayout::C1C2C3, true));

        // sm2_signature: the GM/T example (r and s both need a leading 00 in DER) and a
        // fresh one.
        let sig = Sm2Signature::from_raw(&unhex(
            "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA",
        ))
        .unwrap();
        write("sm2_signature", "gmt_der.der", sig.to_der());
        write("sm2_signature", "gmt_raw.bin", sig.to_raw());
        let fresh = super::crypto_harness::fixed_key().sign_digest(&super::crypto_harness::FIXED_E).unwrap();
        write("sm2_signature", "fresh_der.der", fresh.to_der());

        // dn: the strings users and CAs write.
        for (name, dn) in [
            ("chinese.txt", "C=CN,ST=广东,L=深圳,O=某某建设集团有限公司,OU=投标部,CN=张三,E=zs@example.cn"),
            ("escaped.txt", r"CN=Acme\, Inc.,O=A\+B,C=CN"),
            ("oids.txt", "2.5.4.3=dotted,SERIALNUMBER=91440300MA5EXAMPLE,0.9.2342.19200300.100.1.1=uid01"),
            ("mixed.txt", "dc=example, DC=cn, uid=zs, emailAddress=a@b.cn, S=北京, GN=三, SN=张, T=经理, STREET=长安街1号"),
        ] {
            write("dn", name, dn);
        }
    }
}
