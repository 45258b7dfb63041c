//! Small wire types shared by several methods.

use base64ct::{Base64 as B64, Encoding};
use kb_types::DeviceId;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Bytes as standard padded base64 (RFC 4648 §4). Strict: no whitespace, no
/// URL-safe alphabet, canonical padding. `Debug` prints only the length (payloads may
/// be plaintext).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Base64(pub Vec<u8>);

impl fmt::Debug for Base64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Base64({} bytes)", self.0.len())
    }
}

impl Serialize for Base64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64::encode_string(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        B64::decode_vec(&s).map(Base64).map_err(|_| D::Error::custom("invalid base64 (standard alphabet, padded)"))
    }
}

/// A certificate's SHA-1 thumbprint: 40 hex digits, either case on input, upper case
/// on output (as `certificates.list` and the desktop show it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Thumbprint(String);

impl Thumbprint {
    /// Parse 40 hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Thumbprint(s.to_ascii_uppercase()))
    }

    /// From a SHA-1 digest.
    pub fn from_sha1(digest: &[u8; 20]) -> Self {
        Thumbprint(digest.iter().map(|b| format!("{b:02X}")).collect())
    }

    /// Upper-case hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Thumbprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Thumbprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Thumbprint::parse(&s).ok_or_else(|| D::Error::custom("a thumbprint is 40 hex digits (SHA-1)"))
    }
}

/// A stream id, assigned by the server in `stream.open`; never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StreamId(pub u32);

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            0 => Err(D::Error::custom("stream id 0 is reserved")),
            n => Ok(StreamId(n)),
        }
    }
}

/// A certificate on a present medium, by thumbprint (optionally on one medium).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRef {
    /// SHA-1 thumbprint.
    pub thumbprint: Thumbprint,
    /// Restrict to this medium (when the same certificate is on two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
}

/// A certificate given by thumbprint (on a present medium) or by value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CertificateSource {
    /// `{"thumbprint": "…"}`: a certificate on a present medium.
    Thumbprint(Thumbprint),
    /// `{"der": "…base64…"}`: a certificate by value (e.g. the tender agency's).
    Der(Base64),
}

/// Input data for encrypt/decrypt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Input {
    /// `{"data": "…base64…"}`: inline, up to the message size cap.
    Data(Base64),
    /// `{"stream": 7}`: an upload stream opened with `stream.open`.
    Stream(StreamId),
}

/// Input for sign/verify: data, a precomputed digest, or a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SignInput {
    /// `{"data": "…base64…"}`: the message.
    Data(Base64),
    /// `{"digest": "…base64…"}`: the message's digest under `hash` (for SM2 with SM3:
    /// the digest of `ZA ‖ M`, i.e. `e`).
    Digest(Base64),
    /// `{"stream": 7}`: the message from an upload stream.
    Stream(StreamId),
}

/// Where a method puts its output.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputMode {
    /// `"inline"`: base64 in the result.
    #[default]
    Inline,
    /// `{"stream": 8}`: binary frames on a download stream, before the result.
    Stream(StreamId),
}

impl OutputMode {
    /// Whether this is the default.
    pub fn is_inline(&self) -> bool {
        matches!(self, OutputMode::Inline)
    }
}

/// A method's output: inline data, or the stream it went to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Inline output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Base64>,
    /// The download stream that carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamId>,
    /// Output length in bytes.
    pub length: u64,
}

/// Direction of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamDirection {
    /// Client → server.
    Upload,
    /// Server → client.
    Download,
}

/// SM2 ciphertext encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sm2Layout {
    /// GM/T 0009 DER `SEQUENCE { x, y, hash, ciphertext }`.
    Asn1,
    /// `04 ‖ C1 ‖ C3 ‖ C2` (GM/T 0003-2012).
    C1c3c2,
    /// `04 ‖ C1 ‖ C2 ‖ C3` (the 2010 draft, old middleware).
    C1c2c3,
}

/// CMS OID profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmsProfile {
    /// GM/T 0010 (SM2 OIDs `1.2.156.10197.6.1.4.2.*`).
    GmT0010,
    /// RFC 5652.
    Rfc5652,
}

pub use kb_types::{Revocation, RevocationState, ValidityStatus};

/// Events a connection can subscribe to. (`progress` needs no subscription.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    /// `device.added`.
    #[serde(rename = "device.added")]
    DeviceAdded,
    /// `device.removed`.
    #[serde(rename = "device.removed")]
    DeviceRemoved,
    /// `certificates.changed`.
    #[serde(rename = "certificates.changed")]
    CertificatesChanged,
    /// `device.offline`.
    #[serde(rename = "device.offline")]
    DeviceOffline,
    /// `device.online`.
    #[serde(rename = "device.online")]
    DeviceOnline,
}
