//! Every certificate profile KeyBridge issues (drivers/kb-pki/src/issue.rs; profiles in
//! docs/certificate-profiles.md), shown to the OpenSSL 3 CLI: `openssl x509 -text` reads
//! the extensions as the profile says, and `openssl verify -x509_strict` accepts every
//! chain (SM2 with the GM/T 0015 ID via `-vfyopt distid:`; OpenSSL applies the ID to the
//! target certificate only, so an SM2 chain is verified a link at a time, see
//! openssl_pki.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::PrivateKey;
use kb_interop::{OpenSsl, openssl, tempdir, write};
use kb_pki::Certificate;
use kb_pki::issue::{CertKind, CertificateParams, issue, issue_dual, self_signed};
use kb_pki::signer::{LocalSigner, Signer};
use kb_pki::time::UnixTime;
use kb_types::{Algorithm, KeyUsage};
use std::path::Path;

const DISTID: &str = "distid:1234567812345678";

fn signer(alg: Algorithm) -> LocalSigner {
    LocalSigner::new(PrivateKey::generate(alg).unwrap_or_else(|e| panic!("{alg}: {e}")))
}

/// `openssl x509 -text` of `cert`.
fn text(o: &OpenSsl, dir: &Path, name: &str, cert: &Certificate) -> (String, String) {
    let path = write(dir, name, cert.to_pem());
    (path.clone(), String::from_utf8(o.ok(&["x509", "-in", &path, "-noout", "-text"])).unwrap())
}

/// The lines of an extension's block in `openssl x509 -text` (its header and value).
fn extension<'a>(text: &'a str, name: &str) -> Option<(bool, &'a str)> {
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if let Some(rest) = l.trim().strip_prefix(name) {
            return Some((rest.contains("critical"), lines.next().unwrap_or("").trim()));
        }
    }
    None
}

fn verify_ok(o: &OpenSsl, args: &[&str], what: &str) {
    let out = o.run(args, b"");
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && all.trim().ends_with(": OK"), "{what}: openssl {} →\n{all}", args.join(" "));
}

#[test]
fn openssl_reads_and_strictly_verifies_every_profile() {
    let Some(o) = openssl() else { return };
    let d = tempdir();
    let d = d.path();
    let now = UnixTime::now().plus_days(-1);
    for alg in [Algorithm::Sm2, Algorithm::EcdsaP256, Algorithm::Rsa { bits: 2048 }] {
        let tag = format!("{alg}").replace([' ', '-', '(', ')'], "_");
        let root_s = signer(alg);
        let root = self_signed(
            &CertificateParams::new("C=CN,O=KeyBridge Interop,CN=Root", CertKind::Root { path_len: Some(1) }, now, 3650),
            &root_s,
        )
        .unwrap();
        let mid_s = signer(alg);
        let mid = issue(
            &CertificateParams::new(
                "C=CN,O=KeyBridge Interop,CN=Sub CA",
                CertKind::Intermediate { path_len: Some(0) },
                now,
                1825,
            ),
            mid_s.public_key(),
            Some(&root),
            &root_s,
        )
        .unwrap();
        let (root_pem, root_text) = text(&o, d, &format!("{tag}-root.pem"), &root);
        let (mid_pem, mid_text) = text(&o, d, &format!("{tag}-mid.pem"), &mid);
        for (t, path_len) in [(&root_text, "1"), (&mid_text, "0")] {
            let (critical, value) =
                extension(t, "X509v3 Basic Constraints:").unwrap_or_else(|| panic!("{alg}: CA without BC:\n{t}"));
            assert!(critical, "{alg}: CA basicConstraints must be critical");
            assert_eq!(value, format!("CA:TRUE, pathlen:{path_len}"), "{alg}");
            let (critical, value) = extension(t, "X509v3 Key Usage:").unwrap();
            assert!(critical && value == "Digital Signature, Certificate Sign, CRL Sign", "{alg}: CA key usage {value}");
        }
        assert!(extension(&root_text, "X509v3 Authority Key Identifier:").is_none(), "{alg}: self-signed root with AKI");
        // The intermediate under the root (SM2: the ID covers the target's signature only).
        let mut args = vec!["verify", "-x509_strict", "-CAfile", &root_pem];
        if alg == Algorithm::Sm2 {
            args.extend(["-vfyopt", DISTID]);
        }
        args.push(&mid_pem);
        verify_ok(&o, &args, &format!("{alg} intermediate"));

        let mut leaves: Vec<(String, Certificate, KeyUsage)> = [KeyUsage::Sign, KeyUsage::Encrypt, KeyUsage::Both]
            .into_iter()
            .map(|u| {
                let c = issue(
                    &CertificateParams::leaf("C=CN,O=某某公司,CN=张三", u, now, 365),
                    signer(alg).public_key(),
                    Some(&mid),
                    &mid_s,
                )
                .unwrap();
                (format!("{u} leaf"), c, u)
            })
            .collect();
        if alg == Algorithm::Sm2 {
            let (s, e) =
                issue_dual("C=CN,CN=双证书", now, 365, signer(alg).public_key(), signer(alg).public_key(), &mid, &mid_s).unwrap();
            leaves.push(("dual sign".into(), s, KeyUsage::Sign));
            leaves.push(("dual encrypt".into(), e, KeyUsage::Encrypt));
        }
        for (i, (what, leaf, usage)) in leaves.iter().enumerate() {
            let what = format!("{alg} {what}");
            let (leaf_pem, t) = text(&o, d, &format!("{tag}-leaf{i}.pem"), leaf);
            assert!(
                extension(&t, "X509v3 Basic Constraints:").is_none(),
                "{what}: end-entity certificate with basicConstraints:\n{t}"
            );
            let (critical, ku) = extension(&t, "X509v3 Key Usage:").unwrap();
            let want = match usage {
                KeyUsage::Sign => "Digital Signature, Non Repudiation",
                KeyUsage::Encrypt => "Key Encipherment, Data Encipherment, Key Agreement",
                KeyUsage::Both => "Digital Signature, Non Repudiation, Key Encipherment, Data Encipherment",
            };
            assert!(critical && ku == want, "{what}: key usage {ku}");
            let (critical, ski) = extension(&t, "X509v3 Subject Key Identifier:").unwrap();
            assert!(!critical && !ski.is_empty(), "{what}");
            let (critical, aki) = extension(&t, "X509v3 Authority Key Identifier:").unwrap();
            assert!(!critical, "{what}");
            let mid_ski = extension(&mid_text, "X509v3 Subject Key Identifier:").unwrap().1;
            assert_eq!(aki.trim_start_matches("keyid:"), mid_ski, "{what}: AKI = issuer SKI");
            if alg == Algorithm::Sm2 {
                verify_ok(
                    &o,
                    &["verify", "-x509_strict", "-partial_chain", "-CAfile", &mid_pem, "-vfyopt", DISTID, &leaf_pem],
                    &what,
                );
            } else {
                verify_ok(&o, &["verify", "-x509_strict", "-CAfile", &root_pem, "-untrusted", &mid_pem, &leaf_pem], &what);
            }
        }
    }
}
