//! Key media: identity, capabilities, containers, PIN state and seals. Plain values.

use crate::{Algorithm, KeyUsage};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How a medium is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// File-type (software) key, 文件型设备.
    File,
    /// Smart card or USB key through PC/SC.
    Pcsc,
    /// A PKCS#11 module.
    Pkcs11,
    /// A GM/T 0016 SKF vendor module.
    Skf,
    /// A HID key.
    Hid,
    /// A Bluetooth LE key.
    Ble,
    /// A phone acting as the PC's key (移动电子密钥).
    Phone,
}

impl TransportKind {
    /// Every transport, in declaration order.
    pub const ALL: [TransportKind; 7] = [
        TransportKind::File,
        TransportKind::Pcsc,
        TransportKind::Pkcs11,
        TransportKind::Skf,
        TransportKind::Hid,
        TransportKind::Ble,
        TransportKind::Phone,
    ];

    /// The transport with this [`name`](Self::name), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Stable lower-case name (`file`, `pcsc`, …), used in device ids.
    pub const fn name(self) -> &'static str {
        match self {
            TransportKind::File => "file",
            TransportKind::Pcsc => "pcsc",
            TransportKind::Pkcs11 => "pkcs11",
            TransportKind::Skf => "skf",
            TransportKind::Hid => "hid",
            TransportKind::Ble => "ble",
            TransportKind::Phone => "phone",
        }
    }
}

/// A device id, stable across reconnects of the same medium: `<transport>:<local id>`,
/// e.g. `file:demo` or `pcsc:ACME-0001`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceId(pub String);

impl DeviceId {
    /// Compose from a transport and its local id.
    pub fn new(transport: TransportKind, local: &str) -> Self {
        DeviceId(format!("{}:{local}", transport.name()))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a medium can do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Algorithms its key pairs may use.
    pub algorithms: Vec<Algorithm>,
    /// Can generate key pairs on the medium.
    pub key_generation: bool,
    /// Stores seal images (电子签章).
    pub seals: bool,
    /// Has an SO (administrator) PIN that can unblock the user PIN.
    pub so_pin: bool,
    /// Who verifies the user before a private-key operation.
    #[serde(default)]
    pub user_verification: UserVerification,
}

/// Who verifies the user before a private-key operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserVerification {
    /// The PC asks for the user PIN (KeyBridge's own PIN dialog, the PIN cache) and
    /// presents it to the medium: file keys, USB keys and cards without a PIN pad.
    #[default]
    HostPin,
    /// The medium verifies the user itself — a phone (PIN or biometrics on the phone),
    /// a PIN-pad reader, a BLE key with its own keypad. KeyBridge never asks for that PIN
    /// and never caches it; the medium's own session rules apply.
    OnMedium,
}

/// Everything shown about a medium before any PIN is entered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Stable id.
    pub id: DeviceId,
    /// Label the user sees.
    pub label: String,
    /// Serial number, 介质编号.
    pub serial: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// Model.
    pub model: String,
    /// Transport.
    pub transport: TransportKind,
    /// Capabilities.
    pub capabilities: Capabilities,
}

/// Which PIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinKind {
    /// The user PIN, 介质密码 / 用户口令.
    User,
    /// The SO PIN, 管理员口令.
    So,
}

/// PIN state, shown next to every PIN field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinInfo {
    /// Which PIN.
    pub kind: PinKind,
    /// Tries left before lockout.
    pub retries_left: u8,
    /// The maximum number of tries.
    pub max_retries: u8,
    /// Locked (no tries left).
    pub locked: bool,
    /// Still the factory/default PIN and should be changed.
    pub is_default: bool,
}

/// One key pair slot of a container, with its certificate if one is installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySlot {
    /// Signing or encryption.
    pub usage: KeyUsage,
    /// Key algorithm.
    pub algorithm: Algorithm,
    /// Installed certificate (DER), if any.
    pub certificate: Option<Vec<u8>>,
}

/// A container (容器): at most one signing and one encryption key pair, SM2's
/// dual-certificate model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Name, unique on the medium.
    pub name: String,
    /// The signing key pair, if generated.
    pub sign: Option<KeySlot>,
    /// The encryption key pair, if present.
    pub encrypt: Option<KeySlot>,
}

impl ContainerInfo {
    /// The slot for a usage (`Both` is treated as signing).
    pub fn slot(&self, usage: KeyUsage) -> Option<&KeySlot> {
        match usage {
            KeyUsage::Encrypt => self.encrypt.as_ref(),
            KeyUsage::Sign | KeyUsage::Both => self.sign.as_ref(),
        }
    }
}

/// A seal image (电子签章) stored on a medium.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealInfo {
    /// Id, unique on the medium.
    pub id: String,
    /// Name shown to the user.
    pub name: String,
    /// MIME type of the image (`image/png`, …).
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
}

/// A certificate's validity at a given time, as every screen and client shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidityStatus {
    /// Valid, with more than the near-expiry window left.
    Valid,
    /// Valid but expiring within the near-expiry window (临期).
    ExpiringSoon,
    /// Expired (过期).
    Expired,
    /// Not valid yet.
    NotYetValid,
}

/// Whether a certificate is revoked, as far as KeyBridge can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationState {
    /// Not revoked, by current data verified against the issuer (a CRL or OCSP).
    Good,
    /// Revoked (`revoked_at`, `reason`).
    Revoked,
    /// Not known: offline, no source, stale or unverifiable data (`detail` says which).
    /// Never to be read as good.
    Unknown,
    /// Not checked: the chain does not reach a trusted root, the certificate is a trust
    /// anchor, or nobody asked.
    NotChecked,
}

/// What KeyBridge knows about a certificate's revocation, as every screen, the CLI and
/// the bridge show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Good, revoked, unknown or not checked.
    pub status: RevocationState,
    /// `3030 certificate_revoked` or `3031 revocation_unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u32>,
    /// When it was revoked, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// Why, as RFC 5280 names it (`keyCompromise`, `superseded`, …), when the CA said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the answer came from (`OCSP (…)`, `CRL #…`), or why there is none (English).
    pub detail: String,
}

impl Revocation {
    /// Not checked, and why.
    pub fn not_checked(detail: impl Into<String>) -> Self {
        Revocation { status: RevocationState::NotChecked, code: None, revoked_at: None, reason: None, detail: detail.into() }
    }

    /// Whether it is revoked.
    pub fn is_revoked(&self) -> bool {
        self.status == RevocationState::Revoked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_names_round_trip() {
        for t in TransportKind::ALL {
            assert_eq!(TransportKind::from_name(t.name()), Some(t));
        }
        assert_eq!(TransportKind::from_name("usb"), None);
    }
}
