//! The direct transport: the PC's WebSocket listener on its LAN addresses
//! (`ws://IP:port/kb-link/1`, one binary WebSocket message per frame) and the phone's
//! client for it.
//!
//! The listener speaks only the phone link (any other path is refused with 404 before
//! the upgrade) and is open only while the PC asks for it ([`DirectListener::open`] /
//! [`DirectListener::close`]). Every connection holds a slot of the shared
//! [`HandshakePool`] until its link handshake finishes; a full pool evicts its *oldest*
//! unfinished handshake, so silent or slow peers (slowloris) cannot lock a good phone out,
//! and every handshake has a deadline.

use crate::channel::LinkConfig;
use crate::conn::LinkError;
use crate::frame::FramePipe;
use crate::qr::{DIRECT_PATH, Endpoint};
use crate::wire::err;
use futures_util::{SinkExt, StreamExt};
use kb_types::ErrorCode;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How many frames may wait in a pipe between the transport and the link.
const PIPE_DEPTH: usize = 32;

/// Unfinished handshakes, bounded; a full pool evicts the oldest.
#[derive(Debug)]
pub struct HandshakePool {
    max: usize,
    slots: Mutex<VecDeque<(u64, Arc<Notify>)>>,
    next: AtomicU64,
}

/// One unfinished handshake's slot: `evicted` fires when a newer one pushed it out.
#[derive(Debug)]
pub struct Ticket {
    pool: Arc<HandshakePool>,
    id: u64,
    /// Fires when the pool evicted this handshake.
    pub evicted: Arc<Notify>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.pool.lock().retain(|(id, _)| *id != self.id);
    }
}

impl HandshakePool {
    /// A pool of at most `max` (≥ 1) unfinished handshakes.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max: max.max(1), slots: Mutex::default(), next: AtomicU64::new(0) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Arc<Notify>)>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new handshake (evicting the oldest when full).
    pub fn admit(self: &Arc<Self>) -> Ticket {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(Notify::new());
        let mut slots = self.lock();
        while slots.len() >= self.max {
            if let Some((_, n)) = slots.pop_front() {
                n.notify_one();
            }
        }
        slots.push_back((id, evicted.clone()));
        Ticket { pool: self.clone(), id, evicted }
    }

    /// Unfinished handshakes now.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }
}

/// A transport's new connection: its slot in the pool, its deadline, who it is.
#[derive(Debug)]
pub struct Admission {
    /// The handshake's pool slot (dropped when the handshake is over).
    pub ticket: Ticket,
    /// When the whole handshake must be done.
    pub deadline: Instant,
    /// The remote address, for events and logs.
    pub remote: String,
}

/// What the listener hands the endpoint.
pub enum Incoming {
    /// A connection that upgraded: run the link handshake on it.
    Pipe(FramePipe, Admission),
    /// A connection dropped before it upgraded (silent or slow peer, pool full, not a
    /// WebSocket for the phone link).
    Refused {
        /// Why.
        code: ErrorCode,
        /// Details for the log.
        detail: String,
        /// The remote address.
        remote: String,
    },
}

/// Where the listener hands new links and refusals.
pub type PipeSink = Arc<dyn Fn(Incoming) + Send + Sync>;

fn ws_config(cfg: &LinkConfig) -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(cfg.max_frame)).max_frame_size(Some(cfg.max_frame))
}

/// The PC's open direct listener. Dropping it closes it.
pub struct DirectListener {
    addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for DirectListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DirectListener({:?})", self.addrs)
    }
}

impl DirectListener {
    /// Listen on `addrs` (port 0 picks a free port). Must be called inside the runtime
    /// (`rt.enter()`); the accept loops run on it.
    pub fn open(addrs: &[SocketAddr], cfg: &LinkConfig, pool: Arc<HandshakePool>, sink: PipeSink) -> Result<Self, LinkError> {
        let mut bound = Vec::new();
        let mut tasks = Vec::new();
        for a in addrs {
            let fail = |e: std::io::Error| {
                // The usual cause: KeyBridge already hosts the phone link on this port
                // (`keybridge serve` or the desktop app) — say so rather than only "in use".
                let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                    "; another KeyBridge (keybridge serve or the desktop app) may already host the phone link here: \
                     pair from its 手机密钥 page, or stop it first"
                } else {
                    ""
                };
                err(ErrorCode::LinkListenFailed, format!("{a}: {e}{hint}"))
            };
            let l = std::net::TcpListener::bind(a).map_err(fail)?;
            l.set_nonblocking(true).map_err(fail)?;
            let local = l.local_addr().map_err(fail)?;
            let l = tokio::net::TcpListener::from_std(l).map_err(fail)?;
            bound.push(local);
            tasks.push(tokio::spawn(accept_loop(l, cfg.clone(), pool.clone(), sink.clone())));
        }
        tracing::info!(addrs = ?bound, "phone link: direct listener open");
        Ok(Self { addrs: bound, tasks })
    }

    /// The bound addresses (with the real ports).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stop accepting (links already established go on).
    pub fn close(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if !self.addrs.is_empty() {
            tracing::info!(addrs = ?self.addrs, "phone link: direct listener closed");
        }
    }
}

impl Drop for DirectListener {
    fn drop(&mut self) {
        self.close();
    }
}

async fn accept_loop(l: tokio::net::TcpListener, cfg: LinkConfig, pool: Arc<HandshakePool>, sink: PipeSink) {
    loop {
        let Ok((tcp, peer)) = l.accept().await else { continue };
        let admission =
            Admission { ticket: pool.admit(), deadline: Instant::now() + cfg.handshake_timeout, remote: peer.to_string() };
        tokio::spawn(serve(tcp, cfg.clone(), admission, sink.clone()));
    }
}

async fn serve(tcp: tokio::net::TcpStream, cfg: LinkConfig, admission: Admission, sink: PipeSink) {
    let _ = tcp.set_nodelay(true);
    // The callback's error type is tungstenite's (a whole HTTP response).
    #[allow(clippy::result_large_err)]
    let path_only = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == DIRECT_PATH {
            Ok(resp)
        } else {
            let mut e = ErrorResponse::new(Some("not found".into()));
            *e.status_mut() = StatusCode::NOT_FOUND;
            Err(e)
        }
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(tcp, path_only, Some(ws_config(&cfg)));
    let evicted = admission.ticket.evicted.clone();
    let refuse = |code: ErrorCode, detail: String| {
        sink(Incoming::Refused { code, detail, remote: admission.remote.clone() });
    };
    let ws = tokio::select! {
        r = tokio::time::timeout_at(admission.deadline, upgrade) => match r {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => return refuse(ErrorCode::LinkProtocol, format!("WebSocket upgrade failed: {e}")),
            Err(_) => return refuse(ErrorCode::LinkHandshakeTimeout, "WebSocket upgrade not completed in time".into()),
        },
        _ = evicted.notified() => {
            return refuse(ErrorCode::LinkBusy, "handshake pool full; this, the oldest unfinished handshake, was dropped".into());
        }
    };
    let (link_end, transport_end) = FramePipe::pair(PIPE_DEPTH);
    sink(Incoming::Pipe(link_end, admission));
    pump(ws, transport_end).await;
}

/// Move frames between a WebSocket and the transport end of a pipe until either ends.
async fn pump<S>(ws: WebSocketStream<S>, pipe: FramePipe)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let FramePipe { tx, mut rx } = pipe;
    loop {
        tokio::select! {
            m = stream.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    if tx.send(b.to_vec()).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // Text, close, errors, end of stream: the transport is over.
                _ => break,
            },
            f = rx.recv() => match f {
                Some(f) => {
                    if sink.send(Message::Binary(f.into())).await.is_err() {
                        break;
                    }
                }
                None => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            },
        }
    }
    let _ = sink.close().await;
}

/// The phone side: connect to a direct endpoint and return the link's end of the pipe.
pub async fn connect(addr: SocketAddr, cfg: &LinkConfig) -> Result<FramePipe, LinkError> {
    let url = Endpoint::Direct(addr).url();
    let connecting = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config(cfg)), true);
    let (ws, _) = match tokio::time::timeout(cfg.handshake_timeout, connecting).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return Err(err(ErrorCode::LinkUnreachable, format!("{url}: {e}"))),
        Err(_) => return Err(err(ErrorCode::LinkUnreachable, format!("{url}: timed out"))),
    };
    let (link_end, transport_end) = FramePipe::pair(PIPE_DEPTH);
    tokio::spawn(pump(ws, transport_end));
    Ok(link_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_pool_evicts_the_oldest() {
        let pool = HandshakePool::new(2);
        let a = pool.admit();
        let _b = pool.admit();
        let _c = pool.admit();
        tokio::time::timeout(std::time::Duration::from_secs(30), a.evicted.notified()).await.unwrap();
        assert_eq!(pool.pending(), 2);
        drop(a);
        assert_eq!(pool.pending(), 2);
    }
}
