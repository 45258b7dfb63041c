//! The PC's pairing store: which phones are paired (public key, name, when paired, last
//! seen, revoked), each pairing's link secret, and the PC's own static key.
//!
//! Public records live in `phones.json` in the store's directory. **Secrets** (the PC's
//! private key, link secrets) go to the OS keyring through the `keyring` crate (Secret
//! Service on Linux, with its real backend enabled); when no keyring is running they go to
//! `secrets.json` (mode 0600) beside it, and [`PairingStore::backend`] says so, so the UI
//! can warn. Secrets never appear in `phones.json`, in logs or in `Debug`.

use crate::conn::{LinkError, PeerId};
use crate::handshake::{StaticKey, peer_id};
use crate::suite::PUBLIC_KEY_LEN;
use crate::wire::err;
use kb_types::ErrorCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// The keyring service name the secrets are stored under.
pub const KEYRING_SERVICE: &str = "KeyBridge phone link";
const PHONES_FILE: &str = "phones.json";
const SECRETS_FILE: &str = "secrets.json";
const PC_KEY: &str = "pc-static-key";

/// Which secret store to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// The OS keyring when one answers, else the 0600 file.
    Auto,
    /// The OS keyring only (fails when none answers).
    Keyring,
    /// The 0600 file only (tests; machines without a keyring by policy).
    File,
}

/// Where secrets are, as reported to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretBackend {
    /// The OS keyring (Secret Service on Linux).
    Keyring,
    /// The fallback file (mode 0600), with why the keyring was not used.
    File {
        /// The file's path.
        path: PathBuf,
        /// Why not the keyring (empty when the file was chosen explicitly).
        reason: String,
    },
}

/// One paired phone, as listed to the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedPhone {
    /// Its id (digest of its static key).
    pub peer: String,
    /// The name the user knows it by.
    pub name: String,
    /// Its static public key, hex (33-byte compressed SM2 point).
    pub public_key: String,
    /// When it was paired, Unix seconds.
    pub paired_at: u64,
    /// When it last connected, Unix seconds.
    pub last_seen: Option<u64>,
    /// Revoked phones are refused with `phone_revoked` until paired again with a new QR.
    pub revoked: bool,
}

#[derive(Default, Serialize, Deserialize)]
struct Records {
    store_id: String,
    phones: Vec<PairedPhone>,
}

/// What the store knows of a phone key.
#[derive(Debug)]
pub enum Lookup {
    /// Never paired here.
    Unknown,
    /// Paired, then revoked.
    Revoked,
    /// Paired.
    Paired {
        /// Its id.
        peer: PeerId,
        /// Its name.
        name: String,
        /// The link secret.
        link_secret: Zeroizing<[u8; 32]>,
    },
}

/// The pairing store. Thread-safe.
pub struct PairingStore {
    dir: PathBuf,
    backend: SecretBackend,
    records: Mutex<Records>,
}

impl std::fmt::Debug for PairingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PairingStore({}, {:?})", self.dir.display(), self.backend)
    }
}

fn store_err(what: impl std::fmt::Display) -> LinkError {
    err(ErrorCode::PairingStoreFailed, what.to_string())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Write `bytes` to `path` atomically with `mode` (Unix permissions).
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LinkError> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(&tmp).map_err(|e| store_err(format!("{}: {e}", tmp.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(store_err)?;
    }
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(store_err)?;
    std::fs::rename(&tmp, path).map_err(|e| store_err(format!("{}: {e}", path.display())))
}

/// Whether the keyring answers (an absent entry counts as an answer).
fn keyring_probe(store_id: &str) -> Result<(), String> {
    let e = keyring::Entry::new(KEYRING_SERVICE, &format!("{store_id}/probe")).map_err(|e| e.to_string())?;
    match e.get_secret() {
        Ok(_) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

impl PairingStore {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path, choice: BackendChoice) -> Result<Self, LinkError> {
        std::fs::create_dir_all(dir).map_err(|e| store_err(format!("{}: {e}", dir.display())))?;
        let path = dir.join(PHONES_FILE);
        let records = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| store_err(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Records { store_id: hex::encode(kb_crypto::rng::random_array::<8>().map_err(store_err)?), phones: Vec::new() }
            }
            Err(e) => return Err(store_err(format!("{}: {e}", path.display()))),
        };
        let file = dir.join(SECRETS_FILE);
        let backend = match choice {
            BackendChoice::File => SecretBackend::File { path: file, reason: String::new() },
            BackendChoice::Keyring => {
                keyring_probe(&records.store_id).map_err(|e| store_err(format!("keyring: {e}")))?;
                SecretBackend::Keyring
            }
            BackendChoice::Auto => match keyring_probe(&records.store_id) {
                Ok(()) => SecretBackend::Keyring,
                Err(reason) => {
                    tracing::warn!(%reason, file = %file.display(), "no OS keyring: phone link secrets go to a 0600 file");
                    SecretBackend::File { path: file, reason }
                }
            },
        };
        let store = Self { dir: dir.to_owned(), backend, records: Mutex::new(records) };
        store.save()?;
        Ok(store)
    }

    /// Where the secrets are.
    pub fn backend(&self) -> &SecretBackend {
        &self.backend
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save_locked(&self, r: &Records) -> Result<(), LinkError> {
        let json = serde_json::to_vec_pretty(r).map_err(store_err)?;
        write_atomic(&self.dir.join(PHONES_FILE), &json, 0o600)
    }

    fn save(&self) -> Result<(), LinkError> {
        let r = self.records();
        self.save_locked(&r)
    }

    fn read_file_secrets(path: &Path) -> Result<BTreeMap<String, String>, LinkError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&Zeroizing::new(b)).map_err(|e| store_err(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(store_err(format!("{}: {e}", path.display()))),
        }
    }

    fn entry(&self, key: &str) -> Result<keyring::Entry, LinkError> {
        let id = self.records().store_id.clone();
        keyring::Entry::new(KEYRING_SERVICE, &format!("{id}/{key}")).map_err(|e| store_err(format!("keyring: {e}")))
    }

    fn get_secret(&self, key: &str) -> Result<Option<Zeroizing<Vec<u8>>>, LinkError> {
        match &self.backend {
            SecretBackend::Keyring => match self.entry(key)?.get_secret() {
                Ok(s) => Ok(Some(Zeroizing::new(s))),
                Err(keyring::Error::NoEntry) => Ok(None),
                Err(e) => Err(store_err(format!("keyring: {e}"))),
            },
            SecretBackend::File { path, .. } => {
                let m = Self::read_file_secrets(path)?;
                m.get(key).map(|h| hex::decode(h).map(Zeroizing::new).map_err(|_| store_err("secrets file: bad hex"))).transpose()
            }
        }
    }

    fn set_secret(&self, key: &str, value: Option<&[u8]>) -> Result<(), LinkError> {
        match &self.backend {
            SecretBackend::Keyring => {
                let e = self.entry(key)?;
                match value {
                    Some(v) => e.set_secret(v).map_err(|e| store_err(format!("keyring: {e}"))),
                    None => match e.delete_credential() {
                        Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                        Err(e) => Err(store_err(format!("keyring: {e}"))),
                    },
                }
            }
            SecretBackend::File { path, .. } => {
                let _guard = self.records();
                let mut m = Self::read_file_secrets(path)?;
                match value {
                    Some(v) => m.insert(key.to_owned(), hex::encode(v)),
                    None => m.remove(key),
                };
                let json = Zeroizing::new(serde_json::to_vec(&m).map_err(store_err)?);
                for v in m.values_mut() {
                    zeroize::Zeroize::zeroize(v);
                }
                write_atomic(path, &json, 0o600)
            }
        }
    }

    /// The PC's static key, created on first use.
    pub fn pc_key(&self) -> Result<StaticKey, LinkError> {
        if let Some(d) = self.get_secret(PC_KEY)? {
            return StaticKey::from_private(&d);
        }
        let k = StaticKey::generate()?;
        self.set_secret(PC_KEY, Some(&k.private_bytes()[..]))?;
        Ok(k)
    }

    /// Every phone ever paired here (revoked ones too, marked).
    pub fn list(&self) -> Vec<PairedPhone> {
        self.records().phones.clone()
    }

    /// Rename a phone.
    pub fn rename(&self, peer: &PeerId, name: &str) -> Result<(), LinkError> {
        let mut r = self.records();
        let p = r.phones.iter_mut().find(|p| p.peer == peer.0).ok_or_else(|| err(ErrorCode::PhoneNotPaired, "no such phone"))?;
        p.name = crate::wire::clean_name(name);
        self.save_locked(&r)
    }

    /// Revoke a phone: its link secret is deleted and it is refused from now on (the
    /// caller closes its open link, if any).
    pub fn revoke(&self, peer: &PeerId) -> Result<(), LinkError> {
        {
            let mut r = self.records();
            let p =
                r.phones.iter_mut().find(|p| p.peer == peer.0).ok_or_else(|| err(ErrorCode::PhoneNotPaired, "no such phone"))?;
            p.revoked = true;
            self.save_locked(&r)?;
        }
        self.set_secret(&format!("link/{}", peer.0), None)
    }

    /// Record a newly confirmed phone (replacing an earlier or revoked pairing of the same
    /// key).
    pub fn add(&self, public_key: &[u8; PUBLIC_KEY_LEN], name: &str, link_secret: &[u8; 32]) -> Result<PeerId, LinkError> {
        let peer = peer_id(public_key);
        self.set_secret(&format!("link/{}", peer.0), Some(link_secret))?;
        let mut r = self.records();
        r.phones.retain(|p| p.peer != peer.0);
        let t = now();
        r.phones.push(PairedPhone {
            peer: peer.0.clone(),
            name: crate::wire::clean_name(name),
            public_key: hex::encode(public_key),
            paired_at: t,
            last_seen: Some(t),
            revoked: false,
        });
        self.save_locked(&r)?;
        Ok(peer)
    }

    /// What the store knows of `public_key`.
    pub fn lookup(&self, public_key: &[u8; PUBLIC_KEY_LEN]) -> Result<Lookup, LinkError> {
        let peer = peer_id(public_key);
        let (name, revoked) = {
            let r = self.records();
            match r.phones.iter().find(|p| p.peer == peer.0 && p.public_key == hex::encode(public_key)) {
                None => return Ok(Lookup::Unknown),
                Some(p) => (p.name.clone(), p.revoked),
            }
        };
        if revoked {
            return Ok(Lookup::Revoked);
        }
        let s =
            self.get_secret(&format!("link/{}", peer.0))?.ok_or_else(|| store_err("a paired phone's link secret is missing"))?;
        let link_secret: [u8; 32] = s[..].try_into().map_err(|_| store_err("a link secret has the wrong length"))?;
        Ok(Lookup::Paired { peer, name, link_secret: Zeroizing::new(link_secret) })
    }

    /// Note that `peer` connected now.
    pub fn touch(&self, peer: &PeerId) -> Result<(), LinkError> {
        let mut r = self.records();
        if let Some(p) = r.phones.iter_mut().find(|p| p.peer == peer.0) {
            p.last_seen = Some(now());
        }
        self.save_locked(&r)
    }
}
