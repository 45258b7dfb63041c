//! Harness bodies for the phone link's parsers (uses nothing but `kb_phonelink` and `std`,
//! so `drivers/kb-phonelink/tests/no_panic.rs` can include this file).
//!
//! - `phone_qr`: a scanned pairing string (`KB1:` + base32) and the raw QR body. Invariant:
//!   an accepted offer re-encodes to a string that parses to the same offer, and an
//!   accepted body is canonical (re-encodes to the same bytes).
//! - `phone_frame`: a frame as a transport delivers it, fed to the frame parser, the
//!   record parser, and the PC's and the phone's handshake state machines (a fixed PC key
//!   and offer). Invariant: an accepted record re-encodes to the same bytes; nothing
//!   panics, whatever the bytes.

use kb_phonelink::handshake::{Options, PcPairing, PcReconnect, PhonePairing, PhoneReconnect, StaticKey};
use kb_phonelink::qr::{Endpoint, Offer};
use kb_phonelink::wire::{Record, parse_frame};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Returns whether the string (or, failing that, the raw body) was accepted.
pub fn phone_qr(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let by_text = match Offer::parse(&text) {
        Ok(o) => {
            let again = o.encode().expect("an accepted offer encodes");
            assert_eq!(Offer::parse(&again).expect("re-encoded offer parses"), o, "round trip");
            true
        }
        Err(_) => false,
    };
    let by_body = match Offer::from_body(data) {
        Ok(o) => {
            assert_eq!(o.body(), data, "an accepted body is canonical");
            true
        }
        Err(_) => false,
    };
    by_text || by_body
}

fn fixed_key(byte: u8) -> Option<StaticKey> {
    StaticKey::from_private(&[byte; 32]).ok()
}

/// Returns whether the frame parser accepted the input.
pub fn phone_frame(data: &[u8]) -> bool {
    let accepted = parse_frame(data, kb_phonelink::MAX_FRAME).is_ok();
    if let Ok(r) = Record::decode(data) {
        assert_eq!(&r.encode()[..], data, "an accepted record is canonical");
    }
    let (Some(pc), Some(phone)) = (fixed_key(0x11), fixed_key(0x22)) else { return accepted };
    let offer = Offer {
        pc_key: *pc.public(),
        offer_id: *b"offer-01",
        secret: zeroize::Zeroizing::new(*b"0123456789abcdef"),
        expires: 1_800_000_000,
        endpoints: vec![Endpoint::Direct(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)), 48213))],
    };
    let opts = Options::default();
    // The PC reading a first message of either kind.
    if let Ok((r, _)) = PcPairing::respond(&offer, &pc, data, &opts) {
        let _ = r.finish(data);
    }
    if let Ok(r) = PcReconnect::read_init(&pc, data, &opts) {
        let _ = r.respond(&[0x55; 32]);
    }
    // The phone reading the PC's answer.
    if let Ok((p, _)) = PhonePairing::start(&offer, &phone, &opts) {
        let _ = p.finish(data);
    }
    if let Ok((p, _)) = PhoneReconnect::start(pc.public(), &phone, &[0x55; 32], &opts) {
        let _ = p.finish(data);
    }
    accepted
}
