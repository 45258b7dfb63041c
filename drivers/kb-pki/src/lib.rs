//! KeyBridge PKI on top of [`kb_crypto`]:
//!
//! - [`cert`]: X.509 inspection for SM2, RSA and ECDSA certificates — names, validity,
//!   key algorithm and size, key usage → [`kb_types::KeyUsage`], every extension,
//!   thumbprints (SHA-1 default, SM3, SHA-256, MD5).
//! - [`chain`]: chain building and verification against trust anchors with a reason
//!   for every failure.
//! - [`csr`]: PKCS#10 requests built through a [`Signer`] (so the key may live on a
//!   device) and verified.
//! - [`issue`]: certificate issuing (root, intermediate, leaf, dual sign/enc pairs) for
//!   tests and the dev CA.
//! - [`cms`]: SignedData (attached/detached, signed attributes, streamed digests) and
//!   EnvelopedData (SM4 content key to SM2 or RSA recipients, streaming).
//! - [`revocation`]: CRLs (parse, verify against the issuer, look a certificate up, issue
//!   for the dev CA) and the good / revoked / unknown-with-why status; [`ocsp`]: RFC 6960
//!   requests, responses checked against the issuer, and answering them for the dev CA.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod cert;
pub mod chain;
pub mod cms;
pub mod csr;
mod error;
pub mod issue;
pub mod name;
pub mod ocsp;
pub mod oid;
pub mod revocation;
pub mod signer;
pub mod time;

pub use cert::Certificate;
pub use error::{PkiError, Result};
pub use signer::{LocalSigner, Signer};
