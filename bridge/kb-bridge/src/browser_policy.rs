//! Chromium-based browsers' managed policy for Local Network Access: the origins of the
//! trading platforms whose (public) pages may reach KeyBridge on loopback without a
//! permission prompt (`LocalNetworkAccessAllowedForUrls`).
//!
//! Since Chrome 147 a public page's WebSocket to `127.0.0.1` is gated by the "local network
//! access" permission; an IT department allows its platforms once for every user by
//! listing them in the browser's managed policy. KeyBridge writes its own policy file in
//! each browser's managed-policy directory (Linux paths below; other files there are left
//! alone), merging origins, atomically. Writing there needs root (`sudo keybridge bridge
//! local-network allow …`); the browser reads it at start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kb_types::ErrorCode;

use crate::handshake::normalize_origin;

/// The policy this module manages.
pub const POLICY: &str = "LocalNetworkAccessAllowedForUrls";
/// KeyBridge's file in each managed-policy directory.
pub const FILE_NAME: &str = "keybridge-local-network.json";

/// A Chromium-based browser with a managed-policy directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Browser {
    /// Chromium (Debian's `chromium`).
    Chromium,
    /// Google Chrome.
    Chrome,
    /// Microsoft Edge.
    Edge,
}

impl Browser {
    /// Every browser this module knows.
    pub const ALL: [Browser; 3] = [Browser::Chromium, Browser::Chrome, Browser::Edge];

    /// The managed-policy directory on Linux, under `root` (`/` on a real system).
    pub fn policy_dir(self, root: &Path) -> PathBuf {
        root.join(match self {
            Browser::Chromium => "etc/chromium/policies/managed",
            Browser::Chrome => "etc/opt/chrome/policies/managed",
            Browser::Edge => "etc/opt/edge/policies/managed",
        })
    }

    /// From a name (`chromium`, `chrome`, `edge`).
    pub fn parse(s: &str) -> Option<Browser> {
        Browser::ALL.into_iter().find(|b| b.name() == s.to_ascii_lowercase())
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Browser::Chromium => "chromium",
            Browser::Chrome => "chrome",
            Browser::Edge => "edge",
        }
    }
}

/// Why the policy could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not a web origin (`https://host[:port]`).
    #[error("{origin:?} is not a web origin: {why}")]
    BadOrigin {
        /// What was given.
        origin: String,
        /// Why it is not one.
        why: &'static str,
    },
    /// KeyBridge's policy file exists but is not one it wrote (left as it is).
    #[error("{path}: not a policy file KeyBridge can update: {why}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// Reading or writing failed (writing needs root).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl kb_types::HasErrorCode for PolicyError {
    fn code(&self) -> ErrorCode {
        match self {
            PolicyError::BadOrigin { .. } => ErrorCode::InvalidParameter,
            PolicyError::Corrupt { .. } => ErrorCode::ConfigInvalid,
            PolicyError::Io { .. } => ErrorCode::Io,
        }
    }
}

/// The origins KeyBridge's policy file lists for `browser` (empty when there is none).
pub fn list(root: &Path, browser: Browser) -> Result<BTreeSet<String>, PolicyError> {
    let path = browser.policy_dir(root).join(FILE_NAME);
    let io = |source| PolicyError::Io { path: path.display().to_string(), source };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(io(e)),
    };
    let corrupt = |why: String| PolicyError::Corrupt { path: path.display().to_string(), why };
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let list = v.get(POLICY).and_then(|l| l.as_array()).ok_or_else(|| corrupt(format!("no {POLICY} list")))?;
    list.iter().map(|o| o.as_str().map(str::to_string).ok_or_else(|| corrupt("an entry is not a string".into()))).collect()
}

/// Add (`allow = true`) or remove `origin` in `browser`'s policy; returns the new list.
/// Removing the last origin removes the file.
pub fn update(root: &Path, browser: Browser, origin: &str, allow: bool) -> Result<BTreeSet<String>, PolicyError> {
    let o = normalize_origin(origin).map_err(|why| PolicyError::BadOrigin { origin: origin.to_string(), why })?;
    let mut origins = list(root, browser)?;
    let changed = if allow { origins.insert(o) } else { origins.remove(&o) };
    if !changed {
        return Ok(origins);
    }
    let dir = browser.policy_dir(root);
    let path = dir.join(FILE_NAME);
    let io = |p: &Path, source| PolicyError::Io { path: p.display().to_string(), source };
    if origins.is_empty() {
        std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
        return Ok(origins);
    }
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let body = serde_json::json!({ POLICY: origins });
    let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, format!("{:#}\n", body))?;
        // Browsers run as the user: the policy must be world-readable, writable by root only.
        #[cfg(unix)]
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(&path, e)
    })?;
    Ok(origins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_merged_normalised_and_removed_with_the_file() {
        let root = tempfile::tempdir().unwrap();
        let other = Browser::Chromium.policy_dir(root.path()).join("it-department.json");
        std::fs::create_dir_all(other.parent().unwrap()).unwrap();
        std::fs::write(&other, r#"{"HomepageLocation": "https://intranet"}"#).unwrap();
        update(root.path(), Browser::Chromium, "https://Bid.Example.cn", true).unwrap();
        let l = update(root.path(), Browser::Chromium, "https://ggzy.example.cn:8443", true).unwrap();
        assert_eq!(l.into_iter().collect::<Vec<_>>(), ["https://bid.example.cn", "https://ggzy.example.cn:8443"]);
        // What Chromium reads.
        let file = Browser::Chromium.policy_dir(root.path()).join(FILE_NAME);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(v[POLICY].as_array().unwrap().len(), 2);
        #[cfg(unix)]
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions()) & 0o777, 0o644);
        // Other browsers untouched.
        assert!(list(root.path(), Browser::Chrome).unwrap().is_empty());
        update(root.path(), Browser::Chromium, "https://bid.example.cn", false).unwrap();
        update(root.path(), Browser::Chromium, "https://ggzy.example.cn:8443", false).unwrap();
        assert!(!file.exists(), "the last origin removed takes the file with it");
        assert!(other.exists(), "another policy file in the directory is never touched");
    }

    #[test]
    fn bad_origins_and_foreign_files_are_refused() {
        let root = tempfile::tempdir().unwrap();
        for bad in ["null", "https://x.cn/path", "bid.example.cn"] {
            assert!(matches!(update(root.path(), Browser::Edge, bad, true), Err(PolicyError::BadOrigin { .. })), "{bad}");
        }
        let file = Browser::Edge.policy_dir(root.path()).join(FILE_NAME);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "{not json").unwrap();
        assert!(matches!(update(root.path(), Browser::Edge, "https://a.cn", true), Err(PolicyError::Corrupt { .. })));
        assert_eq!(std::fs::read(&file).unwrap(), b"{not json", "left as it was");
    }
}
