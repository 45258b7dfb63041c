//! Every method, declared once: its wire name, its params type and its result type.
//!
//! Params are strict (`deny_unknown_fields`: a misspelt option is an error, never
//! silently ignored); results are read leniently by clients (new fields may be added
//! within a schema version). No params type has a PIN or password field: PINs are only
//! ever entered in KeyBridge's own dialog.

use crate::envelope::Id;
use crate::types::{
    Base64, CertificateRef, CertificateSource, CmsProfile, EventKind, Input, Output, OutputMode, Revocation, SignInput,
    Sm2Layout, StreamDirection, StreamId, Thumbprint, ValidityStatus,
};
use kb_types::{Algorithm, DeviceId, DeviceInfo, HashAlgorithm, KeyUsage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A method's types, for typed clients: `client.call::<spec::Sign>(params)`.
pub trait RpcMethod {
    /// The method.
    const METHOD: Method;
    /// Its params.
    type Params: Serialize + for<'de> Deserialize<'de>;
    /// Its result.
    type Result: Serialize + for<'de> Deserialize<'de>;
}

macro_rules! methods {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $params:ty => $result:ty; )*) => {
        /// Every method of the bridge.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Method {
            $( $(#[$doc])* $variant, )*
        }

        impl Method {
            /// Every method, in document order.
            pub const ALL: &'static [Method] = &[ $( Method::$variant, )* ];

            /// The wire name.
            pub const fn name(self) -> &'static str {
                match self { $( Method::$variant => $name, )* }
            }

            /// Look a method up by its wire name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $( $name => Some(Method::$variant), )* _ => None }
            }

            /// Typed params from a JSON object.
            pub fn parse_params(self, params: Value) -> Result<Call, serde_json::Error> {
                Ok(match self { $( Method::$variant => Call::$variant(serde_json::from_value(params)?), )* })
            }

            /// A typed result from the `result` of this method's response.
            pub fn parse_result(self, result: Value) -> Result<Reply, serde_json::Error> {
                Ok(match self { $( Method::$variant => Reply::$variant(serde_json::from_value(result)?), )* })
            }
        }

        /// A call: a method with its typed params.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Call {
            $( $(#[$doc])* $variant($params), )*
        }

        impl Call {
            /// Which method.
            pub fn method(&self) -> Method {
                match self { $( Call::$variant(_) => Method::$variant, )* }
            }

            /// The params as JSON.
            pub fn params_value(&self) -> Result<Value, serde_json::Error> {
                match self { $( Call::$variant(p) => serde_json::to_value(p), )* }
            }
        }

        /// A typed result of some method.
        #[derive(Clone, Debug, PartialEq)]
        #[allow(clippy::large_enum_variant)] // plain values, built once per response
        pub enum Reply {
            $( $(#[$doc])* $variant($result), )*
        }

        impl Reply {
            /// Which method it answers.
            pub fn method(&self) -> Method {
                match self { $( Reply::$variant(_) => Method::$variant, )* }
            }

            /// The result as JSON.
            pub fn to_value(&self) -> Result<Value, serde_json::Error> {
                match self { $( Reply::$variant(r) => serde_json::to_value(r), )* }
            }
        }

        /// One marker type per method, implementing [`RpcMethod`].
        pub mod spec {
            use super::*;
            $(
                $(#[$doc])*
                #[derive(Clone, Copy, Debug)]
                pub struct $variant;
                impl RpcMethod for $variant {
                    const METHOD: Method = Method::$variant;
                    type Params = $params;
                    type Result = $result;
                }
            )*
        }
    };
}

methods! {
    /// Negotiate the schema version; must be the first call on a connection.
    Hello = "hello", HelloParams => HelloResult;
    /// Key media present now.
    DevicesList = "devices.list", DevicesListParams => DevicesListResult;
    /// Certificates on the present media, filtered.
    CertificatesList = "certificates.list", CertificatesListParams => CertificatesListResult;
    /// One certificate: DER, PEM and parsed fields.
    CertificatesGet = "certificates.get", CertificatesGetParams => CertificateDetails;
    /// Sign with a certificate's private key (the PIN is asked for by KeyBridge).
    Sign = "sign", SignParams => SignResult;
    /// Verify a raw or CMS signature, with chain status.
    Verify = "verify", VerifyParams => VerifyResult;
    /// Encrypt to certificates: SM2 raw or a CMS envelope.
    Encrypt = "encrypt", EncryptParams => EncryptResult;
    /// Decrypt with an encryption certificate's private key.
    Decrypt = "decrypt", DecryptParams => DecryptResult;
    /// Open a stream for bulk data carried in binary frames.
    StreamOpen = "stream.open", StreamOpenParams => StreamOpenResult;
    /// Close (or abort) a stream.
    StreamClose = "stream.close", StreamCloseParams => StreamCloseResult;
    /// Cancel a request in flight.
    Cancel = "cancel", CancelParams => CancelResult;
    /// Subscribe to events.
    Subscribe = "subscribe", SubscribeParams => SubscriptionResult;
    /// Unsubscribe from events.
    Unsubscribe = "unsubscribe", SubscribeParams => SubscriptionResult;
}

// ---- hello ----

/// `hello` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloParams {
    /// The newest schema version the client speaks.
    pub schema_version: u32,
    /// The client SDK's name (`keybridge-js`, `keybridge-rs`, a tool's own name).
    pub sdk: String,
    /// The client SDK's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_version: Option<String>,
}

/// Server limits, announced in `hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest text frame accepted, in bytes.
    pub max_message_bytes: u64,
    /// Largest binary frame payload, in bytes.
    pub max_chunk_bytes: u64,
    /// Requests in flight per connection.
    pub max_in_flight: u32,
    /// Time limit of a request without user interaction, in milliseconds.
    pub request_timeout_ms: u64,
}

/// `hello` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloResult {
    /// The schema version this connection uses: min(client's, server's).
    pub schema_version: u32,
    /// `KeyBridge`.
    pub product: String,
    /// The server's product version.
    pub product_version: String,
    /// What this server can do (see `capability`).
    pub capabilities: Vec<String>,
    /// Limits.
    pub limits: Limits,
}

// ---- devices.list ----

/// `devices.list` params: none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesListParams {}

/// `devices.list` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicesListResult {
    /// Known media (a medium out of reach is listed too, and named in `offline`).
    pub devices: Vec<DeviceInfo>,
    /// The ids of the listed media that are out of reach now (a phone or BLE key that
    /// disconnected); omitted when none is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offline: Vec<kb_types::DeviceId>,
}

// ---- certificates ----

/// `certificates.list` params: every filter is optional and they combine with AND.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificatesListParams {
    /// `sign` or `encrypt` (a `both` certificate matches either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<KeyUsage>,
    /// Case-insensitive substring of the issuer DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_contains: Option<String>,
    /// Case-insensitive substring of the subject DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_contains: Option<String>,
    /// Only this medium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
    /// Only certificates valid at this time (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_at: Option<i64>,
    /// `false`: leave out revoked certificates (what a page offering a choice should
    /// ask for); `true`: only revoked ones; absent: all, each with its `revocation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<bool>,
}

/// A certificate as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSummary {
    /// SHA-1 thumbprint: how methods select it.
    pub thumbprint: Thumbprint,
    /// The medium holding it.
    pub device: DeviceId,
    /// The container holding its key pair.
    pub container: String,
    /// Signing, encryption or both.
    pub usage: KeyUsage,
    /// Public-key algorithm.
    pub algorithm: Algorithm,
    /// Subject DN, most specific first.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial, upper-case hex.
    pub serial: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Validity now.
    pub status: ValidityStatus,
    /// Revocation (checked against the CA when the chain reaches a trusted root).
    pub revocation: Revocation,
}

/// `certificates.list` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificatesListResult {
    /// Matching certificates.
    pub certificates: Vec<CertificateSummary>,
}

/// `certificates.get` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificatesGetParams {
    /// Which certificate.
    pub certificate: CertificateRef,
}

/// One extension, decoded for display.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionDetails {
    /// Dotted OID.
    pub oid: String,
    /// Known name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Critical flag.
    pub critical: bool,
    /// Human-readable value.
    pub value: String,
}

/// `certificates.get` result: the summary plus the encodings and parsed fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateDetails {
    /// What `certificates.list` shows.
    #[serde(flatten)]
    pub summary: CertificateSummary,
    /// DER, base64.
    pub der: Base64,
    /// PEM.
    pub pem: String,
    /// X.509 version (1–3).
    pub version: u8,
    /// Display form of the public key (`SM2 (256 bit)`).
    pub public_key_description: String,
    /// Signature algorithm name or OID.
    pub signature_algorithm: String,
    /// keyUsage flag names.
    pub key_usage: Vec<String>,
    /// extKeyUsage names or OIDs.
    pub extended_key_usage: Vec<String>,
    /// CA certificate.
    pub is_ca: bool,
    /// Whole days until notAfter (negative when expired).
    pub days_left: i64,
    /// Every extension.
    pub extensions: Vec<ExtensionDetails>,
}

// ---- sign / verify ----

/// Signature formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignFormat {
    /// A bare signature (SM2: DER `SEQUENCE { r, s }`; RSA PKCS#1 v1.5; ECDSA DER).
    Raw,
    /// CMS SignedData with the content inside (GM/T 0010 for SM2).
    CmsAttached,
    /// CMS SignedData without the content.
    CmsDetached,
}

/// `sign` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignParams {
    /// The signing certificate (its key pair signs).
    pub certificate: CertificateRef,
    /// What to sign: data, a precomputed digest (`raw` and `cms_detached` only), or a stream.
    pub input: SignInput,
    /// Output format.
    pub format: SignFormat,
    /// Digest: default `sm3` for SM2, `sha256` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<HashAlgorithm>,
    /// SM2 distinguishing ID (UTF-8); default `1234567812345678`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm2_id: Option<String>,
    /// CMS OID profile; default GM/T 0010 for SM2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<CmsProfile>,
}

/// `sign` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResult {
    /// The signature or CMS SignedData (DER), base64.
    pub signature: Base64,
    /// Its format.
    pub format: SignFormat,
    /// Key algorithm.
    pub algorithm: Algorithm,
    /// Digest used.
    pub hash: HashAlgorithm,
    /// The signing certificate.
    pub certificate: Thumbprint,
}

/// `verify` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyParams {
    /// The signature or CMS SignedData, base64.
    pub signature: Base64,
    /// Its format.
    pub format: SignFormat,
    /// The signed content: required for `raw` and `cms_detached`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<SignInput>,
    /// The signer's certificate: required for `raw`; for CMS, the embedded one is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateSource>,
    /// Digest for `raw`: default `sm3` for SM2, `sha256` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<HashAlgorithm>,
    /// SM2 distinguishing ID for `raw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm2_id: Option<String>,
    /// Build and check the signer's chain against KeyBridge's trust store (default true).
    #[serde(default = "yes")]
    pub check_chain: bool,
    /// Time to check validity at, Unix seconds (default: the CMS signing time, or now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    /// Check whether the signer's certificate is revoked, when its chain is trusted
    /// (default true). A revoked signer makes the signature invalid
    /// (`3030 certificate_revoked`): no signing time inside a signature proves it was
    /// made before the revocation.
    #[serde(default = "yes")]
    pub check_revocation: bool,
}

fn yes() -> bool {
    true
}

/// Chain status of a verified signer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainStatus {
    /// The chain reaches a trusted root and every certificate is valid.
    Trusted,
    /// The chain failed; `chain_error` says why.
    Untrusted,
    /// Not checked (`check_chain: false`).
    NotChecked,
}

/// Who signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerSummary {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial, upper-case hex.
    pub serial: String,
    /// SHA-1 thumbprint.
    pub thumbprint: Thumbprint,
}

/// `verify` result. A signature that does not verify is a result (`valid: false` with
/// `error` set to its KeyBridge code), not a JSON-RPC error; malformed input is an error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResult {
    /// The signature verifies over the content.
    pub valid: bool,
    /// Why not (`2001 signature_invalid`, `3021 cms_digest_mismatch`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<u32>,
    /// The signer, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<SignerSummary>,
    /// Chain status.
    pub chain: ChainStatus,
    /// Why the chain failed (`3002 certificate_expired`, `3004 unknown_issuer`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_error: Option<u32>,
    /// The CMS signing time, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_time: Option<i64>,
    /// The signer certificate's revocation (absent when the signer is not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Revocation>,
}

// ---- encrypt / decrypt ----

/// Encryption formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncryptFormat {
    /// SM2 public-key encryption of short data (a session key, a price): one recipient,
    /// at most 1 KiB of input.
    Sm2Raw,
    /// CMS EnvelopedData (GM/T 0010 for SM2 recipients, RFC 5652 otherwise), any size.
    CmsEnvelope,
}

/// `encrypt` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptParams {
    /// Format.
    pub format: EncryptFormat,
    /// Recipients' encryption certificates (exactly one for `sm2_raw`).
    pub recipients: Vec<CertificateSource>,
    /// The plaintext.
    pub input: Input,
    /// Where the ciphertext goes (default inline).
    #[serde(default, skip_serializing_if = "OutputMode::is_inline")]
    pub output: OutputMode,
    /// SM2 ciphertext layout for `sm2_raw` (default `asn1`, GM/T 0009).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm2_layout: Option<Sm2Layout>,
    /// CMS OID profile (default by recipients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<CmsProfile>,
    /// `cms_envelope` only: also sign the same content with this signing certificate —
    /// a detached CMS signature, made in the same pass (the content is read once, and
    /// hashed on a second core while it is encrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<CertificateRef>,
}

/// `encrypt` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptResult {
    /// Format.
    pub format: EncryptFormat,
    /// The ciphertext or envelope.
    pub output: Output,
    /// With `signer`: the detached CMS SignedData (DER) over the content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Base64>,
}

/// `decrypt` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptParams {
    /// Format.
    pub format: EncryptFormat,
    /// The encryption certificate whose key decrypts: required for `sm2_raw`; for an
    /// envelope, default = the first present certificate matching a recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateRef>,
    /// The ciphertext.
    pub input: Input,
    /// Where the plaintext goes (default inline).
    #[serde(default, skip_serializing_if = "OutputMode::is_inline")]
    pub output: OutputMode,
    /// SM2 ciphertext layout for `sm2_raw` (default: detected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm2_layout: Option<Sm2Layout>,
    /// Decrypt with a certificate known to be revoked (to open old data). Without it a
    /// revoked certificate is never chosen and naming one is refused with
    /// `3030 certificate_revoked`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_revoked: bool,
}

/// `decrypt` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecryptResult {
    /// The plaintext.
    pub output: Output,
    /// The certificate whose key decrypted.
    pub certificate: Thumbprint,
}

// ---- streams ----

/// `stream.open` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOpenParams {
    /// `upload` (client → server input) or `download` (server → client output).
    pub direction: StreamDirection,
    /// Total length, when known (used for progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
}

/// `stream.open` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOpenResult {
    /// The new stream's id (never 0).
    pub stream: StreamId,
    /// Largest payload per binary frame.
    pub max_chunk_bytes: u64,
}

/// `stream.close` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamCloseParams {
    /// Which stream.
    pub stream: StreamId,
}

/// `stream.close` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCloseResult {
    /// The stream.
    pub stream: StreamId,
    /// Payload bytes it carried.
    pub bytes: u64,
}

// ---- cancel, subscriptions ----

/// `cancel` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelParams {
    /// The id of the request to cancel.
    pub id: Id,
}

/// `cancel` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelResult {
    /// Whether a request was still in flight (it then fails with `5009 request_cancelled`).
    pub cancelled: bool,
}

/// `subscribe` / `unsubscribe` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeParams {
    /// Events to add or remove.
    pub events: Vec<EventKind>,
}

/// `subscribe` / `unsubscribe` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionResult {
    /// The connection's subscriptions now.
    pub events: Vec<EventKind>,
}
