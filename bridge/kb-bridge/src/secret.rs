//! The per-user client secret that native tools (no `Origin`) present as
//! `Authorization: Bearer <64 hex digits>`.
//!
//! 32 random bytes, hex, in `<config dir>/bridge-secret`, created on first start with
//! mode 0600 (owner only): any program running as the user can read it — that is the
//! point, the user's own tools — but another local user, or a web page, cannot. Being on
//! localhost is not enough.

use std::fmt;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// File name in the config directory.
pub const FILE_NAME: &str = "bridge-secret";

/// Length of the secret in hex digits.
pub const HEX_LEN: usize = 64;

/// The secret. `Debug` never shows it.
#[derive(Clone)]
pub struct ClientSecret {
    hex: Zeroizing<String>,
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(REDACTED)")
    }
}

fn valid(s: &str) -> bool {
    s.len() == HEX_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl ClientSecret {
    /// A fresh random secret (not stored).
    pub fn generate() -> std::io::Result<Self> {
        let mut b = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut b[..]).map_err(|e| std::io::Error::other(format!("random: {e}")))?;
        Ok(ClientSecret { hex: Zeroizing::new(hex::encode(&b[..])) })
    }

    /// From its hex form (64 hex digits).
    pub fn from_hex(s: &str) -> Option<Self> {
        valid(s.trim()).then(|| ClientSecret { hex: Zeroizing::new(s.trim().to_ascii_lowercase()) })
    }

    /// Where the secret lives for a config directory.
    pub fn path_in(config_dir: &Path) -> PathBuf {
        config_dir.join(FILE_NAME)
    }

    /// Read the secret file, creating it (0600) when missing. A file that is not a valid
    /// secret is replaced by a new one (a secret is not data: nothing is lost, clients
    /// re-read it). A file readable by others is made owner-only again.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                restrict(path)?;
                if let Some(s) = Self::from_hex(&text) {
                    return Ok(s);
                }
                tracing::warn!(path = %path.display(), "bridge secret file is not 64 hex digits; writing a new one");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let s = Self::generate()?;
        s.store(path)?;
        Ok(s)
    }

    /// Write atomically; the file is owner-only (temp files are created 0600).
    fn store(&self, path: &Path) -> std::io::Result<()> {
        kb_service::settings::write_atomic(path, format!("{}\n", &*self.hex).as_bytes())?;
        restrict(path)
    }

    /// Whether a presented secret is this one (constant time).
    pub fn verify(&self, presented: &str) -> bool {
        let p = presented.trim().to_ascii_lowercase();
        p.len() == HEX_LEN && bool::from(p.as_bytes().ct_eq(self.hex.as_bytes()))
    }

    /// The value of the `Authorization` header a client sends.
    pub fn bearer(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("Bearer {}", &*self.hex))
    }
}

#[cfg(unix)]
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "bridge secret readable by others; making it owner-only");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_owner_only_and_stable() {
        let d = tempfile::tempdir().unwrap();
        let p = ClientSecret::path_in(d.path());
        let a = ClientSecret::load_or_create(&p).unwrap();
        let b = ClientSecret::load_or_create(&p).unwrap();
        assert!(a.verify(&b.hex), "the second start reads the same secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let _ = ClientSecret::load_or_create(&p).unwrap();
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(!format!("{a:?}").contains(&a.hex[..8]));
    }

    #[test]
    fn verify_rejects_anything_else() {
        let s = ClientSecret::generate().unwrap();
        let h = s.hex.clone();
        assert!(s.verify(&h));
        assert!(s.verify(&h.to_ascii_uppercase()));
        assert!(!s.verify(&h[..63]));
        assert!(!s.verify(""));
        let mut wrong = h.to_string();
        wrong.replace_range(0..1, if &h[0..1] == "0" { "1" } else { "0" });
        assert!(!s.verify(&wrong));
    }

    #[test]
    fn corrupt_file_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        let p = ClientSecret::path_in(d.path());
        std::fs::write(&p, "not a secret").unwrap();
        let s = ClientSecret::load_or_create(&p).unwrap();
        assert!(s.verify(std::fs::read_to_string(&p).unwrap().trim()));
    }
}
