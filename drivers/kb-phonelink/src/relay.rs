//! The relay transport: the PC and the phone meet at a NATS server (Debian's
//! `nats-server`) that forwards opaque frames, for office networks that keep Wi-Fi clients
//! apart. FIDO caBLE's tunnel server is the model; the relay is not ours: a CA or an IT
//! department runs and scales NATS. `docs/relay.md` has the design and the deployment guide.
//!
//! A tunnel is a random [`TunnelId`] carried in the pairing QR inside a [`RelayEndpoint`].
//! Each end holds one NATS connection with one subscription: frames for the PC travel on
//! `kb.t.<tunnel>.pc`, frames for the phone on `kb.t.<tunnel>.ph`. Every NATS message is a
//! 13-byte tunnel header (kind, the sender's session, a counter) and, for data, one frame:
//!
//! - `HELLO` (sent on open, then every `hello_interval` until the peer answers, and again
//!   after the NATS connection comes back): "I am subscribed; session S has sent N frames".
//!   Core NATS drops what nobody is subscribed to, so frames wait in the pipe's bounded
//!   channel until the peer has said hello.
//! - `READY`: the answer to a `HELLO`, with the same counter.
//! - `DATA`: one frame, numbered from 0. A gap in the numbers, or a peer whose counter does
//!   not match what arrived, ends the tunnel ([`TunnelEnd::FramesLost`]): the encrypted
//!   channel above never sees a hole.
//! - `CLOSE`: the sender closed its end.
//!
//! When nats-server restarts, async-nats reconnects by itself and the tunnel survives if no
//! frame was lost meanwhile (both ends say hello again and compare counters); otherwise it
//! ends with a reason ([`TunnelWatch::ended`]) and the layer above opens the same endpoint
//! again and redoes the handshake. The protocol logic ([`TunnelCore`]) does no I/O.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, Event, ServerError};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use kb_types::{ErrorCode, HasErrorCode};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::conn::LinkError;
use crate::frame::{FramePipe, MAX_FRAME};

/// Bytes in a tunnel id (128 bits, from the OS's random source).
pub const TUNNEL_ID_LEN: usize = 16;
/// Bytes the tunnel adds to each NATS message: kind (1), session (8), counter (4).
pub const HEADER_LEN: usize = 13;
/// The largest NATS message a tunnel sends: the relay's `max_payload` must be at least this.
pub const MAX_PAYLOAD: usize = MAX_FRAME + HEADER_LEN;
/// The longest relay URL an endpoint carries (it goes into a QR code).
pub const MAX_URL_LEN: usize = 255;
/// The first tokens of every tunnel subject.
pub const SUBJECT_PREFIX: &str = "kb.t";

/// A tunnel's id: 128 random bits, the one thing both ends must share to meet. It is no
/// key (the relay sees it in every subject) but whoever knows it can disturb the tunnel,
/// so `Debug` shows only its first 4 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelId([u8; TUNNEL_ID_LEN]);

impl TunnelId {
    /// A fresh random id.
    pub fn random() -> Result<Self, RelayError> {
        let mut b = [0u8; TUNNEL_ID_LEN];
        getrandom::fill(&mut b).map_err(|_| RelayError::Random)?;
        Ok(TunnelId(b))
    }

    /// An id from its bytes (e.g. derived by the layer above for a paired phone).
    pub fn from_bytes(b: [u8; TUNNEL_ID_LEN]) -> Self {
        TunnelId(b)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; TUNNEL_ID_LEN] {
        &self.0
    }

    /// Lowercase hex: the id's token in NATS subjects.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TunnelId({}…)", hex::encode(&self.0[..4]))
    }
}

/// Which end of a tunnel this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The PC (KeyBridge): reads `kb.t.<tunnel>.pc`, writes `kb.t.<tunnel>.ph`.
    Pc,
    /// The phone: reads `kb.t.<tunnel>.ph`, writes `kb.t.<tunnel>.pc`.
    Phone,
}

impl Role {
    /// The last subject token of frames *to* this end.
    pub fn token(self) -> &'static str {
        match self {
            Role::Pc => "pc",
            Role::Phone => "ph",
        }
    }

    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Pc => Role::Phone,
            Role::Phone => Role::Pc,
        }
    }
}

/// Where the two ends meet: the relay's URL and the tunnel. Carried in the pairing QR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayEndpoint {
    /// `nats://`, `tls://` (TCP, for the PC), `ws://` or `wss://` (WebSocket, for phones);
    /// several URLs of one cluster may be given separated by commas.
    pub url: String,
    /// The tunnel.
    pub tunnel: TunnelId,
}

impl RelayEndpoint {
    /// An endpoint, after checking the URL.
    pub fn new(url: impl Into<String>, tunnel: TunnelId) -> Result<Self, RelayError> {
        let url = url.into();
        check_url(&url)?;
        Ok(RelayEndpoint { url, tunnel })
    }

    /// The compact encoding for the QR: the 16 tunnel-id bytes, then the URL's bytes (the
    /// length comes from the container the caller embeds it in).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(TUNNEL_ID_LEN + self.url.len());
        v.extend_from_slice(&self.tunnel.0);
        v.extend_from_slice(self.url.as_bytes());
        v
    }

    /// Decodes [`to_bytes`](Self::to_bytes), checking the URL.
    pub fn from_bytes(b: &[u8]) -> Result<Self, RelayError> {
        let (id, url) = b
            .split_first_chunk::<TUNNEL_ID_LEN>()
            .ok_or_else(|| RelayError::EndpointInvalid("shorter than a tunnel id".into()))?;
        let url = std::str::from_utf8(url).map_err(|_| RelayError::EndpointInvalid("the URL is not UTF-8".into()))?;
        RelayEndpoint::new(url, TunnelId(*id))
    }

    /// The subject that carries frames to `to`.
    pub fn subject(&self, to: Role) -> String {
        format!("{SUBJECT_PREFIX}.{}.{}", self.tunnel.to_hex(), to.token())
    }
}

fn check_url(url: &str) -> Result<(), RelayError> {
    let bad = |why: &str| Err(RelayError::EndpointInvalid(why.to_string()));
    if url.is_empty() || url.len() > MAX_URL_LEN {
        return bad("the URL is empty or longer than 255 bytes");
    }
    if !url.bytes().all(|c| c.is_ascii_graphic()) {
        return bad("the URL has spaces or non-ASCII characters");
    }
    for part in url.split(',') {
        let rest = ["nats://", "tls://", "ws://", "wss://"].iter().find_map(|s| part.strip_prefix(s));
        match rest {
            Some(host) if !host.is_empty() => {}
            _ => return bad("each URL must be nats://, tls://, ws:// or wss:// with a host"),
        }
    }
    Ok(())
}

/// Why opening a tunnel failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The endpoint is malformed.
    #[error("invalid relay endpoint: {0}")]
    EndpointInvalid(String),
    /// No relay answered within the connect timeout.
    #[error("the relay could not be reached: {0}")]
    Unreachable(String),
    /// The relay refused the credentials.
    #[error("the relay refused the connection: {0}")]
    Refused(String),
    /// The relay's `max_payload` is too small for a frame.
    #[error("the relay's max_payload of {server} bytes is below the {needed} a frame needs")]
    PayloadLimit {
        /// The server's limit.
        server: usize,
        /// What a tunnel needs ([`MAX_PAYLOAD`]).
        needed: usize,
    },
    /// The OS's random source failed.
    #[error("no randomness for a tunnel id")]
    Random,
}

impl HasErrorCode for RelayError {
    fn code(&self) -> ErrorCode {
        match self {
            RelayError::EndpointInvalid(_) => ErrorCode::RelayEndpointInvalid,
            RelayError::Unreachable(_) => ErrorCode::RelayUnreachable,
            RelayError::Refused(_) => ErrorCode::RelayRefused,
            RelayError::PayloadLimit { .. } => ErrorCode::RelayPayloadLimit,
            RelayError::Random => ErrorCode::Internal,
        }
    }
}

/// Why a tunnel ended. After it ends, the pipe's `rx` returns `None` and its `tx` fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelEnd {
    /// This end closed it (dropped the pipe's `tx` or `rx`).
    #[error("the tunnel was closed")]
    Closed,
    /// The peer closed its end.
    #[error("the peer closed the tunnel")]
    PeerClosed,
    /// The peer started over (a new session said hello): the layer above opens again.
    #[error("the peer opened the tunnel again")]
    PeerReplaced,
    /// The peer did not arrive within `peer_timeout`.
    #[error("the peer did not arrive in time")]
    PeerTimeout,
    /// The relay connection was lost and the tunnel was not re-established within
    /// `reconnect_timeout`.
    #[error("the relay connection was lost")]
    RelayLost,
    /// Frames were lost (the relay restarted or dropped them): the peer had sent `sent`
    /// frames when this end had received `received`.
    #[error("frames were lost on the relay: the peer sent {sent}, {received} arrived")]
    FramesLost {
        /// Frames the peer says it sent (or the number on the frame that arrived).
        sent: u32,
        /// Frames this end received.
        received: u32,
    },
    /// This end tried to send a frame larger than [`MAX_FRAME`]; it was not sent.
    #[error("a frame of {len} bytes exceeds the cap of {MAX_FRAME}")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
    },
    /// The relay refused a subscription or a publication (the credentials do not allow
    /// this end's subjects).
    #[error("the relay refused the tunnel's subjects: {0}")]
    Refused(String),
}

impl HasErrorCode for TunnelEnd {
    fn code(&self) -> ErrorCode {
        match self {
            TunnelEnd::Closed | TunnelEnd::PeerClosed | TunnelEnd::PeerReplaced => ErrorCode::RelayPeerLeft,
            TunnelEnd::PeerTimeout => ErrorCode::RelayPeerTimeout,
            TunnelEnd::RelayLost => ErrorCode::RelayLost,
            TunnelEnd::FramesLost { .. } => ErrorCode::RelayFramesLost,
            TunnelEnd::FrameTooLarge { .. } => ErrorCode::InputTooLarge,
            TunnelEnd::Refused(_) => ErrorCode::RelayRefused,
        }
    }
}

impl From<TunnelEnd> for LinkError {
    fn from(e: TunnelEnd) -> Self {
        match e {
            TunnelEnd::Closed => LinkError::Closed,
            TunnelEnd::FrameTooLarge { len } => LinkError::TooLarge { len, cap: MAX_FRAME },
            e => LinkError::Failed { code: e.code(), detail: e.to_string() },
        }
    }
}

// ---------------------------------------------------------------------------------------
// The wire: one NATS message = header + (for DATA) one frame.

type Session = [u8; 8];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hello = 1,
    Ready = 2,
    Data = 3,
    Close = 4,
}

#[derive(Debug, PartialEq, Eq)]
struct Msg<'a> {
    kind: Kind,
    session: Session,
    /// HELLO/READY: frames the sender has sent; DATA: the frame's number.
    n: u32,
    body: &'a [u8],
}

fn encode(kind: Kind, session: &Session, n: u32, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN + body.len());
    b.put_u8(kind as u8);
    b.put_slice(session);
    b.put_u32(n);
    b.put_slice(body);
    b.freeze()
}

fn parse(p: &[u8]) -> Option<Msg<'_>> {
    if p.len() > MAX_PAYLOAD {
        return None;
    }
    let (&k, rest) = p.split_first()?;
    let (session, rest) = rest.split_first_chunk::<8>()?;
    let (n, body) = rest.split_first_chunk::<4>()?;
    let kind = match k {
        1 => Kind::Hello,
        2 => Kind::Ready,
        3 => Kind::Data,
        4 => Kind::Close,
        _ => return None,
    };
    if kind != Kind::Data && !body.is_empty() {
        return None;
    }
    Some(Msg { kind, session: *session, n: u32::from_be_bytes(*n), body })
}

// ---------------------------------------------------------------------------------------
// The protocol, without I/O.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No peer yet.
    Waiting,
    /// Frames flow.
    Ready,
    /// The NATS connection dropped; waiting for the peer to confirm nothing was lost.
    Reconfirming,
}

/// What to do with one message from the relay.
#[derive(Debug, PartialEq, Eq)]
enum Step<'a> {
    /// Hand this frame to the layer above.
    Deliver(&'a [u8]),
    /// Send this to the peer.
    Reply(Bytes),
    /// Not for this tunnel session (malformed, foreign, stale): counted and ignored.
    Dropped,
    /// Accepted; nothing to do.
    Nothing,
    /// The tunnel is over.
    End(TunnelEnd),
}

/// One end's tunnel state: which peer session it is paired with and the frame counters.
#[derive(Debug)]
struct TunnelCore {
    me: Session,
    peer: Option<Session>,
    phase: Phase,
    sent: u32,
    received: u32,
}

impl TunnelCore {
    fn new(me: Session) -> Self {
        TunnelCore { me, peer: None, phase: Phase::Waiting, sent: 0, received: 0 }
    }

    fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    fn hello(&self) -> Bytes {
        encode(Kind::Hello, &self.me, self.sent, &[])
    }

    fn close(&self) -> Bytes {
        encode(Kind::Close, &self.me, self.sent, &[])
    }

    /// A frame for the peer; only while ready.
    fn data(&mut self, frame: &[u8]) -> Result<Bytes, TunnelEnd> {
        if frame.len() > MAX_FRAME {
            return Err(TunnelEnd::FrameTooLarge { len: frame.len() });
        }
        let b = encode(Kind::Data, &self.me, self.sent, frame);
        self.sent = self.sent.wrapping_add(1);
        Ok(b)
    }

    fn on_disconnected(&mut self) {
        if self.phase == Phase::Ready {
            self.phase = Phase::Reconfirming;
        }
    }

    fn on_wire<'a>(&mut self, payload: &'a [u8]) -> Step<'a> {
        let Some(m) = parse(payload) else { return Step::Dropped };
        if m.session == self.me {
            return Step::Dropped;
        }
        let paired = self.peer == Some(m.session);
        match m.kind {
            Kind::Hello | Kind::Ready => {
                match self.peer {
                    // A fresh peer has sent nothing; a counter means a stale session.
                    None if m.n != 0 => return Step::Dropped,
                    None => self.peer = Some(m.session),
                    Some(_) if paired => {
                        if m.n != self.received {
                            return Step::End(TunnelEnd::FramesLost { sent: m.n, received: self.received });
                        }
                    }
                    Some(_) if m.n == 0 => return Step::End(TunnelEnd::PeerReplaced),
                    Some(_) => return Step::Dropped,
                }
                self.phase = Phase::Ready;
                if m.kind == Kind::Hello { Step::Reply(encode(Kind::Ready, &self.me, self.sent, &[])) } else { Step::Nothing }
            }
            Kind::Data if paired => {
                if m.n != self.received {
                    return Step::End(TunnelEnd::FramesLost { sent: m.n, received: self.received });
                }
                self.received = self.received.wrapping_add(1);
                Step::Deliver(m.body)
            }
            Kind::Close if paired => Step::End(TunnelEnd::PeerClosed),
            Kind::Data | Kind::Close => Step::Dropped,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Opening a tunnel.

/// A NATS user and password (the relay's `kb-pc` or `kb-phone` user). `Debug` hides the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub user: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, REDACTED)", self.user)
    }
}

/// How a tunnel end behaves.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// The relay's user, if it requires one.
    pub credentials: Option<Credentials>,
    /// How long `open` keeps trying to reach the relay.
    pub connect_timeout: Duration,
    /// How long to wait for the peer's first hello (`None`: until the pipe is dropped).
    pub peer_timeout: Option<Duration>,
    /// How long a tunnel may stay without its relay connection (or without the peer's
    /// confirmation after it) before it ends with [`TunnelEnd::RelayLost`].
    pub reconnect_timeout: Duration,
    /// How often to say hello while the peer has not answered.
    pub hello_interval: Duration,
    /// Frames each direction of the pipe holds (the bound on frames written before the
    /// peer arrives).
    pub depth: usize,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            credentials: None,
            connect_timeout: Duration::from_secs(30),
            peer_timeout: None,
            reconnect_timeout: Duration::from_secs(60),
            hello_interval: Duration::from_secs(1),
            depth: 32,
        }
    }
}

/// Where a tunnel is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelState {
    /// Connected to the relay; the peer has not said hello yet. Frames written now wait.
    WaitingForPeer,
    /// Frames flow.
    Ready,
    /// The relay connection dropped; frames wait until both ends are back and nothing was
    /// lost.
    Reconnecting,
    /// Over; the pipe has ended.
    Ended(TunnelEnd),
}

/// Watches one tunnel from outside its pipe. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TunnelWatch {
    state: watch::Receiver<TunnelState>,
    dropped: Arc<AtomicU64>,
}

impl TunnelWatch {
    /// The state now.
    pub fn state(&self) -> TunnelState {
        self.state.borrow().clone()
    }

    /// Waits until frames flow (`Ok`) or the tunnel ends (`Err` with why).
    pub async fn ready(&self) -> Result<(), TunnelEnd> {
        let mut rx = self.state.clone();
        let s = rx
            .wait_for(|s| matches!(s, TunnelState::Ready | TunnelState::Ended(_)))
            .await
            .map(|s| s.clone())
            .unwrap_or(TunnelState::Ended(TunnelEnd::RelayLost));
        match s {
            TunnelState::Ended(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Waits until the tunnel ends; why.
    pub async fn ended(&self) -> TunnelEnd {
        let mut rx = self.state.clone();
        let s = rx.wait_for(|s| matches!(s, TunnelState::Ended(_))).await.map(|s| s.clone());
        match s {
            Ok(TunnelState::Ended(e)) => e,
            _ => TunnelEnd::RelayLost,
        }
    }

    /// Messages on this tunnel's subject that were not for it (malformed, from a foreign or
    /// stale session) and were ignored.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// An open tunnel end: the frames, and a watch on its life.
#[derive(Debug)]
pub struct Tunnel {
    /// Frames to and from the peer. Dropping `tx` (or `rx`) closes the tunnel; the peer's
    /// pipe then ends with [`TunnelEnd::PeerClosed`].
    pub pipe: FramePipe,
    /// The tunnel's state and, once over, why.
    pub watch: TunnelWatch,
}

/// Opens this end of a tunnel: connects to the relay (retrying until `connect_timeout`),
/// subscribes to this end's subject and starts saying hello. Returns as soon as the
/// subscription is in place; frames written before the peer arrives wait in the pipe.
pub async fn open(endpoint: &RelayEndpoint, role: Role, options: &RelayOptions) -> Result<Tunnel, RelayError> {
    check_url(&endpoint.url)?;
    let (ev_tx, ev_rx) = mpsc::channel::<Event>(64);
    let client = connect(endpoint, options, ev_tx).await?;
    let server = client.server_info().max_payload;
    if server < MAX_PAYLOAD {
        return Err(RelayError::PayloadLimit { server, needed: MAX_PAYLOAD });
    }
    let lost = |e: &dyn fmt::Display| RelayError::Unreachable(e.to_string());
    let sub = client.subscribe(endpoint.subject(role)).await.map_err(|e| lost(&e))?;
    client.flush().await.map_err(|e| lost(&e))?;

    let (app_tx, from_app) = mpsc::channel(options.depth.max(1));
    let (to_app, app_rx) = mpsc::channel(options.depth.max(1));
    let (state_tx, state_rx) = watch::channel(TunnelState::WaitingForPeer);
    let dropped = Arc::new(AtomicU64::new(0));
    let mut me = [0u8; 8];
    getrandom::fill(&mut me).map_err(|_| RelayError::Random)?;
    let pump = Pump {
        client,
        sub,
        events: ev_rx,
        from_app,
        to_app,
        core: TunnelCore::new(me),
        out: endpoint.subject(role.peer()),
        state: state_tx,
        dropped: dropped.clone(),
        options: options.clone(),
    };
    tokio::spawn(pump.run());
    Ok(Tunnel { pipe: FramePipe { tx: app_tx, rx: app_rx }, watch: TunnelWatch { state: state_rx, dropped } })
}

async fn connect(
    endpoint: &RelayEndpoint,
    options: &RelayOptions,
    events: mpsc::Sender<Event>,
) -> Result<async_nats::Client, RelayError> {
    let deadline = Instant::now() + options.connect_timeout;
    // The client reconnects by itself for about `reconnect_timeout` after a drop; past that
    // the tunnel has ended anyway.
    let max_reconnects = usize::try_from(options.reconnect_timeout.as_secs()).unwrap_or(usize::MAX).saturating_add(10);
    let mut attempt: u32 = 0;
    loop {
        let ev = events.clone();
        let mut o = ConnectOptions::new()
            .name("keybridge-relay")
            .no_echo()
            .subscription_capacity(1024)
            .connection_timeout(options.connect_timeout.min(Duration::from_secs(10)))
            .max_reconnects(max_reconnects)
            .reconnect_delay_callback(|n| Duration::from_millis(100 * n.min(10) as u64))
            .event_callback(move |e| {
                let ev = ev.clone();
                async move {
                    let _ = ev.try_send(e);
                }
            });
        if let Some(c) = &options.credentials {
            o = o.user_and_password(c.user.clone(), c.password.clone());
        }
        match o.connect(endpoint.url.as_str()).await {
            Ok(c) => return Ok(c),
            Err(e) => match e.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    return Err(RelayError::Refused(e.to_string()));
                }
                ConnectErrorKind::ServerParse => return Err(RelayError::EndpointInvalid(e.to_string())),
                _ if Instant::now() >= deadline => return Err(RelayError::Unreachable(e.to_string())),
                _ => {
                    attempt = attempt.saturating_add(1);
                    let wait = Duration::from_millis(100 * u64::from(attempt.min(10)));
                    tokio::time::sleep_until((Instant::now() + wait).min(deadline)).await;
                }
            },
        }
    }
}

/// The task that moves one tunnel end's frames between its pipe and NATS.
struct Pump {
    client: async_nats::Client,
    sub: async_nats::Subscriber,
    events: mpsc::Receiver<Event>,
    from_app: mpsc::Receiver<Vec<u8>>,
    to_app: mpsc::Sender<Vec<u8>>,
    core: TunnelCore,
    out: String,
    state: watch::Sender<TunnelState>,
    dropped: Arc<AtomicU64>,
    options: RelayOptions,
}

impl Pump {
    async fn send(&self, b: Bytes) -> Result<(), TunnelEnd> {
        self.client.publish(self.out.clone(), b).await.map_err(|_| TunnelEnd::RelayLost)
    }

    fn set(&self, s: TunnelState) {
        self.state.send_if_modified(|cur| {
            let changed = *cur != s;
            *cur = s;
            changed
        });
    }

    async fn run(mut self) {
        let end = self.serve().await;
        if end == TunnelEnd::Closed && self.core.peer.is_some() {
            // Tell the peer; the flush is bounded in case the relay is gone.
            let close = self.core.close();
            if self.send(close).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
            }
        }
        self.set(TunnelState::Ended(end));
    }

    async fn serve(&mut self) -> TunnelEnd {
        let mut hello = tokio::time::interval(self.options.hello_interval);
        hello.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut peer_deadline = self.options.peer_timeout.map(|t| Instant::now() + t);
        let mut relay_deadline: Option<Instant> = None;
        loop {
            let ready = self.core.is_ready();
            let deadline = match (peer_deadline, relay_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(Event::Disconnected) => {
                        self.core.on_disconnected();
                        relay_deadline.get_or_insert(Instant::now() + self.options.reconnect_timeout);
                        if self.core.peer.is_some() {
                            self.set(TunnelState::Reconnecting);
                        }
                    }
                    Some(Event::Connected) if !ready => {
                        if self.core.peer.is_none() {
                            relay_deadline = None;
                        }
                        let h = self.core.hello();
                        if let Err(e) = self.send(h).await {
                            return e;
                        }
                    }
                    Some(Event::ServerError(ServerError::Other(m)))
                        if m.to_ascii_lowercase().contains("permissions violation") =>
                    {
                        return TunnelEnd::Refused(m);
                    }
                    Some(Event::ServerError(ServerError::AuthorizationViolation)) => {
                        return TunnelEnd::Refused("authorization violation".into());
                    }
                    Some(Event::Closed | Event::ClientError(async_nats::ClientError::MaxReconnects)) | None => {
                        return TunnelEnd::RelayLost;
                    }
                    Some(_) => {}
                },
                m = self.sub.next() => {
                    let Some(m) = m else { return TunnelEnd::RelayLost };
                    match self.core.on_wire(&m.payload) {
                        Step::Deliver(f) => {
                            if self.to_app.send(f.to_vec()).await.is_err() {
                                return TunnelEnd::Closed;
                            }
                        }
                        Step::Reply(b) => {
                            if let Err(e) = self.send(b).await {
                                return e;
                            }
                        }
                        Step::Dropped => {
                            self.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Step::Nothing => {}
                        Step::End(e) => return e,
                    }
                    if !ready && self.core.is_ready() {
                        peer_deadline = None;
                        relay_deadline = None;
                        self.set(TunnelState::Ready);
                    }
                }
                f = self.from_app.recv(), if ready => {
                    let Some(f) = f else { return TunnelEnd::Closed };
                    match self.core.data(&f) {
                        Ok(b) => {
                            if let Err(e) = self.send(b).await {
                                return e;
                            }
                        }
                        Err(e) => return e,
                    }
                }
                () = self.to_app.closed() => return TunnelEnd::Closed,
                _ = hello.tick(), if !ready => {
                    if self.from_app.is_closed() && self.from_app.is_empty() {
                        return TunnelEnd::Closed;
                    }
                    if self.client.connection_state() == async_nats::connection::State::Connected {
                        let h = self.core.hello();
                        if let Err(e) = self.send(h).await {
                            return e;
                        }
                    }
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    return if peer_deadline.is_some_and(|d| d <= Instant::now()) {
                        TunnelEnd::PeerTimeout
                    } else {
                        TunnelEnd::RelayLost
                    };
                }
            }
        }
    }
}

async fn sleep_until(d: Option<Instant>) {
    match d {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> TunnelId {
        TunnelId([b; TUNNEL_ID_LEN])
    }

    #[test]
    fn an_endpoint_round_trips_through_its_compact_bytes() {
        let ep = RelayEndpoint::new("wss://relay.example.com:443", TunnelId::random().unwrap()).unwrap();
        let b = ep.to_bytes();
        assert_eq!(b.len(), 16 + ep.url.len());
        assert_eq!(RelayEndpoint::from_bytes(&b).unwrap(), ep);
        assert_ne!(TunnelId::random().unwrap(), TunnelId::random().unwrap());
    }

    #[test]
    fn bad_endpoints_are_refused() {
        for url in ["", "http://x", "nats://", "nats://a b", "nats://ok,https://no", &format!("nats://{}", "a".repeat(250))] {
            let e = RelayEndpoint::new(url, id(1)).unwrap_err();
            assert_eq!(e.code(), ErrorCode::RelayEndpointInvalid, "{url}");
        }
        assert!(RelayEndpoint::from_bytes(&[0; 15]).is_err());
        let mut b = vec![0; 16];
        b.extend_from_slice(&[0xff, 0xfe]);
        assert!(RelayEndpoint::from_bytes(&b).is_err());
        assert!(RelayEndpoint::new("nats://a:4222,nats://b:4222", id(1)).is_ok());
    }

    #[test]
    fn subjects_name_the_tunnel_and_the_receiving_end() {
        let ep = RelayEndpoint::new("nats://r", id(0xab)).unwrap();
        assert_eq!(ep.subject(Role::Pc), format!("kb.t.{}.pc", "ab".repeat(16)));
        assert_eq!(ep.subject(Role::Phone), format!("kb.t.{}.ph", "ab".repeat(16)));
        assert_eq!(format!("{:?}", ep.tunnel), "TunnelId(abababab…)");
    }

    #[test]
    fn messages_parse_back_and_junk_does_not() {
        let b = encode(Kind::Data, &[7; 8], 5, b"frame");
        assert_eq!(b.len(), HEADER_LEN + 5);
        assert_eq!(parse(&b), Some(Msg { kind: Kind::Data, session: [7; 8], n: 5, body: b"frame" }));
        assert_eq!(parse(&b[..12]), None);
        assert_eq!(parse(&encode(Kind::Data, &[7; 8], 0, &vec![0; MAX_FRAME])).map(|m| m.body.len()), Some(MAX_FRAME));
        assert_eq!(parse(&encode(Kind::Data, &[7; 8], 0, &vec![0; MAX_FRAME + 1])), None);
        let mut hello_with_body = encode(Kind::Hello, &[7; 8], 0, &[]).to_vec();
        hello_with_body.push(0);
        assert_eq!(parse(&hello_with_body), None);
        let mut bad_kind = b.to_vec();
        bad_kind[0] = 9;
        assert_eq!(parse(&bad_kind), None);
    }

    /// Feeds `from`'s message to `to`, returning what `to` does with it.
    fn pass(to: &mut TunnelCore, msg: &[u8]) -> Step<'static> {
        let msg: &'static [u8] = Box::leak(msg.to_vec().into_boxed_slice());
        to.on_wire(msg)
    }

    fn paired() -> (TunnelCore, TunnelCore) {
        let mut pc = TunnelCore::new([1; 8]);
        let mut ph = TunnelCore::new([2; 8]);
        let Step::Reply(ready) = pass(&mut pc, &ph.hello()) else { panic!("no READY") };
        assert_eq!(pass(&mut ph, &ready), Step::Nothing);
        assert!(pc.is_ready() && ph.is_ready());
        (pc, ph)
    }

    #[test]
    fn hello_and_ready_pair_the_ends_and_frames_flow_in_order() {
        let (mut pc, mut ph) = paired();
        for f in [&b"one"[..], b"two", b""] {
            let m = pc.data(f).unwrap();
            assert_eq!(pass(&mut ph, &m), Step::Deliver(f));
        }
        assert_eq!(pc.sent, 3);
        assert_eq!(ph.received, 3);
    }

    #[test]
    fn a_gap_in_the_frames_ends_the_tunnel() {
        let (mut pc, mut ph) = paired();
        let _lost = pc.data(b"one").unwrap();
        let two = pc.data(b"two").unwrap();
        assert_eq!(pass(&mut ph, &two), Step::End(TunnelEnd::FramesLost { sent: 1, received: 0 }));
    }

    #[test]
    fn after_a_reconnect_counters_are_compared() {
        // Nothing lost: both reconfirm and frames flow again.
        let (mut pc, mut ph) = paired();
        assert_eq!(pass(&mut ph, &pc.data(b"x").unwrap()), Step::Deliver(&b"x"[..]));
        pc.on_disconnected();
        ph.on_disconnected();
        assert!(!pc.is_ready());
        let Step::Reply(ready) = pass(&mut ph, &pc.hello()) else { panic!("no READY") };
        assert!(ph.is_ready());
        assert_eq!(pass(&mut pc, &ready), Step::Nothing);
        assert!(pc.is_ready());

        // A frame sent into the outage: the peer's hello tells the receiver it missed one.
        let (mut pc, mut ph) = paired();
        ph.on_disconnected();
        let _lost = pc.data(b"into the void").unwrap();
        let Step::Reply(_) = pass(&mut pc, &ph.hello()) else { panic!("no READY") };
        let ready = encode(Kind::Ready, &pc.me, pc.sent, &[]);
        assert_eq!(pass(&mut ph, &ready), Step::End(TunnelEnd::FramesLost { sent: 1, received: 0 }));
    }

    #[test]
    fn strangers_are_ignored_and_a_fresh_peer_replaces_the_old_one() {
        let (mut pc, mut ph) = paired();
        let stranger = TunnelCore::new([3; 8]);
        let mut stranger_data = TunnelCore::new([3; 8]);
        stranger_data.peer = Some(pc.me);
        stranger_data.phase = Phase::Ready;
        assert_eq!(pass(&mut pc, &stranger_data.data(b"evil").unwrap()), Step::Dropped);
        assert_eq!(pass(&mut pc, &stranger.close()), Step::Dropped);
        assert_eq!(pass(&mut pc, b"junk"), Step::Dropped);
        let echo = pc.hello();
        assert_eq!(pass(&mut pc, &echo), Step::Dropped, "its own echo");
        // A stale session (with a counter) is ignored, a fresh one ends the tunnel.
        let mut stale = TunnelCore::new([4; 8]);
        stale.sent = 9;
        assert_eq!(pass(&mut pc, &stale.hello()), Step::Dropped);
        assert_eq!(pass(&mut pc, &stranger.hello()), Step::End(TunnelEnd::PeerReplaced));
        // The real peer's close ends it.
        assert_eq!(pass(&mut ph, &pc.close()), Step::End(TunnelEnd::PeerClosed));
        // Data before pairing is not delivered.
        let mut fresh = TunnelCore::new([5; 8]);
        assert_eq!(pass(&mut fresh, &stranger_data.data(b"early").unwrap()), Step::Dropped);
    }

    #[test]
    fn oversized_frames_are_refused_before_sending() {
        let (mut pc, _ph) = paired();
        assert_eq!(pc.data(&vec![0; MAX_FRAME + 1]), Err(TunnelEnd::FrameTooLarge { len: MAX_FRAME + 1 }));
        assert_eq!(pc.sent, 0);
        assert!(pc.data(&vec![0; MAX_FRAME]).is_ok());
    }

    #[test]
    fn ends_carry_stable_codes() {
        assert_eq!(TunnelEnd::RelayLost.code(), ErrorCode::RelayLost);
        assert_eq!(LinkError::from(TunnelEnd::Closed), LinkError::Closed);
        assert_eq!(LinkError::from(TunnelEnd::FramesLost { sent: 1, received: 0 }).code(), ErrorCode::RelayFramesLost);
        assert!(!format!("{:?}", Credentials { user: "u".into(), password: "hunter2".into() }).contains("hunter2"));
    }
}
