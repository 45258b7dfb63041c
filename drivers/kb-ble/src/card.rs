//! [`BleCard`]: a [`CardBackend`] over a [`BleLink`], so the one ISO 7816 stack (kb-apdu's
//! `send`, kb-openpgp's application) runs over BLE unchanged.

use crate::frame::{self, FrameCommand, Reassembler, Step};
use crate::link::{BleError, BleLink};
use kb_apdu::{ApduError, CardBackend, CardTransaction};
use kb_types::{ErrorCode, HasErrorCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long an exchange waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExchangeLimits {
    /// Longest silence from the key (no fragment, no keep-alive) before the command's
    /// outcome is declared unknown.
    pub silence: Duration,
    /// Longest whole exchange, keep-alives included (a key waiting for its user).
    pub total: Duration,
}

impl Default for ExchangeLimits {
    fn default() -> Self {
        ExchangeLimits { silence: Duration::from_secs(5), total: Duration::from_secs(60) }
    }
}

/// The link a card talks through; the transport swaps in a fresh one when a remembered
/// key reconnects, so a token opened before keeps working.
pub type SharedLink = Arc<Mutex<Option<Box<dyn BleLink>>>>;

/// Lock a shared link, surviving a poisoned mutex (a panicking test thread).
pub(crate) fn lock(link: &SharedLink) -> MutexGuard<'_, Option<Box<dyn BleLink>>> {
    link.lock().unwrap_or_else(|e| e.into_inner())
}

/// A BLE key as a card. Each transaction holds the link exclusively; each transmit is one
/// MSG exchange.
pub struct BleCard {
    link: SharedLink,
    limits: ExchangeLimits,
    cancel: Arc<AtomicBool>,
}

impl std::fmt::Debug for BleCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BleCard").field("limits", &self.limits).finish()
    }
}

impl BleCard {
    /// A card over `link`.
    pub fn new(link: SharedLink, limits: ExchangeLimits) -> Self {
        BleCard { link, limits, cancel: Arc::default() }
    }

    /// A flag that cancels the exchange in progress (a CANCEL frame goes to the key) and
    /// every later one until it is cleared.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }
}

impl CardBackend for BleCard {
    fn transaction(&mut self) -> kb_apdu::Result<Box<dyn CardTransaction + '_>> {
        let guard = lock(&self.link);
        match guard.as_ref() {
            Some(l) if l.is_up() => {}
            _ => return Err(ApduError::Offline),
        }
        Ok(Box::new(BleTransaction { guard, limits: self.limits, cancel: &self.cancel }))
    }
}

struct BleTransaction<'a> {
    guard: MutexGuard<'a, Option<Box<dyn BleLink>>>,
    limits: ExchangeLimits,
    cancel: &'a AtomicBool,
}

impl CardTransaction for BleTransaction<'_> {
    fn transmit(&mut self, apdu: &[u8], _buf_size: usize) -> kb_apdu::Result<Vec<u8>> {
        let link = self.guard.as_mut().ok_or(ApduError::Offline)?;
        exchange(link.as_mut(), apdu, self.limits, self.cancel)
    }
}

fn link_error(e: impl HasErrorCode + std::fmt::Display) -> ApduError {
    ApduError::Link { code: e.code(), message: format!("BLE key: {e}") }
}

/// One MSG exchange: send the command APDU, wait for the response APDU.
///
/// - The link down before the first fragment went out → [`ApduError::Offline`].
/// - Lost after it, or silent past `limits.silence`, or still busy at `limits.total` →
///   [`ApduError::OutcomeUnknown`] (a CANCEL is sent when the link is still up).
/// - Malformed fragments or an ERROR frame → [`ApduError::Link`] with `ble_frame_invalid`
///   or `ble_key_error`.
pub fn exchange(link: &mut dyn BleLink, apdu: &[u8], limits: ExchangeLimits, cancel: &AtomicBool) -> kb_apdu::Result<Vec<u8>> {
    let size = link.control_point_length();
    // Fragments left from an exchange that failed belong to nobody.
    while let Ok(stale) = link.recv(Duration::ZERO) {
        tracing::debug!("BLE: dropping a stale {}-byte fragment", stale.len());
    }
    if cancel.load(Ordering::SeqCst) {
        return Err(cancelled());
    }
    let frags = frame::fragment(FrameCommand::Msg, apdu, size).map_err(link_error)?;
    for (i, f) in frags.iter().enumerate() {
        match link.write(f) {
            Ok(()) => {}
            Err(BleError::Lost) if i == 0 => return Err(ApduError::Offline),
            Err(BleError::Lost) => return Err(ApduError::OutcomeUnknown),
            Err(e) => return Err(link_error(e)),
        }
    }
    let mut r = Reassembler::new(size, frame::MAX_MESSAGE).map_err(link_error)?;
    let start = Instant::now();
    let mut last_heard = start;
    // Wait in short steps so a cancel is seen promptly.
    let step = Duration::from_millis(100);
    loop {
        if cancel.load(Ordering::SeqCst) {
            send_cancel(link);
            return Err(cancelled());
        }
        let now = Instant::now();
        if now.duration_since(last_heard) >= limits.silence || now.duration_since(start) >= limits.total {
            send_cancel(link);
            return Err(ApduError::OutcomeUnknown);
        }
        let frag = match link.recv(step.min(limits.silence)) {
            Ok(f) => f,
            Err(BleError::Timeout) => continue,
            Err(BleError::Lost) => return Err(ApduError::OutcomeUnknown),
            Err(e) => return Err(link_error(e)),
        };
        last_heard = Instant::now();
        match frame::response_step(&mut r, &frag) {
            Ok(Step::More) => {}
            Ok(Step::KeepAlive(status)) => tracing::trace!("BLE key keep-alive {status:#04x}"),
            Ok(Step::Response(data)) => return Ok(data.to_vec()),
            Err(e) => return Err(link_error(e)),
        }
    }
}

fn cancelled() -> ApduError {
    ApduError::Link { code: ErrorCode::Cancelled, message: "the operation was cancelled".into() }
}

/// Tell the key to abandon the command (best effort: the link may be half gone).
fn send_cancel(link: &mut dyn BleLink) {
    if link.is_up()
        && let Ok(frags) = frame::fragment(FrameCommand::Cancel, &[], link.control_point_length())
    {
        for f in frags {
            let _ = link.write(&f);
        }
    }
}
