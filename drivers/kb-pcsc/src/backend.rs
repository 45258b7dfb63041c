//! A [`CardBackend`] over a real PC/SC reader.

use kb_apdu::{ApduError, CardBackend, CardTransaction};
use pcsc::{Context, Disposition, Protocols, ShareMode};
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Readers in which a card handle found its card gone, with how many times. pcscd learns
/// of a removal only by polling the reader, and may never see one: vpcd drops a dead card
/// when a command to it fails and hands pcscd the next card waiting at its port at the
/// next poll, so the reader never looks empty and its event counter does not move (a
/// card swapped faster than the reader is polled looks the same). The watcher looks
/// again at a reader whose count moved.
#[derive(Debug, Default)]
pub(crate) struct LostCards(Mutex<BTreeMap<CString, u64>>);

impl LostCards {
    fn card_gone(&self, reader: &CStr) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(reader.to_owned()).or_default() += 1;
    }

    /// How many times each reader lost its card so far.
    pub(crate) fn counts(&self) -> BTreeMap<CString, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Tells [`LostCards`] (if any) when an operation finds the card gone.
#[derive(Clone, Copy)]
struct GoneReport<'a> {
    lost: Option<&'a LostCards>,
    reader: &'a CStr,
}

impl GoneReport<'_> {
    fn check(self, e: ApduError) -> ApduError {
        if e == ApduError::Removed
            && let Some(lost) = self.lost
        {
            lost.card_gone(self.reader);
        }
        e
    }
}

/// How a PC/SC failure looks to the APDU layer: the card or reader gone (incl. the service
/// stopping, or the card process dying mid-command) is [`ApduError::Removed`]; a reset
/// by someone else is [`ApduError::Reset`]; a card held exclusively is [`ApduError::Busy`].
pub fn map_error(e: pcsc::Error) -> ApduError {
    use pcsc::Error as E;
    match e {
        E::RemovedCard
        | E::NoSmartcard
        | E::UnknownReader
        | E::ReaderUnavailable
        | E::NoReadersAvailable
        | E::NoService
        | E::ServiceStopped
        | E::InvalidHandle
        | E::UnpoweredCard
        | E::UnresponsiveCard
        | E::CommError
        // pcsc-lite's answer to `SCardTransmit` when the reader driver could not exchange
        // the command with the card (IFD communication error): vpcd says this when the card
        // process died. A reset is `ResetCard`; reading this as one retried the command on
        // a card that was gone and reported "the card was reset" (an I/O error) instead of
        // the removal.
        | E::NotTransacted => ApduError::Removed,
        E::ResetCard => ApduError::Reset,
        E::SharingViolation => ApduError::Busy,
        other => ApduError::Transport(format!("PC/SC: {other}")),
    }
}

/// A card in a PC/SC reader, connected in shared mode. Each [`CardBackend::transaction`]
/// is a PC/SC transaction (`SCardBeginTransaction`); a card reset found on the way is
/// answered by reconnecting (the caller re-selects its application).
pub struct PcscCard {
    ctx: Context,
    reader: CString,
    card: Option<pcsc::Card>,
    /// Told when the card is found gone (handles given out by the transport).
    lost: Option<std::sync::Arc<LostCards>>,
}

impl std::fmt::Debug for PcscCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscCard").field("reader", &self.reader).field("connected", &self.card.is_some()).finish()
    }
}

impl PcscCard {
    /// Connect to the card in `reader`.
    pub fn connect(ctx: Context, reader: &CStr) -> Result<Self, ApduError> {
        Self::connect_reporting(ctx, reader, None)
    }

    /// Connect, and tell `lost` when a transaction or command finds the card gone.
    pub(crate) fn connect_reporting(
        ctx: Context,
        reader: &CStr,
        lost: Option<std::sync::Arc<LostCards>>,
    ) -> Result<Self, ApduError> {
        let mut c = PcscCard { ctx, reader: reader.to_owned(), card: None, lost };
        c.ensure()?;
        Ok(c)
    }

    /// The reader's name.
    pub fn reader(&self) -> &CStr {
        &self.reader
    }

    /// The card's ATR as the reader reports it now.
    pub fn atr(&mut self) -> Result<Vec<u8>, ApduError> {
        let card = self.ensure()?;
        Ok(card.status2_owned().map_err(map_error)?.atr().to_vec())
    }

    fn ensure(&mut self) -> Result<&mut pcsc::Card, ApduError> {
        if self.card.is_none() {
            self.card = Some(self.ctx.connect(&self.reader, ShareMode::Shared, Protocols::ANY).map_err(map_error)?);
        }
        self.card.as_mut().ok_or(ApduError::Removed)
    }
}

impl Drop for PcscCard {
    fn drop(&mut self) {
        // pcsc's own drop resets the card, which would cost every other handle (the
        // device actor's, another application's) its selected application and PINs.
        if let Some(card) = self.card.take() {
            let _ = card.disconnect(Disposition::LeaveCard);
        }
    }
}

impl CardBackend for PcscCard {
    fn transaction(&mut self) -> kb_apdu::Result<Box<dyn CardTransaction + '_>> {
        self.ensure()?;
        let PcscCard { reader, card, lost, .. } = self;
        let gone = GoneReport { lost: lost.as_deref(), reader: reader.as_c_str() };
        let card = card.as_mut().ok_or(ApduError::Removed)?;
        // A reset since our last transaction: reconnect once, then begin.
        let card = match card.transaction2() {
            Ok(tx) => return Ok(Box::new(PcscTransaction { tx, gone })),
            Err((card, pcsc::Error::ResetCard)) => card,
            // A removed card stays removed for this handle: a re-inserted card is a new
            // medium, opened afresh by the transport.
            Err((_, e)) => return Err(gone.check(map_error(e))),
        };
        card.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard).map_err(|e| gone.check(map_error(e)))?;
        let tx = card.transaction().map_err(|e| gone.check(map_error(e)))?;
        Ok(Box::new(PcscTransaction { tx, gone }))
    }
}

/// One PC/SC transaction.
struct PcscTransaction<'a> {
    tx: pcsc::Transaction<'a>,
    gone: GoneReport<'a>,
}

impl CardTransaction for PcscTransaction<'_> {
    fn transmit(&mut self, apdu: &[u8], buf_size: usize) -> kb_apdu::Result<Vec<u8>> {
        // The response may be a deciphered key: the buffer is zeroized when dropped.
        let mut buf = Zeroizing::new(vec![0u8; buf_size.clamp(2, pcsc::MAX_BUFFER_SIZE_EXTENDED)]);
        let resp = self.tx.transmit(apdu, &mut buf).map_err(|e| self.gone.check(map_error(e)))?;
        if resp.is_empty() {
            // Every card answers at least SW1 SW2. Nothing at all is the reader losing the
            // card mid-command (vpcd does this when the card process dies, before pcscd's
            // next poll notices the removal).
            return Err(self.gone.check(ApduError::Removed));
        }
        Ok(resp.to_vec())
    }

    fn reset(&mut self) -> kb_apdu::Result<()> {
        self.tx.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::ResetCard).map_err(map_error)
    }
}
