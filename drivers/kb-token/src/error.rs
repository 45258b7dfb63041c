use kb_types::{ErrorCode, HasErrorCode};

/// Errors from key media. PINs and key material never appear in them.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Wrong PIN; this many tries remain.
    #[error("wrong PIN, {retries_left} tries left")]
    WrongPin {
        /// Tries left before the PIN locks.
        retries_left: u8,
    },
    /// Wrong PIN, on a medium that does not say how many tries remain (PKCS#11 reports
    /// only "count low", "final try" and "locked" flags): the count is unknown, not zero.
    #[error("wrong PIN (the medium does not report how many tries are left)")]
    WrongPinRetriesUnknown,
    /// The PIN is locked.
    #[error("PIN is locked")]
    PinLocked,
    /// The new PIN breaks the policy.
    #[error("PIN policy: {0}")]
    PinPolicy(&'static str),
    /// The medium is gone (pulled out, file deleted).
    #[error("the key medium was removed")]
    Removed,
    /// The medium is known but out of reach (its link dropped); it may come back.
    #[error("the key medium is offline")]
    Offline,
    /// The operation was cancelled (by the user, or the client that asked went away)
    /// before it reached the medium.
    #[error("the operation was cancelled")]
    Cancelled,
    /// The operation's deadline passed before it reached the medium.
    #[error("the operation timed out")]
    TimedOut,
    /// The request reached the medium but no answer came back (the link dropped or the
    /// deadline passed while the medium had it): it may or may not have been carried out.
    #[error("the key medium did not answer; the operation may or may not have been carried out")]
    OutcomeUnknown,
    /// The user refused the operation on the medium itself (a phone's "refuse" button),
    /// with the note they typed there, if any (plain text, capped by the medium's driver).
    #[error("the user refused the operation on the key medium{}", note_suffix(.note))]
    RefusedOnMedium {
        /// Why, in the user's words; empty when none was given.
        note: String,
    },
    /// The user left the medium's waiting screen (switched away from the phone app's
    /// confirmation page): the operation was aborted there.
    #[error("the operation was aborted on the key medium (its waiting screen was left)")]
    AbortedOnMedium,
    /// A remote medium (a phone) reported a failure with a stable code that no other
    /// variant stands for; `detail` is its description (plain text, capped by the driver).
    #[error("the key medium reported {code}: {detail}")]
    Remote {
        /// The stable code the medium sent.
        code: ErrorCode,
        /// What happened, as the medium described it.
        detail: String,
    },
    /// No such device.
    #[error("unknown device {0}")]
    UnknownDevice(String),
    /// No such container, key slot, certificate or seal.
    #[error("not found: {0}")]
    NotFound(String),
    /// Name already taken.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// Stored data is corrupt or truncated; nothing was changed.
    #[error("the key medium's data is corrupt: {0}")]
    Corrupt(String),
    /// The certificate does not belong to the slot's key.
    #[error("the certificate does not match the key pair")]
    CertificateKeyMismatch,
    /// A driver module (PKCS#11 or SKF library) could not be loaded or used: missing file,
    /// not such a module, or a required function absent. The message names the module path.
    #[error("driver module: {0}")]
    Module(String),
    /// Not supported by this medium.
    #[error("not supported by this medium: {0}")]
    NotSupported(String),
    /// Busy (another process holds it).
    #[error("the key medium is busy")]
    Busy,
    /// A smart card answered with an error status word that has no more specific
    /// variant (kb-apdu's status-word table decides; `reason` is its fixed description).
    #[error("the card reported an error: {reason} (SW {sw:04X})")]
    Card {
        /// The ISO 7816-4 status word SW1SW2.
        sw: u16,
        /// A fixed description of the status word (never card data).
        reason: &'static str,
    },
    /// A crypto primitive failed.
    #[error(transparent)]
    Crypto(#[from] kb_crypto::CryptoError),
    /// A PKI structure was bad.
    #[error(transparent)]
    Pki(#[from] kb_pki::PkiError),
    /// A medium's link failed in a way its transport classifies with its own stable code
    /// (a malformed BLE frame, an error frame from a BLE key). Never carries card data.
    #[error("{message}")]
    Link {
        /// The transport's code for it.
        code: ErrorCode,
        /// What happened.
        message: String,
    },
    /// I/O failed (message only: never a path with user data beyond the medium's own).
    #[error("I/O: {0}")]
    Io(String),
    /// An SM2 enveloped key the medium could not open (malformed, sealed to another key,
    /// or its private key does not match its public key); nothing was imported.
    #[error("enveloped key: {0}")]
    EnvelopedKey(String),
}

fn note_suffix(note: &str) -> String {
    if note.is_empty() { String::new() } else { format!(": {note}") }
}

impl From<std::io::Error> for TokenError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => TokenError::Removed,
            _ => TokenError::Io(e.to_string()),
        }
    }
}

impl HasErrorCode for TokenError {
    fn code(&self) -> ErrorCode {
        match self {
            TokenError::WrongPin { .. } | TokenError::WrongPinRetriesUnknown => ErrorCode::WrongPin,
            TokenError::PinLocked => ErrorCode::PinLocked,
            TokenError::PinPolicy(_) => ErrorCode::PinPolicy,
            TokenError::Removed => ErrorCode::DeviceRemoved,
            TokenError::Offline => ErrorCode::MediumOffline,
            TokenError::Cancelled => ErrorCode::Cancelled,
            TokenError::TimedOut => ErrorCode::OperationTimedOut,
            TokenError::OutcomeUnknown => ErrorCode::OutcomeUnknown,
            TokenError::RefusedOnMedium { .. } => ErrorCode::RefusedOnMedium,
            TokenError::AbortedOnMedium => ErrorCode::AbortedOnMedium,
            TokenError::Remote { code, .. } => *code,
            TokenError::UnknownDevice(_) => ErrorCode::UnknownDevice,
            TokenError::NotFound(_) => ErrorCode::NotFound,
            TokenError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            TokenError::Corrupt(_) => ErrorCode::TokenCorrupt,
            TokenError::CertificateKeyMismatch => ErrorCode::CertificateKeyMismatch,
            TokenError::Module(_) => ErrorCode::ModuleLoadFailed,
            TokenError::NotSupported(_) => ErrorCode::NotSupported,
            TokenError::Busy => ErrorCode::DeviceBusy,
            TokenError::Card { .. } => ErrorCode::CardError,
            TokenError::Crypto(c) => c.code(),
            TokenError::Pki(p) => p.code(),
            TokenError::Link { code, .. } => *code,
            TokenError::Io(_) => ErrorCode::Io,
            TokenError::EnvelopedKey(_) => ErrorCode::EnvelopedKeyInvalid,
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, TokenError>;
