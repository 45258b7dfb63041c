//! Where the served file keys live, read without the device service.
//!
//! The module is loaded into other vendors' processes, so it reads the one setting it
//! needs itself instead of linking `kb-service` (and with it SQLite, pcsc-lite, hidapi
//! and cryptoki). It follows the same files and rules as the device service
//! (`bridge/kb-service/src/settings.rs`):
//!
//! 1. `$KEYBRIDGE_SKF_KEY_DIR` when set and not empty ([`KEY_DIR_ENV`]).
//! 2. Otherwise the KeyBridge user's directories: all under `$KEYBRIDGE_HOME` when it is
//!    set and not empty (`<home>/config`, `<home>/data`; a relative home is taken from the
//!    current directory), else the platform's per-user directories for
//!    `cn.KeyBridge.KeyBridge` (on Linux `~/.config/keybridge` and
//!    `~/.local/share/keybridge`).
//! 3. In `<config>/settings.toml`, the key `file_key_dir`: an absolute path, or empty /
//!    absent for the default `<data>/keys`. A missing settings file means the default.
//!
//! Only `file_key_dir` is read; the rest of the file is the service's business (it
//! validates every key when it loads the file), so a key the module does not know is not
//! an error here. A settings file that is not UTF-8 TOML, or a `file_key_dir` that is not
//! a string holding an absolute path, is an error: the module then answers
//! `SAR_NOTINITIALIZEERR` rather than guess at a directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Environment variable naming the directory of the file keys served. Unset: the
/// KeyBridge user's key directory (the `file_key_dir` setting, or its default).
pub const KEY_DIR_ENV: &str = "KEYBRIDGE_SKF_KEY_DIR";
/// Environment variable that puts every KeyBridge file under one directory (the device
/// service's `HOME_ENV`).
pub const HOME_ENV: &str = "KEYBRIDGE_HOME";
/// The settings file inside the config directory.
pub const SETTINGS_FILE_NAME: &str = "settings.toml";
/// The one setting read.
pub const FILE_KEY_DIR_KEY: &str = "file_key_dir";

/// The config and data directories of a KeyBridge user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserDirs {
    /// Holds `settings.toml`.
    pub config_dir: PathBuf,
    /// Holds `keys/`, the default file-key directory.
    pub data_dir: PathBuf,
}

impl UserDirs {
    /// `<root>/config` and `<root>/data`, as under `$KEYBRIDGE_HOME`.
    pub fn under(root: &Path) -> Self {
        UserDirs { config_dir: root.join("config"), data_dir: root.join("data") }
    }

    /// The user's directories: under `home` (the value of `$KEYBRIDGE_HOME`, `None` or
    /// empty = unset), else the platform's per-user directories.
    pub fn find(home: Option<OsString>) -> Result<Self, String> {
        if let Some(home) = home.filter(|h| !h.is_empty()).map(PathBuf::from) {
            let home = if home.is_absolute() {
                home
            } else {
                std::env::current_dir().map_err(|e| format!("current directory: {e}"))?.join(home)
            };
            return Ok(Self::under(&home));
        }
        let dirs = directories::ProjectDirs::from("cn", "KeyBridge", "KeyBridge")
            .ok_or_else(|| format!("no home directory found; set {HOME_ENV} or {KEY_DIR_ENV}"))?;
        Ok(UserDirs { config_dir: dirs.config_dir().to_path_buf(), data_dir: dirs.data_dir().to_path_buf() })
    }

    /// The file-key directory these directories' settings name.
    pub fn file_key_dir(&self) -> Result<PathBuf, String> {
        let path = self.config_dir.join(SETTINGS_FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        match configured_dir(&text).map_err(|e| format!("{}: {e}", path.display()))? {
            Some(dir) => Ok(dir),
            None => Ok(self.data_dir.join("keys")),
        }
    }
}

/// `file_key_dir` from the text of a settings file: `None` when absent or empty.
pub fn configured_dir(settings_toml: &str) -> Result<Option<PathBuf>, String> {
    let table: toml::Table = settings_toml.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
    match table.get(FILE_KEY_DIR_KEY) {
        None => Ok(None),
        Some(toml::Value::String(s)) if s.is_empty() => Ok(None),
        Some(toml::Value::String(s)) if Path::new(s).is_absolute() => Ok(Some(PathBuf::from(s))),
        Some(toml::Value::String(s)) => Err(format!("`{FILE_KEY_DIR_KEY}` must be an absolute path (got \"{s}\")")),
        Some(_) => Err(format!("`{FILE_KEY_DIR_KEY}` must be a quoted path")),
    }
}

/// The directory of the served keys, from the environment and the settings.
pub fn key_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os(KEY_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    UserDirs::find(std::env::var_os(HOME_ENV))?.file_key_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_directory() {
        assert_eq!(configured_dir("").unwrap(), None);
        assert_eq!(configured_dir("file_key_dir = \"\"").unwrap(), None);
        // Keys the module does not read are left to the service.
        let text = "pin_cache_minutes = 5\nskf_modules = [\"/opt/a.so\"]\nfile_key_dir = \"/srv/keys\"\n";
        assert_eq!(configured_dir(text).unwrap(), Some(PathBuf::from("/srv/keys")));
        for (bad, says) in [
            ("file_key_dir = \"keys\"", "must be an absolute path (got \"keys\")"),
            ("file_key_dir = 3", "must be a quoted path"),
            ("file_key_dir = ", ""),
        ] {
            let e = configured_dir(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn home_layout_and_default() {
        let root = tempfile::tempdir().unwrap();
        let dirs = UserDirs::find(Some(root.path().as_os_str().to_owned())).unwrap();
        assert_eq!(dirs, UserDirs::under(root.path()));
        // No settings file: the default under the data directory.
        assert_eq!(dirs.file_key_dir().unwrap(), root.path().join("data/keys"));
        std::fs::create_dir_all(&dirs.config_dir).unwrap();
        std::fs::write(dirs.config_dir.join(SETTINGS_FILE_NAME), "file_key_dir = \"/elsewhere/keys\"\n").unwrap();
        assert_eq!(dirs.file_key_dir().unwrap(), PathBuf::from("/elsewhere/keys"));
        std::fs::write(dirs.config_dir.join(SETTINGS_FILE_NAME), "file_key_dir = [").unwrap();
        assert!(dirs.file_key_dir().unwrap_err().contains("settings.toml"));
        // An empty KEYBRIDGE_HOME counts as unset: the platform's directories.
        let platform = UserDirs::find(Some(OsString::new())).unwrap();
        assert!(platform.config_dir.ends_with("keybridge") || platform.config_dir.ends_with("KeyBridge"), "{platform:?}");
    }
}
