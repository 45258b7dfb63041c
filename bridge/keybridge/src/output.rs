//! Printing results and errors, as text or JSON, with stable error codes.
#![allow(clippy::print_stdout)]

use kb_types::{Category, ErrorCode, HasErrorCode, Lang};
use serde::Serialize;

/// An error on its way to the user: a stable code plus detail (never a PIN: details come
/// from error types whose messages carry none).
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: ErrorCode,
    pub(crate) detail: String,
    /// For a wrong PIN: the tries left on the medium, shown as its own JSON field.
    pub(crate) retries_left: Option<u8>,
}

/// The tries left, when `e` is a wrong-PIN error of the service or a medium.
fn wrong_pin_retries(e: &dyn std::any::Any) -> Option<u8> {
    use kb_service::ServiceError;
    use kb_token::TokenError;
    let token = match e.downcast_ref::<ServiceError>() {
        Some(ServiceError::Token(t)) => Some(t),
        _ => e.downcast_ref::<TokenError>(),
    };
    match token {
        Some(TokenError::WrongPin { retries_left }) => Some(*retries_left),
        _ => None,
    }
}

impl<E: HasErrorCode + std::fmt::Display + 'static> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError { code: e.code(), detail: e.to_string(), retries_left: wrong_pin_retries(&e) }
    }
}

impl CliError {
    pub(crate) fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        CliError { code, detail: detail.into(), retries_left: None }
    }
    pub(crate) fn io(what: &str, e: std::io::Error) -> Self {
        Self::new(ErrorCode::Io, format!("{what}: {e}"))
    }
    pub(crate) fn input(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameter, detail)
    }
}

pub(crate) type CliResult<T = ()> = Result<T, CliError>;

/// Output mode.
pub(crate) struct Out {
    json: bool,
    lang: Lang,
}

impl Out {
    pub(crate) fn new(json: bool, en: bool) -> Self {
        Self { json, lang: if en { Lang::En } else { Lang::ZhCn } }
    }

    pub(crate) fn lang(&self) -> Lang {
        self.lang
    }

    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// `zh` or `en`, in the user's language.
    pub(crate) fn t<'a>(&self, zh: &'a str, en: &'a str) -> &'a str {
        match self.lang {
            Lang::En => en,
            _ => zh,
        }
    }

    /// Print `value` as JSON, or `text()` otherwise.
    pub(crate) fn show<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));
        } else {
            println!("{}", text());
        }
    }

    /// Report an error; return the exit status.
    pub(crate) fn error(&self, e: &CliError) -> i32 {
        let msg = e.code.message(self.lang);
        if self.json {
            let mut v = serde_json::json!({
                "error": { "code": e.code.number(), "name": e.code.name(), "message": msg, "detail": e.detail }
            });
            if let Some(n) = e.retries_left {
                v["error"]["retries_left"] = n.into();
            }
            println!("{v}");
        } else {
            eprintln!("错误/error E{} {}: {} ({})", e.code.number(), e.code.name(), msg, e.detail);
            if let Some(n) = e.retries_left {
                eprintln!("{}", self.t(&format!("剩余重试次数：{n}"), &format!("tries left: {n}")));
            }
        }
        match e.code.category() {
            Category::Crypto | Category::Certificate => 2,
            _ => 1,
        }
    }
}

/// Columns a character takes on a terminal: 2 for CJK and other wide characters.
fn char_width(c: char) -> usize {
    let u = c as u32;
    let wide = matches!(u,
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x20000..=0x3FFFD);
    if wide { 2 } else { 1 }
}

/// `s` padded with spaces to `width` terminal columns (labels in text output).
pub(crate) fn pad(s: &str, width: usize) -> String {
    let w: usize = s.chars().map(char_width).sum();
    format!("{s}{}", " ".repeat(width.saturating_sub(w).max(1)))
}
