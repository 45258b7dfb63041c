//! How the service reaches the user: PIN entry, confirmations, QR codes, notices.
//!
//! The service never imports UI types; it calls a [`Prompter`]. The desktop app
//! implements it with windows, the CLI with the terminal, tests with a
//! [`ScriptedPrompter`]. A user who closes a prompt answers with
//! [`ServiceError::Cancelled`](crate::ServiceError::Cancelled).
//!
//! PIN prompts run on the thread of whoever started the operation (a bridge worker, a
//! desktop command, the CLI), never on the medium's actor thread, so the medium keeps
//! answering reads while a dialog is open. Every PIN prompt gets the operation's
//! [`OpContext`]: when the operation is cancelled or its deadline passes, the prompter
//! withdraws the dialog and returns [`ServiceError::Cancelled`](crate::ServiceError::Cancelled); a PIN typed after that
//! is dropped by the service and never reaches a medium.

use crate::Result;
#[cfg(any(test, feature = "test-support"))]
use crate::ServiceError;
use kb_token::OpContext;
use kb_types::{DeviceId, Pin, PinKind};
#[cfg(any(test, feature = "test-support"))]
use std::collections::VecDeque;
#[cfg(any(test, feature = "test-support"))]
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A request for a PIN. Carries everything a PIN dialog shows; never a PIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinRequest {
    /// The medium.
    pub device_id: DeviceId,
    /// Its label as the user knows it.
    pub device_label: String,
    /// Which PIN.
    pub kind: PinKind,
    /// Tries left before the PIN locks, when the medium tells.
    pub retries_left: Option<u8>,
    /// The operation the PIN is for (`sign`, `decrypt`, `keygen`, …).
    pub operation: String,
    /// Who asks: `cli`, `desktop`, an app name, or a web origin.
    pub client: String,
    /// The certificate the operation uses (subject and serial), or empty (key
    /// generation, seals).
    pub certificate: String,
    /// The PIN typed for this operation just before was wrong.
    pub previous_wrong: bool,
    /// The PIN remembered in the PIN cache was rejected by the medium (it was changed
    /// elsewhere); it has been forgotten.
    pub cached_pin_rejected: bool,
}

/// A yes/no question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfirmRequest {
    /// Dialog title.
    pub title: String,
    /// The question.
    pub message: String,
    /// Who asks.
    pub client: String,
    /// The medium concerned, if any.
    pub device_id: Option<DeviceId>,
}

/// A QR code to show (WeChat binding, phone pairing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QrRequest {
    /// Dialog title.
    pub title: String,
    /// What the QR code encodes.
    pub payload: String,
    /// How long the code stays valid from now (the dialog counts down).
    pub expires_in: Duration,
}

/// A client (a web page's origin, or a native tool) asks to use KeyBridge for the
/// first time: the consent dialog shows who, what and with which certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRequest {
    /// Who asks: a web origin (`https://bid.example.cn`) or a native tool's name.
    pub client: String,
    /// The operation it wants (`sign`, `decrypt`, `certificates.list`, …).
    pub operation: String,
    /// The certificate concerned (subject and thumbprint), when there is one.
    pub certificate: Option<String>,
}

/// The user's answer to a [`ConsentRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentAnswer {
    /// Allow this client from now on (remembered, revocable).
    AllowAlways,
    /// Allow this client for as long as its connection lasts.
    AllowOnce,
    /// Refuse.
    Deny,
}

/// Asks the user. Implementations block until the user answers.
pub trait Prompter: Send + Sync {
    /// Ask for a PIN. Cancel → [`ServiceError::Cancelled`](crate::ServiceError::Cancelled). When `ctx` is stopped
    /// (the client cancelled, went away, or the deadline passed) the dialog must be
    /// withdrawn and the call return [`ServiceError::Cancelled`](crate::ServiceError::Cancelled) (register with
    /// [`OpContext::on_stop`]); a prompter that cannot withdraw its dialog (a terminal
    /// read) may return the PIN late: the service drops it.
    fn ask_pin(&self, req: &PinRequest, ctx: &OpContext) -> Result<Pin>;

    /// Ask a yes/no question. Closing the dialog → [`ServiceError::Cancelled`](crate::ServiceError::Cancelled).
    fn confirm(&self, req: &ConfirmRequest) -> Result<bool>;

    /// Show a QR code until it expires or the user closes it.
    fn show_qr(&self, req: &QrRequest) -> Result<()>;

    /// Tell the user something (no answer expected).
    fn notify(&self, message: &str);

    /// Ask whether a client may use KeyBridge. Closing the dialog → [`ConsentAnswer::Deny`]
    /// or [`ServiceError::Cancelled`](crate::ServiceError::Cancelled). The default asks a yes/no [`Prompter::confirm`]
    /// and allows once; the desktop app overrides it with a dialog offering "always".
    fn consent(&self, req: &ConsentRequest) -> Result<ConsentAnswer> {
        let certificate = req.certificate.as_deref().map(|c| format!(" (certificate {c})")).unwrap_or_default();
        let yes = self.confirm(&ConfirmRequest {
            title: "KeyBridge".into(),
            message: format!("Allow {} to {}{certificate}?", req.client, req.operation),
            client: req.client.clone(),
            device_id: None,
        })?;
        Ok(if yes { ConsentAnswer::AllowOnce } else { ConsentAnswer::Deny })
    }
}

/// One scripted answer.
#[derive(Debug)]
#[cfg(any(test, feature = "test-support"))]
pub enum Answer {
    /// Type this PIN.
    Pin(Pin),
    /// Answer a confirmation.
    Confirm(bool),
    /// Answer a consent request.
    Consent(ConsentAnswer),
    /// Close whatever is asked.
    Cancel,
    /// Keep the PIN dialog open until the test answers it with
    /// [`ScriptedPrompter::answer_open`] or the operation is stopped (then the dialog is
    /// withdrawn, seen as [`Seen::Withdrawn`]).
    Hold,
}

/// What a [`ScriptedPrompter`] was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg(any(test, feature = "test-support"))]
pub enum Seen {
    /// A PIN request.
    Pin(PinRequest),
    /// A confirmation.
    Confirm(ConfirmRequest),
    /// A QR code.
    Qr(QrRequest),
    /// A notice.
    Notify(String),
    /// A consent request.
    Consent(ConsentRequest),
    /// A held PIN dialog withdrawn because its operation was stopped.
    Withdrawn(PinRequest),
}

#[derive(Default)]
#[cfg(any(test, feature = "test-support"))]
struct Script {
    answers: VecDeque<Answer>,
    seen: Vec<Seen>,
    /// Held dialogs: open ones wait for an answer here.
    held_open: usize,
    held_answer: Option<Answer>,
}

/// A [`Prompter`] for tests: answers from a queue and records every request. With the
/// queue empty, or an answer of the wrong kind, it cancels. (Test support: behind the
/// `test-support` feature.)
#[derive(Default)]
#[cfg(any(test, feature = "test-support"))]
pub struct ScriptedPrompter {
    script: Mutex<Script>,
    changed: Condvar,
}

#[cfg(any(test, feature = "test-support"))]
impl ScriptedPrompter {
    /// An empty script (every prompt is cancelled).
    pub fn new() -> Self {
        Self::default()
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue an answer.
    pub fn push(&self, answer: Answer) {
        self.script().answers.push_back(answer);
    }

    /// Queue a PIN.
    pub fn push_pin(&self, pin: &str) {
        self.push(Answer::Pin(Pin::new(pin)));
    }

    /// Queue a cancel.
    pub fn push_cancel(&self) {
        self.push(Answer::Cancel);
    }

    /// Queue a confirmation answer.
    pub fn push_confirm(&self, yes: bool) {
        self.push(Answer::Confirm(yes));
    }

    /// Answers not used yet.
    pub fn remaining(&self) -> usize {
        self.script().answers.len()
    }

    /// Everything asked so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.script().seen.clone()
    }

    /// The PIN requests so far, in order.
    pub fn pin_requests(&self) -> Vec<PinRequest> {
        self.script()
            .seen
            .iter()
            .filter_map(|s| match s {
                Seen::Pin(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// Forget what was seen (the queue stays).
    pub fn clear_seen(&self) {
        self.script().seen.clear();
    }

    /// Wait until a held PIN dialog is open (true) or `timeout` passed (false).
    pub fn wait_held_open(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut s = self.script();
        while s.held_open == 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self.changed.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    /// How many held PIN dialogs are open now.
    pub fn held_open(&self) -> usize {
        self.script().held_open
    }

    /// Answer the open held dialog (as the user typing into it). False when no held
    /// dialog is open — e.g. it was withdrawn: the answer goes nowhere.
    pub fn answer_open(&self, answer: Answer) -> bool {
        let mut s = self.script();
        if s.held_open == 0 {
            return false;
        }
        s.held_answer = Some(answer);
        drop(s);
        self.changed.notify_all();
        true
    }

    /// Wait until `pred` holds for what was seen so far (true) or `timeout` passed.
    pub fn wait_seen(&self, timeout: Duration, pred: impl Fn(&[Seen]) -> bool) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut s = self.script();
        while !pred(&s.seen) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self.changed.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }

    /// A held dialog: wait for [`Self::answer_open`] or the operation's stop.
    fn hold(&self, req: &PinRequest, ctx: &OpContext) -> Result<Pin> {
        // The stop is noticed by re-checking the context at least every 20 ms (a test
        // double: the real prompters register a waker with `OpContext::on_stop`).
        let mut s = self.script();
        s.held_open += 1;
        self.changed.notify_all();
        let r = loop {
            if let Some(a) = s.held_answer.take() {
                break match a {
                    Answer::Pin(p) => Ok(p),
                    _ => Err(ServiceError::Cancelled),
                };
            }
            if ctx.stopped().is_some() {
                s.seen.push(Seen::Withdrawn(req.clone()));
                break Err(ServiceError::Cancelled);
            }
            s = self.changed.wait_timeout(s, Duration::from_millis(20)).unwrap_or_else(|e| e.into_inner()).0;
        };
        s.held_open -= 1;
        drop(s);
        self.changed.notify_all();
        r
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Prompter for ScriptedPrompter {
    fn ask_pin(&self, req: &PinRequest, ctx: &OpContext) -> Result<Pin> {
        let mut s = self.script();
        s.seen.push(Seen::Pin(req.clone()));
        let answer = s.answers.pop_front();
        drop(s);
        self.changed.notify_all();
        match answer {
            Some(Answer::Pin(p)) => Ok(p),
            Some(Answer::Hold) => self.hold(req, ctx),
            _ => Err(ServiceError::Cancelled),
        }
    }

    fn confirm(&self, req: &ConfirmRequest) -> Result<bool> {
        let mut s = self.script();
        s.seen.push(Seen::Confirm(req.clone()));
        match s.answers.pop_front() {
            Some(Answer::Confirm(yes)) => Ok(yes),
            _ => Err(ServiceError::Cancelled),
        }
    }

    fn show_qr(&self, req: &QrRequest) -> Result<()> {
        self.script().seen.push(Seen::Qr(req.clone()));
        Ok(())
    }

    fn notify(&self, message: &str) {
        self.script().seen.push(Seen::Notify(message.to_string()));
    }

    fn consent(&self, req: &ConsentRequest) -> Result<ConsentAnswer> {
        let mut s = self.script();
        s.seen.push(Seen::Consent(req.clone()));
        match s.answers.pop_front() {
            Some(Answer::Consent(a)) => Ok(a),
            _ => Err(ServiceError::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_types::{ErrorCode, HasErrorCode};

    fn req() -> PinRequest {
        PinRequest {
            device_id: DeviceId("pcsc:A".into()),
            device_label: "A".into(),
            kind: PinKind::User,
            retries_left: Some(6),
            operation: "sign".into(),
            client: "cli".into(),
            certificate: String::new(),
            previous_wrong: false,
            cached_pin_rejected: false,
        }
    }

    #[test]
    fn script_answers_in_order_then_cancels() {
        let p = ScriptedPrompter::new();
        p.push_pin("11112222");
        p.push_confirm(true);
        p.push(Answer::Cancel);
        assert_eq!(p.ask_pin(&req(), &OpContext::new()).map(|p| p.expose().to_vec()).ok(), Some(b"11112222".to_vec()));
        let c = ConfirmRequest { title: "t".into(), message: "m".into(), client: "cli".into(), device_id: None };
        assert_eq!(p.confirm(&c).ok(), Some(true));
        assert_eq!(p.ask_pin(&req(), &OpContext::new()).map(|_| ()).unwrap_err().code(), ErrorCode::Cancelled);
        assert_eq!(p.ask_pin(&req(), &OpContext::new()).map(|_| ()).unwrap_err().code(), ErrorCode::Cancelled);
        p.notify("hello");
        assert!(
            p.show_qr(&QrRequest { title: "bind".into(), payload: "x".into(), expires_in: Duration::from_secs(1800) }).is_ok()
        );
        assert_eq!(p.pin_requests().len(), 3);
        assert_eq!(p.seen().len(), 6);
        assert_eq!(p.remaining(), 0);
    }
}
