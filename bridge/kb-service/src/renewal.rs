//! Renewing certificates with a CA (docs/ca-api.md): what each certificate's renewal
//! stands at, the binding QR code, and 安装证书 — which never leaves a key without a
//! working certificate.
//!
//! - [`Renewal::status`]: each certificate on the medium with 临期/过期 and the CA's
//!   renewal state.
//! - [`Renewal::bind`]: a binding for the medium's signing certificates, proven by a
//!   signature with each certificate's key over the CA's challenge (one PIN).
//! - [`Renewal::install`]: once the CA approved —
//!   - 续期 (`renew`): a PKCS#10 made on the medium with the **same** key, EST
//!     `simplereenroll`, checks, then the new certificate written over the old one;
//!   - 变更/补发 (`rekey`): a new key pair generated on the medium in a new container, a
//!     PKCS#10 made there, EST `simpleenroll` (authorised by the old key), checks, the
//!     certificate written, and only then the old pair removed.
//!
//! Before anything is written the new certificate must hold the key it is for, chain to
//! a trusted root, be valid now and not end before the old one, and (for 续期) name the
//! same subject. The old certificate is kept in a journal file on disk until the new one
//! has been read back from the medium; any failure writes the old one back
//! (`install_rolled_back`); a failure that cannot be undone at once (the key pulled out,
//! KeyBridge killed) leaves the journal, and the next [`Renewal::install`] or
//! [`Renewal::recover`] for that medium finishes it (`install_incomplete` until then).

use crate::devices::{Caller, DeviceManager};
use crate::{Result, ServiceError};
use kb_ca::api::{
    self, Binding, BindingRequest, BindingState, BindingStatus, ProvenCertificate, RenewalKind, RenewalState, RenewalStatus,
};
use kb_ca::{CaClient, proof};
use kb_pki::chain::{TrustStore, verify_chain};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, Signer};
use kb_types::{DeviceId, DeviceInfo, ErrorCode, HasErrorCode, KeyUsage, ValidityStatus};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Days before expiry a certificate counts as 临期 (BJCA opens renewal 90 days before).
pub const NEAR_EXPIRY_DAYS: i64 = 90;
/// How far in the future a new certificate's notBefore may be (clock skew).
const CLOCK_SKEW_SECS: i64 = 10 * 60;

fn renewal_error(code: ErrorCode, message: impl Into<String>) -> ServiceError {
    ServiceError::Renewal { code, message: message.into() }
}

/// One certificate on the medium and where its renewal stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificateRenewal {
    /// The medium.
    pub device: DeviceId,
    /// 介质编号.
    pub medium_serial: String,
    /// The container.
    pub container: String,
    /// The slot.
    pub usage: KeyUsage,
    /// Serial (lowercase hex, as the CA API writes it).
    pub serial: String,
    /// Subject, most specific first.
    pub subject: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// Days left (negative once expired).
    pub days_left: i64,
    /// Valid, 临期 (`expiring_soon`), 过期 (`expired`).
    pub validity: ValidityStatus,
    /// What the CA says, or `None` when it could not be asked (see `ca_error`).
    pub renewal: Option<RenewalStatus>,
    /// Why the CA could not be asked: code name and message.
    pub ca_error: Option<(String, String)>,
}

/// What an install did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstallReport {
    /// 续期 or 变更/补发.
    pub kind: RenewalKind,
    /// The certificate replaced (serial).
    pub old_serial: String,
    /// The new certificate (serial).
    pub new_serial: String,
    /// Its notAfter, RFC 3339.
    pub new_not_after: String,
    /// The container that holds it now (a new container for 变更/补发).
    pub container: String,
    /// The new certificate, DER.
    #[serde(skip)]
    pub certificate: Vec<u8>,
}

/// What [`Renewal::recover`] found for a journaled install.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    /// No unfinished install.
    Nothing,
    /// The new certificate was in place; the install is finished now.
    Completed,
    /// The old certificate is in place (written back if needed).
    RolledBack,
}

/// The journal of an install in progress: enough to finish it or undo it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Journal {
    version: u32,
    device: String,
    kind: RenewalKind,
    container: String,
    usage: KeyUsage,
    old_certificate: String,
    /// `None` while a 变更/补发's new pair is being made and enrolled (nothing written yet).
    new_certificate: Option<String>,
    /// 变更/补发: where the new pair is.
    new_container: Option<String>,
}

/// Renewal over a device manager and a CA.
#[derive(Clone)]
pub struct Renewal {
    manager: DeviceManager,
    ca: Arc<dyn CaClient>,
    trust: TrustStore,
    journal_dir: PathBuf,
}

impl std::fmt::Debug for Renewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewal").field("journal_dir", &self.journal_dir).finish_non_exhaustive()
    }
}

/// The slot an install renews, with its certificate and who asks.
struct Target<'a> {
    device: &'a DeviceId,
    container: &'a str,
    usage: KeyUsage,
    old: &'a Certificate,
    caller: &'a Caller,
    /// The approved application.
    application: &'a api::Application,
}

impl Target<'_> {
    fn client(&self) -> &str {
        self.caller.client()
    }

    fn report(&self, kind: RenewalKind, new: &Certificate, container: &str) -> InstallReport {
        InstallReport {
            kind,
            old_serial: api::serial_of(self.old),
            new_serial: api::serial_of(new),
            new_not_after: new.not_after().to_rfc3339(),
            container: container.to_string(),
            certificate: new.der().to_vec(),
        }
    }

    fn journal(&self, kind: RenewalKind, new: Option<&Certificate>, new_container: Option<&str>) -> Journal {
        Journal {
            version: 1,
            device: self.device.to_string(),
            kind,
            container: self.container.into(),
            usage: self.usage,
            old_certificate: api::b64(self.old.der()),
            new_certificate: new.map(|c| api::b64(c.der())),
            new_container: new_container.map(String::from),
        }
    }
}

/// A subject as a DN string in encoding order (what `kb_pki::csr::build` takes).
fn subject_dn(cert: &Certificate) -> String {
    kb_pki::name::attributes(cert.x509().tbs_certificate().subject())
        .into_iter()
        .map(|a| format!("{}={}", a.key, a.value.replace(',', "\\,")))
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_cert(b64: &str) -> Result<Certificate> {
    let der = api::unb64(b64).ok_or_else(|| ServiceError::Internal("journal: certificate is not base64".into()))?;
    Ok(Certificate::from_der(&der)?)
}

impl Renewal {
    /// Renew with `ca`; new certificates must chain to a root in `trust`; unfinished
    /// installs are journaled in `journal_dir` (created when needed).
    pub fn new(manager: DeviceManager, ca: Arc<dyn CaClient>, trust: TrustStore, journal_dir: impl Into<PathBuf>) -> Self {
        Renewal { manager, ca, trust, journal_dir: journal_dir.into() }
    }

    /// The CA client.
    pub fn ca(&self) -> &Arc<dyn CaClient> {
        &self.ca
    }

    /// The one medium plugged in: renewal works on one key at a time, so none or several
    /// is an error (`unknown_device` / `multiple_media_present`).
    pub fn single_medium(&self) -> Result<DeviceInfo> {
        let mut media = self.manager.devices();
        match media.len() {
            1 => Ok(media.remove(0)),
            0 => Err(ServiceError::UnknownDevice("no key is plugged in".into())),
            n => Err(renewal_error(
                ErrorCode::MultipleMediaPresent,
                format!("{n} keys are plugged in; renewal works on one key at a time — unplug the others"),
            )),
        }
    }

    /// Every certificate on `device` with its validity and the CA's renewal state.
    pub fn status(&self, device: &DeviceId, client: &str) -> Result<Vec<CertificateRenewal>> {
        let info = self.manager.device(device)?;
        let now = UnixTime::now();
        let mut out = Vec::new();
        for c in self.manager.containers(device, client)? {
            for slot in [c.sign.as_ref(), c.encrypt.as_ref()].into_iter().flatten() {
                let Some(der) = &slot.certificate else { continue };
                let Ok(cert) = Certificate::from_der(der) else { continue };
                let serial = api::serial_of(&cert);
                let (renewal, ca_error) = match self.ca.renewal_status(&serial) {
                    Ok(s) => (Some(s), None),
                    Err(e) => (None, Some((e.code().name().to_string(), e.to_string()))),
                };
                out.push(CertificateRenewal {
                    device: device.clone(),
                    medium_serial: info.serial.clone(),
                    container: c.name.clone(),
                    usage: slot.usage,
                    serial,
                    subject: cert.subject(),
                    not_after: cert.not_after().to_rfc3339(),
                    days_left: cert.days_left(now),
                    validity: cert.validity_status(now, NEAR_EXPIRY_DAYS),
                    renewal,
                    ca_error,
                });
            }
        }
        Ok(out)
    }

    /// Ask the CA for a binding of `device`'s signing certificates, each proven by a
    /// signature with its key over the CA's challenge (the PIN is asked once, then cached
    /// as the settings say). Returns the QR URL and its expiry.
    pub fn bind(&self, device: &DeviceId, caller: impl Into<Caller>) -> Result<Binding> {
        let caller = caller.into();
        let info = self.manager.device(device)?;
        let challenge = self.ca.challenge()?.challenge;
        let mut certificates = Vec::new();
        for c in self.manager.containers(device, caller.client())? {
            let Some(slot) = c.sign.as_ref() else { continue };
            let Some(der) = &slot.certificate else { continue };
            let signer = self.manager.signer(device, &c.name, KeyUsage::Sign, caller.clone())?;
            let sig = proof::sign(&signer, &proof::binding_message(&challenge, &info.serial, der))
                .map_err(|e| signer.service_error(e))?;
            certificates.push(ProvenCertificate { certificate: api::b64(der), signature: api::b64(&sig) });
        }
        if certificates.is_empty() {
            return Err(kb_token::TokenError::NotFound("a signing certificate on this key".into()).into());
        }
        Ok(self.ca.request_binding(&BindingRequest { challenge, medium_serial: info.serial, certificates })?)
    }

    /// The binding's state; with `wait`, a long-poll until it is no longer `known`.
    pub fn binding_status(&self, binding_id: &str, wait: Option<(BindingState, Duration)>) -> Result<BindingStatus> {
        Ok(self.ca.binding_status(binding_id, wait)?)
    }

    fn journal_path(&self, device: &DeviceId) -> PathBuf {
        let name: String =
            device.to_string().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        self.journal_dir.join(format!("install-{name}.json"))
    }

    fn read_journal(&self, device: &DeviceId) -> Result<Option<Journal>> {
        let p = self.journal_path(device);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b)
                    .map_err(|e| ServiceError::Io(format!("{}: not an install journal: {e}", p.display())))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ServiceError::Io(format!("{}: {e}", p.display()))),
        }
    }

    fn write_journal(&self, device: &DeviceId, j: &Journal) -> Result<()> {
        let p = self.journal_path(device);
        let bytes = serde_json::to_vec_pretty(j).map_err(|e| ServiceError::Internal(e.to_string()))?;
        crate::settings::write_atomic(&p, &bytes).map_err(|e| ServiceError::Io(format!("{}: {e}", p.display())))
    }

    fn remove_journal(&self, device: &DeviceId) -> Result<()> {
        self.remove_stale_journal_temps(device);
        let p = self.journal_path(device);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ServiceError::Io(format!("{}: {e}", p.display()))),
        }
    }

    /// Temp files of journal writes a killed run left behind (`write_atomic`'s).
    fn remove_stale_journal_temps(&self, device: &DeviceId) {
        let p = self.journal_path(device);
        let stale = format!(".{}.", p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        if let Ok(entries) = std::fs::read_dir(&self.journal_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&stale) && name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// The certificate in a slot, read fresh from the medium.
    fn read_back(&self, device: &DeviceId, container: &str, usage: KeyUsage, client: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .manager
            .containers(device, client)?
            .into_iter()
            .find(|c| c.name == container)
            .and_then(|c| c.slot(usage).and_then(|s| s.certificate.clone())))
    }

    /// Finish or undo an install a previous run left unfinished on `device`.
    pub fn recover(&self, device: &DeviceId, caller: impl Into<Caller>) -> Result<Recovery> {
        let caller = caller.into();
        let Some(j) = self.read_journal(device)? else {
            // A run killed while writing its first journal leaves only the temp file.
            self.remove_stale_journal_temps(device);
            return Ok(Recovery::Nothing);
        };
        let old = decode_cert(&j.old_certificate)?;
        let Some(new) = j.new_certificate.as_deref().map(decode_cert).transpose()? else {
            // Interrupted while the new pair was made or enrolled: nothing was written
            // over the old certificate.
            self.drop_unissued_pair(device, &j, &old, &caller)?;
            self.remove_journal(device)?;
            return Ok(Recovery::RolledBack);
        };
        let client = caller.client().to_string();
        let outcome = match j.kind {
            RenewalKind::Renew => {
                let now = self.read_back(device, &j.container, j.usage, &client)?;
                if now.as_deref() == Some(new.der()) {
                    Recovery::Completed
                } else {
                    if now.as_deref() != Some(old.der()) {
                        self.manager.import_certificate(device, &j.container, j.usage, old.der(), caller.clone())?;
                        if self.read_back(device, &j.container, j.usage, &client)?.as_deref() != Some(old.der()) {
                            return Err(renewal_error(ErrorCode::InstallIncomplete, "the old certificate did not read back"));
                        }
                    }
                    Recovery::RolledBack
                }
            }
            RenewalKind::Rekey => {
                let nc = j.new_container.clone().unwrap_or_default();
                let containers = self.manager.containers(device, &client)?;
                let has = |name: &str| containers.iter().find(|c| c.name == name);
                let new_in = has(&nc).and_then(|c| c.slot(j.usage)).and_then(|s| s.certificate.as_deref()) == Some(new.der());
                if new_in {
                    self.finish_rekey(device, &j, &caller)?;
                    Recovery::Completed
                } else {
                    // The old pair was never touched. The new pair stays: the CA issued
                    // its certificate, and the next install fetches it again (delivery)
                    // and puts it there.
                    Recovery::RolledBack
                }
            }
        };
        self.remove_journal(device)?;
        Ok(outcome)
    }

    /// A 变更/补发 interrupted before its certificate was written: the new pair goes,
    /// unless the CA has issued for it (the next install fetches the certificate and puts
    /// it there).
    fn drop_unissued_pair(&self, device: &DeviceId, j: &Journal, old: &Certificate, caller: &Caller) -> Result<()> {
        let Some(nc) = j.new_container.as_deref() else { return Ok(()) };
        if self.ca.renewal_status(&api::serial_of(old))?.state == RenewalState::Issued {
            return Ok(());
        }
        let present = self.manager.containers(device, caller.client())?.into_iter().find(|c| c.name == nc);
        if present.is_some_and(|c| c.slot(j.usage).is_none_or(|s| s.certificate.is_none())) {
            self.manager.delete_container(device, nc, caller.clone())?;
        }
        Ok(())
    }

    /// 安装证书: enrol and install the renewed certificate of `container`'s `usage`
    /// slot on `device`, as the CA approved it (续期 or 变更/补发).
    pub fn install(
        &self,
        device: &DeviceId,
        container: &str,
        usage: KeyUsage,
        caller: impl Into<Caller>,
    ) -> Result<InstallReport> {
        let caller = caller.into();
        let client = caller.client().to_string();
        if self.recover(device, caller.clone())? != Recovery::Nothing {
            tracing::info!(device = %device, "finished an install an earlier run left unfinished");
        }
        let old = self
            .manager
            .certificate(device, container, usage, &client)?
            .ok_or_else(|| kb_token::TokenError::NotFound(format!("a certificate in container {container}")))?;
        let status = self.ca.renewal_status(&api::serial_of(&old))?;
        let app = match (status.state, status.application.clone()) {
            (RenewalState::Approved | RenewalState::Issued, Some(app)) => app,
            (state, _) => {
                let why = match state {
                    RenewalState::Applied => "it is waiting for the CA's approval".to_string(),
                    RenewalState::Rejected => format!("the CA rejected it: {}", status.reason.unwrap_or_default()),
                    _ => "no renewal was applied for".to_string(),
                };
                return Err(renewal_error(
                    ErrorCode::RenewalNotApproved,
                    format!("certificate {} cannot be installed yet: {why}", api::serial_of(&old)),
                ));
            }
        };
        let t = Target { device, container, usage, old: &old, caller: &caller, application: &app };
        match app.kind {
            RenewalKind::Renew => self.install_renewal(&t),
            RenewalKind::Rekey if status.state == RenewalState::Issued => self.resume_rekey(&t, &app.id),
            RenewalKind::Rekey => self.install_rekey(&t, &app.id),
        }
    }

    /// Checks before anything is written.
    fn check_new(&self, new: &Certificate, old: &Certificate, key: &kb_crypto::PublicKey) -> Result<()> {
        let invalid = |why: String| renewal_error(ErrorCode::NewCertificateInvalid, why);
        if &new.public_key()? != key {
            return Err(invalid("the new certificate is not for the key pair on the medium".into()));
        }
        let now = UnixTime::now();
        verify_chain(new, &[], &self.trust, now)
            .map_err(|e| invalid(format!("the new certificate does not chain to a trusted root: {e}")))?;
        if new.not_before().0 > now.0 + CLOCK_SKEW_SECS {
            return Err(invalid(format!("the new certificate is not valid before {}", new.not_before().to_rfc3339())));
        }
        if new.not_after() <= old.not_after() {
            return Err(invalid(format!(
                "the new certificate ends {} — not after the old one ({})",
                new.not_after().to_rfc3339(),
                old.not_after().to_rfc3339()
            )));
        }
        if new.subject_der() != old.subject_der() {
            return Err(invalid(format!("the new certificate names '{}', not '{}'", new.subject(), old.subject())));
        }
        if new.usage() != old.usage() {
            return Err(invalid("the new certificate's key usage differs from the old one's".into()));
        }
        Ok(())
    }

    /// Journal the install, write `new` into `into`, read it back; on any failure put
    /// the old state back (or leave the journal for the next run).
    fn write_and_read_back(&self, t: &Target<'_>, journal: &Journal, new: &Certificate, into: &str) -> Result<()> {
        self.write_journal(t.device, journal)?;
        let written = self
            .manager
            .import_certificate(t.device, into, t.usage, new.der(), t.caller.clone())
            .and_then(|()| self.read_back(t.device, into, t.usage, t.client()));
        match written {
            Ok(Some(der)) if der == new.der() => Ok(()),
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => "the certificate read back is not the one written".into(),
                };
                Err(self.undo(t.device, t.caller, &why))
            }
        }
    }

    fn first_issued(issued: Vec<Certificate>) -> Result<Certificate> {
        issued.into_iter().next().ok_or_else(|| renewal_error(ErrorCode::CaResponseInvalid, "EST answered no certificate"))
    }

    fn install_renewal(&self, t: &Target<'_>) -> Result<InstallReport> {
        let signer = self.manager.signer(t.device, t.container, t.usage, t.caller.clone())?;
        let csr = kb_pki::csr::build(&subject_dn(t.old), &signer, vec![]).map_err(|e| signer.service_error(e))?;
        let new = Self::first_issued(self.ca.est_simplereenroll(&csr)?)?;
        self.check_new(&new, t.old, signer.public_key())?;
        self.put_encryption_pair(t, t.container, &new)?;
        self.write_and_read_back(t, &t.journal(RenewalKind::Renew, Some(&new), None), &new, t.container)?;
        self.remove_journal(t.device)?;
        Ok(t.report(RenewalKind::Renew, &new, t.container))
    }

    /// After a failed write: put the old state back now if the medium lets us; else keep
    /// the journal for the next run.
    fn undo(&self, device: &DeviceId, caller: &Caller, why: &str) -> ServiceError {
        match self.recover(device, caller.clone()) {
            Ok(Recovery::Completed) => {
                // The write had gone through after all; nothing lost.
                renewal_error(
                    ErrorCode::InstallRolledBack,
                    format!("install reported {why}, but the new certificate is in place"),
                )
            }
            Ok(_) => renewal_error(
                ErrorCode::InstallRolledBack,
                format!("installing the new certificate failed ({why}); the key keeps its previous certificate"),
            ),
            Err(e) => renewal_error(
                ErrorCode::InstallIncomplete,
                format!(
                    "installing the new certificate failed ({why}) and could not be undone yet ({e}); plug the key in again and install again"
                ),
            ),
        }
    }

    fn install_rekey(&self, t: &Target<'_>, application_id: &str) -> Result<InstallReport> {
        let (device, caller) = (t.device, t.caller);
        let existing: Vec<String> = self.manager.containers(device, t.client())?.into_iter().map(|c| c.name).collect();
        let new_container = (1..100)
            .map(|i| format!("{}-{i}", t.container))
            .find(|n| !existing.contains(n))
            .ok_or_else(|| ServiceError::Internal("no free container name".into()))?;
        let algorithm = t.old.public_key()?.algorithm();
        // The journal names the new pair before it exists, so a run killed from here on
        // is cleaned up by `recover`.
        self.write_journal(device, &t.journal(RenewalKind::Rekey, None, Some(&new_container)))?;
        // Until the CA has issued for it, a failure drops the half-made new pair (the old
        // one was never touched).
        let drop_new = |e: ServiceError| -> ServiceError {
            match self.manager.delete_container(device, &new_container, caller.clone()) {
                Ok(()) => {
                    if self.remove_journal(device).is_err() {
                        tracing::warn!(device = %device, "could not remove the install journal");
                    }
                }
                Err(_) => {
                    tracing::warn!(device = %device, container = %new_container, "could not remove the unused new key pair")
                }
            }
            e
        };
        let key = self
            .manager
            .generate_key_pair_in_new_container(device, &new_container, t.usage, algorithm, caller.clone())
            .map_err(drop_new)?;
        let request = || -> Result<(Vec<u8>, Vec<u8>)> {
            let signer = self.manager.signer(device, &new_container, t.usage, caller.clone())?;
            let csr = kb_pki::csr::build(&subject_dn(t.old), &signer, vec![]).map_err(|e| signer.service_error(e))?;
            let old_signer = self.manager.signer(device, t.container, t.usage, caller.clone())?;
            let auth = proof::sign(&old_signer, &proof::enrol_message(application_id, &key.to_spki_der()?))
                .map_err(|e| old_signer.service_error(e))?;
            Ok((csr, auth))
        };
        let (csr, auth) = request().map_err(drop_new)?;
        let issued = match self.ca.est_simpleenroll(&csr, Some((application_id, &api::b64(&auth)))) {
            Ok(certs) => certs,
            // A refusal issued nothing; after any other failure the CA may have issued
            // for the new key, so it stays for the next install to fetch the certificate.
            Err(e @ kb_ca::CaError::Refused { .. }) => return Err(drop_new(e.into())),
            Err(e) => return Err(e.into()),
        };
        let new = Self::first_issued(issued).map_err(drop_new)?;
        self.check_new(&new, t.old, &key).map_err(drop_new)?;
        // The CA has issued: from here on the new pair stays for the next install.
        self.put_encryption_pair(t, &new_container, &new)?;
        self.put_rekeyed(t, &new, &new_container)
    }

    /// 变更/补发 after the CA already issued (an earlier install was interrupted): fetch
    /// the certificate again and install it on the new pair that is still on the medium.
    fn resume_rekey(&self, t: &Target<'_>, application_id: &str) -> Result<InstallReport> {
        let delivery = self.ca.delivery(application_id)?;
        let new = delivery
            .certificates
            .first()
            .and_then(|b| api::unb64(b))
            .map(|der| Certificate::from_der(&der))
            .transpose()?
            .ok_or_else(|| renewal_error(ErrorCode::CaResponseInvalid, "the CA delivered no certificate"))?;
        let key = new.public_key()?;
        let holder = self
            .manager
            .containers(t.device, t.client())?
            .into_iter()
            .filter(|c| c.name != t.container && c.slot(t.usage).is_some())
            .map(|c| c.name)
            .find(|name| self.manager.public_key(t.device, name, t.usage, t.client()).is_ok_and(|k| k == key))
            .ok_or_else(|| {
                renewal_error(
                    ErrorCode::RenewalNotApproved,
                    "the CA issued the new certificate for a key pair that is no longer on this key; apply again",
                )
            })?;
        self.check_new(&new, t.old, &key)?;
        self.put_encryption_pair(t, &holder, &new)?;
        self.put_rekeyed(t, &new, &holder)
    }

    /// SM2 dual certificates ([`api::Application::dual`]): the encryption key pair the CA
    /// issued with the signing certificate `new`, delivered in an envelope sealed to
    /// `new`'s key, checked (its certificate holds the delivered key, chains to a trusted
    /// root, names `new`'s subject, is for encryption and valid now) and imported by the
    /// medium into `container` next to the signing key, then read back. The medium swaps
    /// the slot in one step (the file key: one atomic write), so it holds the old pair or
    /// the new one, each with its certificate. Runs before the signing certificate is
    /// written, and again harmlessly on a repeated install (a slot that already holds the
    /// delivered certificate is left alone). Nothing to do for other applications.
    fn put_encryption_pair(&self, t: &Target<'_>, container: &str, new: &Certificate) -> Result<()> {
        if !t.application.dual || t.usage == KeyUsage::Encrypt {
            return Ok(());
        }
        let delivery = self.ca.delivery(&t.application.id)?;
        let garbage = |why: &str| renewal_error(ErrorCode::CaResponseInvalid, format!("the CA's encryption key pair: {why}"));
        let enc = delivery
            .certificates
            .get(1)
            .map(|b| api::unb64(b).ok_or_else(|| garbage("the certificate is not base64")))
            .transpose()?
            .map(|der| Certificate::from_der(&der))
            .transpose()?
            .ok_or_else(|| garbage("no encryption certificate was delivered"))?;
        let envelope = delivery
            .encryption_key
            .as_deref()
            .and_then(api::unb64)
            .ok_or_else(|| garbage("no enveloped key was delivered"))
            .and_then(|der| kb_token::Sm2EnvelopedKey::from_der(&der).map_err(|e| garbage(&e.to_string())))?;
        let invalid = |why: String| renewal_error(ErrorCode::NewCertificateInvalid, format!("the encryption certificate: {why}"));
        if enc.public_key()? != kb_crypto::PublicKey::Sm2(envelope.public_key) {
            return Err(invalid("it is not for the delivered key pair".into()));
        }
        let now = UnixTime::now();
        verify_chain(&enc, &[], &self.trust, now).map_err(|e| invalid(format!("it does not chain to a trusted root: {e}")))?;
        if enc.subject_der() != new.subject_der() {
            return Err(invalid(format!("it names '{}', not '{}'", enc.subject(), new.subject())));
        }
        if enc.usage() != KeyUsage::Encrypt {
            return Err(invalid("it is not an encryption certificate".into()));
        }
        if enc.not_before().0 > now.0 + CLOCK_SKEW_SECS || enc.not_after() <= now {
            return Err(invalid("it is not valid now".into()));
        }
        if self.read_back(t.device, container, KeyUsage::Encrypt, t.client())?.as_deref() == Some(enc.der()) {
            return Ok(());
        }
        self.manager.import_enveloped_key(t.device, container, envelope, enc.der(), t.caller.clone())?;
        if self.read_back(t.device, container, KeyUsage::Encrypt, t.client())?.as_deref() != Some(enc.der()) {
            return Err(renewal_error(
                ErrorCode::InstallIncomplete,
                "the encryption certificate did not read back; install again",
            ));
        }
        Ok(())
    }

    /// Write the new certificate into `new_container`, read it back, then remove the old
    /// pair.
    fn put_rekeyed(&self, t: &Target<'_>, new: &Certificate, new_container: &str) -> Result<InstallReport> {
        let journal = t.journal(RenewalKind::Rekey, Some(new), Some(new_container));
        self.write_and_read_back(t, &journal, new, new_container)?;
        // The new certificate is in and read back: now the old pair may go.
        if let Err(e) = self.finish_rekey(t.device, &journal, t.caller) {
            return Err(renewal_error(
                ErrorCode::InstallIncomplete,
                format!(
                    "the new certificate is installed in container {new_container}, but the old key pair could not be removed yet ({e})"
                ),
            ));
        }
        self.remove_journal(t.device)?;
        Ok(t.report(RenewalKind::Rekey, new, new_container))
    }

    /// Remove the replaced pair: the whole old container, or — when it also holds the
    /// other pair of an SM2 dual set — only the replaced certificate.
    fn finish_rekey(&self, device: &DeviceId, j: &Journal, caller: &Caller) -> Result<()> {
        let client = caller.client();
        let Some(c) = self.manager.containers(device, client)?.into_iter().find(|c| c.name == j.container) else {
            return Ok(()); // already gone
        };
        let other = if j.usage == KeyUsage::Encrypt { c.sign.as_ref() } else { c.encrypt.as_ref() };
        if other.is_some() {
            if c.slot(j.usage).and_then(|s| s.certificate.as_ref()).is_some() {
                self.manager.delete_certificate(device, &j.container, j.usage, caller.clone())?;
            }
            Ok(())
        } else {
            self.manager.delete_container(device, &j.container, caller.clone())
        }
    }

    /// Where unfinished installs are journaled.
    pub fn journal_dir(&self) -> &Path {
        &self.journal_dir
    }
}
