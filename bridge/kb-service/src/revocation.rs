//! Revocation checking for everything users see: certificate details, `verify`, the
//! bridge's certificate list and the choice of a decryption key.
//!
//! [`RevocationChecker::check`] answers good / revoked / unknown for a certificate and
//! its (already verified) issuer, from, in this order:
//!
//! 1. CRLs the caller has (carried in a CMS signature) and the CRL folder
//!    (`<data dir>/crl` or the `crl_dir` setting: DER or PEM files an IT department or
//!    the user drops there);
//! 2. what is cached: OCSP answers and fetched CRLs, each kept until its `nextUpdate`
//!    (CRLs on disk under `<data dir>/cache/crl`, re-verified when read); sources that
//!    failed are not asked again for [`RevocationConfig::failure_ttl`];
//! 3. online (the `revocation_check` setting): the OCSP responder (the `ocsp_responder`
//!    setting, else the certificate's AIA), with a fresh nonce, then the certificate's
//!    CRL distribution points — all within one network budget per check (time-outs and
//!    size caps), http(s) only.
//!
//! A revoked answer from any verified source wins; a verified, current "good" from any
//! source is good. Anything else is unknown with the first reason met (offline, stale,
//! bad signature, …) — never good.
//!
//! Only certificates whose chain verified to a trusted root are checked (the caller
//! passes the issuer from that chain), so the URLs fetched are those a trusted CA put
//! in its certificates: a web page cannot make KeyBridge fetch an address of its choice
//! by submitting a signature with a self-made certificate.

use kb_ca::http::Request;
use kb_ca::{HttpCaClient, Limits};
use kb_crypto::HashAlgorithm;
use kb_pki::Certificate;
use kb_pki::ocsp::{self, CertId};
use kb_pki::revocation::{Crl, RevocationStatus, UnknownReason, check_crl};
use kb_pki::time::UnixTime;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::settings::{Paths, RevocationCheck, Settings};

/// The largest CRL fetched (a national CA's full CRL is a few MiB).
pub const MAX_CRL_BYTES: usize = 16 * 1024 * 1024;

/// How a checker gets its data.
#[derive(Clone, Debug)]
pub struct RevocationConfig {
    /// Online, offline or off.
    pub mode: RevocationCheck,
    /// CRLs to use (DER or PEM files), if any.
    pub crl_dir: Option<PathBuf>,
    /// Where fetched CRLs are cached, if anywhere (else memory only).
    pub cache_dir: Option<PathBuf>,
    /// An OCSP responder asked instead of the certificates' own.
    pub ocsp_responder: Option<String>,
    /// Time for one fetch (connect + exchange).
    pub fetch_timeout: Duration,
    /// Time for all the fetches of one check.
    pub budget: Duration,
    /// A source that failed is not asked again for this long.
    pub failure_ttl: Duration,
}

impl RevocationConfig {
    /// No sources at all: every status is unknown (no source). What a bridge without
    /// settings uses.
    pub fn none() -> Self {
        RevocationConfig {
            mode: RevocationCheck::Offline,
            crl_dir: None,
            cache_dir: None,
            ocsp_responder: None,
            fetch_timeout: Duration::from_secs(5),
            budget: Duration::from_secs(8),
            failure_ttl: Duration::from_secs(300),
        }
    }

    /// From the settings: their mode, CRL folder and responder; the cache under the
    /// data directory.
    pub fn from_settings(settings: &Settings, paths: &Paths) -> Self {
        RevocationConfig {
            mode: settings.revocation_check,
            crl_dir: Some(settings.crl_dir(paths)),
            cache_dir: Some(paths.data_dir.join("cache").join("crl")),
            ocsp_responder: (!settings.ocsp_responder.is_empty()).then(|| settings.ocsp_responder.clone()),
            ..Self::none()
        }
    }
}

/// A status remembered until it may have changed.
#[derive(Clone, Debug)]
struct Cached {
    status: RevocationStatus,
    /// Unix seconds after which it is asked again (`None`: never — revoked is final).
    until: Option<i64>,
}

/// A CRL file in the folder, parsed once per modification.
struct FolderCrl {
    modified: Option<SystemTime>,
    len: u64,
    crl: Option<Crl>,
}

#[derive(Default)]
struct State {
    /// OCSP and CRL results by certificate (issuer key hash, serial).
    statuses: HashMap<(Vec<u8>, Vec<u8>), Cached>,
    /// Fetched CRLs by URL.
    crls: HashMap<String, Crl>,
    /// Sources that failed recently: URL → (when, why).
    failed: HashMap<String, (Instant, UnknownReason)>,
    /// The CRL folder's files.
    folder: HashMap<PathBuf, FolderCrl>,
}

/// Answers "is this certificate revoked?" (see the module docs).
pub struct RevocationChecker {
    config: RevocationConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for RevocationChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationChecker").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The outcome of one source.
enum Outcome {
    Final(RevocationStatus),
    Failed(UnknownReason),
}

fn definitive(status: RevocationStatus) -> Outcome {
    match status {
        RevocationStatus::Unknown { why } => Outcome::Failed(why),
        s => Outcome::Final(s),
    }
}

fn key_of(cert: &Certificate, issuer: &Certificate) -> (Vec<u8>, Vec<u8>) {
    (kb_crypto::digest(HashAlgorithm::Sha256, issuer.public_key_bits()), cert.serial_bytes().to_vec())
}

fn until_of(status: &RevocationStatus) -> Option<i64> {
    match status {
        RevocationStatus::Revoked { .. } => None,
        RevocationStatus::Good { this_update, next_update, .. } => {
            Some(next_update.map(|n| n.0).unwrap_or(this_update.0 + ocsp::MAX_AGE_WITHOUT_NEXT_UPDATE))
        }
        RevocationStatus::Unknown { .. } => Some(0),
    }
}

impl RevocationChecker {
    /// A checker with this configuration.
    pub fn new(config: RevocationConfig) -> Self {
        RevocationChecker { config, state: Mutex::new(State::default()) }
    }

    /// One with no sources (every answer unknown).
    pub fn without_sources() -> Self {
        Self::new(RevocationConfig::none())
    }

    /// Its configuration.
    pub fn config(&self) -> &RevocationConfig {
        &self.config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The status of `cert`, issued by `issuer` (from a verified chain), at `now`;
    /// `carried` are CRLs that came with the data (a CMS signature's).
    pub fn check(&self, cert: &Certificate, issuer: &Certificate, carried: &[Crl], now: UnixTime) -> RevocationStatus {
        self.check_with(cert, issuer, carried, now, false)
    }

    /// [`RevocationChecker::check`] asking the sources again: cached answers and
    /// remembered failures are not used (but are refreshed). For a person opening a
    /// certificate's details, who expects what the CA says now.
    pub fn check_fresh(&self, cert: &Certificate, issuer: &Certificate, carried: &[Crl], now: UnixTime) -> RevocationStatus {
        self.check_with(cert, issuer, carried, now, true)
    }

    fn check_with(
        &self,
        cert: &Certificate,
        issuer: &Certificate,
        carried: &[Crl],
        now: UnixTime,
        fresh: bool,
    ) -> RevocationStatus {
        if self.config.mode == RevocationCheck::Off {
            return RevocationStatus::Unknown { why: UnknownReason::Unsupported { detail: "revocation checking is off".into() } };
        }
        let mut first_failure: Option<UnknownReason> = None;
        let mut good: Option<RevocationStatus> = None;
        let mut note = |o: Outcome, good: &mut Option<RevocationStatus>| -> Option<RevocationStatus> {
            match o {
                Outcome::Final(s @ RevocationStatus::Revoked { .. }) => Some(s),
                Outcome::Final(s) => {
                    good.get_or_insert(s);
                    None
                }
                Outcome::Failed(why) => {
                    first_failure.get_or_insert(why);
                    None
                }
            }
        };
        // 1. CRLs at hand: carried, then the folder.
        let local: Vec<Crl> = carried.iter().cloned().chain(self.folder_crls()).collect();
        for crl in local.iter().filter(|c| c.issuer() == issuer.subject()) {
            if let Some(r) = note(definitive(check_crl(cert, issuer, crl, now)), &mut good) {
                return r;
            }
        }
        // 2. The cache.
        let key = key_of(cert, issuer);
        let cached = if fresh { None } else { self.state().statuses.get(&key).cloned() };
        if let Some(c) = cached
            && c.until.is_none_or(|u| u > now.0)
        {
            if let Some(r) = note(definitive(c.status), &mut good) {
                return r;
            }
        }
        if let Some(g) = good {
            return g;
        }
        // 3. Online.
        if self.config.mode == RevocationCheck::Online {
            let deadline = Instant::now() + self.config.budget;
            let responders = match &self.config.ocsp_responder {
                Some(r) => vec![r.clone()],
                None => cert.ocsp_urls(),
            };
            for url in responders {
                let o = self.ask_ocsp(&url, cert, issuer, now, deadline, fresh);
                if let Outcome::Final(s) = &o {
                    self.remember(key.clone(), s.clone());
                }
                if let Some(r) = note(o, &mut good) {
                    return r;
                }
                if let Some(g) = good.take() {
                    return g;
                }
            }
            for url in cert.crl_urls() {
                let o = match self.fetch_crl(&url, issuer, now, deadline, fresh) {
                    Ok(crl) => definitive(check_crl(cert, issuer, &crl, now)),
                    Err(why) => Outcome::Failed(why),
                };
                if let Some(r) = note(o, &mut good) {
                    return r;
                }
                if let Some(g) = good.take() {
                    return g;
                }
            }
        } else if !cert.ocsp_urls().is_empty() || !cert.crl_urls().is_empty() || self.config.ocsp_responder.is_some() {
            first_failure.get_or_insert(UnknownReason::Offline { detail: "revocation checking is set to offline".into() });
        }
        RevocationStatus::Unknown { why: first_failure.unwrap_or(UnknownReason::NoSource) }
    }

    fn remember(&self, key: (Vec<u8>, Vec<u8>), status: RevocationStatus) {
        let until = until_of(&status);
        self.state().statuses.insert(key, Cached { status, until });
    }

    /// A recent failure of `url`, if it is still to be believed.
    fn recent_failure(&self, url: &str) -> Option<UnknownReason> {
        let st = self.state();
        st.failed.get(url).filter(|(at, _)| at.elapsed() < self.config.failure_ttl).map(|(_, why)| why.clone())
    }

    fn failed(&self, url: &str, why: UnknownReason) -> UnknownReason {
        self.state().failed.insert(url.to_string(), (Instant::now(), why.clone()));
        why
    }

    /// One HTTP exchange within the budget.
    fn fetch(&self, url: &str, req: Request, max: usize, deadline: Instant) -> Result<Vec<u8>, UnknownReason> {
        let offline = |detail: String| UnknownReason::Offline { detail };
        let left = deadline.saturating_duration_since(Instant::now()).min(self.config.fetch_timeout);
        if left.is_zero() {
            return Err(offline(format!("{url}: the time for revocation checks ran out")));
        }
        let mut req = req;
        if kb_ca::http::parse_http_url(url).is_some_and(|u| u.path.trim_end_matches('/').is_empty()) {
            req.target = "/".into();
        }
        let client = HttpCaClient::new(url).map_err(|e| offline(format!("{url}: {e}")))?.with_limits(Limits {
            connect: left,
            exchange: left,
            max_response: max,
        });
        let resp = client.exchange(req, Duration::ZERO).map_err(|e| offline(format!("{url}: {e}")))?;
        if resp.status != 200 {
            return Err(offline(format!("{url}: HTTP {}", resp.status)));
        }
        Ok(resp.body)
    }

    fn ask_ocsp(
        &self,
        url: &str,
        cert: &Certificate,
        issuer: &Certificate,
        now: UnixTime,
        deadline: Instant,
        fresh: bool,
    ) -> Outcome {
        if let Some(why) = self.recent_failure(url).filter(|_| !fresh) {
            return Outcome::Failed(why);
        }
        let mut nonce = [0u8; 16];
        if kb_crypto::rng::fill(&mut nonce).is_err() {
            return Outcome::Failed(UnknownReason::Offline { detail: "no random numbers for the OCSP nonce".into() });
        }
        let id = CertId::new(cert, issuer, HashAlgorithm::Sha1);
        let body = match ocsp::request(&[id], Some(&nonce)) {
            Ok(b) => b,
            Err(e) => return Outcome::Failed(UnknownReason::Malformed { detail: e.to_string() }),
        };
        let mut req = Request { method: "POST".into(), target: String::new(), body, ..Default::default() };
        req.headers.push(("Content-Type".into(), "application/ocsp-request".into()));
        req.headers.push(("Accept".into(), "application/ocsp-response".into()));
        match self.fetch(url, req, ocsp::MAX_RESPONSE_BYTES, deadline) {
            Ok(der) => match ocsp::check_response(cert, issuer, &der, Some(&nonce), now) {
                RevocationStatus::Unknown { why } => Outcome::Failed(self.failed(url, why)),
                s => Outcome::Final(s),
            },
            Err(why) => Outcome::Failed(self.failed(url, why)),
        }
    }

    /// A current CRL from `url` verified against `issuer`: from memory, the disk cache
    /// or the network.
    fn fetch_crl(
        &self,
        url: &str,
        issuer: &Certificate,
        now: UnixTime,
        deadline: Instant,
        fresh: bool,
    ) -> Result<Crl, UnknownReason> {
        let usable = |c: &Crl| c.next_update().is_some_and(|n| n.0 >= now.0) && c.verify_signature(issuer).is_ok();
        if let Some(c) = self.state().crls.get(url).filter(|c| !fresh && usable(c)).cloned() {
            return Ok(c);
        }
        let disk = self.cache_file(url);
        if let Some(c) = disk
            .as_ref()
            .filter(|_| !fresh)
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| Crl::from_der(&b).ok())
            .filter(usable)
        {
            self.state().crls.insert(url.to_string(), c.clone());
            return Ok(c);
        }
        if let Some(why) = self.recent_failure(url).filter(|_| !fresh) {
            return Err(why);
        }
        let req = Request { method: "GET".into(), target: String::new(), ..Default::default() };
        let bytes = self.fetch(url, req, MAX_CRL_BYTES, deadline).map_err(|why| self.failed(url, why))?;
        let crl = Crl::from_any(&bytes).map_err(|e| self.failed(url, UnknownReason::Malformed { detail: e.to_string() }))?;
        if crl.verify_signature(issuer).is_ok() {
            if let Some(p) = disk {
                // A cache that cannot be written only costs a later fetch.
                let _ = p.parent().map(std::fs::create_dir_all);
                let _ = crate::settings::write_atomic(&p, crl.der());
            }
            self.state().crls.insert(url.to_string(), crl.clone());
        }
        Ok(crl)
    }

    fn cache_file(&self, url: &str) -> Option<PathBuf> {
        let dir = self.config.cache_dir.as_ref()?;
        let name: String = kb_crypto::digest(HashAlgorithm::Sha256, url.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        Some(dir.join(format!("{name}.crl")))
    }

    /// The CRL folder's CRLs (files that do not parse are skipped and logged once).
    fn folder_crls(&self) -> Vec<Crl> {
        let Some(dir) = &self.config.crl_dir else { return Vec::new() };
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut st = self.state();
        let mut seen = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().ok();
            let fresh = st.folder.get(&path).is_some_and(|f| f.modified == modified && f.len == meta.len());
            if !fresh {
                let crl = read_crl(&path);
                st.folder.insert(path.clone(), FolderCrl { modified, len: meta.len(), crl });
            }
            seen.push(path);
        }
        st.folder.retain(|p, _| seen.contains(p));
        st.folder.values().filter_map(|f| f.crl.clone()).collect()
    }
}

fn read_crl(path: &Path) -> Option<Crl> {
    let bytes = std::fs::read(path).ok()?;
    match Crl::from_any(&bytes) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("CRL folder: {} is not a CRL: {e}", path.display());
            None
        }
    }
}

/// What users are told (the shared vocabulary type).
pub use kb_types::{Revocation as RevocationSummary, RevocationState};

/// The summary of a status.
pub fn summary_of(status: &RevocationStatus) -> RevocationSummary {
    let code = status.error_code().map(|c| c.number());
    let source = |s: &kb_pki::revocation::RevocationSource| match s {
        kb_pki::revocation::RevocationSource::Crl { number } => {
            format!("CRL{}", number.as_ref().map(|n| format!(" #{n}")).unwrap_or_default())
        }
        kb_pki::revocation::RevocationSource::Ocsp { responder, .. } => format!("OCSP ({responder})"),
    };
    let (status, revoked_at, reason, detail) = match status {
        RevocationStatus::Good { source: s, .. } => (RevocationState::Good, None, None, source(s)),
        RevocationStatus::Revoked { at, reason, source: s } => {
            (RevocationState::Revoked, Some(at.0), reason.map(|r| r.rfc_name().to_string()), source(s))
        }
        RevocationStatus::Unknown { why } => (RevocationState::Unknown, None, None, why_text(why)),
    };
    RevocationSummary { status, code, revoked_at, reason, detail }
}

/// One line for people, in `lang`.
pub fn text(r: &RevocationSummary, lang: kb_types::Lang) -> String {
    let zh = lang == kb_types::Lang::ZhCn;
    match r.status {
        RevocationState::Good => format!("{} ({})", if zh { "未吊销" } else { "not revoked" }, r.detail),
        RevocationState::Revoked => {
            let at = r.revoked_at.map(|t| UnixTime(t).to_rfc3339()).unwrap_or_default();
            let reason = r.reason.as_deref().map(|x| format!(", {x}")).unwrap_or_default();
            format!("{} {at}{reason} ({})", if zh { "已吊销" } else { "revoked" }, r.detail)
        }
        RevocationState::Unknown => format!("{}: {}", if zh { "未知" } else { "unknown" }, r.detail),
        RevocationState::NotChecked => format!("{}: {}", if zh { "未检查" } else { "not checked" }, r.detail),
    }
}

fn why_text(why: &UnknownReason) -> String {
    match why {
        UnknownReason::NoSource => "no CRL or OCSP responder is known for it".into(),
        UnknownReason::Offline { detail } => format!("offline: {detail}"),
        UnknownReason::Stale { next_update } => format!("the newest data expired at {}", next_update.to_rfc3339()),
        UnknownReason::NotYetValid { this_update } => format!("the data is dated in the future ({})", this_update.to_rfc3339()),
        UnknownReason::WrongIssuer => "the CRL is for another issuer".into(),
        UnknownReason::BadSignature { detail } => format!("the answer's signature does not verify: {detail}"),
        UnknownReason::Malformed { detail } => format!("the answer is malformed: {detail}"),
        UnknownReason::ResponderRefused { status } => format!("the OCSP responder refused: {status}"),
        UnknownReason::Replayed { detail } => format!("a replayed OCSP answer: {detail}"),
        UnknownReason::OtherCertificate => "the OCSP answer is about another certificate".into(),
        UnknownReason::ResponderUnknown => "the OCSP responder does not know the certificate".into(),
        UnknownReason::Unsupported { detail } => detail.clone(),
    }
}

impl RevocationChecker {
    /// The summary for `cert` now: its chain is built against `trust` (with these
    /// intermediates), and the issuer from that chain is used to check it.
    pub fn summary(
        &self,
        cert: &Certificate,
        intermediates: &[Certificate],
        trust: &kb_pki::chain::TrustStore,
        carried: &[Crl],
        now: UnixTime,
    ) -> RevocationSummary {
        self.summarise(cert, intermediates, trust, carried, now, now, false)
    }

    /// [`RevocationChecker::summary`] asking the sources again ([`RevocationChecker::check_fresh`]).
    pub fn summary_fresh(
        &self,
        cert: &Certificate,
        intermediates: &[Certificate],
        trust: &kb_pki::chain::TrustStore,
        now: UnixTime,
    ) -> RevocationSummary {
        self.summarise(cert, intermediates, trust, &[], now, now, true)
    }

    /// [`RevocationChecker::summary`] with the chain built at `chain_at` (a signature's
    /// time: the signer's certificate may have expired since), the status asked now.
    pub fn summary_for_chain_at(
        &self,
        cert: &Certificate,
        intermediates: &[Certificate],
        trust: &kb_pki::chain::TrustStore,
        carried: &[Crl],
        chain_at: UnixTime,
        now: UnixTime,
    ) -> RevocationSummary {
        self.summarise(cert, intermediates, trust, carried, chain_at, now, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn summarise(
        &self,
        cert: &Certificate,
        intermediates: &[Certificate],
        trust: &kb_pki::chain::TrustStore,
        carried: &[Crl],
        chain_at: UnixTime,
        now: UnixTime,
        fresh: bool,
    ) -> RevocationSummary {
        match kb_pki::chain::verify_chain(cert, intermediates, trust, chain_at) {
            Ok(chain) => match chain.certificates.get(1) {
                Some(issuer) => summary_of(&self.check_with(cert, issuer, carried, now, fresh)),
                None => RevocationSummary::not_checked("a trust anchor"),
            },
            Err(e) => RevocationSummary::not_checked(format!("the chain does not verify: {e}")),
        }
    }
}
