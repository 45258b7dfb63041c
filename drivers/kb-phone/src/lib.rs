//! The phone as the PC's key (移动电子密钥), above the link: the application messages
//! ([`msg`], contract in `docs/phone-link-messages.md`), the PC's side that makes a
//! phone's media ordinary key media ([`pc`]: [`PhoneTransport`], [`PhoneToken`]), and the
//! phone's side that serves any [`kb_token::Token`] to the PC ([`agent`]: [`PhoneAgent`]).
//!
//! Both sides are built on [`kb_phonelink::MessageConn`] only: an authenticated,
//! encrypted, ordered pipe of whole messages to one peer. Pairing, the handshake, the
//! channel and the transports are `kb-phonelink`'s; tests use its in-process
//! [`kb_phonelink::memory_pair`].
//!
//! ```text
//!  PC: DeviceManager ─ PhoneTransport/PhoneToken ─┐            ┌─ PhoneAgent ─ Token (file key…)
//!                                                 └─MessageConn┘      └─ PhonePrompter (screen, PIN)
//! ```

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod agent;
pub mod msg;
pub mod pc;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use agent::{Answer, PhoneAgent, PhonePrompter, PinCache, Prompt};
/// The link layer both sides run on (its [`MessageConn`](kb_phonelink::MessageConn) and,
/// for tests and examples, its in-process [`memory_pair`](kb_phonelink::memory_pair)).
pub use kb_phonelink as link;
pub use pc::{PhoneStatus, PhoneToken, PhoneTransport};
