//! The module's state and logic, in safe Rust: the handle table and one function per SKF
//! entry point, working on Rust values. `ffi.rs` only moves bytes across the C boundary.
//!
//! Device = one `<name>.kbkey` file in the key directory (device name = file stem);
//! application = [`APPLICATION`], holding the file key's user and SO PIN; containers = the
//! file key's containers. Handles are opaque integers into a process-wide table: no
//! pointer to a Rust object ever leaves the module, and a stale or forged handle is
//! `SAR_INVALIDHANDLEERR`.
//!
//! A file key has no PIN state of its own between calls: `SKF_VerifyPIN` checks the PIN
//! (counting a wrong one in the file) and keeps it, zeroized on drop, with the application
//! handle until `SKF_ClearSecureState`, `SKF_CloseApplication` or `SKF_DisConnectDev`.
//! Each private-key call opens the file key with it (one Argon2id run).

use kb_crypto::SignatureScheme;
use kb_crypto::rsa::RsaPadding;
use kb_crypto::sm2::Sm2Signature;
use kb_skf::abi::*;
use kb_token::file::{EXTENSION, FileToken};
use kb_token::{Session, Token, TokenError};
use kb_types::{Algorithm, KeyUsage, Pin, PinKind};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use zeroize::Zeroizing;

/// The one application of every device.
pub const APPLICATION: &str = "KeyBridge";

pub use crate::key_dir::KEY_DIR_ENV;

/// How often `SKF_WaitForDevEvent` looks at the key directory.
const EVENT_POLL: Duration = Duration::from_millis(100);

/// Why a call failed: a `SAR_*` decided here, or a file-key error (mapped by
/// [`abi::sar_of`], PIN errors with their retry count).
#[derive(Debug)]
pub enum Fail {
    /// This code.
    Sar(Ulong),
    /// This error from the file key.
    Token(TokenError),
}

impl From<TokenError> for Fail {
    fn from(e: TokenError) -> Self {
        Fail::Token(e)
    }
}

impl Fail {
    /// The `SAR_*` code.
    pub fn code(&self) -> Ulong {
        match self {
            Fail::Sar(c) => *c,
            Fail::Token(e) => sar_of(e),
        }
    }

    /// The retry count a PIN function reports with this failure.
    pub fn retries(&self) -> Option<Ulong> {
        match self {
            Fail::Token(TokenError::WrongPin { retries_left }) => Some(Ulong::from(*retries_left)),
            Fail::Token(TokenError::PinLocked) => Some(0),
            _ => None,
        }
    }
}

/// Result of a core function.
pub type Res<T> = Result<T, Fail>;

/// The directory of the served keys ([`crate::key_dir`]); `SAR_NOTINITIALIZEERR` when
/// the settings cannot be read.
pub fn key_dir() -> Res<PathBuf> {
    crate::key_dir::key_dir().map_err(|_| Fail::Sar(SAR_NOTINITIALIZEERR))
}

/// Device names present: the stems of the key files, sorted.
fn device_names() -> Res<BTreeSet<String>> {
    let dir = key_dir()?;
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(BTreeSet::new()) };
    Ok(entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let stem = name.strip_suffix(&format!(".{EXTENSION}"))?.to_string();
            (valid_name(&stem) && e.path().is_file()).then_some(stem)
        })
        .collect())
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && !n.starts_with('.') && !n.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

struct Device {
    path: PathBuf,
    serial: String,
}

struct Application {
    device: usize,
    /// The verified user PIN (zeroized on drop), `None` when not logged in.
    user_pin: Option<Pin>,
}

struct Container {
    app: usize,
    name: String,
}

enum Object {
    Device(Device),
    Application(Application),
    Container(Container),
}

#[derive(Default)]
struct Table {
    next: usize,
    objects: HashMap<usize, Object>,
}

fn table() -> std::sync::MutexGuard<'static, Table> {
    static T: OnceLock<Mutex<Table>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(Table { next: 0x0005_0000, objects: HashMap::new() })).lock().unwrap_or_else(|e| e.into_inner())
}

impl Table {
    fn insert(&mut self, o: Object) -> usize {
        self.next += 1;
        self.objects.insert(self.next, o);
        self.next
    }

    /// Remove `h` and everything opened under it.
    fn remove_tree(&mut self, h: usize) {
        let children: Vec<usize> = self
            .objects
            .iter()
            .filter(|(_, o)| match o {
                Object::Application(a) => a.device == h,
                Object::Container(c) => c.app == h,
                Object::Device(_) => false,
            })
            .map(|(k, _)| *k)
            .collect();
        self.objects.remove(&h);
        for c in children {
            self.remove_tree(c);
        }
    }

    fn device(&self, h: usize) -> Res<&Device> {
        match self.objects.get(&h) {
            Some(Object::Device(d)) => Ok(d),
            _ => Err(Fail::Sar(SAR_INVALIDHANDLEERR)),
        }
    }

    fn app(&self, h: usize) -> Res<&Application> {
        match self.objects.get(&h) {
            Some(Object::Application(a)) => Ok(a),
            _ => Err(Fail::Sar(SAR_INVALIDHANDLEERR)),
        }
    }

    fn app_mut(&mut self, h: usize) -> Res<&mut Application> {
        match self.objects.get_mut(&h) {
            Some(Object::Application(a)) => Ok(a),
            _ => Err(Fail::Sar(SAR_INVALIDHANDLEERR)),
        }
    }

    fn container(&self, h: usize) -> Res<&Container> {
        match self.objects.get(&h) {
            Some(Object::Container(c)) => Ok(c),
            _ => Err(Fail::Sar(SAR_INVALIDHANDLEERR)),
        }
    }

    /// The file key behind a device handle, checked to be the same key still.
    fn device_token(&self, h: usize) -> Res<(FileToken, String)> {
        let d = self.device(h)?;
        let t = FileToken::open(&d.path).map_err(|e| match e {
            TokenError::Removed => Fail::Sar(SAR_DEVICE_REMOVED),
            e => Fail::Token(e),
        })?;
        if t.info().serial != d.serial {
            return Err(Fail::Sar(SAR_DEVICE_REMOVED));
        }
        Ok((t, d.serial.clone()))
    }

    fn app_token(&self, h: usize) -> Res<(FileToken, Option<Pin>)> {
        let a = self.app(h)?;
        Ok((self.device_token(a.device)?.0, a.user_pin.clone()))
    }

    /// `(file key, verified PIN, container name)` of a container handle.
    fn container_token(&self, h: usize) -> Res<(FileToken, Option<Pin>, String)> {
        let c = self.container(h)?;
        let (t, pin) = self.app_token(c.app)?;
        Ok((t, pin, c.name.clone()))
    }
}

/// Run `f` in a session of the file key opened with the verified PIN.
fn with_session<T>(mut token: FileToken, pin: Option<Pin>, f: impl FnOnce(&mut dyn Session) -> Res<T>) -> Res<T> {
    let pin = pin.ok_or(Fail::Sar(SAR_USER_NOT_LOGGED_IN))?;
    let mut s = token.login(&pin)?;
    f(s.as_mut())
}

fn pin_kind(t: Ulong) -> Res<PinKind> {
    match t {
        USER_TYPE => Ok(PinKind::User),
        ADMIN_TYPE => Ok(PinKind::So),
        _ => Err(Fail::Sar(SAR_USER_TYPE_INVALID)),
    }
}

fn usage(sign: bool) -> KeyUsage {
    if sign { KeyUsage::Sign } else { KeyUsage::Encrypt }
}

// --- device management -----------------------------------------------------------------

/// `SKF_EnumDev`: the device names as a multi-string.
pub fn enum_dev() -> Res<Vec<u8>> {
    Ok(multi_string(&device_names()?.into_iter().collect::<Vec<_>>()))
}

/// `SKF_ConnectDev`.
pub fn connect_dev(name: &str) -> Res<usize> {
    if !valid_name(name) {
        return Err(Fail::Sar(SAR_INVALIDPARAMERR));
    }
    let path = key_dir()?.join(format!("{name}.{EXTENSION}"));
    let t = FileToken::open(&path).map_err(|e| match e {
        TokenError::Removed => Fail::Sar(SAR_DEVICE_REMOVED),
        e => Fail::Token(e),
    })?;
    Ok(table().insert(Object::Device(Device { path, serial: t.info().serial })))
}

/// `SKF_DisConnectDev` (also closes its applications and containers).
pub fn disconnect_dev(h: usize) -> Res<()> {
    let mut t = table();
    t.device(h)?;
    t.remove_tree(h);
    Ok(())
}

/// `SKF_GetDevInfo`.
pub fn dev_info(h: usize) -> Res<DevInfo> {
    let (token, serial) = table().device_token(h)?;
    let info = token.info();
    let mut d = DevInfo { version: Version { major: 1, minor: 0 }, ..DevInfo::default() };
    set_field_text(&mut d.manufacturer, &info.manufacturer);
    set_field_text(&mut d.issuer, &info.model);
    set_field_text(&mut d.label, &info.label);
    set_field_text(&mut d.serial_number, &serial);
    d.hw_version = Version { major: 1, minor: 0 };
    d.firmware_version = Version { major: 1, minor: 0 };
    d.alg_asym_cap = SGD_SM2_1 | SGD_SM2_3;
    d.max_ecc_buffer_size = MAX_ECC_CIPHER_LEN as Ulong;
    Ok(d)
}

/// `SKF_WaitForDevEvent`: block until a key file appears or goes away (compared with what
/// the previous call saw; the first call starts from the present list). `Err` when
/// cancelled by [`cancel_wait`].
pub fn wait_for_dev_event() -> Res<(String, Ulong)> {
    static SEEN: Mutex<Option<BTreeSet<String>>> = Mutex::new(None);
    let generation = CANCEL.load(Ordering::SeqCst);
    loop {
        let now = device_names()?;
        {
            let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
            let before = seen.get_or_insert_with(|| now.clone());
            if let Some(added) = now.difference(before).next().cloned() {
                before.insert(added.clone());
                return Ok((added, EVENT_INSERTED));
            }
            if let Some(removed) = before.difference(&now).next().cloned() {
                before.remove(&removed);
                return Ok((removed, EVENT_REMOVED));
            }
        }
        std::thread::sleep(EVENT_POLL);
        if CANCEL.load(Ordering::SeqCst) != generation {
            return Err(Fail::Sar(SAR_NOT_EVENTERR));
        }
    }
}

static CANCEL: AtomicU64 = AtomicU64::new(0);

/// `SKF_CancelWaitForDevEvent`: every wait in progress returns.
pub fn cancel_wait() {
    CANCEL.fetch_add(1, Ordering::SeqCst);
}

// --- applications and PINs -------------------------------------------------------------

/// `SKF_EnumApplication`.
pub fn enum_application(dev: usize) -> Res<Vec<u8>> {
    table().device_token(dev)?;
    Ok(multi_string(&[APPLICATION]))
}

/// `SKF_OpenApplication`.
pub fn open_application(dev: usize, name: &str) -> Res<usize> {
    let mut t = table();
    t.device_token(dev)?;
    if name != APPLICATION {
        return Err(Fail::Sar(SAR_APPLICATION_NOT_EXISTS));
    }
    Ok(t.insert(Object::Application(Application { device: dev, user_pin: None })))
}

/// `SKF_CloseApplication`.
pub fn close_application(app: usize) -> Res<()> {
    let mut t = table();
    t.app(app)?;
    t.remove_tree(app);
    Ok(())
}

/// `SKF_VerifyPIN`. The user PIN opens the file key and is kept for the application; the
/// SO PIN cannot be checked on its own by a file key (it has no separate SO login), so
/// `ADMIN_TYPE` is `SAR_NOTSUPPORTYETERR` — `SKF_UnblockPIN` takes the SO PIN directly.
pub fn verify_pin(app: usize, pin_type: Ulong, pin: Pin) -> Res<()> {
    if pin_kind(pin_type)? == PinKind::So {
        return Err(Fail::Sar(SAR_NOTSUPPORTYETERR));
    }
    let (mut token, _) = table().app_token(app)?;
    drop(token.login(&pin)?);
    table().app_mut(app)?.user_pin = Some(pin);
    Ok(())
}

/// `SKF_ChangePIN`. A logged-in application stays logged in with the new user PIN.
pub fn change_pin(app: usize, pin_type: Ulong, old: &Pin, new: Pin) -> Res<()> {
    let kind = pin_kind(pin_type)?;
    let (mut token, _) = table().app_token(app)?;
    token.change_pin(kind, old, &new)?;
    let mut t = table();
    let a = t.app_mut(app)?;
    if kind == PinKind::User && a.user_pin.is_some() {
        a.user_pin = Some(new);
    }
    Ok(())
}

/// `SKF_GetPINInfo`: `(max, remaining, is_default)`.
pub fn pin_info(app: usize, pin_type: Ulong) -> Res<(Ulong, Ulong, bool)> {
    let (mut token, _) = table().app_token(app)?;
    let i = token.pin_info(pin_kind(pin_type)?)?;
    Ok((Ulong::from(i.max_retries), Ulong::from(i.retries_left), i.is_default))
}

/// `SKF_UnblockPIN`.
pub fn unblock_pin(app: usize, so: &Pin, new_user: &Pin) -> Res<()> {
    let (mut token, _) = table().app_token(app)?;
    Ok(token.unblock_pin(so, new_user)?)
}

/// `SKF_ClearSecureState`: forget the verified PIN.
pub fn clear_secure_state(app: usize) -> Res<()> {
    table().app_mut(app)?.user_pin = None;
    Ok(())
}

// --- containers ------------------------------------------------------------------------

/// `SKF_EnumContainer`.
pub fn enum_container(app: usize) -> Res<Vec<u8>> {
    let (mut token, _) = table().app_token(app)?;
    let names: Vec<String> = token.containers()?.into_iter().map(|c| c.name).collect();
    Ok(multi_string(&names))
}

/// `SKF_CreateContainer` (needs the verified user PIN).
pub fn create_container(app: usize, name: &str) -> Res<usize> {
    let (token, pin) = table().app_token(app)?;
    with_session(token, pin, |s| Ok(s.create_container(name)?))?;
    Ok(table().insert(Object::Container(Container { app, name: name.to_string() })))
}

/// `SKF_DeleteContainer` (needs the verified user PIN).
pub fn delete_container(app: usize, name: &str) -> Res<()> {
    let (token, pin) = table().app_token(app)?;
    with_session(token, pin, |s| Ok(s.delete_container(name)?))
}

/// `SKF_OpenContainer`: `SAR_FILE_NOT_EXIST` for an unknown name.
pub fn open_container(app: usize, name: &str) -> Res<usize> {
    let (mut token, _) = table().app_token(app)?;
    if !token.containers()?.iter().any(|c| c.name == name) {
        return Err(Fail::Sar(SAR_FILE_NOT_EXIST));
    }
    Ok(table().insert(Object::Container(Container { app, name: name.to_string() })))
}

/// `SKF_CloseContainer`.
pub fn close_container(h: usize) -> Res<()> {
    let mut t = table();
    t.container(h)?;
    t.remove_tree(h);
    Ok(())
}

/// `SKF_GetContainerType`: ECC when it holds an SM2 key pair, RSA for RSA, else empty.
pub fn container_type(h: usize) -> Res<Ulong> {
    let (mut token, _, name) = table().container_token(h)?;
    let c = token.containers()?.into_iter().find(|c| c.name == name).ok_or(Fail::Sar(SAR_DEVICE_REMOVED))?;
    let algs: Vec<Algorithm> = [&c.sign, &c.encrypt].into_iter().flatten().map(|s| s.algorithm).collect();
    Ok(if algs.contains(&Algorithm::Sm2) {
        CONTAINER_ECC
    } else if algs.iter().any(|a| matches!(a, Algorithm::Rsa { .. })) {
        CONTAINER_RSA
    } else {
        CONTAINER_EMPTY
    })
}

/// `SKF_ImportCertificate` (needs the verified user PIN; the certificate must match the
/// key pair).
pub fn import_certificate(h: usize, sign: bool, der: &[u8]) -> Res<()> {
    let (token, pin, name) = table().container_token(h)?;
    with_session(token, pin, |s| Ok(s.import_certificate(&name, usage(sign), der)?))
}

/// `SKF_ExportCertificate`: `SAR_CERTNOTFOUNTERR` when the slot has none.
pub fn export_certificate(h: usize, sign: bool) -> Res<Vec<u8>> {
    let (mut token, _, name) = table().container_token(h)?;
    let c = token.containers()?.into_iter().find(|c| c.name == name).ok_or(Fail::Sar(SAR_DEVICE_REMOVED))?;
    c.slot(usage(sign)).and_then(|s| s.certificate.clone()).ok_or(Fail::Sar(SAR_CERTNOTFOUNTERR))
}

/// `SKF_ExportPublicKey`: an `ECCPUBLICKEYBLOB` (SM2 keys only).
pub fn export_public_key(h: usize, sign: bool) -> Res<EccPublicKeyBlob> {
    let (mut token, _, name) = table().container_token(h)?;
    match token.public_key(&name, usage(sign)) {
        Ok(kb_crypto::PublicKey::Sm2(k)) => Ok(EccPublicKeyBlob::from_sm2(&k)),
        Ok(_) => Err(Fail::Sar(SAR_NOTSUPPORTYETERR)),
        Err(TokenError::NotFound(_)) => Err(Fail::Sar(SAR_KEYNOTFOUNTERR)),
        Err(e) => Err(e.into()),
    }
}

/// `SKF_GenECCKeyPair`: a new SM2 signing key pair in the container (needs the PIN).
pub fn gen_ecc_key_pair(h: usize, alg: Ulong) -> Res<EccPublicKeyBlob> {
    if alg != SGD_SM2_1 {
        return Err(Fail::Sar(SAR_NOTSUPPORTYETERR));
    }
    let (token, pin, name) = table().container_token(h)?;
    let key = with_session(token, pin, |s| Ok(s.generate_key_pair(&name, KeyUsage::Sign, Algorithm::Sm2)?))?;
    match key {
        kb_crypto::PublicKey::Sm2(k) => Ok(EccPublicKeyBlob::from_sm2(&k)),
        _ => Err(Fail::Sar(SAR_FAIL)),
    }
}

/// `SKF_ECCSignData`: sign the 32-byte `e = SM3(ZA ‖ M)` with the signing key.
pub fn ecc_sign(h: usize, e: &[u8]) -> Res<EccSignatureBlob> {
    if e.len() != 32 {
        return Err(Fail::Sar(SAR_INDATALENERR));
    }
    let (token, pin, name) = table().container_token(h)?;
    let der = with_session(token, pin, |s| Ok(s.sign_digest(&name, KeyUsage::Sign, &SignatureScheme::sm2_default(), e)?))?;
    let sig = Sm2Signature::from_der(&der).map_err(|e| Fail::Token(e.into()))?;
    Ok(EccSignatureBlob { r: pad64(&sig.r), s: pad64(&sig.s) })
}

/// `SKF_ECCDecrypt` (vendor extension, GmSSL's signature): decrypt an `ECCCIPHERBLOB`
/// with the container's encryption key.
pub fn ecc_decrypt(h: usize, blob: &[u8]) -> Res<Zeroizing<Vec<u8>>> {
    let ct = decode_cipher_blob(blob).map_err(|_| Fail::Sar(SAR_INDATAERR))?;
    let der = ct.to_der().map_err(|e| Fail::Token(e.into()))?;
    let (token, pin, name) = table().container_token(h)?;
    with_session(token, pin, |s| Ok(s.decrypt(&name, KeyUsage::Encrypt, &der, RsaPadding::Pkcs1v15)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_typed_and_forgotten() {
        assert_eq!(disconnect_dev(12345).unwrap_err().code(), SAR_INVALIDHANDLEERR);
        let d = table().insert(Object::Device(Device { path: "/nonexistent.kbkey".into(), serial: "x".into() }));
        let a = table().insert(Object::Application(Application { device: d, user_pin: Some(Pin::new("123456")) }));
        let c = table().insert(Object::Container(Container { app: a, name: "c".into() }));
        // A handle of another kind is invalid, not misread.
        assert_eq!(close_application(d).unwrap_err().code(), SAR_INVALIDHANDLEERR);
        assert_eq!(close_container(a).unwrap_err().code(), SAR_INVALIDHANDLEERR);
        // A device whose file is gone is removed.
        assert_eq!(dev_info(d).err().map(|e| e.code()), Some(SAR_DEVICE_REMOVED));
        disconnect_dev(d).unwrap();
        for h in [d, a, c] {
            assert!(!table().objects.contains_key(&h));
        }
    }

    #[test]
    fn pin_failures_carry_retries() {
        assert_eq!(Fail::Token(TokenError::WrongPin { retries_left: 4 }).retries(), Some(4));
        assert_eq!(Fail::Token(TokenError::PinLocked).retries(), Some(0));
        assert_eq!(Fail::Token(TokenError::PinLocked).code(), SAR_PIN_LOCKED);
        assert_eq!(Fail::Sar(SAR_FAIL).retries(), None);
        assert_eq!(pin_kind(7).unwrap_err().code(), SAR_USER_TYPE_INVALID);
    }
}
