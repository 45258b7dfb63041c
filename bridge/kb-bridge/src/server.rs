//! The WebSocket server: accept on 127.0.0.1, check the handshake, then run each
//! connection — requests in flight on tokio's blocking pool, streams, events, limits.

use crate::activity::{PromptWatch, RequestState, Stop};
use crate::consent::ConnectionConsent;
use crate::error::fail;
use crate::handshake::{self, Client, Headers};
use crate::methods::{CallCtx, Service};
use crate::secret::ClientSecret;
use crate::streams::{OutTx, Outgoing, Routed, StreamTable, stop_error};
use futures_util::{SinkExt, StreamExt};
use kb_bridge_protocol::frame::{Frame, HEADER_LEN};
use kb_bridge_protocol::{
    Call, CancelResult, ErrorObject, Event, EventKind, HelloResult, Id, Input, Notification, OperationState, OutputMode, Reply,
    Response, SignInput, StreamCloseResult, StreamId, StreamOpenResult, SubscriptionResult, capability, negotiate, parse_request,
};
use kb_service::devices::DeviceEvent;
use kb_token::OpStatus;
use kb_types::ErrorCode;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, broadcast, mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request as HttpRequest, Response as HttpResponse};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

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
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningBridge {
    /// Where it listens (always 127.0.0.1).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
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

    /// Bind 127.0.0.1 (never any other address) and start serving.
    pub async fn start(self) -> std::io::Result<RunningBridge> {
        let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.service.config.port)).await?;
        let addr = listener.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        let events = spawn_event_fanout(&self.service);
        let shared = Arc::new(Shared {
            service: self.service,
            secret: self.secret,
            prompts: self.prompts,
            port: addr.port(),
            events,
            per_client: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(accept_loop(listener, shared, rx));
        tracing::info!(%addr, "bridge listening");
        Ok(RunningBridge { addr, shutdown, task })
    }
}

struct Shared {
    service: Arc<Service>,
    secret: ClientSecret,
    prompts: Arc<PromptWatch>,
    port: u16,
    events: broadcast::Sender<DeviceEvent>,
    /// Open connections per client.
    per_client: Mutex<HashMap<Client, usize>>,
}

/// Counts a connection against its client's share while it lives.
struct ClientSlot {
    shared: Arc<Shared>,
    client: Client,
}

impl ClientSlot {
    fn take(shared: &Arc<Shared>, client: &Client) -> Option<Self> {
        let mut m = shared.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(client.clone()).or_insert(0);
        if *n >= shared.service.config.max_connections_per_client {
            return None;
        }
        *n += 1;
        Some(ClientSlot { shared: Arc::clone(shared), client: client.clone() })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut m = self.shared.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.client);
            }
        }
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

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(shared.service.config.max_connections));
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
                // Bound to 127.0.0.1 this cannot happen; checked anyway, before a byte is read.
                if !peer.ip().is_loopback() {
                    tracing::warn!(%peer, "refused a peer that is not on loopback");
                    continue;
                }
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    tracing::warn!(%peer, "too many connections; refused");
                    continue;
                };
                let shared = Arc::clone(&shared);
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    serve_connection(tcp, peer, shared, stop).await;
                    drop(permit);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

fn refusal_response(r: &handshake::Refusal) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(r.body()));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
    if let Ok(v) = "application/json".parse() {
        resp.headers_mut().insert("content-type", v);
    }
    resp
}

async fn serve_connection(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let cfg = &shared.service.config;
    let ws_config = WebSocketConfig::default()
        // Text frames over the cap are answered with 1005 by us; only far larger
        // messages are cut by the WebSocket layer (close 1009).
        .max_message_size(Some((cfg.max_message_bytes * 4).max(cfg.max_chunk_bytes + HEADER_LEN)))
        .max_frame_size(Some((cfg.max_message_bytes * 4).max(cfg.max_chunk_bytes + HEADER_LEN)));
    let who: Arc<Mutex<Option<Client>>> = Arc::default();
    let who_cb = Arc::clone(&who);
    let shared_cb = Arc::clone(&shared);
    let callback = move |req: &HttpRequest, resp: HttpResponse| -> Result<HttpResponse, ErrorResponse> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let h = Headers { host: header("host"), origin: header("origin"), authorization: header("authorization") };
        let consent = &shared_cb.service.consent;
        match handshake::check(peer.ip(), h, shared_cb.port, &shared_cb.secret, |o| consent.denied(o)) {
            Ok(client) => {
                *who_cb.lock().unwrap_or_else(|e| e.into_inner()) = Some(client);
                Ok(resp)
            }
            Err(r) => {
                tracing::warn!(%peer, code = r.code.number(), detail = %r.detail, "handshake refused");
                Err(refusal_response(&r))
            }
        }
    };
    let accepted = tokio::time::timeout(
        cfg.handshake_timeout,
        tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(ws_config)),
    )
    .await;
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
    let Some(client) = who.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
    let Some(_slot) = ClientSlot::take(&shared, &client) else {
        tracing::warn!(%peer, %client, "too many connections from this client; closed");
        let mut ws = ws;
        let frame = CloseFrame { code: CloseCode::Policy, reason: Utf8Bytes::from("too many connections from this client") };
        let _ = tokio::time::timeout(cfg.send_timeout, ws.close(Some(frame))).await;
        return;
    };
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
                    Outgoing::Binary(b) => (Message::Binary(b.into()), false),
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
            let _ = sink.close().await;
        })
    };

    let conn = Arc::new(Conn {
        client,
        sdk: OnceLock::new(),
        consent: ConnectionConsent::default(),
        table: StreamTable::new(out_tx.clone(), cfg.max_chunk_bytes, cfg.max_unclaimed_upload_bytes, MAX_STREAMS),
        inflight: Mutex::new(HashMap::new()),
        subscriptions: Mutex::new(BTreeSet::new()),
        failures: Mutex::new(VecDeque::new()),
        out: out_tx.clone(),
        shared: Arc::clone(&shared),
    });
    let mut events = shared.events.subscribe();
    loop {
        tokio::select! {
            msg = stream.next() => {
                match msg {
                    Some(Ok(Message::Text(t))) => conn.on_text(t.as_bytes()).await,
                    Some(Ok(Message::Binary(b))) => conn.on_binary(&b).await,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::info!(%peer, error = %e, "bridge connection error");
                        // Too large for the WebSocket layer: say why before closing.
                        let _ = conn.out.try_send(Outgoing::Close(1009, "message too large".into()));
                        break;
                    }
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
    for state in conn.lock_inflight().values() {
        state.stop(Stop::Cancelled);
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
    table: StreamTable,
    inflight: Mutex<HashMap<Id, Arc<RequestState>>>,
    subscriptions: Mutex<BTreeSet<EventKind>>,
    failures: Mutex<VecDeque<Instant>>,
    out: OutTx,
    shared: Arc<Shared>,
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
    fn lock_inflight(&self) -> MutexGuard<'_, HashMap<Id, Arc<RequestState>>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn config(&self) -> &crate::BridgeConfig {
        &self.shared.service.config
    }

    async fn send(&self, r: Response) {
        if let Ok(t) = r.to_json() {
            let _ = self.out.send(Outgoing::Text(t)).await;
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

    /// Answer with an error, counting it; close the connection on a burst of failures.
    async fn send_failure(&self, id: Option<Id>, e: ErrorObject) {
        if self.failed() {
            let flood = fail(ErrorCode::TooManyRequests, "too many failed requests; closing the connection");
            self.send(Response::err(id, flood)).await;
            let _ = self.out.send(Outgoing::Close(1008, "too many failed requests".into())).await;
            return;
        }
        self.send(Response::err(id, e)).await;
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
            Call::Hello(p) => match negotiate(p.schema_version) {
                None => {
                    let e = fail(ErrorCode::SchemaVersionUnsupported, format!("schema version {} is too old", p.schema_version));
                    self.send_failure(Some(id), e).await
                }
                Some(v) => {
                    let _ = self.sdk.set(p.sdk.chars().take(64).collect());
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
                let state = self.lock_inflight().get(&p.id).cloned();
                if let Some(s) = &state {
                    s.stop(Stop::Cancelled);
                }
                self.send(Response::ok(id, &CancelResult { cancelled: state.is_some() })).await
            }
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
        let admitted = {
            let mut inflight = self.lock_inflight();
            if inflight.contains_key(&id) {
                Err(fail(ErrorCode::InvalidParameter, format!("a request with id {id} is already in flight")))
            } else if inflight.len() >= self.config().max_in_flight {
                Err(fail(ErrorCode::TooManyRequests, format!("at most {} requests in flight", self.config().max_in_flight)))
            } else {
                // What the request waits for reaches the client as `operation.status`.
                let (out, request) = (self.out.clone(), id.clone());
                let s = RequestState::with_status(self.config().operation_deadline, move |st| {
                    let (status, medium) = match st {
                        OpStatus::WaitingForPin => (OperationState::WaitingForPin, None),
                        OpStatus::WaitingForMedium { what } => (OperationState::WaitingForMedium, Some(what.clone())),
                        OpStatus::Working => (OperationState::Working, None),
                        _ => return,
                    };
                    let _ = out.try_send(notification(Event::OperationStatus { request: request.clone(), status, medium }));
                });
                s.progress();
                inflight.insert(id.clone(), Arc::clone(&s));
                Ok(s)
            }
        };
        let state = match admitted {
            Ok(s) => s,
            Err(e) => return self.send_failure(Some(id), e).await,
        };
        let conn = Arc::clone(self);
        tokio::spawn(async move {
            let streams = streams_of(&call);
            let worker = {
                let conn = Arc::clone(&conn);
                let state = Arc::clone(&state);
                let id = id.clone();
                tokio::task::spawn_blocking(move || conn.run(id, state, call))
            };
            let outcome = conn.watch(worker, &state).await;
            conn.lock_inflight().remove(&id);
            for s in streams {
                let _ = conn.table.close(s);
            }
            match outcome {
                Ok((reply, extra)) => {
                    let r = match reply.to_value() {
                        Ok(v) => Response::ok(id, &v),
                        Err(e) => Response::err(Some(id), fail(ErrorCode::Internal, e.to_string())),
                    };
                    conn.send(r).await;
                    for m in extra {
                        let _ = conn.out.send(m).await;
                    }
                }
                Err(e) => conn.send_failure(Some(id), e).await,
            }
        });
    }

    /// Wait for a worker, stopping it when cancelled or idle for too long.
    async fn watch(
        &self,
        mut worker: tokio::task::JoinHandle<Result<(Reply, Vec<Outgoing>), ErrorObject>>,
        state: &RequestState,
    ) -> Result<(Reply, Vec<Outgoing>), ErrorObject> {
        let timeout_ms = u64::try_from(self.config().request_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut tick = tokio::time::interval(WATCHDOG_TICK);
        loop {
            tokio::select! {
                r = &mut worker => {
                    return match r {
                        Ok(r) => r,
                        Err(e) => Err(fail(ErrorCode::Internal, format!("request worker failed: {e}"))),
                    };
                }
                _ = tick.tick() => {
                    if self.shared.prompts.any_open() {
                        state.progress();
                    }
                    if state.stopped().is_none() && state.idle_ms() > timeout_ms {
                        state.stop(Stop::TimedOut);
                    }
                    if let Some(s) = state.stopped() {
                        // Answer now; the worker notices the stop at its next read or
                        // write, or its result is dropped when the medium answers.
                        return Err(stop_error(s));
                    }
                }
            }
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
            Call::Hello(_) | Call::Cancel(_) | Call::StreamOpen(_) | Call::StreamClose(_) => {
                return Err(fail(ErrorCode::Internal, "handled on the connection"));
            }
        };
        Ok((reply, Vec::new()))
    }

    async fn on_binary(&self, bytes: &[u8]) {
        let routed = match Frame::decode(bytes, self.config().max_chunk_bytes) {
            Ok(frame) => matches!(self.table.route(frame).await, Routed::Ok),
            Err(e) => {
                tracing::debug!(detail = e.0, "bad binary frame");
                false
            }
        };
        // A bad frame, or one for a stream that is not open, counts as a failure.
        if !routed && self.failed() {
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
