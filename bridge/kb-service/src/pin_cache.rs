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

/// A clock that only moves when told to (tests).
#[derive(Debug, Default)]
pub struct FakeClock {
    now: Mutex<Duration>,
}

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
    entries: HashMap<DeviceId, Entry>,
}

/// Per-device PIN cache. Shared by the device actors; all methods take `&self`.
pub struct PinCache {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for PinCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("PinCache").field("policy", &s.policy).field("devices", &s.entries.keys().collect::<Vec<_>>()).finish()
    }
}

impl PinCache {
    /// With the real clock.
    pub fn new(policy: PinCachePolicy) -> Self {
        Self::with_clock(policy, Arc::new(SystemClock::new()))
    }

    /// With an injected clock (tests).
    pub fn with_clock(policy: PinCachePolicy, clock: Arc<dyn Clock>) -> Self {
        Self { clock, state: Mutex::new(State { policy, entries: HashMap::new() }) }
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

    /// The remembered PIN for a device, if there is one and it has not expired
    /// (expired entries are dropped here).
    pub fn get(&self, device: &DeviceId) -> Option<Pin> {
        let now = self.clock.now();
        let mut s = self.lock();
        match s.entries.get(device) {
            Some(e) if now < e.expires_at => Some(e.pin.clone()),
            Some(_) => {
                s.entries.remove(device);
                None
            }
            None => None,
        }
    }

    /// Remember a PIN the medium has just accepted (no-op when the cache is off).
    pub fn insert(&self, device: &DeviceId, pin: Pin) {
        let now = self.clock.now();
        let mut s = self.lock();
        match s.policy.duration() {
            Some(d) => {
                s.entries.insert(device.clone(), Entry { pin, expires_at: now.saturating_add(d) });
            }
            None => {
                s.entries.remove(device);
            }
        }
    }

    /// Forget one device's PIN (rejected, changed, or the device went away).
    pub fn clear_device(&self, device: &DeviceId) {
        self.lock().entries.remove(device);
    }

    /// Forget every PIN (on exit, on the user's request).
    pub fn clear(&self) {
        self.lock().entries.clear();
    }

    /// How many devices have a live PIN remembered.
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
        c.insert(&dev("a"), Pin::new("123456"));
        clock.advance(Duration::from_secs(299));
        assert!(c.get(&dev("a")).is_some());
        clock.advance(Duration::from_secs(1));
        assert!(c.get(&dev("a")).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn policy_changes() {
        let clock = Arc::new(FakeClock::new());
        let c = PinCache::with_clock(PinCachePolicy::default(), clock.clone());
        assert_eq!(c.policy(), PinCachePolicy::Minutes(30));
        c.insert(&dev("a"), Pin::new("123456"));
        // Shorter policy: the entry keeps its time; new entries get the new one.
        c.set_policy(PinCachePolicy::Minutes(1));
        c.insert(&dev("b"), Pin::new("654321"));
        clock.advance(Duration::from_secs(61));
        assert!(c.get(&dev("a")).is_some());
        assert!(c.get(&dev("b")).is_none());
        c.set_policy(PinCachePolicy::Off);
        assert!(c.get(&dev("a")).is_none());
        c.insert(&dev("a"), Pin::new("123456"));
        assert_eq!(c.len(), 0);
        c.set_policy(PinCachePolicy::Minutes(10));
        c.insert(&dev("a"), Pin::new("123456"));
        c.insert(&dev("b"), Pin::new("123456"));
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
    fn debug_shows_no_pin() {
        let c = PinCache::new(PinCachePolicy::default());
        c.insert(&dev("a"), Pin::new("PIN-MARKER-7f3a"));
        assert!(!format!("{c:?}").contains("PIN-MARKER"));
    }
}
