//! The interface the layers above use: one authenticated, encrypted link to one peer.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use kb_types::{ErrorCode, HasErrorCode};

/// Identifies a peer across connections: for a phone, a digest of its static public key
/// (stable across reconnects); for the PC, a digest of the PC's static public key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub String);

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.0)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a link operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The link is closed: the peer went away, the transport dropped, or `close` was called.
    #[error("the link is closed")]
    Closed,
    /// Nothing arrived within the time asked for (the link is still open).
    #[error("nothing arrived in time")]
    TimedOut,
    /// A message is larger than the link's cap.
    #[error("message of {len} bytes exceeds the cap of {cap}")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The link's cap.
        cap: usize,
    },
    /// The link failed with a stable code (handshake, tampering, replay, transport...).
    #[error("{code}: {detail}")]
    Failed {
        /// The stable code.
        code: ErrorCode,
        /// What happened, without secrets.
        detail: String,
    },
}

impl HasErrorCode for LinkError {
    fn code(&self) -> ErrorCode {
        match self {
            // Callers that need a medium's view map Closed to `medium_offline`.
            LinkError::Closed => ErrorCode::Io,
            LinkError::TimedOut => ErrorCode::Io,
            LinkError::TooLarge { .. } => ErrorCode::InputTooLarge,
            LinkError::Failed { code, .. } => *code,
        }
    }
}

/// An authenticated, encrypted, ordered pipe of whole application messages to one peer.
///
/// Blocking by design: the token layer above runs on actor threads. Implementations are
/// cheap to share (`Arc<dyn MessageConn>`); `send` and `recv` may be called from different
/// threads at the same time. Once `recv` has returned [`LinkError::Closed`] it always does.
pub trait MessageConn: Send + Sync {
    /// The authenticated peer at the other end.
    fn peer(&self) -> &PeerId;
    /// Send one message. Fails with `Closed` once the link is down.
    fn send(&self, msg: &[u8]) -> Result<(), LinkError>;
    /// The next message, waiting at most `timeout` (`None`: until one arrives or the link
    /// closes).
    fn recv(&self, timeout: Option<Duration>) -> Result<Vec<u8>, LinkError>;
    /// Close the link; both sides' pending and later `recv`s return `Closed`.
    fn close(&self);
    /// Whether the link is still open, as far as this side knows.
    fn is_open(&self) -> bool;
    /// Why the link ended (`None` while it is open): [`LinkError::Closed`] for a clean
    /// close by either side, [`LinkError::Failed`] with a stable code otherwise (tampering,
    /// keep-alive timeout, transport lost, the peer's own error). After the link ends,
    /// `recv` returns this same error.
    fn close_reason(&self) -> Option<LinkError> {
        if self.is_open() { None } else { Some(LinkError::Closed) }
    }
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Vec<u8>>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    q: Mutex<Queue>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One end of an in-process link ([`memory_pair`]): for tests of the layers above and for
/// the phone-side library's examples. It is a real [`MessageConn`] (ordering, close in both
/// directions, caps), without encryption.
pub struct MemoryConn {
    peer: PeerId,
    cap: usize,
    inbox: Arc<Shared>,
    outbox: Arc<Shared>,
}

/// Two connected in-process ends. `a` sees `b_id` as its peer and vice versa; messages
/// larger than `cap` bytes are refused with [`LinkError::TooLarge`].
pub fn memory_pair(a_id: PeerId, b_id: PeerId, cap: usize) -> (Arc<MemoryConn>, Arc<MemoryConn>) {
    let ab = Arc::new(Shared::default());
    let ba = Arc::new(Shared::default());
    let a = MemoryConn { peer: b_id, cap, inbox: ba.clone(), outbox: ab.clone() };
    let b = MemoryConn { peer: a_id, cap, inbox: ab, outbox: ba };
    (Arc::new(a), Arc::new(b))
}

impl MessageConn for MemoryConn {
    fn peer(&self) -> &PeerId {
        &self.peer
    }

    fn send(&self, msg: &[u8]) -> Result<(), LinkError> {
        if msg.len() > self.cap {
            return Err(LinkError::TooLarge { len: msg.len(), cap: self.cap });
        }
        let mut q = self.outbox.lock();
        if q.closed {
            return Err(LinkError::Closed);
        }
        q.items.push_back(msg.to_vec());
        self.outbox.cv.notify_all();
        Ok(())
    }

    fn recv(&self, timeout: Option<Duration>) -> Result<Vec<u8>, LinkError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut q = self.inbox.lock();
        loop {
            if let Some(m) = q.items.pop_front() {
                return Ok(m);
            }
            if q.closed {
                return Err(LinkError::Closed);
            }
            match deadline {
                None => q = self.inbox.cv.wait(q).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(LinkError::TimedOut);
                    }
                    q = self.inbox.cv.wait_timeout(q, d - now).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        }
    }

    fn close(&self) {
        for s in [&self.inbox, &self.outbox] {
            s.lock().closed = true;
            s.cv.notify_all();
        }
    }

    fn is_open(&self) -> bool {
        !self.inbox.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Arc<MemoryConn>, Arc<MemoryConn>) {
        memory_pair(PeerId("pc".into()), PeerId("phone".into()), 16)
    }

    #[test]
    fn messages_arrive_in_order_and_peers_are_named() {
        let (a, b) = pair();
        assert_eq!(a.peer().0, "phone");
        assert_eq!(b.peer().0, "pc");
        a.send(b"one").unwrap();
        a.send(b"two").unwrap();
        assert_eq!(b.recv(None).unwrap(), b"one");
        assert_eq!(b.recv(None).unwrap(), b"two");
        assert_eq!(b.recv(Some(Duration::from_millis(1))), Err(LinkError::TimedOut));
    }

    #[test]
    fn close_reaches_both_sides_and_wakes_a_waiting_reader() {
        let (a, b) = pair();
        let reader = std::thread::spawn(move || b.recv(None));
        a.close();
        assert_eq!(reader.join().unwrap(), Err(LinkError::Closed));
        assert_eq!(a.send(b"x"), Err(LinkError::Closed));
        assert!(!a.is_open());
    }

    #[test]
    fn oversized_messages_are_refused() {
        let (a, _b) = pair();
        assert_eq!(a.send(&[0u8; 17]), Err(LinkError::TooLarge { len: 17, cap: 16 }));
    }
}
