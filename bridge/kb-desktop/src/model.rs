//! What the desktop UI sees: every type a command takes or returns, every event payload.
//!
//! These are the contract with `ui/`: `specta` turns them into `ui/src/bindings.ts`
//! (generated, checked in, drift-tested). Field names are camelCase on the wire. Times are
//! RFC 3339 strings or milliseconds since the epoch; 64-bit integers are exported as
//! TypeScript `number` (every value here stays below 2^53).

use serde::{Deserialize, Serialize};
use specta::Type;

/// Signing or encryption key pair / certificate (签名 / 加密).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum Usage {
    /// The signing key pair.
    Sign,
    /// The encryption key pair.
    Encrypt,
}

/// One certificate slot: medium, container, usage.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct CertRef {
    /// Device id, e.g. `file:demo`.
    pub device: String,
    /// Container name.
    pub container: String,
    /// Which key pair.
    pub usage: Usage,
}

/// Validity at the time of listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum CertStatus {
    /// Valid and not near expiry.
    Valid,
    /// Valid, but expires within the warning window (临期).
    NearExpiry,
    /// Expired (过期).
    Expired,
    /// Not valid yet.
    NotYetValid,
}

/// A certificate as the home screen lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct CertSummary {
    /// Where it is.
    #[serde(rename = "ref")]
    pub cert_ref: CertRef,
    /// Subject common name (or the whole subject when it has none).
    pub subject_cn: String,
    /// Full subject, most specific first.
    pub subject: String,
    /// Issuer common name.
    pub issuer_cn: String,
    /// Public-key algorithm, e.g. `SM2 (256 bit)`.
    pub algorithm: String,
    /// Serial, upper-case hex.
    pub serial: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// Whole days until notAfter (negative when expired).
    pub days_left: i32,
    /// Validity with the configured near-expiry window.
    pub status: CertStatus,
}

/// What kind of medium.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum MediumKind {
    /// A file-type key (文件型设备).
    File,
    /// A smart card / USB key behind a PC/SC reader.
    Pcsc,
    /// A token of a PKCS#11 module.
    Pkcs11,
    /// A key of a vendor SKF (GM/T 0016) module.
    Skf,
    /// A USB HID key.
    Hid,
    /// A BLE key.
    Ble,
    /// A phone acting as the key.
    Phone,
}

/// A PIN's state. `triesLeft` is always shown; `locked` explains itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct PinState {
    /// Tries left before lockout.
    pub tries_left: u8,
    /// Tries a fresh PIN has.
    pub max_tries: u8,
    /// No tries left: the user PIN must be unblocked with the SO PIN.
    pub locked: bool,
    /// Still the factory/default PIN: should be changed.
    pub is_default: bool,
}

/// A key medium with its certificates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct Medium {
    /// Stable device id.
    pub id: String,
    /// Label the user knows it by.
    pub label: String,
    /// Medium type.
    pub kind: MediumKind,
    /// Manufacturer.
    pub manufacturer: String,
    /// Model.
    pub model: String,
    /// Serial number (介质编号).
    pub serial: String,
    /// The built-in demo key (its PINs are public; never for real work).
    pub demo: bool,
    /// User PIN state, when the medium tells.
    pub user_pin: Option<PinState>,
    /// SO PIN state, when the medium tells.
    pub so_pin: Option<PinState>,
    /// Every installed certificate, by container then usage.
    pub certificates: Vec<CertSummary>,
    /// Seal images can be stored on it.
    pub supports_seals: bool,
    /// Reachable now. False: a known medium out of reach (a phone or BLE key that
    /// disconnected) — listed without reading it, its operations fail until it is back.
    pub online: bool,
    /// The medium verifies the user itself (a phone, a PIN pad): KeyBridge never asks
    /// for its PIN; the window says "confirm on the medium" instead.
    pub verifies_user: bool,
}

/// One attribute of a distinguished name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct NameAttr {
    /// Short name (`CN`, `O`, …) or OID.
    pub name: String,
    /// Value.
    pub value: String,
}

/// One X.509 extension, decoded for display.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionView {
    /// OID.
    pub oid: String,
    /// Name, when known.
    pub name: Option<String>,
    /// Critical flag.
    pub critical: bool,
    /// Decoded value (or hex).
    pub value: String,
}

/// Whether the certificate chains to a trusted root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct ChainState {
    /// Chains to a trusted root and every certificate on the way is valid.
    pub trusted: bool,
    /// The stable error code when not.
    pub code: Option<u32>,
    /// Why not, in the UI language.
    pub reason: Option<String>,
    /// Subjects from the certificate up to the root, when it chains.
    pub path: Vec<String>,
}

/// Whether a certificate is revoked, as far as KeyBridge can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum RevocationState {
    /// Not revoked, by current data verified against the issuer.
    Good,
    /// Revoked.
    Revoked,
    /// Not known (offline, no source, stale data) — never shown as good.
    Unknown,
    /// Not checked (the chain is not trusted, or it is a root).
    NotChecked,
}

/// The certificate details' revocation line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct RevocationView {
    /// Good, revoked, unknown or not checked.
    pub state: RevocationState,
    /// `3030` (revoked) or `3031` (unknown).
    pub code: Option<u32>,
    /// The whole line in the UI language: when and why it was revoked and by what
    /// source, or why the status is not known.
    pub text: String,
}

/// What a certificate is for, from its keyUsage (签名 / 加密 / 签名加密), or a CA certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum CertType {
    /// Signing.
    Sign,
    /// Encryption (key or data encipherment).
    Encrypt,
    /// Both.
    Both,
    /// A CA certificate (issues certificates).
    Ca,
}

/// Everything the certificate details screen shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct CertDetails {
    /// The list entry.
    pub summary: CertSummary,
    /// Medium label.
    pub device_label: String,
    /// Subject attributes.
    pub subject_attrs: Vec<NameAttr>,
    /// Issuer, most specific first.
    pub issuer: String,
    /// Issuer attributes.
    pub issuer_attrs: Vec<NameAttr>,
    /// X.509 version (1–3).
    pub version: u8,
    /// Signature algorithm.
    pub signature_algorithm: String,
    /// Public-key algorithm, e.g. `SM2 (256 bit)`.
    pub public_key_algorithm: String,
    /// Certificate type from keyUsage.
    pub cert_type: CertType,
    /// keyUsage flags.
    pub key_usage: Vec<String>,
    /// extKeyUsage names.
    pub extended_key_usage: Vec<String>,
    /// Every extension.
    pub extensions: Vec<ExtensionView>,
    /// SHA-1 thumbprint (the one users compare), upper-case hex.
    pub thumbprint_sha1: String,
    /// Chain status against the trusted roots (system + KeyBridge's).
    pub chain: ChainState,
    /// Revocation (CRL / OCSP).
    pub revocation: RevocationView,
}

/// Thumbprint algorithms offered on request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum Thumbprint {
    /// SHA-1 (default).
    Sha1,
    /// SM3.
    Sm3,
    /// SHA-256.
    Sha256,
    /// MD5.
    Md5,
}

/// Certificate export encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum ExportFormat {
    /// DER (.cer).
    Der,
    /// PEM (.pem).
    Pem,
}

/// Which PIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum PinKindView {
    /// User PIN (介质密码).
    User,
    /// SO PIN (管理员口令).
    So,
}

/// A seal image stored on a medium.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct SealView {
    /// Id on the medium.
    pub id: String,
    /// Name.
    pub name: String,
    /// MIME type (`image/png`, …).
    pub mime: String,
    /// Size in bytes.
    pub size: u32,
}

/// A seal image's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct SealImage {
    /// Id on the medium.
    pub id: String,
    /// MIME type.
    pub mime: String,
    /// The image, base64.
    pub data_base64: String,
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Who: `desktop`, `cli`, a web origin, `native:<sdk>`.
    pub client: String,
    /// Device id.
    pub device: String,
    /// Operation (`sign`, `decrypt`, `change_pin`, …).
    pub operation: String,
    /// Certificate subject, when there was one.
    pub certificate: Option<String>,
    /// Succeeded.
    pub ok: bool,
    /// Stable error code when it failed.
    pub code: Option<u32>,
    /// Why it failed, in the UI language.
    pub reason: Option<String>,
    /// How the PIN was obtained: `pin_entered`, `pin_cached`, `none` (no PIN needed) or
    /// `phone` (entered on the phone acting as the key).
    pub auth: String,
}

/// The newest audit records of a time range, and how many there are in all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// Newest first, at most the limit asked for.
    pub entries: Vec<AuditEntry>,
    /// Records in the range (more than `entries` when the limit cut it).
    pub total: u64,
}

/// How often to look for updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum UpdateFrequency {
    /// Never.
    Never,
    /// Once a day.
    Daily,
    /// Once a week.
    Weekly,
}

/// UI language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub enum Language {
    /// 简体中文 (default).
    #[serde(rename = "zh-CN")]
    ZhCn,
    /// English.
    #[serde(rename = "en")]
    En,
}

/// The settings the window edits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct AppSettings {
    /// PIN cache: 0 (off), 1, 5, 10, 30 (default) or 60 minutes.
    pub pin_cache_minutes: u32,
    /// Near-expiry window in days (1–3650; default 90).
    pub near_expiry_warning_days: u32,
    /// Write log files.
    pub logs_enabled: bool,
    /// Keep log files this many days.
    pub log_retention_days: u32,
    /// Update check frequency.
    pub update_check: UpdateFrequency,
    /// Update manifest URL (https, or http on loopback); empty = none configured.
    pub update_url: String,
    /// UI language.
    pub language: Language,
    /// Start in the tray at login (an XDG autostart entry on Linux); default off.
    pub autostart: bool,
}

/// Facts for the about page and the first-run screen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    /// KeyBridge version.
    pub version: String,
    /// Version of the privacy policy and user agreement in this build.
    pub agreement_version: String,
    /// The user accepted this version.
    pub agreement_accepted: bool,
    /// Device id of the demo key, when there is one.
    pub demo_device: Option<String>,
    /// Where data (keys, audit log) lives.
    pub data_dir: String,
    /// Where log files go.
    pub log_dir: String,
    /// The local bridge's address, when it runs.
    pub bridge_url: Option<String>,
    /// What went wrong at start without stopping it (a broken settings file replaced by
    /// defaults, the bridge's port taken, the demo key not created); shown once.
    pub startup_problems: Vec<AppError>,
}

/// A remembered answer to a web site's consent question ("always allow" or "deny").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct SiteGrant {
    /// The web origin, e.g. `https://bid.example.cn`.
    pub origin: String,
    /// Allowed (else: refused without asking).
    pub allowed: bool,
    /// When it was decided, ms since the epoch.
    pub since_ms: i64,
}

/// Result of an update check; also the event `update-status` when a scheduled check (the
/// settings' daily or weekly) finds a newer version.
#[cfg_attr(feature = "tauri-events", derive(tauri_specta::Event))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStatus {
    /// This build's version.
    pub current: String,
    /// The newest version the manifest names.
    pub latest: String,
    /// `latest` is newer than `current`.
    pub available: bool,
    /// Release notes.
    pub notes: String,
    /// Where to download it.
    pub download_url: String,
}

/// A finished log export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct LogExportResult {
    /// The file written.
    pub path: String,
    /// Log files included.
    pub files: u32,
    /// Size of the encrypted archive in bytes.
    pub bytes: u64,
}

/// One kind of personal data KeyBridge handles (the collection list).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct DataItem {
    /// What (zh-CN / en follow the UI language).
    pub what: String,
    /// Why.
    pub why: String,
    /// Where it stays.
    pub kept: String,
}

/// One third-party library in this build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct Library {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// SPDX licence expression.
    pub license: String,
    /// `rust` or `npm`.
    pub ecosystem: String,
}

/// Privacy page contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct PrivacyInfo {
    /// Personal data collected and where it stays.
    pub data_items: Vec<DataItem>,
    /// Third-party libraries.
    pub libraries: Vec<Library>,
}

/// What a prompt asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum PromptBody {
    /// A PIN for a key operation.
    #[serde(rename_all = "camelCase")]
    Pin {
        /// Device id.
        device: String,
        /// Its label.
        device_label: String,
        /// Which PIN.
        pin_kind: PinKindView,
        /// Operation (`sign`, `decrypt`, `delete_certificate`, …).
        operation: String,
        /// Tries left, when the medium tells.
        tries_left: Option<u8>,
        /// The PIN typed just before was wrong.
        previous_wrong: bool,
        /// The cached PIN was rejected (changed elsewhere).
        cached_pin_rejected: bool,
        /// The certificate the operation uses (subject and serial), or empty.
        certificate: String,
    },
    /// A yes/no question.
    #[serde(rename_all = "camelCase")]
    Confirm {
        /// Title.
        title: String,
        /// Question.
        message: String,
    },
    /// A web page or tool asks to use KeyBridge for the first time.
    #[serde(rename_all = "camelCase")]
    Consent {
        /// Operation it wants.
        operation: String,
        /// The certificate concerned, when there is one.
        certificate: Option<String>,
    },
    /// A QR code to scan (WeChat binding, phone pairing).
    #[serde(rename_all = "camelCase")]
    Qr {
        /// Title.
        title: String,
        /// What the code encodes.
        payload: String,
        /// Seconds it stays valid.
        expires_in_secs: u32,
    },
}

/// A question the service asks the user; the UI answers with `answerPrompt`.
#[cfg_attr(feature = "tauri-events", derive(tauri_specta::Event))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct PromptRequest {
    /// Answer with this id.
    pub id: u32,
    /// Who asks: `desktop`, a web origin, a tool.
    pub client: String,
    /// What.
    pub body: PromptBody,
}

/// The user's answer to a prompt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum PromptAnswer {
    /// The PIN typed.
    Pin {
        /// The PIN (never logged).
        pin: String,
    },
    /// Yes or no.
    Confirm {
        /// Yes.
        yes: bool,
    },
    /// Consent.
    #[serde(rename_all = "camelCase")]
    Consent {
        /// `always`, `once` or `deny`.
        decision: ConsentDecision,
    },
    /// The QR dialog was closed.
    Dismissed,
    /// Cancelled.
    Cancel,
}

/// A consent decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum ConsentDecision {
    /// Remember: allow from now on.
    Always,
    /// This connection only.
    Once,
    /// Refuse.
    Deny,
}

/// Every error a command returns: a stable code, its name, a message in the UI language.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct AppError {
    /// Stable numeric code (docs/error-codes.md).
    pub code: u32,
    /// Stable name, e.g. `wrong_pin`.
    pub name: String,
    /// What happened, in the UI language.
    pub message: String,
    /// Details (file names, the medium's own words); may be empty.
    pub detail: String,
    /// For `wrong_pin`: tries left.
    pub tries_left: Option<u8>,
}

// ---------------------------------------------------------------------------------------
// events
// ---------------------------------------------------------------------------------------

/// What happened to a medium.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum MediaChange {
    /// Inserted / appeared.
    Added,
    /// Pulled out / gone.
    Removed,
    /// Its contents changed (certificate installed or deleted, PIN state).
    Changed,
    /// Out of reach (its link dropped); still listed.
    Offline,
    /// Reachable again.
    Online,
}

/// Event `media-changed`: re-read the media list.
#[cfg_attr(feature = "tauri-events", derive(tauri_specta::Event))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct MediaChanged {
    /// What happened.
    pub change: MediaChange,
    /// Device id.
    pub device: String,
}

/// Event `prompt-closed`: the service no longer waits for this prompt (it timed out or
/// the request was cancelled); close the dialog.
#[cfg_attr(feature = "tauri-events", derive(tauri_specta::Event))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct PromptClosed {
    /// The prompt's id.
    pub id: u32,
}

/// What a key operation started from the window is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum OperationState {
    /// The PIN dialog is open.
    WaitingForPin,
    /// The user must confirm on the medium itself (the phone, the PIN pad).
    WaitingForMedium,
    /// The medium is working on it.
    Working,
    /// Done (succeeded, failed or cancelled): close any status shown for it.
    Finished,
}

/// Event `operation-status`: what a key operation started from the window waits for;
/// the window shows it with a cancel button (command `cancel_operation`).
#[cfg_attr(feature = "tauri-events", derive(tauri_specta::Event))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    /// The operation's id.
    pub operation: u32,
    /// What it waits for.
    pub state: OperationState,
    /// For `waitingForMedium`: the medium, in the user's words.
    pub medium: Option<String>,
}

/// Event `log-export-progress`.
#[cfg_attr(feature = "tauri-events", derive(tauri_specta::Event))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct LogExportProgress {
    /// Bytes read so far.
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
}

/// Event `expiry-notice`: certificates that entered the near-expiry window (also shown as
/// a desktop notification).
#[cfg_attr(feature = "tauri-events", derive(tauri_specta::Event))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct ExpiryNotice {
    /// The certificates.
    pub certificates: Vec<CertSummary>,
}
