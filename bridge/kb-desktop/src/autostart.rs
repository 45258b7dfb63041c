//! Start at login (the `autostart` setting): an XDG autostart entry
//! (`$XDG_CONFIG_HOME/autostart/keybridge-desktop.desktop`, freedesktop.org Desktop
//! Application Autostart Specification) that starts the app in the tray with `--hidden`.
//!
//! Off by default; the entry exists exactly while the setting is on. It names the running
//! executable (the AppImage file when run from one) and carries `TryExec`, so once the
//! app is uninstalled the session ignores the entry instead of failing on it. Windows and
//! macOS have no such directory: there turning it on is refused with
//! [`ErrorCode::AutostartUnavailable`].

use kb_types::ErrorCode;
use std::path::{Path, PathBuf};

/// The entry's file name inside the autostart directory.
pub const ENTRY_FILE_NAME: &str = "keybridge-desktop.desktop";

/// The user's XDG autostart directory (`$XDG_CONFIG_HOME/autostart`, else
/// `~/.config/autostart`); `None` where XDG autostart does not apply (Windows, macOS) or
/// no home directory is known.
pub fn default_dir() -> Option<PathBuf> {
    if cfg!(any(target_os = "windows", target_os = "macos")) {
        return None;
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("autostart"))
}

/// The executable the entry starts: the AppImage file when running from one (its
/// mounted image disappears at exit), else this process's executable.
pub fn current_program() -> std::io::Result<PathBuf> {
    if let Some(appimage) = std::env::var_os("APPIMAGE").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Ok(appimage);
    }
    std::env::current_exe()
}

/// Write (`enabled`) or remove the entry in `dir`. Writing is atomic; removing an entry
/// that is not there is not an error.
pub fn apply(dir: Option<&Path>, enabled: bool, program: &Path) -> Result<(), (ErrorCode, String)> {
    let Some(dir) = dir else {
        return if enabled {
            Err((ErrorCode::AutostartUnavailable, "starting at login is not supported on this system yet".into()))
        } else {
            Ok(())
        };
    };
    let path = dir.join(ENTRY_FILE_NAME);
    let io = |what: &str, e: std::io::Error| (ErrorCode::AutostartUnavailable, format!("{what} {}: {e}", path.display()));
    if !enabled {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("cannot remove", e)),
            _ => Ok(()),
        };
    }
    let text = entry(program).map_err(|e| (ErrorCode::AutostartUnavailable, e))?;
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create the directory of", e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io("cannot write", e))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|e| io("cannot write", e))?;
    tmp.persist(&path).map_err(|e| io("cannot write", e.error))?;
    Ok(())
}

/// The entry's text for `program`.
pub fn entry(program: &Path) -> Result<String, String> {
    let program = program.to_str().ok_or_else(|| format!("the program path {} is not UTF-8", program.display()))?;
    if !Path::new(program).is_absolute() || program.contains(['\n', '\r']) {
        return Err(format!("the program path {program:?} cannot be written into an autostart entry"));
    }
    Ok(format!(
        "[Desktop Entry]\n\
         Type=Application\n\
         Name=KeyBridge\n\
         Comment=Start KeyBridge in the tray at login\n\
         Comment[zh_CN]=登录时在托盘中启动 KeyBridge\n\
         Exec={} --hidden\n\
         TryExec={}\n\
         Icon=keybridge-desktop\n\
         Terminal=false\n\
         NoDisplay=true\n\
         X-GNOME-Autostart-enabled=true\n",
        exec_argument(program),
        string_value(program),
    ))
}

/// A desktop-entry string value: backslashes doubled (the spec's string escapes).
fn string_value(s: &str) -> String {
    s.replace('\\', "\\\\")
}

/// One `Exec` argument: double-quoted with `"`, `` ` ``, `$` and `\` backslash-escaped
/// (the spec's quoting rule), `%` doubled (field codes), then the string escapes.
fn exec_argument(s: &str) -> String {
    let mut quoted = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '`' | '$' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '%' => quoted.push_str("%%"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    string_value(&quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_starts_the_program_hidden() {
        let text = entry(Path::new("/usr/bin/keybridge-desktop")).unwrap();
        assert!(text.starts_with("[Desktop Entry]\n"), "{text}");
        assert!(text.contains("\nExec=\"/usr/bin/keybridge-desktop\" --hidden\n"), "{text}");
        assert!(text.contains("\nTryExec=/usr/bin/keybridge-desktop\n"), "{text}");
    }

    #[test]
    fn exec_quoting_follows_the_spec() {
        // A path with a space, a quote, a dollar, a percent and a backslash: quoting
        // escapes, then the string level doubles every backslash.
        let text = entry(Path::new("/opt/Key Bridge/a\"b$c%d\\e")).unwrap();
        assert!(text.contains("\nExec=\"/opt/Key Bridge/a\\\\\"b\\\\$c%%d\\\\\\\\e\" --hidden\n"), "{text}");
        assert!(text.contains("\nTryExec=/opt/Key Bridge/a\"b$c%d\\\\e\n"), "{text}");
        assert!(entry(Path::new("relative/keybridge-desktop")).is_err());
        assert!(entry(Path::new("/tmp/a\nb")).is_err());
    }

    #[test]
    fn apply_writes_and_removes_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let auto = dir.path().join("config/autostart");
        let file = auto.join(ENTRY_FILE_NAME);
        apply(Some(&auto), true, Path::new("/usr/bin/keybridge-desktop")).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), entry(Path::new("/usr/bin/keybridge-desktop")).unwrap());
        apply(Some(&auto), false, Path::new("/usr/bin/keybridge-desktop")).unwrap();
        assert!(!file.exists());
        // Removing twice is fine; only our entry is touched.
        std::fs::write(auto.join("other.desktop"), "x").unwrap();
        apply(Some(&auto), false, Path::new("/usr/bin/keybridge-desktop")).unwrap();
        assert!(auto.join("other.desktop").exists());
    }

    #[test]
    fn without_an_autostart_directory_turning_it_on_is_refused() {
        let (code, _) = apply(None, true, Path::new("/usr/bin/keybridge-desktop")).unwrap_err();
        assert_eq!(code, ErrorCode::AutostartUnavailable);
        apply(None, false, Path::new("/usr/bin/keybridge-desktop")).unwrap();
    }
}
