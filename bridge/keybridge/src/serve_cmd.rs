//! `keybridge serve`: the local signing bridge, headless (servers, CI, users without
//! the desktop app); `keybridge bridge …`: its grants and client secret.
//!
//! PINs and consent questions go to this terminal (or `--pin-stdin`); with no terminal
//! a web origin without a grant is refused. `--allow-origin` grants an origin for this
//! run only; `bridge allow/deny/revoke` change the remembered grants.

use crate::ctx::{App, write_atomic};
use crate::output::{CliError, CliResult};
use crate::term::TerminalPrompter;
use clap::{Args, Subcommand, ValueEnum};
use kb_bridge::activity::{PromptWatch, WatchedPrompter};
use kb_bridge::config::ConsentPolicy;
use kb_bridge::consent::{Consent, Decision, GrantStore};
use kb_bridge::methods::Service;
use kb_bridge::secret::ClientSecret;
use kb_bridge::{Bridge, BridgeConfig};
use kb_pki::chain::TrustStore;
use kb_service::prompter::Prompter;
use kb_service::settings::Paths;
use kb_types::HasErrorCode;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// Consent policy on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ConsentArg {
    /// Ask on this terminal.
    Prompt,
    /// Refuse web origins without a grant.
    GrantsOnly,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Port on 127.0.0.1 (default: settings' bridge_port, 17210); 0 picks a free one.
    #[arg(long)]
    port: Option<u16>,
    /// Allow this web origin for this run only (repeatable), e.g. https://bid.example.cn.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Web origins without a grant: ask on the terminal, or refuse (default: settings' bridge_consent).
    #[arg(long, value_enum)]
    consent: Option<ConsentArg>,
    /// Trust anchors for `verify` (PEM bundle or DER; repeatable), besides <config>/trust/.
    #[arg(long, value_name = "FILE")]
    trust: Vec<PathBuf>,
    /// Write {url, port, secret_file} as JSON to this file once listening (for scripts).
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct BridgeArgs {
    #[command(subcommand)]
    command: BridgeCommand,
}

#[derive(Subcommand)]
enum BridgeCommand {
    /// The remembered web-origin grants (allowed and denied).
    Grants,
    /// Allow a web origin from now on.
    Allow {
        /// e.g. https://bid.example.cn
        origin: String,
    },
    /// Refuse a web origin at the handshake from now on.
    Deny {
        /// e.g. https://evil.example
        origin: String,
    },
    /// Forget a web origin's grant (it is asked again).
    Revoke {
        /// The origin.
        origin: String,
    },
    /// Where the per-user client secret for native tools is (created if missing).
    Secret,
    /// Chromium, Chrome and Edge's managed policy letting listed (public) platform pages
    /// reach KeyBridge on loopback without a local-network permission prompt (for IT
    /// departments; writing needs root; the browser reads it when it starts).
    LocalNetwork {
        #[command(subcommand)]
        command: LocalNetworkCommand,
        /// Only this browser: chromium, chrome or edge (default: all three).
        #[arg(long, global = true, value_name = "BROWSER")]
        browser: Option<String>,
        /// Policy directories under this root instead of `/` (packaging, tests).
        #[arg(long, global = true, value_name = "DIR", default_value = "/")]
        policy_root: PathBuf,
    },
}

#[derive(Subcommand)]
enum LocalNetworkCommand {
    /// The origins each browser's KeyBridge policy lists.
    List,
    /// Let a platform's pages reach KeyBridge without a prompt.
    Allow {
        /// e.g. https://bid.example.cn
        origin: String,
    },
    /// Take a platform off the list.
    Remove {
        /// The origin.
        origin: String,
    },
}

fn local_network(
    o: &crate::output::Out,
    command: LocalNetworkCommand,
    browser: Option<String>,
    root: &std::path::Path,
) -> CliResult {
    use kb_bridge::browser_policy::{self as policy, Browser};
    let browsers = match browser.as_deref() {
        None => Browser::ALL.to_vec(),
        Some(b) => {
            vec![Browser::parse(b).ok_or_else(|| CliError::input(format!("unknown browser {b:?}: chromium, chrome or edge")))?]
        }
    };
    let policy_error = |e: policy::PolicyError| CliError::new(kb_types::HasErrorCode::code(&e), e.to_string());
    #[derive(Serialize)]
    struct Listed {
        browser: Browser,
        policy_file: String,
        origins: Vec<String>,
    }
    let mut out = Vec::new();
    for b in browsers {
        let origins = match &command {
            LocalNetworkCommand::List => policy::list(root, b),
            LocalNetworkCommand::Allow { origin } => policy::update(root, b, origin, true),
            LocalNetworkCommand::Remove { origin } => policy::update(root, b, origin, false),
        }
        .map_err(policy_error)?;
        let policy_file = b.policy_dir(root).join(policy::FILE_NAME).display().to_string();
        out.push(Listed { browser: b, policy_file, origins: origins.into_iter().collect() });
    }
    o.show(&out, || {
        out.iter()
            .map(|l| {
                let origins = if l.origins.is_empty() { o.t("（无）", "(none)").to_string() } else { l.origins.join(" ") };
                format!("{}\t{}\t{}", l.browser.name(), origins, l.policy_file)
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

fn grant_error(e: kb_bridge::consent::GrantError) -> CliError {
    CliError::new(e.code(), e.to_string())
}

fn grants(paths: &Paths) -> CliResult<GrantStore> {
    GrantStore::open(&GrantStore::path_in(&paths.data_dir)).map_err(grant_error)
}

fn secret(paths: &Paths) -> CliResult<(ClientSecret, PathBuf)> {
    let path = ClientSecret::path_in(&paths.config_dir);
    let s = ClientSecret::load_or_create(&path).map_err(|e| CliError::io(&path.display().to_string(), e))?;
    Ok((s, path))
}

/// The trust store: `<config>/trust/*` plus the given files; a file that cannot be read
/// is an error naming it (a server must not start trusting less than it was told).
fn trust_store(paths: &Paths, extra: &[PathBuf]) -> CliResult<TrustStore> {
    let mut trust = TrustStore::new();
    for f in kb_bridge::trust::anchor_files(&paths.config_dir).iter().chain(extra) {
        for c in kb_bridge::trust::certificates_in(f)? {
            trust.add(c);
        }
    }
    Ok(trust)
}

#[derive(Serialize)]
struct Ready {
    url: String,
    port: u16,
    secret_file: String,
    consent: ConsentPolicy,
    allowed_origins: Vec<String>,
    trust_anchors: usize,
    devices: usize,
    /// The phone link's direct listener (empty: closed or not configured).
    phone_listen: Vec<String>,
}

/// `keybridge serve`.
pub(crate) fn serve(app: &App, a: ServeArgs) -> CliResult {
    let watch = Arc::new(PromptWatch::default());
    let terminal: Arc<dyn Prompter> = Arc::new(TerminalPrompter(Arc::clone(&app.term)));
    let prompter: Arc<dyn Prompter> = Arc::new(WatchedPrompter::new(terminal, Arc::clone(&watch)));
    let d = app.devices_with(Arc::clone(&prompter))?;
    // Paired phones reconnect to this process: their media join the device service.
    let phones = crate::phone_cmd::host_for_serve(&d.home)?;
    if let Some(host) = &phones {
        d.manager.add_transport(host.transport())?;
        log_phone_events(host);
    }
    let paths = d.home.paths.clone();
    // BLE keys: remembered keys set to reconnect (`keybridge ble connect --auto-reconnect`)
    // join the media when in range; links close and scans stop when serving stops.
    let ble = kb_service::media::ble_transport(&paths);
    if let Some(t) = &ble {
        d.manager.add_transport(t.clone())?;
    }
    let served = serve_bridge(app, a, d, phones, prompter, watch);
    if let Some(t) = &ble {
        t.close();
    }
    served
}

fn serve_bridge(
    app: &App,
    a: ServeArgs,
    d: crate::ctx::Devices,
    phones: Option<kb_phonehost::PhoneHost>,
    prompter: Arc<dyn Prompter>,
    watch: Arc<PromptWatch>,
) -> CliResult {
    let paths = d.home.paths.clone();
    let settings = d.home.settings.clone();
    let store = Arc::new(grants(&paths)?);
    let mut allowed = Vec::new();
    for o in &a.allow_origin {
        allowed.push(store.allow_for_session(o).map_err(grant_error)?);
    }
    let policy = match a.consent {
        Some(ConsentArg::Prompt) => ConsentPolicy::Prompt,
        Some(ConsentArg::GrantsOnly) => ConsentPolicy::GrantsOnly,
        None => settings.bridge_consent,
    };
    let trust = trust_store(&paths, &a.trust)?;
    let trust_anchors = trust.anchors().len();
    let config = BridgeConfig {
        port: a.port.unwrap_or(settings.bridge_port),
        consent: policy,
        near_expiry_days: i64::from(settings.near_expiry_warning_days),
        ..BridgeConfig::default()
    };
    let (secret, secret_path) = secret(&paths)?;
    let consent = Consent::new(Arc::clone(&store), policy, prompter);
    let revocation = kb_service::revocation::RevocationChecker::new(kb_service::revocation::RevocationConfig::from_settings(
        &settings, &paths,
    ));
    let service = Arc::new(Service::new(d.manager.clone(), trust, consent, config).with_revocation(Arc::new(revocation)));
    let runtime = kb_bridge::runtime_builder().build().map_err(|e| CliError::io("tokio runtime", e))?;
    runtime.block_on(async {
        let running = Bridge::new(service, secret, watch).start().await.map_err(|e| {
            CliError::new(kb_types::ErrorCode::Io, format!("cannot listen on 127.0.0.1: {e} (is another KeyBridge running?)"))
        })?;
        let ready = Ready {
            url: running.url(),
            port: running.local_addr().port(),
            secret_file: secret_path.display().to_string(),
            consent: policy,
            allowed_origins: allowed,
            trust_anchors,
            devices: d.manager.devices().len(),
            phone_listen: phones.as_ref().map(|h| h.direct_addrs().iter().map(ToString::to_string).collect()).unwrap_or_default(),
        };
        if let Some(f) = &a.ready_file {
            let json = serde_json::to_vec(&ready).map_err(|e| CliError::new(kb_types::ErrorCode::Internal, e.to_string()))?;
            write_atomic(f, &json)?;
        }
        let o = &app.out;
        o.show(&ready, || {
            format!(
                "{} {}\n  {} {}\n  {} {}",
                o.t("本地签名服务已启动", "bridge listening on"),
                ready.url,
                o.t("客户端密钥文件", "client secret file"),
                ready.secret_file,
                o.t("按 Ctrl-C 停止", "Ctrl-C stops it"),
                ""
            )
            .trim_end()
            .to_string()
        });
        wait_for_stop().await;
        running.shutdown().await;
        Ok::<(), CliError>(())
    })
}

/// Phone link events go to the log (the desktop shows them; `serve` is headless).
fn log_phone_events(host: &kb_phonehost::PhoneHost) {
    let events = host.subscribe();
    let _ = std::thread::Builder::new().name("phone events".into()).spawn(move || {
        for e in events {
            tracing::info!(event = ?e, "phone link");
        }
    });
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `keybridge bridge …`.
pub(crate) fn bridge(app: &App, a: BridgeArgs) -> CliResult {
    let o = &app.out;
    if let BridgeCommand::LocalNetwork { command, browser, policy_root } = a.command {
        // Browser policy is machine-wide, not part of a KeyBridge home.
        return local_network(o, command, browser, &policy_root);
    }
    let home = app.home()?;
    match a.command {
        BridgeCommand::Grants => {
            let list = grants(&home.paths)?.list();
            o.show(&list, || {
                if list.is_empty() {
                    return o.t("没有已记住的网页授权", "no remembered web-origin grants").to_string();
                }
                list.iter()
                    .map(|g| {
                        let d = match g.decision {
                            Decision::Allow => o.t("允许", "allow"),
                            Decision::Deny => o.t("拒绝", "deny"),
                        };
                        format!("{d}\t{}", g.origin)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        BridgeCommand::Allow { origin } => {
            let g = grants(&home.paths)?.set(&origin, Decision::Allow).map_err(grant_error)?;
            o.show(&g, || format!("{} {}", o.t("已允许", "allowed"), g.origin));
        }
        BridgeCommand::Deny { origin } => {
            let g = grants(&home.paths)?.set(&origin, Decision::Deny).map_err(grant_error)?;
            o.show(&g, || format!("{} {}", o.t("已拒绝", "denied"), g.origin));
        }
        BridgeCommand::Revoke { origin } => {
            let removed = grants(&home.paths)?.revoke(&origin).map_err(grant_error)?;
            #[derive(Serialize)]
            struct Revoked {
                origin: String,
                revoked: bool,
            }
            let r = Revoked { origin, revoked: removed };
            o.show(&r, || {
                if r.revoked {
                    format!("{} {}", o.t("已撤销", "revoked"), r.origin)
                } else {
                    format!("{} {}", o.t("没有该网页的授权：", "no grant for"), r.origin)
                }
            });
        }
        BridgeCommand::Secret => {
            let (_, path) = secret(&home.paths)?;
            #[derive(Serialize)]
            struct SecretFile {
                secret_file: String,
            }
            let s = SecretFile { secret_file: path.display().to_string() };
            o.show(&s, || s.secret_file.clone());
        }
        BridgeCommand::LocalNetwork { .. } => unreachable!("handled above"),
    }
    Ok(())
}
