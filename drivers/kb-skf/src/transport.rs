//! Media of one SKF module coming and going.
//!
//! The watcher lists the module's devices and applications every [`DEFAULT_POLL`]. When the
//! module exports `SKF_WaitForDevEvent` and `SKF_CancelWaitForDevEvent`, a second thread
//! blocks in the wait and wakes the watcher at once on every event, so insertion and
//! removal are seen without waiting for the next poll; polling stays as the fallback
//! (vendor event functions are often unreliable). Dropping the transport cancels the wait.

use crate::module::SkfModule;
use crate::token::SkfToken;
use kb_token::{PolledMedia, Result, Token, TokenError, Transport, TransportEvent};
use kb_types::{DeviceId, TransportKind};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Default interval between two looks at the device list.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);

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
        let (wake_tx, wake) = channel::<()>();
        let mut wake_tx = Some(wake_tx);
        loop {
            let events = media.update(SkfModule::load(&self.path).and_then(|m| {
                if let Some(w) = wake_tx.take() {
                    self.start_events(&m, w);
                }
                Ok(m.media()?.into_iter().map(|m| m.info).collect())
            }));
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
            // Wait for the next poll or an event, in short steps so a dropped transport
            // ends the thread promptly.
            let mut waited = Duration::ZERO;
            while waited < self.poll {
                let step = Duration::from_millis(50).min(self.poll - waited);
                match wake.recv_timeout(step) {
                    Ok(()) => break,
                    Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => waited += step,
                }
                if self.alive.upgrade().is_none() {
                    return;
                }
            }
            if self.alive.upgrade().is_none() {
                return;
            }
        }
    }

    /// Block in `SKF_WaitForDevEvent` on a thread of its own and wake the watcher on every
    /// event. A wait that fails (cancelled, or not really supported) ends the thread;
    /// polling carries on.
    fn start_events(&self, m: &Arc<SkfModule>, wake: Sender<()>) {
        if !m.has_device_events() {
            return;
        }
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.clone());
        let (m, alive) = (m.clone(), self.alive.clone());
        let _ = std::thread::Builder::new().name("kb-skf-events".into()).spawn(move || {
            while let Some(Ok(_event)) = m.api().wait_for_dev_event() {
                if alive.upgrade().is_none() || wake.send(()).is_err() {
                    return;
                }
            }
        });
    }
}
