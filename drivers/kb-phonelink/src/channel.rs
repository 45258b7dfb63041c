//! The encrypted channel after a handshake: a [`MessageConn`] over a [`FramePipe`].
//!
//! Tokio inside (a reader task: decrypt, reassemble, keep-alive, peer timeout; a writer
//! task: frames out in order), a blocking façade outside. Every transport frame is one
//! Noise transport message; snow's stateful nonces make any tampered, replayed, reordered,
//! dropped or truncated frame fail authentication, which closes the link with
//! `link_integrity` (6013) on both sides.

use crate::conn::{LinkError, MessageConn, PeerId};
use crate::frame::{FramePipe, MAX_FRAME};
use crate::handshake::Established;
use crate::wire::{FRAME_HEADER, FrameType, Record, TAG_LEN, err, parse_frame};
use kb_types::{Category, ErrorCode};
use snow::TransportState;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::{Notify, mpsc};
use zeroize::Zeroizing;

/// The link's limits and timers.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// The largest frame sent or accepted (at most [`MAX_FRAME`]).
    pub max_frame: usize,
    /// The largest application message (reassembled from fragments).
    pub max_message: usize,
    /// How often each side sends a keep-alive.
    pub keepalive_interval: Duration,
    /// The link closes with `link_peer_timeout` when nothing arrives for this long.
    pub peer_timeout: Duration,
    /// The whole handshake (transport upgrade, Noise, the phone's hello) must fit in this.
    pub handshake_timeout: Duration,
    /// How long a new phone waits for the user's confirmation on the PC.
    pub confirm_timeout: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            max_frame: MAX_FRAME,
            max_message: 1 << 20,
            keepalive_interval: Duration::from_secs(10),
            // 2.5 keep-alives, and below the bridge's 30 s request timeout: behind a relay
            // the PC learns that a phone vanished (killed, out of coverage) only from this
            // bound, and a request waiting on that phone should end as the medium going
            // offline, not as the request's own timeout.
            peer_timeout: Duration::from_secs(25),
            handshake_timeout: Duration::from_secs(10),
            confirm_timeout: Duration::from_secs(120),
        }
    }
}

impl LinkConfig {
    /// The largest fragment of application data one frame carries.
    fn fragment(&self) -> usize {
        self.max_frame.min(MAX_FRAME) - FRAME_HEADER - TAG_LEN - 1
    }
}

enum Out {
    Frame(Vec<u8>),
    Shutdown,
}

#[derive(Default)]
struct Inbox {
    records: VecDeque<Record>,
    end: Option<LinkError>,
}

struct Shared {
    cfg: LinkConfig,
    transport: Mutex<TransportState>,
    out: mpsc::UnboundedSender<Out>,
    inbox: Mutex<Inbox>,
    cv: Condvar,
    notify: Notify,
    stop: Notify,
    /// Set once the setup records (hello, paired) are done: from then on a setup record
    /// is a protocol error.
    ready: AtomicBool,
}

/// One end of an encrypted link. Dropping the last handle closes the link.
pub struct Channel {
    peer: PeerId,
    sh: Arc<Shared>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Channel({})", self.peer)
    }
}

impl Shared {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn transport(&self) -> MutexGuard<'_, TransportState> {
        self.transport.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        self.cv.notify_all();
        self.notify.notify_waiters();
    }

    /// Seal records into frames and queue them, all under one lock so fragments of
    /// concurrent messages never interleave and nonces go out in order.
    fn seal_send(&self, records: &[Record]) -> Result<(), LinkError> {
        let mut t = self.transport();
        for r in records {
            let plain = r.encode();
            let mut buf = vec![0u8; FRAME_HEADER + plain.len() + TAG_LEN];
            let n = t.write_message(&plain, &mut buf[FRAME_HEADER..]).map_err(|_| err(ErrorCode::Internal, "seal"))?;
            buf.truncate(FRAME_HEADER + n);
            buf[0] = crate::wire::LINK_VERSION;
            buf[1] = FrameType::Transport as u8;
            self.out.send(Out::Frame(buf)).map_err(|_| LinkError::Closed)?;
        }
        Ok(())
    }

    /// End the link once: record why, tell the peer (best effort), stop both tasks.
    fn end(&self, why: LinkError, tell_peer: Option<Record>) {
        {
            let mut ib = self.inbox();
            if ib.end.is_some() {
                return;
            }
            ib.end = Some(why);
        }
        if let Some(r) = tell_peer {
            let _ = self.seal_send(&[r]);
        }
        let _ = self.out.send(Out::Shutdown);
        self.stop.notify_one();
        self.wake();
    }

    fn fail(&self, e: LinkError) {
        let code = match &e {
            LinkError::Failed { code, .. } => code.number(),
            _ => ErrorCode::LinkLost.number(),
        };
        let reason = e.to_string();
        self.end(e, Some(Record::Close { code, reason }));
    }

    fn ended(&self) -> Option<LinkError> {
        self.inbox().end.clone()
    }
}

impl Channel {
    /// Start the channel's tasks on `rt` over `pipe`.
    pub fn start(est: Established, pipe: FramePipe, cfg: LinkConfig, peer: PeerId, rt: &Handle) -> Arc<Channel> {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let sh = Arc::new(Shared {
            cfg,
            transport: Mutex::new(est.transport),
            out: out_tx,
            inbox: Mutex::new(Inbox::default()),
            cv: Condvar::new(),
            notify: Notify::new(),
            stop: Notify::new(),
            ready: AtomicBool::new(false),
        });
        let FramePipe { tx, rx } = pipe;
        rt.spawn(writer(out_rx, tx));
        rt.spawn(reader(sh.clone(), rx));
        Arc::new(Channel { peer, sh })
    }

    /// Send a setup record (hello, paired).
    pub(crate) fn send_record(&self, r: Record) -> Result<(), LinkError> {
        if let Some(e) = self.sh.ended() {
            return Err(e);
        }
        self.sh.seal_send(&[r])
    }

    /// The next setup record, waiting until `deadline`.
    pub(crate) async fn next_record(&self, deadline: tokio::time::Instant) -> Result<Record, LinkError> {
        loop {
            let notified = self.sh.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut ib = self.sh.inbox();
                if let Some(r) = ib.records.pop_front() {
                    return Ok(r);
                }
                if let Some(e) = &ib.end {
                    return Err(e.clone());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(LinkError::TimedOut);
            }
        }
    }

    /// Setup is over: hand the link to the application.
    pub(crate) fn set_ready(&self) {
        self.sh.ready.store(true, Ordering::SeqCst);
    }

    /// Close with an error code the peer sees (e.g. `pairing_rejected`, `phone_revoked`).
    pub fn close_with(&self, code: ErrorCode, reason: &str) {
        self.sh.end(
            LinkError::Failed { code, detail: reason.to_owned() },
            Some(Record::Close { code: code.number(), reason: reason.to_owned() }),
        );
    }

    /// Wait (async) until the link has ended; returns why.
    pub async fn closed(&self) -> LinkError {
        loop {
            let notified = self.sh.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self.sh.ended() {
                return e;
            }
            notified.await;
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.sh.end(LinkError::Closed, Some(Record::Close { code: 0, reason: String::new() }));
    }
}

impl MessageConn for Channel {
    fn peer(&self) -> &PeerId {
        &self.peer
    }

    fn send(&self, msg: &[u8]) -> Result<(), LinkError> {
        let cap = self.sh.cfg.max_message;
        if msg.len() > cap {
            return Err(LinkError::TooLarge { len: msg.len(), cap });
        }
        if let Some(e) = self.sh.ended() {
            return Err(e);
        }
        let frag = self.sh.cfg.fragment();
        let mut records: Vec<Record> = msg.chunks(frag).map(|c| Record::DataMore(c.to_vec())).collect();
        match records.pop() {
            Some(Record::DataMore(last)) => records.push(Record::Data(last)),
            _ => records.push(Record::Data(Vec::new())),
        }
        self.sh.seal_send(&records)
    }

    fn recv(&self, timeout: Option<Duration>) -> Result<Vec<u8>, LinkError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut ib = self.sh.inbox();
        loop {
            match ib.records.pop_front() {
                Some(Record::Data(d)) => return Ok(d),
                Some(other) => {
                    drop(ib);
                    self.sh.fail(err(ErrorCode::LinkProtocol, format!("unexpected {other:?} record")));
                    ib = self.sh.inbox();
                    continue;
                }
                None => {}
            }
            if let Some(e) = &ib.end {
                return Err(e.clone());
            }
            ib = match deadline {
                None => self.sh.cv.wait(ib).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(LinkError::TimedOut);
                    }
                    self.sh.cv.wait_timeout(ib, d - now).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
    }

    fn close(&self) {
        self.sh.end(LinkError::Closed, Some(Record::Close { code: 0, reason: String::new() }));
    }

    fn is_open(&self) -> bool {
        self.sh.ended().is_none()
    }

    fn close_reason(&self) -> Option<LinkError> {
        self.sh.ended()
    }
}

async fn writer(mut out: mpsc::UnboundedReceiver<Out>, tx: mpsc::Sender<Vec<u8>>) {
    while let Some(o) = out.recv().await {
        match o {
            Out::Frame(f) => {
                if tx.send(f).await.is_err() {
                    break;
                }
            }
            Out::Shutdown => break,
        }
    }
    // Dropping `tx` tells the transport to close.
}

/// What the peer's close record means here.
fn peer_close(code: u32, reason: String) -> LinkError {
    if code == 0 {
        return LinkError::Closed;
    }
    match ErrorCode::from_number(code) {
        Some(c) if c.category() == Category::PhoneLink => LinkError::Failed { code: c, detail: format!("peer: {reason}") },
        _ => LinkError::Failed { code: ErrorCode::LinkClosedByPeer, detail: format!("peer closed with {code}: {reason}") },
    }
}

async fn reader(sh: Arc<Shared>, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut ping = tokio::time::interval(sh.cfg.keepalive_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut last_rx = tokio::time::Instant::now();
    let mut partial: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
    let mut plain = Zeroizing::new(vec![0u8; MAX_FRAME]);
    loop {
        tokio::select! {
            f = rx.recv() => {
                let Some(f) = f else {
                    sh.end(err(ErrorCode::LinkLost, "the transport ended without a close"), None);
                    return;
                };
                last_rx = tokio::time::Instant::now();
                match handle_frame(&sh, &f, &mut plain, &mut partial) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        sh.fail(e);
                        return;
                    }
                }
            }
            _ = ping.tick() => {
                if sh.seal_send(&[Record::Ping]).is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(last_rx + sh.cfg.peer_timeout) => {
                sh.fail(err(ErrorCode::LinkPeerTimeout, "nothing from the peer within the keep-alive bound"));
                return;
            }
            _ = sh.stop.notified() => return,
        }
    }
}

/// One frame in; `Ok(false)` when the peer closed.
fn handle_frame(sh: &Shared, f: &[u8], plain: &mut [u8], partial: &mut Vec<u8>) -> Result<bool, LinkError> {
    let body = match parse_frame(f, sh.cfg.max_frame.min(MAX_FRAME))? {
        (FrameType::Transport, body) => body,
        // The PC refused the last handshake message (unauthenticated, so only before the
        // link is set up; it ends the link as a dropped connection would).
        (FrameType::Refused, body) if !sh.ready.load(Ordering::SeqCst) => {
            let code = crate::wire::parse_refusal(body);
            sh.end(err(code, format!("the PC refused: {}", code.name())), None);
            return Ok(false);
        }
        (t, _) => return Err(err(ErrorCode::LinkProtocol, format!("unexpected {t:?} frame after the handshake"))),
    };
    let n =
        sh.transport().read_message(body, plain).map_err(|_| err(ErrorCode::LinkIntegrity, "a frame failed authentication"))?;
    let rec = Record::decode(&plain[..n])?;
    let ready = sh.ready.load(Ordering::SeqCst);
    match rec {
        Record::Ping => {}
        // Data may arrive before this side has read the peer's last setup record (the PC
        // talks as soon as it has the link): it waits in the inbox behind that record.
        Record::DataMore(d) => {
            partial.extend_from_slice(&d);
            if partial.len() > sh.cfg.max_message {
                return Err(err(ErrorCode::LinkFrameTooLarge, "message over the cap"));
            }
        }
        Record::Data(d) => {
            partial.extend_from_slice(&d);
            if partial.len() > sh.cfg.max_message {
                return Err(err(ErrorCode::LinkFrameTooLarge, "message over the cap"));
            }
            let msg = std::mem::take(partial);
            sh.inbox().records.push_back(Record::Data(msg));
            sh.wake();
        }
        Record::Close { code, reason } => {
            sh.end(peer_close(code, reason), None);
            return Ok(false);
        }
        r @ (Record::Hello { .. } | Record::Paired { .. }) => {
            if ready {
                return Err(err(ErrorCode::LinkProtocol, "setup record on a ready link"));
            }
            sh.inbox().records.push_back(r);
            sh.wake();
        }
    }
    Ok(true)
}
