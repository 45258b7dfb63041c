//! PKCS#11 modules as KeyBridge media.
//!
//! - [`Pkcs11Module`]: any module path, loaded and initialised once per process. A path
//!   that does not exist, is not a shared library, or lacks `C_GetFunctionList` is
//!   [`kb_token::TokenError::Module`] (`module_load_failed`), never a crash.
//! - [`Pkcs11Token`]: one token (a slot with a token present) as a [`kb_token::Token`],
//!   id `pkcs11:<module file stem>:<token serial>`, info from `CK_TOKEN_INFO`. Objects are
//!   grouped into containers by `CKA_ID` (see [`objects`](crate#containers)).
//! - [`Pkcs11Transport`]: polls the token list and reports tokens added and removed.
//!
//! # Mechanisms
//!
//! The Token model signs digests, so only raw mechanisms are used: `CKM_ECDSA` over the
//! digest (the token's `r ‖ s` is re-encoded as DER), `CKM_RSA_PKCS` over a DigestInfo
//! built here (the `CKM_SHA256_RSA_PKCS` family would hash again and needs the whole
//! message), `CKM_RSA_PKCS_PSS` with salt = hash length; decryption with `CKM_RSA_PKCS`
//! or `CKM_RSA_PKCS_OAEP`. SM2 has no standard mechanism: it is used only when a module
//! lists a vendor's mechanisms from [`SM2_VENDOR_MECHANISMS`] (empty until a vendor module
//! can be tested).
//!
//! # Containers
//!
//! Each distinct `CKA_ID` is a container with one key pair: named by `CKA_LABEL` when set
//! and unique, else the hex `CKA_ID`; usage from the certificate's keyUsage, else the key's
//! `CKA_SIGN`/`CKA_DECRYPT` (or the public key's `CKA_VERIFY`/`CKA_ENCRYPT`).
//!
//! # PIN counters
//!
//! PKCS#11 reports flags, not counts: `CKF_USER_PIN_LOCKED` (0 tries), `…_FINAL_TRY`
//! (1 try), `…_COUNT_LOW` (some). A wrong PIN is `WrongPin { retries_left: 1 }` on the
//! final try, `PinLocked` when locked, and otherwise
//! [`kb_token::TokenError::WrongPinRetriesUnknown`]; `pin_info` answers only where the
//! flags give an exact number.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

mod encoding;
mod error;
mod mechanisms;
mod module;
mod objects;
mod token;
mod transport;

pub use mechanisms::{SM2_VENDOR_MECHANISMS, Sm2Mechanisms};
pub use module::Pkcs11Module;
pub use token::Pkcs11Token;
pub use transport::{DEFAULT_POLL, Pkcs11Transport};
