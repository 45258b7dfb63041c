//! The SM4 block function (GB/T 32907-2016).
//!
//! Each round's `T = L ∘ τ` is one table of 256 32-bit words (`L` applied to the S-box
//! output in the top byte) plus three rotations, built at compile time. Independent
//! blocks (ECB, CTR, GCM, CBC decryption) run `N` at a time through the same round so
//! the CPU overlaps their table loads; a single block is latency-bound, which is why
//! OpenSSL 3.0 and RustCrypto's one-block-at-a-time cores are slower on bulk data.
//!
//! Like OpenSSL's SM4, the table lookups are indexed by secret data. That leaks through
//! the cache to an attacker sharing the CPU core; it is the same exposure OpenSSL 3.0
//! accepts for SM4, and a bitsliced core would remove it.

use super::sbox::SBOX;
use zeroize::Zeroize;

const FK: [u32; 4] = [0xa3b1_bac6, 0x56aa_3350, 0x677d_9197, 0xb270_22dc];

const fn ck(i: usize) -> u32 {
    let mut w = 0u32;
    let mut j = 0;
    while j < 4 {
        w = (w << 8) | (((4 * i + j) * 7) % 256) as u32;
        j += 1;
    }
    w
}

/// `L(S(b) << 24)` for every byte `b`; the other three byte positions are rotations.
const T0: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let b = (SBOX[i] as u32) << 24;
        t[i] = b ^ b.rotate_left(2) ^ b.rotate_left(10) ^ b.rotate_left(18) ^ b.rotate_left(24);
        i += 1;
    }
    t
};

#[inline(always)]
fn t(x: u32) -> u32 {
    T0[(x >> 24) as usize]
        ^ T0[((x >> 16) & 0xff) as usize].rotate_right(8)
        ^ T0[((x >> 8) & 0xff) as usize].rotate_right(16)
        ^ T0[(x & 0xff) as usize].rotate_right(24)
}

#[inline(always)]
fn tau(x: u32) -> u32 {
    u32::from_be_bytes([
        SBOX[(x >> 24) as usize],
        SBOX[((x >> 16) & 0xff) as usize],
        SBOX[((x >> 8) & 0xff) as usize],
        SBOX[(x & 0xff) as usize],
    ])
}

/// An SM4 key schedule. Round keys are zeroized on drop.
#[derive(Clone)]
pub struct Sm4 {
    enc: [u32; 32],
    dec: [u32; 32],
}

impl Drop for Sm4 {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.dec.zeroize();
    }
}

impl std::fmt::Debug for Sm4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm4(REDACTED)")
    }
}

impl Sm4 {
    /// Expand a 128-bit key.
    pub fn new(key: &[u8; 16]) -> Self {
        let mut k = [0u32; 4];
        for (i, w) in k.iter_mut().enumerate() {
            *w = u32::from_be_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]]) ^ FK[i];
        }
        let mut enc = [0u32; 32];
        for i in 0..32 {
            let b = tau(k[1] ^ k[2] ^ k[3] ^ ck(i));
            let rk = k[0] ^ b ^ b.rotate_left(13) ^ b.rotate_left(23);
            enc[i] = rk;
            k = [k[1], k[2], k[3], rk];
        }
        k.zeroize();
        let mut dec = enc;
        dec.reverse();
        Self { enc, dec }
    }

    /// Encrypt one block in place.
    pub fn encrypt_block(&self, block: &mut [u8; 16]) {
        crypt::<1>(&self.enc, std::slice::from_mut(block));
    }

    /// Decrypt one block in place.
    pub fn decrypt_block(&self, block: &mut [u8; 16]) {
        crypt::<1>(&self.dec, std::slice::from_mut(block));
    }

    /// Encrypt many independent blocks in place, interleaved.
    pub fn encrypt_blocks(&self, blocks: &mut [[u8; 16]]) {
        crypt_many(&self.enc, blocks);
    }

    /// Decrypt many independent blocks in place, interleaved.
    pub fn decrypt_blocks(&self, blocks: &mut [[u8; 16]]) {
        crypt_many(&self.dec, blocks);
    }
}

/// How many blocks go through the rounds together.
pub(super) const LANES: usize = 4;

fn crypt_many(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    let mut chunks = blocks.chunks_exact_mut(LANES);
    for c in &mut chunks {
        crypt::<LANES>(rk, c);
    }
    for b in chunks.into_remainder() {
        crypt::<1>(rk, std::slice::from_mut(b));
    }
}

#[inline(always)]
fn crypt<const N: usize>(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    debug_assert_eq!(blocks.len(), N);
    let mut x = [[0u32; 4]; N];
    for (s, b) in x.iter_mut().zip(blocks.iter()) {
        for (i, w) in s.iter_mut().enumerate() {
            *w = u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        }
    }
    for r in (0..32).step_by(4) {
        for s in x.iter_mut() {
            s[0] ^= t(s[1] ^ s[2] ^ s[3] ^ rk[r]);
        }
        for s in x.iter_mut() {
            s[1] ^= t(s[2] ^ s[3] ^ s[0] ^ rk[r + 1]);
        }
        for s in x.iter_mut() {
            s[2] ^= t(s[3] ^ s[0] ^ s[1] ^ rk[r + 2]);
        }
        for s in x.iter_mut() {
            s[3] ^= t(s[0] ^ s[1] ^ s[2] ^ rk[r + 3]);
        }
    }
    for (s, b) in x.iter().zip(blocks.iter_mut()) {
        // Output is the reversed word order (R transform).
        for i in 0..4 {
            b[4 * i..4 * i + 4].copy_from_slice(&s[3 - i].to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};

    #[test]
    fn standard_example() {
        let key: [u8; 16] = hex::decode("0123456789abcdeffedcba9876543210").unwrap_or_default().try_into().unwrap_or([0; 16]);
        let c = Sm4::new(&key);
        let mut b = key;
        c.encrypt_block(&mut b);
        assert_eq!(hex::encode(b), "681edf34d206965e86b3e94f536e4246");
        c.decrypt_block(&mut b);
        assert_eq!(b, key);
    }

    /// Every lane count agrees with RustCrypto's independent core.
    #[test]
    fn matches_rustcrypto() {
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        };
        for n in [1usize, 3, 4, 5, 9, 17] {
            let key: [u8; 16] = std::array::from_fn(|_| next());
            let mut blocks: Vec<[u8; 16]> = (0..n).map(|_| std::array::from_fn(|_| next())).collect();
            let orig = blocks.clone();
            let ours = Sm4::new(&key);
            let theirs = sm4::Sm4::new(&key.into());
            ours.encrypt_blocks(&mut blocks);
            for (o, c) in orig.iter().zip(&blocks) {
                let mut r = (*o).into();
                theirs.encrypt_block(&mut r);
                assert_eq!(&r[..], &c[..]);
                let mut back = r;
                theirs.decrypt_block(&mut back);
                assert_eq!(&back[..], &o[..]);
            }
            ours.decrypt_blocks(&mut blocks);
            assert_eq!(blocks, orig);
        }
    }
}
