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

use kb_interop::{OpenSsl, openssl, path_in, read, tempdir, write};
use kb_pki::Certificate;
use kb_pki::issue::TestCa;
use kb_pki::revocation::{Crl, CrlEntry, RevocationReason, RevocationStatus, check_crl, issue_crl};
use kb_pki::time::UnixTime;
use kb_types::{Algorithm, KeyUsage};
use std::path::Path;

const DISTID: &str = "distid:1234567812345678";

/// (name, `req -newkey` argument, digest, extra signing options)
fn kinds() -> [(&'static str, &'static str, &'static str, &'static [&'static str]); 3] {
    [("rsa", "rsa:2048", "sha256", &[]), ("ecdsa", "ec:P256", "sha256", &[]), ("sm2", "sm2", "sm3", &["-sigopt", DISTID])]
}

fn ca_config(dir: &Path, md: &str) -> String {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("newcerts")).unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("crlnumber"), "1000\n").unwrap();
    write(
        dir,
        "ca.cnf",
        format!(
            "[ca]\ndefault_ca = kb\n[kb]\ndir = {d}\ndatabase = {d}/index.txt\nnew_certs_dir = {d}/newcerts\n\
             certificate = {d}/ca.pem\nprivate_key = {d}/ca.key\ncrlnumber = {d}/crlnumber\nrand_serial = yes\n\
             default_md = {md}\ndefault_days = 30\ndefault_crl_days = 7\npolicy = any\nunique_subject = no\n\
             copy_extensions = none\nx509_extensions = leaf\n[any]\ncommonName = supplied\n\
             [leaf]\nbasicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             [req]\ndistinguished_name = dn\n[dn]\n[root]\nbasicConstraints = critical, CA:TRUE\n\
             keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n"
        ),
    )
}

fn newkey(o: &OpenSsl, dir: &Path, spec: &str, out: &str) {
    let out = path_in(dir, out);
    match spec {
        "rsa:2048" => o.ok(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &out]),
        "ec:P256" => o.ok(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &out]),
        _ => o.ok(&["genpkey", "-algorithm", "SM2", "-out", &out]),
    };
}

#[test]
fn openssl_crls_are_read_and_checked() {
    let Some(o) = openssl() else { return };
    for (name, spec, md, sigopt) in kinds() {
        let t = tempdir();
        let dir = t.path().join(name);
        let cnf = ca_config(&dir, md);
        let p = |f: &str| path_in(&dir, f);
        newkey(&o, &dir, spec, "ca.key");
        let ca_key = p("ca.key");
        let mut args = vec!["req", "-config", &cnf, "-new", "-x509", "-key", &ca_key];
        let ca_pem = p("ca.pem");
        let digest = format!("-{md}");
        args.extend([
            "-out",
            &ca_pem,
            "-days",
            "30",
            "-subj",
            "/C=CN/O=OpenSSL CRL/CN=OpenSSL CA",
            "-extensions",
            "root",
            &digest,
        ]);
        args.extend(sigopt);
        o.ok(&args);
        let mut leaves = Vec::new();
        for leaf in ["revoked", "good"] {
            newkey(&o, &dir, spec, &format!("{leaf}.key"));
            let (key, csr, pem) = (p(&format!("{leaf}.key")), p(&format!("{leaf}.csr")), p(&format!("{leaf}.pem")));
            let subj = format!("/CN={leaf}");
            let mut req = vec!["req", "-config", &cnf, "-new", "-key", &key, "-subj", &subj, "-out", &csr, &digest];
            req.extend(sigopt);
            o.ok(&req);
            let mut sign = vec!["ca", "-config", &cnf, "-batch", "-notext", "-in", &csr, "-out", &pem];
            sign.extend(sigopt);
            if name == "sm2" {
                sign.extend(["-vfyopt", DISTID]);
            }
            o.ok(&sign);
            leaves.push(Certificate::from_any(&read(&pem)).unwrap());
        }
        let before = UnixTime::now();
        o.ok(&["ca", "-config", &cnf, "-revoke", &p("revoked.pem"), "-crl_reason", "keyCompromise"]);
        let crl_pem = p("crl.pem");
        let mut gencrl = vec!["ca", "-config", &cnf, "-gencrl", "-out", &crl_pem];
        gencrl.extend(sigopt);
        o.ok(&gencrl);

        let ca = Certificate::from_any(&read(&ca_pem)).unwrap();
        let crl = Crl::from_any(&read(&crl_pem)).unwrap();
        crl.verify_signature(&ca).unwrap_or_else(|e| panic!("{name}: OpenSSL's CRL does not verify: {e}"));
        assert_eq!(crl.number().as_deref(), Some("1000"), "{name}");
        let now = UnixTime::now();
        match check_crl(&leaves[0], &ca, &crl, now) {
            RevocationStatus::Revoked { at, reason, .. } => {
                assert_eq!(reason, Some(RevocationReason::KeyCompromise), "{name}");
                assert!(at.0 >= before.0 - 2 && at.0 <= now.0 + 2, "{name}: revoked at {at:?}");
            }
            other => panic!("{name}: the revoked certificate is {other:?}"),
        }
        assert!(check_crl(&leaves[1], &ca, &crl, now).is_good(), "{name}");
    }
}

/// The signed part and the signature of a DER CRL, found by `openssl asn1parse` (not by us).
fn split_with_openssl(o: &OpenSsl, der_path: &str) -> (Vec<u8>, Vec<u8>) {
    let der = read(der_path);
    let listing = String::from_utf8(o.ok(&["asn1parse", "-inform", "DER", "-in", der_path])).unwrap();
    // Lines like "    4:d=1  hl=4 l= 345 cons: SEQUENCE" at depth 1: TBS, algorithm, signature.
    let top: Vec<(usize, usize, usize)> = listing
        .lines()
        .filter(|l| l.contains("d=1"))
        .map(|l| {
            let off: usize = l.split(':').next().unwrap().trim().parse().unwrap();
            let hl: usize = l.split("hl=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
            let len: usize = l.split("l=").nth(2).unwrap().trim_start().split_whitespace().next().unwrap().parse().unwrap();
            (off, hl, len)
        })
        .collect();
    assert_eq!(top.len(), 3, "{listing}");
    let (t_off, t_hl, t_len) = top[0];
    let (s_off, s_hl, s_len) = top[2];
    // The BIT STRING's first content byte is the unused-bits count (0).
    assert_eq!(der[s_off + s_hl], 0);
    (der[t_off..t_off + t_hl + t_len].to_vec(), der[s_off + s_hl + 1..s_off + s_hl + s_len].to_vec())
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
            let crl_der = write(d, "crl.der", crl.der());
            let (tbs, sig) = split_with_openssl(&o, &crl_der);
            let (tbs_path, sig_path) = (write(d, "tbs.der", &tbs), write(d, "sig.der", &sig));
            o.ok(&["x509", "-in", &ca_pem, "-pubkey", "-noout", "-out", &path_in(d, "pub.pem")]);
            let verify = |tbs: &str| {
                o.run(
                    &[
                        "pkeyutl",
                        "-verify",
                        "-rawin",
                        "-digest",
                        "sm3",
                        "-pubin",
                        "-inkey",
                        &path_in(d, "pub.pem"),
                        "-pkeyopt",
                        DISTID,
                        "-in",
                        tbs,
                        "-sigfile",
                        &sig_path,
                    ],
                    b"",
                )
            };
            let out = verify(&tbs_path);
            assert!(
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"),
                "{out:?}"
            );
            let mut bad = tbs.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(!verify(&write(d, "bad.der", &bad)).status.success(), "OpenSSL must refuse a changed CRL");
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
