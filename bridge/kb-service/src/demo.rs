//! The built-in demo key: a clearly labelled file-type key holding an SM2 dual-certificate
//! pair (keys generated on the key, certificates issued by a local demo CA), created once
//! when no real medium is configured. The CLI's `keybridge demo` and the desktop app's
//! first start both call [`ensure_demo_key`].

use crate::audit::AuditLog;
use crate::devices::DeviceManager;
use crate::pin_cache::PinCachePolicy;
use crate::prompter::{ConfirmRequest, ConsentAnswer, ConsentRequest, PinRequest, Prompter, QrRequest};
use crate::settings::{Paths, write_atomic};
use crate::{Result, ServiceError};
use kb_crypto::PrivateKey;
use kb_filekey::{CreateOptions, FileToken, FileTransport, KdfParams};
use kb_pki::csr::CertificationRequest;
use kb_pki::issue::{CertKind, CertificateParams, issue, self_signed};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner};
use kb_token::{OpContext, Transport};
use kb_types::{Algorithm, DeviceId, KeyUsage, Pin, PinKind, TransportKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The demo key's file name (device id `file:demo`).
pub const DEMO_NAME: &str = "demo";
/// Its label.
pub const DEMO_LABEL: &str = "KeyBridge 演示介质 (DEMO)";
/// Demo user PIN: printed for everyone; never use the demo key for real work.
pub const DEMO_USER_PIN: &str = "12345678";
/// Demo SO PIN.
pub const DEMO_SO_PIN: &str = "87654321";
/// The demo key's one container.
pub const DEMO_CONTAINER: &str = "demo";
const DEMO_SUBJECT: &str = "C=CN,O=KeyBridge 演示单位 (DEMO),CN=演示用户 (DEMO)";
const DEMO_CA_SUBJECT: &str = "C=CN,O=KeyBridge 演示 CA (DEMO),CN=KeyBridge Demo Root CA (DEMO - not for real use)";
/// The client name the audit log records for provisioning.
const CLIENT: &str = "demo";

/// The demo key's device id.
pub fn demo_device_id() -> DeviceId {
    DeviceId::new(TransportKind::File, DEMO_NAME)
}

/// The demo CA's directory under a KeyBridge home.
pub fn demo_ca_dir(paths: &Paths) -> PathBuf {
    paths.data_dir.join("demo-ca")
}

/// What [`ensure_demo_key`] found and did.
#[derive(Clone, Debug)]
pub struct DemoKey {
    /// `file:demo`.
    pub id: DeviceId,
    /// The key file.
    pub path: PathBuf,
    /// The key file was created now.
    pub created: bool,
    /// The demo CA was created now.
    pub ca_created: bool,
    /// The demo CA's root certificate (PEM), to trust in verifications.
    pub root_pem: PathBuf,
    /// What was missing and is there now (`sign key pair`, `encrypt certificate`, …).
    pub completed: Vec<String>,
}

/// Answers the demo key's known user PIN; if it was changed (or for anything else),
/// asks `fallback`.
struct DemoPrompter {
    device: DeviceId,
    fallback: Arc<dyn Prompter>,
}

impl Prompter for DemoPrompter {
    fn ask_pin(&self, req: &PinRequest, ctx: &OpContext) -> Result<Pin> {
        if req.device_id == self.device && req.kind == PinKind::User && !req.previous_wrong && !req.cached_pin_rejected {
            return Ok(Pin::new(DEMO_USER_PIN));
        }
        self.fallback.ask_pin(req, ctx)
    }
    fn confirm(&self, req: &ConfirmRequest) -> Result<bool> {
        self.fallback.confirm(req)
    }
    fn show_qr(&self, req: &QrRequest) -> Result<()> {
        self.fallback.show_qr(req)
    }
    fn consent(&self, req: &ConsentRequest) -> Result<ConsentAnswer> {
        self.fallback.consent(req)
    }
    fn notify(&self, message: &str) {
        self.fallback.notify(message)
    }
}

fn io(path: &Path, e: std::io::Error) -> ServiceError {
    ServiceError::Io(format!("{}: {e}", path.display()))
}

fn private_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|e| io(dir, e))
}

/// The demo CA: created once in `dir` (root.pem, root.key); later calls load it.
pub fn demo_ca(dir: &Path) -> Result<(Certificate, LocalSigner, bool)> {
    let (cert_path, key_path) = (dir.join("root.pem"), dir.join("root.key"));
    if cert_path.is_file() && key_path.is_file() {
        let text = |p: &Path| {
            let bytes = std::fs::read(p).map_err(|e| io(p, e))?;
            String::from_utf8(bytes).map_err(|_| ServiceError::Io(format!("{} is not text", p.display())))
        };
        let cert = Certificate::from_pem(&text(&cert_path)?)?;
        let key = PrivateKey::from_pkcs8_pem(&text(&key_path)?)?;
        if key.public_key() != cert.public_key()? {
            return Err(kb_pki::PkiError::CertificateMalformed(format!(
                "{} does not belong to {}",
                key_path.display(),
                cert_path.display()
            ))
            .into());
        }
        return Ok((cert, LocalSigner::new(key), false));
    }
    private_dir(dir)?;
    let signer = LocalSigner::new(PrivateKey::generate(Algorithm::Sm2)?);
    let params =
        CertificateParams::new(DEMO_CA_SUBJECT, CertKind::Root { path_len: Some(0) }, UnixTime::now().plus_days(-1), 3650);
    let cert = self_signed(&params, &signer)?;
    // The key first: a root certificate is only used once its key is there.
    write_atomic(&key_path, signer.private_key().to_pkcs8_pem()?.as_bytes()).map_err(|e| io(&key_path, e))?;
    write_atomic(&cert_path, cert.to_pem().as_bytes()).map_err(|e| io(&cert_path, e))?;
    Ok((cert, signer, true))
}

/// The demo support certificate: an SM2 encryption certificate from the demo CA, with
/// its private key beside it (`<demo-ca>/support.pem`, `support.key`), created once. Log
/// exports are encrypted to it when no real support certificate is configured, so a demo
/// user can open their own export (`keybridge decrypt` with the key); a deployment puts
/// its support team's certificate at `<config>/support.pem` instead.
pub fn demo_support_certificate(paths: &Paths) -> Result<(Certificate, PathBuf)> {
    let dir = demo_ca_dir(paths);
    let (cert_path, key_path) = (dir.join("support.pem"), dir.join("support.key"));
    if cert_path.is_file() && key_path.is_file() {
        let pem = std::fs::read_to_string(&cert_path).map_err(|e| io(&cert_path, e))?;
        return Ok((Certificate::from_pem(&pem)?, key_path));
    }
    let (root, ca_signer, _) = demo_ca(&dir)?;
    let key = PrivateKey::generate(Algorithm::Sm2)?;
    let params = CertificateParams::leaf(
        "C=CN,O=KeyBridge 演示 CA (DEMO),CN=KeyBridge 技术支持 (DEMO)",
        KeyUsage::Encrypt,
        UnixTime::now().plus_days(-1),
        3650,
    );
    let cert = issue(&params, &key.public_key(), Some(&root), &ca_signer)?;
    write_atomic(&key_path, key.to_pkcs8_pem()?.as_bytes()).map_err(|e| io(&key_path, e))?;
    write_atomic(&cert_path, cert.to_pem().as_bytes()).map_err(|e| io(&cert_path, e))?;
    Ok((cert, key_path))
}

/// Make sure `<key_dir>/demo.kbkey` exists and holds a container `demo` with an SM2
/// signing and an encryption key pair, each with a certificate from the demo CA. Never
/// overwrites: a damaged demo key is reported, not replaced; a demo key whose PIN was
/// changed asks `fallback` for it. `kdf` is [`KdfParams::DEFAULT`] except in tests.
pub fn ensure_demo_key(paths: &Paths, key_dir: &Path, kdf: KdfParams, fallback: Arc<dyn Prompter>) -> Result<DemoKey> {
    private_dir(key_dir)?;
    let id = demo_device_id();
    let transport = Arc::new(FileTransport::new(key_dir));
    let path = transport.path_of(&id).ok_or_else(|| ServiceError::Internal("demo key name rejected".into()))?;
    let ca_dir = demo_ca_dir(paths);
    let (root, ca_signer, ca_created) = demo_ca(&ca_dir)?;
    let created = if path.exists() {
        FileToken::open(&path)?;
        false
    } else {
        let opts = CreateOptions { kdf, pins_are_default: true, ..CreateOptions::default() };
        FileToken::create(&path, DEMO_LABEL, &Pin::new(DEMO_USER_PIN), &Pin::new(DEMO_SO_PIN), opts)?;
        true
    };
    let audit = Arc::new(AuditLog::open(paths.audit_db())?);
    let prompter = Arc::new(DemoPrompter { device: id.clone(), fallback });
    let manager = DeviceManager::new(prompter, audit, PinCachePolicy::default());
    manager.add_transport(transport as Arc<dyn Transport>)?;
    manager.wait_enumerated(Duration::from_secs(10));
    manager.device(&id)?;
    // Complete whatever is missing (all of it for a new key; nothing on later runs).
    let mut completed = Vec::new();
    if !manager.containers(&id, CLIENT)?.iter().any(|c| c.name == DEMO_CONTAINER) {
        manager.create_container(&id, DEMO_CONTAINER, CLIENT)?;
    }
    for usage in [KeyUsage::Sign, KeyUsage::Encrypt] {
        let containers = manager.containers(&id, CLIENT)?;
        let slot = containers.iter().find(|c| c.name == DEMO_CONTAINER).and_then(|c| c.slot(usage).cloned());
        if slot.is_none() {
            manager.generate_key_pair(&id, DEMO_CONTAINER, usage, Algorithm::Sm2, CLIENT)?;
            completed.push(format!("{usage} key pair"));
        }
        if slot.and_then(|s| s.certificate).is_none() {
            // The request is signed on the key; the demo CA checks it and issues.
            let signer = manager.signer(&id, DEMO_CONTAINER, usage, CLIENT)?;
            let der = kb_pki::csr::build(DEMO_SUBJECT, &signer, Vec::new()).map_err(|e| signer.service_error(e))?;
            let req = CertificationRequest::from_der(&der)?;
            req.verify()?;
            let params = CertificateParams::leaf(&req.subject_dn(), usage, UnixTime(UnixTime::now().0 - 3600), 365);
            let cert = issue(&params, &req.public_key()?, Some(&root), &ca_signer)?;
            manager.import_certificate(&id, DEMO_CONTAINER, usage, cert.der(), CLIENT)?;
            completed.push(format!("{usage} certificate"));
        }
    }
    tracing::info!(device = %id, created, "demo key ready");
    Ok(DemoKey { id, path, created, ca_created, root_pem: ca_dir.join("root.pem"), completed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompter::ScriptedPrompter;

    #[test]
    fn the_demo_key_is_created_once_and_completed_never_replaced() {
        let home = tempfile::tempdir().unwrap();
        let paths = Paths::under(home.path());
        paths.create_all().unwrap();
        let keys = home.path().join("keys");
        let scripted = Arc::new(ScriptedPrompter::new());
        let first = ensure_demo_key(&paths, &keys, KdfParams::weak_for_tests(), scripted.clone()).unwrap();
        assert!(first.created && first.ca_created);
        assert_eq!(first.completed.len(), 4, "{:?}", first.completed);
        let before = std::fs::read(&first.path).unwrap();
        let again = ensure_demo_key(&paths, &keys, KdfParams::weak_for_tests(), scripted.clone()).unwrap();
        assert!(!again.created && !again.ca_created && again.completed.is_empty());
        assert_eq!(std::fs::read(&first.path).unwrap(), before, "a complete demo key is left alone");
        // The fallback prompter was never needed: the demo PIN answered everything.
        assert!(scripted.seen().is_empty());
        // Both certificates chain to the demo root.
        let root = Certificate::from_pem(&std::fs::read_to_string(&first.root_pem).unwrap()).unwrap();
        let mut token = FileToken::open(&first.path).unwrap();
        let containers = kb_token::Token::containers(&mut token).unwrap();
        for usage in [KeyUsage::Sign, KeyUsage::Encrypt] {
            let der = containers[0].slot(usage).unwrap().certificate.clone().unwrap();
            let cert = Certificate::from_der(&der).unwrap();
            assert_eq!(cert.issuer(), root.subject());
        }
        // A damaged demo key is reported, never replaced.
        std::fs::write(&first.path, b"garbage").unwrap();
        assert!(ensure_demo_key(&paths, &keys, KdfParams::weak_for_tests(), scripted).is_err());
        assert_eq!(std::fs::read(&first.path).unwrap(), b"garbage");
    }
}
