//! Printing results and errors, as text or JSON, with stable error codes.
#![allow(clippy::print_stdout)]

use kb_types::{Category, ErrorCode, HasErrorCode, Lang};
use serde::Serialize;

/// An error on its way to the user: a stable code plus detail.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: ErrorCode,
    pub(crate) detail: String,
}

impl<E: HasErrorCode + std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError { code: e.code(), detail: e.to_string() }
    }
}

impl CliError {
    pub(crate) fn io(what: &str, e: std::io::Error) -> Self {
        CliError { code: ErrorCode::Io, detail: format!("{what}: {e}") }
    }
    pub(crate) fn input(detail: impl Into<String>) -> Self {
        CliError { code: ErrorCode::InvalidParameter, detail: detail.into() }
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
            let v = serde_json::json!({
                "error": { "code": e.code.number(), "name": e.code.name(), "message": msg, "detail": e.detail }
            });
            println!("{v}");
        } else {
            eprintln!("错误/error E{} {}: {} ({})", e.code.number(), e.code.name(), msg, e.detail);
        }
        match e.code.category() {
            Category::Crypto | Category::Certificate => 2,
            _ => 1,
        }
    }
}
