//! Errors as they go out on the wire: every failure becomes an [`ErrorObject`] with its
//! stable KeyBridge code (and `retries_left` for a wrong PIN).

use kb_bridge_protocol::ErrorObject;
use kb_service::ServiceError;
use kb_token::TokenError;
use kb_types::{ErrorCode, HasErrorCode};

/// An error object for any KeyBridge error.
pub fn error_object(e: &(impl HasErrorCode + std::fmt::Display)) -> ErrorObject {
    ErrorObject::new(e.code(), e.to_string())
}

/// The same for a service error, with the PIN tries left when the medium said.
pub fn service_error_object(e: &ServiceError) -> ErrorObject {
    let o = error_object(e);
    match e {
        ServiceError::Token(TokenError::WrongPin { retries_left }) => o.with_retries_left(*retries_left),
        _ => o,
    }
}

/// Shorthand: an error object for a code and a detail.
pub(crate) fn fail(code: ErrorCode, detail: impl Into<String>) -> ErrorObject {
    ErrorObject::new(code, detail)
}
