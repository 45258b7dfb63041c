//! X.509 certificate inspection: everything the certificate-details screen shows, as
//! plain values.

use crate::name::{self, NameAttribute};
use crate::time::{DAY, UnixTime};
use crate::{PkiError, Result, oid};
use der::asn1::ObjectIdentifier as Oid;
use der::{Decode, Encode};
use kb_crypto::{HashAlgorithm, PublicKey, SignatureScheme};
use kb_types::{Algorithm, KeyUsage};
use serde::Serialize;
use x509_cert::ext::pkix::{
    AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints, CrlDistributionPoints, ExtendedKeyUsage,
    KeyUsage as X509KeyUsage, KeyUsages, SubjectAltName, SubjectKeyIdentifier,
    crl::dp::DistributionPoint,
    name::{DistributionPointName, GeneralName},
};

/// id-ad-ocsp (RFC 5280 §4.2.2.1): an AIA entry naming an OCSP responder.
const ID_AD_OCSP: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.48.1");
/// id-ad-caIssuers: an AIA entry naming where the issuer's certificate is published.
const ID_AD_CA_ISSUERS: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.48.2");

fn http_uri(name: &GeneralName) -> Option<String> {
    match name {
        GeneralName::UniformResourceIdentifier(u) => {
            let s = u.as_str();
            let lower = s.to_ascii_lowercase();
            (lower.starts_with("http://") || lower.starts_with("https://")).then(|| s.to_string())
        }
        _ => None,
    }
}

/// A parsed certificate that keeps its exact DER (thumbprints and signatures are
/// computed over the bytes as received, never a re-encoding).
#[derive(Clone, Debug)]
pub struct Certificate {
    der: Vec<u8>,
    inner: x509_cert::Certificate,
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}
impl Eq for Certificate {}

pub use kb_types::ValidityStatus;

/// What a certificate is, as users name it: a CA certificate, or an end-entity
/// certificate for signing, encryption or both ([`KeyUsage`] is only the latter three:
/// the key slot a certificate goes with).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateRole {
    /// Issues certificates (basicConstraints cA, or keyUsage keyCertSign).
    Ca,
    /// Signing certificate (签名证书).
    Sign,
    /// Encryption certificate (加密证书).
    Encrypt,
    /// One certificate for both.
    Both,
}

impl From<KeyUsage> for CertificateRole {
    fn from(u: KeyUsage) -> Self {
        match u {
            KeyUsage::Sign => CertificateRole::Sign,
            KeyUsage::Encrypt => CertificateRole::Encrypt,
            KeyUsage::Both => CertificateRole::Both,
        }
    }
}

impl std::fmt::Display for CertificateRole {
    /// `CA`, else the [`KeyUsage`] words (`sign`, `encrypt`, `sign+encrypt`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertificateRole::Ca => f.write_str("CA"),
            CertificateRole::Sign => KeyUsage::Sign.fmt(f),
            CertificateRole::Encrypt => KeyUsage::Encrypt.fmt(f),
            CertificateRole::Both => KeyUsage::Both.fmt(f),
        }
    }
}

/// One extension, decoded for display.
#[derive(Clone, Debug, Serialize)]
pub struct ExtensionInfo {
    /// Dotted OID.
    pub oid: String,
    /// Known name, if any.
    pub name: Option<String>,
    /// Critical flag.
    pub critical: bool,
    /// Human-readable value (names for flags, hex for opaque data).
    pub value: String,
}

/// Every field the UI and CLI show, ready for JSON.
#[derive(Clone, Debug, Serialize)]
pub struct CertificateInfo {
    /// Subject, most specific first.
    pub subject: String,
    /// Subject attributes in encoding order.
    pub subject_attributes: Vec<NameAttribute>,
    /// Issuer, most specific first.
    pub issuer: String,
    /// Issuer attributes.
    pub issuer_attributes: Vec<NameAttribute>,
    /// Serial number, upper-case hex.
    pub serial: String,
    /// X.509 version (1–3).
    pub version: u8,
    /// notBefore.
    pub not_before: UnixTime,
    /// notAfter.
    pub not_after: UnixTime,
    /// Status at the time of inspection.
    pub status: ValidityStatus,
    /// Whole days until notAfter (negative when expired).
    pub days_left: i64,
    /// Public-key algorithm.
    pub public_key_algorithm: Algorithm,
    /// Display form, e.g. `SM2 (256 bit)`, `RSA (2048 bit)`, `ECDSA P-256`.
    pub public_key_description: String,
    /// Signature algorithm name or OID.
    pub signature_algorithm: String,
    /// Signing, encryption or both (from keyUsage): which key slot it belongs with.
    pub usage: KeyUsage,
    /// What to call it: CA, signing, encryption or both (the label the CLI and UI show).
    pub role: CertificateRole,
    /// keyUsage flag names.
    pub key_usage: Vec<String>,
    /// extKeyUsage names or OIDs.
    pub extended_key_usage: Vec<String>,
    /// Whether this is a CA certificate.
    pub is_ca: bool,
    /// All extensions.
    pub extensions: Vec<ExtensionInfo>,
    /// SHA-1 thumbprint (the default one users compare).
    pub thumbprint_sha1: String,
}

fn malformed(e: impl std::fmt::Display) -> PkiError {
    PkiError::CertificateMalformed(e.to_string())
}

/// Days within which a certificate counts as near expiry, by default (DESIGN: 90).
pub const DEFAULT_WARN_DAYS: i64 = 90;

impl Certificate {
    /// Parse DER.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let inner = x509_cert::Certificate::from_der(der).map_err(malformed)?;
        Ok(Self { der: der.to_vec(), inner })
    }

    /// Parse one PEM certificate.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let (label, der) = der::pem::decode_vec(pem.trim().as_bytes()).map_err(malformed)?;
        if label != "CERTIFICATE" {
            return Err(PkiError::CertificateMalformed(format!("PEM label {label}, want CERTIFICATE")));
        }
        Self::from_der(&der)
    }

    /// Parse whatever a user or a middleware hands us: DER, PEM, or bare base64 of DER
    /// (common in Chinese CA middleware APIs).
    pub fn from_any(bytes: &[u8]) -> Result<Self> {
        if bytes.first() == Some(&0x30) {
            return Self::from_der(bytes);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| malformed("neither DER nor text"))?;
        if text.contains("-----BEGIN") {
            return Self::from_pem(text);
        }
        let cleaned: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64_decode(&cleaned).ok_or_else(|| malformed("not DER, PEM or base64"))?;
        Self::from_der(&der)
    }

    /// Every certificate in a PEM bundle.
    pub fn load_pem_chain(pem: &str) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        let mut rest = pem;
        while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
            let end_marker = "-----END CERTIFICATE-----";
            let end = rest[start..].find(end_marker).ok_or_else(|| malformed("unterminated PEM"))? + start + end_marker.len();
            out.push(Self::from_pem(&rest[start..end])?);
            rest = &rest[end..];
        }
        Ok(out)
    }

    /// The exact DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM.
    pub fn to_pem(&self) -> String {
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &self.der).unwrap_or_default()
    }

    /// The parsed structure.
    pub fn x509(&self) -> &x509_cert::Certificate {
        &self.inner
    }

    /// Subject, most specific first.
    pub fn subject(&self) -> String {
        name::display(self.inner.tbs_certificate().subject())
    }

    /// Subject common name.
    pub fn subject_cn(&self) -> Option<String> {
        name::common_name(self.inner.tbs_certificate().subject())
    }

    /// Issuer, most specific first.
    pub fn issuer(&self) -> String {
        name::display(self.inner.tbs_certificate().issuer())
    }

    /// DER of the subject name (for exact issuer matching).
    pub fn subject_der(&self) -> Vec<u8> {
        self.inner.tbs_certificate().subject().to_der().unwrap_or_default()
    }

    /// DER of the issuer name.
    pub fn issuer_der(&self) -> Vec<u8> {
        self.inner.tbs_certificate().issuer().to_der().unwrap_or_default()
    }

    /// Serial number bytes (big-endian, as encoded).
    pub fn serial_bytes(&self) -> &[u8] {
        self.inner.tbs_certificate().serial_number().as_bytes()
    }

    /// Serial number as upper-case hex without leading zero padding byte.
    pub fn serial_hex(&self) -> String {
        let b = self.serial_bytes();
        let b = if b.len() > 1 && b[0] == 0 { &b[1..] } else { b };
        hex::encode_upper(b)
    }

    /// notBefore.
    pub fn not_before(&self) -> UnixTime {
        UnixTime::from_x509(&self.inner.tbs_certificate().validity().not_before)
    }

    /// notAfter.
    pub fn not_after(&self) -> UnixTime {
        UnixTime::from_x509(&self.inner.tbs_certificate().validity().not_after)
    }

    /// Status at `at`, with `warn_days` as the near-expiry window.
    pub fn validity_status(&self, at: UnixTime, warn_days: i64) -> ValidityStatus {
        if at < self.not_before() {
            ValidityStatus::NotYetValid
        } else if at > self.not_after() {
            ValidityStatus::Expired
        } else if self.not_after().0 - at.0 <= warn_days * DAY {
            ValidityStatus::ExpiringSoon
        } else {
            ValidityStatus::Valid
        }
    }

    /// Whole days from `at` until notAfter (negative once expired).
    pub fn days_left(&self, at: UnixTime) -> i64 {
        (self.not_after().0 - at.0).div_euclid(DAY)
    }

    /// Fail with `Expired`/`NotYetValid` unless valid at `at`.
    pub fn check_validity(&self, at: UnixTime) -> Result<()> {
        match self.validity_status(at, 0) {
            ValidityStatus::Expired => {
                Err(PkiError::Expired { subject: self.subject(), not_after: self.not_after().to_rfc3339() })
            }
            ValidityStatus::NotYetValid => {
                Err(PkiError::NotYetValid { subject: self.subject(), not_before: self.not_before().to_rfc3339() })
            }
            _ => Ok(()),
        }
    }

    /// DER of the SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Result<Vec<u8>> {
        self.inner.tbs_certificate().subject_public_key_info().to_der().map_err(malformed)
    }

    /// The public key.
    pub fn public_key(&self) -> Result<PublicKey> {
        Ok(PublicKey::from_spki_der(&self.spki_der()?)?)
    }

    /// The raw subjectPublicKey bits (what SKI method 1 hashes).
    pub fn public_key_bits(&self) -> &[u8] {
        self.inner.tbs_certificate().subject_public_key_info().subject_public_key.raw_bytes()
    }

    /// DER of the TBSCertificate, exactly as received.
    pub fn tbs_der(&self) -> Result<Vec<u8>> {
        signed_part(&self.der).map_err(malformed)
    }

    /// The signature scheme of the issuer's signature, if supported.
    pub fn signature_scheme(&self) -> Option<SignatureScheme> {
        oid::scheme_from_sig_oid(&self.inner.signature_algorithm().oid)
    }

    /// Verify this certificate's signature with `issuer_key`.
    pub fn verify_signature(&self, issuer_key: &PublicKey) -> Result<()> {
        let scheme = self.signature_scheme().ok_or_else(|| {
            PkiError::Crypto(kb_crypto::CryptoError::Unsupported(format!(
                "certificate signature algorithm {}",
                self.inner.signature_algorithm().oid
            )))
        })?;
        let sig = self.inner.signature().as_bytes().ok_or_else(|| malformed("signature has unused bits"))?;
        Ok(issuer_key.verify(&scheme, &self.tbs_der()?, sig)?)
    }

    /// Thumbprint (fingerprint) of the DER in upper-case hex; SHA-1 is what users compare.
    pub fn thumbprint(&self, alg: HashAlgorithm) -> String {
        hex::encode_upper(kb_crypto::digest(alg, &self.der))
    }

    fn ext<'a, T: Decode<'a> + der::oid::AssociatedOid>(&'a self) -> Option<(bool, T)> {
        self.inner.tbs_certificate().get_extension::<T>().ok().flatten()
    }

    /// basicConstraints: `(ca, pathLen)`.
    pub fn basic_constraints(&self) -> Option<(bool, Option<u8>)> {
        self.ext::<BasicConstraints>().map(|(_, b)| (b.ca, b.path_len_constraint))
    }

    /// Whether this is a CA certificate (basicConstraints cA = TRUE).
    pub fn is_ca(&self) -> bool {
        matches!(self.basic_constraints(), Some((true, _)))
    }

    /// keyUsage flags, if the extension is present.
    pub fn key_usage_flags(&self) -> Option<Vec<&'static str>> {
        self.ext::<X509KeyUsage>()
            .map(|(_, ku)| KU_NAMES.iter().filter(|(flag, _)| ku.0.contains(*flag)).map(|(_, n)| *n).collect())
    }

    /// Whether keyUsage allows `flag` (absent extension allows everything).
    pub fn allows(&self, flag: KeyUsages) -> bool {
        self.ext::<X509KeyUsage>().map(|(_, ku)| ku.0.contains(flag)).unwrap_or(true)
    }

    /// extKeyUsage OIDs.
    pub fn extended_key_usage(&self) -> Vec<Oid> {
        self.ext::<ExtendedKeyUsage>().map(|(_, e)| e.0).unwrap_or_default()
    }

    /// Signing, encryption or both — what the dual-certificate model needs to know.
    /// keyCertSign and cRLSign count as signing (a CA key signs), so a CA certificate
    /// with only those is a signing one; [`Certificate::role`] tells it is a CA.
    pub fn usage(&self) -> KeyUsage {
        let Some((_, ku)) = self.ext::<X509KeyUsage>() else { return KeyUsage::Both };
        let sign = ku.0.contains(KeyUsages::DigitalSignature)
            || ku.0.contains(KeyUsages::NonRepudiation)
            || ku.0.contains(KeyUsages::KeyCertSign)
            || ku.0.contains(KeyUsages::CRLSign);
        let enc = ku.0.contains(KeyUsages::KeyEncipherment)
            || ku.0.contains(KeyUsages::DataEncipherment)
            || ku.0.contains(KeyUsages::KeyAgreement);
        match (sign, enc) {
            (true, false) => KeyUsage::Sign,
            (false, true) => KeyUsage::Encrypt,
            _ => KeyUsage::Both,
        }
    }

    /// What the certificate is, in the words users see: a CA certificate (basicConstraints
    /// cA TRUE, or keyUsage keyCertSign), else a signing, encryption or dual-use one.
    pub fn role(&self) -> CertificateRole {
        let cert_sign = self.ext::<X509KeyUsage>().is_some_and(|(_, ku)| ku.0.contains(KeyUsages::KeyCertSign));
        if self.is_ca() || cert_sign { CertificateRole::Ca } else { self.usage().into() }
    }

    /// subjectKeyIdentifier.
    pub fn subject_key_id(&self) -> Option<Vec<u8>> {
        self.ext::<SubjectKeyIdentifier>().map(|(_, s)| s.0.as_bytes().to_vec())
    }

    /// authorityKeyIdentifier keyIdentifier.
    pub fn authority_key_id(&self) -> Option<Vec<u8>> {
        self.ext::<AuthorityKeyIdentifier>().and_then(|(_, a)| a.key_identifier).map(|k| k.as_bytes().to_vec())
    }

    /// The http(s) URLs of the certificate's CRL distribution points (RFC 5280
    /// §4.2.1.13) that cover every reason and are published by the issuer itself: a
    /// point limited to some reasons or naming another CRL issuer cannot say "good".
    /// LDAP and other schemes are left out.
    pub fn crl_urls(&self) -> Vec<String> {
        let Some((_, points)) = self.ext::<CrlDistributionPoints>() else { return Vec::new() };
        points
            .0
            .iter()
            .filter(|p: &&DistributionPoint| p.reasons.is_none() && p.crl_issuer.is_none())
            .filter_map(|p| match &p.distribution_point {
                Some(DistributionPointName::FullName(names)) => Some(names.iter().filter_map(http_uri).collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The http(s) URLs of the OCSP responders named in authorityInfoAccess.
    pub fn ocsp_urls(&self) -> Vec<String> {
        self.aia_urls(&ID_AD_OCSP)
    }

    /// The http(s) URLs where the issuer's certificate is published (AIA caIssuers).
    pub fn ca_issuer_urls(&self) -> Vec<String> {
        self.aia_urls(&ID_AD_CA_ISSUERS)
    }

    fn aia_urls(&self, method: &Oid) -> Vec<String> {
        let Some((_, aia)) = self.ext::<AuthorityInfoAccessSyntax>() else { return Vec::new() };
        aia.0.iter().filter(|a| a.access_method == *method).filter_map(|a| http_uri(&a.access_location)).collect()
    }

    /// Whether subject and issuer are the same name.
    pub fn is_self_issued(&self) -> bool {
        self.subject_der() == self.issuer_der()
    }

    /// Every extension, decoded for display.
    pub fn extensions(&self) -> Vec<ExtensionInfo> {
        let Some(exts) = self.inner.tbs_certificate().extensions() else { return Vec::new() };
        exts.iter()
            .map(|e| ExtensionInfo {
                oid: e.extn_id.to_string(),
                name: oid::name(&e.extn_id).map(str::to_string),
                critical: e.critical,
                value: describe_extension(&e.extn_id, e.extn_value.as_bytes()),
            })
            .collect()
    }

    /// Everything at once, for the UI, the CLI and `--json`.
    pub fn info(&self, at: UnixTime, warn_days: i64) -> CertificateInfo {
        let tbs = self.inner.tbs_certificate();
        let pk = self.public_key().ok();
        let alg = pk.as_ref().map(|p| p.algorithm()).unwrap_or(Algorithm::Rsa { bits: 0 });
        CertificateInfo {
            subject: self.subject(),
            subject_attributes: name::attributes(tbs.subject()),
            issuer: self.issuer(),
            issuer_attributes: name::attributes(tbs.issuer()),
            serial: self.serial_hex(),
            version: tbs.version() as u8 + 1,
            not_before: self.not_before(),
            not_after: self.not_after(),
            status: self.validity_status(at, warn_days),
            days_left: self.days_left(at),
            public_key_algorithm: alg,
            public_key_description: match (pk.is_some(), alg) {
                (false, _) => format!("unsupported ({})", tbs.subject_public_key_info().algorithm.oid),
                (true, Algorithm::Sm2) => "SM2 (256 bit)".into(),
                (true, Algorithm::Rsa { bits }) => format!("RSA ({bits} bit)"),
                (true, Algorithm::EcdsaP256) => "ECDSA P-256 (256 bit)".into(),
            },
            signature_algorithm: oid::name(&self.inner.signature_algorithm().oid)
                .map(str::to_string)
                .unwrap_or_else(|| self.inner.signature_algorithm().oid.to_string()),
            usage: self.usage(),
            role: self.role(),
            key_usage: self.key_usage_flags().unwrap_or_default().into_iter().map(str::to_string).collect(),
            extended_key_usage: self.extended_key_usage().iter().map(eku_name).collect(),
            is_ca: self.is_ca(),
            extensions: self.extensions(),
            thumbprint_sha1: self.thumbprint(HashAlgorithm::Sha1),
        }
    }
}

/// The first element of a signed structure (`SEQUENCE { tbs, algorithm, signature }`),
/// sliced from the bytes as received: signatures cover those bytes, never a re-encoding.
pub(crate) fn signed_part(der: &[u8]) -> der::Result<Vec<u8>> {
    let outer = der::asn1::AnyRef::from_der(der)?;
    let mut reader = der::SliceReader::new(outer.value())?;
    let tbs: der::asn1::AnyRef<'_> = der::Decode::decode(&mut reader)?;
    tbs.to_der()
}

const KU_NAMES: &[(KeyUsages, &str)] = &[
    (KeyUsages::DigitalSignature, "digitalSignature"),
    (KeyUsages::NonRepudiation, "nonRepudiation"),
    (KeyUsages::KeyEncipherment, "keyEncipherment"),
    (KeyUsages::DataEncipherment, "dataEncipherment"),
    (KeyUsages::KeyAgreement, "keyAgreement"),
    (KeyUsages::KeyCertSign, "keyCertSign"),
    (KeyUsages::CRLSign, "cRLSign"),
    (KeyUsages::EncipherOnly, "encipherOnly"),
    (KeyUsages::DecipherOnly, "decipherOnly"),
];

fn eku_name(o: &Oid) -> String {
    match o.to_string().as_str() {
        "1.3.6.1.5.5.7.3.1" => "serverAuth".into(),
        "1.3.6.1.5.5.7.3.2" => "clientAuth".into(),
        "1.3.6.1.5.5.7.3.3" => "codeSigning".into(),
        "1.3.6.1.5.5.7.3.4" => "emailProtection".into(),
        "1.3.6.1.5.5.7.3.8" => "timeStamping".into(),
        "1.3.6.1.5.5.7.3.9" => "OCSPSigning".into(),
        other => other.to_string(),
    }
}

fn general_name(g: &GeneralName) -> String {
    match g {
        GeneralName::DnsName(s) => format!("DNS:{}", s.as_str()),
        GeneralName::Rfc822Name(s) => format!("email:{}", s.as_str()),
        GeneralName::UniformResourceIdentifier(s) => format!("URI:{}", s.as_str()),
        GeneralName::IpAddress(o) => match o.as_bytes() {
            [a, b, c, d] => format!("IP:{a}.{b}.{c}.{d}"),
            other => format!("IP:{}", hex::encode(other)),
        },
        GeneralName::DirectoryName(n) => format!("DirName:{}", name::display(n)),
        other => format!("{other:?}"),
    }
}

fn describe_extension(id: &Oid, value: &[u8]) -> String {
    let fallback = || hex::encode_upper(value);
    match id.to_string().as_str() {
        "2.5.29.15" => X509KeyUsage::from_der(value)
            .map(|ku| KU_NAMES.iter().filter(|(f, _)| ku.0.contains(*f)).map(|(_, n)| *n).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|_| fallback()),
        "2.5.29.37" => ExtendedKeyUsage::from_der(value)
            .map(|e| e.0.iter().map(eku_name).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|_| fallback()),
        "2.5.29.19" => BasicConstraints::from_der(value)
            .map(|b| match (b.ca, b.path_len_constraint) {
                (true, Some(n)) => format!("CA:TRUE, pathlen:{n}"),
                (true, None) => "CA:TRUE".into(),
                (false, _) => "CA:FALSE".into(),
            })
            .unwrap_or_else(|_| fallback()),
        "2.5.29.14" => {
            SubjectKeyIdentifier::from_der(value).map(|s| hex::encode_upper(s.0.as_bytes())).unwrap_or_else(|_| fallback())
        }
        "2.5.29.35" => AuthorityKeyIdentifier::from_der(value)
            .map(|a| a.key_identifier.map(|k| format!("keyid:{}", hex::encode_upper(k.as_bytes()))).unwrap_or_default())
            .unwrap_or_else(|_| fallback()),
        "2.5.29.17" => SubjectAltName::from_der(value)
            .map(|s| s.0.iter().map(general_name).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|_| fallback()),
        _ => fallback(),
    }
}

/// Minimal standard base64 decoder (no external dependency for one function).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    };
    let bytes = s.trim_end_matches('=').as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known() {
        assert_eq!(base64_decode("aGVsbG8gd29ybGQ=").as_deref(), Some(&b"hello world"[..]));
        assert_eq!(base64_decode("AAEC").as_deref(), Some(&[0u8, 1, 2][..]));
        assert_eq!(base64_decode("A"), None);
        assert_eq!(base64_decode("!!!!"), None);
    }

    #[test]
    fn garbage_is_a_clean_error() {
        for bad in [&b""[..], b"\x30\x03\x02\x01", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", b"not a cert"]
        {
            let e = Certificate::from_any(bad).err();
            assert!(matches!(e, Some(PkiError::CertificateMalformed(_))), "{bad:?} → {e:?}");
        }
    }
}
