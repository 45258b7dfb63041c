//! Media of one SKF module coming and going.
//!
//! The watcher lists the module's devices and applications every [`DEFAULT_POLL`]. When the
//! module exports `SKF_WaitForDevEvent` and `SKF_CancelWaitForDevEvent`, a second thread
//! blocks in the wait and wakes the watcher on every event, so insertion and removal are
//! seen without waiting for the next poll; polling stays as the fallback (vendor event
//! functions are often unreliable). Dropping the transport cancels the wait.
//!
//! Many vendor modules do not implement waiting and return from `SKF_WaitForDevEvent` at
//! once. So that such a module cannot turn an idle service into a busy loop:
//! - wake-ups are coalesced: at most one is ever pending ([`Wake`]), however many events
//!   arrive while the watcher enumerates;
//! - the watcher re-enumerates at most once per [`MIN_RESCAN`] on wake-ups;
//! - a wait that returns within [`QUICK_RETURN`] is followed by an exponential back-off
//!   (from 50 ms, at most 1 s) before the next wait, and after [`MAX_QUICK_WAITS`] such
//!   returns in a row the events thread stops: the module is watched by polling alone.

use crate::module::SkfModule;
use crate::token::SkfToken;
use kb_token::{PolledMedia, Result, Token, TokenError, Transport, TransportEvent};
use kb_types::{DeviceId, TransportKind};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// Default interval between two looks at the device list.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);

/// Shortest time between two enumerations caused by device events.
pub const MIN_RESCAN: Duration = Duration::from_millis(200);

/// A `SKF_WaitForDevEvent` that returns sooner than this "returned at once". Generous:
/// a module that really waits blocks until a key is inserted or removed, and on a busy
/// machine even a wait that returns at once can take tens of milliseconds; a module
/// whose wait only ever lasts a fraction of a second adds nothing to polling.
pub const QUICK_RETURN: Duration = Duration::from_secs(1);

/// After this many waits in a row that returned at once, the module's events are not
/// used any more (polling carries on).
pub const MAX_QUICK_WAITS: u32 = 8;

/// How long a step of any wait is, so that a dropped transport ends its threads promptly.
const STEP: Duration = Duration::from_millis(50);

/// A wake-up for the watcher. At most one is ever pending: notifying while one is
/// pending changes nothing, and taking it clears it.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    /// Ask the watcher to look again (merged with a wake-up already pending).
    pub(crate) fn notify(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_one();
    }

    /// Take the pending wake-up, waiting at most `timeout` for one.
    pub(crate) fn take(&self, timeout: Duration) -> bool {
        let guard = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (mut pending, _) = self.cv.wait_timeout_while(guard, timeout, |p| !*p).unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *pending)
    }
}

/// Sleep `d` in short steps; `false` as soon as the transport is gone.
fn sleep_while_alive(d: Duration, alive: &Weak<()>) -> bool {
    let until = Instant::now() + d;
    loop {
        if alive.upgrade().is_none() {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep(STEP.min(until - now));
    }
}

/// The pause after the `n`-th wait in a row that returned at once (`n` ≥ 1).
fn back_off(n: u32) -> Duration {
    Duration::from_millis(50u64 << n.saturating_sub(1).min(5)).min(Duration::from_secs(1))
}

/// The media of one SKF module (a path from the settings). Nothing is loaded until
/// [`Transport::watch`] or [`Transport::open`]: a bad path is reported there, with the
/// stable code `module_load_failed`, and never stops other transports.
#[derive(Debug)]
pub struct SkfTransport {
    path: PathBuf,
    poll: Duration,
    /// Watch threads hold a `Weak` to this and stop once the transport is dropped.
    alive: Arc<()>,
    /// The module, once a watch loaded it (to cancel a blocked event wait on drop).
    loaded: Arc<Mutex<Option<Arc<SkfModule>>>>,
}

impl SkfTransport {
    /// A transport over the module at `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        SkfTransport {
            path: path.as_ref().to_path_buf(),
            poll: DEFAULT_POLL,
            alive: Arc::new(()),
            loaded: Arc::new(Mutex::new(None)),
        }
    }

    /// Look at the device list every `poll` instead of [`DEFAULT_POLL`].
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The module path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SkfTransport {
    fn drop(&mut self) {
        if let Some(m) = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            m.api().cancel_wait_for_dev_event();
        }
    }
}

impl Transport for SkfTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Skf
    }

    /// Reports present media, then `EnumerationComplete`, then changes. A module that
    /// cannot be loaded (or whose device list cannot be read) is reported as one `Error`
    /// event starting with the error code's name, and retried every poll.
    fn watch(&self) -> Result<Receiver<TransportEvent>> {
        let (tx, rx) = channel();
        let watcher = Watcher {
            path: self.path.clone(),
            poll: self.poll,
            alive: Arc::downgrade(&self.alive),
            loaded: self.loaded.clone(),
            tx,
        };
        std::thread::Builder::new()
            .name("kb-skf-watch".into())
            .spawn(move || watcher.run())
            .map_err(|e| TokenError::Io(format!("cannot start the SKF watcher: {e}")))?;
        Ok(rx)
    }

    fn open(&self, id: &DeviceId) -> Result<Box<dyn Token>> {
        Ok(Box::new(SkfToken::open(SkfModule::load(&self.path)?, id)?))
    }
}

struct Watcher {
    path: PathBuf,
    poll: Duration,
    alive: Weak<()>,
    loaded: Arc<Mutex<Option<Arc<SkfModule>>>>,
    tx: Sender<TransportEvent>,
}

impl Watcher {
    fn run(self) {
        let mut media = PolledMedia::default();
        let mut enumerated = false;
        let wake = Arc::new(Wake::default());
        let mut events_started = false;
        loop {
            let events = media.update(SkfModule::load(&self.path).and_then(|m| {
                if !events_started {
                    events_started = true;
                    self.start_events(&m, wake.clone());
                }
                Ok(m.media()?.into_iter().map(|m| m.info).collect())
            }));
            let listed = Instant::now();
            for ev in events {
                if self.tx.send(ev).is_err() {
                    return;
                }
            }
            if !enumerated {
                enumerated = true;
                if self.tx.send(TransportEvent::EnumerationComplete).is_err() {
                    return;
                }
            }
            // Wait for the next poll or a wake-up, in short steps so a dropped transport
            // ends the thread promptly; after a wake-up, no sooner than MIN_RESCAN after
            // the last enumeration.
            loop {
                if self.alive.upgrade().is_none() {
                    return;
                }
                let left = self.poll.saturating_sub(listed.elapsed());
                if left.is_zero() {
                    break;
                }
                if wake.take(STEP.min(left)) {
                    if !sleep_while_alive(MIN_RESCAN.saturating_sub(listed.elapsed()), &self.alive) {
                        return;
                    }
                    break;
                }
            }
        }
    }

    /// Block in `SKF_WaitForDevEvent` on a thread of its own and wake the watcher on every
    /// event. A wait that fails (cancelled, or not really supported) ends the thread, and
    /// so do [`MAX_QUICK_WAITS`] waits in a row that returned at once (each followed by a
    /// growing pause); polling carries on.
    fn start_events(&self, m: &Arc<SkfModule>, wake: Arc<Wake>) {
        if !m.has_device_events() {
            return;
        }
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.clone());
        let (m, alive) = (m.clone(), self.alive.clone());
        let _ = std::thread::Builder::new().name("kb-skf-events".into()).spawn(move || {
            let mut quick = 0;
            loop {
                let started = Instant::now();
                let Some(Ok(_event)) = m.api().wait_for_dev_event() else { return };
                if alive.upgrade().is_none() {
                    return;
                }
                wake.notify();
                if started.elapsed() >= QUICK_RETURN {
                    quick = 0;
                    continue;
                }
                quick += 1;
                if quick >= MAX_QUICK_WAITS || !sleep_while_alive(back_off(quick), &alive) {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_ups_coalesce() {
        let wake = Arc::new(Wake::default());
        assert!(!wake.take(Duration::ZERO));
        let w = wake.clone();
        std::thread::spawn(move || (0..10_000).for_each(|_| w.notify())).join().unwrap();
        // Ten thousand notifications are one pending wake-up.
        assert!(wake.take(Duration::ZERO));
        assert!(!wake.take(Duration::ZERO));
        // A waiting watcher is woken by a notification from another thread.
        let w = wake.clone();
        let t = std::thread::spawn(move || w.take(Duration::from_secs(60)));
        wake.notify();
        assert!(t.join().unwrap());
    }

    #[test]
    fn back_off_grows_to_a_second() {
        let steps: Vec<u64> = (1..=MAX_QUICK_WAITS).map(|n| back_off(n).as_millis() as u64).collect();
        assert_eq!(steps, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
    }
}
