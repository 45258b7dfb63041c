//! PKCS#10 certification requests (RFC 2986), built through a [`Signer`] so the key
//! pair can be generated and kept on a device, and verified on the CA side.

use crate::signer::Signer;
use crate::{PkiError, Result, name, oid};
use der::asn1::{Any, BitString, SetOfVec};
use der::{Decode, Encode};
use kb_crypto::PublicKey;
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::attr::Attribute;
use x509_cert::ext::Extension;
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};

fn bad(e: impl std::fmt::Display) -> PkiError {
    PkiError::CsrInvalid(e.to_string())
}

/// Build a DER CSR for `subject` (e.g. `C=CN,O=某某公司,CN=张三`), optionally asking for
/// extensions (extensionRequest attribute). SM2 requests are signed with the default ID.
pub fn build(subject: &str, signer: &dyn Signer, extensions: Vec<Extension>) -> Result<Vec<u8>> {
    let subject = name::parse_dn(subject)?;
    let public_key = SubjectPublicKeyInfoOwned::from_der(&signer.public_key().to_spki_der()?).map_err(bad)?;
    let mut attributes = SetOfVec::new();
    if !extensions.is_empty() {
        let req = ExtensionReq(extensions).to_der().map_err(bad)?;
        let mut values = SetOfVec::new();
        values.insert(Any::from_der(&req).map_err(bad)?).map_err(bad)?;
        attributes.insert(Attribute { oid: EXTENSION_REQUEST, values }).map_err(bad)?;
    }
    let info = CertReqInfo { version: Version::V1, subject, public_key, attributes };
    let info_der = info.to_der().map_err(bad)?;
    let sig = signer.sign_message(&info_der)?;
    let req = CertReq {
        info,
        algorithm: crate::issue::signature_algorithm(signer)?,
        signature: BitString::from_bytes(&sig).map_err(bad)?,
    };
    req.to_der().map_err(bad)
}

const EXTENSION_REQUEST: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");

/// A parsed CSR.
#[derive(Clone, Debug)]
pub struct CertificationRequest {
    der: Vec<u8>,
    inner: CertReq,
}

impl CertificationRequest {
    /// Parse DER.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        Ok(Self { der: der.to_vec(), inner: CertReq::from_der(der).map_err(bad)? })
    }

    /// Parse PEM (`CERTIFICATE REQUEST` or the old `NEW CERTIFICATE REQUEST`).
    pub fn from_pem(pem: &str) -> Result<Self> {
        let (label, der) = der::pem::decode_vec(pem.trim().as_bytes()).map_err(bad)?;
        if label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST" {
            return Err(bad(format!("PEM label {label}")));
        }
        Self::from_der(&der)
    }

    /// DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM.
    pub fn to_pem(&self) -> String {
        der::pem::encode_string("CERTIFICATE REQUEST", der::pem::LineEnding::LF, &self.der).unwrap_or_default()
    }

    /// Subject, most specific first.
    pub fn subject(&self) -> String {
        name::display(&self.inner.info.subject)
    }

    /// Subject as a DN string in encoding order (for re-use when issuing).
    pub fn subject_dn(&self) -> String {
        name::attributes(&self.inner.info.subject)
            .into_iter()
            .map(|a| format!("{}={}", a.key, a.value.replace(',', "\\,")))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The requested public key.
    pub fn public_key(&self) -> Result<PublicKey> {
        Ok(PublicKey::from_spki_der(&self.inner.info.public_key.to_der().map_err(bad)?)?)
    }

    /// Extensions asked for in an extensionRequest attribute.
    pub fn requested_extensions(&self) -> Vec<Extension> {
        self.inner
            .info
            .attributes
            .iter()
            .filter(|a| a.oid == EXTENSION_REQUEST)
            .flat_map(|a| a.values.iter())
            .filter_map(|v| v.decode_as::<ExtensionReq>().ok())
            .flat_map(|r| r.0)
            .collect()
    }

    /// Verify the self-signature (proof of possession).
    pub fn verify(&self) -> Result<()> {
        let scheme = oid::scheme_from_sig_oid(&self.inner.algorithm.oid)
            .ok_or_else(|| bad(format!("unsupported signature algorithm {}", self.inner.algorithm.oid)))?;
        let sig = self.inner.signature.as_bytes().ok_or_else(|| bad("signature has unused bits"))?;
        let info = crate::cert::signed_part(&self.der).map_err(bad)?;
        self.public_key()?.verify(&scheme, &info, sig).map_err(|_| bad("self-signature does not verify"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::LocalSigner;
    use kb_crypto::PrivateKey;
    use kb_types::{Algorithm, ErrorCode, HasErrorCode};

    #[test]
    fn build_and_verify_each_algorithm() {
        for alg in [Algorithm::Sm2, Algorithm::EcdsaP256, Algorithm::Rsa { bits: 2048 }] {
            let s = LocalSigner::new(PrivateKey::generate(alg).unwrap_or_else(|e| panic!("{e}")));
            let der = build("C=CN,O=某某公司,CN=李四", &s, vec![]).unwrap_or_else(|e| panic!("{e}"));
            let csr = CertificationRequest::from_der(&der).unwrap_or_else(|e| panic!("{e}"));
            assert!(csr.verify().is_ok());
            assert_eq!(csr.subject(), "CN=李四, O=某某公司, C=CN");
            assert_eq!(csr.subject_dn(), "C=CN,O=某某公司,CN=李四");
            assert_eq!(csr.public_key().ok().as_ref(), Some(s.public_key()));
            assert!(CertificationRequest::from_pem(&csr.to_pem()).is_ok());
        }
    }

    #[test]
    fn tampered_csr_fails_with_code() {
        let s = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2).unwrap_or_else(|e| panic!("{e}")));
        let mut der = build("CN=王五", &s, vec![]).unwrap_or_else(|e| panic!("{e}"));
        // Flip a byte inside the subject's UTF8String value.
        let pos = der.windows(3).position(|w| w == "王".as_bytes()).unwrap_or(0);
        der[pos + 2] ^= 1;
        let csr = CertificationRequest::from_der(&der).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(csr.verify().err().map(|e| e.code()), Some(ErrorCode::CsrInvalid));
        assert!(CertificationRequest::from_der(b"\x30\x00").is_err());
    }
}
