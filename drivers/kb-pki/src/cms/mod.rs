//! CMS / PKCS#7: SignedData and EnvelopedData, per RFC 5652 for RSA/ECDSA and
//! GM/T 0010 for SM2 (GM object identifiers; the RFC 5652 ones are accepted too).
//!
//! - [`sign`] / [`sign_detached_digest`] build SignedData with signed attributes
//!   (contentType, signingTime, messageDigest) through a [`crate::Signer`], attached or
//!   detached; for big files the caller hashes the content in a stream and passes only
//!   the digest. [`SignedMessage::verify`] and friends check every signer.
//! - [`envelope::encrypt`] / [`envelope::decrypt`] stream EnvelopedData of any size
//!   in constant memory: SM4-CBC content, the content key wrapped to each recipient
//!   with SM2 (GM/T 0010) or RSA. Opening decrypts in parallel batches on every core;
//!   [`envelope::encrypt_hashing`] hashes the content for a signature on a second
//!   thread while it is encrypted.

mod ber;
pub mod envelope;
mod pipeline;
mod signed;

pub use envelope::{EnvelopeHeader, EnvelopeOptions, KeyDecrypter, LocalDecrypter, RecipientId, Sm2KeyTransport};
pub use signed::{SignOptions, SignatureReport, SignedMessage, sign, sign_detached_digest};

use der::asn1::ObjectIdentifier as Oid;

/// Which object identifiers a structure uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// GM/T 0010: `1.2.156.10197.6.1.4.2.*` content types, SM2/SM3/SM4 algorithms.
    Gm,
    /// RFC 5652: `1.2.840.113549.1.7.*` content types.
    Rfc5652,
}

/// Content-type OIDs.
pub mod content_type {
    use super::Oid;
    /// RFC 5652 id-data.
    pub const DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
    /// RFC 5652 id-signedData.
    pub const SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
    /// RFC 5652 id-envelopedData.
    pub const ENVELOPED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.3");
    /// GM/T 0010 data.
    pub const GM_DATA: Oid = Oid::new_unwrap("1.2.156.10197.6.1.4.2.1");
    /// GM/T 0010 signedData.
    pub const GM_SIGNED_DATA: Oid = Oid::new_unwrap("1.2.156.10197.6.1.4.2.2");
    /// GM/T 0010 envelopedData.
    pub const GM_ENVELOPED_DATA: Oid = Oid::new_unwrap("1.2.156.10197.6.1.4.2.3");
}

impl Profile {
    /// The profile for a key: GM for SM2, RFC 5652 otherwise.
    pub fn for_algorithm(alg: kb_types::Algorithm) -> Self {
        if alg == kb_types::Algorithm::Sm2 { Profile::Gm } else { Profile::Rfc5652 }
    }
    fn data(self) -> Oid {
        match self {
            Profile::Gm => content_type::GM_DATA,
            Profile::Rfc5652 => content_type::DATA,
        }
    }
    fn signed_data(self) -> Oid {
        match self {
            Profile::Gm => content_type::GM_SIGNED_DATA,
            Profile::Rfc5652 => content_type::SIGNED_DATA,
        }
    }
    fn enveloped_data(self) -> Oid {
        match self {
            Profile::Gm => content_type::GM_ENVELOPED_DATA,
            Profile::Rfc5652 => content_type::ENVELOPED_DATA,
        }
    }
}

/// Strip PEM armour (`PKCS7`/`CMS`) if present; otherwise return the input.
pub fn unarmor(input: &[u8]) -> crate::Result<std::borrow::Cow<'_, [u8]>> {
    let text = match std::str::from_utf8(input) {
        Ok(t) if t.trim_start().starts_with("-----BEGIN") => t,
        _ => return Ok(std::borrow::Cow::Borrowed(input)),
    };
    let (label, der) = der::pem::decode_vec(text.trim().as_bytes()).map_err(|e| ber::err(format!("PEM: {e}")))?;
    if !matches!(label, "PKCS7" | "CMS") {
        return Err(ber::err(format!("PEM label {label}, want PKCS7 or CMS")));
    }
    Ok(std::borrow::Cow::Owned(der))
}
