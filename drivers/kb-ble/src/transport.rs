//! [`BleTransport`]: BLE keys as media. The user scans, connects and disconnects; the
//! transport never connects to a key by itself, except a remembered key the user asked
//! to reconnect when it comes back in range.

use crate::card::{BleCard, ExchangeLimits, SharedLink, lock as lock_link};
use crate::link::{Advertisement, BleCentral, BleError, BluetoothState};
use crate::token::BleToken;
use kb_openpgp::OpenPgpCard;
use kb_token::{Result, Token, TokenError, Transport, TransportEvent};
use kb_types::{DeviceId, DeviceInfo, TransportKind};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// How long a scan listens.
pub const SCAN_WINDOW: Duration = Duration::from_secs(2);
/// How often remembered keys set to reconnect are looked for while out of reach.
pub const RECONNECT_INTERVAL: Duration = Duration::from_secs(5);
/// How often the Bluetooth state is looked at while someone watches (an adapter may be
/// plugged in, switched on, or bluetoothd started at any time).
pub const STATE_POLL: Duration = Duration::from_secs(2);

/// A key as the BLE page lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BleKeyListing {
    /// What the scan saw (or what was remembered, for a key out of range).
    #[serde(flatten)]
    pub advertisement: Advertisement,
    /// Its medium id once KeyBridge connected to it.
    pub device_id: Option<String>,
    /// Connected through KeyBridge and reachable.
    pub online: bool,
    /// Remembered (connected before and not forgotten).
    pub remembered: bool,
    /// Reconnect when it comes in range.
    pub auto_reconnect: bool,
    /// Seen by the last scan.
    pub in_range: bool,
}

/// A remembered key (kept in the store file, JSON).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RememberedKey {
    /// Bluetooth address.
    pub address: String,
    /// Its name when last seen.
    pub name: Option<String>,
    /// Its medium id.
    pub device_id: String,
    /// Reconnect when in range.
    pub auto_reconnect: bool,
}

struct Connected {
    info: DeviceInfo,
    link: SharedLink,
    online: bool,
}

#[derive(Default)]
struct State {
    connected: BTreeMap<String, Connected>,
    remembered: BTreeMap<String, RememberedKey>,
    last_scan: Vec<Advertisement>,
    watchers: Vec<Sender<TransportEvent>>,
    /// Told when the listing or the Bluetooth state may have changed ([`BleTransport::changes`]).
    listeners: Vec<Sender<()>>,
    /// The last Bluetooth state reported to watchers (reported once per change).
    reported: Option<BluetoothState>,
}

struct Shared {
    central: Arc<dyn BleCentral>,
    limits: ExchangeLimits,
    store: Option<PathBuf>,
    state: Mutex<State>,
    /// Link-lost news from the Bluetooth stack's thread to the monitor thread.
    lost_tx: Mutex<Sender<String>>,
}

/// BLE keys through a [`BleCentral`]. Dropping it (or [`BleTransport::close`]) stops scans
/// and closes every link.
pub struct BleTransport {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BleTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BleTransport").finish_non_exhaustive()
    }
}

fn addr_key(a: &str) -> String {
    a.to_uppercase()
}

impl BleTransport {
    /// A transport over `central`, remembering keys only in memory.
    pub fn new(central: Arc<dyn BleCentral>) -> Self {
        Self::build(central, None, ExchangeLimits::default())
    }

    /// A transport that keeps its remembered keys in `store` (JSON; created on first
    /// connect).
    pub fn with_store(central: Arc<dyn BleCentral>, store: PathBuf) -> Self {
        Self::build(central, Some(store), ExchangeLimits::default())
    }

    /// Change the exchange bounds (tests use short ones).
    pub fn with_limits(central: Arc<dyn BleCentral>, store: Option<PathBuf>, limits: ExchangeLimits) -> Self {
        Self::build(central, store, limits)
    }

    fn build(central: Arc<dyn BleCentral>, store: Option<PathBuf>, limits: ExchangeLimits) -> Self {
        let remembered = store.as_deref().map(load_store).unwrap_or_default();
        let (lost_tx, lost_rx) = channel();
        let shared = Arc::new(Shared {
            central,
            limits,
            store,
            state: Mutex::new(State { remembered, ..State::default() }),
            lost_tx: Mutex::new(lost_tx),
        });
        let weak = Arc::downgrade(&shared);
        let _ = std::thread::Builder::new().name("kb-ble-monitor".into()).spawn(move || monitor(weak, lost_rx));
        BleTransport { shared }
    }

    /// Whether Bluetooth can be used (蓝牙不可用 otherwise).
    pub fn bluetooth_state(&self) -> BluetoothState {
        self.shared.central.state()
    }

    /// Scan (the user pressed refresh) and list keys in range, remembered keys out of
    /// range too.
    pub fn scan(&self, window: Duration) -> std::result::Result<Vec<BleKeyListing>, BleError> {
        let seen = self.shared.central.scan(window)?;
        let keys = {
            let mut st = self.shared.lock();
            st.last_scan = seen;
            listing(&st)
        };
        self.shared.changed();
        Ok(keys)
    }

    /// A channel told (with `()`) whenever the listing or the Bluetooth state may have
    /// changed: a scan ended, a key connected, dropped, came back, was disconnected or
    /// forgotten, Bluetooth went away or came back. Ask [`BleTransport::keys`] and
    /// [`BleTransport::bluetooth_state`] for the news.
    pub fn changes(&self) -> Receiver<()> {
        let (tx, rx) = channel();
        self.shared.lock().listeners.push(tx);
        rx
    }

    /// The keys known now, without scanning.
    pub fn keys(&self) -> Vec<BleKeyListing> {
        listing(&self.shared.lock())
    }

    /// Connect to a key (the user asked): open its card application, report it `Added`
    /// and remember it.
    pub fn connect(&self, address: &str) -> std::result::Result<DeviceInfo, TokenError> {
        self.shared.connect(address, false)
    }

    /// Disconnect a key (the user asked): close its link and report it `Removed`. It
    /// stays remembered, but is no longer reconnected by itself: the user's disconnect
    /// holds until the user connects it again.
    pub fn disconnect(&self, address: &str) -> std::result::Result<(), TokenError> {
        let c = {
            let mut st = self.shared.lock();
            if let Some(r) = st.remembered.get_mut(&addr_key(address)) {
                r.auto_reconnect = false;
            }
            st.connected.remove(&addr_key(address))
        };
        self.shared.save();
        let c = c.ok_or_else(|| TokenError::UnknownDevice(address.into()))?;
        if let Some(mut l) = lock_link(&c.link).take() {
            l.close();
        }
        self.shared.broadcast(TransportEvent::Removed(c.info.id));
        Ok(())
    }

    /// Disconnect a key at the Bluetooth level although this process holds no link to it
    /// (the CLI), and stop reconnecting it.
    pub fn disconnect_device(&self, address: &str) -> std::result::Result<(), TokenError> {
        match self.disconnect(address) {
            Ok(()) | Err(TokenError::UnknownDevice(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(self.shared.central.disconnect_device(address)?)
    }

    /// Forget a key: disconnect it if connected and drop it from the remembered keys.
    pub fn forget(&self, address: &str) -> std::result::Result<(), TokenError> {
        let connected = self.shared.lock().connected.contains_key(&addr_key(address));
        if connected {
            self.disconnect(address)?;
        }
        let removed = self.shared.lock().remembered.remove(&addr_key(address));
        if removed.is_none() && !connected {
            return Err(TokenError::UnknownDevice(address.into()));
        }
        self.shared.save();
        Ok(())
    }

    /// Reconnect a remembered key when it comes in range (or not).
    pub fn set_auto_reconnect(&self, address: &str, on: bool) -> std::result::Result<(), TokenError> {
        {
            let mut st = self.shared.lock();
            let r = st.remembered.get_mut(&addr_key(address)).ok_or_else(|| TokenError::UnknownDevice(address.into()))?;
            r.auto_reconnect = on;
        }
        self.shared.save();
        Ok(())
    }

    /// Look once for remembered keys set to reconnect that are not connected, and
    /// reconnect those in range. The monitor thread does this every
    /// [`RECONNECT_INTERVAL`]; returns the keys brought back.
    pub fn reconnect_remembered(&self) -> Vec<DeviceId> {
        self.shared.reconnect_remembered()
    }

    /// Open a connected key as its concrete token (admin operations need
    /// [`BleToken::card_mut`]); [`Transport::open`] boxes this.
    pub fn open_card(&self, id: &DeviceId) -> Result<BleToken> {
        let found = {
            let st = self.shared.lock();
            st.connected.values().find(|c| c.info.id == *id).map(|c| (Arc::clone(&c.link), c.online))
        };
        let (link, online) = found.ok_or_else(|| TokenError::UnknownDevice(id.to_string()))?;
        if !online {
            return Err(TokenError::Offline);
        }
        let card = OpenPgpCard::open(BleCard::new(link, self.shared.limits), TransportKind::Ble)?;
        if card.info().id != *id {
            return Err(TokenError::UnknownDevice(id.to_string()));
        }
        Ok(BleToken::new(card))
    }

    /// Stop scans and close every link (at exit).
    pub fn close(&self) {
        self.shared.close();
    }
}

impl Drop for BleTransport {
    fn drop(&mut self) {
        self.shared.close();
    }
}

fn listing(st: &State) -> Vec<BleKeyListing> {
    let mut out: BTreeMap<String, BleKeyListing> = BTreeMap::new();
    for ad in &st.last_scan {
        let k = addr_key(&ad.address);
        let r = st.remembered.get(&k);
        let c = st.connected.get(&k);
        out.insert(
            k,
            BleKeyListing {
                advertisement: ad.clone(),
                device_id: c.map(|c| c.info.id.0.clone()).or_else(|| r.map(|r| r.device_id.clone())),
                online: c.is_some_and(|c| c.online),
                remembered: r.is_some(),
                auto_reconnect: r.is_some_and(|r| r.auto_reconnect),
                in_range: true,
            },
        );
    }
    for (k, r) in &st.remembered {
        let c = st.connected.get(k);
        out.entry(k.clone()).or_insert_with(|| BleKeyListing {
            advertisement: Advertisement {
                address: r.address.clone(),
                name: r.name.clone(),
                rssi: None,
                paired: false,
                connected: c.is_some_and(|c| c.online),
                needs: None,
            },
            device_id: Some(r.device_id.clone()),
            online: c.is_some_and(|c| c.online),
            remembered: true,
            auto_reconnect: r.auto_reconnect,
            in_range: false,
        });
    }
    out.into_values().collect()
}

fn load_store(path: &std::path::Path) -> BTreeMap<String, RememberedKey> {
    let Ok(text) = std::fs::read_to_string(path) else { return BTreeMap::new() };
    match serde_json::from_str::<Vec<RememberedKey>>(&text) {
        Ok(keys) => keys.into_iter().map(|k| (addr_key(&k.address), k)).collect(),
        Err(e) => {
            tracing::warn!("BLE: ignoring the unreadable remembered-keys file {}: {e}", path.display());
            BTreeMap::new()
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn broadcast(&self, e: TransportEvent) {
        self.lock().watchers.retain(|w| w.send(e.clone()).is_ok());
        self.changed();
    }

    /// Tell the change listeners.
    fn changed(&self) {
        self.lock().listeners.retain(|l| l.send(()).is_ok());
    }

    /// Keep the remembered keys (in the store file, if any); they changed.
    fn save(&self) {
        self.changed();
        let Some(path) = &self.store else { return };
        let keys: Vec<RememberedKey> = self.lock().remembered.values().cloned().collect();
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&keys).map_err(std::io::Error::other)?)?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            tracing::warn!("BLE: could not save the remembered keys to {}: {e}", path.display());
        }
    }

    /// Connect; `reconnect` = a remembered key coming back (same slot, `Online`).
    fn connect(self: &Arc<Self>, address: &str, reconnect: bool) -> std::result::Result<DeviceInfo, TokenError> {
        let key = addr_key(address);
        // A key the registry knows but KeyBridge cannot drive: say what it needs, and
        // never open a link to it.
        let needs = self.lock().last_scan.iter().find(|a| addr_key(&a.address) == key).and_then(|a| a.needs.clone());
        if let Some(n) = needs {
            return Err(TokenError::NotSupported(format!("{address}: {n}")));
        }
        if let Some(c) = self.lock().connected.get(&key)
            && c.online
        {
            return Ok(c.info.clone());
        }
        let tx = self.lost_tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let news = key.clone();
        // Never call the central with the state lock held: its stack thread may need
        // the lock (through this callback's channel it does not, but keep it so).
        let link = self.central.connect(
            address,
            Box::new(move || {
                let _ = tx.send(news.clone());
            }),
        )?;
        let existing = self.lock().connected.get(&key).map(|c| Arc::clone(&c.link));
        let slot: SharedLink = existing.unwrap_or_default();
        *lock_link(&slot) = Some(link);
        let opened = OpenPgpCard::open(BleCard::new(Arc::clone(&slot), self.limits), TransportKind::Ble);
        let card = match opened {
            Ok(c) => c,
            Err(e) => {
                if let Some(mut l) = lock_link(&slot).take() {
                    l.close();
                }
                return Err(match e {
                    TokenError::NotSupported(_) => TokenError::Link {
                        code: kb_types::ErrorCode::NotSupported,
                        message: format!("the BLE key {address} has no card application KeyBridge drives (OpenPGP)"),
                    },
                    e => e,
                });
            }
        };
        let info = card.info();
        drop(card);
        let name = self.lock().last_scan.iter().find(|a| addr_key(&a.address) == key).and_then(|a| a.name.clone());
        let event = {
            let mut st = self.lock();
            let was = st.connected.insert(key.clone(), Connected { info: info.clone(), link: slot, online: true });
            let r = st.remembered.entry(key.clone()).or_insert_with(|| RememberedKey {
                address: address.to_string(),
                name: None,
                device_id: info.id.0.clone(),
                auto_reconnect: false,
            });
            r.device_id = info.id.0.clone();
            if name.is_some() {
                r.name = name;
            }
            match was {
                Some(w) if reconnect && w.info.id == info.id => TransportEvent::Online(info.id.clone()),
                Some(w) if w.info.id != info.id => {
                    // Another card behind the same address: the old medium is gone.
                    st.watchers.retain(|tx| tx.send(TransportEvent::Removed(w.info.id.clone())).is_ok());
                    TransportEvent::Added(info.clone())
                }
                Some(_) => TransportEvent::Online(info.id.clone()),
                None => TransportEvent::Added(info.clone()),
            }
        };
        self.save();
        self.broadcast(event);
        Ok(info)
    }

    fn link_lost(&self, key: &str) {
        let id = {
            let mut st = self.lock();
            match st.connected.get_mut(key) {
                Some(c) if c.online => {
                    c.online = false;
                    Some(c.info.id.clone())
                }
                _ => None,
            }
        };
        if let Some(id) = id {
            tracing::info!("BLE: link to {id} lost");
            self.broadcast(TransportEvent::Offline(id));
        }
    }

    fn reconnect_remembered(self: &Arc<Self>) -> Vec<DeviceId> {
        let wanted: Vec<String> = {
            let st = self.lock();
            st.remembered
                .iter()
                .filter(|(k, r)| r.auto_reconnect && !st.connected.get(*k).is_some_and(|c| c.online))
                .map(|(_, r)| r.address.clone())
                .collect()
        };
        if wanted.is_empty() || self.central.state() != BluetoothState::Available {
            return Vec::new();
        }
        let Ok(seen) = self.central.scan(Duration::from_millis(500)) else { return Vec::new() };
        let mut back = Vec::new();
        for a in wanted {
            if seen.iter().any(|s| addr_key(&s.address) == addr_key(&a)) {
                match self.connect(&a, true) {
                    Ok(info) => back.push(info.id),
                    Err(e) => tracing::info!("BLE: reconnecting {a} failed: {e}"),
                }
            }
        }
        back
    }

    /// Report the Bluetooth state to watchers when it changed (once, not per poll).
    fn report_state(&self) {
        let now = self.central.state();
        let msg = {
            let mut st = self.lock();
            if st.reported.as_ref() == Some(&now) {
                return;
            }
            let first = st.reported.is_none();
            st.reported = Some(now.clone());
            match &now {
                BluetoothState::Unavailable { reason } => Some(unavailable_message(reason)),
                BluetoothState::Available if !first => {
                    tracing::info!("BLE: Bluetooth is available again");
                    None
                }
                BluetoothState::Available => None,
            }
        };
        match msg {
            Some(m) => self.broadcast(TransportEvent::Error(m)),
            None => self.changed(),
        }
    }

    fn close(&self) {
        let links: Vec<SharedLink> = self.lock().connected.values().map(|c| Arc::clone(&c.link)).collect();
        for l in links {
            if let Some(mut l) = lock_link(&l).take() {
                l.close();
            }
        }
        self.central.shutdown();
    }
}

/// The `Error` event's text for 蓝牙不可用 (its code's name first, as transport errors
/// carry it).
fn unavailable_message(reason: &str) -> String {
    let code = kb_types::ErrorCode::BluetoothUnavailable;
    format!("{}: {} ({reason})", code.name(), code.message(kb_types::Lang::ZhCn))
}

/// Hands link-lost news on as `Offline` events, reports Bluetooth state changes, and
/// reconnects remembered keys set to.
fn monitor(shared: Weak<Shared>, lost: Receiver<String>) {
    let tick = Duration::from_millis(250);
    let mut since_reconnect = Duration::ZERO;
    // The first look at the state comes at the first tick, off the caller's thread.
    let mut since_state = STATE_POLL;
    loop {
        let got = lost.recv_timeout(tick);
        let Some(s) = shared.upgrade() else { return };
        match got {
            Ok(key) => s.link_lost(&key),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        since_reconnect += tick;
        since_state += tick;
        let watched = {
            let st = s.lock();
            !st.watchers.is_empty() || !st.listeners.is_empty()
        };
        if watched && since_state >= STATE_POLL {
            since_state = Duration::ZERO;
            s.report_state();
        }
        if since_reconnect >= RECONNECT_INTERVAL {
            since_reconnect = Duration::ZERO;
            s.reconnect_remembered();
        }
    }
}

impl Transport for BleTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Ble
    }

    /// The connected keys at once, then `EnumerationComplete`, without asking the
    /// Bluetooth stack anything (a service starting on a machine without Bluetooth, or
    /// with a slow bus, is not held up): the monitor thread reports 蓝牙不可用 once, as
    /// an `Error` event, shortly after.
    fn watch(&self) -> Result<Receiver<TransportEvent>> {
        let (tx, rx) = channel();
        let mut st = self.shared.lock();
        for c in st.connected.values() {
            let _ = tx.send(TransportEvent::Added(c.info.clone()));
            if !c.online {
                let _ = tx.send(TransportEvent::Offline(c.info.id.clone()));
            }
        }
        let _ = tx.send(TransportEvent::EnumerationComplete);
        // A state already reported to others is told to this watcher now; otherwise the
        // monitor's first look tells everyone.
        if let Some(BluetoothState::Unavailable { reason }) = &st.reported {
            let _ = tx.send(TransportEvent::Error(unavailable_message(reason)));
        }
        st.watchers.push(tx);
        Ok(rx)
    }

    fn open(&self, id: &DeviceId) -> Result<Box<dyn Token>> {
        Ok(Box::new(self.open_card(id)?))
    }
}
