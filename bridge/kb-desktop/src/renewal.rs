//! The 证书续期 (renewal) page over [`kb_service::renewal`]: each certificate of the one
//! key plugged in with 临期/过期 and where its renewal stands, the WeChat binding QR code
//! (watched by a long-poll on a thread, changes pushed as `renewal-event`), 安装证书 with
//! the PIN through the window's dialog, and a notice when the CA approves a renewal.
//!
//! The CA is the settings' `ca_url`. When none is configured the app runs the KeyBridge
//! **development** CA in-process on loopback (data in `<data>/devca`, issuing from the
//! home's demo CA, whose root new certificates must then chain to — as `keybridge devca`
//! does for the CLI); the page says so everywhere it shows. A configured CA's new
//! certificates must chain to a root in `<config>/trust/`.

use crate::model::{AppError, CertRef, CertStatus, MediaChange, MediaChanged};
use crate::{CLIENT, Desktop, views};
use kb_ca::HttpCaClient;
use kb_ca::api::{BindingState, RenewalKind, RenewalState};
use kb_pki::chain::TrustStore;
use kb_service::renewal::{CertificateRenewal, Renewal};
use kb_types::{ErrorCode, HasErrorCode, Lang, ValidityStatus};
use serde::{Deserialize, Serialize};
use specta::Type;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// How long one long-poll for a binding's state waits at the CA.
const BINDING_POLL: Duration = Duration::from_secs(25);
/// How long after start the first approval check waits (the window first).
pub(crate) const APPROVAL_FIRST_DELAY: Duration = Duration::from_secs(30);
/// How often the approval check runs while the app runs.
pub(crate) const APPROVAL_TICK: Duration = Duration::from_secs(10 * 60);

// ---------------------------------------------------------------------------------------
// what the window sees
// ---------------------------------------------------------------------------------------

/// The CA the page talks to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct RenewalCa {
    /// Its name for the user (服务名称).
    pub name: String,
    /// Its base URL.
    pub url: String,
    /// A development CA (the embedded one, or a CA that says it is one): testing only.
    pub development: bool,
    /// The dev CA the app runs itself (no `ca_url` configured).
    pub embedded: bool,
    /// It listens on loopback: a phone cannot open its QR code's URL unless it runs on
    /// this PC (for the dev CA: open the link in a browser here).
    pub loopback: bool,
    /// The embedded dev CA's operator page (approve / reject applications).
    pub operator_url: Option<String>,
}

/// Whether the page can work on the key plugged in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum RenewalPageState {
    /// One key plugged in: its certificates are listed.
    Ready,
    /// No key plugged in.
    NoMedium,
    /// More than one key plugged in: renewal is blocked until only one is.
    MultipleMedia,
    /// The CA could not be set up (see `problem`).
    NoCa,
}

/// Where a certificate's renewal stands, as the CA says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum RenewalProgress {
    /// Nothing applied for.
    None,
    /// Applied for, waiting for the CA's approval.
    Applied,
    /// Approved: 安装证书 now.
    Approved,
    /// Rejected (see the reason).
    Rejected,
    /// Issued by an earlier install that did not finish: 安装证书 again.
    Issued,
    /// The CA could not be asked (see `caError`).
    Unknown,
}

/// 续期 (same key pair) or 变更/补发 (new key pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum RenewalKindView {
    /// 续期.
    Renew,
    /// 变更/补发.
    Rekey,
}

/// One certificate on the page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct RenewalCert {
    /// Where it is.
    #[serde(rename = "ref")]
    pub cert_ref: CertRef,
    /// Serial, lowercase hex (as the CA API writes it).
    pub serial: String,
    /// Subject common name (or the whole subject).
    pub subject_cn: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// Days left (negative: days since it expired).
    pub days_left: i32,
    /// Valid, 临期 (`nearExpiry`), 过期 (`expired`).
    pub status: CertStatus,
    /// Bound to a phone (`None` when the CA could not be asked).
    pub bound: Option<bool>,
    /// Where its renewal stands.
    pub renewal: RenewalProgress,
    /// 续期 or 变更/补发, once applied for.
    pub kind: Option<RenewalKindView>,
    /// Why the CA rejected it.
    pub reason: Option<String>,
    /// Why the CA could not be asked.
    pub ca_error: Option<AppError>,
    /// 安装证书 is possible now (approved or issued).
    pub can_install: bool,
}

/// A binding QR code being shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct RenewalBinding {
    /// Names the binding.
    pub binding_id: String,
    /// The URL the QR code carries.
    pub qr_url: String,
    /// When it expires, ms since the epoch (by this PC's clock, from the CA's seconds left).
    pub expires_at_ms: i64,
    /// Seconds left when the CA answered (1800 for a new code).
    pub expires_in: i64,
}

/// The whole 证书续期 page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct RenewalPage {
    /// Whether it can work.
    pub state: RenewalPageState,
    /// What blocks it (several keys, no key, no CA): a stable code and message.
    pub problem: Option<AppError>,
    /// The CA (absent for `noCa`).
    pub ca: Option<RenewalCa>,
    /// The key's device id.
    pub device: Option<String>,
    /// The key's label.
    pub medium_label: Option<String>,
    /// 介质编号.
    pub medium_serial: Option<String>,
    /// Its certificates.
    pub certificates: Vec<RenewalCert>,
    /// The binding QR code being shown, while it is pending.
    pub binding: Option<RenewalBinding>,
}

/// What happened, for `renewal-event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum RenewalEventKind {
    /// The phone confirmed the binding (确认绑定).
    Bound,
    /// The phone cancelled it (取消).
    Cancelled,
    /// The QR code expired unconfirmed: get a new one.
    Expired,
    /// The CA approved a renewal: 安装证书 (also a desktop notification).
    Approved,
    /// The CA rejected a renewal.
    Rejected,
}

/// Event `renewal-event`: a binding's state changed, or a renewal was decided.
#[cfg_attr(feature = "tauri-events", derive(tauri_specta::Event))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct RenewalEvent {
    /// What happened.
    pub kind: RenewalEventKind,
    /// The binding (binding events).
    pub binding_id: Option<String>,
    /// The certificates concerned (serials, lowercase hex).
    pub serials: Vec<String>,
    /// Their subjects' common names, for a notification.
    pub subjects: Vec<String>,
}

/// What 安装证书 did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct RenewalInstallResult {
    /// 续期 or 变更/补发.
    pub kind: RenewalKindView,
    /// The certificate replaced (serial).
    pub old_serial: String,
    /// The new certificate (serial).
    pub new_serial: String,
    /// Its notAfter, RFC 3339.
    pub new_not_after: String,
    /// Where it is now (a new container for 变更/补发).
    #[serde(rename = "ref")]
    pub cert_ref: CertRef,
}

// ---------------------------------------------------------------------------------------
// the CA
// ---------------------------------------------------------------------------------------

/// The dev CA the app runs when no CA is configured.
pub(crate) struct EmbeddedDevCa {
    ca: Arc<kb_devca::DevCa>,
    server: kb_devca::Server,
}

impl EmbeddedDevCa {
    /// Start it on a free loopback port over `<data>/devca/devca.sqlite`, issuing from
    /// the home's demo CA.
    pub(crate) fn start(paths: &kb_service::settings::Paths, clock: Arc<dyn kb_devca::Clock>) -> Result<Self, String> {
        let (root, signer, _) = kb_service::demo::demo_ca(&kb_service::demo::demo_ca_dir(paths)).map_err(|e| e.to_string())?;
        let dir = paths.data_dir.join("devca");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = kb_devca::Config {
            name: kb_devca::SERVICE_NAME.into(),
            public_url: String::new(),
            operator_key: kb_devca::new_operator_key(),
        };
        let ca =
            Arc::new(kb_devca::DevCa::open(&dir.join("devca.sqlite"), root, signer, clock, config).map_err(|e| e.to_string())?);
        let server = kb_devca::Server::start(Arc::clone(&ca), SocketAddr::from(([127, 0, 0, 1], 0)), false)
            .map_err(|e| format!("the development CA could not listen on loopback: {e}"))?;
        Ok(EmbeddedDevCa { ca, server })
    }

    /// The dev CA itself (tests decide applications through it).
    pub(crate) fn ca(&self) -> &Arc<kb_devca::DevCa> {
        &self.ca
    }
}

/// The CA renewal works with, set up on first use.
pub(crate) struct CaSetup {
    renewal: Renewal,
    info: RenewalCa,
    pub(crate) embedded: Option<EmbeddedDevCa>,
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or("");
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(h) => h.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The page's renewal state: the CA (once set up), the binding being watched, the
/// approvals already noticed.
#[derive(Default)]
pub(crate) struct RenewalDesk {
    ca: OnceLock<Result<CaSetup, AppError>>,
    /// The binding shown; a newer one makes the older watcher stop.
    binding: Mutex<Option<RenewalBinding>>,
    generation: AtomicU64,
    /// `serial:application:state` of decisions already noticed.
    noticed: Mutex<BTreeSet<String>>,
    /// The app itself, for the threads it starts (set once it is opened).
    app: OnceLock<Weak<Desktop>>,
}

impl RenewalDesk {
    /// Use this CA from now on (tests: an embedded dev CA with a manual clock).
    #[cfg(test)]
    pub(crate) fn set_ca(&self, setup: CaSetup) -> bool {
        self.ca.set(Ok(setup)).is_ok()
    }
}

impl CaSetup {
    /// The embedded dev CA over `paths`.
    pub(crate) fn embedded(
        manager: &kb_service::devices::DeviceManager,
        paths: &kb_service::settings::Paths,
        clock: Arc<dyn kb_devca::Clock>,
    ) -> Result<Self, String> {
        let dev = EmbeddedDevCa::start(paths, clock)?;
        let url = dev.server.url();
        let client = HttpCaClient::new(&url).map_err(|e| e.to_string())?;
        let trust = TrustStore::from_certs(vec![dev.ca.root().clone()]);
        let info = RenewalCa {
            name: dev.ca.config().name,
            url: url.clone(),
            development: true,
            embedded: true,
            loopback: true,
            operator_url: Some(format!("{url}/op?key={}", dev.ca.config().operator_key)),
        };
        let renewal = Renewal::new(manager.clone(), Arc::new(client), trust, paths.data_dir.join("renewal"));
        Ok(CaSetup { renewal, info, embedded: Some(dev) })
    }

    /// A configured CA at `url`, its roots from `<config>/trust/`.
    fn configured(
        manager: &kb_service::devices::DeviceManager,
        paths: &kb_service::settings::Paths,
        url: &str,
    ) -> Result<Self, String> {
        let client = HttpCaClient::new(url).map_err(|e| e.to_string())?;
        let mut anchors = Vec::new();
        for f in kb_bridge::trust::anchor_files(&paths.config_dir) {
            match kb_bridge::trust::certificates_in(&f) {
                Ok(c) => anchors.extend(c),
                Err(e) => tracing::warn!("trust anchor skipped: {e}"),
            }
        }
        // The name and whether it is a development CA, when it answers now; a CA that is
        // down shows its URL and each certificate says it could not be asked.
        let (name, development) = match kb_ca::CaClient::server_info(&client) {
            Ok(i) => (i.name, i.development),
            Err(e) => {
                tracing::warn!("CA {url}: {e}");
                (url.to_string(), false)
            }
        };
        let info = RenewalCa {
            name,
            url: url.to_string(),
            development,
            embedded: false,
            loopback: is_loopback_url(url),
            operator_url: None,
        };
        let renewal =
            Renewal::new(manager.clone(), Arc::new(client), TrustStore::from_certs(anchors), paths.data_dir.join("renewal"));
        Ok(CaSetup { renewal, info, embedded: None })
    }
}

fn progress(c: &CertificateRenewal) -> RenewalProgress {
    match c.renewal.as_ref().map(|s| s.state) {
        None => RenewalProgress::Unknown,
        Some(RenewalState::None) => RenewalProgress::None,
        Some(RenewalState::Applied) => RenewalProgress::Applied,
        Some(RenewalState::Approved) => RenewalProgress::Approved,
        Some(RenewalState::Rejected) => RenewalProgress::Rejected,
        Some(RenewalState::Issued) => RenewalProgress::Issued,
    }
}

fn kind_view(k: RenewalKind) -> RenewalKindView {
    match k {
        RenewalKind::Renew => RenewalKindView::Renew,
        RenewalKind::Rekey => RenewalKindView::Rekey,
    }
}

fn cert_view(c: &CertificateRenewal, lang: Lang) -> RenewalCert {
    let renewal = progress(c);
    let ca_error = c.ca_error.as_ref().map(|(name, message)| {
        let code = ErrorCode::ALL.iter().copied().find(|x| x.name() == name).unwrap_or(ErrorCode::CaUnreachable);
        AppError::new(code, lang, message.clone())
    });
    RenewalCert {
        cert_ref: CertRef { device: c.device.to_string(), container: c.container.clone(), usage: views::usage(c.usage) },
        serial: c.serial.clone(),
        subject_cn: common_name(&c.subject),
        not_after: c.not_after.clone(),
        days_left: i32::try_from(c.days_left).unwrap_or(if c.days_left < 0 { i32::MIN } else { i32::MAX }),
        status: match c.validity {
            ValidityStatus::Valid => CertStatus::Valid,
            ValidityStatus::ExpiringSoon => CertStatus::NearExpiry,
            ValidityStatus::Expired => CertStatus::Expired,
            ValidityStatus::NotYetValid => CertStatus::NotYetValid,
        },
        bound: c.renewal.as_ref().map(|s| s.bound),
        renewal,
        kind: c.renewal.as_ref().and_then(|s| s.application.as_ref()).map(|a| kind_view(a.kind)),
        reason: c.renewal.as_ref().and_then(|s| s.reason.clone()),
        ca_error,
        can_install: matches!(renewal, RenewalProgress::Approved | RenewalProgress::Issued),
    }
}

/// The CN of a subject written most specific first (`CN=王五, O=…`), or the whole subject.
fn common_name(subject: &str) -> String {
    subject.split(',').map(str::trim).find_map(|a| a.strip_prefix("CN=")).map(String::from).unwrap_or_else(|| subject.to_string())
}

fn now_ms() -> i64 {
    kb_service::audit::now_ms()
}

impl Desktop {
    /// The CA renewal works with: the settings' `ca_url`, else the embedded dev CA
    /// (started on first use).
    pub(crate) fn renewal_ca(&self) -> Result<&CaSetup, AppError> {
        let lang = self.lang();
        self.renewal
            .ca
            .get_or_init(|| {
                let url = self.read_settings().ca_url.clone();
                let made = if url.is_empty() {
                    CaSetup::embedded(&self.manager, &self.paths, Arc::new(kb_devca::SystemClock))
                } else {
                    CaSetup::configured(&self.manager, &self.paths, &url)
                };
                made.map_err(|e| AppError::new(ErrorCode::CaNotConfigured, lang, e))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn renewal_service(&self) -> Result<&Renewal, AppError> {
        Ok(&self.renewal_ca()?.renewal)
    }

    /// The one key plugged in, or why renewal is blocked.
    fn renewal_medium(&self) -> Result<kb_types::DeviceInfo, AppError> {
        self.renewal_service()?.single_medium().map_err(self.svc())
    }

    /// The 证书续期 page: the CA, the one key's certificates with their renewal state, or
    /// what blocks it (several keys plugged in, none, no CA).
    pub fn renewal_page(&self) -> Result<RenewalPage, AppError> {
        let lang = self.lang();
        let blocked = |state, problem: AppError, ca: Option<RenewalCa>| RenewalPage {
            state,
            problem: Some(problem),
            ca,
            device: None,
            medium_label: None,
            medium_serial: None,
            certificates: Vec::new(),
            binding: None,
        };
        let setup = match self.renewal_ca() {
            Ok(s) => s,
            Err(e) => return Ok(blocked(RenewalPageState::NoCa, e, None)),
        };
        let ca = Some(setup.info.clone());
        let info = match setup.renewal.single_medium() {
            Ok(i) => i,
            Err(e) if e.code() == ErrorCode::MultipleMediaPresent => {
                return Ok(blocked(RenewalPageState::MultipleMedia, AppError::service(&e, lang), ca));
            }
            Err(e) if e.code() == ErrorCode::UnknownDevice => {
                return Ok(blocked(RenewalPageState::NoMedium, AppError::service(&e, lang), ca));
            }
            Err(e) => return Err(AppError::service(&e, lang)),
        };
        let rows = setup.renewal.status(&info.id, CLIENT).map_err(self.svc())?;
        let binding = self.lock_binding().clone().filter(|b| b.expires_at_ms > now_ms());
        Ok(RenewalPage {
            state: RenewalPageState::Ready,
            problem: None,
            ca,
            device: Some(info.id.to_string()),
            medium_label: Some(info.label),
            medium_serial: Some(info.serial),
            certificates: rows.iter().map(|c| cert_view(c, lang)).collect(),
            binding,
        })
    }

    fn lock_binding(&self) -> std::sync::MutexGuard<'_, Option<RenewalBinding>> {
        self.renewal.binding.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// 获取二维码: ask the CA for a binding of the key's signing certificates (the PIN is
    /// asked in the window's dialog: each certificate's key proves the request). The QR
    /// code's state is then watched and pushed as `renewal-event`s.
    pub fn renewal_bind(&self) -> Result<RenewalBinding, AppError> {
        let r = self.renewal_service()?;
        let info = self.renewal_medium()?;
        let b = {
            let op = self.operation();
            r.bind(&info.id, &op.caller).map_err(self.svc())?
        };
        let view = RenewalBinding {
            binding_id: b.binding_id.clone(),
            qr_url: b.qr_url,
            expires_at_ms: now_ms() + b.expires_in.saturating_mul(1000),
            expires_in: b.expires_in,
        };
        *self.lock_binding() = Some(view.clone());
        let generation = self.renewal.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let weak = self.renewal.app.get().cloned().unwrap_or_default();
        let id = b.binding_id;
        std::thread::Builder::new()
            .name("kb-desktop-binding".into())
            .spawn(move || watch_binding(&weak, &id, generation))
            .map_err(|e| AppError::new(ErrorCode::Internal, self.lang(), e.to_string()))?;
        Ok(view)
    }

    /// 安装证书: install the renewed certificate the CA approved for `cert` (the PIN is
    /// asked in the window's dialog; progress as `operation-status`). Only with one key
    /// plugged in, and only that key.
    pub fn renewal_install(&self, cert: &CertRef) -> Result<RenewalInstallResult, AppError> {
        let lang = self.lang();
        let r = self.renewal_service()?;
        let info = self.renewal_medium()?;
        if info.id.0 != cert.device {
            return Err(AppError::input(lang, format!("{} is not the key plugged in ({})", cert.device, info.id)));
        }
        let report = {
            let op = self.operation();
            r.install(&info.id, &cert.container, views::key_usage(cert.usage), &op.caller).map_err(self.svc())
        };
        // Whatever happened, the key's contents may have changed.
        self.events.media_changed(&MediaChanged { change: MediaChange::Changed, device: cert.device.clone() });
        let report = report?;
        Ok(RenewalInstallResult {
            kind: kind_view(report.kind),
            old_serial: report.old_serial,
            new_serial: report.new_serial,
            new_not_after: report.new_not_after,
            cert_ref: CertRef { device: cert.device.clone(), container: report.container, usage: cert.usage },
        })
    }

    /// Ask the CA about the plugged-in key's certificates and tell the window (event and
    /// desktop notification) about renewals approved or rejected since last noticed. Runs
    /// on a slow schedule while the app runs, and on demand. Returns the new notices.
    pub fn renewal_check(&self) -> Result<Vec<RenewalEvent>, AppError> {
        let r = self.renewal_service()?;
        let Ok(info) = r.single_medium() else { return Ok(Vec::new()) };
        let rows = r.status(&info.id, CLIENT).map_err(self.svc())?;
        let mut out = Vec::new();
        let mut noticed = self.renewal.noticed.lock().unwrap_or_else(|e| e.into_inner());
        for c in &rows {
            let Some(s) = &c.renewal else { continue };
            let kind = match s.state {
                RenewalState::Approved => RenewalEventKind::Approved,
                RenewalState::Rejected => RenewalEventKind::Rejected,
                _ => continue,
            };
            let app = s.application.as_ref().map(|a| a.id.as_str()).unwrap_or("");
            if noticed.insert(format!("{}:{app}:{kind:?}", c.serial)) {
                out.push(RenewalEvent {
                    kind,
                    binding_id: None,
                    serials: vec![c.serial.clone()],
                    subjects: vec![common_name(&c.subject)],
                });
            }
        }
        drop(noticed);
        for e in &out {
            self.events.renewal_event(e);
        }
        Ok(out)
    }

    /// The embedded dev CA, when it runs (tests decide applications through it).
    pub fn embedded_dev_ca(&self) -> Option<Arc<kb_devca::DevCa>> {
        self.renewal_ca().ok().and_then(|s| s.embedded.as_ref()).map(|e| Arc::clone(e.ca()))
    }
}

/// Long-poll the CA for `id` until it is no longer pending (or a newer binding replaced
/// it, or the app closed); push the change to the window.
fn watch_binding(weak: &Weak<Desktop>, id: &str, generation: u64) {
    loop {
        let Some(d) = weak.upgrade() else { return };
        if d.renewal.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        let Ok(r) = d.renewal_service() else { return };
        let r = r.clone();
        // Not kept alive while the CA holds the answer.
        drop(d);
        let status = r.binding_status(id, Some((BindingState::Pending, BINDING_POLL)));
        let Some(d) = weak.upgrade() else { return };
        let s = match status {
            Ok(s) => s,
            Err(e) => {
                // The CA is down or slow: try again, unless the code has expired anyway.
                tracing::warn!("binding {id}: {e}");
                let expired = d.lock_binding().as_ref().is_none_or(|b| b.binding_id != id || b.expires_at_ms <= now_ms());
                drop(d);
                if expired {
                    return;
                }
                std::thread::sleep(Duration::from_secs(5));
                continue;
            }
        };
        let kind = match s.state {
            BindingState::Pending => continue,
            BindingState::Confirmed => RenewalEventKind::Bound,
            BindingState::Cancelled => RenewalEventKind::Cancelled,
            BindingState::Expired => RenewalEventKind::Expired,
        };
        if d.renewal.generation.load(Ordering::SeqCst) == generation {
            let mut shown = d.lock_binding();
            if shown.as_ref().is_some_and(|b| b.binding_id == id) {
                *shown = None;
            }
        }
        d.events.renewal_event(&RenewalEvent {
            kind,
            binding_id: Some(id.to_string()),
            serials: s.certificates,
            subjects: Vec::new(),
        });
        return;
    }
}

/// The slow approval check while the app runs.
pub(crate) fn start_approval_checks(desktop: &Arc<Desktop>) {
    let weak = Arc::downgrade(desktop);
    let _ = desktop.renewal.app.set(weak.clone());
    let _ = std::thread::Builder::new().name("kb-desktop-renewals".into()).spawn(move || {
        std::thread::sleep(APPROVAL_FIRST_DELAY);
        while let Some(d) = weak.upgrade() {
            if let Err(e) = d.renewal_check() {
                tracing::debug!("renewal check: {e}");
            }
            drop(d);
            std::thread::sleep(APPROVAL_TICK);
        }
    });
}

#[cfg(test)]
#[path = "renewal_tests.rs"]
mod tests;
