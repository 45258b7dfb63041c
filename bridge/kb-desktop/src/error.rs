//! [`AppError`]: every failure as a stable code, its name and a message in the UI language.

use crate::model::AppError;
use kb_service::ServiceError;
use kb_token::TokenError;
use kb_types::{ErrorCode, HasErrorCode, Lang};

impl AppError {
    /// An error with a code and details.
    pub fn new(code: ErrorCode, lang: Lang, detail: impl Into<String>) -> Self {
        AppError {
            code: code.number(),
            name: code.name().to_string(),
            message: code.message(lang).to_string(),
            detail: detail.into(),
            tries_left: None,
        }
    }

    /// A service error (a wrong PIN carries the tries left).
    pub fn service(e: &ServiceError, lang: Lang) -> Self {
        let mut err = AppError::new(e.code(), lang, e.to_string());
        if let ServiceError::Token(TokenError::WrongPin { retries_left }) = e {
            err.tries_left = Some(*retries_left);
        }
        err
    }

    /// Invalid input from the window.
    pub fn input(lang: Lang, detail: impl Into<String>) -> Self {
        AppError::new(ErrorCode::InvalidParameter, lang, detail)
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.message, self.code, self.detail)
    }
}

impl std::error::Error for AppError {}
