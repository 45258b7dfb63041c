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
use kb_types::{DeviceId, DeviceInfo, ErrorCode, HasErrorCode, KeyUsage, TransportKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
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
    /// The medium the command chose, to name it when it goes away mid-command.
    medium: Arc<Mutex<Option<DeviceInfo>>>,
}

impl App {
    pub(crate) fn new(g: GlobalOpts) -> Self {
        let out = Out::new(g.json, g.en);
        let term = Arc::new(Terminal::new(out.lang(), g.pin_stdin, g.yes));
        App { out, g, term, medium: Arc::default() }
    }

    /// `e` with the medium it concerns named, when the medium went away during the
    /// command (the service's own message only says "removed").
    pub(crate) fn explain(&self, mut e: CliError) -> CliError {
        let medium = self.medium.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(m) = medium
            && matches!(e.code, ErrorCode::DeviceRemoved | ErrorCode::UnknownDevice)
            && !e.detail.contains(m.id.0.as_str())
        {
            e.detail = format!("{}: {}", describe_medium(&m), e.detail);
        }
        e
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
        let mut d = Devices::open(self.home()?, prompter)?;
        d.chosen = Arc::clone(&self.medium);
        Ok(d)
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
    /// A revocation checker from the settings (CRL folder, cache, online or not).
    pub(crate) fn revocation(&self) -> kb_service::revocation::RevocationChecker {
        kb_service::revocation::RevocationChecker::new(kb_service::revocation::RevocationConfig::from_settings(
            &self.settings,
            &self.paths,
        ))
    }

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
    /// The service's events since the command started.
    events: Receiver<DeviceEvent>,
    /// Every medium seen since the command started, present or gone.
    seen: Mutex<BTreeMap<DeviceId, DeviceInfo>>,
    /// Where [`Devices::select`] records its choice (shared with the [`App`]).
    chosen: Arc<Mutex<Option<DeviceInfo>>>,
}

/// A medium as people recognise it: label, id and the driver it came through
/// (`"测试介质" (skf:0123, SKF module, Vendor Model)`).
pub(crate) fn describe_medium(d: &DeviceInfo) -> String {
    let driver = match d.transport {
        TransportKind::File => "file key",
        TransportKind::Pcsc => "PC/SC smart card",
        TransportKind::Pkcs11 => "PKCS#11 module",
        TransportKind::Skf => "SKF (GM/T 0016) module",
        TransportKind::Hid => "HID key",
        TransportKind::Ble => "Bluetooth LE key",
        TransportKind::Phone => "phone",
    };
    let model = [d.manufacturer.trim(), d.model.trim()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" ");
    let model = if model.is_empty() { String::new() } else { format!(", {model}") };
    format!("\"{}\" ({}, {driver}{model})", d.label, d.id)
}

/// Why no medium can be used: the media that went away during the command (named with
/// their driver), or — only when none was ever seen — where media were looked for and
/// how to make one.
fn no_medium(gone: &[DeviceInfo], searched: &str) -> CliError {
    match gone {
        [] => CliError::new(
            ErrorCode::UnknownDevice,
            format!(
                "no key medium found ({searched}); create a demo key: `keybridge demo`, or a file key: `keybridge filekey create`"
            ),
        ),
        _ => CliError::new(
            ErrorCode::DeviceRemoved,
            format!(
                "{} went away during the command (unplugged, or its driver stopped reporting it); plug it in again and retry",
                gone.iter().map(describe_medium).collect::<Vec<_>>().join(", ")
            ),
        ),
    }
}

impl Devices {
    pub(crate) fn open(home: Home, prompter: Arc<dyn Prompter>) -> CliResult<Self> {
        home.ensure_key_dir()?;
        let audit = Arc::new(home.audit()?);
        let policy = PinCachePolicy::from_minutes(home.settings.pin_cache_minutes.minutes()).unwrap_or_default();
        let manager = DeviceManager::new(prompter, audit, policy);
        manager.pin_cache().set_shared(home.settings.pin_cache_shared);
        let events = manager.subscribe();
        for transport in kb_service::media::standard_transports(&home.settings, &home.key_dir) {
            manager.add_transport(transport)?;
        }
        if !manager.wait_enumerated(ENUMERATION_TIMEOUT) {
            tracing::warn!("device enumeration did not complete in time");
        }
        let d = Devices { home, manager, problems: Vec::new(), events, seen: Mutex::default(), chosen: Arc::default() };
        let problems = d.drain_events();
        Ok(Devices { problems, ..d })
    }

    /// Take the events so far: media seen are remembered; transport problems returned.
    fn drain_events(&self) -> Vec<String> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut problems = Vec::new();
        for e in self.events.try_iter() {
            match e {
                DeviceEvent::Added(info) => {
                    seen.insert(info.id.clone(), info);
                }
                DeviceEvent::TransportError { message, .. } => problems.push(message),
                _ => {}
            }
        }
        problems
    }

    /// Media seen during this command that are no longer present.
    fn gone(&self) -> Vec<DeviceInfo> {
        self.drain_events();
        let present = self.manager.devices();
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.values().filter(|s| !present.iter().any(|p| p.id == s.id)).cloned().collect()
    }

    /// Where media are looked for: the key directory and the hardware drivers.
    fn searched(&self) -> String {
        let mut places = vec![format!("file keys in {}", self.home.key_dir.display()), "PC/SC readers".into(), "HID keys".into()];
        places.extend(self.home.settings.pkcs11_modules.iter().map(|m| format!("PKCS#11 module {}", m.display())));
        places.extend(self.home.settings.skf_modules.iter().map(|m| format!("SKF module {}", m.display())));
        places.join(", ")
    }

    /// The media to search: `--device`, or every one present (with `select`'s error
    /// when none is).
    pub(crate) fn candidates(&self, device: Option<&str>) -> CliResult<Vec<DeviceInfo>> {
        let all = self.manager.devices();
        if device.is_some() || all.is_empty() {
            return Ok(vec![self.select(device)?]);
        }
        Ok(all)
    }

    /// Record the medium a command works on (named if it goes away).
    pub(crate) fn choose(&self, info: DeviceInfo) -> DeviceInfo {
        *self.chosen.lock().unwrap_or_else(|p| p.into_inner()) = Some(info.clone());
        info
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
                return Ok(self.choose(info));
            }
            if let Some(g) = self.gone().into_iter().find(|g| g.id == id) {
                return Err(no_medium(&[g], ""));
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
            1 => Ok(self.choose(all.remove(0))),
            0 => {
                let gone = self.gone();
                match self.broken_key_files().into_iter().next() {
                    Some(e) if gone.is_empty() => Err(e),
                    _ => Err(no_medium(&gone, &self.searched())),
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use kb_types::Capabilities;

    fn medium(transport: TransportKind, label: &str, serial: &str) -> DeviceInfo {
        DeviceInfo {
            id: DeviceId::new(transport, serial),
            label: label.into(),
            serial: serial.into(),
            manufacturer: "Vendor".into(),
            model: "Key 3000".into(),
            transport,
            capabilities: Capabilities::default(),
        }
    }

    #[test]
    fn a_medium_that_went_away_is_named_with_its_driver() {
        let skf = medium(TransportKind::Skf, "张三的密钥", "SN0001");
        let e = no_medium(std::slice::from_ref(&skf), "file keys in /home/u/data/keys");
        assert_eq!(e.code, ErrorCode::DeviceRemoved);
        for part in ["张三的密钥", "skf:SN0001", "SKF (GM/T 0016) module", "Vendor Key 3000"] {
            assert!(e.detail.contains(part), "{part}: {}", e.detail);
        }
        assert!(!e.detail.contains("demo") && !e.detail.contains("data/keys"), "{}", e.detail);
        // Only when nothing was ever seen: where we looked and how to make a key.
        let e = no_medium(&[], "file keys in /home/u/data/keys, SKF module /opt/v/libskf.so");
        assert_eq!(e.code, ErrorCode::UnknownDevice);
        assert!(e.detail.contains("keybridge demo") && e.detail.contains("/opt/v/libskf.so"), "{}", e.detail);
    }
}
