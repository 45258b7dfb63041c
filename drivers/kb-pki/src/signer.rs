//! The [`Signer`] trait: anything that can sign a digest with a key it holds — a
//! software key here, a USB key, smart card or phone later. CSRs, certificates and CMS
//! SignedData are all built through it, so the private key never has to leave its medium.

use crate::Result;
use kb_crypto::{PrivateKey, PublicKey, SignatureScheme};

/// Signs digests with a key it holds.
pub trait Signer {
    /// The public key matching the private key.
    fn public_key(&self) -> &PublicKey;
    /// The scheme this signer uses (SM2 + ID, RSA PKCS#1/PSS + hash, ECDSA + hash).
    fn scheme(&self) -> &SignatureScheme;
    /// Sign a digest computed with `self.public_key().hasher(self.scheme())` (for SM2 that
    /// is `e = SM3(ZA ‖ M)`). SM2/ECDSA return DER, RSA the raw block.
    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>>;

    /// Hash `msg` the way the scheme wants, then sign.
    fn sign_message(&self, msg: &[u8]) -> Result<Vec<u8>> {
        let d = self.public_key().message_digest(self.scheme(), msg)?;
        self.sign_digest(&d)
    }
}

/// A [`Signer`] over an in-memory [`PrivateKey`] (tests, the dev CA, the file-type key).
#[derive(Debug, Clone)]
pub struct LocalSigner {
    key: PrivateKey,
    public: PublicKey,
    scheme: SignatureScheme,
}

impl LocalSigner {
    /// With the key's default scheme (SM2 + default ID, RSA PKCS#1 SHA-256, ECDSA SHA-256).
    pub fn new(key: PrivateKey) -> Self {
        let public = key.public_key();
        let scheme = SignatureScheme::default_for(public.algorithm());
        Self { key, public, scheme }
    }

    /// With an explicit scheme.
    pub fn with_scheme(key: PrivateKey, scheme: SignatureScheme) -> Self {
        let public = key.public_key();
        Self { key, public, scheme }
    }

    /// The private key (for decryption in tests and the dev CA).
    pub fn private_key(&self) -> &PrivateKey {
        &self.key
    }
}

impl Signer for LocalSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }
    fn scheme(&self) -> &SignatureScheme {
        &self.scheme
    }
    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>> {
        Ok(self.key.sign_digest(&self.scheme, digest)?)
    }
}
