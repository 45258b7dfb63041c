//! The SM2 prime field `GF(p)`, `p = 2^256 − 2^224 − 2^96 + 2^64 − 1`, for signature
//! *verification* only: every value here is public, so nothing is constant-time.
//!
//! Elements are four 64-bit limbs (little-endian) in Montgomery form `a·R mod p`,
//! `R = 2^256`, always fully reduced (`< p`), so equality is limb equality.
//! Products are schoolbook with `u128` (16 multiplications; 10 for a square), and the
//! Montgomery reduction uses the prime's shape instead of multiplications: since
//! `p ≡ −1 (mod 2^64)` the reduction factor of a step is the low limb `m` itself, and
//! `(t + m·p) / 2^64 = ⌊t / 2^64⌋ + m·(p + 1) / 2^64` with
//! `m·(p + 1) / 2^64 = m·2^192 + m − m·2^160 − m·2^32`: limbs `[m, 0, 0, m]` minus
//! `[m << 32, m >> 32, m << 32, m >> 32]`, four subtractions and four additions a step.

/// Four little-endian 64-bit limbs.
type Limbs = [u64; 4];

/// The prime p.
const P: Limbs = [0xffff_ffff_ffff_ffff, 0xffff_ffff_0000_0000, 0xffff_ffff_ffff_ffff, 0xffff_fffe_ffff_ffff];
/// `R mod p` (1 in Montgomery form).
const R: Limbs = [1, 0xffff_ffff, 0, 0x1_0000_0000];
/// `R^2 mod p` (multiplying by it enters Montgomery form).
const R2: Limbs = [0x2_0000_0003, 0x2_ffff_ffff, 0x1_0000_0001, 0x4_0000_0002];

#[inline(always)]
fn adc(a: u64, b: u64, carry: u64) -> (u64, u64) {
    let t = u128::from(a) + u128::from(b) + u128::from(carry);
    (t as u64, (t >> 64) as u64)
}

/// `a − b − borrow` and the borrow out (0 or 1), for `borrow` ∈ {0, 1}.
#[inline(always)]
fn sbb(a: u64, b: u64, borrow: u64) -> (u64, u64) {
    let t = u128::from(a).wrapping_sub(u128::from(b) + u128::from(borrow));
    (t as u64, (t >> 127) as u64)
}

/// `acc + a·b + carry` as (low, high); cannot overflow 128 bits.
#[inline(always)]
fn mac(acc: u64, a: u64, b: u64, carry: u64) -> (u64, u64) {
    let t = u128::from(acc) + u128::from(a) * u128::from(b) + u128::from(carry);
    (t as u64, (t >> 64) as u64)
}

/// `a − b` over four limbs and the borrow out.
#[inline(always)]
fn sub4(a: &Limbs, b: &Limbs) -> (Limbs, u64) {
    let (r0, bw) = sbb(a[0], b[0], 0);
    let (r1, bw) = sbb(a[1], b[1], bw);
    let (r2, bw) = sbb(a[2], b[2], bw);
    let (r3, bw) = sbb(a[3], b[3], bw);
    ([r0, r1, r2, r3], bw)
}

/// `hi·2^256 + a` reduced once: `a − p` unless that borrows (inputs `< 2p`).
#[inline(always)]
fn reduce_once(a: &Limbs, hi: u64) -> Limbs {
    let (s, bw) = sub4(a, &P);
    let (_, bw) = sbb(hi, 0, bw);
    // bw = 1: the value was below p, keep it.
    let keep = 0u64.wrapping_sub(bw);
    [
        (a[0] & keep) | (s[0] & !keep),
        (a[1] & keep) | (s[1] & !keep),
        (a[2] & keep) | (s[2] & !keep),
        (a[3] & keep) | (s[3] & !keep),
    ]
}

/// Montgomery reduction of a 512-bit `t < p·2^256`: `t·2^−256 mod p`, fully reduced.
#[inline(always)]
fn montgomery_reduce(mut t: [u64; 8]) -> Limbs {
    let mut top = 0u64;
    for i in 0..4 {
        let m = t[i];
        // x = m·(p + 1)/2^64 = [m, 0, 0, m] − [m << 32, m >> 32, m << 32, m >> 32] ≥ 0.
        let (lo, hi) = (m << 32, m >> 32);
        let (x, _) = sub4(&[m, 0, 0, m], &[lo, hi, lo, hi]);
        let (a, c) = adc(t[i + 1], x[0], 0);
        t[i + 1] = a;
        let (a, c) = adc(t[i + 2], x[1], c);
        t[i + 2] = a;
        let (a, c) = adc(t[i + 3], x[2], c);
        t[i + 3] = a;
        let (a, mut c) = adc(t[i + 4], x[3], c);
        t[i + 4] = a;
        for limb in t.iter_mut().skip(i + 5) {
            let (a, c2) = adc(*limb, 0, c);
            *limb = a;
            c = c2;
        }
        top += c;
    }
    // t[4..8] + top·2^256 < 2p.
    reduce_once(&[t[4], t[5], t[6], t[7]], top)
}

/// An element of GF(p) in Montgomery form, fully reduced.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Fe(Limbs);

impl Fe {
    /// 0.
    pub(crate) const ZERO: Fe = Fe([0; 4]);
    /// 1.
    pub(crate) const ONE: Fe = Fe(R);

    /// From 32 big-endian bytes; `None` unless the value is below p.
    pub(crate) fn from_bytes(b: &[u8; 32]) -> Option<Fe> {
        let limbs = limbs_from_be(b);
        let (_, borrow) = sub4(&limbs, &P);
        if borrow == 0 {
            return None;
        }
        Some(Fe(limbs).mul(&Fe(R2)))
    }

    /// To 32 big-endian bytes (the canonical value below p). Verification never needs it.
    #[cfg(test)]
    pub(crate) fn to_bytes(self) -> [u8; 32] {
        let a = self.0;
        let plain = montgomery_reduce([a[0], a[1], a[2], a[3], 0, 0, 0, 0]);
        be_from_limbs(&plain)
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.0 == [0; 4]
    }

    pub(crate) fn add(&self, b: &Fe) -> Fe {
        let (a, b) = (&self.0, &b.0);
        let (r0, c) = adc(a[0], b[0], 0);
        let (r1, c) = adc(a[1], b[1], c);
        let (r2, c) = adc(a[2], b[2], c);
        let (r3, c) = adc(a[3], b[3], c);
        Fe(reduce_once(&[r0, r1, r2, r3], c))
    }

    pub(crate) fn double(&self) -> Fe {
        self.add(self)
    }

    pub(crate) fn sub(&self, b: &Fe) -> Fe {
        let (r, bw) = sub4(&self.0, &b.0);
        // On a borrow add p back.
        let mask = 0u64.wrapping_sub(bw);
        let (r0, c) = adc(r[0], P[0] & mask, 0);
        let (r1, c) = adc(r[1], P[1] & mask, c);
        let (r2, c) = adc(r[2], P[2] & mask, c);
        let (r3, _) = adc(r[3], P[3] & mask, c);
        Fe([r0, r1, r2, r3])
    }

    pub(crate) fn neg(&self) -> Fe {
        Fe::ZERO.sub(self)
    }

    #[inline(always)]
    pub(crate) fn mul(&self, b: &Fe) -> Fe {
        let (a, b) = (&self.0, &b.0);
        let mut t = [0u64; 8];
        for i in 0..4 {
            let mut carry = 0;
            for j in 0..4 {
                let (lo, hi) = mac(t[i + j], a[i], b[j], carry);
                t[i + j] = lo;
                carry = hi;
            }
            t[i + 4] = carry;
        }
        Fe(montgomery_reduce(t))
    }

    #[inline(always)]
    pub(crate) fn square(&self) -> Fe {
        let a = &self.0;
        let mut t = [0u64; 8];
        // The cross products a_i·a_j (i < j) once, ...
        for i in 0..3 {
            let mut carry = 0;
            for j in i + 1..4 {
                let (lo, hi) = mac(t[i + j], a[i], a[j], carry);
                t[i + j] = lo;
                carry = hi;
            }
            t[i + 4] = carry;
        }
        // ... doubled, ...
        t[7] = t[6] >> 63;
        for k in (1..7).rev() {
            t[k] = (t[k] << 1) | (t[k - 1] >> 63);
        }
        t[0] <<= 1;
        // ... plus the squares a_i^2.
        let mut carry = 0;
        for i in 0..4 {
            let sq = u128::from(a[i]) * u128::from(a[i]);
            let (lo, c) = adc(t[2 * i], sq as u64, carry);
            t[2 * i] = lo;
            let (hi, c) = adc(t[2 * i + 1], (sq >> 64) as u64, c);
            t[2 * i + 1] = hi;
            carry = c;
        }
        Fe(montgomery_reduce(t))
    }
}

/// 32 big-endian bytes as little-endian limbs.
pub(crate) fn limbs_from_be(b: &[u8; 32]) -> Limbs {
    let mut out = [0u64; 4];
    for (i, limb) in out.iter_mut().enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[32 - 8 * (i + 1)..32 - 8 * i]);
        *limb = u64::from_be_bytes(w);
    }
    out
}

#[cfg(test)]
fn be_from_limbs(a: &Limbs) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, limb) in a.iter().enumerate() {
        out[32 - 8 * (i + 1)..32 - 8 * i].copy_from_slice(&limb.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;

    fn p() -> BigUint {
        BigUint::from_bytes_be(&be_from_limbs(&P))
    }

    fn big(b: &[u8; 32]) -> BigUint {
        BigUint::from_bytes_be(b)
    }

    fn bytes(x: &BigUint) -> [u8; 32] {
        let v = x.to_bytes_be();
        let mut out = [0u8; 32];
        out[32 - v.len()..].copy_from_slice(&v);
        out
    }

    fn fe(x: &BigUint) -> Fe {
        Fe::from_bytes(&bytes(x)).unwrap_or_else(|| unreachable!("{x} < p"))
    }

    /// Edge values (0, 1, 2, p − 1, p − 2, 2^255, values whose limbs are all ones or
    /// zeros where p allows, p − 2^64, 2^224…) and random ones, all below p.
    fn samples() -> Vec<BigUint> {
        let p = p();
        let one = BigUint::from(1u8);
        let mut v = vec![
            BigUint::from(0u8),
            one.clone(),
            BigUint::from(2u8),
            BigUint::from(u64::MAX),
            &p - 1u8,
            &p - 2u8,
            &p - BigUint::from(u64::MAX),
            (&one << 255) + 1u8,
            &one << 224,
            (&one << 256usize) - (&one << 224usize) - (&one << 96usize), // p − 2^64 + 1
            (&one << 192) - 1u8,
            (&one << 128) - 1u8,
            BigUint::from_bytes_be(&[0xffu8; 31]),
        ];
        for _ in 0..400 {
            let b = crate::rng::random_array::<32>().unwrap_or_else(|_| unreachable!());
            v.push(big(&b) % &p);
        }
        v
    }

    #[test]
    fn constants_are_right() {
        let p = p();
        let r = (BigUint::from(1u8) << 256) % &p;
        assert_eq!(BigUint::from_bytes_be(&be_from_limbs(&R)), r);
        assert_eq!(BigUint::from_bytes_be(&be_from_limbs(&R2)), &r * &r % &p);
        let want = (BigUint::from(1u8) << 256) - (BigUint::from(1u8) << 224) - (BigUint::from(1u8) << 96)
            + (BigUint::from(1u8) << 64)
            - 1u8;
        assert_eq!(p, want);
        assert_eq!(Fe::ONE.to_bytes(), bytes(&BigUint::from(1u8)));
    }

    #[test]
    fn bytes_round_trip_and_values_at_or_above_p_are_refused() {
        let p = p();
        for x in samples() {
            assert_eq!(big(&fe(&x).to_bytes()), x);
        }
        for bad in [p.clone(), &p + 1u8, (BigUint::from(1u8) << 256) - 1u8, &p + BigUint::from(u64::MAX)] {
            assert_eq!(Fe::from_bytes(&bytes(&bad)), None, "{bad:x}");
        }
    }

    #[test]
    fn arithmetic_matches_bigint() {
        let p = p();
        let xs = samples();
        let mut checked = 0;
        for (i, a) in xs.iter().enumerate() {
            // Every pair among the edge values, a sliding partner among the random ones.
            let partners: Vec<&BigUint> =
                if i < 13 { xs.iter().collect() } else { vec![&xs[(i * 7 + 3) % xs.len()], &xs[i - 1]] };
            let fa = fe(a);
            assert_eq!(big(&fa.square().to_bytes()), a * a % &p, "{a:x}²");
            assert_eq!(big(&fa.neg().to_bytes()), (&p - a) % &p, "−{a:x}");
            assert_eq!(big(&fa.double().to_bytes()), (a + a) % &p, "2·{a:x}");
            assert_eq!(fa.is_zero(), *a == BigUint::from(0u8));
            for b in partners {
                let fb = fe(b);
                assert_eq!(big(&fa.mul(&fb).to_bytes()), a * b % &p, "{a:x}·{b:x}");
                assert_eq!(big(&fa.add(&fb).to_bytes()), (a + b) % &p, "{a:x}+{b:x}");
                assert_eq!(big(&fa.sub(&fb).to_bytes()), (a + &p - b) % &p, "{a:x}−{b:x}");
                assert_eq!(fa == fb, a == b);
                checked += 1;
            }
        }
        assert!(checked > 13 * 13 + 700, "{checked}");
    }

    /// The reduction's extremes: the largest product, (p − 1)^2, and the largest input
    /// the reduction takes (`t < p·2^256`), against the definition.
    #[test]
    fn reduction_extremes() {
        let p = p();
        let r_inv = (BigUint::from(1u8) << 256usize).modpow(&(&p - 2u8), &p);
        let pm1 = &p - 1u8;
        for t in [&pm1 * &pm1, (&p << 256) - 1u8, &p * &p, BigUint::from(0u8), BigUint::from(1u8)] {
            let mut limbs = [0u64; 8];
            for (i, d) in t.to_u64_digits().into_iter().enumerate() {
                limbs[i] = d;
            }
            let got = BigUint::from_bytes_be(&be_from_limbs(&montgomery_reduce(limbs)));
            assert_eq!(got, &t * &r_inv % &p, "t = {t:x}");
        }
    }
}
