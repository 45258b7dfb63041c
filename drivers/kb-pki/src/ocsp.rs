//! OCSP (RFC 6960): requests, responses, and what a response must satisfy before it says
//! anything about a certificate ([`check_response`]):
//! - the response is `successful` and of the basic type;
//! - it is signed by the certificate's issuer, or by a responder certificate that issuer
//!   issued with `id-kp-OCSPSigning`, valid now (a responder certificate from anyone else,
//!   or without that purpose, is refused); the responderID names that signer;
//! - it answers *this* certificate (the CertID is recomputed with the hash the responder
//!   used: SHA-1, SHA-256 or SM3) — an answer for another certificate says nothing;
//! - it is current: `thisUpdate` not in the future (5 minutes' skew), `nextUpdate` not
//!   passed, and without a `nextUpdate` not older than [`MAX_AGE_WITHOUT_NEXT_UPDATE`];
//! - when the request carried a nonce, the response echoes it (a replayed answer to an
//!   older request is refused); a responder that ignores nonces (many pre-generate their
//!   answers) is held to the currency rule above.
//!
//! The dev CA answers through [`respond`].

use crate::cert::Certificate;
use crate::revocation::{CLOCK_SKEW_SECS, RevocationReason, RevocationSource, RevocationStatus, UnknownReason};
use crate::time::UnixTime;
use crate::{PkiError, Result, Signer};
use der::asn1::{BitString, ContextSpecific, GeneralizedTime, ObjectIdentifier, OctetString};
use der::{Any, Decode, Encode, Enumerated, Reader, Sequence, SliceReader, Tag, TagNumber, Tagged};
use kb_crypto::HashAlgorithm;
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::serial_number::SerialNumber;

/// A response without `nextUpdate` is accepted for this long after its `thisUpdate`.
pub const MAX_AGE_WITHOUT_NEXT_UPDATE: i64 = 3600;
/// The most bytes of an OCSP response KeyBridge reads.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

const ID_PKIX_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const ID_PKIX_OCSP_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
const ID_KP_OCSP_SIGNING: &str = "1.3.6.1.5.5.7.3.9";

#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
struct CertIdAsn {
    hash_algorithm: AlgorithmIdentifierOwned,
    issuer_name_hash: OctetString,
    issuer_key_hash: OctetString,
    serial_number: SerialNumber,
}

#[derive(Clone, Debug, Sequence)]
struct RequestAsn {
    req_cert: CertIdAsn,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    single_request_extensions: Option<Vec<Extension>>,
}

#[derive(Clone, Debug, Sequence)]
struct TbsRequestAsn {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    version: Option<u8>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    requestor_name: Option<Any>,
    request_list: Vec<RequestAsn>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    request_extensions: Option<Vec<Extension>>,
}

#[derive(Clone, Debug, Sequence)]
struct OcspRequestAsn {
    tbs_request: TbsRequestAsn,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    optional_signature: Option<Any>,
}

/// The responder's overall answer (RFC 6960 §4.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enumerated)]
#[repr(u32)]
pub enum ResponseStatus {
    /// A response follows.
    Successful = 0,
    /// The request did not parse.
    MalformedRequest = 1,
    /// The responder failed.
    InternalError = 2,
    /// Try again later.
    TryLater = 3,
    /// The request must be signed.
    SigRequired = 5,
    /// Not authorised for this certificate.
    Unauthorized = 6,
}

#[derive(Clone, Debug, Sequence)]
struct ResponseBytesAsn {
    response_type: ObjectIdentifier,
    response: OctetString,
}

#[derive(Clone, Debug, Sequence)]
struct OcspResponseAsn {
    response_status: ResponseStatus,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    response_bytes: Option<ResponseBytesAsn>,
}

#[derive(Clone, Debug, Sequence)]
struct BasicResponseAsn {
    tbs_response_data: Any,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    certs: Option<Vec<x509_cert::Certificate>>,
}

#[derive(Clone, Debug, Sequence)]
struct ResponseDataAsn {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    version: Option<u8>,
    responder_id: Any,
    produced_at: GeneralizedTime,
    responses: Vec<SingleResponseAsn>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    response_extensions: Option<Vec<Extension>>,
}

#[derive(Clone, Debug, Sequence)]
struct SingleResponseAsn {
    cert_id: CertIdAsn,
    cert_status: Any,
    this_update: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    next_update: Option<GeneralizedTime>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    single_extensions: Option<Vec<Extension>>,
}

fn malformed(e: impl std::fmt::Display) -> PkiError {
    PkiError::OcspMalformed(e.to_string())
}

/// Which certificate a request or response is about (RFC 6960 §4.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertId {
    /// The hash of the two issuer hashes.
    pub hash: HashAlgorithm,
    /// Hash of the issuer's DER name.
    pub issuer_name_hash: Vec<u8>,
    /// Hash of the issuer's public key bits.
    pub issuer_key_hash: Vec<u8>,
    /// The certificate's serial number (content bytes).
    pub serial: Vec<u8>,
}

impl CertId {
    /// The CertID of `cert` issued by `issuer`, with `hash` (SHA-1 is what most responders
    /// index by; SM3 for GM responders that want it).
    pub fn new(cert: &Certificate, issuer: &Certificate, hash: HashAlgorithm) -> Self {
        CertId {
            hash,
            issuer_name_hash: kb_crypto::digest(hash, &issuer.subject_der()),
            issuer_key_hash: kb_crypto::digest(hash, issuer.public_key_bits()),
            serial: cert.serial_bytes().to_vec(),
        }
    }

    fn to_asn(&self) -> Result<CertIdAsn> {
        Ok(CertIdAsn {
            hash_algorithm: AlgorithmIdentifierOwned { oid: crate::oid::hash_oid(self.hash), parameters: Some(Any::null()) },
            issuer_name_hash: OctetString::new(self.issuer_name_hash.clone()).map_err(malformed)?,
            issuer_key_hash: OctetString::new(self.issuer_key_hash.clone()).map_err(malformed)?,
            serial_number: SerialNumber::new(&self.serial).map_err(malformed)?,
        })
    }

    fn from_asn(a: &CertIdAsn) -> Option<Self> {
        Some(CertId {
            hash: crate::oid::hash_from_oid(&a.hash_algorithm.oid)?,
            issuer_name_hash: a.issuer_name_hash.as_bytes().to_vec(),
            issuer_key_hash: a.issuer_key_hash.as_bytes().to_vec(),
            serial: a.serial_number.as_bytes().to_vec(),
        })
    }
}

fn nonce_extension(nonce: &[u8]) -> Result<Extension> {
    // RFC 8954: the nonce is an OCTET STRING inside the extension's OCTET STRING.
    let inner = OctetString::new(nonce.to_vec()).map_err(malformed)?.to_der().map_err(malformed)?;
    Ok(Extension { extn_id: ID_PKIX_OCSP_NONCE, critical: false, extn_value: OctetString::new(inner).map_err(malformed)? })
}

fn find_nonce(exts: Option<&Vec<Extension>>) -> Option<Vec<u8>> {
    let e = exts?.iter().find(|e| e.extn_id == ID_PKIX_OCSP_NONCE)?;
    // The RFC 8954 form, or (as some responders send) the raw bytes.
    Some(
        OctetString::from_der(e.extn_value.as_bytes())
            .map(|o| o.as_bytes().to_vec())
            .unwrap_or_else(|_| e.extn_value.as_bytes().to_vec()),
    )
}

/// An unsigned OCSP request for `ids`, with a nonce when given (RFC 8954: 1–32 bytes).
pub fn request(ids: &[CertId], nonce: Option<&[u8]>) -> Result<Vec<u8>> {
    if ids.is_empty() {
        return Err(malformed("a request names at least one certificate"));
    }
    let request_list =
        ids.iter().map(|id| Ok(RequestAsn { req_cert: id.to_asn()?, single_request_extensions: None })).collect::<Result<_>>()?;
    let request_extensions = nonce.map(|n| nonce_extension(n).map(|e| vec![e])).transpose()?;
    let req = OcspRequestAsn {
        tbs_request: TbsRequestAsn { version: None, requestor_name: None, request_list, request_extensions },
        optional_signature: None,
    };
    req.to_der().map_err(malformed)
}

/// A parsed request (what a responder reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRequest {
    /// The certificates asked about, in order (entries with an unknown hash are skipped).
    pub ids: Vec<CertId>,
    /// The nonce, when sent.
    pub nonce: Option<Vec<u8>>,
}

/// Parse a request (DER).
pub fn parse_request(der: &[u8]) -> Result<ParsedRequest> {
    let r = OcspRequestAsn::from_der(der).map_err(malformed)?;
    Ok(ParsedRequest {
        ids: r.tbs_request.request_list.iter().filter_map(|q| CertId::from_asn(&q.req_cert)).collect(),
        nonce: find_nonce(r.tbs_request.request_extensions.as_ref()),
    })
}

/// What the responder said about one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertStatus {
    /// Not revoked.
    Good,
    /// Revoked at this time, for this reason.
    Revoked {
        /// revocationTime.
        at: UnixTime,
        /// revocationReason, when given.
        reason: Option<RevocationReason>,
    },
    /// The responder does not know the certificate.
    Unknown,
}

/// One answer of a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SingleResponse {
    /// Which certificate.
    pub id: Option<CertId>,
    /// Its status.
    pub status: CertStatus,
    /// thisUpdate.
    pub this_update: UnixTime,
    /// nextUpdate.
    pub next_update: Option<UnixTime>,
}

/// A parsed OCSP response. Parsing checks the structure only; [`check_response`] the rest.
#[derive(Clone, Debug)]
pub struct OcspResponse {
    /// The overall status.
    pub status: ResponseStatus,
    basic: Option<Basic>,
}

#[derive(Clone, Debug)]
struct Basic {
    tbs_der: Vec<u8>,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: Vec<u8>,
    certs: Vec<Certificate>,
    responder: Responder,
    produced_at: UnixTime,
    responses: Vec<SingleResponse>,
    nonce: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Responder {
    ByName(Vec<u8>),
    ByKey(Vec<u8>),
}

fn gtime(t: &GeneralizedTime) -> UnixTime {
    UnixTime(t.to_unix_duration().as_secs() as i64)
}

fn reason_of(r: CrlReason) -> RevocationReason {
    crate::revocation::reason_from_x509(r)
}

fn parse_status(a: &Any) -> Result<CertStatus> {
    match a.tag() {
        Tag::ContextSpecific { number: TagNumber(0), .. } => Ok(CertStatus::Good),
        Tag::ContextSpecific { number: TagNumber(2), .. } => Ok(CertStatus::Unknown),
        Tag::ContextSpecific { constructed: true, number: TagNumber(1) } => {
            let mut r = SliceReader::new(a.value()).map_err(malformed)?;
            let at = GeneralizedTime::decode(&mut r).map_err(malformed)?;
            let reason = ContextSpecific::<CrlReason>::decode_explicit(&mut r, TagNumber(0)).map_err(malformed)?;
            r.finish().map_err(malformed)?;
            Ok(CertStatus::Revoked { at: gtime(&at), reason: reason.map(|c| reason_of(c.value)) })
        }
        t => Err(malformed(format!("certStatus with tag {t}"))),
    }
}

impl OcspResponse {
    /// Parse a response (DER), at most [`MAX_RESPONSE_BYTES`].
    pub fn from_der(der: &[u8]) -> Result<Self> {
        if der.len() > MAX_RESPONSE_BYTES {
            return Err(malformed(format!("{} bytes, more than the {MAX_RESPONSE_BYTES} accepted", der.len())));
        }
        let r = OcspResponseAsn::from_der(der).map_err(malformed)?;
        let Some(bytes) = r.response_bytes else {
            return Ok(OcspResponse { status: r.response_status, basic: None });
        };
        if r.response_status != ResponseStatus::Successful {
            return Err(malformed("response bytes in an unsuccessful response"));
        }
        if bytes.response_type != ID_PKIX_OCSP_BASIC {
            return Err(malformed(format!("response type {}", bytes.response_type)));
        }
        let b = BasicResponseAsn::from_der(bytes.response.as_bytes()).map_err(malformed)?;
        let tbs_der = b.tbs_response_data.to_der().map_err(malformed)?;
        let data = ResponseDataAsn::from_der(&tbs_der).map_err(malformed)?;
        let responder = match data.responder_id.tag() {
            Tag::ContextSpecific { constructed: true, number: TagNumber(1) } => {
                Responder::ByName(data.responder_id.value().to_vec())
            }
            Tag::ContextSpecific { constructed: true, number: TagNumber(2) } => {
                Responder::ByKey(OctetString::from_der(data.responder_id.value()).map_err(malformed)?.as_bytes().to_vec())
            }
            t => return Err(malformed(format!("responderID with tag {t}"))),
        };
        let responses = data
            .responses
            .iter()
            .map(|s| {
                Ok(SingleResponse {
                    id: CertId::from_asn(&s.cert_id),
                    status: parse_status(&s.cert_status)?,
                    this_update: gtime(&s.this_update),
                    next_update: s.next_update.as_ref().map(gtime),
                })
            })
            .collect::<Result<_>>()?;
        let certs = b
            .certs
            .unwrap_or_default()
            .iter()
            .map(|c| Certificate::from_der(&c.to_der().map_err(malformed)?))
            .collect::<Result<_>>()?;
        Ok(OcspResponse {
            status: r.response_status,
            basic: Some(Basic {
                tbs_der,
                signature_algorithm: b.signature_algorithm,
                signature: b.signature.as_bytes().ok_or_else(|| malformed("signature has unused bits"))?.to_vec(),
                certs,
                responder,
                produced_at: gtime(&data.produced_at),
                responses,
                nonce: find_nonce(data.response_extensions.as_ref()),
            }),
        })
    }

    /// The answers (empty for an unsuccessful response).
    pub fn responses(&self) -> &[SingleResponse] {
        self.basic.as_ref().map(|b| &b.responses[..]).unwrap_or_default()
    }

    /// producedAt.
    pub fn produced_at(&self) -> Option<UnixTime> {
        self.basic.as_ref().map(|b| b.produced_at)
    }

    /// The nonce the response echoes.
    pub fn nonce(&self) -> Option<&[u8]> {
        self.basic.as_ref().and_then(|b| b.nonce.as_deref())
    }
}

fn names_signer(responder: &Responder, signer: &Certificate) -> bool {
    match responder {
        Responder::ByName(name) => *name == signer.subject_der(),
        Responder::ByKey(hash) => *hash == kb_crypto::digest(HashAlgorithm::Sha1, signer.public_key_bits()),
    }
}

fn verify_with(basic: &Basic, signer: &Certificate) -> Result<()> {
    let scheme = crate::oid::scheme_from_sig_oid(&basic.signature_algorithm.oid).ok_or_else(|| {
        PkiError::OcspSignatureInvalid(format!("unsupported signature algorithm {}", basic.signature_algorithm.oid))
    })?;
    signer
        .public_key()?
        .verify(&scheme, &basic.tbs_der, &basic.signature)
        .map_err(|e| PkiError::OcspSignatureInvalid(format!("does not verify with the key of '{}': {e}", signer.subject())))
}

/// The certificate that signed the response: the issuer itself, or a delegated responder
/// the issuer certified for OCSP signing, valid at `now`.
fn authorised_signer(basic: &Basic, issuer: &Certificate, now: UnixTime) -> Result<Certificate> {
    if names_signer(&basic.responder, issuer) {
        verify_with(basic, issuer)?;
        return Ok(issuer.clone());
    }
    let delegate = basic.certs.iter().find(|c| names_signer(&basic.responder, c)).ok_or_else(|| {
        PkiError::OcspSignatureInvalid("the responder is neither the issuer nor a certificate in the response".into())
    })?;
    if delegate.issuer_der() != issuer.subject_der() || delegate.verify_signature(&issuer.public_key()?).is_err() {
        return Err(PkiError::OcspSignatureInvalid(format!(
            "the responder '{}' was not certified by the issuer",
            delegate.subject()
        )));
    }
    if !delegate.extended_key_usage().iter().any(|o| o.to_string() == ID_KP_OCSP_SIGNING) {
        return Err(PkiError::OcspSignatureInvalid(format!(
            "the responder '{}' is not certified for OCSP signing",
            delegate.subject()
        )));
    }
    delegate.check_validity(now).map_err(|e| PkiError::OcspSignatureInvalid(format!("the responder certificate: {e}")))?;
    verify_with(basic, delegate)?;
    Ok(delegate.clone())
}

/// The status of `cert` (issued by `issuer`, from a verified chain) according to the OCSP
/// response `der`, at `now`; `nonce` is what the request sent (see the module docs).
pub fn check_response(
    cert: &Certificate,
    issuer: &Certificate,
    der: &[u8],
    nonce: Option<&[u8]>,
    now: UnixTime,
) -> RevocationStatus {
    let unknown = |why| RevocationStatus::Unknown { why };
    let resp = match OcspResponse::from_der(der) {
        Ok(r) => r,
        Err(e) => return unknown(UnknownReason::Malformed { detail: e.to_string() }),
    };
    let Some(basic) = resp.basic.as_ref() else {
        return unknown(UnknownReason::ResponderRefused { status: format!("{:?}", resp.status) });
    };
    let signer = match authorised_signer(basic, issuer, now) {
        Ok(s) => s,
        Err(e) => return unknown(UnknownReason::BadSignature { detail: e.to_string() }),
    };
    if let Some(sent) = nonce
        && basic.nonce.as_deref().is_some_and(|got| got != sent)
    {
        return unknown(UnknownReason::Replayed { detail: "the response echoes another request's nonce".into() });
    }
    let Some(single) = basic.responses.iter().find(|s| s.id.as_ref().is_some_and(|id| *id == CertId::new(cert, issuer, id.hash)))
    else {
        return unknown(UnknownReason::OtherCertificate);
    };
    if single.this_update.0 > now.0 + CLOCK_SKEW_SECS {
        return unknown(UnknownReason::NotYetValid { this_update: single.this_update });
    }
    match single.next_update {
        Some(next) if next.0 < now.0 => return unknown(UnknownReason::Stale { next_update: next }),
        None if now.0 - single.this_update.0 > MAX_AGE_WITHOUT_NEXT_UPDATE => {
            return unknown(UnknownReason::Stale { next_update: UnixTime(single.this_update.0 + MAX_AGE_WITHOUT_NEXT_UPDATE) });
        }
        _ => {}
    }
    let source = RevocationSource::Ocsp { responder: signer.subject(), produced_at: basic.produced_at };
    match &single.status {
        CertStatus::Good => RevocationStatus::Good { source, this_update: single.this_update, next_update: single.next_update },
        CertStatus::Revoked { at, reason } => RevocationStatus::Revoked { at: *at, reason: *reason, source },
        CertStatus::Unknown => unknown(UnknownReason::ResponderUnknown),
    }
}

/// Sign a response as `issuer` (responderID by key, its certificate included): for each requested certificate its
/// status from `lookup` (`None`: unknown to this CA), valid from `now` until `next_update`,
/// echoing the request's nonce. A request that does not parse gets `malformedRequest`.
pub fn respond(
    issuer: &Certificate,
    signer: &dyn Signer,
    request_der: &[u8],
    now: UnixTime,
    next_update: UnixTime,
    lookup: &dyn Fn(&CertId) -> Option<CertStatus>,
) -> Result<Vec<u8>> {
    let Ok(req) = parse_request(request_der) else {
        return OcspResponseAsn { response_status: ResponseStatus::MalformedRequest, response_bytes: None }
            .to_der()
            .map_err(malformed);
    };
    let ctx = |tag: u32, constructed: bool, value: Vec<u8>| {
        Any::new(Tag::ContextSpecific { constructed, number: TagNumber(tag) }, value)
    };
    let time =
        |t: UnixTime| GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(t.0.max(0) as u64)).map_err(malformed);
    let mut responses = Vec::new();
    for id in &req.ids {
        // A CertID for another issuer is "unknown" here, whatever the serial.
        let ours = *id == CertId { serial: id.serial.clone(), ..CertId::new(issuer, issuer, id.hash) };
        let status = if ours { lookup(id) } else { None };
        let cert_status = match status {
            Some(CertStatus::Good) => ctx(0, false, Vec::new()),
            Some(CertStatus::Revoked { at, reason }) => {
                let mut v = time(at)?.to_der().map_err(malformed)?;
                if let Some(r) = reason {
                    let explicit = ContextSpecific {
                        tag_number: TagNumber(0),
                        tag_mode: der::TagMode::Explicit,
                        value: crate::revocation::reason_to_x509(r),
                    };
                    v.extend(explicit.to_der().map_err(malformed)?);
                }
                ctx(1, true, v)
            }
            Some(CertStatus::Unknown) | None => ctx(2, false, Vec::new()),
        }
        .map_err(malformed)?;
        responses.push(SingleResponseAsn {
            cert_id: id.to_asn()?,
            cert_status,
            this_update: time(now)?,
            next_update: Some(time(next_update)?),
            single_extensions: None,
        });
    }
    let key_hash = OctetString::new(kb_crypto::digest(HashAlgorithm::Sha1, issuer.public_key_bits())).map_err(malformed)?;
    let data = ResponseDataAsn {
        version: None,
        responder_id: ctx(2, true, key_hash.to_der().map_err(malformed)?).map_err(malformed)?,
        produced_at: time(now)?,
        responses,
        response_extensions: req.nonce.as_deref().map(|n| nonce_extension(n).map(|e| vec![e])).transpose()?,
    };
    let tbs = data.to_der().map_err(malformed)?;
    let signature = signer.sign_message(&tbs)?;
    let basic = BasicResponseAsn {
        tbs_response_data: Any::from_der(&tbs).map_err(malformed)?,
        signature_algorithm: crate::issue::signature_algorithm(signer)?,
        signature: BitString::from_bytes(&signature).map_err(malformed)?,
        // The signer's certificate goes along: clients that do not know the issuer
        // yet (OpenSSL without `-issuer`) find the signer there.
        certs: Some(vec![issuer.x509().clone()]),
    };
    OcspResponseAsn {
        response_status: ResponseStatus::Successful,
        response_bytes: Some(ResponseBytesAsn {
            response_type: ID_PKIX_OCSP_BASIC,
            response: OctetString::new(basic.to_der().map_err(malformed)?).map_err(malformed)?,
        }),
    }
    .to_der()
    .map_err(malformed)
}
