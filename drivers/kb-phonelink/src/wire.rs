//! Frames and records as plain values (docs/phone-link.md, "Frames" and "Records"): no
//! I/O, so the fuzz target and the tests can feed them anything.
//!
//! A **frame** is what a transport carries: `version (1) ‖ type (1) ‖ body`. A **record**
//! is the plaintext inside one transport frame: `type (1) ‖ body`.

use crate::conn::LinkError;
use kb_types::ErrorCode;
use zeroize::Zeroizing;

/// The link's wire version (the first byte of every frame).
pub const LINK_VERSION: u8 = 1;
/// Bytes a frame header takes.
pub const FRAME_HEADER: usize = 2;
/// The AEAD tag every transport frame carries.
pub const TAG_LEN: usize = 16;
/// A phone name is at most this many bytes of UTF-8.
pub const MAX_NAME: usize = 64;
/// A close reason's text is at most this many bytes of UTF-8.
pub const MAX_REASON: usize = 200;

/// The frame types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// Phone → PC: offer id (8) ‖ Noise XKpsk3 message 1.
    PairInit = 0x01,
    /// PC → phone: Noise XKpsk3 message 2.
    PairResponse = 0x02,
    /// Phone → PC: Noise XKpsk3 message 3.
    PairFinish = 0x03,
    /// Phone → PC: Noise IKpsk2 message 1.
    ReconnectInit = 0x11,
    /// PC → phone: Noise IKpsk2 message 2.
    ReconnectResponse = 0x12,
    /// PC → phone, before the handshake completes: error code (u32 BE). Unauthenticated:
    /// for the phone's screen only.
    Refused = 0x20,
    /// Either way, after the handshake: one Noise transport message (a sealed record).
    Transport = 0x30,
}

impl FrameType {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => Self::PairInit,
            0x02 => Self::PairResponse,
            0x03 => Self::PairFinish,
            0x11 => Self::ReconnectInit,
            0x12 => Self::ReconnectResponse,
            0x20 => Self::Refused,
            0x30 => Self::Transport,
            _ => return None,
        })
    }
}

/// A protocol violation with `code`.
pub(crate) fn err(code: ErrorCode, detail: impl Into<String>) -> LinkError {
    LinkError::Failed { code, detail: detail.into() }
}

/// Build a frame.
pub fn frame(t: FrameType, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(FRAME_HEADER + body.len());
    f.push(LINK_VERSION);
    f.push(t as u8);
    f.extend_from_slice(body);
    f
}

/// Split a frame into its type and body. `max` is the frame cap.
pub fn parse_frame(f: &[u8], max: usize) -> Result<(FrameType, &[u8]), LinkError> {
    if f.len() > max {
        return Err(err(ErrorCode::LinkFrameTooLarge, format!("frame of {} bytes over the cap of {max}", f.len())));
    }
    match f {
        [LINK_VERSION, t, body @ ..] => {
            let t = FrameType::from_byte(*t).ok_or_else(|| err(ErrorCode::LinkProtocol, "unknown frame type"))?;
            Ok((t, body))
        }
        [v, ..] if *v != LINK_VERSION => Err(err(ErrorCode::LinkProtocol, format!("link version {v}; this side speaks 1"))),
        _ => Err(err(ErrorCode::LinkProtocol, "empty frame")),
    }
}

/// A refusal frame's code (unknown numbers read as `link_handshake_failed`).
pub fn parse_refusal(body: &[u8]) -> ErrorCode {
    body.first_chunk::<4>()
        .and_then(|b| ErrorCode::from_number(u32::from_be_bytes(*b)))
        .filter(|c| c.category() == kb_types::Category::PhoneLink)
        .unwrap_or(ErrorCode::LinkHandshakeFailed)
}

/// The plaintext records inside transport frames.
#[derive(Clone, PartialEq, Eq)]
pub enum Record {
    /// The last (or only) fragment of an application message.
    Data(Vec<u8>),
    /// A fragment of an application message; more follow.
    DataMore(Vec<u8>),
    /// Keep-alive.
    Ping,
    /// The sender closes the link: code 0 is a normal close, else an error code number.
    Close {
        /// 0 or an error code number.
        code: u32,
        /// A short reason for logs (no secrets).
        reason: String,
    },
    /// Phone → PC, first record after every handshake: the phone's display name.
    Hello {
        /// The phone's name as the user set it.
        name: String,
    },
    /// PC → phone after the user confirmed a new phone: the link secret for reconnects.
    Paired {
        /// The per-pairing link secret.
        link_secret: Zeroizing<[u8; 32]>,
    },
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Record::Data(d) => write!(f, "Data({} bytes)", d.len()),
            Record::DataMore(d) => write!(f, "DataMore({} bytes)", d.len()),
            Record::Ping => f.write_str("Ping"),
            Record::Close { code, reason } => write!(f, "Close({code}, {reason:?})"),
            Record::Hello { name } => write!(f, "Hello({name:?})"),
            Record::Paired { .. } => f.write_str("Paired(REDACTED)"),
        }
    }
}

/// Record type bytes.
mod rt {
    pub(super) const DATA: u8 = 0x01;
    pub(super) const DATA_MORE: u8 = 0x02;
    pub(super) const PING: u8 = 0x03;
    pub(super) const CLOSE: u8 = 0x04;
    pub(super) const HELLO: u8 = 0x05;
    pub(super) const PAIRED: u8 = 0x06;
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Record {
    /// Encode (names and reasons are cut to their caps at a character boundary).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(Vec::new());
        match self {
            Record::Data(d) => {
                b.push(rt::DATA);
                b.extend_from_slice(d);
            }
            Record::DataMore(d) => {
                b.push(rt::DATA_MORE);
                b.extend_from_slice(d);
            }
            Record::Ping => b.push(rt::PING),
            Record::Close { code, reason } => {
                b.push(rt::CLOSE);
                b.extend_from_slice(&code.to_be_bytes());
                b.extend_from_slice(truncate_utf8(reason, MAX_REASON).as_bytes());
            }
            Record::Hello { name } => {
                b.push(rt::HELLO);
                b.extend_from_slice(truncate_utf8(name, MAX_NAME).as_bytes());
            }
            Record::Paired { link_secret } => {
                b.push(rt::PAIRED);
                b.extend_from_slice(&link_secret[..]);
            }
        }
        b
    }

    /// Decode; anything malformed is a `link_protocol` error.
    pub fn decode(b: &[u8]) -> Result<Record, LinkError> {
        let bad = |what: &str| err(ErrorCode::LinkProtocol, format!("malformed {what} record"));
        let (&t, body) = b.split_first().ok_or_else(|| bad("empty"))?;
        Ok(match t {
            rt::DATA => Record::Data(body.to_vec()),
            rt::DATA_MORE => Record::DataMore(body.to_vec()),
            rt::PING if body.is_empty() => Record::Ping,
            rt::CLOSE => {
                let (code, text) = body.split_first_chunk::<4>().ok_or_else(|| bad("close"))?;
                if text.len() > MAX_REASON {
                    return Err(bad("close"));
                }
                Record::Close {
                    code: u32::from_be_bytes(*code),
                    reason: String::from_utf8(text.to_vec()).map_err(|_| bad("close"))?,
                }
            }
            rt::HELLO if body.len() <= MAX_NAME => {
                Record::Hello { name: String::from_utf8(body.to_vec()).map_err(|_| bad("hello"))? }
            }
            rt::PAIRED => {
                let s: [u8; 32] = body.try_into().map_err(|_| bad("paired"))?;
                Record::Paired { link_secret: Zeroizing::new(s) }
            }
            _ => return Err(bad("unknown")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_caps_hold() {
        for r in [
            Record::Data(b"abc".to_vec()),
            Record::DataMore(vec![]),
            Record::Ping,
            Record::Close { code: 6013, reason: "tampered".into() },
            Record::Hello { name: "张三的手机".into() },
            Record::Paired { link_secret: Zeroizing::new([5; 32]) },
        ] {
            assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        }
        let long = Record::Hello { name: "手".repeat(40) };
        match Record::decode(&long.encode()).unwrap() {
            Record::Hello { name } => assert!(name.len() <= MAX_NAME && name.chars().all(|c| c == '手')),
            other => panic!("{other:?}"),
        }
        assert!(Record::decode(&[0x03, 0]).is_err());
        assert!(Record::decode(&[0x06, 1, 2]).is_err());
        assert!(Record::decode(&[0x77]).is_err());
        assert!(!format!("{:?}", Record::Paired { link_secret: Zeroizing::new([0xab; 32]) }).contains("ab"));
    }

    #[test]
    fn frames_are_checked() {
        let f = frame(FrameType::Transport, b"xyz");
        assert_eq!(parse_frame(&f, 100).unwrap(), (FrameType::Transport, &b"xyz"[..]));
        let code = |r: Result<(FrameType, &[u8]), LinkError>| match r {
            Err(LinkError::Failed { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(parse_frame(&f, 4)), ErrorCode::LinkFrameTooLarge);
        assert_eq!(code(parse_frame(&[2, 0x30], 100)), ErrorCode::LinkProtocol);
        assert_eq!(code(parse_frame(&[1, 0x99], 100)), ErrorCode::LinkProtocol);
        assert_eq!(code(parse_frame(&[], 100)), ErrorCode::LinkProtocol);
        assert_eq!(parse_refusal(&6010u32.to_be_bytes()), ErrorCode::PhoneRevoked);
        assert_eq!(parse_refusal(&4001u32.to_be_bytes()), ErrorCode::LinkHandshakeFailed);
    }
}

/// A display name made safe for screens and records: control and bidi-override
/// characters removed, trimmed, at most [`MAX_NAME`] bytes, `phone` when empty.
pub fn clean_name(raw: &str) -> String {
    let bidi = |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
    let clean: String = raw.chars().filter(|c| !c.is_control() && !bidi(*c)).collect();
    let clean = truncate_utf8(clean.trim(), MAX_NAME).trim();
    if clean.is_empty() { "phone".to_owned() } else { clean.to_owned() }
}
