//! An in-memory [`BleCentral`] with virtual keys: each key runs the key side of the
//! framing over an APDU handler, with faults to inject (keep-alives, a link drop on a
//! chosen APDU, raw fragments instead of the answer, silence). For tests and the CLI's
//! demo mode; the real path is [`crate::btle`].

use crate::frame::{self, FrameCommand, Reassembler};
use crate::link::{Advertisement, BleCentral, BleError, BleLink, BluetoothState, OnLost, Result};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use zeroize::Zeroizing;

type Handler = Box<dyn FnMut(&[u8]) -> Vec<u8> + Send>;
type Predicate = Box<dyn Fn(&[u8]) -> bool + Send>;

/// Faults a virtual key injects.
#[derive(Default)]
pub struct Faults {
    /// KEEPALIVE frames sent before every answer.
    pub keepalives: usize,
    /// Drop the link when a command APDU matching this arrives (it reached the key; no
    /// answer comes).
    pub drop_link_on: Option<Predicate>,
    /// Fragments sent instead of the next answers, one list per command (malformed
    /// frames).
    pub raw_answers: VecDeque<Vec<Vec<u8>>>,
    /// Never answer.
    pub silent: bool,
}

struct KeyState {
    ad: Advertisement,
    /// The GATT services it advertises (KeyBridge's own for a key it drives).
    services: Vec<uuid::Uuid>,
    /// The control-point length characteristic's raw value.
    control_point_length: Vec<u8>,
    in_range: bool,
    handler: Handler,
    faults: Faults,
    /// The current link, to drop it from outside.
    link: Option<Arc<LinkShared>>,
}

/// A virtual key's handle (tests change its faults and range through it).
#[derive(Clone)]
pub struct VirtualKey {
    state: Arc<Mutex<KeyState>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl VirtualKey {
    /// A key at `address` fragmenting at `control_point_length`, answering APDUs with
    /// `handler`.
    pub fn new(
        address: &str,
        name: &str,
        control_point_length: u16,
        handler: impl FnMut(&[u8]) -> Vec<u8> + Send + 'static,
    ) -> Self {
        VirtualKey {
            state: Arc::new(Mutex::new(KeyState {
                ad: Advertisement {
                    address: address.to_string(),
                    name: Some(name.to_string()),
                    rssi: Some(-60),
                    paired: false,
                    connected: false,
                    needs: None,
                },
                services: vec![crate::link::SERVICE_UUID],
                control_point_length: control_point_length.to_be_bytes().to_vec(),
                in_range: true,
                handler: Box::new(handler),
                faults: Faults::default(),
                link: None,
            })),
        }
    }

    /// A key advertising `service` instead of KeyBridge's (a FIDO security key, another
    /// vendor's key): listed only when the registry knows the service, never driven.
    pub fn advertising(address: &str, name: &str, service: uuid::Uuid) -> Self {
        let key = VirtualKey::new(address, name, 20, |_| vec![0x6D, 0x00]);
        lock(&key.state).services = vec![service];
        key
    }

    /// Change the faults.
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut lock(&self.state).faults);
    }

    /// Set the raw control-point-length value (to test bad ones).
    pub fn set_control_point_length_raw(&self, raw: &[u8]) {
        lock(&self.state).control_point_length = raw.to_vec();
    }

    /// Move in or out of range; out of range drops the link.
    pub fn set_in_range(&self, in_range: bool) {
        lock(&self.state).in_range = in_range;
        if !in_range {
            self.drop_link();
        }
    }

    /// Drop the link as a radio would.
    pub fn drop_link(&self) {
        let link = lock(&self.state).link.take();
        if let Some(l) = link {
            l.lose();
        }
    }

    fn address(&self) -> String {
        lock(&self.state).ad.address.clone()
    }
}

/// The in-memory adapter.
pub struct VirtualCentral {
    state: Mutex<BluetoothState>,
    keys: Mutex<BTreeMap<String, VirtualKey>>,
    scans: Mutex<usize>,
    /// State checks so far, and whether they are held (a stuck Bluetooth stack).
    checks: Mutex<(usize, bool)>,
    released: Condvar,
}

impl Default for VirtualCentral {
    fn default() -> Self {
        VirtualCentral {
            state: Mutex::new(BluetoothState::Available),
            keys: Mutex::default(),
            scans: Mutex::new(0),
            checks: Mutex::new((0, false)),
            released: Condvar::new(),
        }
    }
}

impl VirtualCentral {
    /// An adapter with no keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Put a key in the world.
    pub fn add_key(&self, key: VirtualKey) {
        lock(&self.keys).insert(key.address().to_uppercase(), key);
    }

    /// Switch Bluetooth on or off (off drops every link).
    pub fn set_state(&self, state: BluetoothState) {
        let off = state != BluetoothState::Available;
        *lock(&self.state) = state;
        if off {
            for k in lock(&self.keys).values() {
                k.drop_link();
            }
        }
    }

    /// How many scans ran (the transport must not scan by itself unless asked).
    pub fn scans(&self) -> usize {
        *lock(&self.scans)
    }

    /// How many times the state was asked for.
    pub fn state_checks(&self) -> usize {
        lock(&self.checks).0
    }

    /// Make state checks hang until released (a Bluetooth stack that does not answer).
    pub fn hold_state_checks(&self, hold: bool) {
        lock(&self.checks).1 = hold;
        self.released.notify_all();
    }

    fn available(&self) -> Result<()> {
        match &*lock(&self.state) {
            BluetoothState::Available => Ok(()),
            BluetoothState::Unavailable { reason } => Err(BleError::Unavailable(reason.clone())),
        }
    }
}

impl BleCentral for VirtualCentral {
    fn state(&self) -> BluetoothState {
        let mut c = lock(&self.checks);
        c.0 += 1;
        while c.1 {
            c = self.released.wait(c).unwrap_or_else(|e| e.into_inner());
        }
        drop(c);
        lock(&self.state).clone()
    }

    fn scan(&self, _window: Duration) -> Result<Vec<Advertisement>> {
        self.available()?;
        *lock(&self.scans) += 1;
        Ok(lock(&self.keys)
            .values()
            .filter_map(|k| {
                let s = lock(&k.state);
                let mut ad = s.ad.clone();
                ad.connected = s.link.as_ref().is_some_and(|l| l.up());
                // As BlueZ's filtered scan: ours, or a service the registry knows.
                ad.needs = crate::link::needs_of(&s.services)?;
                s.in_range.then_some(ad)
            })
            .collect())
    }

    fn connect(&self, address: &str, on_lost: OnLost) -> Result<Box<dyn BleLink>> {
        self.available()?;
        let key = lock(&self.keys).get(&address.to_uppercase()).cloned().ok_or_else(|| BleError::UnknownKey(address.into()))?;
        let mut s = lock(&key.state);
        if !s.in_range {
            return Err(BleError::UnknownKey(address.into()));
        }
        let size = frame::parse_control_point_length(&s.control_point_length)?;
        let shared = Arc::new(LinkShared {
            state: Mutex::new(LinkState { queue: VecDeque::new(), up: true }),
            changed: Condvar::new(),
            on_lost,
        });
        s.link = Some(Arc::clone(&shared));
        drop(s);
        Ok(Box::new(VirtualLink { key: key.clone(), shared, size, incoming: Reassembler::new(size, frame::MAX_MESSAGE)? }))
    }

    fn disconnect_device(&self, address: &str) -> Result<()> {
        self.available()?;
        let key = lock(&self.keys).get(&address.to_uppercase()).cloned().ok_or_else(|| BleError::UnknownKey(address.into()))?;
        let link = lock(&key.state).link.take();
        if let Some(l) = link {
            lock(&l.state).up = false;
            l.changed.notify_all();
        }
        Ok(())
    }

    fn shutdown(&self) {
        for k in lock(&self.keys).values() {
            let link = lock(&k.state).link.take();
            if let Some(l) = link {
                lock(&l.state).up = false;
                l.changed.notify_all();
            }
        }
    }
}

struct LinkState {
    queue: VecDeque<Zeroizing<Vec<u8>>>,
    up: bool,
}

struct LinkShared {
    state: Mutex<LinkState>,
    changed: Condvar,
    on_lost: OnLost,
}

impl LinkShared {
    fn up(&self) -> bool {
        lock(&self.state).up
    }

    /// The radio dropped: the host hears of it through `on_lost` and failing calls.
    fn lose(&self) {
        let was_up = std::mem::replace(&mut lock(&self.state).up, false);
        self.changed.notify_all();
        if was_up {
            (self.on_lost)();
        }
    }

    fn notify(&self, fragments: impl IntoIterator<Item = Zeroizing<Vec<u8>>>) {
        lock(&self.state).queue.extend(fragments);
        self.changed.notify_all();
    }
}

struct VirtualLink {
    key: VirtualKey,
    shared: Arc<LinkShared>,
    size: usize,
    /// The key side's reassembler for host fragments.
    incoming: Reassembler,
}

impl VirtualLink {
    /// The key's side: a whole request arrived.
    fn on_request(&mut self, cmd: FrameCommand, data: &[u8]) {
        let mut s = lock(&self.key.state);
        let answer: Vec<Vec<u8>> = match cmd {
            FrameCommand::Cancel => return,
            FrameCommand::Ping => frag(FrameCommand::Ping, data, self.size),
            FrameCommand::Msg => {
                if s.faults.drop_link_on.as_ref().is_some_and(|p| p(data)) {
                    s.link = None;
                    drop(s);
                    self.shared.lose();
                    return;
                }
                if s.faults.silent {
                    return;
                }
                if let Some(raw) = s.faults.raw_answers.pop_front() {
                    raw
                } else {
                    let mut out = Vec::new();
                    for _ in 0..s.faults.keepalives {
                        out.extend(frag(FrameCommand::KeepAlive, &[frame::KEEPALIVE_PROCESSING], self.size));
                    }
                    let resp = (s.handler)(data);
                    out.extend(frag(FrameCommand::Msg, &resp, self.size));
                    out
                }
            }
            // A host sends no KEEPALIVE or ERROR: answer "invalid command".
            FrameCommand::KeepAlive | FrameCommand::Error => frag(FrameCommand::Error, &[0x01], self.size),
        };
        drop(s);
        self.shared.notify(answer.into_iter().map(Zeroizing::new));
    }
}

fn frag(cmd: FrameCommand, data: &[u8], size: usize) -> Vec<Vec<u8>> {
    frame::fragment(cmd, data, size).map(|v| v.into_iter().map(|f| f.to_vec()).collect()).unwrap_or_default()
}

impl BleLink for VirtualLink {
    fn control_point_length(&self) -> usize {
        self.size
    }

    fn write(&mut self, fragment: &[u8]) -> Result<()> {
        if !self.shared.up() {
            return Err(BleError::Lost);
        }
        match self.incoming.push(fragment) {
            Ok(Some(f)) => self.on_request(f.command, &f.data),
            Ok(None) => {}
            Err(e) => {
                let code = match e {
                    frame::FrameError::WrongSequence { .. } => 0x04,
                    frame::FrameError::Overlong { .. } | frame::FrameError::TooLarge { .. } => 0x03,
                    _ => 0x01,
                };
                self.shared.notify(frag(FrameCommand::Error, &[code], self.size).into_iter().map(Zeroizing::new));
            }
        }
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> Result<Zeroizing<Vec<u8>>> {
        let mut s = lock(&self.shared.state);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(f) = s.queue.pop_front() {
                return Ok(f);
            }
            if !s.up {
                return Err(BleError::Lost);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(BleError::Timeout);
            }
            s = self.shared.changed.wait_timeout(s, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn is_up(&self) -> bool {
        self.shared.up()
    }

    fn close(&mut self) {
        lock(&self.shared.state).up = false;
        self.shared.changed.notify_all();
        let mut s = lock(&self.key.state);
        if s.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, &self.shared)) {
            s.link = None;
        }
    }
}
