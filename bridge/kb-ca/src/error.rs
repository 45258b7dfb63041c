use kb_types::{ErrorCode, HasErrorCode};

/// What went wrong talking to a CA. Each variant maps to one stable [`ErrorCode`];
/// messages name the server and the reason, never secrets.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaError {
    /// Could not connect (offline, DNS, refused, TLS).
    #[error("{server}: could not connect: {reason}")]
    Unreachable {
        /// Host and port.
        server: String,
        /// The system's reason.
        reason: String,
    },
    /// No (complete) answer within the time limit.
    #[error("{server}: no answer within {seconds} s")]
    TimedOut {
        /// Host and port.
        server: String,
        /// The limit that passed.
        seconds: u64,
    },
    /// The answer is not what the API promises (garbage, too large, wrong type).
    #[error("{server}: invalid answer: {reason}")]
    InvalidResponse {
        /// Host and port.
        server: String,
        /// What was wrong.
        reason: String,
    },
    /// The CA answered with an error of the API (`{"error": {"code", "message"}}`), or an
    /// EST refusal; `code` is the stable code it names (or the closest one).
    #[error("the CA refused: {message}")]
    Refused {
        /// The stable code.
        code: ErrorCode,
        /// The CA's reason.
        message: String,
    },
    /// The CA accepted an enrolment and will issue later (EST 202 + Retry-After).
    #[error("the CA is issuing the certificate; retry in {retry_after} s")]
    Pending {
        /// Seconds to wait, as the CA asked.
        retry_after: u64,
    },
    /// A URL or argument the client cannot use.
    #[error("{0}")]
    BadConfig(String),
    /// A certificate, CSR or proof could not be built or parsed.
    #[error(transparent)]
    Pki(#[from] kb_pki::PkiError),
}

impl HasErrorCode for CaError {
    fn code(&self) -> ErrorCode {
        match self {
            CaError::Unreachable { .. } => ErrorCode::CaUnreachable,
            CaError::TimedOut { .. } => ErrorCode::CaTimedOut,
            CaError::InvalidResponse { .. } => ErrorCode::CaResponseInvalid,
            CaError::Refused { code, .. } => *code,
            CaError::Pending { .. } => ErrorCode::EnrolmentPending,
            CaError::BadConfig(_) => ErrorCode::CaNotConfigured,
            CaError::Pki(p) => p.code(),
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, CaError>;
