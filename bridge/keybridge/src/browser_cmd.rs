//! `keybridge native-host`: the native messaging host the KeyBridge browser extension
//! starts (see `kb_bridge::native`); `keybridge browser install-host/remove-host`: its
//! manifests for Chromium, Chrome and Edge.
//!
//! The host is this binary, not a separate one: the manifest's `path` names `keybridge`
//! itself, and a browser starts it with the extension's origin
//! (`chrome-extension://<id>/`) as the only argument (plus `--parent-window=…` on
//! Windows), which `main` recognizes. One binary means one thing to install and the same
//! home and settings resolution as every other command (the host reads `bridge_port`).

use crate::ctx::{App, write_atomic_with};
use crate::output::{CliError, CliResult};
use clap::{Args, Subcommand};
use kb_bridge::browser_policy::Browser;
use kb_bridge::native::{self, MAX_TO_BROWSER, ToBrowser};
use kb_bridge_protocol::ErrorObject;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How browsers call the host: the caller's origin first (Chrome, Chromium, Edge).
pub(crate) const CALLER_PREFIX: &str = "chrome-extension://";

#[derive(Args)]
pub(crate) struct NativeHostArgs {
    /// The calling extension's origin, as the browser passes it (chrome-extension://<id>/).
    caller: Option<String>,
    /// What else the browser passes (Windows: --parent-window=<handle>); ignored.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

#[derive(Args)]
pub(crate) struct BrowserArgs {
    #[command(subcommand)]
    command: BrowserCommand,
    /// Only this browser: chromium, chrome or edge (default: all three).
    #[arg(long, global = true, value_name = "BROWSER")]
    browser: Option<String>,
    /// Install into this browser profile directory (a browser started with
    /// --user-data-dir DIR reads DIR/NativeMessagingHosts) instead of the user's browsers.
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "system")]
    user_data_dir: Option<PathBuf>,
    /// The system-wide directories (/etc/…; needs root) instead of the current user's.
    #[arg(long, global = true)]
    system: bool,
    /// With --system: directories under this root instead of `/` (packaging).
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    root: PathBuf,
}

#[derive(Subcommand)]
enum BrowserCommand {
    /// Write the native messaging host manifest (com.keybridge.host.json) so the KeyBridge
    /// extension can reach this KeyBridge.
    InstallHost {
        /// The host executable the manifest names (default: this keybridge binary).
        #[arg(long, value_name = "FILE")]
        host_path: Option<PathBuf>,
    },
    /// Remove the manifest again.
    RemoveHost,
}

/// `keybridge native-host`: serve one page connection on stdin/stdout. Nothing but
/// native messages is ever written to stdout; failures are reported to the browser as
/// an `error` message and to stderr (which the browser logs).
pub(crate) fn native_host(app: &App, a: NativeHostArgs) -> CliResult {
    if let Some(c) = &a.caller {
        tracing::info!(caller = %c, extra = a.rest.len(), "native messaging host started");
    }
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| CliError::io("tokio runtime", e))?;
    let port = app.home().map(|h| h.settings.bridge_port);
    let result = runtime.block_on(async move {
        match port {
            Ok(port) => native::run_host(tokio::io::stdin(), tokio::io::stdout(), port).await.map_err(|e| e.to_string()),
            Err(e) => {
                let error = ErrorObject::new(e.code, e.detail.clone());
                let body = serde_json::to_vec(&ToBrowser::Error { error }).unwrap_or_default();
                let mut out = tokio::io::stdout();
                let _ = native::write_message(&mut out, &body, MAX_TO_BROWSER).await;
                Err(e.detail)
            }
        }
    });
    // The stdin reader may still be blocked in a read the browser will never complete
    // (it waits for the host to exit): do not wait for it.
    runtime.shutdown_background();
    if let Err(e) = result {
        eprintln!("keybridge native-host: {e}");
        std::process::exit(1);
    }
    Ok(())
}

#[derive(Serialize)]
struct Manifest {
    browser: Option<Browser>,
    file: String,
    /// `installed`, `removed` or `absent`.
    state: &'static str,
}

/// `keybridge browser …`.
pub(crate) fn browser(app: &App, a: BrowserArgs) -> CliResult {
    let o = &app.out;
    let dirs = manifest_dirs(&a)?;
    let file_name = native::manifest_file_name();
    let mut done = Vec::new();
    for (browser, dir) in dirs {
        let file = dir.join(&file_name);
        let state = match &a.command {
            BrowserCommand::InstallHost { host_path } => {
                let path = match host_path {
                    Some(p) => std::path::absolute(p).map_err(|e| CliError::io(&p.display().to_string(), e))?,
                    None => std::env::current_exe().map_err(|e| CliError::io("the keybridge executable", e))?,
                };
                std::fs::create_dir_all(&dir).map_err(|e| CliError::io(&dir.display().to_string(), e))?;
                write_manifest(&file, &native::host_manifest(&path))?;
                "installed"
            }
            BrowserCommand::RemoveHost => match std::fs::remove_file(&file) {
                Ok(()) => "removed",
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => "absent",
                Err(e) => return Err(CliError::io(&file.display().to_string(), e)),
            },
        };
        done.push(Manifest { browser, file: file.display().to_string(), state });
    }
    o.show(&done, || {
        done.iter()
            .map(|m| {
                let state = match m.state {
                    "installed" => o.t("已安装", "installed"),
                    "removed" => o.t("已删除", "removed"),
                    _ => o.t("不存在", "absent"),
                };
                format!("{}\t{state}\t{}", m.browser.map_or("-", Browser::name), m.file)
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

/// The directories the command writes to, each with its browser (none for a profile directory).
fn manifest_dirs(a: &BrowserArgs) -> CliResult<Vec<(Option<Browser>, PathBuf)>> {
    if let Some(dir) = &a.user_data_dir {
        return Ok(vec![(None, dir.join("NativeMessagingHosts"))]);
    }
    let browsers = match a.browser.as_deref() {
        None => Browser::ALL.to_vec(),
        Some(b) => {
            vec![Browser::parse(b).ok_or_else(|| CliError::input(format!("unknown browser {b:?}: chromium, chrome or edge")))?]
        }
    };
    let config_home = if a.system { None } else { Some(user_config_home()?) };
    Ok(browsers
        .into_iter()
        .map(|b| match &config_home {
            Some(c) => (Some(b), native::user_manifest_dir(b, c)),
            None => (Some(b), native::system_manifest_dir(b, &a.root)),
        })
        .collect())
}

/// `$XDG_CONFIG_HOME`, else `~/.config`.
fn user_config_home() -> CliResult<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Ok(PathBuf::from(x));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config"))
        .ok_or_else(|| CliError::input("no HOME: pass --user-data-dir or --system"))
}

/// Writes a manifest atomically, readable by everyone (the browser runs as the user; a
/// system-wide file is root's).
fn write_manifest(file: &Path, text: &str) -> CliResult {
    let name = file.display().to_string();
    write_atomic_with(file, |f| {
        use std::io::Write;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(|e| CliError::io(&name, e))?;
        }
        f.write_all(text.as_bytes()).map_err(|e| CliError::io(&name, e))
    })
}
