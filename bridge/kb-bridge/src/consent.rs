//! Which web origins may use the bridge: the user's grants (allow / deny, remembered,
//! listed, revocable) and the consent prompt for an origin without one.
//!
//! Grants live in `<data dir>/bridge-grants.json` (owner-only, written atomically). A
//! corrupt grants file is never overwritten: opening it fails with `9002
//! config_invalid` and the user decides.

use crate::config::ConsentPolicy;
use crate::handshake::{Client, normalize_origin};
use kb_service::ServiceError;
use kb_service::prompter::{ConsentAnswer, ConsentRequest, Prompter};
use kb_types::ErrorCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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

/// The user's remembered decisions, optionally backed by a file.
#[derive(Debug)]
pub struct GrantStore {
    path: Option<PathBuf>,
    grants: Mutex<BTreeMap<String, Grant>>,
    /// Allowed for this run only (`keybridge serve --allow-origin`), never written.
    session: Mutex<BTreeMap<String, ()>>,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl GrantStore {
    /// A store kept in memory only (tests, `serve --allow-origin`).
    pub fn in_memory() -> Self {
        GrantStore { path: None, grants: Mutex::new(BTreeMap::new()), session: Mutex::new(BTreeMap::new()) }
    }

    /// Where grants live for a data directory.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Open the file (missing = no grants yet).
    pub fn open(path: &Path) -> Result<Self, GrantError> {
        let corrupt = |why: String| GrantError::Corrupt { path: path.display().to_string(), why };
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
        Ok(GrantStore { path: Some(path.to_path_buf()), grants: Mutex::new(grants), session: Mutex::new(BTreeMap::new()) })
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
        let old = m.insert(o, g.clone());
        if let Err(e) = self.persist(&m) {
            // Keep memory and file in agreement.
            match old {
                Some(old) => m.insert(old.origin.clone(), old),
                None => m.remove(&g.origin),
            };
            return Err(e);
        }
        Ok(g)
    }

    /// Forget an origin's decision. `Ok(false)` when there was none.
    pub fn revoke(&self, origin: &str) -> Result<bool, GrantError> {
        let o = normalize_origin(origin).map_err(|why| GrantError::BadOrigin { origin: origin.to_string(), why })?;
        let mut m = self.lock();
        let Some(old) = m.remove(&o) else { return Ok(false) };
        if let Err(e) = self.persist(&m) {
            m.insert(o, old);
            return Err(e);
        }
        Ok(true)
    }

    fn persist(&self, m: &BTreeMap<String, Grant>) -> Result<(), GrantError> {
        let Some(path) = &self.path else { return Ok(()) };
        let file = GrantFile { version: 1, grants: m.values().cloned().collect() };
        let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        kb_service::settings::write_atomic(path, &json)?;
        Ok(())
    }
}

/// Per-connection consent state: "allow once" lasts as long as the connection.
#[derive(Debug, Default)]
pub struct ConnectionConsent {
    allowed: AtomicBool,
}

/// The consent gate every method (but `hello`, `cancel` and streams) passes.
pub struct Consent {
    store: Arc<GrantStore>,
    policy: ConsentPolicy,
    prompter: Arc<dyn Prompter>,
    /// One consent dialog at a time: sixteen parallel requests from a new page raise
    /// one prompt, and the others see its answer.
    asking: Mutex<()>,
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
        Consent { store, policy, prompter, asking: Mutex::new(()) }
    }

    /// The store.
    pub fn store(&self) -> &Arc<GrantStore> {
        &self.store
    }

    /// Whether the origin is on the deny list (checked at the handshake).
    pub fn denied(&self, origin: &str) -> bool {
        self.store.decision(origin) == Some(Decision::Deny)
    }

    /// May `client` run `operation` (on `certificate`)? Blocks while the user decides.
    pub fn check(
        &self,
        client: &Client,
        conn: &ConnectionConsent,
        operation: &str,
        certificate: Option<String>,
    ) -> Result<(), Refused> {
        let Client::Web(origin) = client else { return Ok(()) };
        let settled = || -> Option<Result<(), Refused>> {
            if conn.allowed.load(Ordering::Acquire) {
                return Some(Ok(()));
            }
            match self.store.decision(origin) {
                Some(Decision::Allow) => Some(Ok(())),
                Some(Decision::Deny) => Some(Err(Refused(format!("{origin} is on the deny list")))),
                None => None,
            }
        };
        if let Some(r) = settled() {
            return r;
        }
        if self.policy == ConsentPolicy::GrantsOnly {
            return Err(Refused(format!("{origin} has no grant and this KeyBridge does not ask (consent policy grants-only)")));
        }
        let _one_at_a_time = self.asking.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = settled() {
            return r;
        }
        let req = ConsentRequest { client: origin.clone(), operation: operation.to_string(), certificate };
        match self.prompter.consent(&req) {
            Ok(ConsentAnswer::AllowAlways) => {
                if let Err(e) = self.store.set(origin, Decision::Allow) {
                    tracing::warn!(%origin, error = %e, "could not remember the grant; allowing this connection only");
                }
                conn.allowed.store(true, Ordering::Release);
                Ok(())
            }
            Ok(ConsentAnswer::AllowOnce) => {
                conn.allowed.store(true, Ordering::Release);
                Ok(())
            }
            Ok(ConsentAnswer::Deny) => Err(Refused(format!("the user denied {origin}"))),
            Err(ServiceError::Cancelled) => Err(Refused(format!("the consent dialog for {origin} was closed"))),
            Err(e) => Err(Refused(format!("the consent dialog failed: {e}"))),
        }
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
        let c = Consent::new(Arc::new(GrantStore::in_memory()), ConsentPolicy::Prompt, prompter.clone());
        let conn = ConnectionConsent::default();
        c.check(&web(), &conn, "sign", None).unwrap();
        c.check(&web(), &conn, "sign", None).unwrap();
        assert!(c.check(&web(), &ConnectionConsent::default(), "sign", None).is_err());
        // Closed dialog (script empty → cancel) refuses too.
        assert!(c.check(&web(), &ConnectionConsent::default(), "sign", None).is_err());
        assert_eq!(prompter.seen().len(), 3);
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
