//! Trust anchors for chain checks: `<config>/trust/` (PEM bundles or DER certificates,
//! `.pem .cer .crt .der`) — what `keybridge serve` and the desktop app trust.

use crate::settings::Paths;
use kb_pki::Certificate;
use kb_pki::chain::TrustStore;
use kb_types::{ErrorCode, HasErrorCode};
use std::path::{Path, PathBuf};

/// The trust anchors for what the user sees (the window, `keybridge certs`, the
/// bridge in the app): the demo CA's root — which the local dev CA issues from — when
/// there is one, and every certificate in `<config>/trust/`. A file that cannot be used
/// is logged and skipped: every certificate is still shown, with the chain status
/// saying what is not trusted.
pub fn user_store(paths: &Paths) -> TrustStore {
    let demo_root = crate::demo::demo_ca_dir(paths).join("root.pem");
    let mut files = anchor_files(&paths.config_dir);
    if demo_root.is_file() {
        files.insert(0, demo_root);
    }
    let mut anchors = Vec::new();
    for f in files {
        match certificates_in(&f) {
            Ok(c) => anchors.extend(c),
            Err(e) => tracing::warn!("trust anchor skipped: {e}"),
        }
    }
    TrustStore::from_certs(anchors)
}

/// The anchor directory under a config directory.
pub fn anchor_dir(config_dir: &Path) -> PathBuf {
    config_dir.join("trust")
}

/// The certificate files in `<config>/trust/`, sorted by name (none when it is missing).
pub fn anchor_files(config_dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(anchor_dir(config_dir)) else { return Vec::new() };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && p.extension().is_some_and(|x| ["pem", "cer", "crt", "der"].iter().any(|k| x.eq_ignore_ascii_case(k)))
        })
        .collect();
    files.sort();
    files
}

/// A certificate file that could not be used, naming the file.
#[derive(Debug)]
pub struct AnchorFileError {
    /// The file.
    pub path: PathBuf,
    code: ErrorCode,
    why: String,
}

impl std::fmt::Display for AnchorFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for AnchorFileError {}

impl HasErrorCode for AnchorFileError {
    fn code(&self) -> ErrorCode {
        self.code
    }
}

/// The certificates in a file: a PEM bundle or one DER certificate.
pub fn certificates_in(path: &Path) -> Result<Vec<Certificate>, AnchorFileError> {
    let fail = |code, why: String| AnchorFileError { path: path.to_path_buf(), code, why };
    let bytes = std::fs::read(path).map_err(|e| fail(ErrorCode::Io, e.to_string()))?;
    let parsed = match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN") => Certificate::load_pem_chain(text),
        _ => Certificate::from_der(&bytes).map(|c| vec![c]),
    };
    parsed.map_err(|e| fail(e.code(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_read_from_pem_and_der_files_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let trust = anchor_dir(dir.path());
        std::fs::create_dir_all(&trust).unwrap();
        let ca = kb_pki::issue::TestCa::new(kb_types::Algorithm::Sm2, "CN=Anchor").unwrap();
        std::fs::write(trust.join("b.pem"), ca.cert.to_pem()).unwrap();
        std::fs::write(trust.join("a.cer"), ca.cert.der()).unwrap();
        std::fs::write(trust.join("notes.txt"), "not a certificate").unwrap();
        std::fs::write(trust.join("c.crt"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        let files = anchor_files(dir.path());
        let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["a.cer", "b.pem", "c.crt"]);
        assert_eq!(certificates_in(&files[0]).unwrap()[0].der(), ca.cert.der());
        assert_eq!(certificates_in(&files[1]).unwrap()[0].der(), ca.cert.der());
        let e = certificates_in(&files[2]).unwrap_err();
        assert!(e.to_string().contains("c.crt"), "{e}");
        assert_eq!(certificates_in(&dir.path().join("missing.pem")).unwrap_err().code(), ErrorCode::Io);
        assert!(anchor_files(&dir.path().join("nowhere")).is_empty());
    }
}
