//! `[k]G` for a secret `k`: a fixed-base comb over a precomputed table of *affine*
//! multiples of the generator, constant-time in `k`.
//!
//! The scalar is recoded into `DIGITS` signed radix-2^`W` digits `d_i ∈ [−2^(W−1), 2^(W−1)]`
//! (branch-free carries), so `k = Σ d_i·2^(W·i)` and
//!
//! ```text
//! [k]G = Σ_i [d_i]·(2^(W·i)·G),   table[i][j] = (j + 1)·2^(W·i)·G  (affine)
//! ```
//!
//! is `DIGITS` mixed additions and no doublings. Each term is read by scanning the *whole*
//! row of the table with `subtle`'s conditional selection (every entry is loaded and
//! masked, whatever the digit), then conditionally negated: no branch and no memory
//! address depends on `k`. The additions are primeorder's complete mixed formulas, which
//! handle the identity (a zero digit) without branching.
//!
//! RustCrypto's own `mul_by_generator` (primeorder's `BasepointTable`, which `sign_prehash`
//! uses) keeps projective entries with radix-16 digits and pays four doublings to halve
//! its table: 66 full additions. Here affine entries make each addition cheaper and
//! `W = 5` needs 52. Scanning a whole row costs as much as the addition saved once rows
//! get long, so `W` was measured (CPU time per signature, same session, busy machine):
//! W = 4 84 µs, **W = 5 80 µs**, W = 6 91 µs; the reference path 116–130 µs. The table is
//! 52 × 16 affine points ≈ 59 KiB, built once on first use (about a millisecond).

use sm2::elliptic_curve::point::BatchNormalize;
use sm2::elliptic_curve::subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use sm2::elliptic_curve::{Group, PrimeField};
use sm2::{AffinePoint, ProjectivePoint, Scalar};
use std::sync::LazyLock;
use zeroize::Zeroizing;

/// Window width in bits.
const W: usize = 5;
/// Entries per row: the multiples 1..=2^(W−1) (negatives come from negating y).
const ROW: usize = 1 << (W - 1);
/// Signed digits: enough to cover 257 bits (the recoding's final carry fits).
const DIGITS: usize = 257usize.div_ceil(W);

type Table = Vec<[AffinePoint; ROW]>;

static TABLE: LazyLock<Table> = LazyLock::new(build);

fn build() -> Table {
    let mut base = ProjectivePoint::generator();
    let mut projective = Vec::with_capacity(DIGITS * ROW);
    for _ in 0..DIGITS {
        let mut m = base;
        for _ in 0..ROW {
            projective.push(m);
            m += base;
        }
        for _ in 0..W {
            base = base.double();
        }
    }
    let affine: Vec<AffinePoint> = <ProjectivePoint as BatchNormalize<[ProjectivePoint]>>::batch_normalize(&projective[..]);
    affine
        .chunks_exact(ROW)
        .map(|c| {
            let mut row = [AffinePoint::IDENTITY; ROW];
            row.copy_from_slice(c);
            row
        })
        .collect()
}

/// `k` as `DIGITS` signed digits in `[−2^(W−1), 2^(W−1)]`, least significant first, in
/// constant time (arithmetic shifts and masks only).
fn recode(k: &Scalar) -> Zeroizing<[i8; DIGITS]> {
    let be = Zeroizing::new(<[u8; 32]>::from(k.to_repr()));
    // Bit i of k (little-endian numbering); positions past 255 are zero. The index is public.
    let bit = |i: usize| -> u32 { if i < 256 { u32::from((be[31 - i / 8] >> (i % 8)) & 1) } else { 0 } };
    let mut digits = Zeroizing::new([0i8; DIGITS]);
    let mut carry: i32 = 0;
    for (i, d) in digits.iter_mut().enumerate() {
        let mut u: i32 = 0;
        for b in 0..W {
            u |= (bit(W * i + b) as i32) << b;
        }
        let v = u + carry;
        // carry = 1 iff v > 2^(W−1), computed without a branch.
        carry = ((1 << (W - 1)) - v) >> 31 & 1;
        *d = (v - (carry << W)) as i8;
    }
    digits
}

/// `[d]·row[0]` for `|d| ≤ ROW`: every entry is read; the one kept is chosen by mask.
fn select(row: &[AffinePoint; ROW], d: i8) -> AffinePoint {
    let neg = (d >> 7) as u8 & 1;
    let abs = ((d as i16 ^ -(neg as i16)) + neg as i16) as u8;
    let mut t = AffinePoint::IDENTITY;
    for (j, p) in row.iter().enumerate() {
        t.conditional_assign(p, abs.ct_eq(&(j as u8 + 1)));
    }
    let minus = -t;
    t.conditional_assign(&minus, Choice::from(neg));
    t
}

/// `[k]G`, constant-time in `k`.
pub(crate) fn mul_base(k: &Scalar) -> ProjectivePoint {
    let digits = recode(k);
    let mut acc = ProjectivePoint::IDENTITY;
    for (row, &d) in TABLE.iter().zip(digits.iter()) {
        acc += select(row, d);
    }
    acc
}

/// `[k]G` affine (what callers need: `x1` of a signature, a public key).
pub(crate) fn mul_base_affine(k: &Scalar) -> AffinePoint {
    mul_base(k).to_affine()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm2::elliptic_curve::ops::Reduce;

    fn random_scalar() -> Scalar {
        let b = crate::rng::random_array::<32>().unwrap_or_else(|_| unreachable!());
        <Scalar as Reduce<sm2::FieldBytes>>::reduce(&b.into())
    }

    fn scalar(b: [u8; 32]) -> Scalar {
        Option::from(Scalar::from_repr(b.into())).unwrap_or_else(|| unreachable!())
    }

    /// Digits put back together give the scalar, and stay in range.
    #[test]
    fn recoding_is_exact() {
        let mut cases =
            vec![Scalar::ZERO, Scalar::ONE, -Scalar::ONE, Scalar::from(31u64), Scalar::from(32u64), Scalar::from(33u64)];
        cases.extend((0..200).map(|_| random_scalar()));
        let radix = Scalar::from(1u64 << W);
        for k in cases {
            let digits = recode(&k);
            let mut back = Scalar::ZERO;
            for &d in digits.iter().rev() {
                assert!((-(ROW as i32)..=ROW as i32).contains(&i32::from(d)), "digit {d}");
                let m = Scalar::from(u64::from(d.unsigned_abs()));
                back = back * radix + if d < 0 { -m } else { m };
            }
            assert_eq!(back, k);
        }
    }

    /// The comb agrees with RustCrypto's `[k]G` on edge scalars and random ones.
    #[test]
    fn comb_matches_reference() {
        let mut cases = vec![Scalar::ZERO, Scalar::ONE, -Scalar::ONE, Scalar::from(ROW as u64), Scalar::from(ROW as u64 + 1)];
        // Patterned scalars (runs of digits at or near the extremes) and n − 2.
        cases.push(scalar([0x82u8; 32]));
        cases.push(scalar([0x7Du8; 32]));
        cases.push(-Scalar::from(2u64));
        cases.extend((0..100).map(|_| random_scalar()));
        for k in cases {
            assert_eq!(mul_base(&k).to_affine(), (ProjectivePoint::generator() * k).to_affine(), "k = {k:?}");
        }
    }
}
