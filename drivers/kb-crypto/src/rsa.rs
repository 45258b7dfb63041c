//! RSA for international certificates: PKCS#1 v1.5 and PSS signatures, PKCS#1 v1.5
//! and OAEP encryption. RustCrypto `rsa`; private-key operations are blinded.
//!
//! Note RUSTSEC-2023-0071 (Marvin): RustCrypto's RSA decryption is not fully
//! constant-time. KeyBridge only decrypts with RSA keys at the holder's own request
//! (bid opening), never as an oracle for remote parties.

use crate::{CryptoError, HashAlgorithm, Result};
use rsa::{Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, Pss};
pub use rsa::{RsaPrivateKey, RsaPublicKey};
use zeroize::Zeroizing;

/// RSA encryption padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaPadding {
    /// PKCS#1 v1.5 (what most CMS envelopes still use).
    Pkcs1v15,
    /// OAEP with the given hash for both the label and MGF1.
    Oaep(HashAlgorithm),
}

fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

macro_rules! with_hash {
    ($h:expr, |$d:ident| $body:expr) => {
        match $h {
            HashAlgorithm::Sha1 => {
                type $d = sha1::Sha1;
                $body
            }
            HashAlgorithm::Sha256 => {
                type $d = sha2::Sha256;
                $body
            }
            HashAlgorithm::Sha384 => {
                type $d = sha2::Sha384;
                $body
            }
            HashAlgorithm::Sha512 => {
                type $d = sha2::Sha512;
                $body
            }
            other => return Err(CryptoError::Unsupported(format!("RSA with {other}"))),
        }
    };
}

/// A fresh RSA key (2048, 3072 or 4096 bits).
pub fn generate(bits: usize) -> Result<RsaPrivateKey> {
    if !matches!(bits, 2048 | 3072 | 4096) {
        return Err(CryptoError::InvalidParameter("RSA key size must be 2048, 3072 or 4096"));
    }
    RsaPrivateKey::new(&mut rng(), bits).map_err(|_| CryptoError::Rng)
}

/// Sign a digest with PKCS#1 v1.5 (`pss == false`) or PSS (salt = hash length).
pub fn sign_digest(key: &RsaPrivateKey, hash: HashAlgorithm, pss: bool, digest: &[u8]) -> Result<Vec<u8>> {
    if digest.len() != hash.output_len() {
        return Err(CryptoError::InvalidParameter("digest length does not match the hash"));
    }
    let r = with_hash!(hash, |D| if pss {
        key.sign_with_rng(&mut rng(), Pss::<D>::new(), digest)
    } else {
        key.sign_with_rng(&mut rng(), Pkcs1v15Sign::new::<D>(), digest)
    });
    r.map_err(|_| CryptoError::InvalidKey("RSA signing failed"))
}

/// Verify a PKCS#1 v1.5 or PSS signature over a digest.
pub fn verify_digest(key: &RsaPublicKey, hash: HashAlgorithm, pss: bool, digest: &[u8], sig: &[u8]) -> Result<()> {
    let r = with_hash!(hash, |D| if pss {
        key.verify(Pss::<D>::new(), digest, sig)
    } else {
        key.verify(Pkcs1v15Sign::new::<D>(), digest, sig)
    });
    r.map_err(|_| CryptoError::BadSignature)
}

/// Encrypt a short message (a content key).
pub fn encrypt(key: &RsaPublicKey, padding: RsaPadding, msg: &[u8]) -> Result<Vec<u8>> {
    let r = match padding {
        RsaPadding::Pkcs1v15 => key.encrypt(&mut rng(), Pkcs1v15Encrypt, msg),
        RsaPadding::Oaep(h) => with_hash!(h, |D| key.encrypt(&mut rng(), Oaep::<D>::new(), msg)),
    };
    r.map_err(|_| CryptoError::InvalidParameter("message too long for this RSA key"))
}

/// Decrypt (blinded).
pub fn decrypt(key: &RsaPrivateKey, padding: RsaPadding, ct: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let r = match padding {
        RsaPadding::Pkcs1v15 => key.decrypt_blinded(&mut rng(), Pkcs1v15Encrypt, ct),
        RsaPadding::Oaep(h) => {
            with_hash!(h, |D| key.decrypt_blinded(&mut rng(), Oaep::<D>::new(), ct))
        }
    };
    r.map(Zeroizing::new).map_err(|_| CryptoError::DecryptFailed)
}
