//! The phone link: how a phone acting as the PC's key (移动电子密钥) and KeyBridge on the PC
//! reach each other. The wire protocol is written down once in `docs/phone-link.md`.
//!
//! The layers above (the PC-side phone medium and the phone-side agent, crate `kb-phone`)
//! see only [`MessageConn`]: an authenticated, encrypted, ordered pipe of whole application
//! messages to one peer. Everything below it lives here:
//!
//! - [`qr`]: the pairing offer (`KB1:` + base32) the PC shows and the phone scans;
//! - [`suite`]: Noise's GM suite (SM2, SM4-GCM, SM3) plugged into `snow`;
//! - [`handshake`]: pairing (`Noise_XKpsk3_SM2_SM4GCM_SM3`) and reconnect
//!   (`Noise_IKpsk2_SM2_SM4GCM_SM3`) as plain state machines, the confirmation code;
//! - [`wire`]: frames and records as plain values;
//! - [`channel`]: the encrypted [`MessageConn`] over a [`FramePipe`] (caps, keep-alive,
//!   close reasons, tamper/replay/reorder detection);
//! - [`direct`]: the PC's LAN WebSocket listener and the phone's client for it;
//! - [`pc`] and [`phone`]: the two sides' high-level APIs; [`store`]: the PC's paired
//!   phones and secrets (OS keyring, or a reported 0600 file).

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod channel;
pub mod conn;
pub mod direct;
pub mod frame;
pub mod handshake;
pub mod lan;
pub mod pc;
pub mod phone;
pub mod qr;
pub mod relay;
pub mod rt;
pub mod store;
pub mod suite;
pub mod wire;

pub use channel::{Channel, LinkConfig};
pub use conn::{LinkError, MessageConn, PeerId, memory_pair};
pub use frame::{FramePipe, MAX_FRAME};
pub use handshake::StaticKey;
pub use pc::{PairingOffer, PairingRequestId, PcConfig, PcEndpoint, PcEvent};
pub use phone::{Pairing, PendingPairing, Phone};
pub use qr::{Endpoint, Offer};
pub use rt::LinkRuntime;
pub use store::{BackendChoice, PairedPhone, PairingStore, SecretBackend};
