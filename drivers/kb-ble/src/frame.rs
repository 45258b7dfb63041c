//! The FIDO BLE framing (CTAP 2.x, "Bluetooth Smart / Bluetooth Low Energy Technology"
//! transport) carrying ISO 7816 APDUs, with no I/O: see docs/ble-keys.md.
//!
//! A message is `CMD | HLEN | LLEN | DATA` cut into fragments of at most the key's
//! control-point length: an initial fragment (`CMD HLEN LLEN` + data) and continuation
//! fragments (`SEQ` + data), `SEQ` counting 0..=0x7F and wrapping to 0. A command byte has
//! the high bit set, a sequence number has it clear, so each fragment says which it is.
//! Fragments are not padded: the last one ends where the message ends.

use zeroize::Zeroizing;

/// Smallest control-point length a key may announce (the ATT default MTU of 23 less 3).
pub const MIN_FRAGMENT: usize = 20;
/// Largest control-point length a key may announce (the largest ATT attribute value).
pub const MAX_FRAGMENT: usize = 512;
/// Largest message the 16-bit length can announce.
pub const MAX_MESSAGE: usize = u16::MAX as usize;
/// Bytes of an initial fragment's header (`CMD HLEN LLEN`).
const INIT_HEADER: usize = 3;
/// Highest sequence number before it wraps to 0.
const MAX_SEQ: u8 = 0x7F;

/// The commands of the framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameCommand {
    /// `0x81` PING: echoed by the key (a link check).
    Ping,
    /// `0x82` KEEPALIVE (key → host): still working; one status byte.
    KeepAlive,
    /// `0x83` MSG: a command APDU (host → key) or a response APDU (key → host).
    Msg,
    /// `0xBE` CANCEL (host → key): abandon the command in progress.
    Cancel,
    /// `0xBF` ERROR (key → host): one error byte.
    Error,
}

impl FrameCommand {
    /// The command for a byte, if it is one of the framing's.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0x81 => FrameCommand::Ping,
            0x82 => FrameCommand::KeepAlive,
            0x83 => FrameCommand::Msg,
            0xBE => FrameCommand::Cancel,
            0xBF => FrameCommand::Error,
            _ => return None,
        })
    }

    /// The byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            FrameCommand::Ping => 0x81,
            FrameCommand::KeepAlive => 0x82,
            FrameCommand::Msg => 0x83,
            FrameCommand::Cancel => 0xBE,
            FrameCommand::Error => 0xBF,
        }
    }
}

/// KEEPALIVE status: the key is processing.
pub const KEEPALIVE_PROCESSING: u8 = 0x01;
/// KEEPALIVE status: the key waits for the user (a touch, a PIN on its keypad).
pub const KEEPALIVE_USER_NEEDED: u8 = 0x02;

/// The error bytes an ERROR frame carries (CTAP's BLE error constants).
pub fn key_error_name(code: u8) -> &'static str {
    match code {
        0x01 => "invalid command",
        0x02 => "invalid parameter",
        0x03 => "invalid length",
        0x04 => "invalid sequence",
        0x05 => "request timed out",
        0x06 => "busy",
        0x0A => "lock required",
        0x0B => "invalid channel",
        _ => "other error",
    }
}

/// A framing failure. None carries message data (it may be a PIN or a deciphered key).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// An empty fragment.
    #[error("empty fragment")]
    Empty,
    /// A fragment longer than the control-point length.
    #[error("fragment of {len} bytes exceeds the control-point length {max}")]
    FragmentTooLong {
        /// Its length.
        len: usize,
        /// The control-point length.
        max: usize,
    },
    /// An initial fragment shorter than its three header bytes.
    #[error("initial fragment shorter than its header ({0} bytes)")]
    TruncatedHeader(usize),
    /// A command byte the framing does not define.
    #[error("unknown command 0x{0:02X}")]
    UnknownCommand(u8),
    /// A continuation fragment with no message started.
    #[error("continuation fragment (SEQ {0}) without an initial fragment")]
    UnexpectedContinuation(u8),
    /// A new initial fragment while a message was still incomplete.
    #[error("initial fragment while a message was incomplete")]
    UnexpectedInit,
    /// A continuation fragment out of order.
    #[error("wrong sequence number: expected {expected}, got {got}")]
    WrongSequence {
        /// The next number due.
        expected: u8,
        /// What came.
        got: u8,
    },
    /// More data than the initial fragment announced.
    #[error("more data than the {announced} bytes announced")]
    Overlong {
        /// The announced length.
        announced: usize,
    },
    /// An announced length above what this side accepts.
    #[error("announced length {announced} exceeds the limit {limit}")]
    TooLarge {
        /// The announced length.
        announced: usize,
        /// The limit.
        limit: usize,
    },
    /// A message too long for the 16-bit length (host side).
    #[error("message of {0} bytes is too long to frame")]
    MessageTooLong(usize),
    /// A control-point length outside 20..=512.
    #[error("control-point length {0} is outside 20..=512")]
    BadFragmentSize(usize),
    /// A KEEPALIVE or ERROR frame without its one byte, or a MSG without a status word.
    #[error("{0} frame with {1} data bytes")]
    BadPayload(&'static str, usize),
    /// The key sent a command a host does not expect from a key (PING we did not send,
    /// CANCEL).
    #[error("unexpected {0:?} frame from the key")]
    UnexpectedCommand(FrameCommand),
    /// The key answered with an ERROR frame.
    #[error("the key reported an error: {name} (0x{code:02X})", name = key_error_name(*code))]
    KeyError {
        /// The error byte.
        code: u8,
    },
}

impl kb_types::HasErrorCode for FrameError {
    fn code(&self) -> kb_types::ErrorCode {
        match self {
            FrameError::KeyError { .. } => kb_types::ErrorCode::BleKeyError,
            FrameError::BadFragmentSize(_) => kb_types::ErrorCode::BleServiceInvalid,
            FrameError::MessageTooLong(_) => kb_types::ErrorCode::NotSupported,
            _ => kb_types::ErrorCode::BleFrameInvalid,
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, FrameError>;

/// Check a control-point length the key announced (big-endian u16 read from the
/// control-point-length characteristic).
pub fn parse_control_point_length(value: &[u8]) -> Result<usize> {
    let n = match value {
        [hi, lo] => u16::from_be_bytes([*hi, *lo]) as usize,
        other => return Err(FrameError::BadFragmentSize(other.len())),
    };
    if !(MIN_FRAGMENT..=MAX_FRAGMENT).contains(&n) {
        return Err(FrameError::BadFragmentSize(n));
    }
    Ok(n)
}

/// Cut a message into fragments of at most `fragment_size` bytes. The fragments may hold
/// a PIN: they are zeroized when dropped.
pub fn fragment(cmd: FrameCommand, data: &[u8], fragment_size: usize) -> Result<Vec<Zeroizing<Vec<u8>>>> {
    if !(MIN_FRAGMENT..=MAX_FRAGMENT).contains(&fragment_size) {
        return Err(FrameError::BadFragmentSize(fragment_size));
    }
    let len = u16::try_from(data.len()).map_err(|_| FrameError::MessageTooLong(data.len()))?;
    let first = data.len().min(fragment_size - INIT_HEADER);
    let mut out = Vec::with_capacity(1 + (data.len() - first).div_ceil(fragment_size - 1));
    let mut init = Zeroizing::new(Vec::with_capacity(INIT_HEADER + first));
    init.push(cmd.byte());
    init.extend_from_slice(&len.to_be_bytes());
    init.extend_from_slice(&data[..first]);
    out.push(init);
    let mut seq = 0u8;
    for chunk in data[first..].chunks(fragment_size - 1) {
        let mut f = Zeroizing::new(Vec::with_capacity(1 + chunk.len()));
        f.push(seq);
        f.extend_from_slice(chunk);
        out.push(f);
        seq = next_seq(seq);
    }
    Ok(out)
}

fn next_seq(seq: u8) -> u8 {
    if seq >= MAX_SEQ { 0 } else { seq + 1 }
}

/// A whole message received.
#[derive(PartialEq, Eq)]
pub struct Frame {
    /// Its command.
    pub command: FrameCommand,
    /// Its data (zeroized when dropped: a response may be a deciphered key).
    pub data: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame").field("command", &self.command).field("len", &self.data.len()).finish()
    }
}

struct Partial {
    command: FrameCommand,
    announced: usize,
    data: Zeroizing<Vec<u8>>,
    next_seq: u8,
}

/// Puts fragments back together, strictly: every failure is a [`FrameError`] and leaves
/// the reassembler empty (ready for the next message), never a panic.
pub struct Reassembler {
    fragment_size: usize,
    limit: usize,
    partial: Option<Partial>,
}

impl std::fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembler")
            .field("fragment_size", &self.fragment_size)
            .field("limit", &self.limit)
            .field("in_progress", &self.partial.is_some())
            .finish()
    }
}

impl Reassembler {
    /// A reassembler for fragments of at most `fragment_size` bytes and messages of at
    /// most `limit` bytes (capped at [`MAX_MESSAGE`]).
    pub fn new(fragment_size: usize, limit: usize) -> Result<Self> {
        if !(MIN_FRAGMENT..=MAX_FRAGMENT).contains(&fragment_size) {
            return Err(FrameError::BadFragmentSize(fragment_size));
        }
        Ok(Reassembler { fragment_size, limit: limit.min(MAX_MESSAGE), partial: None })
    }

    /// Whether part of a message has arrived.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Drop any partial message.
    pub fn reset(&mut self) {
        self.partial = None;
    }

    /// Take one fragment; a message, once complete.
    pub fn push(&mut self, fragment: &[u8]) -> Result<Option<Frame>> {
        let r = self.push_inner(fragment);
        if r.is_err() {
            self.partial = None;
        }
        r
    }

    fn push_inner(&mut self, fragment: &[u8]) -> Result<Option<Frame>> {
        let (&head, rest) = fragment.split_first().ok_or(FrameError::Empty)?;
        if fragment.len() > self.fragment_size {
            return Err(FrameError::FragmentTooLong { len: fragment.len(), max: self.fragment_size });
        }
        if head & 0x80 != 0 {
            if self.partial.is_some() {
                return Err(FrameError::UnexpectedInit);
            }
            let command = FrameCommand::from_byte(head).ok_or(FrameError::UnknownCommand(head))?;
            let [hi, lo, data @ ..] = rest else { return Err(FrameError::TruncatedHeader(fragment.len())) };
            let announced = u16::from_be_bytes([*hi, *lo]) as usize;
            if announced > self.limit {
                return Err(FrameError::TooLarge { announced, limit: self.limit });
            }
            if data.len() > announced {
                return Err(FrameError::Overlong { announced });
            }
            let mut buf = Zeroizing::new(Vec::with_capacity(announced));
            buf.extend_from_slice(data);
            self.partial = Some(Partial { command, announced, data: buf, next_seq: 0 });
        } else {
            let p = self.partial.as_mut().ok_or(FrameError::UnexpectedContinuation(head))?;
            if head != p.next_seq {
                return Err(FrameError::WrongSequence { expected: p.next_seq, got: head });
            }
            if p.data.len() + rest.len() > p.announced {
                return Err(FrameError::Overlong { announced: p.announced });
            }
            p.data.extend_from_slice(rest);
            p.next_seq = next_seq(p.next_seq);
        }
        match &self.partial {
            Some(p) if p.data.len() == p.announced => Ok(self.partial.take().map(|p| Frame { command: p.command, data: p.data })),
            _ => Ok(None),
        }
    }
}

/// What one received fragment means for a host waiting for the answer to a MSG.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// More fragments are due.
    More,
    /// The key is still working (the KEEPALIVE status byte): keep waiting.
    KeepAlive(u8),
    /// The response APDU (data ‖ SW1 SW2).
    Response(Zeroizing<Vec<u8>>),
}

/// The host side of one exchange: feed it the key's fragments until it yields the
/// response, a keep-alive or an error (an ERROR frame is [`FrameError::KeyError`]).
pub fn response_step(r: &mut Reassembler, fragment: &[u8]) -> Result<Step> {
    let Some(frame) = r.push(fragment)? else { return Ok(Step::More) };
    match frame.command {
        FrameCommand::Msg if frame.data.len() >= 2 => Ok(Step::Response(frame.data)),
        FrameCommand::Msg => Err(FrameError::BadPayload("MSG", frame.data.len())),
        FrameCommand::KeepAlive => match frame.data.as_slice() {
            [status] => Ok(Step::KeepAlive(*status)),
            d => Err(FrameError::BadPayload("KEEPALIVE", d.len())),
        },
        FrameCommand::Error => match frame.data.as_slice() {
            [code] => Err(FrameError::KeyError { code: *code }),
            d => Err(FrameError::BadPayload("ERROR", d.len())),
        },
        other @ (FrameCommand::Ping | FrameCommand::Cancel) => Err(FrameError::UnexpectedCommand(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_types::{ErrorCode, HasErrorCode};

    fn message(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    fn roundtrip(n: usize, size: usize) {
        let data = message(n);
        let frags = fragment(FrameCommand::Msg, &data, size).unwrap();
        assert!(frags.iter().all(|f| f.len() <= size && !f.is_empty()));
        let mut r = Reassembler::new(size, MAX_MESSAGE).unwrap();
        let (last, init) = frags.split_last().unwrap();
        for f in init {
            assert_eq!(r.push(f).unwrap(), None);
        }
        let got = r.push(last).unwrap().unwrap();
        assert_eq!(got.command, FrameCommand::Msg);
        assert_eq!(got.data.as_slice(), data.as_slice(), "n={n} size={size}");
        assert!(!r.in_progress());
    }

    #[test]
    fn fragments_and_reassembles_at_20_and_512() {
        for size in [MIN_FRAGMENT, MAX_FRAGMENT] {
            for n in [0, 1, 16, 17, 18, 36, 37, 255, 509, 510, 1021, 4096, MAX_MESSAGE] {
                roundtrip(n, size);
            }
        }
    }

    #[test]
    fn layout_matches_the_spec() {
        // 20-byte fragments: the init carries 17 bytes, each continuation 19.
        let frags = fragment(FrameCommand::Msg, &message(40), 20).unwrap();
        assert_eq!(frags.len(), 3);
        assert_eq!(&frags[0][..3], &[0x83, 0x00, 40]);
        assert_eq!(frags[0].len(), 20);
        assert_eq!(frags[1][0], 0);
        assert_eq!(frags[1].len(), 20);
        assert_eq!(frags[2][0], 1);
        assert_eq!(frags[2].len(), 1 + 40 - 17 - 19);
        // Sequence numbers wrap from 0x7F to 0 (20-byte fragments: 17 + 129 * 19 bytes
        // need 129 continuations, SEQ 0..=0x7F then 0).
        let n = 17 + 129 * 19;
        let frags = fragment(FrameCommand::Msg, &message(n), 20).unwrap();
        assert_eq!(frags.len(), 130);
        assert_eq!(frags[128][0], 0x7F);
        assert_eq!(frags[129][0], 0x00);
        roundtrip(n, 20);
        // An empty message is one 3-byte fragment.
        assert_eq!(fragment(FrameCommand::Cancel, &[], 20).unwrap(), [Zeroizing::new(vec![0xBE, 0, 0])]);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert_eq!(fragment(FrameCommand::Msg, b"x", 19).unwrap_err(), FrameError::BadFragmentSize(19));
        assert_eq!(fragment(FrameCommand::Msg, b"x", 513).unwrap_err(), FrameError::BadFragmentSize(513));
        assert_eq!(fragment(FrameCommand::Msg, &message(65536), 512).unwrap_err(), FrameError::MessageTooLong(65536));
        assert!(Reassembler::new(8, 100).is_err());
        assert_eq!(parse_control_point_length(&[0x00, 0x14]).unwrap(), 20);
        assert_eq!(parse_control_point_length(&[0x02, 0x00]).unwrap(), 512);
        for bad in [&[0x00, 0x13][..], &[0x02, 0x01], &[0x14], &[], &[0, 0, 20]] {
            assert_eq!(parse_control_point_length(bad).unwrap_err().code(), ErrorCode::BleServiceInvalid, "{bad:?}");
        }
    }

    fn err(r: &mut Reassembler, frags: &[&[u8]]) -> FrameError {
        let mut last = None;
        for f in frags {
            match r.push(f) {
                Ok(_) => {}
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        let e = last.expect("an error");
        assert!(!r.in_progress(), "an error leaves the reassembler empty");
        e
    }

    #[test]
    fn strict_checks() {
        let mut r = Reassembler::new(20, 1024).unwrap();
        assert_eq!(err(&mut r, &[&[]]), FrameError::Empty);
        assert_eq!(err(&mut r, &[&[0x83, 0x00]]), FrameError::TruncatedHeader(2));
        assert_eq!(err(&mut r, &[&[0x90, 0x00, 0x01, 0x00]]), FrameError::UnknownCommand(0x90));
        assert_eq!(err(&mut r, &[&[0x00, 1, 2]]), FrameError::UnexpectedContinuation(0));
        // Wrong SEQ: 1 where 0 is due.
        let init: Vec<u8> = [&[0x83, 0x00, 30][..], &[0u8; 17]].concat();
        assert_eq!(err(&mut r, &[&init, &[1, 9, 9]]), FrameError::WrongSequence { expected: 0, got: 1 });
        // A repeated SEQ.
        assert_eq!(err(&mut r, &[&init, &[0, 9], &[0, 9]]), FrameError::WrongSequence { expected: 1, got: 0 });
        // More data than announced, in the init and in a continuation.
        assert_eq!(err(&mut r, &[&[0x83, 0x00, 0x01, 0xAA, 0xBB]]), FrameError::Overlong { announced: 1 });
        assert_eq!(
            err(&mut r, &[&init, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]]),
            FrameError::Overlong { announced: 30 }
        );
        // An announced length above the limit.
        assert_eq!(err(&mut r, &[&[0x83, 0x04, 0x01]]), FrameError::TooLarge { announced: 1025, limit: 1024 });
        // A fragment longer than the control-point length.
        assert_eq!(err(&mut r, &[&[0x83; 21]]), FrameError::FragmentTooLong { len: 21, max: 20 });
        // A new message while one is incomplete.
        assert_eq!(err(&mut r, &[&init, &init]), FrameError::UnexpectedInit);
        // After errors it works again.
        assert_eq!(r.push(&[0x83, 0x00, 0x02, 0x90, 0x00]).unwrap().unwrap().data.as_slice(), &[0x90, 0x00]);
        for e in [FrameError::Empty, FrameError::WrongSequence { expected: 0, got: 1 }, FrameError::UnknownCommand(0x90)] {
            assert_eq!(e.code(), ErrorCode::BleFrameInvalid);
        }
    }

    #[test]
    fn host_steps_keepalive_error_and_response() {
        let mut r = Reassembler::new(512, MAX_MESSAGE).unwrap();
        assert_eq!(response_step(&mut r, &[0x82, 0x00, 0x01, KEEPALIVE_PROCESSING]).unwrap(), Step::KeepAlive(1));
        assert_eq!(response_step(&mut r, &[0x82, 0x00, 0x01, KEEPALIVE_USER_NEEDED]).unwrap(), Step::KeepAlive(2));
        let e = response_step(&mut r, &[0xBF, 0x00, 0x01, 0x06]).unwrap_err();
        assert_eq!(e, FrameError::KeyError { code: 6 });
        assert_eq!(e.code(), ErrorCode::BleKeyError);
        assert_eq!(e.to_string(), "the key reported an error: busy (0x06)");
        assert_eq!(response_step(&mut r, &[0x82, 0x00, 0x00]).unwrap_err(), FrameError::BadPayload("KEEPALIVE", 0));
        assert_eq!(response_step(&mut r, &[0xBF, 0x00, 0x02, 1, 2]).unwrap_err(), FrameError::BadPayload("ERROR", 2));
        assert_eq!(response_step(&mut r, &[0x83, 0x00, 0x01, 0x90]).unwrap_err(), FrameError::BadPayload("MSG", 1));
        assert_eq!(response_step(&mut r, &[0xBE, 0x00, 0x00]).unwrap_err(), FrameError::UnexpectedCommand(FrameCommand::Cancel));
        let frags = fragment(FrameCommand::Msg, &message(700), 512).unwrap();
        assert_eq!(response_step(&mut r, &frags[0]).unwrap(), Step::More);
        match response_step(&mut r, &frags[1]).unwrap() {
            Step::Response(d) => assert_eq!(d.as_slice(), message(700).as_slice()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn frame_debug_hides_data() {
        let f = Frame { command: FrameCommand::Msg, data: Zeroizing::new(b"123456".to_vec()) };
        assert_eq!(format!("{f:?}"), "Frame { command: Msg, len: 6 }");
    }
}
