//! SM4-GCM (NIST SP 800-38D with SM4, RFC 8998), streaming. GHASH is RustCrypto's
//! (carry-less multiply where the CPU has it).

use super::modes::{CounterWidth, xor16};
use super::{BLOCK, Ctr, Sm4, Transform};
use crate::{CryptoError, Result};
use ghash::GHash;
use ghash::universal_hash::UniversalHash;
use subtle::ConstantTimeEq;

/// GCM tag length in bytes (only full-length tags are produced or accepted).
pub const TAG_LEN: usize = 16;

struct GcmCore {
    ctr: Ctr,
    ghash: GHash,
    /// E(K, J0), xored into the final GHASH.
    ek_j0: [u8; BLOCK],
    /// Ciphertext not yet a whole GHASH block.
    pending: [u8; BLOCK],
    npending: usize,
    aad_len: u64,
    ct_len: u64,
}

impl GcmCore {
    fn new(cipher: Sm4, iv: &[u8], aad: &[u8]) -> Result<Self> {
        if iv.is_empty() {
            return Err(CryptoError::InvalidParameter("GCM IV must not be empty"));
        }
        let mut h = [0u8; BLOCK];
        cipher.encrypt_block(&mut h);
        let mut ghash = GHash::new(&h.into());
        let j0 = if iv.len() == 12 {
            let mut j = [0u8; BLOCK];
            j[..12].copy_from_slice(iv);
            j[15] = 1;
            j
        } else {
            let mut g = GHash::new(&h.into());
            g.update_padded(iv);
            let mut lens = [0u8; BLOCK];
            lens[8..].copy_from_slice(&((iv.len() as u64) * 8).to_be_bytes());
            g.update_padded(&lens);
            g.finalize().into()
        };
        let mut ek_j0 = j0;
        cipher.encrypt_block(&mut ek_j0);
        let mut ctr0 = j0;
        let c = u32::from_be_bytes([j0[12], j0[13], j0[14], j0[15]]).wrapping_add(1);
        ctr0[12..].copy_from_slice(&c.to_be_bytes());
        ghash.update_padded(aad);
        Ok(Self {
            ctr: Ctr::with_counter(cipher, ctr0, CounterWidth::Low32),
            ghash,
            ek_j0,
            pending: [0; BLOCK],
            npending: 0,
            aad_len: aad.len() as u64,
            ct_len: 0,
        })
    }

    /// Absorb ciphertext into GHASH, keeping partial blocks for later.
    fn absorb(&mut self, mut ct: &[u8]) {
        self.ct_len += ct.len() as u64;
        if self.npending > 0 {
            let take = (BLOCK - self.npending).min(ct.len());
            self.pending[self.npending..self.npending + take].copy_from_slice(&ct[..take]);
            self.npending += take;
            ct = &ct[take..];
            if self.npending == BLOCK {
                self.ghash.update_padded(&self.pending);
                self.npending = 0;
            }
        }
        let whole = ct.len() / BLOCK * BLOCK;
        if whole > 0 {
            self.ghash.update_padded(&ct[..whole]);
        }
        let rest = &ct[whole..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.npending += rest.len();
    }

    fn tag(&mut self) -> [u8; TAG_LEN] {
        if self.npending > 0 {
            self.ghash.update_padded(&self.pending[..self.npending]);
            self.npending = 0;
        }
        let mut lens = [0u8; BLOCK];
        lens[..8].copy_from_slice(&(self.aad_len * 8).to_be_bytes());
        lens[8..].copy_from_slice(&(self.ct_len * 8).to_be_bytes());
        self.ghash.update_padded(&lens);
        let mut t: [u8; BLOCK] = self.ghash.clone().finalize().into();
        xor16(&mut t, &self.ek_j0);
        t
    }
}

/// Streaming SM4-GCM encryption; `finish` appends the 16-byte tag.
pub struct GcmEncryptor(GcmCore);

impl GcmEncryptor {
    /// A new encryptor. `iv` is normally 12 bytes; other lengths are hashed as in SP 800-38D.
    pub fn new(key: &[u8; 16], iv: &[u8], aad: &[u8]) -> Result<Self> {
        Self::with_cipher(Sm4::new(key), iv, aad)
    }

    /// A new encryptor on a given key schedule (and so backend).
    pub fn with_cipher(cipher: Sm4, iv: &[u8], aad: &[u8]) -> Result<Self> {
        GcmCore::new(cipher, iv, aad).map(Self)
    }
}

impl Transform for GcmEncryptor {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(input);
        self.0.ctr.apply_keystream(&mut out[start..]);
        self.0.absorb(&out[start..]);
    }
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&self.0.tag());
        Ok(())
    }
}

/// Streaming SM4-GCM decryption of `ciphertext ‖ tag`: the last 16 bytes of the stream
/// are held back as the tag and checked in `finish`.
///
/// Plaintext is released before the tag is checked (that is what constant memory
/// costs); when `finish` fails the caller must discard everything it received.
pub struct GcmDecryptor {
    core: GcmCore,
    tail: Vec<u8>,
}

impl GcmDecryptor {
    /// A new decryptor.
    pub fn new(key: &[u8; 16], iv: &[u8], aad: &[u8]) -> Result<Self> {
        Self::with_cipher(Sm4::new(key), iv, aad)
    }

    /// A new decryptor on a given key schedule (and so backend).
    pub fn with_cipher(cipher: Sm4, iv: &[u8], aad: &[u8]) -> Result<Self> {
        Ok(Self { core: GcmCore::new(cipher, iv, aad)?, tail: Vec::with_capacity(2 * TAG_LEN) })
    }
}

impl Transform for GcmDecryptor {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) {
        // Everything except the newest TAG_LEN bytes is ciphertext.
        let total = self.tail.len() + input.len();
        if total <= TAG_LEN {
            self.tail.extend_from_slice(input);
            return;
        }
        let release = total - TAG_LEN;
        let start = out.len();
        let from_tail = release.min(self.tail.len());
        out.extend_from_slice(&self.tail[..from_tail]);
        let from_input = release - from_tail;
        out.extend_from_slice(&input[..from_input]);
        self.core.absorb(&out[start..]);
        self.core.ctr.apply_keystream(&mut out[start..]);
        self.tail.drain(..from_tail);
        self.tail.extend_from_slice(&input[from_input..]);
    }
    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<()> {
        if self.tail.len() != TAG_LEN {
            return Err(CryptoError::IntegrityFailed);
        }
        let t = self.core.tag();
        if bool::from(t.ct_eq(&self.tail[..])) { Ok(()) } else { Err(CryptoError::IntegrityFailed) }
    }
}

/// One-shot SM4-GCM seal: returns `ciphertext ‖ tag`.
pub fn gcm_seal(key: &[u8; 16], iv: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    super::transform_all(&mut GcmEncryptor::new(key, iv, aad)?, plaintext)
}

/// One-shot SM4-GCM open of `ciphertext ‖ tag`; nothing is returned unless the tag checks.
pub fn gcm_open(key: &[u8; 16], iv: &[u8], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    super::transform_all(&mut GcmDecryptor::new(key, iv, aad)?, sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_does_not_matter() {
        let key = [9u8; 16];
        let iv = [1u8; 12];
        let pt: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let whole = gcm_seal(&key, &iv, b"aad", &pt).unwrap_or_default();
        for step in [1usize, 5, 16, 17, 1024] {
            let mut e = GcmEncryptor::new(&key, &iv, b"aad").unwrap_or_else(|_| unreachable!());
            let mut out = Vec::new();
            for c in pt.chunks(step) {
                e.update(c, &mut out);
            }
            let _ = e.finish(&mut out);
            assert_eq!(out, whole);
            let mut d = GcmDecryptor::new(&key, &iv, b"aad").unwrap_or_else(|_| unreachable!());
            let mut back = Vec::new();
            for c in whole.chunks(step) {
                d.update(c, &mut back);
            }
            assert!(d.finish(&mut back).is_ok());
            assert_eq!(back, pt);
        }
        assert_eq!(gcm_open(&key, &iv, b"aaX", &whole).err(), Some(CryptoError::IntegrityFailed));
        assert_eq!(gcm_open(&key, &iv, b"aad", &whole[..10]).err(), Some(CryptoError::IntegrityFailed));
        // Non-96-bit IVs round-trip.
        let s = gcm_seal(&key, &[3u8; 16], b"", b"x").unwrap_or_default();
        assert_eq!(gcm_open(&key, &[3u8; 16], b"", &s).unwrap_or_default(), b"x");
    }
}
