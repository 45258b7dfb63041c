//! The "手机密钥" (phone keys) page: phones acting as this PC's keys, over
//! [`kb_phonehost::PhoneHost`].
//!
//! The host starts with the app when the settings give it a way for phones to reach the
//! PC (`phone_listen`, the direct LAN listener, and / or `phone_relay_url`), as
//! `keybridge serve` does; otherwise on the page's first call, without a transport, so
//! paired phones can still be listed, renamed and revoked, and the page says what to
//! configure. Its transport is one more of the device service's: a paired phone's
//! certificates are listed like any medium's, online and offline (`media-changed`).
//! What the host reports reaches the window as the `phone-event` event
//! ([`PhoneEvent`]).

use crate::model::AppError;
use crate::{Desktop, EventSink};
use kb_phonehost::{HostConfig, HostEvent, PhoneHost};
use kb_phonelink::LinkError;
use kb_service::devices::DeviceManager;
use kb_service::settings::Settings;
use kb_types::{ErrorCode, HasErrorCode, Lang};
use serde::{Deserialize, Serialize};
use specta::Type;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use kb_phonelink::BackendChoice;

/// Chooses where pairing secrets go (`file`, `keyring`, `auto`), as for the CLI.
pub const SECRETS_ENV: &str = "KEYBRIDGE_PHONE_SECRETS";

/// The backend `KEYBRIDGE_PHONE_SECRETS` asks for (default, and for a value it does not
/// know: the OS keyring when one answers, else the reported file).
pub fn secrets_from_env() -> BackendChoice {
    match std::env::var(SECRETS_ENV).as_deref() {
        Ok("file") => BackendChoice::File,
        Ok("keyring") => BackendChoice::Keyring,
        Ok("auto") | Err(_) => BackendChoice::Auto,
        Ok(other) => {
            tracing::warn!("{SECRETS_ENV}={other}: must be file, keyring or auto; using auto");
            BackendChoice::Auto
        }
    }
}

// ---------------------------------------------------------------------------------------
// what the window sees
// ---------------------------------------------------------------------------------------

/// A paired phone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct PairedPhone {
    /// Its id (from its static key).
    pub peer: String,
    /// Its name (the phone's own, or the one the user gave it).
    pub name: String,
    /// When it was paired, ms since the epoch.
    pub paired_at_ms: i64,
    /// When it last connected, ms since the epoch.
    pub last_seen_ms: Option<i64>,
    /// Its link is up now (its certificates are listed online).
    pub online: bool,
    /// Revoked: refused from now on (pair it again with a new QR code).
    pub revoked: bool,
    /// Its media's device ids (known once it connected in this run).
    pub media: Vec<String>,
    /// It can come back through the relay.
    pub relay: bool,
}

/// Where the pairing secrets are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum SecretStoreKind {
    /// The OS keyring (Secret Service on Linux).
    Keyring,
    /// A file only this user can read (0600).
    File,
}

/// Where the pairing secrets are kept, for the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct SecretStore {
    /// Keyring or file.
    pub kind: SecretStoreKind,
    /// The file, for `file`.
    pub path: Option<String>,
    /// The file because no OS keyring answered (not by choice): warn.
    pub fallback: bool,
    /// Why not the keyring, for a fallback.
    pub reason: Option<String>,
}

/// The phone keys page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct PhonePage {
    /// Paired phones (revoked ones too), oldest pairing first.
    pub phones: Vec<PairedPhone>,
    /// Where their secrets are.
    pub secrets: SecretStore,
    /// Phones can reach this PC: `listen` or `relay_url` is configured. When false, the
    /// page says to set `phone_listen` (or `phone_relay_url`) in `settings_file`.
    pub pairing_available: bool,
    /// The direct listener's configured addresses (`phone_listen`, `ip:port`).
    pub listen: Vec<String>,
    /// The addresses it is bound to now (empty while closed: it opens for pairing and
    /// while a paired phone is expected).
    pub listening: Vec<String>,
    /// The relay (`phone_relay_url`), if any.
    pub relay_url: Option<String>,
    /// The settings file to configure them in (read at start).
    pub settings_file: String,
}

/// A pairing QR code to show.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct PairingOffer {
    /// What the QR code encodes (`KB1:…`). It holds a one-time secret: shown, never logged.
    pub text: String,
    /// When it stops working, ms since the epoch.
    pub expires_ms: i64,
    /// Seconds it stays valid from now (count down from this: no clock to compare).
    pub seconds_left: u32,
    /// The ways to this PC it names (`ws://…`, the relay).
    pub endpoints: Vec<String>,
}

impl std::fmt::Debug for PairingOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingOffer")
            .field("expires_ms", &self.expires_ms)
            .field("seconds_left", &self.seconds_left)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// Why a pairing ended or a connection was refused: a stable code of the one table (the
/// window words it from `ERROR_CODES` in its language).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct PhoneLinkError {
    /// Stable numeric code.
    pub code: u32,
    /// Stable name, e.g. `pairing_rejected`.
    pub name: String,
    /// Details.
    pub detail: String,
}

/// Event `phone-event`: what happened on the phone link.
#[cfg_attr(feature = "tauri-events", derive(tauri_specta::Event))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum PhoneEvent {
    /// A phone scanned the QR code: show `code` large and ask whether the phone shows
    /// the same; answer with `confirm_phone_pairing` / `reject_phone_pairing`.
    #[serde(rename_all = "camelCase")]
    ConfirmCode {
        /// Pass to confirm / reject.
        request: u64,
        /// The phone's id.
        peer: String,
        /// The name the phone gave.
        name: String,
        /// The 6-digit confirmation code.
        code: String,
    },
    /// The user confirmed: the phone is paired.
    #[serde(rename_all = "camelCase")]
    Paired {
        /// Its id.
        peer: String,
        /// Its name.
        name: String,
    },
    /// A paired phone's link is up: its certificates are online.
    #[serde(rename_all = "camelCase")]
    Online {
        /// Its id.
        peer: String,
        /// Its name.
        name: String,
        /// Its media's device ids.
        media: Vec<String>,
    },
    /// A phone's link went down: its certificates are offline.
    #[serde(rename_all = "camelCase")]
    Offline {
        /// Its id.
        peer: String,
    },
    /// The QR code shown expired before a phone scanned it.
    OfferExpired,
    /// A pairing request ended without pairing: rejected on the PC
    /// (`pairing_rejected`), not confirmed in time, the phone left.
    #[serde(rename_all = "camelCase")]
    PairingEnded {
        /// Which request.
        request: u64,
        /// Why.
        error: PhoneLinkError,
    },
    /// A connection was refused (a stale or reused QR code, an unpaired or revoked phone,
    /// a broken or hostile peer).
    #[serde(rename_all = "camelCase")]
    Refused {
        /// Why.
        error: PhoneLinkError,
        /// Where it came from.
        remote: String,
    },
    /// A paired phone connected but its link could not be used.
    #[serde(rename_all = "camelCase")]
    LinkFailed {
        /// Its id.
        peer: String,
        /// Why.
        error: PhoneLinkError,
    },
}

// ---------------------------------------------------------------------------------------
// conversions
// ---------------------------------------------------------------------------------------

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn link_error(name: &str, detail: String) -> PhoneLinkError {
    let code = ErrorCode::ALL.iter().copied().find(|c| c.name() == name).unwrap_or(ErrorCode::Internal);
    PhoneLinkError { code: code.number(), name: code.name().to_string(), detail }
}

/// The window's event for a host event.
pub(crate) fn event(e: HostEvent) -> PhoneEvent {
    match e {
        HostEvent::AwaitingConfirmation { request, peer, name, code } => PhoneEvent::ConfirmCode { request, peer, name, code },
        HostEvent::PairingEnded { request, code, message } => {
            PhoneEvent::PairingEnded { request, error: link_error(&code, message) }
        }
        HostEvent::Paired { peer, name } => PhoneEvent::Paired { peer, name },
        HostEvent::Connected { peer, name, media } => PhoneEvent::Online { peer, name, media },
        HostEvent::Disconnected { peer } => PhoneEvent::Offline { peer },
        HostEvent::Refused { code, message, remote } => PhoneEvent::Refused { error: link_error(&code, message), remote },
        HostEvent::AttachFailed { peer, code, message } => PhoneEvent::LinkFailed { peer, error: link_error(&code, message) },
    }
}

fn phone(p: kb_phonehost::PhoneEntry) -> PairedPhone {
    PairedPhone {
        peer: p.peer,
        name: p.name,
        paired_at_ms: ms(p.paired_at),
        last_seen_ms: p.last_seen.map(ms),
        online: p.online,
        revoked: p.revoked,
        media: p.media,
        relay: p.relay,
    }
}

fn secret_store(b: kb_phonehost::BackendInfo) -> SecretStore {
    let reason = b.reason.filter(|r| !r.is_empty());
    match b.kind.as_str() {
        "keyring" => SecretStore { kind: SecretStoreKind::Keyring, path: None, fallback: false, reason: None },
        _ => SecretStore { kind: SecretStoreKind::File, path: b.path, fallback: reason.is_some(), reason },
    }
}

// ---------------------------------------------------------------------------------------
// the host inside the app
// ---------------------------------------------------------------------------------------

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The open QR code, for its expiry notice: each offer (and each scan, cancel) moves the
/// generation on, so a timer of an older offer says nothing.
#[derive(Default)]
struct OfferClock {
    generation: u64,
}

/// The app's phone host and what it was started with.
pub(crate) struct Phones {
    cfg: HostConfig,
    settings_file: PathBuf,
    manager: Arc<DeviceManager>,
    events: Arc<dyn EventSink>,
    host: Mutex<Option<Arc<PhoneHost>>>,
    offer: Arc<(Mutex<OfferClock>, Condvar)>,
}

impl Phones {
    /// The host's configuration from the settings: the direct listener and the relay
    /// they give, the store in `<data>/phones`.
    pub(crate) fn new(
        settings: &Settings,
        paths: &kb_service::settings::Paths,
        backend: BackendChoice,
        manager: Arc<DeviceManager>,
        events: Arc<dyn EventSink>,
    ) -> Self {
        let cfg = HostConfig {
            backend,
            listen: settings.phone_listen.clone(),
            relay_url: Some(settings.phone_relay_url.clone()).filter(|u| !u.is_empty()),
            ..HostConfig::new(paths.data_dir.join("phones"))
        };
        Phones { cfg, settings_file: paths.settings_file(), manager, events, host: Mutex::new(None), offer: Arc::default() }
    }

    /// Phones can reach this PC (a listener or a relay is configured).
    pub(crate) fn configured(&self) -> bool {
        !self.cfg.listen.is_empty() || self.cfg.relay_url.is_some()
    }

    /// The host, started on first need: its transport joins the device service, its
    /// events go to the window.
    pub(crate) fn host(&self, lang: Lang) -> Result<Arc<PhoneHost>, AppError> {
        let mut slot = lock(&self.host);
        if let Some(h) = &*slot {
            return Ok(Arc::clone(h));
        }
        let host = Arc::new(PhoneHost::start(self.cfg.clone()).map_err(|e| link(&e, lang))?);
        self.manager.add_transport(host.transport()).map_err(|e| AppError::service(&e, lang))?;
        let rx = host.subscribe();
        let (events, offer) = (Arc::clone(&self.events), Arc::clone(&self.offer));
        std::thread::Builder::new()
            .name("kb-desktop phone events".into())
            .spawn(move || {
                // Ends when the host (and with it the sender) is gone.
                for e in rx {
                    if matches!(e, HostEvent::AwaitingConfirmation { .. }) {
                        // The QR code is used up: it no longer expires on screen.
                        bump(&offer);
                    }
                    events.phone_event(&event(e));
                }
            })
            .map_err(|e| AppError::new(ErrorCode::Internal, lang, e.to_string()))?;
        *slot = Some(Arc::clone(&host));
        Ok(host)
    }

    /// Tell the window when the offer expiring at `expires` (Unix seconds) does, unless a
    /// newer offer, a scan or a cancel came first.
    fn watch_offer(&self, expires: u64) {
        let events = Arc::clone(&self.events);
        watch_offer(&self.offer, expires, move || events.phone_event(&PhoneEvent::OfferExpired));
    }

    fn forget_offer(&self) {
        bump(&self.offer);
    }
}

/// The open offer is gone (scanned, cancelled, replaced): its timer says nothing.
fn bump(offer: &(Mutex<OfferClock>, Condvar)) {
    let (clock, changed) = offer;
    let mut c = lock(clock);
    c.generation += 1;
    changed.notify_all();
}

/// Call `expired` when the offer expiring at `expires` (Unix seconds) does, unless the
/// clock's generation moves on first (a newer offer, a scan, a cancel).
fn watch_offer(offer: &Arc<(Mutex<OfferClock>, Condvar)>, expires: u64, expired: impl FnOnce() + Send + 'static) {
    bump(offer);
    let generation = lock(&offer.0).generation;
    let offer = Arc::clone(offer);
    let spawned = std::thread::Builder::new().name("kb-desktop phone offer".into()).spawn(move || {
        let (clock, changed) = &*offer;
        let mut c = lock(clock);
        loop {
            if c.generation != generation {
                return;
            }
            let left = expires.saturating_sub(now_secs());
            if left == 0 {
                break;
            }
            c = changed.wait_timeout(c, Duration::from_secs(left)).unwrap_or_else(|p| p.into_inner()).0;
        }
        drop(c);
        expired();
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch the pairing QR code's expiry: {e}");
    }
}

impl Drop for Phones {
    fn drop(&mut self) {
        // The expiry timer has nothing left to tell.
        self.forget_offer();
    }
}

fn link(e: &LinkError, lang: Lang) -> AppError {
    AppError::new(e.code(), lang, e.to_string())
}

// ---------------------------------------------------------------------------------------
// the page's operations
// ---------------------------------------------------------------------------------------

impl Desktop {
    fn phone_host(&self) -> Result<Arc<PhoneHost>, AppError> {
        self.phones.host(self.lang())
    }

    /// Everything the phone keys page shows.
    pub fn phone_page(&self) -> Result<PhonePage, AppError> {
        let host = self.phone_host()?;
        let cfg = &self.phones.cfg;
        Ok(PhonePage {
            phones: host.phones().into_iter().map(phone).collect(),
            secrets: secret_store(host.secret_backend()),
            pairing_available: self.phones.configured(),
            listen: cfg.listen.iter().map(ToString::to_string).collect(),
            listening: host.direct_addrs().iter().map(ToString::to_string).collect(),
            relay_url: cfg.relay_url.clone(),
            settings_file: self.phones.settings_file.display().to_string(),
        })
    }

    /// Show a new pairing QR code (the previous one stops working). Fails with
    /// `link_no_endpoint` naming the settings to set when phones have no way to this PC.
    pub fn start_phone_pairing(&self) -> Result<PairingOffer, AppError> {
        let lang = self.lang();
        if !self.phones.configured() {
            return Err(AppError::new(
                ErrorCode::LinkNoEndpoint,
                lang,
                format!(
                    "set phone_listen (e.g. phone_listen = [\"192.168.1.20:17211\"], this PC's LAN address) or phone_relay_url in {}, then restart KeyBridge",
                    self.phones.settings_file.display()
                ),
            ));
        }
        let offer = self.phone_host()?.start_pairing().map_err(|e| link(&e, lang))?;
        self.phones.watch_offer(offer.expires);
        let left = offer.expires.saturating_sub(now_secs());
        Ok(PairingOffer {
            expires_ms: ms(offer.expires),
            seconds_left: u32::try_from(left).unwrap_or(u32::MAX),
            endpoints: offer.endpoints,
            text: offer.text,
        })
    }

    /// Withdraw the QR code shown.
    pub fn cancel_phone_pairing(&self) -> Result<(), AppError> {
        self.phones.forget_offer();
        self.phone_host()?.cancel_pairing();
        Ok(())
    }

    /// The user saw the same code on the phone: pair it.
    pub fn confirm_phone_pairing(&self, request: u64) -> Result<(), AppError> {
        self.phone_host()?.confirm(request).map_err(|e| link(&e, self.lang()))
    }

    /// The user rejected the phone (the codes differ, or it is not theirs).
    pub fn reject_phone_pairing(&self, request: u64) -> Result<(), AppError> {
        self.phone_host()?.reject(request).map_err(|e| link(&e, self.lang()))
    }

    /// Rename a paired phone (1–64 characters after trimming).
    pub fn rename_phone(&self, peer: &str, name: &str) -> Result<(), AppError> {
        let lang = self.lang();
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(AppError::input(lang, "a phone's name is 1–64 characters, no control characters"));
        }
        self.phone_host()?.rename(peer, name).map_err(|e| link(&e, lang))
    }

    /// Revoke a paired phone: refused from now on, its link closed, its certificates
    /// offline.
    pub fn revoke_phone(&self, peer: &str) -> Result<(), AppError> {
        self.phone_host()?.revoke(peer).map_err(|e| link(&e, self.lang()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_events_keep_their_codes_and_the_offer_hides_its_secret() {
        let e = event(HostEvent::PairingEnded { request: 7, code: "pairing_rejected".into(), message: "by the user".into() });
        let PhoneEvent::PairingEnded { request: 7, error } = e else { panic!("{e:?}") };
        assert_eq!((error.code, error.name.as_str()), (ErrorCode::PairingRejected.number(), "pairing_rejected"));
        let unknown = link_error("no_such_code", String::new());
        assert_eq!(unknown.code, ErrorCode::Internal.number());
        let offer = PairingOffer { text: "KB1:secret".into(), expires_ms: 1, seconds_left: 1, endpoints: vec![] };
        assert!(!format!("{offer:?}").contains("KB1"));
        let json = serde_json::to_value(PhoneEvent::OfferExpired).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "offerExpired"}));
    }

    #[test]
    fn only_the_latest_offer_reports_its_expiry() {
        let clock: Arc<(Mutex<OfferClock>, Condvar)> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let t1 = tx.clone();
        watch_offer(&clock, now_secs() + 3600, move || t1.send("first").unwrap());
        watch_offer(&clock, now_secs() + 1, move || tx.send("second").unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok("second"));
        // The first offer's timer woke on the newer offer and ended without a word.
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Err(std::sync::mpsc::RecvTimeoutError::Disconnected));
    }

    #[test]
    fn a_scan_or_cancel_stops_the_expiry_notice() {
        let clock: Arc<(Mutex<OfferClock>, Condvar)> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        watch_offer(&clock, now_secs() + 1, move || tx.send(()).unwrap());
        bump(&clock);
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Err(std::sync::mpsc::RecvTimeoutError::Disconnected));
    }

    #[test]
    fn a_chosen_file_is_no_fallback() {
        let chosen = kb_phonehost::BackendInfo { kind: "file".into(), path: Some("/x".into()), reason: Some(String::new()) };
        assert!(!secret_store(chosen).fallback);
        let forced = kb_phonehost::BackendInfo { kind: "file".into(), path: Some("/x".into()), reason: Some("no D-Bus".into()) };
        let s = secret_store(forced);
        assert!(s.fallback && s.kind == SecretStoreKind::File && s.reason.as_deref() == Some("no D-Bus"));
    }
}
