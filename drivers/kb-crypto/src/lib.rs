//! KeyBridge cryptography.
//!
//! - [`sm2`]: signatures with the distinguishing ID and ZA (GM/T 0003.2), public-key
//!   encryption in every ciphertext layout met in practice (GM/T 0009 ASN.1,
//!   C1C3C2, legacy C1C2C3, with or without the `04` point prefix).
//! - [`sm3`] and [`hash`]: SM3 and the international digests behind one enum.
//! - [`sm4`]: a fast SM4 block core and the ECB/CBC/CTR/GCM modes, all streaming
//!   in constant memory.
//! - [`rsa`], [`ecdsa`]: RSA PKCS#1 v1.5 / PSS / OAEP and ECDSA P-256.
//! - [`keys`]: [`keys::PublicKey`] / [`keys::PrivateKey`] over all algorithms,
//!   from and to SPKI / PKCS#8, with one `sign` / `verify` entry point.
//!
//! The elliptic-curve and big-number arithmetic is RustCrypto's; this crate adds
//! the formats, ZA handling, streaming modes and a faster SM4 core (see
//! [`sm4`] for why) on top.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod ecdsa;
mod error;
pub mod hash;
pub mod keys;
pub mod rng;
pub mod rsa;
pub mod sm2;
pub mod sm3;
pub mod sm4;

pub use error::{CryptoError, Result};
pub use hash::{Hasher, digest};
pub use kb_types::HashAlgorithm;
pub use keys::{PrivateKey, PublicKey, SignatureScheme};
