//! SM4 with x86-64 SIMD: the S-box through AES-NI. The only module of this crate with
//! `unsafe` (intrinsics and unaligned vector loads/stores), each use with a `SAFETY:`
//! comment.
//!
//! SM4's S-box is AES's between two affine byte maps, `S(x) = A2(S_aes(A1(x)))`
//! ([`super::sbox`]). An affine byte map is two 16-entry shuffles (`pshufb`) on the
//! low and high nibbles, and `aesenclast` with a zero round key is `S_aes` on all 16
//! bytes (then ShiftRows, which a byte shuffle undoes). None of these instructions has
//! a data-dependent timing or memory access.
//!
//! - **Many blocks** ([`crypt_blocks`]): blocks are transposed so that a vector holds
//!   the same word of 4 blocks (SSE, 128-bit `aesenclast`) or 8 blocks (AVX2 with
//!   VAES, 256-bit `vaesenclast`); four such groups are interleaved so the CPU overlaps
//!   their rounds. The words are kept as `A(X)` like the one-block path's (below), so
//!   no affine map precedes `aesenclast`; ShiftRows is undone inside the shuffles that
//!   rotate for `L`.
//! - **One block after another** ([`cbc_encrypt`]): a chain of 32 dependent S-box
//!   layers, bound by latency. The round input is kept broadcast to all four AES
//!   columns (so ShiftRows is a no-op) and in the `A1` domain: the state words are
//!   kept as `A(X)` (the linear part of `A1`), so the next `aesenclast` input is XORs
//!   of earlier values and `G(z)`, where `z` is the last `aesenclast` output and
//!   `G = A ∘ L ∘ A2` is computed as four nibble-shuffled byte maps and three byte
//!   rotations (see [`g_tables`]). Per round: `aesenclast` and about seven
//!   one-cycle vector operations on the chain. With GFNI ([`Chain::Gfni`],
//!   [`Chain::GfniVl`]) the S-box layer and `G`'s three byte maps are three
//!   `gf2p8affineinvqb` on the same input (see [`g_gfni`]), then the rotations and two
//!   XOR levels.
//! - **GFNI kernels** for many blocks are in [`gfni`].

use super::sbox::{A_AES_COLS, A1_C, A1_COLS, A2_C, A2_COLS, GF_POST_C, compose, gfni_matrix, lin, nibble_tables};
use std::arch::x86_64::*;

mod gfni;
pub(super) use gfni::{has_gfni_avx2, has_gfni_avx512};

/// The SIMD implementations this CPU can run.
pub(super) fn has_aesni() -> bool {
    is_x86_feature_detected!("aes") && is_x86_feature_detected!("ssse3")
}

/// 256-bit `vaesenclast` and AVX2.
pub(super) fn has_vaes() -> bool {
    has_aesni() && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("vaes")
}

// ---------------------------------------------------------------------------------
// Constants (all public: shuffle tables of fixed byte maps)

/// `ISR[k]`: where `aesenclast`'s ShiftRows put byte `k` (AES state byte `4c + r`
/// goes to column `c - r`).
const ISR: [u8; 16] = {
    let mut m = [0u8; 16];
    let mut k = 0;
    while k < 16 {
        let (c, r) = (k / 4, k % 4);
        m[k] = (4 * ((c + 4 - r) % 4) + r) as u8;
        k += 1;
    }
    m
};

/// Undo ShiftRows, then rotate each 32-bit lane left by `8 * m` bits.
const fn isr_rol(m: usize) -> [u8; 16] {
    let mut t = [0u8; 16];
    let mut k = 0;
    while k < 16 {
        let (c, b) = (k / 4, k % 4);
        t[k] = ISR[4 * c + (b + 4 - m) % 4];
        k += 1;
    }
    t
}

/// Rotate each 32-bit lane left by `8 * m` bits.
const fn rol_bytes(m: usize) -> [u8; 16] {
    let mut t = [0u8; 16];
    let mut k = 0;
    while k < 16 {
        let (c, b) = (k / 4, k % 4);
        t[k] = (4 * c + (b + 4 - m) % 4) as u8;
        k += 1;
    }
    t
}

/// Reverse the bytes of each 32-bit lane (SM4 words are big-endian).
const BSWAP32: [u8; 16] = [3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12];

/// `P(b) = A(b << 2)` and `Q(b) = A(b >> 6)`, by columns: the parts of `A ∘ rol2`
/// that stay in a byte and that cross into the next one.
const fn p_q_cols() -> ([u8; 8], [u8; 8]) {
    let mut p = [0u8; 8];
    let mut q = [0u8; 8];
    let mut j = 0;
    while j < 8 {
        if j < 6 {
            p[j] = A1_COLS[j + 2];
        } else {
            q[j] = A1_COLS[j - 6];
        }
        j += 1;
    }
    (p, q)
}

const fn xor_cols(a: &[u8; 8], b: &[u8; 8]) -> [u8; 8] {
    let mut c = [0u8; 8];
    let mut j = 0;
    while j < 8 {
        c[j] = a[j] ^ b[j];
        j += 1;
    }
    c
}

/// `A` (linear part of `A1`) on each byte of a word.
const fn a_word(w: u32) -> u32 {
    let b = w.to_le_bytes();
    u32::from_le_bytes([lin(&A1_COLS, b[0]), lin(&A1_COLS, b[1]), lin(&A1_COLS, b[2]), lin(&A1_COLS, b[3])])
}

/// `A(L(c c c c))` for the S-box output constant `c`: the constant part of `A ∘ L ∘ A2`
/// (`c = A2_C`) or of the GFNI form (`c = GF_POST_C`). Its four bytes are equal (`L` of a
/// word of equal bytes has equal bytes), so it folds into a byte map.
const fn l_const(c: u8) -> u8 {
    let c = u32::from_le_bytes([c; 4]);
    let k = a_word(c ^ c.rotate_left(2) ^ c.rotate_left(10) ^ c.rotate_left(18) ^ c.rotate_left(24));
    assert!(k == u32::from_le_bytes([k as u8; 4]));
    k as u8
}

/// `G(z) = A(L(A2(z)))` — the round map in the `A` domain, `A` the linear part of `A1` —
/// as byte maps and rotations: with `L(s) = s ⊕ rol24(s) ⊕ rol2(s ⊕ rol8 s ⊕ rol16 s)`
/// and `A(rol2 v) = P(v) ⊕ rol8(Q(v))` bytewise,
/// `G(z) = F0(z) ⊕ rol8(F1(z)) ⊕ rol16(F1(z)) ⊕ rol24(F3(z))` with
/// `F0 = (A ⊕ P)∘A2 ⊕ l_const(A2_C)`, `F1 = (P ⊕ Q)∘A2`, `F3 = (A ⊕ Q)∘A2` (`A2`'s linear part;
/// its constant folds into `F0`). Returns the nibble tables of `F0`, `F1`, `F3`.
const fn g_tables() -> [([u8; 16], [u8; 16]); 3] {
    let (p, q) = p_q_cols();
    let f0 = compose(&xor_cols(&A1_COLS, &p), &A2_COLS);
    let f1 = compose(&xor_cols(&p, &q), &A2_COLS);
    let f3 = compose(&xor_cols(&A1_COLS, &q), &A2_COLS);
    [nibble_tables(&f0, l_const(A2_C)), nibble_tables(&f1, 0), nibble_tables(&f3, 0)]
}

const G_T: [([u8; 16], [u8; 16]); 3] = g_tables();

/// `G` straight from the S-box input `a` (in AES's field), for GFNI: the S-box output is
/// `POST·inv(a) ⊕ POST_C` (see [`super::sbox`]), so `F0`, `F1`, `F3` are
/// `gf2p8affineinvqb` with the matrices `(A ⊕ P)·POST`, `(P ⊕ Q)·POST`, `(A ⊕ Q)·POST`
/// and `F0`'s constant `A(L(POST_C …))`.
const fn g_gfni() -> [u64; 3] {
    let (p, q) = p_q_cols();
    let post = compose(&A2_COLS, &A_AES_COLS);
    [
        gfni_matrix(&compose(&xor_cols(&A1_COLS, &p), &post)),
        gfni_matrix(&compose(&xor_cols(&p, &q), &post)),
        gfni_matrix(&compose(&xor_cols(&A1_COLS, &q), &post)),
    ]
}

const G_GF: [u64; 3] = g_gfni();
/// `F0`'s constant in the GFNI form, as an `imm8`.
const G_GF_C: i32 = l_const(GF_POST_C) as i32;

/// The inverse of `A`, by columns (found by search at compile time).
const A_INV_COLS: [u8; 8] = {
    let mut inv = [0u8; 256];
    let mut x = 0;
    while x < 256 {
        inv[lin(&A1_COLS, x as u8) as usize] = x as u8;
        x += 1;
    }
    let mut c = [0u8; 8];
    let mut j = 0;
    while j < 8 {
        c[j] = inv[1 << j];
        j += 1;
    }
    c
};
const A_T: ([u8; 16], [u8; 16]) = nibble_tables(&A1_COLS, 0);
const A_INV_T: ([u8; 16], [u8; 16]) = nibble_tables(&A_INV_COLS, 0);

// ---------------------------------------------------------------------------------
// Many blocks: one generic kernel over the vector width

/// The operations every kernel needs, on 128-bit lanes (a 256- or 512-bit vector is two
/// or four independent 128-bit lanes for every operation used here).
///
/// Every method is `unsafe` because it needs CPU features the caller must have
/// checked: the implementations are only called from functions compiled with those
/// features (`crypt_sse`, `crypt_vaes`, `gfni::crypt_*`), which are only called after
/// detection.
trait Lanes: Copy {
    /// Blocks in one vector.
    const PER: usize;
    unsafe fn splat(b: &[u8; 16]) -> Self;
    unsafe fn splat32(x: u32) -> Self;
    unsafe fn load(b: &[[u8; 16]]) -> Self;
    unsafe fn store(self, b: &mut [[u8; 16]]);
    unsafe fn xor(self, o: Self) -> Self;
    /// `pshufb`: byte `i` of the result is byte `idx[i] & 15` of `self` in the same lane.
    unsafe fn shuf(self, idx: Self) -> Self;
    unsafe fn unpack_lo32(self, o: Self) -> Self;
    unsafe fn unpack_hi32(self, o: Self) -> Self;
    unsafe fn unpack_lo64(self, o: Self) -> Self;
    unsafe fn unpack_hi64(self, o: Self) -> Self;
}

/// What the AES-NI kernel needs besides [`Lanes`].
trait AesLanes: Lanes {
    unsafe fn and(self, o: Self) -> Self;
    unsafe fn shr4(self) -> Self;
    unsafe fn aes_last0(self) -> Self;
}

#[derive(Clone, Copy)]
struct X128(__m128i);

impl Lanes for X128 {
    const PER: usize = 1;
    #[inline(always)]
    unsafe fn splat(b: &[u8; 16]) -> Self {
        // SAFETY: `b` is 16 readable bytes; `loadu` has no alignment requirement.
        Self(unsafe { _mm_loadu_si128(b.as_ptr().cast()) })
    }
    #[inline(always)]
    unsafe fn splat32(x: u32) -> Self {
        // SAFETY: SSE2 is part of x86-64.
        Self(unsafe { _mm_set1_epi32(x as i32) })
    }
    #[inline(always)]
    unsafe fn load(b: &[[u8; 16]]) -> Self {
        // SAFETY: indexing checks that block 0 exists: 16 readable bytes.
        Self(unsafe { _mm_loadu_si128(b[0].as_ptr().cast()) })
    }
    #[inline(always)]
    unsafe fn store(self, b: &mut [[u8; 16]]) {
        // SAFETY: indexing checks that block 0 exists: 16 writable bytes.
        unsafe { _mm_storeu_si128(b[0].as_mut_ptr().cast(), self.0) }
    }
    #[inline(always)]
    unsafe fn xor(self, o: Self) -> Self {
        // SAFETY: SSE2 is part of x86-64.
        Self(unsafe { _mm_xor_si128(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn shuf(self, idx: Self) -> Self {
        // SAFETY: the caller runs with SSSE3 (see the trait).
        Self(unsafe { _mm_shuffle_epi8(self.0, idx.0) })
    }
    #[inline(always)]
    unsafe fn unpack_lo32(self, o: Self) -> Self {
        // SAFETY: SSE2 is part of x86-64.
        Self(unsafe { _mm_unpacklo_epi32(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn unpack_hi32(self, o: Self) -> Self {
        // SAFETY: SSE2 is part of x86-64.
        Self(unsafe { _mm_unpackhi_epi32(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn unpack_lo64(self, o: Self) -> Self {
        // SAFETY: SSE2 is part of x86-64.
        Self(unsafe { _mm_unpacklo_epi64(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn unpack_hi64(self, o: Self) -> Self {
        // SAFETY: SSE2 is part of x86-64.
        Self(unsafe { _mm_unpackhi_epi64(self.0, o.0) })
    }
}

impl AesLanes for X128 {
    #[inline(always)]
    unsafe fn and(self, o: Self) -> Self {
        // SAFETY: SSE2 is part of x86-64.
        Self(unsafe { _mm_and_si128(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn shr4(self) -> Self {
        // SAFETY: SSE2 is part of x86-64.
        Self(unsafe { _mm_srli_epi32::<4>(self.0) })
    }
    #[inline(always)]
    unsafe fn aes_last0(self) -> Self {
        // SAFETY: the caller runs with AES-NI (see the trait).
        Self(unsafe { _mm_aesenclast_si128(self.0, _mm_setzero_si128()) })
    }
}

#[derive(Clone, Copy)]
struct Y256(__m256i);

impl Lanes for Y256 {
    const PER: usize = 2;
    #[inline(always)]
    unsafe fn splat(b: &[u8; 16]) -> Self {
        // SAFETY: `b` is 16 readable bytes; the caller runs with AVX2 (see the trait).
        Self(unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(b.as_ptr().cast())) })
    }
    #[inline(always)]
    unsafe fn splat32(x: u32) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        Self(unsafe { _mm256_set1_epi32(x as i32) })
    }
    #[inline(always)]
    unsafe fn load(b: &[[u8; 16]]) -> Self {
        // SAFETY: slicing checks that blocks 0 and 1 exist: 32 contiguous readable bytes.
        Self(unsafe { _mm256_loadu_si256(b[..2].as_ptr().cast()) })
    }
    #[inline(always)]
    unsafe fn store(self, b: &mut [[u8; 16]]) {
        // SAFETY: slicing checks that blocks 0 and 1 exist: 32 contiguous writable bytes.
        unsafe { _mm256_storeu_si256(b[..2].as_mut_ptr().cast(), self.0) }
    }
    #[inline(always)]
    unsafe fn xor(self, o: Self) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        Self(unsafe { _mm256_xor_si256(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn shuf(self, idx: Self) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        Self(unsafe { _mm256_shuffle_epi8(self.0, idx.0) })
    }
    #[inline(always)]
    unsafe fn unpack_lo32(self, o: Self) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        Self(unsafe { _mm256_unpacklo_epi32(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn unpack_hi32(self, o: Self) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        Self(unsafe { _mm256_unpackhi_epi32(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn unpack_lo64(self, o: Self) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        Self(unsafe { _mm256_unpacklo_epi64(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn unpack_hi64(self, o: Self) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        Self(unsafe { _mm256_unpackhi_epi64(self.0, o.0) })
    }
}

impl AesLanes for Y256 {
    #[inline(always)]
    unsafe fn and(self, o: Self) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        Self(unsafe { _mm256_and_si256(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn shr4(self) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        Self(unsafe { _mm256_srli_epi32::<4>(self.0) })
    }
    #[inline(always)]
    unsafe fn aes_last0(self) -> Self {
        // SAFETY: the caller runs with VAES and AVX2 (see the trait).
        Self(unsafe { _mm256_aesenclast_epi128(self.0, _mm256_setzero_si256()) })
    }
}

/// Transpose the 4×4 matrix of 32-bit words in each 128-bit lane (an involution).
#[inline(always)]
unsafe fn transpose<V: Lanes>(r: [V; 4]) -> [V; 4] {
    // SAFETY: the caller has the features `V` needs.
    unsafe {
        let t0 = r[0].unpack_lo32(r[1]);
        let t1 = r[0].unpack_hi32(r[1]);
        let t2 = r[2].unpack_lo32(r[3]);
        let t3 = r[2].unpack_hi32(r[3]);
        [t0.unpack_lo64(t2), t0.unpack_hi64(t2), t1.unpack_lo64(t3), t1.unpack_hi64(t3)]
    }
}

/// The kernel's shuffle tables, loaded once.
struct Consts<V> {
    m0f: V,
    g: [(V, V); 3],
    rot: [V; 4],
}

/// `A(X[i0]) ^= G(S_aes(A(X[i1]) ^ A(X[i2]) ^ A(X[i3]) ^ A1(k)))` in every group: one
/// round on words kept in the `A` domain (see [`g_tables`]), so the S-box input needs
/// no affine map; `ak` is `A1(k)`. The indices are constants at every call, so the
/// state stays in registers.
#[inline(always)]
unsafe fn round<V: AesLanes, const G: usize>(c: &Consts<V>, x: &mut [[V; 4]; G], [i0, i1, i2, i3]: [usize; 4], ak: V) {
    // SAFETY: the caller has the features `V` needs.
    unsafe {
        for s in x.iter_mut() {
            let z = s[i1].xor(s[i2]).xor(s[i3]).xor(ak).aes_last0();
            let (lo, hi) = (z.and(c.m0f), z.shr4().and(c.m0f));
            let f0 = c.g[0].0.shuf(lo).xor(c.g[0].1.shuf(hi));
            let f1 = c.g[1].0.shuf(lo).xor(c.g[1].1.shuf(hi));
            let f3 = c.g[2].0.shuf(lo).xor(c.g[2].1.shuf(hi));
            // The rotation shuffles also undo ShiftRows.
            let g = f0.shuf(c.rot[0]).xor(f3.shuf(c.rot[3])).xor(f1.shuf(c.rot[1]).xor(f1.shuf(c.rot[2])));
            s[i0] = s[i0].xor(g);
        }
    }
}

/// An affine byte map (nibble tables) on every byte.
#[inline(always)]
unsafe fn byte_map<V: AesLanes>(v: V, t: &([u8; 16], [u8; 16]), m0f: V) -> V {
    // SAFETY: the caller has the features `V` needs.
    unsafe { V::splat(&t.0).shuf(v.and(m0f)).xor(V::splat(&t.1).shuf(v.shr4().and(m0f))) }
}

/// `G` groups of `4 * V::PER` blocks through all 32 rounds together; `ak[i] = A1(rk[i])`.
#[inline(always)]
unsafe fn crypt_groups<V: AesLanes, const G: usize>(ak: &[V; 32], blocks: &mut [[u8; 16]]) {
    let per_group = 4 * V::PER;
    // SAFETY: the caller has the features `V` needs; loads and stores are bounds-checked
    // by slicing (`blocks` holds `G * per_group` blocks).
    unsafe {
        let bswap = V::splat(&BSWAP32);
        let m0f = V::splat(&[0x0f; 16]);
        // No closures in here: a closure does not inherit the caller's target features,
        // so the intrinsics in it would become calls.
        let g = [
            (V::splat(&G_T[0].0), V::splat(&G_T[0].1)),
            (V::splat(&G_T[1].0), V::splat(&G_T[1].1)),
            (V::splat(&G_T[2].0), V::splat(&G_T[2].1)),
        ];
        let rot = [V::splat(&isr_rol(0)), V::splat(&isr_rol(1)), V::splat(&isr_rol(2)), V::splat(&isr_rol(3))];
        let mut x = [[m0f; 4]; G];
        for (gi, s) in x.iter_mut().enumerate() {
            let b = &blocks[gi * per_group..];
            let mut r = [m0f; 4];
            for (i, ri) in r.iter_mut().enumerate() {
                *ri = V::load(&b[i * V::PER..]).shuf(bswap);
            }
            for (si, w) in s.iter_mut().zip(transpose(r)) {
                *si = byte_map(w, &A_T, m0f);
            }
        }
        let c = Consts { m0f, g, rot };
        for k in ak.chunks_exact(4) {
            round(&c, &mut x, [0, 1, 2, 3], k[0]);
            round(&c, &mut x, [1, 2, 3, 0], k[1]);
            round(&c, &mut x, [2, 3, 0, 1], k[2]);
            round(&c, &mut x, [3, 0, 1, 2], k[3]);
        }
        for (g, s) in x.iter().enumerate() {
            let mut words = [s[3], s[2], s[1], s[0]];
            for w in words.iter_mut() {
                *w = byte_map(*w, &A_INV_T, m0f);
            }
            let out = transpose(words);
            let b = &mut blocks[g * per_group..];
            for (i, v) in out.iter().enumerate() {
                v.shuf(bswap).store(&mut b[i * V::PER..]);
            }
        }
    }
}

/// A many-block kernel: all 32 rounds on a chunk of exactly [`Kernel::N`] blocks.
trait Kernel {
    /// Blocks per call, at most 64.
    const N: usize;
    /// # Safety
    /// The caller has the CPU features the kernel is compiled for.
    unsafe fn run(&self, chunk: &mut [[u8; 16]]);
}

/// All of `blocks` through `k`, `K::N` at a time; a short tail goes through a
/// zero-padded copy, wiped afterwards.
#[inline(always)]
unsafe fn in_chunks<K: Kernel>(k: &K, blocks: &mut [[u8; 16]]) {
    // SAFETY: forwarded from the caller (every use below).
    unsafe {
        let mut chunks = blocks.chunks_exact_mut(K::N);
        for c in &mut chunks {
            k.run(c);
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let mut tmp = [[0u8; 16]; 64];
            let tmp = &mut tmp[..K::N];
            tmp[..rest.len()].copy_from_slice(rest);
            k.run(tmp);
            rest.copy_from_slice(&tmp[..rest.len()]);
            tmp.fill([0; 16]);
        }
    }
}

/// The AES-NI kernel: `G` groups of `4 * V::PER` blocks; `ak[i] = A1(rk[i])`.
struct AesKernel<V, const G: usize> {
    ak: [V; 32],
}

impl<V: AesLanes, const G: usize> Kernel for AesKernel<V, G> {
    const N: usize = 4 * V::PER * G;
    #[inline(always)]
    unsafe fn run(&self, chunk: &mut [[u8; 16]]) {
        // SAFETY: forwarded from the caller.
        unsafe { crypt_groups::<V, G>(&self.ak, chunk) }
    }
}

/// All of `blocks`, `G` groups at a time.
#[inline(always)]
unsafe fn crypt_all<V: AesLanes, const G: usize>(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    // SAFETY: forwarded from the caller (every use below).
    unsafe {
        // A1 of each round key, computed with shuffles (no secret-dependent branch).
        let m0f = V::splat(&[0x0f; 16]);
        let c1 = V::splat(&[A1_C; 16]);
        let mut ak = [c1; 32];
        for (a, &k) in ak.iter_mut().zip(rk) {
            *a = byte_map(V::splat32(k), &A_T, m0f).xor(c1);
        }
        in_chunks(&AesKernel::<V, G> { ak }, blocks);
    }
}

#[target_feature(enable = "aes,ssse3")]
fn crypt_sse(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    // SAFETY: this function is compiled with the features `X128` needs.
    unsafe { crypt_all::<X128, 4>(rk, blocks) }
}

#[target_feature(enable = "aes,avx2,vaes")]
fn crypt_vaes(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    // SAFETY: this function is compiled with the features `Y256` needs.
    unsafe { crypt_all::<Y256, 4>(rk, blocks) }
}

/// Which many-block kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Width {
    /// 128-bit AES-NI, 16 blocks at a time.
    Sse,
    /// 256-bit VAES, 32 blocks at a time.
    Vaes,
    /// 256-bit GFNI with AVX2, 32 blocks at a time.
    Gfni256,
    /// 512-bit GFNI with AVX-512, 64 blocks at a time.
    Gfni512,
}

/// Encrypt (decrypt with reversed round keys) `blocks` in place. Returns `false`,
/// touching nothing, if this CPU lacks the features of `width`.
pub(super) fn crypt_blocks(width: Width, rk: &[u32; 32], blocks: &mut [[u8; 16]]) -> bool {
    match width {
        Width::Vaes if has_vaes() => {
            // SAFETY: the features `crypt_vaes` is compiled with were just detected.
            unsafe { crypt_vaes(rk, blocks) };
            true
        }
        Width::Sse if has_aesni() => {
            // SAFETY: the features `crypt_sse` is compiled with were just detected.
            unsafe { crypt_sse(rk, blocks) };
            true
        }
        Width::Gfni256 if gfni::has_gfni_avx2() => {
            // SAFETY: the features `gfni::crypt_avx2` is compiled with were just detected.
            unsafe { gfni::crypt_avx2(rk, blocks) };
            true
        }
        Width::Gfni512 if gfni::has_gfni_avx512() => {
            // SAFETY: the features `gfni::crypt_avx512` is compiled with were just detected.
            unsafe { gfni::crypt_avx512(rk, blocks) };
            true
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------
// One block after another (CBC encryption, single blocks)

/// Broadcast 32-bit lane `I` to all four.
macro_rules! lane {
    ($v:expr, $i:literal) => {
        _mm_shuffle_epi32::<{ $i * 0x55 }>($v)
    };
}

/// `v`, hidden from the optimiser so that it does not re-associate a XOR tree into a
/// longer chain (LLVM merged `pre`'s terms into the chain after `z`, +3 cycles a round).
#[inline(always)]
fn opaque(mut v: __m128i) -> __m128i {
    // SAFETY: an empty assembly block that only claims to modify a register.
    unsafe { std::arch::asm!("/* {0} */", inout(xmm_reg) v, options(pure, nomem, nostack, preserves_flags)) };
    v
}

/// The one-block chain, `GF` choosing how the S-box layer and `G`'s byte maps are
/// computed: `aesenclast` then nibble shuffles (AES-NI), or three `gf2p8affineinvqb`
/// straight from the S-box input (GFNI); `VL` rotating with `vprold` and XORing three
/// ways with `vpternlogd` (AVX-512 VL) instead of byte shuffles.
///
/// A macro, not a generic function, so that its closures are defined inside the
/// `target_feature` functions and inherit their features (a closure of a plain function
/// that LLVM chose not to inline made every intrinsic in it a call).
macro_rules! cbc_encrypt_body {
    ($gf:expr, $vl:expr, $rk:expr, $chain:expr, $blocks:expr) => {{
        const GF: bool = $gf;
        const VL: bool = $vl;
        let (rk, chain, blocks): (&[u32; 32], &mut [u8; 16], &mut [[u8; 16]]) = ($rk, $chain, $blocks);
        // SAFETY: the caller is compiled with AES-NI and SSSE3, GFNI and AVX if `GF`,
        // AVX-512 F and VL if `VL` (the intrinsics below); loads and stores are of 16-byte
        // arrays.
        unsafe {
            let c = |t: &[u8; 16]| {
                // 16 readable bytes, no alignment requirement.
                _mm_loadu_si128(t.as_ptr().cast())
            };
            let m0f = _mm_set1_epi8(0x0f);
            let nib = |v: __m128i, t: &([u8; 16], [u8; 16])| {
                _mm_xor_si128(
                    _mm_shuffle_epi8(c(&t.0), _mm_and_si128(v, m0f)),
                    _mm_shuffle_epi8(c(&t.1), _mm_and_si128(_mm_srli_epi32::<4>(v), m0f)),
                )
            };
            let bswap = c(&BSWAP32);
            // Opaque, so LLVM keeps each rotation one `pshufb` (it would split the 16-bit one
            // into `pshuflw` + `pshufhw`: one more cycle on the chain).
            let (r8, r16, r24) = std::hint::black_box((c(&rol_bytes(1)), c(&rol_bytes(2)), c(&rol_bytes(3))));
            let zero = _mm_setzero_si128();
            let gf = G_GF.map(|m| _mm_set1_epi64x(m as i64));
            // A1(rk[i]) = A(rk[i]) ^ c1.
            let c1 = _mm_set1_epi8(A1_C as i8);
            let ak: [__m128i; 32] = std::array::from_fn(|i| {
                let k = nib(_mm_set1_epi32(rk[i] as i32), &A_T);
                _mm_xor_si128(k, c1)
            });
            // The chaining value as A(words), broadcast one word per vector.
            let cv = nib(_mm_shuffle_epi8(c(chain), bswap), &A_T);
            let mut prev = [lane!(cv, 0), lane!(cv, 1), lane!(cv, 2), lane!(cv, 3)];
            for blk in blocks.iter_mut() {
                let p = nib(_mm_shuffle_epi8(c(blk), bswap), &A_T);
                let mut ax = [
                    _mm_xor_si128(lane!(p, 0), prev[0]),
                    _mm_xor_si128(lane!(p, 1), prev[1]),
                    _mm_xor_si128(lane!(p, 2), prev[2]),
                    _mm_xor_si128(lane!(p, 3), prev[3]),
                ];
                // `a` is the next `aesenclast` input, A1(X[i+1] ^ X[i+2] ^ X[i+3] ^ rk[i]).
                let mut a = _mm_xor_si128(_mm_xor_si128(ax[1], ax[2]), _mm_xor_si128(ax[3], ak[0]));
                // Round i: z = S_aes(a); A(X[i+4]) = A(X[i]) ^ G(z), and the next input
                // A1(X[i+2] ^ X[i+3] ^ X[i+4] ^ rk[i+1]) = pre ^ G(z) with `pre` known before
                // `z`: the chain is aesenclast, the nibble split, one shuffle, a rotation and
                // a short XOR tree. Constant indices, so the state stays in registers.
                let mut round = |ax: &mut [__m128i; 4], [i0, i2, i3]: [usize; 3], next_k: __m128i| {
                    let base = ax[i0];
                    let pre = opaque(_mm_xor_si128(_mm_xor_si128(base, ax[i2]), _mm_xor_si128(ax[i3], next_k)));
                    let (f0, f1, f3) = if GF {
                        // `GF` is only set by the caller compiled with GFNI.
                        (
                            _mm_gf2p8affineinv_epi64_epi8::<G_GF_C>(a, gf[0]),
                            _mm_gf2p8affineinv_epi64_epi8::<0>(a, gf[1]),
                            _mm_gf2p8affineinv_epi64_epi8::<0>(a, gf[2]),
                        )
                    } else {
                        let z = _mm_aesenclast_si128(a, zero);
                        (nib(z, &G_T[0]), nib(z, &G_T[1]), nib(z, &G_T[2]))
                    };
                    // `pre ^ f0` is ready while the rotations run: after them the chain is two
                    // XORs, not three.
                    let pf = opaque(_mm_xor_si128(pre, f0));
                    if VL {
                        // `VL` is only set by the caller compiled with AVX-512 VL.
                        let (f1r8, f1r16, f3r) = (_mm_rol_epi32::<8>(f1), _mm_rol_epi32::<16>(f1), _mm_rol_epi32::<24>(f3));
                        a = _mm_xor_si128(opaque(_mm_ternarylogic_epi32::<0x96>(pf, f1r8, f1r16)), f3r);
                        ax[i0] = _mm_xor_si128(_mm_ternarylogic_epi32::<0x96>(base, f0, f3r), _mm_xor_si128(f1r8, f1r16));
                    } else {
                        let rots = opaque(_mm_xor_si128(_mm_shuffle_epi8(f1, r8), _mm_shuffle_epi8(f1, r16)));
                        let f3r = _mm_shuffle_epi8(f3, r24);
                        a = _mm_xor_si128(opaque(_mm_xor_si128(pf, f3r)), rots);
                        ax[i0] = _mm_xor_si128(_mm_xor_si128(base, _mm_xor_si128(f0, f3r)), rots);
                    }
                };
                for j in (0..32).step_by(4) {
                    // After the last round `a` is not used: any key will do.
                    let after = ak.get(j + 4).copied().unwrap_or(zero);
                    round(&mut ax, [0, 2, 3], ak[j + 1]);
                    round(&mut ax, [1, 3, 0], ak[j + 2]);
                    round(&mut ax, [2, 0, 1], ak[j + 3]);
                    round(&mut ax, [3, 1, 2], after);
                }
                // Output words X35, X34, X33, X32 (as A(X)); they are also the next chaining value.
                prev = [ax[3], ax[2], ax[1], ax[0]];
                let packed = _mm_unpacklo_epi64(_mm_unpacklo_epi32(ax[3], ax[2]), _mm_unpacklo_epi32(ax[1], ax[0]));
                let out = _mm_shuffle_epi8(nib(packed, &A_INV_T), bswap);
                // `blk` and `chain` are 16 writable bytes, no alignment requirement.
                _mm_storeu_si128(blk.as_mut_ptr().cast(), out);
                _mm_storeu_si128(chain.as_mut_ptr().cast(), out);
            }
        }
    }};
}

#[target_feature(enable = "aes,ssse3")]
fn cbc_encrypt_sse(rk: &[u32; 32], chain: &mut [u8; 16], blocks: &mut [[u8; 16]]) {
    cbc_encrypt_body!(false, false, rk, chain, blocks)
}

#[target_feature(enable = "aes,ssse3,gfni,avx")]
fn cbc_encrypt_gfni(rk: &[u32; 32], chain: &mut [u8; 16], blocks: &mut [[u8; 16]]) {
    cbc_encrypt_body!(true, false, rk, chain, blocks)
}

#[target_feature(enable = "aes,ssse3,gfni,avx,avx512f,avx512vl")]
fn cbc_encrypt_gfni_vl(rk: &[u32; 32], chain: &mut [u8; 16], blocks: &mut [[u8; 16]]) {
    cbc_encrypt_body!(true, true, rk, chain, blocks)
}

/// How the one-block chain computes a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Chain {
    /// `aesenclast` and nibble shuffles (AES-NI, SSSE3).
    Aes,
    /// Three `gf2p8affineinvqb`, byte-shuffle rotations (GFNI, AVX).
    Gfni,
    /// Three `gf2p8affineinvqb`, `vprold` rotations and `vpternlogd` (GFNI, AVX-512 VL).
    GfniVl,
}

impl Chain {
    fn available(self) -> bool {
        has_aesni()
            && match self {
                Chain::Aes => true,
                Chain::Gfni => is_x86_feature_detected!("gfni") && is_x86_feature_detected!("avx"),
                Chain::GfniVl => {
                    Chain::Gfni.available() && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
                }
            }
    }
}

/// CBC-encrypt `blocks` in place, `chain` the IV or last ciphertext block (updated),
/// through `how`, or the AES-NI chain if the CPU lacks what `how` needs. Returns `false`,
/// touching nothing, if this CPU lacks AES-NI or SSSE3.
pub(super) fn cbc_encrypt(how: Chain, rk: &[u32; 32], chain: &mut [u8; 16], blocks: &mut [[u8; 16]]) -> bool {
    let how = if how.available() { how } else { Chain::Aes };
    if !how.available() {
        return false;
    }
    // SAFETY (each arm): the features the function is compiled with were just detected
    // (`Chain::available`).
    match how {
        Chain::Aes => unsafe { cbc_encrypt_sse(rk, chain, blocks) },
        Chain::Gfni => unsafe { cbc_encrypt_gfni(rk, chain, blocks) },
        Chain::GfniVl => unsafe { cbc_encrypt_gfni_vl(rk, chain, blocks) },
    }
    true
}
