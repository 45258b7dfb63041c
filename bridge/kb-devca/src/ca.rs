//! The dev CA's state and rules: challenges, bindings, renewal applications and
//! certificates in SQLite; issuing from its root. No HTTP here (see [`crate::routes`]).

mod revoke;
pub use revoke::{CRL_VALIDITY_SECS, IssuedCertificate, reason_by_name, reason_names};

use crate::clock::Clock;
use base64ct::Encoding;
use kb_ca::api::{
    self, Application, Binding, BindingRequest, BindingState, BindingStatus, Challenge, Delivery, RenewalKind, RenewalState,
    RenewalStatus, ServerInfo,
};
use kb_pki::csr::CertificationRequest;
use kb_pki::issue::{CertificateParams, issue};
use kb_pki::time::UnixTime;
use kb_pki::{Certificate, LocalSigner, Signer};
use kb_types::{ErrorCode, KeyUsage};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A refusal: a stable code, the HTTP status to answer with, a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// The code.
    pub code: ErrorCode,
    /// HTTP status.
    pub status: u16,
    /// Message (English).
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(code: ErrorCode, status: u16, message: impl Into<String>) -> Self {
        Refusal { code, status, message: message.into() }
    }
}

fn bad_request(m: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::CaRefused, 400, m)
}
fn not_found(m: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::CaNotFound, 404, m)
}
fn internal(e: impl std::fmt::Display) -> Refusal {
    Refusal::new(ErrorCode::Internal, 500, format!("dev CA: {e}"))
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Refusal>;

/// Renewal windows (BJCA's): from this many days before expiry…
pub const RENEW_BEFORE_DAYS: i64 = 90;
/// …to this many days after.
pub const RENEW_AFTER_DAYS: i64 = 365;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY, der BLOB NOT NULL, spki_sha256 TEXT NOT NULL,
    medium_serial TEXT, issued_for TEXT);
CREATE INDEX IF NOT EXISTS certificates_spki ON certificates(spki_sha256);
CREATE TABLE IF NOT EXISTS challenges (challenge TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS bindings (
    id TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, medium_serial TEXT NOT NULL,
    created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
    state TEXT NOT NULL, phone_key TEXT);
CREATE TABLE IF NOT EXISTS binding_certificates (binding_id TEXT NOT NULL, serial TEXT NOT NULL, PRIMARY KEY (binding_id, serial));
CREATE TABLE IF NOT EXISTS applications (
    id TEXT PRIMARY KEY, serial TEXT NOT NULL, kind TEXT NOT NULL, years INTEGER NOT NULL,
    expired INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT, attachment_name TEXT,
    attachment BLOB, created_at INTEGER NOT NULL, issued_serial TEXT);
CREATE TABLE IF NOT EXISTS encryption_pairs (
    application_id TEXT PRIMARY KEY, certificate_serial TEXT, envelope BLOB);
";

/// How long `SQLite` waits for another connection's lock (the desktop's embedded CA and
/// `keybridge devca serve` may share one database file) before `SQLITE_BUSY`. Set
/// explicitly rather than relying on rusqlite's default (5 s, `sqlite3_busy_timeout` in
/// `Connection::open`), so it is part of the dev CA's documented behaviour.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How the dev CA is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// Shown to the user (服务名称).
    pub name: String,
    /// The URL phones reach it at (the QR code's base), e.g. `http://127.0.0.1:8443`.
    pub public_url: String,
    /// The operator page's key (`/op?key=…`).
    pub operator_key: String,
}

/// The dev CA.
pub struct DevCa {
    db: Mutex<Connection>,
    root: Certificate,
    signer: LocalSigner,
    clock: Arc<dyn Clock>,
    config: Mutex<Config>,
    /// Bumped on every binding change; long-polls wait on it.
    changes: (Mutex<u64>, Condvar),
    /// Issue SM2 dual certificates (see [`DevCa::set_dual_certificates`]).
    dual: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").field("root", &self.root.subject()).finish_non_exhaustive()
    }
}

fn random_token() -> Result<String> {
    let bytes = kb_crypto::rng::random_array::<24>().map_err(internal)?;
    Ok(base64ct::Base64UrlUnpadded::encode_string(&bytes))
}

fn short_id(prefix: &str) -> Result<String> {
    Ok(format!("{prefix}-{}", hex::encode(kb_crypto::rng::random_array::<8>().map_err(internal)?)))
}

fn spki_hash(der: &[u8]) -> String {
    hex::encode(kb_crypto::digest(kb_crypto::HashAlgorithm::Sha256, der))
}

fn state_name(s: BindingState) -> &'static str {
    match s {
        BindingState::Pending => "pending",
        BindingState::Confirmed => "confirmed",
        BindingState::Cancelled => "cancelled",
        BindingState::Expired => "expired",
    }
}

fn kind_name(k: RenewalKind) -> &'static str {
    match k {
        RenewalKind::Renew => "renew",
        RenewalKind::Rekey => "rekey",
    }
}

/// A certificate the binding page shows.
#[derive(Clone, Debug)]
pub struct BoundCertificate {
    /// 介质编号.
    pub medium_serial: String,
    /// The certificate.
    pub certificate: Certificate,
}

/// What the binding page shows for a token.
#[derive(Clone, Debug)]
pub struct BindingView {
    /// The binding.
    pub binding_id: String,
    /// Its certificates.
    pub certificates: Vec<BoundCertificate>,
    /// Seconds left.
    pub expires_in: i64,
}

/// A stored application (for the phone and operator pages).
#[derive(Clone, Debug)]
pub struct ApplicationRecord {
    /// The application as the API shows it.
    pub application: Application,
    /// The certificate it renews.
    pub serial: String,
    /// `draft` (not paid), `applied`, `approved`, `rejected`, `issued`.
    pub state: String,
    /// Rejection reason.
    pub reason: Option<String>,
    /// Attachment file name (过期).
    pub attachment_name: Option<String>,
}

impl DevCa {
    /// Open (or create) the database at `db` (`:memory:` for tests) with this root.
    pub fn open(db: &Path, root: Certificate, signer: LocalSigner, clock: Arc<dyn Clock>, config: Config) -> Result<Self> {
        if root.public_key().map_err(internal)? != *signer.public_key() {
            return Err(internal("the root key does not match the root certificate"));
        }
        let conn = Connection::open(db).map_err(internal)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(internal)?;
        conn.execute_batch(SCHEMA).map_err(internal)?;
        conn.execute_batch(revoke::SCHEMA).map_err(internal)?;
        Ok(DevCa {
            db: Mutex::new(conn),
            root,
            signer,
            clock,
            config: Mutex::new(config),
            changes: Default::default(),
            dual: Default::default(),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration.
    pub fn config(&self) -> Config {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Set the URL phones reach the CA at (once the listener's port is known).
    pub fn set_public_url(&self, url: &str) {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).public_url = url.trim_end_matches('/').to_string();
    }

    /// Issue SM2 dual certificates from now on: applications made for an SM2 signing
    /// certificate are `dual`, and enrolling one also issues an encryption key pair (made
    /// here, standing in for the CA's key-management centre), delivered sealed to the new
    /// signing key (GM/T 0009 `SM2EnvelopedKey`) with its certificate. Off by default.
    pub fn set_dual_certificates(&self, on: bool) {
        self.dual.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// The root certificate.
    pub fn root(&self) -> &Certificate {
        &self.root
    }

    /// Now, by the CA's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Wake long-polls to look again (after the clock moved, in tests).
    pub fn notify(&self) {
        let (m, c) = &self.changes;
        *m.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        c.notify_all();
    }

    /// `GET /api/v1`.
    pub fn server_info(&self) -> ServerInfo {
        ServerInfo {
            api_version: api::API_VERSION.into(),
            name: self.config().name,
            development: true,
            est: api::EST_PREFIX.into(),
        }
    }

    /// A certificate this CA issued (its signature verifies with the root key).
    fn issued_here(&self, cert: &Certificate) -> bool {
        cert.issuer_der() == self.root.subject_der()
            && self.root.public_key().is_ok_and(|k| cert.verify_signature(&k).is_ok())
            && !cert.is_ca()
    }

    fn remember(&self, conn: &Connection, cert: &Certificate, medium: Option<&str>, issued_for: Option<&str>) -> Result<()> {
        conn.execute(
            "INSERT INTO certificates (serial, der, spki_sha256, medium_serial, issued_for) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(serial) DO UPDATE SET medium_serial = COALESCE(?4, medium_serial), issued_for = COALESCE(?5, issued_for)",
            params![api::serial_of(cert), cert.der(), spki_hash(&cert.spki_der().map_err(internal)?), medium, issued_for],
        )
        .map_err(internal)?;
        Ok(())
    }

    fn certificate(&self, conn: &Connection, serial: &str) -> Result<Option<(Certificate, Option<String>)>> {
        let row: Option<(Vec<u8>, Option<String>)> = conn
            .query_row("SELECT der, medium_serial FROM certificates WHERE serial = ?1", [serial], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(internal)?;
        row.map(|(der, m)| Certificate::from_der(&der).map(|c| (c, m)).map_err(internal)).transpose()
    }

    /// `POST /api/v1/challenges`.
    pub fn challenge(&self) -> Result<Challenge> {
        let challenge = random_token()?;
        let expires = self.now() + api::CHALLENGE_TTL_SECS;
        let conn = self.db();
        conn.execute("DELETE FROM challenges WHERE expires_at < ?1", [self.now() - 3600]).map_err(internal)?;
        conn.execute("INSERT INTO challenges (challenge, expires_at) VALUES (?1, ?2)", params![challenge, expires])
            .map_err(internal)?;
        Ok(Challenge { challenge, expires_at: UnixTime(expires).to_rfc3339() })
    }

    /// `POST /api/v1/bindings`: check the challenge and every proof, then a pending
    /// binding with a one-time token valid 30 minutes.
    pub fn request_binding(&self, req: &BindingRequest) -> Result<Binding> {
        if req.certificates.is_empty() || req.certificates.len() > 16 {
            return Err(bad_request("a binding names 1 to 16 certificates"));
        }
        if req.medium_serial.is_empty() || req.medium_serial.len() > 128 {
            return Err(bad_request("medium_serial must be 1 to 128 characters"));
        }
        let now = self.now();
        let mut certs = Vec::new();
        for pc in &req.certificates {
            let der = api::unb64(&pc.certificate).ok_or_else(|| bad_request("certificate is not base64"))?;
            let cert = Certificate::from_der(&der).map_err(|e| bad_request(format!("certificate: {e}")))?;
            if !self.issued_here(&cert) {
                return Err(not_found(format!("certificate {} was not issued by this CA", api::serial_of(&cert))));
            }
            let sig = api::unb64(&pc.signature).ok_or_else(|| bad_request("signature is not base64"))?;
            let msg = kb_ca::proof::binding_message(&req.challenge, &req.medium_serial, cert.der());
            if !kb_ca::proof::verify(&cert, &msg, &sig) {
                return Err(Refusal::new(
                    ErrorCode::BindingProofInvalid,
                    403,
                    format!("the proof for certificate {} does not verify with its key", api::serial_of(&cert)),
                ));
            }
            certs.push(cert);
        }
        let mut conn = self.db();
        let tx = conn.transaction().map_err(internal)?;
        let ch: Option<(i64, i64)> = tx
            .query_row("SELECT expires_at, used FROM challenges WHERE challenge = ?1", [&req.challenge], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(internal)?;
        match ch {
            None | Some((_, 1)) => {
                return Err(Refusal::new(ErrorCode::BindingTokenInvalid, 409, "unknown or already used challenge"));
            }
            Some((exp, _)) if exp <= now => {
                return Err(Refusal::new(ErrorCode::BindingExpired, 410, "the challenge expired; ask for a new one"));
            }
            Some(_) => {}
        }
        tx.execute("UPDATE challenges SET used = 1 WHERE challenge = ?1", [&req.challenge]).map_err(internal)?;
        let (id, token) = (short_id("b")?, random_token()?);
        let expires = now + api::BINDING_TTL_SECS;
        tx.execute(
            "INSERT INTO bindings (id, token, medium_serial, created_at, expires_at, state) VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
            params![id, token, req.medium_serial, now, expires],
        )
        .map_err(internal)?;
        for c in &certs {
            self.remember(&tx, c, Some(&req.medium_serial), None)?;
            tx.execute(
                "INSERT OR IGNORE INTO binding_certificates (binding_id, serial) VALUES (?1, ?2)",
                params![id, api::serial_of(c)],
            )
            .map_err(internal)?;
        }
        tx.commit().map_err(internal)?;
        let qr_url = format!("{}/m/bind?token={token}", self.config().public_url);
        Ok(Binding {
            binding_id: id,
            token,
            qr_url,
            expires_at: UnixTime(expires).to_rfc3339(),
            expires_in: api::BINDING_TTL_SECS,
        })
    }

    fn binding_row(&self, conn: &Connection, id: &str) -> Result<Option<(String, i64)>> {
        conn.query_row("SELECT state, expires_at FROM bindings WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(internal)
    }

    /// `GET /api/v1/bindings/{id}` now.
    pub fn binding_status(&self, id: &str) -> Result<BindingStatus> {
        let conn = self.db();
        let (state, expires) = self.binding_row(&conn, id)?.ok_or_else(|| not_found(format!("no binding {id}")))?;
        let now = self.now();
        let state = match state.as_str() {
            "confirmed" => BindingState::Confirmed,
            "cancelled" => BindingState::Cancelled,
            _ if expires <= now => BindingState::Expired,
            _ => BindingState::Pending,
        };
        let mut stmt =
            conn.prepare("SELECT serial FROM binding_certificates WHERE binding_id = ?1 ORDER BY serial").map_err(internal)?;
        let certificates = stmt
            .query_map([id], |r| r.get::<_, String>(0))
            .map_err(internal)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(internal)?;
        Ok(BindingStatus {
            binding_id: id.to_string(),
            state,
            expires_at: UnixTime(expires).to_rfc3339(),
            expires_in: (expires - now).max(0),
            certificates,
        })
    }

    /// Long-poll: the status once it is not `known`, or after `wait`.
    pub fn wait_binding(&self, id: &str, known: BindingState, wait: Duration) -> Result<BindingStatus> {
        let deadline = Instant::now() + wait.min(Duration::from_secs(api::MAX_WAIT_SECS));
        let (m, c) = &self.changes;
        loop {
            let seen = *m.lock().unwrap_or_else(|e| e.into_inner());
            let s = self.binding_status(id)?;
            let left = deadline.saturating_duration_since(Instant::now());
            if s.state != known || left.is_zero() {
                return Ok(s);
            }
            // Wake on a change, or every second to notice the clock passing the expiry.
            let g = m.lock().unwrap_or_else(|e| e.into_inner());
            if *g == seen {
                let _ = c.wait_timeout(g, left.min(Duration::from_secs(1)));
            }
        }
    }

    /// The binding page's view of a token: refused when unknown, used or expired.
    pub fn binding_view(&self, token: &str) -> Result<BindingView> {
        let conn = self.db();
        let row: Option<(String, String, i64)> = conn
            .query_row("SELECT id, state, expires_at FROM bindings WHERE token = ?1", [token], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(internal)?;
        let (id, state, expires) =
            row.ok_or_else(|| Refusal::new(ErrorCode::BindingTokenInvalid, 409, "unknown binding token"))?;
        if state != "pending" {
            return Err(Refusal::new(ErrorCode::BindingTokenInvalid, 409, "this binding QR code was already used"));
        }
        let now = self.now();
        if expires <= now {
            return Err(Refusal::new(ErrorCode::BindingExpired, 410, "this binding QR code expired"));
        }
        let mut stmt = conn
            .prepare("SELECT c.der, c.medium_serial FROM binding_certificates b JOIN certificates c ON c.serial = b.serial WHERE b.binding_id = ?1 ORDER BY c.serial")
            .map_err(internal)?;
        let rows = stmt
            .query_map([&id], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Option<String>>(1)?)))
            .map_err(internal)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(internal)?;
        let certificates = rows
            .into_iter()
            .map(|(der, m)| {
                Ok(BoundCertificate {
                    medium_serial: m.unwrap_or_default(),
                    certificate: Certificate::from_der(&der).map_err(internal)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BindingView { binding_id: id, certificates, expires_in: expires - now })
    }

    /// 确认绑定 (`confirm`) or 取消: uses the token up. Returns the phone's key for the
    /// renewal pages when confirmed.
    pub fn answer_binding(&self, token: &str, confirm: bool) -> Result<Option<String>> {
        self.binding_view(token)?;
        let phone_key = if confirm { Some(random_token()?) } else { None };
        let n = self
            .db()
            .execute(
                "UPDATE bindings SET state = ?1, phone_key = ?2 WHERE token = ?3 AND state = 'pending' AND expires_at > ?4",
                params![if confirm { "confirmed" } else { "cancelled" }, phone_key, token, self.now()],
            )
            .map_err(internal)?;
        if n != 1 {
            return Err(Refusal::new(ErrorCode::BindingTokenInvalid, 409, "this binding QR code was already used"));
        }
        self.notify();
        Ok(phone_key)
    }

    /// The certificates a phone (by its key from a confirmed binding) may apply for.
    pub fn phone_certificates(&self, phone_key: &str) -> Result<Vec<Certificate>> {
        let conn = self.db();
        let mut stmt = conn
            .prepare(
                "SELECT DISTINCT c.der FROM bindings b JOIN binding_certificates bc ON bc.binding_id = b.id
                 JOIN certificates c ON c.serial = bc.serial WHERE b.phone_key = ?1 AND b.state = 'confirmed'",
            )
            .map_err(internal)?;
        let ders = stmt
            .query_map([phone_key], |r| r.get::<_, Vec<u8>>(0))
            .map_err(internal)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(internal)?;
        if ders.is_empty() {
            return Err(Refusal::new(ErrorCode::CaRefused, 403, "this phone has no bound certificate"));
        }
        ders.iter().map(|d| Certificate::from_der(d).map_err(internal)).collect()
    }

    /// Whether a certificate is 过期 (expired) and may be renewed at all now
    /// (from [`RENEW_BEFORE_DAYS`] before expiry to [`RENEW_AFTER_DAYS`] after).
    pub fn renewal_window(&self, cert: &Certificate) -> Result<bool> {
        let days_left = cert.days_left(UnixTime(self.now()));
        if days_left > RENEW_BEFORE_DAYS {
            return Err(bad_request(format!("renewal opens {RENEW_BEFORE_DAYS} days before expiry ({days_left} days left)")));
        }
        if days_left < -RENEW_AFTER_DAYS {
            return Err(bad_request(format!(
                "the certificate expired more than {RENEW_AFTER_DAYS} days ago; apply for a new one"
            )));
        }
        Ok(cert.not_after() <= UnixTime(self.now()))
    }

    /// A renewal application from the phone (not yet paid: `draft`).
    pub fn apply(
        &self,
        phone_key: &str,
        serial: &str,
        kind: RenewalKind,
        years: u32,
        attachment: Option<(String, Vec<u8>)>,
    ) -> Result<String> {
        let cert = self
            .phone_certificates(phone_key)?
            .into_iter()
            .find(|c| api::serial_of(c) == serial)
            .ok_or_else(|| Refusal::new(ErrorCode::CaRefused, 403, "this certificate is not bound to this phone"))?;
        if !(1..=5).contains(&years) {
            return Err(bad_request("years must be 1 to 5"));
        }
        let expired = self.renewal_window(&cert)?;
        if expired && attachment.as_ref().is_none_or(|(_, b)| b.is_empty()) {
            return Err(bad_request("an expired certificate's renewal needs an attachment (过期续期须上传附件)"));
        }
        let (name, bytes) = attachment.unzip();
        let id = short_id("a")?;
        self.db()
            .execute(
                "INSERT INTO applications (id, serial, kind, years, expired, state, attachment_name, attachment, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'draft', ?6, ?7, ?8)",
                params![id, serial, kind_name(kind), years, expired, name, bytes, self.now()],
            )
            .map_err(internal)?;
        let sm2_signing = matches!(cert.public_key(), Ok(kb_crypto::PublicKey::Sm2(_))) && cert.usage() != KeyUsage::Encrypt;
        if self.dual.load(std::sync::atomic::Ordering::SeqCst) && sm2_signing {
            self.db().execute("INSERT INTO encryption_pairs (application_id) VALUES (?1)", [&id]).map_err(internal)?;
        }
        Ok(id)
    }

    /// The simulated payment: a draft becomes `applied`.
    pub fn pay(&self, phone_key: &str, application_id: &str) -> Result<()> {
        let rec = self.application(application_id)?;
        if !self.phone_certificates(phone_key)?.iter().any(|c| api::serial_of(c) == rec.serial) {
            return Err(Refusal::new(ErrorCode::CaRefused, 403, "not this phone's application"));
        }
        let n = self
            .db()
            .execute("UPDATE applications SET state = 'applied' WHERE id = ?1 AND state = 'draft'", [application_id])
            .map_err(internal)?;
        if n != 1 {
            return Err(Refusal::new(ErrorCode::CaRefused, 409, "this application was already paid"));
        }
        Ok(())
    }

    /// The operator's decision on an `applied` application.
    pub fn decide(&self, application_id: &str, approve: bool, reason: &str) -> Result<()> {
        if !approve && reason.trim().is_empty() {
            return Err(bad_request("a rejection needs a reason"));
        }
        let n = self
            .db()
            .execute(
                "UPDATE applications SET state = ?1, reason = ?2 WHERE id = ?3 AND state = 'applied'",
                params![
                    if approve { "approved" } else { "rejected" },
                    if approve { None } else { Some(reason.trim()) },
                    application_id
                ],
            )
            .map_err(internal)?;
        if n != 1 {
            return Err(not_found(format!("no application {application_id} waiting for a decision")));
        }
        Ok(())
    }

    fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApplicationRecord> {
        let kind: String = r.get(2)?;
        Ok(ApplicationRecord {
            application: Application {
                id: r.get(0)?,
                kind: if kind == "rekey" { RenewalKind::Rekey } else { RenewalKind::Renew },
                years: r.get(3)?,
                expired: r.get(4)?,
                dual: r.get(8)?,
            },
            serial: r.get(1)?,
            state: r.get(5)?,
            reason: r.get(6)?,
            attachment_name: r.get(7)?,
        })
    }

    const APP_COLUMNS: &str = "id, serial, kind, years, expired, state, reason, attachment_name,
        EXISTS(SELECT 1 FROM encryption_pairs e WHERE e.application_id = applications.id)";

    /// One application.
    pub fn application(&self, id: &str) -> Result<ApplicationRecord> {
        self.db()
            .query_row(&format!("SELECT {} FROM applications WHERE id = ?1", Self::APP_COLUMNS), [id], Self::record)
            .optional()
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("no application {id}")))
    }

    /// Applications in a state (`applied` for the operator), oldest first.
    pub fn applications(&self, state: &str) -> Result<Vec<ApplicationRecord>> {
        let conn = self.db();
        let mut stmt = conn
            .prepare(&format!("SELECT {} FROM applications WHERE state = ?1 ORDER BY created_at, id", Self::APP_COLUMNS))
            .map_err(internal)?;
        stmt.query_map([state], Self::record).map_err(internal)?.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
    }

    /// `GET /api/v1/certificates/{serial}/renewal`.
    pub fn renewal_status(&self, serial: &str) -> Result<RenewalStatus> {
        let conn = self.db();
        let bound: bool = conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM bindings b JOIN binding_certificates bc ON bc.binding_id = b.id
                 WHERE bc.serial = ?1 AND b.state = 'confirmed')",
                [serial],
                |r| r.get(0),
            )
            .map_err(internal)?;
        let latest = conn
            .query_row(
                &format!(
                    "SELECT {} FROM applications WHERE serial = ?1 AND state != 'draft' ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    Self::APP_COLUMNS
                ),
                [serial],
                Self::record,
            )
            .optional()
            .map_err(internal)?;
        let known = self.certificate(&conn, serial)?.is_some();
        if !known && latest.is_none() {
            return Ok(RenewalStatus {
                serial: serial.into(),
                bound,
                state: RenewalState::None,
                reason: None,
                application: None,
            });
        }
        Ok(match latest {
            None => RenewalStatus { serial: serial.into(), bound, state: RenewalState::None, reason: None, application: None },
            Some(rec) => RenewalStatus {
                serial: serial.into(),
                bound,
                state: match rec.state.as_str() {
                    "applied" => RenewalState::Applied,
                    "approved" => RenewalState::Approved,
                    "rejected" => RenewalState::Rejected,
                    "issued" => RenewalState::Issued,
                    _ => RenewalState::None,
                },
                reason: rec.reason,
                application: Some(rec.application),
            },
        })
    }

    /// `GET /api/v1/applications/{id}/certificates`.
    pub fn delivery(&self, id: &str) -> Result<Delivery> {
        let conn = self.db();
        let issued: Option<Option<String>> = conn
            .query_row("SELECT issued_serial FROM applications WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(internal)?;
        let serial = issued.ok_or_else(|| not_found(format!("no application {id}")))?.ok_or_else(|| {
            Refusal::new(ErrorCode::RenewalNotApproved, 404, format!("application {id} has no certificate issued yet"))
        })?;
        let (cert, _) = self.certificate(&conn, &serial)?.ok_or_else(|| internal("issued certificate missing"))?;
        let mut certificates = vec![api::b64(cert.der())];
        let pair: Option<(Option<String>, Option<Vec<u8>>)> = conn
            .query_row("SELECT certificate_serial, envelope FROM encryption_pairs WHERE application_id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(internal)?;
        let mut encryption_key = None;
        if let Some((Some(enc_serial), Some(envelope))) = pair {
            let (enc, _) = self.certificate(&conn, &enc_serial)?.ok_or_else(|| internal("encryption certificate missing"))?;
            certificates.push(api::b64(enc.der()));
            encryption_key = Some(api::b64(&envelope));
        }
        Ok(Delivery { application_id: id.into(), certificates, chain: vec![api::b64(self.root.der())], encryption_key })
    }

    /// EST `/cacerts`.
    pub fn cacerts(&self) -> Vec<Certificate> {
        vec![self.root.clone()]
    }

    /// EST `/simplereenroll` (续期): the CSR's key is an old certificate's key with an
    /// approved `renew` application; same subject; validity follows the old one.
    pub fn simplereenroll(&self, csr_der: &[u8]) -> Result<Certificate> {
        let csr = Self::checked_csr(csr_der)?;
        let spki = csr.public_key().and_then(|k| Ok(k.to_spki_der()?)).map_err(|e| enrol_refused(format!("CSR key: {e}")))?;
        let conn = self.db();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {} FROM applications WHERE kind = 'renew' AND serial IN
                 (SELECT serial FROM certificates WHERE spki_sha256 = ?1) ORDER BY created_at DESC, rowid DESC",
                Self::APP_COLUMNS
            ))
            .map_err(internal)?;
        let apps = stmt
            .query_map([spki_hash(&spki)], Self::record)
            .map_err(internal)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(internal)?;
        drop(stmt);
        let rec = apps.into_iter().find(|a| a.state != "draft").ok_or_else(|| {
            Refusal::new(ErrorCode::RenewalNotApproved, 403, "no renewal was applied for the certificate of this key")
        })?;
        self.enrol(&conn, &rec, &csr, &spki)
    }

    /// EST `/simpleenroll` (变更/补发): a new key, authorised by the old key's signature
    /// over the application id and the new key (HTTP Basic `id:signature`).
    pub fn simpleenroll(&self, csr_der: &[u8], basic: Option<(String, String)>) -> Result<Certificate> {
        let csr = Self::checked_csr(csr_der)?;
        let (app_id, password) =
            basic.ok_or_else(|| Refusal::new(ErrorCode::EnrolmentRefused, 401, "simpleenroll needs HTTP Basic authorisation"))?;
        let spki = csr.public_key().and_then(|k| Ok(k.to_spki_der()?)).map_err(|e| enrol_refused(format!("CSR key: {e}")))?;
        let rec = self.application(&app_id).map_err(|_| Refusal::new(ErrorCode::EnrolmentRefused, 401, "unknown application"))?;
        if rec.application.kind != RenewalKind::Rekey {
            return Err(enrol_refused("this application keeps its key pair: use simplereenroll"));
        }
        let conn = self.db();
        let (old, _) = self.certificate(&conn, &rec.serial)?.ok_or_else(|| internal("application without its certificate"))?;
        let sig = api::unb64(&password).unwrap_or_default();
        if !kb_ca::proof::verify(&old, &kb_ca::proof::enrol_message(&app_id, &spki), &sig) {
            return Err(Refusal::new(
                ErrorCode::EnrolmentRefused,
                401,
                "the authorisation does not verify with the old certificate's key",
            ));
        }
        self.enrol(&conn, &rec, &csr, &spki)
    }

    fn checked_csr(der: &[u8]) -> Result<CertificationRequest> {
        let csr = CertificationRequest::from_der(der).map_err(|e| enrol_refused(format!("not a PKCS#10 request: {e}")))?;
        csr.verify().map_err(|e| enrol_refused(format!("the request's signature: {e}")))?;
        Ok(csr)
    }

    /// Issue for an application (or give back what was issued for the same key).
    fn enrol(&self, conn: &Connection, rec: &ApplicationRecord, csr: &CertificationRequest, spki: &[u8]) -> Result<Certificate> {
        match rec.state.as_str() {
            "approved" => {}
            "issued" => {
                let issued: Option<String> = conn
                    .query_row("SELECT issued_serial FROM applications WHERE id = ?1", [&rec.application.id], |r| r.get(0))
                    .map_err(internal)?;
                if let Some((c, _)) = issued.map(|s| self.certificate(conn, &s)).transpose()?.flatten()
                    && c.spki_der().map_err(internal)? == spki
                {
                    return Ok(c);
                }
                return Err(enrol_refused("this application was already used for another key"));
            }
            "applied" => return Err(Refusal::new(ErrorCode::EnrolmentPending, 202, "waiting for the operator's approval")),
            _ => return Err(Refusal::new(ErrorCode::RenewalNotApproved, 403, "the renewal was not approved")),
        }
        let (old, medium) =
            self.certificate(conn, &rec.serial)?.ok_or_else(|| internal("application without its certificate"))?;
        if csr.subject() != old.subject() {
            return Err(enrol_refused(format!(
                "the request's subject '{}' is not the certificate's '{}'",
                csr.subject(),
                old.subject()
            )));
        }
        let now = UnixTime(self.now());
        let start = if old.not_after() > now { old.not_after() } else { now };
        let mut params = CertificateParams::leaf(&csr.subject_dn(), old.usage(), now, 1);
        params.not_after = UnixTime(start.0 + i64::from(rec.application.years) * 365 * kb_pki::time::DAY);
        let key = csr.public_key().map_err(|e| enrol_refused(e.to_string()))?;
        // Relying parties ask this CA about revocation: its /crl and /ocsp.
        let base = self.config().public_url;
        if !base.is_empty() {
            let (crl, ocsp) = (format!("{base}/crl"), format!("{base}/ocsp"));
            params.extra_extensions = kb_pki::issue::revocation_pointers(Some(&crl), Some(&ocsp)).map_err(internal)?;
        }
        let cert = issue(&params, &key, Some(&self.root), &self.signer).map_err(internal)?;
        self.remember(conn, &cert, medium.as_deref(), Some(&rec.application.id))?;
        if rec.application.dual {
            self.issue_encryption_pair(conn, rec, &params, &key, medium.as_deref())?;
        }
        conn.execute(
            "UPDATE applications SET state = 'issued', issued_serial = ?1 WHERE id = ?2 AND state = 'approved'",
            params![api::serial_of(&cert), rec.application.id],
        )
        .map_err(internal)?;
        tracing::info!(application = %rec.application.id, serial = %api::serial_of(&cert), "dev CA issued a certificate");
        Ok(cert)
    }
}

impl DevCa {
    /// The key-management centre's part of a dual enrolment: a fresh SM2 encryption pair,
    /// its certificate (the signing certificate's subject and validity), and the pair
    /// sealed to the new signing key. Only the envelope is kept: the private key is gone
    /// when this returns (a real KMC would escrow it).
    fn issue_encryption_pair(
        &self,
        conn: &Connection,
        rec: &ApplicationRecord,
        signing: &CertificateParams,
        signing_key: &kb_crypto::PublicKey,
        medium: Option<&str>,
    ) -> Result<()> {
        let kb_crypto::PublicKey::Sm2(protection) = signing_key else {
            return Err(enrol_refused("dual certificates need an SM2 signing key"));
        };
        let pair = kb_crypto::sm2::Sm2PrivateKey::generate().map_err(internal)?;
        let envelope = kb_token::Sm2EnvelopedKey::seal(&pair, protection).and_then(|e| e.to_der()).map_err(internal)?;
        let mut params = signing.clone();
        params.kind = kb_pki::issue::CertKind::Leaf { usage: KeyUsage::Encrypt };
        let cert =
            issue(&params, &kb_crypto::PublicKey::Sm2(*pair.public_key()), Some(&self.root), &self.signer).map_err(internal)?;
        drop(pair);
        self.remember(conn, &cert, medium, Some(&rec.application.id))?;
        conn.execute(
            "UPDATE encryption_pairs SET certificate_serial = ?1, envelope = ?2 WHERE application_id = ?3",
            params![api::serial_of(&cert), envelope, rec.application.id],
        )
        .map_err(internal)?;
        Ok(())
    }
}

fn enrol_refused(m: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::EnrolmentRefused, 400, m)
}

/// Parse `Authorization: Basic …` into user and password.
pub fn basic_auth(header: Option<&str>) -> Option<(String, String)> {
    let v = header?.trim();
    let b = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    let text = String::from_utf8(api::unb64(b)?).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// The state name stored for a binding state (for tests and pages).
pub fn binding_state_name(s: BindingState) -> &'static str {
    state_name(s)
}
