//! Certificate issuing: roots, intermediates, leaves and SM2 dual (sign + encrypt)
//! pairs, signed through a [`Signer`] so an issuing key may itself live on a device.
//! Used by the tests and the local dev CA.

use crate::cert::Certificate;
use crate::signer::Signer;
use crate::time::UnixTime;
use crate::{PkiError, Result, name, oid};
use der::asn1::{Any, BitString, Ia5String, ObjectIdentifier as Oid, OctetString};
use der::{Decode, Encode, Sequence};
use kb_crypto::{HashAlgorithm, PublicKey};
use kb_types::KeyUsage;
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::DistributionPointName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints,
    ExtendedKeyUsage, KeyUsage as X509KeyUsage, KeyUsages, SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::time::Validity;

/// What kind of certificate to issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertKind {
    /// A self-signed root CA.
    Root {
        /// basicConstraints pathLenConstraint.
        path_len: Option<u8>,
    },
    /// An intermediate CA.
    Intermediate {
        /// basicConstraints pathLenConstraint.
        path_len: Option<u8>,
    },
    /// An end-entity certificate.
    Leaf {
        /// Signing (digitalSignature + nonRepudiation), encryption (keyEncipherment +
        /// dataEncipherment + keyAgreement) or both.
        usage: KeyUsage,
    },
}

/// Parameters of a certificate to issue.
#[derive(Clone, Debug)]
pub struct CertificateParams {
    /// Subject DN, e.g. `C=CN,O=某某公司,CN=张三`.
    pub subject: String,
    /// Serial number (positive, big-endian). `None` = 16 random bytes.
    pub serial: Option<Vec<u8>>,
    /// notBefore.
    pub not_before: UnixTime,
    /// notAfter.
    pub not_after: UnixTime,
    /// Kind.
    pub kind: CertKind,
    /// subjectAltName entries: `user@host` → rfc822Name, anything else → dNSName.
    pub subject_alt_names: Vec<String>,
    /// extKeyUsage OIDs for leaves (none by default).
    pub extended_key_usage: Vec<Oid>,
    /// keyUsage bits instead of the kind's profile (docs/certificate-profiles.md);
    /// `None` = the profile's.
    pub key_usage: Option<X509KeyUsage>,
    /// Further extensions, added verbatim.
    pub extra_extensions: Vec<Extension>,
}

impl CertificateParams {
    /// A leaf valid from `not_before` for `days`.
    pub fn leaf(subject: &str, usage: KeyUsage, not_before: UnixTime, days: i64) -> Self {
        Self::new(subject, CertKind::Leaf { usage }, not_before, days)
    }

    /// Any kind, valid from `not_before` for `days`.
    pub fn new(subject: &str, kind: CertKind, not_before: UnixTime, days: i64) -> Self {
        Self {
            subject: subject.to_string(),
            serial: None,
            not_before,
            not_after: not_before.plus_days(days),
            kind,
            subject_alt_names: Vec::new(),
            extended_key_usage: Vec::new(),
            key_usage: None,
            extra_extensions: Vec::new(),
        }
    }
}

/// TBSCertificate (RFC 5280 §4.1), encoded by us so names and algorithm identifiers
/// are exactly what we intend.
#[derive(Sequence)]
struct Tbs {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    version: u8,
    serial: der::asn1::Uint,
    signature: AlgorithmIdentifierOwned,
    issuer: Any,
    validity: Validity,
    subject: Any,
    spki: Any,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Vec<Extension>>,
}

#[derive(Sequence)]
struct CertOut {
    tbs: Any,
    alg: AlgorithmIdentifierOwned,
    sig: BitString,
}

fn enc(e: impl std::fmt::Display) -> PkiError {
    PkiError::CertificateMalformed(format!("encoding: {e}"))
}

/// The AlgorithmIdentifier for a signer's scheme.
pub fn signature_algorithm(signer: &dyn Signer) -> Result<AlgorithmIdentifierOwned> {
    let (alg, null) = oid::sig_oid(signer.scheme())
        .ok_or_else(|| PkiError::Crypto(kb_crypto::CryptoError::Unsupported(format!("issuing with {:?}", signer.scheme()))))?;
    Ok(AlgorithmIdentifierOwned { oid: alg, parameters: if null { Some(Any::null()) } else { None } })
}

fn extension<T: Encode + der::oid::AssociatedOid>(critical: bool, value: &T) -> Result<Extension> {
    Ok(Extension { extn_id: T::OID, critical, extn_value: OctetString::new(value.to_der().map_err(enc)?).map_err(enc)? })
}

/// Where relying parties ask about revocation: a cRLDistributionPoints extension naming
/// `crl_url` and an authorityInfoAccess naming the OCSP responder `ocsp_url` (each
/// left out when `None`). For [`CertificateParams::extra_extensions`].
pub fn revocation_pointers(crl_url: Option<&str>, ocsp_url: Option<&str>) -> Result<Vec<Extension>> {
    let uri = |u: &str| Ia5String::new(u).map(GeneralName::UniformResourceIdentifier).map_err(enc);
    let mut out = Vec::new();
    if let Some(u) = crl_url {
        let point = DistributionPoint {
            distribution_point: Some(DistributionPointName::FullName(vec![uri(u)?])),
            reasons: None,
            crl_issuer: None,
        };
        out.push(extension(false, &CrlDistributionPoints(vec![point]))?);
    }
    if let Some(u) = ocsp_url {
        let ocsp = AccessDescription { access_method: Oid::new_unwrap("1.3.6.1.5.5.7.48.1"), access_location: uri(u)? };
        out.push(extension(false, &AuthorityInfoAccessSyntax(vec![ocsp]))?);
    }
    Ok(out)
}

/// subjectKeyIdentifier per RFC 5280 §4.2.1.2 method 1: SHA-1 of the key bits.
pub fn key_identifier(public_key: &PublicKey) -> Result<Vec<u8>> {
    let spki_der = public_key.to_spki_der()?;
    let spki = spki::SubjectPublicKeyInfoRef::from_der(&spki_der).map_err(enc)?;
    Ok(kb_crypto::digest(HashAlgorithm::Sha1, spki.subject_public_key.raw_bytes()))
}

fn positive_serial(serial: Option<Vec<u8>>) -> Result<der::asn1::Uint> {
    let bytes = match serial {
        Some(b) if !b.is_empty() && b.len() <= 20 => b,
        Some(_) => return Err(PkiError::CertificateMalformed("serial must be 1..=20 bytes".into())),
        None => {
            let mut b = kb_crypto::rng::random_array::<16>()?.to_vec();
            b[0] &= 0x7f;
            b[0] |= 0x01; // never a leading zero byte, never negative
            b
        }
    };
    der::asn1::Uint::new(&bytes).map_err(enc)
}

/// Issue a certificate for `subject_key`, signed by `issuer_signer`. `issuer` is the
/// issuer's certificate, or `None` for a self-signed root (then `issuer_signer` must
/// hold the subject key).
pub fn issue(
    params: &CertificateParams,
    subject_key: &PublicKey,
    issuer: Option<&Certificate>,
    issuer_signer: &dyn Signer,
) -> Result<Certificate> {
    if params.not_after <= params.not_before {
        return Err(PkiError::CertificateMalformed("notAfter must be after notBefore".into()));
    }
    let subject_der = name::encode_dn(&params.subject)?;
    let issuer_der = match issuer {
        Some(c) => c.subject_der(),
        None => {
            if issuer_signer.public_key() != subject_key {
                return Err(PkiError::CertificateMalformed("a self-signed certificate must be signed by its own key".into()));
            }
            subject_der.clone()
        }
    };
    if let Some(c) = issuer {
        if !c.is_ca() {
            return Err(PkiError::NotCa { subject: c.subject() });
        }
        if &c.public_key()? != issuer_signer.public_key() {
            return Err(PkiError::CertificateMalformed("issuer signer does not hold the issuer certificate's key".into()));
        }
    }

    let mut exts = Vec::new();
    // basicConstraints: critical with cA TRUE on CA certificates (RFC 5280 §4.2.1.9
    // MUST); omitted on end-entity certificates, where RFC 5280 allows it to be absent
    // and an empty critical one (cA FALSE is DER-encoded as nothing) is rejected by some
    // GM toolkits. See docs/certificate-profiles.md.
    if let CertKind::Root { path_len } | CertKind::Intermediate { path_len } = &params.kind {
        exts.push(extension(true, &BasicConstraints { ca: true, path_len_constraint: *path_len })?);
    }
    let ku = match &params.kind {
        CertKind::Root { .. } | CertKind::Intermediate { .. } => {
            KeyUsages::KeyCertSign | KeyUsages::CRLSign | KeyUsages::DigitalSignature
        }
        CertKind::Leaf { usage: KeyUsage::Sign } => KeyUsages::DigitalSignature | KeyUsages::NonRepudiation,
        CertKind::Leaf { usage: KeyUsage::Encrypt } => {
            KeyUsages::KeyEncipherment | KeyUsages::DataEncipherment | KeyUsages::KeyAgreement
        }
        CertKind::Leaf { usage: KeyUsage::Both } => {
            KeyUsages::DigitalSignature | KeyUsages::NonRepudiation | KeyUsages::KeyEncipherment | KeyUsages::DataEncipherment
        }
    };
    exts.push(extension(true, params.key_usage.as_ref().unwrap_or(&X509KeyUsage(ku)))?);
    exts.push(extension(false, &SubjectKeyIdentifier(OctetString::new(key_identifier(subject_key)?).map_err(enc)?))?);
    if issuer.is_some() {
        let aki = key_identifier(issuer_signer.public_key())?;
        exts.push(extension(
            false,
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(aki).map_err(enc)?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
        )?);
    }
    if !params.extended_key_usage.is_empty() {
        exts.push(extension(false, &ExtendedKeyUsage(params.extended_key_usage.clone()))?);
    }
    if !params.subject_alt_names.is_empty() {
        let names = params
            .subject_alt_names
            .iter()
            .map(|n| {
                let s = Ia5String::new(n).map_err(enc)?;
                Ok(if n.contains('@') { GeneralName::Rfc822Name(s) } else { GeneralName::DnsName(s) })
            })
            .collect::<Result<Vec<_>>>()?;
        exts.push(extension(false, &SubjectAltName(names))?);
    }
    exts.extend(params.extra_extensions.iter().cloned());

    let sig_alg = signature_algorithm(issuer_signer)?;
    let tbs = Tbs {
        version: 2,
        serial: positive_serial(params.serial.clone())?,
        signature: sig_alg.clone(),
        issuer: Any::from_der(&issuer_der).map_err(enc)?,
        validity: Validity::new(params.not_before.to_x509()?, params.not_after.to_x509()?),
        subject: Any::from_der(&subject_der).map_err(enc)?,
        spki: Any::from_der(&subject_key.to_spki_der()?).map_err(enc)?,
        extensions: Some(exts),
    };
    let tbs_der = tbs.to_der().map_err(enc)?;
    let sig = issuer_signer.sign_message(&tbs_der)?;
    let cert =
        CertOut { tbs: Any::from_der(&tbs_der).map_err(enc)?, alg: sig_alg, sig: BitString::from_bytes(&sig).map_err(enc)? };
    Certificate::from_der(&cert.to_der().map_err(enc)?)
}

/// A self-signed root.
pub fn self_signed(params: &CertificateParams, signer: &dyn Signer) -> Result<Certificate> {
    let pk = signer.public_key().clone();
    issue(params, &pk, None, signer)
}

/// An SM2 dual-certificate pair for one subject: a signing certificate for
/// `sign_key` and an encryption certificate for `enc_key`, same subject and validity.
pub fn issue_dual(
    subject: &str,
    not_before: UnixTime,
    days: i64,
    sign_key: &PublicKey,
    enc_key: &PublicKey,
    issuer: &Certificate,
    issuer_signer: &dyn Signer,
) -> Result<(Certificate, Certificate)> {
    let s = issue(&CertificateParams::leaf(subject, KeyUsage::Sign, not_before, days), sign_key, Some(issuer), issuer_signer)?;
    let e = issue(&CertificateParams::leaf(subject, KeyUsage::Encrypt, not_before, days), enc_key, Some(issuer), issuer_signer)?;
    Ok((s, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::LocalSigner;
    use kb_crypto::PrivateKey;
    use kb_types::Algorithm;

    fn signer(alg: Algorithm) -> LocalSigner {
        LocalSigner::new(PrivateKey::generate(alg).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn root_intermediate_leaf_for_each_algorithm() {
        let now = UnixTime::now();
        for alg in [Algorithm::Sm2, Algorithm::EcdsaP256, Algorithm::Rsa { bits: 2048 }] {
            let root_s = signer(alg);
            let root = self_signed(
                &CertificateParams::new("C=CN,O=KeyBridge Test,CN=Root", CertKind::Root { path_len: None }, now, 3650),
                &root_s,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(root.is_ca() && root.is_self_issued());
            assert!(root.verify_signature(root_s.public_key()).is_ok());
            let mid_s = signer(alg);
            let mid = issue(
                &CertificateParams::new(
                    "C=CN,O=KeyBridge Test,CN=Sub CA",
                    CertKind::Intermediate { path_len: Some(0) },
                    now,
                    1825,
                ),
                mid_s.public_key(),
                Some(&root),
                &root_s,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            assert!(mid.verify_signature(root_s.public_key()).is_ok());
            assert_eq!(mid.authority_key_id(), root.subject_key_id());
            let leaf_key = signer(alg);
            let mut p = CertificateParams::leaf("C=CN,O=某某建设集团有限公司,CN=张三", KeyUsage::Sign, now, 365);
            p.subject_alt_names = vec!["zs@example.cn".into(), "bid.example.cn".into()];
            let leaf = issue(&p, leaf_key.public_key(), Some(&mid), &mid_s).unwrap_or_else(|e| panic!("{e}"));
            assert!(leaf.verify_signature(mid_s.public_key()).is_ok());
            assert!(leaf.verify_signature(root_s.public_key()).is_err());
            assert_eq!(leaf.usage(), KeyUsage::Sign);
            assert_eq!(leaf.subject_cn().as_deref(), Some("张三"));
            let info = leaf.info(now, 90);
            assert_eq!(info.public_key_algorithm, alg);
            assert_eq!(info.days_left, 365);
            assert!(info.extensions.iter().any(|e| e.value == "email:zs@example.cn, DNS:bid.example.cn"));
            // Leaf cannot issue.
            let err =
                issue(&CertificateParams::leaf("CN=x", KeyUsage::Sign, now, 1), leaf_key.public_key(), Some(&leaf), &leaf_key);
            assert!(matches!(err, Err(PkiError::NotCa { .. })));
        }
    }

    #[test]
    fn dual_pair_has_sign_and_encrypt_usage() {
        let now = UnixTime::now();
        let ca_s = signer(Algorithm::Sm2);
        let ca = self_signed(&CertificateParams::new("CN=CA", CertKind::Root { path_len: None }, now, 100), &ca_s)
            .unwrap_or_else(|e| panic!("{e}"));
        let (s, e) =
            issue_dual("CN=用户", now, 30, signer(Algorithm::Sm2).public_key(), signer(Algorithm::Sm2).public_key(), &ca, &ca_s)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.usage(), KeyUsage::Sign);
        assert_eq!(e.usage(), KeyUsage::Encrypt);
        assert_eq!(s.subject(), e.subject());
        assert_ne!(s.serial_hex(), e.serial_hex());
    }

    #[test]
    fn a_ca_certificate_is_labelled_ca() {
        use crate::cert::CertificateRole;
        let now = UnixTime::now();
        let root_s = signer(Algorithm::Sm2);
        let mut p = CertificateParams::new("CN=Bare CA", CertKind::Root { path_len: None }, now, 10);
        p.key_usage = Some(X509KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign));
        let bare = self_signed(&p, &root_s).unwrap();
        assert_eq!(bare.key_usage_flags(), Some(vec!["keyCertSign", "cRLSign"]));
        let info = bare.info(now, 90);
        assert_eq!((info.role, info.role.to_string().as_str()), (CertificateRole::Ca, "CA"));
        // Not "sign+encrypt": a CA key signs (certificates and CRLs) and never decrypts.
        assert_eq!(info.usage, KeyUsage::Sign);
        assert_eq!(serde_json::to_value(info.role).unwrap(), "ca");
        // Our own CA profile (with digitalSignature too) is a CA as well.
        let ours = self_signed(&CertificateParams::new("CN=CA", CertKind::Root { path_len: None }, now, 10), &root_s).unwrap();
        assert_eq!(ours.role(), CertificateRole::Ca);
        // keyCertSign without basicConstraints (a v3 profile error some CAs make) still reads as a CA.
        let mut p = CertificateParams::leaf("CN=odd", KeyUsage::Sign, now, 10);
        p.key_usage = Some(X509KeyUsage(KeyUsages::KeyCertSign.into()));
        let odd = issue(&p, signer(Algorithm::Sm2).public_key(), Some(&ours), &root_s).unwrap();
        assert!(!odd.is_ca());
        assert_eq!(odd.role(), CertificateRole::Ca);
        // End-entity certificates keep their words.
        for (usage, word) in [(KeyUsage::Sign, "sign"), (KeyUsage::Encrypt, "encrypt"), (KeyUsage::Both, "sign+encrypt")] {
            let c = issue(
                &CertificateParams::leaf("CN=u", usage, now, 10),
                signer(Algorithm::Sm2).public_key(),
                Some(&ours),
                &root_s,
            )
            .unwrap();
            assert_eq!((c.usage(), c.role().to_string()), (usage, word.to_string()));
        }
    }

    #[test]
    fn revocation_pointers_are_read_back() {
        let now = UnixTime::now();
        let s = signer(Algorithm::Sm2);
        let mut p = CertificateParams::leaf("CN=leaf", KeyUsage::Sign, now, 30);
        p.extra_extensions = revocation_pointers(Some("http://127.0.0.1:8480/crl"), Some("http://127.0.0.1:8480/ocsp"))
            .unwrap_or_else(|e| panic!("{e}"));
        let c = issue(&p, s.public_key(), None, &s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.crl_urls(), vec!["http://127.0.0.1:8480/crl".to_string()]);
        assert_eq!(c.ocsp_urls(), vec!["http://127.0.0.1:8480/ocsp".to_string()]);
        assert!(c.ca_issuer_urls().is_empty());
        let names: Vec<_> = c.extensions().into_iter().filter_map(|e| e.name).collect();
        assert!(names.contains(&"cRLDistributionPoints".to_string()) && names.contains(&"authorityInfoAccess".to_string()));
        // Only one of them; an LDAP point is not an http URL.
        p.extra_extensions = revocation_pointers(Some("ldap://dir.example.cn/cn=CRL"), None).unwrap_or_else(|e| panic!("{e}"));
        let c = issue(&p, s.public_key(), None, &s).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.crl_urls().is_empty() && c.ocsp_urls().is_empty());
    }

    #[test]
    fn wrong_signer_is_refused() {
        let now = UnixTime::now();
        let a = signer(Algorithm::Sm2);
        let b = signer(Algorithm::Sm2);
        let r = issue(&CertificateParams::new("CN=x", CertKind::Root { path_len: None }, now, 1), b.public_key(), None, &a);
        assert!(r.is_err());
        let mut p = CertificateParams::new("CN=x", CertKind::Root { path_len: None }, now, 1);
        p.not_after = p.not_before;
        assert!(self_signed(&p, &a).is_err());
    }
}

/// A throwaway certificate authority held in memory: a self-signed root and the leaves
/// it issues, valid from yesterday for a year. For tests, benchmarks and demos only —
/// its key never leaves the process and is gone when it is dropped.
pub struct TestCa {
    /// The root's key.
    pub signer: crate::signer::LocalSigner,
    /// The root certificate.
    pub cert: Certificate,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("subject", &self.cert.subject()).finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new root with a fresh `alg` key and this subject DN.
    pub fn new(alg: kb_types::Algorithm, subject: &str) -> Result<Self> {
        let signer = crate::signer::LocalSigner::new(kb_crypto::PrivateKey::generate(alg)?);
        let params = CertificateParams::new(subject, CertKind::Root { path_len: None }, UnixTime::now().plus_days(-1), 366);
        let cert = self_signed(&params, &signer)?;
        Ok(TestCa { signer, cert })
    }

    /// A leaf certificate for `key` with this subject DN and usage.
    pub fn leaf(&self, subject: &str, key: &PublicKey, usage: KeyUsage) -> Result<Certificate> {
        let params = CertificateParams::leaf(subject, usage, UnixTime::now().plus_days(-1), 366);
        issue(&params, key, Some(&self.cert), &self.signer)
    }
}
