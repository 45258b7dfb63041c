//! One SKF application (on one device) as a KeyBridge medium.

use crate::abi::{self, ADMIN_TYPE, CONTAINER_ECC, USER_TYPE, Ulong};
use crate::module::{Device, Medium, SkfModule};
use kb_crypto::rsa::RsaPadding;
use kb_crypto::sm2::{Sm2Ciphertext, Sm2Signature};
use kb_crypto::{CryptoError, PublicKey, SignatureScheme};
use kb_pki::Certificate;
use kb_token::{OpContext, Result, Session, Token, TokenError, UserAuth};
use kb_types::{Algorithm, ContainerInfo, DeviceInfo, KeySlot, KeyUsage, Pin, PinInfo, PinKind, SealInfo};
use std::sync::Arc;
use zeroize::Zeroizing;

/// An application on a device of an [`SkfModule`]. Every call connects to the device and
/// opens the application anew (and checks the serial), so a key pulled out between calls
/// fails the next call with `device_removed`; a [`Session`] keeps both open, PIN verified,
/// until it is dropped.
pub struct SkfToken {
    module: Arc<SkfModule>,
    medium: Medium,
}

impl std::fmt::Debug for SkfToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkfToken").field("id", &self.medium.info.id).field("module", &self.module.path()).finish()
    }
}

fn pin_type(kind: PinKind) -> Ulong {
    match kind {
        PinKind::User => USER_TYPE,
        PinKind::So => ADMIN_TYPE,
    }
}

/// SKF keeps one signing and one encryption key pair per container: `bSignFlag`.
fn sign_flag(usage: KeyUsage) -> bool {
    usage != KeyUsage::Encrypt
}

/// An open application (and its device), closed on drop.
struct App<'m> {
    module: &'m SkfModule,
    handle: usize,
    _device: Device<'m>,
}

impl Drop for App<'_> {
    fn drop(&mut self) {
        self.module.api().close_application(self.handle);
    }
}

/// An open container, closed on drop.
struct Container<'a> {
    module: &'a SkfModule,
    handle: usize,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        self.module.api().close_container(self.handle);
    }
}

impl<'m> App<'m> {
    fn open(module: &'m SkfModule, medium: &Medium) -> Result<Self> {
        let api = module.api();
        let device = Device::connect(module, &medium.device).map_err(gone_if_missing)?;
        let serial = abi::field_text(&api.dev_info(device.0)?.serial_number);
        if !serial.is_empty() && serial != medium.info.serial {
            return Err(TokenError::Removed); // another key now answers to that name
        }
        let handle = api.open_application(device.0, &medium.application)?;
        Ok(App { module, handle, _device: device })
    }

    fn container(&self, name: &str) -> Result<Container<'m>> {
        Ok(Container { module: self.module, handle: self.module.api().open_container(self.handle, name)? })
    }

    fn public_key(&self, c: &Container<'_>, usage: KeyUsage) -> Result<PublicKey> {
        Ok(PublicKey::Sm2(self.module.api().export_public_key(c.handle, sign_flag(usage))?.to_sm2()?))
    }

    fn container_info(&self, name: &str) -> Result<ContainerInfo> {
        let api = self.module.api();
        let c = self.container(name)?;
        let mut info = ContainerInfo { name: name.to_string(), sign: None, encrypt: None };
        // RSA containers are listed without key slots: KeyBridge drives SM2 through SKF.
        if api.container_type(c.handle)? != CONTAINER_ECC {
            return Ok(info);
        }
        for usage in [KeyUsage::Sign, KeyUsage::Encrypt] {
            // A slot without a key answers with an error code that vendors do not agree on;
            // only a removed device is an error here.
            let slot = match api.export_public_key(c.handle, sign_flag(usage)) {
                Ok(_) => {
                    let certificate = match api.export_certificate(c.handle, sign_flag(usage)) {
                        Ok(der) if !der.is_empty() => Some(der),
                        Err(TokenError::Removed) => return Err(TokenError::Removed),
                        _ => None,
                    };
                    Some(KeySlot { usage, algorithm: Algorithm::Sm2, certificate })
                }
                Err(TokenError::Removed) => return Err(TokenError::Removed),
                Err(_) => None,
            };
            match usage {
                KeyUsage::Encrypt => info.encrypt = slot,
                _ => info.sign = slot,
            }
        }
        Ok(info)
    }
}

/// A device that cannot be connected any more is gone.
fn gone_if_missing(e: TokenError) -> TokenError {
    match e {
        TokenError::NotFound(_) => TokenError::Removed,
        e => e,
    }
}

impl SkfToken {
    /// Open the medium with this id on `module` (ids as listed by the transport).
    pub fn open(module: Arc<SkfModule>, id: &kb_types::DeviceId) -> Result<Self> {
        let medium = module.find(id)?;
        Ok(SkfToken { module, medium })
    }

    fn app(&self) -> Result<App<'_>> {
        App::open(&self.module, &self.medium)
    }
}

impl Token for SkfToken {
    fn info(&self) -> DeviceInfo {
        self.medium.info.clone()
    }

    fn pin_info(&mut self, kind: PinKind) -> Result<PinInfo> {
        let app = self.app()?;
        let (max, left, is_default) = self.module.api().pin_info(app.handle, pin_type(kind))?;
        let clamp = |n: Ulong| n.min(u8::MAX as Ulong) as u8;
        Ok(PinInfo { kind, retries_left: clamp(left), max_retries: clamp(max), locked: left == 0, is_default })
    }

    fn change_pin(&mut self, kind: PinKind, old: &Pin, new: &Pin) -> Result<()> {
        let app = self.app()?;
        self.module.api().change_pin(app.handle, pin_type(kind), old, new)
    }

    fn unblock_pin(&mut self, so_pin: &Pin, new_user_pin: &Pin) -> Result<()> {
        let app = self.app()?;
        self.module.api().unblock_pin(app.handle, so_pin, new_user_pin)
    }

    fn containers(&mut self) -> Result<Vec<ContainerInfo>> {
        let app = self.app()?;
        self.module.api().enum_containers(app.handle)?.iter().map(|n| app.container_info(n)).collect()
    }

    fn public_key(&mut self, container: &str, usage: KeyUsage) -> Result<PublicKey> {
        let app = self.app()?;
        let c = app.container(container)?;
        app.public_key(&c, usage)
    }

    fn seals(&mut self) -> Result<Vec<SealInfo>> {
        Ok(Vec::new())
    }

    fn read_seal(&mut self, id: &str) -> Result<Vec<u8>> {
        Err(TokenError::NotFound(format!("seal {id} (SKF keys hold no KeyBridge seals)")))
    }

    fn open_session<'a>(&'a mut self, auth: UserAuth<'_>, _ctx: &OpContext) -> Result<Box<dyn Session + 'a>> {
        let pin = auth.pin()?;
        let app = self.app()?;
        self.module.api().verify_pin(app.handle, USER_TYPE, pin)?;
        Ok(Box::new(SkfSession { app }))
    }
}

/// The application with the user PIN verified. Clears the login state when dropped.
struct SkfSession<'m> {
    app: App<'m>,
}

impl Drop for SkfSession<'_> {
    fn drop(&mut self) {
        self.app.module.api().clear_secure_state(self.app.handle);
    }
}

impl Session for SkfSession<'_> {
    fn create_container(&mut self, name: &str) -> Result<()> {
        let api = self.app.module.api();
        let handle = api.create_container(self.app.handle, name)?;
        drop(Container { module: self.app.module, handle });
        Ok(())
    }

    fn delete_container(&mut self, name: &str) -> Result<()> {
        self.app.module.api().delete_container(self.app.handle, name)
    }

    /// SKF generates only signing key pairs on the device (`SKF_GenECCKeyPair`); an
    /// encryption pair is made by the CA and imported in an envelope, which KeyBridge does
    /// not implement. The container is created when it does not exist.
    fn generate_key_pair(&mut self, container: &str, usage: KeyUsage, algorithm: Algorithm) -> Result<PublicKey> {
        if algorithm != Algorithm::Sm2 {
            return Err(TokenError::NotSupported(format!("{algorithm} key generation on an SKF key")));
        }
        if usage == KeyUsage::Encrypt {
            return Err(TokenError::NotSupported(
                "generating an encryption key pair on an SKF key (the CA issues it in an envelope)".into(),
            ));
        }
        let api = self.app.module.api();
        let c = match self.app.container(container) {
            Ok(c) => c,
            Err(TokenError::NotFound(_)) => {
                Container { module: self.app.module, handle: api.create_container(self.app.handle, container)? }
            }
            Err(e) => return Err(e),
        };
        Ok(PublicKey::Sm2(api.gen_ecc_key_pair(c.handle)?.to_sm2()?))
    }

    fn import_certificate(&mut self, container: &str, usage: KeyUsage, der: &[u8]) -> Result<()> {
        let cert = Certificate::from_der(der)?;
        let c = self.app.container(container)?;
        if cert.public_key()? != self.app.public_key(&c, usage)? {
            return Err(TokenError::CertificateKeyMismatch);
        }
        self.app.module.api().import_certificate(c.handle, sign_flag(usage), cert.der())
    }

    /// `SKF_ImportECCKeyPair` with the envelope as an `ENVELOPEDKEYBLOB` (the module opens
    /// it with the container's signing key), then `SKF_ImportCertificate`. The certificate
    /// is checked against the envelope before the first call; the two calls are not one
    /// atomic step on an SKF key, so a failure between them leaves the new pair without a
    /// certificate (the caller installs it again).
    fn import_enveloped_key(
        &mut self,
        container: &str,
        envelope: &kb_token::Sm2EnvelopedKey,
        certificate: Option<&[u8]>,
    ) -> Result<()> {
        let cert = certificate.map(Certificate::from_der).transpose()?;
        if let Some(cert) = &cert
            && cert.public_key()? != PublicKey::Sm2(envelope.public_key)
        {
            return Err(TokenError::CertificateKeyMismatch);
        }
        let c = self.app.container(container)?;
        let api = self.app.module.api();
        api.import_ecc_key_pair(c.handle, &abi::encode_enveloped_key_blob(envelope))?;
        match cert {
            Some(cert) => api.import_certificate(c.handle, sign_flag(KeyUsage::Encrypt), cert.der()),
            None => Ok(()),
        }
    }

    fn delete_certificate(&mut self, _container: &str, _usage: KeyUsage) -> Result<()> {
        Err(TokenError::NotSupported("deleting a certificate: GM/T 0016 has no such function".into()))
    }

    /// `digest` is SM2's `e = SM3(ZA ‖ M)`, computed by KeyBridge; `SKF_ECCSignData` signs
    /// it with the container's signing key.
    fn sign_digest(&mut self, container: &str, usage: KeyUsage, scheme: &SignatureScheme, digest: &[u8]) -> Result<Vec<u8>> {
        if !matches!(scheme, SignatureScheme::Sm2Sm3 { .. }) {
            return Err(TokenError::NotSupported("SKF keys sign with SM2 only".into()));
        }
        if usage == KeyUsage::Encrypt {
            return Err(TokenError::NotSupported("SKF signs with the signing key pair only".into()));
        }
        let e: &[u8; 32] =
            digest.try_into().map_err(|_| TokenError::Crypto(CryptoError::InvalidParameter("SM2 digest must be 32 bytes")))?;
        let c = self.app.container(container)?;
        let sig = self.app.module.api().ecc_sign(c.handle, e)?;
        Ok(Sm2Signature { r: abi::unpad64(&sig.r)?, s: abi::unpad64(&sig.s)? }.to_der())
    }

    /// SM2 decryption with the container's encryption key through the vendor extension
    /// `SKF_ECCDecrypt` (GM/T 0016 itself only imports a wrapped session key as a handle,
    /// which never yields the plaintext KeyBridge needs). Any ciphertext layout is accepted:
    /// each reading is tried as an `ECCCIPHERBLOB`.
    fn decrypt(
        &mut self,
        container: &str,
        usage: KeyUsage,
        ciphertext: &[u8],
        _padding: RsaPadding,
    ) -> Result<Zeroizing<Vec<u8>>> {
        if usage != KeyUsage::Encrypt {
            return Err(TokenError::NotSupported("SKF decrypts with the encryption key pair only".into()));
        }
        let api = self.app.module.api();
        if !api.has_ecc_decrypt() {
            return Err(TokenError::NotSupported("SM2 decryption: the SKF module has no SKF_ECCDecrypt".into()));
        }
        let c = self.app.container(container)?;
        for ct in Sm2Ciphertext::candidates(ciphertext)? {
            if ct.c2.len() > abi::MAX_ECC_CIPHER_LEN {
                return Err(TokenError::Crypto(CryptoError::InvalidParameter("SM2 ciphertext too long for an SKF key")));
            }
            match api.ecc_decrypt(c.handle, &abi::encode_cipher_blob(&ct)) {
                Ok(pt) => return Ok(pt),
                Err(TokenError::Crypto(_)) => continue, // another reading may be the right one
                Err(e) => return Err(e),
            }
        }
        Err(TokenError::Crypto(CryptoError::DecryptFailed))
    }

    fn write_seal(&mut self, _id: &str, _name: &str, _mime: &str, _image: &[u8]) -> Result<()> {
        Err(TokenError::NotSupported("seals on an SKF key".into()))
    }

    fn delete_seal(&mut self, _id: &str) -> Result<()> {
        Err(TokenError::NotSupported("seals on an SKF key".into()))
    }
}
