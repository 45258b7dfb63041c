//! Reading, locking and atomically replacing a key file.
//!
//! - Writers take an advisory exclusive lock (`flock`/`LockFileEx` through `fs2`) on a
//!   sidecar file `.<name>.kbkey.lock`, so two processes never interleave a
//!   read-modify-write. The key file itself cannot carry the lock: it is replaced by
//!   rename, which gives it a new inode.
//! - Every write goes to `.<name>.kbkey.tmp-<pid>-<random>` in the same directory, is
//!   fsynced, renamed over the key file, and the directory is fsynced. A crash leaves
//!   either the old or the new file, plus at most a stale temp file that the next
//!   writer (holding the lock, so no writer can own it) deletes.
//! - Readers need no lock: a rename swaps whole files.

use crate::format::MAX_FILE_LEN;
use kb_token::{Result, TokenError};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Proof that the key file's lock is held; released on drop (closing the file).
pub(crate) struct LockGuard {
    _file: File,
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| TokenError::Io("the key file path has no file name".into()))
}

pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `.<name>.lock` next to the key file.
pub(crate) fn lock_path(path: &Path) -> Result<PathBuf> {
    Ok(parent_dir(path).join(format!(".{}.lock", file_name(path)?)))
}

fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Take the exclusive lock, waiting up to `timeout`; `Busy` after that.
pub(crate) fn lock(path: &Path, timeout: Duration) -> Result<LockGuard> {
    let f = private_options().read(true).write(true).create(true).truncate(false).open(lock_path(path)?)?;
    let start = Instant::now();
    let contended = fs2::lock_contended_error().raw_os_error();
    loop {
        match fs2::FileExt::try_lock_exclusive(&f) {
            Ok(()) => return Ok(LockGuard { _file: f }),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.raw_os_error() == contended => {
                if start.elapsed() >= timeout {
                    return Err(TokenError::Busy);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Read the whole key file (`Removed` if it is gone, `Corrupt` if absurdly large).
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    let f = File::open(path)?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_LEN + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(TokenError::Corrupt("file is larger than any key file can be".into()));
    }
    Ok(bytes)
}

/// Atomically replace (or create) the key file with `bytes`. Needs the lock.
pub(crate) fn write_atomic(_lock: &LockGuard, path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let prefix = format!(".{}.tmp-", file_name(path)?);
    remove_stale_temps(&dir, &prefix);
    let rand = kb_crypto::rng::random_array::<8>()?;
    let tmp = dir.join(format!("{prefix}{}-{:016x}", std::process::id(), u64::from_be_bytes(rand)));
    let result = (|| -> std::io::Result<()> {
        let mut f = private_options().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| match e.kind() {
        // The directory went away: the medium is gone.
        std::io::ErrorKind::NotFound => TokenError::Removed,
        _ => TokenError::Io(e.to_string()),
    })
}

/// Temp files left by a writer that crashed. Only called with the lock held, so no
/// live writer owns one of them.
fn remove_stale_temps(dir: &Path, prefix: &str) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    // Windows cannot fsync a directory through std; the rename itself (MoveFileExW,
    // replace-existing) is atomic there but its durability is up to NTFS's journal.
    Ok(())
}
