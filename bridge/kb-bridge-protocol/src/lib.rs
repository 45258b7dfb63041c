//! The KeyBridge local bridge's wire contract, declared once: JSON-RPC 2.0 envelopes,
//! every method with typed params and results, server events, binary stream frames,
//! and the mapping of KeyBridge's stable error codes onto JSON-RPC errors.
//!
//! No I/O: the WebSocket server, the Rust client and the tests all use these values.
//! `docs/bridge-protocol.md` is the human-readable contract; this crate's tests parse
//! every JSON example in it and check that every method, event and error code appears
//! there.
//!
//! Security shape of the contract: no method takes a PIN or password (the desktop app
//! asks for it), every request has an id, and [`parse_request`] enforces a size cap
//! before parsing anything.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

mod envelope;
mod error;
pub mod frame;
mod methods;
mod types;

pub use envelope::{
    Event, Id, MAX_ID_LEN, Notification, OperationState, Request, RequestError, Response, Version2, parse_request,
};
pub use error::{ErrorData, ErrorObject, Messages, ProtocolError, RpcCode};
pub use methods::*;
pub use types::{
    Base64, CertificateRef, CertificateSource, CmsProfile, EventKind, Input, Output, OutputMode, Revocation, RevocationState,
    SignInput, Sm2Layout, StreamDirection, StreamId, Thumbprint, ValidityStatus,
};

/// The schema version this crate describes. Bumped when a change is not
/// backwards-compatible (a field removed or changing meaning); new optional params,
/// new result fields, new methods and new error codes do not bump it.
pub const SCHEMA_VERSION: u32 = 1;

/// The oldest client schema version a server built from this crate still serves.
pub const MIN_SCHEMA_VERSION: u32 = 1;

/// Default TCP port on 127.0.0.1 (settings key `bridge_port`).
pub const DEFAULT_PORT: u16 = 17210;

/// Default cap on one text frame, in bytes (1 MiB); bulk data goes in binary frames.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Default cap on one binary frame's payload, in bytes (256 KiB).
pub const DEFAULT_MAX_CHUNK_BYTES: usize = 256 << 10;

/// Most recipients one `encrypt` takes: more fail with `1005 input_too_large` before
/// any certificate is read.
pub const MAX_RECIPIENTS: usize = 100;

/// The schema version a connection uses, or `None` when the client is too old
/// (`5005 schema_version_unsupported`).
pub const fn negotiate(client_version: u32) -> Option<u32> {
    if client_version < MIN_SCHEMA_VERSION {
        None
    } else if client_version < SCHEMA_VERSION {
        Some(client_version)
    } else {
        Some(SCHEMA_VERSION)
    }
}

/// Capability names announced in `hello`.
pub mod capability {
    /// `sign` with `raw`.
    pub const SIGN_RAW: &str = "sign.raw";
    /// `sign` with `cms_attached` / `cms_detached`.
    pub const SIGN_CMS: &str = "sign.cms";
    /// `verify`.
    pub const VERIFY: &str = "verify";
    /// `encrypt`/`decrypt` with `sm2_raw`.
    pub const SM2_RAW: &str = "encrypt.sm2_raw";
    /// `encrypt`/`decrypt` with `cms_envelope`.
    pub const CMS_ENVELOPE: &str = "encrypt.cms_envelope";
    /// `encrypt` with `cms_envelope` and a `signer`: envelope and detached signature in one pass.
    pub const CMS_ENVELOPE_SIGNED: &str = "encrypt.cms_envelope.signer";
    /// `stream.open` and binary frames.
    pub const STREAMS: &str = "streams";
    /// `subscribe` / `unsubscribe`.
    pub const EVENTS: &str = "events";
    /// Every capability of schema version 1.
    pub const ALL: [&str; 8] = [SIGN_RAW, SIGN_CMS, VERIFY, SM2_RAW, CMS_ENVELOPE, CMS_ENVELOPE_SIGNED, STREAMS, EVENTS];
}
