//! The pairing QR: what the PC shows and the phone scans (docs/phone-link.md, "Pairing QR").
//!
//! `KB1:` + RFC 4648 base32 (uppercase, no padding) of a compact binary body. The whole
//! string is in the QR *alphanumeric* character set (`0-9 A-Z` and `:`), which packs
//! 5.5 bits per module pair and scans reliably. The body:
//!
//! | bytes | field |
//! |---|---|
//! | 33 | the PC's static SM2 public key (compressed): pins the PC |
//! | 8 | offer id: which pairing the phone answers (sent in clear in the first frame) |
//! | 16 | the one-time secret (the handshake's psk is derived from it) |
//! | 4 | expiry, Unix seconds, big-endian (the PC enforces it; phones' clocks may drift) |
//! | 1 | number of endpoints, 1–8 |
//! | … | endpoints: `01` IPv4 (4) port (2); `02` IPv6 (16) port (2); `03` relay: url length (1), url (UTF-8 `ws://` or `wss://`), tunnel length (1), tunnel (`[A-Za-z0-9_-]`, 1–64) |
//!
//! Nothing may follow the last endpoint. The exact body bytes are also the pairing
//! handshake's prologue, so a phone that misread any byte fails the handshake.

use crate::conn::LinkError;
use kb_types::ErrorCode;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use zeroize::Zeroizing;

/// The prefix of a version-1 pairing string.
pub const PREFIX: &str = "KB1:";
/// The one format version this code speaks.
pub const VERSION: u8 = 1;
/// The secret's length in bytes (128 bits).
pub const SECRET_LEN: usize = 16;
/// The offer id's length in bytes.
pub const OFFER_ID_LEN: usize = 8;
/// The path of the direct WebSocket endpoint (`ws://IP:port/kb-link/1`).
pub const DIRECT_PATH: &str = "/kb-link/1";
/// At most this many endpoints in one offer.
pub const MAX_ENDPOINTS: usize = 8;
/// A relay URL is at most this long.
pub const MAX_RELAY_URL: usize = 200;
/// A relay tunnel name is at most this long.
pub const MAX_TUNNEL: usize = 64;

/// One way to reach the PC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The PC's direct WebSocket listener on its LAN: `ws://addr/kb-link/1`.
    Direct(SocketAddr),
    /// A relay (NATS WebSocket listener) and the tunnel both sides meet on; see
    /// docs/relay.md.
    Relay {
        /// `ws://` or `wss://` URL of the relay.
        url: String,
        /// The tunnel name (`[A-Za-z0-9_-]`, 1–64 characters).
        tunnel: String,
    },
}

impl Endpoint {
    /// The WebSocket URL of a direct endpoint, the relay URL of a relay.
    pub fn url(&self) -> String {
        match self {
            Endpoint::Direct(a) => format!("ws://{a}{DIRECT_PATH}"),
            Endpoint::Relay { url, .. } => url.clone(),
        }
    }
}

/// Whether `t` is a valid relay tunnel name.
pub fn valid_tunnel(t: &str) -> bool {
    (1..=MAX_TUNNEL).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_relay_url(u: &str) -> bool {
    u.len() <= MAX_RELAY_URL
        && (u.starts_with("ws://") || u.starts_with("wss://"))
        && u.len() > 6
        && u.bytes().all(|b| b.is_ascii_graphic())
}

/// A decoded pairing offer. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Offer {
    /// The PC's static public key (33-byte compressed SM2 point).
    pub pc_key: [u8; 33],
    /// Which pairing this is.
    pub offer_id: [u8; OFFER_ID_LEN],
    /// The one-time secret.
    pub secret: Zeroizing<[u8; SECRET_LEN]>,
    /// Expiry, Unix seconds.
    pub expires: u32,
    /// Ways to reach the PC, in the order to try them.
    pub endpoints: Vec<Endpoint>,
}

impl fmt::Debug for Offer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offer")
            .field("pc_key", &hex::encode(&self.pc_key[..8]))
            .field("offer_id", &hex::encode(self.offer_id))
            .field("secret", &"REDACTED")
            .field("expires", &self.expires)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

fn invalid(detail: &str) -> LinkError {
    LinkError::Failed { code: ErrorCode::PairingOfferInvalid, detail: detail.to_owned() }
}

impl Offer {
    /// The binary body (also the pairing handshake's prologue).
    pub fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(80);
        b.extend_from_slice(&self.pc_key);
        b.extend_from_slice(&self.offer_id);
        b.extend_from_slice(&self.secret[..]);
        b.extend_from_slice(&self.expires.to_be_bytes());
        b.push(self.endpoints.len() as u8);
        for e in &self.endpoints {
            match e {
                Endpoint::Direct(SocketAddr::V4(a)) => {
                    b.push(1);
                    b.extend_from_slice(&a.ip().octets());
                    b.extend_from_slice(&a.port().to_be_bytes());
                }
                Endpoint::Direct(SocketAddr::V6(a)) => {
                    b.push(2);
                    b.extend_from_slice(&a.ip().octets());
                    b.extend_from_slice(&a.port().to_be_bytes());
                }
                Endpoint::Relay { url, tunnel } => {
                    b.push(3);
                    b.push(url.len() as u8);
                    b.extend_from_slice(url.as_bytes());
                    b.push(tunnel.len() as u8);
                    b.extend_from_slice(tunnel.as_bytes());
                }
            }
        }
        b
    }

    /// The QR string. Fails when a field is out of range (no endpoint, too many, a bad
    /// relay URL or tunnel).
    pub fn encode(&self) -> Result<String, LinkError> {
        self.validate()?;
        Ok(format!("{PREFIX}{}", base32_encode(&self.body())))
    }

    fn validate(&self) -> Result<(), LinkError> {
        if self.endpoints.is_empty() || self.endpoints.len() > MAX_ENDPOINTS {
            return Err(invalid("an offer needs 1 to 8 endpoints"));
        }
        if !crate::suite::is_valid_public_key(&self.pc_key) {
            return Err(invalid("the PC key is not an SM2 point"));
        }
        for e in &self.endpoints {
            if let Endpoint::Relay { url, tunnel } = e
                && (!valid_relay_url(url) || !valid_tunnel(tunnel))
            {
                return Err(invalid("bad relay URL or tunnel"));
            }
        }
        Ok(())
    }

    /// Parse a scanned string. Leading/trailing white space is ignored and lower-case
    /// base32 is accepted (some scanners change case); everything else is strict.
    pub fn parse(s: &str) -> Result<Offer, LinkError> {
        let s = s.trim();
        let (head, rest) = s.split_once(':').ok_or_else(|| invalid("no KB1: prefix"))?;
        let head = head.to_ascii_uppercase();
        let version = head.strip_prefix("KB").ok_or_else(|| invalid("no KB1: prefix"))?;
        match version.parse::<u32>() {
            Ok(1) => {}
            Ok(_) => {
                return Err(LinkError::Failed {
                    code: ErrorCode::PairingOfferVersion,
                    detail: format!("pairing QR version {version}; this side speaks 1"),
                });
            }
            Err(_) => return Err(invalid("no KB1: prefix")),
        }
        let body = base32_decode(rest).ok_or_else(|| invalid("not base32"))?;
        Self::from_body(&body)
    }

    /// Decode the binary body.
    pub fn from_body(body: &[u8]) -> Result<Offer, LinkError> {
        let mut r = Reader(body);
        let pc_key: [u8; 33] = r.array().ok_or_else(|| invalid("truncated"))?;
        let offer_id = r.array().ok_or_else(|| invalid("truncated"))?;
        let secret = Zeroizing::new(r.array::<SECRET_LEN>().ok_or_else(|| invalid("truncated"))?);
        let expires = u32::from_be_bytes(r.array().ok_or_else(|| invalid("truncated"))?);
        let n = r.byte().ok_or_else(|| invalid("truncated"))? as usize;
        let mut endpoints = Vec::with_capacity(n.min(MAX_ENDPOINTS));
        for _ in 0..n {
            let e = match r.byte().ok_or_else(|| invalid("truncated"))? {
                1 => {
                    let ip: [u8; 4] = r.array().ok_or_else(|| invalid("truncated"))?;
                    let port = u16::from_be_bytes(r.array().ok_or_else(|| invalid("truncated"))?);
                    Endpoint::Direct(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
                }
                2 => {
                    let ip: [u8; 16] = r.array().ok_or_else(|| invalid("truncated"))?;
                    let port = u16::from_be_bytes(r.array().ok_or_else(|| invalid("truncated"))?);
                    Endpoint::Direct(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
                }
                3 => {
                    let url = r.string().ok_or_else(|| invalid("bad relay URL"))?;
                    let tunnel = r.string().ok_or_else(|| invalid("bad relay tunnel"))?;
                    Endpoint::Relay { url, tunnel }
                }
                _ => return Err(invalid("unknown endpoint type")),
            };
            endpoints.push(e);
        }
        if !r.0.is_empty() {
            return Err(invalid("trailing bytes"));
        }
        let offer = Offer { pc_key, offer_id, secret, expires, endpoints };
        offer.validate()?;
        Ok(offer)
    }

    /// Whether the offer has expired at Unix time `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= u64::from(self.expires)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*a)
    }
    fn byte(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }
    fn string(&mut self) -> Option<String> {
        let n = self.byte()? as usize;
        let (s, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        String::from_utf8(s.to_vec()).ok()
    }
}

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32, upper case, no padding.
pub fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decode RFC 4648 base32 without padding (either case). Refuses non-canonical input
/// (non-zero spare bits, impossible lengths) so every body has exactly one string.
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    if matches!(s.len() % 8, 1 | 3 | 6) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    if acc != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        let d = crate::suite::generate_private_key().unwrap();
        Offer {
            pc_key: crate::suite::public_key_of(&d[..]).unwrap(),
            offer_id: [1, 2, 3, 4, 5, 6, 7, 8],
            secret: Zeroizing::new([9; 16]),
            expires: 1_800_000_000,
            endpoints: vec![
                Endpoint::Direct("192.168.1.20:48213".parse().unwrap()),
                Endpoint::Direct("[fe80::1]:48213".parse().unwrap()),
                Endpoint::Relay { url: "wss://relay.example.com:8443".into(), tunnel: "t-0123abcd".into() },
            ],
        }
    }

    #[test]
    fn round_trip_is_alphanumeric_and_compact() {
        let o = offer();
        let s = o.encode().unwrap();
        assert!(s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b':'), "{s}");
        assert_eq!(Offer::parse(&s).unwrap(), o);
        assert_eq!(Offer::parse(&s.to_lowercase()).unwrap(), o);
        let mut lan_only = o.clone();
        lan_only.endpoints.truncate(1);
        assert!(lan_only.encode().unwrap().len() <= 120);
        assert!(!format!("{o:?}").contains("0909"));
    }

    #[test]
    fn bad_strings_have_stable_codes() {
        let s = offer().encode().unwrap();
        let code = |s: &str| match Offer::parse(s) {
            Err(LinkError::Failed { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(&s.replacen("KB1:", "KB2:", 1)), ErrorCode::PairingOfferVersion);
        assert_eq!(code(&s.replacen("KB1:", "XX1:", 1)), ErrorCode::PairingOfferInvalid);
        assert_eq!(code(&s[..s.len() - 8]), ErrorCode::PairingOfferInvalid);
        assert_eq!(code(&format!("{s}AAAAAAAA")), ErrorCode::PairingOfferInvalid);
        assert_eq!(code(&s.replacen('A', "1", 1)), ErrorCode::PairingOfferInvalid);
        assert_eq!(code("KB1:"), ErrorCode::PairingOfferInvalid);
        // A PC key that is not a curve point.
        let mut body = offer().body();
        body[0] = 0x05;
        assert_eq!(code(&format!("KB1:{}", base32_encode(&body))), ErrorCode::PairingOfferInvalid);
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(plain.as_bytes()), enc);
            assert_eq!(base32_decode(enc).unwrap(), plain.as_bytes());
        }
        assert!(base32_decode("MZ").is_none(), "non-zero spare bits");
        assert!(base32_decode("M").is_none());
    }
}
