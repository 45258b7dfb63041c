//! The CA API, version 1: plain values, no I/O. `docs/ca-api.md` is the contract; a
//! test parses every JSON example there into these types and back.
//!
//! | Method and path | Request | Answer |
//! |---|---|---|
//! | `GET /api/v1` | – | [`ServerInfo`] |
//! | `POST /api/v1/challenges` | – | [`Challenge`] |
//! | `POST /api/v1/bindings` | [`BindingRequest`] | [`Binding`] |
//! | `GET /api/v1/bindings/{binding_id}?wait=S&known=STATE` | – | [`BindingStatus`] (long-poll) |
//! | `GET /api/v1/certificates/{serial}/renewal` | – | [`RenewalStatus`] |
//! | `GET /api/v1/applications/{id}/certificates` | – | [`Delivery`] |
//!
//! Every error is an HTTP 4xx/5xx with an [`ErrorBody`].

use serde::{Deserialize, Serialize};

/// The API version this crate speaks.
pub const API_VERSION: &str = "v1";
/// Path prefix of the API.
pub const API_PREFIX: &str = "/api/v1";
/// Path prefix of EST (RFC 7030 §3.2.2).
pub const EST_PREFIX: &str = "/.well-known/est";
/// How long a binding QR code is valid.
pub const BINDING_TTL_SECS: i64 = 30 * 60;
/// How long a challenge is valid.
pub const CHALLENGE_TTL_SECS: i64 = 5 * 60;
/// Longest long-poll wait the server honours.
pub const MAX_WAIT_SECS: u64 = 30;

/// `GET /api/v1`: who answers and what it speaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerInfo {
    /// `"v1"`.
    pub api_version: String,
    /// The CA's name, for the user.
    pub name: String,
    /// A development CA (never trust its certificates outside tests).
    pub development: bool,
    /// Where EST is, relative to the server: `/.well-known/est`.
    pub est: String,
}

/// `POST /api/v1/challenges`: a fresh random challenge to sign for a binding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// Base64url (no padding) of 32 random bytes; used once.
    pub challenge: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// One certificate of the medium, with the proof that the medium holds its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenCertificate {
    /// The certificate, base64 DER.
    pub certificate: String,
    /// Base64 of the signature with the certificate's key over
    /// [`crate::proof::binding_message`] (SM2: SM3 with the default ID, DER r‖s).
    pub signature: String,
}

/// `POST /api/v1/bindings`: bind the inserted key's certificates to the user's phone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingRequest {
    /// The challenge from `POST /api/v1/challenges`.
    pub challenge: String,
    /// 介质编号: the medium's serial number.
    pub medium_serial: String,
    /// The certificates to bind, each proven.
    pub certificates: Vec<ProvenCertificate>,
}

/// A binding waiting for the phone: what the client shows as a QR code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// Names the binding for status queries (not a secret).
    pub binding_id: String,
    /// The one-time token the QR code carries (a secret for the phone).
    pub token: String,
    /// The URL to encode in the QR code (it contains the token).
    pub qr_url: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Seconds left when the CA answered (the countdown; 1800 for a new binding).
    pub expires_in: i64,
}

/// Where a binding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingState {
    /// Shown, not yet confirmed.
    Pending,
    /// Confirmed on the phone (确认绑定).
    Confirmed,
    /// Refused on the phone (取消).
    Cancelled,
    /// Not confirmed within 30 minutes.
    Expired,
}

/// `GET /api/v1/bindings/{binding_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingStatus {
    /// The binding.
    pub binding_id: String,
    /// Its state.
    pub state: BindingState,
    /// RFC 3339.
    pub expires_at: String,
    /// Seconds left (0 once expired).
    pub expires_in: i64,
    /// Serial numbers (lowercase hex) of the certificates bound.
    pub certificates: Vec<String>,
}

/// Where a certificate's renewal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenewalState {
    /// Nothing applied for.
    None,
    /// Applied for (and paid), waiting for approval.
    Applied,
    /// Approved: the client may enrol the new certificate.
    Approved,
    /// Refused; see the reason.
    Rejected,
    /// The new certificate was issued (it can be fetched again).
    Issued,
}

/// 续期 (same key pair, new validity) or 变更/补发 (new key pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenewalKind {
    /// 续期: EST `simplereenroll` with the same public key.
    Renew,
    /// 变更/补发: a new key pair on the medium, EST `simpleenroll`.
    Rekey,
}

/// A renewal application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// Names the application (EST `simpleenroll` authenticates with it).
    pub id: String,
    /// 续期 or 变更/补发.
    pub kind: RenewalKind,
    /// Years of validity applied for.
    pub years: u32,
    /// 过期: applied for after the certificate expired (with attachments).
    pub expired: bool,
    /// SM2 dual certificates: besides the signing certificate the CA's key-management
    /// centre issues an encryption key pair, delivered as an enveloped key with its
    /// certificate ([`Delivery::encryption_key`]). Absent = `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dual: bool,
}

/// `GET /api/v1/certificates/{serial}/renewal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalStatus {
    /// The certificate's serial, lowercase hex.
    pub serial: String,
    /// Whether it is bound to a phone.
    pub bound: bool,
    /// Where its renewal is.
    pub state: RenewalState,
    /// Why it was rejected (`rejected` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The latest application (absent for `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<Application>,
}

/// `GET /api/v1/applications/{id}/certificates`: what was issued, again (an install
/// interrupted after enrolment fetches its certificate here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// The application.
    pub application_id: String,
    /// Issued certificates, base64 DER (signing first).
    pub certificates: Vec<String>,
    /// The issuing chain up to the root, base64 DER, issuer first.
    pub chain: Vec<String>,
    /// SM2 dual certificates ([`Application::dual`]): the encryption key pair as a GM/T
    /// 0009 `SM2EnvelopedKey`, base64 DER, sealed to the public key of the **signing**
    /// certificate issued (`certificates[0]`); its certificate is `certificates[1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<String>,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// An error: a stable code from the KeyBridge table and the CA's message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiError {
    /// The number (7xxx for CA errors).
    pub code: u32,
    /// Its snake_case name.
    pub name: String,
    /// A human message (English; the client shows its own translation of the code).
    pub message: String,
}

impl ApiError {
    /// From a code and a message.
    pub fn new(code: kb_types::ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code: code.number(), name: code.name().to_string(), message: message.into() }
    }
}

/// Base64 (standard, padded) of bytes: how certificates and signatures travel.
pub fn b64(bytes: &[u8]) -> String {
    use base64ct::Encoding;
    base64ct::Base64::encode_string(bytes)
}

/// Decode standard base64, ignoring whitespace (line breaks as RFC 2045 allows).
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    use base64ct::Encoding;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64ct::Base64::decode_vec(&compact).ok()
}

/// A certificate serial as the API writes it: lowercase hex without a leading zero byte.
pub fn serial_of(cert: &kb_pki::Certificate) -> String {
    cert.serial_hex().to_ascii_lowercase()
}
