//! The application messages the PC and the phone exchange inside the encrypted phone link
//! (version 1). The contract is written down once in `docs/phone-link-messages.md`; a
//! test parses every example there and round-trips it.
//!
//! One message is one JSON object with a `type` member. JSON, not CBOR: the link already
//! frames, encrypts and authenticates every message, the messages are few and small, and a
//! phone app in any language (Kotlin, Swift, a web view) reads JSON without a new
//! dependency. Binary values are strings: digests and SM2 IDs in hex, everything else
//! (certificates, public keys, signatures, ciphertexts) in standard base64.
//!
//! Every field has a cap ([`MAX_MESSAGE_BYTES`], the `MAX_*` constants), checked by
//! [`decode`] (and by [`encode`], so a side never sends what its peer must refuse); a
//! violation is a [`MsgError`] with code `phone_message_invalid`.

use base64ct::{Base64, Encoding};
use kb_crypto::SignatureScheme;
use kb_crypto::rsa::RsaPadding;
use kb_types::{Algorithm, ErrorCode, HasErrorCode, HashAlgorithm, KeyUsage};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use zeroize::Zeroizing;

/// The message protocol version this crate speaks (`hello.protocol`).
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest encoded message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Most media one phone announces.
pub const MAX_MEDIA: usize = 8;
/// Most containers per medium.
pub const MAX_CONTAINERS: usize = 64;
/// Most algorithms a medium lists.
pub const MAX_ALGORITHMS: usize = 16;
/// Longest name, label, model, serial, version, medium id or container name, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest client, operation, summary, certificate description, refusal note or error
/// message, in characters.
pub const MAX_TEXT_CHARS: usize = 512;
/// Largest certificate (DER), in bytes.
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;
/// Largest public key (SubjectPublicKeyInfo DER), in bytes.
pub const MAX_PUBLIC_KEY_BYTES: usize = 2048;
/// Largest SM2 distinguishing ID, in bytes.
pub const MAX_SM2_ID_BYTES: usize = 256;
/// Largest ciphertext to decrypt (a wrapped content key), in bytes.
pub const MAX_CIPHERTEXT_BYTES: usize = 8192;
/// Largest decrypted content key, in bytes.
pub const MAX_PLAINTEXT_BYTES: usize = 4096;
/// Largest signature, in bytes.
pub const MAX_SIGNATURE_BYTES: usize = 1024;
/// Largest request id (2^53 − 1: exact in every JSON reader, JavaScript's included).
pub const MAX_ID: u64 = (1 << 53) - 1;

/// A message refused by [`decode`] or [`encode`]: malformed, over a cap, or of another
/// protocol version. Names the field, never echoes its value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct MsgError {
    /// `phone_message_invalid` or `phone_protocol_unsupported`.
    pub code: ErrorCode,
    /// What is wrong.
    pub detail: String,
}

impl MsgError {
    fn invalid(detail: impl Into<String>) -> Self {
        MsgError { code: ErrorCode::PhoneMessageInvalid, detail: detail.into() }
    }
}

impl HasErrorCode for MsgError {
    fn code(&self) -> ErrorCode {
        self.code
    }
}

fn hex_or_b64_error<E: serde::de::Error>(what: &str) -> E {
    E::custom(format!("not valid {what}"))
}

/// Bytes carried as standard base64.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct B64(pub Vec<u8>);

impl fmt::Debug for B64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "B64({} bytes)", self.0.len())
    }
}

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Base64::encode_string(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Base64::decode_vec(&s).map(B64).map_err(|_| hex_or_b64_error("base64"))
    }
}

/// Secret bytes (a decrypted content key) carried as base64: zeroized on drop, never in
/// `Debug`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretB64(pub Zeroizing<Vec<u8>>);

impl fmt::Debug for SecretB64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretB64(REDACTED)")
    }
}

impl Serialize for SecretB64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Zeroizing::new(Base64::encode_string(&self.0)))
    }
}

impl<'de> Deserialize<'de> for SecretB64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        Base64::decode_vec(&s).map(|v| SecretB64(Zeroizing::new(v))).map_err(|_| hex_or_b64_error("base64"))
    }
}

/// Bytes carried as lowercase hex (digests, SM2 IDs); upper case is read too.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Hex(pub Vec<u8>);

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hex({})", hex::encode(&self.0))
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map(Hex).map_err(|_| hex_or_b64_error("hex"))
    }
}

/// One message on the phone link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Phone → PC, first message on every link: who the phone is and its media.
    Hello(Hello),
    /// Phone → PC: the media changed (a certificate installed, a medium added).
    MediaChanged {
        /// All media now (replaces the previous list).
        media: Vec<Medium>,
    },
    /// PC → phone: sign a digest.
    Sign(SignRequest),
    /// PC → phone: decrypt a wrapped content key.
    Decrypt(DecryptRequest),
    /// PC → phone: withdraw request `id` (its prompt closes; any answer is ignored).
    Cancel {
        /// The request.
        id: u64,
    },
    /// Phone → PC: the signature for request `id`.
    Signature {
        /// The request.
        id: u64,
        /// The signature as the medium returned it (SM2: DER `SEQUENCE { r, s }`).
        signature: B64,
    },
    /// Phone → PC: the decrypted content key for request `id`.
    Plaintext {
        /// The request.
        id: u64,
        /// The plaintext.
        plaintext: SecretB64,
    },
    /// Phone → PC: the user (or the phone's state) refused request `id`.
    Refused {
        /// The request.
        id: u64,
        /// Why.
        reason: RefuseReason,
        /// The user's own words, if they typed any.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    },
    /// Either way: a failure with a stable code, for request `id` or (no `id`) for the
    /// link as a whole (the sender closes the link after it).
    Error(ErrorMsg),
}

/// Why a request was refused on the phone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefuseReason {
    /// The user pressed "refuse".
    UserRefused,
    /// The user left the waiting screen (switched app, locked the phone): aborted.
    Aborted,
    /// The phone's PIN is locked: the user cannot be verified.
    PinLocked,
}

/// A failure with a stable code (`kb_types::ErrorCode` numbers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMsg {
    /// The request it answers; absent for a link-level error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The stable code's number.
    pub code: u32,
    /// What happened, without secrets.
    #[serde(default)]
    pub message: String,
    /// For `wrong_pin`: the tries left on the phone, when it knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries_left: Option<u8>,
}

/// The phone's first message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The message protocol version ([`PROTOCOL_VERSION`]).
    pub protocol: u32,
    /// The phone.
    pub phone: PhoneInfo,
    /// Its media.
    pub media: Vec<Medium>,
}

/// Who the phone is, as its user named it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneInfo {
    /// The phone's name ("张三的手机").
    pub name: String,
    /// Its model.
    #[serde(default)]
    pub model: String,
    /// The phone app's name and version.
    #[serde(default)]
    pub app_version: String,
}

/// One key medium on the phone (the app's own key store, a file-type key, a SIM key…).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Medium {
    /// Stable id on this phone (the PC's device id is built from the phone and this).
    pub id: String,
    /// Label the user sees.
    pub label: String,
    /// Serial number.
    #[serde(default)]
    pub serial: String,
    /// Manufacturer.
    #[serde(default)]
    pub manufacturer: String,
    /// Model.
    #[serde(default)]
    pub model: String,
    /// Algorithms its key pairs may use.
    #[serde(default)]
    pub algorithms: Vec<Algorithm>,
    /// Containers with their key pairs and certificates.
    #[serde(default)]
    pub containers: Vec<Container>,
}

/// A container: at most one signing and one encryption key pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Name, unique on the medium.
    pub name: String,
    /// The signing key pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<Key>,
    /// The encryption key pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt: Option<Key>,
}

/// One key pair of a container (public parts only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// Signing, encryption, or both.
    pub usage: KeyUsage,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// The public key, SubjectPublicKeyInfo DER.
    pub public_key: B64,
    /// The installed certificate, DER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<B64>,
    /// What the phone lets the PC do with it.
    pub capabilities: KeyCapabilities,
}

/// What the PC may ask of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCapabilities {
    /// Sign digests.
    pub sign: bool,
    /// Decrypt content keys.
    pub decrypt: bool,
}

/// What the phone shows the user about a request. Plain text; empty when unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestContext {
    /// Who asks: an application's name or a web origin.
    #[serde(default)]
    pub client: String,
    /// The scene or operation: `login`, `file_signing`, `message_signing`, `encryption`,
    /// `decryption`, `bid_opening`, or the PC's operation name (`sign`, `decrypt`).
    #[serde(default)]
    pub operation: String,
    /// A short human summary.
    #[serde(default)]
    pub summary: String,
    /// The certificate: subject and serial.
    #[serde(default)]
    pub certificate: String,
}

impl From<kb_token::Purpose> for RequestContext {
    fn from(p: kb_token::Purpose) -> Self {
        RequestContext { client: p.client, operation: p.operation, summary: p.summary, certificate: p.certificate }
    }
}

impl From<RequestContext> for kb_token::Purpose {
    fn from(c: RequestContext) -> Self {
        kb_token::Purpose { client: c.client, operation: c.operation, summary: c.summary, certificate: c.certificate }
    }
}

/// Sign a digest made on the PC (for SM2, `e = SM3(ZA ‖ M)` with the scheme's ID).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    /// The request id (1 ..= [`MAX_ID`]), unique on the link.
    pub id: u64,
    /// The medium ([`Medium::id`]).
    pub medium: String,
    /// The container.
    pub container: String,
    /// Which key pair.
    pub usage: KeyUsage,
    /// The signature scheme.
    pub scheme: Scheme,
    /// The digest, as long as the scheme's hash.
    pub digest: Hex,
    /// What to show the user.
    pub context: RequestContext,
}

/// Decrypt a wrapped content key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecryptRequest {
    /// The request id (1 ..= [`MAX_ID`]), unique on the link.
    pub id: u64,
    /// The medium ([`Medium::id`]).
    pub medium: String,
    /// The container.
    pub container: String,
    /// Which key pair.
    pub usage: KeyUsage,
    /// The ciphertext (SM2 in any layout, or RSA).
    pub ciphertext: B64,
    /// RSA padding (ignored for SM2).
    #[serde(default)]
    pub padding: Padding,
    /// What to show the user.
    pub context: RequestContext,
}

/// A signature scheme (kb-crypto's `SignatureScheme` on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scheme {
    /// SM2 with SM3 and this distinguishing ID.
    Sm2Sm3 {
        /// The ID fed into ZA.
        id: Hex,
    },
    /// RSA PKCS#1 v1.5.
    RsaPkcs1 {
        /// The digest's hash.
        hash: HashAlgorithm,
    },
    /// RSA-PSS (MGF1 with the same hash, salt = hash length).
    RsaPss {
        /// The digest's hash.
        hash: HashAlgorithm,
    },
    /// ECDSA.
    Ecdsa {
        /// The digest's hash.
        hash: HashAlgorithm,
    },
}

impl From<&SignatureScheme> for Scheme {
    fn from(s: &SignatureScheme) -> Self {
        match s {
            SignatureScheme::Sm2Sm3 { id } => Scheme::Sm2Sm3 { id: Hex(id.clone()) },
            SignatureScheme::RsaPkcs1(h) => Scheme::RsaPkcs1 { hash: *h },
            SignatureScheme::RsaPss(h) => Scheme::RsaPss { hash: *h },
            SignatureScheme::Ecdsa(h) => Scheme::Ecdsa { hash: *h },
        }
    }
}

impl From<&Scheme> for SignatureScheme {
    fn from(s: &Scheme) -> Self {
        match s {
            Scheme::Sm2Sm3 { id } => SignatureScheme::Sm2Sm3 { id: id.0.clone() },
            Scheme::RsaPkcs1 { hash } => SignatureScheme::RsaPkcs1(*hash),
            Scheme::RsaPss { hash } => SignatureScheme::RsaPss(*hash),
            Scheme::Ecdsa { hash } => SignatureScheme::Ecdsa(*hash),
        }
    }
}

/// RSA decryption padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Padding {
    /// PKCS#1 v1.5.
    #[default]
    Pkcs1v15,
    /// OAEP with this hash for the label and MGF1.
    Oaep {
        /// The hash.
        hash: HashAlgorithm,
    },
}

impl From<RsaPadding> for Padding {
    fn from(p: RsaPadding) -> Self {
        match p {
            RsaPadding::Pkcs1v15 => Padding::Pkcs1v15,
            RsaPadding::Oaep(hash) => Padding::Oaep { hash },
        }
    }
}

impl From<Padding> for RsaPadding {
    fn from(p: Padding) -> Self {
        match p {
            Padding::Pkcs1v15 => RsaPadding::Pkcs1v15,
            Padding::Oaep { hash } => RsaPadding::Oaep(hash),
        }
    }
}

/// Read one message: size cap, JSON, then every field's cap.
pub fn decode(bytes: &[u8]) -> Result<Message, MsgError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(MsgError::invalid(format!("message of {} bytes exceeds the cap of {MAX_MESSAGE_BYTES}", bytes.len())));
    }
    let msg: Message = serde_json::from_slice(bytes).map_err(|e| MsgError::invalid(format!("not a valid message: {e}")))?;
    msg.validate()?;
    Ok(msg)
}

/// Write one message, after checking it against the same caps [`decode`] applies. The
/// bytes are zeroized when dropped (a plaintext travels in them).
pub fn encode(msg: &Message) -> Result<Zeroizing<Vec<u8>>, MsgError> {
    msg.validate()?;
    let bytes = Zeroizing::new(serde_json::to_vec(msg).map_err(|e| MsgError::invalid(format!("cannot encode: {e}")))?);
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(MsgError::invalid(format!("message of {} bytes exceeds the cap of {MAX_MESSAGE_BYTES}", bytes.len())));
    }
    Ok(bytes)
}

fn check_text(field: &str, s: &str, max_chars: usize) -> Result<(), MsgError> {
    if s.chars().count() > max_chars {
        return Err(MsgError::invalid(format!("{field} is longer than {max_chars} characters")));
    }
    // Control characters (line breaks, bidi overrides) could disguise what a screen shows.
    if s.chars().any(|c| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')) {
        return Err(MsgError::invalid(format!("{field} contains control characters")));
    }
    Ok(())
}

fn check_name(field: &str, s: &str) -> Result<(), MsgError> {
    if s.is_empty() {
        return Err(MsgError::invalid(format!("{field} is empty")));
    }
    check_text(field, s, MAX_NAME_CHARS)
}

fn check_bytes(field: &str, b: &[u8], max: usize) -> Result<(), MsgError> {
    if b.len() > max {
        return Err(MsgError::invalid(format!("{field} is longer than {max} bytes")));
    }
    Ok(())
}

fn check_count(field: &str, n: usize, max: usize) -> Result<(), MsgError> {
    if n > max {
        return Err(MsgError::invalid(format!("more than {max} {field}")));
    }
    Ok(())
}

fn check_id(id: u64) -> Result<(), MsgError> {
    if id == 0 || id > MAX_ID {
        return Err(MsgError::invalid(format!("request id must be 1 to {MAX_ID}")));
    }
    Ok(())
}

fn check_media(media: &[Medium]) -> Result<(), MsgError> {
    check_count("media", media.len(), MAX_MEDIA)?;
    let mut ids = std::collections::BTreeSet::new();
    for m in media {
        m.validate()?;
        if !ids.insert(m.id.as_str()) {
            return Err(MsgError::invalid("two media with the same id"));
        }
    }
    Ok(())
}

impl Message {
    /// Check every field against its cap.
    pub fn validate(&self) -> Result<(), MsgError> {
        match self {
            Message::Hello(h) => {
                if h.protocol != PROTOCOL_VERSION {
                    return Err(MsgError {
                        code: ErrorCode::PhoneProtocolUnsupported,
                        detail: format!("protocol version {} (this side speaks {PROTOCOL_VERSION})", h.protocol),
                    });
                }
                check_name("phone.name", &h.phone.name)?;
                check_text("phone.model", &h.phone.model, MAX_NAME_CHARS)?;
                check_text("phone.app_version", &h.phone.app_version, MAX_NAME_CHARS)?;
                check_media(&h.media)
            }
            Message::MediaChanged { media } => check_media(media),
            Message::Sign(s) => {
                check_id(s.id)?;
                check_name("medium", &s.medium)?;
                check_name("container", &s.container)?;
                s.context.validate()?;
                let hash = match &s.scheme {
                    Scheme::Sm2Sm3 { id } => {
                        check_bytes("scheme.id", &id.0, MAX_SM2_ID_BYTES)?;
                        HashAlgorithm::Sm3
                    }
                    Scheme::RsaPkcs1 { hash } | Scheme::RsaPss { hash } | Scheme::Ecdsa { hash } => *hash,
                };
                if s.digest.0.len() != hash.output_len() {
                    return Err(MsgError::invalid(format!("digest must be {} bytes for {}", hash.output_len(), hash.name())));
                }
                Ok(())
            }
            Message::Decrypt(d) => {
                check_id(d.id)?;
                check_name("medium", &d.medium)?;
                check_name("container", &d.container)?;
                d.context.validate()?;
                if d.ciphertext.0.is_empty() {
                    return Err(MsgError::invalid("ciphertext is empty"));
                }
                check_bytes("ciphertext", &d.ciphertext.0, MAX_CIPHERTEXT_BYTES)
            }
            Message::Cancel { id } => check_id(*id),
            Message::Signature { id, signature } => {
                check_id(*id)?;
                check_bytes("signature", &signature.0, MAX_SIGNATURE_BYTES)
            }
            Message::Plaintext { id, plaintext } => {
                check_id(*id)?;
                check_bytes("plaintext", &plaintext.0, MAX_PLAINTEXT_BYTES)
            }
            Message::Refused { id, note, .. } => {
                check_id(*id)?;
                check_text("note", note, MAX_TEXT_CHARS)
            }
            Message::Error(e) => {
                if let Some(id) = e.id {
                    check_id(id)?;
                }
                check_text("message", &e.message, MAX_TEXT_CHARS)
            }
        }
    }

    /// The request id a message answers or names, if any.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Message::Sign(SignRequest { id, .. })
            | Message::Decrypt(DecryptRequest { id, .. })
            | Message::Cancel { id }
            | Message::Signature { id, .. }
            | Message::Plaintext { id, .. }
            | Message::Refused { id, .. } => Some(*id),
            Message::Error(e) => e.id,
            Message::Hello(_) | Message::MediaChanged { .. } => None,
        }
    }
}

impl RequestContext {
    fn validate(&self) -> Result<(), MsgError> {
        check_text("context.client", &self.client, MAX_TEXT_CHARS)?;
        check_text("context.operation", &self.operation, MAX_NAME_CHARS)?;
        check_text("context.summary", &self.summary, MAX_TEXT_CHARS)?;
        check_text("context.certificate", &self.certificate, MAX_TEXT_CHARS)
    }
}

impl Medium {
    fn validate(&self) -> Result<(), MsgError> {
        check_name("medium.id", &self.id)?;
        check_text("medium.label", &self.label, MAX_NAME_CHARS)?;
        check_text("medium.serial", &self.serial, MAX_NAME_CHARS)?;
        check_text("medium.manufacturer", &self.manufacturer, MAX_NAME_CHARS)?;
        check_text("medium.model", &self.model, MAX_NAME_CHARS)?;
        check_count("algorithms", self.algorithms.len(), MAX_ALGORITHMS)?;
        check_count("containers", self.containers.len(), MAX_CONTAINERS)?;
        let mut names = std::collections::BTreeSet::new();
        for c in &self.containers {
            check_name("container.name", &c.name)?;
            if !names.insert(c.name.as_str()) {
                return Err(MsgError::invalid("two containers with the same name"));
            }
            for k in c.sign.iter().chain(c.encrypt.iter()) {
                if k.public_key.0.is_empty() {
                    return Err(MsgError::invalid("public_key is empty"));
                }
                check_bytes("public_key", &k.public_key.0, MAX_PUBLIC_KEY_BYTES)?;
                if let Some(cert) = &k.certificate {
                    check_bytes("certificate", &cert.0, MAX_CERTIFICATE_BYTES)?;
                }
            }
        }
        Ok(())
    }
}

/// A stable code's number from a message, as an [`ErrorCode`] (`internal` when this side
/// does not know it: a newer peer's code).
pub fn code_from_number(n: u32) -> ErrorCode {
    ErrorCode::from_number(n).unwrap_or(ErrorCode::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(digest: Vec<u8>) -> Message {
        Message::Sign(SignRequest {
            id: 7,
            medium: "file:demo".into(),
            container: "c1".into(),
            usage: KeyUsage::Sign,
            scheme: Scheme::from(&SignatureScheme::sm2_default()),
            digest: Hex(digest),
            context: RequestContext { client: "https://bid.example".into(), ..Default::default() },
        })
    }

    #[test]
    fn a_sign_request_round_trips_and_its_digest_length_is_checked() {
        let m = sign(vec![0xab; 32]);
        let bytes = encode(&m).unwrap();
        assert_eq!(decode(&bytes).unwrap(), m);
        assert_eq!(m.request_id(), Some(7));
        let e = encode(&sign(vec![0xab; 31])).unwrap_err();
        assert_eq!(e.code(), ErrorCode::PhoneMessageInvalid);
    }

    #[test]
    fn caps_and_control_characters_are_refused_with_the_stable_code() {
        let long = Message::Refused { id: 1, reason: RefuseReason::UserRefused, note: "x".repeat(MAX_TEXT_CHARS + 1) };
        assert_eq!(encode(&long).unwrap_err().code, ErrorCode::PhoneMessageInvalid);
        let bidi = br#"{"type":"refused","id":1,"reason":"user_refused","note":"ok\u202e"}"#;
        assert_eq!(decode(bidi).unwrap_err().code, ErrorCode::PhoneMessageInvalid);
        assert_eq!(decode(br#"{"type":"cancel","id":0}"#).unwrap_err().code, ErrorCode::PhoneMessageInvalid);
        assert_eq!(decode(&vec![b' '; MAX_MESSAGE_BYTES + 1]).unwrap_err().code, ErrorCode::PhoneMessageInvalid);
        let v2 = br#"{"type":"hello","protocol":2,"phone":{"name":"p"},"media":[]}"#;
        assert_eq!(decode(v2).unwrap_err().code, ErrorCode::PhoneProtocolUnsupported);
    }

    #[test]
    fn plaintext_is_redacted_in_debug() {
        let m = Message::Plaintext { id: 1, plaintext: SecretB64(Zeroizing::new(b"content key".to_vec())) };
        assert!(!format!("{m:?}").contains("content"));
        assert!(format!("{m:?}").contains("REDACTED"));
    }
}
