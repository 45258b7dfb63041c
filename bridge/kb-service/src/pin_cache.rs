//! The PIN cache: after the medium accepted a PIN, it is remembered for that device for
//! a while (off / 1 / 5 / 10 / 30 / 60 minutes; 30 by default, as NETCA's client does),
//! so a batch of signatures does not ask for it every time.
//!
//! Rules:
//! - Only the device manager inserts, and only after the medium accepted the PIN
//!   (a wrong PIN is never cached).
//! - A cached PIN the medium rejects (changed elsewhere) is evicted and the user asked.
//! - Entries expire after the policy's time, counted from when the PIN was entered;
//!   a new policy applies to PINs entered from then on. Turning the cache off forgets
//!   every PIN at once.
//! - A remembered PIN serves only the client that caused it to be typed (`cli`, the
//!   desktop, one web origin, one native tool): a PIN typed for the user's own bid tool
//!   does not let a web site sign silently. [`PinCache::set_shared`] widens that to every
//!   client (a setting, off by default).
//! - PINs are [`Pin`]s: zeroized when evicted, expired, cleared or dropped, and never
//!   printed (this type's `Debug` shows only device ids).
//! - Time comes from a [`Clock`], so tests move time without sleeping.

use kb_types::{DeviceId, Pin};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A monotonic clock. `now` is the time since an arbitrary start.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Duration;
}

/// The real monotonic clock.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// Starting now.
    pub fn new() -> Self {
        Self { start: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A clock that only moves when told to (tests; behind the `test-support` feature).
#[derive(Debug, Default)]
#[cfg(any(test, feature = "test-support"))]
pub struct FakeClock {
    now: Mutex<Duration>,
}

#[cfg(any(test, feature = "test-support"))]
impl FakeClock {
    /// At time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Move time forward.
    pub fn advance(&self, by: Duration) {
        let mut n = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_add(by);
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Clock for FakeClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long a PIN is remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PinCachePolicy {
    /// Never remember: every private-key operation asks.
    Off,
    /// Remember for this many minutes (one of [`PinCachePolicy::CHOICES`]).
    Minutes(u8),
}

impl Default for PinCachePolicy {
    fn default() -> Self {
        PinCachePolicy::Minutes(30)
    }
}

impl PinCachePolicy {
    /// The minute values offered to the user.
    pub const CHOICES: [u8; 5] = [1, 5, 10, 30, 60];

    /// From minutes as stored in settings: 0 = off, else one of [`Self::CHOICES`].
    pub fn from_minutes(minutes: u32) -> Option<Self> {
        if minutes == 0 {
            return Some(PinCachePolicy::Off);
        }
        let m = u8::try_from(minutes).ok()?;
        Self::CHOICES.contains(&m).then_some(PinCachePolicy::Minutes(m))
    }

    /// Minutes (0 = off).
    pub fn minutes(self) -> u32 {
        match self {
            PinCachePolicy::Off => 0,
            PinCachePolicy::Minutes(m) => u32::from(m),
        }
    }

    /// How long an entry lives, or `None` when off.
    pub fn duration(self) -> Option<Duration> {
        match self {
            PinCachePolicy::Off | PinCachePolicy::Minutes(0) => None,
            PinCachePolicy::Minutes(m) => Some(Duration::from_secs(u64::from(m) * 60)),
        }
    }
}

/// Stored as the number of minutes, 0 for off.
impl Serialize for PinCachePolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u32(self.minutes())
    }
}

impl<'de> Deserialize<'de> for PinCachePolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let m = u32::deserialize(d)?;
        PinCachePolicy::from_minutes(m)
            .ok_or_else(|| serde::de::Error::custom(format!("PIN cache minutes must be 0, 1, 5, 10, 30 or 60, not {m}")))
    }
}

struct Entry {
    pin: Pin,
    expires_at: Duration,
}

struct State {
    policy: PinCachePolicy,
    shared: bool,
    entries: HashMap<(DeviceId, String), Entry>,
}

/// Entries are kept per (device, client); with sharing on, under one key for everyone.
const SHARED_SCOPE: &str = "";

/// Per-device PIN cache. Shared by the device actors; all methods take `&self`.
pub struct PinCache {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for PinCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("PinCache")
            .field("policy", &s.policy)
            .field("shared", &s.shared)
            .field("entries", &s.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PinCache {
    /// With the real clock.
    pub fn new(policy: PinCachePolicy) -> Self {
        Self::with_clock(policy, Arc::new(SystemClock::new()))
    }

    /// With an injected clock (tests).
    pub fn with_clock(policy: PinCachePolicy, clock: Arc<dyn Clock>) -> Self {
        Self { clock, state: Mutex::new(State { policy, shared: false, entries: HashMap::new() }) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current policy.
    pub fn policy(&self) -> PinCachePolicy {
        self.lock().policy
    }

    /// Change the policy. PINs entered from now on follow it; [`PinCachePolicy::Off`]
    /// also forgets every remembered PIN now.
    pub fn set_policy(&self, policy: PinCachePolicy) {
        let mut s = self.lock();
        s.policy = policy;
        if policy.duration().is_none() {
            s.entries.clear();
        }
    }

    /// Share remembered PINs between every client (`true`), or keep each PIN for the
    /// client that caused it to be typed (`false`, the default). Changing it forgets every
    /// remembered PIN.
    pub fn set_shared(&self, shared: bool) {
        let mut s = self.lock();
        if s.shared != shared {
            s.shared = shared;
            s.entries.clear();
        }
    }

    /// Whether remembered PINs are shared between clients.
    pub fn is_shared(&self) -> bool {
        self.lock().shared
    }

    fn key(s: &State, device: &DeviceId, client: &str) -> (DeviceId, String) {
        (device.clone(), if s.shared { SHARED_SCOPE.to_string() } else { client.to_string() })
    }

    /// The PIN remembered for a device and this client, if there is one and it has not
    /// expired (expired entries are dropped here).
    pub fn get(&self, device: &DeviceId, client: &str) -> Option<Pin> {
        let now = self.clock.now();
        let mut s = self.lock();
        let key = Self::key(&s, device, client);
        match s.entries.get(&key) {
            Some(e) if now < e.expires_at => Some(e.pin.clone()),
            Some(_) => {
                s.entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remember a PIN the medium has just accepted, for this client (no-op when the cache
    /// is off).
    pub fn insert(&self, device: &DeviceId, client: &str, pin: Pin) {
        let now = self.clock.now();
        let mut s = self.lock();
        let key = Self::key(&s, device, client);
        match s.policy.duration() {
            Some(d) => {
                s.entries.insert(key, Entry { pin, expires_at: now.saturating_add(d) });
            }
            None => {
                s.entries.remove(&key);
            }
        }
    }

    /// Forget one device's PINs, for every client (rejected, changed, or the device went
    /// away).
    pub fn clear_device(&self, device: &DeviceId) {
        self.lock().entries.retain(|(d, _), _| d != device);
    }

    /// Forget every PIN (on exit, on the user's request).
    pub fn clear(&self) {
        self.lock().entries.clear();
    }

    /// How many (device, client) entries hold a live PIN.
    pub fn len(&self) -> usize {
        let now = self.clock.now();
        let mut s = self.lock();
        s.entries.retain(|_, e| now < e.expires_at);
        s.entries.len()
    }

    /// No PIN is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        DeviceId(s.to_string())
    }

    #[test]
    fn expiry_follows_the_clock() {
        let clock = Arc::new(FakeClock::new());
        let c = PinCache::with_clock(PinCachePolicy::Minutes(5), clock.clone());
        c.insert(&dev("a"), "cli", Pin::new("123456"));
        clock.advance(Duration::from_secs(299));
        assert!(c.get(&dev("a"), "cli").is_some());
        clock.advance(Duration::from_secs(1));
        assert!(c.get(&dev("a"), "cli").is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn policy_changes() {
        let clock = Arc::new(FakeClock::new());
        let c = PinCache::with_clock(PinCachePolicy::default(), clock.clone());
        assert_eq!(c.policy(), PinCachePolicy::Minutes(30));
        c.insert(&dev("a"), "cli", Pin::new("123456"));
        // Shorter policy: the entry keeps its time; new entries get the new one.
        c.set_policy(PinCachePolicy::Minutes(1));
        c.insert(&dev("b"), "cli", Pin::new("654321"));
        clock.advance(Duration::from_secs(61));
        assert!(c.get(&dev("a"), "cli").is_some());
        assert!(c.get(&dev("b"), "cli").is_none());
        c.set_policy(PinCachePolicy::Off);
        assert!(c.get(&dev("a"), "cli").is_none());
        c.insert(&dev("a"), "cli", Pin::new("123456"));
        assert_eq!(c.len(), 0);
        c.set_policy(PinCachePolicy::Minutes(10));
        c.insert(&dev("a"), "cli", Pin::new("123456"));
        c.insert(&dev("b"), "cli", Pin::new("123456"));
        c.clear_device(&dev("a"));
        assert_eq!(c.len(), 1);
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn minutes_and_serde() {
        assert_eq!(PinCachePolicy::from_minutes(0), Some(PinCachePolicy::Off));
        assert_eq!(PinCachePolicy::from_minutes(60), Some(PinCachePolicy::Minutes(60)));
        assert_eq!(PinCachePolicy::from_minutes(7), None);
        assert_eq!(PinCachePolicy::from_minutes(300), None);
        assert_eq!(serde_json::to_string(&PinCachePolicy::Minutes(10)).unwrap(), "10");
        assert_eq!(serde_json::from_str::<PinCachePolicy>("0").unwrap(), PinCachePolicy::Off);
        assert!(serde_json::from_str::<PinCachePolicy>("7").is_err());
    }

    #[test]
    fn pins_serve_the_client_that_typed_them() {
        let c = PinCache::new(PinCachePolicy::default());
        c.insert(&dev("a"), "native:bidtool", Pin::new("123456"));
        assert!(c.get(&dev("a"), "native:bidtool").is_some());
        assert!(c.get(&dev("a"), "https://bid.example.cn").is_none(), "a web site must not use the bid tool's PIN");
        c.insert(&dev("a"), "https://bid.example.cn", Pin::new("123456"));
        assert_eq!(c.len(), 2);
        c.clear_device(&dev("a"));
        assert!(c.is_empty());
        // Sharing on (a setting): one PIN serves everyone; switching forgets.
        c.insert(&dev("a"), "cli", Pin::new("123456"));
        c.set_shared(true);
        assert!(c.is_empty());
        c.insert(&dev("a"), "cli", Pin::new("123456"));
        assert!(c.get(&dev("a"), "https://bid.example.cn").is_some());
        assert!(c.is_shared());
    }

    #[test]
    fn debug_shows_no_pin() {
        let c = PinCache::new(PinCachePolicy::default());
        c.insert(&dev("a"), "cli", Pin::new("PIN-MARKER-7f3a"));
        assert!(!format!("{c:?}").contains("PIN-MARKER"));
    }
}
