//! One PKCS#11 token as a KeyBridge medium.

use crate::encoding::{p256_params, serial_number_der};
use crate::error::{PinFlags, token_error, wrong_pin};
use crate::mechanisms::{decrypt_mechanism, finish_signature, sign_plan};
use crate::module::Pkcs11Module;
use crate::objects::{Entry, all_by_id, entry_for, find_by_id, public_key_of, scan};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session as P11Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;
use kb_crypto::rsa::RsaPadding;
use kb_crypto::{PublicKey, SignatureScheme};
use kb_pki::Certificate;
use kb_token::{OpContext, OpStatus, PinPolicy, Result, Session, Token, TokenError, UserAuth};
use kb_types::{Algorithm, ContainerInfo, DeviceInfo, KeyUsage, Pin, PinInfo, PinKind, SealInfo, UserVerification};
use std::sync::Arc;
use zeroize::Zeroizing;

/// A token in a slot of a [`Pkcs11Module`]. Every call opens its own PKCS#11 session, so a
/// token pulled out between calls fails the next call with `device_removed`.
pub struct Pkcs11Token {
    module: Arc<Pkcs11Module>,
    slot: Slot,
    info: DeviceInfo,
    mechanisms: Vec<MechanismType>,
}

impl std::fmt::Debug for Pkcs11Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Token").field("id", &self.info.id).field("slot", &self.slot.id()).finish()
    }
}

fn auth(pin: &Pin) -> Result<AuthPin> {
    let s = std::str::from_utf8(pin.expose()).map_err(|_| TokenError::PinPolicy("the PIN is not valid text"))?;
    Ok(AuthPin::from(s))
}

impl Pkcs11Token {
    /// Open the token with this device id on `module` (see [`Pkcs11Module::device_id`]).
    pub fn open(module: Arc<Pkcs11Module>, id: &kb_types::DeviceId) -> Result<Self> {
        let (slot, info) = module.find(id)?;
        let mechanisms = module.ctx().get_mechanism_list(slot).map_err(token_error)?;
        Ok(Pkcs11Token { module, slot, info, mechanisms })
    }

    /// The token's current info, checking it is still the same token in the slot.
    fn token_info(&self) -> Result<TokenInfo> {
        let t = self.module.ctx().get_token_info(self.slot).map_err(token_error)?;
        if t.serial_number().trim() != self.info.serial {
            return Err(TokenError::Removed);
        }
        Ok(t)
    }

    fn session(&self, rw: bool) -> Result<P11Session> {
        self.token_info()?;
        let ctx = self.module.ctx();
        if rw { ctx.open_rw_session(self.slot) } else { ctx.open_ro_session(self.slot) }.map_err(token_error)
    }

    fn policy(&self) -> Result<PinPolicy> {
        let t = self.token_info()?;
        Ok(PinPolicy { min_chars: t.min_pin_length(), max_chars: t.max_pin_length() })
    }

    /// Map the result of a call that checks `kind`'s PIN. A wrong PIN is reported with
    /// what the token's flags say *after* the try (never an invented count).
    fn pin_checked<T>(&self, kind: PinKind, r: std::result::Result<T, Error>) -> Result<T> {
        match r {
            Ok(v) => Ok(v),
            Err(Error::Pkcs11(RvError::PinIncorrect, _)) => {
                let t = self.token_info()?;
                Err(wrong_pin(PinFlags::of(kind, &t)))
            }
            Err(e) => Err(token_error(e)),
        }
    }

    /// A R/W session logged in as the SO with `so_pin`.
    fn so_session(&self, so_pin: &Pin) -> Result<P11Session> {
        let s = self.session(true)?;
        self.pin_checked(PinKind::So, s.login(UserType::So, Some(&auth(so_pin)?)))?;
        Ok(s)
    }

    fn entries(&self, session: &P11Session) -> Result<Vec<Entry>> {
        scan(session)
    }
}

impl Token for Pkcs11Token {
    fn info(&self) -> DeviceInfo {
        self.info.clone()
    }

    /// PKCS#11 reports no try counter, only flags. Where the flags give an exact number
    /// (locked: 0, final try: 1) it is returned, with `max_retries` equal to it since the
    /// maximum is never reported either; otherwise the count is unknown and this returns
    /// `not_supported` rather than a made-up number.
    fn pin_info(&mut self, kind: PinKind) -> Result<PinInfo> {
        let t = self.token_info()?;
        let f = PinFlags::of(kind, &t);
        let exact = if f.locked {
            0
        } else if f.final_try {
            1
        } else {
            let low = if f.count_low { " (it reports that few are left)" } else { "" };
            return Err(TokenError::NotSupported(format!("the PKCS#11 token does not report how many PIN tries are left{low}")));
        };
        Ok(PinInfo { kind, retries_left: exact, max_retries: exact, locked: f.locked, is_default: f.to_be_changed })
    }

    fn change_pin(&mut self, kind: PinKind, old: &Pin, new: &Pin) -> Result<()> {
        self.policy()?.check(new)?;
        let (old, new) = (auth(old)?, auth(new)?);
        match kind {
            // In a R/W public session C_SetPIN changes the user PIN, checking the old one.
            PinKind::User => {
                let s = self.session(true)?;
                self.pin_checked(PinKind::User, s.set_pin(&old, &new))
            }
            PinKind::So => {
                let s = self.session(true)?;
                self.pin_checked(PinKind::So, s.login(UserType::So, Some(&old)))?;
                let r = s.set_pin(&old, &new).map_err(token_error);
                let _ = s.logout();
                r
            }
        }
    }

    fn unblock_pin(&mut self, so_pin: &Pin, new_user_pin: &Pin) -> Result<()> {
        self.policy()?.check(new_user_pin)?;
        let new = auth(new_user_pin)?;
        let s = self.so_session(so_pin)?;
        let r = s.init_pin(&new).map_err(token_error);
        let _ = s.logout();
        r
    }

    fn containers(&mut self) -> Result<Vec<ContainerInfo>> {
        let s = self.session(false)?;
        Ok(self.entries(&s)?.iter().map(Entry::container).collect())
    }

    fn public_key(&mut self, container: &str, usage: KeyUsage) -> Result<PublicKey> {
        let s = self.session(false)?;
        entry_for(self.entries(&s)?, container, usage)?.public_key()
    }

    fn seals(&mut self) -> Result<Vec<SealInfo>> {
        Ok(Vec::new())
    }

    fn read_seal(&mut self, id: &str) -> Result<Vec<u8>> {
        Err(TokenError::NotFound(format!("seal {id} (PKCS#11 tokens hold no seals)")))
    }

    fn open_session<'a>(&'a mut self, user: UserAuth<'_>, ctx: &OpContext) -> Result<Box<dyn Session + 'a>> {
        let session = self.session(true)?;
        // A reader with a PIN pad (protected authentication path): C_Login without a PIN
        // makes the reader ask the user; the PC never sees the PIN.
        let pin = match (user, self.info.capabilities.user_verification) {
            (UserAuth::OnMedium, UserVerification::OnMedium) => {
                ctx.status(OpStatus::WaitingForMedium { what: "PIN pad".into() });
                None
            }
            (UserAuth::Pin(_), UserVerification::OnMedium) => {
                return Err(TokenError::NotSupported("this token's PIN is entered on the reader's PIN pad".into()));
            }
            (user, _) => Some(auth(user.pin()?)?),
        };
        let r = match session.login(UserType::User, pin.as_ref()) {
            // Logged in already through another session of this process: log out and in
            // again so this PIN is really checked.
            Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                session.logout().map_err(token_error)?;
                session.login(UserType::User, pin.as_ref())
            }
            r => r,
        };
        self.pin_checked(PinKind::User, r)?;
        Ok(Box::new(Pkcs11Session { token: self, session }))
    }
}

/// A logged-in R/W session. Logs out when dropped.
struct Pkcs11Session<'a> {
    token: &'a Pkcs11Token,
    session: P11Session,
}

impl Drop for Pkcs11Session<'_> {
    fn drop(&mut self) {
        let _ = self.session.logout();
    }
}

impl Pkcs11Session<'_> {
    fn entry(&self, container: &str, usage: KeyUsage) -> Result<Entry> {
        entry_for(scan(&self.session)?, container, usage)
    }

    fn private_key(&self, e: &Entry) -> Result<ObjectHandle> {
        find_by_id(&self.session, ObjectClass::PRIVATE_KEY, &e.id)?
            .into_iter()
            .next()
            .ok_or_else(|| TokenError::NotFound(format!("private key of container {}", e.name)))
    }

    fn destroy(&self, handles: impl IntoIterator<Item = ObjectHandle>) -> Result<()> {
        handles.into_iter().try_for_each(|h| self.session.destroy_object(h).map_err(token_error))
    }
}

impl Session for Pkcs11Session<'_> {
    fn create_container(&mut self, _name: &str) -> Result<()> {
        Err(TokenError::NotSupported("PKCS#11 tokens have no empty containers: generating a key pair creates one".into()))
    }

    fn delete_container(&mut self, name: &str) -> Result<()> {
        let e = scan(&self.session)?
            .into_iter()
            .find(|e| e.name == name)
            .ok_or_else(|| TokenError::NotFound(format!("container {name}")))?;
        self.destroy(all_by_id(&self.session, &e.id)?)
    }

    fn generate_key_pair(&mut self, container: &str, usage: KeyUsage, algorithm: Algorithm) -> Result<PublicKey> {
        let existing = scan(&self.session)?.into_iter().find(|e| e.name == container);
        let id = match &existing {
            Some(e) => e.id.clone(),
            None => kb_crypto::rng::random_array::<16>()?.to_vec(),
        };
        let (sign, decrypt) = match usage {
            KeyUsage::Sign => (true, false),
            KeyUsage::Encrypt => (false, true),
            KeyUsage::Both => (true, true),
        };
        let label = container.as_bytes().to_vec();
        let mut public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Id(id.clone()),
            Attribute::Label(label.clone()),
            Attribute::Verify(sign),
        ];
        let mut private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Id(id.clone()),
            Attribute::Label(label),
            Attribute::Sign(sign),
        ];
        let mechanism = match algorithm {
            Algorithm::Rsa { bits } if matches!(bits, 2048 | 3072 | 4096) => {
                public.extend([
                    Attribute::ModulusBits(u64::from(bits).into()),
                    Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                    Attribute::Encrypt(decrypt),
                ]);
                private.push(Attribute::Decrypt(decrypt));
                Mechanism::RsaPkcsKeyPairGen
            }
            Algorithm::EcdsaP256 if usage != KeyUsage::Encrypt => {
                public.push(Attribute::EcParams(p256_params()?));
                Mechanism::EccKeyPairGen
            }
            other => {
                return Err(TokenError::NotSupported(format!("generating a {other} key pair for {usage} on a PKCS#11 token")));
            }
        };
        let (pub_h, priv_h) = self.session.generate_key_pair(&mechanism, &public, &private).map_err(token_error)?;
        let key = public_key_of(&self.session, pub_h)?
            .ok_or_else(|| TokenError::Corrupt("the generated public key cannot be read".into()))?;
        // Replace what the container held: the old key pair and its certificate.
        if existing.is_some() {
            let old = all_by_id(&self.session, &id)?.into_iter().filter(|h| *h != pub_h && *h != priv_h);
            self.destroy(old.collect::<Vec<_>>())?;
        }
        Ok(key)
    }

    fn import_certificate(&mut self, container: &str, usage: KeyUsage, der: &[u8]) -> Result<()> {
        let e = self.entry(container, usage)?;
        let cert = Certificate::from_der(der)?;
        if cert.public_key()? != e.public_key()? {
            return Err(TokenError::CertificateKeyMismatch);
        }
        let old = find_by_id(&self.session, ObjectClass::CERTIFICATE, &e.id)?;
        let mut template = vec![
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Id(e.id.clone()),
            Attribute::Subject(cert.subject_der()),
            Attribute::Issuer(cert.issuer_der()),
            Attribute::SerialNumber(serial_number_der(cert.serial_bytes())?),
            Attribute::Value(cert.der().to_vec()),
        ];
        if let Some(l) = &e.label {
            template.push(Attribute::Label(l.as_bytes().to_vec()));
        }
        // The new certificate is on the token before the old one goes: never a moment
        // without a working certificate.
        self.session.create_object(&template).map_err(token_error)?;
        self.destroy(old)
    }

    fn delete_certificate(&mut self, container: &str, usage: KeyUsage) -> Result<()> {
        let e = self.entry(container, usage)?;
        let certs = find_by_id(&self.session, ObjectClass::CERTIFICATE, &e.id)?;
        if certs.is_empty() {
            return Err(TokenError::NotFound(format!("certificate in container {container}")));
        }
        self.destroy(certs)
    }

    fn sign_digest(&mut self, container: &str, usage: KeyUsage, scheme: &SignatureScheme, digest: &[u8]) -> Result<Vec<u8>> {
        let e = self.entry(container, usage)?;
        let plan = sign_plan(e.algorithm, scheme, digest, &self.token.mechanisms)?;
        let key = self.private_key(&e)?;
        let sig = self.session.sign(&plan.mechanism, key, &plan.input).map_err(token_error)?;
        finish_signature(plan.output, sig)
    }

    fn decrypt(
        &mut self,
        container: &str,
        usage: KeyUsage,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let e = self.entry(container, usage)?;
        let mechanism = decrypt_mechanism(e.algorithm, padding, &self.token.mechanisms)?;
        let key = self.private_key(&e)?;
        self.session.decrypt(&mechanism, key, ciphertext).map(Zeroizing::new).map_err(token_error)
    }

    fn write_seal(&mut self, _id: &str, _name: &str, _mime: &str, _image: &[u8]) -> Result<()> {
        Err(TokenError::NotSupported("seals on a PKCS#11 token".into()))
    }

    fn delete_seal(&mut self, _id: &str) -> Result<()> {
        Err(TokenError::NotSupported("seals on a PKCS#11 token".into()))
    }
}
