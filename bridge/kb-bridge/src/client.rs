//! The Rust client SDK: connect (with an `Origin` like a page, or the per-user secret
//! like a native tool), typed calls, many in flight, events, upload and download streams.
//!
//! ```no_run
//! # async fn f() -> Result<(), kb_bridge::client::ClientError> {
//! use kb_bridge::client::{BridgeClient, ClientOptions};
//! use kb_bridge_protocol::{spec, DevicesListParams};
//! let c = BridgeClient::connect(ClientOptions::native("ws://127.0.0.1:17210", "my-bid-tool")?).await?;
//! let devices = c.call::<spec::DevicesList>(DevicesListParams {}).await?;
//! # Ok(()) }
//! ```

use crate::secret::ClientSecret;
use crate::streams::FramePool;
use futures_util::{SinkExt, StreamExt};
use kb_bridge_protocol::frame::{FLAG_FIN, Frame, HEADER_LEN, Sequencer};
use kb_bridge_protocol::{
    ErrorObject, HelloParams, HelloResult, Id, Notification, Response, RpcMethod, SCHEMA_VERSION, StreamDirection, StreamId,
    StreamOpenParams, spec,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not reach the bridge.
    #[error("connect: {0}")]
    Connect(String),
    /// The bridge refused the handshake (403 Host/Origin, 401 secret).
    #[error("refused ({status}): {} {}", error.code, error.message)]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error object from the response body.
        error: ErrorObject,
    },
    /// The method failed.
    #[error("{} {}: {}", .0.code, .0.data.name, .0.data.detail)]
    Rpc(ErrorObject),
    /// The connection closed.
    #[error("the connection closed")]
    Closed,
    /// Unexpected data from the server.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The KeyBridge / JSON-RPC code, when the server gave one.
    pub fn code(&self) -> Option<i32> {
        match self {
            ClientError::Refused { error, .. } | ClientError::Rpc(error) => Some(error.code),
            _ => None,
        }
    }
}

/// How to connect.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// `ws://127.0.0.1:17210`.
    pub url: String,
    /// Send this `Origin` (what a browser does); `None` for native tools.
    pub origin: Option<String>,
    /// The per-user secret (native tools).
    pub secret: Option<ClientSecret>,
    /// The SDK / tool name announced in `hello` (audited).
    pub sdk: String,
}

impl ClientOptions {
    /// A native tool: reads the secret from the default location
    /// (`$KEYBRIDGE_HOME/config/bridge-secret` or the per-user config directory).
    pub fn native(url: &str, sdk: &str) -> Result<Self, ClientError> {
        let paths = kb_service::settings::default_paths().map_err(|e| ClientError::Connect(e.to_string()))?;
        let path = ClientSecret::path_in(&paths.config_dir);
        let text = std::fs::read_to_string(&path).map_err(|e| ClientError::Connect(format!("{}: {e}", path.display())))?;
        let secret =
            ClientSecret::from_hex(&text).ok_or_else(|| ClientError::Connect(format!("{}: not a secret", path.display())))?;
        Ok(ClientOptions { url: url.into(), origin: None, secret: Some(secret), sdk: sdk.into() })
    }
}

type Pending = Arc<Mutex<HashMap<Id, oneshot::Sender<Response>>>>;
type WsSink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;
type Downloads = Arc<Mutex<HashMap<StreamId, Download>>>;

/// A download stream being received: its order check and where its payloads go.
#[derive(Debug)]
struct Download {
    seq: Sequencer,
    tx: mpsc::Sender<Chunk>,
}

/// Payloads of a download stream queued for the reader before the connection stops
/// reading (4 MiB of 256 KiB frames).
const DOWNLOAD_QUEUE: usize = 16;

/// Where a received binary frame goes: its stream's queue, with its payload (a view of
/// the message, not a copy) unless the frame ends the stream without one to deliver
/// (ABORT, out of order). The stream is forgotten once it ends.
fn route_download(downloads: &Downloads, message: &Bytes) -> Option<(mpsc::Sender<Chunk>, Bytes)> {
    let f = Frame::decode(message, usize::MAX).ok()?;
    let mut map = downloads.lock().unwrap_or_else(|e| e.into_inner());
    let d = map.get_mut(&f.stream)?;
    let in_order = d.seq.accept(&f).is_ok();
    let tx = d.tx.clone();
    if !in_order || f.is_fin() || f.is_abort() {
        map.remove(&f.stream); // the receiver's channel ends once `tx` is dropped
    }
    (in_order && !f.is_abort()).then(|| (tx, message.slice(HEADER_LEN..)))
}

/// A connected client. Cheap to share behind an `Arc`; calls may run concurrently.
#[derive(Debug)]
pub struct BridgeClient {
    /// The socket's sending half: each call writes its own message (no writer task to
    /// hand it to; the lock keeps messages whole and in order).
    sink: Arc<tokio::sync::Mutex<WsSink>>,
    pending: Pending,
    downloads: Downloads,
    events: broadcast::Sender<Notification>,
    next: AtomicI64,
    hello: HelloResult,
    /// Set when the server closed the connection: later calls fail at once.
    closed: Arc<AtomicBool>,
}

/// A request on its way; await [`PendingCall::response`].
#[derive(Debug)]
pub struct PendingCall {
    rx: oneshot::Receiver<Response>,
}

impl PendingCall {
    /// The result, or the error the server answered.
    pub async fn response(self) -> Result<Value, ClientError> {
        let r = self.rx.await.map_err(|_| ClientError::Closed)?;
        r.outcome.map_err(ClientError::Rpc)
    }
}

/// A received download chunk: a view of the received message (cheap to clone or
/// slice; `&chunk[..]` is the bytes).
pub type Chunk = Bytes;

impl BridgeClient {
    /// Connect and say `hello`.
    pub async fn connect(opts: ClientOptions) -> Result<Self, ClientError> {
        let mut req = opts.url.as_str().into_client_request().map_err(|e| ClientError::Connect(e.to_string()))?;
        let put = |req: &mut tokio_tungstenite::tungstenite::handshake::client::Request, k: &'static str, v: &str| {
            v.parse().map(|v| req.headers_mut().insert(k, v)).map_err(|_| ClientError::Connect(format!("bad {k} header")))
        };
        if let Some(o) = &opts.origin {
            put(&mut req, "origin", o)?;
        }
        if let Some(s) = &opts.secret {
            put(&mut req, "authorization", &s.bearer())?;
        }
        let (ws, _) = match tokio_tungstenite::connect_async_with_config(req, None, true).await {
            Ok(x) => x,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp.body().as_deref().unwrap_or_default();
                let error = serde_json::from_slice(body).map_err(|_| ClientError::Protocol(format!("HTTP {status}")))?;
                return Err(ClientError::Refused { status, error });
            }
            Err(e) => return Err(ClientError::Connect(e.to_string())),
        };
        let (sink, mut stream) = ws.split();
        let sink = Arc::new(tokio::sync::Mutex::new(sink));
        let pending: Pending = Arc::default();
        let downloads: Downloads = Arc::default();
        let (events, _) = broadcast::channel(1024);
        let closed = Arc::new(AtomicBool::new(false));
        {
            let (pending, downloads, events) = (Arc::clone(&pending), Arc::clone(&downloads), events.clone());
            let closed = Arc::clone(&closed);
            tokio::spawn(async move {
                while let Some(Ok(m)) = stream.next().await {
                    match m {
                        Message::Text(t) => {
                            // Responses, the common case, parse once; anything else is
                            // tried as a notification.
                            if let Ok(r) = serde_json::from_str::<Response>(t.as_str()) {
                                let tx =
                                    r.id.as_ref().and_then(|id| pending.lock().unwrap_or_else(|e| e.into_inner()).remove(id));
                                if let Some(tx) = tx {
                                    let _ = tx.send(r);
                                }
                            } else if let Ok(n) = serde_json::from_str::<Notification>(t.as_str()) {
                                let _ = events.send(n);
                            }
                        }
                        Message::Binary(b) => {
                            // Waits while the stream's reader is behind: back-pressure
                            // on the connection, as the server applies to uploads.
                            if let Some((tx, payload)) = route_download(&downloads, &b) {
                                let _ = tx.send(payload).await;
                            }
                        }
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                // Fail every call still waiting, and every later one.
                closed.store(true, Ordering::SeqCst);
                pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
                downloads.lock().unwrap_or_else(|e| e.into_inner()).clear();
            });
        }
        let mut c = BridgeClient {
            sink,
            pending,
            downloads,
            events,
            next: AtomicI64::new(1),
            closed,
            hello: HelloResult {
                schema_version: 0,
                product: String::new(),
                product_version: String::new(),
                capabilities: Vec::new(),
                limits: kb_bridge_protocol::Limits {
                    max_message_bytes: 0,
                    max_chunk_bytes: 0,
                    max_in_flight: 0,
                    request_timeout_ms: 0,
                },
            },
        };
        c.hello = c
            .call::<spec::Hello>(HelloParams {
                schema_version: SCHEMA_VERSION,
                sdk: opts.sdk.clone(),
                sdk_version: Some(env!("CARGO_PKG_VERSION").into()),
            })
            .await?;
        Ok(c)
    }

    /// What `hello` answered.
    pub fn hello(&self) -> &HelloResult {
        &self.hello
    }

    /// Events (notifications) from now on.
    pub fn events(&self) -> broadcast::Receiver<Notification> {
        self.events.subscribe()
    }

    /// A fresh request id.
    pub fn next_id(&self) -> Id {
        Id::Number(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Send a request with a chosen id and wait for its response.
    pub async fn request(&self, id: Id, method: &str, params: Value) -> Result<Value, ClientError> {
        self.begin(id, method, params).await?.response().await
    }

    /// Send a request and return once it is on its way: streams that the request
    /// reads must be fed only after this (the server buffers only a little of a stream
    /// no request reads yet).
    pub async fn begin(&self, id: Id, method: &str, params: Value) -> Result<PendingCall, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), tx);
        // After the reader ended nobody would answer (it sets the flag before it fails
        // the calls waiting, so a call is either failed by it or sees the flag here).
        if self.closed.load(Ordering::SeqCst) {
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return Err(ClientError::Closed);
        }
        let text = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        self.send_text(text).await?;
        Ok(PendingCall { rx })
    }

    /// Send raw text (tests of malformed input).
    pub async fn send_text(&self, text: String) -> Result<(), ClientError> {
        self.write(Message::Text(text.into())).await
    }

    async fn write(&self, m: Message) -> Result<(), ClientError> {
        self.sink.lock().await.send(m).await.map_err(|_| ClientError::Closed)
    }

    /// A typed call.
    pub async fn call<M: RpcMethod>(&self, params: M::Params) -> Result<M::Result, ClientError> {
        let params = serde_json::to_value(params).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let v = self.request(self.next_id(), M::METHOD.name(), params).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Open an upload stream.
    pub async fn open_upload(&self, length: Option<u64>) -> Result<StreamId, ClientError> {
        Ok(self.call::<spec::StreamOpen>(StreamOpenParams { direction: StreamDirection::Upload, length }).await?.stream)
    }

    /// Open a download stream; its payloads arrive on the receiver, in order, the last
    /// one with FIN (then the channel ends).
    pub async fn open_download(&self) -> Result<(StreamId, mpsc::Receiver<Chunk>), ClientError> {
        let id =
            self.call::<spec::StreamOpen>(StreamOpenParams { direction: StreamDirection::Download, length: None }).await?.stream;
        let (tx, rx) = mpsc::channel::<Chunk>(DOWNLOAD_QUEUE);
        self.downloads.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Download { seq: Sequencer::default(), tx });
        Ok((id, rx))
    }

    /// Send everything `r` yields on an upload stream, in `max_chunk_bytes` frames, FIN
    /// last. Returns the bytes sent.
    pub async fn upload(&self, stream: StreamId, mut r: impl AsyncRead + Unpin) -> Result<u64, ClientError> {
        let chunk = usize::try_from(self.hello.limits.max_chunk_bytes).unwrap_or(1 << 16).max(1);
        let full = HEADER_LEN + chunk;
        let pool = FramePool::default();
        let mut seq = 0u32;
        let mut total = 0u64;
        loop {
            // Read straight behind room for the header (into memory not zeroed first, for
            // readers that allow it), then send the buffer as it is: no copy of its own;
            // it comes back for a later frame once the WebSocket layer has masked it out.
            let mut frame = pool.take(full);
            frame.resize(HEADER_LEN, 0);
            let fin = loop {
                let want = (full - frame.len()) as u64;
                let n = (&mut r).take(want).read_buf(&mut frame).await.map_err(|e| ClientError::Protocol(e.to_string()))?;
                if n == 0 {
                    break true;
                }
                if frame.len() == full {
                    break false;
                }
            };
            let header = Frame { stream, sequence: seq, flags: if fin { FLAG_FIN } else { 0 }, payload: &[] }.header();
            frame[..HEADER_LEN].copy_from_slice(&header);
            total += (frame.len() - HEADER_LEN) as u64;
            self.write(Message::Binary(pool.send(frame))).await?;
            seq += 1;
            if fin {
                return Ok(total);
            }
        }
    }

    /// Send a raw binary message (tests of malformed frames).
    pub async fn send_binary(&self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.write(Message::Binary(bytes.into())).await
    }
}

impl Drop for BridgeClient {
    /// Close the connection (the reader half alone would keep the socket open).
    fn drop(&mut self) {
        let sink = Arc::clone(&self.sink);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = sink.lock().await.close().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_bridge_protocol::frame::FLAG_ABORT;

    fn msg(stream: u32, sequence: u32, flags: u8, payload: &[u8]) -> Bytes {
        Frame { stream: StreamId(stream), sequence, flags, payload }.encode().into()
    }

    fn table(ids: &[u32]) -> (Downloads, Vec<mpsc::Receiver<Chunk>>) {
        let d: Downloads = Arc::default();
        let rxs = ids
            .iter()
            .map(|id| {
                let (tx, rx) = mpsc::channel(DOWNLOAD_QUEUE);
                d.lock().unwrap().insert(StreamId(*id), Download { seq: Sequencer::default(), tx });
                rx
            })
            .collect();
        (d, rxs)
    }

    #[test]
    fn payloads_in_order_then_fin_ends_the_stream() {
        let (d, _rx) = table(&[1, 2]);
        let (_, p) = route_download(&d, &msg(1, 0, 0, b"abc")).unwrap();
        assert_eq!(&p[..], b"abc");
        assert!(route_download(&d, &msg(2, 0, 0, b"")).is_some(), "streams are independent");
        let (_, p) = route_download(&d, &msg(1, 1, FLAG_FIN, b"de")).unwrap();
        assert_eq!(&p[..], b"de");
        assert!(!d.lock().unwrap().contains_key(&StreamId(1)), "forgotten after FIN");
        assert!(route_download(&d, &msg(1, 2, 0, b"x")).is_none(), "nothing after FIN");
        assert!(d.lock().unwrap().contains_key(&StreamId(2)));
    }

    #[test]
    fn abort_out_of_order_and_strangers_deliver_nothing() {
        let (d, _rx) = table(&[1, 2]);
        assert!(route_download(&d, &msg(1, 0, FLAG_ABORT, b"")).is_none());
        assert!(!d.lock().unwrap().contains_key(&StreamId(1)), "an aborted stream ends");
        assert!(route_download(&d, &msg(2, 1, 0, b"late")).is_none());
        assert!(!d.lock().unwrap().contains_key(&StreamId(2)), "a stream out of order ends");
        assert!(route_download(&d, &msg(9, 0, 0, b"?")).is_none(), "not a stream of ours");
        assert!(route_download(&d, &Bytes::from_static(&[1, 0])).is_none(), "not a frame");
    }

    #[test]
    fn a_payload_is_a_view_of_the_message() {
        let (d, _rx) = table(&[3]);
        let m = msg(3, 0, 0, &[7u8; 1000]);
        let (_, p) = route_download(&d, &m).unwrap();
        assert_eq!(p.as_ptr(), m[HEADER_LEN..].as_ptr(), "no copy");
        assert_eq!(p.len(), 1000);
    }
}
