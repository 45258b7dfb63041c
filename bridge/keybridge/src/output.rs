//! Printing results and errors, as text or JSON, with stable error codes.
//!
//! Everything printed goes through [`Out`]. A reader that stops reading
//! (`keybridge audit | head`) ends the output quietly: the rest is dropped and the
//! command's status stands. Any other failure to write stdout (a full disk) is an
//! error of the command.

use kb_types::{Category, ErrorCode, HasErrorCode, Lang};
use serde::Serialize;
use std::io::Write;
use std::sync::Mutex;

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
    /// The same error, its detail prefixed with what it concerns (a file name).
    pub(crate) fn context(mut self, what: &str) -> Self {
        self.detail = format!("{what}: {}", self.detail);
        self
    }
}

pub(crate) type CliResult<T = ()> = Result<T, CliError>;

/// Output mode.
pub(crate) struct Out {
    json: bool,
    lang: Lang,
    /// How writing stdout went: `Some(None)` once the reader went away, `Some(Some(e))`
    /// after any other failure.
    stdout: Mutex<Option<Option<String>>>,
}

impl Out {
    pub(crate) fn new(json: bool, en: bool) -> Self {
        Self { json, lang: if en { Lang::En } else { Lang::ZhCn }, stdout: Mutex::new(None) }
    }

    /// Print one line on stdout (see the module docs for a closed stdout).
    pub(crate) fn print(&self, text: &str) {
        let mut state = self.stdout.lock().unwrap_or_else(|p| p.into_inner());
        if state.is_some() {
            return;
        }
        let mut out = std::io::stdout().lock();
        let r = out.write_all(text.as_bytes()).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => *state = Some(None),
            Err(e) => *state = Some(Some(e.to_string())),
        }
    }

    /// The error writing stdout failed with, if it failed for another reason than its
    /// reader going away.
    pub(crate) fn write_error(&self) -> Option<CliError> {
        let state = self.stdout.lock().unwrap_or_else(|p| p.into_inner());
        state.clone().flatten().map(|e| CliError::new(ErrorCode::Io, format!("stdout: {e}")))
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
            self.print(&serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));
        } else {
            self.print(&text());
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
            if self.write_error().is_some() {
                // stdout is broken (not merely closed): the error still reaches someone.
                let _ = writeln!(std::io::stderr(), "{v}");
            } else {
                self.print(&v.to_string());
            }
        } else {
            // A closed stderr loses the message, never the exit status.
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "错误/error E{} {}: {} ({})", e.code.number(), e.code.name(), msg, e.detail);
            if let Some(n) = e.retries_left {
                let _ = writeln!(err, "{}", self.t(&format!("剩余重试次数：{n}"), &format!("tries left: {n}")));
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
