//! KeyBridge vocabulary shared by every layer: algorithms, key usages and the
//! one table of stable error codes.
//!
//! Nothing here does I/O. Every error that crosses a crate boundary towards the
//! user (CLI, bridge, desktop UI) carries an [`ErrorCode`]: a stable number, a
//! stable snake_case name, and a human message in zh-CN and English. The UI and
//! bridge clients match on the number or name, never on message text.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

mod algorithm;
mod device;
mod error_code;
mod pin;

pub use algorithm::{Algorithm, HashAlgorithm, KeyUsage};
pub use device::{
    Capabilities, ContainerInfo, DeviceId, DeviceInfo, KeySlot, PinInfo, PinKind, Revocation, RevocationState, SealInfo,
    TransportKind, UserVerification, ValidityStatus,
};
pub use error_code::{Category, ErrorCode, HasErrorCode, Lang, markdown_table};
pub use pin::Pin;
