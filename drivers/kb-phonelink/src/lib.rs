//! The phone link: how a phone acting as the PC's key (移动电子密钥) and KeyBridge on the PC
//! reach each other. The wire protocol is written down once in `docs/phone-link.md`.
//!
//! The layers above (the PC-side phone medium and the phone-side agent, crate `kb-phone`)
//! see only [`MessageConn`]: an authenticated, encrypted, ordered pipe of whole application
//! messages to one peer. Everything below it — the pairing QR, the handshake, the channel's
//! encryption and replay protection, the direct and relay transports — lives here.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod conn;
pub mod frame;
pub mod relay;

pub use conn::{LinkError, MessageConn, PeerId, memory_pair};
pub use frame::{FramePipe, MAX_FRAME};
