//! ECDSA on NIST P-256 (RustCrypto `p256`), DER-encoded signatures as in X.509 and CMS.

use crate::{CryptoError, Result};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use signature::hazmat::{PrehashVerifier, RandomizedPrehashSigner};

pub use p256::{PublicKey as P256PublicKey, SecretKey as P256SecretKey};

/// A fresh P-256 key.
pub fn generate() -> Result<P256SecretKey> {
    loop {
        let b = zeroize::Zeroizing::new(crate::rng::random_array::<32>()?);
        if let Ok(k) = P256SecretKey::from_slice(&b[..]) {
            return Ok(k);
        }
    }
}

/// Sign a digest (any length; truncated per FIPS 186). Returns DER.
pub fn sign_digest(key: &P256SecretKey, digest: &[u8]) -> Result<Vec<u8>> {
    let sk = SigningKey::from(key);
    let sig: Signature =
        sk.sign_prehash_with_rng(&mut crate::rng::os_rng(), digest).map_err(|_| CryptoError::InvalidParameter("ECDSA digest"))?;
    Ok(sig.to_der().as_bytes().to_vec())
}

/// Verify a DER (or raw 64-byte `r ‖ s`) signature over a digest.
pub fn verify_digest(key: &P256PublicKey, digest: &[u8], sig: &[u8]) -> Result<()> {
    let vk = VerifyingKey::from(key);
    let s = if sig.len() == 64 { Signature::from_slice(sig) } else { Signature::from_der(sig) }
        .map_err(|_| CryptoError::BadSignature)?;
    vk.verify_prehash(digest, &s).map_err(|_| CryptoError::BadSignature)
}
