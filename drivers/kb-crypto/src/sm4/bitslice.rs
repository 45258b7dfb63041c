//! The portable constant-time SM4 core: the S-box as bitsliced GF(2^8) arithmetic.
//!
//! 64 S-box inputs (sixteen 32-bit words) are transposed into eight 64-bit planes,
//! plane `j` holding bit `j` of every byte. The S-box is then `M·inv(M·x ⊕ C) ⊕ C`
//! (see [`super::sbox`]) computed with AND and XOR on whole planes: the inverse is
//! `x^254` (four multiplications, seven squarings). No branch and no memory address
//! depends on the data, so the timing and the cache footprint are the same for every
//! key and block. It is the path for CPUs without AES-NI (and the key schedule on
//! every CPU); it is several times slower than the SIMD paths in [`super::x86`].

use super::sbox::{C, M_COLS, POLY, columns_of_square};

type Planes = [u64; 8];

const SQ_COLS: [u8; 8] = columns_of_square();

#[inline(always)]
fn swapmove(w: &mut Planes, a: usize, b: usize, mask: u64, n: u32) {
    let t = ((w[a] >> n) ^ w[b]) & mask;
    w[b] ^= t;
    w[a] ^= t << n;
}

/// Transpose the eight 8×8 bit matrices formed by byte `m` of each word: afterwards
/// bit `8m + i` of word `j` is bit `j` of byte `m` of the former word `i`. An
/// involution, so it also transposes back.
#[inline(always)]
fn transpose(w: &mut Planes) {
    for (a, b) in [(0, 1), (2, 3), (4, 5), (6, 7)] {
        swapmove(w, a, b, 0x5555_5555_5555_5555, 1);
    }
    for (a, b) in [(0, 2), (1, 3), (4, 6), (5, 7)] {
        swapmove(w, a, b, 0x3333_3333_3333_3333, 2);
    }
    for (a, b) in [(0, 4), (1, 5), (2, 6), (3, 7)] {
        swapmove(w, a, b, 0x0f0f_0f0f_0f0f_0f0f, 4);
    }
}

/// A linear byte map (by columns, a compile-time constant) on planes.
#[inline(always)]
fn linear(cols: &[u8; 8], x: &Planes) -> Planes {
    let mut y = [0u64; 8];
    for (j, &col) in cols.iter().enumerate() {
        for (i, yi) in y.iter_mut().enumerate() {
            if (col >> i) & 1 == 1 {
                *yi ^= x[j];
            }
        }
    }
    y
}

/// Multiplication in SM4's field on planes: schoolbook product, then reduction.
#[inline(always)]
fn mul(a: &Planes, b: &Planes) -> Planes {
    let mut p = [0u64; 15];
    for (i, ai) in a.iter().enumerate() {
        for (j, bj) in b.iter().enumerate() {
            p[i + j] ^= ai & bj;
        }
    }
    // x^k = x^(k-8) · (x^7 + x^6 + x^5 + x^4 + x^2 + 1), from the top down.
    for k in (8..15).rev() {
        let t = p[k];
        for i in 0..8 {
            if (POLY >> i) & 1 == 1 {
                p[k - 8 + i] ^= t;
            }
        }
    }
    let mut r = [0u64; 8];
    r.copy_from_slice(&p[..8]);
    r
}

#[inline(always)]
fn square(x: &Planes) -> Planes {
    linear(&SQ_COLS, x)
}

/// `x^254`, the inverse (0 for 0).
#[inline(always)]
fn inverse(x: &Planes) -> Planes {
    let x2 = square(x);
    let x3 = mul(&x2, x);
    let x12 = square(&square(&x3));
    let x15 = mul(&x12, &x3);
    let x240 = square(&square(&square(&square(&x15))));
    let x252 = mul(&x240, &x12);
    mul(&x252, &x2)
}

#[inline(always)]
fn add_const(x: &mut Planes, c: u8) {
    for (i, xi) in x.iter_mut().enumerate() {
        // A mask from a public constant, not from data.
        *xi ^= 0u64.wrapping_sub(u64::from((c >> i) & 1));
    }
}

/// The SM4 S-box on all 64 bytes of `w`, in place.
#[inline(always)]
fn sbox64(w: &mut Planes) {
    transpose(w);
    let mut y = linear(&M_COLS, w);
    add_const(&mut y, C);
    let mut z = linear(&M_COLS, &inverse(&y));
    add_const(&mut z, C);
    *w = z;
    transpose(w);
}

/// `τ`: the S-box on each byte of one word.
pub(super) fn tau(x: u32) -> u32 {
    let mut w = [0u64; 8];
    w[0] = u64::from(x);
    sbox64(&mut w);
    w[0] as u32
}

/// `τ` on sixteen words at once.
#[inline(always)]
fn tau16(x: &mut [u32; 16]) {
    let mut w = [0u64; 8];
    for (wi, pair) in w.iter_mut().zip(x.chunks_exact(2)) {
        *wi = u64::from(pair[0]) | (u64::from(pair[1]) << 32);
    }
    sbox64(&mut w);
    for (wi, pair) in w.iter().zip(x.chunks_exact_mut(2)) {
        pair[0] = *wi as u32;
        pair[1] = (*wi >> 32) as u32;
    }
}

/// SM4's round transform `L`.
#[inline(always)]
pub(super) fn l(b: u32) -> u32 {
    b ^ b.rotate_left(2) ^ b.rotate_left(10) ^ b.rotate_left(18) ^ b.rotate_left(24)
}

/// Blocks per batch: sixteen words fill the 64 S-box lanes.
const BATCH: usize = 16;

/// Encrypt (or, with reversed round keys, decrypt) `blocks` in place.
pub(super) fn crypt_blocks(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    for chunk in blocks.chunks_mut(BATCH) {
        let mut x = [[0u32; 4]; BATCH];
        for (s, b) in x.iter_mut().zip(chunk.iter()) {
            *s = super::core::load(b);
        }
        for (r, &k) in rk.iter().enumerate() {
            // Round r updates word r % 4 from the other three.
            let (i0, i1, i2, i3) = (r % 4, (r + 1) % 4, (r + 2) % 4, (r + 3) % 4);
            let mut t = [0u32; BATCH];
            for (ti, s) in t.iter_mut().zip(&x) {
                *ti = s[i1] ^ s[i2] ^ s[i3] ^ k;
            }
            tau16(&mut t);
            for (ti, s) in t.iter().zip(x.iter_mut()) {
                s[i0] ^= l(*ti);
            }
        }
        for (s, b) in x.iter().zip(chunk.iter_mut()) {
            super::core::store(b, s[3], s[2], s[1], s[0]);
        }
    }
}

/// One block given as four big-endian words (the CBC encryption path on CPUs without
/// AES-NI; the S-box lanes are mostly idle, so it is slow).
pub(super) fn crypt_words(rk: &[u32; 32], words: [u32; 4]) -> [u32; 4] {
    let mut x = words;
    for (r, &k) in rk.iter().enumerate() {
        let t = x[(r + 1) % 4] ^ x[(r + 2) % 4] ^ x[(r + 3) % 4] ^ k;
        x[r % 4] ^= l(tau(t));
    }
    [x[3], x[2], x[1], x[0]]
}

#[cfg(test)]
mod tests {
    use super::super::sbox::SBOX;
    use super::*;

    #[test]
    fn tau_is_the_sbox_on_every_byte_and_lane() {
        for x in 0..=255u32 {
            let w = x | (x ^ 0x5a) << 8 | (x ^ 0xa5) << 16 | (255 - x) << 24;
            let want = u32::from_le_bytes(w.to_le_bytes().map(|b| SBOX[b as usize]));
            assert_eq!(tau(w), want);
            let mut many: [u32; 16] = std::array::from_fn(|i| w.rotate_left(i as u32 * 3));
            let expect = many.map(|v| u32::from_le_bytes(v.to_le_bytes().map(|b| SBOX[b as usize])));
            tau16(&mut many);
            assert_eq!(many, expect);
        }
    }
}
