//! The on-disk format (see `docs/file-token-format.md`): a fixed 48-byte header with an
//! SM3 checksum, then a JSON body. Secrets in the body are SM4-GCM sealed under a key
//! derived from a random 256-bit data key; the data key is wrapped under Argon2id KEKs
//! from the user PIN and the SO PIN.

use base64ct::{Base64, Encoding};
use kb_crypto::sm4::{TAG_LEN, gcm_open, gcm_seal};
use kb_crypto::{CryptoError, PublicKey};
use kb_token::{Result, TokenError};
use kb_types::{Algorithm, KeyUsage, Pin, PinKind};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use zeroize::Zeroizing;

/// The format version this code reads and writes. `docs/file-token-format.md` states
/// the same number; a test keeps the two equal.
pub const FORMAT_VERSION: u16 = 1;

/// File magic: a high-bit byte and CR LF, so 7-bit and newline-converting copies are
/// detected at once (the PNG trick).
pub(crate) const MAGIC: [u8; 8] = *b"\x89KBKEY\r\n";
/// Header: magic (8) ‖ version u16 BE ‖ flags u16 BE (0) ‖ body length u32 BE ‖ SM3 (32).
pub(crate) const HEADER_LEN: usize = 48;
/// Largest file we read (16 seals of 1 MiB in base64 plus keys fit well below this).
pub(crate) const MAX_FILE_LEN: u64 = 32 * 1024 * 1024;

/// Largest seal image.
pub const MAX_SEAL_BYTES: usize = 1024 * 1024;
/// Most seals on one key.
pub const MAX_SEALS: usize = 16;
/// Most containers on one key.
pub const MAX_CONTAINERS: usize = 32;
/// Longest container name / seal id, in characters.
pub const MAX_NAME_CHARS: usize = 64;

pub(crate) const DATA_KEY_LEN: usize = 32;
pub(crate) const SALT_LEN: usize = 16;
pub(crate) const IV_LEN: usize = 12;
const WRAPPED_LEN: usize = IV_LEN + DATA_KEY_LEN + TAG_LEN;

/// Argon2id cost parameters, stored with every wrapped data key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// The default for new keys: 64 MiB, 3 passes, 1 lane (Argon2id, RFC 9106's
    /// "second recommended option").
    pub const DEFAULT: KdfParams = KdfParams { m_cost_kib: 64 * 1024, t_cost: 3, p_cost: 1 };

    /// 64 KiB, 1 pass: **insecure**, for tests only (the file still carries the
    /// parameters, so such a file opens with the same code).
    pub const fn weak_for_tests() -> Self {
        KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 }
    }

    /// Bounds accepted when creating or reading a file: keeps a crafted file from
    /// asking for terabytes of memory or hours of work.
    pub(crate) fn check(&self) -> std::result::Result<(), &'static str> {
        if !(1..=16).contains(&self.p_cost) {
            return Err("Argon2 lanes must be 1 to 16");
        }
        if !(1..=64).contains(&self.t_cost) {
            return Err("Argon2 passes must be 1 to 64");
        }
        if self.m_cost_kib < 8 * self.p_cost || self.m_cost_kib > 1024 * 1024 {
            return Err("Argon2 memory must be 8 KiB per lane to 1 GiB");
        }
        Ok(())
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `KdfParams` as stored: with the algorithm name and version spelled out.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KdfRecord {
    algorithm: KdfAlgorithm,
    version: u32,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

#[derive(Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum KdfAlgorithm {
    Argon2id,
}

impl KdfRecord {
    pub(crate) fn params(&self) -> KdfParams {
        KdfParams { m_cost_kib: self.m_cost_kib, t_cost: self.t_cost, p_cost: self.p_cost }
    }
    fn from_params(p: KdfParams) -> Self {
        KdfRecord {
            algorithm: KdfAlgorithm::Argon2id,
            version: 0x13,
            m_cost_kib: p.m_cost_kib,
            t_cost: p.t_cost,
            p_cost: p.p_cost,
        }
    }
}

/// One PIN: its KDF salt and parameters, the data key wrapped under the KEK, and the
/// retry counter.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PinRecord {
    pub(crate) kdf: KdfRecord,
    #[serde(with = "b64")]
    pub(crate) salt: Vec<u8>,
    /// iv (12) ‖ SM4-GCM(KEK, data key) (32) ‖ tag (16).
    #[serde(with = "b64")]
    pub(crate) wrapped_key: Vec<u8>,
    pub(crate) retries_left: u8,
    pub(crate) max_retries: u8,
    pub(crate) is_default: bool,
}

/// A key pair slot.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyRecord {
    pub(crate) algorithm: Algorithm,
    /// SubjectPublicKeyInfo DER.
    #[serde(with = "b64")]
    pub(crate) public_key: Vec<u8>,
    /// iv (12) ‖ SM4-GCM(secret key, PKCS#8 DER) ‖ tag (16); AAD binds it to the
    /// container, the usage and the public key.
    #[serde(with = "b64")]
    pub(crate) private_key: Vec<u8>,
    #[serde(with = "b64_opt", default, skip_serializing_if = "Option::is_none")]
    pub(crate) certificate: Option<Vec<u8>>,
}

/// A container.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContainerRecord {
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sign: Option<KeyRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) encrypt: Option<KeyRecord>,
}

impl ContainerRecord {
    pub(crate) fn slot(&self, usage: KeyUsage) -> &Option<KeyRecord> {
        match usage {
            KeyUsage::Encrypt => &self.encrypt,
            KeyUsage::Sign | KeyUsage::Both => &self.sign,
        }
    }
    pub(crate) fn slot_mut(&mut self, usage: KeyUsage) -> &mut Option<KeyRecord> {
        match usage {
            KeyUsage::Encrypt => &mut self.encrypt,
            KeyUsage::Sign | KeyUsage::Both => &mut self.sign,
        }
    }
}

/// A seal image.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SealRecord {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) mime: String,
    #[serde(with = "b64")]
    pub(crate) image: Vec<u8>,
}

/// The JSON body.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Body {
    pub(crate) label: String,
    pub(crate) serial: String,
    /// Unix seconds.
    pub(crate) created: i64,
    pub(crate) user_pin: PinRecord,
    pub(crate) so_pin: PinRecord,
    pub(crate) containers: Vec<ContainerRecord>,
    pub(crate) seals: Vec<SealRecord>,
}

impl Body {
    pub(crate) fn pin(&self, kind: PinKind) -> &PinRecord {
        match kind {
            PinKind::User => &self.user_pin,
            PinKind::So => &self.so_pin,
        }
    }
    pub(crate) fn pin_mut(&mut self, kind: PinKind) -> &mut PinRecord {
        match kind {
            PinKind::User => &mut self.user_pin,
            PinKind::So => &mut self.so_pin,
        }
    }
    pub(crate) fn container(&self, name: &str) -> Result<&ContainerRecord> {
        self.containers.iter().find(|c| c.name == name).ok_or_else(|| TokenError::NotFound(format!("container {name}")))
    }
    pub(crate) fn container_mut(&mut self, name: &str) -> Result<&mut ContainerRecord> {
        self.containers.iter_mut().find(|c| c.name == name).ok_or_else(|| TokenError::NotFound(format!("container {name}")))
    }
    pub(crate) fn slot(&self, name: &str, usage: KeyUsage) -> Result<&KeyRecord> {
        self.container(name)?.slot(usage).as_ref().ok_or_else(|| no_key(name, usage))
    }
}

pub(crate) fn usage_name(usage: KeyUsage) -> &'static str {
    match usage {
        KeyUsage::Encrypt => "encrypt",
        KeyUsage::Sign | KeyUsage::Both => "sign",
    }
}

pub(crate) fn no_key(container: &str, usage: KeyUsage) -> TokenError {
    TokenError::NotFound(format!("no {} key pair in container {container}", usage_name(usage)))
}

fn corrupt(why: impl Into<String>) -> TokenError {
    TokenError::Corrupt(why.into())
}

/// Serialize: header ‖ JSON.
pub(crate) fn encode(body: &Body) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(body).map_err(|e| TokenError::Io(format!("encoding the key file: {e}")))?;
    let len = u32::try_from(json.len()).ok().filter(|l| u64::from(*l) + HEADER_LEN as u64 <= MAX_FILE_LEN);
    let len = len.ok_or_else(|| TokenError::NotSupported("key file would exceed 32 MiB".into()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + json.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    let sum = checksum(&out[..16], &json);
    out.extend_from_slice(&sum);
    out.extend_from_slice(&json);
    Ok(out)
}

fn checksum(head: &[u8], body: &[u8]) -> [u8; 32] {
    use kb_crypto::sm3::{Digest, Sm3};
    let mut h = Sm3::new();
    h.update(head);
    h.update(body);
    h.finalize().into()
}

/// Parse and check a whole file. Never panics; every failure is `Corrupt` (or
/// `NotSupported` for an intact file of a newer format version).
pub(crate) fn decode(bytes: &[u8]) -> Result<Body> {
    if bytes.len() < HEADER_LEN {
        return Err(corrupt("file is truncated (shorter than its header)"));
    }
    if bytes[..8] != MAGIC {
        return Err(corrupt("not a KeyBridge key file (bad magic)"));
    }
    let be16 = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    let version = be16(8);
    let flags = be16(10);
    let len = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    let body = &bytes[HEADER_LEN..];
    if body.len() < len {
        return Err(corrupt("file is truncated"));
    }
    if body.len() > len {
        return Err(corrupt("unexpected bytes after the end of the key file"));
    }
    let sum = checksum(&bytes[..16], body);
    if !same_bytes(&sum, &bytes[16..48]) {
        return Err(corrupt("checksum mismatch"));
    }
    if version != FORMAT_VERSION {
        return Err(TokenError::NotSupported(format!(
            "key file format version {version}; this KeyBridge reads version {FORMAT_VERSION}"
        )));
    }
    if flags != 0 {
        return Err(TokenError::NotSupported(format!("key file flags {flags:#06x}")));
    }
    let parsed: Body = serde_json::from_slice(body).map_err(|e| corrupt(format!("invalid body: {e}")))?;
    validate(&parsed)?;
    Ok(parsed)
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    // Not secret (a checksum), but keep it branch-free anyway.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Semantic checks on a body whose checksum matched (so only a buggy or hand-made
/// writer can fail these).
fn validate(b: &Body) -> Result<()> {
    check_text("label", &b.label, 128).map_err(|e| corrupt(e.to_string()))?;
    check_text("serial", &b.serial, 64).map_err(|e| corrupt(e.to_string()))?;
    for rec in [&b.user_pin, &b.so_pin] {
        rec.kdf.params().check().map_err(corrupt)?;
        if rec.kdf.version != 0x13 {
            return Err(corrupt("unsupported Argon2 version"));
        }
        if rec.salt.len() != SALT_LEN || rec.wrapped_key.len() != WRAPPED_LEN {
            return Err(corrupt("bad wrapped data key"));
        }
        if rec.max_retries == 0 || rec.retries_left > rec.max_retries {
            return Err(corrupt("bad retry counter"));
        }
    }
    if b.containers.len() > MAX_CONTAINERS || b.seals.len() > MAX_SEALS {
        return Err(corrupt("too many containers or seals"));
    }
    let mut names = HashSet::new();
    for c in &b.containers {
        check_text("container name", &c.name, MAX_NAME_CHARS).map_err(|e| corrupt(e.to_string()))?;
        if !names.insert(c.name.as_str()) {
            return Err(corrupt("duplicate container name"));
        }
        for k in [&c.sign, &c.encrypt].into_iter().flatten() {
            let pk = PublicKey::from_spki_der(&k.public_key).map_err(|_| corrupt("bad public key"))?;
            if pk.algorithm() != k.algorithm {
                return Err(corrupt("public key does not match its algorithm"));
            }
            if k.private_key.len() < IV_LEN + TAG_LEN + 1 {
                return Err(corrupt("bad private key record"));
            }
        }
    }
    let mut ids = HashSet::new();
    for s in &b.seals {
        check_text("seal id", &s.id, MAX_NAME_CHARS).map_err(|e| corrupt(e.to_string()))?;
        if !ids.insert(s.id.as_str()) {
            return Err(corrupt("duplicate seal id"));
        }
        if s.image.len() > MAX_SEAL_BYTES {
            return Err(corrupt("seal image too large"));
        }
    }
    Ok(())
}

/// Names, ids and labels: 1..=max characters, no control characters.
pub(crate) fn check_text(what: &'static str, s: &str, max: usize) -> Result<()> {
    let n = s.chars().count();
    if n == 0 || n > max || s.chars().any(char::is_control) {
        return Err(TokenError::Crypto(CryptoError::InvalidParameter(match what {
            "container name" => "container name must be 1 to 64 characters, without control characters",
            "seal id" => "seal id must be 1 to 64 characters, without control characters",
            "seal name" => "seal name must be 1 to 128 characters, without control characters",
            "label" => "label must be 1 to 128 characters, without control characters",
            _ => "text field is empty, too long or has control characters",
        })));
    }
    Ok(())
}

// ---- key wrapping -------------------------------------------------------------------

fn crypto_err(e: argon2::Error) -> TokenError {
    TokenError::Io(format!("Argon2: {e}"))
}

/// Argon2id(PIN, salt) → 128-bit KEK (an SM4 key). The Argon2 working memory is
/// zeroized afterwards.
pub(crate) fn derive_kek(pin: &Pin, salt: &[u8], kdf: KdfParams) -> Result<Zeroizing<[u8; 16]>> {
    kdf.check().map_err(|e| TokenError::Crypto(CryptoError::InvalidParameter(e)))?;
    let params = argon2::Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(16)).map_err(crypto_err)?;
    let blocks = params.block_count();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut memory = Zeroizing::new(vec![argon2::Block::default(); blocks]);
    let mut out = Zeroizing::new([0u8; 16]);
    a.hash_password_into_with_memory(pin.expose(), salt, &mut out[..], memory.as_mut_slice()).map_err(crypto_err)?;
    Ok(out)
}

fn wrap_aad(kind: PinKind) -> &'static [u8] {
    match kind {
        PinKind::User => b"KBKEY/1 data key wrapped by user PIN",
        PinKind::So => b"KBKEY/1 data key wrapped by SO PIN",
    }
}

/// A new PIN record: fresh salt, the data key wrapped under the PIN's KEK, a full counter.
pub(crate) fn wrap_data_key(
    data_key: &[u8; DATA_KEY_LEN],
    pin: &Pin,
    kind: PinKind,
    kdf: KdfParams,
    max_retries: u8,
    is_default: bool,
) -> Result<PinRecord> {
    let salt = kb_crypto::rng::random_array::<SALT_LEN>()?;
    let kek = derive_kek(pin, &salt, kdf)?;
    let iv = kb_crypto::rng::random_array::<IV_LEN>()?;
    let mut wrapped = iv.to_vec();
    wrapped.extend_from_slice(&gcm_seal(&kek, &iv, wrap_aad(kind), data_key)?);
    Ok(PinRecord {
        kdf: KdfRecord::from_params(kdf),
        salt: salt.to_vec(),
        wrapped_key: wrapped,
        retries_left: max_retries,
        max_retries,
        is_default,
    })
}

/// Unwrap the data key with a PIN: `None` if the PIN is wrong (the GCM tag fails).
pub(crate) fn unwrap_data_key(rec: &PinRecord, pin: &Pin, kind: PinKind) -> Result<Option<Zeroizing<[u8; DATA_KEY_LEN]>>> {
    let kek = derive_kek(pin, &rec.salt, rec.kdf.params())?;
    let (iv, sealed) = rec.wrapped_key.split_at(IV_LEN);
    match gcm_open(&kek, iv, wrap_aad(kind), sealed) {
        Ok(plain) => {
            let plain = Zeroizing::new(plain);
            let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
            if plain.len() != DATA_KEY_LEN {
                return Err(corrupt("bad wrapped data key"));
            }
            key.copy_from_slice(&plain);
            Ok(Some(key))
        }
        Err(_) => Ok(None),
    }
}

/// The SM4 key that seals secrets: SM3("KBKEY/1 secrets" ‖ data key), first 16 bytes.
fn secret_key(data_key: &[u8; DATA_KEY_LEN]) -> Zeroizing<[u8; 16]> {
    use kb_crypto::sm3::{Digest, Sm3};
    let mut h = Sm3::new();
    h.update(b"KBKEY/1 secrets");
    h.update(data_key);
    let full = Zeroizing::new(<[u8; 32]>::from(h.finalize()));
    let mut k = Zeroizing::new([0u8; 16]);
    k.copy_from_slice(&full[..16]);
    k
}

/// AAD for a private key: binds it to its container, slot and public key, so records
/// cannot be swapped or their public key replaced without decryption failing.
pub(crate) fn key_aad(container: &str, usage: KeyUsage, spki: &[u8]) -> Vec<u8> {
    let mut aad = b"KBKEY/1 private key\0".to_vec();
    aad.extend_from_slice(usage_name(usage).as_bytes());
    aad.push(0);
    aad.extend_from_slice(container.as_bytes());
    aad.push(0);
    aad.extend_from_slice(spki);
    aad
}

/// Seal a secret: iv ‖ ciphertext ‖ tag.
pub(crate) fn seal_secret(data_key: &[u8; DATA_KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let k = secret_key(data_key);
    let iv = kb_crypto::rng::random_array::<IV_LEN>()?;
    let mut out = iv.to_vec();
    out.extend_from_slice(&gcm_seal(&k, &iv, aad, plaintext)?);
    Ok(out)
}

/// Open a secret sealed by [`seal_secret`].
pub(crate) fn open_secret(data_key: &[u8; DATA_KEY_LEN], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < IV_LEN + TAG_LEN {
        return Err(corrupt("bad secret record"));
    }
    let k = secret_key(data_key);
    let (iv, ct) = sealed.split_at(IV_LEN);
    gcm_open(&k, iv, aad, ct)
        .map(Zeroizing::new)
        .map_err(|_| corrupt("a private key cannot be decrypted with this key's data key"))
}

// ---- base64 fields --------------------------------------------------------------------

mod b64 {
    use super::{Base64, Encoding};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Base64::encode_string(v))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        Base64::decode_vec(&s).map_err(|_| serde::de::Error::custom("bad base64"))
    }
}

mod b64_opt {
    use super::{Base64, Encoding};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&Base64::encode_string(v)),
            None => s.serialize_none(),
        }
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s = <Option<String>>::deserialize(d)?;
        s.map(|s| Base64::decode_vec(&s).map_err(|_| serde::de::Error::custom("bad base64"))).transpose()
    }
}
