//! One device's actor: owns the medium and runs one command at a time. It never waits for
//! the user: PIN prompts run on the caller's thread (see `private.rs`), so reads of the
//! medium answer while a dialog is open.
//!
//! The actor's state sits behind a lock in an [`ActorCell`]. Its thread takes the lock
//! for each job it receives. A medium that is software in this process (a file key,
//! [`Token::in_process`]) also lets a caller run its job itself, on its own thread,
//! when nothing is queued or running: no hand-off to the actor's thread and back. The
//! lock keeps one command at a time either way, and a job queued for the thread goes
//! before any caller that arrives after it.

use super::{DeviceEvent, Shared, removed};
use crate::audit::{AuditRecord, AuditSink, AuthType};
use crate::{Result, ServiceError};
use kb_crypto::PublicKey;
use kb_pki::Certificate;
use kb_token::Token;
use kb_types::{ContainerInfo, DeviceInfo, ErrorCode, HasErrorCode, KeyUsage};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

/// A command: a closure run with the actor, on its thread (or, for an idle medium in
/// this process, on the caller's; see [`ActorCell::run_here_if_idle`]).
pub(crate) type Job = Box<dyn FnOnce(&mut Actor) + Send>;

/// What the actor remembers about a key slot (public data only), so a signature does not
/// re-read and re-parse the certificate every time. Dropped after every write.
pub(crate) struct SlotMeta {
    pub(crate) public: PublicKey,
    pub(crate) certificate: Option<Certificate>,
    pub(crate) description: String,
}

/// `subject SN=serial`, as the audit log records a certificate.
pub(crate) fn describe(c: &Certificate) -> String {
    format!("{} SN={}", c.subject(), c.serial_hex())
}

fn slot_key(container: &str, usage: KeyUsage) -> (String, KeyUsage) {
    let usage = if usage == KeyUsage::Encrypt { KeyUsage::Encrypt } else { KeyUsage::Sign };
    (container.to_string(), usage)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Write one audit record for an operation on `info`'s medium.
pub(crate) fn record(
    audit: &dyn AuditSink,
    info: &DeviceInfo,
    operation: &str,
    client: &str,
    certificate: String,
    error: Option<ErrorCode>,
    auth: AuthType,
) -> Result<()> {
    audit.record(&AuditRecord {
        time_ms: now_ms(),
        client: client.to_string(),
        operation: operation.to_string(),
        device_id: info.id.clone(),
        device_type: info.transport,
        device_model: info.model.clone(),
        certificate,
        ok: error.is_none(),
        error,
        auth,
    })
}

/// The actor's state; lives on its thread.
pub(crate) struct Actor {
    pub(crate) info: DeviceInfo,
    generation: u64,
    token: Option<Box<dyn Token>>,
    gone: bool,
    shared: Weak<Shared>,
    pub(crate) audit: Arc<dyn AuditSink>,
    slots: HashMap<(String, KeyUsage), SlotMeta>,
}

/// A medium's actor, shared by its thread and (for a medium in this process) by callers
/// that run a job themselves while it is idle. See the module documentation.
pub(crate) struct ActorCell {
    actor: Mutex<Actor>,
    /// Jobs sent to the thread and not started yet.
    queued: AtomicUsize,
    /// The medium is software in this process ([`Token::in_process`]), read when opened.
    in_process: bool,
}

impl ActorCell {
    pub(crate) fn new(actor: Actor) -> Arc<Self> {
        let in_process = actor.token.as_ref().is_some_and(|t| t.in_process());
        Arc::new(ActorCell { actor: Mutex::new(actor), queued: AtomicUsize::new(0), in_process })
    }

    fn lock(&self) -> MutexGuard<'_, Actor> {
        // A job's panic is caught inside the lock (`run_job`), so it is never poisoned;
        // if it were, the actor's own flags still say what state the medium is in.
        self.actor.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a caller may run jobs itself (see [`Self::run_here_if_idle`]).
    pub(crate) fn in_process(&self) -> bool {
        self.in_process
    }

    /// Queue `job` for the actor's thread; hands it back when the thread has ended.
    pub(crate) fn send(&self, tx: &Sender<Job>, job: Job) -> std::result::Result<(), Job> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        tx.send(job).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            e.0
        })
    }

    /// Run `job` on this thread if the medium is in this process and its actor idle:
    /// nothing queued for the thread and nothing running. Otherwise `job` is handed back,
    /// to be queued.
    pub(crate) fn run_here_if_idle(&self, job: Job) -> std::result::Result<(), Job> {
        if !self.in_process || self.queued.load(Ordering::SeqCst) != 0 {
            return Err(job);
        }
        let mut actor = match self.actor.try_lock() {
            Ok(a) => a,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(job),
        };
        // A job queued meanwhile was there first.
        if self.queued.load(Ordering::SeqCst) != 0 {
            return Err(job);
        }
        actor.run_job(job);
        Ok(())
    }
}

/// The actor loop: run jobs until every sender is gone. After the medium is found gone,
/// queued jobs still run (and fail with `DeviceRemoved`) so no caller waits forever.
pub(crate) fn run(cell: Arc<ActorCell>, rx: Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        let mut actor = cell.lock();
        cell.queued.fetch_sub(1, Ordering::SeqCst);
        actor.run_job(job);
    }
}

impl Actor {
    pub(crate) fn new(
        info: DeviceInfo,
        generation: u64,
        token: Box<dyn Token>,
        shared: Weak<Shared>,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        Actor { info, generation, token: Some(token), gone: false, shared, audit, slots: HashMap::new() }
    }

    /// Run one job. A driver that panics leaves its state unknown, so the medium is then
    /// treated as gone (the caller got `Internal`; re-inserting it starts a fresh actor).
    fn run_job(&mut self, job: Job) {
        if catch_unwind(AssertUnwindSafe(|| job(self))).is_err() {
            self.gone = true;
        }
        if self.gone && self.token.is_some() {
            self.token = None;
            self.slots.clear();
            if let Some(shared) = self.shared.upgrade() {
                shared.device_gone(&self.info.id, self.generation);
            }
        }
    }

    /// The medium was found gone; the actor stops using it after the current job.
    pub(crate) fn mark_gone(&mut self) {
        self.gone = true;
    }

    pub(crate) fn token(&mut self) -> Result<&mut (dyn Token + 'static)> {
        self.token.as_deref_mut().ok_or_else(removed)
    }

    pub(crate) fn emit(&self, ev: DeviceEvent) {
        if let Some(shared) = self.shared.upgrade() {
            shared.emit(ev);
        }
    }

    /// Forget cached slot data (after a write).
    pub(crate) fn forget_slots(&mut self) {
        self.slots.clear();
    }

    /// Containers, read fresh; the slot cache is dropped so it follows the medium.
    pub(crate) fn containers(&mut self) -> Result<Vec<ContainerInfo>> {
        self.slots.clear();
        Ok(self.token()?.containers()?)
    }

    /// Public data about a slot (cached until the next write).
    pub(crate) fn slot(&mut self, container: &str, usage: KeyUsage) -> Result<&SlotMeta> {
        let key = slot_key(container, usage);
        if !self.slots.contains_key(&key) {
            let token = self.token()?;
            let public = token.public_key(container, usage)?;
            let certificate = token
                .containers()?
                .into_iter()
                .find(|c| c.name == container)
                .and_then(|c| c.slot(usage).and_then(|s| s.certificate.clone()))
                .and_then(|der| Certificate::from_der(&der).ok());
            let description = certificate.as_ref().map(describe).unwrap_or_default();
            self.slots.insert(key.clone(), SlotMeta { public, certificate, description });
        }
        self.slots.get(&key).ok_or_else(|| ServiceError::Internal("slot cache".into()))
    }

    /// The audit description of a slot's certificate, or empty.
    pub(crate) fn describe_slot(&mut self, container: &str, usage: KeyUsage) -> String {
        self.slot(container, usage).map(|m| m.description.clone()).unwrap_or_default()
    }

    /// Write the audit record for an operation's outcome. A failed operation reports its
    /// own error; a successful one whose record cannot be written reports the audit error.
    pub(crate) fn audited<T>(
        &self,
        operation: &str,
        client: &str,
        certificate: String,
        r: Result<T>,
        auth: AuthType,
    ) -> Result<T> {
        let logged =
            record(&*self.audit, &self.info, operation, client, certificate, r.as_ref().err().map(HasErrorCode::code), auth);
        let v = r?;
        logged?;
        Ok(v)
    }
}
