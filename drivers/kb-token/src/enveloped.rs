//! SM2 enveloped keys: how a CA's key-management centre delivers the encryption key pair
//! of an SM2 dual certificate to a medium (GM/T 0009-2012 §7.4, also GB/T 35276-2017).
//!
//! ```text
//! SM2EnvelopedKey ::= SEQUENCE {
//!     symAlgID                AlgorithmIdentifier,  -- SM4-ECB, 1.2.156.10197.1.104.1
//!     symEncryptedKey         SM2Cipher,            -- the SM4 key, SM2-encrypted to the
//!                                                   -- container's signing public key
//!     Sm2PublicKey            SM2PublicKey,         -- BIT STRING 04 ‖ X ‖ Y
//!     Sm2EncryptedPrivateKey  BIT STRING }          -- SM4-ECB(d), d as 32 bytes
//! ```
//!
//! A plain value with no I/O: [`Sm2EnvelopedKey::seal`] is the CA's side,
//! [`Sm2EnvelopedKey::open`] the medium's — it runs only inside a medium's implementation
//! of [`crate::Session::import_enveloped_key`], with the signing private key the medium
//! holds, so the encryption private key exists in the clear nowhere else.

use crate::{Result, TokenError};
use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use der::{Decode, Encode, Sequence};
use kb_crypto::sm2::{Sm2Ciphertext, Sm2PrivateKey, Sm2PublicKey};
use kb_crypto::sm4::Sm4;
use zeroize::Zeroizing;

/// SM4 in ECB mode (GM/T 0006): the only `symAlgID` GM/T 0009 envelopes use.
pub const SM4_ECB: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.104.1");

/// Largest DER envelope accepted (a real one is about 250 bytes).
pub const MAX_DER_LEN: usize = 1024;

#[derive(Sequence)]
struct AlgorithmIdentifier<'a> {
    algorithm: ObjectIdentifier,
    parameters: Option<AnyRef<'a>>,
}

#[derive(Sequence)]
struct Wire<'a> {
    sym_alg_id: AlgorithmIdentifier<'a>,
    sym_encrypted_key: AnyRef<'a>,
    public_key: BitStringRef<'a>,
    encrypted_private_key: BitStringRef<'a>,
}

/// An SM2 encryption key pair sealed to a signing public key (GM/T 0009 `SM2EnvelopedKey`).
#[derive(Clone, PartialEq, Eq)]
pub struct Sm2EnvelopedKey {
    /// `symEncryptedKey`: the 16-byte SM4 key, SM2-encrypted to the protection (signing) key.
    pub encrypted_key: Sm2Ciphertext,
    /// `Sm2PublicKey`: the encryption key pair's public key.
    pub public_key: Sm2PublicKey,
    /// `Sm2EncryptedPrivateKey`: the 32-byte private key under SM4-ECB (two blocks).
    pub encrypted_private_key: [u8; 32],
}

impl std::fmt::Debug for Sm2EnvelopedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sm2EnvelopedKey").field("public_key", &self.public_key).finish_non_exhaustive()
    }
}

fn invalid(why: impl Into<String>) -> TokenError {
    TokenError::EnvelopedKey(why.into())
}

/// SM4-ECB over exactly two blocks, no padding (the 32-byte private key).
fn ecb(key: &[u8; 16], data: &[u8; 32], encrypt: bool) -> Zeroizing<[u8; 32]> {
    let c = Sm4::new(key);
    let mut blocks = Zeroizing::new([[0u8; 16]; 2]);
    blocks[0].copy_from_slice(&data[..16]);
    blocks[1].copy_from_slice(&data[16..]);
    if encrypt {
        c.encrypt_blocks(&mut blocks[..]);
    } else {
        c.decrypt_blocks(&mut blocks[..]);
    }
    let mut out = Zeroizing::new([0u8; 32]);
    out[..16].copy_from_slice(&blocks[0]);
    out[16..].copy_from_slice(&blocks[1]);
    out
}

impl Sm2EnvelopedKey {
    /// The CA's side: seal `key` (a fresh encryption key pair) to `protection`, the
    /// signing public key of the container it is for, under a random SM4 key.
    pub fn seal(key: &Sm2PrivateKey, protection: &Sm2PublicKey) -> Result<Self> {
        let sym = Zeroizing::new(kb_crypto::rng::random_array::<16>()?);
        let encrypted_private_key = *ecb(&sym, &key.to_bytes(), true);
        let encrypted_key = protection.encrypt(&sym[..])?;
        Ok(Sm2EnvelopedKey { encrypted_key, public_key: *key.public_key(), encrypted_private_key })
    }

    /// The medium's side: open the envelope with the container's signing private key.
    /// The private key must match the envelope's public key. Errors are
    /// [`TokenError::EnvelopedKey`] and say nothing about the key material.
    pub fn open(&self, protection: &Sm2PrivateKey) -> Result<Sm2PrivateKey> {
        let sym = protection
            .decrypt_ciphertext(&self.encrypted_key)
            .map_err(|_| invalid("its SM4 key does not decrypt with this container's signing key"))?;
        let sym: Zeroizing<[u8; 16]> = Zeroizing::new(
            sym.as_slice().try_into().map_err(|_| invalid(format!("its SM4 key is {} bytes, not 16", sym.len())))?,
        );
        self.open_with_sm4_key(&sym)
    }

    /// The second half of [`Self::open`]: the private key under the already unwrapped
    /// SM4 key, checked against the public key (for media that unwrap the SM4 key on their
    /// own hardware).
    pub fn open_with_sm4_key(&self, sym: &[u8; 16]) -> Result<Sm2PrivateKey> {
        let d = ecb(sym, &self.encrypted_private_key, false);
        let key = Sm2PrivateKey::from_bytes(&d[..]).map_err(|_| invalid("its private key is not a valid SM2 key"))?;
        if key.public_key() != &self.public_key {
            return Err(invalid("its private key does not match its public key"));
        }
        Ok(key)
    }

    /// GM/T 0009 DER.
    pub fn to_der(&self) -> Result<Vec<u8>> {
        let bad = |_| invalid("cannot encode");
        let cipher = self.encrypted_key.to_der()?;
        let point = self.public_key.to_uncompressed();
        Wire {
            sym_alg_id: AlgorithmIdentifier { algorithm: SM4_ECB, parameters: None },
            sym_encrypted_key: AnyRef::from_der(&cipher).map_err(bad)?,
            public_key: BitStringRef::from_bytes(&point).map_err(bad)?,
            encrypted_private_key: BitStringRef::from_bytes(&self.encrypted_private_key).map_err(bad)?,
        }
        .to_der()
        .map_err(bad)
    }

    /// Parse GM/T 0009 DER: SM4-ECB only, a 256-bit point on the curve, a 32-byte
    /// encrypted private key (a 64-byte one holding 32 zero bytes first, as some KMCs
    /// write the SKF field, is accepted too).
    pub fn from_der(b: &[u8]) -> Result<Self> {
        if b.len() > MAX_DER_LEN {
            return Err(invalid(format!("{} bytes is too long", b.len())));
        }
        let w = Wire::from_der(b).map_err(|e| invalid(format!("not an SM2EnvelopedKey: {e}")))?;
        if w.sym_alg_id.algorithm != SM4_ECB {
            return Err(invalid(format!("symmetric algorithm {} (only SM4-ECB is supported)", w.sym_alg_id.algorithm)));
        }
        let cipher_der = w.sym_encrypted_key.to_der().map_err(|e| invalid(e.to_string()))?;
        let encrypted_key = Sm2Ciphertext::from_der(&cipher_der).map_err(|_| invalid("symEncryptedKey is not an SM2Cipher"))?;
        if encrypted_key.c2.len() != 16 {
            return Err(invalid(format!("symEncryptedKey holds {} bytes, not an SM4 key", encrypted_key.c2.len())));
        }
        let point = w.public_key.as_bytes().filter(|p| p.len() == 65).ok_or_else(|| invalid("Sm2PublicKey is not 04 ‖ X ‖ Y"))?;
        let public_key = Sm2PublicKey::from_sec1(point).map_err(|_| invalid("Sm2PublicKey is not an SM2 point on the curve"))?;
        let epk = w.encrypted_private_key.as_bytes().ok_or_else(|| invalid("Sm2EncryptedPrivateKey has unused bits"))?;
        let encrypted_private_key = private_key_field(epk)?;
        Ok(Sm2EnvelopedKey { encrypted_key, public_key, encrypted_private_key })
    }
}

/// The 32 encrypted bytes of a private-key field: 32 bytes, or 64 with the first 32 zero.
fn private_key_field(b: &[u8]) -> Result<[u8; 32]> {
    let tail = match b.len() {
        32 => b,
        64 if b[..32].iter().all(|x| *x == 0) => &b[32..],
        n => return Err(invalid(format!("Sm2EncryptedPrivateKey is {n} bytes, not 32"))),
    };
    tail.try_into().map_err(|_| invalid("Sm2EncryptedPrivateKey"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_round_trips_der() {
        let sign = Sm2PrivateKey::generate().unwrap();
        let enc = Sm2PrivateKey::generate().unwrap();
        let env = Sm2EnvelopedKey::seal(&enc, sign.public_key()).unwrap();
        let der = env.to_der().unwrap();
        let back = Sm2EnvelopedKey::from_der(&der).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.open(&sign).unwrap().to_bytes(), enc.to_bytes());
        let dbg = format!("{env:?}");
        let d_hex: String = enc.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let epk_hex: String = env.encrypted_private_key.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!dbg.contains(&d_hex[..12]) && !dbg.contains(&epk_hex[..12]), "{dbg}");
    }

    #[test]
    fn refuses_the_wrong_key_and_tampering() {
        let sign = Sm2PrivateKey::generate().unwrap();
        let other = Sm2PrivateKey::generate().unwrap();
        let enc = Sm2PrivateKey::generate().unwrap();
        let env = Sm2EnvelopedKey::seal(&enc, sign.public_key()).unwrap();
        assert!(matches!(env.open(&other), Err(TokenError::EnvelopedKey(_))));
        let mut bad = env.clone();
        bad.encrypted_private_key[3] ^= 1;
        assert!(matches!(bad.open(&sign), Err(TokenError::EnvelopedKey(_))));
        let mut swapped = env.clone();
        swapped.public_key = *other.public_key();
        assert!(matches!(swapped.open(&sign), Err(TokenError::EnvelopedKey(_))));
        let der = env.to_der().unwrap();
        for cut in [0, 1, der.len() / 2, der.len() - 1] {
            assert!(Sm2EnvelopedKey::from_der(&der[..cut]).is_err(), "cut at {cut}");
        }
        use kb_types::HasErrorCode;
        assert_eq!(env.open(&other).unwrap_err().code(), kb_types::ErrorCode::EnvelopedKeyInvalid);
    }

    #[test]
    fn accepts_the_64_byte_private_key_field() {
        let mut f = [0u8; 64];
        f[32..].copy_from_slice(&[7u8; 32]);
        assert_eq!(private_key_field(&f).unwrap(), [7u8; 32]);
        f[0] = 1;
        assert!(private_key_field(&f).is_err());
        assert!(private_key_field(&[0u8; 48]).is_err());
    }
}
