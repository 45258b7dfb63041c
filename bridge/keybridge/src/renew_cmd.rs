//! `keybridge renew …`: renewing the certificates on the plugged-in key with a CA
//! (docs/ca-api.md) — `status`, `bind` (the WeChat binding QR code, then waiting for the
//! phone), `install` (安装证书, asking the PIN), `recover` (finish an interrupted
//! install). `keybridge devca …`: the local development CA those talk to by default.
//!
//! The CA is `--ca URL` (or `$KEYBRIDGE_CA_URL`, or the settings' `ca_url`); without one,
//! the local dev CA at `http://127.0.0.1:8443` (`keybridge devca serve`) with its root as
//! the trust anchor.

use crate::ctx::{App, CLIENT, DeviceSel, Devices};
use crate::output::{CliError, CliResult, pad};
use clap::{Args, Subcommand};
use kb_ca::HttpCaClient;
use kb_ca::api::{BindingState, RenewalKind, RenewalState};
use kb_pki::Certificate;
use kb_pki::chain::TrustStore;
use kb_service::renewal::{CertificateRenewal, Renewal};
use kb_types::{ErrorCode, KeyUsage, ValidityStatus};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the local dev CA listens by default.
pub(crate) const DEV_CA_PORT: u16 = 8443;

#[derive(Args)]
pub(crate) struct RenewArgs {
    /// The CA's base URL (default: $KEYBRIDGE_CA_URL, else the settings' ca_url, else the
    /// local dev CA at http://127.0.0.1:8443).
    #[arg(long, global = true, value_name = "URL")]
    ca: Option<String>,
    /// The CA's root certificate(s) new certificates must chain to (PEM bundle or DER);
    /// default for the local dev CA: its root in the KeyBridge home.
    #[arg(long, global = true, value_name = "FILE")]
    ca_root: Option<PathBuf>,
    #[command(subcommand)]
    command: RenewCommand,
}

#[derive(Subcommand)]
enum RenewCommand {
    /// Each certificate on the key: 临期/过期, bound to a phone or not, renewal applied/approved.
    Status {
        /// Device id (default: the only key plugged in).
        #[arg(long, value_name = "ID")]
        device: Option<String>,
    },
    /// Bind the key's certificates to your phone: shows the QR code (valid 30 minutes)
    /// and waits until the phone confirms, cancels, or the code expires.
    Bind {
        /// Print the QR code and return without waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// 安装证书: install the renewed certificate the CA approved (asks the PIN). Keep the
    /// key plugged in until it finishes.
    Install {
        #[command(flatten)]
        sel: DeviceSel,
    },
    /// Finish or undo an install that was interrupted (key pulled out, program killed).
    Recover,
}

#[derive(Args)]
pub(crate) struct DevcaArgs {
    #[command(subcommand)]
    command: DevcaCommand,
}

#[derive(Subcommand)]
enum DevcaCommand {
    /// Run the development CA (loopback only) until interrupted.
    Serve {
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = DEV_CA_PORT)]
        port: u16,
        /// Write {url, operator_url, root} as JSON to this file once listening (scripts).
        #[arg(long, value_name = "FILE")]
        ready_file: Option<PathBuf>,
    },
    /// Approve a renewal application (the operator's decision).
    Approve {
        /// Application id (see the operator page or the phone's payment page).
        application: String,
    },
    /// Reject a renewal application with a reason.
    Reject {
        /// Application id.
        application: String,
        /// Why (shown to the user).
        reason: String,
    },
    /// Revoke a certificate the dev CA issued or bound (cannot be undone); its CRL
    /// (`/crl`) and OCSP answers (`/ocsp`) say so from then on.
    Revoke {
        /// The certificate's serial number in hex (as `keybridge certs` shows it).
        serial: String,
        /// keyCompromise, affiliationChanged, superseded, cessationOfOperation,
        /// certificateHold, privilegeWithdrawn or unspecified.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// Write the dev CA's current CRL (PEM) to a file.
    Crl {
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// The CA the command talks to and the roots its certificates must chain to.
fn ca_and_trust(app: &App, d: &Devices, a: &RenewArgs) -> CliResult<(Arc<HttpCaClient>, TrustStore)> {
    let configured =
        a.ca.clone()
            .or_else(|| std::env::var("KEYBRIDGE_CA_URL").ok().filter(|s| !s.is_empty()))
            .or_else(|| Some(d.home.settings.ca_url.clone()).filter(|s| !s.is_empty()));
    let url = configured.clone().unwrap_or_else(|| format!("http://127.0.0.1:{DEV_CA_PORT}"));
    let client = Arc::new(HttpCaClient::new(&url)?);
    let root_file = match (&a.ca_root, configured) {
        (Some(f), _) => f.clone(),
        (None, None) => kb_service::demo::demo_ca_dir(&d.home.paths).join("root.pem"),
        (None, Some(_)) => {
            return Err(CliError::new(ErrorCode::CaNotConfigured, "give the CA's root certificate with --ca-root FILE"));
        }
    };
    let bytes = crate::ctx::read_file(&root_file).map_err(|e| {
        CliError::new(
            ErrorCode::CaNotConfigured,
            format!(
                "{}: {}",
                e.detail,
                app.out.t(
                    "本地开发 CA 尚未创建：先运行 keybridge devca serve",
                    "the local dev CA does not exist yet: run keybridge devca serve"
                )
            ),
        )
    })?;
    let roots = match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN") => Certificate::load_pem_chain(text)?,
        _ => vec![Certificate::from_der(&bytes)?],
    };
    Ok((client, TrustStore::from_certs(roots)))
}

fn renewal(app: &App, d: &Devices, a: &RenewArgs) -> CliResult<Renewal> {
    let (client, trust) = ca_and_trust(app, d, a)?;
    Ok(Renewal::new(d.manager.clone(), client, trust, d.home.paths.data_dir.join("renewal")))
}

/// `keybridge renew …`.
pub(crate) fn renew(app: &App, a: RenewArgs) -> CliResult {
    let d = app.devices()?;
    let r = renewal(app, &d, &a)?;
    match &a.command {
        RenewCommand::Status { device } => status(app, &d, &r, device.as_deref()),
        RenewCommand::Bind { no_wait } => bind(app, &d, &r, *no_wait),
        RenewCommand::Install { sel } => install(app, &d, &r, sel),
        RenewCommand::Recover => {
            let dev = d.choose(r.single_medium()?);
            let outcome = r.recover(&dev.id, CLIENT)?;
            #[derive(Serialize)]
            struct Out {
                recovery: kb_service::renewal::Recovery,
            }
            app.out.show(&Out { recovery: outcome }, || format!("{outcome:?}"));
            Ok(())
        }
    }
}

fn validity_text(app: &App, c: &CertificateRenewal) -> String {
    let o = &app.out;
    match c.validity {
        ValidityStatus::Expired => format!("{} {}", o.t("过期", "expired"), -c.days_left),
        ValidityStatus::ExpiringSoon => format!("{} {}", o.t("临期", "expiring"), c.days_left),
        ValidityStatus::NotYetValid => o.t("未生效", "not yet valid").into(),
        ValidityStatus::Valid => format!("{} {}", o.t("有效", "valid"), c.days_left),
    }
}

fn renewal_text(app: &App, c: &CertificateRenewal) -> String {
    let o = &app.out;
    match (&c.renewal, &c.ca_error) {
        (Some(s), _) => {
            let state = match s.state {
                RenewalState::None => o.t("未申请", "not applied"),
                RenewalState::Applied => o.t("已申请，待审核", "applied, waiting"),
                RenewalState::Approved => o.t("已审核，可安装证书", "approved: install now"),
                RenewalState::Rejected => o.t("已驳回", "rejected"),
                RenewalState::Issued => o.t("已签发", "issued"),
            };
            let kind = match s.application.as_ref().map(|a| a.kind) {
                Some(RenewalKind::Renew) => o.t("（续期）", " (renew)"),
                Some(RenewalKind::Rekey) => o.t("（变更/补发）", " (rekey)"),
                None => "",
            };
            let bound = if s.bound { o.t("已绑定", "bound") } else { o.t("未绑定", "not bound") };
            let reason = s.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
            format!("{bound}, {state}{kind}{reason}")
        }
        (None, Some((code, msg))) => format!("{}: {code} {msg}", o.t("无法查询 CA", "CA not reachable")),
        (None, None) => "-".into(),
    }
}

fn status(app: &App, d: &Devices, r: &Renewal, device: Option<&str>) -> CliResult {
    let dev = d.select(device)?;
    let rows = r.status(&dev.id, CLIENT)?;
    app.out.show(&rows, || {
        let mut s = String::new();
        for c in &rows {
            s.push_str(&format!(
                "{} {} {} {} {} | {}\n",
                pad(&format!("{}/{}", c.container, if c.usage == KeyUsage::Encrypt { "enc" } else { "sign" }), 14),
                pad(&c.serial, 34),
                pad(&c.not_after[..10.min(c.not_after.len())], 11),
                pad(&validity_text(app, c), 12),
                c.subject,
                renewal_text(app, c)
            ));
        }
        if rows.is_empty() {
            s.push_str(app.out.t("该介质上没有证书。", "No certificates on this key."));
        }
        s.trim_end().to_string()
    });
    Ok(())
}

fn bind(app: &App, d: &Devices, r: &Renewal, no_wait: bool) -> CliResult {
    let dev = d.choose(r.single_medium()?);
    let b = r.bind(&dev.id, CLIENT)?;
    let o = &app.out;
    if !o.json() {
        let qr = crate::term::terminal_qr(&b.qr_url).unwrap_or_default();
        o.show(&b, || {
            format!(
                "{qr}\n{} {}\n{} {} ({} {}:{:02})",
                o.t("请用微信扫描二维码，或在手机上打开：", "Scan with WeChat, or open on the phone:"),
                b.qr_url,
                o.t("有效期至", "valid until"),
                b.expires_at,
                o.t("剩余", "left"),
                b.expires_in / 60,
                b.expires_in % 60
            )
        });
    }
    #[derive(Serialize)]
    struct Bound<'a> {
        binding: &'a kb_ca::api::Binding,
        status: Option<kb_ca::api::BindingStatus>,
    }
    if no_wait {
        if o.json() {
            o.show(&Bound { binding: &b, status: None }, String::new);
        }
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(u64::try_from(b.expires_in).unwrap_or(0) + 60);
    let status = loop {
        let s = r.binding_status(&b.binding_id, Some((BindingState::Pending, Duration::from_secs(25))))?;
        if s.state != BindingState::Pending || Instant::now() > deadline {
            break s;
        }
    };
    let text = match status.state {
        BindingState::Confirmed => o.t("绑定成功。", "Bound."),
        BindingState::Cancelled => o.t("已在手机上取消绑定。", "Cancelled on the phone."),
        BindingState::Expired => o.t(
            "二维码已过期，请重新获取（keybridge renew bind）。",
            "The QR code expired; get a new one (keybridge renew bind).",
        ),
        BindingState::Pending => o.t("仍在等待手机确认。", "Still waiting for the phone."),
    };
    o.show(&Bound { binding: &b, status: Some(status.clone()) }, || text.to_string());
    match status.state {
        BindingState::Confirmed => Ok(()),
        BindingState::Expired => Err(CliError::new(ErrorCode::BindingExpired, "the binding QR code expired")),
        _ => Err(CliError::new(ErrorCode::CaRefused, format!("binding {}", text))),
    }
}

fn install(app: &App, d: &Devices, r: &Renewal, sel: &DeviceSel) -> CliResult {
    // One key at a time: never install with several keys plugged in.
    let dev = d.choose(r.single_medium()?);
    if sel.device.as_deref().is_some_and(|id| id != dev.id.0) {
        return Err(CliError::input(format!("{} is not the key plugged in ({})", sel.device.as_deref().unwrap_or(""), dev.id)));
    }
    let usage = sel.usage.map(crate::ctx::Usage::key_usage).unwrap_or(KeyUsage::Sign);
    // Without --container: the only container with a certificate in that slot (a key
    // pair an interrupted 变更/补发 left has none).
    let with_certificate: Vec<String> = d
        .manager
        .containers(&dev.id, CLIENT)?
        .into_iter()
        .filter(|c| c.slot(usage).is_some_and(|s| s.certificate.is_some()))
        .map(|c| c.name)
        .collect();
    let container = match (sel.container.as_deref(), with_certificate.as_slice()) {
        (None, [only]) => only.clone(),
        (name, _) => d.container(&dev.id, name)?,
    };
    if !app.out.json() {
        eprintln!("{}", app.out.t("正在安装证书，请勿拔出介质……", "Installing the certificate; do not unplug the key…"));
    }
    let report = r.install(&dev.id, &container, usage, CLIENT)?;
    let o = &app.out;
    o.show(&report, || {
        format!(
            "{} {} → {} ({} {}, {} {})",
            o.t("证书已安装：", "Certificate installed:"),
            report.old_serial,
            report.new_serial,
            o.t("有效期至", "valid until"),
            report.new_not_after,
            o.t("容器", "container"),
            report.container
        )
    });
    Ok(())
}

/// `keybridge devca …`.
pub(crate) fn devca(app: &App, a: DevcaArgs) -> CliResult {
    let home = app.home()?;
    let (root, signer, _) = kb_service::demo::demo_ca(&kb_service::demo::demo_ca_dir(&home.paths))?;
    let dir = home.paths.data_dir.join("devca");
    std::fs::create_dir_all(&dir).map_err(|e| CliError::io(&dir.display().to_string(), e))?;
    let config = kb_devca::Config {
        name: kb_devca::SERVICE_NAME.into(),
        public_url: String::new(),
        operator_key: kb_devca::new_operator_key(),
    };
    let ca = Arc::new(
        kb_devca::DevCa::open(&dir.join("devca.sqlite"), root, signer, Arc::new(kb_devca::SystemClock), config)
            .map_err(|e| CliError::new(e.code, e.message))?,
    );
    let o = &app.out;
    match a.command {
        DevcaCommand::Serve { port, ready_file } => {
            let server = kb_devca::Server::start(Arc::clone(&ca), std::net::SocketAddr::from(([127, 0, 0, 1], port)), false)
                .map_err(|e| CliError::new(ErrorCode::CaUnreachable, format!("127.0.0.1:{port}: {e}")))?;
            #[derive(Serialize)]
            struct Ready {
                url: String,
                operator_url: String,
                root: String,
            }
            let ready = Ready {
                url: server.url(),
                operator_url: format!("{}/op?key={}", server.url(), ca.config().operator_key),
                root: kb_service::demo::demo_ca_dir(&home.paths).join("root.pem").display().to_string(),
            };
            if let Some(f) = ready_file {
                let json = serde_json::to_vec(&ready).unwrap_or_default();
                crate::ctx::write_atomic(&f, &json)?;
            }
            o.show(&ready, || {
                format!(
                    "{}\n  {}\n  {} {}\n  {} {}",
                    o.t("KeyBridge 开发 CA（仅供开发测试）已启动：", "KeyBridge dev CA (development only) listening:"),
                    ready.url,
                    o.t("运营审核页：", "operator page:"),
                    ready.operator_url,
                    o.t("根证书：", "root certificate:"),
                    ready.root
                )
            });
            server.wait();
            Ok(())
        }
        DevcaCommand::Approve { application } => {
            ca.decide(&application, true, "").map_err(|e| CliError::new(e.code, e.message))?;
            o.show(&serde_json::json!({"application": application, "state": "approved"}), || {
                format!("{} {application}", o.t("已审核通过", "approved"))
            });
            Ok(())
        }
        DevcaCommand::Reject { application, reason } => {
            ca.decide(&application, false, &reason).map_err(|e| CliError::new(e.code, e.message))?;
            o.show(&serde_json::json!({"application": application, "state": "rejected", "reason": reason}), || {
                format!("{} {application}", o.t("已驳回", "rejected"))
            });
            Ok(())
        }
        DevcaCommand::Revoke { serial, reason } => {
            let r = kb_devca::ca::reason_by_name(&reason).ok_or_else(|| {
                CliError::input(format!("--reason {reason}: one of {}", kb_devca::ca::reason_names().join(", ")))
            })?;
            let serial = serial.replace(':', "").to_ascii_lowercase();
            ca.revoke(&serial, r).map_err(|e| CliError::new(e.code, e.message))?;
            o.show(&serde_json::json!({"serial": serial, "revoked": true, "reason": reason}), || {
                format!("{} {serial} ({reason})", o.t("已吊销", "revoked"))
            });
            Ok(())
        }
        DevcaCommand::Crl { out } => {
            let crl = ca.crl().map_err(|e| CliError::new(e.code, e.message))?;
            crate::ctx::write_atomic(&out, crl.to_pem().as_bytes())?;
            let entries = crl.entries().len();
            o.show(&serde_json::json!({"file": out.display().to_string(), "entries": entries, "number": crl.number()}), || {
                format!(
                    "{} {} ({entries} {})",
                    o.t("已写入 CRL", "CRL written to"),
                    out.display(),
                    o.t("个已吊销证书", "revoked")
                )
            });
            Ok(())
        }
    }
}
