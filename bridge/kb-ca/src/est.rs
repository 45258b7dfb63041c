//! EST (RFC 7030) bodies, no I/O.
//!
//! - Requests (`/simpleenroll`, `/simplereenroll`): `Content-Type: application/pkcs10`,
//!   the DER PKCS#10 in base64 (`Content-Transfer-Encoding: base64`, RFC 7030 §4.2.1) on
//!   one line ([`encode_request_body`]).
//! - Answers (`/cacerts`, enrolment): `Content-Type: application/pkcs7-mime`
//!   (`; smime-type=certs-only` for enrolment), a base64 DER CMS SignedData with
//!   certificates and no signers (RFC 7030 §4.1.3, §4.2.3), in base64 on one line (the
//!   dev CA writes it so: strict EST clients such as est-ca's refuse CRLFs, RFC 7030
//!   erratum 5904); read with any whitespace ([`decode_body`]).

use kb_pki::cms::SignedMessage;
use kb_pki::cms::content_type::{DATA, SIGNED_DATA};
use kb_pki::{Certificate, PkiError};

/// `GET {prefix}/cacerts`.
pub const CACERTS: &str = "/cacerts";
/// `POST {prefix}/simpleenroll`.
pub const SIMPLEENROLL: &str = "/simpleenroll";
/// `POST {prefix}/simplereenroll`.
pub const SIMPLEREENROLL: &str = "/simplereenroll";
/// Content type of a request.
pub const PKCS10: &str = "application/pkcs10";
/// Content type of `/cacerts` answers.
pub const PKCS7_MIME: &str = "application/pkcs7-mime";
/// Content type of enrolment answers.
pub const PKCS7_CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";
/// The transfer encoding of every EST body.
pub const TRANSFER_ENCODING: (&str, &str) = ("Content-Transfer-Encoding", "base64");

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn oid(o: &der::asn1::ObjectIdentifier) -> Vec<u8> {
    tlv(0x06, o.as_bytes())
}

/// A certs-only CMS SignedData (RFC 5652 OIDs, version 1, no signers) carrying `certs`.
pub fn certs_only(certs: &[Certificate]) -> Vec<u8> {
    let all: Vec<u8> = certs.iter().flat_map(|c| c.der().to_vec()).collect();
    let sd = [
        tlv(0x02, &[1]),        // version
        tlv(0x31, &[]),         // digestAlgorithms
        tlv(0x30, &oid(&DATA)), // encapContentInfo, no content
        tlv(0xa0, &all),        // [0] IMPLICIT certificates
        tlv(0x31, &[]),         // signerInfos
    ]
    .concat();
    tlv(0x30, &[oid(&SIGNED_DATA), tlv(0xa0, &tlv(0x30, &sd))].concat())
}

/// The certificates of a certs-only SignedData (DER or BER).
pub fn parse_certs_only(der: &[u8]) -> kb_pki::Result<Vec<Certificate>> {
    let m = SignedMessage::from_der(der)?;
    if m.certificates().is_empty() {
        return Err(PkiError::CertificateMalformed("the PKCS#7 carries no certificate".into()));
    }
    Ok(m.certificates().to_vec())
}

/// A request body: base64 without any line break. RFC 8951 §3.2.1 asks receivers to
/// tolerate whitespace and requires none from senders; servers that decode strictly
/// (est-ca 0.2.0 reads a wrapped body as raw DER and refuses it, 400) need it this way.
pub fn encode_request_body(der: &[u8]) -> Vec<u8> {
    crate::api::b64(der).into_bytes()
}

/// Decode a base64 body (whitespace ignored).
pub fn decode_body(body: &[u8]) -> Option<Vec<u8>> {
    crate::api::unb64(std::str::from_utf8(body).ok()?)
}

/// The media type of a `Content-Type` value, lowercase, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_crypto::PrivateKey;
    use kb_pki::LocalSigner;
    use kb_pki::issue::TestCa;
    use kb_types::{Algorithm, KeyUsage};

    #[test]
    fn certs_only_round_trips_and_openssl_reads_it() {
        let ca = TestCa::new(Algorithm::Sm2, "CN=CA").unwrap();
        let k = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap());
        let leaf = ca.leaf("CN=u", kb_pki::Signer::public_key(&k), KeyUsage::Sign).unwrap();
        let p7 = certs_only(&[leaf.clone(), ca.cert.clone()]);
        let back = parse_certs_only(&decode_body(&encode_request_body(&p7)).unwrap()).unwrap();
        assert_eq!(back, vec![leaf.clone(), ca.cert.clone()]);
        // An independent parser: OpenSSL's PKCS7.
        let parsed = openssl::pkcs7::Pkcs7::from_der(&p7).unwrap();
        let certs = parsed.signed().and_then(|s| s.certificates()).map(|c| c.len());
        assert_eq!(certs, Some(2));
        assert!(parse_certs_only(&certs_only(&[])).is_err());
        assert!(parse_certs_only(b"garbage").is_err());
        assert_eq!(media_type("Application/PKCS7-mime; smime-type=certs-only"), "application/pkcs7-mime");
    }

    #[test]
    fn requests_are_one_line_of_base64_for_strict_receivers() {
        use base64ct::Encoding;
        for alg in [Algorithm::Sm2, Algorithm::EcdsaP256, Algorithm::Rsa { bits: 2048 }] {
            let k = LocalSigner::new(PrivateKey::generate(alg).unwrap());
            let csr = kb_pki::csr::build("C=CN,CN=张三", &k, vec![]).unwrap();
            let body = encode_request_body(&csr);
            assert!(body.len() > 76, "long enough that a MIME encoder would wrap it");
            assert!(!body.iter().any(u8::is_ascii_whitespace), "{alg}: no line breaks");
            // A strict decoder (base64ct rejects whitespace) reads it; ours too.
            assert_eq!(base64ct::Base64::decode_vec(std::str::from_utf8(&body).unwrap()).unwrap(), csr);
            assert_eq!(decode_body(&body).unwrap(), csr);
        }
        // Bodies wrapped in MIME lines (as some servers send them) decode too.
        let text = crate::api::b64(&[7u8; 100]);
        let wrapped: Vec<u8> = text.as_bytes().chunks(64).flat_map(|c| [c, b"\r\n"].concat()).collect();
        assert!(wrapped.windows(2).any(|w| w == b"\r\n"));
        assert_eq!(decode_body(&wrapped).unwrap(), vec![7u8; 100]);
    }
}
