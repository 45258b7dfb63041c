use crate::status::StatusWord;
use crate::tlv::TlvError;
use kb_types::{ErrorCode, HasErrorCode};

/// Errors of the APDU layer: a card's error status word, a protocol failure, a malformed
/// TLV, or the transport failing. Never contains command data (PINs) or response data.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApduError {
    /// The card answered with an error status word.
    #[error("card status {0}: {reason}", reason = .0.status().reason())]
    Status(StatusWord),
    /// A response shorter than the two status bytes.
    #[error("the card's response is shorter than a status word ({0} bytes)")]
    ResponseTooShort(usize),
    /// The card kept answering `61xx`/`6Cxx` past the round limit.
    #[error("the card did not finish its answer within {0} rounds")]
    TooManyRounds(usize),
    /// A command that cannot be encoded (data or Ne too long for the chosen form,
    /// offset out of range).
    #[error("command cannot be encoded: {0}")]
    Encoding(&'static str),
    /// Bytes that are not a command APDU.
    #[error("malformed command APDU: {0}")]
    MalformedCommand(&'static str),
    /// The card sent malformed BER-TLV.
    #[error(transparent)]
    Tlv(#[from] TlvError),
    /// The card was removed (or reset by someone else) during the transaction.
    #[error("the card was removed")]
    Removed,
    /// The card was reset (by another application, or a power glitch) during the
    /// transaction: the selected application and verified PINs are gone. The backend has
    /// reconnected; the caller re-selects and retries.
    #[error("the card was reset")]
    Reset,
    /// The reader or card is held by another process.
    #[error("the card is busy")]
    Busy,
    /// The transport failed (reader error, buffer too small, socket closed).
    #[error("card transport: {0}")]
    Transport(String),
    /// The link to the card (a BLE key) is down: the command did not reach the card.
    #[error("the link to the card is down")]
    Offline,
    /// The command reached the card but its link dropped (or stayed silent past the
    /// bound) before the answer: the card may or may not have carried it out.
    #[error("the card did not answer; the command may or may not have been carried out")]
    OutcomeUnknown,
    /// A link failure its transport classifies with its own stable code (a malformed BLE
    /// frame, an error frame from a BLE key). The message names no card data.
    #[error("{message}")]
    Link {
        /// The transport's code for it.
        code: ErrorCode,
        /// What happened.
        message: String,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, ApduError>;

impl HasErrorCode for ApduError {
    fn code(&self) -> ErrorCode {
        match self {
            ApduError::Status(sw) => sw.error_code(),
            ApduError::Removed => ErrorCode::DeviceRemoved,
            ApduError::Offline => ErrorCode::MediumOffline,
            ApduError::OutcomeUnknown => ErrorCode::OutcomeUnknown,
            ApduError::Link { code, .. } => *code,
            ApduError::Busy => ErrorCode::DeviceBusy,
            ApduError::Tlv(_) => ErrorCode::TokenCorrupt,
            ApduError::Encoding(_) => ErrorCode::NotSupported,
            ApduError::Reset
            | ApduError::ResponseTooShort(_)
            | ApduError::TooManyRounds(_)
            | ApduError::MalformedCommand(_)
            | ApduError::Transport(_) => ErrorCode::Io,
        }
    }
}
