//! The PC's phone host: phones acting as this PC's keys (移动电子密钥, issue 14).
//!
//! [`PhoneHost`] owns the phone-link endpoint ([`PcEndpoint`]) with its pairing store
//! (OS keyring or a reported 0600 file) and a [`PhoneTransport`]. Every trusted phone's
//! link (a new pairing once the user confirmed it, or a paired phone that reconnects,
//! directly or through the relay) is attached to that transport, so the phone's
//! certificates reach the device service like any medium's (transport `phone`,
//! online/offline): give [`PhoneHost::transport`] to `DeviceManager::add_transport` and
//! nothing above the driver layer knows phones exist.
//!
//! The API is the same for the CLI and the desktop: [`PhoneHost::start_pairing`] (the QR
//! string and its expiry), [`PhoneHost::subscribe`] ([`HostEvent`]s: a phone awaiting
//! confirmation with its code, paired, connected, disconnected, refused),
//! [`PhoneHost::confirm`] / [`PhoneHost::reject`], [`PhoneHost::phones`] /
//! [`PhoneHost::rename`] / [`PhoneHost::revoke`], and [`PhoneHost::secret_backend`].
//!
//! Transports. The direct LAN listener opens only while pairing is open or a paired phone
//! is expected (configured addresses; off when none). With a relay URL, each offer names
//! a fresh tunnel; the tunnel a phone paired with becomes that phone's: the host keeps
//! its PC end open (re-opening after each link) so the phone can come back through it.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

use kb_phone::PhoneTransport;
use kb_phonelink::relay::{self, RelayEndpoint, RelayOptions, Role, TunnelId};
use kb_phonelink::{
    BackendChoice, Endpoint, LinkConfig, LinkError, LinkRuntime, PairingRequestId, PairingStore, PcConfig, PcEndpoint, PcEvent,
    PeerId, SecretBackend,
};
use kb_token::{Transport, TransportEvent};
use kb_types::{ErrorCode, HasErrorCode};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file mapping paired phones to their relay tunnels (no secret: a tunnel id is no key).
const TUNNELS_FILE: &str = "relay-tunnels.json";
/// How long to wait before opening a relay tunnel again after the relay failed.
const RELAY_RETRY: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn err(code: ErrorCode, detail: impl Into<String>) -> LinkError {
    LinkError::Failed { code, detail: detail.into() }
}

/// The host's settings.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Where the pairing store lives (`<data dir>/phones`).
    pub dir: PathBuf,
    /// The direct listener's addresses (empty: no direct transport). Paired phones keep
    /// the addresses of the QR they scanned, so give fixed ports.
    pub listen: Vec<SocketAddr>,
    /// The relay (`ws://` or `wss://`, reachable by the PC and the phones), if any.
    pub relay_url: Option<String>,
    /// The name phones show for this PC.
    pub pc_name: String,
    /// Keyring or file for the secrets.
    pub backend: BackendChoice,
    /// How long an offer is valid.
    pub offer_ttl: Duration,
    /// Link limits and timers.
    pub link: LinkConfig,
}

impl HostConfig {
    /// Defaults for a store in `dir`: no transport, the OS keyring when it answers,
    /// offers valid 5 minutes.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let pc = PcConfig::default();
        Self {
            dir: dir.into(),
            listen: Vec::new(),
            relay_url: None,
            pc_name: pc.name,
            backend: BackendChoice::Auto,
            offer_ttl: pc.offer_ttl,
            link: pc.link,
        }
    }
}

/// An offer to show as a QR code.
#[derive(Clone, Serialize)]
pub struct OfferInfo {
    /// The string to encode in the QR (`KB1:…`); it holds a one-time secret: show it, do
    /// not log it.
    pub text: String,
    /// When it stops working, Unix seconds.
    pub expires: u64,
    /// The ways to the PC it names (`ws://…`, relay URLs).
    pub endpoints: Vec<String>,
}

impl std::fmt::Debug for OfferInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfferInfo").field("expires", &self.expires).field("endpoints", &self.endpoints).finish()
    }
}

/// What the host reports (to every subscriber).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HostEvent {
    /// A new phone finished the handshake: show `code` and ask the user whether the
    /// phone shows the same; then [`PhoneHost::confirm`] or [`PhoneHost::reject`].
    AwaitingConfirmation {
        /// Pass to `confirm` / `reject`.
        request: u64,
        /// The phone's id.
        peer: String,
        /// The name the phone gave.
        name: String,
        /// The 6-digit confirmation code.
        code: String,
    },
    /// A pairing request ended without pairing (rejected, timed out, the phone left).
    PairingEnded {
        /// Which request.
        request: u64,
        /// Why, as a stable code name.
        code: String,
        /// Details.
        message: String,
    },
    /// A phone was paired (the user confirmed it).
    Paired {
        /// Its id.
        peer: String,
        /// Its name.
        name: String,
    },
    /// A trusted phone's link is up and its media are listed.
    Connected {
        /// Its id.
        peer: String,
        /// Its name.
        name: String,
        /// Its media's device ids.
        media: Vec<String>,
    },
    /// A phone's link went down: its media are offline.
    Disconnected {
        /// Its id.
        peer: String,
    },
    /// A connection was refused (a stale QR, an unpaired or revoked phone, an attack).
    Refused {
        /// The stable code name.
        code: String,
        /// Details.
        message: String,
        /// Where it came from.
        remote: String,
    },
    /// A trusted link could not be used (the phone said nothing, spoke another version).
    AttachFailed {
        /// Its id.
        peer: String,
        /// The stable code name.
        code: String,
        /// Details.
        message: String,
    },
}

/// A paired phone as the user sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PhoneEntry {
    /// Its id.
    pub peer: String,
    /// Its name.
    pub name: String,
    /// When it was paired, Unix seconds.
    pub paired_at: u64,
    /// When it last connected, Unix seconds.
    pub last_seen: Option<u64>,
    /// Revoked phones are refused.
    pub revoked: bool,
    /// Whether its link is up now.
    pub online: bool,
    /// Its media's device ids (known once it connected in this run).
    pub media: Vec<String>,
    /// The relay tunnel it can come back through, if any (hex).
    pub relay: bool,
}

/// Where the pairing secrets are, for the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendInfo {
    /// `keyring` or `file`.
    pub kind: String,
    /// The file's path, for `file`.
    pub path: Option<String>,
    /// Why not the keyring, for `file` (empty when chosen).
    pub reason: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct Tunnels {
    /// Peer id → tunnel id (hex).
    phones: BTreeMap<String, String>,
}

struct Shared {
    endpoint: PcEndpoint,
    transport: PhoneTransport,
    cfg: HostConfig,
    rt: LinkRuntime,
    subscribers: Mutex<Vec<Sender<HostEvent>>>,
    /// The open offer's relay tunnel (the one a phone pairing now will keep).
    offer_tunnel: Mutex<Option<TunnelId>>,
    tunnels: Mutex<Tunnels>,
    /// Tunnels whose PC end is being served.
    serving: Mutex<HashSet<TunnelId>>,
    stopped: AtomicBool,
}

/// The PC's phone host (see the crate documentation). Dropping it stops its threads and
/// closes the listener; links already attached stay up until they close.
pub struct PhoneHost {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PhoneHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PhoneHost({:?})", self.shared.endpoint)
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl PhoneHost {
    /// Open the store, start the link endpoint and, when phones are paired, the ways
    /// they come back (the direct listener, their relay tunnels).
    pub fn start(cfg: HostConfig) -> Result<Self, LinkError> {
        let store = Arc::new(PairingStore::open(&cfg.dir, cfg.backend)?);
        let rt = LinkRuntime::new()?;
        let pc = PcConfig { link: cfg.link.clone(), offer_ttl: cfg.offer_ttl, name: cfg.pc_name.clone(), ..PcConfig::default() };
        let endpoint = PcEndpoint::new(store, pc, rt.clone())?;
        let tunnels = read_tunnels(&cfg.dir.join(TUNNELS_FILE));
        let shared = Arc::new(Shared {
            endpoint,
            transport: PhoneTransport::new(),
            cfg,
            rt,
            subscribers: Mutex::default(),
            offer_tunnel: Mutex::default(),
            tunnels: Mutex::new(tunnels),
            serving: Mutex::default(),
            stopped: AtomicBool::new(false),
        });
        let host = PhoneHost { shared };
        host.spawn_threads()?;
        if host.expects_phones() {
            host.open_direct()?;
            host.serve_paired_tunnels();
        }
        Ok(host)
    }

    fn spawn_threads(&self) -> Result<(), LinkError> {
        let spawn_err = |e: std::io::Error| err(ErrorCode::Internal, format!("cannot start a thread: {e}"));
        let weak = Arc::downgrade(&self.shared);
        std::thread::Builder::new()
            .name("kb-phonehost events".into())
            .spawn(move || {
                while let Some(shared) = weak.upgrade() {
                    if shared.stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Some(e) = shared.endpoint.next_event(Duration::from_millis(500)) {
                        Shared::on_link_event(&shared, e);
                    }
                }
            })
            .map_err(spawn_err)?;
        // Online/offline from the transport itself (what the device service sees).
        let watch = self.shared.transport.watch().map_err(|e| err(e.code(), e.to_string()))?;
        let weak = Arc::downgrade(&self.shared);
        std::thread::Builder::new()
            .name("kb-phonehost watch".into())
            .spawn(move || {
                let mut online: BTreeSet<PeerId> = BTreeSet::new();
                while let Ok(e) = watch.recv() {
                    let Some(shared) = weak.upgrade() else { break };
                    if matches!(e, TransportEvent::Offline(_) | TransportEvent::Removed(_)) {
                        let now: BTreeSet<PeerId> =
                            shared.transport.phones().into_iter().filter(|p| p.online).map(|p| p.peer).collect();
                        for gone in online.difference(&now) {
                            shared.emit(HostEvent::Disconnected { peer: gone.0.clone() });
                        }
                        online = now;
                    } else {
                        online = shared.transport.phones().into_iter().filter(|p| p.online).map(|p| p.peer).collect();
                    }
                }
            })
            .map_err(spawn_err)?;
        Ok(())
    }

    /// The phones' media as a device-service transport (kind `phone`).
    pub fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.shared.transport.clone())
    }

    /// The phone transport itself (status of each phone).
    pub fn phone_transport(&self) -> &PhoneTransport {
        &self.shared.transport
    }

    /// Events from now on.
    pub fn subscribe(&self) -> Receiver<HostEvent> {
        let (tx, rx) = mpsc::channel();
        lock(&self.shared.subscribers).push(tx);
        rx
    }

    /// Where the pairing secrets are.
    pub fn secret_backend(&self) -> BackendInfo {
        match self.shared.endpoint.store().backend() {
            SecretBackend::Keyring => BackendInfo { kind: "keyring".into(), path: None, reason: None },
            SecretBackend::File { path, reason } => {
                BackendInfo { kind: "file".into(), path: Some(path.display().to_string()), reason: Some(reason.clone()) }
            }
        }
    }

    /// The direct listener's bound addresses (empty while closed).
    pub fn direct_addrs(&self) -> Vec<SocketAddr> {
        self.shared.endpoint.direct_addrs()
    }

    fn expects_phones(&self) -> bool {
        self.shared.endpoint.store().list().iter().any(|p| !p.revoked)
    }

    fn open_direct(&self) -> Result<(), LinkError> {
        if self.shared.cfg.listen.is_empty() || !self.direct_addrs().is_empty() {
            return Ok(());
        }
        self.shared.endpoint.open_direct(&self.shared.cfg.listen).map(|_| ())
    }

    /// Show a new pairing offer (replacing the previous one): opens the direct listener
    /// and, with a relay, a fresh tunnel.
    pub fn start_pairing(&self) -> Result<OfferInfo, LinkError> {
        self.open_direct()?;
        let mut extra = Vec::new();
        if let Some(url) = &self.shared.cfg.relay_url {
            let tunnel = TunnelId::random().map_err(|e| err(e.code(), e.to_string()))?;
            extra.push(Endpoint::Relay { url: url.clone(), tunnel: tunnel.to_hex() });
            *lock(&self.shared.offer_tunnel) = Some(tunnel);
            Shared::serve_tunnel(&self.shared, tunnel);
        }
        let offer = self.shared.endpoint.start_pairing(&extra)?;
        Ok(OfferInfo {
            text: offer.text,
            expires: unix_secs(offer.expires),
            endpoints: offer.endpoints.iter().map(Endpoint::url).collect(),
        })
    }

    /// Withdraw the open offer.
    pub fn cancel_pairing(&self) {
        self.shared.endpoint.cancel_pairing();
        lock(&self.shared.offer_tunnel).take();
    }

    /// The user confirmed that the phone shows the same code.
    pub fn confirm(&self, request: u64) -> Result<(), LinkError> {
        self.shared.endpoint.confirm(PairingRequestId(request))
    }

    /// The user rejected the phone.
    pub fn reject(&self, request: u64) -> Result<(), LinkError> {
        self.shared.endpoint.reject(PairingRequestId(request))
    }

    /// The paired phones (revoked ones too), with their live state.
    pub fn phones(&self) -> Vec<PhoneEntry> {
        let live = self.shared.transport.phones();
        let tunnels = lock(&self.shared.tunnels);
        self.shared
            .endpoint
            .store()
            .list()
            .into_iter()
            .map(|p| {
                let status = live.iter().find(|s| s.peer.0 == p.peer);
                PhoneEntry {
                    online: status.is_some_and(|s| s.online) && !p.revoked,
                    media: status.map(|s| s.media.iter().map(ToString::to_string).collect()).unwrap_or_default(),
                    relay: tunnels.phones.contains_key(&p.peer),
                    peer: p.peer,
                    name: p.name,
                    paired_at: p.paired_at,
                    last_seen: p.last_seen,
                    revoked: p.revoked,
                }
            })
            .collect()
    }

    /// Find a phone by id, id prefix (at least 4 characters) or exact name.
    pub fn find(&self, which: &str) -> Result<PhoneEntry, LinkError> {
        let phones = self.phones();
        let hits: Vec<&PhoneEntry> = phones
            .iter()
            .filter(|p| p.peer == which || p.name == which || (which.len() >= 4 && p.peer.starts_with(which)))
            .collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(err(ErrorCode::PhoneNotPaired, format!("no paired phone \"{which}\""))),
            _ => Err(err(ErrorCode::InvalidParameter, format!("\"{which}\" names {} phones; give more of its id", hits.len()))),
        }
    }

    /// Rename a paired phone.
    pub fn rename(&self, peer: &str, name: &str) -> Result<(), LinkError> {
        self.shared.endpoint.store().rename(&PeerId(peer.to_owned()), name)
    }

    /// Revoke a paired phone: it is refused from now on, its open link is closed and its
    /// media go offline (they stay listed, offline, until KeyBridge restarts); its relay
    /// tunnel is no longer served.
    pub fn revoke(&self, peer: &str) -> Result<(), LinkError> {
        let peer = PeerId(peer.to_owned());
        self.shared.endpoint.revoke(&peer)?;
        self.shared.transport.disconnect(&peer);
        let mut t = lock(&self.shared.tunnels);
        if t.phones.remove(&peer.0).is_some() {
            write_tunnels(&self.shared.cfg.dir.join(TUNNELS_FILE), &t)?;
        }
        Ok(())
    }

    fn serve_paired_tunnels(&self) {
        if self.shared.cfg.relay_url.is_none() {
            return;
        }
        let ids: Vec<TunnelId> = lock(&self.shared.tunnels).phones.values().filter_map(|t| tunnel_from_hex(t)).collect();
        for t in ids {
            Shared::serve_tunnel(&self.shared, t);
        }
    }
}

impl Drop for PhoneHost {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        self.shared.endpoint.close_direct();
        self.shared.endpoint.cancel_pairing();
    }
}

fn tunnel_from_hex(s: &str) -> Option<TunnelId> {
    let b: [u8; relay::TUNNEL_ID_LEN] = hex::decode(s).ok()?.try_into().ok()?;
    Some(TunnelId::from_bytes(b))
}

fn read_tunnels(path: &Path) -> Tunnels {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn write_tunnels(path: &Path, t: &Tunnels) -> Result<(), LinkError> {
    let bytes = serde_json::to_vec_pretty(t).map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| err(ErrorCode::PairingStoreFailed, format!("{}: {e}", path.display())))
}

impl Shared {
    fn emit(&self, e: HostEvent) {
        lock(&self.subscribers).retain(|s| s.send(e.clone()).is_ok());
    }

    fn on_link_event(shared: &Arc<Shared>, e: PcEvent) {
        match e {
            PcEvent::PairingRequest { request, peer, name, code } => {
                shared.emit(HostEvent::AwaitingConfirmation { request: request.0, peer: peer.0, name, code });
            }
            PcEvent::PairingEnded { request, reason } => shared.emit(HostEvent::PairingEnded {
                request: request.0,
                code: reason.code().name().to_owned(),
                message: reason.to_string(),
            }),
            PcEvent::Refused { code, detail, remote } => {
                shared.emit(HostEvent::Refused { code: code.name().to_owned(), message: detail, remote });
            }
            PcEvent::Connected { peer, name, conn, new_pairing } => {
                if new_pairing {
                    shared.adopt_offer_tunnel(&peer);
                    shared.emit(HostEvent::Paired { peer: peer.0.clone(), name: name.clone() });
                }
                // `attach` waits for the phone's hello: not on the event thread.
                let s = Arc::clone(shared);
                let spawned = std::thread::Builder::new().name(format!("kb-phonehost attach {peer}")).spawn(move || {
                    match s.transport.attach(conn) {
                        Ok(ids) => s.emit(HostEvent::Connected {
                            peer: peer.0,
                            name,
                            media: ids.iter().map(ToString::to_string).collect(),
                        }),
                        Err(e) => s.emit(HostEvent::AttachFailed {
                            peer: peer.0,
                            code: e.code().name().to_owned(),
                            message: e.to_string(),
                        }),
                    }
                });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a thread for a phone link");
                }
            }
        }
    }

    /// A phone paired now keeps the open offer's relay tunnel as its own.
    fn adopt_offer_tunnel(&self, peer: &PeerId) {
        let Some(tunnel) = *lock(&self.offer_tunnel) else { return };
        let mut t = lock(&self.tunnels);
        t.phones.insert(peer.0.clone(), tunnel.to_hex());
        if let Err(e) = write_tunnels(&self.cfg.dir.join(TUNNELS_FILE), &t) {
            tracing::warn!(error = %e, "cannot remember the phone's relay tunnel");
        }
    }

    /// Whether the PC end of `tunnel` should (still) be served: it is the open offer's or
    /// a paired (not revoked) phone's.
    fn wants_tunnel(&self, tunnel: TunnelId) -> bool {
        if self.stopped.load(Ordering::Relaxed) {
            return false;
        }
        if *lock(&self.offer_tunnel) == Some(tunnel) {
            return true;
        }
        let hex = tunnel.to_hex();
        let t = lock(&self.tunnels);
        let Some((peer, _)) = t.phones.iter().find(|(_, v)| **v == hex) else { return false };
        self.endpoint.store().list().iter().any(|p| &p.peer == peer && !p.revoked)
    }

    /// Keep the PC end of `tunnel` open: wait for the phone, hand the pipe to the
    /// endpoint's handshake, and open it again when that link ends, for as long as the
    /// tunnel is wanted.
    fn serve_tunnel(shared: &Arc<Shared>, tunnel: TunnelId) {
        if !lock(&shared.serving).insert(tunnel) {
            return;
        }
        let Some(url) = shared.cfg.relay_url.clone() else { return };
        let weak = Arc::downgrade(shared);
        shared.rt.handle().spawn(async move {
            let options = RelayOptions::default();
            loop {
                let Some(s) = weak.upgrade().filter(|s| s.wants_tunnel(tunnel)) else { break };
                let endpoint = match RelayEndpoint::new(url.clone(), tunnel) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(error = %e, "bad relay URL");
                        break;
                    }
                };
                drop(s);
                let opened = relay::open(&endpoint, Role::Pc, &options).await;
                let t = match opened {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(error = %e, "relay tunnel: cannot open; retrying");
                        tokio::time::sleep(RELAY_RETRY).await;
                        continue;
                    }
                };
                let watch = t.watch.clone();
                // Wait for the phone, checking now and then that the tunnel is still wanted.
                let ready = loop {
                    tokio::select! {
                        r = watch.ready() => break r.is_ok(),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {
                            if !weak.upgrade().is_some_and(|s| s.wants_tunnel(tunnel)) {
                                break false;
                            }
                        }
                    }
                };
                if !ready {
                    drop(t);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                match weak.upgrade() {
                    Some(s) => s.endpoint.accept_pipe(t.pipe, &format!("relay {}", endpoint.url)),
                    None => break,
                }
                let why = watch.ended().await;
                tracing::debug!(reason = %why, "relay tunnel ended; opening it again");
            }
            if let Some(s) = weak.upgrade() {
                lock(&s.serving).remove(&tunnel);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_transports_refuses_to_pair_and_reports_its_file_backend() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = HostConfig { backend: BackendChoice::File, ..HostConfig::new(dir.path()) };
        let host = PhoneHost::start(cfg).unwrap();
        assert_eq!(host.secret_backend().kind, "file");
        assert!(host.direct_addrs().is_empty(), "no listener while no phone is expected");
        let e = host.start_pairing().unwrap_err();
        assert_eq!(e.code(), ErrorCode::LinkNoEndpoint);
        assert!(host.phones().is_empty());
    }

    #[test]
    fn the_direct_listener_opens_for_pairing_only() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let cfg = HostConfig { backend: BackendChoice::File, listen: vec![addr], ..HostConfig::new(dir.path()) };
        let host = PhoneHost::start(cfg).unwrap();
        assert!(host.direct_addrs().is_empty());
        let offer = host.start_pairing().unwrap();
        let bound = host.direct_addrs();
        assert_eq!(bound.len(), 1);
        assert!(offer.text.starts_with("KB1:"));
        assert_eq!(offer.endpoints, vec![format!("ws://{}{}", bound[0], kb_phonelink::qr::DIRECT_PATH)]);
        assert!(!format!("{offer:?}").contains(&offer.text), "the offer's Debug hides the secret");
    }
}
