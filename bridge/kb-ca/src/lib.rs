//! The KeyBridge CA client: what a certificate authority's server says about renewal,
//! and how a new certificate is enrolled.
//!
//! - [`api`]: the CA API v1 wire types (binding, renewal status, certificate delivery),
//!   written down in `docs/ca-api.md` and tested against it.
//! - [`proof`]: the binding proof — a signature with the certificate's key over the
//!   CA's challenge — built by the client and checked by the CA.
//! - [`est`]: EST (RFC 7030) bodies: base64 PKCS#10 requests and base64 certs-only
//!   PKCS#7 responses.
//! - [`http`]: a small HTTP/1.1 message layer (no I/O in the parsers) shared by the
//!   client and the dev CA, with size caps.
//! - [`client`]: the [`CaClient`] trait and [`HttpCaClient`], its implementation over
//!   HTTP(S) with bounded time-outs and response sizes.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod client;
mod error;
pub mod est;
pub mod http;
pub mod proof;

pub use client::{CaClient, HttpCaClient, Limits};
pub use error::{CaError, Result};
