// On other CPUs only the field form is used: the AES form feeds the x86 SIMD paths.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

// The SM4 S-box, GB/T 32907-2016 §6.2 (standard data): the reference the tests check
// every constant-time S-box against.
#[cfg(test)]
pub(super) const SBOX: [u8; 256] = [
    0xd6, 0x90, 0xe9, 0xfe, 0xcc, 0xe1, 0x3d, 0xb7, 0x16, 0xb6, 0x14, 0xc2, 0x28, 0xfb, 0x2c, 0x05, 0x2b, 0x67, 0x9a, 0x76, 0x2a,
    0xbe, 0x04, 0xc3, 0xaa, 0x44, 0x13, 0x26, 0x49, 0x86, 0x06, 0x99, 0x9c, 0x42, 0x50, 0xf4, 0x91, 0xef, 0x98, 0x7a, 0x33, 0x54,
    0x0b, 0x43, 0xed, 0xcf, 0xac, 0x62, 0xe4, 0xb3, 0x1c, 0xa9, 0xc9, 0x08, 0xe8, 0x95, 0x80, 0xdf, 0x94, 0xfa, 0x75, 0x8f, 0x3f,
    0xa6, 0x47, 0x07, 0xa7, 0xfc, 0xf3, 0x73, 0x17, 0xba, 0x83, 0x59, 0x3c, 0x19, 0xe6, 0x85, 0x4f, 0xa8, 0x68, 0x6b, 0x81, 0xb2,
    0x71, 0x64, 0xda, 0x8b, 0xf8, 0xeb, 0x0f, 0x4b, 0x70, 0x56, 0x9d, 0x35, 0x1e, 0x24, 0x0e, 0x5e, 0x63, 0x58, 0xd1, 0xa2, 0x25,
    0x22, 0x7c, 0x3b, 0x01, 0x21, 0x78, 0x87, 0xd4, 0x00, 0x46, 0x57, 0x9f, 0xd3, 0x27, 0x52, 0x4c, 0x36, 0x02, 0xe7, 0xa0, 0xc4,
    0xc8, 0x9e, 0xea, 0xbf, 0x8a, 0xd2, 0x40, 0xc7, 0x38, 0xb5, 0xa3, 0xf7, 0xf2, 0xce, 0xf9, 0x61, 0x15, 0xa1, 0xe0, 0xae, 0x5d,
    0xa4, 0x9b, 0x34, 0x1a, 0x55, 0xad, 0x93, 0x32, 0x30, 0xf5, 0x8c, 0xb1, 0xe3, 0x1d, 0xf6, 0xe2, 0x2e, 0x82, 0x66, 0xca, 0x60,
    0xc0, 0x29, 0x23, 0xab, 0x0d, 0x53, 0x4e, 0x6f, 0xd5, 0xdb, 0x37, 0x45, 0xde, 0xfd, 0x8e, 0x2f, 0x03, 0xff, 0x6a, 0x72, 0x6d,
    0x6c, 0x5b, 0x51, 0x8d, 0x1b, 0xaf, 0x92, 0xbb, 0xdd, 0xbc, 0x7f, 0x11, 0xd9, 0x5c, 0x41, 0x1f, 0x10, 0x5a, 0xd8, 0x0a, 0xc1,
    0x31, 0x88, 0xa5, 0xcd, 0x7b, 0xbd, 0x2d, 0x74, 0xd0, 0x12, 0xb8, 0xe5, 0xb4, 0xb0, 0x89, 0x69, 0x97, 0x4a, 0x0c, 0x96, 0x77,
    0x7e, 0x65, 0xb9, 0xf1, 0x09, 0xc5, 0x6e, 0xc6, 0x84, 0x18, 0xf0, 0x7d, 0xec, 0x3a, 0xdc, 0x4d, 0x20, 0x79, 0xee, 0x5f, 0x3e,
    0xd7, 0xcb, 0x39, 0x48,
];

// The S-box as field arithmetic. GB/T 32907's S-box is `S(x) = M·inv(M·x ⊕ C) ⊕ C`,
// with `inv` the inverse in GF(2^8) modulo x^8+x^7+x^6+x^5+x^4+x^2+1 (0 maps to 0) and
// `M` the circulant matrix below (Liu, Wei, Lin et al. 2008, "Structure of the SM4
// S-box"). The test `field_form_matches_the_table` checks all 256 inputs against
// `SBOX`. Byte maps are given by their columns: `cols[j]` is the image of bit `j`.

/// Reduction polynomial of SM4's field, without the x^8 term.
#[cfg(test)]
pub(super) const POLY: u8 = 0xf5;
/// `M`, by columns.
#[cfg(test)]
pub(super) const M_COLS: [u8; 8] = [0xcb, 0x97, 0x2f, 0x5e, 0xbc, 0x79, 0xf2, 0xe5];
/// `C`.
pub(super) const C: u8 = 0xd3;

// The same S-box through AES's: `S(x) = A2(S_aes(A1(x)))`, where `A1` and `A2` are affine
// byte maps. Derived from the field form above: `A1 = Φ·M·x ⊕ Φ·C` and
// `A2(w) = M·Φ⁻¹·A_aes⁻¹·(w ⊕ 0x63) ⊕ C`, with `Φ` the isomorphism from SM4's field to
// AES's sending x to 0x23 (a root of SM4's polynomial in AES's field) and `A_aes` the
// linear part of AES's affine map. Checked for all 256 inputs by
// `aes_form_matches_the_table`.

/// Linear part of `A1`, by columns.
pub(super) const A1_COLS: [u8; 8] = [0x8c, 0x30, 0x85, 0x9f, 0xdc, 0x2e, 0xc5, 0x08];
/// Constant of `A1`.
pub(super) const A1_C: u8 = 0x3e;
/// Linear part of `A2`, by columns.
pub(super) const A2_COLS: [u8; 8] = [0xb8, 0xca, 0x3e, 0x67, 0xe0, 0x50, 0x9d, 0xc0];
/// Constant of `A2`.
pub(super) const A2_C: u8 = 0x6c;

// The same S-box through GFNI: `gf2p8affineqb` is an affine byte map and
// `gf2p8affineinvqb` is `M·inv(x) ⊕ c` with `inv` in AES's field, so with
// `S_aes(y) = A_aes·inv(y) ⊕ 0x63`: `S(x) = POST·inv(A1(x)) ⊕ POST_C`, where
// `POST = A2·A_aes` (linear parts) and `POST_C = A2(0x63) ⊕ A2_C`. Two instructions for
// every byte of a vector. Checked for all 256 inputs, through a model of the
// instructions, by `gfni_form_matches_the_table`.

/// `A_aes`, the linear part of AES's affine map, by columns: `b_i ⊕ b_{i+4} ⊕ b_{i+5} ⊕
/// b_{i+6} ⊕ b_{i+7}`, so column `j` is `0x1f` rotated left by `j`.
pub(super) const A_AES_COLS: [u8; 8] = {
    let mut c = [0u8; 8];
    let mut j = 0;
    while j < 8 {
        c[j] = 0x1fu8.rotate_left(j as u32);
        j += 1;
    }
    c
};

/// A linear byte map as the 64-bit matrix operand of `gf2p8affineqb`: output bit `i` is
/// the parity of input AND byte `7 - i` of the operand (Intel SDM, GF2P8AFFINEQB).
pub(super) const fn gfni_matrix(cols: &[u8; 8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < 8 {
        let mut row = 0u8;
        let mut j = 0;
        while j < 8 {
            row |= ((cols[j] >> i) & 1) << j;
            j += 1;
        }
        m |= (row as u64) << (8 * (7 - i));
        i += 1;
    }
    m
}

/// `A1` as a `gf2p8affineqb` matrix (its constant is [`A1_C`]).
pub(super) const GF_PRE: u64 = gfni_matrix(&A1_COLS);
/// `POST = A2·A_aes` as a `gf2p8affineinvqb` matrix.
pub(super) const GF_POST: u64 = gfni_matrix(&compose(&A2_COLS, &A_AES_COLS));
/// `POST_C = A2(0x63) ⊕ A2_C`.
pub(super) const GF_POST_C: u8 = lin(&A2_COLS, 0x63) ^ A2_C;

/// A linear byte map given by its columns, applied to `x`.
pub(super) const fn lin(cols: &[u8; 8], x: u8) -> u8 {
    let mut y = 0;
    let mut j = 0;
    while j < 8 {
        if (x >> j) & 1 == 1 {
            y ^= cols[j];
        }
        j += 1;
    }
    y
}

/// Multiplication in SM4's field (tests only: it branches on its inputs).
#[cfg(test)]
pub(super) const fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut r = 0u8;
    while b != 0 {
        if b & 1 == 1 {
            r ^= a;
        }
        b >>= 1;
        let carry = a & 0x80 != 0;
        a <<= 1;
        if carry {
            a ^= POLY;
        }
    }
    r
}

// The same S-box in a tower field, for the bitsliced core: GF(2^8) as GF(16)[y]/(y^2 + y + ν)
// with GF(16) = GF(2)[w]/(w^4 + w + 1) and ν = w^3 (trace 1, so the quadratic is
// irreducible). A byte `a1 << 4 | a0` is `a1·y + a0`. `S(x) = OUT·inv(IN·x ⊕ IN_C) ⊕ C`,
// where `IN = Φ·M`, `IN_C = Φ·C`, `OUT = M·Φ⁻¹` and `Φ` the isomorphism from SM4's field
// sending x to 0x83 (a root of SM4's polynomial in the tower field). Checked for all 256
// inputs by `tower_form_matches_the_table`.

/// `ν`, in GF(16).
pub(super) const NU: u8 = 0x8;
/// `IN`, by columns.
pub(super) const IN_COLS: [u8; 8] = [0x9a, 0x9c, 0xc6, 0x85, 0x95, 0x8e, 0xeb, 0x5d];
/// `IN_C`.
pub(super) const IN_C: u8 = 0xac;
/// `OUT`, by columns.
pub(super) const OUT_COLS: [u8; 8] = [0xcb, 0x71, 0x4e, 0xb0, 0xf9, 0x24, 0x46, 0x2d];

/// Multiplication in GF(16) = GF(2)[w]/(w^4 + w + 1) (compile time and tests only).
pub(super) const fn gf16_mul(a: u8, b: u8) -> u8 {
    let mut r = 0u8;
    let mut i = 0;
    while i < 4 {
        if (b >> i) & 1 == 1 {
            r ^= a << i;
        }
        i += 1;
    }
    let mut k = 6;
    while k >= 4 {
        if (r >> k) & 1 == 1 {
            r ^= (1 << k) | (0b11 << (k - 4));
        }
        k -= 1;
    }
    r
}

/// The columns of a linear GF(16) map `a -> c·a^e` for `e` 1 or 2.
pub(super) const fn gf16_cols(c: u8, square: bool) -> [u8; 4] {
    let mut cols = [0u8; 4];
    let mut j = 0;
    while j < 4 {
        let b = 1u8 << j;
        let b = if square { gf16_mul(b, b) } else { b };
        cols[j] = gf16_mul(c, b);
        j += 1;
    }
    cols
}

/// Nibble tables of an affine byte map `x -> lin(cols, x) ^ c`, for a 16-entry shuffle:
/// `lo[i] = lin(i) ^ c`, `hi[i] = lin(i << 4)`, so `f(x) = lo[x & 15] ^ hi[x >> 4]`.
pub(super) const fn nibble_tables(cols: &[u8; 8], c: u8) -> ([u8; 16], [u8; 16]) {
    let mut lo = [0u8; 16];
    let mut hi = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        lo[i] = lin(cols, i as u8) ^ c;
        hi[i] = lin(cols, (i as u8) << 4);
        i += 1;
    }
    (lo, hi)
}

/// The columns of `g ∘ f` for linear maps given by columns.
pub(super) const fn compose(g: &[u8; 8], f: &[u8; 8]) -> [u8; 8] {
    let mut c = [0u8; 8];
    let mut j = 0;
    while j < 8 {
        c[j] = lin(g, f[j]);
        j += 1;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(x: u8) -> u8 {
        (1..=255u8).find(|&y| gf_mul(x, y) == 1).unwrap_or(0)
    }

    fn aes_sbox(x: u8) -> u8 {
        // AES's field: reduction 0x11b.
        let mul = |mut a: u8, mut b: u8| {
            let mut r = 0u8;
            while b != 0 {
                if b & 1 == 1 {
                    r ^= a;
                }
                b >>= 1;
                a = (a << 1) ^ if a & 0x80 != 0 { 0x1b } else { 0 };
            }
            r
        };
        let i = (1..=255u8).find(|&y| mul(x, y) == 1).unwrap_or(0);
        i ^ i.rotate_left(1) ^ i.rotate_left(2) ^ i.rotate_left(3) ^ i.rotate_left(4) ^ 0x63
    }

    #[test]
    fn field_form_matches_the_table() {
        for x in 0..=255u8 {
            assert_eq!(lin(&M_COLS, inv(lin(&M_COLS, x) ^ C)) ^ C, SBOX[x as usize], "x = {x:#04x}");
        }
    }

    #[test]
    fn tower_form_matches_the_table() {
        let mul = |a: u8, b: u8| {
            let (a1, a0, b1, b0) = (a >> 4, a & 15, b >> 4, b & 15);
            let hh = gf16_mul(a1, b1);
            ((gf16_mul(a1, b0) ^ gf16_mul(a0, b1) ^ hh) << 4) | (gf16_mul(a0, b0) ^ gf16_mul(hh, NU))
        };
        for x in 0..=255u8 {
            let t = lin(&IN_COLS, x) ^ IN_C;
            let i = (1..=255u8).find(|&y| mul(t, y) == 1).unwrap_or(0);
            assert_eq!(lin(&OUT_COLS, i) ^ C, SBOX[x as usize], "x = {x:#04x}");
        }
    }

    /// `gf2p8affineqb` on one byte, as the Intel SDM defines it.
    fn gf2p8affine(x: u8, m: u64, c: u8) -> u8 {
        (0..8).fold(c, |acc, i| acc ^ ((((m >> (8 * (7 - i))) as u8 & x).count_ones() as u8 & 1) << i))
    }

    #[test]
    fn gfni_form_matches_the_table() {
        // `inv` in AES's field, from its S-box: S_aes(y) = A_aes·inv(y) ⊕ 0x63.
        let a_aes_inv: Vec<u8> = (0..=255u8).map(|b| lin(&A_AES_COLS, b)).collect();
        for x in 0..=255u8 {
            let a = gf2p8affine(x, GF_PRE, A1_C);
            assert_eq!(a, lin(&A1_COLS, x) ^ A1_C);
            let i = a_aes_inv.iter().position(|&v| v == aes_sbox(a) ^ 0x63).unwrap() as u8;
            // gf2p8affineinvqb: the affine map of the inverse in AES's field.
            assert_eq!(gf2p8affine(i, GF_POST, GF_POST_C), SBOX[x as usize], "x = {x:#04x}");
        }
    }

    #[test]
    fn aes_form_matches_the_table() {
        assert_eq!(aes_sbox(0x53), 0xed);
        for x in 0..=255u8 {
            let a = lin(&A1_COLS, x) ^ A1_C;
            assert_eq!(lin(&A2_COLS, aes_sbox(a)) ^ A2_C, SBOX[x as usize], "x = {x:#04x}");
            let (lo, hi) = nibble_tables(&A1_COLS, A1_C);
            assert_eq!(lo[(x & 15) as usize] ^ hi[(x >> 4) as usize], a);
        }
    }
}
