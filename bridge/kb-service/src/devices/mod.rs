//! The device manager: the one owner of every key medium.
//!
//! - Transports are added with [`DeviceManager::add_transport`] — file keys, PC/SC,
//!   PKCS#11, SKF, BLE and phones all the same way. Their watch streams are merged into
//!   one [`DeviceEvent`] stream ([`DeviceManager::subscribe`]).
//! - Each medium gets **one actor thread** that owns its `Box<dyn Token>` and runs the
//!   commands sent to it one after the other, so a medium never sees two commands at
//!   once and a slow card blocks nobody else.
//! - Private-key operations get the PIN from the [`PinCache`] or the [`Prompter`] (with
//!   the tries left and whether the last try was wrong, asking again after a wrong PIN —
//!   at most [`MAX_PIN_PROMPTS`] times per operation — until it is right, locked, or
//!   cancelled), log in, run, remember the PIN only once the medium accepted it, and
//!   write one [`AuditRecord`] whether they succeeded or not.
//! - A medium pulled out mid-operation fails that operation with `DeviceRemoved`; its
//!   actor ends, a `Removed` event goes out, and every other medium keeps working.
//!
//! PINs: for signing, decryption and every other private-key operation the PIN is
//! asked for *inside* the device's actor and never crosses a channel. PIN change and
//! unblock take the PINs as [`Pin`] arguments (the desktop's or terminal's own dialog
//! collects old, new and repeated PIN and checks they agree); they travel to the actor
//! inside a closure, which has no `Debug` and cannot be logged, and [`Pin`] itself is
//! zeroized on drop and prints as `REDACTED`.

mod actor;
mod signer;

pub use signer::{DeviceDecrypter, DeviceSigner};

use crate::audit::AuditSink;
use crate::pin_cache::{Clock, PinCache, PinCachePolicy, SystemClock};
use crate::prompter::Prompter;
use crate::{Result, ServiceError};
use actor::{Actor, Job};
use kb_crypto::rsa::RsaPadding;
use kb_crypto::{PublicKey, SignatureScheme};
use kb_pki::Certificate;
use kb_token::{TokenError, Transport, TransportEvent};
use kb_types::{
    Algorithm, ContainerInfo, DeviceId, DeviceInfo, ErrorCode, HasErrorCode, KeyUsage, Pin, PinInfo, PinKind, SealInfo,
    TransportKind,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// At most this many PIN prompts per operation; after that the operation fails with
/// the last `WrongPin` (the medium's own counter keeps counting).
pub const MAX_PIN_PROMPTS: usize = 3;

/// A caller polls for its answer this long before it sleeps: most software-key
/// operations finish within it, and waking a sleeping thread costs ~10% of an SM2
/// signature (see `benches/service_overhead.rs`). Polling yields the CPU each time.
const REPLY_SPIN: Duration = Duration::from_micros(300);

/// How often a transport watcher thread checks whether the manager is still alive.
const WATCH_POLL: Duration = Duration::from_millis(250);

/// What callers (desktop, bridge, CLI) hear about media.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceEvent {
    /// A medium is present and ready for commands.
    Added(DeviceInfo),
    /// A medium went away (pulled out, or found gone during an operation).
    Removed(DeviceId),
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
    generation: u64,
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
            TransportEvent::EnumerationComplete => self.lock().mark_enumerated(index),
            TransportEvent::Error(message) => self.emit(DeviceEvent::TransportError { transport: transport.kind(), message }),
        }
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
        let actor = Actor::new(
            info.clone(),
            generation,
            token,
            Arc::downgrade(self),
            Arc::clone(&self.prompter),
            Arc::clone(&self.audit),
            Arc::clone(&self.cache),
        );
        let spawned = std::thread::Builder::new().name(format!("kb-device {id}")).spawn(move || actor::run(actor, rx));
        if let Err(e) = spawned {
            return fail(&e);
        }
        let mut s = self.lock();
        // A second `Added` for a present id is a re-insertion: the old actor ends when
        // its sender is dropped here.
        s.devices.insert(id, DeviceEntry { info: info.clone(), tx, generation });
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

    /// Present media, by id.
    pub fn devices(&self) -> Vec<DeviceInfo> {
        self.shared.lock().devices.values().map(|d| d.info.clone()).collect()
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
        let tx = self.shared.lock().devices.get(device).map(|d| d.tx.clone()).ok_or_else(|| unknown(device))?;
        let (rtx, rrx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |actor: &mut Actor| {
            let r = f(actor);
            if r.as_ref().err().is_some_and(|e| e.code() == ErrorCode::DeviceRemoved) {
                actor.mark_gone();
            }
            let _ = rtx.send(r);
        });
        tx.send(job).map_err(|_| removed())?;
        drop(tx);
        let start = Instant::now();
        loop {
            match rrx.try_recv() {
                Ok(r) => return r,
                Err(mpsc::TryRecvError::Empty) if start.elapsed() < REPLY_SPIN => std::thread::yield_now(),
                Err(_) => break,
            }
        }
        rrx.recv().map_err(|_| ServiceError::Internal("the device actor stopped during the operation".into()))?
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
        self.call(device, move |a| a.change_pin(kind, &old, &new, &client))
    }

    /// Unblock the user PIN with the SO PIN, setting a new user PIN.
    pub fn unblock_pin(&self, device: &DeviceId, so_pin: Pin, new_user_pin: Pin, client: &str) -> Result<()> {
        let client = client.to_string();
        self.call(device, move |a| a.unblock_pin(&so_pin, &new_user_pin, &client))
    }

    // ---- private-key operations (PIN from cache or prompt, audited) ----

    /// Sign a digest made with `public_key.hasher(scheme)` (SM2: `e = SM3(ZA ‖ M)`).
    pub fn sign_digest(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        scheme: &SignatureScheme,
        digest: &[u8],
        client: &str,
    ) -> Result<Vec<u8>> {
        let (container, scheme, digest, client) = (container.to_string(), scheme.clone(), digest.to_vec(), client.to_string());
        self.call(device, move |a| a.sign_digest(&container, usage, &scheme, &digest, &client))
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
        client: &str,
    ) -> Result<Vec<u8>> {
        let (container, scheme, message, client) = (container.to_string(), scheme.clone(), message.to_vec(), client.to_string());
        self.call(device, move |a| a.sign_message(&container, usage, &scheme, &message, &client))
    }

    /// Decrypt a short ciphertext (a content key) with a slot's private key.
    pub fn decrypt(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        ciphertext: &[u8],
        padding: RsaPadding,
        client: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let (container, ciphertext, client) = (container.to_string(), ciphertext.to_vec(), client.to_string());
        self.call(device, move |a| a.decrypt(&container, usage, &ciphertext, padding, &client))
    }

    /// Create an empty container.
    pub fn create_container(&self, device: &DeviceId, name: &str, client: &str) -> Result<()> {
        let (name, client) = (name.to_string(), client.to_string());
        self.call(device, move |a| a.write_op("create_container", &client, String::new(), false, |s| s.create_container(&name)))
    }

    /// Delete a container with its keys and certificates.
    pub fn delete_container(&self, device: &DeviceId, name: &str, client: &str) -> Result<()> {
        let (name, client) = (name.to_string(), client.to_string());
        self.call(device, move |a| a.write_op("delete_container", &client, String::new(), true, |s| s.delete_container(&name)))
    }

    /// Generate a key pair on the medium (replacing the slot's key and certificate);
    /// returns the public key for a CSR.
    pub fn generate_key_pair(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        algorithm: Algorithm,
        client: &str,
    ) -> Result<PublicKey> {
        let (container, client) = (container.to_string(), client.to_string());
        self.call(device, move |a| {
            a.write_op("keygen", &client, String::new(), true, |s| s.generate_key_pair(&container, usage, algorithm))
        })
    }

    /// Install a certificate (DER) for a slot; it must match the slot's key pair.
    pub fn import_certificate(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        der: &[u8],
        client: &str,
    ) -> Result<()> {
        let (container, der, client) = (container.to_string(), der.to_vec(), client.to_string());
        let described = Certificate::from_der(&der).map(|c| actor::describe(&c)).unwrap_or_default();
        self.call(device, move |a| {
            a.write_op("import_certificate", &client, described, true, |s| s.import_certificate(&container, usage, &der))
        })
    }

    /// Remove a slot's certificate (the key pair stays).
    pub fn delete_certificate(&self, device: &DeviceId, container: &str, usage: KeyUsage, client: &str) -> Result<()> {
        let (container, client) = (container.to_string(), client.to_string());
        self.call(device, move |a| {
            let described = a.describe_slot(&container, usage);
            a.write_op("delete_certificate", &client, described, true, |s| s.delete_certificate(&container, usage))
        })
    }

    /// Store or replace a seal image.
    pub fn write_seal(&self, device: &DeviceId, seal_id: &str, name: &str, mime: &str, image: &[u8], client: &str) -> Result<()> {
        let (seal_id, name, mime, image, client) =
            (seal_id.to_string(), name.to_string(), mime.to_string(), image.to_vec(), client.to_string());
        self.call(device, move |a| {
            a.write_op("write_seal", &client, String::new(), false, |s| s.write_seal(&seal_id, &name, &mime, &image))
        })
    }

    /// Delete a seal image.
    pub fn delete_seal(&self, device: &DeviceId, seal_id: &str, client: &str) -> Result<()> {
        let (seal_id, client) = (seal_id.to_string(), client.to_string());
        self.call(device, move |a| a.write_op("delete_seal", &client, String::new(), false, |s| s.delete_seal(&seal_id)))
    }

    // ---- kb-pki adapters ----

    /// A [`kb_pki::Signer`] over a device slot, with the key's default scheme (SM2 with
    /// the default ID, RSA PKCS#1 SHA-256, ECDSA SHA-256). CSRs, certificates and CMS
    /// SignedData built with it are signed on the medium, through the PIN cache/prompt
    /// and the audit log, as `client`.
    pub fn signer(&self, device: &DeviceId, container: &str, usage: KeyUsage, client: &str) -> Result<DeviceSigner> {
        let (public, certificate) = {
            let container = container.to_string();
            self.call(device, move |a| a.slot(&container, usage).map(|m| (m.public.clone(), m.certificate.clone())))?
        };
        Ok(DeviceSigner::new(self.clone(), device.clone(), container, usage, client, public, certificate))
    }

    /// A [`kb_pki::cms::KeyDecrypter`] over a device slot that has a certificate (the
    /// encryption slot, or `Both`), to open digital envelopes with the device key.
    pub fn decrypter(&self, device: &DeviceId, container: &str, usage: KeyUsage, client: &str) -> Result<DeviceDecrypter> {
        let certificate = self
            .certificate(device, container, usage, client)?
            .ok_or_else(|| TokenError::NotFound(format!("certificate for the {usage} key pair in container {container}")))?;
        Ok(DeviceDecrypter::new(self.clone(), device.clone(), container, usage, client, certificate))
    }
}

fn unknown(device: &DeviceId) -> ServiceError {
    ServiceError::UnknownDevice(device.to_string())
}
