//! SM2 signature verification's point arithmetic, variable-time: the key, the digest
//! and the signature are all public, so branching on them leaks nothing secret.
//!
//! `[s]G + [t]P` is one interleaved wNAF ("Shamir") multiplication over the field of
//! `sm2::field` in Jacobian coordinates with the curve's `a = −3`:
//!
//! - doubling `dbl-2001-b` (3M + 5S), mixed addition of an affine point (8M + 3S),
//!   full Jacobian addition (12M + 4S), each with the exceptional cases (infinity, equal
//!   points, opposite points) handled, since an attacker chooses the inputs;
//! - `G`'s odd multiples `G, 3G, …, (2^(W_G−1) − 1)G` affine in a table built once
//!   (`W_G = 8`: 64 points, 4 KiB), so its digits cost mixed additions;
//! - `P`'s odd multiples up to `(2^(W_P−1) − 1)P` (`W_P = 5`: 8 points) built per call
//!   in Jacobian coordinates. Normalising them to affine would need a field inversion
//!   (~270 multiplications by Fermat) to save ~5 multiplications on each of the ~43 `P`
//!   additions: not done.
//!
//! The final check `(e + x1) mod n = r` needs no inversion: with `v = (r − e) mod n`,
//! `x1 ≡ v (mod n)` and `x1 < p < 2n` mean `x1 = v` or `x1 = v + n` (possible only when
//! `v + n < p`), i.e. `X = v·Z^2` or `X = (v + n)·Z^2`.

use super::field::{Fe, limbs_from_be};
use sm2::elliptic_curve::Group;
use sm2::elliptic_curve::point::BatchNormalize;
use sm2::elliptic_curve::sec1::ToSec1Point;
use sm2::{AffinePoint, ProjectivePoint};
use std::sync::LazyLock;

/// wNAF window for `G` (table of `2^(W_G−2)` affine points).
const W_G: usize = 8;
/// wNAF window for `P` (per-call table of `2^(W_P−2)` points).
const W_P: usize = 5;
/// wNAF length: 256 bits plus the final carry (at most one window past bit 255).
const WNAF_LEN: usize = 256 + W_G + 1;

/// The group order n, little-endian limbs.
const N: [u64; 4] = [0x53bb_f409_39d5_4123, 0x7203_df6b_21c6_052b, 0xffff_ffff_ffff_ffff, 0xffff_fffe_ffff_ffff];
/// `p − n` (129 bits wide at most: `v + n < p` iff `v < p − n`).
const P_MINUS_N: [u64; 4] = [0xac44_0bf6_c62a_bedc, 0x8dfc_2093_de39_fad5, 0, 0];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Affine {
    x: Fe,
    y: Fe,
}

impl Affine {
    /// From `04 ‖ x ‖ y` of a point RustCrypto has validated (on the curve, not infinity).
    fn from_rustcrypto(p: &AffinePoint) -> Option<Affine> {
        let enc = p.to_sec1_point(false);
        let b = enc.as_bytes();
        if b.len() != 65 {
            return None;
        }
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        x.copy_from_slice(&b[1..33]);
        y.copy_from_slice(&b[33..65]);
        Some(Affine { x: Fe::from_bytes(&x)?, y: Fe::from_bytes(&y)? })
    }

    fn neg(&self) -> Affine {
        Affine { x: self.x, y: self.y.neg() }
    }
}

/// `(X : Y : Z)` standing for `(X/Z^2, Y/Z^3)`; `Z = 0` is the point at infinity.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
}

impl Jacobian {
    const INFINITY: Jacobian = Jacobian { x: Fe::ONE, y: Fe::ONE, z: Fe::ZERO };

    fn from_affine(p: &Affine) -> Jacobian {
        Jacobian { x: p.x, y: p.y, z: Fe::ONE }
    }

    fn is_infinity(&self) -> bool {
        self.z.is_zero()
    }

    fn neg(&self) -> Jacobian {
        Jacobian { x: self.x, y: self.y.neg(), z: self.z }
    }

    /// `2·self` (dbl-2001-b, a = −3); infinity stays infinity (Z3 = 2·Y·Z).
    fn double(&self) -> Jacobian {
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.mul(&gamma);
        let alpha = self.x.sub(&delta).mul(&self.x.add(&delta));
        let alpha = alpha.double().add(&alpha);
        let beta4 = beta.double().double();
        let x3 = alpha.square().sub(&beta4.double());
        let z3 = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let gamma2_8 = gamma.square().double().double().double();
        let y3 = alpha.mul(&beta4.sub(&x3)).sub(&gamma2_8);
        Jacobian { x: x3, y: y3, z: z3 }
    }

    /// `self + q` for an affine `q` (8M + 3S).
    fn add_affine(&self, q: &Affine) -> Jacobian {
        if self.is_infinity() {
            return Jacobian::from_affine(q);
        }
        let z1z1 = self.z.square();
        let u2 = q.x.mul(&z1z1);
        let s2 = q.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&self.x);
        let r = s2.sub(&self.y);
        if h.is_zero() {
            return if r.is_zero() { self.double() } else { Jacobian::INFINITY };
        }
        let hh = h.square();
        let hhh = h.mul(&hh);
        let v = self.x.mul(&hh);
        let x3 = r.square().sub(&hhh).sub(&v.double());
        let y3 = r.mul(&v.sub(&x3)).sub(&self.y.mul(&hhh));
        let z3 = self.z.mul(&h);
        Jacobian { x: x3, y: y3, z: z3 }
    }

    /// `self + q` (12M + 4S).
    fn add(&self, q: &Jacobian) -> Jacobian {
        if self.is_infinity() {
            return *q;
        }
        if q.is_infinity() {
            return *self;
        }
        let z1z1 = self.z.square();
        let z2z2 = q.z.square();
        let u1 = self.x.mul(&z2z2);
        let u2 = q.x.mul(&z1z1);
        let s1 = self.y.mul(&q.z).mul(&z2z2);
        let s2 = q.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&u1);
        let r = s2.sub(&s1);
        if h.is_zero() {
            return if r.is_zero() { self.double() } else { Jacobian::INFINITY };
        }
        let hh = h.square();
        let hhh = h.mul(&hh);
        let v = u1.mul(&hh);
        let x3 = r.square().sub(&hhh).sub(&v.double());
        let y3 = r.mul(&v.sub(&x3)).sub(&s1.mul(&hhh));
        let z3 = self.z.mul(&q.z).mul(&h);
        Jacobian { x: x3, y: y3, z: z3 }
    }
}

/// `G, 3G, 5G, …` affine, built once with RustCrypto's arithmetic (one batched inversion).
static G_TABLE: LazyLock<Vec<Affine>> = LazyLock::new(|| {
    let g = ProjectivePoint::generator();
    let g2 = g.double();
    let mut odd = Vec::with_capacity(1 << (W_G - 2));
    let mut m = g;
    for _ in 0..1 << (W_G - 2) {
        odd.push(m);
        m += g2;
    }
    let affine: Vec<AffinePoint> = <ProjectivePoint as BatchNormalize<[ProjectivePoint]>>::batch_normalize(&odd[..]);
    affine.iter().map(|p| Affine::from_rustcrypto(p).unwrap_or_else(|| unreachable!("odd multiples of G are finite"))).collect()
});

/// Bits `pos .. pos + count` of `k` (`count ≤ 16`); bits past 255 read as zero.
fn bits(k: &[u64; 4], pos: usize, count: usize) -> u32 {
    if pos >= 256 {
        return 0;
    }
    let (limb, off) = (pos / 64, pos % 64);
    let mut v = k[limb] >> off;
    if off + count > 64 && limb + 1 < 4 {
        v |= k[limb + 1] << (64 - off);
    }
    (v & ((1u64 << count) - 1)) as u32
}

/// The width-`w` NAF of `k`, least significant first: every digit is 0 or odd in
/// `(−2^(w−1), 2^(w−1))`, and any `w` consecutive digits hold at most one nonzero.
fn wnaf(k: &[u64; 4], w: usize) -> [i16; WNAF_LEN] {
    let mut out = [0i16; WNAF_LEN];
    let mut carry = 0u32;
    let mut bit = 0;
    while bit < WNAF_LEN {
        if bits(k, bit, 1) == carry {
            bit += 1;
            continue;
        }
        let word = bits(k, bit, w) + carry;
        carry = (word >> (w - 1)) & 1;
        out[bit] = (word as i32 - ((carry as i32) << w)) as i16;
        bit += w;
    }
    out
}

/// `[s]G + [t]P` for scalars given as little-endian limbs (any 256-bit values).
pub(crate) fn mul_add(s: &[u64; 4], t: &[u64; 4], p: &Affine) -> Jacobian {
    let ws = wnaf(s, W_G);
    let wt = wnaf(t, W_P);
    // P, 3P, …, (2^(W_P−1) − 1)P.
    let p1 = Jacobian::from_affine(p);
    let p2 = p1.double();
    let mut ptab = [p1; 1 << (W_P - 2)];
    for i in 1..ptab.len() {
        ptab[i] = ptab[i - 1].add(&p2);
    }
    let gtab = &*G_TABLE;
    let Some(top) = (0..WNAF_LEN).rev().find(|&i| ws[i] != 0 || wt[i] != 0) else {
        return Jacobian::INFINITY;
    };
    let mut acc = Jacobian::INFINITY;
    for i in (0..=top).rev() {
        acc = acc.double();
        let d = ws[i];
        if d > 0 {
            acc = acc.add_affine(&gtab[(d >> 1) as usize]);
        } else if d < 0 {
            acc = acc.add_affine(&gtab[(-d >> 1) as usize].neg());
        }
        let d = wt[i];
        if d > 0 {
            acc = acc.add(&ptab[(d >> 1) as usize]);
        } else if d < 0 {
            acc = acc.add(&ptab[(-d >> 1) as usize].neg());
        }
    }
    acc
}

/// GM/T 0003.2 B6–B7 for already checked scalars: whether `[s]G + [t]P` is a finite
/// point whose x-coordinate is `≡ v (mod n)`, where `v = (r − e) mod n` (so that
/// `(e + x1) mod n = r`). `s`, `t`, `v` are 32-byte big-endian values below n.
pub(crate) fn check(p: &AffinePoint, s: &[u8; 32], t: &[u8; 32], v: &[u8; 32]) -> bool {
    let Some(p) = Affine::from_rustcrypto(p) else { return false };
    let acc = mul_add(&limbs_from_be(s), &limbs_from_be(t), &p);
    if acc.is_infinity() {
        return false;
    }
    let z2 = acc.z.square();
    let Some(fv) = Fe::from_bytes(v) else { return false };
    if acc.x == fv.mul(&z2) {
        return true;
    }
    // x1 = v + n is possible only when v + n < p, i.e. v < p − n.
    let vl = limbs_from_be(v);
    if !less_than(&vl, &P_MINUS_N) {
        return false;
    }
    let mut w = [0u8; 32];
    let mut carry = 0u128;
    for i in 0..4 {
        let sum = u128::from(vl[i]) + u128::from(N[i]) + carry;
        w[32 - 8 * (i + 1)..32 - 8 * i].copy_from_slice(&(sum as u64).to_be_bytes());
        carry = sum >> 64;
    }
    match Fe::from_bytes(&w) {
        Some(fw) => acc.x == fw.mul(&z2),
        None => false,
    }
}

/// `a < b` for little-endian limbs.
fn less_than(a: &[u64; 4], b: &[u64; 4]) -> bool {
    for i in (0..4).rev() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm2::Scalar;
    use sm2::elliptic_curve::PrimeField;
    use sm2::elliptic_curve::ops::Reduce;

    fn random_scalar() -> Scalar {
        let b = crate::rng::random_array::<32>().unwrap_or_else(|_| unreachable!());
        <Scalar as Reduce<sm2::FieldBytes>>::reduce(&b.into())
    }

    fn limbs(k: &Scalar) -> [u64; 4] {
        limbs_from_be(&k.to_repr().into())
    }

    /// Whether our Jacobian point is RustCrypto's point.
    fn same(ours: &Jacobian, theirs: &ProjectivePoint) -> bool {
        if bool::from(theirs.is_identity()) {
            return ours.is_infinity();
        }
        let Some(a) = Affine::from_rustcrypto(&theirs.to_affine()) else { return false };
        let z2 = ours.z.square();
        !ours.is_infinity() && ours.x == a.x.mul(&z2) && ours.y == a.y.mul(&z2.mul(&ours.z))
    }

    /// Digits put back together give the scalar, are odd and in range, and no window
    /// of w digits holds two nonzero ones.
    #[test]
    fn wnaf_is_exact() {
        let mut cases = vec![[0u64; 4], [1, 0, 0, 0], [u64::MAX; 4], [0, 0, 0, 1 << 63], N, [0x7f, 0, 0, 0], [0x80, 0, 0, 0]];
        cases.extend((0..200).map(|_| limbs(&random_scalar())));
        for w in [W_P, W_G] {
            for k in &cases {
                let digits = wnaf(k, w);
                let mut back = num_bigint::BigInt::from(0);
                for (i, &d) in digits.iter().enumerate().rev() {
                    back = back * 2 + d;
                    if d != 0 {
                        assert!(d % 2 != 0 && i32::from(d).abs() < 1 << (w - 1), "digit {d}");
                        assert!(digits[i + 1..(i + w).min(WNAF_LEN)].iter().all(|&x| x == 0), "window at {i}");
                    }
                }
                let want = num_bigint::BigInt::from_bytes_le(
                    num_bigint::Sign::Plus,
                    &k.iter().flat_map(|l| l.to_le_bytes()).collect::<Vec<u8>>(),
                );
                assert_eq!(back, want, "w = {w}");
            }
        }
    }

    /// `[s]G + [t]P` equals RustCrypto's on random scalars and keys, and on inputs that
    /// drive the additions into their exceptional cases: `P = ±G`, `P = 2G`, `s = ±t`,
    /// small scalars (the accumulator meets table points), zero scalars, sums that are
    /// the point at infinity.
    #[test]
    fn joint_multiplication_matches_rustcrypto() {
        let g = ProjectivePoint::generator();
        let small = |k: u64| Scalar::from(k);
        let mut cases: Vec<(Scalar, Scalar, Scalar)> = Vec::new(); // (s, t, d) with P = [d]G
        for d in [Scalar::ONE, -Scalar::ONE, small(2), small(3), -small(5), small(127), small(1 << 20)] {
            for (s, t) in [
                (small(1), small(1)),
                (small(1), -small(1)),
                (small(3), small(3)),
                (small(5), small(7)),
                (small(127), small(15)),
                (small(0), small(9)),
                (small(9), small(0)),
                (small(255), small(31)),
                (-small(1), small(1)),
            ] {
                cases.push((s, t, d));
            }
            // s = −t·d: the sum is the point at infinity.
            let t = random_scalar();
            cases.push((-(t * d), t, d));
        }
        for _ in 0..150 {
            let (s, t, d) = (random_scalar(), random_scalar(), random_scalar());
            cases.push((s, t, d));
            cases.push((s, s, d));
            cases.push((-(t * d), t, d)); // infinity
            cases.push((s, -s, Scalar::ONE)); // infinity, P = G
        }
        for (s, t, d) in cases {
            let p = (g * d).to_affine();
            let Some(pa) = Affine::from_rustcrypto(&p) else { unreachable!("d ≠ 0") };
            let ours = mul_add(&limbs(&s), &limbs(&t), &pa);
            let theirs = g * s + ProjectivePoint::from(p) * t;
            assert!(same(&ours, &theirs), "s = {s:?}, t = {t:?}, d = {d:?}");
        }
    }

    /// The group law on exceptional inputs: P + P, P + (−P), ∞ + P, P + ∞, 2·∞.
    #[test]
    fn additions_handle_exceptional_inputs() {
        let g = ProjectivePoint::generator();
        let p = (g * Scalar::from(12345u64)).to_affine();
        let Some(a) = Affine::from_rustcrypto(&p) else { unreachable!() };
        let j = Jacobian::from_affine(&a).double().add(&Jacobian::from_affine(&a)); // 3P, Z ≠ 1
        let p3 = ProjectivePoint::from(p) * Scalar::from(3u64);
        assert!(same(&j.add(&j), &p3.double()));
        assert!(j.add(&j.neg()).is_infinity());
        assert!(same(&Jacobian::INFINITY.add(&j), &p3));
        assert!(same(&j.add(&Jacobian::INFINITY), &p3));
        assert!(Jacobian::INFINITY.double().is_infinity());
        let one = Jacobian::from_affine(&a);
        assert!(same(&one.add_affine(&a), &ProjectivePoint::from(p).double()));
        assert!(one.add_affine(&a.neg()).is_infinity());
        assert!(same(&Jacobian::INFINITY.add_affine(&a), &ProjectivePoint::from(p)));
        // Mixed addition with Z ≠ 1 on the left.
        assert!(same(&j.add_affine(&a), &(p3 + ProjectivePoint::from(p))));
    }

    #[test]
    fn constants_are_right() {
        use num_bigint::BigUint;
        let big = |l: &[u64; 4]| BigUint::from_bytes_le(&l.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
        let n = BigUint::from_bytes_be(&(-Scalar::ONE).to_repr()) + 1u8;
        assert_eq!(big(&N), n);
        let p = (BigUint::from(1u8) << 256) - (BigUint::from(1u8) << 224) - (BigUint::from(1u8) << 96)
            + (BigUint::from(1u8) << 64)
            - 1u8;
        assert_eq!(big(&P_MINUS_N), p - n);
    }
}
