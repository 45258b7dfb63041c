use kb_types::{ErrorCode, HasErrorCode};

/// Errors the service reports to its callers (CLI, desktop, bridge). Each carries a
/// stable [`ErrorCode`]; messages never contain PINs or key material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceError {
    /// The medium reported an error.
    #[error(transparent)]
    Token(#[from] kb_token::TokenError),
    /// A certificate, CSR or CMS problem.
    #[error(transparent)]
    Pki(#[from] kb_pki::PkiError),
    /// A primitive failed.
    #[error(transparent)]
    Crypto(#[from] kb_crypto::CryptoError),
    /// No such device (never seen, or removed).
    #[error("unknown device {0}")]
    UnknownDevice(String),
    /// The user cancelled a prompt.
    #[error("cancelled by the user")]
    Cancelled,
    /// The settings file is invalid (the message says which key).
    #[error("invalid settings: {0}")]
    Config(String),
    /// The audit store failed.
    #[error("audit log: {0}")]
    Audit(String),
    /// Local I/O failed.
    #[error("I/O: {0}")]
    Io(String),
    /// The medium returned a signature that does not verify with the key pair's public
    /// key (a faulty driver module); it was not handed out. Names the medium.
    #[error("the key medium {medium} returned a signature that does not verify; it was not used (is its driver module faulty?)")]
    MediumSignatureInvalid {
        /// The medium: label, model and device id.
        medium: String,
    },
    /// The medium returned a decryption result that cannot be right (e.g. a content key
    /// of the wrong length); it was not used. Names the medium.
    #[error("the key medium {medium} returned an invalid decryption result ({what})")]
    MediumResultInvalid {
        /// The medium: label, model and device id.
        medium: String,
        /// What was wrong (lengths only, never the data).
        what: String,
    },
    /// A certificate authority could not be asked, or refused (see [`kb_ca::CaError`]).
    #[error(transparent)]
    Ca(#[from] kb_ca::CaError),
    /// A renewal step failed with a CA-category code (new certificate invalid, install
    /// rolled back or incomplete, not approved, several media plugged in).
    #[error("{message}")]
    Renewal {
        /// The code (7xxx).
        code: ErrorCode,
        /// What happened (names certificates and media, never secrets).
        message: String,
    },
    /// The device actor stopped (a bug or a panic in a driver, reported, never hidden).
    #[error("internal: {0}")]
    Internal(String),
}

impl From<std::io::Error> for ServiceError {
    fn from(e: std::io::Error) -> Self {
        ServiceError::Io(e.to_string())
    }
}

impl HasErrorCode for ServiceError {
    fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Token(t) => t.code(),
            ServiceError::Pki(p) => p.code(),
            ServiceError::Crypto(c) => c.code(),
            ServiceError::UnknownDevice(_) => ErrorCode::UnknownDevice,
            ServiceError::Cancelled => ErrorCode::Cancelled,
            ServiceError::Config(_) => ErrorCode::ConfigInvalid,
            ServiceError::Audit(_) | ServiceError::Io(_) => ErrorCode::Io,
            ServiceError::MediumSignatureInvalid { .. } => ErrorCode::MediumSignatureInvalid,
            ServiceError::MediumResultInvalid { .. } => ErrorCode::MediumResultInvalid,
            ServiceError::Ca(e) => e.code(),
            ServiceError::Renewal { code, .. } => *code,
            ServiceError::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, ServiceError>;
