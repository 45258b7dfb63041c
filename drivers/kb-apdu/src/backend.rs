//! The transport traits (openpgp-card's shape) and [`send`], the one place that runs
//! command chaining, `61xx` GET RESPONSE and `6Cxx` re-sends.

use crate::command::{MAX_EXTENDED_DATA, MAX_EXTENDED_NE, MAX_SHORT_DATA, MAX_SHORT_NE};
use crate::{ApduError, CardStatus, Command, LengthForm, Response, Result};
use zeroize::Zeroizing;

/// A long-lived handle on one card (a PC/SC reader with a card in it, a vpcd socket, a
/// virtual card). Its only job is to open a transaction.
pub trait CardBackend: Send {
    /// Start an exclusive transaction. A card reset or removal ends it; the caller then
    /// reconnects and re-selects its application.
    fn transaction(&mut self) -> Result<Box<dyn CardTransaction + '_>>;
}

/// A short-lived exclusive session with the card. It only moves bytes: no status word is
/// interpreted below [`send`].
pub trait CardTransaction {
    /// Send one command APDU and return the raw response (data ‖ SW1 SW2). `buf_size` is the
    /// most bytes the response may hold (Ne + 2).
    fn transmit(&mut self, apdu: &[u8], buf_size: usize) -> Result<Vec<u8>>;

    /// Warm-reset the card. Selected applications and verified PINs are lost, so the
    /// caller re-selects. Backends that cannot reset keep this default, which refuses.
    fn reset(&mut self) -> Result<()> {
        Err(ApduError::Transport("this card backend cannot reset the card".into()))
    }
}

/// How [`send_with`] talks to a card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendOptions {
    /// The card accepts extended-length APDUs (from its historical bytes or EF.ATR/INFO):
    /// long data goes in one APDU instead of a chain, and Ne may exceed 256.
    pub extended_length: bool,
    /// Most `61xx`/`6Cxx` follow-up exchanges for one command; past it, `send` fails
    /// with [`ApduError::TooManyRounds`] instead of looping forever.
    pub max_rounds: usize,
}

impl Default for SendOptions {
    fn default() -> Self {
        // 256 GET RESPONSE rounds of 256 bytes: 64 KiB, more than any certificate.
        SendOptions { extended_length: false, max_rounds: 256 }
    }
}

/// [`send_with`] with the default options (short APDUs, chaining, 256 rounds).
pub fn send(tx: &mut dyn CardTransaction, cmd: &Command) -> Result<Response> {
    send_with(tx, cmd, &SendOptions::default())
}

/// Send a command and return the card's final answer.
///
/// - A command that fits a short APDU is sent short. Longer data is sent with command
///   chaining (CLA bit `0x10` on every chunk but the last), unless `extended_length` allows
///   one extended APDU; without it, Ne is capped at 256 and the rest comes by `61xx`. A chunk
///   answered with anything but `9000` ends the exchange with that answer.
/// - `6Cxx` re-sends the same command with Ne = xx; `61xx` is followed by GET RESPONSE
///   until the card stops, the data of every part concatenated.
/// - The returned response may carry an error status word (a VERIFY answered `63C2` is a
///   normal answer); [`Response::into_data`] turns it into an error. `Err` is only for the
///   transport failing or the card breaking the protocol.
pub fn send_with(tx: &mut dyn CardTransaction, cmd: &Command, opts: &SendOptions) -> Result<Response> {
    if cmd.ne() > MAX_EXTENDED_NE {
        return Err(ApduError::Encoding("Ne larger than 65536"));
    }
    let extended = opts.extended_length && cmd.data().len() <= MAX_EXTENDED_DATA && cmd.ne() <= MAX_EXTENDED_NE;
    let (mut current, form) = if extended {
        let form = if cmd.fits_short() { LengthForm::Short } else { LengthForm::Extended };
        (cmd.clone(), form)
    } else {
        let data = cmd.data();
        let mut rest = data;
        while rest.len() > MAX_SHORT_DATA {
            let (chunk, tail) = rest.split_at(MAX_SHORT_DATA);
            let link = cmd.with_data(cmd.cla() | 0x10, chunk, 0);
            let resp = exchange(tx, &link, LengthForm::Short)?;
            if !resp.status().is_ok() {
                return Ok(resp);
            }
            rest = tail;
        }
        (cmd.with_data(cmd.cla(), rest, cmd.ne().min(MAX_SHORT_NE)), LengthForm::Short)
    };
    let get_response_cla = get_response_cla(cmd.cla());
    let mut acc: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
    let mut resp = exchange(tx, &current, form)?;
    let mut rounds = 0usize;
    loop {
        let follow_up = match resp.status().status() {
            // The data of a 6Cxx answer (if any) is not part of the result.
            CardStatus::WrongLe(ne) => current.clone().with_ne(ne as usize),
            CardStatus::MoreData(ne) => {
                append(&mut acc, resp.data());
                Command::get_response(ne as usize).with_cla(get_response_cla)
            }
            _ => {
                let (data, sw) = resp.into_parts();
                append(&mut acc, &data);
                return Ok(Response::new(std::mem::take(&mut *acc), sw));
            }
        };
        rounds += 1;
        if rounds > opts.max_rounds {
            return Err(ApduError::TooManyRounds(opts.max_rounds));
        }
        current = follow_up;
        // A follow-up never needs more than a short APDU unless Ne does.
        let form = if current.fits_short() { LengthForm::Short } else { form };
        resp = exchange(tx, &current, form)?;
    }
}

/// GET RESPONSE keeps the logical channel of the command, without chaining or secure
/// messaging bits; proprietary classes use `00`.
fn get_response_cla(cla: u8) -> u8 {
    match cla {
        0x00..=0x3F => cla & 0x03,
        0x40..=0x7F => cla & 0x4F,
        _ => 0x00,
    }
}

fn exchange(tx: &mut dyn CardTransaction, cmd: &Command, form: LengthForm) -> Result<Response> {
    let apdu = cmd.encode(form)?;
    let raw = Zeroizing::new(tx.transmit(&apdu, cmd.ne() + 2)?);
    Response::from_bytes(&raw)
}

/// Append without leaving copies of (possibly secret) response data in freed memory.
fn append(acc: &mut Zeroizing<Vec<u8>>, more: &[u8]) {
    let need = acc.len() + more.len();
    if need > acc.capacity() {
        let mut grown = Zeroizing::new(Vec::with_capacity(need.max(acc.capacity() * 2)));
        grown.extend_from_slice(acc);
        *acc = grown;
    }
    acc.extend_from_slice(more);
}
