//! The PC side: an endpoint with the PC's static key that shows pairing offers, accepts
//! handshakes from any transport, asks the user to confirm new phones, and hands the
//! layers above a [`MessageConn`] per trusted phone.
//!
//! Usable from a blocking thread ([`PcEndpoint::next_event`]) and from async code
//! ([`PcEndpoint::next_event_async`]); everything else is a quick non-blocking call.

use crate::channel::{Channel, LinkConfig};
use crate::conn::{LinkError, MessageConn, PeerId};
use crate::direct::{Admission, DirectListener, HandshakePool, Incoming, PipeSink};
use crate::frame::FramePipe;
use crate::handshake::{self, Options, PcPairing, PcReconnect, StaticKey, pairing_offer_id};
use crate::qr::{Endpoint, OFFER_ID_LEN, Offer};
use crate::rt::LinkRuntime;
use crate::store::{Lookup, PairingStore};
use crate::wire::{FrameType, Record, clean_name, err, parse_frame};
use kb_types::ErrorCode;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, oneshot};
use zeroize::Zeroizing;

/// The PC endpoint's settings.
#[derive(Clone, Debug)]
pub struct PcConfig {
    /// Link limits and timers.
    pub link: LinkConfig,
    /// How long a pairing offer is valid (rounded up to whole seconds).
    pub offer_ttl: Duration,
    /// Unfinished handshakes at once (all transports); a full pool drops its oldest.
    pub max_pending: usize,
    /// The name phones show for this PC (sent in the PC's hello).
    pub name: String,
}

impl Default for PcConfig {
    fn default() -> Self {
        Self { link: LinkConfig::default(), offer_ttl: Duration::from_secs(300), max_pending: 16, name: "KeyBridge".to_owned() }
    }
}

/// A pairing offer to show as a QR code.
#[derive(Clone)]
pub struct PairingOffer {
    /// The string to encode in the QR (`KB1:…`).
    pub text: String,
    /// When it stops working.
    pub expires: SystemTime,
    /// The endpoints it names.
    pub endpoints: Vec<Endpoint>,
}

impl std::fmt::Debug for PairingOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The text holds the one-time secret.
        f.debug_struct("PairingOffer").field("expires", &self.expires).field("endpoints", &self.endpoints).finish()
    }
}

/// Identifies a new phone waiting for the user's confirmation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PairingRequestId(pub u64);

/// What the endpoint reports.
pub enum PcEvent {
    /// A new phone finished the pairing handshake: show `code` and ask the user to compare
    /// it with the phone's screen, then call [`PcEndpoint::confirm`] or
    /// [`PcEndpoint::reject`].
    PairingRequest {
        /// Pass to `confirm` / `reject`.
        request: PairingRequestId,
        /// The phone's id.
        peer: PeerId,
        /// The name the phone gave.
        name: String,
        /// The 6-digit confirmation code.
        code: String,
    },
    /// A pairing request ended without a decision (the phone left or the time ran out).
    PairingEnded {
        /// Which request.
        request: PairingRequestId,
        /// Why.
        reason: LinkError,
    },
    /// A trusted phone is connected: a new one after `confirm`, or a paired one that
    /// reconnected.
    Connected {
        /// The phone's id.
        peer: PeerId,
        /// Its name.
        name: String,
        /// The link.
        conn: Arc<dyn MessageConn>,
        /// Whether this is a new pairing.
        new_pairing: bool,
    },
    /// A connection was refused (attacks, stale QR codes, unpaired or revoked phones).
    Refused {
        /// Why, as a stable code.
        code: ErrorCode,
        /// Details for the log.
        detail: String,
        /// The transport's description of the remote.
        remote: String,
    },
}

impl std::fmt::Debug for PcEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PcEvent::PairingRequest { request, peer, name, code } => {
                write!(f, "PairingRequest({request:?}, {peer}, {name:?}, code {code})")
            }
            PcEvent::PairingEnded { request, reason } => write!(f, "PairingEnded({request:?}, {reason})"),
            PcEvent::Connected { peer, name, new_pairing, .. } => write!(f, "Connected({peer}, {name:?}, new: {new_pairing})"),
            PcEvent::Refused { code, detail, remote } => write!(f, "Refused({code}, {detail}, {remote})"),
        }
    }
}

/// Why an offer id is no longer open.
#[derive(Clone, Copy)]
enum Retired {
    Used,
    Replaced,
}

struct OpenOffer {
    offer: Offer,
    used: bool,
}

#[derive(Default)]
struct State {
    offer: Option<OpenOffer>,
    retired: VecDeque<([u8; OFFER_ID_LEN], Retired)>,
    direct: Option<DirectListener>,
    requests: HashMap<u64, oneshot::Sender<bool>>,
    next_request: u64,
}

#[derive(Default)]
struct Events {
    q: Mutex<VecDeque<PcEvent>>,
    cv: Condvar,
    notify: Notify,
}

impl Events {
    fn push(&self, e: PcEvent) {
        self.q.lock().unwrap_or_else(|p| p.into_inner()).push_back(e);
        self.cv.notify_all();
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
}

struct Inner {
    key: StaticKey,
    store: Arc<PairingStore>,
    cfg: PcConfig,
    rt: LinkRuntime,
    pool: Arc<HandshakePool>,
    state: Mutex<State>,
    events: Events,
    live: Mutex<HashMap<PeerId, Weak<Channel>>>,
}

/// The PC's phone-link endpoint. Cheap to clone.
#[derive(Clone)]
pub struct PcEndpoint {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PcEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PcEndpoint({})", self.inner.key.peer_id())
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl PcEndpoint {
    /// An endpoint with the PC key from `store` (created on first use).
    pub fn new(store: Arc<PairingStore>, cfg: PcConfig, rt: LinkRuntime) -> Result<Self, LinkError> {
        let key = store.pc_key()?;
        let pool = HandshakePool::new(cfg.max_pending);
        let inner =
            Inner { key, store, cfg, rt, pool, state: Mutex::default(), events: Events::default(), live: Mutex::default() };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The PC's id (what phones see as their peer).
    pub fn pc_id(&self) -> PeerId {
        self.inner.key.peer_id()
    }

    /// The pairing store.
    pub fn store(&self) -> &Arc<PairingStore> {
        &self.inner.store
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open the direct LAN listener on `addrs` (while pairing is open or a paired phone is
    /// expected). Returns the bound addresses. Replaces a listener already open.
    pub fn open_direct(&self, addrs: &[SocketAddr]) -> Result<Vec<SocketAddr>, LinkError> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let sink: PipeSink = Arc::new(move |incoming| {
            let Some(inner) = weak.upgrade() else { return };
            match incoming {
                Incoming::Pipe(pipe, admission) => Inner::spawn_handshake(&inner, pipe, admission),
                Incoming::Refused { code, detail, remote } => inner.refused(&err(code, detail), &remote),
            }
        });
        let _enter = self.inner.rt.handle().enter();
        let l = DirectListener::open(addrs, &self.inner.cfg.link, self.inner.pool.clone(), sink)?;
        let bound = l.local_addrs().to_vec();
        self.state().direct = Some(l);
        Ok(bound)
    }

    /// Close the direct listener (established links go on).
    pub fn close_direct(&self) {
        self.state().direct = None;
    }

    /// The direct listener's addresses, when open.
    pub fn direct_addrs(&self) -> Vec<SocketAddr> {
        self.state().direct.as_ref().map(|d| d.local_addrs().to_vec()).unwrap_or_default()
    }

    /// Hand the endpoint a new link from any transport (the relay's tunnels).
    pub fn accept_pipe(&self, pipe: FramePipe, remote: &str) {
        let admission = Admission {
            ticket: self.inner.pool.admit(),
            deadline: tokio::time::Instant::now() + self.inner.cfg.link.handshake_timeout,
            remote: remote.to_owned(),
        };
        Inner::spawn_handshake(&self.inner, pipe, admission);
    }

    /// Show a new pairing offer naming the direct listener's addresses (a listener on
    /// every interface is named by this machine's LAN addresses: [`crate::lan`]), then
    /// `extra` endpoints (a relay tunnel). Replaces (and retires) the previous offer.
    pub fn start_pairing(&self, extra: &[Endpoint]) -> Result<PairingOffer, LinkError> {
        let bound = self.direct_addrs();
        let interfaces = if bound.iter().any(|a| a.ip().is_unspecified()) { crate::lan::interface_addrs() } else { Vec::new() };
        let mut endpoints: Vec<Endpoint> =
            crate::lan::advertised(&bound, &interfaces).into_iter().map(Endpoint::Direct).collect();
        endpoints.extend_from_slice(extra);
        if endpoints.is_empty() {
            return Err(err(ErrorCode::LinkNoEndpoint, "open the direct listener or give a relay endpoint"));
        }
        let rnd = |e| err(ErrorCode::Internal, format!("randomness: {e}"));
        let ttl = self.inner.cfg.offer_ttl.as_secs() + u64::from(self.inner.cfg.offer_ttl.subsec_nanos() > 0);
        let expires = (unix_now() + ttl).min(u64::from(u32::MAX)) as u32;
        let offer = Offer {
            pc_key: *self.inner.key.public(),
            offer_id: kb_crypto::rng::random_array().map_err(rnd)?,
            secret: Zeroizing::new(kb_crypto::rng::random_array().map_err(rnd)?),
            expires,
            endpoints: endpoints.clone(),
        };
        let text = offer.encode()?;
        let mut st = self.state();
        if let Some(old) = st.offer.take() {
            let why = if old.used { Retired::Used } else { Retired::Replaced };
            retire(&mut st, old.offer.offer_id, why);
        }
        st.offer = Some(OpenOffer { offer, used: false });
        Ok(PairingOffer { text, expires: UNIX_EPOCH + Duration::from_secs(u64::from(expires)), endpoints })
    }

    /// Withdraw the open offer.
    pub fn cancel_pairing(&self) {
        let mut st = self.state();
        if let Some(old) = st.offer.take() {
            retire(&mut st, old.offer.offer_id, Retired::Replaced);
        }
    }

    /// The user confirmed that the codes match: trust the phone.
    pub fn confirm(&self, request: PairingRequestId) -> Result<(), LinkError> {
        self.decide(request, true)
    }

    /// The user rejected the phone (the codes did not match, or it is not theirs).
    pub fn reject(&self, request: PairingRequestId) -> Result<(), LinkError> {
        self.decide(request, false)
    }

    fn decide(&self, request: PairingRequestId, yes: bool) -> Result<(), LinkError> {
        let tx = self.state().requests.remove(&request.0);
        match tx.map(|tx| tx.send(yes)) {
            Some(Ok(())) => Ok(()),
            _ => Err(err(ErrorCode::PairingNotConfirmed, "no such pairing request (it ended)")),
        }
    }

    /// The next event, waiting at most `timeout` (blocking).
    pub fn next_event(&self, timeout: Duration) -> Option<PcEvent> {
        let ev = &self.inner.events;
        let deadline = Instant::now() + timeout;
        let mut q = ev.q.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(e) = q.pop_front() {
                return Some(e);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            q = ev.cv.wait_timeout(q, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// The next event (async).
    pub async fn next_event_async(&self) -> PcEvent {
        let ev = &self.inner.events;
        loop {
            let notified = ev.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = ev.q.lock().unwrap_or_else(|p| p.into_inner()).pop_front() {
                return e;
            }
            notified.await;
        }
    }

    /// Revoke a paired phone: it is refused from now on, and its open link (if any) is
    /// closed with `phone_revoked`.
    pub fn revoke(&self, peer: &PeerId) -> Result<(), LinkError> {
        self.inner.store.revoke(peer)?;
        let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).remove(peer);
        if let Some(c) = live.and_then(|w| w.upgrade()) {
            c.close_with(ErrorCode::PhoneRevoked, "the pairing was revoked on the PC");
        }
        Ok(())
    }

    /// Unfinished handshakes now (for tests and status).
    pub fn pending_handshakes(&self) -> usize {
        self.inner.pool.pending()
    }
}

fn retire(st: &mut State, id: [u8; OFFER_ID_LEN], why: Retired) {
    st.retired.push_back((id, why));
    while st.retired.len() > 32 {
        st.retired.pop_front();
    }
}

/// Codes a refused peer is told before the handshake completes (nothing secret).
fn tell_refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::PairingOfferExpired
            | ErrorCode::PairingOfferUsed
            | ErrorCode::PairingOfferUnknown
            | ErrorCode::PairingProofFailed
            | ErrorCode::PhoneNotPaired
            | ErrorCode::PhoneRevoked
            | ErrorCode::LinkBusy
            | ErrorCode::LinkHandshakeTimeout
    )
}

/// A handshake that finished: the channel, who, and whether it is a new pairing.
struct Done {
    channel: Arc<Channel>,
    peer: PeerId,
    key: [u8; 33],
    name: String,
    code: String,
    new_pairing: bool,
}

async fn next_frame(pipe: &mut FramePipe) -> Result<Vec<u8>, LinkError> {
    pipe.rx.recv().await.ok_or_else(|| err(ErrorCode::LinkLost, "the phone went away during the handshake"))
}

async fn send_frame(pipe: &FramePipe, f: Vec<u8>) -> Result<(), LinkError> {
    pipe.tx.send(f).await.map_err(|_| err(ErrorCode::LinkLost, "the phone went away during the handshake"))
}

/// Tell the phone why (when the code is one it may know), and return the error.
async fn refuse(pipe: &FramePipe, e: LinkError) -> LinkError {
    if let LinkError::Failed { code, .. } = &e
        && tell_refusal(*code)
    {
        let _ = pipe.tx.send(handshake::refusal(*code)).await;
    }
    e
}

/// The phone's first record: its name.
async fn hello(channel: &Channel, within: Duration) -> Result<String, LinkError> {
    match channel.next_record(tokio::time::Instant::now() + within).await {
        Ok(Record::Hello { name }) => Ok(clean_name(&name)),
        Ok(other) => {
            let e = err(ErrorCode::LinkProtocol, format!("expected the phone's hello, got {other:?}"));
            channel.close_with(ErrorCode::LinkProtocol, "expected hello");
            Err(e)
        }
        Err(LinkError::TimedOut) => Err(err(ErrorCode::LinkHandshakeTimeout, "no hello from the phone")),
        Err(e) => Err(e),
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refused(&self, e: &LinkError, remote: &str) {
        let (code, detail) = match e {
            LinkError::Failed { code, detail } => (*code, detail.clone()),
            other => (ErrorCode::LinkLost, other.to_string()),
        };
        tracing::info!(%remote, code = code.number(), %detail, "phone link: connection refused");
        self.events.push(PcEvent::Refused { code, detail, remote: remote.to_owned() });
    }

    fn spawn_handshake(this: &Arc<Inner>, pipe: FramePipe, admission: Admission) {
        let inner = this.clone();
        this.rt.handle().spawn(async move { inner.serve(pipe, admission).await });
    }

    async fn serve(self: Arc<Self>, pipe: FramePipe, admission: Admission) {
        let Admission { ticket, deadline, remote } = admission;
        let evicted = ticket.evicted.clone();
        let result = tokio::select! {
            r = tokio::time::timeout_at(deadline, self.handshake(pipe)) => {
                r.unwrap_or_else(|_| Err(err(ErrorCode::LinkHandshakeTimeout, "the handshake did not finish in time")))
            }
            _ = evicted.notified() => Err(err(ErrorCode::LinkBusy, "too many unfinished handshakes; this, the oldest, was dropped")),
        };
        drop(ticket);
        match result {
            Err(e) => self.refused(&e, &remote),
            Ok(done) if done.new_pairing => self.await_confirmation(done).await,
            Ok(done) => self.connected(done),
        }
    }

    fn connected(&self, d: Done) {
        d.channel.set_ready();
        tracing::info!(peer = %d.peer, new = d.new_pairing, "phone link: phone connected");
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(d.peer.clone(), Arc::downgrade(&d.channel));
        self.events.push(PcEvent::Connected { peer: d.peer, name: d.name, conn: d.channel, new_pairing: d.new_pairing });
    }

    async fn handshake(&self, mut pipe: FramePipe) -> Result<Done, LinkError> {
        let f1 = next_frame(&mut pipe).await?;
        match parse_frame(&f1, handshake::MAX_HANDSHAKE_FRAME) {
            Ok((FrameType::PairInit, _)) => self.pair(pipe, f1).await,
            Ok((FrameType::ReconnectInit, _)) => self.reconnect(pipe, f1).await,
            Ok((t, _)) => Err(err(ErrorCode::LinkProtocol, format!("a handshake cannot start with {t:?}"))),
            Err(e) => Err(e),
        }
    }

    /// The open offer with this id, or why there is none.
    fn check_offer(&self, id: &[u8; OFFER_ID_LEN], consume: bool) -> Result<Offer, LinkError> {
        let mut st = self.state();
        if let Some(open) = st.offer.as_mut()
            && open.offer.offer_id == *id
        {
            if open.used {
                return Err(err(ErrorCode::PairingOfferUsed, "this QR code already paired a phone"));
            }
            if open.offer.is_expired(unix_now()) {
                return Err(err(ErrorCode::PairingOfferExpired, "this QR code has expired"));
            }
            open.used |= consume;
            return Ok(open.offer.clone());
        }
        match st.retired.iter().find(|(r, _)| r == id) {
            Some((_, Retired::Used)) => Err(err(ErrorCode::PairingOfferUsed, "this QR code already paired a phone")),
            _ => Err(err(ErrorCode::PairingOfferUnknown, "no open pairing with this QR code")),
        }
    }

    async fn pair(&self, mut pipe: FramePipe, f1: Vec<u8>) -> Result<Done, LinkError> {
        let id = pairing_offer_id(&f1)?;
        let offer = match self.check_offer(&id, false) {
            Ok(o) => o,
            Err(e) => return Err(refuse(&pipe, e).await),
        };
        let (hs, f2) = PcPairing::respond(&offer, &self.key, &f1, &Options::default())?;
        send_frame(&pipe, f2).await?;
        let f3 = next_frame(&mut pipe).await?;
        let est = match hs.finish(&f3) {
            Ok(est) => est,
            Err(e) => return Err(refuse(&pipe, e).await),
        };
        // First proven phone wins; a racing second one finds the offer used.
        if let Err(e) = self.check_offer(&id, true) {
            return Err(refuse(&pipe, e).await);
        }
        let key = est.remote_key;
        let peer = handshake::peer_id(&key);
        let code = est.code.clone();
        let channel = Channel::start(est, pipe, self.cfg.link.clone(), peer.clone(), self.rt.handle());
        // The PC's hello tells the phone its proof was accepted (only then does it show
        // the code).
        channel.send_record(Record::Hello { name: self.cfg.name.clone() })?;
        let name = hello(&channel, self.cfg.link.handshake_timeout).await?;
        Ok(Done { channel, peer, key, name, code, new_pairing: true })
    }

    async fn reconnect(&self, pipe: FramePipe, f1: Vec<u8>) -> Result<Done, LinkError> {
        let hs = PcReconnect::read_init(&self.key, &f1, &Options::default())?;
        let key = *hs.phone_key();
        let (peer, name, link_secret) = match self.store.lookup(&key)? {
            Lookup::Unknown => return Err(refuse(&pipe, err(ErrorCode::PhoneNotPaired, "unknown phone key")).await),
            Lookup::Revoked => return Err(refuse(&pipe, err(ErrorCode::PhoneRevoked, "revoked phone")).await),
            Lookup::Paired { peer, name, link_secret } => (peer, name, link_secret),
        };
        let (f2, est) = hs.respond(&link_secret)?;
        send_frame(&pipe, f2).await?;
        let code = est.code.clone();
        let channel = Channel::start(est, pipe, self.cfg.link.clone(), peer.clone(), self.rt.handle());
        // The phone proves it holds the link secret with its first record.
        hello(&channel, self.cfg.link.handshake_timeout).await.map_err(|e| match e {
            LinkError::Failed { code: ErrorCode::LinkIntegrity, .. } => {
                err(ErrorCode::PairingProofFailed, "the phone does not hold the pairing's link secret")
            }
            e => e,
        })?;
        channel.send_record(Record::Hello { name: self.cfg.name.clone() })?;
        self.store.touch(&peer)?;
        Ok(Done { channel, peer, key, name, code, new_pairing: false })
    }

    async fn await_confirmation(&self, d: Done) {
        let (tx, rx) = oneshot::channel();
        let request = {
            let mut st = self.state();
            st.next_request += 1;
            let id = st.next_request;
            st.requests.insert(id, tx);
            PairingRequestId(id)
        };
        self.events.push(PcEvent::PairingRequest { request, peer: d.peer.clone(), name: d.name.clone(), code: d.code.clone() });
        let decision = tokio::select! {
            r = rx => Ok(r.unwrap_or(false)),
            _ = tokio::time::sleep(self.cfg.confirm_timeout()) => {
                d.channel.close_with(ErrorCode::PairingNotConfirmed, "not confirmed in time");
                Err(err(ErrorCode::PairingNotConfirmed, "not confirmed in time"))
            }
            e = d.channel.closed() => Err(e),
        };
        self.state().requests.remove(&request.0);
        let reason = match decision {
            Ok(true) => match self.trust(&d) {
                Ok(()) => return self.connected(d),
                Err(e) => e,
            },
            Ok(false) => {
                d.channel.close_with(ErrorCode::PairingRejected, "rejected on the PC");
                err(ErrorCode::PairingRejected, "rejected on the PC")
            }
            Err(e) => e,
        };
        self.events.push(PcEvent::PairingEnded { request, reason });
    }

    /// Store the confirmed phone and give it its link secret.
    fn trust(&self, d: &Done) -> Result<(), LinkError> {
        let secret = Zeroizing::new(
            kb_crypto::rng::random_array::<32>().map_err(|e| err(ErrorCode::Internal, format!("randomness: {e}")))?,
        );
        if let Err(e) = self.store.add(&d.key, &d.name, &secret) {
            d.channel.close_with(ErrorCode::PairingStoreFailed, "the PC could not store the pairing");
            return Err(e);
        }
        d.channel.send_record(Record::Paired { link_secret: secret })
    }
}

impl PcConfig {
    fn confirm_timeout(&self) -> Duration {
        self.link.confirm_timeout
    }
}
