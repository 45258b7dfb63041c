//! The WebSocket server: accept on 127.0.0.1 and ::1, check the handshake, then run
//! each connection — requests in flight on tokio's blocking pool, streams, events,
//! limits.
//!
//! What a connection may hold depends on consent. A connection still in its HTTP
//! upgrade sits in a small pool whose oldest member is evicted by a newcomer (also
//! when every connection slot is taken: its slot is freed at once); a web
//! connection without consent holds one slot of a small shared budget (bounded per
//! origin and in distinct origins), must send `hello` within seconds, runs one request
//! at a time, cannot open streams (so nothing is buffered for it) and is closed when it
//! idles. Native tools and granted sites draw on the rest, so a page that holds all it
//! can never locks them out. Grant changes (from any process) are applied at once:
//! the connections of a revoked or denied origin are closed.

use crate::activity::{PromptWatch, RequestState, Stop};
use crate::consent::ConnectionConsent;
use crate::error::fail;
use crate::handshake::{self, Client, Headers, Refusal};
use crate::methods::{CallCtx, Service};
use crate::secret::ClientSecret;
use crate::streams::{OutTx, Outgoing, Routed, StreamTable, stop_error};
use futures_util::{SinkExt, StreamExt};
use kb_bridge_protocol::frame::HEADER_LEN;
use kb_bridge_protocol::{
    Call, CancelResult, ErrorObject, Event, EventKind, HelloResult, Id, Input, Notification, OperationState, OutputMode, Reply,
    Response, SignInput, StreamCloseResult, StreamId, StreamOpenResult, SubscriptionResult, capability, negotiate, parse_request,
};
use kb_service::devices::DeviceEvent;
use kb_token::OpStatus;
use kb_types::ErrorCode;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request as HttpRequest, Response as HttpResponse};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};

/// How often a request's watchdog looks at it.
const WATCHDOG_TICK: Duration = Duration::from_millis(100);

/// Outgoing messages queued per connection before producers wait (a download stream's
/// frames are up to `max_chunk_bytes` each: 16 × 256 KiB = 4 MiB at most).
const OUT_QUEUE: usize = 16;

/// Open streams per connection.
const MAX_STREAMS: usize = 32;

/// A bridge ready to listen.
pub struct Bridge {
    service: Arc<Service>,
    secret: ClientSecret,
    prompts: Arc<PromptWatch>,
}

/// A listening bridge.
#[derive(Debug)]
pub struct RunningBridge {
    addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningBridge {
    /// Its IPv4 address (always 127.0.0.1).
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every address it listens on, as the sockets report them: 127.0.0.1 and (when the
    /// machine has IPv6) ::1, the same port.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.local_addr())
    }

    /// Stop accepting and close every connection.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

impl Bridge {
    /// A bridge over a service. `prompts` must be the watch of the
    /// [`crate::activity::WatchedPrompter`] the service's device manager asks through,
    /// so requests waiting on the user do not time out.
    pub fn new(service: Arc<Service>, secret: ClientSecret, prompts: Arc<PromptWatch>) -> Self {
        Bridge { service, secret, prompts }
    }

    /// Bind 127.0.0.1 and ::1 (never any other address) and start serving.
    pub async fn start(self) -> std::io::Result<RunningBridge> {
        let listeners = bind_loopbacks(self.service.config.port).await?;
        let addrs = listeners.iter().map(TcpListener::local_addr).collect::<std::io::Result<Vec<_>>>()?;
        let (shutdown, rx) = watch::channel(false);
        let events = spawn_event_fanout(&self.service);
        let shared = Arc::new(Shared {
            service: self.service,
            secret: self.secret,
            prompts: self.prompts,
            port: addrs[0].port(),
            events,
            per_client: Mutex::new(HashMap::new()),
            unconsented: Mutex::new(HashMap::new()),
            handshaking: Mutex::new(HandshakePool::default()),
        });
        spawn_grants_watch(&shared, rx.clone());
        let slots = Arc::new(Semaphore::new(shared.service.config.max_connections));
        let loops: Vec<_> = listeners
            .into_iter()
            .map(|l| tokio::spawn(accept_loop(l, Arc::clone(&shared), Arc::clone(&slots), rx.clone())))
            .collect();
        let task = tokio::spawn(async move {
            for l in loops {
                let _ = l.await;
            }
        });
        tracing::info!(?addrs, "bridge listening");
        Ok(RunningBridge { addrs, shutdown, task })
    }
}

/// Listen on 127.0.0.1 and on ::1 with the same port (`localhost` may resolve to
/// either first). A machine without IPv6 gets 127.0.0.1 alone. With port 0, a port
/// free on both is picked.
async fn bind_loopbacks(port: u16) -> std::io::Result<Vec<TcpListener>> {
    let mut tries = 0;
    loop {
        let v4 = TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)).await?;
        let p = v4.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), p)).await {
            Ok(v6) => return Ok(vec![v4, v6]),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && port == 0 && tries < 16 => tries += 1,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "no IPv6 loopback; listening on 127.0.0.1 only");
                return Ok(vec![v4]);
            }
        }
    }
}

/// Re-read the grants file whenever it may have changed, so that a grant revoked or a
/// site denied by another process (`keybridge bridge revoke`, the desktop app) applies
/// at once. In-process changes notify connections directly.
fn spawn_grants_watch(shared: &Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let store = Arc::clone(shared.service.consent.store());
    let mut tick = tokio::time::interval(shared.service.config.grants_poll);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let s = Arc::clone(&store);
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.refresh()).await {
                        tracing::warn!(error = %e, "the grants file changed and cannot be read; no site stays allowed until it is fixed");
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    });
}

struct Shared {
    service: Arc<Service>,
    secret: ClientSecret,
    prompts: Arc<PromptWatch>,
    port: u16,
    events: broadcast::Sender<DeviceEvent>,
    /// Open connections per client (`native`, or the origin).
    per_client: Mutex<HashMap<String, usize>>,
    /// Open web connections without consent, per origin.
    unconsented: Mutex<HashMap<String, usize>>,
    /// Connections in their HTTP upgrade.
    handshaking: Mutex<HandshakePool>,
}

/// Which count a [`Slot`] is held in.
#[derive(Clone, Copy, Debug)]
enum Pool {
    /// [`BridgeConfig::max_connections_per_client`](crate::BridgeConfig).
    PerClient,
    /// The budget of web connections without consent.
    Unconsented,
}

/// Counts a connection in a pool while it lives.
struct Slot {
    shared: Arc<Shared>,
    pool: Pool,
    key: String,
}

impl Slot {
    fn counts(shared: &Shared, pool: Pool) -> MutexGuard<'_, HashMap<String, usize>> {
        match pool {
            Pool::PerClient => &shared.per_client,
            Pool::Unconsented => &shared.unconsented,
        }
        .lock()
        .unwrap_or_else(|e| e.into_inner())
    }

    fn take(shared: &Arc<Shared>, pool: Pool, key: &str) -> Option<Self> {
        let cfg = &shared.service.config;
        let mut m = Self::counts(shared, pool);
        let n = m.get(key).copied().unwrap_or(0);
        let full = match pool {
            Pool::PerClient => n >= cfg.max_connections_per_client,
            Pool::Unconsented => {
                n >= cfg.max_unconsented_per_origin
                    || m.values().sum::<usize>() >= cfg.max_unconsented_connections
                    || (n == 0 && m.len() >= cfg.max_unconsented_origins)
            }
        };
        if full {
            return None;
        }
        m.insert(key.to_string(), n + 1);
        Some(Slot { shared: Arc::clone(shared), pool, key: key.to_string() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = Self::counts(&self.shared, self.pool);
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// What an accepted handshake holds: its client's slot, and while it has no consent,
/// a slot of the un-consented budget.
struct Admission {
    client: Client,
    slot: Slot,
    unconsented: Option<Slot>,
}

fn too_many(detail: &str) -> Refusal {
    Refusal::new(503, ErrorCode::TooManyRequests, detail)
}

/// Admit a client the handshake checks accepted, or refuse it with an HTTP answer.
fn admit(shared: &Arc<Shared>, client: Client) -> Result<Admission, Refusal> {
    let consent = &shared.service.consent;
    let unconsented = match &client {
        Client::Web(o) => {
            if let Some(why) = consent.refused_at_handshake(o) {
                return Err(Refusal::new(403, ErrorCode::OriginRejected, format!("{o} {why}")));
            }
            if consent.store().decision(o).is_some() {
                None
            } else {
                let s = Slot::take(shared, Pool::Unconsented, o)
                    .ok_or_else(|| too_many("too many connections from sites the user has not allowed; try again later"))?;
                Some(s)
            }
        }
        Client::Native => None,
    };
    let slot = Slot::take(shared, Pool::PerClient, &client.to_string())
        .ok_or_else(|| too_many("too many connections from this client"))?;
    Ok(Admission { client, slot, unconsented })
}

/// A connection's slot (one of `max_connections`), taken back at once from a
/// connection evicted from its upgrade.
type ConnSlot = Arc<Mutex<Option<OwnedSemaphorePermit>>>;

/// Connections in their HTTP upgrade, oldest first.
#[derive(Default)]
struct HandshakePool {
    next: u64,
    open: VecDeque<(u64, Arc<Notify>, ConnSlot)>,
}

impl HandshakePool {
    /// Tell the oldest member to go, and free its slot now (not when its task next runs:
    /// a newcomer must not be refused for a slot whose holder is already leaving).
    /// False if the pool is empty.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, oldest, slot)) = self.open.pop_front() else { return false };
        drop(slot.lock().unwrap_or_else(|e| e.into_inner()).take());
        oldest.notify_one();
        true
    }
}

/// A connection's place in the [`HandshakePool`] until its upgrade is done.
struct HandshakeTicket {
    shared: Arc<Shared>,
    id: u64,
    evicted: Arc<Notify>,
    slot: ConnSlot,
}

impl HandshakeTicket {
    /// Join the pool with the connection's slot; when the pool is full, the oldest
    /// member is told to go.
    fn join(shared: &Arc<Shared>, permit: OwnedSemaphorePermit) -> Self {
        let mut pool = shared.handshaking.lock().unwrap_or_else(|e| e.into_inner());
        while pool.open.len() >= shared.service.config.max_handshaking.max(1) {
            pool.evict_oldest();
        }
        pool.next += 1;
        let id = pool.next;
        let evicted = Arc::new(Notify::new());
        let slot: ConnSlot = Arc::new(Mutex::new(Some(permit)));
        pool.open.push_back((id, Arc::clone(&evicted), Arc::clone(&slot)));
        HandshakeTicket { shared: Arc::clone(shared), id, evicted, slot }
    }

    /// Leave the pool with the slot, for the connection's life; `None` if the connection
    /// was evicted (its slot already given back).
    fn finish(self) -> Option<OwnedSemaphorePermit> {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(self);
        slot
    }
}

impl Drop for HandshakeTicket {
    fn drop(&mut self) {
        let mut pool = self.shared.handshaking.lock().unwrap_or_else(|e| e.into_inner());
        pool.open.retain(|(id, _, _)| *id != self.id);
    }
}

/// Device events from the service, to every connection; the certificate index is kept
/// fresh on the way.
fn spawn_event_fanout(service: &Arc<Service>) -> broadcast::Sender<DeviceEvent> {
    let (tx, _) = broadcast::channel(256);
    let rx = service.manager.subscribe();
    let weak = Arc::downgrade(service);
    let out = tx.clone();
    let spawned = std::thread::Builder::new().name("kb-bridge events".into()).spawn(move || {
        while let Ok(ev) = rx.recv() {
            let Some(service) = weak.upgrade() else { break };
            match &ev {
                DeviceEvent::Removed(d) | DeviceEvent::CertificatesChanged(d) => service.certs.invalidate(d),
                DeviceEvent::Added(info) => service.certs.invalidate(&info.id),
                _ => {}
            }
            let _ = out.send(ev);
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the bridge's event thread; events will not be sent");
    }
    tx
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, slots: Arc<Semaphore>, mut shutdown: watch::Receiver<bool>) {
    let refusing = Arc::new(Semaphore::new(REFUSING));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Bound to loopback this cannot happen; checked anyway, before a byte is read.
                if !peer.ip().is_loopback() {
                    tracing::warn!(%peer, "refused a peer that is not on loopback");
                    continue;
                }
                // Full: if some slots are held by connections still in their upgrade,
                // the oldest of them goes (as when the handshake pool is full) and its
                // slot is this one's; refused only when every slot is an open connection.
                let permit = match Arc::clone(&slots).try_acquire_owned() {
                    Err(_) if shared.handshaking.lock().unwrap_or_else(|e| e.into_inner()).evict_oldest() => {
                        Arc::clone(&slots).try_acquire_owned()
                    }
                    other => other,
                };
                let Ok(permit) = permit else {
                    tracing::warn!(%peer, "too many connections; refused");
                    // The answer the document promises, by a few short-lived tasks at
                    // most (beyond them the connection is just closed).
                    if let Ok(p) = Arc::clone(&refusing).try_acquire_owned() {
                        tokio::spawn(async move {
                            refuse_over_capacity(tcp).await;
                            drop(p);
                        });
                    }
                    continue;
                };
                let ticket = HandshakeTicket::join(&shared, permit);
                let shared = Arc::clone(&shared);
                let stop = shutdown.clone();
                tokio::spawn(serve_connection(tcp, peer, shared, stop, ticket));
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// Connections over the limit being answered at once (per listener).
const REFUSING: usize = 16;

/// Answer a connection over the limit with `503` and a JSON error body, then close it
/// gracefully (its request is read and discarded for a moment, so the close does not
/// reset the connection before the client reads the answer).
async fn refuse_over_capacity(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = http_refusal(&too_many("too many connections; try again later"));
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(&answer).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// A refusal as raw HTTP, for a connection refused before its request is read.
fn http_refusal(r: &Refusal) -> Vec<u8> {
    let body = r.body();
    let reason = StatusCode::from_u16(r.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Refused");
    format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        r.status,
        body.len()
    )
    .into_bytes()
}

/// The three headers the checks read, each sent at most once and in printable ASCII.
fn headers_of(req: &HttpRequest) -> Result<Headers<'_>, Refusal> {
    let one = |name: &str| {
        let values: Vec<&[u8]> = req.headers().get_all(name).iter().map(|v| v.as_bytes()).collect();
        handshake::single_header(name, &values)
    };
    Ok(Headers { host: one("host")?, origin: one("origin")?, authorization: one("authorization")? })
}

/// The WebSocket close code for a read error: RFC 6455 §7.4.1.
fn close_code_for(e: &tokio_tungstenite::tungstenite::Error) -> Option<(u16, &'static str)> {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Capacity(_) => Some((1009, "message too large")),
        E::Utf8(_) => Some((1007, "text frame is not valid UTF-8")),
        E::Protocol(_) => Some((1002, "WebSocket protocol error")),
        _ => None,
    }
}

/// A client-supplied name (`hello.sdk`) as it may appear in the audit log, prompts and
/// the terminal: no control or bidirectional-formatting characters (they would forge
/// lines or hide text), at most 64 characters.
pub fn client_name(raw: &str) -> String {
    let bidi = |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
    let clean: String = raw.chars().filter(|c| !c.is_control() && !bidi(*c)).take(64).collect();
    let clean = clean.trim();
    if clean.is_empty() { "unnamed".to_string() } else { clean.to_string() }
}

fn refusal_response(r: &handshake::Refusal) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(r.body()));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
    if let Ok(v) = "application/json".parse() {
        resp.headers_mut().insert("content-type", v);
    }
    resp
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    ticket: HandshakeTicket,
) {
    let _ = tcp.set_nodelay(true);
    let cfg = &shared.service.config;
    let ws_config = WebSocketConfig::default()
        // Text frames over the cap are answered with 1005 by us; only far larger
        // messages are cut by the WebSocket layer (close 1009).
        .max_message_size(Some((cfg.max_message_bytes * 4).max(cfg.max_chunk_bytes + HEADER_LEN)))
        .max_frame_size(Some((cfg.max_message_bytes * 4).max(cfg.max_chunk_bytes + HEADER_LEN)));
    let who: Arc<Mutex<Option<Admission>>> = Arc::default();
    let who_cb = Arc::clone(&who);
    let shared_cb = Arc::clone(&shared);
    let callback = move |req: &HttpRequest, resp: HttpResponse| -> Result<HttpResponse, ErrorResponse> {
        let consent = &shared_cb.service.consent;
        let checked = headers_of(req)
            .and_then(|h| handshake::check(peer.ip(), h, shared_cb.port, &shared_cb.secret, |o| consent.denied(o)))
            .and_then(|client| admit(&shared_cb, client));
        match checked {
            Ok(admission) => {
                *who_cb.lock().unwrap_or_else(|e| e.into_inner()) = Some(admission);
                Ok(resp)
            }
            Err(r) => {
                tracing::warn!(%peer, code = r.code.number(), detail = %r.detail, "handshake refused");
                Err(refusal_response(&r))
            }
        }
    };
    let accepted = tokio::select! {
        r = tokio::time::timeout(cfg.handshake_timeout, tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(ws_config))) => r,
        _ = ticket.evicted.notified() => {
            tracing::info!(%peer, "handshake pool full; the oldest unfinished handshake was dropped");
            return;
        }
    };
    // The slot is the connection's from here on; gone if it was evicted just now.
    let Some(_slot) = ticket.finish() else { return };
    let ws = match accepted {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "handshake not completed in time; dropped");
            return;
        }
    };
    let Some(admission) = who.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
    let Admission { client, slot: _slot, unconsented } = admission;
    tracing::info!(%peer, %client, "bridge client connected");

    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(OUT_QUEUE);
    let dead = Arc::new(Notify::new());
    let is_dead = Arc::new(AtomicBool::new(false));
    let send_timeout = cfg.send_timeout;
    let writer = {
        let dead = Arc::clone(&dead);
        let is_dead = Arc::clone(&is_dead);
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let (msg, last) = match m {
                    Outgoing::Text(t) => (Message::Text(Utf8Bytes::from(t)), false),
                    Outgoing::Binary(b) => (Message::Binary(b), false),
                    Outgoing::Close(code, reason) => {
                        (Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from(reason) })), true)
                    }
                };
                match tokio::time::timeout(send_timeout, sink.send(msg)).await {
                    Ok(Ok(())) if !last => {}
                    Ok(Ok(())) => break,
                    Ok(Err(_)) => break,
                    Err(_) => {
                        tracing::warn!("bridge client does not read its messages; disconnected");
                        break;
                    }
                }
            }
            is_dead.store(true, Ordering::Release);
            dead.notify_one();
            // Bounded too: a client that stopped reading never takes the close frame,
            // and the socket closes only when this half goes.
            let _ = tokio::time::timeout(send_timeout, sink.close()).await;
        })
    };

    let consent = ConnectionConsent::default();
    if let Client::Web(o) = &client
        && shared.service.consent.store().decision(o).is_some()
    {
        // Admitted under the origin's grant: if the grant goes, so does the connection.
        consent.mark_granted();
    }
    let conn = Arc::new(Conn {
        client,
        sdk: OnceLock::new(),
        consent,
        unconsented: Mutex::new(unconsented),
        since: Instant::now(),
        last_active: Mutex::new(Instant::now()),
        table: StreamTable::new(out_tx.clone(), cfg.max_chunk_bytes, cfg.max_unclaimed_upload_bytes, MAX_STREAMS),
        inflight: Mutex::new(HashMap::new()),
        subscriptions: Mutex::new(BTreeSet::new()),
        failures: Mutex::new(VecDeque::new()),
        out: out_tx.clone(),
        shared: Arc::clone(&shared),
    });
    let mut events = shared.events.subscribe();
    let mut grants = shared.service.consent.store().subscribe();
    let mut housekeeping = tokio::time::interval(conn.housekeeping_tick());
    let mut watchdog = tokio::time::interval(WATCHDOG_TICK);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Requests start only from this loop, so the watchdog wakes it only while some
        // are in flight.
        let busy = !conn.lock_inflight().is_empty();
        tokio::select! {
            _ = watchdog.tick(), if busy => conn.watchdog().await,
            msg = stream.next() => {
                conn.touch();
                match msg {
                    Some(Ok(Message::Text(t))) => conn.on_text(t.as_bytes()).await,
                    Some(Ok(Message::Binary(b))) => conn.on_binary(b).await,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::info!(%peer, error = %e, "bridge connection error");
                        // Say why before closing (RFC 6455's codes).
                        if let Some((code, why)) = close_code_for(&e) {
                            let _ = conn.out.try_send(Outgoing::Close(code, why.into()));
                        }
                        break;
                    }
                }
            }
            changed = grants.changed() => {
                if changed.is_ok() && !shared.service.consent.still_allowed(&conn.client, &conn.consent) {
                    tracing::info!(%peer, client = %conn.client, "the site's access was withdrawn; closing its connection");
                    let _ = conn.out.try_send(Outgoing::Close(1008, "the user withdrew this site's access".into()));
                    break;
                }
                conn.release_unconsented_slot();
            }
            _ = housekeeping.tick() => {
                conn.release_unconsented_slot();
                if let Some((code, why)) = conn.expired() {
                    tracing::info!(%peer, client = %conn.client, why, "closing the connection");
                    let _ = conn.out.try_send(Outgoing::Close(code, why.into()));
                    break;
                }
            }
            ev = events.recv() => {
                match ev {
                    Ok(ev) => conn.on_device_event(ev).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(n, "a bridge client missed device events"),
                    Err(broadcast::error::RecvError::Closed) => {}
                }
            }
            _ = dead.notified() => break,
            _ = shutdown.changed() => {
                let _ = conn.out.try_send(Outgoing::Close(1001, "KeyBridge is shutting down".into()));
                break;
            }
        }
        if is_dead.load(Ordering::Acquire) {
            break;
        }
    }
    // Whatever is still running for this connection stops.
    for r in conn.lock_inflight().values() {
        r.state.stop(Stop::Cancelled);
    }
    drop(conn);
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    tracing::info!(%peer, "bridge client disconnected");
}

/// One connection's state.
struct Conn {
    client: Client,
    sdk: OnceLock<String>,
    consent: ConnectionConsent,
    /// The slot of the un-consented budget, until the connection has consent.
    unconsented: Mutex<Option<Slot>>,
    /// When the upgrade completed (for the `hello` deadline).
    since: Instant,
    /// When the client last sent something.
    last_active: Mutex<Instant>,
    table: StreamTable,
    inflight: Mutex<HashMap<Id, InFlight>>,
    subscriptions: Mutex<BTreeSet<EventKind>>,
    failures: Mutex<VecDeque<Instant>>,
    out: OutTx,
    shared: Arc<Shared>,
}

/// A request in flight: its liveness and the streams it names (freed when it ends).
#[derive(Clone)]
struct InFlight {
    state: Arc<RequestState>,
    streams: Vec<StreamId>,
}

/// A response as the text frame that carries it.
fn text(r: &Response) -> Option<Outgoing> {
    r.to_json().ok().map(Outgoing::Text)
}

fn notification(ev: Event) -> Outgoing {
    Outgoing::Text(serde_json::to_string(&Notification::from(ev)).unwrap_or_default())
}

/// The streams a call names (freed when the call ends).
fn streams_of(call: &Call) -> Vec<StreamId> {
    let input = |i: &Input| match i {
        Input::Stream(s) => Some(*s),
        Input::Data(_) => None,
    };
    let sign_input = |i: &SignInput| match i {
        SignInput::Stream(s) => Some(*s),
        _ => None,
    };
    let output = |o: &OutputMode| match o {
        OutputMode::Stream(s) => Some(*s),
        OutputMode::Inline => None,
    };
    match call {
        Call::Sign(p) => sign_input(&p.input).into_iter().collect(),
        Call::Verify(p) => p.content.as_ref().and_then(sign_input).into_iter().collect(),
        Call::Encrypt(p) => input(&p.input).into_iter().chain(output(&p.output)).collect(),
        Call::Decrypt(p) => input(&p.input).into_iter().chain(output(&p.output)).collect(),
        _ => Vec::new(),
    }
}

impl Conn {
    fn lock_inflight(&self) -> MutexGuard<'_, HashMap<Id, InFlight>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn config(&self) -> &crate::BridgeConfig {
        &self.shared.service.config
    }

    /// Whether methods run without asking anyone (native, granted, allowed once).
    fn consented(&self) -> bool {
        self.shared.service.consent.settled_allowed(&self.client, &self.consent)
    }

    fn touch(&self) {
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Once the connection has consent it no longer counts against the un-consented budget.
    fn release_unconsented_slot(&self) {
        let mut slot = self.unconsented.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() && self.consented() {
            *slot = None;
        }
    }

    /// How often the `hello` deadline and the idle limits are looked at.
    fn housekeeping_tick(&self) -> Duration {
        let cfg = self.config();
        (cfg.hello_timeout.min(cfg.unconsented_idle_timeout).min(cfg.idle_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Why the connection must close now, if it must: no `hello` in time, or idle (a
    /// connection without consent with nothing in flight; any connection with nothing
    /// in flight, no stream and no subscription for much longer).
    fn expired(&self) -> Option<(u16, &'static str)> {
        let cfg = self.config();
        if self.sdk.get().is_none() && self.since.elapsed() > cfg.hello_timeout {
            return Some((1008, "hello was not sent in time"));
        }
        if !self.lock_inflight().is_empty() {
            return None;
        }
        let idle = self.last_active.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
        if !self.consented() {
            return (idle > cfg.unconsented_idle_timeout).then_some((1008, "idle without the user's consent"));
        }
        let quiet = self.table.open_count() == 0 && self.subscriptions.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
        (quiet && idle > cfg.idle_timeout).then_some((1000, "idle"))
    }

    async fn send(&self, r: Response) {
        if let Some(m) = text(&r) {
            let _ = self.out.send(m).await;
        }
    }

    /// Count a failure; true when the connection went over the limit.
    fn failed(&self) -> bool {
        let cfg = self.config();
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while f.front().is_some_and(|t| now.duration_since(*t) > cfg.failure_window) {
            f.pop_front();
        }
        f.push_back(now);
        f.len() > cfg.max_failures as usize
    }

    /// What answers a failure, counting it: the error, or on a burst of failures the
    /// flood error and the close.
    fn failure(&self, id: Option<Id>, e: ErrorObject) -> Vec<Outgoing> {
        if self.failed() {
            let flood = fail(ErrorCode::TooManyRequests, "too many failed requests; closing the connection");
            return text(&Response::err(id, flood))
                .into_iter()
                .chain([Outgoing::Close(1008, "too many failed requests".into())])
                .collect();
        }
        text(&Response::err(id, e)).into_iter().collect()
    }

    /// Answer with an error, counting it; close the connection on a burst of failures.
    async fn send_failure(&self, id: Option<Id>, e: ErrorObject) {
        for m in self.failure(id, e) {
            let _ = self.out.send(m).await;
        }
    }

    async fn on_text(self: &Arc<Self>, bytes: &[u8]) {
        let req = match parse_request(bytes, self.config().max_message_bytes) {
            Ok(r) => r,
            Err(e) => {
                let id = e.id.clone();
                return self.send_failure(id, *e.error).await;
            }
        };
        let id = req.id.clone();
        if self.sdk.get().is_none() && !matches!(req.call, Call::Hello(_)) {
            return self.send_failure(Some(id), fail(ErrorCode::HelloRequired, "call hello first")).await;
        }
        match req.call {
            Call::Hello(_) if self.sdk.get().is_some() => {
                self.send_failure(Some(id), fail(ErrorCode::InvalidParameter, "hello was already called on this connection"))
                    .await
            }
            Call::Hello(p) => match negotiate(p.schema_version) {
                None => {
                    let e = fail(ErrorCode::SchemaVersionUnsupported, format!("schema version {} is too old", p.schema_version));
                    self.send_failure(Some(id), e).await
                }
                Some(v) => {
                    let _ = self.sdk.set(client_name(&p.sdk));
                    let r = HelloResult {
                        schema_version: v,
                        product: "KeyBridge".into(),
                        product_version: self.config().product_version.clone(),
                        capabilities: capability::ALL.iter().map(|c| c.to_string()).collect(),
                        limits: self.config().limits(),
                    };
                    self.send(Response::ok(id, &r)).await
                }
            },
            Call::Cancel(p) => {
                let found = self.lock_inflight().get(&p.id).cloned();
                if let Some(r) = &found {
                    r.state.stop(Stop::Cancelled);
                }
                self.send(Response::ok(id, &CancelResult { cancelled: found.is_some() })).await;
                // The cancelled request is answered now, not when its worker notices.
                if let Some(r) = found {
                    self.answer_stopped(p.id, &r).await;
                }
            }
            // Without consent a stream would hold buffered bytes for a page the user has
            // not allowed: opening one asks for consent first, like any method.
            call @ Call::StreamOpen(_) if !self.consented() => self.spawn_request(id, call).await,
            Call::StreamOpen(p) => match self.table.open(p.direction, p.length) {
                Ok(stream) => {
                    let r = StreamOpenResult { stream, max_chunk_bytes: self.config().max_chunk_bytes as u64 };
                    self.send(Response::ok(id, &r)).await
                }
                Err(e) => self.send_failure(Some(id), e).await,
            },
            Call::StreamClose(p) => match self.table.close(p.stream) {
                Ok(bytes) => self.send(Response::ok(id, &StreamCloseResult { stream: p.stream, bytes })).await,
                Err(e) => self.send_failure(Some(id), e).await,
            },
            call => self.spawn_request(id, call).await,
        }
    }

    async fn spawn_request(self: &Arc<Self>, id: Id, call: Call) {
        let streams = streams_of(&call);
        let admitted = {
            // Without consent, one request at a time: a page the user has not allowed
            // cannot park many threads waiting for the consent dialog.
            let limit = if self.consented() { self.config().max_in_flight } else { 1 };
            let mut inflight = self.lock_inflight();
            if inflight.contains_key(&id) {
                Err(fail(ErrorCode::InvalidParameter, format!("a request with id {id} is already in flight")))
            } else if inflight.len() >= limit {
                Err(fail(ErrorCode::TooManyRequests, format!("at most {limit} requests in flight")))
            } else {
                // What the request waits for reaches the client as `operation.status`;
                // `working` only ends such a wait (a request that waited for nothing
                // is simply answered: no extra message per signature).
                let (out, request, waited) = (self.out.clone(), id.clone(), AtomicBool::new(false));
                let s = RequestState::with_status(self.config().operation_deadline, move |st| {
                    let (status, medium) = match st {
                        OpStatus::WaitingForPin => (OperationState::WaitingForPin, None),
                        OpStatus::WaitingForMedium { what } => (OperationState::WaitingForMedium, Some(what.clone())),
                        OpStatus::Working if waited.load(Ordering::Acquire) => (OperationState::Working, None),
                        _ => return,
                    };
                    waited.store(true, Ordering::Release);
                    let _ = out.try_send(notification(Event::OperationStatus { request: request.clone(), status, medium }));
                });
                s.progress();
                inflight.insert(id.clone(), InFlight { state: Arc::clone(&s), streams: streams.clone() });
                Ok(s)
            }
        };
        let state = match admitted {
            Ok(s) => s,
            Err(e) => return self.send_failure(Some(id), e).await,
        };
        self.table.reserve(&streams);
        // The worker answers the request itself, straight into the connection's
        // outgoing queue: one hand-off to the blocking pool and one back to the writer.
        // A request stopped meanwhile (cancel, timeout, closed connection) is answered
        // by the connection instead (`answer_stopped`), and the worker's result dropped.
        let conn = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            // `ErrorObject` is what every method returns (see `run`).
            #[allow(clippy::result_large_err)]
            let outcome =
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| conn.run(id.clone(), Arc::clone(&state), call))) {
                    Ok(r) => r,
                    Err(_) => Err(fail(ErrorCode::Internal, "request worker failed")),
                };
            if !conn.settle(&id, &state, &streams) {
                return;
            }
            let messages = match outcome {
                Ok((reply, extra)) => {
                    let r = match reply.to_value() {
                        Ok(v) => Response::ok(id, &v),
                        Err(e) => Response::err(Some(id), fail(ErrorCode::Internal, e.to_string())),
                    };
                    text(&r).into_iter().chain(extra).collect()
                }
                Err(e) => conn.failure(Some(id), e),
            };
            for m in messages {
                // A blocking-pool thread, never a runtime worker: it may wait for room.
                if conn.out.blocking_send(m).is_err() {
                    break;
                }
            }
        });
    }

    /// Take the right to answer a request that ended or was stopped: true once, for
    /// whoever comes first. Its slot, its streams and its id are freed then.
    fn settle(&self, id: &Id, state: &Arc<RequestState>, streams: &[StreamId]) -> bool {
        if !state.claim_answer() {
            return false;
        }
        {
            // The id may already name a newer request (the client may reuse an id once
            // it has its answer).
            let mut inflight = self.lock_inflight();
            if inflight.get(id).is_some_and(|r| Arc::ptr_eq(&r.state, state)) {
                inflight.remove(id);
            }
        }
        self.release_unconsented_slot();
        for s in streams {
            let _ = self.table.close(*s);
        }
        true
    }

    /// Answer a stopped request now; the worker notices the stop at its next read or
    /// write, or its result is dropped when the medium answers.
    async fn answer_stopped(&self, id: Id, r: &InFlight) {
        let Some(why) = r.state.stopped() else { return };
        if self.settle(&id, &r.state, &r.streams) {
            self.send_failure(Some(id), stop_error(why)).await;
        }
    }

    /// The requests in flight, looked at every [`WATCHDOG_TICK`]: progress while a
    /// dialog is open, the idle timeout, and an answer for those stopped.
    async fn watchdog(&self) {
        let timeout_ms = u64::try_from(self.config().request_timeout.as_millis()).unwrap_or(u64::MAX);
        let requests: Vec<(Id, InFlight)> = self.lock_inflight().iter().map(|(id, r)| (id.clone(), r.clone())).collect();
        let dialog = self.shared.prompts.any_open();
        for (id, r) in requests {
            if dialog {
                r.state.progress();
            }
            if r.state.stopped().is_none() && r.state.idle_ms() > timeout_ms {
                r.state.stop(Stop::TimedOut);
            }
            self.answer_stopped(id, &r).await;
        }
    }

    /// The blocking part of a request.
    fn run(&self, id: Id, state: Arc<RequestState>, call: Call) -> Result<(Reply, Vec<Outgoing>), ErrorObject> {
        let service = &self.shared.service;
        let sdk = self.sdk.get().map(String::as_str).unwrap_or("");
        let ctx = CallCtx::new(&self.client, sdk, &self.consent, state, &self.table, id, Some(self.out.clone()));
        let reply = match call {
            Call::DevicesList(_) => Reply::DevicesList(service.devices_list(&ctx)?),
            Call::CertificatesList(p) => Reply::CertificatesList(service.certificates_list(&ctx, p)?),
            Call::CertificatesGet(p) => Reply::CertificatesGet(service.certificates_get(&ctx, p)?),
            Call::Sign(p) => Reply::Sign(service.sign(&ctx, p)?),
            Call::Verify(p) => Reply::Verify(service.verify(&ctx, p)?),
            Call::Encrypt(p) => Reply::Encrypt(service.encrypt(&ctx, p)?),
            Call::Decrypt(p) => Reply::Decrypt(service.decrypt(&ctx, p)?),
            Call::Subscribe(p) => {
                service.consent_for(&ctx, "subscribe")?;
                let mut subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
                let new_added = p.events.contains(&EventKind::DeviceAdded) && !subs.contains(&EventKind::DeviceAdded);
                subs.extend(p.events);
                let extra = if new_added {
                    service.manager.devices().into_iter().map(|device| notification(Event::DeviceAdded { device })).collect()
                } else {
                    Vec::new()
                };
                return Ok((Reply::Subscribe(SubscriptionResult { events: subs.iter().copied().collect() }), extra));
            }
            Call::Unsubscribe(p) => {
                let mut subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
                for e in &p.events {
                    subs.remove(e);
                }
                Reply::Unsubscribe(SubscriptionResult { events: subs.iter().copied().collect() })
            }
            Call::StreamOpen(p) => {
                service.consent_for(&ctx, "stream.open")?;
                let stream = self.table.open(p.direction, p.length)?;
                Reply::StreamOpen(StreamOpenResult { stream, max_chunk_bytes: self.config().max_chunk_bytes as u64 })
            }
            Call::Hello(_) | Call::Cancel(_) | Call::StreamClose(_) => {
                return Err(fail(ErrorCode::Internal, "handled on the connection"));
            }
        };
        Ok((reply, Vec::new()))
    }

    async fn on_binary(&self, bytes: Bytes) {
        // A bad frame, or one for a stream that is not open, counts as a failure.
        if !matches!(self.table.route(bytes).await, Routed::Ok) && self.failed() {
            let _ = self.out.send(Outgoing::Close(1008, "too many failed requests".into())).await;
        }
    }

    async fn on_device_event(&self, ev: DeviceEvent) {
        let (kind, event) = match ev {
            DeviceEvent::Added(device) => (EventKind::DeviceAdded, Event::DeviceAdded { device }),
            DeviceEvent::Removed(device) => (EventKind::DeviceRemoved, Event::DeviceRemoved { device }),
            DeviceEvent::CertificatesChanged(device) => (EventKind::CertificatesChanged, Event::CertificatesChanged { device }),
            DeviceEvent::Offline(device) => (EventKind::DeviceOffline, Event::DeviceOffline { device }),
            DeviceEvent::Online(device) => (EventKind::DeviceOnline, Event::DeviceOnline { device }),
            _ => return,
        };
        let subscribed = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner()).contains(&kind);
        if subscribed {
            let _ = self.out.send(notification(event)).await;
        }
    }
}
