//! The PC's side: a phone's media as ordinary key media.
//!
//! [`PhoneTransport`] is fed trusted links ([`PhoneTransport::attach`], called by whatever
//! accepted and paired the phone) and reports the phone's media as [`TransportEvent`]s:
//! `Added` when a phone first says hello, `Offline` when its link closes (the media stay
//! known, with the same device ids), `Online` when the same phone ([`PeerId`]) attaches
//! again, `Added` again for a medium whose announcement changed (a re-insertion).
//!
//! [`PhoneToken`] answers every public read (info, containers, certificates, public keys)
//! from what the phone announced — never a round trip, so nothing queues behind a
//! signature the user is still confirming. It declares
//! [`UserVerification::OnMedium`]: the PC never asks for the phone's PIN. Its session
//! forwards `sign_digest` and `decrypt` with the operation's [`Purpose`](kb_token::Purpose)
//! and waits for the answer, honouring the [`OpContext`]:
//!
//! | what happens while waiting | the call returns | the phone gets |
//! |---|---|---|
//! | the context is cancelled | `Cancelled` | `cancel` |
//! | the deadline passes | `TimedOut` | `cancel` |
//! | the link closes (request sent) | `OutcomeUnknown` | — |
//! | the link is down before sending | `Offline` | — |
//! | the user refuses / leaves the screen | `RefusedOnMedium` / `AbortedOnMedium` | — |
//! | a malformed or oversized message arrives | `phone_message_invalid`, link closed | `error` |
//!
//! An answer for an unknown request id, or one arriving after its request was cancelled,
//! is ignored.

use crate::msg::{
    self, DecryptRequest, ErrorMsg, Hello, Medium, Message, MsgError, PhoneInfo, RefuseReason, RequestContext, Scheme,
    SignRequest,
};
use kb_crypto::rsa::RsaPadding;
use kb_crypto::{PublicKey, SignatureScheme};
use kb_phonelink::{LinkError, MessageConn, PeerId};
use kb_token::{OpContext, OpStatus, Result, Session, Token, TokenError, Transport, TransportEvent, UserAuth};
use kb_types::{
    Algorithm, Capabilities, ContainerInfo, DeviceId, DeviceInfo, ErrorCode, HasErrorCode, KeySlot, KeyUsage, PinInfo, PinKind,
    SealInfo, TransportKind, UserVerification,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;
use zeroize::Zeroizing;

/// How long [`PhoneTransport::attach`] waits for the phone's `hello` by default.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// A waiting request re-checks its context at least this often (a safety net: the
/// context's wakers and the link's close normally wake it at once).
const RECHECK: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a phone answered.
enum Reply {
    Signature(Vec<u8>),
    Plaintext(Zeroizing<Vec<u8>>),
}

struct PhoneState {
    /// The live link; `None` while the phone is offline.
    link: Option<Arc<dyn MessageConn>>,
    /// Counts attachments, so a closed link's reader cannot touch its successor.
    generation: u64,
    info: PhoneInfo,
    media: BTreeMap<String, Medium>,
    /// Requests sent and not yet answered: `None` until the answer (or the link's end) is in.
    pending: HashMap<u64, Option<Result<Reply>>>,
    next_id: u64,
}

/// One paired phone, across its links.
struct Phone {
    peer: PeerId,
    state: Mutex<PhoneState>,
    changed: Condvar,
}

impl Phone {
    fn lock(&self) -> MutexGuard<'_, PhoneState> {
        lock(&self.state)
    }

    fn device_id(&self, medium: &str) -> DeviceId {
        DeviceId::new(TransportKind::Phone, &format!("{}/{medium}", self.peer))
    }

    fn device_info(&self, st: &PhoneState, m: &Medium) -> DeviceInfo {
        DeviceInfo {
            id: self.device_id(&m.id),
            label: if m.label.is_empty() { st.info.name.clone() } else { m.label.clone() },
            serial: m.serial.clone(),
            manufacturer: m.manufacturer.clone(),
            model: if m.model.is_empty() { st.info.model.clone() } else { m.model.clone() },
            transport: TransportKind::Phone,
            capabilities: Capabilities {
                algorithms: m.algorithms.clone(),
                key_generation: false,
                seals: false,
                so_pin: false,
                user_verification: UserVerification::OnMedium,
            },
        }
    }

    /// Resolve every waiting request with `err` (the link they were sent on is gone).
    fn fail_pending(st: &mut PhoneState, err: &TokenError) {
        for slot in st.pending.values_mut() {
            if slot.is_none() {
                *slot = Some(Err(err.clone()));
            }
        }
    }
}

struct Hub {
    phones: Mutex<BTreeMap<PeerId, Arc<Phone>>>,
    watchers: Mutex<Vec<Sender<TransportEvent>>>,
    hello_timeout: Duration,
}

impl Hub {
    fn emit(&self, events: Vec<TransportEvent>) {
        if events.is_empty() {
            return;
        }
        let mut w = lock(&self.watchers);
        w.retain(|tx| events.iter().all(|e| tx.send(e.clone()).is_ok()));
    }

    /// The link of generation `generation` ended: the phone goes offline (unless a newer
    /// link replaced it), its waiting requests get `err`, its media `Offline`.
    fn link_lost(&self, phone: &Phone, generation: u64, err: TokenError) {
        let _phones = lock(&self.phones);
        let events = {
            let mut st = phone.lock();
            if st.generation != generation || st.link.is_none() {
                return;
            }
            if let Some(conn) = st.link.take() {
                conn.close();
            }
            Phone::fail_pending(&mut st, &err);
            phone.changed.notify_all();
            st.media.keys().map(|m| TransportEvent::Offline(phone.device_id(m))).collect()
        };
        self.emit(events);
    }

    /// The phone announced `media` (hello or media_changed): events for the difference.
    fn set_media(&self, phone: &Phone, st: &mut PhoneState, media: Vec<Medium>, was_online: bool) -> Vec<TransportEvent> {
        let new: BTreeMap<String, Medium> = media.into_iter().map(|m| (m.id.clone(), m)).collect();
        let mut events: Vec<TransportEvent> =
            st.media.keys().filter(|id| !new.contains_key(*id)).map(|id| TransportEvent::Removed(phone.device_id(id))).collect();
        for (id, m) in &new {
            // Unchanged and back: online. (New or changed: (re-)inserted below.)
            if !was_online && st.media.get(id) == Some(m) {
                events.push(TransportEvent::Online(phone.device_id(id)));
            }
        }
        let old = std::mem::replace(&mut st.media, new);
        for (id, m) in &st.media {
            if old.get(id) != Some(m) {
                events.push(TransportEvent::Added(phone.device_info(st, m)));
            }
        }
        events
    }
}

/// A phone the transport knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneStatus {
    /// Its identity on the link.
    pub peer: PeerId,
    /// What it said about itself in its last `hello`.
    pub info: PhoneInfo,
    /// Whether its link is up.
    pub online: bool,
    /// Its media's device ids.
    pub media: Vec<DeviceId>,
}

/// The phones' media as a [`Transport`] (kind `phone`). Cheap to clone; clones share
/// the phones.
#[derive(Clone)]
pub struct PhoneTransport {
    hub: Arc<Hub>,
}

impl Default for PhoneTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PhoneTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneTransport").field("phones", &lock(&self.hub.phones).len()).finish()
    }
}

/// Send a link-level error and close the link.
fn refuse_link(conn: &dyn MessageConn, e: &MsgError) {
    let m = Message::Error(ErrorMsg { id: None, code: e.code.number(), message: clean(&e.detail), retries_left: None });
    if let Ok(bytes) = msg::encode(&m) {
        let _ = conn.send(&bytes);
    }
    conn.close();
}

fn message_error(e: &MsgError) -> TokenError {
    TokenError::Remote { code: e.code, detail: e.detail.clone() }
}

impl PhoneTransport {
    /// No phones yet; `attach` waits [`DEFAULT_HELLO_TIMEOUT`] for a phone's hello.
    pub fn new() -> Self {
        Self::with_hello_timeout(DEFAULT_HELLO_TIMEOUT)
    }

    /// No phones yet; `attach` waits `timeout` for a phone's hello.
    pub fn with_hello_timeout(timeout: Duration) -> Self {
        PhoneTransport {
            hub: Arc::new(Hub { phones: Mutex::new(BTreeMap::new()), watchers: Mutex::new(Vec::new()), hello_timeout: timeout }),
        }
    }

    /// Take a trusted link to a phone (authenticated and paired by the link layer): wait
    /// for its `hello`, then report its media (`Added`, or `Online` when the same phone
    /// comes back) and serve the link on a thread of its own until it closes. A link the
    /// same phone had open before is closed (its waiting requests: `OutcomeUnknown`).
    /// Returns the device ids of the phone's media.
    ///
    /// A phone that says nothing in time, speaks another protocol version or sends a
    /// malformed hello is refused (an `error` message, the link closed).
    pub fn attach(&self, conn: Arc<dyn MessageConn>) -> Result<Vec<DeviceId>> {
        let hello = match conn.recv(Some(self.hub.hello_timeout)) {
            Ok(bytes) => match msg::decode(&Zeroizing::new(bytes)) {
                Ok(Message::Hello(h)) => h,
                Ok(_) => {
                    let e = MsgError { code: ErrorCode::PhoneMessageInvalid, detail: "the first message must be hello".into() };
                    refuse_link(conn.as_ref(), &e);
                    return Err(message_error(&e));
                }
                Err(e) => {
                    refuse_link(conn.as_ref(), &e);
                    return Err(message_error(&e));
                }
            },
            Err(LinkError::TimedOut) => {
                conn.close();
                return Err(TokenError::TimedOut);
            }
            Err(e @ (LinkError::Failed { .. } | LinkError::TooLarge { .. })) => {
                conn.close();
                return Err(TokenError::Remote { code: e.code(), detail: e.to_string() });
            }
            Err(LinkError::Closed) => return Err(TokenError::Offline),
        };
        let Hello { phone: info, media, .. } = hello;
        let peer = conn.peer().clone();
        let (phone, generation, ids) = {
            let mut phones = lock(&self.hub.phones);
            let phone = Arc::clone(phones.entry(peer.clone()).or_insert_with(|| {
                Arc::new(Phone {
                    peer: peer.clone(),
                    state: Mutex::new(PhoneState {
                        link: None,
                        generation: 0,
                        info: info.clone(),
                        media: BTreeMap::new(),
                        pending: HashMap::new(),
                        next_id: 1,
                    }),
                    changed: Condvar::new(),
                })
            }));
            let (events, generation, ids) = {
                let mut st = phone.lock();
                let was_online = match st.link.take() {
                    Some(old) => {
                        old.close();
                        Phone::fail_pending(&mut st, &TokenError::OutcomeUnknown);
                        phone.changed.notify_all();
                        true
                    }
                    None => false,
                };
                st.generation += 1;
                st.link = Some(Arc::clone(&conn));
                st.info = info;
                let events = self.hub.set_media(&phone, &mut st, media, was_online);
                let ids = st.media.keys().map(|m| phone.device_id(m)).collect::<Vec<_>>();
                (events, st.generation, ids)
            };
            self.hub.emit(events);
            drop(phones);
            (phone, generation, ids)
        };
        let hub = Arc::downgrade(&self.hub);
        let spawned =
            std::thread::Builder::new().name(format!("kb-phone {peer}")).spawn(move || read_loop(hub, phone, conn, generation));
        if let Err(e) = spawned {
            return Err(TokenError::Io(format!("cannot start the phone link's reader: {e}")));
        }
        Ok(ids)
    }

    /// The phones known (online or not), by peer.
    pub fn phones(&self) -> Vec<PhoneStatus> {
        lock(&self.hub.phones)
            .values()
            .map(|p| {
                let st = p.lock();
                PhoneStatus {
                    peer: p.peer.clone(),
                    info: st.info.clone(),
                    online: st.link.is_some(),
                    media: st.media.keys().map(|m| p.device_id(m)).collect(),
                }
            })
            .collect()
    }

    /// Close a phone's link (the user disconnects it on the PC); its media go offline.
    pub fn disconnect(&self, peer: &PeerId) {
        let phone = lock(&self.hub.phones).get(peer).cloned();
        if let Some(phone) = phone {
            let generation = phone.lock().generation;
            self.hub.link_lost(&phone, generation, TokenError::OutcomeUnknown);
        }
    }

    fn find(&self, id: &DeviceId) -> Option<(Arc<Phone>, String)> {
        let phones = lock(&self.hub.phones);
        phones.values().find_map(|p| {
            let st = p.lock();
            st.media.keys().find(|m| &p.device_id(m) == id).map(|m| (Arc::clone(p), m.clone()))
        })
    }
}

fn read_loop(hub: Weak<Hub>, phone: Arc<Phone>, conn: Arc<dyn MessageConn>, generation: u64) {
    let end = loop {
        let bytes = match conn.recv(None) {
            Ok(b) => Zeroizing::new(b),
            Err(LinkError::TimedOut) => continue,
            Err(_) => break TokenError::OutcomeUnknown,
        };
        let Some(hub) = hub.upgrade() else {
            conn.close();
            return;
        };
        let handled = msg::decode(&bytes).and_then(|m| handle(&hub, &phone, generation, m));
        if let Err(e) = handled {
            refuse_link(conn.as_ref(), &e);
            break message_error(&e);
        }
    };
    if let Some(hub) = hub.upgrade() {
        hub.link_lost(&phone, generation, end);
    }
}

/// One message from the phone, after `hello`.
fn handle(hub: &Hub, phone: &Phone, generation: u64, m: Message) -> std::result::Result<(), MsgError> {
    let answer = match m {
        Message::MediaChanged { media } => {
            let _phones = lock(&hub.phones);
            let events = {
                let mut st = phone.lock();
                if st.generation != generation {
                    return Ok(());
                }
                hub.set_media(phone, &mut st, media, true)
            };
            hub.emit(events);
            return Ok(());
        }
        Message::Signature { id, signature } => (id, Ok(Reply::Signature(signature.0))),
        Message::Plaintext { id, plaintext } => (id, Ok(Reply::Plaintext(plaintext.0))),
        Message::Refused { id, reason, note } => (
            id,
            Err(match reason {
                RefuseReason::UserRefused => TokenError::RefusedOnMedium { note },
                RefuseReason::Aborted => TokenError::AbortedOnMedium,
                RefuseReason::PinLocked => TokenError::PinLocked,
            }),
        ),
        Message::Error(ErrorMsg { id: Some(id), code, message, retries_left }) => {
            (id, Err(token_error(code, message, retries_left)))
        }
        Message::Error(ErrorMsg { id: None, code, message, .. }) => {
            return Err(MsgError { code: msg::code_from_number(code), detail: format!("the phone closed the link: {message}") });
        }
        Message::Hello(_) | Message::Sign(_) | Message::Decrypt(_) | Message::Cancel { .. } => {
            return Err(MsgError { code: ErrorCode::PhoneMessageInvalid, detail: "a message the PC does not accept".into() });
        }
    };
    let mut st = phone.lock();
    if st.generation != generation {
        return Ok(());
    }
    // Only a request still waiting takes an answer: one cancelled or answered already
    // (or never sent) is ignored.
    if let Some(slot @ None) = st.pending.get_mut(&answer.0) {
        *slot = Some(answer.1);
        phone.changed.notify_all();
    }
    Ok(())
}

/// A failure the phone reported, as the token error it stands for.
fn token_error(code: u32, message: String, retries_left: Option<u8>) -> TokenError {
    let code = msg::code_from_number(code);
    match code {
        ErrorCode::WrongPin => match retries_left {
            Some(retries_left) => TokenError::WrongPin { retries_left },
            None => TokenError::WrongPinRetriesUnknown,
        },
        ErrorCode::PinLocked => TokenError::PinLocked,
        ErrorCode::NotFound => TokenError::NotFound(message),
        ErrorCode::NotSupported => TokenError::NotSupported(message),
        ErrorCode::Cancelled => TokenError::Cancelled,
        ErrorCode::OperationTimedOut => TokenError::TimedOut,
        ErrorCode::DeviceBusy => TokenError::Busy,
        ErrorCode::RefusedOnMedium => TokenError::RefusedOnMedium { note: message },
        ErrorCode::AbortedOnMedium => TokenError::AbortedOnMedium,
        _ => TokenError::Remote { code, detail: message },
    }
}

/// Text for the phone's screen: capped, control characters replaced by spaces.
fn clean_to(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') { ' ' } else { c })
        .take(max)
        .collect()
}

fn clean(s: &str) -> String {
    clean_to(s, msg::MAX_TEXT_CHARS)
}

impl Transport for PhoneTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Phone
    }

    fn watch(&self) -> Result<Receiver<TransportEvent>> {
        let (tx, rx) = mpsc::channel();
        let phones = lock(&self.hub.phones);
        for p in phones.values() {
            let st = p.lock();
            for m in st.media.values() {
                let _ = tx.send(TransportEvent::Added(p.device_info(&st, m)));
                if st.link.is_none() {
                    let _ = tx.send(TransportEvent::Offline(p.device_id(&m.id)));
                }
            }
        }
        let _ = tx.send(TransportEvent::EnumerationComplete);
        lock(&self.hub.watchers).push(tx);
        drop(phones);
        Ok(rx)
    }

    fn open(&self, id: &DeviceId) -> Result<Box<dyn Token>> {
        let (phone, medium) = self.find(id).ok_or_else(|| TokenError::UnknownDevice(id.to_string()))?;
        let info = {
            let st = phone.lock();
            let m = st.media.get(&medium).ok_or_else(|| TokenError::UnknownDevice(id.to_string()))?;
            phone.device_info(&st, m)
        };
        Ok(Box::new(PhoneToken { phone, medium, info }))
    }
}

/// One of a phone's media, on the PC (see the module documentation).
pub struct PhoneToken {
    phone: Arc<Phone>,
    medium: String,
    /// What was announced when it was opened (kept if the phone stops announcing it).
    info: DeviceInfo,
}

impl std::fmt::Debug for PhoneToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneToken").field("id", &self.info.id).finish()
    }
}

fn key_slot(k: &msg::Key) -> KeySlot {
    KeySlot { usage: k.usage, algorithm: k.algorithm, certificate: k.certificate.as_ref().map(|c| c.0.clone()) }
}

impl PhoneToken {
    /// The announced key of a slot.
    fn key(&self, container: &str, usage: KeyUsage) -> Result<msg::Key> {
        let st = self.phone.lock();
        let m = st.media.get(&self.medium).ok_or(TokenError::Removed)?;
        let c = m
            .containers
            .iter()
            .find(|c| c.name == container)
            .ok_or_else(|| TokenError::NotFound(format!("container {container}")))?;
        let k = match usage {
            KeyUsage::Encrypt => c.encrypt.as_ref(),
            KeyUsage::Sign | KeyUsage::Both => c.sign.as_ref(),
        };
        k.cloned().ok_or_else(|| TokenError::NotFound(format!("{usage} key pair in container {container}")))
    }
}

impl Token for PhoneToken {
    fn info(&self) -> DeviceInfo {
        let st = self.phone.lock();
        match st.media.get(&self.medium) {
            Some(m) => self.phone.device_info(&st, m),
            None => self.info.clone(),
        }
    }

    fn pin_info(&mut self, _kind: PinKind) -> Result<PinInfo> {
        Err(TokenError::NotSupported("the phone verifies the user itself".into()))
    }

    fn change_pin(&mut self, _kind: PinKind, _old: &kb_types::Pin, _new: &kb_types::Pin) -> Result<()> {
        Err(TokenError::NotSupported("the phone's PIN is changed on the phone".into()))
    }

    fn unblock_pin(&mut self, _so_pin: &kb_types::Pin, _new_user_pin: &kb_types::Pin) -> Result<()> {
        Err(TokenError::NotSupported("the phone's PIN is unblocked on the phone".into()))
    }

    fn containers(&mut self) -> Result<Vec<ContainerInfo>> {
        let st = self.phone.lock();
        let m = st.media.get(&self.medium).ok_or(TokenError::Removed)?;
        Ok(m.containers
            .iter()
            .map(|c| ContainerInfo {
                name: c.name.clone(),
                sign: c.sign.as_ref().map(key_slot),
                encrypt: c.encrypt.as_ref().map(key_slot),
            })
            .collect())
    }

    fn public_key(&mut self, container: &str, usage: KeyUsage) -> Result<PublicKey> {
        Ok(PublicKey::from_spki_der(&self.key(container, usage)?.public_key.0)?)
    }

    fn seals(&mut self) -> Result<Vec<SealInfo>> {
        Ok(Vec::new())
    }

    fn read_seal(&mut self, id: &str) -> Result<Vec<u8>> {
        Err(TokenError::NotFound(format!("seal {id}")))
    }

    fn open_session<'a>(&'a mut self, auth: UserAuth<'_>, ctx: &OpContext) -> Result<Box<dyn Session + 'a>> {
        if let UserAuth::Pin(_) = auth {
            return Err(TokenError::NotSupported("the phone verifies the user itself; it takes no PIN from the PC".into()));
        }
        ctx.check()?;
        if self.phone.lock().link.is_none() {
            return Err(TokenError::Offline);
        }
        // The user is verified on the phone with each request (PIN or the phone's own
        // cache, and the confirmation of what is shown): one round trip per operation.
        Ok(Box::new(PhoneSession { token: self, ctx: ctx.clone() }))
    }
}

/// A session on a phone's medium: each operation is one request to the phone.
struct PhoneSession<'a> {
    token: &'a PhoneToken,
    ctx: OpContext,
}

impl PhoneSession<'_> {
    fn context(&self) -> RequestContext {
        let p = self.ctx.purpose().unwrap_or_default();
        RequestContext {
            client: clean(&p.client),
            operation: clean_to(&p.operation, msg::MAX_NAME_CHARS),
            summary: clean(&p.summary),
            certificate: clean(&p.certificate),
        }
    }

    /// Send the request `build(id)` and wait for its answer (see the module documentation).
    fn request(&self, build: impl FnOnce(u64) -> Message) -> Result<Reply> {
        let ctx = &self.ctx;
        let phone = &self.token.phone;
        ctx.check()?;
        let (id, conn, name) = {
            let mut st = phone.lock();
            let conn = st.link.clone().ok_or(TokenError::Offline)?;
            let id = st.next_id;
            st.next_id = if id >= msg::MAX_ID { 1 } else { id + 1 };
            st.pending.insert(id, None);
            (id, conn, st.info.name.clone())
        };
        let forget = |phone: &Phone| {
            phone.lock().pending.remove(&id);
        };
        let bytes = match msg::encode(&build(id)) {
            Ok(b) => b,
            Err(e) => {
                forget(phone);
                return Err(message_error(&e));
            }
        };
        if let Err(e) = conn.send(&bytes) {
            forget(phone);
            return Err(match e {
                LinkError::TooLarge { .. } | LinkError::Failed { .. } => {
                    TokenError::Remote { code: e.code(), detail: e.to_string() }
                }
                LinkError::Closed | LinkError::TimedOut => TokenError::Offline,
            });
        }
        ctx.status(OpStatus::WaitingForMedium { what: name });
        // A stop wakes the wait below at once.
        let waker_phone = Arc::clone(phone);
        let _waker = ctx.on_stop(move |_| {
            let _st = waker_phone.lock();
            waker_phone.changed.notify_all();
        });
        loop {
            {
                let mut st = phone.lock();
                if let Some(answer) = take_answer(&mut st, id) {
                    return answer;
                }
                let wait = ctx.remaining().map_or(RECHECK, |r| r.min(RECHECK));
                if !wait.is_zero() {
                    st = phone.changed.wait_timeout(st, wait).unwrap_or_else(|e| e.into_inner()).0;
                    if let Some(answer) = take_answer(&mut st, id) {
                        return answer;
                    }
                }
            }
            // Not under the phone's lock: a stop runs the wakers, ours takes that lock.
            if let Some(why) = ctx.stopped() {
                forget(phone);
                if let Ok(bytes) = msg::encode(&Message::Cancel { id }) {
                    let _ = conn.send(&bytes);
                }
                return Err(why.into());
            }
        }
    }
}

/// Request `id`'s answer, if it is in.
fn take_answer(st: &mut PhoneState, id: u64) -> Option<Result<Reply>> {
    if matches!(st.pending.get(&id), Some(Some(_))) { st.pending.remove(&id).flatten() } else { None }
}

impl Session for PhoneSession<'_> {
    fn create_container(&mut self, _name: &str) -> Result<()> {
        Err(not_from_pc())
    }

    fn delete_container(&mut self, _name: &str) -> Result<()> {
        Err(not_from_pc())
    }

    fn generate_key_pair(&mut self, _container: &str, _usage: KeyUsage, _algorithm: Algorithm) -> Result<PublicKey> {
        Err(not_from_pc())
    }

    fn import_certificate(&mut self, _container: &str, _usage: KeyUsage, _der: &[u8]) -> Result<()> {
        Err(not_from_pc())
    }

    fn delete_certificate(&mut self, _container: &str, _usage: KeyUsage) -> Result<()> {
        Err(not_from_pc())
    }

    fn sign_digest(&mut self, container: &str, usage: KeyUsage, scheme: &SignatureScheme, digest: &[u8]) -> Result<Vec<u8>> {
        let key = self.token.key(container, usage)?;
        if !key.capabilities.sign {
            return Err(TokenError::NotSupported("the phone does not allow signing with this key".into()));
        }
        let request = SignRequest {
            id: 0,
            medium: self.token.medium.clone(),
            container: container.to_string(),
            usage,
            scheme: Scheme::from(scheme),
            digest: msg::Hex(digest.to_vec()),
            context: self.context(),
        };
        match self.request(move |id| Message::Sign(SignRequest { id, ..request }))? {
            Reply::Signature(s) => Ok(s),
            Reply::Plaintext(_) => Err(wrong_answer()),
        }
    }

    fn decrypt(
        &mut self,
        container: &str,
        usage: KeyUsage,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let key = self.token.key(container, usage)?;
        if !key.capabilities.decrypt {
            return Err(TokenError::NotSupported("the phone does not allow decryption with this key".into()));
        }
        let request = DecryptRequest {
            id: 0,
            medium: self.token.medium.clone(),
            container: container.to_string(),
            usage,
            ciphertext: msg::B64(ciphertext.to_vec()),
            padding: padding.into(),
            context: self.context(),
        };
        match self.request(move |id| Message::Decrypt(DecryptRequest { id, ..request }))? {
            Reply::Plaintext(p) => Ok(p),
            Reply::Signature(_) => Err(wrong_answer()),
        }
    }

    fn write_seal(&mut self, _id: &str, _name: &str, _mime: &str, _image: &[u8]) -> Result<()> {
        Err(not_from_pc())
    }

    fn delete_seal(&mut self, _id: &str) -> Result<()> {
        Err(not_from_pc())
    }
}

fn not_from_pc() -> TokenError {
    TokenError::NotSupported("a phone's keys and certificates are managed on the phone".into())
}

fn wrong_answer() -> TokenError {
    TokenError::Remote { code: ErrorCode::PhoneMessageInvalid, detail: "the phone answered with the wrong kind of result".into() }
}
