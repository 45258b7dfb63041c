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
//!
//! Both sides in one process, over the in-process link (a phone app calls
//! `PhoneAgent::serve` with the link its pairing produced; KeyBridge hands
//! `PhoneTransport::attach` every phone link it accepted, and adds the transport to its
//! device manager like any other):
//!
//! ```
//! use kb_crypto::{PrivateKey, SignatureScheme};
//! use kb_phone::agent::{Answer, PhonePrompter, Prompt};
//! use kb_phone::link::{PeerId, memory_pair};
//! use kb_phone::msg::PhoneInfo;
//! use kb_phone::{PhoneAgent, PhoneTransport};
//! use kb_token::{OpContext, Transport, UserAuth, memory::MemoryToken};
//! use kb_types::{Algorithm, KeyUsage, Pin, TransportKind};
//! use std::{sync::Arc, time::Duration};
//!
//! /// The phone's screen: here it confirms everything, typing the PIN when asked.
//! struct Screen;
//! impl PhonePrompter for Screen {
//!     fn ask(&self, prompt: &Prompt, _ctx: &OpContext) -> Answer {
//!         Answer::Confirm(prompt.pin.map(|_| Pin::new("12345678")))
//!     }
//! }
//!
//! // The phone: any Token (here an in-memory one with an SM2 key pair).
//! let token = MemoryToken::new(TransportKind::File, "key", "12345678", "admin-pin-0");
//! token.put_key("c1", KeyUsage::Sign, PrivateKey::generate(Algorithm::Sm2)?);
//! let phone = PhoneInfo { name: "张三的手机".into(), model: String::new(), app_version: String::new() };
//! let agent = Arc::new(PhoneAgent::new(Box::new(token), Arc::new(Screen), Duration::from_secs(300), phone));
//! let (pc_end, phone_end) = memory_pair(PeerId("pc".into()), PeerId("phone".into()), 1 << 20);
//! let serving = Arc::clone(&agent);
//! std::thread::spawn(move || serving.serve(phone_end));
//!
//! // The PC: the phone's medium is a token like any other.
//! let phones = PhoneTransport::new();
//! let ids = phones.attach(pc_end)?;
//! let mut medium = phones.open(&ids[0])?;
//! let scheme = SignatureScheme::sm2_default();
//! let public = medium.public_key("c1", KeyUsage::Sign)?;
//! let digest = public.message_digest(&scheme, b"hello")?;
//! let mut session = medium.open_session(UserAuth::OnMedium, &OpContext::new())?;
//! let signature = session.sign_digest("c1", KeyUsage::Sign, &scheme, &digest)?;
//! public.verify(&scheme, b"hello", &signature)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
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
