//! CMS against OpenSSL 3: `openssl cms` for RSA/ECDSA SignedData and SM4-CBC envelopes
//! (both directions, DER and `-stream` BER), and for SM2 — which OpenSSL 3.0 cannot do
//! in CMS ("illegal zero content") — an independent path built from OpenSSL primitives:
//! `asn1parse` locates the fields, `dgst -sm3 -verify` checks the signature over the
//! signed attributes, `pkeyutl -decrypt` unwraps the content key and `enc -sm4-cbc`
//! decrypts the content.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::{HashAlgorithm, PrivateKey};
use kb_interop::{OpenSsl, openssl, path_in, pem, random_bytes, read, tempdir, write};
use kb_pki::cms::envelope::{self, EnvelopeOptions};
use kb_pki::cms::{LocalDecrypter, SignOptions, SignedMessage, sign};
use kb_pki::issue::{CertKind, CertificateParams, issue, self_signed};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner};
use kb_types::{Algorithm, ErrorCode, HasErrorCode, KeyUsage};
use std::path::Path;

struct Party {
    ca: Certificate,
    key: PrivateKey,
    cert: Certificate,
}

fn party(alg: Algorithm, usage: KeyUsage) -> Party {
    let ca_s = LocalSigner::new(PrivateKey::generate(alg).unwrap());
    let ca = self_signed(
        &CertificateParams::new(
            "C=CN,O=Interop CA,CN=Root",
            CertKind::Root { path_len: None },
            UnixTime::now().plus_days(-1),
            30,
        ),
        &ca_s,
    )
    .unwrap();
    let key = PrivateKey::generate(alg).unwrap();
    let cert = issue(
        &CertificateParams::leaf("C=CN,O=投标人,CN=Bidder", usage, UnixTime::now().plus_days(-1), 30),
        &key.public_key(),
        Some(&ca),
        &ca_s,
    )
    .unwrap();
    Party { ca, key, cert }
}

/// Write CA, certificate and key as PEM files; return their paths.
fn files(dir: &Path, p: &Party) -> (String, String, String) {
    (
        write(dir, "ca.pem", p.ca.to_pem()),
        write(dir, "cert.pem", p.cert.to_pem()),
        write(dir, "key.pem", p.key.to_pkcs8_pem().unwrap().as_bytes()),
    )
}

#[test]
fn openssl_verifies_our_rsa_and_ecdsa_signed_data() {
    let Some(ossl) = openssl() else { return };
    for alg in [Algorithm::Rsa { bits: 2048 }, Algorithm::EcdsaP256] {
        let dir = tempdir();
        let p = party(alg, KeyUsage::Sign);
        let (ca, _, _) = files(dir.path(), &p);
        let s = LocalSigner::new(p.key.clone());
        let content = random_bytes(5000);
        let msg = write(dir.path(), "msg.bin", &content);
        let out = path_in(dir.path(), "out.bin");

        let attached = write(dir.path(), "att.der", sign(&content, &s, &p.cert, &SignOptions::default()).unwrap());
        ossl.ok(&["cms", "-verify", "-binary", "-inform", "DER", "-in", &attached, "-CAfile", &ca, "-out", &out]);
        assert_eq!(read(&out), content, "{alg}");

        let det = sign(&content, &s, &p.cert, &SignOptions { detached: true, ..Default::default() }).unwrap();
        let det = write(dir.path(), "det.der", det);
        ossl.ok(&["cms", "-verify", "-binary", "-inform", "DER", "-in", &det, "-content", &msg, "-CAfile", &ca, "-out", &out]);
        let tampered = write(dir.path(), "tampered.bin", kb_interop::flip(&content, 100, 0));
        ossl.fails(&[
            "cms", "-verify", "-binary", "-inform", "DER", "-in", &det, "-content", &tampered, "-CAfile", &ca, "-out", &out,
        ]);
    }
}

#[test]
fn we_verify_openssl_signed_data() {
    let Some(ossl) = openssl() else { return };
    for alg in [Algorithm::Rsa { bits: 2048 }, Algorithm::EcdsaP256] {
        let dir = tempdir();
        let p = party(alg, KeyUsage::Sign);
        let (_, cert, key) = files(dir.path(), &p);
        let content = random_bytes(3000);
        let msg = write(dir.path(), "msg.bin", &content);
        let sig = path_in(dir.path(), "sig.der");
        for extra in [&["-nodetach"][..], &[][..], &["-nodetach", "-stream"][..]] {
            let mut args = vec![
                "cms", "-sign", "-binary", "-in", &msg, "-signer", &cert, "-inkey", &key, "-outform", "DER", "-out", &sig, "-md",
                "sha256",
            ];
            args.extend_from_slice(extra);
            ossl.ok(&args);
            let der = read(&sig);
            let m = SignedMessage::from_der(&der).unwrap_or_else(|e| panic!("{alg} {extra:?}: {e}"));
            let detached = !extra.contains(&"-nodetach");
            assert_eq!(m.is_detached(), detached);
            let reports = m.verify(detached.then_some(&content[..]), &[]).unwrap_or_else(|e| panic!("{alg} {extra:?}: {e}"));
            assert_eq!(reports[0].signer, p.cert);
            assert_eq!(reports[0].digest_algorithm, HashAlgorithm::Sha256);
            if detached {
                let err = m.verify(Some(&kb_interop::flip(&content, 7, 3)), &[]).err().map(|e| e.code());
                assert_eq!(err, Some(ErrorCode::CmsDigestMismatch));
            }
        }
    }
}

/// One line of `openssl asn1parse` output.
#[derive(Debug)]
struct Node {
    offset: usize,
    depth: usize,
    hl: usize,
    len: Option<usize>,
    what: String,
}

fn asn1parse(ossl: &OpenSsl, file: &str) -> Vec<Node> {
    let out = String::from_utf8(ossl.ok(&["asn1parse", "-inform", "DER", "-in", file])).unwrap();
    out.lines()
        .filter_map(|l| {
            let (off, rest) = l.split_once(":d=")?;
            let (depth, rest) = rest.split_once("hl=")?;
            let (hl, rest) = rest.trim_start().split_once(' ')?;
            let rest = rest.trim_start().strip_prefix("l=")?.trim_start();
            let (len, what) = rest.split_once(' ')?;
            Some(Node {
                offset: off.trim().parse().ok()?,
                depth: depth.trim().parse().ok()?,
                hl: hl.parse().ok()?,
                len: len.parse().ok(),
                what: what.trim().to_string(),
            })
        })
        .collect()
}

fn value<'a>(bytes: &'a [u8], n: &Node) -> &'a [u8] {
    &bytes[n.offset + n.hl..n.offset + n.hl + n.len.unwrap()]
}

#[test]
fn sm2_signed_data_checked_with_openssl_primitives() {
    let Some(ossl) = openssl() else { return };
    let dir = tempdir();
    let p = party(Algorithm::Sm2, KeyUsage::Sign);
    let s = LocalSigner::new(p.key.clone());
    let content = "国密签名 SignedData GM/T 0010".repeat(50).into_bytes();
    let msg = write(dir.path(), "msg.bin", &content);
    let der = sign(&content, &s, &p.cert, &SignOptions { detached: true, ..Default::default() }).unwrap();
    let file = write(dir.path(), "sig.der", &der);
    let nodes = asn1parse(&ossl, &file);

    // OpenSSL names the GM content type and our signature algorithm.
    let text: Vec<&str> = nodes.iter().map(|n| n.what.as_str()).collect();
    assert!(text.iter().any(|t| t.contains("1.2.156.10197.6.1.4.2.2")), "{text:?}");
    // messageDigest attribute == openssl dgst -sm3 of the content.
    let md_obj = nodes.iter().position(|n| n.what.contains(":messageDigest")).expect("messageDigest attribute");
    let md_node = nodes[md_obj..].iter().find(|n| n.what.starts_with("prim: OCTET STRING")).unwrap();
    let ossl_md = ossl.ok(&["dgst", "-sm3", "-binary", &msg]);
    assert_eq!(value(&der, md_node), &ossl_md[..]);
    // The signed attributes: the [0] two levels above the attribute OIDs.
    let attr_depth = nodes[md_obj].depth - 2;
    let attrs = nodes[..md_obj].iter().rev().find(|n| n.depth == attr_depth && n.what.contains("cont [ 0 ]")).unwrap();
    let mut signed = der[attrs.offset..attrs.offset + attrs.hl + attrs.len.unwrap()].to_vec();
    signed[0] = 0x31; // [0] IMPLICIT → SET OF, as RFC 5652 §5.4 says the signature covers
    let signed_file = write(dir.path(), "attrs.der", &signed);
    // The signature: the last OCTET STRING of the structure.
    let sig_node = nodes.iter().rev().find(|n| n.what.starts_with("prim: OCTET STRING")).unwrap();
    let sig_file = write(dir.path(), "sig.bin", value(&der, sig_node));
    let pub_pem = write(dir.path(), "pub.pem", pem("PUBLIC KEY", &p.cert.spki_der().unwrap()));
    let out = ossl.ok(&[
        "dgst",
        "-sm3",
        "-verify",
        &pub_pem,
        "-sigopt",
        "distid:1234567812345678",
        "-signature",
        &sig_file,
        &signed_file,
    ]);
    assert!(String::from_utf8_lossy(&out).contains("Verified OK"));
    // And a changed attribute byte fails in OpenSSL too.
    let bad = write(dir.path(), "bad.der", kb_interop::flip(&signed, signed.len() - 1, 0));
    ossl.fails(&["dgst", "-sm3", "-verify", &pub_pem, "-sigopt", "distid:1234567812345678", "-signature", &sig_file, &bad]);
}

#[test]
fn openssl_decrypts_our_rsa_envelopes() {
    let Some(ossl) = openssl() else { return };
    let dir = tempdir();
    let p = party(Algorithm::Rsa { bits: 2048 }, KeyUsage::Encrypt);
    let (_, cert, key) = files(dir.path(), &p);
    let content = random_bytes(1 << 20);
    let out = path_in(dir.path(), "out.bin");
    for (padding, known_len) in [
        (kb_crypto::rsa::RsaPadding::Pkcs1v15, true),
        (kb_crypto::rsa::RsaPadding::Pkcs1v15, false),
        (kb_crypto::rsa::RsaPadding::Oaep(HashAlgorithm::Sha256), true),
    ] {
        let mut env = Vec::new();
        let opts = EnvelopeOptions { rsa_padding: padding, ..Default::default() };
        envelope::encrypt(
            &content[..],
            &mut env,
            known_len.then_some(content.len() as u64),
            std::slice::from_ref(&p.cert),
            &opts,
        )
        .unwrap();
        let env = write(dir.path(), "env.der", &env);
        ossl.ok(&["cms", "-decrypt", "-binary", "-inform", "DER", "-in", &env, "-recip", &cert, "-inkey", &key, "-out", &out]);
        assert_eq!(read(&out), content, "{padding:?} known_len={known_len}");
    }
}

#[test]
fn we_decrypt_openssl_envelopes() {
    let Some(ossl) = openssl() else { return };
    let dir = tempdir();
    let p = party(Algorithm::Rsa { bits: 2048 }, KeyUsage::Encrypt);
    let (_, cert, _) = files(dir.path(), &p);
    let content = random_bytes(200_000);
    let msg = write(dir.path(), "msg.bin", &content);
    let env = path_in(dir.path(), "env.der");
    let d = LocalDecrypter::new(p.key.clone(), p.cert.clone()).unwrap();
    for extra in [
        &[][..],
        &["-stream"][..],
        &["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256", "-keyopt", "rsa_mgf1_md:sha256"][..],
    ] {
        let mut args =
            vec!["cms", "-encrypt", "-sm4-cbc", "-binary", "-in", &msg, "-outform", "DER", "-out", &env, "-recip", &cert];
        args.extend_from_slice(extra);
        ossl.ok(&args);
        let plain = envelope::decrypt_bytes(&read(&env), &d).unwrap_or_else(|e| panic!("{extra:?}: {e}"));
        assert_eq!(&plain[..], &content[..], "{extra:?}");
    }
    // An AES envelope is refused with a stable code, not garbage.
    ossl.ok(&["cms", "-encrypt", "-aes-256-cbc", "-binary", "-in", &msg, "-outform", "DER", "-out", &env, &cert]);
    let err = envelope::decrypt_bytes(&read(&env), &d).err().map(|e| e.code());
    assert_eq!(err, Some(ErrorCode::UnsupportedAlgorithm));
}

#[test]
fn sm2_envelope_opened_with_openssl_primitives() {
    let Some(ossl) = openssl() else { return };
    let dir = tempdir();
    let p = party(Algorithm::Sm2, KeyUsage::Encrypt);
    let (_, _, key) = files(dir.path(), &p);
    let content = random_bytes(70_001);
    let env = envelope::encrypt_bytes(&content, std::slice::from_ref(&p.cert), &EnvelopeOptions::default()).unwrap();
    let file = write(dir.path(), "env.der", &env);
    let nodes = asn1parse(&ossl, &file);
    let text: Vec<&str> = nodes.iter().map(|n| n.what.as_str()).collect();
    assert!(text.iter().any(|t| t.contains("1.2.156.10197.6.1.4.2.3")), "GM envelopedData OID: {text:?}");
    // encryptedKey: the OCTET STRING after the SM2 key-encryption algorithm.
    let kea = nodes
        .iter()
        .position(|n| n.what.contains("1.2.156.10197.1.301.3") || n.what.contains("sm2encrypt"))
        .expect("SM2 key transport OID");
    let ek = nodes[kea..].iter().find(|n| n.what.starts_with("prim: OCTET STRING")).unwrap();
    let ek_file = write(dir.path(), "ek.der", value(&env, ek));
    let cek = ossl.ok(&["pkeyutl", "-decrypt", "-inkey", &key, "-in", &ek_file]);
    assert_eq!(cek.len(), 16);
    // IV: the OCTET STRING after sm4-cbc; content: the primitive [0].
    let alg = nodes.iter().position(|n| n.what.contains("sm4-cbc") || n.what.contains("1.2.156.10197.1.104.2")).unwrap();
    let iv = nodes[alg..].iter().find(|n| n.what.starts_with("prim: OCTET STRING")).unwrap();
    let ct = nodes.iter().find(|n| n.what.starts_with("prim: cont [ 0 ]")).unwrap();
    let ct_file = write(dir.path(), "ct.bin", value(&env, ct));
    let out = path_in(dir.path(), "out.bin");
    ossl.ok(&[
        "enc",
        "-d",
        "-sm4-cbc",
        "-K",
        &hex::encode(&cek),
        "-iv",
        &hex::encode(value(&env, iv)),
        "-in",
        &ct_file,
        "-out",
        &out,
    ]);
    assert_eq!(read(&out), content);
}
