//! An in-process card for tests: answers from a closure, a table or a transcript, and
//! records every APDU it receives.

use crate::{ApduError, CardBackend, CardTransaction, Result, command::hex};
use std::collections::VecDeque;
use zeroize::Zeroizing;

type Handler = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>> + Send>;

/// A virtual card. Every APDU it receives is recorded (zeroized on drop: tests send PINs).
pub struct VirtualCard {
    handler: Handler,
    received: Vec<Zeroizing<Vec<u8>>>,
    resets: usize,
}

impl std::fmt::Debug for VirtualCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualCard").field("received", &self.received.len()).field("resets", &self.resets).finish()
    }
}

impl VirtualCard {
    /// A card answering each APDU with `handler(apdu)` (raw response: data ‖ SW).
    pub fn new(handler: impl FnMut(&[u8]) -> Result<Vec<u8>> + Send + 'static) -> Self {
        VirtualCard { handler: Box::new(handler), received: Vec::new(), resets: 0 }
    }

    /// A card answering from a table of (command, response) pairs; anything else gets `6D00`.
    pub fn from_table(table: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        VirtualCard::new(move |apdu| {
            Ok(table.iter().find(|(c, _)| c == apdu).map_or_else(|| vec![0x6D, 0x00], |(_, r)| r.clone()))
        })
    }

    /// A card that expects exactly these commands in this order and gives these answers.
    /// An unexpected command or one too many fails the transmit with a transport error
    /// naming the step, so a test sees the first divergence.
    pub fn from_transcript(steps: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        let mut steps: VecDeque<(Vec<u8>, Vec<u8>)> = steps.into();
        let mut n = 0usize;
        VirtualCard::new(move |apdu| {
            n += 1;
            match steps.pop_front() {
                Some((c, r)) if c == apdu => Ok(r),
                Some((c, _)) => {
                    Err(ApduError::Transport(format!("transcript step {n}: expected {}, got {}", hex(&c), hex(apdu))))
                }
                None => Err(ApduError::Transport(format!("transcript ended; step {n} got {}", hex(apdu)))),
            }
        })
    }

    /// Every APDU received so far, in order.
    pub fn received(&self) -> &[Zeroizing<Vec<u8>>] {
        &self.received
    }

    /// How many times a transaction reset the card.
    pub fn resets(&self) -> usize {
        self.resets
    }
}

impl CardBackend for VirtualCard {
    fn transaction(&mut self) -> Result<Box<dyn CardTransaction + '_>> {
        Ok(Box::new(VirtualTransaction { card: self }))
    }
}

/// A transaction on a [`VirtualCard`].
#[derive(Debug)]
pub struct VirtualTransaction<'a> {
    card: &'a mut VirtualCard,
}

impl CardTransaction for VirtualTransaction<'_> {
    fn transmit(&mut self, apdu: &[u8], buf_size: usize) -> Result<Vec<u8>> {
        self.card.received.push(Zeroizing::new(apdu.to_vec()));
        let resp = (self.card.handler)(apdu)?;
        if resp.len() > buf_size {
            // What a PC/SC reader does with a response larger than the buffer.
            return Err(ApduError::Transport(format!("response of {} bytes exceeds the {buf_size}-byte buffer", resp.len())));
        }
        Ok(resp)
    }

    fn reset(&mut self) -> Result<()> {
        self.card.resets += 1;
        Ok(())
    }
}
