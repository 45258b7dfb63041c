//! [`PcscTransport`]: readers and cards coming and going, seen through
//! `SCardGetStatusChange` with the `\\?PnP?\Notification` pseudo-reader.

use crate::backend::{LostCards, PcscCard, map_error};
use crate::registry::{AtrDisplay, Registry, Served};
use kb_apdu::ApduError;
use kb_openpgp::OpenPgpCard;
use kb_token::{Result, Token, TokenError, Transport, TransportEvent};
use kb_types::{DeviceId, TransportKind};
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How long one `SCardGetStatusChange` waits: the watcher checks between waits whether
/// the transport is still wanted.
pub const STATUS_WAIT: Duration = Duration::from_millis(250);
/// First retry delay after the PC/SC service went away; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest retry delay while the PC/SC service is away.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Further attempts to identify a freshly inserted card after a transport failure.
const IDENTIFY_RETRIES: usize = 3;
const IDENTIFY_RETRY_DELAY: Duration = Duration::from_millis(150);

/// Smart cards and USB keys through PC/SC (pcsc-lite on Linux/macOS, WinSCard on
/// Windows).
///
/// `watch` reports every card it can serve as `Added` (readers present at start first,
/// then `EnumerationComplete`), cards and readers as they come and go, and a card it
/// cannot serve as one `Error` saying what it is and what it needs (from the
/// [`Registry`]). Without a PC/SC service it reports `EnumerationComplete` at once and
/// keeps retrying in the background; when the service stops, every card is reported
/// `Removed` and the watcher re-establishes its context when the service is back. A card
/// that a token opened here finds gone is looked at again even if pcscd reports no change
/// (pcscd polls; a card swapped between two polls never shows the reader empty): the old
/// card is reported `Removed` and the one now in the reader, if any, `Added`.
#[derive(Debug)]
pub struct PcscTransport {
    registry: Arc<Registry>,
    registry_error: Option<String>,
    /// Device id → reader, for `open`.
    readers: Arc<Mutex<BTreeMap<DeviceId, CString>>>,
    /// Readers whose card a token opened here found gone: the watchers look again.
    lost: Arc<LostCards>,
    /// Watch threads hold a `Weak` to this and stop once the transport is dropped.
    alive: Arc<()>,
}

impl Default for PcscTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl PcscTransport {
    /// The transport with the built-in registry.
    pub fn new() -> Self {
        let (registry, registry_error) = Registry::builtin_or_empty();
        Self::with_registry_inner(registry, registry_error.map(|e| e.to_string()))
    }

    /// The transport with another registry.
    pub fn with_registry(registry: Registry) -> Self {
        Self::with_registry_inner(registry, None)
    }

    fn with_registry_inner(registry: Registry, registry_error: Option<String>) -> Self {
        PcscTransport {
            registry: Arc::new(registry),
            registry_error,
            readers: Arc::default(),
            lost: Arc::default(),
            alive: Arc::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<DeviceId, CString>> {
        self.readers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn establish() -> std::result::Result<pcsc::Context, pcsc::Error> {
    pcsc::Context::establish(pcsc::Scope::User)
}

impl Transport for PcscTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Pcsc
    }

    fn watch(&self) -> Result<Receiver<TransportEvent>> {
        let (tx, rx) = channel();
        if let Some(e) = &self.registry_error {
            let _ = tx.send(TransportEvent::Error(e.clone()));
        }
        let w = Watcher {
            registry: Arc::clone(&self.registry),
            readers: Arc::clone(&self.readers),
            lost: Arc::clone(&self.lost),
            lost_seen: BTreeMap::new(),
            alive: Arc::downgrade(&self.alive),
            tx,
            slots: BTreeMap::new(),
            enumerated: false,
        };
        std::thread::Builder::new()
            .name("kb-pcsc-watch".into())
            .spawn(move || w.run())
            .map_err(|e| TokenError::Io(e.to_string()))?;
        Ok(rx)
    }

    fn open(&self, id: &DeviceId) -> Result<Box<dyn Token>> {
        let unknown = || TokenError::UnknownDevice(id.to_string());
        let reader = self.lock().get(id).cloned().ok_or_else(unknown)?;
        let ctx = establish().map_err(|e| TokenError::from(map_error(e)))?;
        let backend = PcscCard::connect_reporting(ctx, &reader, Some(Arc::clone(&self.lost)))?;
        let card = OpenPgpCard::open(backend, TransportKind::Pcsc)?;
        // Another card may have been inserted since the watcher saw this one.
        if card.info().id != *id {
            return Err(unknown());
        }
        Ok(Box::new(card))
    }
}

/// What the watcher knows about one reader.
struct Slot {
    /// pcsc-lite's event counter (upper 16 bits of the event state) at the last look.
    events: u32,
    /// A card was there.
    present: bool,
    /// The device it was reported as, if KeyBridge serves it.
    id: Option<DeviceId>,
    /// A token found this card gone although pcscd reported no change: look again.
    lost: bool,
    /// pcscd says a card is present but it could not be reached (the one found gone, or
    /// its successor not yet connected): looked at again after each quiet wait, since
    /// pcscd may report no change when the swap happened between two of its polls.
    settling: bool,
}

/// Why a watch session with one context ended.
enum End {
    /// The transport or the receiver is gone.
    Stop,
    /// The PC/SC service went away (or the context broke).
    Lost,
}

struct Watcher {
    registry: Arc<Registry>,
    readers: Arc<Mutex<BTreeMap<DeviceId, CString>>>,
    lost: Arc<LostCards>,
    /// The counts of `lost` this watcher has acted on.
    lost_seen: BTreeMap<CString, u64>,
    alive: Weak<()>,
    tx: Sender<TransportEvent>,
    slots: BTreeMap<CString, Slot>,
    enumerated: bool,
}

fn is_dead(rs: &pcsc::ReaderState) -> bool {
    rs.event_state().intersects(pcsc::State::UNKNOWN | pcsc::State::IGNORE)
}

impl Watcher {
    fn send(&self, e: TransportEvent) -> std::result::Result<(), End> {
        self.tx.send(e).map_err(|_| End::Stop)
    }

    fn complete_enumeration(&mut self) -> std::result::Result<(), End> {
        if !self.enumerated {
            self.enumerated = true;
            self.send(TransportEvent::EnumerationComplete)?;
        }
        Ok(())
    }

    fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        let mut down_logged = false;
        loop {
            if self.alive.upgrade().is_none() {
                return;
            }
            let outcome = match establish() {
                Ok(ctx) => {
                    backoff = MIN_BACKOFF;
                    down_logged = false;
                    tracing::debug!("PC/SC context established");
                    self.session(&ctx)
                }
                Err(e) => {
                    if !down_logged {
                        down_logged = true;
                        tracing::info!("PC/SC service not available ({e}); retrying in the background");
                    }
                    // No service is "no readers": enumeration is complete.
                    self.complete_enumeration()
                        .and_then(|()| self.sleep(backoff))
                        .map(|()| backoff = (backoff * 2).min(MAX_BACKOFF))
                        .and(Err(End::Lost))
                }
            };
            match outcome {
                Err(End::Stop) | Ok(()) => return,
                Err(End::Lost) => {
                    if self.forget_all().is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Sleep in short steps so a dropped transport ends the thread promptly.
    fn sleep(&self, d: Duration) -> std::result::Result<(), End> {
        let mut slept = Duration::ZERO;
        while slept < d {
            let step = Duration::from_millis(50).min(d - slept);
            std::thread::sleep(step);
            slept += step;
            if self.alive.upgrade().is_none() {
                return Err(End::Stop);
            }
        }
        Ok(())
    }

    /// Every reader and card is gone (the service stopped).
    fn forget_all(&mut self) -> std::result::Result<(), End> {
        let slots = std::mem::take(&mut self.slots);
        for (_, slot) in slots {
            self.card_gone(slot.id)?;
        }
        Ok(())
    }

    fn card_gone(&mut self, id: Option<DeviceId>) -> std::result::Result<(), End> {
        if let Some(id) = id {
            self.readers.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            self.send(TransportEvent::Removed(id))?;
        }
        Ok(())
    }

    /// Watch with one context until it breaks. `Ok` never: the loop ends by `Err`.
    fn session(&mut self, ctx: &pcsc::Context) -> std::result::Result<(), End> {
        let mut states = vec![pcsc::ReaderState::new(pcsc::PNP_NOTIFICATION(), pcsc::State::UNAWARE)];
        loop {
            if self.alive.upgrade().is_none() {
                return Err(End::Stop);
            }
            // Readers that went away, then readers that arrived.
            let mut gone = Vec::new();
            states.retain(|rs| {
                let dead = rs.name() != pcsc::PNP_NOTIFICATION() && is_dead(rs);
                if dead {
                    gone.push(rs.name().to_owned());
                }
                !dead
            });
            let names = match ctx.list_readers_owned() {
                Ok(n) => n,
                Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
                Err(e) => {
                    tracing::info!("PC/SC: listing readers failed: {e}");
                    return Err(End::Lost);
                }
            };
            states.retain(|rs| {
                let keep = rs.name() == pcsc::PNP_NOTIFICATION() || names.iter().any(|n| n.as_c_str() == rs.name());
                if !keep {
                    gone.push(rs.name().to_owned());
                }
                keep
            });
            for name in gone {
                if let Some(slot) = self.slots.remove(&name) {
                    self.card_gone(slot.id)?;
                }
            }
            for n in &names {
                if !states.iter().any(|rs| rs.name() == n.as_c_str()) {
                    states.push(pcsc::ReaderState::new(n.clone(), pcsc::State::UNAWARE));
                }
            }
            // Readers whose card a token found gone are looked at afresh (UNAWARE), their
            // card re-identified even when pcscd saw no change.
            for name in self.newly_lost() {
                if let Some(rs) = states.iter_mut().find(|rs| rs.name() == name.as_c_str()) {
                    *rs = pcsc::ReaderState::new(name.clone(), pcsc::State::UNAWARE);
                }
                if let Some(slot) = self.slots.get_mut(&name) {
                    slot.lost = true;
                }
            }
            for rs in &mut states {
                rs.sync_current_state();
            }
            // Readers new to this loop are UNAWARE, so this returns at once for them.
            match ctx.get_status_change(STATUS_WAIT, &mut states) {
                Ok(()) => {}
                Err(pcsc::Error::Timeout) => {
                    for (name, _) in self.slots.iter().filter(|(_, s)| s.settling) {
                        if let Some(rs) = states.iter_mut().find(|rs| rs.name() == name.as_c_str()) {
                            *rs = pcsc::ReaderState::new(name.clone(), pcsc::State::UNAWARE);
                        }
                    }
                    self.complete_enumeration()?;
                    continue;
                }
                Err(pcsc::Error::UnknownReader) => continue,
                Err(e) => {
                    tracing::info!("PC/SC: waiting for changes failed: {e}");
                    return Err(End::Lost);
                }
            }
            for rs in &states {
                if rs.name() != pcsc::PNP_NOTIFICATION() && !is_dead(rs) {
                    self.reader_changed(ctx, rs)?;
                }
            }
            self.complete_enumeration()?;
        }
    }

    /// Readers that lost their card (per [`LostCards`]) since this watcher last looked.
    fn newly_lost(&mut self) -> Vec<CString> {
        let mut out = Vec::new();
        for (reader, count) in self.lost.counts() {
            if self.lost_seen.insert(reader.clone(), count) != Some(count) {
                out.push(reader);
            }
        }
        out
    }

    /// Look at one reader's new state: card inserted, removed, or replaced.
    fn reader_changed(&mut self, ctx: &pcsc::Context, rs: &pcsc::ReaderState) -> std::result::Result<(), End> {
        let st = rs.event_state();
        let present = st.contains(pcsc::State::PRESENT) && !st.contains(pcsc::State::MUTE);
        let events = rs.event_count();
        let name = rs.name().to_owned();
        let (was_present, old_events, lost) = self
            .slots
            .get(&name)
            .map_or((false, u32::MAX, false), |s| (s.present, s.events, (s.lost && s.id.is_some()) || s.settling));
        tracing::debug!(reader = ?name, state = ?st, events, was_present, old_events, lost, "PC/SC reader state");
        if !lost && was_present == present && (old_events == events || !present) {
            return Ok(());
        }
        // Removed, or replaced between two looks: the old card is gone.
        if was_present {
            let old = self.slots.get_mut(&name).and_then(|s| s.id.take());
            self.card_gone(old)?;
        }
        let (id, settling) = if present {
            match self.identify(ctx, &name, rs.atr())? {
                Identified::Served(id) => (Some(id), false),
                Identified::NotServed => (None, false),
                Identified::Unreachable => (None, true),
            }
        } else {
            (None, false)
        };
        self.slots.insert(name, Slot { events, present, id, lost: false, settling });
        Ok(())
    }

    /// A card appeared: open it if KeyBridge serves it, else say what it is.
    fn identify(&mut self, ctx: &pcsc::Context, reader: &CStr, atr: &[u8]) -> std::result::Result<Identified, End> {
        let reader_name = reader.to_string_lossy().into_owned();
        let entry = self.registry.match_atr(atr);
        if let Some(e) = entry
            && let Served::Needs(needs) = &e.served
        {
            self.send(TransportEvent::Error(format!(
                "reader \"{reader_name}\": {} {} card present, needs {needs}",
                e.vendor, e.name
            )))?;
            return Ok(Identified::NotServed);
        }
        // Known OpenPGP cards, and unknown cards probed for the application. A card just
        // inserted may still be settling (pcscd powering it, a swap noticed late): a
        // transport failure is retried a few times before it is reported.
        let open = || {
            PcscCard::connect(ctx.clone(), reader)
                .map_err(TokenError::from)
                .and_then(|b| OpenPgpCard::open(b, TransportKind::Pcsc))
        };
        let mut opened = open();
        for _ in 0..IDENTIFY_RETRIES {
            match &opened {
                Err(TokenError::Io(_) | TokenError::Busy) => {
                    self.sleep(IDENTIFY_RETRY_DELAY)?;
                    opened = open();
                }
                _ => break,
            }
        }
        match opened {
            Ok(card) => {
                let info = card.info();
                drop(card);
                self.readers.lock().unwrap_or_else(|e| e.into_inner()).insert(info.id.clone(), reader.to_owned());
                let id = info.id.clone();
                self.send(TransportEvent::Added(info))?;
                Ok(Identified::Served(id))
            }
            // Pulled out while we looked (its removal comes as the next change), or swapped
            // and the new card not connected yet (no change may come): looked at again.
            Err(TokenError::Removed) => Ok(Identified::Unreachable),
            Err(e) => {
                let what = match (entry, &e) {
                    (Some(en), _) => format!("{} {} card present but not usable: {e}", en.vendor, en.name),
                    (None, TokenError::NotSupported(_)) => {
                        format!("unsupported card (ATR {}): no driver in the media registry recognises it", AtrDisplay(atr))
                    }
                    (None, _) => format!("card (ATR {}) could not be read: {e}", AtrDisplay(atr)),
                };
                self.send(TransportEvent::Error(format!("reader \"{reader_name}\": {what}")))?;
                Ok(Identified::NotServed)
            }
        }
    }
}

/// What [`Watcher::identify`] found in a reader pcscd says holds a card.
enum Identified {
    /// A card KeyBridge serves, reported `Added`.
    Served(DeviceId),
    /// A card KeyBridge does not serve (said so with an `Error` event).
    NotServed,
    /// No card could be reached: looked at again after the next quiet wait.
    Unreachable,
}

impl From<ApduError> for End {
    fn from(_: ApduError) -> Self {
        End::Lost
    }
}
