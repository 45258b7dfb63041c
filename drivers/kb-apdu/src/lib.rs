//! The ISO 7816-4 layer every smart-card driver shares, with no I/O in it.
//!
//! - [`Command`] / [`Response`]: APDUs as plain values (short and extended lengths).
//!   Commands carrying secrets (VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, or
//!   anything marked [`Command::sensitive`]) print `REDACTED` and zeroize their buffers.
//! - [`StatusWord`]: the **one** table turning SW1SW2 into a typed [`CardStatus`] and, through
//!   [`StatusWord::error_code`], into a stable error code (kb-token turns the same table into
//!   its `TokenError`, keeping the tries left). Drivers never re-invent it.
//! - [`tlv`]: BER-TLV parse/build/find, with a depth limit and no panics on any input.
//! - [`CardBackend`] / [`CardTransaction`]: the tiny transport traits (the openpgp-card shape:
//!   a long-lived handle, a short-lived transaction that only moves bytes), and [`send`], which
//!   does command chaining, `61xx` GET RESPONSE and `6Cxx` re-sends, with a bound on rounds.
//! - [`VirtualCard`]: an in-process backend driven by a closure, a table or a transcript,
//!   recording every APDU it receives, for tests.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

mod backend;
mod command;
mod error;
mod response;
mod status;
pub mod tlv;
mod virtual_card;

pub use backend::{CardBackend, CardTransaction, SendOptions, send, send_with};
pub use command::{Command, LengthForm, MAX_EXTENDED_DATA, MAX_EXTENDED_NE, MAX_SHORT_DATA, MAX_SHORT_NE};
pub use error::{ApduError, Result};
pub use response::Response;
pub use status::{CardStatus, StatusWord};
pub use virtual_card::{VirtualCard, VirtualTransaction};
