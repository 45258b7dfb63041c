//! What a command works with: the global options, the KeyBridge home (settings, audit
//! log, logs, key directory) and the device service over the file-key directory.

use crate::output::{CliError, CliResult, Out};
use crate::term::{Terminal, TerminalPrompter};
use clap::{Args, ValueEnum};
use kb_filekey::{EXTENSION, FileToken, FileTransport};
use kb_service::audit::AuditLog;
use kb_service::devices::{DeviceEvent, DeviceManager};
use kb_service::logs::{LogConfig, LogGuard};
use kb_service::pin_cache::PinCachePolicy;
use kb_service::prompter::Prompter;
use kb_service::settings::{Paths, Settings};
use kb_types::{DeviceId, DeviceInfo, ErrorCode, HasErrorCode, KeyUsage};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The client name the audit log records for everything the CLI does.
pub(crate) const CLIENT: &str = "cli";

/// How long to wait for the transports to report the media present at start.
const ENUMERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Options every command understands.
#[derive(Args, Clone, Debug)]
pub(crate) struct GlobalOpts {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Messages in English instead of Chinese.
    #[arg(long, global = true)]
    pub(crate) en: bool,
    /// KeyBridge home: settings, audit log, logs and file keys live under it (default:
    /// $KEYBRIDGE_HOME, else the per-user directories).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
    /// Directory of file keys (*.kbkey); default: settings' file_key_dir, else <home>/data/keys.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) keys: Option<PathBuf>,
    /// Read PINs (and confirmations) line by line from stdin instead of the terminal, for
    /// scripts. PINs are never accepted as arguments.
    #[arg(long, global = true)]
    pub(crate) pin_stdin: bool,
    /// Answer yes to every confirmation (scripts).
    #[arg(long, short = 'y', global = true)]
    pub(crate) yes: bool,
    /// INSECURE: new file keys use a fast KDF. For automated tests only.
    #[arg(long, global = true, hide = true)]
    pub(crate) weak_kdf_for_tests: bool,
}

/// Which key slot: `--device`, `--container`, `--usage`.
#[derive(Args, Clone, Debug, Default)]
pub(crate) struct DeviceSel {
    /// Device id (e.g. `file:demo`; see `keybridge devices`). May be left out when
    /// exactly one medium is present.
    #[arg(long, value_name = "ID")]
    pub(crate) device: Option<String>,
    /// Container name. May be left out when the medium has exactly one.
    #[arg(long, value_name = "NAME")]
    pub(crate) container: Option<String>,
    /// Which key pair of the container.
    #[arg(long, value_enum)]
    pub(crate) usage: Option<Usage>,
}

/// A key pair's usage on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Usage {
    /// The signing key pair / certificate (签名).
    Sign,
    /// The encryption key pair / certificate (加密).
    Encrypt,
}

impl Usage {
    pub(crate) fn key_usage(self) -> KeyUsage {
        match self {
            Usage::Sign => KeyUsage::Sign,
            Usage::Encrypt => KeyUsage::Encrypt,
        }
    }
}

/// One run of the CLI.
pub(crate) struct App {
    pub(crate) out: Out,
    pub(crate) g: GlobalOpts,
    pub(crate) term: Arc<Terminal>,
}

impl App {
    pub(crate) fn new(g: GlobalOpts) -> Self {
        let out = Out::new(g.json, g.en);
        let term = Arc::new(Terminal::new(out.lang(), g.pin_stdin, g.yes));
        App { out, g, term }
    }

    /// The KeyBridge home (creates its directories, starts file logging).
    pub(crate) fn home(&self) -> CliResult<Home> {
        Home::open(&self.g)
    }

    /// The home and the device service over it, with every present medium enumerated;
    /// prompts go to the terminal.
    pub(crate) fn devices(&self) -> CliResult<Devices> {
        self.devices_with(Arc::new(TerminalPrompter(Arc::clone(&self.term))))
    }

    /// The same with another prompter.
    pub(crate) fn devices_with(&self, prompter: Arc<dyn Prompter>) -> CliResult<Devices> {
        Devices::open(self.home()?, prompter)
    }
}

/// The KeyBridge home.
pub(crate) struct Home {
    pub(crate) paths: Paths,
    pub(crate) settings: Settings,
    pub(crate) key_dir: PathBuf,
    /// Keeps file logging alive until the command ends.
    _log: Option<LogGuard>,
}

impl Home {
    fn open(g: &GlobalOpts) -> CliResult<Self> {
        let paths = match &g.home {
            Some(h) => kb_service::settings::paths_for(Some(h.clone()))?,
            None => kb_service::settings::default_paths()?,
        };
        let settings = Settings::load(paths.settings_file())?;
        paths.create_all()?;
        let key_dir = g.keys.clone().unwrap_or_else(|| settings.file_key_dir(&paths));
        let cfg = LogConfig { stderr_level: None, ..LogConfig::from_settings(&settings, &paths) };
        // A second logger in one process (never in the CLI) only loses file logging.
        let log = kb_service::logs::init_logging(&cfg).ok();
        Ok(Home { paths, settings, key_dir, _log: log })
    }

    /// Near-expiry window from the settings.
    pub(crate) fn warn_days(&self) -> i64 {
        i64::from(self.settings.near_expiry_warning_days)
    }

    /// Create the key directory (owner-only on Unix) if needed.
    pub(crate) fn ensure_key_dir(&self) -> CliResult {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&self.key_dir).map_err(|e| CliError::io(&self.key_dir.display().to_string(), e))
    }

    /// The audit store.
    pub(crate) fn audit(&self) -> CliResult<AuditLog> {
        Ok(AuditLog::open(self.paths.audit_db())?)
    }
}

/// The device service over the home's key directory.
pub(crate) struct Devices {
    pub(crate) home: Home,
    pub(crate) manager: DeviceManager,
    /// Transport problems reported during enumeration (unreadable key files…).
    pub(crate) problems: Vec<String>,
}

impl Devices {
    pub(crate) fn open(home: Home, prompter: Arc<dyn Prompter>) -> CliResult<Self> {
        home.ensure_key_dir()?;
        let audit = Arc::new(home.audit()?);
        let policy = PinCachePolicy::from_minutes(home.settings.pin_cache_minutes.minutes()).unwrap_or_default();
        let manager = DeviceManager::new(prompter, audit, policy);
        let events = manager.subscribe();
        for transport in kb_service::media::standard_transports(&home.settings, &home.key_dir) {
            manager.add_transport(transport)?;
        }
        if !manager.wait_enumerated(ENUMERATION_TIMEOUT) {
            tracing::warn!("device enumeration did not complete in time");
        }
        let problems = events
            .try_iter()
            .filter_map(|e| match e {
                DeviceEvent::TransportError { message, .. } => Some(message),
                _ => None,
            })
            .collect();
        Ok(Devices { home, manager, problems })
    }

    fn list(&self) -> String {
        self.manager.devices().iter().map(|d| format!("{} ({})", d.id, d.label)).collect::<Vec<_>>().join(", ")
    }

    /// Key files in the key directory that cannot be opened, with why.
    fn broken_key_files(&self) -> Vec<CliError> {
        let Ok(rd) = std::fs::read_dir(&self.home.key_dir) else { return Vec::new() };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == EXTENSION)
                && p.is_file()
                && let Err(err) = FileToken::open(&p)
            {
                out.push(CliError::new(err.code(), format!("{}: {err}", display_name(&p))));
            }
        }
        out
    }

    /// The medium to use: `--device`, or the only one present.
    pub(crate) fn select(&self, device: Option<&str>) -> CliResult<DeviceInfo> {
        if let Some(id) = device {
            let id = DeviceId(id.to_string());
            if let Ok(info) = self.manager.device(&id) {
                return Ok(info);
            }
            // A file key that is there but cannot be opened: say why, not just "unknown".
            if let Some(path) = FileTransport::new(&self.home.key_dir).path_of(&id)
                && path.is_file()
                && let Err(e) = FileToken::open(&path)
            {
                return Err(CliError::new(e.code(), format!("{id}: {e}")));
            }
            let present = self.list();
            return Err(CliError::new(
                ErrorCode::UnknownDevice,
                format!("{id} is not present; present: {}", if present.is_empty() { "none" } else { &present }),
            ));
        }
        let mut all = self.manager.devices();
        match all.len() {
            1 => Ok(all.remove(0)),
            0 => match self.broken_key_files().into_iter().next() {
                Some(e) => Err(e),
                None => Err(CliError::new(
                    ErrorCode::UnknownDevice,
                    format!(
                        "no key medium found in {} (create a demo key: `keybridge demo`, or a file key: `keybridge filekey create`)",
                        self.home.key_dir.display()
                    ),
                )),
            },
            _ => Err(CliError::input(format!("several key media are present: {}; choose one with --device ID", self.list()))),
        }
    }

    /// The container to use: `--container` (which must exist), or the medium's only one.
    pub(crate) fn container(&self, device: &DeviceId, name: Option<&str>) -> CliResult<String> {
        let containers = self.manager.containers(device, CLIENT)?;
        let names = || containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
        match name {
            Some(n) if containers.iter().any(|c| c.name == n) => Ok(n.to_string()),
            Some(n) => Err(CliError::new(
                ErrorCode::NotFound,
                format!(
                    "no container {n} on {device}; containers: {}",
                    if containers.is_empty() { "none".into() } else { names() }
                ),
            )),
            None => match containers.len() {
                1 => Ok(containers[0].name.clone()),
                0 => Err(CliError::new(ErrorCode::NotFound, format!("{device} has no containers"))),
                _ => Err(CliError::input(format!("{device} has several containers: {}; choose one with --container", names()))),
            },
        }
    }

    /// Device, container and usage of a selector (`usage` when `--usage` is left out).
    pub(crate) fn slot(&self, sel: &DeviceSel, usage: KeyUsage) -> CliResult<(DeviceInfo, String, KeyUsage)> {
        let dev = self.select(sel.device.as_deref())?;
        let container = self.container(&dev.id, sel.container.as_deref())?;
        Ok((dev, container, sel.usage.map(Usage::key_usage).unwrap_or(usage)))
    }
}

pub(crate) fn display_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

/// Write `bytes` to `path` atomically: a temp file beside it, synced, renamed over it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> CliResult {
    write_atomic_with(path, |f| {
        use std::io::Write;
        f.write_all(bytes).map_err(|e| CliError::io(&path.display().to_string(), e))
    })
}

/// Fill a temp file beside `path` with `fill`, then rename it over `path`. If `fill`
/// fails the temp file is removed and `path` is left as it was.
pub(crate) fn write_atomic_with<T>(path: &Path, fill: impl FnOnce(&mut std::fs::File) -> CliResult<T>) -> CliResult<T> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.display().to_string();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", display_name(path)))
        .suffix(".part")
        .tempfile_in(&dir)
        .map_err(|e| CliError::io(&name, e))?;
    let v = fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(|e| CliError::io(&name, e))?;
    tmp.persist(path).map_err(|e| CliError::io(&name, e.error))?;
    Ok(v)
}

/// Read a whole file.
pub(crate) fn read_file(path: &Path) -> CliResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| CliError::io(&path.display().to_string(), e))
}

/// Open a file for reading, with its size.
pub(crate) fn open_file(path: &Path) -> CliResult<(std::fs::File, u64)> {
    let f = std::fs::File::open(path).map_err(|e| CliError::io(&path.display().to_string(), e))?;
    let len = f.metadata().map_err(|e| CliError::io(&path.display().to_string(), e))?.len();
    Ok((f, len))
}
