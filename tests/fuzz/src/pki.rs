//! Harness bodies for `kb_pki` parsers (uses nothing but `kb_pki`, `kb_crypto` and
//! `std`, so `drivers/kb-pki/tests/no_panic.rs` can include this file).

use kb_pki::csr::CertificationRequest;
use kb_pki::time::UnixTime;

/// Certificates as DER, PEM or bare base64, then everything the details screen reads.
pub fn certificate(data: &[u8]) -> bool {
    let Ok(cert) = kb_pki::Certificate::from_any(data) else { return false };
    let _ = cert.info(UnixTime(0), 90);
    let _ = cert.public_key();
    let _ = cert.extensions();
    let _ = cert.tbs_der();
    true
}

/// PKCS#10 requests: parse, verify the self-signature, read subject and extensions.
pub fn csr(data: &[u8]) -> bool {
    let Ok(req) = CertificationRequest::from_der(data) else { return false };
    let _ = req.verify();
    let _ = req.subject();
    let _ = req.subject_dn();
    let _ = req.requested_extensions();
    true
}

/// CRLs (DER or PEM): parse, then everything a revocation check and the details screen
/// read.
pub fn crl(data: &[u8]) -> bool {
    let Ok(crl) = kb_pki::revocation::Crl::from_any(data) else { return false };
    let _ = crl.issuer();
    let _ = crl.this_update();
    let _ = crl.next_update();
    let _ = crl.number();
    let _ = crl.entries();
    let _ = crl.to_pem();
    true
}

/// OCSP responses and requests (DER): parse, read every answer; a response is also
/// checked against a fixed certificate and issuer (it must fail closed, never panic).
pub fn ocsp(data: &[u8]) -> bool {
    let request = kb_pki::ocsp::parse_request(data).is_ok();
    let Ok(resp) = kb_pki::ocsp::OcspResponse::from_der(data) else { return request };
    let _ = resp.responses();
    let _ = resp.produced_at();
    let _ = resp.nonce();
    if let Ok(cert) = kb_pki::Certificate::from_der(FUZZ_CERT) {
        let _ = kb_pki::ocsp::check_response(&cert, &cert, data, Some(b"nonce"), UnixTime(1_790_000_000));
    }
    true
}

/// A fixed self-signed certificate for the harnesses that need one (the seeds' CA).
const FUZZ_CERT: &[u8] = include_bytes!("../fixtures/ocsp_ca.der");

/// DN strings (`C=CN,O=某某公司,CN=张三`) from UTF-8 input; a parsed name is displayed.
pub fn dn(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let Ok(name) = kb_pki::name::parse_dn(text) else { return false };
    let _ = kb_pki::name::display(&name);
    let _ = kb_pki::name::common_name(&name);
    true
}

/// CMS SignedData (DER or BER, PEM-armoured or not): parse, then verify as a caller would,
/// attached, detached with some content, and against a digest.
pub fn cms_signed(data: &[u8]) -> bool {
    let Ok(m) = kb_pki::cms::SignedMessage::from_der(data) else { return false };
    let _ = m.verify(None, &[]);
    let _ = m.verify(Some(b"content"), &[]);
    let _ = m.verify_digest(kb_crypto::HashAlgorithm::Sm3, &[0u8; 32], &[]);
    let _ = (m.certificates().len(), m.content(), m.digest_algorithms(), m.profile());
    true
}

/// The fixed SM2 key the `cms_envelope` seeds are encrypted to (its certificate is in
/// `tests/fuzz/fixtures/envelope_recipient.der`).
pub const ENVELOPE_KEY: [u8; 32] = [
    0x4b, 0x65, 0x79, 0x42, 0x72, 0x69, 0x64, 0x67, 0x65, 0x20, 0x66, 0x75, 0x7a, 0x7a, 0x20, 0x65, //
    0x6e, 0x76, 0x65, 0x6c, 0x6f, 0x70, 0x65, 0x20, 0x72, 0x65, 0x63, 0x69, 0x70, 0x69, 0x65, 0x6e,
];

/// A decrypter for [`ENVELOPE_KEY`] and its fixture certificate.
pub fn envelope_decrypter() -> &'static kb_pki::cms::LocalDecrypter {
    static D: std::sync::OnceLock<kb_pki::cms::LocalDecrypter> = std::sync::OnceLock::new();
    D.get_or_init(|| {
        let key = kb_crypto::sm2::Sm2PrivateKey::from_bytes(&ENVELOPE_KEY).expect("fixed key is valid");
        let cert =
            kb_pki::Certificate::from_der(include_bytes!("../fixtures/envelope_recipient.der")).expect("fixture certificate");
        kb_pki::cms::LocalDecrypter::new(kb_crypto::PrivateKey::Sm2(key), cert).expect("fixture matches the key")
    })
}

/// CMS EnvelopedData: read the header from a stream, then decrypt with the fixed key.
/// Returns whether the header parsed.
pub fn cms_envelope(data: &[u8]) -> bool {
    let mut h = kb_pki::cms::envelope::StreamReaderHandle::new(data);
    let Ok(header) = kb_pki::cms::EnvelopeHeader::read(&mut h) else { return false };
    let _ = header.recipients.iter().filter(|r| r.matches(kb_pki::cms::KeyDecrypter::certificate(envelope_decrypter()))).count();
    let _ = kb_pki::cms::envelope::decrypt(data, std::io::sink(), envelope_decrypter());
    true
}
