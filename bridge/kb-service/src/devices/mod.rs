//! The device manager: the one owner of every key medium.
//!
//! - Transports are added with [`DeviceManager::add_transport`] — file keys, PC/SC,
//!   PKCS#11, SKF, BLE and phones all the same way. Their watch streams are merged into
//!   one [`DeviceEvent`] stream ([`DeviceManager::subscribe`]).
//! - Each medium gets **one actor thread** that owns its `Box<dyn Token>` and runs the
//!   commands sent to it one after the other, so a medium never sees two commands at
//!   once and a slow card blocks nobody else. A medium that is software in this process
//!   (a file key) is also run by the caller itself while its actor is idle — still one
//!   command at a time, without the round trip to the actor's thread.
//! - Private-key operations carry a [`Caller`]: who asks and the operation's
//!   [`OpContext`] (cancellation, deadline, status). A medium that verifies the user itself
//!   is never asked for a PIN by the PC; otherwise the PIN comes from the [`PinCache`]
//!   (scoped to the client that typed it) or the [`Prompter`] (with the tries left, the
//!   client, the operation and the certificate; asking again after a wrong PIN — at most
//!   [`MAX_PIN_PROMPTS`] times — until it is right, locked, or cancelled). The prompt runs
//!   on the caller's thread, so the medium keeps answering reads while it is open. Every
//!   signature a medium returns is verified before it leaves the service. One
//!   [`AuditRecord`] is written per operation, with how the user was verified.
//! - Cancelling the context (a bridge `cancel`, a closed connection, the desktop's cancel
//!   button) or passing its deadline withdraws an open PIN dialog and reaches the medium
//!   (its driver watches the context); the caller gets `cancelled`, `operation_timed_out`,
//!   or — when the request had reached the medium and no answer came within a short grace
//!   — `outcome_unknown`. A PIN typed after a cancel never reaches a medium.
//! - Link state: a transport may report a medium `Offline` (known, out of reach) and
//!   `Online` again; it stays listed ([`DeviceManager::media`]), private-key operations on
//!   it fail at once with `medium_offline`, and it works again without a restart.
//! - A medium pulled out mid-operation fails that operation with `DeviceRemoved`; its
//!   actor ends, a `Removed` event goes out, and every other medium keeps working.
//!
//! PINs: a typed PIN travels from the prompt to the device's actor inside a closure,
//! which has no `Debug` and cannot be logged; [`Pin`] itself is zeroized on drop and
//! prints as `REDACTED`. PIN change and unblock take the PINs as [`Pin`] arguments (the
//! desktop's or terminal's own dialog collects old, new and repeated PIN).

mod actor;
mod private;
mod signer;

pub use signer::{DeviceDecrypter, DeviceSigner};

use crate::audit::{AuditSink, AuthType};
use crate::pin_cache::{Clock, PinCache, PinCachePolicy, SystemClock};
use crate::prompter::Prompter;
use crate::{Result, ServiceError};
use actor::{Actor, ActorCell, Job};
use kb_crypto::rsa::RsaPadding;
use kb_crypto::{PublicKey, SignatureScheme};
use kb_pki::Certificate;
use kb_token::{OpContext, TokenError, Transport, TransportEvent};
use kb_types::{
    Algorithm, ContainerInfo, DeviceId, DeviceInfo, ErrorCode, HasErrorCode, KeyUsage, Pin, PinInfo, PinKind, SealInfo,
    TransportKind,
};
use private::{Describe, PrivateOp, check_signature};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// At most this many PIN prompts per operation; after that the operation fails with
/// the last `WrongPin` (the medium's own counter keeps counting).
pub const MAX_PIN_PROMPTS: usize = 3;

/// How often a transport watcher thread checks whether the manager is still alive.
const WATCH_POLL: Duration = Duration::from_millis(250);

/// The deadline of a private-key operation whose caller set none (PIN prompt included).
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// After an operation is stopped while its request is on the medium, how long the
/// medium (which watches the same context) gets to answer before the caller is told
/// `outcome_unknown`.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Who asks for an operation — `cli`, `desktop`, a web origin, a native tool — the
/// request's [`OpContext`], and how long each private-key operation (PIN dialog and
/// medium) may take: every operation runs in a [child](OpContext::child) of the context
/// with that timeout, counted from when the operation starts (not from when the caller
/// was made: hashing or uploading a large file first does not use it up). A plain client
/// name converts into a caller with a fresh context and [`DEFAULT_OPERATION_TIMEOUT`].
/// A requester that knows the scene (a bid tool's "bid opening") declares it on the
/// context ([`OpContext::with_purpose`]); the service completes the purpose with the
/// client, the operation and the certificate before the medium is called.
#[derive(Clone, Debug)]
pub struct Caller {
    client: String,
    ctx: OpContext,
    timeout: Duration,
}

impl Caller {
    /// `client` asking, with this context, each operation bounded by
    /// [`DEFAULT_OPERATION_TIMEOUT`].
    pub fn new(client: &str, ctx: OpContext) -> Self {
        Caller { client: client.to_string(), ctx, timeout: DEFAULT_OPERATION_TIMEOUT }
    }

    /// Each private-key operation bounded by `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The context one operation runs in (see [`Caller`]).
    pub(crate) fn operation_context(&self) -> OpContext {
        self.ctx.child(self.timeout)
    }

    /// Who asks.
    pub fn client(&self) -> &str {
        &self.client
    }

    /// The operation's context.
    pub fn context(&self) -> &OpContext {
        &self.ctx
    }
}

impl From<&str> for Caller {
    fn from(client: &str) -> Self {
        Caller::new(client, OpContext::new())
    }
}

impl From<&String> for Caller {
    fn from(client: &String) -> Self {
        Caller::from(client.as_str())
    }
}

impl From<String> for Caller {
    fn from(client: String) -> Self {
        Caller::from(client.as_str())
    }
}

impl From<&Caller> for Caller {
    fn from(c: &Caller) -> Self {
        c.clone()
    }
}

/// A known medium and whether it is reachable now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownMedium {
    /// The medium.
    pub info: DeviceInfo,
    /// Reachable now (false: known but out of reach — a phone or BLE key that
    /// disconnected).
    pub online: bool,
}

/// What callers (desktop, bridge, CLI) hear about media.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceEvent {
    /// A medium is present and ready for commands.
    Added(DeviceInfo),
    /// A medium went away (pulled out, or found gone during an operation).
    Removed(DeviceId),
    /// A known medium is out of reach (its link dropped); it stays listed.
    Offline(DeviceId),
    /// A medium reported `Offline` is reachable again.
    Online(DeviceId),
    /// Every transport added so far has reported the media present at its start. Sent
    /// again if a transport added later completes too.
    EnumerationComplete,
    /// Certificates or key pairs on a medium changed (import, delete, key generation).
    CertificatesChanged(DeviceId),
    /// A transport failed, or a medium it reported could not be opened.
    TransportError {
        /// Which transport.
        transport: TransportKind,
        /// What went wrong (no secrets: transport messages only).
        message: String,
    },
}

struct DeviceEntry {
    info: DeviceInfo,
    tx: Sender<Job>,
    actor: Arc<ActorCell>,
    generation: u64,
    online: bool,
}

struct TransportSlot {
    kind: TransportKind,
    enumerated: bool,
}

#[derive(Default)]
struct State {
    devices: BTreeMap<DeviceId, DeviceEntry>,
    subscribers: Vec<Sender<DeviceEvent>>,
    transports: Vec<TransportSlot>,
}

impl State {
    fn emit(&mut self, ev: DeviceEvent) {
        self.subscribers.retain(|s| s.send(ev.clone()).is_ok());
    }

    fn all_enumerated(&self) -> bool {
        self.transports.iter().all(|t| t.enumerated)
    }

    fn mark_enumerated(&mut self, index: usize) {
        let Some(t) = self.transports.get_mut(index) else { return };
        if t.enumerated {
            return;
        }
        t.enumerated = true;
        if self.all_enumerated() {
            self.emit(DeviceEvent::EnumerationComplete);
        }
    }
}

pub(crate) struct Shared {
    prompter: Arc<dyn Prompter>,
    prompt_gate: private::PromptGate,
    audit: Arc<dyn AuditSink>,
    cache: Arc<PinCache>,
    state: Mutex<State>,
    generations: AtomicU64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The PIN cache is cleared on exit.
        self.cache.clear();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn emit(&self, ev: DeviceEvent) {
        self.lock().emit(ev);
    }

    /// An actor found its medium gone: forget the device (unless it was already
    /// replaced by a newer insertion) and tell everyone.
    pub(crate) fn device_gone(&self, id: &DeviceId, generation: u64) {
        let mut s = self.lock();
        if s.devices.get(id).is_some_and(|d| d.generation == generation) {
            s.devices.remove(id);
            self.cache.clear_device(id);
            s.emit(DeviceEvent::Removed(id.clone()));
        }
    }

    fn on_event(self: &Arc<Self>, index: usize, transport: &dyn Transport, ev: TransportEvent) {
        match ev {
            TransportEvent::Added(info) => self.open(transport, info),
            TransportEvent::Removed(id) => {
                let mut s = self.lock();
                if s.devices.remove(&id).is_some() {
                    self.cache.clear_device(&id);
                    s.emit(DeviceEvent::Removed(id));
                }
            }
            TransportEvent::Offline(id) => self.set_online(&id, false),
            TransportEvent::Online(id) => self.set_online(&id, true),
            TransportEvent::EnumerationComplete => self.lock().mark_enumerated(index),
            TransportEvent::Error(message) => self.emit(DeviceEvent::TransportError { transport: transport.kind(), message }),
        }
    }

    fn set_online(&self, id: &DeviceId, online: bool) {
        let mut s = self.lock();
        let Some(d) = s.devices.get_mut(id) else { return };
        if d.online == online {
            return;
        }
        d.online = online;
        if !online {
            self.cache.clear_device(id);
        }
        s.emit(if online { DeviceEvent::Online(id.clone()) } else { DeviceEvent::Offline(id.clone()) });
    }

    fn open(self: &Arc<Self>, transport: &dyn Transport, info: DeviceInfo) {
        let id = info.id.clone();
        let fail = |e: &dyn std::fmt::Display| {
            self.emit(DeviceEvent::TransportError { transport: transport.kind(), message: format!("cannot open {id}: {e}") });
        };
        let token = match transport.open(&id) {
            Ok(t) => t,
            Err(e) => return fail(&e),
        };
        let generation = self.generations.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel::<Job>();
        let actor = ActorCell::new(Actor::new(info.clone(), generation, token, Arc::downgrade(self), Arc::clone(&self.audit)));
        let cell = Arc::clone(&actor);
        let spawned = std::thread::Builder::new().name(format!("kb-device {id}")).spawn(move || actor::run(cell, rx));
        if let Err(e) = spawned {
            return fail(&e);
        }
        let mut s = self.lock();
        // A second `Added` for a present id is a re-insertion: the old actor ends when
        // its sender is dropped here.
        s.devices.insert(id, DeviceEntry { info: info.clone(), tx, actor, generation, online: true });
        s.emit(DeviceEvent::Added(info));
    }
}

fn watch_loop(weak: Weak<Shared>, index: usize, transport: Arc<dyn Transport>, rx: Receiver<TransportEvent>) {
    loop {
        match rx.recv_timeout(WATCH_POLL) {
            Ok(ev) => match weak.upgrade() {
                Some(shared) => shared.on_event(index, transport.as_ref(), ev),
                None => return,
            },
            Err(RecvTimeoutError::Timeout) => {
                if weak.strong_count() == 0 {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                // The transport stopped watching: never wait for its enumeration again.
                if let Some(shared) = weak.upgrade() {
                    shared.lock().mark_enumerated(index);
                }
                return;
            }
        }
    }
}

/// A job that panicked, or was dropped unrun because its actor ended.
fn actor_lost() -> ServiceError {
    ServiceError::Internal("the device actor stopped during the operation".into())
}

fn removed() -> ServiceError {
    ServiceError::Token(TokenError::Removed)
}

/// The device manager. Cheap to clone: clones share the same devices, cache and actors.
/// When the last clone is dropped, every actor ends and the PIN cache is cleared.
#[derive(Clone)]
pub struct DeviceManager {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DeviceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.shared.lock();
        f.debug_struct("DeviceManager")
            .field("transports", &s.transports.iter().map(|t| t.kind).collect::<Vec<_>>())
            .field("devices", &s.devices.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl DeviceManager {
    /// A manager with no transports yet.
    pub fn new(prompter: Arc<dyn Prompter>, audit: Arc<dyn AuditSink>, policy: PinCachePolicy) -> Self {
        Self::with_clock(prompter, audit, policy, Arc::new(SystemClock::new()))
    }

    /// The same with the PIN cache on an injected clock (tests).
    pub fn with_clock(
        prompter: Arc<dyn Prompter>,
        audit: Arc<dyn AuditSink>,
        policy: PinCachePolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        DeviceManager {
            shared: Arc::new(Shared {
                prompter,
                prompt_gate: private::PromptGate::default(),
                audit,
                cache: Arc::new(PinCache::with_clock(policy, clock)),
                state: Mutex::new(State::default()),
                generations: AtomicU64::new(1),
            }),
        }
    }

    /// Start watching a transport. Its media show up as `Added` events as it reports them.
    pub fn add_transport(&self, transport: Arc<dyn Transport>) -> Result<()> {
        let rx = transport.watch()?;
        let index = {
            let mut s = self.shared.lock();
            s.transports.push(TransportSlot { kind: transport.kind(), enumerated: false });
            s.transports.len() - 1
        };
        let weak = Arc::downgrade(&self.shared);
        std::thread::Builder::new()
            .name(format!("kb-watch {}", transport.kind().name()))
            .spawn(move || watch_loop(weak, index, transport, rx))?;
        Ok(())
    }

    /// The event stream. A new subscriber first hears `Added` for every present medium
    /// and `EnumerationComplete` if enumeration is already done, then every change.
    pub fn subscribe(&self) -> Receiver<DeviceEvent> {
        let (tx, rx) = mpsc::channel();
        let mut s = self.shared.lock();
        for d in s.devices.values() {
            let _ = tx.send(DeviceEvent::Added(d.info.clone()));
            if !d.online {
                let _ = tx.send(DeviceEvent::Offline(d.info.id.clone()));
            }
        }
        if !s.transports.is_empty() && s.all_enumerated() {
            let _ = tx.send(DeviceEvent::EnumerationComplete);
        }
        s.subscribers.push(tx);
        rx
    }

    /// Wait until every transport added so far has enumerated (true), or `timeout`
    /// passed (false). With no transports, true at once. For the CLI.
    pub fn wait_enumerated(&self, timeout: Duration) -> bool {
        if self.shared.lock().all_enumerated() {
            return true;
        }
        let rx = self.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(DeviceEvent::EnumerationComplete) => return true,
                Ok(_) => {}
                Err(_) => return self.shared.lock().all_enumerated(),
            }
        }
    }

    /// Known media (online or offline), by id.
    pub fn devices(&self) -> Vec<DeviceInfo> {
        self.shared.lock().devices.values().map(|d| d.info.clone()).collect()
    }

    /// Known media with their link state, by id.
    pub fn media(&self) -> Vec<KnownMedium> {
        self.shared.lock().devices.values().map(|d| KnownMedium { info: d.info.clone(), online: d.online }).collect()
    }

    /// Whether a known medium is reachable now (false for unknown media too).
    pub fn is_online(&self, device: &DeviceId) -> bool {
        self.shared.lock().devices.get(device).is_some_and(|d| d.online)
    }

    /// Whether a medium can be asked now: `Removed` when it is no longer known (pulled
    /// out while the caller waited), `Offline` when it is known but its link is down.
    pub(crate) fn reachable(&self, device: &DeviceId) -> std::result::Result<(), TokenError> {
        match self.shared.lock().devices.get(device) {
            None => Err(TokenError::Removed),
            Some(d) if !d.online => Err(TokenError::Offline),
            Some(_) => Ok(()),
        }
    }

    /// One present medium.
    pub fn device(&self, device: &DeviceId) -> Result<DeviceInfo> {
        self.shared.lock().devices.get(device).map(|d| d.info.clone()).ok_or_else(|| unknown(device))
    }

    /// The PIN cache (to change its policy or clear it).
    pub fn pin_cache(&self) -> &PinCache {
        &self.shared.cache
    }

    /// Run `f` on the device's actor and wait for its answer.
    fn call<T: Send + 'static>(&self, device: &DeviceId, f: impl FnOnce(&mut Actor) -> Result<T> + Send + 'static) -> Result<T> {
        self.call_in(device, &OpContext::new(), f)
    }

    /// Run `f` on the device's actor and wait for its answer or the context's stop:
    /// stopped before the actor started it → `cancelled` / `operation_timed_out` at once
    /// (the job, when it runs, finds the context stopped); stopped while it runs → the
    /// medium gets [`STOP_GRACE`] to answer, then `outcome_unknown`. A medium in this
    /// process whose actor is idle runs `f` here instead (its calls are bounded and wait
    /// for nobody, so there is nothing to abandon).
    fn call_in<T: Send + 'static>(
        &self,
        device: &DeviceId,
        ctx: &OpContext,
        f: impl FnOnce(&mut Actor) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        enum Msg<T> {
            Done(Result<T>),
            Stopped(kb_token::StopReason),
        }
        let (tx, cell) = self
            .shared
            .lock()
            .devices
            .get(device)
            .map(|d| (d.tx.clone(), Arc::clone(&d.actor)))
            .ok_or_else(|| unknown(device))?;
        let (rtx, rrx) = mpsc::sync_channel::<Msg<T>>(2);
        let reached = Arc::new(AtomicBool::new(false));
        /// Answers the caller exactly once: with the job's result, or — when the job
        /// panicked or was dropped unrun (the actor ended) — with an internal error.
        struct Reply<T>(Option<mpsc::SyncSender<Msg<T>>>);
        impl<T> Reply<T> {
            fn send(mut self, r: Result<T>) {
                if let Some(tx) = self.0.take() {
                    let _ = tx.try_send(Msg::Done(r));
                }
            }
        }
        impl<T> Drop for Reply<T> {
            fn drop(&mut self) {
                if let Some(tx) = self.0.take() {
                    let _ = tx.try_send(Msg::Done(Err(actor_lost())));
                }
            }
        }
        let lost = actor_lost;
        let mut job: Job = {
            let (reply, reached) = (Reply(Some(rtx.clone())), Arc::clone(&reached));
            Box::new(move |actor: &mut Actor| {
                reached.store(true, Ordering::Release);
                let r = f(actor);
                if r.as_ref().err().is_some_and(|e| e.code() == ErrorCode::DeviceRemoved) {
                    actor.mark_gone();
                }
                reply.send(r);
            })
        };
        if cell.in_process() {
            // Stopped before it started: the same answer the actor's caller gets.
            if let Some(why) = ctx.stopped() {
                return Err(TokenError::from(why).into());
            }
            match cell.run_here_if_idle(job) {
                Ok(()) => {
                    return match rrx.try_recv() {
                        Ok(Msg::Done(r)) => r,
                        _ => Err(lost()),
                    };
                }
                Err(queue_it) => job = queue_it,
            }
        }
        let _stop = ctx.on_stop(move |why| {
            let _ = rtx.try_send(Msg::Stopped(why));
        });
        cell.send(&tx, job).map_err(|_| removed())?;
        drop(tx);
        // No spin-wait before sleeping: with the real audit log and the signature check a
        // key use takes ~0.7 ms, and polling for it measured no faster (docs/benchmarks.md).
        let first = loop {
            // The deadline is enforced here: it fires the context's wakers (a PIN
            // dialog, a remote medium) and this wait gets `Stopped`.
            match ctx.remaining() {
                None => break rrx.recv().map_err(|_| lost())?,
                Some(left) => match rrx.recv_timeout(left) {
                    Ok(m) => break m,
                    Err(mpsc::RecvTimeoutError::Timeout) => ctx.stop(kb_token::StopReason::DeadlineExceeded),
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Err(lost()),
                },
            }
        };
        match first {
            Msg::Done(r) => r,
            Msg::Stopped(why) if !reached.load(Ordering::Acquire) => Err(TokenError::from(why).into()),
            Msg::Stopped(_) => match rrx.recv_timeout(STOP_GRACE) {
                Ok(Msg::Done(r)) => r,
                Ok(Msg::Stopped(_)) | Err(_) => Err(TokenError::OutcomeUnknown.into()),
            },
        }
    }

    // ---- public data (no PIN, not audited) ----

    /// Containers with their key slots and certificates (read fresh from the medium).
    pub fn containers(&self, device: &DeviceId, _client: &str) -> Result<Vec<ContainerInfo>> {
        self.call(device, |a| a.containers())
    }

    /// PIN state.
    pub fn pin_info(&self, device: &DeviceId, kind: PinKind, _client: &str) -> Result<PinInfo> {
        self.call(device, move |a| Ok(a.token()?.pin_info(kind)?))
    }

    /// The public key of a slot.
    pub fn public_key(&self, device: &DeviceId, container: &str, usage: KeyUsage, _client: &str) -> Result<PublicKey> {
        let container = container.to_string();
        self.call(device, move |a| a.slot(&container, usage).map(|m| m.public.clone()))
    }

    /// The certificate installed for a slot, if any.
    pub fn certificate(&self, device: &DeviceId, container: &str, usage: KeyUsage, _client: &str) -> Result<Option<Certificate>> {
        let container = container.to_string();
        self.call(device, move |a| a.slot(&container, usage).map(|m| m.certificate.clone()))
    }

    /// Seal images on the medium.
    pub fn seals(&self, device: &DeviceId, _client: &str) -> Result<Vec<SealInfo>> {
        self.call(device, |a| Ok(a.token()?.seals()?))
    }

    /// One seal image.
    pub fn read_seal(&self, device: &DeviceId, seal_id: &str, _client: &str) -> Result<Vec<u8>> {
        let seal_id = seal_id.to_string();
        self.call(device, move |a| Ok(a.token()?.read_seal(&seal_id)?))
    }

    // ---- PIN management (PINs as arguments, audited) ----

    /// Change the user or SO PIN. The caller's dialog collects both PINs.
    pub fn change_pin(&self, device: &DeviceId, kind: PinKind, old: Pin, new: Pin, client: &str) -> Result<()> {
        let client = client.to_string();
        let cache = Arc::clone(&self.shared.cache);
        self.call(device, move |a| {
            let r = a.token().and_then(|t| Ok(t.change_pin(kind, &old, &new)?));
            if r.is_ok() && kind == PinKind::User {
                cache.clear_device(&a.info.id);
            }
            a.audited("change_pin", &client, String::new(), r, AuthType::PinEntered)
        })
    }

    /// Unblock the user PIN with the SO PIN, setting a new user PIN.
    pub fn unblock_pin(&self, device: &DeviceId, so_pin: Pin, new_user_pin: Pin, client: &str) -> Result<()> {
        let client = client.to_string();
        let cache = Arc::clone(&self.shared.cache);
        self.call(device, move |a| {
            let r = a.token().and_then(|t| Ok(t.unblock_pin(&so_pin, &new_user_pin)?));
            if r.is_ok() {
                cache.clear_device(&a.info.id);
            }
            a.audited("unblock_pin", &client, String::new(), r, AuthType::PinEntered)
        })
    }

    // ---- private-key operations (user verified, audited, cancellable) ----

    /// Sign a digest made with `public_key.hasher(scheme)` (SM2: `e = SM3(ZA ‖ M)`). The
    /// signature is verified against the slot's public key before it is returned.
    pub fn sign_digest(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        scheme: &SignatureScheme,
        digest: &[u8],
        caller: impl Into<Caller>,
    ) -> Result<Vec<u8>> {
        let digest = digest.to_vec();
        self.sign(device, container, usage, scheme, caller.into(), move |_| Ok(digest.clone()))
    }

    /// Sign a short message: hashed (with SM2's ZA) on the device's actor, the digest
    /// signed on the medium. For big content, hash it in a stream with
    /// `public_key(..).hasher(scheme)` and call [`Self::sign_digest`].
    pub fn sign_message(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        scheme: &SignatureScheme,
        message: &[u8],
        caller: impl Into<Caller>,
    ) -> Result<Vec<u8>> {
        let (message, s2) = (message.to_vec(), scheme.clone());
        self.sign(device, container, usage, scheme, caller.into(), move |public| Ok(public.message_digest(&s2, &message)?))
    }

    fn sign(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        scheme: &SignatureScheme,
        caller: Caller,
        digest: impl Fn(&PublicKey) -> Result<Vec<u8>> + Send + Sync + 'static,
    ) -> Result<Vec<u8>> {
        let (c1, c2, s1, s2) = (container.to_string(), container.to_string(), scheme.clone(), scheme.clone());
        let op = PrivateOp::new(
            "sign",
            Describe::Slot(container.to_string(), usage),
            move |a: &mut Actor| {
                let public = a.slot(&c1, usage)?.public.clone();
                let d = digest(&public)?;
                Ok((public, d))
            },
            move |s, (_, d): &(PublicKey, Vec<u8>)| s.sign_digest(&c2, usage, &s1, d),
        )
        .checked(move |(public, d), sig, info| check_signature(public, &s2, d, sig, info));
        self.private_op(device, caller, op)
    }

    /// Decrypt a short ciphertext (a content key) with a slot's private key.
    pub fn decrypt(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        ciphertext: &[u8],
        padding: RsaPadding,
        caller: impl Into<Caller>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let (c1, c2, ciphertext) = (container.to_string(), container.to_string(), ciphertext.to_vec());
        let op = PrivateOp::new(
            "decrypt",
            Describe::Slot(container.to_string(), usage),
            // The slot must exist before the PIN is used (a clear `not_found`).
            move |a: &mut Actor| a.slot(&c1, usage).map(|_| ()),
            move |s, _: &()| s.decrypt(&c2, usage, &ciphertext, padding),
        );
        self.private_op(device, caller.into(), op)
    }

    fn write<T: Send + 'static>(
        &self,
        device: &DeviceId,
        operation: &'static str,
        describe: Describe,
        certificates: bool,
        caller: Caller,
        run: impl Fn(&mut dyn kb_token::Session) -> kb_token::Result<T> + Send + Sync + 'static,
    ) -> Result<T> {
        let op = PrivateOp::new(operation, describe, |_: &mut Actor| Ok(()), move |s, _: &()| run(s)).writing(certificates);
        self.private_op(device, caller, op)
    }

    /// Create an empty container.
    pub fn create_container(&self, device: &DeviceId, name: &str, caller: impl Into<Caller>) -> Result<()> {
        let name = name.to_string();
        self.write(device, "create_container", Describe::Nothing, false, caller.into(), move |s| s.create_container(&name))
    }

    /// Delete a container with its keys and certificates.
    pub fn delete_container(&self, device: &DeviceId, name: &str, caller: impl Into<Caller>) -> Result<()> {
        let name = name.to_string();
        self.write(device, "delete_container", Describe::Nothing, true, caller.into(), move |s| s.delete_container(&name))
    }

    /// Generate a key pair on the medium (replacing the slot's key and certificate);
    /// returns the public key for a CSR.
    pub fn generate_key_pair(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        algorithm: Algorithm,
        caller: impl Into<Caller>,
    ) -> Result<PublicKey> {
        self.keygen(device, container, usage, algorithm, caller.into(), false)
    }

    /// Create a container and generate a key pair in it, as one operation on the medium
    /// (one PIN, one audit record).
    pub fn generate_key_pair_in_new_container(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        algorithm: Algorithm,
        caller: impl Into<Caller>,
    ) -> Result<PublicKey> {
        self.keygen(device, container, usage, algorithm, caller.into(), true)
    }

    fn keygen(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        algorithm: Algorithm,
        caller: Caller,
        new_container: bool,
    ) -> Result<PublicKey> {
        let container = container.to_string();
        self.write(device, "keygen", Describe::Nothing, true, caller, move |s| {
            if new_container {
                s.create_container(&container)?;
            }
            s.generate_key_pair(&container, usage, algorithm)
        })
    }

    /// Install a certificate (DER) for a slot; it must match the slot's key pair.
    pub fn import_certificate(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        der: &[u8],
        caller: impl Into<Caller>,
    ) -> Result<()> {
        let (container, der) = (container.to_string(), der.to_vec());
        let described = Certificate::from_der(&der).map(|c| actor::describe(&c)).unwrap_or_default();
        self.write(device, "import_certificate", Describe::Given(described), true, caller.into(), move |s| {
            s.import_certificate(&container, usage, &der)
        })
    }

    /// Import an SM2 encryption key pair delivered in an envelope (GM/T 0009) into
    /// `container`'s encryption slot with its certificate; the medium opens it with the
    /// container's signing key ([`kb_token::Session::import_enveloped_key`]).
    pub fn import_enveloped_key(
        &self,
        device: &DeviceId,
        container: &str,
        envelope: kb_token::Sm2EnvelopedKey,
        certificate: &[u8],
        caller: impl Into<Caller>,
    ) -> Result<()> {
        let (container, der) = (container.to_string(), certificate.to_vec());
        let described = Certificate::from_der(&der).map(|c| actor::describe(&c)).unwrap_or_default();
        self.write(device, "import_enveloped_key", Describe::Given(described), true, caller.into(), move |s| {
            s.import_enveloped_key(&container, &envelope, Some(&der))
        })
    }

    /// Remove a slot's certificate (the key pair stays).
    pub fn delete_certificate(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        caller: impl Into<Caller>,
    ) -> Result<()> {
        let c = container.to_string();
        self.write(device, "delete_certificate", Describe::Slot(c.clone(), usage), true, caller.into(), move |s| {
            s.delete_certificate(&c, usage)
        })
    }

    /// Store or replace a seal image.
    pub fn write_seal(
        &self,
        device: &DeviceId,
        seal_id: &str,
        name: &str,
        mime: &str,
        image: &[u8],
        caller: impl Into<Caller>,
    ) -> Result<()> {
        let (seal_id, name, mime, image) = (seal_id.to_string(), name.to_string(), mime.to_string(), image.to_vec());
        self.write(device, "write_seal", Describe::Nothing, false, caller.into(), move |s| {
            s.write_seal(&seal_id, &name, &mime, &image)
        })
    }

    /// Delete a seal image.
    pub fn delete_seal(&self, device: &DeviceId, seal_id: &str, caller: impl Into<Caller>) -> Result<()> {
        let seal_id = seal_id.to_string();
        self.write(device, "delete_seal", Describe::Nothing, false, caller.into(), move |s| s.delete_seal(&seal_id))
    }

    // ---- kb-pki adapters ----

    /// A [`kb_pki::Signer`] over a device slot, with the key's default scheme (SM2 with
    /// the default ID, RSA PKCS#1 SHA-256, ECDSA SHA-256). CSRs, certificates and CMS
    /// SignedData built with it are signed on the medium, through the PIN cache/prompt
    /// and the audit log, as `client`.
    pub fn signer(&self, device: &DeviceId, container: &str, usage: KeyUsage, caller: impl Into<Caller>) -> Result<DeviceSigner> {
        let (public, certificate) = {
            let container = container.to_string();
            self.call(device, move |a| a.slot(&container, usage).map(|m| (m.public.clone(), m.certificate.clone())))?
        };
        Ok(DeviceSigner::new(self.clone(), device.clone(), container, usage, caller.into(), public, certificate))
    }

    /// A [`kb_pki::cms::KeyDecrypter`] over a device slot that has a certificate (the
    /// encryption slot, or `Both`), to open digital envelopes with the device key.
    pub fn decrypter(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        caller: impl Into<Caller>,
    ) -> Result<DeviceDecrypter> {
        let caller = caller.into();
        let certificate = self
            .certificate(device, container, usage, caller.client())?
            .ok_or_else(|| TokenError::NotFound(format!("certificate for the {usage} key pair in container {container}")))?;
        Ok(DeviceDecrypter::new(self.clone(), device.clone(), container, usage, caller, certificate))
    }
}

fn unknown(device: &DeviceId) -> ServiceError {
    ServiceError::UnknownDevice(device.to_string())
}
