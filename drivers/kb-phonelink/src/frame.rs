//! What a transport hands the channel: a duplex pipe of opaque frames (handshake messages
//! and ciphertext). The direct LAN WebSocket and the relay tunnel each produce one; the
//! Noise handshake and the encrypted channel run over it without knowing which it is.

use tokio::sync::mpsc;

/// The most a transport carries in one frame (a Noise message is at most 65,535 bytes).
pub const MAX_FRAME: usize = 65_535;

/// A duplex pipe of opaque frames to one peer. `rx` ends (`recv` returns `None`) when the
/// transport is gone; dropping `tx` tells the transport to close.
#[derive(Debug)]
pub struct FramePipe {
    /// Frames to the peer.
    pub tx: mpsc::Sender<Vec<u8>>,
    /// Frames from the peer.
    pub rx: mpsc::Receiver<Vec<u8>>,
}

impl FramePipe {
    /// Two connected in-process pipes (for tests of the handshake and the channel, and for
    /// rigs that play a hostile transport between them).
    pub fn pair(depth: usize) -> (FramePipe, FramePipe) {
        let (a_tx, b_rx) = mpsc::channel(depth);
        let (b_tx, a_rx) = mpsc::channel(depth);
        (FramePipe { tx: a_tx, rx: a_rx }, FramePipe { tx: b_tx, rx: b_rx })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pair_carries_frames_both_ways_and_ends_when_dropped() {
        let (mut a, mut b) = FramePipe::pair(4);
        a.tx.send(b"ping".to_vec()).await.unwrap();
        assert_eq!(b.rx.recv().await.unwrap(), b"ping");
        b.tx.send(b"pong".to_vec()).await.unwrap();
        assert_eq!(a.rx.recv().await.unwrap(), b"pong");
        drop(a);
        assert_eq!(b.rx.recv().await, None);
    }
}
