//! `kb-pki` adapters over a device slot: [`DeviceSigner`] (a [`Signer`]) and
//! [`DeviceDecrypter`] (a [`KeyDecrypter`]). CSRs, CMS SignedData and envelope opening
//! then work with keys that never leave their medium, through the PIN cache/prompt and
//! the audit log.
//!
//! A device failure reaches `kb-pki` callers as [`PkiError::Device`] with the device's
//! stable code (`DeviceRemoved`, `Cancelled`, `WrongPin`, …). The adapter also keeps the
//! full [`ServiceError`] (e.g. `WrongPin` with the tries left), and
//! [`DeviceSigner::service_error`] gives it back for the `PkiError` a `kb-pki` function
//! returned:
//!
//! ```text
//! let cms = kb_pki::cms::sign(data, &signer, cert, &opts).map_err(|e| signer.service_error(e))?;
//! ```

use super::{Caller, DeviceManager};
use crate::ServiceError;
use der::asn1::ObjectIdentifier as Oid;
use kb_crypto::{PublicKey, SignatureScheme};
use kb_pki::cms::KeyDecrypter;
use kb_pki::{Certificate, PkiError, Signer};
use kb_types::HasErrorCode;
use kb_types::{DeviceId, KeyUsage};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// The device error behind the last failed call, kept for [`ServiceError`] recovery.
#[derive(Default)]
struct LastError(Mutex<Option<ServiceError>>);

impl LastError {
    /// Keep `e` and turn it into the `PkiError` `kb-pki` expects.
    fn keep(&self, e: ServiceError) -> PkiError {
        let pki = match &e {
            ServiceError::Pki(p) => p.clone(),
            ServiceError::Crypto(c) => PkiError::Crypto(c.clone()),
            other => PkiError::Device { code: other.code(), message: other.to_string() },
        };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        pki
    }

    fn take(&self) -> Option<ServiceError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The device error if one was kept, else the PKI error itself.
    fn service_error(&self, e: PkiError) -> ServiceError {
        self.take().unwrap_or(ServiceError::Pki(e))
    }
}

/// A device slot as seen by an adapter: where the key is, who is asking, and the
/// device error behind the last failure.
struct Slot {
    manager: DeviceManager,
    device: DeviceId,
    container: String,
    usage: KeyUsage,
    caller: Caller,
    last_error: LastError,
}

impl Slot {
    fn new(manager: DeviceManager, device: DeviceId, container: &str, usage: KeyUsage, caller: Caller) -> Self {
        Slot { manager, device, container: container.to_string(), usage, caller, last_error: LastError::default() }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("device", &self.device)
            .field("container", &self.container)
            .field("usage", &self.usage)
            .field("client", &self.caller.client())
            .finish()
    }
}

/// A [`Signer`] whose private key is in a device slot.
#[derive(Debug)]
pub struct DeviceSigner {
    slot: Slot,
    public: PublicKey,
    scheme: SignatureScheme,
    certificate: Option<Certificate>,
}

impl DeviceSigner {
    pub(super) fn new(
        manager: DeviceManager,
        device: DeviceId,
        container: &str,
        usage: KeyUsage,
        caller: Caller,
        public: PublicKey,
        certificate: Option<Certificate>,
    ) -> Self {
        let scheme = SignatureScheme::default_for(public.algorithm());
        DeviceSigner { slot: Slot::new(manager, device, container, usage, caller), public, scheme, certificate }
    }

    /// Use another scheme (an SM2 ID a CA prescribes, RSA-PSS, …).
    pub fn with_scheme(mut self, scheme: SignatureScheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// The slot's certificate, if one is installed (what CMS SignedData names).
    pub fn certificate(&self) -> Option<&Certificate> {
        self.certificate.as_ref()
    }

    /// The device.
    pub fn device(&self) -> &DeviceId {
        &self.slot.device
    }

    /// The device error behind `e` (returned by a `kb-pki` function using this signer),
    /// or `e` itself when the failure was not the device's.
    pub fn service_error(&self, e: PkiError) -> ServiceError {
        self.slot.last_error.service_error(e)
    }

    /// The device error of the last failed signature, if any (and forget it).
    pub fn take_error(&self) -> Option<ServiceError> {
        self.slot.last_error.take()
    }
}

impl Signer for DeviceSigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn scheme(&self) -> &SignatureScheme {
        &self.scheme
    }

    fn sign_digest(&self, digest: &[u8]) -> kb_pki::Result<Vec<u8>> {
        let s = &self.slot;
        s.manager.sign_digest(&s.device, &s.container, s.usage, &self.scheme, digest, &s.caller).map_err(|e| s.last_error.keep(e))
    }
}

/// Key lengths of the content ciphers an envelope may use (SM4 and AES-128: 16; AES-192,
/// 3DES: 24; AES-256: 32).
const CONTENT_KEY_LENGTHS: [usize; 3] = [16, 24, 32];

/// A [`KeyDecrypter`] whose private key is in a device slot.
#[derive(Debug)]
pub struct DeviceDecrypter {
    slot: Slot,
    certificate: Certificate,
}

impl DeviceDecrypter {
    pub(super) fn new(
        manager: DeviceManager,
        device: DeviceId,
        container: &str,
        usage: KeyUsage,
        caller: Caller,
        certificate: Certificate,
    ) -> Self {
        DeviceDecrypter { slot: Slot::new(manager, device, container, usage, caller), certificate }
    }

    /// The device error behind `e` (returned by a `kb-pki` function using this
    /// decrypter), or `e` itself when the failure was not the device's.
    pub fn service_error(&self, e: PkiError) -> ServiceError {
        self.slot.last_error.service_error(e)
    }

    /// The device error of the last failed decryption, if any (and forget it).
    pub fn take_error(&self) -> Option<ServiceError> {
        self.slot.last_error.take()
    }
}

impl KeyDecrypter for DeviceDecrypter {
    fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    fn decrypt_key(&self, alg: &Oid, params: Option<&[u8]>, encrypted_key: &[u8]) -> kb_pki::Result<Zeroizing<Vec<u8>>> {
        let padding = kb_pki::cms::envelope::key_transport_padding(alg, params)?;
        let s = &self.slot;
        let key = s
            .manager
            .decrypt(&s.device, &s.container, s.usage, encrypted_key, padding, &s.caller)
            .map_err(|e| s.last_error.keep(e))?;
        // A content key of a length no content cipher uses cannot be right (a faulty module
        // returning the wrong buffer): refuse it here, naming the medium, rather than let
        // it fail later as a confusing padding error.
        if !CONTENT_KEY_LENGTHS.contains(&key.len()) {
            let medium =
                s.manager.device(&s.device).map(|i| super::private::medium_name(&i)).unwrap_or_else(|_| s.device.to_string());
            let e = ServiceError::MediumResultInvalid { medium, what: format!("a content key of {} bytes", key.len()) };
            return Err(s.last_error.keep(e));
        }
        Ok(key)
    }
}
