//! The operation context every private-key operation and prompt carries: cancellation,
//! a deadline and status updates.
//!
//! One [`OpContext`] is made per operation by whoever starts it (a bridge request, a
//! desktop command, a CLI command) and handed down through the device service to the
//! prompter and the medium. Clones share one state:
//!
//! - [`OpContext::cancel`] stops the operation: an open PIN dialog is withdrawn (the
//!   prompter registered a waker with [`OpContext::on_stop`]), a PIN typed afterwards never
//!   reaches a medium (the service checks [`OpContext::check`] after every prompt and before
//!   every medium call), and a remote medium is told (its driver registers a waker too).
//! - The deadline bounds the whole operation, prompts included: once it passes the
//!   context reports [`TokenError::TimedOut`] and wakes the same wakers.
//! - [`OpContext::status`] reports what the operation is waiting for ("enter the PIN",
//!   "confirm on your phone", progress) to whoever listens (the desktop window, a bridge
//!   client's `operation.status` events).
//! - [`OpContext::purpose`] says who asks and why ([`Purpose`]: the client, the operation
//!   or scene, a short summary, the certificate), so a medium that shows the user what
//!   it is doing (a phone, a PIN pad with a display) can show it. Whoever starts the
//!   request may declare a scene and a summary; the device service fills in the client,
//!   the operation and the certificate before the medium is called.

use crate::TokenError;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What an operation is doing or waiting for, as reported to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpStatus {
    /// Waiting for the user to type the PIN in KeyBridge's dialog.
    WaitingForPin,
    /// Waiting for the user to verify on the medium itself: the phone, the reader's PIN
    /// pad, the BLE key's keypad (`what` names it for the message: "phone", "PIN pad").
    WaitingForMedium {
        /// Which medium, in the user's words.
        what: String,
    },
    /// The medium is working on it.
    Working,
    /// Bytes processed so far, of `total` when known.
    Progress {
        /// Done so far.
        done: u64,
        /// Total, when known.
        total: Option<u64>,
    },
}

/// Who asks for an operation and why, for a medium that shows it to the user (a phone's
/// confirmation screen). Plain text in the user's words; empty when unknown. Never a
/// secret: it is shown and may be logged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purpose {
    /// Who asks: `cli`, `desktop`, an application's name or a web origin.
    pub client: String,
    /// What for, as a stable name: a scene the requester declared (`login`,
    /// `file_signing`, `message_signing`, `encryption`, `decryption`, `bid_opening`) or
    /// else the device service's operation (`sign`, `decrypt`, …).
    pub operation: String,
    /// A short human summary ("Sign the bid for project 2026-118").
    pub summary: String,
    /// The certificate used: subject and serial.
    pub certificate: String,
}

impl Purpose {
    /// Fill the empty fields from what the device service knows (a scene or summary the
    /// requester declared is kept).
    pub fn fill_in(&mut self, client: &str, operation: &str, certificate: &str) {
        for (field, value) in [(&mut self.client, client), (&mut self.operation, operation), (&mut self.certificate, certificate)]
        {
            if field.is_empty() {
                *field = value.to_string();
            }
        }
    }
}

/// Why an operation was stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Cancelled: the user pressed cancel, the client sent `cancel` or went away.
    Cancelled,
    /// The deadline passed.
    DeadlineExceeded,
}

type Waker = Box<dyn FnOnce(StopReason) + Send>;
type StatusSink = Arc<dyn Fn(&OpStatus) + Send + Sync>;

struct State {
    stopped: Option<StopReason>,
    wakers: Vec<(u64, Waker)>,
    next_waker: u64,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    deadline: Option<Instant>,
    status: Option<StatusSink>,
    /// For a [`OpContext::child`]: its registration with the parent (dropped with it).
    parent: Mutex<Option<WakerGuard>>,
    /// Who asks and why (see [`OpContext::purpose`]).
    purpose: Mutex<Option<Purpose>>,
}

/// Cancellation, deadline and status of one operation. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct OpContext {
    inner: Arc<Inner>,
}

impl fmt::Debug for OpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpContext").field("stopped", &self.stopped()).field("deadline", &self.inner.deadline).finish()
    }
}

impl Default for OpContext {
    fn default() -> Self {
        Self::build(None, None)
    }
}

/// Removes a waker when dropped (the operation finished; nothing to wake any more).
#[must_use = "dropping the guard unregisters the waker at once"]
pub struct WakerGuard {
    ctx: OpContext,
    id: u64,
}

impl Drop for WakerGuard {
    fn drop(&mut self) {
        self.ctx.lock().wakers.retain(|(id, _)| *id != self.id);
    }
}

impl OpContext {
    fn build(deadline: Option<Instant>, status: Option<StatusSink>) -> Self {
        OpContext {
            inner: Arc::new(Inner {
                state: Mutex::new(State { stopped: None, wakers: Vec::new(), next_waker: 0 }),
                changed: Condvar::new(),
                deadline,
                status,
                parent: Mutex::new(None),
                purpose: Mutex::new(None),
            }),
        }
    }

    /// A context for one step of this operation (one private-key operation of a longer
    /// request): stopped whenever this one is, and also `timeout` from now — the earlier
    /// of the two deadlines. Status goes to the same listener; it starts with this one's
    /// [`purpose`](Self::purpose) (a copy: setting the child's does not change this one's).
    pub fn child(&self, timeout: Duration) -> OpContext {
        let own = Instant::now().checked_add(timeout);
        let deadline = match (self.inner.deadline, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let child = Self::build(deadline, self.inner.status.clone());
        if let Some(p) = self.purpose() {
            child.set_purpose(p);
        }
        // The parent holds only a weak reference: no cycle through the guard.
        let weak = Arc::downgrade(&child.inner);
        let guard = self.on_stop(move |why| {
            if let Some(inner) = weak.upgrade() {
                OpContext { inner }.stop(why);
            }
        });
        *child.inner.parent.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
        child
    }

    /// A context nobody cancels, without deadline or status listener (tools, tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// A context whose operation must be done within `timeout` from now.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self::build(Instant::now().checked_add(timeout), None)
    }

    /// The same context shape with a deadline and a status listener. The listener is
    /// called on the thread that reports the status; it must not block.
    pub fn with(timeout: Option<Duration>, status: impl Fn(&OpStatus) + Send + Sync + 'static) -> Self {
        Self::build(timeout.and_then(|t| Instant::now().checked_add(t)), Some(Arc::new(status)))
    }

    /// Builder: who asks and why (see [`Purpose`]).
    pub fn with_purpose(self, purpose: Purpose) -> Self {
        self.set_purpose(purpose);
        self
    }

    /// Set who asks and why, for this context and its clones.
    pub fn set_purpose(&self, purpose: Purpose) {
        *self.inner.purpose.lock().unwrap_or_else(|e| e.into_inner()) = Some(purpose);
    }

    /// Who asks and why, if anyone said.
    pub fn purpose(&self) -> Option<Purpose> {
        self.inner.purpose.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stop the operation (first reason wins) and wake everything waiting on it.
    pub fn stop(&self, why: StopReason) {
        let wakers = {
            let mut s = self.lock();
            if s.stopped.is_some() {
                return;
            }
            s.stopped = Some(why);
            std::mem::take(&mut s.wakers)
        };
        self.inner.changed.notify_all();
        for (_, w) in wakers {
            w(why);
        }
    }

    /// Cancel the operation.
    pub fn cancel(&self) {
        self.stop(StopReason::Cancelled);
    }

    /// Whether and why the operation was stopped (a passed deadline counts).
    pub fn stopped(&self) -> Option<StopReason> {
        if let Some(r) = self.lock().stopped {
            return Some(r);
        }
        if self.inner.deadline.is_some_and(|d| Instant::now() >= d) {
            self.stop(StopReason::DeadlineExceeded);
            return Some(StopReason::DeadlineExceeded);
        }
        None
    }

    /// `Ok` while the operation may go on; else [`TokenError::Cancelled`] or
    /// [`TokenError::TimedOut`].
    pub fn check(&self) -> crate::Result<()> {
        match self.stopped() {
            None => Ok(()),
            Some(r) => Err(r.into()),
        }
    }

    /// Time left before the deadline (`None`: no deadline).
    pub fn remaining(&self) -> Option<Duration> {
        self.inner.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// Call `f` once when the operation is stopped (at once if it already is). The waker
    /// is removed when the guard is dropped. `f` runs on the stopping thread: it must not
    /// block (withdraw a dialog, send a cancel frame, wake a waiting thread).
    pub fn on_stop(&self, f: impl FnOnce(StopReason) + Send + 'static) -> WakerGuard {
        let already = self.stopped();
        let mut s = self.lock();
        let id = s.next_waker;
        s.next_waker += 1;
        match already.or(s.stopped) {
            Some(r) => {
                drop(s);
                f(r);
            }
            None => s.wakers.push((id, Box::new(f))),
        }
        WakerGuard { ctx: self.clone(), id }
    }

    /// Block until the operation is stopped or `timeout` passed (whichever is first; the
    /// deadline counts). Returns the stop reason, or `None` when `timeout` passed.
    pub fn wait_stopped(&self, timeout: Duration) -> Option<StopReason> {
        let until = Instant::now().checked_add(timeout);
        let mut s = self.lock();
        loop {
            if let Some(r) = s.stopped {
                return Some(r);
            }
            let now = Instant::now();
            if self.inner.deadline.is_some_and(|d| now >= d) {
                drop(s);
                self.stop(StopReason::DeadlineExceeded);
                return Some(StopReason::DeadlineExceeded);
            }
            let mut wait_until = until;
            if let Some(d) = self.inner.deadline {
                wait_until = Some(wait_until.map_or(d, |u| u.min(d)));
            }
            let Some(w) = wait_until else {
                s = self.inner.changed.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            if now >= w {
                return None;
            }
            s = self.inner.changed.wait_timeout(s, w - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Report what the operation is doing now.
    pub fn status(&self, status: OpStatus) {
        if let Some(sink) = &self.inner.status {
            sink(&status);
        }
    }
}

impl From<StopReason> for TokenError {
    fn from(r: StopReason) -> Self {
        match r {
            StopReason::Cancelled => TokenError::Cancelled,
            StopReason::DeadlineExceeded => TokenError::TimedOut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn cancel_wakes_wakers_once_and_checks_fail() {
        let ctx = OpContext::new();
        assert!(ctx.check().is_ok());
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let _g = ctx.on_stop(move |r| {
            assert_eq!(r, StopReason::Cancelled);
            h.fetch_add(1, Ordering::SeqCst);
        });
        let clone = ctx.clone();
        clone.cancel();
        clone.stop(StopReason::DeadlineExceeded);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(ctx.check(), Err(TokenError::Cancelled));
        // Registered after the stop: called at once.
        let h = hits.clone();
        let _g2 = ctx.on_stop(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn dropped_guard_unregisters() {
        let ctx = OpContext::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        drop(ctx.on_stop(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        }));
        ctx.cancel();
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn deadline_stops_and_wakes_a_waiter() {
        let ctx = OpContext::with_timeout(Duration::from_millis(20));
        // Waits for the deadline (a condition), however slow the machine is.
        assert_eq!(ctx.wait_stopped(Duration::from_secs(60)), Some(StopReason::DeadlineExceeded));
        assert_eq!(ctx.check(), Err(TokenError::TimedOut));
    }

    #[test]
    fn wait_returns_on_cancel_from_another_thread() {
        let ctx = OpContext::new();
        let c = ctx.clone();
        let t = std::thread::spawn(move || c.wait_stopped(Duration::from_secs(600)));
        ctx.cancel();
        assert_eq!(t.join().ok().flatten(), Some(StopReason::Cancelled));
        assert_eq!(OpContext::new().wait_stopped(Duration::from_millis(1)), None);
    }

    #[test]
    fn a_child_has_its_own_deadline_and_follows_its_parent() {
        let parent = OpContext::new();
        let long = parent.child(Duration::from_secs(600));
        assert!(long.remaining().is_some_and(|r| r > Duration::from_secs(500)));
        let short = parent.child(Duration::from_millis(20));
        assert_eq!(short.wait_stopped(Duration::from_secs(60)), Some(StopReason::DeadlineExceeded));
        assert_eq!(parent.stopped(), None, "a child's deadline does not stop the parent");
        parent.cancel();
        assert_eq!(long.check(), Err(TokenError::Cancelled));
        // A child of a stopped context is born stopped; a tighter parent deadline wins.
        assert_eq!(parent.child(Duration::from_secs(600)).check(), Err(TokenError::Cancelled));
        let tight = OpContext::with_timeout(Duration::from_secs(1)).child(Duration::from_secs(600));
        assert!(tight.remaining().is_some_and(|r| r <= Duration::from_secs(1)));
    }

    #[test]
    fn purpose_is_shared_by_clones_copied_to_children_and_filled_in() {
        let declared = Purpose { operation: "bid_opening".into(), summary: "Open bid 118".into(), ..Purpose::default() };
        let ctx = OpContext::new().with_purpose(declared.clone());
        assert_eq!(ctx.clone().purpose(), Some(declared.clone()));
        let child = ctx.child(Duration::from_secs(60));
        let mut p = child.purpose().unwrap();
        p.fill_in("https://bid.example", "decrypt", "CN=Zhang San, serial 01");
        child.set_purpose(p);
        let filled = child.purpose().unwrap();
        assert_eq!(filled.client, "https://bid.example");
        assert_eq!(filled.operation, "bid_opening", "a declared scene is kept");
        assert_eq!(filled.summary, "Open bid 118");
        assert_eq!(filled.certificate, "CN=Zhang San, serial 01");
        assert_eq!(ctx.purpose(), Some(declared), "the parent keeps its own");
        assert_eq!(OpContext::new().purpose(), None);
    }

    #[test]
    fn status_reaches_the_listener() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let ctx = OpContext::with(None, move |st| s.lock().unwrap().push(st.clone()));
        ctx.status(OpStatus::WaitingForPin);
        ctx.status(OpStatus::Working);
        assert_eq!(*seen.lock().unwrap(), vec![OpStatus::WaitingForPin, OpStatus::Working]);
        OpContext::new().status(OpStatus::Working);
    }
}
