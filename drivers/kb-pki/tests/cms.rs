//! CMS SignedData / EnvelopedData through the public API, for SM2, RSA and ECDSA.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use kb_crypto::{HashAlgorithm, PrivateKey};
use kb_pki::cms::envelope::{self, EnvelopeOptions, StreamReaderHandle};
use kb_pki::cms::{EnvelopeHeader, LocalDecrypter, Profile, SignOptions, SignedMessage, sign, sign_detached_digest};
use kb_pki::issue::{CertKind, CertificateParams, issue, self_signed};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner, PkiError, Signer};
use kb_types::{Algorithm, ErrorCode, HasErrorCode, KeyUsage};
use std::io::{Read, Write};

struct Ca {
    cert: Certificate,
    signer: LocalSigner,
}

fn ca(alg: Algorithm) -> Ca {
    let signer = LocalSigner::new(PrivateKey::generate(alg).unwrap_or_else(|e| panic!("{e}")));
    let cert = self_signed(
        &CertificateParams::new(
            "C=CN,O=测试CA,CN=Test Root",
            CertKind::Root { path_len: None },
            UnixTime::now().plus_days(-1),
            365,
        ),
        &signer,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Ca { cert, signer }
}

fn user(ca: &Ca, alg: Algorithm, usage: KeyUsage, cn: &str) -> (PrivateKey, Certificate) {
    let key = PrivateKey::generate(alg).unwrap_or_else(|e| panic!("{e}"));
    let cert = issue(
        &CertificateParams::leaf(&format!("C=CN,O=投标单位,CN={cn}"), usage, UnixTime::now().plus_days(-1), 100),
        &key.public_key(),
        Some(&ca.cert),
        &ca.signer,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (key, cert)
}

const ALGS: [Algorithm; 3] = [Algorithm::Sm2, Algorithm::Rsa { bits: 2048 }, Algorithm::EcdsaP256];

fn code<T>(r: kb_pki::Result<T>) -> Option<ErrorCode> {
    r.err().map(|e| e.code())
}

#[test]
fn signed_data_attached_and_detached() {
    for alg in ALGS {
        let ca = ca(alg);
        let (key, cert) = user(&ca, alg, KeyUsage::Sign, "张三");
        let s = LocalSigner::new(key);
        let content = "投标文件 bid document v1".as_bytes();

        let attached = sign(content, &s, &cert, &SignOptions::default()).unwrap_or_else(|e| panic!("{alg}: {e}"));
        let m = SignedMessage::from_der(&attached).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(m.content(), Some(content));
        assert_eq!(m.profile(), Profile::for_algorithm(alg));
        let reports = m.verify(None, &[]).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].signer, cert);
        assert!(reports[0].signing_time.is_some());

        let detached = sign(content, &s, &cert, &SignOptions { detached: true, ..Default::default() }).unwrap_or_default();
        let m = SignedMessage::from_der(&detached).unwrap_or_else(|e| panic!("{e}"));
        assert!(m.is_detached());
        assert!(m.verify(Some(content), &[]).is_ok());
        assert_eq!(code(m.verify(None, &[])), Some(ErrorCode::CmsContentMissing));
        assert_eq!(code(m.verify(Some(b"tampered"), &[])), Some(ErrorCode::CmsDigestMismatch));
        assert!(m.verify_reader(content, &[]).is_ok());

        // Flipping a byte of the signature value gives a signature error, not a panic.
        let mut bad = attached.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x01;
        let r = SignedMessage::from_der(&bad).and_then(|m| m.verify(None, &[]));
        assert!(matches!(code(r), Some(ErrorCode::SignatureInvalid | ErrorCode::CmsMalformed)), "{alg}");
    }
}

#[test]
fn gm_oids_and_rfc_profile_for_sm2() {
    let ca = ca(Algorithm::Sm2);
    let (key, cert) = user(&ca, Algorithm::Sm2, KeyUsage::Sign, "李四");
    let s = LocalSigner::new(key);
    let gm = sign(b"x", &s, &cert, &SignOptions::default()).unwrap_or_default();
    // 1.2.156.10197.6.1.4.2.2 (signedData) and 1.2.156.10197.1.301.1 (SM2-1) are present.
    let signed_data_oid = [0x06, 0x0a, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x06, 0x01, 0x04, 0x02, 0x02];
    assert!(gm.windows(signed_data_oid.len()).any(|w| w == signed_data_oid));
    let rfc = sign(b"x", &s, &cert, &SignOptions { profile: Some(Profile::Rfc5652), ..Default::default() }).unwrap_or_default();
    let m = SignedMessage::from_der(&rfc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.profile(), Profile::Rfc5652);
    assert!(m.verify(None, &[]).is_ok());
    // An encryption certificate must not sign.
    let (ekey, ecert) = user(&ca, Algorithm::Sm2, KeyUsage::Encrypt, "李四");
    assert_eq!(
        code(sign(b"x", &LocalSigner::new(ekey), &ecert, &SignOptions::default())),
        Some(ErrorCode::CertificateUsageMismatch)
    );
    // A certificate of another key is refused.
    assert_eq!(code(sign(b"x", &s, &ca.cert, &SignOptions::default())), Some(ErrorCode::CertificateUsageMismatch));
}

#[test]
fn detached_digest_for_big_files() {
    let ca = ca(Algorithm::Sm2);
    let (key, cert) = user(&ca, Algorithm::Sm2, KeyUsage::Sign, "王五");
    let s = LocalSigner::new(key);
    // 8 MiB streamed through a hasher, never held whole by the signer.
    let big = Pattern::new(8 << 20);
    let digest = kb_crypto::hash::digest_reader(s.scheme().hash(), big).unwrap_or_default();
    let der = sign_detached_digest(&digest, &s, &cert, &SignOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let m = SignedMessage::from_der(&der).unwrap_or_else(|e| panic!("{e}"));
    assert!(m.verify_reader(Pattern::new(8 << 20), &[]).is_ok());
    assert!(m.verify_digest(HashAlgorithm::Sm3, &digest, &[]).is_ok());
    assert_eq!(code(m.verify_reader(Pattern::new((8 << 20) - 1), &[])), Some(ErrorCode::CmsDigestMismatch));
    assert!(sign_detached_digest(&digest[..31], &s, &cert, &SignOptions::default()).is_err());
}

#[test]
fn envelopes_for_each_recipient_kind() {
    for alg in [Algorithm::Sm2, Algorithm::Rsa { bits: 2048 }] {
        let ca = ca(alg);
        let (key, cert) = user(&ca, alg, KeyUsage::Encrypt, "收件人");
        let (other_key, other_cert) = user(&ca, alg, KeyUsage::Encrypt, "别人");
        let content = b"sealed bid: 1,234,567.89 CNY";
        let env = envelope::encrypt_bytes(content, std::slice::from_ref(&cert), &EnvelopeOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let d = LocalDecrypter::new(key, cert.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&envelope::decrypt_bytes(&env, &d).unwrap_or_else(|e| panic!("{alg}: {e}"))[..], content);
        // Someone else is not a recipient.
        let od = LocalDecrypter::new(other_key, other_cert).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code(envelope::decrypt_bytes(&env, &od)), Some(ErrorCode::CmsNoRecipient));
        // Tampering with the ciphertext breaks the padding check. The last byte of the
        // next-to-last block is flipped: in CBC that flips the last plaintext byte
        // exactly (padding 0x04 becomes 0x51, never valid). Flipping the last block
        // instead garbles it at random, and ~1 run in 128 the padding still looked valid.
        let mut bad = env.clone();
        let n = bad.len();
        assert_eq!(content.len() % 16, 12, "the padding is 4 bytes of 0x04");
        bad[n - 17] ^= 0x55;
        assert_eq!(code(envelope::decrypt_bytes(&bad, &d)), Some(ErrorCode::DecryptionFailed));
        // Truncation is a clean error.
        assert!(envelope::decrypt_bytes(&env[..env.len() - 20], &d).is_err());
        // A signing certificate is refused as a recipient.
        let (_, sign_cert) = user(&ca, alg, KeyUsage::Sign, "收件人");
        assert_eq!(
            code(envelope::encrypt_bytes(content, &[sign_cert], &EnvelopeOptions::default())),
            Some(ErrorCode::CertificateUsageMismatch)
        );
    }
}

#[test]
fn multi_recipient_mixed_algorithms_and_oaep() {
    let sm2_ca = ca(Algorithm::Sm2);
    let rsa_ca = ca(Algorithm::Rsa { bits: 2048 });
    let (k1, c1) = user(&sm2_ca, Algorithm::Sm2, KeyUsage::Encrypt, "评标专家甲");
    let (k2, c2) = user(&rsa_ca, Algorithm::Rsa { bits: 2048 }, KeyUsage::Both, "评标专家乙");
    let opts = EnvelopeOptions { rsa_padding: kb_crypto::rsa::RsaPadding::Oaep(HashAlgorithm::Sha256), ..Default::default() };
    let env = envelope::encrypt_bytes(b"two openers", &[c1.clone(), c2.clone()], &opts).unwrap_or_else(|e| panic!("{e}"));
    let mut h = StreamReaderHandle::new(&env[..]);
    let header = EnvelopeHeader::read(&mut h).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(header.profile, Profile::Rfc5652);
    assert_eq!(header.recipients.len(), 2);
    assert!(header.recipients.iter().any(|r| r.matches(&c1)) && header.recipients.iter().any(|r| r.matches(&c2)));
    for (k, c) in [(k1, c1), (k2, c2)] {
        let d = LocalDecrypter::new(k, c).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&envelope::decrypt_bytes(&env, &d).unwrap_or_else(|e| panic!("{e}"))[..], b"two openers");
    }
}

#[test]
fn streaming_envelope_definite_and_indefinite() {
    let ca = ca(Algorithm::Sm2);
    let (key, cert) = user(&ca, Algorithm::Sm2, KeyUsage::Encrypt, "开标");
    let d = LocalDecrypter::new(key, cert.clone()).unwrap_or_else(|e| panic!("{e}"));
    let len: u64 = (3 << 20) + 7;
    for known in [true, false] {
        let mut env = Vec::new();
        let n = envelope::encrypt(
            Pattern::new(len),
            &mut env,
            known.then_some(len),
            std::slice::from_ref(&cert),
            &EnvelopeOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, env.len() as u64);
        assert_eq!(env[1] == 0x80, !known, "indefinite length only when the size is unknown");
        let mut sink = HashSink::default();
        let out = envelope::decrypt(&env[..], &mut sink, &d).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, len);
        assert_eq!(sink.finish(), kb_crypto::hash::digest_reader(HashAlgorithm::Sm3, Pattern::new(len)).unwrap_or_default());
    }
    // Announced length must match the stream.
    let r = envelope::encrypt(Pattern::new(10), Vec::new(), Some(11), std::slice::from_ref(&cert), &EnvelopeOptions::default());
    assert!(matches!(r, Err(PkiError::Io(_))));
}

/// A deterministic byte stream of a given length.
struct Pattern {
    left: u64,
    x: u32,
}
impl Pattern {
    fn new(len: u64) -> Self {
        Self { left: len, x: 0x9e37_79b9 }
    }
}
impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for b in &mut buf[..n] {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 17;
            self.x ^= self.x << 5;
            *b = self.x as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[derive(Default)]
struct HashSink(Option<kb_crypto::Hasher>);
impl HashSink {
    fn finish(self) -> Vec<u8> {
        self.0.unwrap_or_else(|| kb_crypto::Hasher::new(HashAlgorithm::Sm3)).finish()
    }
}
impl Write for HashSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.get_or_insert_with(|| kb_crypto::Hasher::new(HashAlgorithm::Sm3)).update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
