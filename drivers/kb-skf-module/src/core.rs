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

use crate::dev_auth;
use kb_crypto::SignatureScheme;
use kb_crypto::rsa::RsaPadding;
use kb_crypto::sm2::Sm2Signature;
use kb_crypto::sm3::{Digest, Sm3};
use kb_crypto::sm4::{self, Padding, Transform};
use kb_filekey::{EXTENSION, FileToken};
use kb_skf::abi::*;
use kb_token::{Session, Token, TokenError};
use kb_types::{Algorithm, KeyUsage, Pin, PinKind};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
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
    /// The last `SKF_GenRandom` output (at most 16 bytes): the challenge of the next
    /// `SKF_DevAuth`, which consumes it.
    challenge: Option<Zeroizing<Vec<u8>>>,
    /// `SKF_DevAuth` succeeded on this handle.
    authenticated: bool,
}

/// A symmetric key from `SKF_SetSymmKey` and the operation `SKF_EncryptInit` or
/// `SKF_DecryptInit` started with it.
struct SessionKey {
    device: usize,
    key: Zeroizing<[u8; 16]>,
    alg: Ulong,
    op: Option<CipherOp>,
}

struct CipherOp {
    transform: Box<dyn Transform>,
    encrypt: bool,
    padded: bool,
    /// Input bytes the transform holds back (not yet output).
    held: usize,
}

/// An SM3 computation from `SKF_DigestInit`; `None` once finished.
struct HashObj {
    device: usize,
    hasher: Option<Sm3>,
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
    SessionKey(SessionKey),
    Hash(HashObj),
}

#[derive(Default)]
struct Table {
    next: usize,
    objects: HashMap<usize, Object>,
    /// `SKF_LockDev`: the device handle holding each key file's lock.
    locks: HashMap<PathBuf, usize>,
}

fn table_lock() -> &'static Mutex<Table> {
    static T: OnceLock<Mutex<Table>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(Table { next: 0x0005_0000, ..Table::default() }))
}

fn table() -> std::sync::MutexGuard<'static, Table> {
    table_lock().lock().unwrap_or_else(|e| e.into_inner())
}

/// Signalled when a device lock is released.
static UNLOCKED: Condvar = Condvar::new();

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
                Object::SessionKey(k) => k.device == h,
                Object::Hash(x) => x.device == h,
                Object::Device(_) => false,
            })
            .map(|(k, _)| *k)
            .collect();
        if let Some(Object::Device(d)) = self.objects.remove(&h)
            && self.locks.get(&d.path) == Some(&h)
        {
            self.locks.remove(&d.path);
            UNLOCKED.notify_all();
        }
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

    fn device_mut(&mut self, h: usize) -> Res<&mut Device> {
        match self.objects.get_mut(&h) {
            Some(Object::Device(d)) => Ok(d),
            _ => Err(Fail::Sar(SAR_INVALIDHANDLEERR)),
        }
    }

    fn session_key(&mut self, h: usize) -> Res<&mut SessionKey> {
        match self.objects.get_mut(&h) {
            Some(Object::SessionKey(k)) => Ok(k),
            _ => Err(Fail::Sar(SAR_INVALIDHANDLEERR)),
        }
    }

    fn hash(&mut self, h: usize) -> Res<&mut HashObj> {
        match self.objects.get_mut(&h) {
            Some(Object::Hash(x)) => Ok(x),
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
    Ok(table().insert(Object::Device(Device { path, serial: t.info().serial, challenge: None, authenticated: false })))
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
    d.alg_sym_cap = SGD_SM4_ECB | SGD_SM4_CBC;
    d.alg_asym_cap = SGD_SM2_1 | SGD_SM2_3;
    d.alg_hash_cap = SGD_SM3;
    d.dev_auth_alg_id = SGD_SM4_ECB;
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

/// `SKF_GetDevState`: whether the key file `name` is present.
pub fn dev_state(name: &str) -> Res<Ulong> {
    if !valid_name(name) {
        return Err(Fail::Sar(SAR_INVALIDPARAMERR));
    }
    Ok(if device_names()?.contains(name) { DEV_PRESENT_STATE } else { DEV_ABSENT_STATE })
}

/// `SKF_LockDev`: take the device for this handle alone among the handles of this
/// process, waiting up to `timeout_ms` for another handle to unlock it (`0xFFFFFFFF` =
/// no limit); `SAR_TIMEOUTERR` after that. Calls through other handles are not blocked:
/// every call is atomic on the key file already (the file key's own lock).
pub fn lock_dev(h: usize, timeout_ms: Ulong) -> Res<()> {
    let deadline = (timeout_ms != Ulong::MAX).then(|| Instant::now() + Duration::from_millis(timeout_ms.into()));
    let mut t = table();
    let path = t.device(h)?.path.clone();
    loop {
        match t.locks.get(&path) {
            Some(o) if *o != h && t.objects.contains_key(o) => {}
            _ => {
                t.locks.insert(path, h);
                return Ok(());
            }
        }
        let left = match deadline {
            None => Duration::from_secs(3600),
            Some(d) => d.checked_duration_since(Instant::now()).filter(|l| !l.is_zero()).ok_or(Fail::Sar(SAR_TIMEOUTERR))?,
        };
        t = UNLOCKED.wait_timeout(t, left).unwrap_or_else(|e| e.into_inner()).0;
        t.device(h)?;
    }
}

/// `SKF_UnlockDev`: release the lock this handle holds (nothing to do when it holds none).
pub fn unlock_dev(h: usize) -> Res<()> {
    let mut t = table();
    let path = t.device(h)?.path.clone();
    if t.locks.get(&path) == Some(&h) {
        t.locks.remove(&path);
        UNLOCKED.notify_all();
    }
    Ok(())
}

/// Largest `SKF_GenRandom` request.
pub const MAX_RANDOM: usize = 1024;

/// `SKF_GenRandom`: `len` random bytes; the first 16 (or all, if fewer) become the
/// challenge of the next `SKF_DevAuth` on this handle.
pub fn gen_random(h: usize, len: usize) -> Res<Zeroizing<Vec<u8>>> {
    if len == 0 || len > MAX_RANDOM {
        return Err(Fail::Sar(SAR_INDATALENERR));
    }
    let mut r = Zeroizing::new(vec![0u8; len]);
    kb_crypto::rng::fill(&mut r).map_err(|_| Fail::Sar(SAR_GENRANDERR))?;
    table().device_mut(h)?.challenge = Some(Zeroizing::new(r[..len.min(16)].to_vec()));
    Ok(r)
}

/// `SKF_DevAuth`: `auth` must be `SM4-ECB(device-auth key, challenge ‖ 00…)` for the
/// challenge of the last `SKF_GenRandom` (one attempt per random). Wrong data, or no
/// random first, is `SAR_FAIL` and leaves the handle unauthenticated.
pub fn dev_auth(h: usize, auth: &[u8]) -> Res<()> {
    let (_, serial) = table().device_token(h)?;
    let mut t = table();
    let d = t.device_mut(h)?;
    d.authenticated = false;
    let challenge = d.challenge.take().ok_or(Fail::Sar(SAR_FAIL))?;
    if auth.len() != 16 {
        return Err(Fail::Sar(SAR_INDATALENERR));
    }
    let key = dev_auth::load(&d.path, &serial).map_err(|_| Fail::Sar(SAR_FILEERR))?;
    if !dev_auth::check(&key, &challenge, auth) {
        return Err(Fail::Sar(SAR_FAIL));
    }
    d.authenticated = true;
    Ok(())
}

/// `SKF_ChangeDevAuthKey`: a new 16-byte SM4 device-authentication key, after a
/// successful `SKF_DevAuth` on this handle (else `SAR_USER_NOT_LOGGED_IN`).
pub fn change_dev_auth_key(h: usize, key: &[u8]) -> Res<()> {
    let key: &[u8; 16] = key.try_into().map_err(|_| Fail::Sar(SAR_INDATALENERR))?;
    let (_, serial) = table().device_token(h)?;
    let t = table();
    let d = t.device(h)?;
    if !d.authenticated {
        return Err(Fail::Sar(SAR_USER_NOT_LOGGED_IN));
    }
    dev_auth::store(&d.path, &serial, key).map_err(|_| Fail::Sar(SAR_FILEERR))
}

// --- symmetric keys and hashes ---------------------------------------------------------

/// `SKF_SetSymmKey`: a 16-byte SM4 key for `SGD_SM4_ECB` or `SGD_SM4_CBC`.
pub fn set_symm_key(dev: usize, key: &[u8; 16], alg: Ulong) -> Res<usize> {
    if alg != SGD_SM4_ECB && alg != SGD_SM4_CBC {
        return Err(Fail::Sar(SAR_NOTSUPPORTYETERR));
    }
    let mut t = table();
    t.device(dev)?;
    Ok(t.insert(Object::SessionKey(SessionKey { device: dev, key: Zeroizing::new(*key), alg, op: None })))
}

/// `SKF_EncryptInit` / `SKF_DecryptInit`: start an operation with the key (replacing
/// any unfinished one).
pub fn cipher_init(h: usize, param: &BlockCipherParam, encrypt: bool) -> Res<()> {
    let mut t = table();
    let k = t.session_key(h)?;
    let padding = match param.padding_type {
        PADDING_NONE => Padding::None,
        PADDING_PKCS5 => Padding::Pkcs7,
        _ => return Err(Fail::Sar(SAR_INVALIDPARAMERR)),
    };
    let iv = || -> Res<[u8; 16]> {
        if param.iv_len != 16 {
            return Err(Fail::Sar(SAR_INVALIDPARAMERR));
        }
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&param.iv[..16]);
        Ok(iv)
    };
    let transform: Box<dyn Transform> = match (k.alg, encrypt) {
        (SGD_SM4_ECB, true) => Box::new(sm4::EcbEncryptor::new(&k.key, padding)),
        (SGD_SM4_ECB, false) => Box::new(sm4::EcbDecryptor::new(&k.key, padding)),
        (_, true) => Box::new(sm4::CbcEncryptor::new(&k.key, &iv()?, padding)),
        (_, false) => Box::new(sm4::CbcDecryptor::new(&k.key, &iv()?, padding)),
    };
    k.op = Some(CipherOp { transform, encrypt, padded: padding == Padding::Pkcs7, held: 0 });
    Ok(())
}

/// Which call of an operation: the one-shot `SKF_Encrypt`/`SKF_Decrypt`, an `…Update`
/// or the `…Final`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// All the data at once; the operation ends.
    Whole,
    /// More data; the operation goes on.
    Update,
    /// No more data; the operation ends.
    Final,
}

/// The most bytes `step` with `len` input bytes can output (for the two-call
/// convention); `SAR_NOTINITIALIZEERR` without an operation of that direction.
pub fn cipher_out_len(h: usize, encrypt: bool, step: Step, len: usize) -> Res<usize> {
    let mut t = table();
    let op = t.session_key(h)?.op.as_ref().filter(|o| o.encrypt == encrypt).ok_or(Fail::Sar(SAR_NOTINITIALIZEERR))?;
    let total = op.held + len;
    Ok(match step {
        Step::Update => total / 16 * 16,
        Step::Whole | Step::Final if op.padded && encrypt => (total / 16 + 1) * 16,
        Step::Whole | Step::Final => total,
    })
}

/// Run `step` of the operation on `input`. `Whole` and `Final` end it (also on failure:
/// no padding and a partial block is `SAR_INDATALENERR`, bad padding `SAR_DECRYPTPADERR`).
pub fn cipher(h: usize, encrypt: bool, step: Step, input: &[u8]) -> Res<Zeroizing<Vec<u8>>> {
    let mut t = table();
    let k = t.session_key(h)?;
    let op = k.op.as_mut().filter(|o| o.encrypt == encrypt).ok_or(Fail::Sar(SAR_NOTINITIALIZEERR))?;
    let mut out = Zeroizing::new(Vec::with_capacity(input.len() + 32));
    op.transform.update(input, &mut out);
    // The transform never outputs more than it was given.
    op.held = (op.held + input.len()).saturating_sub(out.len());
    if step == Step::Update {
        return Ok(out);
    }
    let mut op = k.op.take().ok_or(Fail::Sar(SAR_NOTINITIALIZEERR))?;
    if !op.padded && op.held % 16 != 0 {
        return Err(Fail::Sar(SAR_INDATALENERR));
    }
    op.transform.finish(&mut out).map_err(|_| Fail::Sar(if encrypt { SAR_INDATALENERR } else { SAR_DECRYPTPADERR }))?;
    Ok(out)
}

/// `SKF_DigestInit`: SM3, started with `ZA` of `public_key` and `id` when both are given
/// (GM/T 0009's preprocessing for SM2 signatures), plain SM3 otherwise.
pub fn digest_init(dev: usize, alg: Ulong, public_key: Option<&EccPublicKeyBlob>, id: &[u8]) -> Res<usize> {
    if alg != SGD_SM3 {
        return Err(Fail::Sar(SAR_NOTSUPPORTYETERR));
    }
    let hasher = match public_key {
        Some(pk) if !id.is_empty() => pk
            .to_sm2()
            .map_err(|_| Fail::Sar(SAR_INVALIDPARAMERR))?
            .digest_hasher(id)
            .map_err(|_| Fail::Sar(SAR_INVALIDPARAMERR))?,
        _ => Sm3::new(),
    };
    let mut t = table();
    t.device(dev)?;
    Ok(t.insert(Object::Hash(HashObj { device: dev, hasher: Some(hasher) })))
}

/// `SKF_DigestUpdate` (`finish` false) or the end of `SKF_Digest`/`SKF_DigestFinal`
/// (`finish` true: the 32-byte hash, after which the object is spent).
pub fn digest(h: usize, data: &[u8], finish: bool) -> Res<Option<[u8; 32]>> {
    let mut t = table();
    let x = t.hash(h)?;
    let hasher = x.hasher.as_mut().ok_or(Fail::Sar(SAR_NOTINITIALIZEERR))?;
    hasher.update(data);
    if !finish {
        return Ok(None);
    }
    Ok(x.hasher.take().map(|h| h.finalize().into()))
}

/// `SKF_ECCVerify` / `SKF_ExtECCVerify`: check an SM2 signature over the 32-byte `e`
/// with the given public key; a signature that does not verify is `SAR_FAIL`.
pub fn ecc_verify(dev: usize, public_key: &EccPublicKeyBlob, e: &[u8], sig: &EccSignatureBlob) -> Res<()> {
    table().device(dev)?;
    let e: &[u8; 32] = e.try_into().map_err(|_| Fail::Sar(SAR_INDATALENERR))?;
    let key = public_key.to_sm2().map_err(|_| Fail::Sar(SAR_INVALIDPARAMERR))?;
    let (r, s) = (unpad64(&sig.r), unpad64(&sig.s));
    let sig = Sm2Signature { r: r.map_err(|_| Fail::Sar(SAR_FAIL))?, s: s.map_err(|_| Fail::Sar(SAR_FAIL))? };
    key.verify_digest(e, &sig).map_err(|_| Fail::Sar(SAR_FAIL))
}

/// `SKF_CloseHandle`: a session key or hash handle.
pub fn close_handle(h: usize) -> Res<()> {
    let mut t = table();
    match t.objects.get(&h) {
        Some(Object::SessionKey(_) | Object::Hash(_)) => {
            t.objects.remove(&h);
            Ok(())
        }
        _ => Err(Fail::Sar(SAR_INVALIDHANDLEERR)),
    }
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

/// `SKF_ImportECCKeyPair`: an SM2 encryption key pair in an `ENVELOPEDKEYBLOB`, sealed
/// to the container's signing key, opened inside the file key (needs the verified PIN).
/// The slot gets the pair without a certificate (`SKF_ImportCertificate` adds it).
pub fn import_ecc_key_pair(h: usize, blob: &[u8]) -> Res<()> {
    let env = decode_enveloped_key_blob(blob)?;
    let (token, pin, name) = table().container_token(h)?;
    with_session(token, pin, |s| Ok(s.import_enveloped_key(&name, &env, None)?))
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
        let d = table().insert(Object::Device(Device {
            path: "/nonexistent.kbkey".into(),
            serial: "x".into(),
            challenge: None,
            authenticated: false,
        }));
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

    fn device() -> usize {
        table().insert(Object::Device(Device {
            path: "/nonexistent/x.kbkey".into(),
            serial: "x".into(),
            challenge: None,
            authenticated: false,
        }))
    }

    fn param(iv: Option<[u8; 16]>, padding: Ulong) -> BlockCipherParam {
        let mut p = BlockCipherParam { iv: [0; 32], iv_len: 0, padding_type: padding, feed_bit_len: 0 };
        if let Some(iv) = iv {
            p.iv[..16].copy_from_slice(&iv);
            p.iv_len = 16;
        }
        p
    }

    #[test]
    fn sm4_session_keys_one_shot_and_streamed() {
        let d = device();
        // GB/T 32907-2016 Appendix A, example 1.
        let k: [u8; 16] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10];
        let ecb = set_symm_key(d, &k, SGD_SM4_ECB).unwrap();
        assert_eq!(cipher(ecb, true, Step::Whole, &k).unwrap_err().code(), SAR_NOTINITIALIZEERR);
        cipher_init(ecb, &param(None, PADDING_NONE), true).unwrap();
        assert_eq!(cipher_out_len(ecb, true, Step::Whole, 16).unwrap(), 16);
        assert_eq!(cipher_out_len(ecb, false, Step::Whole, 16).unwrap_err().code(), SAR_NOTINITIALIZEERR);
        let ct = cipher(ecb, true, Step::Whole, &k).unwrap();
        assert_eq!(hex::encode(&*ct), "681edf34d206965e86b3e94f536e4246");
        // The one-shot call ended the operation; no padding and a partial block fails.
        assert_eq!(cipher(ecb, true, Step::Whole, &k).unwrap_err().code(), SAR_NOTINITIALIZEERR);
        cipher_init(ecb, &param(None, PADDING_NONE), true).unwrap();
        assert_eq!(cipher(ecb, true, Step::Whole, &k[..15]).unwrap_err().code(), SAR_INDATALENERR);

        // CBC with PKCS#5: streamed in odd pieces = one shot; decryption inverts it.
        let cbc = set_symm_key(d, &k, SGD_SM4_CBC).unwrap();
        assert_eq!(cipher_init(cbc, &param(None, PADDING_PKCS5), true).unwrap_err().code(), SAR_INVALIDPARAMERR);
        let iv = [7u8; 16];
        let msg: Vec<u8> = (0u8..45).collect();
        cipher_init(cbc, &param(Some(iv), PADDING_PKCS5), true).unwrap();
        assert_eq!(cipher_out_len(cbc, true, Step::Whole, 45).unwrap(), 48);
        let whole = cipher(cbc, true, Step::Whole, &msg).unwrap();
        cipher_init(cbc, &param(Some(iv), PADDING_PKCS5), true).unwrap();
        let mut streamed = Vec::new();
        for piece in msg.chunks(7) {
            let bound = cipher_out_len(cbc, true, Step::Update, piece.len()).unwrap();
            let out = cipher(cbc, true, Step::Update, piece).unwrap();
            assert!(out.len() <= bound && bound.is_multiple_of(16));
            streamed.extend_from_slice(&out);
        }
        assert_eq!(cipher_out_len(cbc, true, Step::Final, 0).unwrap(), 16);
        streamed.extend_from_slice(&cipher(cbc, true, Step::Final, &[]).unwrap());
        assert_eq!(streamed, *whole);
        cipher_init(cbc, &param(Some(iv), PADDING_PKCS5), false).unwrap();
        assert_eq!(*cipher(cbc, false, Step::Whole, &whole).unwrap(), msg);
        let mut bad = whole.to_vec();
        bad[47] ^= 1;
        cipher_init(cbc, &param(Some(iv), PADDING_PKCS5), false).unwrap();
        assert_eq!(cipher(cbc, false, Step::Whole, &bad).unwrap_err().code(), SAR_DECRYPTPADERR);
        assert_eq!(set_symm_key(d, &k, 0x0000_0101).unwrap_err().code(), SAR_NOTSUPPORTYETERR);

        // SM3 through a hash handle: GB/T 32905-2016 Appendix A, "abc".
        let h = digest_init(d, SGD_SM3, None, &[]).unwrap();
        digest(h, b"a", false).unwrap();
        let e = digest(h, b"bc", true).unwrap().unwrap();
        assert_eq!(hex::encode(e), "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
        assert_eq!(digest(h, b"", true).unwrap_err().code(), SAR_NOTINITIALIZEERR);
        close_handle(h).unwrap();
        assert_eq!(close_handle(h).unwrap_err().code(), SAR_INVALIDHANDLEERR);
        assert_eq!(close_handle(d).unwrap_err().code(), SAR_INVALIDHANDLEERR);
        // Disconnecting the device forgets its keys.
        disconnect_dev(d).unwrap();
        assert_eq!(cipher_init(cbc, &param(Some(iv), PADDING_NONE), true).unwrap_err().code(), SAR_INVALIDHANDLEERR);
    }

    #[test]
    fn device_lock_is_per_handle() {
        let (a, b) = (device(), device());
        lock_dev(a, 0).unwrap();
        lock_dev(a, 0).unwrap();
        assert_eq!(lock_dev(b, 10).unwrap_err().code(), SAR_TIMEOUTERR);
        // Released by unlocking, or by disconnecting the holder.
        unlock_dev(a).unwrap();
        lock_dev(b, 0).unwrap();
        let waiter = std::thread::spawn(move || lock_dev(a, Ulong::MAX));
        disconnect_dev(b).unwrap();
        waiter.join().unwrap().unwrap();
        disconnect_dev(a).unwrap();
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
