//! Error objects on the wire, and the one mapping between [`ErrorCode`] and the
//! JSON-RPC `error.code` number.
//!
//! **Mapping decision.** JSON-RPC 2.0 reserves -32768..=-32000 for itself and leaves
//! every other integer to the application. KeyBridge uses that freedom so clients see
//! *the same number* everywhere: a KeyBridge error travels as its own positive number
//! from `docs/error-codes.md` (`wrong_pin` is `4001` in the UI, the CLI, the audit log
//! and `error.code`). Only the four protocol-level failures use the standard negative
//! codes: -32700 parse error, -32600 invalid request, -32601 method not found, -32602
//! invalid params. The standard -32603 "internal error" is never sent: internal
//! failures are `9999 internal`. So `code > 0` ⇔ a KeyBridge [`ErrorCode`], `code < 0`
//! ⇔ a [`ProtocolError`], and every number maps back to exactly one of them.

use kb_types::{ErrorCode, Lang};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The four standard JSON-RPC failures KeyBridge reports before a method runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolError {
    /// -32700: the message is not valid JSON (or not UTF-8).
    ParseError,
    /// -32600: valid JSON but not a valid request object.
    InvalidRequest,
    /// -32601: no such method.
    MethodNotFound,
    /// -32602: the method exists but its params do not fit its schema.
    InvalidParams,
}

impl ProtocolError {
    /// Every protocol error, in code order.
    pub const ALL: [ProtocolError; 4] =
        [ProtocolError::ParseError, ProtocolError::InvalidRequest, ProtocolError::MethodNotFound, ProtocolError::InvalidParams];

    /// The standard JSON-RPC code.
    pub const fn code(self) -> i32 {
        match self {
            ProtocolError::ParseError => -32700,
            ProtocolError::InvalidRequest => -32600,
            ProtocolError::MethodNotFound => -32601,
            ProtocolError::InvalidParams => -32602,
        }
    }

    /// Stable snake_case name (`data.name` on the wire).
    pub const fn name(self) -> &'static str {
        match self {
            ProtocolError::ParseError => "parse_error",
            ProtocolError::InvalidRequest => "invalid_request",
            ProtocolError::MethodNotFound => "method_not_found",
            ProtocolError::InvalidParams => "invalid_params",
        }
    }

    /// Human message.
    pub const fn message(self, lang: Lang) -> &'static str {
        match (self, lang) {
            (ProtocolError::ParseError, Lang::ZhCn) => "消息不是有效的 JSON",
            (ProtocolError::ParseError, Lang::En) => "parse error: not valid JSON",
            (ProtocolError::InvalidRequest, Lang::ZhCn) => "请求格式无效",
            (ProtocolError::InvalidRequest, Lang::En) => "invalid request",
            (ProtocolError::MethodNotFound, Lang::ZhCn) => "方法不存在",
            (ProtocolError::MethodNotFound, Lang::En) => "method not found",
            (ProtocolError::InvalidParams, Lang::ZhCn) => "参数无效",
            (ProtocolError::InvalidParams, Lang::En) => "invalid params",
        }
    }
}

/// Anything that can fail a request: a protocol error or a KeyBridge code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RpcCode {
    /// A standard JSON-RPC failure (negative code).
    Protocol(ProtocolError),
    /// A KeyBridge failure (positive code = its number).
    KeyBridge(ErrorCode),
}

impl From<ErrorCode> for RpcCode {
    fn from(c: ErrorCode) -> Self {
        RpcCode::KeyBridge(c)
    }
}

impl From<ProtocolError> for RpcCode {
    fn from(p: ProtocolError) -> Self {
        RpcCode::Protocol(p)
    }
}

impl RpcCode {
    /// The `error.code` number.
    pub const fn code(self) -> i32 {
        match self {
            RpcCode::Protocol(p) => p.code(),
            // Numbers are 1000..=9999: always fit in an i32.
            RpcCode::KeyBridge(c) => c.number() as i32,
        }
    }

    /// Back from an `error.code` number; `None` for numbers this version does not know.
    pub fn from_code(code: i32) -> Option<Self> {
        if code < 0 {
            ProtocolError::ALL.iter().copied().find(|p| p.code() == code).map(RpcCode::Protocol)
        } else {
            ErrorCode::from_number(u32::try_from(code).ok()?).map(RpcCode::KeyBridge)
        }
    }

    /// Stable snake_case name.
    pub const fn name(self) -> &'static str {
        match self {
            RpcCode::Protocol(p) => p.name(),
            RpcCode::KeyBridge(c) => c.name(),
        }
    }

    /// Human message.
    pub const fn message(self, lang: Lang) -> &'static str {
        match self {
            RpcCode::Protocol(p) => p.message(lang),
            RpcCode::KeyBridge(c) => c.message(lang),
        }
    }
}

impl fmt::Display for RpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.name())
    }
}

/// The message in both languages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Messages {
    /// Simplified Chinese.
    #[serde(rename = "zh-CN")]
    pub zh_cn: String,
    /// English.
    pub en: String,
}

/// `error.data`: what a client shows and matches on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorData {
    /// Stable snake_case name of the code (`wrong_pin`).
    pub name: String,
    /// The message in zh-CN and en.
    pub messages: Messages,
    /// Technical detail for logs and support (never a secret). May be empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// PIN tries left, for `wrong_pin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries_left: Option<u8>,
}

/// A JSON-RPC error object: `{ code, message, data }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// See the module docs: positive = KeyBridge code, negative = JSON-RPC standard code.
    pub code: i32,
    /// Short English message (JSON-RPC's `message`).
    pub message: String,
    /// Name, both messages, detail.
    pub data: ErrorData,
}

impl ErrorObject {
    /// An error object for a code, with a detail string (may be empty).
    pub fn new(code: impl Into<RpcCode>, detail: impl Into<String>) -> Self {
        let code = code.into();
        ErrorObject {
            code: code.code(),
            message: code.message(Lang::En).to_string(),
            data: ErrorData {
                name: code.name().to_string(),
                messages: Messages { zh_cn: code.message(Lang::ZhCn).to_string(), en: code.message(Lang::En).to_string() },
                detail: detail.into(),
                retries_left: None,
            },
        }
    }

    /// With the PIN tries left (for `wrong_pin`).
    pub fn with_retries_left(mut self, n: u8) -> Self {
        self.data.retries_left = Some(n);
        self
    }

    /// The code, if this version knows it.
    pub fn rpc_code(&self) -> Option<RpcCode> {
        RpcCode::from_code(self.code)
    }
}
