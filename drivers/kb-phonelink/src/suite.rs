//! The GM cipher suite for Noise, plugged into `snow` through its [`CryptoResolver`].
//!
//! snow's choice enums are closed (25519/448, ChaChaPoly/AESGCM, SHA256/…), so the
//! parameters are built by hand: the protocol *name* that is hashed into the handshake is
//! the GM one (e.g. `Noise_XKpsk3_SM2_SM4GCM_SM3`), and the placeholder choices in the
//! parsed parameters (`25519`, `AESGCM`, `SHA256`) are mapped by [`GmResolver`] to:
//!
//! - **DH = SM2**: private keys are 32-byte big-endian scalars in `[1, n−1]`; public keys
//!   are 33-byte SEC1 *compressed* points (snow's `MAXDHLEN` is 56, so the 65-byte
//!   uncompressed form does not fit); `DH(s, P)` = the 32-byte x-coordinate of `[s]P`
//!   (`dh_len` = 32). A public key that is not a point on the curve fails the handshake.
//! - **Cipher = SM4-GCM**: snow hands every cipher 32 key bytes; SM4 takes the *first 16*.
//!   The 96-bit nonce is 4 zero bytes ‖ the 64-bit counter big-endian (as Noise's AESGCM);
//!   the tag is 16 bytes.
//! - **Hash = SM3**: 32-byte output, 64-byte block; HMAC and HKDF as in the Noise spec.
//!
//! Everything comes from `kb-crypto` (SM4-GCM, SM3, and the SM2 DH of `kb_crypto::sm2::dh`).

use kb_crypto::sm3::{Digest, Sm3};
use kb_crypto::sm4::{gcm_open, gcm_seal};
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::CryptoResolver;
use snow::types::{Cipher, Dh, Hash, Random};
use zeroize::{Zeroize, Zeroizing};

/// Length of an SM2 public key as the link carries it (SEC1 compressed).
pub const PUBLIC_KEY_LEN: usize = kb_crypto::sm2::dh::PUBLIC_KEY_LEN;
/// Length of an SM2 private key (the scalar).
pub const PRIVATE_KEY_LEN: usize = kb_crypto::sm2::dh::PRIVATE_KEY_LEN;

/// The Noise protocol of pairing (phone = initiator, the PC's static key from the QR).
pub const PAIRING_PROTOCOL: &str = "Noise_XKpsk3_SM2_SM4GCM_SM3";
/// The Noise protocol of a paired phone's reconnect (the link secret as psk).
pub const RECONNECT_PROTOCOL: &str = "Noise_IKpsk2_SM2_SM4GCM_SM3";

/// The parameters of `gm_name` (one of the two protocols above): the pattern is parsed from
/// a placeholder name, then the name is replaced by the GM one, which is what the handshake
/// hashes. The placeholders map to SM2 / SM4-GCM / SM3 through [`GmResolver`].
pub fn noise_params(gm_name: &str) -> Result<NoiseParams, snow::Error> {
    let pattern = gm_name.split('_').nth(1).unwrap_or_default();
    let mut p: NoiseParams = format!("Noise_{pattern}_25519_AESGCM_SHA256").parse()?;
    p.name = gm_name.to_owned();
    Ok(p)
}

/// Resolves snow's placeholder choices to the GM primitives; refuses anything else.
#[derive(Debug)]
pub struct GmResolver {
    /// Fixed RNG output for test vectors (`None`: the OS CSPRNG).
    fixed_rng: Option<u64>,
}

impl GmResolver {
    /// The resolver every link uses: OS randomness.
    pub fn new() -> Self {
        Self { fixed_rng: None }
    }

    /// A resolver whose RNG is a deterministic stream from `seed` (test vectors only: it
    /// makes the ephemeral keys reproducible).
    pub fn deterministic_for_tests(seed: u64) -> Self {
        Self { fixed_rng: Some(seed) }
    }
}

impl Default for GmResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl CryptoResolver for GmResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(match self.fixed_rng {
            None => Box::new(OsRandom),
            Some(seed) => Box::new(SeededRandom { state: Sm3::digest(seed.to_be_bytes()).into(), counter: 0 }),
        })
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(Sm2Dh::default())),
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        match choice {
            HashChoice::SHA256 => Some(Box::new(Sm3Hash::default())),
            _ => None,
        }
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        match choice {
            CipherChoice::AESGCM => Some(Box::new(Sm4Gcm::default())),
            _ => None,
        }
    }
}

struct OsRandom;

impl Random for OsRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        kb_crypto::rng::fill(dest).map_err(|_| snow::Error::Rng)
    }
}

/// SM3 in counter mode over a seed: deterministic, for test vectors only.
struct SeededRandom {
    state: [u8; 32],
    counter: u64,
}

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        for chunk in dest.chunks_mut(32) {
            let mut h = Sm3::new();
            h.update(self.state);
            h.update(self.counter.to_be_bytes());
            self.counter += 1;
            let block = h.finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}

/// An SM2 key pair for snow. The private scalar is zeroized on drop.
struct Sm2Dh {
    private: Zeroizing<[u8; PRIVATE_KEY_LEN]>,
    public: [u8; PUBLIC_KEY_LEN],
}

impl Default for Sm2Dh {
    fn default() -> Self {
        Self { private: Zeroizing::new([0; PRIVATE_KEY_LEN]), public: [0; PUBLIC_KEY_LEN] }
    }
}

/// The compressed public key of scalar `d`, or `None` when `d` is 0 or ≥ n.
pub fn public_key_of(d: &[u8]) -> Option<[u8; PUBLIC_KEY_LEN]> {
    kb_crypto::sm2::dh::public_key(d)
}

/// Whether `pk` is a compressed SM2 point (`02`/`03` ‖ x) on the curve.
pub fn is_valid_public_key(pk: &[u8]) -> bool {
    kb_crypto::sm2::dh::is_valid_public_key(pk)
}

/// `x([d]P)`: the SM2 DH of scalar `d` and compressed point `p`.
pub fn sm2_dh(d: &[u8], p: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    kb_crypto::sm2::dh::shared_x(d, p)
}

/// A fresh SM2 private scalar from the OS CSPRNG.
pub fn generate_private_key() -> Result<Zeroizing<[u8; PRIVATE_KEY_LEN]>, kb_crypto::CryptoError> {
    loop {
        let mut d = Zeroizing::new([0u8; PRIVATE_KEY_LEN]);
        kb_crypto::rng::fill(&mut d[..])?;
        if public_key_of(&d[..]).is_some() {
            return Ok(d);
        }
    }
}

impl Dh for Sm2Dh {
    fn name(&self) -> &'static str {
        "SM2"
    }
    fn pub_len(&self) -> usize {
        PUBLIC_KEY_LEN
    }
    fn priv_len(&self) -> usize {
        PRIVATE_KEY_LEN
    }
    fn dh_len(&self) -> usize {
        32
    }
    fn set(&mut self, privkey: &[u8]) {
        // An invalid scalar leaves an all-zero public key, which no peer accepts and
        // with which `dh` fails: callers validate keys before handing them to snow.
        self.private.zeroize();
        self.public = [0; PUBLIC_KEY_LEN];
        if privkey.len() == PRIVATE_KEY_LEN
            && let Some(pk) = public_key_of(privkey)
        {
            self.private.copy_from_slice(privkey);
            self.public = pk;
        }
    }
    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        loop {
            let mut d = Zeroizing::new([0u8; PRIVATE_KEY_LEN]);
            rng.try_fill_bytes(&mut d[..])?;
            if let Some(pk) = public_key_of(&d[..]) {
                self.private.copy_from_slice(&d[..]);
                self.public = pk;
                return Ok(());
            }
        }
    }
    fn pubkey(&self) -> &[u8] {
        &self.public
    }
    fn privkey(&self) -> &[u8] {
        &self.private[..]
    }
    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        // snow passes its whole MAXDHLEN buffer: the key is the first 33 bytes.
        let pk = pubkey.get(..PUBLIC_KEY_LEN).ok_or(snow::Error::Dh)?;
        let x = sm2_dh(&self.private[..], pk).ok_or(snow::Error::Dh)?;
        out.get_mut(..32).ok_or(snow::Error::Dh)?.copy_from_slice(&x[..]);
        Ok(())
    }
}

/// SM4-GCM with the first 16 of snow's 32 key bytes.
#[derive(Default)]
struct Sm4Gcm {
    key: Zeroizing<[u8; 16]>,
}

fn nonce_bytes(n: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[4..].copy_from_slice(&n.to_be_bytes());
    iv
}

impl Cipher for Sm4Gcm {
    fn name(&self) -> &'static str {
        "SM4GCM"
    }
    fn set(&mut self, key: &[u8; 32]) {
        self.key.copy_from_slice(&key[..16]);
    }
    fn encrypt(&self, nonce: u64, authtext: &[u8], plaintext: &[u8], out: &mut [u8]) -> usize {
        // gcm_seal only fails for an empty IV; ours is always 12 bytes.
        let sealed = gcm_seal(&self.key, &nonce_bytes(nonce), authtext, plaintext).unwrap_or_default();
        let n = sealed.len().min(out.len());
        out[..n].copy_from_slice(&sealed[..n]);
        n
    }
    fn decrypt(&self, nonce: u64, authtext: &[u8], ciphertext: &[u8], out: &mut [u8]) -> Result<usize, snow::Error> {
        let mut plain =
            Zeroizing::new(gcm_open(&self.key, &nonce_bytes(nonce), authtext, ciphertext).map_err(|_| snow::Error::Decrypt)?);
        let dst = out.get_mut(..plain.len()).ok_or(snow::Error::Decrypt)?;
        dst.copy_from_slice(&plain);
        let n = plain.len();
        plain.zeroize();
        Ok(n)
    }
}

/// SM3 for snow.
#[derive(Default, Clone)]
struct Sm3Hash {
    h: Sm3,
}

impl Hash for Sm3Hash {
    fn name(&self) -> &'static str {
        "SM3"
    }
    fn block_len(&self) -> usize {
        64
    }
    fn hash_len(&self) -> usize {
        32
    }
    fn reset(&mut self) {
        self.h = Sm3::new();
    }
    fn input(&mut self, data: &[u8]) {
        self.h.update(data);
    }
    fn result(&mut self, out: &mut [u8]) {
        let d = std::mem::take(&mut self.h).finalize();
        out[..32].copy_from_slice(&d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dh_agrees_and_rejects_points_off_the_curve() {
        let a = generate_private_key().unwrap();
        let b = generate_private_key().unwrap();
        let pa = public_key_of(&a[..]).unwrap();
        let pb = public_key_of(&b[..]).unwrap();
        assert_eq!(sm2_dh(&a[..], &pb).unwrap(), sm2_dh(&b[..], &pa).unwrap());
        let mut bad = pb;
        bad[0] = 0x05;
        assert!(sm2_dh(&a[..], &bad).is_none());
        assert!(sm2_dh(&a[..], &pb[..32]).is_none());
        assert!(public_key_of(&[0u8; 32]).is_none());
        assert!(is_valid_public_key(&pb) && !is_valid_public_key(&pb[..32]) && !is_valid_public_key(&bad));
    }

    #[test]
    fn gm_names_are_what_the_handshake_hashes() {
        let p = noise_params(PAIRING_PROTOCOL).unwrap();
        assert_eq!(p.name, "Noise_XKpsk3_SM2_SM4GCM_SM3");
        let r = GmResolver::new();
        assert!(r.resolve_dh(&p.dh).is_some() && r.resolve_cipher(&p.cipher).is_some() && r.resolve_hash(&p.hash).is_some());
        assert!(r.resolve_hash(&HashChoice::Blake2s).is_none());
    }

    #[test]
    fn sm4_gcm_uses_the_first_16_key_bytes_and_detects_tampering() {
        let mut c = Sm4Gcm::default();
        let mut key = [7u8; 32];
        c.set(&key);
        let mut out = [0u8; 64];
        let n = c.encrypt(5, b"ad", b"hello", &mut out);
        assert_eq!(n, 5 + 16);
        key[20] ^= 1; // bytes past the 16th do not matter
        let mut d = Sm4Gcm::default();
        d.set(&key);
        let mut back = [0u8; 64];
        assert_eq!(d.decrypt(5, b"ad", &out[..n], &mut back).unwrap(), 5);
        assert_eq!(&back[..5], b"hello");
        assert!(d.decrypt(6, b"ad", &out[..n], &mut back).is_err());
        out[0] ^= 1;
        assert!(d.decrypt(5, b"ad", &out[..n], &mut back).is_err());
    }
}
