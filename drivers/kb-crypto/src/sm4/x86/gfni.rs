//! SM4 with GFNI: the S-box as two Galois-field affine instructions on every byte of a
//! vector, `gf2p8affineqb` (the affine map `A1` into AES's field) and
//! `gf2p8affineinvqb` (the inverse there, then the affine map back), see
//! [`super::super::sbox`]'s `GF_PRE`/`GF_POST`. Neither instruction has a
//! data-dependent timing or memory access.
//!
//! Unlike the AES-NI kernel, the state stays in SM4's own domain: the S-box needs no
//! ShiftRows undone and no nibble tables, so a round is a three-way XOR, the two affine
//! instructions and `L` (four rotations, three XORs). AVX-512 does the rotations with
//! `vprold` and the three-way XORs with `vpternlogd` (64 blocks at a time in four groups
//! of 16); with AVX2 (32 blocks in two groups of 8) the byte rotations are shuffles and
//! the 2-bit one two shifts.

use super::super::sbox::{A1_C, GF_POST, GF_POST_C, GF_PRE};
use super::{BSWAP32, Kernel, Lanes, Y256, in_chunks, rol_bytes, transpose};
use std::arch::x86_64::*;

/// GFNI with 256-bit AVX2.
pub(in crate::sm4) fn has_gfni_avx2() -> bool {
    is_x86_feature_detected!("gfni") && is_x86_feature_detected!("avx2")
}

/// GFNI with AVX-512 F and BW (512-bit byte shuffles).
pub(in crate::sm4) fn has_gfni_avx512() -> bool {
    is_x86_feature_detected!("gfni") && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
}

/// The `imm8` operands: `A1`'s constant and the post map's.
const PRE_C: i32 = A1_C as i32;
const POST_C: i32 = GF_POST_C as i32;

/// What the GFNI kernel needs besides [`Lanes`].
trait GfLanes: Lanes {
    /// The same 64-bit matrix in every 64-bit lane.
    unsafe fn splat64(m: u64) -> Self;
    /// The SM4 S-box on every byte: `pre` and `post` are [`GF_PRE`] and [`GF_POST`].
    unsafe fn sbox(self, pre: Self, post: Self) -> Self;
    unsafe fn xor3(self, a: Self, b: Self) -> Self;
    /// Each 32-bit lane rotated left by 2, 8, 16 or 24 bits.
    unsafe fn rol2(self) -> Self;
    unsafe fn rol8(self) -> Self;
    unsafe fn rol16(self) -> Self;
    unsafe fn rol24(self) -> Self;
}

const ROL8: [u8; 16] = rol_bytes(1);
const ROL16: [u8; 16] = rol_bytes(2);
const ROL24: [u8; 16] = rol_bytes(3);

impl GfLanes for Y256 {
    #[inline(always)]
    unsafe fn splat64(m: u64) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        Self(unsafe { _mm256_set1_epi64x(m as i64) })
    }
    #[inline(always)]
    unsafe fn sbox(self, pre: Self, post: Self) -> Self {
        // SAFETY: the caller runs with GFNI and AVX2 (see the trait).
        unsafe {
            let a = _mm256_gf2p8affine_epi64_epi8::<PRE_C>(self.0, pre.0);
            Self(_mm256_gf2p8affineinv_epi64_epi8::<POST_C>(a, post.0))
        }
    }
    #[inline(always)]
    unsafe fn xor3(self, a: Self, b: Self) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        unsafe { self.xor(a).xor(b) }
    }
    #[inline(always)]
    unsafe fn rol2(self) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        Self(unsafe { _mm256_or_si256(_mm256_slli_epi32::<2>(self.0), _mm256_srli_epi32::<30>(self.0)) })
    }
    #[inline(always)]
    unsafe fn rol8(self) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        unsafe { self.shuf(Self::splat(&ROL8)) }
    }
    #[inline(always)]
    unsafe fn rol16(self) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        unsafe { self.shuf(Self::splat(&ROL16)) }
    }
    #[inline(always)]
    unsafe fn rol24(self) -> Self {
        // SAFETY: the caller runs with AVX2 (see the trait).
        unsafe { self.shuf(Self::splat(&ROL24)) }
    }
}

#[derive(Clone, Copy)]
struct Z512(__m512i);

impl Lanes for Z512 {
    const PER: usize = 4;
    #[inline(always)]
    unsafe fn splat(b: &[u8; 16]) -> Self {
        // SAFETY: `b` is 16 readable bytes; the caller runs with AVX-512 F (see the trait).
        Self(unsafe { _mm512_broadcast_i32x4(_mm_loadu_si128(b.as_ptr().cast())) })
    }
    #[inline(always)]
    unsafe fn splat32(x: u32) -> Self {
        // SAFETY: the caller runs with AVX-512 F (see the trait).
        Self(unsafe { _mm512_set1_epi32(x as i32) })
    }
    #[inline(always)]
    unsafe fn load(b: &[[u8; 16]]) -> Self {
        // SAFETY: slicing checks that blocks 0 to 3 exist: 64 contiguous readable bytes.
        Self(unsafe { _mm512_loadu_si512(b[..4].as_ptr().cast()) })
    }
    #[inline(always)]
    unsafe fn store(self, b: &mut [[u8; 16]]) {
        // SAFETY: slicing checks that blocks 0 to 3 exist: 64 contiguous writable bytes.
        unsafe { _mm512_storeu_si512(b[..4].as_mut_ptr().cast(), self.0) }
    }
    #[inline(always)]
    unsafe fn xor(self, o: Self) -> Self {
        // SAFETY: the caller runs with AVX-512 F (see the trait).
        Self(unsafe { _mm512_xor_si512(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn shuf(self, idx: Self) -> Self {
        // SAFETY: the caller runs with AVX-512 BW (see the trait).
        Self(unsafe { _mm512_shuffle_epi8(self.0, idx.0) })
    }
    #[inline(always)]
    unsafe fn unpack_lo32(self, o: Self) -> Self {
        // SAFETY: the caller runs with AVX-512 F (see the trait).
        Self(unsafe { _mm512_unpacklo_epi32(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn unpack_hi32(self, o: Self) -> Self {
        // SAFETY: the caller runs with AVX-512 F (see the trait).
        Self(unsafe { _mm512_unpackhi_epi32(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn unpack_lo64(self, o: Self) -> Self {
        // SAFETY: the caller runs with AVX-512 F (see the trait).
        Self(unsafe { _mm512_unpacklo_epi64(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn unpack_hi64(self, o: Self) -> Self {
        // SAFETY: the caller runs with AVX-512 F (see the trait).
        Self(unsafe { _mm512_unpackhi_epi64(self.0, o.0) })
    }
}

impl GfLanes for Z512 {
    #[inline(always)]
    unsafe fn splat64(m: u64) -> Self {
        // SAFETY: the caller runs with AVX-512 F (see the trait).
        Self(unsafe { _mm512_set1_epi64(m as i64) })
    }
    #[inline(always)]
    unsafe fn sbox(self, pre: Self, post: Self) -> Self {
        // SAFETY: the caller runs with GFNI and AVX-512 (see the trait).
        unsafe {
            let a = _mm512_gf2p8affine_epi64_epi8::<PRE_C>(self.0, pre.0);
            Self(_mm512_gf2p8affineinv_epi64_epi8::<POST_C>(a, post.0))
        }
    }
    #[inline(always)]
    unsafe fn xor3(self, a: Self, b: Self) -> Self {
        // SAFETY: the caller runs with AVX-512 F (see the trait). 0x96 is a ^ b ^ c.
        Self(unsafe { _mm512_ternarylogic_epi32::<0x96>(self.0, a.0, b.0) })
    }
    #[inline(always)]
    unsafe fn rol2(self) -> Self {
        // SAFETY: the caller runs with AVX-512 F (see the trait).
        Self(unsafe { _mm512_rol_epi32::<2>(self.0) })
    }
    #[inline(always)]
    unsafe fn rol8(self) -> Self {
        // SAFETY: the caller runs with AVX-512 F (see the trait).
        Self(unsafe { _mm512_rol_epi32::<8>(self.0) })
    }
    #[inline(always)]
    unsafe fn rol16(self) -> Self {
        // SAFETY: the caller runs with AVX-512 F (see the trait).
        Self(unsafe { _mm512_rol_epi32::<16>(self.0) })
    }
    #[inline(always)]
    unsafe fn rol24(self) -> Self {
        // SAFETY: the caller runs with AVX-512 F (see the trait).
        Self(unsafe { _mm512_rol_epi32::<24>(self.0) })
    }
}

/// The GFNI kernel: `G` groups of `4 * V::PER` blocks.
struct GfKernel<V, const G: usize> {
    rk: [V; 32],
    pre: V,
    post: V,
    bswap: V,
}

impl<V: GfLanes, const G: usize> Kernel for GfKernel<V, G> {
    const N: usize = 4 * V::PER * G;
    #[inline(always)]
    unsafe fn run(&self, chunk: &mut [[u8; 16]]) {
        // SAFETY: forwarded from the caller.
        unsafe { self.groups(chunk) }
    }
}

impl<V: GfLanes, const G: usize> GfKernel<V, G> {
    /// `X[i0] ^= L(S(X[i1] ^ X[i2] ^ X[i3] ^ rk))` in every group, with
    /// `L(b) = b ^ rol24(b) ^ rol2(b ^ rol8(b) ^ rol16(b))`. The indices are constants at
    /// every call, so the state stays in registers.
    #[inline(always)]
    unsafe fn round(&self, x: &mut [[V; 4]; G], [i0, i1, i2, i3]: [usize; 4], rk: V) {
        // SAFETY: the caller has the features `V` needs.
        unsafe {
            for s in x.iter_mut() {
                let b = s[i1].xor3(s[i2], s[i3]).xor(rk).sbox(self.pre, self.post);
                let u = b.xor3(b.rol8(), b.rol16());
                s[i0] = s[i0].xor3(b, b.rol24()).xor(u.rol2());
            }
        }
    }

    /// All 32 rounds on `G * 4 * V::PER` blocks.
    #[inline(always)]
    unsafe fn groups(&self, blocks: &mut [[u8; 16]]) {
        let per_group = 4 * V::PER;
        // SAFETY: the caller has the features `V` needs; loads and stores are
        // bounds-checked by slicing (`blocks` holds `G * per_group` blocks).
        unsafe {
            let mut x = [[self.bswap; 4]; G];
            for (gi, s) in x.iter_mut().enumerate() {
                let b = &blocks[gi * per_group..];
                let mut r = [self.bswap; 4];
                for (i, ri) in r.iter_mut().enumerate() {
                    *ri = V::load(&b[i * V::PER..]).shuf(self.bswap);
                }
                *s = transpose(r);
            }
            for k in self.rk.chunks_exact(4) {
                self.round(&mut x, [0, 1, 2, 3], k[0]);
                self.round(&mut x, [1, 2, 3, 0], k[1]);
                self.round(&mut x, [2, 3, 0, 1], k[2]);
                self.round(&mut x, [3, 0, 1, 2], k[3]);
            }
            for (g, s) in x.iter().enumerate() {
                let out = transpose([s[3], s[2], s[1], s[0]]);
                let b = &mut blocks[g * per_group..];
                for (i, v) in out.iter().enumerate() {
                    v.shuf(self.bswap).store(&mut b[i * V::PER..]);
                }
            }
        }
    }
}

/// All of `blocks` through the GFNI kernel, `G` groups at a time.
#[inline(always)]
unsafe fn crypt_all<V: GfLanes, const G: usize>(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    // SAFETY: forwarded from the caller (every use below).
    unsafe {
        let pre = V::splat64(GF_PRE);
        let mut keys = [pre; 32];
        for (v, &k) in keys.iter_mut().zip(rk) {
            *v = V::splat32(k);
        }
        let k = GfKernel::<V, G> { rk: keys, pre, post: V::splat64(GF_POST), bswap: V::splat(&BSWAP32) };
        in_chunks(&k, blocks);
    }
}

#[target_feature(enable = "gfni,avx2")]
pub(super) fn crypt_avx2(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    // SAFETY: this function is compiled with the features `Y256` needs.
    unsafe { crypt_all::<Y256, 2>(rk, blocks) }
}

#[target_feature(enable = "gfni,avx512f,avx512bw")]
pub(super) fn crypt_avx512(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    // SAFETY: this function is compiled with the features `Z512` needs.
    unsafe { crypt_all::<Z512, 4>(rk, blocks) }
}
