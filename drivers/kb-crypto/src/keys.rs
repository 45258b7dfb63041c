//! Keys of every algorithm behind one type, with one sign/verify entry point.
//!
//! Signing is split into *hashing* and *signing the digest* so a 1 GB file is hashed
//! in a stream and a device only ever sees the digest: [`PublicKey::hasher`] gives a
//! hasher already fed with whatever the scheme prefixes (SM2's `ZA`), then
//! [`PrivateKey::sign_digest`] / [`PublicKey::verify_digest`] finish the job.

use crate::ecdsa::{P256PublicKey, P256SecretKey};
use crate::hash::Hasher;
use crate::rsa::{RsaPadding, RsaPrivateKey, RsaPublicKey};
use crate::sm2::{Sm2PrivateKey, Sm2PublicKey, Sm2Signature};
use crate::{CryptoError, HashAlgorithm, Result};
use der::asn1::{BitString, ObjectIdentifier};
use der::{Any, Decode, Encode};
use kb_types::Algorithm;
use pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use zeroize::Zeroizing;

/// Object identifiers used by keys.
pub mod oid {
    use der::asn1::ObjectIdentifier as Oid;
    /// id-ecPublicKey.
    pub const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    /// The SM2 curve (also used, by some old CAs, as the key algorithm itself).
    pub const SM2_CURVE: Oid = Oid::new_unwrap("1.2.156.10197.1.301");
    /// NIST P-256 / prime256v1.
    pub const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    /// rsaEncryption.
    pub const RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
}

/// A signature scheme: algorithm, hash, and for SM2 the distinguishing ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    /// SM2 with SM3 and the given ID (`sm2::DEFAULT_ID` unless a CA says otherwise).
    Sm2Sm3 {
        /// Distinguishing ID fed into `ZA`.
        id: Vec<u8>,
    },
    /// RSA PKCS#1 v1.5 with the given hash.
    RsaPkcs1(HashAlgorithm),
    /// RSA-PSS with the given hash (MGF1 with the same hash, salt = hash length).
    RsaPss(HashAlgorithm),
    /// ECDSA with the given hash.
    Ecdsa(HashAlgorithm),
}

impl SignatureScheme {
    /// SM2 with the default ID.
    pub fn sm2_default() -> Self {
        SignatureScheme::Sm2Sm3 { id: crate::sm2::DEFAULT_ID.to_vec() }
    }

    /// The hash the digest is computed with.
    pub fn hash(&self) -> HashAlgorithm {
        match self {
            SignatureScheme::Sm2Sm3 { .. } => HashAlgorithm::Sm3,
            SignatureScheme::RsaPkcs1(h) | SignatureScheme::RsaPss(h) | SignatureScheme::Ecdsa(h) => *h,
        }
    }

    /// The natural scheme for a key: SM2/SM3, RSA PKCS#1 v1.5 SHA-256, ECDSA SHA-256.
    pub fn default_for(alg: Algorithm) -> Self {
        match alg {
            Algorithm::Sm2 => Self::sm2_default(),
            Algorithm::Rsa { .. } => SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256),
            Algorithm::EcdsaP256 => SignatureScheme::Ecdsa(HashAlgorithm::Sha256),
        }
    }
}

/// A public key of any supported algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// SM2.
    Sm2(Sm2PublicKey),
    /// RSA.
    Rsa(RsaPublicKey),
    /// ECDSA P-256.
    EcP256(P256PublicKey),
}

fn mismatch() -> CryptoError {
    CryptoError::InvalidParameter("signature scheme does not match the key algorithm")
}

impl PublicKey {
    /// From a DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let bad = CryptoError::Malformed { what: "SubjectPublicKeyInfo" };
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|_| bad.clone())?;
        let alg = spki.algorithm.oid;
        let param = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        let point = spki.subject_public_key.as_bytes().ok_or(bad.clone())?;
        match (alg, param) {
            (oid::EC_PUBLIC_KEY, Some(oid::SM2_CURVE)) | (oid::SM2_CURVE, _) => {
                Ok(PublicKey::Sm2(Sm2PublicKey::from_sec1(point)?))
            }
            (oid::EC_PUBLIC_KEY, Some(oid::P256)) => {
                P256PublicKey::from_sec1_bytes(point).map(PublicKey::EcP256).map_err(|_| CryptoError::InvalidKey("P-256 point"))
            }
            (oid::RSA, _) => RsaPublicKey::from_public_key_der(der).map(PublicKey::Rsa).map_err(|_| bad),
            (a, p) => Err(CryptoError::Unsupported(format!("public key algorithm {a} {p:?}"))),
        }
    }

    /// From PEM (`-----BEGIN PUBLIC KEY-----`, a `SubjectPublicKeyInfo`).
    pub fn from_spki_pem(pem: &str) -> Result<Self> {
        let (label, der) = der::pem::decode_vec(pem.trim().as_bytes()).map_err(|_| CryptoError::Malformed { what: "PEM" })?;
        if label != "PUBLIC KEY" {
            return Err(CryptoError::Malformed { what: "PEM label (want PUBLIC KEY)" });
        }
        Self::from_spki_der(&der)
    }

    /// To PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_spki_pem(&self) -> Result<String> {
        der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &self.to_spki_der()?)
            .map_err(|_| CryptoError::InvalidKey("PEM encoding"))
    }

    /// To a DER `SubjectPublicKeyInfo` (SM2 as id-ecPublicKey + SM2 curve, as OpenSSL writes it).
    pub fn to_spki_der(&self) -> Result<Vec<u8>> {
        let enc = |_| CryptoError::InvalidKey("public key encoding");
        match self {
            PublicKey::Sm2(k) => {
                let spki = SubjectPublicKeyInfoOwned {
                    algorithm: AlgorithmIdentifierOwned {
                        oid: oid::EC_PUBLIC_KEY,
                        parameters: Some(Any::encode_from(&oid::SM2_CURVE).map_err(enc)?),
                    },
                    subject_public_key: BitString::from_bytes(&k.to_uncompressed()).map_err(enc)?,
                };
                spki.to_der().map_err(enc)
            }
            PublicKey::Rsa(k) => {
                k.to_public_key_der().map(|d| d.as_bytes().to_vec()).map_err(|_| CryptoError::InvalidKey("RSA SPKI"))
            }
            PublicKey::EcP256(k) => {
                k.to_public_key_der().map(|d| d.as_bytes().to_vec()).map_err(|_| CryptoError::InvalidKey("P-256 SPKI"))
            }
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            PublicKey::Sm2(_) => Algorithm::Sm2,
            PublicKey::Rsa(k) => Algorithm::Rsa { bits: (rsa::traits::PublicKeyParts::size(k) * 8) as u32 },
            PublicKey::EcP256(_) => Algorithm::EcdsaP256,
        }
    }

    /// A hasher for `scheme`, pre-fed with any prefix the scheme defines (SM2's `ZA`).
    pub fn hasher(&self, scheme: &SignatureScheme) -> Result<Hasher> {
        match (self, scheme) {
            (PublicKey::Sm2(k), SignatureScheme::Sm2Sm3 { id }) => Ok(Hasher::Sm3(k.digest_hasher(id)?)),
            (PublicKey::Sm2(_), _) | (_, SignatureScheme::Sm2Sm3 { .. }) => Err(mismatch()),
            _ => Ok(Hasher::new(scheme.hash())),
        }
    }

    /// The digest `sign_digest`/`verify_digest` expect for `msg`.
    pub fn message_digest(&self, scheme: &SignatureScheme, msg: &[u8]) -> Result<Vec<u8>> {
        let mut h = self.hasher(scheme)?;
        h.update(msg);
        Ok(h.finish())
    }

    /// Verify `sig` over `msg`.
    pub fn verify(&self, scheme: &SignatureScheme, msg: &[u8], sig: &[u8]) -> Result<()> {
        self.verify_digest(scheme, &self.message_digest(scheme, msg)?, sig)
    }

    /// Verify `sig` over a digest from [`PublicKey::hasher`]. SM2 and ECDSA signatures may be
    /// DER or raw `r ‖ s`.
    pub fn verify_digest(&self, scheme: &SignatureScheme, digest: &[u8], sig: &[u8]) -> Result<()> {
        match (self, scheme) {
            (PublicKey::Sm2(k), SignatureScheme::Sm2Sm3 { .. }) => {
                let e: [u8; 32] = digest.try_into().map_err(|_| CryptoError::InvalidParameter("SM2 digest must be 32 bytes"))?;
                let s = Sm2Signature::from_any(sig).map_err(|_| CryptoError::BadSignature)?;
                k.verify_digest(&e, &s)
            }
            (PublicKey::Rsa(k), SignatureScheme::RsaPkcs1(h)) => crate::rsa::verify_digest(k, *h, false, digest, sig),
            (PublicKey::Rsa(k), SignatureScheme::RsaPss(h)) => crate::rsa::verify_digest(k, *h, true, digest, sig),
            (PublicKey::EcP256(k), SignatureScheme::Ecdsa(_)) => crate::ecdsa::verify_digest(k, digest, sig),
            _ => Err(mismatch()),
        }
    }

    /// Encrypt a short message (a content key, a price) to this key. SM2 output is
    /// GM/T 0009 ASN.1; RSA uses `rsa_padding`.
    pub fn encrypt(&self, msg: &[u8], rsa_padding: RsaPadding) -> Result<Vec<u8>> {
        match self {
            PublicKey::Sm2(k) => k.encrypt(msg)?.to_der(),
            PublicKey::Rsa(k) => crate::rsa::encrypt(k, rsa_padding, msg),
            PublicKey::EcP256(_) => Err(CryptoError::Unsupported("encryption to an ECDSA key".into())),
        }
    }
}

/// A private key of any supported algorithm. `Debug` never shows key material.
#[derive(Clone)]
pub enum PrivateKey {
    /// SM2.
    Sm2(Sm2PrivateKey),
    /// RSA.
    Rsa(Box<RsaPrivateKey>),
    /// ECDSA P-256.
    EcP256(P256SecretKey),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({}, REDACTED)", self.public_key().algorithm())
    }
}

impl PrivateKey {
    /// Generate a key. RSA sizes: 2048/3072/4096.
    pub fn generate(alg: Algorithm) -> Result<Self> {
        Ok(match alg {
            Algorithm::Sm2 => PrivateKey::Sm2(Sm2PrivateKey::generate()?),
            Algorithm::Rsa { bits } => PrivateKey::Rsa(Box::new(crate::rsa::generate(bits as usize)?)),
            Algorithm::EcdsaP256 => PrivateKey::EcP256(crate::ecdsa::generate()?),
        })
    }

    /// From PKCS#8 DER (unencrypted `PrivateKeyInfo`).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let bad = CryptoError::Malformed { what: "PKCS#8 private key" };
        let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(|_| bad.clone())?;
        let alg = info.algorithm.oid;
        let param = info.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        match (alg, param) {
            (oid::EC_PUBLIC_KEY, Some(oid::SM2_CURVE)) | (oid::SM2_CURVE, _) => {
                Sm2PrivateKey::from_pkcs8_der(der).map(PrivateKey::Sm2)
            }
            (oid::EC_PUBLIC_KEY, Some(oid::P256)) => P256SecretKey::from_pkcs8_der(der).map(PrivateKey::EcP256).map_err(|_| bad),
            (oid::RSA, _) => RsaPrivateKey::from_pkcs8_der(der).map(|k| PrivateKey::Rsa(Box::new(k))).map_err(|_| bad),
            (a, p) => Err(CryptoError::Unsupported(format!("private key algorithm {a} {p:?}"))),
        }
    }

    /// From PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        let (label, der) = der::pem::decode_vec(pem.as_bytes()).map_err(|_| CryptoError::Malformed { what: "PEM" })?;
        if label != "PRIVATE KEY" {
            return Err(CryptoError::Malformed { what: "PEM label (want PRIVATE KEY)" });
        }
        let der = Zeroizing::new(der);
        Self::from_pkcs8_der(&der)
    }

    /// To PKCS#8 DER, zeroized on drop.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        let enc = |_| CryptoError::InvalidKey("PKCS#8 encoding");
        match self {
            PrivateKey::Sm2(k) => k.to_pkcs8_der(),
            PrivateKey::Rsa(k) => k.to_pkcs8_der().map(|d| Zeroizing::new(d.as_bytes().to_vec())).map_err(enc),
            PrivateKey::EcP256(k) => k.to_pkcs8_der().map(|d| Zeroizing::new(d.as_bytes().to_vec())).map_err(enc),
        }
    }

    /// To PEM, zeroized on drop.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        let der = self.to_pkcs8_der()?;
        der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, &der)
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::InvalidKey("PEM encoding"))
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::Sm2(k) => PublicKey::Sm2(*k.public_key()),
            PrivateKey::Rsa(k) => PublicKey::Rsa(k.to_public_key()),
            PrivateKey::EcP256(k) => PublicKey::EcP256(k.public_key()),
        }
    }

    /// Sign `msg`. SM2 and ECDSA signatures are DER; RSA is the raw signature block.
    pub fn sign(&self, scheme: &SignatureScheme, msg: &[u8]) -> Result<Vec<u8>> {
        let d = self.public_key().message_digest(scheme, msg)?;
        self.sign_digest(scheme, &d)
    }

    /// Sign a digest from [`PublicKey::hasher`].
    pub fn sign_digest(&self, scheme: &SignatureScheme, digest: &[u8]) -> Result<Vec<u8>> {
        match (self, scheme) {
            (PrivateKey::Sm2(k), SignatureScheme::Sm2Sm3 { .. }) => {
                let e: [u8; 32] = digest.try_into().map_err(|_| CryptoError::InvalidParameter("SM2 digest must be 32 bytes"))?;
                Ok(k.sign_digest(&e)?.to_der())
            }
            (PrivateKey::Rsa(k), SignatureScheme::RsaPkcs1(h)) => crate::rsa::sign_digest(k, *h, false, digest),
            (PrivateKey::Rsa(k), SignatureScheme::RsaPss(h)) => crate::rsa::sign_digest(k, *h, true, digest),
            (PrivateKey::EcP256(k), SignatureScheme::Ecdsa(_)) => crate::ecdsa::sign_digest(k, digest),
            _ => Err(mismatch()),
        }
    }

    /// Decrypt a short ciphertext made by [`PublicKey::encrypt`] (SM2: any layout).
    pub fn decrypt(&self, ct: &[u8], rsa_padding: RsaPadding) -> Result<Zeroizing<Vec<u8>>> {
        match self {
            PrivateKey::Sm2(k) => k.decrypt(ct),
            PrivateKey::Rsa(k) => crate::rsa::decrypt(k, rsa_padding, ct),
            PrivateKey::EcP256(_) => Err(CryptoError::Unsupported("decryption with an ECDSA key".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(alg: Algorithm, schemes: &[SignatureScheme]) {
        let k = PrivateKey::generate(alg).unwrap_or_else(|e| panic!("{e}"));
        let pk = k.public_key();
        assert_eq!(pk.algorithm(), alg);
        let spki = pk.to_spki_der().unwrap_or_default();
        assert_eq!(PublicKey::from_spki_der(&spki).ok(), Some(pk.clone()));
        let p8 = k.to_pkcs8_der().unwrap_or_else(|_| unreachable!());
        let back = PrivateKey::from_pkcs8_der(&p8).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.public_key(), pk);
        let pem = k.to_pkcs8_pem().unwrap_or_else(|_| unreachable!());
        assert!(PrivateKey::from_pkcs8_pem(&pem).is_ok());
        assert!(!format!("{k:?}").is_empty());
        for s in schemes {
            let sig = k.sign(s, b"bid file").unwrap_or_else(|e| panic!("{e}"));
            assert!(pk.verify(s, b"bid file", &sig).is_ok(), "{s:?}");
            assert_eq!(pk.verify(s, b"bid filE", &sig), Err(CryptoError::BadSignature), "{s:?}");
        }
    }

    #[test]
    fn sm2_keys() {
        roundtrip(Algorithm::Sm2, &[SignatureScheme::sm2_default(), SignatureScheme::Sm2Sm3 { id: b"x".to_vec() }]);
    }

    #[test]
    fn p256_keys() {
        roundtrip(
            Algorithm::EcdsaP256,
            &[SignatureScheme::Ecdsa(HashAlgorithm::Sha256), SignatureScheme::Ecdsa(HashAlgorithm::Sha384)],
        );
    }

    #[test]
    fn rsa_keys_and_encryption() {
        let schemes = [
            SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256),
            SignatureScheme::RsaPss(HashAlgorithm::Sha256),
            SignatureScheme::RsaPkcs1(HashAlgorithm::Sha1),
        ];
        roundtrip(Algorithm::Rsa { bits: 2048 }, &schemes);
        let k = PrivateKey::generate(Algorithm::Rsa { bits: 2048 }).unwrap_or_else(|_| unreachable!());
        for p in [RsaPadding::Pkcs1v15, RsaPadding::Oaep(HashAlgorithm::Sha256), RsaPadding::Oaep(HashAlgorithm::Sha1)] {
            let ct = k.public_key().encrypt(b"content key 16B!", p).unwrap_or_default();
            assert_eq!(k.decrypt(&ct, p).map(|v| v.to_vec()).ok(), Some(b"content key 16B!".to_vec()));
        }
        assert!(PrivateKey::generate(Algorithm::Rsa { bits: 1024 }).is_err());
    }

    #[test]
    fn scheme_key_mismatch_is_an_error() {
        let k = PrivateKey::generate(Algorithm::Sm2).unwrap_or_else(|_| unreachable!());
        assert!(k.sign(&SignatureScheme::Ecdsa(HashAlgorithm::Sha256), b"x").is_err());
        assert!(PublicKey::from_spki_der(b"\x30\x00").is_err());
        assert!(PrivateKey::from_pkcs8_der(b"garbage").is_err());
    }
}
