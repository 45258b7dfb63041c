//! The SM4 block function (GB/T 32907-2016) and the choice of implementation.
//!
//! Round `i` is `X[i+4] = X[i] ^ T(X[i+1] ^ X[i+2] ^ X[i+3] ^ rk[i])` with `T = L ∘ τ`
//! and `τ` the S-box on each byte. No implementation looks anything up by secret data:
//!
//! - [`Sm4Backend::Gfni512`] and [`Sm4Backend::Gfni256`] (`super::x86::gfni`): the
//!   S-box as two GFNI affine instructions, 64 blocks at a time in AVX-512 vectors or 32
//!   in AVX2 ones.
//! - [`Sm4Backend::Vaes`] and [`Sm4Backend::AesNi`] ([`super::x86`]): the S-box through
//!   AES-NI, 32 or 16 blocks at a time.
//! - One block at a time (CBC encryption, single blocks) every x86 backend runs a
//!   latency-tuned chain: its S-box layer is `aesenclast` on the AES-NI backends and
//!   three `gf2p8affineinvqb` on the GFNI ones (with `vprold`/`vpternlogd` on
//!   [`Sm4Backend::Gfni512`]).
//! - [`Sm4Backend::Portable`] ([`super::bitslice`]): a bitsliced S-box in plain Rust, for
//!   every other CPU, and the key schedule everywhere.
//!
//! [`Sm4::new`] picks the fastest backend this CPU has (run-time feature detection);
//! [`Sm4::with_backend`] picks one explicitly (the tests run every available one).

use super::bitslice;
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

/// An implementation of the SM4 block function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sm4Backend {
    /// Bitsliced S-box in portable Rust: any CPU.
    Portable,
    /// x86-64 AES-NI with SSSE3 shuffles: 16 blocks at a time in 128-bit vectors.
    AesNi,
    /// x86-64 VAES with AVX2: 32 blocks at a time in 256-bit vectors (one block at a
    /// time as [`Sm4Backend::AesNi`]).
    Vaes,
    /// x86-64 GFNI with AVX2: 32 blocks at a time in 256-bit vectors; one block at a
    /// time through GFNI too.
    Gfni256,
    /// x86-64 GFNI with AVX-512: 64 blocks at a time in 512-bit vectors; one block at a
    /// time through GFNI with AVX-512 VL.
    Gfni512,
}

impl Sm4Backend {
    /// Every backend, fastest first.
    pub const ALL: [Sm4Backend; 5] =
        [Sm4Backend::Gfni512, Sm4Backend::Gfni256, Sm4Backend::Vaes, Sm4Backend::AesNi, Sm4Backend::Portable];

    /// Whether this CPU can run the backend.
    pub fn is_available(self) -> bool {
        match self {
            Sm4Backend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Sm4Backend::AesNi => super::x86::has_aesni(),
            #[cfg(target_arch = "x86_64")]
            Sm4Backend::Vaes => super::x86::has_vaes(),
            #[cfg(target_arch = "x86_64")]
            Sm4Backend::Gfni256 => super::x86::has_gfni_avx2(),
            #[cfg(target_arch = "x86_64")]
            Sm4Backend::Gfni512 => super::x86::has_gfni_avx512(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest backend this CPU can run.
    pub fn detect() -> Self {
        Self::ALL.into_iter().find(|b| b.is_available()).unwrap_or(Sm4Backend::Portable)
    }

    /// The CPU features the backend uses, for reports.
    pub fn features(self) -> &'static str {
        match self {
            Sm4Backend::Portable => "none (bitsliced, 64-bit integer)",
            Sm4Backend::AesNi => "AES-NI, SSSE3",
            Sm4Backend::Vaes => "VAES, AVX2 (bulk); AES-NI, SSSE3 (one block at a time)",
            Sm4Backend::Gfni256 => "GFNI, AVX2 (bulk); GFNI, AVX (one block at a time)",
            Sm4Backend::Gfni512 => "GFNI, AVX-512 F/BW (bulk); GFNI, AVX-512 VL (one block at a time)",
        }
    }
}

/// An SM4 key schedule. Round keys are zeroized on drop.
#[derive(Clone)]
pub struct Sm4 {
    enc: [u32; 32],
    dec: [u32; 32],
    backend: Sm4Backend,
}

impl Drop for Sm4 {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.dec.zeroize();
    }
}

impl std::fmt::Debug for Sm4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sm4(REDACTED, {:?})", self.backend)
    }
}

impl Sm4 {
    /// Expand a 128-bit key, for the fastest backend this CPU has.
    pub fn new(key: &[u8; 16]) -> Self {
        Self::expand(key, Sm4Backend::detect())
    }

    /// Expand a 128-bit key for a given backend; `None` if this CPU cannot run it.
    pub fn with_backend(key: &[u8; 16], backend: Sm4Backend) -> Option<Self> {
        backend.is_available().then(|| Self::expand(key, backend))
    }

    fn expand(key: &[u8; 16], backend: Sm4Backend) -> Self {
        let mut k = [0u32; 4];
        for (i, w) in k.iter_mut().enumerate() {
            *w = u32::from_be_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]]) ^ FK[i];
        }
        let mut enc = [0u32; 32];
        for (i, out) in enc.iter_mut().enumerate() {
            let b = bitslice::tau(k[1] ^ k[2] ^ k[3] ^ ck(i));
            let rk = k[0] ^ b ^ b.rotate_left(13) ^ b.rotate_left(23);
            *out = rk;
            k = [k[1], k[2], k[3], rk];
        }
        k.zeroize();
        let mut dec = enc;
        dec.reverse();
        Self { enc, dec, backend }
    }

    /// The backend this key schedule runs on.
    pub fn backend(&self) -> Sm4Backend {
        self.backend
    }

    /// Encrypt one block in place.
    pub fn encrypt_block(&self, block: &mut [u8; 16]) {
        let mut zero = [0u8; 16];
        chain(self.backend, &self.enc, &mut zero, std::slice::from_mut(block));
    }

    /// Decrypt one block in place.
    pub fn decrypt_block(&self, block: &mut [u8; 16]) {
        let mut zero = [0u8; 16];
        chain(self.backend, &self.dec, &mut zero, std::slice::from_mut(block));
    }

    /// Encrypt many independent blocks in place, in parallel.
    pub fn encrypt_blocks(&self, blocks: &mut [[u8; 16]]) {
        many(self.backend, &self.enc, blocks);
    }

    /// Decrypt many independent blocks in place, in parallel.
    pub fn decrypt_blocks(&self, blocks: &mut [[u8; 16]]) {
        many(self.backend, &self.dec, blocks);
    }

    /// CBC-encrypt `blocks` in place: each block is XORed with `chain` (the IV, then the
    /// previous ciphertext block) and encrypted; `chain` ends as the last ciphertext.
    pub fn cbc_encrypt_blocks(&self, chain_value: &mut [u8; 16], blocks: &mut [[u8; 16]]) {
        chain(self.backend, &self.enc, chain_value, blocks);
    }
}

fn many(backend: Sm4Backend, rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    #[cfg(target_arch = "x86_64")]
    {
        use super::x86::{Width, crypt_blocks};
        let done = match backend {
            Sm4Backend::Vaes => crypt_blocks(Width::Vaes, rk, blocks),
            Sm4Backend::AesNi => crypt_blocks(Width::Sse, rk, blocks),
            Sm4Backend::Gfni256 => crypt_blocks(Width::Gfni256, rk, blocks),
            Sm4Backend::Gfni512 => crypt_blocks(Width::Gfni512, rk, blocks),
            Sm4Backend::Portable => false,
        };
        if done {
            return;
        }
    }
    let _ = backend;
    bitslice::crypt_blocks(rk, blocks);
}

/// One block after another, CBC-style (a zero chain for a lone block).
fn chain(backend: Sm4Backend, rk: &[u32; 32], chain_value: &mut [u8; 16], blocks: &mut [[u8; 16]]) {
    #[cfg(target_arch = "x86_64")]
    {
        use super::x86::Chain;
        let how = match backend {
            Sm4Backend::Gfni512 => Some(Chain::GfniVl),
            Sm4Backend::Gfni256 => Some(Chain::Gfni),
            Sm4Backend::Vaes | Sm4Backend::AesNi => Some(Chain::Aes),
            Sm4Backend::Portable => None,
        };
        if how.is_some_and(|how| super::x86::cbc_encrypt(how, rk, chain_value, blocks)) {
            return;
        }
    }
    let _ = backend;
    let mut c = load(chain_value);
    for blk in blocks {
        let p = load(blk);
        c = bitslice::crypt_words(rk, [p[0] ^ c[0], p[1] ^ c[1], p[2] ^ c[2], p[3] ^ c[3]]);
        store(blk, c[0], c[1], c[2], c[3]);
    }
    store(chain_value, c[0], c[1], c[2], c[3]);
}

#[inline(always)]
pub(super) fn load(b: &[u8; 16]) -> [u32; 4] {
    std::array::from_fn(|i| u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]))
}

#[inline(always)]
pub(super) fn store(b: &mut [u8; 16], x0: u32, x1: u32, x2: u32, x3: u32) {
    b[0..4].copy_from_slice(&x0.to_be_bytes());
    b[4..8].copy_from_slice(&x1.to_be_bytes());
    b[8..12].copy_from_slice(&x2.to_be_bytes());
    b[12..16].copy_from_slice(&x3.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use cipher::{BlockCipherEncrypt, KeyInit};

    fn backends() -> Vec<Sm4Backend> {
        let b: Vec<_> = Sm4Backend::ALL.into_iter().filter(|b| b.is_available()).collect();
        assert!(b.contains(&Sm4Backend::Portable));
        b
    }

    const KEY_HEX: &str = "0123456789abcdeffedcba9876543210";

    #[test]
    fn standard_example_on_every_backend() {
        let key: [u8; 16] = hex::decode(KEY_HEX).unwrap().try_into().unwrap();
        for be in backends() {
            let c = Sm4::with_backend(&key, be).unwrap();
            let mut b = key;
            c.encrypt_block(&mut b);
            assert_eq!(hex::encode(b), "681edf34d206965e86b3e94f536e4246", "{be:?}");
            c.decrypt_block(&mut b);
            assert_eq!(b, key, "{be:?}");
            let mut many = [key; 37];
            c.encrypt_blocks(&mut many);
            assert!(many.iter().all(|m| hex::encode(m) == "681edf34d206965e86b3e94f536e4246"), "{be:?}");
            c.decrypt_blocks(&mut many);
            assert_eq!(many, [key; 37]);
        }
    }

    /// Every backend, lane count and tail agrees with RustCrypto's independent core,
    /// on the many-block, one-block and CBC paths.
    #[test]
    fn matches_rustcrypto() {
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        };
        for n in [1usize, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100] {
            let key: [u8; 16] = std::array::from_fn(|_| next());
            let iv: [u8; 16] = std::array::from_fn(|_| next());
            let orig: Vec<[u8; 16]> = (0..n).map(|_| std::array::from_fn(|_| next())).collect();
            let theirs = sm4::Sm4::new(&key.into());
            let expect: Vec<[u8; 16]> = orig
                .iter()
                .map(|o| {
                    let mut r = (*o).into();
                    theirs.encrypt_block(&mut r);
                    r.into()
                })
                .collect();
            let mut cbc = Vec::new();
            let mut c = iv;
            for o in &orig {
                let mut r: [u8; 16] = std::array::from_fn(|i| o[i] ^ c[i]);
                let mut rr = r.into();
                theirs.encrypt_block(&mut rr);
                r = rr.into();
                cbc.push(r);
                c = r;
            }
            for be in backends() {
                let ours = Sm4::with_backend(&key, be).unwrap();
                let mut blocks = orig.clone();
                ours.encrypt_blocks(&mut blocks);
                assert_eq!(blocks, expect, "{be:?} n={n}");
                ours.decrypt_blocks(&mut blocks);
                assert_eq!(blocks, orig, "{be:?} n={n}");
                for (o, e) in orig.iter().zip(&expect) {
                    let mut one = *o;
                    ours.encrypt_block(&mut one);
                    assert_eq!(&one, e, "{be:?}");
                    ours.decrypt_block(&mut one);
                    assert_eq!(&one, o, "{be:?}");
                }
                let mut blocks = orig.clone();
                let mut chain = iv;
                ours.cbc_encrypt_blocks(&mut chain, &mut blocks);
                assert_eq!(blocks, cbc, "{be:?} CBC n={n}");
                assert_eq!(Some(&chain), cbc.last());
            }
        }
    }
}
