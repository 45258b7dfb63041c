//! [`FileTransport`]: a directory of `*.kbkey` files seen as media that come and go.

use crate::{EXTENSION, FileToken};
use kb_token::{Result, Token, TokenError, Transport, TransportEvent};
use kb_types::{DeviceId, TransportKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

/// Default polling interval of [`FileTransport::watch`].
pub const DEFAULT_POLL: Duration = Duration::from_millis(300);

/// The file keys in one directory. `watch` reports every readable `*.kbkey` as
/// `Added`, then `EnumerationComplete`, then polls; a corrupt file is reported once as
/// `Error` (and as `Added` if it later becomes readable, e.g. when a copy finishes).
///
/// The polling thread stops when the transport is dropped, or at its next event once
/// the receiver is dropped (`std::sync::mpsc` only reports a gone receiver on `send`).
#[derive(Debug)]
pub struct FileTransport {
    dir: PathBuf,
    poll: Duration,
    /// Watch threads hold a `Weak` to this and stop once the transport is dropped.
    alive: Arc<()>,
}

impl FileTransport {
    /// Watch `dir` (it need not exist yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileTransport { dir: dir.into(), poll: DEFAULT_POLL, alive: Arc::new(()) }
    }

    /// Change the polling interval (default 300 ms).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path a device id maps to, if the id is a well-formed file-key id.
    pub fn path_of(&self, id: &DeviceId) -> Option<PathBuf> {
        let local = id.0.strip_prefix("file:")?;
        let bad = local.is_empty()
            || local == "."
            || local == ".."
            || local.starts_with('.')
            || local.chars().any(|c| c == '/' || c == '\\' || c == '\0' || c.is_control());
        if bad {
            return None;
        }
        Some(self.dir.join(format!("{local}.{EXTENSION}")))
    }
}

impl Transport for FileTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::File
    }

    fn watch(&self) -> Result<Receiver<TransportEvent>> {
        let (tx, rx) = channel();
        let watcher =
            Watcher { dir: self.dir.clone(), poll: self.poll, alive: Arc::downgrade(&self.alive), tx, known: BTreeMap::new() };
        std::thread::Builder::new()
            .name("kb-file-watch".into())
            .spawn(move || watcher.run())
            .map_err(|e| TokenError::Io(e.to_string()))?;
        Ok(rx)
    }

    fn open(&self, id: &DeviceId) -> Result<Box<dyn Token>> {
        let unknown = || TokenError::UnknownDevice(id.to_string());
        let path = self.path_of(id).ok_or_else(unknown)?;
        if !path.is_file() {
            return Err(unknown());
        }
        match FileToken::open(&path) {
            Ok(t) => Ok(Box::new(t)),
            Err(TokenError::Removed) => Err(unknown()),
            Err(e) => Err(e),
        }
    }
}

/// What the watcher knows about one file.
enum Known {
    /// Reported as `Added` with this id and serial.
    Present { id: DeviceId, serial: String, stamp: Stamp },
    /// Reported once as `Error`; retried when the file changes.
    Bad { stamp: Stamp },
}

type Stamp = (u64, Option<SystemTime>);

struct Watcher {
    dir: PathBuf,
    poll: Duration,
    alive: Weak<()>,
    tx: Sender<TransportEvent>,
    known: BTreeMap<String, Known>,
}

impl Watcher {
    fn run(mut self) {
        let mut dir_error = false;
        if self.scan(&mut dir_error).is_err() || self.tx.send(TransportEvent::EnumerationComplete).is_err() {
            return;
        }
        loop {
            // Sleep in short steps so a dropped transport ends the thread promptly.
            let mut slept = Duration::ZERO;
            while slept < self.poll {
                let step = Duration::from_millis(50).min(self.poll - slept);
                std::thread::sleep(step);
                slept += step;
                if self.alive.upgrade().is_none() {
                    return;
                }
            }
            if self.scan(&mut dir_error).is_err() {
                return; // receiver dropped
            }
        }
    }

    fn send(&self, e: TransportEvent) -> std::result::Result<(), ()> {
        self.tx.send(e).map_err(|_| ())
    }

    /// One pass over the directory. `Err` only when the receiver is gone.
    fn scan(&mut self, dir_error: &mut bool) -> std::result::Result<(), ()> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => {
                *dir_error = false;
                e
            }
            Err(e) => {
                if !*dir_error {
                    *dir_error = true;
                    self.send(TransportEvent::Error(format!("cannot read the key directory: {e}")))?;
                }
                // Everything in it is gone.
                return self.forget_missing(&BTreeSet::new());
            }
        };
        let mut present = BTreeMap::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(&format!(".{EXTENSION}")) else { continue };
            if stem.is_empty() || name.starts_with('.') {
                continue;
            }
            // Follow symlinks; skip directories and the like.
            let Ok(meta) = std::fs::metadata(e.path()) else { continue };
            if !meta.is_file() {
                continue;
            }
            present.insert(name.clone(), (e.path(), (meta.len(), meta.modified().ok())));
        }
        let names: BTreeSet<String> = present.keys().cloned().collect();
        self.forget_missing(&names)?;
        for (name, (path, stamp)) in present {
            let changed = match self.known.get(&name) {
                None => true,
                Some(Known::Present { stamp: s, .. }) | Some(Known::Bad { stamp: s }) => *s != stamp,
            };
            if changed {
                self.examine(name, &path, stamp)?;
            }
        }
        Ok(())
    }

    /// Report `Removed` for files that went away.
    fn forget_missing(&mut self, present: &BTreeSet<String>) -> std::result::Result<(), ()> {
        let gone: Vec<String> = self.known.keys().filter(|k| !present.contains(*k)).cloned().collect();
        for name in gone {
            if let Some(Known::Present { id, .. }) = self.known.remove(&name) {
                self.send(TransportEvent::Removed(id))?;
            }
        }
        Ok(())
    }

    /// A new or changed file: open it and report what changed.
    fn examine(&mut self, name: String, path: &Path, stamp: Stamp) -> std::result::Result<(), ()> {
        let opened = FileToken::open(path);
        match (self.known.remove(&name), opened) {
            (Some(Known::Present { id, serial, .. }), Ok(t)) => {
                if t.info.serial != serial {
                    // Another key now lives under the same name.
                    self.send(TransportEvent::Removed(id))?;
                    self.send(TransportEvent::Added(t.info()))?;
                }
                self.known.insert(name, Known::Present { id: t.info.id.clone(), serial: t.info.serial.clone(), stamp });
            }
            (Some(Known::Present { id, serial, .. }), Err(_)) => {
                // Damaged after it was reported (or mid-replace on a filesystem without
                // atomic rename): keep it; operations on it report the problem.
                self.known.insert(name, Known::Present { id, serial, stamp });
            }
            (_, Ok(t)) => {
                self.send(TransportEvent::Added(t.info()))?;
                self.known.insert(name, Known::Present { id: t.info.id.clone(), serial: t.info.serial.clone(), stamp });
            }
            (Some(Known::Bad { .. }), Err(_)) => {
                self.known.insert(name, Known::Bad { stamp });
            }
            (None, Err(e)) => {
                self.send(TransportEvent::Error(format!("{name}: {e}")))?;
                self.known.insert(name, Known::Bad { stamp });
            }
        }
        Ok(())
    }
}
