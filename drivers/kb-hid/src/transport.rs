//! [`HidTransport`]: HID keys listed in the media registry, found by polling.

use crate::backend::{HidBackend, HidConnection, HidDeviceInfo};
use crate::hidapi_backend::HidapiBackend;
use kb_registry::{Registry, Served, UsbEntry, UsbInterface};
use kb_token::{Result, Token, TokenError, Transport, TransportEvent};
use kb_types::{DeviceId, TransportKind};
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// How often the HID devices are listed. Listing reads sysfs (no device is opened), so
/// twice a second costs next to nothing and finds a key within half a second.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A protocol driver for HID keys: turns an open HID interface into a medium. The
/// registry names it in the `app` of an `interface = "vendor"` USB entry. KeyBridge ships
/// none yet (no GM key's HID protocol is published); this is where one plugs in.
pub trait HidDriver: Send + Sync {
    /// The name the registry's `app` uses for it.
    fn name(&self) -> &str;

    /// Speak the protocol over `connection` (an interface of `device`): the medium, or why
    /// not. The medium's [`DeviceInfo`](kb_types::DeviceInfo) id must be the same every
    /// time the same key is opened.
    fn open(&self, connection: Box<dyn HidConnection>, device: &HidDeviceInfo) -> Result<Box<dyn Token>>;
}

/// A key served by a driver: where it is and who speaks to it.
#[derive(Clone)]
struct Medium {
    device: HidDeviceInfo,
    driver: Arc<dyn HidDriver>,
}

/// USB keys on HID, from the registry's `interface = "vendor"` entries.
///
/// `watch` lists the HID devices every [`POLL_INTERVAL`]. A listed key is reported once
/// per insertion: as a medium (`Added`, then `Removed` when pulled out) when a
/// [`HidDriver`] for its `app` is registered, otherwise as one `Error` saying what it is
/// and what it needs ("USB key … present, needs …"), which `keybridge devices` shows under
/// problems. Other HID devices (keyboards, mice, FIDO keys) and CCID keys (seen through
/// PC/SC) are ignored. Without HID access the listing is empty: enumeration completes at
/// once and nothing fails.
pub struct HidTransport {
    backend: Arc<dyn HidBackend>,
    registry: Arc<Registry>,
    registry_error: Option<String>,
    drivers: Vec<Arc<dyn HidDriver>>,
    media: Arc<Mutex<BTreeMap<DeviceId, Medium>>>,
    poll: Duration,
    /// Watch threads hold a `Weak` to this and stop once the transport is dropped.
    alive: Arc<()>,
}

impl std::fmt::Debug for HidTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let drivers: Vec<&str> = self.drivers.iter().map(|d| d.name()).collect();
        f.debug_struct("HidTransport").field("drivers", &drivers).field("poll", &self.poll).finish_non_exhaustive()
    }
}

impl Default for HidTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl HidTransport {
    /// The system's HID devices (hidapi) and the built-in registry.
    pub fn new() -> Self {
        let (registry, error) = Registry::builtin_or_empty();
        let mut t = Self::with_backend(Arc::new(HidapiBackend::new()), registry);
        t.registry_error = error.map(|e| e.to_string());
        t
    }

    /// Another backend (a [`crate::VirtualHid`] in tests) and registry.
    pub fn with_backend(backend: Arc<dyn HidBackend>, registry: Registry) -> Self {
        HidTransport {
            backend,
            registry: Arc::new(registry),
            registry_error: None,
            drivers: Vec::new(),
            media: Arc::default(),
            poll: POLL_INTERVAL,
            alive: Arc::new(()),
        }
    }

    /// Serve the registry entries whose `app` is `driver`'s name with it.
    pub fn with_driver(mut self, driver: Arc<dyn HidDriver>) -> Self {
        self.drivers.push(driver);
        self
    }

    /// List the devices this often instead of [`POLL_INTERVAL`].
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    fn media(&self) -> MutexGuard<'_, BTreeMap<DeviceId, Medium>> {
        self.media.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Transport for HidTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Hid
    }

    fn watch(&self) -> Result<Receiver<TransportEvent>> {
        let (tx, rx) = channel();
        if let Some(e) = &self.registry_error {
            let _ = tx.send(TransportEvent::Error(e.clone()));
        }
        let w = Watcher {
            backend: Arc::clone(&self.backend),
            registry: Arc::clone(&self.registry),
            drivers: self.drivers.clone(),
            media: Arc::clone(&self.media),
            alive: Arc::downgrade(&self.alive),
            tx,
            poll: self.poll,
            keys: BTreeMap::new(),
            listing_failed: false,
        };
        std::thread::Builder::new()
            .name("kb-hid-watch".into())
            .spawn(move || w.run())
            .map_err(|e| TokenError::Io(e.to_string()))?;
        Ok(rx)
    }

    fn open(&self, id: &DeviceId) -> Result<Box<dyn Token>> {
        let medium = self.media().get(id).cloned().ok_or_else(|| TokenError::UnknownDevice(id.to_string()))?;
        let connection = self.backend.open(&medium.device.path)?;
        let token = medium.driver.open(connection, &medium.device)?;
        // Another key may have taken the same path since the watcher saw this one.
        if token.info().id != *id {
            return Err(TokenError::UnknownDevice(id.to_string()));
        }
        Ok(token)
    }
}

/// One physical key: a composite key shows one HID interface per USB interface, all with
/// the same VID, PID and serial. Keys without a serial are told apart by path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct KeyOf {
    vid: u16,
    pid: u16,
    serial: String,
    path: String,
}

impl KeyOf {
    fn new(d: &HidDeviceInfo) -> Self {
        let path = if d.serial.is_empty() { d.path.clone() } else { String::new() };
        KeyOf { vid: d.vendor_id, pid: d.product_id, serial: d.serial.clone(), path }
    }
}

/// The receiver or the transport is gone.
struct Stop;

struct Watcher {
    backend: Arc<dyn HidBackend>,
    registry: Arc<Registry>,
    drivers: Vec<Arc<dyn HidDriver>>,
    media: Arc<Mutex<BTreeMap<DeviceId, Medium>>>,
    alive: Weak<()>,
    tx: Sender<TransportEvent>,
    poll: Duration,
    /// Listed keys present at the last look, with the medium each became (if any).
    keys: BTreeMap<KeyOf, Option<DeviceId>>,
    listing_failed: bool,
}

/// "USB key Feitian … ePass3000GM (096E:0309, serial 1234)".
fn describe(entry: &UsbEntry, d: &HidDeviceInfo) -> String {
    let serial = if d.serial.is_empty() { String::new() } else { format!(", serial {}", d.serial) };
    format!("USB key {} {} ({:04X}:{:04X}{serial})", entry.vendor, entry.model, d.vendor_id, d.product_id)
}

impl Watcher {
    fn send(&self, e: TransportEvent) -> std::result::Result<(), Stop> {
        self.tx.send(e).map_err(|_| Stop)
    }

    fn run(mut self) {
        let mut enumerated = false;
        loop {
            if self.alive.upgrade().is_none() || self.look().is_err() {
                return;
            }
            if !enumerated {
                enumerated = true;
                if self.send(TransportEvent::EnumerationComplete).is_err() {
                    return;
                }
            }
            if self.sleep().is_err() {
                return;
            }
        }
    }

    /// Sleep one poll interval in short steps, so a dropped transport ends the thread soon.
    fn sleep(&self) -> std::result::Result<(), Stop> {
        let step = Duration::from_millis(50);
        let mut slept = Duration::ZERO;
        while slept < self.poll {
            let d = step.min(self.poll - slept);
            std::thread::sleep(d);
            slept += d;
            if self.alive.upgrade().is_none() {
                return Err(Stop);
            }
        }
        Ok(())
    }

    /// List the devices once and report what changed.
    fn look(&mut self) -> std::result::Result<(), Stop> {
        let devices = match self.backend.enumerate() {
            Ok(d) => {
                self.listing_failed = false;
                d
            }
            Err(e) => {
                // Keep what we knew; say so once per failure streak.
                if !self.listing_failed {
                    self.listing_failed = true;
                    tracing::info!("HID: listing devices failed: {e}");
                    self.send(TransportEvent::Error(format!("HID: listing devices failed: {e}")))?;
                }
                return Ok(());
            }
        };
        let mut now: BTreeMap<KeyOf, Vec<HidDeviceInfo>> = BTreeMap::new();
        for d in devices {
            let listed = self.registry.match_usb(d.vendor_id, d.product_id).is_some_and(|e| e.interface == UsbInterface::Vendor);
            if listed {
                now.entry(KeyOf::new(&d)).or_default().push(d);
            }
        }
        let gone: Vec<KeyOf> = self.keys.keys().filter(|k| !now.contains_key(*k)).cloned().collect();
        for key in gone {
            if let Some(Some(id)) = self.keys.remove(&key) {
                self.media.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                self.send(TransportEvent::Removed(id))?;
            }
        }
        for (key, mut interfaces) in now {
            if !self.keys.contains_key(&key) {
                interfaces.sort_by(|a, b| (a.interface_number, &a.path).cmp(&(b.interface_number, &b.path)));
                let id = self.arrived(&interfaces)?;
                self.keys.insert(key, id);
            }
        }
        Ok(())
    }

    /// A listed key appeared (`interfaces`: its HID interfaces, at least one): make it a
    /// medium if a driver serves it, else say what it needs.
    fn arrived(&mut self, interfaces: &[HidDeviceInfo]) -> std::result::Result<Option<DeviceId>, Stop> {
        let Some(first) = interfaces.first() else { return Ok(None) };
        let Some(entry) = self.registry.match_usb(first.vendor_id, first.product_id) else { return Ok(None) };
        let what = describe(entry, first);
        let app = match &entry.served {
            Served::Needs(needs) => {
                self.send(TransportEvent::Error(format!("{what} present, needs {needs}")))?;
                return Ok(None);
            }
            Served::App(app) => app,
        };
        let Some(driver) = self.drivers.iter().find(|d| d.name() == app).cloned() else {
            let msg = format!("{what} present, needs the KeyBridge HID driver \"{app}\", which this build does not include");
            self.send(TransportEvent::Error(msg))?;
            return Ok(None);
        };
        // The first interface the driver accepts becomes the medium.
        let mut failure = TokenError::Removed;
        for d in interfaces {
            match self.backend.open(&d.path).map_err(TokenError::from).and_then(|c| driver.open(c, d)) {
                Ok(token) => {
                    let info = token.info();
                    drop(token);
                    let medium = Medium { device: d.clone(), driver: Arc::clone(&driver) };
                    self.media.lock().unwrap_or_else(|e| e.into_inner()).insert(info.id.clone(), medium);
                    let id = info.id.clone();
                    self.send(TransportEvent::Added(info))?;
                    return Ok(Some(id));
                }
                Err(e) => failure = e,
            }
        }
        // Pulled out while we looked: nothing to say.
        if !matches!(failure, TokenError::Removed) {
            self.send(TransportEvent::Error(format!("{what} present but not usable: {failure}")))?;
        }
        Ok(None)
    }
}
