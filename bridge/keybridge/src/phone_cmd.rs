//! `keybridge phone …`: phones acting as this PC's keys (移动电子密钥). `pair` shows the
//! QR (its string and a terminal rendering) and confirms the phone's code; `list`,
//! `rename` and `revoke` manage paired phones. `keybridge serve` hosts the paired phones
//! (they reconnect to it), so their certificates are served by the bridge.
//!
//! The direct listener's addresses (`phone_listen`) and the relay (`phone_relay_url`)
//! come from the settings. Secrets go to the OS keyring, or a reported 0600 file
//! (`KEYBRIDGE_PHONE_SECRETS=file|keyring|auto`, default auto).

use crate::ctx::{App, Home};
use crate::output::{CliError, CliResult, Out};
use clap::{Args, Subcommand};
use kb_phonehost::{HostConfig, HostEvent, OfferInfo, PhoneHost};
use kb_phonelink::BackendChoice;
use kb_types::ErrorCode;
use serde::Serialize;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Chooses the secret backend (tests and machines without a keyring by policy).
pub(crate) const SECRETS_ENV: &str = "KEYBRIDGE_PHONE_SECRETS";

#[derive(Args)]
pub(crate) struct PhoneArgs {
    #[command(subcommand)]
    command: PhoneCommand,
}

#[derive(Subcommand)]
enum PhoneCommand {
    /// Show a pairing QR; when a phone scans it, compare the codes and confirm (y/N, or --yes).
    Pair,
    /// The paired phones: name, id, paired, last seen, revoked; where the secrets are.
    List,
    /// Rename a paired phone.
    Rename {
        /// Its id (or the first characters of it) or its name.
        phone: String,
        /// The new name.
        name: String,
    },
    /// Revoke a paired phone: it is refused from now on (pair it again with a new QR).
    Revoke {
        /// Its id (or the first characters of it) or its name.
        phone: String,
    },
}

/// The host configuration for a home (`serve`: with its transports; admin commands: none).
pub(crate) fn host_config(home: &Home, with_transports: bool) -> CliResult<HostConfig> {
    let backend = match std::env::var(SECRETS_ENV).as_deref() {
        Ok("file") => BackendChoice::File,
        Ok("keyring") => BackendChoice::Keyring,
        Ok("auto") | Err(_) => BackendChoice::Auto,
        Ok(other) => return Err(CliError::input(format!("{SECRETS_ENV}={other}: must be file, keyring or auto"))),
    };
    let mut cfg = HostConfig { backend, ..HostConfig::new(home.paths.data_dir.join("phones")) };
    if with_transports {
        cfg.listen = home.settings.phone_listen.clone();
        cfg.relay_url = Some(home.settings.phone_relay_url.clone()).filter(|u| !u.is_empty());
    }
    Ok(cfg)
}

/// Start the phone host for `keybridge serve` when the settings give it a transport.
pub(crate) fn host_for_serve(home: &Home) -> CliResult<Option<PhoneHost>> {
    let cfg = host_config(home, true)?;
    if cfg.listen.is_empty() && cfg.relay_url.is_none() {
        return Ok(None);
    }
    Ok(Some(PhoneHost::start(cfg)?))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// One JSON event per line (`--json`), or text.
fn event<T: Serialize>(o: &Out, v: &T, text: impl FnOnce() -> String) {
    if o.json() {
        o.print(&serde_json::to_string(v).unwrap_or_default());
    } else {
        o.print(&text());
    }
}

pub(crate) fn phone(app: &App, a: PhoneArgs) -> CliResult {
    let home = app.home()?;
    match a.command {
        PhoneCommand::Pair => pair(app, &home),
        PhoneCommand::List => {
            let host = PhoneHost::start(host_config(&home, false)?)?;
            list(&app.out, &host);
            Ok(())
        }
        PhoneCommand::Rename { phone, name } => {
            let host = PhoneHost::start(host_config(&home, false)?)?;
            let p = host.find(&phone)?;
            host.rename(&p.peer, &name)?;
            let o = &app.out;
            o.show(&serde_json::json!({"peer": p.peer, "name": name}), || format!("{} → {name}", p.name));
            Ok(())
        }
        PhoneCommand::Revoke { phone } => {
            let host = PhoneHost::start(host_config(&home, false)?)?;
            let p = host.find(&phone)?;
            host.revoke(&p.peer)?;
            let o = &app.out;
            o.show(&serde_json::json!({"peer": p.peer, "name": p.name, "revoked": true}), || {
                format!(
                    "{} {} ({})",
                    o.t("已撤销", "revoked"),
                    p.name,
                    o.t("重新启动 keybridge serve 后生效", "a running keybridge serve refuses it after its restart")
                )
            });
            Ok(())
        }
    }
}

fn list(o: &Out, host: &PhoneHost) {
    #[derive(Serialize)]
    struct Listing {
        phones: Vec<kb_phonehost::PhoneEntry>,
        secrets: kb_phonehost::BackendInfo,
    }
    let l = Listing { phones: host.phones(), secrets: host.secret_backend() };
    o.show(&l, || {
        let mut lines: Vec<String> = l
            .phones
            .iter()
            .map(|p| {
                let seen = p.last_seen.map(|s| format!("{} s ago", now().saturating_sub(s))).unwrap_or_else(|| "never".into());
                let state = if p.revoked { o.t("已撤销", "revoked") } else { o.t("已配对", "paired") };
                format!("{}  {}  {state}  {} {seen}", p.peer, p.name, o.t("上次连接", "last seen"))
            })
            .collect();
        if lines.is_empty() {
            lines.push(o.t("没有已配对的手机", "no paired phones").to_owned());
        }
        lines.push(match (&l.secrets.kind[..], &l.secrets.path) {
            ("file", Some(p)) => format!("{} {p} (0600)", o.t("配对密钥保存在文件", "pairing secrets in the file")),
            _ => o.t("配对密钥保存在系统钥匙串", "pairing secrets in the OS keyring").to_owned(),
        });
        lines.join("\n")
    });
}

fn pair(app: &App, home: &Home) -> CliResult {
    let o = &app.out;
    let host = PhoneHost::start(host_config(home, true)?)?;
    let events = host.subscribe();
    let offer: OfferInfo = host.start_pairing()?;
    event(
        o,
        &serde_json::json!({"event": "offer", "text": offer.text, "expires": offer.expires, "endpoints": offer.endpoints}),
        || {
            format!(
                "{}\n{}\n{}\n  {}",
                crate::term::terminal_qr(&offer.text).unwrap_or_default(),
                o.t("用手机扫描二维码，或在手机上输入：", "scan the QR with the phone, or give it this string:"),
                offer.text,
                offer.endpoints.join("\n  ")
            )
        },
    );
    let mut last_shown = u64::MAX;
    loop {
        let left = offer.expires.saturating_sub(now());
        if left == 0 {
            return Err(CliError::new(ErrorCode::PairingOfferExpired, "no phone paired before the QR expired"));
        }
        if !o.json() && (left / 30 != last_shown / 30 || left <= 10) && left != last_shown {
            eprintln!("{} {left} s", o.t("二维码剩余有效时间", "the QR expires in"));
            last_shown = left;
        }
        let e = match events.recv_timeout(Duration::from_secs(1)) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Err(CliError::new(ErrorCode::Internal, "the phone host stopped")),
        };
        match &e {
            HostEvent::AwaitingConfirmation { request, name, code, .. } => {
                event(o, &e, || format!("{} \"{name}\"  {}  {code}", o.t("手机", "phone"), o.t("确认码", "confirmation code")));
                let question = format!("{} {code}? ", o.t("手机上显示的确认码是否为", "does the phone show the code"));
                if app.term.ask_yes_no(&question)? {
                    host.confirm(*request)?;
                } else {
                    host.reject(*request)?;
                }
            }
            HostEvent::PairingEnded { code, message, .. } => {
                event(o, &e, || format!("{code}: {message}"));
                let code = ErrorCode::ALL.iter().copied().find(|c| c.name() == code).unwrap_or(ErrorCode::PairingNotConfirmed);
                return Err(CliError::new(code, message.clone()));
            }
            HostEvent::Paired { name, peer } => {
                event(o, &e, || format!("{} {name} ({peer})", o.t("已配对", "paired")));
                return Ok(());
            }
            HostEvent::Refused { code, message, remote } => {
                event(o, &e, || format!("{} {remote}: {code}: {message}", o.t("已拒绝连接", "refused a connection from")));
            }
            _ => {}
        }
    }
}
