//! The desktop app's core: what every screen does, over the device service.
//!
//! `src-tauri` is a thin shell: each Tauri command calls one [`Desktop`] method, events
//! go out through [`EventSink`] and [`prompter::PromptSink`]. Everything here is plain
//! Rust, tested without a window against real file-type keys.
//!
//! - [`model`]: the types the window sees (generated into `ui/src/bindings.ts`).
//! - [`prompter`]: the window's PIN / confirm / consent / QR dialogs as a `Prompter`.
//! - [`update`]: the update check.
//! - [`privacy`]: the personal-data list and the third-party library list.
//! - [`renewal`]: the 证书续期 page (binding QR, 安装证书, approval notices) and the
//!   embedded development CA.
//! - [`phone`]: the phone keys page (phones acting as this PC's keys).
//! - [`autostart`]: the start-at-login entry the `autostart` setting keeps.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod autostart;
pub mod ble;
mod error;
mod local_bridge;
pub mod model;
pub mod phone;
pub mod privacy;
pub mod prompter;
pub mod renewal;
pub mod update;
mod views;

use crate::model::*;
use crate::prompter::UiPrompter;
use kb_filekey::KdfParams;
use kb_pki::Certificate;
use kb_pki::chain::TrustStore;
use kb_pki::time::UnixTime;
use kb_service::audit::{AuditLog, AuditQuery};
use kb_service::devices::{Caller, DeviceEvent, DeviceManager};
use kb_service::logs::{LogConfig, LogGuard};
use kb_service::pin_cache::PinCachePolicy;
use kb_service::settings::{Paths, PinCacheMinutes, Settings};
use kb_types::{DeviceId, ErrorCode, HasErrorCode, Lang, Pin, PinKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The client name the audit log records for what the window does.
pub const CLIENT: &str = "desktop";
/// The version of the privacy policy and user agreement in this build. Raising it asks
/// every user to accept again.
pub const AGREEMENT_VERSION: &str = "2026-11";
/// How long start-up waits for the transports' first enumeration before the window
/// shows; media found later arrive as `media-changed` events.
const START_ENUMERATION_WAIT: Duration = Duration::from_millis(600);

/// Events for the window besides prompts.
pub trait EventSink: Send + Sync {
    /// A medium was added, removed or changed.
    fn media_changed(&self, event: &MediaChanged);
    /// Certificates entered the near-expiry window (or expired) since last noticed.
    fn expiry_notice(&self, notice: &ExpiryNotice);
    /// Log export progress.
    fn log_export_progress(&self, progress: &LogExportProgress);
    /// A scheduled update check found a newer version.
    fn update_available(&self, status: &UpdateStatus);
    /// What a key operation started from the window is waiting for.
    fn operation_status(&self, status: &OperationStatus);
    /// The 蓝牙设备 page changed (Bluetooth's state, the lists, a scan started or ended).
    fn ble_status(&self, _status: &ble::BleStatus) {}
    /// A binding QR code was confirmed, cancelled or expired; a renewal was approved or
    /// rejected (the window shows a notification for an approval).
    fn renewal_event(&self, event: &renewal::RenewalEvent) {
        let _ = event;
    }
    /// Something happened on the phone link (a phone to confirm, paired, online, …).
    fn phone_event(&self, _event: &phone::PhoneEvent) {}
}

/// The most audit records one query returns (the window pages or narrows the range).
pub const MAX_AUDIT_PAGE: u32 = 5000;
/// How long after start the first scheduled update check waits (the window first).
const UPDATE_FIRST_DELAY: Duration = Duration::from_secs(20);
/// How often the schedule is looked at while the app runs.
const UPDATE_TICK: Duration = Duration::from_secs(3600);

/// How to start.
pub struct DesktopOptions {
    /// KeyBridge home (`--home`, `$KEYBRIDGE_HOME`); `None` = the per-user directories.
    pub home: Option<PathBuf>,
    /// Create the demo key when no medium is configured.
    pub create_demo: bool,
    /// KDF for a new demo key ([`KdfParams::DEFAULT`] except in tests).
    pub kdf: KdfParams,
    /// Start file logging (off in tests: one global logger per process).
    pub file_logging: bool,
    /// Watch the hardware transports (PC/SC, HID, the settings' PKCS#11 and SKF
    /// modules) besides the file-key directory. Off in tests, which must not touch the
    /// machine's one pcscd.
    pub hardware: bool,
    /// Run the local signing bridge: `None` = not at all, `Some(None)` = on the settings'
    /// port, `Some(Some(p))` = on port `p` (0: any free port, for tests).
    pub bridge: Option<Option<u16>>,
    /// The keys an update manifest must be signed with: the release key pinned in the app
    /// ([`update::pinned_keys`]); tests pin their own.
    pub update_keys: Vec<kb_crypto::PublicKey>,
    /// BLE keys through this central (tests: a virtual one); `None` = the system's
    /// Bluetooth when `hardware` is on, no BLE otherwise.
    pub ble: Option<Arc<dyn kb_ble::BleCentral>>,
    /// Where paired phones' secrets go ([`phone::secrets_from_env`]; tests: the file).
    pub phone_secrets: phone::BackendChoice,
    /// Where the `autostart` setting writes its login entry ([`autostart::default_dir`];
    /// tests: a temporary directory); `None`: not supported here.
    pub autostart_dir: Option<PathBuf>,
}

impl Default for DesktopOptions {
    fn default() -> Self {
        DesktopOptions {
            home: None,
            create_demo: true,
            kdf: KdfParams::DEFAULT,
            file_logging: true,
            hardware: true,
            bridge: Some(None),
            update_keys: update::pinned_keys(),
            ble: None,
            phone_secrets: phone::secrets_from_env(),
            autostart_dir: autostart::default_dir(),
        }
    }
}

/// The running app's state: one device service, its settings and stores.
pub struct Desktop {
    paths: Paths,
    settings: RwLock<Settings>,
    manager: Arc<DeviceManager>,
    audit: Arc<AuditLog>,
    prompter: UiPrompter,
    events: Arc<dyn EventSink>,
    demo: Option<DeviceId>,
    /// Problems found at start (corrupt settings, unreadable key files, the bridge's
    /// port taken), shown once.
    startup_problems: Vec<AppError>,
    /// The local signing bridge, when it runs.
    bridge: Option<local_bridge::LocalBridge>,
    /// The keys update manifests must be signed with.
    update_keys: Vec<kb_crypto::PublicKey>,
    /// Web sites' remembered consent answers (`None`: the file is corrupt).
    grants: Option<Arc<kb_bridge::consent::GrantStore>>,
    /// Key operations started from the window and still running, by id.
    operations: Mutex<BTreeMap<u32, kb_token::OpContext>>,
    next_operation: std::sync::atomic::AtomicU32,
    /// BLE keys, when the app hosts them.
    ble: Option<ble::BleHost>,
    /// The 证书续期 page's CA, binding and noticed approvals.
    renewal: renewal::RenewalDesk,
    /// The phone host (the phone keys page).
    phones: phone::Phones,
    /// Revocation checks for the window and the bridge (one cache).
    revocation: Arc<kb_service::revocation::RevocationChecker>,
    /// Where the login entry goes (`DesktopOptions::autostart_dir`).
    autostart_dir: Option<PathBuf>,
    _log: Option<LogGuard>,
}

impl Desktop {
    /// Open the home, create the demo key if needed, start the device service.
    pub fn open(
        opts: DesktopOptions,
        prompts: Arc<dyn prompter::PromptSink>,
        events: Arc<dyn EventSink>,
    ) -> Result<Arc<Desktop>, AppError> {
        let err = |e: kb_service::ServiceError| AppError::service(&e, Lang::ZhCn);
        let paths = kb_service::settings::paths_for(opts.home.clone()).map_err(err)?;
        paths.create_all().map_err(err)?;
        let mut startup_problems = Vec::new();
        // A broken settings file never keeps the app from starting: defaults, and say so.
        let settings = Settings::load(paths.settings_file()).unwrap_or_else(|e| {
            startup_problems.push(AppError::service(&e, Lang::ZhCn));
            Settings::default()
        });
        let lang = settings.language;
        let log = if opts.file_logging {
            kb_service::logs::init_logging(&LogConfig::from_settings(&settings, &paths)).ok()
        } else {
            None
        };
        let key_dir = settings.file_key_dir(&paths);
        let prompter = UiPrompter::new(prompts);
        let demo_id = kb_service::demo::demo_device_id();
        let demo_file = kb_filekey::FileTransport::new(&key_dir).path_of(&demo_id);
        let has_keys = std::fs::read_dir(&key_dir)
            .is_ok_and(|rd| rd.flatten().any(|e| e.path().extension().is_some_and(|x| x == kb_filekey::EXTENSION)));
        let configured = !settings.pkcs11_modules.is_empty() || !settings.skf_modules.is_empty();
        let mut demo = None;
        if opts.create_demo && !has_keys && !configured {
            match kb_service::demo::ensure_demo_key(&paths, &key_dir, opts.kdf, Arc::new(prompter.clone())) {
                Ok(d) => demo = Some(d.id),
                Err(e) => startup_problems.push(AppError::service(&e, lang)),
            }
        } else if demo_file.is_some_and(|p| p.is_file()) {
            demo = Some(demo_id);
        }
        let audit = Arc::new(AuditLog::open(paths.audit_db()).map_err(err)?);
        let policy = PinCachePolicy::from_minutes(settings.pin_cache_minutes.minutes()).unwrap_or_default();
        // The bridge's idle timeouts pause while one of our dialogs is open.
        let watch = Arc::new(kb_bridge::activity::PromptWatch::default());
        let watched = Arc::new(kb_bridge::activity::WatchedPrompter::new(Arc::new(prompter.clone()), watch.clone()));
        let manager = Arc::new(DeviceManager::new(watched.clone(), audit.clone(), policy));
        manager.pin_cache().set_shared(settings.pin_cache_shared);
        let rx = manager.subscribe();
        let transports: Vec<Arc<dyn kb_token::Transport>> = if opts.hardware {
            kb_service::media::standard_transports(&settings, &key_dir)
        } else {
            vec![Arc::new(kb_filekey::FileTransport::new(&key_dir))]
        };
        for t in transports {
            manager.add_transport(t).map_err(err)?;
        }
        let ble = ble::BleHost::start(&opts, &paths, &manager, &events).map_err(err)?;
        manager.wait_enumerated(START_ENUMERATION_WAIT);
        // Web sites' remembered consent answers: the same file `keybridge bridge …` manages.
        let grants = match kb_bridge::consent::GrantStore::open(&kb_bridge::consent::GrantStore::path_in(&paths.data_dir)) {
            Ok(g) => Some(Arc::new(g)),
            Err(e) => {
                // A corrupt grants file is never overwritten: no bridge until it is fixed.
                startup_problems.push(AppError::new(ErrorCode::ConfigInvalid, lang, e.to_string()));
                None
            }
        };
        let revocation = Arc::new(kb_service::revocation::RevocationChecker::new(
            kb_service::revocation::RevocationConfig::from_settings(&settings, &paths),
        ));
        let bridge = match (opts.bridge, &grants) {
            (None, _) | (_, None) => None,
            (Some(port), Some(grants)) => {
                let port = port.unwrap_or(settings.bridge_port);
                let shared = (grants.clone(), Arc::clone(&revocation));
                match local_bridge::LocalBridge::start(&manager, &paths, &settings, port, shared, watched, watch) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        startup_problems.push(AppError::new(ErrorCode::BridgeUnavailable, lang, e));
                        None
                    }
                }
            }
        };
        // Paired phones come back to this process as media, as to `keybridge serve`.
        let phones = phone::Phones::new(&settings, &paths, opts.phone_secrets, manager.clone(), events.clone());
        if phones.configured()
            && let Err(e) = phones.host(lang)
        {
            startup_problems.push(e);
        }
        let desktop = Arc::new(Desktop {
            paths,
            settings: RwLock::new(settings),
            manager,
            audit,
            prompter,
            events,
            demo,
            startup_problems,
            bridge,
            update_keys: opts.update_keys.clone(),
            grants,
            operations: Mutex::new(BTreeMap::new()),
            next_operation: std::sync::atomic::AtomicU32::new(1),
            ble,
            renewal: renewal::RenewalDesk::default(),
            phones,
            revocation,
            autostart_dir: opts.autostart_dir.clone(),
            _log: log,
        });
        // Media events → the window. The expiry check (it reads every medium) runs off
        // the start-up path, first once, then once per burst of events (the start-up
        // enumeration's Added events, hot-plug).
        let weak = Arc::downgrade(&desktop);
        std::thread::Builder::new()
            .name("kb-desktop-events".into())
            .spawn(move || {
                let mut check = true;
                loop {
                    let Some(d) = weak.upgrade() else { break };
                    for ev in rx.try_iter() {
                        check |= d.forward(ev);
                    }
                    if std::mem::take(&mut check) {
                        d.check_expiry();
                    }
                    // Not kept alive while waiting.
                    drop(d);
                    let Ok(ev) = rx.recv() else { break };
                    let Some(d) = weak.upgrade() else { break };
                    check |= d.forward(ev);
                }
            })
            .map_err(|e| AppError::new(ErrorCode::Internal, Lang::ZhCn, e.to_string()))?;
        // Scheduled update checks (settings: never / daily / weekly).
        let weak = Arc::downgrade(&desktop);
        let _ = std::thread::Builder::new().name("kb-desktop-updates".into()).spawn(move || {
            std::thread::sleep(UPDATE_FIRST_DELAY);
            while let Some(d) = weak.upgrade() {
                d.scheduled_update_check(kb_service::audit::now_ms());
                drop(d);
                std::thread::sleep(UPDATE_TICK);
            }
        });
        renewal::start_approval_checks(&desktop);
        Ok(desktop)
    }

    /// Tell the window about a media event; true when certificates may have come or
    /// changed.
    fn forward(&self, ev: DeviceEvent) -> bool {
        let (change, device) = match ev {
            DeviceEvent::Added(info) => (MediaChange::Added, info.id),
            DeviceEvent::Removed(id) => (MediaChange::Removed, id),
            DeviceEvent::CertificatesChanged(id) => (MediaChange::Changed, id),
            DeviceEvent::Offline(id) => (MediaChange::Offline, id),
            DeviceEvent::Online(id) => (MediaChange::Online, id),
            DeviceEvent::TransportError { transport, message } => {
                tracing::warn!(?transport, %message, "transport error");
                return false;
            }
            _ => return false,
        };
        self.events.media_changed(&MediaChanged { change, device: device.to_string() });
        !matches!(change, MediaChange::Removed | MediaChange::Offline)
    }

    /// A caller for a key operation started from the window: its status reaches the
    /// window as `operation-status` events and `cancel_operation` stops it (withdrawing
    /// the PIN dialog, reaching the medium). The operation is forgotten when the returned
    /// scope is dropped.
    fn operation(&self) -> OperationScope<'_> {
        let id = self.next_operation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let events = Arc::clone(&self.events);
        // No deadline here: each key operation gets the service's own (see `Caller`).
        let ctx = kb_token::OpContext::with(None, move |st| {
            let (state, medium) = match st {
                kb_token::OpStatus::WaitingForPin => (OperationState::WaitingForPin, None),
                kb_token::OpStatus::WaitingForMedium { what } => (OperationState::WaitingForMedium, Some(what.clone())),
                kb_token::OpStatus::Working => (OperationState::Working, None),
                _ => return,
            };
            events.operation_status(&OperationStatus { operation: id, state, medium });
        });
        self.lock_operations().insert(id, ctx.clone());
        OperationScope { desktop: self, id, caller: Caller::new(CLIENT, ctx) }
    }

    fn lock_operations(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, kb_token::OpContext>> {
        self.operations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cancel a key operation started from the window (its PIN dialog is withdrawn, the
    /// medium is told). False when it is no longer running.
    pub fn cancel_operation(&self, operation: u32) -> bool {
        let ctx = self.lock_operations().get(&operation).cloned();
        ctx.map(|c| c.cancel()).is_some()
    }

    /// The UI language.
    pub fn lang(&self) -> Lang {
        self.read_settings().language
    }

    fn read_settings(&self) -> std::sync::RwLockReadGuard<'_, Settings> {
        self.settings.read().unwrap_or_else(|e| e.into_inner())
    }

    fn svc(&self) -> impl Fn(kb_service::ServiceError) -> AppError + '_ {
        move |e| AppError::service(&e, self.lang())
    }

    /// The device service (for the bridge, which shares it).
    pub fn manager(&self) -> &Arc<DeviceManager> {
        &self.manager
    }

    /// The window's prompter (the bridge asks through it too).
    pub fn prompter(&self) -> &UiPrompter {
        &self.prompter
    }

    /// Problems found at start.
    pub fn startup_problems(&self) -> &[AppError] {
        &self.startup_problems
    }

    // ---- app --------------------------------------------------------------------------

    fn agreement_file(&self) -> PathBuf {
        self.paths.config_dir.join("agreement-accepted")
    }

    /// The local bridge's address (`ws://127.0.0.1:17210`), when it runs.
    pub fn bridge_url(&self) -> Option<String> {
        self.bridge.as_ref().map(|b| b.url.clone())
    }

    /// Version, agreement state, paths.
    pub fn info(&self) -> AppInfo {
        let accepted = std::fs::read_to_string(self.agreement_file()).is_ok_and(|v| v.trim() == AGREEMENT_VERSION);
        AppInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            agreement_version: AGREEMENT_VERSION.to_string(),
            agreement_accepted: accepted,
            demo_device: self.demo.as_ref().map(ToString::to_string),
            data_dir: self.paths.data_dir.display().to_string(),
            log_dir: self.paths.log_dir.display().to_string(),
            bridge_url: self.bridge_url(),
            startup_problems: self.startup_problems.clone(),
        }
    }

    /// The user accepted the privacy policy and user agreement of `version`.
    pub fn accept_agreement(&self, version: &str) -> Result<(), AppError> {
        if version != AGREEMENT_VERSION {
            return Err(AppError::input(
                self.lang(),
                format!("agreement version {version} is not this build's ({AGREEMENT_VERSION})"),
            ));
        }
        kb_service::settings::write_atomic(&self.agreement_file(), AGREEMENT_VERSION.as_bytes())
            .map_err(|e| AppError::new(ErrorCode::Io, self.lang(), e.to_string()))
    }

    // ---- media and certificates ------------------------------------------------------

    /// Every medium with its certificates.
    pub fn list_media(&self) -> Result<Vec<Medium>, AppError> {
        let warn = i64::from(self.read_settings().near_expiry_warning_days);
        let now = UnixTime::now();
        let mut out = Vec::new();
        for known in self.manager.media() {
            let (info, demo) = (&known.info, self.demo.as_ref() == Some(&known.info.id));
            if !known.online {
                out.push(views::offline_medium(info, demo));
                continue;
            }
            match views::medium(&self.manager, info, demo, now, warn) {
                Ok(m) => out.push(m),
                // A medium pulled out while listing is simply not there any more.
                Err(e) if e.code() == ErrorCode::DeviceRemoved || e.code() == ErrorCode::UnknownDevice => {}
                // Its link dropped while listing: listed as offline.
                Err(e) if e.code() == ErrorCode::MediumOffline => out.push(views::offline_medium(info, demo)),
                Err(e) => return Err(self.svc()(e)),
            }
        }
        Ok(out)
    }

    fn device_id(&self, device: &str) -> Result<DeviceId, AppError> {
        let id = DeviceId(device.to_string());
        self.manager.device(&id).map_err(self.svc())?;
        Ok(id)
    }

    fn certificate(&self, r: &CertRef) -> Result<Certificate, AppError> {
        let id = self.device_id(&r.device)?;
        let der = self.manager.certificate(&id, &r.container, views::key_usage(r.usage), CLIENT).map_err(self.svc())?;
        der.ok_or_else(|| {
            AppError::new(
                ErrorCode::NotFound,
                self.lang(),
                format!("no {:?} certificate in {} on {}", r.usage, r.container, r.device),
            )
        })
    }

    /// Everything the details screen shows.
    pub fn cert_details(&self, r: &CertRef) -> Result<CertDetails, AppError> {
        let cert = self.certificate(r)?;
        let warn = i64::from(self.read_settings().near_expiry_warning_days);
        let label = self.manager.device(&DeviceId(r.device.clone())).map(|d| d.label).unwrap_or_default();
        let (trust, now) = (trust_store(&self.paths), UnixTime::now());
        // Opening a certificate's details asks the CA again (a revocation minutes ago shows).
        let revocation = views::revocation(&self.revocation.summary_fresh(&cert, &[], &trust, now), self.lang());
        Ok(views::details(r.clone(), &cert, label, &trust, revocation, now, warn, self.lang()))
    }

    /// A thumbprint on request.
    pub fn thumbprint(&self, r: &CertRef, alg: Thumbprint) -> Result<String, AppError> {
        Ok(self.certificate(r)?.thumbprint(views::hash(alg)))
    }

    /// Save a certificate as DER (.cer) or PEM; returns the path written.
    pub fn export_cert(&self, r: &CertRef, path: &str, format: ExportFormat) -> Result<String, AppError> {
        let cert = self.certificate(r)?;
        let bytes = match format {
            ExportFormat::Der => cert.der().to_vec(),
            ExportFormat::Pem => cert.to_pem().into_bytes(),
        };
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(AppError::input(self.lang(), format!("{path} is not an absolute path")));
        }
        kb_service::settings::write_atomic(p, &bytes)
            .map_err(|e| AppError::new(ErrorCode::Io, self.lang(), format!("{path}: {e}")))?;
        Ok(path.to_string())
    }

    /// Remove a certificate (the key pair stays). The service asks for the PIN.
    pub fn delete_certificate(&self, r: &CertRef) -> Result<(), AppError> {
        let id = self.device_id(&r.device)?;
        let op = self.operation();
        self.manager.delete_certificate(&id, &r.container, views::key_usage(r.usage), &op.caller).map_err(self.svc())
    }

    // ---- PINs -------------------------------------------------------------------------

    /// Change a PIN. Both PINs come from the window's own form, never from the bridge.
    pub fn change_pin(&self, device: &str, kind: PinKindView, old: &str, new: &str) -> Result<(), AppError> {
        let id = self.device_id(device)?;
        let kind = match kind {
            PinKindView::User => PinKind::User,
            PinKindView::So => PinKind::So,
        };
        self.manager.change_pin(&id, kind, Pin::new(old), Pin::new(new), CLIENT).map_err(self.svc())?;
        self.events.media_changed(&MediaChanged { change: MediaChange::Changed, device: device.to_string() });
        Ok(())
    }

    /// Unblock the user PIN with the SO PIN, setting a new user PIN.
    pub fn unblock_pin(&self, device: &str, so_pin: &str, new_pin: &str) -> Result<(), AppError> {
        let id = self.device_id(device)?;
        self.manager.unblock_pin(&id, Pin::new(so_pin), Pin::new(new_pin), CLIENT).map_err(self.svc())?;
        self.events.media_changed(&MediaChanged { change: MediaChange::Changed, device: device.to_string() });
        Ok(())
    }

    /// Forget every cached PIN.
    pub fn clear_pin_cache(&self) {
        self.manager.pin_cache().clear();
    }

    // ---- seals ------------------------------------------------------------------------

    /// Seal images on a medium.
    pub fn list_seals(&self, device: &str) -> Result<Vec<SealView>, AppError> {
        let id = self.device_id(device)?;
        Ok(self.manager.seals(&id, CLIENT).map_err(self.svc())?.into_iter().map(views::seal).collect())
    }

    /// One seal image.
    pub fn read_seal(&self, device: &str, seal: &str) -> Result<SealImage, AppError> {
        let id = self.device_id(device)?;
        let seals = self.manager.seals(&id, CLIENT).map_err(self.svc())?;
        let info = seals
            .iter()
            .find(|s| s.id == seal)
            .ok_or_else(|| AppError::new(ErrorCode::NotFound, self.lang(), format!("no seal {seal} on {device}")))?;
        let bytes = self.manager.read_seal(&id, seal, CLIENT).map_err(self.svc())?;
        Ok(SealImage { id: seal.to_string(), mime: info.mime.clone(), data_base64: views::b64(&bytes) })
    }

    /// Write a seal image (from a file or the handwriting canvas). Only PNG and JPEG
    /// whose bytes say so, at most 1 MiB. The service asks for the PIN.
    pub fn write_seal(&self, device: &str, name: &str, mime: &str, data_base64: &str) -> Result<SealView, AppError> {
        let lang = self.lang();
        let id = self.device_id(device)?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(AppError::input(lang, "a seal name is 1–64 characters, no control characters"));
        }
        let bytes = views::unb64(data_base64).ok_or_else(|| AppError::input(lang, "the image is not base64"))?;
        views::check_image(mime, &bytes).map_err(|m| AppError::new(ErrorCode::MalformedInput, lang, m))?;
        let seal_id = views::seal_id(&self.manager.seals(&id, CLIENT).map_err(self.svc())?);
        let op = self.operation();
        self.manager.write_seal(&id, &seal_id, name, mime, &bytes, &op.caller).map_err(self.svc())?;
        Ok(SealView { id: seal_id, name: name.to_string(), mime: mime.to_string(), size: bytes.len() as u32 })
    }

    /// Delete a seal image.
    pub fn delete_seal(&self, device: &str, seal: &str) -> Result<(), AppError> {
        let id = self.device_id(device)?;
        let op = self.operation();
        self.manager.delete_seal(&id, seal, &op.caller).map_err(self.svc())
    }

    // ---- audit ------------------------------------------------------------------------

    /// The newest `limit` audit records in `[from_ms, to_ms)` (1–[`MAX_AUDIT_PAGE`]),
    /// newest first, with the count of all records in the range.
    pub fn audit_query(&self, from_ms: i64, to_ms: i64, limit: u32) -> Result<AuditPage, AppError> {
        let lang = self.lang();
        if from_ms > to_ms {
            return Err(AppError::input(lang, "the time range is empty or not a range"));
        }
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(AppError::input(lang, format!("limit must be 1–{MAX_AUDIT_PAGE}")));
        }
        let q = AuditQuery::between(from_ms, to_ms);
        let total = self.audit.count(&q).map_err(self.svc())?;
        let records = self.audit.query(&AuditQuery { limit: Some(limit), ..q }).map_err(self.svc())?;
        let mut entries: Vec<AuditEntry> = records.into_iter().map(|r| views::audit_entry(r, lang)).collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.time_ms));
        Ok(AuditPage { entries, total })
    }

    // ---- settings ---------------------------------------------------------------------

    /// The settings the window edits.
    pub fn settings(&self) -> AppSettings {
        views::app_settings(&self.read_settings())
    }

    /// Validate and save; the PIN cache time applies at once.
    pub fn save_settings(&self, s: &AppSettings) -> Result<AppSettings, AppError> {
        let lang = self.lang();
        let mut next = self.read_settings().clone();
        next.pin_cache_minutes = PinCacheMinutes::from_minutes(s.pin_cache_minutes)
            .ok_or_else(|| AppError::input(lang, format!("PIN cache {} minutes is not offered", s.pin_cache_minutes)))?;
        views::apply_settings(&mut next, s);
        // The login entry follows the setting; it is touched only when the setting
        // changes, and a failure leaves both as they were.
        let login_entry = |enabled: bool| -> Result<(), AppError> {
            let program =
                autostart::current_program().map_err(|e| AppError::new(ErrorCode::AutostartUnavailable, lang, e.to_string()))?;
            autostart::apply(self.autostart_dir.as_deref(), enabled, &program)
                .map_err(|(code, detail)| AppError::new(code, lang, detail))
        };
        let autostart_changed = next.autostart != self.read_settings().autostart;
        if autostart_changed {
            login_entry(next.autostart)?;
        }
        if let Err(e) = next.save(self.paths.settings_file()) {
            if autostart_changed {
                let _ = login_entry(!next.autostart);
            }
            return Err(self.svc()(e));
        }
        let policy = PinCachePolicy::from_minutes(next.pin_cache_minutes.minutes()).unwrap_or_default();
        self.manager.pin_cache().set_policy(policy);
        self.manager.pin_cache().set_shared(next.pin_cache_shared);
        let wider = next.near_expiry_warning_days > self.read_settings().near_expiry_warning_days;
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = next;
        if wider {
            // Certificates the wider window takes in are noticed now.
            self.check_expiry();
        }
        Ok(self.settings())
    }

    // ---- web-site grants --------------------------------------------------------------

    fn grant_store(&self) -> Result<&Arc<kb_bridge::consent::GrantStore>, AppError> {
        self.grants.as_ref().ok_or_else(|| {
            AppError::new(ErrorCode::ConfigInvalid, self.lang(), "the bridge's grants file is corrupt; see the start-up problems")
        })
    }

    /// Web sites with a remembered answer ("always allow" or "deny").
    pub fn list_grants(&self) -> Result<Vec<SiteGrant>, AppError> {
        Ok(self
            .grant_store()?
            .list()
            .into_iter()
            .map(|g| SiteGrant {
                origin: g.origin,
                allowed: g.decision == kb_bridge::consent::Decision::Allow,
                since_ms: g.since.saturating_mul(1000),
            })
            .collect())
    }

    /// Forget a site's answer: it is asked again next time.
    pub fn revoke_grant(&self, origin: &str) -> Result<(), AppError> {
        let lang = self.lang();
        match self.grant_store()?.revoke(origin) {
            Ok(true) => Ok(()),
            Ok(false) => Err(AppError::new(ErrorCode::NotFound, lang, format!("no grant for {origin}"))),
            Err(e) => Err(AppError::input(lang, e.to_string())),
        }
    }

    // ---- logs, updates, privacy -------------------------------------------------------

    /// The certificate log exports are encrypted to: `<config>/support.pem` when a
    /// deployment put one there, else the demo support certificate.
    fn support_certificate(&self) -> Result<Certificate, AppError> {
        let configured = self.paths.config_dir.join("support.pem");
        if configured.is_file() {
            let pem = std::fs::read_to_string(&configured)
                .map_err(|e| AppError::new(ErrorCode::Io, self.lang(), format!("{}: {e}", configured.display())))?;
            return Certificate::from_pem(&pem).map_err(|e| self.svc()(e.into()));
        }
        kb_service::demo::demo_support_certificate(&self.paths).map(|(c, _)| c).map_err(self.svc())
    }

    /// Export the log files, compressed and encrypted to the support certificate, to
    /// `path`; progress goes out as events.
    pub fn export_logs(&self, path: &str) -> Result<LogExportResult, AppError> {
        let lang = self.lang();
        let out = Path::new(path);
        if !out.is_absolute() {
            return Err(AppError::input(lang, format!("{path} is not an absolute path")));
        }
        let cert = self.support_certificate()?;
        let dir = out.parent().unwrap_or(Path::new("/"));
        let io = |e: std::io::Error| AppError::new(ErrorCode::Io, lang, format!("{path}: {e}"));
        let mut tmp = tempfile::Builder::new().prefix(".keybridge-logs.").suffix(".part").tempfile_in(dir).map_err(io)?;
        let summary = {
            let w = std::io::BufWriter::new(tmp.as_file_mut());
            kb_service::logs::export_logs_with_progress(&self.paths.log_dir, w, &cert, |done, total| {
                self.events.log_export_progress(&LogExportProgress { done, total });
            })
            .map_err(self.svc())?
        };
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(out).map_err(|e| io(e.error))?;
        Ok(LogExportResult { path: path.to_string(), files: summary.files.len() as u32, bytes: summary.bytes_written })
    }

    fn last_update_check_file(&self) -> PathBuf {
        self.paths.data_dir.join("update-last-check")
    }

    /// The scheduled check: when the settings ask for one (daily / weekly, a URL set) and
    /// the last one is that old, check now; a newer version goes to the window as an
    /// `update-status` event. Failures (offline) are logged and retried at the next
    /// period, never shown as errors nobody asked for. Returns what it found.
    pub fn scheduled_update_check(&self, now_ms: i64) -> Option<UpdateStatus> {
        let (freq, url) = {
            let s = self.read_settings();
            (s.update_check, s.update_url.clone())
        };
        let period_ms: i64 = match freq {
            kb_service::settings::UpdateCheck::Never => return None,
            kb_service::settings::UpdateCheck::Daily => 86_400_000,
            kb_service::settings::UpdateCheck::Weekly => 7 * 86_400_000,
        };
        if url.is_empty() {
            return None;
        }
        let file = self.last_update_check_file();
        let last: i64 = std::fs::read_to_string(&file).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
        if now_ms - last < period_ms {
            return None;
        }
        let _ = kb_service::settings::write_atomic(&file, now_ms.to_string().as_bytes());
        match self.check_update() {
            Ok(status) => {
                if status.available {
                    tracing::info!(latest = %status.latest, "update available");
                    self.events.update_available(&status);
                }
                Some(status)
            }
            Err(e) => {
                tracing::warn!("scheduled update check failed: {e}");
                None
            }
        }
    }

    /// Check the configured update URL.
    pub fn check_update(&self) -> Result<UpdateStatus, AppError> {
        let lang = self.lang();
        let url = self.read_settings().update_url.clone();
        if url.is_empty() {
            return Err(AppError::new(ErrorCode::UpdateUrlMissing, lang, "settings: update_url is empty"));
        }
        let current = env!("CARGO_PKG_VERSION");
        let m = update::fetch_manifest(&url, &format!("KeyBridge/{current}"), &self.update_keys).map_err(|e| match e {
            update::UpdateError::Network(m) => AppError::new(ErrorCode::Network, lang, m),
            update::UpdateError::BadManifest(m) => AppError::new(ErrorCode::UpdateManifestInvalid, lang, m),
            update::UpdateError::BadSignature(m) => AppError::new(ErrorCode::UpdateSignatureInvalid, lang, m),
            update::UpdateError::BadUrl(m) => AppError::new(ErrorCode::ConfigInvalid, lang, m),
        })?;
        Ok(UpdateStatus {
            current: current.to_string(),
            available: update::is_newer(&m.version, current),
            latest: m.version,
            notes: m.notes,
            download_url: m.url,
        })
    }

    /// The personal-data list and the third-party library list.
    pub fn privacy_info(&self) -> PrivacyInfo {
        privacy::info(self.lang())
    }

    // ---- expiry notices ---------------------------------------------------------------

    fn notified_file(&self) -> PathBuf {
        self.paths.data_dir.join("expiry-notified.json")
    }

    /// Certificates that entered the near-expiry window (or expired) and were not noticed
    /// before: one event, remembered by thumbprint so each is noticed once per state.
    pub fn check_expiry(&self) {
        let Ok(media) = self.list_media() else { return };
        let file = self.notified_file();
        let mut seen: BTreeSet<String> =
            std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let mut fresh = Vec::new();
        for c in media.into_iter().flat_map(|m| m.certificates) {
            if !matches!(c.status, CertStatus::NearExpiry | CertStatus::Expired) {
                continue;
            }
            let key = format!("{}:{}:{:?}", c.serial, c.not_after, c.status);
            if seen.insert(key) {
                fresh.push(c);
            }
        }
        if fresh.is_empty() {
            return;
        }
        if let Ok(bytes) = serde_json::to_vec(&seen) {
            let _ = kb_service::settings::write_atomic(&file, &bytes);
        }
        self.events.expiry_notice(&ExpiryNotice { certificates: fresh });
    }
}

/// The trust anchors for chain status, in the window and the bridge
/// ([`kb_service::trust::user_store`]).
pub fn trust_store(paths: &Paths) -> TrustStore {
    kb_service::trust::user_store(paths)
}

/// A key operation started from the window (see [`Desktop::operation`]).
struct OperationScope<'a> {
    desktop: &'a Desktop,
    id: u32,
    caller: Caller,
}

impl Drop for OperationScope<'_> {
    fn drop(&mut self) {
        self.desktop.lock_operations().remove(&self.id);
        let done = OperationStatus { operation: self.id, state: OperationState::Finished, medium: None };
        self.desktop.events.operation_status(&done);
    }
}
