use kb_types::{ErrorCode, HasErrorCode};

/// Errors from the cryptographic primitives. Messages never contain key
/// material or plaintext.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// Bytes that should be a key, point, signature or ciphertext are malformed.
    #[error("malformed {what}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
    },
    /// Key material is invalid.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// Parameter out of range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
    /// Algorithm or combination not supported.
    #[error("unsupported algorithm: {0}")]
    Unsupported(String),
    /// Signature verification failed.
    #[error("signature verification failed")]
    BadSignature,
    /// Decryption failed (wrong key or altered ciphertext). Deliberately says no more.
    #[error("decryption failed")]
    DecryptFailed,
    /// Authentication tag or padding check failed.
    #[error("integrity check failed")]
    IntegrityFailed,
    /// The system RNG failed.
    #[error("random number generator failed")]
    Rng,
}

impl HasErrorCode for CryptoError {
    fn code(&self) -> ErrorCode {
        match self {
            CryptoError::Malformed { .. } => ErrorCode::MalformedInput,
            CryptoError::InvalidKey(_) => ErrorCode::InvalidKey,
            CryptoError::InvalidParameter(_) => ErrorCode::InvalidParameter,
            CryptoError::Unsupported(_) => ErrorCode::UnsupportedAlgorithm,
            CryptoError::BadSignature => ErrorCode::SignatureInvalid,
            CryptoError::DecryptFailed => ErrorCode::DecryptionFailed,
            CryptoError::IntegrityFailed => ErrorCode::IntegrityCheckFailed,
            CryptoError::Rng => ErrorCode::RandomFailed,
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, CryptoError>;
