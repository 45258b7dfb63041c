//! Which PKCS#11 mechanism performs which KeyBridge operation, and the byte layouts
//! around them (DigestInfo for RSA PKCS#1 v1.5, `r ‖ s` → DER for ECDSA and SM2).
//!
//! Every operation starts from a *digest* (the Token model signs digests so a 1 GB file
//! is hashed in a stream and the medium sees 32 bytes), so the mechanisms are the raw
//! ones: `CKM_ECDSA`, `CKM_RSA_PKCS` over a DigestInfo built here, `CKM_RSA_PKCS_PSS`
//! with the hash named in its parameters. The `CKM_SHA256_RSA_PKCS` family would hash a
//! second time and needs the whole message.

use crate::encoding::two_integers;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use kb_crypto::rsa::RsaPadding;
use kb_crypto::{CryptoError, HashAlgorithm, SignatureScheme};
use kb_token::{Result, TokenError};
use kb_types::Algorithm;

/// The SM2 mechanisms of one vendor's PKCS#11 module. PKCS#11 (up to 3.1) defines no SM2
/// mechanism; modules that do SM2 use vendor-defined values (`CKM_VENDOR_DEFINED | n`).
/// KeyBridge uses SM2 on a module only when the module *lists* every mechanism of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sm2Mechanisms {
    /// Who defines these values (for messages and the README).
    pub vendor: &'static str,
    /// Signs the 32-byte `e = SM3(ZA ‖ M)` and returns raw `r ‖ s` (64 bytes).
    pub sign: u64,
    /// Decrypts an SM2 ciphertext in GM/T 0009 ASN.1 layout.
    pub decrypt: u64,
}

/// Known vendor SM2 mechanisms. Empty today: no SM2-capable PKCS#11 module was available
/// to test against (SoftHSM2 has no SM2), and an untested guess at a vendor's numbers
/// would sign with the wrong mechanism. Add an entry per vendor, with a test against the
/// vendor's module; everything else (capabilities, sign, decrypt) picks it up.
pub const SM2_VENDOR_MECHANISMS: &[Sm2Mechanisms] = &[];

impl Sm2Mechanisms {
    /// The first entry of the table whose mechanisms the module lists.
    pub fn find(listed: &[MechanismType]) -> Option<&'static Sm2Mechanisms> {
        Self::find_in(SM2_VENDOR_MECHANISMS, listed)
    }

    fn find_in<'t>(table: &'t [Sm2Mechanisms], listed: &[MechanismType]) -> Option<&'t Sm2Mechanisms> {
        let lists = |m: u64| listed.iter().any(|l| u64::from(*l) == m);
        table.iter().find(|e| lists(e.sign) && lists(e.decrypt))
    }

    fn mechanism(m: u64) -> Result<Mechanism<'static>> {
        let t = MechanismType::new_vendor_defined(m)
            .map_err(|_| TokenError::NotSupported(format!("{m:#x} is not a vendor-defined mechanism")))?;
        Ok(Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(t, None)))
    }
}

/// How the token's output becomes what kb-crypto expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignatureOutput {
    /// Raw `r ‖ s` (ECDSA, SM2): re-encode as DER `Ecdsa-Sig-Value`.
    RawRs,
    /// Already final (RSA).
    AsIs,
}

/// A signing operation: the mechanism, the bytes to hand to `C_Sign`, and the output form.
pub(crate) struct SignPlan {
    pub(crate) mechanism: Mechanism<'static>,
    pub(crate) input: Vec<u8>,
    pub(crate) output: SignatureOutput,
}

/// Choose the mechanism for `scheme` on a key of `algorithm`, given the digest to sign
/// and the mechanisms the token lists.
pub(crate) fn sign_plan(
    algorithm: Algorithm,
    scheme: &SignatureScheme,
    digest: &[u8],
    listed: &[MechanismType],
) -> Result<SignPlan> {
    if digest.len() != scheme.hash().output_len() {
        return Err(CryptoError::InvalidParameter("digest length does not match the hash").into());
    }
    let mismatch = || TokenError::Crypto(CryptoError::InvalidParameter("signature scheme does not match the key algorithm"));
    let plan = |mechanism, input: &[u8], output| SignPlan { mechanism, input: input.to_vec(), output };
    match (algorithm, scheme) {
        (Algorithm::EcdsaP256, SignatureScheme::Ecdsa(_)) => Ok(plan(Mechanism::Ecdsa, digest, SignatureOutput::RawRs)),
        (Algorithm::Rsa { .. }, SignatureScheme::RsaPkcs1(h)) => {
            let input = kb_crypto::rsa::digest_info(*h, digest)?;
            Ok(SignPlan { mechanism: Mechanism::RsaPkcs, input, output: SignatureOutput::AsIs })
        }
        (Algorithm::Rsa { .. }, SignatureScheme::RsaPss(h)) => {
            let (hash_alg, mgf) = hash_mechanisms(*h)?;
            // Salt = hash length, as kb-crypto (and RFC 8017's recommendation) use.
            let params = PkcsPssParams { hash_alg, mgf, s_len: (h.output_len() as u64).into() };
            Ok(plan(Mechanism::RsaPkcsPss(params), digest, SignatureOutput::AsIs))
        }
        (Algorithm::Sm2, SignatureScheme::Sm2Sm3 { .. }) => {
            let sm2 = Sm2Mechanisms::find(listed).ok_or_else(no_sm2)?;
            Ok(plan(Sm2Mechanisms::mechanism(sm2.sign)?, digest, SignatureOutput::RawRs))
        }
        _ => Err(mismatch()),
    }
}

/// The decryption mechanism for a key of `algorithm`.
pub(crate) fn decrypt_mechanism(
    algorithm: Algorithm,
    padding: RsaPadding,
    listed: &[MechanismType],
) -> Result<Mechanism<'static>> {
    match (algorithm, padding) {
        (Algorithm::Rsa { .. }, RsaPadding::Pkcs1v15) => Ok(Mechanism::RsaPkcs),
        (Algorithm::Rsa { .. }, RsaPadding::Oaep(h)) => {
            let (hash, mgf) = hash_mechanisms(h)?;
            Ok(Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty())))
        }
        (Algorithm::Sm2, _) => Sm2Mechanisms::mechanism(Sm2Mechanisms::find(listed).ok_or_else(no_sm2)?.decrypt),
        (Algorithm::EcdsaP256, _) => Err(CryptoError::Unsupported("decryption with an ECDSA key".into()).into()),
    }
}

fn no_sm2() -> TokenError {
    TokenError::NotSupported("SM2: this PKCS#11 module lists no SM2 mechanism KeyBridge knows".into())
}

/// The hash and MGF1 mechanisms for PSS and OAEP.
fn hash_mechanisms(h: HashAlgorithm) -> Result<(MechanismType, PkcsMgfType)> {
    match h {
        HashAlgorithm::Sha1 => Ok((MechanismType::SHA1, PkcsMgfType::MGF1_SHA1)),
        HashAlgorithm::Sha256 => Ok((MechanismType::SHA256, PkcsMgfType::MGF1_SHA256)),
        HashAlgorithm::Sha384 => Ok((MechanismType::SHA384, PkcsMgfType::MGF1_SHA384)),
        HashAlgorithm::Sha512 => Ok((MechanismType::SHA512, PkcsMgfType::MGF1_SHA512)),
        other => Err(CryptoError::Unsupported(format!("RSA with {other}")).into()),
    }
}

/// Turn the token's output into the signature kb-crypto and X.509/CMS expect.
pub(crate) fn finish_signature(output: SignatureOutput, sig: Vec<u8>) -> Result<Vec<u8>> {
    match output {
        SignatureOutput::AsIs => Ok(sig),
        SignatureOutput::RawRs => {
            if sig.is_empty() || !sig.len().is_multiple_of(2) {
                return Err(TokenError::Corrupt("the token returned a malformed r ‖ s signature".into()));
            }
            let (r, s) = sig.split_at(sig.len() / 2);
            two_integers(r, s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let rsa = Algorithm::Rsa { bits: 2048 };
        let d = [7u8; 32];
        let p = sign_plan(rsa, &SignatureScheme::RsaPkcs1(HashAlgorithm::Sha256), &d, &[]).unwrap();
        assert_eq!((p.input.len(), p.output), (19 + 32, SignatureOutput::AsIs));
        assert!(matches!(p.mechanism, Mechanism::RsaPkcs));
        let p = sign_plan(Algorithm::EcdsaP256, &SignatureScheme::Ecdsa(HashAlgorithm::Sha256), &d, &[]).unwrap();
        assert_eq!((p.input, p.output), (d.to_vec(), SignatureOutput::RawRs));
        // Wrong digest length, wrong scheme for the key, SM2 on a module without SM2.
        assert!(sign_plan(rsa, &SignatureScheme::RsaPss(HashAlgorithm::Sha384), &d, &[]).is_err());
        assert!(sign_plan(rsa, &SignatureScheme::Ecdsa(HashAlgorithm::Sha256), &d, &[]).is_err());
        let e = sign_plan(Algorithm::Sm2, &SignatureScheme::sm2_default(), &d, &[]).err().unwrap();
        assert!(matches!(e, TokenError::NotSupported(_)));
    }

    #[test]
    fn vendor_table_needs_every_mechanism_listed() {
        let v = 0x8000_0000u64;
        let table = [Sm2Mechanisms { vendor: "test", sign: v | 1, decrypt: v | 2 }];
        let t = |m: u64| MechanismType::new_vendor_defined(m).unwrap();
        assert_eq!(Sm2Mechanisms::find_in(&table, &[t(v | 1)]), None);
        assert_eq!(Sm2Mechanisms::find_in(&table, &[MechanismType::ECDSA, t(v | 2), t(v | 1)]), Some(&table[0]));
        assert!(Sm2Mechanisms::mechanism(v | 1).is_ok());
        assert!(Sm2Mechanisms::mechanism(1).is_err());
    }

    #[test]
    fn raw_rs_becomes_der() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a leading zero byte in DER
        raw[63] = 1; // s is 1
        let der = finish_signature(SignatureOutput::RawRs, raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x21, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
        assert!(finish_signature(SignatureOutput::RawRs, vec![1, 2, 3]).is_err());
    }
}
