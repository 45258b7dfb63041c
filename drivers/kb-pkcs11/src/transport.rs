//! Tokens of one PKCS#11 module coming and going.
//!
//! The watcher polls the module's token list (`C_GetSlotList(tokenPresent)` +
//! `C_GetTokenInfo`) and reports the difference. It does not block in
//! `C_WaitForSlotEvent`: a blocked call can only be woken by `C_Finalize`, which would
//! tear the module down for every other user in the process, and many modules (SoftHSM2
//! among them) do not implement it. Polling at 0.5 s matches pcscd's own cadence.

use crate::module::Pkcs11Module;
use crate::token::Pkcs11Token;
use kb_token::{PolledMedia, Result, Token, Transport, TransportEvent};
use kb_types::{DeviceId, TransportKind};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Default interval between two looks at the token list.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);

/// The media of one PKCS#11 module (a path from the settings). The watch thread stops
/// when the transport is dropped, or at its next event once the receiver is dropped.
#[derive(Debug)]
pub struct Pkcs11Transport {
    path: PathBuf,
    poll: Duration,
    /// Watch threads hold a `Weak` to this and stop once the transport is dropped.
    alive: Arc<()>,
}

impl Pkcs11Transport {
    /// A transport over the module at `path`. Nothing is loaded until [`Transport::watch`]
    /// or [`Transport::open`]: a bad path is reported there, with the stable code
    /// `module_load_failed`, and never stops other transports.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Pkcs11Transport { path: path.as_ref().to_path_buf(), poll: DEFAULT_POLL, alive: Arc::new(()) }
    }

    /// Look at the token list every `poll` instead of [`DEFAULT_POLL`].
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The module path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Transport for Pkcs11Transport {
    fn kind(&self) -> TransportKind {
        TransportKind::Pkcs11
    }

    /// Reports present tokens, then `EnumerationComplete`, then changes. A module that
    /// cannot be loaded (or a token list that cannot be read) is reported as one `Error`
    /// event starting with the error code's name, and retried every poll.
    fn watch(&self) -> Result<Receiver<TransportEvent>> {
        let (tx, rx) = channel();
        let (path, poll, alive) = (self.path.clone(), self.poll, Arc::downgrade(&self.alive));
        std::thread::Builder::new()
            .name("kb-pkcs11-watch".into())
            .spawn(move || watch_loop(&path, poll, &alive, &tx))
            .map_err(|e| kb_token::TokenError::Io(format!("cannot start the PKCS#11 watcher: {e}")))?;
        Ok(rx)
    }

    fn open(&self, id: &DeviceId) -> Result<Box<dyn Token>> {
        Ok(Box::new(Pkcs11Token::open(Pkcs11Module::load(&self.path)?, id)?))
    }
}

fn watch_loop(path: &Path, poll: Duration, alive: &Weak<()>, tx: &Sender<TransportEvent>) {
    let mut media = PolledMedia::default();
    let mut enumerated = false;
    loop {
        let events =
            media.update(Pkcs11Module::load(path).and_then(|m| m.tokens()).map(|t| t.into_iter().map(|(_, i)| i).collect()));
        for ev in events {
            if tx.send(ev).is_err() {
                return;
            }
        }
        if !enumerated {
            enumerated = true;
            if tx.send(TransportEvent::EnumerationComplete).is_err() {
                return;
            }
        }
        // Sleep in short steps so a dropped transport ends the thread promptly.
        let mut slept = Duration::ZERO;
        while slept < poll {
            let step = Duration::from_millis(50).min(poll - slept);
            std::thread::sleep(step);
            slept += step;
            if alive.upgrade().is_none() {
                return;
            }
        }
    }
}
