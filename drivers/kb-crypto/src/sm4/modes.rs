//! ECB, CBC (PKCS#7 or no padding) and CTR.

use super::{BLOCK, Sm4, Transform};
use crate::{CryptoError, Result};
use zeroize::Zeroize;

/// Padding for the block modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// PKCS#7 (RFC 5652 §6.3): what CMS, OpenSSL and every CA middleware use.
    Pkcs7,
    /// None: input must be a whole number of blocks.
    None,
}

/// What a block mode does to whole blocks.
trait Blocks: Send {
    fn process(&mut self, blocks: &mut [[u8; BLOCK]]);
}

struct EcbE(Sm4);
struct EcbD(Sm4);
struct CbcE(Sm4, [u8; BLOCK]);
struct CbcD(Sm4, [u8; BLOCK]);

impl Blocks for EcbE {
    fn process(&mut self, b: &mut [[u8; BLOCK]]) {
        self.0.encrypt_blocks(b);
    }
}
impl Blocks for EcbD {
    fn process(&mut self, b: &mut [[u8; BLOCK]]) {
        self.0.decrypt_blocks(b);
    }
}
impl Blocks for CbcE {
    fn process(&mut self, b: &mut [[u8; BLOCK]]) {
        self.0.cbc_encrypt_blocks(&mut self.1, b);
    }
}
impl Blocks for CbcD {
    fn process(&mut self, b: &mut [[u8; BLOCK]]) {
        // Decryption of CBC is parallel: decrypt all, then xor with the previous ciphertext.
        let Some(&last) = b.last() else { return };
        let mut prev = self.1;
        let mut chunk_start = 0;
        while chunk_start < b.len() {
            let end = (chunk_start + 64).min(b.len());
            let mut saved = [[0u8; BLOCK]; 64];
            saved[..end - chunk_start].copy_from_slice(&b[chunk_start..end]);
            self.0.decrypt_blocks(&mut b[chunk_start..end]);
            for (blk, ct) in b[chunk_start..end].iter_mut().zip(&saved) {
                xor16(blk, &prev);
                prev = *ct;
            }
            chunk_start = end;
        }
        self.1 = last;
    }
}

pub(super) fn xor16(a: &mut [u8; BLOCK], b: &[u8; BLOCK]) {
    *a = (u128::from_ne_bytes(*a) ^ u128::from_ne_bytes(*b)).to_ne_bytes();
}

/// Shared buffering for the block modes; `decrypt` holds back the final block so its
/// padding can be checked in `finish`.
struct Buffered<M> {
    mode: M,
    buf: [u8; BLOCK],
    n: usize,
    padding: Padding,
    decrypt: bool,
}

impl<M> Drop for Buffered<M> {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

impl<M: Blocks> Buffered<M> {
    fn new(mode: M, padding: Padding, decrypt: bool) -> Self {
        Self { mode, buf: [0; BLOCK], n: 0, padding, decrypt }
    }

    fn hold_back(&self) -> bool {
        self.decrypt && self.padding == Padding::Pkcs7
    }
}

impl<M: Blocks> Transform for Buffered<M> {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let total = self.n + input.len();
        let ready = if self.hold_back() { total.saturating_sub(1) / BLOCK * BLOCK } else { total / BLOCK * BLOCK };
        if ready == 0 {
            self.buf[self.n..total].copy_from_slice(input);
            self.n = total;
            return;
        }
        let start = out.len();
        out.extend_from_slice(&self.buf[..self.n]);
        let take = ready - self.n;
        out.extend_from_slice(&input[..take]);
        let (blocks, _) = out[start..].as_chunks_mut::<BLOCK>();
        self.mode.process(blocks);
        let rest = &input[take..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.n = rest.len();
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        match (self.decrypt, self.padding) {
            (_, Padding::None) => {
                if self.n != 0 {
                    return Err(CryptoError::InvalidParameter("input is not a whole number of 16-byte blocks"));
                }
                Ok(())
            }
            (false, Padding::Pkcs7) => {
                let pad = (BLOCK - self.n) as u8;
                let mut blk = self.buf;
                for b in &mut blk[self.n..] {
                    *b = pad;
                }
                self.mode.process(std::slice::from_mut(&mut blk));
                out.extend_from_slice(&blk);
                self.n = 0;
                Ok(())
            }
            (true, Padding::Pkcs7) => {
                if self.n != BLOCK {
                    return Err(CryptoError::IntegrityFailed);
                }
                let mut blk = self.buf;
                self.mode.process(std::slice::from_mut(&mut blk));
                let pad = blk[BLOCK - 1] as usize;
                // Check every padding byte without an early exit.
                let mut bad = u8::from(pad == 0 || pad > BLOCK);
                for (i, b) in blk.iter().enumerate() {
                    let in_pad = u8::from(i >= BLOCK - pad.clamp(1, BLOCK));
                    bad |= in_pad & u8::from(*b as usize != pad);
                }
                if bad != 0 {
                    blk.zeroize();
                    return Err(CryptoError::IntegrityFailed);
                }
                out.extend_from_slice(&blk[..BLOCK - pad]);
                blk.zeroize();
                self.n = 0;
                Ok(())
            }
        }
    }
}

macro_rules! block_mode {
    ($(#[$doc:meta])* $name:ident, $inner:ident, $decrypt:expr, ($($arg:ident : $ty:ty),*), |$c:ident| $build:expr) => {
        $(#[$doc])*
        pub struct $name(Buffered<$inner>);

        impl $name {
            /// A new streaming transform.
            pub fn new(key: &[u8; 16], $($arg: $ty,)* padding: Padding) -> Self {
                Self::with_cipher(Sm4::new(key), $($arg,)* padding)
            }

            /// A new streaming transform on a given key schedule (and so backend).
            pub fn with_cipher($c: Sm4, $($arg: $ty,)* padding: Padding) -> Self {
                Self(Buffered::new($build, padding, $decrypt))
            }
        }

        impl Transform for $name {
            fn update(&mut self, input: &[u8], out: &mut Vec<u8>) {
                self.0.update(input, out)
            }
            fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
                self.0.finish(out)
            }
        }
    };
}

block_mode!(
    /// SM4-ECB encryption. Only for interoperating with legacy middleware.
    EcbEncryptor, EcbE, false, (), |c| EcbE(c)
);
block_mode!(
    /// SM4-ECB decryption.
    EcbDecryptor, EcbD, true, (), |c| EcbD(c)
);
block_mode!(
    /// SM4-CBC encryption.
    CbcEncryptor, CbcE, false, (iv: &[u8; 16]), |c| CbcE(c, *iv)
);
block_mode!(
    /// SM4-CBC decryption.
    CbcDecryptor, CbcD, true, (iv: &[u8; 16]), |c| CbcD(c, *iv)
);

/// How a counter block advances.
#[derive(Clone, Copy)]
pub(super) enum CounterWidth {
    /// The whole 128-bit block is a big-endian counter (NIST SP 800-38A, OpenSSL `-sm4-ctr`).
    Full,
    /// Only the low 32 bits wrap (GCM's `inc32`).
    Low32,
}

/// SM4-CTR keystream; encryption and decryption are the same operation.
pub struct Ctr {
    cipher: Sm4,
    counter: [u8; BLOCK],
    width: CounterWidth,
    ks: Vec<[u8; BLOCK]>,
    pos: usize,
}

impl Drop for Ctr {
    fn drop(&mut self) {
        for b in &mut self.ks {
            b.zeroize();
        }
    }
}

/// Keystream blocks per refill: a multiple of every SIMD batch (32 blocks).
const KS_BLOCKS: usize = 64;

impl Ctr {
    /// CTR with a full 128-bit big-endian counter starting at `iv`.
    pub fn new(key: &[u8; 16], iv: &[u8; 16]) -> Self {
        Self::with_cipher(Sm4::new(key), iv)
    }

    /// CTR on a given key schedule (and so backend).
    pub fn with_cipher(cipher: Sm4, iv: &[u8; 16]) -> Self {
        Self::with_counter(cipher, *iv, CounterWidth::Full)
    }

    pub(super) fn with_counter(cipher: Sm4, counter: [u8; BLOCK], width: CounterWidth) -> Self {
        Self { cipher, counter, width, ks: vec![[0; BLOCK]; KS_BLOCKS], pos: KS_BLOCKS * BLOCK }
    }

    fn refill(&mut self) {
        // Counters are built as integers (one add and one byte swap per block), not
        // byte by byte.
        match self.width {
            CounterWidth::Full => {
                let mut c = u128::from_be_bytes(self.counter);
                for b in self.ks.iter_mut() {
                    *b = c.to_be_bytes();
                    c = c.wrapping_add(1);
                }
                self.counter = c.to_be_bytes();
            }
            CounterWidth::Low32 => {
                let mut c = u32::from_be_bytes([self.counter[12], self.counter[13], self.counter[14], self.counter[15]]);
                for b in self.ks.iter_mut() {
                    b[..12].copy_from_slice(&self.counter[..12]);
                    b[12..].copy_from_slice(&c.to_be_bytes());
                    c = c.wrapping_add(1);
                }
                self.counter[12..].copy_from_slice(&c.to_be_bytes());
            }
        }
        self.cipher.encrypt_blocks(&mut self.ks);
        self.pos = 0;
    }

    /// XOR the keystream into `data` in place.
    pub fn apply_keystream(&mut self, mut data: &mut [u8]) {
        while !data.is_empty() {
            if self.pos == KS_BLOCKS * BLOCK {
                self.refill();
            }
            let ks = &self.ks.as_flattened()[self.pos..];
            let n = ks.len().min(data.len());
            let (head, rest) = data.split_at_mut(n);
            xor_into(head, &ks[..n]);
            self.pos += n;
            data = rest;
        }
    }
}

/// `a ^= b` (equal lengths), sixteen bytes at a time.
fn xor_into(a: &mut [u8], b: &[u8]) {
    let (a16, a_tail) = a.as_chunks_mut::<BLOCK>();
    let (b16, b_tail) = b.as_chunks::<BLOCK>();
    for (x, y) in a16.iter_mut().zip(b16) {
        *x = (u128::from_ne_bytes(*x) ^ u128::from_ne_bytes(*y)).to_ne_bytes();
    }
    for (x, y) in a_tail.iter_mut().zip(b_tail) {
        *x ^= *y;
    }
}

impl Transform for Ctr {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(input);
        self.apply_keystream(&mut out[start..]);
    }
    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Sm4Backend, transform_all};
    use super::*;
    use cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyInit, KeyIvInit, StreamCipher};

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    const KEY: [u8; 16] = *b"0123456789abcdef";
    const IV: [u8; 16] = *b"fedcba9876543210";

    /// Feed in awkward chunk sizes; the result must not depend on them.
    fn chunked(t: &mut dyn Transform, input: &[u8], step: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for c in input.chunks(step.max(1)) {
            t.update(c, &mut out);
        }
        t.finish(&mut out)?;
        Ok(out)
    }

    /// A key schedule for every backend this CPU runs.
    fn schedules() -> Vec<Sm4> {
        Sm4Backend::ALL.into_iter().filter_map(|b| Sm4::with_backend(&KEY, b)).collect()
    }

    #[test]
    fn cbc_matches_rustcrypto_and_round_trips() {
        for len in [0usize, 1, 15, 16, 17, 31, 32, 100, 1000, 4099] {
            let pt = data(len);
            let theirs =
                cbc::Encryptor::<sm4::Sm4>::new(&KEY.into(), &IV.into()).encrypt_padded_vec::<cipher::block_padding::Pkcs7>(&pt);
            for c in schedules() {
                for step in [1, 7, 16, 33, 4096] {
                    let ct =
                        chunked(&mut CbcEncryptor::with_cipher(c.clone(), &IV, Padding::Pkcs7), &pt, step).unwrap_or_default();
                    assert_eq!(ct, theirs, "len {len} step {step} {c:?}");
                    let back =
                        chunked(&mut CbcDecryptor::with_cipher(c.clone(), &IV, Padding::Pkcs7), &ct, step).unwrap_or_default();
                    assert_eq!(back, pt, "{c:?}");
                }
            }
            let dec = cbc::Decryptor::<sm4::Sm4>::new(&KEY.into(), &IV.into())
                .decrypt_padded_vec::<cipher::block_padding::Pkcs7>(&theirs)
                .unwrap_or_default();
            assert_eq!(dec, pt);
        }
    }

    #[test]
    fn ecb_matches_rustcrypto() {
        let pt = data(77);
        let theirs = ecb::Encryptor::<sm4::Sm4>::new(&KEY.into()).encrypt_padded_vec::<cipher::block_padding::Pkcs7>(&pt);
        for c in schedules() {
            let ours = transform_all(&mut EcbEncryptor::with_cipher(c.clone(), Padding::Pkcs7), &pt).unwrap_or_default();
            assert_eq!(ours, theirs, "{c:?}");
            assert_eq!(transform_all(&mut EcbDecryptor::with_cipher(c, Padding::Pkcs7), &ours).unwrap_or_default(), pt);
        }
    }

    #[test]
    fn ctr_matches_rustcrypto() {
        for len in [0usize, 1, 16, 511, 512, 513, 5000] {
            let pt = data(len);
            let mut theirs = pt.clone();
            ctr::Ctr128BE::<sm4::Sm4>::new(&KEY.into(), &IV.into()).apply_keystream(&mut theirs);
            for c in schedules() {
                for step in [1, 13, 512, 9999] {
                    let ours = chunked(&mut Ctr::with_cipher(c.clone(), &IV), &pt, step).unwrap_or_default();
                    assert_eq!(ours, theirs, "{c:?}");
                }
            }
        }
        // Counter wrap across 2^128.
        let iv = [0xffu8; 16];
        let pt = data(64);
        let mut theirs = pt.clone();
        ctr::Ctr128BE::<sm4::Sm4>::new(&KEY.into(), &iv.into()).apply_keystream(&mut theirs);
        assert_eq!(transform_all(&mut Ctr::new(&KEY, &iv), &pt).unwrap_or_default(), theirs);
    }

    #[test]
    fn bad_padding_and_alignment_are_errors() {
        let ct = transform_all(&mut CbcEncryptor::new(&KEY, &IV, Padding::Pkcs7), b"hello").unwrap_or_default();
        let wrong_key = transform_all(&mut CbcDecryptor::new(b"0000000000000000", &IV, Padding::Pkcs7), &ct);
        assert_eq!(wrong_key.err(), Some(CryptoError::IntegrityFailed));
        assert_eq!(
            transform_all(&mut CbcDecryptor::new(&KEY, &IV, Padding::Pkcs7), &ct[..15]).err(),
            Some(CryptoError::IntegrityFailed)
        );
        assert!(transform_all(&mut CbcEncryptor::new(&KEY, &IV, Padding::None), b"short").is_err());
        assert!(transform_all(&mut CbcDecryptor::new(&KEY, &IV, Padding::Pkcs7), b"").is_err());
        let unpadded = transform_all(&mut CbcEncryptor::new(&KEY, &IV, Padding::None), &[7u8; 32]).unwrap_or_default();
        assert_eq!(transform_all(&mut CbcDecryptor::new(&KEY, &IV, Padding::None), &unpadded).unwrap_or_default(), vec![7u8; 32]);
    }
}
