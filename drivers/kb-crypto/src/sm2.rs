//! SM2 (GM/T 0003 / GB/T 32918): signatures with a distinguishing ID and public-key
//! encryption, over RustCrypto's `sm2` curve arithmetic — except verification, which
//! runs on our own variable-time field and point arithmetic (`sm2/field.rs`,
//! `sm2/verify.rs`), and signing's constant-time `[k]G` comb (`sm2/comb.rs`).
//!
//! What this module adds on top of RustCrypto:
//! - `ZA` for *any* byte-string ID (RustCrypto only takes UTF-8 `&str`), and signing or
//!   verifying a precomputed `e = SM3(ZA ‖ M)` so a device or a streamed file can supply it;
//! - [`Sm2Signature`] in both DER and raw `r ‖ s`;
//! - [`Sm2Ciphertext`] in every layout seen in the wild: GM/T 0009 ASN.1, raw C1C3C2
//!   (current standard), legacy C1C2C3, and both with or without the `04` point prefix
//!   that gmssl/sm-crypto omit. [`Sm2PrivateKey::decrypt`] detects the layout itself.

use crate::{CryptoError, Result, rng};
use der::{Decode, Encode, asn1::OctetStringRef};
use signature::hazmat::{PrehashVerifier, RandomizedPrehashSigner};
use sm2::elliptic_curve::sec1::{FromSec1Point, ToSec1Point};
use sm3::{Digest, Sm3};
use std::fmt;
use zeroize::Zeroizing;

mod comb;
mod field;
mod verify;

/// Raw SM2 Diffie-Hellman for the phone link's Noise suite (`kb-phonelink`): private keys
/// are 32-byte big-endian scalars in `[1, n−1]` (DH has no `n−2` limit), public keys are
/// 33-byte SEC1 *compressed* points, and `DH(d, P)` is the x-coordinate of `[d]P`. It
/// lives here so the point arithmetic is built once, optimised with the rest of the crypto.
pub mod dh {
    use sm2::elliptic_curve::point::AffineCoordinates;
    use sm2::elliptic_curve::sec1::ToSec1Point;
    use zeroize::Zeroizing;

    /// Length of a compressed SM2 public key.
    pub const PUBLIC_KEY_LEN: usize = 33;
    /// Length of an SM2 private scalar.
    pub const PRIVATE_KEY_LEN: usize = 32;

    /// The compressed public key of scalar `d`, or `None` when `d` is 0 or ≥ n.
    pub fn public_key(d: &[u8]) -> Option<[u8; PUBLIC_KEY_LEN]> {
        let sk = sm2::SecretKey::from_slice(d).ok()?;
        let enc = sk.public_key().as_affine().to_sec1_point(true);
        enc.as_bytes().try_into().ok()
    }

    /// Whether `pk` is a compressed point (`02`/`03` ‖ x) on the curve. (RustCrypto also
    /// reads 33-byte "compact" `05` points; this does not.)
    pub fn is_valid_public_key(pk: &[u8]) -> bool {
        parse(pk).is_some()
    }

    fn parse(pk: &[u8]) -> Option<sm2::PublicKey> {
        match pk {
            [2 | 3, ..] if pk.len() == PUBLIC_KEY_LEN => sm2::PublicKey::from_sec1_bytes(pk).ok(),
            _ => None,
        }
    }

    /// `x([d]P)` for scalar `d` and compressed point `p`; `None` when either is invalid.
    pub fn shared_x(d: &[u8], p: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
        let sk = sm2::SecretKey::from_slice(d).ok()?;
        let pk = parse(p)?;
        let shared = (pk.to_projective() * *sk.to_nonzero_scalar()).to_affine();
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&shared.x());
        Some(out)
    }
}

/// The default distinguishing ID of GM/T 0009 (`1234567812345678`). Note that
/// OpenSSL's default is the empty ID: pass `-sigopt distid:1234567812345678`.
pub const DEFAULT_ID: &[u8] = b"1234567812345678";

/// Maximum distinguishing-ID length: ENTL is a 16-bit count of *bits*.
pub const MAX_ID_LEN: usize = 8191;

/// An SM2 private key. Zeroized on drop; `Debug` never prints it.
#[derive(Clone)]
pub struct Sm2PrivateKey {
    /// Boxed to keep `keys::PrivateKey`'s variants of similar size.
    signing: Box<sm2::dsa::SigningKey>,
    /// `(1 + d)^−1 mod n`, computed once per key (constant-time inversion) for signing.
    d_plus_1_inv: Zeroizing<sm2::Scalar>,
    /// `ZA` for [`DEFAULT_ID`] (public), so [`Self::sign`] with the usual ID skips it.
    za_default: [u8; 32],
    public: Sm2PublicKey,
}

impl fmt::Debug for Sm2PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sm2PrivateKey").field("public", &self.public).field("secret", &"REDACTED").finish()
    }
}

impl Sm2PrivateKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Result<Self> {
        loop {
            let bytes = Zeroizing::new(rng::random_array::<32>()?);
            // Rejection sampling: out-of-range or zero scalars are retried.
            if let Ok(k) = Self::from_bytes(&bytes[..]) {
                return Ok(k);
            }
        }
    }

    /// From the 32-byte big-endian scalar `d` (1 ≤ d ≤ n−2).
    pub fn from_bytes(d: &[u8]) -> Result<Self> {
        if d.len() != 32 {
            return Err(CryptoError::InvalidKey("SM2 private key must be 32 bytes"));
        }
        // GM/T 0003.1 limits d to [1, n−2]: with d = n−1, 1 + d ≡ 0 (mod n) has no inverse
        // and signing fails. RustCrypto only rejects 0 and ≥ n.
        if bool::from(subtle::ConstantTimeEq::ct_eq(d, &N_MINUS_1[..])) {
            return Err(CryptoError::InvalidKey("SM2 private key out of range"));
        }
        let signing =
            sm2::dsa::SigningKey::from_slice("", d).map_err(|_| CryptoError::InvalidKey("SM2 private key out of range"))?;
        let public = Sm2PublicKey { point: *signing.verifying_key().as_affine() };
        // 1 + d ≠ 0 since d ≠ n − 1 (checked above); `invert` is constant-time (safegcd).
        let d_plus_1_inv = Option::<sm2::Scalar>::from((*signing.as_nonzero_scalar().as_ref() + sm2::Scalar::ONE).invert())
            .ok_or(CryptoError::InvalidKey("SM2 private key out of range"))?;
        let za_default = public.za(DEFAULT_ID)?;
        Ok(Self { signing: Box::new(signing), d_plus_1_inv: Zeroizing::new(d_plus_1_inv), za_default, public })
    }

    /// The 32-byte scalar, in a buffer zeroized on drop.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes().into())
    }

    /// From PKCS#8 DER (id-ecPublicKey with the SM2 curve OID, as OpenSSL and gmssl write).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        use pkcs8::DecodePrivateKey;
        let sk = sm2::SecretKey::from_pkcs8_der(der).map_err(|_| CryptoError::Malformed { what: "SM2 PKCS#8 private key" })?;
        Self::from_bytes(&sk.to_bytes())
    }

    /// To PKCS#8 DER, zeroized on drop.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        use pkcs8::EncodePrivateKey;
        let sk = sm2::SecretKey::from_slice(&self.to_bytes()[..]).map_err(|_| CryptoError::InvalidKey("SM2 key"))?;
        let doc = sk.to_pkcs8_der().map_err(|_| CryptoError::InvalidKey("SM2 PKCS#8 encoding"))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// The public key.
    pub fn public_key(&self) -> &Sm2PublicKey {
        &self.public
    }

    /// Sign `msg` as GM/T 0003.2: `e = SM3(ZA ‖ msg)` with `ZA` from `id`.
    pub fn sign(&self, id: &[u8], msg: &[u8]) -> Result<Sm2Signature> {
        let e = if id == DEFAULT_ID {
            let mut h = Sm3::new();
            h.update(self.za_default);
            h.update(msg);
            h.finalize().into()
        } else {
            self.public.digest(id, msg)?
        };
        self.sign_digest(&e)
    }

    /// Sign a precomputed `e = SM3(ZA ‖ M)` (32 bytes), GM/T 0003.2 §6.1 A3–A7.
    ///
    /// The nonce `k` is hedged: derived from the key, `e` and 32 fresh bytes of OS
    /// randomness (see [`Self::nonce`]), so neither a weak RNG nor a repeated `e` alone
    /// repeats it. `[k]G` is the constant-time fixed-base comb of `sm2::comb`, and
    /// `(1 + d)^−1` was computed when the key was loaded. Nothing here branches on or
    /// indexes memory by `k` or `d`; the retry conditions (`r = 0`, `r + k = n`, `s = 0`)
    /// have probability about 2^−256. `sign_digest_reference` keeps RustCrypto's
    /// `sign_prehash` path; the tests hold the two to the same curve and the vectors.
    pub fn sign_digest(&self, e: &[u8; 32]) -> Result<Sm2Signature> {
        use sm2::elliptic_curve::ops::Reduce;
        let e_scalar = <sm2::Scalar as Reduce<sm2::FieldBytes>>::reduce(&(*e).into());
        let hedge = Zeroizing::new(rng::random_array::<32>()?);
        for attempt in 0u32.. {
            let k = self.nonce(e, &hedge, attempt);
            if let Some(sig) = self.sign_with_nonce(&e_scalar, &k) {
                return Ok(sig);
            }
        }
        Err(CryptoError::Rng)
    }

    /// The same signature through RustCrypto's `sign_prehash_with_rng` (RFC 6979 nonce
    /// hedged with OS randomness, its own `[k]G` and a per-signature inversion): for
    /// tests and the benchmark's comparison.
    #[doc(hidden)]
    pub fn sign_digest_reference(&self, e: &[u8; 32]) -> Result<Sm2Signature> {
        let sig: sm2::dsa::Signature = self.signing.sign_prehash_with_rng(&mut rng::os_rng(), e).map_err(|_| CryptoError::Rng)?;
        Ok(Sm2Signature { r: sig.r_bytes().into(), s: sig.s_bytes().into() })
    }

    /// The nonce for `e`: `k = (H0 ‖ H1) mod n` read as a 512-bit big-endian integer,
    /// `Hi = SM3("KeyBridge SM2 nonce" ‖ d ‖ hedge ‖ e ‖ attempt ‖ i)`. Reducing 512
    /// bits keeps the bias below 2^−250 (as BoringSSL's hedged ECDSA nonces do); `k = 0`
    /// has the same negligible chance and `sign_with_nonce` refuses it (another attempt).
    fn nonce(&self, e: &[u8; 32], hedge: &[u8; 32], attempt: u32) -> Zeroizing<sm2::Scalar> {
        use sm2::elliptic_curve::ops::Reduce;
        let d = Zeroizing::new(self.signing.to_bytes());
        let mut h = Sm3::new();
        h.update(b"KeyBridge SM2 nonce");
        h.update(&d[..]);
        h.update(hedge);
        h.update(e);
        h.update(attempt.to_be_bytes());
        let half = |i: u8| -> Zeroizing<sm2::Scalar> {
            let mut hi = h.clone();
            hi.update([i]);
            let bytes = Zeroizing::new(hi.finalize());
            Zeroizing::new(<sm2::Scalar as Reduce<sm2::FieldBytes>>::reduce(&bytes))
        };
        // 2^256 mod n = ((2^256 − 1) mod n) + 1.
        let r256 = <sm2::Scalar as Reduce<sm2::FieldBytes>>::reduce(&[0xFFu8; 32].into()) + sm2::Scalar::ONE;
        Zeroizing::new(*half(0) * r256 + *half(1))
    }

    /// A3–A7 with a given nonce; `None` when the standard says to pick another `k`.
    fn sign_with_nonce(&self, e: &sm2::Scalar, k: &sm2::Scalar) -> Option<Sm2Signature> {
        use sm2::elliptic_curve::ops::Reduce;
        use sm2::elliptic_curve::point::AffineCoordinates;
        // A4: (x1, y1) = [k]G.
        let x1 = comb::mul_base_affine(k).x();
        // A5: r = e + x1 mod n; retry when r = 0 or r + k = n.
        let r = *e + <sm2::Scalar as Reduce<sm2::FieldBytes>>::reduce(&x1);
        if bool::from(r.is_zero() | (r + k).is_zero() | k.is_zero()) {
            return None;
        }
        // A6: s = (1 + d)^−1 · (k − r·d) mod n; retry when s = 0.
        let d = self.signing.as_nonzero_scalar().as_ref();
        let s = *self.d_plus_1_inv * (*k - r * d);
        if bool::from(s.is_zero()) {
            return None;
        }
        Some(Sm2Signature { r: r.to_bytes().into(), s: s.to_bytes().into() })
    }

    /// Decrypt a ciphertext in any supported layout (ASN.1, C1C3C2, C1C2C3, with or
    /// without `04`). The plaintext is zeroized on drop.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let candidates = Sm2Ciphertext::candidates(ciphertext)?;
        // The readings of one input share C1, so [d]C1 is computed once per distinct C1.
        let mut shared: Option<([u8; 64], Zeroizing<[u8; 64]>)> = None;
        for ct in &candidates {
            let c1 = ct.c1_xy();
            let x2y2 = match &shared {
                Some((k, v)) if *k == c1 => v.clone(),
                _ => {
                    let v = self.shared_point(ct)?;
                    shared = Some((c1, v.clone()));
                    v
                }
            };
            if let Ok(pt) = open(&x2y2, ct) {
                return Ok(pt);
            }
        }
        Err(CryptoError::DecryptFailed)
    }

    /// Decrypt a parsed ciphertext (GM/T 0003.4 §7, B1–B7).
    pub fn decrypt_ciphertext(&self, ct: &Sm2Ciphertext) -> Result<Zeroizing<Vec<u8>>> {
        open(&*self.shared_point(ct)?, ct)
    }

    /// B1–B3: check C1 is on the curve (the cofactor is 1, so that is all B2 needs) and
    /// compute `[d]C1 = (x2, y2)`.
    fn shared_point(&self, ct: &Sm2Ciphertext) -> Result<Zeroizing<[u8; 64]>> {
        let c1 = ct.point()?;
        let p = (sm2::ProjectivePoint::from(c1) * *self.signing.as_nonzero_scalar().as_ref()).to_affine();
        affine_xy(&p).ok_or(CryptoError::DecryptFailed)
    }
}

/// GM/T 0003.2 B1–B5 and the target of B7: `(s, t, v)` with `r, s ∈ [1, n − 1]`,
/// `t = r + s mod n ≠ 0` and `v = (r − e) mod n` (B7 holds iff `x1 ≡ v (mod n)`), or
/// `BadSignature`.
fn verification_scalars(e: &[u8; 32], sig: &Sm2Signature) -> Result<(sm2::Scalar, sm2::Scalar, sm2::Scalar)> {
    use sm2::elliptic_curve::PrimeField;
    use sm2::elliptic_curve::ops::Reduce;
    let scalar = |b: &[u8; 32]| Option::<sm2::Scalar>::from(sm2::Scalar::from_repr((*b).into()));
    let (Some(r), Some(s)) = (scalar(&sig.r), scalar(&sig.s)) else { return Err(CryptoError::BadSignature) };
    let t = r + s;
    if bool::from(r.is_zero() | s.is_zero() | t.is_zero()) {
        return Err(CryptoError::BadSignature);
    }
    let e = <sm2::Scalar as Reduce<sm2::FieldBytes>>::reduce(&(*e).into());
    Ok((s, t, r - e))
}

/// A uniformly random scalar in `[1, n − 1]` from the OS CSPRNG (rejection sampling).
fn random_scalar() -> Result<Zeroizing<sm2::Scalar>> {
    use sm2::elliptic_curve::PrimeField;
    loop {
        let bytes = Zeroizing::new(rng::random_array::<32>()?);
        if let Some(k) = Option::<sm2::Scalar>::from(sm2::Scalar::from_repr((*bytes).into()))
            && !bool::from(k.is_zero())
        {
            return Ok(Zeroizing::new(k));
        }
    }
}

/// `x ‖ y` of an affine point, or `None` for the point at infinity.
fn affine_xy(p: &sm2::AffinePoint) -> Option<Zeroizing<[u8; 64]>> {
    let enc = p.to_sec1_point(false);
    let b = enc.as_bytes();
    if b.len() != 65 {
        return None;
    }
    let mut out = Zeroizing::new([0u8; 64]);
    out.copy_from_slice(&b[1..]);
    Some(out)
}

/// `data ^= KDF(x2 ‖ y2, len)` (GM/T 0003.4 §5.4.3). Returns false when the key stream
/// was all zero, which the standard requires to be rejected.
fn kdf_xor(x2y2: &[u8; 64], data: &mut [u8]) -> bool {
    let mut any = 0u8;
    for (i, chunk) in data.chunks_mut(32).enumerate() {
        let mut h = Sm3::new();
        h.update(&x2y2[..]);
        h.update(((i + 1) as u32).to_be_bytes());
        let t = h.finalize();
        for (d, k) in chunk.iter_mut().zip(t.iter()) {
            any |= *k;
            *d ^= *k;
        }
    }
    any != 0
}

/// `C3 = SM3(x2 ‖ M ‖ y2)`.
fn c3_of(x2y2: &[u8; 64], msg: &[u8]) -> [u8; 32] {
    let mut h = Sm3::new();
    h.update(&x2y2[..32]);
    h.update(msg);
    h.update(&x2y2[32..]);
    h.finalize().into()
}

/// B4–B7: unmask C2 and check C3 in constant time.
fn open(x2y2: &[u8; 64], ct: &Sm2Ciphertext) -> Result<Zeroizing<Vec<u8>>> {
    let mut m = Zeroizing::new(ct.c2.clone());
    let nonzero = kdf_xor(x2y2, &mut m);
    let u = c3_of(x2y2, &m);
    if !nonzero || !bool::from(subtle::ConstantTimeEq::ct_eq(&u[..], &ct.c3[..])) {
        return Err(CryptoError::DecryptFailed);
    }
    Ok(m)
}

/// An SM2 public key (a point on the SM2 curve).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sm2PublicKey {
    point: sm2::AffinePoint,
}

impl fmt::Debug for Sm2PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_uncompressed();
        write!(f, "Sm2PublicKey({}…)", hex::encode(&b[1..9]))
    }
}

impl Sm2PublicKey {
    /// From SEC1 bytes: `04 ‖ x ‖ y` (65), compressed `02/03 ‖ x` (33), or bare `x ‖ y` (64)
    /// as many Chinese libraries emit.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self> {
        let owned;
        let b = if bytes.len() == 64 {
            owned = [&[0x04u8][..], bytes].concat();
            &owned[..]
        } else {
            bytes
        };
        let pk = sm2::PublicKey::from_sec1_bytes(b).map_err(|_| CryptoError::InvalidKey("not a point on the SM2 curve"))?;
        Ok(Self { point: *pk.as_affine() })
    }

    /// `04 ‖ x ‖ y`.
    pub fn to_uncompressed(&self) -> [u8; 65] {
        let p = self.point.to_sec1_point(false);
        let mut out = [0u8; 65];
        out.copy_from_slice(p.as_bytes());
        out
    }

    /// `x ‖ y` without the prefix.
    pub fn to_xy(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(&self.to_uncompressed()[1..]);
        out
    }

    /// `ZA = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA)` for any byte-string ID.
    pub fn za(&self, id: &[u8]) -> Result<[u8; 32]> {
        if id.len() > MAX_ID_LEN {
            return Err(CryptoError::InvalidParameter("SM2 ID longer than 8191 bytes"));
        }
        let entl = ((id.len() * 8) as u16).to_be_bytes();
        let mut h = Sm3::new();
        h.update(entl);
        h.update(id);
        h.update(CURVE_A);
        h.update(CURVE_B);
        h.update(GX);
        h.update(GY);
        h.update(self.to_xy());
        Ok(h.finalize().into())
    }

    /// `e = SM3(ZA ‖ msg)`.
    pub fn digest(&self, id: &[u8], msg: &[u8]) -> Result<[u8; 32]> {
        let mut h = self.digest_hasher(id)?;
        h.update(msg);
        Ok(h.finalize().into())
    }

    /// An SM3 hasher already fed with `ZA`: feed the message in chunks, then
    /// [`Sm2PrivateKey::sign_digest`] / [`Sm2PublicKey::verify_digest`] the result.
    pub fn digest_hasher(&self, id: &[u8]) -> Result<Sm3> {
        let mut h = Sm3::new();
        h.update(self.za(id)?);
        Ok(h)
    }

    /// Verify a signature over `msg` with the given ID.
    pub fn verify(&self, id: &[u8], msg: &[u8], sig: &Sm2Signature) -> Result<()> {
        self.verify_digest(&self.digest(id, msg)?, sig)
    }

    /// Verify a signature over a precomputed `e` (GM/T 0003.2 §7.1, B1–B7).
    ///
    /// Everything here is public (the key, the digest, the signature), so the point
    /// computation `[s]G + [t]P` is *variable-time*: our own field and Jacobian
    /// arithmetic with an interleaved wNAF over a precomputed table of `G`'s odd
    /// multiples and a per-call table of `P`'s (`sm2::verify`), and the final
    /// `(e + x1) mod n = r` compared projectively, without an inversion.
    /// `verify_digest_reference` keeps RustCrypto's constant-time `verify_prehash`, and
    /// the tests and the `sm2_verify` fuzz target hold the two to the same answers.
    pub fn verify_digest(&self, e: &[u8; 32], sig: &Sm2Signature) -> Result<()> {
        let (s, t, v) = verification_scalars(e, sig)?;
        // B6–B7: (x1, y1) = [s]G + [t]P is not the point at infinity and
        // (e + x1) mod n = r, i.e. x1 ≡ r − e (mod n).
        if verify::check(&self.point, &s.to_bytes().into(), &t.to_bytes().into(), &v.to_bytes().into()) {
            Ok(())
        } else {
            Err(CryptoError::BadSignature)
        }
    }

    /// The previous fast path, RustCrypto's variable-time
    /// `mul_by_generator_and_mul_add_vartime` over its complete projective formulas: for
    /// the benchmark's before/after row and the tests.
    #[doc(hidden)]
    pub fn verify_digest_rustcrypto_vartime(&self, e: &[u8; 32], sig: &Sm2Signature) -> Result<()> {
        use sm2::elliptic_curve::ops::{MulByGeneratorVartime, Reduce};
        use sm2::elliptic_curve::point::AffineCoordinates;
        let (s, t, v) = verification_scalars(e, sig)?;
        let point = sm2::ProjectivePoint::mul_by_generator_and_mul_add_vartime(&s, &t, &sm2::ProjectivePoint::from(self.point));
        if bool::from(sm2::elliptic_curve::group::Group::is_identity(&point)) {
            return Err(CryptoError::BadSignature);
        }
        let x1 = <sm2::Scalar as Reduce<sm2::FieldBytes>>::reduce(&point.to_affine().x());
        if x1 == v { Ok(()) } else { Err(CryptoError::BadSignature) }
    }

    /// The same check through RustCrypto's constant-time `verify_prehash` (for tests and
    /// the benchmark's comparison).
    #[doc(hidden)]
    pub fn verify_digest_reference(&self, e: &[u8; 32], sig: &Sm2Signature) -> Result<()> {
        let vk = sm2::dsa::VerifyingKey::from_affine("", self.point).map_err(|_| CryptoError::InvalidKey("SM2 public key"))?;
        let s = sm2::dsa::Signature::from_scalars(sig.r, sig.s).map_err(|_| CryptoError::BadSignature)?;
        vk.verify_prehash(e, &s).map_err(|_| CryptoError::BadSignature)
    }

    /// Encrypt `msg` (GM/T 0003.4 §6, A1–A8). Returns the parsed ciphertext; pick a
    /// layout with [`Sm2Ciphertext::encode`] or [`Sm2Ciphertext::to_der`].
    pub fn encrypt(&self, msg: &[u8]) -> Result<Sm2Ciphertext> {
        if msg.is_empty() {
            return Err(CryptoError::InvalidParameter("SM2 cannot encrypt an empty message"));
        }
        loop {
            // A1–A2: random k in [1, n − 1] and C1 = [k]G (the constant-time comb).
            let k = random_scalar()?;
            let c1 = affine_xy(&comb::mul_base_affine(&k)).ok_or(CryptoError::Rng)?;
            // A3: the cofactor is 1 and P_B is a valid non-identity point by construction.
            // A4: [k]P_B = (x2, y2).
            let p = (sm2::ProjectivePoint::from(self.point) * *k).to_affine();
            let x2y2 = affine_xy(&p).ok_or(CryptoError::InvalidKey("SM2 public key"))?;
            // A5–A6: C2 = M ⊕ KDF(x2 ‖ y2); an all-zero key stream means pick another k.
            let mut c2 = msg.to_vec();
            if !kdf_xor(&x2y2, &mut c2) {
                continue;
            }
            // A7: C3 = SM3(x2 ‖ M ‖ y2).
            let c3 = c3_of(&x2y2, msg);
            let mut x = [0u8; 32];
            let mut y = [0u8; 32];
            x.copy_from_slice(&c1[..32]);
            y.copy_from_slice(&c1[32..]);
            return Ok(Sm2Ciphertext { x, y, c3, c2 });
        }
    }
}

/// n − 1, the one scalar below n that is not a valid SM2 private key.
const N_MINUS_1: [u8; 32] = hex32("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54122");

// Curve parameters (GM/T 0003.5), needed for ZA.
const CURVE_A: [u8; 32] = hex32("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC");
const CURVE_B: [u8; 32] = hex32("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93");
const GX: [u8; 32] = hex32("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7");
const GY: [u8; 32] = hex32("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0");

const fn hex32(s: &str) -> [u8; 32] {
    const fn nib(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => 0,
        }
    }
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nib(b[2 * i]) << 4) | nib(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// An SM2 signature `(r, s)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sm2Signature {
    /// `r`, 32 bytes big-endian.
    pub r: [u8; 32],
    /// `s`, 32 bytes big-endian.
    pub s: [u8; 32],
}

#[derive(der::Sequence)]
struct DerSig<'a> {
    r: der::asn1::UintRef<'a>,
    s: der::asn1::UintRef<'a>,
}

fn uint_to_32(u: &der::asn1::UintRef<'_>) -> Result<[u8; 32]> {
    let b = u.as_bytes();
    if b.len() > 32 {
        return Err(CryptoError::Malformed { what: "SM2 signature integer" });
    }
    let mut out = [0u8; 32];
    out[32 - b.len()..].copy_from_slice(b);
    Ok(out)
}

impl Sm2Signature {
    /// `r ‖ s`, 64 bytes.
    pub fn to_raw(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.r);
        out[32..].copy_from_slice(&self.s);
        out
    }

    /// From `r ‖ s`.
    pub fn from_raw(b: &[u8]) -> Result<Self> {
        if b.len() != 64 {
            return Err(CryptoError::Malformed { what: "SM2 raw signature (want 64 bytes)" });
        }
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&b[..32]);
        s.copy_from_slice(&b[32..]);
        Ok(Self { r, s })
    }

    /// DER `SEQUENCE { r INTEGER, s INTEGER }` (GM/T 0009).
    pub fn to_der(&self) -> Vec<u8> {
        let r = der::asn1::UintRef::new(&self.r);
        let s = der::asn1::UintRef::new(&self.s);
        match (r, s) {
            (Ok(r), Ok(s)) => DerSig { r, s }.to_der().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// From DER. Strict: trailing bytes are rejected.
    pub fn from_der(b: &[u8]) -> Result<Self> {
        let d = DerSig::from_der(b).map_err(|_| CryptoError::Malformed { what: "SM2 DER signature" })?;
        Ok(Self { r: uint_to_32(&d.r)?, s: uint_to_32(&d.s)? })
    }

    /// From either encoding: 64 bytes is raw, anything else must be DER.
    pub fn from_any(b: &[u8]) -> Result<Self> {
        if b.len() == 64 { Self::from_raw(b) } else { Self::from_der(b) }
    }
}

/// Byte layouts of an SM2 ciphertext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CiphertextLayout {
    /// `C1 ‖ C3 ‖ C2`: GM/T 0003-2012 and later, the default.
    C1C3C2,
    /// `C1 ‖ C2 ‖ C3`: the 2010 draft, still emitted by old middleware.
    C1C2C3,
}

/// A parsed SM2 ciphertext: `C1 = (x, y)`, `C3 = SM3(x2 ‖ M ‖ y2)`, `C2 = M ⊕ KDF`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sm2Ciphertext {
    /// C1 x-coordinate.
    pub x: [u8; 32],
    /// C1 y-coordinate.
    pub y: [u8; 32],
    /// C3, the SM3 hash.
    pub c3: [u8; 32],
    /// C2, the masked message (same length as the plaintext).
    pub c2: Vec<u8>,
}

impl fmt::Debug for Sm2Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sm2Ciphertext {{ c2_len: {} }}", self.c2.len())
    }
}

/// GM/T 0009 §7.2 `SM2Cipher ::= SEQUENCE { XCoordinate INTEGER, YCoordinate INTEGER,
/// HASH OCTET STRING (SIZE(32)), CipherText OCTET STRING }`.
#[derive(der::Sequence)]
struct DerCipher<'a> {
    x: der::asn1::UintRef<'a>,
    y: der::asn1::UintRef<'a>,
    hash: &'a OctetStringRef,
    ciphertext: &'a OctetStringRef,
}

impl Sm2Ciphertext {
    /// Encode in a raw layout, with or without the leading `04`.
    pub fn encode(&self, layout: CiphertextLayout, with_04: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(97 + self.c2.len());
        if with_04 {
            out.push(0x04);
        }
        out.extend_from_slice(&self.x);
        out.extend_from_slice(&self.y);
        match layout {
            CiphertextLayout::C1C3C2 => {
                out.extend_from_slice(&self.c3);
                out.extend_from_slice(&self.c2);
            }
            CiphertextLayout::C1C2C3 => {
                out.extend_from_slice(&self.c2);
                out.extend_from_slice(&self.c3);
            }
        }
        out
    }

    /// GM/T 0009 ASN.1 DER.
    pub fn to_der(&self) -> Result<Vec<u8>> {
        let bad = |_| CryptoError::Malformed { what: "SM2 ciphertext" };
        DerCipher {
            x: der::asn1::UintRef::new(&self.x).map_err(bad)?,
            y: der::asn1::UintRef::new(&self.y).map_err(bad)?,
            hash: OctetStringRef::new(&self.c3).map_err(bad)?,
            ciphertext: OctetStringRef::new(&self.c2).map_err(bad)?,
        }
        .to_der()
        .map_err(bad)
    }

    /// Parse GM/T 0009 DER.
    pub fn from_der(b: &[u8]) -> Result<Self> {
        let bad = CryptoError::Malformed { what: "SM2 ASN.1 ciphertext" };
        let d = DerCipher::from_der(b).map_err(|_| bad.clone())?;
        let c3: [u8; 32] = d.hash.as_bytes().try_into().map_err(|_| bad.clone())?;
        if d.ciphertext.as_bytes().is_empty() {
            return Err(bad);
        }
        let ct = Self { x: uint_to_32(&d.x)?, y: uint_to_32(&d.y)?, c3, c2: d.ciphertext.as_bytes().to_vec() };
        ct.check_point()?;
        Ok(ct)
    }

    /// Parse a raw layout; the `04` prefix is detected (and the point checked).
    pub fn from_raw(b: &[u8], layout: CiphertextLayout) -> Result<Self> {
        let bad = CryptoError::Malformed { what: "SM2 raw ciphertext" };
        let mut last = bad.clone();
        for skip in [1usize, 0] {
            if skip == 1 && b.first() != Some(&0x04) {
                continue;
            }
            let body = &b[skip..];
            if body.len() < 97 {
                continue;
            }
            let (x, rest) = body.split_at(32);
            let (y, rest) = rest.split_at(32);
            let (c3, c2) = match layout {
                CiphertextLayout::C1C3C2 => {
                    let (c3, c2) = rest.split_at(32);
                    (c3, c2)
                }
                CiphertextLayout::C1C2C3 => {
                    let (c2, c3) = rest.split_at(rest.len() - 32);
                    (c3, c2)
                }
            };
            let ct = Self {
                x: x.try_into().map_err(|_| bad.clone())?,
                y: y.try_into().map_err(|_| bad.clone())?,
                c3: c3.try_into().map_err(|_| bad.clone())?,
                c2: c2.to_vec(),
            };
            match ct.check_point() {
                Ok(()) => return Ok(ct),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Every plausible reading of `b`, most likely first: DER, then C1C3C2, then C1C2C3.
    pub fn candidates(b: &[u8]) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        if b.first() == Some(&0x30)
            && let Ok(c) = Self::from_der(b)
        {
            out.push(c);
        }
        for layout in [CiphertextLayout::C1C3C2, CiphertextLayout::C1C2C3] {
            if let Ok(c) = Self::from_raw(b, layout)
                && !out.contains(&c)
            {
                out.push(c);
            }
        }
        if out.is_empty() {
            return Err(CryptoError::Malformed { what: "SM2 ciphertext (not ASN.1, C1C3C2 or C1C2C3)" });
        }
        Ok(out)
    }

    fn c1_xy(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.x);
        out[32..].copy_from_slice(&self.y);
        out
    }

    /// C1 as a curve point; an error unless it is on the curve.
    fn point(&self) -> Result<sm2::AffinePoint> {
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..33].copy_from_slice(&self.x);
        sec1[33..].copy_from_slice(&self.y);
        let p = sm2::Sec1Point::from_bytes(sec1).map_err(|_| CryptoError::Malformed { what: "SM2 C1 point" })?;
        Option::<sm2::AffinePoint>::from(sm2::AffinePoint::from_sec1_point(&p))
            .ok_or(CryptoError::Malformed { what: "SM2 C1 is not on the curve" })
    }

    fn check_point(&self) -> Result<()> {
        self.point().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Sm2PrivateKey {
        Sm2PrivateKey::generate().unwrap_or_else(|_| unreachable!())
    }

    /// The fast signing path with the published nonce gives the published signature
    /// (GM/T 0003.5 / GB/T 32918.5 example), and a zero nonce is refused.
    #[test]
    fn sign_with_published_nonce_gives_published_signature() {
        use sm2::elliptic_curve::PrimeField;
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/vectors/sm2.json")).unwrap_or_else(|_| unreachable!());
        let hex32 = |s: &serde_json::Value| -> [u8; 32] {
            hex::decode(s.as_str().unwrap_or_default()).unwrap_or_default().try_into().unwrap_or_else(|_| unreachable!())
        };
        let key = Sm2PrivateKey::from_bytes(&hex32(&v["private_key"])).unwrap_or_else(|_| unreachable!());
        let sig = &v["signature"];
        let e = hex32(&sig["e"]);
        let scalar =
            |b: [u8; 32]| Option::<sm2::Scalar>::from(sm2::Scalar::from_repr(b.into())).unwrap_or_else(|| unreachable!());
        let e_scalar = scalar(e);
        let k = scalar(hex32(&sig["k"]));
        let got = key.sign_with_nonce(&e_scalar, &k).unwrap_or_else(|| unreachable!());
        assert_eq!(got, Sm2Signature { r: hex32(&sig["r"]), s: hex32(&sig["s"]) });
        // k = 0 must be refused ([0]G is the identity, whose "x" would read as 0).
        assert_eq!(key.sign_with_nonce(&e_scalar, &sm2::Scalar::ZERO), None);
        // The reference path verifies what the fast path signs with this key.
        let fast = key.sign_digest(&e).unwrap_or_else(|_| unreachable!());
        assert!(key.public_key().verify_digest_reference(&e, &fast).is_ok());
        assert_ne!(fast, got, "the nonce is not the published one");
    }

    /// Hedged nonces: the same digest signed twice gives two signatures (fresh OS
    /// randomness), and the derivation depends on every input.
    #[test]
    fn nonces_are_hedged_and_depend_on_every_input() {
        let k = key();
        let e = [7u8; 32];
        let a = k.sign_digest(&e).unwrap_or_else(|_| unreachable!());
        let b = k.sign_digest(&e).unwrap_or_else(|_| unreachable!());
        assert_ne!(a, b);
        let h = [1u8; 32];
        let base = *k.nonce(&e, &h, 0);
        assert_eq!(*k.nonce(&e, &h, 0), base);
        assert_ne!(*k.nonce(&[8u8; 32], &h, 0), base);
        assert_ne!(*k.nonce(&e, &[2u8; 32], 0), base);
        assert_ne!(*k.nonce(&e, &h, 1), base);
        assert_ne!(*key().nonce(&e, &h, 0), base);
    }

    #[test]
    fn sign_verify_any_id() {
        let k = key();
        for id in [DEFAULT_ID, b"", b"ALICE123@YAHOO.COM", &[0xffu8, 0x00, 0x80][..]] {
            let sig = k.sign(id, b"hello").unwrap_or_else(|_| unreachable!());
            assert!(k.public_key().verify(id, b"hello", &sig).is_ok());
            assert_eq!(k.public_key().verify(b"other", b"hello", &sig), Err(CryptoError::BadSignature));
            assert_eq!(k.public_key().verify(id, b"hellO", &sig), Err(CryptoError::BadSignature));
            let again = Sm2Signature::from_der(&sig.to_der()).unwrap_or_else(|_| unreachable!());
            assert_eq!(again, sig);
            assert_eq!(Sm2Signature::from_any(&sig.to_raw()), Ok(sig));
        }
        assert!(k.public_key().za(&vec![0u8; MAX_ID_LEN + 1]).is_err());
    }

    #[test]
    fn encrypt_every_layout() {
        let k = key();
        let ct = k.public_key().encrypt(b"price: 1,234,567.00").unwrap_or_else(|_| unreachable!());
        let mut encodings = vec![ct.to_der().unwrap_or_default()];
        for layout in [CiphertextLayout::C1C3C2, CiphertextLayout::C1C2C3] {
            for p in [true, false] {
                encodings.push(ct.encode(layout, p));
            }
        }
        for e in encodings {
            let pt = k.decrypt(&e).unwrap_or_else(|err| panic!("{err}"));
            assert_eq!(&pt[..], b"price: 1,234,567.00");
        }
    }

    #[test]
    fn tampering_and_wrong_key_fail_cleanly() {
        let k = key();
        let other = key();
        let ct = k.public_key().encrypt(b"secret").unwrap_or_else(|_| unreachable!());
        let raw = ct.encode(CiphertextLayout::C1C3C2, true);
        assert_eq!(other.decrypt(&raw).err(), Some(CryptoError::DecryptFailed));
        let mut t = raw.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(k.decrypt(&t).err(), Some(CryptoError::DecryptFailed));
        assert!(matches!(k.decrypt(&raw[..50]), Err(CryptoError::Malformed { .. })));
        assert!(matches!(k.decrypt(&[]), Err(CryptoError::Malformed { .. })));
        assert!(k.public_key().encrypt(b"").is_err());
    }

    #[test]
    fn public_key_forms() {
        let k = key();
        let pk = k.public_key();
        assert_eq!(Sm2PublicKey::from_sec1(&pk.to_uncompressed()).ok(), Some(*pk));
        assert_eq!(Sm2PublicKey::from_sec1(&pk.to_xy()).ok(), Some(*pk));
        let mut bad = pk.to_uncompressed();
        bad[64] ^= 1;
        assert!(Sm2PublicKey::from_sec1(&bad).is_err());
        let der = k.to_pkcs8_der().unwrap_or_else(|_| unreachable!());
        let back = Sm2PrivateKey::from_pkcs8_der(&der).unwrap_or_else(|_| unreachable!());
        assert_eq!(back.public_key(), pk);
        assert!(!format!("{k:?}").contains(&hex::encode(&k.to_bytes()[..4])));
    }
}
