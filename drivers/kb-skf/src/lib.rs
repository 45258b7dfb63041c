//! SKF (GM/T 0016-2012) modules as KeyBridge media.
//!
//! Chinese SM2 USB keys ship a vendor library exporting the `SKF_*` C functions. This
//! crate loads such libraries at run time and shows their keys as media:
//!
//! - [`abi`]: the C types and structures, algorithm ids, and the one `SAR_*` table with
//!   its mapping to [`kb_token::TokenError`] (also used by `kb-skf-module`, KeyBridge's own
//!   SKF module over file-type keys).
//! - [`SkfModule`]: a library path, loaded once per process, with **every** function in
//!   [`REQUIRED_FUNCTIONS`] resolved before anything is called. A library missing one is
//!   `module_load_failed` (4014) naming the function, never a crash.
//! - [`SkfToken`]: one application on one device as a [`kb_token::Token`], id
//!   `skf:<serial>` (`skf:<serial>:<application>` when a device has several applications).
//!   Containers come from `SKF_EnumContainer`; each ECC container has a signing and an
//!   encryption slot with their certificates. SM2 signatures: KeyBridge computes
//!   `e = SM3(ZA ‖ M)` and `SKF_ECCSignData` signs it; the `r, s` fields become DER. SM2
//!   decryption uses the vendor extension `SKF_ECCDecrypt` when the module exports it
//!   (see [`OPTIONAL_FUNCTIONS`]). PIN verify/change/unblock report the retry count the
//!   module returns; `pin_info` comes from `SKF_GetPINInfo`.
//! - [`SkfTransport`]: polls the device list and, where the module offers
//!   `SKF_WaitForDevEvent`, wakes on its events.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod abi;
#[allow(unsafe_code)]
mod calls;
mod module;
mod token;
mod transport;

pub use calls::{OPTIONAL_FUNCTIONS, REQUIRED_FUNCTIONS};
pub use module::SkfModule;
pub use token::SkfToken;
pub use transport::{DEFAULT_POLL, MAX_QUICK_WAITS, MIN_RESCAN, QUICK_RETURN, SkfTransport};
