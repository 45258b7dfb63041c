//! Service and PKI values → the window's view models.

use crate::model::*;
use kb_pki::Certificate;
use kb_pki::cert::{CertificateInfo, CertificateRole};
use kb_pki::chain::{TrustStore, verify_chain};
use kb_pki::name::NameAttribute;
use kb_pki::time::UnixTime;
use kb_service::ServiceError;
use kb_service::audit::{AuditRecord, AuthType};
use kb_service::devices::DeviceManager;
use kb_service::settings::{Settings, UpdateCheck};
use kb_types::{
    DeviceInfo, HasErrorCode, HashAlgorithm, KeyUsage, Lang, PinInfo, PinKind, SealInfo, TransportKind, ValidityStatus,
};

pub(crate) fn key_usage(u: Usage) -> KeyUsage {
    match u {
        Usage::Sign => KeyUsage::Sign,
        Usage::Encrypt => KeyUsage::Encrypt,
    }
}

pub(crate) fn usage(u: KeyUsage) -> Usage {
    match u {
        KeyUsage::Encrypt => Usage::Encrypt,
        KeyUsage::Sign | KeyUsage::Both => Usage::Sign,
    }
}

pub(crate) fn hash(t: Thumbprint) -> HashAlgorithm {
    match t {
        Thumbprint::Sha1 => HashAlgorithm::Sha1,
        Thumbprint::Sm3 => HashAlgorithm::Sm3,
        Thumbprint::Sha256 => HashAlgorithm::Sha256,
        Thumbprint::Md5 => HashAlgorithm::Md5,
    }
}

fn kind(t: TransportKind) -> MediumKind {
    match t {
        TransportKind::File => MediumKind::File,
        TransportKind::Pcsc => MediumKind::Pcsc,
        TransportKind::Pkcs11 => MediumKind::Pkcs11,
        TransportKind::Skf => MediumKind::Skf,
        TransportKind::Hid => MediumKind::Hid,
        TransportKind::Ble => MediumKind::Ble,
        TransportKind::Phone => MediumKind::Phone,
    }
}

fn pin_state(p: PinInfo) -> PinState {
    PinState { tries_left: p.retries_left, max_tries: p.max_retries, locked: p.locked, is_default: p.is_default }
}

fn status(s: ValidityStatus) -> CertStatus {
    match s {
        ValidityStatus::Valid => CertStatus::Valid,
        ValidityStatus::ExpiringSoon => CertStatus::NearExpiry,
        ValidityStatus::Expired => CertStatus::Expired,
        ValidityStatus::NotYetValid => CertStatus::NotYetValid,
    }
}

/// A name's CN attribute, or the whole name when it has none.
fn cn_or_all(attrs: &[NameAttribute], all: &str) -> String {
    attrs.iter().find(|a| a.key == "CN" && !a.value.is_empty()).map_or_else(|| all.to_string(), |a| a.value.clone())
}

/// The list entry, from the certificate's inspection (computed once per certificate).
pub(crate) fn summary(r: CertRef, info: &CertificateInfo) -> CertSummary {
    CertSummary {
        cert_ref: r,
        subject_cn: cn_or_all(&info.subject_attributes, &info.subject),
        subject: info.subject.clone(),
        issuer_cn: cn_or_all(&info.issuer_attributes, &info.issuer),
        algorithm: info.public_key_description.clone(),
        serial: info.serial.clone(),
        not_before: info.not_before.to_rfc3339(),
        not_after: info.not_after.to_rfc3339(),
        days_left: info.days_left.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
        status: status(info.status),
    }
}

/// One medium with its certificates (unparseable ones are logged and left out).
pub(crate) fn medium(
    m: &DeviceManager,
    info: &DeviceInfo,
    demo: bool,
    now: UnixTime,
    warn_days: i64,
) -> Result<Medium, ServiceError> {
    let c = crate::CLIENT;
    let pin = |k| match m.pin_info(&info.id, k, c) {
        Ok(p) => Ok(Some(pin_state(p))),
        Err(e) if e.code() == kb_types::ErrorCode::NotSupported => Ok(None),
        Err(e) => Err(e),
    };
    // A medium that verifies the user itself keeps its PIN state to itself.
    let user_pin =
        if info.capabilities.user_verification == kb_types::UserVerification::OnMedium { None } else { pin(PinKind::User)? };
    let so_pin = if info.capabilities.so_pin { pin(PinKind::So)? } else { None };
    let mut certificates = Vec::new();
    for container in m.containers(&info.id, c)? {
        for slot in [&container.sign, &container.encrypt].into_iter().flatten() {
            let Some(der) = &slot.certificate else { continue };
            match Certificate::from_der(der) {
                Ok(cert) => {
                    let r = CertRef { device: info.id.to_string(), container: container.name.clone(), usage: usage(slot.usage) };
                    certificates.push(summary(r, &cert.info(now, warn_days)));
                }
                Err(e) => tracing::warn!(device = %info.id, container = %container.name, "unparseable certificate: {e}"),
            }
        }
    }
    Ok(Medium { user_pin, so_pin, certificates, online: true, ..offline_medium(info, demo) })
}

/// A medium as listed without reading it: what is known while it is out of reach.
pub(crate) fn offline_medium(info: &DeviceInfo, demo: bool) -> Medium {
    Medium {
        id: info.id.to_string(),
        label: info.label.clone(),
        kind: kind(info.transport),
        manufacturer: info.manufacturer.clone(),
        model: info.model.clone(),
        serial: info.serial.clone(),
        demo,
        user_pin: None,
        so_pin: None,
        certificates: Vec::new(),
        supports_seals: info.capabilities.seals,
        online: false,
        verifies_user: info.capabilities.user_verification == kb_types::UserVerification::OnMedium,
    }
}

fn attrs(a: &[NameAttribute]) -> Vec<NameAttr> {
    a.iter().map(|a| NameAttr { name: a.key.clone(), value: a.value.clone() }).collect()
}

pub(crate) fn chain(cert: &Certificate, trust: &TrustStore, now: UnixTime, lang: Lang) -> ChainState {
    match verify_chain(cert, &[], trust, now) {
        Ok(c) => {
            ChainState { trusted: true, code: None, reason: None, path: c.certificates.iter().map(|c| c.subject()).collect() }
        }
        Err(e) => {
            let code = e.code();
            ChainState {
                trusted: false,
                code: Some(code.number()),
                reason: Some(format!("{} ({e})", code.message(lang))),
                path: Vec::new(),
            }
        }
    }
}

/// The revocation line from the service's summary.
pub(crate) fn revocation(s: &kb_service::revocation::RevocationSummary, lang: Lang) -> RevocationView {
    use kb_service::revocation::RevocationState as S;
    let state = match s.status {
        S::Good => RevocationState::Good,
        S::Revoked => RevocationState::Revoked,
        S::Unknown => RevocationState::Unknown,
        S::NotChecked => RevocationState::NotChecked,
    };
    RevocationView { state, code: s.code, text: kb_service::revocation::text(s, lang) }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn details(
    r: CertRef,
    cert: &Certificate,
    device_label: String,
    trust: &TrustStore,
    revocation_line: RevocationView,
    now: UnixTime,
    warn_days: i64,
    lang: Lang,
) -> CertDetails {
    let info = cert.info(now, warn_days);
    CertDetails {
        summary: summary(r, &info),
        device_label,
        subject_attrs: attrs(&info.subject_attributes),
        issuer: info.issuer.clone(),
        issuer_attrs: attrs(&info.issuer_attributes),
        version: info.version,
        signature_algorithm: info.signature_algorithm.clone(),
        public_key_algorithm: info.public_key_description.clone(),
        cert_type: match info.role {
            CertificateRole::Ca => CertType::Ca,
            CertificateRole::Sign => CertType::Sign,
            CertificateRole::Encrypt => CertType::Encrypt,
            CertificateRole::Both => CertType::Both,
        },
        key_usage: info.key_usage.clone(),
        extended_key_usage: info.extended_key_usage.clone(),
        extensions: info
            .extensions
            .iter()
            .map(|e| ExtensionView { oid: e.oid.clone(), name: e.name.clone(), critical: e.critical, value: e.value.clone() })
            .collect(),
        thumbprint_sha1: info.thumbprint_sha1.clone(),
        chain: chain(cert, trust, now, lang),
        revocation: revocation_line,
    }
}

pub(crate) fn seal(s: SealInfo) -> SealView {
    SealView { id: s.id, name: s.name, mime: s.mime, size: u32::try_from(s.size).unwrap_or(u32::MAX) }
}

/// A seal id for a new seal: `seal-N`, the first free N.
pub(crate) fn seal_id(existing: &[SealInfo]) -> String {
    (1..).map(|n| format!("seal-{n}")).find(|id| !existing.iter().any(|s| &s.id == id)).unwrap_or_default()
}

/// Largest seal image accepted.
pub(crate) const MAX_SEAL_BYTES: usize = 1024 * 1024;

/// The bytes are an image of the declared type.
pub(crate) fn check_image(mime: &str, bytes: &[u8]) -> Result<(), String> {
    if bytes.len() > MAX_SEAL_BYTES {
        return Err(format!("the image is {} bytes; at most {MAX_SEAL_BYTES}", bytes.len()));
    }
    let ok = match mime {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        other => return Err(format!("{other} is not a seal image type (image/png, image/jpeg)")),
    };
    if ok { Ok(()) } else { Err(format!("the data is not a {mime} image")) }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64ct::Encoding;
    base64ct::Base64::encode_string(bytes)
}

pub(crate) fn unb64(s: &str) -> Option<Vec<u8>> {
    use base64ct::Encoding;
    // A data URL from a canvas or FileReader is accepted as well as bare base64.
    let s = s.split_once(";base64,").map_or(s, |(_, b)| b);
    base64ct::Base64::decode_vec(s.trim()).ok()
}

fn auth(a: AuthType) -> String {
    kb_service::audit::auth_name(a).to_string()
}

pub(crate) fn audit_entry(r: AuditRecord, lang: Lang) -> AuditEntry {
    AuditEntry {
        time_ms: r.time_ms,
        client: r.client,
        device: r.device_id.to_string(),
        operation: r.operation,
        certificate: Some(r.certificate).filter(|c| !c.is_empty()),
        ok: r.ok,
        code: r.error.map(|c| c.number()),
        reason: r.error.map(|c| c.message(lang).to_string()),
        auth: auth(r.auth),
    }
}

pub(crate) fn app_settings(s: &Settings) -> AppSettings {
    AppSettings {
        pin_cache_minutes: s.pin_cache_minutes.minutes(),
        near_expiry_warning_days: s.near_expiry_warning_days,
        logs_enabled: s.logs_enabled,
        log_retention_days: s.log_retention_days,
        update_check: match s.update_check {
            UpdateCheck::Never => UpdateFrequency::Never,
            UpdateCheck::Daily => UpdateFrequency::Daily,
            UpdateCheck::Weekly => UpdateFrequency::Weekly,
        },
        update_url: s.update_url.clone(),
        language: match s.language {
            Lang::En => Language::En,
            _ => Language::ZhCn,
        },
        autostart: s.autostart,
    }
}

/// Copy the window's fields into `s` (validated by `Settings::save`).
pub(crate) fn apply_settings(s: &mut Settings, a: &AppSettings) {
    s.near_expiry_warning_days = a.near_expiry_warning_days;
    s.logs_enabled = a.logs_enabled;
    s.log_retention_days = a.log_retention_days;
    s.update_check = match a.update_check {
        UpdateFrequency::Never => UpdateCheck::Never,
        UpdateFrequency::Daily => UpdateCheck::Daily,
        UpdateFrequency::Weekly => UpdateCheck::Weekly,
    };
    s.update_url = a.update_url.trim().to_string();
    s.language = match a.language {
        Language::En => Lang::En,
        Language::ZhCn => Lang::ZhCn,
    };
    s.autostart = a.autostart;
}
