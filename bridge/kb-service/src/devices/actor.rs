//! One device's actor: owns the medium, runs one command at a time, asks for the PIN,
//! keeps the PIN cache honest and writes the audit log.

use super::{DeviceEvent, MAX_PIN_PROMPTS, Shared, removed};
use crate::audit::{AuditRecord, AuditSink, AuthType};
use crate::pin_cache::PinCache;
use crate::prompter::{PinRequest, Prompter};
use crate::{Result, ServiceError};
use kb_crypto::rsa::RsaPadding;
use kb_crypto::{PublicKey, SignatureScheme};
use kb_pki::Certificate;
use kb_token::{Session, Token, TokenError};
use kb_types::{ContainerInfo, DeviceInfo, ErrorCode, HasErrorCode, KeyUsage, Pin, PinKind};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// A command: a closure run on the actor thread with the actor.
pub(crate) type Job = Box<dyn FnOnce(&mut Actor) + Send>;

/// What the actor remembers about a key slot (public data only), so a signature does not
/// re-read and re-parse the certificate every time. Dropped after every write.
pub(crate) struct SlotMeta {
    pub(crate) public: PublicKey,
    pub(crate) certificate: Option<Certificate>,
    description: String,
}

/// `subject SN=serial`, as the audit log records a certificate.
pub(crate) fn describe(c: &Certificate) -> String {
    format!("{} SN={}", c.subject(), c.serial_hex())
}

fn slot_key(container: &str, usage: KeyUsage) -> (String, KeyUsage) {
    let usage = if usage == KeyUsage::Encrypt { KeyUsage::Encrypt } else { KeyUsage::Sign };
    (container.to_string(), usage)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// The actor's state; lives on its thread.
pub(crate) struct Actor {
    info: DeviceInfo,
    generation: u64,
    token: Option<Box<dyn Token>>,
    gone: bool,
    shared: Weak<Shared>,
    prompter: Arc<dyn Prompter>,
    audit: Arc<dyn AuditSink>,
    cache: Arc<PinCache>,
    slots: HashMap<(String, KeyUsage), SlotMeta>,
}

/// The actor loop: run jobs until every sender is gone. After the medium is found gone,
/// queued jobs still run (and fail with `DeviceRemoved`) so no caller waits forever.
pub(crate) fn run(mut actor: Actor, rx: Receiver<Job>) {
    while let Some(job) = next_job(&rx) {
        if catch_unwind(AssertUnwindSafe(|| job(&mut actor))).is_err() {
            // A driver panicked: its state is unknown, so the medium is treated as gone
            // (the caller got `Internal`); re-inserting it starts a fresh actor.
            actor.gone = true;
        }
        if actor.gone && actor.token.is_some() {
            actor.token = None;
            actor.slots.clear();
            actor.cache.clear_device(&actor.info.id);
            if let Some(shared) = actor.shared.upgrade() {
                shared.device_gone(&actor.info.id, actor.generation);
            }
        }
    }
}

/// After a job, the actor polls for the next one this long before it sleeps: a caller
/// signing a batch sends its next command within microseconds, and waking a sleeping
/// thread costs more than the poll (see `benches/service_overhead.rs`).
const LINGER: Duration = Duration::from_micros(50);

fn next_job(rx: &Receiver<Job>) -> Option<Job> {
    let start = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if start.elapsed() < LINGER => std::thread::yield_now(),
            Err(TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

/// How a private-key operation obtained its PIN, for the audit record.
struct PinOutcome {
    auth: AuthType,
}

impl Actor {
    pub(crate) fn new(
        info: DeviceInfo,
        generation: u64,
        token: Box<dyn Token>,
        shared: Weak<Shared>,
        prompter: Arc<dyn Prompter>,
        audit: Arc<dyn AuditSink>,
        cache: Arc<PinCache>,
    ) -> Self {
        Actor { info, generation, token: Some(token), gone: false, shared, prompter, audit, cache, slots: HashMap::new() }
    }

    /// The medium was found gone; the actor stops using it after the current job.
    pub(crate) fn mark_gone(&mut self) {
        self.gone = true;
    }

    pub(crate) fn token(&mut self) -> Result<&mut (dyn Token + 'static)> {
        self.token.as_deref_mut().ok_or_else(removed)
    }

    fn emit(&self, ev: DeviceEvent) {
        if let Some(shared) = self.shared.upgrade() {
            shared.emit(ev);
        }
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

    fn record(&self, operation: &str, client: &str, certificate: String, error: Option<ErrorCode>, auth: AuthType) -> Result<()> {
        self.audit.record(&AuditRecord {
            time_ms: now_ms(),
            client: client.to_string(),
            operation: operation.to_string(),
            device_id: self.info.id.clone(),
            device_type: self.info.transport,
            device_model: self.info.model.clone(),
            certificate,
            ok: error.is_none(),
            error,
            auth,
        })
    }

    /// Write the audit record for an operation's outcome. A failed operation reports its
    /// own error; a successful one whose record cannot be written reports the audit error.
    fn audited<T>(&self, operation: &str, client: &str, certificate: String, r: Result<T>, auth: AuthType) -> Result<T> {
        let logged = self.record(operation, client, certificate, r.as_ref().err().map(HasErrorCode::code), auth);
        let v = r?;
        logged?;
        Ok(v)
    }

    /// Get a PIN (cache, else prompt), log in, run `f` in the session. Remembers a PIN
    /// only once the medium accepted it; forgets a remembered PIN the medium rejects.
    fn with_session<T>(
        &mut self,
        operation: &str,
        client: &str,
        outcome: &mut PinOutcome,
        f: impl FnOnce(&mut dyn Session) -> kb_token::Result<T>,
    ) -> Result<T> {
        let Actor { info, token, prompter, cache, .. } = self;
        let token = token.as_deref_mut().ok_or_else(removed)?;
        let id = &info.id;
        let mut cached = cache.get(id);
        let mut retries: Option<u8> = None;
        let mut previous_wrong = false;
        let mut cached_pin_rejected = false;
        let mut prompts = 0;
        loop {
            let (pin, from_cache): (Pin, bool) = match cached.take() {
                Some(p) => (p, true),
                None => {
                    let retries_left = match retries {
                        Some(r) => Some(r),
                        None => match token.pin_info(PinKind::User) {
                            Ok(i) if i.locked => return Err(TokenError::PinLocked.into()),
                            Ok(i) => Some(i.retries_left),
                            Err(TokenError::NotSupported(_)) => None,
                            Err(e) => return Err(e.into()),
                        },
                    };
                    if prompts == MAX_PIN_PROMPTS {
                        return Err(TokenError::WrongPin { retries_left: retries_left.unwrap_or(0) }.into());
                    }
                    prompts += 1;
                    let req = PinRequest {
                        device_id: id.clone(),
                        device_label: info.label.clone(),
                        kind: PinKind::User,
                        retries_left,
                        operation: operation.to_string(),
                        client: client.to_string(),
                        previous_wrong,
                        cached_pin_rejected,
                    };
                    match prompter.ask_pin(&req) {
                        Ok(pin) => (pin, false),
                        // Giving up after a wrong PIN: the outcome is that wrong PIN, with
                        // the tries left — what a bridge client or script needs to know —
                        // not a mere cancellation.
                        Err(ServiceError::Cancelled) if previous_wrong => {
                            return Err(match retries_left {
                                Some(n) => TokenError::WrongPin { retries_left: n },
                                None => TokenError::WrongPinRetriesUnknown,
                            }
                            .into());
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            outcome.auth = if from_cache { AuthType::PinCached } else { AuthType::PinEntered };
            match token.login(&pin) {
                Ok(mut session) => {
                    if !from_cache {
                        // Accepted by the medium: now it may be remembered.
                        cache.insert(id, pin);
                    }
                    return Ok(f(session.as_mut())?);
                }
                Err(TokenError::WrongPin { retries_left }) => {
                    if from_cache {
                        cache.clear_device(id);
                        cached_pin_rejected = true;
                    } else {
                        previous_wrong = true;
                    }
                    if retries_left == 0 {
                        // That was the last try: the PIN is locked now. Asking again would
                        // only show the user a prompt that cannot succeed.
                        cache.clear_device(id);
                        return Err(TokenError::PinLocked.into());
                    }
                    retries = Some(retries_left);
                }
                Err(TokenError::WrongPinRetriesUnknown) => {
                    // A medium that does not count out loud (PKCS#11): ask again, showing
                    // no count; its own flags lock it when it must.
                    if from_cache {
                        cache.clear_device(id);
                        cached_pin_rejected = true;
                    } else {
                        previous_wrong = true;
                    }
                }
                Err(e) => {
                    if e == TokenError::PinLocked {
                        cache.clear_device(id);
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// A private-key operation that changes nothing on the medium.
    fn private_op<T>(
        &mut self,
        operation: &str,
        client: &str,
        container: &str,
        usage: KeyUsage,
        f: impl FnOnce(&mut dyn Session) -> kb_token::Result<T>,
    ) -> Result<T> {
        let mut outcome = PinOutcome { auth: AuthType::None };
        let (description, r) = match self.slot(container, usage) {
            Ok(m) => {
                let d = m.description.clone();
                (d, self.with_session(operation, client, &mut outcome, f))
            }
            Err(e) => (String::new(), Err(e)),
        };
        self.audited(operation, client, description, r, outcome.auth)
    }

    pub(crate) fn sign_digest(
        &mut self,
        container: &str,
        usage: KeyUsage,
        scheme: &SignatureScheme,
        digest: &[u8],
        client: &str,
    ) -> Result<Vec<u8>> {
        self.private_op("sign", client, container, usage, |s| s.sign_digest(container, usage, scheme, digest))
    }

    pub(crate) fn sign_message(
        &mut self,
        container: &str,
        usage: KeyUsage,
        scheme: &SignatureScheme,
        message: &[u8],
        client: &str,
    ) -> Result<Vec<u8>> {
        let digest = self.slot(container, usage).and_then(|m| Ok(m.public.message_digest(scheme, message)?));
        match digest {
            Ok(d) => self.sign_digest(container, usage, scheme, &d, client),
            Err(e) => {
                let described = self.describe_slot(container, usage);
                self.audited("sign", client, described, Err(e), AuthType::None)
            }
        }
    }

    pub(crate) fn decrypt(
        &mut self,
        container: &str,
        usage: KeyUsage,
        ciphertext: &[u8],
        padding: RsaPadding,
        client: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.private_op("decrypt", client, container, usage, |s| s.decrypt(container, usage, ciphertext, padding))
    }

    /// A private-key operation that writes to the medium: the slot cache is dropped
    /// afterwards, and `CertificatesChanged` goes out on success when `certificates`.
    pub(crate) fn write_op<T>(
        &mut self,
        operation: &str,
        client: &str,
        certificate: String,
        certificates: bool,
        f: impl FnOnce(&mut dyn Session) -> kb_token::Result<T>,
    ) -> Result<T> {
        let mut outcome = PinOutcome { auth: AuthType::None };
        let r = self.with_session(operation, client, &mut outcome, f);
        self.slots.clear();
        if r.is_ok() && certificates {
            self.emit(DeviceEvent::CertificatesChanged(self.info.id.clone()));
        }
        self.audited(operation, client, certificate, r, outcome.auth)
    }

    pub(crate) fn change_pin(&mut self, kind: PinKind, old: &Pin, new: &Pin, client: &str) -> Result<()> {
        let r = self.token().and_then(|t| Ok(t.change_pin(kind, old, new)?));
        if r.is_ok() && kind == PinKind::User {
            self.cache.clear_device(&self.info.id);
        }
        self.audited("change_pin", client, String::new(), r, AuthType::PinEntered)
    }

    pub(crate) fn unblock_pin(&mut self, so_pin: &Pin, new_user_pin: &Pin, client: &str) -> Result<()> {
        let r = self.token().and_then(|t| Ok(t.unblock_pin(so_pin, new_user_pin)?));
        if r.is_ok() {
            self.cache.clear_device(&self.info.id);
        }
        self.audited("unblock_pin", client, String::new(), r, AuthType::PinEntered)
    }
}
