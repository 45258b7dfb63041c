//! Every method as a plain synchronous function over the device service — no socket,
//! no async — so each can be tested in-process and the server only moves bytes.
//!
//! Private-key methods get the key through the device service (`DeviceManager`): the
//! PIN is asked in KeyBridge's own dialog inside the device's actor, cached per the
//! user's PIN-cache setting, and every key use is audited with the client's identity
//! (`https://origin` or `native:<sdk name>`).

use crate::activity::RequestState;
use crate::certs::{CertEntry, CertIndex};
use crate::config::BridgeConfig;
use crate::consent::{ConnectionConsent, Consent};
use crate::error::{error_object, fail, service_error_object};
use crate::handshake::Client;
use crate::streams::{DownloadWriter, OutTx, Progress, StreamIo, failure_of, stop_error};
use kb_bridge_protocol::{
    Base64, CertificateDetails, CertificateSource, CertificatesGetParams, CertificatesListParams, CertificatesListResult,
    ChainStatus, CmsProfile, DecryptParams, DecryptResult, DevicesListResult, EncryptFormat, EncryptParams, EncryptResult,
    ErrorObject, ExtensionDetails, Id, Input, Output, OutputMode, Revocation, RevocationState, SignFormat, SignInput, SignParams,
    SignResult, SignerSummary, Sm2Layout, VerifyParams, VerifyResult,
};
use kb_crypto::sm2::CiphertextLayout;
use kb_crypto::{Hasher, PublicKey, SignatureScheme};
use kb_pki::chain::{TrustStore, verify_chain};
use kb_pki::cms::{EnvelopeOptions, KeyDecrypter, Profile, SignOptions, SignedMessage, envelope};
use kb_pki::revocation::Crl;
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, PkiError};
use kb_service::devices::{Caller, DeviceDecrypter, DeviceManager};
use kb_service::revocation::RevocationChecker;
use kb_types::{Algorithm, ErrorCode, HasErrorCode, HashAlgorithm, KeyUsage};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// Largest input of `sm2_raw` encryption.
pub const MAX_SM2_RAW_INPUT: usize = 1024;

/// Largest content an attached CMS signature takes from a stream (the content goes
/// inside the signature, so it is held in memory).
pub const MAX_ATTACHED_STREAM: usize = 64 << 20;

type R<T> = Result<T, ErrorObject>;

/// What every connection shares: the device service and the bridge's policy.
pub struct Service {
    /// The device service.
    pub manager: DeviceManager,
    /// Certificates on present media.
    pub certs: CertIndex,
    /// Trust anchors for `verify`'s chain status.
    pub trust: TrustStore,
    /// Revocation checks (list, verify, the choice of a decryption key).
    pub revocation: Arc<RevocationChecker>,
    /// Consent for web origins.
    pub consent: Consent,
    /// Limits and policy.
    pub config: BridgeConfig,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("manager", &self.manager).finish_non_exhaustive()
    }
}

/// One call's context: who calls, on which connection, and its liveness.
pub struct CallCtx<'a> {
    /// Who.
    pub client: &'a Client,
    /// The SDK name from `hello` (native tools are audited as `native:<sdk>`).
    pub sdk: &'a str,
    /// The connection's consent state.
    pub consent: &'a ConnectionConsent,
    /// Stop flag and progress clock.
    pub state: Arc<RequestState>,
    /// The connection's streams.
    pub streams: &'a dyn StreamIo,
    /// The request id (for progress events).
    pub request: Id,
    /// Where progress events go (none in-process).
    pub events: Option<OutTx>,
    failures: Mutex<Vec<Arc<Mutex<Option<ErrorObject>>>>>,
}

impl<'a> CallCtx<'a> {
    /// A context.
    pub fn new(
        client: &'a Client,
        sdk: &'a str,
        consent: &'a ConnectionConsent,
        state: Arc<RequestState>,
        streams: &'a dyn StreamIo,
        request: Id,
        events: Option<OutTx>,
    ) -> Self {
        CallCtx { client, sdk, consent, state, streams, request, events, failures: Mutex::new(Vec::new()) }
    }

    /// Who asks, with this request's operation context (cancel and the idle timeout
    /// reach the PIN dialog and the medium).
    pub fn caller(&self) -> Caller {
        Caller::new(&self.audit_client(), self.state.context().clone()).with_timeout(self.state.operation_timeout())
    }

    /// The client as the audit log records it.
    pub fn audit_client(&self) -> String {
        match self.client {
            Client::Web(o) => o.clone(),
            Client::Native => format!("native:{}", self.sdk),
        }
    }

    fn progress(&self, total: Option<u64>) -> Progress {
        match &self.events {
            Some(out) => Progress::to(out.clone(), self.request.clone(), total),
            None => Progress::none(),
        }
    }

    /// The real reason of a failure: the request was stopped, or a stream failed, or `e`.
    fn err(&self, e: ErrorObject) -> ErrorObject {
        if let Some(s) = self.state.stopped() {
            return stop_error(s);
        }
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.iter().find_map(failure_of).unwrap_or(e)
    }

    fn svc(&self, e: kb_service::ServiceError) -> ErrorObject {
        self.err(service_error_object(&e))
    }

    fn pki(&self, e: PkiError) -> ErrorObject {
        self.svc(kb_service::ServiceError::Pki(e))
    }

    /// Input bytes as a reader, with the length when known.
    fn reader(&self, input: &Input) -> R<(Box<dyn Read + Send + 'a>, Option<u64>)> {
        match input {
            Input::Data(d) => Ok((Box::new(std::io::Cursor::new(d.0.clone())), Some(d.0.len() as u64))),
            Input::Stream(id) => {
                let total = self.streams.declared_length(*id);
                let r = self.streams.upload(*id, Arc::clone(&self.state), self.progress(total))?;
                self.failures.lock().unwrap_or_else(|p| p.into_inner()).push(r.failure());
                Ok((Box::new(r), total))
            }
        }
    }

    /// The output sink. Progress events count the input when it is a stream (one series
    /// per request), else the bytes written to a download stream.
    fn output(&self, mode: &OutputMode, cap: usize, input: &Input) -> R<Sink> {
        match mode {
            OutputMode::Inline => Ok(Sink::Inline { buf: Vec::new(), cap, over: false }),
            OutputMode::Stream(id) => {
                let progress = match input {
                    Input::Stream(_) => Progress::none(),
                    Input::Data(_) => self.progress(None),
                };
                let w = self.streams.download(*id, Arc::clone(&self.state), progress)?;
                self.failures.lock().unwrap_or_else(|p| p.into_inner()).push(w.failure());
                Ok(Sink::Stream(w))
            }
        }
    }
}

/// Where a method's output goes.
enum Sink {
    Inline { buf: Vec<u8>, cap: usize, over: bool },
    Stream(DownloadWriter),
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Inline { buf, cap, over } => {
                if buf.len() + data.len() > *cap {
                    *over = true;
                    return Err(std::io::Error::other("inline output too large"));
                }
                buf.extend_from_slice(data);
                Ok(data.len())
            }
            Sink::Stream(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn too_large(&self) -> bool {
        matches!(self, Sink::Inline { over: true, .. })
    }

    fn finish(self) -> std::io::Result<Output> {
        match self {
            Sink::Inline { buf, .. } => {
                let length = buf.len() as u64;
                Ok(Output { data: Some(Base64(buf)), stream: None, length })
            }
            Sink::Stream(w) => {
                let stream = Some(w.stream_id());
                let length = w.finish()?;
                Ok(Output { data: None, stream, length })
            }
        }
    }
}

fn profile(p: Option<CmsProfile>) -> Option<Profile> {
    p.map(|p| match p {
        CmsProfile::GmT0010 => Profile::Gm,
        CmsProfile::Rfc5652 => Profile::Rfc5652,
    })
}

/// The signature scheme for a key and the request's `hash` / `sm2_id`.
fn scheme_for(alg: Algorithm, hash: Option<HashAlgorithm>, sm2_id: Option<&str>, cms: bool) -> R<SignatureScheme> {
    match alg {
        Algorithm::Sm2 => {
            if hash.is_some_and(|h| h != HashAlgorithm::Sm3) {
                return Err(fail(ErrorCode::UnsupportedAlgorithm, "SM2 signs with SM3"));
            }
            match sm2_id {
                None => Ok(SignatureScheme::sm2_default()),
                Some(id) if cms && id.as_bytes() != kb_crypto::sm2::DEFAULT_ID => {
                    Err(fail(ErrorCode::InvalidParameter, "CMS SM2 signatures use the default ID 1234567812345678 (GM/T 0010)"))
                }
                Some(id) if id.is_empty() || id.len() > kb_crypto::sm2::MAX_ID_LEN => {
                    Err(fail(ErrorCode::InvalidParameter, "the SM2 ID must be 1 to 8191 bytes"))
                }
                Some(id) => Ok(SignatureScheme::Sm2Sm3 { id: id.as_bytes().to_vec() }),
            }
        }
        other => {
            if sm2_id.is_some() {
                return Err(fail(ErrorCode::InvalidParameter, "sm2_id applies to SM2 keys only"));
            }
            let h = hash.unwrap_or(HashAlgorithm::Sha256);
            if matches!(h, HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Sm3) {
                return Err(fail(ErrorCode::UnsupportedAlgorithm, format!("{other:?} with {}", h.name())));
            }
            Ok(match other {
                Algorithm::Rsa { .. } => SignatureScheme::RsaPkcs1(h),
                _ => SignatureScheme::Ecdsa(h),
            })
        }
    }
}

fn hash_all(r: &mut dyn Read, mut h: Hasher) -> std::io::Result<Vec<u8>> {
    std::io::copy(r, &mut h)?;
    Ok(h.finish())
}

fn io_err(e: std::io::Error) -> ErrorObject {
    fail(ErrorCode::Io, e.to_string())
}

fn revoked_error(c: &Certificate, r: &Revocation) -> ErrorObject {
    let at = r.revoked_at.map(|t| UnixTime(t).to_rfc3339()).unwrap_or_default();
    let reason = r.reason.as_deref().map(|x| format!(" ({x})")).unwrap_or_default();
    fail(
        ErrorCode::CertificateRevoked,
        format!(
            "{} was revoked on {at}{reason}; it is not used to decrypt unless asked to open old data (allow_revoked)",
            c.subject()
        ),
    )
}

fn summary_of(c: &Certificate) -> SignerSummary {
    SignerSummary { subject: c.subject(), issuer: c.issuer(), serial: c.serial_hex(), thumbprint: crate::certs::thumbprint_of(c) }
}

impl Service {
    /// A service over a device manager.
    pub fn new(manager: DeviceManager, trust: TrustStore, consent: Consent, config: BridgeConfig) -> Self {
        let revocation = Arc::new(RevocationChecker::without_sources());
        Service { certs: CertIndex::new(manager.clone()), manager, trust, consent, config, revocation }
    }

    /// Check revocation with this checker (the default has no sources: every status
    /// is unknown).
    pub fn with_revocation(mut self, checker: Arc<RevocationChecker>) -> Self {
        self.revocation = checker;
        self
    }

    /// `cert`'s revocation, its chain built against the trust store at `now`.
    fn revocation_of(&self, cert: &Certificate, intermediates: &[Certificate], carried: &[Crl], now: UnixTime) -> Revocation {
        self.revocation.summary(cert, intermediates, &self.trust, carried, now)
    }

    /// Refuse a revoked certificate for decryption unless the caller asked to open old
    /// data with it.
    fn check_not_revoked(&self, e: &CertEntry, allow_revoked: bool) -> R<()> {
        if allow_revoked {
            return Ok(());
        }
        let r = self.revocation_of(&e.certificate, &[], &[], self.now());
        if r.status == RevocationState::Revoked {
            return Err(revoked_error(&e.certificate, &r));
        }
        Ok(())
    }

    fn consent(&self, ctx: &CallCtx<'_>, operation: &str, certificate: Option<String>) -> R<()> {
        self.consent.check(ctx.client, ctx.consent, operation, certificate).map_err(|r| fail(ErrorCode::ConsentDenied, r.0))
    }

    /// Ask consent for a method that names no certificate (`devices.list`, `subscribe`…).
    pub fn consent_for(&self, ctx: &CallCtx<'_>, operation: &str) -> R<()> {
        self.consent(ctx, operation, None)
    }

    /// Ask consent for a method that names a certificate: the dialog shows the
    /// thumbprint the request gave, because nothing on the user's media is looked at
    /// before consent (so a refusal cannot tell a page what the user holds).
    fn consent_naming(&self, ctx: &CallCtx<'_>, operation: &str, r: &kb_bridge_protocol::CertificateRef) -> R<()> {
        self.consent(ctx, operation, Some(format!("certificate {}", r.thumbprint)))
    }

    fn find(&self, ctx: &CallCtx<'_>, r: &kb_bridge_protocol::CertificateRef) -> R<CertEntry> {
        self.certs.find(r).map_err(|e| ctx.svc(e))
    }

    fn certificate_source(&self, ctx: &CallCtx<'_>, s: &CertificateSource) -> R<Certificate> {
        match s {
            CertificateSource::Thumbprint(t) => {
                Ok(self.find(ctx, &kb_bridge_protocol::CertificateRef { thumbprint: t.clone(), device: None })?.certificate)
            }
            CertificateSource::Der(d) => Certificate::from_any(&d.0).map_err(|e| ctx.pki(e)),
        }
    }

    fn now(&self) -> UnixTime {
        UnixTime::now()
    }

    /// `devices.list`.
    pub fn devices_list(&self, ctx: &CallCtx<'_>) -> R<DevicesListResult> {
        self.consent(ctx, "devices.list", None)?;
        let media = self.manager.media();
        let offline = media.iter().filter(|m| !m.online).map(|m| m.info.id.clone()).collect();
        Ok(DevicesListResult { devices: media.into_iter().map(|m| m.info).collect(), offline })
    }

    /// `certificates.list`.
    pub fn certificates_list(&self, ctx: &CallCtx<'_>, p: CertificatesListParams) -> R<CertificatesListResult> {
        self.consent(ctx, "certificates.list", None)?;
        let entries = match &p.device {
            Some(d) => self.certs.on(d).map_err(|e| ctx.svc(e))?,
            None => self.certs.all(),
        };
        let (issuer, subject) = (p.issuer_contains.map(|s| s.to_lowercase()), p.subject_contains.map(|s| s.to_lowercase()));
        let now = self.now();
        let certificates = entries
            .iter()
            .filter(|e| {
                let c = &e.certificate;
                let usage_ok = match p.usage {
                    None | Some(KeyUsage::Both) => true,
                    Some(u) => c.usage() == u || c.usage() == KeyUsage::Both,
                };
                usage_ok
                    && issuer.as_ref().is_none_or(|s| c.issuer().to_lowercase().contains(s))
                    && subject.as_ref().is_none_or(|s| c.subject().to_lowercase().contains(s))
                    && p.valid_at.is_none_or(|t| c.check_validity(UnixTime(t)).is_ok())
            })
            .map(|e| e.summary(now, self.config.near_expiry_days, self.revocation_of(&e.certificate, &[], &[], now)))
            .filter(|s| p.revoked.is_none_or(|want| want == (s.revocation.status == RevocationState::Revoked)))
            .collect();
        Ok(CertificatesListResult { certificates })
    }

    /// `certificates.get`.
    pub fn certificates_get(&self, ctx: &CallCtx<'_>, p: CertificatesGetParams) -> R<CertificateDetails> {
        self.consent_naming(ctx, "certificates.get", &p.certificate)?;
        let e = self.find(ctx, &p.certificate)?;
        let now = self.now();
        let c = &e.certificate;
        let info = c.info(now, self.config.near_expiry_days);
        Ok(CertificateDetails {
            summary: e.summary(now, self.config.near_expiry_days, self.revocation_of(c, &[], &[], now)),
            der: Base64(c.der().to_vec()),
            pem: c.to_pem(),
            version: info.version,
            public_key_description: info.public_key_description,
            signature_algorithm: info.signature_algorithm,
            key_usage: info.key_usage,
            extended_key_usage: info.extended_key_usage,
            is_ca: info.is_ca,
            days_left: info.days_left,
            extensions: info
                .extensions
                .into_iter()
                .map(|x| ExtensionDetails { oid: x.oid, name: x.name, critical: x.critical, value: x.value })
                .collect(),
        })
    }

    /// The signing certificate `r` names, once the caller may use it for signing.
    fn signing_entry(&self, ctx: &CallCtx<'_>, r: &kb_bridge_protocol::CertificateRef) -> R<CertEntry> {
        self.consent_naming(ctx, "sign", r)?;
        let e = self.find(ctx, r)?;
        if e.slot == KeyUsage::Encrypt || e.certificate.usage() == KeyUsage::Encrypt {
            return Err(fail(
                ErrorCode::CertificateUsageMismatch,
                "this is an encryption certificate; sign with the signing certificate",
            ));
        }
        Ok(e)
    }

    /// `sign`.
    pub fn sign(&self, ctx: &CallCtx<'_>, p: SignParams) -> R<SignResult> {
        let e = self.signing_entry(ctx, &p.certificate)?;
        let cert = &e.certificate;
        let public = cert.public_key().map_err(|e| ctx.pki(e))?;
        let scheme = scheme_for(public.algorithm(), p.hash, p.sm2_id.as_deref(), p.format != SignFormat::Raw)?;
        let hash_len = scheme.hash().output_len();
        let caller = ctx.caller();
        // What gets signed: for raw signatures the scheme's message digest (SM2:
        // e = SM3(ZA ‖ M)); for CMS the plain content digest, or the content itself when
        // it goes inside the signature.
        enum Content {
            Digest(Vec<u8>),
            Whole(Vec<u8>),
        }
        let content = match (p.format, &p.input) {
            (SignFormat::CmsAttached, SignInput::Digest(_)) => {
                return Err(fail(ErrorCode::InvalidParameter, "an attached signature needs the content, not a digest"));
            }
            (_, SignInput::Digest(d)) if d.0.len() != hash_len => {
                return Err(fail(ErrorCode::InvalidParameter, format!("a {} digest is {hash_len} bytes", scheme.hash().name())));
            }
            (_, SignInput::Digest(d)) => Content::Digest(d.0.clone()),
            (SignFormat::CmsAttached, SignInput::Data(d)) => Content::Whole(d.0.clone()),
            (SignFormat::CmsAttached, SignInput::Stream(id)) => {
                let (mut r, _) = ctx.reader(&Input::Stream(*id))?;
                let mut v = Vec::new();
                (&mut r).take(MAX_ATTACHED_STREAM as u64 + 1).read_to_end(&mut v).map_err(|e| ctx.err(io_err(e)))?;
                if v.len() > MAX_ATTACHED_STREAM {
                    return Err(fail(ErrorCode::InputTooLarge, "attached signatures hold at most 64 MiB; use cms_detached"));
                }
                Content::Whole(v)
            }
            (format, input) => {
                let mut hasher = if format == SignFormat::Raw {
                    public.hasher(&scheme).map_err(|e| ctx.svc(e.into()))?
                } else {
                    Hasher::new(scheme.hash())
                };
                Content::Digest(match input {
                    SignInput::Stream(id) => {
                        let (mut r, _) = ctx.reader(&Input::Stream(*id))?;
                        hash_all(&mut r, hasher).map_err(|e| ctx.err(io_err(e)))?
                    }
                    SignInput::Data(d) => {
                        hasher.update(&d.0);
                        hasher.finish()
                    }
                    SignInput::Digest(_) => return Err(fail(ErrorCode::Internal, "digest handled above")),
                })
            }
        };
        let signature = match (p.format, content) {
            // A bare signature: one trip to the medium's actor, no CMS signer needed.
            (SignFormat::Raw, Content::Digest(d)) => {
                self.manager.sign_digest(&e.device, &e.container, e.slot, &scheme, &d, &caller).map_err(|e| ctx.svc(e))?
            }
            (format, content) => {
                let signer = self
                    .manager
                    .signer(&e.device, &e.container, e.slot, &caller)
                    .map_err(|e| ctx.svc(e))?
                    .with_scheme(scheme.clone());
                let dev = |x: PkiError| ctx.svc(signer.service_error(x));
                let opts = SignOptions {
                    profile: profile(p.profile),
                    detached: format == SignFormat::CmsDetached,
                    ..SignOptions::default()
                };
                match content {
                    Content::Whole(c) => kb_pki::cms::sign(&c, &signer, cert, &opts).map_err(dev)?,
                    Content::Digest(d) => kb_pki::cms::sign_detached_digest(&d, &signer, cert, &opts).map_err(dev)?,
                }
            }
        };
        Ok(SignResult {
            signature: Base64(signature),
            format: p.format,
            algorithm: public.algorithm(),
            hash: scheme.hash(),
            certificate: e.thumbprint,
        })
    }

    fn chain(&self, check: bool, cert: &Certificate, intermediates: &[Certificate], at: UnixTime) -> (ChainStatus, Option<u32>) {
        if !check {
            return (ChainStatus::NotChecked, None);
        }
        match verify_chain(cert, intermediates, &self.trust, at) {
            Ok(_) => (ChainStatus::Trusted, None),
            Err(e) => (ChainStatus::Untrusted, Some(e.code().number())),
        }
    }

    /// The signer's revocation for `verify`: checked when asked and the chain is
    /// trusted (the chain built at `at`, the status asked now).
    fn signer_revocation(
        &self,
        check: bool,
        chain: ChainStatus,
        cert: &Certificate,
        intermediates: &[Certificate],
        carried: &[Crl],
        at: UnixTime,
    ) -> Revocation {
        match (check, chain) {
            (false, _) => Revocation::not_checked("not asked (check_revocation: false)"),
            (true, ChainStatus::Trusted) => {
                self.revocation.summary_for_chain_at(cert, intermediates, &self.trust, carried, at, UnixTime::now())
            }
            (true, _) => Revocation::not_checked("the signer's chain does not reach a trusted root"),
        }
    }

    /// `verify`.
    pub fn verify(&self, ctx: &CallCtx<'_>, p: VerifyParams) -> R<VerifyResult> {
        self.consent(ctx, "verify", None)?;
        let invalid = |code: ErrorCode| code == ErrorCode::SignatureInvalid || code == ErrorCode::CmsDigestMismatch;
        if p.format == SignFormat::Raw {
            let content = p.content.as_ref().ok_or_else(|| fail(ErrorCode::InvalidParameter, "a raw signature needs content"))?;
            let source =
                p.certificate.as_ref().ok_or_else(|| fail(ErrorCode::InvalidParameter, "a raw signature needs certificate"))?;
            let cert = self.certificate_source(ctx, source)?;
            let public = cert.public_key().map_err(|e| ctx.pki(e))?;
            let scheme = scheme_for(public.algorithm(), p.hash, p.sm2_id.as_deref(), false)?;
            let digest = match content {
                SignInput::Digest(d) => d.0.clone(),
                SignInput::Data(d) => public.message_digest(&scheme, &d.0).map_err(|e| ctx.svc(e.into()))?,
                SignInput::Stream(id) => {
                    let (mut r, _) = ctx.reader(&Input::Stream(*id))?;
                    hash_all(&mut r, public.hasher(&scheme).map_err(|e| ctx.svc(e.into()))?).map_err(|e| ctx.err(io_err(e)))?
                }
            };
            let outcome = public.verify_digest(&scheme, &digest, &p.signature.0);
            let at = p.at.map(UnixTime).unwrap_or_else(UnixTime::now);
            let (chain, chain_error) = self.chain(p.check_chain, &cert, &[], at);
            return match outcome {
                Ok(()) => {
                    let revocation = self.signer_revocation(p.check_revocation, chain, &cert, &[], &[], at);
                    let revoked = revocation.status == RevocationState::Revoked;
                    Ok(VerifyResult {
                        valid: !revoked,
                        error: revoked.then(|| ErrorCode::CertificateRevoked.number()),
                        signer: Some(summary_of(&cert)),
                        chain,
                        chain_error,
                        signing_time: None,
                        revocation: Some(revocation),
                    })
                }
                Err(e) if invalid(e.code()) => Ok(VerifyResult {
                    valid: false,
                    error: Some(e.code().number()),
                    signer: Some(summary_of(&cert)),
                    chain,
                    chain_error,
                    signing_time: None,
                    revocation: None,
                }),
                Err(e) => Err(ctx.svc(e.into())),
            };
        }
        let der = kb_pki::cms::unarmor(&p.signature.0).map_err(|e| ctx.pki(e))?;
        let msg = SignedMessage::from_der(&der).map_err(|e| ctx.pki(e))?;
        let reports = match (&p.content, msg.is_detached()) {
            (None, true) => return Err(error_object(&PkiError::CmsContentMissing)),
            (Some(SignInput::Data(d)), true) => msg.verify(Some(&d.0), &[]),
            (Some(SignInput::Stream(id)), true) => {
                let (r, _) = ctx.reader(&Input::Stream(*id))?;
                msg.verify_reader(r, &[])
            }
            (Some(SignInput::Digest(d)), true) => {
                let alg = match p.hash {
                    Some(h) => h,
                    None => {
                        *msg.digest_algorithms().first().ok_or_else(|| fail(ErrorCode::CmsMalformed, "no digest algorithm"))?
                    }
                };
                msg.verify_digest(alg, &d.0, &[])
            }
            (Some(SignInput::Data(d)), false) if msg.content() != Some(&d.0[..]) => Err(PkiError::CmsDigestMismatch),
            (Some(SignInput::Data(_)), false) | (None, false) => msg.verify(None, &[]),
            (Some(_), false) => {
                return Err(fail(
                    ErrorCode::InvalidParameter,
                    "an attached signature carries its content; give content as data or not at all",
                ));
            }
        };
        match reports {
            Ok(reports) => {
                let r = reports.first().ok_or_else(|| fail(ErrorCode::CmsMalformed, "no signer"))?;
                let at = p.at.map(UnixTime).or(r.signing_time).unwrap_or_else(UnixTime::now);
                let (chain, chain_error) = self.chain(p.check_chain, &r.signer, msg.certificates(), at);
                // CRLs the signature carries count; its signing time proves nothing
                // about when it was made, so a revoked signer fails whatever it says.
                let revocation =
                    self.signer_revocation(p.check_revocation, chain, &r.signer, msg.certificates(), &msg.crls(), at);
                let revoked = revocation.status == RevocationState::Revoked;
                Ok(VerifyResult {
                    valid: !revoked,
                    error: revoked.then(|| ErrorCode::CertificateRevoked.number()),
                    signer: Some(summary_of(&r.signer)),
                    chain,
                    chain_error,
                    signing_time: r.signing_time.map(|t| t.0),
                    revocation: Some(revocation),
                })
            }
            Err(e) if invalid(e.code()) => {
                // The chain of the certificate the signature claims is checked all the
                // same (`check_chain` asked for it): "not_checked" only when not asked.
                let signer = msg.certificates().first();
                let at = p.at.map(UnixTime).unwrap_or_else(UnixTime::now);
                let (chain, chain_error) = match signer {
                    Some(c) => self.chain(p.check_chain, c, msg.certificates(), at),
                    None => (ChainStatus::NotChecked, None),
                };
                Ok(VerifyResult {
                    valid: false,
                    error: Some(e.code().number()),
                    signer: signer.map(summary_of),
                    chain,
                    chain_error,
                    signing_time: None,
                    revocation: None,
                })
            }
            Err(e) => Err(ctx.pki(e)),
        }
    }

    fn inline_cap(&self) -> usize {
        self.config.max_message_bytes / 4 * 3
    }

    fn finish_output(&self, ctx: &CallCtx<'_>, sink: Sink, result: Result<(), ErrorObject>) -> R<Output> {
        let too_large = sink.too_large();
        match result {
            Ok(()) => sink.finish().map_err(|e| ctx.err(io_err(e))),
            Err(_) if too_large => {
                Err(fail(ErrorCode::InputTooLarge, "the output does not fit in a message; use an output stream"))
            }
            Err(e) => Err(e),
        }
    }

    /// `encrypt`.
    pub fn encrypt(&self, ctx: &CallCtx<'_>, p: EncryptParams) -> R<EncryptResult> {
        self.consent(ctx, "encrypt", None)?;
        if p.recipients.len() > kb_bridge_protocol::MAX_RECIPIENTS {
            return Err(fail(
                ErrorCode::InputTooLarge,
                format!("at most {} recipients per envelope", kb_bridge_protocol::MAX_RECIPIENTS),
            ));
        }
        let recipients = p.recipients.iter().map(|r| self.certificate_source(ctx, r)).collect::<R<Vec<_>>>()?;
        if recipients.is_empty() {
            return Err(fail(ErrorCode::InvalidParameter, "at least one recipient"));
        }
        for r in &recipients {
            if r.usage() == KeyUsage::Sign {
                return Err(fail(
                    ErrorCode::CertificateUsageMismatch,
                    format!("{} is a signing certificate; encrypt to the encryption certificate", r.subject()),
                ));
            }
        }
        // The signer of a signed envelope: found, and its consent asked, before any
        // content is read.
        let signing = match &p.signer {
            None => None,
            Some(_) if p.format != EncryptFormat::CmsEnvelope => {
                return Err(fail(ErrorCode::InvalidParameter, "signer applies to cms_envelope"));
            }
            Some(r) => {
                let e = self.signing_entry(ctx, r)?;
                let alg = e.certificate.public_key().map_err(|x| ctx.pki(x))?.algorithm();
                let scheme = scheme_for(alg, None, None, true)?;
                let signer = self
                    .manager
                    .signer(&e.device, &e.container, e.slot, ctx.caller())
                    .map_err(|x| ctx.svc(x))?
                    .with_scheme(scheme);
                Some((e, signer))
            }
        };
        let mut signature = None;
        let mut sink = ctx.output(&p.output, self.inline_cap(), &p.input)?;
        let result = match p.format {
            EncryptFormat::Sm2Raw => {
                let [cert] = recipients.as_slice() else {
                    return Err(fail(ErrorCode::InvalidParameter, "sm2_raw encrypts to exactly one recipient"));
                };
                let Input::Data(data) = &p.input else {
                    return Err(fail(
                        ErrorCode::InvalidParameter,
                        "sm2_raw takes inline data (at most 1 KiB); use cms_envelope for streams",
                    ));
                };
                if data.0.len() > MAX_SM2_RAW_INPUT {
                    return Err(fail(ErrorCode::InputTooLarge, "sm2_raw encrypts at most 1 KiB; use cms_envelope"));
                }
                let PublicKey::Sm2(k) = cert.public_key().map_err(|e| ctx.pki(e))? else {
                    return Err(fail(ErrorCode::UnsupportedAlgorithm, "sm2_raw needs an SM2 certificate"));
                };
                let ct = k.encrypt(&data.0).map_err(|e| ctx.svc(e.into()))?;
                let bytes = match p.sm2_layout.unwrap_or(Sm2Layout::Asn1) {
                    Sm2Layout::Asn1 => ct.to_der().map_err(|e| ctx.svc(e.into()))?,
                    Sm2Layout::C1c3c2 => ct.encode(CiphertextLayout::C1C3C2, true),
                    Sm2Layout::C1c2c3 => ct.encode(CiphertextLayout::C1C2C3, true),
                };
                sink.write_all(&bytes).map_err(|e| ctx.err(io_err(e)))
            }
            EncryptFormat::CmsEnvelope => {
                if p.sm2_layout.is_some() {
                    return Err(fail(ErrorCode::InvalidParameter, "sm2_layout applies to sm2_raw"));
                }
                let (r, len) = ctx.reader(&p.input)?;
                let opts = EnvelopeOptions { profile: profile(p.profile), ..EnvelopeOptions::default() };
                match &signing {
                    None => envelope::encrypt(r, &mut sink, len, &recipients, &opts).map(|_| ()).map_err(|e| ctx.pki(e)),
                    // One pass: the content digest on a second core while SM4-CBC encrypts.
                    Some((e, signer)) => {
                        let mut hasher = Hasher::new(kb_pki::Signer::scheme(signer).hash());
                        match envelope::encrypt_hashing(r, &mut sink, len, &recipients, &opts, &mut hasher) {
                            Err(x) => Err(ctx.pki(x)),
                            Ok(_) => {
                                let opts = SignOptions { profile: profile(p.profile), detached: true, ..SignOptions::default() };
                                match kb_pki::cms::sign_detached_digest(&hasher.finish(), signer, &e.certificate, &opts) {
                                    Ok(sig) => {
                                        signature = Some(Base64(sig));
                                        Ok(())
                                    }
                                    Err(x) => Err(ctx.svc(signer.service_error(x))),
                                }
                            }
                        }
                    }
                }
            }
        };
        let output = self.finish_output(ctx, sink, result)?;
        Ok(EncryptResult { format: p.format, output, signature })
    }

    /// Only an encryption (or dual-use) key decrypts.
    fn check_decrypts(e: &CertEntry) -> R<()> {
        if e.slot == KeyUsage::Sign && e.certificate.usage() == KeyUsage::Sign {
            return Err(fail(
                ErrorCode::CertificateUsageMismatch,
                "this is a signing certificate; decrypt with the encryption certificate",
            ));
        }
        Ok(())
    }

    fn decrypter(&self, ctx: &CallCtx<'_>, e: &CertEntry) -> R<DeviceDecrypter> {
        Self::check_decrypts(e)?;
        self.manager.decrypter(&e.device, &e.container, e.slot, ctx.caller()).map_err(|x| ctx.svc(x))
    }

    /// `decrypt`.
    pub fn decrypt(&self, ctx: &CallCtx<'_>, p: DecryptParams) -> R<DecryptResult> {
        match &p.certificate {
            Some(r) => self.consent_naming(ctx, "decrypt", r)?,
            None => self.consent(ctx, "decrypt", None)?,
        }
        let named = match &p.certificate {
            Some(r) => Some(self.find(ctx, r)?),
            None => None,
        };
        let mut sink = ctx.output(&p.output, self.inline_cap(), &p.input)?;
        let (result, used) = match p.format {
            EncryptFormat::Sm2Raw => {
                let e = named.ok_or_else(|| fail(ErrorCode::InvalidParameter, "sm2_raw decryption needs certificate"))?;
                let Input::Data(data) = &p.input else {
                    return Err(fail(ErrorCode::InvalidParameter, "sm2_raw takes inline data; use cms_envelope for streams"));
                };
                if e.certificate.public_key().map(|k| k.algorithm()).ok() != Some(Algorithm::Sm2) {
                    return Err(fail(ErrorCode::UnsupportedAlgorithm, "sm2_raw needs an SM2 certificate"));
                }
                Self::check_decrypts(&e)?;
                self.check_not_revoked(&e, p.allow_revoked)?;
                let ct = match p.sm2_layout {
                    None | Some(Sm2Layout::Asn1) => data.0.clone(),
                    Some(l) => {
                        let layout = if l == Sm2Layout::C1c3c2 { CiphertextLayout::C1C3C2 } else { CiphertextLayout::C1C2C3 };
                        let raw = data.0.strip_prefix(&[0x04]).unwrap_or(&data.0);
                        kb_crypto::sm2::Sm2Ciphertext::from_raw(raw, layout)
                            .and_then(|c| c.to_der())
                            .map_err(|x| ctx.svc(x.into()))?
                    }
                };
                let r = self
                    .manager
                    .decrypt(&e.device, &e.container, e.slot, &ct, kb_crypto::rsa::RsaPadding::Pkcs1v15, ctx.caller())
                    .map_err(|x| ctx.svc(x))
                    .and_then(|pt| sink.write_all(&pt).map_err(|x| ctx.err(io_err(x))));
                (r, e.thumbprint)
            }
            EncryptFormat::CmsEnvelope => {
                let (r, _) = ctx.reader(&p.input)?;
                let chosen = std::cell::OnceCell::new();
                let used = std::cell::OnceCell::new();
                let outcome = envelope::decrypt_choosing(r, &mut sink, |recipients| {
                    let revoked = |e: &CertEntry| match self.check_not_revoked(e, p.allow_revoked) {
                        Ok(()) => Ok(e.clone()),
                        Err(o) => Err(PkiError::Device { code: ErrorCode::CertificateRevoked, message: o.data.detail.clone() }),
                    };
                    let entry = match named.clone() {
                        Some(e) => revoked(&e)?,
                        None => {
                            let candidates: Vec<CertEntry> = self
                                .certs
                                .all()
                                .into_iter()
                                .filter(|e| {
                                    e.certificate.usage() != KeyUsage::Sign
                                        && recipients.iter().any(|r| r.matches(&e.certificate))
                                })
                                .collect();
                            // The first that is not revoked; if all are, say so.
                            let mut refusal = None;
                            let mut chosen_entry = None;
                            for c in &candidates {
                                match revoked(c) {
                                    Ok(e) => {
                                        chosen_entry = Some(e);
                                        break;
                                    }
                                    Err(r) => refusal = refusal.or(Some(r)),
                                }
                            }
                            match (chosen_entry, refusal) {
                                (Some(e), _) => e,
                                (None, Some(r)) => return Err(r),
                                (None, None) => return Err(PkiError::CmsNoRecipient),
                            }
                        }
                    };
                    let d = self.decrypter(ctx, &entry).map_err(|o| PkiError::Device {
                        code: kb_types::ErrorCode::from_number(o.code as u32).unwrap_or(ErrorCode::Internal),
                        message: o.data.detail.clone(),
                    })?;
                    let _ = used.set(entry.thumbprint.clone());
                    Ok(chosen.get_or_init(|| d) as &dyn KeyDecrypter)
                });
                let r = match outcome {
                    Ok(_) => Ok(()),
                    Err(e) => Err(match chosen.get() {
                        Some(d) => ctx.svc(d.service_error(e)),
                        None => ctx.pki(e),
                    }),
                };
                let used = used.into_inner().or(named.map(|e| e.thumbprint));
                match (r, used) {
                    (Ok(()), Some(t)) => (Ok(()), t),
                    (Err(e), _) => return Err(e),
                    (Ok(()), None) => return Err(fail(ErrorCode::Internal, "decrypted without a key")),
                }
            }
        };
        let output = self.finish_output(ctx, sink, result)?;
        Ok(DecryptResult { output, certificate: used })
    }
}
