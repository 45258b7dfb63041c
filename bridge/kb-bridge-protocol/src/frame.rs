//! Binary WebSocket frames: the chunks of a stream.
//!
//! ```text
//! offset  size  field
//!      0     1  format version, 1
//!      1     1  flags: bit 0 FIN (last frame of the stream), bit 1 ABORT; others 0
//!      2     2  reserved, 0
//!      4     4  stream id, big-endian, from stream.open (never 0)
//!      8     4  sequence number, big-endian: 0 for the first frame, +1 each frame
//!     12     …  payload (at most max_chunk_bytes; may be empty, e.g. a bare FIN)
//! ```

use crate::types::StreamId;
use kb_types::ErrorCode;

/// Frame format version.
pub const FRAME_VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 12;
/// Flag: last frame of the stream.
pub const FLAG_FIN: u8 = 0x01;
/// Flag: the sender abandons the stream; the request reading it fails with
/// `5009 request_cancelled`.
pub const FLAG_ABORT: u8 = 0x02;

/// One binary frame, borrowing its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Stream id.
    pub stream: StreamId,
    /// Sequence number.
    pub sequence: u32,
    /// Flags (`FLAG_FIN`, `FLAG_ABORT`).
    pub flags: u8,
    /// Payload.
    pub payload: &'a [u8],
}

/// Why a frame was refused (always `5011 stream_frame_invalid`), with a detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError(pub &'static str);

impl FrameError {
    /// The code.
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::StreamFrameInvalid
    }
}

impl<'a> Frame<'a> {
    /// Whether this is the last frame.
    pub fn is_fin(&self) -> bool {
        self.flags & FLAG_FIN != 0
    }

    /// Whether the sender aborted the stream.
    pub fn is_abort(&self) -> bool {
        self.flags & FLAG_ABORT != 0
    }

    /// Parse a binary message; payloads over `max_chunk` bytes are refused.
    pub fn decode(bytes: &'a [u8], max_chunk: usize) -> Result<Self, FrameError> {
        let Some((h, payload)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(FrameError("frame shorter than its 12-byte header"));
        };
        if h[0] != FRAME_VERSION {
            return Err(FrameError("unknown frame version"));
        }
        let flags = h[1];
        if flags & !(FLAG_FIN | FLAG_ABORT) != 0 || h[2] != 0 || h[3] != 0 {
            return Err(FrameError("reserved flag or header bits set"));
        }
        let stream = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        if stream == 0 {
            return Err(FrameError("stream id 0 is reserved"));
        }
        if payload.len() > max_chunk {
            return Err(FrameError("payload larger than max_chunk_bytes"));
        }
        let sequence = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        Ok(Frame { stream: StreamId(stream), sequence, flags, payload })
    }

    /// The stream a binary message names, read from its header even when the message is
    /// not a valid frame (so the stream's request can be failed at once).
    pub fn stream_of(bytes: &[u8]) -> Option<StreamId> {
        let id = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
        (id != 0).then_some(StreamId(id))
    }

    /// The 12-byte header.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = FRAME_VERSION;
        h[1] = self.flags;
        h[4..8].copy_from_slice(&self.stream.0.to_be_bytes());
        h[8..12].copy_from_slice(&self.sequence.to_be_bytes());
        h
    }

    /// Header and payload, ready to send.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.payload.len());
        v.extend_from_slice(&self.header());
        v.extend_from_slice(self.payload);
        v
    }
}

/// The receiving side's per-stream order check: sequence numbers 0, 1, 2, … and
/// nothing after FIN or ABORT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sequencer {
    next: u32,
    ended: bool,
    bytes: u64,
}

impl Sequencer {
    /// Accept the next frame of this stream, or refuse it.
    pub fn accept(&mut self, frame: &Frame<'_>) -> Result<(), FrameError> {
        if self.ended {
            return Err(FrameError("frame after the end of the stream"));
        }
        if frame.sequence != self.next {
            return Err(FrameError("frame out of sequence"));
        }
        self.next = self.next.checked_add(1).ok_or(FrameError("sequence number overflow"))?;
        self.bytes = self.bytes.saturating_add(frame.payload.len() as u64);
        self.ended = frame.is_fin() || frame.is_abort();
        Ok(())
    }

    /// Whether FIN or ABORT was seen.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Payload bytes accepted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
