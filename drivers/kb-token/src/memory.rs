//! The virtual medium: a [`Token`] held entirely in memory, and a [`Transport`] that
//! tests drive by hand.
//!
//! [`MemoryToken`] behaves like a real USB key: containers with a signing and an
//! encryption slot, key generation on the "medium", certificates checked against their
//! key pair, a user PIN and an SO PIN with retry counters that lock, unblock with the SO
//! PIN, and seal images. [`MemoryTransport`] reports tokens a test [`inserts`] and
//! [`removes`] at any time, to every watcher.
//!
//! Test controls on the token (all on a shared handle, so a test keeps one while the
//! service owns another):
//! - [`MemoryToken::set_pulled`]: the medium behaves as pulled out — every call returns
//!   [`TokenError::Removed`], like a card reader whose card just went away.
//! - [`MemoryToken::set_op_delay`] and [`MemoryToken::pause_next`]: make an operation slow,
//!   or stop it half-way until the test releases it (to pull the key out mid-operation).
//! - [`MemoryToken::reentries`]: how often a call arrived while another was still running
//!   on the medium. A real card cannot take two commands at once; the service must
//!   serialise, and tests assert this stays 0.
//! - [`MemoryToken::with_user_verification`] + [`MemoryToken::enter_pin_on_medium`]: a
//!   medium that verifies the user itself (a phone, a PIN pad): the "user" types the PIN
//!   on the medium; the PC never sees it.
//! - [`MemoryTransport::go_offline`] / [`MemoryTransport::go_online`]: the medium's link
//!   drops and comes back (a phone, a BLE key). Calls while offline fail with
//!   [`TokenError::Offline`]; a call that had reached the medium when the link dropped
//!   fails with [`TokenError::OutcomeUnknown`].
//! - [`MemoryToken::set_faulty_signatures`]: the medium returns signatures that do not
//!   verify (a vendor module that hashes the digest again).
//!
//! [`inserts`]: MemoryTransport::insert
//! [`removes`]: MemoryTransport::remove

use crate::{OpContext, OpStatus, Result, Session, Token, TokenError, Transport, TransportEvent, UserAuth};
use kb_crypto::rsa::RsaPadding;
use kb_crypto::{PrivateKey, PublicKey, SignatureScheme};
use kb_types::{
    Algorithm, Capabilities, ContainerInfo, DeviceId, DeviceInfo, KeySlot, KeyUsage, Pin, PinInfo, PinKind, SealInfo,
    TransportKind, UserVerification,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use zeroize::Zeroizing;

/// Shortest new PIN the virtual medium accepts, in characters.
pub const MIN_PIN_LEN: usize = 6;
/// Longest new PIN the virtual medium accepts, in characters.
pub const MAX_PIN_LEN: usize = 16;
/// Default number of PIN tries.
pub const DEFAULT_MAX_RETRIES: u8 = 6;

/// How long a paused operation waits for [`PauseHandle::release`] before going on
/// anyway (so a forgotten handle cannot hang a test forever).
const PAUSE_LIMIT: Duration = Duration::from_secs(30);

struct PinState {
    pin: Pin,
    retries: u8,
    max: u8,
    is_default: bool,
}

impl PinState {
    fn new(pin: &str, max: u8) -> Self {
        Self { pin: Pin::new(pin), retries: max, max, is_default: true }
    }

    fn info(&self, kind: PinKind) -> PinInfo {
        PinInfo {
            kind,
            retries_left: self.retries,
            max_retries: self.max,
            locked: self.retries == 0,
            is_default: self.is_default,
        }
    }

    /// Check a PIN like a card does: a wrong one costs a try, the last wrong one locks.
    fn verify(&mut self, pin: &Pin) -> Result<()> {
        if self.retries == 0 {
            return Err(TokenError::PinLocked);
        }
        if ct_eq(self.pin.expose(), pin.expose()) {
            self.retries = self.max;
            Ok(())
        } else {
            self.retries -= 1;
            if self.retries == 0 { Err(TokenError::PinLocked) } else { Err(TokenError::WrongPin { retries_left: self.retries }) }
        }
    }

    fn set(&mut self, new: &Pin) {
        self.pin = new.clone();
        self.retries = self.max;
        self.is_default = false;
    }
}

/// Compare without an early exit on the first differing byte.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

fn check_policy(pin: &Pin) -> Result<()> {
    crate::PinPolicy { min_chars: MIN_PIN_LEN, max_chars: MAX_PIN_LEN }.check(pin)
}

struct Slot {
    key: PrivateKey,
    certificate: Option<Vec<u8>>,
}

#[derive(Default)]
struct Container {
    sign: Option<Slot>,
    encrypt: Option<Slot>,
}

impl Container {
    fn slot(&mut self, usage: KeyUsage) -> &mut Option<Slot> {
        match usage {
            KeyUsage::Encrypt => &mut self.encrypt,
            KeyUsage::Sign | KeyUsage::Both => &mut self.sign,
        }
    }
}

struct Seal {
    name: String,
    mime: String,
    image: Vec<u8>,
}

struct State {
    user: PinState,
    so: PinState,
    containers: BTreeMap<String, Container>,
    seals: BTreeMap<String, Seal>,
}

impl State {
    fn pin(&mut self, kind: PinKind) -> &mut PinState {
        match kind {
            PinKind::User => &mut self.user,
            PinKind::So => &mut self.so,
        }
    }

    fn container(&mut self, name: &str) -> Result<&mut Container> {
        self.containers.get_mut(name).ok_or_else(|| TokenError::NotFound(format!("container {name}")))
    }

    fn slot(&mut self, container: &str, usage: KeyUsage) -> Result<&mut Slot> {
        self.container(container)?
            .slot(usage)
            .as_mut()
            .ok_or_else(|| TokenError::NotFound(format!("{} key pair in container {container}", usage_name(usage))))
    }
}

fn usage_name(usage: KeyUsage) -> &'static str {
    match usage {
        KeyUsage::Encrypt => "encryption",
        KeyUsage::Sign | KeyUsage::Both => "signing",
    }
}

fn check_certificate(key: &PrivateKey, der: &[u8]) -> Result<()> {
    let cert = kb_pki::Certificate::from_der(der)?;
    if cert.public_key()? != key.public_key() {
        return Err(TokenError::CertificateKeyMismatch);
    }
    Ok(())
}

struct Pause {
    op: &'static str,
    reached: Sender<()>,
    release: Receiver<()>,
}

/// Holds an operation half-way (see [`MemoryToken::pause_next`]).
pub struct PauseHandle {
    reached: Receiver<()>,
    release: Sender<()>,
}

impl PauseHandle {
    /// Wait until the paused operation has started (true) or `timeout` passed (false).
    pub fn wait_reached(&self, timeout: Duration) -> bool {
        self.reached.recv_timeout(timeout).is_ok()
    }

    /// Let the operation go on. Dropping the handle does the same.
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

struct Inner {
    info: DeviceInfo,
    state: Mutex<State>,
    pulled: AtomicBool,
    generation: AtomicU64,
    in_use: AtomicBool,
    reentries: AtomicU64,
    op_delay_us: AtomicU64,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    pause: Mutex<Option<Pause>>,
    offline: AtomicBool,
    faulty_signatures: AtomicBool,
    in_process: AtomicBool,
    medium_pins: Mutex<std::collections::VecDeque<Pin>>,
    medium_pin_typed: std::sync::Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks the medium busy for the length of one call; see [`MemoryToken::reentries`].
struct OpGuard<'a>(&'a Inner);

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        self.0.in_use.store(false, Ordering::SeqCst);
    }
}

/// An in-memory key medium. Cloning gives another handle on the *same* medium.
///
/// ```
/// use kb_token::memory::MemoryToken;
/// use kb_token::Token;
/// use kb_types::{Pin, TransportKind};
/// let mut t = MemoryToken::new(TransportKind::Pcsc, "ACME-0001", "12345678", "admin-pin");
/// assert!(t.login(&Pin::new("12345678")).is_ok());
/// ```
#[derive(Clone)]
pub struct MemoryToken {
    inner: Arc<Inner>,
    /// For handles given out by [`MemoryTransport::open`]: the insertion they belong to.
    /// Once the token is removed and inserted again, such a handle stays dead, like a
    /// card handle after the card was re-inserted.
    bound: Option<u64>,
}

impl std::fmt::Debug for MemoryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryToken").field("id", &self.inner.info.id).field("pulled", &self.is_pulled()).finish()
    }
}

impl MemoryToken {
    /// A blank medium reached over `transport`, with local id `local_id` (the device id is
    /// `<transport>:<local_id>`), user PIN and SO PIN, both with
    /// [`DEFAULT_MAX_RETRIES`] tries.
    pub fn new(transport: TransportKind, local_id: &str, user_pin: &str, so_pin: &str) -> Self {
        let info = DeviceInfo {
            id: DeviceId::new(transport, local_id),
            label: format!("Virtual key {local_id}"),
            serial: local_id.to_string(),
            manufacturer: "KeyBridge".into(),
            model: "Virtual".into(),
            transport,
            capabilities: Capabilities {
                algorithms: vec![Algorithm::Sm2, Algorithm::EcdsaP256, Algorithm::Rsa { bits: 2048 }],
                key_generation: true,
                seals: true,
                so_pin: true,
                user_verification: UserVerification::HostPin,
            },
        };
        let state = State {
            user: PinState::new(user_pin, DEFAULT_MAX_RETRIES),
            so: PinState::new(so_pin, DEFAULT_MAX_RETRIES),
            containers: BTreeMap::new(),
            seals: BTreeMap::new(),
        };
        MemoryToken {
            inner: Arc::new(Inner {
                info,
                state: Mutex::new(state),
                pulled: AtomicBool::new(false),
                generation: AtomicU64::new(0),
                in_use: AtomicBool::new(false),
                reentries: AtomicU64::new(0),
                op_delay_us: AtomicU64::new(0),
                counts: Mutex::new(BTreeMap::new()),
                pause: Mutex::new(None),
                offline: AtomicBool::new(false),
                faulty_signatures: AtomicBool::new(false),
                in_process: AtomicBool::new(false),
                medium_pins: Mutex::new(std::collections::VecDeque::new()),
                medium_pin_typed: std::sync::Condvar::new(),
            }),
            bound: None,
        }
    }

    fn map_info(self, f: impl FnOnce(&mut DeviceInfo)) -> Self {
        // Only while building: no other handle exists yet, so the Arc is unique.
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                f(&mut inner.info);
                MemoryToken { inner: Arc::new(inner), bound: self.bound }
            }
            Err(inner) => MemoryToken { inner, bound: self.bound },
        }
    }

    /// Builder: the label shown to the user. (Label and model builders apply to a fresh
    /// token, before it is cloned or inserted.)
    pub fn with_label(self, label: &str) -> Self {
        self.map_info(|i| i.label = label.to_string())
    }

    /// Builder: the model string.
    pub fn with_model(self, model: &str) -> Self {
        self.map_info(|i| i.model = model.to_string())
    }

    /// Builder: who verifies the user. With [`UserVerification::OnMedium`] the token
    /// takes no PIN from the PC; a session opens when the test "types" the PIN on the
    /// medium with [`Self::enter_pin_on_medium`] (checked against the user PIN, counting
    /// tries), and waits for it until the operation's context is stopped.
    pub fn with_user_verification(self, uv: UserVerification) -> Self {
        self.map_info(|i| i.capabilities.user_verification = uv)
    }

    /// The user types `pin` on the medium itself (for a token built
    /// [`with_user_verification`](Self::with_user_verification)`(OnMedium)`).
    pub fn enter_pin_on_medium(&self, pin: &str) {
        lock(&self.inner.medium_pins).push_back(Pin::new(pin));
        self.inner.medium_pin_typed.notify_all();
    }

    /// Make the medium return signatures that do not verify (`true`), like a vendor
    /// module that hashes the digest again.
    pub fn set_faulty_signatures(&self, faulty: bool) {
        self.inner.faulty_signatures.store(faulty, Ordering::SeqCst);
    }

    /// Builder: the medium says it is software in this process ([`Token::in_process`]),
    /// like a file key, so the device service may run its commands on the caller's
    /// thread. By default a memory token stands in for a card and says no.
    pub fn with_in_process(self) -> Self {
        self.inner.in_process.store(true, Ordering::SeqCst);
        self
    }

    /// Whether the medium's link is down (see [`MemoryTransport::go_offline`]).
    pub fn is_offline(&self) -> bool {
        self.inner.offline.load(Ordering::SeqCst)
    }

    /// Builder: the number of tries of both PINs.
    pub fn with_max_retries(self, max: u8) -> Self {
        let max = max.max(1);
        {
            let mut s = lock(&self.inner.state);
            s.user.max = max;
            s.user.retries = max;
            s.so.max = max;
            s.so.retries = max;
        }
        self
    }

    /// The device id.
    pub fn id(&self) -> DeviceId {
        self.inner.info.id.clone()
    }

    /// Make the medium behave as pulled out (`true`) or back in its reader (`false`).
    /// [`MemoryTransport::remove`] does this and also reports the removal.
    pub fn set_pulled(&self, pulled: bool) {
        self.inner.pulled.store(pulled, Ordering::SeqCst);
    }

    /// Whether the medium is pulled out.
    pub fn is_pulled(&self) -> bool {
        self.inner.pulled.load(Ordering::SeqCst)
    }

    /// Make every call take at least `delay` (a slow card), to widen race windows.
    pub fn set_op_delay(&self, delay: Duration) {
        self.inner.op_delay_us.store(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Stop the next call of operation `op` (`"login"`, `"sign_digest"`, `"decrypt"`, …,
    /// the trait method's name) after it started and before it touches the medium, until
    /// the handle is released or dropped. After release the call re-checks whether the
    /// medium is still there, so a test can pull it out in between.
    pub fn pause_next(&self, op: &'static str) -> PauseHandle {
        let (reached_tx, reached_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        *lock(&self.inner.pause) = Some(Pause { op, reached: reached_tx, release: release_rx });
        PauseHandle { reached: reached_rx, release: release_tx }
    }

    /// How many calls arrived while another call was still running on this medium (each
    /// such call failed with [`TokenError::Busy`]). A correct caller keeps this at 0.
    pub fn reentries(&self) -> u64 {
        self.inner.reentries.load(Ordering::SeqCst)
    }

    /// How many times operation `op` (a trait method's name) was called.
    pub fn calls(&self, op: &str) -> u64 {
        lock(&self.inner.counts).get(op).copied().unwrap_or(0)
    }

    /// Factory provisioning (no PIN, test setup): put a known key pair into a slot,
    /// creating the container if needed and dropping any certificate there.
    pub fn put_key(&self, container: &str, usage: KeyUsage, key: PrivateKey) {
        let mut s = lock(&self.inner.state);
        *s.containers.entry(container.to_string()).or_default().slot(usage) = Some(Slot { key, certificate: None });
    }

    /// Factory provisioning (no PIN, test setup): install a certificate for a slot that
    /// holds a key pair; it must match the key.
    pub fn put_certificate(&self, container: &str, usage: KeyUsage, der: &[u8]) -> Result<()> {
        let mut s = lock(&self.inner.state);
        let slot = s.slot(container, usage)?;
        check_certificate(&slot.key, der)?;
        slot.certificate = Some(der.to_vec());
        Ok(())
    }

    /// A handle tied to the current insertion (what [`MemoryTransport::open`] returns).
    fn open_handle(&self) -> MemoryToken {
        MemoryToken { inner: Arc::clone(&self.inner), bound: Some(self.inner.generation.load(Ordering::SeqCst)) }
    }

    fn present(&self) -> Result<()> {
        let stale = self.bound.is_some_and(|g| g != self.inner.generation.load(Ordering::SeqCst));
        if stale || self.is_pulled() {
            Err(TokenError::Removed)
        } else if self.is_offline() {
            Err(TokenError::Offline)
        } else {
            Ok(())
        }
    }

    /// After a call reached the medium: a link that dropped meanwhile leaves its outcome
    /// unknown (the medium may have carried it out).
    fn still_linked(&self) -> Result<()> {
        match self.present() {
            Err(TokenError::Offline) => Err(TokenError::OutcomeUnknown),
            r => r,
        }
    }

    /// Wait for the PIN the user types on the medium (on-medium verification).
    fn pin_typed_on_medium(&self, ctx: &OpContext) -> Result<Pin> {
        ctx.status(OpStatus::WaitingForMedium { what: self.inner.info.label.clone() });
        // Wake the wait below when the operation is stopped.
        let inner = Arc::clone(&self.inner);
        let _wake = ctx.on_stop(move |_| {
            let _q = lock(&inner.medium_pins);
            inner.medium_pin_typed.notify_all();
        });
        let mut q = lock(&self.inner.medium_pins);
        let started = std::time::Instant::now();
        loop {
            ctx.check()?;
            self.present()?;
            if let Some(p) = q.pop_front() {
                return Ok(p);
            }
            if started.elapsed() > PAUSE_LIMIT {
                return Err(TokenError::TimedOut);
            }
            q = self.inner.medium_pin_typed.wait_timeout(q, Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Start one call: the medium must be present and idle.
    fn enter(&self, op: &'static str) -> Result<OpGuard<'_>> {
        self.present()?;
        if self.inner.in_use.swap(true, Ordering::SeqCst) {
            self.inner.reentries.fetch_add(1, Ordering::SeqCst);
            return Err(TokenError::Busy);
        }
        let guard = OpGuard(&self.inner);
        *lock(&self.inner.counts).entry(op).or_insert(0) += 1;
        let delay = self.inner.op_delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        let pause = {
            let mut p = lock(&self.inner.pause);
            if p.as_ref().is_some_and(|p| p.op == op) { p.take() } else { None }
        };
        if let Some(p) = pause {
            let _ = p.reached.send(());
            let _ = p.release.recv_timeout(PAUSE_LIMIT);
        }
        // The medium may have gone while the command was on its way.
        self.still_linked()?;
        Ok(guard)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }
}

impl Token for MemoryToken {
    fn info(&self) -> DeviceInfo {
        self.inner.info.clone()
    }

    fn in_process(&self) -> bool {
        self.inner.in_process.load(Ordering::SeqCst)
    }

    fn pin_info(&mut self, kind: PinKind) -> Result<PinInfo> {
        let _g = self.enter("pin_info")?;
        Ok(self.state().pin(kind).info(kind))
    }

    fn change_pin(&mut self, kind: PinKind, old: &Pin, new: &Pin) -> Result<()> {
        let _g = self.enter("change_pin")?;
        let mut s = self.state();
        let p = s.pin(kind);
        p.verify(old)?;
        check_policy(new)?;
        p.set(new);
        Ok(())
    }

    fn unblock_pin(&mut self, so_pin: &Pin, new_user_pin: &Pin) -> Result<()> {
        let _g = self.enter("unblock_pin")?;
        let mut s = self.state();
        s.so.verify(so_pin)?;
        check_policy(new_user_pin)?;
        s.user.set(new_user_pin);
        Ok(())
    }

    fn containers(&mut self) -> Result<Vec<ContainerInfo>> {
        let _g = self.enter("containers")?;
        let s = self.state();
        let slot = |sl: &Option<Slot>, usage| {
            sl.as_ref().map(|sl| KeySlot {
                usage,
                algorithm: sl.key.public_key().algorithm(),
                certificate: sl.certificate.clone(),
            })
        };
        Ok(s.containers
            .iter()
            .map(|(name, c)| ContainerInfo {
                name: name.clone(),
                sign: slot(&c.sign, KeyUsage::Sign),
                encrypt: slot(&c.encrypt, KeyUsage::Encrypt),
            })
            .collect())
    }

    fn public_key(&mut self, container: &str, usage: KeyUsage) -> Result<PublicKey> {
        let _g = self.enter("public_key")?;
        Ok(self.state().slot(container, usage)?.key.public_key())
    }

    fn seals(&mut self) -> Result<Vec<SealInfo>> {
        let _g = self.enter("seals")?;
        Ok(self
            .state()
            .seals
            .iter()
            .map(|(id, s)| SealInfo { id: id.clone(), name: s.name.clone(), mime: s.mime.clone(), size: s.image.len() as u64 })
            .collect())
    }

    fn read_seal(&mut self, id: &str) -> Result<Vec<u8>> {
        let _g = self.enter("read_seal")?;
        self.state().seals.get(id).map(|s| s.image.clone()).ok_or_else(|| TokenError::NotFound(format!("seal {id}")))
    }

    fn open_session<'a>(&'a mut self, auth: UserAuth<'_>, ctx: &OpContext) -> Result<Box<dyn Session + 'a>> {
        let on_medium = self.inner.info.capabilities.user_verification == UserVerification::OnMedium;
        {
            let _g = self.enter("login")?;
            match (auth, on_medium) {
                (UserAuth::Pin(pin), false) => self.state().user.verify(pin)?,
                (UserAuth::OnMedium, true) => {
                    let pin = self.pin_typed_on_medium(ctx)?;
                    self.state().user.verify(&pin)?;
                }
                (UserAuth::Pin(_), true) => {
                    return Err(TokenError::NotSupported(
                        "this medium verifies the user itself; it takes no PIN from the PC".into(),
                    ));
                }
                (UserAuth::OnMedium, false) => {
                    auth.pin()?;
                }
            }
        }
        Ok(Box::new(MemorySession { token: self }))
    }
}

/// A logged-in session on a [`MemoryToken`].
struct MemorySession<'a> {
    token: &'a mut MemoryToken,
}

impl Session for MemorySession<'_> {
    fn create_container(&mut self, name: &str) -> Result<()> {
        let _g = self.token.enter("create_container")?;
        if name.is_empty() {
            return Err(TokenError::NotSupported("an empty container name".into()));
        }
        let mut s = self.token.state();
        if s.containers.contains_key(name) {
            return Err(TokenError::AlreadyExists(format!("container {name}")));
        }
        s.containers.insert(name.to_string(), Container::default());
        Ok(())
    }

    fn delete_container(&mut self, name: &str) -> Result<()> {
        let _g = self.token.enter("delete_container")?;
        self.token.state().containers.remove(name).map(|_| ()).ok_or_else(|| TokenError::NotFound(format!("container {name}")))
    }

    fn generate_key_pair(&mut self, container: &str, usage: KeyUsage, algorithm: Algorithm) -> Result<PublicKey> {
        let _g = self.token.enter("generate_key_pair")?;
        if !self.token.inner.info.capabilities.algorithms.contains(&algorithm) {
            return Err(TokenError::NotSupported(format!("{algorithm} key pairs")));
        }
        let mut s = self.token.state();
        let c = s.container(container)?;
        let key = PrivateKey::generate(algorithm)?;
        let public = key.public_key();
        *c.slot(usage) = Some(Slot { key, certificate: None });
        Ok(public)
    }

    fn import_certificate(&mut self, container: &str, usage: KeyUsage, der: &[u8]) -> Result<()> {
        let _g = self.token.enter("import_certificate")?;
        let mut s = self.token.state();
        let slot = s.slot(container, usage)?;
        check_certificate(&slot.key, der)?;
        slot.certificate = Some(der.to_vec());
        Ok(())
    }

    /// Opens the envelope with the container's SM2 signing key; the slot is replaced only
    /// when everything checks.
    fn import_enveloped_key(
        &mut self,
        container: &str,
        envelope: &crate::Sm2EnvelopedKey,
        certificate: Option<&[u8]>,
    ) -> Result<()> {
        let _g = self.token.enter("import_enveloped_key")?;
        let mut s = self.token.state();
        let PrivateKey::Sm2(protection) = &s.slot(container, KeyUsage::Sign)?.key else {
            return Err(TokenError::NotSupported("an enveloped key for a container whose signing key is not SM2".into()));
        };
        let key = PrivateKey::Sm2(envelope.open(protection)?);
        if let Some(der) = certificate {
            check_certificate(&key, der)?;
        }
        *s.container(container)?.slot(KeyUsage::Encrypt) = Some(Slot { key, certificate: certificate.map(<[u8]>::to_vec) });
        Ok(())
    }

    fn delete_certificate(&mut self, container: &str, usage: KeyUsage) -> Result<()> {
        let _g = self.token.enter("delete_certificate")?;
        let mut s = self.token.state();
        match s.slot(container, usage)?.certificate.take() {
            Some(_) => Ok(()),
            None => Err(TokenError::NotFound(format!("{} certificate in container {container}", usage_name(usage)))),
        }
    }

    fn sign_digest(&mut self, container: &str, usage: KeyUsage, scheme: &SignatureScheme, digest: &[u8]) -> Result<Vec<u8>> {
        let _g = self.token.enter("sign_digest")?;
        let mut s = self.token.state();
        let mut sig = s.slot(container, usage)?.key.sign_digest(scheme, digest)?;
        if self.token.inner.faulty_signatures.load(Ordering::SeqCst) {
            // What a module that hashes the digest again returns: a valid signature over
            // another value.
            let other = kb_crypto::digest(kb_crypto::HashAlgorithm::Sm3, digest);
            sig = s.slot(container, usage)?.key.sign_digest(scheme, &other[..digest.len().min(other.len())])?;
        }
        Ok(sig)
    }

    fn decrypt(
        &mut self,
        container: &str,
        usage: KeyUsage,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let _g = self.token.enter("decrypt")?;
        let mut s = self.token.state();
        Ok(s.slot(container, usage)?.key.decrypt(ciphertext, padding)?)
    }

    fn write_seal(&mut self, id: &str, name: &str, mime: &str, image: &[u8]) -> Result<()> {
        let _g = self.token.enter("write_seal")?;
        if id.is_empty() {
            return Err(TokenError::NotSupported("an empty seal id".into()));
        }
        self.token
            .state()
            .seals
            .insert(id.to_string(), Seal { name: name.to_string(), mime: mime.to_string(), image: image.to_vec() });
        Ok(())
    }

    fn delete_seal(&mut self, id: &str) -> Result<()> {
        let _g = self.token.enter("delete_seal")?;
        self.token.state().seals.remove(id).map(|_| ()).ok_or_else(|| TokenError::NotFound(format!("seal {id}")))
    }
}

struct Watcher {
    tx: Sender<TransportEvent>,
    enumerated: bool,
}

#[derive(Default)]
struct TransportState {
    tokens: BTreeMap<DeviceId, MemoryToken>,
    watchers: Vec<Watcher>,
    hold_enumeration: bool,
}

impl TransportState {
    /// Send to every live watcher (those whose receiver was dropped are forgotten).
    fn broadcast(&mut self, ev: &TransportEvent) {
        self.watchers.retain(|w| w.tx.send(ev.clone()).is_ok());
    }
}

/// A transport whose media a test inserts and removes by hand. Cloning gives another
/// handle on the same transport.
#[derive(Clone)]
pub struct MemoryTransport {
    kind: TransportKind,
    state: Arc<Mutex<TransportState>>,
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransport").field("kind", &self.kind).finish()
    }
}

impl MemoryTransport {
    /// An empty transport that reports itself as `kind`.
    pub fn new(kind: TransportKind) -> Self {
        Self { kind, state: Arc::new(Mutex::new(TransportState::default())) }
    }

    /// A blank token of this transport's kind (not inserted yet).
    pub fn new_token(&self, local_id: &str, user_pin: &str, so_pin: &str) -> MemoryToken {
        MemoryToken::new(self.kind, local_id, user_pin, so_pin)
    }

    /// Hold back `EnumerationComplete` from watchers until [`Self::complete_enumeration`]
    /// (a slow bus scan).
    pub fn hold_enumeration(&self) {
        lock(&self.state).hold_enumeration = true;
    }

    /// Let every watcher see `EnumerationComplete`.
    pub fn complete_enumeration(&self) {
        let mut s = lock(&self.state);
        s.hold_enumeration = false;
        s.watchers.retain_mut(|w| {
            if w.enumerated {
                return true;
            }
            w.enumerated = true;
            w.tx.send(TransportEvent::EnumerationComplete).is_ok()
        });
    }

    /// Plug a token in (again): it becomes present and every watcher sees `Added`.
    /// Handles opened before an earlier removal stay dead. Returns the device id.
    pub fn insert(&self, token: MemoryToken) -> DeviceId {
        let id = token.id();
        token.inner.generation.fetch_add(1, Ordering::SeqCst);
        token.set_pulled(false);
        let info = token.inner.info.clone();
        let mut s = lock(&self.state);
        s.tokens.insert(id.clone(), token);
        s.broadcast(&TransportEvent::Added(info));
        id
    }

    /// Pull a token out: every handle on it fails with [`TokenError::Removed`] from now
    /// on and every watcher sees `Removed`. Returns the token, or `None` if absent.
    pub fn remove(&self, id: &DeviceId) -> Option<MemoryToken> {
        let mut s = lock(&self.state);
        let token = s.tokens.remove(id)?;
        token.set_pulled(true);
        s.broadcast(&TransportEvent::Removed(id.clone()));
        Some(token)
    }

    /// The token's link drops: it stays known, every call fails with
    /// [`TokenError::Offline`] (or [`TokenError::OutcomeUnknown`] for a call already on
    /// the medium), and every watcher sees `Offline`.
    pub fn go_offline(&self, id: &DeviceId) {
        let mut s = lock(&self.state);
        if let Some(t) = s.tokens.get(id) {
            t.inner.offline.store(true, Ordering::SeqCst);
            t.inner.medium_pin_typed.notify_all();
            s.broadcast(&TransportEvent::Offline(id.clone()));
        }
    }

    /// The token's link is back: the same handles work again; watchers see `Online`.
    pub fn go_online(&self, id: &DeviceId) {
        let mut s = lock(&self.state);
        if let Some(t) = s.tokens.get(id) {
            t.inner.offline.store(false, Ordering::SeqCst);
            s.broadcast(&TransportEvent::Online(id.clone()));
        }
    }

    /// Report a transport failure to every watcher.
    pub fn fail(&self, message: &str) {
        lock(&self.state).broadcast(&TransportEvent::Error(message.to_string()));
    }

    /// The token with this id, if present.
    pub fn token(&self, id: &DeviceId) -> Option<MemoryToken> {
        lock(&self.state).tokens.get(id).cloned()
    }

    /// How many watchers are still listening.
    pub fn watchers(&self) -> usize {
        lock(&self.state).watchers.len()
    }
}

impl Transport for MemoryTransport {
    fn kind(&self) -> TransportKind {
        self.kind
    }

    fn watch(&self) -> Result<Receiver<TransportEvent>> {
        let (tx, rx) = mpsc::channel();
        let mut s = lock(&self.state);
        for t in s.tokens.values() {
            let _ = tx.send(TransportEvent::Added(t.inner.info.clone()));
        }
        let enumerated = !s.hold_enumeration;
        if enumerated {
            let _ = tx.send(TransportEvent::EnumerationComplete);
        }
        s.watchers.push(Watcher { tx, enumerated });
        Ok(rx)
    }

    fn open(&self, id: &DeviceId) -> Result<Box<dyn Token>> {
        let s = lock(&self.state);
        let t = s.tokens.get(id).ok_or_else(|| TokenError::UnknownDevice(id.to_string()))?;
        let handle = t.open_handle();
        handle.present()?;
        Ok(Box::new(handle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_pki::LocalSigner;
    use kb_pki::issue::{self, CertificateParams};
    use kb_pki::time::UnixTime;

    const USER: &str = "12345678";
    const SO: &str = "admin-pin";

    fn token() -> MemoryToken {
        MemoryToken::new(TransportKind::Pcsc, "T1", USER, SO).with_label("Test key").with_max_retries(3)
    }

    #[test]
    fn enveloped_encryption_pairs_open_with_the_signing_key() {
        let t = token();
        t.put_key("c", KeyUsage::Sign, PrivateKey::generate(Algorithm::Sm2).unwrap());
        let mut t = t;
        let PublicKey::Sm2(sign_pub) = t.public_key("c", KeyUsage::Sign).unwrap() else { panic!() };
        let pair = kb_crypto::sm2::Sm2PrivateKey::generate().unwrap();
        let public = PublicKey::Sm2(*pair.public_key());
        let env = crate::Sm2EnvelopedKey::seal(&pair, &sign_pub).unwrap();
        let other = crate::Sm2EnvelopedKey::seal(&pair, kb_crypto::sm2::Sm2PrivateKey::generate().unwrap().public_key()).unwrap();
        let cert = cert_for(&public, KeyUsage::Encrypt);
        let wrong_cert = cert_for(&PrivateKey::generate(Algorithm::Sm2).unwrap().public_key(), KeyUsage::Encrypt);
        let mut s = t.login(&Pin::new(USER)).unwrap();
        assert!(matches!(s.import_enveloped_key("c", &other, Some(&cert)), Err(TokenError::EnvelopedKey(_))));
        assert_eq!(s.import_enveloped_key("c", &env, Some(&wrong_cert)), Err(TokenError::CertificateKeyMismatch));
        s.import_enveloped_key("c", &env, Some(&cert)).unwrap();
        drop(s);
        assert_eq!(t.public_key("c", KeyUsage::Encrypt).unwrap(), public);
        let c = t.containers().unwrap().into_iter().find(|c| c.name == "c").unwrap();
        assert_eq!(c.encrypt.unwrap().certificate, Some(cert));
    }

    fn cert_for(public: &PublicKey, usage: KeyUsage) -> Vec<u8> {
        let ca_key = PrivateKey::generate(Algorithm::Sm2).unwrap();
        let ca = LocalSigner::new(ca_key);
        let now = UnixTime::now();
        let root =
            issue::self_signed(&CertificateParams::new("CN=Test CA", issue::CertKind::Root { path_len: None }, now, 30), &ca)
                .unwrap();
        issue::issue(&CertificateParams::leaf("CN=Holder", usage, now, 30), public, Some(&root), &ca).unwrap().der().to_vec()
    }

    #[test]
    fn builder_and_info() {
        let t = token();
        let i = t.info();
        assert_eq!(i.id, DeviceId("pcsc:T1".into()));
        assert_eq!(i.label, "Test key");
        assert!(i.capabilities.key_generation);
    }

    #[test]
    fn pin_retries_lock_and_unblock() {
        let mut t = token();
        assert!(matches!(t.login(&Pin::new("wrong")), Err(TokenError::WrongPin { retries_left: 2 })));
        assert_eq!(t.pin_info(PinKind::User).unwrap().retries_left, 2);
        // A right PIN resets the counter.
        assert!(t.login(&Pin::new(USER)).is_ok());
        assert_eq!(t.pin_info(PinKind::User).unwrap().retries_left, 3);
        assert!(matches!(t.login(&Pin::new("x")), Err(TokenError::WrongPin { retries_left: 2 })));
        assert!(matches!(t.login(&Pin::new("x")), Err(TokenError::WrongPin { retries_left: 1 })));
        assert!(matches!(t.login(&Pin::new("x")), Err(TokenError::PinLocked)));
        assert!(matches!(t.login(&Pin::new(USER)), Err(TokenError::PinLocked)));
        assert!(t.pin_info(PinKind::User).unwrap().locked);
        // Wrong SO PIN costs an SO try; policy is checked; then unblock works.
        assert!(matches!(t.unblock_pin(&Pin::new("bad"), &Pin::new("87654321")), Err(TokenError::WrongPin { retries_left: 2 })));
        assert!(matches!(t.unblock_pin(&Pin::new(SO), &Pin::new("123")), Err(TokenError::PinPolicy(_))));
        t.unblock_pin(&Pin::new(SO), &Pin::new("87654321")).unwrap();
        let info = t.pin_info(PinKind::User).unwrap();
        assert!(!info.locked && !info.is_default && info.retries_left == 3);
        assert!(t.login(&Pin::new("87654321")).is_ok());
        t.change_pin(PinKind::User, &Pin::new("87654321"), &Pin::new("11112222")).unwrap();
        assert!(t.login(&Pin::new("11112222")).is_ok());
        assert!(matches!(
            t.change_pin(PinKind::User, &Pin::new("nope"), &Pin::new("33334444")),
            Err(TokenError::WrongPin { .. })
        ));
    }

    #[test]
    fn containers_keys_certificates_seals() {
        let mut t = token();
        let mut s = t.login(&Pin::new(USER)).unwrap();
        s.create_container("c1").unwrap();
        assert!(matches!(s.create_container("c1"), Err(TokenError::AlreadyExists(_))));
        assert!(matches!(s.generate_key_pair("nope", KeyUsage::Sign, Algorithm::Sm2), Err(TokenError::NotFound(_))));
        assert!(matches!(
            s.generate_key_pair("c1", KeyUsage::Sign, Algorithm::Rsa { bits: 4096 }),
            Err(TokenError::NotSupported(_))
        ));
        let sign_pk = s.generate_key_pair("c1", KeyUsage::Sign, Algorithm::Sm2).unwrap();
        let enc_pk = s.generate_key_pair("c1", KeyUsage::Encrypt, Algorithm::Sm2).unwrap();
        // Certificates must match their slot.
        let sign_cert = cert_for(&sign_pk, KeyUsage::Sign);
        assert_eq!(s.import_certificate("c1", KeyUsage::Encrypt, &sign_cert), Err(TokenError::CertificateKeyMismatch));
        s.import_certificate("c1", KeyUsage::Sign, &sign_cert).unwrap();
        s.import_certificate("c1", KeyUsage::Encrypt, &cert_for(&enc_pk, KeyUsage::Encrypt)).unwrap();
        // Sign and decrypt.
        let scheme = SignatureScheme::sm2_default();
        let d = sign_pk.message_digest(&scheme, b"bid").unwrap();
        let sig = s.sign_digest("c1", KeyUsage::Sign, &scheme, &d).unwrap();
        assert!(sign_pk.verify(&scheme, b"bid", &sig).is_ok());
        let ct = enc_pk.encrypt(b"content key", RsaPadding::Pkcs1v15).unwrap();
        assert_eq!(&s.decrypt("c1", KeyUsage::Encrypt, &ct, RsaPadding::Pkcs1v15).unwrap()[..], b"content key");
        s.write_seal("s1", "公章", "image/png", b"\x89PNG").unwrap();
        s.delete_certificate("c1", KeyUsage::Encrypt).unwrap();
        assert!(matches!(s.delete_certificate("c1", KeyUsage::Encrypt), Err(TokenError::NotFound(_))));
        drop(s);
        let cs = t.containers().unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].sign.as_ref().and_then(|s| s.certificate.clone()), Some(sign_cert));
        assert!(cs[0].encrypt.as_ref().is_some_and(|s| s.certificate.is_none()));
        assert_eq!(t.seals().unwrap()[0].size, 4);
        assert_eq!(t.read_seal("s1").unwrap(), b"\x89PNG");
        assert_eq!(t.public_key("c1", KeyUsage::Sign).unwrap(), sign_pk);
    }

    #[test]
    fn transport_events_and_removal() {
        let tr = MemoryTransport::new(TransportKind::Pkcs11);
        let a = tr.new_token("A", USER, SO);
        tr.insert(a.clone());
        let rx = tr.watch().unwrap();
        assert!(matches!(rx.recv().unwrap(), TransportEvent::Added(i) if i.id == a.id()));
        assert_eq!(rx.recv().unwrap(), TransportEvent::EnumerationComplete);
        let mut opened = tr.open(&a.id()).unwrap();
        assert!(opened.pin_info(PinKind::User).is_ok());
        assert_eq!(tr.remove(&a.id()).map(|t| t.id()), Some(a.id()));
        assert_eq!(rx.recv().unwrap(), TransportEvent::Removed(a.id()));
        assert_eq!(opened.pin_info(PinKind::User), Err(TokenError::Removed));
        assert!(matches!(tr.open(&a.id()), Err(TokenError::UnknownDevice(_))));
        // Re-inserted: the old handle stays dead, a new one works.
        tr.insert(a.clone());
        assert!(matches!(rx.recv().unwrap(), TransportEvent::Added(_)));
        assert_eq!(opened.pin_info(PinKind::User), Err(TokenError::Removed));
        assert!(tr.open(&a.id()).unwrap().pin_info(PinKind::User).is_ok());
        // The pulled-out switch.
        a.set_pulled(true);
        assert!(matches!(tr.open(&a.id()), Err(TokenError::Removed)));
        a.set_pulled(false);
        drop(rx);
        tr.fail("bus error");
        assert_eq!(tr.watchers(), 0);
    }

    #[test]
    fn held_enumeration() {
        let tr = MemoryTransport::new(TransportKind::Pcsc);
        tr.hold_enumeration();
        let rx = tr.watch().unwrap();
        assert!(rx.try_recv().is_err());
        tr.complete_enumeration();
        assert_eq!(rx.recv().unwrap(), TransportEvent::EnumerationComplete);
    }

    #[test]
    fn reentry_is_detected_and_pause_works() {
        let t = token();
        let pause = t.pause_next("pin_info");
        let mut h1 = t.clone();
        let th = std::thread::spawn(move || h1.pin_info(PinKind::User));
        assert!(pause.wait_reached(Duration::from_secs(5)));
        let mut h2 = t.clone();
        assert_eq!(h2.pin_info(PinKind::User), Err(TokenError::Busy));
        assert_eq!(t.reentries(), 1);
        t.set_pulled(true);
        pause.release();
        assert_eq!(th.join().unwrap(), Err(TokenError::Removed));
        assert_eq!(t.calls("pin_info"), 1);
    }
}
