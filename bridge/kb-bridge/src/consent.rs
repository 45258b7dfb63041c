//! Which web origins may use the bridge: the user's grants (allow / deny, remembered,
//! listed, revocable) and the consent prompt for an origin without one.
//!
//! Grants live in `<data dir>/bridge-grants.json` (owner-only, written atomically). A
//! corrupt grants file is never overwritten: opening it fails with `9002
//! config_invalid` and the user decides.
//!
//! Grant changes apply at once, whichever process makes them: the store re-reads its
//! file when it changed ([`GrantStore::refresh`], which a running bridge calls several
//! times a second) and counts every change in a generation number that connections
//! watch ([`GrantStore::subscribe`]), so `keybridge bridge revoke` in a terminal or the
//! desktop's revoke drops the site's open connections.
//!
//! Consent is decided before anything about the user's media is looked at, and a
//! refusal is the same whatever the user holds. A denial (or a dismissed dialog) holds
//! for a while ([`DEFAULT_DENIAL_HOLD`]) for the whole origin, so a page cannot raise a
//! stream of questions by sending many requests or by reconnecting.

use crate::config::ConsentPolicy;
use crate::handshake::{Client, normalize_origin};
use kb_service::ServiceError;
use kb_service::prompter::{ConsentAnswer, ConsentRequest, Prompter};
use kb_types::ErrorCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// How long a denial (or a dismissed consent dialog) holds for its origin: requests in
/// that time are refused without asking again.
pub const DEFAULT_DENIAL_HOLD: Duration = Duration::from_secs(120);

/// File name in the data directory.
pub const FILE_NAME: &str = "bridge-grants.json";

/// An origin's standing decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// May call methods without asking.
    Allow,
    /// Refused at the handshake.
    Deny,
}

/// One remembered decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Normalized origin.
    pub origin: String,
    /// Allow or deny.
    pub decision: Decision,
    /// When it was decided, Unix seconds.
    pub since: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFile {
    version: u32,
    grants: Vec<Grant>,
}

/// Errors of the grant store.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// Not an origin the bridge could ever accept.
    #[error("{origin}: {why}")]
    BadOrigin {
        /// As given.
        origin: String,
        /// Why.
        why: &'static str,
    },
    /// The grants file is unreadable as grants (left untouched).
    #[error("{path}: {why} (the file was left as it is; fix or delete it)")]
    Corrupt {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl kb_types::HasErrorCode for GrantError {
    fn code(&self) -> ErrorCode {
        match self {
            GrantError::BadOrigin { .. } => ErrorCode::InvalidParameter,
            GrantError::Corrupt { .. } => ErrorCode::ConfigInvalid,
            GrantError::Io(_) => ErrorCode::Io,
        }
    }
}

/// What identifies one version of the grants file on disk (atomic writes replace the
/// file, so the inode changes with every write; size and time catch editors that
/// rewrite in place).
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    /// `None` when the file does not exist.
    fn of(path: &Path) -> std::io::Result<Option<FileStamp>> {
        match std::fs::metadata(path) {
            Ok(m) => {
                #[cfg(unix)]
                let inode = std::os::unix::fs::MetadataExt::ino(&m);
                #[cfg(not(unix))]
                let inode = 0;
                Ok(Some(FileStamp { modified: m.modified().ok(), len: m.len(), inode }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The user's remembered decisions, optionally backed by a file.
#[derive(Debug)]
pub struct GrantStore {
    path: Option<PathBuf>,
    grants: Mutex<BTreeMap<String, Grant>>,
    /// Allowed for this run only (`keybridge serve --allow-origin`), never written.
    session: Mutex<BTreeMap<String, ()>>,
    /// The file as last read or written.
    stamp: Mutex<Option<FileStamp>>,
    /// Counts changes (in this process or in the file).
    generation: watch::Sender<u64>,
    /// The file as last seen could not be read as grants (it is not written over).
    unreadable: AtomicBool,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl GrantStore {
    fn with(path: Option<PathBuf>, grants: BTreeMap<String, Grant>, stamp: Option<FileStamp>) -> Self {
        GrantStore {
            path,
            grants: Mutex::new(grants),
            session: Mutex::new(BTreeMap::new()),
            stamp: Mutex::new(stamp),
            generation: watch::Sender::new(0),
            unreadable: AtomicBool::new(false),
        }
    }

    /// A store kept in memory only (tests, `serve --allow-origin`).
    pub fn in_memory() -> Self {
        Self::with(None, BTreeMap::new(), None)
    }

    /// Where grants live for a data directory.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Read the grants file (missing = no grants) and its stamp.
    fn read_file(path: &Path) -> Result<(BTreeMap<String, Grant>, Option<FileStamp>), GrantError> {
        let corrupt = |why: String| GrantError::Corrupt { path: path.display().to_string(), why };
        let stamp = FileStamp::of(path)?;
        let grants = match std::fs::read(path) {
            Ok(bytes) => {
                let f: GrantFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                if f.version != 1 {
                    return Err(corrupt(format!("unknown version {}", f.version)));
                }
                let mut m = BTreeMap::new();
                for g in f.grants {
                    let o = normalize_origin(&g.origin).map_err(|why| corrupt(format!("{}: {why}", g.origin)))?;
                    m.insert(o.clone(), Grant { origin: o, ..g });
                }
                m
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        Ok((grants, stamp))
    }

    /// Open the file (missing = no grants yet).
    pub fn open(path: &Path) -> Result<Self, GrantError> {
        let (grants, stamp) = Self::read_file(path)?;
        Ok(Self::with(Some(path.to_path_buf()), grants, stamp))
    }

    /// Re-read the file when another process (or an editor) changed it since this store
    /// last read or wrote it. `Ok(true)` when the grants changed. A file that became
    /// unreadable as grants is reported and the grants in memory are kept, except that
    /// nothing stays allowed: an unreadable file cannot be trusted to still allow a site.
    pub fn refresh(&self) -> Result<bool, GrantError> {
        let Some(path) = &self.path else { return Ok(false) };
        let mut m = self.lock();
        self.refresh_locked(path, &mut m)
    }

    fn refresh_locked(&self, path: &Path, m: &mut BTreeMap<String, Grant>) -> Result<bool, GrantError> {
        let now = FileStamp::of(path)?;
        let mut stamp = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *stamp == now {
            return Ok(false);
        }
        match Self::read_file(path) {
            Ok((grants, read_stamp)) => {
                *stamp = read_stamp;
                self.unreadable.store(false, Ordering::Release);
                if grants == *m {
                    return Ok(false);
                }
                *m = grants;
            }
            Err(e) => {
                *stamp = now;
                self.unreadable.store(true, Ordering::Release);
                m.retain(|_, g| g.decision == Decision::Deny);
                self.changed();
                return Err(e);
            }
        }
        self.changed();
        Ok(true)
    }

    fn changed(&self) {
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// A receiver that sees every change of the grants (its value is a change counter).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Grant>> {
        self.grants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The decision for a normalized origin: the remembered one, else allowed when
    /// granted for this run.
    pub fn decision(&self, origin: &str) -> Option<Decision> {
        if let Some(d) = self.lock().get(origin).map(|g| g.decision) {
            return Some(d);
        }
        self.session.lock().unwrap_or_else(|e| e.into_inner()).contains_key(origin).then_some(Decision::Allow)
    }

    /// Allow an origin for as long as this store lives, without remembering it (a
    /// headless server's `--allow-origin`). A remembered deny still wins.
    pub fn allow_for_session(&self, origin: &str) -> Result<String, GrantError> {
        let o = normalize_origin(origin).map_err(|why| GrantError::BadOrigin { origin: origin.to_string(), why })?;
        self.session.lock().unwrap_or_else(|e| e.into_inner()).insert(o.clone(), ());
        Ok(o)
    }

    /// Every grant, by origin.
    pub fn list(&self) -> Vec<Grant> {
        self.lock().values().cloned().collect()
    }

    /// Remember a decision (the origin is normalized first).
    pub fn set(&self, origin: &str, decision: Decision) -> Result<Grant, GrantError> {
        let o = normalize_origin(origin).map_err(|why| GrantError::BadOrigin { origin: origin.to_string(), why })?;
        let g = Grant { origin: o.clone(), decision, since: now() };
        let mut m = self.lock();
        self.refresh_before_write(&mut m)?;
        let old = m.insert(o, g.clone());
        if let Err(e) = self.persist(&m) {
            // Keep memory and file in agreement.
            match old {
                Some(old) => m.insert(old.origin.clone(), old),
                None => m.remove(&g.origin),
            };
            return Err(e);
        }
        drop(m);
        self.changed();
        Ok(g)
    }

    /// Forget an origin's decision. `Ok(false)` when there was none.
    pub fn revoke(&self, origin: &str) -> Result<bool, GrantError> {
        let o = normalize_origin(origin).map_err(|why| GrantError::BadOrigin { origin: origin.to_string(), why })?;
        let mut m = self.lock();
        self.refresh_before_write(&mut m)?;
        let Some(old) = m.remove(&o) else { return Ok(false) };
        if let Err(e) = self.persist(&m) {
            m.insert(o, old);
            return Err(e);
        }
        drop(m);
        self.changed();
        Ok(true)
    }

    /// Take in what another process wrote before writing over it (a file that became
    /// unreadable is not overwritten).
    fn refresh_before_write(&self, m: &mut BTreeMap<String, Grant>) -> Result<(), GrantError> {
        let Some(path) = &self.path else { return Ok(()) };
        self.refresh_locked(path, m)?;
        if self.unreadable.load(Ordering::Acquire) {
            return Err(GrantError::Corrupt { path: path.display().to_string(), why: "it cannot be read as grants".into() });
        }
        Ok(())
    }

    fn persist(&self, m: &BTreeMap<String, Grant>) -> Result<(), GrantError> {
        let Some(path) = &self.path else { return Ok(()) };
        let file = GrantFile { version: 1, grants: m.values().cloned().collect() };
        let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        kb_service::settings::write_atomic(path, &json)?;
        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = FileStamp::of(path)?;
        Ok(())
    }
}

/// Per-connection consent state.
#[derive(Debug, Default)]
pub struct ConnectionConsent {
    /// The user answered "allow once" for this connection.
    allowed: AtomicBool,
    /// A method ran under the origin's remembered grant (if the grant goes, so does the
    /// connection).
    granted: AtomicBool,
}

impl ConnectionConsent {
    /// The connection was admitted under its origin's grant: when the grant goes, the
    /// connection goes too.
    pub fn mark_granted(&self) {
        self.granted.store(true, Ordering::Release);
    }
}

/// The consent gate every method (but `hello`, `cancel`, `stream.close` and
/// `unsubscribe`) passes.
pub struct Consent {
    store: Arc<GrantStore>,
    policy: ConsentPolicy,
    prompter: Arc<dyn Prompter>,
    /// One consent dialog at a time: sixteen parallel requests from a new page raise
    /// one prompt, and the others see its answer.
    asking: Mutex<()>,
    /// Origins the user refused recently, until when.
    denials: Mutex<HashMap<String, Instant>>,
    denial_hold: Duration,
}

impl std::fmt::Debug for Consent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consent").field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// Why consent was not given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl Consent {
    /// A gate over a store, a policy and the prompter that shows the dialog.
    pub fn new(store: Arc<GrantStore>, policy: ConsentPolicy, prompter: Arc<dyn Prompter>) -> Self {
        Consent {
            store,
            policy,
            prompter,
            asking: Mutex::new(()),
            denials: Mutex::new(HashMap::new()),
            denial_hold: DEFAULT_DENIAL_HOLD,
        }
    }

    /// How long a denial holds (default [`DEFAULT_DENIAL_HOLD`]).
    pub fn with_denial_hold(mut self, hold: Duration) -> Self {
        self.denial_hold = hold;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<GrantStore> {
        &self.store
    }

    /// The policy.
    pub fn policy(&self) -> ConsentPolicy {
        self.policy
    }

    /// Whether the origin is on the deny list.
    pub fn denied(&self, origin: &str) -> bool {
        self.store.decision(origin) == Some(Decision::Deny)
    }

    /// Why a web origin is refused at the handshake, if it is: on the deny list, or
    /// without a grant where nobody is asked (`grants-only`).
    pub fn refused_at_handshake(&self, origin: &str) -> Option<&'static str> {
        match self.store.decision(origin) {
            Some(Decision::Deny) => Some("is on the deny list"),
            Some(Decision::Allow) => None,
            None if self.policy == ConsentPolicy::GrantsOnly => {
                Some("has no grant and this KeyBridge does not ask (consent policy grants-only)")
            }
            None => None,
        }
    }

    /// Whether `client` may call methods now without asking anyone: a native tool, an
    /// origin with a grant, or a connection the user allowed once.
    pub fn settled_allowed(&self, client: &Client, conn: &ConnectionConsent) -> bool {
        match client {
            Client::Native => true,
            Client::Web(origin) => matches!(self.settled(origin, conn), Some(Ok(()))),
        }
    }

    /// After a grant change: whether a connection may stay open. It may not when its
    /// origin is now denied, when it was admitted or served under a grant that is gone,
    /// or, in `grants-only` mode, when the handshake would refuse it now.
    pub fn still_allowed(&self, client: &Client, conn: &ConnectionConsent) -> bool {
        let Client::Web(origin) = client else { return true };
        match self.store.decision(origin) {
            Some(Decision::Deny) => false,
            Some(Decision::Allow) => true,
            None => self.policy != ConsentPolicy::GrantsOnly && !conn.granted.load(Ordering::Acquire),
        }
    }

    /// The decision that needs nobody: the store's deny first (it overrides everything),
    /// then "allow once", the grant, and a recent denial.
    fn settled(&self, origin: &str, conn: &ConnectionConsent) -> Option<Result<(), Refused>> {
        match self.store.decision(origin) {
            Some(Decision::Deny) => return Some(Err(Refused(format!("{origin} is on the deny list")))),
            Some(Decision::Allow) => {
                conn.granted.store(true, Ordering::Release);
                return Some(Ok(()));
            }
            None => {}
        }
        if conn.allowed.load(Ordering::Acquire) {
            return Some(Ok(()));
        }
        if self.policy == ConsentPolicy::GrantsOnly {
            return Some(Err(Refused(format!(
                "{origin} has no grant and this KeyBridge does not ask (consent policy grants-only)"
            ))));
        }
        let mut denials = self.denials.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        denials.retain(|_, until| *until > now);
        denials.contains_key(origin).then(|| Err(Refused(format!("the user refused {origin} a moment ago"))))
    }

    fn hold_denial(&self, origin: &str) {
        let until = Instant::now() + self.denial_hold;
        self.denials.lock().unwrap_or_else(|e| e.into_inner()).insert(origin.to_string(), until);
    }

    /// May `client` run `operation` (on the certificate the request names)? Blocks while
    /// the user decides. Callers ask before looking anything up on the user's media.
    pub fn check(
        &self,
        client: &Client,
        conn: &ConnectionConsent,
        operation: &str,
        certificate: Option<String>,
    ) -> Result<(), Refused> {
        let Client::Web(origin) = client else { return Ok(()) };
        if let Some(r) = self.settled(origin, conn) {
            return r;
        }
        let _one_at_a_time = self.asking.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = self.settled(origin, conn) {
            return r;
        }
        let req = ConsentRequest { client: origin.clone(), operation: operation.to_string(), certificate };
        let refused = match self.prompter.consent(&req) {
            Ok(ConsentAnswer::AllowAlways) => {
                if let Err(e) = self.store.set(origin, Decision::Allow) {
                    tracing::warn!(%origin, error = %e, "could not remember the grant; allowing this connection only");
                    conn.allowed.store(true, Ordering::Release);
                } else {
                    conn.granted.store(true, Ordering::Release);
                }
                return Ok(());
            }
            Ok(ConsentAnswer::AllowOnce) => {
                conn.allowed.store(true, Ordering::Release);
                return Ok(());
            }
            Ok(ConsentAnswer::Deny) => Refused(format!("the user denied {origin}")),
            Err(ServiceError::Cancelled) => Refused(format!("the consent dialog for {origin} was closed")),
            Err(e) => Refused(format!("the consent dialog failed: {e}")),
        };
        self.hold_denial(origin);
        Err(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kb_service::prompter::{Answer, ScriptedPrompter, Seen};

    #[test]
    fn store_round_trip_and_revoke() {
        let d = tempfile::tempdir().unwrap();
        let p = GrantStore::path_in(d.path());
        let s = GrantStore::open(&p).unwrap();
        s.set("HTTPS://Bid.Example.CN:443", Decision::Allow).unwrap();
        s.set("https://evil.example", Decision::Deny).unwrap();
        assert!(s.set("http://bid.example.cn", Decision::Allow).is_err(), "plain http is never grantable");
        let again = GrantStore::open(&p).unwrap();
        assert_eq!(again.decision("https://bid.example.cn"), Some(Decision::Allow));
        assert_eq!(again.decision("https://evil.example"), Some(Decision::Deny));
        assert_eq!(again.list().len(), 2);
        again.allow_for_session("http://127.0.0.1:8080").unwrap();
        again.allow_for_session("https://evil.example").unwrap();
        assert_eq!(again.decision("http://127.0.0.1:8080"), Some(Decision::Allow));
        assert_eq!(again.decision("https://evil.example"), Some(Decision::Deny), "a remembered deny wins");
        assert!(again.revoke("https://bid.example.cn").unwrap());
        assert!(!again.revoke("https://bid.example.cn").unwrap());
        assert_eq!(GrantStore::open(&p).unwrap().decision("https://bid.example.cn"), None);
        assert_eq!(GrantStore::open(&p).unwrap().decision("http://127.0.0.1:8080"), None, "session grants are not written");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o077, 0);
        }
    }

    #[test]
    fn corrupt_file_is_reported_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = GrantStore::path_in(d.path());
        std::fs::write(&p, b"{\"version\":1,\"grants\":[{\"origin\":").unwrap();
        let e = GrantStore::open(&p).unwrap_err();
        assert_eq!(kb_types::HasErrorCode::code(&e), ErrorCode::ConfigInvalid);
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"version\":1,\"grants\":[{\"origin\":");
    }

    fn web() -> Client {
        Client::Web("https://bid.example.cn".into())
    }

    #[test]
    fn prompt_once_then_remembered() {
        let prompter = Arc::new(ScriptedPrompter::new());
        prompter.push(Answer::Consent(ConsentAnswer::AllowAlways));
        let c = Consent::new(Arc::new(GrantStore::in_memory()), ConsentPolicy::Prompt, prompter.clone());
        c.check(&web(), &ConnectionConsent::default(), "sign", Some("CN=张三".into())).unwrap();
        // A new connection from the same origin: no second prompt.
        c.check(&web(), &ConnectionConsent::default(), "sign", None).unwrap();
        let seen = prompter.seen();
        assert_eq!(seen.len(), 1);
        assert!(matches!(&seen[0], Seen::Consent(r) if r.client == "https://bid.example.cn" && r.operation == "sign"));
    }

    #[test]
    fn allow_once_is_per_connection_and_deny_refuses() {
        let prompter = Arc::new(ScriptedPrompter::new());
        prompter.push(Answer::Consent(ConsentAnswer::AllowOnce));
        prompter.push(Answer::Consent(ConsentAnswer::Deny));
        let c = Consent::new(Arc::new(GrantStore::in_memory()), ConsentPolicy::Prompt, prompter.clone())
            .with_denial_hold(Duration::ZERO);
        let conn = ConnectionConsent::default();
        c.check(&web(), &conn, "sign", None).unwrap();
        c.check(&web(), &conn, "sign", None).unwrap();
        assert!(c.check(&web(), &ConnectionConsent::default(), "sign", None).is_err());
        // Closed dialog (script empty → cancel) refuses too.
        assert!(c.check(&web(), &ConnectionConsent::default(), "sign", None).is_err());
        assert_eq!(prompter.seen().len(), 3);
    }

    #[test]
    fn a_denial_holds_for_the_origin() {
        let prompter = Arc::new(ScriptedPrompter::new());
        prompter.push(Answer::Consent(ConsentAnswer::Deny));
        let c = Consent::new(Arc::new(GrantStore::in_memory()), ConsentPolicy::Prompt, prompter.clone());
        for _ in 0..6 {
            assert!(c.check(&web(), &ConnectionConsent::default(), "sign", None).is_err());
        }
        assert_eq!(prompter.seen().len(), 1, "one question, then the denial holds");
        // Another origin is still asked; a grant made meanwhile wins over the hold.
        let other = Client::Web("https://other.example".into());
        assert!(c.check(&other, &ConnectionConsent::default(), "sign", None).is_err());
        assert_eq!(prompter.seen().len(), 2);
        c.store().set("https://bid.example.cn", Decision::Allow).unwrap();
        c.check(&web(), &ConnectionConsent::default(), "sign", None).unwrap();
    }

    #[test]
    fn changes_made_by_another_process_are_seen_and_counted() {
        let d = tempfile::tempdir().unwrap();
        let p = GrantStore::path_in(d.path());
        let ours = GrantStore::open(&p).unwrap();
        ours.set("https://bid.example.cn", Decision::Allow).unwrap();
        let mut changes = ours.subscribe();
        changes.mark_unchanged();
        assert!(!ours.refresh().unwrap(), "our own write is not a change");
        let theirs = GrantStore::open(&p).unwrap();
        theirs.revoke("https://bid.example.cn").unwrap();
        theirs.set("https://evil.example", Decision::Deny).unwrap();
        assert!(ours.refresh().unwrap());
        assert!(changes.has_changed().unwrap());
        assert_eq!(ours.decision("https://bid.example.cn"), None);
        assert_eq!(ours.decision("https://evil.example"), Some(Decision::Deny));
        // Writing takes in the other process's changes first instead of overwriting them.
        theirs.set("https://c.example", Decision::Allow).unwrap();
        ours.set("https://d.example", Decision::Allow).unwrap();
        let again = GrantStore::open(&p).unwrap();
        assert_eq!(again.list().len(), 3);
        // A file that cannot be read as grants leaves nothing allowed and is not overwritten.
        std::fs::write(&p, b"{").unwrap();
        assert!(ours.refresh().is_err());
        assert_eq!(ours.decision("https://c.example"), None);
        assert_eq!(ours.decision("https://evil.example"), Some(Decision::Deny));
        assert!(ours.set("https://e.example", Decision::Allow).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"{");
    }

    #[test]
    fn grants_only_never_prompts_and_native_needs_no_consent() {
        let prompter = Arc::new(ScriptedPrompter::new());
        let store = Arc::new(GrantStore::in_memory());
        let c = Consent::new(store.clone(), ConsentPolicy::GrantsOnly, prompter.clone());
        assert!(c.check(&web(), &ConnectionConsent::default(), "sign", None).is_err());
        store.set("https://bid.example.cn", Decision::Allow).unwrap();
        c.check(&web(), &ConnectionConsent::default(), "sign", None).unwrap();
        c.check(&Client::Native, &ConnectionConsent::default(), "sign", None).unwrap();
        assert!(prompter.seen().is_empty());
    }
}
