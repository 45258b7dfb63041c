//! The GM/T 0016-2012 SKF C ABI: base types, the structures KeyBridge exchanges, algorithm
//! identifiers, and the **one** table of `SAR_*` result codes with their mapping to and
//! from [`TokenError`]. Plain values, no I/O. Shared by the loader (this crate) and the
//! software module `kb-skf-module`, so both sides agree on every byte.
//!
//! Types follow the standard's §6.2 on every platform: `ULONG` and `BOOL` are 32-bit,
//! handles are `void *`. Structures follow the vendor headers' `#pragma pack(1)`: it only
//! changes [`DevInfo`] (its `ULONG`s start at byte 198, not 200); the ECC blobs have the
//! same layout packed or not. 256-bit SM2 values sit right-aligned in the 64-byte fields
//! (`ECC_MAX_XCOORDINATE_BITS_LEN / 8`), leading bytes zero.

use kb_crypto::CryptoError;
use kb_crypto::sm2::Sm2Ciphertext;
use kb_token::TokenError;
use std::ffi::{c_char, c_void};

/// `ULONG`: unsigned 32-bit.
pub type Ulong = u32;
/// `BOOL`: signed 32-bit, `TRUE` = 1.
pub type Bool = i32;
/// `HANDLE` / `DEVHANDLE` / `HAPPLICATION` / `HCONTAINER`.
pub type Handle = *mut c_void;

/// `ADMIN_TYPE`: the administrator (SO) PIN.
pub const ADMIN_TYPE: Ulong = 0;
/// `USER_TYPE`: the user PIN.
pub const USER_TYPE: Ulong = 1;

/// `SGD_SM2_1`: SM2 signatures.
pub const SGD_SM2_1: Ulong = 0x0002_0100;
/// `SGD_SM2_3`: SM2 encryption.
pub const SGD_SM2_3: Ulong = 0x0002_0400;
/// `SGD_SM3`.
pub const SGD_SM3: Ulong = 0x0000_0001;
/// `SGD_SM4_ECB` (`SGD_SMS4_ECB` in older headers): SM4 in ECB mode, also the usual
/// device-authentication algorithm (`DEVINFO.DevAuthAlgId`).
pub const SGD_SM4_ECB: Ulong = 0x0000_0401;
/// `SGD_SM4_CBC`: SM4 in CBC mode.
pub const SGD_SM4_CBC: Ulong = 0x0000_0402;

/// `SKF_GetDevState`: the device is absent.
pub const DEV_ABSENT_STATE: Ulong = 0x0000_0000;
/// `SKF_GetDevState`: the device is present.
pub const DEV_PRESENT_STATE: Ulong = 0x0000_0001;

/// `BLOCKCIPHERPARAM.PaddingType`: no padding (input a whole number of blocks).
pub const PADDING_NONE: Ulong = 0;
/// `BLOCKCIPHERPARAM.PaddingType`: PKCS#5 (PKCS#7 on 16-byte blocks).
pub const PADDING_PKCS5: Ulong = 1;

/// `BLOCKCIPHERPARAM` (GM/T 0016-2012 §6.4.9), passed by value to
/// `SKF_EncryptInit`/`SKF_DecryptInit`: 44 bytes, the same packed or not.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockCipherParam {
    /// Initial vector, `iv_len` bytes used.
    pub iv: [u8; 32],
    /// Length of the IV.
    pub iv_len: Ulong,
    /// [`PADDING_NONE`] or [`PADDING_PKCS5`].
    pub padding_type: Ulong,
    /// Feedback bits (CFB/OFB only).
    pub feed_bit_len: Ulong,
}

/// `SKF_GetContainerType`: empty container.
pub const CONTAINER_EMPTY: Ulong = 0;
/// `SKF_GetContainerType`: RSA container.
pub const CONTAINER_RSA: Ulong = 1;
/// `SKF_GetContainerType`: ECC (SM2) container.
pub const CONTAINER_ECC: Ulong = 2;

/// `SKF_WaitForDevEvent`: a device was inserted.
pub const EVENT_INSERTED: Ulong = 1;
/// `SKF_WaitForDevEvent`: a device was removed.
pub const EVENT_REMOVED: Ulong = 2;

/// `VERSION`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Version {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
}

/// `DEVINFO` (GM/T 0016-2012 §6.4.1), packed as in the vendor headers: 294 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct DevInfo {
    /// Structure version.
    pub version: Version,
    /// Manufacturer, NUL-terminated.
    pub manufacturer: [u8; 64],
    /// Issuer, NUL-terminated.
    pub issuer: [u8; 64],
    /// Label, NUL-terminated.
    pub label: [u8; 32],
    /// Serial number, NUL-terminated.
    pub serial_number: [u8; 32],
    /// Hardware version.
    pub hw_version: Version,
    /// Firmware version.
    pub firmware_version: Version,
    /// Block cipher algorithms (`SGD_*` bits).
    pub alg_sym_cap: Ulong,
    /// Asymmetric algorithms.
    pub alg_asym_cap: Ulong,
    /// Hash algorithms.
    pub alg_hash_cap: Ulong,
    /// Device authentication algorithm.
    pub dev_auth_alg_id: Ulong,
    /// Total space.
    pub total_space: Ulong,
    /// Free space.
    pub free_space: Ulong,
    /// Largest ECC ciphertext the device decrypts.
    pub max_ecc_buffer_size: Ulong,
    /// Largest block/hash input.
    pub max_buffer_size: Ulong,
    /// Reserved.
    pub reserved: [u8; 64],
}

impl Default for DevInfo {
    fn default() -> Self {
        DevInfo {
            version: Version::default(),
            manufacturer: [0; 64],
            issuer: [0; 64],
            label: [0; 32],
            serial_number: [0; 32],
            hw_version: Version::default(),
            firmware_version: Version::default(),
            alg_sym_cap: 0,
            alg_asym_cap: 0,
            alg_hash_cap: 0,
            dev_auth_alg_id: 0,
            total_space: 0,
            free_space: 0,
            max_ecc_buffer_size: 0,
            max_buffer_size: 0,
            reserved: [0; 64],
        }
    }
}

/// A NUL-terminated text field of a structure, as a string (lossy UTF-8, trimmed).
pub fn field_text(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).trim().to_string()
}

/// Fill a text field: UTF-8, cut at a character boundary so a NUL always fits.
pub fn set_field_text(field: &mut [u8], text: &str) {
    field.fill(0);
    let mut n = text.len().min(field.len().saturating_sub(1));
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    field[..n].copy_from_slice(&text.as_bytes()[..n]);
}

/// `ECCPUBLICKEYBLOB`: 132 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EccPublicKeyBlob {
    /// Key size in bits (256 for SM2).
    pub bit_len: Ulong,
    /// X, right-aligned.
    pub x: [u8; 64],
    /// Y, right-aligned.
    pub y: [u8; 64],
}

impl EccPublicKeyBlob {
    /// The blob of an SM2 public key.
    pub fn from_sm2(key: &kb_crypto::sm2::Sm2PublicKey) -> Self {
        let xy = key.to_xy();
        EccPublicKeyBlob { bit_len: 256, x: pad64(&xy[..32]), y: pad64(&xy[32..]) }
    }

    /// The SM2 public key in the blob; `Corrupt` unless it is a 256-bit point on the curve.
    pub fn to_sm2(&self) -> Result<kb_crypto::sm2::Sm2PublicKey, TokenError> {
        if self.bit_len != 256 {
            return Err(TokenError::Corrupt(format!("the module returned a {}-bit ECC key (SM2 is 256)", self.bit_len)));
        }
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..33].copy_from_slice(&unpad64(&self.x)?);
        sec1[33..].copy_from_slice(&unpad64(&self.y)?);
        kb_crypto::sm2::Sm2PublicKey::from_sec1(&sec1)
            .map_err(|_| TokenError::Corrupt("the module returned an invalid SM2 point".into()))
    }
}

/// `ECCSIGNATUREBLOB`: `r` and `s`, 64 bytes each, right-aligned.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EccSignatureBlob {
    /// r.
    pub r: [u8; 64],
    /// s.
    pub s: [u8; 64],
}

/// A 32-byte big-endian value right-aligned in a 64-byte field.
pub fn pad64(v: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    let n = v.len().min(64);
    out[64 - n..].copy_from_slice(&v[v.len() - n..]);
    out
}

/// The 32-byte value of a right-aligned 64-byte field; `Corrupt` if it is wider.
pub fn unpad64(f: &[u8; 64]) -> Result<[u8; 32], TokenError> {
    if f[..32].iter().any(|b| *b != 0) {
        return Err(TokenError::Corrupt("an ECC value wider than 256 bits".into()));
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&f[32..]);
    Ok(out)
}

/// Bytes of `ECCCIPHERBLOB` before `Cipher`: X(64) Y(64) HASH(32) CipherLen(4).
pub const ECC_CIPHER_HEADER_LEN: usize = 164;

/// Largest C2 (plaintext) length either side accepts in an `ECCCIPHERBLOB`.
pub const MAX_ECC_CIPHER_LEN: usize = 4096;

/// Encode an SM2 ciphertext as an `ECCCIPHERBLOB` (header + `CipherLen` bytes).
pub fn encode_cipher_blob(ct: &Sm2Ciphertext) -> Vec<u8> {
    let mut out = Vec::with_capacity(ECC_CIPHER_HEADER_LEN + ct.c2.len());
    out.extend_from_slice(&pad64(&ct.x));
    out.extend_from_slice(&pad64(&ct.y));
    out.extend_from_slice(&ct.c3);
    out.extend_from_slice(&(ct.c2.len() as Ulong).to_ne_bytes());
    out.extend_from_slice(&ct.c2);
    out
}

/// `CipherLen` of an `ECCCIPHERBLOB` header (`None` if the header is short).
pub fn cipher_blob_len(header: &[u8]) -> Option<usize> {
    let b: [u8; 4] = header.get(160..164)?.try_into().ok()?;
    Some(Ulong::from_ne_bytes(b) as usize)
}

/// Decode an `ECCCIPHERBLOB` (exactly header + `CipherLen` bytes).
pub fn decode_cipher_blob(b: &[u8]) -> Result<Sm2Ciphertext, TokenError> {
    let bad = || TokenError::Crypto(CryptoError::Malformed { what: "ECCCIPHERBLOB" });
    let len = cipher_blob_len(b).ok_or_else(bad)?;
    if len == 0 || len > MAX_ECC_CIPHER_LEN || b.len() != ECC_CIPHER_HEADER_LEN + len {
        return Err(bad());
    }
    let field = |r: std::ops::Range<usize>| -> Result<[u8; 64], TokenError> { b[r].try_into().map_err(|_| bad()) };
    let x = unpad64(&field(0..64)?).map_err(|_| bad())?;
    let y = unpad64(&field(64..128)?).map_err(|_| bad())?;
    let c3: [u8; 32] = b[128..160].try_into().map_err(|_| bad())?;
    Ok(Sm2Ciphertext { x, y, c3, c2: b[ECC_CIPHER_HEADER_LEN..].to_vec() })
}

/// `ENVELOPEDKEYBLOB` bytes before the `ECCCIPHERBLOB`: Version(4) ulSymmAlgID(4)
/// ulBits(4) cbEncryptedPriKey(64) PubKey(132) — 4-aligned, the same packed or not.
pub const ENVELOPED_KEY_HEADER_LEN: usize = 12 + 64 + 132;

/// `ENVELOPEDKEYBLOB.Version`.
pub const ENVELOPED_KEY_VERSION: Ulong = 1;

/// An SM2 enveloped key as the `ENVELOPEDKEYBLOB` of `SKF_ImportECCKeyPair` (GM/T 0016
/// §6.4.8): version 1, `SGD_SM4_ECB`, 256 bits; `cbEncryptedPriKey` holds the 32 bytes of
/// SM4-ECB(d) right-aligned like every 256-bit value in a 64-byte field; the
/// `ECCCIPHERBLOB` carries the SM4 key sealed to the container's signing key. The SM4 key
/// stays wrapped: converting needs no secret.
pub fn encode_enveloped_key_blob(env: &kb_token::Sm2EnvelopedKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENVELOPED_KEY_HEADER_LEN + ECC_CIPHER_HEADER_LEN + 16);
    out.extend_from_slice(&ENVELOPED_KEY_VERSION.to_ne_bytes());
    out.extend_from_slice(&SGD_SM4_ECB.to_ne_bytes());
    out.extend_from_slice(&256u32.to_ne_bytes());
    out.extend_from_slice(&pad64(&env.encrypted_private_key));
    let pk = EccPublicKeyBlob::from_sm2(&env.public_key);
    out.extend_from_slice(&pk.bit_len.to_ne_bytes());
    out.extend_from_slice(&pk.x);
    out.extend_from_slice(&pk.y);
    out.extend_from_slice(&encode_cipher_blob(&env.encrypted_key));
    out
}

/// Read an `ENVELOPEDKEYBLOB` (header, `ECCCIPHERBLOB` header and `CipherLen` bytes):
/// version 1, `SGD_SM4_ECB`, 256 bits and a 16-byte wrapped SM4 key only.
pub fn decode_enveloped_key_blob(b: &[u8]) -> Result<kb_token::Sm2EnvelopedKey, TokenError> {
    let bad = |why: &str| TokenError::EnvelopedKey(format!("ENVELOPEDKEYBLOB: {why}"));
    let word = |at: usize| -> Result<Ulong, TokenError> {
        let w: [u8; 4] = b.get(at..at + 4).and_then(|s| s.try_into().ok()).ok_or_else(|| bad("too short"))?;
        Ok(Ulong::from_ne_bytes(w))
    };
    if word(0)? != ENVELOPED_KEY_VERSION {
        return Err(bad("version is not 1"));
    }
    if word(4)? != SGD_SM4_ECB {
        return Err(bad("the symmetric algorithm is not SGD_SM4_ECB"));
    }
    if word(8)? != 256 {
        return Err(bad("not a 256-bit SM2 key"));
    }
    let cipher = b.get(ENVELOPED_KEY_HEADER_LEN..).ok_or_else(|| bad("too short"))?;
    let encrypted_key = decode_cipher_blob(cipher).map_err(|_| bad("malformed ECCCIPHERBLOB"))?;
    if encrypted_key.c2.len() != 16 {
        return Err(bad("the wrapped key is not a 16-byte SM4 key"));
    }
    let field: [u8; 64] = b[12..76].try_into().map_err(|_| bad("too short"))?;
    let encrypted_private_key = unpad64(&field).map_err(|_| bad("cbEncryptedPriKey is not 32 bytes right-aligned"))?;
    let mut pk = EccPublicKeyBlob { bit_len: word(76)?, x: [0; 64], y: [0; 64] };
    pk.x.copy_from_slice(&b[80..144]);
    pk.y.copy_from_slice(&b[144..208]);
    let public_key = pk.to_sm2().map_err(|_| bad("PubKey is not an SM2 point"))?;
    Ok(kb_token::Sm2EnvelopedKey { encrypted_key, public_key, encrypted_private_key })
}

/// Parse an SKF multi-string (`a\0b\0\0`): names until the empty one.
pub fn parse_multi_string(b: &[u8]) -> Vec<String> {
    b.split(|c| *c == 0).take_while(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// Build an SKF multi-string: each name NUL-terminated, then one more NUL.
pub fn multi_string<S: AsRef<str>>(names: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in names {
        out.extend_from_slice(n.as_ref().as_bytes());
        out.push(0);
    }
    out.push(0);
    out
}

/// A C string argument (`LPSTR`).
pub type CStrPtr = *const c_char;

macro_rules! sar_table {
    ($( $name:ident = $value:literal, $text:literal; )*) => {
        $(
            #[doc = $text]
            pub const $name: Ulong = $value;
        )*
        /// Every `SAR_*` code of GM/T 0016-2012 §A with its name and description.
        pub const SAR_TABLE: &[(Ulong, &str, &str)] = &[$(($value, stringify!($name), $text)),*];
    };
}

sar_table! {
    SAR_OK = 0x0000_0000, "success";
    SAR_FAIL = 0x0A00_0001, "failure";
    SAR_UNKNOWNERR = 0x0A00_0002, "unknown error";
    SAR_NOTSUPPORTYETERR = 0x0A00_0003, "not supported";
    SAR_FILEERR = 0x0A00_0004, "file error";
    SAR_INVALIDHANDLEERR = 0x0A00_0005, "invalid handle";
    SAR_INVALIDPARAMERR = 0x0A00_0006, "invalid parameter";
    SAR_READFILEERR = 0x0A00_0007, "read file error";
    SAR_WRITEFILEERR = 0x0A00_0008, "write file error";
    SAR_NAMELENERR = 0x0A00_0009, "name length error";
    SAR_KEYUSAGEERR = 0x0A00_000A, "key usage error";
    SAR_MODULUSLENERR = 0x0A00_000B, "modulus length error";
    SAR_NOTINITIALIZEERR = 0x0A00_000C, "not initialised";
    SAR_OBJERR = 0x0A00_000D, "object error";
    SAR_MEMORYERR = 0x0A00_000E, "memory error";
    SAR_TIMEOUTERR = 0x0A00_000F, "timeout";
    SAR_INDATALENERR = 0x0A00_0010, "input data length error";
    SAR_INDATAERR = 0x0A00_0011, "input data error";
    SAR_GENRANDERR = 0x0A00_0012, "random generation error";
    SAR_HASHOBJERR = 0x0A00_0013, "hash object error";
    SAR_HASHERR = 0x0A00_0014, "hash error";
    SAR_GENRSAKEYERR = 0x0A00_0015, "RSA key generation error";
    SAR_RSAMODULUSLENERR = 0x0A00_0016, "RSA modulus length error";
    SAR_CSPIMPRTPUBKEYERR = 0x0A00_0017, "public key import error";
    SAR_RSAENCERR = 0x0A00_0018, "RSA encryption error";
    SAR_RSADECERR = 0x0A00_0019, "RSA decryption error";
    SAR_HASHNOTEQUALERR = 0x0A00_001A, "hash mismatch";
    SAR_KEYNOTFOUNTERR = 0x0A00_001B, "key not found";
    SAR_CERTNOTFOUNTERR = 0x0A00_001C, "certificate not found";
    SAR_NOTEXPORTERR = 0x0A00_001D, "object not exportable";
    SAR_DECRYPTPADERR = 0x0A00_001E, "decryption padding error";
    SAR_MACLENERR = 0x0A00_001F, "MAC length error";
    SAR_BUFFER_TOO_SMALL = 0x0A00_0020, "buffer too small";
    SAR_KEYINFOTYPEERR = 0x0A00_0021, "key info type error";
    SAR_NOT_EVENTERR = 0x0A00_0022, "no event";
    SAR_DEVICE_REMOVED = 0x0A00_0023, "device removed";
    SAR_PIN_INCORRECT = 0x0A00_0024, "PIN incorrect";
    SAR_PIN_LOCKED = 0x0A00_0025, "PIN locked";
    SAR_PIN_INVALID = 0x0A00_0026, "PIN invalid";
    SAR_PIN_LEN_RANGE = 0x0A00_0027, "PIN length out of range";
    SAR_USER_ALREADY_LOGGED_IN = 0x0A00_0028, "user already logged in";
    SAR_USER_PIN_NOT_INITIALIZED = 0x0A00_0029, "user PIN not initialised";
    SAR_USER_TYPE_INVALID = 0x0A00_002A, "PIN type invalid";
    SAR_APPLICATION_NAME_INVALID = 0x0A00_002B, "application name invalid";
    SAR_APPLICATION_EXISTS = 0x0A00_002C, "application exists";
    SAR_USER_NOT_LOGGED_IN = 0x0A00_002D, "user not logged in";
    SAR_APPLICATION_NOT_EXISTS = 0x0A00_002E, "application does not exist";
    SAR_FILE_ALREADY_EXIST = 0x0A00_002F, "file exists";
    SAR_NO_ROOM = 0x0A00_0030, "no room";
    SAR_FILE_NOT_EXIST = 0x0A00_0031, "file or container does not exist";
    SAR_REACH_MAX_CONTAINER_COUNT = 0x0A00_0032, "too many containers";
}

/// The `SAR_*` name of a code (`"SAR_0x…"`-style text for a vendor code).
pub fn sar_name(code: Ulong) -> String {
    SAR_TABLE.iter().find(|(c, _, _)| *c == code).map(|(_, n, _)| n.to_string()).unwrap_or_else(|| format!("0x{code:08X}"))
}

/// The description of a code, for `SKF_GetErrorString`-style reporting.
pub fn sar_text(code: Ulong) -> &'static str {
    SAR_TABLE.iter().find(|(c, _, _)| *c == code).map(|(_, _, t)| *t).unwrap_or("vendor-specific error")
}

/// What a module's `SAR_*` from `function` means to a KeyBridge user. `retries` is the
/// retry count a PIN function reported (`pulRetryCount`), when it has one.
pub fn token_error(code: Ulong, function: &str, retries: Option<Ulong>) -> TokenError {
    let what = || format!("{function}: {} ({})", sar_name(code), sar_text(code));
    match code {
        SAR_PIN_INCORRECT => match retries {
            Some(0) => TokenError::PinLocked,
            Some(n) => TokenError::WrongPin { retries_left: n.min(u8::MAX as Ulong) as u8 },
            None => TokenError::WrongPinRetriesUnknown,
        },
        SAR_PIN_LOCKED => TokenError::PinLocked,
        SAR_PIN_INVALID | SAR_PIN_LEN_RANGE => TokenError::PinPolicy("the key rejects this PIN (length or characters)"),
        SAR_DEVICE_REMOVED => TokenError::Removed,
        SAR_KEYNOTFOUNTERR | SAR_CERTNOTFOUNTERR | SAR_FILE_NOT_EXIST | SAR_APPLICATION_NOT_EXISTS => {
            TokenError::NotFound(what())
        }
        SAR_FILE_ALREADY_EXIST | SAR_APPLICATION_EXISTS => TokenError::AlreadyExists(what()),
        SAR_NOTSUPPORTYETERR | SAR_KEYUSAGEERR | SAR_NOTEXPORTERR | SAR_REACH_MAX_CONTAINER_COUNT => {
            TokenError::NotSupported(what())
        }
        SAR_HASHNOTEQUALERR | SAR_DECRYPTPADERR => TokenError::Crypto(CryptoError::DecryptFailed),
        SAR_INDATALENERR | SAR_INDATAERR | SAR_INVALIDPARAMERR => {
            TokenError::Crypto(CryptoError::InvalidParameter("the SKF module rejected the input"))
        }
        SAR_NOTINITIALIZEERR => TokenError::Module(what()),
        SAR_USER_NOT_LOGGED_IN => TokenError::NotSupported(format!("{} (the PIN was not verified)", what())),
        _ => TokenError::Io(what()),
    }
}

/// The `SAR_*` an SKF module returns for a KeyBridge error (the other direction).
pub fn sar_of(e: &TokenError) -> Ulong {
    match e {
        TokenError::WrongPin { .. } | TokenError::WrongPinRetriesUnknown => SAR_PIN_INCORRECT,
        TokenError::PinLocked => SAR_PIN_LOCKED,
        TokenError::PinPolicy(_) => SAR_PIN_LEN_RANGE,
        TokenError::Removed | TokenError::UnknownDevice(_) => SAR_DEVICE_REMOVED,
        TokenError::NotFound(_) => SAR_FILE_NOT_EXIST,
        TokenError::AlreadyExists(_) => SAR_FILE_ALREADY_EXIST,
        TokenError::CertificateKeyMismatch => SAR_KEYUSAGEERR,
        TokenError::NotSupported(_) => SAR_NOTSUPPORTYETERR,
        TokenError::Module(_) => SAR_NOTINITIALIZEERR,
        TokenError::Busy => SAR_TIMEOUTERR,
        TokenError::Crypto(CryptoError::DecryptFailed) => SAR_HASHNOTEQUALERR,
        TokenError::Crypto(CryptoError::Malformed { .. } | CryptoError::InvalidParameter(_)) => SAR_INDATAERR,
        TokenError::Pki(_) => SAR_INDATAERR,
        TokenError::Io(_) | TokenError::Corrupt(_) => SAR_FILEERR,
        TokenError::EnvelopedKey(_) => SAR_INDATAERR,
        _ => SAR_FAIL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_types::{ErrorCode, HasErrorCode};

    #[test]
    fn layouts_match_the_standard() {
        assert_eq!(std::mem::size_of::<DevInfo>(), 2 + 64 + 64 + 32 + 32 + 2 + 2 + 8 * 4 + 64);
        assert_eq!(std::mem::offset_of!(DevInfo, alg_sym_cap), 198);
        assert_eq!(std::mem::size_of::<EccPublicKeyBlob>(), 132);
        assert_eq!(std::mem::size_of::<EccSignatureBlob>(), 128);
        assert_eq!(std::mem::size_of::<BlockCipherParam>(), 44);
        assert_eq!(std::mem::offset_of!(BlockCipherParam, padding_type), 36);
    }

    #[test]
    fn table_is_unique_and_round_trips() {
        for (i, (c, n, _)) in SAR_TABLE.iter().enumerate() {
            assert!(SAR_TABLE[i + 1..].iter().all(|(c2, n2, _)| c2 != c && n2 != n), "{n}");
            assert_eq!(&sar_name(*c), n);
        }
        assert_eq!(sar_name(0x0A00_0101), "0x0A000101");
        // Every code the module side produces maps back to the same KeyBridge code.
        for e in [
            TokenError::PinLocked,
            TokenError::Removed,
            TokenError::NotFound("x".into()),
            TokenError::AlreadyExists("x".into()),
            TokenError::NotSupported("x".into()),
            TokenError::Crypto(CryptoError::DecryptFailed),
        ] {
            assert_eq!(token_error(sar_of(&e), "f", None).code(), e.code(), "{e:?}");
        }
    }

    #[test]
    fn pin_outcomes_carry_the_count() {
        assert_eq!(token_error(SAR_PIN_INCORRECT, "f", Some(3)), TokenError::WrongPin { retries_left: 3 });
        assert_eq!(token_error(SAR_PIN_INCORRECT, "f", Some(0)), TokenError::PinLocked);
        assert_eq!(token_error(SAR_PIN_INCORRECT, "f", None), TokenError::WrongPinRetriesUnknown);
        assert_eq!(token_error(SAR_PIN_LOCKED, "f", Some(0)).code(), ErrorCode::PinLocked);
        assert_eq!(token_error(SAR_DEVICE_REMOVED, "f", None).code(), ErrorCode::DeviceRemoved);
        assert_eq!(token_error(0x0A00_0999, "f", None).code(), ErrorCode::Io);
    }

    #[test]
    fn blobs_round_trip() {
        let key = kb_crypto::sm2::Sm2PrivateKey::generate().unwrap();
        let blob = EccPublicKeyBlob::from_sm2(key.public_key());
        assert_eq!(blob.x[..32], [0u8; 32]);
        assert_eq!(blob.to_sm2().unwrap(), *key.public_key());
        let ct = key.public_key().encrypt(b"content key 16B!").unwrap();
        let b = encode_cipher_blob(&ct);
        assert_eq!(b.len(), ECC_CIPHER_HEADER_LEN + 16);
        assert_eq!(decode_cipher_blob(&b).unwrap(), ct);
        assert!(decode_cipher_blob(&b[..b.len() - 1]).is_err());
        let enc = kb_crypto::sm2::Sm2PrivateKey::generate().unwrap();
        let env = kb_token::Sm2EnvelopedKey::seal(&enc, key.public_key()).unwrap();
        let eb = encode_enveloped_key_blob(&env);
        assert_eq!(eb.len(), ENVELOPED_KEY_HEADER_LEN + ECC_CIPHER_HEADER_LEN + 16);
        assert_eq!(eb[12..44], [0u8; 32], "cbEncryptedPriKey is right-aligned");
        assert_eq!(decode_enveloped_key_blob(&eb).unwrap(), env);
        assert_eq!(decode_enveloped_key_blob(&eb).unwrap().open(&key).unwrap().to_bytes(), enc.to_bytes());
        for (at, v) in [(0usize, 2u8), (4, 0x02), (9, 0)] {
            let mut bad = eb.clone();
            bad[at] = v;
            assert!(matches!(decode_enveloped_key_blob(&bad), Err(TokenError::EnvelopedKey(_))), "byte {at}");
        }
        assert!(decode_enveloped_key_blob(&eb[..eb.len() - 1]).is_err());
        let names = ["a", "容器"];
        assert_eq!(parse_multi_string(&multi_string(&names)), names);
        assert!(parse_multi_string(&[0]).is_empty());
        let mut f = [0u8; 8];
        set_field_text(&mut f, "中文标签");
        assert_eq!(field_text(&f), "中文");
    }
}
