//! The file-type key (文件型设备): a software key kept in one file, `<name>.kbkey`.
//!
//! Format (versioned, [`FORMAT_VERSION`]; full description in
//! `docs/file-token-format.md`): a 48-byte header with an SM3 checksum over the whole
//! file, then a JSON body. Public data (label, serial, containers, public keys,
//! certificates, seals) is plain; every private key is PKCS#8 sealed with SM4-GCM under
//! a key derived from a random 256-bit data key, and the data key is wrapped twice —
//! under an Argon2id KEK from the user PIN and one from the SO PIN (parameters stored
//! with each wrap).
//!
//! Every operation re-reads the file (another process may have changed it); every
//! change takes an advisory lock, writes a temp file, fsyncs, renames it over the key
//! file and fsyncs the directory, so a crash leaves the old or the new state, never a
//! mix. A wrong PIN is counted on disk before [`TokenError::WrongPin`] is returned.
//!
//! Threat model, honestly: the retry counter only limits guessing *through KeyBridge*.
//! Anyone who can copy the file can guess offline, limited only by Argon2id's cost;
//! anyone who can write it can reset the counter or swap public data (the checksum
//! detects corruption, not tampering). Private keys stay confidential either way.

mod format;
mod store;
mod transport;

pub use format::{FORMAT_VERSION, KdfParams, MAX_CONTAINERS, MAX_NAME_CHARS, MAX_SEAL_BYTES, MAX_SEALS};
pub use transport::{DEFAULT_POLL, FileTransport};

use format::{Body, ContainerRecord, DATA_KEY_LEN, KeyRecord, SealRecord};
use kb_crypto::rsa::RsaPadding;
use kb_crypto::{CryptoError, PrivateKey, PublicKey, SignatureScheme};
use kb_token::{OpContext, Result, Session, Sm2EnvelopedKey, Token, TokenError, UserAuth};
use kb_types::{
    Algorithm, Capabilities, ContainerInfo, DeviceId, DeviceInfo, KeySlot, KeyUsage, Pin, PinInfo, PinKind, SealInfo,
    TransportKind, UserVerification,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use zeroize::Zeroizing;

/// File extension of key files (without the dot).
pub const EXTENSION: &str = "kbkey";
/// `DeviceInfo::manufacturer` of every file key.
pub const MANUFACTURER: &str = "KeyBridge";
/// `DeviceInfo::model` of every file key.
pub const MODEL: &str = "File Key v1";
/// Shortest PIN accepted (characters).
pub const PIN_MIN_CHARS: usize = 6;
/// Longest PIN accepted (characters).
pub const PIN_MAX_CHARS: usize = 32;
/// How long an operation waits for another process's lock before [`TokenError::Busy`].
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default user PIN tries.
pub const DEFAULT_USER_RETRIES: u8 = 6;
/// Default SO PIN tries.
pub const DEFAULT_SO_RETRIES: u8 = 10;

/// Algorithms a file key generates.
pub fn supported_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::Sm2, Algorithm::Rsa { bits: 2048 }, Algorithm::EcdsaP256]
}

/// Options for [`FileToken::create`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateOptions {
    /// Argon2id cost for both PINs (stored in the file).
    pub kdf: KdfParams,
    /// User PIN tries (1..=15).
    pub max_user_retries: u8,
    /// SO PIN tries (1..=15).
    pub max_so_retries: u8,
    /// Serial number (介质编号); `None` = `KBF-` and 16 random hex digits.
    pub serial: Option<String>,
    /// Mark both PINs as defaults the user should change (`PinInfo::is_default`) until
    /// they are changed. Set to `false` when the user chose the PINs themselves.
    pub pins_are_default: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            kdf: KdfParams::DEFAULT,
            max_user_retries: DEFAULT_USER_RETRIES,
            max_so_retries: DEFAULT_SO_RETRIES,
            serial: None,
            pins_are_default: true,
        }
    }
}

impl CreateOptions {
    /// Defaults with [`KdfParams::weak_for_tests`]: **insecure**, for tests only.
    pub fn weak_for_tests() -> Self {
        CreateOptions { kdf: KdfParams::weak_for_tests(), ..Self::default() }
    }
}

/// The file key's PIN policy: 6 to 32 characters.
pub const PIN_POLICY: kb_token::PinPolicy = kb_token::PinPolicy { min_chars: PIN_MIN_CHARS, max_chars: PIN_MAX_CHARS };

/// Check a new PIN against [`PIN_POLICY`].
pub fn check_pin_policy(pin: &Pin) -> Result<()> {
    PIN_POLICY.check(pin)
}

fn invalid(what: &'static str) -> TokenError {
    TokenError::Crypto(CryptoError::InvalidParameter(what))
}

/// A file-type key. Holds no secrets itself: the data key exists only inside a
/// [`Session`] from [`Token::login`].
#[derive(Debug, Clone)]
pub struct FileToken {
    path: PathBuf,
    info: DeviceInfo,
    lock_timeout: Duration,
    /// The user PIN verified moments ago (see [`Unlocked`]).
    unlocked: Option<Unlocked>,
    /// Logins that ran the KDF (for tests of the fast path).
    slow_logins: u64,
}

/// How long a verified user PIN spares Argon2id for the next login with the same PIN.
pub const UNLOCKED_TTL: Duration = Duration::from_secs(60);

/// A user PIN verified moments ago, so that the next login with the same PIN (the
/// device service logs in for every operation, with the PIN from its PIN cache) need
/// not run Argon2id (64 MiB, ~0.2 s) again. It is bound to the exact user-PIN record on
/// disk — salt, wrapped key and tries left — so a PIN change, an unblock or a wrong try
/// anywhere (another process included) makes it miss and the slow path decides. The PIN
/// itself is not kept: only SM3(nonce ‖ PIN) with a random nonce, to recognise it.
/// Nothing here is weaker than the service's PIN cache, which holds the PIN itself.
///
/// It also keeps the private keys opened under that data key ([`OpenedKeys`]): parsing a
/// key (PKCS#8, the public point, `(1 + d)^−1`) cost 3× the signature itself.
#[derive(Clone)]
struct Unlocked {
    salt: Vec<u8>,
    wrapped_key: Vec<u8>,
    retries_left: u8,
    nonce: [u8; 32],
    tag: Zeroizing<Vec<u8>>,
    data_key: Zeroizing<[u8; DATA_KEY_LEN]>,
    at: std::time::Instant,
    keys: OpenedKeys,
}

/// How many opened private keys an [`Unlocked`] keeps (a key file has a few containers
/// with two slots each); the least recently used goes first.
const OPENED_KEYS: usize = 8;

/// Private keys opened under an [`Unlocked`]'s data key, each with the record it was
/// opened from (the sealed key and the public key its seal is bound to): a key is used
/// again only for exactly that record, so a key replaced, re-imported or deleted in the
/// file (by this process or another), or a record altered, misses.
/// They live and go with the data key that opens them anyway (the TTL, a wrong PIN, a
/// PIN change), so keeping them adds nothing an attacker reading memory lacks.
#[derive(Clone, Default)]
struct OpenedKeys(Arc<Mutex<KeySet>>);

#[derive(Default)]
struct KeySet {
    keys: Vec<OpenedKey>,
    /// Keys opened from their sealed records (for tests of the fast path).
    openings: u64,
}

struct OpenedKey {
    container: String,
    usage: KeyUsage,
    record: KeyRecordId,
    key: Arc<PrivateKey>,
}

/// What a key was opened from: its slot record's public key and sealed private key.
struct KeyRecordId {
    public_key: Vec<u8>,
    sealed: Vec<u8>,
}

impl KeyRecordId {
    fn matches(&self, rec: &KeyRecord) -> bool {
        self.sealed == rec.private_key && self.public_key == rec.public_key
    }
}

impl OpenedKeys {
    fn set(&self) -> std::sync::MutexGuard<'_, KeySet> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, container: &str, usage: KeyUsage, rec: &KeyRecord) -> Option<Arc<PrivateKey>> {
        let keys = &mut self.set().keys;
        let i = keys.iter().position(|k| k.usage == usage && k.container == container && k.record.matches(rec))?;
        let k = keys.remove(i);
        let key = Arc::clone(&k.key);
        keys.push(k);
        Some(key)
    }

    fn put(&self, container: &str, usage: KeyUsage, rec: &KeyRecord, key: &Arc<PrivateKey>) {
        let mut set = self.set();
        set.openings += 1;
        let keys = &mut set.keys;
        keys.retain(|k| !(k.usage == usage && k.container == container));
        if keys.len() >= OPENED_KEYS {
            keys.remove(0);
        }
        let record = KeyRecordId { public_key: rec.public_key.clone(), sealed: rec.private_key.clone() };
        keys.push(OpenedKey { container: container.to_owned(), usage, record, key: Arc::clone(key) });
    }
}

impl std::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unlocked(REDACTED)")
    }
}

impl Unlocked {
    fn tag(nonce: &[u8; 32], pin: &Pin) -> Zeroizing<Vec<u8>> {
        let mut h = kb_crypto::Hasher::new(kb_types::HashAlgorithm::Sm3);
        h.update(nonce);
        h.update(pin.expose());
        Zeroizing::new(h.finish())
    }

    fn new(rec: &format::PinRecord, pin: &Pin, data_key: &Zeroizing<[u8; DATA_KEY_LEN]>) -> Option<Self> {
        let nonce = kb_crypto::rng::random_array::<32>().ok()?;
        Some(Unlocked {
            salt: rec.salt.clone(),
            wrapped_key: rec.wrapped_key.clone(),
            retries_left: rec.retries_left,
            tag: Self::tag(&nonce, pin),
            nonce,
            data_key: data_key.clone(),
            at: std::time::Instant::now(),
            keys: OpenedKeys::default(),
        })
    }

    fn matches(&self, rec: &format::PinRecord, pin: &Pin) -> bool {
        use subtle::ConstantTimeEq;
        self.at.elapsed() < UNLOCKED_TTL
            && self.salt == rec.salt
            && self.wrapped_key == rec.wrapped_key
            && self.retries_left == rec.retries_left
            && bool::from(Self::tag(&self.nonce, pin).as_slice().ct_eq(self.tag.as_slice()))
    }
}

impl FileToken {
    /// A handle on a key file whose body was just read or written.
    fn handle(path: PathBuf, body: &Body) -> FileToken {
        FileToken { info: device_info(&path, body), path, lock_timeout: DEFAULT_LOCK_TIMEOUT, unlocked: None, slow_logins: 0 }
    }

    /// How many logins ran the slow KDF (the others were recognised as the PIN verified
    /// moments ago). For tests and benchmarks.
    #[doc(hidden)]
    pub fn slow_logins(&self) -> u64 {
        self.slow_logins
    }

    /// How many private keys were opened from their sealed records under the data key
    /// verified last (the others came from [`OpenedKeys`]). For tests and benchmarks.
    #[doc(hidden)]
    pub fn key_openings(&self) -> u64 {
        self.unlocked.as_ref().map_or(0, |u| u.keys.set().openings)
    }

    /// Create a new key file at `path` (normally `<dir>/<name>.kbkey`; the device id is
    /// `file:<name>`). Fails with `AlreadyExists` if the file exists, `PinPolicy` if a
    /// PIN breaks the policy. Runs the KDF twice (user and SO PIN).
    pub fn create(
        path: impl AsRef<Path>,
        label: &str,
        user_pin: &Pin,
        so_pin: &Pin,
        options: CreateOptions,
    ) -> Result<FileToken> {
        let path = path.as_ref().to_path_buf();
        format::check_text("label", label, 128)?;
        check_pin_policy(user_pin)?;
        check_pin_policy(so_pin)?;
        options.kdf.check().map_err(invalid)?;
        if !(1..=15).contains(&options.max_user_retries) || !(1..=15).contains(&options.max_so_retries) {
            return Err(invalid("PIN retry limits must be 1 to 15"));
        }
        let serial = match options.serial {
            Some(s) => {
                format::check_text("serial", &s, 64)?;
                s
            }
            None => {
                let r = kb_crypto::rng::random_array::<8>()?;
                format!("KBF-{:016X}", u64::from_be_bytes(r))
            }
        };
        let dir = store::parent_dir(&path);
        if !dir.is_dir() {
            return Err(TokenError::Io("the directory for the key file does not exist".into()));
        }
        let data_key = Zeroizing::new(kb_crypto::rng::random_array::<DATA_KEY_LEN>()?);
        let user = format::wrap_data_key(
            &data_key,
            user_pin,
            PinKind::User,
            options.kdf,
            options.max_user_retries,
            options.pins_are_default,
        )?;
        let so =
            format::wrap_data_key(&data_key, so_pin, PinKind::So, options.kdf, options.max_so_retries, options.pins_are_default)?;
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let body = Body {
            label: label.to_string(),
            serial,
            created,
            user_pin: user,
            so_pin: so,
            containers: Vec::new(),
            seals: Vec::new(),
        };
        let bytes = format::encode(&body)?;
        let guard = store::lock(&path, DEFAULT_LOCK_TIMEOUT)?;
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(TokenError::AlreadyExists(display_name(&path)));
        }
        store::write_atomic(&guard, &path, &bytes)?;
        drop(guard);
        Ok(FileToken::handle(path, &body))
    }

    /// Open an existing key file: `Removed` if it is missing, `Corrupt` if it is
    /// damaged or truncated (nothing is written). No PIN needed.
    pub fn open(path: impl AsRef<Path>) -> Result<FileToken> {
        let path = path.as_ref().to_path_buf();
        let body = format::decode(&store::read(&path)?)?;
        Ok(FileToken::handle(path, &body))
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device id, `file:<file stem>`.
    pub fn id(&self) -> &DeviceId {
        &self.info.id
    }

    /// How long to wait for another process's lock before `Busy` (default 10 s).
    pub fn set_lock_timeout(&mut self, timeout: Duration) {
        self.lock_timeout = timeout;
    }

    /// Re-read the file; `Removed` if it is gone or is now a different key.
    fn load(&self) -> Result<Body> {
        let body = format::decode(&store::read(&self.path)?)?;
        if body.serial != self.info.serial {
            return Err(TokenError::Removed);
        }
        Ok(body)
    }

    fn lock(&self) -> Result<store::LockGuard> {
        store::lock(&self.path, self.lock_timeout)
    }

    fn store(&self, guard: &store::LockGuard, body: &Body) -> Result<()> {
        store::write_atomic(guard, &self.path, &format::encode(body)?)
    }

    /// Locked read-modify-write: `f` changes the body; it is written only if `f` succeeds.
    fn update<T>(&self, f: impl FnOnce(&mut Body) -> Result<T>) -> Result<T> {
        let guard = self.lock()?;
        let mut body = self.load()?;
        let out = f(&mut body)?;
        self.store(&guard, &body)?;
        Ok(out)
    }

    /// Verify `pin` against `kind` inside a held lock. A wrong PIN is counted and
    /// written before `WrongPin` is returned; a right one resets the counter (written
    /// only if it was not full). Returns the data key.
    fn verify_locked(
        &self,
        guard: &store::LockGuard,
        body: &mut Body,
        kind: PinKind,
        pin: &Pin,
    ) -> Result<Zeroizing<[u8; DATA_KEY_LEN]>> {
        let rec = body.pin(kind);
        if rec.retries_left == 0 {
            return Err(TokenError::PinLocked);
        }
        match format::unwrap_data_key(rec, pin, kind)? {
            Some(key) => {
                let rec = body.pin_mut(kind);
                if rec.retries_left != rec.max_retries {
                    rec.retries_left = rec.max_retries;
                    self.store(guard, body)?;
                }
                Ok(key)
            }
            None => {
                let rec = body.pin_mut(kind);
                rec.retries_left -= 1;
                let left = rec.retries_left;
                self.store(guard, body)?;
                Err(TokenError::WrongPin { retries_left: left })
            }
        }
    }
}

fn display_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn device_info(path: &Path, body: &Body) -> DeviceInfo {
    DeviceInfo {
        id: DeviceId::new(TransportKind::File, &stem(path)),
        label: body.label.clone(),
        serial: body.serial.clone(),
        manufacturer: MANUFACTURER.to_string(),
        model: MODEL.to_string(),
        transport: TransportKind::File,
        capabilities: Capabilities {
            algorithms: supported_algorithms(),
            key_generation: true,
            seals: true,
            so_pin: true,
            user_verification: UserVerification::HostPin,
        },
    }
}

fn slot_info(usage: KeyUsage, k: &KeyRecord) -> KeySlot {
    KeySlot { usage, algorithm: k.algorithm, certificate: k.certificate.clone() }
}

fn container_info(c: &ContainerRecord) -> ContainerInfo {
    ContainerInfo {
        name: c.name.clone(),
        sign: c.sign.as_ref().map(|k| slot_info(KeyUsage::Sign, k)),
        encrypt: c.encrypt.as_ref().map(|k| slot_info(KeyUsage::Encrypt, k)),
    }
}

/// `Both` is stored in the sign slot, like `ContainerInfo::slot`.
fn slot_usage(usage: KeyUsage) -> KeyUsage {
    match usage {
        KeyUsage::Encrypt => KeyUsage::Encrypt,
        KeyUsage::Sign | KeyUsage::Both => KeyUsage::Sign,
    }
}

impl Token for FileToken {
    fn info(&self) -> DeviceInfo {
        self.info.clone()
    }

    /// A file key is software in this process: reading and writing its file, the KDF
    /// and the key operation are bounded work that waits for no device or user (at
    /// most [`DEFAULT_LOCK_TIMEOUT`] for another process's lock on the file).
    fn in_process(&self) -> bool {
        true
    }

    fn pin_info(&mut self, kind: PinKind) -> Result<PinInfo> {
        let body = self.load()?;
        let rec = body.pin(kind);
        Ok(PinInfo {
            kind,
            retries_left: rec.retries_left,
            max_retries: rec.max_retries,
            locked: rec.retries_left == 0,
            is_default: rec.is_default,
        })
    }

    fn change_pin(&mut self, kind: PinKind, old: &Pin, new: &Pin) -> Result<()> {
        check_pin_policy(new)?;
        self.unlocked = None;
        let guard = self.lock()?;
        let mut body = self.load()?;
        let data_key = self.verify_locked(&guard, &mut body, kind, old)?;
        let rec = body.pin(kind);
        let fresh = format::wrap_data_key(&data_key, new, kind, rec.kdf.params(), rec.max_retries, false)?;
        *body.pin_mut(kind) = fresh;
        self.store(&guard, &body)
    }

    fn unblock_pin(&mut self, so_pin: &Pin, new_user_pin: &Pin) -> Result<()> {
        check_pin_policy(new_user_pin)?;
        self.unlocked = None;
        let guard = self.lock()?;
        let mut body = self.load()?;
        let data_key = self.verify_locked(&guard, &mut body, PinKind::So, so_pin)?;
        let rec = body.pin(PinKind::User);
        let fresh = format::wrap_data_key(&data_key, new_user_pin, PinKind::User, rec.kdf.params(), rec.max_retries, false)?;
        body.user_pin = fresh;
        self.store(&guard, &body)
    }

    fn containers(&mut self) -> Result<Vec<ContainerInfo>> {
        Ok(self.load()?.containers.iter().map(container_info).collect())
    }

    fn public_key(&mut self, container: &str, usage: KeyUsage) -> Result<PublicKey> {
        let body = self.load()?;
        Ok(PublicKey::from_spki_der(&body.slot(container, usage)?.public_key)?)
    }

    fn seals(&mut self) -> Result<Vec<SealInfo>> {
        Ok(self
            .load()?
            .seals
            .iter()
            .map(|s| SealInfo { id: s.id.clone(), name: s.name.clone(), mime: s.mime.clone(), size: s.image.len() as u64 })
            .collect())
    }

    fn read_seal(&mut self, id: &str) -> Result<Vec<u8>> {
        let body = self.load()?;
        body.seals.into_iter().find(|s| s.id == id).map(|s| s.image).ok_or_else(|| TokenError::NotFound(format!("seal {id}")))
    }

    fn open_session<'a>(&'a mut self, auth: UserAuth<'_>, _ctx: &OpContext) -> Result<Box<dyn Session + 'a>> {
        let pin = auth.pin()?;
        let guard = self.lock()?;
        let mut body = self.load()?;
        let cached =
            self.unlocked.as_ref().filter(|u| u.matches(&body.user_pin, pin)).map(|u| (u.data_key.clone(), u.keys.clone()));
        let (data_key, keys) = match cached {
            Some(k) => k,
            None => {
                self.unlocked = None;
                self.slow_logins += 1;
                let k = self.verify_locked(&guard, &mut body, PinKind::User, pin)?;
                self.unlocked = Unlocked::new(&body.user_pin, pin, &k);
                let keys = self.unlocked.as_ref().map(|u| u.keys.clone()).unwrap_or_default();
                (k, keys)
            }
        };
        drop(guard);
        Ok(Box::new(FileSession { token: self, data_key, keys }))
    }
}

/// An unlocked file key: holds the data key (zeroized on drop) for its lifetime, and
/// the private keys opened under it ([`OpenedKeys`], shared with the token's
/// [`Unlocked`] and zeroized when the last holder drops them).
struct FileSession<'a> {
    token: &'a FileToken,
    data_key: Zeroizing<[u8; DATA_KEY_LEN]>,
    keys: OpenedKeys,
}

impl std::fmt::Debug for FileSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSession").field("device", &self.token.info.id).field("data_key", &"REDACTED").finish()
    }
}

impl FileSession<'_> {
    fn private_key(&self, container: &str, usage: KeyUsage) -> Result<Arc<PrivateKey>> {
        self.private_key_in(&self.token.load()?, container, usage)
    }

    /// The slot's private key, as the file holds it now: opened from its sealed record, or
    /// the key opened from that very record before.
    fn private_key_in(&self, body: &Body, container: &str, usage: KeyUsage) -> Result<Arc<PrivateKey>> {
        let usage = slot_usage(usage);
        let rec = body.slot(container, usage)?;
        if let Some(key) = self.keys.get(container, usage, rec) {
            return Ok(key);
        }
        let aad = format::key_aad(container, usage, &rec.public_key);
        let pkcs8 = format::open_secret(&self.data_key, &aad, &rec.private_key)?;
        let key = Arc::new(
            PrivateKey::from_pkcs8_der(&pkcs8).map_err(|_| TokenError::Corrupt("a stored private key is malformed".into()))?,
        );
        self.keys.put(container, usage, rec, &key);
        Ok(key)
    }
}

impl Session for FileSession<'_> {
    fn create_container(&mut self, name: &str) -> Result<()> {
        format::check_text("container name", name, MAX_NAME_CHARS)?;
        self.token.update(|b| {
            if b.containers.iter().any(|c| c.name == name) {
                return Err(TokenError::AlreadyExists(format!("container {name}")));
            }
            if b.containers.len() >= MAX_CONTAINERS {
                return Err(TokenError::NotSupported(format!("more than {MAX_CONTAINERS} containers")));
            }
            b.containers.push(ContainerRecord { name: name.to_string(), sign: None, encrypt: None });
            Ok(())
        })
    }

    fn delete_container(&mut self, name: &str) -> Result<()> {
        self.token.update(|b| {
            let before = b.containers.len();
            b.containers.retain(|c| c.name != name);
            if b.containers.len() == before {
                return Err(TokenError::NotFound(format!("container {name}")));
            }
            Ok(())
        })
    }

    fn generate_key_pair(&mut self, container: &str, usage: KeyUsage, algorithm: Algorithm) -> Result<PublicKey> {
        if !supported_algorithms().contains(&algorithm) {
            return Err(TokenError::NotSupported(format!("{algorithm} keys")));
        }
        let usage = slot_usage(usage);
        self.token.load()?.container(container)?; // fail fast before a slow RSA keygen
        let key = PrivateKey::generate(algorithm)?;
        let public = key.public_key();
        let spki = public.to_spki_der()?;
        let pkcs8 = key.to_pkcs8_der()?;
        drop(key);
        let sealed = format::seal_secret(&self.data_key, &format::key_aad(container, usage, &spki), &pkcs8)?;
        drop(pkcs8);
        self.token.update(|b| {
            *b.container_mut(container)?.slot_mut(usage) =
                Some(KeyRecord { algorithm, public_key: spki, private_key: sealed, certificate: None });
            Ok(())
        })?;
        Ok(public)
    }

    fn import_certificate(&mut self, container: &str, usage: KeyUsage, der: &[u8]) -> Result<()> {
        let cert = kb_pki::Certificate::from_der(der)?;
        let cert_key = cert.public_key()?;
        let usage = slot_usage(usage);
        self.token.update(|b| {
            let slot = b.container_mut(container)?.slot_mut(usage).as_mut().ok_or_else(|| format::no_key(container, usage))?;
            if PublicKey::from_spki_der(&slot.public_key)? != cert_key {
                return Err(TokenError::CertificateKeyMismatch);
            }
            slot.certificate = Some(cert.der().to_vec());
            Ok(())
        })
    }

    /// One locked read-modify-write: the signing key is decrypted from the file, opens the
    /// envelope, and the encryption pair (sealed under the data key like every private
    /// key) and its certificate replace the slot's in a single atomic file write.
    fn import_enveloped_key(&mut self, container: &str, envelope: &Sm2EnvelopedKey, certificate: Option<&[u8]>) -> Result<()> {
        let cert = certificate.map(kb_pki::Certificate::from_der).transpose()?;
        if let Some(cert) = &cert
            && cert.public_key()? != PublicKey::Sm2(envelope.public_key)
        {
            return Err(TokenError::CertificateKeyMismatch);
        }
        let public = PublicKey::Sm2(envelope.public_key);
        let spki = public.to_spki_der()?;
        self.token.update(|b| {
            let signing = self.private_key_in(b, container, KeyUsage::Sign)?;
            let PrivateKey::Sm2(protection) = &*signing else {
                return Err(TokenError::NotSupported("an enveloped key for a container whose signing key is not SM2".into()));
            };
            let key = PrivateKey::Sm2(envelope.open(protection)?);
            drop(signing);
            let pkcs8 = key.to_pkcs8_der()?;
            drop(key);
            let sealed = format::seal_secret(&self.data_key, &format::key_aad(container, KeyUsage::Encrypt, &spki), &pkcs8)?;
            *b.container_mut(container)?.slot_mut(KeyUsage::Encrypt) = Some(KeyRecord {
                algorithm: Algorithm::Sm2,
                public_key: spki.clone(),
                private_key: sealed,
                certificate: cert.as_ref().map(|c| c.der().to_vec()),
            });
            Ok(())
        })
    }

    fn delete_certificate(&mut self, container: &str, usage: KeyUsage) -> Result<()> {
        let usage = slot_usage(usage);
        self.token.update(|b| {
            let slot = b.container_mut(container)?.slot_mut(usage).as_mut().ok_or_else(|| format::no_key(container, usage))?;
            if slot.certificate.take().is_none() {
                return Err(TokenError::NotFound(format!(
                    "no {} certificate in container {container}",
                    format::usage_name(usage)
                )));
            }
            Ok(())
        })
    }

    fn sign_digest(&mut self, container: &str, usage: KeyUsage, scheme: &SignatureScheme, digest: &[u8]) -> Result<Vec<u8>> {
        Ok(self.private_key(container, usage)?.sign_digest(scheme, digest)?)
    }

    fn decrypt(
        &mut self,
        container: &str,
        usage: KeyUsage,
        ciphertext: &[u8],
        padding: RsaPadding,
    ) -> Result<Zeroizing<Vec<u8>>> {
        Ok(self.private_key(container, usage)?.decrypt(ciphertext, padding)?)
    }

    fn write_seal(&mut self, id: &str, name: &str, mime: &str, image: &[u8]) -> Result<()> {
        format::check_text("seal id", id, MAX_NAME_CHARS)?;
        format::check_text("seal name", name, 128)?;
        let mime_ok = mime.len() <= 100
            && mime.split_once('/').is_some_and(|(t, s)| !t.is_empty() && !s.is_empty())
            && mime.bytes().all(|c| c.is_ascii_graphic());
        if !mime_ok {
            return Err(invalid("seal MIME type must look like image/png"));
        }
        if image.is_empty() {
            return Err(invalid("seal image is empty"));
        }
        if image.len() > MAX_SEAL_BYTES {
            return Err(TokenError::NotSupported("seal images larger than 1 MiB".into()));
        }
        let rec = SealRecord { id: id.to_string(), name: name.to_string(), mime: mime.to_string(), image: image.to_vec() };
        self.token.update(|b| {
            if let Some(s) = b.seals.iter_mut().find(|s| s.id == id) {
                *s = rec;
            } else {
                if b.seals.len() >= MAX_SEALS {
                    return Err(TokenError::NotSupported(format!("more than {MAX_SEALS} seals")));
                }
                b.seals.push(rec);
            }
            Ok(())
        })
    }

    fn delete_seal(&mut self, id: &str) -> Result<()> {
        self.token.update(|b| {
            let before = b.seals.len();
            b.seals.retain(|s| s.id != id);
            if b.seals.len() == before {
                return Err(TokenError::NotFound(format!("seal {id}")));
            }
            Ok(())
        })
    }
}
