use kb_crypto::CryptoError;
use kb_types::{ErrorCode, HasErrorCode};

/// PKI errors. Each maps to one stable [`ErrorCode`]; messages never carry key material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PkiError {
    /// A primitive failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    CertificateMalformed(String),
    /// Expired at the verification time.
    #[error("certificate '{subject}' expired on {not_after}")]
    Expired {
        /// Subject of the expired certificate.
        subject: String,
        /// Its notAfter, RFC 3339.
        not_after: String,
    },
    /// Not yet valid at the verification time.
    #[error("certificate '{subject}' is not valid before {not_before}")]
    NotYetValid {
        /// Subject.
        subject: String,
        /// Its notBefore, RFC 3339.
        not_before: String,
    },
    /// No trust anchor or intermediate issued this certificate.
    #[error("no trusted issuer found for '{subject}' (issuer '{issuer}')")]
    UnknownIssuer {
        /// Subject of the certificate whose issuer is missing.
        subject: String,
        /// The issuer name it names.
        issuer: String,
    },
    /// A signature in the chain does not verify.
    #[error("signature on '{subject}' does not verify with the key of '{issuer}'")]
    BadCertificateSignature {
        /// Subject of the certificate.
        subject: String,
        /// Issuer whose key was used.
        issuer: String,
    },
    /// An issuer in the chain is not a CA (basicConstraints / keyCertSign).
    #[error("'{subject}' is not allowed to issue certificates")]
    NotCa {
        /// Subject of the would-be issuer.
        subject: String,
    },
    /// Chain longer than allowed (or a loop).
    #[error("certificate chain longer than {0}")]
    ChainTooLong(usize),
    /// Certificate key usage does not allow this operation.
    #[error("certificate is not valid for {0}")]
    UsageMismatch(&'static str),
    /// A CRL could not be parsed (or built).
    #[error("malformed CRL: {0}")]
    CrlMalformed(String),
    /// A CRL's signature does not verify with its issuer's key, or the issuer may not
    /// sign CRLs.
    #[error("CRL signature invalid: {0}")]
    CrlSignatureInvalid(String),
    /// An OCSP request or response could not be parsed (or built).
    #[error("malformed OCSP data: {0}")]
    OcspMalformed(String),
    /// An OCSP response is not signed by the issuer or a responder it authorised.
    #[error("OCSP response signature invalid: {0}")]
    OcspSignatureInvalid(String),
    /// A PKCS#10 request is malformed or its self-signature fails.
    #[error("invalid certificate request: {0}")]
    CsrInvalid(String),
    /// CMS structure malformed or unsupported.
    #[error("malformed CMS: {0}")]
    CmsMalformed(String),
    /// Content digest differs from the signed messageDigest attribute.
    #[error("signed content does not match its digest")]
    CmsDigestMismatch,
    /// The signature verifies only over a non-standard digest; what was found is said
    /// (never accepted: the alternatives are tried only to say this).
    #[error("{found}: not GM/T 0009/0010 conformant, refused")]
    CmsSignatureNonConformant {
        /// E.g. "the signature verifies over SM3(content) without ZA".
        found: String,
    },
    /// No recipient matches.
    #[error("no recipient in the envelope matches this certificate")]
    CmsNoRecipient,
    /// A detached signature was verified without content or digest.
    #[error("detached signature needs its content")]
    CmsContentMissing,
    /// Stream I/O failed.
    #[error("I/O: {0}")]
    Io(String),
    /// A signer or decrypter backed by a device failed; its stable code is kept so a
    /// wrong PIN or a pulled-out key surfaces as such, not as a generic crypto error.
    #[error("{message}")]
    Device {
        /// The device error's code.
        code: ErrorCode,
        /// Its message (never a PIN).
        message: String,
    },
}

impl From<std::io::Error> for PkiError {
    fn from(e: std::io::Error) -> Self {
        // A crypto failure surfaced through an io::Error (e.g. bad padding in a stream).
        if let Some(c) = e.get_ref().and_then(|i| i.downcast_ref::<CryptoError>()) {
            return PkiError::Crypto(c.clone());
        }
        PkiError::Io(e.kind().to_string())
    }
}

impl HasErrorCode for PkiError {
    fn code(&self) -> ErrorCode {
        match self {
            PkiError::Crypto(c) => c.code(),
            PkiError::CertificateMalformed(_) => ErrorCode::CertificateMalformed,
            PkiError::Expired { .. } => ErrorCode::CertificateExpired,
            PkiError::NotYetValid { .. } => ErrorCode::CertificateNotYetValid,
            PkiError::UnknownIssuer { .. } => ErrorCode::UnknownIssuer,
            PkiError::BadCertificateSignature { .. } => ErrorCode::CertificateSignatureInvalid,
            PkiError::NotCa { .. } => ErrorCode::IssuerNotCa,
            PkiError::ChainTooLong(_) => ErrorCode::ChainTooLong,
            PkiError::UsageMismatch(_) => ErrorCode::CertificateUsageMismatch,
            PkiError::CsrInvalid(_) => ErrorCode::CsrInvalid,
            PkiError::CrlMalformed(_) => ErrorCode::CrlMalformed,
            PkiError::OcspMalformed(_) => ErrorCode::OcspMalformed,
            PkiError::OcspSignatureInvalid(_) => ErrorCode::OcspSignatureInvalid,
            PkiError::CrlSignatureInvalid(_) => ErrorCode::CrlSignatureInvalid,
            PkiError::CmsMalformed(_) => ErrorCode::CmsMalformed,
            PkiError::CmsDigestMismatch => ErrorCode::CmsDigestMismatch,
            PkiError::CmsSignatureNonConformant { .. } => ErrorCode::CmsSignatureNonConformant,
            PkiError::CmsNoRecipient => ErrorCode::CmsNoRecipient,
            PkiError::CmsContentMissing => ErrorCode::CmsContentMissing,
            PkiError::Io(_) => ErrorCode::Io,
            PkiError::Device { code, .. } => *code,
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, PkiError>;
