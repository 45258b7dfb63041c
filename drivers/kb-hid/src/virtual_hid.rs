//! [`VirtualHid`]: an in-process HID stack for tests. Devices are plugged in and pulled
//! out by the test; each answers the reports written to it from a script.

use crate::backend::{HidBackend, HidConnection, HidDeviceInfo, HidError};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// An in-process HID stack. Clones share the same devices, so a test keeps one clone to
/// plug and pull devices while the transport holds another.
#[derive(Clone, Default)]
pub struct VirtualHid {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when input reports are queued or a device goes away.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    devices: BTreeMap<String, Device>,
    /// Bumped on every plug, so a connection to a pulled device never reaches its successor.
    next_generation: u64,
    enumerate_error: Option<String>,
    enumerations: u64,
}

struct Device {
    info: HidDeviceInfo,
    generation: u64,
    denied: bool,
    /// Expected output report → the input reports it is answered with, in order.
    script: VecDeque<(Vec<u8>, Vec<Vec<u8>>)>,
    input: VecDeque<Vec<u8>>,
    written: Vec<Vec<u8>>,
}

impl std::fmt::Debug for VirtualHid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("VirtualHid").field("devices", &s.devices.keys().collect::<Vec<_>>()).finish()
    }
}

impl VirtualHid {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Plug in a device (replacing one at the same path).
    pub fn plug(&self, info: HidDeviceInfo) {
        let mut s = self.lock();
        s.next_generation += 1;
        let generation = s.next_generation;
        let device = Device {
            info: info.clone(),
            generation,
            denied: false,
            script: VecDeque::new(),
            input: VecDeque::new(),
            written: Vec::new(),
        };
        s.devices.insert(info.path, device);
        drop(s);
        self.shared.changed.notify_all();
    }

    /// Pull out the device at `path`; its open connections fail with `Disconnected`.
    pub fn pull(&self, path: &str) -> bool {
        let gone = self.lock().devices.remove(path).is_some();
        self.shared.changed.notify_all();
        gone
    }

    /// Make opening `path` fail as it does without the udev rules.
    pub fn deny_access(&self, path: &str) {
        if let Some(d) = self.lock().devices.get_mut(path) {
            d.denied = true;
        }
    }

    /// Answer the output report `expect` with the input reports `replies`. Steps are used
    /// in order; a write that differs from the next step fails with [`HidError::Io`].
    pub fn script(&self, path: &str, expect: &[u8], replies: &[&[u8]]) {
        if let Some(d) = self.lock().devices.get_mut(path) {
            d.script.push_back((expect.to_vec(), replies.iter().map(|r| r.to_vec()).collect()));
        }
    }

    /// Every output report written to `path` since it was plugged in.
    pub fn written(&self, path: &str) -> Vec<Vec<u8>> {
        self.lock().devices.get(path).map(|d| d.written.clone()).unwrap_or_default()
    }

    /// Make enumeration fail with `message` (`None`: work again).
    pub fn fail_enumeration(&self, message: Option<&str>) {
        self.lock().enumerate_error = message.map(str::to_owned);
    }

    /// How many times the stack was enumerated (to see a transport polling).
    pub fn enumerations(&self) -> u64 {
        self.lock().enumerations
    }
}

impl HidBackend for VirtualHid {
    fn enumerate(&self) -> Result<Vec<HidDeviceInfo>, HidError> {
        let mut s = self.lock();
        s.enumerations += 1;
        if let Some(e) = &s.enumerate_error {
            return Err(HidError::Io(e.clone()));
        }
        Ok(s.devices.values().map(|d| d.info.clone()).collect())
    }

    fn open(&self, path: &str) -> Result<Box<dyn HidConnection>, HidError> {
        let s = self.lock();
        let d = s.devices.get(path).ok_or_else(|| HidError::NotFound(path.to_owned()))?;
        if d.denied {
            return Err(HidError::AccessDenied(path.to_owned()));
        }
        Ok(Box::new(VirtualConnection { shared: Arc::clone(&self.shared), path: path.to_owned(), generation: d.generation }))
    }
}

struct VirtualConnection {
    shared: Arc<Shared>,
    path: String,
    generation: u64,
}

impl VirtualConnection {
    /// The device this connection was opened on, if it is still plugged in.
    fn device<'a>(&self, s: &'a mut State) -> Result<&'a mut Device, HidError> {
        s.devices.get_mut(&self.path).filter(|d| d.generation == self.generation).ok_or(HidError::Disconnected)
    }
}

impl HidConnection for VirtualConnection {
    fn write_report(&mut self, report: &[u8]) -> Result<(), HidError> {
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let d = self.device(&mut s)?;
        d.written.push(report.to_vec());
        match d.script.pop_front() {
            Some((expect, replies)) if expect == report => d.input.extend(replies),
            Some(_) => return Err(HidError::Io("the virtual device did not expect this report".into())),
            None => {}
        }
        drop(s);
        self.shared.changed.notify_all();
        Ok(())
    }

    fn read_report(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, HidError> {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(report) = self.device(&mut s)?.input.pop_front() {
                let n = report.len().min(buf.len());
                buf[..n].copy_from_slice(&report[..n]);
                return Ok(n);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HidError::Timeout(timeout));
            }
            s = self.shared.changed.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}
