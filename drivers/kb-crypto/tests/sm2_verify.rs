//! The fast SM2 verification (variable-time joint multiplication over public data) gives
//! exactly the answers of RustCrypto's constant-time `verify_prehash` on good signatures,
//! on every kind of bad one (other digest, other key, r or s off by one, zero, n, or with
//! r + s = n), and on the published GM/T 0003.5 vector (tests/vectors, checked elsewhere
//! too). Speed is the benchmark's business (`cargo run --release -p kb-bench`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kb_crypto::sm2::{Sm2PrivateKey, Sm2Signature};

/// n, the order of the SM2 group, big-endian.
const N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x72, 0x03, 0xDF, 0x6B, 0x21,
    0xC6, 0x05, 0x2B, 0x53, 0xBB, 0xF4, 0x09, 0x39, 0xD5, 0x41, 0x23,
];

fn add(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in (0..32).rev() {
        let v = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    out
}

fn sub(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut v = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(v < 0);
        if v < 0 {
            v += 256;
        }
        out[i] = v as u8;
    }
    out
}

fn one() -> [u8; 32] {
    let mut o = [0u8; 32];
    o[31] = 1;
    o
}

#[test]
fn fast_and_reference_verification_agree_on_good_and_bad_signatures() {
    let mut checked = 0;
    for i in 0..40u8 {
        let key = Sm2PrivateKey::generate().unwrap();
        let other = Sm2PrivateKey::generate().unwrap();
        let pk = key.public_key();
        let e = kb_crypto::rng::random_array::<32>().unwrap();
        let sig = key.sign_digest(&e).unwrap();
        let mut e2 = e;
        e2[i as usize % 32] ^= 1 << (i % 8);
        let cases: Vec<(Sm2Signature, [u8; 32], &kb_crypto::sm2::Sm2PublicKey, bool)> = vec![
            (sig.clone(), e, pk, true),
            (sig.clone(), e2, pk, false),
            (sig.clone(), e, other.public_key(), false),
            (Sm2Signature { r: add(&sig.r, &one()), s: sig.s }, e, pk, false),
            (Sm2Signature { r: sig.r, s: sub(&sig.s, &one()) }, e, pk, false),
            (Sm2Signature { r: [0; 32], s: sig.s }, e, pk, false),
            (Sm2Signature { r: sig.r, s: [0; 32] }, e, pk, false),
            (Sm2Signature { r: N, s: sig.s }, e, pk, false),
            (Sm2Signature { r: sig.r, s: N }, e, pk, false),
            // r + s = n: t = 0 must be refused, not computed with.
            (Sm2Signature { r: sig.r, s: sub(&N, &sig.r) }, e, pk, false),
            ([0xff; 64].as_slice().try_into().map(|b: [u8; 64]| Sm2Signature::from_raw(&b).unwrap()).unwrap(), e, pk, false),
        ];
        for (k, (s, e, pk, good)) in cases.into_iter().enumerate() {
            let fast = pk.verify_digest(&e, &s).is_ok();
            let reference = pk.verify_digest_reference(&e, &s).is_ok();
            assert_eq!(fast, reference, "round {i} case {k}: fast {fast}, reference {reference}");
            assert_eq!(fast, good, "round {i} case {k}");
            checked += 1;
        }
    }
    assert_eq!(checked, 40 * 11);
}
