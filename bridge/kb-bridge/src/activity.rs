//! Request liveness: cancellation, and the idle timeout that pauses while the user is
//! being asked something.
//!
//! A request times out after `request_timeout` **without progress**: bytes moving on
//! its streams count as progress, and so does any open PIN or consent dialog (the
//! [`WatchedPrompter`] counts them), so a user who takes a minute to find the PIN
//! is not punished, and a 1 GB upload that keeps moving never times out — but a
//! request stuck on a dead medium or a stalled stream does.

use kb_service::prompter::{ConfirmRequest, ConsentAnswer, ConsentRequest, PinRequest, Prompter, QrRequest};
use kb_token::{OpContext, OpStatus, StopReason};
use kb_types::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts dialogs open right now.
#[derive(Debug, Default)]
pub struct PromptWatch {
    open: AtomicUsize,
}

impl PromptWatch {
    /// Whether some dialog is open.
    pub fn any_open(&self) -> bool {
        self.open.load(Ordering::Acquire) > 0
    }
}

struct Open<'a>(&'a PromptWatch);

impl<'a> Open<'a> {
    fn new(w: &'a PromptWatch) -> Self {
        w.open.fetch_add(1, Ordering::AcqRel);
        Open(w)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A [`Prompter`] that tells a [`PromptWatch`] while it is asking.
pub struct WatchedPrompter {
    inner: Arc<dyn Prompter>,
    watch: Arc<PromptWatch>,
}

impl WatchedPrompter {
    /// Wrap a prompter.
    pub fn new(inner: Arc<dyn Prompter>, watch: Arc<PromptWatch>) -> Self {
        WatchedPrompter { inner, watch }
    }
}

impl Prompter for WatchedPrompter {
    fn ask_pin(&self, req: &PinRequest, ctx: &OpContext) -> kb_service::Result<Pin> {
        let _o = Open::new(&self.watch);
        self.inner.ask_pin(req, ctx)
    }

    fn confirm(&self, req: &ConfirmRequest) -> kb_service::Result<bool> {
        let _o = Open::new(&self.watch);
        self.inner.confirm(req)
    }

    fn show_qr(&self, req: &QrRequest) -> kb_service::Result<()> {
        let _o = Open::new(&self.watch);
        self.inner.show_qr(req)
    }

    fn notify(&self, message: &str) {
        self.inner.notify(message);
    }

    fn consent(&self, req: &ConsentRequest) -> kb_service::Result<ConsentAnswer> {
        let _o = Open::new(&self.watch);
        self.inner.consent(req)
    }
}

/// Why a request was stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The client sent `cancel`, closed or aborted the stream, or went away.
    Cancelled,
    /// No progress for too long.
    TimedOut,
}

/// One request's shared state between its worker and the connection: stop flag,
/// last-progress time, and the operation context the device service gets (so a stop
/// withdraws an open PIN dialog and reaches the medium).
#[derive(Debug)]
pub struct RequestState {
    start: Instant,
    last_progress_ms: AtomicU64,
    stop: AtomicU8,
    /// Set by whoever answers the request: its worker, or the connection when the
    /// request was stopped (the worker's later result is then dropped).
    answered: AtomicBool,
    ctx: OpContext,
    operation_timeout: Duration,
}

impl Default for RequestState {
    fn default() -> Self {
        RequestState {
            start: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
            stop: AtomicU8::new(0),
            answered: AtomicBool::new(false),
            ctx: OpContext::new(),
            operation_timeout: kb_service::devices::DEFAULT_OPERATION_TIMEOUT,
        }
    }
}

impl RequestState {
    /// A fresh state.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A fresh state whose operation context reports its status to `status`; each
    /// private-key operation of the request may take `operation_timeout` (counted from
    /// when that operation starts, so a long upload before it does not use it up).
    pub fn with_status(operation_timeout: Duration, status: impl Fn(&OpStatus) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(RequestState { ctx: OpContext::with(None, status), operation_timeout, ..Self::default() })
    }

    /// How long each private-key operation of the request may take.
    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// The operation context handed to the device service.
    pub fn context(&self) -> &OpContext {
        &self.ctx
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Record progress (stream bytes moved, a dialog open).
    pub fn progress(&self) {
        self.last_progress_ms.store(self.now_ms(), Ordering::Release);
    }

    /// Milliseconds since the last progress.
    pub fn idle_ms(&self) -> u64 {
        self.now_ms().saturating_sub(self.last_progress_ms.load(Ordering::Acquire))
    }

    /// Ask the worker to stop (first reason wins).
    pub fn stop(&self, why: Stop) {
        let v = match why {
            Stop::Cancelled => 1,
            Stop::TimedOut => 2,
        };
        let _ = self.stop.compare_exchange(0, v, Ordering::AcqRel, Ordering::Acquire);
        self.ctx.stop(match why {
            Stop::Cancelled => StopReason::Cancelled,
            Stop::TimedOut => StopReason::DeadlineExceeded,
        });
    }

    /// Take the right to answer the request: true exactly once, for the first caller.
    pub fn claim_answer(&self) -> bool {
        !self.answered.swap(true, Ordering::AcqRel)
    }

    /// Whether and why the request was stopped.
    pub fn stopped(&self) -> Option<Stop> {
        match self.stop.load(Ordering::Acquire) {
            1 => Some(Stop::Cancelled),
            2 => Some(Stop::TimedOut),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_service::prompter::ScriptedPrompter;

    #[test]
    fn watch_counts_open_dialogs() {
        struct Peek(Arc<PromptWatch>);
        impl Prompter for Peek {
            fn ask_pin(&self, _: &PinRequest, _: &OpContext) -> kb_service::Result<Pin> {
                assert!(self.0.any_open(), "the dialog counts as open while it asks");
                Err(kb_service::ServiceError::Cancelled)
            }
            fn confirm(&self, _: &ConfirmRequest) -> kb_service::Result<bool> {
                Ok(self.0.any_open())
            }
            fn show_qr(&self, _: &QrRequest) -> kb_service::Result<()> {
                Ok(())
            }
            fn notify(&self, _: &str) {}
        }
        let w = Arc::new(PromptWatch::default());
        let p = WatchedPrompter::new(Arc::new(Peek(w.clone())), w.clone());
        let c = ConfirmRequest { title: "t".into(), message: "m".into(), client: "c".into(), device_id: None };
        assert_eq!(p.confirm(&c).ok(), Some(true));
        assert!(!w.any_open());
        let _ = WatchedPrompter::new(Arc::new(ScriptedPrompter::new()), w.clone()).confirm(&c);
        assert!(!w.any_open(), "closed again after an error");
    }

    #[test]
    fn first_stop_reason_wins() {
        let s = RequestState::new();
        assert_eq!(s.stopped(), None);
        s.stop(Stop::TimedOut);
        s.stop(Stop::Cancelled);
        assert_eq!(s.stopped(), Some(Stop::TimedOut));
    }

    #[test]
    fn a_request_is_answered_once() {
        let s = RequestState::new();
        assert!(s.claim_answer());
        assert!(!s.claim_answer());
        assert!(!s.claim_answer());
    }
}
