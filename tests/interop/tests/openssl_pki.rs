//! Interop with the OpenSSL 3 command line for X.509 certificates and PKCS#10 requests,
//! both directions, for SM2, RSA-2048 and ECDSA P-256.
//!
//! What OpenSSL 3.0.x accepts for SM2 (its default SM2 ID is the *empty* string, GM/T 0015
//! certificates use `1234567812345678`):
//! - `openssl req -new/-x509 … -sm3 -sigopt distid:1234567812345678` signs with the GM/T ID;
//! - `openssl req -verify -vfyopt distid:…` verifies a CSR with it. Note that 3.0 exits 0
//!   even when the self-signature fails: only the "verify OK" / "verify failure" line tells;
//! - `openssl x509 -req -CA … -sm3 -sigopt distid:… -vfyopt distid:…` (`-vfyopt` is for the
//!   CSR's self-signature, checked before signing);
//! - `openssl verify -vfyopt distid:…` applies the ID to the *target* certificate only;
//!   every other signature in the chain is checked with the empty ID. So an SM2
//!   root → intermediate → leaf chain cannot be verified in one call: we verify
//!   intermediate-under-root, then leaf-under-intermediate with `-partial_chain`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::{HashAlgorithm, PrivateKey};
use kb_interop::{OpenSsl, flip, openssl, path_in, read, tempdir, write};
use kb_pki::chain::{TrustStore, verify_chain};
use kb_pki::csr::{self, CertificationRequest};
use kb_pki::issue::{CertKind, CertificateParams, issue, self_signed};
use kb_pki::signer::{LocalSigner, Signer};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, PkiError};
use kb_types::{Algorithm, ErrorCode, HasErrorCode, KeyUsage};
use std::path::Path;

const DISTID: &str = "distid:1234567812345678";
const RSA2048: Algorithm = Algorithm::Rsa { bits: 2048 };

// ------------------------------------------------------------------ helpers

fn signer(alg: Algorithm) -> LocalSigner {
    LocalSigner::new(PrivateKey::generate(alg).unwrap_or_else(|e| panic!("{alg}: {e}")))
}

/// stdout + stderr of an OpenSSL run, and whether it exited 0.
fn run(o: &OpenSsl, args: &[&str]) -> (bool, String) {
    let out = o.run(args, b"");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn ok_text(o: &OpenSsl, args: &[&str]) -> String {
    String::from_utf8(o.ok(args)).unwrap()
}

/// The value of `key=value` in OpenSSL's output (`serial=…`, `notAfter=…`, `SHA1 Fingerprint=…`).
fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no `{key}=` in OpenSSL output:\n{text}"))
        .trim()
        .to_string()
}

/// `openssl x509 -fingerprint -<dgst>` as bare upper-case hex.
fn openssl_fingerprint(o: &OpenSsl, cert: &str, dgst: &str) -> String {
    let text = ok_text(o, &["x509", "-in", cert, "-noout", "-fingerprint", &format!("-{dgst}")]);
    let line = text.lines().find(|l| l.contains("Fingerprint=")).unwrap_or_else(|| panic!("no fingerprint in {text}"));
    line.split_once('=').unwrap().1.trim().replace(':', "").to_uppercase()
}

/// OpenSSL's `Mon DD HH:MM:SS YYYY GMT` (the format every 3.x prints by default).
fn parse_openssl_date(s: &str) -> UnixTime {
    let parts: Vec<&str> = s.split_whitespace().collect();
    assert_eq!((parts.len(), parts.get(4)), (5, Some(&"GMT")), "unexpected OpenSSL date {s:?}");
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == parts[0]).unwrap_or_else(|| panic!("month in {s:?}")) as i64 + 1;
    let day: i64 = parts[1].parse().unwrap();
    let year: i64 = parts[3].parse().unwrap();
    let hms: Vec<i64> = parts[2].split(':').map(|x| x.parse().unwrap()).collect();
    // Days from civil (H. Hinnant), proleptic Gregorian.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    UnixTime(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// OpenSSL's `-text` spelling of the keyUsage our issuer writes for a leaf.
fn openssl_ku_text(usage: KeyUsage) -> &'static str {
    match usage {
        KeyUsage::Sign => "Digital Signature, Non Repudiation",
        KeyUsage::Encrypt => "Key Encipherment, Data Encipherment, Key Agreement",
        KeyUsage::Both => "Digital Signature, Non Repudiation, Key Encipherment, Data Encipherment",
    }
}

/// The line after `header` in `openssl … -text` output, trimmed.
fn line_after(text: &str, header: &str) -> String {
    let mut lines = text.lines();
    lines.find(|l| l.trim_start().starts_with(header)).unwrap_or_else(|| panic!("no `{header}` in:\n{text}"));
    lines.next().unwrap_or_default().trim().to_string()
}

fn pem_file(dir: &Path, name: &str, cert: &Certificate) -> String {
    write(dir, name, cert.to_pem())
}

fn load_cert(path: &str) -> Certificate {
    Certificate::from_pem(std::str::from_utf8(&read(path)).unwrap()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Minimal OpenSSL config for `req` so nothing depends on the system openssl.cnf.
const REQ_CNF: &str = "\
[req]
distinguished_name = dn
string_mask = utf8only
utf8 = yes
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
";

/// An OpenSSL key (`genpkey`) for `alg`; returns its path.
fn openssl_key(o: &OpenSsl, dir: &Path, name: &str, alg: Algorithm) -> String {
    let out = path_in(dir, name);
    match alg {
        Algorithm::Sm2 => o.ok(&["genpkey", "-algorithm", "SM2", "-out", &out]),
        Algorithm::Rsa { bits } => {
            o.ok(&["genpkey", "-algorithm", "RSA", "-pkeyopt", &format!("rsa_keygen_bits:{bits}"), "-out", &out])
        }
        Algorithm::EcdsaP256 => o.ok(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &out]),
    };
    out
}

/// Digest and (for SM2) signing options for OpenSSL signing with `alg`.
fn sign_opts(alg: Algorithm) -> Vec<&'static str> {
    match alg {
        Algorithm::Sm2 => vec!["-sm3", "-sigopt", DISTID],
        _ => vec!["-sha256"],
    }
}

/// A CA made by OpenSSL: certificate and key paths.
struct OpensslCa {
    alg: Algorithm,
    cert: String,
    key: String,
}

/// An OpenSSL self-signed CA (`req -x509`, basicConstraints CA:TRUE, keyCertSign).
fn openssl_ca(o: &OpenSsl, dir: &Path, alg: Algorithm, subject: &str) -> OpensslCa {
    let cnf = write(dir, "req.cnf", REQ_CNF);
    let key = openssl_key(o, dir, "ca.key", alg);
    let cert = path_in(dir, "ca.pem");
    let mut args = vec!["req", "-config", &cnf, "-x509", "-new", "-utf8", "-key", &key, "-subj", subject, "-extensions", "v3_ca"];
    args.extend(sign_opts(alg));
    args.extend(["-days", "3650", "-out", &cert]);
    o.ok(&args);
    OpensslCa { alg, cert, key }
}

impl OpensslCa {
    /// `openssl x509 -req`: sign `csr` with the leaf extensions `ext`, valid for `days`,
    /// into `out`. `sm2_id` = false signs an SM2 certificate with OpenSSL's empty ID.
    fn issue(&self, o: &OpenSsl, csr: &str, ext: &str, days: &str, out: &str, sm2_id: bool) {
        let extfile = format!("{out}.ext");
        std::fs::write(&extfile, ext).unwrap();
        let mut args =
            vec!["x509", "-req", "-in", csr, "-CA", &self.cert, "-CAkey", &self.key, "-extfile", &extfile, "-days", days];
        match (self.alg, sm2_id) {
            (Algorithm::Sm2, true) => args.extend(["-sm3", "-sigopt", DISTID, "-vfyopt", DISTID]),
            (Algorithm::Sm2, false) => args.extend(["-sm3", "-vfyopt", DISTID]),
            _ => args.push("-sha256"),
        }
        args.extend(["-out", out]);
        o.ok(&args);
    }
}

/// `openssl req -new` with an OpenSSL key; `sm2_id` = false uses OpenSSL's empty ID.
fn openssl_csr(o: &OpenSsl, dir: &Path, alg: Algorithm, key: &str, subject: &str, sm2_id: bool, out: &str) {
    let cnf = write(dir, "req.cnf", REQ_CNF);
    let mut args = vec!["req", "-config", &cnf, "-new", "-utf8", "-key", key, "-subj", subject];
    match (alg, sm2_id) {
        (Algorithm::Sm2, true) => args.extend(sign_opts(alg)),
        (Algorithm::Sm2, false) => args.push("-sm3"),
        _ => args.push("-sha256"),
    }
    args.extend(["-addext", "subjectAltName=DNS:bid.example.cn,email:ls@example.cn", "-out", out]);
    o.ok(&args);
}

/// Whether `openssl req -verify` accepts the CSR (3.0 exits 0 either way: read the line).
fn openssl_req_verifies(o: &OpenSsl, csr: &str, sm2_id: bool) -> bool {
    let mut args = vec!["req", "-verify", "-noout", "-in", csr];
    if sm2_id {
        args.extend(["-vfyopt", DISTID]);
    }
    let (ok, text) = run(o, &args);
    match (ok, text.contains("verify OK"), text.contains("verify failure")) {
        (true, true, false) => true,
        (_, false, true) | (false, false, _) => false,
        _ => panic!("unclear `openssl req -verify` outcome:\n{text}"),
    }
}

// ------------------------------------------------------------------ 1. our chains in OpenSSL

const LEAF_DN: &str = "C=CN,ST=广东,O=某某建设集团有限公司,OU=投标部,CN=张三";
const LEAF_DN_OPENSSL: &str = "C=CN, ST=广东, O=某某建设集团有限公司, OU=投标部, CN=张三";

/// We issue root → intermediate → leaf; OpenSSL verifies it (and rejects a flipped
/// signature byte), prints our Chinese subject and key usage, and agrees on the SHA-1,
/// SHA-256 and SM3 fingerprints and the serial numbers.
fn our_chain_in_openssl(alg: Algorithm, usage: KeyUsage) {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let d = dir.path();
    let now = UnixTime::now();

    let root_s = signer(alg);
    let root = self_signed(
        &CertificateParams::new("C=CN,O=KeyBridge Test,CN=Root CA", CertKind::Root { path_len: None }, now.plus_days(-1), 3650),
        &root_s,
    )
    .unwrap();
    let mid_s = signer(alg);
    let mid = issue(
        &CertificateParams::new(
            "C=CN,O=KeyBridge Test,CN=Sub CA",
            CertKind::Intermediate { path_len: Some(0) },
            now.plus_days(-1),
            1825,
        ),
        mid_s.public_key(),
        Some(&root),
        &root_s,
    )
    .unwrap();
    let leaf_s = signer(alg);
    let mut p = CertificateParams::leaf(LEAF_DN, usage, now.plus_days(-1), 365);
    // High bit set: DER needs a 00 pad byte, which neither side may print.
    p.serial = Some(vec![0x8f, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0x01]);
    p.subject_alt_names = vec!["zs@example.cn".into(), "bid.example.cn".into()];
    let leaf = issue(&p, leaf_s.public_key(), Some(&mid), &mid_s).unwrap();
    assert_eq!(leaf.serial_bytes()[0], 0, "the test serial should need a pad byte");
    assert!(verify_chain(&leaf, std::slice::from_ref(&mid), &TrustStore::from_certs([root.clone()]), now).is_ok());

    let root_pem = pem_file(d, "root.pem", &root);
    let mid_pem = pem_file(d, "mid.pem", &mid);
    let leaf_pem = pem_file(d, "leaf.pem", &leaf);
    // Flip the last byte: inside the signature value for every algorithm.
    let bad = Certificate::from_der(&flip(leaf.der(), leaf.der().len() - 1, 0)).unwrap();
    let bad_pem = pem_file(d, "bad.pem", &bad);

    // Chain verification.
    let verify_leaf = |leaf_path: &str| -> (bool, String) {
        if alg == Algorithm::Sm2 {
            run(&o, &["verify", "-partial_chain", "-CAfile", &mid_pem, "-vfyopt", DISTID, leaf_path])
        } else {
            run(&o, &["verify", "-CAfile", &root_pem, "-untrusted", &mid_pem, leaf_path])
        }
    };
    if alg == Algorithm::Sm2 {
        // Step 1: the intermediate under the root (the ID applies to the target only).
        let (ok, text) = run(&o, &["verify", "-CAfile", &root_pem, "-vfyopt", DISTID, &mid_pem]);
        assert!(ok && text.trim() == format!("{mid_pem}: OK"), "{text}");
        // We sign with the GM/T ID, not OpenSSL's empty default.
        let (ok, text) = run(&o, &["verify", "-partial_chain", "-CAfile", &mid_pem, &leaf_pem]);
        assert!(!ok && text.contains("certificate signature failure"), "{text}");
    }
    let (ok, text) = verify_leaf(&leaf_pem);
    assert!(ok && text.trim() == format!("{leaf_pem}: OK"), "{alg}: {text}");
    let (ok, text) = verify_leaf(&bad_pem);
    assert!(!ok && text.contains("certificate signature failure"), "{alg}: flipped signature accepted by OpenSSL:\n{text}");
    assert_eq!(
        verify_chain(&bad, std::slice::from_ref(&mid), &TrustStore::from_certs([root.clone()]), now).err().map(|e| e.code()),
        Some(ErrorCode::CertificateSignatureInvalid)
    );

    // What OpenSSL prints.
    let text = ok_text(&o, &["x509", "-in", &leaf_pem, "-noout", "-text", "-nameopt", "utf8"]);
    assert!(text.contains(&format!("Subject: {LEAF_DN_OPENSSL}\n")), "{alg}: subject not shown as expected:\n{text}");
    assert!(text.contains("Issuer: C=CN, O=KeyBridge Test, CN=Sub CA\n"), "{text}");
    assert_eq!(line_after(&text, "X509v3 Key Usage: critical"), openssl_ku_text(usage), "{alg}");
    // End-entity certificates carry no basicConstraints (docs/certificate-profiles.md).
    assert!(!text.contains("X509v3 Basic Constraints"), "{alg}: end-entity basicConstraints:\n{text}");
    assert_eq!(line_after(&text, "X509v3 Subject Alternative Name:"), "email:zs@example.cn, DNS:bid.example.cn");
    let sig_alg = match alg {
        Algorithm::Sm2 => "SM2-with-SM3",
        Algorithm::Rsa { .. } => "sha256WithRSAEncryption",
        Algorithm::EcdsaP256 => "ecdsa-with-SHA256",
    };
    assert!(text.contains(&format!("Signature Algorithm: {sig_alg}\n")), "{text}");
    assert_eq!(
        line_after(&text, "X509v3 Subject Key Identifier:").replace(':', ""),
        hex::encode_upper(leaf.subject_key_id().unwrap())
    );

    // Fingerprints and serials.
    for (cert, path) in [(&root, &root_pem), (&mid, &mid_pem), (&leaf, &leaf_pem)] {
        assert_eq!(openssl_fingerprint(&o, path, "sha1"), cert.thumbprint(HashAlgorithm::Sha1), "{alg} {path}");
        assert_eq!(openssl_fingerprint(&o, path, "sha256"), cert.thumbprint(HashAlgorithm::Sha256), "{alg} {path}");
        assert_eq!(openssl_fingerprint(&o, path, "sm3"), cert.thumbprint(HashAlgorithm::Sm3), "{alg} {path}");
        let serial = field(&ok_text(&o, &["x509", "-in", path, "-noout", "-serial"]), "serial");
        assert_eq!(serial, cert.serial_hex(), "{alg} {path}");
    }
    assert_eq!(leaf.serial_hex(), "8F00112233445566778899AABBCCDD01");
}

#[test]
fn openssl_verifies_our_sm2_chain() {
    our_chain_in_openssl(Algorithm::Sm2, KeyUsage::Sign);
}

#[test]
fn openssl_verifies_our_rsa_chain() {
    our_chain_in_openssl(RSA2048, KeyUsage::Both);
}

#[test]
fn openssl_verifies_our_ecdsa_chain() {
    our_chain_in_openssl(Algorithm::EcdsaP256, KeyUsage::Encrypt);
}

// ------------------------------------------------------------------ 2. CSRs

/// Our CSRs pass `openssl req -verify` (SM2 only with the GM/T ID); a flipped
/// signature byte fails; OpenSSL reads the same subject and requested extensions.
#[test]
fn openssl_verifies_our_csrs() {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let d = dir.path();
    for alg in [Algorithm::Sm2, RSA2048, Algorithm::EcdsaP256] {
        let s = signer(alg);
        let der = csr::build("C=CN,O=某某公司,OU=投标部,CN=李四", &s, vec![decode(&san_dns("bid.example.cn"))]).unwrap();
        let ours = CertificationRequest::from_der(&der).unwrap();
        let path = write(d, &format!("{alg}.csr"), ours.to_pem());
        let sm2 = alg == Algorithm::Sm2;
        assert!(openssl_req_verifies(&o, &path, sm2), "{alg}: OpenSSL rejects our CSR");
        if sm2 {
            assert!(
                !openssl_req_verifies(&o, &path, false),
                "SM2 CSR verified with OpenSSL's empty ID: not signed with the GM/T ID"
            );
        }
        let bad = CertificationRequest::from_der(&flip(&der, der.len() - 1, 0)).unwrap();
        let bad_path = write(d, &format!("{alg}-bad.csr"), bad.to_pem());
        assert!(!openssl_req_verifies(&o, &bad_path, sm2), "{alg}: OpenSSL accepts a flipped signature");
        assert_eq!(bad.verify().err().map(|e| e.code()), Some(ErrorCode::CsrInvalid));

        let subject =
            field(&ok_text(&o, &["req", "-in", &path, "-noout", "-subject", "-nameopt", "RFC2253,-esc_msb"]), "subject");
        assert_eq!(subject, "CN=李四,OU=投标部,O=某某公司,C=CN", "{alg}");
        assert_eq!(ours.subject().replace(", ", ","), subject, "{alg}");
        let text = ok_text(&o, &["req", "-in", &path, "-noout", "-text"]);
        assert_eq!(line_after(&text, "X509v3 Subject Alternative Name:"), "DNS:bid.example.cn", "{alg}");
    }
}

/// DER TLV with a short-form length (everything here is < 128 bytes).
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    assert!(content.len() < 0x80);
    [&[tag, content.len() as u8][..], content].concat()
}

/// A DER `Extension` carrying subjectAltName = one dNSName (built by hand: this crate
/// does not depend on x509-cert).
fn san_dns(name: &str) -> Vec<u8> {
    let general_names = tlv(0x30, &tlv(0x82, name.as_bytes()));
    let oid = [0x06, 0x03, 0x55, 0x1d, 0x11]; // 2.5.29.17
    tlv(0x30, &[&oid[..], &tlv(0x04, &general_names)].concat())
}

/// Decode DER into whatever type the caller needs (here kb-pki's `Extension`, which
/// this crate cannot name without depending on x509-cert).
fn decode<T: der::DecodeOwned>(der: &[u8]) -> T {
    T::from_der(der).unwrap_or_else(|e| panic!("{e}: {}", hex::encode(der)))
}

/// OpenSSL-made CSRs (SM2 with the GM/T ID, RSA, EC) verify here, with the same subject,
/// public key and requested extensions; an SM2 CSR signed with OpenSSL's empty default
/// ID does not (we verify CSRs with the GM/T ID, as CAs do).
#[test]
fn we_verify_openssl_csrs() {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let d = dir.path();
    for alg in [Algorithm::Sm2, RSA2048, Algorithm::EcdsaP256] {
        let key = openssl_key(&o, d, &format!("{alg}.key"), alg);
        let out = path_in(d, &format!("{alg}.csr"));
        openssl_csr(&o, d, alg, &key, "/C=CN/O=某某公司/OU=投标部/CN=李四", true, &out);
        let req = CertificationRequest::from_pem(std::str::from_utf8(&read(&out)).unwrap()).unwrap();
        req.verify().unwrap_or_else(|e| panic!("{alg}: OpenSSL CSR does not verify here: {e}"));
        assert_eq!(req.subject(), "CN=李四, OU=投标部, O=某某公司, C=CN", "{alg}");
        let openssl_subject =
            field(&ok_text(&o, &["req", "-in", &out, "-noout", "-subject", "-nameopt", "RFC2253,-esc_msb"]), "subject");
        assert_eq!(req.subject().replace(", ", ","), openssl_subject, "{alg}");
        let their_key = PrivateKey::from_pkcs8_pem(std::str::from_utf8(&read(&key)).unwrap()).unwrap();
        assert_eq!(req.public_key().unwrap(), their_key.public_key(), "{alg}");
        assert_eq!(req.public_key().unwrap().algorithm(), alg);
        let exts = req.requested_extensions();
        assert_eq!(exts.iter().map(|e| e.extn_id.to_string()).collect::<Vec<_>>(), ["2.5.29.17"], "{alg}");
        let bad = CertificationRequest::from_der(&flip(req.der(), req.der().len() - 1, 0)).unwrap();
        assert_eq!(bad.verify().err().map(|e| e.code()), Some(ErrorCode::CsrInvalid), "{alg}");
    }
    // SM2 with OpenSSL's empty default ID: a different ZA, so it cannot verify here.
    let key = openssl_key(&o, d, "sm2-empty-id.key", Algorithm::Sm2);
    let out = path_in(d, "sm2-empty-id.csr");
    openssl_csr(&o, d, Algorithm::Sm2, &key, "/CN=empty id", false, &out);
    assert!(openssl_req_verifies(&o, &out, false), "OpenSSL must accept its own empty-ID CSR");
    let req = CertificationRequest::from_pem(std::str::from_utf8(&read(&out)).unwrap()).unwrap();
    assert_eq!(req.verify().err().map(|e| e.code()), Some(ErrorCode::CsrInvalid));
}

const LEAF_SIGN_EXT: &str = "\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
";

/// OpenSSL's own SM2 CA signs our SM2 CSR (`x509 -req -sm3 -sigopt distid`); our
/// `verify_chain` accepts the chain. Signed with OpenSSL's empty ID instead, it is
/// rejected as a bad signature.
#[test]
fn openssl_sm2_ca_signs_our_csr() {
    let Some(o) = openssl() else { return };
    let dir = tempdir();
    let d = dir.path();
    let ca = openssl_ca(&o, d, Algorithm::Sm2, "/C=CN/O=OpenSSL 测试/CN=OpenSSL SM2 Root");
    let s = signer(Algorithm::Sm2);
    let csr_path = write(d, "ours.csr", {
        let der = csr::build("C=CN,O=某某公司,CN=王五", &s, vec![]).unwrap();
        CertificationRequest::from_der(&der).unwrap().to_pem()
    });
    let leaf_path = path_in(d, "leaf.pem");
    ca.issue(&o, &csr_path, LEAF_SIGN_EXT, "30", &leaf_path, true);

    let root = load_cert(&ca.cert);
    let leaf = load_cert(&leaf_path);
    let now = UnixTime::now();
    let trust = TrustStore::from_certs([root.clone()]);
    let chain = verify_chain(&leaf, &[], &trust, now).unwrap_or_else(|e| panic!("OpenSSL-issued SM2 chain rejected: {e}"));
    assert_eq!(chain.certificates, vec![leaf.clone(), root.clone()]);
    assert_eq!(&leaf.public_key().unwrap(), s.public_key());
    assert_eq!(leaf.subject(), "CN=王五, O=某某公司, C=CN");
    assert_eq!(leaf.issuer(), "CN=OpenSSL SM2 Root, O=OpenSSL 测试, C=CN");
    assert_eq!(leaf.usage(), KeyUsage::Sign);
    assert_eq!(leaf.authority_key_id(), root.subject_key_id());
    assert!(root.is_ca() && root.is_self_issued());
    // OpenSSL agrees the chain is good (two levels: -vfyopt covers the only signature).
    let (ok, text) = run(&o, &["verify", "-CAfile", &ca.cert, "-vfyopt", DISTID, &leaf_path]);
    assert!(ok, "{text}");

    // The same CSR signed with OpenSSL's empty default ID.
    let empty_path = path_in(d, "leaf-empty-id.pem");
    ca.issue(&o, &csr_path, LEAF_SIGN_EXT, "30", &empty_path, false);
    let empty = load_cert(&empty_path);
    // (A fresh `now`: OpenSSL's notBefore is the second it signed.)
    assert_eq!(
        verify_chain(&empty, &[], &trust, UnixTime::now()).err().map(|e| e.code()),
        Some(ErrorCode::CertificateSignatureInvalid)
    );
}

/// A certificate OpenSSL issued for one day is `Expired` two days later (and OpenSSL's
/// `verify -attime` agrees); today it verifies.
#[test]
fn openssl_one_day_cert_expires_here() {
    let Some(o) = openssl() else { return };
    for alg in [Algorithm::Sm2, RSA2048] {
        let dir = tempdir();
        let d = dir.path();
        let ca = openssl_ca(&o, d, alg, "/C=CN/CN=OpenSSL Expiry CA");
        let key = openssl_key(&o, d, "leaf.key", alg);
        let csr_path = path_in(d, "leaf.csr");
        openssl_csr(&o, d, alg, &key, "/C=CN/CN=一日证书", true, &csr_path);
        let leaf_path = path_in(d, "leaf.pem");
        ca.issue(&o, &csr_path, LEAF_SIGN_EXT, "1", &leaf_path, true);

        let root = load_cert(&ca.cert);
        let leaf = load_cert(&leaf_path);
        let trust = TrustStore::from_certs([root]);
        let now = UnixTime::now();
        assert!(verify_chain(&leaf, &[], &trust, now).is_ok(), "{alg}: valid today");
        let later = now.plus_days(2);
        let err = verify_chain(&leaf, &[], &trust, later).unwrap_err();
        assert_eq!(err.code(), ErrorCode::CertificateExpired, "{alg}: {err}");
        match &err {
            PkiError::Expired { subject, not_after } => {
                assert_eq!(subject, "CN=一日证书, C=CN");
                assert_eq!(not_after, &leaf.not_after().to_rfc3339());
            }
            other => panic!("{alg}: want Expired, got {other:?}"),
        }
        let attime = later.0.to_string();
        let mut args = vec!["verify", "-attime", &attime, "-CAfile", &ca.cert];
        if alg == Algorithm::Sm2 {
            args.extend(["-vfyopt", DISTID]);
        }
        args.push(&leaf_path);
        let (ok, text) = run(&o, &args);
        assert!(!ok && text.contains("certificate has expired"), "{alg}: {text}");
    }
}

// ------------------------------------------------------------------ 3. info() on OpenSSL certificates

/// `Certificate::info()` on OpenSSL-issued RSA and SM2 certificates: algorithm, key
/// size, usage, key-usage flags, validity equal to `openssl x509 -dates`, serial and
/// SHA-1 thumbprint equal to OpenSSL's.
#[test]
fn info_matches_openssl_for_its_certificates() {
    let Some(o) = openssl() else { return };
    let cases = [
        (
            RSA2048,
            "keyUsage = critical,digitalSignature,keyEncipherment\n",
            KeyUsage::Both,
            vec!["digitalSignature", "keyEncipherment"],
            "RSA (2048 bit)",
            "sha256WithRSAEncryption",
        ),
        (
            Algorithm::Sm2,
            "keyUsage = critical,keyEncipherment,dataEncipherment\n",
            KeyUsage::Encrypt,
            vec!["keyEncipherment", "dataEncipherment"],
            "SM2 (256 bit)",
            "SM2-with-SM3",
        ),
        (
            Algorithm::Sm2,
            "keyUsage = critical,digitalSignature,nonRepudiation\n",
            KeyUsage::Sign,
            vec!["digitalSignature", "nonRepudiation"],
            "SM2 (256 bit)",
            "SM2-with-SM3",
        ),
    ];
    for (alg, ku, usage, flags, description, sig_alg) in cases {
        let dir = tempdir();
        let d = dir.path();
        let ca = openssl_ca(&o, d, alg, "/C=CN/O=OpenSSL/CN=Info CA");
        let key = openssl_key(&o, d, "leaf.key", alg);
        let csr_path = path_in(d, "leaf.csr");
        openssl_csr(&o, d, alg, &key, "/C=CN/O=某某公司/CN=赵六", true, &csr_path);
        let leaf_path = path_in(d, "leaf.pem");
        let ext = format!("basicConstraints = critical,CA:FALSE\n{ku}extendedKeyUsage = clientAuth,emailProtection\n");
        ca.issue(&o, &csr_path, &ext, "400", &leaf_path, true);

        let leaf = load_cert(&leaf_path);
        let now = UnixTime::now();
        let info = leaf.info(now, 90);
        assert_eq!(info.public_key_algorithm, alg);
        assert_eq!(info.public_key_description, description);
        assert_eq!(info.signature_algorithm, sig_alg);
        assert_eq!(info.usage, usage, "{alg} {ku}");
        assert_eq!(info.key_usage, flags);
        assert_eq!(info.extended_key_usage, ["clientAuth", "emailProtection"]);
        assert!(!info.is_ca);
        assert_eq!(info.version, 3);
        assert_eq!(info.subject, "CN=赵六, O=某某公司, C=CN");
        assert_eq!(info.issuer, "CN=Info CA, O=OpenSSL, C=CN");
        assert_eq!(info.status, kb_pki::cert::ValidityStatus::Valid);

        let dates = ok_text(&o, &["x509", "-in", &leaf_path, "-noout", "-dates"]);
        assert_eq!(info.not_before, parse_openssl_date(&field(&dates, "notBefore")), "{dates}");
        assert_eq!(info.not_after, parse_openssl_date(&field(&dates, "notAfter")), "{dates}");
        assert_eq!(info.not_after.0 - info.not_before.0, 400 * 86_400);
        assert!((399..=400).contains(&info.days_left), "{}", info.days_left);
        assert_eq!(info.serial, field(&ok_text(&o, &["x509", "-in", &leaf_path, "-noout", "-serial"]), "serial"));
        assert_eq!(info.thumbprint_sha1, openssl_fingerprint(&o, &leaf_path, "sha1"));
    }
}

#[test]
fn openssl_date_parser() {
    assert_eq!(parse_openssl_date("Jan  1 00:00:00 1970 GMT"), UnixTime(0));
    assert_eq!(parse_openssl_date("Nov 18 11:06:40 2026 GMT"), UnixTime(1_795_000_000));
    assert_eq!(parse_openssl_date("Feb 29 00:00:00 2028 GMT"), UnixTime(1_835_395_200));
}
