//! The OpenPGP card application (specification 3.4) as a KeyBridge [`Token`], over any
//! [`CardBackend`] — a PC/SC reader, a virtual card, a transcript. No I/O of its own.
//!
//! How the card maps onto the Token model:
//!
//! - one container, [`CONTAINER`] (`"openpgp"`): its **sign** slot is the card's signature
//!   key (SIG, `B6`), its **encrypt** slot the decryption key (DEC, `B8`); the
//!   authentication key is not used;
//! - the **user PIN** is PW1 (VERIFY `81` before each signature, `82` before deciphering),
//!   the **SO PIN** is PW3 (`83`), which unblocks PW1 with RESET RETRY COUNTER; retry
//!   counters come from the PW status bytes (`C4`), since a wrong PIN is answered `6982`;
//! - the certificate is the cardholder certificate (DO `7F21`, its first occurrence); it
//!   is shown on whichever slot's public key it certifies;
//! - key generation and certificate writes need PW3 as well: they work in a session from
//!   [`OpenPgpCard::login_admin`]; a session from [`Token::login`] refuses them with
//!   `not_supported` and says why;
//! - algorithms are what the card reports (`C1`/`C2`, and the algorithm information `FA`
//!   when present): RSA (PKCS#1 v1.5 signatures over a DigestInfo, PKCS#1 v1.5
//!   deciphering) and ECDSA P-256 signatures (the card's `r ‖ s` returned as DER).
//!
//! Every operation runs in one card transaction that starts with SELECT, so another
//! application selecting something else in between does no harm; a card reset in the
//! middle ([`ApduError::Reset`]) re-runs the operation once from the SELECT.

#![cfg_attr(test, allow(clippy::panic, clippy::unwrap_used, clippy::expect_used))]

pub mod data;

use data::{AID_PREFIX, AppData, KeyAttributes, PwStatus};
use kb_apdu::tlv::{Tag, Tlv};
use kb_apdu::{ApduError, CardBackend, CardStatus, CardTransaction, Command, MAX_EXTENDED_NE, Response, SendOptions, send_with};
use kb_crypto::rsa::RsaPadding;
use kb_crypto::{PublicKey, SignatureScheme};
use kb_token::{OpContext, PinPolicy, Session, Token, TokenError, UserAuth};
use kb_types::{
    Algorithm, Capabilities, ContainerInfo, DeviceId, DeviceInfo, KeySlot, KeyUsage, Pin, PinInfo, PinKind, SealInfo,
    TransportKind, UserVerification,
};
use zeroize::Zeroizing;

/// The one container an OpenPGP card has.
pub const CONTAINER: &str = "openpgp";

/// The OpenPGP default retry counter (the card reports tries left, not the maximum).
const DEFAULT_MAX_RETRIES: u8 = 3;

const PW1_SIGN: u8 = 0x81;
const PW1_DECIPHER: u8 = 0x82;
const PW3: u8 = 0x83;
const CRT_SIG: u8 = 0xB6;
const CRT_DEC: u8 = 0xB8;
const DO_CERTIFICATE: u16 = 0x7F21;

type Result<T> = std::result::Result<T, TokenError>;

/// Why an operation inside a transaction failed: the card/transport (a reset is retried)
/// or a decision of this driver.
enum Fail {
    Apdu(ApduError),
    Token(TokenError),
}

impl From<ApduError> for Fail {
    fn from(e: ApduError) -> Self {
        Fail::Apdu(e)
    }
}

impl From<TokenError> for Fail {
    fn from(e: TokenError) -> Self {
        Fail::Token(e)
    }
}

impl From<Fail> for TokenError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Apdu(e) => e.into(),
            Fail::Token(e) => e,
        }
    }
}

/// One transaction with the application selected.
struct Ctx<'t> {
    tx: &'t mut dyn CardTransaction,
    opts: SendOptions,
}

impl Ctx<'_> {
    fn send(&mut self, cmd: &Command) -> std::result::Result<Response, Fail> {
        Ok(send_with(self.tx, cmd, &self.opts)?)
    }

    fn data(&mut self, cmd: &Command) -> std::result::Result<Zeroizing<Vec<u8>>, Fail> {
        Ok(self.send(cmd)?.into_data()?)
    }

    fn select(&mut self) -> std::result::Result<(), Fail> {
        let r = self.send(&Command::select_aid(&AID_PREFIX))?;
        if r.status().status() == CardStatus::NotFound {
            return Err(TokenError::NotSupported("the card has no OpenPGP application".into()).into());
        }
        r.into_data()?;
        Ok(())
    }

    fn get_data(&mut self, tag: u16) -> std::result::Result<Zeroizing<Vec<u8>>, Fail> {
        self.data(&Command::get_data(tag).with_ne(MAX_EXTENDED_NE))
    }

    fn pw_status(&mut self) -> std::result::Result<PwStatus, Fail> {
        Ok(PwStatus::parse(&self.get_data(0x00C4)?)?)
    }

    /// The answer to VERIFY / CHANGE REFERENCE DATA: OpenPGP cards answer a wrong PIN
    /// `6982` (some `63Cx`); the tries left come from the PW status bytes.
    fn pin_answer(&mut self, r: Response, pw3: bool) -> std::result::Result<(), Fail> {
        match r.status().status() {
            CardStatus::Ok => Ok(()),
            CardStatus::WrongPin { .. } | CardStatus::SecurityStatusNotSatisfied => {
                let st = self.pw_status()?;
                let left = if pw3 { st.pw3_retries } else { st.pw1_retries };
                Err(if left == 0 { TokenError::PinLocked } else { TokenError::WrongPin { retries_left: left } }.into())
            }
            _ => Err(ApduError::Status(r.status()).into()),
        }
    }

    fn verify(&mut self, p2: u8, pin: &Pin) -> std::result::Result<(), Fail> {
        let r = self.send(&Command::verify(p2, pin))?;
        self.pin_answer(r, p2 == PW3)
    }

    /// A slot's public key (GENERATE ASYMMETRIC KEY PAIR `81`); `None` when the slot is
    /// empty or holds an algorithm KeyBridge cannot use.
    fn read_key(&mut self, crt: u8, attrs: &KeyAttributes) -> std::result::Result<Option<PublicKey>, Fail> {
        let r = self.send(&Command::generate_asymmetric_key_pair(0x81, &[crt, 0x00]).with_ne(MAX_EXTENDED_NE))?;
        if r.status().status() == CardStatus::NotFound {
            return Ok(None);
        }
        Ok(data::public_key(&r.into_data()?, attrs)?)
    }

    /// The cardholder certificate (DER), if one is stored.
    fn certificate(&mut self) -> std::result::Result<Option<Vec<u8>>, Fail> {
        let r = self.send(&Command::get_data(DO_CERTIFICATE).with_ne(MAX_EXTENDED_NE))?;
        if r.status().status() == CardStatus::NotFound {
            return Ok(None);
        }
        let raw = r.into_data()?;
        // Cards answer the DO's content; some wrap it in its own 7F21 template.
        let der = match Tlv::parse(&raw) {
            Ok((t, [])) if t.tag() == Tag(0x7F21) => t.value().to_vec(),
            _ => raw.to_vec(),
        };
        Ok(if der.is_empty() { None } else { Some(der) })
    }
}

/// Run `f` in one transaction, after SELECT; a card reset re-runs it once.
fn run<B: CardBackend, T>(
    backend: &mut B,
    opts: SendOptions,
    mut f: impl FnMut(&mut Ctx<'_>) -> std::result::Result<T, Fail>,
) -> Result<T> {
    let mut retried = false;
    loop {
        let r = match backend.transaction() {
            Ok(mut tx) => {
                let mut c = Ctx { tx: tx.as_mut(), opts };
                c.select().and_then(|()| f(&mut c))
            }
            Err(e) => Err(Fail::Apdu(e)),
        };
        match r {
            Err(Fail::Apdu(ApduError::Reset)) if !retried => retried = true,
            r => return r.map_err(TokenError::from),
        }
    }
}

/// An OpenPGP card behind a [`CardBackend`].
pub struct OpenPgpCard<B: CardBackend> {
    backend: B,
    app: AppData,
    info: DeviceInfo,
}

impl<B: CardBackend> std::fmt::Debug for OpenPgpCard<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenPgpCard").field("id", &self.info.id).finish()
    }
}

impl<B: CardBackend> OpenPgpCard<B> {
    /// Select the application and read what it is. Fails with `not_supported` if the card
    /// has no OpenPGP application. The device id is `<transport>:openpgp-<manufacturer><serial>`.
    pub fn open(mut backend: B, transport: TransportKind) -> Result<Self> {
        let (raw, algo_info) = run(&mut backend, SendOptions::default(), |c| {
            let raw = c.get_data(0x006E)?;
            // Algorithm information (3.4, optional): what the card could generate.
            let info = c.get_data(0x00FA).ok();
            Ok((raw, info))
        })?;
        let app = AppData::parse(&raw)?;
        let local = format!("{:04X}{:08X}", app.manufacturer_id(), app.serial());
        let mut algorithms: Vec<Algorithm> = [&app.sig, &app.dec].iter().filter_map(|a| a.algorithm()).collect();
        if let Some(list) = algo_info.as_deref().and_then(|b| Tlv::parse_all(b).ok()) {
            let entries = list.iter().flat_map(|t| if t.children().is_empty() { std::slice::from_ref(t) } else { t.children() });
            for e in entries.filter(|e| matches!(e.tag(), Tag(0xC1) | Tag(0xC2))) {
                if let Some(a) = KeyAttributes::parse(e.value()).ok().and_then(|a| a.algorithm()) {
                    algorithms.push(a);
                }
            }
        }
        let mut seen = Vec::new();
        algorithms.retain(|a| {
            if seen.contains(a) {
                false
            } else {
                seen.push(*a);
                true
            }
        });
        let (major, minor) = app.version();
        let info = DeviceInfo {
            id: DeviceId::new(transport, &format!("openpgp-{local}")),
            label: format!("OpenPGP card {local}"),
            serial: local,
            manufacturer: data::manufacturer_name(app.manufacturer_id()).to_string(),
            model: format!("OpenPGP card {major:X}.{minor:X}"),
            transport,
            capabilities: Capabilities {
                algorithms,
                key_generation: true,
                seals: false,
                so_pin: true,
                user_verification: UserVerification::HostPin,
            },
        };
        Ok(OpenPgpCard { backend, app, info })
    }

    /// What the application related data said at open time.
    pub fn app_data(&self) -> &AppData {
        &self.app
    }

    /// The backend (e.g. to read a virtual card's log).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn opts(&self) -> SendOptions {
        SendOptions { extended_length: self.app.extended_length, ..SendOptions::default() }
    }

    fn run<T>(&mut self, f: impl FnMut(&mut Ctx<'_>) -> std::result::Result<T, Fail>) -> Result<T> {
        let opts = self.opts();
        run(&mut self.backend, opts, f)
    }

    fn policy(&self, kind: PinKind) -> PinPolicy {
        match kind {
            PinKind::User => PinPolicy { min_chars: 6, max_chars: usize::from(self.app.pw.pw1_max_len.max(6)) },
            PinKind::So => PinPolicy { min_chars: 8, max_chars: usize::from(self.app.pw.pw3_max_len.max(8)) },
        }
    }

    fn slot_of(usage: KeyUsage) -> (u8, bool) {
        match usage {
            KeyUsage::Sign | KeyUsage::Both => (CRT_SIG, true),
            KeyUsage::Encrypt => (CRT_DEC, false),
        }
    }

    fn attrs(&self, signing: bool) -> KeyAttributes {
        if signing { self.app.sig.clone() } else { self.app.dec.clone() }
    }

    fn slot_key(&mut self, container: &str, usage: KeyUsage) -> Result<Option<PublicKey>> {
        check_container(container)?;
        let (crt, signing) = Self::slot_of(usage);
        let attrs = self.attrs(signing);
        self.run(|c| c.read_key(crt, &attrs))
    }

    /// Verify PW1 and PW3 and open a session that may also generate keys and write the
    /// certificate (both need PW3 on an OpenPGP card).
    pub fn login_admin<'a>(&'a mut self, user_pin: &Pin, admin_pin: &Pin) -> Result<Box<dyn Session + 'a>>
    where
        B: 'a,
    {
        self.policy(PinKind::User).check(user_pin)?;
        self.policy(PinKind::So).check(admin_pin)?;
        self.run(|c| {
            c.verify(PW1_DECIPHER, user_pin)?;
            c.verify(PW3, admin_pin)
        })?;
        Ok(Box::new(OpenPgpSession { card: self, pin: user_pin.clone(), admin: Some(admin_pin.clone()) }))
    }
}

fn check_container(name: &str) -> Result<()> {
    if name == CONTAINER {
        Ok(())
    } else {
        Err(TokenError::NotFound(format!("container {name} (an OpenPGP card has only \"{CONTAINER}\")")))
    }
}

impl<B: CardBackend> Token for OpenPgpCard<B> {
    fn info(&self) -> DeviceInfo {
        self.info.clone()
    }

    fn pin_info(&mut self, kind: PinKind) -> Result<PinInfo> {
        let st = self.run(|c| c.pw_status())?;
        self.app.pw = st;
        let left = match kind {
            PinKind::User => st.pw1_retries,
            PinKind::So => st.pw3_retries,
        };
        Ok(PinInfo { kind, retries_left: left, max_retries: DEFAULT_MAX_RETRIES.max(left), locked: left == 0, is_default: false })
    }

    fn change_pin(&mut self, kind: PinKind, old: &Pin, new: &Pin) -> Result<()> {
        self.policy(kind).check(new)?;
        let p2 = if kind == PinKind::So { PW3 } else { PW1_SIGN };
        self.run(|c| {
            let r = c.send(&Command::change_reference_data(p2, old, new))?;
            c.pin_answer(r, p2 == PW3)
        })
    }

    fn unblock_pin(&mut self, so_pin: &Pin, new_user_pin: &Pin) -> Result<()> {
        self.policy(PinKind::User).check(new_user_pin)?;
        self.run(|c| {
            c.verify(PW3, so_pin)?;
            c.data(&Command::reset_retry_counter_verified(PW1_SIGN, new_user_pin))?;
            Ok(())
        })
    }

    fn containers(&mut self) -> Result<Vec<ContainerInfo>> {
        let (sig_attrs, dec_attrs) = (self.app.sig.clone(), self.app.dec.clone());
        let (sig, dec, cert) =
            self.run(|c| Ok((c.read_key(CRT_SIG, &sig_attrs)?, c.read_key(CRT_DEC, &dec_attrs)?, c.certificate()?)))?;
        let cert_key = cert.as_deref().and_then(|d| kb_pki::Certificate::from_der(d).ok()).and_then(|c| c.public_key().ok());
        let slot = |usage: KeyUsage, key: Option<PublicKey>| {
            key.map(|k| KeySlot {
                usage,
                algorithm: k.algorithm(),
                certificate: if cert_key.as_ref() == Some(&k) { cert.clone() } else { None },
            })
        };
        Ok(vec![ContainerInfo { name: CONTAINER.into(), sign: slot(KeyUsage::Sign, sig), encrypt: slot(KeyUsage::Encrypt, dec) }])
    }

    fn public_key(&mut self, container: &str, usage: KeyUsage) -> Result<PublicKey> {
        self.slot_key(container, usage)?.ok_or_else(|| TokenError::NotFound(format!("{usage} key in container {container}")))
    }

    fn seals(&mut self) -> Result<Vec<SealInfo>> {
        Ok(Vec::new())
    }

    fn read_seal(&mut self, id: &str) -> Result<Vec<u8>> {
        Err(TokenError::NotFound(format!("seal {id} (an OpenPGP card stores no seals)")))
    }

    fn open_session<'a>(&'a mut self, auth: UserAuth<'_>, _ctx: &OpContext) -> Result<Box<dyn Session + 'a>> {
        let pin = auth.pin()?;
        self.policy(PinKind::User).check(pin)?;
        self.run(|c| c.verify(PW1_DECIPHER, pin))?;
        Ok(Box::new(OpenPgpSession { card: self, pin: pin.clone(), admin: None }))
    }
}

/// A session: PW1 verified at login and again before each private-key operation (PW1
/// for signing is valid for one signature on a default card), PW3 if an admin session.
struct OpenPgpSession<'a, B: CardBackend> {
    card: &'a mut OpenPgpCard<B>,
    pin: Pin,
    admin: Option<Pin>,
}

impl<B: CardBackend> OpenPgpSession<'_, B> {
    fn admin(&self, what: &str) -> Result<Pin> {
        self.admin.clone().ok_or_else(|| {
            TokenError::NotSupported(format!("{what} on an OpenPGP card needs the admin PIN (PW3), in an admin session"))
        })
    }
}

impl<B: CardBackend> Session for OpenPgpSession<'_, B> {
    fn create_container(&mut self, _name: &str) -> Result<()> {
        Err(TokenError::NotSupported(format!("an OpenPGP card has one fixed container, \"{CONTAINER}\"")))
    }

    fn delete_container(&mut self, name: &str) -> Result<()> {
        self.create_container(name)
    }

    fn generate_key_pair(&mut self, container: &str, usage: KeyUsage, algorithm: Algorithm) -> Result<PublicKey> {
        check_container(container)?;
        let admin = self.admin("generating a key pair")?;
        let (crt, signing) = OpenPgpCard::<B>::slot_of(usage);
        let want = KeyAttributes::for_algorithm(algorithm, signing)?;
        let current = self.card.attrs(signing);
        let tag = if signing { 0x00C1 } else { 0x00C2 };
        let template = self.card.run(|c| {
            c.verify(PW3, &admin)?;
            // The certificate of the key being replaced goes with it.
            let old = c.read_key(crt, &current)?;
            let cert = c.certificate()?;
            if let (Some(old), Some(cert)) = (old, cert)
                && kb_pki::Certificate::from_der(&cert).ok().and_then(|c| c.public_key().ok()) == Some(old)
            {
                c.data(&Command::put_data(DO_CERTIFICATE, &[]))?;
            }
            if want != current {
                c.data(&Command::put_data(tag, &want.encode()))?;
            }
            c.data(&Command::generate_asymmetric_key_pair(0x80, &[crt, 0x00]).with_ne(MAX_EXTENDED_NE))
        })?;
        if signing {
            self.card.app.sig = want.clone();
        } else {
            self.card.app.dec = want.clone();
        }
        data::public_key(&template, &want)?.ok_or_else(|| TokenError::Corrupt("the card generated an unusable key".into()))
    }

    fn import_certificate(&mut self, container: &str, usage: KeyUsage, der: &[u8]) -> Result<()> {
        let admin = self.admin("writing the certificate")?;
        let key = self
            .card
            .slot_key(container, usage)?
            .ok_or_else(|| TokenError::NotFound(format!("{usage} key in container {container}")))?;
        if kb_pki::Certificate::from_der(der)?.public_key()? != key {
            return Err(TokenError::CertificateKeyMismatch);
        }
        self.card.run(|c| {
            c.verify(PW3, &admin)?;
            c.data(&Command::put_data(DO_CERTIFICATE, der))?;
            Ok(())
        })
    }

    fn delete_certificate(&mut self, container: &str, usage: KeyUsage) -> Result<()> {
        let admin = self.admin("deleting the certificate")?;
        let listed = self.card.containers()?;
        let present =
            listed.iter().find(|c| c.name == container).and_then(|c| c.slot(usage)).is_some_and(|s| s.certificate.is_some());
        if !present {
            return Err(TokenError::NotFound(format!("{usage} certificate in container {container}")));
        }
        self.card.run(|c| {
            c.verify(PW3, &admin)?;
            c.data(&Command::put_data(DO_CERTIFICATE, &[]))?;
            Ok(())
        })
    }

    fn sign_digest(&mut self, container: &str, usage: KeyUsage, scheme: &SignatureScheme, digest: &[u8]) -> Result<Vec<u8>> {
        check_container(container)?;
        if usage == KeyUsage::Encrypt {
            return Err(TokenError::NotSupported("an OpenPGP card signs only with its signature key".into()));
        }
        let input = match (scheme, &self.card.app.sig) {
            (SignatureScheme::RsaPkcs1(h), KeyAttributes::Rsa { .. }) => kb_crypto::rsa::digest_info(*h, digest)?,
            (SignatureScheme::Ecdsa(_), KeyAttributes::Ecdsa { .. }) => digest.to_vec(),
            (s, a) => return Err(TokenError::NotSupported(format!("{s:?} with the card's signature key ({a:?})"))),
        };
        let pin = self.pin.clone();
        let sig = self.card.run(|c| {
            c.verify(PW1_SIGN, &pin)?;
            c.data(&Command::compute_digital_signature(&input).with_ne(MAX_EXTENDED_NE))
        })?;
        match scheme {
            // The card answers r ‖ s; X.509 and CMS want DER.
            SignatureScheme::Ecdsa(_) => p256::ecdsa::Signature::from_slice(&sig)
                .map(|s| s.to_der().as_bytes().to_vec())
                .map_err(|_| TokenError::Corrupt("the card's ECDSA signature is not r ‖ s on P-256".into())),
            _ => Ok(sig.to_vec()),
        }
    }

    fn decrypt(
        &mut self,
        container: &str,
        usage: KeyUsage,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<Zeroizing<Vec<u8>>> {
        check_container(container)?;
        if usage == KeyUsage::Sign {
            return Err(TokenError::NotSupported("an OpenPGP card deciphers only with its decryption key".into()));
        }
        if !matches!((&self.card.app.dec, padding), (KeyAttributes::Rsa { .. }, RsaPadding::Pkcs1v15)) {
            return Err(TokenError::NotSupported(format!(
                "deciphering with {padding:?} and the card's decryption key ({:?}); OpenPGP cards decipher RSA PKCS#1 v1.5",
                self.card.app.dec
            )));
        }
        // Padding indicator byte 00 (RSA), then the cryptogram.
        let mut input = Zeroizing::new(Vec::with_capacity(ciphertext.len() + 1));
        input.push(0x00);
        input.extend_from_slice(ciphertext);
        let pin = self.pin.clone();
        self.card.run(|c| {
            c.verify(PW1_DECIPHER, &pin)?;
            c.data(&Command::decipher(&input).with_ne(MAX_EXTENDED_NE))
        })
    }

    fn write_seal(&mut self, _id: &str, _name: &str, _mime: &str, _image: &[u8]) -> Result<()> {
        Err(TokenError::NotSupported("an OpenPGP card stores no seals".into()))
    }

    fn delete_seal(&mut self, id: &str) -> Result<()> {
        Err(TokenError::NotFound(format!("seal {id} (an OpenPGP card stores no seals)")))
    }
}
