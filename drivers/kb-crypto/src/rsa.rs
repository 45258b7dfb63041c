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

/// The DER `DigestInfo` of a digest (RFC 8017 section 9.2, note 1): what a device that
/// pads PKCS#1 v1.5 itself (a smart card's PSO:CDS, PKCS#11 `CKM_RSA_PKCS`) is given to sign.
pub fn digest_info(hash: HashAlgorithm, digest: &[u8]) -> Result<Vec<u8>> {
    const SHA2: [u8; 19] =
        [0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];
    let prefix: Vec<u8> = match hash {
        HashAlgorithm::Sha1 => vec![0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2B, 0x0E, 0x03, 0x02, 0x1A, 0x05, 0x00, 0x04, 0x14],
        // SHA-256/384/512 differ in the outer length, the OID's last byte and the digest length.
        HashAlgorithm::Sha256 => SHA2.to_vec(),
        HashAlgorithm::Sha384 => {
            let mut p = SHA2;
            p[1] = 0x41;
            p[14] = 0x02;
            p[18] = 0x30;
            p.to_vec()
        }
        HashAlgorithm::Sha512 => {
            let mut p = SHA2;
            p[1] = 0x51;
            p[14] = 0x03;
            p[18] = 0x40;
            p.to_vec()
        }
        other => return Err(CryptoError::Unsupported(format!("RSA PKCS#1 v1.5 with {other}"))),
    };
    if digest.len() != hash.output_len() {
        return Err(CryptoError::InvalidParameter("digest length does not match the hash"));
    }
    Ok([&prefix[..], digest].concat())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The DigestInfo prefixes as RFC 8017 section 9.2 note 1 prints them.
    #[test]
    fn digest_info_matches_rfc_8017() {
        for (h, prefix) in [
            (HashAlgorithm::Sha1, "3021300906052b0e03021a05000414"),
            (HashAlgorithm::Sha256, "3031300d060960864801650304020105000420"),
            (HashAlgorithm::Sha384, "3041300d060960864801650304020205000430"),
            (HashAlgorithm::Sha512, "3051300d060960864801650304020305000440"),
        ] {
            let d = vec![0xAB; h.output_len()];
            assert_eq!(hex::encode(digest_info(h, &d).unwrap()), format!("{prefix}{}", hex::encode(&d)), "{h}");
            assert!(digest_info(h, &d[1..]).is_err());
        }
        assert!(digest_info(HashAlgorithm::Sm3, &[0; 32]).is_err());
    }
}
