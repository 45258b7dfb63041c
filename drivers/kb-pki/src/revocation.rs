//! Revocation: certificate revocation lists (RFC 5280 §5) and the status every front end
//! shows — good, revoked (with date and reason), or unknown **with why**. Offline, stale,
//! unsigned or foreign revocation data never reads as good.
//!
//! What a CRL must satisfy before it says anything about a certificate
//! ([`check_crl`]):
//! - it names the certificate's issuer, and that issuer's key signed it (a CA with a
//!   keyUsage extension must allow `cRLSign`);
//! - it is current: `thisUpdate` not in the future (5 minutes' clock skew allowed) and
//!   `nextUpdate` (when present) not passed — a stale CRL is `unknown (stale)`;
//! - it is a complete CRL for the whole scope: delta CRLs, indirect CRLs and any critical
//!   extension this module does not implement make it `unknown (unsupported)` rather
//!   than silently narrower than it claims;
//! - an entry with a critical extension it does not understand is `unknown` too.
//!
//! A listed serial is `revoked` with the entry's date and reason; `certificateHold` is
//! reported as revoked with that reason (the certificate must not be used while held).

use crate::cert::Certificate;
use crate::time::UnixTime;
use crate::{PkiError, Result};
use der::{Decode, Encode};
use kb_types::ErrorCode;
use serde::Serialize;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::ext::pkix::KeyUsages;
use x509_cert::ext::pkix::crl::CrlNumber;

/// Clock skew tolerated on a CRL's `thisUpdate`.
pub const CLOCK_SKEW_SECS: i64 = 300;

const ID_CE_CRL_NUMBER: &str = "2.5.29.20";
const ID_CE_CRL_REASONS: &str = "2.5.29.21";
const ID_CE_INVALIDITY_DATE: &str = "2.5.29.24";
const ID_CE_AUTHORITY_KEY_IDENTIFIER: &str = "2.5.29.35";

/// Why a certificate was revoked (RFC 5280 §5.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// unspecified (0), or no reason given.
    Unspecified,
    /// keyCompromise (1).
    KeyCompromise,
    /// cACompromise (2).
    CaCompromise,
    /// affiliationChanged (3).
    AffiliationChanged,
    /// superseded (4).
    Superseded,
    /// cessationOfOperation (5).
    CessationOfOperation,
    /// certificateHold (6): suspended, may be released.
    CertificateHold,
    /// removeFromCRL (8): only meaningful in delta CRLs.
    RemoveFromCrl,
    /// privilegeWithdrawn (9).
    PrivilegeWithdrawn,
    /// aACompromise (10).
    AaCompromise,
}

pub(crate) fn reason_from_x509(r: CrlReason) -> RevocationReason {
    RevocationReason::from_x509(r)
}

impl RevocationReason {
    fn from_x509(r: CrlReason) -> Self {
        match r {
            CrlReason::Unspecified => Self::Unspecified,
            CrlReason::KeyCompromise => Self::KeyCompromise,
            CrlReason::CaCompromise => Self::CaCompromise,
            CrlReason::AffiliationChanged => Self::AffiliationChanged,
            CrlReason::Superseded => Self::Superseded,
            CrlReason::CessationOfOperation => Self::CessationOfOperation,
            CrlReason::CertificateHold => Self::CertificateHold,
            CrlReason::RemoveFromCRL => Self::RemoveFromCrl,
            CrlReason::PrivilegeWithdrawn => Self::PrivilegeWithdrawn,
            CrlReason::AaCompromise => Self::AaCompromise,
        }
    }

    /// The RFC 5280 name (`keyCompromise`).
    pub fn rfc_name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::CaCompromise => "cACompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::CertificateHold => "certificateHold",
            Self::RemoveFromCrl => "removeFromCRL",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
            Self::AaCompromise => "aACompromise",
        }
    }
}

/// Why the revocation status is not known. Never "good".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum UnknownReason {
    /// Nothing to ask: no CRL, no responder configured or named by the certificate.
    NoSource,
    /// The source could not be reached (network, time-out, size cap).
    Offline {
        /// What failed.
        detail: String,
    },
    /// The CRL's `nextUpdate` has passed.
    Stale {
        /// Its nextUpdate.
        next_update: UnixTime,
    },
    /// The CRL's `thisUpdate` is in the future.
    NotYetValid {
        /// Its thisUpdate.
        this_update: UnixTime,
    },
    /// The CRL is for another issuer.
    WrongIssuer,
    /// The issuer's key did not sign it, or the issuer may not sign CRLs.
    BadSignature {
        /// What failed.
        detail: String,
    },
    /// It is not a parseable CRL.
    Malformed {
        /// What failed.
        detail: String,
    },
    /// The OCSP responder did not answer (`tryLater`, `unauthorized`, …).
    ResponderRefused {
        /// Its responseStatus.
        status: String,
    },
    /// The OCSP response answers another request (its nonce differs).
    Replayed {
        /// What differed.
        detail: String,
    },
    /// The OCSP response says nothing about this certificate.
    OtherCertificate,
    /// The OCSP responder does not know the certificate (`unknown`).
    ResponderUnknown,
    /// A delta or indirect CRL, or a critical extension this implementation does not
    /// know: it cannot be trusted to cover this certificate.
    Unsupported {
        /// What it has.
        detail: String,
    },
}

/// Where a status came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationSource {
    /// A CRL (with its number, when it has one).
    Crl {
        /// The cRLNumber in hex.
        number: Option<String>,
    },
    /// An OCSP response.
    Ocsp {
        /// Who signed it.
        responder: String,
        /// Its producedAt.
        produced_at: UnixTime,
    },
}

/// A certificate's revocation status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum RevocationStatus {
    /// Not revoked according to current, verified data.
    Good {
        /// Where from.
        source: RevocationSource,
        /// The data's thisUpdate.
        this_update: UnixTime,
        /// Its nextUpdate, when given (a cache may keep it until then).
        next_update: Option<UnixTime>,
    },
    /// Revoked.
    Revoked {
        /// When (the entry's revocationDate).
        at: UnixTime,
        /// Why, when given.
        reason: Option<RevocationReason>,
        /// Where from.
        source: RevocationSource,
    },
    /// Not known, and why.
    Unknown {
        /// Why.
        why: UnknownReason,
    },
}

impl RevocationStatus {
    /// The stable code of a status that must stop the certificate's use: revoked →
    /// `certificate_revoked`, unknown → `revocation_unknown`; good → `None`.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Good { .. } => None,
            Self::Revoked { .. } => Some(ErrorCode::CertificateRevoked),
            Self::Unknown { .. } => Some(ErrorCode::RevocationUnknown),
        }
    }

    /// True only for verified, current "not revoked".
    pub fn is_good(&self) -> bool {
        matches!(self, Self::Good { .. })
    }

    fn unknown(why: UnknownReason) -> Self {
        Self::Unknown { why }
    }
}

/// One revoked entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The serial number's content bytes (as in [`Certificate::serial_bytes`]).
    pub serial: Vec<u8>,
    /// revocationDate.
    pub at: UnixTime,
    /// reasonCode, when present.
    pub reason: Option<RevocationReason>,
    /// invalidityDate, when present.
    pub invalid_since: Option<UnixTime>,
    /// The OIDs of critical entry extensions this module does not understand.
    unknown_critical: Vec<String>,
}

/// A parsed CRL. Parsing checks the structure only; [`check_crl`] checks the rest.
#[derive(Clone, Debug)]
pub struct Crl {
    der: Vec<u8>,
    inner: CertificateList,
}

fn malformed(e: impl std::fmt::Display) -> PkiError {
    PkiError::CrlMalformed(e.to_string())
}

impl Crl {
    /// From DER.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let inner = CertificateList::from_der(der).map_err(malformed)?;
        // The signed part must be the bytes received (no re-encoding surprises).
        Ok(Self { der: der.to_vec(), inner })
    }

    /// From PEM (`X509 CRL`).
    pub fn from_pem(pem: &str) -> Result<Self> {
        let (label, der) = der::pem::decode_vec(pem.trim().as_bytes()).map_err(malformed)?;
        if label != "X509 CRL" {
            return Err(malformed(format!("PEM label {label}, expected X509 CRL")));
        }
        Self::from_der(&der)
    }

    /// From DER or PEM.
    pub fn from_any(bytes: &[u8]) -> Result<Self> {
        match std::str::from_utf8(bytes) {
            Ok(s) if s.trim_start().starts_with("-----BEGIN") => Self::from_pem(s),
            _ => Self::from_der(bytes),
        }
    }

    /// The DER received.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM.
    pub fn to_pem(&self) -> String {
        der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &self.der).unwrap_or_default()
    }

    /// The issuer name, for display.
    pub fn issuer(&self) -> String {
        crate::name::display(&self.inner.tbs_cert_list.issuer)
    }

    fn issuer_der(&self) -> Vec<u8> {
        self.inner.tbs_cert_list.issuer.to_der().unwrap_or_default()
    }

    /// thisUpdate.
    pub fn this_update(&self) -> UnixTime {
        UnixTime::from_x509(&self.inner.tbs_cert_list.this_update)
    }

    /// nextUpdate, when present.
    pub fn next_update(&self) -> Option<UnixTime> {
        self.inner.tbs_cert_list.next_update.as_ref().map(UnixTime::from_x509)
    }

    /// The cRLNumber in hex, when present.
    pub fn number(&self) -> Option<String> {
        let ext = self.extensions().iter().find(|e| e.extn_id.to_string() == ID_CE_CRL_NUMBER)?;
        let n = CrlNumber::from_der(ext.extn_value.as_bytes()).ok()?;
        Some(hex::encode_upper(n.0.as_bytes()))
    }

    fn extensions(&self) -> &[x509_cert::ext::Extension] {
        self.inner.tbs_cert_list.crl_extensions.as_deref().unwrap_or_default()
    }

    /// The revoked entries.
    pub fn entries(&self) -> Vec<RevokedEntry> {
        let list = self.inner.tbs_cert_list.revoked_certificates.as_deref().unwrap_or_default();
        list.iter()
            .map(|r| {
                let exts = r.crl_entry_extensions.as_deref().unwrap_or_default();
                let mut e = RevokedEntry {
                    serial: r.serial_number.as_bytes().to_vec(),
                    at: UnixTime::from_x509(&r.revocation_date),
                    reason: None,
                    invalid_since: None,
                    unknown_critical: Vec::new(),
                };
                for x in exts {
                    match x.extn_id.to_string().as_str() {
                        ID_CE_CRL_REASONS => {
                            e.reason = CrlReason::from_der(x.extn_value.as_bytes()).ok().map(RevocationReason::from_x509);
                            if e.reason.is_none() {
                                e.unknown_critical.push(format!("{} (unreadable)", x.extn_id));
                            }
                        }
                        ID_CE_INVALIDITY_DATE => {
                            e.invalid_since = der::asn1::GeneralizedTime::from_der(x.extn_value.as_bytes())
                                .ok()
                                .map(|t| UnixTime(t.to_unix_duration().as_secs() as i64));
                        }
                        _ if x.critical => e.unknown_critical.push(x.extn_id.to_string()),
                        _ => {}
                    }
                }
                e
            })
            .collect()
    }

    /// Verify the CRL's signature with `issuer`'s key (which must be allowed to sign CRLs).
    pub fn verify_signature(&self, issuer: &Certificate) -> Result<()> {
        if issuer.key_usage_flags().is_some() && !issuer.allows(KeyUsages::CRLSign) {
            return Err(PkiError::CrlSignatureInvalid(format!("'{}' may not sign CRLs (keyUsage)", issuer.subject())));
        }
        let scheme = crate::oid::scheme_from_sig_oid(&self.inner.signature_algorithm.oid).ok_or_else(|| {
            PkiError::CrlSignatureInvalid(format!("unsupported signature algorithm {}", self.inner.signature_algorithm.oid))
        })?;
        if self.inner.signature_algorithm != self.inner.tbs_cert_list.signature {
            return Err(PkiError::CrlSignatureInvalid("the two signature algorithm fields differ".into()));
        }
        let tbs = crate::cert::signed_part(&self.der).map_err(malformed)?;
        let sig = self.inner.signature.as_bytes().ok_or_else(|| malformed("signature has unused bits"))?;
        issuer
            .public_key()?
            .verify(&scheme, &tbs, sig)
            .map_err(|e| PkiError::CrlSignatureInvalid(format!("does not verify with the key of '{}': {e}", issuer.subject())))
    }

    /// What this CRL cannot vouch for by its CRL extensions: a delta or indirect CRL, or a
    /// critical extension not implemented here.
    fn unsupported(&self) -> Option<String> {
        for x in self.extensions() {
            let oid = x.extn_id.to_string();
            match oid.as_str() {
                ID_CE_CRL_NUMBER | ID_CE_AUTHORITY_KEY_IDENTIFIER => {}
                // deltaCRLIndicator: only a delta on top of a base this module does not merge.
                "2.5.29.27" => return Some("a delta CRL".into()),
                // issuingDistributionPoint: its scope (only some certificates, some
                // reasons, indirect) is not evaluated, so such a CRL is not trusted to be
                // complete for this certificate.
                "2.5.29.28" => return Some("an issuingDistributionPoint (partitioned or indirect CRL)".into()),
                _ if x.critical => return Some(format!("the critical extension {oid}")),
                _ => {}
            }
        }
        None
    }
}

/// The status of `cert` according to `crl`, which `issuer` (the certificate's issuer, from
/// a verified chain) must have signed, at time `now`. See the module docs.
pub fn check_crl(cert: &Certificate, issuer: &Certificate, crl: &Crl, now: UnixTime) -> RevocationStatus {
    if crl.issuer_der() != cert.issuer_der() || issuer.subject_der() != cert.issuer_der() {
        return RevocationStatus::unknown(UnknownReason::WrongIssuer);
    }
    if let Err(e) = crl.verify_signature(issuer) {
        return RevocationStatus::unknown(UnknownReason::BadSignature { detail: e.to_string() });
    }
    if let Some(detail) = crl.unsupported() {
        return RevocationStatus::unknown(UnknownReason::Unsupported { detail });
    }
    let this_update = crl.this_update();
    if this_update.0 > now.0 + CLOCK_SKEW_SECS {
        return RevocationStatus::unknown(UnknownReason::NotYetValid { this_update });
    }
    let next_update = crl.next_update();
    if let Some(next) = next_update
        && next.0 < now.0
    {
        return RevocationStatus::unknown(UnknownReason::Stale { next_update: next });
    }
    let source = RevocationSource::Crl { number: crl.number() };
    let serial = cert.serial_bytes();
    if let Some(e) = crl.entries().into_iter().find(|e| e.serial == serial) {
        if !e.unknown_critical.is_empty() {
            return RevocationStatus::unknown(UnknownReason::Unsupported {
                detail: format!("the entry has critical extensions {}", e.unknown_critical.join(", ")),
            });
        }
        return RevocationStatus::Revoked { at: e.at, reason: e.reason, source };
    }
    RevocationStatus::Good { source, this_update, next_update }
}

/// One certificate to list on a CRL.
#[derive(Clone, Debug)]
pub struct CrlEntry {
    /// Serial number content bytes (as [`Certificate::serial_bytes`]).
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub at: UnixTime,
    /// Why (`None`: no reasonCode, as RFC 5280 asks for unspecified).
    pub reason: Option<RevocationReason>,
}

/// Issue a CRL (v2, with cRLNumber and authorityKeyIdentifier) signed by `issuer`'s key
/// through `signer`: for the dev CA and tests.
pub fn issue_crl(
    issuer: &Certificate,
    signer: &dyn crate::Signer,
    entries: &[CrlEntry],
    this_update: UnixTime,
    next_update: UnixTime,
    number: u64,
) -> Result<Crl> {
    use der::asn1::{BitString, OctetString};
    use x509_cert::crl::{RevokedCert, TbsCertList};
    use x509_cert::ext::Extension;
    use x509_cert::serial_number::SerialNumber;
    let enc = |e: der::Error| PkiError::CrlMalformed(format!("encoding: {e}"));
    if next_update.0 <= this_update.0 {
        return Err(PkiError::CrlMalformed("nextUpdate must be after thisUpdate".into()));
    }
    let alg = crate::issue::signature_algorithm(signer)?;
    let revoked: Vec<RevokedCert> = entries
        .iter()
        .map(|e| {
            let exts = match e.reason {
                None | Some(RevocationReason::Unspecified) => None,
                Some(r) => Some(vec![Extension {
                    extn_id: der::oid::ObjectIdentifier::new_unwrap(ID_CE_CRL_REASONS),
                    critical: false,
                    extn_value: OctetString::new(reason_to_x509(r).to_der().map_err(enc)?).map_err(enc)?,
                }]),
            };
            Ok(RevokedCert {
                serial_number: SerialNumber::new(&e.serial).map_err(enc)?,
                revocation_date: e.at.to_x509()?,
                crl_entry_extensions: exts,
            })
        })
        .collect::<Result<_>>()?;
    let mut exts = vec![Extension {
        extn_id: der::oid::ObjectIdentifier::new_unwrap(ID_CE_CRL_NUMBER),
        critical: false,
        extn_value: OctetString::new(CrlNumber(der::asn1::Uint::new(&number.to_be_bytes()).map_err(enc)?).to_der().map_err(enc)?)
            .map_err(enc)?,
    }];
    if let Some(kid) = issuer.subject_key_id() {
        let aki = x509_cert::ext::pkix::AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(kid).map_err(enc)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        exts.push(Extension {
            extn_id: der::oid::ObjectIdentifier::new_unwrap(ID_CE_AUTHORITY_KEY_IDENTIFIER),
            critical: false,
            extn_value: OctetString::new(aki.to_der().map_err(enc)?).map_err(enc)?,
        });
    }
    let tbs = TbsCertList {
        version: x509_cert::Version::V2,
        signature: alg.clone(),
        issuer: issuer.x509().tbs_certificate().subject().clone(),
        this_update: this_update.to_x509()?,
        next_update: Some(next_update.to_x509()?),
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: Some(exts),
    };
    let tbs_der = tbs.to_der().map_err(enc)?;
    let sig = signer.sign_message(&tbs_der)?;
    let list =
        CertificateList { tbs_cert_list: tbs, signature_algorithm: alg, signature: BitString::from_bytes(&sig).map_err(enc)? };
    Crl::from_der(&list.to_der().map_err(enc)?)
}

pub(crate) fn reason_to_x509(r: RevocationReason) -> CrlReason {
    match r {
        RevocationReason::Unspecified => CrlReason::Unspecified,
        RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
        RevocationReason::CaCompromise => CrlReason::CaCompromise,
        RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
        RevocationReason::Superseded => CrlReason::Superseded,
        RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        RevocationReason::CertificateHold => CrlReason::CertificateHold,
        RevocationReason::RemoveFromCrl => CrlReason::RemoveFromCRL,
        RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise => CrlReason::AaCompromise,
    }
}
