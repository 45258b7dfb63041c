//! The bridge's settings: port, limits and consent policy.

use kb_bridge_protocol::{DEFAULT_MAX_CHUNK_BYTES, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PORT, Limits};
use std::time::Duration;

/// How a web origin without a grant is treated: the settings' `bridge_consent`.
pub use kb_service::settings::BridgeConsent as ConsentPolicy;

/// Everything the server needs to know that is not the device service.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// TCP port on 127.0.0.1 and ::1; 0 picks a free one (tests).
    pub port: u16,
    /// Largest text frame, in bytes.
    pub max_message_bytes: usize,
    /// Largest binary frame payload, in bytes.
    pub max_chunk_bytes: usize,
    /// Requests in flight per connection.
    pub max_in_flight: usize,
    /// A request fails with `5008` after this long without progress while not
    /// waiting on the user (a PIN or consent dialog pauses it; stream bytes reset it).
    pub request_timeout: Duration,
    /// How long one private-key operation of a request may take, PIN dialog and medium
    /// included (counted from when it starts, after any upload it needs): past it an open
    /// dialog is withdrawn and the request fails with `4016 operation_timed_out` (or
    /// `4017 outcome_unknown` when the medium had it).
    pub operation_deadline: Duration,
    /// Connections at once (all clients).
    pub max_connections: usize,
    /// Connections at once from one client (one web origin, or all native tools): a
    /// hostile page cannot take every slot.
    pub max_connections_per_client: usize,
    /// Time allowed for the HTTP upgrade (slowloris).
    pub handshake_timeout: Duration,
    /// Connections still in their HTTP upgrade at once; a new one beyond this evicts the
    /// oldest (clients complete the upgrade in milliseconds, so only a slow or idle
    /// connection is ever evicted, and nobody can fill the pool to lock others out).
    pub max_handshaking: usize,
    /// `hello` must come within this time after the upgrade, or the connection is closed.
    pub hello_timeout: Duration,
    /// A connection with nothing in flight, no open stream and no subscription is closed
    /// after this long without a message.
    pub idle_timeout: Duration,
    /// A web connection without consent (no grant, not allowed once) is closed after
    /// this long without a request in flight.
    pub unconsented_idle_timeout: Duration,
    /// Web connections without consent at once, all origins together: what a page can
    /// hold without the user's consent, so native tools and granted sites always find
    /// room.
    pub max_unconsented_connections: usize,
    /// Distinct web origins without consent holding connections at once.
    pub max_unconsented_origins: usize,
    /// Connections at once from one web origin without consent.
    pub max_unconsented_per_origin: usize,
    /// How often the grants file is checked for changes made by another process.
    pub grants_poll: Duration,
    /// A client that does not take a message within this time is disconnected.
    pub send_timeout: Duration,
    /// At most this many failed requests per connection within [`Self::failure_window`];
    /// beyond it the request fails with `5007` and the connection is closed (1008).
    pub max_failures: u32,
    /// The window of [`Self::max_failures`].
    pub failure_window: Duration,
    /// Frames of upload streams that no request reads yet are buffered up to this many
    /// bytes per connection (all such streams together); more fails the stream.
    pub max_unclaimed_upload_bytes: usize,
    /// Web origins without a grant.
    pub consent: ConsentPolicy,
    /// Product version announced in `hello`.
    pub product_version: String,
    /// Near-expiry window for certificate status, in days.
    pub near_expiry_days: i64,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            port: DEFAULT_PORT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_chunk_bytes: DEFAULT_MAX_CHUNK_BYTES,
            max_in_flight: 16,
            request_timeout: Duration::from_secs(30),
            operation_deadline: Duration::from_secs(10 * 60),
            max_connections: 512,
            max_connections_per_client: 128,
            handshake_timeout: Duration::from_secs(5),
            max_handshaking: 64,
            hello_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            unconsented_idle_timeout: Duration::from_secs(30),
            max_unconsented_connections: 64,
            max_unconsented_origins: 16,
            max_unconsented_per_origin: 8,
            grants_poll: Duration::from_millis(250),
            send_timeout: Duration::from_secs(10),
            max_failures: 32,
            failure_window: Duration::from_secs(10),
            max_unclaimed_upload_bytes: 4 << 20,
            consent: ConsentPolicy::Prompt,
            product_version: env!("CARGO_PKG_VERSION").to_string(),
            near_expiry_days: 90,
        }
    }
}

impl BridgeConfig {
    /// The limits announced in `hello`.
    pub fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.max_message_bytes as u64,
            max_chunk_bytes: self.max_chunk_bytes as u64,
            max_in_flight: u32::try_from(self.max_in_flight).unwrap_or(u32::MAX),
            request_timeout_ms: u64::try_from(self.request_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}
