//! The certificates on present media, indexed by SHA-1 thumbprint — how bridge methods
//! select a certificate (and so a key pair).
//!
//! Reading every container of every medium for each request would put the device
//! actor on the hot path of every signature; the index caches each medium's entries
//! until the service reports a change on it (`CertificatesChanged`, `Removed`) — the
//! server feeds it those events.

use kb_bridge_protocol::{CertificateRef, CertificateSummary, Thumbprint};
use kb_pki::Certificate;
use kb_pki::time::UnixTime;
use kb_service::devices::DeviceManager;
use kb_types::{DeviceId, HashAlgorithm, KeyUsage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One certificate in a key slot.
#[derive(Clone, Debug)]
pub struct CertEntry {
    /// SHA-1 thumbprint.
    pub thumbprint: Thumbprint,
    /// The medium.
    pub device: DeviceId,
    /// The container.
    pub container: String,
    /// The key slot holding its key pair (sign or encrypt).
    pub slot: KeyUsage,
    /// The certificate.
    pub certificate: Certificate,
}

impl CertEntry {
    /// What `certificates.list` shows.
    pub fn summary(&self, now: UnixTime, warn_days: i64, revocation: kb_bridge_protocol::Revocation) -> CertificateSummary {
        let c = &self.certificate;
        CertificateSummary {
            thumbprint: self.thumbprint.clone(),
            device: self.device.clone(),
            container: self.container.clone(),
            usage: c.usage(),
            algorithm: c.public_key().map(|k| k.algorithm()).unwrap_or(kb_types::Algorithm::Sm2),
            subject: c.subject(),
            issuer: c.issuer(),
            serial: c.serial_hex(),
            not_before: c.not_before().0,
            not_after: c.not_after().0,
            status: c.validity_status(now, warn_days),
            revocation,
        }
    }

    /// `subject (thumbprint)`, for consent dialogs and logs.
    pub fn label(&self) -> String {
        format!("{} ({})", self.certificate.subject(), self.thumbprint)
    }
}

/// A certificate's SHA-1 thumbprint.
pub fn thumbprint_of(c: &Certificate) -> Thumbprint {
    let d = kb_crypto::digest(HashAlgorithm::Sha1, c.der());
    let mut a = [0u8; 20];
    a.copy_from_slice(&d[..20]);
    Thumbprint::from_sha1(&a)
}

/// The index.
#[derive(Debug)]
pub struct CertIndex {
    manager: DeviceManager,
    cache: Mutex<HashMap<DeviceId, Arc<Vec<CertEntry>>>>,
}

/// The client name used for the index's own reads (public data, not audited as key use).
const INDEX_CLIENT: &str = "bridge";

impl CertIndex {
    /// An empty index over a device manager.
    pub fn new(manager: DeviceManager) -> Self {
        CertIndex { manager, cache: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<DeviceId, Arc<Vec<CertEntry>>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget a medium's entries (its certificates changed, or it went away).
    pub fn invalidate(&self, device: &DeviceId) {
        self.lock().remove(device);
    }

    fn load(&self, device: &DeviceId) -> kb_service::Result<Arc<Vec<CertEntry>>> {
        if let Some(e) = self.lock().get(device) {
            return Ok(Arc::clone(e));
        }
        let mut out = Vec::new();
        for c in self.manager.containers(device, INDEX_CLIENT)? {
            for (slot, ks) in [(KeyUsage::Sign, &c.sign), (KeyUsage::Encrypt, &c.encrypt)] {
                let Some(der) = ks.as_ref().and_then(|k| k.certificate.as_ref()) else { continue };
                let Ok(certificate) = Certificate::from_der(der) else {
                    tracing::warn!(%device, container = %c.name, "unparseable certificate on the medium; not listed");
                    continue;
                };
                let thumbprint = thumbprint_of(&certificate);
                out.push(CertEntry { thumbprint, device: device.clone(), container: c.name.clone(), slot, certificate });
            }
        }
        let out = Arc::new(out);
        self.lock().insert(device.clone(), Arc::clone(&out));
        Ok(out)
    }

    /// Every certificate on every present medium (a medium that fails to answer is
    /// skipped and logged: one bad key must not hide the others).
    pub fn all(&self) -> Vec<CertEntry> {
        let mut out = Vec::new();
        for d in self.manager.devices() {
            match self.load(&d.id) {
                Ok(v) => out.extend(v.iter().cloned()),
                Err(e) => tracing::warn!(device = %d.id, error = %e, "could not list certificates"),
            }
        }
        out
    }

    /// The certificates of one medium.
    pub fn on(&self, device: &DeviceId) -> kb_service::Result<Vec<CertEntry>> {
        self.manager.device(device)?;
        Ok(self.load(device)?.to_vec())
    }

    /// Find a certificate by reference (4004 unknown_device / 4005 not_found). Only the
    /// match is cloned: this is on the path of every signature.
    pub fn find(&self, r: &CertificateRef) -> kb_service::Result<CertEntry> {
        let devices = match &r.device {
            Some(d) => vec![self.manager.device(d)?.id],
            None => self.manager.devices().into_iter().map(|d| d.id).collect(),
        };
        let mut found = None;
        for d in &devices {
            let entries = match self.load(d) {
                Ok(v) => v,
                Err(e) if r.device.is_some() => return Err(e),
                Err(_) => continue,
            };
            if let Some(e) = entries.iter().find(|e| e.thumbprint == r.thumbprint) {
                found = Some(e.clone());
                break;
            }
        }
        found.ok_or_else(|| {
            kb_service::ServiceError::Token(kb_token::TokenError::NotFound(format!(
                "no certificate {} on {}",
                r.thumbprint,
                r.device.as_ref().map_or("any present medium".to_string(), |d| d.to_string())
            )))
        })
    }
}
