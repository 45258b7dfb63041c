//! The portable constant-time SM4 core: the S-box as bitsliced GF(2^8) arithmetic.
//!
//! 64 S-box inputs (sixteen 32-bit words) are transposed into eight 64-bit planes,
//! plane `j` holding bit `j` of every byte. The S-box is then `OUT·inv(IN·x ⊕ IN_C) ⊕ C`
//! in a tower field GF((2^4)^2) (see [`super::sbox`]), computed with AND and XOR on
//! whole planes: the inverse costs five GF(16) multiplications (16 ANDs each). No branch and no memory address
//! depends on the data, so the timing and the cache footprint are the same for every
//! key and block. It is the path for CPUs without AES-NI (and the key schedule on
//! every CPU); it is several times slower than the SIMD paths in [`super::x86`].

use super::sbox::{C, IN_C, IN_COLS, NU, OUT_COLS, gf16_cols};

type Planes = [u64; 8];
type Planes4 = [u64; 4];

/// Squaring, and `ν·a²`, in GF(16), by columns.
const SQ16: [u8; 4] = gf16_cols(1, true);
const NU_SQ16: [u8; 4] = gf16_cols(NU, true);

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

/// Multiplication in GF(16) on planes: schoolbook product, then `w^4 = w + 1`.
#[inline(always)]
fn mul16(a: &Planes4, b: &Planes4) -> Planes4 {
    let mut p = [0u64; 7];
    for (i, ai) in a.iter().enumerate() {
        for (j, bj) in b.iter().enumerate() {
            p[i + j] ^= ai & bj;
        }
    }
    for k in (4..7).rev() {
        let t = p[k];
        p[k - 4] ^= t;
        p[k - 3] ^= t;
    }
    [p[0], p[1], p[2], p[3]]
}

/// A linear GF(16) map (by columns, a compile-time constant) on planes.
#[inline(always)]
fn linear16(cols: &[u8; 4], x: &Planes4) -> Planes4 {
    let mut y = [0u64; 4];
    for (j, &col) in cols.iter().enumerate() {
        for (i, yi) in y.iter_mut().enumerate() {
            if (col >> i) & 1 == 1 {
                *yi ^= x[j];
            }
        }
    }
    y
}

/// The inverse in the tower field (0 for 0): for `a1·y + a0`, with
/// `d = ν·a1² + a1·a0 + a0²` (in GF(16)), it is `(a1·y + a0 + a1)·d⁻¹`, and
/// `d⁻¹ = d^14 = d²·d⁴·d⁸`. Five GF(16) multiplications in all.
#[inline(always)]
fn inverse(x: &Planes) -> Planes {
    let a0 = [x[0], x[1], x[2], x[3]];
    let a1 = [x[4], x[5], x[6], x[7]];
    let mut d = mul16(&a0, &a1);
    let (n, s) = (linear16(&NU_SQ16, &a1), linear16(&SQ16, &a0));
    for ((di, ni), si) in d.iter_mut().zip(n).zip(s) {
        *di ^= ni ^ si;
    }
    let d2 = linear16(&SQ16, &d);
    let d4 = linear16(&SQ16, &d2);
    let d8 = linear16(&SQ16, &d4);
    let dinv = mul16(&mul16(&d2, &d4), &d8);
    let sum = [a0[0] ^ a1[0], a0[1] ^ a1[1], a0[2] ^ a1[2], a0[3] ^ a1[3]];
    let hi = mul16(&a1, &dinv);
    let lo = mul16(&sum, &dinv);
    [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
}

#[inline(always)]
fn add_const(x: &mut Planes, c: u8) {
    for (i, xi) in x.iter_mut().enumerate() {
        // A mask from a public constant, not from data.
        *xi ^= 0u64.wrapping_sub(u64::from((c >> i) & 1));
    }
}

/// The S-box on bit-planes (plane `j` holds bit `j` of every input).
#[inline(always)]
fn sbox_planes(w: &Planes) -> Planes {
    let mut y = linear(&IN_COLS, w);
    add_const(&mut y, IN_C);
    let mut z = linear(&OUT_COLS, &inverse(&y));
    add_const(&mut z, C);
    z
}

/// The SM4 S-box on all 64 bytes of `w`, in place.
#[inline(always)]
fn sbox64(w: &mut Planes) {
    transpose(w);
    *w = sbox_planes(w);
    transpose(w);
}

/// `τ`: the S-box on each byte of one word. The four inputs sit at bits 0, 8, 16 and
/// 24 of each plane (two operations per plane instead of a full transposition); the
/// other bits carry junk that the final mask drops.
pub(super) fn tau(x: u32) -> u32 {
    const LOW: u64 = 0x0101_0101;
    let w: Planes = std::array::from_fn(|j| (u64::from(x) >> j) & LOW);
    let z = sbox_planes(&w);
    let mut out = 0u64;
    for (j, zj) in z.iter().enumerate() {
        out |= (zj & LOW) << j;
    }
    out as u32
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
