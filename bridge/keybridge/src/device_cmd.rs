//! Commands over the media: `devices`, `certs`, `pin …`, `seal …`.

use crate::ctx::{App, CLIENT, read_file, write_atomic};
use crate::output::{CliError, CliResult, pad};
use clap::{Args, Subcommand};
use kb_pki::Certificate;
use kb_pki::cert::ValidityStatus;
use kb_pki::time::UnixTime;
use kb_types::{Capabilities, DeviceId, ErrorCode, Lang, PinInfo, PinKind, TransportKind};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Serialize)]
struct DeviceRow {
    id: DeviceId,
    label: String,
    serial: String,
    transport: TransportKind,
    manufacturer: String,
    model: String,
    capabilities: Capabilities,
    user_pin: Option<PinInfo>,
    so_pin: Option<PinInfo>,
}

fn pin_text(out_lang: Lang, p: &Option<PinInfo>) -> String {
    match (p, out_lang) {
        (None, _) => "-".into(),
        (Some(p), Lang::En) => format!(
            "{}/{} tries left{}{}",
            p.retries_left,
            p.max_retries,
            if p.locked { ", LOCKED" } else { "" },
            if p.is_default { ", default PIN (change it)" } else { "" }
        ),
        (Some(p), _) => format!(
            "剩余 {}/{} 次{}{}",
            p.retries_left,
            p.max_retries,
            if p.locked { "，已锁定" } else { "" },
            if p.is_default { "，仍是初始口令（请修改）" } else { "" }
        ),
    }
}

/// `keybridge devices`.
pub(crate) fn devices(app: &App) -> CliResult {
    let d = app.devices()?;
    let mut rows = Vec::new();
    for info in d.manager.devices() {
        let pin = |k| d.manager.pin_info(&info.id, k, CLIENT).ok();
        let (user_pin, so_pin) = (pin(PinKind::User), if info.capabilities.so_pin { pin(PinKind::So) } else { None });
        rows.push(DeviceRow {
            id: info.id,
            label: info.label,
            serial: info.serial,
            transport: info.transport,
            manufacturer: info.manufacturer,
            model: info.model,
            capabilities: info.capabilities,
            user_pin,
            so_pin,
        });
    }
    #[derive(Serialize)]
    struct Listed<'a> {
        devices: &'a [DeviceRow],
        problems: &'a [String],
        key_dir: String,
    }
    let listed = Listed { devices: &rows, problems: &d.problems, key_dir: d.home.key_dir.display().to_string() };
    let o = &app.out;
    o.show(&listed, || {
        let mut s = String::new();
        if rows.is_empty() {
            s.push_str(o.t("没有找到介质。", "No key media found."));
            s.push_str(&format!(" {} {}\n", o.t("文件型介质目录：", "File-key directory:"), listed.key_dir));
            s.push_str(o.t(
                "创建演示介质：keybridge demo；创建文件型介质：keybridge filekey create --name NAME\n",
                "Create a demo key: keybridge demo; a file key: keybridge filekey create --name NAME\n",
            ));
        }
        if rows.len() > 1 {
            s.push_str(o.t(
                "注意：插入了多个介质，操作时请用 --device 选择。\n",
                "Note: several media are present; choose one with --device.\n",
            ));
        }
        for r in &rows {
            let algs: Vec<String> = r.capabilities.algorithms.iter().map(|a| a.to_string()).collect();
            s.push_str(&format!("{}  {}\n", r.id, r.label));
            s.push_str(&format!("  {}{}\n", pad(o.t("序列号", "serial"), 18), r.serial));
            s.push_str(&format!("  {}{} / {} {}\n", pad(o.t("类型", "type"), 18), r.transport.name(), r.manufacturer, r.model));
            s.push_str(&format!(
                "  {}{}{}{}\n",
                pad(o.t("能力", "capabilities"), 18),
                algs.join(", "),
                if r.capabilities.key_generation { o.t("，可生成密钥", ", key generation") } else { "" },
                if r.capabilities.seals { o.t("，印章", ", seals") } else { "" }
            ));
            s.push_str(&format!("  {}{}\n", pad(o.t("用户口令", "user PIN"), 18), pin_text(o.lang(), &r.user_pin)));
            if r.so_pin.is_some() {
                s.push_str(&format!("  {}{}\n", pad(o.t("管理员口令", "SO PIN"), 18), pin_text(o.lang(), &r.so_pin)));
            }
        }
        for p in &d.problems {
            s.push_str(&format!("{} {p}\n", o.t("问题：", "problem:")));
        }
        s.trim_end().to_string()
    });
    Ok(())
}

/// Status words in the user's language.
pub(crate) fn status_text(lang: Lang, s: ValidityStatus) -> &'static str {
    match (s, lang) {
        (ValidityStatus::Valid, Lang::En) => "valid",
        (ValidityStatus::ExpiringSoon, Lang::En) => "expiring soon",
        (ValidityStatus::Expired, Lang::En) => "expired",
        (ValidityStatus::NotYetValid, Lang::En) => "not yet valid",
        (ValidityStatus::Valid, _) => "有效",
        (ValidityStatus::ExpiringSoon, _) => "临期",
        (ValidityStatus::Expired, _) => "过期",
        (ValidityStatus::NotYetValid, _) => "尚未生效",
    }
}

#[derive(Serialize)]
struct CertRow {
    device: DeviceId,
    device_label: String,
    container: String,
    usage: kb_types::KeyUsage,
    subject: String,
    issuer: String,
    serial: String,
    not_before: String,
    not_after: String,
    status: ValidityStatus,
    status_text: &'static str,
    days_left: i64,
    public_key: String,
    thumbprint_sha1: String,
    revocation: kb_service::revocation::RevocationSummary,
}

#[derive(Args)]
pub(crate) struct CertsArgs {
    /// Only this device.
    #[arg(long, value_name = "ID")]
    device: Option<String>,
}

/// `keybridge certs`.
pub(crate) fn certs(app: &App, a: CertsArgs) -> CliResult {
    let d = app.devices()?;
    let warn = d.home.warn_days();
    let now = UnixTime::now();
    let devices = match &a.device {
        Some(id) => vec![d.select(Some(id))?],
        None => d.manager.devices(),
    };
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    let (trust, revocation) = (kb_service::trust::user_store(&d.home.paths), d.home.revocation());
    for dev in &devices {
        for c in d.manager.containers(&dev.id, CLIENT)? {
            for slot in [&c.sign, &c.encrypt].into_iter().flatten() {
                let Some(der) = &slot.certificate else { continue };
                let cert = match Certificate::from_der(der) {
                    Ok(c) => c,
                    Err(e) => {
                        unreadable.push(format!("{} / {} / {}: {e}", dev.id, c.name, slot.usage));
                        continue;
                    }
                };
                let info = cert.info(now, warn);
                rows.push(CertRow {
                    device: dev.id.clone(),
                    device_label: dev.label.clone(),
                    container: c.name.clone(),
                    usage: slot.usage,
                    subject: info.subject,
                    issuer: info.issuer,
                    serial: info.serial,
                    not_before: info.not_before.to_rfc3339(),
                    not_after: info.not_after.to_rfc3339(),
                    status: info.status,
                    status_text: status_text(app.out.lang(), info.status),
                    days_left: info.days_left,
                    public_key: info.public_key_description,
                    thumbprint_sha1: info.thumbprint_sha1,
                    revocation: revocation.summary(&cert, &[], &trust, &[], now),
                });
            }
        }
    }
    #[derive(Serialize)]
    struct Listed<'a> {
        certificates: &'a [CertRow],
        near_expiry_warning_days: i64,
        unreadable: &'a [String],
        problems: &'a [String],
    }
    let listed = Listed { certificates: &rows, near_expiry_warning_days: warn, unreadable: &unreadable, problems: &d.problems };
    let o = &app.out;
    o.show(&listed, || {
        let mut s = String::new();
        if rows.is_empty() {
            s.push_str(o.t("没有证书。\n", "No certificates.\n"));
        }
        for r in &rows {
            let usage = match (r.usage, o.lang()) {
                (kb_types::KeyUsage::Encrypt, Lang::En) => "encryption",
                (kb_types::KeyUsage::Encrypt, _) => "加密证书",
                (_, Lang::En) => "signing",
                (_, _) => "签名证书",
            };
            let revoked = if r.revocation.is_revoked() { o.t(" [已吊销]", " [REVOKED]") } else { "" };
            s.push_str(&format!("{} / {} / {}  [{}]{revoked}\n", r.device, r.container, usage, r.status_text));
            s.push_str(&format!("  {}{}\n", pad(o.t("主题", "subject"), 16), r.subject));
            s.push_str(&format!("  {}{}\n", pad(o.t("颁发者", "issuer"), 16), r.issuer));
            s.push_str(&format!("  {}{}\n", pad(o.t("序列号", "serial"), 16), r.serial));
            s.push_str(&format!(
                "  {}{} → {} ({} {})\n",
                pad(o.t("有效期", "validity"), 16),
                r.not_before,
                r.not_after,
                r.days_left,
                o.t("天", "days left")
            ));
            s.push_str(&format!("  {}{}\n", pad(o.t("SHA-1 指纹", "SHA-1"), 16), r.thumbprint_sha1));
            s.push_str(&format!(
                "  {}{}\n",
                pad(o.t("吊销状态", "revocation"), 16),
                kb_service::revocation::text(&r.revocation, o.lang())
            ));
        }
        for p in unreadable.iter().chain(&d.problems) {
            s.push_str(&format!("{} {p}\n", o.t("问题：", "problem:")));
        }
        s.trim_end().to_string()
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------
// PIN
// ---------------------------------------------------------------------------------------

#[derive(Args)]
pub(crate) struct PinArgs {
    #[command(subcommand)]
    cmd: PinCmd,
}

#[derive(Subcommand)]
enum PinCmd {
    /// Tries left, locked or not, default PIN or not (user and SO PIN).
    Status {
        /// Device id.
        #[arg(long, value_name = "ID")]
        device: Option<String>,
    },
    /// Change the user PIN (or the SO PIN with --so): old, new and repeated new PIN are asked.
    Change {
        /// Device id.
        #[arg(long, value_name = "ID")]
        device: Option<String>,
        /// Change the SO (administrator) PIN instead.
        #[arg(long)]
        so: bool,
    },
    /// Unblock a locked user PIN with the SO PIN and set a new user PIN.
    Unblock {
        /// Device id.
        #[arg(long, value_name = "ID")]
        device: Option<String>,
    },
}

/// `keybridge pin …`.
pub(crate) fn pin(app: &App, a: PinArgs) -> CliResult {
    let d = app.devices()?;
    let o = &app.out;
    let t = &app.term;
    match a.cmd {
        PinCmd::Status { device } => {
            let dev = d.select(device.as_deref())?;
            let user = d.manager.pin_info(&dev.id, PinKind::User, CLIENT)?;
            let so = if dev.capabilities.so_pin { d.manager.pin_info(&dev.id, PinKind::So, CLIENT).ok() } else { None };
            #[derive(Serialize)]
            struct Status {
                device: DeviceId,
                user: PinInfo,
                so: Option<PinInfo>,
            }
            let st = Status { device: dev.id.clone(), user, so };
            o.show(&st, || {
                let mut s = format!("{}  {}\n", dev.id, dev.label);
                s.push_str(&format!("  {}{}\n", pad(o.t("用户口令", "user PIN"), 14), pin_text(o.lang(), &Some(user))));
                if st.so.is_some() {
                    s.push_str(&format!("  {}{}", pad(o.t("管理员口令", "SO PIN"), 14), pin_text(o.lang(), &st.so)));
                }
                s.trim_end().to_string()
            });
            Ok(())
        }
        PinCmd::Change { device, so } => {
            let dev = d.select(device.as_deref())?;
            let kind = if so { PinKind::So } else { PinKind::User };
            let (zh, en) = if so { ("管理员口令", "SO PIN") } else { ("用户口令", "user PIN") };
            let old = t.read_pin(&format!(
                "{}: ",
                o.t(&format!("请输入介质「{}」当前的{zh}", dev.label), &format!("Current {en} of \"{}\"", dev.label))
            ))?;
            let new = t.read_new_pin(zh, en)?;
            d.manager.change_pin(&dev.id, kind, old, new, CLIENT)?;
            tracing::info!(device = %dev.id, kind = ?kind, "PIN changed");
            #[derive(Serialize)]
            struct Changed {
                device: DeviceId,
                changed: PinKind,
            }
            o.show(&Changed { device: dev.id.clone(), changed: kind }, || {
                o.t(&format!("{zh}已修改。"), &format!("The {en} was changed.")).to_string()
            });
            Ok(())
        }
        PinCmd::Unblock { device } => {
            let dev = d.select(device.as_deref())?;
            let so = t.read_pin(&format!(
                "{}: ",
                o.t(&format!("请输入介质「{}」的管理员口令", dev.label), &format!("SO PIN of \"{}\"", dev.label))
            ))?;
            let new = t.read_new_pin("用户口令", "user PIN")?;
            d.manager.unblock_pin(&dev.id, so, new, CLIENT)?;
            tracing::info!(device = %dev.id, "user PIN unblocked");
            #[derive(Serialize)]
            struct Unblocked {
                device: DeviceId,
                unblocked: bool,
            }
            o.show(&Unblocked { device: dev.id.clone(), unblocked: true }, || {
                o.t("用户口令已解锁并设为新口令。", "The user PIN is unblocked and set to the new PIN.").to_string()
            });
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------
// Seals
// ---------------------------------------------------------------------------------------

#[derive(Args)]
pub(crate) struct SealArgs {
    #[command(subcommand)]
    cmd: SealCmd,
}

#[derive(Subcommand)]
enum SealCmd {
    /// Seal images (电子签章) stored on the medium.
    List {
        /// Device id.
        #[arg(long, value_name = "ID")]
        device: Option<String>,
    },
    /// Save a seal image to a file.
    Read {
        /// Device id.
        #[arg(long, value_name = "ID")]
        device: Option<String>,
        /// Seal id.
        #[arg(long)]
        id: String,
        /// Where to write the image.
        #[arg(long)]
        out: PathBuf,
    },
    /// Store (or replace) a seal image: png, jpg, gif, bmp or svg (needs the user PIN).
    Write {
        /// Device id.
        #[arg(long, value_name = "ID")]
        device: Option<String>,
        /// Seal id.
        #[arg(long)]
        id: String,
        /// Seal name as shown to people.
        #[arg(long)]
        name: String,
        /// The image file.
        #[arg(long = "in")]
        input: PathBuf,
    },
    /// Delete a seal image (needs the user PIN).
    Delete {
        /// Device id.
        #[arg(long, value_name = "ID")]
        device: Option<String>,
        /// Seal id.
        #[arg(long)]
        id: String,
    },
}

fn mime_of(path: &std::path::Path) -> CliResult<&'static str> {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    Ok(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "svg" => "image/svg+xml",
        _ => {
            return Err(CliError::input(format!("{}: seal images must be .png, .jpg, .gif, .bmp or .svg", path.display())));
        }
    })
}

/// `keybridge seal …`.
pub(crate) fn seal(app: &App, a: SealArgs) -> CliResult {
    let d = app.devices()?;
    let o = &app.out;
    #[derive(Serialize)]
    struct Done<'a> {
        device: &'a DeviceId,
        seal: &'a str,
        action: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        out: Option<String>,
    }
    match a.cmd {
        SealCmd::List { device } => {
            let dev = d.select(device.as_deref())?;
            let seals = d.manager.seals(&dev.id, CLIENT)?;
            #[derive(Serialize)]
            struct Listed<'a> {
                device: &'a DeviceId,
                seals: &'a [kb_types::SealInfo],
            }
            o.show(&Listed { device: &dev.id, seals: &seals }, || {
                if seals.is_empty() {
                    return o.t("介质上没有印章。", "No seals on the medium.").to_string();
                }
                seals.iter().map(|s| format!("{}  {}  {}  {} bytes", s.id, s.name, s.mime, s.size)).collect::<Vec<_>>().join("\n")
            });
        }
        SealCmd::Read { device, id, out } => {
            let dev = d.select(device.as_deref())?;
            let image = d.manager.read_seal(&dev.id, &id, CLIENT)?;
            write_atomic(&out, &image)?;
            let done = Done {
                device: &dev.id,
                seal: &id,
                action: "read",
                bytes: Some(image.len() as u64),
                out: Some(out.display().to_string()),
            };
            o.show(&done, || format!("{} {} → {} ({} bytes)", o.t("已导出印章", "seal saved"), id, out.display(), image.len()));
        }
        SealCmd::Write { device, id, name, input } => {
            let mime = mime_of(&input)?;
            let image = read_file(&input)?;
            let dev = d.select(device.as_deref())?;
            d.manager.write_seal(&dev.id, &id, &name, mime, &image, CLIENT)?;
            let done = Done { device: &dev.id, seal: &id, action: "write", bytes: Some(image.len() as u64), out: None };
            o.show(&done, || format!("{} {id} ({name}, {mime}, {} bytes)", o.t("已写入印章", "seal written"), image.len()));
        }
        SealCmd::Delete { device, id } => {
            let dev = d.select(device.as_deref())?;
            d.manager.delete_seal(&dev.id, &id, CLIENT)?;
            let done = Done { device: &dev.id, seal: &id, action: "delete", bytes: None, out: None };
            o.show(&done, || format!("{} {id}", o.t("已删除印章", "seal deleted")));
        }
    }
    Ok(())
}

/// The error for a slot without a certificate.
pub(crate) fn no_certificate(device: &DeviceId, container: &str, usage: kb_types::KeyUsage) -> CliError {
    CliError::new(ErrorCode::NotFound, format!("no {usage} certificate in container {container} on {device}"))
}
