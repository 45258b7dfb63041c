//! SM2 signatures crafted to reach verification's rare cases, shared by `vectors.rs`
//! (which checks the verifiers on them) and `no_panic.rs` (which writes them as seeds of
//! the `sm2_verify` fuzz target). Everything here uses RustCrypto's arithmetic, not ours.
#![allow(dead_code, unreachable_pub)]

use kb_crypto::sm2::{Sm2PublicKey, Sm2Signature};
use sm2::elliptic_curve::Group;
use sm2::elliptic_curve::ops::Reduce;
use sm2::elliptic_curve::sec1::ToSec1Point;
use sm2::{ProjectivePoint, Scalar};

/// The group order n, big-endian.
pub const N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x72, 0x03, 0xDF, 0x6B, 0x21,
    0xC6, 0x05, 0x2B, 0x53, 0xBB, 0xF4, 0x09, 0x39, 0xD5, 0x41, 0x23,
];

/// A crafted case: the public key, the digest `e` and the signature.
pub type Crafted = (Sm2PublicKey, [u8; 32], Sm2Signature);

fn random_scalar() -> Scalar {
    let b = kb_crypto::rng::random_array::<32>().unwrap_or_else(|_| unreachable!());
    <Scalar as Reduce<sm2::FieldBytes>>::reduce(&b.into())
}

fn public_key(p: &ProjectivePoint) -> Sm2PublicKey {
    Sm2PublicKey::from_sec1(p.to_affine().to_sec1_point(false).as_bytes()).unwrap_or_else(|_| unreachable!("finite point"))
}

/// A valid signature whose verification point `[s]G + [t]P` has x-coordinate `x`
/// (big-endian, any value below p), or `None` when no curve point has that x. Nobody
/// knows the private key: `P = [t^−1](R − [s]G)` for random `s`, `t` and the point `R`
/// at `x`; then `r = t − s` and `e = (r − x) mod n`.
pub fn signature_with_x1(x: &[u8; 32]) -> Option<Crafted> {
    let mut sec1 = [0u8; 33];
    sec1[0] = 0x02;
    sec1[1..].copy_from_slice(x);
    let point = sm2::PublicKey::from_sec1_bytes(&sec1).ok()?.to_projective();
    loop {
        let (s, t) = (random_scalar(), random_scalar());
        let r = t - s;
        let Some(t_inv) = Option::<Scalar>::from(t.invert()) else { continue };
        let p = (point - ProjectivePoint::generator() * s) * t_inv;
        if bool::from(s.is_zero() | r.is_zero() | p.is_identity()) {
            continue;
        }
        let x_mod_n = <Scalar as Reduce<sm2::FieldBytes>>::reduce(&(*x).into());
        let e: [u8; 32] = (r - x_mod_n).to_bytes().into();
        return Some((public_key(&p), e, Sm2Signature { r: r.to_bytes().into(), s: s.to_bytes().into() }));
    }
}

/// `x = base + k` for the first small `k` that is on the curve (`base + k < p`).
pub fn signature_with_x1_from(base: &[u8; 32]) -> Crafted {
    for k in 0u8..=255 {
        let mut x = *base;
        let (last, carry) = x[31].overflowing_add(k);
        x[31] = last;
        if carry {
            continue;
        }
        if let Some(c) = signature_with_x1(&x) {
            return c;
        }
    }
    unreachable!("half of all x are on the curve")
}

/// `x1 ≥ n` (x1 in `[n, p)`: accepted only through the `x1 = v + n` case).
pub fn signature_with_large_x1() -> Crafted {
    signature_with_x1_from(&N)
}

/// `x1 < p − n` (small: `x1 = v` while `v + n < p` too, the other candidate).
pub fn signature_with_small_x1() -> Crafted {
    signature_with_x1_from(&[0u8; 32])
}

/// A signature whose verification point `[s]G + [t]P` is the point at infinity
/// (`P = [−s·t^−1]G`): must be rejected.
pub fn signature_at_infinity() -> Crafted {
    loop {
        let (s, t) = (random_scalar(), random_scalar());
        let r = t - s;
        let Some(t_inv) = Option::<Scalar>::from(t.invert()) else { continue };
        let d = -(s * t_inv);
        if bool::from(s.is_zero() | r.is_zero() | d.is_zero()) {
            continue;
        }
        let e = kb_crypto::rng::random_array::<32>().unwrap_or_else(|_| unreachable!());
        return (
            public_key(&(ProjectivePoint::generator() * d)),
            e,
            Sm2Signature { r: r.to_bytes().into(), s: s.to_bytes().into() },
        );
    }
}
