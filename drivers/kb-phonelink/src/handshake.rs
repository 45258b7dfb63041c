//! The two Noise handshakes as plain state machines (no I/O): bytes in, bytes out. The
//! async drivers in `pc.rs` and `phone.rs` move the frames; the fuzz target and the test
//! vectors call these directly.
//!
//! - **Pairing**, `Noise_XKpsk3_SM2_SM4GCM_SM3`: the phone (initiator) knows the PC's
//!   static key from the QR; psk = SM3("KeyBridge phone link v1 pairing psk" ‖ secret);
//!   prologue = "KeyBridge phone link v1 pairing" ‖ the QR body.
//! - **Reconnect**, `Noise_IKpsk2_SM2_SM4GCM_SM3`: the phone sends its static key in the
//!   first message; the PC looks it up and uses that pairing's 32-byte link secret as psk.
//!   Prologue = "KeyBridge phone link v1 reconnect".
//!
//! Both end with a [`Established`]: the transport state, the peer's static key, the
//! handshake hash and the 6-digit confirmation code derived from it.

use crate::conn::{LinkError, PeerId};
use crate::qr::{OFFER_ID_LEN, Offer};
use crate::suite::{self, GmResolver, PAIRING_PROTOCOL, PUBLIC_KEY_LEN, RECONNECT_PROTOCOL};
use crate::wire::{FrameType, err, frame, parse_frame, parse_refusal};
use kb_crypto::sm3::{Digest, Sm3};
use kb_types::ErrorCode;
use snow::{Builder, HandshakeState, TransportState};
use std::fmt;
use zeroize::Zeroizing;

/// The largest handshake frame either side accepts.
pub const MAX_HANDSHAKE_FRAME: usize = 1024;

const PAIRING_PROLOGUE: &[u8] = b"KeyBridge phone link v1 pairing";
const RECONNECT_PROLOGUE: &[u8] = b"KeyBridge phone link v1 reconnect";
const PAIRING_PSK_LABEL: &[u8] = b"KeyBridge phone link v1 pairing psk";
const CODE_LABEL: &[u8] = b"KeyBridge phone link v1 confirmation code";

/// A static SM2 key pair (the PC's or a phone's). `Debug` never shows the private key.
#[derive(Clone)]
pub struct StaticKey {
    private: Zeroizing<[u8; 32]>,
    public: [u8; PUBLIC_KEY_LEN],
}

impl fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticKey({}, private: REDACTED)", peer_id(&self.public))
    }
}

impl StaticKey {
    /// A fresh key pair.
    pub fn generate() -> Result<Self, LinkError> {
        let d = suite::generate_private_key().map_err(|_| err(ErrorCode::Internal, "no randomness"))?;
        Self::from_private(&d[..])
    }

    /// From the 32-byte private scalar.
    pub fn from_private(d: &[u8]) -> Result<Self, LinkError> {
        let public = suite::public_key_of(d).ok_or_else(|| err(ErrorCode::PairingStoreFailed, "not an SM2 private key"))?;
        let mut private = Zeroizing::new([0u8; 32]);
        private.copy_from_slice(d);
        Ok(Self { private, public })
    }

    /// The 33-byte compressed public key.
    pub fn public(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public
    }

    /// The private scalar (for storing it in the keyring).
    pub fn private_bytes(&self) -> &Zeroizing<[u8; 32]> {
        &self.private
    }

    /// This key's [`PeerId`].
    pub fn peer_id(&self) -> PeerId {
        peer_id(&self.public)
    }
}

/// A peer's id: the first 10 bytes of SM3 of its static public key, in hex.
pub fn peer_id(public: &[u8]) -> PeerId {
    PeerId(hex::encode(&Sm3::digest(public)[..10]))
}

/// The 6-digit confirmation code of a handshake hash: the first 4 bytes of
/// SM3(label ‖ h) as a big-endian number, modulo 10⁶, zero-padded.
pub fn confirmation_code(handshake_hash: &[u8]) -> String {
    let mut h = Sm3::new();
    h.update(CODE_LABEL);
    h.update(handshake_hash);
    let d = h.finalize();
    format!("{:06}", u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % 1_000_000)
}

/// The pairing psk of a QR secret.
pub fn pairing_psk(secret: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sm3::new();
    h.update(PAIRING_PSK_LABEL);
    h.update(secret);
    Zeroizing::new(h.finalize().into())
}

/// Prologue = label ‖ the QR body without its secret (the secret goes in as the psk, so a
/// wrong secret fails exactly at message 3, with `pairing_proof_failed`).
fn pairing_prologue(offer: &Offer) -> Vec<u8> {
    let mut body = offer.body();
    let at = PUBLIC_KEY_LEN + OFFER_ID_LEN;
    body.drain(at..at + crate::qr::SECRET_LEN);
    [PAIRING_PROLOGUE, &body].concat()
}

/// A finished handshake.
pub struct Established {
    /// Noise transport state (both directions' keys and nonces).
    pub transport: TransportState,
    /// The peer's static public key.
    pub remote_key: [u8; PUBLIC_KEY_LEN],
    /// The handshake hash.
    pub handshake_hash: [u8; 32],
    /// The 6-digit confirmation code both sides show.
    pub code: String,
}

impl fmt::Debug for Established {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Established({}, code {})", peer_id(&self.remote_key), self.code)
    }
}

/// Handshake options for test vectors: a fixed ephemeral key and a deterministic RNG.
#[derive(Clone, Default)]
pub struct Options {
    /// The ephemeral private key to use instead of a fresh one (test vectors only).
    pub fixed_ephemeral: Option<Zeroizing<[u8; 32]>>,
}

fn builder<'a>(protocol: &str, opts: &'a Options) -> Result<Builder<'a>, LinkError> {
    let params = suite::noise_params(protocol).map_err(|_| err(ErrorCode::Internal, "noise parameters"))?;
    let b = Builder::with_resolver(params, Box::new(GmResolver::new()));
    Ok(match &opts.fixed_ephemeral {
        Some(e) => b.fixed_ephemeral_key_for_testing_only(&e[..]),
        None => b,
    })
}

fn internal(e: snow::Error) -> LinkError {
    err(ErrorCode::Internal, format!("noise state: {e}"))
}

fn write(hs: &mut HandshakeState, payload: &[u8]) -> Result<Vec<u8>, LinkError> {
    let mut buf = vec![0u8; MAX_HANDSHAKE_FRAME];
    let n = hs.write_message(payload, &mut buf).map_err(internal)?;
    buf.truncate(n);
    Ok(buf)
}

fn read(hs: &mut HandshakeState, msg: &[u8], code: ErrorCode) -> Result<Vec<u8>, LinkError> {
    let mut buf = vec![0u8; MAX_HANDSHAKE_FRAME];
    let n = hs.read_message(msg, &mut buf).map_err(|_| err(code, "handshake message did not verify"))?;
    buf.truncate(n);
    Ok(buf)
}

fn remote_key(hs: &HandshakeState) -> Result<[u8; PUBLIC_KEY_LEN], LinkError> {
    hs.get_remote_static()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| err(ErrorCode::LinkHandshakeFailed, "no peer static key"))
}

fn establish(hs: HandshakeState) -> Result<Established, LinkError> {
    // Read the peer's key here: snow's TransportState reports only `dh_len` (32) bytes of it.
    let remote_key = remote_key(&hs)?;
    let mut handshake_hash = [0u8; 32];
    handshake_hash.copy_from_slice(hs.get_handshake_hash());
    let code = confirmation_code(&handshake_hash);
    let transport = hs.into_transport_mode().map_err(internal)?;
    Ok(Established { transport, remote_key, handshake_hash, code })
}

/// Parse a frame the phone expects (`want`), turning a refusal into its code.
fn expect<'a>(f: &'a [u8], want: FrameType) -> Result<&'a [u8], LinkError> {
    match parse_frame(f, MAX_HANDSHAKE_FRAME)? {
        (t, body) if t == want => Ok(body),
        (FrameType::Refused, body) => {
            let code = parse_refusal(body);
            Err(err(code, format!("the PC refused: {}", code.name())))
        }
        (t, _) => Err(err(ErrorCode::LinkProtocol, format!("unexpected {t:?} frame in the handshake"))),
    }
}

/// Phone side of pairing, after message 1.
pub struct PhonePairing {
    hs: HandshakeState,
}

impl PhonePairing {
    /// Message 1 (frame `PairInit`) for `offer`, as `key`.
    pub fn start(offer: &Offer, key: &StaticKey, opts: &Options) -> Result<(Self, Vec<u8>), LinkError> {
        let psk = pairing_psk(&offer.secret[..]);
        let prologue = pairing_prologue(offer);
        let mut hs = builder(PAIRING_PROTOCOL, opts)?
            .local_private_key(&key.private[..])
            .and_then(|b| b.remote_public_key(&offer.pc_key))
            .and_then(|b| b.psk(3, &psk))
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.build_initiator())
            .map_err(internal)?;
        let m1 = write(&mut hs, &[])?;
        let body = [&offer.offer_id[..], &m1].concat();
        Ok((Self { hs }, frame(FrameType::PairInit, &body)))
    }

    /// Read message 2 (or a refusal); returns message 3 (frame `PairFinish`).
    pub fn finish(mut self, f: &[u8]) -> Result<(Vec<u8>, Established), LinkError> {
        let m2 = expect(f, FrameType::PairResponse)?;
        read(&mut self.hs, m2, ErrorCode::LinkHandshakeFailed)?;
        let m3 = write(&mut self.hs, &[])?;
        Ok((frame(FrameType::PairFinish, &m3), establish(self.hs)?))
    }
}

/// The offer id a `PairInit` frame names.
pub fn pairing_offer_id(f: &[u8]) -> Result<[u8; OFFER_ID_LEN], LinkError> {
    match parse_frame(f, MAX_HANDSHAKE_FRAME)? {
        (FrameType::PairInit, body) => body
            .first_chunk::<OFFER_ID_LEN>()
            .copied()
            .ok_or_else(|| err(ErrorCode::LinkHandshakeFailed, "truncated pairing message")),
        _ => Err(err(ErrorCode::LinkProtocol, "not a pairing message")),
    }
}

/// PC side of pairing, after message 2.
pub struct PcPairing {
    hs: HandshakeState,
}

impl PcPairing {
    /// Read message 1 for the PC's own `offer` (the one whose id the frame names) and
    /// write message 2 (frame `PairResponse`).
    pub fn respond(offer: &Offer, key: &StaticKey, f: &[u8], opts: &Options) -> Result<(Self, Vec<u8>), LinkError> {
        let id = pairing_offer_id(f)?;
        if id != offer.offer_id {
            return Err(err(ErrorCode::PairingOfferUnknown, "another offer"));
        }
        let (_, body) = parse_frame(f, MAX_HANDSHAKE_FRAME)?;
        let m1 = &body[OFFER_ID_LEN..];
        let psk = pairing_psk(&offer.secret[..]);
        let prologue = pairing_prologue(offer);
        let mut hs = builder(PAIRING_PROTOCOL, opts)?
            .local_private_key(&key.private[..])
            .and_then(|b| b.psk(3, &psk))
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.build_responder())
            .map_err(internal)?;
        read(&mut hs, m1, ErrorCode::LinkHandshakeFailed)?;
        let m2 = write(&mut hs, &[])?;
        Ok((Self { hs }, frame(FrameType::PairResponse, &m2)))
    }

    /// Read message 3: the phone's static key and its proof of the QR secret.
    pub fn finish(mut self, f: &[u8]) -> Result<Established, LinkError> {
        let m3 = match parse_frame(f, MAX_HANDSHAKE_FRAME)? {
            (FrameType::PairFinish, body) => body,
            _ => return Err(err(ErrorCode::LinkProtocol, "expected the pairing's third message")),
        };
        read(&mut self.hs, m3, ErrorCode::PairingProofFailed)?;
        establish(self.hs)
    }
}

/// Phone side of a reconnect, after message 1.
pub struct PhoneReconnect {
    hs: HandshakeState,
}

impl PhoneReconnect {
    /// Message 1 (frame `ReconnectInit`) to the PC `pc_key` with the pairing's link secret.
    pub fn start(
        pc_key: &[u8; PUBLIC_KEY_LEN],
        key: &StaticKey,
        link_secret: &[u8; 32],
        opts: &Options,
    ) -> Result<(Self, Vec<u8>), LinkError> {
        let mut hs = builder(RECONNECT_PROTOCOL, opts)?
            .local_private_key(&key.private[..])
            .and_then(|b| b.remote_public_key(pc_key))
            .and_then(|b| b.psk(2, link_secret))
            .and_then(|b| b.prologue(RECONNECT_PROLOGUE))
            .and_then(|b| b.build_initiator())
            .map_err(internal)?;
        let m1 = write(&mut hs, &[])?;
        Ok((Self { hs }, frame(FrameType::ReconnectInit, &m1)))
    }

    /// Read message 2 (or a refusal).
    pub fn finish(mut self, f: &[u8]) -> Result<Established, LinkError> {
        let m2 = expect(f, FrameType::ReconnectResponse)?;
        read(&mut self.hs, m2, ErrorCode::LinkHandshakeFailed)?;
        establish(self.hs)
    }
}

/// PC side of a reconnect, after message 1 (the phone's key is known, not yet trusted).
pub struct PcReconnect {
    hs: HandshakeState,
    phone_key: [u8; PUBLIC_KEY_LEN],
}

impl PcReconnect {
    /// Read message 1.
    pub fn read_init(key: &StaticKey, f: &[u8], opts: &Options) -> Result<Self, LinkError> {
        let m1 = match parse_frame(f, MAX_HANDSHAKE_FRAME)? {
            (FrameType::ReconnectInit, body) => body,
            _ => return Err(err(ErrorCode::LinkProtocol, "expected a reconnect message")),
        };
        let mut hs = builder(RECONNECT_PROTOCOL, opts)?
            .local_private_key(&key.private[..])
            .and_then(|b| b.prologue(RECONNECT_PROLOGUE))
            .and_then(|b| b.build_responder())
            .map_err(internal)?;
        read(&mut hs, m1, ErrorCode::LinkHandshakeFailed)?;
        let phone_key = remote_key(&hs)?;
        Ok(Self { hs, phone_key })
    }

    /// The static key the phone claims (proven only once its first record decrypts).
    pub fn phone_key(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.phone_key
    }

    /// Write message 2 with the phone's link secret.
    pub fn respond(mut self, link_secret: &[u8; 32]) -> Result<(Vec<u8>, Established), LinkError> {
        self.hs.set_psk(2, link_secret).map_err(internal)?;
        let m2 = write(&mut self.hs, &[])?;
        Ok((frame(FrameType::ReconnectResponse, &m2), establish(self.hs)?))
    }
}

/// A refusal frame for `code`.
pub fn refusal(code: ErrorCode) -> Vec<u8> {
    frame(FrameType::Refused, &code.number().to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qr::Endpoint;

    fn offer(pc: &StaticKey) -> Offer {
        Offer {
            pc_key: *pc.public(),
            offer_id: [7; 8],
            secret: Zeroizing::new([3; 16]),
            expires: u32::MAX,
            endpoints: vec![Endpoint::Direct("127.0.0.1:1".parse().unwrap())],
        }
    }

    fn transport_round_trip(a: &mut Established, b: &mut Established) {
        let mut ct = [0u8; 64];
        let mut pt = [0u8; 64];
        let n = a.transport.write_message(b"hi", &mut ct).unwrap();
        let m = b.transport.read_message(&ct[..n], &mut pt).unwrap();
        assert_eq!(&pt[..m], b"hi");
    }

    #[test]
    fn pairing_then_reconnect() {
        let pc = StaticKey::generate().unwrap();
        let phone = StaticKey::generate().unwrap();
        let o = offer(&pc);
        let opts = Options::default();
        let (p, f1) = PhonePairing::start(&o, &phone, &opts).unwrap();
        let (r, f2) = PcPairing::respond(&o, &pc, &f1, &opts).unwrap();
        let (f3, mut pe) = p.finish(&f2).unwrap();
        let mut ce = r.finish(&f3).unwrap();
        assert_eq!(pe.code, ce.code);
        assert_eq!(pe.code.len(), 6);
        assert_eq!(&ce.remote_key, phone.public());
        assert_eq!(&pe.remote_key, pc.public());
        transport_round_trip(&mut pe, &mut ce);
        transport_round_trip(&mut ce, &mut pe);

        let secret = [9u8; 32];
        let (p, f1) = PhoneReconnect::start(pc.public(), &phone, &secret, &opts).unwrap();
        let r = PcReconnect::read_init(&pc, &f1, &opts).unwrap();
        assert_eq!(r.phone_key(), phone.public());
        let (f2, mut ce) = r.respond(&secret).unwrap();
        let mut pe = p.finish(&f2).unwrap();
        transport_round_trip(&mut pe, &mut ce);
    }

    #[test]
    fn wrong_secret_or_wrong_pc_fails() {
        let pc = StaticKey::generate().unwrap();
        let phone = StaticKey::generate().unwrap();
        let o = offer(&pc);
        let opts = Options::default();
        let mut wrong = o.clone();
        wrong.secret = Zeroizing::new([4; 16]);
        let (p, f1) = PhonePairing::start(&wrong, &phone, &opts).unwrap();
        let (r, f2) = PcPairing::respond(&o, &pc, &f1, &opts).unwrap();
        let (f3, _) = p.finish(&f2).unwrap();
        let e = r.finish(&f3).unwrap_err();
        assert!(matches!(e, LinkError::Failed { code: ErrorCode::PairingProofFailed, .. }), "{e:?}");

        // A QR whose endpoints were changed: the prologues differ and message 1 fails.
        let mut moved = o.clone();
        moved.endpoints = vec![Endpoint::Direct("127.0.0.2:1".parse().unwrap())];
        let (_, f1) = PhonePairing::start(&moved, &phone, &opts).unwrap();
        let e = PcPairing::respond(&o, &pc, &f1, &opts).err().unwrap();
        assert!(matches!(e, LinkError::Failed { code: ErrorCode::LinkHandshakeFailed, .. }), "{e:?}");

        // A phone that reconnects with the wrong link secret: the PC's answer does not verify.
        let (p, f1) = PhoneReconnect::start(pc.public(), &phone, &[1; 32], &opts).unwrap();
        let (f2, _) = PcReconnect::read_init(&pc, &f1, &opts).unwrap().respond(&[2; 32]).unwrap();
        let e = p.finish(&f2).unwrap_err();
        assert!(matches!(e, LinkError::Failed { code: ErrorCode::LinkHandshakeFailed, .. }));

        // A refusal reaches the phone as its code.
        let (p, _) = PhoneReconnect::start(pc.public(), &phone, &[1; 32], &opts).unwrap();
        let e = p.finish(&refusal(ErrorCode::PhoneRevoked)).unwrap_err();
        assert!(matches!(e, LinkError::Failed { code: ErrorCode::PhoneRevoked, .. }));
    }
}
