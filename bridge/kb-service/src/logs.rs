//! Logs: a `tracing` subscriber writing daily-rotated files (`keybridge.YYYY-MM-DD.log`,
//! UTC dates) plus warnings on stderr, and the encrypted export for support.
//!
//! [`export_logs`] bundles the log files and a `manifest.json` into a tar archive,
//! gzips it and seals it in a CMS EnvelopedData (SM4-CBC content, SM2 key transport) to
//! the support certificate — streaming, in constant memory, with a progress callback.
//! Only the log files themselves and the manifest (version, OS, time, file list) go in.
//!
//! PINs cannot reach the files: [`kb_types::Pin`]'s `Debug` prints `Pin(REDACTED)` and it
//! has no `Display`.

use crate::settings::{Paths, Settings};
use crate::{Result, ServiceError};
use kb_pki::Certificate;
use kb_pki::cms::EnvelopeOptions;
use serde::Serialize;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

/// Log file names are `keybridge.YYYY-MM-DD.log`.
pub const LOG_FILE_PREFIX: &str = "keybridge";
/// Log file extension.
pub const LOG_FILE_SUFFIX: &str = "log";

/// How to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Where the daily files go.
    pub dir: PathBuf,
    /// Write files at all (settings: `logs_enabled`).
    pub enabled: bool,
    /// Keep this many daily files; files dated earlier are deleted (settings:
    /// `log_retention_days`). At least 1.
    pub retention_days: u32,
    /// The most detailed level written to the files (default INFO).
    pub file_level: tracing::Level,
    /// The most detailed level written to stderr (default WARN); `None` = nothing.
    pub stderr_level: Option<tracing::Level>,
}

impl LogConfig {
    /// Files in `dir`, 30 days, INFO to the files and WARN to stderr.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            enabled: true,
            retention_days: 30,
            file_level: tracing::Level::INFO,
            stderr_level: Some(tracing::Level::WARN),
        }
    }

    /// From the user's settings and directories.
    pub fn from_settings(settings: &Settings, paths: &Paths) -> Self {
        Self { enabled: settings.logs_enabled, retention_days: settings.log_retention_days, ..Self::new(&paths.log_dir) }
    }
}

/// Keeps the background log writer alive; dropping it flushes the files. Hold it for
/// the life of the program.
#[must_use = "dropping the guard stops file logging"]
pub struct LogGuard {
    worker: Option<WorkerGuard>,
}

impl LogGuard {
    /// Whether log files are being written.
    pub fn file_logging(&self) -> bool {
        self.worker.is_some()
    }
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard").field("file_logging", &self.file_logging()).finish()
    }
}

/// A subscriber for `cfg` without installing it (for [`tracing::subscriber::with_default`]
/// in tests, or an embedder with its own dispatch). Old files are pruned first.
pub fn build_subscriber(cfg: &LogConfig) -> Result<(Box<dyn tracing::Subscriber + Send + Sync>, LogGuard)> {
    let (file_layer, worker) = if cfg.enabled {
        crate::settings::create_private_dir(&cfg.dir)?;
        restrict(&cfg.dir, 0o700).map_err(|e| ServiceError::Io(format!("{}: {e}", cfg.dir.display())))?;
        let keep = cfg.retention_days.max(1);
        prune_old_logs(&cfg.dir, keep)?;
        let appender = DailyFile::open(&cfg.dir, keep).map_err(|e| ServiceError::Io(format!("{}: {e}", cfg.dir.display())))?;
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(appender);
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .with_target(true)
            .with_filter(LevelFilter::from_level(cfg.file_level));
        (Some(layer), Some(guard))
    } else {
        (None, None)
    };
    let stderr_layer = cfg.stderr_level.map(|level| {
        use std::io::IsTerminal;
        tracing_subscriber::fmt::layer()
            .with_writer(io::stderr)
            .with_ansi(io::stderr().is_terminal())
            .with_filter(LevelFilter::from_level(level))
    });
    let subscriber = tracing_subscriber::registry().with(file_layer).with(stderr_layer);
    Ok((Box::new(subscriber), LogGuard { worker }))
}

/// Narrow `path`'s permissions to `mode` (owner-only) if they are wider: a directory or
/// file made by an older version, or by hand. Logs name the user's certificates, media
/// and the sites that used them.
fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)?;
        if meta.permissions().mode() & 0o777 & !mode != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// The log file writer: appends to the day's file ([`log_file_name`], UTC) in the log
/// directory, moving to the next day's file at midnight and then deleting files past
/// the retention. Files are created owner-only (0600 on Unix); an existing one with
/// wider permissions is narrowed when opened.
struct DailyFile {
    dir: PathBuf,
    keep: u32,
    day: i64,
    file: std::fs::File,
}

fn today() -> i64 {
    crate::audit::now_ms().div_euclid(86_400_000)
}

impl DailyFile {
    fn open(dir: &Path, keep: u32) -> io::Result<Self> {
        let day = today();
        Ok(DailyFile { dir: dir.to_path_buf(), keep, day, file: Self::open_day(dir, day)? })
    }

    fn open_day(dir: &Path, day: i64) -> io::Result<std::fs::File> {
        let path = dir.join(log_file_name(day * 86_400));
        let mut o = std::fs::OpenOptions::new();
        o.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let file = o.open(&path)?;
        restrict(&path, 0o600)?;
        Ok(file)
    }
}

impl Write for DailyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let day = today();
        if day != self.day {
            self.file = Self::open_day(&self.dir, day)?;
            self.day = day;
            // A failed prune loses nothing: it is tried again at the next start.
            let _ = prune_old_logs(&self.dir, self.keep);
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Install the process-wide subscriber for `cfg`. Keep the returned guard alive until
/// exit. Fails if a subscriber is already installed.
pub fn init_logging(cfg: &LogConfig) -> Result<LogGuard> {
    let (subscriber, guard) = build_subscriber(cfg)?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| ServiceError::Internal("a logger is already installed in this process".into()))?;
    Ok(guard)
}

/// The file name for the day containing `unix_secs` (UTC), as the appender names it.
pub fn log_file_name(unix_secs: i64) -> String {
    let (y, m, d) = crate::audit::civil_from_days(unix_secs.div_euclid(86_400));
    format!("{LOG_FILE_PREFIX}.{y:04}-{m:02}-{d:02}.{LOG_FILE_SUFFIX}")
}

/// The day (days since 1970-01-01) a log file name stands for; `None` if the name is
/// not one of ours.
fn log_file_day(name: &str) -> Option<i64> {
    let date = name.strip_prefix(LOG_FILE_PREFIX)?.strip_prefix('.')?.strip_suffix(LOG_FILE_SUFFIX)?.strip_suffix('.')?;
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = date.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) { s.parse().ok() } else { None }
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(crate::audit::days_from_civil(i64::from(y), m, d))
}

/// One log file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogFile {
    /// File name (`keybridge.2026-05-01.log`).
    pub name: String,
    /// Full path.
    #[serde(skip)]
    pub path: PathBuf,
    /// Size in bytes when listed.
    pub size: u64,
}

/// Our log files in `dir` (regular files named like [`log_file_name`]), oldest first.
/// A missing directory has none.
pub fn log_files(dir: &Path) -> Result<Vec<LogFile>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ServiceError::Io(format!("{}: {e}", dir.display()))),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
        if log_file_day(&name).is_none() {
            continue;
        }
        // symlink_metadata: never follow a link out of the log directory.
        let meta = std::fs::symlink_metadata(entry.path())?;
        if !meta.is_file() {
            continue;
        }
        out.push(LogFile { name, path: entry.path(), size: meta.len() });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Delete our log files dated more than `retention_days - 1` days before today (UTC),
/// so at most `retention_days` daily files remain. Other files are left alone.
/// Returns how many were deleted.
pub fn prune_old_logs(dir: &Path, retention_days: u32) -> Result<usize> {
    let today = crate::audit::now_ms().div_euclid(86_400_000);
    let oldest_kept = today - i64::from(retention_days.max(1)) + 1;
    let mut n = 0;
    for f in log_files(dir)? {
        if log_file_day(&f.name).is_some_and(|d| d < oldest_kept) {
            std::fs::remove_file(&f.path).map_err(|e| ServiceError::Io(format!("{}: {e}", f.path.display())))?;
            n += 1;
        }
    }
    Ok(n)
}

/// What an export contained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    /// The log files bundled (name and size), oldest first.
    pub files: Vec<LogFile>,
    /// Uncompressed bytes bundled (log files and manifest).
    pub bytes_in: u64,
    /// Bytes of the encrypted bundle written to the output.
    pub bytes_written: u64,
}

#[derive(Serialize)]
struct Manifest<'a> {
    format: &'static str,
    format_version: u32,
    keybridge_version: &'static str,
    os: &'static str,
    os_family: &'static str,
    arch: &'static str,
    created: String,
    created_ms: i64,
    files: &'a [LogFile],
}

/// The name of the manifest inside the bundle.
pub const MANIFEST_NAME: &str = "manifest.json";

/// [`export_logs_with_progress`] without a progress callback.
pub fn export_logs(log_dir: &Path, out: impl Write, support_cert: &Certificate) -> Result<ExportSummary> {
    export_logs_with_progress(log_dir, out, support_cert, |_, _| {})
}

/// Bundle the log files in `log_dir` for support: `manifest.json` plus every log file,
/// as a tar archive, gzip-compressed, sealed in a CMS EnvelopedData (BER, SM4-CBC) to
/// `support_cert` (an encryption or dual-use certificate; SM2 or RSA). Streams in
/// constant memory. `progress(done, total)` is called as input bytes are consumed and
/// finally with `done == total`.
///
/// A file still being written is bundled up to its size when the export started.
pub fn export_logs_with_progress(
    log_dir: &Path,
    out: impl Write,
    support_cert: &Certificate,
    mut progress: impl FnMut(u64, u64),
) -> Result<ExportSummary> {
    let files = log_files(log_dir)?;
    let now = crate::audit::now_ms();
    let manifest = serde_json::to_vec_pretty(&Manifest {
        format: "keybridge-log-export",
        format_version: 1,
        keybridge_version: env!("CARGO_PKG_VERSION"),
        os: std::env::consts::OS,
        os_family: std::env::consts::FAMILY,
        arch: std::env::consts::ARCH,
        created: crate::audit::rfc3339_ms(now),
        created_ms: now,
        files: &files,
    })
    .map_err(|e| ServiceError::Internal(format!("manifest: {e}")))?;
    let total = manifest.len() as u64 + files.iter().map(|f| f.size).sum::<u64>();
    let mtime = u64::try_from(now / 1000).unwrap_or(0);

    let mut counter = CountingWriter { inner: out, n: 0 };
    {
        let tar = TarStream::new(manifest, files.clone(), mtime, total, &mut progress)?;
        let gz = flate2::read::GzEncoder::new(tar, flate2::Compression::default());
        kb_pki::cms::envelope::encrypt(gz, &mut counter, None, std::slice::from_ref(support_cert), &EnvelopeOptions::default())?;
    }
    progress(total, total);
    Ok(ExportSummary { files, bytes_in: total, bytes_written: counter.n })
}

struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A POSIX ustar header for a regular file.
fn ustar_header(name: &str, size: u64, mtime: u64) -> io::Result<[u8; 512]> {
    let mut h = [0u8; 512];
    let nb = name.as_bytes();
    if nb.len() > 100 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("tar: name too long: {name}")));
    }
    if size >= 0o77_777_777_777 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("tar: {name} is too large")));
    }
    let octal = |field: &mut [u8], v: u64| {
        let s = format!("{v:0width$o}", width = field.len() - 1);
        field[..s.len()].copy_from_slice(s.as_bytes());
        field[s.len()] = 0;
    };
    h[..nb.len()].copy_from_slice(nb);
    octal(&mut h[100..108], 0o600); // mode
    octal(&mut h[108..116], 0); // uid
    octal(&mut h[116..124], 0); // gid
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = b'0'; // regular file
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

fn tar_padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

struct Current {
    file: Option<std::fs::File>,
    name: String,
    size: u64,
    remaining: u64,
}

/// A tar archive produced on demand as it is read: a manifest entry, then each file,
/// then the two zero end blocks. Holds at most one file open and one header in memory.
struct TarStream<'p> {
    files: std::vec::IntoIter<LogFile>,
    pending: Vec<u8>,
    pos: usize,
    current: Option<Current>,
    finished: bool,
    mtime: u64,
    done: u64,
    total: u64,
    progress: &'p mut dyn FnMut(u64, u64),
}

impl<'p> TarStream<'p> {
    fn new(
        manifest: Vec<u8>,
        files: Vec<LogFile>,
        mtime: u64,
        total: u64,
        progress: &'p mut dyn FnMut(u64, u64),
    ) -> Result<Self> {
        let mut pending = ustar_header(MANIFEST_NAME, manifest.len() as u64, mtime)?.to_vec();
        pending.extend_from_slice(&manifest);
        pending.resize(pending.len() + tar_padding(manifest.len() as u64), 0);
        let done = manifest.len() as u64;
        Ok(Self { files: files.into_iter(), pending, pos: 0, current: None, finished: false, mtime, done, total, progress })
    }
}

impl Read for TarStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pos < self.pending.len() {
                let n = buf.len().min(self.pending.len() - self.pos);
                buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if let Some(cur) = &mut self.current {
                if cur.remaining > 0 {
                    let want = usize::try_from(cur.remaining).unwrap_or(usize::MAX).min(buf.len());
                    let k = match &mut cur.file {
                        Some(f) => {
                            f.read(&mut buf[..want]).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", cur.name)))?
                        }
                        None => 0,
                    };
                    // A file that shrank or vanished (pruned at midnight) since it was
                    // listed: pad with zeros so the archive stays well-formed.
                    let k = if k == 0 {
                        cur.file = None;
                        buf[..want].fill(0);
                        want
                    } else {
                        k
                    };
                    cur.remaining -= k as u64;
                    self.done += k as u64;
                    (self.progress)(self.done, self.total);
                    return Ok(k);
                }
                let pad = tar_padding(cur.size);
                self.current = None;
                self.pending.clear();
                self.pending.resize(pad, 0);
                self.pos = 0;
                continue;
            }
            match self.files.next() {
                Some(f) => {
                    let file = match std::fs::File::open(&f.path) {
                        Ok(file) => Some(file),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", f.name))),
                    };
                    self.pending.clear();
                    self.pending.extend_from_slice(&ustar_header(&f.name, f.size, self.mtime)?);
                    self.pos = 0;
                    self.current = Some(Current { file, name: f.name, size: f.size, remaining: f.size });
                }
                None if !self.finished => {
                    self.finished = true;
                    self.pending.clear();
                    self.pending.resize(1024, 0);
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(log_file_name(0), "keybridge.1970-01-01.log");
        assert_eq!(log_file_name(1_795_000_000), "keybridge.2026-11-18.log");
        assert_eq!(log_file_day("keybridge.1970-01-02.log"), Some(1));
        for bad in [
            "keybridge.log",
            "keybridge.2026-13-01.log",
            "other.2026-01-01.log",
            "keybridge.2026-1-01.log",
            "keybridge.+026-01-01.log",
        ] {
            assert_eq!(log_file_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_checksum() {
        let h = ustar_header("a.log", 5, 0).unwrap();
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut copy = h;
        copy[148..156].fill(b' ');
        assert_eq!(stored, copy.iter().map(|&b| u32::from(b)).sum::<u32>());
        assert!(ustar_header(&"x".repeat(101), 1, 0).is_err());
    }
}
